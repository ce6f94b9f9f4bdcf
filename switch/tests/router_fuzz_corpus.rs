//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/router_frames/`) through the
//! router's shared harness on stable Rust.

use std::path::Path;

#[test]
fn replays_router_frames_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(
        &workspace,
        "router_frames",
        tapnet_switch::router::fuzzing::run,
    );
}

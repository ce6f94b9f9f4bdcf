//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/outside_frames/`) through the
//! outside port's shared harness on stable Rust.

use std::path::Path;

#[test]
fn replays_outside_frames_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(
        &workspace,
        "outside_frames",
        tapnet_switch::router::outside_fuzzing::run,
    );
}

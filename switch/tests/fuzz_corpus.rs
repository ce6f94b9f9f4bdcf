//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/switch_frames/`) through the
//! switch's shared harness on stable Rust.

use std::path::Path;

#[test]
fn replays_switch_frames_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(&workspace, "switch_frames", tapnet_switch::fuzzing::run);
}

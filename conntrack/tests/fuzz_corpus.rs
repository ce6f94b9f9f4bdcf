//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/conntrack_ops/`) through the
//! connection tracker's shared harness on stable Rust.

use std::path::Path;

#[test]
fn replays_conntrack_ops_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(
        &workspace,
        "conntrack_ops",
        tapnet_conntrack::fuzzing::run,
    );
}

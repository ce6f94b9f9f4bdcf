//! Replays the committed cargo-fuzz corpora (`fuzz/corpus/conntrack_ops/`,
//! `fuzz/corpus/conntrack_fastpath/`) through the connection tracker's shared harnesses
//! on stable Rust.

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

#[test]
fn replays_conntrack_fastpath_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(
        &workspace,
        "conntrack_fastpath",
        tapnet_conntrack::fuzzing::fastpath::run,
    );
}

//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/dns_queries/`) through the
//! DNS responder's shared harness on stable Rust.

use std::path::Path;

#[test]
fn replays_dns_queries_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(
        &workspace,
        "dns_queries",
        tapnet_switch::dns::fuzzing::run,
    );
}

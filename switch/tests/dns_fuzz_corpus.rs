//! Replays the committed cargo-fuzz corpora (`fuzz/corpus/dns_queries/`,
//! `fuzz/corpus/dns_forwarder/`) through the DNS responder's and the forwarder's shared
//! harnesses on stable Rust.

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

#[test]
fn replays_dns_forwarder_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(
        &workspace,
        "dns_forwarder",
        tapnet_switch::dns::forward_fuzzing::run,
    );
}

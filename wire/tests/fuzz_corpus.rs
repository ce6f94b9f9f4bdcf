//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/ip_packets/`) through the
//! IP packet views, builders and reassembler's shared harness on stable Rust.

use std::path::Path;

#[test]
fn replays_ip_packets_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(&workspace, "ip_packets", tapnet_wire::fuzzing::run);
}

//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/nat_roundtrip/`) through the
//! NAT engine's shared harness on stable Rust.

use std::path::Path;

#[test]
fn replays_nat_roundtrip_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(&workspace, "nat_roundtrip", tapnet_nat::fuzzing::run);
}

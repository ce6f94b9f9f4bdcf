//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/dhcp_server/`) through the
//! DHCP server's shared harness on stable Rust.

use std::path::Path;

#[test]
fn replays_dhcp_server_corpus() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    tapnet_wire::fuzzing::replay_corpus(
        &workspace,
        "dhcp_server",
        tapnet_switch::router::dhcp_fuzzing::run,
    );
}

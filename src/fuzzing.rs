//! Fuzzing harnesses of the shell (its parsers, the datapath's offload handling, the
//! host-socket engine), shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and
//! the stable corpus replay tests (`mod corpus` below). Compiled only for tests and
//! with the `fuzzing` feature, never into the release executable. Each harness takes
//! arbitrary bytes, must never panic, and checks the invariants of what it drives.

mod control;
mod engine;
mod slirp_api;
mod vnet;

pub use control::control_request;
pub use engine::{engine_packets, engine_packets_isolated};
pub use slirp_api::slirp_api;
pub use vnet::vnet_frames;

/// The committed corpora replayed on stable Rust: every input a fuzzer once found
/// stays a regression test.
#[cfg(test)]
mod corpus {
    use std::io::Write as _;
    use std::path::Path;

    fn replay(target: &str, harness: fn(&[u8])) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        tapnet_wire::fuzzing::replay_corpus(root, target, harness);
    }

    #[test]
    fn replays_control_request_corpus() {
        replay("control_request", super::control_request);
    }

    #[test]
    fn replays_slirp_api_corpus() {
        replay("slirp_api", super::slirp_api);
    }

    #[test]
    fn replays_engine_packets_corpus() {
        // The engine opens real sockets: only on a thread in a namespace of its own.
        if !super::engine_packets_isolated() {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED (needs root for a network namespace of its own): \
                 replays_engine_packets_corpus"
            );
            return;
        }
        replay("engine_packets", super::engine_packets);
    }

    #[test]
    fn replays_vnet_frames_corpus() {
        replay("vnet_frames", super::vnet_frames);
    }
}

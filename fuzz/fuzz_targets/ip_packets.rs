//! Fuzz target: arbitrary IP packets through the views, builders and reassembler that
//! host-socket egress runs on container traffic. The decoding and the invariants live
//! in `tapnet_wire::fuzzing::run`, shared with the stable corpus replay test
//! (`wire/tests/fuzz_corpus.rs`).
//!
//! Run: `cargo +nightly fuzz run ip_packets -- -max_total_time=60`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_wire::fuzzing::run(data);
});

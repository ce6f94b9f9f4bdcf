//! Fuzz target: raw and structured packets through the NAT engine in both directions,
//! with masquerade, published ports, ICMP errors and expiry. The decoding and every
//! invariant (no panic, valid checksums after a rewrite, NAT then reverse NAT is the
//! identity) live in `tapnet_nat::fuzzing::run`, shared with the stable corpus replay
//! test (`nat/tests/fuzz_corpus.rs`).
//!
//! Run: `cargo +nightly fuzz run nat_roundtrip -- -max_total_time=60`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_nat::fuzzing::run(data);
});

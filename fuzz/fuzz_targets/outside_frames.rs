//! Fuzz target: frames read from the packet uplink, packets sent through it, timers
//! and transmit polls fed to the outside port (ARP, ping, next-hop resolution), from
//! valid templates that libFuzzer mutates. The decoding and the invariants live in
//! `tapnet_switch::router::outside_fuzzing::run`, shared with the stable corpus replay
//! test (`switch/tests/outside_fuzz_corpus.rs`).
//!
//! Run: `cargo +nightly fuzz run outside_frames -- -max_total_time=60`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_switch::router::outside_fuzzing::run(data);
});

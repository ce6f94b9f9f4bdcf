//! Fuzz target: frames from the networks, packets from the uplink, timers and control
//! calls fed to the router, starting from valid templates (ARP, echo, DHCP, RS, NS,
//! forwarding, fragmentation...) that libFuzzer mutates. The decoding and every
//! invariant live in `tapnet_switch::router::fuzzing::run`, shared with the stable
//! corpus replay test (`switch/tests/router_fuzz_corpus.rs`).
//!
//! Run: `cargo +nightly fuzz run router_frames -- -max_total_time=60`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_switch::router::fuzzing::run(data);
});

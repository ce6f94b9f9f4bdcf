//! Fuzz target: DNS queries fed to the embedded DNS responder, with a selector byte
//! choosing the asking container's scope, UDP or TCP, and the output buffer size. The
//! decoding and every invariant live in `tapnet_switch::dns::fuzzing::run`, shared with
//! the stable corpus replay test (`switch/tests/dns_fuzz_corpus.rs`).
//!
//! Run: `cargo +nightly fuzz run dns_queries -- -max_total_time=60`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_switch::dns::fuzzing::run(data);
});

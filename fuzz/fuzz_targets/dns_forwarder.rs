//! Fuzz target: queries and upstream messages through the DNS forwarder. The decoding
//! and every invariant live in `tapnet_switch::dns::forward_fuzzing::run`, shared with
//! the stable corpus replay test (`switch/tests/dns_fuzz_corpus.rs`).
//!
//! Run: `fuzz/campaign.sh dns_forwarder 1800`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_switch::dns::forward_fuzzing::run(data);
});

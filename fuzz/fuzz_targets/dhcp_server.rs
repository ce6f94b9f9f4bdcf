//! Fuzz target: DHCP messages (DISCOVER, REQUEST, DECLINE, RELEASE, INFORM, with
//! chosen addresses and options, or mutated bytes) from a few clients to the router's
//! DHCP server, with static leases and time passing; every answer is checked against
//! RFC 2131 and a model of the leases. The decoding and every invariant live in
//! `tapnet_switch::router::dhcp_fuzzing::run`, shared with the stable corpus replay
//! test (`switch/tests/dhcp_server_fuzz_corpus.rs`).
//!
//! Run: `fuzz/campaign.sh dhcp_server 1800`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_switch::router::dhcp_fuzzing::run(data);
});

//! Fuzz target: see `tapnet::fuzzing::slirp_api`, shared with the stable corpus replay
//! test in `src/fuzzing.rs`.
//!
//! Run: `fuzz/campaign.sh slirp_api 1800`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet::fuzzing::slirp_api(data);
});

//! Fuzz target: see `tapnet::fuzzing::control_request`, shared with the stable corpus replay
//! test in `src/fuzzing.rs`.
//!
//! Run: `fuzz/campaign.sh control_request 1800`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet::fuzzing::control_request(data);
});

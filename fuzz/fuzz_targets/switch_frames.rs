//! Fuzz target: arbitrary topologies, frames, port ids and control calls fed to the
//! learning bridge. The decoding and every invariant live in
//! `tapnet_switch::fuzzing::run`, shared with the stable corpus replay test
//! (`switch/tests/fuzz_corpus.rs`).
//!
//! Run: `cargo +nightly fuzz run switch_frames -- -max_total_time=60`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_switch::fuzzing::run(data);
});

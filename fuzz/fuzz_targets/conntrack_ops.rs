//! Fuzz target: arbitrary sequences of `track`, `insert`, `remove` and time steps on a
//! small connection table, checked against a reference model. The decoding and every
//! invariant live in `tapnet_conntrack::fuzzing::run`, shared with the stable corpus
//! replay test (`conntrack/tests/fuzz_corpus.rs`).
//!
//! Run: `cargo +nightly fuzz run conntrack_ops -- -max_total_time=60`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_conntrack::fuzzing::run(data);
});

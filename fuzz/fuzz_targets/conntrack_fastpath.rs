//! Fuzz target, differential: the same packets into two connection tables, one
//! through the fast paths (`track_burst` in fuzzer-chosen bursts, `track_known`), one
//! through the full path (`track`, `lookup`, `entry`); every result, the other tuple,
//! the entries, counters and expiries must agree. The decoding and every check live in
//! `tapnet_conntrack::fuzzing::fastpath::run`, shared with the stable corpus replay
//! test (`conntrack/tests/fuzz_corpus.rs`).
//!
//! Run: `fuzz/campaign.sh conntrack_fastpath 1800`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet_conntrack::fuzzing::fastpath::run(data);
});

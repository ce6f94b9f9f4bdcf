//! Fuzz target: IP packets from a container (TCP, UDP, ICMP echo, IPv4 fragments, raw
//! and mutated, IPv4 and IPv6) into the host-socket egress engine, which opens real
//! host sockets for them: the harness runs the engine only on a thread moved into a
//! new, empty network namespace of its own (root needed; without it every input does
//! nothing), where nothing can leave. The decoding and every invariant live in
//! `tapnet::fuzzing::engine_packets`, shared with the stable corpus replay test in
//! `src/fuzzing.rs`.
//!
//! Run: `sudo fuzz/campaign.sh engine_packets 1800`

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tapnet::fuzzing::engine_packets(data);
});

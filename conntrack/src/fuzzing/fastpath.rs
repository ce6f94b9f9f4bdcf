//! Differential fuzz harness of the table's fast paths, shared by the cargo-fuzz target
//! `fuzz/fuzz_targets/conntrack_fastpath.rs` and the stable corpus replay test
//! (`tests/fuzz_corpus.rs`).
//!
//! The same packets go into two tables: `fast` through the fast paths
//! ([`Conntrack::track_burst`] in bursts whose boundaries the fuzzer picks, and
//! [`Conntrack::track_known`] with [`Conntrack::track`] on a miss, as the NAT does),
//! `full` through the full path ([`Conntrack::track`] one packet at a time; for a
//! known flow [`Conntrack::lookup`] + `track` + [`Conntrack::entry`] for the other
//! tuple). A fast path is a cache of the decision the full path makes; Open vSwitch
//! learned from two CVEs (a megaflow entry wider than the decision behind it) what
//! happens when the two drift apart. After every operation the tables must agree on:
//!
//! - every result, and for `track_known` the other tuple (which differs from the
//!   reversed key on entries inserted with a NAT reply tuple);
//! - `entries()`, `stats()`, `len()`, `unassured_len()`, `poll_timeout()`, and the
//!   lookups of every key just used;
//! - the order and content of `poll_expired` / `poll_evicted` as time advances by
//!   fuzzer-chosen steps; and both keep their internal invariants.
//!
//! The fast table may use another hash seed (the fuzzer decides), so a fast path that
//! depended on where a key lands in the index would show.

use core::time::Duration;

use super::{Bytes, config, flags, key};
use crate::{Conntrack, Direction, FlowKey, Instant, Proto, TcpFlags};

/// Most packets in one burst (a few chunks of [`Conntrack::BURST`]).
const MAX_BURST: u8 = 48;

/// One packet: a key of the alphabet, maybe reversed, TCP flags (or none), a length.
type Packet = (FlowKey, Option<TcpFlags>, usize);

/// Decodes a packet from two bytes: the alphabet index, then bits 0-3 TCP flags (FIN
/// SYN RST ACK), bit 4 the reversed key, bit 5 no TCP flags at all, bits 6-7 length.
fn packet(input: &mut Bytes<'_>) -> Packet {
    let (k, f) = (input.byte(), input.byte());
    let k = if f & 0x10 != 0 {
        key(k).reversed()
    } else {
        key(k)
    };
    let tcp = (k.proto == Proto::Tcp && f & 0x20 == 0).then(|| flags(f));
    (k, tcp, 60 + 500 * usize::from(f >> 6))
}

/// The two tables and the clock.
struct Differential {
    fast: Conntrack,
    full: Conntrack,
    now: Instant,
    out: Vec<Result<crate::Tracked, crate::Refused>>,
    burst: Vec<Packet>,
}

impl Differential {
    /// `track_burst` on `fast`, `track` one by one on `full`.
    fn burst(&mut self, packets: &[Packet]) {
        self.out.clear();
        self.fast.track_burst(self.now, packets, &mut self.out);
        assert_eq!(self.out.len(), packets.len(), "one result per packet");
        for (i, ((k, tcp, len), got)) in packets.iter().zip(&self.out).enumerate() {
            let want = self.full.track(self.now, k, *tcp, *len);
            assert_eq!(*got, want, "burst packet {i} of {}: {k:?}", packets.len());
        }
        for (k, _, _) in packets {
            self.same_lookups(k);
        }
    }

    /// `track_known` (then `track` on a miss) on `fast`; `lookup`, `track` and
    /// `entry` on `full`.
    fn known(&mut self, (k, tcp, len): Packet) {
        let got = self.fast.track_known(self.now, &k, tcp, len);
        match self.full.lookup(&k) {
            Some((id, dir)) => {
                let tracked = self.full.track(self.now, &k, tcp, len);
                let entry = self
                    .full
                    .entry(id, self.now)
                    .expect("a tracked entry lives");
                let other = match dir {
                    Direction::Original => entry.reply,
                    Direction::Reply => entry.original,
                };
                let got = got.unwrap_or_else(|| panic!("known key {k:?} missed the fast path"));
                assert_eq!(Ok(got.tracked), tracked, "track_known of {k:?}");
                assert_eq!(got.other, other, "other tuple of {k:?}");
            }
            None => {
                assert_eq!(got, None, "track_known found unknown {k:?}");
                let fast = self.fast.track(self.now, &k, tcp, len);
                assert_eq!(
                    fast,
                    self.full.track(self.now, &k, tcp, len),
                    "miss of {k:?}"
                );
            }
        }
        self.same_lookups(&k);
    }

    /// The same `insert` on both (a NAT's explicit reply tuple).
    fn insert(&mut self, original: FlowKey, reply: FlowKey, tcp: Option<TcpFlags>) {
        let fast = self.fast.insert(self.now, original, reply, tcp);
        let full = self.full.insert(self.now, original, reply, tcp);
        assert_eq!(fast, full, "insert {original:?} / {reply:?}");
        self.same_lookups(&original);
        self.same_lookups(&reply);
    }

    /// Removes the flow of `k` from both, if there is one.
    fn remove(&mut self, k: &FlowKey) {
        self.same_lookups(k);
        if let Some((id, _)) = self.full.lookup(k) {
            assert!(self.fast.remove(id) && self.full.remove(id));
            assert!(!self.fast.remove(id) && !self.full.remove(id));
        }
    }

    fn same_lookups(&self, k: &FlowKey) {
        for k in [*k, k.reversed()] {
            assert_eq!(self.fast.lookup(&k), self.full.lookup(&k), "lookup {k:?}");
        }
    }

    /// Drains `poll_expired` (or only `poll_evicted`), comparing every entry.
    fn poll(&mut self, evicted_only: bool) {
        // Evicted entries wait until polled, so there may be more than the capacity.
        for _ in 0..100_000 {
            let (fast, full) = if evicted_only {
                (self.fast.poll_evicted(), self.full.poll_evicted())
            } else {
                (
                    self.fast.poll_expired(self.now),
                    self.full.poll_expired(self.now),
                )
            };
            assert_eq!(fast, full, "expiry at {}", self.now);
            if full.is_none() {
                return;
            }
        }
        panic!("poll_expired does not end");
    }

    fn compare(&self) {
        let (fast, full) = (&self.fast, &self.full);
        assert_eq!(fast.len(), full.len());
        assert_eq!(fast.unassured_len(), full.unassured_len());
        assert_eq!(fast.poll_timeout(), full.poll_timeout());
        assert_eq!(fast.stats(), full.stats());
        assert_eq!(fast.entries(self.now), full.entries(self.now));
        fast.check_invariants();
        full.check_invariants();
    }
}

/// Decodes `data` and runs it through both tables. Panics where they disagree.
///
/// Format (missing bytes read as zero): byte 0 capacity (`% 17`), byte 1 timeout
/// scale (as in [`super::run`]), byte 2 bit 0: the fast table has its own hash seed
/// (the other bits); then operations, `op % 8` selecting, `op >> 4` stepping the
/// clock by 250 ms before it, `op` bit 3 polling expired entries after it:
///
/// - `0..=2`: a burst: count byte (`% 49`), then that many packets (two bytes each,
///   see [`packet`]);
/// - `3`, `4`: known-flow packets: count byte (`% 8 + 1`), packets;
/// - `5`: insert: original key byte, key byte whose reversal is the reply, flags byte
///   (bit 7: no TCP flags);
/// - `6`: remove the flow of a packet's key;
/// - `7`: advance: seconds byte (`% 64`); bit 7 of it: only `poll_evicted`.
pub fn run(data: &[u8]) {
    let mut input = Bytes { data };
    let config = config(input.byte(), input.byte());
    let seed = input.byte();
    let fast = if seed & 1 != 0 {
        Conntrack::with_hash_seed(config.clone(), u64::from(seed).wrapping_mul(0x9e37_79b9))
    } else {
        Conntrack::new(config.clone())
    };
    let mut d = Differential {
        fast,
        full: Conntrack::new(config),
        now: Instant::from_secs(1),
        out: Vec::new(),
        burst: Vec::new(),
    };
    while !input.data.is_empty() {
        let op = input.byte();
        d.now = d.now + Duration::from_millis(250 * u64::from(op >> 4));
        match op % 8 {
            0..=2 => {
                let n = input.byte() % (MAX_BURST + 1);
                let mut burst = std::mem::take(&mut d.burst);
                burst.clear();
                burst.extend((0..n).map(|_| packet(&mut input)));
                d.burst(&burst);
                d.burst = burst;
            }
            3 | 4 => {
                for _ in 0..input.byte() % 8 + 1 {
                    let p = packet(&mut input);
                    d.known(p);
                }
            }
            5 => {
                let (k, nat, f) = (input.byte(), input.byte(), input.byte());
                let original = key(k);
                let mut reply = key(nat).reversed();
                reply.proto = original.proto;
                let tcp = (f & 0x80 == 0).then(|| flags(f));
                d.insert(original, reply, tcp);
            }
            6 => {
                let (k, _, _) = packet(&mut input);
                d.remove(&k);
            }
            _ => {
                let b = input.byte();
                d.now = d.now + Duration::from_secs(u64::from(b % 64));
                d.poll(b & 0x80 != 0);
            }
        }
        if op & 8 != 0 {
            d.poll(false);
        }
        d.compare();
    }
    d.now = d.now + Duration::from_secs(3600);
    d.poll(false);
    d.compare();
    assert!(d.fast.is_empty(), "entries outlived every timeout");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_empty_and_short_inputs() {
        run(&[]);
        run(&[0]);
        run(&[4, 0, 1, 0, 3, 0, 2]);
        run(&[0xff; 64]);
    }

    #[test]
    fn a_nat_entry_gives_its_reply_tuple_to_the_fast_path() {
        let config = config(4, 0);
        let mut d = Differential {
            fast: Conntrack::new(config.clone()),
            full: Conntrack::new(config),
            now: Instant::from_secs(1),
            out: Vec::new(),
            burst: Vec::new(),
        };
        let syn = Some(flags(2));
        let reply = key(6).reversed();
        d.insert(key(0), reply, syn);
        // A reply on the NAT's tuple: the other tuple is the original, not `key(6)`.
        let known = d.fast.track_known(d.now, &reply, Some(flags(0x0a)), 60);
        assert_eq!(known.map(|k| k.other), Some(key(0)));
        d.full
            .track(d.now, &reply, Some(flags(0x0a)), 60)
            .expect("a reply");
        d.known((key(0), Some(flags(0x08)), 60));
        d.compare();
        // The same through the byte format: insert, then known packets both ways.
        run(&[4, 0, 0, 5, 0, 6, 2, 3, 1, 6, 0x1a, 0, 8, 7, 10]);
    }
}

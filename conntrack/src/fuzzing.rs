//! Fuzzing harness, shared by the cargo-fuzz target `fuzz/fuzz_targets/conntrack_ops.rs`,
//! the stable corpus replay test `tests/fuzz_corpus.rs` and the proptests
//! (`tests/model.rs`).
//!
//! Not part of the stable API (hidden from docs). [`CheckedConntrack`] wraps a
//! [`Conntrack`] together with a reference model (plain `HashMap`s of flows and
//! tuples) and checks, after every operation, what the table promises:
//!
//! - no panic, whatever the sequence of `track`/`insert`/`remove`/time steps;
//! - never more than `capacity` entries; the internal structures agree
//!   ([`Conntrack::check_invariants`]);
//! - every tuple of the model is found, with its id and direction; nothing else is;
//! - a new flow is refused as full only when every entry is assured; an entry leaves
//!   only by `remove`, by expiry (reported with no time left) or by eviction, and an
//!   evicted entry was never assured;
//! - `poll_expired` returns only entries whose time is up, and after it returns `None`
//!   no entry's time is up; refusals match the model (`NotNew`, `Clash`).
//!
//! [`run`] decodes a byte string into a configuration and a sequence of [`Op`]s.
//! [`fastpath`] is the differential harness of the fast paths (`track_burst`,
//! `track_known`) against the full one.

pub mod fastpath;

use core::time::Duration;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{
    Conntrack, ConntrackConfig, Direction, EntryInfo, FlowId, FlowKey, Instant, Proto, Refused,
    State, TcpFlags, Timeouts, Tracked, Zone,
};

/// One operation on the table. Keys are drawn from a small alphabet ([`key`]) so that
/// flows meet, reply and clash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `track` the packet of alphabet key `key` (reversed if `reply`), with TCP flags
    /// from `flags` (low 4 bits: FIN SYN RST ACK), `len` bytes, `step_ms` after the
    /// previous operation.
    Track {
        /// Alphabet index.
        key: u8,
        /// Send the reversed key.
        reply: bool,
        /// TCP flags bits.
        flags: u8,
        /// Packet length.
        len: u16,
        /// Time step in milliseconds.
        step_ms: u16,
    },
    /// `insert` with original `key(key)` and reply `key(nat).reversed()`; `flags` as
    /// in `Track`, `None` when bit 7 is set.
    Insert {
        /// Alphabet index of the original tuple.
        key: u8,
        /// Alphabet index whose reversal is the reply tuple.
        nat: u8,
        /// TCP flags bits (bit 7: none).
        flags: u8,
    },
    /// `remove` the `pick`-th live flow (modulo their number), or a stale id when
    /// `stale` is set.
    Remove {
        /// Which flow.
        pick: u8,
        /// Use a removed id instead.
        stale: bool,
    },
    /// Let `secs` seconds pass, then `poll_expired` until `None`.
    Advance {
        /// Seconds.
        secs: u16,
    },
    /// Check every lookup and the listing.
    Check,
}

/// The `i`-th key of the alphabet: protocol, zone, addresses (IPv4 or IPv6) and ports.
pub fn key(i: u8) -> FlowKey {
    let proto = match i % 3 {
        0 => Proto::Tcp,
        1 => Proto::Udp,
        _ => Proto::IcmpEcho,
    };
    let zone = Zone(u16::from((i / 3) % 2));
    let host = (i / 6) % 4;
    let ipv6 = (i / 24) % 2 == 1;
    let port_sel = u16::from((i / 48) % 4);
    let (src, dst): (IpAddr, IpAddr) = if ipv6 {
        (
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100 + u16::from(host)).into(),
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
        )
    } else {
        (
            Ipv4Addr::new(10, 0, 2, 100 + host).into(),
            Ipv4Addr::new(10, 0, 2, 2).into(),
        )
    };
    match proto {
        Proto::IcmpEcho => FlowKey::icmp_echo(zone, src, dst, 7 + port_sel),
        _ => FlowKey {
            zone,
            proto,
            src,
            src_port: 40000 + port_sel,
            dst,
            dst_port: 80,
        },
    }
}

/// TCP flags from the low 4 bits: FIN, SYN, RST, ACK.
fn flags(bits: u8) -> TcpFlags {
    TcpFlags {
        fin: bits & 1 != 0,
        syn: bits & 2 != 0,
        rst: bits & 4 != 0,
        ack: bits & 8 != 0,
    }
}

/// A flow of the model.
#[derive(Clone, Debug)]
struct ModelFlow {
    keys: [FlowKey; 2],
    assured: bool,
    created: Instant,
}

/// A [`Conntrack`] plus a reference model; every method checks the invariants and
/// panics (with a message) on a violation.
#[derive(Debug)]
pub struct CheckedConntrack {
    /// The table under test.
    pub table: Conntrack,
    /// The current time.
    pub now: Instant,
    flows: HashMap<FlowId, ModelFlow>,
    tuples: HashMap<FlowKey, (FlowId, Direction)>,
    removed: Vec<FlowId>,
}

impl CheckedConntrack {
    /// A new, empty table at time 1 s.
    pub fn new(config: ConntrackConfig) -> Self {
        Self {
            table: Conntrack::new(config),
            now: Instant::from_secs(1),
            flows: HashMap::new(),
            tuples: HashMap::new(),
            removed: Vec::new(),
        }
    }

    fn forget(&mut self, id: FlowId) -> ModelFlow {
        let flow = self
            .flows
            .remove(&id)
            .unwrap_or_else(|| panic!("{id:?} reported but not in the model"));
        for key in &flow.keys {
            self.tuples.remove(key);
        }
        self.removed.push(id);
        flow
    }

    fn learn(&mut self, id: FlowId, original: FlowKey, reply: FlowKey) {
        assert!(!self.flows.contains_key(&id), "{id:?} reused while live");
        assert!(!self.removed.contains(&id), "{id:?} reused after removal");
        self.tuples.insert(reply, (id, Direction::Reply));
        self.tuples.insert(original, (id, Direction::Original));
        self.flows.insert(
            id,
            ModelFlow {
                keys: [original, reply],
                assured: false,
                created: self.now,
            },
        );
    }

    /// Takes the entries evicted by the last operation out of the model.
    fn absorb_evictions(&mut self) {
        while let Some(info) = self.table.poll_evicted() {
            let flow = self.forget(info.id);
            assert_eq!(flow.keys, [info.original, info.reply]);
            assert!(
                !flow.assured || info.remaining.is_zero(),
                "assured entry evicted before its expiry: {info:?}"
            );
            assert!(!info.assured || info.remaining.is_zero());
        }
    }

    fn all_assured(&self) -> bool {
        self.flows.values().all(|f| f.assured)
    }

    /// `track`, checked against the model.
    pub fn track(&mut self, key: &FlowKey, tcp: Option<TcpFlags>, len: usize) {
        let full_before = self.table.len() >= self.table.capacity();
        let all_assured_before = self.all_assured();
        let known = self.tuples.get(key).copied();
        let result = self.table.track(self.now, key, tcp, len);
        self.absorb_evictions();
        match (known, result) {
            (Some((id, dir)), Ok(tracked)) => {
                assert_eq!((tracked.id, tracked.direction), (id, dir));
                let flow = self.flows.get_mut(&id).expect("model flow");
                if tracked.new {
                    assert_eq!(key.proto, Proto::Tcp, "only TCP restarts");
                    assert_eq!(dir, Direction::Original);
                    assert_eq!(tracked.state, State::TcpSynSent);
                    flow.assured = false;
                }
                Self::note_state(flow, tracked, self.now);
            }
            (Some(known), Err(refused)) => {
                panic!("known flow {known:?} refused: {refused:?}")
            }
            (None, Ok(tracked)) => {
                assert!(tracked.new, "unknown tuple tracked as existing");
                assert_eq!(tracked.direction, Direction::Original);
                self.learn(tracked.id, *key, key.reversed());
                let flow = self.flows.get_mut(&tracked.id).expect("just learned");
                Self::note_state(flow, tracked, self.now);
            }
            (None, Err(Refused::NotNew)) => {
                assert_eq!(key.proto, Proto::Tcp);
                assert!(!tcp.is_some_and(starts_flow), "a SYN may start a flow");
            }
            (None, Err(Refused::Clash)) => {
                assert!(self.tuples.contains_key(&key.reversed()));
            }
            (None, Err(Refused::TableFull)) => {
                assert!(full_before && all_assured_before, "refused with room");
            }
        }
        self.check_sizes();
    }

    fn note_state(flow: &mut ModelFlow, tracked: Tracked, now: Instant) {
        // A replied UDP flow is a stream (assured) only two seconds after it started,
        // as in Linux; TCP once established; ICMP once replied.
        let stream = flow.keys[0].proto != Proto::Udp
            || now.saturating_duration_since(flow.created) > Duration::from_secs(2);
        match tracked.state {
            State::TcpEstablished => flow.assured = true,
            State::Replied if stream => flow.assured = true,
            _ => {}
        }
    }

    /// `insert`, checked against the model.
    pub fn insert(&mut self, original: FlowKey, reply: FlowKey, tcp: Option<TcpFlags>) {
        let full_before = self.table.len() >= self.table.capacity();
        let all_assured_before = self.all_assured();
        let result = self.table.insert(self.now, original, reply, tcp);
        self.absorb_evictions();
        let not_new = original.proto == Proto::Tcp && tcp.is_some_and(|f| !starts_flow(f));
        let clash = self.tuples.contains_key(&original) || self.tuples.contains_key(&reply);
        match result {
            Ok(id) => {
                assert!(
                    !not_new && !clash,
                    "insert accepted: {original:?} {reply:?}"
                );
                self.learn(id, original, reply);
                let info = self.table.entry(id, self.now).expect("inserted entry");
                assert_eq!(info.original_counters.packets, 0);
            }
            Err(Refused::NotNew) => assert!(not_new),
            Err(Refused::Clash) => assert!(!not_new && clash),
            Err(Refused::TableFull) => {
                assert!(!not_new && !clash);
                assert!(full_before && all_assured_before, "refused with room");
            }
        }
        self.check_sizes();
    }

    /// `remove` of the `pick`-th live flow (or of a stale id), checked.
    pub fn remove(&mut self, pick: u8, stale: bool) {
        if stale {
            if let Some(&id) = self
                .removed
                .get(usize::from(pick) % self.removed.len().max(1))
            {
                assert!(!self.table.remove(id), "stale id removed something");
                assert!(self.table.entry(id, self.now).is_none());
            }
            return;
        }
        let mut ids: Vec<FlowId> = self.flows.keys().copied().collect();
        ids.sort();
        let Some(&id) = ids.get(usize::from(pick) % ids.len().max(1)) else {
            return;
        };
        assert!(self.table.remove(id));
        self.forget(id);
        assert!(!self.table.remove(id));
        self.check_sizes();
    }

    /// Lets `step` pass and polls expired entries until `None`.
    pub fn advance(&mut self, step: Duration) {
        self.now = self.now + step;
        self.poll_all();
    }

    fn poll_all(&mut self) {
        let mut guard = 0usize;
        while let Some(info) = self.table.poll_expired(self.now) {
            assert!(info.remaining.is_zero(), "expired with time left: {info:?}");
            self.forget(info.id);
            guard += 1;
            assert!(guard <= self.table.capacity() + 1, "poll_expired loops");
        }
        if let Some(due) = self.table.poll_timeout() {
            assert!(
                due > self.now,
                "due at {due} but nothing expired at {}",
                self.now
            );
        }
        assert_eq!(self.table.poll_timeout().is_none(), self.table.is_empty());
        for info in self.table.entries(self.now) {
            assert!(
                !info.remaining.is_zero(),
                "unexpired after polling: {info:?}"
            );
        }
        self.check_sizes();
    }

    fn check_sizes(&self) {
        assert!(self.table.len() <= self.table.capacity());
        assert_eq!(self.table.len(), self.flows.len());
        assert_eq!(
            self.table.unassured_len(),
            self.flows.values().filter(|f| !f.assured).count()
        );
    }

    /// Checks every lookup, entry and the listing against the model.
    pub fn check(&self) {
        self.table.check_invariants();
        for (key, &(id, dir)) in &self.tuples {
            assert_eq!(self.table.lookup(key), Some((id, dir)), "{key:?}");
        }
        for i in 0..=u8::MAX {
            let k = key(i);
            for k in [k, k.reversed()] {
                assert_eq!(self.table.lookup(&k), self.tuples.get(&k).copied());
            }
        }
        let entries = self.table.entries(self.now);
        assert_eq!(entries.len(), self.flows.len());
        for info in &entries {
            let flow = &self.flows[&info.id];
            assert_eq!([info.original, info.reply], flow.keys);
            assert_eq!(info.assured, flow.assured, "{info:?}");
            check_listing(info);
        }
        for id in &self.removed {
            assert!(self.table.entry(*id, self.now).is_none());
        }
    }

    /// Applies one operation.
    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Track {
                key: k,
                reply,
                flags: f,
                len,
                step_ms,
            } => {
                self.now = self.now + Duration::from_millis(u64::from(step_ms));
                let k = if reply { key(k).reversed() } else { key(k) };
                let tcp = (k.proto == Proto::Tcp).then(|| flags(f));
                self.track(&k, tcp, usize::from(len));
            }
            Op::Insert {
                key: k,
                nat,
                flags: f,
            } => {
                let tcp = (f & 0x80 == 0).then(|| flags(f));
                let original = key(k);
                let mut reply = key(nat).reversed();
                // Same protocol for both tuples, as NAT keeps it.
                reply.proto = original.proto;
                self.insert(original, reply, tcp);
            }
            Op::Remove { pick, stale } => self.remove(pick, stale),
            Op::Advance { secs } => self.advance(Duration::from_secs(u64::from(secs))),
            Op::Check => self.check(),
        }
    }
}

/// SYN without ACK or RST (FIN does not matter): may open a flow, as Linux classifies.
fn starts_flow(f: TcpFlags) -> bool {
    f.syn && !f.ack && !f.rst
}

/// The listing of an entry parses back to its fields.
fn check_listing(info: &EntryInfo) {
    let line = info.to_conntrack_line();
    assert!(line.ends_with("use=1"), "{line}");
    assert_eq!(line.contains("[ASSURED]"), info.assured, "{line}");
    assert_eq!(line.contains("[UNREPLIED]"), info.is_unreplied(), "{line}");
    let secs = line
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse::<u64>().ok());
    assert_eq!(secs, Some(info.remaining.as_secs()), "{line}");
    assert_eq!(line.matches("src=").count(), 2, "{line}");
}

/// A cursor over the fuzzer's bytes that yields zeros once exhausted.
#[derive(Debug)]
struct Bytes<'a> {
    data: &'a [u8],
}

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
}

/// Decodes one operation (see [`run`]).
fn decode(input: &mut Bytes<'_>) -> Op {
    let op = input.byte();
    match op % 8 {
        0..=3 => Op::Track {
            key: input.byte(),
            reply: op & 0x80 != 0,
            flags: input.byte(),
            len: u16::from(input.byte()) * 6,
            step_ms: u16::from(op >> 3 & 0x0f) * 100,
        },
        4 => Op::Insert {
            key: input.byte(),
            nat: input.byte(),
            flags: input.byte(),
        },
        5 => Op::Remove {
            pick: input.byte(),
            stale: op & 0x80 != 0,
        },
        6 => Op::Advance {
            secs: u16::from(input.byte() % 64),
        },
        _ => Op::Check,
    }
}

/// The configuration encoded by two bytes: capacity `b0 % 17`; timeouts of a few
/// seconds (`b1` scales them), so that expiry happens within a short input.
fn config(b0: u8, b1: u8) -> ConntrackConfig {
    let s = |base: u64| Duration::from_secs(base + u64::from(b1 % 8));
    ConntrackConfig {
        capacity: usize::from(b0 % 17),
        timeouts: Timeouts {
            tcp_syn_sent: s(4),
            tcp_syn_recv: s(3),
            tcp_established: s(60),
            tcp_fin_wait: s(4),
            tcp_close_wait: s(3),
            tcp_last_ack: s(2),
            tcp_time_wait: s(4),
            tcp_close: s(1),
            udp: s(2),
            udp_stream: s(8),
            icmp: s(2),
        },
    }
}

/// Decodes `data` into a configuration and operations and runs them through a
/// [`CheckedConntrack`]. Panics on an invariant violation; that is what the fuzzer
/// hunts.
///
/// Format (missing bytes read as zero): byte 0 capacity (`% 17`), byte 1 timeout
/// scale; then operations, selected by `op % 8`:
///
/// - `0..=3`: track: key byte, flags byte (FIN SYN RST ACK in the low bits), length
///   byte (x 6); `op` bit 7 reverses the key, bits 3..6 step the clock (x 100 ms);
/// - `4`: insert: key byte, NAT byte (the reply is that key reversed), flags byte
///   (bit 7: none);
/// - `5`: remove: pick byte (`op` bit 7: a stale id);
/// - `6`: advance: seconds byte (`% 64`), then poll expired entries;
/// - `7`: check lookups and the listing.
pub fn run(data: &[u8]) {
    let mut input = Bytes { data };
    let mut ct = CheckedConntrack::new(config(input.byte(), input.byte()));
    while !input.data.is_empty() {
        let op = decode(&mut input);
        ct.apply(op);
    }
    ct.check();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_empty_and_short_inputs() {
        run(&[]);
        run(&[0]);
        run(&[4, 0, 0, 0, 2, 0]);
        run(&[0xff; 64]);
    }

    #[test]
    fn alphabet_covers_protocols_zones_and_families() {
        let keys: Vec<FlowKey> = (0..=u8::MAX).map(key).collect();
        assert!(
            keys.iter()
                .any(|k| k.proto == Proto::IcmpEcho && k.is_ipv6())
        );
        assert!(
            keys.iter()
                .any(|k| k.zone == Zone(1) && k.proto == Proto::Tcp)
        );
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert!(distinct.len() >= 150);
    }
}

//! The connection table: flows indexed by both tuples, with states, timeouts, counters
//! and a bound.
//!
//! Layer: sans-IO core. No syscalls, no clock (every call takes `now`), no allocation
//! on the per-packet path: slots, index, timer heap and eviction list are reserved at
//! full capacity up front (up to [`PREALLOCATE_MAX`] flows; beyond that they grow on
//! demand, amortised).
//!
//! Structure, after Linux nf_conntrack (`net/netfilter/nf_conntrack_core.c`):
//!
//! - a slab of entries (`slots`); a [`FlowId`] is the slot index plus the slot's
//!   generation, bumped whenever the slot is freed, so a stale id never names a new flow;
//! - one hash index holding two items per flow, as the kernel's `tuplehash[2]`: the
//!   original tuple and the reply tuple, each tagged with its [`Direction`]. Items are
//!   4 bytes (slot and direction), stored beside 32 bits of the key's hash (see
//!   `index.rs`); keys are compared against the entry itself, which the packet path
//!   reads anyway, only when those bits match;
//! - an indexed min-heap of expiry deadlines, re-keyed lazily (see `timer.rs`);
//! - the list of unassured entries in creation order, the victims of `early_drop()`
//!   when the table is full (see `unassured.rs`).
//!
//! Invariants: `len() <= capacity`; every live entry has exactly its two tuples in the
//! index (one when both are equal), one heap item, and is on the unassured list iff it
//! is not assured; an assured entry leaves the table only by expiry or `remove`.
//!
//! An entry lives until [`Conntrack::poll_expired`] reports it or [`Conntrack::remove`]
//! removes it: a packet for an entry whose time is up but which has not been polled yet
//! refreshes it, as if the shell had polled a moment later.

use core::time::Duration;
use std::collections::VecDeque;
use std::net::IpAddr;

use tapnet_wire::Instant;

use crate::index::Index;
use crate::tcp::{self, Segment, Step};
use crate::timer::Timer;
use crate::unassured::Unassured;
use crate::{FlowKey, Proto};

/// Most flows whose memory is reserved up front; beyond this the table grows on demand.
pub const PREALLOCATE_MAX: usize = 1 << 20;

/// Largest capacity honoured: slot numbers must fit 31 bits (the index tags them with
/// the direction).
pub const CAPACITY_MAX: usize = (1 << 31) - 1;

/// Timeouts, with Linux nf_conntrack's defaults (`net.netfilter.nf_conntrack_*_timeout*`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timeouts {
    /// SYN seen, no answer yet (`nf_conntrack_tcp_timeout_syn_sent`, 120 s).
    pub tcp_syn_sent: Duration,
    /// SYN+ACK seen (`nf_conntrack_tcp_timeout_syn_recv`, 60 s).
    pub tcp_syn_recv: Duration,
    /// Handshake completed (`nf_conntrack_tcp_timeout_established`, 5 days).
    pub tcp_established: Duration,
    /// One side sent FIN (`nf_conntrack_tcp_timeout_fin_wait`, 120 s).
    pub tcp_fin_wait: Duration,
    /// That FIN was acknowledged (`nf_conntrack_tcp_timeout_close_wait`, 60 s).
    pub tcp_close_wait: Duration,
    /// Both sides sent FIN (`nf_conntrack_tcp_timeout_last_ack`, 30 s).
    pub tcp_last_ack: Duration,
    /// The last FIN was acknowledged (`nf_conntrack_tcp_timeout_time_wait`, 120 s).
    pub tcp_time_wait: Duration,
    /// Reset (`nf_conntrack_tcp_timeout_close`, 10 s).
    pub tcp_close: Duration,
    /// UDP flow seen in one direction only (`nf_conntrack_udp_timeout`, 30 s).
    pub udp: Duration,
    /// UDP flow that has seen replies (`nf_conntrack_udp_timeout_stream`, 120 s).
    pub udp_stream: Duration,
    /// ICMP echo (`nf_conntrack_icmp_timeout`, 30 s).
    pub icmp: Duration,
}

impl Default for Timeouts {
    /// Linux's defaults (`nf_conntrack_proto_{tcp,udp,icmp}.c`).
    fn default() -> Self {
        const fn secs(s: u64) -> Duration {
            Duration::from_secs(s)
        }
        Self {
            tcp_syn_sent: secs(120),
            tcp_syn_recv: secs(60),
            tcp_established: secs(5 * 24 * 3600),
            tcp_fin_wait: secs(120),
            tcp_close_wait: secs(60),
            tcp_last_ack: secs(30),
            tcp_time_wait: secs(120),
            tcp_close: secs(10),
            udp: secs(30),
            udp_stream: secs(120),
            icmp: secs(30),
        }
    }
}

impl Timeouts {
    /// The names [`Timeouts::set`] takes, as Linux's `nf_conntrack_*_timeout` sysctls
    /// name them (without the prefix).
    pub const NAMES: [&'static str; 11] = [
        "tcp_syn_sent",
        "tcp_syn_recv",
        "tcp_established",
        "tcp_fin_wait",
        "tcp_close_wait",
        "tcp_last_ack",
        "tcp_time_wait",
        "tcp_close",
        "udp",
        "udp_stream",
        "icmp",
    ];

    /// Sets the timeout called `name` (one of [`Timeouts::NAMES`]); `false`, and
    /// nothing changes, for an unknown name.
    pub fn set(&mut self, name: &str, value: Duration) -> bool {
        let field = match name {
            "tcp_syn_sent" => &mut self.tcp_syn_sent,
            "tcp_syn_recv" => &mut self.tcp_syn_recv,
            "tcp_established" => &mut self.tcp_established,
            "tcp_fin_wait" => &mut self.tcp_fin_wait,
            "tcp_close_wait" => &mut self.tcp_close_wait,
            "tcp_last_ack" => &mut self.tcp_last_ack,
            "tcp_time_wait" => &mut self.tcp_time_wait,
            "tcp_close" => &mut self.tcp_close,
            "udp" => &mut self.udp,
            "udp_stream" => &mut self.udp_stream,
            "icmp" => &mut self.icmp,
            _ => return false,
        };
        *field = value;
        true
    }

    /// The timeout of an entry of protocol `proto` in `state`.
    #[inline]
    pub fn for_state(&self, proto: Proto, state: State) -> Duration {
        match (proto, state) {
            (Proto::Udp, State::Replied) => self.udp_stream,
            (Proto::Udp, _) => self.udp,
            (Proto::IcmpEcho, _) => self.icmp,
            (Proto::Tcp, State::TcpSynSent | State::Unreplied | State::Replied) => {
                self.tcp_syn_sent
            }
            (Proto::Tcp, State::TcpSynRecv) => self.tcp_syn_recv,
            (Proto::Tcp, State::TcpEstablished) => self.tcp_established,
            (Proto::Tcp, State::TcpFinWait) => self.tcp_fin_wait,
            (Proto::Tcp, State::TcpCloseWait) => self.tcp_close_wait,
            (Proto::Tcp, State::TcpLastAck) => self.tcp_last_ack,
            (Proto::Tcp, State::TcpTimeWait) => self.tcp_time_wait,
            (Proto::Tcp, State::TcpClose) => self.tcp_close,
        }
    }
}

/// Table settings.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConntrackConfig {
    /// Most entries held at once (`nf_conntrack_max`); at most [`CAPACITY_MAX`].
    pub capacity: usize,
    /// Per-state timeouts.
    pub timeouts: Timeouts,
}

impl Default for ConntrackConfig {
    /// 262144 entries (about 50 MB when full), Linux's timeouts.
    fn default() -> Self {
        Self {
            capacity: 262_144,
            timeouts: Timeouts::default(),
        }
    }
}

/// A handle to an entry; stable while the entry lives, never reused for another flow
/// while a stale handle could still be held (generation-checked).
///
/// The low 32 bits are the slot, the high 32 bits the slot's generation. A generation
/// wraps only after 2^32 flows have used the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct FlowId(pub u64);

impl FlowId {
    fn new(slot: u32, generation: u32) -> Self {
        Self(u64::from(generation) << 32 | u64::from(slot))
    }

    fn slot(self) -> u32 {
        // Truncation intended: the low half is the slot.
        (self.0 & u64::from(u32::MAX)) as u32
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

impl core::fmt::Display for FlowId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Which way a packet travels relative to the packet that created the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Same way as the packet that created the entry (the original tuple).
    Original,
    /// The other way (the reply tuple).
    Reply,
}

impl Direction {
    #[inline]
    fn index(self) -> usize {
        match self {
            Self::Original => 0,
            Self::Reply => 1,
        }
    }
}

/// TCP header flags that drive the state machine (RFC 9293 section 3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// SYN: synchronize sequence numbers (opens a connection).
    pub syn: bool,
    /// ACK: the acknowledgment field is significant.
    pub ack: bool,
    /// FIN: no more data from the sender.
    pub fin: bool,
    /// RST: reset the connection.
    pub rst: bool,
}

impl TcpFlags {
    /// SYN only: the first segment of a connection.
    pub const SYN: Self = Self {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
    };
    /// SYN+ACK: the answer to a SYN.
    pub const SYN_ACK: Self = Self {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
    };
    /// ACK only.
    pub const ACK: Self = Self {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };
    /// FIN+ACK.
    pub const FIN_ACK: Self = Self {
        syn: false,
        ack: true,
        fin: true,
        rst: false,
    };
    /// RST.
    pub const RST: Self = Self {
        syn: false,
        ack: false,
        fin: false,
        rst: true,
    };

    /// From the flags byte of a TCP header (byte 13: CWR ECE URG ACK PSH RST SYN FIN).
    pub const fn from_header_byte(byte: u8) -> Self {
        Self {
            fin: byte & 0x01 != 0,
            syn: byte & 0x02 != 0,
            rst: byte & 0x04 != 0,
            ack: byte & 0x10 != 0,
        }
    }
}

/// Connection state, as `conntrack -L` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum State {
    /// UDP or ICMP: not yet replied.
    #[serde(rename = "UNREPLIED")]
    Unreplied,
    /// UDP or ICMP: replied.
    #[serde(rename = "REPLIED")]
    Replied,
    /// TCP: SYN seen (`SYN_SENT`).
    #[serde(rename = "SYN_SENT")]
    TcpSynSent,
    /// TCP: SYN+ACK seen (`SYN_RECV`).
    #[serde(rename = "SYN_RECV")]
    TcpSynRecv,
    /// TCP: handshake completed (`ESTABLISHED`).
    #[serde(rename = "ESTABLISHED")]
    TcpEstablished,
    /// TCP: one side sent FIN (`FIN_WAIT`).
    #[serde(rename = "FIN_WAIT")]
    TcpFinWait,
    /// TCP: the first FIN was acknowledged (`CLOSE_WAIT`).
    #[serde(rename = "CLOSE_WAIT")]
    TcpCloseWait,
    /// TCP: both sides sent FIN (`LAST_ACK`).
    #[serde(rename = "LAST_ACK")]
    TcpLastAck,
    /// TCP: the last FIN was acknowledged (`TIME_WAIT`).
    #[serde(rename = "TIME_WAIT")]
    TcpTimeWait,
    /// TCP: reset (`CLOSE`).
    #[serde(rename = "CLOSE")]
    TcpClose,
}

impl State {
    /// The name `conntrack -L` prints (for TCP) and `--json` uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unreplied => "UNREPLIED",
            Self::Replied => "REPLIED",
            Self::TcpSynSent => "SYN_SENT",
            Self::TcpSynRecv => "SYN_RECV",
            Self::TcpEstablished => "ESTABLISHED",
            Self::TcpFinWait => "FIN_WAIT",
            Self::TcpCloseWait => "CLOSE_WAIT",
            Self::TcpLastAck => "LAST_ACK",
            Self::TcpTimeWait => "TIME_WAIT",
            Self::TcpClose => "CLOSE",
        }
    }
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a packet could not be tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The table is full and holds no unreplied flow to evict: the new flow is refused,
    /// existing flows are kept.
    TableFull,
    /// A TCP packet without SYN for an unknown flow (no mid-stream pickup).
    NotNew,
    /// The new flow's original or reply tuple already belongs to another entry (Linux:
    /// a clash at `nf_conntrack_confirm()`; with NAT, pick another tuple).
    Clash,
}

impl core::fmt::Display for Refused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TableFull => "conntrack table full",
            Self::NotNew => "packet cannot start a flow",
            Self::Clash => "tuple already tracked by another flow",
        })
    }
}

impl std::error::Error for Refused {}

/// Per-direction counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Packets tracked.
    pub packets: u64,
    /// Their bytes (as passed to [`Conntrack::track`]).
    pub bytes: u64,
}

/// One entry, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    /// The entry's handle.
    pub id: FlowId,
    /// Its protocol.
    pub proto: Proto,
    /// The tuple of the packet that created it.
    pub original: FlowKey,
    /// The tuple replies carry.
    pub reply: FlowKey,
    /// Its state.
    pub state: State,
    /// Time left before the entry expires.
    pub remaining: Duration,
    /// Seen traffic both ways (TCP: established): protected from early eviction.
    pub assured: bool,
    /// Counters of the original direction.
    pub original_counters: Counters,
    /// Counters of the reply direction.
    pub reply_counters: Counters,
}

impl EntryInfo {
    /// No packet has been seen in the reply direction (`[UNREPLIED]`, the inverse of
    /// Linux's `IPS_SEEN_REPLY`).
    pub fn is_unreplied(&self) -> bool {
        self.reply_counters.packets == 0
    }
}

/// The result of tracking one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// The entry.
    pub id: FlowId,
    /// The packet's direction in it.
    pub direction: Direction,
    /// The packet created the entry, or (TCP) a SYN restarted a `TIME_WAIT`/`CLOSE`
    /// entry for a new connection on the same ports (same id, counters reset): the
    /// owner should treat the flow as new (e.g. open a new host socket).
    pub new: bool,
    /// The entry's state after the packet.
    pub state: State,
}

/// The result of [`Conntrack::track_known`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownFlow {
    /// What [`Conntrack::track`] would have returned.
    pub tracked: Tracked,
    /// The entry's tuple for the other direction: the reply tuple when the packet
    /// matched the original one, and the other way round.
    pub other: FlowKey,
}

/// Event counts since the table was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConntrackStats {
    /// Entries created (by `track` or `insert`).
    pub created: u64,
    /// Entries removed by expiry (reported through `poll_expired`).
    pub expired: u64,
    /// Unassured entries evicted to make room (Linux `early_drop`).
    pub evicted: u64,
    /// New flows refused because the table was full of assured entries.
    pub refused_full: u64,
    /// Packets that could not start a flow (TCP without SYN for an unknown flow).
    pub refused_not_new: u64,
    /// New flows refused because a tuple was taken.
    pub clashes: u64,
    /// TCP packets that did not fit the flow's state (left the state alone).
    pub tcp_invalid: u64,
}

/// Flag bits of an entry (besides the [`tcp::fin`] bits).
mod flag {
    /// `IPS_ASSURED`.
    pub(super) const ASSURED: u8 = 1 << 7;
}

/// One tracked flow. `keys[d]` and `counters[d]` are indexed by [`Direction::index`].
/// How long a replied UDP flow must live before it counts as a stream (Linux's
/// `stream_ts`, two seconds).
const UDP_STREAM_AFTER: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
struct Entry {
    keys: [FlowKey; 2],
    counters: [Counters; 2],
    /// When the entry expires: the last valid packet plus the state's timeout.
    expires: Instant,
    /// The entry's key in the timer heap: never later than `expires`.
    scheduled: Instant,
    state: State,
    /// [`flag::ASSURED`] and the [`tcp::fin`] bits.
    flags: u8,
    /// When the entry was created (Linux's UDP `stream_ts` is two seconds later).
    created: Instant,
}

impl Entry {
    #[inline]
    fn assured(&self) -> bool {
        self.flags & flag::ASSURED != 0
    }

    fn info(&self, id: FlowId, now: Instant) -> EntryInfo {
        EntryInfo {
            id,
            proto: self.keys[0].proto,
            original: self.keys[0],
            reply: self.keys[1],
            state: self.state,
            remaining: self.expires.saturating_duration_since(now),
            assured: self.assured(),
            original_counters: self.counters[0],
            reply_counters: self.counters[1],
        }
    }
}

/// A slab slot: the generation survives the entry.
#[derive(Clone, Debug)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// An index item: the slot in the high 31 bits, the direction in bit 0.
type IndexItem = u32;

#[inline]
fn item(slot: u32, dir: Direction) -> IndexItem {
    slot << 1 | u32::from(dir == Direction::Reply)
}

#[inline]
fn item_slot(item: IndexItem) -> u32 {
    item >> 1
}

#[inline]
fn item_dir(item: IndexItem) -> Direction {
    if item & 1 == 0 {
        Direction::Original
    } else {
        Direction::Reply
    }
}

/// The hash of a key: packs it into a few words (no per-field `Hash` calls) and runs
/// foldhash over them.
#[inline]
fn hash_key(state: &foldhash::fast::FixedState, key: &FlowKey) -> u64 {
    use core::hash::BuildHasher;
    let proto: u64 = match key.proto {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::IcmpEcho => 1,
    };
    let head = u64::from(key.zone.0) << 48
        | proto << 40
        | u64::from(key.src_port) << 16
        | u64::from(key.dst_port);
    match (key.src, key.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => state.hash_one((
            head,
            u64::from(src.to_bits()) << 32 | u64::from(dst.to_bits()),
        )),
        (src, dst) => {
            let bits = |addr: IpAddr| match addr {
                IpAddr::V4(a) => u128::from(a.to_bits()) | 1 << 127,
                IpAddr::V6(a) => a.to_bits(),
            };
            state.hash_one((head | 1 << 32, bits(src), bits(dst)))
        }
    }
}

/// The connection table: bounded, with timeouts; sans-IO (time is passed in).
#[derive(Debug)]
pub struct Conntrack {
    config: ConntrackConfig,
    slots: Vec<Slot>,
    /// Free slot numbers (a stack: recently freed slots are warm in cache).
    free: Vec<u32>,
    index: Index,
    hasher: foldhash::fast::FixedState,
    timer: Timer,
    unassured: Unassured,
    /// Entries removed to make room, waiting to be reported by `poll_expired`.
    evicted: VecDeque<EntryInfo>,
    len: usize,
    stats: ConntrackStats,
}

impl Conntrack {
    /// An empty table with a fixed hash seed (deterministic; see [`Self::with_hash_seed`]).
    pub fn new(config: ConntrackConfig) -> Self {
        Self::with_hash_seed(config, 0x7a9e_7c0f_f00d_5eed)
    }

    /// An empty table. `hash_seed` seeds foldhash: pick it at random in the shell, so
    /// that colliding tuples are hard to choose from outside.
    pub fn with_hash_seed(mut config: ConntrackConfig, hash_seed: u64) -> Self {
        config.capacity = config.capacity.min(CAPACITY_MAX);
        let reserve = config.capacity.min(PREALLOCATE_MAX);
        Self {
            slots: Vec::with_capacity(reserve),
            free: Vec::with_capacity(reserve),
            index: Index::with_capacity(2 * reserve),
            hasher: foldhash::fast::FixedState::with_seed(hash_seed),
            timer: Timer::with_capacity(reserve),
            unassured: Unassured::with_capacity(reserve),
            evicted: VecDeque::with_capacity(64),
            len: 0,
            stats: ConntrackStats::default(),
            config,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &ConntrackConfig {
        &self.config
    }

    /// Most entries held at once.
    pub fn capacity(&self) -> usize {
        self.config.capacity
    }

    /// Replaces the timeouts. Entries keep their current expiry until their next
    /// packet (as in Linux, where a sysctl change applies at the next refresh).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.config.timeouts = timeouts;
    }

    /// Event counts.
    pub fn stats(&self) -> ConntrackStats {
        self.stats
    }

    /// Tracks a packet whose key is `key` (as seen on the wire), of `len` bytes. `tcp`
    /// holds the flags of a TCP packet (`None` for a TCP packet counts as no flags).
    ///
    /// For a known flow: counts the packet, moves the state and refreshes the timeout.
    /// Otherwise creates an entry whose reply tuple is `key.reversed()` if the packet
    /// may start a flow: any UDP or ICMP echo packet, a TCP SYN without ACK. When the
    /// table is full it first reclaims an expired entry, else evicts the oldest
    /// unassured one (both reported by [`Self::poll_expired`]), else refuses.
    pub fn track(
        &mut self,
        now: Instant,
        key: &FlowKey,
        tcp: Option<TcpFlags>,
        len: usize,
    ) -> Result<Tracked, Refused> {
        let hash = hash_key(&self.hasher, key);
        let found = self.find(key, hash);
        self.track_found(now, key, hash, found, tcp, len)
    }

    /// Tracks a burst of packets, appending one result per packet to `out`: the same
    /// as calling [`Self::track`] for each in turn, but faster on a large table.
    ///
    /// With many flows nearly every lookup misses the cache twice, once in the index
    /// and once in the entry, and a lone lookup waits for both in turn. Here all the
    /// lookups of up to [`Self::BURST`] packets run first, independent of each other,
    /// so the processor overlaps their misses; the packets are then tracked in order
    /// from the warm cache. A lookup result is reused only if no packet before it in
    /// the burst changed the index (a new flow, an eviction); otherwise it is redone.
    pub fn track_burst(
        &mut self,
        now: Instant,
        packets: &[(FlowKey, Option<TcpFlags>, usize)],
        out: &mut Vec<Result<Tracked, Refused>>,
    ) {
        out.reserve(packets.len());
        for chunk in packets.chunks(Self::BURST) {
            // Three passes, so that each one's loads are independent of each other:
            // the index words, then the entries (through `find`), then the updates.
            let mut found = [(0u64, None); Self::BURST];
            let mut home = [0u64; Self::BURST];
            for (((key, _, _), f), home) in chunk.iter().zip(&mut found).zip(&mut home) {
                let hash = hash_key(&self.hasher, key);
                *home = self.index.home_word(hash);
                f.0 = hash;
            }
            for (((key, _, _), f), &home) in chunk.iter().zip(&mut found).zip(&home) {
                f.1 = self.find_from(key, f.0, home);
            }
            let epoch = self.index.epoch();
            for (&(key, tcp, len), &(hash, it)) in chunk.iter().zip(&found) {
                let it = if self.index.epoch() == epoch {
                    it
                } else {
                    self.find(&key, hash)
                };
                out.push(self.track_found(now, &key, hash, it, tcp, len));
            }
        }
    }

    /// Tracks a packet of a flow already in the table, as [`Self::track`] does, and
    /// returns the result with the entry's other tuple; `None`, and nothing changes,
    /// when no entry holds `key` (the caller then decides whether to start a flow).
    ///
    /// For a NAT or a proxy, whose every packet needs the other tuple: one index
    /// probe does the work of [`Self::lookup`], [`Self::track`] and [`Self::entry`],
    /// which would probe three times and copy out the whole entry.
    #[inline]
    pub fn track_known(
        &mut self,
        now: Instant,
        key: &FlowKey,
        tcp: Option<TcpFlags>,
        len: usize,
    ) -> Option<KnownFlow> {
        let it = self.find(key, hash_key(&self.hasher, key))?;
        let (slot, dir) = (item_slot(it), item_dir(it));
        // The packet matched one tuple; the other is at the other index (an entry
        // whose tuples are equal is indexed once, as Original, and keys[1] is that
        // same tuple). `update` leaves the keys alone, so read it first.
        let other = self.live(slot).keys[1 - dir.index()];
        let tracked = self.update(now, slot, dir, tcp, len);
        Some(KnownFlow { tracked, other })
    }

    /// Most packets [`Self::track_burst`] looks up ahead of tracking them.
    pub const BURST: usize = 16;

    /// [`Self::track`] once the key's hash and index item (if any) are known.
    #[inline(always)]
    fn track_found(
        &mut self,
        now: Instant,
        key: &FlowKey,
        hash: u64,
        found: Option<IndexItem>,
        tcp: Option<TcpFlags>,
        len: usize,
    ) -> Result<Tracked, Refused> {
        if let Some(it) = found {
            return Ok(self.update(now, item_slot(it), item_dir(it), tcp, len));
        }
        let state = match key.proto {
            Proto::Tcp => {
                if !Segment::classify(tcp.unwrap_or_default()).may_start_flow() {
                    self.stats.refused_not_new += 1;
                    return Err(Refused::NotNew);
                }
                State::TcpSynSent
            }
            Proto::Udp | Proto::IcmpEcho => State::Unreplied,
        };
        let slot = self.create(now, *key, key.reversed(), Some(hash), state)?;
        let entry = self.live_mut(slot);
        entry.counters[0] = Counters {
            packets: 1,
            bytes: len as u64,
        };
        Ok(Tracked {
            id: FlowId::new(slot, self.slots[slot as usize].generation),
            direction: Direction::Original,
            new: true,
            state,
        })
    }

    /// Creates an entry with an explicit reply tuple (NAT, proxies): packets matching
    /// `reply` are then tracked as the reply direction. Counts no packet: track the
    /// packet that caused it afterwards, if any.
    ///
    /// For TCP, `tcp` must be a SYN without ACK (or `None`: the SYN is about to be
    /// sent); the entry starts in `SYN_SENT`. Fails with [`Refused::Clash`] when either
    /// tuple is already tracked, and as [`Self::track`] when the table is full.
    pub fn insert(
        &mut self,
        now: Instant,
        original: FlowKey,
        reply: FlowKey,
        tcp: Option<TcpFlags>,
    ) -> Result<FlowId, Refused> {
        let state = match original.proto {
            Proto::Tcp => {
                if tcp.is_some_and(|flags| !Segment::classify(flags).may_start_flow()) {
                    self.stats.refused_not_new += 1;
                    return Err(Refused::NotNew);
                }
                State::TcpSynSent
            }
            Proto::Udp | Proto::IcmpEcho => State::Unreplied,
        };
        let slot = self.create(now, original, reply, None, state)?;
        Ok(FlowId::new(slot, self.slots[slot as usize].generation))
    }

    /// The entry and direction a key belongs to, without updating anything.
    pub fn lookup(&self, key: &FlowKey) -> Option<(FlowId, Direction)> {
        let it = self.find(key, hash_key(&self.hasher, key))?;
        let slot = item_slot(it);
        Some((
            FlowId::new(slot, self.slots[slot as usize].generation),
            item_dir(it),
        ))
    }

    /// Details of one entry.
    pub fn entry(&self, id: FlowId, now: Instant) -> Option<EntryInfo> {
        self.get(id).map(|e| e.info(id, now))
    }

    /// Removes an entry (its owner closed the flow). False if `id` is not live.
    pub fn remove(&mut self, id: FlowId) -> bool {
        if self.get(id).is_none() {
            return false;
        }
        self.remove_slot(id.slot());
        true
    }

    /// Removes the next expired entry, for the shell to release what belongs to it
    /// (host sockets, NAT bindings). Call until `None` after each batch of packets and
    /// when [`Self::poll_timeout`] is due. Entries evicted to make room come first
    /// (whatever `now`), with the time they had left.
    pub fn poll_expired(&mut self, now: Instant) -> Option<EntryInfo> {
        if let Some(info) = self.evicted.pop_front() {
            return Some(info);
        }
        self.pop_expired(now)
    }

    /// The next entry evicted to make room (also returned, first, by
    /// [`Self::poll_expired`]).
    pub fn poll_evicted(&mut self) -> Option<EntryInfo> {
        self.evicted.pop_front()
    }

    /// When [`Self::poll_expired`] may next return an entry: `Instant::ZERO` when
    /// evicted entries wait to be reported. A lower bound: entries refreshed since
    /// they were scheduled make `poll_expired` return `None` at that time (and move
    /// the timeout on).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.evicted.is_empty() {
            return Some(Instant::ZERO);
        }
        self.timer.peek().map(|(deadline, _)| deadline)
    }

    /// Every entry, for `tapnet conntrack`, in slot order.
    pub fn entries(&self, now: Instant) -> Vec<EntryInfo> {
        let mut out = Vec::with_capacity(self.len);
        for (slot, s) in self.slots.iter().enumerate() {
            if let Some(entry) = &s.entry {
                let slot = u32::try_from(slot).unwrap_or(u32::MAX);
                out.push(entry.info(FlowId::new(slot, s.generation), now));
            }
        }
        out
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of entries not yet assured (the candidates for eviction).
    pub fn unassured_len(&self) -> usize {
        self.unassured.len()
    }

    /// Bytes the table takes per flow at most (entry, index items, timer, list and
    /// free-list slots; the index at its highest load factor, 1/2).
    pub const fn bytes_per_flow() -> usize {
        size_of::<Slot>()
            + 2 * Index::BYTES_PER_ITEM
            + size_of::<(Instant, u32)>()
            + size_of::<u32>()
            + size_of::<(u32, u32)>()
            + size_of::<u32>()
    }

    // --- internals -------------------------------------------------------------

    fn get(&self, id: FlowId) -> Option<&Entry> {
        let slot = self.slots.get(id.slot() as usize)?;
        if slot.generation != id.generation() {
            return None;
        }
        slot.entry.as_ref()
    }

    #[inline]
    fn live(&self, slot: u32) -> &Entry {
        self.slots[slot as usize]
            .entry
            .as_ref()
            .expect("indexed slot holds an entry")
    }

    #[inline]
    fn live_mut(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize]
            .entry
            .as_mut()
            .expect("indexed slot holds an entry")
    }

    /// The per-packet path of a known flow. Always inlined: with several callers
    /// (`track`, `track_burst`, `track_known`) the compiler kept it out of line, and
    /// the call and its result passed through memory cost about 3 ns of 24 per
    /// packet at 1k flows.
    #[inline(always)]
    fn update(
        &mut self,
        now: Instant,
        slot: u32,
        dir: Direction,
        tcp: Option<TcpFlags>,
        len: usize,
    ) -> Tracked {
        let generation = self.slots[slot as usize].generation;
        let timeouts = &self.config.timeouts;
        let entry = self.slots[slot as usize]
            .entry
            .as_mut()
            .expect("indexed slot holds an entry");
        let proto = entry.keys[0].proto;
        let counters = &mut entry.counters[dir.index()];
        counters.packets += 1;
        counters.bytes += len as u64;

        let mut new = false;
        let mut became_assured = false;
        let mut restarted = false;
        let refresh = match proto {
            Proto::Tcp => {
                let seg = Segment::classify(tcp.unwrap_or_default());
                let mut fins = entry.flags & tcp::fin::ALL;
                match tcp::step(entry.state, &mut fins, dir, seg) {
                    Step::To(state) => {
                        entry.flags = entry.flags & !tcp::fin::ALL | fins;
                        entry.state = state;
                        // Linux sets IPS_ASSURED when the handshake completes.
                        if state == State::TcpEstablished && !entry.assured() {
                            entry.flags |= flag::ASSURED;
                            became_assured = true;
                        }
                        true
                    }
                    Step::Restart => {
                        // Linux kills the old entry and creates a new one (`tcp_packet`,
                        // "TIME_WAIT/CLOSE + SYN: reopened connection"). We reuse the
                        // slot: same id, fresh state and counters, unassured again.
                        entry.state = State::TcpSynSent;
                        entry.flags = 0;
                        entry.counters = [
                            Counters {
                                packets: 1,
                                bytes: len as u64,
                            },
                            Counters::default(),
                        ];
                        new = true;
                        restarted = true;
                        true
                    }
                    Step::Ignore => false,
                    Step::Invalid => {
                        self.stats.tcp_invalid += 1;
                        false
                    }
                }
            }
            Proto::Udp => {
                // Linux nf_conntrack_udp_packet: a reply makes the flow SEEN_REPLY; it
                // becomes a stream (ASSURED, the longer udp_stream timeout) only when
                // still active two seconds after it started, so one-shot exchanges
                // such as DNS queries keep the short timeout and stay evictable.
                if dir == Direction::Reply && entry.state == State::Unreplied {
                    entry.state = State::Replied;
                }
                if entry.state == State::Replied
                    && !entry.assured()
                    && now.saturating_duration_since(entry.created) > UDP_STREAM_AFTER
                {
                    entry.flags |= flag::ASSURED;
                    became_assured = true;
                }
                true
            }
            Proto::IcmpEcho => {
                // The first reply: seen both ways (IPS_SEEN_REPLY + IPS_ASSURED).
                if dir == Direction::Reply && entry.state == State::Unreplied {
                    entry.state = State::Replied;
                    entry.flags |= flag::ASSURED;
                    became_assured = true;
                }
                true
            }
        };
        let state = entry.state;
        if refresh {
            let timeout = if proto == Proto::Udp && !entry.assured() {
                timeouts.udp
            } else {
                timeouts.for_state(proto, state)
            };
            entry.expires = now + timeout;
            // Later expiries are fixed up lazily when the heap item pops; an earlier
            // one (a shorter timeout, or time going backwards) must move the item.
            if entry.expires < entry.scheduled {
                entry.scheduled = entry.expires;
                self.timer.reschedule(slot, entry.expires);
            }
        }
        if became_assured {
            self.unassured.remove(slot);
        } else if restarted {
            self.unassured.push_back(slot);
        }
        Tracked {
            id: FlowId::new(slot, generation),
            direction: dir,
            new,
            state,
        }
    }

    /// Creates an entry (not counting any packet). `hash` is the original key's hash
    /// when the caller has it.
    fn create(
        &mut self,
        now: Instant,
        original: FlowKey,
        reply: FlowKey,
        hash: Option<u64>,
        state: State,
    ) -> Result<u32, Refused> {
        let original_hash = hash.unwrap_or_else(|| hash_key(&self.hasher, &original));
        let reply_hash = hash_key(&self.hasher, &reply);
        if self.lookup_hashed(&original, original_hash) || self.lookup_hashed(&reply, reply_hash) {
            self.stats.clashes += 1;
            return Err(Refused::Clash);
        }
        if self.len >= self.config.capacity && !self.make_room(now) {
            self.stats.refused_full += 1;
            return Err(Refused::TableFull);
        }

        let proto = original.proto;
        let expires = now + self.config.timeouts.for_state(proto, state);
        let entry = Entry {
            keys: [original, reply],
            counters: [Counters::default(); 2],
            expires,
            scheduled: expires,
            state,
            flags: 0,
            created: now,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize].entry = Some(entry);
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len()).expect("capacity fits 31 bits");
                self.slots.push(Slot {
                    generation: 1,
                    entry: Some(entry),
                });
                slot
            }
        };

        self.index
            .insert(original_hash, item(slot, Direction::Original));
        if reply != original {
            self.index.insert(reply_hash, item(slot, Direction::Reply));
        }
        self.timer.push(slot, expires);
        self.unassured.push_back(slot);
        self.len += 1;
        self.stats.created += 1;
        Ok(slot)
    }

    fn lookup_hashed(&self, key: &FlowKey, hash: u64) -> bool {
        self.find(key, hash).is_some()
    }

    /// The index item of `key`, whose hash is `hash`.
    #[inline(always)]
    fn find(&self, key: &FlowKey, hash: u64) -> Option<IndexItem> {
        self.find_from(key, hash, self.index.home_word(hash))
    }

    /// [`Self::find`] given the index word at the hash's home.
    #[inline(always)]
    fn find_from(&self, key: &FlowKey, hash: u64, home: u64) -> Option<IndexItem> {
        let slots = &self.slots;
        self.index.find_from(hash, home, |it| {
            slots[item_slot(it) as usize]
                .entry
                .as_ref()
                .is_some_and(|e| e.keys[item_dir(it).index()] == *key)
        })
    }

    /// Frees one entry in a full table (Linux `early_drop()`): an expired one if the
    /// timer has one due, else the oldest unassured one. The victim is queued for
    /// `poll_expired`. False when every entry is assured and alive.
    fn make_room(&mut self, now: Instant) -> bool {
        if let Some(info) = self.pop_expired(now) {
            self.evicted.push_back(info);
            return true;
        }
        let Some(slot) = self.unassured.front() else {
            return false;
        };
        let generation = self.slots[slot as usize].generation;
        let entry = self.remove_slot(slot);
        self.evicted
            .push_back(entry.info(FlowId::new(slot, generation), now));
        self.stats.evicted += 1;
        true
    }

    /// Removes and returns the first entry whose expiry is `<= now`, re-keying heap
    /// items of entries refreshed since they were scheduled.
    fn pop_expired(&mut self, now: Instant) -> Option<EntryInfo> {
        while let Some((deadline, slot)) = self.timer.peek() {
            if deadline > now {
                return None;
            }
            let entry = self.live_mut(slot);
            if entry.expires <= now {
                let generation = self.slots[slot as usize].generation;
                let entry = self.remove_slot(slot);
                self.stats.expired += 1;
                return Some(entry.info(FlowId::new(slot, generation), now));
            }
            // Refreshed since scheduled: move the item to the real expiry.
            entry.scheduled = entry.expires;
            let expires = entry.expires;
            self.timer.reschedule(slot, expires);
        }
        None
    }

    /// Takes a live entry out of every structure and frees its slot.
    fn remove_slot(&mut self, slot: u32) -> Entry {
        let s = &mut self.slots[slot as usize];
        let entry = s.entry.take().expect("removing a live slot");
        // A new generation: ids of this entry are now stale.
        s.generation = s.generation.wrapping_add(1).max(1);
        for (dir, key) in [Direction::Original, Direction::Reply]
            .into_iter()
            .zip(&entry.keys)
        {
            if dir == Direction::Reply && entry.keys[1] == entry.keys[0] {
                break;
            }
            let hash = hash_key(&self.hasher, key);
            let removed = self.index.remove(hash, item(slot, dir));
            debug_assert!(removed, "index item of slot {slot} missing");
        }
        self.timer.remove(slot);
        self.unassured.remove(slot);
        self.free.push(slot);
        self.len -= 1;
        entry
    }

    /// Checks every internal invariant (tests and fuzzing; O(n)).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        assert!(self.len <= self.config.capacity, "len over capacity");
        let live = self.slots.iter().filter(|s| s.entry.is_some()).count();
        assert_eq!(live, self.len);
        assert_eq!(live + self.free.len(), self.slots.len());
        let mut index_items = 0;
        let mut unassured = 0;
        for (slot, s) in self.slots.iter().enumerate() {
            let Some(entry) = &s.entry else { continue };
            let slot = u32::try_from(slot).expect("slot fits u32");
            let id = FlowId::new(slot, s.generation);
            assert_eq!(self.lookup(&entry.keys[0]), Some((id, Direction::Original)));
            if entry.keys[1] != entry.keys[0] {
                assert_eq!(self.lookup(&entry.keys[1]), Some((id, Direction::Reply)));
                index_items += 2;
            } else {
                index_items += 1;
            }
            assert!(entry.scheduled <= entry.expires, "scheduled after expiry");
            assert_eq!(self.unassured.contains(slot), !entry.assured());
            unassured += usize::from(!entry.assured());
        }
        assert_eq!(self.index.len(), index_items);
        self.index.check();
        assert_eq!(self.unassured.len(), unassured);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_flow_is_bounded() {
        let bytes = Conntrack::bytes_per_flow();
        println!(
            "slot {} B, flow key {} B, index {} B per item at load 1/2, {bytes} B per flow in all",
            size_of::<Slot>(),
            size_of::<FlowKey>(),
            Index::BYTES_PER_ITEM
        );
        assert!(bytes <= 256, "{bytes} bytes per flow");
    }

    #[test]
    fn flow_id_round_trips() {
        let id = FlowId::new(0x1234_5678, 0x9abc_def0);
        assert_eq!(id.slot(), 0x1234_5678);
        assert_eq!(id.generation(), 0x9abc_def0);
    }

    #[test]
    fn header_flags_byte() {
        assert_eq!(TcpFlags::from_header_byte(0x02), TcpFlags::SYN);
        assert_eq!(TcpFlags::from_header_byte(0x12), TcpFlags::SYN_ACK);
        assert_eq!(TcpFlags::from_header_byte(0x11), TcpFlags::FIN_ACK);
        assert_eq!(TcpFlags::from_header_byte(0x04), TcpFlags::RST);
        assert_eq!(TcpFlags::from_header_byte(0x18), TcpFlags::ACK);
    }
}

//! The connection table. (API skeleton: bodies to be filled in.)

use core::time::Duration;

use tapnet_wire::Instant;

use crate::{FlowKey, Proto};

/// Timeouts, with Linux nf_conntrack's defaults (`net.netfilter.nf_conntrack_*_timeout*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_syn_recv: Duration,
    pub tcp_established: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_close_wait: Duration,
    pub tcp_last_ack: Duration,
    pub tcp_time_wait: Duration,
    pub tcp_close: Duration,
    /// UDP flow seen in one direction only (`nf_conntrack_udp_timeout`, 30 s).
    pub udp: Duration,
    /// UDP flow that has seen replies (`nf_conntrack_udp_timeout_stream`, 120 s).
    pub udp_stream: Duration,
    /// ICMP echo (`nf_conntrack_icmp_timeout`, 30 s).
    pub icmp: Duration,
}

/// Table settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Most entries held at once (`nf_conntrack_max`).
    pub capacity: usize,
    pub timeouts: Timeouts,
}

/// A handle to an entry; stable while the entry lives, never reused for another flow
/// while a stale handle could still be held (generation-checked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u64);

/// Which way a packet travels relative to the packet that created the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Original,
    Reply,
}

/// TCP header flags that drive the state machine (RFC 9293 section 3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// Connection state, as `conntrack -L` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// UDP or ICMP: not yet replied.
    Unreplied,
    /// UDP or ICMP: replied.
    Replied,
    TcpSynSent,
    TcpSynRecv,
    TcpEstablished,
    TcpFinWait,
    TcpCloseWait,
    TcpLastAck,
    TcpTimeWait,
    TcpClose,
}

/// Why a packet could not be tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The table is full and holds no unreplied flow to evict: the new flow is refused,
    /// existing flows are kept.
    TableFull,
    /// A TCP packet without SYN for an unknown flow (no mid-stream pickup).
    NotNew,
}

/// Per-direction counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// One entry, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryInfo {
    pub id: FlowId,
    pub proto: Proto,
    pub original: FlowKey,
    pub reply: FlowKey,
    pub state: State,
    /// Time left before the entry expires.
    pub remaining: Duration,
    /// Seen traffic both ways (TCP: established): protected from early eviction.
    pub assured: bool,
    pub original_counters: Counters,
    pub reply_counters: Counters,
}

/// The result of tracking one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub id: FlowId,
    pub direction: Direction,
    /// The packet created the entry.
    pub new: bool,
    pub state: State,
}

/// The connection table: bounded, with timeouts; sans-IO (time is passed in).
#[derive(Debug)]
pub struct Conntrack {}

impl Conntrack {
    pub fn new(_config: ConntrackConfig) -> Self {
        todo!()
    }
    /// Tracks a packet whose key is `key` (as seen on the wire). Creates an entry whose
    /// reply tuple is `key.reversed()` when none matches and the packet may start a flow.
    pub fn track(
        &mut self,
        _now: Instant,
        _key: &FlowKey,
        _tcp: Option<TcpFlags>,
        _len: usize,
    ) -> Result<Tracked, Refused> {
        todo!()
    }
    /// Creates an entry with an explicit reply tuple (NAT, proxies): packets matching
    /// `reply` are then tracked as the reply direction.
    pub fn insert(
        &mut self,
        _now: Instant,
        _original: FlowKey,
        _reply: FlowKey,
        _tcp: Option<TcpFlags>,
    ) -> Result<FlowId, Refused> {
        todo!()
    }
    /// The entry and direction a key belongs to, without updating anything.
    pub fn lookup(&self, _key: &FlowKey) -> Option<(FlowId, Direction)> {
        todo!()
    }
    /// Details of one entry.
    pub fn entry(&self, _id: FlowId, _now: Instant) -> Option<EntryInfo> {
        todo!()
    }
    /// Removes an entry (its owner closed the flow).
    pub fn remove(&mut self, _id: FlowId) -> bool {
        todo!()
    }
    /// Removes the next expired entry, for the shell to release what belongs to it
    /// (host sockets, NAT bindings). Call until `None`.
    pub fn poll_expired(&mut self, _now: Instant) -> Option<EntryInfo> {
        todo!()
    }
    /// When the next entry may expire.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    /// Every entry, for `tapnet conntrack`.
    pub fn entries(&self, _now: Instant) -> Vec<EntryInfo> {
        todo!()
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! Sans-IO IPv4/IPv6 router: the gateway of each network.
//!
//! The router sits behind each network's gateway port of the switch. Frames addressed
//! to the gateway (or broadcast/multicast) go to [`Router::handle_frame`]; IP packets
//! coming back from the uplink go to [`Router::handle_uplink`]. Both work in place on
//! the caller's buffer on the fast path; anything the router generates on its own
//! (ICMP errors, TCP resets, ARP/NDP requests, router advertisements, DHCP, fragments,
//! packets released after address resolution) is queued and drained with
//! [`Router::poll_transmit`].
//!
//! Layer: sans-IO core. No syscall, no thread, no clock read (time is the `now`
//! argument), no `unsafe`. The fast paths do not allocate: a packet forwarded to the
//! uplink (validated, TTL/hop limit decremented with an RFC 1624 incremental checksum
//! update) and a packet from the uplink whose neighbour is resolved (Ethernet header
//! written in place). ARP replies and ICMP/ICMPv6 echo replies are rewritten in place.
//!
//! Submodules: `checksum` (RFC 1071/1624), `neighbour` (ARP/NDP cache with timeouts and
//! held packets), `arp` (RFC 826), `ipv4` (forwarding, local delivery, ICMP, fragments),
//! `ipv6` (forwarding, ICMPv6, NDP, router advertisements), `dhcp` (RFC 2131 server),
//! `counters`, and the hidden `fuzzing` harness.
//!
//! Invariants, checked by the tests, the proptests and the fuzz harness:
//!
//! - malformed input never panics; every dropped packet is counted under one
//!   [`RouterDrop`] reason;
//! - every packet the router emits carries valid IPv4 header, ICMP, ICMPv6, UDP and TCP
//!   checksums;
//! - a packet never crosses from one network to another (Docker's isolation chains);
//! - the transmit queue, the neighbour caches and their held packets stay bounded.
//!
//! Choices where the issue left room (see also each module):
//!
//! - Traffic to the router's own addresses that goes to the uplink
//!   (`own_addresses_to_uplink`) keeps its TTL/hop limit: it is local delivery (the
//!   uplink is the host's own stack), so a TTL-1 packet to 10.0.2.2 still arrives.
//! - `egress == false`: the packet is dropped with ICMP destination unreachable code 13
//!   "communication administratively prohibited" (RFC 1812 5.2.7.1), ICMPv6 type 1
//!   code 1 for IPv6, so that clients fail fast. Such networks also advertise router
//!   lifetime 0 and no DHCP router option, as Docker's `--internal` has no default route.
//! - A destination in another network's subnet is dropped silently (`NoRoute`), as the
//!   isolation chains' `DROP` does.

mod arp;
mod counters;
mod dhcp;
#[doc(hidden)]
pub mod dhcp_fuzzing;
#[doc(hidden)]
pub mod fuzzing;
mod ipv4;
mod ipv6;
mod neighbour;
#[cfg(test)]
mod offload_tests;
mod outside;
#[doc(hidden)]
pub mod outside_fuzzing;
#[cfg(test)]
mod outside_tests;
#[cfg(test)]
mod tests;

use core::ops::Range;
use core::time::Duration;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;

use crate::{ConfigError, NetworkId};
use tapnet_wire::{EtherType, Instant, MacAddr};

pub use counters::{RouterCounters, RouterDropCounters};
use neighbour::NeighbourCache;
pub use outside::{OutsideConfig, OutsideCounters, OutsideDrop, OutsidePort, OutsideRx, OutsideTx};

/// Router-wide settings.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// How long a resolved neighbour stays valid without confirmation (an ARP or NDP
    /// message from it). In the last quarter of that time, using the entry sends one
    /// unicast probe so that active neighbours are refreshed without a gap.
    pub neighbour_timeout: Duration,
    /// Packets held per unresolved neighbour while ARP/NDP runs; more are dropped and
    /// counted as [`RouterDrop::QueueFull`].
    pub pending_per_neighbour: usize,
    /// MTU towards the uplink: longer packets get fragmented (IPv4 without DF) or an
    /// ICMP "fragmentation needed"/ICMPv6 "packet too big". Host sockets don't care;
    /// a packet uplink does. Default 65520 (slirp4netns' largest).
    pub uplink_mtu: u32,
    /// Most neighbour entries (resolved or being resolved) per network and family.
    pub max_neighbours: usize,
    /// ICMP/ICMPv6 errors per second over the whole router (token bucket, RFC 1812
    /// 4.3.2.8, RFC 4443 2.4(f)); 0 means unlimited. PMTU errors (fragmentation needed,
    /// packet too big) are exempt, as in Linux.
    pub icmp_errors_per_sec: u32,
    /// Burst size of the ICMP error token bucket.
    pub icmp_burst: u32,
    /// Interval of unsolicited router advertisements (RFC 4861 6.2.1 allows 4 to 1800 s).
    pub ra_interval: Duration,
    /// Most generated packets waiting for `poll_transmit`; more are dropped and counted
    /// in [`RouterCounters::queue_overflow`].
    pub max_queued: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            neighbour_timeout: Duration::from_secs(60),
            pending_per_neighbour: 16,
            uplink_mtu: 65520,
            max_neighbours: 4096,
            icmp_errors_per_sec: 1000,
            icmp_burst: 50,
            ra_interval: Duration::from_secs(200),
            max_queued: 4096,
        }
    }
}

/// A DHCP server for a network.
#[derive(Clone, Debug)]
pub struct DhcpConfig {
    /// Dynamic pool, inclusive (slirp4netns: .15 to .30).
    pub pool: (Ipv4Addr, Ipv4Addr),
    /// DNS servers (option 6); none means the option is left out.
    pub dns: Vec<Ipv4Addr>,
    /// Lease time (option 51); renewal (58) and rebinding (59) are 1/2 and 7/8 of it.
    pub lease_time: Duration,
}

/// IPv4 side of a network.
#[derive(Clone, Debug)]
pub struct RouterV4 {
    /// The subnet (host bits are masked off by `add_network`).
    pub network: Ipv4Addr,
    /// Prefix length of the subnet (clamped to 32).
    pub prefix_len: u8,
    /// The gateway address: answers ARP and ICMP echo, is the DHCP server identifier
    /// and the source of ICMP errors.
    pub gateway: Ipv4Addr,
    /// More addresses the router owns on this network (the DNS address 10.0.2.3): it
    /// answers ARP and ICMP echo for them, and passes other traffic to them to the uplink.
    pub extra: Vec<Ipv4Addr>,
    /// The DHCP server, if enabled.
    pub dhcp: Option<DhcpConfig>,
}

/// IPv6 side of a network: a routed prefix, router advertisements, NDP.
#[derive(Clone, Debug)]
pub struct RouterV6 {
    /// The prefix (host bits are masked off by `add_network`).
    pub prefix: Ipv6Addr,
    /// Prefix length (clamped to 128). SLAAC (the A flag) needs 64.
    pub prefix_len: u8,
    /// The gateway's global address (slirp4netns: fd00::2).
    pub gateway: Ipv6Addr,
    /// More addresses the router owns (the DNS address fd00::3).
    pub extra: Vec<Ipv6Addr>,
    /// Advertised as RDNSS (RFC 8106).
    pub dns: Vec<Ipv6Addr>,
}

/// One network as the router sees it.
#[derive(Clone, Debug)]
pub struct RouterNetwork {
    /// The router's MAC address on this network.
    pub gateway_mac: MacAddr,
    /// IPv4 configuration, if the network has IPv4.
    pub v4: Option<RouterV4>,
    /// IPv6 configuration, if the network has IPv6.
    pub v6: Option<RouterV6>,
    /// MTU of the network: packets from the uplink longer than this are fragmented or
    /// refused; advertised in DHCP option 26 and the RA MTU option.
    pub mtu: u32,
    /// May traffic leave through the uplink (false for `--internal` networks)?
    pub egress: bool,
    /// Does traffic (other than ICMP echo) to the router's own addresses go to the
    /// uplink (slirp4netns' 10.0.2.2 -> host loopback)? If not, it is answered with
    /// ICMP port unreachable (UDP) or a TCP RST, as a host with no such service.
    pub own_addresses_to_uplink: bool,
}

/// Why the router dropped a packet. Each reason has its own counter.
///
/// The discriminants are dense (`0..RouterDrop::COUNT`) and index
/// [`RouterDropCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RouterDrop {
    /// Not IPv4/IPv6/ARP, or a header that does not parse.
    Malformed = 0,
    /// IPv4 header checksum (or the ICMP/ICMPv6 checksum of a message for the router
    /// itself) does not verify.
    BadChecksum = 1,
    /// TTL or hop limit ran out (an ICMP time-exceeded was queued).
    TtlExceeded = 2,
    /// Over the egress MTU with DF set, or IPv6 (an ICMP error was queued).
    TooBig = 3,
    /// No route, or the route leads to another network (networks are isolated).
    NoRoute = 4,
    /// The network may not use the uplink.
    EgressDenied = 5,
    /// The neighbour did not answer ARP/NDP (ICMP host unreachable was queued).
    Unresolved = 6,
    /// Not for the router (another MAC, an ARP request for someone else, multicast the
    /// router does not serve such as IGMP/MLD).
    NotForUs = 7,
    /// The network id is not known to the router.
    UnknownNetwork = 8,
    /// A source or destination address that is never routed (RFC 1812 5.3.7, RFC 4291
    /// 2.5.2): loopback, multicast or broadcast sources, 0.0.0.0/8 and class E
    /// destinations, directed broadcasts from the uplink.
    InvalidAddress = 9,
    /// Held packets per neighbour, neighbour entries or the transmit queue are full.
    QueueFull = 10,
    /// Valid but not handled: a fragment addressed to the router itself (there is no
    /// reassembly), a DHCP message relayed through a giaddr.
    Unsupported = 11,
}

impl RouterDrop {
    /// How many reasons there are.
    pub const COUNT: usize = 12;

    /// Every reason, in discriminant order (the order [`RouterDropCounters::iter`] yields).
    pub const ALL: [Self; Self::COUNT] = [
        Self::Malformed,
        Self::BadChecksum,
        Self::TtlExceeded,
        Self::TooBig,
        Self::NoRoute,
        Self::EgressDenied,
        Self::Unresolved,
        Self::NotForUs,
        Self::UnknownNetwork,
        Self::InvalidAddress,
        Self::QueueFull,
        Self::Unsupported,
    ];

    /// A stable snake_case name for the CLI and for metrics labels (`"ttl_exceeded"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadChecksum => "bad_checksum",
            Self::TtlExceeded => "ttl_exceeded",
            Self::TooBig => "too_big",
            Self::NoRoute => "no_route",
            Self::EgressDenied => "egress_denied",
            Self::Unresolved => "unresolved",
            Self::NotForUs => "not_for_us",
            Self::UnknownNetwork => "unknown_network",
            Self::InvalidAddress => "invalid_address",
            Self::QueueFull => "queue_full",
            Self::Unsupported => "unsupported",
        }
    }

    /// The dense index of this reason, `0..COUNT`.
    #[inline]
    const fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for RouterDrop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RouterDrop {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What to do with a frame handed to [`Router::handle_frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterVerdict {
    /// The IP packet at `packet` (within the frame) goes to the uplink. Forwarded
    /// packets have their TTL or hop limit already decremented and their IPv4 header
    /// checksum updated; packets addressed to the router's own addresses (with
    /// `own_addresses_to_uplink`) are passed unchanged (local delivery).
    Uplink {
        /// Byte range of the IP packet in the frame (Ethernet padding excluded).
        packet: Range<usize>,
    },
    /// The frame was rewritten in place into `len` bytes (ARP reply, echo reply, or a
    /// packet forwarded back into its own network to a resolved neighbour): send
    /// `frame[..len]` into the network from the gateway port.
    Reply {
        /// Length of the frame to send, from the start of the buffer.
        len: usize,
    },
    /// Handled; anything to send was queued for `poll_transmit`.
    Consumed,
    /// Dropped and counted.
    Drop(RouterDrop),
}

/// What to do with a packet handed to [`Router::handle_uplink`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UplinkVerdict {
    /// The Ethernet header was written: send the `len`-byte frame into the network
    /// from the gateway port.
    ToNetwork {
        /// Length of the frame to send, from the start of the buffer.
        len: usize,
    },
    /// Copied into the router: held until the neighbour resolves (its ARP/NDP request
    /// was queued), or fragmented for the network's MTU. Drain `poll_transmit`.
    Queued,
    /// Dropped and counted.
    Drop(RouterDrop),
}

/// Where a generated packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransmitTo {
    /// An Ethernet frame into the network, from its gateway port.
    Network,
    /// An IP packet to the uplink.
    Uplink,
}

/// A generated packet, written to the start of the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The network it concerns (for `Uplink`: the network whose gateway generated it).
    pub net: NetworkId,
    /// Ethernet frame into the network, or IP packet to the uplink.
    pub to: TransmitTo,
    /// Bytes written at the start of the buffer.
    pub len: usize,
}

/// One DHCP lease, for listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhcpLease {
    /// The client's hardware address (chaddr).
    pub mac: MacAddr,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// Time left; `None` for a static binding that has no dynamic lease running.
    pub remaining: Option<Duration>,
    /// Bound by a DHCPACK (false: only offered so far).
    pub bound: bool,
    /// A static binding set with [`Router::set_static_lease`].
    pub is_static: bool,
}

/// One resolved neighbour, for listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighbourEntry {
    /// The neighbour's IP address.
    pub ip: IpAddr,
    /// Its link-layer address.
    pub mac: MacAddr,
    /// Time since it was last confirmed.
    pub age: Duration,
}

/// Connected routes (one per network subnet/prefix, longest prefix first) and the
/// default route to the uplink, which is implicit.
#[derive(Debug, Default)]
struct Routes {
    v4: Vec<(u32, u8, NetworkId)>,
    v6: Vec<(u128, u8, NetworkId)>,
}

/// Next hop chosen by a longest-prefix match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    Network(NetworkId),
    Uplink,
}

const fn mask4(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

const fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    }
}

impl Routes {
    fn rebuild(&mut self, nets: &HashMap<NetworkId, Net>) {
        self.v4.clear();
        self.v6.clear();
        for net in nets.values() {
            if let Some(v4) = &net.cfg.v4 {
                self.v4.push((u32::from(v4.network), v4.prefix_len, net.id));
            }
            if let Some(v6) = &net.cfg.v6 {
                self.v6.push((u128::from(v6.prefix), v6.prefix_len, net.id));
            }
        }
        // Longest prefix first; ties broken by network id, for determinism.
        self.v4.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        self.v6.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
    }

    /// Longest-prefix match (RFC 1812 5.2.4.3); the default route leads to the uplink.
    fn lookup_v4(&self, dst: Ipv4Addr) -> Hop {
        let dst = u32::from(dst);
        self.v4
            .iter()
            .find(|&&(prefix, len, _)| dst & mask4(len) == prefix)
            .map_or(Hop::Uplink, |&(_, _, id)| Hop::Network(id))
    }

    fn lookup_v6(&self, dst: Ipv6Addr) -> Hop {
        let dst = u128::from(dst);
        self.v6
            .iter()
            .find(|&&(prefix, len, _)| dst & mask6(len) == prefix)
            .map_or(Hop::Uplink, |&(_, _, id)| Hop::Network(id))
    }
}

/// One queued generated packet.
#[derive(Debug)]
struct Queued {
    net: NetworkId,
    to: TransmitTo,
    bytes: Vec<u8>,
}

/// Token bucket for ICMP errors, in nanoseconds of credit.
#[derive(Debug)]
struct TokenBucket {
    cost: u64,
    max: u64,
    credit: u64,
    last: Instant,
}

impl TokenBucket {
    fn new(per_sec: u32, burst: u32) -> Self {
        let cost = if per_sec == 0 {
            0
        } else {
            1_000_000_000 / u64::from(per_sec)
        };
        let max = cost.saturating_mul(u64::from(burst.max(1)));
        Self {
            cost,
            max,
            credit: max,
            last: Instant::ZERO,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        if self.cost == 0 {
            return true;
        }
        let elapsed = now.as_nanos().saturating_sub(self.last.as_nanos());
        self.last = self.last.max(now);
        self.credit = self.credit.saturating_add(elapsed).min(self.max);
        if self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}

/// Everything a packet handler may touch besides its network: the output queue, the
/// counters, the ICMP rate limiter and the timer.
#[derive(Debug)]
struct Out {
    queue: VecDeque<Queued>,
    max_queued: usize,
    counters: RouterCounters,
    bucket: TokenBucket,
    next_timeout: Option<Instant>,
}

impl Out {
    /// Queues a generated packet (a frame for `Network`, an IP packet for `Uplink`).
    fn push(&mut self, net: NetworkId, to: TransmitTo, bytes: Vec<u8>) -> bool {
        if self.queue.len() >= self.max_queued {
            self.counters.queue_overflow = self.counters.queue_overflow.wrapping_add(1);
            return false;
        }
        if to == TransmitTo::Uplink {
            self.counters.count_to_uplink(bytes.len());
        }
        self.queue.push_back(Queued { net, to, bytes });
        true
    }

    /// Takes one ICMP error token; counts a suppressed error when there is none.
    fn allow_icmp_error(&mut self, now: Instant, pmtu: bool) -> bool {
        if pmtu || self.bucket.allow(now) {
            true
        } else {
            self.counters.icmp_errors_suppressed =
                self.counters.icmp_errors_suppressed.wrapping_add(1);
            false
        }
    }

    /// Makes sure `poll_timeout` reports `at` or earlier.
    fn arm(&mut self, at: Instant) {
        self.next_timeout = Some(self.next_timeout.map_or(at, |t| t.min(at)));
    }
}

/// The context a packet handler runs in.
#[derive(Debug)]
struct Cx<'a> {
    now: Instant,
    cfg: &'a RouterConfig,
    out: &'a mut Out,
    routes: &'a Routes,
    /// The payload bytes per segment of a TCP segmentation offload (TSO) frame being
    /// handled; `None` for a packet that goes on the wire as it is.
    segment: Option<u16>,
    /// The frame's partial transport checksum (see [`FrameOffload`]).
    partial_checksum: Option<(usize, usize)>,
}

impl Cx<'_> {
    /// Completes the partial checksum of a copy of the frame being handled that the
    /// router holds (a neighbour being resolved): it leaves later, by
    /// [`Router::poll_transmit`], without the offload header that described it.
    fn complete_held(&self, frame: &mut [u8]) {
        if let Some((start, offset)) = self.partial_checksum {
            tapnet_wire::vnet::complete_checksum(frame, start, offset);
        }
    }

    /// Completes the partial checksum of the frame being handled in place, before it
    /// is cut into fragments (which carry no offload header, and only the first of
    /// which holds the checksum field).
    fn complete_in_place(&mut self, frame: &mut [u8]) {
        self.complete_held(frame);
        self.partial_checksum = None;
    }
}

/// What a frame's offload header (`virtio_net_hdr`) says of it, as far as the router
/// is concerned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameOffload {
    /// A TCP segmentation offload frame: payload bytes per segment.
    pub segment: Option<u16>,
    /// A partial TCP/UDP checksum (`F_NEEDS_CSUM`): `(csum_start, csum_offset)` from
    /// the frame's start. The router completes it in a frame it must hold while it
    /// resolves the next hop.
    pub partial_checksum: Option<(usize, usize)>,
}

impl Cx<'_> {
    /// The size on the wire of the largest packet that the IP packet `ip` (`total`
    /// bytes, transport header at `l4`) stands for: itself, or for a TSO frame one
    /// segment, its headers plus `segment` payload bytes. MTU checks (RFC 1191, RFC
    /// 8201) are about packets on the wire, and a TSO frame is cut into segments by
    /// the port it leaves through (the kernel's GSO, or the datapath's own).
    fn wire_len(&self, ip: &[u8], total: usize, proto: u8, l4: usize) -> usize {
        match self.segment {
            Some(segment) if proto == 6 => {
                let doff = ip.get(l4 + 12).map_or(20, |b| usize::from(b >> 4) * 4);
                total.min(l4 + doff + usize::from(segment))
            }
            _ => total,
        }
    }
}

/// One network's state.
#[derive(Debug)]
struct Net {
    id: NetworkId,
    cfg: RouterNetwork,
    /// fe80::/64 + EUI-64 of the gateway MAC (RFC 4291 appendix A).
    link_local: Ipv6Addr,
    arp: NeighbourCache<Ipv4Addr>,
    ndp: NeighbourCache<Ipv6Addr>,
    dhcp: dhcp::DhcpState,
    /// Next unsolicited router advertisement; `None` until the first `handle_timeout`
    /// anchors the schedule (an initial RA is queued by `add_network`).
    next_ra: Option<Instant>,
    /// TCP segments from the uplink may exceed the MTU: the network's stations take
    /// them as TSO packets (see [`Router::set_tcp_segmentation_offload`]).
    tso: bool,
}

impl Net {
    fn is_own_v4(&self, ip: Ipv4Addr) -> bool {
        self.cfg
            .v4
            .as_ref()
            .is_some_and(|v4| v4.gateway == ip || v4.extra.contains(&ip))
    }

    fn is_own_v6(&self, ip: Ipv6Addr) -> bool {
        ip == self.link_local
            || self
                .cfg
                .v6
                .as_ref()
                .is_some_and(|v6| v6.gateway == ip || v6.extra.contains(&ip))
    }

    fn in_subnet_v4(&self, ip: Ipv4Addr) -> bool {
        self.cfg
            .v4
            .as_ref()
            .is_some_and(|v4| u32::from(ip) & mask4(v4.prefix_len) == u32::from(v4.network))
    }

    fn in_prefix_v6(&self, ip: Ipv6Addr) -> bool {
        self.cfg
            .v6
            .as_ref()
            .is_some_and(|v6| u128::from(ip) & mask6(v6.prefix_len) == u128::from(v6.prefix))
    }

    /// The directed broadcast (all host bits set) or network address (all host bits
    /// clear) of a subnet with more than two addresses.
    fn is_subnet_broadcast_v4(&self, ip: Ipv4Addr) -> bool {
        self.cfg.v4.as_ref().is_some_and(|v4| {
            let host = !mask4(v4.prefix_len);
            v4.prefix_len <= 30 && {
                let bits = u32::from(ip) & host;
                bits == host || bits == 0
            }
        })
    }

    fn mtu(&self) -> usize {
        usize::try_from(self.cfg.mtu).unwrap_or(usize::MAX)
    }

    /// The largest packet of protocol `proto` from the uplink that goes into this
    /// network as it is: the MTU, or 64 KiB for TCP on a TSO network.
    fn uplink_limit(&self, proto: u8) -> usize {
        if self.tso && proto == 6 {
            usize::from(u16::MAX)
        } else {
            self.mtu()
        }
    }
}

/// The EUI-64 link-local address of a MAC (RFC 4291 appendix A, RFC 4862 5.3).
pub fn link_local_from_mac(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}

/// The router.
///
/// Feed it frames from each network's gateway port with
/// [`handle_frame`](Self::handle_frame) and packets from the uplink with
/// [`handle_uplink`](Self::handle_uplink); after each batch drain
/// [`poll_transmit`](Self::poll_transmit) until `None`, and arm a timer from
/// [`poll_timeout`](Self::poll_timeout) that calls [`handle_timeout`](Self::handle_timeout).
#[derive(Debug)]
pub struct Router {
    config: RouterConfig,
    nets: HashMap<NetworkId, Net>,
    routes: Routes,
    out: Out,
}

impl Router {
    /// A router with no networks.
    pub fn new(config: RouterConfig) -> Self {
        let out = Out {
            queue: VecDeque::new(),
            max_queued: config.max_queued,
            counters: RouterCounters::default(),
            bucket: TokenBucket::new(config.icmp_errors_per_sec, config.icmp_burst),
            next_timeout: None,
        };
        Self {
            config,
            nets: HashMap::new(),
            routes: Routes::default(),
            out,
        }
    }

    /// Adds a network. Subnet/prefix host bits are masked off and prefix lengths clamped.
    /// With IPv6, an initial unsolicited router advertisement is queued.
    pub fn add_network(
        &mut self,
        net: NetworkId,
        mut network: RouterNetwork,
    ) -> Result<(), ConfigError> {
        if self.nets.contains_key(&net) {
            return Err(ConfigError::NetworkExists(net));
        }
        if let Some(v4) = &mut network.v4 {
            v4.prefix_len = v4.prefix_len.min(32);
            v4.network = Ipv4Addr::from(u32::from(v4.network) & mask4(v4.prefix_len));
        }
        if let Some(v6) = &mut network.v6 {
            v6.prefix_len = v6.prefix_len.min(128);
            v6.prefix = Ipv6Addr::from(u128::from(v6.prefix) & mask6(v6.prefix_len));
        }
        let state = Net {
            id: net,
            link_local: link_local_from_mac(network.gateway_mac),
            cfg: network,
            arp: NeighbourCache::default(),
            ndp: NeighbourCache::default(),
            dhcp: dhcp::DhcpState::default(),
            next_ra: None,
            tso: false,
        };
        if state.cfg.v6.is_some() {
            ipv6::queue_unsolicited_ra(&mut self.out, &state);
            self.out.arm(Instant::ZERO);
        }
        self.nets.insert(net, state);
        self.routes.rebuild(&self.nets);
        Ok(())
    }

    /// Removes a network, its neighbours, held packets and leases. Queued packets for
    /// it are discarded.
    pub fn remove_network(&mut self, net: NetworkId) -> Result<(), ConfigError> {
        if self.nets.remove(&net).is_none() {
            return Err(ConfigError::UnknownNetwork(net));
        }
        self.out.queue.retain(|q| q.net != net);
        self.routes.rebuild(&self.nets);
        Ok(())
    }

    /// A frame the switch delivered to `net`'s gateway port (unicast to the gateway
    /// MAC, or broadcast/multicast). May rewrite it in place (see [`RouterVerdict`]).
    /// Frames unicast to another MAC (the switch floods unknown unicast) are
    /// `Drop(NotForUs)`.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        net: NetworkId,
        frame: &mut [u8],
    ) -> RouterVerdict {
        self.handle_frame_segmented(now, net, frame, None)
    }

    /// [`Self::handle_frame`] for a TCP segmentation offload frame: a TCP segment of
    /// up to 64 KiB that goes on the wire as segments of `segment` payload bytes
    /// (`virtio_net_hdr.gso_size`), so size limits apply to one such segment.
    pub fn handle_frame_segmented(
        &mut self,
        now: Instant,
        net: NetworkId,
        frame: &mut [u8],
        segment: Option<u16>,
    ) -> RouterVerdict {
        self.handle_frame_offloaded(
            now,
            net,
            frame,
            FrameOffload {
                segment,
                partial_checksum: None,
            },
        )
    }

    /// [`Self::handle_frame_segmented`] for a frame described by an offload header.
    pub fn handle_frame_offloaded(
        &mut self,
        now: Instant,
        net: NetworkId,
        frame: &mut [u8],
        offload: FrameOffload,
    ) -> RouterVerdict {
        let Self {
            config,
            nets,
            routes,
            out,
        } = self;
        let verdict = match nets.get_mut(&net) {
            None => RouterVerdict::Drop(RouterDrop::UnknownNetwork),
            Some(state) => {
                let mut cx = Cx {
                    now,
                    cfg: config,
                    out,
                    routes,
                    segment: offload.segment,
                    partial_checksum: offload.partial_checksum,
                };
                dispatch_frame(&mut cx, state, frame)
            }
        };
        match &verdict {
            RouterVerdict::Drop(reason) => out.counters.drops.bump(*reason),
            RouterVerdict::Uplink { packet } => out.counters.count_to_uplink(packet.len()),
            RouterVerdict::Reply { .. } | RouterVerdict::Consumed => {}
        }
        verdict
    }

    /// An IP packet from the uplink for a host of `net`, stored at `frame[14..]`; the
    /// router fills in `frame[..14]`. The TTL/hop limit is not decremented (the uplink
    /// is the host's own stack and already did).
    pub fn handle_uplink(
        &mut self,
        now: Instant,
        net: NetworkId,
        frame: &mut [u8],
    ) -> UplinkVerdict {
        self.handle_uplink_segmented(now, net, frame, None)
    }

    /// [`Self::handle_uplink`] for a TCP segmentation offload frame of `segment`
    /// payload bytes per segment (see [`Self::handle_frame_segmented`]).
    pub fn handle_uplink_segmented(
        &mut self,
        now: Instant,
        net: NetworkId,
        frame: &mut [u8],
        segment: Option<u16>,
    ) -> UplinkVerdict {
        self.handle_uplink_offloaded(
            now,
            net,
            frame,
            FrameOffload {
                segment,
                partial_checksum: None,
            },
        )
    }

    /// [`Self::handle_uplink_segmented`] for a frame described by an offload header.
    pub fn handle_uplink_offloaded(
        &mut self,
        now: Instant,
        net: NetworkId,
        frame: &mut [u8],
        offload: FrameOffload,
    ) -> UplinkVerdict {
        let Self {
            config,
            nets,
            routes,
            out,
        } = self;
        let verdict = match nets.get_mut(&net) {
            None => UplinkVerdict::Drop(RouterDrop::UnknownNetwork),
            Some(state) => {
                let mut cx = Cx {
                    now,
                    cfg: config,
                    out,
                    routes,
                    segment: offload.segment,
                    partial_checksum: offload.partial_checksum,
                };
                match frame.get(14).map(|b| b >> 4) {
                    Some(4) => ipv4::handle_uplink(&mut cx, state, frame),
                    Some(6) => ipv6::handle_uplink(&mut cx, state, frame),
                    _ => UplinkVerdict::Drop(RouterDrop::Malformed),
                }
            }
        };
        match &verdict {
            UplinkVerdict::Drop(reason) => out.counters.drops.bump(*reason),
            UplinkVerdict::ToNetwork { .. } | UplinkVerdict::Queued => {
                out.counters
                    .count_from_uplink(frame.len().saturating_sub(14));
            }
        }
        verdict
    }

    /// Writes the next generated packet into `buf` (at least 65536 + 14 bytes; a
    /// packet that does not fit is discarded and counted in
    /// [`RouterCounters::queue_overflow`]). `TransmitTo::Network` packets are whole
    /// Ethernet frames; `TransmitTo::Uplink` packets are bare IP packets.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        while let Some(q) = self.out.queue.pop_front() {
            let Some(dst) = buf.get_mut(..q.bytes.len()) else {
                self.out.counters.queue_overflow = self.out.counters.queue_overflow.wrapping_add(1);
                continue;
            };
            dst.copy_from_slice(&q.bytes);
            return Some(Transmit {
                net: q.net,
                to: q.to,
                len: q.bytes.len(),
            });
        }
        None
    }

    /// When `handle_timeout` should next run (ARP/NDP retries, neighbour expiry,
    /// router advertisements, DHCP lease expiry). `Instant::ZERO` (or any past instant)
    /// means "now". May be early, never late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.out.next_timeout
    }

    /// Runs the timers due at `now`: ARP/NDP retries and give-ups (held packets dropped
    /// as `Unresolved`, ICMP host unreachable queued to their senders), neighbour
    /// expiry, periodic router advertisements, DHCP lease expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Self {
            config,
            nets,
            routes,
            out,
        } = self;
        out.next_timeout = None;
        let mut cx = Cx {
            now,
            cfg: config,
            out,
            routes,
            segment: None,
            partial_checksum: None,
        };
        for net in nets.values_mut() {
            arp::handle_timeout(&mut cx, net);
            ipv6::handle_timeout(&mut cx, net);
            dhcp::handle_timeout(&mut cx, net);
        }
    }

    /// Lets TCP segments from the uplink into `net` unfragmented even when they exceed
    /// its MTU (up to 64 KiB): for a network whose stations receive through a TAP with
    /// segmentation offload (the shell writes such a segment as one TSO packet). Other
    /// protocols keep the MTU. False if there is no such network.
    pub fn set_tcp_segmentation_offload(&mut self, net: NetworkId, on: bool) -> bool {
        self.nets.get_mut(&net).map(|n| n.tso = on).is_some()
    }

    /// The gateway MAC of a network.
    pub fn gateway_mac(&self, net: NetworkId) -> Option<MacAddr> {
        self.nets.get(&net).map(|n| n.cfg.gateway_mac)
    }

    /// The gateway's IPv6 link-local address on a network (the source of its RAs).
    pub fn link_local(&self, net: NetworkId) -> Option<Ipv6Addr> {
        self.nets.get(&net).map(|n| n.link_local)
    }

    /// The configuration of a network, as normalised by `add_network`.
    pub fn network(&self, net: NetworkId) -> Option<&RouterNetwork> {
        self.nets.get(&net).map(|n| &n.cfg)
    }

    /// A copy of the router's counters.
    pub fn counters(&self) -> RouterCounters {
        self.out.counters
    }

    /// Binds `mac` to `ip` on `net`'s DHCP server: the client always gets this address,
    /// whatever the pool says. Replaces an earlier binding of the same MAC, and one of
    /// the same address to another MAC; a dynamic lease of the client or of the address
    /// is forgotten. An address no client may hold (outside the
    /// subnet, the router's own, the network or broadcast address) is refused
    /// ([`ConfigError::UnusableAddress`]): the server would hand it out.
    pub fn set_static_lease(
        &mut self,
        net: NetworkId,
        mac: MacAddr,
        ip: Ipv4Addr,
    ) -> Result<(), ConfigError> {
        let state = self
            .nets
            .get_mut(&net)
            .ok_or(ConfigError::UnknownNetwork(net))?;
        if !dhcp::usable(state, ip) {
            return Err(ConfigError::UnusableAddress(ip));
        }
        state.dhcp.set_static(mac, ip);
        Ok(())
    }

    /// Removes a static binding; returns the address it had.
    pub fn remove_static_lease(&mut self, net: NetworkId, mac: MacAddr) -> Option<Ipv4Addr> {
        self.nets.get_mut(&net)?.dhcp.remove_static(mac)
    }

    /// The DHCP leases and static bindings of a network, sorted by MAC.
    pub fn dhcp_leases(&self, net: NetworkId, now: Instant) -> Vec<DhcpLease> {
        self.nets
            .get(&net)
            .map_or_else(Vec::new, |n| n.dhcp.list(now))
    }

    /// The resolved, unexpired neighbours of a network (IPv4 then IPv6, sorted).
    pub fn neighbours(&self, net: NetworkId, now: Instant) -> Vec<NeighbourEntry> {
        let Some(n) = self.nets.get(&net) else {
            return Vec::new();
        };
        let timeout = self.config.neighbour_timeout;
        let mut v4: Vec<_> = n
            .arp
            .entries(now, timeout)
            .map(|(ip, mac, age)| NeighbourEntry {
                ip: IpAddr::V4(ip),
                mac,
                age,
            })
            .collect();
        v4.sort_by_key(|e| e.ip);
        let mut v6: Vec<_> = n
            .ndp
            .entries(now, timeout)
            .map(|(ip, mac, age)| NeighbourEntry {
                ip: IpAddr::V6(ip),
                mac,
                age,
            })
            .collect();
        v6.sort_by_key(|e| e.ip);
        v4.extend(v6);
        v4
    }
}

/// The Ethernet-level checks shared by every frame, then the per-protocol handler.
fn dispatch_frame(cx: &mut Cx<'_>, net: &mut Net, frame: &mut [u8]) -> RouterVerdict {
    let Some(header) = frame.get(..14) else {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    };
    let dst = MacAddr(header[0..6].try_into().unwrap_or_default());
    let src = MacAddr(header[6..12].try_into().unwrap_or_default());
    let ethertype = EtherType(u16::from_be_bytes([header[12], header[13]]));
    let group = dst.is_multicast();
    if dst != net.cfg.gateway_mac && !group {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    }
    if !src.is_valid_source() {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    }
    match ethertype {
        EtherType::ARP => arp::handle_frame(cx, net, frame),
        EtherType::IPV4 => ipv4::handle_frame(cx, net, frame, group),
        EtherType::IPV6 => ipv6::handle_frame(cx, net, frame, group),
        _ if group => RouterVerdict::Drop(RouterDrop::NotForUs),
        _ => RouterVerdict::Drop(RouterDrop::Malformed),
    }
}

/// Reads a MAC address at `at` (the caller checked the length).
fn mac_at(bytes: &[u8], at: usize) -> MacAddr {
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&bytes[at..at + 6]);
    MacAddr(mac)
}

/// Writes an Ethernet II header at the start of `frame` (at least 14 bytes).
fn write_ethernet(frame: &mut [u8], dst: MacAddr, src: MacAddr, ethertype: EtherType) {
    frame[0..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
    frame[12..14].copy_from_slice(&ethertype.0.to_be_bytes());
}

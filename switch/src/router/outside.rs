//! The packet uplink's own leg on the outside network: a host with one MAC, an IPv4
//! address and optionally an IPv6 one, each with an optional next hop, as the host's
//! `eth0` is for Docker's bridge.
//!
//! [`OutsidePort`] is sans-IO. The shell hands it every frame read from the uplink
//! interface and every IP packet (after NAT) that leaves through it; it answers ARP
//! (RFC 826), NDP (RFC 4861) and ping for its addresses, resolves next hops with
//! neighbour caches (held packets, retries, unicast refresh probes, shared with the
//! router's ARP and NDP), and fills in Ethernet headers. IP packets arriving for it
//! (or, for routed networks and IPv6 prefixes, through it) are handed back for NAT or
//! flow checks; everything else is dropped and counted by reason. The uplink socket sees the whole segment (the interface is promiscuous, so
//! that our MAC differs from the host's own), hence frames for other stations are
//! normal and counted as `not_for_us`.

use core::ops::Range;
use core::time::Duration;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};

use tapnet_wire::{EtherType, checksum};

use super::arp::{ARP_FRAME_LEN, arp_frame};
use super::ipv6::{
    ALL_NODES, ECHO_REQUEST, NDP_HOP_LIMIT, NEIGHBOR_ADVERTISEMENT, NEIGHBOR_SOLICITATION,
    NEXT_ICMPV6, V6, advertisement, icmpv6_verifies, ipv6_at, is_link_local, link_layer_option,
    multicast_mac, solicitation, solicited_node,
};
use super::neighbour::{Due, Held, Hold, Lookup, NeighbourCache, Origin};
use super::{link_local_from_mac, mac_at, write_ethernet};
use crate::{Instant, MacAddr};

const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const PROTO_ICMP: u8 = 1;

/// Settings of an [`OutsidePort`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutsideConfig {
    /// Our MAC on the outside network (not the host interface's own).
    pub mac: MacAddr,
    /// Our address there: the masquerade source and the published address.
    pub addr: Ipv4Addr,
    /// The outside subnet's prefix length: destinations inside it are on-link.
    pub prefix_len: u8,
    /// The next hop for every other destination; without one, only on-link
    /// destinations are reachable.
    pub gateway: Option<Ipv4Addr>,
    /// Our IPv6 address and prefix length there, if the uplink carries IPv6 (routed,
    /// without translation, as Docker routes IPv6).
    pub addr6: Option<(Ipv6Addr, u8)>,
    /// The IPv6 next hop for destinations outside that prefix.
    pub gateway6: Option<Ipv6Addr>,
    /// How long a resolved neighbour stays usable without confirmation.
    pub neighbour_timeout: Duration,
    /// Packets held per neighbour while it is resolved.
    pub pending_per_neighbour: usize,
    /// Most neighbour entries.
    pub max_neighbours: usize,
}

impl OutsideConfig {
    /// Defaults for everything but the addresses.
    pub fn new(mac: MacAddr, addr: Ipv4Addr, prefix_len: u8, gateway: Option<Ipv4Addr>) -> Self {
        Self {
            mac,
            addr,
            prefix_len,
            gateway,
            addr6: None,
            gateway6: None,
            neighbour_timeout: Duration::from_secs(60),
            pending_per_neighbour: 16,
            max_neighbours: 1024,
        }
    }

    fn on_link(&self, dst: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len.min(32)))
            .unwrap_or(0);
        dst.to_bits() & mask == self.addr.to_bits() & mask
    }

    fn on_link6(&self, dst: Ipv6Addr) -> bool {
        if is_link_local(dst) {
            return true;
        }
        let Some((addr, len)) = self.addr6 else {
            return false;
        };
        let mask = u128::MAX
            .checked_shl(128 - u32::from(len.min(128)))
            .unwrap_or(0);
        dst.to_bits() & mask == addr.to_bits() & mask
    }

    /// Whether `ip` is one of our IPv6 addresses (the configured one, the link-local).
    fn is_own6(&self, ip: Ipv6Addr) -> bool {
        self.addr6.is_some_and(|(a, _)| a == ip) || ip == link_local_from_mac(self.mac)
    }
}

/// What to do with a frame read from the uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum OutsideRx {
    /// An IPv4 packet for us (or routed through us), at `frame[packet]`: hand it to
    /// the NAT. Its header checksum was verified.
    Packet {
        /// Byte range of the IP packet (Ethernet padding excluded).
        packet: Range<usize>,
    },
    /// The frame was rewritten into an answer (ARP reply, echo reply) of `len` bytes:
    /// send it back out of the uplink.
    Reply {
        /// Length of the answer, from the start of the buffer.
        len: usize,
    },
    /// Handled (an ARP reply learned); anything to send waits in `poll_transmit`.
    Consumed,
    /// Dropped and counted.
    Drop(OutsideDrop),
}

/// What happened to a packet given to [`OutsidePort::send`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum OutsideTx {
    /// The Ethernet header was written: send `frame[..len]`.
    Send {
        /// Length of the frame.
        len: usize,
    },
    /// Held until the next hop is resolved; it comes out of `poll_transmit`.
    Queued,
    /// Dropped and counted.
    Drop(OutsideDrop),
}

/// Why the outside port dropped a frame or packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutsideDrop {
    /// Addressed to another station (the interface is promiscuous).
    NotForUs,
    /// Truncated, bad header, bad header checksum.
    Malformed,
    /// Neither IPv4, ARP nor (when configured) IPv6.
    UnsupportedEtherType,
    /// No next hop for the destination (no gateway configured).
    NoRoute,
    /// The next hop did not answer ARP.
    Unresolved,
    /// Too many packets already wait for the next hop.
    HoldFull,
}

impl OutsideDrop {
    /// Every reason, in counter order.
    pub const ALL: [Self; 6] = [
        Self::NotForUs,
        Self::Malformed,
        Self::UnsupportedEtherType,
        Self::NoRoute,
        Self::Unresolved,
        Self::HoldFull,
    ];

    /// A short name for statistics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotForUs => "not_for_us",
            Self::Malformed => "malformed",
            Self::UnsupportedEtherType => "unsupported_ethertype",
            Self::NoRoute => "no_route",
            Self::Unresolved => "unresolved",
            Self::HoldFull => "hold_full",
        }
    }
}

/// Event counts of an [`OutsidePort`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutsideCounters {
    /// Frames read from the uplink.
    pub rx_frames: u64,
    /// IP packets handed on for NAT.
    pub rx_packets: u64,
    /// Frames written to the uplink (answers, packets, ARP requests).
    pub tx_frames: u64,
    /// ARP requests for our address answered.
    pub arp_answered: u64,
    /// ARP requests we sent.
    pub arp_requests: u64,
    /// Neighbour solicitations for our IPv6 addresses answered.
    pub ndp_answered: u64,
    /// Neighbour solicitations we sent.
    pub ndp_requests: u64,
    /// Echo requests to our address answered.
    pub echo_answered: u64,
    /// Drops, indexed as [`OutsideDrop::ALL`].
    pub drops: [u64; 6],
}

impl OutsideCounters {
    /// Drops for `reason`.
    pub fn dropped(&self, reason: OutsideDrop) -> u64 {
        self.drops[reason as usize]
    }
}

/// A frame waiting for `poll_transmit`.
#[derive(Debug)]
enum Pending {
    ArpRequest {
        target: Ipv4Addr,
        unicast: Option<MacAddr>,
    },
    Solicitation {
        target: Ipv6Addr,
        unicast: Option<MacAddr>,
    },
    Frame(Vec<u8>),
}

/// An address family of the outside port: its neighbour cache, the Ethernet type of
/// its packets and how a neighbour is asked for (ARP request, neighbour solicitation).
trait Family: Copy + Eq + core::hash::Hash {
    const ETHERTYPE: EtherType;
    fn cache(port: &mut OutsidePort) -> &mut NeighbourCache<Self>;
    /// The request for `target` (broadcast, or unicast to refresh an entry), and the
    /// counter of requests sent.
    fn request(target: Self, unicast: Option<MacAddr>) -> Pending;
    fn requests(counters: &mut OutsideCounters) -> &mut u64;
}

impl Family for Ipv4Addr {
    const ETHERTYPE: EtherType = EtherType::IPV4;
    fn cache(port: &mut OutsidePort) -> &mut NeighbourCache<Self> {
        &mut port.neighbours
    }
    fn request(target: Self, unicast: Option<MacAddr>) -> Pending {
        Pending::ArpRequest { target, unicast }
    }
    fn requests(counters: &mut OutsideCounters) -> &mut u64 {
        &mut counters.arp_requests
    }
}

impl Family for Ipv6Addr {
    const ETHERTYPE: EtherType = EtherType::IPV6;
    fn cache(port: &mut OutsidePort) -> &mut NeighbourCache<Self> {
        &mut port.neighbours6
    }
    fn request(target: Self, unicast: Option<MacAddr>) -> Pending {
        Pending::Solicitation { target, unicast }
    }
    fn requests(counters: &mut OutsideCounters) -> &mut u64 {
        &mut counters.ndp_requests
    }
}

/// Our host on the outside network. See the module documentation.
#[derive(Debug)]
pub struct OutsidePort {
    config: OutsideConfig,
    neighbours: NeighbourCache<Ipv4Addr>,
    neighbours6: NeighbourCache<Ipv6Addr>,
    pending: VecDeque<Pending>,
    counters: OutsideCounters,
}

/// Most frames waiting in `pending` (ARP requests and released packets).
const MAX_PENDING: usize = 4096;

impl OutsidePort {
    /// A port with no neighbour known yet.
    pub fn new(config: OutsideConfig) -> Self {
        Self {
            config,
            neighbours: NeighbourCache::default(),
            neighbours6: NeighbourCache::default(),
            pending: VecDeque::new(),
            counters: OutsideCounters::default(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &OutsideConfig {
        &self.config
    }

    /// Its counters.
    pub fn counters(&self) -> &OutsideCounters {
        &self.counters
    }

    fn drop(&mut self, reason: OutsideDrop) -> OutsideDrop {
        self.counters.drops[reason as usize] += 1;
        reason
    }

    /// Handles a frame read from the uplink, rewriting it in place for an answer.
    pub fn handle_frame(&mut self, now: Instant, frame: &mut [u8]) -> OutsideRx {
        self.counters.rx_frames += 1;
        let Some(header) = frame.get(..14) else {
            return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
        };
        let dst = mac_at(header, 0);
        let ethertype = u16::from_be_bytes([header[12], header[13]]);
        // IPv6 multicast (33:33:…) carries neighbour solicitations for our addresses.
        let v6 = self.config.addr6.is_some();
        let v6_multicast = dst.0[..2] == [0x33, 0x33] && v6;
        if dst != self.config.mac && !dst.is_broadcast() && !v6_multicast {
            return OutsideRx::Drop(self.drop(OutsideDrop::NotForUs));
        }
        match EtherType(ethertype) {
            EtherType::ARP => self.handle_arp(now, frame),
            EtherType::IPV4 if dst == self.config.mac => self.handle_ipv4(frame),
            EtherType::IPV6 if v6 && !dst.is_broadcast() => self.handle_ipv6(now, frame),
            EtherType::IPV4 => OutsideRx::Drop(self.drop(OutsideDrop::NotForUs)),
            EtherType::IPV6 if v6 => OutsideRx::Drop(self.drop(OutsideDrop::NotForUs)),
            _ => OutsideRx::Drop(self.drop(OutsideDrop::UnsupportedEtherType)),
        }
    }

    fn handle_arp(&mut self, now: Instant, frame: &mut [u8]) -> OutsideRx {
        let Some(arp) = frame.get(14..ARP_FRAME_LEN) else {
            return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
        };
        if arp[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
            return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
        }
        let op = u16::from_be_bytes([arp[6], arp[7]]);
        let sha = mac_at(arp, 8);
        let spa = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
        let tpa = Ipv4Addr::new(arp[24], arp[25], arp[26], arp[27]);
        let for_us = tpa == self.config.addr;
        // RFC 826 merge: update a known sender; create an entry only when the packet
        // is for us and the sender is on-link.
        if !sha.is_multicast() && !spa.is_unspecified() && self.config.on_link(spa) {
            self.learn(now, spa, sha, for_us);
        }
        match op {
            ARP_REQUEST if for_us && spa != self.config.addr => {
                let reply = arp_frame(sha, ARP_REPLY, self.config.mac, tpa, sha, spa);
                frame[..ARP_FRAME_LEN].copy_from_slice(&reply);
                self.counters.arp_answered += 1;
                self.counters.tx_frames += 1;
                OutsideRx::Reply { len: ARP_FRAME_LEN }
            }
            ARP_REQUEST | ARP_REPLY => OutsideRx::Consumed,
            _ => OutsideRx::Drop(self.drop(OutsideDrop::Malformed)),
        }
    }

    fn handle_ipv4(&mut self, frame: &mut [u8]) -> OutsideRx {
        let Ok(h) = super::ipv4::parse(&frame[14..]) else {
            return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
        };
        let end = 14 + h.total;
        let icmp = &frame[14 + h.ihl..end];
        if h.dst == self.config.addr
            && h.proto == PROTO_ICMP
            && !h.is_fragment()
            && icmp.first() == Some(&8)
            && checksum::verifies(icmp)
        {
            let src_mac = mac_at(frame, 6);
            super::ipv4::rewrite_echo_reply(&mut frame[14..end], h.ihl);
            return self.answered_echo(frame, src_mac, EtherType::IPV4, end);
        }
        self.counters.rx_packets += 1;
        OutsideRx::Packet { packet: 14..end }
    }

    fn handle_ipv6(&mut self, now: Instant, frame: &mut [u8]) -> OutsideRx {
        let Some(h) = frame.get(14..).and_then(|ip| super::ipv6::parse(ip).ok()) else {
            return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
        };
        let end = 14 + h.total;
        if h.next == NEXT_ICMPV6 && self.is_own6_or_group(h.dst) {
            let icmp = &frame[54..end];
            if icmp.len() < 8 || !icmpv6_verifies(h.src, h.dst, icmp) {
                return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
            }
            match icmp[0] {
                NEIGHBOR_SOLICITATION | NEIGHBOR_ADVERTISEMENT => {
                    return self.handle_ndp(now, frame, &h, end);
                }
                ECHO_REQUEST if self.config.is_own6(h.dst) => {
                    let src_mac = mac_at(frame, 6);
                    super::ipv6::rewrite_echo_reply(&mut frame[14..end], &h, 40);
                    return self.answered_echo(frame, src_mac, EtherType::IPV6, end);
                }
                _ => {}
            }
        }
        if h.dst.is_multicast() || mac_at(frame, 0) != self.config.mac {
            return OutsideRx::Drop(self.drop(OutsideDrop::NotForUs));
        }
        self.counters.rx_packets += 1;
        OutsideRx::Packet { packet: 14..end }
    }

    /// Addresses the echo reply rewritten in `frame[..len]` back to `src_mac`.
    fn answered_echo(
        &mut self,
        frame: &mut [u8],
        src_mac: MacAddr,
        ethertype: EtherType,
        len: usize,
    ) -> OutsideRx {
        write_ethernet(frame, src_mac, self.config.mac, ethertype);
        self.counters.echo_answered += 1;
        self.counters.tx_frames += 1;
        OutsideRx::Reply { len }
    }

    /// Our IPv6 addresses and the groups we listen to (all-nodes, our solicited-node
    /// groups).
    fn is_own6_or_group(&self, ip: Ipv6Addr) -> bool {
        let link_local = link_local_from_mac(self.config.mac);
        self.config.is_own6(ip)
            || ip == ALL_NODES
            || ip == solicited_node(link_local)
            || self
                .config
                .addr6
                .is_some_and(|(a, _)| ip == solicited_node(a))
    }

    /// Neighbour solicitation or advertisement (validated per RFC 4861 7.1.1, 7.1.2).
    fn handle_ndp(&mut self, now: Instant, frame: &[u8], h: &V6, end: usize) -> OutsideRx {
        let icmp = &frame[54..end];
        if h.hop != NDP_HOP_LIMIT || icmp[1] != 0 || icmp.len() < 24 {
            return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
        }
        let target = ipv6_at(icmp, 8);
        let src_mac = mac_at(frame, 6);
        if icmp[0] == NEIGHBOR_SOLICITATION {
            let Ok(sllao) = link_layer_option(&icmp[24..], 1) else {
                return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
            };
            if !self.config.is_own6(target) {
                return OutsideRx::Drop(self.drop(OutsideDrop::NotForUs));
            }
            let dad = h.src.is_unspecified();
            let (dst, eth_dst) = if dad {
                // Duplicate address detection: defend the address to all-nodes.
                (ALL_NODES, multicast_mac(ALL_NODES))
            } else {
                let mac = sllao.unwrap_or(src_mac);
                if self.config.on_link6(h.src) {
                    self.learn(now, h.src, mac, true);
                }
                (h.src, mac)
            };
            let na = advertisement(self.config.mac, false, target, dst, eth_dst, !dad);
            self.counters.ndp_answered += 1;
            self.push_pending(Pending::Frame(na));
            return OutsideRx::Consumed;
        }
        let Ok(tlla) = link_layer_option(&icmp[24..], 2) else {
            return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
        };
        if !self.config.is_own6(target) && self.neighbours6.contains(target) {
            self.learn(now, target, tlla.unwrap_or(src_mac), false);
        }
        OutsideRx::Consumed
    }

    /// Records `ip` at `mac` (creating the entry only if `create`) and releases the
    /// packets held for it.
    fn learn<A: Family>(&mut self, now: Instant, ip: A, mac: MacAddr, create: bool) {
        let max = self.config.max_neighbours;
        let (released, _) = A::cache(self).confirm(now, ip, mac, create, max);
        for held in released.into_iter().flatten() {
            let mut frame = held.frame;
            write_ethernet(&mut frame, mac, self.config.mac, A::ETHERTYPE);
            self.push_pending(Pending::Frame(frame));
        }
    }

    /// Sends the IP packet at `frame[14..]` (the first 14 bytes are room for the
    /// Ethernet header) to its next hop.
    pub fn send(&mut self, now: Instant, frame: &mut [u8]) -> OutsideTx {
        let next_hop = if frame.get(14).is_some_and(|b| b >> 4 == 6) {
            self.next_hop6(frame)
                .map(|hop| self.transmit(now, hop, frame))
        } else {
            self.next_hop4(frame)
                .map(|hop| self.transmit(now, hop, frame))
        };
        next_hop.unwrap_or_else(|reason| OutsideTx::Drop(self.drop(reason)))
    }

    fn next_hop4(&self, frame: &[u8]) -> Result<Ipv4Addr, OutsideDrop> {
        let d = frame.get(30..34).ok_or(OutsideDrop::Malformed)?;
        let dst = Ipv4Addr::new(d[0], d[1], d[2], d[3]);
        if self.config.on_link(dst) {
            Ok(dst)
        } else {
            self.config.gateway.ok_or(OutsideDrop::NoRoute)
        }
    }

    fn next_hop6(&self, frame: &[u8]) -> Result<Ipv6Addr, OutsideDrop> {
        if frame.len() < 54 || self.config.addr6.is_none() {
            return Err(OutsideDrop::NoRoute);
        }
        let dst = ipv6_at(frame, 38);
        if self.config.on_link6(dst) {
            Ok(dst)
        } else {
            self.config.gateway6.ok_or(OutsideDrop::NoRoute)
        }
    }

    /// Addresses `frame` to `next_hop` if it is resolved, else holds a copy and asks.
    fn transmit<A: Family>(&mut self, now: Instant, next_hop: A, frame: &mut [u8]) -> OutsideTx {
        let timeout = self.config.neighbour_timeout;
        match A::cache(self).lookup(now, next_hop, timeout) {
            Lookup::Hit { mac, probe } => {
                if probe {
                    self.request(next_hop, Some(mac));
                }
                write_ethernet(frame, mac, self.config.mac, A::ETHERTYPE);
                self.counters.tx_frames += 1;
                OutsideTx::Send { len: frame.len() }
            }
            Lookup::Miss => {
                let held = Held {
                    frame: frame.to_vec(),
                    origin: Origin::Uplink,
                };
                let (per_neighbour, max) = (
                    self.config.pending_per_neighbour,
                    self.config.max_neighbours,
                );
                match A::cache(self).hold(now, next_hop, held, per_neighbour, max) {
                    Hold::Started => {
                        self.request(next_hop, None);
                        OutsideTx::Queued
                    }
                    Hold::Added => OutsideTx::Queued,
                    Hold::Full => OutsideTx::Drop(self.drop(OutsideDrop::HoldFull)),
                }
            }
        }
    }

    fn request<A: Family>(&mut self, target: A, unicast: Option<MacAddr>) {
        *A::requests(&mut self.counters) += 1;
        self.push_pending(A::request(target, unicast));
    }

    fn push_pending(&mut self, pending: Pending) {
        if self.pending.len() < MAX_PENDING {
            self.pending.push_back(pending);
        } else {
            self.drop(OutsideDrop::HoldFull);
        }
    }

    /// Writes the next frame to send into `buf` and returns its length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        while let Some(pending) = self.pending.pop_front() {
            let len = match pending {
                Pending::ArpRequest { target, unicast } => {
                    let frame = arp_frame(
                        unicast.unwrap_or(MacAddr::BROADCAST),
                        ARP_REQUEST,
                        self.config.mac,
                        self.config.addr,
                        MacAddr([0; 6]),
                        target,
                    );
                    buf.get_mut(..ARP_FRAME_LEN)?.copy_from_slice(&frame);
                    ARP_FRAME_LEN
                }
                Pending::Solicitation { target, unicast } => {
                    let src = match self.config.addr6 {
                        Some((addr, _)) if !is_link_local(target) => addr,
                        _ => link_local_from_mac(self.config.mac),
                    };
                    let ns = solicitation(self.config.mac, src, target, unicast);
                    buf.get_mut(..ns.len())?.copy_from_slice(&ns);
                    ns.len()
                }
                Pending::Frame(frame) => match buf.get_mut(..frame.len()) {
                    Some(out) => {
                        out.copy_from_slice(&frame);
                        frame.len()
                    }
                    None => {
                        self.drop(OutsideDrop::Malformed);
                        continue;
                    }
                },
            };
            self.counters.tx_frames += 1;
            return Some(len);
        }
        None
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeout = self.config.neighbour_timeout;
        let v4 = self.neighbours.next_deadline(timeout);
        let v6 = self.neighbours6.next_deadline(timeout);
        v4.into_iter().chain(v6).min()
    }

    /// Retries ARP requests and neighbour solicitations, gives up on silent next hops
    /// (their packets are dropped and counted) and forgets stale neighbours.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire::<Ipv4Addr>(now);
        self.expire::<Ipv6Addr>(now);
    }

    fn expire<A: Family>(&mut self, now: Instant) {
        let mut due = Vec::new();
        let timeout = self.config.neighbour_timeout;
        A::cache(self).poll(now, timeout, &mut due);
        for d in due {
            match d {
                Due::Retry(addr) => self.request(addr, None),
                Due::Failed(_, held) => {
                    self.counters.drops[OutsideDrop::Unresolved as usize] += held.len() as u64;
                }
            }
        }
    }
}

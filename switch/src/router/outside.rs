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
    NEXT_ICMPV6, V6, icmpv6_packet, icmpv6_verifies, ipv6_at, is_link_local, link_layer_option,
    multicast_mac, solicited_node,
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

/// Our IPv4 host on the outside network. See the module documentation.
#[derive(Debug)]
pub struct OutsidePort {
    config: OutsideConfig,
    neighbours: NeighbourCache<Ipv4Addr>,
    neighbours6: NeighbourCache<Ipv6Addr>,
    pending: VecDeque<Pending>,
    due: Vec<Due<Ipv4Addr>>,
    due6: Vec<Due<Ipv6Addr>>,
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
            due: Vec::new(),
            due6: Vec::new(),
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
            let (released, _) =
                self.neighbours
                    .confirm(now, spa, sha, for_us, self.config.max_neighbours);
            for held in released.into_iter().flatten() {
                let mut frame = held.frame;
                write_ethernet(&mut frame, sha, self.config.mac, EtherType::IPV4);
                self.push_pending(Pending::Frame(frame));
            }
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
        let Some(range) = ipv4_packet(frame) else {
            return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
        };
        let ip = &frame[range.clone()];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let unfragmented = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff == 0;
        if dst == self.config.addr
            && ip[9] == PROTO_ICMP
            && unfragmented
            && ip.get(ihl) == Some(&8)
            && checksum::verifies(&ip[ihl..])
        {
            return self.answer_echo(frame, range);
        }
        self.counters.rx_packets += 1;
        OutsideRx::Packet { packet: range }
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
                    return self.answer_echo6(frame, &h, end);
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

    /// Turns an ICMPv6 echo request to our address into the echo reply (RFC 4443 4.2).
    fn answer_echo6(&mut self, frame: &mut [u8], h: &V6, end: usize) -> OutsideRx {
        let src_mac = mac_at(frame, 6);
        let ip = &mut frame[14..end];
        ip[8..24].copy_from_slice(&h.dst.octets());
        ip[24..40].copy_from_slice(&h.src.octets());
        ip[7] = 64;
        let icmp = &mut ip[40..];
        let old = u16::from_be_bytes([icmp[0], icmp[1]]);
        icmp[0] = ECHO_REQUEST + 1;
        let new = u16::from_be_bytes([icmp[0], icmp[1]]);
        let sum = checksum::update_word(u16::from_be_bytes([icmp[2], icmp[3]]), old, new);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        write_ethernet(frame, src_mac, self.config.mac, EtherType::IPV6);
        self.counters.echo_answered += 1;
        self.counters.tx_frames += 1;
        OutsideRx::Reply { len: end }
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
            let (dst, eth_dst) = if h.src.is_unspecified() {
                // Duplicate address detection: defend the address to all-nodes.
                (ALL_NODES, multicast_mac(ALL_NODES))
            } else {
                let mac = sllao.unwrap_or(src_mac);
                if self.config.on_link6(h.src) {
                    self.learn6(now, h.src, mac, true);
                }
                (h.src, mac)
            };
            let mut body = [0u8; 32];
            body[0] = NEIGHBOR_ADVERTISEMENT;
            // Override; solicited unless defending against duplicate detection.
            body[4] = 0x20 | if h.src.is_unspecified() { 0 } else { 0x40 };
            body[8..24].copy_from_slice(&target.octets());
            body[24..26].copy_from_slice(&[2, 1]);
            body[26..32].copy_from_slice(&self.config.mac.0);
            let na = icmpv6_packet(
                Some((eth_dst, self.config.mac)),
                target,
                dst,
                NDP_HOP_LIMIT,
                &body,
            );
            self.counters.ndp_answered += 1;
            self.push_pending(Pending::Frame(na));
            return OutsideRx::Consumed;
        }
        let Ok(tlla) = link_layer_option(&icmp[24..], 2) else {
            return OutsideRx::Drop(self.drop(OutsideDrop::Malformed));
        };
        if !self.config.is_own6(target) && self.neighbours6.contains(target) {
            self.learn6(now, target, tlla.unwrap_or(src_mac), false);
        }
        OutsideRx::Consumed
    }

    fn learn6(&mut self, now: Instant, ip: Ipv6Addr, mac: MacAddr, create: bool) {
        let max = self.config.max_neighbours;
        let (released, _) = self.neighbours6.confirm(now, ip, mac, create, max);
        for held in released.into_iter().flatten() {
            let mut frame = held.frame;
            write_ethernet(&mut frame, mac, self.config.mac, EtherType::IPV6);
            self.push_pending(Pending::Frame(frame));
        }
    }

    /// Turns an echo request to our address into the echo reply (RFC 792), in place.
    fn answer_echo(&mut self, frame: &mut [u8], range: Range<usize>) -> OutsideRx {
        let src_mac = mac_at(frame, 6);
        write_ethernet(frame, src_mac, self.config.mac, EtherType::IPV4);
        let ip = &mut frame[range.clone()];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        super::ipv4::rewrite_echo_reply(ip, ihl);
        self.counters.echo_answered += 1;
        self.counters.tx_frames += 1;
        OutsideRx::Reply { len: range.end }
    }

    /// Sends the IPv4 packet at `frame[14..]` (the first 14 bytes are room for the
    /// Ethernet header) to its next hop.
    pub fn send(&mut self, now: Instant, frame: &mut [u8]) -> OutsideTx {
        if frame.get(14).is_some_and(|b| b >> 4 == 6) {
            return self.send6(now, frame);
        }
        let Some(dst) = frame
            .get(30..34)
            .map(|d| Ipv4Addr::new(d[0], d[1], d[2], d[3]))
        else {
            return OutsideTx::Drop(self.drop(OutsideDrop::Malformed));
        };
        let next_hop = if self.config.on_link(dst) {
            dst
        } else if let Some(gateway) = self.config.gateway {
            gateway
        } else {
            return OutsideTx::Drop(self.drop(OutsideDrop::NoRoute));
        };
        let timeout = self.config.neighbour_timeout;
        match self.neighbours.lookup(now, next_hop, timeout) {
            Lookup::Hit { mac, probe } => {
                if probe {
                    self.request(next_hop, Some(mac));
                }
                write_ethernet(frame, mac, self.config.mac, EtherType::IPV4);
                self.counters.tx_frames += 1;
                OutsideTx::Send { len: frame.len() }
            }
            Lookup::Miss => {
                let held = Held {
                    frame: frame.to_vec(),
                    origin: Origin::Uplink,
                };
                match self.neighbours.hold(
                    now,
                    next_hop,
                    held,
                    self.config.pending_per_neighbour,
                    self.config.max_neighbours,
                ) {
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

    /// [`Self::send`] for an IPv6 packet.
    fn send6(&mut self, now: Instant, frame: &mut [u8]) -> OutsideTx {
        if frame.len() < 54 || self.config.addr6.is_none() {
            return OutsideTx::Drop(self.drop(OutsideDrop::NoRoute));
        }
        let dst = ipv6_at(frame, 38);
        let next_hop = if self.config.on_link6(dst) {
            dst
        } else if let Some(gateway) = self.config.gateway6 {
            gateway
        } else {
            return OutsideTx::Drop(self.drop(OutsideDrop::NoRoute));
        };
        let timeout = self.config.neighbour_timeout;
        match self.neighbours6.lookup(now, next_hop, timeout) {
            Lookup::Hit { mac, probe } => {
                if probe {
                    self.solicit(next_hop, Some(mac));
                }
                write_ethernet(frame, mac, self.config.mac, EtherType::IPV6);
                self.counters.tx_frames += 1;
                OutsideTx::Send { len: frame.len() }
            }
            Lookup::Miss => {
                let held = Held {
                    frame: frame.to_vec(),
                    origin: Origin::Uplink,
                };
                match self.neighbours6.hold(
                    now,
                    next_hop,
                    held,
                    self.config.pending_per_neighbour,
                    self.config.max_neighbours,
                ) {
                    Hold::Started => {
                        self.solicit(next_hop, None);
                        OutsideTx::Queued
                    }
                    Hold::Added => OutsideTx::Queued,
                    Hold::Full => OutsideTx::Drop(self.drop(OutsideDrop::HoldFull)),
                }
            }
        }
    }

    fn solicit(&mut self, target: Ipv6Addr, unicast: Option<MacAddr>) {
        self.counters.ndp_requests += 1;
        self.push_pending(Pending::Solicitation { target, unicast });
    }

    /// A neighbour solicitation for `target` (RFC 4861 7.2.2): to its solicited-node
    /// group, or unicast to `mac` (a reachability probe).
    fn solicitation(&self, target: Ipv6Addr, unicast: Option<MacAddr>) -> Vec<u8> {
        let (dst, eth_dst) = match unicast {
            Some(mac) => (target, mac),
            None => {
                let group = solicited_node(target);
                (group, multicast_mac(group))
            }
        };
        let src = match self.config.addr6 {
            Some((addr, _)) if !is_link_local(target) => addr,
            _ => link_local_from_mac(self.config.mac),
        };
        let mut body = [0u8; 32];
        body[0] = NEIGHBOR_SOLICITATION;
        body[8..24].copy_from_slice(&target.octets());
        body[24..26].copy_from_slice(&[1, 1]);
        body[26..32].copy_from_slice(&self.config.mac.0);
        icmpv6_packet(
            Some((eth_dst, self.config.mac)),
            src,
            dst,
            NDP_HOP_LIMIT,
            &body,
        )
    }

    fn request(&mut self, target: Ipv4Addr, unicast: Option<MacAddr>) {
        self.counters.arp_requests += 1;
        self.push_pending(Pending::ArpRequest { target, unicast });
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
                    let ns = self.solicitation(target, unicast);
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

    /// Retries ARP requests, gives up on silent next hops (their packets are dropped
    /// and counted) and forgets stale neighbours.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = core::mem::take(&mut self.due);
        self.neighbours
            .poll(now, self.config.neighbour_timeout, &mut due);
        for d in due.drain(..) {
            match d {
                Due::Retry(addr) => self.request(addr, None),
                Due::Failed(_, held) => {
                    self.counters.drops[OutsideDrop::Unresolved as usize] += held.len() as u64;
                }
            }
        }
        self.due = due;
        let mut due6 = core::mem::take(&mut self.due6);
        self.neighbours6
            .poll(now, self.config.neighbour_timeout, &mut due6);
        for d in due6.drain(..) {
            match d {
                Due::Retry(addr) => self.solicit(addr, None),
                Due::Failed(_, held) => {
                    self.counters.drops[OutsideDrop::Unresolved as usize] += held.len() as u64;
                }
            }
        }
        self.due6 = due6;
    }

    /// Resolved neighbours: address and MAC.
    pub fn neighbours(&self, now: Instant) -> Vec<(Ipv4Addr, MacAddr)> {
        self.neighbours
            .entries(now, self.config.neighbour_timeout)
            .map(|(addr, mac, _)| (addr, mac))
            .collect()
    }
}

/// The byte range of a well-formed IPv4 packet after the Ethernet header: version 4,
/// a sane header length and total length, a valid header checksum.
fn ipv4_packet(frame: &[u8]) -> Option<Range<usize>> {
    let ip = frame.get(14..)?;
    let first = *ip.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if total < ihl || total > ip.len() || !checksum::verifies(&ip[..ihl]) {
        return None;
    }
    Some(14..14 + total)
}

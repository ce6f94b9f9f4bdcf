//! The packet uplink: an AF_PACKET port on a host interface that the networks leave
//! through with NAT, as Docker's bridge leaves through the host's `eth0` with
//! MASQUERADE and DNAT.
//!
//! Frames read from the uplink port go to the [`OutsidePort`] (ARP, ping, next hops),
//! IP packets for us to [`Nat::handle_inbound`]: replies of masqueraded and routed
//! flows and new flows to published ports enter their network through the router;
//! everything else is dropped and counted. IPv4 packets the router sends towards the
//! uplink go to [`Nat::handle_outbound`] first: translated ones leave through the
//! outside port, hairpin ones re-enter a network, and untouched ones (to a gateway's
//! own address) keep going to host-socket egress, which thereby coexists with the
//! packet uplink on the same networks.
//!
//! IPv6, when the uplink has an IPv6 address, is routed without translation (as
//! Docker routes IPv6): the networks' prefixes must be routed to tapnet's address by
//! the outside. Flows are tracked so that, as with Docker's ip6tables rules, replies
//! (and ICMPv6 errors about them) come in and unsolicited traffic does not. Without an
//! IPv6 address on the uplink, IPv6 keeps leaving through host sockets.

use std::net::Ipv6Addr;
use std::ops::Range;

use tapnet_nat::{
    Conntrack, Direction, EntryInfo, FlowKey, Nat, NatConfig, NatCounters, NatVerdict,
    Network as NatNetwork, Proto, PublishRule, TcpFlags, Zone,
};
use tapnet_switch::NetworkId;
use tapnet_switch::router::{
    OutsideConfig, OutsideCounters, OutsidePort, OutsideRx, OutsideTx, RouterNetwork, UplinkVerdict,
};
use tapnet_wire::Instant;

use super::{DirectWrite, Pipeline};
use crate::datapath::offload::Offload;
use tapnet_switch::PortId;

/// The conntrack zone of the outside side (no network uses it: network ids are small).
pub(crate) const UPLINK_ZONE: Zone = Zone(u16::MAX);

/// The conntrack zone of a network.
pub(crate) fn zone_of(net: NetworkId) -> Option<Zone> {
    u16::try_from(net.0)
        .ok()
        .filter(|&z| z != UPLINK_ZONE.0)
        .map(Zone)
}

fn network_of(zone: Zone) -> NetworkId {
    NetworkId(u32::from(zone.0))
}

/// Settings of the packet uplink.
#[derive(Clone, Debug)]
pub(crate) struct PacketUplinkConfig {
    /// Its port id (not a switch port: its frames never reach the switch).
    pub(crate) port: PortId,
    pub(crate) outside: OutsideConfig,
    pub(crate) nat: NatConfig,
    /// The interface's MTU: longer packets are fragmented or refused by the router.
    pub(crate) mtu: u32,
}

/// The packet uplink's state on the datapath thread.
#[derive(Debug)]
pub(crate) struct PacketUplink {
    pub(crate) port: PortId,
    outside: OutsidePort,
    nat: Nat,
    /// Inbound packets whose TTL ran out before entering a network.
    ttl_exceeded: u64,
    /// Packets to the uplink's own address that nothing serves.
    unserved_local: u64,
    /// The uplink routes IPv6.
    ipv6: bool,
    /// The networks' IPv6 prefixes and gateways.
    prefixes6: Vec<Prefix6>,
    /// IPv6 flows routed through the uplink (one zone: the addresses are global).
    routed6: Conntrack,
    /// Inbound IPv6 packets that belong to no tracked flow.
    unsolicited6: u64,
    /// The uplink interface's MTU.
    mtu: u32,
    /// Frames longer than the MTU that no `virtio_net_hdr` describes (merged by GRO,
    /// or GSO from the peer, on a socket without `PACKET_VNET_HDR`): dropped, as their
    /// checksums are not those of the merged packet.
    oversized: u64,
}

/// Runs `rewrite` (NAT) on the IPv4 packet `ip`, whose TCP/UDP checksum may be
/// partial (`offload`): the field is made a complete checksum over the addresses and
/// ports for the incremental update and turned back afterwards.
fn with_partial_checksum<T>(
    ip: &mut [u8],
    offload: Option<Offload>,
    rewrite: impl FnOnce(&mut [u8]) -> T,
) -> T {
    let field = offload.and_then(Offload::l4_field).filter(|&(l4, offset)| {
        ip.get_mut(l4..)
            .is_some_and(|l4| tapnet_wire::vnet::partial_to_port_checksum(l4, offset))
    });
    let verdict = rewrite(ip);
    if let Some((l4, offset)) = field
        && let Some(l4) = ip.get_mut(l4..)
    {
        tapnet_wire::vnet::port_checksum_to_partial(l4, offset);
    }
    verdict
}

/// A network's IPv6 prefix, for routing inbound packets.
#[derive(Clone, Copy, Debug)]
struct Prefix6 {
    net: NetworkId,
    prefix: u128,
    mask: u128,
    gateway: Ipv6Addr,
}

/// The conntrack key of an IPv6 packet (`None` for protocols that are not tracked)
/// and its TCP flags.
fn key6(ip: &[u8]) -> Option<(FlowKey, Option<TcpFlags>)> {
    let view = tapnet_wire::ip::IpView::parse(ip)?;
    let l4 = ip.get(view.l4_offset..view.l4_offset + view.l4_len)?;
    let (proto, src_port, dst_port, tcp) = match view.proto {
        6 => {
            let t = tapnet_wire::ip::TcpView::parse(l4)?;
            let flags = TcpFlags {
                syn: t.syn,
                ack: t.ack,
                fin: t.fin,
                rst: t.rst,
            };
            (Proto::Tcp, t.src_port, t.dst_port, Some(flags))
        }
        17 => {
            let (src, dst, _) = tapnet_wire::ip::udp_ports(l4)?;
            (Proto::Udp, src, dst, None)
        }
        58 if matches!(l4.first(), Some(128 | 129)) => {
            let id = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]);
            (Proto::IcmpEcho, id, id, None)
        }
        _ => return None,
    };
    let key = FlowKey {
        zone: Zone(0),
        proto,
        src: view.src,
        src_port,
        dst: view.dst,
        dst_port,
    };
    Some((key, tcp))
}

/// The conntrack key of the packet an ICMPv6 error quotes: only its fixed header and
/// the first bytes of its transport header are there (RFC 4443 2.4(c) truncates it).
fn quoted_key6(q: &[u8]) -> Option<FlowKey> {
    let addr = |at: usize| -> Option<Ipv6Addr> {
        let a: [u8; 16] = q.get(at..at + 16)?.try_into().ok()?;
        Some(Ipv6Addr::from(a))
    };
    let word =
        |at: usize| -> Option<u16> { Some(u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?])) };
    let (proto, src_port, dst_port) = match *q.get(6)? {
        6 => (Proto::Tcp, word(40)?, word(42)?),
        17 => (Proto::Udp, word(40)?, word(42)?),
        58 if q.get(40) == Some(&128) => (Proto::IcmpEcho, word(44)?, word(44)?),
        _ => return None,
    };
    Some(FlowKey {
        zone: Zone(0),
        proto,
        src: addr(8)?.into(),
        src_port,
        dst: addr(24)?.into(),
        dst_port,
    })
}

fn ipv6_dst(ip: &[u8]) -> Option<Ipv6Addr> {
    let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
    Some(Ipv6Addr::from(d))
}

/// Counters of the packet uplink, for `tapnet stats`.
#[derive(Clone, Debug)]
pub(crate) struct PacketUplinkStats {
    pub(crate) outside: OutsideCounters,
    pub(crate) nat: NatCounters,
    pub(crate) flows: usize,
    pub(crate) ttl_exceeded: u64,
    pub(crate) unserved_local: u64,
    pub(crate) unsolicited6: u64,
    pub(crate) oversized: u64,
}

impl PacketUplink {
    pub(crate) fn new(config: PacketUplinkConfig) -> Self {
        Self {
            port: config.port,
            ipv6: config.outside.addr6.is_some(),
            outside: OutsidePort::new(config.outside),
            routed6: Conntrack::new(config.nat.conntrack.clone()),
            nat: Nat::new(NatConfig {
                uplink_zone: UPLINK_ZONE,
                ..config.nat
            }),
            ttl_exceeded: 0,
            unserved_local: 0,
            prefixes6: Vec::new(),
            unsolicited6: 0,
            mtu: config.mtu,
            oversized: 0,
        }
    }

    /// The network whose IPv6 prefix holds `addr`.
    fn network6(&self, addr: Ipv6Addr) -> Option<&Prefix6> {
        let bits = addr.to_bits();
        self.prefixes6.iter().find(|p| bits & p.mask == p.prefix)
    }

    /// Puts a routed network behind the NAT (networks with egress only).
    pub(crate) fn add_network(
        &mut self,
        net: NetworkId,
        network: &RouterNetwork,
        masquerade: bool,
    ) -> anyhow::Result<()> {
        if !network.egress {
            return Ok(());
        }
        if let Some(v6) = &network.v6 {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6.prefix_len.min(128)))
                .unwrap_or(0);
            self.prefixes6.retain(|p| p.net != net);
            self.prefixes6.push(Prefix6 {
                net,
                prefix: v6.prefix.to_bits() & mask,
                mask,
                gateway: v6.gateway,
            });
        }
        let Some(v4) = &network.v4 else {
            return Ok(());
        };
        let zone = zone_of(net).ok_or_else(|| anyhow::anyhow!("network id too large"))?;
        self.nat.add_network(NatNetwork {
            zone,
            subnet: v4.network,
            prefix_len: v4.prefix_len,
            gateway: v4.gateway,
            masquerade,
        })?;
        Ok(())
    }

    pub(crate) fn remove_network(&mut self, net: NetworkId) {
        self.prefixes6.retain(|p| p.net != net);
        if let Some(zone) = zone_of(net) {
            self.nat.remove_network(zone);
        }
    }

    pub(crate) fn publish(&mut self, rule: PublishRule) -> anyhow::Result<()> {
        Ok(self.nat.publish(rule)?)
    }

    pub(crate) fn unpublish(&mut self, rule: &PublishRule) -> bool {
        self.nat.unpublish(rule)
    }

    pub(crate) fn flows(&self, now: Instant) -> Vec<EntryInfo> {
        let mut flows = self.nat.conntrack().entries(now);
        flows.extend(self.routed6.entries(now));
        flows
    }

    pub(crate) fn stats(&self) -> PacketUplinkStats {
        PacketUplinkStats {
            outside: *self.outside.counters(),
            nat: *self.nat.counters(),
            flows: self.nat.conntrack().len() + self.routed6.len(),
            ttl_exceeded: self.ttl_exceeded,
            unserved_local: self.unserved_local,
            unsolicited6: self.unsolicited6,
            oversized: self.oversized,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.outside.poll_timeout(),
            self.nat.poll_timeout(),
            self.routed6.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.outside.poll_timeout().is_some_and(|t| t <= now) {
            self.outside.handle_timeout(now);
        }
        while self.nat.poll_expired(now).is_some() {}
        while self.routed6.poll_expired(now).is_some() {}
    }

    /// Tracks an outbound IPv6 packet; false if it must not leave (its destination is
    /// another network's prefix: networks reach each other only through a container
    /// on both).
    fn outbound6(&mut self, now: Instant, ip: &[u8]) -> bool {
        let Some(dst) = ipv6_dst(ip) else {
            return false;
        };
        if self.network6(dst).is_some() {
            return false;
        }
        if let Some((key, tcp)) = key6(ip) {
            // Egress is always allowed; a refused entry (table full, a TCP segment
            // that starts nothing) only means its replies will not come in.
            let _ = self.routed6.track(now, &key, tcp, ip.len());
        }
        true
    }

    /// The network an inbound IPv6 packet may enter: a reply of a tracked flow, or an
    /// ICMPv6 error about one (Packet Too Big keeps path MTU discovery working).
    fn inbound6(&mut self, now: Instant, ip: &[u8]) -> Option<NetworkId> {
        let Some(net) = ipv6_dst(ip)
            .and_then(|dst| self.network6(dst))
            .map(|p| p.net)
        else {
            // For none of our prefixes (or malformed): nothing here to deliver it to.
            self.unsolicited6 += 1;
            return None;
        };
        let admitted = match key6(ip) {
            Some((key, tcp)) => match self.routed6.lookup(&key) {
                Some((_, Direction::Reply)) => {
                    let _ = self.routed6.track(now, &key, tcp, ip.len());
                    true
                }
                _ => false,
            },
            None => {
                // An ICMPv6 error (types below 128) quoting a packet of a tracked flow.
                let view = tapnet_wire::ip::IpView::parse(ip)?;
                let quoted = ip.get(view.l4_offset + 8..)?;
                view.proto == 58
                    && ip.get(view.l4_offset).is_some_and(|&t| t < 128)
                    && quoted_key6(quoted).is_some_and(|k| {
                        matches!(self.routed6.lookup(&k), Some((_, Direction::Original)))
                    })
            }
        };
        if admitted {
            Some(net)
        } else {
            self.unsolicited6 += 1;
            None
        }
    }

    /// Whether `dst` is a network gateway's own IPv6 address (served by host sockets).
    fn is_gateway6(&self, dst: Ipv6Addr) -> bool {
        self.prefixes6.iter().any(|p| p.gateway == dst)
    }
}

impl<H> Pipeline<H> {
    /// Handles a frame read from the uplink port.
    pub(super) fn outside_rx<W: DirectWrite<H>>(
        &mut self,
        now: Instant,
        frame: &[u8],
        offload: Option<Offload>,
        writer: &W,
    ) {
        let (Some(up), Some(scratch)) = (
            self.packet_uplink.as_deref_mut(),
            self.scratch.get_mut(..frame.len()),
        ) else {
            return;
        };
        // 14 bytes of Ethernet header and one 802.1Q tag above the MTU, unless a
        // virtio_net_hdr describes the frame as TSO.
        let segmented = offload.is_some_and(|o| o.gso.is_some());
        if frame.len() > 18 + up.mtu as usize && !segmented {
            if up.oversized == 0 {
                tracing::warn!(
                    len = frame.len(),
                    mtu = up.mtu,
                    "uplink: frames longer than the MTU arrive (receive offload on the \
                     uplink, or segmentation offload on its peer: ethtool -K IFNAME gro off, \
                     ethtool -K PEER tso off gso off tx off); dropping them (counted as oversized)"
                );
            }
            up.oversized += 1;
            return;
        }
        scratch.copy_from_slice(frame);
        match up.outside.handle_frame(now, scratch) {
            OutsideRx::Reply { len } => self.write_outside(0..len, None, writer),
            OutsideRx::Packet { packet } => {
                // The offsets count from a 14-byte Ethernet header, as after the router.
                let offload = offload.and_then(|o| o.shifted_back(packet.start - 14));
                self.inbound(now, packet, offload, writer);
            }
            OutsideRx::Consumed | OutsideRx::Drop(_) => {}
        }
        self.flush_outside(writer);
    }

    /// An IP packet at `scratch[packet]` (after a 14-byte header) that arrived on the
    /// uplink.
    fn inbound<W: DirectWrite<H>>(
        &mut self,
        now: Instant,
        packet: Range<usize>,
        offload: Option<Offload>,
        writer: &W,
    ) {
        let Some(up) = self.packet_uplink.as_deref_mut() else {
            return;
        };
        let ip = &mut self.scratch[packet.clone()];
        if ip.first().is_some_and(|b| b >> 4 == 6) {
            let Some(net) = up.inbound6(now, ip) else {
                return;
            };
            if ip[7] <= 1 {
                up.ttl_exceeded += 1;
                return;
            }
            ip[7] -= 1;
            self.deliver_to_network(now, net, packet.end, offload, writer);
            return;
        }
        let nat = &mut up.nat;
        match with_partial_checksum(ip, offload, |ip| nat.handle_inbound(now, ip)) {
            NatVerdict::ToZone(zone) => {
                // Forwarded into a network: one hop (RFC 1812 5.3.1).
                if ip[8] <= 1 {
                    up.ttl_exceeded += 1;
                    return;
                }
                tapnet_wire::ip::decrement_ttl_v4(ip);
                self.deliver_to_network(now, network_of(zone), packet.end, offload, writer);
            }
            NatVerdict::ToUplink => self.send_outside(now, packet, offload, writer),
            NatVerdict::Untouched | NatVerdict::Drop(_) => {}
        }
    }

    /// Delivers the frame at `scratch[..end]` (IP after a 14-byte header to fill in)
    /// into network `net` through its router leg.
    fn deliver_to_network<W: DirectWrite<H>>(
        &mut self,
        now: Instant,
        net: NetworkId,
        end: usize,
        offload: Option<Offload>,
        writer: &W,
    ) {
        let (Some(router), Some(frame)) = (self.router.as_mut(), self.scratch.get_mut(..end))
        else {
            return;
        };
        if let UplinkVerdict::ToNetwork { len } =
            router.handle_uplink_offloaded(now, net, frame, Offload::for_router(offload))
            && let Some(port) = self.gateway_of(net)
        {
            self.inject(now, port, len, offload, writer);
        }
    }

    /// Offers an IPv4 packet from network `net` at `scratch[packet]` (with at least
    /// 14 bytes before it) to the packet uplink. Returns false when it is not for the
    /// packet uplink (there is none, IPv6, or local delivery to a gateway address):
    /// the caller hands it to host-socket egress.
    pub(super) fn outbound<W: DirectWrite<H>>(
        &mut self,
        now: Instant,
        net: NetworkId,
        packet: Range<usize>,
        offload: Option<Offload>,
        writer: &W,
    ) -> bool {
        let Some(up) = self.packet_uplink.as_deref_mut() else {
            return false;
        };
        let Some(zone) = zone_of(net).filter(|_| packet.start >= 14) else {
            return false;
        };
        let Some(ip) = self.scratch.get_mut(packet.clone()) else {
            return false;
        };
        if ip.first().is_some_and(|b| b >> 4 == 6) {
            // IPv6: routed when the uplink has an address, except local delivery to a
            // gateway (host services through host sockets).
            if !up.ipv6 || ipv6_dst(ip).is_none_or(|d| up.is_gateway6(d)) {
                return false;
            }
            if up.outbound6(now, ip) {
                self.send_outside(now, packet, offload, writer);
            }
            self.flush_outside(writer);
            return true;
        }
        let nat = &mut up.nat;
        match with_partial_checksum(ip, offload, |ip| nat.handle_outbound(now, zone, ip)) {
            NatVerdict::ToUplink => self.send_outside(now, packet, offload, writer),
            NatVerdict::ToZone(target) => {
                // Hairpin: back into a network, as if from the uplink. The frame moves
                // whole (its link header with it), so offsets from its start still hold.
                self.scratch.copy_within(packet.clone(), 14);
                let end = 14 + packet.len();
                self.deliver_to_network(now, network_of(target), end, offload, writer);
            }
            NatVerdict::Untouched => {
                let dst = ip.get(16..20).map(|d| [d[0], d[1], d[2], d[3]]);
                if dst != Some(up.outside.config().addr.octets()) {
                    return false;
                }
                up.unserved_local += 1;
            }
            NatVerdict::Drop(_) => {}
        }
        self.flush_outside(writer);
        true
    }

    /// Sends the IP packet at `scratch[packet]` out of the uplink (its Ethernet header
    /// goes into the 14 bytes before it).
    fn send_outside<W: DirectWrite<H>>(
        &mut self,
        now: Instant,
        packet: Range<usize>,
        offload: Option<Offload>,
        writer: &W,
    ) {
        let Some(up) = self.packet_uplink.as_deref_mut() else {
            return;
        };
        let frame = packet.start - 14..packet.end;
        if let OutsideTx::Send { len } = up.outside.send(now, &mut self.scratch[frame.clone()]) {
            self.write_outside(frame.start..frame.start + len, offload, writer);
        }
    }

    /// Writes what the outside port has queued (ARP requests, released packets).
    /// Uses the scratch buffer: call when nothing else is in it.
    pub(super) fn flush_outside<W: DirectWrite<H>>(&mut self, writer: &W) {
        while let Some(len) = self
            .packet_uplink
            .as_deref_mut()
            .and_then(|up| up.outside.poll_transmit(&mut self.scratch))
        {
            self.write_outside(0..len, None, writer);
        }
    }

    /// Writes `scratch[frame]` (a received frame's `offload` with it) to the uplink.
    fn write_outside<W: DirectWrite<H>>(
        &mut self,
        frame: Range<usize>,
        mut offload: Option<Offload>,
        writer: &W,
    ) {
        let Some(port) = self.packet_uplink.as_deref().map(|up| up.port) else {
            return;
        };
        let (Some(entry), Some(bytes)) = (self.ports.get_mut(&port), self.scratch.get_mut(frame))
        else {
            return;
        };
        if offload.is_some_and(|o| o.csum.is_some()) && !writer.takes_offload(&entry.io) {
            offload = crate::datapath::offload::finish_offload_checksum(bytes, offload);
        }
        if let Err(errno) = writer.write_now(&entry.io, bytes, offload) {
            entry.tx_errors += 1;
            tracing::trace!(errno, "uplink write failed");
        }
    }
}

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
//! own address, IPv6) keep going to host-socket egress, which thereby coexists with
//! the packet uplink on the same networks.

use std::ops::Range;

use tapnet_nat::{
    EntryInfo, Nat, NatConfig, NatCounters, NatVerdict, Network as NatNetwork, PublishRule, Zone,
};
use tapnet_switch::NetworkId;
use tapnet_switch::router::{
    OutsideConfig, OutsideCounters, OutsidePort, OutsideRx, OutsideTx, RouterNetwork, UplinkVerdict,
};
use tapnet_wire::Instant;

use super::{DirectWrite, Pipeline};
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
}

/// Counters of the packet uplink, for `tapnet stats`.
#[derive(Clone, Debug)]
pub(crate) struct PacketUplinkStats {
    pub(crate) outside: OutsideCounters,
    pub(crate) nat: NatCounters,
    pub(crate) flows: usize,
    pub(crate) ttl_exceeded: u64,
    pub(crate) unserved_local: u64,
}

impl PacketUplink {
    pub(crate) fn new(config: PacketUplinkConfig) -> Self {
        Self {
            port: config.port,
            outside: OutsidePort::new(config.outside),
            nat: Nat::new(NatConfig {
                uplink_zone: UPLINK_ZONE,
                ..config.nat
            }),
            ttl_exceeded: 0,
            unserved_local: 0,
        }
    }

    /// Puts a routed network behind the NAT (networks with egress only).
    pub(crate) fn add_network(
        &mut self,
        net: NetworkId,
        network: &RouterNetwork,
        masquerade: bool,
    ) -> anyhow::Result<()> {
        let (Some(v4), true) = (&network.v4, network.egress) else {
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
        self.nat.conntrack().entries(now)
    }

    pub(crate) fn stats(&self) -> PacketUplinkStats {
        PacketUplinkStats {
            outside: *self.outside.counters(),
            nat: *self.nat.counters(),
            flows: self.nat.conntrack().len(),
            ttl_exceeded: self.ttl_exceeded,
            unserved_local: self.unserved_local,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match (self.outside.poll_timeout(), self.nat.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.outside.poll_timeout().is_some_and(|t| t <= now) {
            self.outside.handle_timeout(now);
        }
        while self.nat.poll_expired(now).is_some() {}
    }
}

impl<H> Pipeline<H> {
    /// Handles a frame read from the uplink port.
    pub(super) fn outside_rx<W: DirectWrite<H>>(&mut self, now: Instant, frame: &[u8], writer: &W) {
        let (Some(up), Some(scratch)) = (
            self.packet_uplink.as_deref_mut(),
            self.scratch.get_mut(..frame.len()),
        ) else {
            return;
        };
        scratch.copy_from_slice(frame);
        match up.outside.handle_frame(now, scratch) {
            OutsideRx::Reply { len } => self.write_outside(0..len, writer),
            OutsideRx::Packet { packet } => self.inbound(now, packet, writer),
            OutsideRx::Consumed | OutsideRx::Drop(_) => {}
        }
        self.flush_outside(writer);
    }

    /// An IP packet at `scratch[packet]` (after a 14-byte header) that arrived on the
    /// uplink.
    fn inbound<W: DirectWrite<H>>(&mut self, now: Instant, packet: Range<usize>, writer: &W) {
        let Some(up) = self.packet_uplink.as_deref_mut() else {
            return;
        };
        let ip = &mut self.scratch[packet.clone()];
        match up.nat.handle_inbound(now, ip) {
            NatVerdict::ToZone(zone) => {
                // Forwarded into a network: one hop (RFC 1812 5.3.1).
                if ip[8] <= 1 {
                    up.ttl_exceeded += 1;
                    return;
                }
                tapnet_wire::ip::decrement_ttl_v4(ip);
                self.deliver_to_network(now, network_of(zone), packet.end, writer);
            }
            NatVerdict::ToUplink => self.send_outside(now, packet, writer),
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
        writer: &W,
    ) {
        let (Some(router), Some(frame)) = (self.router.as_mut(), self.scratch.get_mut(..end))
        else {
            return;
        };
        if let UplinkVerdict::ToNetwork { len } = router.handle_uplink(now, net, frame)
            && let Some(port) = self.gateway_of(net)
        {
            self.inject(now, port, len, writer);
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
        match up.nat.handle_outbound(now, zone, ip) {
            NatVerdict::ToUplink => self.send_outside(now, packet, writer),
            NatVerdict::ToZone(target) => {
                // Hairpin: back into a network, as if from the uplink.
                self.scratch.copy_within(packet.clone(), 14);
                self.deliver_to_network(now, network_of(target), 14 + packet.len(), writer);
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
    fn send_outside<W: DirectWrite<H>>(&mut self, now: Instant, packet: Range<usize>, writer: &W) {
        let Some(up) = self.packet_uplink.as_deref_mut() else {
            return;
        };
        let frame = packet.start - 14..packet.end;
        if let OutsideTx::Send { len } = up.outside.send(now, &mut self.scratch[frame.clone()]) {
            self.write_outside(frame.start..frame.start + len, writer);
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
            self.write_outside(0..len, writer);
        }
    }

    fn write_outside<W: DirectWrite<H>>(&mut self, frame: Range<usize>, writer: &W) {
        let Some(port) = self.packet_uplink.as_deref().map(|up| up.port) else {
            return;
        };
        let (Some(entry), Some(bytes)) = (self.ports.get_mut(&port), self.scratch.get(frame))
        else {
            return;
        };
        if let Err(errno) = writer.write_now(&entry.io, bytes) {
            entry.tx_errors += 1;
            tracing::trace!(errno, "uplink write failed");
        }
    }
}

//! Sans-IO IPv4/IPv6 router: the gateway of each network. (API skeleton: bodies to be
//! filled in.)
//!
//! The router sits behind each network's gateway port of the switch. Frames addressed
//! to the gateway (or broadcast/multicast) go to [`Router::handle_frame`]; IP packets
//! coming back from the uplink go to [`Router::handle_uplink`]. Both work in place on
//! the caller's buffer on the fast path; anything the router generates on its own
//! (ICMP errors, ARP/NDP requests, router advertisements, DHCP, packets released after
//! address resolution) is queued and drained with [`Router::poll_transmit`].

use core::ops::Range;
use core::time::Duration;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::NetworkId;
use tapnet_wire::{Instant, MacAddr};

/// Router-wide settings.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    /// How long a resolved neighbour stays valid without confirmation.
    pub neighbour_timeout: Duration,
    /// Packets held per unresolved neighbour while ARP/NDP runs.
    pub pending_per_neighbour: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self { neighbour_timeout: Duration::from_secs(60), pending_per_neighbour: 16 }
    }
}

/// A DHCPv4 server for a network.
#[derive(Clone, Debug)]
pub struct DhcpConfig {
    /// Dynamic pool, inclusive (slirp4netns: .15 to .30).
    pub pool: (Ipv4Addr, Ipv4Addr),
    pub dns: Vec<Ipv4Addr>,
    pub lease_time: Duration,
}

/// IPv4 side of a network.
#[derive(Clone, Debug)]
pub struct RouterV4 {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// More addresses the router owns on this network (the DNS address 10.0.2.3): it
    /// answers ARP and ICMP echo for them, and passes other traffic to them to the uplink.
    pub extra: Vec<Ipv4Addr>,
    pub dhcp: Option<DhcpConfig>,
}

/// IPv6 side of a network: a routed prefix, router advertisements, NDP.
#[derive(Clone, Debug)]
pub struct RouterV6 {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub gateway: Ipv6Addr,
    pub extra: Vec<Ipv6Addr>,
    /// Advertised as RDNSS (RFC 8106).
    pub dns: Vec<Ipv6Addr>,
}

/// One network as the router sees it.
#[derive(Clone, Debug)]
pub struct RouterNetwork {
    pub gateway_mac: MacAddr,
    pub v4: Option<RouterV4>,
    pub v6: Option<RouterV6>,
    pub mtu: u32,
    /// May traffic leave through the uplink (false for `--internal` networks)?
    pub egress: bool,
    /// Does traffic (other than ICMP echo) to the router's own addresses go to the
    /// uplink (slirp4netns' 10.0.2.2 -> host loopback)? If not, it is answered with
    /// ICMP port unreachable (UDP) or a TCP RST, as a host with no such service.
    pub own_addresses_to_uplink: bool,
}

/// Why the router dropped a packet. Each reason has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RouterDrop {
    /// Not IPv4/IPv6/ARP, or a header that does not parse.
    Malformed,
    /// IPv4 header checksum does not verify.
    BadChecksum,
    /// TTL or hop limit ran out (an ICMP time-exceeded was queued).
    TtlExceeded,
    /// Over the egress MTU with DF set, or IPv6 (an ICMP error was queued).
    TooBig,
    /// No route, or the route leads to another network (networks are isolated).
    NoRoute,
    /// The network may not use the uplink.
    EgressDenied,
    /// The neighbour did not answer ARP/NDP (ICMP host unreachable was queued).
    Unresolved,
    /// Not for the router (another MAC, an ARP request for someone else).
    NotForUs,
}

/// What to do with a frame handed to [`Router::handle_frame`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouterVerdict {
    /// The IP packet at `packet` (within the frame) goes to the uplink; its TTL or hop
    /// limit is already decremented and its checksum updated.
    Uplink { packet: Range<usize> },
    /// The frame was rewritten in place into an answer (ARP reply, echo reply) of
    /// `len` bytes: send it into the network from the gateway port.
    Reply { len: usize },
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
    ToNetwork { len: usize },
    /// Held until the neighbour resolves (copied); its ARP/NDP request was queued.
    Queued,
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
    pub net: NetworkId,
    pub to: TransmitTo,
    pub len: usize,
}

/// The router.
#[derive(Debug)]
pub struct Router {}

impl Router {
    pub fn new(_config: RouterConfig) -> Self {
        todo!()
    }
    pub fn add_network(&mut self, _net: NetworkId, _network: RouterNetwork) -> Result<(), crate::ConfigError> {
        todo!()
    }
    pub fn remove_network(&mut self, _net: NetworkId) -> Result<(), crate::ConfigError> {
        todo!()
    }
    /// A frame the switch delivered to `net`'s gateway port (unicast to the gateway
    /// MAC, or broadcast/multicast). May rewrite it in place.
    pub fn handle_frame(&mut self, _now: Instant, _net: NetworkId, _frame: &mut [u8]) -> RouterVerdict {
        todo!()
    }
    /// An IP packet from the uplink for a host of `net`, stored at `frame[14..]`; the
    /// router fills in `frame[..14]`.
    pub fn handle_uplink(&mut self, _now: Instant, _net: NetworkId, _frame: &mut [u8]) -> UplinkVerdict {
        todo!()
    }
    /// Writes the next generated packet into `buf` (at least 65536 + 14 bytes).
    pub fn poll_transmit(&mut self, _now: Instant, _buf: &mut [u8]) -> Option<Transmit> {
        todo!()
    }
    /// When `handle_timeout` should next run (ARP retries, neighbour expiry, RAs).
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!()
    }
    /// The gateway MAC of a network.
    pub fn gateway_mac(&self, _net: NetworkId) -> Option<MacAddr> {
        todo!()
    }
}

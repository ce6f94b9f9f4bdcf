//! Host-socket egress, the rootless uplink: IP packets from containers leave through
//! ordinary host sockets opened by this unprivileged process, and what those sockets
//! receive comes back as IP packets. (API skeleton: bodies to be filled in.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::BorrowedFd;

use tapnet_conntrack::{ConntrackConfig, EntryInfo};
use tapnet_switch::NetworkId;

/// The addresses of one network that the engine serves.
#[derive(Clone, Debug)]
pub(crate) struct EngineNetwork {
    pub(crate) id: NetworkId,
    /// The network's gateway (10.0.2.2 in slirp4netns terms).
    pub(crate) gateway: Ipv4Addr,
    /// Traffic to the gateway's address goes to the host's 127.0.0.1 (and fd00::2 to ::1).
    pub(crate) host_loopback: bool,
    /// The DNS address (10.0.2.3): port 53 there goes to the host's resolvers.
    pub(crate) dns: Option<Ipv4Addr>,
    /// IPv6 gateway (fd00::2) and DNS (fd00::3) addresses, when IPv6 is on.
    pub(crate) gateway6: Option<Ipv6Addr>,
    pub(crate) dns6: Option<Ipv6Addr>,
    /// Largest IP packet the engine may send into this network.
    pub(crate) mtu: u32,
}

/// Engine settings.
#[derive(Clone, Debug)]
pub(crate) struct EngineConfig {
    pub(crate) networks: Vec<EngineNetwork>,
    /// Source address (or interface, resolved to its address) of host sockets.
    pub(crate) outbound_addr: Option<Ipv4Addr>,
    pub(crate) outbound_addr6: Option<Ipv6Addr>,
    /// The host's DNS servers (from /etc/resolv.conf unless given).
    pub(crate) resolvers: Vec<IpAddr>,
    pub(crate) conntrack: ConntrackConfig,
}

/// Transport protocol of a port forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ForwardProto {
    Tcp,
    Udp,
}

/// A published port range: `host_addr:host_port..+count` to `guest_addr:guest_port..+count`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Forward {
    pub(crate) proto: ForwardProto,
    pub(crate) net: NetworkId,
    pub(crate) host_addr: IpAddr,
    pub(crate) host_port: u16,
    pub(crate) guest_addr: IpAddr,
    pub(crate) guest_port: u16,
    /// Number of consecutive ports (1 for a single port).
    pub(crate) count: u16,
}

/// Handle to the engine thread.
#[derive(Debug)]
pub(crate) struct Engine {}

/// The datapath's end of the packet link to the engine.
#[derive(Debug)]
pub(crate) struct PacketLink {}

impl Engine {
    /// Starts the engine thread.
    pub(crate) fn spawn(_config: EngineConfig) -> anyhow::Result<(Self, PacketLink)> {
        todo!()
    }
    /// Starts listening for a forward; the error is one line fit for a user.
    pub(crate) fn add_forward(&self, _forward: Forward) -> Result<u32, String> {
        todo!()
    }
    pub(crate) fn remove_forward(&self, _id: u32) -> Result<(), String> {
        todo!()
    }
    pub(crate) fn forwards(&self) -> Vec<(u32, Forward)> {
        todo!()
    }
    /// The tracked flows, for `tapnet conntrack`.
    pub(crate) fn conntrack(&self) -> Vec<EntryInfo> {
        todo!()
    }
    /// Stops the thread and closes every host socket.
    pub(crate) fn shutdown(self) {
        todo!()
    }
}

impl PacketLink {
    /// Hands an IP packet from a container of `net` to the engine (copied). Returns
    /// false, and the packet is dropped, when the queue is full.
    pub(crate) fn send(&self, _net: NetworkId, _packet: &[u8]) -> bool {
        todo!()
    }
    /// Takes the next IP packet the engine has for a container.
    pub(crate) fn recv(&self, _buf: &mut [u8]) -> Option<(NetworkId, usize)> {
        todo!()
    }
    /// Readable when `recv` may return a packet (level: drain with `recv` until `None`).
    pub(crate) fn readiness_fd(&self) -> BorrowedFd<'_> {
        todo!()
    }
}

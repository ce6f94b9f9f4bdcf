//! Sans-IO learning Ethernet bridge for tapnet.
//!
//! Frames and the current time go in; forwarding decisions come out. No syscalls, no
//! threads, no clock reads, no allocation per frame. (API skeleton: bodies to be filled.)

#![forbid(unsafe_code)]

use core::time::Duration;
pub use tapnet_wire::{Instant, MacAddr};

/// Identifies a port (one attachment of a container, the gateway/router, or an uplink).
/// Chosen by the shell; dense small numbers are cheapest (they index a table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct PortId(pub u32);

/// Identifies a network: an isolated L2 segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct NetworkId(pub u32);

/// What sits behind a port. The ICC rule only concerns `Container` to `Container`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PortRole {
    /// A container's interface.
    Container,
    /// The network's gateway (the router's leg on this network; see the router issue).
    Gateway,
    /// A packet uplink to the outside (see the NAT issue).
    Uplink,
}

/// Switch-wide settings.
#[derive(Clone, Debug)]
pub struct SwitchConfig {
    /// Most MAC entries held at once, over all networks.
    pub mac_capacity: usize,
    /// An entry not refreshed for this long is forgotten (Linux bridge default: 300 s).
    pub ageing_time: Duration,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        Self { mac_capacity: 16 * 1024, ageing_time: Duration::from_secs(300) }
    }
}

/// Per-network settings.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// Inter-container communication (Docker's `enable_icc`).
    pub icc: bool,
    /// Longest frame accepted, header included (MTU + 14 + 4 for one VLAN tag).
    pub max_frame_len: usize,
}

/// Why a frame was dropped. Each reason has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Longer than the network's `max_frame_len`.
    Oversized,
    /// Source MAC is multicast, broadcast or all-zeros.
    InvalidSourceMac,
    /// 01:80:c2:00:00:0x, which IEEE 802.1D bridges never forward.
    LinkLocalGroup,
    /// The ingress port is not attached.
    UnknownPort,
    /// The destination was learned on the ingress port itself.
    DestinationIsIngress,
    /// Container to container on a network with ICC disabled.
    IccDisabled,
    /// Flooding found no port to send to.
    NoEgress,
}

/// The decision for one frame. `Flood` borrows the switch's precomputed egress list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Send the frame unchanged to this one port.
    Forward(PortId),
    /// Send the frame unchanged to each of these ports (never the ingress port).
    Flood(&'a [PortId]),
    /// Drop the frame; it has been counted under this reason.
    Drop(DropReason),
}

/// An error from a control-path call; the switch is unchanged when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("network {0:?} already exists")]
    NetworkExists(NetworkId),
    #[error("network {0:?} does not exist")]
    UnknownNetwork(NetworkId),
    #[error("network {0:?} still has ports attached")]
    NetworkInUse(NetworkId),
    #[error("port {0:?} already exists")]
    PortExists(PortId),
    #[error("port {0:?} does not exist")]
    UnknownPort(PortId),
}

/// One learned MAC address, for listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacEntry {
    pub mac: MacAddr,
    pub port: PortId,
    /// Time since the address was last seen as a source.
    pub age: Duration,
}

/// Counters of one port, as seen by the switch (tx = frames the switch sent to it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    // drops by reason, on ingress at this port: to be filled in
}

/// The learning bridge.
#[derive(Debug)]
pub struct Switch {}

impl Switch {
    pub fn new(_config: SwitchConfig) -> Self {
        todo!()
    }
    pub fn add_network(&mut self, _net: NetworkId, _config: NetworkConfig) -> Result<(), ConfigError> {
        todo!()
    }
    pub fn remove_network(&mut self, _net: NetworkId) -> Result<(), ConfigError> {
        todo!()
    }
    pub fn add_port(&mut self, _port: PortId, _net: NetworkId, _role: PortRole) -> Result<(), ConfigError> {
        todo!()
    }
    pub fn remove_port(&mut self, _port: PortId) -> Result<(), ConfigError> {
        todo!()
    }
    pub fn handle_frame(&mut self, _now: Instant, _ingress: PortId, _frame: &[u8]) -> Verdict<'_> {
        todo!()
    }
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!()
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    pub fn mac_entries(&self, _net: NetworkId, _now: Instant) -> Vec<MacEntry> {
        todo!()
    }
    pub fn port_counters(&self, _port: PortId) -> Option<PortCounters> {
        todo!()
    }
}

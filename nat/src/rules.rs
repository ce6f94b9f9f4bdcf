//! NAT configuration: the uplink, the networks behind it (masquerade, gateway) and
//! published ports (DNAT), with the checks that keep them consistent.

use std::net::Ipv4Addr;

use tapnet_conntrack::{ConntrackConfig, Proto, Zone};

/// An inclusive range of ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (inclusive, `>= first`).
    pub last: u16,
}

impl PortRange {
    /// The range `first..=last`.
    pub const fn new(first: u16, last: u16) -> Self {
        Self { first, last }
    }

    /// One port.
    pub const fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    /// Number of ports (0 if `last < first`).
    pub const fn len(&self) -> u32 {
        if self.last < self.first {
            0
        } else {
            (self.last - self.first) as u32 + 1
        }
    }

    /// No port.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `port` is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    fn overlaps(&self, other: &Self) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Settings of a [`crate::Nat`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// The conntrack zone of the uplink side (no network may use it). Reply tuples of
    /// masqueraded flows and original tuples of published flows live in it, so one
    /// port space per (uplink address, protocol, remote endpoint) is shared by all
    /// networks, as in Linux.
    pub uplink_zone: Zone,
    /// The uplink's IPv4 address: the masquerade source, a "local address" for
    /// published ports.
    pub uplink_addr: Ipv4Addr,
    /// Where a source port (or echo identifier) is taken from when the original one is
    /// taken (Linux `ip_local_port_range`, 32768-60999 by default).
    pub port_range: PortRange,
    /// The connection table.
    pub conntrack: ConntrackConfig,
    /// Seeds the table hash and the port search start; pick it at random in the shell.
    pub hash_seed: u64,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            uplink_zone: Zone(0),
            uplink_addr: Ipv4Addr::UNSPECIFIED,
            port_range: PortRange::new(32768, 60999),
            conntrack: ConntrackConfig::default(),
            hash_seed: 0x5eed_7a9e_ba7c_0ffe,
        }
    }
}

/// A network behind the NAT (one conntrack zone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    /// Its zone.
    pub zone: Zone,
    /// Its subnet address.
    pub subnet: Ipv4Addr,
    /// Its prefix length (0..=32).
    pub prefix_len: u8,
    /// Its gateway address: a local address for published ports, and the source
    /// hairpin NAT gives to connections into this network.
    pub gateway: Ipv4Addr,
    /// Masquerade traffic from the subnet to the uplink (Docker
    /// `com.docker.network.bridge.enable_ip_masquerade`).
    pub masquerade: bool,
}

impl Network {
    /// Whether `addr` is in the subnet.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        addr.to_bits() & mask == self.subnet.to_bits() & mask
    }
}

/// A published port or range (Docker `-p [ip:]hostport[-end]:containerport`): DNAT
/// of new flows to `external_addr:external_ports` to `internal_addr:internal_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishRule {
    /// TCP or UDP.
    pub proto: Proto,
    /// The address connected to; `0.0.0.0` means any local address (the uplink
    /// address and every gateway), as Docker's default `-p 8080:80`.
    pub external_addr: Ipv4Addr,
    /// The published ports.
    pub external_ports: PortRange,
    /// The zone of the target container's network.
    pub zone: Zone,
    /// The target container's address.
    pub internal_addr: Ipv4Addr,
    /// The target port of `external_ports.first`; a range maps one-to-one
    /// (`8000-8010:80-90`).
    pub internal_port: u16,
}

impl PublishRule {
    /// The internal port of `external_port` (which must be in the range).
    pub(crate) fn target_port(&self, external_port: u16) -> u16 {
        self.internal_port
            .wrapping_add(external_port.wrapping_sub(self.external_ports.first))
    }

    fn overlaps(&self, other: &Self) -> bool {
        self.proto == other.proto
            && self.external_ports.overlaps(&other.external_ports)
            && (self.external_addr == other.external_addr
                || self.external_addr.is_unspecified()
                || other.external_addr.is_unspecified())
    }
}

/// Why a configuration change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A network may not use the uplink zone.
    UplinkZone,
    /// A prefix length above 32.
    BadPrefix,
    /// Publishing works for TCP and UDP only.
    UnsupportedProtocol,
    /// An empty port range, or one whose target range would pass port 65535.
    BadPortRange,
    /// The rule overlaps a published port already in force.
    AlreadyPublished,
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::UplinkZone => "a network cannot use the uplink zone",
            Self::BadPrefix => "prefix length above 32",
            Self::UnsupportedProtocol => "only TCP and UDP ports can be published",
            Self::BadPortRange => "empty or overflowing port range",
            Self::AlreadyPublished => "port already published",
        })
    }
}

impl std::error::Error for ConfigError {}

/// The networks and published ports.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rules {
    pub(crate) networks: Vec<Network>,
    pub(crate) published: Vec<PublishRule>,
}

impl Rules {
    pub(crate) fn add_network(
        &mut self,
        uplink: Zone,
        network: Network,
    ) -> Result<(), ConfigError> {
        if network.zone == uplink {
            return Err(ConfigError::UplinkZone);
        }
        if network.prefix_len > 32 {
            return Err(ConfigError::BadPrefix);
        }
        self.networks.retain(|n| n.zone != network.zone);
        self.networks.push(network);
        Ok(())
    }

    pub(crate) fn publish(&mut self, rule: PublishRule) -> Result<(), ConfigError> {
        if rule.proto == Proto::IcmpEcho {
            return Err(ConfigError::UnsupportedProtocol);
        }
        let span = rule.external_ports.len();
        if span == 0 || u32::from(rule.internal_port) + span - 1 > u32::from(u16::MAX) {
            return Err(ConfigError::BadPortRange);
        }
        if self.published.iter().any(|r| r.overlaps(&rule)) {
            return Err(ConfigError::AlreadyPublished);
        }
        self.published.push(rule);
        Ok(())
    }

    pub(crate) fn network(&self, zone: Zone) -> Option<&Network> {
        self.networks.iter().find(|n| n.zone == zone)
    }

    /// Whether `addr` is one of ours: the uplink address or a gateway.
    pub(crate) fn is_local(&self, uplink: Ipv4Addr, addr: Ipv4Addr) -> bool {
        addr == uplink || self.networks.iter().any(|n| n.gateway == addr)
    }

    /// The rule publishing `dst:port` for `proto`. `local` says whether `dst` is a
    /// local address (required by wildcard rules).
    pub(crate) fn published(
        &self,
        proto: Proto,
        dst: Ipv4Addr,
        port: u16,
        local: bool,
    ) -> Option<&PublishRule> {
        self.published.iter().find(|r| {
            r.proto == proto
                && r.external_ports.contains(port)
                && (r.external_addr == dst || (local && r.external_addr.is_unspecified()))
        })
    }
}

//! The learning bridge: topology (networks, ports, roles), the per-frame L2 decision,
//! and the precomputed flood lists.
//!
//! Layer: sans-IO core. [`Switch::handle_frame`] takes one frame, the port it came from
//! and the current time, and returns a [`Verdict`]; it makes no syscall, reads no clock,
//! and does not allocate. Control calls (`add_*`/`remove_*`/`update_network`) are the
//! only place that allocates; they validate first and leave the switch unchanged when
//! they return an error.
//!
//! Invariants, checked by the proptests and the fuzz harness:
//!
//! - a verdict never names the ingress port;
//! - a verdict never names a port of another network (the MAC table is keyed by network
//!   and flood lists hold only ports of the ingress port's network);
//! - with ICC off, no Container -> Container delivery, unicast or flooded;
//! - the MAC table never holds more than `SwitchConfig::mac_capacity` learned entries
//!   (pinned ones, one per guarded port and per [`Switch::pin_mac`], come on top);
//! - every frame ends in exactly one verdict and, if dropped, one drop counter;
//! - a frame from a guarded port that reaches any egress has a source MAC and a source
//!   IP (or ARP sender) the port was given ([`PortGuard`]); a pinned MAC never moves, and
//!   a frame from another port with it as source is dropped (`spoofed_mac`).
//!
//! The forwarding process follows IEEE 802.1D-2004 clause 7.7 (frames to a learned
//! address go to that port only; group and unknown addresses go to every other port)
//! and the Linux bridge where 802.1D leaves room (`br_handle_frame_finish()`).

use core::time::Duration;

use hashbrown::HashMap;
use tapnet_wire::EthernetFrame;

use crate::counters::{DropCounters, DropReason, PortCounters, SwitchCounters};
use crate::guard::PortGuard;
use crate::mac_table::{Learned, MacKey, MacTable};
use crate::{Instant, MacAddr};

/// Identifies a port (one attachment of a container, the gateway/router, or an uplink).
/// Chosen by the shell; dense small numbers are cheapest (ids below 65536 index a table
/// directly, larger ones go through a hash map).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct PortId(pub u32);

/// Identifies a network: an isolated L2 segment.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
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
    /// Zero turns learning off: every unicast frame floods, like a hub.
    pub ageing_time: Duration,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        Self {
            mac_capacity: 16 * 1024,
            ageing_time: Duration::from_secs(300),
        }
    }
}

/// Per-network settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Inter-container communication (Docker's `enable_icc`).
    pub icc: bool,
    /// Longest frame accepted, header included (MTU + 14 + 4 for one VLAN tag).
    pub max_frame_len: usize,
}

impl NetworkConfig {
    /// Ethernet header plus one IEEE 802.1Q tag: what a frame adds to the MTU.
    pub const FRAME_OVERHEAD: usize = 14 + 4;

    /// ICC on and `max_frame_len` sized for `mtu` (header and one VLAN tag added).
    pub const fn with_mtu(mtu: usize) -> Self {
        Self {
            icc: true,
            max_frame_len: mtu.saturating_add(Self::FRAME_OVERHEAD),
        }
    }
}

impl Default for NetworkConfig {
    /// ICC on, MTU 1500 (Docker's defaults).
    fn default() -> Self {
        Self::with_mtu(1500)
    }
}

/// The decision for one frame. `Flood` borrows the switch's precomputed egress list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// Send the frame unchanged to this one port.
    Forward(PortId),
    /// Send the frame unchanged to each of these ports (never the ingress port; never
    /// empty; sorted by port id).
    Flood(&'a [PortId]),
    /// Drop the frame; it has been counted under this reason.
    Drop(DropReason),
}

/// An error from a control-path call; the switch is unchanged when one is returned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `add_network` with an id already in use.
    #[error("network {0:?} already exists")]
    NetworkExists(NetworkId),
    /// The network is not known to the switch.
    #[error("network {0:?} does not exist")]
    UnknownNetwork(NetworkId),
    /// `remove_network` while ports are still attached to it.
    #[error("network {0:?} still has ports attached")]
    NetworkInUse(NetworkId),
    /// `add_port` with an id already in use.
    #[error("port {0:?} already exists")]
    PortExists(PortId),
    /// The port is not attached.
    #[error("port {0:?} does not exist")]
    UnknownPort(PortId),
    /// More than [`Switch::MAX_NETWORKS`] networks at once.
    #[error("too many networks (at most {} at once)", Switch::MAX_NETWORKS)]
    TooManyNetworks,
    /// A MAC to pin that is not an individual address (IEEE 802-2014 8.2).
    #[error("MAC address {0} is not a unicast address")]
    InvalidMac(MacAddr),
    /// The MAC is already pinned to another port of the network.
    #[error("MAC address {mac} is already pinned to port {port:?}")]
    MacPinned {
        /// The address.
        mac: MacAddr,
        /// The port it is pinned to.
        port: PortId,
    },
    /// A static DHCP lease of an address that no client of the network may hold:
    /// outside its IPv4 subnet, one of the router's own, or the subnet's network or
    /// broadcast address.
    #[error("{0} cannot be leased: not a host address of the network's subnet")]
    UnusableAddress(std::net::Ipv4Addr),
}

/// One learned MAC address, for listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacEntry {
    /// The station's address.
    pub mac: MacAddr,
    /// The port it was last seen on.
    pub port: PortId,
    /// Time since the address was last seen as a source.
    pub age: Duration,
    /// A pinned (static) entry: a guarded port's MAC or one [`Switch::pin_mac`] set.
    pub pinned: bool,
}

/// Port ids below this index `port_index` directly.
const DIRECT_PORT_IDS: u32 = 1 << 16;
/// "No slot" in `port_index`.
const NO_SLOT: u32 = u32::MAX;
/// The default foldhash seed of [`Switch::new`].
const DEFAULT_HASH_SEED: u64 = 0x7461_706e_6574_0001;

/// One attached port. Hot fields copied from its network so that the per-frame
/// decision touches only this struct, the MAC table and the egress port.
#[derive(Debug)]
struct Port {
    id: PortId,
    /// Dense slot of the network.
    net: u16,
    role: PortRole,
    /// Copy of the network's `icc`.
    icc: bool,
    /// Copy of the network's `max_frame_len`.
    max_frame_len: usize,
    /// Where a frame from this port floods to, sorted by id (what `Verdict::Flood` lends).
    flood_ids: Vec<PortId>,
    /// The same ports as dense slots (to count tx without lookups).
    flood_slots: Vec<u32>,
    /// What the port may send, if it is guarded (boxed: most frames come from ports
    /// without one, and the hot struct stays small).
    guard: Option<Box<PortGuard>>,
}

/// One network.
#[derive(Debug)]
struct Network {
    id: NetworkId,
    config: NetworkConfig,
    /// Slots of the member ports, sorted by port id.
    ports: Vec<u32>,
}

/// What `decide` concluded, before counters and borrowing.
#[derive(Clone, Copy, Debug)]
enum Decision {
    Forward { slot: u32, port: PortId },
    Flood,
    Drop(DropReason),
}

/// The learning bridge.
///
/// Feed it frames with [`handle_frame`](Self::handle_frame); call
/// [`handle_timeout`](Self::handle_timeout) when [`poll_timeout`](Self::poll_timeout)
/// says so, to sweep aged-out MAC entries (lookups ignore expired entries even before
/// the sweep, so a late sweep costs memory, never correctness).
#[derive(Debug)]
pub struct Switch {
    config: SwitchConfig,
    /// Ports by dense slot; `None` marks a free slot.
    ports: Vec<Option<Port>>,
    /// Counters by port slot (kept apart from `ports` so that counting tx while lending
    /// a flood list borrows disjoint fields).
    port_stats: Vec<PortCounters>,
    /// Free port slots, reused before growing `ports`.
    free_port_slots: Vec<u32>,
    /// `PortId.0 -> slot` for ids below `DIRECT_PORT_IDS` (`NO_SLOT` when absent).
    port_index: Vec<u32>,
    /// `PortId.0 -> slot` for larger ids.
    port_index_overflow: HashMap<u32, u32, foldhash::fast::FixedState>,
    /// Networks by dense slot; `None` marks a free slot.
    networks: Vec<Option<Network>>,
    /// `NetworkId -> slot` (control path only: ports carry their network's slot).
    network_index: HashMap<NetworkId, u16, foldhash::fast::FixedState>,
    table: MacTable,
    counters: SwitchCounters,
    /// Guarded ports that learn from DHCP acknowledgements (none: no frame is parsed
    /// for them).
    snooping_ports: usize,
}

impl Switch {
    /// Most networks held at once (network slots are 16 bits wide in MAC table keys).
    pub const MAX_NETWORKS: usize = 1 << 16;

    /// An empty switch with a fixed hash seed: deterministic, for tests and fuzzing.
    /// The shell should prefer [`with_hash_seed`](Self::with_hash_seed) with a random
    /// seed, so that containers cannot pick source addresses that collide in the table.
    pub fn new(config: SwitchConfig) -> Self {
        Self::with_hash_seed(config, DEFAULT_HASH_SEED)
    }

    /// An empty switch whose MAC table hashes with `hash_seed` (draw it at random, e.g.
    /// from `getrandom`; the core itself has no source of randomness).
    pub fn with_hash_seed(config: SwitchConfig, hash_seed: u64) -> Self {
        let table = MacTable::new(config.mac_capacity, config.ageing_time, hash_seed);
        let hasher = foldhash::fast::FixedState::with_seed(hash_seed);
        Self {
            config,
            ports: Vec::new(),
            port_stats: Vec::new(),
            free_port_slots: Vec::new(),
            port_index: Vec::new(),
            port_index_overflow: HashMap::with_hasher(hasher.clone()),
            networks: Vec::new(),
            network_index: HashMap::with_hasher(hasher),
            table,
            counters: SwitchCounters::default(),
            snooping_ports: 0,
        }
    }

    /// The settings the switch was created with.
    pub fn config(&self) -> &SwitchConfig {
        &self.config
    }

    // ---------------------------------------------------------------------------------
    // Control path
    // ---------------------------------------------------------------------------------

    /// Creates an empty network.
    pub fn add_network(
        &mut self,
        net: NetworkId,
        config: NetworkConfig,
    ) -> Result<(), ConfigError> {
        if self.network_index.contains_key(&net) {
            return Err(ConfigError::NetworkExists(net));
        }
        let slot = match self.networks.iter().position(Option::is_none) {
            Some(free) => free,
            None if self.networks.len() < Self::MAX_NETWORKS => {
                self.networks.push(None);
                self.networks.len() - 1
            }
            None => return Err(ConfigError::TooManyNetworks),
        };
        let slot16 = u16::try_from(slot).map_err(|_| ConfigError::TooManyNetworks)?;
        self.networks[slot] = Some(Network {
            id: net,
            config,
            ports: Vec::new(),
        });
        self.network_index.insert(net, slot16);
        Ok(())
    }

    /// Removes a network that has no ports left.
    pub fn remove_network(&mut self, net: NetworkId) -> Result<(), ConfigError> {
        let slot = self.network_slot(net)?;
        let in_use = self.networks[usize::from(slot)]
            .as_ref()
            .is_some_and(|n| !n.ports.is_empty());
        if in_use {
            return Err(ConfigError::NetworkInUse(net));
        }
        // Entries die with their ports; this only guards the invariant that a reused
        // network slot starts with an empty table.
        self.table.remove_network(slot);
        self.networks[usize::from(slot)] = None;
        self.network_index.remove(&net);
        Ok(())
    }

    /// Changes a network's options (ICC, maximum frame length) and recomputes the flood
    /// lists of its ports. Learned addresses are kept.
    pub fn update_network(
        &mut self,
        net: NetworkId,
        config: NetworkConfig,
    ) -> Result<(), ConfigError> {
        let slot = self.network_slot(net)?;
        let Some(network) = self.networks[usize::from(slot)].as_mut() else {
            return Err(ConfigError::UnknownNetwork(net));
        };
        network.config = config;
        self.rebuild_network(slot);
        Ok(())
    }

    /// The options of a network.
    pub fn network_config(&self, net: NetworkId) -> Option<&NetworkConfig> {
        let slot = self.network_index.get(&net)?;
        self.networks[usize::from(*slot)]
            .as_ref()
            .map(|n| &n.config)
    }

    /// Attaches a port to a network, with fresh counters.
    pub fn add_port(
        &mut self,
        port: PortId,
        net: NetworkId,
        role: PortRole,
    ) -> Result<(), ConfigError> {
        if self.slot_of(port).is_some() {
            return Err(ConfigError::PortExists(port));
        }
        let net_slot = self.network_slot(net)?;
        let slot = match self.free_port_slots.pop() {
            Some(slot) => slot,
            None => {
                // A slot count reaching u32::MAX would need ~2^32 ports; memory runs out
                // long before, so saturate rather than carry an error for it.
                let slot = u32::try_from(self.ports.len()).unwrap_or(NO_SLOT - 1);
                self.ports.push(None);
                self.port_stats.push(PortCounters::default());
                slot
            }
        };
        self.ports[slot as usize] = Some(Port {
            id: port,
            net: net_slot,
            role,
            icc: true,
            max_frame_len: 0,
            flood_ids: Vec::new(),
            flood_slots: Vec::new(),
            guard: None,
        });
        self.port_stats[slot as usize] = PortCounters::default();
        if port.0 < DIRECT_PORT_IDS {
            let index = port.0 as usize;
            if self.port_index.len() <= index {
                self.port_index.resize(index + 1, NO_SLOT);
            }
            self.port_index[index] = slot;
        } else {
            self.port_index_overflow.insert(port.0, slot);
        }
        if let Some(network) = self.networks[usize::from(net_slot)].as_mut() {
            let ports = &self.ports;
            let at = network
                .ports
                .partition_point(|&s| ports[s as usize].as_ref().is_some_and(|p| p.id < port));
            network.ports.insert(at, slot);
        }
        self.rebuild_network(net_slot);
        Ok(())
    }

    /// Detaches a port: forgets the MAC addresses learned on it, drops its counters and
    /// recomputes its network's flood lists.
    pub fn remove_port(&mut self, port: PortId) -> Result<(), ConfigError> {
        let slot = self.slot_of(port).ok_or(ConfigError::UnknownPort(port))?;
        let Some(removed) = self.ports[slot as usize].take() else {
            return Err(ConfigError::UnknownPort(port));
        };
        self.table.remove_port(slot);
        if removed.guard.as_ref().is_some_and(|g| g.snoops_dhcp()) {
            self.snooping_ports -= 1;
        }
        if port.0 < DIRECT_PORT_IDS {
            self.port_index[port.0 as usize] = NO_SLOT;
        } else {
            self.port_index_overflow.remove(&port.0);
        }
        self.port_stats[slot as usize] = PortCounters::default();
        self.free_port_slots.push(slot);
        if let Some(network) = self.networks[usize::from(removed.net)].as_mut() {
            network.ports.retain(|&s| s != slot);
        }
        self.rebuild_network(removed.net);
        Ok(())
    }

    /// The network and role of an attached port.
    pub fn port_attachment(&self, port: PortId) -> Option<(NetworkId, PortRole)> {
        let p = self.port(self.slot_of(port)?)?;
        let network = self.networks[usize::from(p.net)].as_ref()?;
        Some((network.id, p.role))
    }

    /// The counters of an attached port.
    pub fn port_counters(&self, port: PortId) -> Option<PortCounters> {
        self.slot_of(port)
            .map(|slot| self.port_stats[slot as usize])
    }

    /// Switch-wide counters.
    pub fn counters(&self) -> SwitchCounters {
        SwitchCounters {
            aged_out: self.table.aged_out(),
            ..self.counters
        }
    }

    /// Switch-wide drops by reason (a shortcut for `counters().drops`).
    pub fn drop_counters(&self) -> DropCounters {
        self.counters.drops
    }

    /// Entries in the MAC table over all networks, expired-but-not-yet-swept and pinned
    /// ones included; never more than `mac_capacity` plus [`Self::pinned_mac_count`].
    pub fn mac_count(&self) -> usize {
        self.table.len()
    }

    /// Pinned entries in the MAC table (guarded ports' MACs and [`Self::pin_mac`]).
    pub fn pinned_mac_count(&self) -> usize {
        self.table.len() - self.table.learned_len()
    }

    /// The unexpired MAC entries of `net`, sorted by address (for `tapnet macs`).
    /// Empty for an unknown network.
    pub fn mac_entries(&self, net: NetworkId, now: Instant) -> Vec<MacEntry> {
        let Some(&slot) = self.network_index.get(&net) else {
            return Vec::new();
        };
        let mut entries: Vec<MacEntry> = self
            .table
            .entries(slot, now)
            .map(|(mac, e)| MacEntry {
                mac,
                port: e.port,
                age: now.saturating_duration_since(e.last_seen),
                pinned: e.pinned,
            })
            .collect();
        entries.sort_unstable_by_key(|e| e.mac);
        entries
    }

    fn network_slot(&self, net: NetworkId) -> Result<u16, ConfigError> {
        self.network_index
            .get(&net)
            .copied()
            .ok_or(ConfigError::UnknownNetwork(net))
    }

    #[inline]
    fn port(&self, slot: u32) -> Option<&Port> {
        self.ports.get(slot as usize).and_then(Option::as_ref)
    }

    /// Recomputes the cached options and flood lists of every port of network `net`.
    ///
    /// A port floods to every other port of its network (802.1D 7.7.1), except that with
    /// ICC off a Container floods only to non-Container ports (Gateway, Uplink).
    fn rebuild_network(&mut self, net: u16) {
        let Some(network) = self.networks[usize::from(net)].as_ref() else {
            return;
        };
        let config = network.config.clone();
        let members: Vec<(u32, PortId, PortRole)> = network
            .ports
            .iter()
            .filter_map(|&slot| self.port(slot).map(|p| (slot, p.id, p.role)))
            .collect();
        for &(slot, id, role) in &members {
            let egress = members.iter().filter(|&&(other_slot, _, other_role)| {
                other_slot != slot
                    && (config.icc
                        || role != PortRole::Container
                        || other_role != PortRole::Container)
            });
            let flood_ids: Vec<PortId> = egress.clone().map(|&(_, other, _)| other).collect();
            let flood_slots: Vec<u32> = egress.map(|&(other_slot, _, _)| other_slot).collect();
            if let Some(Some(port)) = self.ports.get_mut(slot as usize) {
                debug_assert_eq!(port.id, id);
                port.icc = config.icc;
                port.max_frame_len = config.max_frame_len;
                port.flood_ids = flood_ids;
                port.flood_slots = flood_slots;
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Data path
    // ---------------------------------------------------------------------------------

    /// The dense slot of an attached port.
    #[inline]
    fn slot_of(&self, port: PortId) -> Option<u32> {
        let slot = match self.port_index.get(port.0 as usize) {
            Some(&slot) => slot,
            None if port.0 < DIRECT_PORT_IDS || self.port_index_overflow.is_empty() => NO_SLOT,
            None => self
                .port_index_overflow
                .get(&port.0)
                .copied()
                .unwrap_or(NO_SLOT),
        };
        (slot != NO_SLOT).then_some(slot)
    }

    /// Decides what to do with `frame`, received on `ingress` at `now`.
    ///
    /// Learns the source address (when valid), then forwards to the port the destination
    /// was learned on, floods group and unknown destinations to the other ports of the
    /// ingress port's network, or drops with a counted reason. Never panics, whatever
    /// the bytes or the port; never allocates.
    #[inline]
    pub fn handle_frame(&mut self, now: Instant, ingress: PortId, frame: &[u8]) -> Verdict<'_> {
        let len = frame.len() as u64;
        let counters = &mut self.counters;
        counters.rx_packets = counters.rx_packets.wrapping_add(1);
        counters.rx_bytes = counters.rx_bytes.wrapping_add(len);
        let Some(slot) = self.slot_of(ingress) else {
            self.counters.count_drop(DropReason::UnknownPort);
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let index = slot as usize;
        self.port_stats[index].count_rx(len);
        let reason = match self.decide(now, slot, frame) {
            Decision::Forward { slot: egress, port } => {
                self.port_stats[egress as usize].count_tx(len);
                let counters = &mut self.counters;
                counters.forwarded = counters.forwarded.wrapping_add(1);
                counters.tx_packets = counters.tx_packets.wrapping_add(1);
                counters.tx_bytes = counters.tx_bytes.wrapping_add(len);
                if self.snooping_ports > 0 {
                    self.snoop_dhcp(now, slot, Some(egress), frame);
                }
                return Verdict::Forward(port);
            }
            Decision::Flood if self.snooping_ports > 0 => {
                self.snoop_dhcp(now, slot, None, frame);
                return self.flood(index, len);
            }
            Decision::Flood => return self.flood(index, len),
            Decision::Drop(reason) => reason,
        };
        self.port_stats[index].drops.bump(reason);
        self.counters.count_drop(reason);
        Verdict::Drop(reason)
    }

    /// The verdict for a frame that floods from the port in slot `index`, counted.
    #[inline]
    fn flood(&mut self, index: usize, len: u64) -> Verdict<'_> {
        let reason = match self.ports[index].as_ref() {
            Some(port) if !port.flood_slots.is_empty() => {
                for &egress in &port.flood_slots {
                    self.port_stats[egress as usize].count_tx(len);
                }
                let copies = port.flood_slots.len() as u64;
                let counters = &mut self.counters;
                counters.flooded = counters.flooded.wrapping_add(1);
                counters.tx_packets = counters.tx_packets.wrapping_add(copies);
                counters.tx_bytes = counters.tx_bytes.wrapping_add(copies.wrapping_mul(len));
                return Verdict::Flood(&port.flood_ids);
            }
            _ => DropReason::NoEgress,
        };
        self.port_stats[index].drops.bump(reason);
        self.counters.count_drop(reason);
        Verdict::Drop(reason)
    }

    /// The L2 decision proper, with learning; counting of the verdict is left to
    /// `handle_frame`.
    #[inline]
    fn decide(&mut self, now: Instant, slot: u32, frame: &[u8]) -> Decision {
        let Some(port) = self.port(slot) else {
            return Decision::Drop(DropReason::UnknownPort);
        };
        let (id, net, role, icc, max_frame_len) =
            (port.id, port.net, port.role, port.icc, port.max_frame_len);

        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Decision::Drop(DropReason::Runt);
        };
        if frame.len() > max_frame_len {
            return Decision::Drop(DropReason::Oversized);
        }
        // IEEE 802-2014 8.2: a source address is always an individual address.
        let src = eth.source();
        if !src.is_valid_source() {
            return Decision::Drop(DropReason::InvalidSourceMac);
        }
        // Port security: a guarded port sends only what it was given, and nothing of a
        // refused frame is learned.
        if let Some(guard) = port.guard.as_deref()
            && let Err(reason) = guard.check(frame, now)
        {
            return Decision::Drop(reason);
        }
        // 802.1D 7.8 learning process. Like Linux (`br_handle_local_finish()`) we learn
        // also from frames we then drop as link-local.
        match self.table.learn(MacKey::new(net, src), id, slot, now) {
            Learned::Refreshed | Learned::Disabled => {}
            Learned::New => self.counters.learned = self.counters.learned.wrapping_add(1),
            Learned::Moved => {
                self.counters.station_moves = self.counters.station_moves.wrapping_add(1)
            }
            Learned::TableFull => {
                self.counters.learn_table_full = self.counters.learn_table_full.wrapping_add(1)
            }
            // Another port's pinned MAC: the frame would steal its traffic.
            Learned::Pinned => return Decision::Drop(DropReason::SpoofedMac),
        }

        let dst = eth.destination();
        if dst.is_multicast() {
            // 802.1D-2004 7.12.6: the reserved group 01-80-C2-00-00-0x is filtered.
            if dst.is_link_local_group() {
                return Decision::Drop(DropReason::LinkLocalGroup);
            }
            // No IGMP/MLD snooping: group addresses go everywhere (802.1D 7.7.1).
            return Decision::Flood;
        }
        let Some(entry) = self.table.lookup(MacKey::new(net, dst), now) else {
            return Decision::Flood;
        };
        if entry.slot == slot {
            return Decision::Drop(DropReason::DestinationIsIngress);
        }
        let egress = (entry.slot, entry.port);
        if !icc && role == PortRole::Container {
            let egress_role = self.port(egress.0).map(|p| p.role);
            if egress_role == Some(PortRole::Container) {
                return Decision::Drop(DropReason::IccDisabled);
            }
        }
        Decision::Forward {
            slot: egress.0,
            port: egress.1,
        }
    }

    /// Sweeps expired MAC entries if a sweep is due. Cheap to call more often than
    /// [`poll_timeout`](Self::poll_timeout) asks.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.table.handle_timeout(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work to do: `None` while
    /// the MAC table is empty. Sweeps are spaced at least `min(ageing_time / 10, 1 s)`
    /// apart and never scheduled before the earliest possible expiry.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.next_sweep()
    }
}

mod guarding;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod guard_tests;

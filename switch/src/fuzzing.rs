//! Fuzzing harness, shared by the cargo-fuzz target `fuzz/fuzz_targets/switch_frames.rs`,
//! the stable corpus replay test `tests/fuzz_corpus.rs` and the proptests.
//!
//! Not part of the stable API (hidden from docs). [`CheckedSwitch`] wraps a [`Switch`]
//! together with a model of its topology and checks, after every call, the invariants
//! the bridge promises:
//!
//! - no panic, whatever the bytes, the port id or the order of control calls;
//! - a verdict never names the ingress port, nor a port of another network;
//! - with ICC off, no Container -> Container delivery (unicast or flood);
//! - a flood list is exactly "the other ports of the network" (minus Containers when a
//!   Container floods with ICC off), and a drop reason matches the frame;
//! - a unicast forward goes where the destination is learned; a learned source points
//!   to the ingress port;
//! - the MAC table never exceeds its capacity of learned entries; every frame ends in
//!   exactly one verdict and the counters add up; control calls fail exactly when the
//!   model says so;
//! - a guarded port's frame that is not dropped as spoofed (so that reaches any
//!   egress) has a source MAC and a source IP or ARP sender it was given
//!   ([`source_given`], written apart from the guard); a `spoofed_*` drop comes only
//!   from a guarded port or a pinned MAC; pinned entries are exactly the guards' MACs
//!   and the pinned gateway MACs, never move and never age.
//!
//! [`run`] decodes a byte string into a topology and a sequence of operations (see
//! [`run`] for the format) so that libFuzzer's mutations stay meaningful.

pub mod frames;

use core::time::Duration;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{
    ConfigError, DropReason, Instant, MacAddr, NetworkConfig, NetworkId, PortGuard, PortId,
    PortRole, Switch, SwitchConfig, Verdict,
};

/// A verdict with the flood list copied out, so the switch can be inspected afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedVerdict {
    /// See [`Verdict::Forward`].
    Forward(PortId),
    /// See [`Verdict::Flood`].
    Flood(Vec<PortId>),
    /// See [`Verdict::Drop`].
    Drop(DropReason),
}

impl From<Verdict<'_>> for OwnedVerdict {
    fn from(verdict: Verdict<'_>) -> Self {
        match verdict {
            Verdict::Forward(port) => Self::Forward(port),
            Verdict::Flood(ports) => Self::Flood(ports.to_vec()),
            Verdict::Drop(reason) => Self::Drop(reason),
        }
    }
}

/// A [`Switch`] plus a model of its topology; every method checks the invariants and
/// panics (with a message) on a violation.
#[derive(Debug)]
pub struct CheckedSwitch {
    /// The switch under test.
    pub switch: Switch,
    config: SwitchConfig,
    networks: BTreeMap<NetworkId, NetworkConfig>,
    ports: BTreeMap<PortId, (NetworkId, PortRole)>,
    /// Pinned MACs: a guard's or one `pin_mac` set.
    pins: BTreeMap<(NetworkId, MacAddr), PortId>,
    /// The MAC each guarded port pinned (`None`: a guard without a MAC).
    guards: BTreeMap<PortId, Option<MacAddr>>,
}

impl CheckedSwitch {
    /// A new, empty switch.
    pub fn new(config: SwitchConfig) -> Self {
        Self {
            switch: Switch::new(config.clone()),
            config,
            networks: BTreeMap::new(),
            ports: BTreeMap::new(),
            pins: BTreeMap::new(),
            guards: BTreeMap::new(),
        }
    }

    /// `set_port_guard`, checked against the model.
    pub fn set_port_guard(&mut self, now: Instant, port: PortId, guard: Option<PortGuard>) {
        let new_mac = guard.as_ref().and_then(PortGuard::mac);
        let result = self.switch.set_port_guard(now, port, guard.clone());
        let Some(&(net, _)) = self.ports.get(&port) else {
            assert_eq!(result, Err(ConfigError::UnknownPort(port)));
            return;
        };
        if let Some(mac) = new_mac {
            if !mac.is_valid_source() {
                assert_eq!(result, Err(ConfigError::InvalidMac(mac)));
                return;
            }
            if let Some(&owner) = self.pins.get(&(net, mac)).filter(|&&p| p != port) {
                assert_eq!(result, Err(ConfigError::MacPinned { mac, port: owner }));
                return;
            }
        }
        assert_eq!(result, Ok(()));
        if let Some(Some(old)) = self.guards.remove(&port)
            && Some(old) != new_mac
        {
            self.pins.remove(&(net, old));
        }
        if guard.is_some() {
            self.guards.insert(port, new_mac);
            if let Some(mac) = new_mac {
                self.pins.insert((net, mac), port);
            }
        }
        assert_eq!(self.switch.port_guard(port), guard.as_ref());
        self.check_table(now);
    }

    /// `pin_mac`, checked against the model.
    pub fn pin_mac(&mut self, now: Instant, port: PortId, mac: MacAddr) {
        let result = self.switch.pin_mac(now, port, mac);
        let Some(&(net, _)) = self.ports.get(&port) else {
            assert_eq!(result, Err(ConfigError::UnknownPort(port)));
            return;
        };
        if !mac.is_valid_source() {
            assert_eq!(result, Err(ConfigError::InvalidMac(mac)));
        } else if let Some(&owner) = self.pins.get(&(net, mac)).filter(|&&p| p != port) {
            assert_eq!(result, Err(ConfigError::MacPinned { mac, port: owner }));
        } else {
            assert_eq!(result, Ok(()));
            self.pins.insert((net, mac), port);
        }
        self.check_table(now);
    }

    /// Learned (not pinned) entries in the table.
    fn learned_count(&self) -> usize {
        self.switch.mac_count() - self.switch.pinned_mac_count()
    }

    /// `add_network`, checked against the model.
    pub fn add_network(&mut self, net: NetworkId, config: NetworkConfig) {
        let result = self.switch.add_network(net, config.clone());
        match self.networks.entry(net) {
            Entry::Occupied(_) => assert_eq!(result, Err(ConfigError::NetworkExists(net))),
            Entry::Vacant(slot) => {
                assert_eq!(result, Ok(()));
                slot.insert(config);
            }
        }
    }

    /// `remove_network`, checked against the model.
    pub fn remove_network(&mut self, net: NetworkId) {
        let result = self.switch.remove_network(net);
        if !self.networks.contains_key(&net) {
            assert_eq!(result, Err(ConfigError::UnknownNetwork(net)));
        } else if self.ports.values().any(|&(n, _)| n == net) {
            assert_eq!(result, Err(ConfigError::NetworkInUse(net)));
        } else {
            assert_eq!(result, Ok(()));
            self.networks.remove(&net);
            assert!(self.switch.mac_entries(net, Instant::ZERO).is_empty());
        }
    }

    /// `update_network`, checked against the model.
    pub fn update_network(&mut self, net: NetworkId, config: NetworkConfig) {
        let result = self.switch.update_network(net, config.clone());
        if let Some(model) = self.networks.get_mut(&net) {
            assert_eq!(result, Ok(()));
            *model = config;
        } else {
            assert_eq!(result, Err(ConfigError::UnknownNetwork(net)));
        }
    }

    /// `add_port`, checked against the model.
    pub fn add_port(&mut self, port: PortId, net: NetworkId, role: PortRole) {
        let result = self.switch.add_port(port, net, role);
        if self.ports.contains_key(&port) {
            assert_eq!(result, Err(ConfigError::PortExists(port)));
        } else if !self.networks.contains_key(&net) {
            assert_eq!(result, Err(ConfigError::UnknownNetwork(net)));
        } else {
            assert_eq!(result, Ok(()));
            self.ports.insert(port, (net, role));
            assert_eq!(self.switch.port_counters(port), Some(Default::default()));
        }
        self.check_topology();
    }

    /// `remove_port`, checked against the model.
    pub fn remove_port(&mut self, port: PortId, now: Instant) {
        let result = self.switch.remove_port(port);
        if let Some((net, _)) = self.ports.remove(&port) {
            assert_eq!(result, Ok(()));
            self.guards.remove(&port);
            self.pins.retain(|_, &mut p| p != port);
            assert!(
                self.switch
                    .mac_entries(net, now)
                    .iter()
                    .all(|e| e.port != port),
                "entries learned on a removed port are forgotten"
            );
        } else {
            assert_eq!(result, Err(ConfigError::UnknownPort(port)));
        }
        assert_eq!(self.switch.port_counters(port), None);
        self.check_topology();
    }

    /// What the model says a frame from `ingress` floods to.
    pub fn expected_flood(&self, ingress: PortId) -> Vec<PortId> {
        let Some(&(net, role)) = self.ports.get(&ingress) else {
            return Vec::new();
        };
        let icc = self.networks.get(&net).is_some_and(|c| c.icc);
        self.ports
            .iter()
            .filter(|&(&p, &(n, r))| {
                p != ingress
                    && n == net
                    && (icc || role != PortRole::Container || r != PortRole::Container)
            })
            .map(|(&p, _)| p)
            .collect()
    }

    fn check_topology(&self) {
        for (&port, &(net, role)) in &self.ports {
            assert_eq!(self.switch.port_attachment(port), Some((net, role)));
        }
        for (net, config) in &self.networks {
            assert_eq!(self.switch.network_config(*net), Some(config));
        }
    }

    /// `handle_timeout`, then checks that nothing is due any more at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.switch.handle_timeout(now);
        if let Some(due) = self.switch.poll_timeout() {
            assert!(
                due > now || self.config.ageing_time < Duration::from_millis(10),
                "{due} <= {now}"
            );
        }
        self.check_table(now);
    }

    /// Checks the MAC table through `mac_entries` and `mac_count`.
    pub fn check_table(&self, now: Instant) {
        let count = self.switch.mac_count();
        let learned = self.learned_count();
        assert!(
            learned <= self.config.mac_capacity,
            "{learned} learned entries > capacity {}",
            self.config.mac_capacity
        );
        assert_eq!(self.switch.pinned_mac_count(), self.pins.len());
        assert_eq!(self.switch.poll_timeout().is_none(), learned == 0);
        let mut listed = 0;
        for net in self.networks.keys() {
            let entries = self.switch.mac_entries(*net, now);
            assert!(
                entries.windows(2).all(|w| w[0].mac < w[1].mac),
                "sorted, unique"
            );
            for entry in &entries {
                assert!(entry.mac.is_valid_source());
                assert_eq!(
                    entry.pinned.then_some(entry.port),
                    self.pins.get(&(*net, entry.mac)).copied(),
                    "pinned exactly where the model says, and never moved"
                );
                assert!(
                    entry.pinned || entry.age < self.config.ageing_time,
                    "listed entries are not expired"
                );
                assert_eq!(
                    self.ports.get(&entry.port).map(|&(n, _)| n),
                    Some(*net),
                    "entry on a port of its network"
                );
            }
            listed += entries.len();
        }
        assert!(listed <= count);
    }

    /// `handle_frame`, with every per-frame invariant checked. Returns the verdict.
    pub fn handle_frame(&mut self, now: Instant, ingress: PortId, frame: &[u8]) -> OwnedVerdict {
        let before = self.switch.counters();
        let port_before = self.switch.port_counters(ingress);
        let count_before = self.learned_count();
        let guard = self.switch.port_guard(ingress).cloned();
        let verdict = OwnedVerdict::from(self.switch.handle_frame(now, ingress, frame));
        let after = self.switch.counters();

        // Every frame ends in exactly one verdict.
        assert_eq!(after.rx_packets, before.rx_packets + 1);
        assert_eq!(
            after.forwarded + after.flooded + after.drops.total(),
            after.rx_packets
        );
        assert!(self.learned_count() <= self.config.mac_capacity);

        let Some(&(net, role)) = self.ports.get(&ingress) else {
            assert_eq!(verdict, OwnedVerdict::Drop(DropReason::UnknownPort));
            return verdict;
        };
        let port_after = self
            .switch
            .port_counters(ingress)
            .expect("attached port has counters");
        let port_before = port_before.expect("attached port has counters");
        assert_eq!(port_after.rx_packets, port_before.rx_packets + 1);
        assert_eq!(
            port_after.rx_bytes,
            port_before.rx_bytes + frame.len() as u64
        );

        let config = self
            .networks
            .get(&net)
            .expect("port's network exists")
            .clone();
        let expected_flood = self.expected_flood(ingress);
        let expected_flood_verdict = if expected_flood.is_empty() {
            OwnedVerdict::Drop(DropReason::NoEgress)
        } else {
            OwnedVerdict::Flood(expected_flood)
        };

        // Classify from the bytes alone, in the order the bridge checks.
        if frame.len() < 14 {
            assert_eq!(verdict, OwnedVerdict::Drop(DropReason::Runt));
            return verdict;
        }
        if frame.len() > config.max_frame_len {
            assert_eq!(verdict, OwnedVerdict::Drop(DropReason::Oversized));
            return verdict;
        }
        let mac_at = |at: usize| {
            MacAddr([
                frame[at],
                frame[at + 1],
                frame[at + 2],
                frame[at + 3],
                frame[at + 4],
                frame[at + 5],
            ])
        };
        let (dst, src) = (mac_at(0), mac_at(6));
        if !src.is_valid_source() {
            assert_eq!(verdict, OwnedVerdict::Drop(DropReason::InvalidSourceMac));
            return verdict;
        }

        // Port security: spoofed drops only from guarded ports or with a MAC pinned to
        // another port; whatever else passes a guard has a source it was given.
        let entries = self.switch.mac_entries(net, now);
        let src_entry = entries.iter().find(|e| e.mac == src);
        let pinned_to = self.pins.get(&(net, src)).copied();
        if let OwnedVerdict::Drop(reason) = verdict
            && reason.is_spoofing()
        {
            let stolen = pinned_to.is_some_and(|p| p != ingress);
            assert!(
                guard.is_some() || stolen && reason == DropReason::SpoofedMac,
                "{reason} from an unguarded port"
            );
            if let Some(owner) = pinned_to {
                assert_eq!(src_entry.map(|e| e.port), Some(owner), "a pin never moves");
            }
            return verdict;
        }
        assert!(
            pinned_to.is_none_or(|p| p == ingress),
            "a frame with another port's pinned MAC passed"
        );
        if let Some(guard) = &guard {
            assert!(
                source_given(guard, frame, now),
                "a guarded port's frame with a source it was not given passed: {verdict:?}"
            );
        }

        // Learning: the source now points to the ingress port, unless learning is off
        // or the table was full.
        if pinned_to.is_some() {
            assert_eq!(src_entry.map(|e| e.port), Some(ingress), "pinned here");
        } else if self.config.ageing_time.is_zero() {
            assert!(src_entry.is_none());
        } else if count_before < self.config.mac_capacity {
            assert_eq!(src_entry.map(|e| e.port), Some(ingress), "source learned");
        } else if let Some(entry) = src_entry {
            assert_eq!(entry.port, ingress);
        }

        if dst.is_link_local_group() {
            assert_eq!(verdict, OwnedVerdict::Drop(DropReason::LinkLocalGroup));
            return verdict;
        }
        if dst.is_multicast() {
            assert_eq!(verdict, expected_flood_verdict);
            return verdict;
        }
        let dst_port = entries.iter().find(|e| e.mac == dst).map(|e| e.port);
        match (dst_port, &verdict) {
            (None, _) => assert_eq!(verdict, expected_flood_verdict, "unknown unicast floods"),
            (Some(p), OwnedVerdict::Forward(q)) => {
                assert_eq!(p, *q, "forwarded where learned");
                assert_ne!(p, ingress, "never back out of the ingress port");
                let (egress_net, egress_role) = self.ports[&p];
                assert_eq!(egress_net, net, "never across networks");
                assert!(
                    config.icc || role != PortRole::Container || egress_role != PortRole::Container,
                    "no container-to-container delivery with icc off"
                );
            }
            (Some(p), OwnedVerdict::Drop(DropReason::DestinationIsIngress)) => {
                assert_eq!(p, ingress)
            }
            (Some(p), OwnedVerdict::Drop(DropReason::IccDisabled)) => {
                assert!(!config.icc && role == PortRole::Container);
                assert_eq!(self.ports[&p].1, PortRole::Container);
            }
            (Some(p), other) => panic!("destination learned on {p:?}, verdict {other:?}"),
        }
        verdict
    }
}

/// Whether `frame` has, by the rules of [`PortGuard`] told apart from its code, a source
/// MAC and a source IP or ARP sender `guard` gave the port (0.0.0.0 only from a DHCP
/// client, `::` for the few messages sent before an address exists, which the guard's
/// unit tests pin down).
pub fn source_given(guard: &PortGuard, frame: &[u8], now: Instant) -> bool {
    let Some(src) = frame.get(6..12) else {
        return false;
    };
    if guard.mac().is_some_and(|mac| mac.0 != src) {
        return false;
    }
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let mut at = 12;
    for _ in 0..2 {
        if matches!(be16(at), Some(0x8100 | 0x88a8)) {
            at += 4;
        }
    }
    let payload = frame.get(at + 2..).unwrap_or_default();
    match be16(at) {
        Some(0x8100 | 0x88a8) | None => false,
        Some(0x0806) => payload.get(..28).is_some_and(|arp| {
            let spa = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
            &arp[8..14] == src && (spa.is_unspecified() || guard.allows_ipv4(spa, now))
        }),
        Some(0x0800) => payload.get(..20).is_some_and(|ip| {
            let from = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let dhcp_client = ip[9] == 17 && payload.get(ihl..ihl + 4) == Some(&[0, 68, 0, 67][..]);
            guard.allows_ipv4(from, now) || from.is_unspecified() && dhcp_client
        }),
        Some(0x86dd) => payload.get(..40).is_some_and(|ip| {
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            let from = Ipv6Addr::from(a);
            from.is_unspecified() || guard.allows_ipv6(from)
        }),
        Some(_) => true,
    }
}

/// Candidate port ids: small dense ids, ids past the direct-index table, and extremes.
const PORT_IDS: [u32; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 65_535, 65_536, 1_000_000, u32::MAX];

/// A cursor over the fuzzer's bytes that yields zeros once exhausted.
#[derive(Debug)]
struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn port_id(b: u8) -> PortId {
    PortId(PORT_IDS[usize::from(b) % PORT_IDS.len()])
}

fn network_id(b: u8) -> NetworkId {
    NetworkId(u32::from(b % 4))
}

fn role(b: u8) -> PortRole {
    match b % 3 {
        0 => PortRole::Container,
        1 => PortRole::Gateway,
        _ => PortRole::Uplink,
    }
}

fn network_config(b: u8) -> NetworkConfig {
    NetworkConfig {
        icc: b & 1 != 0,
        max_frame_len: if b & 2 != 0 { 64 } else { 1518 },
    }
}

/// A MAC address from a small alphabet, so that sources and destinations meet.
fn mac(b: u8) -> MacAddr {
    let hi = b >> 4;
    match b & 0x0f {
        0 => MacAddr::BROADCAST,
        1 => MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, hi]),
        2 => MacAddr([0x33, 0x33, 0x00, 0x00, 0x00, hi]),
        3 => MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, hi]),
        4 => MacAddr::ZERO,
        5 => MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x10 | hi]),
        n => MacAddr([0x02, 0x42, 0x0a, 0x00, hi, n]),
    }
}

/// Decodes `data` into a topology and operations and runs them through a
/// [`CheckedSwitch`]. Panics on an invariant violation; that is what the fuzzer hunts.
///
/// Format (missing bytes read as zero):
///
/// - byte 0: MAC capacity (`% 24`); byte 1: ageing time in seconds (`% 16`, 0 = hub);
/// - byte 2..6: networks 0..3: bit 0 ICC, bit 1 small MTU (max frame 64), bit 2 absent;
/// - byte 6: initial port count (`% 10`), then per port one byte each for id, network
///   and role;
/// - then operations, selected by `op % 19`:
///   - `0..=10`: a frame: ingress port id byte, time step byte (x 100 ms), shape byte.
///     Shape with bit 7 set: a raw frame of the next `shape & 0x3f` bytes. Otherwise a
///     destination and a source MAC byte each, then a payload of `(shape & 0x7f) * 12`
///     bytes: up to 16 taken from the input, zeros after;
///   - `11`: add port (id, network, role bytes); `12`: remove port (id byte);
///   - `13`: time step byte, then `handle_timeout`;
///   - `14`: network byte and config byte: `% 3` = add, remove, update;
///   - `15`: check the MAC table listing;
///   - `16`: guard a port: id byte, MAC byte, flags byte ([`frames::guard`]);
///   - `17`: pin a MAC: id byte, MAC byte;
///   - `18`: an ARP, IP or NDP frame that a guard judges: ingress port id byte, time
///     step byte, five shape bytes ([`frames::guard_frame`]).
pub fn run(data: &[u8]) {
    let mut input = Bytes { data };
    let config = SwitchConfig {
        mac_capacity: usize::from(input.byte() % 24),
        ageing_time: Duration::from_secs(u64::from(input.byte() % 16)),
    };
    let mut sw = CheckedSwitch::new(config);
    for net in 0..4u8 {
        let b = input.byte();
        if b & 4 == 0 {
            sw.add_network(network_id(net), network_config(b));
        }
    }
    for _ in 0..input.byte() % 10 {
        let (id, net, role_byte) = (input.byte(), input.byte(), input.byte());
        sw.add_port(port_id(id), network_id(net), role(role_byte));
    }

    let mut now = Instant::from_secs(1);
    let mut frame = Vec::with_capacity(2048);
    while !input.is_empty() {
        let op = input.byte() % 19;
        match op {
            0..=10 => {
                let ingress = port_id(input.byte());
                now = now + Duration::from_millis(100 * u64::from(input.byte()));
                let shape = input.byte();
                frame.clear();
                if shape & 0x80 != 0 {
                    frame.extend_from_slice(input.take(usize::from(shape & 0x3f)));
                } else {
                    let (dst, src) = (mac(input.byte()), mac(input.byte()));
                    frame.extend_from_slice(&dst.0);
                    frame.extend_from_slice(&src.0);
                    frame.extend_from_slice(&[0x08, 0x00]);
                    let payload = usize::from(shape & 0x7f) * 12;
                    frame.extend_from_slice(input.take(payload.min(16)));
                    frame.resize(14 + payload, 0);
                }
                sw.handle_frame(now, ingress, &frame);
            }
            11 => {
                let (id, net, role_byte) = (input.byte(), input.byte(), input.byte());
                sw.add_port(port_id(id), network_id(net), role(role_byte));
            }
            12 => {
                let id = input.byte();
                sw.remove_port(port_id(id), now);
            }
            13 => {
                now = now + Duration::from_millis(100 * u64::from(input.byte()));
                sw.handle_timeout(now);
            }
            14 => {
                let (net, b) = (input.byte(), input.byte());
                match b % 3 {
                    0 => sw.add_network(network_id(net), network_config(b >> 2)),
                    1 => sw.remove_network(network_id(net)),
                    _ => sw.update_network(network_id(net), network_config(b >> 2)),
                }
            }
            15 => sw.check_table(now),
            16 => {
                let (id, mac_byte, flags) = (input.byte(), input.byte(), input.byte());
                sw.set_port_guard(now, port_id(id), frames::guard(mac(mac_byte), flags));
            }
            17 => {
                let (id, mac_byte) = (input.byte(), input.byte());
                sw.pin_mac(now, port_id(id), mac(mac_byte));
            }
            _ => {
                let ingress = port_id(input.byte());
                now = now + Duration::from_millis(100 * u64::from(input.byte()));
                let shape: [u8; 5] = core::array::from_fn(|_| input.byte());
                let frame = frames::guard_frame(shape, mac);
                sw.handle_frame(now, ingress, &frame);
            }
        }
    }
    sw.check_table(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_empty_and_short_inputs() {
        run(&[]);
        run(&[0]);
        run(&[1, 2, 3]);
        run(&[0xff; 64]);
    }
}

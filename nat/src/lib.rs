//! Sans-IO network address translation for tapnet: what iptables `MASQUERADE` and
//! `DNAT` do for Docker's bridge, on top of the connection tracker.
//!
//! Layer: sans-IO core. [`Nat`] owns a [`Conntrack`] and the rules ([`Network`]s with
//! masquerade, [`PublishRule`]s); the shell hands it IPv4 packets (no link header) and
//! the time, and it rewrites them in place and returns a [`NatVerdict`]. No syscall,
//! no clock, no allocation per packet.
//!
//! - **Masquerade** (SNAT to [`NatConfig::uplink_addr`]): a new flow from a
//!   masquerading network's subnet towards the uplink.
//! - **DNAT** for published ports: a new flow arriving on the uplink for a published
//!   address and port goes to the container; the client's address is kept.
//! - **Routed** networks (`masquerade: false`, Docker's
//!   `enable_ip_masquerade=false`): new flows leave untranslated but are tracked, so
//!   that their replies come back and unsolicited traffic does not.
//! - **Hairpin**: a container reaching a published port through a local address (the
//!   uplink address or a gateway) is DNATed to the target and masqueraded to the
//!   target network's gateway, so that the reply comes back through the NAT (Docker's
//!   MASQUERADE rule for `userland-proxy=false`; with docker-proxy, the default, the
//!   target also sees the gateway as the client).
//! - **Port allocation** follows Linux `nf_nat_l4proto_unique_tuple`: keep the source
//!   port (or echo identifier) when the resulting reply tuple is free, else probe
//!   [`NatConfig::port_range`] from a hash of the flow, [`MAX_PORT_ATTEMPTS`] at most;
//!   when nothing is free the packet is dropped and counted
//!   ([`DropReason::PortExhausted`]) and existing flows are untouched. A port is taken
//!   exactly while the conntrack table holds the reply tuple, so there is nothing to
//!   release when a flow expires.
//! - **Every flow is one conntrack entry** whose reply tuple is the translated packet
//!   reversed: a packet matching one tuple is rewritten to the other tuple reversed
//!   and leaves into the other tuple's zone. The uplink side uses
//!   [`NatConfig::uplink_zone`].
//! - **ICMP errors** (destination unreachable, time exceeded, parameter problem) are
//!   matched by the packet they embed and translated with it (RFC 5508 section 4.2,
//!   Linux `nf_nat_icmp_reply_translation`).
//! - **Checksums** are updated incrementally (RFC 1624); a UDP checksum of 0 stays 0.
//!
//! IPv6 is not translated (Docker routes IPv6 without NAT): IPv6 packets get
//! [`NatVerdict::Untouched`]. Fragments are dropped ([`DropReason::Fragment`]): the
//! shell reassembles first, as Linux conntrack defragments.

#![forbid(unsafe_code)]

#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod packet;
mod rules;

use std::net::Ipv4Addr;

pub use rules::{ConfigError, NatConfig, Network, PortRange, PublishRule};
/// The Internet checksum and its incremental update, shared with the other crates.
pub use tapnet_wire::checksum;

pub use tapnet_conntrack::{
    Conntrack, Direction, EntryInfo, FlowKey, Instant, Proto, Refused, TcpFlags, Zone,
};

use packet::{Embedded, Ipv4Packet, Transport, v4};
use rules::Rules;

/// How many ports the allocator tries after the original one (Linux tries 128 too,
/// `nf_nat_l4proto_unique_tuple`): bounds the cost of a new flow in a crowded range.
pub const MAX_PORT_ATTEMPTS: u32 = 128;

/// What to do with a packet after [`Nat::handle_outbound`] or [`Nat::handle_inbound`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum NatVerdict {
    /// Rewritten (or already right): send it out of the uplink.
    ToUplink,
    /// Rewritten: deliver it into the network of this zone.
    ToZone(Zone),
    /// NAT does not apply (IPv6, a network without masquerade, a local address that no
    /// rule publishes): route it as it is.
    Untouched,
    /// Drop it, for this reason (counted).
    Drop(DropReason),
}

/// Why a packet was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Truncated or inconsistent headers.
    Malformed,
    /// An IPv4 fragment (the shell reassembles before NAT).
    Fragment,
    /// A protocol or ICMP type NAT does not handle.
    UnsupportedProtocol,
    /// From the uplink, belonging to no flow and no published port; or an ICMP error
    /// about no known flow.
    NoMapping,
    /// Cannot start a flow: a TCP segment other than a SYN, or an echo reply, of an
    /// unknown flow.
    NotNew,
    /// No free source port (or identifier) in the range.
    PortExhausted,
    /// The connection table is full of assured flows.
    TableFull,
    /// A published flow's reply tuple is already tracked (the same client endpoint
    /// reaching the same container port through another published port).
    Clash,
    /// A hairpin target's zone has no [`Network`] (so no gateway to masquerade to).
    NoNetwork,
}

impl DropReason {
    /// Every reason, in the order of [`NatCounters::dropped`].
    pub const ALL: [Self; 9] = [
        Self::Malformed,
        Self::Fragment,
        Self::UnsupportedProtocol,
        Self::NoMapping,
        Self::NotNew,
        Self::PortExhausted,
        Self::TableFull,
        Self::Clash,
        Self::NoNetwork,
    ];

    /// A short name for statistics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Fragment => "fragment",
            Self::UnsupportedProtocol => "unsupported_protocol",
            Self::NoMapping => "no_mapping",
            Self::NotNew => "not_new",
            Self::PortExhausted => "port_exhausted",
            Self::TableFull => "table_full",
            Self::Clash => "clash",
            Self::NoNetwork => "no_network",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Event counts (plain `u64`s, per [`Nat`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatCounters {
    /// Packets rewritten (both ways, ICMP errors included).
    pub translated: u64,
    /// Packets left alone ([`NatVerdict::Untouched`]).
    pub untouched: u64,
    /// Flows masqueraded to the uplink address.
    pub masqueraded_flows: u64,
    /// Flows from the uplink DNATed to a published port.
    pub published_flows: u64,
    /// Hairpin flows (a container through a published local address).
    pub hairpin_flows: u64,
    /// Flows of non-masquerading networks, routed untranslated but tracked.
    pub routed_flows: u64,
    /// New flows whose source port or identifier had to change (the original taken).
    pub ports_remapped: u64,
    /// ICMP errors translated with the packet they embed.
    pub icmp_errors: u64,
    /// Drops, indexed like [`DropReason::ALL`].
    pub dropped: [u64; DropReason::ALL.len()],
}

impl NatCounters {
    /// Packets dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    /// Packets dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }
}

/// The NAT engine: a connection table plus masquerade, publish and hairpin rules.
#[derive(Debug)]
pub struct Nat {
    config: NatConfig,
    conntrack: Conntrack,
    rules: Rules,
    counters: NatCounters,
}

/// What a new flow becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NewFlow {
    Masquerade,
    Publish,
    Hairpin,
    Routed,
}

impl Nat {
    /// An engine with no network and no published port.
    pub fn new(config: NatConfig) -> Self {
        let conntrack = Conntrack::with_hash_seed(config.conntrack.clone(), config.hash_seed);
        Self {
            config,
            conntrack,
            rules: Rules::default(),
            counters: NatCounters::default(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &NatConfig {
        &self.config
    }

    /// Changes the uplink address (flows already translated keep their mapping).
    pub fn set_uplink_addr(&mut self, addr: Ipv4Addr) {
        self.config.uplink_addr = addr;
    }

    /// Adds a network, or replaces the one of the same zone.
    pub fn add_network(&mut self, network: Network) -> Result<(), ConfigError> {
        self.rules.add_network(self.config.uplink_zone, network)
    }

    /// Removes the network of `zone` (its flows stay until they expire). False if none.
    pub fn remove_network(&mut self, zone: Zone) -> bool {
        let before = self.rules.networks.len();
        self.rules.networks.retain(|n| n.zone != zone);
        before != self.rules.networks.len()
    }

    /// The networks.
    pub fn networks(&self) -> &[Network] {
        &self.rules.networks
    }

    /// Publishes a port or range. Refused if it overlaps a rule in force.
    pub fn publish(&mut self, rule: PublishRule) -> Result<(), ConfigError> {
        self.rules.publish(rule)
    }

    /// Withdraws a published rule (flows already set up stay until they expire).
    /// False if it was not in force.
    pub fn unpublish(&mut self, rule: &PublishRule) -> bool {
        let before = self.rules.published.len();
        self.rules.published.retain(|r| r != rule);
        before != self.rules.published.len()
    }

    /// The published rules.
    pub fn published(&self) -> &[PublishRule] {
        &self.rules.published
    }

    /// The connection table (listing: [`Conntrack::entries`] shows each flow's
    /// original and translated reply tuple, as `conntrack -L` does).
    pub fn conntrack(&self) -> &Conntrack {
        &self.conntrack
    }

    /// The connection table, mutably (removing flows, changing timeouts).
    pub fn conntrack_mut(&mut self) -> &mut Conntrack {
        &mut self.conntrack
    }

    /// Event counts.
    pub fn counters(&self) -> &NatCounters {
        &self.counters
    }

    /// The next flow that expired or was evicted; its ports are free again. Call until
    /// `None` after each batch and when [`Self::poll_timeout`] is due.
    pub fn poll_expired(&mut self, now: Instant) -> Option<EntryInfo> {
        self.conntrack.poll_expired(now)
    }

    /// When [`Self::poll_expired`] may next return a flow.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conntrack.poll_timeout()
    }

    /// Handles an IP packet from a container on the network of `zone` that the router
    /// forwards towards the uplink or that is addressed to a local address (the uplink
    /// address, a gateway). Rewrites it in place.
    ///
    /// Known flows are translated (replies of published and hairpin flows included).
    /// A new flow to a published local address becomes a hairpin flow
    /// ([`NatVerdict::ToZone`] of the target); a new flow from a masquerading subnet to
    /// a non-local address is masqueraded ([`NatVerdict::ToUplink`]); anything else is
    /// [`NatVerdict::Untouched`].
    pub fn handle_outbound(&mut self, now: Instant, zone: Zone, packet: &mut [u8]) -> NatVerdict {
        self.handle(now, zone, packet, false)
    }

    /// Handles an IP packet that arrived on the uplink. Rewrites it in place.
    ///
    /// Replies of masqueraded flows go back to their container
    /// ([`NatVerdict::ToZone`]); a new flow to a published port is DNATed to its target;
    /// ICMP errors about a known flow are translated; anything else is dropped
    /// ([`DropReason::NoMapping`]).
    pub fn handle_inbound(&mut self, now: Instant, packet: &mut [u8]) -> NatVerdict {
        self.handle(now, self.config.uplink_zone, packet, true)
    }

    fn verdict(&mut self, verdict: NatVerdict) -> NatVerdict {
        match verdict {
            NatVerdict::Drop(reason) => self.counters.dropped[reason.index()] += 1,
            NatVerdict::Untouched => self.counters.untouched += 1,
            NatVerdict::ToUplink | NatVerdict::ToZone(_) => self.counters.translated += 1,
        }
        verdict
    }

    fn egress(&self, zone: Zone) -> NatVerdict {
        if zone == self.config.uplink_zone {
            NatVerdict::ToUplink
        } else {
            NatVerdict::ToZone(zone)
        }
    }

    fn handle(&mut self, now: Instant, zone: Zone, packet: &mut [u8], inbound: bool) -> NatVerdict {
        if packet.first().is_some_and(|b| b >> 4 == 6) {
            return self.verdict(NatVerdict::Untouched);
        }
        let p = match Ipv4Packet::parse(packet) {
            Ok(p) => p,
            Err(reason) => return self.verdict(NatVerdict::Drop(reason)),
        };
        let Some(proto) = p.proto() else {
            let verdict = self.translate_icmp_error(now, zone, packet, &p);
            if matches!(verdict, NatVerdict::ToUplink | NatVerdict::ToZone(_)) {
                self.counters.icmp_errors += 1;
            }
            return self.verdict(verdict);
        };
        let key = p.key(zone, proto);
        let tcp = match p.transport {
            Transport::Tcp(flags) => Some(flags),
            _ => None,
        };
        // A known flow: `track_known` counts the packet (state, timeout) and hands
        // back the entry's other tuple in one probe of the table; the packet leaves as
        // that tuple reversed, into its zone.
        let verdict = if let Some(known) = self.conntrack.track_known(now, &key, tcp, p.total) {
            packet::rewrite(packet, &p, &known.other.reversed());
            self.egress(known.other.zone)
        } else {
            self.new_flow(now, key, tcp, packet, &p, inbound)
        };
        self.verdict(verdict)
    }

    fn new_flow(
        &mut self,
        now: Instant,
        key: FlowKey,
        tcp: Option<TcpFlags>,
        packet: &mut [u8],
        p: &Ipv4Packet,
        inbound: bool,
    ) -> NatVerdict {
        // Only a TCP SYN or an echo request starts a flow.
        let may_start = match p.transport {
            Transport::Tcp(f) => f.syn && !f.ack && !f.rst,
            Transport::Echo(request) => request,
            Transport::Udp => true,
            Transport::IcmpError => false,
        };
        let local = self.rules.is_local(self.config.uplink_addr, p.dst);
        let rule = if key.proto == Proto::IcmpEcho {
            None
        } else {
            self.rules
                .published(key.proto, p.dst, p.dst_port, local)
                .copied()
        };
        let (kind, mut reply) = match (inbound, rule) {
            (true, None) => return NatVerdict::Drop(DropReason::NoMapping),
            (true, Some(rule)) => (
                NewFlow::Publish,
                FlowKey {
                    zone: rule.zone,
                    proto: key.proto,
                    src: rule.internal_addr.into(),
                    src_port: rule.target_port(p.dst_port),
                    dst: key.src,
                    dst_port: key.src_port,
                },
            ),
            (false, Some(rule)) => {
                let Some(target) = self.rules.network(rule.zone) else {
                    return NatVerdict::Drop(DropReason::NoNetwork);
                };
                (
                    NewFlow::Hairpin,
                    FlowKey {
                        zone: rule.zone,
                        proto: key.proto,
                        src: rule.internal_addr.into(),
                        src_port: rule.target_port(p.dst_port),
                        dst: target.gateway.into(),
                        dst_port: key.src_port,
                    },
                )
            }
            (false, None) => {
                let Some(network) = self
                    .rules
                    .network(key.zone)
                    .filter(|n| n.contains(p.src) && !local)
                else {
                    return NatVerdict::Untouched;
                };
                if network.masquerade {
                    (
                        NewFlow::Masquerade,
                        FlowKey {
                            zone: self.config.uplink_zone,
                            proto: key.proto,
                            src: key.dst,
                            src_port: key.dst_port,
                            dst: self.config.uplink_addr.into(),
                            dst_port: key.src_port,
                        },
                    )
                } else {
                    // Routed without translation (Docker's enable_ip_masquerade=false),
                    // but still tracked, so that replies are let in and nothing else is
                    // (Docker's FORWARD chain: ESTABLISHED,RELATED only).
                    (
                        NewFlow::Routed,
                        FlowKey {
                            zone: self.config.uplink_zone,
                            ..key.reversed()
                        },
                    )
                }
            }
        };
        if !may_start {
            return NatVerdict::Drop(DropReason::NotNew);
        }
        if matches!(kind, NewFlow::Masquerade | NewFlow::Hairpin) {
            match self.allocate(&key, reply) {
                Some(port) => {
                    if port != key.src_port {
                        self.counters.ports_remapped += 1;
                    }
                    set_reply_port(&mut reply, port);
                }
                None => return NatVerdict::Drop(DropReason::PortExhausted),
            }
        }
        match self.conntrack.insert(now, key, reply, tcp) {
            Ok(_) => {}
            Err(Refused::TableFull) => return NatVerdict::Drop(DropReason::TableFull),
            Err(Refused::NotNew) => return NatVerdict::Drop(DropReason::NotNew),
            Err(Refused::Clash) => return NatVerdict::Drop(DropReason::Clash),
        }
        let _ = self.conntrack.track(now, &key, tcp, p.total);
        match kind {
            NewFlow::Masquerade => self.counters.masqueraded_flows += 1,
            NewFlow::Publish => self.counters.published_flows += 1,
            NewFlow::Hairpin => self.counters.hairpin_flows += 1,
            NewFlow::Routed => self.counters.routed_flows += 1,
        }
        packet::rewrite(packet, p, &reply.reversed());
        self.egress(reply.zone)
    }

    /// A free port for the reply tuple `reply` (whose `dst_port` holds the original
    /// source port): the original one if free, else one from the range.
    fn allocate(&self, key: &FlowKey, mut reply: FlowKey) -> Option<u16> {
        if self.conntrack.lookup(&reply).is_none() {
            return Some(reply.dst_port);
        }
        let range = self.config.port_range;
        let span = range.len();
        if span == 0 {
            return None;
        }
        let start = u32::try_from(self.flow_hash(key) % u64::from(span)).unwrap_or(0);
        for i in 0..span.min(MAX_PORT_ATTEMPTS) {
            let offset = (start + i) % span;
            let port = range.first.wrapping_add(u16::try_from(offset).unwrap_or(0));
            set_reply_port(&mut reply, port);
            if self.conntrack.lookup(&reply).is_none() {
                return Some(port);
            }
        }
        None
    }

    /// Where the port search of `key` starts: a keyed mix of the tuple (splitmix64),
    /// so flows spread over the range and outsiders cannot easily predict it.
    fn flow_hash(&self, key: &FlowKey) -> u64 {
        let a = u64::from(v4(key.src).to_bits()) << 32 | u64::from(v4(key.dst).to_bits());
        let b =
            u64::from(key.zone.0) << 32 | u64::from(key.src_port) << 16 | u64::from(key.dst_port);
        let mut x = self.config.hash_seed ^ a.rotate_left(17) ^ b;
        for _ in 0..2 {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^= x >> 31;
        }
        x
    }

    /// Translates an ICMP error arriving in `zone` by the flow of the packet it embeds.
    /// That packet was translated on its way out, so it matches an entry's tuple
    /// reversed; it is rewritten to the other tuple (as it was before translation),
    /// the outer destination to that tuple's source, and the outer source, when it is
    /// the embedded destination (the error comes from the peer itself), to that
    /// tuple's destination.
    fn translate_icmp_error(
        &self,
        now: Instant,
        zone: Zone,
        packet: &mut [u8],
        p: &Ipv4Packet,
    ) -> NatVerdict {
        let e = match Embedded::parse(packet, p) {
            Ok(e) => e,
            Err(reason) => return NatVerdict::Drop(reason),
        };
        let seen = e.key(zone).reversed();
        let Some((id, _)) = self.conntrack.lookup(&seen) else {
            return NatVerdict::Drop(DropReason::NoMapping);
        };
        let Some(entry) = self.conntrack.entry(id, now) else {
            return NatVerdict::Drop(DropReason::NoMapping);
        };
        let other = if entry.original == seen {
            entry.reply
        } else {
            entry.original
        };
        let outer_src = if p.src == e.dst { v4(other.dst) } else { p.src };
        packet::rewrite_icmp_error(packet, p, &e, &other, outer_src, v4(other.src));
        self.egress(other.zone)
    }
}

/// Sets the translated source port of a reply tuple (its destination port; for ICMP
/// echo both "ports" are the identifier).
fn set_reply_port(reply: &mut FlowKey, port: u16) {
    reply.dst_port = port;
    if reply.proto == Proto::IcmpEcho {
        reply.src_port = port;
    }
}

#[cfg(test)]
mod tests;

//! Sans-IO connection tracking for tapnet.
//!
//! A flow is identified by its [`FlowKey`] within a [`Zone`] (one zone per network, so
//! that overlapping container addresses on different networks never collide), as
//! Linux nf_conntrack zones do.
//!
//! Layer: sans-IO core. No syscalls, threads or clock reads: time is a parameter of
//! every call ([`Instant`]), and the shell polls [`Conntrack::poll_expired`] /
//! [`Conntrack::poll_timeout`] to learn which flows ended. Modules:
//!
//! - `table`: [`Conntrack`], the bounded table (slab + two-way hash index), its
//!   eviction policy (Linux `early_drop`) and counters;
//! - `index`: the hash index (open addressing, hash tag and item in one word);
//! - `tcp`: the TCP state tracker, after Linux `nf_conntrack_proto_tcp.c`;
//! - `timer`: the expiry heap, re-keyed lazily so packets never touch it;
//! - `unassured`: the eviction order of unassured flows;
//! - `format`: the `conntrack -L` listing and the JSON form of [`EntryInfo`].
//!
//! A typical shell loop:
//!
//! ```
//! use std::net::Ipv4Addr;
//! use tapnet_conntrack::{Conntrack, ConntrackConfig, FlowKey, Instant, Proto, TcpFlags, Zone};
//!
//! let mut ct = Conntrack::new(ConntrackConfig { capacity: 1024, ..Default::default() });
//! let key = FlowKey {
//!     zone: Zone(1),
//!     proto: Proto::Tcp,
//!     src: Ipv4Addr::new(10, 0, 2, 100).into(),
//!     src_port: 40000,
//!     dst: Ipv4Addr::new(10, 0, 2, 2).into(),
//!     dst_port: 80,
//! };
//! let now = Instant::from_secs(1);
//! let syn = ct.track(now, &key, Some(TcpFlags::SYN), 60).unwrap();
//! assert!(syn.new);
//! let syn_ack = ct.track(now, &key.reversed(), Some(TcpFlags::SYN_ACK), 60).unwrap();
//! assert_eq!(syn_ack.id, syn.id);
//! // After the batch: release what belongs to flows that ended.
//! while let Some(ended) = ct.poll_expired(now) {
//!     drop(ended);
//! }
//! println!("{}", ct.entry(syn.id, now).unwrap().to_conntrack_line());
//! ```

#![forbid(unsafe_code)]

pub mod budget;
mod format;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod index;
mod table;
mod tcp;
mod timer;
mod unassured;

pub use table::{
    CAPACITY_MAX, Conntrack, ConntrackConfig, ConntrackStats, Counters, Direction, EntryInfo,
    FlowId, KnownFlow, PREALLOCATE_MAX, Refused, State, TcpFlags, Timeouts, Tracked,
};
pub use tapnet_wire::Instant;

use std::net::IpAddr;

/// A conntrack zone: flows in different zones never match each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Zone(pub u16);

/// The transport protocols tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Proto {
    /// TCP (IP protocol 6).
    #[serde(rename = "tcp")]
    Tcp,
    /// UDP (IP protocol 17).
    #[serde(rename = "udp")]
    Udp,
    /// ICMP or ICMPv6 echo, tracked by identifier (RFC 792 / RFC 4443).
    #[serde(rename = "icmp")]
    IcmpEcho,
}

impl Proto {
    /// The IP protocol number (for IPv4; ICMPv6 echo is 58 on IPv6).
    pub const fn ip_protocol(self, ipv6: bool) -> u8 {
        match (self, ipv6) {
            (Self::Tcp, _) => 6,
            (Self::Udp, _) => 17,
            (Self::IcmpEcho, false) => 1,
            (Self::IcmpEcho, true) => 58,
        }
    }
}

/// One direction of a flow: addresses and ports (for ICMP echo both "ports" hold the
/// echo identifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct FlowKey {
    /// The zone (network) the packet belongs to.
    pub zone: Zone,
    /// The transport protocol.
    pub proto: Proto,
    /// Source address.
    pub src: IpAddr,
    /// Source port (ICMP echo: the identifier).
    pub src_port: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port (ICMP echo: the identifier).
    pub dst_port: u16,
}

impl FlowKey {
    /// The key of an ICMP or ICMPv6 echo request or reply with `identifier` (RFC 792,
    /// RFC 4443 section 4): both "ports" carry the identifier, so the reply's key is
    /// this key reversed.
    #[must_use]
    pub const fn icmp_echo(zone: Zone, src: IpAddr, dst: IpAddr, identifier: u16) -> Self {
        Self {
            zone,
            proto: Proto::IcmpEcho,
            src,
            src_port: identifier,
            dst,
            dst_port: identifier,
        }
    }

    /// Whether the addresses are IPv6.
    pub const fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }

    /// The key of packets flowing the other way (the "reply tuple" of `conntrack -L`).
    #[must_use]
    pub const fn reversed(&self) -> Self {
        Self {
            zone: self.zone,
            proto: self.proto,
            src: self.dst,
            src_port: self.dst_port,
            dst: self.src,
            dst_port: self.src_port,
        }
    }

    /// A direction-independent form: both directions of a flow give the same value, so
    /// it can index a table or pick a core (symmetric hashing).
    #[must_use]
    pub fn canonical(&self) -> Self {
        let reversed = self.reversed();
        if (self.src, self.src_port) <= (self.dst, self.dst_port) {
            *self
        } else {
            reversed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key() -> FlowKey {
        FlowKey {
            zone: Zone(1),
            proto: Proto::Tcp,
            src: Ipv4Addr::new(10, 0, 0, 2).into(),
            src_port: 40000,
            dst: Ipv4Addr::new(127, 0, 0, 1).into(),
            dst_port: 80,
        }
    }

    #[test]
    fn reversing_twice_is_identity() {
        assert_eq!(key().reversed().reversed(), key());
        assert_ne!(key().reversed(), key());
    }

    #[test]
    fn canonical_form_is_direction_independent() {
        assert_eq!(key().canonical(), key().reversed().canonical());
        let other_zone = FlowKey {
            zone: Zone(2),
            ..key()
        };
        assert_ne!(other_zone.canonical(), key().canonical());
    }

    #[test]
    fn protocol_numbers() {
        assert_eq!(Proto::Tcp.ip_protocol(false), 6);
        assert_eq!(Proto::Udp.ip_protocol(true), 17);
        assert_eq!(Proto::IcmpEcho.ip_protocol(false), 1);
        assert_eq!(Proto::IcmpEcho.ip_protocol(true), 58);
    }
}

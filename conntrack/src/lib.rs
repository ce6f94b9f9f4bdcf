//! Sans-IO connection tracking for tapnet.
//!
//! A flow is identified by its [`FlowKey`] within a [`Zone`] (one zone per network, so
//! that overlapping container addresses on different networks never collide), as
//! Linux nf_conntrack zones do.

#![forbid(unsafe_code)]

mod table;

pub use table::{
    Conntrack, ConntrackConfig, Counters, Direction, EntryInfo, FlowId, Refused, State, TcpFlags, Timeouts,
    Tracked,
};
pub use tapnet_wire::Instant;

use std::net::IpAddr;

/// A conntrack zone: flows in different zones never match each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Zone(pub u16);

/// The transport protocols tracked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (IP protocol 6).
    Tcp,
    /// UDP (IP protocol 17).
    Udp,
    /// ICMP or ICMPv6 echo, tracked by identifier (RFC 792 / RFC 4443).
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub zone: Zone,
    pub proto: Proto,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
}

impl FlowKey {
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

//! In-place IPv4 views and rewrites for the NAT engine: just the fields NAT touches
//! (RFC 791 addresses, RFC 9293 / RFC 768 ports, RFC 792 echo identifier and the packet
//! an ICMP error embeds), with every covering checksum updated incrementally
//! (RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`).
//!
//! Invariant: the parsers check every length they rely on, so the rewrites that take a
//! parsed value never index out of bounds.

use std::net::Ipv4Addr;

use tapnet_conntrack::{FlowKey, Proto, TcpFlags, Zone};
use tapnet_wire::checksum::fold;

use crate::DropReason;

/// IP protocol numbers (IANA).
pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;

/// ICMP types (RFC 792).
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACHABLE: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// Offsets in the IPv4 header (RFC 791 section 3.1).
const IP_CHECKSUM: usize = 10;
const IP_SRC: usize = 12;
const IP_DST: usize = 16;
const IPV4_MIN_HEADER: usize = 20;

/// A sum of RFC 1624 word changes, applied to a checksum in one fold.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Delta(u64);

impl Delta {
    /// Records that a 16-bit word went from `old` to `new`.
    #[inline]
    pub(crate) fn word(&mut self, old: u16, new: u16) {
        self.0 += u64::from(!old) + u64::from(new);
    }

    /// The checksum `checksum` after every recorded change (RFC 1624 eqn. 3).
    #[inline]
    pub(crate) fn apply(self, checksum: u16) -> u16 {
        !fold(u64::from(!checksum) + self.0)
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[inline]
fn read16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

#[inline]
fn write16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

#[inline]
fn read_addr(buf: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3])
}

/// Writes the word at `at` and records the change in every delta of `sums`.
#[inline]
fn set16(buf: &mut [u8], at: usize, new: u16, sums: &mut [&mut Delta]) {
    let old = read16(buf, at);
    if old != new {
        write16(buf, at, new);
        for sum in sums.iter_mut() {
            sum.word(old, new);
        }
    }
}

/// Writes the address at `at` (two words) and records the changes.
#[inline]
fn set_addr(buf: &mut [u8], at: usize, new: Ipv4Addr, sums: &mut [&mut Delta]) {
    let [a, b, c, d] = new.octets();
    set16(buf, at, u16::from_be_bytes([a, b]), sums);
    set16(buf, at + 2, u16::from_be_bytes([c, d]), sums);
}

/// What the transport header of a packet is, for NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// TCP with these flags.
    Tcp(TcpFlags),
    /// UDP.
    Udp,
    /// ICMP echo request (`true`) or reply (`false`).
    Echo(bool),
    /// An ICMP error embedding a packet (RFC 792: destination unreachable, time
    /// exceeded, parameter problem).
    IcmpError,
}

/// A parsed IPv4 packet: header length, length without link padding, addresses, and
/// the transport header (whose fixed part is known to be present).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ipv4Packet {
    pub(crate) ihl: usize,
    pub(crate) total: usize,
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) transport: Transport,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
}

impl Ipv4Packet {
    /// Parses the IPv4 packet at the start of `packet` (trailing link padding allowed).
    /// Checks no checksum: NAT keeps a checksum as valid, or as invalid, as it was.
    pub(crate) fn parse(packet: &[u8]) -> Result<Self, DropReason> {
        if packet.len() < IPV4_MIN_HEADER || packet[0] >> 4 != 4 {
            return Err(DropReason::Malformed);
        }
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        let total = usize::from(read16(packet, 2));
        if ihl < IPV4_MIN_HEADER || total < ihl || total > packet.len() {
            return Err(DropReason::Malformed);
        }
        // MF set or a non-zero offset: the shell reassembles before NAT (as Linux
        // conntrack defragments first), since later fragments carry no ports.
        if read16(packet, 6) & 0x3fff != 0 {
            return Err(DropReason::Fragment);
        }
        let l4 = &packet[ihl..total];
        let (transport, src_port, dst_port) = match packet[9] {
            PROTO_TCP if l4.len() >= 20 => (
                Transport::Tcp(TcpFlags::from_header_byte(l4[13])),
                read16(l4, 0),
                read16(l4, 2),
            ),
            PROTO_UDP if l4.len() >= 8 => (Transport::Udp, read16(l4, 0), read16(l4, 2)),
            PROTO_ICMP if l4.len() >= 8 => match l4[0] {
                ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY => {
                    let id = read16(l4, 4);
                    (Transport::Echo(l4[0] == ICMP_ECHO_REQUEST), id, id)
                }
                ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM => {
                    (Transport::IcmpError, 0, 0)
                }
                _ => return Err(DropReason::UnsupportedProtocol),
            },
            PROTO_TCP | PROTO_UDP | PROTO_ICMP => return Err(DropReason::Malformed),
            _ => return Err(DropReason::UnsupportedProtocol),
        };
        Ok(Self {
            ihl,
            total,
            src: read_addr(packet, IP_SRC),
            dst: read_addr(packet, IP_DST),
            transport,
            src_port,
            dst_port,
        })
    }

    /// The conntrack protocol (`None` for an ICMP error).
    pub(crate) fn proto(&self) -> Option<Proto> {
        match self.transport {
            Transport::Tcp(_) => Some(Proto::Tcp),
            Transport::Udp => Some(Proto::Udp),
            Transport::Echo(_) => Some(Proto::IcmpEcho),
            Transport::IcmpError => None,
        }
    }

    /// The packet's tuple in `zone` (not for ICMP errors).
    pub(crate) fn key(&self, zone: Zone, proto: Proto) -> FlowKey {
        FlowKey {
            zone,
            proto,
            src: self.src.into(),
            src_port: self.src_port,
            dst: self.dst.into(),
            dst_port: self.dst_port,
        }
    }
}

/// The IPv4 addresses of a key (NAT keys are IPv4 by construction).
#[inline]
pub(crate) fn v4(addr: std::net::IpAddr) -> Ipv4Addr {
    match addr {
        std::net::IpAddr::V4(a) => a,
        std::net::IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    }
}

/// Rewrites a TCP, UDP or ICMP echo packet to carry tuple `to` (addresses, ports or
/// identifier), updating the IPv4 header checksum and the transport checksum. A UDP
/// checksum of 0 ("none", RFC 768) stays 0; an updated UDP checksum of 0 is sent as
/// 0xffff.
pub(crate) fn rewrite(packet: &mut [u8], p: &Ipv4Packet, to: &FlowKey) {
    let mut ip = Delta::default();
    let mut l4 = Delta::default();
    let pseudo = !matches!(p.transport, Transport::Echo(_));
    {
        let sums: &mut [&mut Delta] = if pseudo {
            &mut [&mut ip, &mut l4]
        } else {
            &mut [&mut ip]
        };
        set_addr(packet, IP_SRC, v4(to.src), sums);
        set_addr(packet, IP_DST, v4(to.dst), sums);
    }
    let at = p.ihl;
    match p.transport {
        Transport::Tcp(_) | Transport::Udp => {
            set16(packet, at, to.src_port, &mut [&mut l4]);
            set16(packet, at + 2, to.dst_port, &mut [&mut l4]);
        }
        Transport::Echo(_) => set16(packet, at + 4, to.src_port, &mut [&mut l4]),
        Transport::IcmpError => {}
    }
    if !ip.is_empty() {
        let ck = ip.apply(read16(packet, IP_CHECKSUM));
        write16(packet, IP_CHECKSUM, ck);
    }
    if l4.is_empty() {
        return;
    }
    match p.transport {
        Transport::Tcp(_) => {
            let ck = l4.apply(read16(packet, at + 16));
            write16(packet, at + 16, ck);
        }
        Transport::Udp => {
            let old = read16(packet, at + 6);
            if old != 0 {
                let ck = match l4.apply(old) {
                    0 => 0xffff,
                    ck => ck,
                };
                write16(packet, at + 6, ck);
            }
        }
        Transport::Echo(_) => {
            let ck = l4.apply(read16(packet, at + 2));
            write16(packet, at + 2, ck);
        }
        Transport::IcmpError => {}
    }
}

/// The packet an ICMP error embeds (RFC 792: its IP header and at least 8 bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Embedded {
    /// Offset of the embedded IP header in the outer packet.
    pub(crate) at: usize,
    pub(crate) ihl: usize,
    /// Bytes of the embedded packet present (to the end of the outer packet).
    pub(crate) len: usize,
    pub(crate) proto: Proto,
    pub(crate) src: Ipv4Addr,
    pub(crate) dst: Ipv4Addr,
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
}

impl Embedded {
    /// Parses the packet embedded in the ICMP error `p`.
    pub(crate) fn parse(packet: &[u8], p: &Ipv4Packet) -> Result<Self, DropReason> {
        let at = p.ihl + 8;
        let inner = packet.get(at..p.total).ok_or(DropReason::Malformed)?;
        if inner.len() < IPV4_MIN_HEADER || inner[0] >> 4 != 4 {
            return Err(DropReason::Malformed);
        }
        let ihl = usize::from(inner[0] & 0x0f) * 4;
        if ihl < IPV4_MIN_HEADER || inner.len() < ihl + 8 {
            return Err(DropReason::Malformed);
        }
        // Only a first fragment carries the ports.
        if read16(inner, 6) & 0x1fff != 0 {
            return Err(DropReason::Fragment);
        }
        let l4 = &inner[ihl..];
        let (proto, src_port, dst_port) = match inner[9] {
            PROTO_TCP => (Proto::Tcp, read16(l4, 0), read16(l4, 2)),
            PROTO_UDP => (Proto::Udp, read16(l4, 0), read16(l4, 2)),
            PROTO_ICMP if matches!(l4[0], ICMP_ECHO_REQUEST | ICMP_ECHO_REPLY) => {
                let id = read16(l4, 4);
                (Proto::IcmpEcho, id, id)
            }
            _ => return Err(DropReason::UnsupportedProtocol),
        };
        Ok(Self {
            at,
            ihl,
            len: inner.len(),
            proto,
            src: read_addr(inner, IP_SRC),
            dst: read_addr(inner, IP_DST),
            src_port,
            dst_port,
        })
    }

    /// The embedded packet's tuple in `zone`.
    pub(crate) fn key(&self, zone: Zone) -> FlowKey {
        FlowKey {
            zone,
            proto: self.proto,
            src: self.src.into(),
            src_port: self.src_port,
            dst: self.dst.into(),
            dst_port: self.dst_port,
        }
    }
}

/// Rewrites an ICMP error: the embedded packet to tuple `inner_to` (its addresses,
/// ports or identifier, its IP header checksum and, when the embedded bytes hold it,
/// its transport checksum), the outer destination to `outer_dst` and the outer source
/// to `outer_src`, then the outer IPv4 header checksum and the ICMP checksum over the
/// changed embedded bytes.
///
/// The embedded transport checksum is updated incrementally when its field is present
/// (UDP: unless 0; TCP: when 18 bytes are embedded; echo: always): it stays what the
/// sender would have computed, although the truncated packet cannot be verified. Linux
/// (`nf_nat_icmp_reply_translation`) does the same for UDP and for a whole TCP header.
pub(crate) fn rewrite_icmp_error(
    packet: &mut [u8],
    p: &Ipv4Packet,
    e: &Embedded,
    inner_to: &FlowKey,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
) {
    let mut outer_ip = Delta::default();
    set_addr(packet, IP_SRC, outer_src, &mut [&mut outer_ip]);
    set_addr(packet, IP_DST, outer_dst, &mut [&mut outer_ip]);
    if !outer_ip.is_empty() {
        let ck = outer_ip.apply(read16(packet, IP_CHECKSUM));
        write16(packet, IP_CHECKSUM, ck);
    }

    let mut icmp = Delta::default();
    let mut inner_ip = Delta::default();
    let mut inner_l4 = Delta::default();
    let pseudo = e.proto != Proto::IcmpEcho;
    {
        let sums: &mut [&mut Delta] = if pseudo {
            &mut [&mut icmp, &mut inner_ip, &mut inner_l4]
        } else {
            &mut [&mut icmp, &mut inner_ip]
        };
        set_addr(packet, e.at + IP_SRC, v4(inner_to.src), sums);
        set_addr(packet, e.at + IP_DST, v4(inner_to.dst), sums);
    }
    let l4 = e.at + e.ihl;
    match e.proto {
        Proto::Tcp | Proto::Udp => {
            set16(
                packet,
                l4,
                inner_to.src_port,
                &mut [&mut icmp, &mut inner_l4],
            );
            set16(
                packet,
                l4 + 2,
                inner_to.dst_port,
                &mut [&mut icmp, &mut inner_l4],
            );
        }
        Proto::IcmpEcho => set16(
            packet,
            l4 + 4,
            inner_to.src_port,
            &mut [&mut icmp, &mut inner_l4],
        ),
    }
    if !inner_ip.is_empty() {
        let ck = inner_ip.apply(read16(packet, e.at + IP_CHECKSUM));
        set16(packet, e.at + IP_CHECKSUM, ck, &mut [&mut icmp]);
    }
    let l4_len = e.len - e.ihl;
    let ck_at = match e.proto {
        Proto::Tcp if l4_len >= 18 => Some(l4 + 16),
        Proto::Udp if read16(packet, l4 + 6) != 0 => Some(l4 + 6),
        Proto::IcmpEcho => Some(l4 + 2),
        Proto::Tcp | Proto::Udp => None,
    };
    if let Some(ck_at) = ck_at
        && !inner_l4.is_empty()
    {
        let ck = match inner_l4.apply(read16(packet, ck_at)) {
            0 if e.proto == Proto::Udp => 0xffff,
            ck => ck,
        };
        set16(packet, ck_at, ck, &mut [&mut icmp]);
    }
    if !icmp.is_empty() {
        let at = p.ihl + 2;
        let ck = icmp.apply(read16(packet, at));
        write16(packet, at, ck);
    }
}

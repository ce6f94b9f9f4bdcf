//! Hand-built frames for the source-guard tests and the fuzz harness: Ethernet with
//! optional VLAN tags, ARP, IPv4/UDP, IPv6 with extension headers, NDP and MLD,
//! DHCP. Checksums are left zero (the switch never looks at them), lengths are right.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{MacAddr, PortGuard};

/// An Ethernet frame: `dst`, `src`, `tags` VLAN tags (802.1ad outside, 802.1Q inside),
/// then `ethertype` and `payload`.
pub fn ethernet(
    dst: MacAddr,
    src: MacAddr,
    tags: usize,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    for i in 0..tags {
        let tpid: u16 = if i + 1 < tags { 0x88a8 } else { 0x8100 };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An ARP packet (RFC 826) for IPv4 over Ethernet; `op` 1 request, 2 reply.
pub fn arp(op: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0x00, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha.0);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha.0);
    p.extend_from_slice(&tpa.octets());
    p
}

/// An IPv4 header (no options) and `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap_or(u16::MAX);
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// A UDP header and `payload`.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    let mut p = Vec::with_capacity(8 + payload.len());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 header with next header `next` and `payload` (extension headers included).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[next, 255]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// An 8-byte hop-by-hop or destination options header (PadN) before `next`.
pub fn options_header(next: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![next, 0, 1, 4, 0, 0, 0, 0];
    p.extend_from_slice(rest);
    p
}

/// A fragment header (first fragment when `offset` is 0, more fragments follow).
pub fn fragment_header(next: u8, offset: u16, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![next, 0];
    p.extend_from_slice(&((offset << 3) | 1).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1]);
    p.extend_from_slice(rest);
    p
}

/// An ICMPv6 message: type, code 0, zero checksum, then `body`.
pub fn icmpv6(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![kind, 0, 0, 0];
    p.extend_from_slice(body);
    p
}

/// A link-layer address option (RFC 4861 4.6.1): 1 source, 2 target.
pub fn link_layer_option(kind: u8, mac: MacAddr) -> Vec<u8> {
    let mut p = vec![kind, 1];
    p.extend_from_slice(&mac.0);
    p
}

/// A neighbour solicitation (135) or advertisement (136) for `target`, with `options`.
pub fn neighbour_message(kind: u8, target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8; 4];
    if kind == 136 {
        body[0] = 0x60; // solicited, override
    }
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(options);
    icmpv6(kind, &body)
}

/// A router solicitation (133) with `options`.
pub fn router_solicitation(options: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8; 4];
    body.extend_from_slice(options);
    icmpv6(133, &body)
}

/// A DHCP message (BOOTP op `op`: 1 request, 2 reply) of type `msg_type`, for client
/// `chaddr`, with `yiaddr` and, when given, lease time option 51.
pub fn dhcp(
    op: u8,
    msg_type: u8,
    chaddr: MacAddr,
    yiaddr: Ipv4Addr,
    lease: Option<u32>,
) -> Vec<u8> {
    let mut m = vec![0u8; 240];
    m[0..4].copy_from_slice(&[op, 1, 6, 0]);
    m[16..20].copy_from_slice(&yiaddr.octets());
    m[28..34].copy_from_slice(&chaddr.0);
    m[236..240].copy_from_slice(&[99, 130, 83, 99]);
    m.extend_from_slice(&[53, 1, msg_type]);
    if let Some(secs) = lease {
        m.extend_from_slice(&[51, 4]);
        m.extend_from_slice(&secs.to_be_bytes());
    }
    m.push(255);
    m
}

/// A whole DHCPACK frame from a server at `server` (`server_mac`) to `chaddr`.
pub fn dhcp_ack_frame(
    server_mac: MacAddr,
    server: Ipv4Addr,
    chaddr: MacAddr,
    yiaddr: Ipv4Addr,
    lease: u32,
) -> Vec<u8> {
    let msg = dhcp(2, 5, chaddr, yiaddr, Some(lease));
    let ip = ipv4(server, yiaddr, 17, &udp(67, 68, &msg));
    ethernet(chaddr, server_mac, 0, 0x0800, &ip)
}

/// IPv4 addresses guards are given and frames claim: three stations and 0.0.0.0.
pub const IPV4_ALPHABET: [Ipv4Addr; 4] = [
    Ipv4Addr::new(10, 0, 0, 1),
    Ipv4Addr::new(10, 0, 0, 2),
    Ipv4Addr::new(10, 0, 0, 3),
    Ipv4Addr::UNSPECIFIED,
];

/// The /64 prefix guards are given SLAAC in, and its first addresses.
pub const PREFIX6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0);

/// An IPv6 address for shape byte `b` with station MAC `mac`: fixed addresses, `::`,
/// and the link-local and SLAAC addresses of `mac`.
pub fn ipv6_choice(b: u8, mac: MacAddr) -> Ipv6Addr {
    let iid = {
        let m = mac.0;
        u128::from(u64::from_be_bytes([
            m[0] ^ 2,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ]))
    };
    match b % 6 {
        0 => Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
        1 => Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
        2 => Ipv6Addr::UNSPECIFIED,
        3 => Ipv6Addr::from((0xfe80u128 << 112) | iid),
        4 => Ipv6Addr::from(u128::from(PREFIX6) | iid),
        _ => Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 2),
    }
}

/// A guard from a MAC and a flags byte: bits 0-1 `0` none, `2` any MAC, else `mac`;
/// bits 2-4 give each of the first three [`IPV4_ALPHABET`] addresses; bit 5 the SLAAC
/// prefix and fd00::2; bit 6 the open range fd00::/64 without fd00::1; bit 7 DHCP
/// snooping.
pub fn guard(mac: MacAddr, flags: u8) -> Option<PortGuard> {
    let mut guard = match flags & 3 {
        0 => return None,
        2 => PortGuard::any_mac(),
        _ => PortGuard::new(mac),
    };
    for (i, &addr) in IPV4_ALPHABET[..3].iter().enumerate() {
        if flags & (4 << i) != 0 {
            guard = guard.with_ipv4(addr);
        }
    }
    if flags & 0x20 != 0 {
        guard = guard
            .with_slaac_prefix(PREFIX6)
            .with_ipv6(ipv6_choice(1, mac));
    }
    if flags & 0x40 != 0 {
        guard = guard
            .with_ipv6_range(PREFIX6, 64)
            .without_ipv6(ipv6_choice(0, mac));
    }
    if flags & 0x80 != 0 {
        guard = guard.with_dhcp_snooping();
    }
    Some(guard)
}

/// A frame a guard has to judge, from five shape bytes `[kind, dst, src, addr, extra]`
/// and a MAC alphabet: `(kind & 0x1f) % 9` picks ARP, UDP/IPv4, UDP/IPv6, NS, NA, RS, RA, an
/// MLD report behind a hop-by-hop header, or a DHCPACK; `kind >> 5 & 3` VLAN tags;
/// `addr` the addresses; `extra` bit 0 the frame's own MAC in ARP and link-layer
/// options (else `mac(extra)`), bit 1 DHCP client ports, bit 7 a cut at
/// `14 + (extra & 0x3f)` bytes.
pub fn guard_frame(shape: [u8; 5], mac: impl Fn(u8) -> MacAddr) -> Vec<u8> {
    let [kind, dst_byte, src_byte, addr, extra] = shape;
    let (dst, src) = (mac(dst_byte), mac(src_byte));
    let tags = usize::from(kind >> 5 & 3);
    let named_mac = if extra & 1 != 0 { src } else { mac(extra) };
    let v4 = |b: u8| IPV4_ALPHABET[usize::from(b % 4)];
    let v6 = |b: u8| ipv6_choice(b, src);
    let (sport, dport) = if extra & 2 != 0 {
        (68, 67)
    } else {
        (1000, 2000)
    };
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let icmp = |message: &[u8]| ipv6(v6(addr), all_nodes, 58, message);
    let (ethertype, payload) = match (kind & 0x1f) % 9 {
        0 => (
            0x0806,
            arp(
                1 + u16::from(extra >> 6 & 1),
                named_mac,
                v4(addr),
                MacAddr::ZERO,
                v4(addr >> 2),
            ),
        ),
        1 => (
            0x0800,
            ipv4(v4(addr), v4(addr >> 2), 17, &udp(sport, dport, b"x")),
        ),
        2 => (
            0x86dd,
            ipv6(v6(addr), v6(addr >> 3), 17, &udp(sport, dport, b"x")),
        ),
        3 => (
            0x86dd,
            icmp(&neighbour_message(
                135,
                v6(addr >> 3),
                &link_layer_option(1, named_mac),
            )),
        ),
        4 => (
            0x86dd,
            icmp(&neighbour_message(
                136,
                v6(addr >> 3),
                &link_layer_option(2, named_mac),
            )),
        ),
        5 => (
            0x86dd,
            icmp(&router_solicitation(&link_layer_option(1, named_mac))),
        ),
        6 => (0x86dd, icmp(&icmpv6(134, &[0; 12]))),
        7 => (
            0x86dd,
            ipv6(
                v6(addr),
                all_nodes,
                0,
                &options_header(58, &icmpv6(143, &[0; 4])),
            ),
        ),
        _ => {
            let msg = dhcp(2, 5, dst, v4(addr), Some(u32::from(extra & 0x0f)));
            (
                0x0800,
                ipv4(v4(addr >> 2), v4(addr), 17, &udp(67, 68, &msg)),
            )
        }
    };
    let mut frame = ethernet(dst, src, tags, ethertype, &payload);
    if extra & 0x80 != 0 {
        frame.truncate(14 + usize::from(extra & 0x3f));
    }
    frame
}

//! Guest packets for the `engine_packets` harness, and the checks of what the engine
//! sends back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tapnet_wire::checksum;
use tapnet_wire::ip::{self, IpView};

/// The guests' own addresses (the engine answers whatever source it gets, so the
/// fuzzer may pick others: see [`source`]).
const GUESTS4: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 2, 100), Ipv4Addr::new(10, 0, 2, 101)];
const GUESTS6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100),
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x101),
];

/// A source address: mostly a guest's, sometimes one no guest should use.
pub(super) fn source(sel: u8, v6: bool) -> IpAddr {
    match (sel % 8, v6) {
        (7, false) => Ipv4Addr::new(10, 0, 2, 2).into(),
        (6, false) => Ipv4Addr::UNSPECIFIED.into(),
        (7, true) => Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).into(),
        (n, false) => GUESTS4[usize::from(n % 2)].into(),
        (n, true) => GUESTS6[usize::from(n % 2)].into(),
    }
}

/// A destination: the gateway (the host's loopback), the DNS address, the guest's
/// network, addresses outside (unreachable from the harness's namespace), loopback,
/// broadcast, multicast, unspecified.
pub(super) fn destination(sel: u8, v6: bool) -> IpAddr {
    if v6 {
        let a = match sel % 8 {
            0 | 1 => Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            2 => Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3),
            3 => Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
            4 => Ipv6Addr::LOCALHOST,
            5 => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            6 => Ipv6Addr::UNSPECIFIED,
            _ => GUESTS6[1],
        };
        return a.into();
    }
    let a = match sel % 8 {
        0 | 1 => Ipv4Addr::new(10, 0, 2, 2),
        2 => Ipv4Addr::new(10, 0, 2, 3),
        3 => Ipv4Addr::new(192, 0, 2, 1),
        4 => Ipv4Addr::LOCALHOST,
        5 => Ipv4Addr::BROADCAST,
        6 => Ipv4Addr::new(224, 0, 0, 1),
        _ => GUESTS4[1],
    };
    a.into()
}

/// A port: those the harness's servers listen on (80 TCP, 53 and 7 UDP), a closed
/// one, or any.
pub(super) fn port(sel: u8) -> u16 {
    match sel % 8 {
        0 | 1 => 80,
        2 => 53,
        3 => 7,
        4 => 9,
        5 => 0,
        _ => 1024 + u16::from(sel),
    }
}

/// `l4` behind an IP header from `src` to `dst` (of one family).
pub(super) fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + l4.len());
    ip::push_ip_header(&mut p, src, dst, proto, l4.len());
    p.extend_from_slice(l4);
    p
}

/// Fills the transport checksum of the packet `p` built by [`ip_packet`].
fn fill_checksum(p: &mut [u8]) {
    let Some(v) = IpView::parse(p) else { return };
    let at = v.l4_offset
        + match v.proto {
            ip::PROTO_TCP => 16,
            ip::PROTO_UDP => 6,
            ip::PROTO_ICMP | ip::PROTO_ICMPV6 => 2,
            _ => return,
        };
    if at + 2 > p.len() {
        return;
    }
    p[at..at + 2].fill(0);
    let l4 = &p[v.l4_offset..v.ip_len()];
    let sum = if v.proto == ip::PROTO_ICMP {
        checksum::checksum(l4)
    } else {
        ip::l4_checksum(v.src, v.dst, v.proto, l4)
    };
    p[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

/// TCP fields of a segment to build.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    pub(super) src: (IpAddr, u16),
    pub(super) dst: (IpAddr, u16),
    pub(super) seq: u32,
    pub(super) ack: u32,
    /// FIN SYN RST PSH ACK URG ECE CWR, as in the header.
    pub(super) flags: u8,
    /// The MSS option (SYN), if any.
    pub(super) mss: Option<u16>,
}

pub(super) fn tcp(s: &Segment, payload: &[u8]) -> Vec<u8> {
    let opts: Vec<u8> = s.mss.map_or_else(Vec::new, |m| {
        let [hi, lo] = m.to_be_bytes();
        vec![2, 4, hi, lo]
    });
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&s.src.1.to_be_bytes());
    t[2..4].copy_from_slice(&s.dst.1.to_be_bytes());
    t[4..8].copy_from_slice(&s.seq.to_be_bytes());
    t[8..12].copy_from_slice(&s.ack.to_be_bytes());
    t[12] = u8::try_from((20 + opts.len()) / 4).unwrap_or(5) << 4;
    t[13] = s.flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(&opts);
    t.extend_from_slice(payload);
    let mut p = ip_packet(s.src.0, s.dst.0, ip::PROTO_TCP, &t);
    fill_checksum(&mut p);
    p
}

pub(super) fn udp(src: (IpAddr, u16), dst: (IpAddr, u16), payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src.1.to_be_bytes());
    u.extend_from_slice(&dst.1.to_be_bytes());
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let mut p = ip_packet(src.0, dst.0, ip::PROTO_UDP, &u);
    fill_checksum(&mut p);
    p
}

/// An ICMP (or ICMPv6) echo request.
pub(super) fn echo(src: IpAddr, dst: IpAddr, id: u16, payload: &[u8]) -> Vec<u8> {
    let (proto, ty) = if src.is_ipv6() {
        (ip::PROTO_ICMPV6, 128)
    } else {
        (ip::PROTO_ICMP, 8)
    };
    let mut m = vec![ty, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(payload);
    let mut p = ip_packet(src, dst, proto, &m);
    fill_checksum(&mut p);
    p
}

/// The IPv4 packet `p` cut into `parts` fragments (8-byte aligned), in order or
/// reversed, the second overlapping the first by 8 bytes if `overlap`.
pub(super) fn fragments(p: &[u8], parts: usize, reversed: bool, overlap: bool) -> Vec<Vec<u8>> {
    let Some(v) = IpView::parse(p).filter(|v| v.src.is_ipv4() && !v.fragment) else {
        return vec![p.to_vec()];
    };
    let (header, data) = (&p[..v.l4_offset], &p[v.l4_offset..v.ip_len()]);
    let step = (data.len() / parts.max(1)).next_multiple_of(8).max(8);
    let mut out = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let from = if overlap && start > 0 {
            start - 8
        } else {
            start
        };
        let end = (start + step).min(data.len());
        let mut f = header.to_vec();
        f.extend_from_slice(&data[from..end]);
        let more = u16::from(end < data.len()) << 13;
        let offset = u16::try_from(from / 8).unwrap_or(0);
        let total = u16::try_from(f.len()).unwrap_or(0);
        f[2..4].copy_from_slice(&total.to_be_bytes());
        f[6..8].copy_from_slice(&(more | offset).to_be_bytes());
        f[10..12].fill(0);
        let c = checksum::checksum(&f[..v.l4_offset]);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        out.push(f);
        start = end;
    }
    if reversed {
        out.reverse();
    }
    out
}

/// Checks a packet the engine sent into the network of MTU `mtu`: it parses as IP,
/// fills its length, carries valid checksums (IPv4 header; transport, unless a
/// fragment) and fits the MTU unless TCP (whose segments follow the MSS the guest
/// announced, up to 64 KiB towards an offload port).
pub(super) fn check_emitted(p: &[u8], mtu: usize) -> Result<IpView, String> {
    let v = IpView::parse(p).ok_or("unparsable")?;
    if v.ip_len() != p.len() {
        return Err(format!("IP length {} of {} bytes", v.ip_len(), p.len()));
    }
    if v.src.is_ipv4() && !checksum::verifies(&p[..v.l4_offset]) {
        return Err("bad IPv4 header checksum".into());
    }
    // IPv6 links have an MTU of 1280 at least (RFC 8200 5).
    let mtu = if v.src.is_ipv6() { mtu.max(1280) } else { mtu };
    if v.proto != ip::PROTO_TCP && p.len() > mtu {
        return Err(format!("{} bytes beyond the MTU {mtu}", p.len()));
    }
    if v.fragment {
        return Ok(v);
    }
    let l4 = v.l4(p);
    let valid = match v.proto {
        ip::PROTO_ICMP => checksum::verifies(l4),
        ip::PROTO_UDP if v.src.is_ipv4() && l4.get(6..8) == Some(&[0, 0]) => true,
        ip::PROTO_TCP | ip::PROTO_UDP | ip::PROTO_ICMPV6 => {
            ip::l4_checksum(v.src, v.dst, v.proto, l4) == 0
        }
        other => return Err(format!("protocol {other}")),
    };
    if valid {
        Ok(v)
    } else {
        Err(format!("bad checksum, protocol {}", v.proto))
    }
}

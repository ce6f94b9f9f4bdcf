//! IP packet views and builders for host-socket egress: just enough IPv4/IPv6 (RFC 791,
//! RFC 8200), UDP (RFC 768), TCP RST (RFC 9293) and ICMP/ICMPv6 (RFC 792, RFC 4443)
//! to parse what guests send and to build what goes back to them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::checksum::ones_complement_sum;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
/// Hop limit of the packets the engine builds.
const TTL: u8 = 64;

/// The parts of a guest's IP packet the engine dispatches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpView {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Transport protocol (IPv6: the first next-header; extension headers are not walked).
    pub proto: u8,
    /// Offset and length of the transport payload.
    pub l4_offset: usize,
    pub l4_len: usize,
    /// An IPv4 fragment (MF set or a non-zero offset).
    pub fragment: bool,
}

impl IpView {
    /// Checks lengths and parses the IP header; `None` for anything malformed.
    pub fn parse(packet: &[u8]) -> Option<Self> {
        match packet.first()? >> 4 {
            4 => {
                if packet.len() < IPV4_HEADER {
                    return None;
                }
                let ihl = usize::from(packet[0] & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
                if ihl < IPV4_HEADER || total < ihl || total > packet.len() {
                    return None;
                }
                let frag = u16::from_be_bytes([packet[6], packet[7]]);
                Some(Self {
                    src: IpAddr::V4(Ipv4Addr::new(
                        packet[12], packet[13], packet[14], packet[15],
                    )),
                    dst: IpAddr::V4(Ipv4Addr::new(
                        packet[16], packet[17], packet[18], packet[19],
                    )),
                    proto: packet[9],
                    l4_offset: ihl,
                    l4_len: total - ihl,
                    fragment: frag & 0x3fff != 0,
                })
            }
            6 => {
                if packet.len() < IPV6_HEADER {
                    return None;
                }
                let payload = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
                if IPV6_HEADER + payload > packet.len() {
                    return None;
                }
                let src: [u8; 16] = packet[8..24].try_into().ok()?;
                let dst: [u8; 16] = packet[24..40].try_into().ok()?;
                Some(Self {
                    src: IpAddr::V6(Ipv6Addr::from(src)),
                    dst: IpAddr::V6(Ipv6Addr::from(dst)),
                    proto: packet[6],
                    l4_offset: IPV6_HEADER,
                    l4_len: payload,
                    fragment: packet[6] == 44,
                })
            }
            _ => None,
        }
    }

    pub fn l4<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        &packet[self.l4_offset..self.l4_offset + self.l4_len]
    }

    /// The IP packet itself, without link padding.
    pub fn ip_len(&self) -> usize {
        self.l4_offset + self.l4_len
    }
}

/// The TCP header fields the engine looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpView {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    /// Segment length in sequence space (payload + SYN + FIN).
    pub seg_len: u32,
}

impl TcpView {
    pub fn parse(l4: &[u8]) -> Option<Self> {
        if l4.len() < 20 {
            return None;
        }
        let offset = usize::from(l4[12] >> 4) * 4;
        if offset < 20 || offset > l4.len() {
            return None;
        }
        let flags = l4[13];
        let syn = flags & 0x02 != 0;
        let fin = flags & 0x01 != 0;
        let payload = u32::try_from(l4.len() - offset).ok()?;
        Some(Self {
            src_port: u16::from_be_bytes([l4[0], l4[1]]),
            dst_port: u16::from_be_bytes([l4[2], l4[3]]),
            seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
            syn,
            ack: flags & 0x10 != 0,
            fin,
            rst: flags & 0x04 != 0,
            seg_len: payload + u32::from(syn) + u32::from(fin),
        })
    }
}

/// Decrements the TTL of the IPv4 packet `ip` (at least 12 bytes; the caller checked
/// the TTL is above 1) and updates the header checksum incrementally (RFC 1624), the
/// TTL and protocol forming one 16-bit word.
pub fn decrement_ttl_v4(ip: &mut [u8]) {
    let old = u16::from_be_bytes([ip[8], ip[9]]);
    ip[8] = ip[8].wrapping_sub(1);
    let new = u16::from_be_bytes([ip[8], ip[9]]);
    let ck = crate::checksum::update_word(u16::from_be_bytes([ip[10], ip[11]]), old, new);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
}

/// Source and destination ports of a UDP datagram and its payload range in `l4`.
pub fn udp_ports(l4: &[u8]) -> Option<(u16, u16, &[u8])> {
    if l4.len() < 8 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
    if len < 8 || len > l4.len() {
        return None;
    }
    Some((
        u16::from_be_bytes([l4[0], l4[1]]),
        u16::from_be_bytes([l4[2], l4[3]]),
        &l4[8..len],
    ))
}

/// One's-complement addition of two folded sums.
fn add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    let folded = (s & 0xffff) + (s >> 16);
    u16::try_from(folded).unwrap_or(0xffff)
}

/// The pseudo-header sum (RFC 768, RFC 8200 section 8.1).
fn pseudo_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u16 {
    let len32 = u32::try_from(len).unwrap_or(u32::MAX);
    let mut p = [0u8; 40];
    let n = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p[0..4].copy_from_slice(&s.octets());
            p[4..8].copy_from_slice(&d.octets());
            p[9] = proto;
            p[10..12].copy_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
            12
        }
        (s, d) => {
            p[0..16].copy_from_slice(&v6(s).octets());
            p[16..32].copy_from_slice(&v6(d).octets());
            p[32..36].copy_from_slice(&len32.to_be_bytes());
            p[39] = proto;
            40
        }
    };
    ones_complement_sum(&p[..n])
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// The transport checksum of `l4` (with its checksum field zeroed) between `src` and `dst`.
pub fn l4_checksum(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> u16 {
    !add(
        pseudo_sum(src, dst, proto, l4.len()),
        ones_complement_sum(l4),
    )
}

/// Appends an IP header for `payload_len` bytes of `proto` from `src` to `dst`
/// (same family) to `out`. IPv4: no options, DF clear, a zero identification.
pub fn push_ip_header(out: &mut Vec<u8>, src: IpAddr, dst: IpAddr, proto: u8, payload_len: usize) {
    push_ip_header_frag(out, src, dst, proto, payload_len, 0, 0);
}

fn push_ip_header_frag(
    out: &mut Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload_len: usize,
    id: u16,
    frag: u16,
) {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let start = out.len();
            let total = u16::try_from(IPV4_HEADER + payload_len).unwrap_or(u16::MAX);
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&frag.to_be_bytes());
            out.extend_from_slice(&[TTL, proto, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let sum = !ones_complement_sum(&out[start..start + IPV4_HEADER]);
            out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
        }
        (s, d) => {
            let len = u16::try_from(payload_len).unwrap_or(u16::MAX);
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&[proto, TTL]);
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
}

/// Builds a UDP datagram from `src` to `dst` carrying `payload` into `out` (cleared
/// first). Returns false if it does not fit in one packet of `mtu` bytes; IPv4 callers
/// then use [`udp_fragments`].
pub fn build_udp(
    out: &mut Vec<u8>,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    payload: &[u8],
    mtu: usize,
) -> bool {
    out.clear();
    let udp_len = 8 + payload.len();
    let hdr = if src.0.is_ipv4() {
        IPV4_HEADER
    } else {
        IPV6_HEADER
    };
    if hdr + udp_len > mtu || udp_len > usize::from(u16::MAX) {
        return false;
    }
    push_ip_header(out, src.0, dst.0, PROTO_UDP, udp_len);
    let l4 = out.len();
    push_udp(out, src, dst, payload);
    fill_udp_checksum(out, l4, src.0, dst.0);
    true
}

fn push_udp(out: &mut Vec<u8>, src: (IpAddr, u16), dst: (IpAddr, u16), payload: &[u8]) {
    let udp_len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&src.1.to_be_bytes());
    out.extend_from_slice(&dst.1.to_be_bytes());
    out.extend_from_slice(&udp_len.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

fn fill_udp_checksum(out: &mut [u8], l4: usize, src: IpAddr, dst: IpAddr) {
    let mut sum = l4_checksum(src, dst, PROTO_UDP, &out[l4..]);
    if sum == 0 {
        sum = 0xffff; // RFC 768: zero means "no checksum".
    }
    out[l4 + 6..l4 + 8].copy_from_slice(&sum.to_be_bytes());
}

/// Builds an IPv4 UDP datagram too large for `mtu` as RFC 791 fragments, handing each
/// one to `emit`. `id` is the identification shared by the fragments.
pub fn udp_fragments(
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
    mtu: usize,
    id: u16,
    scratch: &mut Vec<u8>,
    emit: impl FnMut(&[u8]) -> bool,
) -> bool {
    // The whole UDP datagram (header + payload) is the data being fragmented.
    scratch.clear();
    let (s, d) = ((IpAddr::V4(src.0), src.1), (IpAddr::V4(dst.0), dst.1));
    push_udp(scratch, s, d, payload);
    fill_udp_checksum(scratch, 0, s.0, d.0);
    ipv4_fragments(src.0, dst.0, PROTO_UDP, scratch, mtu, id, emit)
}

/// Cuts `data`, the payload of an IPv4 packet of protocol `proto` (its transport
/// header and checksum complete), into RFC 791 fragments of at most `mtu` bytes that
/// share the identification `id`, handing each to `emit`. False if `emit` refused one
/// or the MTU leaves no room for 8 bytes of data.
pub fn ipv4_fragments(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    data: &[u8],
    mtu: usize,
    id: u16,
    mut emit: impl FnMut(&[u8]) -> bool,
) -> bool {
    let chunk = (mtu.saturating_sub(IPV4_HEADER)) & !7;
    if chunk == 0 {
        return false;
    }
    let (s, d) = (IpAddr::V4(src), IpAddr::V4(dst));
    let mut packet = Vec::with_capacity(mtu);
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + chunk).min(data.len());
        let more = end < data.len();
        let frag = u16::try_from(offset / 8).unwrap_or(0) | if more { 0x2000 } else { 0 };
        packet.clear();
        push_ip_header_frag(&mut packet, s, d, proto, end - offset, id, frag);
        packet.extend_from_slice(&data[offset..end]);
        if !emit(&packet) {
            return false;
        }
        offset = end;
    }
    true
}

/// Builds the RST|ACK that refuses the SYN `syn` (RFC 9293 section 3.10.7.1: a
/// segment to a closed port gets `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`).
pub fn build_rst_for(out: &mut Vec<u8>, ip: &IpView, tcp: &TcpView) {
    out.clear();
    push_ip_header(out, ip.dst, ip.src, PROTO_TCP, 20);
    let l4 = out.len();
    out.extend_from_slice(&tcp.dst_port.to_be_bytes());
    out.extend_from_slice(&tcp.src_port.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&tcp.seq.wrapping_add(tcp.seg_len).to_be_bytes());
    out.extend_from_slice(&[0x50, 0x14, 0, 0, 0, 0, 0, 0]);
    let sum = l4_checksum(ip.dst, ip.src, PROTO_TCP, &out[l4..]);
    out[l4 + 16..l4 + 18].copy_from_slice(&sum.to_be_bytes());
}

/// Why a destination could not be reached, for an ICMP error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    Net,
    Host,
    Port,
}

/// Builds an ICMP (type 3) or ICMPv6 (type 1) destination unreachable from `from` to
/// the sender of `original`, quoting its IP header and the first 8 bytes of its
/// payload (RFC 792; RFC 4443 quotes as much as fits in 1280 bytes).
pub fn build_unreachable(
    out: &mut Vec<u8>,
    from: IpAddr,
    original: &[u8],
    ip: &IpView,
    why: Unreachable,
) {
    out.clear();
    let v6 = ip.src.is_ipv6();
    let quote_len = if v6 {
        original.len().min(1280 - IPV6_HEADER - 8)
    } else {
        original.len().min(ip.l4_offset + 8)
    };
    let (proto, ty, code) = match (v6, why) {
        (false, Unreachable::Net) => (PROTO_ICMP, 3, 0),
        (false, Unreachable::Host) => (PROTO_ICMP, 3, 1),
        (false, Unreachable::Port) => (PROTO_ICMP, 3, 3),
        (true, Unreachable::Net) => (PROTO_ICMPV6, 1, 0),
        (true, Unreachable::Host) => (PROTO_ICMPV6, 1, 3),
        (true, Unreachable::Port) => (PROTO_ICMPV6, 1, 4),
    };
    push_ip_header(out, from, ip.src, proto, 8 + quote_len);
    let l4 = out.len();
    out.extend_from_slice(&[ty, code, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&original[..quote_len]);
    fill_icmp_checksum(out, l4, from, ip.src);
}

/// Fills the checksum of the ICMP or ICMPv6 message at `out[l4..]` (ICMPv6 covers
/// the pseudo-header, ICMP does not).
pub fn fill_icmp_checksum(out: &mut [u8], l4: usize, src: IpAddr, dst: IpAddr) {
    out[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
    let sum = if src.is_ipv6() {
        l4_checksum(src, dst, PROTO_ICMPV6, &out[l4..])
    } else {
        !ones_complement_sum(&out[l4..])
    };
    out[l4 + 2..l4 + 4].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);

    fn syn_v4() -> Vec<u8> {
        let b = etherparse::PacketBuilder::ipv4(GUEST.octets(), GW.octets(), 64)
            .tcp(40000, 80, 1000, 64000)
            .syn();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }

    #[test]
    fn parses_a_syn() {
        let pkt = syn_v4();
        let ip = IpView::parse(&pkt).unwrap();
        assert_eq!(
            (ip.src, ip.dst, ip.proto),
            (GUEST.into(), GW.into(), PROTO_TCP)
        );
        let tcp = TcpView::parse(ip.l4(&pkt)).unwrap();
        assert!(tcp.syn && !tcp.ack);
        assert_eq!(
            (tcp.src_port, tcp.dst_port, tcp.seq, tcp.seg_len),
            (40000, 80, 1000, 1)
        );
        assert!(IpView::parse(&pkt[..19]).is_none());
    }

    #[test]
    fn rst_answers_the_syn_with_valid_checksums() {
        let pkt = syn_v4();
        let ip = IpView::parse(&pkt).unwrap();
        let tcp = TcpView::parse(ip.l4(&pkt)).unwrap();
        let mut out = Vec::new();
        build_rst_for(&mut out, &ip, &tcp);
        let s = SlicedPacket::from_ip(&out).unwrap();
        let Some(NetSlice::Ipv4(v4)) = &s.net else {
            panic!()
        };
        assert_eq!(v4.header().source_addr(), GW);
        assert_eq!(
            v4.header().header_checksum(),
            v4.header().to_header().calc_header_checksum()
        );
        let Some(TransportSlice::Tcp(t)) = s.transport else {
            panic!()
        };
        assert!(t.rst() && t.ack() && !t.syn());
        assert_eq!((t.sequence_number(), t.acknowledgment_number()), (0, 1001));
        let want = t
            .to_header()
            .calc_checksum_ipv4(&v4.header().to_header(), &[])
            .unwrap();
        assert_eq!(t.checksum(), want);
    }

    #[test]
    fn udp_datagram_checksums_match_etherparse_v4_and_v6() {
        let mut out = Vec::new();
        let payload = b"some payload!";
        assert!(build_udp(
            &mut out,
            (GW.into(), 53),
            (GUEST.into(), 5353),
            payload,
            1500
        ));
        let s = SlicedPacket::from_ip(&out).unwrap();
        let Some(NetSlice::Ipv4(v4)) = &s.net else {
            panic!()
        };
        let Some(TransportSlice::Udp(u)) = &s.transport else {
            panic!()
        };
        let want = u
            .to_header()
            .calc_checksum_ipv4(&v4.header().to_header(), payload)
            .unwrap();
        assert_eq!(u.checksum(), want);
        drop(s);

        let (a, b): (Ipv6Addr, Ipv6Addr) =
            ("fd00::2".parse().unwrap(), "fd00::100".parse().unwrap());
        assert!(build_udp(
            &mut out,
            (a.into(), 53),
            (b.into(), 5353),
            payload,
            1500
        ));
        let s = SlicedPacket::from_ip(&out).unwrap();
        let Some(NetSlice::Ipv6(v6)) = &s.net else {
            panic!()
        };
        let Some(TransportSlice::Udp(u)) = &s.transport else {
            panic!()
        };
        let want = u
            .to_header()
            .calc_checksum_ipv6(&v6.header().to_header(), payload)
            .unwrap();
        assert_eq!(u.checksum(), want);
        drop(s);
        assert!(!build_udp(
            &mut out,
            (a.into(), 1),
            (b.into(), 2),
            &[0; 1500],
            1500
        ));
    }

    #[test]
    fn fragments_reassemble_to_the_datagram() {
        let payload: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
        let mut frags = Vec::new();
        let mut scratch = Vec::new();
        assert!(udp_fragments(
            (GW, 7),
            (GUEST, 9),
            &payload,
            1500,
            77,
            &mut scratch,
            |f| {
                frags.push(f.to_vec());
                true
            }
        ));
        assert_eq!(frags.len(), 3);
        let mut pool = etherparse::defrag::IpDefragPool::<(), ()>::new();
        let mut done = None;
        for f in &frags {
            assert!(f.len() <= 1500);
            let s = SlicedPacket::from_ip(f).unwrap();
            let Some(NetSlice::Ipv4(v4)) = &s.net else {
                panic!()
            };
            assert_eq!(
                v4.header().header_checksum(),
                v4.header().to_header().calc_header_checksum()
            );
            if let Some(r) = pool.process_sliced_packet(&s, (), ()).unwrap() {
                done = Some(r);
            }
        }
        let r = done.expect("reassembled");
        assert_eq!(&r.payload[8..], &payload[..]);
    }

    #[test]
    fn unreachable_quotes_header_and_8_bytes() {
        let pkt = syn_v4();
        let ip = IpView::parse(&pkt).unwrap();
        let mut out = Vec::new();
        build_unreachable(&mut out, GW.into(), &pkt, &ip, Unreachable::Host);
        let s = SlicedPacket::from_ip(&out).unwrap();
        let Some(TransportSlice::Icmpv4(icmp)) = &s.transport else {
            panic!()
        };
        assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 1));
        assert_eq!(icmp.payload(), &pkt[..28]);
        assert_eq!(ones_complement_sum(&out[20..]), 0xffff);
    }
}

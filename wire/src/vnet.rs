//! The `virtio_net_hdr` that a TAP opened with `IFF_VNET_HDR` puts before every frame
//! (`struct virtio_net_hdr_v1` of `linux/virtio_net.h`: 12 bytes, little-endian, as
//! `TUNSETVNETHDRSZ 12` and `TUNSETVNETLE`-less x86/arm64 kernels use), and the frame
//! work that checksum and segmentation offload need:
//!
//! - from the container: [`complete_checksum`] finishes a partial checksum
//!   (`NEEDS_CSUM`: the kernel left the pseudo-header sum in the field and the sum
//!   from `csum_start` to the end to us);
//! - [`raise_syn_mss`] raises the MSS option of a TCP SYN, so that the TCP terminator
//!   behind the gateway sends segments of up to 64 KiB;
//! - towards the container: [`tx_header`] describes such a segment as one TSO packet
//!   (`gso_type` TCPV4/TCPV6, `gso_size` the MSS on the wire);
//! - towards a port without TSO: [`segment_tcp`] cuts a container's TSO frame into
//!   wire-sized segments, as the kernel's software GSO would have.
//!
//! Pure functions over bytes the caller owns; nothing allocates.

use crate::checksum;

/// Size of the header (`virtio_net_hdr_v1`, with `num_buffers`).
pub const HDR_LEN: usize = 12;

/// `flags`: the checksum from `csum_start` on is still to be computed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksums are known to be correct.
pub const F_DATA_VALID: u8 = 2;

/// `gso_type` values.
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// Or-ed into `gso_type`: the TCP segments carry ECN CWR.
pub const GSO_ECN: u8 = 0x80;

use crate::ETHERNET_HEADER_LEN as ETH_LEN;
use crate::ip::PROTO_TCP;
/// The Ethernet types as numbers, to match on.
const ETHERTYPE_IPV4: u16 = crate::EtherType::IPV4.0;
const ETHERTYPE_IPV6: u16 = crate::EtherType::IPV6.0;

/// A `virtio_net_hdr_v1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    /// Length of the headers to copy into every segment (a hint).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// With `F_NEEDS_CSUM`: where the checksummed range starts (from the frame start),
    /// and where in it the checksum field is.
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

impl VnetHdr {
    /// Reads a header from the first [`HDR_LEN`] bytes; `None` if `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; HDR_LEN] = b.get(..HDR_LEN)?.try_into().ok()?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
            num_buffers: le(10),
        })
    }

    /// The header's wire bytes.
    pub fn to_bytes(self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        b
    }

    /// Is this a segmentation-offload (GSO) packet, longer than one segment on the wire?
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }
}

/// Completes the partial checksum of `frame` as the kernel asked (`F_NEEDS_CSUM`): the
/// one's-complement sum of `frame[csum_start..]` (the field holds the pseudo-header
/// sum) goes, inverted, into the field at `csum_start + csum_offset`. False (and
/// `frame` untouched) if the offsets are out of range.
pub fn complete_checksum(frame: &mut [u8], csum_start: usize, csum_offset: usize) -> bool {
    let field = csum_start.saturating_add(csum_offset);
    if field.saturating_add(2) > frame.len() {
        return false;
    }
    let sum = checksum::add_wide(0, &frame[csum_start..]);
    // 0 and 0xffff both verify; 0 would mean "no checksum" for UDP (RFC 768).
    let value = match !checksum::fold(sum) {
        0 => 0xffff,
        c => c,
    };
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
    true
}

/// The ports of a TCP or UDP header (its first four bytes) as a one's-complement sum.
fn port_words(l4: &[u8]) -> u64 {
    checksum::add(0, &l4[..4])
}

/// Makes a partial TCP/UDP checksum (`F_NEEDS_CSUM`: the field at `offset` in the
/// transport header `l4` holds the pseudo-header sum) safe for code that updates
/// complete checksums incrementally (RFC 1624), such as NAT: the field becomes the
/// complete checksum of a packet whose transport bytes other than the ports are zero.
/// Any incremental update for changed addresses (pseudo header) and ports is then
/// exact, and [`port_checksum_to_partial`] turns the field back into the pseudo-header
/// sum that the receiving kernel completes over the real payload. False (and nothing
/// changed) if `l4` is too short or the field overlaps the ports.
pub fn partial_to_port_checksum(l4: &mut [u8], offset: usize) -> bool {
    if offset < 4 || offset.saturating_add(2) > l4.len() {
        return false;
    }
    let pseudo = u16::from_be_bytes([l4[offset], l4[offset + 1]]);
    // 0 would read as "no checksum" in a UDP header (RFC 768); 0xffff is the same sum.
    let value = match !checksum::fold(u64::from(pseudo) + port_words(l4)) {
        0 => 0xffff,
        c => c,
    };
    l4[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
    true
}

/// The inverse of [`partial_to_port_checksum`], after the ports and addresses were
/// rewritten: the field holds the new pseudo-header sum again.
pub fn port_checksum_to_partial(l4: &mut [u8], offset: usize) -> bool {
    if offset < 4 || offset.saturating_add(2) > l4.len() {
        return false;
    }
    let complete = u16::from_be_bytes([l4[offset], l4[offset + 1]]);
    // The pseudo-header sum is the checksummed sum minus the ports (one's complement:
    // plus their complement).
    let ports = !checksum::fold(port_words(l4));
    let pseudo = checksum::fold(u64::from(!complete) + u64::from(ports));
    l4[offset..offset + 2].copy_from_slice(&pseudo.to_be_bytes());
    true
}

/// Where the TCP header of an untagged Ethernet frame is: (IP version, IP header
/// length, IP total length). `None` for anything but TCP over IPv4 (not a fragment)
/// or IPv6 (no extension headers) with a complete TCP header.
fn tcp_in(frame: &[u8]) -> Option<(u8, usize, usize)> {
    let ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    let ip = frame.get(ETH_LEN..)?;
    let (version, ihl, total) = match ethertype {
        ETHERTYPE_IPV4 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != PROTO_TCP {
                return None;
            }
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            if frag & 0x3fff != 0 {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            (4, ihl, usize::from(u16::from_be_bytes([ip[2], ip[3]])))
        }
        ETHERTYPE_IPV6 => {
            if ip.len() < 40 || ip[0] >> 4 != 6 || ip[6] != PROTO_TCP {
                return None;
            }
            (6, 40, 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])))
        }
        _ => return None,
    };
    if ihl < 20 || total > ip.len() || total < ihl + 20 {
        return None;
    }
    let doff = usize::from(ip[ihl + 12] >> 4) * 4;
    if doff < 20 || ihl + doff > total {
        return None;
    }
    Some((version, ihl, total))
}

/// If `frame` is a TCP SYN whose MSS option is exactly `expected` (what a host on this
/// link announces), sets it to `raised` and updates the TCP checksum (which must be
/// complete). Returns whether it did. Any other SYN (a smaller MSS for a reason of its
/// own, no MSS option) is left alone.
pub fn raise_syn_mss(frame: &mut [u8], expected_v4: u16, expected_v6: u16, raised: u16) -> bool {
    raise_mss(frame, expected_v4, expected_v6, raised, true)
}

/// [`raise_syn_mss`] for a frame whose checksum is still partial (`F_NEEDS_CSUM`): the
/// field is left alone, since the checksum is computed over the new value later.
pub fn raise_syn_mss_partial(
    frame: &mut [u8],
    expected_v4: u16,
    expected_v6: u16,
    raised: u16,
) -> bool {
    raise_mss(frame, expected_v4, expected_v6, raised, false)
}

fn raise_mss(
    frame: &mut [u8],
    expected_v4: u16,
    expected_v6: u16,
    raised: u16,
    update_checksum: bool,
) -> bool {
    let Some((version, ihl, _)) = tcp_in(frame) else {
        return false;
    };
    let expected = if version == 4 {
        expected_v4
    } else {
        expected_v6
    };
    let tcp = ETH_LEN + ihl;
    let flags = frame[tcp + 13];
    if flags & 0x02 == 0 {
        return false;
    }
    let doff = usize::from(frame[tcp + 12] >> 4) * 4;
    let mut i = tcp + 20;
    let end = tcp + doff;
    while i < end {
        match frame[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let Some(&len) = frame.get(i + 1) else { break };
                let len = usize::from(len);
                if len < 2 || i + len > end {
                    break;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([frame[i + 2], frame[i + 3]]);
                    if old != expected || old >= raised {
                        return false;
                    }
                    frame[i + 2..i + 4].copy_from_slice(&raised.to_be_bytes());
                    if !update_checksum {
                        return true;
                    }
                    // At an odd offset (after a NOP) the field straddles two checksum
                    // words: its bytes count swapped (RFC 1071 byte-order independence).
                    let (o, n) = if (i + 2 - tcp).is_multiple_of(2) {
                        (old, raised)
                    } else {
                        (old.swap_bytes(), raised.swap_bytes())
                    };
                    let csum = u16::from_be_bytes([frame[tcp + 16], frame[tcp + 17]]);
                    let csum = checksum::update_word(csum, o, n);
                    frame[tcp + 16..tcp + 18].copy_from_slice(&csum.to_be_bytes());
                    return true;
                }
                i += len;
            }
        }
    }
    false
}

/// The header for a frame going to a container whose TAP does TSO: a TCP segment whose
/// IP packet is longer than `mtu` goes as one GSO packet, cut into segments of
/// `mtu` minus the IP and TCP headers (checksum complete and marked valid); anything
/// else gets the empty header.
pub fn tx_header(frame: &[u8], mtu: usize) -> VnetHdr {
    let Some((version, ihl, total)) = tcp_in(frame) else {
        return VnetHdr::default();
    };
    if total <= mtu {
        return VnetHdr::default();
    }
    let doff = usize::from(frame[ETH_LEN + ihl + 12] >> 4) * 4;
    let headers = ihl + doff;
    let Some(seg) = mtu.checked_sub(headers).filter(|&s| s >= 8) else {
        return VnetHdr::default();
    };
    VnetHdr {
        flags: F_DATA_VALID,
        gso_type: if version == 4 { GSO_TCPV4 } else { GSO_TCPV6 },
        hdr_len: u16::try_from(ETH_LEN + headers).unwrap_or(u16::MAX),
        gso_size: u16::try_from(seg).unwrap_or(u16::MAX),
        csum_start: 0,
        csum_offset: 0,
        num_buffers: 0,
    }
}

/// Longest Ethernet + IP + TCP header of a segment from [`segment_tcp`]: IPv4 with 40
/// bytes of options (IHL 15) and TCP with 40 bytes of options (data offset 15).
pub const MAX_SEGMENT_HEADERS: usize = ETH_LEN + 60 + 60;

/// TCP flag bits in header byte 13 (RFC 9293 3.1, RFC 3168 6.1 for CWR).
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Software TCP segmentation (GSO) of a TSO super-frame, for a port that cannot take
/// one (a TAP without `IFF_VNET_HDR`, an `AF_PACKET` socket without `PACKET_VNET_HDR`).
///
/// `frame` is an untagged Ethernet frame carrying TCP over IPv4 (any IHL; not a
/// fragment) or IPv6 (no extension headers), whose TCP payload is cut into segments of
/// `gso_size` bytes, the last one possibly shorter: the `gso_size` of the frame's
/// [`VnetHdr`]. For each segment, in order, `emit(headers, payload)` gets the
/// segment's Ethernet + IP + TCP headers (at most [`MAX_SEGMENT_HEADERS`] bytes, built
/// on the stack) and its payload, a sub-slice of `frame`: one `writev` of the two
/// puts the segment on the wire. Only the IP packet counts: link padding after the
/// IPv4 total length or IPv6 payload length is left out.
///
/// Each segment is what Linux's software GSO makes of the frame (`tcp_gso_segment` in
/// `net/ipv4/tcp_offload.c`, `inet_gso_segment`, `ipv6_gso_segment`):
/// - the Ethernet header, IP header (IPv4 options included) and TCP header (options
///   included, the urgent pointer too) are copied;
/// - the sequence number advances by the payload bytes before the segment;
/// - FIN and PSH stay on the last segment only, CWR on the first only (RFC 3168 6.1.2:
///   one CWR per window reduction); ACK, URG, ECE, RST, SYN and the AE bit stay on
///   every segment, as Linux leaves them;
/// - IPv4: total length per segment, the identification incremented by one per
///   segment (wrapping; the first keeps the frame's), the header checksum recomputed;
///   IPv6: payload length per segment;
/// - the TCP checksum is computed in full (pseudo-header, header, payload) for each
///   segment, so whatever the frame's field held (the pseudo-header sum of a
///   `NEEDS_CSUM` frame, or a complete checksum) does not matter.
///
/// A payload that fits one segment (an empty one too) is emitted as one segment with a
/// complete checksum, where Linux would pass the frame on unchanged. Returns false,
/// having emitted nothing, for anything else: not IPv4/IPv6 TCP, an IPv4 fragment,
/// IPv6 extension headers, an IP length beyond the frame, headers that do not fit, or a
/// `gso_size` of 0. Classic ECN only: with AccECN (Linux's `SKB_GSO_TCP_ACCECN`) the
/// CWR bit is part of a counter and would have to stay on every segment.
pub fn segment_tcp(frame: &[u8], gso_size: usize, mut emit: impl FnMut(&[u8], &[u8])) -> bool {
    let Some((version, ihl, total)) = tcp_in(frame) else {
        return false;
    };
    if gso_size == 0 {
        return false;
    }
    let ip = ETH_LEN;
    let tcp = ip + ihl;
    let header_len = tcp + usize::from(frame[tcp + 12] >> 4) * 4;
    let payload = &frame[header_len..ip + total];

    let mut buffer = [0u8; MAX_SEGMENT_HEADERS];
    let headers = &mut buffer[..header_len];
    headers.copy_from_slice(&frame[..header_len]);

    // The pseudo-header without its length: the same for every segment. A segment's
    // TCP length is below 2^16, so adding it as one word is right for IPv4 (RFC 9293
    // 3.1) and IPv6 (RFC 8200 8.1, a 32-bit length) alike.
    let addresses = if version == 4 {
        &frame[ip + 12..ip + 20]
    } else {
        &frame[ip + 8..ip + 40]
    };
    let pseudo = checksum::add(0, addresses) + u64::from(PROTO_TCP);

    let first_seq = u32::from_be_bytes([
        frame[tcp + 4],
        frame[tcp + 5],
        frame[tcp + 6],
        frame[tcp + 7],
    ]);
    let first_id = u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]);
    let flags = frame[tcp + 13];

    let mut start: usize = 0;
    let mut index: u16 = 0;
    loop {
        let end = payload.len().min(start.saturating_add(gso_size));
        let first = start == 0;
        let last = end == payload.len();
        let chunk = &payload[start..end];
        // Lengths fit 16 bits: every one is within the frame's IP length.
        let tcp_len = header_len - tcp + chunk.len();
        let tcp_len16 = u16::try_from(tcp_len).unwrap_or(u16::MAX);

        if version == 4 {
            let ip_total = u16::try_from(ihl + tcp_len).unwrap_or(u16::MAX);
            headers[ip + 2..ip + 4].copy_from_slice(&ip_total.to_be_bytes());
            headers[ip + 4..ip + 6].copy_from_slice(&first_id.wrapping_add(index).to_be_bytes());
            headers[ip + 10..ip + 12].fill(0);
            let sum = checksum::checksum(&headers[ip..tcp]);
            headers[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
        } else {
            headers[ip + 4..ip + 6].copy_from_slice(&tcp_len16.to_be_bytes());
        }

        // `start` is below 2^16 too; sequence numbers wrap (RFC 9293 3.4).
        let seq = first_seq.wrapping_add(u32::try_from(start).unwrap_or(0));
        headers[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
        let mut segment_flags = flags;
        if !first {
            segment_flags &= !TCP_CWR;
        }
        if !last {
            segment_flags &= !(TCP_FIN | TCP_PSH);
        }
        headers[tcp + 13] = segment_flags;
        headers[tcp + 16..tcp + 18].fill(0);
        let sum = checksum::add(pseudo + u64::from(tcp_len16), &headers[tcp..]);
        // The TCP header is a multiple of 4 bytes long, so the payload's words line up.
        let sum = checksum::add_wide(sum, chunk);
        headers[tcp + 16..tcp + 18].copy_from_slice(&(!checksum::fold(sum)).to_be_bytes());

        emit(headers, chunk);
        if last {
            return true;
        }
        start = end;
        index = index.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// An Ethernet frame with a TCP segment (options `opts`, `payload` bytes) and a
    /// correct checksum.
    fn tcp_frame(v6: bool, flags: u8, opts: &[u8], payload: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..payload)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        tcp_frame_carrying(v6, flags, opts, &payload)
    }

    /// [`tcp_frame`] with the given payload bytes.
    fn tcp_frame_carrying(v6: bool, flags: u8, opts: &[u8], payload: &[u8]) -> Vec<u8> {
        let doff = 20 + opts.len();
        let l4_len = doff + payload.len();
        let mut f = vec![0u8; 14];
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&u16::try_from(l4_len).unwrap().to_be_bytes());
            ip[6] = 6;
            ip[7] = 64;
            let (s, d) = (
                Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100),
                Ipv6Addr::LOCALHOST,
            );
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            f.extend_from_slice(&ip);
            (s.into(), d.into())
        } else {
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&u16::try_from(20 + l4_len).unwrap().to_be_bytes());
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = 6;
            let (s, d) = (Ipv4Addr::new(10, 0, 2, 100), Ipv4Addr::new(10, 0, 2, 2));
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum::checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
            (s.into(), d.into())
        };
        let mut tcp = vec![0u8; doff];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[12] = u8::try_from(doff / 4).unwrap() << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
        tcp[20..].copy_from_slice(opts);
        tcp.extend_from_slice(payload);
        let c = ip::l4_checksum(src, dst, 6, &tcp);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&tcp);
        f
    }

    fn tcp_valid(frame: &[u8]) -> bool {
        let view = ip::IpView::parse(&frame[14..]).unwrap();
        ip::l4_checksum(view.src, view.dst, 6, view.l4(&frame[14..])) == 0
    }

    #[test]
    fn header_round_trips_little_endian() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6 | GSO_ECN,
            hdr_len: 0x0102,
            gso_size: 1440,
            csum_start: 54,
            csum_offset: 16,
            num_buffers: 1,
        };
        let b = h.to_bytes();
        assert_eq!(&b[..6], &[1, 0x84, 2, 1, 0xa0, 5]);
        assert_eq!(VnetHdr::parse(&b), Some(h));
        assert!(h.is_gso());
        assert!(!VnetHdr::default().is_gso());
        assert_eq!(VnetHdr::parse(&b[..11]), None);
    }

    #[test]
    fn completes_a_partial_tcp_checksum() {
        for v6 in [false, true] {
            for payload in [0, 1, 1448, 60_001] {
                let mut f = tcp_frame(v6, 0x18, &[], payload);
                let good = f.clone();
                // What the kernel hands over: the pseudo-header sum, not inverted.
                let view = ip::IpView::parse(&f[14..]).unwrap();
                let l4_len = view.l4_len;
                let pseudo = match (view.src, view.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_v4(s, d, 6, l4_len),
                    (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_v6(s, d, 6, l4_len),
                    _ => unreachable!(),
                };
                let start = 14 + view.l4_offset;
                f[start + 16..start + 18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
                assert!(complete_checksum(&mut f, start, 16));
                assert!(tcp_valid(&f), "v6={v6} payload={payload}");
                assert_eq!(f, good);
            }
        }
        let mut short = [0u8; 20];
        assert!(!complete_checksum(&mut short, 10, 9));
        assert!(!complete_checksum(&mut short, usize::MAX, 16));
        assert_eq!(short, [0u8; 20]);
    }

    #[test]
    fn raises_the_standard_mss_of_a_syn_only() {
        // MSS first (even offset), and after a NOP (odd offset).
        for (v6, opts) in [
            (false, vec![2, 4, 0x05, 0xb4, 1, 1, 4, 2]),
            (false, vec![1, 2, 4, 0x05, 0xb4, 1, 1, 0]),
            (true, vec![1, 2, 4, 0x05, 0xa0, 0, 0, 0]),
        ] {
            let mut f = tcp_frame(v6, 0x02, &opts, 0);
            assert!(raise_syn_mss(&mut f, 1460, 1440, 65000), "{opts:?}");
            assert!(tcp_valid(&f));
            let at = f.windows(2).position(|w| w == [2, 4]).unwrap();
            assert_eq!(&f[at + 2..at + 4], &65000u16.to_be_bytes());
            // Once raised, it no longer matches.
            assert!(!raise_syn_mss(&mut f, 1460, 1440, 65000));
        }
        // Not a SYN; a smaller MSS; no MSS option.
        let mut ack = tcp_frame(false, 0x10, &[2, 4, 0x05, 0xb4], 0);
        assert!(!raise_syn_mss(&mut ack, 1460, 1440, 65000));
        let mut small = tcp_frame(false, 0x02, &[2, 4, 0x05, 0x00], 0);
        assert!(!raise_syn_mss(&mut small, 1460, 1440, 65000));
        // A partial checksum is completed after the rewrite.
        let mut partial = tcp_frame(false, 0x02, &[1, 2, 4, 0x05, 0xb4, 1, 1, 0], 0);
        let view = ip::IpView::parse(&partial[14..]).unwrap();
        let (IpAddr::V4(s), IpAddr::V4(d)) = (view.src, view.dst) else {
            unreachable!()
        };
        let pseudo = checksum::fold(checksum::pseudo_v4(s, d, 6, view.l4_len));
        partial[34 + 16..34 + 18].copy_from_slice(&pseudo.to_be_bytes());
        assert!(raise_syn_mss_partial(&mut partial, 1460, 1440, 65000));
        assert!(complete_checksum(&mut partial, 34, 16));
        assert!(tcp_valid(&partial));
        let mut none = tcp_frame(false, 0x02, &[1, 1, 1, 1], 0);
        assert!(!raise_syn_mss(&mut none, 1460, 1440, 65000));
        assert!(!raise_syn_mss(&mut [0u8; 30], 1460, 1440, 65000));
    }

    #[test]
    fn tx_header_marks_long_tcp_segments_only() {
        let big = tcp_frame(false, 0x18, &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], 30_000);
        let h = tx_header(&big, 1500);
        assert_eq!(h.gso_type, GSO_TCPV4);
        assert_eq!(h.gso_size, 1500 - 20 - 32);
        assert_eq!(h.hdr_len, 14 + 20 + 32);
        assert_eq!(h.flags, F_DATA_VALID);
        let big6 = tcp_frame(true, 0x18, &[], 30_000);
        let h = tx_header(&big6, 1500);
        assert_eq!((h.gso_type, h.gso_size), (GSO_TCPV6, 1440));
        let small = tcp_frame(false, 0x18, &[], 1460);
        assert_eq!(tx_header(&small, 1500), VnetHdr::default());
        assert_eq!(tx_header(&[0u8; 64], 1500), VnetHdr::default());
    }

    /// `frame` with `options` (a multiple of 4 bytes) added to its IPv4 header, the
    /// lengths and header checksum fixed (the TCP checksum does not cover them).
    fn with_ipv4_options(frame: &[u8], options: &[u8]) -> Vec<u8> {
        let mut f = frame[..34].to_vec();
        f.extend_from_slice(options);
        f.extend_from_slice(&frame[34..]);
        f[14] = 0x40 | u8::try_from((20 + options.len()) / 4).unwrap();
        let total = u16::from_be_bytes([f[16], f[17]]) + u16::try_from(options.len()).unwrap();
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[24..26].fill(0);
        let c = checksum::checksum(&f[14..34 + options.len()]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// Runs [`segment_tcp`] and returns the segments as whole frames, checking what
    /// every segment must be: headers within [`MAX_SEGMENT_HEADERS`], a payload of at
    /// most `gso_size` bytes, exact IP lengths, and valid IPv4 header and TCP checksums
    /// (by our checksum functions and by etherparse's).
    fn segments(frame: &[u8], gso_size: usize) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let done = segment_tcp(frame, gso_size, |headers, payload| {
            assert!(headers.len() <= MAX_SEGMENT_HEADERS);
            assert!(payload.len() <= gso_size);
            let mut seg = headers.to_vec();
            seg.extend_from_slice(payload);
            out.push(seg);
        });
        if !done {
            assert!(out.is_empty(), "refused after emitting");
            return None;
        }
        for seg in &out {
            check_segment(seg);
        }
        Some(out)
    }

    fn check_segment(seg: &[u8]) {
        let view = ip::IpView::parse(&seg[14..]).expect("a segment parses");
        assert_eq!(view.ip_len(), seg.len() - 14, "IP length");
        assert!(tcp_valid(seg), "TCP checksum");
        let sliced = etherparse::SlicedPacket::from_ethernet(seg).expect("etherparse");
        let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!("not TCP: {sliced:?}");
        };
        let expected = match sliced.net {
            Some(etherparse::NetSlice::Ipv4(v4)) => {
                let h = v4.header();
                let ihl = usize::from(h.ihl()) * 4;
                assert!(
                    checksum::verifies(&seg[14..14 + ihl]),
                    "IPv4 header checksum"
                );
                tcp.calc_checksum_ipv4(h.source(), h.destination())
            }
            Some(etherparse::NetSlice::Ipv6(v6)) => {
                let h = v6.header();
                tcp.calc_checksum_ipv6(h.source(), h.destination())
            }
            other => panic!("not IP: {other:?}"),
        };
        assert_eq!(
            expected.unwrap(),
            tcp.checksum(),
            "etherparse's TCP checksum"
        );
    }

    /// (sequence number, flags, payload) of a segment from a frame without IP options.
    fn tcp_of(seg: &[u8]) -> (u32, u8, &[u8]) {
        let view = ip::IpView::parse(&seg[14..]).unwrap();
        let l4 = view.l4(&seg[14..]);
        let doff = usize::from(l4[12] >> 4) * 4;
        let seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
        (seq, l4[13], &l4[doff..])
    }

    /// The TCP payload of a frame.
    fn payload_of(frame: &[u8]) -> &[u8] {
        tcp_of(frame).2
    }

    const FIN: u8 = 0x01;
    const PSH: u8 = 0x08;
    const ACK: u8 = 0x10;
    const URG: u8 = 0x20;
    const ECE: u8 = 0x40;
    const CWR: u8 = 0x80;

    #[test]
    fn segments_exact_and_ragged_payloads() {
        for v6 in [false, true] {
            for (payload, gso, count) in [(4344, 1448, 3), (4345, 1448, 4), (60_000, 1448, 42)] {
                let frame = tcp_frame(v6, ACK | PSH, &[], payload);
                let segs = segments(&frame, gso).unwrap();
                assert_eq!(segs.len(), count, "v6={v6} payload={payload}");
                let mut joined = Vec::new();
                let mut next_seq = tcp_of(&frame).0;
                for (i, seg) in segs.iter().enumerate() {
                    let (seq, _, data) = tcp_of(seg);
                    let expected_len = if i + 1 < count {
                        gso
                    } else {
                        payload - gso * (count - 1)
                    };
                    assert_eq!(data.len(), expected_len);
                    assert_eq!(seq, next_seq);
                    next_seq = seq.wrapping_add(u32::try_from(data.len()).unwrap());
                    joined.extend_from_slice(data);
                    // Everything but lengths, ids, sequence numbers, flags and
                    // checksums is the frame's.
                    assert_eq!(seg[..14], frame[..14]);
                    let ip_hdr = if v6 { 40 } else { 20 };
                    assert_eq!(
                        seg[14 + ip_hdr..14 + ip_hdr + 4],
                        frame[14 + ip_hdr..14 + ip_hdr + 4]
                    );
                }
                assert_eq!(joined, payload_of(&frame));
            }
        }
    }

    #[test]
    fn fin_and_psh_end_the_burst_cwr_starts_it_the_rest_stay() {
        let all = FIN | PSH | ACK | URG | ECE | CWR;
        for v6 in [false, true] {
            let frame = tcp_frame(v6, all, &[], 3000);
            let segs = segments(&frame, 1000).unwrap();
            let flags: Vec<u8> = segs.iter().map(|s| tcp_of(s).1).collect();
            assert_eq!(
                flags,
                [
                    ACK | URG | ECE | CWR,
                    ACK | URG | ECE,
                    ACK | URG | ECE | FIN | PSH
                ]
            );
            // One segment keeps them all.
            let one = segments(&frame, 3000).unwrap();
            assert_eq!(tcp_of(&one[0]).1, all);
        }
    }

    #[test]
    fn ipv4_ids_count_up_and_wrap() {
        let mut frame = tcp_frame(false, ACK, &[], 40);
        frame[18..20].copy_from_slice(&0xfffeu16.to_be_bytes());
        let segs = segments(&frame, 10).unwrap();
        let ids: Vec<u16> = segs
            .iter()
            .map(|s| u16::from_be_bytes([s[18], s[19]]))
            .collect();
        assert_eq!(ids, [0xfffe, 0xffff, 0, 1]);
        // DF and TTL are copied.
        assert!(segs.iter().all(|s| s[20] == 0x40 && s[22] == 64));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut frame = tcp_frame(true, ACK, &[], 3000);
        frame[54 + 4..54 + 8].copy_from_slice(&0xffff_fc00u32.to_be_bytes());
        let seqs: Vec<u32> = segments(&frame, 1000)
            .unwrap()
            .iter()
            .map(|s| tcp_of(s).0)
            .collect();
        assert_eq!(seqs, [0xffff_fc00, 0xffff_ffe8, 1000 - 24]);
    }

    #[test]
    fn ip_and_tcp_options_are_copied() {
        // Timestamps (RFC 7323) behind two NOPs; an IPv4 router-alert-sized option.
        let tcp_opts = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        let ip_opts = [0x94, 4, 0, 0, 1, 1, 1, 0];
        let frame = with_ipv4_options(&tcp_frame(false, ACK, &tcp_opts, 2500), &ip_opts);
        let segs = segments(&frame, 1000).unwrap();
        assert_eq!(segs.len(), 3);
        let headers = 14 + 28 + 32;
        let mut joined = Vec::new();
        for seg in &segs {
            assert_eq!(seg[34..42], ip_opts);
            assert_eq!(seg[42 + 20..headers], tcp_opts);
            joined.extend_from_slice(&seg[headers..]);
        }
        assert_eq!(segs[0].len(), headers + 1000);
        assert_eq!(joined, frame[headers..]);
        let v6 = tcp_frame(true, ACK, &tcp_opts, 2500);
        for seg in segments(&v6, 1000).unwrap() {
            assert_eq!(seg[54 + 20..54 + 32], tcp_opts);
        }
    }

    #[test]
    fn the_old_checksum_field_does_not_matter() {
        for v6 in [false, true] {
            let frame = tcp_frame(v6, ACK | PSH, &[], 5000);
            let tcp = if v6 { 54 } else { 34 };
            let reference = segments(&frame, 1448).unwrap();
            // A partial checksum (the pseudo-header sum, as with NEEDS_CSUM) and junk.
            let view = ip::IpView::parse(&frame[14..]).unwrap();
            let pseudo = match (view.src, view.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_v4(s, d, 6, view.l4_len),
                (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_v6(s, d, 6, view.l4_len),
                _ => unreachable!(),
            };
            for field in [checksum::fold(pseudo), 0x1234] {
                let mut f = frame.clone();
                f[tcp + 16..tcp + 18].copy_from_slice(&field.to_be_bytes());
                assert_eq!(segments(&f, 1448).unwrap(), reference);
            }
        }
    }

    #[test]
    fn a_short_payload_is_one_complete_segment() {
        for v6 in [false, true] {
            for payload in [0, 1, 1448] {
                let mut frame = tcp_frame(v6, ACK | FIN, &[], payload);
                let good = frame.clone();
                let tcp = if v6 { 54 } else { 34 };
                frame[tcp + 16..tcp + 18].fill(0);
                let segs = segments(&frame, 1448).unwrap();
                assert_eq!(segs, [good]);
            }
        }
    }

    #[test]
    fn link_padding_is_left_out() {
        for v6 in [false, true] {
            let frame = tcp_frame(v6, ACK, &[], 100);
            let mut padded = frame.clone();
            padded.extend_from_slice(&[0xee; 30]);
            assert_eq!(
                segments(&padded, 40).unwrap(),
                segments(&frame, 40).unwrap()
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_whole_tcp_frame() {
        let v4 = tcp_frame(false, ACK, &[], 3000);
        let v6 = tcp_frame(true, ACK, &[], 3000);
        let refused = |f: &[u8], gso: usize| segments(f, gso).is_none();
        assert!(refused(&v4, 0));
        assert!(
            refused(&v4[..v4.len() - 1], 1000),
            "IP length beyond the frame"
        );
        assert!(
            refused(&v6[..v6.len() - 1], 1000),
            "IP length beyond the frame"
        );
        assert!(refused(&v4[..40], 1000), "truncated TCP header");
        assert!(refused(&v4[..20], 1000), "truncated IP header");
        assert!(refused(&[], 1000));
        let mut ext = v6.clone();
        ext[20] = 0; // hop-by-hop options first
        assert!(refused(&ext, 1000), "IPv6 extension header");
        let mut udp = v4.clone();
        udp[23] = 17;
        assert!(refused(&udp, 1000), "UDP");
        for frag in [0x2000u16, 0x0001] {
            let mut f = v4.clone();
            f[20..22].copy_from_slice(&frag.to_be_bytes());
            assert!(refused(&f, 1000), "fragment {frag:#06x}");
        }
        let mut vlan = v4.clone();
        vlan[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        assert!(refused(&vlan, 1000), "VLAN tag");
        let mut short_doff = v4.clone();
        short_doff[34 + 12] = 4 << 4;
        assert!(refused(&short_doff, 1000), "data offset below 5");
        let mut long_doff = tcp_frame(false, ACK, &[], 20);
        long_doff[34 + 12] = 15 << 4;
        assert!(refused(&long_doff, 1000), "TCP header beyond the IP length");
        let mut v4_in_v6 = v4.clone();
        v4_in_v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert!(refused(&v4_in_v6, 1000), "version and ethertype disagree");
        // A huge gso_size is one segment, not an overflow.
        assert_eq!(segments(&v4, usize::MAX).unwrap().len(), 1);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any TSO frame: the segments carry the payload in order, with contiguous
        /// sequence numbers, no segment longer than its headers + `gso_size`, valid
        /// checksums, and FIN/PSH last and CWR first.
        #[test]
        fn segments_carry_the_payload_in_order(
            v6 in proptest::bool::ANY,
            payload_len in 0usize..=70_000,
            gso_size in 1usize..=9000,
            flags in proptest::num::u8::ANY,
            seq in proptest::num::u32::ANY,
            seed in proptest::num::u64::ANY,
            option_words in 0usize..=10,
        ) {
            let opts: Vec<u8> = (0..option_words * 4).map(|_| 1).collect();
            let ip_header = if v6 { 0 } else { 20 };
            let payload_len = payload_len.min(65_535 - ip_header - 20 - opts.len());
            // xorshift64: payload bytes that differ from segment to segment.
            let mut state = seed | 1;
            let payload: Vec<u8> = (0..payload_len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_be_bytes()[0]
                })
                .collect();
            let mut frame = tcp_frame_carrying(v6, flags, &opts, &payload);
            let tcp = if v6 { 54 } else { 34 };
            frame[tcp + 4..tcp + 8].copy_from_slice(&seq.to_be_bytes());
            let segs = segments(&frame, gso_size).unwrap();
            let headers = tcp + 20 + opts.len();
            proptest::prop_assert_eq!(segs.len(), payload_len.div_ceil(gso_size).max(1));
            let mut joined = Vec::with_capacity(payload_len);
            let mut next_seq = seq;
            for (i, seg) in segs.iter().enumerate() {
                proptest::prop_assert!(seg.len() <= headers + gso_size);
                let (s, f, data) = tcp_of(seg);
                proptest::prop_assert_eq!(s, next_seq);
                let mut expected = flags;
                if i > 0 {
                    expected &= !CWR;
                }
                if i + 1 < segs.len() {
                    expected &= !(FIN | PSH);
                }
                proptest::prop_assert_eq!(f, expected);
                next_seq = s.wrapping_add(u32::try_from(data.len()).unwrap());
                joined.extend_from_slice(data);
            }
            proptest::prop_assert_eq!(joined, payload);
        }
    }
}

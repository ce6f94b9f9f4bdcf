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
//!   (`gso_type` TCPV4/TCPV6, `gso_size` the MSS on the wire).
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

const ETH_LEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    /// An Ethernet frame with a TCP segment (options `opts`, `payload` bytes) and a
    /// correct checksum.
    fn tcp_frame(v6: bool, flags: u8, opts: &[u8], payload: usize) -> Vec<u8> {
        let doff = 20 + opts.len();
        let l4_len = doff + payload;
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
        tcp.extend((0..payload).map(|i| u8::try_from(i % 251).unwrap()));
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
}

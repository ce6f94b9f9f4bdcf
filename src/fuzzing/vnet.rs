//! What the datapath does with a frame read from an offload TAP: a `virtio_net_hdr`
//! (`tapnet_wire::vnet`), then the frame, through `crate::datapath::offload`.
//!
//! Input: up to [`MAX_FRAMES`] frames, each a selector byte (a template: raw bytes, TCP
//! or UDP over IPv4 or IPv6, a SYN with an MSS option, IPv4 with options; how its
//! header is made; a partial checksum or a complete one), an MTU byte, a payload
//! length byte, a segment size byte, the header (raw bytes, consistent with the frame,
//! consistent but for one field, or empty) and a few byte mutations. Invariants:
//!
//! - nothing panics or reads out of bounds whatever the header says (`gso_type`,
//!   `hdr_len`, `gso_size`, `csum_start`, `csum_offset`), and nothing reads past the
//!   bytes read (the buffer holds garbage after them);
//! - a header round-trips through its bytes; `rx_prepare` refuses exactly a short read
//!   and a checksum field out of range, and otherwise describes what the header says;
//! - completing a partial checksum whose field holds the pseudo-header sum, at the
//!   transport checksum of a well-formed TCP/UDP frame, makes it verify;
//! - partial -> port checksum -> partial is the identity (in one's complement, where
//!   0 and 0xffff are the same sum), also after a NAT's incremental port rewrite;
//! - raising a SYN's MSS changes only the MSS (upwards) and the checksum field, and
//!   keeps the checksum valid, complete or partial;
//! - the headers written out describe the frame (`Framing::tx_header`); a TSO frame
//!   cut with its own `gso_size` or with the size `vnet::tx_header` picks gives
//!   segments that fit and concatenate to the payload, each with valid IPv4 header and
//!   TCP checksums ([`tapnet_wire::fuzzing::check_segmentation`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tapnet_wire::checksum;
use tapnet_wire::ip::{self, IpView};
use tapnet_wire::vnet::{self, VnetHdr};

use crate::datapath::offload::{HEADROOM, Offload};

mod checks;

/// Frames per input.
const MAX_FRAMES: usize = 16;
/// Bytes of garbage after what was read, in the receive buffer.
const SLACK: usize = 16;

/// A cursor over the fuzzer's bytes that yields zeros once exhausted.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn word(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// The transport header of a well-formed frame: untagged, TCP or UDP over IPv4 (not
/// a fragment) or IPv6 (no extension headers).
#[derive(Clone, Copy, Debug)]
struct L4 {
    /// The IP packet ends the frame: no link padding, which a partial checksum (from
    /// `csum_start` to the frame's end) would cover.
    whole: bool,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    /// Where it starts in the frame, and where its checksum field is in it.
    start: usize,
    field: usize,
    len: usize,
}

impl L4 {
    fn of(frame: &[u8]) -> Option<Self> {
        let v4 = match frame.get(12..14)? {
            [0x08, 0x00] => true,
            [0x86, 0xdd] => false,
            _ => return None,
        };
        let v = IpView::parse(&frame[14..])?;
        let field = match v.proto {
            ip::PROTO_TCP => 16,
            ip::PROTO_UDP => 6,
            _ => return None,
        };
        let fits = v.l4_len >= field + 2 && (v.proto == ip::PROTO_UDP || v.l4_len >= 20);
        (fits && !v.fragment && v.src.is_ipv4() == v4).then_some(Self {
            whole: 14 + v.ip_len() == frame.len(),
            src: v.src,
            dst: v.dst,
            proto: v.proto,
            start: 14 + v.l4_offset,
            field,
            len: v.l4_len,
        })
    }

    /// The pseudo-header sum that a partial checksum field holds.
    fn pseudo(&self) -> u16 {
        checksum::fold(match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_v4(s, d, self.proto, self.len),
            (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_v6(s, d, self.proto, self.len),
            _ => 0,
        })
    }

    fn verifies(&self, frame: &[u8]) -> bool {
        let l4 = &frame[self.start..self.start + self.len];
        ip::l4_checksum(self.src, self.dst, self.proto, l4) == 0
    }

    /// The frame's field holds the pseudo-header sum, as `offload` says a partial one.
    fn partial_as(&self, frame: &[u8], offload: Offload) -> bool {
        self.whole
            && offload.csum == Some((to16(self.start), to16(self.field)))
            && ones_eq(word_at(frame, self.start + self.field), self.pseudo())
    }
}

fn to16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn word_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Equal as one's-complement sums: 0 and 0xffff are both zero.
fn ones_eq(a: u16, b: u16) -> bool {
    a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

/// A frame of template `kind` (1-7) with `payload` bytes; the checksum field holds the
/// pseudo-header sum if `partial`, else the complete checksum. `extra`: a NOP before a
/// SYN's MSS option (odd offset) and CWR on TCP; `mss` the SYN's MSS.
fn template(kind: u8, payload: usize, partial: bool, extra: bool, mss: u16) -> Vec<u8> {
    let v6 = matches!(kind, 2 | 4 | 6);
    let (proto, syn) = match kind {
        3 | 4 => (ip::PROTO_UDP, false),
        5 | 6 => (ip::PROTO_TCP, true),
        _ => (ip::PROTO_TCP, false),
    };
    let mut l4 = if proto == ip::PROTO_UDP {
        let mut u = vec![0u8; 8];
        u[0..4].copy_from_slice(&[0x9c, 0x40, 0, 53]);
        u[4..6].copy_from_slice(&to16(8 + payload).to_be_bytes());
        u
    } else {
        let mut opts = Vec::new();
        if syn {
            if extra {
                opts.push(1);
            }
            opts.extend_from_slice(&[2, 4]);
            opts.extend_from_slice(&mss.to_be_bytes());
            opts.resize(opts.len().div_ceil(4) * 4, 1);
        }
        let mut t = vec![0u8; 20];
        t[0..4].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        t[4..8].copy_from_slice(&0xfffff000u32.to_be_bytes());
        t[12] = u8::try_from((20 + opts.len()) / 4).unwrap_or(5) << 4;
        t[13] = (if syn { 0x02 } else { 0x18 }) | (if extra { 0x80 } else { 0 });
        t[14..16].copy_from_slice(&64240u16.to_be_bytes());
        t.extend_from_slice(&opts);
        t
    };
    l4.extend((0..payload).map(|i| u8::try_from(i % 251).unwrap_or(0)));
    let (src, dst): (IpAddr, IpAddr) = if v6 {
        let s = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100);
        (s.into(), Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into())
    } else {
        (
            Ipv4Addr::new(10, 0, 2, 100).into(),
            Ipv4Addr::new(10, 0, 2, 2).into(),
        )
    };
    let mut f = vec![0u8; 12];
    f.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    ip::push_ip_header(&mut f, src, dst, proto, l4.len());
    if kind == 7 {
        // IPv4 with 8 bytes of options (NOPs): IHL 7, lengths and checksum redone.
        f.splice(34..34, [1u8; 8]);
        f[14] = 0x47;
        f[16..18].copy_from_slice(&to16(28 + l4.len()).to_be_bytes());
        f[24..26].fill(0);
        let c = checksum::checksum(&f[14..42]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    }
    let start = f.len();
    let field = if proto == ip::PROTO_UDP { 6 } else { 16 };
    f.extend_from_slice(&l4);
    let l4 = L4 {
        whole: true,
        src,
        dst,
        proto,
        start,
        field,
        len: l4.len(),
    };
    let value = if partial {
        l4.pseudo()
    } else {
        ip::l4_checksum(src, dst, proto, &f[start..])
    };
    f[start + field..start + field + 2].copy_from_slice(&value.to_be_bytes());
    f
}

/// The header a sender's kernel would write for `frame` (a template of `kind`).
fn consistent_header(frame: &[u8], partial: bool, gso_size: u16, ecn: bool) -> VnetHdr {
    let mut h = VnetHdr {
        num_buffers: 1,
        ..VnetHdr::default()
    };
    let Some(l4) = L4::of(frame) else {
        return h;
    };
    if partial {
        h.flags = vnet::F_NEEDS_CSUM;
        h.csum_start = to16(l4.start);
        h.csum_offset = to16(l4.field);
    } else {
        h.flags = vnet::F_DATA_VALID;
    }
    let headers = if l4.proto == ip::PROTO_TCP {
        usize::from(frame[l4.start + 12] >> 4) * 4
    } else {
        8
    };
    if gso_size > 0 && l4.len - headers > usize::from(gso_size) {
        let gso_type = match (l4.proto, l4.src.is_ipv4()) {
            (ip::PROTO_UDP, _) => vnet::GSO_UDP_L4,
            (_, true) => vnet::GSO_TCPV4,
            (_, false) => vnet::GSO_TCPV6,
        };
        h.gso_type = gso_type | if ecn { vnet::GSO_ECN } else { 0 };
        h.gso_size = gso_size;
        h.hdr_len = to16(l4.start + headers);
    }
    h
}

/// Decodes one frame into a receive buffer: (buffer, bytes read, MTU).
fn decode(input: &mut Bytes<'_>) -> (Vec<u8>, usize, usize) {
    let sel = input.byte();
    let (kind, mode, partial, extra) = (sel & 7, sel >> 3 & 3, sel & 0x20 != 0, sel & 0x40 != 0);
    let m = input.byte();
    let mtu = match m % 4 {
        0 => 1500,
        1 => 9000,
        2 => 1280,
        _ => 576 + usize::from(m) * 8,
    };
    let payload = usize::from(input.byte()) * 29;
    let gso_size = u16::from(input.byte()) * 8;
    let mut frame = if kind == 0 {
        let len = usize::from(input.byte()) * 2;
        input.take(len).to_vec()
    } else {
        // The standard MSS for the MTU (which the engine path raises), or one less.
        let standard = mtu - if matches!(kind, 6) { 60 } else { 40 };
        let mss = to16(standard) - u16::from(extra && payload % 2 == 1);
        template(kind, payload, partial, extra, mss)
    };
    if sel & 0x80 != 0 {
        // Link padding after the IP packet.
        frame.extend_from_slice(&[0, 0]);
    }
    let mut hdr = match mode {
        0 => {
            let mut raw = [0u8; HEADROOM];
            let b = input.take(HEADROOM);
            raw[..b.len()].copy_from_slice(b);
            VnetHdr::parse(&raw).unwrap_or_default()
        }
        1 | 2 => consistent_header(&frame, partial, gso_size, extra),
        _ => VnetHdr::default(),
    };
    if mode == 2 {
        let value = input.word();
        match input.byte() % 6 {
            0 => hdr.flags = u8::try_from(value & 0xff).unwrap_or(0),
            1 => hdr.gso_type = u8::try_from(value & 0xff).unwrap_or(0),
            2 => hdr.hdr_len = value,
            3 => hdr.gso_size = value,
            4 => hdr.csum_start = value,
            _ => hdr.csum_offset = value,
        }
    }
    for _ in 0..input.byte() % 4 {
        let (at, value) = (usize::from(input.byte()), input.byte());
        if !frame.is_empty() {
            let at = at * frame.len() / 256;
            frame[at] = value;
        }
    }
    let mut buf = hdr.to_bytes().to_vec();
    buf.extend_from_slice(&frame);
    let n = buf.len();
    buf.resize(n + SLACK, 0xa5);
    (buf, n, mtu)
}

/// Runs one input.
pub fn vnet_frames(data: &[u8]) {
    let mut input = Bytes(data);
    for _ in 0..MAX_FRAMES {
        if input.0.is_empty() {
            break;
        }
        let (buf, n, mtu) = decode(&mut input);
        checks::receive(buf, n, mtu);
    }
    // Raw reads: the header and frame straight from the fuzzer, any length.
    let mut raw = data.to_vec();
    let n = raw.len();
    raw.resize(n + SLACK, 0xa5);
    checks::receive(raw, n, 1500);
}

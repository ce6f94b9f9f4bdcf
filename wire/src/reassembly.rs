//! IPv4 reassembly (RFC 791 section 3.2, RFC 815) for packets the engine must hand to a
//! host socket whole: a container at MTU 1500 sends a 60000-byte UDP datagram as 41
//! fragments, and `send()` needs the datagram.
//!
//! Bounded, unlike a textbook reassembler: at most [`MAX_DATAGRAMS`] in progress (the
//! oldest is dropped to make room), each at most 65535 bytes, each abandoned after
//! [`TIMEOUT`] (RFC 791 suggests 15 s as the lower bound; Linux uses 30 s). Overlapping
//! fragments are accepted as the later copy of the bytes (RFC 5722 forbids overlap
//! only for IPv6).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Datagrams reassembled at once.
pub const MAX_DATAGRAMS: usize = 64;
/// How long a datagram may take to arrive whole.
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest IPv4 packet.
const MAX_LEN: usize = 65535;

/// What identifies the fragments of one datagram (RFC 791: source, destination,
/// protocol and identification), within a zone (a network).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key {
    zone: u32,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
}

#[derive(Debug)]
struct Partial {
    /// The header of the first fragment (offset 0), once seen.
    header: Vec<u8>,
    /// The payload bytes, at their offsets.
    payload: Vec<u8>,
    /// Which 8-byte blocks of the payload have arrived.
    blocks: Vec<u64>,
    /// Payload length, known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    started: Duration,
}

impl Partial {
    fn block_set(&mut self, block: usize) {
        self.blocks[block / 64] |= 1 << (block % 64);
    }

    fn complete(&self) -> bool {
        let Some(total) = self.total else {
            return false;
        };
        if self.header.is_empty() {
            return false;
        }
        (0..total.div_ceil(8)).all(|b| self.blocks[b / 64] & (1 << (b % 64)) != 0)
    }
}

/// Reassembles IPv4 datagrams.
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: HashMap<Key, Partial>,
    /// Datagrams dropped: timed out, evicted for room, or malformed fragments.
    pub dropped: u64,
}

/// The fragment fields of an IPv4 header, if `packet` is a fragment.
fn fragment_fields(packet: &[u8]) -> Option<(usize, u16, bool, usize)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    if ihl < 20 || total < ihl || total > packet.len() {
        return None;
    }
    let id = u16::from_be_bytes([packet[4], packet[5]]);
    let flags_offset = u16::from_be_bytes([packet[6], packet[7]]);
    let more = flags_offset & 0x2000 != 0;
    let offset = usize::from(flags_offset & 0x1fff) * 8;
    Some((ihl, id, more, offset))
}

impl Reassembler {
    /// Takes one IPv4 fragment (of `packet`'s total length) received at `now`; returns
    /// the whole datagram, as an unfragmented IPv4 packet, once every piece is there.
    pub fn add(&mut self, now: Duration, zone: u32, packet: &[u8]) -> Option<Vec<u8>> {
        self.expire(now);
        let Some((ihl, id, more, offset)) = fragment_fields(packet) else {
            self.dropped += 1;
            return None;
        };
        let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
        let data = &packet[ihl..total_len];
        let end = offset + data.len();
        // Every fragment but the last carries a multiple of 8 bytes (RFC 791).
        if end > MAX_LEN - ihl || (more && !data.len().is_multiple_of(8)) || data.is_empty() {
            self.dropped += 1;
            return None;
        }
        let key = Key {
            zone,
            src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
            dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
            proto: packet[9],
            id,
        };
        if !self.partial.contains_key(&key) && self.partial.len() >= MAX_DATAGRAMS {
            let oldest = self
                .partial
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.partial.remove(&k);
                self.dropped += 1;
            }
        }
        let partial = self.partial.entry(key).or_insert_with(|| Partial {
            header: Vec::new(),
            payload: vec![0; MAX_LEN],
            blocks: vec![0; MAX_LEN.div_ceil(8).div_ceil(64)],
            total: None,
            started: now,
        });
        if offset == 0 {
            partial.header = packet[..ihl].to_vec();
        }
        if !more {
            partial.total = Some(end);
        }
        partial.payload[offset..end].copy_from_slice(data);
        for block in offset / 8..end.div_ceil(8) {
            partial.block_set(block);
        }
        if !partial.complete() {
            return None;
        }
        let partial = self.partial.remove(&key)?;
        let total = partial.total?;
        let mut whole = partial.header;
        let len = u16::try_from(whole.len() + total).ok()?;
        whole.extend_from_slice(&partial.payload[..total]);
        whole[2..4].copy_from_slice(&len.to_be_bytes());
        // No more fragments, offset 0 (the DF bit as the first fragment had it).
        whole[6] &= 0x40;
        whole[7] = 0;
        whole[10] = 0;
        whole[11] = 0;
        let ihl = usize::from(whole[0] & 0x0f) * 4;
        let checksum = crate::checksum::checksum(&whole[..ihl]);
        whole[10..12].copy_from_slice(&checksum.to_be_bytes());
        Some(whole)
    }

    /// Drops datagrams that took longer than [`TIMEOUT`].
    fn expire(&mut self, now: Duration) {
        let before = self.partial.len();
        self.partial
            .retain(|_, p| now.saturating_sub(p.started) < TIMEOUT);
        self.dropped += (before - self.partial.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: u32 = 1;

    /// A UDP datagram of `len` payload bytes, as etherparse builds it.
    fn datagram(len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 2, 100], [10, 0, 2, 2], 64)
            .udp(5000, 7003)
            .write(&mut out, &payload)
            .unwrap();
        out
    }

    /// Splits an IPv4 packet into fragments of at most `mtu` bytes (RFC 791).
    fn fragment(packet: &[u8], mtu: usize, id: u16) -> Vec<Vec<u8>> {
        let data = &packet[20..];
        let step = (mtu - 20) / 8 * 8;
        data.chunks(step)
            .enumerate()
            .map(|(i, chunk)| {
                let mut f = packet[..20].to_vec();
                f.extend_from_slice(chunk);
                let len = f.len() as u16;
                f[2..4].copy_from_slice(&len.to_be_bytes());
                f[4..6].copy_from_slice(&id.to_be_bytes());
                let more = (i + 1) * step < data.len();
                let flags = ((i * step / 8) as u16) | if more { 0x2000 } else { 0 };
                f[6..8].copy_from_slice(&flags.to_be_bytes());
                f[10..12].copy_from_slice(&[0, 0]);
                let ck = crate::checksum::checksum(&f[..20]);
                f[10..12].copy_from_slice(&ck.to_be_bytes());
                f
            })
            .collect()
    }

    #[test]
    fn reassembles_in_any_order_into_a_valid_packet() {
        let whole = datagram(60000);
        let mut frags = fragment(&whole, 1500, 77);
        assert_eq!(frags.len(), 41);
        frags.reverse();
        frags.swap(3, 17);
        let mut r = Reassembler::default();
        let mut out = None;
        for (i, f) in frags.iter().enumerate() {
            let got = r.add(Duration::from_millis(i as u64), NET, f);
            if i + 1 < frags.len() {
                assert!(got.is_none(), "complete after {i} fragments");
            }
            out = out.or(got);
        }
        let out = out.expect("reassembled");
        let parsed = etherparse::SlicedPacket::from_ip(&out).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &parsed.net else {
            panic!()
        };
        assert!(!ip.header().is_fragmenting_payload());
        assert_eq!(
            ip.header().to_header().calc_header_checksum(),
            ip.header().header_checksum()
        );
        assert_eq!(&out[20..], &whole[20..], "payload differs");
        assert_eq!(r.partial.len(), 0);
    }

    #[test]
    fn interleaved_datagrams_stay_apart_and_duplicates_are_harmless() {
        let (a, b) = (datagram(3000), datagram(5000));
        let (fa, fb) = (fragment(&a, 1500, 1), fragment(&b, 1500, 2));
        let mut r = Reassembler::default();
        let now = Duration::ZERO;
        assert!(r.add(now, NET, &fa[0]).is_none());
        assert!(r.add(now, NET, &fb[0]).is_none());
        assert!(
            r.add(now, NET, &fa[0]).is_none(),
            "a duplicate completes nothing"
        );
        assert!(r.add(now, NET, &fb[1]).is_none());
        assert!(r.add(now, NET, &fa[1]).is_none());
        assert_eq!(&r.add(now, NET, &fa[2]).unwrap()[20..], &a[20..]);
        assert_eq!(fb.len(), 4);
        assert!(r.add(now, NET, &fb[3]).is_none());
        assert_eq!(&r.add(now, NET, &fb[2]).unwrap()[20..], &b[20..]);
        // The same id in another network is another datagram.
        assert!(r.add(now, 2, &fa[0]).is_none());
        assert_eq!(r.partial.len(), 1);
    }

    #[test]
    fn incomplete_datagrams_time_out_and_the_table_is_bounded() {
        let a = datagram(3000);
        let frags = fragment(&a, 1500, 9);
        let mut r = Reassembler::default();
        assert!(r.add(Duration::ZERO, NET, &frags[0]).is_none());
        // After the timeout the first fragment is gone: the rest no longer completes it.
        assert!(r.add(TIMEOUT, NET, &frags[1]).is_none());
        assert!(r.add(TIMEOUT, NET, &frags[2]).is_none());
        assert_eq!(r.dropped, 1);
        for id in 0..(MAX_DATAGRAMS as u16 + 10) {
            let f = fragment(&a, 1500, 1000 + id);
            assert!(r.add(TIMEOUT, NET, &f[0]).is_none());
        }
        assert_eq!(r.partial.len(), MAX_DATAGRAMS);
    }

    #[test]
    fn malformed_fragments_are_dropped() {
        let mut r = Reassembler::default();
        for bad in [&[][..], &[0x45; 10][..], &[0x41; 40][..]] {
            assert!(r.add(Duration::ZERO, NET, bad).is_none());
        }
        // A middle fragment whose length is not a multiple of 8.
        let whole = datagram(3000);
        let mut f = fragment(&whole, 1500, 5)[0].clone();
        f.truncate(f.len() - 3);
        let len = f.len() as u16;
        f[2..4].copy_from_slice(&len.to_be_bytes());
        assert!(r.add(Duration::ZERO, NET, &f).is_none());
        assert_eq!(r.dropped, 4);
    }
}

//! The checks of the `vnet_frames` harness (see the parent module's docs).

use tapnet_wire::checksum;
use tapnet_wire::fuzzing::check_segmentation;
use tapnet_wire::ip::{self, IpView};
use tapnet_wire::vnet::{self, VnetHdr};

use super::{L4, ones_eq, word_at};
use crate::datapath::offload::{self, Framing, HEADROOM, Offload};

/// A read of `n` bytes into `buf` (more bytes of garbage after them) on an offload port
/// of `mtu`, and on a plain one.
pub(super) fn receive(mut buf: Vec<u8>, n: usize, mtu: usize) {
    plain(&buf, n);
    let framing = Framing::Vnet { mtu };
    let before = VnetHdr::parse(&buf);
    if let Some(h) = before {
        assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h), "header round trip");
        assert_eq!(h.to_bytes()[..], buf[..HEADROOM], "header bytes round trip");
        assert_eq!(h.is_gso(), h.gso_type & !vnet::GSO_ECN != 0);
    }
    let Some(mut rx) = offload::rx_prepare(framing, &mut buf, n) else {
        // Refused: a short read, or a checksum field beyond the frame.
        let refusable = n < HEADROOM
            || before.is_some_and(|h| {
                h.flags & vnet::F_NEEDS_CSUM != 0
                    && usize::from(h.csum_start) + usize::from(h.csum_offset) + 2 > n - HEADROOM
            });
        assert!(refusable, "rx_prepare refused {before:?}, {n} bytes");
        return;
    };
    let hdr = VnetHdr::parse(&buf).expect("a prepared header");
    let before = before.expect("a header was read");
    assert_eq!(
        hdr,
        VnetHdr {
            num_buffers: 0,
            ..before
        }
    );
    assert_eq!(rx.len, n - HEADROOM);
    let offload = rx.offload.expect("an offload port's frame has an Offload");
    assert_eq!(offload, Offload::of(&hdr));
    assert_eq!(Framing::Plain.tx_range(rx).is_none(), rx.is_tso());
    assert_eq!(framing.tx_range(rx), Some(0..n));
    if let Some((start, off)) = offload.csum {
        assert!(usize::from(start) + usize::from(off) + 2 <= rx.len);
    }

    let frame = buf[HEADROOM..n].to_vec();
    let l4 = L4::of(&frame);
    accessors(offload, &frame);
    if let Some((start, off)) = offload.csum {
        port_round_trip(&frame[usize::from(start)..], usize::from(off));
    }
    raise_mss(&frame, offload, mtu, l4);
    written_headers(&frame, offload, framing, mtu);

    // Out to a plain port: the partial checksum completed over exactly the frame.
    let completes = l4.filter(|l| l.partial_as(&frame, offload));
    offload::finish_checksum(&mut buf, &mut rx);
    assert!(!rx.has_partial_checksum());
    assert!(buf[n..].iter().all(|&b| b == 0xa5), "wrote past the frame");
    if offload.csum.is_some() {
        let h = VnetHdr::parse(&buf).expect("a header");
        assert_eq!(
            (h.flags, h.csum_start, h.csum_offset),
            (vnet::F_DATA_VALID, 0, 0)
        );
        assert!(rx.offload.is_some_and(|o| o.data_valid));
    } else {
        assert_eq!(
            buf[HEADROOM..n],
            frame[..],
            "finish_checksum changed a frame"
        );
    }
    if let Some(l) = completes {
        assert!(
            l.verifies(&buf[HEADROOM..n]),
            "completed checksum invalid: {l:?}"
        );
    }
    // The checksum completed by hand where the header says, whatever it says.
    let mut copy = frame.clone();
    let (start, off) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
    if !vnet::complete_checksum(&mut copy, start, off) {
        assert!(start + off + 2 > frame.len());
        assert_eq!(copy, frame, "a refused completion changed the frame");
    }
}

/// The same bytes read from a plain port (after the headroom).
fn plain(buf: &[u8], n: usize) {
    let mut plain = vec![0xa5u8; HEADROOM];
    plain.extend_from_slice(&buf[..n]);
    let rx = offload::rx_prepare(Framing::Plain, &mut plain, n).expect("a plain read fits");
    assert_eq!((rx.len, rx.offload), (n, None));
    assert_eq!(plain[..HEADROOM], [0; HEADROOM]);
    assert_eq!(Framing::Plain.tx_range(rx), Some(HEADROOM..HEADROOM + n));
    assert_eq!(Framing::Plain.tx_header(&plain[HEADROOM..], None), None);
}

/// `Offload`'s accessors agree with what it holds.
fn accessors(o: Offload, frame: &[u8]) {
    assert_eq!(o.segment(), o.gso.map(|g| g.1));
    if let Some(fits) = o.still_fits(frame) {
        assert_eq!(fits, o);
        let proto = match frame[12..14] {
            [0x08, 0x00] => frame[14 + 9],
            _ => frame[14 + 6],
        };
        assert!(proto == ip::PROTO_TCP || proto == ip::PROTO_UDP);
    }
    match o.csum {
        Some((start, off)) => {
            let field = usize::from(start)
                .checked_sub(14)
                .map(|s| (s, usize::from(off)));
            assert_eq!(o.l4_field(), field);
        }
        None => assert_eq!(o.l4_field(), None),
    }
    for by in [0, 4, 8, 40] {
        match (o.shifted_back(by), o.csum) {
            (Some(s), Some((start, off))) => {
                let (moved, same) = s.csum.expect("still partial");
                assert_eq!((usize::from(moved) + by, same), (usize::from(start), off));
                assert!(moved >= 14);
            }
            (Some(s), None) => assert_eq!(s, o),
            (None, Some((start, _))) => assert!(usize::from(start) < by + 14),
            (None, None) => panic!("shifted_back refused an Offload without checksum"),
        }
    }
    let mut copy = frame.to_vec();
    let done = offload::finish_offload_checksum(&mut copy, Some(o)).expect("an Offload");
    assert_eq!(done.csum, None);
    assert_eq!(done.gso, o.gso);
    assert_eq!(done.data_valid, o.data_valid || o.csum.is_some());
}

/// Partial -> port checksum -> partial, with and without a NAT's port rewrite between.
fn port_round_trip(l4: &[u8], offset: usize) {
    let mut copy = l4.to_vec();
    if !vnet::partial_to_port_checksum(&mut copy, offset) {
        assert_eq!(copy, l4, "a refused conversion changed the bytes");
        assert!(!vnet::port_checksum_to_partial(&mut copy, offset));
        return;
    }
    let pseudo = word_at(l4, offset);
    let mut nat = copy.clone();
    // A NAT rewrites the source port, updating the checksum (RFC 1624); the
    // pseudo-header sum, which covers no port, stays.
    let old = word_at(&nat, 0);
    let new = old ^ 0x5a5a;
    nat[0..2].copy_from_slice(&new.to_be_bytes());
    let ck = checksum::update_word(word_at(&nat, offset), old, new);
    nat[offset..offset + 2].copy_from_slice(&ck.to_be_bytes());
    for c in [&mut copy, &mut nat] {
        assert!(vnet::port_checksum_to_partial(c, offset));
        let back = word_at(c, offset);
        assert!(
            ones_eq(back, pseudo),
            "partial {pseudo:#06x} came back {back:#06x}"
        );
    }
    copy[offset..offset + 2].copy_from_slice(&pseudo.to_be_bytes());
    assert_eq!(copy, l4, "the round trip changed other bytes");
}

/// Raising the MSS of a SYN towards the engine.
fn raise_mss(frame: &[u8], offload: Offload, mtu: usize, l4: Option<L4>) {
    let mut raised = frame.to_vec();
    let valid = l4.is_some_and(|l| l.proto == ip::PROTO_TCP && l.verifies(frame));
    let partial = l4.filter(|l| l.proto == ip::PROTO_TCP && l.partial_as(frame, offload));
    offload::raise_mss_towards_engine(&mut raised, offload, u32::try_from(mtu).unwrap_or(0));
    let changed: Vec<usize> = (0..frame.len())
        .filter(|&i| raised[i] != frame[i])
        .collect();
    if changed.is_empty() {
        return;
    }
    let l = l4.expect("only a well-formed TCP SYN is changed");
    assert_eq!(l.proto, ip::PROTO_TCP);
    assert!(frame[l.start + 13] & 0x02 != 0, "not a SYN");
    let csum = l.start + 16..l.start + 18;
    let at = mss_option(frame, l.start).expect("a raised SYN has an MSS option");
    let other = changed
        .iter()
        .find(|&&i| !csum.contains(&i) && i != at && i != at + 1);
    assert!(other.is_none(), "raising the MSS changed byte {other:?}");
    let (old, new) = (word_at(frame, at), word_at(&raised, at));
    assert!(new > old, "MSS lowered from {old} to {new}");
    if offload.csum.is_some() {
        assert_eq!(raised[csum.clone()], frame[csum], "partial field changed");
        if partial.is_some() {
            assert!(vnet::complete_checksum(&mut raised, l.start, 16));
            assert!(l.verifies(&raised), "raised partial SYN does not complete");
        }
    } else if valid {
        assert!(l.verifies(&raised), "raised SYN's checksum invalid");
    }
}

/// Where the value of the MSS option of the TCP header at `tcp` is (RFC 9293 3.2:
/// kind 2, length 4), walking the options as a receiver does.
fn mss_option(frame: &[u8], tcp: usize) -> Option<usize> {
    let end = tcp + usize::from(frame[tcp + 12] >> 4) * 4;
    let mut i = tcp + 20;
    while i < end {
        match frame[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*frame.get(i + 1)?);
                if len < 2 || i + len > end {
                    return None;
                }
                if kind == 2 && len == 4 {
                    return Some(i + 2);
                }
                i += len;
            }
        }
    }
    None
}

/// The headers written before the frame to an offload port, and segmentation.
fn written_headers(frame: &[u8], o: Offload, framing: Framing, mtu: usize) {
    let bytes = framing
        .tx_header(frame, Some(o))
        .expect("a header for an offload port");
    let h = VnetHdr::parse(&bytes).expect("parses");
    assert_eq!(h.flags & vnet::F_NEEDS_CSUM != 0, o.csum.is_some());
    if let Some((start, off)) = o.csum {
        assert_eq!((h.csum_start, h.csum_offset), (start, off));
    }
    assert_eq!(h.is_gso(), o.gso.is_some());
    if let Some((t, size)) = o.gso {
        assert_eq!((h.gso_type, h.gso_size), (t, size));
        // What `write_segments` does for a plain port: cut with the header's size.
        if matches!(t & !vnet::GSO_ECN, vnet::GSO_TCPV4 | vnet::GSO_TCPV6) {
            check_segmentation(frame, usize::from(size));
        }
    }
    // A frame the pipeline built: TSO beyond the MTU, segments that fit it.
    let built = framing.tx_header(frame, None).expect("a header");
    assert_eq!(built, vnet::tx_header(frame, mtu).to_bytes());
    let t = VnetHdr::parse(&built).expect("parses");
    if t.is_gso() {
        let ip_len = IpView::parse(&frame[14..]).map_or(0, |v| v.ip_len());
        assert!(ip_len > mtu, "TSO for a packet within the MTU");
        let headers = usize::from(t.hdr_len).saturating_sub(14);
        assert!(
            usize::from(t.gso_size) + headers <= mtu,
            "{t:?} beyond MTU {mtu}"
        );
        check_segmentation(frame, usize::from(t.gso_size));
    }
}

//! Fuzz harness for the IP packet views, builders and the reassembler (what the
//! host-socket egress runs on every packet a container sends). Shared by the cargo-fuzz
//! target `ip_packets` and the stable corpus replay test.
//!
//! Input: a sequence of packets, each a little-endian `u16` length and that many bytes
//! (a short final length takes what is left). Every packet goes through the parsers;
//! what parses gets a RST and an ICMP error built for it; IPv4 fragments go through
//! the reassembler; TCP goes through software segmentation too, with 1 and 1448 bytes
//! per segment and with the value of its TCP checksum field (which segmentation
//! ignores, so the fuzzer picks the segment size there). Invariants: nothing panics,
//! every built or reassembled IPv4 packet parses again and carries a valid header
//! checksum, every built transport header carries a valid checksum, and segmentation
//! either refuses without emitting or cuts the TCP payload into segments that
//! concatenate back to it.

use core::time::Duration;

use crate::checksum;
use crate::ip::{self, IpView, TcpView, Unreachable};
use crate::reassembly::Reassembler;
use crate::vnet;

fn check_built(packet: &[u8]) {
    let view = IpView::parse(packet).expect("a built packet parses");
    if packet[0] >> 4 == 4 {
        let ihl = usize::from(packet[0] & 0x0f) * 4;
        assert!(
            checksum::verifies(&packet[..ihl]),
            "bad IPv4 header checksum"
        );
    }
    let l4 = view.l4(packet);
    // A valid checksum makes the covered words sum to all-ones (RFC 1071); ICMP over
    // IPv4 covers no pseudo-header.
    let valid = if view.proto == ip::PROTO_ICMP {
        checksum::verifies(l4)
    } else {
        ip::l4_checksum(view.src, view.dst, view.proto, l4) == 0
    };
    assert!(valid, "bad transport checksum in a built packet");
}

/// The checksum/segmentation offload helpers on `packet` behind an Ethernet header:
/// nothing panics, and raising a SYN's MSS keeps a valid TCP checksum valid.
fn offload(packet: &[u8]) {
    let ethertype: u16 = if packet.first().is_some_and(|b| b >> 4 == 6) {
        0x86dd
    } else {
        0x0800
    };
    let mut frame = vec![0u8; 14];
    frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(packet);
    let _ = vnet::tx_header(&frame, 1500);
    let valid_tcp = |f: &[u8]| {
        IpView::parse(&f[14..]).is_some_and(|v| {
            v.proto == ip::PROTO_TCP
                && !v.fragment
                && ip::l4_checksum(v.src, v.dst, v.proto, v.l4(&f[14..])) == 0
        })
    };
    let was_valid = valid_tcp(&frame);
    if vnet::raise_syn_mss(&mut frame, 1460, 1440, 65000) && was_valid {
        assert!(valid_tcp(&frame), "raising the MSS broke the TCP checksum");
    }
    let fuzzed_gso_size = IpView::parse(packet)
        .filter(|v| v.proto == ip::PROTO_TCP)
        .and_then(|v| {
            v.l4(packet)
                .get(16..18)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
        });
    for gso_size in [Some(1), Some(1448), fuzzed_gso_size].into_iter().flatten() {
        check_segmentation(&frame, usize::from(gso_size));
    }
    if let Some(h) = vnet::VnetHdr::parse(packet) {
        let _ = vnet::complete_checksum(
            &mut frame,
            usize::from(h.csum_start),
            usize::from(h.csum_offset),
        );
    }
}

/// Software segmentation of `frame`: refused with nothing emitted, or segments that
/// are each a valid packet (lengths, IPv4 header and TCP checksums) of at most
/// `gso_size` payload bytes, with contiguous sequence numbers, whose payloads
/// concatenate to the frame's TCP payload. Shared with the shell's `vnet_frames`
/// harness.
pub fn check_segmentation(frame: &[u8], gso_size: usize) {
    let mut payload = Vec::new();
    let mut segments = 0usize;
    let mut next_seq = None;
    let mut segment = Vec::new();
    let done = vnet::segment_tcp(frame, gso_size, |headers, data| {
        assert!(data.len() <= gso_size, "segment longer than gso_size");
        segment.clear();
        segment.extend_from_slice(headers);
        segment.extend_from_slice(data);
        let view = IpView::parse(&segment[14..]).expect("a segment parses");
        assert_eq!(view.ip_len(), segment.len() - 14, "segment IP length");
        check_built(&segment[14..]);
        let tcp = TcpView::parse(view.l4(&segment[14..])).expect("a segment's TCP parses");
        assert!(
            next_seq.is_none_or(|seq| seq == tcp.seq),
            "sequence numbers not contiguous"
        );
        let len = u32::try_from(data.len()).expect("a segment is short");
        next_seq = Some(tcp.seq.wrapping_add(len));
        payload.extend_from_slice(data);
        segments += 1;
    });
    if !done {
        assert_eq!(segments, 0, "segmentation refused after emitting");
        return;
    }
    assert!(segments > 0, "segmentation emitted nothing");
    let view = IpView::parse(&frame[14..]).expect("a segmented frame parses");
    let l4 = view.l4(&frame[14..]);
    let doff = usize::from(l4[12] >> 4) * 4;
    assert_eq!(
        payload,
        l4[doff..],
        "segments do not concatenate to the payload"
    );
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut reassembler = Reassembler::default();
    let mut out = Vec::new();
    let mut rest = data;
    let mut now = Duration::ZERO;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let packet = &rest[2..2 + len];
        rest = &rest[2 + len..];
        now += Duration::from_millis(u64::from(packet.first().copied().unwrap_or(0)) * 10);
        offload(packet);
        let Some(view) = IpView::parse(packet) else {
            continue;
        };
        let l4 = view.l4(packet);
        let _ = ip::udp_ports(l4);
        if view.proto == ip::PROTO_TCP
            && let Some(tcp) = TcpView::parse(l4)
        {
            ip::build_rst_for(&mut out, &view, &tcp);
            check_built(&out);
        }
        for why in [Unreachable::Net, Unreachable::Host, Unreachable::Port] {
            ip::build_unreachable(&mut out, view.dst, packet, &view, why);
            if !out.is_empty() {
                check_built(&out);
            }
        }
        if view.fragment
            && packet[0] >> 4 == 4
            && let Some(whole) = reassembler.add(now, 1, packet)
        {
            let again = IpView::parse(&whole).expect("a reassembled packet parses");
            assert!(!again.fragment, "a reassembled packet is still a fragment");
            let ihl = usize::from(whole[0] & 0x0f) * 4;
            assert!(
                checksum::verifies(&whole[..ihl]),
                "bad reassembled header checksum"
            );
        }
    }
}

/// Replays every file of `fuzz/corpus/<target>/` (relative to the workspace root
/// `workspace`) through `harness`, failing on a panic or an empty corpus. The stable
/// corpus tests of every crate call this, so that each input a fuzzer once found stays
/// a regression test without nightly or libFuzzer.
pub fn replay_corpus(workspace: &std::path::Path, target: &str, harness: fn(&[u8])) {
    let dir = workspace.join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(outcome.is_ok(), "corpus input {} failed", path.display());
    }
}

//! Fuzz harness for the IP packet views, builders and the reassembler (what the
//! host-socket egress runs on every packet a container sends). Shared by the cargo-fuzz
//! target `ip_packets` and the stable corpus replay test.
//!
//! Input: a sequence of packets, each a little-endian `u16` length and that many bytes
//! (a short final length takes what is left). Every packet goes through the parsers;
//! what parses gets a RST and an ICMP error built for it; IPv4 fragments go through
//! the reassembler. Invariants: nothing panics, every built or reassembled IPv4 packet
//! parses again and carries a valid header checksum, and every built transport header
//! carries a valid checksum.

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
    if let Some(h) = vnet::VnetHdr::parse(packet) {
        let _ = vnet::complete_checksum(
            &mut frame,
            usize::from(h.csum_start),
            usize::from(h.csum_offset),
        );
    }
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

//! Fuzzing harness for the packet uplink's [`OutsidePort`], shared by the cargo-fuzz
//! target `fuzz/fuzz_targets/outside_frames.rs` and the stable corpus replay test
//! `tests/outside_fuzz_corpus.rs`.
//!
//! [`run`] feeds an outside port frames built from valid templates (ARP requests and
//! replies, echo requests, UDP to us) that the fuzzer mutates, raw bytes, packets to
//! send, timers and transmit polls. After every call it checks: no panic; answers and
//! transmitted frames come from our MAC and lie within the buffer; packets handed on
//! lie within the frame (IPv4 ones with a valid header checksum); every IPv4 frame
//! we send has a valid header checksum; neighbour discovery and IPv6 forwarding when
//! the port has an IPv6 address.

use core::time::Duration;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::fuzzing::{Bytes, ipv4_packet, mutate};
use super::outside::{OutsideConfig, OutsidePort, OutsideRx, OutsideTx};
use crate::{Instant, MacAddr};
use tapnet_wire::checksum;

const OUR_MAC: MacAddr = MacAddr([0x02, 0x42, 0xc0, 0x00, 0x02, 0x02]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const OUR_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const FAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const OUR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const PEER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 9);

/// An NDP message (135 solicitation, 136 advertisement) about `target`.
fn ndp(kind: u8, dst: Ipv6Addr, eth_dst: MacAddr, target: Ipv6Addr) -> Vec<u8> {
    let mut body = [0u8; 32];
    body[0] = kind;
    body[4] = if kind == 136 { 0x60 } else { 0 };
    body[8..24].copy_from_slice(&target.octets());
    body[24..26].copy_from_slice(&[if kind == 135 { 1 } else { 2 }, 1]);
    body[26..32].copy_from_slice(&PEER_MAC.0);
    super::ipv6::icmpv6_packet(Some((eth_dst, PEER_MAC)), PEER6, dst, 255, &body)
}

/// A bare IPv6 packet with an 8-byte UDP header and no payload (checksum left 0).
fn udp6(src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&8u16.to_be_bytes());
    p[6] = 17;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..48].copy_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
    p
}

fn ethernet(dst: MacAddr, src: MacAddr, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp(op: u8, dst: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, op];
    a.extend_from_slice(&PEER_MAC.0);
    a.extend_from_slice(&sender.octets());
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target.octets());
    ethernet(dst, PEER_MAC, 0x0806, &a)
}

/// A frame the outside port may receive, chosen by `which`.
fn template(which: u8) -> Vec<u8> {
    match which % 9 {
        5 => ndp(
            135,
            super::ipv6::solicited_node(OUR6),
            MacAddr([0x33, 0x33, 0xff, 0, 0, 2]),
            OUR6,
        ),
        6 => ndp(136, OUR6, OUR_MAC, PEER6),
        7 => ethernet(OUR_MAC, PEER_MAC, 0x86dd, &udp6(FAR6, OUR6)),
        8 => ethernet(PEER_MAC, OUR_MAC, 0x86dd, &udp6(OUR6, FAR6)),
        0 => arp(1, MacAddr::BROADCAST, PEER, OUR_ADDR),
        1 => arp(2, OUR_MAC, PEER, OUR_ADDR),
        2 => {
            let mut echo = vec![8, 0, 0, 0, 0, 7, 0, 1, b'p', b'i', b'n', b'g'];
            let sum = checksum::checksum(&echo);
            echo[2..4].copy_from_slice(&sum.to_be_bytes());
            ethernet(
                OUR_MAC,
                PEER_MAC,
                0x0800,
                &ipv4_packet(PEER, OUR_ADDR, 1, 64, false, &echo),
            )
        }
        3 => {
            let udp = [0x13, 0x88, 0x00, 0x35, 0, 10, 0, 0, b'h', b'i'];
            ethernet(
                OUR_MAC,
                PEER_MAC,
                0x0800,
                &ipv4_packet(PEER, OUR_ADDR, 17, 64, true, &udp),
            )
        }
        _ => {
            let udp = [0x13, 0x88, 0x00, 0x35, 0, 10, 0, 0, b'h', b'i'];
            ethernet(
                PEER_MAC,
                OUR_MAC,
                0x0800,
                &ipv4_packet(OUR_ADDR, FAR, 17, 64, true, &udp),
            )
        }
    }
}

fn check_sent(frame: &[u8]) {
    assert!(frame.len() >= 14, "short frame sent");
    assert_eq!(&frame[6..12], &OUR_MAC.0, "frame sent from another MAC");
    if frame[12..14] == [0x08, 0x00] {
        let ip = &frame[14..];
        let ihl = usize::from(ip.first().copied().unwrap_or(0) & 0x0f) * 4;
        assert!(
            ihl >= 20 && ip.len() >= ihl && checksum::verifies(&ip[..ihl]),
            "IPv4 frame sent with a bad header"
        );
    }
}

/// Decodes `data` into operations on an outside port and checks the invariants.
pub fn run(data: &[u8]) {
    let mut input = Bytes { data };
    let b = input.byte();
    let gateway = (b & 1 != 0).then_some(PEER);
    let mut config = OutsideConfig::new(OUR_MAC, OUR_ADDR, 24, gateway);
    if b & 2 != 0 {
        config.addr6 = Some((OUR6, 64));
        config.gateway6 = (b & 4 != 0).then_some(PEER6);
    }
    let mut port = OutsidePort::new(config);
    let mut now = Instant::from_secs(1);
    let mut buf = vec![0u8; 2048];
    while !input.data.is_empty() {
        match input.byte() % 6 {
            0 | 1 => {
                let mut frame = template(input.byte());
                mutate(&mut frame, &mut input, 0..0);
                match port.handle_frame(now, &mut frame) {
                    OutsideRx::Reply { len } => {
                        assert!(len <= frame.len());
                        check_sent(&frame[..len]);
                    }
                    OutsideRx::Packet { packet } => {
                        let ip = &frame[packet];
                        if ip[0] >> 4 == 4 {
                            let ihl = usize::from(ip[0] & 0x0f) * 4;
                            assert!(checksum::verifies(&ip[..ihl]));
                        } else {
                            assert!(ip.len() >= 40 && ip[0] >> 4 == 6);
                        }
                    }
                    OutsideRx::Consumed | OutsideRx::Drop(_) => {}
                }
            }
            2 => {
                let len = usize::from(input.byte() % 64);
                let mut frame = input.take(len).to_vec();
                let _ = port.handle_frame(now, &mut frame);
            }
            3 => {
                let mut frame = if input.byte() & 1 == 0 {
                    template(4)
                } else {
                    template(8)
                };
                if frame[12..14] == [0x86, 0xdd] {
                    mutate(&mut frame, &mut input, 0..14);
                    // The router hands on IPv6 packets as IPv6.
                    frame[14] = 0x60 | (frame[14] & 0x0f);
                    let len = frame.len();
                    if let OutsideTx::Send { len: sent } = port.send(now, &mut frame) {
                        assert_eq!(sent, len);
                        assert_eq!(&frame[6..12], &OUR_MAC.0);
                    }
                    continue;
                }
                mutate(&mut frame, &mut input, 0..14);
                // What the shell sends comes from the router and the NAT with a valid
                // IPv4 header; the rest of the packet is arbitrary.
                let ihl = usize::from(frame.get(14).copied().unwrap_or(0) & 0x0f) * 4;
                if frame.get(14).map(|b| b >> 4) != Some(4) || ihl < 20 || frame.len() < 14 + ihl {
                    continue;
                }
                frame[24..26].fill(0);
                let sum = checksum::checksum(&frame[14..14 + ihl]);
                frame[24..26].copy_from_slice(&sum.to_be_bytes());
                let len = frame.len();
                if let OutsideTx::Send { len: sent } = port.send(now, &mut frame) {
                    assert_eq!(sent, len);
                    assert_eq!(&frame[6..12], &OUR_MAC.0);
                }
            }
            4 => {
                now = now + Duration::from_millis(100 * u64::from(input.byte()));
                port.handle_timeout(now);
            }
            _ => {}
        }
        while let Some(len) = port.poll_transmit(&mut buf) {
            check_sent(&buf[..len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_empty_short_and_template_inputs() {
        run(&[]);
        run(&[1, 0, 0, 0, 1, 0, 2, 0, 3, 0, 4, 200, 4, 200, 4, 200, 4, 200]);
        run(&[0xff; 64]);
        for which in 0..9 {
            run(&[7, 0, which, 0, 3, 0, 0, 4, 20]);
        }
    }
}

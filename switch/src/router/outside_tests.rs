//! Tests of the outside port with hand-built frames; etherparse checks what it sends.

use core::time::Duration;
use std::net::Ipv4Addr;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::outside::*;
use crate::{Instant, MacAddr};

const OUR_MAC: MacAddr = MacAddr([0x02, 0x42, 0xc6, 0x33, 0x64, 0x02]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const GW_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0xfe]);
const OUR_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const GW: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

fn port(gateway: Option<Ipv4Addr>) -> OutsidePort {
    OutsidePort::new(OutsideConfig::new(OUR_MAC, OUR_ADDR, 24, gateway))
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn arp(op: u8, eth_dst: MacAddr, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&eth_dst.0);
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op]);
    f.extend_from_slice(&sha.0);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa.octets());
    f
}

/// A UDP frame from `src` to `dst`, Ethernet from `eth_src` to `eth_dst`.
fn udp(eth_src: MacAddr, eth_dst: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(eth_src.0, eth_dst.0)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(5000, 53)
        .write(&mut f, b"hello")
        .unwrap();
    f
}

#[test]
fn arp_request_for_our_address_is_answered_and_the_sender_learned() {
    let mut p = port(None);
    let mut frame = arp(1, MacAddr::BROADCAST, PEER_MAC, PEER, OUR_ADDR);
    let OutsideRx::Reply { len } = p.handle_frame(t(0), &mut frame) else {
        panic!("no ARP reply");
    };
    let reply = SlicedPacket::from_ethernet(&frame[..len]).unwrap();
    let Some(NetSlice::Arp(a)) = reply.net else {
        panic!("not ARP");
    };
    assert_eq!(a.operation(), etherparse::ArpOperation::REPLY);
    assert_eq!(a.sender_hw_addr(), OUR_MAC.0);
    assert_eq!(a.sender_protocol_addr(), OUR_ADDR.octets());
    assert_eq!(a.target_hw_addr(), PEER_MAC.0);
    assert_eq!(&frame[..6], &PEER_MAC.0);
    // Learned: a packet to the peer leaves at once.
    let mut out = udp(MacAddr([0; 6]), MacAddr([0; 6]), OUR_ADDR, PEER);
    assert!(matches!(p.send(t(1), &mut out), OutsideTx::Send { .. }));
    assert_eq!(&out[..6], &PEER_MAC.0);
    assert_eq!(&out[6..12], &OUR_MAC.0);
    assert_eq!(p.counters().arp_answered, 1);
}

#[test]
fn arp_for_another_address_is_not_answered() {
    let mut p = port(None);
    let mut frame = arp(1, MacAddr::BROADCAST, PEER_MAC, PEER, GW);
    assert_eq!(p.handle_frame(t(0), &mut frame), OutsideRx::Consumed);
    // Not for us: the sender is not learned either (RFC 826 creates only for us).
    let mut out = udp(MacAddr([0; 6]), MacAddr([0; 6]), OUR_ADDR, PEER);
    assert_eq!(p.send(t(1), &mut out), OutsideTx::Queued);
}

#[test]
fn unresolved_next_hop_is_asked_for_and_the_packet_released_by_the_reply() {
    let mut p = port(Some(GW));
    let mut out = udp(MacAddr([0; 6]), MacAddr([0; 6]), OUR_ADDR, FAR);
    let original = out.clone();
    assert_eq!(p.send(t(0), &mut out), OutsideTx::Queued);
    let mut buf = vec![0u8; 2048];
    let len = p.poll_transmit(&mut buf).expect("an ARP request");
    {
        let request = SlicedPacket::from_ethernet(&buf[..len]).unwrap();
        let Some(NetSlice::Arp(a)) = request.net else {
            panic!("not ARP");
        };
        assert_eq!(a.operation(), etherparse::ArpOperation::REQUEST);
        assert_eq!(a.target_protocol_addr(), GW.octets());
    }
    assert_eq!(&buf[..6], &MacAddr::BROADCAST.0);
    assert_eq!(p.poll_transmit(&mut buf), None);

    let mut reply = arp(2, OUR_MAC, GW_MAC, GW, OUR_ADDR);
    assert_eq!(p.handle_frame(t(5), &mut reply), OutsideRx::Consumed);
    let len = p.poll_transmit(&mut buf).expect("the held packet");
    assert_eq!(&buf[..6], &GW_MAC.0);
    assert_eq!(&buf[6..12], &OUR_MAC.0);
    assert_eq!(&buf[14..len], &original[14..]);
}

#[test]
fn off_link_without_gateway_has_no_route() {
    let mut p = port(None);
    let mut out = udp(MacAddr([0; 6]), MacAddr([0; 6]), OUR_ADDR, FAR);
    assert_eq!(
        p.send(t(0), &mut out),
        OutsideTx::Drop(OutsideDrop::NoRoute)
    );
    assert_eq!(p.counters().dropped(OutsideDrop::NoRoute), 1);
}

#[test]
fn silent_next_hop_gives_up_after_three_requests() {
    let mut p = port(Some(GW));
    let mut out = udp(MacAddr([0; 6]), MacAddr([0; 6]), OUR_ADDR, FAR);
    assert_eq!(p.send(t(0), &mut out), OutsideTx::Queued);
    let mut buf = vec![0u8; 2048];
    let mut requests = 0;
    let mut now = t(0);
    for _ in 0..10 {
        while p.poll_transmit(&mut buf).is_some() {
            requests += 1;
        }
        now = now + Duration::from_millis(1100);
        p.handle_timeout(now);
    }
    assert_eq!(requests, 3);
    assert_eq!(p.counters().dropped(OutsideDrop::Unresolved), 1);
}

#[test]
fn echo_request_to_our_address_is_answered_with_valid_checksums() {
    let mut p = port(None);
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC.0, OUR_MAC.0)
        .ipv4(PEER.octets(), OUR_ADDR.octets(), 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut frame, b"ping")
        .unwrap();
    let OutsideRx::Reply { len } = p.handle_frame(t(0), &mut frame) else {
        panic!("no echo reply");
    };
    let reply = SlicedPacket::from_ethernet(&frame[..len]).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &reply.net else {
        panic!("not IPv4");
    };
    assert_eq!(ip.header().source_addr(), OUR_ADDR);
    assert_eq!(ip.header().destination_addr(), PEER);
    let Some(TransportSlice::Icmpv4(icmp)) = &reply.transport else {
        panic!("not ICMP");
    };
    assert_eq!(icmp.type_u8(), 0);
    let header = ip.header().to_header();
    assert_eq!(header.calc_header_checksum(), header.header_checksum);
    assert_eq!(
        icmp.icmp_type().calc_checksum(icmp.payload()),
        icmp.checksum()
    );
    assert_eq!(&frame[..6], &PEER_MAC.0);
}

#[test]
fn ip_packets_for_us_are_handed_on_without_padding() {
    let mut p = port(None);
    let mut frame = udp(PEER_MAC, OUR_MAC, PEER, OUR_ADDR);
    let ip_len = frame.len() - 14;
    frame.extend_from_slice(&[0; 20]);
    assert_eq!(
        p.handle_frame(t(0), &mut frame),
        OutsideRx::Packet {
            packet: 14..14 + ip_len
        }
    );
}

#[test]
fn foreign_broken_and_unsupported_frames_are_dropped_by_reason() {
    let mut p = port(None);
    let mut other = udp(PEER_MAC, GW_MAC, PEER, OUR_ADDR);
    assert_eq!(
        p.handle_frame(t(0), &mut other),
        OutsideRx::Drop(OutsideDrop::NotForUs)
    );
    let mut broadcast_ip = udp(PEER_MAC, MacAddr::BROADCAST, PEER, OUR_ADDR);
    assert_eq!(
        p.handle_frame(t(0), &mut broadcast_ip),
        OutsideRx::Drop(OutsideDrop::NotForUs)
    );
    let mut bad = udp(PEER_MAC, OUR_MAC, PEER, OUR_ADDR);
    bad[24] ^= 0xff; // header checksum
    assert_eq!(
        p.handle_frame(t(0), &mut bad),
        OutsideRx::Drop(OutsideDrop::Malformed)
    );
    let mut v6 = udp(PEER_MAC, OUR_MAC, PEER, OUR_ADDR);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(
        p.handle_frame(t(0), &mut v6),
        OutsideRx::Drop(OutsideDrop::UnsupportedEtherType)
    );
    for len in 0..20 {
        let mut short = udp(PEER_MAC, OUR_MAC, PEER, OUR_ADDR);
        short.truncate(len);
        assert!(matches!(
            p.handle_frame(t(0), &mut short),
            OutsideRx::Drop(_)
        ));
    }
    assert_eq!(p.counters().dropped(OutsideDrop::NotForUs), 2);
}

const OUR6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const PEER6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const FAR6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, 9);

fn port6() -> OutsidePort {
    let mut config = OutsideConfig::new(OUR_MAC, OUR_ADDR, 24, None);
    config.addr6 = Some((OUR6, 64));
    config.gateway6 = Some(PEER6);
    OutsidePort::new(config)
}

/// An NDP message (type 135 or 136) about `target` with a link-layer option.
fn ndp(
    kind: u8,
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    eth_dst: MacAddr,
    target: std::net::Ipv6Addr,
) -> Vec<u8> {
    let mut body = [0u8; 32];
    body[0] = kind;
    if kind == 136 {
        body[4] = 0x60;
    }
    body[8..24].copy_from_slice(&target.octets());
    body[24..26].copy_from_slice(&[if kind == 135 { 1 } else { 2 }, 1]);
    body[26..32].copy_from_slice(&PEER_MAC.0);
    super::ipv6::icmpv6_packet(Some((eth_dst, PEER_MAC)), src, dst, 255, &body)
}

fn udp6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC.0, OUR_MAC.0)
        .ipv6(src.octets(), dst.octets(), 64)
        .udp(5000, 53)
        .write(&mut f, b"hello")
        .unwrap();
    f
}

#[test]
fn neighbour_solicitation_for_our_ipv6_address_is_answered() {
    let mut p = port6();
    let group = super::ipv6::solicited_node(OUR6);
    let group_mac = MacAddr([0x33, 0x33, 0xff, 0, 0, 2]);
    let mut ns = ndp(135, PEER6, group, group_mac, OUR6);
    assert_eq!(p.handle_frame(t(0), &mut ns), OutsideRx::Consumed);
    let mut buf = vec![0u8; 2048];
    let len = p
        .poll_transmit(&mut buf)
        .expect("a neighbour advertisement");
    let na = SlicedPacket::from_ethernet(&buf[..len]).unwrap();
    let Some(TransportSlice::Icmpv6(icmp)) = &na.transport else {
        panic!("not ICMPv6");
    };
    assert_eq!(icmp.type_u8(), 136);
    let Some(NetSlice::Ipv6(ip)) = &na.net else {
        panic!("not IPv6");
    };
    assert_eq!(
        icmp.icmp_type()
            .calc_checksum(
                ip.header().source(),
                ip.header().destination(),
                icmp.payload()
            )
            .unwrap(),
        icmp.checksum()
    );
    assert_eq!(&buf[..6], &PEER_MAC.0);
    // The solicitor was learned: a packet to it leaves at once.
    let mut out = udp6(OUR6, PEER6);
    assert!(matches!(p.send(t(1), &mut out), OutsideTx::Send { .. }));
    assert_eq!(&out[..6], &PEER_MAC.0);
    assert_eq!(p.counters().ndp_answered, 1);
}

#[test]
fn ipv6_next_hop_is_solicited_and_the_packet_released_by_the_advertisement() {
    let mut p = port6();
    let mut out = udp6(OUR6, FAR6);
    let original = out.clone();
    assert_eq!(p.send(t(0), &mut out), OutsideTx::Queued);
    let mut buf = vec![0u8; 2048];
    let len = p.poll_transmit(&mut buf).expect("a neighbour solicitation");
    assert_eq!(&buf[..3], &[0x33, 0x33, 0xff]);
    assert_eq!(buf[54], 135);
    assert_eq!(&buf[62..78], &PEER6.octets());
    assert!(len >= 14 + 40 + 32);
    let mut na = ndp(136, PEER6, OUR6, OUR_MAC, PEER6);
    assert_eq!(p.handle_frame(t(5), &mut na), OutsideRx::Consumed);
    let len = p.poll_transmit(&mut buf).expect("the held packet");
    assert_eq!(&buf[..6], &PEER_MAC.0);
    assert_eq!(&buf[14..len], &original[14..]);
}

#[test]
fn ipv6_packets_are_handed_on_and_ipv6_needs_an_address() {
    let mut p = port6();
    let mut frame = udp6(FAR6, std::net::Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 5));
    let len = frame.len();
    assert_eq!(
        p.handle_frame(t(0), &mut frame),
        OutsideRx::Packet { packet: 14..len }
    );
    let mut v4_only = port(None);
    let mut frame = udp6(FAR6, OUR6);
    assert_eq!(
        v4_only.handle_frame(t(0), &mut frame),
        OutsideRx::Drop(OutsideDrop::UnsupportedEtherType)
    );
    let mut out = udp6(OUR6, PEER6);
    assert_eq!(
        v4_only.send(t(0), &mut out),
        OutsideTx::Drop(OutsideDrop::NoRoute)
    );
}

#[test]
fn echo6_to_our_address_is_answered() {
    let mut p = port6();
    let mut frame = Vec::new();
    PacketBuilder::ethernet2(PEER_MAC.0, OUR_MAC.0)
        .ipv6(PEER6.octets(), OUR6.octets(), 64)
        .icmpv6_echo_request(7, 1)
        .write(&mut frame, b"ping")
        .unwrap();
    let OutsideRx::Reply { len } = p.handle_frame(t(0), &mut frame) else {
        panic!("no echo reply");
    };
    let reply = SlicedPacket::from_ethernet(&frame[..len]).unwrap();
    let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) =
        (&reply.net, &reply.transport)
    else {
        panic!("not ICMPv6");
    };
    assert_eq!(icmp.type_u8(), 129);
    assert_eq!(ip.header().source_addr(), OUR6);
    assert_eq!(
        icmp.icmp_type()
            .calc_checksum(
                ip.header().source(),
                ip.header().destination(),
                icmp.payload()
            )
            .unwrap(),
        icmp.checksum()
    );
}

//! Unit tests of the router on hand-built frames, with etherparse as the independent
//! oracle for parsing and checksums.

use core::time::Duration;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{ArpOperation, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};

use super::fuzzing::{
    INTERNAL_GW_MAC, NET_INTERNAL, NET_SLIRP, SLIRP_GW_MAC, dhcp_message, frame_template,
    internal_network, ipv4_packet, ipv6_packet, slirp_network,
};
use super::*;

const HOST_MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x02, 0x0f]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x02, 0x10]);
const HOST4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const PEER4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 16);
const GW4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const REMOTE4: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);
const HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x15);
const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);
const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

fn t(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

/// A router with the slirp4netns-like network and the internal one, its initial RAs
/// drained.
fn router_with(config: RouterConfig) -> Router {
    let mut r = Router::new(config);
    r.add_network(NET_SLIRP, slirp_network()).unwrap();
    r.add_network(NET_INTERNAL, internal_network()).unwrap();
    drain(&mut r, t(0));
    r
}

fn router() -> Router {
    router_with(RouterConfig::default())
}

fn drain(r: &mut Router, now: Instant) -> Vec<(Transmit, Vec<u8>)> {
    let mut buf = vec![0u8; 65536 + 14];
    let mut out = Vec::new();
    while let Some(tx) = r.poll_transmit(now, &mut buf) {
        out.push((tx, buf[..tx.len].to_vec()));
    }
    out
}

/// Parses a frame with etherparse and asserts every checksum it carries is valid.
fn assert_valid(frame: &[u8]) -> SlicedPacket<'_> {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    check_checksums(&p);
    p
}

fn check_checksums(p: &SlicedPacket<'_>) {
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!(
                h.to_header().calc_header_checksum(),
                h.header_checksum(),
                "IPv4 header checksum"
            );
            let (s, d) = (h.source(), h.destination());
            match &p.transport {
                Some(TransportSlice::Icmpv4(icmp)) => assert_eq!(
                    icmp.header().icmp_type.calc_checksum(icmp.payload()),
                    icmp.checksum(),
                    "ICMP checksum"
                ),
                Some(TransportSlice::Udp(u)) => assert_eq!(
                    u.to_header()
                        .calc_checksum_ipv4_raw(s, d, u.payload())
                        .unwrap(),
                    u.checksum(),
                    "UDP checksum"
                ),
                Some(TransportSlice::Tcp(tcp)) => {
                    assert_eq!(
                        tcp.calc_checksum_ipv4(s, d).unwrap(),
                        tcp.checksum(),
                        "TCP checksum"
                    )
                }
                _ => {}
            }
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            let (s, d) = (h.source(), h.destination());
            match &p.transport {
                Some(TransportSlice::Icmpv6(icmp)) => {
                    assert!(icmp.is_checksum_valid(s, d), "ICMPv6 checksum")
                }
                Some(TransportSlice::Udp(u)) => assert_eq!(
                    u.to_header()
                        .calc_checksum_ipv6_raw(s, d, u.payload())
                        .unwrap(),
                    u.checksum(),
                    "UDP checksum"
                ),
                Some(TransportSlice::Tcp(tcp)) => {
                    assert_eq!(
                        tcp.calc_checksum_ipv6(s, d).unwrap(),
                        tcp.checksum(),
                        "TCP checksum"
                    )
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Parses a bare IP packet (an uplink transmit) and checks its checksums.
fn assert_valid_ip(packet: &[u8]) -> SlicedPacket<'_> {
    let p = SlicedPacket::from_ip(packet).expect("etherparse parses the packet");
    check_checksums(&p);
    p
}

fn eth_ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, df: bool, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&SLIRP_GW_MAC.0);
    f.extend_from_slice(&HOST_MAC.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ipv4_packet(src, dst, proto, ttl, df, l4));
    f
}

fn udp_to(dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(HOST_MAC.0, SLIRP_GW_MAC.0)
        .ipv4(HOST4.octets(), dst.octets(), ttl)
        .udp(40000, 53);
    let mut f = Vec::new();
    builder.write(&mut f, payload).unwrap();
    f
}

fn udp6_to(dst: Ipv6Addr, hop: u8, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(HOST_MAC.0, SLIRP_GW_MAC.0)
        .ipv6(HOST6.octets(), dst.octets(), hop)
        .udp(40000, 53);
    let mut f = Vec::new();
    builder.write(&mut f, payload).unwrap();
    f
}

fn uplink_frame(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f.extend_from_slice(ip);
    f
}

fn arp_from(sender_mac: MacAddr, sender: Ipv4Addr, target: Ipv4Addr, op: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&if op == 1 {
        MacAddr::BROADCAST.0
    } else {
        SLIRP_GW_MAC.0
    });
    f.extend_from_slice(&sender_mac.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op]);
    f.extend_from_slice(&sender_mac.0);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&if op == 1 { [0; 6] } else { SLIRP_GW_MAC.0 });
    f.extend_from_slice(&target.octets());
    f
}

fn arp_fields(frame: &[u8]) -> (ArpOperation, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Arp(arp)) = p.net else {
        panic!("not ARP")
    };
    (
        arp.operation(),
        arp.sender_hw_addr().to_vec(),
        arp.sender_protocol_addr().to_vec(),
        arp.target_hw_addr().to_vec(),
        arp.target_protocol_addr().to_vec(),
    )
}

#[test]
fn router_drop_all_lists_every_reason_once_in_index_order() {
    for (i, reason) in RouterDrop::ALL.iter().enumerate() {
        assert_eq!(reason.index(), i);
    }
    let mut names: Vec<_> = RouterDrop::ALL.iter().map(|r| r.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), RouterDrop::COUNT);
    assert_eq!(RouterDrop::TtlExceeded.to_string(), "ttl_exceeded");
}

#[test]
fn link_local_is_eui64_of_gateway_mac() {
    let ll = link_local_from_mac(MacAddr([0x02, 0x42, 0x0a, 0x00, 0x02, 0x02]));
    assert_eq!(ll, "fe80::42:aff:fe00:202".parse::<Ipv6Addr>().unwrap());
}

// ---- ARP ----

#[test]
fn arp_request_for_gateway_is_answered_in_place_and_sender_learned() {
    let mut r = router();
    let mut f = frame_template(NET_SLIRP, 0);
    let v = r.handle_frame(t(1), NET_SLIRP, &mut f);
    assert_eq!(v, RouterVerdict::Reply { len: 42 });
    assert_eq!(&f[0..6], &HOST_MAC.0);
    assert_eq!(&f[6..12], &SLIRP_GW_MAC.0);
    let (op, sha, spa, tha, tpa) = arp_fields(&f[..42]);
    assert_eq!(op, ArpOperation::REPLY);
    assert_eq!(sha, SLIRP_GW_MAC.0);
    assert_eq!(spa, GW4.octets());
    assert_eq!(tha, HOST_MAC.0);
    assert_eq!(tpa, HOST4.octets());
    assert_eq!(r.counters().arp_replies, 1);
    let n = r.neighbours(NET_SLIRP, t(1));
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].ip, n[0].mac), (IpAddr::V4(HOST4), HOST_MAC));
}

#[test]
fn arp_for_extra_address_is_answered_and_for_others_is_not_for_us() {
    let mut r = router();
    let mut f = arp_from(HOST_MAC, HOST4, Ipv4Addr::new(10, 0, 2, 3), 1);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Reply { len: 42 }
    );
    assert_eq!(arp_fields(&f).2, [10, 0, 2, 3]);
    let mut f = arp_from(PEER_MAC, PEER4, Ipv4Addr::new(10, 0, 2, 77), 1);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::NotForUs)
    );
    assert_eq!(r.counters().drops.get(RouterDrop::NotForUs), 1);
    // The gateway of another network is not ours on this one (from an unknown sender:
    // a known one would be refreshed, RFC 826's merge, and the frame consumed).
    let mut f = arp_from(
        PEER_MAC,
        Ipv4Addr::new(10, 0, 2, 40),
        Ipv4Addr::new(172, 18, 0, 1),
        1,
    );
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::NotForUs)
    );
}

#[test]
fn frames_for_other_macs_and_unknown_networks_are_dropped() {
    let mut r = router();
    let mut f = udp_to(REMOTE4, 64, b"x");
    f[0..6].copy_from_slice(&PEER_MAC.0);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::NotForUs)
    );
    let mut f = udp_to(REMOTE4, 64, b"x");
    assert_eq!(
        r.handle_frame(t(1), NetworkId(99), &mut f),
        RouterVerdict::Drop(RouterDrop::UnknownNetwork)
    );
    for len in 0..20 {
        let mut f = udp_to(REMOTE4, 64, b"x");
        f.truncate(len);
        assert!(matches!(
            r.handle_frame(t(1), NET_SLIRP, &mut f),
            RouterVerdict::Drop(_)
        ));
    }
}

// ---- IPv4 local ----

#[test]
fn echo_request_to_gateway_gets_in_place_reply_with_valid_checksums() {
    let mut r = router();
    let mut f = frame_template(NET_SLIRP, 1);
    let len = f.len();
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Reply { len }
    );
    let p = assert_valid(&f);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source_addr(), GW4);
    assert_eq!(ip.header().destination_addr(), HOST4);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!(icmp.type_u8(), 0);
    assert_eq!(icmp.payload(), b"ping");
    assert_eq!(&f[0..6], &HOST_MAC.0);
    assert_eq!(r.counters().echo_replies, 1);
}

#[test]
fn echo_request_with_bad_icmp_checksum_is_dropped() {
    let mut r = router();
    let mut f = frame_template(NET_SLIRP, 1);
    f[34 + 2] ^= 0xff;
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::BadChecksum)
    );
}

#[test]
fn own_address_traffic_goes_to_uplink_with_ttl_unchanged() {
    let mut r = router();
    let mut f = eth_ipv4(HOST4, GW4, 6, 1, true, &[0; 20]);
    let before = f.clone();
    let v = r.handle_frame(t(1), NET_SLIRP, &mut f);
    assert_eq!(
        v,
        RouterVerdict::Uplink {
            packet: 14..f.len()
        }
    );
    assert_eq!(f, before, "local delivery leaves the packet alone");
}

#[test]
fn udp_to_gateway_without_uplink_gets_port_unreachable() {
    let mut r = router();
    let host: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 5);
    let builder = PacketBuilder::ethernet2(HOST_MAC.0, INTERNAL_GW_MAC.0)
        .ipv4(host.octets(), [172, 18, 0, 1], 64)
        .udp(40000, 53);
    let mut f = Vec::new();
    builder.write(&mut f, b"query").unwrap();
    let original_ip = f[14..].to_vec();
    assert_eq!(
        r.handle_frame(t(1), NET_INTERNAL, &mut f),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    let (tx, frame) = &out[0];
    assert_eq!((tx.net, tx.to), (NET_INTERNAL, TransmitTo::Network));
    let p = assert_valid(frame);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source_addr(), Ipv4Addr::new(172, 18, 0, 1));
    assert_eq!(ip.header().destination_addr(), host);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 3));
    assert_eq!(
        icmp.payload(),
        &original_ip[..],
        "the whole small packet is quoted"
    );
    assert_eq!(r.counters().icmp_errors_sent, 1);
}

#[test]
fn tcp_syn_to_gateway_without_uplink_gets_rst_ack() {
    let mut r = router();
    let host = Ipv4Addr::new(172, 18, 0, 5);
    let builder = PacketBuilder::ethernet2(HOST_MAC.0, INTERNAL_GW_MAC.0)
        .ipv4(host.octets(), [172, 18, 0, 1], 64)
        .tcp(40000, 80, 1000, 64240)
        .syn();
    let mut f = Vec::new();
    builder.write(&mut f, &[]).unwrap();
    assert_eq!(
        r.handle_frame(t(1), NET_INTERNAL, &mut f),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    let p = assert_valid(&out[0].1);
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!()
    };
    assert!(tcp.rst() && tcp.ack());
    assert_eq!((tcp.source_port(), tcp.destination_port()), (80, 40000));
    assert_eq!(tcp.sequence_number(), 0);
    assert_eq!(
        tcp.acknowledgment_number(),
        1001,
        "SEG.SEQ + SEG.LEN, SYN counts one"
    );
    assert_eq!(r.counters().tcp_resets_sent, 1);
}

#[test]
fn other_protocol_to_gateway_without_uplink_gets_protocol_unreachable() {
    let mut r = router();
    let mut f = eth_ipv4(
        Ipv4Addr::new(172, 18, 0, 5),
        Ipv4Addr::new(172, 18, 0, 1),
        47,
        64,
        false,
        &[0; 8],
    );
    f[0..6].copy_from_slice(&INTERNAL_GW_MAC.0);
    assert_eq!(
        r.handle_frame(t(1), NET_INTERNAL, &mut f),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    let p = assert_valid(&out[0].1);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 2));
}

// ---- IPv4 forwarding ----

#[test]
fn forwarded_packet_has_ttl_decremented_and_checksum_equal_to_recomputation() {
    let mut r = router();
    for ttl in [2u8, 64, 255] {
        let mut f = udp_to(REMOTE4, ttl, b"hello");
        let v = r.handle_frame(t(1), NET_SLIRP, &mut f);
        assert_eq!(
            v,
            RouterVerdict::Uplink {
                packet: 14..f.len()
            }
        );
        let ip = &f[14..];
        assert_eq!(ip[8], ttl - 1);
        let header = etherparse::Ipv4HeaderSlice::from_slice(ip).unwrap();
        assert_eq!(
            header.to_header().calc_header_checksum(),
            header.header_checksum()
        );
        assert_valid_ip(ip);
    }
    let c = r.counters();
    assert_eq!(c.to_uplink_packets, 3);
    assert!(drain(&mut r, t(1)).is_empty());
}

#[test]
fn ethernet_padding_is_not_forwarded() {
    let mut r = router();
    let mut f = udp_to(REMOTE4, 64, b"");
    let ip_len = f.len() - 14;
    f.resize(60, 0);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Uplink {
            packet: 14..14 + ip_len
        }
    );
}

#[test]
fn ttl_one_gets_time_exceeded_quoting_the_original_header() {
    let mut r = router();
    let mut f = udp_to(REMOTE4, 1, b"trace");
    let original = f[14..].to_vec();
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::TtlExceeded)
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    let p = assert_valid(&out[0].1);
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source_addr(), GW4);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (11, 0));
    assert_eq!(icmp.payload(), &original[..]);
    assert_eq!(r.counters().drops.get(RouterDrop::TtlExceeded), 1);
}

#[test]
fn df_packet_over_uplink_mtu_gets_fragmentation_needed_with_next_hop_mtu() {
    let mut r = router_with(RouterConfig {
        uplink_mtu: 1280,
        ..RouterConfig::default()
    });
    let mut f = eth_ipv4(HOST4, REMOTE4, 17, 64, true, &[0u8; 1400]);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::TooBig)
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    let p = assert_valid(&out[0].1);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 4));
    assert_eq!(icmp.bytes5to8(), [0, 0, 0x05, 0x00], "next-hop MTU 1280");
    assert!(out[0].1.len() - 14 <= 576, "RFC 1812 4.3.2.3");
    assert_eq!(icmp.payload().len(), 576 - 28);
}

#[test]
fn packet_over_uplink_mtu_without_df_is_fragmented() {
    let mut r = router_with(RouterConfig {
        uplink_mtu: 1280,
        ..RouterConfig::default()
    });
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let mut f = eth_ipv4(HOST4, REMOTE4, 17, 64, false, &payload);
    let original_l4 = f[34..].to_vec();
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 3);
    let mut data = Vec::new();
    for (i, (tx, ip)) in out.iter().enumerate() {
        assert_eq!(tx.to, TransmitTo::Uplink);
        assert!(ip.len() <= 1280);
        let h = etherparse::Ipv4HeaderSlice::from_slice(ip).unwrap();
        assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        assert_eq!(h.ttl(), 63);
        assert_eq!(h.more_fragments(), i < 2);
        assert_eq!(usize::from(h.fragments_offset().value()) * 8, data.len());
        data.extend_from_slice(&ip[20..]);
    }
    assert_eq!(
        data, original_l4,
        "fragments reassemble to the original payload"
    );
    assert_eq!(r.counters().fragments_created, 3);
}

#[test]
fn bad_ipv4_header_checksum_is_dropped_and_counted() {
    let mut r = router();
    let mut f = udp_to(REMOTE4, 64, b"x");
    f[14 + 10] ^= 0x55;
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::BadChecksum)
    );
    assert_eq!(r.counters().drops.get(RouterDrop::BadChecksum), 1);
    assert!(drain(&mut r, t(1)).is_empty());
}

#[test]
fn malformed_ipv4_headers_are_dropped() {
    let mut r = router();
    for (at, value) in [(14, 0x44u8), (14, 0x65), (16, 0xff)] {
        let mut f = udp_to(REMOTE4, 64, b"x");
        f[at] = value;
        assert_eq!(
            r.handle_frame(t(1), NET_SLIRP, &mut f),
            RouterVerdict::Drop(RouterDrop::Malformed),
            "byte {at} = {value:#x}"
        );
    }
}

#[test]
fn networks_are_isolated() {
    let mut r = router();
    let mut f = udp_to(Ipv4Addr::new(172, 18, 0, 5), 64, b"x");
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::NoRoute)
    );
    // Not even the other network's gateway answers.
    let mut f = eth_ipv4(
        HOST4,
        Ipv4Addr::new(172, 18, 0, 1),
        1,
        64,
        false,
        &[8, 0, 0, 0, 0, 1, 0, 1],
    );
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::NoRoute)
    );
    // From the uplink, only the network's own subnet is delivered.
    let mut f = uplink_frame(&ipv4_packet(
        REMOTE4,
        Ipv4Addr::new(172, 18, 0, 5),
        17,
        64,
        false,
        &[0; 8],
    ));
    assert_eq!(
        r.handle_uplink(t(1), NET_SLIRP, &mut f),
        UplinkVerdict::Drop(RouterDrop::NoRoute)
    );
    assert!(drain(&mut r, t(1)).is_empty(), "silently");
}

#[test]
fn internal_network_gets_administratively_prohibited() {
    let mut r = router();
    let mut f = eth_ipv4(
        Ipv4Addr::new(172, 18, 0, 5),
        REMOTE4,
        17,
        64,
        false,
        &[0; 8],
    );
    f[0..6].copy_from_slice(&INTERNAL_GW_MAC.0);
    assert_eq!(
        r.handle_frame(t(1), NET_INTERNAL, &mut f),
        RouterVerdict::Drop(RouterDrop::EgressDenied)
    );
    let out = drain(&mut r, t(1));
    let p = assert_valid(&out[0].1);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 13));
}

#[test]
fn hairpin_forwards_back_into_the_network_to_a_resolved_neighbour() {
    let mut r = router();
    let mut arp = arp_from(PEER_MAC, PEER4, GW4, 1);
    r.handle_frame(t(1), NET_SLIRP, &mut arp);
    let mut f = udp_to(PEER4, 64, b"hairpin");
    let len = f.len();
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Reply { len }
    );
    assert_eq!(&f[0..6], &PEER_MAC.0);
    assert_eq!(&f[6..12], &SLIRP_GW_MAC.0);
    assert_eq!(f[14 + 8], 63);
    assert_valid(&f);
    assert_eq!(r.counters().hairpinned, 1);
}

#[test]
fn icmp_errors_are_rate_limited_and_suppressed_ones_counted() {
    let mut r = router_with(RouterConfig {
        icmp_errors_per_sec: 1,
        icmp_burst: 2,
        ..RouterConfig::default()
    });
    for _ in 0..5 {
        let mut f = udp_to(REMOTE4, 1, b"x");
        r.handle_frame(t(1), NET_SLIRP, &mut f);
    }
    assert_eq!(drain(&mut r, t(1)).len(), 2);
    let c = r.counters();
    assert_eq!((c.icmp_errors_sent, c.icmp_errors_suppressed), (2, 3));
    let mut f = udp_to(REMOTE4, 1, b"x");
    r.handle_frame(t(2), NET_SLIRP, &mut f);
    assert_eq!(drain(&mut r, t(2)).len(), 1, "a token per second");
}

#[test]
fn no_icmp_error_about_an_icmp_error_or_a_broadcast() {
    let mut r = router();
    // An ICMP error (port unreachable) with TTL 1.
    let mut f = eth_ipv4(HOST4, REMOTE4, 1, 1, false, &[3, 3, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::TtlExceeded)
    );
    assert!(drain(&mut r, t(1)).is_empty());
    // A limited broadcast is not routed and not answered.
    let mut f = udp_to(Ipv4Addr::BROADCAST, 64, b"x");
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::NotForUs)
    );
    assert!(drain(&mut r, t(1)).is_empty());
}

// ---- Uplink -> network, ARP resolution ----

#[test]
fn uplink_packet_to_resolved_host_gets_ethernet_header_in_place() {
    let mut r = router();
    let mut arp = frame_template(NET_SLIRP, 0);
    r.handle_frame(t(1), NET_SLIRP, &mut arp);
    let ip = ipv4_packet(REMOTE4, HOST4, 17, 50, false, &[0; 16]);
    let mut f = uplink_frame(&ip);
    let len = f.len();
    assert_eq!(
        r.handle_uplink(t(2), NET_SLIRP, &mut f),
        UplinkVerdict::ToNetwork { len }
    );
    assert_eq!(&f[0..6], &HOST_MAC.0);
    assert_eq!(&f[6..12], &SLIRP_GW_MAC.0);
    assert_eq!(&f[12..14], &[0x08, 0x00]);
    assert_eq!(&f[14..], &ip[..], "TTL not decremented");
    assert_eq!(r.counters().from_uplink_packets, 1);
}

#[test]
fn uplink_packet_to_unresolved_host_is_queued_then_released_after_arp_reply() {
    let mut r = router();
    let ip = ipv4_packet(REMOTE4, PEER4, 17, 50, false, &[1; 16]);
    let mut f = uplink_frame(&ip);
    assert_eq!(
        r.handle_uplink(t(1), NET_SLIRP, &mut f),
        UplinkVerdict::Queued
    );
    let mut f2 = uplink_frame(&ip);
    assert_eq!(
        r.handle_uplink(t(1), NET_SLIRP, &mut f2),
        UplinkVerdict::Queued
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1, "one ARP request for both packets");
    let (op, sha, spa, _, tpa) = arp_fields(&out[0].1);
    assert_eq!(op, ArpOperation::REQUEST);
    assert_eq!(&out[0].1[0..6], &MacAddr::BROADCAST.0);
    assert_eq!(
        (sha, spa, tpa),
        (
            SLIRP_GW_MAC.0.to_vec(),
            GW4.octets().to_vec(),
            PEER4.octets().to_vec()
        )
    );
    assert_eq!(r.counters().arp_requests_sent, 1);

    let mut reply = arp_from(PEER_MAC, PEER4, GW4, 2);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut reply),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 2);
    for (tx, frame) in &out {
        assert_eq!(tx.to, TransmitTo::Network);
        assert_eq!(&frame[0..6], &PEER_MAC.0);
        assert_eq!(&frame[14..], &ip[..]);
    }
}

#[test]
fn uplink_packet_to_silent_host_gives_host_unreachable_after_three_tries() {
    let mut r = router();
    let ip = ipv4_packet(REMOTE4, PEER4, 17, 50, false, &[1; 16]);
    let mut f = uplink_frame(&ip);
    assert_eq!(
        r.handle_uplink(t(10), NET_SLIRP, &mut f),
        UplinkVerdict::Queued
    );
    let mut requests = drain(&mut r, t(10)).len();
    let mut now = t(10);
    let mut unreachable = None;
    for _ in 0..10 {
        let Some(at) = r.poll_timeout() else { break };
        now = at.max(now);
        r.handle_timeout(now);
        for (tx, frame) in drain(&mut r, now) {
            match tx.to {
                TransmitTo::Network => requests += 1,
                TransmitTo::Uplink => unreachable = Some((now, frame)),
            }
        }
        if unreachable.is_some() {
            break;
        }
    }
    assert_eq!(requests, 3);
    let (at, packet) = unreachable.expect("host unreachable");
    assert_eq!(at, t(13));
    let p = assert_valid_ip(&packet);
    let Some(NetSlice::Ipv4(h)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (h.header().source_addr(), h.header().destination_addr()),
        (GW4, REMOTE4)
    );
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 1));
    assert_eq!(r.counters().drops.get(RouterDrop::Unresolved), 1);
}

#[test]
fn pending_packets_per_neighbour_are_bounded() {
    let mut r = router_with(RouterConfig {
        pending_per_neighbour: 2,
        ..RouterConfig::default()
    });
    let ip = ipv4_packet(REMOTE4, PEER4, 17, 50, false, &[1; 16]);
    let verdicts: Vec<_> = (0..4)
        .map(|_| r.handle_uplink(t(1), NET_SLIRP, &mut uplink_frame(&ip)))
        .collect();
    assert_eq!(
        verdicts[..2],
        [UplinkVerdict::Queued, UplinkVerdict::Queued]
    );
    assert_eq!(
        verdicts[2..],
        [
            UplinkVerdict::Drop(RouterDrop::QueueFull),
            UplinkVerdict::Drop(RouterDrop::QueueFull)
        ]
    );
    assert_eq!(r.counters().drops.get(RouterDrop::QueueFull), 2);
}

#[test]
fn neighbour_expires_without_confirmation_and_is_probed_before() {
    let mut r = router_with(RouterConfig {
        neighbour_timeout: Duration::from_secs(60),
        ..RouterConfig::default()
    });
    let mut arp = frame_template(NET_SLIRP, 0);
    r.handle_frame(t(0), NET_SLIRP, &mut arp);
    let ip = ipv4_packet(REMOTE4, HOST4, 17, 50, false, &[0; 8]);
    // Used in the last quarter: delivered, plus one unicast refresh probe.
    assert!(matches!(
        r.handle_uplink(t(50), NET_SLIRP, &mut uplink_frame(&ip)),
        UplinkVerdict::ToNetwork { .. }
    ));
    let out = drain(&mut r, t(50));
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[0..6], &HOST_MAC.0, "unicast probe");
    assert!(matches!(
        r.handle_uplink(t(51), NET_SLIRP, &mut uplink_frame(&ip)),
        UplinkVerdict::ToNetwork { .. }
    ));
    assert!(drain(&mut r, t(51)).is_empty(), "one probe only");
    // No answer: gone at 60 s.
    r.handle_timeout(t(60));
    assert!(r.neighbours(NET_SLIRP, t(60)).is_empty());
    assert_eq!(r.counters().neighbours_expired, 1);
    assert_eq!(
        r.handle_uplink(t(61), NET_SLIRP, &mut uplink_frame(&ip)),
        UplinkVerdict::Queued
    );
}

#[test]
fn arp_from_a_known_neighbour_refreshes_it() {
    let mut r = router();
    let mut arp = frame_template(NET_SLIRP, 0);
    r.handle_frame(t(0), NET_SLIRP, &mut arp);
    // A request for someone else still refreshes the known sender (RFC 826 merge).
    let mut other = arp_from(HOST_MAC, HOST4, PEER4, 1);
    assert_eq!(
        r.handle_frame(t(50), NET_SLIRP, &mut other),
        RouterVerdict::Consumed
    );
    r.handle_timeout(t(100));
    assert_eq!(r.neighbours(NET_SLIRP, t(100)).len(), 1);
}

#[test]
fn uplink_df_packet_over_network_mtu_gets_frag_needed_back_to_the_uplink() {
    let mut r = router();
    let ip = ipv4_packet(REMOTE4, HOST4, 17, 50, true, &[0; 1600]);
    let mut f = uplink_frame(&ip);
    assert_eq!(
        r.handle_uplink(t(1), NET_SLIRP, &mut f),
        UplinkVerdict::Drop(RouterDrop::TooBig)
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.to, TransmitTo::Uplink);
    let p = assert_valid_ip(&out[0].1);
    let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 4));
    assert_eq!(icmp.bytes5to8(), [0, 0, 0x05, 0xdc], "MTU 1500");
}

#[test]
fn uplink_packet_over_network_mtu_without_df_is_fragmented_for_the_network() {
    let mut r = router();
    let mut arp = frame_template(NET_SLIRP, 0);
    r.handle_frame(t(0), NET_SLIRP, &mut arp);
    let ip = ipv4_packet(REMOTE4, HOST4, 17, 50, false, &[9; 2000]);
    assert_eq!(
        r.handle_uplink(t(1), NET_SLIRP, &mut uplink_frame(&ip)),
        UplinkVerdict::Queued
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 2);
    for (_, frame) in &out {
        assert!(frame.len() - 14 <= 1500);
        assert_eq!(&frame[0..6], &HOST_MAC.0);
        assert_valid(frame);
    }
}

// ---- DHCP ----

fn dhcp_frame(msg: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(HOST_MAC.0, MacAddr::BROADCAST.0)
        .ipv4([0; 4], [255; 4], 64)
        .udp(68, 67);
    let mut f = Vec::new();
    builder.write(&mut f, msg).unwrap();
    f
}

/// Options of a DHCP reply, by code, and the yiaddr.
fn dhcp_reply(frame: &[u8]) -> (Ipv4Addr, HashMap<u8, Vec<u8>>) {
    let p = assert_valid(frame);
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!((udp.source_port(), udp.destination_port()), (67, 68));
    let m = udp.payload();
    assert!(m.len() >= 300);
    assert_eq!(m[0], 2, "BOOTREPLY");
    assert_eq!(&m[236..240], &[99, 130, 83, 99]);
    let yiaddr = Ipv4Addr::new(m[16], m[17], m[18], m[19]);
    let mut options = HashMap::new();
    let mut i = 240;
    while i < m.len() && m[i] != 255 {
        if m[i] == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(m[i + 1]);
        options.insert(m[i], m[i + 2..i + 2 + len].to_vec());
        i += 2 + len;
    }
    (yiaddr, options)
}

#[test]
fn dhcp_dora_hands_out_address_router_dns_mtu_and_lease() {
    let mut r = router();
    let discover = dhcp_message(HOST_MAC, 1, None, None, Ipv4Addr::UNSPECIFIED, false);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut dhcp_frame(&discover)),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    let (yiaddr, o) = dhcp_reply(&out[0].1);
    assert_eq!(yiaddr, Ipv4Addr::new(10, 0, 2, 15), "first pool address");
    assert_eq!(o[&53], [2], "OFFER");
    assert_eq!(o[&54], GW4.octets());
    assert_eq!(o[&1], [255, 255, 255, 0]);
    assert_eq!(o[&3], GW4.octets());
    assert_eq!(o[&6], [10, 0, 2, 3]);
    assert_eq!(o[&26], 1500u16.to_be_bytes());
    assert_eq!(o[&51], 3600u32.to_be_bytes());
    assert_eq!(o[&58], 1800u32.to_be_bytes());
    assert_eq!(o[&59], 3150u32.to_be_bytes());
    // No broadcast flag and no ciaddr: unicast to yiaddr at chaddr.
    assert_eq!(&out[0].1[0..6], &HOST_MAC.0);
    assert_eq!(&out[0].1[30..34], &[10, 0, 2, 15]);

    let request = dhcp_message(
        HOST_MAC,
        3,
        Some(yiaddr),
        Some(GW4),
        Ipv4Addr::UNSPECIFIED,
        true,
    );
    assert_eq!(
        r.handle_frame(t(2), NET_SLIRP, &mut dhcp_frame(&request)),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(2));
    let (acked, o) = dhcp_reply(&out[0].1);
    assert_eq!((acked, o[&53].as_slice()), (yiaddr, &[5u8][..]), "ACK");
    assert_eq!(
        &out[0].1[0..6],
        &MacAddr::BROADCAST.0,
        "BROADCAST flag honoured"
    );
    assert_eq!(r.counters().dhcp_leases, 1);
    let leases = r.dhcp_leases(NET_SLIRP, t(2));
    assert_eq!(leases.len(), 1);
    assert!(leases[0].bound && leases[0].ip == yiaddr);

    // A second client gets the next address; the lease expires after an hour.
    let discover = dhcp_message(PEER_MAC, 1, None, None, Ipv4Addr::UNSPECIFIED, true);
    r.handle_frame(t(3), NET_SLIRP, &mut dhcp_frame(&discover));
    let (second, _) = dhcp_reply(&drain(&mut r, t(3))[0].1);
    assert_eq!(second, Ipv4Addr::new(10, 0, 2, 16));
    r.handle_timeout(t(3700));
    assert!(r.dhcp_leases(NET_SLIRP, t(3700)).is_empty());
}

#[test]
fn dhcp_static_lease_wins_over_the_pool() {
    let mut r = router();
    let fixed = Ipv4Addr::new(10, 0, 2, 100);
    r.set_static_lease(NET_SLIRP, HOST_MAC, fixed).unwrap();
    let discover = dhcp_message(HOST_MAC, 1, None, None, Ipv4Addr::UNSPECIFIED, true);
    r.handle_frame(t(1), NET_SLIRP, &mut dhcp_frame(&discover));
    let (offered, _) = dhcp_reply(&drain(&mut r, t(1))[0].1);
    assert_eq!(offered, fixed);
    assert_eq!(r.remove_static_lease(NET_SLIRP, HOST_MAC), Some(fixed));
    assert_eq!(
        r.set_static_lease(NetworkId(42), HOST_MAC, fixed),
        Err(ConfigError::UnknownNetwork(NetworkId(42)))
    );
}

#[test]
fn dhcp_request_for_a_wrong_address_gets_nak() {
    let mut r = router();
    r.set_static_lease(NET_SLIRP, HOST_MAC, Ipv4Addr::new(10, 0, 2, 100))
        .unwrap();
    let request = dhcp_message(
        HOST_MAC,
        3,
        Some(Ipv4Addr::new(10, 0, 2, 20)),
        None,
        Ipv4Addr::UNSPECIFIED,
        false,
    );
    r.handle_frame(t(1), NET_SLIRP, &mut dhcp_frame(&request));
    let out = drain(&mut r, t(1));
    let (_, o) = dhcp_reply(&out[0].1);
    assert_eq!(o[&53], [6], "NAK");
    assert_eq!(&out[0].1[0..6], &MacAddr::BROADCAST.0);
    assert_eq!(r.counters().dhcp_naks, 1);
}

#[test]
fn dhcp_renewal_is_acked_unicast_and_release_frees_the_address() {
    let mut r = router();
    let ip = Ipv4Addr::new(10, 0, 2, 15);
    let request = dhcp_message(HOST_MAC, 3, Some(ip), None, Ipv4Addr::UNSPECIFIED, false);
    r.handle_frame(t(1), NET_SLIRP, &mut dhcp_frame(&request));
    assert_eq!(
        dhcp_reply(&drain(&mut r, t(1))[0].1).1[&53],
        [5],
        "INIT-REBOOT adopts a free pool address"
    );
    let renew = dhcp_message(HOST_MAC, 3, None, None, ip, false);
    let builder = PacketBuilder::ethernet2(HOST_MAC.0, SLIRP_GW_MAC.0)
        .ipv4(ip.octets(), GW4.octets(), 64)
        .udp(68, 67);
    let mut f = Vec::new();
    builder.write(&mut f, &renew).unwrap();
    r.handle_frame(t(2), NET_SLIRP, &mut f);
    let out = drain(&mut r, t(2));
    assert_eq!(&out[0].1[30..34], &ip.octets(), "to ciaddr");
    assert_eq!(dhcp_reply(&out[0].1).1[&53], [5]);
    let release = dhcp_message(HOST_MAC, 7, None, Some(GW4), ip, false);
    r.handle_frame(t(3), NET_SLIRP, &mut dhcp_frame(&release));
    assert!(r.dhcp_leases(NET_SLIRP, t(3)).is_empty());
}

// ---- IPv6 ----

fn icmpv6_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    body: &[u8],
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&ipv6_packet(src, dst, 58, hop, body));
    f
}

#[test]
fn adding_a_network_queues_an_initial_router_advertisement() {
    let mut r = Router::new(RouterConfig::default());
    r.add_network(NET_SLIRP, slirp_network()).unwrap();
    assert_eq!(r.poll_timeout(), Some(Instant::ZERO));
    let out = drain(&mut r, t(0));
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
    // The schedule is anchored on the first timeout; then every ra_interval.
    r.handle_timeout(t(5));
    assert_eq!(r.poll_timeout(), Some(t(205)));
    r.handle_timeout(t(205));
    assert_eq!(drain(&mut r, t(205)).len(), 1);
    assert_eq!(r.poll_timeout(), Some(t(405)));
}

#[test]
fn router_solicitation_gets_advertisement_with_prefix_mtu_and_rdnss() {
    let mut r = router();
    let mut f = frame_template(NET_SLIRP, 6);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    let frame = &out[0].1;
    let p = assert_valid(frame);
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(ip.header().source_addr(), r.link_local(NET_SLIRP).unwrap());
    assert_eq!(
        ip.header().destination_addr(),
        link_local_from_mac(HOST_MAC),
        "unicast to the solicitor"
    );
    assert_eq!(ip.header().hop_limit(), 255);
    let ra = &frame[54..];
    assert_eq!(ra[0], 134);
    assert_eq!(u16::from_be_bytes([ra[6], ra[7]]), 1800, "router lifetime");
    let mut options = HashMap::new();
    let mut o = &ra[16..];
    while !o.is_empty() {
        let len = usize::from(o[1]) * 8;
        options.insert(o[0], o[..len].to_vec());
        o = &o[len..];
    }
    assert_eq!(&options[&1][2..8], &SLIRP_GW_MAC.0);
    assert_eq!(
        u32::from_be_bytes(options[&5][4..8].try_into().unwrap()),
        1500
    );
    let pio = &options[&3];
    assert_eq!((pio[2], pio[3]), (64, 0xc0), "/64 with L and A");
    assert_eq!(
        &pio[16..32],
        &"fd00::".parse::<Ipv6Addr>().unwrap().octets()
    );
    let rdnss = &options[&25];
    assert_eq!(
        &rdnss[8..24],
        &"fd00::3".parse::<Ipv6Addr>().unwrap().octets()
    );
}

#[test]
fn internal_network_advertises_no_default_route() {
    let mut r = Router::new(RouterConfig::default());
    r.add_network(NET_INTERNAL, internal_network()).unwrap();
    let out = drain(&mut r, t(0));
    let ra = &out[0].1[54..];
    assert_eq!(u16::from_be_bytes([ra[6], ra[7]]), 0);
}

#[test]
fn neighbour_solicitation_for_gateway_gets_solicited_advertisement() {
    let mut r = router();
    let mut f = frame_template(NET_SLIRP, 7);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    let frame = &out[0].1;
    let p = assert_valid(frame);
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (ip.header().source_addr(), ip.header().destination_addr()),
        (GW6, HOST6)
    );
    assert_eq!(&frame[0..6], &HOST_MAC.0);
    let na = &frame[54..];
    assert_eq!(na[0], 136);
    assert_eq!(na[4], 0xe0, "router, solicited, override");
    assert_eq!(&na[8..24], &GW6.octets());
    assert_eq!(
        &na[24..32],
        &[2, 1, 2, 0x42, 10, 0, 2, 2],
        "target link-layer address"
    );
    assert_eq!(
        r.neighbours(NET_SLIRP, t(1))[0].ip,
        IpAddr::V6(HOST6),
        "sender learned"
    );
}

#[test]
fn neighbour_solicitation_for_link_local_is_answered() {
    let mut r = router();
    let ll = r.link_local(NET_SLIRP).unwrap();
    let group = ipv6::solicited_node(ll);
    let o = group.octets();
    let mut body = vec![135, 0, 0, 0, 0, 0, 0, 0];
    body.extend_from_slice(&ll.octets());
    let mut f = icmpv6_frame(
        HOST_MAC,
        MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]]),
        link_local_from_mac(HOST_MAC),
        group,
        255,
        &body,
    );
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    assert_eq!(&out[0].1[54 + 8..54 + 24], &ll.octets());
}

#[test]
fn ndp_with_wrong_hop_limit_is_dropped() {
    let mut r = router();
    let mut f = frame_template(NET_SLIRP, 7);
    f[14 + 7] = 64;
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::Malformed)
    );
}

#[test]
fn icmpv6_echo_to_gateway_gets_in_place_reply() {
    let mut r = router();
    let mut f = frame_template(NET_SLIRP, 8);
    let len = f.len();
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Reply { len }
    );
    let p = assert_valid(&f);
    let Some(NetSlice::Ipv6(ip)) = &p.net else {
        panic!()
    };
    assert_eq!(
        (ip.header().source_addr(), ip.header().destination_addr()),
        (GW6, HOST6)
    );
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!(icmp.type_u8(), 129);
    assert_eq!(&f[0..6], &HOST_MAC.0);
}

#[test]
fn ipv6_forward_decrements_hop_limit() {
    let mut r = router();
    let mut f = udp6_to(REMOTE6, 64, b"x");
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Uplink {
            packet: 14..f.len()
        }
    );
    assert_eq!(f[14 + 7], 63);
    assert_valid(&f);
}

#[test]
fn ipv6_hop_limit_one_gets_time_exceeded() {
    let mut r = router();
    let mut f = udp6_to(REMOTE6, 1, b"x");
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::TtlExceeded)
    );
    let out = drain(&mut r, t(1));
    let p = assert_valid(&out[0].1);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (3, 0));
}

#[test]
fn ipv6_packet_over_uplink_mtu_gets_packet_too_big() {
    let mut r = router_with(RouterConfig {
        uplink_mtu: 1280,
        ..RouterConfig::default()
    });
    let mut f = udp6_to(REMOTE6, 64, &[0; 1400]);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::TooBig)
    );
    let out = drain(&mut r, t(1));
    let p = assert_valid(&out[0].1);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (2, 0));
    assert_eq!(icmp.bytes5to8(), 1280u32.to_be_bytes());
    assert!(out[0].1.len() - 14 <= 1280);
}

#[test]
fn ipv6_udp_to_gateway_without_uplink_gets_port_unreachable() {
    let mut r = router();
    let host = Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 5);
    let builder = PacketBuilder::ethernet2(HOST_MAC.0, INTERNAL_GW_MAC.0)
        .ipv6(
            host.octets(),
            [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            64,
        )
        .udp(40000, 53);
    let mut f = Vec::new();
    builder.write(&mut f, b"q").unwrap();
    assert_eq!(
        r.handle_frame(t(1), NET_INTERNAL, &mut f),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    let p = assert_valid(&out[0].1);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (1, 4));
}

#[test]
fn uplink_ipv6_is_resolved_by_ndp_and_released_on_advertisement() {
    let mut r = router();
    let ip = ipv6_packet(REMOTE6, HOST6, 17, 50, &[0, 53, 0, 1, 0, 9, 0, 0, 7]);
    assert_eq!(
        r.handle_uplink(t(1), NET_SLIRP, &mut uplink_frame(&ip)),
        UplinkVerdict::Queued
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    let ns = &out[0].1;
    assert_valid(ns);
    assert_eq!(
        &ns[0..6],
        &[0x33, 0x33, 0xff, 0, 0, 0x15],
        "solicited-node MAC"
    );
    assert_eq!(ns[54], 135);
    assert_eq!(&ns[54 + 8..54 + 24], &HOST6.octets());
    let mut body = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
    body.extend_from_slice(&HOST6.octets());
    body.extend_from_slice(&[2, 1]);
    body.extend_from_slice(&HOST_MAC.0);
    let mut na = icmpv6_frame(HOST_MAC, SLIRP_GW_MAC, HOST6, GW6, 255, &body);
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut na),
        RouterVerdict::Consumed
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out.len(), 1);
    assert_eq!(&out[0].1[0..6], &HOST_MAC.0);
    assert_eq!(&out[0].1[14..], &ip[..]);
}

#[test]
fn uplink_ipv6_over_network_mtu_gets_packet_too_big_to_the_uplink() {
    let mut r = router();
    let ip = ipv6_packet(REMOTE6, HOST6, 17, 50, &[0; 1500]);
    assert_eq!(
        r.handle_uplink(t(1), NET_SLIRP, &mut uplink_frame(&ip)),
        UplinkVerdict::Drop(RouterDrop::TooBig)
    );
    let out = drain(&mut r, t(1));
    assert_eq!(out[0].0.to, TransmitTo::Uplink);
    let p = assert_valid_ip(&out[0].1);
    let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!()
    };
    assert_eq!(
        (icmp.type_u8(), icmp.bytes5to8()),
        (2, 1500u32.to_be_bytes())
    );
}

#[test]
fn mld_and_multicast_echo_are_not_for_us_without_errors() {
    let mut r = router();
    // MLDv2 report: hop-by-hop header first.
    let mut f = Vec::new();
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 0x16]);
    f.extend_from_slice(&HOST_MAC.0);
    f.extend_from_slice(&[0x86, 0xdd]);
    let hbh = [58, 0, 5, 2, 0, 0, 1, 0];
    let mut l4 = hbh.to_vec();
    l4.extend_from_slice(&[143, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&ipv6_packet(
        link_local_from_mac(HOST_MAC),
        "ff02::16".parse().unwrap(),
        0,
        1,
        &l4,
    ));
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::NotForUs)
    );
    let mut echo = icmpv6_frame(
        HOST_MAC,
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        HOST6,
        "ff02::1".parse().unwrap(),
        1,
        &[128, 0, 0, 0, 0, 1, 0, 1],
    );
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut echo),
        RouterVerdict::Drop(RouterDrop::NotForUs)
    );
    assert!(drain(&mut r, t(1)).is_empty());
}

#[test]
fn remove_network_forgets_it() {
    let mut r = router();
    assert_eq!(r.remove_network(NET_INTERNAL), Ok(()));
    assert_eq!(
        r.remove_network(NET_INTERNAL),
        Err(ConfigError::UnknownNetwork(NET_INTERNAL))
    );
    assert_eq!(
        r.add_network(NET_SLIRP, slirp_network()),
        Err(ConfigError::NetworkExists(NET_SLIRP))
    );
    assert_eq!(r.gateway_mac(NET_INTERNAL), None);
    // With the internal network gone, its subnet is just the default route.
    let mut f = udp_to(Ipv4Addr::new(172, 18, 0, 5), 64, b"x");
    assert!(matches!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Uplink { .. }
    ));
}

#[test]
fn tso_network_takes_long_tcp_from_the_uplink_but_not_other_protocols() {
    let mut r = router();
    assert!(r.set_tcp_segmentation_offload(NET_SLIRP, true));
    assert!(!r.set_tcp_segmentation_offload(NetworkId(99), true));
    let mut arp = frame_template(NET_SLIRP, 0);
    r.handle_frame(t(1), NET_SLIRP, &mut arp);
    let ip = ipv4_packet(REMOTE4, HOST4, 6, 50, true, &[7; 30_000]);
    let mut f = uplink_frame(&ip);
    let len = f.len();
    assert_eq!(
        r.handle_uplink(t(2), NET_SLIRP, &mut f),
        UplinkVerdict::ToNetwork { len }
    );
    assert_eq!(&f[14..], &ip[..]);
    let udp = ipv4_packet(REMOTE4, HOST4, 17, 50, true, &[0; 1600]);
    assert_eq!(
        r.handle_uplink(t(2), NET_SLIRP, &mut uplink_frame(&udp)),
        UplinkVerdict::Drop(RouterDrop::TooBig)
    );
    let udp6 = ipv6_packet(REMOTE6, HOST6, 17, 50, &[0; 1500]);
    assert_eq!(
        r.handle_uplink(t(2), NET_SLIRP, &mut uplink_frame(&udp6)),
        UplinkVerdict::Drop(RouterDrop::TooBig)
    );
    // Switched off again: the MTU applies to TCP too.
    assert!(r.set_tcp_segmentation_offload(NET_SLIRP, false));
    assert_eq!(
        r.handle_uplink(t(3), NET_SLIRP, &mut uplink_frame(&ip)),
        UplinkVerdict::Drop(RouterDrop::TooBig)
    );
}

/// A TCP payload whose first 20 bytes are a header with data offset 5.
fn tcp_payload(len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[12] = 0x50;
    p
}

#[test]
fn tso_frames_are_checked_against_the_mtu_one_segment_at_a_time() {
    let mut r = router_with(RouterConfig {
        uplink_mtu: 1500,
        ..RouterConfig::default()
    });
    // 30 KB of TCP in one frame, 1460 payload bytes per segment: 1500 on the wire.
    let mut f = eth_ipv4(HOST4, REMOTE4, 6, 64, true, &tcp_payload(30_000));
    assert!(matches!(
        r.handle_frame_segmented(t(1), NET_SLIRP, &mut f, Some(1460)),
        RouterVerdict::Uplink { .. }
    ));
    // One byte more per segment does not fit: fragmentation needed, as for a packet.
    let mut f = eth_ipv4(HOST4, REMOTE4, 6, 64, true, &tcp_payload(30_000));
    assert_eq!(
        r.handle_frame_segmented(t(1), NET_SLIRP, &mut f, Some(1461)),
        RouterVerdict::Drop(RouterDrop::TooBig)
    );
    // Without a segment size the frame is one packet, too big.
    let mut f = eth_ipv4(HOST4, REMOTE4, 6, 64, true, &tcp_payload(30_000));
    assert_eq!(
        r.handle_frame(t(1), NET_SLIRP, &mut f),
        RouterVerdict::Drop(RouterDrop::TooBig)
    );
    // Only TCP is segmented.
    let mut f = eth_ipv4(HOST4, REMOTE4, 17, 64, true, &tcp_payload(30_000));
    assert_eq!(
        r.handle_frame_segmented(t(1), NET_SLIRP, &mut f, Some(1000)),
        RouterVerdict::Drop(RouterDrop::TooBig)
    );
}

#[test]
fn tso_frames_from_the_uplink_enter_a_network_without_tso_by_segment_size() {
    let mut r = router();
    let mut arp = frame_template(NET_SLIRP, 0);
    r.handle_frame(t(1), NET_SLIRP, &mut arp);
    let ip = ipv4_packet(REMOTE4, HOST4, 6, 50, true, &tcp_payload(30_000));
    let mut f = uplink_frame(&ip);
    let len = f.len();
    assert_eq!(
        r.handle_uplink_segmented(t(2), NET_SLIRP, &mut f, Some(1460)),
        UplinkVerdict::ToNetwork { len }
    );
    assert_eq!(
        r.handle_uplink_segmented(t(2), NET_SLIRP, &mut uplink_frame(&ip), Some(1461)),
        UplinkVerdict::Drop(RouterDrop::TooBig)
    );
    let ip6 = ipv6_packet(REMOTE6, HOST6, 6, 50, &tcp_payload(30_000));
    let mut f6 = uplink_frame(&ip6);
    let len6 = f6.len();
    let mut ns = frame_template(NET_SLIRP, 1);
    r.handle_frame(t(1), NET_SLIRP, &mut ns);
    let verdict = r.handle_uplink_segmented(t(2), NET_SLIRP, &mut f6, Some(1440));
    assert!(
        matches!(verdict, UplinkVerdict::ToNetwork { len } if len == len6)
            || verdict == UplinkVerdict::Queued,
        "{verdict:?}"
    );
}

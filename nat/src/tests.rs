//! Unit and property tests of the NAT engine, on packets built and parsed with
//! etherparse (an independent oracle); checksums are verified from scratch.

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{
    Icmpv4Type, NetHeaders, PacketBuilder, PacketHeaders, TransportHeader,
    icmpv4::{DestUnreachableHeader, TimeExceededCode},
};
use proptest::prelude::*;
use tapnet_conntrack::{ConntrackConfig, Timeouts};
use tapnet_wire::checksum;

use super::*;

const UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const ROUTER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const GW_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const GW_B: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const A1: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const A2: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 3);
const B1: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const ZA: Zone = Zone(1);
const ZB: Zone = Zone(2);

fn now() -> Instant {
    Instant::from_secs(100)
}

fn nat_with_range(range: PortRange) -> Nat {
    let mut nat = Nat::new(NatConfig {
        uplink_addr: UPLINK,
        port_range: range,
        conntrack: ConntrackConfig {
            capacity: 4096,
            ..Default::default()
        },
        ..Default::default()
    });
    for (zone, subnet, gateway) in [(ZA, [10, 0, 1, 0], GW_A), (ZB, [10, 0, 2, 0], GW_B)] {
        nat.add_network(Network {
            zone,
            subnet: subnet.into(),
            prefix_len: 24,
            gateway,
            masquerade: true,
        })
        .unwrap();
    }
    nat
}

fn nat() -> Nat {
    nat_with_range(PortRange::new(32768, 60999))
}

fn publish(nat: &mut Nat, proto: Proto, ports: PortRange, zone: Zone, addr: Ipv4Addr, port: u16) {
    nat.publish(PublishRule {
        proto,
        external_addr: Ipv4Addr::UNSPECIFIED,
        external_ports: ports,
        zone,
        internal_addr: addr,
        internal_port: port,
    })
    .unwrap();
}

fn tcp(src: Ipv4Addr, sp: u16, dst: Ipv4Addr, dp: u16, syn: bool, ack: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64).tcp(sp, dp, 1000, 65535);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(77);
    }
    let mut out = Vec::new();
    b.write(&mut out, b"hello tcp").unwrap();
    out
}

fn syn(src: Ipv4Addr, sp: u16, dst: Ipv4Addr, dp: u16) -> Vec<u8> {
    tcp(src, sp, dst, dp, true, false)
}

fn udp(src: Ipv4Addr, sp: u16, dst: Ipv4Addr, dp: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .udp(sp, dp)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, request: bool) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64);
    let b = if request {
        b.icmpv4_echo_request(id, 7)
    } else {
        b.icmpv4_echo_reply(id, 7)
    };
    let mut out = Vec::new();
    b.write(&mut out, b"ping payload").unwrap();
    out
}

fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, kind: Icmpv4Type, embedded: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .icmpv4(kind)
        .write(&mut out, embedded)
        .unwrap();
    out
}

/// (src, src port, dst, dst port) as etherparse reads them (echo: the identifier).
fn tuple(packet: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let h = PacketHeaders::from_ip_slice(packet).expect("etherparse parses the packet");
    let Some(NetHeaders::Ipv4(ip, _)) = h.net else {
        panic!("not IPv4")
    };
    let (sp, dp) = match h.transport.expect("transport header") {
        TransportHeader::Tcp(t) => (t.source_port, t.destination_port),
        TransportHeader::Udp(u) => (u.source_port, u.destination_port),
        TransportHeader::Icmpv4(i) => match i.icmp_type {
            Icmpv4Type::EchoRequest(e) | Icmpv4Type::EchoReply(e) => (e.id, e.id),
            _ => (0, 0),
        },
        _ => panic!("not TCP, UDP or ICMPv4"),
    };
    (ip.source.into(), sp, ip.destination.into(), dp)
}

/// Every checksum of an IPv4 TCP/UDP/ICMP packet verifies (computed from scratch).
fn assert_checksums(packet: &[u8]) {
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    assert!(checksum::verifies(&packet[..ihl]), "IPv4 header checksum");
    let l4 = &packet[ihl..total];
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let ok = match packet[9] {
        1 => checksum::verifies(l4),
        17 if l4[6..8] == [0, 0] => true,
        proto => {
            let pseudo = checksum::pseudo_v4(src, dst, proto, l4.len());
            checksum::fold(checksum::add(pseudo, l4)) == 0xffff
        }
    };
    assert!(ok, "transport checksum of {packet:02x?}");
    // etherparse agrees for TCP and UDP.
    let h = PacketHeaders::from_ip_slice(packet).unwrap();
    if let Some(NetHeaders::Ipv4(ip, _)) = &h.net {
        match &h.transport {
            Some(TransportHeader::Tcp(t)) => {
                let want = t.calc_checksum_ipv4(ip, h.payload.slice()).unwrap();
                assert_eq!(t.checksum, want, "etherparse TCP checksum");
            }
            Some(TransportHeader::Udp(u)) if u.checksum != 0 => {
                let want = u.calc_checksum_ipv4(ip, h.payload.slice()).unwrap();
                assert_eq!(u.checksum, want, "etherparse UDP checksum");
            }
            _ => {}
        }
    }
}

#[test]
fn tcp_syn_masqueraded_then_reply_reverse_translated() {
    let mut nat = nat();
    let mut p = syn(A1, 40000, REMOTE, 80);
    assert_eq!(nat.handle_outbound(now(), ZA, &mut p), NatVerdict::ToUplink);
    assert_eq!(tuple(&p), (UPLINK, 40000, REMOTE, 80), "source port kept");
    assert_checksums(&p);

    let mut reply = tcp(REMOTE, 80, UPLINK, 40000, true, true);
    assert_eq!(
        nat.handle_inbound(now(), &mut reply),
        NatVerdict::ToZone(ZA)
    );
    assert_eq!(tuple(&reply), (REMOTE, 80, A1, 40000));
    assert_checksums(&reply);

    let mut ack = tcp(A1, 40000, REMOTE, 80, false, true);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut ack),
        NatVerdict::ToUplink
    );
    assert_eq!(tuple(&ack), (UPLINK, 40000, REMOTE, 80));
    assert_eq!(nat.counters().masqueraded_flows, 1);
    assert_eq!(nat.counters().translated, 3);
    let entry = &nat.conntrack().entries(now())[0];
    assert_eq!(entry.state, tapnet_conntrack::State::TcpEstablished);
}

#[test]
fn source_port_changes_when_taken() {
    let mut nat = nat();
    let mut first = syn(A1, 40000, REMOTE, 80);
    let mut second = syn(A2, 40000, REMOTE, 80);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut first),
        NatVerdict::ToUplink
    );
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut second),
        NatVerdict::ToUplink
    );
    let (_, p1, _, _) = tuple(&first);
    let (src, p2, _, _) = tuple(&second);
    assert_eq!(p1, 40000);
    assert_eq!(src, UPLINK);
    assert_ne!(p2, 40000);
    assert!((32768..=60999).contains(&p2));
    assert_checksums(&second);
    assert_eq!(nat.counters().ports_remapped, 1);

    // Each reply reaches its own container.
    let mut r2 = tcp(REMOTE, 80, UPLINK, p2, true, true);
    assert_eq!(nat.handle_inbound(now(), &mut r2), NatVerdict::ToZone(ZA));
    assert_eq!(tuple(&r2), (REMOTE, 80, A2, 40000));
    let mut r1 = tcp(REMOTE, 80, UPLINK, 40000, true, true);
    assert_eq!(nat.handle_inbound(now(), &mut r1), NatVerdict::ToZone(ZA));
    assert_eq!(tuple(&r1), (REMOTE, 80, A1, 40000));

    // The same source port to another destination is kept (per-destination space).
    let mut other = syn(A2, 40000, REMOTE, 443);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut other),
        NatVerdict::ToUplink
    );
    assert_eq!(tuple(&other).1, 40000);
}

#[test]
fn same_port_from_two_networks_shares_one_space() {
    let mut nat = nat();
    let mut a = udp(A1, 5353, REMOTE, 53, b"q");
    let mut b = udp(B1, 5353, REMOTE, 53, b"q");
    assert_eq!(nat.handle_outbound(now(), ZA, &mut a), NatVerdict::ToUplink);
    assert_eq!(nat.handle_outbound(now(), ZB, &mut b), NatVerdict::ToUplink);
    let pb = tuple(&b).1;
    assert_ne!(pb, 5353);
    let mut rb = udp(REMOTE, 53, UPLINK, pb, b"a");
    assert_eq!(nat.handle_inbound(now(), &mut rb), NatVerdict::ToZone(ZB));
    assert_eq!(tuple(&rb), (REMOTE, 53, B1, 5353));
}

#[test]
fn exhaustion_is_counted_and_existing_flows_survive() {
    let mut nat = nat_with_range(PortRange::new(50000, 50002));
    // Three containers on the same port: the first keeps it, two take the range.
    let sources = [A1, A2, Ipv4Addr::new(10, 0, 1, 4)];
    let mut mapped = Vec::new();
    for src in sources {
        let mut p = udp(src, 50000, REMOTE, 53, b"q");
        assert_eq!(nat.handle_outbound(now(), ZA, &mut p), NatVerdict::ToUplink);
        mapped.push(tuple(&p).1);
    }
    mapped.sort_unstable();
    assert_eq!(mapped, [50000, 50001, 50002]);
    let mut fourth = udp(Ipv4Addr::new(10, 0, 1, 5), 50000, REMOTE, 53, b"q");
    let before = fourth.clone();
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut fourth),
        NatVerdict::Drop(DropReason::PortExhausted)
    );
    assert_eq!(fourth, before, "a dropped packet is not rewritten");
    assert_eq!(nat.counters().dropped(DropReason::PortExhausted), 1);
    assert_eq!(nat.conntrack().len(), 3);
    // The existing flows still translate.
    let mut again = udp(A2, 50000, REMOTE, 53, b"q2");
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut again),
        NatVerdict::ToUplink
    );
}

#[test]
fn udp_checksum_zero_stays_zero() {
    let mut nat = nat();
    let mut p = udp(A1, 40000, REMOTE, 53, b"no checksum");
    let ihl = 20;
    p[ihl + 6] = 0;
    p[ihl + 7] = 0;
    assert_eq!(nat.handle_outbound(now(), ZA, &mut p), NatVerdict::ToUplink);
    assert_eq!(&p[ihl + 6..ihl + 8], &[0, 0]);
    assert!(checksum::verifies(&p[..ihl]));
    assert_eq!(tuple(&p).0, UPLINK);
}

#[test]
fn icmp_echo_identifier_mapped_both_ways() {
    let mut nat = nat();
    let mut a = echo(A1, REMOTE, 7, true);
    let mut b = echo(A2, REMOTE, 7, true);
    assert_eq!(nat.handle_outbound(now(), ZA, &mut a), NatVerdict::ToUplink);
    assert_eq!(nat.handle_outbound(now(), ZA, &mut b), NatVerdict::ToUplink);
    assert_eq!(tuple(&a), (UPLINK, 7, REMOTE, 7));
    let id_b = tuple(&b).1;
    assert_ne!(id_b, 7);
    assert_checksums(&a);
    assert_checksums(&b);
    let mut rb = echo(REMOTE, UPLINK, id_b, false);
    assert_eq!(nat.handle_inbound(now(), &mut rb), NatVerdict::ToZone(ZA));
    assert_eq!(tuple(&rb), (REMOTE, 7, A2, 7));
    assert_checksums(&rb);
    // An echo reply to nobody cannot start a flow.
    let mut stray = echo(A1, REMOTE, 99, false);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut stray),
        NatVerdict::Drop(DropReason::NotNew)
    );
}

#[test]
fn published_port_dnat_and_reply() {
    let mut nat = nat();
    publish(&mut nat, Proto::Tcp, PortRange::single(8080), ZB, B1, 80);
    let mut p = syn(REMOTE, 51000, UPLINK, 8080);
    assert_eq!(nat.handle_inbound(now(), &mut p), NatVerdict::ToZone(ZB));
    assert_eq!(tuple(&p), (REMOTE, 51000, B1, 80), "client address kept");
    assert_checksums(&p);
    let mut reply = tcp(B1, 80, REMOTE, 51000, true, true);
    assert_eq!(
        nat.handle_outbound(now(), ZB, &mut reply),
        NatVerdict::ToUplink
    );
    assert_eq!(tuple(&reply), (UPLINK, 8080, REMOTE, 51000));
    assert_checksums(&reply);
    assert_eq!(nat.counters().published_flows, 1);
    // A non-SYN to the published port does not start a flow.
    let mut mid = tcp(REMOTE, 51001, UPLINK, 8080, false, true);
    assert_eq!(
        nat.handle_inbound(now(), &mut mid),
        NatVerdict::Drop(DropReason::NotNew)
    );
}

#[test]
fn published_range_maps_one_to_one() {
    let mut nat = nat();
    publish(
        &mut nat,
        Proto::Udp,
        PortRange::new(9000, 9009),
        ZA,
        A1,
        7000,
    );
    let mut p = udp(REMOTE, 1234, UPLINK, 9005, b"x");
    assert_eq!(nat.handle_inbound(now(), &mut p), NatVerdict::ToZone(ZA));
    assert_eq!(tuple(&p), (REMOTE, 1234, A1, 7005));
    let mut r = udp(A1, 7005, REMOTE, 1234, b"y");
    assert_eq!(nat.handle_outbound(now(), ZA, &mut r), NatVerdict::ToUplink);
    assert_eq!(tuple(&r), (UPLINK, 9005, REMOTE, 1234));
    assert_checksums(&r);
    // Overlaps are refused.
    assert_eq!(
        nat.publish(PublishRule {
            proto: Proto::Udp,
            external_addr: UPLINK,
            external_ports: PortRange::new(9009, 9010),
            zone: ZB,
            internal_addr: B1,
            internal_port: 1,
        }),
        Err(ConfigError::AlreadyPublished)
    );
    // Outside the range: no mapping.
    let mut miss = udp(REMOTE, 1234, UPLINK, 9010, b"x");
    assert_eq!(
        nat.handle_inbound(now(), &mut miss),
        NatVerdict::Drop(DropReason::NoMapping)
    );
}

#[test]
fn hairpin_to_another_container_and_to_itself() {
    let mut nat = nat();
    publish(&mut nat, Proto::Tcp, PortRange::single(8080), ZB, B1, 80);
    publish(&mut nat, Proto::Tcp, PortRange::single(8081), ZA, A1, 81);

    // A1 -> uplink:8080 -> B1:80, masqueraded to B's gateway.
    let mut p = syn(A1, 41000, UPLINK, 8080);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut p),
        NatVerdict::ToZone(ZB)
    );
    assert_eq!(tuple(&p), (GW_B, 41000, B1, 80));
    assert_checksums(&p);
    let mut reply = tcp(B1, 80, GW_B, 41000, true, true);
    assert_eq!(
        nat.handle_outbound(now(), ZB, &mut reply),
        NatVerdict::ToZone(ZA)
    );
    assert_eq!(tuple(&reply), (UPLINK, 8080, A1, 41000));
    assert_checksums(&reply);

    // A1 -> gateway A:8081 -> A1:81 (itself), through the gateway of A.
    let mut own = syn(A1, 41001, GW_A, 8081);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut own),
        NatVerdict::ToZone(ZA)
    );
    assert_eq!(tuple(&own), (GW_A, 41001, A1, 81));
    let mut own_reply = tcp(A1, 81, GW_A, 41001, true, true);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut own_reply),
        NatVerdict::ToZone(ZA)
    );
    assert_eq!(tuple(&own_reply), (GW_A, 8081, A1, 41001));
    assert_checksums(&own_reply);
    assert_eq!(nat.counters().hairpin_flows, 2);

    // A local address without a published port is left to the router.
    let mut ping = echo(A1, GW_A, 1, true);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut ping),
        NatVerdict::Untouched
    );
}

#[test]
fn icmp_port_unreachable_embedding_masqueraded_udp_is_translated() {
    let mut nat = nat();
    let mut blocker = udp(A2, 33434, REMOTE, 33434, b"b");
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut blocker),
        NatVerdict::ToUplink
    );
    let original = udp(A1, 33434, REMOTE, 33434, b"traceroute probe");
    let mut out = original.clone();
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut out),
        NatVerdict::ToUplink
    );
    let mapped = tuple(&out).1;
    assert_ne!(mapped, 33434, "remapped, so the inner port must change too");

    for (from, kind) in [
        (
            REMOTE,
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        ),
        (
            ROUTER,
            Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
        ),
    ] {
        let mut err = icmp_error(from, UPLINK, kind, &out);
        assert_eq!(nat.handle_inbound(now(), &mut err), NatVerdict::ToZone(ZA));
        assert_checksums(&err);
        assert_eq!(&err[12..16], &from.octets(), "outer source kept");
        assert_eq!(&err[16..20], &A1.octets(), "outer destination translated");
        let inner = &err[28..];
        assert_eq!(
            inner,
            &original[..],
            "the embedded packet is the original one"
        );
    }
    assert_eq!(nat.counters().icmp_errors, 2);

    // An error about no known flow is dropped.
    let mut unknown = icmp_error(
        REMOTE,
        UPLINK,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        &udp(UPLINK, 1, REMOTE, 2, b"?"),
    );
    assert_eq!(
        nat.handle_inbound(now(), &mut unknown),
        NatVerdict::Drop(DropReason::NoMapping)
    );
}

#[test]
fn icmp_error_with_truncated_tcp_keeps_inner_checksum_alone() {
    let mut nat = nat();
    let mut b = syn(A2, 40000, REMOTE, 80);
    let _ = nat.handle_outbound(now(), ZA, &mut b);
    let mut out = syn(A1, 40000, REMOTE, 80);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut out),
        NatVerdict::ToUplink
    );
    // RFC 792: the IP header and the first 8 bytes of the datagram.
    let embedded = &out[..28];
    let mut err = icmp_error(
        REMOTE,
        UPLINK,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        embedded,
    );
    assert_eq!(nat.handle_inbound(now(), &mut err), NatVerdict::ToZone(ZA));
    assert_checksums(&err);
    let inner = &err[28..];
    assert!(
        checksum::verifies(&inner[..20]),
        "inner IPv4 header checksum"
    );
    assert_eq!(&inner[12..16], &A1.octets());
    assert_eq!(u16::from_be_bytes([inner[20], inner[21]]), 40000);
}

#[test]
fn icmp_error_from_container_about_published_reply() {
    // B1 serves a published port; the client's reply packet gets an ICMP error
    // from inside, which goes out through the uplink about the translated flow.
    let mut nat = nat();
    publish(&mut nat, Proto::Udp, PortRange::single(5000), ZB, B1, 500);
    let mut p = udp(REMOTE, 6000, UPLINK, 5000, b"req");
    assert_eq!(nat.handle_inbound(now(), &mut p), NatVerdict::ToZone(ZB));
    let mut err = icmp_error(
        B1,
        REMOTE,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port),
        &p,
    );
    // The embedded packet is REMOTE:6000 -> B1:500 as B1 saw it.
    assert_eq!(
        nat.handle_outbound(now(), ZB, &mut err),
        NatVerdict::ToUplink
    );
    assert_checksums(&err);
    assert_eq!(
        &err[12..16],
        &UPLINK.octets(),
        "the error comes from the published address"
    );
    assert_eq!(&err[16..20], &REMOTE.octets());
    assert_eq!(&err[28..], &udp(REMOTE, 6000, UPLINK, 5000, b"req")[..]);
}

#[test]
fn unrelated_inbound_dropped_and_counted() {
    let mut nat = nat();
    let mut p = syn(REMOTE, 1, UPLINK, 22);
    let before = p.clone();
    assert_eq!(
        nat.handle_inbound(now(), &mut p),
        NatVerdict::Drop(DropReason::NoMapping)
    );
    assert_eq!(p, before);
    let mut junk = vec![0x45, 0, 0, 10];
    assert_eq!(
        nat.handle_inbound(now(), &mut junk),
        NatVerdict::Drop(DropReason::Malformed)
    );
    let mut gre = udp(REMOTE, 1, UPLINK, 2, b"x");
    gre[9] = 47;
    assert_eq!(
        nat.handle_inbound(now(), &mut gre),
        NatVerdict::Drop(DropReason::UnsupportedProtocol)
    );
    let mut frag = udp(REMOTE, 1, UPLINK, 2, b"x");
    frag[6] = 0x20; // MF
    assert_eq!(
        nat.handle_inbound(now(), &mut frag),
        NatVerdict::Drop(DropReason::Fragment)
    );
    let c = nat.counters();
    assert_eq!(c.dropped(DropReason::NoMapping), 1);
    assert_eq!(c.dropped(DropReason::Malformed), 1);
    assert_eq!(c.dropped_total(), 4);
}

#[test]
fn ipv6_and_spoofed_sources_are_untouched() {
    let mut nat = nat();
    nat.add_network(Network {
        zone: Zone(3),
        subnet: Ipv4Addr::new(10, 0, 3, 0),
        prefix_len: 24,
        gateway: Ipv4Addr::new(10, 0, 3, 1),
        masquerade: false,
    })
    .unwrap();
    let mut p = udp(Ipv4Addr::new(10, 0, 4, 2), 1, REMOTE, 2, b"x");
    assert_eq!(
        nat.handle_outbound(now(), Zone(3), &mut p),
        NatVerdict::Untouched
    );
    let mut v6 = Vec::new();
    PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
        .udp(1, 2)
        .write(&mut v6, b"x")
        .unwrap();
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut v6),
        NatVerdict::Untouched
    );
    assert_eq!(
        nat.add_network(Network {
            zone: Zone(0),
            subnet: Ipv4Addr::new(10, 9, 0, 0),
            prefix_len: 16,
            gateway: Ipv4Addr::new(10, 9, 0, 1),
            masquerade: true,
        }),
        Err(ConfigError::UplinkZone)
    );
}

#[test]
fn expiry_releases_the_port() {
    let mut nat = nat_with_range(PortRange::single(50000));
    let mut a = udp(A1, 50000, REMOTE, 53, b"q");
    let mut b = udp(A2, 50000, REMOTE, 53, b"q");
    assert_eq!(nat.handle_outbound(now(), ZA, &mut a), NatVerdict::ToUplink);
    assert_eq!(
        nat.handle_outbound(now(), ZA, &mut b.clone()),
        NatVerdict::Drop(DropReason::PortExhausted)
    );
    let later = now() + Timeouts::default().udp + core::time::Duration::from_secs(1);
    let mut expired = 0;
    while nat.poll_expired(later).is_some() {
        expired += 1;
    }
    assert_eq!(expired, 1);
    assert_eq!(nat.handle_outbound(later, ZA, &mut b), NatVerdict::ToUplink);
    assert_eq!(tuple(&b), (UPLINK, 50000, REMOTE, 53));
    // The old mapping is gone: a late reply for A1 now reaches A2.
    let mut r = udp(REMOTE, 53, UPLINK, 50000, b"a");
    assert_eq!(nat.handle_inbound(later, &mut r), NatVerdict::ToZone(ZA));
    assert_eq!(tuple(&r).2, A2);
}

// --- properties -------------------------------------------------------------------

/// One transport for the properties: TCP SYN, UDP (maybe without checksum), echo.
#[derive(Clone, Debug)]
enum Kind {
    Tcp,
    Udp { zero_checksum: bool },
    Echo,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Tcp),
        any::<bool>().prop_map(|zero_checksum| Kind::Udp { zero_checksum }),
        Just(Kind::Echo),
    ]
}

fn build(
    kind: &Kind,
    src: Ipv4Addr,
    sp: u16,
    dst: Ipv4Addr,
    dp: u16,
    payload: &[u8],
    request: bool,
) -> Vec<u8> {
    let b = PacketBuilder::ipv4(src.octets(), dst.octets(), 64);
    let mut out = Vec::new();
    match kind {
        Kind::Tcp => {
            let b = b.tcp(sp, dp, 1, 1000);
            let b = if request { b.syn() } else { b.syn().ack(1) };
            b.write(&mut out, payload).unwrap();
        }
        Kind::Udp { zero_checksum } => {
            b.udp(sp, dp).write(&mut out, payload).unwrap();
            if *zero_checksum {
                out[26] = 0;
                out[27] = 0;
            }
        }
        Kind::Echo => {
            let b = if request {
                b.icmpv4_echo_request(sp, 1)
            } else {
                b.icmpv4_echo_reply(sp, 1)
            };
            b.write(&mut out, payload).unwrap();
        }
    }
    out
}

/// A container address in network A (not the gateway).
fn container() -> impl Strategy<Value = Ipv4Addr> {
    (2u8..=254).prop_map(|d| Ipv4Addr::new(10, 0, 1, d))
}

/// An outside address (not local, not in a network).
fn outside() -> impl Strategy<Value = Ipv4Addr> {
    any::<[u8; 4]>()
        .prop_map(|o| Ipv4Addr::new(o[0] | 1, o[1], o[2], o[3]))
        .prop_filter("not ours", |a| a.octets()[0] != 10 && *a != UPLINK)
}

/// Recomputes every checksum of `packet` from scratch (the reference for incremental).
fn recomputed(packet: &[u8]) -> Vec<u8> {
    let mut p = packet.to_vec();
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p[10..12].fill(0);
    let ck = checksum::checksum(&p[..ihl]);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let proto = p[9];
    let at = match proto {
        6 => ihl + 16,
        17 => ihl + 6,
        _ => ihl + 2,
    };
    if proto == 17 && p[at..at + 2] == [0, 0] {
        return p;
    }
    p[at..at + 2].fill(0);
    let ck = if proto == 1 {
        checksum::checksum(&p[ihl..])
    } else {
        checksum::upper_layer(
            checksum::pseudo_v4(src, dst, proto, p.len() - ihl),
            &p[ihl..],
        )
    };
    p[at..at + 2].copy_from_slice(&ck.to_be_bytes());
    p
}

/// Equal, with 0x0000 and 0xffff in a checksum field taken as the same (both are
/// one's-complement zero and verify alike).
fn same_up_to_negative_zero(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.chunks(2).zip(b.chunks(2)).all(|(x, y)| {
            x == y || (x == [0, 0] && y == [0xff, 0xff]) || (x == [0xff, 0xff] && y == [0, 0])
        })
}

proptest! {
    /// Masquerade then the reply: checksums valid and equal to recomputation at each
    /// step, and the reply reaching the container is exactly the reply the remote
    /// sent, translated back (NAT then reverse NAT is the identity).
    #[test]
    fn masquerade_roundtrip(
        kind in kind(),
        src in container(),
        dst in outside(),
        sp in 1u16..,
        dp in 1u16..,
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        taken in any::<bool>(),
    ) {
        let mut nat = nat();
        if taken {
            // Another container holds the same source port towards the same peer.
            let mut other = build(&kind, Ipv4Addr::new(10, 0, 1, 1), sp, dst, dp, &payload, true);
            prop_assert_eq!(nat.handle_outbound(now(), ZA, &mut other), NatVerdict::ToUplink);
        }
        let original = build(&kind, src, sp, dst, dp, &payload, true);
        let mut out = original.clone();
        prop_assert_eq!(nat.handle_outbound(now(), ZA, &mut out), NatVerdict::ToUplink);
        assert_checksums(&out);
        prop_assert!(same_up_to_negative_zero(&out, &recomputed(&out)));
        let (s, mapped, d, dport) = tuple(&out);
        prop_assert_eq!((s, d), (UPLINK, dst));
        if !matches!(kind, Kind::Echo) {
            prop_assert_eq!(dport, dp);
        }
        prop_assert_eq!(mapped == sp, !taken);

        let reply_dp = if matches!(kind, Kind::Echo) { mapped } else { dp };
        let mut reply = build(&kind, dst, reply_dp, UPLINK, mapped, &payload, false);
        prop_assert_eq!(nat.handle_inbound(now(), &mut reply), NatVerdict::ToZone(ZA));
        assert_checksums(&reply);
        let reply_sp = if matches!(kind, Kind::Echo) { sp } else { dp };
        let expected = build(&kind, dst, reply_sp, src, sp, &payload, false);
        prop_assert!(same_up_to_negative_zero(&reply, &expected), "{:02x?} vs {:02x?}", reply, expected);
    }

    /// DNAT then the container's reply restores the published endpoint.
    #[test]
    fn publish_roundtrip(
        udp_not_tcp in any::<bool>(),
        client in outside(),
        cp in 1u16..,
        ext in 1u16..=65000,
        span in 1u16..=100,
        offset in 0u16..100,
        internal in 1u16..=65000,
        payload in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let kind = if udp_not_tcp { Kind::Udp { zero_checksum: false } } else { Kind::Tcp };
        let proto = if udp_not_tcp { Proto::Udp } else { Proto::Tcp };
        let span = span.min(65535 - ext + 1).min(65535 - internal + 1);
        let offset = offset % span;
        let mut nat = nat();
        publish(&mut nat, proto, PortRange::new(ext, ext + span - 1), ZB, B1, internal);
        let mut inbound = build(&kind, client, cp, UPLINK, ext + offset, &payload, true);
        prop_assert_eq!(nat.handle_inbound(now(), &mut inbound), NatVerdict::ToZone(ZB));
        assert_checksums(&inbound);
        prop_assert!(same_up_to_negative_zero(&inbound, &recomputed(&inbound)));
        prop_assert_eq!(tuple(&inbound), (client, cp, B1, internal + offset));
        let mut reply = build(&kind, B1, internal + offset, client, cp, &payload, false);
        prop_assert_eq!(nat.handle_outbound(now(), ZB, &mut reply), NatVerdict::ToUplink);
        let expected = build(&kind, UPLINK, ext + offset, client, cp, &payload, false);
        prop_assert!(same_up_to_negative_zero(&reply, &expected));
    }

    /// Arbitrary bytes never panic, in either direction, and a dropped or untouched
    /// packet is left as it was.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128), zone in 0u16..4) {
        let mut nat = nat();
        publish(&mut nat, Proto::Udp, PortRange::new(1, 65535), ZB, B1, 1);
        for inbound in [false, true] {
            let mut p = bytes.clone();
            let v = if inbound { nat.handle_inbound(now(), &mut p) } else { nat.handle_outbound(now(), Zone(zone), &mut p) };
            if matches!(v, NatVerdict::Drop(_) | NatVerdict::Untouched) {
                prop_assert_eq!(&p, &bytes);
            }
        }
    }

    /// Arbitrary bytes after a valid header prefix (so parsing gets deep) never panic.
    #[test]
    fn mangled_valid_packets_never_panic(kind in kind(), at in 0usize..64, byte in any::<u8>(), cut in 0usize..64) {
        let mut nat = nat();
        let mut p = build(&kind, A1, 1000, REMOTE, 53, b"0123456789", true);
        let _ = nat.handle_outbound(now(), ZA, &mut p.clone());
        let err_kind = Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::Port);
        let _ = nat.handle_outbound(now(), ZA, &mut p);
        let mut err = icmp_error(REMOTE, UPLINK, err_kind, &p);
        let at = at % err.len();
        err[at] = byte;
        err.truncate(err.len().saturating_sub(cut));
        let _ = nat.handle_inbound(now(), &mut err);
    }
}

#[test]
fn address_helpers() {
    let n = Network {
        zone: ZA,
        subnet: Ipv4Addr::new(10, 0, 1, 0),
        prefix_len: 24,
        gateway: GW_A,
        masquerade: true,
    };
    assert!(n.contains(A1));
    assert!(!n.contains(B1));
    let all = Network { prefix_len: 0, ..n };
    assert!(all.contains(REMOTE));
    assert_eq!(IpAddr::from(UPLINK), IpAddr::V4(UPLINK));
}

#[test]
fn non_masquerading_network_is_routed_untranslated_and_only_replies_come_back() {
    let mut nat = nat();
    nat.add_network(Network {
        zone: ZB,
        subnet: [10, 0, 2, 0].into(),
        prefix_len: 24,
        gateway: GW_B,
        masquerade: false,
    })
    .unwrap();
    let mut out = syn(B1, 4000, REMOTE, 80);
    let before = out.clone();
    assert_eq!(
        nat.handle_outbound(now(), ZB, &mut out),
        NatVerdict::ToUplink
    );
    assert_eq!(out, before, "routed, not translated");
    let mut reply = tcp(REMOTE, 80, B1, 4000, true, true);
    let before = reply.clone();
    assert_eq!(
        nat.handle_inbound(now(), &mut reply),
        NatVerdict::ToZone(ZB)
    );
    assert_eq!(reply, before);
    // Unsolicited traffic to the container's own address stays out.
    let mut probe = syn(REMOTE, 5555, B1, 22);
    assert_eq!(
        nat.handle_inbound(now(), &mut probe),
        NatVerdict::Drop(DropReason::NoMapping)
    );
    // A spoofed source (not in the subnet) is not routed either.
    let mut spoofed = syn(A1, 4000, REMOTE, 80);
    assert_eq!(
        nat.handle_outbound(now(), ZB, &mut spoofed),
        NatVerdict::Untouched
    );
    assert_eq!(nat.counters().routed_flows, 1);
}

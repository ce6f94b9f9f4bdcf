//! The `conntrack -L` lines and the JSON form of entries.

use core::time::Duration;
use std::net::{Ipv4Addr, Ipv6Addr};

use tapnet_conntrack::{Conntrack, ConntrackConfig, FlowKey, Instant, Proto, TcpFlags, Zone};

const T0: Instant = Instant::from_secs(1000);

fn tcp_pair() -> (FlowKey, FlowKey) {
    let original = FlowKey {
        zone: Zone(1),
        proto: Proto::Tcp,
        src: Ipv4Addr::new(10, 0, 2, 100).into(),
        src_port: 40000,
        dst: Ipv4Addr::new(10, 0, 2, 2).into(),
        dst_port: 80,
    };
    let reply = FlowKey {
        zone: Zone(1),
        proto: Proto::Tcp,
        src: Ipv4Addr::LOCALHOST.into(),
        src_port: 80,
        dst: Ipv4Addr::LOCALHOST.into(),
        dst_port: 54321,
    };
    (original, reply)
}

#[test]
fn tcp_line_matches_conntrack_l() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let (original, reply) = tcp_pair();
    let id = ct.insert(T0, original, reply, Some(TcpFlags::SYN)).unwrap();
    let now = T0 + Duration::from_millis(500);
    ct.track(now, &original, Some(TcpFlags::SYN), 60).unwrap();
    let line = ct
        .entry(id, now + Duration::from_millis(1))
        .unwrap()
        .to_conntrack_line();
    assert_eq!(
        line,
        "tcp      6 119 SYN_SENT src=10.0.2.100 dst=10.0.2.2 sport=40000 dport=80 \
         packets=1 bytes=60 [UNREPLIED] src=127.0.0.1 dst=127.0.0.1 sport=80 dport=54321 \
         packets=0 bytes=0 mark=0 zone=1 use=1"
    );
    ct.track(now, &reply, Some(TcpFlags::SYN_ACK), 60).unwrap();
    for _ in 0..4 {
        ct.track(now, &original, Some(TcpFlags::ACK), 60).unwrap();
    }
    for _ in 0..3 {
        ct.track(now, &reply, Some(TcpFlags::ACK), 66).unwrap();
    }
    let info = ct.entry(id, now + Duration::from_millis(1)).unwrap();
    assert_eq!(
        info.to_conntrack_line(),
        "tcp      6 431999 ESTABLISHED src=10.0.2.100 dst=10.0.2.2 sport=40000 dport=80 \
         packets=5 bytes=300 src=127.0.0.1 dst=127.0.0.1 sport=80 dport=54321 \
         packets=4 bytes=258 [ASSURED] mark=0 zone=1 use=1"
    );
    assert!(
        info.to_conntrack_line_extended()
            .starts_with("ipv4     2 tcp      6 431999 ESTABLISHED ")
    );

    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["state"], "ESTABLISHED");
    assert_eq!(json["proto"], "tcp");
    assert_eq!(json["protonum"], 6);
    assert_eq!(json["family"], "ipv4");
    assert_eq!(json["remaining_secs"], 431_999);
    assert_eq!(json["assured"], true);
    assert_eq!(json["unreplied"], false);
    assert_eq!(json["id"], id.0);
    assert_eq!(json["original"]["src"], "10.0.2.100");
    assert_eq!(json["original"]["src_port"], 40000);
    assert_eq!(json["original"]["zone"], 1);
    assert_eq!(json["original"]["proto"], "tcp");
    assert_eq!(json["reply"]["dst_port"], 54321);
    assert_eq!(json["original_counters"]["packets"], 5);
    assert_eq!(json["reply_counters"]["bytes"], 258);
}

#[test]
fn udp_and_icmp_lines() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let dns = FlowKey {
        zone: Zone(0),
        proto: Proto::Udp,
        src: Ipv4Addr::new(10, 0, 2, 100).into(),
        src_port: 5353,
        dst: Ipv4Addr::new(10, 0, 2, 3).into(),
        dst_port: 53,
    };
    let id = ct.track(T0, &dns, None, 70).unwrap().id;
    let now = T0 + Duration::from_millis(200);
    assert_eq!(
        ct.entry(id, now).unwrap().to_conntrack_line(),
        "udp      17 29 src=10.0.2.100 dst=10.0.2.3 sport=5353 dport=53 packets=1 bytes=70 \
         [UNREPLIED] src=10.0.2.3 dst=10.0.2.100 sport=53 dport=5353 packets=0 bytes=0 \
         mark=0 use=1"
    );
    let ping = FlowKey::icmp_echo(
        Zone(2),
        Ipv4Addr::new(10, 0, 3, 5).into(),
        Ipv4Addr::new(1, 1, 1, 1).into(),
        4242,
    );
    let id = ct.track(T0, &ping, None, 84).unwrap().id;
    ct.track(T0, &ping.reversed(), None, 84).unwrap();
    let info = ct.entry(id, now).unwrap();
    assert_eq!(
        info.to_conntrack_line(),
        "icmp     1 29 src=10.0.3.5 dst=1.1.1.1 type=8 code=0 id=4242 packets=1 bytes=84 \
         src=1.1.1.1 dst=10.0.3.5 type=0 code=0 id=4242 packets=1 bytes=84 [ASSURED] \
         mark=0 zone=2 use=1"
    );
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["state"], "REPLIED");
    assert_eq!(json["proto"], "icmp");

    let ping6 = FlowKey::icmp_echo(
        Zone(1),
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100).into(),
        Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
        7,
    );
    let id = ct.track(T0, &ping6, None, 104).unwrap().id;
    let info = ct.entry(id, now).unwrap();
    assert_eq!(
        info.to_conntrack_line(),
        "icmpv6   58 29 src=fd00::100 dst=fd00::2 type=128 code=0 id=7 packets=1 bytes=104 \
         [UNREPLIED] src=fd00::2 dst=fd00::100 type=129 code=0 id=7 packets=0 bytes=0 \
         mark=0 zone=1 use=1"
    );
    assert!(
        info.to_conntrack_line_extended()
            .starts_with("ipv6     10 icmpv6   58 ")
    );
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["family"], "ipv6");
    assert_eq!(json["proto"], "icmpv6");
    assert_eq!(json["state"], "UNREPLIED");
}

#[test]
fn split_zones_are_shown_per_tuple() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let (original, mut reply) = tcp_pair();
    reply.zone = Zone(0);
    let id = ct.insert(T0, original, reply, None).unwrap();
    let line = ct.entry(id, T0).unwrap().to_conntrack_line();
    assert!(line.contains("dport=80 zone-orig=1 packets=0"), "{line}");
    assert!(
        !line.contains("zone-reply") && !line.contains(" zone=1"),
        "{line}"
    );
}

#[test]
fn entries_lists_every_flow() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let (original, reply) = tcp_pair();
    ct.insert(T0, original, reply, None).unwrap();
    let other = FlowKey {
        src_port: 40001,
        ..original
    };
    ct.track(T0, &other, Some(TcpFlags::SYN), 60).unwrap();
    assert_eq!(
        ct.track(T0, &original.reversed(), Some(TcpFlags::SYN), 60),
        Err(tapnet_conntrack::Refused::Clash),
        "the reversed original is not the reply tuple, but its reverse is taken"
    );
    let entries = ct.entries(T0);
    assert_eq!(entries.len(), 2);
    let json = serde_json::to_string(&entries).unwrap();
    assert!(json.starts_with("[{\"id\":"));
}

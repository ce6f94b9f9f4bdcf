//! Property tests of the router: arbitrary and mutated frames never panic, and every
//! packet the router emits carries valid checksums, checked with etherparse as an
//! independent oracle (IPv4 header, ICMP, ICMPv6, UDP, TCP).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;
use tapnet_switch::Instant;
use tapnet_switch::router::fuzzing::{
    self, CheckedRouter, FRAME_TEMPLATES, NET_INTERNAL, NET_SLIRP, UPLINK_TEMPLATES,
};
use tapnet_switch::router::{RouterConfig, RouterVerdict, TransmitTo, UplinkVerdict};

/// True for the router's addresses: packets it originates from them must carry valid
/// upper-layer checksums (forwarded packets carry whatever the sender wrote).
fn is_router_source(ip: IpAddr) -> bool {
    let nets = [fuzzing::slirp_network(), fuzzing::internal_network()];
    nets.iter().any(|n| match ip {
        IpAddr::V4(ip) => {
            n.v4.as_ref()
                .is_some_and(|v| v.gateway == ip || v.extra.contains(&ip))
        }
        IpAddr::V6(ip) => {
            ip == tapnet_switch::router::link_local_from_mac(n.gateway_mac)
                || n.v6
                    .as_ref()
                    .is_some_and(|v| v.gateway == ip || v.extra.contains(&ip))
        }
    })
}

fn check(p: &SlicedPacket<'_>) -> Result<(), TestCaseError> {
    match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            prop_assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
            if !is_router_source(IpAddr::V4(h.source_addr())) || ip.is_payload_fragmented() {
                return Ok(());
            }
            let (s, d) = (h.source(), h.destination());
            match &p.transport {
                Some(TransportSlice::Icmpv4(icmp)) => {
                    prop_assert_eq!(
                        icmp.header().icmp_type.calc_checksum(icmp.payload()),
                        icmp.checksum()
                    )
                }
                Some(TransportSlice::Udp(u)) => prop_assert_eq!(
                    u.to_header()
                        .calc_checksum_ipv4_raw(s, d, u.payload())
                        .unwrap(),
                    u.checksum()
                ),
                Some(TransportSlice::Tcp(t)) => {
                    prop_assert_eq!(t.calc_checksum_ipv4(s, d).unwrap(), t.checksum())
                }
                _ => {}
            }
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            if !is_router_source(IpAddr::V6(h.source_addr())) {
                return Ok(());
            }
            let (s, d) = (h.source(), h.destination());
            match &p.transport {
                Some(TransportSlice::Icmpv6(icmp)) => prop_assert!(icmp.is_checksum_valid(s, d)),
                Some(TransportSlice::Udp(u)) => prop_assert_eq!(
                    u.to_header()
                        .calc_checksum_ipv6_raw(s, d, u.payload())
                        .unwrap(),
                    u.checksum()
                ),
                Some(TransportSlice::Tcp(t)) => {
                    prop_assert_eq!(t.calc_checksum_ipv6(s, d).unwrap(), t.checksum())
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}

/// The IP header of a packet etherparse cannot slice completely: never one the router
/// originated, and with a valid IPv4 header checksum.
fn check_forwarded_header(ip: &[u8]) -> Result<(), TestCaseError> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let h = etherparse::Ipv4HeaderSlice::from_slice(ip)
                .map_err(|e| TestCaseError::fail(format!("IPv4 header: {e:?}")))?;
            prop_assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
            prop_assert!(
                !is_router_source(IpAddr::V4(h.source_addr())),
                "originated packet does not parse"
            );
        }
        Some(6) => {
            let h = etherparse::Ipv6HeaderSlice::from_slice(ip)
                .map_err(|e| TestCaseError::fail(format!("IPv6 header: {e:?}")))?;
            prop_assert!(
                !is_router_source(IpAddr::V6(h.source_addr())),
                "originated packet does not parse"
            );
        }
        _ => prop_assert!(false, "not an IP packet"),
    }
    Ok(())
}

/// Checks an emitted frame (`is_frame`) or bare IP packet.
fn check_bytes(bytes: &[u8], is_frame: bool) -> Result<(), TestCaseError> {
    let parsed = if is_frame {
        SlicedPacket::from_ethernet(bytes)
    } else {
        SlicedPacket::from_ip(bytes)
    };
    match parsed {
        Ok(p) => check(&p),
        // A forwarded packet may carry a broken upper layer (the router does not look
        // past the IP header when forwarding): only its IP header is the router's.
        Err(_) => check_forwarded_header(if is_frame { &bytes[14..] } else { bytes }),
    }
}

/// Drains the router and checks every emitted packet with etherparse.
fn drain_and_check(r: &mut CheckedRouter, now: Instant) -> Result<usize, TestCaseError> {
    let mut buf = vec![0u8; 65536 + 14];
    let mut n = 0;
    while let Some(tx) = r.router.poll_transmit(now, &mut buf) {
        n += 1;
        check_bytes(&buf[..tx.len], tx.to == TransmitTo::Network)?;
    }
    Ok(n)
}

#[derive(Clone, Debug)]
enum Op {
    Template {
        net: u8,
        which: u8,
        edits: Vec<(u8, u8)>,
    },
    Raw {
        net: u8,
        bytes: Vec<u8>,
    },
    Uplink {
        net: u8,
        which: u8,
        edits: Vec<(u8, u8)>,
    },
    Wait {
        millis: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let edits = proptest::collection::vec((any::<u8>(), any::<u8>()), 0..4);
    prop_oneof![
        4 => (any::<u8>(), 0..FRAME_TEMPLATES, edits.clone())
            .prop_map(|(net, which, edits)| Op::Template { net, which, edits }),
        1 => (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..120))
            .prop_map(|(net, bytes)| Op::Raw { net, bytes }),
        2 => (any::<u8>(), 0..UPLINK_TEMPLATES, edits)
            .prop_map(|(net, which, edits)| Op::Uplink { net, which, edits }),
        1 => any::<u16>().prop_map(|millis| Op::Wait { millis }),
    ]
}

fn net(b: u8) -> tapnet_switch::NetworkId {
    if b.is_multiple_of(2) {
        NET_SLIRP
    } else {
        NET_INTERNAL
    }
}

fn apply(frame: &mut [u8], edits: &[(u8, u8)], keep: core::ops::Range<usize>) {
    for &(at, value) in edits {
        let at = usize::from(at) % frame.len().max(1);
        if at < frame.len() && !keep.contains(&at) {
            frame[at] = value;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn emitted_packets_carry_valid_checksums(
        small_mtu in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..24),
    ) {
        let config = RouterConfig {
            uplink_mtu: if small_mtu { 1280 } else { 65520 },
            ..RouterConfig::default()
        };
        let mut r = CheckedRouter::new(config);
        let mut now = Instant::from_secs(1);
        drain_and_check(&mut r, now)?;
        for op in ops {
            match op {
                Op::Template { net: n, which, edits } => {
                    let id = net(n);
                    let mut f = fuzzing::frame_template(id, which);
                    apply(&mut f, &edits, 0..0);
                    let verdict = r.handle_frame(now, id, &mut f);
                    match verdict {
                        RouterVerdict::Reply { len } => {
                            check_bytes(&f[..len], true)?;
                        }
                        RouterVerdict::Uplink { packet } => {
                            check_bytes(&f[packet], false)?;
                        }
                        _ => {}
                    }
                }
                Op::Raw { net: n, mut bytes } => {
                    r.handle_frame(now, net(n), &mut bytes);
                }
                Op::Uplink { net: n, which, edits } => {
                    let id = net(n);
                    let mut f = fuzzing::uplink_template(id, which);
                    let keep = if f[14] >> 4 == 6 { 22..38 } else { 26..30 };
                    apply(&mut f, &edits, keep);
                    if let UplinkVerdict::ToNetwork { len } = r.handle_uplink(now, id, &mut f) {
                        prop_assert!(len <= f.len());
                    }
                }
                Op::Wait { millis } => {
                    now = now + core::time::Duration::from_millis(u64::from(millis));
                    r.handle_timeout(now);
                }
            }
            drain_and_check(&mut r, now)?;
        }
    }

    #[test]
    fn arbitrary_frames_and_packets_never_panic(
        frames in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200)), 1..16),
    ) {
        let mut r = CheckedRouter::new(RouterConfig::default());
        let now = Instant::from_secs(1);
        for (n, mut bytes) in frames {
            let mut copy = bytes.clone();
            r.handle_frame(now, net(n), &mut bytes);
            r.handle_uplink(now, net(n), &mut copy);
            r.drain(now);
        }
    }
}

#[test]
fn slirp_defaults_are_the_anchor_values() {
    let n = fuzzing::slirp_network();
    let v4 = n.v4.unwrap();
    assert_eq!(
        (v4.network, v4.prefix_len, v4.gateway),
        (Ipv4Addr::new(10, 0, 2, 0), 24, Ipv4Addr::new(10, 0, 2, 2))
    );
    assert_eq!(v4.extra, [Ipv4Addr::new(10, 0, 2, 3)]);
    let pool = v4.dhcp.unwrap().pool;
    assert_eq!(
        pool,
        (Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 30))
    );
    let v6 = n.v6.unwrap();
    assert_eq!(v6.gateway, "fd00::2".parse::<Ipv6Addr>().unwrap());
    assert_eq!(v6.dns, ["fd00::3".parse::<Ipv6Addr>().unwrap()]);
}

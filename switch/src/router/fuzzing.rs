//! Fuzzing harness for the router, shared by the cargo-fuzz target
//! `fuzz/fuzz_targets/router_frames.rs`, the stable corpus replay test
//! `tests/router_fuzz_corpus.rs` and the proptests.
//!
//! Not part of the stable API (hidden from docs). [`run`] decodes a byte string into a
//! router configuration and a sequence of operations on two networks (slirp4netns'
//! 10.0.2.0/24 + fd00::/64 with DHCP, and an internal 172.18.0.0/16 + fd01::/64 with a
//! small MTU), starting from valid packet templates that the fuzzer mutates, so that
//! its mutations reach deep into the handlers. After every call it checks:
//!
//! - no panic, whatever the bytes;
//! - verdict ranges lie within the frame; replies come from the gateway MAC;
//! - a `Drop` verdict bumps exactly its own counter, any other verdict none;
//! - isolation: nothing from one network reaches the uplink addressed to another
//!   network, and the internal network never reaches the uplink;
//! - every packet the router emits (replies, forwarded packets, generated packets) has
//!   a valid IPv4 header checksum, and every packet the router originates has valid
//!   ICMP/ICMPv6/UDP/TCP checksums ([`check_emitted`]).

use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    DhcpConfig, Router, RouterConfig, RouterDrop, RouterNetwork, RouterV4, RouterV6, RouterVerdict,
    TransmitTo, UplinkVerdict, link_local_from_mac,
};
use crate::{Instant, MacAddr, NetworkId};
use tapnet_wire::checksum;

/// The slirp4netns-like network.
pub const NET_SLIRP: NetworkId = NetworkId(1);
/// The internal network: no egress, no own-address uplink, MTU 576.
pub const NET_INTERNAL: NetworkId = NetworkId(2);

/// Gateway MAC of `NET_SLIRP`.
pub const SLIRP_GW_MAC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x02, 0x02]);
/// Gateway MAC of `NET_INTERNAL`.
pub const INTERNAL_GW_MAC: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x12, 0x00, 0x01]);

/// The slirp4netns defaults (anchors 1.1): 10.0.2.0/24, gateway .2, DNS .3, DHCP pool
/// .15 to .30, fd00::/64 with gateway fd00::2 and DNS fd00::3, MTU 1500.
pub fn slirp_network() -> RouterNetwork {
    RouterNetwork {
        gateway_mac: SLIRP_GW_MAC,
        v4: Some(RouterV4 {
            network: Ipv4Addr::new(10, 0, 2, 0),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            extra: vec![Ipv4Addr::new(10, 0, 2, 3)],
            dhcp: Some(DhcpConfig {
                pool: (Ipv4Addr::new(10, 0, 2, 15), Ipv4Addr::new(10, 0, 2, 30)),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
                lease_time: Duration::from_secs(3600),
            }),
        }),
        v6: Some(RouterV6 {
            prefix: "fd00::".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
            prefix_len: 64,
            gateway: "fd00::2".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
            extra: vec!["fd00::3".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)],
            dns: vec!["fd00::3".parse().unwrap_or(Ipv6Addr::UNSPECIFIED)],
        }),
        mtu: 1500,
        egress: true,
        own_addresses_to_uplink: true,
    }
}

/// An internal network: 172.18.0.0/16 and fd01::/64, no egress, MTU 576, no DHCP.
pub fn internal_network() -> RouterNetwork {
    RouterNetwork {
        gateway_mac: INTERNAL_GW_MAC,
        v4: Some(RouterV4 {
            network: Ipv4Addr::new(172, 18, 0, 0),
            prefix_len: 16,
            gateway: Ipv4Addr::new(172, 18, 0, 1),
            extra: Vec::new(),
            dhcp: None,
        }),
        v6: Some(RouterV6 {
            prefix: "fd01::".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
            prefix_len: 64,
            gateway: "fd01::1".parse().unwrap_or(Ipv6Addr::UNSPECIFIED),
            extra: Vec::new(),
            dns: Vec::new(),
        }),
        mtu: 576,
        egress: false,
        own_addresses_to_uplink: false,
    }
}

/// Addresses used by the templates for one network.
#[derive(Clone, Copy, Debug)]
struct Addrs {
    gw_mac: MacAddr,
    gw4: Ipv4Addr,
    gw6: Ipv6Addr,
    host_mac: MacAddr,
    host4: Ipv4Addr,
    host6: Ipv6Addr,
    peer4: Ipv4Addr,
    peer6: Ipv6Addr,
    other4: Ipv4Addr,
}

fn addrs(net: NetworkId) -> Addrs {
    if net == NET_INTERNAL {
        Addrs {
            gw_mac: INTERNAL_GW_MAC,
            gw4: Ipv4Addr::new(172, 18, 0, 1),
            gw6: Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 1),
            host_mac: MacAddr([0x02, 0x42, 0xac, 0x12, 0x00, 0x05]),
            host4: Ipv4Addr::new(172, 18, 0, 5),
            host6: Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 5),
            peer4: Ipv4Addr::new(172, 18, 0, 6),
            peer6: Ipv6Addr::new(0xfd01, 0, 0, 0, 0, 0, 0, 6),
            other4: Ipv4Addr::new(10, 0, 2, 15),
        }
    } else {
        Addrs {
            gw_mac: SLIRP_GW_MAC,
            gw4: Ipv4Addr::new(10, 0, 2, 2),
            gw6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
            host_mac: MacAddr([0x02, 0x42, 0x0a, 0x00, 0x02, 0x0f]),
            host4: Ipv4Addr::new(10, 0, 2, 15),
            host6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x15),
            peer4: Ipv4Addr::new(10, 0, 2, 16),
            peer6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x16),
            other4: Ipv4Addr::new(172, 18, 0, 5),
        }
    }
}

/// Ethernet header.
fn eth(dst: MacAddr, src: MacAddr, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// An IPv4 packet with a valid header checksum and, for ICMP/UDP/TCP, a valid
/// upper-layer checksum (the field at `l4_checksum_at` of `l4`).
pub fn ipv4_packet(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    df: bool,
    l4: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    let total = u16::try_from(20 + l4.len()).unwrap_or(u16::MAX);
    p[0] = 0x45;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6] = if df { 0x40 } else { 0 };
    p[8] = ttl;
    p[9] = proto;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let ck = checksum::checksum(&p);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    let mut l4 = l4.to_vec();
    match proto {
        1 if l4.len() >= 4 => {
            l4[2..4].fill(0);
            let ck = checksum::checksum(&l4);
            l4[2..4].copy_from_slice(&ck.to_be_bytes());
        }
        6 | 17 if l4.len() >= 18 || (proto == 17 && l4.len() >= 8) => {
            let at = if proto == 6 { 16 } else { 6 };
            l4[at..at + 2].fill(0);
            let ck = checksum::upper_layer(checksum::pseudo_v4(src, dst, proto, l4.len()), &l4);
            l4[at..at + 2].copy_from_slice(&ck.to_be_bytes());
        }
        _ => {}
    }
    p.extend_from_slice(&l4);
    p
}

/// An IPv6 packet with a valid ICMPv6/UDP/TCP checksum.
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&u16::try_from(l4.len()).unwrap_or(u16::MAX).to_be_bytes());
    p[6] = next;
    p[7] = hop;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    let mut l4 = l4.to_vec();
    let at = match next {
        58 => Some(2),
        17 => Some(6),
        6 => Some(16),
        _ => None,
    };
    if let Some(at) = at.filter(|&at| l4.len() >= at + 2) {
        l4[at..at + 2].fill(0);
        let ck = checksum::upper_layer(checksum::pseudo_v6(src, dst, next, l4.len()), &l4);
        l4[at..at + 2].copy_from_slice(&ck.to_be_bytes());
    }
    p.extend_from_slice(&l4);
    p
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(
        &u16::try_from(8 + payload.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x02;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t
}

/// A DHCP client message (BOOTREQUEST) with options 53, and 50/54 when given.
pub fn dhcp_message(
    mac: MacAddr,
    msg_type: u8,
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
    ciaddr: Ipv4Addr,
    broadcast: bool,
) -> Vec<u8> {
    let mut m = vec![0u8; 240];
    m[0..4].copy_from_slice(&[1, 1, 6, 0]);
    m[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    if broadcast {
        m[10] = 0x80;
    }
    m[12..16].copy_from_slice(&ciaddr.octets());
    m[28..34].copy_from_slice(&mac.0);
    m[236..240].copy_from_slice(&[99, 130, 83, 99]);
    m.extend_from_slice(&[53, 1, msg_type]);
    if let Some(ip) = requested {
        m.extend_from_slice(&[50, 4]);
        m.extend_from_slice(&ip.octets());
    }
    if let Some(ip) = server {
        m.extend_from_slice(&[54, 4]);
        m.extend_from_slice(&ip.octets());
    }
    m.push(255);
    m
}

fn icmpv6_ndp(icmp_type: u8, target: Option<Ipv6Addr>, option: Option<(u8, MacAddr)>) -> Vec<u8> {
    let mut b = vec![icmp_type, 0, 0, 0, 0, 0, 0, 0];
    if let Some(t) = target {
        b.extend_from_slice(&t.octets());
    }
    if let Some((kind, mac)) = option {
        b.extend_from_slice(&[kind, 1]);
        b.extend_from_slice(&mac.0);
    }
    b
}

/// The number of frame templates.
pub const FRAME_TEMPLATES: u8 = 18;

/// A valid frame from a container of `net` to the router (template `which`).
pub fn frame_template(net: NetworkId, which: u8) -> Vec<u8> {
    let a = addrs(net);
    let v4 = |mut f: Vec<u8>, p: Vec<u8>| {
        f.extend_from_slice(&p);
        f
    };
    let to_gw4 = eth(a.gw_mac, a.host_mac, 0x0800);
    let to_gw6 = eth(a.gw_mac, a.host_mac, 0x86dd);
    let echo = [8, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'];
    let echo6 = [128, 0, 0, 0, 0, 1, 0, 1, b'p', b'i', b'n', b'g'];
    let remote4 = Ipv4Addr::new(8, 8, 8, 8);
    let remote6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    match which % FRAME_TEMPLATES {
        0 => {
            // ARP request for the gateway.
            let mut f = eth(MacAddr::BROADCAST, a.host_mac, 0x0806);
            f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
            f.extend_from_slice(&a.host_mac.0);
            f.extend_from_slice(&a.host4.octets());
            f.extend_from_slice(&[0; 6]);
            f.extend_from_slice(&a.gw4.octets());
            f
        }
        1 => v4(to_gw4, ipv4_packet(a.host4, a.gw4, 1, 64, false, &echo)),
        2 => v4(
            to_gw4,
            ipv4_packet(a.host4, remote4, 17, 64, true, &udp(5000, 53, b"query")),
        ),
        3 => v4(
            to_gw4,
            ipv4_packet(a.host4, a.gw4, 6, 64, true, &tcp_syn(40000, 80)),
        ),
        4 => {
            let msg = dhcp_message(a.host_mac, 1, None, None, Ipv4Addr::UNSPECIFIED, false);
            let ip = ipv4_packet(
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                17,
                64,
                false,
                &udp(68, 67, &msg),
            );
            v4(eth(MacAddr::BROADCAST, a.host_mac, 0x0800), ip)
        }
        5 => {
            let msg = dhcp_message(
                a.host_mac,
                3,
                Some(Ipv4Addr::new(10, 0, 2, 15)),
                Some(a.gw4),
                Ipv4Addr::UNSPECIFIED,
                true,
            );
            let ip = ipv4_packet(
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                17,
                64,
                false,
                &udp(68, 67, &msg),
            );
            v4(eth(MacAddr::BROADCAST, a.host_mac, 0x0800), ip)
        }
        6 => {
            // Router solicitation from the link-local address, with SLLAO.
            let ll = link_local_from_mac(a.host_mac);
            let all_routers = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
            let ip = ipv6_packet(
                ll,
                all_routers,
                58,
                255,
                &icmpv6_ndp(133, None, Some((1, a.host_mac))),
            );
            v4(
                eth(MacAddr([0x33, 0x33, 0, 0, 0, 2]), a.host_mac, 0x86dd),
                ip,
            )
        }
        7 => {
            // Neighbour solicitation for the gateway, to its solicited-node group.
            let group = super::ipv6::solicited_node(a.gw6);
            let o = group.octets();
            let ip = ipv6_packet(
                a.host6,
                group,
                58,
                255,
                &icmpv6_ndp(135, Some(a.gw6), Some((1, a.host_mac))),
            );
            v4(
                eth(
                    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]]),
                    a.host_mac,
                    0x86dd,
                ),
                ip,
            )
        }
        8 => v4(to_gw6, ipv6_packet(a.host6, a.gw6, 58, 64, &echo6)),
        9 => v4(
            to_gw6,
            ipv6_packet(a.host6, remote6, 17, 64, &udp(5000, 53, b"query")),
        ),
        10 => v4(
            to_gw4,
            ipv4_packet(a.host4, a.peer4, 17, 64, false, &udp(1, 2, b"hairpin")),
        ),
        11 => v4(
            to_gw4,
            ipv4_packet(a.host4, a.other4, 17, 64, false, &udp(1, 2, b"isolated")),
        ),
        12 => v4(
            to_gw4,
            ipv4_packet(a.host4, remote4, 17, 64, false, &udp(1, 2, &[0x5a; 1600])),
        ),
        13 => {
            // Unsolicited neighbour advertisement from the container.
            let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            let mut body = icmpv6_ndp(136, Some(a.host6), Some((2, a.host_mac)));
            body[4] = 0x20;
            v4(
                eth(MacAddr([0x33, 0x33, 0, 0, 0, 1]), a.host_mac, 0x86dd),
                ipv6_packet(a.host6, all_nodes, 58, 255, &body),
            )
        }
        14 => {
            // Gratuitous ARP from the container.
            let mut f = eth(MacAddr::BROADCAST, a.host_mac, 0x0806);
            f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
            f.extend_from_slice(&a.host_mac.0);
            f.extend_from_slice(&a.host4.octets());
            f.extend_from_slice(&[0xff; 6]);
            f.extend_from_slice(&a.host4.octets());
            f
        }
        15 => v4(
            to_gw6,
            ipv6_packet(a.host6, a.gw6, 6, 64, &tcp_syn(40000, 80)),
        ),
        16 => v4(
            to_gw4,
            ipv4_packet(a.host4, remote4, 17, 1, false, &udp(33434, 33434, b"trace")),
        ),
        _ => v4(
            to_gw6,
            ipv6_packet(a.host6, a.peer6, 17, 64, &udp(1, 2, b"hairpin6")),
        ),
    }
}

/// The number of uplink packet templates.
pub const UPLINK_TEMPLATES: u8 = 5;

/// A valid frame (14 bytes of room, then an IP packet) from the uplink to `net`.
pub fn uplink_template(net: NetworkId, which: u8) -> Vec<u8> {
    let a = addrs(net);
    let remote4 = Ipv4Addr::new(1, 1, 1, 1);
    let remote6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let ip = match which % UPLINK_TEMPLATES {
        0 => ipv4_packet(remote4, a.host4, 17, 63, false, &udp(53, 5000, b"answer")),
        1 => ipv4_packet(remote4, a.peer4, 17, 63, true, &udp(53, 5000, &[7; 1400])),
        2 => ipv4_packet(remote4, a.host4, 17, 63, false, &udp(53, 5000, &[7; 1400])),
        3 => ipv6_packet(remote6, a.host6, 17, 63, &udp(53, 5000, b"answer6")),
        _ => ipv6_packet(remote6, a.peer6, 58, 63, &[129, 0, 0, 0, 0, 1, 0, 1]),
    };
    let mut f = vec![0u8; 14];
    f.extend_from_slice(&ip);
    f
}

/// Which IP addresses belong to the router (sources of originated packets).
fn is_router_address(ip: IpAddr) -> bool {
    let nets = [slirp_network(), internal_network()];
    nets.iter().any(|n| match ip {
        IpAddr::V4(ip) => {
            n.v4.as_ref()
                .is_some_and(|v| v.gateway == ip || v.extra.contains(&ip))
        }
        IpAddr::V6(ip) => {
            ip == link_local_from_mac(n.gateway_mac)
                || n.v6
                    .as_ref()
                    .is_some_and(|v| v.gateway == ip || v.extra.contains(&ip))
        }
    })
}

/// Checks an emitted IP packet: IPv4 header checksum; for packets the router
/// originated (source is a router address, not a fragment), the ICMP, ICMPv6, UDP or
/// TCP checksum. Returns a description of the first problem.
pub fn check_emitted(ip: &[u8]) -> Result<(), String> {
    match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let header = ip.get(..ihl).ok_or("truncated IPv4 header")?;
            if ihl < 20 || !checksum::verifies(header) {
                return Err("bad IPv4 header checksum".into());
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            if total != ip.len() {
                return Err(format!("total length {total} != {}", ip.len()));
            }
            let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let fragment = ip[6] & 0x20 != 0 || u16::from_be_bytes([ip[6] & 0x1f, ip[7]]) != 0;
            if !is_router_address(IpAddr::V4(src)) || fragment {
                return Ok(());
            }
            let l4 = &ip[ihl..];
            let ok = match ip[9] {
                1 => checksum::verifies(l4),
                6 | 17 => {
                    checksum::fold(checksum::add(
                        checksum::pseudo_v4(src, dst, ip[9], l4.len()),
                        l4,
                    )) == 0xffff
                }
                _ => true,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("bad checksum, protocol {}", ip[9]))
            }
        }
        Some(6) => {
            if ip.len() < 40 {
                return Err("truncated IPv6 header".into());
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if 40 + plen != ip.len() {
                return Err(format!("payload length {plen} != {}", ip.len() - 40));
            }
            let mut a = [0u8; 16];
            a.copy_from_slice(&ip[8..24]);
            let src = Ipv6Addr::from(a);
            a.copy_from_slice(&ip[24..40]);
            let dst = Ipv6Addr::from(a);
            if !is_router_address(IpAddr::V6(src)) || !matches!(ip[6], 6 | 17 | 58) {
                return Ok(());
            }
            let l4 = &ip[40..];
            let sum = checksum::fold(checksum::add(
                checksum::pseudo_v6(src, dst, ip[6], l4.len()),
                l4,
            ));
            if sum == 0xffff {
                Ok(())
            } else {
                Err(format!("bad checksum, next header {}", ip[6]))
            }
        }
        _ => Err("not an IP packet".into()),
    }
}

/// Checks an emitted Ethernet frame from `gw_mac` (ARP or IP).
pub fn check_emitted_frame(frame: &[u8], gw_mac: MacAddr) -> Result<(), String> {
    if frame.len() < 14 || frame[6..12] != gw_mac.0 {
        return Err("frame not from the gateway MAC".into());
    }
    match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0806 => {
            if frame.len() == 42 {
                Ok(())
            } else {
                Err("ARP frame length".into())
            }
        }
        0x0800 | 0x86dd => check_emitted(&frame[14..]),
        other => Err(format!("ethertype {other:#06x}")),
    }
}

/// A cursor over the fuzzer's bytes that yields zeros once exhausted.
#[derive(Debug)]
pub(super) struct Bytes<'a> {
    pub(super) data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub(super) fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub(super) fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

fn network_id(b: u8) -> NetworkId {
    match b % 4 {
        0 | 1 => NET_SLIRP,
        2 => NET_INTERNAL,
        _ => NetworkId(7),
    }
}

pub(super) fn mutate(frame: &mut [u8], input: &mut Bytes<'_>, keep: core::ops::Range<usize>) {
    for _ in 0..input.byte() % 4 {
        let (at, value) = (usize::from(input.byte()), input.byte());
        if frame.is_empty() {
            return;
        }
        let at = at % frame.len().min(256);
        if !keep.contains(&at) {
            frame[at] = value;
        }
    }
}

/// A [`Router`] with the two test networks, checking invariants after every call.
#[derive(Debug)]
pub struct CheckedRouter {
    /// The router under test.
    pub router: Router,
    buf: Vec<u8>,
}

impl CheckedRouter {
    /// A router with `NET_SLIRP` and `NET_INTERNAL`.
    pub fn new(config: RouterConfig) -> Self {
        let mut router = Router::new(config);
        let added = router.add_network(NET_SLIRP, slirp_network());
        assert_eq!(added, Ok(()));
        let added = router.add_network(NET_INTERNAL, internal_network());
        assert_eq!(added, Ok(()));
        Self {
            router,
            buf: vec![0u8; 65536 + 14],
        }
    }

    fn check_drop_counted(&self, before: &super::RouterCounters, reason: Option<RouterDrop>) {
        let after = self.router.counters();
        for r in RouterDrop::ALL {
            let expected = before.drops.get(r) + u64::from(Some(r) == reason);
            assert_eq!(after.drops.get(r), expected, "drop counter {r}");
        }
    }

    /// `handle_frame`, checked.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        net: NetworkId,
        frame: &mut [u8],
    ) -> RouterVerdict {
        let before = self.router.counters();
        let verdict = self.router.handle_frame(now, net, frame);
        let reason = match &verdict {
            RouterVerdict::Drop(r) => Some(*r),
            _ => None,
        };
        self.check_drop_counted(&before, reason);
        match &verdict {
            RouterVerdict::Uplink { packet } => {
                assert!(
                    packet.start == 14 && packet.end <= frame.len(),
                    "{packet:?}"
                );
                assert_ne!(net, NET_INTERNAL, "internal network reached the uplink");
                let ip = &frame[packet.clone()];
                check_emitted(ip).unwrap_or_else(|e| panic!("uplink packet: {e}"));
                // Isolation: nothing reaches the uplink addressed to the other network.
                let internal = internal_network();
                let (v4, v6) = (internal.v4.as_ref(), internal.v6.as_ref());
                if ip[0] >> 4 == 4 {
                    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
                    let inside = v4
                        .is_some_and(|v| dst & super::mask4(v.prefix_len) == u32::from(v.network));
                    assert!(!inside, "crossed into the internal network");
                } else {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&ip[24..40]);
                    let dst = u128::from_be_bytes(a);
                    let inside = v6
                        .is_some_and(|v| dst & super::mask6(v.prefix_len) == u128::from(v.prefix));
                    assert!(!inside, "crossed into the internal network");
                }
            }
            RouterVerdict::Reply { len } => {
                assert!(*len <= frame.len());
                let gw = self.router.gateway_mac(net).expect("known network");
                check_emitted_frame(&frame[..*len], gw).unwrap_or_else(|e| panic!("reply: {e}"));
            }
            RouterVerdict::Consumed | RouterVerdict::Drop(_) => {}
        }
        verdict
    }

    /// `handle_uplink`, checked.
    pub fn handle_uplink(
        &mut self,
        now: Instant,
        net: NetworkId,
        frame: &mut [u8],
    ) -> UplinkVerdict {
        let before = self.router.counters();
        let verdict = self.router.handle_uplink(now, net, frame);
        let reason = match &verdict {
            UplinkVerdict::Drop(r) => Some(*r),
            _ => None,
        };
        self.check_drop_counted(&before, reason);
        if let UplinkVerdict::ToNetwork { len } = verdict {
            assert!(len <= frame.len());
            let gw = self.router.gateway_mac(net).expect("known network");
            check_emitted_frame(&frame[..len], gw).unwrap_or_else(|e| panic!("to network: {e}"));
        }
        verdict
    }

    /// `handle_timeout`, then checks the timer moved past `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.router.handle_timeout(now);
        if let Some(at) = self.router.poll_timeout() {
            assert!(at > now, "timer {at} not after {now}");
        }
    }

    /// Drains `poll_transmit`, checking every packet; returns how many there were.
    pub fn drain(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(t) = self.router.poll_transmit(now, &mut self.buf) {
            n += 1;
            let bytes = &self.buf[..t.len];
            match t.to {
                TransmitTo::Network => {
                    let gw = self.router.gateway_mac(t.net).expect("known network");
                    check_emitted_frame(bytes, gw).unwrap_or_else(|e| panic!("transmit: {e}"));
                }
                TransmitTo::Uplink => {
                    check_emitted(bytes).unwrap_or_else(|e| panic!("transmit: {e}"))
                }
            }
        }
        n
    }
}

/// Decodes `data` into a configuration and operations and runs them through a
/// [`CheckedRouter`]. Panics on an invariant violation; that is what the fuzzer hunts.
///
/// Format (missing bytes read as zero):
///
/// - byte 0: bit 0 uplink MTU 1280 (else 65520); bits 1-2 packets held per neighbour;
///   bits 3-5 neighbour timeout in seconds (+1); bit 6 ICMP errors limited to 1/s;
/// - then operations, selected by `op % 8`, each followed by a drain of `poll_transmit`:
///   - `0..=3`: frame template: network byte, template byte, then mutations (count
///     byte `% 4`, then offset and value bytes each);
///   - `4`: raw frame: network byte, length byte (`% 128`), bytes;
///   - `5`: uplink template: network byte, template byte, mutations (source address
///     kept: only the router's own packets must carry valid upper-layer checksums);
///   - `6`: time step byte (x 50 ms), then `handle_timeout`;
///   - `7`: control byte: set or remove a static lease, or remove and re-add the
///     internal network.
pub fn run(data: &[u8]) {
    let mut input = Bytes { data };
    let b = input.byte();
    let config = RouterConfig {
        uplink_mtu: if b & 1 != 0 { 1280 } else { 65520 },
        pending_per_neighbour: usize::from((b >> 1) & 3),
        neighbour_timeout: Duration::from_secs(u64::from((b >> 3) & 7) + 1),
        icmp_errors_per_sec: if b & 0x40 != 0 { 1 } else { 1000 },
        icmp_burst: if b & 0x40 != 0 { 1 } else { 50 },
        ..RouterConfig::default()
    };
    let mut r = CheckedRouter::new(config);
    let mut now = Instant::from_secs(1);
    r.drain(now);
    while !input.data.is_empty() {
        match input.byte() % 8 {
            0..=3 => {
                let net = network_id(input.byte());
                let mut frame = frame_template(net, input.byte());
                mutate(&mut frame, &mut input, 0..0);
                r.handle_frame(now, net, &mut frame);
            }
            4 => {
                let net = network_id(input.byte());
                let len = usize::from(input.byte() % 128);
                let mut frame = input.take(len).to_vec();
                r.handle_frame(now, net, &mut frame);
            }
            5 => {
                let net = network_id(input.byte());
                let mut frame = uplink_template(net, input.byte());
                let keep = if frame.get(14).is_some_and(|b| b >> 4 == 6) {
                    22..38
                } else {
                    26..30
                };
                mutate(&mut frame, &mut input, keep);
                r.handle_uplink(now, net, &mut frame);
            }
            6 => {
                now = now + Duration::from_millis(50 * u64::from(input.byte()));
                r.handle_timeout(now);
            }
            _ => {
                let c = input.byte();
                let mac = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x02, c & 0x1f]);
                match c % 3 {
                    0 => {
                        let ip = Ipv4Addr::new(10, 0, 2, c >> 2);
                        // The network address, the gateway's and the DNS address are
                        // refused.
                        let want = match c >> 2 {
                            0 | 2 | 3 => Err(crate::ConfigError::UnusableAddress(ip)),
                            _ => Ok(()),
                        };
                        assert_eq!(r.router.set_static_lease(NET_SLIRP, mac, ip), want);
                    }
                    1 => {
                        r.router.remove_static_lease(NET_SLIRP, mac);
                    }
                    _ => {
                        assert_eq!(r.router.remove_network(NET_INTERNAL), Ok(()));
                        assert_eq!(
                            r.router.add_network(NET_INTERNAL, internal_network()),
                            Ok(())
                        );
                    }
                }
            }
        }
        r.drain(now);
    }
    r.handle_timeout(now + Duration::from_secs(3600));
    r.drain(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_empty_and_short_inputs() {
        run(&[]);
        run(&[0]);
        run(&[1, 2, 3]);
        run(&[0xff; 64]);
    }

    #[test]
    fn every_template_is_accepted_unmutated() {
        for net in [NET_SLIRP, NET_INTERNAL] {
            for which in 0..FRAME_TEMPLATES {
                let mut r = CheckedRouter::new(RouterConfig::default());
                let mut frame = frame_template(net, which);
                let verdict = r.handle_frame(Instant::from_secs(1), net, &mut frame);
                r.drain(Instant::from_secs(1));
                assert!(
                    !matches!(
                        verdict,
                        RouterVerdict::Drop(RouterDrop::Malformed | RouterDrop::BadChecksum)
                    ),
                    "template {which} on {net:?}: {verdict:?}"
                );
            }
            for which in 0..UPLINK_TEMPLATES {
                let mut r = CheckedRouter::new(RouterConfig::default());
                let mut frame = uplink_template(net, which);
                let verdict = r.handle_uplink(Instant::from_secs(1), net, &mut frame);
                assert!(
                    !matches!(
                        verdict,
                        UplinkVerdict::Drop(RouterDrop::Malformed | RouterDrop::BadChecksum)
                    ),
                    "uplink template {which} on {net:?}: {verdict:?}"
                );
            }
        }
    }
}

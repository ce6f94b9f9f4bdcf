//! Each rule of the source guard on hand-built frames, with the reason it gives.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::fuzzing::frames::*;

const MAC: MacAddr = MacAddr([0x02, 0x42, 10, 1, 0, 2]);
const NEIGHBOUR_MAC: MacAddr = MacAddr([0x02, 0x42, 10, 1, 0, 3]);
const BROADCAST: MacAddr = MacAddr::BROADCAST;
const IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const NEIGHBOUR: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
const NEIGHBOUR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 3);
const PREFIX6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0);
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const MLD_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);
const UNSPECIFIED6: Ipv6Addr = Ipv6Addr::UNSPECIFIED;

const NOW: Instant = Instant::from_secs(10);

fn guard() -> PortGuard {
    PortGuard::new(MAC)
        .with_ipv4(IP)
        .with_ipv6(IP6)
        .with_slaac_prefix(PREFIX6)
}

/// fe80:: + the EUI-64 of `mac`.
fn link_local(mac: MacAddr) -> Ipv6Addr {
    Ipv6Addr::from((u128::from(LINK_LOCAL_UPPER) << 64) | u128::from(eui64_iid(mac)))
}

/// The SLAAC address of `mac` in fd00:1::/64.
fn slaac(mac: MacAddr) -> Ipv6Addr {
    Ipv6Addr::from((u128::from(PREFIX6) & !u128::from(u64::MAX)) | u128::from(eui64_iid(mac)))
}

fn udp4(src_mac: MacAddr, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    ethernet(
        NEIGHBOUR_MAC,
        src_mac,
        0,
        0x0800,
        &ipv4(src, dst, 17, &udp(1000, 2000, b"x")),
    )
}

fn arp_frame(src_mac: MacAddr, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    ethernet(
        BROADCAST,
        src_mac,
        0,
        0x0806,
        &arp(1, sha, spa, MacAddr::ZERO, tpa),
    )
}

fn ip6_frame(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    ethernet(
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        MAC,
        0,
        0x86dd,
        &ipv6(src, dst, next, payload),
    )
}

fn check(frame: &[u8]) -> Result<(), DropReason> {
    guard().check(frame, NOW)
}

#[test]
fn ethernet_source_must_be_the_ports_mac() {
    assert_eq!(check(&udp4(MAC, IP, NEIGHBOUR)), Ok(()));
    assert_eq!(
        check(&udp4(NEIGHBOUR_MAC, IP, NEIGHBOUR)),
        Err(DropReason::SpoofedMac)
    );
    // Without a known MAC any source goes, but the IP rules stay.
    let any = PortGuard::any_mac().with_ipv4(IP);
    assert_eq!(any.check(&udp4(NEIGHBOUR_MAC, IP, GATEWAY), NOW), Ok(()));
    assert_eq!(
        any.check(&udp4(NEIGHBOUR_MAC, NEIGHBOUR, GATEWAY), NOW),
        Err(DropReason::SpoofedIp)
    );
}

#[test]
fn ipv4_source_must_be_given() {
    for forged in [NEIGHBOUR, GATEWAY, Ipv4Addr::new(10, 2, 0, 2)] {
        assert_eq!(
            check(&udp4(MAC, forged, NEIGHBOUR)),
            Err(DropReason::SpoofedIp),
            "{forged}"
        );
    }
    // A truncated header cannot be vouched for.
    let mut short = udp4(MAC, IP, NEIGHBOUR);
    short.truncate(14 + 19);
    assert_eq!(check(&short), Err(DropReason::SpoofedIp));
}

#[test]
fn unspecified_ipv4_source_only_for_dhcp_clients() {
    let discover = dhcp(1, 1, MAC, Ipv4Addr::UNSPECIFIED, None);
    let client = |sport, dport| {
        ethernet(
            BROADCAST,
            MAC,
            0,
            0x0800,
            &ipv4(
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                17,
                &udp(sport, dport, &discover),
            ),
        )
    };
    assert_eq!(check(&client(68, 67)), Ok(()));
    assert_eq!(check(&client(68, 68)), Err(DropReason::SpoofedIp));
    assert_eq!(check(&client(1000, 67)), Err(DropReason::SpoofedIp));
    let tcp = ethernet(
        BROADCAST,
        MAC,
        0,
        0x0800,
        &ipv4(Ipv4Addr::UNSPECIFIED, GATEWAY, 6, &udp(68, 67, b"")),
    );
    assert_eq!(check(&tcp), Err(DropReason::SpoofedIp));
    // A later fragment has no UDP header to judge by.
    let mut fragment = client(68, 67);
    fragment[14 + 6..14 + 8].copy_from_slice(&[0x00, 0x10]);
    assert_eq!(check(&fragment), Err(DropReason::SpoofedIp));
}

#[test]
fn arp_must_name_the_ports_mac_and_address() {
    assert_eq!(check(&arp_frame(MAC, MAC, IP, GATEWAY)), Ok(()));
    // Gratuitous ARP for itself (RFC 5227 announcement) and an ARP probe.
    assert_eq!(check(&arp_frame(MAC, MAC, IP, IP)), Ok(()));
    assert_eq!(
        check(&arp_frame(MAC, MAC, Ipv4Addr::UNSPECIFIED, NEIGHBOUR)),
        Ok(())
    );
    // Claiming a neighbour's or the gateway's address, or another hardware address.
    assert_eq!(
        check(&arp_frame(MAC, MAC, NEIGHBOUR, NEIGHBOUR)),
        Err(DropReason::SpoofedArp)
    );
    assert_eq!(
        check(&arp_frame(MAC, MAC, GATEWAY, NEIGHBOUR)),
        Err(DropReason::SpoofedArp)
    );
    assert_eq!(
        check(&arp_frame(MAC, NEIGHBOUR_MAC, IP, GATEWAY)),
        Err(DropReason::SpoofedArp)
    );
    // Without a known MAC, the sender hardware address is still the frame's source.
    let any = PortGuard::any_mac().with_ipv4(IP);
    assert_eq!(
        any.check(&arp_frame(NEIGHBOUR_MAC, NEIGHBOUR_MAC, IP, GATEWAY), NOW),
        Ok(())
    );
    assert_eq!(
        any.check(&arp_frame(NEIGHBOUR_MAC, MAC, IP, GATEWAY), NOW),
        Err(DropReason::SpoofedArp)
    );
}

#[test]
fn arp_that_cannot_be_read_is_refused() {
    let mut short = arp_frame(MAC, MAC, IP, GATEWAY);
    short.truncate(14 + 27);
    assert_eq!(check(&short), Err(DropReason::SpoofedArp));
    let mut other_protocol = arp_frame(MAC, MAC, IP, GATEWAY);
    other_protocol[14 + 2..14 + 4].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(check(&other_protocol), Err(DropReason::SpoofedArp));
}

#[test]
fn vlan_tags_are_looked_through() {
    for tags in 1..=2 {
        let ok = ethernet(
            NEIGHBOUR_MAC,
            MAC,
            tags,
            0x0800,
            &ipv4(IP, NEIGHBOUR, 17, &udp(1, 2, b"")),
        );
        assert_eq!(check(&ok), Ok(()), "{tags} tags");
        let forged = ethernet(
            NEIGHBOUR_MAC,
            MAC,
            tags,
            0x0800,
            &ipv4(NEIGHBOUR, IP, 17, &udp(1, 2, b"")),
        );
        assert_eq!(check(&forged), Err(DropReason::SpoofedIp), "{tags} tags");
        let garp = ethernet(
            BROADCAST,
            MAC,
            tags,
            0x0806,
            &arp(2, MAC, NEIGHBOUR, BROADCAST, NEIGHBOUR),
        );
        assert_eq!(check(&garp), Err(DropReason::SpoofedArp), "{tags} tags");
    }
    // A third tag, or a tag cut off, hides what is inside.
    let three = ethernet(
        NEIGHBOUR_MAC,
        MAC,
        3,
        0x0800,
        &ipv4(IP, NEIGHBOUR, 17, &udp(1, 2, b"")),
    );
    assert_eq!(check(&three), Err(DropReason::SpoofedIp));
    let mut cut = ethernet(NEIGHBOUR_MAC, MAC, 1, 0x0800, &[]);
    cut.truncate(16);
    assert_eq!(check(&cut), Err(DropReason::SpoofedIp));
}

#[test]
fn other_ethertypes_pass() {
    for ethertype in [0x88cc, 0x8035, 0x88b5] {
        let frame = ethernet(NEIGHBOUR_MAC, MAC, 0, ethertype, &[0; 46]);
        assert_eq!(check(&frame), Ok(()), "{ethertype:#x}");
    }
    // The MAC rule applies to them too.
    let frame = ethernet(BROADCAST, NEIGHBOUR_MAC, 0, 0x88cc, &[0; 46]);
    assert_eq!(check(&frame), Err(DropReason::SpoofedMac));
}

#[test]
fn ipv6_source_must_be_given_or_derived_from_the_mac() {
    let udp6 = |src| ip6_frame(src, NEIGHBOUR6, 17, &udp(1, 2, b"x"));
    for own in [IP6, link_local(MAC), slaac(MAC)] {
        assert_eq!(check(&udp6(own)), Ok(()), "{own}");
    }
    for forged in [
        NEIGHBOUR6,
        link_local(NEIGHBOUR_MAC),
        slaac(NEIGHBOUR_MAC),
        Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2),
        UNSPECIFIED6,
    ] {
        assert_eq!(check(&udp6(forged)), Err(DropReason::SpoofedIp), "{forged}");
    }
    let mut short = udp6(IP6);
    short.truncate(14 + 39);
    assert_eq!(check(&short), Err(DropReason::SpoofedIp));
}

#[test]
fn ipv6_ranges_allow_all_but_the_denied() {
    let gateway6 = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
    let open = PortGuard::any_mac()
        .with_ipv6_range(PREFIX6, 64)
        .with_ipv6_range(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 64)
        .without_ipv6(gateway6);
    assert!(open.allows_ipv6(NEIGHBOUR6));
    assert!(open.allows_ipv6(link_local(NEIGHBOUR_MAC)));
    assert!(!open.allows_ipv6(gateway6));
    assert!(!open.allows_ipv6(Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2)));
    // No MAC, no EUI-64 addresses.
    assert!(
        !PortGuard::any_mac()
            .with_slaac_prefix(PREFIX6)
            .allows_ipv6(slaac(MAC))
    );
}

#[test]
fn unspecified_ipv6_source_only_for_dad_and_mld_reports() {
    let solicited = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 2);
    let dad = neighbour_message(135, IP6, &[]);
    assert_eq!(check(&ip6_frame(UNSPECIFIED6, solicited, 58, &dad)), Ok(()));
    // MLDv2 report behind a hop-by-hop header (router alert), as the kernel sends it.
    let report = options_header(58, &icmpv6(143, &[0; 4]));
    assert_eq!(
        check(&ip6_frame(UNSPECIFIED6, MLD_ROUTERS, 0, &report)),
        Ok(())
    );
    let mld1 = icmpv6(131, &[0; 20]);
    assert_eq!(
        check(&ip6_frame(UNSPECIFIED6, MLD_ROUTERS, 58, &mld1)),
        Ok(())
    );
    // A router solicitation from a host without an address (RFC 4861 6.3.7).
    let rs = router_solicitation(&[]);
    assert_eq!(
        check(&ip6_frame(UNSPECIFIED6, ALL_ROUTERS, 58, &rs)),
        Ok(())
    );
    // Echo, an advertisement or UDP from :: are not.
    for payload in [
        icmpv6(128, &[0; 4]),
        neighbour_message(136, IP6, &[]),
        udp(546, 547, b""),
    ] {
        assert_eq!(
            check(&ip6_frame(UNSPECIFIED6, ALL_ROUTERS, 58, &payload)),
            Err(DropReason::SpoofedIp)
        );
    }
}

#[test]
fn neighbour_advertisements_only_for_own_addresses_and_mac() {
    let na = |target, options: &[u8]| {
        ip6_frame(IP6, ALL_NODES, 58, &neighbour_message(136, target, options))
    };
    let own_lla = link_layer_option(2, MAC);
    let other_lla = link_layer_option(2, NEIGHBOUR_MAC);
    assert_eq!(check(&na(IP6, &own_lla)), Ok(()));
    assert_eq!(check(&na(link_local(MAC), &[])), Ok(()));
    assert_eq!(check(&na(slaac(MAC), &own_lla)), Ok(()));
    assert_eq!(check(&na(NEIGHBOUR6, &own_lla)), Err(DropReason::SpoofedNd));
    assert_eq!(check(&na(IP6, &other_lla)), Err(DropReason::SpoofedNd));
    // An option of length zero (RFC 4861 4.6) or cut off.
    assert_eq!(
        check(&na(IP6, &[2, 0, 0, 0, 0, 0, 0, 0])),
        Err(DropReason::SpoofedNd)
    );
    assert_eq!(
        check(&na(IP6, &[2, 2, 0, 0, 0, 0, 0, 0])),
        Err(DropReason::SpoofedNd)
    );
    let mut short = na(IP6, &[]);
    short.truncate(short.len() - 1);
    assert_eq!(check(&short), Err(DropReason::SpoofedNd));
}

#[test]
fn solicitations_carry_the_ports_mac() {
    let ns = |src, target, options: &[u8]| {
        ip6_frame(src, ALL_NODES, 58, &neighbour_message(135, target, options))
    };
    // Asking for a neighbour is fine, with the port's own source link-layer address.
    assert_eq!(
        check(&ns(IP6, NEIGHBOUR6, &link_layer_option(1, MAC))),
        Ok(())
    );
    assert_eq!(
        check(&ns(IP6, NEIGHBOUR6, &link_layer_option(1, NEIGHBOUR_MAC))),
        Err(DropReason::SpoofedNd)
    );
    // Duplicate address detection only for its own addresses: a DAD probe for a
    // neighbour's address would make the neighbour give it up (RFC 4862 5.4.3).
    assert_eq!(check(&ns(UNSPECIFIED6, slaac(MAC), &[])), Ok(()));
    assert_eq!(
        check(&ns(UNSPECIFIED6, NEIGHBOUR6, &[])),
        Err(DropReason::SpoofedNd)
    );
    let rs = |options: &[u8]| {
        ip6_frame(
            link_local(MAC),
            ALL_ROUTERS,
            58,
            &router_solicitation(options),
        )
    };
    assert_eq!(check(&rs(&link_layer_option(1, MAC))), Ok(()));
    assert_eq!(
        check(&rs(&link_layer_option(1, NEIGHBOUR_MAC))),
        Err(DropReason::SpoofedNd)
    );
}

#[test]
fn router_advertisements_and_redirects_are_refused() {
    for kind in [134, 137] {
        let message = icmpv6(kind, &[0; 36]);
        assert_eq!(
            check(&ip6_frame(link_local(MAC), ALL_NODES, 58, &message)),
            Err(DropReason::SpoofedNd),
            "type {kind}"
        );
    }
}

#[test]
fn ndp_cannot_hide_behind_extension_headers_or_fragments() {
    let ra = icmpv6(134, &[0; 12]);
    // Behind destination options and hop-by-hop headers: still seen.
    let hidden = options_header(60, &options_header(58, &ra));
    assert_eq!(
        check(&ip6_frame(link_local(MAC), ALL_NODES, 0, &hidden)),
        Err(DropReason::SpoofedNd)
    );
    // In a first fragment (RFC 6980: NDP is never fragmented).
    let na = neighbour_message(136, IP6, &[]);
    let fragmented = fragment_header(58, 0, &na);
    assert_eq!(
        check(&ip6_frame(IP6, ALL_NODES, 44, &fragmented)),
        Err(DropReason::SpoofedNd)
    );
    // A later fragment carries no header to judge; its source was checked.
    let later = fragment_header(58, 100, &[0; 16]);
    assert_eq!(check(&ip6_frame(IP6, ALL_NODES, 44, &later)), Ok(()));
    // A chain cut off by the packet's end, or too long to follow (RFC 7113).
    let mut cut = ip6_frame(IP6, ALL_NODES, 0, &options_header(58, &[]));
    cut.truncate(cut.len() - 1);
    assert_eq!(check(&cut), Err(DropReason::SpoofedNd));
    let mut long = icmpv6(128, &[0; 4]);
    let mut next = 58;
    for _ in 0..=MAX_EXTENSION_HEADERS {
        long = options_header(next, &long);
        next = 60;
    }
    assert_eq!(
        check(&ip6_frame(IP6, ALL_NODES, 60, &long)),
        Err(DropReason::SpoofedNd)
    );
    // Echo behind a few options headers is ordinary traffic.
    let echo = options_header(58, &icmpv6(128, &[0; 4]));
    assert_eq!(check(&ip6_frame(IP6, NEIGHBOUR6, 60, &echo)), Ok(()));
}

#[test]
fn dhcp_acks_are_parsed_strictly() {
    let server_mac = MacAddr([0x52, 0x55, 10, 0, 2, 2]);
    let server = Ipv4Addr::new(10, 0, 2, 2);
    let leased = Ipv4Addr::new(10, 0, 2, 15);
    let ack = dhcp_ack_frame(server_mac, server, MAC, leased, 3600);
    assert_eq!(
        dhcp_ack(&ack),
        Some(DhcpAck {
            chaddr: MAC,
            yiaddr: leased,
            lease_secs: 3600
        })
    );
    // An offer (type 2), a request from a client, or a lease without time are not acks.
    let mut offer = ack.clone();
    let at = 14 + 20 + 8 + 240 + 2;
    offer[at] = 2;
    assert_eq!(dhcp_ack(&offer), None);
    let request = udp4(MAC, IP, server);
    assert_eq!(dhcp_ack(&request), None);
    let no_time = {
        let msg = dhcp(2, 5, MAC, leased, None);
        ethernet(
            MAC,
            server_mac,
            0,
            0x0800,
            &ipv4(server, leased, 17, &udp(67, 68, &msg)),
        )
    };
    assert_eq!(dhcp_ack(&no_time), None);
    for len in 0..ack.len() {
        let _ = dhcp_ack(&ack[..len]);
    }
}

#[test]
fn snooped_leases_are_allowed_until_they_expire() {
    let leased = Ipv4Addr::new(10, 0, 2, 15);
    let ack = DhcpAck {
        chaddr: MAC,
        yiaddr: leased,
        lease_secs: 100,
    };
    // Without snooping, or for another client, nothing is learned.
    let mut plain = guard();
    plain.snoop_dhcp_ack(&ack, NOW);
    assert!(!plain.allows_ipv4(leased, NOW));
    let mut snooping = guard().with_dhcp_snooping();
    snooping.snoop_dhcp_ack(
        &DhcpAck {
            chaddr: NEIGHBOUR_MAC,
            ..ack
        },
        NOW,
    );
    assert!(!snooping.allows_ipv4(leased, NOW));
    snooping.snoop_dhcp_ack(&ack, NOW);
    assert!(snooping.allows_ipv4(leased, NOW));
    assert_eq!(snooping.check(&udp4(MAC, leased, NEIGHBOUR), NOW), Ok(()));
    assert_eq!(
        snooping.check(&arp_frame(MAC, MAC, leased, leased), NOW),
        Ok(())
    );
    let later = NOW + core::time::Duration::from_secs(100);
    assert!(!snooping.allows_ipv4(leased, later));
    assert_eq!(
        snooping.check(&udp4(MAC, leased, NEIGHBOUR), later),
        Err(DropReason::SpoofedIp)
    );
    // A bounded number of leases: the one ending first gives way.
    for i in 0..=MAX_SNOOPED_LEASES as u8 {
        let ack = DhcpAck {
            yiaddr: Ipv4Addr::new(10, 0, 2, 20 + i),
            lease_secs: 1000 + u32::from(i),
            ..ack
        };
        snooping.snoop_dhcp_ack(&ack, NOW);
    }
    assert_eq!(snooping.snooped_leases(NOW).count(), MAX_SNOOPED_LEASES);
    assert!(!snooping.allows_ipv4(Ipv4Addr::new(10, 0, 2, 20), NOW));
    assert!(snooping.allows_ipv4(Ipv4Addr::new(10, 0, 2, 24), NOW));
}

#[test]
fn any_bytes_never_panic() {
    let frames = [
        arp_frame(MAC, MAC, IP, GATEWAY),
        udp4(MAC, IP, NEIGHBOUR),
        ip6_frame(
            IP6,
            ALL_NODES,
            58,
            &neighbour_message(136, IP6, &link_layer_option(2, MAC)),
        ),
        ip6_frame(
            IP6,
            ALL_NODES,
            0,
            &options_header(44, &fragment_header(58, 0, &[134])),
        ),
    ];
    let open = PortGuard::any_mac().with_ipv6_range(UNSPECIFIED6, 0);
    for frame in &frames {
        for len in 0..=frame.len() {
            let _ = guard().check(&frame[..len], NOW);
            let _ = open.check(&frame[..len], NOW);
        }
    }
}

//! Behaviour tests of the bridge on frames hand-built with etherparse.

use core::time::Duration;

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};

use super::*;

const NET: NetworkId = NetworkId(1);
const OTHER_NET: NetworkId = NetworkId(2);
const GW: PortId = PortId(1);
const C1: PortId = PortId(2);
const C2: PortId = PortId(3);
const C3: PortId = PortId(4);

const MAC_GW: [u8; 6] = [0x02, 0x42, 10, 0, 0, 1];
const MAC_C1: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];
const MAC_C2: [u8; 6] = [0x02, 0x42, 10, 0, 0, 3];
const MAC_C3: [u8; 6] = [0x02, 0x42, 10, 0, 0, 4];
const BROADCAST: [u8; 6] = [0xff; 6];

fn at(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

/// A UDP/IPv4 frame of `payload` bytes of payload.
fn udp(src: [u8; 6], dst: [u8; 6], payload: usize) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(src, dst)
        .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
        .udp(1000, 2000);
    let mut bytes = Vec::with_capacity(builder.size(payload));
    builder.write(&mut bytes, &vec![0xa5; payload]).unwrap();
    bytes
}

/// An ARP request "who has `target_ip`?" from `src`, to the broadcast address (RFC 826).
fn arp_request(src: [u8; 6], target_ip: [u8; 4]) -> Vec<u8> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &src,
        &[10, 0, 0, src[5]],
        &[0; 6],
        &target_ip,
    )
    .unwrap();
    let builder = PacketBuilder::ethernet2(src, BROADCAST).arp(arp);
    let mut bytes = Vec::new();
    builder.write(&mut bytes).unwrap();
    bytes
}

/// One network: gateway GW, containers C1, C2 and C3.
fn switch_with(icc: bool) -> Switch {
    let mut sw = Switch::new(SwitchConfig::default());
    sw.add_network(
        NET,
        NetworkConfig {
            icc,
            ..NetworkConfig::default()
        },
    )
    .unwrap();
    sw.add_port(GW, NET, PortRole::Gateway).unwrap();
    sw.add_port(C1, NET, PortRole::Container).unwrap();
    sw.add_port(C2, NET, PortRole::Container).unwrap();
    sw.add_port(C3, NET, PortRole::Container).unwrap();
    sw
}

#[test]
fn learns_src_mac_then_unicasts() {
    let mut sw = switch_with(true);
    assert_eq!(
        sw.handle_frame(at(1), C1, &arp_request(MAC_C1, [10, 0, 0, 3])),
        Verdict::Flood(&[GW, C2, C3])
    );
    assert_eq!(
        sw.handle_frame(at(1), C2, &udp(MAC_C2, MAC_C1, 10)),
        Verdict::Forward(C1)
    );
    assert_eq!(
        sw.handle_frame(at(2), C1, &udp(MAC_C1, MAC_C2, 10)),
        Verdict::Forward(C2)
    );
    let entries = sw.mac_entries(NET, at(3));
    assert_eq!(
        entries,
        vec![
            MacEntry {
                mac: MacAddr(MAC_C1),
                port: C1,
                age: Duration::from_secs(1),
                pinned: false,
            },
            MacEntry {
                mac: MacAddr(MAC_C2),
                port: C2,
                age: Duration::from_secs(2),
                pinned: false,
            },
        ]
    );
    assert_eq!(sw.counters().learned, 2);
    assert_eq!(sw.counters().forwarded, 2);
}

#[test]
fn floods_unknown_unicast_within_network_only() {
    let mut sw = switch_with(true);
    sw.add_network(OTHER_NET, NetworkConfig::default()).unwrap();
    sw.add_port(PortId(10), OTHER_NET, PortRole::Gateway)
        .unwrap();
    sw.add_port(PortId(11), OTHER_NET, PortRole::Container)
        .unwrap();
    assert_eq!(
        sw.handle_frame(at(1), C1, &udp(MAC_C1, MAC_C2, 10)),
        Verdict::Flood(&[GW, C2, C3])
    );
    assert_eq!(
        sw.handle_frame(at(1), PortId(11), &udp(MAC_C2, MAC_C1, 10)),
        Verdict::Flood(&[PortId(10)])
    );
    // The same MAC on two networks is two entries; C1 on NET stays unknown on OTHER_NET.
    assert_eq!(
        sw.handle_frame(at(1), PortId(10), &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Flood(&[PortId(11)])
    );
    assert_eq!(sw.mac_entries(OTHER_NET, at(1)).len(), 2);
    assert_eq!(sw.mac_entries(NET, at(1)).len(), 1);
}

#[test]
fn never_floods_back_to_ingress() {
    let mut sw = switch_with(true);
    for (port, mac) in [(GW, MAC_GW), (C1, MAC_C1), (C2, MAC_C2), (C3, MAC_C3)] {
        match sw.handle_frame(at(1), port, &arp_request(mac, [10, 0, 0, 99])) {
            Verdict::Flood(ports) => {
                assert_eq!(ports.len(), 3);
                assert!(!ports.contains(&port));
            }
            other => panic!("expected a flood, got {other:?}"),
        }
    }
}

#[test]
fn drops_frames_to_a_destination_on_the_ingress_port() {
    let mut sw = switch_with(true);
    sw.handle_frame(at(1), C1, &udp(MAC_C1, BROADCAST, 10));
    // Another station behind C1 (say a nested bridge) talking to MAC_C1.
    let frame = udp([0x02, 0, 0, 0, 0, 0x99], MAC_C1, 10);
    assert_eq!(
        sw.handle_frame(at(1), C1, &frame),
        Verdict::Drop(DropReason::DestinationIsIngress)
    );
    assert_eq!(
        sw.port_counters(C1)
            .unwrap()
            .drops
            .get(DropReason::DestinationIsIngress),
        1
    );
}

#[test]
fn icc_off_blocks_container_to_container_but_not_gateway() {
    let mut sw = switch_with(false);
    // Broadcasts from a container reach only the gateway.
    assert_eq!(
        sw.handle_frame(at(1), C1, &arp_request(MAC_C1, [10, 0, 0, 1])),
        Verdict::Flood(&[GW])
    );
    // Broadcasts from the gateway reach every container.
    assert_eq!(
        sw.handle_frame(at(1), GW, &arp_request(MAC_GW, [10, 0, 0, 2])),
        Verdict::Flood(&[C1, C2, C3])
    );
    // Gateway <-> container unicast works both ways.
    assert_eq!(
        sw.handle_frame(at(1), GW, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Forward(C1)
    );
    assert_eq!(
        sw.handle_frame(at(1), C1, &udp(MAC_C1, MAC_GW, 10)),
        Verdict::Forward(GW)
    );
    // Container -> container unicast is dropped, even once learned.
    sw.handle_frame(at(1), C2, &udp(MAC_C2, MAC_GW, 10));
    assert_eq!(
        sw.handle_frame(at(1), C1, &udp(MAC_C1, MAC_C2, 10)),
        Verdict::Drop(DropReason::IccDisabled)
    );
    assert_eq!(
        sw.port_counters(C1)
            .unwrap()
            .drops
            .get(DropReason::IccDisabled),
        1
    );
    assert_eq!(sw.counters().drops.get(DropReason::IccDisabled), 1);
    // Unknown unicast from a container floods to the gateway only.
    assert_eq!(
        sw.handle_frame(at(1), C1, &udp(MAC_C1, MAC_C3, 10)),
        Verdict::Flood(&[GW])
    );
}

#[test]
fn icc_off_allows_container_to_uplink() {
    let mut sw = switch_with(false);
    sw.add_port(PortId(9), NET, PortRole::Uplink).unwrap();
    let uplink_mac = [0x02, 0, 0, 0, 0, 9];
    sw.handle_frame(at(1), PortId(9), &udp(uplink_mac, BROADCAST, 10));
    assert_eq!(
        sw.handle_frame(at(1), C1, &udp(MAC_C1, uplink_mac, 10)),
        Verdict::Forward(PortId(9))
    );
    assert_eq!(
        sw.handle_frame(at(1), C1, &udp(MAC_C1, BROADCAST, 10)),
        Verdict::Flood(&[GW, PortId(9)])
    );
}

#[test]
fn update_network_recomputes_flood_lists() {
    let mut sw = switch_with(true);
    sw.update_network(
        NET,
        NetworkConfig {
            icc: false,
            max_frame_len: 100,
        },
    )
    .unwrap();
    assert_eq!(
        sw.handle_frame(at(1), C1, &udp(MAC_C1, BROADCAST, 10)),
        Verdict::Flood(&[GW])
    );
    assert_eq!(
        sw.handle_frame(at(1), C1, &udp(MAC_C1, BROADCAST, 200)),
        Verdict::Drop(DropReason::Oversized)
    );
    assert_eq!(
        sw.update_network(OTHER_NET, NetworkConfig::default()),
        Err(ConfigError::UnknownNetwork(OTHER_NET))
    );
}

#[test]
fn full_table_keeps_existing_entries() {
    let config = SwitchConfig {
        mac_capacity: 2,
        ..SwitchConfig::default()
    };
    let mut sw = Switch::new(config);
    sw.add_network(NET, NetworkConfig::default()).unwrap();
    for port in [GW, C1, C2] {
        sw.add_port(port, NET, PortRole::Container).unwrap();
    }
    sw.handle_frame(at(1), GW, &udp(MAC_GW, BROADCAST, 10));
    sw.handle_frame(at(1), C1, &udp(MAC_C1, BROADCAST, 10));
    // Table full: C2 is not learned, and is counted.
    assert_eq!(
        sw.handle_frame(at(2), C2, &udp(MAC_C2, MAC_GW, 10)),
        Verdict::Forward(GW)
    );
    assert_eq!(sw.mac_count(), 2);
    assert_eq!(sw.counters().learn_table_full, 1);
    // Existing entries keep working; the unlearned station gets flooded to.
    assert_eq!(
        sw.handle_frame(at(2), GW, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Forward(C1)
    );
    assert_eq!(
        sw.handle_frame(at(2), GW, &udp(MAC_GW, MAC_C2, 10)),
        Verdict::Flood(&[C1, C2])
    );
    assert_eq!(
        sw.counters().learn_table_full,
        1,
        "refreshing known sources needs no room"
    );
}

#[test]
fn full_table_reclaims_expired_entries() {
    let config = SwitchConfig {
        mac_capacity: 2,
        ageing_time: Duration::from_secs(10),
    };
    let mut sw = Switch::new(config);
    sw.add_network(NET, NetworkConfig::default()).unwrap();
    for port in [GW, C1, C2] {
        sw.add_port(port, NET, PortRole::Container).unwrap();
    }
    sw.handle_frame(at(0), GW, &udp(MAC_GW, BROADCAST, 10));
    sw.handle_frame(at(5), C1, &udp(MAC_C1, BROADCAST, 10));
    sw.handle_frame(at(10), C2, &udp(MAC_C2, BROADCAST, 10));
    assert_eq!(
        sw.counters().learn_table_full,
        0,
        "GW's expired entry made room"
    );
    assert_eq!(sw.counters().aged_out, 1);
    let macs: Vec<_> = sw.mac_entries(NET, at(10)).iter().map(|e| e.mac).collect();
    assert_eq!(macs, vec![MacAddr(MAC_C1), MacAddr(MAC_C2)]);
}

#[test]
fn ages_out_after_300s() {
    let mut sw = switch_with(true);
    sw.handle_frame(at(10), C1, &udp(MAC_C1, BROADCAST, 10));
    assert_eq!(sw.poll_timeout(), Some(at(310)));
    let just_before = Instant::from_millis(309_999);
    assert_eq!(
        sw.handle_frame(just_before, GW, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Forward(C1)
    );
    // At exactly 300 s after the last sighting, the entry is gone (even unswept).
    assert_eq!(
        sw.handle_frame(at(310), GW, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Flood(&[C1, C2, C3])
    );
    assert!(
        sw.mac_entries(NET, at(310))
            .iter()
            .all(|e| e.mac != MacAddr(MAC_C1))
    );
    // GW's entry is still alive, so the sweep leaves one entry and re-arms for GW.
    sw.handle_timeout(at(310));
    assert_eq!(sw.mac_count(), 1);
    assert_eq!(sw.counters().aged_out, 1);
    assert_eq!(
        sw.poll_timeout(),
        Some(at(610)),
        "GW was refreshed at 310 s"
    );
    sw.handle_timeout(at(700));
    assert_eq!(sw.mac_count(), 0);
    assert_eq!(sw.poll_timeout(), None);
}

#[test]
fn refresh_keeps_an_entry_alive() {
    let mut sw = switch_with(true);
    for t in (0..=600).step_by(100) {
        sw.handle_frame(at(t), C1, &udp(MAC_C1, BROADCAST, 10));
        sw.handle_timeout(at(t));
    }
    assert_eq!(
        sw.handle_frame(at(650), GW, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Forward(C1)
    );
}

#[test]
fn poll_timeout_spaces_sweeps() {
    let config = SwitchConfig {
        ageing_time: Duration::from_secs(5),
        ..SwitchConfig::default()
    };
    let mut sw = Switch::new(config);
    sw.add_network(NET, NetworkConfig::default()).unwrap();
    sw.add_port(C1, NET, PortRole::Container).unwrap();
    assert_eq!(sw.poll_timeout(), None);
    // Many stations expiring 10 ms apart are swept in batches 0.5 s apart.
    for i in 0..100u8 {
        sw.handle_frame(
            Instant::from_millis(10 * u64::from(i)),
            C1,
            &udp([2, 0, 0, 0, 1, i], BROADCAST, 10),
        );
    }
    assert_eq!(sw.poll_timeout(), Some(at(5)));
    sw.handle_timeout(at(5));
    assert_eq!(sw.mac_count(), 99);
    assert_eq!(sw.poll_timeout(), Some(Instant::from_millis(5_500)));
    sw.handle_timeout(Instant::from_millis(5_200));
    assert_eq!(sw.mac_count(), 99, "not due yet");
    sw.handle_timeout(Instant::from_millis(5_500));
    assert_eq!(sw.mac_count(), 49);
}

#[test]
fn station_move_updates_port() {
    let mut sw = switch_with(true);
    sw.handle_frame(at(1), C1, &udp(MAC_C1, BROADCAST, 10));
    assert_eq!(
        sw.handle_frame(at(2), C2, &udp(MAC_C1, BROADCAST, 10)),
        Verdict::Flood(&[GW, C1, C3])
    );
    assert_eq!(sw.counters().station_moves, 1);
    assert_eq!(
        sw.handle_frame(at(2), GW, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Forward(C2)
    );
    // Seen again on the same port: a refresh, not a move.
    sw.handle_frame(at(3), C2, &udp(MAC_C1, BROADCAST, 10));
    assert_eq!(sw.counters().station_moves, 1);
}

#[test]
fn runt_and_oversized_are_counted() {
    let mut sw = switch_with(true);
    let full = udp(MAC_C1, BROADCAST, 1472);
    assert_eq!(full.len(), 1514);
    assert!(matches!(
        sw.handle_frame(at(1), C1, &full),
        Verdict::Flood(_)
    ));
    for len in [0, 1, 13] {
        assert_eq!(
            sw.handle_frame(at(1), C1, &full[..len]),
            Verdict::Drop(DropReason::Runt)
        );
    }
    assert_eq!(
        sw.handle_frame(at(1), C1, &full[..14]),
        Verdict::Flood(&[GW, C2, C3]),
        "a bare header is a frame"
    );
    let mut jumbo = full.clone();
    jumbo.resize(1519, 0);
    assert_eq!(
        sw.handle_frame(at(1), C1, &jumbo),
        Verdict::Drop(DropReason::Oversized)
    );
    jumbo.truncate(1518);
    assert!(
        matches!(sw.handle_frame(at(1), C1, &jumbo), Verdict::Flood(_)),
        "1518 fits MTU 1500 + VLAN tag"
    );

    let port = sw.port_counters(C1).unwrap();
    assert_eq!(port.drops.get(DropReason::Runt), 3);
    assert_eq!(port.drops.get(DropReason::Oversized), 1);
    assert_eq!(port.drops.total(), 4);
    assert_eq!(port.rx_packets, 7);
    assert_eq!(port.rx_bytes, (1514 + 14 + 14 + 1519 + 1518) as u64);
    assert_eq!(sw.counters().drops.get(DropReason::Runt), 3);
    let listed: Vec<_> = port.drops_by_reason().filter(|&(_, n)| n > 0).collect();
    assert_eq!(
        listed,
        vec![(DropReason::Runt, 3), (DropReason::Oversized, 1)]
    );
}

#[test]
fn invalid_source_macs_are_dropped_and_not_learned() {
    let mut sw = switch_with(true);
    for src in [
        [0; 6],
        BROADCAST,
        [0x01, 0x00, 0x5e, 0, 0, 1],
        [0x33, 0x33, 0, 0, 0, 1],
    ] {
        assert_eq!(
            sw.handle_frame(at(1), C1, &udp(src, MAC_C2, 10)),
            Verdict::Drop(DropReason::InvalidSourceMac)
        );
    }
    assert_eq!(sw.mac_count(), 0);
    assert_eq!(
        sw.port_counters(C1)
            .unwrap()
            .drops
            .get(DropReason::InvalidSourceMac),
        4
    );
}

#[test]
fn link_local_group_is_never_forwarded() {
    let mut sw = switch_with(true);
    for last in [0x00, 0x01, 0x02, 0x0e, 0x0f] {
        let stp = udp(MAC_C1, [0x01, 0x80, 0xc2, 0, 0, last], 10);
        assert_eq!(
            sw.handle_frame(at(1), C1, &stp),
            Verdict::Drop(DropReason::LinkLocalGroup)
        );
    }
    // 01:80:c2:00:00:10 (all-bridges, not reserved link-local) floods like any group.
    let frame = udp(MAC_C1, [0x01, 0x80, 0xc2, 0, 0, 0x10], 10);
    assert_eq!(
        sw.handle_frame(at(1), C1, &frame),
        Verdict::Flood(&[GW, C2, C3])
    );
    assert_eq!(sw.counters().drops.get(DropReason::LinkLocalGroup), 5);
}

#[test]
fn multicast_floods_like_broadcast() {
    let mut sw = switch_with(true);
    let mdns = udp(MAC_C1, [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb], 10);
    assert_eq!(
        sw.handle_frame(at(1), C1, &mdns),
        Verdict::Flood(&[GW, C2, C3])
    );
}

#[test]
fn unknown_port_is_dropped_without_panic() {
    let mut sw = switch_with(true);
    for port in [
        PortId(0),
        PortId(5),
        PortId(65_535),
        PortId(65_536),
        PortId(u32::MAX),
    ] {
        assert_eq!(
            sw.handle_frame(at(1), port, &udp(MAC_C1, BROADCAST, 10)),
            Verdict::Drop(DropReason::UnknownPort)
        );
        assert_eq!(
            sw.handle_frame(at(1), port, &[]),
            Verdict::Drop(DropReason::UnknownPort)
        );
    }
    assert_eq!(sw.counters().drops.get(DropReason::UnknownPort), 10);
    assert_eq!(sw.counters().rx_packets, 10);
    assert_eq!(sw.mac_count(), 0);
}

#[test]
fn lone_port_drops_floods_as_no_egress() {
    let mut sw = Switch::new(SwitchConfig::default());
    sw.add_network(NET, NetworkConfig::default()).unwrap();
    sw.add_port(C1, NET, PortRole::Container).unwrap();
    assert_eq!(
        sw.handle_frame(at(1), C1, &arp_request(MAC_C1, [10, 0, 0, 1])),
        Verdict::Drop(DropReason::NoEgress)
    );
    assert_eq!(
        sw.port_counters(C1)
            .unwrap()
            .drops
            .get(DropReason::NoEgress),
        1
    );
    assert_eq!(sw.mac_count(), 1, "the source is still learned");
}

#[test]
fn counts_tx_when_the_verdict_is_made() {
    let mut sw = switch_with(true);
    let bcast = arp_request(MAC_C1, [10, 0, 0, 1]);
    sw.handle_frame(at(1), C1, &bcast);
    let reply = udp(MAC_GW, MAC_C1, 100);
    sw.handle_frame(at(1), GW, &reply);
    let len = |f: &[u8]| f.len() as u64;
    let c1 = sw.port_counters(C1).unwrap();
    assert_eq!(
        (c1.rx_packets, c1.rx_bytes, c1.tx_packets, c1.tx_bytes),
        (1, len(&bcast), 1, len(&reply))
    );
    let gw = sw.port_counters(GW).unwrap();
    assert_eq!(
        (gw.rx_packets, gw.tx_packets, gw.tx_bytes),
        (1, 1, len(&bcast))
    );
    assert_eq!(sw.port_counters(C2).unwrap().tx_packets, 1);
    let counters = sw.counters();
    assert_eq!(
        (counters.flooded, counters.forwarded, counters.tx_packets),
        (1, 1, 4)
    );
    assert_eq!(counters.tx_bytes, 3 * len(&bcast) + len(&reply));
}

#[test]
fn remove_port_forgets_its_macs_and_flood_entries() {
    let mut sw = switch_with(true);
    sw.handle_frame(at(1), C1, &udp(MAC_C1, BROADCAST, 10));
    sw.handle_frame(at(1), C2, &udp(MAC_C2, BROADCAST, 10));
    sw.remove_port(C1).unwrap();
    assert_eq!(sw.port_counters(C1), None);
    assert_eq!(sw.port_attachment(C1), None);
    assert_eq!(
        sw.mac_entries(NET, at(1))
            .iter()
            .map(|e| e.port)
            .collect::<Vec<_>>(),
        vec![C2]
    );
    assert_eq!(
        sw.handle_frame(at(1), GW, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Flood(&[C2, C3])
    );
    assert_eq!(
        sw.handle_frame(at(1), C1, &udp(MAC_C1, BROADCAST, 10)),
        Verdict::Drop(DropReason::UnknownPort)
    );
    // The id can be reused, with fresh counters.
    sw.add_port(C1, NET, PortRole::Container).unwrap();
    assert_eq!(sw.port_counters(C1), Some(PortCounters::default()));
    assert_eq!(
        sw.handle_frame(at(1), GW, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Flood(&[C1, C2, C3])
    );
}

#[test]
fn control_errors_leave_the_switch_unchanged() {
    let mut sw = switch_with(true);
    assert_eq!(
        sw.add_network(NET, NetworkConfig::default()),
        Err(ConfigError::NetworkExists(NET))
    );
    assert_eq!(sw.remove_network(NET), Err(ConfigError::NetworkInUse(NET)));
    assert_eq!(
        sw.remove_network(OTHER_NET),
        Err(ConfigError::UnknownNetwork(OTHER_NET))
    );
    assert_eq!(
        sw.add_port(C1, NET, PortRole::Gateway),
        Err(ConfigError::PortExists(C1))
    );
    assert_eq!(
        sw.add_port(PortId(9), OTHER_NET, PortRole::Gateway),
        Err(ConfigError::UnknownNetwork(OTHER_NET))
    );
    assert_eq!(
        sw.remove_port(PortId(9)),
        Err(ConfigError::UnknownPort(PortId(9)))
    );
    assert_eq!(sw.port_attachment(C1), Some((NET, PortRole::Container)));
    assert_eq!(
        sw.handle_frame(at(1), GW, &udp(MAC_GW, BROADCAST, 10)),
        Verdict::Flood(&[C1, C2, C3])
    );

    for port in [GW, C1, C2, C3] {
        sw.remove_port(port).unwrap();
    }
    sw.remove_network(NET).unwrap();
    assert_eq!(sw.network_config(NET), None);
    sw.add_network(NET, NetworkConfig::default()).unwrap();
}

#[test]
fn large_port_ids_work() {
    let mut sw = Switch::new(SwitchConfig::default());
    sw.add_network(NET, NetworkConfig::default()).unwrap();
    let (a, b) = (PortId(70_000), PortId(u32::MAX));
    sw.add_port(a, NET, PortRole::Gateway).unwrap();
    sw.add_port(b, NET, PortRole::Container).unwrap();
    sw.add_port(C1, NET, PortRole::Container).unwrap();
    assert_eq!(
        sw.handle_frame(at(1), b, &udp(MAC_C1, BROADCAST, 10)),
        Verdict::Flood(&[C1, a])
    );
    assert_eq!(
        sw.handle_frame(at(1), a, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Forward(b)
    );
    sw.remove_port(b).unwrap();
    assert_eq!(
        sw.handle_frame(at(1), b, &udp(MAC_C1, BROADCAST, 10)),
        Verdict::Drop(DropReason::UnknownPort)
    );
}

#[test]
fn zero_ageing_time_makes_a_hub() {
    let config = SwitchConfig {
        ageing_time: Duration::ZERO,
        ..SwitchConfig::default()
    };
    let mut sw = Switch::new(config);
    sw.add_network(NET, NetworkConfig::default()).unwrap();
    sw.add_port(GW, NET, PortRole::Gateway).unwrap();
    sw.add_port(C1, NET, PortRole::Container).unwrap();
    sw.handle_frame(at(1), C1, &udp(MAC_C1, BROADCAST, 10));
    assert_eq!(
        sw.handle_frame(at(1), GW, &udp(MAC_GW, MAC_C1, 10)),
        Verdict::Flood(&[C1])
    );
    assert_eq!(sw.mac_count(), 0);
    assert_eq!(sw.poll_timeout(), None);
}

//! The bridge with guarded ports: drops counted per reason, pinned MACs, DHCP snooping.

use core::time::Duration;
use std::net::Ipv4Addr;

use super::*;
use crate::fuzzing::frames::{arp, dhcp_ack_frame, ethernet, ipv4, udp};

const NET: NetworkId = NetworkId(1);
const OTHER_NET: NetworkId = NetworkId(2);
const GW: PortId = PortId(1);
const A: PortId = PortId(2);
const H: PortId = PortId(3);
/// A container connected with `--allow-spoofing`: no guard.
const FREE: PortId = PortId(4);

const MAC_GW: MacAddr = MacAddr([0x02, 0x42, 10, 0, 0, 1]);
const MAC_A: MacAddr = MacAddr([0x02, 0x42, 10, 0, 0, 2]);
const MAC_H: MacAddr = MacAddr([0x02, 0x42, 10, 0, 0, 3]);
const MAC_FREE: MacAddr = MacAddr([0x02, 0x42, 10, 0, 0, 4]);
const IP_GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const IP_H: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

fn at(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

fn udp4(dst: MacAddr, src: MacAddr, src_ip: Ipv4Addr, dst_ip: Ipv4Addr) -> Vec<u8> {
    ethernet(
        dst,
        src,
        0,
        0x0800,
        &ipv4(src_ip, dst_ip, 17, &udp(1000, 2000, b"hello")),
    )
}

fn garp(src: MacAddr, claimed: Ipv4Addr) -> Vec<u8> {
    ethernet(
        MacAddr::BROADCAST,
        src,
        0,
        0x0806,
        &arp(2, src, claimed, MacAddr::BROADCAST, claimed),
    )
}

/// Gateway, two guarded containers A and H, and an unguarded one.
fn guarded_switch(ageing: Duration) -> Switch {
    let mut sw = Switch::new(SwitchConfig {
        mac_capacity: 64,
        ageing_time: ageing,
    });
    sw.add_network(NET, NetworkConfig::default()).unwrap();
    for (port, role) in [
        (GW, PortRole::Gateway),
        (A, PortRole::Container),
        (H, PortRole::Container),
        (FREE, PortRole::Container),
    ] {
        sw.add_port(port, NET, role).unwrap();
    }
    sw.pin_mac(at(0), GW, MAC_GW).unwrap();
    for (port, mac, ip) in [(A, MAC_A, IP_A), (H, MAC_H, IP_H)] {
        sw.set_port_guard(at(0), port, Some(PortGuard::new(mac).with_ipv4(ip)))
            .unwrap();
    }
    sw
}

fn drops(sw: &Switch, port: PortId, reason: DropReason) -> u64 {
    sw.port_counters(port).unwrap().drops.get(reason)
}

#[test]
fn forged_sources_are_dropped_and_counted_per_port() {
    let mut sw = guarded_switch(Duration::from_secs(300));
    let now = at(1);
    // H's own traffic goes to A (pinned, so known at once).
    assert_eq!(
        sw.handle_frame(now, H, &udp4(MAC_A, MAC_H, IP_H, IP_A)),
        Verdict::Forward(A)
    );
    // With A's, the gateway's or another network's address: dropped.
    for forged in [IP_A, IP_GW, Ipv4Addr::new(10, 9, 0, 2)] {
        assert_eq!(
            sw.handle_frame(now, H, &udp4(MAC_A, MAC_H, forged, IP_A)),
            Verdict::Drop(DropReason::SpoofedIp)
        );
    }
    assert_eq!(
        sw.handle_frame(now, H, &garp(MAC_H, IP_A)),
        Verdict::Drop(DropReason::SpoofedArp)
    );
    assert_eq!(
        sw.handle_frame(now, H, &udp4(MAC_GW, MAC_A, IP_H, IP_GW)),
        Verdict::Drop(DropReason::SpoofedMac)
    );
    assert_eq!(drops(&sw, H, DropReason::SpoofedIp), 3);
    assert_eq!(drops(&sw, H, DropReason::SpoofedArp), 1);
    assert_eq!(drops(&sw, H, DropReason::SpoofedMac), 1);
    assert_eq!(drops(&sw, A, DropReason::SpoofedIp), 0);
    assert_eq!(sw.drop_counters().get(DropReason::SpoofedIp), 3);
    let c = sw.counters();
    assert_eq!(c.rx_packets, c.forwarded + c.flooded + c.drops.total());
    // Unguarded ports behave as before: anything with their own MAC goes.
    assert_eq!(
        sw.handle_frame(now, FREE, &udp4(MAC_A, MAC_FREE, IP_GW, IP_A)),
        Verdict::Forward(A)
    );
}

#[test]
fn pinned_macs_never_move_or_age() {
    let mut sw = guarded_switch(Duration::from_secs(10));
    // The unguarded port sends with A's and the gateway's MAC: dropped, nothing moves.
    for stolen in [MAC_A, MAC_GW] {
        assert_eq!(
            sw.handle_frame(at(1), FREE, &udp4(MacAddr::BROADCAST, stolen, IP_A, IP_GW)),
            Verdict::Drop(DropReason::SpoofedMac)
        );
    }
    assert_eq!(sw.counters().station_moves, 0);
    // Traffic to A still goes to A, long after the ageing time, though A is silent.
    assert_eq!(
        sw.handle_frame(at(100), GW, &udp4(MAC_A, MAC_GW, IP_GW, IP_A)),
        Verdict::Forward(A)
    );
    let entries = sw.mac_entries(NET, at(100));
    let a = entries.iter().find(|e| e.mac == MAC_A).unwrap();
    assert_eq!((a.port, a.pinned), (A, true));
    assert_eq!(a.age, Duration::from_secs(100));
    assert_eq!(sw.pinned_mac_count(), 3);
    // Sweeps leave pinned entries alone; none is due for them.
    sw.handle_timeout(at(200));
    assert_eq!(sw.mac_count(), 3);
    assert_eq!(sw.poll_timeout(), None);
}

#[test]
fn pinned_macs_forward_with_learning_off_and_a_full_table() {
    let mut sw = Switch::new(SwitchConfig {
        mac_capacity: 0,
        ageing_time: Duration::ZERO,
    });
    sw.add_network(NET, NetworkConfig::default()).unwrap();
    sw.add_port(GW, NET, PortRole::Gateway).unwrap();
    sw.add_port(A, NET, PortRole::Container).unwrap();
    sw.set_port_guard(at(0), A, Some(PortGuard::new(MAC_A).with_ipv4(IP_A)))
        .unwrap();
    assert_eq!(
        sw.handle_frame(at(1), GW, &udp4(MAC_A, MAC_GW, IP_GW, IP_A)),
        Verdict::Forward(A)
    );
    assert_eq!(sw.mac_count(), 1);
}

#[test]
fn guard_control_calls_validate_first() {
    let mut sw = guarded_switch(Duration::from_secs(300));
    let before = sw.mac_entries(NET, at(1));
    assert_eq!(
        sw.set_port_guard(at(1), PortId(99), Some(PortGuard::new(MAC_FREE))),
        Err(ConfigError::UnknownPort(PortId(99)))
    );
    assert_eq!(
        sw.set_port_guard(at(1), FREE, Some(PortGuard::new(MacAddr::BROADCAST))),
        Err(ConfigError::InvalidMac(MacAddr::BROADCAST))
    );
    assert_eq!(
        sw.set_port_guard(at(1), FREE, Some(PortGuard::new(MAC_A))),
        Err(ConfigError::MacPinned {
            mac: MAC_A,
            port: A
        })
    );
    assert_eq!(
        sw.pin_mac(at(1), FREE, MAC_GW),
        Err(ConfigError::MacPinned {
            mac: MAC_GW,
            port: GW
        })
    );
    assert_eq!(sw.port_guard(FREE), None);
    assert_eq!(sw.mac_entries(NET, at(1)), before);
    // The same MAC on another network is another entry.
    sw.add_network(OTHER_NET, NetworkConfig::default()).unwrap();
    sw.add_port(PortId(10), OTHER_NET, PortRole::Container)
        .unwrap();
    sw.set_port_guard(at(1), PortId(10), Some(PortGuard::new(MAC_A)))
        .unwrap();
}

#[test]
fn a_new_guard_moves_the_pin_and_none_or_removal_drops_it() {
    let mut sw = guarded_switch(Duration::from_secs(300));
    let mac_new = MacAddr([0x02, 0, 0, 0, 0, 9]);
    sw.set_port_guard(at(1), H, Some(PortGuard::new(mac_new).with_ipv4(IP_H)))
        .unwrap();
    let pinned = |sw: &Switch| -> Vec<(MacAddr, PortId)> {
        sw.mac_entries(NET, at(1))
            .iter()
            .filter(|e| e.pinned)
            .map(|e| (e.mac, e.port))
            .collect()
    };
    assert!(pinned(&sw).contains(&(mac_new, H)));
    assert!(!pinned(&sw).iter().any(|&(m, _)| m == MAC_H));
    // The old MAC is free for the unguarded port now.
    assert_eq!(
        sw.handle_frame(at(1), FREE, &udp4(MAC_A, MAC_H, IP_H, IP_A)),
        Verdict::Forward(A)
    );
    sw.set_port_guard(at(1), H, None).unwrap();
    assert!(!pinned(&sw).iter().any(|&(_, p)| p == H));
    assert_eq!(
        sw.handle_frame(at(1), H, &udp4(MAC_A, MAC_FREE, IP_GW, IP_A)),
        Verdict::Forward(A),
        "an unguarded port sends what it likes"
    );
    sw.remove_port(A).unwrap();
    assert!(!pinned(&sw).iter().any(|&(m, _)| m == MAC_A));
    assert_eq!(sw.pinned_mac_count(), 1, "the gateway's");
}

#[test]
fn a_pin_replaces_what_was_learned() {
    let mut sw = guarded_switch(Duration::from_secs(300));
    let mac = MacAddr([0x02, 0, 0, 0, 0, 7]);
    sw.handle_frame(at(1), FREE, &udp4(MAC_A, mac, IP_GW, IP_A));
    sw.set_port_guard(at(2), H, Some(PortGuard::new(mac)))
        .unwrap();
    assert_eq!(
        sw.handle_frame(at(3), GW, &udp4(mac, MAC_GW, IP_GW, IP_H)),
        Verdict::Forward(H)
    );
    assert_eq!(
        sw.handle_frame(at(3), FREE, &udp4(MAC_A, mac, IP_GW, IP_A)),
        Verdict::Drop(DropReason::SpoofedMac)
    );
}

#[test]
fn refused_frames_teach_the_table_nothing() {
    let mut sw = guarded_switch(Duration::from_secs(300));
    sw.set_port_guard(at(0), H, Some(PortGuard::any_mac().with_ipv4(IP_H)))
        .unwrap();
    let unknown = MacAddr([0x02, 0, 0, 0, 0, 0x77]);
    assert_eq!(
        sw.handle_frame(at(1), H, &udp4(MAC_A, unknown, IP_A, IP_A)),
        Verdict::Drop(DropReason::SpoofedIp)
    );
    assert!(sw.mac_entries(NET, at(1)).iter().all(|e| e.mac != unknown));
    // Its own address from any MAC goes, and that MAC is learned.
    assert_eq!(
        sw.handle_frame(at(1), H, &udp4(MAC_A, unknown, IP_H, IP_A)),
        Verdict::Forward(A)
    );
    assert!(sw.mac_entries(NET, at(1)).iter().any(|e| e.mac == unknown));
}

#[test]
fn dhcp_acks_from_the_gateway_teach_snooping_guards() {
    let mut sw = guarded_switch(Duration::from_secs(300));
    let leased = Ipv4Addr::new(10, 0, 0, 200);
    sw.set_port_guard(
        at(0),
        H,
        Some(PortGuard::new(MAC_H).with_ipv4(IP_H).with_dhcp_snooping()),
    )
    .unwrap();
    let from_leased = udp4(MAC_A, MAC_H, leased, IP_A);
    assert_eq!(
        sw.handle_frame(at(1), H, &from_leased),
        Verdict::Drop(DropReason::SpoofedIp)
    );
    // An "ack" from another container teaches nothing.
    let rogue = dhcp_ack_frame(MAC_FREE, IP_GW, MAC_H, leased, 600);
    assert_eq!(sw.handle_frame(at(1), FREE, &rogue), Verdict::Forward(H));
    assert_eq!(
        sw.handle_frame(at(1), H, &from_leased),
        Verdict::Drop(DropReason::SpoofedIp)
    );
    // The gateway's does, unicast or broadcast, for the lease time.
    let ack = dhcp_ack_frame(MAC_GW, IP_GW, MAC_H, leased, 600);
    assert_eq!(sw.handle_frame(at(2), GW, &ack), Verdict::Forward(H));
    assert_eq!(sw.handle_frame(at(3), H, &from_leased), Verdict::Forward(A));
    assert_eq!(
        sw.handle_frame(at(3), H, &garp(MAC_H, leased)),
        Verdict::Flood(&[GW, A, FREE])
    );
    assert_eq!(
        sw.handle_frame(at(602), H, &from_leased),
        Verdict::Drop(DropReason::SpoofedIp)
    );
    let mut broadcast = dhcp_ack_frame(MAC_GW, IP_GW, MAC_H, leased, 600);
    broadcast[..6].copy_from_slice(&[0xff; 6]);
    assert!(matches!(
        sw.handle_frame(at(603), GW, &broadcast),
        Verdict::Flood(_)
    ));
    assert_eq!(
        sw.handle_frame(at(604), H, &from_leased),
        Verdict::Forward(A)
    );
    let guard = sw.port_guard(H).unwrap();
    assert_eq!(guard.snooped_leases(at(604)).collect::<Vec<_>>(), [leased]);
    // A's guard does not snoop: the ack to H taught it nothing either way.
    assert_eq!(sw.port_guard(A).unwrap().snooped_leases(at(604)).count(), 0);
}

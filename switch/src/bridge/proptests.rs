//! Property tests: invariants of the bridge over arbitrary topologies and traffic.
//!
//! Each case builds up to three networks (ICC on or off) with ports of every role, then
//! runs a random sequence of frames (from a small address alphabet, so that learning,
//! station moves and a full table all happen), timeouts and port churn through
//! [`CheckedSwitch`], which checks every verdict against a model. On top of that, the
//! headline invariants are asserted here explicitly.

use core::time::Duration;

use proptest::prelude::*;

use crate::fuzzing::{CheckedSwitch, OwnedVerdict};
use crate::{Instant, MacAddr, NetworkConfig, NetworkId, PortId, PortRole, SwitchConfig};

#[derive(Clone, Debug)]
enum Op {
    Frame {
        port: u8,
        dst: u8,
        src: u8,
        len: u16,
        step_ms: u16,
    },
    Timeout {
        step_ms: u16,
    },
    AddPort {
        port: u8,
        net: u8,
        role: u8,
    },
    RemovePort {
        port: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0u8..12, any::<u8>(), any::<u8>(), 0u16..1600, 0u16..3000)
            .prop_map(|(port, dst, src, len, step_ms)| Op::Frame { port, dst, src, len, step_ms }),
        1 => (0u16..20_000).prop_map(|step_ms| Op::Timeout { step_ms }),
        1 => (0u8..12, 0u8..4, 0u8..3).prop_map(|(port, net, role)| Op::AddPort { port, net, role }),
        1 => (0u8..12).prop_map(|port| Op::RemovePort { port }),
    ]
}

#[derive(Clone, Debug)]
enum GuardOp {
    Frame {
        port: u8,
        shape: [u8; 5],
        step_ms: u16,
    },
    Plain {
        port: u8,
        dst: u8,
        src: u8,
    },
    Guard {
        port: u8,
        mac_byte: u8,
        flags: u8,
    },
    Timeout {
        step_ms: u16,
    },
    RemovePort {
        port: u8,
    },
}

fn guard_op() -> impl Strategy<Value = GuardOp> {
    prop_oneof![
        16 => (0u8..10, any::<[u8; 5]>(), 0u16..3000)
            .prop_map(|(port, shape, step_ms)| GuardOp::Frame { port, shape, step_ms }),
        3 => (0u8..10, any::<u8>(), any::<u8>()).prop_map(|(port, dst, src)| GuardOp::Plain { port, dst, src }),
        1 => (0u8..10, any::<u8>(), any::<u8>())
            .prop_map(|(port, mac_byte, flags)| GuardOp::Guard { port, mac_byte, flags }),
        1 => (0u16..20_000).prop_map(|step_ms| GuardOp::Timeout { step_ms }),
        1 => (0u8..10).prop_map(|port| GuardOp::RemovePort { port }),
    ]
}

fn role(b: u8) -> PortRole {
    [PortRole::Container, PortRole::Gateway, PortRole::Uplink][usize::from(b % 3)]
}

/// Ports 0..10 are small ids; 10 and 11 exercise the overflow index.
fn port_id(b: u8) -> PortId {
    match b {
        10 => PortId(100_000),
        11 => PortId(u32::MAX),
        b => PortId(u32::from(b)),
    }
}

/// Mostly a dozen stations; sometimes broadcast, multicast, link-local or zero.
fn mac(b: u8) -> MacAddr {
    match b % 32 {
        0..=2 => MacAddr::BROADCAST,
        3 => MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
        4 => MacAddr([0x01, 0x80, 0xc2, 0, 0, b >> 5]),
        5 => MacAddr::ZERO,
        n => MacAddr([0x02, 0x42, 0x0a, 0, 0, n % 12]),
    }
}

fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len.max(14));
    bytes.extend_from_slice(&dst.0);
    bytes.extend_from_slice(&src.0);
    bytes.extend_from_slice(&[0x08, 0x00]);
    bytes.resize(len.max(14), 0x5a);
    bytes.truncate(len);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_on_arbitrary_traffic(
        capacity in 0usize..16,
        ageing_secs in 1u64..30,
        networks in proptest::collection::vec((any::<bool>(), any::<bool>()), 1..4),
        ports in proptest::collection::vec((0u8..12, 0u8..4, 0u8..3), 0..12),
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let config = SwitchConfig { mac_capacity: capacity, ageing_time: Duration::from_secs(ageing_secs) };
        let mut sw = CheckedSwitch::new(config);
        for (i, &(icc, small)) in (0u32..).zip(&networks) {
            sw.add_network(NetworkId(i), NetworkConfig { icc, max_frame_len: if small { 100 } else { 1518 } });
        }
        for &(port, net, r) in &ports {
            sw.add_port(port_id(port), NetworkId(u32::from(net)), role(r));
        }
        let mut now = Instant::from_secs(1);
        for op in ops {
            match op {
                Op::Frame { port, dst, src, len, step_ms } => {
                    now = now + Duration::from_millis(u64::from(step_ms));
                    let ingress = port_id(port);
                    let bytes = frame(mac(dst), mac(src), usize::from(len));
                    let attachment = sw.switch.port_attachment(ingress);
                    let verdict = sw.handle_frame(now, ingress, &bytes);
                    let targets = match &verdict {
                        OwnedVerdict::Forward(p) => vec![*p],
                        OwnedVerdict::Flood(ps) => ps.clone(),
                        OwnedVerdict::Drop(_) => vec![],
                    };
                    for target in targets {
                        prop_assert_ne!(target, ingress, "a verdict named the ingress port");
                        let (in_net, in_role) = attachment.expect("frames from unknown ports are dropped");
                        let (out_net, out_role) = sw.switch.port_attachment(target).expect("egress is attached");
                        prop_assert_eq!(out_net, in_net, "a frame crossed networks");
                        let icc = sw.switch.network_config(in_net).is_some_and(|c| c.icc);
                        prop_assert!(
                            icc || in_role != PortRole::Container || out_role != PortRole::Container,
                            "container-to-container delivery with icc off"
                        );
                    }
                    prop_assert!(sw.switch.mac_count() <= capacity);
                }
                Op::Timeout { step_ms } => {
                    now = now + Duration::from_millis(u64::from(step_ms));
                    sw.handle_timeout(now);
                }
                Op::AddPort { port, net, role: r } => sw.add_port(port_id(port), NetworkId(u32::from(net)), role(r)),
                Op::RemovePort { port } => sw.remove_port(port_id(port), now),
            }
        }
        sw.check_table(now);
    }

    /// Guarded ports among unguarded ones, sending forged and honest ARP, IP and NDP
    /// (and gateways DHCP acks): every verdict is checked by [`CheckedSwitch`],
    /// including "a guarded port's frame that reaches an egress has a source it was
    /// given" and "a pinned MAC never moves".
    #[test]
    fn guards_hold_on_forged_traffic(
        ageing_secs in 0u64..30,
        ports in proptest::collection::vec((0u8..10, 0u8..2, 0u8..3, any::<u8>(), any::<u8>()), 1..10),
        ops in proptest::collection::vec(guard_op(), 1..120),
    ) {
        let config = SwitchConfig { mac_capacity: 8, ageing_time: Duration::from_secs(ageing_secs) };
        let mut sw = CheckedSwitch::new(config);
        sw.add_network(NetworkId(0), NetworkConfig::default());
        sw.add_network(NetworkId(1), NetworkConfig { icc: false, ..NetworkConfig::default() });
        let mut now = Instant::from_secs(1);
        for &(port, net, r, mac_byte, flags) in &ports {
            sw.add_port(port_id(port), NetworkId(u32::from(net)), role(r));
            if role(r) == PortRole::Container {
                sw.set_port_guard(now, port_id(port), crate::fuzzing::frames::guard(mac(mac_byte), flags));
            } else {
                sw.pin_mac(now, port_id(port), mac(mac_byte));
            }
        }
        for op in ops {
            match op {
                GuardOp::Frame { port, shape, step_ms } => {
                    now = now + Duration::from_millis(u64::from(step_ms));
                    let bytes = crate::fuzzing::frames::guard_frame(shape, mac);
                    sw.handle_frame(now, port_id(port), &bytes);
                }
                GuardOp::Plain { port, dst, src } => {
                    sw.handle_frame(now, port_id(port), &frame(mac(dst), mac(src), 60));
                }
                GuardOp::Guard { port, mac_byte, flags } => {
                    sw.set_port_guard(now, port_id(port), crate::fuzzing::frames::guard(mac(mac_byte), flags));
                }
                GuardOp::Timeout { step_ms } => {
                    now = now + Duration::from_millis(u64::from(step_ms));
                    sw.handle_timeout(now);
                }
                GuardOp::RemovePort { port } => sw.remove_port(port_id(port), now),
            }
        }
        sw.check_table(now);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        frames in proptest::collection::vec((0u8..12, proptest::collection::vec(any::<u8>(), 0..80)), 1..64),
    ) {
        let mut sw = CheckedSwitch::new(SwitchConfig { mac_capacity: 8, ..SwitchConfig::default() });
        sw.add_network(NetworkId(0), NetworkConfig { icc: false, max_frame_len: 64 });
        sw.add_network(NetworkId(1), NetworkConfig::default());
        for (i, r) in [(0, 0), (1, 0), (2, 1), (3, 2), (4, 0), (5, 1)] {
            sw.add_port(PortId(i), NetworkId(i % 2), role(r));
        }
        let mut now = Instant::from_secs(1);
        for (port, bytes) in frames {
            now = now + Duration::from_millis(100);
            sw.handle_frame(now, port_id(port), &bytes);
        }
    }

    #[test]
    fn fuzz_harness_accepts_arbitrary_input(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        crate::fuzzing::run(&data);
    }
}

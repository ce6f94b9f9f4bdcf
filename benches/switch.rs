//! Criterion benches of the sans-IO learning bridge (`tapnet-switch`), in frames/s.
//!
//! - `learned_unicast/{64,1500}`: two ports that have learned each other exchange
//!   frames, alternating directions (each iteration = 2 frames). Target: >= 20 M
//!   frames/s per core for 64-byte frames. The frame size matters little: the switch
//!   reads only the 14-byte header.
//! - `flood/broadcast_to_8`: a broadcast on a 9-port network, flooded to 8 ports
//!   (counts 8 tx copies per frame).
//! - `containers/{2,100,1000}`: N learned containers on one network, each frame from
//!   a different station to the next (64 bytes): the per-frame cost against the number
//!   of attached containers (issue 5's scale target: at most 2x from 1 to 100).
//!
//! - `guarded_unicast/{unguarded,ipv4,ipv6}`: `learned_unicast/64` with UDP packets
//!   between two containers, without and with source guards (anti-spoofing): the
//!   guard's cost per frame.
//!
//! Run: `cargo bench --bench switch -- --measurement-time 3 --warm-up-time 1`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tapnet_switch::{
    Instant, MacAddr, NetworkConfig, NetworkId, PortGuard, PortId, PortRole, Switch, SwitchConfig,
    Verdict,
};

const NET: NetworkId = NetworkId(1);
const MAC_A: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];
const MAC_B: [u8; 6] = [0x02, 0x42, 10, 0, 0, 3];

/// An IPv4-typed frame of `len` bytes (header included) from `src` to `dst`.
fn frame(src: [u8; 6], dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    bytes.extend_from_slice(&dst);
    bytes.extend_from_slice(&src);
    bytes.extend_from_slice(&[0x08, 0x00]);
    bytes.resize(len, 0xa5);
    bytes
}

/// A switch with one network of `ports` ports (port 0 the gateway, the rest containers).
fn switch_with_ports(ports: u32) -> Switch {
    let mut switch = Switch::with_hash_seed(SwitchConfig::default(), 0x5eed);
    switch
        .add_network(NET, NetworkConfig::with_mtu(1500))
        .unwrap();
    for port in 0..ports {
        let role = if port == 0 {
            PortRole::Gateway
        } else {
            PortRole::Container
        };
        switch.add_port(PortId(port), NET, role).unwrap();
    }
    switch
}

fn learned_unicast(c: &mut Criterion) {
    let mut group = c.benchmark_group("learned_unicast");
    for len in [64usize, 1500] {
        let mut switch = switch_with_ports(2);
        let a_to_b = frame(MAC_A, MAC_B, len);
        let b_to_a = frame(MAC_B, MAC_A, len);
        let now = Instant::from_secs(1);
        // Learn both stations.
        switch.handle_frame(now, PortId(0), &a_to_b);
        switch.handle_frame(now, PortId(1), &b_to_a);
        assert_eq!(
            switch.handle_frame(now, PortId(0), &a_to_b),
            Verdict::Forward(PortId(1))
        );
        assert_eq!(
            switch.handle_frame(now, PortId(1), &b_to_a),
            Verdict::Forward(PortId(0))
        );

        group.throughput(Throughput::Elements(2));
        group.bench_function(BenchmarkId::from_parameter(len), |b| {
            b.iter(|| {
                black_box(switch.handle_frame(
                    black_box(now),
                    black_box(PortId(0)),
                    black_box(&a_to_b),
                ));
                black_box(switch.handle_frame(
                    black_box(now),
                    black_box(PortId(1)),
                    black_box(&b_to_a),
                ));
            });
        });
    }
    group.finish();
}

fn flood(c: &mut Criterion) {
    let mut group = c.benchmark_group("flood");
    let mut switch = switch_with_ports(9);
    let broadcast = frame(MAC_A, [0xff; 6], 64);
    let now = Instant::from_secs(1);
    match switch.handle_frame(now, PortId(1), &broadcast) {
        Verdict::Flood(ports) => assert_eq!(ports.len(), 8),
        other => panic!("expected a flood, got {other:?}"),
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("broadcast_to_8", |b| {
        b.iter(|| {
            black_box(switch.handle_frame(
                black_box(now),
                black_box(PortId(1)),
                black_box(&broadcast),
            ));
        });
    });
    group.finish();
}

fn containers(c: &mut Criterion) {
    let mut group = c.benchmark_group("containers");
    for n in [2u32, 100, 1000] {
        let mut switch = switch_with_ports(n);
        let mac = |i: u32| {
            let b = i.to_be_bytes();
            [0x02, 0x42, 10, b[1], b[2], b[3]]
        };
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|i| frame(mac(i), mac((i + 1) % n), 64))
            .collect();
        let now = Instant::from_secs(1);
        for (i, f) in frames.iter().enumerate() {
            switch.handle_frame(now, PortId(i as u32), f);
        }
        for (i, f) in frames.iter().enumerate() {
            let next = PortId(((i + 1) % n as usize) as u32);
            assert_eq!(
                switch.handle_frame(now, PortId(i as u32), f),
                Verdict::Forward(next)
            );
        }
        group.throughput(Throughput::Elements(u64::from(n)));
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                for (i, f) in frames.iter().enumerate() {
                    black_box(switch.handle_frame(
                        black_box(now),
                        black_box(PortId(i as u32)),
                        black_box(f),
                    ));
                }
            });
        });
    }
    group.finish();
}

/// A 64-byte UDP frame from `src` to `dst`, over IPv4 or IPv6 (addresses ...::2/3).
fn udp_frame(src: [u8; 6], dst: [u8; 6], v6: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(96);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 64]);
        for host in [src[5], dst[5]] {
            f.extend_from_slice(&[0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, host]);
        }
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, 0, src[5], 10, 0, 0, dst[5]]);
    }
    f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 8, 0, 0]);
    f.resize(f.len().max(64), 0);
    f
}

fn guarded_unicast(c: &mut Criterion) {
    let mut group = c.benchmark_group("guarded_unicast");
    for (name, guarded, v6) in [
        ("unguarded", false, false),
        ("ipv4", true, false),
        ("ipv6", true, true),
    ] {
        let mut switch = Switch::with_hash_seed(SwitchConfig::default(), 0x5eed);
        switch
            .add_network(NET, NetworkConfig::with_mtu(1500))
            .unwrap();
        let now = Instant::from_secs(1);
        for (port, mac) in [(PortId(1), MAC_A), (PortId(2), MAC_B)] {
            switch.add_port(port, NET, PortRole::Container).unwrap();
            let host = mac[5];
            let guard = PortGuard::new(MacAddr(mac))
                .with_ipv4(std::net::Ipv4Addr::new(10, 0, 0, host))
                .with_ipv6(std::net::Ipv6Addr::new(
                    0xfd00,
                    1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    u16::from(host),
                ))
                .with_slaac_prefix(std::net::Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0));
            if guarded {
                switch.set_port_guard(now, port, Some(guard)).unwrap();
            }
        }
        let a_to_b = udp_frame(MAC_A, MAC_B, v6);
        let b_to_a = udp_frame(MAC_B, MAC_A, v6);
        switch.handle_frame(now, PortId(1), &a_to_b);
        switch.handle_frame(now, PortId(2), &b_to_a);
        assert_eq!(
            switch.handle_frame(now, PortId(1), &a_to_b),
            Verdict::Forward(PortId(2))
        );
        group.throughput(Throughput::Elements(2));
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(switch.handle_frame(
                    black_box(now),
                    black_box(PortId(1)),
                    black_box(&a_to_b),
                ));
                black_box(switch.handle_frame(
                    black_box(now),
                    black_box(PortId(2)),
                    black_box(&b_to_a),
                ));
            });
        });
    }
    group.finish();
}

criterion_group!(benches, learned_unicast, flood, containers, guarded_unicast);
criterion_main!(benches);

//! Criterion benches of the sans-IO NAT engine (`tapnet-nat`), in packets/s (or
//! flows/s).
//!
//! - `outbound_established/{1k,1M}`: a TCP segment of an established masqueraded flow
//!   from a container: conntrack lookup + track + rewrite with incremental checksums
//!   (the per-packet path), cycling over the flows in a pseudo-random order so that the
//!   1 M case misses the caches as real traffic would. Each iteration copies the
//!   54-byte packet from its template into a scratch buffer first (as a fresh receive
//!   buffer would hold it). Target (a later issue): >= 8 M packets/s per core.
//! - `inbound_reply/{1k,1M}`: the remote's reply to such a flow arriving on the uplink,
//!   translated back to the container.
//! - `new_flow/{1k,1M}`: the first UDP packet of a new flow (port allocation, keeping
//!   the source port, + conntrack insert + rewrite), then the flow removed again, in a
//!   table that already holds 1 k or 1 M flows.
//!
//! The 1 M tables are built once, outside the measured loops (a few seconds).
//!
//! Run: `cargo bench --bench nat -- --measurement-time 3 --warm-up-time 1`

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tapnet_conntrack::ConntrackConfig;
use tapnet_nat::{Instant, Nat, NatConfig, NatVerdict, Network, Zone, checksum};

const UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ZONE: Zone = Zone(1);
const PACKET_LEN: usize = 54;
const SIZES: [(&str, u32); 2] = [("1k", 1_000), ("1M", 1_000_000)];

/// Container address, source port and remote address of flow `i` (256 remotes, so
/// that 1 M flows fit the per-remote port space).
fn flow(i: u32) -> (Ipv4Addr, u16, Ipv4Addr) {
    let [_, b, c, d] = i.to_be_bytes();
    let src = Ipv4Addr::new(10, b, c, d | 2);
    let sp = 40000 + (i % 16) as u16;
    let dst = Ipv4Addr::new(198, 51, 100, (i >> 8) as u8);
    (src, sp, dst)
}

/// A TCP segment (flags `flags`) or a UDP datagram with 14 bytes of payload, with
/// valid checksums: 54 bytes either way.
fn packet(
    tcp: bool,
    src: Ipv4Addr,
    sp: u16,
    dst: Ipv4Addr,
    dp: u16,
    flags: u8,
) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[..12].copy_from_slice(&[0x45, 0, 0, PACKET_LEN as u8, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    p[20..22].copy_from_slice(&sp.to_be_bytes());
    p[22..24].copy_from_slice(&dp.to_be_bytes());
    let at = if tcp {
        p[32] = 5 << 4;
        p[33] = flags;
        p[34] = 0xff;
        36
    } else {
        p[9] = 17;
        p[24..26].copy_from_slice(&((PACKET_LEN - 20) as u16).to_be_bytes());
        26
    };
    let ck = checksum::checksum(&p[..20]);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    let ck = checksum::upper_layer(
        checksum::pseudo_v4(src, dst, p[9], PACKET_LEN - 20),
        &p[20..],
    );
    p[at..at + 2].copy_from_slice(&ck.to_be_bytes());
    p
}

/// An engine holding `flows` established masqueraded TCP flows, with the templates of
/// each flow's next outbound segment and of its reply, in a pseudo-random order.
fn established(flows: u32) -> (Nat, Vec<[u8; PACKET_LEN]>, Vec<[u8; PACKET_LEN]>) {
    let mut nat = Nat::new(NatConfig {
        uplink_addr: UPLINK,
        conntrack: ConntrackConfig {
            capacity: flows as usize + 1024,
            ..Default::default()
        },
        ..Default::default()
    });
    nat.add_network(Network {
        zone: ZONE,
        subnet: Ipv4Addr::new(10, 0, 0, 0),
        prefix_len: 8,
        gateway: Ipv4Addr::new(10, 0, 0, 1),
        masquerade: true,
    })
    .unwrap();
    let now = Instant::from_secs(1);
    let mut pairs = Vec::with_capacity(flows as usize);
    for i in 0..flows {
        let (src, sp, dst) = flow(i);
        let mut syn = packet(true, src, sp, dst, 80, 0x02);
        assert_eq!(
            nat.handle_outbound(now, ZONE, &mut syn),
            NatVerdict::ToUplink
        );
        let mapped = u16::from_be_bytes([syn[20], syn[21]]);
        let reply = packet(true, dst, 80, UPLINK, mapped, 0x10);
        let mut syn_ack = packet(true, dst, 80, UPLINK, mapped, 0x12);
        assert_eq!(
            nat.handle_inbound(now, &mut syn_ack),
            NatVerdict::ToZone(ZONE)
        );
        let out = packet(true, src, sp, dst, 80, 0x10);
        let mut ack = out;
        assert_eq!(
            nat.handle_outbound(now, ZONE, &mut ack),
            NatVerdict::ToUplink
        );
        pairs.push((out, reply));
    }
    // A fixed pseudo-random visiting order (xorshift).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..pairs.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        pairs.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let (out, replies) = pairs.into_iter().unzip();
    (nat, out, replies)
}

fn per_packet(c: &mut Criterion) {
    let mut outbound = c.benchmark_group("nat_outbound_established");
    outbound.throughput(Throughput::Elements(1));
    let mut tables = Vec::new();
    for (name, flows) in SIZES {
        let (mut nat, out, replies) = established(flows);
        let now = Instant::from_secs(2);
        let mut i = 0usize;
        outbound.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut p = out[i];
                i += 1;
                if i == out.len() {
                    i = 0;
                }
                let v = nat.handle_outbound(now, ZONE, &mut p);
                black_box((v, p))
            })
        });
        tables.push((name, nat, replies));
    }
    outbound.finish();

    let mut inbound = c.benchmark_group("nat_inbound_reply");
    inbound.throughput(Throughput::Elements(1));
    for (name, mut nat, replies) in tables {
        let now = Instant::from_secs(2);
        let mut i = 0usize;
        inbound.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut p = replies[i];
                i += 1;
                if i == replies.len() {
                    i = 0;
                }
                let v = nat.handle_inbound(now, &mut p);
                black_box((v, p))
            })
        });
    }
    inbound.finish();
}

fn new_flow(c: &mut Criterion) {
    let mut group = c.benchmark_group("nat_new_flow");
    group.throughput(Throughput::Elements(1));
    for (name, flows) in SIZES {
        let (mut nat, _, _) = established(flows);
        let now = Instant::from_secs(2);
        // UDP flows from addresses of another /16 than the established ones use.
        let templates: Vec<[u8; PACKET_LEN]> = (0..4096u32)
            .map(|i| {
                let (_, sp, dst) = flow(i);
                let src = Ipv4Addr::new(10, 200, (i >> 8) as u8, i as u8 | 2);
                packet(false, src, sp, dst, 53, 0)
            })
            .collect();
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let template = &templates[i];
                i = (i + 1) % templates.len();
                let mut p = *template;
                let v = nat.handle_outbound(now, ZONE, &mut p);
                // Tear the flow down again so that every iteration sets up a new one.
                let (src, sp, dst) = (
                    Ipv4Addr::new(template[12], template[13], template[14], template[15]),
                    u16::from_be_bytes([template[20], template[21]]),
                    Ipv4Addr::new(template[16], template[17], template[18], template[19]),
                );
                let key = tapnet_nat::FlowKey {
                    zone: ZONE,
                    proto: tapnet_nat::Proto::Udp,
                    src: src.into(),
                    src_port: sp,
                    dst: dst.into(),
                    dst_port: 53,
                };
                let ct = nat.conntrack_mut();
                if let Some((id, _)) = ct.lookup(&key) {
                    ct.remove(id);
                }
                black_box((v, p))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_packet, new_flow);
criterion_main!(benches);

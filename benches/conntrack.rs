//! Criterion benches of the sans-IO connection tracker (`tapnet-conntrack`), in
//! packets/s (or flows/s).
//!
//! - `track_established/{1k,1M}`: `track` of packets of established TCP flows (the
//!   lookup + state + counter path every forwarded packet takes), cycling over all
//!   flows of a table holding 1 k or 1 M of them, in a pseudo-random order so that the
//!   1 M case misses the caches as real traffic would. Target (a later issue): >= 8 M
//!   packets/s per core through lookup + NAT rewrite, and <= 2x the per-packet cost
//!   from 1 k to 1 M flows.
//! - `track_established/1M-tracked-1k-active`: the 1 M table, with the packets of
//!   1 k of its flows only (scattered over the table): the idle flows cost memory,
//!   not time.
//! - `track_established_burst/{1k,1M}`: the same packets through `track_burst`, 32 at
//!   a time (the lookups of a burst overlap their cache misses); per packet.
//! - `insert_remove/{1k,1M}`: create a UDP flow (`track` of its first packet) and
//!   `remove` it, in a table that already holds 1 k or 1 M flows (each iteration = one
//!   flow created and removed).
//!
//! The 1 M tables are built once, outside the measured loops (a few seconds).
//!
//! Run: `cargo bench --bench conntrack -- --measurement-time 3 --warm-up-time 1`

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tapnet_conntrack::{Conntrack, ConntrackConfig, FlowKey, Instant, Proto, TcpFlags, Zone};

/// The key of flow `i`: distinct container addresses and ports towards one server.
fn key(i: u32, proto: Proto) -> FlowKey {
    let [_, b, c, d] = i.to_be_bytes();
    FlowKey {
        zone: Zone(1),
        proto,
        src: Ipv4Addr::new(10, b, c, d).into(),
        src_port: 40000 + (i % 16) as u16,
        dst: Ipv4Addr::new(10, 0, 0, 2).into(),
        dst_port: 80,
    }
}

/// A table of `flows` established TCP flows (capacity with headroom for inserts).
fn established_table(flows: u32) -> (Conntrack, Vec<FlowKey>) {
    let mut ct = Conntrack::with_hash_seed(
        ConntrackConfig {
            capacity: flows as usize + 1024,
            ..Default::default()
        },
        0x5eed,
    );
    let now = Instant::from_secs(1);
    let mut keys = Vec::with_capacity(flows as usize);
    for i in 0..flows {
        let k = key(i, Proto::Tcp);
        ct.track(now, &k, Some(TcpFlags::SYN), 60).unwrap();
        ct.track(now, &k.reversed(), Some(TcpFlags::SYN_ACK), 60)
            .unwrap();
        ct.track(now, &k, Some(TcpFlags::ACK), 60).unwrap();
        keys.push(k);
    }
    // A fixed pseudo-random visiting order (xorshift), so that consecutive packets hit
    // unrelated flows.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..keys.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        keys.swap(i, (state % (i as u64 + 1)) as usize);
    }
    (ct, keys)
}

const SIZES: [(&str, u32); 2] = [("1k", 1_000), ("1M", 1_000_000)];

fn track_established(c: &mut Criterion) {
    let mut group = c.benchmark_group("track_established");
    group.throughput(Throughput::Elements(1));
    for (name, flows) in SIZES {
        let (mut ct, keys) = established_table(flows);
        let now = Instant::from_secs(2);
        let mut bench = |name: &str, keys: &[FlowKey]| {
            let mut i = 0usize;
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    let k = &keys[i];
                    i += 1;
                    if i == keys.len() {
                        i = 0;
                    }
                    black_box(ct.track(now, black_box(k), Some(TcpFlags::ACK), 1500))
                })
            });
        };
        bench(name, &keys);
        if flows > ACTIVE {
            // The same table, with traffic on 1 k of its flows (scattered over it, as
            // the visiting order is shuffled): most tracked flows of a real table are
            // idle at any moment.
            bench("1M-tracked-1k-active", &keys[..ACTIVE as usize]);
        }
    }
    group.finish();
}

/// Flows with traffic in `track_established/1M-tracked-1k-active`.
const ACTIVE: u32 = 1_000;

fn track_established_burst(c: &mut Criterion) {
    const BURST: usize = 32;
    let mut group = c.benchmark_group("track_established_burst");
    group.throughput(Throughput::Elements(BURST as u64));
    for (name, flows) in SIZES {
        let (mut ct, keys) = established_table(flows);
        let packets: Vec<_> = keys
            .iter()
            .map(|&k| (k, Some(TcpFlags::ACK), 1500))
            .collect();
        let now = Instant::from_secs(2);
        let mut out = Vec::with_capacity(BURST);
        let mut i = 0usize;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                if i + BURST > packets.len() {
                    i = 0;
                }
                let burst = &packets[i..i + BURST];
                i += BURST;
                out.clear();
                ct.track_burst(now, black_box(burst), &mut out);
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn insert_remove(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_remove");
    group.throughput(Throughput::Elements(1));
    for (name, flows) in SIZES {
        let (mut ct, _) = established_table(flows);
        let now = Instant::from_secs(2);
        let mut n = 0u32;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                // New flows outside the established ones' address range.
                n = n.wrapping_add(1);
                let k = key(0x0100_0000 | (n & 0x00ff_ffff), Proto::Udp);
                let t = ct.track(now, &k, None, 100).unwrap();
                black_box(ct.remove(t.id))
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    track_established,
    track_established_burst,
    insert_remove
);
criterion_main!(benches);

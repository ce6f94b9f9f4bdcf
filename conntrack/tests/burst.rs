//! Property test: `track_burst` gives the same results, entries and counters as
//! `track` called packet by packet, including bursts that create flows, clash, evict
//! from a full table and then meet the evicted flows again.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use tapnet_conntrack::{Conntrack, ConntrackConfig, FlowKey, Instant, Proto, TcpFlags, Zone};

/// Packet `n` of a small alphabet: few keys (so that flows meet), both directions.
fn packet(n: u8, flags: u8) -> (FlowKey, Option<TcpFlags>, usize) {
    let proto = match n % 3 {
        0 => Proto::Tcp,
        1 => Proto::Udp,
        _ => Proto::IcmpEcho,
    };
    let host = (n / 3) % 6;
    let key = FlowKey {
        zone: Zone(1),
        proto,
        src: Ipv4Addr::new(10, 0, 0, 10 + host).into(),
        src_port: 40000,
        dst: Ipv4Addr::new(10, 0, 0, 2).into(),
        dst_port: if proto == Proto::IcmpEcho { 40000 } else { 80 },
    };
    let key = if n & 0x80 != 0 { key.reversed() } else { key };
    let tcp = (proto == Proto::Tcp).then_some(TcpFlags {
        fin: flags & 1 != 0,
        syn: flags & 2 != 0,
        rst: flags & 4 != 0,
        ack: flags & 8 != 0,
    });
    (key, tcp, 100)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn burst_equals_one_by_one(
        capacity in 0usize..8,
        bursts in prop::collection::vec(
            prop::collection::vec((any::<u8>(), prop::sample::select(vec![2u8, 10, 8, 9, 4, 0])), 0..40),
            0..12,
        ),
    ) {
        let config = ConntrackConfig { capacity, ..Default::default() };
        let mut one = Conntrack::new(config.clone());
        let mut burst = Conntrack::new(config);
        let mut out = Vec::new();
        for (step, packets) in bursts.iter().enumerate() {
            let now = Instant::from_secs(1 + 40 * step as u64);
            let packets: Vec<_> = packets.iter().map(|&(n, f)| packet(n, f)).collect();
            out.clear();
            burst.track_burst(now, &packets, &mut out);
            prop_assert_eq!(out.len(), packets.len());
            for ((key, tcp, len), got) in packets.iter().zip(&out) {
                prop_assert_eq!(&one.track(now, key, *tcp, *len), got);
            }
            prop_assert_eq!(one.entries(now), burst.entries(now));
            prop_assert_eq!(one.stats(), burst.stats());
            while let Some(ended) = one.poll_expired(now) {
                prop_assert_eq!(Some(ended), burst.poll_expired(now));
            }
            prop_assert_eq!(burst.poll_expired(now), None);
            burst.check_invariants();
        }
    }
}

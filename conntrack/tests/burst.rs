//! Property test: `track_burst` gives the same results, entries and counters as
//! `track` called packet by packet, including bursts that create flows, clash, evict
//! from a full table and then meet the evicted flows again.

mod common;

use common::packet;
use proptest::prelude::*;
use tapnet_conntrack::{Conntrack, ConntrackConfig, Instant};

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

//! Property test: `track_known` does what `lookup`, then `track`, then `entry` do for
//! a known flow (same result, entries, counters and expiries, and the other tuple read
//! from the entry), and nothing at all for an unknown one.

mod common;

use common::packet;
use proptest::prelude::*;
use tapnet_conntrack::{Conntrack, ConntrackConfig, Direction, Instant};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn known_equals_lookup_track_entry(
        capacity in 0usize..8,
        steps in prop::collection::vec(
            (any::<u8>(), prop::sample::select(vec![2u8, 10, 8, 9, 4, 0]), 0u64..200),
            0..300,
        ),
    ) {
        let config = ConntrackConfig { capacity, ..Default::default() };
        let mut three = Conntrack::new(config.clone());
        let mut one = Conntrack::new(config);
        let mut now = Instant::from_secs(1);
        for &(n, flags, dt) in &steps {
            now = now + core::time::Duration::from_secs(dt / 4);
            let (key, tcp, len) = packet(n, flags);
            let got = one.track_known(now, &key, tcp, len);
            match three.lookup(&key) {
                Some((id, dir)) => {
                    let tracked = three.track(now, &key, tcp, len);
                    let entry = three.entry(id, now).expect("a tracked entry lives");
                    let other = match dir {
                        Direction::Original => entry.reply,
                        Direction::Reply => entry.original,
                    };
                    let got = got.expect("a known key is known");
                    prop_assert_eq!(Ok(got.tracked), tracked);
                    prop_assert_eq!(got.other, other);
                }
                None => {
                    prop_assert_eq!(got, None);
                    // Start the flow in both tables, as a NAT would after the miss.
                    prop_assert_eq!(one.track(now, &key, tcp, len), three.track(now, &key, tcp, len));
                }
            }
            prop_assert_eq!(one.entries(now), three.entries(now));
            prop_assert_eq!(one.stats(), three.stats());
            while let Some(ended) = one.poll_expired(now) {
                prop_assert_eq!(Some(ended), three.poll_expired(now));
            }
            prop_assert_eq!(three.poll_expired(now), None);
            one.check_invariants();
        }
    }
}

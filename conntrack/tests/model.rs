//! Property tests: arbitrary sequences of `track`, `insert`, `remove` and time steps,
//! checked after every operation against a `HashMap` model by the shared
//! [`CheckedConntrack`] harness (capacity, lookups, eviction of unassured flows only,
//! expiry reporting, no panics).

use proptest::prelude::*;
use tapnet_conntrack::fuzzing::{CheckedConntrack, Op};
use tapnet_conntrack::{ConntrackConfig, Timeouts};

use core::time::Duration;

fn op() -> impl Strategy<Value = Op> {
    // Few keys (so that flows meet), weighted towards packets.
    let key = 0u8..48;
    prop_oneof![
        8 => (key.clone(), any::<bool>(), 0u8..16, any::<u16>(), 0u16..3000).prop_map(
            |(key, reply, flags, len, step_ms)| Op::Track { key, reply, flags, len, step_ms }
        ),
        // Mostly the TCP SYN (bits: FIN 1, SYN 2, RST 4, ACK 8) and the handshake.
        4 => (key.clone(), any::<bool>(), prop::sample::select(vec![2u8, 10, 8, 9, 4]), 0u16..500)
            .prop_map(|(key, reply, flags, step_ms)| Op::Track { key, reply, flags, len: 60, step_ms }),
        2 => (key.clone(), key, prop_oneof![Just(0x80u8), 0u8..16]).prop_map(|(key, nat, flags)| Op::Insert { key, nat, flags }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(pick, stale)| Op::Remove { pick, stale }),
        1 => (0u16..40).prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Check),
    ]
}

fn config(capacity: usize) -> ConntrackConfig {
    let s = Duration::from_secs;
    ConntrackConfig {
        capacity,
        timeouts: Timeouts {
            tcp_syn_sent: s(5),
            tcp_syn_recv: s(4),
            tcp_established: s(60),
            tcp_fin_wait: s(5),
            tcp_close_wait: s(4),
            tcp_last_ack: s(3),
            tcp_time_wait: s(5),
            tcp_close: s(2),
            udp: s(3),
            udp_stream: s(10),
            icmp: s(3),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn table_agrees_with_the_model(capacity in 0usize..12, ops in prop::collection::vec(op(), 0..300)) {
        let mut ct = CheckedConntrack::new(config(capacity));
        for op in ops {
            ct.apply(op);
        }
        ct.check();
    }

    #[test]
    fn default_timeouts_never_expire_in_a_short_run(ops in prop::collection::vec(op(), 0..200)) {
        let mut ct = CheckedConntrack::new(ConntrackConfig { capacity: 8, ..ConntrackConfig::default() });
        for op in ops {
            ct.apply(op);
        }
        ct.check();
    }
}

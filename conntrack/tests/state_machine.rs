//! State-machine tests of the connection tracker, in the style of smoltcp's TCP tests:
//! a harness holding one table and one flow, and `send!` (original direction, from the
//! container) / `recv!` (reply direction) macros that track one segment and check the
//! state it leaves the flow in.

use core::time::Duration;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tapnet_conntrack::{
    Conntrack, ConntrackConfig, Direction, FlowId, FlowKey, Instant, Proto, Refused, State,
    TcpFlags, Timeouts, Tracked, Zone,
};

const T0: Instant = Instant::from_secs(1000);

const SYN: TcpFlags = TcpFlags::SYN;
const SYN_ACK: TcpFlags = TcpFlags::SYN_ACK;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN_ACK;
const RST: TcpFlags = TcpFlags::RST;

fn v4(d: u8) -> IpAddr {
    Ipv4Addr::new(10, 0, 2, d).into()
}

/// The template key: container 10.0.2.100:40000 to the gateway 10.0.2.2:80 in zone 1.
const fn tcp_key() -> FlowKey {
    FlowKey {
        zone: Zone(1),
        proto: Proto::Tcp,
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 100)),
        src_port: 40000,
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)),
        dst_port: 80,
    }
}

/// A table and one flow under test.
struct Harness {
    ct: Conntrack,
    now: Instant,
    key: FlowKey,
    id: Option<FlowId>,
}

impl Harness {
    fn new(key: FlowKey) -> Self {
        Self::with_config(key, ConntrackConfig::default())
    }

    fn with_config(key: FlowKey, config: ConntrackConfig) -> Self {
        Self {
            ct: Conntrack::new(config),
            now: T0,
            key,
            id: None,
        }
    }

    fn packet(&mut self, dir: Direction, tcp: Option<TcpFlags>) -> Result<Tracked, Refused> {
        let key = match dir {
            Direction::Original => self.key,
            Direction::Reply => self.key.reversed(),
        };
        let tracked = self.ct.track(self.now, &key, tcp, 100)?;
        assert_eq!(tracked.direction, dir);
        if let Some(id) = self.id {
            assert_eq!(tracked.id, id, "same flow");
        }
        self.id = Some(tracked.id);
        self.ct.check_invariants();
        Ok(tracked)
    }

    fn info(&self) -> tapnet_conntrack::EntryInfo {
        self.ct
            .entry(self.id.expect("flow"), self.now)
            .expect("live entry")
    }

    fn remaining(&self) -> Duration {
        self.info().remaining
    }

    fn wait(&mut self, d: Duration) {
        self.now = self.now + d;
    }
}

/// Tracks a segment in the original direction and checks the resulting state.
macro_rules! send {
    ($h:expr, $flags:expr => $state:ident) => {{
        let t = $h
            .packet(Direction::Original, Some($flags))
            .expect("tracked");
        assert_eq!(t.state, State::$state, "after sending {:?}", $flags);
        t
    }};
}

/// Tracks a segment in the reply direction and checks the resulting state.
macro_rules! recv {
    ($h:expr, $flags:expr => $state:ident) => {{
        let t = $h.packet(Direction::Reply, Some($flags)).expect("tracked");
        assert_eq!(t.state, State::$state, "after receiving {:?}", $flags);
        t
    }};
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Opens the template connection to ESTABLISHED.
fn established() -> Harness {
    let mut h = Harness::new(tcp_key());
    let t = send!(h, SYN => TcpSynSent);
    assert!(t.new);
    recv!(h, SYN_ACK => TcpSynRecv);
    send!(h, ACK => TcpEstablished);
    h
}

#[test]
fn full_tcp_lifecycle_with_timeouts() {
    let d = Timeouts::default();
    let mut h = Harness::new(tcp_key());
    let t = send!(h, SYN => TcpSynSent);
    assert!(t.new);
    let info = h.info();
    assert!(!info.assured && info.is_unreplied());
    assert_eq!(info.remaining, d.tcp_syn_sent);

    h.wait(secs(1));
    let t = recv!(h, SYN_ACK => TcpSynRecv);
    assert!(!t.new);
    assert_eq!(h.remaining(), d.tcp_syn_recv);
    assert!(!h.info().assured && !h.info().is_unreplied());

    send!(h, ACK => TcpEstablished);
    assert!(h.info().assured, "assured on reaching ESTABLISHED");
    assert_eq!(h.remaining(), secs(432_000));
    assert_eq!(h.ct.unassured_len(), 0);

    recv!(h, ACK => TcpEstablished);
    send!(h, ACK => TcpEstablished);

    send!(h, FIN => TcpFinWait);
    assert_eq!(h.remaining(), d.tcp_fin_wait);
    // The FIN sender's own ACKs (or a retransmitted FIN) do not advance the close.
    send!(h, ACK => TcpFinWait);
    send!(h, FIN => TcpFinWait);
    recv!(h, ACK => TcpCloseWait);
    assert_eq!(h.remaining(), d.tcp_close_wait);
    // Half-closed: the reply side may still send data.
    recv!(h, ACK => TcpCloseWait);
    send!(h, ACK => TcpCloseWait);
    recv!(h, FIN => TcpLastAck);
    assert_eq!(h.remaining(), d.tcp_last_ack);
    recv!(h, ACK => TcpLastAck);
    send!(h, ACK => TcpTimeWait);
    assert_eq!(h.remaining(), d.tcp_time_wait);
    assert!(h.info().assured, "stays assured while closing");

    let info = h.info();
    assert_eq!(info.original_counters.packets, 8);
    assert_eq!(info.reply_counters.packets, 6);
    assert_eq!(info.reply_counters.bytes, 600);

    // TIME_WAIT runs out: the entry is reported and gone.
    h.wait(d.tcp_time_wait - Duration::from_nanos(1));
    assert_eq!(h.ct.poll_expired(h.now), None);
    h.wait(Duration::from_nanos(1));
    let expired = h.ct.poll_expired(h.now).expect("expired");
    assert_eq!(expired.id, h.id.unwrap());
    assert_eq!(expired.state, State::TcpTimeWait);
    assert!(h.ct.is_empty());
    assert_eq!(h.ct.poll_timeout(), None);
    assert_eq!(h.ct.entry(expired.id, h.now), None);
}

#[test]
fn closes_initiated_by_the_reply_side() {
    let mut h = established();
    recv!(h, FIN => TcpFinWait);
    send!(h, ACK => TcpCloseWait);
    send!(h, FIN => TcpLastAck);
    recv!(h, ACK => TcpTimeWait);
}

#[test]
fn simultaneous_close() {
    // Both FINs cross, then each side acknowledges the other's (RFC 9293 figure 13).
    let mut h = established();
    send!(h, FIN => TcpFinWait);
    recv!(h, FIN => TcpLastAck);
    send!(h, ACK => TcpTimeWait);
    recv!(h, ACK => TcpTimeWait);

    // The other order of the final ACKs: the ACK from the second FIN's sender first.
    let mut h = established();
    send!(h, FIN => TcpFinWait);
    recv!(h, FIN => TcpLastAck);
    recv!(h, ACK => TcpLastAck);
    send!(h, ACK => TcpTimeWait);
}

#[test]
fn rst_from_either_side_closes_in_every_state() {
    type Setup = fn(&mut Harness);
    let setups: [(&str, Setup); 7] = [
        ("SYN_SENT", |h| {
            send!(h, SYN => TcpSynSent);
        }),
        ("SYN_RECV", |h| {
            send!(h, SYN => TcpSynSent);
            recv!(h, SYN_ACK => TcpSynRecv);
        }),
        ("ESTABLISHED", |h| {
            send!(h, SYN => TcpSynSent);
            recv!(h, SYN_ACK => TcpSynRecv);
            send!(h, ACK => TcpEstablished);
        }),
        ("FIN_WAIT", |h| {
            *h = established();
            send!(h, FIN => TcpFinWait);
        }),
        ("CLOSE_WAIT", |h| {
            *h = established();
            send!(h, FIN => TcpFinWait);
            recv!(h, ACK => TcpCloseWait);
        }),
        ("LAST_ACK", |h| {
            *h = established();
            send!(h, FIN => TcpFinWait);
            recv!(h, FIN => TcpLastAck);
        }),
        ("TIME_WAIT", |h| {
            *h = established();
            send!(h, FIN => TcpFinWait);
            recv!(h, FIN => TcpLastAck);
            send!(h, ACK => TcpTimeWait);
        }),
    ];
    for (name, setup) in setups {
        for dir in [Direction::Original, Direction::Reply] {
            let mut h = Harness::new(tcp_key());
            setup(&mut h);
            let assured = h.info().assured;
            let t = h.packet(dir, Some(RST)).expect("tracked");
            assert_eq!(t.state, State::TcpClose, "RST ({dir:?}) in {name}");
            assert_eq!(h.remaining(), secs(10), "CLOSE timeout after {name}");
            assert_eq!(h.info().assured, assured, "RST keeps the assured bit");
            // A reset flow goes in 10 s, even if it had days left.
            assert_eq!(h.ct.poll_timeout(), Some(h.now + secs(10)));
            // RST again, and stray segments, stay in CLOSE.
            h.packet(dir, Some(RST)).unwrap();
            recv!(h, ACK => TcpClose);
        }
    }
}

#[test]
fn syn_retransmit_refreshes_without_a_new_flow() {
    let mut h = Harness::new(tcp_key());
    let first = send!(h, SYN => TcpSynSent);
    h.wait(secs(3));
    assert_eq!(h.remaining(), secs(117));
    let again = send!(h, SYN => TcpSynSent);
    assert!(!again.new);
    assert_eq!(again.id, first.id);
    assert_eq!(h.remaining(), secs(120));
    assert_eq!(h.info().original_counters.packets, 2);
    assert_eq!(h.ct.len(), 1);
    // A retransmitted SYN+ACK in SYN_RECV, too.
    recv!(h, SYN_ACK => TcpSynRecv);
    recv!(h, SYN_ACK => TcpSynRecv);
}

#[test]
fn port_reuse_restarts_time_wait_and_close_entries() {
    let mut h = established();
    send!(h, FIN => TcpFinWait);
    recv!(h, FIN => TcpLastAck);
    send!(h, ACK => TcpTimeWait);
    let old = h.id.unwrap();
    let t = send!(h, SYN => TcpSynSent);
    assert!(t.new, "a SYN in TIME_WAIT starts a new connection");
    assert_eq!(t.id, old, "on the same entry");
    let info = h.info();
    assert!(!info.assured && info.is_unreplied());
    assert_eq!(info.original_counters.packets, 1);
    assert_eq!(info.remaining, secs(120));
    assert_eq!(h.ct.unassured_len(), 1);
    recv!(h, SYN_ACK => TcpSynRecv);
    send!(h, ACK => TcpEstablished);
    assert!(h.info().assured);

    recv!(h, RST => TcpClose);
    let t = send!(h, SYN => TcpSynSent);
    assert!(t.new, "a SYN in CLOSE starts a new connection");
    // A SYN from the reply side does not reopen (the roles would swap).
    recv!(h, RST => TcpClose);
    let t = h.packet(Direction::Reply, Some(SYN)).unwrap();
    assert!(!t.new);
    assert_eq!(t.state, State::TcpClose);
}

#[test]
fn mid_stream_packets_do_not_start_flows() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let key = tcp_key();
    for flags in [ACK, SYN_ACK, FIN, RST, TcpFlags::default()] {
        assert_eq!(
            ct.track(T0, &key, Some(flags), 60),
            Err(Refused::NotNew),
            "{flags:?}"
        );
    }
    assert_eq!(ct.track(T0, &key, None, 60), Err(Refused::NotNew));
    assert!(ct.is_empty());
    assert_eq!(ct.stats().refused_not_new, 6);
    // SYN with FIN (a malformed but SYN-classified segment) may start one, as in Linux.
    let syn_fin = TcpFlags { fin: true, ..SYN };
    assert!(ct.track(T0, &key, Some(syn_fin), 60).unwrap().new);
}

#[test]
fn invalid_segments_leave_state_and_timeout_alone() {
    let mut h = Harness::new(tcp_key());
    send!(h, SYN => TcpSynSent);
    h.wait(secs(10));
    // An ACK from the client before any SYN+ACK, a FIN in SYN_SENT, a bare segment.
    send!(h, ACK => TcpSynSent);
    send!(h, FIN => TcpSynSent);
    h.packet(Direction::Original, Some(TcpFlags::default()))
        .unwrap();
    assert_eq!(h.remaining(), secs(110), "not refreshed");
    assert_eq!(h.ct.stats().tcp_invalid, 3);
    assert_eq!(h.info().original_counters.packets, 4, "still counted");
    // The ESTABLISHED path is still open.
    recv!(h, SYN_ACK => TcpSynRecv);
    send!(h, ACK => TcpEstablished);
    // A SYN in ESTABLISHED is invalid.
    send!(h, SYN => TcpEstablished);
}

#[test]
fn each_state_expires_after_its_timeout() {
    let timeouts = Timeouts {
        tcp_syn_sent: secs(11),
        tcp_syn_recv: secs(12),
        tcp_established: secs(13),
        tcp_fin_wait: secs(14),
        tcp_close_wait: secs(15),
        tcp_last_ack: secs(16),
        tcp_time_wait: secs(17),
        tcp_close: secs(18),
        udp: secs(19),
        udp_stream: secs(20),
        icmp: secs(21),
    };
    type Setup = fn(&mut Harness);
    let cases: [(Setup, u64); 8] = [
        (
            |h| {
                send!(h, SYN => TcpSynSent);
            },
            11,
        ),
        (
            |h| {
                recv!(h, SYN_ACK => TcpSynRecv);
            },
            12,
        ),
        (
            |h| {
                send!(h, ACK => TcpEstablished);
            },
            13,
        ),
        (
            |h| {
                send!(h, FIN => TcpFinWait);
            },
            14,
        ),
        (
            |h| {
                recv!(h, ACK => TcpCloseWait);
            },
            15,
        ),
        (
            |h| {
                recv!(h, FIN => TcpLastAck);
            },
            16,
        ),
        (
            |h| {
                send!(h, ACK => TcpTimeWait);
            },
            17,
        ),
        (
            |h| {
                send!(h, RST => TcpClose);
            },
            18,
        ),
    ];
    for n in 0..cases.len() {
        let mut h = Harness::with_config(
            tcp_key(),
            ConntrackConfig {
                capacity: 16,
                timeouts: timeouts.clone(),
            },
        );
        for (setup, _) in &cases[..=n] {
            setup(&mut h);
        }
        let timeout = secs(cases[n].1);
        assert_eq!(h.remaining(), timeout, "case {n}");
        h.wait(timeout - Duration::from_millis(1));
        assert_eq!(h.ct.poll_expired(h.now), None, "case {n}: too early");
        h.wait(Duration::from_millis(1));
        let expired = h.ct.poll_expired(h.now).expect("expired");
        assert_eq!(expired.remaining, Duration::ZERO);
        assert!(h.ct.is_empty());
    }
}

#[test]
fn timeouts_are_settable_and_apply_at_the_next_packet() {
    let mut h = established();
    h.ct.set_timeouts(Timeouts {
        tcp_established: secs(300),
        ..Default::default()
    });
    assert_eq!(h.remaining(), secs(432_000));
    send!(h, ACK => TcpEstablished);
    assert_eq!(h.remaining(), secs(300));
    // The timer may wake early (at the SYN_RECV deadline it was given, a lower bound)
    // and then moves on to the real expiry: 300 s, not 5 days.
    assert!(h.ct.poll_timeout().unwrap() <= h.now + secs(300));
    assert_eq!(h.ct.poll_expired(h.now + secs(299)), None);
    assert_eq!(h.ct.poll_timeout(), Some(h.now + secs(300)));
}

#[test]
fn udp_unreplied_then_replied() {
    let key = FlowKey {
        proto: Proto::Udp,
        dst_port: 53,
        ..tcp_key()
    };
    let mut h = Harness::new(key);
    let t = h.packet(Direction::Original, None).unwrap();
    assert!(t.new);
    assert_eq!(t.state, State::Unreplied);
    assert_eq!(h.remaining(), secs(30));
    assert!(!h.info().assured);
    // More requests: still unreplied, refreshed.
    h.wait(secs(20));
    h.packet(Direction::Original, None).unwrap();
    assert_eq!(h.remaining(), secs(30));
    let t = h.packet(Direction::Reply, None).unwrap();
    assert_eq!(t.state, State::Replied);
    assert!(h.info().assured);
    assert_eq!(h.remaining(), secs(120), "udp_stream once replied");
    assert_eq!(h.ct.unassured_len(), 0);
    // TCP flags on UDP packets are ignored.
    let t = h.packet(Direction::Original, Some(RST)).unwrap();
    assert_eq!(t.state, State::Replied);
}

#[test]
fn icmp_echo_flows_are_keyed_by_identifier() {
    for (src, dst) in [
        (v4(100), v4(2)),
        (
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100).into(),
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into(),
        ),
    ] {
        let mut ct = Conntrack::new(ConntrackConfig::default());
        let ping1 = FlowKey::icmp_echo(Zone(1), src, dst, 0x1234);
        let ping2 = FlowKey::icmp_echo(Zone(1), src, dst, 0x1235);
        let a = ct.track(T0, &ping1, None, 84).unwrap();
        let b = ct.track(T0, &ping2, None, 84).unwrap();
        assert!(a.new && b.new);
        assert_ne!(a.id, b.id, "one flow per identifier");
        assert_eq!(a.state, State::Unreplied);
        let again = ct.track(T0, &ping1, None, 84).unwrap();
        assert_eq!((again.id, again.new), (a.id, false), "next sequence number");
        let reply = ct.track(T0, &ping1.reversed(), None, 84).unwrap();
        assert_eq!(reply.id, a.id);
        assert_eq!(reply.direction, Direction::Reply);
        assert_eq!(reply.state, State::Replied);
        let info = ct.entry(a.id, T0).unwrap();
        assert!(info.assured);
        assert_eq!(info.remaining, secs(30));
        assert_eq!(ct.entry(b.id, T0).unwrap().state, State::Unreplied);
    }
}

#[test]
fn zones_separate_identical_tuples() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let in_zone1 = tcp_key();
    let in_zone2 = FlowKey {
        zone: Zone(2),
        ..in_zone1
    };
    let a = ct.track(T0, &in_zone1, Some(SYN), 60).unwrap();
    let b = ct.track(T0, &in_zone2, Some(SYN), 60).unwrap();
    assert!(a.new && b.new);
    assert_ne!(a.id, b.id);
    assert_eq!(ct.len(), 2);
    let reply = ct
        .track(T0, &in_zone2.reversed(), Some(SYN_ACK), 60)
        .unwrap();
    assert_eq!(reply.id, b.id);
    assert_eq!(ct.entry(a.id, T0).unwrap().state, State::TcpSynSent);
    assert_eq!(ct.entry(b.id, T0).unwrap().state, State::TcpSynRecv);
}

#[test]
fn insert_with_a_nat_reply_tuple() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let original = tcp_key();
    // Host-socket egress: the host socket is 127.0.0.1:54321 -> 127.0.0.1:80.
    let reply = FlowKey {
        zone: Zone(1),
        proto: Proto::Tcp,
        src: Ipv4Addr::LOCALHOST.into(),
        src_port: 80,
        dst: Ipv4Addr::LOCALHOST.into(),
        dst_port: 54321,
    };
    let id = ct.insert(T0, original, reply, Some(SYN)).unwrap();
    let info = ct.entry(id, T0).unwrap();
    assert_eq!((info.original, info.reply), (original, reply));
    assert_eq!(info.state, State::TcpSynSent);
    assert_eq!(info.original_counters.packets, 0, "insert counts no packet");
    assert_eq!(ct.lookup(&original), Some((id, Direction::Original)));
    assert_eq!(ct.lookup(&reply), Some((id, Direction::Reply)));
    assert_eq!(ct.lookup(&original.reversed()), None, "not the reply tuple");

    let t = ct.track(T0, &original, Some(SYN), 60).unwrap();
    assert_eq!((t.id, t.new), (id, false));
    let t = ct.track(T0, &reply, Some(SYN_ACK), 60).unwrap();
    assert_eq!(
        (t.id, t.direction, t.state),
        (id, Direction::Reply, State::TcpSynRecv)
    );
    let t = ct.track(T0, &original, Some(ACK), 60).unwrap();
    assert_eq!(t.state, State::TcpEstablished);
    assert_eq!(
        ct.track(T0, &original.reversed(), Some(ACK), 60),
        Err(Refused::NotNew)
    );

    // Either tuple taken: clash. A non-SYN TCP insert: not new.
    let other = FlowKey {
        src_port: 40001,
        ..original
    };
    assert_eq!(ct.insert(T0, original, other, None), Err(Refused::Clash));
    assert_eq!(ct.insert(T0, other, reply, None), Err(Refused::Clash));
    assert_eq!(
        ct.insert(T0, other, other.reversed(), Some(ACK)),
        Err(Refused::NotNew)
    );
    assert!(ct.insert(T0, other, other.reversed(), None).is_ok());
    assert_eq!(ct.stats().clashes, 2);
    ct.check_invariants();
}

#[test]
fn a_flow_to_itself_has_one_tuple() {
    // src == dst and sport == dport: the reply tuple equals the original one.
    let key = FlowKey {
        proto: Proto::Udp,
        dst: v4(100),
        dst_port: 40000,
        ..tcp_key()
    };
    assert_eq!(key, key.reversed());
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let t = ct.track(T0, &key, None, 10).unwrap();
    assert!(t.new);
    let t = ct.track(T0, &key, None, 10).unwrap();
    assert_eq!(t.direction, Direction::Original);
    ct.check_invariants();
    assert!(ct.remove(t.id));
    assert_eq!(ct.lookup(&key), None);
    ct.check_invariants();
}

#[test]
fn removed_ids_go_stale_and_slots_are_reused_under_new_ids() {
    let mut ct = Conntrack::new(ConntrackConfig {
        capacity: 1,
        ..Default::default()
    });
    let key = tcp_key();
    let first = ct.track(T0, &key, Some(SYN), 60).unwrap().id;
    assert!(ct.remove(first));
    assert!(!ct.remove(first));
    assert_eq!(ct.lookup(&key), None);
    let second = ct.track(T0, &key, Some(SYN), 60).unwrap().id;
    assert_ne!(first, second, "generation bumped");
    assert_eq!(ct.entry(first, T0), None);
    assert!(ct.entry(second, T0).is_some());
    assert!(!ct.remove(FlowId(u64::MAX)));
}

#[test]
fn timer_is_lazy_about_refreshed_entries() {
    let key = FlowKey {
        proto: Proto::Udp,
        ..tcp_key()
    };
    let mut ct = Conntrack::new(ConntrackConfig::default());
    ct.track(T0, &key, None, 10).unwrap();
    assert_eq!(ct.poll_timeout(), Some(T0 + secs(30)));
    ct.track(T0 + secs(20), &key, None, 10).unwrap();
    // Refreshing did not touch the timer...
    assert_eq!(ct.poll_timeout(), Some(T0 + secs(30)));
    // ...which finds out at the old deadline and moves on.
    assert_eq!(ct.poll_expired(T0 + secs(30)), None);
    assert_eq!(ct.poll_timeout(), Some(T0 + secs(50)));
    assert!(ct.poll_expired(T0 + secs(50)).is_some());
}

#[test]
fn an_expired_but_unpolled_entry_is_refreshed_by_traffic() {
    let key = FlowKey {
        proto: Proto::Udp,
        ..tcp_key()
    };
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let id = ct.track(T0, &key, None, 10).unwrap().id;
    let late = T0 + secs(45);
    assert_eq!(ct.entry(id, late).unwrap().remaining, Duration::ZERO);
    let t = ct.track(late, &key, None, 10).unwrap();
    assert_eq!((t.id, t.new), (id, false));
    assert_eq!(ct.poll_expired(late), None);
}

#[test]
fn time_going_backwards_does_not_break_the_timer() {
    let key = FlowKey {
        proto: Proto::Udp,
        ..tcp_key()
    };
    let mut ct = Conntrack::new(ConntrackConfig::default());
    ct.track(T0, &key, None, 10).unwrap();
    ct.track(Instant::ZERO, &key, None, 10).unwrap();
    assert_eq!(ct.poll_timeout(), Some(Instant::ZERO + secs(30)));
    ct.check_invariants();
    assert!(ct.poll_expired(T0).is_some());
}

//! The bound: a full table evicts the oldest unassured flow (Linux `early_drop`), or an
//! expired one, and otherwise refuses new flows; existing flows are never lost.

use core::time::Duration;
use std::net::Ipv4Addr;

use tapnet_conntrack::{
    Conntrack, ConntrackConfig, Direction, FlowKey, Instant, Proto, Refused, State, TcpFlags, Zone,
};

const T0: Instant = Instant::from_secs(1000);

fn udp(i: u16) -> FlowKey {
    FlowKey {
        zone: Zone(1),
        proto: Proto::Udp,
        src: Ipv4Addr::new(10, 0, 2, 100).into(),
        src_port: 10_000 + i,
        dst: Ipv4Addr::new(10, 0, 2, 3).into(),
        dst_port: 53,
    }
}

fn tcp(i: u16) -> FlowKey {
    FlowKey {
        proto: Proto::Tcp,
        dst_port: 80,
        ..udp(i)
    }
}

fn table(capacity: usize) -> Conntrack {
    Conntrack::new(ConntrackConfig {
        capacity,
        ..Default::default()
    })
}

#[test]
fn a_full_table_evicts_the_oldest_unassured_flow() {
    let mut ct = table(4);
    let mut ids = Vec::new();
    for i in 0..4 {
        let now = T0 + Duration::from_secs(u64::from(i));
        ids.push(ct.track(now, &udp(i), None, 10).unwrap().id);
    }
    // Flow 0 is replied more than two seconds after it started, so it is a stream
    // (assured, as in Linux): flow 1 is now the oldest unassured one.
    ct.track(T0 + Duration::from_secs(3), &udp(0).reversed(), None, 10)
        .unwrap();
    let now = T0 + Duration::from_secs(10);
    let t = ct.track(now, &udp(4), None, 10).unwrap();
    assert!(t.new);
    assert_eq!(ct.len(), 4);
    assert_eq!(ct.lookup(&udp(1)), None, "oldest unassured evicted");
    for i in [0, 2, 3, 4] {
        assert!(ct.lookup(&udp(i)).is_some(), "flow {i} kept");
    }
    assert_eq!(ct.stats().evicted, 1);
    // The shell hears of it through poll_expired, at once.
    assert_eq!(ct.poll_timeout(), Some(Instant::ZERO));
    let evicted = ct.poll_expired(now).expect("eviction reported");
    assert_eq!(evicted.id, ids[1]);
    assert!(!evicted.assured);
    assert_eq!(evicted.remaining, Duration::from_secs(21));
    assert_eq!(ct.poll_expired(now), None);
    // A refreshed flow keeps its age: flow 2 goes next, then 3.
    ct.track(now, &udp(2), None, 10).unwrap();
    ct.track(now, &tcp(5), Some(TcpFlags::SYN), 60).unwrap();
    ct.track(now, &tcp(6), Some(TcpFlags::SYN), 60).unwrap();
    assert_eq!(ct.lookup(&udp(2)), None);
    assert_eq!(ct.lookup(&udp(3)), None);
    assert_eq!(ct.unassured_len(), 3);
    ct.check_invariants();
}

#[test]
fn a_table_full_of_assured_flows_refuses_new_ones_and_keeps_all() {
    let mut ct = table(3);
    let mut ids = Vec::new();
    for i in 0..3 {
        let key = tcp(i);
        let id = ct.track(T0, &key, Some(TcpFlags::SYN), 60).unwrap().id;
        ct.track(T0, &key.reversed(), Some(TcpFlags::SYN_ACK), 60)
            .unwrap();
        let t = ct.track(T0, &key, Some(TcpFlags::ACK), 60).unwrap();
        assert_eq!(t.state, State::TcpEstablished);
        ids.push(id);
    }
    assert_eq!(ct.unassured_len(), 0);
    let later = T0 + Duration::from_secs(3600);
    assert_eq!(
        ct.track(later, &tcp(9), Some(TcpFlags::SYN), 60),
        Err(Refused::TableFull)
    );
    assert_eq!(ct.track(later, &udp(9), None, 60), Err(Refused::TableFull));
    assert_eq!(
        ct.insert(later, udp(10), udp(10).reversed(), None),
        Err(Refused::TableFull)
    );
    assert_eq!(ct.stats().refused_full, 3);
    assert_eq!(ct.poll_expired(later), None, "nothing evicted");
    for (i, id) in (0..3).zip(&ids) {
        let t = ct.track(later, &tcp(i).reversed(), Some(TcpFlags::ACK), 60);
        assert_eq!(t.map(|t| (t.id, t.direction)), Ok((*id, Direction::Reply)));
    }
    assert_eq!(ct.len(), 3);
    // Once one closes, there is room again.
    assert!(ct.remove(ids[0]));
    assert!(ct.track(later, &tcp(9), Some(TcpFlags::SYN), 60).is_ok());
}

#[test]
fn an_expired_entry_is_reclaimed_before_an_unassured_one() {
    let mut ct = table(2);
    let a = ct.track(T0, &udp(0), None, 10).unwrap().id;
    // A reply after two seconds: a stream, assured, 120 s.
    ct.track(T0 + Duration::from_secs(3), &udp(0).reversed(), None, 10)
        .unwrap();
    let b = ct
        .track(T0 + Duration::from_secs(100), &udp(1), None, 10)
        .unwrap()
        .id; // 30 s
    // At +125 s flow a has expired (unpolled); b has 5 s left and is unassured.
    let now = T0 + Duration::from_secs(125);
    let c = ct.track(now, &udp(2), None, 10).unwrap();
    assert!(c.new);
    let reported = ct.poll_expired(now).expect("reclaimed entry reported");
    assert_eq!(reported.id, a);
    assert_eq!(reported.remaining, Duration::ZERO);
    assert!(reported.assured);
    assert!(ct.entry(b, now).is_some(), "unassured b kept");
    assert_eq!(ct.stats().evicted, 0);
    assert_eq!(ct.stats().expired, 1);
}

#[test]
fn a_zero_capacity_table_refuses_everything() {
    let mut ct = table(0);
    assert_eq!(ct.track(T0, &udp(0), None, 10), Err(Refused::TableFull));
    assert!(ct.is_empty());
    assert_eq!(ct.poll_timeout(), None);
}

use super::*;

fn budget(total: usize, per_owner: usize) -> FlowBudget {
    FlowBudget::new(BudgetConfig { total, per_owner })
}

fn admitted(a: Admission) -> BudgetSlot {
    match a {
        Admission::Admitted(s) => s,
        other => panic!("expected room, got {other:?}"),
    }
}

#[test]
fn admits_until_the_owner_bound_then_evicts_its_unreplied_flows_oldest_first() {
    let mut b = budget(100, 3);
    let a = Owner(1);
    let s1 = admitted(b.admit(a, 1, FlowKind::Datagram));
    let _s2 = admitted(b.admit(a, 2, FlowKind::Datagram));
    let _s3 = admitted(b.admit(a, 3, FlowKind::Datagram));
    b.touch(s1, false); // used, still unreplied: now the most recent
    match b.admit(a, 4, FlowKind::Datagram) {
        Admission::Evicting {
            evicted, reason, ..
        } => assert_eq!((evicted, reason), (2, Eviction::Unreplied)),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.owner_len(a), 3);
    assert_eq!(b.len(), 3);
}

#[test]
fn replied_flows_go_after_unreplied_ones_and_pinned_flows_never() {
    let mut b = budget(100, 3);
    let a = Owner(1);
    let tcp = admitted(b.admit(a, 10, FlowKind::Datagram));
    b.pin(tcp);
    let udp = admitted(b.admit(a, 11, FlowKind::Datagram));
    b.touch(udp, true);
    let fresh = admitted(b.admit(a, 12, FlowKind::Datagram));
    // The unreplied one goes first, although it is the newest.
    match b.admit(a, 13, FlowKind::Datagram) {
        Admission::Evicting {
            evicted, reason, ..
        } => {
            assert_eq!((evicted, reason), (12, Eviction::Unreplied));
        }
        other => panic!("{other:?}"),
    }
    assert!(!b.holds(fresh));
    // Then the replied one, least recently used first.
    let s13 = b.admit(a, 14, FlowKind::Datagram);
    match s13 {
        Admission::Evicting {
            evicted, reason, ..
        } => {
            assert!(
                evicted == 13,
                "unreplied 13 first, got {evicted} {reason:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn connections_being_set_up_are_evicted_after_every_datagram_flow() {
    let mut b = budget(100, 3);
    let a = Owner(1);
    let connecting = admitted(b.admit(a, 1, FlowKind::Connection));
    let replied = admitted(b.admit(a, 2, FlowKind::Datagram));
    b.touch(replied, true);
    admitted(b.admit(a, 3, FlowKind::Datagram));
    b.touch(connecting, true); // a connection stays one until it is pinned
    let order: Vec<u64> = (10..13)
        .map(|t| match b.admit(a, t, FlowKind::Connection) {
            Admission::Evicting { evicted, .. } => evicted,
            other => panic!("{other:?}"),
        })
        .collect();
    // The unreplied datagram, the replied one, then the oldest connection.
    assert_eq!(order, [3, 2, 1]);
}

#[test]
fn an_owner_full_of_pinned_flows_is_refused_and_nobody_else_pays() {
    let mut b = budget(100, 2);
    let (a, v) = (Owner(1), Owner(2));
    let victim = admitted(b.admit(v, 100, FlowKind::Datagram));
    for t in 0..2 {
        let s = admitted(b.admit(a, t, FlowKind::Datagram));
        b.pin(s);
    }
    assert_eq!(
        b.admit(a, 3, FlowKind::Datagram),
        Admission::Refused(Limit::Owner)
    );
    assert!(b.holds(victim));
    assert_eq!(b.len(), 3);
}

#[test]
fn a_full_budget_evicts_from_the_owner_that_holds_the_most() {
    let mut b = budget(5, 4);
    let (flooder, quiet, newcomer) = (Owner(1), Owner(2), Owner(3));
    let q = admitted(b.admit(quiet, 100, FlowKind::Datagram));
    for t in 0..4 {
        admitted(b.admit(flooder, t, FlowKind::Datagram));
    }
    assert_eq!(b.len(), 5);
    match b.admit(newcomer, 200, FlowKind::Datagram) {
        Admission::Evicting { evicted, .. } => assert_eq!(evicted, 0, "the flooder's oldest"),
        other => panic!("{other:?}"),
    }
    assert!(b.holds(q));
    assert_eq!(b.owner_len(flooder), 3);
}

#[test]
fn a_full_budget_of_pinned_flows_refuses_with_the_total_limit() {
    let mut b = budget(2, 2);
    for t in 0..2 {
        let s = admitted(b.admit(Owner(t), t, FlowKind::Datagram));
        b.pin(s);
    }
    assert_eq!(
        b.admit(Owner(9), 9, FlowKind::Datagram),
        Admission::Refused(Limit::Total)
    );
}

#[test]
fn shedding_takes_from_the_heaviest_owner_and_spares_pinned_flows() {
    let mut b = budget(10, 10);
    let pinned = admitted(b.admit(Owner(1), 1, FlowKind::Datagram));
    b.pin(pinned);
    let light = admitted(b.admit(Owner(2), 2, FlowKind::Datagram));
    admitted(b.admit(Owner(3), 3, FlowKind::Datagram));
    admitted(b.admit(Owner(3), 4, FlowKind::Datagram));
    assert_eq!(b.shed(), Some((3, Eviction::Unreplied)));
    assert_eq!(b.shed(), Some((4, Eviction::Unreplied)));
    assert_eq!(b.shed(), Some((2, Eviction::Unreplied)));
    assert!(!b.holds(light));
    assert_eq!(b.shed(), None);
    assert!(b.holds(pinned));
}

#[test]
fn stale_slots_are_ignored() {
    let mut b = budget(10, 10);
    let s = admitted(b.admit(Owner(1), 1, FlowKind::Datagram));
    b.release(s);
    let t = admitted(b.admit(Owner(1), 2, FlowKind::Datagram));
    // The old handle names the reused place but not the new flow.
    b.release(s);
    b.touch(s, true);
    b.pin(s);
    assert!(b.holds(t));
    assert_eq!(b.len(), 1);
}

#[test]
fn zero_bounds_admit_nothing() {
    assert_eq!(
        budget(0, 5).admit(Owner(1), 1, FlowKind::Datagram),
        Admission::Refused(Limit::Total)
    );
    assert_eq!(
        budget(5, 0).admit(Owner(1), 1, FlowKind::Datagram),
        Admission::Refused(Limit::Owner)
    );
}

mod model {
    //! The budget against a plain model: per owner, an ordered list of flows by last
    //! use; eviction takes the oldest unreplied, else the oldest replied.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Admit(u8, bool),
        Touch(u8, bool),
        Pin(u8),
        Release(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, any::<bool>()).prop_map(|(o, c)| Op::Admit(o, c)),
            3 => (any::<u8>(), any::<bool>()).prop_map(|(i, r)| Op::Touch(i, r)),
            1 => any::<u8>().prop_map(Op::Pin),
            1 => any::<u8>().prop_map(Op::Release),
        ]
    }

    #[derive(Clone, Debug)]
    struct Flow {
        token: u64,
        owner: u64,
        replied: bool,
        pinned: bool,
        connection: bool,
        slot: BudgetSlot,
    }

    proptest! {
        #[test]
        fn matches_the_model(total in 0usize..8, per_owner in 0usize..6, ops in proptest::collection::vec(op(), 0..120)) {
            let mut b = budget(total, per_owner);
            // The model: flows in order of last use (oldest first).
            let mut flows: Vec<Flow> = Vec::new();
            let mut next = 0u64;
            for op in ops {
                match op {
                    Op::Admit(owner, connection) => {
                        let owner = u64::from(owner);
                        let held = flows.iter().filter(|f| f.owner == owner).count();
                        let victim_of = |flows: &[Flow], o: u64| {
                            let mine = |f: &Flow| f.owner == o && !f.pinned;
                            flows.iter().position(|f| mine(f) && !f.connection && !f.replied)
                                .map(|i| (i, Eviction::Unreplied))
                                .or_else(|| flows.iter().position(|f| mine(f) && !f.connection)
                                    .map(|i| (i, Eviction::LeastRecentlyUsed)))
                                .or_else(|| flows.iter().position(mine)
                                    .map(|i| (i, Eviction::Unreplied)))
                        };
                        let expected = if held >= per_owner {
                            match victim_of(&flows, owner) { Some(v) => Ok(Some(v)), None => Err(Limit::Owner) }
                        } else if flows.len() >= total {
                            // The heaviest owner with an evictable flow (ties: larger id).
                            let mut owners: Vec<u64> = flows.iter().filter(|f| !f.pinned).map(|f| f.owner).collect();
                            owners.sort_unstable();
                            owners.dedup();
                            let heaviest = owners.into_iter().max_by_key(|&o| (flows.iter().filter(|f| f.owner == o).count(), o));
                            match heaviest.and_then(|o| victim_of(&flows, o)) { Some(v) => Ok(Some(v)), None => Err(Limit::Total) }
                        } else {
                            Ok(None)
                        };
                        let token = next;
                        next += 1;
                        let kind = if connection { FlowKind::Connection } else { FlowKind::Datagram };
                        let got = b.admit(Owner(owner), token, kind);
                        match (expected, got) {
                            (Err(limit), Admission::Refused(l)) => prop_assert_eq!(limit, l),
                            (Ok(None), Admission::Admitted(slot)) => flows.push(Flow { token, owner, replied: false, pinned: false, connection, slot }),
                            (Ok(Some((i, reason))), Admission::Evicting { slot, evicted, reason: r }) => {
                                prop_assert_eq!(flows[i].token, evicted);
                                prop_assert_eq!(reason, r);
                                flows.remove(i);
                                flows.push(Flow { token, owner, replied: false, pinned: false, connection, slot });
                            }
                            (e, g) => prop_assert!(false, "expected {:?}, got {:?}", e, g),
                        }
                    }
                    Op::Touch(i, replied) if !flows.is_empty() => {
                        let i = usize::from(i) % flows.len();
                        b.touch(flows[i].slot, replied);
                        if !flows[i].pinned {
                            let mut f = flows.remove(i);
                            f.replied |= replied && !f.connection;
                            flows.push(f);
                        }
                    }
                    Op::Pin(i) if !flows.is_empty() => {
                        let i = usize::from(i) % flows.len();
                        b.pin(flows[i].slot);
                        flows[i].pinned = true;
                    }
                    Op::Release(i) if !flows.is_empty() => {
                        let i = usize::from(i) % flows.len();
                        b.release(flows[i].slot);
                        flows.remove(i);
                    }
                    _ => {}
                }
                prop_assert_eq!(b.len(), flows.len());
                prop_assert!(b.len() <= total);
                for o in 0..4u64 {
                    let n = flows.iter().filter(|f| f.owner == o).count();
                    prop_assert_eq!(b.owner_len(Owner(o)), n);
                    prop_assert!(n <= per_owner);
                }
                for f in &flows {
                    prop_assert!(b.holds(f.slot));
                }
            }
        }
    }
}

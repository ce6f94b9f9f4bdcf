//! The neighbour cache shared by ARP (RFC 826, RFC 1122 2.3.2) and NDP (RFC 4861 7.3),
//! with the packets held while an address is being resolved.
//!
//! A simplified RFC 4861 state machine:
//!
//! - `Incomplete`: a request went out (broadcast ARP / multicast NS); up to
//!   [`MAX_TRIES`] requests, [`RETRY_INTERVAL`] apart; then the held packets are
//!   dropped and their senders get an ICMP host unreachable (RFC 1812 4.3.3.1,
//!   RFC 4861 7.2.2).
//! - `Reachable`: usable until `neighbour_timeout` after the last confirmation (an
//!   ARP/NDP message from the neighbour). When used in the last quarter of that time,
//!   one unicast probe is sent (RFC 1122 2.3.2.1 "unicast poll"); its answer refreshes
//!   the entry, so active neighbours never go through `Incomplete` again. Unconfirmed
//!   entries are removed by `handle_timeout`; lookups ignore them even before.
//!
//! Bounded: at most `max_neighbours` entries and `pending_per_neighbour` held packets
//! per entry.

use core::hash::Hash;
use core::time::Duration;
use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::{Instant, MacAddr};

/// Requests sent before giving up on an address.
pub(super) const MAX_TRIES: u8 = 3;
/// Time between two requests.
pub(super) const RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Who sent a held packet, to address the ICMP error if resolution fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// The uplink: the error goes back to the uplink.
    Uplink,
    /// A station of the same network (a hairpinned packet), at this MAC.
    Network(MacAddr),
}

/// A packet waiting for its destination's link-layer address: a whole frame whose
/// Ethernet header is filled in on release.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) frame: Vec<u8>,
    pub(super) origin: Origin,
}

#[derive(Debug)]
enum State {
    Reachable {
        mac: MacAddr,
        confirmed: Instant,
        probed: bool,
    },
    Incomplete {
        tries: u8,
        next: Instant,
        held: VecDeque<Held>,
    },
}

/// Result of [`NeighbourCache::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lookup {
    /// Resolved. `probe`: send a unicast refresh probe to `mac` now.
    Hit { mac: MacAddr, probe: bool },
    /// Unknown, expired, or being resolved.
    Miss,
}

/// Result of [`NeighbourCache::hold`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Hold {
    /// A new resolution started: send the first request.
    Started,
    /// Added to a resolution in progress.
    Added,
    /// No room; the packet was not kept.
    Full,
}

/// What `handle_timeout` must do for one address.
#[derive(Debug)]
pub(super) enum Due<A> {
    /// Send another request.
    Retry(A),
    /// Resolution failed: these packets are dropped.
    Failed(A, VecDeque<Held>),
}

/// Neighbour entries of one network and one address family.
#[derive(Debug)]
pub(super) struct NeighbourCache<A> {
    map: HashMap<A, State>,
}

impl<A> Default for NeighbourCache<A> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<A: Copy + Eq + Hash> NeighbourCache<A> {
    /// The link-layer address of `addr`, if resolved and confirmed within `timeout`.
    pub(super) fn lookup(&mut self, now: Instant, addr: A, timeout: Duration) -> Lookup {
        match self.map.get_mut(&addr) {
            Some(State::Reachable {
                mac,
                confirmed,
                probed,
            }) => {
                let age = now.saturating_duration_since(*confirmed);
                if age >= timeout {
                    return Lookup::Miss;
                }
                let probe = !*probed && age >= timeout / 4 * 3;
                *probed |= probe;
                Lookup::Hit { mac: *mac, probe }
            }
            _ => Lookup::Miss,
        }
    }

    /// True if there is an entry (of any state) for `addr`.
    pub(super) fn contains(&self, addr: A) -> bool {
        self.map.contains_key(&addr)
    }

    /// Records that `addr` is at `mac`, confirmed now. Creates the entry only if
    /// `create` (and there is room). Returns the packets held for it, to release, and
    /// whether an entry was created.
    pub(super) fn confirm(
        &mut self,
        now: Instant,
        addr: A,
        mac: MacAddr,
        create: bool,
        max: usize,
    ) -> (Option<VecDeque<Held>>, bool) {
        let fresh = State::Reachable {
            mac,
            confirmed: now,
            probed: false,
        };
        if let Some(state) = self.map.get_mut(&addr) {
            return match core::mem::replace(state, fresh) {
                State::Incomplete { held, .. } => (Some(held), false),
                State::Reachable { .. } => (None, false),
            };
        }
        if create && self.map.len() < max {
            self.map.insert(addr, fresh);
            return (None, true);
        }
        (None, false)
    }

    /// Holds a packet for `addr` while it is resolved.
    pub(super) fn hold(
        &mut self,
        now: Instant,
        addr: A,
        held: Held,
        per_neighbour: usize,
        max: usize,
    ) -> Hold {
        if per_neighbour == 0 {
            return Hold::Full;
        }
        let next = now + RETRY_INTERVAL;
        let len = self.map.len();
        match self.map.get_mut(&addr) {
            Some(State::Incomplete { held: queue, .. }) => {
                if queue.len() >= per_neighbour {
                    return Hold::Full;
                }
                queue.push_back(held);
                Hold::Added
            }
            Some(state) => {
                // An expired entry: resolve again.
                *state = State::Incomplete {
                    tries: 1,
                    next,
                    held: VecDeque::from([held]),
                };
                Hold::Started
            }
            None if len < max => {
                let held = VecDeque::from([held]);
                self.map.insert(
                    addr,
                    State::Incomplete {
                        tries: 1,
                        next,
                        held,
                    },
                );
                Hold::Started
            }
            None => Hold::Full,
        }
    }

    /// Advances the timers: collects retries and failures due at `now`, removes
    /// unconfirmed entries. Returns the number of entries that expired.
    pub(super) fn poll(&mut self, now: Instant, timeout: Duration, due: &mut Vec<Due<A>>) -> u64 {
        let mut expired = 0u64;
        let mut failed = Vec::new();
        self.map.retain(|&addr, state| match state {
            State::Reachable { confirmed, .. } => {
                let keep = now.saturating_duration_since(*confirmed) < timeout;
                expired += u64::from(!keep);
                keep
            }
            State::Incomplete { tries, next, held } => {
                if *next > now {
                    true
                } else if *tries >= MAX_TRIES {
                    failed.push(Due::Failed(addr, core::mem::take(held)));
                    false
                } else {
                    *tries += 1;
                    *next = now + RETRY_INTERVAL;
                    due.push(Due::Retry(addr));
                    true
                }
            }
        });
        due.append(&mut failed);
        expired
    }

    /// The earliest instant `poll` has something to do.
    pub(super) fn next_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.map
            .values()
            .map(|state| match state {
                State::Reachable { confirmed, .. } => *confirmed + timeout,
                State::Incomplete { next, .. } => *next,
            })
            .min()
    }

    /// Resolved, unexpired entries: address, MAC, age.
    pub(super) fn entries(
        &self,
        now: Instant,
        timeout: Duration,
    ) -> impl Iterator<Item = (A, MacAddr, Duration)> + '_ {
        self.map
            .iter()
            .filter_map(move |(&addr, state)| match state {
                State::Reachable { mac, confirmed, .. } => {
                    let age = now.saturating_duration_since(*confirmed);
                    (age < timeout).then_some((addr, *mac, age))
                }
                State::Incomplete { .. } => None,
            })
    }
}

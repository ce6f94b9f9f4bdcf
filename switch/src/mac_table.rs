//! The filtering database: learned (network, MAC address) -> port, with ageing and a
//! global capacity.
//!
//! Layer: sans-IO core, private to the crate; the bridge in `bridge.rs` drives it.
//! The model is the IEEE 802.1D-2004 7.8 filtering database, behaving like the Linux
//! bridge's FDB:
//!
//! - an entry is created or refreshed from the source address of every valid frame
//!   (802.1D 7.8 "learning process"), and moves to the new port when the station does;
//! - an entry not refreshed for `ageing_time` is expired: lookups ignore it at once,
//!   and a sweep removes it later (802.1D 7.9.2, "ageing time", default 300 s);
//! - the table never holds more than `capacity` learned entries over all networks. When
//!   full, expired entries are reclaimed first; failing that the new address is *not*
//!   learned, existing entries keep working and frames to the unknown station flood;
//! - pinned entries (802.1D 7.8 static filtering entries; Linux `bridge fdb add ...
//!   static`) are configured, not learned: they never age and never move, a frame
//!   from another port with a pinned address as its source is refused
//!   ([`Learned::Pinned`]), and they do not count against `capacity` (as static
//!   entries do not count against Linux's `fdb_max_learned`).
//!
//! Keys pack the network's dense slot (16 bits) and the 48-bit address into one `u64`,
//! hashed with foldhash: one multiply-fold per lookup. The map is allocated at full
//! capacity up front (up to [`PREALLOCATE_MAX`] entries), so learning on the hot path
//! does not allocate.
//!
//! Sweeps are amortised: the table tracks a lower bound on the earliest expiry of any
//! entry and sweeps (a linear pass) at most once per sweep interval, and only when
//! something may have expired.

use core::time::Duration;

use hashbrown::HashMap;

use crate::{Instant, MacAddr, PortId};

/// Most entries allocated up front; beyond this the map grows on demand (amortised).
pub(crate) const PREALLOCATE_MAX: usize = 1 << 20;

/// Longest interval between sweeps.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The key of one entry: the network's dense slot in the high 16 bits, the MAC below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MacKey(u64);

impl MacKey {
    /// The key of `mac` on the network in slot `net`.
    #[inline]
    pub(crate) fn new(net: u16, mac: MacAddr) -> Self {
        let [a, b, c, d, e, f] = mac.0;
        let [n0, n1] = net.to_be_bytes();
        Self(u64::from_be_bytes([n0, n1, a, b, c, d, e, f]))
    }

    /// The network slot.
    fn net(self) -> u16 {
        // The shift leaves exactly 16 significant bits.
        u16::try_from(self.0 >> 48).unwrap_or(u16::MAX)
    }

    /// The MAC address.
    fn mac(self) -> MacAddr {
        let [_, _, a, b, c, d, e, f] = self.0.to_be_bytes();
        MacAddr([a, b, c, d, e, f])
    }
}

/// A dynamic filtering entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MacSlot {
    /// The port the address was last seen on.
    pub(crate) port: PortId,
    /// That port's dense slot in the bridge (valid while the entry exists: removing a
    /// port removes its entries first).
    pub(crate) slot: u32,
    /// When the address was last seen as a source.
    pub(crate) last_seen: Instant,
    /// Configured, not learned: never expires, never moves.
    pub(crate) pinned: bool,
}

/// What learning one source address did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Learned {
    /// The entry existed on this port and was refreshed.
    Refreshed,
    /// A new entry was created.
    New,
    /// The entry existed (unexpired) on another port and now points to this one.
    Moved,
    /// The table is full and nothing had expired: the address was not learned.
    TableFull,
    /// Learning is off (ageing time zero: every entry would be expired at once).
    Disabled,
    /// The address is pinned to another port: not learned, and the frame must go.
    Pinned,
}

/// Why an address could not be pinned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PinnedElsewhere(pub(crate) PortId);

/// The MAC table of the whole switch.
#[derive(Debug)]
pub(crate) struct MacTable {
    map: HashMap<MacKey, MacSlot, foldhash::fast::FixedState>,
    capacity: usize,
    ageing: Duration,
    sweep_interval: Duration,
    /// No entry expires before this (a lower bound, exact right after a sweep).
    /// Meaningless while the table is empty.
    earliest_expiry: Instant,
    /// When the last sweep ran.
    last_sweep: Instant,
    /// Entries removed by sweeps so far (for `SwitchCounters::aged_out`).
    aged_out: u64,
    /// How many of the entries are pinned.
    pinned: usize,
}

impl MacTable {
    /// An empty table. `hash_seed` seeds foldhash (pick it at random to make collisions
    /// hard to provoke from chosen source addresses).
    pub(crate) fn new(capacity: usize, ageing: Duration, hash_seed: u64) -> Self {
        let hasher = foldhash::fast::FixedState::with_seed(hash_seed);
        Self {
            map: HashMap::with_capacity_and_hasher(capacity.min(PREALLOCATE_MAX), hasher),
            capacity,
            ageing,
            sweep_interval: (ageing / 10).min(MAX_SWEEP_INTERVAL),
            earliest_expiry: Instant::ZERO,
            last_sweep: Instant::ZERO,
            aged_out: 0,
            pinned: 0,
        }
    }

    /// Number of entries held, expired-but-not-yet-swept ones included.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Number of learned (not pinned) entries: what `capacity` bounds.
    #[inline]
    pub(crate) fn learned_len(&self) -> usize {
        self.map.len() - self.pinned
    }

    /// Entries removed by sweeps (expiry) since the table was created.
    pub(crate) fn aged_out(&self) -> u64 {
        self.aged_out
    }

    #[inline]
    fn is_expired(&self, entry: &MacSlot, now: Instant) -> bool {
        // 802.1D 7.9.2 / Linux `has_expired()`: expired once `last_seen + ageing <= now`.
        !entry.pinned && entry.last_seen + self.ageing <= now
    }

    /// Learns `key` as seen on `port` (dense slot `slot`) at `now`.
    #[inline]
    pub(crate) fn learn(&mut self, key: MacKey, port: PortId, slot: u32, now: Instant) -> Learned {
        let ageing = self.ageing;
        if let Some(entry) = self.map.get_mut(&key) {
            // Pinned entries exist whatever the ageing time; learned ones only with
            // learning on.
            if entry.pinned {
                if entry.slot != slot {
                    return Learned::Pinned;
                }
                entry.last_seen = now;
                return Learned::Refreshed;
            }
            let moved = entry.slot != slot && entry.last_seen + ageing > now;
            // A refresh only pushes this entry's expiry later, so `earliest_expiry`
            // stays a valid lower bound (unless time went backwards: then fix it up).
            if now + ageing < self.earliest_expiry {
                self.earliest_expiry = now + ageing;
            }
            *entry = MacSlot {
                port,
                slot,
                last_seen: now,
                pinned: false,
            };
            return if moved {
                Learned::Moved
            } else {
                Learned::Refreshed
            };
        }
        if ageing.is_zero() {
            return Learned::Disabled;
        }
        if self.learned_len() >= self.capacity {
            // Full: reclaim expired entries first, at most once per sweep interval so
            // that a flood of new addresses cannot make every frame a linear scan.
            if self.sweep_due(now) {
                self.sweep(now);
            }
            if self.learned_len() >= self.capacity {
                return Learned::TableFull;
            }
        }
        let expiry = now + ageing;
        if self.learned_len() == 0 || expiry < self.earliest_expiry {
            self.earliest_expiry = expiry;
        }
        self.map.insert(
            key,
            MacSlot {
                port,
                slot,
                last_seen: now,
                pinned: false,
            },
        );
        Learned::New
    }

    /// Pins `key` to `port` (dense slot `slot`): a static entry, replacing a learned
    /// one. Control path (it may allocate). Fails, changing nothing, when the address
    /// is pinned to another port.
    pub(crate) fn pin(
        &mut self,
        key: MacKey,
        port: PortId,
        slot: u32,
        now: Instant,
    ) -> Result<(), PinnedElsewhere> {
        self.can_pin(key, slot)?;
        let previous = self.map.insert(
            key,
            MacSlot {
                port,
                slot,
                last_seen: now,
                pinned: true,
            },
        );
        if !previous.is_some_and(|p| p.pinned) {
            self.pinned += 1;
        }
        Ok(())
    }

    /// Whether [`Self::pin`] would succeed.
    pub(crate) fn can_pin(&self, key: MacKey, slot: u32) -> Result<(), PinnedElsewhere> {
        match self.map.get(&key) {
            Some(entry) if entry.pinned && entry.slot != slot => Err(PinnedElsewhere(entry.port)),
            _ => Ok(()),
        }
    }

    /// Removes the entry of `key` if it is pinned to the port in `slot`.
    pub(crate) fn unpin(&mut self, key: MacKey, slot: u32) {
        if self
            .map
            .get(&key)
            .is_some_and(|e| e.pinned && e.slot == slot)
        {
            self.map.remove(&key);
            self.pinned -= 1;
        }
    }

    /// The unexpired entry for `key`, if any.
    #[inline]
    pub(crate) fn lookup(&self, key: MacKey, now: Instant) -> Option<&MacSlot> {
        self.map
            .get(&key)
            .filter(|entry| !self.is_expired(entry, now))
    }

    /// When the next sweep is due: `None` while the table holds no learned entry,
    /// otherwise no earlier than the earliest possible expiry and one sweep interval
    /// after the last sweep.
    #[inline]
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        if self.learned_len() == 0 {
            None
        } else {
            Some(
                self.earliest_expiry
                    .max(self.last_sweep + self.sweep_interval),
            )
        }
    }

    #[inline]
    fn sweep_due(&self, now: Instant) -> bool {
        self.next_sweep().is_some_and(|due| due <= now)
    }

    /// Sweeps if a sweep is due; returns the number of entries removed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> usize {
        if self.sweep_due(now) {
            self.sweep(now)
        } else {
            0
        }
    }

    /// Removes every expired entry and recomputes `earliest_expiry`.
    fn sweep(&mut self, now: Instant) -> usize {
        let before = self.map.len();
        let ageing = self.ageing;
        let mut earliest: Option<Instant> = None;
        self.map.retain(|_, entry| {
            if entry.pinned {
                return true;
            }
            let expiry = entry.last_seen + ageing;
            let keep = expiry > now;
            if keep {
                earliest = Some(earliest.map_or(expiry, |e| e.min(expiry)));
            }
            keep
        });
        self.earliest_expiry = earliest.unwrap_or(Instant::ZERO);
        self.last_sweep = now;
        let removed = before - self.map.len();
        self.aged_out = self.aged_out.wrapping_add(removed as u64);
        removed
    }

    /// Forgets every entry pointing to the port in `slot`, pinned ones included.
    pub(crate) fn remove_port(&mut self, slot: u32) {
        self.map.retain(|_, entry| entry.slot != slot);
        self.recount_pinned();
    }

    /// Forgets every entry of the network in slot `net`.
    pub(crate) fn remove_network(&mut self, net: u16) {
        self.map.retain(|key, _| key.net() != net);
        self.recount_pinned();
    }

    fn recount_pinned(&mut self) {
        self.pinned = self.map.values().filter(|e| e.pinned).count();
    }

    /// The unexpired entries of network `net`: (address, entry). Control path.
    pub(crate) fn entries(
        &self,
        net: u16,
        now: Instant,
    ) -> impl Iterator<Item = (MacAddr, &MacSlot)> {
        self.map
            .iter()
            .filter(move |(key, entry)| key.net() == net && !self.is_expired(entry, now))
            .map(|(key, entry)| (key.mac(), entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
    const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

    fn secs(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn key_round_trips_network_and_mac() {
        let key = MacKey::new(0xbeef, MacAddr([0xff, 1, 2, 3, 4, 0xfe]));
        assert_eq!(key.net(), 0xbeef);
        assert_eq!(key.mac(), MacAddr([0xff, 1, 2, 3, 4, 0xfe]));
        assert_ne!(MacKey::new(1, MAC_A), MacKey::new(2, MAC_A));
    }

    #[test]
    fn learns_refreshes_and_moves() {
        let mut table = MacTable::new(8, Duration::from_secs(300), 0);
        let key = MacKey::new(0, MAC_A);
        assert_eq!(table.learn(key, PortId(1), 1, secs(0)), Learned::New);
        assert_eq!(table.learn(key, PortId(1), 1, secs(1)), Learned::Refreshed);
        assert_eq!(table.learn(key, PortId(2), 2, secs(2)), Learned::Moved);
        assert_eq!(table.lookup(key, secs(2)).map(|e| e.port), Some(PortId(2)));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn expiry_is_exact_and_sweep_is_rate_limited() {
        let mut table = MacTable::new(8, Duration::from_secs(300), 0);
        let a = MacKey::new(0, MAC_A);
        let b = MacKey::new(0, MAC_B);
        table.learn(a, PortId(1), 1, secs(0));
        table.learn(b, PortId(1), 1, secs(100));
        assert_eq!(table.next_sweep(), Some(secs(300)));
        assert!(table.lookup(a, Instant::from_millis(299_999)).is_some());
        assert!(
            table.lookup(a, secs(300)).is_none(),
            "expired entries are ignored before the sweep"
        );
        assert_eq!(table.handle_timeout(secs(299)), 0);
        assert_eq!(table.handle_timeout(secs(300)), 1);
        assert_eq!(table.next_sweep(), Some(secs(400)));
        assert_eq!(table.handle_timeout(secs(400)), 1);
        assert_eq!(table.next_sweep(), None);
    }

    #[test]
    fn full_table_reclaims_expired_before_refusing() {
        let mut table = MacTable::new(1, Duration::from_secs(10), 0);
        table.learn(MacKey::new(0, MAC_A), PortId(1), 1, secs(0));
        assert_eq!(
            table.learn(MacKey::new(0, MAC_B), PortId(1), 1, secs(5)),
            Learned::TableFull
        );
        assert_eq!(
            table.learn(MacKey::new(0, MAC_B), PortId(1), 1, secs(10)),
            Learned::New
        );
        assert!(table.lookup(MacKey::new(0, MAC_A), secs(10)).is_none());
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn zero_ageing_disables_learning() {
        let mut table = MacTable::new(8, Duration::ZERO, 0);
        assert_eq!(
            table.learn(MacKey::new(0, MAC_A), PortId(1), 1, secs(0)),
            Learned::Disabled
        );
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn pinned_entries_never_move_expire_or_count_against_capacity() {
        let mut table = MacTable::new(1, Duration::from_secs(10), 0);
        let a = MacKey::new(0, MAC_A);
        table.learn(a, PortId(3), 3, secs(0));
        assert_eq!(table.pin(a, PortId(1), 1, secs(1)), Ok(()));
        assert_eq!(table.learned_len(), 0);
        assert_eq!(
            table.next_sweep(),
            None,
            "nothing learned, nothing to sweep"
        );
        assert_eq!(table.learn(a, PortId(2), 2, secs(2)), Learned::Pinned);
        assert_eq!(table.learn(a, PortId(1), 1, secs(3)), Learned::Refreshed);
        assert_eq!(
            table.pin(a, PortId(2), 2, secs(3)),
            Err(PinnedElsewhere(PortId(1)))
        );
        // The one learned entry still fits beside it.
        let b = MacKey::new(0, MAC_B);
        assert_eq!(table.learn(b, PortId(2), 2, secs(4)), Learned::New);
        assert_eq!(table.handle_timeout(secs(100)), 1);
        assert_eq!(table.lookup(a, secs(1000)).map(|e| e.port), Some(PortId(1)));
        table.unpin(a, 2);
        assert_eq!(table.len(), 1, "only the owner's slot unpins");
        table.unpin(a, 1);
        assert_eq!(table.len(), 0);
        table.pin(a, PortId(1), 1, secs(5)).unwrap();
        table.remove_port(1);
        assert_eq!((table.len(), table.learned_len()), (0, 0));
    }

    #[test]
    fn removes_by_port_and_network() {
        let mut table = MacTable::new(8, Duration::from_secs(300), 0);
        table.learn(MacKey::new(0, MAC_A), PortId(1), 1, secs(0));
        table.learn(MacKey::new(0, MAC_B), PortId(2), 2, secs(0));
        table.learn(MacKey::new(1, MAC_A), PortId(3), 3, secs(0));
        table.remove_port(1);
        assert_eq!(table.len(), 2);
        table.remove_network(0);
        assert_eq!(table.len(), 1);
        let entries: Vec<_> = table
            .entries(1, secs(1))
            .map(|(mac, e)| (mac, e.port))
            .collect();
        assert_eq!(entries, vec![(MAC_A, PortId(3))]);
    }
}

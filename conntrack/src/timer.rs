//! Expiry scheduling: an indexed binary min-heap of (deadline, slot).
//!
//! Layer: sans-IO core, private to the crate.
//!
//! Each live entry has exactly one heap item, so the heap never holds more items than
//! the table holds entries (no stale items, no compaction). The heap is touched only
//! when an entry is created or removed, when its deadline must move *earlier* (a state
//! change to a shorter timeout, e.g. RST -> CLOSE) and when an item reaches the top:
//! refreshing an entry on every packet only pushes its real expiry later, which the
//! table records in the entry itself; the stale (early) heap key is fixed lazily when it
//! pops (re-keyed to the real expiry and sifted down). So the per-packet cost stays
//! O(1) and every heap operation is O(log n).

use tapnet_wire::Instant;

/// Position of a slot that has no heap item.
const NOT_QUEUED: u32 = u32::MAX;

/// The indexed min-heap. `pos[slot]` is the index of the slot's item in `heap`.
#[derive(Debug, Default)]
pub(crate) struct Timer {
    heap: Vec<(Instant, u32)>,
    pos: Vec<u32>,
}

impl Timer {
    /// An empty heap with room for `capacity` items.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            heap: Vec::with_capacity(capacity),
            pos: Vec::with_capacity(capacity),
        }
    }

    /// Number of items.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The earliest deadline and its slot.
    #[inline]
    pub(crate) fn peek(&self) -> Option<(Instant, u32)> {
        self.heap.first().copied()
    }

    /// Schedules `slot` (which must have no item) at `deadline`.
    pub(crate) fn push(&mut self, slot: u32, deadline: Instant) {
        let s = slot as usize;
        if self.pos.len() <= s {
            self.pos.resize(s + 1, NOT_QUEUED);
        }
        debug_assert_eq!(self.pos[s], NOT_QUEUED, "slot {slot} already queued");
        let at = self.heap.len();
        self.heap.push((deadline, slot));
        self.pos[s] = index_u32(at);
        self.sift_up(at);
    }

    /// Moves the item of `slot` to `deadline` (earlier or later).
    pub(crate) fn reschedule(&mut self, slot: u32, deadline: Instant) {
        let at = self.pos[slot as usize] as usize;
        let old = self.heap[at].0;
        self.heap[at].0 = deadline;
        if deadline < old {
            self.sift_up(at);
        } else {
            self.sift_down(at);
        }
    }

    /// Removes the item of `slot`, if any.
    pub(crate) fn remove(&mut self, slot: u32) {
        let Some(&at) = self.pos.get(slot as usize) else {
            return;
        };
        if at == NOT_QUEUED {
            return;
        }
        let at = at as usize;
        self.pos[slot as usize] = NOT_QUEUED;
        let last = self.heap.len() - 1;
        if at != last {
            self.heap.swap(at, last);
            self.heap.pop();
            let moved = self.heap[at].1;
            self.pos[moved as usize] = index_u32(at);
            // The moved item may belong above or below its new place.
            self.sift_up(at);
            let at = self.pos[moved as usize] as usize;
            self.sift_down(at);
        } else {
            self.heap.pop();
        }
    }

    fn sift_up(&mut self, mut at: usize) {
        let item = self.heap[at];
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.heap[parent].0 <= item.0 {
                break;
            }
            self.heap[at] = self.heap[parent];
            self.pos[self.heap[at].1 as usize] = index_u32(at);
            at = parent;
        }
        self.heap[at] = item;
        self.pos[item.1 as usize] = index_u32(at);
    }

    fn sift_down(&mut self, mut at: usize) {
        let item = self.heap[at];
        let len = self.heap.len();
        loop {
            let left = 2 * at + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.heap[right].0 < self.heap[left].0 {
                right
            } else {
                left
            };
            if item.0 <= self.heap[child].0 {
                break;
            }
            self.heap[at] = self.heap[child];
            self.pos[self.heap[at].1 as usize] = index_u32(at);
            at = child;
        }
        self.heap[at] = item;
        self.pos[item.1 as usize] = index_u32(at);
    }

    /// Checks the heap property and the index (tests only).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        for (at, &(deadline, slot)) in self.heap.iter().enumerate() {
            assert_eq!(self.pos[slot as usize] as usize, at);
            if at > 0 {
                assert!(self.heap[(at - 1) / 2].0 <= deadline);
            }
        }
    }
}

/// A heap index as stored in `pos` (the table holds fewer than 2^31 entries).
#[inline]
fn index_u32(at: usize) -> u32 {
    u32::try_from(at).unwrap_or(NOT_QUEUED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_after_reschedules_and_removals() {
        let mut timer = Timer::with_capacity(16);
        for slot in 0..16u32 {
            timer.push(slot, Instant::from_secs(u64::from((slot * 7) % 16)));
            timer.check();
        }
        timer.reschedule(3, Instant::from_secs(100));
        timer.reschedule(9, Instant::ZERO);
        timer.remove(5);
        timer.remove(5);
        timer.check();
        assert_eq!(timer.len(), 15);
        assert_eq!(timer.peek().map(|(d, _)| d), Some(Instant::ZERO));
        let mut last = Instant::ZERO;
        while let Some((deadline, slot)) = timer.peek() {
            assert!(deadline >= last);
            last = deadline;
            timer.remove(slot);
            timer.check();
        }
        assert_eq!(last, Instant::from_secs(100));
    }
}

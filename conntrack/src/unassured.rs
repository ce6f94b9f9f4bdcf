//! The eviction order: a doubly-linked FIFO of the slots of unassured entries.
//!
//! Layer: sans-IO core, private to the crate.
//!
//! Linux's `early_drop()` frees room in a full table by dropping an entry that has not
//! got `IPS_ASSURED` (a flow that saw no reply, or a TCP handshake that never
//! completed), and never drops an assured one. We keep every unassured entry on a list
//! in creation order, so the victim is the oldest unassured flow, found in O(1); an
//! entry leaves the list in O(1) when it becomes assured or is removed. The links live
//! in a vector indexed by slot, beside the entries, so the list allocates nothing after
//! the table's slots are reserved.

/// End of the list / no neighbour.
const NIL: u32 = u32::MAX;
/// `prev` of a slot that is not on the list.
const UNLINKED: u32 = u32::MAX - 1;

/// The list. `links[slot] = (prev, next)`.
#[derive(Debug)]
pub(crate) struct Unassured {
    links: Vec<(u32, u32)>,
    head: u32,
    tail: u32,
    len: usize,
}

impl Unassured {
    /// An empty list with room for `capacity` slots.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            links: Vec::with_capacity(capacity),
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    /// Number of slots on the list.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The oldest slot on the list.
    pub(crate) fn front(&self) -> Option<u32> {
        (self.head != NIL).then_some(self.head)
    }

    /// Whether `slot` is on the list.
    pub(crate) fn contains(&self, slot: u32) -> bool {
        self.links
            .get(slot as usize)
            .is_some_and(|&(prev, _)| prev != UNLINKED)
    }

    /// Appends `slot` (the newest); moves it to the end if it is already listed.
    pub(crate) fn push_back(&mut self, slot: u32) {
        self.remove(slot);
        let s = slot as usize;
        if self.links.len() <= s {
            self.links.resize(s + 1, (UNLINKED, NIL));
        }
        self.links[s] = (self.tail, NIL);
        if self.tail == NIL {
            self.head = slot;
        } else {
            self.links[self.tail as usize].1 = slot;
        }
        self.tail = slot;
        self.len += 1;
    }

    /// Takes `slot` off the list, if it is on it.
    pub(crate) fn remove(&mut self, slot: u32) {
        if !self.contains(slot) {
            return;
        }
        let (prev, next) = self.links[slot as usize];
        if prev == NIL {
            self.head = next;
        } else {
            self.links[prev as usize].1 = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.links[next as usize].0 = prev;
        }
        self.links[slot as usize] = (UNLINKED, NIL);
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(list: &mut Unassured) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(slot) = list.front() {
            out.push(slot);
            list.remove(slot);
        }
        out
    }

    #[test]
    fn keeps_insertion_order_across_removals_and_moves() {
        let mut list = Unassured::with_capacity(8);
        for slot in [4, 1, 7, 2, 0] {
            list.push_back(slot);
        }
        list.remove(7);
        list.remove(7);
        list.remove(6);
        list.push_back(4);
        assert_eq!(list.len(), 4);
        assert!(list.contains(1) && !list.contains(7));
        assert_eq!(drain(&mut list), [1, 2, 0, 4]);
        assert_eq!(list.len(), 0);
        list.push_back(3);
        assert_eq!(drain(&mut list), [3]);
    }
}

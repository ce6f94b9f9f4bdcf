//! The flow index: open addressing with linear probing over 8-byte words, each a
//! 32-bit hash tag and a 32-bit item, 64-byte aligned so that one cache line holds 8
//! of them.
//!
//! Layer: sans-IO core, private to the crate.
//!
//! Why not hashbrown: at a million flows a lookup in `HashTable<u32>` misses the cache
//! three times in a row (the control bytes, then the bucket, then the entry the bucket
//! names, to compare the key). Here the tag and the item sit in the same word, so a
//! lookup misses once in the index and once in the entry, and the entry is read only
//! when the tag (32 bits of the keyed hash) matches.
//!
//! - A word is `tag << 32 | (item + 1)`; 0 is an empty word. Items are below
//!   `u32::MAX`.
//! - The tag is the hash's high 32 bits and also picks the home word (`tag * words /
//!   2^32`, Lemire's multiply-shift range reduction, so the table size need not be a
//!   power of two): a word alone gives its home, so removal (backward shift, no
//!   tombstones) and growth never read the entries.
//! - The load factor stays at most 1/2: the table grows (doubles) before it would pass
//!   it, so a probe always ends at an empty word, a successful one after about 1.5
//!   words and an unsuccessful one after about 2.5 (Knuth, TAOCP vol. 3, 6.4),
//!   nearly always within the home cache line.
//!
//! The hash is keyed (seeded foldhash, see `table.rs`), so tuples chosen from outside
//! cannot be made to share a home and degrade probing.

/// Eight words: one cache line.
const WORDS_PER_LINE: usize = 8;

/// A zeroed buffer of `words` words whose word `base` starts a cache line: (buffer,
/// base). `vec![0; n]` is allocated zeroed (`calloc`), so the kernel maps its pages only
/// when probes first touch them, and a large idle table costs no resident memory
/// (a `Vec` of 64-byte-aligned line structs would be written out element by element).
fn zeroed_words(words: usize) -> (Vec<u64>, usize) {
    let buf = vec![0u64; words + WORDS_PER_LINE - 1];
    let past_line_start = (buf.as_ptr().addr() / size_of::<u64>()) % WORDS_PER_LINE;
    (buf, (WORDS_PER_LINE - past_line_start) % WORDS_PER_LINE)
}

/// The index: items (`u32`, below `u32::MAX`) by 64-bit hash.
#[derive(Debug)]
pub(crate) struct Index {
    /// The words, from `base` on (see [`zeroed_words`]).
    buf: Vec<u64>,
    base: usize,
    /// Number of words: a multiple of a cache line's.
    words: usize,
    len: usize,
    /// Bumped by every change: an item found before is still where `find` would
    /// find it while the epoch is the same.
    epoch: u64,
}

impl Index {
    /// An empty index that holds `capacity` items without growing.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let words = (2 * capacity.max(1)).div_ceil(WORDS_PER_LINE) * WORDS_PER_LINE;
        let (buf, base) = zeroed_words(words);
        Self {
            buf,
            base,
            words,
            len: 0,
            epoch: 0,
        }
    }

    /// Number of items.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Changes so far (wrapping).
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Bytes per item at the highest load factor (1/2).
    pub(crate) const BYTES_PER_ITEM: usize = 2 * size_of::<u64>();

    /// The first item under `hash` for which `eq` holds.
    #[cfg(test)]
    pub(crate) fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.find_from(hash, self.home_word(hash), eq)
    }

    /// The word at the home of `hash`: loading it early, for several keys in a row,
    /// overlaps their cache misses (see [`Self::find_from`]).
    #[inline(always)]
    pub(crate) fn home_word(&self, hash: u64) -> u64 {
        self.word(home(tag(hash), self.words))
    }

    /// [`Self::find`] given the word at the home of `hash` ([`Self::home_word`], with no
    /// change to the index since).
    #[inline(always)]
    pub(crate) fn find_from(
        &self,
        hash: u64,
        home_word: u64,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Option<u32> {
        let tag = tag(hash);
        let mut at = home(tag, self.words);
        let mut word = home_word;
        loop {
            if word == 0 {
                return None;
            }
            if word_tag(word) == tag && eq(word_item(word)) {
                return Some(word_item(word));
            }
            at = self.next(at);
            word = self.word(at);
        }
    }

    /// Adds `item` under `hash` (the caller knows it is not there yet).
    pub(crate) fn insert(&mut self, hash: u64, item: u32) {
        debug_assert!(item < u32::MAX, "item {item} out of range");
        if 2 * (self.len + 1) > self.words {
            self.grow();
        }
        let word = u64::from(tag(hash)) << 32 | u64::from(item + 1);
        self.place(word);
        self.len += 1;
        self.epoch = self.epoch.wrapping_add(1);
    }

    /// Removes `item` stored under `hash`; false if it is not there.
    pub(crate) fn remove(&mut self, hash: u64, item: u32) -> bool {
        let target = u64::from(tag(hash)) << 32 | u64::from(item + 1);
        let mut at = home(tag(hash), self.words);
        loop {
            let word = self.word(at);
            if word == 0 {
                return false;
            }
            if word == target {
                break;
            }
            at = self.next(at);
        }
        // Backward shift (Knuth's Algorithm R): move later words of the run into the
        // hole when their home does not lie cyclically in (hole, their position].
        let mut hole = at;
        loop {
            at = self.next(at);
            let word = self.word(at);
            if word == 0 {
                break;
            }
            let h = home(word_tag(word), self.words);
            let stays = if hole <= at {
                hole < h && h <= at
            } else {
                hole < h || h <= at
            };
            if !stays {
                self.set(hole, word);
                hole = at;
            }
        }
        self.set(hole, 0);
        self.len -= 1;
        self.epoch = self.epoch.wrapping_add(1);
        true
    }

    /// Puts `word` in the first empty word from its home.
    fn place(&mut self, word: u64) {
        let mut at = home(word_tag(word), self.words);
        while self.word(at) != 0 {
            at = self.next(at);
        }
        self.set(at, word);
    }

    /// Doubles the table (beyond the reserved capacity only), rehoming every word.
    #[cold]
    fn grow(&mut self) {
        let (old, old_base, old_words) = (std::mem::take(&mut self.buf), self.base, self.words);
        self.words = 2 * old_words;
        (self.buf, self.base) = zeroed_words(self.words);
        for &word in old[old_base..old_base + old_words]
            .iter()
            .filter(|&&w| w != 0)
        {
            self.place(word);
        }
    }

    #[inline]
    fn word(&self, at: usize) -> u64 {
        self.buf[self.base + at]
    }

    #[inline]
    fn set(&mut self, at: usize, word: u64) {
        self.buf[self.base + at] = word;
    }

    #[inline]
    fn next(&self, at: usize) -> usize {
        if at + 1 == self.words { 0 } else { at + 1 }
    }

    /// Checks that every item is reachable from its home and the count (tests and
    /// fuzzing; O(n)).
    pub(crate) fn check(&self) {
        let mut live = 0;
        for at in 0..self.words {
            let word = self.word(at);
            if word == 0 {
                continue;
            }
            live += 1;
            // No empty word between the home and the position.
            let mut probe = home(word_tag(word), self.words);
            while probe != at {
                assert_ne!(self.word(probe), 0, "word at {at} cut off from its home");
                probe = self.next(probe);
            }
        }
        assert_eq!(live, self.len);
        assert!(2 * self.len <= self.words, "load factor over 1/2");
    }
}

#[inline]
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32
}

#[inline]
fn word_tag(word: u64) -> u32 {
    (word >> 32) as u32
}

#[inline]
fn word_item(word: u64) -> u32 {
    (word as u32).wrapping_sub(1)
}

/// The home word of `tag` in a table of `words` words (the product is taken in 128
/// bits, so any table size works).
#[inline]
fn home(tag: u32, words: usize) -> usize {
    ((u128::from(tag) * words as u128) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference model: every operation, checked against a plain list.
    #[test]
    fn matches_a_list_under_collisions() {
        let mut index = Index::with_capacity(8);
        let mut model: Vec<(u64, u32)> = Vec::new();
        // Few distinct tags and homes so runs are long and wrap around.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let hash = (state % 5) << 62 | (state % 3) << 32;
            if state.is_multiple_of(3) && !model.is_empty() {
                let (h, item) = model.swap_remove((state as usize / 3) % model.len());
                assert!(index.remove(h, item));
                assert!(!index.remove(h, item));
            } else if model.len() < 300 {
                index.insert(hash, step);
                model.push((hash, step));
            }
            index.check();
            for &(h, item) in &model {
                assert_eq!(index.find(h, |it| it == item), Some(item));
            }
            assert_eq!(index.find(hash, |it| it == u32::MAX - 1), None);
        }
    }

    #[test]
    fn extreme_tags_and_items() {
        let mut index = Index::with_capacity(1);
        for (hash, item) in [(u64::MAX, u32::MAX - 1), (0, 0), (u64::MAX, 0)] {
            index.insert(hash, item);
        }
        index.check();
        assert_eq!(index.find(u64::MAX, |it| it == 0), Some(0));
        assert_eq!(index.find(0, |it| it == 0), Some(0));
        assert_eq!(
            index.find(u64::MAX, |it| it == u32::MAX - 1),
            Some(u32::MAX - 1)
        );
        assert!(index.remove(u64::MAX, u32::MAX - 1));
        assert!(index.remove(0, 0));
        assert!(index.remove(u64::MAX, 0));
        index.check();
        assert_eq!(index.len(), 0);
    }
}

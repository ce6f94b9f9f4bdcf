//! Forwarding to the host's resolver the queries the name table does not own: each
//! forwarded query gets an ID of ours in place of the client's, so that the answer
//! finds its asker and gets the client's ID back.
//!
//! Layer: sans-IO core; the shell owns the sockets and passes the time in.
//!
//! A container must not be able to push the others' queries out: pending queries are
//! bounded in total and per client (a client at its bound has its new queries refused,
//! not the others' forgotten), they expire after a timeout, and our IDs are drawn from
//! a generator the caller seeds (RFC 5452 9.2: an unpredictable ID, so that a forged
//! answer must guess it). An answer is taken only with the QR bit set (RFC 1035
//! 4.1.1), for an ID we sent and that has not expired; anything else is dropped and
//! counted.

use core::time::Duration;
use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::Instant;

/// Bounds of the forwarder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwarderConfig {
    /// Most queries waiting for upstream at once.
    pub capacity: usize,
    /// Most queries of one client waiting at once.
    pub per_client: usize,
    /// How long a query waits for its answer.
    pub timeout: Duration,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        Self {
            capacity: 4096,
            per_client: 256,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why a query was not forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Shorter than a DNS header (12 bytes).
    Malformed,
    /// The client has its most queries waiting.
    ClientFull,
    /// The forwarder has its most queries waiting.
    Full,
}

/// Counters of the forwarder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ForwarderStats {
    pub forwarded: u64,
    pub answered: u64,
    pub expired: u64,
    pub refused_malformed: u64,
    pub refused_client_full: u64,
    pub refused_full: u64,
    /// Messages from upstream that matched no waiting query (late, forged, or not
    /// answers at all).
    pub unmatched: u64,
}

#[derive(Clone, Debug)]
struct Pending<O, C> {
    owner: O,
    reply_to: C,
    /// The client's own ID.
    id: [u8; 2],
    deadline: Instant,
}

/// The forwarder's state. `O` is whom a query is charged to (a container: the bound
/// per client applies to it), `C` where its answer goes (a socket and an address).
#[derive(Debug)]
pub struct Forwarder<O, C> {
    config: ForwarderConfig,
    pending: HashMap<u16, Pending<O, C>>,
    per_client: HashMap<O, usize>,
    /// (deadline, our ID) in the order queries were sent; deadlines only grow.
    expiry: VecDeque<(Instant, u16)>,
    rng: u64,
    stats: ForwarderStats,
}

impl<O: Clone + Eq + core::hash::Hash, C> Forwarder<O, C> {
    /// An empty forwarder whose IDs come from `seed` (draw it at random).
    pub fn new(config: ForwarderConfig, seed: u64) -> Self {
        Self {
            config,
            pending: HashMap::new(),
            per_client: HashMap::new(),
            expiry: VecDeque::new(),
            rng: seed | 1,
            stats: ForwarderStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> ForwarderStats {
        self.stats
    }

    /// Queries waiting now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queries of `client` waiting now.
    pub fn pending_of(&self, client: &O) -> usize {
        self.per_client.get(client).copied().unwrap_or(0)
    }

    /// Takes `query` (a whole DNS message) of `client`, to be answered at `reply_to`,
    /// to be sent upstream: its ID is replaced by ours in place. Refused (counted)
    /// when it is no DNS message or no room is left for it.
    pub fn forward(
        &mut self,
        now: Instant,
        client: O,
        reply_to: C,
        query: &mut [u8],
    ) -> Result<(), Refused> {
        self.handle_timeout(now);
        if query.len() < 12 {
            self.stats.refused_malformed += 1;
            return Err(Refused::Malformed);
        }
        if self.pending_of(&client) >= self.config.per_client {
            self.stats.refused_client_full += 1;
            return Err(Refused::ClientFull);
        }
        if self.pending.len() >= self.config.capacity {
            self.stats.refused_full += 1;
            return Err(Refused::Full);
        }
        let Some(id) = self.fresh_id() else {
            self.stats.refused_full += 1;
            return Err(Refused::Full);
        };
        let deadline = now + self.config.timeout;
        self.pending.insert(
            id,
            Pending {
                owner: client.clone(),
                reply_to,
                id: [query[0], query[1]],
                deadline,
            },
        );
        *self.per_client.entry(client).or_insert(0) += 1;
        self.expiry.push_back((deadline, id));
        query[..2].copy_from_slice(&id.to_be_bytes());
        self.stats.forwarded += 1;
        Ok(())
    }

    /// Takes `response` from upstream: when it answers a query waiting here, its ID
    /// becomes the client's again (in place) and where it goes is returned; otherwise
    /// it is to be dropped (`None`, counted).
    pub fn answer(&mut self, now: Instant, response: &mut [u8]) -> Option<C> {
        self.handle_timeout(now);
        let is_response = response.len() >= 12 && response[2] & 0x80 != 0;
        let id = is_response.then(|| u16::from_be_bytes([response[0], response[1]]));
        let Some(pending) = id.and_then(|id| self.pending.remove(&id)) else {
            self.stats.unmatched += 1;
            return None;
        };
        self.release(&pending.owner);
        response[..2].copy_from_slice(&pending.id);
        self.stats.answered += 1;
        Some(pending.reply_to)
    }

    /// Forgets the queries whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.expiry.front() {
            if deadline > now {
                break;
            }
            self.expiry.pop_front();
            // The ID may have been answered, and even reused for a later query.
            if self
                .pending
                .get(&id)
                .is_some_and(|p| p.deadline == deadline)
                && let Some(p) = self.pending.remove(&id)
            {
                self.release(&p.owner);
                self.stats.expired += 1;
            }
        }
        // Answered queries leave their expiry entries behind; keep those bounded.
        if self.expiry.len() > 2 * self.config.capacity.max(1) {
            let pending = &self.pending;
            self.expiry
                .retain(|&(deadline, id)| pending.get(&id).is_some_and(|p| p.deadline == deadline));
        }
    }

    /// When [`Self::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiry.front().map(|&(deadline, _)| deadline)
    }

    fn release(&mut self, client: &O) {
        if let Some(n) = self.per_client.get_mut(client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(client);
            }
        }
    }

    /// An ID no waiting query has: xorshift64*, a few tries.
    fn fresh_id(&mut self) -> Option<u16> {
        for _ in 0..64 {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let id = (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 48) as u16;
            if !self.pending.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16) -> Vec<u8> {
        let mut q = vec![0u8; 12];
        q[..2].copy_from_slice(&id.to_be_bytes());
        q[5] = 1;
        q
    }

    fn response_to(forwarded: &[u8]) -> Vec<u8> {
        let mut r = forwarded.to_vec();
        r[2] |= 0x80;
        r
    }

    fn forwarder(capacity: usize, per_client: usize) -> Forwarder<u32, u32> {
        Forwarder::new(
            ForwarderConfig {
                capacity,
                per_client,
                timeout: Duration::from_secs(5),
            },
            42,
        )
    }

    #[test]
    fn an_answer_goes_back_to_its_client_with_its_id() {
        let mut f = forwarder(16, 4);
        let now = Instant::from_secs(1);
        let mut q = query(0x1234);
        f.forward(now, 7, 7, &mut q).unwrap();
        let mut r = response_to(&q);
        assert_eq!(f.answer(now, &mut r), Some(7));
        assert_eq!(&r[..2], &0x1234u16.to_be_bytes());
        // Only once, and a query (QR clear) is no answer.
        assert_eq!(f.answer(now, &mut response_to(&q)), None);
        let mut q2 = query(1);
        f.forward(now, 7, 7, &mut q2).unwrap();
        assert_eq!(f.answer(now, &mut q2.clone()), None);
        assert_eq!(f.stats().unmatched, 2);
    }

    #[test]
    fn a_client_at_its_bound_is_refused_and_the_others_are_not() {
        let mut f = forwarder(16, 2);
        let now = Instant::from_secs(1);
        let mut victim = query(9);
        f.forward(now, 2, 2, &mut victim).unwrap();
        for i in 0..2 {
            f.forward(now, 1, 1, &mut query(i)).unwrap();
        }
        assert_eq!(
            f.forward(now, 1, 1, &mut query(3)),
            Err(Refused::ClientFull)
        );
        assert_eq!(f.answer(now, &mut response_to(&victim)), Some(2));
        assert_eq!(f.pending_of(&1), 2);
    }

    #[test]
    fn queries_expire_and_free_their_room() {
        let mut f = forwarder(2, 2);
        let t0 = Instant::from_secs(1);
        let mut q = query(5);
        f.forward(t0, 1, 1, &mut q).unwrap();
        f.forward(t0, 1, 1, &mut query(6)).unwrap();
        assert_eq!(f.forward(t0, 2, 2, &mut query(7)), Err(Refused::Full));
        let later = t0 + Duration::from_secs(6);
        assert_eq!(f.answer(later, &mut response_to(&q)), None);
        assert_eq!(f.pending(), 0);
        assert_eq!(f.stats().expired, 2);
        f.forward(later, 2, 2, &mut query(7)).unwrap();
    }

    #[test]
    fn short_messages_are_refused() {
        let mut f = forwarder(2, 2);
        assert_eq!(
            f.forward(Instant::from_secs(1), 1, 1, &mut [0u8; 11]),
            Err(Refused::Malformed)
        );
        assert_eq!(f.answer(Instant::from_secs(1), &mut [0x80u8; 11]), None);
    }
}

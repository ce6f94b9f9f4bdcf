//! Fuzzing harness for the DNS forwarder ([`super::forward`]), shared by the cargo-fuzz
//! target `fuzz/fuzz_targets/dns_forwarder.rs` and the stable corpus replay test
//! `tests/dns_fuzz_corpus.rs`. Not a stable API.
//!
//! Input: a sequence of operations, one byte each and then its arguments:
//! `0..=3`: a query from client `op & 3`: a length byte (at most 64) and that many
//! bytes; `4`: upstream answers the `n`th query sent so far (an index byte), with
//! the QR bit set or not (one more byte); `5`: upstream sends a message of its own (a
//! length byte and the bytes); `6`: time passes (a byte, quarter seconds); others:
//! ignored.
//!
//! Invariants, against a model of the waiting queries: an answer reaches exactly the
//! client whose waiting query had that ID, with the client's own ID back; nothing else
//! reaches anyone; a query is refused exactly when the model says its client or the
//! forwarder is full; waiting queries never exceed the bounds; nothing panics.

use core::time::Duration;

use super::forward::{Forwarder, ForwarderConfig, Refused};
use crate::Instant;

const CONFIG: ForwarderConfig = ForwarderConfig {
    capacity: 8,
    per_client: 3,
    timeout: Duration::from_secs(5),
};

/// A query the model knows to be waiting: our ID, its client, its own ID, its deadline.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    ours: u16,
    client: u8,
    id: [u8; 2],
    deadline: Instant,
}

/// Runs one fuzz input (see the module documentation for the format).
pub fn run(data: &[u8]) {
    let mut f: Forwarder<u8, u8> = Forwarder::new(CONFIG, 0x5eed);
    let mut model: Vec<Waiting> = Vec::new();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut now = Instant::from_secs(1);
    let mut bytes = data.iter().copied();
    while let Some(op) = bytes.next() {
        // What the forwarder forgets at `now`, the model forgets too.
        model.retain(|w| w.deadline > now);
        match op {
            0..=3 => {
                let len = usize::from(bytes.next().unwrap_or(0)).min(64);
                let mut query: Vec<u8> = bytes.by_ref().take(len).collect();
                let held = model.iter().filter(|w| w.client == op).count();
                let expected = if query.len() < 12 {
                    Err(Refused::Malformed)
                } else if held >= CONFIG.per_client {
                    Err(Refused::ClientFull)
                } else if model.len() >= CONFIG.capacity {
                    Err(Refused::Full)
                } else {
                    Ok(())
                };
                let original = [query.first().copied(), query.get(1).copied()];
                let got = f.forward(now, op, op, &mut query);
                assert_eq!(got, expected, "forward");
                if got.is_ok() {
                    let ours = u16::from_be_bytes([query[0], query[1]]);
                    assert!(model.iter().all(|w| w.ours != ours), "an ID in use twice");
                    model.push(Waiting {
                        ours,
                        client: op,
                        id: [original[0].unwrap_or(0), original[1].unwrap_or(0)],
                        deadline: now + CONFIG.timeout,
                    });
                    sent.push(query);
                }
            }
            4 => {
                let index = usize::from(bytes.next().unwrap_or(0));
                let qr = bytes.next().unwrap_or(1) & 1 == 1;
                let Some(query) = (!sent.is_empty()).then(|| sent[index % sent.len()].clone())
                else {
                    continue;
                };
                let mut response = query;
                if qr {
                    response[2] |= 0x80;
                } else {
                    response[2] &= 0x7f;
                }
                check_answer(&mut f, &mut model, now, response);
            }
            5 => {
                let len = usize::from(bytes.next().unwrap_or(0)).min(64);
                let response: Vec<u8> = bytes.by_ref().take(len).collect();
                check_answer(&mut f, &mut model, now, response);
            }
            6 => now = now + Duration::from_millis(250 * u64::from(bytes.next().unwrap_or(0))),
            _ => {}
        }
        assert!(f.pending() <= CONFIG.capacity);
        for client in 0..4 {
            assert!(f.pending_of(&client) <= CONFIG.per_client);
        }
    }
}

fn check_answer(f: &mut Forwarder<u8, u8>, model: &mut Vec<Waiting>, now: Instant, mut r: Vec<u8>) {
    let ours = (r.len() >= 12).then(|| u16::from_be_bytes([r[0], r[1]]));
    let is_answer = r.len() >= 12 && r[2] & 0x80 != 0;
    let waiting = ours
        .filter(|_| is_answer)
        .and_then(|id| model.iter().position(|w| w.ours == id));
    let got = f.answer(now, &mut r);
    match waiting {
        Some(i) => {
            let w = model.remove(i);
            assert_eq!(got, Some(w.client), "the answer's client");
            assert_eq!(&r[..2], &w.id, "the client's own ID back");
        }
        None => assert_eq!(got, None, "nobody waits for this message"),
    }
}

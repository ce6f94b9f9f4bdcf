//! Fuzzing harness for the DNS responder, shared by the cargo-fuzz target
//! `fuzz/fuzz_targets/dns_queries.rs`, the stable corpus replay test
//! `tests/dns_fuzz_corpus.rs` and the unit tests' proptests. Not a stable API.
//!
//! Input format: byte 0 selects the scope (bits 0-1), the transport (bit 2) and the
//! output buffer size (bits 3-4: 512, 12, 100 or 4096 bytes); the rest is the query.
//!
//! Invariants checked on every input:
//!
//! - no panic, whatever the bytes;
//! - a response fits the output buffer, and over UDP also 512 bytes or the query's
//!   EDNS payload size (65535 at most);
//! - a response echoes the query's id, has QR set, and (unless it is a header-only
//!   error) echoes the question byte for byte;
//! - `Drop` only for fewer bytes than a header, a response (QR set), or an output
//!   buffer too small; `Forward` only for a query that parsed;
//! - every A/AAAA record carries an address of a container on a network in scope.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::message::{HEADER_LEN, Query};
use super::{DnsVerdict, NameTable};
use crate::{NetworkId, PortId};

/// The table every fuzz input runs against: three networks, shared names, aliases,
/// an IPv6-only container and one on two networks.
pub fn table() -> NameTable {
    let mut t = NameTable::new();
    let n1 = NetworkId(1);
    let n2 = NetworkId(2);
    let n3 = NetworkId(3);
    let v4 = |c, d| Some(Ipv4Addr::new(10, c, 0, d));
    let v6 = |c: u16, d: u16| Some(Ipv6Addr::new(0xfd00, c, 0, 0, 0, 0, 0, d));
    let adds: [(NetworkId, u32, &[&str], _, _); 6] = [
        (n1, 1, &["web", "frontend", "www"], v4(1, 2), v6(1, 2)),
        (n1, 2, &["db", "store"], v4(1, 3), None),
        (n2, 3, &["web", "api"], v4(2, 2), None),
        (n2, 4, &["db"], v4(2, 3), v6(2, 3)),
        (n3, 5, &["v6only"], None, v6(3, 5)),
        (n1, 6, &["www", "a-b_c.d"], v4(1, 6), None),
    ];
    for (network, port, names, a, aaaa) in adds {
        t.add(network, PortId(port), names, a, aaaa)
            .expect("valid names");
    }
    t
}

/// Runs one fuzz input (see the module documentation for the format).
pub fn run(data: &[u8]) {
    let Some((&selector, query)) = data.split_first() else {
        return;
    };
    check(&table(), selector, query);
}

/// Answers `query` with `table` under the settings `selector` encodes, and checks the
/// invariants. Panics on a violation.
pub fn check(table: &NameTable, selector: u8, query: &[u8]) {
    let scopes: [&[NetworkId]; 4] = [
        &[NetworkId(1)],
        &[NetworkId(2), NetworkId(1)],
        &[NetworkId(3)],
        &[],
    ];
    let scope = scopes[usize::from(selector & 3)];
    let tcp = selector & 4 != 0;
    let out_len = [512, 12, 100, 4096][usize::from((selector >> 3) & 3)];
    let mut out = vec![0xa5u8; out_len];
    let verdict = if tcp {
        table.answer_tcp(query, scope, &mut out)
    } else {
        table.answer(query, scope, &mut out)
    };
    let parsed = Query::parse(query);
    match verdict {
        DnsVerdict::Drop => {
            let small_out = out_len < 512;
            assert!(
                query.len() < HEADER_LEN || query[2] & 0x80 != 0 || small_out,
                "dropped a query with a header and room to answer"
            );
        }
        DnsVerdict::Forward => {
            assert!(parsed.is_ok(), "forwarded a query that does not parse");
        }
        DnsVerdict::Answer { len } => {
            assert!(len >= HEADER_LEN && len <= out_len, "response length {len}");
            let resp = &out[..len];
            assert_eq!(resp[..2], query[..2], "id not echoed");
            assert!(resp[2] & 0x80 != 0, "QR not set");
            if let Ok(q) = &parsed {
                if !tcp {
                    let client = q.edns.map_or(512, |e| usize::from(e.payload.max(512)));
                    assert!(len <= client, "UDP response of {len} bytes over {client}");
                }
                let qend = HEADER_LEN + q.question.len();
                assert_eq!(&resp[HEADER_LEN..qend], q.question, "question not echoed");
                check_records(table, scope, resp, qend);
            }
        }
    }
}

/// Walks the answer records of a response and checks their addresses.
fn check_records(table: &NameTable, scope: &[NetworkId], resp: &[u8], mut pos: usize) {
    let ancount = u16::from_be_bytes([resp[6], resp[7]]);
    for _ in 0..ancount {
        let rr = &resp[pos..];
        assert_eq!(rr[..2], [0xc0, 0x0c], "owner is not the question's name");
        let rtype = u16::from_be_bytes([rr[2], rr[3]]);
        let rdlen = usize::from(u16::from_be_bytes([rr[10], rr[11]]));
        let rdata = &rr[12..12 + rdlen];
        let in_scope =
            |ip: std::net::IpAddr| scope.iter().any(|n| table.endpoint_at(*n, ip).is_some());
        match rtype {
            1 => {
                let ip = Ipv4Addr::from(<[u8; 4]>::try_from(rdata).expect("A rdata"));
                assert!(in_scope(ip.into()), "A {ip} not in scope");
            }
            28 => {
                let ip = Ipv6Addr::from(<[u8; 16]>::try_from(rdata).expect("AAAA rdata"));
                assert!(in_scope(ip.into()), "AAAA {ip} not in scope");
            }
            12 => {}
            other => panic!("unexpected record type {other}"),
        }
        pos += 12 + rdlen;
    }
}

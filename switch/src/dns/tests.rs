//! Responder tests: hand-built queries, `dig`-captured fixtures, and proptests that
//! arbitrary bytes never panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

const N1: NetworkId = NetworkId(1);
const N2: NetworkId = NetworkId(2);

/// `dig @127.0.0.1 Web.Example` (dig 9.18): RD|AD, EDNS payload 1232, a cookie option.
static DIG_A_EDNS: &str = "79b70120000100000000000103576562074578616d706c65000001000100002904d000000000000c000a0008c75bf121c5228d22";
/// `dig +noedns -x 10.88.0.2`: PTR 2.0.88.10.in-addr.arpa.
static DIG_PTR: &str =
    "784b012000010000000000000132013002383802313007696e2d61646472046172706100000c0001";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A query for `name` (labels split at '.'), RD set, optionally with an OPT record.
fn query(id: u16, name: &str, qtype: u16, edns: Option<(u16, u8)>) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    if let Some((payload, version)) = edns {
        q.push(0);
        q.extend_from_slice(&41u16.to_be_bytes());
        q.extend_from_slice(&payload.to_be_bytes());
        q.extend_from_slice(&[0, version, 0x80, 0, 0, 0]);
    }
    q
}

/// A decoded response, enough to check what the responder wrote.
#[derive(Debug)]
struct Response {
    id: u16,
    flags: u16,
    rcode: u8,
    question: Vec<u8>,
    answers: Vec<(u16, u32, Vec<u8>)>,
    /// (payload, TTL) of the OPT record, if any.
    opt: Option<(u16, u32)>,
}

impl Response {
    fn tc(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    fn addrs(&self) -> Vec<IpAddr> {
        self.answers
            .iter()
            .map(|(t, _, d)| match t {
                1 => IpAddr::from(<[u8; 4]>::try_from(d.as_slice()).unwrap()),
                28 => IpAddr::from(<[u8; 16]>::try_from(d.as_slice()).unwrap()),
                _ => panic!("not an address record: {t}"),
            })
            .collect()
    }
}

fn decode(resp: &[u8]) -> Response {
    let u16_at = |p: usize| u16::from_be_bytes([resp[p], resp[p + 1]]);
    let (qd, an, ns, ar) = (u16_at(4), u16_at(6), u16_at(8), u16_at(10));
    assert_eq!(ns, 0);
    let mut pos = 12;
    if qd == 1 {
        while resp[pos] != 0 {
            pos += 1 + usize::from(resp[pos]);
        }
        pos += 5;
    }
    let question = resp[12..pos].to_vec();
    let mut answers = Vec::new();
    for _ in 0..an {
        assert_eq!(resp[pos..pos + 2], [0xc0, 0x0c]);
        assert_eq!(u16_at(pos + 4), CLASS_IN);
        let ttl = u32::from_be_bytes(resp[pos + 6..pos + 10].try_into().unwrap());
        let len = usize::from(u16_at(pos + 10));
        answers.push((
            u16_at(pos + 2),
            ttl,
            resp[pos + 12..pos + 12 + len].to_vec(),
        ));
        pos += 12 + len;
    }
    let mut opt = None;
    if ar == 1 {
        assert_eq!(resp[pos], 0);
        assert_eq!(u16_at(pos + 1), 41);
        opt = Some((
            u16_at(pos + 3),
            u32::from_be_bytes(resp[pos + 5..pos + 9].try_into().unwrap()),
        ));
        assert_eq!(u16_at(pos + 9), 0);
        pos += 11;
    }
    assert_eq!(pos, resp.len(), "trailing bytes");
    Response {
        id: u16_at(0),
        flags: u16_at(2),
        rcode: resp[3] & 0x0f,
        question,
        answers,
        opt,
    }
}

fn table() -> NameTable {
    let mut t = NameTable::new();
    t.add(
        N1,
        PortId(1),
        &["web", "Frontend."],
        Some(Ipv4Addr::new(10, 1, 0, 2)),
        Some("fd00:1::2".parse().unwrap()),
    )
    .unwrap();
    t.add(
        N1,
        PortId(2),
        &["db"],
        Some(Ipv4Addr::new(10, 1, 0, 3)),
        None,
    )
    .unwrap();
    // The same container as port 1, also on network 2.
    t.add(
        N2,
        PortId(3),
        &["web", "frontend"],
        Some(Ipv4Addr::new(10, 2, 0, 2)),
        None,
    )
    .unwrap();
    t.add(
        N2,
        PortId(4),
        &["cache"],
        Some(Ipv4Addr::new(10, 2, 0, 3)),
        None,
    )
    .unwrap();
    t
}

/// Answers over UDP with a 512-byte buffer pre-filled with 0xa5, and decodes.
fn ask(t: &NameTable, q: &[u8], scope: &[NetworkId]) -> Result<Response, DnsVerdict> {
    let mut out = [0xa5u8; 512];
    match t.answer(q, scope, &mut out) {
        DnsVerdict::Answer { len } => Ok(decode(&out[..len])),
        other => Err(other),
    }
}

#[test]
fn answers_a_for_a_container_name() {
    let r = ask(&table(), &query(7, "web", TYPE_A, None), &[N1]).unwrap();
    assert_eq!(r.id, 7);
    assert_eq!(r.flags & 0x8000, 0x8000, "QR");
    assert_eq!(r.flags & 0x0400, 0x0400, "AA");
    assert_eq!(r.flags & 0x0100, 0x0100, "RD echoed");
    assert_eq!(r.rcode, 0);
    assert_eq!(r.addrs(), [IpAddr::from([10, 1, 0, 2])]);
    assert_eq!(r.answers[0].1, DEFAULT_TTL);
    assert_eq!(r.opt, None, "no OPT without one in the query");
}

#[test]
fn names_match_case_insensitively_with_or_without_trailing_dot() {
    let t = table();
    for name in ["WEB", "Web.", "frontend", "FrontEnd."] {
        let r = ask(&t, &query(1, name, TYPE_A, None), &[N1]).unwrap();
        assert_eq!(r.addrs(), [IpAddr::from([10, 1, 0, 2])], "{name}");
    }
    // The question goes back exactly as asked (0x20 case randomisation).
    let q = query(1, "wEb", TYPE_A, None);
    let r = ask(&t, &q, &[N1]).unwrap();
    assert_eq!(r.question, &q[12..]);
}

#[test]
fn answers_aaaa_and_nodata_for_a_missing_family() {
    let t = table();
    let r = ask(&t, &query(1, "web", TYPE_AAAA, None), &[N1]).unwrap();
    assert_eq!(
        r.addrs(),
        [IpAddr::from("fd00:1::2".parse::<Ipv6Addr>().unwrap())]
    );
    // db has no IPv6 address: NOERROR, no records.
    let r = ask(&t, &query(1, "db", TYPE_AAAA, None), &[N1]).unwrap();
    assert_eq!((r.rcode, r.answers.len()), (0, 0));
    // Other types of an existing name: NODATA too.
    let r = ask(&t, &query(1, "db", 16, None), &[N1]).unwrap();
    assert_eq!((r.rcode, r.answers.len()), (0, 0));
    // ANY: both families.
    let r = ask(&t, &query(1, "web", TYPE_ANY, None), &[N1]).unwrap();
    assert_eq!(r.answers.len(), 2);
}

#[test]
fn resolves_only_names_of_shared_networks_with_the_shared_address() {
    let t = table();
    // cache is only on network 2.
    assert_eq!(
        ask(&t, &query(1, "cache", TYPE_A, None), &[N1]).unwrap_err(),
        DnsVerdict::Forward
    );
    let r = ask(&t, &query(1, "cache", TYPE_A, None), &[N1, N2]).unwrap();
    assert_eq!(r.addrs(), [IpAddr::from([10, 2, 0, 3])]);
    // web is on both: the address on the first shared network of the scope.
    let r = ask(&t, &query(1, "web", TYPE_A, None), &[N2]).unwrap();
    assert_eq!(r.addrs(), [IpAddr::from([10, 2, 0, 2])]);
    let r = ask(&t, &query(1, "web", TYPE_A, None), &[N2, N1]).unwrap();
    assert_eq!(r.addrs(), [IpAddr::from([10, 2, 0, 2])]);
    // No scope (an unknown client): nothing resolves.
    assert_eq!(
        ask(&t, &query(1, "web", TYPE_A, None), &[]).unwrap_err(),
        DnsVerdict::Forward
    );
}

#[test]
fn shared_alias_returns_every_address() {
    let mut t = table();
    t.add(
        N1,
        PortId(9),
        &["db2", "db"],
        Some(Ipv4Addr::new(10, 1, 0, 9)),
        None,
    )
    .unwrap();
    let r = ask(&t, &query(1, "db", TYPE_A, None), &[N1]).unwrap();
    assert_eq!(
        r.addrs(),
        [IpAddr::from([10, 1, 0, 3]), IpAddr::from([10, 1, 0, 9])]
    );
    assert_eq!(
        t.resolve("DB.", &[N1]).unwrap().v4,
        [Ipv4Addr::new(10, 1, 0, 3), Ipv4Addr::new(10, 1, 0, 9)]
    );
}

#[test]
fn names_disappear_on_disconnect() {
    let mut t = table();
    assert!(t.remove(PortId(1)));
    assert!(!t.remove(PortId(1)));
    assert_eq!(
        ask(&t, &query(1, "web", TYPE_A, None), &[N1]).unwrap_err(),
        DnsVerdict::Forward
    );
    // Still on network 2.
    assert!(t.resolve("web", &[N2]).is_some());
    t.remove_network(N2);
    assert!(t.resolve("web", &[N2]).is_none());
    assert_eq!(t.len(), 1);
    t.remove(PortId(2));
    assert!(t.is_empty());
}

#[test]
fn re_adding_a_port_replaces_its_names() {
    let mut t = table();
    t.add(
        N1,
        PortId(2),
        &["newdb"],
        Some(Ipv4Addr::new(10, 1, 0, 3)),
        None,
    )
    .unwrap();
    assert!(t.resolve("db", &[N1]).is_none());
    assert!(t.resolve("newdb", &[N1]).is_some());
}

#[test]
fn rejects_names_it_cannot_serve() {
    let mut t = NameTable::new();
    let long = "a".repeat(64);
    for bad in ["", ".", "a..b", "sp ace", "uni\u{e9}", long.as_str()] {
        assert_eq!(
            t.add(N1, PortId(1), &[bad], None, None),
            Err(NameError::InvalidName(bad.to_owned())),
            "{bad:?}"
        );
    }
    assert!(t.is_empty());
    t.add(N1, PortId(1), &["my_app-1.svc"], None, None).unwrap();
}

#[test]
fn forwards_other_names() {
    let t = table();
    for name in ["example.com", "web.example", "", "w\u{1}b"] {
        assert_eq!(
            ask(&t, &query(1, name, TYPE_A, None), &[N1]).unwrap_err(),
            DnsVerdict::Forward,
            "{name:?}"
        );
    }
    // Class CH (version.bind and friends).
    let mut q = query(1, "web", TYPE_A, None);
    let n = q.len();
    q[n - 1] = 3;
    assert_eq!(ask(&t, &q, &[N1]).unwrap_err(), DnsVerdict::Forward);
}

#[test]
fn answers_ptr_for_container_addresses() {
    let t = table();
    let r = ask(
        &t,
        &query(1, "2.0.1.10.in-addr.arpa", TYPE_PTR, None),
        &[N1],
    )
    .unwrap();
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].0, TYPE_PTR);
    assert_eq!(r.answers[0].2, b"\x03web\x00");
    let v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa";
    let r = ask(&t, &query(1, v6, TYPE_PTR, None), &[N1]).unwrap();
    assert_eq!(r.answers[0].2, b"\x03web\x00");
    // Out of scope, unknown, partial: forwarded.
    for (name, scope) in [
        ("2.0.1.10.in-addr.arpa", &[N2][..]),
        ("99.0.1.10.in-addr.arpa", &[N1]),
        ("0.1.10.in-addr.arpa", &[N1]),
        ("256.0.1.10.in-addr.arpa", &[N1]),
    ] {
        assert_eq!(
            ask(&t, &query(1, name, TYPE_PTR, None), scope).unwrap_err(),
            DnsVerdict::Forward,
            "{name}"
        );
    }
}

#[test]
fn answers_dig_fixtures() {
    let mut t = table();
    t.add(
        N1,
        PortId(5),
        &["web.example"],
        Some(Ipv4Addr::new(10, 1, 0, 5)),
        None,
    )
    .unwrap();
    t.add(
        N1,
        PortId(6),
        &["tenant"],
        Some(Ipv4Addr::new(10, 88, 0, 2)),
        None,
    )
    .unwrap();
    let q = hex(DIG_A_EDNS);
    let r = ask(&t, &q, &[N1]).unwrap();
    assert_eq!(r.id, 0x79b7);
    assert_eq!(r.addrs(), [IpAddr::from([10, 1, 0, 5])]);
    assert_eq!(r.opt, Some((EDNS_PAYLOAD, 0)), "minimal OPT echoed");
    let r = ask(&t, &hex(DIG_PTR), &[N1]).unwrap();
    assert_eq!(r.answers[0].2, b"\x06tenant\x00");
}

#[test]
fn malformed_queries_get_formerr_or_are_dropped() {
    let t = table();
    let mut out = [0u8; 512];
    // Shorter than a header: dropped.
    assert_eq!(t.answer(&[1, 2, 3], &[N1], &mut out), DnsVerdict::Drop);
    // A response: dropped, never answered.
    let mut resp = query(1, "web", TYPE_A, None);
    resp[2] |= 0x80;
    assert_eq!(t.answer(&resp, &[N1], &mut out), DnsVerdict::Drop);
    // Two questions, none, a truncated name, a missing QTYPE, a label over 63, a
    // compression pointer in the question: FORMERR, id echoed.
    let good = query(0x1234, "web", TYPE_A, None);
    let mut two = good.clone();
    two[5] = 2;
    let mut none = good.clone();
    none[5] = 0;
    let cut = good[..15].to_vec();
    let no_type = good[..good.len() - 3].to_vec();
    let mut long = good.clone();
    long[12] = 64;
    let mut pointer = good[..12].to_vec();
    pointer.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
    for bad in [two, none, cut, no_type, long, pointer] {
        let r = ask(&t, &bad, &[N1]).unwrap();
        assert_eq!((r.id, r.rcode, r.answers.len()), (0x1234, 1, 0), "{bad:?}");
    }
    // A name over 255 octets.
    let huge = query(1, &vec!["a".repeat(63); 5].join("."), TYPE_A, None);
    assert_eq!(ask(&t, &huge, &[N1]).unwrap().rcode, 1);
    // Another opcode (IQUERY = 1, STATUS = 2, UPDATE = 5): NOTIMP, opcode echoed.
    let mut status = good.clone();
    status[2] |= 2 << 3;
    let r = ask(&t, &status, &[N1]).unwrap();
    assert_eq!((r.rcode, (r.flags >> 11) & 0xf), (4, 2));
    // An output buffer smaller than a header.
    assert_eq!(t.answer(&status, &[N1], &mut out[..11]), DnsVerdict::Drop);
}

#[test]
fn edns_opt_is_echoed_and_checked() {
    let t = table();
    let r = ask(&t, &query(1, "web", TYPE_A, Some((4096, 0))), &[N1]).unwrap();
    assert_eq!(r.opt, Some((EDNS_PAYLOAD, 0)));
    assert_eq!(r.answers.len(), 1);
    // Version 1: BADVERS (extended rcode 1 in the OPT TTL), no records.
    let r = ask(&t, &query(1, "web", TYPE_A, Some((4096, 1))), &[N1]).unwrap();
    assert_eq!((r.rcode, r.answers.len()), (0, 0));
    assert_eq!(r.opt, Some((EDNS_PAYLOAD, 1 << 24)));
    // Two OPT records: FORMERR.
    let mut q = query(1, "web", TYPE_A, Some((4096, 0)));
    let opt = q[q.len() - 11..].to_vec();
    q.extend_from_slice(&opt);
    q[11] = 2;
    assert_eq!(ask(&t, &q, &[N1]).unwrap().rcode, 1);
    // An OPT not owned by the root: FORMERR.
    let mut q = query(1, "web", TYPE_A, None);
    q[11] = 1;
    q.extend_from_slice(&[1, b'x', 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(ask(&t, &q, &[N1]).unwrap().rcode, 1);
    // Another additional record (a cookie-less TSIG-like RR) is skipped.
    let mut q = query(1, "web", TYPE_A, None);
    q[11] = 1;
    q.extend_from_slice(&[0xc0, 0x0c, 0, 250, 0, 255, 0, 0, 0, 0, 0, 2, 7, 7]);
    assert_eq!(ask(&t, &q, &[N1]).unwrap().answers.len(), 1);
}

/// A table where "many" has 40 IPv4 addresses: 40 * 16 bytes of records.
fn crowded() -> NameTable {
    let mut t = NameTable::new();
    for i in 0..40u8 {
        t.add(
            N1,
            PortId(u32::from(i)),
            &[format!("c{i}"), "many".to_owned()],
            Some(Ipv4Addr::new(10, 1, 1, i)),
            None,
        )
        .unwrap();
    }
    t
}

#[test]
fn udp_answers_over_512_bytes_are_truncated() {
    let t = crowded();
    let r = ask(&t, &query(1, "many", TYPE_A, None), &[N1]).unwrap();
    assert!(r.tc(), "TC set");
    assert!(r.answers.is_empty());
    // With EDNS 4096 it fits; over TCP too.
    let mut out = [0u8; 4096];
    let DnsVerdict::Answer { len } =
        t.answer(&query(1, "many", TYPE_A, Some((4096, 0))), &[N1], &mut out)
    else {
        panic!("no answer");
    };
    let r = decode(&out[..len]);
    assert!(!r.tc());
    assert_eq!(r.answers.len(), 40);
    let DnsVerdict::Answer { len } = t.answer_tcp(&query(1, "many", TYPE_A, None), &[N1], &mut out)
    else {
        panic!("no answer");
    };
    assert_eq!(decode(&out[..len]).answers.len(), 40);
    // An EDNS payload below 512 counts as 512 (RFC 6891 6.2.5).
    let r = ask(&t, &query(1, "many", TYPE_A, Some((100, 0))), &[N1]).unwrap();
    assert!(r.tc());
}

#[test]
fn finds_the_endpoint_of_an_address() {
    let t = table();
    assert_eq!(
        t.endpoint_at(N1, IpAddr::from([10, 1, 0, 3])),
        Some(PortId(2))
    );
    assert_eq!(t.endpoint_at(N2, IpAddr::from([10, 1, 0, 3])), None);
    assert_eq!(
        t.reverse(IpAddr::from([10, 2, 0, 2]), &[N1, N2]),
        Some("web")
    );
}

#[test]
fn fuzz_harness_accepts_the_fixtures() {
    for selector in 0..32 {
        fuzzing::check(&fuzzing::table(), selector, &hex(DIG_A_EDNS));
        fuzzing::check(&fuzzing::table(), selector, &hex(DIG_PTR));
        fuzzing::check(&crowded(), selector, &query(3, "many", TYPE_A, None));
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::run(&data);
    }

    #[test]
    fn mutated_queries_never_panic(
        selector in any::<u8>(),
        name in "[a-zA-Z0-9.-]{0,40}",
        qtype in prop_oneof![Just(1u16), Just(12), Just(28), Just(255), any::<u16>()],
        edns in proptest::option::of((any::<u16>(), 0u8..2)),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut q = query(0x4242, &name, qtype, edns);
        for (at, xor) in flips {
            let n = q.len();
            q[at % n] ^= xor;
        }
        let cut = cut % (q.len() + 1);
        fuzzing::check(&fuzzing::table(), selector, &q[..q.len().max(cut)]);
        fuzzing::check(&fuzzing::table(), selector, &q[..cut]);
    }
}

//! Fuzz harness of the NAT engine, shared by the cargo-fuzz target `nat_roundtrip` and
//! the stable corpus replay test (`nat/tests/fuzz_corpus.rs`).
//!
//! The engine has two networks (zone 1 masquerading 10.0.1.0/24, zone 2 10.0.2.0/24),
//! uplink 192.0.2.1 with a four-port range (so exhaustion and remapping happen), a
//! 64-entry table, and published ports (TCP 8080 and UDP 9000-9009 to zone 2).
//!
//! Input: a sequence of operations, each an opcode byte and its operands:
//!
//! - `0`: raw bytes (`u8` length) sent outbound from zone `byte & 3`;
//! - `1`: raw bytes (`u8` length) arriving on the uplink;
//! - `2`: a valid packet built from fields (protocol, addresses, ports, payload) sent
//!   outbound; when masqueraded, the peer's reply is built and sent back in;
//! - `3`: a valid packet from outside to a published or random port, and the
//!   container's reply when DNATed;
//! - `4`: an ICMP error from outside embedding the last masqueraded packet;
//! - `5`: time moves on (`u8` seconds × 10) and expired flows are drained.
//!
//! Invariants: nothing panics; a dropped or untouched packet is unchanged; a valid
//! packet that is rewritten carries valid checksums equal to a full recomputation;
//! NAT followed by reverse NAT gives back the original addresses and ports; a
//! translated ICMP error embeds the original packet.

use std::net::Ipv4Addr;

use tapnet_conntrack::{ConntrackConfig, Proto, Zone};
use tapnet_wire::Instant;
use tapnet_wire::checksum;

use crate::{Nat, NatConfig, NatVerdict, Network, PortRange, PublishRule};

const UPLINK: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let len = len.min(self.0.len());
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        head.to_vec()
    }
}

/// Builds a valid IPv4 packet (all checksums right): TCP (flags `tcp_flags`), UDP, or
/// an ICMP echo request/reply whose identifier is `sp`.
#[allow(clippy::too_many_arguments)]
fn build(
    proto: Proto,
    src: Ipv4Addr,
    sp: u16,
    dst: Ipv4Addr,
    dp: u16,
    payload: &[u8],
    tcp_flags: u8,
    request: bool,
) -> Vec<u8> {
    let mut l4 = match proto {
        Proto::Tcp => {
            let mut h = vec![0u8; 20];
            h[0..2].copy_from_slice(&sp.to_be_bytes());
            h[2..4].copy_from_slice(&dp.to_be_bytes());
            h[12] = 5 << 4;
            h[13] = tcp_flags;
            h[14] = 0xff;
            h
        }
        Proto::Udp => {
            let mut h = vec![0u8; 8];
            h[0..2].copy_from_slice(&sp.to_be_bytes());
            h[2..4].copy_from_slice(&dp.to_be_bytes());
            let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
            h[4..6].copy_from_slice(&len.to_be_bytes());
            h
        }
        Proto::IcmpEcho => {
            let mut h = vec![if request { 8 } else { 0 }, 0, 0, 0, 0, 0, 0, 1];
            h[4..6].copy_from_slice(&sp.to_be_bytes());
            h
        }
    };
    l4.extend_from_slice(payload);
    let protocol = proto.ip_protocol(false);
    let ck = match proto {
        Proto::IcmpEcho => checksum::checksum(&l4),
        _ => checksum::upper_layer(checksum::pseudo_v4(src, dst, protocol, l4.len()), &l4),
    };
    let at = match proto {
        Proto::Tcp => 16,
        Proto::Udp => 6,
        Proto::IcmpEcho => 2,
    };
    l4[at..at + 2].copy_from_slice(&ck.to_be_bytes());
    ip(src, dst, protocol, &l4)
}

fn ip(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + l4.len()).unwrap_or(u16::MAX);
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, protocol, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let ck = checksum::checksum(&p);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

/// (src, src port, dst, dst port) of a packet `build` made (echo: the identifier).
fn tuple(p: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    let word = |at: usize| u16::from_be_bytes([p[20 + at], p[21 + at]]);
    if p[9] == 1 {
        (src, word(4), dst, word(4))
    } else {
        (src, word(0), dst, word(2))
    }
}

/// Every checksum of a packet `build` made verifies, and equals a recomputation up to
/// the two forms of one's-complement zero.
fn check_checksums(p: &[u8]) {
    assert!(checksum::verifies(&p[..20]), "IPv4 header checksum");
    let mut header = p[..20].to_vec();
    header[10..12].fill(0);
    assert_eq!(checksum::checksum(&header).to_be_bytes(), [p[10], p[11]]);
    let l4 = &p[20..];
    let (src, _, dst, _) = tuple(p);
    match p[9] {
        1 => assert!(checksum::verifies(l4), "ICMP checksum"),
        17 if l4[6..8] == [0, 0] => {}
        proto => {
            let sum = checksum::add(checksum::pseudo_v4(src, dst, proto, l4.len()), l4);
            assert_eq!(checksum::fold(sum), 0xffff, "transport checksum");
        }
    }
}

fn engine() -> Nat {
    let mut nat = Nat::new(NatConfig {
        uplink_addr: UPLINK,
        port_range: PortRange::new(40000, 40003),
        conntrack: ConntrackConfig {
            capacity: 64,
            ..Default::default()
        },
        ..Default::default()
    });
    for (zone, c, masquerade) in [(1, 1, true), (2, 2, false)] {
        let _ = nat.add_network(Network {
            zone: Zone(zone),
            subnet: Ipv4Addr::new(10, 0, c, 0),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, c, 1),
            masquerade,
        });
    }
    for (proto, ports, port) in [
        (Proto::Tcp, PortRange::single(8080), 80),
        (Proto::Udp, PortRange::new(9000, 9009), 7000),
    ] {
        let _ = nat.publish(PublishRule {
            proto,
            external_addr: Ipv4Addr::UNSPECIFIED,
            external_ports: ports,
            zone: Zone(2),
            internal_addr: Ipv4Addr::new(10, 0, 2, 2),
            internal_port: port,
        });
    }
    nat
}

fn proto_of(byte: u8) -> Proto {
    match byte % 3 {
        0 => Proto::Tcp,
        1 => Proto::Udp,
        _ => Proto::IcmpEcho,
    }
}

/// Whether the packet embedded in an ICMP error came back as it left: byte for byte,
/// except that its IPv4 header checksum and its TCP or ICMP checksum may have turned
/// from 0x0000 into 0xffff or back. Both are one's-complement zero and verify alike
/// (RFC 1624 3: an incremental update may yield either); UDP's checksum is compared
/// exactly, since there 0 means "none" (RFC 768) and the NAT never writes it.
fn restored(got: &[u8], sent: &[u8]) -> bool {
    if got.len() != sent.len() {
        return false;
    }
    let ihl = usize::from(sent.first().map_or(0, |b| b & 0x0f)) * 4;
    let l4_checksum = match sent.get(9) {
        Some(6) => Some(ihl + 16),
        Some(1) => Some(ihl + 2),
        _ => None,
    };
    let either_zero = |at: usize| {
        let (a, b) = (got.get(at..at + 2), sent.get(at..at + 2));
        matches!(
            (a, b),
            (Some([0, 0]), Some([0xff, 0xff])) | (Some([0xff, 0xff]), Some([0, 0]))
        )
    };
    (0..got.len()).all(|i| {
        got[i] == sent[i]
            || [Some(10), l4_checksum]
                .into_iter()
                .flatten()
                .any(|at| (at..at + 2).contains(&i) && either_zero(at))
    })
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let mut nat = engine();
    let mut now = Instant::from_secs(1);
    // The last masqueraded packet: before and after translation.
    let mut last: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut steps = 0;
    while !input.0.is_empty() && steps < 256 {
        steps += 1;
        match input.byte() % 6 {
            op @ (0 | 1) => {
                let zone = Zone(u16::from(input.byte() & 3));
                let len = usize::from(input.byte());
                let bytes = input.bytes(len);
                let mut p = bytes.clone();
                let verdict = if op == 0 {
                    nat.handle_outbound(now, zone, &mut p)
                } else {
                    nat.handle_inbound(now, &mut p)
                };
                if matches!(verdict, NatVerdict::Drop(_) | NatVerdict::Untouched) {
                    assert_eq!(p, bytes, "a dropped or untouched packet changed");
                }
            }
            2 => {
                let proto = proto_of(input.byte());
                let src = Ipv4Addr::new(10, 0, 1, input.byte() % 4 + 2);
                let sp = input.u16();
                let dst = Ipv4Addr::new(198, 51, 100, input.byte() % 4);
                let dp = input.u16();
                let len = usize::from(input.byte() % 32);
                let payload = input.bytes(len);
                let request = build(proto, src, sp, dst, dp, &payload, 0x02, true);
                let mut out = request.clone();
                if nat.handle_outbound(now, Zone(1), &mut out) != NatVerdict::ToUplink {
                    assert_eq!(out, request);
                    continue;
                }
                check_checksums(&out);
                let (s, mapped, d, _) = tuple(&out);
                assert_eq!((s, d), (UPLINK, dst));
                let reply_dp = if proto == Proto::IcmpEcho { mapped } else { dp };
                let mut reply = build(proto, dst, reply_dp, UPLINK, mapped, &payload, 0x12, false);
                assert_eq!(
                    nat.handle_inbound(now, &mut reply),
                    NatVerdict::ToZone(Zone(1))
                );
                check_checksums(&reply);
                let (rs, rsp, rd, rdp) = tuple(&reply);
                let back_sp = if proto == Proto::IcmpEcho { sp } else { dp };
                assert_eq!((rs, rsp, rd, rdp), (dst, back_sp, src, sp), "reverse NAT");
                last = Some((request, out));
            }
            3 => {
                let proto = proto_of(input.byte());
                let client = Ipv4Addr::new(203, 0, 113, input.byte() % 4);
                let cp = input.u16();
                let dp = match input.byte() % 3 {
                    0 => 8080,
                    1 => 9000 + u16::from(input.byte() % 12),
                    _ => input.u16(),
                };
                let len = usize::from(input.byte() % 32);
                let payload = input.bytes(len);
                let packet = build(proto, client, cp, UPLINK, dp, &payload, 0x02, true);
                let mut p = packet.clone();
                let verdict = nat.handle_inbound(now, &mut p);
                let NatVerdict::ToZone(zone) = verdict else {
                    assert_eq!(p, packet);
                    continue;
                };
                check_checksums(&p);
                let (_, _, target, tp) = tuple(&p);
                let mut reply = build(proto, target, tp, client, cp, &payload, 0x12, false);
                assert_eq!(
                    nat.handle_outbound(now, zone, &mut reply),
                    NatVerdict::ToUplink
                );
                check_checksums(&reply);
                let (rs, rsp, rd, rdp) = tuple(&reply);
                assert_eq!((rs, rsp, rd, rdp), (UPLINK, dp, client, cp), "reverse DNAT");
            }
            4 => {
                let Some((request, out)) = &last else {
                    continue;
                };
                let (_, _, peer, _) = tuple(out);
                let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
                icmp.extend_from_slice(out);
                let ck = checksum::checksum(&icmp);
                icmp[2..4].copy_from_slice(&ck.to_be_bytes());
                let mut err = ip(peer, UPLINK, 1, &icmp);
                // The flow may have been evicted and its port reused since: then the
                // error belongs to the new flow.
                let (src, sp, dst, dp) = tuple(request);
                let proto = proto_of(match request[9] {
                    6 => 0,
                    17 => 1,
                    _ => 2,
                });
                let key = tapnet_conntrack::FlowKey {
                    zone: Zone(1),
                    proto,
                    src: src.into(),
                    src_port: sp,
                    dst: dst.into(),
                    dst_port: dp,
                };
                let same_flow = nat.conntrack().lookup(&key).is_some();
                if let NatVerdict::ToZone(_) = nat.handle_inbound(now, &mut err) {
                    assert!(checksum::verifies(&err[..20]), "outer header checksum");
                    assert!(checksum::verifies(&err[20..]), "ICMP checksum");
                    if same_flow {
                        assert!(
                            restored(&err[28..], request),
                            "embedded packet restored: {:?} vs {request:?}",
                            &err[28..]
                        );
                    }
                }
            }
            _ => {
                now = now + core::time::Duration::from_secs(u64::from(input.byte()) * 10);
                while nat.poll_expired(now).is_some() {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_scripted_input_runs() {
        // Masquerade, published flow, ICMP error, time, raw junk.
        let data = [
            2, 0, 2, 0x9c, 0x40, 1, 0, 53, 4, b'a', b'b', b'c', b'd', 3, 1, 1, 0x30, 0x39, 1, 5, 2,
            1, 2, 3, 4, 5, 0, 3, 1, 0, 4, 0x45, 0, 0, 20, 1, 1, 4, 1, 2, 3, 4,
        ];
        super::run(&data);
    }
}

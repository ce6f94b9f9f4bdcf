//! What the property tests of the fast paths share.

use std::net::Ipv4Addr;

use tapnet_conntrack::{FlowKey, Proto, TcpFlags, Zone};

/// Packet `n` of a small alphabet: few keys (so that flows meet), both directions.
pub(crate) fn packet(n: u8, flags: u8) -> (FlowKey, Option<TcpFlags>, usize) {
    let proto = match n % 3 {
        0 => Proto::Tcp,
        1 => Proto::Udp,
        _ => Proto::IcmpEcho,
    };
    let host = (n / 3) % 6;
    let key = FlowKey {
        zone: Zone(1),
        proto,
        src: Ipv4Addr::new(10, 0, 0, 10 + host).into(),
        src_port: 40000,
        dst: Ipv4Addr::new(10, 0, 0, 2).into(),
        dst_port: if proto == Proto::IcmpEcho { 40000 } else { 80 },
    };
    let key = if n & 0x80 != 0 { key.reversed() } else { key };
    let tcp = (proto == Proto::Tcp).then_some(TcpFlags {
        fin: flags & 1 != 0,
        syn: flags & 2 != 0,
        rst: flags & 4 != 0,
        ack: flags & 8 != 0,
    });
    (key, tcp, 100)
}

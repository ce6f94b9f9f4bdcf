//! IPv4 (RFC 791, RFC 1812): validation, local delivery to the router's own addresses,
//! forwarding to the uplink and back into the network, ICMP errors (RFC 792) and
//! fragmentation.
//!
//! Order of the checks for a frame from a network, after the header is validated
//! (version, IHL >= 5, total length within the frame, header checksum; RFC 1812
//! 5.2.2): DHCP to the server; source address sanity; broadcast/multicast destinations
//! (not routed, RFC 1812 5.3.5); the router's own addresses; the network's own subnet
//! (hairpin); longest-prefix match, where another network's subnet is `NoRoute`
//! (isolation) and the default route is the uplink. Forwarding then checks the TTL
//! (time exceeded), `egress` (administratively prohibited), and the egress MTU
//! (fragmentation needed with DF, RFC 1191; RFC 791 fragmentation without).
//!
//! The forwarding fast path does not allocate: the TTL is decremented in place and the
//! header checksum updated incrementally (RFC 1624).

use std::net::Ipv4Addr;

use tapnet_wire::EtherType;

use super::arp::{self, Delivery};
use super::counters::bump;
use super::neighbour::Origin;
use super::{
    Cx, Hop, Net, RouterDrop, RouterVerdict, TransmitTo, UplinkVerdict, dhcp, mac_at,
    write_ethernet,
};
use tapnet_wire::checksum;
use tapnet_wire::ip::decrement_ttl_v4;

pub(super) const PROTO_ICMP: u8 = 1;
pub(super) const PROTO_TCP: u8 = 6;
pub(super) const PROTO_UDP: u8 = 17;

/// Largest ICMP error datagram (RFC 1812 4.3.2.3: no more than 576 bytes).
const ICMP_ERROR_MAX: usize = 576;
/// TTL of packets the router originates (RFC 1700's recommended default).
const DEFAULT_TTL: u8 = 64;

/// The fields of a validated IPv4 header.
#[derive(Clone, Copy, Debug)]
pub(super) struct V4 {
    /// Header length in bytes.
    pub(super) ihl: usize,
    /// Total length in bytes.
    pub(super) total: usize,
    pub(super) proto: u8,
    pub(super) ttl: u8,
    pub(super) src: Ipv4Addr,
    pub(super) dst: Ipv4Addr,
    pub(super) df: bool,
    mf: bool,
    offset: u16,
}

impl V4 {
    pub(super) fn is_fragment(&self) -> bool {
        self.mf || self.offset != 0
    }
}

pub(super) fn ipv4_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

/// Validates an IPv4 header (RFC 1812 5.2.2) at the start of `ip`.
pub(super) fn parse(ip: &[u8]) -> Result<V4, RouterDrop> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return Err(RouterDrop::Malformed);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ihl < 20 || total < ihl || total > ip.len() {
        return Err(RouterDrop::Malformed);
    }
    if !checksum::verifies(&ip[..ihl]) {
        return Err(RouterDrop::BadChecksum);
    }
    Ok(V4 {
        ihl,
        total,
        proto: ip[9],
        ttl: ip[8],
        src: ipv4_at(ip, 12),
        dst: ipv4_at(ip, 16),
        df: ip[6] & 0x40 != 0,
        mf: ip[6] & 0x20 != 0,
        offset: u16::from_be_bytes([ip[6] & 0x1f, ip[7]]),
    })
}

/// A source address that must not be forwarded or answered (RFC 1812 5.3.7):
/// 0.0.0.0/8, loopback, multicast, limited broadcast, class E.
pub(super) fn is_bad_source(ip: Ipv4Addr) -> bool {
    let first = ip.octets()[0];
    first == 0 || first == 127 || first >= 224
}

/// A destination that is never routed: 0.0.0.0/8, loopback, class E (but not the
/// limited broadcast, which is handled as a broadcast).
fn is_bad_destination(ip: Ipv4Addr) -> bool {
    let first = ip.octets()[0];
    first == 0 || first == 127 || (first >= 240 && !ip.is_broadcast())
}

/// RFC 792 error types (and unknown types, as Linux treats them): never answered with
/// an error (RFC 1812 4.3.2.7).
fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 4 | 5 | 11 | 12) || icmp_type > 18
}

/// Writes a 20-byte IPv4 header (no options, ID 0, DF clear) with its checksum.
pub(super) fn write_header(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload_len: usize,
    tos: u8,
) {
    let total = u16::try_from(20 + payload_len).unwrap_or(u16::MAX);
    buf[0] = 0x45;
    buf[1] = tos;
    buf[2..4].copy_from_slice(&total.to_be_bytes());
    buf[4..10].copy_from_slice(&[0, 0, 0, 0, DEFAULT_TTL, proto]);
    buf[10..12].copy_from_slice(&[0, 0]);
    buf[12..16].copy_from_slice(&src.octets());
    buf[16..20].copy_from_slice(&dst.octets());
    let ck = checksum::checksum(&buf[..20]);
    buf[10..12].copy_from_slice(&ck.to_be_bytes());
}

/// The 4 bytes after the ICMP checksum of a "fragmentation needed" message: unused,
/// then the next-hop MTU (RFC 1191 section 4).
fn mtu_field(mtu: usize) -> [u8; 4] {
    let [hi, lo] = u16::try_from(mtu).unwrap_or(u16::MAX).to_be_bytes();
    [0, 0, hi, lo]
}

/// An IPv4 frame delivered to the gateway port (`group`: sent to a multicast or
/// broadcast MAC).
pub(super) fn handle_frame(
    cx: &mut Cx<'_>,
    net: &mut Net,
    frame: &mut [u8],
    group: bool,
) -> RouterVerdict {
    let Some(v4) = &net.cfg.v4 else {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    };
    let (gateway, dhcp_on) = (v4.gateway, v4.dhcp.is_some());
    let h = match parse(&frame[14..]) {
        Ok(h) => h,
        Err(reason) => return RouterVerdict::Drop(reason),
    };
    let end = 14 + h.total;
    let src_mac = mac_at(frame, 6);

    // DHCP to the server (RFC 2131 4.1): broadcast, or unicast to its address when
    // renewing; UDP port 67.
    if h.proto == PROTO_UDP
        && dhcp_on
        && !h.is_fragment()
        && (h.dst.is_broadcast() || h.dst == gateway)
        && frame.get(14 + h.ihl + 2..14 + h.ihl + 4) == Some(&67u16.to_be_bytes()[..])
    {
        return dhcp::handle(cx, net, &frame[..end], &h);
    }
    // RFC 1812 5.3.7; a source that is one of our own addresses is spoofed (Linux:
    // "martian source").
    if is_bad_source(h.src) || net.is_own_v4(h.src) {
        return RouterVerdict::Drop(RouterDrop::InvalidAddress);
    }
    if group || h.dst.is_multicast() || h.dst.is_broadcast() || net.is_subnet_broadcast_v4(h.dst) {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    }
    if is_bad_destination(h.dst) {
        return RouterVerdict::Drop(RouterDrop::InvalidAddress);
    }
    if net.is_own_v4(h.dst) {
        return local(cx, net, frame, &h, src_mac);
    }
    if net.in_subnet_v4(h.dst) {
        return hairpin(cx, net, frame, &h, src_mac);
    }
    match cx.routes.lookup_v4(h.dst) {
        // Another network's subnet: isolated, dropped silently as Docker's
        // DOCKER-ISOLATION chains do.
        Hop::Network(_) => RouterVerdict::Drop(RouterDrop::NoRoute),
        Hop::Uplink => forward(cx, net, frame, &h, src_mac),
    }
}

/// Forwarding to the uplink.
fn forward(
    cx: &mut Cx<'_>,
    net: &mut Net,
    frame: &mut [u8],
    h: &V4,
    src_mac: crate::MacAddr,
) -> RouterVerdict {
    let end = 14 + h.total;
    let origin = Origin::Network(src_mac);
    // RFC 1812 5.3.1: a TTL that would reach zero is time exceeded in transit.
    if h.ttl <= 1 {
        icmp_error(cx, net, &frame[14..end], false, 11, 0, [0; 4], origin);
        return RouterVerdict::Drop(RouterDrop::TtlExceeded);
    }
    if !net.cfg.egress {
        // RFC 1812 5.2.7.1: code 13, communication administratively prohibited.
        icmp_error(cx, net, &frame[14..end], false, 3, 13, [0; 4], origin);
        return RouterVerdict::Drop(RouterDrop::EgressDenied);
    }
    let mtu = usize::try_from(cx.cfg.uplink_mtu).unwrap_or(usize::MAX);
    if cx.wire_len(&frame[14..end], h.total, h.proto, h.ihl) > mtu {
        if h.df {
            icmp_error(
                cx,
                net,
                &frame[14..end],
                false,
                3,
                4,
                mtu_field(mtu),
                origin,
            );
            return RouterVerdict::Drop(RouterDrop::TooBig);
        }
        decrement_ttl_v4(&mut frame[14..end]);
        cx.complete_in_place(&mut frame[..end]);
        let fragments = fragment(&frame[14..end], mtu, 0);
        if fragments.is_empty() {
            return RouterVerdict::Drop(RouterDrop::TooBig);
        }
        for f in fragments {
            bump!(cx.out.counters.fragments_created);
            cx.out.push(net.id, TransmitTo::Uplink, f);
        }
        return RouterVerdict::Consumed;
    }
    decrement_ttl_v4(&mut frame[14..end]);
    RouterVerdict::Uplink { packet: 14..end }
}

/// A packet for a station of the network itself, sent to the gateway MAC: forwarded
/// back into the network, as Linux does (without the optional ICMP redirect).
fn hairpin(
    cx: &mut Cx<'_>,
    net: &mut Net,
    frame: &mut [u8],
    h: &V4,
    src_mac: crate::MacAddr,
) -> RouterVerdict {
    let end = 14 + h.total;
    let origin = Origin::Network(src_mac);
    if h.ttl <= 1 {
        icmp_error(cx, net, &frame[14..end], false, 11, 0, [0; 4], origin);
        return RouterVerdict::Drop(RouterDrop::TtlExceeded);
    }
    let mtu = net.mtu();
    let too_big = cx.wire_len(&frame[14..end], h.total, h.proto, h.ihl) > mtu;
    if too_big && h.df {
        icmp_error(
            cx,
            net,
            &frame[14..end],
            false,
            3,
            4,
            mtu_field(mtu),
            origin,
        );
        return RouterVerdict::Drop(RouterDrop::TooBig);
    }
    bump!(cx.out.counters.hairpinned);
    decrement_ttl_v4(&mut frame[14..end]);
    if too_big {
        cx.complete_in_place(&mut frame[..end]);
        let fragments = fragment(&frame[14..end], mtu, 14);
        if fragments.is_empty() {
            return RouterVerdict::Drop(RouterDrop::TooBig);
        }
        for f in fragments {
            bump!(cx.out.counters.fragments_created);
            arp::deliver_owned(cx, net, h.dst, f, origin);
        }
        return RouterVerdict::Consumed;
    }
    match arp::deliver(cx, net, h.dst, &mut frame[..end], origin) {
        Delivery::Sent(len) => RouterVerdict::Reply { len },
        Delivery::Queued => RouterVerdict::Consumed,
        Delivery::Dropped(reason) => RouterVerdict::Drop(reason),
    }
}

/// A packet to one of the router's own addresses.
fn local(
    cx: &mut Cx<'_>,
    net: &mut Net,
    frame: &mut [u8],
    h: &V4,
    src_mac: crate::MacAddr,
) -> RouterVerdict {
    let end = 14 + h.total;
    let to_uplink = net.cfg.own_addresses_to_uplink;
    // Local delivery: the TTL is left alone.
    let uplink = RouterVerdict::Uplink { packet: 14..end };
    if h.is_fragment() {
        // No reassembly here: fragments go to the host's stack, or are dropped.
        return if to_uplink {
            uplink
        } else {
            RouterVerdict::Drop(RouterDrop::Unsupported)
        };
    }
    let l4 = 14 + h.ihl..end;
    match h.proto {
        PROTO_ICMP => {
            let icmp = &frame[l4.clone()];
            if icmp.len() < 8 {
                return RouterVerdict::Drop(RouterDrop::Malformed);
            }
            if icmp[0] == 8 {
                if !checksum::verifies(icmp) {
                    return RouterVerdict::Drop(RouterDrop::BadChecksum);
                }
                return echo_reply(cx, net, frame, h, src_mac);
            }
            if to_uplink {
                uplink
            } else {
                RouterVerdict::Drop(RouterDrop::NotForUs)
            }
        }
        _ if to_uplink => uplink,
        PROTO_UDP => {
            // RFC 1122 3.2.2.1: port unreachable from a host with no such service.
            icmp_error(
                cx,
                net,
                &frame[14..end],
                false,
                3,
                3,
                [0; 4],
                Origin::Network(src_mac),
            );
            RouterVerdict::Consumed
        }
        PROTO_TCP => tcp_reset(cx, net, &frame[14..end], h, src_mac),
        _ => {
            icmp_error(
                cx,
                net,
                &frame[14..end],
                false,
                3,
                2,
                [0; 4],
                Origin::Network(src_mac),
            );
            RouterVerdict::Consumed
        }
    }
}

/// Rewrites an echo request into the echo reply in place (RFC 792): addresses swapped,
/// type 0, fresh TTL, checksums updated.
fn echo_reply(
    cx: &mut Cx<'_>,
    net: &Net,
    frame: &mut [u8],
    h: &V4,
    src_mac: crate::MacAddr,
) -> RouterVerdict {
    let end = 14 + h.total;
    rewrite_echo_reply(&mut frame[14..end], h.ihl);
    write_ethernet(frame, src_mac, net.cfg.gateway_mac, EtherType::IPV4);
    bump!(cx.out.counters.echo_replies);
    RouterVerdict::Reply { len: end }
}

/// Turns the echo request `ip` (header length `ihl`, checksums valid) into its echo
/// reply in place: addresses swapped, a fresh TTL, type 0, checksums updated (the ICMP
/// one incrementally, RFC 1624).
pub(super) fn rewrite_echo_reply(ip: &mut [u8], ihl: usize) {
    let (src, dst) = (
        <[u8; 4]>::try_from(&ip[12..16]).unwrap_or_default(),
        <[u8; 4]>::try_from(&ip[16..20]).unwrap_or_default(),
    );
    ip[12..16].copy_from_slice(&dst);
    ip[16..20].copy_from_slice(&src);
    ip[8] = DEFAULT_TTL;
    ip[10..12].copy_from_slice(&[0, 0]);
    let ck = checksum::checksum(&ip[..ihl]);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());
    let icmp = &mut ip[ihl..];
    let old = u16::from_be_bytes([icmp[0], icmp[1]]);
    icmp[0] = 0;
    let new = u16::from_be_bytes([icmp[0], icmp[1]]);
    let ck = checksum::update_word(u16::from_be_bytes([icmp[2], icmp[3]]), old, new);
    icmp[2..4].copy_from_slice(&ck.to_be_bytes());
}

/// Sequence number, acknowledgment number and flags of the RST answering a segment
/// (RFC 9293 3.10.7.1): `None` for a segment that is itself a RST.
pub(super) fn reset_numbers(tcp: &[u8]) -> Option<(u32, u32, u8)> {
    const FIN: u8 = 0x01;
    const SYN: u8 = 0x02;
    const RST: u8 = 0x04;
    const ACK: u8 = 0x10;
    let flags = tcp[13];
    if flags & RST != 0 {
        return None;
    }
    if flags & ACK != 0 {
        // <SEQ=SEG.ACK><CTL=RST>
        Some((
            u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
            0,
            RST,
        ))
    } else {
        // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
        let doff = usize::from(tcp[12] >> 4) * 4;
        let data = tcp.len().saturating_sub(doff);
        let seg_len = u32::try_from(data).unwrap_or(u32::MAX)
            + u32::from(flags & SYN != 0)
            + u32::from(flags & FIN != 0);
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        Some((0, seq.wrapping_add(seg_len), RST | ACK))
    }
}

/// Writes the 20-byte TCP RST header answering `tcp` into `out` (checksum zero).
pub(super) fn write_reset(out: &mut [u8], tcp: &[u8], seq: u32, ack: u32, flags: u8) {
    out[0..2].copy_from_slice(&tcp[2..4]);
    out[2..4].copy_from_slice(&tcp[0..2]);
    out[4..8].copy_from_slice(&seq.to_be_bytes());
    out[8..12].copy_from_slice(&ack.to_be_bytes());
    out[12] = 5 << 4;
    out[13] = flags;
    out[14..20].fill(0);
}

/// Answers a TCP segment to the router's address with a RST (RFC 9293 3.10.7.1), as a
/// host with no listener on that port.
fn tcp_reset(
    cx: &mut Cx<'_>,
    net: &Net,
    ip: &[u8],
    h: &V4,
    src_mac: crate::MacAddr,
) -> RouterVerdict {
    let tcp = &ip[h.ihl..];
    if tcp.len() < 20
        || usize::from(tcp[12] >> 4) * 4 < 20
        || usize::from(tcp[12] >> 4) * 4 > tcp.len()
    {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    }
    let Some((seq, ack, flags)) = reset_numbers(tcp) else {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    };
    let mut f = vec![0u8; 14 + 20 + 20];
    write_ethernet(&mut f, src_mac, net.cfg.gateway_mac, EtherType::IPV4);
    write_header(&mut f[14..34], h.dst, h.src, PROTO_TCP, 20, 0);
    write_reset(&mut f[34..54], tcp, seq, ack, flags);
    let ck = checksum::upper_layer(checksum::pseudo_v4(h.dst, h.src, PROTO_TCP, 20), &f[34..54]);
    f[50..52].copy_from_slice(&ck.to_be_bytes());
    if cx.out.push(net.id, TransmitTo::Network, f) {
        bump!(cx.out.counters.tcp_resets_sent);
    }
    RouterVerdict::Consumed
}

/// Queues an ICMP error about `offending` (an IPv4 packet, as received) from the
/// gateway address of `net`, unless RFC 1812 4.3.2.7 forbids it: the offending packet
/// is an ICMP error, was sent to a link-layer or IP broadcast/multicast (`l2_group`),
/// is a non-first fragment, or has an invalid source. Rate-limited. The error quotes
/// as much of the packet as fits in 576 bytes (RFC 1812 4.3.2.3).
#[allow(clippy::too_many_arguments)]
pub(super) fn icmp_error(
    cx: &mut Cx<'_>,
    net: &Net,
    offending: &[u8],
    l2_group: bool,
    icmp_type: u8,
    code: u8,
    rest: [u8; 4],
    to: Origin,
) {
    let Some(v4) = &net.cfg.v4 else { return };
    if l2_group || offending.len() < 20 {
        return;
    }
    let ihl = usize::from(offending[0] & 0x0f) * 4;
    if ihl < 20 || offending.len() < ihl {
        return;
    }
    let src = ipv4_at(offending, 12);
    let dst = ipv4_at(offending, 16);
    let offset = u16::from_be_bytes([offending[6] & 0x1f, offending[7]]);
    if is_bad_source(src)
        || dst.is_multicast()
        || dst.is_broadcast()
        || net.is_subnet_broadcast_v4(dst)
        || offset != 0
    {
        return;
    }
    if offending[9] == PROTO_ICMP && offending.get(ihl).is_none_or(|&t| is_icmp_error(t)) {
        return;
    }
    let pmtu = icmp_type == 3 && code == 4;
    if !cx.out.allow_icmp_error(cx.now, pmtu) {
        return;
    }
    let quote = &offending[..offending.len().min(ICMP_ERROR_MAX - 28)];
    let prefix = match to {
        Origin::Network(_) => 14,
        Origin::Uplink => 0,
    };
    let mut p = vec![0u8; prefix + 28 + quote.len()];
    // RFC 1812 4.3.2.5: ICMP errors carry precedence 6 (internetwork control).
    write_header(
        &mut p[prefix..prefix + 20],
        v4.gateway,
        src,
        PROTO_ICMP,
        8 + quote.len(),
        0xc0,
    );
    let icmp = &mut p[prefix + 20..];
    icmp[0] = icmp_type;
    icmp[1] = code;
    icmp[4..8].copy_from_slice(&rest);
    icmp[8..].copy_from_slice(quote);
    let ck = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&ck.to_be_bytes());
    let queued = match to {
        Origin::Network(mac) => {
            write_ethernet(&mut p, mac, net.cfg.gateway_mac, EtherType::IPV4);
            cx.out.push(net.id, TransmitTo::Network, p)
        }
        Origin::Uplink => cx.out.push(net.id, TransmitTo::Uplink, p),
    };
    if queued {
        bump!(cx.out.counters.icmp_errors_sent);
    }
}

/// Splits an IPv4 packet into fragments of at most `mtu` bytes (RFC 791 3.2 "An
/// Example Fragmentation Procedure"), each preceded by `prefix` zero bytes (room for an
/// Ethernet header). Options without the copy flag stay in the first fragment only.
/// Empty if the MTU is too small to make progress.
pub(super) fn fragment(ip: &[u8], mtu: usize, prefix: usize) -> Vec<Vec<u8>> {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let (header, data) = ip.split_at(ihl);
    let orig_offset = usize::from(u16::from_be_bytes([ip[6] & 0x1f, ip[7]])) * 8;
    let orig_mf = ip[6] & 0x20 != 0;
    // Options copied into every fragment (the high bit of the option type).
    let mut copied = Vec::new();
    let mut i = 20;
    while i < ihl {
        match header[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(header.get(i + 1).copied().unwrap_or(0));
                if len < 2 || i + len > ihl {
                    break;
                }
                if kind & 0x80 != 0 {
                    copied.extend_from_slice(&header[i..i + len]);
                }
                i += len;
            }
        }
    }
    copied.resize(copied.len().div_ceil(4) * 4, 0);
    let later_hlen = 20 + copied.len();
    if mtu < ihl + 8 || mtu < later_hlen + 8 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let hlen = if pos == 0 { ihl } else { later_hlen };
        let room = (mtu - hlen) / 8 * 8;
        let take = room.min(data.len() - pos);
        let last = pos + take == data.len();
        let offset = (orig_offset + pos) / 8;
        let Ok(offset) = u16::try_from(offset) else {
            return Vec::new();
        };
        if offset > 0x1fff {
            return Vec::new();
        }
        let mut f = vec![0u8; prefix + hlen + take];
        let h = &mut f[prefix..prefix + hlen];
        if pos == 0 {
            h.copy_from_slice(header);
        } else {
            h[..20].copy_from_slice(&header[..20]);
            h[20..].copy_from_slice(&copied);
            h[0] = 0x40 | u8::try_from(hlen / 4).unwrap_or(0x0f);
        }
        let total = u16::try_from(hlen + take).unwrap_or(u16::MAX);
        h[2..4].copy_from_slice(&total.to_be_bytes());
        let flags = if last && !orig_mf { 0 } else { 0x2000 };
        h[6..8].copy_from_slice(&(flags | offset).to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let ck = checksum::checksum(h);
        h[10..12].copy_from_slice(&ck.to_be_bytes());
        f[prefix + hlen..].copy_from_slice(&data[pos..pos + take]);
        out.push(f);
        pos += take;
    }
    out
}

/// An IPv4 packet from the uplink (at `frame[14..]`) for a station of `net`.
pub(super) fn handle_uplink(cx: &mut Cx<'_>, net: &mut Net, frame: &mut [u8]) -> UplinkVerdict {
    if net.cfg.v4.is_none() {
        return UplinkVerdict::Drop(RouterDrop::NoRoute);
    }
    let h = match parse(&frame[14..]) {
        Ok(h) => h,
        Err(reason) => return UplinkVerdict::Drop(reason),
    };
    let end = 14 + h.total;
    if !net.in_subnet_v4(h.dst) {
        return UplinkVerdict::Drop(RouterDrop::NoRoute);
    }
    if net.is_own_v4(h.dst) {
        return UplinkVerdict::Drop(RouterDrop::NotForUs);
    }
    if net.is_subnet_broadcast_v4(h.dst) {
        // Directed broadcasts are not forwarded (RFC 2644).
        return UplinkVerdict::Drop(RouterDrop::InvalidAddress);
    }
    let mtu = net.mtu();
    if cx.wire_len(&frame[14..end], h.total, h.proto, h.ihl) > net.uplink_limit(h.proto) {
        if h.df {
            icmp_error(
                cx,
                net,
                &frame[14..end],
                false,
                3,
                4,
                mtu_field(mtu),
                Origin::Uplink,
            );
            return UplinkVerdict::Drop(RouterDrop::TooBig);
        }
        cx.complete_in_place(&mut frame[..end]);
        let fragments = fragment(&frame[14..end], mtu, 14);
        if fragments.is_empty() {
            return UplinkVerdict::Drop(RouterDrop::TooBig);
        }
        for f in fragments {
            bump!(cx.out.counters.fragments_created);
            arp::deliver_owned(cx, net, h.dst, f, Origin::Uplink);
        }
        return UplinkVerdict::Queued;
    }
    match arp::deliver(cx, net, h.dst, &mut frame[..end], Origin::Uplink) {
        Delivery::Sent(len) => UplinkVerdict::ToNetwork { len },
        Delivery::Queued => UplinkVerdict::Queued,
        Delivery::Dropped(reason) => UplinkVerdict::Drop(reason),
    }
}

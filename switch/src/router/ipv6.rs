//! IPv6 (RFC 8200) on each network: forwarding to the uplink and back into the
//! network, local delivery (ICMPv6 echo, RFC 4443), neighbour discovery (RFC 4861:
//! NS/NA for the router's addresses, resolution of stations, router advertisements
//! with prefix, MTU, source link-layer and RDNSS (RFC 8106) options) and ICMPv6 errors.
//!
//! The router's addresses on a network are the gateway, the `extra` addresses and the
//! link-local address derived from the gateway MAC by EUI-64 (RFC 4291 appendix A).
//! Routers never fragment IPv6 (RFC 8200 5): packets over the egress MTU get an ICMPv6
//! Packet Too Big (RFC 4443 3.2, RFC 8201). Multicast the router does not serve (MLD,
//! echo to all-nodes, NDP for other stations) is `NotForUs`, not an error.
//!
//! Router advertisements: one when the network is added, then every
//! `RouterConfig::ra_interval` (deterministic, no jitter), and in answer to each router
//! solicitation (unicast to the soliciting station when its source is known, else to
//! all-nodes). Router lifetime 1800 s (0 on networks without egress: no default route,
//! as Docker's `--internal`); prefix information with L, and A when the prefix is a /64,
//! valid 86400 s and preferred 14400 s (libslirp's values).

use std::net::Ipv6Addr;

use tapnet_wire::EtherType;

use super::arp::Delivery;
use super::counters::bump;
use super::neighbour::{Due, Held, Hold, Lookup, Origin, RETRY_INTERVAL};
use super::{
    Cx, Hop, Net, Out, RouterDrop, RouterVerdict, TransmitTo, UplinkVerdict, ipv4, mac_at,
    write_ethernet,
};
use crate::MacAddr;
use tapnet_wire::checksum;

pub(super) const NEXT_ICMPV6: u8 = 58;
const NEXT_TCP: u8 = 6;
const NEXT_UDP: u8 = 17;
const NEXT_FRAGMENT: u8 = 44;

pub(super) const ECHO_REQUEST: u8 = 128;
const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
pub(super) const NEIGHBOR_SOLICITATION: u8 = 135;
pub(super) const NEIGHBOR_ADVERTISEMENT: u8 = 136;

/// Hop limit of NDP messages (RFC 4861 7.1: receivers require 255).
pub(super) const NDP_HOP_LIMIT: u8 = 255;
/// Hop limit of other packets the router originates.
pub(super) const DEFAULT_HOP_LIMIT: u8 = 64;
/// Largest ICMPv6 error packet (RFC 4443 2.4(c): the IPv6 minimum MTU).
const ICMPV6_ERROR_MAX: usize = 1280;
/// Router lifetime advertised by networks with egress (RFC 4861 6.2.1 default 3 x
/// MaxRtrAdvInterval, i.e. 1800 s).
const ROUTER_LIFETIME: u16 = 1800;
const PREFIX_VALID_LIFETIME: u32 = 86_400;
const PREFIX_PREFERRED_LIFETIME: u32 = 14_400;
const RDNSS_LIFETIME: u32 = 1800;

pub(super) const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The fields of a validated IPv6 header.
#[derive(Clone, Copy, Debug)]
pub(super) struct V6 {
    /// Header plus payload length.
    pub(super) total: usize,
    pub(super) next: u8,
    pub(super) hop: u8,
    pub(super) src: Ipv6Addr,
    pub(super) dst: Ipv6Addr,
}

pub(super) fn ipv6_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(a)
}

pub(super) fn parse(ip: &[u8]) -> Result<V6, RouterDrop> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return Err(RouterDrop::Malformed);
    }
    let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    if total > ip.len() {
        return Err(RouterDrop::Malformed);
    }
    Ok(V6 {
        total,
        next: ip[6],
        hop: ip[7],
        src: ipv6_at(ip, 8),
        dst: ipv6_at(ip, 24),
    })
}

/// fe80::/10 (RFC 4291 2.5.6).
pub(super) fn is_link_local(ip: Ipv6Addr) -> bool {
    ip.segments()[0] & 0xffc0 == 0xfe80
}

/// The solicited-node multicast address of `ip` (RFC 4291 2.7.1): ff02::1:ff00:0/104
/// plus the low 24 bits.
pub(super) fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet multicast address of an IPv6 multicast address (RFC 2464 7): 33:33
/// followed by its low 32 bits.
pub(super) fn multicast_mac(ip: Ipv6Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// Walks the extension headers (RFC 8200 4) from the fixed header: the upper-layer
/// protocol (or 44 at a fragment header), its offset, and the offset of the next-header
/// field naming it (the pointer of a parameter problem). `None` if malformed.
fn upper_layer(ip: &[u8], total: usize) -> Option<(u8, usize, usize)> {
    let (mut next, mut off, mut ptr) = (ip[6], 40, 6);
    for _ in 0..8 {
        match next {
            0 | 43 | 60 => {
                let h = ip.get(off..off + 2)?;
                ptr = off;
                next = h[0];
                off += (usize::from(h[1]) + 1) * 8;
                if off > total {
                    return None;
                }
            }
            _ => return Some((next, off, ptr)),
        }
    }
    None
}

/// Writes a 40-byte IPv6 header.
fn write_header(
    buf: &mut [u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: u8,
    hop: u8,
    payload_len: usize,
) {
    buf[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
    let plen = u16::try_from(payload_len).unwrap_or(u16::MAX);
    buf[4..6].copy_from_slice(&plen.to_be_bytes());
    buf[6] = next;
    buf[7] = hop;
    buf[8..24].copy_from_slice(&src.octets());
    buf[24..40].copy_from_slice(&dst.octets());
}

/// An ICMPv6 packet (`body` with a zero checksum field), behind an Ethernet header
/// when `eth` is given.
pub(super) fn icmpv6_packet(
    eth: Option<(MacAddr, MacAddr)>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop: u8,
    body: &[u8],
) -> Vec<u8> {
    let prefix = if eth.is_some() { 14 } else { 0 };
    let mut p = vec![0u8; prefix + 40 + body.len()];
    if let Some((eth_dst, eth_src)) = eth {
        write_ethernet(&mut p, eth_dst, eth_src, EtherType::IPV6);
    }
    write_header(&mut p[prefix..], src, dst, NEXT_ICMPV6, hop, body.len());
    let icmp = &mut p[prefix + 40..];
    icmp.copy_from_slice(body);
    let ck = checksum::upper_layer(checksum::pseudo_v6(src, dst, NEXT_ICMPV6, body.len()), icmp);
    icmp[2..4].copy_from_slice(&ck.to_be_bytes());
    p
}

/// Verifies the ICMPv6 checksum of `icmp` (pseudo-header included, RFC 4443 2.3).
pub(super) fn icmpv6_verifies(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> bool {
    checksum::fold(checksum::add(
        checksum::pseudo_v6(src, dst, NEXT_ICMPV6, icmp.len()),
        icmp,
    )) == 0xffff
}

/// A router advertisement from the gateway's link-local address.
fn router_advertisement(net: &Net, dst: Ipv6Addr, eth_dst: MacAddr) -> Option<Vec<u8>> {
    let v6 = net.cfg.v6.as_ref()?;
    let mac = net.cfg.gateway_mac;
    let lifetime = if net.cfg.egress { ROUTER_LIFETIME } else { 0 };
    let mut body = Vec::with_capacity(16 + 8 + 8 + 32 + 8 + 16 * v6.dns.len());
    body.extend_from_slice(&[ROUTER_ADVERTISEMENT, 0, 0, 0, DEFAULT_HOP_LIMIT, 0]);
    body.extend_from_slice(&lifetime.to_be_bytes());
    body.extend_from_slice(&[0; 8]); // reachable time, retrans timer: unspecified
    // Source link-layer address (RFC 4861 4.6.1).
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&mac.0);
    // MTU (RFC 4861 4.6.4).
    body.extend_from_slice(&[5, 1, 0, 0]);
    body.extend_from_slice(&net.cfg.mtu.to_be_bytes());
    // Prefix information (RFC 4861 4.6.2): L, and A for a /64 (RFC 4862 5.5.3).
    let flags = if v6.prefix_len == 64 { 0xc0 } else { 0x80 };
    body.extend_from_slice(&[3, 4, v6.prefix_len, flags]);
    body.extend_from_slice(&PREFIX_VALID_LIFETIME.to_be_bytes());
    body.extend_from_slice(&PREFIX_PREFERRED_LIFETIME.to_be_bytes());
    body.extend_from_slice(&[0; 4]);
    body.extend_from_slice(&v6.prefix.octets());
    // Recursive DNS servers (RFC 8106 5.1), at most 127 (the length is 8 bits).
    if !v6.dns.is_empty() {
        let dns = &v6.dns[..v6.dns.len().min(127)];
        let len = u8::try_from(1 + 2 * dns.len()).unwrap_or(u8::MAX);
        body.extend_from_slice(&[25, len, 0, 0]);
        body.extend_from_slice(&RDNSS_LIFETIME.to_be_bytes());
        for addr in dns {
            body.extend_from_slice(&addr.octets());
        }
    }
    Some(icmpv6_packet(
        Some((eth_dst, mac)),
        net.link_local,
        dst,
        NDP_HOP_LIMIT,
        &body,
    ))
}

/// Queues an unsolicited router advertisement to all-nodes.
pub(super) fn queue_unsolicited_ra(out: &mut Out, net: &Net) {
    if let Some(ra) = router_advertisement(net, ALL_NODES, multicast_mac(ALL_NODES))
        && out.push(net.id, TransmitTo::Network, ra)
    {
        bump!(out.counters.router_advertisements_sent);
    }
}

/// A neighbour solicitation frame for `target` from `src` at `mac`, with the source
/// link-layer option (RFC 4861 4.3, 7.2.2): to the target's solicited-node group, or
/// unicast to `unicast` (a reachability probe, RFC 4861 7.3.3).
pub(super) fn solicitation(
    mac: MacAddr,
    src: Ipv6Addr,
    target: Ipv6Addr,
    unicast: Option<MacAddr>,
) -> Vec<u8> {
    let (dst, eth_dst) = match unicast {
        Some(mac) => (target, mac),
        None => {
            let group = solicited_node(target);
            (group, multicast_mac(group))
        }
    };
    let mut body = [0u8; 32];
    body[0] = NEIGHBOR_SOLICITATION;
    body[8..24].copy_from_slice(&target.octets());
    body[24..26].copy_from_slice(&[1, 1]);
    body[26..32].copy_from_slice(&mac.0);
    icmpv6_packet(Some((eth_dst, mac)), src, dst, NDP_HOP_LIMIT, &body)
}

/// A neighbour advertisement frame for our `target` at `mac`, with the target
/// link-layer option and the override flag (RFC 4861 4.4, 7.2.4): the router flag for
/// a router, solicited unless it answers duplicate address detection.
pub(super) fn advertisement(
    mac: MacAddr,
    router: bool,
    target: Ipv6Addr,
    dst: Ipv6Addr,
    eth_dst: MacAddr,
    solicited: bool,
) -> Vec<u8> {
    let mut body = [0u8; 32];
    body[0] = NEIGHBOR_ADVERTISEMENT;
    body[4] = 0x20 | if router { 0x80 } else { 0 } | if solicited { 0x40 } else { 0 };
    body[8..24].copy_from_slice(&target.octets());
    body[24..26].copy_from_slice(&[2, 1]);
    body[26..32].copy_from_slice(&mac.0);
    icmpv6_packet(Some((eth_dst, mac)), target, dst, NDP_HOP_LIMIT, &body)
}

/// Queues a neighbour solicitation for `target`: to its solicited-node multicast
/// address, or unicast to `mac` (a reachability probe, RFC 4861 7.3.3).
fn send_solicitation(cx: &mut Cx<'_>, net: &Net, target: Ipv6Addr, mac: Option<MacAddr>) {
    let Some(v6) = &net.cfg.v6 else { return };
    let ns = solicitation(net.cfg.gateway_mac, v6.gateway, target, mac);
    if cx.out.push(net.id, TransmitTo::Network, ns) {
        bump!(cx.out.counters.ndp_solicitations_sent);
    }
}

/// Queues a neighbour advertisement for our `target` (RFC 4861 7.2.4): router flag,
/// override, solicited unless answering duplicate address detection.
fn send_advertisement(
    cx: &mut Cx<'_>,
    net: &Net,
    target: Ipv6Addr,
    dst: Ipv6Addr,
    eth_dst: MacAddr,
    solicited: bool,
) {
    let na = advertisement(net.cfg.gateway_mac, true, target, dst, eth_dst, solicited);
    if cx.out.push(net.id, TransmitTo::Network, na) {
        bump!(cx.out.counters.ndp_advertisements_sent);
    }
}

/// Queues an ICMPv6 error about `offending` (an IPv6 packet as received), unless RFC
/// 4443 2.4(e) forbids it: the offending packet is an ICMPv6 error, was sent to a
/// multicast address (IP or link layer; Packet Too Big and parameter problem code 2
/// excepted), or its source is unspecified or multicast. Rate-limited except Packet Too
/// Big. Quotes as much as fits in 1280 bytes. Source: the gateway's link-local address
/// for link-local senders, its global address otherwise.
#[allow(clippy::too_many_arguments)]
fn icmp_error(
    cx: &mut Cx<'_>,
    net: &Net,
    offending: &[u8],
    l2_group: bool,
    icmp_type: u8,
    code: u8,
    param: [u8; 4],
    to: Origin,
) {
    let Some(v6) = &net.cfg.v6 else { return };
    if offending.len() < 40 {
        return;
    }
    let src = ipv6_at(offending, 8);
    let dst = ipv6_at(offending, 24);
    let exempt = icmp_type == 2 || (icmp_type == 4 && code == 2);
    if src.is_unspecified() || src.is_multicast() || ((dst.is_multicast() || l2_group) && !exempt) {
        return;
    }
    if offending[6] == NEXT_ICMPV6 && offending.get(40).is_none_or(|&t| t < 128) {
        return;
    }
    if !cx.out.allow_icmp_error(cx.now, icmp_type == 2) {
        return;
    }
    let quote = &offending[..offending.len().min(ICMPV6_ERROR_MAX - 48)];
    let mut body = Vec::with_capacity(8 + quote.len());
    body.extend_from_slice(&[icmp_type, code, 0, 0]);
    body.extend_from_slice(&param);
    body.extend_from_slice(quote);
    let from = if is_link_local(src) {
        net.link_local
    } else {
        v6.gateway
    };
    let queued = match to {
        Origin::Network(mac) => {
            let p = icmpv6_packet(
                Some((mac, net.cfg.gateway_mac)),
                from,
                src,
                DEFAULT_HOP_LIMIT,
                &body,
            );
            cx.out.push(net.id, TransmitTo::Network, p)
        }
        Origin::Uplink => {
            let p = icmpv6_packet(None, from, src, DEFAULT_HOP_LIMIT, &body);
            cx.out.push(net.id, TransmitTo::Uplink, p)
        }
    };
    if queued {
        bump!(cx.out.counters.icmp_errors_sent);
    }
}

/// An IPv6 frame delivered to the gateway port (`group`: to a multicast MAC).
pub(super) fn handle_frame(
    cx: &mut Cx<'_>,
    net: &mut Net,
    frame: &mut [u8],
    group: bool,
) -> RouterVerdict {
    if net.cfg.v6.is_none() {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    }
    let h = match parse(&frame[14..]) {
        Ok(h) => h,
        Err(reason) => return RouterVerdict::Drop(reason),
    };
    let end = 14 + h.total;
    let src_mac = mac_at(frame, 6);
    if h.src.is_multicast() || h.src.is_loopback() || net.is_own_v6(h.src) {
        return RouterVerdict::Drop(RouterDrop::InvalidAddress);
    }
    if h.dst.is_multicast() {
        // Only NDP to all-routers, all-nodes or a solicited-node group concerns us.
        if h.next == NEXT_ICMPV6
            && matches!(
                frame.get(54),
                Some(&(ROUTER_SOLICITATION | NEIGHBOR_SOLICITATION | NEIGHBOR_ADVERTISEMENT))
            )
        {
            return ndp(cx, net, &frame[..end], &h, src_mac);
        }
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    }
    if group {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    }
    if h.src.is_unspecified() {
        return RouterVerdict::Drop(RouterDrop::InvalidAddress);
    }
    if net.is_own_v6(h.dst) {
        return local(cx, net, frame, &h, src_mac);
    }
    if is_link_local(h.dst) {
        // Someone else's link-local address: stations talk to each other directly.
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    }
    if h.dst.is_unspecified() || h.dst.is_loopback() {
        return RouterVerdict::Drop(RouterDrop::InvalidAddress);
    }
    let origin = Origin::Network(src_mac);
    if is_link_local(h.src) {
        // RFC 4291 2.5.6: never forwarded; RFC 4443 3.1 code 2, beyond scope of source.
        icmp_error(cx, net, &frame[14..end], false, 1, 2, [0; 4], origin);
        return RouterVerdict::Drop(RouterDrop::InvalidAddress);
    }
    if net.in_prefix_v6(h.dst) {
        return hairpin(cx, net, frame, &h, src_mac);
    }
    match cx.routes.lookup_v6(h.dst) {
        Hop::Network(_) => RouterVerdict::Drop(RouterDrop::NoRoute),
        Hop::Uplink => forward(cx, net, frame, &h, origin),
    }
}

/// Forwarding to the uplink: hop limit, egress, MTU, then the hop limit decrement.
fn forward(cx: &mut Cx<'_>, net: &Net, frame: &mut [u8], h: &V6, origin: Origin) -> RouterVerdict {
    let end = 14 + h.total;
    if h.hop <= 1 {
        // RFC 4443 3.3: time exceeded, hop limit exceeded in transit.
        icmp_error(cx, net, &frame[14..end], false, 3, 0, [0; 4], origin);
        return RouterVerdict::Drop(RouterDrop::TtlExceeded);
    }
    if !net.cfg.egress {
        // RFC 4443 3.1 code 1: communication administratively prohibited.
        icmp_error(cx, net, &frame[14..end], false, 1, 1, [0; 4], origin);
        return RouterVerdict::Drop(RouterDrop::EgressDenied);
    }
    let mtu = cx.cfg.uplink_mtu;
    if cx.wire_len(&frame[14..end], h.total, h.next, 40)
        > usize::try_from(mtu).unwrap_or(usize::MAX)
    {
        icmp_error(
            cx,
            net,
            &frame[14..end],
            false,
            2,
            0,
            mtu.to_be_bytes(),
            origin,
        );
        return RouterVerdict::Drop(RouterDrop::TooBig);
    }
    frame[14 + 7] -= 1;
    RouterVerdict::Uplink { packet: 14..end }
}

/// A packet for a station of the network's own prefix sent to the gateway MAC.
fn hairpin(
    cx: &mut Cx<'_>,
    net: &mut Net,
    frame: &mut [u8],
    h: &V6,
    src_mac: MacAddr,
) -> RouterVerdict {
    let end = 14 + h.total;
    let origin = Origin::Network(src_mac);
    if h.hop <= 1 {
        icmp_error(cx, net, &frame[14..end], false, 3, 0, [0; 4], origin);
        return RouterVerdict::Drop(RouterDrop::TtlExceeded);
    }
    if cx.wire_len(&frame[14..end], h.total, h.next, 40) > net.mtu() {
        icmp_error(
            cx,
            net,
            &frame[14..end],
            false,
            2,
            0,
            net.cfg.mtu.to_be_bytes(),
            origin,
        );
        return RouterVerdict::Drop(RouterDrop::TooBig);
    }
    bump!(cx.out.counters.hairpinned);
    frame[14 + 7] -= 1;
    match deliver(cx, net, h.dst, &mut frame[..end], origin) {
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
    h: &V6,
    src_mac: MacAddr,
) -> RouterVerdict {
    let end = 14 + h.total;
    // Link-local destinations are link-scoped: never passed to the host.
    let to_uplink = net.cfg.own_addresses_to_uplink && !is_link_local(h.dst);
    let uplink = RouterVerdict::Uplink { packet: 14..end };
    let Some((proto, l4, ptr)) = upper_layer(&frame[14..end], h.total) else {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    };
    let origin = Origin::Network(src_mac);
    match proto {
        NEXT_FRAGMENT if to_uplink => uplink,
        NEXT_FRAGMENT => RouterVerdict::Drop(RouterDrop::Unsupported),
        NEXT_ICMPV6 => {
            let Some(&icmp_type) = frame.get(14 + l4) else {
                return RouterVerdict::Drop(RouterDrop::Malformed);
            };
            match icmp_type {
                ECHO_REQUEST => echo_reply(cx, net, frame, h, l4, src_mac),
                ROUTER_SOLICITATION | NEIGHBOR_SOLICITATION | NEIGHBOR_ADVERTISEMENT
                    if l4 == 40 =>
                {
                    ndp(cx, net, &frame[..end], h, src_mac)
                }
                _ if to_uplink => uplink,
                _ => RouterVerdict::Drop(RouterDrop::NotForUs),
            }
        }
        _ if to_uplink => uplink,
        NEXT_UDP => {
            // RFC 4443 3.1 code 4: port unreachable.
            icmp_error(cx, net, &frame[14..end], false, 1, 4, [0; 4], origin);
            RouterVerdict::Consumed
        }
        NEXT_TCP => tcp_reset(cx, net, &frame[14..end], h, l4, src_mac),
        _ => {
            // RFC 4443 3.4 code 1: unrecognized next header, pointing at its field.
            let pointer = u32::try_from(ptr).unwrap_or(0).to_be_bytes();
            icmp_error(cx, net, &frame[14..end], false, 4, 1, pointer, origin);
            RouterVerdict::Consumed
        }
    }
}

/// Rewrites an echo request into the echo reply in place (RFC 4443 4.2). Swapping the
/// addresses leaves the pseudo-header sum unchanged; only the type word is updated.
fn echo_reply(
    cx: &mut Cx<'_>,
    net: &Net,
    frame: &mut [u8],
    h: &V6,
    l4: usize,
    src_mac: MacAddr,
) -> RouterVerdict {
    let end = 14 + h.total;
    let icmp = &frame[14 + l4..end];
    if icmp.len() < 8 {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    }
    if !icmpv6_verifies(h.src, h.dst, icmp) {
        return RouterVerdict::Drop(RouterDrop::BadChecksum);
    }
    rewrite_echo_reply(&mut frame[14..end], h, l4);
    write_ethernet(frame, src_mac, net.cfg.gateway_mac, EtherType::IPV6);
    bump!(cx.out.counters.echo_replies);
    RouterVerdict::Reply { len: end }
}

/// Turns the echo request `ip` (header `h`, ICMPv6 at `l4`, checksum verified) into its
/// echo reply in place: addresses swapped, a fresh hop limit, type 129, the checksum
/// updated for the type word only (swapping addresses keeps the pseudo-header sum).
pub(super) fn rewrite_echo_reply(ip: &mut [u8], h: &V6, l4: usize) {
    ip[8..24].copy_from_slice(&h.dst.octets());
    ip[24..40].copy_from_slice(&h.src.octets());
    ip[7] = DEFAULT_HOP_LIMIT;
    let icmp = &mut ip[l4..];
    let old = u16::from_be_bytes([icmp[0], icmp[1]]);
    icmp[0] = ECHO_REQUEST + 1;
    let new = u16::from_be_bytes([icmp[0], icmp[1]]);
    let ck = checksum::update_word(u16::from_be_bytes([icmp[2], icmp[3]]), old, new);
    icmp[2..4].copy_from_slice(&ck.to_be_bytes());
}

/// A RST for a TCP segment to the router's address (RFC 9293 3.10.7.1).
fn tcp_reset(
    cx: &mut Cx<'_>,
    net: &Net,
    ip: &[u8],
    h: &V6,
    l4: usize,
    src_mac: MacAddr,
) -> RouterVerdict {
    let tcp = &ip[l4..];
    let doff = tcp.get(12).map_or(0, |b| usize::from(b >> 4) * 4);
    if tcp.len() < 20 || doff < 20 || doff > tcp.len() {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    }
    let Some((seq, ack, flags)) = ipv4::reset_numbers(tcp) else {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    };
    let mut f = vec![0u8; 14 + 40 + 20];
    write_ethernet(&mut f, src_mac, net.cfg.gateway_mac, EtherType::IPV6);
    write_header(
        &mut f[14..54],
        h.dst,
        h.src,
        NEXT_TCP,
        DEFAULT_HOP_LIMIT,
        20,
    );
    ipv4::write_reset(&mut f[54..74], tcp, seq, ack, flags);
    let ck = checksum::upper_layer(checksum::pseudo_v6(h.dst, h.src, NEXT_TCP, 20), &f[54..74]);
    f[70..72].copy_from_slice(&ck.to_be_bytes());
    if cx.out.push(net.id, TransmitTo::Network, f) {
        bump!(cx.out.counters.tcp_resets_sent);
    }
    RouterVerdict::Consumed
}

/// The link-layer address option of `kind` (1 source, 2 target) among NDP options, or
/// `Err` for a malformed option list (RFC 4861 4.6: a zero length is invalid).
pub(super) fn link_layer_option(
    mut options: &[u8],
    kind: u8,
) -> Result<Option<MacAddr>, RouterDrop> {
    let mut found = None;
    while !options.is_empty() {
        let len = usize::from(*options.get(1).ok_or(RouterDrop::Malformed)?) * 8;
        if len == 0 || len > options.len() {
            return Err(RouterDrop::Malformed);
        }
        if options[0] == kind && len >= 8 {
            found = Some(mac_at(options, 2));
        }
        options = &options[len..];
    }
    Ok(found)
}

/// Router solicitation, neighbour solicitation or advertisement (validated per
/// RFC 4861 6.1.1, 7.1.1, 7.1.2).
fn ndp(cx: &mut Cx<'_>, net: &mut Net, frame: &[u8], h: &V6, src_mac: MacAddr) -> RouterVerdict {
    let icmp = &frame[54..];
    if icmp.len() < 8 || h.next != NEXT_ICMPV6 {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    }
    if h.hop != NDP_HOP_LIMIT || icmp[1] != 0 {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    }
    if !icmpv6_verifies(h.src, h.dst, icmp) {
        return RouterVerdict::Drop(RouterDrop::BadChecksum);
    }
    match icmp[0] {
        ROUTER_SOLICITATION => {
            let sllao = match link_layer_option(&icmp[8..], 1) {
                Ok(o) => o,
                Err(reason) => return RouterVerdict::Drop(reason),
            };
            if h.src.is_unspecified() {
                if sllao.is_some() {
                    return RouterVerdict::Drop(RouterDrop::Malformed);
                }
                queue_unsolicited_ra(cx.out, net);
                return RouterVerdict::Consumed;
            }
            let mac = sllao.unwrap_or(src_mac);
            if sllao.is_some() && (net.in_prefix_v6(h.src) || is_link_local(h.src)) {
                learn(cx, net, h.src, mac, true);
            }
            if let Some(ra) = router_advertisement(net, h.src, mac)
                && cx.out.push(net.id, TransmitTo::Network, ra)
            {
                bump!(cx.out.counters.router_advertisements_sent);
            }
            RouterVerdict::Consumed
        }
        NEIGHBOR_SOLICITATION => {
            if icmp.len() < 24 {
                return RouterVerdict::Drop(RouterDrop::Malformed);
            }
            let target = ipv6_at(icmp, 8);
            let sllao = match link_layer_option(&icmp[24..], 1) {
                Ok(o) => o,
                Err(reason) => return RouterVerdict::Drop(reason),
            };
            if target.is_multicast()
                || (h.src.is_unspecified() && (sllao.is_some() || h.dst != solicited_node(target)))
            {
                return RouterVerdict::Drop(RouterDrop::Malformed);
            }
            if !net.is_own_v6(target) {
                return RouterVerdict::Drop(RouterDrop::NotForUs);
            }
            if h.src.is_unspecified() {
                // Duplicate address detection for our address: defend it to all-nodes.
                send_advertisement(cx, net, target, ALL_NODES, multicast_mac(ALL_NODES), false);
                return RouterVerdict::Consumed;
            }
            let mac = sllao.unwrap_or(src_mac);
            if sllao.is_some() && (net.in_prefix_v6(h.src) || is_link_local(h.src)) {
                learn(cx, net, h.src, mac, true);
            }
            send_advertisement(cx, net, target, h.src, mac, true);
            RouterVerdict::Consumed
        }
        NEIGHBOR_ADVERTISEMENT => {
            if icmp.len() < 24 {
                return RouterVerdict::Drop(RouterDrop::Malformed);
            }
            let target = ipv6_at(icmp, 8);
            let solicited = icmp[4] & 0x40 != 0;
            if target.is_multicast() || (h.dst.is_multicast() && solicited) {
                return RouterVerdict::Drop(RouterDrop::Malformed);
            }
            let tlla = match link_layer_option(&icmp[24..], 2) {
                Ok(o) => o,
                Err(reason) => return RouterVerdict::Drop(reason),
            };
            if net.is_own_v6(target) {
                return RouterVerdict::Drop(RouterDrop::NotForUs);
            }
            let create = net.in_prefix_v6(target);
            if !create && !net.ndp.contains(target) {
                return RouterVerdict::Drop(RouterDrop::NotForUs);
            }
            learn(cx, net, target, tlla.unwrap_or(src_mac), create);
            RouterVerdict::Consumed
        }
        _ => RouterVerdict::Drop(RouterDrop::NotForUs),
    }
}

/// Records `ip` at `mac` and releases the packets held for it.
fn learn(cx: &mut Cx<'_>, net: &mut Net, ip: Ipv6Addr, mac: MacAddr, create: bool) {
    let (held, created) = net
        .ndp
        .confirm(cx.now, ip, mac, create, cx.cfg.max_neighbours);
    if created {
        bump!(cx.out.counters.neighbours_learned);
        cx.out.arm(cx.now + cx.cfg.neighbour_timeout);
    }
    for mut h in held.into_iter().flatten() {
        write_ethernet(&mut h.frame, mac, net.cfg.gateway_mac, EtherType::IPV6);
        cx.out.push(net.id, TransmitTo::Network, h.frame);
    }
}

/// Sends `frame` (IPv6 packet at 14..) to `dst` on the network, resolving it first.
fn deliver(
    cx: &mut Cx<'_>,
    net: &mut Net,
    dst: Ipv6Addr,
    frame: &mut [u8],
    origin: Origin,
) -> Delivery {
    match net.ndp.lookup(cx.now, dst, cx.cfg.neighbour_timeout) {
        Lookup::Hit { mac, probe } => {
            write_ethernet(frame, mac, net.cfg.gateway_mac, EtherType::IPV6);
            if probe {
                send_solicitation(cx, net, dst, Some(mac));
            }
            Delivery::Sent(frame.len())
        }
        Lookup::Miss => {
            let mut owned = frame.to_vec();
            cx.complete_held(&mut owned);
            write_ethernet(
                &mut owned,
                MacAddr::ZERO,
                net.cfg.gateway_mac,
                EtherType::IPV6,
            );
            let held = Held {
                frame: owned,
                origin,
            };
            match net.ndp.hold(
                cx.now,
                dst,
                held,
                cx.cfg.pending_per_neighbour,
                cx.cfg.max_neighbours,
            ) {
                Hold::Started => {
                    send_solicitation(cx, net, dst, None);
                    cx.out.arm(cx.now + RETRY_INTERVAL);
                    Delivery::Queued
                }
                Hold::Added => Delivery::Queued,
                Hold::Full => Delivery::Dropped(RouterDrop::QueueFull),
            }
        }
    }
}

/// An IPv6 packet from the uplink (at `frame[14..]`) for a station of `net`.
pub(super) fn handle_uplink(cx: &mut Cx<'_>, net: &mut Net, frame: &mut [u8]) -> UplinkVerdict {
    if net.cfg.v6.is_none() {
        return UplinkVerdict::Drop(RouterDrop::NoRoute);
    }
    let h = match parse(&frame[14..]) {
        Ok(h) => h,
        Err(reason) => return UplinkVerdict::Drop(reason),
    };
    let end = 14 + h.total;
    if !net.in_prefix_v6(h.dst) {
        return UplinkVerdict::Drop(RouterDrop::NoRoute);
    }
    if net.is_own_v6(h.dst) {
        return UplinkVerdict::Drop(RouterDrop::NotForUs);
    }
    if cx.wire_len(&frame[14..end], h.total, h.next, 40) > net.uplink_limit(h.next) {
        icmp_error(
            cx,
            net,
            &frame[14..end],
            false,
            2,
            0,
            net.cfg.mtu.to_be_bytes(),
            Origin::Uplink,
        );
        return UplinkVerdict::Drop(RouterDrop::TooBig);
    }
    match deliver(cx, net, h.dst, &mut frame[..end], Origin::Uplink) {
        Delivery::Sent(len) => UplinkVerdict::ToNetwork { len },
        Delivery::Queued => UplinkVerdict::Queued,
        Delivery::Dropped(reason) => UplinkVerdict::Drop(reason),
    }
}

/// NDP retries, give-ups and expiry; periodic router advertisements.
pub(super) fn handle_timeout(cx: &mut Cx<'_>, net: &mut Net) {
    if net.cfg.v6.is_none() {
        return;
    }
    let mut due = Vec::new();
    let expired = net.ndp.poll(cx.now, cx.cfg.neighbour_timeout, &mut due);
    cx.out.counters.neighbours_expired = cx.out.counters.neighbours_expired.wrapping_add(expired);
    for d in due {
        match d {
            Due::Retry(ip) => send_solicitation(cx, net, ip, None),
            Due::Failed(_, held) => {
                for h in held {
                    cx.out.counters.drops.bump(RouterDrop::Unresolved);
                    // RFC 4443 3.1 code 3: address unreachable (RFC 4861 7.2.2).
                    if let Some(ip) = h.frame.get(14..) {
                        icmp_error(cx, net, ip, false, 1, 3, [0; 4], h.origin);
                    }
                }
            }
        }
    }
    if let Some(at) = net.ndp.next_deadline(cx.cfg.neighbour_timeout) {
        cx.out.arm(at);
    }
    match net.next_ra {
        Some(at) if at <= cx.now => {
            queue_unsolicited_ra(cx.out, net);
            net.next_ra = Some(cx.now + cx.cfg.ra_interval);
        }
        Some(_) => {}
        // The initial advertisement went out when the network was added.
        None => net.next_ra = Some(cx.now + cx.cfg.ra_interval),
    }
    if let Some(at) = net.next_ra {
        cx.out.arm(at);
    }
}

//! ARP (RFC 826) for IPv4 on each network: answers requests for the router's
//! addresses, learns senders, resolves container addresses for packets from the uplink
//! (with held packets, retries and give-up), and refreshes entries with unicast polls.
//!
//! Learning follows RFC 826's "merge" rule: a sender already in the cache is updated
//! by any ARP packet; a new entry is created when the packet is addressed to the
//! router or is gratuitous (sender address == target address). Only senders inside the
//! network's subnet are learned.

use std::net::Ipv4Addr;

use tapnet_wire::EtherType;

use super::counters::bump;
use super::neighbour::{Due, Held, Hold, Lookup, Origin};
use super::{Cx, Net, RouterDrop, RouterVerdict, TransmitTo, ipv4, mac_at, write_ethernet};
use crate::MacAddr;

/// Ethernet + ARP for IPv4 over Ethernet.
pub(super) const ARP_FRAME_LEN: usize = 14 + 28;
const OP_REQUEST: u16 = 1;
const OP_REPLY: u16 = 2;

/// An ARP frame from the router: Ethernet header, then htype 1, ptype IPv4, op, the
/// sender and target pairs.
pub(super) fn arp_frame(
    eth_dst: MacAddr,
    op: u16,
    sha: MacAddr,
    spa: Ipv4Addr,
    tha: MacAddr,
    tpa: Ipv4Addr,
) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    write_ethernet(&mut f, eth_dst, sha, EtherType::ARP);
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 0]);
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&sha.0);
    f[28..32].copy_from_slice(&spa.octets());
    f[32..38].copy_from_slice(&tha.0);
    f[38..42].copy_from_slice(&tpa.octets());
    f
}

fn ipv4_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

/// An ARP frame delivered to the gateway port.
pub(super) fn handle_frame(cx: &mut Cx<'_>, net: &mut Net, frame: &mut [u8]) -> RouterVerdict {
    if net.cfg.v4.is_none() {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    }
    let Some(arp) = frame.get(14..ARP_FRAME_LEN) else {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    };
    // RFC 826: hardware type Ethernet (1), protocol IPv4, lengths 6 and 4.
    if arp[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    }
    let op = u16::from_be_bytes([arp[6], arp[7]]);
    let sha = mac_at(arp, 8);
    let spa = ipv4_at(arp, 14);
    let tpa = ipv4_at(arp, 24);
    if !(op == OP_REQUEST || op == OP_REPLY) || !sha.is_valid_source() {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    }

    let for_us = net.is_own_v4(tpa);
    let learnable = !spa.is_unspecified() && net.in_subnet_v4(spa) && !net.is_own_v4(spa);
    let mut learned = false;
    if learnable {
        let known = net.arp.contains(spa);
        learned = known || for_us || spa == tpa;
        if learned {
            learn(cx, net, spa, sha, true);
        }
    }

    if op == OP_REQUEST && for_us {
        // Reply in place (RFC 826 "swap hardware and protocol fields"). A probe from
        // 0.0.0.0 (RFC 5227) is answered too, which defends the address.
        let gw = net.cfg.gateway_mac;
        write_ethernet(frame, sha, gw, EtherType::ARP);
        let reply = arp_frame(sha, OP_REPLY, gw, tpa, sha, spa);
        frame[..ARP_FRAME_LEN].copy_from_slice(&reply);
        bump!(cx.out.counters.arp_replies);
        return RouterVerdict::Reply { len: ARP_FRAME_LEN };
    }
    if for_us || learned {
        RouterVerdict::Consumed
    } else {
        RouterVerdict::Drop(RouterDrop::NotForUs)
    }
}

/// Records `ip` at `mac` (if `create` or already known) and releases held packets.
pub(super) fn learn(cx: &mut Cx<'_>, net: &mut Net, ip: Ipv4Addr, mac: MacAddr, create: bool) {
    let (held, created) = net
        .arp
        .confirm(cx.now, ip, mac, create, cx.cfg.max_neighbours);
    if created {
        bump!(cx.out.counters.neighbours_learned);
        cx.out.arm(cx.now + cx.cfg.neighbour_timeout);
    }
    for mut h in held.into_iter().flatten() {
        write_ethernet(&mut h.frame, mac, net.cfg.gateway_mac, EtherType::IPV4);
        cx.out.push(net.id, TransmitTo::Network, h.frame);
    }
}

/// Queues an ARP request for `target`: broadcast, or unicast to `mac` (a refresh poll,
/// RFC 1122 2.3.2.1).
fn send_request(cx: &mut Cx<'_>, net: &Net, target: Ipv4Addr, mac: Option<MacAddr>) {
    let Some(v4) = &net.cfg.v4 else { return };
    let f = arp_frame(
        mac.unwrap_or(MacAddr::BROADCAST),
        OP_REQUEST,
        net.cfg.gateway_mac,
        v4.gateway,
        MacAddr::ZERO,
        target,
    );
    if cx.out.push(net.id, TransmitTo::Network, f.to_vec()) {
        bump!(cx.out.counters.arp_requests_sent);
    }
}

/// Result of handing an IPv4 packet to a station of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Delivery {
    /// The Ethernet header was written in place; send this many bytes.
    Sent(usize),
    /// Copied and held (or queued for `poll_transmit`).
    Queued,
    /// Not kept.
    Dropped(RouterDrop),
}

/// Sends the frame `frame` (IP packet at 14.., header written here) to `dst` on the
/// network, resolving its MAC first if needed.
pub(super) fn deliver(
    cx: &mut Cx<'_>,
    net: &mut Net,
    dst: Ipv4Addr,
    frame: &mut [u8],
    origin: Origin,
) -> Delivery {
    match net.arp.lookup(cx.now, dst, cx.cfg.neighbour_timeout) {
        Lookup::Hit { mac, probe } => {
            write_ethernet(frame, mac, net.cfg.gateway_mac, EtherType::IPV4);
            if probe {
                send_request(cx, net, dst, Some(mac));
            }
            Delivery::Sent(frame.len())
        }
        Lookup::Miss => hold(cx, net, dst, frame.to_vec(), origin),
    }
}

/// As [`deliver`] for a frame the router owns (a fragment): queued either way.
pub(super) fn deliver_owned(
    cx: &mut Cx<'_>,
    net: &mut Net,
    dst: Ipv4Addr,
    mut frame: Vec<u8>,
    origin: Origin,
) -> Delivery {
    match net.arp.lookup(cx.now, dst, cx.cfg.neighbour_timeout) {
        Lookup::Hit { mac, probe } => {
            write_ethernet(&mut frame, mac, net.cfg.gateway_mac, EtherType::IPV4);
            if probe {
                send_request(cx, net, dst, Some(mac));
            }
            if cx.out.push(net.id, TransmitTo::Network, frame) {
                Delivery::Queued
            } else {
                Delivery::Dropped(RouterDrop::QueueFull)
            }
        }
        Lookup::Miss => hold(cx, net, dst, frame, origin),
    }
}

fn hold(
    cx: &mut Cx<'_>,
    net: &mut Net,
    dst: Ipv4Addr,
    mut frame: Vec<u8>,
    origin: Origin,
) -> Delivery {
    cx.complete_held(&mut frame);
    // The source MAC and EtherType are known now; the destination on release.
    write_ethernet(
        &mut frame,
        MacAddr::ZERO,
        net.cfg.gateway_mac,
        EtherType::IPV4,
    );
    let held = Held { frame, origin };
    match net.arp.hold(
        cx.now,
        dst,
        held,
        cx.cfg.pending_per_neighbour,
        cx.cfg.max_neighbours,
    ) {
        Hold::Started => {
            send_request(cx, net, dst, None);
            cx.out.arm(cx.now + super::neighbour::RETRY_INTERVAL);
            Delivery::Queued
        }
        Hold::Added => Delivery::Queued,
        Hold::Full => Delivery::Dropped(RouterDrop::QueueFull),
    }
}

/// Retries, give-ups and expiry of the IPv4 neighbour cache.
pub(super) fn handle_timeout(cx: &mut Cx<'_>, net: &mut Net) {
    let mut due = Vec::new();
    let expired = net.arp.poll(cx.now, cx.cfg.neighbour_timeout, &mut due);
    cx.out.counters.neighbours_expired = cx.out.counters.neighbours_expired.wrapping_add(expired);
    for d in due {
        match d {
            Due::Retry(ip) => send_request(cx, net, ip, None),
            Due::Failed(_, held) => {
                for h in held {
                    cx.out.counters.drops.bump(RouterDrop::Unresolved);
                    // RFC 1812 4.3.3.1 / RFC 792: destination unreachable, host
                    // unreachable (code 1), to the original sender.
                    if let Some(ip) = h.frame.get(14..) {
                        ipv4::icmp_error(cx, net, ip, false, 3, 1, [0; 4], h.origin);
                    }
                }
            }
        }
    }
    if let Some(at) = net.arp.next_deadline(cx.cfg.neighbour_timeout) {
        cx.out.arm(at);
    }
}

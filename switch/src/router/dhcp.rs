//! DHCPv4 server (RFC 2131, options from RFC 2132), one per network with
//! `RouterV4::dhcp` set. Our own small BOOTP codec: a fixed 236-byte header, the magic
//! cookie, then type-length-value options.
//!
//! Address choice for a client (keyed by its chaddr): its static binding
//! ([`Router::set_static_lease`](super::Router::set_static_lease), which wins over the
//! pool), else the address it had (if nobody took it since), else the address it asks
//! for (option 50) if free in the pool, else the lowest free pool address. Offers are
//! reserved for 60 s; leases expire after `lease_time` without renewal.
//!
//! Replies come from the gateway (UDP 67 -> 68) and are addressed per RFC 2131 4.1:
//! DHCPNAK broadcast; to `ciaddr` when set; broadcast when the client set the
//! BROADCAST flag; else unicast to `yiaddr` at `chaddr`. Relayed requests (giaddr set)
//! are not served: every network is one link with the server on it.
//!
//! The options sent: message type (53), server identifier (54), subnet mask (1), router
//! (3, left out on networks without egress, as Docker's `--internal` has no default
//! route), DNS servers (6, if any), interface MTU (26), and with a lease: lease time
//! (51), renewal T1 = 1/2 (58) and rebinding T2 = 7/8 (59) of it (RFC 2131 4.4.5).

use core::time::Duration;
use std::collections::HashSet;
use std::net::Ipv4Addr;

use hashbrown::HashMap;
use tapnet_wire::EtherType;

use super::counters::bump;
use super::ipv4::{PROTO_UDP, V4, ipv4_at, write_header};
use super::{
    Cx, DhcpConfig, DhcpLease, Net, RouterDrop, RouterVerdict, TransmitTo, arp, mac_at, mask4,
    write_ethernet,
};
use crate::{Instant, MacAddr};
use tapnet_wire::checksum;

/// How long an offered address is reserved for the client.
const OFFER_HOLD: Duration = Duration::from_secs(60);
/// RFC 2131 section 3: the options field starts with this cookie.
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Fixed BOOTP fields plus the cookie.
const FIXED_LEN: usize = 236 + 4;
/// Replies are padded to the BOOTP minimum message size (RFC 1542 2.1).
const MIN_REPLY: usize = 300;

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const DECLINE: u8 = 4;
const ACK: u8 = 5;
const NAK: u8 = 6;
const RELEASE: u8 = 7;
const INFORM: u8 = 8;

#[derive(Clone, Copy, Debug)]
struct Lease {
    ip: Ipv4Addr,
    expires: Instant,
    bound: bool,
}

/// Leases, static bindings and declined addresses of one network.
#[derive(Debug, Default)]
pub(super) struct DhcpState {
    leases: HashMap<MacAddr, Lease>,
    statics: HashMap<MacAddr, Ipv4Addr>,
    /// Addresses a client declined (RFC 2131 3.1.5: in use by someone else), kept out
    /// of the pool until the instant.
    declined: HashMap<Ipv4Addr, Instant>,
}

impl DhcpState {
    pub(super) fn set_static(&mut self, mac: MacAddr, ip: Ipv4Addr) {
        // The newest binding wins: another MAC's binding of the address goes, as do
        // the client's own dynamic lease and anyone else's lease of that address.
        self.statics
            .retain(|&m, &mut bound| m == mac || bound != ip);
        self.statics.insert(mac, ip);
        self.leases.retain(|&m, lease| m != mac && lease.ip != ip);
    }

    pub(super) fn remove_static(&mut self, mac: MacAddr) -> Option<Ipv4Addr> {
        let ip = self.statics.remove(&mac)?;
        self.leases.remove(&mac);
        Some(ip)
    }

    pub(super) fn list(&self, now: Instant) -> Vec<DhcpLease> {
        let mut out: Vec<DhcpLease> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires > now)
            .map(|(&mac, l)| DhcpLease {
                mac,
                ip: l.ip,
                remaining: Some(l.expires.saturating_duration_since(now)),
                bound: l.bound,
                is_static: self.statics.get(&mac) == Some(&l.ip),
            })
            .collect();
        for (&mac, &ip) in &self.statics {
            if !out.iter().any(|l| l.mac == mac) {
                out.push(DhcpLease {
                    mac,
                    ip,
                    remaining: None,
                    bound: false,
                    is_static: true,
                });
            }
        }
        out.sort_by_key(|l| l.mac);
        out
    }

    /// The address this client holds: static, or an unexpired lease or offer.
    fn binding(&self, mac: MacAddr, now: Instant) -> Option<Ipv4Addr> {
        self.statics.get(&mac).copied().or_else(|| {
            self.leases
                .get(&mac)
                .filter(|l| l.expires > now)
                .map(|l| l.ip)
        })
    }

    /// Addresses held by someone other than `mac`.
    fn taken(&self, mac: MacAddr, now: Instant) -> HashSet<Ipv4Addr> {
        let leased = self
            .leases
            .iter()
            .filter(|&(&m, l)| m != mac && l.expires > now)
            .map(|(_, l)| l.ip);
        let statics = self
            .statics
            .iter()
            .filter(|&(&m, _)| m != mac)
            .map(|(_, &ip)| ip);
        let declined = self
            .declined
            .iter()
            .filter(|&(_, &until)| until > now)
            .map(|(&ip, _)| ip);
        leased.chain(statics).chain(declined).collect()
    }

    /// The earliest lease or decline expiry.
    fn next_deadline(&self) -> Option<Instant> {
        let leases = self.leases.values().map(|l| l.expires);
        leases.chain(self.declined.values().copied()).min()
    }
}

/// A parsed DHCP request: the fields a reply needs.
#[derive(Clone, Copy, Debug)]
struct Request {
    msg_type: u8,
    xid: [u8; 4],
    flags: [u8; 2],
    ciaddr: Ipv4Addr,
    chaddr: [u8; 16],
    mac: MacAddr,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
}

fn parse(msg: &[u8]) -> Result<Request, RouterDrop> {
    if msg.len() < FIXED_LEN || msg[236..240] != MAGIC_COOKIE {
        return Err(RouterDrop::Malformed);
    }
    if msg[0] != 1 || msg[1] != 1 || msg[2] != 6 {
        // Not a BOOTREQUEST over Ethernet.
        return Err(RouterDrop::NotForUs);
    }
    if msg[24..28] != [0; 4] {
        return Err(RouterDrop::Unsupported);
    }
    let mut req = Request {
        msg_type: 0,
        xid: [msg[4], msg[5], msg[6], msg[7]],
        flags: [msg[10], msg[11]],
        ciaddr: ipv4_at(msg, 12),
        chaddr: msg[28..44].try_into().unwrap_or([0; 16]),
        mac: mac_at(msg, 28),
        requested: None,
        server_id: None,
    };
    let mut i = FIXED_LEN;
    while i < msg.len() {
        match msg[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(*msg.get(i + 1).ok_or(RouterDrop::Malformed)?);
                let data = msg.get(i + 2..i + 2 + len).ok_or(RouterDrop::Malformed)?;
                match (code, data) {
                    (53, &[t]) => req.msg_type = t,
                    (50, &[a, b, c, d]) => req.requested = Some(Ipv4Addr::new(a, b, c, d)),
                    (54, &[a, b, c, d]) => req.server_id = Some(Ipv4Addr::new(a, b, c, d)),
                    _ => {}
                }
                i += 2 + len;
            }
        }
    }
    if req.msg_type == 0 {
        // Plain BOOTP: not served.
        return Err(RouterDrop::Unsupported);
    }
    if !req.mac.is_valid_source() {
        return Err(RouterDrop::Malformed);
    }
    Ok(req)
}

/// A DHCP message to the server (UDP port 67 already checked).
pub(super) fn handle(cx: &mut Cx<'_>, net: &mut Net, frame: &[u8], h: &V4) -> RouterVerdict {
    let udp = &frame[14 + h.ihl..14 + h.total];
    let Some(len) = udp
        .get(4..6)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
    else {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    };
    if len < 8 || len > udp.len() {
        return RouterVerdict::Drop(RouterDrop::Malformed);
    }
    let req = match parse(&udp[8..len]) {
        Ok(req) => req,
        Err(reason) => return RouterVerdict::Drop(reason),
    };
    let Some(v4) = &net.cfg.v4 else {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    };
    let Some(cfg) = v4.dhcp.clone() else {
        return RouterVerdict::Drop(RouterDrop::NotForUs);
    };
    let (gateway, now) = (v4.gateway, cx.now);
    let lease_time = cfg.lease_time;
    match req.msg_type {
        DISCOVER => {
            match choose(net, &cfg, &req, now) {
                Some(ip) => {
                    if !net.dhcp.statics.contains_key(&req.mac) {
                        let previous = net.dhcp.leases.get(&req.mac).copied();
                        let lease = match previous {
                            Some(l) if l.ip == ip && l.bound && l.expires > now => l,
                            _ => Lease {
                                ip,
                                expires: now + OFFER_HOLD,
                                bound: false,
                            },
                        };
                        net.dhcp.leases.insert(req.mac, lease);
                        cx.out.arm(lease.expires);
                    }
                    reply(cx, net, &req, OFFER, ip, Some(lease_time));
                    bump!(cx.out.counters.dhcp_offers);
                }
                None => bump!(cx.out.counters.dhcp_pool_exhausted),
            }
            RouterVerdict::Consumed
        }
        REQUEST => {
            let bound = net.dhcp.binding(req.mac, now);
            let wanted = if let Some(server) = req.server_id {
                // SELECTING (RFC 2131 4.3.2): the client chose a server.
                if server != gateway {
                    if net.dhcp.leases.get(&req.mac).is_some_and(|l| !l.bound) {
                        net.dhcp.leases.remove(&req.mac);
                    }
                    return RouterVerdict::Consumed;
                }
                let wanted = req.requested.unwrap_or(req.ciaddr);
                if bound == Some(wanted) {
                    Some(wanted)
                } else {
                    None
                }
            } else {
                // INIT-REBOOT (option 50) or RENEWING/REBINDING (ciaddr).
                let wanted = match (req.requested, req.ciaddr.is_unspecified()) {
                    (Some(ip), _) => ip,
                    (None, false) => req.ciaddr,
                    (None, true) => return RouterVerdict::Drop(RouterDrop::Malformed),
                };
                let ok = match bound {
                    Some(ip) => ip == wanted,
                    // No record (we restarted?): adopt a free pool address.
                    None => {
                        in_pool(&cfg, wanted)
                            && usable(net, wanted)
                            && !net.dhcp.taken(req.mac, now).contains(&wanted)
                    }
                };
                ok.then_some(wanted)
            };
            match wanted {
                Some(ip) => {
                    let expires = now + lease_time;
                    net.dhcp.leases.insert(
                        req.mac,
                        Lease {
                            ip,
                            expires,
                            bound: true,
                        },
                    );
                    cx.out.arm(expires);
                    reply(cx, net, &req, ACK, ip, Some(lease_time));
                    bump!(cx.out.counters.dhcp_leases);
                    arp::learn(cx, net, ip, req.mac, true);
                }
                None => {
                    net.dhcp.leases.remove(&req.mac);
                    reply(cx, net, &req, NAK, Ipv4Addr::UNSPECIFIED, None);
                    bump!(cx.out.counters.dhcp_naks);
                }
            }
            RouterVerdict::Consumed
        }
        DECLINE => {
            if req.server_id == Some(gateway)
                && let Some(ip) = req.requested
            {
                net.dhcp.declined.insert(ip, now + lease_time);
                cx.out.arm(now + lease_time);
                if net.dhcp.leases.get(&req.mac).is_some_and(|l| l.ip == ip) {
                    net.dhcp.leases.remove(&req.mac);
                }
            }
            RouterVerdict::Consumed
        }
        RELEASE => {
            if net
                .dhcp
                .leases
                .get(&req.mac)
                .is_some_and(|l| l.ip == req.ciaddr)
            {
                net.dhcp.leases.remove(&req.mac);
            }
            RouterVerdict::Consumed
        }
        INFORM => {
            // RFC 2131 3.4: configuration only, no lease, to ciaddr.
            if req.ciaddr.is_unspecified() {
                return RouterVerdict::Drop(RouterDrop::Malformed);
            }
            reply(cx, net, &req, ACK, Ipv4Addr::UNSPECIFIED, None);
            RouterVerdict::Consumed
        }
        _ => RouterVerdict::Drop(RouterDrop::NotForUs),
    }
}

fn in_pool(cfg: &DhcpConfig, ip: Ipv4Addr) -> bool {
    (cfg.pool.0..=cfg.pool.1).contains(&ip)
}

/// An address a client may get at all: in the subnet, not a router address, not the
/// network or broadcast address.
pub(super) fn usable(net: &Net, ip: Ipv4Addr) -> bool {
    net.in_subnet_v4(ip) && !net.is_own_v4(ip) && !net.is_subnet_broadcast_v4(ip)
}

/// The address to offer (see the module docs), or `None` if the pool is exhausted.
fn choose(net: &Net, cfg: &DhcpConfig, req: &Request, now: Instant) -> Option<Ipv4Addr> {
    if let Some(&ip) = net.dhcp.statics.get(&req.mac) {
        return Some(ip);
    }
    let taken = net.dhcp.taken(req.mac, now);
    let free = |ip: Ipv4Addr| usable(net, ip) && !taken.contains(&ip);
    if let Some(lease) = net.dhcp.leases.get(&req.mac)
        && free(lease.ip)
    {
        return Some(lease.ip);
    }
    if let Some(ip) = req.requested
        && in_pool(cfg, ip)
        && free(ip)
    {
        return Some(ip);
    }
    (u32::from(cfg.pool.0)..=u32::from(cfg.pool.1))
        .map(Ipv4Addr::from)
        .find(|&ip| free(ip))
}

/// Builds and queues a reply (see the module docs for addressing and options).
fn reply(
    cx: &mut Cx<'_>,
    net: &Net,
    req: &Request,
    msg_type: u8,
    yiaddr: Ipv4Addr,
    lease: Option<Duration>,
) {
    let Some(v4) = &net.cfg.v4 else { return };
    let Some(cfg) = &v4.dhcp else { return };
    let mut msg = vec![0u8; FIXED_LEN];
    msg[0..4].copy_from_slice(&[2, 1, 6, 0]);
    msg[4..8].copy_from_slice(&req.xid);
    msg[10..12].copy_from_slice(&req.flags);
    if msg_type == ACK {
        msg[12..16].copy_from_slice(&req.ciaddr.octets());
    }
    msg[16..20].copy_from_slice(&yiaddr.octets());
    msg[28..44].copy_from_slice(&req.chaddr);
    msg[236..240].copy_from_slice(&MAGIC_COOKIE);
    msg.extend_from_slice(&[53, 1, msg_type]);
    msg.extend_from_slice(&[54, 4]);
    msg.extend_from_slice(&v4.gateway.octets());
    if msg_type != NAK {
        msg.extend_from_slice(&[1, 4]);
        msg.extend_from_slice(&mask4(v4.prefix_len).to_be_bytes());
        if net.cfg.egress {
            msg.extend_from_slice(&[3, 4]);
            msg.extend_from_slice(&v4.gateway.octets());
        }
        if !cfg.dns.is_empty() {
            let dns = &cfg.dns[..cfg.dns.len().min(63)];
            msg.extend_from_slice(&[6, u8::try_from(4 * dns.len()).unwrap_or(252)]);
            for d in dns {
                msg.extend_from_slice(&d.octets());
            }
        }
        let mtu = u16::try_from(net.cfg.mtu.max(68)).unwrap_or(u16::MAX);
        msg.extend_from_slice(&[26, 2]);
        msg.extend_from_slice(&mtu.to_be_bytes());
        if let Some(lease) = lease {
            let secs = u32::try_from(lease.as_secs()).unwrap_or(u32::MAX - 1);
            for (code, value) in [(51, secs), (58, secs / 2), (59, secs / 8 * 7)] {
                msg.extend_from_slice(&[code, 4]);
                msg.extend_from_slice(&value.to_be_bytes());
            }
        }
    }
    msg.push(255);
    if msg.len() < MIN_REPLY {
        msg.resize(MIN_REPLY, 0);
    }

    let broadcast = msg_type == NAK
        || (req.ciaddr.is_unspecified() && (req.flags[0] & 0x80 != 0 || yiaddr.is_unspecified()));
    let (dst_ip, dst_mac) = if broadcast {
        (Ipv4Addr::BROADCAST, MacAddr::BROADCAST)
    } else if !req.ciaddr.is_unspecified() {
        (req.ciaddr, req.mac)
    } else {
        (yiaddr, req.mac)
    };
    let udp_len = 8 + msg.len();
    let mut f = vec![0u8; 14 + 20 + udp_len];
    write_ethernet(&mut f, dst_mac, net.cfg.gateway_mac, EtherType::IPV4);
    write_header(&mut f[14..34], v4.gateway, dst_ip, PROTO_UDP, udp_len, 0);
    let udp = &mut f[34..];
    udp[0..2].copy_from_slice(&67u16.to_be_bytes());
    udp[2..4].copy_from_slice(&68u16.to_be_bytes());
    udp[4..6].copy_from_slice(&u16::try_from(udp_len).unwrap_or(u16::MAX).to_be_bytes());
    udp[8..].copy_from_slice(&msg);
    let ck = checksum::upper_layer(
        checksum::pseudo_v4(v4.gateway, dst_ip, PROTO_UDP, udp_len),
        udp,
    );
    udp[6..8].copy_from_slice(&ck.to_be_bytes());
    cx.out.push(net.id, TransmitTo::Network, f);
}

/// Lease and decline expiry.
pub(super) fn handle_timeout(cx: &mut Cx<'_>, net: &mut Net) {
    let now = cx.now;
    net.dhcp.leases.retain(|_, l| l.expires > now);
    net.dhcp.declined.retain(|_, &mut until| until > now);
    if let Some(at) = net.dhcp.next_deadline() {
        cx.out.arm(at);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use crate::router::fuzzing::{NET_SLIRP, slirp_network};
    use crate::router::{Router, RouterConfig};
    use crate::{ConfigError, Instant, MacAddr};

    #[test]
    fn static_leases_of_addresses_no_client_may_hold_are_refused() {
        let mut r = Router::new(RouterConfig::default());
        assert_eq!(r.add_network(NET_SLIRP, slirp_network()), Ok(()));
        let mac = MacAddr([0x02, 0, 0x5e, 0, 1, 9]);
        // 10.0.2.0/24: the gateway, the DNS address, the network and broadcast
        // addresses, and one outside the subnet. Found by the `dhcp_server` fuzz
        // target: the server offered a static lease of 10.0.2.255.
        for last in [2, 3, 0, 255] {
            let ip = Ipv4Addr::new(10, 0, 2, last);
            let refused = Err(ConfigError::UnusableAddress(ip));
            assert_eq!(r.set_static_lease(NET_SLIRP, mac, ip), refused);
        }
        let outside = Ipv4Addr::new(10, 0, 3, 7);
        let refused = Err(ConfigError::UnusableAddress(outside));
        assert_eq!(r.set_static_lease(NET_SLIRP, mac, outside), refused);
        assert!(r.dhcp_leases(NET_SLIRP, Instant::from_secs(1)).is_empty());
        let host = Ipv4Addr::new(10, 0, 2, 100);
        assert_eq!(r.set_static_lease(NET_SLIRP, mac, host), Ok(()));
        let leases = r.dhcp_leases(NET_SLIRP, Instant::from_secs(1));
        assert_eq!((leases[0].mac, leases[0].ip), (mac, host));
    }

    #[test]
    fn the_newest_static_binding_of_an_address_wins() {
        // Found by the `dhcp_server` fuzz target: two MACs bound to 10.0.2.4 were both
        // offered it.
        let mut r = Router::new(RouterConfig::default());
        assert_eq!(r.add_network(NET_SLIRP, slirp_network()), Ok(()));
        let (a, b) = (
            MacAddr([0x02, 0, 0x5e, 0, 1, 1]),
            MacAddr([0x02, 0, 0x5e, 0, 1, 2]),
        );
        let ip = Ipv4Addr::new(10, 0, 2, 4);
        assert_eq!(r.set_static_lease(NET_SLIRP, a, ip), Ok(()));
        assert_eq!(r.set_static_lease(NET_SLIRP, b, ip), Ok(()));
        let leases = r.dhcp_leases(NET_SLIRP, Instant::from_secs(1));
        let bound: Vec<_> = leases.iter().map(|l| (l.mac, l.ip, l.is_static)).collect();
        assert_eq!(bound, [(b, ip, true)]);
        assert_eq!(r.remove_static_lease(NET_SLIRP, a), None);
    }
}

//! Fuzzing harness of the router's DHCP server (RFC 2131), shared by the cargo-fuzz
//! target `fuzz/fuzz_targets/dhcp_server.rs` and the stable corpus replay test
//! `tests/dhcp_server_fuzz_corpus.rs`.
//!
//! Not part of the stable API (hidden from docs). [`run`] decodes a network (prefix,
//! pool, lease time), static leases and a sequence of DHCP messages (DISCOVER,
//! REQUEST, DECLINE, RELEASE, INFORM and unknown types, from a small set of clients,
//! with chosen `ciaddr`, requested address, server identifier, broadcast flag, relay
//! address and extra options, or mutated bytes), time steps and static lease changes.
//! Each message goes to the router as a real Ethernet/IPv4/UDP 68 -> 67 frame; a model
//! of what the server told its clients follows along. Checked after every call:
//!
//! - nothing panics; a dropped message bumps exactly its drop counter, changes no
//!   lease and gets no answer; a message gets at most one answer;
//! - every answer is a valid frame from the gateway (checksums) carrying a BOOTREPLY
//!   with the request's `xid`, `flags` and `chaddr`, well-formed options ending in
//!   `end`, server identifier the gateway, at least 300 bytes (RFC 1542), addressed
//!   as RFC 2131 4.1 says (NAK broadcast, else `ciaddr`, else broadcast flag, else
//!   `yiaddr` at `chaddr`);
//! - the type fits the request (OFFER for DISCOVER, ACK/NAK for REQUEST, ACK without
//!   address or lease time for INFORM, nothing for RELEASE/DECLINE/relayed/BOOTP);
//! - `yiaddr` lies in the pool or is the client's static lease; it is never the
//!   gateway, DNS, network or broadcast address, never outside the subnet, never
//!   another client's static lease, never an address another client was ACKed and
//!   still holds; a DISCOVER goes unanswered only when every pool address is taken;
//! - the lease listing never shows an address twice, holds no more dynamic leases
//!   than the pool has addresses, all inside the pool, and every address the server
//!   ACKed (not released, declined, replaced or expired since) is still there;
//! - the offer/lease/NAK/exhaustion counters count the answers.

mod checks;
mod messages;

use core::time::Duration;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::fuzzing::{Bytes, SLIRP_GW_MAC};
use super::{DhcpConfig, Router, RouterConfig, RouterNetwork, RouterV4, mask4};
use crate::{Instant, MacAddr, NetworkId};
use messages::{Msg, Reply, Walk, encode, frame, parse_reply, walk};

const NET: NetworkId = NetworkId(1);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);
const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 67);

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const DECLINE: u8 = 4;
const ACK: u8 = 5;
const NAK: u8 = 6;
const RELEASE: u8 = 7;
const INFORM: u8 = 8;

/// Client `i` of the alphabet (16 clients).
fn client_mac(i: u8) -> MacAddr {
    MacAddr([0x02, 0x00, 0x5e, 0x00, 0x01, i & 0x0f])
}

/// The network's DHCP settings.
#[derive(Clone, Copy, Debug)]
struct Setup {
    prefix_len: u8,
    pool: (Ipv4Addr, Ipv4Addr),
    lease: Duration,
    egress: bool,
}

impl Setup {
    /// Byte `b` bits 0-1 the prefix (/24, /28, /29), bits 2-3 the lease time (10 s,
    /// 60 s, 1 h, 1 s), bit 4 egress, bits 5-7 the pool size less one; the pool starts
    /// at 10.0.2.`start` (so it may cover the gateway, the network or broadcast
    /// address, or run out of the subnet).
    fn decode(b: u8, start: u8) -> Self {
        let first = u32::from(Ipv4Addr::new(10, 0, 2, start));
        Self {
            prefix_len: [24, 28, 29, 24][usize::from(b & 3)],
            pool: (first.into(), (first + u32::from(b >> 5)).into()),
            lease: Duration::from_secs([10, 60, 3600, 1][usize::from(b >> 2 & 3)]),
            egress: b & 0x10 != 0,
        }
    }

    fn network(&self) -> RouterNetwork {
        RouterNetwork {
            gateway_mac: SLIRP_GW_MAC,
            v4: Some(RouterV4 {
                network: Ipv4Addr::new(10, 0, 2, 0),
                prefix_len: self.prefix_len,
                gateway: GATEWAY,
                extra: vec![DNS],
                dhcp: Some(DhcpConfig {
                    pool: self.pool,
                    dns: vec![DNS],
                    lease_time: self.lease,
                }),
            }),
            v6: None,
            mtu: 1500,
            egress: self.egress,
            own_addresses_to_uplink: true,
        }
    }

    /// An address a client may hold: in the subnet, not the gateway's or the DNS
    /// address, not the network or broadcast address.
    fn usable(&self, ip: Ipv4Addr) -> bool {
        let mask = mask4(self.prefix_len);
        let (ip, net) = (u32::from(ip), u32::from(Ipv4Addr::new(10, 0, 2, 0)));
        ip & mask == net & mask
            && ip != u32::from(GATEWAY)
            && ip != u32::from(DNS)
            && ip & !mask != 0
            && ip & !mask != !mask
    }

    fn in_pool(&self, ip: Ipv4Addr) -> bool {
        (self.pool.0..=self.pool.1).contains(&ip)
    }

    fn usable_pool(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        (u32::from(self.pool.0)..=u32::from(self.pool.1))
            .map(Ipv4Addr::from)
            .filter(|&ip| self.usable(ip))
    }
}

/// What the server told its clients.
#[derive(Debug, Default)]
struct Model {
    statics: HashMap<MacAddr, Ipv4Addr>,
    /// Addresses ACKed to clients that have not given them up, until when.
    held: HashMap<MacAddr, (Ipv4Addr, Instant)>,
    /// The address last offered or ACKed to each client (for the decoder).
    offered: HashMap<MacAddr, Ipv4Addr>,
    /// Addresses declined (RFC 2131 3.1.5) with the server's identifier, until when.
    declined: HashMap<Ipv4Addr, Instant>,
    /// A mutated message went in: declines may be missing from `declined`.
    inexact: bool,
}

/// The router under test, the model and the clock.
struct Harness {
    router: Router,
    setup: Setup,
    model: Model,
    now: Instant,
    buf: Vec<u8>,
    next_xid: u32,
}

impl Harness {
    fn new(setup: Setup) -> Self {
        let mut router = Router::new(RouterConfig::default());
        assert_eq!(router.add_network(NET, setup.network()), Ok(()));
        Self {
            router,
            setup,
            model: Model::default(),
            now: Instant::from_secs(1),
            buf: vec![0; 2048],
            next_xid: 0x3903_f326,
        }
    }

    fn set_static(&mut self, mac: MacAddr, ip: Ipv4Addr) {
        let result = self.router.set_static_lease(NET, mac, ip);
        if !self.setup.usable(ip) {
            assert_eq!(result, Err(crate::ConfigError::UnusableAddress(ip)));
            return;
        }
        assert_eq!(result, Ok(()));
        // The newest binding of an address wins.
        self.model.statics.retain(|&m, &mut a| m == mac || a != ip);
        self.model.statics.insert(mac, ip);
        // The binding wins over the client's own lease and anyone's lease of `ip`.
        self.model
            .held
            .retain(|&m, &mut (a, _)| m != mac && a != ip);
        self.check_state();
    }

    fn remove_static(&mut self, mac: MacAddr) {
        let had = self.router.remove_static_lease(NET, mac);
        assert_eq!(had, self.model.statics.remove(&mac));
        self.model.held.remove(&mac);
        self.check_state();
    }

    fn advance(&mut self, step: Duration) {
        self.now = self.now + step;
        self.router.handle_timeout(self.now);
        if let Some(at) = self.router.poll_timeout() {
            assert!(at > self.now, "timer {at} not after {}", self.now);
        }
        assert!(self.router.poll_transmit(self.now, &mut self.buf).is_none());
        self.check_state();
    }

    /// The address a client last got (`held`, else `offered`), else its static one.
    fn address_of(&self, mac: MacAddr) -> Ipv4Addr {
        let m = &self.model;
        let got = m.held.get(&mac).map(|h| h.0);
        got.or_else(|| m.offered.get(&mac).copied())
            .or_else(|| m.statics.get(&mac).copied())
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// An address selector: none, the client's own, another client's, or 10.0.2.x
    /// (10.0.3.x with bit 7, outside the subnet).
    fn address(&self, input: &mut Bytes<'_>, mac: MacAddr) -> Ipv4Addr {
        let s = input.byte();
        match s % 4 {
            0 => Ipv4Addr::UNSPECIFIED,
            1 => self.address_of(mac),
            2 => self.address_of(client_mac(s >> 2)),
            _ => Ipv4Addr::new(10, 0, 2 + (s >> 7), input.byte()),
        }
    }

    /// Decodes a message: client byte (bits 0-3 the client, bit 4 a multicast
    /// `chaddr`, bit 5 another Ethernet source), type byte (`% 10`: 0 no option 53,
    /// 9 an unknown type), `ciaddr`, requested address (option 50) and server
    /// identifier selectors, then an extras byte (bits 0-2 extra options, bit 3 a
    /// truncated option last, bit 4 no `end`, bit 5 the broadcast flag, bit 6 unicast
    /// to the gateway, bit 7 a relay address) and the extra options (code, length
    /// `% 8`, data; codes 50, 53 and 54 are moved away so the model knows the fields).
    /// Returns the message, its bytes and whether a truncated option is reached.
    fn decode_msg(&mut self, input: &mut Bytes<'_>) -> (Msg, Vec<u8>, bool) {
        let (c, t) = (input.byte(), input.byte());
        let mac = client_mac(c);
        let chaddr = if c & 0x10 != 0 {
            MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, c])
        } else {
            mac
        };
        let eth_src = if c & 0x20 != 0 {
            client_mac(c.wrapping_add(1))
        } else {
            mac
        };
        let msg_type = match t % 10 {
            9 => 9 + t / 10,
            n => n,
        };
        let ciaddr = self.address(input, mac);
        let requested = Some(self.address(input, mac)).filter(|a| !a.is_unspecified());
        let s = input.byte();
        let server_id = match s % 4 {
            0 => None,
            1 => Some(GATEWAY),
            2 => Some(OTHER_SERVER),
            _ => Some(self.address(input, mac)),
        };
        let x = input.byte();
        let mut extras = Vec::new();
        for _ in 0..x & 7 {
            match input.byte() {
                code @ (0 | 255) => extras.push(code),
                code => {
                    let code = if matches!(code, 50 | 53 | 54) {
                        code ^ 0x80
                    } else {
                        code
                    };
                    let len = input.byte() % 8;
                    extras.extend_from_slice(&[code, len]);
                    // Short at the end of the input: a truncated option.
                    extras.extend_from_slice(input.take(usize::from(len)));
                }
            }
        }
        let mut walk = walk(&extras);
        if x & 8 != 0 && walk == Walk::Open {
            extras.extend_from_slice(&[12, 200, b'h']);
            walk = Walk::Truncated;
        }
        let truncated = walk == Walk::Truncated;
        let m = Msg {
            msg_type,
            xid: self.next_xid,
            chaddr,
            eth_src,
            broadcast_flag: x & 0x20 != 0,
            unicast: x & 0x40 != 0,
            ciaddr,
            giaddr: if x & 0x80 != 0 {
                Ipv4Addr::new(10, 0, 2, 200)
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            requested,
            server_id,
        };
        self.next_xid = self.next_xid.wrapping_add(1);
        let bytes = encode(&m, &extras, x & 0x10 == 0 && !truncated);
        (m, bytes, truncated)
    }
}

/// Decodes `data` into a network, static leases and operations, and runs them through
/// the router and the model. Panics on an invariant violation; that is what the
/// fuzzer hunts.
///
/// Format (missing bytes read as zero): byte 0 the network ([`Setup::decode`]), byte
/// 1 the pool's first address; byte 2 `% 4` static leases, each a client byte and the
/// last octet of its address; then operations, selected by `op % 8`:
///
/// - `0..=3`: a message ([`Harness::decode_msg`]);
/// - `4`: a mutated message: a message, then a count byte (`% 8`) of (position,
///   value) byte pairs, the position scaled to the message's length;
/// - `5`: time: a byte of seconds (bits 0-6; x 16 with bit 7), then the timers;
/// - `6`: a client byte: with bit 7 its static lease removed, else set to 10.0.2.x
///   (the next byte);
/// - `7`: a client byte: DISCOVER, then REQUEST of the offered address.
pub fn run(data: &[u8]) {
    let mut input = Bytes { data };
    let (b0, start) = (input.byte(), input.byte());
    let mut h = Harness::new(Setup::decode(b0, start));
    for _ in 0..input.byte() % 4 {
        let (c, o) = (input.byte(), input.byte());
        h.set_static(client_mac(c), Ipv4Addr::new(10, 0, 2, o));
    }
    while !input.data.is_empty() {
        match input.byte() % 8 {
            0..=3 => {
                let (m, payload, truncated) = h.decode_msg(&mut input);
                h.send(&m, &payload, true, truncated);
            }
            4 => {
                let (m, mut payload, _) = h.decode_msg(&mut input);
                for _ in 0..input.byte() % 8 {
                    let (at, value) = (usize::from(input.byte()), input.byte());
                    let at = at * payload.len() / 256;
                    payload[at] = value;
                }
                h.send(&m, &payload, false, false);
            }
            5 => {
                let b = input.byte();
                let scale = if b & 0x80 != 0 { 16 } else { 1 };
                h.advance(Duration::from_secs(u64::from(b & 0x7f) * scale));
            }
            6 => {
                let c = input.byte();
                if c & 0x80 != 0 {
                    h.remove_static(client_mac(c));
                } else {
                    let o = input.byte();
                    h.set_static(client_mac(c), Ipv4Addr::new(10, 0, 2, o));
                }
            }
            _ => {
                let c = input.byte();
                h.dora(c);
            }
        }
    }
    // Every dynamic lease runs out; the static ones stay.
    h.advance(Duration::from_secs(2 * 3600));
    let listing = h.router.dhcp_leases(NET, h.now);
    assert!(
        listing.iter().all(|l| l.is_static),
        "{listing:?} outlived its lease"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_empty_and_short_inputs() {
        run(&[]);
        run(&[0]);
        run(&[0, 15, 1, 3, 40]);
        run(&[0xff; 64]);
    }

    #[test]
    fn dora_fills_the_pool_and_then_exhausts_it() {
        // /24, lease 10 s, a pool of two (.15, .16); three clients.
        let mut h = Harness::new(Setup::decode(0x20, 15));
        for c in 0..3 {
            h.dora(c);
        }
        let listing = h.router.dhcp_leases(NET, h.now);
        assert_eq!(listing.len(), 2);
        assert_eq!(h.router.counters().dhcp_pool_exhausted, 1);
        // After the leases run out the third client gets one.
        h.advance(Duration::from_secs(11));
        h.dora(2);
        assert_eq!(h.router.dhcp_leases(NET, h.now).len(), 1);
    }
}

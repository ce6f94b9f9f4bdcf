//! The checks of the DHCP harness: one message in, its answer against the request,
//! the model and the lease listing (see the parent module's docs).

use std::net::Ipv4Addr;

use super::{
    ACK, DECLINE, DISCOVER, GATEWAY, Harness, INFORM, Msg, NAK, NET, OFFER, RELEASE, REQUEST,
    Reply, frame, parse_reply,
};
use crate::MacAddr;
use crate::router::{RouterCounters, RouterDrop, RouterVerdict, TransmitTo};

/// What a message should get, from its fields alone.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Dropped(RouterDrop),
    /// Taken; answered with one of these types, or not at all.
    Answer(&'static [u8]),
}

/// The server's documented handling of an unmutated message.
fn expect(m: &Msg, truncated: bool) -> Expect {
    use Expect::{Answer, Dropped};
    if !m.giaddr.is_unspecified() {
        // Relayed: every network is one link with the server on it.
        return Dropped(RouterDrop::Unsupported);
    }
    if truncated {
        return Dropped(RouterDrop::Malformed);
    }
    if m.msg_type == 0 {
        // Plain BOOTP is not served.
        return Dropped(RouterDrop::Unsupported);
    }
    if !m.chaddr.is_valid_source() {
        return Dropped(RouterDrop::Malformed);
    }
    match m.msg_type {
        DISCOVER => Answer(&[OFFER]),
        REQUEST => match m.server_id {
            // The client chose another server: silence (RFC 2131 4.3.2).
            Some(s) if s != GATEWAY => Answer(&[]),
            Some(_) => Answer(&[ACK, NAK]),
            None if m.requested.is_none() && m.ciaddr.is_unspecified() => {
                Dropped(RouterDrop::Malformed)
            }
            None => Answer(&[ACK, NAK]),
        },
        DECLINE | RELEASE => Answer(&[]),
        INFORM if m.ciaddr.is_unspecified() => Dropped(RouterDrop::Malformed),
        INFORM => Answer(&[ACK]),
        _ => Dropped(RouterDrop::NotForUs),
    }
}

impl Harness {
    /// Sends message bytes `payload`, built from `m` (`exact`: unmutated; then
    /// `truncated` says whether it ends in a truncated option), checks what comes
    /// back and follows it in the model. Returns the answer.
    pub(super) fn send(
        &mut self,
        m: &Msg,
        payload: &[u8],
        exact: bool,
        truncated: bool,
    ) -> Option<Reply> {
        let before = self.router.counters();
        let leases = self.router.dhcp_leases(NET, self.now);
        let mut f = frame(m, payload);
        let dropped = match self.router.handle_frame(self.now, NET, &mut f) {
            RouterVerdict::Consumed => None,
            RouterVerdict::Drop(r) => Some(r),
            other => panic!("DHCP message {m:?} answered as {other:?}"),
        };
        let after = self.router.counters();
        for r in RouterDrop::ALL {
            let want = before.drops.get(r) + u64::from(dropped == Some(r));
            assert_eq!(after.drops.get(r), want, "drop counter {r}");
        }
        let mut replies = Vec::new();
        while let Some(t) = self.router.poll_transmit(self.now, &mut self.buf) {
            assert_eq!((t.net, t.to), (NET, TransmitTo::Network));
            let reply = parse_reply(&self.buf[..t.len], payload)
                .unwrap_or_else(|e| panic!("answer to {m:?}: {e}"));
            replies.push(reply);
        }
        assert!(replies.len() <= 1, "{} answers to {m:?}", replies.len());
        let reply = replies.pop();
        if let Some(reason) = dropped {
            assert!(reply.is_none(), "dropped ({reason}) and answered");
            let now = self.router.dhcp_leases(NET, self.now);
            assert_eq!(now, leases, "a dropped message changed the leases");
        }
        // The effective client: `chaddr` as sent (mutated or not).
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&payload[28..34]);
        let mac = MacAddr(mac);
        if let Some(r) = &reply {
            self.check_reply(mac, payload, r);
        }
        if exact {
            match (expect(m, truncated), dropped) {
                (Expect::Dropped(want), got) => assert_eq!(got, Some(want), "{m:?}"),
                (Expect::Answer(types), None) => {
                    let t = reply.as_ref().map(|r| r.msg_type);
                    assert!(
                        t.is_none_or(|t| types.contains(&t)),
                        "{m:?} answered with type {t:?}"
                    );
                    let exhausted = m.msg_type == DISCOVER && t.is_none();
                    self.check_counters(&before, &after, reply.as_ref(), exhausted);
                    if exhausted {
                        self.check_exhausted(mac);
                    }
                    self.follow(m, reply.as_ref());
                }
                (Expect::Answer(_), Some(r)) => panic!("{m:?} dropped ({r})"),
            }
        } else {
            let exhausted = after.dhcp_pool_exhausted != before.dhcp_pool_exhausted;
            assert!(!exhausted || reply.is_none());
            self.check_counters(&before, &after, reply.as_ref(), exhausted);
            self.model.inexact = true;
            self.follow_reply(mac, reply.as_ref());
            // What else the message did is unknown: keep what the server still has.
            let listing = self.router.dhcp_leases(NET, self.now);
            self.model.held.retain(|mac, (ip, _)| {
                listing
                    .iter()
                    .any(|l| l.mac == *mac && l.ip == *ip && l.bound)
            });
        }
        self.check_state();
        reply
    }

    /// The answer to client `mac`'s request bytes `req`.
    fn check_reply(&self, mac: MacAddr, req: &[u8], r: &Reply) {
        let ciaddr = Ipv4Addr::new(req[12], req[13], req[14], req[15]);
        let broadcast_flag = req[10] & 0x80 != 0;
        // RFC 2131 4.1, with `giaddr` zero.
        let to = if r.msg_type == NAK
            || (ciaddr.is_unspecified() && (broadcast_flag || r.yiaddr.is_unspecified()))
        {
            (Ipv4Addr::BROADCAST, MacAddr::BROADCAST)
        } else if !ciaddr.is_unspecified() {
            (ciaddr, mac)
        } else {
            (r.yiaddr, mac)
        };
        assert_eq!((r.dst_ip, r.dst_mac), to, "addressing of {r:?}");
        let lease = u32::try_from(self.setup.lease.as_secs()).ok();
        match (r.msg_type, r.yiaddr.is_unspecified()) {
            (OFFER | ACK, false) => {
                assert_eq!(r.lease, lease, "lease time of {r:?}");
                self.check_address(mac, r.yiaddr);
                if r.msg_type == ACK {
                    let holder =
                        self.model.held.iter().find(|&(&m, &(ip, until))| {
                            m != mac && ip == r.yiaddr && until > self.now
                        });
                    assert!(
                        holder.is_none(),
                        "{} ACKed to {mac} held by {holder:?}",
                        r.yiaddr
                    );
                }
            }
            // DHCPINFORM (RFC 2131 3.4: no lease time) and DHCPNAK.
            (ACK | NAK, true) => assert_eq!(r.lease, None, "{r:?}"),
            _ => panic!("answer {r:?}"),
        }
    }

    /// `ip` may be given to `mac`.
    fn check_address(&self, mac: MacAddr, ip: Ipv4Addr) {
        assert!(self.setup.usable(ip), "{ip} given out: {:?}", self.setup);
        let own_static = self.model.statics.get(&mac) == Some(&ip);
        assert!(
            own_static || self.setup.in_pool(ip),
            "{ip} outside the pool"
        );
        let other = self
            .model
            .statics
            .iter()
            .find(|&(&m, &a)| m != mac && a == ip);
        assert!(other.is_none(), "{ip} is the static lease of {other:?}");
    }

    fn check_counters(
        &self,
        before: &RouterCounters,
        after: &RouterCounters,
        reply: Option<&Reply>,
        exhausted: bool,
    ) {
        let t = reply.map(|r| (r.msg_type, r.yiaddr.is_unspecified()));
        let delta = |a: u64, b: u64| a.wrapping_sub(b);
        let offers = delta(after.dhcp_offers, before.dhcp_offers);
        let leases = delta(after.dhcp_leases, before.dhcp_leases);
        let naks = delta(after.dhcp_naks, before.dhcp_naks);
        let full = delta(after.dhcp_pool_exhausted, before.dhcp_pool_exhausted);
        assert_eq!(offers, u64::from(t == Some((OFFER, false))));
        assert_eq!(leases, u64::from(t == Some((ACK, false))));
        assert_eq!(naks, u64::from(t == Some((NAK, true))));
        assert_eq!(full, u64::from(exhausted));
    }

    /// A DISCOVER from `mac` went unanswered: no usable pool address was free.
    fn check_exhausted(&self, mac: MacAddr) {
        assert!(
            !self.model.statics.contains_key(&mac),
            "{mac} has a static lease"
        );
        if self.model.inexact {
            return;
        }
        let listing = self.router.dhcp_leases(NET, self.now);
        for ip in self.setup.usable_pool() {
            let leased = listing.iter().any(|l| l.ip == ip && l.mac != mac);
            let declined = self.model.declined.get(&ip).is_some_and(|&t| t > self.now);
            assert!(leased || declined, "pool exhausted but {ip} is free");
        }
    }

    /// The model after an unmutated message and its answer.
    fn follow(&mut self, m: &Msg, reply: Option<&Reply>) {
        let (model, mac) = (&mut self.model, m.chaddr);
        match m.msg_type {
            // A client in INIT has no address (RFC 2131 4.4.1).
            DISCOVER => {
                model.held.remove(&mac);
            }
            REQUEST if m.server_id.is_some_and(|s| s != GATEWAY) => {
                model.held.remove(&mac);
            }
            DECLINE => {
                if m.server_id == Some(GATEWAY)
                    && let Some(ip) = m.requested
                {
                    model.declined.insert(ip, self.now + self.setup.lease);
                    if model.held.get(&mac).is_some_and(|h| h.0 == ip) {
                        model.held.remove(&mac);
                    }
                }
            }
            RELEASE if model.held.get(&mac).is_some_and(|h| h.0 == m.ciaddr) => {
                model.held.remove(&mac);
            }
            _ => {}
        }
        self.follow_reply(mac, reply);
    }

    fn follow_reply(&mut self, mac: MacAddr, reply: Option<&Reply>) {
        let Some(r) = reply else { return };
        let model = &mut self.model;
        match (r.msg_type, r.yiaddr.is_unspecified()) {
            (OFFER, false) => {
                model.offered.insert(mac, r.yiaddr);
            }
            (ACK, false) => {
                model.offered.insert(mac, r.yiaddr);
                model
                    .held
                    .insert(mac, (r.yiaddr, self.now + self.setup.lease));
            }
            (NAK, _) => {
                model.held.remove(&mac);
            }
            _ => {}
        }
    }

    /// The lease listing against the pool and the model.
    pub(super) fn check_state(&self) {
        let listing = self.router.dhcp_leases(NET, self.now);
        for (i, l) in listing.iter().enumerate() {
            let twice = listing[i + 1..].iter().find(|o| o.ip == l.ip);
            assert!(
                twice.is_none(),
                "{} listed for {} and {twice:?}",
                l.ip,
                l.mac
            );
            if !l.is_static {
                assert!(
                    self.setup.in_pool(l.ip) && self.setup.usable(l.ip),
                    "dynamic lease {l:?} outside the usable pool"
                );
            }
        }
        let dynamic = listing.iter().filter(|l| !l.is_static).count();
        assert!(
            dynamic <= self.setup.usable_pool().count(),
            "{dynamic} leases"
        );
        let mut statics: Vec<(MacAddr, Ipv4Addr)> = listing
            .iter()
            .filter(|l| l.is_static)
            .map(|l| (l.mac, l.ip))
            .collect();
        let mut want: Vec<_> = self.model.statics.iter().map(|(&m, &a)| (m, a)).collect();
        statics.sort();
        want.sort();
        assert_eq!(statics, want, "static leases");
        for (&mac, &(ip, until)) in &self.model.held {
            if until > self.now {
                let kept = listing
                    .iter()
                    .any(|l| l.mac == mac && l.ip == ip && l.bound);
                assert!(kept, "{ip}, ACKed to {mac}, lost: {listing:?}");
            }
        }
    }

    /// DISCOVER, then REQUEST (SELECTING) of what was offered, from client `c`.
    pub(super) fn dora(&mut self, c: u8) {
        let mac = super::client_mac(c);
        let mut m = Msg {
            msg_type: DISCOVER,
            xid: self.next_xid,
            chaddr: mac,
            eth_src: mac,
            broadcast_flag: c & 0x10 != 0,
            unicast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            requested: None,
            server_id: None,
        };
        self.next_xid = self.next_xid.wrapping_add(1);
        let offer = self.send(&m, &super::encode(&m, &[], true), true, false);
        if let Some(offer) = offer.filter(|r| r.msg_type == OFFER) {
            m.msg_type = REQUEST;
            m.requested = Some(offer.yiaddr);
            m.server_id = Some(GATEWAY);
            let ack = self.send(&m, &super::encode(&m, &[], true), true, false);
            assert_eq!(ack.map(|r| r.msg_type), Some(ACK), "offer not honoured");
        }
    }
}

//! The router's counters: drops by [`RouterDrop`] reason and what went where.
//!
//! Plain `u64`s that wrap; the hot path only increments. Each packet the router
//! drops is counted once, under one reason, when its verdict is made (held packets
//! that never resolve: when the router gives up on them).

use super::RouterDrop;

/// One counter per [`RouterDrop`] reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouterDropCounters {
    counts: [u64; RouterDrop::COUNT],
}

impl RouterDropCounters {
    /// Packets dropped for `reason`.
    #[inline]
    pub const fn get(&self, reason: RouterDrop) -> u64 {
        self.counts[reason.index()]
    }

    /// `(reason, count)` for every reason, zeros included, in [`RouterDrop::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (RouterDrop, u64)> + '_ {
        RouterDrop::ALL.iter().map(|&r| (r, self.get(r)))
    }

    /// Packets dropped for any reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |sum, &n| sum.wrapping_add(n))
    }

    #[inline]
    pub(super) fn bump(&mut self, reason: RouterDrop) {
        let slot = &mut self.counts[reason.index()];
        *slot = slot.wrapping_add(1);
    }
}

/// Serialised as a map from [`RouterDrop::as_str`] to the count.
impl serde::Serialize for RouterDropCounters {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(RouterDrop::COUNT))?;
        for (reason, count) in self.iter() {
            map.serialize_entry(reason.as_str(), &count)?;
        }
        map.end()
    }
}

/// Router-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RouterCounters {
    /// Packets dropped, by reason.
    pub drops: RouterDropCounters,
    /// IP packets sent to the uplink (`RouterVerdict::Uplink`, fragments and ICMP
    /// errors queued to the uplink).
    pub to_uplink_packets: u64,
    /// Bytes of those packets (IP header included).
    pub to_uplink_bytes: u64,
    /// IP packets accepted from the uplink (`ToNetwork` or `Queued`).
    pub from_uplink_packets: u64,
    /// Bytes of those packets.
    pub from_uplink_bytes: u64,
    /// ARP replies sent for the router's addresses.
    pub arp_replies: u64,
    /// ARP requests sent (resolution, retries and refresh probes).
    pub arp_requests_sent: u64,
    /// Neighbour solicitations sent.
    pub ndp_solicitations_sent: u64,
    /// Neighbour advertisements sent for the router's addresses.
    pub ndp_advertisements_sent: u64,
    /// Router advertisements sent (solicited and unsolicited).
    pub router_advertisements_sent: u64,
    /// ICMP and ICMPv6 echo replies.
    pub echo_replies: u64,
    /// ICMP and ICMPv6 errors queued.
    pub icmp_errors_sent: u64,
    /// ICMP and ICMPv6 errors not sent because of the rate limit.
    pub icmp_errors_suppressed: u64,
    /// TCP resets sent for the router's own addresses.
    pub tcp_resets_sent: u64,
    /// IPv4 fragments created (RFC 791).
    pub fragments_created: u64,
    /// Packets forwarded back into their own network (sent to the gateway MAC for a
    /// neighbour on the same subnet).
    pub hairpinned: u64,
    /// Neighbour entries created.
    pub neighbours_learned: u64,
    /// Neighbour entries removed for lack of confirmation.
    pub neighbours_expired: u64,
    /// DHCPOFFERs sent.
    pub dhcp_offers: u64,
    /// DHCPACKs sent for a lease (not for DHCPINFORM).
    pub dhcp_leases: u64,
    /// DHCPNAKs sent.
    pub dhcp_naks: u64,
    /// DHCPDISCOVERs left unanswered because the pool had no free address.
    pub dhcp_pool_exhausted: u64,
    /// Generated packets dropped because the transmit queue was full (or did not fit
    /// the `poll_transmit` buffer).
    pub queue_overflow: u64,
}

impl RouterCounters {
    pub(super) fn count_to_uplink(&mut self, len: usize) {
        self.to_uplink_packets = self.to_uplink_packets.wrapping_add(1);
        self.to_uplink_bytes = self.to_uplink_bytes.wrapping_add(len as u64);
    }

    pub(super) fn count_from_uplink(&mut self, len: usize) {
        self.from_uplink_packets = self.from_uplink_packets.wrapping_add(1);
        self.from_uplink_bytes = self.from_uplink_bytes.wrapping_add(len as u64);
    }
}

/// Increments a counter field, wrapping.
macro_rules! bump {
    ($counter:expr) => {
        $counter = $counter.wrapping_add(1)
    };
}
pub(super) use bump;

//! Drop reasons and the plain-`u64` counters the bridge keeps per port and switch-wide.
//!
//! Layer: sans-IO core, shared by the hot path (which only increments) and the control
//! path (which copies the structs out for `tapnet stats`). Every counter is a plain `u64`
//! that wraps silently; nothing here allocates. Each dropped frame is counted exactly
//! once under exactly one [`DropReason`], both on its ingress port (when the port is
//! known) and switch-wide.

use core::fmt;

/// Why a frame was dropped. Each reason has its own counter.
///
/// The discriminants are dense (`0..DropReason::COUNT`) and index [`DropCounters`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Shorter than an Ethernet header (14 bytes).
    Runt = 0,
    /// Longer than the network's `max_frame_len`.
    Oversized = 1,
    /// Source MAC is multicast, broadcast or all-zeros (IEEE 802-2014 8.2: only an
    /// individual address may appear as a source).
    InvalidSourceMac = 2,
    /// 01:80:c2:00:00:0x, which IEEE 802.1D bridges never forward (802.1D-2004 7.12.6).
    LinkLocalGroup = 3,
    /// The ingress port is not attached.
    UnknownPort = 4,
    /// The destination was learned on the ingress port itself (the Linux bridge drops
    /// these too: the station already received the frame on its own segment).
    DestinationIsIngress = 5,
    /// Container to container on a network with ICC disabled.
    IccDisabled = 6,
    /// Flooding found no port to send to.
    NoEgress = 7,
    /// A guarded port sent a frame whose Ethernet source is not its MAC, or any port
    /// sent one whose source is a MAC pinned to another port (see
    /// [`PortGuard`](crate::PortGuard)).
    SpoofedMac = 8,
    /// A guarded port sent an IPv4 or IPv6 packet whose source address it was not
    /// given (or a frame whose inner protocol the guard cannot read: see
    /// [`PortGuard`](crate::PortGuard)).
    SpoofedIp = 9,
    /// A guarded port sent ARP whose sender hardware address is not the frame's source
    /// MAC or whose sender protocol address it was not given (RFC 826, RFC 5227).
    SpoofedArp = 10,
    /// A guarded port sent neighbour discovery it has no right to: an advertisement
    /// for an address it was not given or naming another link-layer address, a
    /// duplicate address detection probe for another address, a router advertisement
    /// or redirect (RA guard, RFC 6105), or NDP the guard cannot read (RFC 7113).
    SpoofedNd = 11,
}

impl DropReason {
    /// How many reasons there are.
    pub const COUNT: usize = 12;

    /// Every reason, in discriminant order (the order [`DropCounters::iter`] yields).
    pub const ALL: [Self; Self::COUNT] = [
        Self::Runt,
        Self::Oversized,
        Self::InvalidSourceMac,
        Self::LinkLocalGroup,
        Self::UnknownPort,
        Self::DestinationIsIngress,
        Self::IccDisabled,
        Self::NoEgress,
        Self::SpoofedMac,
        Self::SpoofedIp,
        Self::SpoofedArp,
        Self::SpoofedNd,
    ];

    /// A stable snake_case name for the CLI and for metrics labels (`"icc_disabled"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Runt => "runt",
            Self::Oversized => "oversized",
            Self::InvalidSourceMac => "invalid_source_mac",
            Self::LinkLocalGroup => "link_local_group",
            Self::UnknownPort => "unknown_port",
            Self::DestinationIsIngress => "destination_is_ingress",
            Self::IccDisabled => "icc_disabled",
            Self::NoEgress => "no_egress",
            Self::SpoofedMac => "spoofed_mac",
            Self::SpoofedIp => "spoofed_ip",
            Self::SpoofedArp => "spoofed_arp",
            Self::SpoofedNd => "spoofed_nd",
        }
    }

    /// The dense index of this reason, `0..COUNT`.
    #[inline]
    const fn index(self) -> usize {
        self as usize
    }

    /// Whether a port's source guard (or a pinned MAC) gave this drop.
    pub const fn is_spoofing(self) -> bool {
        matches!(
            self,
            Self::SpoofedMac | Self::SpoofedIp | Self::SpoofedArp | Self::SpoofedNd
        )
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DropReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One counter per [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    counts: [u64; DropReason::COUNT],
}

impl DropCounters {
    /// Frames dropped for `reason`.
    #[inline]
    pub const fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    /// `(reason, count)` for every reason, zeros included, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&reason| (reason, self.get(reason)))
    }

    /// Frames dropped for any reason.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |sum, &n| sum.wrapping_add(n))
    }

    /// Counts one more drop for `reason`.
    #[inline]
    pub(crate) fn bump(&mut self, reason: DropReason) {
        let slot = &mut self.counts[reason.index()];
        *slot = slot.wrapping_add(1);
    }
}

/// Serialised as a map from [`DropReason::as_str`] to the count.
impl serde::Serialize for DropCounters {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(DropReason::COUNT))?;
        for (reason, count) in self.iter() {
            map.serialize_entry(reason.as_str(), &count)?;
        }
        map.end()
    }
}

/// Counters of one port, as seen by the switch.
///
/// `rx` counts every frame handed to [`Switch::handle_frame`](crate::Switch::handle_frame)
/// on this port, dropped or not. `tx` counts the frames the switch decided to send to
/// this port (one per `Forward` naming it, one per `Flood` list containing it), counted
/// when the verdict is made: the shell's own transmit errors are its business.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortCounters {
    /// Frames received on this port.
    pub rx_packets: u64,
    /// Bytes received on this port (whole frames, Ethernet header included).
    pub rx_bytes: u64,
    /// Frames the switch sent to this port.
    pub tx_packets: u64,
    /// Bytes the switch sent to this port.
    pub tx_bytes: u64,
    /// Frames received on this port and dropped, by reason.
    pub drops: DropCounters,
}

impl PortCounters {
    /// `(reason, count)` of the frames dropped on ingress at this port.
    pub fn drops_by_reason(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        self.drops.iter()
    }

    #[inline]
    pub(crate) fn count_rx(&mut self, len: u64) {
        self.rx_packets = self.rx_packets.wrapping_add(1);
        self.rx_bytes = self.rx_bytes.wrapping_add(len);
    }

    #[inline]
    pub(crate) fn count_tx(&mut self, len: u64) {
        self.tx_packets = self.tx_packets.wrapping_add(1);
        self.tx_bytes = self.tx_bytes.wrapping_add(len);
    }
}

/// Switch-wide counters.
///
/// Invariant: `rx_packets == forwarded + flooded + drops.total()` (each frame handed to
/// the switch ends in exactly one verdict), up to wrapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SwitchCounters {
    /// Frames handed to the switch, on any port (unknown ports included).
    pub rx_packets: u64,
    /// Bytes handed to the switch.
    pub rx_bytes: u64,
    /// Frames that got a `Forward` verdict.
    pub forwarded: u64,
    /// Frames that got a `Flood` verdict.
    pub flooded: u64,
    /// Copies the switch decided to send, over all ports (a flood to n ports counts n).
    pub tx_packets: u64,
    /// Bytes of those copies.
    pub tx_bytes: u64,
    /// Frames dropped, by reason.
    pub drops: DropCounters,
    /// New MAC entries learned.
    pub learned: u64,
    /// Source addresses not learned because the MAC table was full and nothing had
    /// expired. Such stations still send; frames to them are flooded.
    pub learn_table_full: u64,
    /// A learned address seen on another port of the same network (IEEE 802.1D-2004
    /// 7.8: the filtering entry is updated to the new port).
    pub station_moves: u64,
    /// MAC entries removed because they were not refreshed within the ageing time.
    pub aged_out: u64,
}

impl SwitchCounters {
    #[inline]
    pub(crate) fn count_drop(&mut self, reason: DropReason) {
        self.drops.bump(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_once_in_index_order() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert!(
            names
                .iter()
                .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
        assert_eq!(DropReason::IccDisabled.to_string(), "icc_disabled");
    }

    #[test]
    fn drop_counters_count_per_reason() {
        let mut drops = DropCounters::default();
        drops.bump(DropReason::Runt);
        drops.bump(DropReason::Runt);
        drops.bump(DropReason::NoEgress);
        assert_eq!(drops.get(DropReason::Runt), 2);
        assert_eq!(drops.get(DropReason::NoEgress), 1);
        assert_eq!(drops.get(DropReason::Oversized), 0);
        assert_eq!(drops.total(), 3);
        assert_eq!(drops.iter().count(), DropReason::COUNT);
        assert_eq!(
            drops.iter().find(|&(r, _)| r == DropReason::Runt),
            Some((DropReason::Runt, 2))
        );
    }
}

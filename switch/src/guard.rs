//! Source guards: what a port may send (port security, as OVS/libvirt's
//! `clean-traffic` filter or a switch's IP source guard and RA guard).
//!
//! Layer: sans-IO core, private to the crate but for [`PortGuard`]; the bridge in
//! `bridge.rs` asks [`PortGuard::check`] about every frame from a guarded port before it
//! learns or forwards it, and feeds [`PortGuard::snoop_dhcp_ack`] the DHCP
//! acknowledgements it delivers to one. A guarded port may use only what it was given:
//!
//! - its MAC as Ethernet source (when the guard knows it) and as ARP sender hardware
//!   address (always: the frame's own source);
//! - its IPv4 addresses (and the addresses a DHCP server on a trusted port acked to it,
//!   for their lease time) as IPv4 source and ARP sender protocol address, and 0.0.0.0
//!   only for an ARP probe (RFC 5227 2.1.1) or a DHCP client's UDP 68 -> 67 (RFC 2131
//!   4.1);
//! - its IPv6 addresses, the EUI-64 link-local address of its MAC and the EUI-64 SLAAC
//!   address of its MAC in each of its /64 prefixes (RFC 4291 appendix A, RFC 4862 5.5.3),
//!   and any address of its open ranges but the denied ones, as IPv6 source and as the
//!   target of neighbour advertisements and duplicate address detection; `::` only for
//!   DAD neighbour solicitations (RFC 4862 5.4.2), MLD reports (RFC 3590, RFC 3810
//!   5.2.13) and router solicitations (RFC 4861 6.3.7).
//!
//! NDP (RFC 4861): a neighbour advertisement for an address it was not given, a
//! link-layer address option (source in NS/RS, target in NA) that is not the frame's
//! source MAC, a router advertisement or redirect (RA guard, RFC 6105), fragmented NDP
//! (RFC 6980) and IPv6 whose extension-header chain cannot be followed to its
//! upper-layer header within the frame (RFC 7112, RFC 7113 3) are refused. Frames are
//! looked through up to two VLAN tags (802.1Q 0x8100, 802.1ad 0x88a8); other
//! ethertypes pass, as they cannot carry a forged IP or ARP.
//!
//! A frame too short for the check it needs (a truncated ARP or IP header, a VLAN tag
//! cut off, a third tag) cannot be vouched for and is refused under the reason of what
//! it claims to be: `spoofed_arp` for ARP, `spoofed_nd` for NDP and IPv6 headers that
//! cannot be followed, `spoofed_ip` otherwise. (`runt` stays what it was: shorter than
//! an Ethernet header.)
//!
//! Checking allocates nothing and reads each header once; the address sets are small
//! vectors built on the control path.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{DropReason, Instant, MacAddr};

/// How many DHCP-acked addresses a guard remembers at once (the oldest lease gives way).
pub const MAX_SNOOPED_LEASES: usize = 4;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// VLAN tags looked through.
const MAX_TAGS: usize = 2;

const PROTO_UDP: u8 = 17;
const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_AH: u8 = 51;
const NEXT_DEST_OPTS: u8 = 60;
const NEXT_ICMPV6: u8 = 58;
/// Extension headers followed before the chain counts as one that cannot be checked.
const MAX_EXTENSION_HEADERS: usize = 8;

const MLD_REPORT: u8 = 131;
const MLDV2_REPORT: u8 = 143;
const ROUTER_SOLICITATION: u8 = 133;
const ROUTER_ADVERTISEMENT: u8 = 134;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const REDIRECT: u8 = 137;
const OPTION_SOURCE_LINK_LAYER: u8 = 1;
const OPTION_TARGET_LINK_LAYER: u8 = 2;

const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;

/// One address a DHCP server acked to the port, until `expires`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SnoopedLease {
    addr: Ipv4Addr,
    expires: Instant,
}

/// What a port may send: see the module docs for the rules. Built on the control path
/// and handed to [`Switch::set_port_guard`](crate::Switch::set_port_guard).
///
/// ```
/// use std::net::{Ipv4Addr, Ipv6Addr};
/// use tapnet_switch::{MacAddr, PortGuard};
///
/// let guard = PortGuard::new(MacAddr([2, 0x42, 10, 1, 0, 2]))
///     .with_ipv4(Ipv4Addr::new(10, 1, 0, 2))
///     .with_ipv6(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2))
///     .with_slaac_prefix(Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0));
/// assert_eq!(guard.mac(), Some(MacAddr([2, 0x42, 10, 1, 0, 2])));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortGuard {
    /// The only Ethernet source (pinned in the MAC table); `None`: any valid source.
    mac: Option<MacAddr>,
    /// The EUI-64 interface identifier of `mac` (RFC 4291 appendix A).
    iid: Option<u64>,
    ipv4: Vec<Ipv4Addr>,
    ipv6: Vec<Ipv6Addr>,
    /// /64 prefixes (upper 64 bits) in which `mac`'s EUI-64 address is allowed.
    slaac: Vec<u64>,
    /// Ranges (network, prefix length) in which any address is allowed...
    ipv6_ranges: Vec<(u128, u8)>,
    /// ...but these.
    ipv6_denied: Vec<Ipv6Addr>,
    /// Learn addresses from DHCP acknowledgements delivered to the port.
    dhcp_snooping: bool,
    leases: [Option<SnoopedLease>; MAX_SNOOPED_LEASES],
}

impl PortGuard {
    /// A guard for a port whose MAC is `mac`: the only Ethernet source it may use, pinned
    /// in the MAC table; its EUI-64 link-local address is allowed. No IP address yet.
    pub fn new(mac: MacAddr) -> Self {
        Self {
            mac: Some(mac),
            iid: Some(eui64_iid(mac)),
            ..Self::any_mac()
        }
    }

    /// A guard for a port whose MAC is chosen by its station (a rootless container's
    /// kernel): any valid Ethernet source, but ARP and NDP must name the frame's own
    /// source MAC, and pinned addresses of other ports stay refused.
    pub fn any_mac() -> Self {
        Self {
            mac: None,
            iid: None,
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            slaac: Vec::new(),
            ipv6_ranges: Vec::new(),
            ipv6_denied: Vec::new(),
            dhcp_snooping: false,
            leases: [None; MAX_SNOOPED_LEASES],
        }
    }

    /// Allows `addr` as IPv4 source and ARP sender.
    #[must_use]
    pub fn with_ipv4(mut self, addr: Ipv4Addr) -> Self {
        if !self.ipv4.contains(&addr) {
            self.ipv4.push(addr);
        }
        self
    }

    /// Allows `addr` as IPv6 source and as the target of its NA and DAD.
    #[must_use]
    pub fn with_ipv6(mut self, addr: Ipv6Addr) -> Self {
        if !self.ipv6.contains(&addr) {
            self.ipv6.push(addr);
        }
        self
    }

    /// Allows the SLAAC address that the MAC's EUI-64 identifier forms in the /64
    /// `prefix` (what a host configures from a router advertisement with the A flag,
    /// RFC 4862 5.5.3). Without a known MAC this allows nothing.
    #[must_use]
    pub fn with_slaac_prefix(mut self, prefix: Ipv6Addr) -> Self {
        let upper = (u128::from(prefix) >> 64) as u64;
        if !self.slaac.contains(&upper) {
            self.slaac.push(upper);
        }
        self
    }

    /// Allows every address of `network/prefix_len` (for a station whose addresses
    /// are not known in advance), except the ones [`Self::without_ipv6`] denies.
    #[must_use]
    pub fn with_ipv6_range(mut self, network: Ipv6Addr, prefix_len: u8) -> Self {
        let len = prefix_len.min(128);
        let range = (u128::from(network) & prefix_mask(len), len);
        if !self.ipv6_ranges.contains(&range) {
            self.ipv6_ranges.push(range);
        }
        self
    }

    /// Never allows `addr` (another station's inside an open range: the gateway's).
    #[must_use]
    pub fn without_ipv6(mut self, addr: Ipv6Addr) -> Self {
        if !self.ipv6_denied.contains(&addr) {
            self.ipv6_denied.push(addr);
        }
        self
    }

    /// Also allows, for their lease time, the IPv4 addresses that a DHCP server on a
    /// trusted (non-container) port acknowledges to this port (DHCP snooping, as
    /// SAVI-DHCP, RFC 7513): the chaddr must be the guard's MAC when it is known.
    #[must_use]
    pub fn with_dhcp_snooping(mut self) -> Self {
        self.dhcp_snooping = true;
        self
    }

    /// The MAC the port must send from, if the guard knows it.
    pub fn mac(&self) -> Option<MacAddr> {
        self.mac
    }

    /// Whether DHCP acknowledgements to the port teach the guard addresses.
    pub fn snoops_dhcp(&self) -> bool {
        self.dhcp_snooping
    }

    /// Whether the port may send from IPv4 `addr` at `now` (0.0.0.0 excepted: that is
    /// allowed only in the cases the module docs give).
    pub fn allows_ipv4(&self, addr: Ipv4Addr, now: Instant) -> bool {
        self.ipv4.contains(&addr)
            || self
                .leases
                .iter()
                .flatten()
                .any(|l| l.addr == addr && l.expires > now)
    }

    /// Whether the port may send from (and advertise) IPv6 `addr` (`::` excepted).
    pub fn allows_ipv6(&self, addr: Ipv6Addr) -> bool {
        if self.ipv6_denied.contains(&addr) {
            return false;
        }
        if self.ipv6.contains(&addr) {
            return true;
        }
        let bits = u128::from(addr);
        let (upper, lower) = ((bits >> 64) as u64, bits as u64);
        if self.iid == Some(lower) && (upper == LINK_LOCAL_UPPER || self.slaac.contains(&upper)) {
            return true;
        }
        self.ipv6_ranges
            .iter()
            .any(|&(network, len)| bits & prefix_mask(len) == network)
    }

    /// The addresses DHCP acked to the port that are still leased at `now`.
    pub fn snooped_leases(&self, now: Instant) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.leases
            .iter()
            .flatten()
            .filter(move |l| l.expires > now)
            .map(|l| l.addr)
    }

    /// Checks one frame from the port (at least an Ethernet header long, with a valid
    /// source: the bridge has checked that). `Err` names the drop reason.
    #[inline]
    pub(crate) fn check(&self, frame: &[u8], now: Instant) -> Result<(), DropReason> {
        let src = mac_at(frame, 6).ok_or(DropReason::SpoofedMac)?;
        if self.mac.is_some_and(|mac| mac != src) {
            return Err(DropReason::SpoofedMac);
        }
        let (ethertype, at) = inner_ethertype(frame).ok_or(DropReason::SpoofedIp)?;
        let payload = &frame[at..];
        match ethertype {
            ETHERTYPE_ARP => self.check_arp(payload, src, now),
            ETHERTYPE_IPV4 => self.check_ipv4(payload, now),
            ETHERTYPE_IPV6 => self.check_ipv6(payload, src),
            // Other protocols carry no IP or ARP address to forge.
            _ => Ok(()),
        }
    }

    /// RFC 826 over Ethernet for IPv4; anything else claiming to be ARP is refused.
    fn check_arp(&self, arp: &[u8], src: MacAddr, now: Instant) -> Result<(), DropReason> {
        let bad = Err(DropReason::SpoofedArp);
        let Some(arp) = arp.get(..28) else { return bad };
        if arp[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
            return bad;
        }
        if arp[8..14] != src.0 {
            return bad;
        }
        let spa = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
        // 0.0.0.0: an ARP probe (RFC 5227 2.1.1).
        if spa.is_unspecified() || self.allows_ipv4(spa, now) {
            Ok(())
        } else {
            bad
        }
    }

    fn check_ipv4(&self, ip: &[u8], now: Instant) -> Result<(), DropReason> {
        let bad = Err(DropReason::SpoofedIp);
        let Some(header) = ip.get(..20) else {
            return bad;
        };
        let source = Ipv4Addr::new(header[12], header[13], header[14], header[15]);
        if self.allows_ipv4(source, now) {
            return Ok(());
        }
        if source.is_unspecified() && is_dhcp_client_datagram(ip) {
            return Ok(());
        }
        bad
    }

    fn check_ipv6(&self, ip: &[u8], src_mac: MacAddr) -> Result<(), DropReason> {
        let Some(header) = ip.get(..40) else {
            return Err(DropReason::SpoofedIp);
        };
        let source = ipv6_at(header, 8);
        let upper = upper_layer(ip);
        let icmp_type = match upper {
            UpperLayer::Icmpv6 { at, .. } => ip.get(at).copied(),
            _ => None,
        };
        let source_ok = if source.is_unspecified() {
            // DAD (RFC 4862 5.4.2), MLD reports before an address exists (RFC 3590) and
            // router solicitations from a host without one (RFC 4861 6.3.7).
            matches!(
                icmp_type,
                Some(NEIGHBOR_SOLICITATION | ROUTER_SOLICITATION | MLD_REPORT | MLDV2_REPORT)
            )
        } else {
            self.allows_ipv6(source)
        };
        if !source_ok {
            return Err(DropReason::SpoofedIp);
        }
        match upper {
            UpperLayer::Other => Ok(()),
            // Could hide NDP (RFC 7113 3).
            UpperLayer::Unreadable => Err(DropReason::SpoofedNd),
            UpperLayer::Icmpv6 { at, fragmented } => {
                let end = ipv6_end(ip);
                let message = ip.get(at..end).ok_or(DropReason::SpoofedNd)?;
                self.check_icmpv6(message, source, src_mac, fragmented)
            }
        }
    }

    /// RFC 4861 messages from a host: NS, NA and RS with link-layer options naming the
    /// frame's source, NA and DAD only for its own addresses, no RA or redirect.
    fn check_icmpv6(
        &self,
        message: &[u8],
        source: Ipv6Addr,
        src_mac: MacAddr,
        fragmented: bool,
    ) -> Result<(), DropReason> {
        let bad = Err(DropReason::SpoofedNd);
        let Some(&kind) = message.first() else {
            return bad;
        };
        let is_ndp = matches!(
            kind,
            ROUTER_SOLICITATION
                | ROUTER_ADVERTISEMENT
                | NEIGHBOR_SOLICITATION
                | NEIGHBOR_ADVERTISEMENT
                | REDIRECT
        );
        if !is_ndp {
            return Ok(());
        }
        // RFC 6980: NDP is never fragmented; a fragment could hide its options.
        if fragmented {
            return bad;
        }
        match kind {
            ROUTER_SOLICITATION => check_link_layer_options(
                message.get(8..).ok_or(DropReason::SpoofedNd)?,
                OPTION_SOURCE_LINK_LAYER,
                src_mac,
            ),
            NEIGHBOR_SOLICITATION | NEIGHBOR_ADVERTISEMENT => {
                let Some(fixed) = message.get(..24) else {
                    return bad;
                };
                let target = ipv6_at(fixed, 8);
                let own_target = self.allows_ipv6(target);
                if kind == NEIGHBOR_ADVERTISEMENT && !own_target
                    || kind == NEIGHBOR_SOLICITATION && source.is_unspecified() && !own_target
                {
                    return bad;
                }
                let option = if kind == NEIGHBOR_SOLICITATION {
                    OPTION_SOURCE_LINK_LAYER
                } else {
                    OPTION_TARGET_LINK_LAYER
                };
                check_link_layer_options(&message[24..], option, src_mac)
            }
            // ROUTER_ADVERTISEMENT, REDIRECT: routers only (RA guard, RFC 6105).
            _ => bad,
        }
    }

    /// Learns the lease of a DHCPACK delivered to the port (see
    /// [`Self::with_dhcp_snooping`]); `now` is when it passed.
    pub(crate) fn snoop_dhcp_ack(&mut self, ack: &DhcpAck, now: Instant) {
        if !self.dhcp_snooping || self.mac.is_some_and(|mac| mac != ack.chaddr) {
            return;
        }
        let addr = ack.yiaddr;
        if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
            return;
        }
        let expires = now + core::time::Duration::from_secs(u64::from(ack.lease_secs));
        let lease = Some(SnoopedLease { addr, expires });
        // The same address renewed, else a free or expired slot, else the lease that
        // ends first gives way.
        let slot = self
            .leases
            .iter()
            .position(|l| l.is_some_and(|l| l.addr == addr))
            .or_else(|| {
                self.leases
                    .iter()
                    .position(|l| l.is_none_or(|l| l.expires <= now))
            })
            .unwrap_or_else(|| {
                (0..MAX_SNOOPED_LEASES)
                    .min_by_key(|&i| self.leases[i].map(|l| l.expires))
                    .unwrap_or(0)
            });
        self.leases[slot] = lease;
    }
}

/// A DHCPACK's binding (RFC 2131 4.3.1): client hardware address, address, lease time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DhcpAck {
    pub(crate) chaddr: MacAddr,
    pub(crate) yiaddr: Ipv4Addr,
    pub(crate) lease_secs: u32,
}

/// The binding of `frame` if it is an untagged IPv4 DHCPACK from a server (UDP 67 ->
/// 68, BOOTREPLY over Ethernet, option 53 = 5 with a lease time, option 51).
pub(crate) fn dhcp_ack(frame: &[u8]) -> Option<DhcpAck> {
    const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
    if frame.get(12..14)? != ETHERTYPE_IPV4.to_be_bytes() {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ihl < 20 || *ip.get(9)? != PROTO_UDP || is_later_fragment(ip)? {
        return None;
    }
    let udp = ip.get(ihl..)?;
    if be16(udp, 0)? != DHCP_SERVER_PORT || be16(udp, 2)? != DHCP_CLIENT_PORT {
        return None;
    }
    let bootp = udp.get(8..)?;
    // op BOOTREPLY, htype Ethernet, hlen 6.
    if bootp.get(..3)? != [2, 1, 6] || bootp.get(236..240)? != MAGIC_COOKIE {
        return None;
    }
    let yiaddr = Ipv4Addr::new(bootp[16], bootp[17], bootp[18], bootp[19]);
    let chaddr = mac_at(bootp, 28)?;
    let (mut is_ack, mut lease_secs) = (false, None);
    let mut options = bootp.get(240..)?;
    // RFC 2132 2: pad (0) is one byte, end (255) stops, others are code, length, value.
    while let Some((&code, rest)) = options.split_first() {
        match code {
            0 => options = rest,
            255 => break,
            _ => {
                let (&len, rest) = rest.split_first()?;
                let value = rest.get(..usize::from(len))?;
                match (code, value) {
                    (53, [kind]) => is_ack = *kind == 5,
                    (51, &[a, b, c, d]) => lease_secs = Some(u32::from_be_bytes([a, b, c, d])),
                    _ => {}
                }
                options = &rest[usize::from(len)..];
            }
        }
    }
    let lease_secs = lease_secs?;
    is_ack.then_some(DhcpAck {
        chaddr,
        yiaddr,
        lease_secs,
    })
}

/// Where the upper-layer header of an IPv6 packet is, after its extension headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UpperLayer {
    /// ICMPv6 at this offset; `fragmented`: inside a first fragment.
    Icmpv6 { at: usize, fragmented: bool },
    /// Another protocol, or a non-first fragment (no upper-layer header in it).
    Other,
    /// The chain is cut off by the frame's end or longer than we follow.
    Unreadable,
}

/// Follows the extension headers of `ip` (at least 40 bytes; RFC 8200 4).
fn upper_layer(ip: &[u8]) -> UpperLayer {
    let end = ipv6_end(ip);
    let (mut next, mut at, mut fragmented) = (ip[6], 40usize, false);
    for _ in 0..=MAX_EXTENSION_HEADERS {
        let len = match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => match ip.get(at + 1) {
                Some(&n) => (usize::from(n) + 1) * 8,
                None => return UpperLayer::Unreadable,
            },
            // RFC 4302 2.2: the length is in 4-octet units, minus 2.
            NEXT_AH => match ip.get(at + 1) {
                Some(&n) => (usize::from(n) + 2) * 4,
                None => return UpperLayer::Unreadable,
            },
            NEXT_FRAGMENT => {
                let Some(offset) = be16(ip, at + 2) else {
                    return UpperLayer::Unreadable;
                };
                if offset >> 3 != 0 {
                    return UpperLayer::Other;
                }
                fragmented = true;
                8
            }
            NEXT_ICMPV6 if at < end => return UpperLayer::Icmpv6 { at, fragmented },
            NEXT_ICMPV6 => return UpperLayer::Unreadable,
            _ => return UpperLayer::Other,
        };
        next = ip[at];
        at += len;
        if at > end {
            return UpperLayer::Unreadable;
        }
    }
    UpperLayer::Unreadable
}

/// The end of the IPv6 packet within `ip`: its payload length, or the frame's end if
/// that comes first (or for a jumbogram's zero, RFC 2675).
fn ipv6_end(ip: &[u8]) -> usize {
    match be16(ip, 4) {
        Some(0) | None => ip.len(),
        Some(n) => (40 + usize::from(n)).min(ip.len()),
    }
}

/// Walks NDP options (RFC 4861 4.6): each link-layer address option of kind `wanted`
/// must name `mac`; a zero or overlong length makes the message unreadable.
fn check_link_layer_options(
    mut options: &[u8],
    wanted: u8,
    mac: MacAddr,
) -> Result<(), DropReason> {
    while !options.is_empty() {
        let (Some(&kind), Some(&units)) = (options.first(), options.get(1)) else {
            return Err(DropReason::SpoofedNd);
        };
        let len = usize::from(units) * 8;
        let Some(option) = options.get(..len).filter(|_| len > 0) else {
            return Err(DropReason::SpoofedNd);
        };
        if kind == wanted && option.get(2..8) != Some(&mac.0[..]) {
            return Err(DropReason::SpoofedNd);
        }
        options = &options[len..];
    }
    Ok(())
}

/// UDP from port 68 to port 67 in an unfragmented (or first-fragment) IPv4 packet.
fn is_dhcp_client_datagram(ip: &[u8]) -> bool {
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    ihl >= 20
        && ip[9] == PROTO_UDP
        && is_later_fragment(ip) == Some(false)
        && ip.get(ihl..).is_some_and(|udp| {
            be16(udp, 0) == Some(DHCP_CLIENT_PORT) && be16(udp, 2) == Some(DHCP_SERVER_PORT)
        })
}

/// Whether an IPv4 packet is a fragment other than the first (fragment offset != 0).
fn is_later_fragment(ip: &[u8]) -> Option<bool> {
    Some(be16(ip, 6)? & 0x1fff != 0)
}

/// The ethertype inside up to [`MAX_TAGS`] VLAN tags and where its payload starts;
/// `None` when a tag is cut off or there are more tags.
#[inline]
pub(crate) fn inner_ethertype(frame: &[u8]) -> Option<(u16, usize)> {
    let mut at = 12;
    let mut ethertype = be16(frame, at)?;
    for _ in 0..MAX_TAGS {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            return Some((ethertype, at + 2));
        }
        at += 4;
        ethertype = be16(frame, at)?;
    }
    (ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ).then_some((ethertype, at + 2))
}

/// fe80::/64, the upper half of every EUI-64 link-local address.
const LINK_LOCAL_UPPER: u64 = 0xfe80_0000_0000_0000;

/// The modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A).
fn eui64_iid(mac: MacAddr) -> u64 {
    let m = mac.0;
    u64::from_be_bytes([m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

fn prefix_mask(len: u8) -> u128 {
    match len {
        0 => 0,
        n => u128::MAX << (128 - u32::from(n.min(128))),
    }
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn mac_at(bytes: &[u8], at: usize) -> Option<MacAddr> {
    let b = bytes.get(at..at + 6)?;
    Some(MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]]))
}

fn ipv6_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(a)
}

#[cfg(test)]
mod tests;

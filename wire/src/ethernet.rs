//! Ethernet II frame view (IEEE 802.3 with an EtherType, as every IP stack sends).

use crate::MacAddr;

/// Destination MAC, source MAC, EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;

mod field {
    use core::ops::Range;
    pub(super) const DESTINATION: Range<usize> = 0..6;
    pub(super) const SOURCE: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
}

/// The frame is shorter than an Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TruncatedFrame;

/// An EtherType (or, below 0x0600, an 802.3 length field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4 (RFC 894).
    pub const IPV4: Self = Self(0x0800);
    /// ARP (RFC 826).
    pub const ARP: Self = Self(0x0806);
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: Self = Self(0x8100);
    /// IPv6 (RFC 2464).
    pub const IPV6: Self = Self(0x86dd);
}

/// A read-only view of an Ethernet II frame whose header is known to be present.
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<'a> {
    bytes: &'a [u8],
}

impl<'a> EthernetFrame<'a> {
    /// Checks that `bytes` holds at least a full header. No accessor panics afterwards.
    pub const fn new_checked(bytes: &'a [u8]) -> Result<Self, TruncatedFrame> {
        if bytes.len() < ETHERNET_HEADER_LEN {
            Err(TruncatedFrame)
        } else {
            Ok(Self { bytes })
        }
    }

    fn mac_at(&self, range: core::ops::Range<usize>) -> MacAddr {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&self.bytes[range]);
        MacAddr(mac)
    }

    /// Destination address.
    pub fn destination(&self) -> MacAddr {
        self.mac_at(field::DESTINATION)
    }

    /// Source address.
    pub fn source(&self) -> MacAddr {
        self.mac_at(field::SOURCE)
    }

    /// The EtherType of the outer header.
    pub fn ethertype(&self) -> EtherType {
        EtherType(u16::from_be_bytes([
            self.bytes[field::ETHERTYPE.start],
            self.bytes[field::ETHERTYPE.start + 1],
        ]))
    }

    /// Everything after the 14-byte header.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[ETHERNET_HEADER_LEN..]
    }

    /// The whole frame.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_etherparse_built_frame() {
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [0xff; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000);
        let mut bytes = Vec::new();
        builder.write(&mut bytes, b"hi").unwrap();
        let frame = EthernetFrame::new_checked(&bytes).unwrap();
        assert_eq!(frame.source(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert!(frame.destination().is_broadcast());
        assert_eq!(frame.ethertype(), EtherType::IPV4);
        assert_eq!(frame.payload().len(), bytes.len() - ETHERNET_HEADER_LEN);
    }

    #[test]
    fn rejects_runts() {
        for len in 0..ETHERNET_HEADER_LEN {
            assert_eq!(
                EthernetFrame::new_checked(&[0u8; 14][..len]).unwrap_err(),
                TruncatedFrame
            );
        }
    }
}

//! NAT-style incremental rewrites of packets with partial checksums: converting the
//! field with `partial_to_port_checksum`, updating it as a complete checksum (RFC
//! 1624) for new addresses and ports, converting back and completing it gives the
//! checksum computed from scratch over the rewritten packet.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use tapnet_wire::checksum;
use tapnet_wire::vnet::{partial_to_port_checksum, port_checksum_to_partial};

/// `l4` (a TCP or UDP header and payload) with its field at `offset` set to the
/// pseudo-header sum, as a kernel with checksum offload hands it over.
fn with_partial(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &mut [u8], offset: usize) {
    l4[offset..offset + 2].fill(0);
    let pseudo = checksum::fold(checksum::pseudo_v4(src, dst, proto, l4.len()));
    l4[offset..offset + 2].copy_from_slice(&pseudo.to_be_bytes());
}

/// Finishes the partial checksum as the receiving kernel (or a NIC) would.
fn complete(l4: &mut [u8], offset: usize) -> u16 {
    let value = match !checksum::fold(checksum::add(0, l4)) {
        0 => 0xffff,
        c => c,
    };
    l4[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
    value
}

proptest! {
    #[test]
    fn nat_on_a_partial_checksum_matches_recomputation(
        udp in any::<bool>(),
        src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new_src in any::<[u8; 4]>(),
        new_dst in any::<[u8; 4]>(),
        ports in any::<[u8; 4]>(), new_ports in any::<[u8; 4]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let (proto, offset, hdr) = if udp { (17, 6, 8) } else { (6, 16, 20) };
        let mut l4 = vec![0u8; hdr];
        l4[..4].copy_from_slice(&ports);
        l4.extend_from_slice(&payload);
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let (new_src, new_dst) = (Ipv4Addr::from(new_src), Ipv4Addr::from(new_dst));
        with_partial(src, dst, proto, &mut l4, offset);

        prop_assert!(partial_to_port_checksum(&mut l4, offset));
        // What NAT does: an incremental update for each changed address and port.
        let mut field = u16::from_be_bytes([l4[offset], l4[offset + 1]]);
        prop_assert_ne!(field, 0, "never reads as a UDP packet without checksum");
        field = checksum::update_bytes(field, &src.octets(), &new_src.octets());
        field = checksum::update_bytes(field, &dst.octets(), &new_dst.octets());
        field = checksum::update_bytes(field, &l4[..4], &new_ports);
        l4[..4].copy_from_slice(&new_ports);
        l4[offset..offset + 2].copy_from_slice(&field.to_be_bytes());
        prop_assert!(port_checksum_to_partial(&mut l4, offset));

        let got = complete(&mut l4, offset);
        let mut fresh = l4.clone();
        fresh[offset..offset + 2].fill(0);
        let want = checksum::upper_layer(
            checksum::pseudo_v4(new_src, new_dst, proto, fresh.len()),
            &fresh,
        );
        // 0 and 0xffff are the same one's-complement sum; both verify.
        prop_assert!(got == want || (got | want) == 0xffff && (got & want) == 0, "{got:#x} {want:#x}");
        let verify = checksum::fold(checksum::pseudo_v4(new_src, new_dst, proto, l4.len()) + checksum::add(0, &l4));
        prop_assert_eq!(verify, 0xffff);
    }
}

#[test]
fn short_headers_and_overlapping_fields_are_refused() {
    let mut l4 = [1u8; 8];
    assert!(!partial_to_port_checksum(&mut l4, 2));
    assert!(!partial_to_port_checksum(&mut l4, 7));
    assert!(!port_checksum_to_partial(&mut l4, 16));
    assert_eq!(l4, [1u8; 8]);
}

//! The Internet checksum (RFC 1071), its incremental update (RFC 1624) and the
//! pseudo-headers of UDP/TCP/ICMPv6 over IPv4 (RFC 768, RFC 9293 3.1) and IPv6
//! (RFC 8200 8.1).
//!
//! Sums are accumulated in a `u64` and folded at the end, so any packet up to 4 GiB
//! sums without overflow.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` as big-endian 16-bit words (an odd last byte padded with zero) to `sum`.
pub fn add(mut sum: u64, data: &[u8]) -> u64 {
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

/// Adds `data` to `sum` like [`add`], eight bytes at a time: the result differs from
/// [`add`]'s but folds ([`fold`]) to the same value (2^16 = 1 in one's-complement
/// arithmetic). For long payloads (checksum offload of 64 KiB segments). `sum` must
/// stay below 2^63; a 64 KiB buffer adds less than 2^47.
pub fn add_wide(mut sum: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        sum += (w >> 32) + (w & 0xffff_ffff);
    }
    add(sum, chunks.remainder())
}

/// Folds a sum to 16 bits (end-around carry), not inverted.
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The checksum field value for `data` (whose checksum field must be zero).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// True if `data`, checksum field included, sums to all-ones (RFC 1071 section 1).
pub fn verifies(data: &[u8]) -> bool {
    fold(add(0, data)) == 0xffff
}

/// Updates checksum `old_checksum` for a 16-bit word that changed from `old` to `new`
/// (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
#[must_use]
pub fn update_word(old_checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!old_checksum) + u64::from(!old) + u64::from(new))
}

/// The IPv4 pseudo-header sum: source, destination, zero + protocol, length.
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: usize) -> u64 {
    let sum = add(add(0, &src.octets()), &dst.octets());
    sum + u64::from(protocol) + (len as u64)
}

/// The IPv6 pseudo-header sum: source, destination, upper-layer length, next header.
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: usize) -> u64 {
    let sum = add(add(0, &src.octets()), &dst.octets());
    sum + u64::from(next_header) + (len as u64 >> 16) + (len as u64 & 0xffff)
}

/// The checksum of an upper-layer message (its checksum field zero) over a pseudo-header
/// sum. UDP transmits a computed 0 as 0xffff (RFC 768); harmless for the others,
/// since ~0 and 0xffff both verify.
pub fn upper_layer(pseudo: u64, data: &[u8]) -> u16 {
    match !fold(add(pseudo, data)) {
        0 => 0xffff,
        c => c,
    }
}

/// One's-complement sum of `data` folded to 16 bits, not inverted.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    fold(add(0, data))
}

/// Updates a checksum for a changed run of bytes of even length at an even offset
/// (an IPv4 address, a port, an IPv6 address), RFC 1624 eqn. 3 word by word.
#[must_use]
pub fn update_bytes(old_checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let mut sum = u64::from(!old_checksum);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        let word = |c: &[u8]| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
        sum += u64::from(!word(o)) + u64::from(word(n));
    }
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        assert_eq!(
            fold(add(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])),
            0xddf2
        );
    }

    proptest! {
        #[test]
        fn wide_sum_folds_like_the_plain_one(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            start in any::<u32>(),
        ) {
            let start = u64::from(start);
            prop_assert_eq!(fold(add_wide(start, &data)), fold(add(start, &data)));
        }

        #[test]
        fn incremental_update_matches_recomputation(
            mut header in proptest::collection::vec(any::<u8>(), 20),
            word in 0usize..10,
            new in any::<u16>(),
        ) {
            header[10] = 0;
            header[11] = 0;
            let ck = checksum(&header);
            header[10..12].copy_from_slice(&ck.to_be_bytes());
            let at = if word == 5 { 4 } else { word }; // not the checksum word itself
            let old = u16::from_be_bytes([header[2 * at], header[2 * at + 1]]);
            header[2 * at..2 * at + 2].copy_from_slice(&new.to_be_bytes());
            let updated = update_word(ck, old, new);
            header[10..12].copy_from_slice(&updated.to_be_bytes());
            prop_assert!(verifies(&header));
        }
    }

    #[test]
    fn rfc1071_example_via_ones_complement_sum() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(
            ones_complement_sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn ipv4_header_checksum() {
        // A real IPv4 header (checksum 0xb861) from the Wikipedia worked example.
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(ones_complement_sum(&header), 0xffff);
    }

    proptest! {
        /// Incremental update equals full recomputation, for any data and any rewrite
        /// of an aligned 4-byte field (an IPv4 address).
        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(any::<u8>(), 8..64), offset in 0usize..3, new in any::<[u8; 4]>()) {
            let offset = offset * 2;
            let before = checksum(&data);
            let old: Vec<u8> = data[offset..offset + 4].to_vec();
            data[offset..offset + 4].copy_from_slice(&new);
            let incremental = update_bytes(before, &old, &new);
            let full = checksum(&data);
            // 0x0000 and 0xffff are both one's-complement zero; they verify alike.
            prop_assert!(incremental == full || (incremental | full) == 0xffff && (incremental & full) == 0, "{incremental:04x} vs {full:04x}");
        }

        #[test]
        fn word_update_matches_bytes(ck in any::<u16>(), old in any::<u16>(), new in any::<u16>()) {
            prop_assert_eq!(update_word(ck, old, new), update_bytes(ck, &old.to_be_bytes(), &new.to_be_bytes()));
        }
    }
}

//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// One's-complement sum of `data` as big-endian 16-bit words (an odd last byte is
/// padded with zero), folded to 16 bits, not inverted.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        sum += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    fold(sum)
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves at most 16 bits.
    u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The checksum field value for `data` (whose checksum field must be zero).
pub fn checksum(data: &[u8]) -> u16 {
    !ones_complement_sum(data)
}

/// Updates checksum `old_checksum` for a 16-bit word that changed from `old` to `new`
/// (RFC 1624 eqn. 3, which unlike RFC 1141 handles the -0 case correctly).
#[must_use]
pub fn update_word(old_checksum: u16, old: u16, new: u16) -> u16 {
    let sum = u64::from(!old_checksum) + u64::from(!old) + u64::from(new);
    !fold(sum)
}

/// Updates a checksum for a changed run of bytes of even length at an even offset
/// (an IPv4 address, a port, an IPv6 address).
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
    fn rfc1071_example() {
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

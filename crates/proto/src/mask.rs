//! Payload masking (RFC 6455 §5.3): XOR with a 4-byte key, in place.
//!
//! Every client frame is masked, so every byte a server receives goes through here. The fast
//! path XORs eight bytes at a time through `chunks_exact_mut`, which the compiler turns into
//! SIMD loads and stores without any `unsafe`; the bytewise version is kept as the reference
//! for tests and benchmarks.

/// XORs `buf` with `key`, where `buf` starts `offset` bytes into the payload.
///
/// The offset lets a payload be unmasked piece by piece as it arrives: byte `i` of the
/// payload is XORed with `key[i % 4]`. Masking twice with the same key restores the input.
///
/// ```
/// use wsworker_proto::mask::apply_mask;
/// let mut data = *b"Hello";
/// apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    apply_mask_inlined(buf, key, offset);
}

/// [`apply_mask`], always inlined: what the receiving path of every frame calls (inlined, a
/// 20-byte frame takes ~4 % fewer instructions through the decoder). The public function is
/// left to the compiler: forced into a loop that only masks (`benches/mask.rs`), it made
/// 1 KiB a quarter slower.
#[inline(always)]
pub(crate) fn apply_mask_inlined(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // The key as seen from `offset` bytes in: its bytes rotated left by `offset % 4`, which
    // for the little-endian number is a rotation right. Done on the number, because building
    // the rotated key byte by byte cost more than masking a small payload.
    let key = u32::from_le_bytes(key).rotate_right(8 * (offset % 4) as u32);
    let key_word = u64::from(key) | (u64::from(key) << 32);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let masked = u64::from_le_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]) ^ key_word;
        word.copy_from_slice(&masked.to_le_bytes());
    }
    // Whole 8-byte words keep the key phase, so the tail starts at phase 0 again.
    let mut tail = words.into_remainder().chunks_exact_mut(4);
    for quad in &mut tail {
        let masked = u32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]) ^ key;
        quad.copy_from_slice(&masked.to_le_bytes());
    }
    for (byte, k) in tail.into_remainder().iter_mut().zip(key.to_le_bytes()) {
        *byte ^= k;
    }
}

/// The reference implementation: one byte at a time. Same contract as [`apply_mask`]. For
/// the tests and the benchmarks, hidden from the documentation.
#[doc(hidden)]
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(offset % 4 + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn fast_mask_equals_bytewise_for_every_length_and_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for len in 0..=70 {
            for start in 0..=8 {
                for offset in 0..=7 {
                    let mut fast = data[start..start + len].to_vec();
                    let mut slow = fast.clone();
                    apply_mask(&mut fast, key, offset);
                    apply_mask_bytewise(&mut slow, key, offset);
                    assert_eq!(fast, slow, "len {len} start {start} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data;
        let (a, rest) = pieces.split_at_mut(13);
        let (b, c) = rest.split_at_mut(30);
        apply_mask(a, key, 0);
        apply_mask(b, key, 13);
        apply_mask(c, key, 43);
        assert_eq!(whole, pieces);
    }

    proptest! {
        #[test]
        fn fast_mask_equals_bytewise(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            skip in 0usize..16,
            key in any::<[u8; 4]>(),
            offset in any::<usize>(),
        ) {
            let skip = skip.min(data.len());
            let mut fast = data.clone();
            let mut slow = data;
            apply_mask(&mut fast[skip..], key, offset);
            apply_mask_bytewise(&mut slow[skip..], key, offset);
            prop_assert_eq!(fast, slow);
        }
    }
}

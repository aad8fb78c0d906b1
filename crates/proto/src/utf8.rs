//! UTF-8 for text messages (RFC 6455 §5.6, §8.1): an incremental validator that fails on the
//! first invalid byte even when a code point is split across fragments or reads, and
//! [`Utf8Bytes`], a `Bytes` that is known to hold UTF-8.
//!
//! Validation uses `simdutf8`, several times faster than `std::str::from_utf8` on non-ASCII
//! text (see `benches/utf8.rs`). Because the bytes are validated once on arrival, turning
//! them into a string must not validate them again: `validated_str` and
//! `Utf8Bytes::from_validated` do that without a check, and are `unsafe fn`s, as only their
//! caller can know the bytes were checked. This module and the connection's receiving side
//! (which checks text as it arrives) are the crate's only `unsafe` code.
#![allow(unsafe_code)]

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use bytestring::ByteString;

/// Validates UTF-8 that arrives in pieces.
///
/// Up to three bytes of a code point that a piece cut short are carried over to the next
/// piece; anything that can no longer become valid UTF-8 is reported at once.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    partial: [u8; 4],
    partial_len: usize,
}

/// Bytes that are not UTF-8: the error of turning them into [`Utf8Bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8")]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self {
            partial: [0; 4],
            partial_len: 0,
        }
    }

    /// Validates the next piece.
    ///
    /// # Errors
    /// [`InvalidUtf8`] as soon as the input so far cannot be the start of valid UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.partial_len > 0 {
            // Finish the code point the last piece cut short, one byte at a time so that an
            // invalid continuation byte is reported before anything after it is looked at.
            while self.partial_len < 4 {
                let Some((&byte, rest)) = data.split_first() else {
                    return Ok(());
                };
                data = rest;
                self.partial[self.partial_len] = byte;
                self.partial_len += 1;
                match std::str::from_utf8(&self.partial[..self.partial_len]) {
                    Ok(_) => break,
                    Err(e) if e.error_len().is_none() => {}
                    Err(_) => return Err(InvalidUtf8),
                }
            }
            self.partial_len = 0;
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = data.get(e.valid_up_to()..).unwrap_or_default();
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Ends the message: a code point still incomplete here is an error.
    ///
    /// # Errors
    /// [`InvalidUtf8`] when the input ended inside a code point.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.partial_len == 0;
        self.partial_len = 0;
        if complete { Ok(()) } else { Err(InvalidUtf8) }
    }
}

/// Whether `bytes`, a whole message, are UTF-8.
///
/// `simdutf8` hands inputs under 64 bytes to `std`, whose setup costs more than the check
/// itself for the short ASCII text most messages are; those are checked a word at a time
/// first.
#[inline(always)]
pub(crate) fn is_utf8(bytes: &[u8]) -> bool {
    (bytes.len() < 64 && bytes.is_ascii()) || simdutf8::basic::from_utf8(bytes).is_ok()
}

/// Bytes already checked to be UTF-8, as text, without checking them again.
///
/// # Safety
/// `bytes` must be valid UTF-8: accepted by [`is_utf8`], or fed in full to a
/// [`Utf8Validator`] that then [finished](Utf8Validator::finish) without an error, and
/// unchanged since. The debug build checks it.
pub(crate) unsafe fn validated_str(bytes: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(bytes).is_ok());
    // SAFETY: the caller's promise.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

/// Immutable UTF-8 text backed by [`Bytes`]: cheap to clone, sliced out of the receive buffer
/// without a copy, and dereferencing to `str`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(ByteString);

impl Utf8Bytes {
    /// Text from a static string, without allocating.
    pub const fn from_static(text: &'static str) -> Self {
        Self(ByteString::from_static(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The bytes, sharing the same storage.
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// The bytes, giving up the UTF-8 guarantee.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }

    /// Wraps bytes already checked to be UTF-8, without checking them again.
    ///
    /// # Safety
    /// `bytes` must be valid UTF-8, as for [`validated_str`]. (`Bytes` is immutable, so they
    /// stay so.) The debug build checks it.
    pub(crate) unsafe fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        // SAFETY: the caller's promise.
        Self(unsafe { ByteString::from_bytes_unchecked(bytes) })
    }
}

impl Deref for Utf8Bytes {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        self.as_str().as_bytes()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(ByteString::from(text))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(text: &str) -> Self {
        Self(ByteString::from(text))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(text: &String) -> Self {
        Self(ByteString::from(text.as_str()))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;

    fn try_from(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        if !is_utf8(&bytes) {
            return Err(InvalidUtf8);
        }
        // SAFETY: `is_utf8` accepted these very bytes just above.
        Ok(unsafe { Self::from_validated(bytes) })
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = InvalidUtf8;

    fn try_from(bytes: Vec<u8>) -> Result<Self, InvalidUtf8> {
        Self::try_from(Bytes::from(bytes))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn validate_in_pieces(data: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts {
            let cut = cut.clamp(start, data.len());
            v.feed(&data[start..cut])?;
            start = cut;
        }
        v.feed(&data[start..])?;
        v.finish()
    }

    #[test]
    fn fails_on_the_first_invalid_byte_not_at_the_end() {
        // Autobahn 6.4.1: "κόσμε" then the invalid 0xf4 0x90 (above U+10FFFF) then more.
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        v.feed(&[0xf4]).unwrap(); // still a possible prefix
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn a_split_code_point_is_carried_over() {
        let text = "ab€cd🎉".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(validate_in_pieces(text, &[cut]), Ok(()), "cut {cut}");
        }
    }

    #[test]
    fn an_incomplete_code_point_at_the_end_is_invalid() {
        let mut v = Utf8Validator::new();
        v.feed(&[b'a', 0xe2, 0x82]).unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }

    #[test]
    fn surrogates_and_overlongs_fail_immediately() {
        for bad in [
            &[0xed, 0xa0, 0x80][..],
            &[0xc0, 0xaf],
            &[0xe0, 0x80, 0xaf],
            &[0xff],
        ] {
            let mut v = Utf8Validator::new();
            let mut failed_at = None;
            for (i, b) in bad.iter().enumerate() {
                if v.feed(&[*b]).is_err() {
                    failed_at = Some(i);
                    break;
                }
            }
            assert!(failed_at.is_some(), "{bad:x?}");
        }
    }

    #[test]
    fn utf8_bytes_rejects_invalid_input() {
        assert!(Utf8Bytes::try_from(Bytes::from_static(b"ok")).is_ok());
        assert_eq!(
            Utf8Bytes::try_from(Bytes::from_static(&[0xc3])),
            Err(InvalidUtf8)
        );
        assert_eq!(Utf8Bytes::from("tom"), "tom");
    }

    #[test]
    fn unchecked_conversion_equals_checked_conversion() {
        let text = Bytes::from("κόσμε and plain ASCII");
        assert!(is_utf8(&text));
        // SAFETY: `is_utf8` accepted the text just above.
        let (unchecked, lent) = unsafe {
            (
                Utf8Bytes::from_validated(text.clone()),
                validated_str(&text),
            )
        };
        let checked = std::str::from_utf8(&text).unwrap();
        assert_eq!(unchecked.as_str(), checked);
        assert_eq!(lent, checked);
    }

    #[test]
    fn whole_message_check_agrees_with_std_around_the_short_cutoff() {
        for len in 0..=80 {
            let ascii = vec![b'a'; len];
            assert!(is_utf8(&ascii), "{len} ASCII bytes");
            for at in 0..len {
                let mut bad = ascii.clone();
                bad[at] = 0xff;
                assert!(!is_utf8(&bad), "0xff at {at} of {len}");
                let mut cut = ascii.clone();
                cut[at] = 0xc3; // a two-byte code point, cut short unless followed by 0x80..
                assert_eq!(
                    is_utf8(&cut),
                    std::str::from_utf8(&cut).is_ok(),
                    "{at} of {len}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn whole_message_check_agrees_with_std(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(is_utf8(&data), std::str::from_utf8(&data).is_ok());
        }

        #[test]
        fn pieces_agree_with_std(data in proptest::collection::vec(any::<u8>(), 0..64), cuts in proptest::collection::vec(0usize..64, 0..4)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let expected = std::str::from_utf8(&data).is_ok();
            prop_assert_eq!(validate_in_pieces(&data, &cuts).is_ok(), expected);
        }

        #[test]
        fn valid_text_passes_in_any_pieces(text in ".{0,40}", cuts in proptest::collection::vec(0usize..200, 0..4)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(validate_in_pieces(text.as_bytes(), &cuts), Ok(()));
        }
    }
}

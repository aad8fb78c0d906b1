//! The frame header: parsing with the rules that need no connection state, and encoding.

use crate::error::ProtocolError;

/// The longest header: 2 bytes, an 8-byte length and a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest payload a control frame may carry (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A frame's opcode (RFC 6455 §5.2). Reserved opcodes are rejected while parsing, so they have
/// no variant.
///
/// Each variant's value is its 4-bit wire value, so reading and writing one is a comparison
/// and a cast: the header of every frame goes through here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0x0: a continuation of a fragmented message.
    Continuation = 0x0,
    /// 0x1: the first frame of a text message.
    Text = 0x1,
    /// 0x2: the first frame of a binary message.
    Binary = 0x2,
    /// 0x8: close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for the 4-bit value.
    ///
    /// # Errors
    /// [`ProtocolError::ReservedOpcode`] for 0x3–0x7 and 0xB–0xF.
    pub const fn from_bits(bits: u8) -> Result<Self, ProtocolError> {
        Ok(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// The 4-bit value.
    pub const fn bits(self) -> u8 {
        self as u8
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub const fn is_control(self) -> bool {
        // The opcodes with the high bit set (RFC 6455 §5.5); the reserved ones have no variant.
        self.bits() & 0x8 != 0
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the last frame of its message.
    pub fin: bool,
    /// RSV1, RSV2 and RSV3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the front of `buf`, returning it and its length in bytes, or
    /// `Ok(None)` when `buf` does not hold the whole header yet.
    ///
    /// Checks the rules that hold for every frame whatever the connection's state: no
    /// reserved opcode, no 64-bit length with its top bit set, control frames unfragmented
    /// and at most 125 bytes. Masking, reserved bits and fragmentation order depend on the
    /// connection and are checked by [`FrameDecoder`](super::FrameDecoder) and the
    /// connection. A length written with more bytes than needed is accepted (§5.2 asks the
    /// sender, not the receiver, for the minimal encoding).
    ///
    /// # Errors
    /// The [`ProtocolError`] of the first broken rule.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let [b0, b1, rest @ ..] = buf else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x07;
        let opcode = OpCode::from_bits(b0 & 0x0f)?;
        let masked = b1 & 0x80 != 0;
        let (payload_len, rest) = match b1 & 0x7f {
            126 => match rest.split_first_chunk::<2>() {
                Some((len, rest)) => (u64::from(u16::from_be_bytes(*len)), rest),
                None => return Ok(None),
            },
            127 => match rest.split_first_chunk::<8>() {
                // Only a 64-bit length can have its most significant bit set.
                Some((len, _)) if len[0] & 0x80 != 0 => return Err(ProtocolError::LengthTopBitSet),
                Some((len, rest)) => (u64::from_be_bytes(*len), rest),
                None => return Ok(None),
            },
            short => (u64::from(short), rest),
        };
        if opcode.is_control() {
            check_control(fin, payload_len)?;
        }
        let mask = if masked {
            match rest.first_chunk::<4>() {
                Some(key) => Some(*key),
                None => return Ok(None),
            }
        } else {
            None
        };
        let header_len = buf.len() - rest.len() + if masked { 4 } else { 0 };
        Ok(Some((
            Self {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            header_len,
        )))
    }

    /// Writes the header into `dst` with the shortest length encoding and returns how many
    /// bytes it took (2 to 14).
    pub fn encode(&self, dst: &mut [u8; MAX_HEADER_LEN]) -> usize {
        dst[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.bits();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = 2;
        match self.payload_len {
            n @ 0..=125 => dst[1] = mask_bit | n as u8,
            n @ 126..=0xffff => {
                dst[1] = mask_bit | 126;
                dst[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                len = 4;
            }
            n => {
                dst[1] = mask_bit | 127;
                dst[2..10].copy_from_slice(&n.to_be_bytes());
                len = 10;
            }
        }
        if let Some(key) = self.mask {
            dst[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        len
    }

    /// The encoded length of this header.
    pub const fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        if self.mask.is_some() { len + 4 } else { len }
    }
}

/// The rules of a control frame (RFC 6455 §5.5): unfragmented, at most 125 bytes. Out of line,
/// as control frames are rare: the checks of every data frame stay short.
#[cold]
#[inline(never)]
const fn check_control(fin: bool, payload_len: u64) -> Result<(), ProtocolError> {
    if !fin {
        return Err(ProtocolError::FragmentedControlFrame);
    }
    if payload_len > MAX_CONTROL_PAYLOAD {
        return Err(ProtocolError::ControlFrameTooLong(payload_len));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        FrameHeader::parse(bytes)
    }

    #[test]
    fn rfc_examples_parse() {
        // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
        let (h, len) = parse(&[0x81, 0x05, 0x48, 0x65]).unwrap().unwrap();
        assert_eq!(len, 2);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.payload_len, 5);
        assert_eq!(h.mask, None);
        // A masked one.
        let (h, len) = parse(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d])
            .unwrap()
            .unwrap();
        assert_eq!(len, 6);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        // 256 bytes binary, 16-bit length; 64 KiB, 64-bit length.
        let (h, len) = parse(&[0x82, 0x7e, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((h.payload_len, len), (256, 4));
        let (h, len) = parse(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, len), (65536, 10));
    }

    #[test]
    fn incomplete_headers_need_more_bytes() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for end in 0..full.len() {
            assert_eq!(parse(&full[..end]), Ok(None), "end {end}");
        }
        assert!(parse(&full).unwrap().is_some());
    }

    #[test]
    fn reserved_opcodes_fail() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                parse(&[0x80 | op, 0x00]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn length_with_top_bit_set_fails() {
        assert_eq!(
            parse(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(ProtocolError::LengthTopBitSet)
        );
    }

    #[test]
    fn control_frame_over_125_bytes_fails() {
        assert_eq!(
            parse(&[0x89, 0x7e, 0x00, 0x7e]),
            Err(ProtocolError::ControlFrameTooLong(126))
        );
        assert!(parse(&[0x89, 0x7d]).unwrap().is_some());
    }

    #[test]
    fn fragmented_control_frame_fails() {
        for op in [0x8u8, 0x9, 0xa] {
            assert_eq!(
                parse(&[op, 0x00]),
                Err(ProtocolError::FragmentedControlFrame)
            );
        }
    }

    #[test]
    fn non_minimal_length_encoding_is_accepted() {
        let (h, _) = parse(&[0x82, 0x7e, 0x00, 0x05]).unwrap().unwrap();
        assert_eq!(h.payload_len, 5);
    }

    #[test]
    fn encode_uses_the_shortest_length() {
        for (len, expected) in [(0u64, 2usize), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let h = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Binary,
                mask: None,
                payload_len: len,
            };
            let mut buf = [0; MAX_HEADER_LEN];
            assert_eq!(h.encode(&mut buf), expected);
            assert_eq!(h.encoded_len(), expected);
            assert_eq!(parse(&buf[..expected]), Ok(Some((h, expected))));
        }
    }
}

//! The streaming frame decoder: headers checked against the connection's role and limits
//! before any payload is buffered, payloads unmasked in place as they arrive and handed out
//! as `Bytes` split off the receive buffer, without a copy.

use bytes::{Buf, Bytes, BytesMut};

use super::header::{FrameHeader, MAX_HEADER_LEN};
use crate::error::{CapacityError, Error, ProtocolError};
use crate::mask::apply_mask_inlined;
use crate::role::Role;

/// How much room to make ahead of a large payload at a time (plus [`RESERVE_AHEAD`]): the
/// buffer grows as the payload arrives, so a peer that announces a big frame and sends
/// nothing costs little memory.
const RESERVE_STEP: usize = 64 * 1024;
/// Room made beyond the rest of a payload: the read that completes the frame can take the
/// start of the next one too. Without it, a caller that keeps some room free for its reads
/// grows the buffer a second time, and every growth of a buffer that a payload handed out
/// still shares copies what is in it.
const RESERVE_AHEAD: usize = 8 * 1024;

/// What [`FrameDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The header of the next frame, checked; its payload follows.
    Header(FrameHeader),
    /// The whole, unmasked payload of the frame whose header came last.
    Payload(Bytes),
    /// A frame whose payload had fully arrived with its header: header and unmasked payload
    /// in one step, the common case for small frames.
    Frame(FrameHeader, Bytes),
    /// As `Frame`, from [`FrameDecoder::decode_in_place`]: the unmasked payload is left at the
    /// front of the buffer, and the caller consumes its `payload_len` bytes. Only
    /// `decode_in_place` gives it, a hook for the connection and the fuzzers.
    #[doc(hidden)]
    InPlace(FrameHeader),
}

/// Splits a byte stream into frame headers and payloads.
///
/// Every header is reported before its payload, so the caller can check message-level rules
/// (fragmentation order, message size) before a byte of payload is kept.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    role: Role,
    max_frame_size: u64,
    allowed_rsv: u8,
    current: Option<InFlight>,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    header: FrameHeader,
    /// How many payload bytes at the front of the buffer are already unmasked.
    unmasked: usize,
}

impl FrameDecoder {
    /// A decoder for frames received by `role`, refusing data frames over `max_frame_size`.
    pub fn new(role: Role, max_frame_size: u64) -> Self {
        Self {
            role,
            max_frame_size,
            allowed_rsv: 0,
            current: None,
        }
    }

    /// Lets a negotiated extension use reserved bits (RSV1 = `0b100`).
    pub fn set_allowed_rsv(&mut self, rsv: u8) {
        self.allowed_rsv = rsv & 0x07;
    }

    /// Decodes from the front of `buf`, consuming what it returns. `Ok(None)` means more bytes
    /// are needed; the bytes of an unfinished payload stay in `buf`, already unmasked (see
    /// [`FrameDecoder::partial_payload`]).
    ///
    /// # Errors
    /// A broken framing rule, or a data frame over the size limit. The decoder must not be
    /// used after an error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        self.decode_with(buf, true)
    }

    /// As [`FrameDecoder::decode`], except that a frame whose payload arrived with its header
    /// is not split off the buffer: it is [`Decoded::InPlace`], its payload unmasked at the
    /// front of `buf`, to be read there and then consumed by the caller (`buf.advance(len)`)
    /// before the next call. No reference count, no second handle on the buffer.
    ///
    /// A hook for the connection (which uses it through the crate) and the fuzzers, hidden
    /// from the documentation.
    ///
    /// # Errors
    /// As [`FrameDecoder::decode`].
    #[doc(hidden)]
    pub fn decode_in_place(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, Error> {
        self.decode_with(buf, false)
    }

    fn decode_with(&mut self, buf: &mut BytesMut, split: bool) -> Result<Option<Decoded>, Error> {
        let Some(current) = &mut self.current else {
            return self.decode_header(buf, split);
        };
        // The limit check on the header bounds this length to usize on every target that
        // could buffer it; a larger one never gets here.
        let len = usize::try_from(current.header.payload_len).unwrap_or(usize::MAX);
        let available = buf.len().min(len);
        if let Some(key) = current.header.mask {
            apply_mask_inlined(&mut buf[current.unmasked..available], key, current.unmasked);
        }
        current.unmasked = available;
        if available < len {
            buf.reserve((len - available).min(RESERVE_STEP) + RESERVE_AHEAD);
            return Ok(None);
        }
        self.current = None;
        Ok(Some(Decoded::Payload(buf.split_to(len).freeze())))
    }

    fn decode_header(&mut self, buf: &mut BytesMut, split: bool) -> Result<Option<Decoded>, Error> {
        let Some((header, header_len)) = FrameHeader::parse(buf)? else {
            buf.reserve(MAX_HEADER_LEN);
            return Ok(None);
        };
        self.check_header(&header)?;
        buf.advance(header_len);
        if let Ok(len) = usize::try_from(header.payload_len)
            && len <= buf.len()
        {
            if !split {
                if let Some(key) = header.mask {
                    apply_mask_inlined(&mut buf[..len], key, 0);
                }
                return Ok(Some(Decoded::InPlace(header)));
            }
            let mut payload = buf.split_to(len);
            if let Some(key) = header.mask {
                apply_mask_inlined(&mut payload, key, 0);
            }
            return Ok(Some(Decoded::Frame(header, payload.freeze())));
        }
        self.current = Some(InFlight {
            header,
            unmasked: 0,
        });
        Ok(Some(Decoded::Header(header)))
    }

    /// Checks a header that [`FrameHeader::parse`] accepted against the rules that depend on
    /// this decoder: masking for its role, reserved bits, and the frame size limit.
    ///
    /// With `FrameHeader::parse` (the rules that hold for every frame), the one header check
    /// of the crate: [`FrameDecoder::decode`] and the connection's whole-frame fast path
    /// (`Connection::poll_message_ref`) both go through the two, so they cannot disagree on
    /// what a valid header is.
    ///
    /// # Errors
    /// The first broken rule, as [`FrameDecoder::decode`] reports it.
    #[inline]
    pub(crate) fn check_header(&self, header: &FrameHeader) -> Result<(), Error> {
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrameFromClient.into()),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrameFromServer.into()),
            _ => {}
        }
        if header.rsv & !self.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBitsSet(header.rsv).into());
        }
        if !header.opcode.is_control() && header.payload_len > self.max_frame_size {
            return Err(CapacityError::FrameTooLarge {
                size: header.payload_len,
                max: self.max_frame_size,
            }
            .into());
        }
        Ok(())
    }

    /// The largest data frame accepted.
    pub fn max_frame_size(&self) -> u64 {
        self.max_frame_size
    }

    /// The header of the frame whose payload is being received, if any.
    pub fn current_header(&self) -> Option<&FrameHeader> {
        self.current.as_ref().map(|c| &c.header)
    }

    /// The part of the current frame's payload that has arrived, unmasked, at the front of
    /// `buf` (the buffer last passed to [`FrameDecoder::decode`]).
    pub fn partial_payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let unmasked = self.current.map_or(0, |c| c.unmasked);
        buf.get(..unmasked).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::OpCode;

    fn decoder(role: Role) -> FrameDecoder {
        FrameDecoder::new(role, 1 << 20)
    }

    #[test]
    fn rfc_masked_hello_decodes_to_hello() {
        let mut buf = BytesMut::from(
            &[
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ][..],
        );
        let mut d = decoder(Role::Server);
        let Some(Decoded::Frame(h, payload)) = d.decode(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(payload, Bytes::from_static(b"Hello"));
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn server_rejects_unmasked_frames() {
        let mut buf = BytesMut::from(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'][..]);
        assert_eq!(
            decoder(Role::Server).decode(&mut buf),
            Err(ProtocolError::UnmaskedFrameFromClient.into())
        );
    }

    #[test]
    fn client_rejects_masked_frames() {
        let mut buf = BytesMut::from(&[0x81, 0x80, 1, 2, 3, 4][..]);
        assert_eq!(
            decoder(Role::Client).decode(&mut buf),
            Err(ProtocolError::MaskedFrameFromServer.into())
        );
    }

    #[test]
    fn reserved_bits_fail_unless_allowed() {
        for rsv in 1u8..8 {
            let mut buf = BytesMut::from(&[0x80 | (rsv << 4) | 0x2, 0x00][..]);
            assert_eq!(
                decoder(Role::Client).decode(&mut buf),
                Err(ProtocolError::ReservedBitsSet(rsv).into())
            );
        }
        let mut d = decoder(Role::Client);
        d.set_allowed_rsv(0b100);
        let mut buf = BytesMut::from(&[0xc2, 0x00][..]);
        assert!(matches!(d.decode(&mut buf), Ok(Some(Decoded::Frame(h, _))) if h.rsv == 0b100));
    }

    #[test]
    fn frame_over_the_limit_fails_from_its_header() {
        let mut d = FrameDecoder::new(Role::Client, 100);
        // Only the header has arrived: the limit is decided before any payload.
        let mut buf = BytesMut::from(&[0x82, 0x7e, 0x00, 0x65][..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(CapacityError::FrameTooLarge {
                size: 101,
                max: 100
            }
            .into())
        );
    }

    #[test]
    fn payload_is_unmasked_as_it_arrives() {
        let mut d = decoder(Role::Server);
        let mut buf = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f][..]);
        assert!(matches!(d.decode(&mut buf), Ok(Some(Decoded::Header(_)))));
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(d.partial_payload(&buf), b"He");
        buf.extend_from_slice(&[0x4d, 0x51]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert_eq!(d.partial_payload(&buf), b"Hell");
        buf.extend_from_slice(&[0x58]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Some(Decoded::Payload(Bytes::from_static(b"Hello"))))
        );
    }

    #[test]
    fn a_partial_payload_gets_room_for_its_rest_and_the_next_header() {
        let mut d = decoder(Role::Client);
        // A 30,000-byte binary frame of which 1,000 bytes arrived, in a buffer shared with a
        // payload handed out before it (as the read buffer is): growing it copies.
        let mut buf = BytesMut::from(&[0x82, 0x7e, 0x75, 0x30][..]);
        buf.extend_from_slice(&[0u8; 1000]);
        let _shared = buf.split_to(0).freeze();
        assert!(matches!(d.decode(&mut buf), Ok(Some(Decoded::Header(_)))));
        assert_eq!(d.decode(&mut buf), Ok(None));
        let room = buf.capacity() - buf.len();
        assert!(
            room >= 29_000 + 4096,
            "room for the rest and the next frame's start, grown once: {room}"
        );
        // A frame that announces more than a step gets a step at a time.
        let mut d = decoder(Role::Client);
        let mut buf = BytesMut::from(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0x0f, 0, 0][..]);
        assert!(matches!(d.decode(&mut buf), Ok(Some(Decoded::Header(_)))));
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.capacity() < 4 * RESERVE_STEP, "{}", buf.capacity());
    }
}

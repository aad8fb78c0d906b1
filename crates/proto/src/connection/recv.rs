//! The receiving side: frames checked against the message-level rules of RFC 6455 §5.4
//! (fragmentation) and §5.6 (UTF-8, checked as the bytes arrive), messages reassembled,
//! pings and closes answered; with permessage-deflate, compressed messages inflated as they
//! arrive (RFC 7692 §6.1, §7.2.2).
//!
//! Text is checked once, as it arrives, so a finished message becomes text without a second
//! check: [`lend`] and [`given`] are `unsafe fn`s, and each of their four callers says where
//! the bytes it passes were checked. They are the only `unsafe` code here (allowed item by
//! item), beside `crate::utf8`.

use bytes::{Buf, Bytes, BytesMut};

use super::{Connection, RSV1};
use crate::close::CloseFrame;
use crate::error::{CapacityError, Error, ProtocolError};
use crate::frame::{Decoded, FrameHeader, OpCode};
use crate::mask::apply_mask_inlined;
use crate::message::{Event, EventRef, Message, MessageRef};
use crate::utf8::{Utf8Bytes, validated_str};

/// The largest message lent ([`Connection::poll_event_ref`], [`Connection::poll_message_ref`]):
/// 4 KiB. A larger one is handed out as `Bytes` split off the receive buffer, so that a caller
/// who keeps it or sends it back (queued by reference) does not copy it. It is the size below
/// which the send queue copies a payload rather than share it: a copy costs less there. A hook
/// for the runtime (exported hidden), which sizes what it encodes at once by it.
pub const MAX_LENT: usize = super::send::COPY_THRESHOLD;

/// What [`Connection::next_event`] found.
enum Next {
    Event(Event),
    /// A whole message left at the front of the receive buffer, `len` bytes; when `text`,
    /// they were checked to be UTF-8, and nothing changed them since.
    Whole {
        text: bool,
        len: usize,
    },
}

/// A whole message's bytes, lent.
///
/// # Safety
/// When `text`, `payload` must be valid UTF-8 (see [`validated_str`]).
#[allow(unsafe_code)]
unsafe fn lend(text: bool, payload: &[u8]) -> MessageRef<'_> {
    if text {
        // SAFETY: the caller's promise.
        MessageRef::Text(unsafe { validated_str(payload) })
    } else {
        MessageRef::Binary(payload)
    }
}

/// A whole message's bytes, given.
///
/// # Safety
/// When `text`, `payload` must be valid UTF-8 (see [`validated_str`]).
#[allow(unsafe_code)]
unsafe fn given(text: bool, payload: Bytes) -> Message {
    if text {
        // SAFETY: the caller's promise.
        Message::Text(unsafe { Utf8Bytes::from_validated(payload) })
    } else {
        Message::Binary(payload)
    }
}

/// The frame whose payload is arriving.
#[derive(Debug, Clone, Copy)]
pub(super) struct FrameState {
    header: FrameHeader,
    /// Whether the payload is text, whose UTF-8 is checked as it arrives.
    text: bool,
    /// Whether the payload is part of a compressed message (RSV1 on its first frame).
    compressed: bool,
    /// How many payload bytes were already fed to the UTF-8 validator (or, compressed, to
    /// the decompressor).
    validated: usize,
}

/// A fragmented message being put back together.
#[derive(Debug)]
pub(super) struct Reassembly {
    text: bool,
    /// A compressed message: its inflated bytes are kept by the decompressor, `data` stays
    /// empty.
    compressed: bool,
    data: BytesMut,
}

impl Connection {
    /// Decodes what has been received and returns the next event, or `Ok(None)` when more
    /// bytes are needed (or nothing more will come: after a close frame or an error).
    ///
    /// Messages are handed out one at a time, in order, so replies queued between two calls
    /// go out before anything this side sends about later frames (such as the close frame
    /// for a protocol error that follows a valid message).
    ///
    /// # Errors
    /// The peer broke the protocol ([`Error::Protocol`]) or a size limit
    /// ([`Error::Capacity`]). The close frame with [`Error::close_code`] is already queued;
    /// the connection is [`Closed`](super::ReadyState::Closed) and later calls return
    /// `Ok(None)`.
    pub fn poll_event(&mut self) -> Result<Option<Event>, Error> {
        match self.poll_event_lending(false)? {
            Some(EventRef::Owned(event)) => Ok(Some(event)),
            // Never so: lending nothing, the body hands every message out owned.
            Some(EventRef::Message(message)) => Ok(Some(Event::Message(message.to_owned()))),
            None => Ok(None),
        }
    }

    /// As [`Connection::poll_event`], with a message of up to 4 KiB that arrived in one frame
    /// (the common case) lent from the receive buffer, unmasked and checked there, instead of
    /// split off it as `Bytes`: no reference count, no second handle on the buffer. The
    /// message's bytes are consumed by the next call of a `poll_event` method (or of
    /// [`Connection::recv_buffer_mut`]); anything else (control frames, messages that arrived
    /// fragmented or compressed, larger ones) comes [`EventRef::Owned`], as from `poll_event`.
    ///
    /// ```
    /// use wsworker_proto::{Config, Connection, EventRef, MessageRef, Role};
    ///
    /// let mut client = Connection::new(Role::Client, Config::default());
    /// let mut server = Connection::new(Role::Server, Config::default());
    /// client.send_text("tom").unwrap();
    /// while let Some(chunk) = client.poll_transmit() {
    ///     server.receive(&chunk);
    /// }
    /// let Some(EventRef::Message(MessageRef::Text(name))) = server.poll_event_ref().unwrap()
    /// else {
    ///     panic!("expected a text message");
    /// };
    /// assert_eq!(name, "tom");
    /// ```
    ///
    /// # Errors
    /// As [`Connection::poll_event`].
    pub fn poll_event_ref(&mut self) -> Result<Option<EventRef<'_>>, Error> {
        self.poll_event_lending(true)
    }

    /// The one body of [`Connection::poll_event_ref`] and [`Connection::poll_event`], which
    /// lends nothing: a whole message is then split off the receive buffer, as one too large
    /// to lend is.
    #[allow(unsafe_code)]
    fn poll_event_lending(&mut self, lending: bool) -> Result<Option<EventRef<'_>>, Error> {
        self.consume_lent();
        if self.is_receive_done() {
            // Whatever a caller still read into the buffer will never be looked at.
            self.recv.clear();
            return Ok(None);
        }
        match self.next_event() {
            Ok(Some(Next::Whole { text, len })) if lending && len <= MAX_LENT => {
                // MAX_LENT fits the 32 bits `lent` has.
                self.lent = len as u32;
                // SAFETY: `next_event` checked the text of these bytes (`Next::Whole`), and
                // nothing changed them since.
                let message = unsafe { lend(text, &self.recv[..len]) };
                Ok(Some(EventRef::Message(message)))
            }
            Ok(Some(Next::Whole { text, len })) => {
                let payload = self.recv.split_to(len).freeze();
                // SAFETY: as above; splitting them off did not change them.
                let message = unsafe { given(text, payload) };
                Ok(Some(EventRef::Owned(Event::Message(message))))
            }
            Ok(Some(Next::Event(event))) => Ok(Some(EventRef::Owned(event))),
            Ok(None) => Ok(None),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// The next message when it arrived as one plain frame (final, uncompressed, with no
    /// fragmented message in progress, up to 4 KiB: the common case), lent from the receive
    /// buffer as [`Connection::poll_event_ref`] lends it; `None` when the next event is
    /// anything else or has not fully arrived. Then call `poll_event_ref` (or `poll_event`),
    /// which handles everything. The frame's header goes through the same check as in
    /// `poll_event_ref`, so this takes exactly the frames that `poll_event_ref` would lend.
    ///
    /// It never queues anything to send (no pong, no close frame, no error: a frame it does
    /// not take, bad text included, is left to `poll_event_ref`), so a caller may keep the
    /// replies to a run of messages aside and queue them all before its next
    /// `poll_event_ref`, in order. The messages lent by a run of calls are consumed together
    /// by the next `poll_event_ref`, `poll_event` or [`Connection::recv_buffer_mut`].
    // Inlined into the runtime's loop over a run of messages, as the few instructions it
    // takes per message are the point; out of line, a call costs a fifth of them.
    #[inline(always)]
    #[allow(unsafe_code)]
    pub fn poll_message_ref(&mut self) -> Option<MessageRef<'_>> {
        if self.frame.is_some()
            || self.reassembly.is_some()
            || self.is_receive_done()
            || self.decoder.current_header().is_some()
        {
            return None;
        }
        let start = self.lent as usize;
        // The decoder's own header check, not a restatement of it: a header it refuses is left
        // to `poll_event_ref`, which reports it. Whether the frame is a whole message is asked
        // first, so that the compiler can drop what that already decided (reserved bits,
        // control frames) from the check.
        let Ok(Some((header, head))) = FrameHeader::parse(self.recv.get(start..)?) else {
            return None;
        };
        let text = self.is_whole_message(&header)?;
        if self.decoder.check_header(&header).is_err() {
            return None;
        }
        let len = usize::try_from(header.payload_len)
            .ok()
            .filter(|&len| len <= MAX_LENT)?;
        let end = u32::try_from(start + head + len).ok()?;
        let payload = self.recv.get_mut(start + head..end as usize)?;
        if let Some(key) = header.mask {
            apply_mask_inlined(payload, key, 0);
        }
        if text && !crate::utf8::is_utf8(payload) {
            // Masked again, as it arrived: poll_event_ref finds the error and fails the
            // connection, queuing the close frame after whatever the caller queues first.
            if let Some(key) = header.mask {
                apply_mask_inlined(payload, key, 0);
            }
            return None;
        }
        self.lent = end;
        // SAFETY: `is_utf8` accepted the text of these very bytes just above.
        Some(unsafe { lend(text, &self.recv[start + head..end as usize]) })
    }

    /// Consumes the messages lent since the last call.
    pub(super) fn consume_lent(&mut self) {
        if self.lent > 0 {
            let lent = (std::mem::take(&mut self.lent) as usize).min(self.recv.len());
            self.recv.advance(lent);
        }
    }

    /// The next event. A whole message (see [`Connection::is_whole_message`]) is left in
    /// the receive buffer, its text checked, for the caller to lend or split off.
    fn next_event(&mut self) -> Result<Option<Next>, Error> {
        while !self.is_receive_done() {
            let (header, payload) = match self.decoder.decode_in_place(&mut self.recv)? {
                None => {
                    self.validate_partial()?;
                    return Ok(None);
                }
                Some(Decoded::Header(header)) => {
                    self.start_frame(header)?;
                    continue;
                }
                Some(Decoded::Payload(payload)) => {
                    if let Some(event) = self.finish_frame(payload)? {
                        return Ok(Some(Next::Event(event)));
                    }
                    continue;
                }
                Some(Decoded::InPlace(header)) => {
                    // The decoder left only a payload that is in the buffer, so it fits usize.
                    let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
                    if let Some(text) = self.is_whole_message(&header) {
                        if text && !crate::utf8::is_utf8(&self.recv[..len]) {
                            return Err(ProtocolError::InvalidUtf8.into());
                        }
                        return Ok(Some(Next::Whole { text, len }));
                    }
                    (header, self.recv.split_to(len).freeze())
                }
                // What `decode` reports for a whole frame: the general path takes it.
                Some(Decoded::Frame(header, payload)) => (header, payload),
            };
            self.start_frame(header)?;
            if let Some(event) = self.finish_frame(payload)? {
                return Ok(Some(Next::Event(event)));
            }
        }
        Ok(None)
    }

    /// Whether a frame that arrived whole (header checked by the decoder: masking, reserved
    /// bits, the frame limit, which is also the message limit) is a whole message, the common
    /// case: unfragmented, uncompressed data with no fragmented message in progress. It then
    /// needs none of the general path's state; `Some(is_text)` when it is.
    fn is_whole_message(&self, header: &FrameHeader) -> Option<bool> {
        let text = match header.opcode {
            OpCode::Text => true,
            OpCode::Binary => false,
            _ => return None,
        };
        (header.fin && header.rsv == 0 && self.reassembly.is_none()).then_some(text)
    }

    /// Checks a header against the message in progress before its payload is kept.
    fn start_frame(&mut self, header: FrameHeader) -> Result<(), Error> {
        // RSV1 gets past the decoder only when permessage-deflate is on.
        let rsv1 = header.rsv & RSV1 != 0;
        let (text, size_so_far, compressed) = match (header.opcode, self.reassembly.as_deref()) {
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::DataFrameInsideFragmentedMessage.into());
            }
            (OpCode::Continuation, None) => {
                return Err(ProtocolError::ContinuationWithoutStart.into());
            }
            (OpCode::Text, None) => (true, 0, rsv1),
            (OpCode::Binary, None) => (false, 0, rsv1),
            (OpCode::Continuation | OpCode::Close | OpCode::Ping | OpCode::Pong, _) if rsv1 => {
                return Err(ProtocolError::Rsv1OutsideFirstFrame.into());
            }
            (OpCode::Continuation, Some(r)) => (r.text, r.data.len() as u64, r.compressed),
            (OpCode::Close | OpCode::Ping | OpCode::Pong, _) => (false, 0, false),
        };
        // A compressed message is held to the limit by its inflated size, as it inflates;
        // its frames are still held to max_frame_size by the decoder.
        let size = size_so_far.saturating_add(header.payload_len);
        let max = self.config.max_message_size_value() as u64;
        if !header.opcode.is_control() && !compressed && size > max {
            return Err(CapacityError::MessageTooLarge { size, max }.into());
        }
        self.frame = Some(Box::new(FrameState {
            header,
            text,
            compressed,
            validated: 0,
        }));
        Ok(())
    }

    /// Validates the UTF-8 of a text payload that has partly arrived, so that invalid text
    /// fails the connection before the rest of the frame is waited for.
    fn validate_partial(&mut self) -> Result<(), Error> {
        let Some(frame) = &mut self.frame else {
            return Ok(());
        };
        if frame.compressed {
            return self.inflate_partial();
        }
        if !frame.text {
            return Ok(());
        }
        let arrived = self.decoder.partial_payload(&self.recv);
        if let Some(new) = arrived.get(frame.validated..) {
            self.utf8
                .feed(new)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            frame.validated = arrived.len();
        }
        Ok(())
    }

    #[allow(unsafe_code)]
    fn finish_frame(&mut self, payload: Bytes) -> Result<Option<Event>, Error> {
        let Some(frame) = self.frame.take() else {
            return Ok(None);
        };
        let header = frame.header;
        match header.opcode {
            OpCode::Ping => {
                if !self.close_sent {
                    self.queue_pong(payload.clone());
                }
                Ok(Some(Event::Ping(payload)))
            }
            OpCode::Pong => Ok(Some(Event::Pong(payload))),
            OpCode::Close => self.receive_close(&payload).map(Some),
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let message = if frame.compressed {
                    self.finish_compressed(&frame, payload)?
                } else {
                    if frame.text {
                        let rest = payload.get(frame.validated..).unwrap_or_default();
                        self.utf8
                            .feed(rest)
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                        if header.fin {
                            self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                        }
                    }
                    self.reassemble(frame.text, header.fin, payload)
                };
                // SAFETY: a message is complete only with its final frame. Every byte of a
                // text message went through `self.utf8` in order, which accepted them and was
                // finished with that frame: a plain payload as it arrived
                // (`validate_partial`) and its rest just above, an inflated one as it was
                // inflated (`inflate_partial`, `finish_compressed`).
                Ok(message.map(|data| Event::Message(unsafe { given(frame.text, data) })))
            }
        }
    }

    /// Adds a data frame to the message in progress; returns the message's bytes when it is
    /// complete.
    fn reassemble(&mut self, text: bool, fin: bool, payload: Bytes) -> Option<Bytes> {
        let data = match (self.reassembly.take(), fin) {
            // The common case, one frame per message: the payload is handed out as it is.
            (None, true) => payload,
            (None, false) => {
                self.reassembly = Some(Box::new(Reassembly {
                    text,
                    compressed: false,
                    data: BytesMut::from(&payload[..]),
                }));
                return None;
            }
            (Some(mut r), fin) => {
                r.data.extend_from_slice(&payload);
                if !fin {
                    self.reassembly = Some(r);
                    return None;
                }
                r.data.freeze()
            }
        };
        Some(data)
    }

    fn receive_close(&mut self, payload: &[u8]) -> Result<Event, Error> {
        let frame = CloseFrame::parse(payload)?;
        self.close_received = true;
        self.recv.clear();
        if !self.close_sent {
            // Echo the status code, as RFC 6455 §5.5.1 suggests; an empty close gets an
            // empty answer.
            let echo = frame.as_ref().map(|f| CloseFrame {
                code: f.code,
                reason: String::new(),
            });
            self.send_close(echo.as_ref());
        }
        Ok(Event::Close(frame))
    }

    /// Fails the connection (RFC 6455 §7.1.7): queues the close frame the error calls for,
    /// unless one was sent already, and stops receiving.
    fn fail(&mut self, error: Error) -> Error {
        if let Some(code) = error.close_code()
            && !self.close_sent
        {
            let frame = CloseFrame {
                code,
                reason: truncate_reason(error.to_string()),
            };
            self.send_close(Some(&frame));
        }
        self.failed = true;
        self.recv.clear();
        self.lent = 0;
        self.frame = None;
        self.reassembly = None;
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &mut self.deflate {
            // Nothing will be compressed or inflated any more: give the memory back.
            deflate.release();
        }
        error
    }

    // ----- permessage-deflate ----------------------------------------------------------------

    /// Inflates the part of a compressed frame that has arrived, and checks the UTF-8 of what
    /// it gave, so a message over the limit or with bad text fails before the rest arrives.
    #[cfg(feature = "deflate")]
    fn inflate_partial(&mut self) -> Result<(), Error> {
        let (Some(frame), Some(deflate)) = (&mut self.frame, &mut self.deflate) else {
            return Ok(());
        };
        let arrived = self.decoder.partial_payload(&self.recv);
        let Some(new) = arrived.get(frame.validated..).filter(|new| !new.is_empty()) else {
            return Ok(());
        };
        let start = deflate.inflate(new, false, self.config.max_message_size_value())?;
        frame.validated = arrived.len();
        if frame.text {
            let produced = deflate.inflated_bytes().get(start..).unwrap_or_default();
            self.utf8
                .feed(produced)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// The rest of a compressed frame: inflated (with the tail after the final frame), text
    /// checked, and the message's inflated bytes handed out when this frame ends it.
    #[cfg(feature = "deflate")]
    fn finish_compressed(
        &mut self,
        frame: &FrameState,
        payload: Bytes,
    ) -> Result<Option<Bytes>, Error> {
        let Some(deflate) = &mut self.deflate else {
            return Err(ProtocolError::ReservedBitsSet(frame.header.rsv).into());
        };
        let fin = frame.header.fin;
        let rest = payload.get(frame.validated..).unwrap_or_default();
        let start = deflate.inflate(rest, fin, self.config.max_message_size_value())?;
        if frame.text {
            let produced = deflate.inflated_bytes().get(start..).unwrap_or_default();
            self.utf8
                .feed(produced)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
            if fin {
                self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        if !fin {
            if self.reassembly.is_none() {
                self.reassembly = Some(Box::new(Reassembly {
                    text: frame.text,
                    compressed: true,
                    data: BytesMut::new(),
                }));
            }
            return Ok(None);
        }
        self.reassembly = None;
        Ok(Some(deflate.finish_message()))
    }

    /// Without the `deflate` feature RSV1 never gets past the decoder.
    #[cfg(not(feature = "deflate"))]
    fn inflate_partial(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Without the `deflate` feature RSV1 never gets past the decoder.
    #[cfg(not(feature = "deflate"))]
    fn finish_compressed(&mut self, frame: &FrameState, _: Bytes) -> Result<Option<Bytes>, Error> {
        Err(ProtocolError::ReservedBitsSet(frame.header.rsv).into())
    }
}

fn truncate_reason(mut reason: String) -> String {
    if reason.len() > CloseFrame::MAX_REASON_LEN {
        let mut end = CloseFrame::MAX_REASON_LEN;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

//! The state machine of one WebSocket connection after the opening handshake (RFC 6455 §5,
//! §6 and §7), for either role.
//!
//! It owns no socket and no clock. The caller moves bytes between it and the network:
//!
//! ```text
//!   network ──read──▶ recv_buffer_mut() / receive()  ──▶ poll_event()  ──▶ application
//!   network ◀─write── transmit_slices() / poll_transmit() ◀── send_*() / close() ◀──┘
//! ```

mod dormant;
mod recv;
mod send;

use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng, rngs::StdRng};

use crate::close::{CloseCode, CloseFrame};
use crate::config::Config;
use crate::error::{ApiMisuse, Error};
use crate::frame::{FrameDecoder, FrameHeader, OpCode};
use crate::message::{Message, MessageRef};
use crate::role::Role;
use crate::utf8::{Utf8Bytes, Utf8Validator};
pub use dormant::Dormant;
pub use recv::MAX_LENT;
use recv::{FrameState, Reassembly};
use send::SendQueue;

/// The connection's state as the browser's `WebSocket.readyState` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ReadyState {
    /// 0: the opening handshake has not finished. A [`Connection`] never is in this state;
    /// the runtime reports it while it drives the handshake.
    Connecting = 0,
    /// 1: messages flow both ways.
    Open = 1,
    /// 2: one side has sent a close frame and the other has not answered yet.
    Closing = 2,
    /// 3: the closing handshake is complete or the connection failed: nothing more will be
    /// sent or received. What remains queued should be written, then the TCP connection
    /// closed (by the server first, RFC 6455 §7.1.1).
    Closed = 3,
}

/// One side of a WebSocket connection.
///
/// The methods come in four families, called in this order by the I/O loop:
///
/// 1. **input**: read from the socket into [`recv_buffer_mut`](Self::recv_buffer_mut)
///    (no copy), or hand bytes to [`receive`](Self::receive);
/// 2. **events**: call [`poll_event`](Self::poll_event) until it returns `Ok(None)`. It
///    answers pings and close frames by itself, and on a protocol violation it queues the
///    close frame with the right code before returning the error;
/// 3. **commands**: [`send_text`](Self::send_text), [`send_binary`](Self::send_binary),
///    [`send_ping`](Self::send_ping), [`close`](Self::close), …, which only queue bytes;
/// 4. **output**: write what [`transmit_slices`](Self::transmit_slices) shows with one
///    vectored write and report it with [`advance_transmit`](Self::advance_transmit) (or
///    take chunks with [`poll_transmit`](Self::poll_transmit)).
///
/// Once [`ready_state`](Self::ready_state) is [`ReadyState::Closed`] and the queue is empty,
/// the caller closes the TCP connection.
///
/// ```
/// use wsworker_proto::{Config, Connection, Event, Message, Role};
///
/// let mut client = Connection::new(Role::Client, Config::default());
/// let mut server = Connection::new(Role::Server, Config::default());
/// client.send_text("tom").unwrap();
/// while let Some(chunk) = client.poll_transmit() {
///     server.receive(&chunk);
/// }
/// let Some(Event::Message(Message::Text(name))) = server.poll_event().unwrap() else {
///     panic!("expected a text message");
/// };
/// server.send_text(format!("hello {name}")).unwrap();
/// while let Some(chunk) = server.poll_transmit() {
///     client.receive(&chunk);
/// }
/// assert_eq!(
///     client.poll_event().unwrap(),
///     Some(Event::Message(Message::text("hello tom")))
/// );
/// ```
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    recv: BytesMut,
    /// Bytes at the front of `recv` lent out since the last `poll_event` call, consumed by
    /// the next (32 bits, to fit where the flags leave room: a larger message is never lent).
    lent: u32,
    decoder: FrameDecoder,
    /// The frame whose payload is arriving, and the fragmented message being put back
    /// together: boxed, as most messages arrive whole and every connection carries the
    /// fields.
    frame: Option<Box<FrameState>>,
    reassembly: Option<Box<Reassembly>>,
    utf8: Utf8Validator,
    send: SendQueue,
    close_sent: bool,
    close_received: bool,
    failed: bool,
    masks: MaskSource,
    /// The answer to the latest ping, held back while the send queue is backed up (see
    /// [`PONG_COALESCE_AT`]); boxed, as it is rare and every connection carries the field.
    pending_pong: Option<Box<Bytes>>,
    /// permessage-deflate, when negotiated: boxed, so a connection without it pays one
    /// pointer.
    #[cfg(feature = "deflate")]
    deflate: Option<Box<crate::deflate::DeflateState>>,
}

/// Above this many queued bytes, a ping's answer replaces the unsent answer to the ping
/// before it instead of being queued as well (RFC 6455 §5.5.3 allows answering only the
/// most recent ping): a peer that floods pings and does not read costs one pong, not one per
/// ping. Below it every ping gets its own pong, as peers such as Autobahn expect.
const PONG_COALESCE_AT: usize = 64 * 1024;

/// RSV1 in [`FrameHeader::rsv`]: the first frame of a compressed message (RFC 7692 §6).
const RSV1: u8 = 0b100;

/// Where a client's masking keys come from: unpredictable by default (RFC 6455 §10.3), or a
/// seeded generator so tests can check exact bytes.
#[derive(Debug)]
enum MaskSource {
    Thread,
    Seeded(Box<StdRng>),
}

impl Connection {
    /// A connection in the [`ReadyState::Open`] state, as after a successful handshake.
    pub fn new(role: Role, config: Config) -> Self {
        Self::with_buffer(role, config, BytesMut::new())
    }

    /// Like [`Connection::new`], with bytes that arrived right behind the handshake (or an
    /// empty buffer to reuse).
    pub fn with_buffer(role: Role, config: Config, recv: BytesMut) -> Self {
        #[cfg(feature = "deflate")]
        let deflate = config
            .deflate_value()
            .map(|params| Box::new(crate::deflate::DeflateState::new(role, *params)));
        Self::assemble(
            role,
            config,
            recv,
            #[cfg(feature = "deflate")]
            deflate,
        )
    }

    /// A connection in the `Open` state with `deflate` as its permessage-deflate state
    /// (made for `config`'s parameters).
    fn assemble(
        role: Role,
        config: Config,
        recv: BytesMut,
        #[cfg(feature = "deflate")] deflate: Option<Box<crate::deflate::DeflateState>>,
    ) -> Self {
        let max_frame = config
            .max_frame_size_value()
            .min(config.max_message_size_value());
        #[allow(unused_mut)]
        let mut decoder = FrameDecoder::new(role, max_frame as u64);
        #[cfg(feature = "deflate")]
        if deflate.is_some() {
            decoder.set_allowed_rsv(RSV1);
        }
        Self {
            role,
            decoder,
            config,
            recv,
            lent: 0,
            frame: None,
            reassembly: None,
            utf8: Utf8Validator::new(),
            send: SendQueue::default(),
            close_sent: false,
            close_received: false,
            failed: false,
            masks: MaskSource::Thread,
            pending_pong: None,
            #[cfg(feature = "deflate")]
            deflate,
        }
    }

    /// Makes the client's masking keys come from a generator seeded with `seed`, so the
    /// bytes it sends are reproducible: the keys become predictable, which defeats what
    /// masking is for (RFC 6455 §10.3, cache poisoning through intermediaries). For tests and
    /// benchmarks only, hence the name and its absence from the documentation.
    #[doc(hidden)]
    pub fn set_mask_seed_insecure_for_tests(&mut self, seed: u64) {
        self.masks = MaskSource::Seeded(Box::new(StdRng::seed_from_u64(seed)));
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The settings this connection was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The permessage-deflate parameters in force, `None` when messages are not compressed.
    #[cfg(feature = "deflate")]
    pub fn deflate_params(&self) -> Option<&crate::deflate::DeflateParams> {
        self.deflate
            .as_deref()
            .map(crate::deflate::DeflateState::params)
    }

    /// The terms under which this connection takes a message compressed once for many
    /// connections ([`SharedDeflate`](crate::deflate::SharedDeflate)): `None` on a client,
    /// without permessage-deflate, or when our side keeps its context.
    #[cfg(feature = "deflate")]
    pub fn shared_deflate(&self) -> Option<crate::deflate::SharedDeflate> {
        match self.role {
            Role::Server => crate::deflate::SharedDeflate::for_server(self.deflate_params()?),
            Role::Client => None,
        }
    }

    /// The state, as the browser API names it.
    pub fn ready_state(&self) -> ReadyState {
        if self.failed || (self.close_sent && self.close_received) {
            ReadyState::Closed
        } else if self.close_sent || self.close_received {
            ReadyState::Closing
        } else {
            ReadyState::Open
        }
    }

    // ----- input -------------------------------------------------------------------------

    /// How many more bytes complete the frame whose payload is arriving (0 between frames):
    /// room a reader may make in the receive buffer beyond what it reads ahead. A hook for
    /// the runtime, hidden from the documentation.
    #[doc(hidden)]
    pub fn frame_rest(&self) -> usize {
        self.decoder.current_header().map_or(0, |header| {
            let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
            len.saturating_sub(self.recv.len().saturating_sub(self.lent as usize))
        })
    }

    /// The receive buffer, for reading from the socket straight into it
    /// (`read_buf(conn.recv_buffer_mut())`). Only append to it.
    pub fn recv_buffer_mut(&mut self) -> &mut BytesMut {
        self.consume_lent();
        &mut self.recv
    }

    /// Appends received bytes (a copy; prefer [`Connection::recv_buffer_mut`]).
    pub fn receive(&mut self, data: &[u8]) {
        if !self.is_receive_done() {
            self.consume_lent();
            self.recv.extend_from_slice(data);
        }
    }

    /// Whether nothing more will be read: a close frame arrived or the connection failed.
    pub fn is_receive_done(&self) -> bool {
        self.failed || self.close_received
    }

    // ----- commands ----------------------------------------------------------------------

    /// Queues a text message.
    ///
    /// # Errors
    /// [`ApiMisuse::SendAfterClose`] once a close frame was sent.
    pub fn send_text(&mut self, text: impl Into<Utf8Bytes>) -> Result<(), Error> {
        self.send_message(Message::Text(text.into()))
    }

    /// Queues a binary message.
    ///
    /// # Errors
    /// [`ApiMisuse::SendAfterClose`] once a close frame was sent.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send_message(Message::Binary(data.into()))
    }

    /// Queues a message, split into frames as [`Config::fragment_size`] says. With
    /// permessage-deflate, a message of at least the threshold is compressed first (and sent
    /// as it is when that would not make it smaller).
    ///
    /// # Errors
    /// [`ApiMisuse::SendAfterClose`] once a close frame was sent.
    pub fn send_message(&mut self, message: impl Into<Message>) -> Result<(), Error> {
        let size = self.config.fragment_size_value().unwrap_or(usize::MAX);
        self.send_fragmented(message, size)
    }

    /// Queues a message as frames of at most `fragment_size` payload bytes each.
    ///
    /// # Errors
    /// [`ApiMisuse::SendAfterClose`] once a close frame was sent, and
    /// [`ApiMisuse::ZeroFragmentSize`] for a fragment size of 0.
    pub fn send_fragmented(
        &mut self,
        message: impl Into<Message>,
        fragment_size: usize,
    ) -> Result<(), Error> {
        self.check_can_send()?;
        if fragment_size == 0 {
            return Err(ApiMisuse::ZeroFragmentSize.into());
        }
        let message = message.into();
        let mut opcode = data_opcode(&message);
        let mut payload = message.into_bytes();
        #[allow(unused_mut)]
        let mut rsv = 0;
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &mut self.deflate
            && deflate.wants(payload.len())
            && let Some(compressed) = deflate.compress(&payload)
        {
            // RFC 7692 §6.1: RSV1 on the first frame only; fragments come after compression.
            payload = compressed;
            rsv = RSV1;
        }
        // The last (usually the only) frame takes the payload whole: splitting it would cost
        // a reference count update per message.
        while payload.len() > fragment_size {
            let chunk = payload.split_to(fragment_size);
            self.push_frame_rsv(opcode, false, rsv, chunk);
            opcode = OpCode::Continuation;
            rsv = 0;
        }
        self.push_frame_rsv(opcode, true, rsv, payload);
        Ok(())
    }

    /// Queues a ping.
    ///
    /// # Errors
    /// [`ApiMisuse::ControlPayloadTooLong`] over 125 bytes; [`ApiMisuse::SendAfterClose`]
    /// once a close frame was sent.
    pub fn send_ping(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send_control(OpCode::Ping, data.into())
    }

    /// Queues an unsolicited pong (a heartbeat that needs no answer, RFC 6455 §5.5.3).
    ///
    /// # Errors
    /// As [`Connection::send_ping`].
    pub fn send_pong(&mut self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.send_control(OpCode::Pong, data.into())
    }

    /// Starts the closing handshake with `code` and `reason`. Nothing else may be sent
    /// afterwards; received messages still arrive until the peer's close frame.
    ///
    /// # Errors
    /// [`ApiMisuse::InvalidCloseCode`] for a code that may not be sent,
    /// [`ApiMisuse::CloseReasonTooLong`] over 123 bytes, [`ApiMisuse::SendAfterClose`] when
    /// a close frame was already sent.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        let frame = CloseFrame::new(code, reason)?;
        self.check_can_send()?;
        self.send_close(Some(&frame));
        Ok(())
    }

    /// Queues the opening handshake's response (the `101` of [`accept_response`] or
    /// [`Request::accept`]) as it is, ahead of every frame: the runtime then writes it with
    /// the frames the application sends as the connection opens, in order, so that the
    /// application has set the connection up (joined its rooms, say) before the client can
    /// see it open. A new server connection only, before anything else is queued.
    ///
    /// [`accept_response`]: crate::handshake::accept_response
    /// [`Request::accept`]: crate::handshake::Request::accept
    ///
    /// # Errors
    /// [`ApiMisuse::HandshakeResponseNotFirst`] on a client, or once anything was queued.
    pub fn queue_handshake_response(&mut self, response: Bytes) -> Result<(), Error> {
        if self.role == Role::Client || self.wants_transmit() || self.close_sent {
            return Err(ApiMisuse::HandshakeResponseNotFirst.into());
        }
        self.send.push_encoded(response);
        Ok(())
    }

    /// Queues a frame encoded beforehand, for sending the same message to many connections
    /// with one encoding: plain with [`encode_server_frame`] (for any server connection: a
    /// message with RSV1 clear is simply uncompressed, RFC 7692 §6, even with
    /// permessage-deflate), or compressed once with
    /// [`SharedDeflate::encode`](crate::deflate::SharedDeflate::encode) (only for
    /// connections whose [`shared_deflate`](Self::shared_deflate) are those terms). The
    /// frame goes as it is: it is not compressed here, nor fragmented. Server role only: a
    /// client must mask each frame with its own key.
    ///
    /// # Errors
    /// [`ApiMisuse::SendAfterClose`] once a close frame was sent;
    /// [`ApiMisuse::PreparedFrameFromClient`] on a client.
    pub fn send_prepared(&mut self, frame: &PreparedFrame) -> Result<(), Error> {
        self.check_can_send()?;
        if self.role == Role::Client {
            return Err(ApiMisuse::PreparedFrameFromClient.into());
        }
        self.send.push_encoded(frame.0.clone());
        Ok(())
    }

    /// Queues `rest`: the end of complete server frames whose start the runtime wrote to the
    /// socket itself, while nothing was queued here (a fan-out written to many sockets at
    /// once). It goes before anything sent from now on. A hook for the runtime, hidden from
    /// the documentation.
    ///
    /// # Errors
    /// As [`Connection::send_prepared`].
    #[doc(hidden)]
    pub fn send_written_rest(&mut self, rest: Bytes) -> Result<(), Error> {
        self.check_can_send()?;
        if self.role == Role::Client {
            return Err(ApiMisuse::PreparedFrameFromClient.into());
        }
        self.send.push_encoded(rest);
        Ok(())
    }

    /// The largest message this connection sends as one plain frame (final, unmasked,
    /// uncompressed), which is how a [`FrameBuffer`] encodes it; `None` when it sends no such
    /// frames: a client (it masks every frame), or once its close frame was sent. A hook for
    /// the runtime, as `FrameBuffer` is.
    #[doc(hidden)]
    pub fn plain_frame_limit(&self) -> Option<usize> {
        if self.role == Role::Client || self.close_sent {
            return None;
        }
        #[allow(unused_mut)]
        let mut limit = self.config.fragment_size_value().unwrap_or(usize::MAX);
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &self.deflate {
            limit = limit.min(deflate.plain_limit()?);
        }
        Some(limit)
    }

    /// Queues the frames encoded in `frames`, after everything queued before, and empties
    /// it. With nothing queued before and more than 4 KiB of frames, the two swap buffers
    /// instead of copying the frames.
    ///
    /// A hook for the runtime, as `FrameBuffer` is.
    ///
    /// # Errors
    /// [`ApiMisuse::SendAfterClose`] once a close frame was sent;
    /// [`ApiMisuse::PreparedFrameFromClient`] on a client. `frames` is emptied either way.
    #[doc(hidden)]
    pub fn send_frames(&mut self, frames: &mut FrameBuffer) -> Result<(), Error> {
        let result = self.check_can_send().and_then(|()| {
            if self.role == Role::Client {
                return Err(ApiMisuse::PreparedFrameFromClient.into());
            }
            self.send.push_frames(&mut frames.buf);
            Ok(())
        });
        frames.clear();
        result
    }

    fn check_can_send(&self) -> Result<(), Error> {
        if self.close_sent {
            Err(ApiMisuse::SendAfterClose.into())
        } else {
            Ok(())
        }
    }

    fn send_control(&mut self, opcode: OpCode, data: Bytes) -> Result<(), Error> {
        if data.len() as u64 > crate::frame::MAX_CONTROL_PAYLOAD {
            return Err(ApiMisuse::ControlPayloadTooLong(data.len()).into());
        }
        self.check_can_send()?;
        self.push_frame(opcode, true, data);
        Ok(())
    }

    fn send_close(&mut self, frame: Option<&CloseFrame>) {
        // A pong held back goes out before the close frame; nothing may follow that.
        if let Some(pong) = self.pending_pong.take() {
            self.push_frame(OpCode::Pong, true, *pong);
        }
        let payload = frame.map(CloseFrame::encode).unwrap_or_default();
        self.push_frame(OpCode::Close, true, payload);
        self.close_sent = true;
    }

    /// Queues the answer to a ping, or holds it back while the send queue is backed up.
    fn queue_pong(&mut self, payload: Bytes) {
        if self.send.len() >= PONG_COALESCE_AT {
            match &mut self.pending_pong {
                Some(pending) => **pending = payload,
                None => self.pending_pong = Some(Box::new(payload)),
            }
        } else {
            self.push_frame(OpCode::Pong, true, payload);
        }
    }

    /// Queues the pong held back once the send queue has drained below the threshold.
    fn release_pong(&mut self) {
        if self.send.len() < PONG_COALESCE_AT
            && let Some(pong) = self.pending_pong.take()
        {
            self.push_frame(OpCode::Pong, true, *pong);
        }
    }

    fn push_frame(&mut self, opcode: OpCode, fin: bool, payload: Bytes) {
        self.push_frame_rsv(opcode, fin, 0, payload);
    }

    fn push_frame_rsv(&mut self, opcode: OpCode, fin: bool, rsv: u8, payload: Bytes) {
        let mask = self.role.masks_outgoing().then(|| self.next_mask());
        let header = FrameHeader {
            fin,
            rsv,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        };
        self.send.push_frame(&header, payload);
    }

    fn next_mask(&mut self) -> [u8; 4] {
        match &mut self.masks {
            MaskSource::Thread => rand::rng().random(),
            MaskSource::Seeded(rng) => rng.random(),
        }
    }

    // ----- output ------------------------------------------------------------------------

    /// Bytes queued and not yet written (the browser's `bufferedAmount`, framing included).
    pub fn buffered_amount(&self) -> usize {
        self.send.len()
    }

    /// Whether anything waits to be written.
    pub fn wants_transmit(&self) -> bool {
        self.send.len() > 0
    }

    /// Puts `buf` in place of the buffer outgoing frames are encoded into and returns that
    /// one, while nothing is queued (`Err(buf)` otherwise). For a runtime that lends one
    /// buffer in turn to the many connections of a thread, so that a connection with nothing
    /// to send holds none: lend before sending, take back (with an empty `BytesMut`) once
    /// everything is written.
    ///
    /// A hook for the runtime, hidden from the documentation.
    ///
    /// # Errors
    /// Gives `buf` back while bytes are queued: they are in the current buffer.
    #[doc(hidden)]
    pub fn replace_send_buffer(&mut self, buf: BytesMut) -> Result<BytesMut, BytesMut> {
        self.send.replace_buffer(buf)
    }

    /// Fills `dst` with the queued bytes in order, for one vectored write; returns how many
    /// slices it used. Report what was written with [`Connection::advance_transmit`].
    pub fn transmit_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.send.io_slices(dst)
    }

    /// How many slices [`Connection::transmit_slices`] would fill with room for all: a
    /// caller may size its slice array to it (usually one or two), rather than clear a large
    /// one for every write.
    pub fn transmit_slice_count(&self) -> usize {
        self.send.slice_count()
    }

    /// Drops the first `written` queued bytes.
    pub fn advance_transmit(&mut self, written: usize) {
        self.send.advance(written);
        self.release_pong();
    }

    /// Takes the next chunk of queued bytes, for callers that write one buffer at a time.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let chunk = self.send.pop();
        if chunk.is_some() {
            self.release_pong();
        }
        chunk
    }
}

/// A complete server frame (unmasked) encoded once, to queue on many connections with
/// [`Connection::send_prepared`]. Cloning it shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedFrame(Bytes);

impl PreparedFrame {
    /// The encoded frame.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

/// Server frames encoded into a buffer of the caller's, ahead of the connection they go to:
/// for a runtime whose application sends from inside a callback, while the connection is out
/// of the runtime's reach. They join the connection's queue, in order, with
/// [`Connection::send_frames`]: per message a header and a copy of its bytes, with no owned
/// message and no queue entry. A hook for the runtime (exported hidden from the
/// documentation), with `send_frames` and [`Connection::plain_frame_limit`].
///
/// ```
/// use wsworker_proto::{Config, Connection, Event, FrameBuffer, Message, MessageRef, Role};
///
/// let mut server = Connection::new(Role::Server, Config::default());
/// let mut frames = FrameBuffer::new();
/// let limit = server.plain_frame_limit().unwrap();
/// let message = MessageRef::Text("hello tom");
/// assert!(message.len() <= limit);
/// frames.push(message);
/// server.send_frames(&mut frames).unwrap();
///
/// let mut client = Connection::new(Role::Client, Config::default());
/// while let Some(chunk) = server.poll_transmit() {
///     client.receive(&chunk);
/// }
/// assert_eq!(
///     client.poll_event().unwrap(),
///     Some(Event::Message(Message::text("hello tom")))
/// );
/// ```
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: BytesMut,
    frames: usize,
}

impl FrameBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Encodes `message` as one final, unmasked, uncompressed frame. For messages the
    /// connection would send so: at most its [`Connection::plain_frame_limit`].
    pub fn push(&mut self, message: MessageRef<'_>) {
        let payload = message.as_bytes();
        let header = plain_header(message.is_text(), payload.len());
        let mut head = [0u8; crate::frame::MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        self.buf.reserve(head_len + payload.len());
        self.buf.extend_from_slice(&head[..head_len]);
        self.buf.extend_from_slice(payload);
        self.frames += 1;
    }

    /// Copies a prepared frame in, as [`Connection::send_prepared`] would queue it: for a
    /// frame small enough that a copy costs less than sharing its bytes (a reference count
    /// taken and given back, and one more piece for the write to gather).
    pub fn push_prepared(&mut self, frame: &PreparedFrame) {
        self.buf.extend_from_slice(&frame.0);
        self.frames += 1;
    }

    /// How many bytes [`FrameBuffer::push`] adds for a message of `payload_len` bytes.
    pub const fn frame_len(payload_len: usize) -> usize {
        plain_header(false, payload_len).encoded_len() + payload_len
    }

    /// The bytes encoded.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is encoded.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How many frames are encoded.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// How many bytes it can hold without allocating.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Drops what is encoded, keeping the memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames = 0;
    }
}

/// The header of a final, unmasked, uncompressed data frame.
const fn plain_header(text: bool, payload_len: usize) -> FrameHeader {
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode: if text { OpCode::Text } else { OpCode::Binary },
        mask: None,
        payload_len: payload_len as u64,
    }
}

/// The opcode of the first frame of `message`.
fn data_opcode(message: &Message) -> OpCode {
    if message.is_text() {
        OpCode::Text
    } else {
        OpCode::Binary
    }
}

/// One final, unmasked frame of a compressed message (RSV1 set, RFC 7692 §6), as a server
/// sends it: `payload` is the message compressed.
#[cfg(feature = "deflate")]
pub(crate) fn compressed_server_frame(text: bool, payload: &[u8]) -> PreparedFrame {
    let header = FrameHeader {
        rsv: RSV1,
        ..plain_header(text, payload.len())
    };
    let mut head = [0u8; crate::frame::MAX_HEADER_LEN];
    let head_len = header.encode(&mut head);
    let mut buf = BytesMut::with_capacity(head_len + payload.len());
    buf.extend_from_slice(&head[..head_len]);
    buf.extend_from_slice(payload);
    PreparedFrame(buf.freeze())
}

/// Encodes `message` as one unmasked frame, as a server sends it.
pub fn encode_server_frame(message: &Message) -> PreparedFrame {
    let mut frame = FrameBuffer {
        buf: BytesMut::with_capacity(crate::frame::MAX_HEADER_LEN + message.len()),
        frames: 0,
    };
    frame.push(message.view());
    PreparedFrame(frame.buf.freeze())
}

#[cfg(test)]
mod tests;

#[cfg(all(test, feature = "deflate"))]
mod deflate_tests;

//! The bytes on the wire during a run: the client's frames, built once and masked, and a
//! minimal parser for the server's replies that compares each echo with what was sent.
//!
//! The parser is not `wsworker_proto::Connection` on purpose: it neither buffers whole
//! messages nor validates UTF-8 (but a compressed message, with `bench --fanout --deflate`,
//! is gathered whole and inflated before it is compared: see [`Inflate`]). Every message of a connection carries the same payload, so
//! an echo is checked in place, byte for byte, as its pieces arrive, whatever the size and
//! however the server fragments it; that keeps the client's cost per message small enough for
//! one core to load a fast server. (A text echo equal to the valid UTF-8 that was sent is
//! valid UTF-8.)

use std::fmt;

use wsworker_proto::ProtocolError;
use wsworker_proto::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use wsworker_proto::mask::apply_mask;

/// RSV1 in a frame header's `rsv`: the first frame of a compressed message (RFC 7692 §6).
const RSV1: u8 = 0b100;

/// The inflater of a connection that agreed to permessage-deflate (RFC 7692 §7.2.2): a
/// compressed message's payload, gathered whole, with the `00 00 ff ff` tail appended, through
/// one raw-deflate stream, reset after each message when the server has no context takeover.
#[cfg(feature = "deflate")]
#[derive(Debug)]
pub(super) struct Inflate {
    stream: flate2::Decompress,
    /// The server resets its window after each message: so does this.
    reset: bool,
    input: Vec<u8>,
    output: Vec<u8>,
}

#[cfg(feature = "deflate")]
impl Inflate {
    /// The inflater for what a server compresses under `params`.
    pub(super) fn new(params: &wsworker_proto::deflate::DeflateParams) -> Self {
        Self {
            // A window larger than the server's is always safe.
            stream: flate2::Decompress::new_with_window_bits(false, 15),
            reset: params.server_no_context_takeover,
            input: Vec::new(),
            output: Vec::new(),
        }
    }

    /// Adds a piece of a compressed message's payload.
    fn gather(&mut self, piece: &[u8]) {
        self.input.extend_from_slice(piece);
    }

    /// The last message inflated.
    fn output(&self) -> &[u8] {
        &self.output
    }

    /// Inflates the message gathered into [`Self::output`].
    fn finish(&mut self) -> Result<(), ProtocolError> {
        self.input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        self.output.clear();
        let start = self.stream.total_in();
        loop {
            let at = usize::try_from(self.stream.total_in() - start).unwrap_or(usize::MAX);
            let input = self.input.get(at..).unwrap_or_default();
            if input.is_empty() {
                break;
            }
            self.output.reserve(input.len().max(1024) * 4);
            let before = (self.stream.total_in(), self.stream.total_out());
            self.stream
                .decompress_vec(input, &mut self.output, flate2::FlushDecompress::Sync)
                .map_err(|_| ProtocolError::InvalidCompressedData)?;
            let progress = (self.stream.total_in(), self.stream.total_out()) != before;
            if !progress && self.output.len() < self.output.capacity() {
                return Err(ProtocolError::InvalidCompressedData);
            }
        }
        self.input.clear();
        if self.reset {
            self.stream.reset(false);
        }
        Ok(())
    }
}

/// Without the `deflate` feature nothing is ever compressed: no inflater exists.
#[cfg(not(feature = "deflate"))]
#[derive(Debug)]
pub(super) enum Inflate {}

#[cfg(not(feature = "deflate"))]
impl Inflate {
    fn gather(&mut self, _: &[u8]) {
        match *self {}
    }

    fn output(&self) -> &[u8] {
        match *self {}
    }

    fn finish(&mut self) -> Result<(), ProtocolError> {
        match *self {}
    }
}

/// How many received bytes a [`Mismatch`] keeps to show what came back.
const SAMPLE_LEN: usize = 40;

/// One client frame, header and payload, masked with `key` (RFC 6455 §5.3).
pub(super) fn client_frame(opcode: OpCode, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = header.encode(&mut head);
    let mut frame = Vec::with_capacity(head_len + payload.len());
    frame.extend_from_slice(&head[..head_len]);
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[head_len..], key, 0);
    frame
}

/// A client close frame with `code` and no reason.
pub(super) fn close_frame(code: u16, key: [u8; 4]) -> Vec<u8> {
    client_frame(OpCode::Close, &code.to_be_bytes(), key)
}

/// A payload of `size` random bytes: ASCII letters for text (valid UTF-8 by construction),
/// any byte value for binary.
pub(super) fn payload(size: usize, binary: bool) -> Vec<u8> {
    const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut bytes = vec![0u8; size];
    rand::fill(&mut bytes[..]);
    if !binary {
        for byte in &mut bytes {
            *byte = LETTERS[usize::from(*byte) % LETTERS.len()];
        }
    }
    bytes
}

/// What the server sent, as the connection needs to know it.
#[derive(Debug)]
pub(super) enum Reply<'a> {
    /// A whole data message (all its fragments): equal to the payload sent, with the bytes
    /// of its variable head (empty unless the parser has one, see
    /// [`ReplyParser::with_head`]), or how it differs.
    Message(Result<&'a [u8], Box<Mismatch>>),
    /// A ping, with its payload: to be answered with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong (unsolicited: this client sends no pings); ignored.
    Pong,
    /// A close frame: its code (none for an empty payload) and reason.
    Close {
        /// The close code, when the frame carried one.
        code: Option<u16>,
        /// The reason, decoded leniently (it is only shown).
        reason: String,
    },
}

/// How an echo differed from the message sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mismatch {
    /// The length of the payload sent.
    pub(super) sent_len: usize,
    /// The length of the message received.
    pub(super) got_len: u64,
    /// The first byte offset where they differ (the shorter length when one is a prefix of
    /// the other).
    pub(super) at: u64,
    /// The first bytes received (at most [`SAMPLE_LEN`]).
    pub(super) got: Vec<u8>,
    /// The bytes sent, as far as they are shown.
    pub(super) sent: Vec<u8>,
    /// Whether the message came back with the other type (binary for text or the reverse).
    pub(super) type_differs: bool,
    /// Whether the payload is binary (shown in hex) rather than text.
    pub(super) binary: bool,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.binary { "binary" } else { "text" };
        write!(f, "sent {} bytes of {kind} ", self.sent_len)?;
        show(f, &self.sent, self.sent_len as u64, self.binary)?;
        write!(f, ", got {} bytes ", self.got_len)?;
        show(f, &self.got, self.got_len, self.binary)?;
        if self.type_differs {
            let other = if self.binary { "text" } else { "binary" };
            write!(f, " as {other}")
        } else {
            write!(f, ", first difference at byte {}", self.at)
        }
    }
}

/// `bytes` (the first ones of `total`) as a quoted string for text, hex for binary.
fn show(f: &mut fmt::Formatter<'_>, bytes: &[u8], total: u64, binary: bool) -> fmt::Result {
    let more = if (bytes.len() as u64) < total {
        "…"
    } else {
        ""
    };
    if binary {
        f.write_str("[")?;
        for byte in bytes {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "{more}]")
    } else {
        write!(f, "{:?}{more}", String::from_utf8_lossy(bytes))
    }
}

/// Where the parser is in the stream of server frames.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for a frame header.
    Header,
    /// Inside a data frame's payload: this many bytes still to come, whether the frame
    /// ends its message, and its masking key rotated to the next byte (only with
    /// [`ReplyParser::accept_masked`]).
    Payload {
        remaining: u64,
        fin: bool,
        key: Option<[u8; 4]>,
    },
}

/// The data message being received (it may span several frames and reads).
#[derive(Debug, Default)]
struct Incoming {
    /// Between the first frame of a message and its last.
    open: bool,
    /// Payload bytes received so far.
    len: u64,
    /// Whether the message's opcode is not the one sent.
    type_differs: bool,
    /// Where it first differed, and the bytes received from its start, once it differs.
    diff: Option<(u64, Vec<u8>)>,
    /// Compressed (RSV1 on its first frame): its payload is gathered to be inflated.
    compressed: bool,
}

/// Parses the server's frames incrementally and compares every data message with `expected`.
#[derive(Debug)]
pub(super) struct ReplyParser {
    expected: Vec<u8>,
    /// The first bytes of a message that vary from one to the next: taken as they come
    /// (into `expected`, so that the rest of the comparison is unchanged), not compared.
    head: usize,
    binary: bool,
    state: State,
    message: Incoming,
    closed: bool,
    /// Whether masked frames are taken (unmasked, then checked) rather than refused.
    accept_masked: bool,
    /// Where a masked piece is unmasked before it is compared (kept for its capacity).
    unmasked: Vec<u8>,
    /// With permessage-deflate agreed: compressed messages are inflated, then compared.
    inflate: Option<Box<Inflate>>,
}

impl ReplyParser {
    /// A parser for echoes of `expected`, sent as binary or as text.
    pub(super) fn new(expected: Vec<u8>, binary: bool) -> Self {
        Self {
            expected,
            head: 0,
            binary,
            state: State::Header,
            message: Incoming::default(),
            closed: false,
            accept_masked: false,
            unmasked: Vec::new(),
            inflate: None,
        }
    }

    /// Takes compressed messages too, inflated with `inflate` (permessage-deflate agreed).
    pub(super) fn with_inflate(mut self, inflate: Option<Inflate>) -> Self {
        self.inflate = inflate.map(Box::new);
        self
    }

    /// Takes masked frames from the server too, unmasking them to check them, when
    /// `accept` holds: for a server that echoes the client's frames byte for byte (the
    /// raw TCP ceiling of bench/run), which RFC 6455 forbids a WebSocket server to do.
    pub(super) fn accept_masked(mut self, accept: bool) -> Self {
        self.accept_masked = accept;
        self
    }

    /// A parser for text messages of `expected`'s length whose first `head` bytes vary (a
    /// fan-out message's sequence number and time stamp): those are handed over with each
    /// message, the rest is compared with `expected`.
    pub(super) fn with_head(expected: Vec<u8>, head: usize) -> Self {
        Self {
            head: head.min(expected.len()),
            ..Self::new(expected, false)
        }
    }

    /// Parses as much of `buf` as it can, calling `on_reply` for each complete message and
    /// control frame, and returns how many bytes it used. The rest (a partial frame header
    /// or a partial control frame, at most 135 bytes) must be passed again, followed by the
    /// next bytes. Payload bytes of data frames are used as they come. After a close frame
    /// nothing more is parsed.
    ///
    /// # Errors
    /// A [`ProtocolError`] for a frame a server must not send: masked, with reserved bits
    /// (no extension is ever negotiated), a reserved opcode, a broken control frame or
    /// broken fragmentation. The connection is beyond use after one.
    pub(super) fn feed(
        &mut self,
        buf: &[u8],
        mut on_reply: impl FnMut(Reply<'_>),
    ) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        while !self.closed {
            match self.state {
                State::Payload {
                    remaining,
                    fin,
                    mut key,
                } => {
                    let take = remaining.min((buf.len() - pos) as u64);
                    if take == 0 && remaining > 0 {
                        break;
                    }
                    // `take` <= the bytes left in `buf`, so it fits a usize.
                    let end = pos + take as usize;
                    match &mut key {
                        None if self.message.compressed => {
                            if let Some(inflate) = &mut self.inflate {
                                inflate.gather(&buf[pos..end]);
                            }
                        }
                        None => self.compare(&buf[pos..end]),
                        Some(key) => {
                            let mut unmasked = std::mem::take(&mut self.unmasked);
                            unmasked.clear();
                            unmasked.extend_from_slice(&buf[pos..end]);
                            apply_mask(&mut unmasked, *key, 0);
                            key.rotate_left(unmasked.len() % 4);
                            self.compare(&unmasked);
                            self.unmasked = unmasked;
                        }
                    }
                    pos = end;
                    if take < remaining {
                        self.state = State::Payload {
                            remaining: remaining - take,
                            fin,
                            key,
                        };
                        break;
                    }
                    self.state = State::Header;
                    if fin {
                        if self.message.compressed
                            && let Some(mut inflate) = self.inflate.take()
                        {
                            let inflated = inflate.finish();
                            if inflated.is_ok() {
                                self.compare(inflate.output());
                            }
                            self.inflate = Some(inflate);
                            inflated?;
                        }
                        let result = self.finish();
                        on_reply(Reply::Message(result.map(|()| &self.expected[..self.head])));
                    }
                }
                State::Header => {
                    let Some((header, header_len)) = FrameHeader::parse(&buf[pos..])? else {
                        break;
                    };
                    if header.mask.is_some() && !self.accept_masked {
                        return Err(ProtocolError::MaskedFrameFromServer);
                    }
                    let compressed = header.rsv == RSV1
                        && self.inflate.is_some()
                        && header.mask.is_none()
                        && matches!(header.opcode, OpCode::Text | OpCode::Binary);
                    if header.rsv != 0 && !compressed {
                        return Err(ProtocolError::ReservedBitsSet(header.rsv));
                    }
                    if header.opcode.is_control() {
                        // At most 125 bytes (checked by `parse`): wait for all of it.
                        let end = pos + header_len + header.payload_len as usize;
                        if end > buf.len() {
                            break;
                        }
                        let mut control = [0u8; 125];
                        let payload = match header.mask {
                            None => &buf[pos + header_len..end],
                            Some(key) => {
                                let control = &mut control[..end - pos - header_len];
                                control.copy_from_slice(&buf[pos + header_len..end]);
                                apply_mask(control, key, 0);
                                control
                            }
                        };
                        pos = end;
                        match header.opcode {
                            OpCode::Ping => on_reply(Reply::Ping(payload)),
                            OpCode::Pong => on_reply(Reply::Pong),
                            _ => {
                                self.closed = true;
                                on_reply(close_reply(payload)?);
                            }
                        }
                        continue;
                    }
                    match header.opcode {
                        OpCode::Continuation if !self.message.open => {
                            return Err(ProtocolError::ContinuationWithoutStart);
                        }
                        OpCode::Continuation => {}
                        _ if self.message.open => {
                            return Err(ProtocolError::DataFrameInsideFragmentedMessage);
                        }
                        opcode => {
                            self.message = Incoming {
                                open: true,
                                type_differs: (opcode == OpCode::Binary) != self.binary,
                                compressed,
                                ..Incoming::default()
                            };
                        }
                    }
                    pos += header_len;
                    self.state = State::Payload {
                        remaining: header.payload_len,
                        fin: header.fin,
                        key: header.mask,
                    };
                }
            }
        }
        Ok(pos)
    }

    /// Compares the next piece of the current message with the payload sent.
    fn compare(&mut self, piece: &[u8]) {
        let message = &mut self.message;
        match &mut message.diff {
            None => {
                // No difference so far, so `len` <= the expected length.
                let offset = message.len as usize;
                if offset < self.head {
                    let take = (self.head - offset).min(piece.len());
                    self.expected[offset..offset + take].copy_from_slice(&piece[..take]);
                }
                let expected = &self.expected[offset..];
                let same = piece.len() <= expected.len() && piece == &expected[..piece.len()];
                if !same {
                    let first = piece
                        .iter()
                        .zip(expected)
                        .position(|(got, sent)| got != sent)
                        .unwrap_or(piece.len().min(expected.len()));
                    let at = offset + first;
                    let mut got = self.expected[..at.min(SAMPLE_LEN)].to_vec();
                    let room = SAMPLE_LEN - got.len();
                    got.extend_from_slice(&piece[first..][..room.min(piece.len() - first)]);
                    message.diff = Some((at as u64, got));
                }
            }
            Some((_, got)) => {
                let room = SAMPLE_LEN - got.len();
                got.extend_from_slice(&piece[..room.min(piece.len())]);
            }
        }
        message.len += piece.len() as u64;
    }

    /// Ends the current message: equal to the payload sent, or how it differs.
    fn finish(&mut self) -> Result<(), Box<Mismatch>> {
        let message = std::mem::take(&mut self.message);
        let sent_len = self.expected.len();
        let diff = match message.diff {
            Some(diff) => Some(diff),
            // Every byte matched so far: a shorter echo differs where it ends.
            None if message.len != sent_len as u64 => Some((
                message.len,
                self.expected[..(message.len as usize).min(SAMPLE_LEN)].to_vec(),
            )),
            None => None,
        };
        if diff.is_none() && !message.type_differs {
            return Ok(());
        }
        let (at, got) = diff.unwrap_or_else(|| {
            (
                message.len,
                self.expected[..sent_len.min(SAMPLE_LEN)].to_vec(),
            )
        });
        Err(Box::new(Mismatch {
            sent_len,
            got_len: message.len,
            at,
            got,
            sent: self.expected[..sent_len.min(SAMPLE_LEN)].to_vec(),
            type_differs: message.type_differs,
            binary: self.binary,
        }))
    }
}

/// A close frame's payload: empty, or a code and a reason (RFC 6455 §5.5.1).
fn close_reply(payload: &[u8]) -> Result<Reply<'static>, ProtocolError> {
    match payload {
        [] => Ok(Reply::Close {
            code: None,
            reason: String::new(),
        }),
        [_] => Err(ProtocolError::CloseFrameOneByte),
        [high, low, reason @ ..] => Ok(Reply::Close {
            code: Some(u16::from_be_bytes([*high, *low])),
            reason: String::from_utf8_lossy(reason).into_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked server frame.
    fn server_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let header = FrameHeader {
            fin,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut head);
        [&head[..len], payload].concat()
    }

    /// What the parser reports for `stream` fed in pieces of `step` bytes (keeping the
    /// unused tail as a connection does).
    fn replies(parser: &mut ReplyParser, stream: &[u8], step: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut pending = Vec::new();
        for piece in stream.chunks(step) {
            pending.extend_from_slice(piece);
            let used = parser
                .feed(&pending, |reply| {
                    out.push(match reply {
                        Reply::Message(Ok([])) => "ok".to_owned(),
                        Reply::Message(Ok(head)) => {
                            format!("ok {}", String::from_utf8_lossy(head))
                        }
                        Reply::Message(Err(m)) => format!("mismatch: {m}"),
                        Reply::Ping(p) => format!("ping {p:?}"),
                        Reply::Pong => "pong".to_owned(),
                        Reply::Close { code, reason } => format!("close {code:?} {reason}"),
                    });
                })
                .unwrap();
            pending.drain(..used);
        }
        assert!(pending.is_empty() || out.last().is_some_and(|r| r.starts_with("close")));
        out
    }

    #[test]
    fn a_variable_head_is_handed_over_and_the_rest_compared() {
        let mut parser = ReplyParser::with_head(b"....abcdef".to_vec(), 4);
        let stream = [
            server_frame(true, OpCode::Text, b"1234abcdef"),
            server_frame(false, OpCode::Text, b"56"),
            server_frame(true, OpCode::Continuation, b"78abcdeX"),
        ]
        .concat();
        for step in [1, 3, stream.len()] {
            assert_eq!(
                replies(&mut parser, &stream, step),
                [
                    "ok 1234",
                    "mismatch: sent 10 bytes of text \"5678abcdef\", got 10 bytes \"5678abcdeX\", \
                     first difference at byte 9"
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn client_frames_are_masked_with_the_shortest_header() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        // RFC 6455 §5.7: a masked text frame "Hello".
        assert_eq!(
            client_frame(OpCode::Text, b"Hello", key),
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
        for (size, header_len) in [(0, 6), (125, 6), (126, 8), (65535, 8), (65536, 14)] {
            let frame = client_frame(OpCode::Binary, &vec![7; size], key);
            assert_eq!(frame.len(), header_len + size, "{size}");
        }
        assert_eq!(
            close_frame(1000, [0; 4]),
            [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]
        );
    }

    #[test]
    fn text_payloads_are_ascii_letters() {
        let text = payload(1000, false);
        assert_eq!(text.len(), 1000);
        assert!(text.iter().all(u8::is_ascii_alphabetic));
        assert_eq!(payload(0, true).len(), 0);
    }

    #[test]
    fn echoes_match_in_any_split_and_size_class() {
        for size in [0, 1, 20, 125, 126, 1000, 65535, 65536, 100_000] {
            let sent = payload(size, true);
            let mut stream = server_frame(true, OpCode::Binary, &sent);
            stream.extend(server_frame(true, OpCode::Ping, b"keepalive"));
            stream.extend(server_frame(true, OpCode::Binary, &sent));
            for step in [1, 3, 7, 4096, usize::MAX] {
                let mut parser = ReplyParser::new(sent.clone(), true);
                assert_eq!(
                    replies(&mut parser, &stream, step),
                    [
                        "ok",
                        "ping [107, 101, 101, 112, 97, 108, 105, 118, 101]",
                        "ok"
                    ],
                    "size {size}, step {step}"
                );
            }
        }
    }

    #[test]
    fn fragmented_echoes_are_reassembled_around_control_frames() {
        let sent = b"hello fragmented world".to_vec();
        let mut stream = server_frame(false, OpCode::Text, &sent[..5]);
        stream.extend(server_frame(true, OpCode::Pong, b""));
        stream.extend(server_frame(false, OpCode::Continuation, &sent[5..6]));
        stream.extend(server_frame(false, OpCode::Continuation, b""));
        stream.extend(server_frame(true, OpCode::Continuation, &sent[6..]));
        for step in [1, 2, 100] {
            let mut parser = ReplyParser::new(sent.clone(), false);
            assert_eq!(replies(&mut parser, &stream, step), ["pong", "ok"]);
        }
    }

    #[test]
    fn differences_are_mismatches_that_show_both_sides() {
        let sent = b"abcdefgh".to_vec();
        let cases: [(Vec<u8>, &str); 5] = [
            (
                server_frame(true, OpCode::Text, b"abcdXfgh"),
                r#"sent 8 bytes of text "abcdefgh", got 8 bytes "abcdXfgh", first difference at byte 4"#,
            ),
            (
                server_frame(true, OpCode::Text, b"hello abcdefgh"),
                r#"sent 8 bytes of text "abcdefgh", got 14 bytes "hello abcdefgh", first difference at byte 0"#,
            ),
            (
                server_frame(true, OpCode::Text, b"abc"),
                r#"sent 8 bytes of text "abcdefgh", got 3 bytes "abc", first difference at byte 3"#,
            ),
            (
                server_frame(true, OpCode::Text, b"abcdefghi"),
                r#"sent 8 bytes of text "abcdefgh", got 9 bytes "abcdefghi", first difference at byte 8"#,
            ),
            (
                server_frame(true, OpCode::Binary, b"abcdefgh"),
                r#"sent 8 bytes of text "abcdefgh", got 8 bytes "abcdefgh" as binary"#,
            ),
        ];
        for (stream, expected) in cases {
            for step in [1, 100] {
                let mut parser = ReplyParser::new(sent.clone(), false);
                assert_eq!(
                    replies(&mut parser, &stream, step),
                    [format!("mismatch: {expected}")]
                );
            }
        }
        // Long payloads are shown by their first bytes.
        let long = vec![b'a'; 100];
        let mut parser = ReplyParser::new(long.clone(), false);
        let mut other = long.clone();
        other[60] = b'b';
        let got = replies(&mut parser, &server_frame(true, OpCode::Text, &other), 7);
        assert!(got[0].contains("first difference at byte 60"), "{got:?}");
        assert!(got[0].contains("…"), "{got:?}");
    }

    #[test]
    fn close_frames_end_parsing() {
        let mut stream = server_frame(true, OpCode::Close, b"\x03\xe9going away");
        stream.extend(server_frame(true, OpCode::Text, b"late"));
        let mut parser = ReplyParser::new(b"late".to_vec(), false);
        assert_eq!(
            replies(&mut parser, &stream, 1000),
            ["close Some(1001) going away"]
        );
    }

    #[test]
    fn masked_echoes_are_unmasked_and_checked_when_accepted() {
        let sent: Vec<u8> = (0..70_001u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut other = sent.clone();
        other[66_000] ^= 1;
        let key = [0x12, 0x34, 0x56, 0x78];
        let mut stream = client_frame(OpCode::Binary, &sent, key);
        stream.extend(client_frame(OpCode::Binary, &other, key));
        stream.extend(client_frame(OpCode::Ping, b"hi", key));
        stream.extend(close_frame(1000, key));
        for step in [1, 3, 7, 4096, 1 << 20] {
            let mut parser = ReplyParser::new(sent.clone(), true).accept_masked(true);
            let got = replies(&mut parser, &stream, step);
            assert_eq!(got.len(), 4, "step {step}: {got:?}");
            assert_eq!(got[0], "ok", "step {step}");
            assert!(got[1].contains("first difference at byte 66000"), "{got:?}");
            assert_eq!(
                got[2..],
                ["ping [104, 105]", "close Some(1000) "],
                "step {step}"
            );
        }
    }

    #[test]
    fn frames_a_server_must_not_send_are_errors() {
        let masked = client_frame(OpCode::Text, b"x", [1, 2, 3, 4]);
        let mut rsv = server_frame(true, OpCode::Text, b"x");
        rsv[0] |= 0x40;
        let continuation = server_frame(true, OpCode::Continuation, b"x");
        let mut interleaved = server_frame(false, OpCode::Text, b"x");
        interleaved.extend(server_frame(true, OpCode::Text, b"x"));
        let one_byte_close = server_frame(true, OpCode::Close, b"\x03");
        for stream in [masked, rsv, continuation, interleaved, one_byte_close] {
            let mut parser = ReplyParser::new(b"x".to_vec(), false);
            assert!(parser.feed(&stream, |_| {}).is_err(), "{stream:?}");
        }
    }

    /// What a server with permessage-deflate under `params` sends for `messages`, in order.
    #[cfg(feature = "deflate")]
    fn compressed_stream(
        params: wsworker_proto::deflate::DeflateParams,
        messages: &[&[u8]],
    ) -> Vec<u8> {
        use wsworker_proto::{Config, Connection, Role};
        let mut server = Connection::new(Role::Server, Config::default().deflate(Some(params)));
        let mut stream = Vec::new();
        for message in messages {
            server
                .send_text(String::from_utf8(message.to_vec()).unwrap())
                .unwrap();
            while let Some(chunk) = server.poll_transmit() {
                stream.extend_from_slice(&chunk);
            }
        }
        stream
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn compressed_messages_are_inflated_then_compared_with_or_without_context_takeover() {
        use wsworker_proto::deflate::DeflateParams;
        let expected = b"0123the same words again and again, the same words again".to_vec();
        let other = b"0123the same words again and again, but not quite the same".to_vec();
        for server_no_context_takeover in [true, false] {
            let params = DeflateParams {
                server_no_context_takeover,
                ..DeflateParams::default()
            };
            let stream = compressed_stream(params, &[&expected, &expected, &other, &expected]);
            assert_eq!(stream[0] & 0x40, 0x40, "compressed");
            for step in [1, 7, stream.len()] {
                let mut parser = ReplyParser::with_head(expected.clone(), 4)
                    .with_inflate(Some(Inflate::new(&params)));
                let got = replies(&mut parser, &stream, step);
                assert_eq!(got[..2], ["ok 0123", "ok 0123"], "{step}");
                assert!(got[2].starts_with("mismatch"), "{got:?}");
                assert_eq!(got[3], "ok 0123");
            }
            // Without the inflater a compressed frame is an error, as before.
            let mut parser = ReplyParser::with_head(expected.clone(), 4);
            assert!(parser.feed(&stream, |_| {}).is_err());
        }
    }
}

//! The compressor and decompressor of one connection (RFC 7692 §7.2). The compressor is
//! allocated on first use; for a side with "no context takeover", borrowed from the thread for
//! one message instead, so that such a connection holds none between messages. The
//! decompressor is always borrowed from the thread for one message: a peer's context is kept
//! as what it refers to, the last bytes it compressed (as many as its window, 4 KiB at 12
//! bits), and given to the decompressor as its dictionary before the next message, rather
//! than as a decompressor of its own (zlib-rs's: 32 KiB of window whatever the window bits,
//! and 7 KiB).
//!
//! The compressor is `zlib-rs`'s own (`zlib_rs::Deflate`), which takes zlib's memory level;
//! `flate2`, which inflates, does not let it be chosen.

use std::cell::Cell;

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};
use zlib_rs::{Deflate, DeflateConfig as ZlibConfig, DeflateFlush, Method, Strategy};

use super::{DeflateParams, MAX_MEM_LEVEL, MAX_WINDOW_BITS, MIN_MEM_LEVEL, MIN_WINDOW_BITS};
use crate::error::{CapacityError, Error, ProtocolError};
use crate::role::Role;

/// The empty stored block a sync flush ends with, removed by the sender and put back by the
/// receiver (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Room past zlib's `compressBound` for what a sync flush adds (see [`deflate_sync`]).
const SYNC_MARGIN: usize = 64;

/// The first output buffer of a message holds at least this many bytes.
const MIN_INFLATE_CHUNK: usize = 256;

/// How a compressor was made: what a reset keeps, and what a borrower must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settings {
    pub(super) level: u8,
    pub(super) window_bits: u8,
    pub(super) mem_level: u8,
}

impl Settings {
    /// The settings for a level, window and memory level as negotiated or configured: the
    /// fields of [`DeflateParams`] are public, so anything out of zlib's ranges is taken as
    /// the nearest (and an 8-bit window as 9, see [`zlib_window_bits`]).
    pub(super) fn new(level: u8, window_bits: u8, mem_level: u8) -> Self {
        Self {
            level: level.min(9),
            window_bits: zlib_window_bits(window_bits),
            mem_level: mem_level.clamp(MIN_MEM_LEVEL, MAX_MEM_LEVEL),
        }
    }

    fn compressor(self) -> Deflate {
        Deflate::new_with_config(ZlibConfig {
            // 0..=9, 9..=15 and 1..=9 (see `DeflateState::new`): zlib-rs accepts them all.
            level: i32::from(self.level),
            method: Method::Deflated,
            // Negative: raw deflate, no zlib header.
            window_bits: -i32::from(self.window_bits),
            mem_level: i32::from(self.mem_level),
            strategy: Strategy::Default,
        })
    }
}

thread_local! {
    /// The compressor of senders with "no context takeover", which start every message with
    /// an empty window anyway: one per thread, reset between messages, rather than one
    /// (about 160 KiB with a 12-bit window) allocated and freed for every message and held
    /// by no connection in between (uWebSockets' shared compressor). Kept with its
    /// settings, which a reset keeps. A side with context takeover takes it too for its
    /// first message, and keeps it.
    static SPARE_COMPRESSOR: Cell<Option<(Settings, Deflate)>> = const { Cell::new(None) };
    /// Likewise the decompressor, lent for each message whether the peer keeps its context or
    /// not (see [`DeflateState::history`]).
    static SPARE_DECOMPRESSOR: Cell<Option<Decompress>> = const { Cell::new(None) };
}

/// The window of every decompressor, whatever the peer's: a window larger than the peer's
/// is always safe (the peer never refers back further than its own), zlib-rs keeps a 32 KiB
/// window whatever it is told, and a reset keeps the window only at 15 bits (flate2 makes
/// a new decompressor for any other, which a thread's spare would pay on every message).
const INFLATE_WINDOW_BITS: u8 = 15;

/// A compressor made with `settings`: this thread's spare when it matches, else a new one.
fn borrow_compressor(settings: Settings) -> Deflate {
    match SPARE_COMPRESSOR.take() {
        Some((made, compressor)) if made == settings => compressor,
        _ => settings.compressor(),
    }
}

/// Compresses one whole message alone (an empty window) with the thread's compressor, as a
/// sender with "no context takeover" does: the same bytes for every connection with these
/// settings, which is what lets a fan-out compress a message once for all of them
/// ([`SharedDeflate`](super::SharedDeflate)). `None` as [`DeflateState::compress`].
pub(super) fn compress_alone(settings: Settings, payload: &[u8]) -> Option<Bytes> {
    let mut compressor = borrow_compressor(settings);
    let result = deflate_sync(&mut compressor, payload);
    compressor.reset();
    SPARE_COMPRESSOR.set(Some((settings, compressor)));
    result
}

/// A decompressor: this thread's spare when it has one, else a new one.
fn borrow_decompressor() -> Decompress {
    SPARE_DECOMPRESSOR
        .take()
        .unwrap_or_else(|| Decompress::new_with_window_bits(false, INFLATE_WINDOW_BITS))
}

/// permessage-deflate state of one connection.
pub(crate) struct DeflateState {
    params: DeflateParams,
    /// Our compressor: reset after each message (or dropped) with "no context takeover".
    local_no_context_takeover: bool,
    local: Settings,
    /// The peer's: it resets its window after each message.
    remote_no_context_takeover: bool,
    /// The peer's window in bytes: how far back its messages may refer.
    remote_window: usize,
    compressor: Option<Deflate>,
    /// The thread's decompressor, lent while a message is being inflated.
    decompressor: Option<Decompress>,
    /// The peer's context, when it keeps one: the last bytes it compressed (its compressed
    /// messages' inflated bytes), at most `remote_window` of them, which is all a message may
    /// refer to. Empty when it keeps none.
    history: Vec<u8>,
    /// The inflated bytes of the compressed message being received.
    inflated: Vec<u8>,
    /// The message being received ended its deflate stream (a block with BFINAL set): the
    /// rest of it is ignored and the next message starts a new stream.
    stream_ended: bool,
}

impl std::fmt::Debug for DeflateState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeflateState")
            .field("params", &self.params)
            .field("compressor", &self.compressor.is_some())
            .field("decompressor", &self.decompressor.is_some())
            .field("history", &self.history.len())
            .field("inflated", &self.inflated.len())
            .finish_non_exhaustive()
    }
}

/// zlib cannot deflate with an 8-bit window: an 8 is served with 9, whose deflate output still
/// never refers back more than 250 bytes (zlib keeps `MIN_LOOKAHEAD` = 262 bytes of a
/// 512-byte window free).
fn zlib_window_bits(bits: u8) -> u8 {
    bits.clamp(9, 15)
}

impl DeflateState {
    pub(crate) fn new(role: Role, params: DeflateParams) -> Self {
        let (local_nct, remote_nct, local_bits, remote_bits) = match role {
            Role::Server => (
                params.server_no_context_takeover,
                params.client_no_context_takeover,
                params.server_max_window_bits,
                params.client_max_window_bits,
            ),
            Role::Client => (
                params.client_no_context_takeover,
                params.server_no_context_takeover,
                params.client_max_window_bits,
                params.server_max_window_bits,
            ),
        };
        Self {
            params,
            local_no_context_takeover: local_nct,
            local: Settings::new(params.level, local_bits, params.mem_level),
            remote_no_context_takeover: remote_nct,
            // RFC 7692 §7.1.2: the peer's LZ77 window is at most 2^bits bytes.
            remote_window: 1 << remote_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS),
            compressor: None,
            decompressor: None,
            history: Vec::new(),
            inflated: Vec::new(),
            stream_ended: false,
        }
    }

    pub(crate) fn params(&self) -> &DeflateParams {
        &self.params
    }

    /// Whether a message of `len` bytes is worth compressing.
    pub(crate) fn wants(&self, len: usize) -> bool {
        len >= self.params.threshold && self.params.level > 0
    }

    /// The largest message sent as it is, uncompressed (the largest one [`Self::wants`]
    /// passes over); `None` when every message is compressed (a threshold of 0).
    pub(crate) fn plain_limit(&self) -> Option<usize> {
        if self.params.level > 0 {
            self.params.threshold.checked_sub(1)
        } else {
            Some(usize::MAX)
        }
    }

    /// Whether a compressor, decompressor or context is held (what an idle connection costs).
    #[cfg(test)]
    pub(crate) fn holds_state(&self) -> bool {
        self.compressor.is_some() || self.decompressor.is_some() || !self.history.is_empty()
    }

    // ----- sending ---------------------------------------------------------------------------

    /// Compresses one whole message (RFC 7692 §7.2.1): deflate with a sync flush, minus the
    /// `00 00 ff ff` tail. `None` when the result would not be smaller than `payload`: the
    /// message then goes out uncompressed, which §6 allows for any message.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Option<Bytes> {
        let settings = self.local;
        if self.local_no_context_takeover {
            // The next message starts with an empty window: the thread's compressor serves,
            // and this connection holds none between messages.
            return compress_alone(settings, payload);
        }
        let compressor = self
            .compressor
            .get_or_insert_with(|| borrow_compressor(settings));
        let result = deflate_sync(compressor, payload);
        if result.is_none() {
            // The message goes out uncompressed, but the window now holds its bytes, which
            // the peer never saw: start over (the peer's window may keep what it has, we just
            // never refer to it again).
            compressor.reset();
        }
        result
    }

    // ----- receiving -------------------------------------------------------------------------

    /// Inflates the next piece of the compressed message being received. `last` says that
    /// this is the end of the message's final frame, after which the tail is inflated too.
    /// Returns where the new output starts in [`DeflateState::inflated_bytes`], for UTF-8
    /// checks on the new bytes only.
    ///
    /// # Errors
    /// [`CapacityError::MessageTooLarge`] as soon as the message would inflate past `limit`
    /// bytes (nothing past `limit + 1` bytes is ever produced);
    /// [`ProtocolError::InvalidCompressedData`] when the data is not valid deflate.
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        last: bool,
        limit: usize,
    ) -> Result<usize, Error> {
        let start = self.inflated.len();
        if self.stream_ended {
            return Ok(start);
        }
        let decompressor = match &mut self.decompressor {
            Some(decompressor) => decompressor,
            None => {
                // A message's first bytes: the thread's decompressor, given the peer's context.
                let mut decompressor = borrow_decompressor();
                if !self.history.is_empty() {
                    // Raw inflate takes a dictionary at any time: this cannot fail.
                    decompressor
                        .set_dictionary(&self.history)
                        .map_err(|_| ProtocolError::InvalidCompressedData)?;
                }
                self.decompressor.insert(decompressor)
            }
        };
        self.stream_ended = inflate_bounded(decompressor, input, &mut self.inflated, limit)?;
        if last && !self.stream_ended {
            self.stream_ended = inflate_bounded(decompressor, &TAIL, &mut self.inflated, limit)?;
        }
        Ok(start)
    }

    /// The bytes inflated so far for the message being received.
    pub(crate) fn inflated_bytes(&self) -> &[u8] {
        &self.inflated
    }

    /// Ends the message being received and hands out its inflated bytes.
    pub(crate) fn finish_message(&mut self) -> Bytes {
        if !self.remote_no_context_takeover {
            if self.stream_ended {
                // A final block ended the peer's stream: the next message starts a new one,
                // with an empty window.
                self.history = Vec::new();
            } else {
                remember(&mut self.history, &self.inflated, self.remote_window);
            }
        }
        // The thread keeps the decompressor; the connection keeps at most the context.
        if let Some(mut decompressor) = self.decompressor.take() {
            decompressor.reset(false);
            SPARE_DECOMPRESSOR.set(Some(decompressor));
        }
        self.stream_ended = false;
        Bytes::from(std::mem::take(&mut self.inflated))
    }

    /// Drops all state: the connection failed, nothing more is compressed or inflated.
    pub(crate) fn release(&mut self) {
        self.compressor = None;
        self.decompressor = None;
        self.history = Vec::new();
        self.inflated = Vec::new();
        self.stream_ended = false;
    }
}

/// Appends `message` to the peer's context `history`, keeping the last `window` bytes (a power
/// of two). The buffer grows by doubling up to the window, never past it.
fn remember(history: &mut Vec<u8>, message: &[u8], window: usize) {
    let message = &message[message.len().saturating_sub(window)..];
    let keep = window - message.len();
    history.drain(..history.len().saturating_sub(keep));
    let len = history.len() + message.len();
    if len > history.capacity() {
        history.reserve_exact(len.next_power_of_two().min(window) - history.len());
    }
    history.extend_from_slice(message);
}

/// Deflates `input` with a sync flush and strips the tail; `None` when the output would not be
/// smaller than the input (or, which zlib never does, the compressor fails).
///
/// The output buffer has room for the worst case (zlib's `compressBound`), never merely for a
/// gain: zlib-rs 0.6 at level 1 overruns its pending buffer and panics when the output
/// runs out in the middle of a sync flush (seen with incompressible data), so it is never
/// let run out. Incompressible data is therefore deflated whole before it is sent plain.
fn deflate_sync(compressor: &mut Deflate, input: &[u8]) -> Option<Bytes> {
    // zlib-rs writes into initialized bytes only: zeroing them costs far less than deflating
    // them. The bound is for a whole zlib stream; a sync flush adds at most an empty stored
    // block and a byte of alignment, which the margin covers.
    let mut out = vec![0u8; zlib_rs::compress_bound(input.len()).checked_add(SYNC_MARGIN)?];
    let mut written = 0;
    let mut rest = input;
    loop {
        let before_in = compressor.total_in();
        let before_out = compressor.total_out();
        compressor
            .compress(rest, out.get_mut(written..)?, DeflateFlush::SyncFlush)
            .ok()?;
        let consumed = usize::try_from(compressor.total_in() - before_in).ok()?;
        let produced = usize::try_from(compressor.total_out() - before_out).ok()?;
        rest = rest.get(consumed..)?;
        written += produced;
        if rest.is_empty() && written < out.len() {
            // Room was left over: the flush is complete (zlib's rule for Z_SYNC_FLUSH).
            break;
        }
        if consumed == 0 && produced == 0 {
            return None;
        }
        if written == out.len() {
            // Not reached (the bound holds); should it be, the room grows rather than runs out.
            out.resize(out.len().checked_add(out.len() / 2)?, 0);
        }
    }
    out.truncate(written);
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    if out.len() >= input.len() {
        return None;
    }
    if out.capacity() - out.len() > 4096 {
        out.shrink_to_fit();
    }
    Some(Bytes::from(out))
}

/// Inflates `input` into `out`, which may grow to `limit` bytes. Returns whether the deflate
/// stream ended (a final block).
fn inflate_bounded(
    decompressor: &mut Decompress,
    mut input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, Error> {
    let too_large = |size: usize| CapacityError::MessageTooLarge {
        size: size as u64,
        max: limit as u64,
    };
    loop {
        if out.len() == out.capacity() {
            // Room for at most one byte past the limit, which is how going past it shows.
            let room = limit.saturating_add(1).saturating_sub(out.len());
            if room == 0 {
                return Err(too_large(out.len()).into());
            }
            let grow = out
                .len()
                .max(input.len().saturating_mul(4))
                .max(MIN_INFLATE_CHUNK)
                .min(room);
            out.reserve_exact(grow);
        }
        let before_in = decompressor.total_in();
        let before_out = decompressor.total_out();
        let status = decompressor
            .decompress_vec(input, out, FlushDecompress::None)
            .map_err(|_| ProtocolError::InvalidCompressedData)?;
        let consumed = usize::try_from(decompressor.total_in() - before_in).unwrap_or(usize::MAX);
        let produced = decompressor.total_out() - before_out;
        input = input.get(consumed..).unwrap_or_default();
        if out.len() > limit {
            return Err(too_large(out.len()).into());
        }
        if status == Status::StreamEnd {
            return Ok(true);
        }
        let room_left = out.len() < out.capacity();
        if input.is_empty() && room_left {
            return Ok(false);
        }
        if consumed == 0 && produced == 0 && room_left {
            // zlib made no progress with input and room: the data is broken.
            return Err(ProtocolError::InvalidCompressedData.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(params: DeflateParams) -> (DeflateState, DeflateState) {
        (
            DeflateState::new(Role::Client, params),
            DeflateState::new(Role::Server, params),
        )
    }

    fn inflate_all(state: &mut DeflateState, data: &[u8], limit: usize) -> Result<Bytes, Error> {
        state.inflate(data, true, limit)?;
        Ok(state.finish_message())
    }

    #[test]
    fn rfc7692_7_2_3_1_hello_compresses_to_the_rfc_bytes() {
        // RFC 7692 §7.2.3.1: "Hello" is 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00, whatever the
        // memory level and window.
        for (window_bits, mem_level) in [(15, 8), (15, 5), (12, 5), (9, 1)] {
            let settings = Settings {
                level: 6,
                window_bits,
                mem_level,
            };
            let mut compressor = settings.compressor();
            let mut out = [0u8; 64];
            compressor
                .compress(b"Hello", &mut out, DeflateFlush::SyncFlush)
                .unwrap();
            let len = compressor.total_out() as usize;
            assert_eq!(
                out[..len],
                [
                    0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff
                ],
                "{settings:?}"
            );
        }
        // …and inflates back from them, tail appended by the receiver.
        let mut client = DeflateState::new(Role::Client, DeflateParams::default());
        let got = inflate_all(
            &mut client,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            100,
        );
        assert_eq!(got.unwrap(), &b"Hello"[..]);
    }

    #[test]
    fn rfc7692_7_2_3_2_second_message_refers_back_into_the_first() {
        // §7.2.3.2: with context takeover the second "Hello" is 0xf2 0x00 0x11 0x00 0x00.
        let mut client = DeflateState::new(Role::Client, DeflateParams::default());
        let first = inflate_all(
            &mut client,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            100,
        );
        assert_eq!(first.unwrap(), &b"Hello"[..]);
        let second = inflate_all(&mut client, &[0xf2, 0x00, 0x11, 0x00, 0x00], 100);
        assert_eq!(second.unwrap(), &b"Hello"[..]);
    }

    #[test]
    fn rfc7692_7_2_3_3_stored_block_inflates() {
        // §7.2.3.3: "Hello" in a stored block.
        let mut client = DeflateState::new(Role::Client, DeflateParams::default());
        let got = inflate_all(
            &mut client,
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            100,
        );
        assert_eq!(got.unwrap(), &b"Hello"[..]);
    }

    #[test]
    fn rfc7692_7_2_3_5_bfinal_ends_the_stream_and_the_next_message_starts_anew() {
        // §7.2.3.5 style: a final block (BFINAL = 1): 0xf3 0x48 0xcd 0xc9 0xc9 0x07 0x00.
        let mut client = DeflateState::new(Role::Client, DeflateParams::default());
        let got = inflate_all(
            &mut client,
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            100,
        );
        assert_eq!(got.unwrap(), &b"Hello"[..]);
        let again = inflate_all(
            &mut client,
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            100,
        );
        assert_eq!(again.unwrap(), &b"Hello"[..]);
    }

    #[test]
    fn round_trip_with_context_takeover_gets_smaller() {
        let (mut client, mut server) = pair(DeflateParams::default());
        let text = b"a message that repeats itself, a message that repeats itself".repeat(3);
        let first = client.compress(&text).unwrap();
        let second = client.compress(&text).unwrap();
        assert!(
            second.len() < first.len(),
            "{} {}",
            second.len(),
            first.len()
        );
        assert_eq!(inflate_all(&mut server, &first, 1 << 20).unwrap(), text);
        assert_eq!(inflate_all(&mut server, &second, 1 << 20).unwrap(), text);
        // The sender keeps its compressor; the receiver keeps only what the sender may refer
        // to, and lends the decompressor back to the thread.
        assert!(client.compressor.is_some());
        assert!(server.decompressor.is_none());
        assert_eq!(server.history, [&text[..], &text[..]].concat());
    }

    #[test]
    fn the_peers_context_is_the_last_window_of_what_it_compressed() {
        // The client's window is 512 bytes (9 bits): the server keeps the last 512 bytes of
        // the client's compressed messages, never a byte or a byte of capacity more.
        let params = with_window_and_memory(9, 5);
        let (mut client, mut server) = pair(params);
        let mut sent = Vec::new();
        for i in 0..40u32 {
            let text = format!(
                "message {i}: {}",
                "the same words again and again ".repeat(1 + i as usize % 5)
            )
            .into_bytes();
            let packed = client.compress(&text).unwrap();
            assert_eq!(inflate_all(&mut server, &packed, 1 << 20).unwrap(), text);
            sent.extend_from_slice(&text);
            let tail = &sent[sent.len().saturating_sub(512)..];
            assert_eq!(server.history, tail, "message {i}");
            assert!(
                server.history.capacity() <= 512,
                "{}",
                server.history.capacity()
            );
        }
        // Later messages draw on it: the same text again compresses to a few bytes.
        let again = b"the same words again and again the same words again and again".to_vec();
        let first = client.compress(&again).unwrap();
        assert!(first.len() < 20, "{}", first.len());
        assert_eq!(inflate_all(&mut server, &first, 1 << 20).unwrap(), again);
        // A message longer than the window leaves only its own last 512 bytes.
        let long = lines();
        let packed = client.compress(&long).unwrap();
        assert_eq!(inflate_all(&mut server, &packed, 1 << 20).unwrap(), long);
        assert_eq!(server.history, long[long.len() - 512..]);
        assert!(server.decompressor.is_none());
    }

    #[test]
    fn a_peer_that_refers_past_the_window_it_agreed_to_fails_1007() {
        // The client compresses with 32 KiB windows while the server was promised 512 bytes:
        // a reference further back than that is broken data.
        let mut client = DeflateState::new(Role::Client, with_window_and_memory(15, 5));
        let mut server = DeflateState::new(Role::Server, with_window_and_memory(9, 5));
        let text: Vec<u8> = (0..2000u32)
            .flat_map(|i| format!("{:08x}", i.wrapping_mul(2_654_435_761)).into_bytes())
            .take(1000)
            .collect();
        let first = client.compress(&text).unwrap();
        assert_eq!(inflate_all(&mut server, &first, 1 << 20).unwrap(), text);
        // The same 1,000 bytes again: one reference 1,000 bytes back.
        let second = client.compress(&text).unwrap();
        assert!(second.len() < 20, "{}", second.len());
        let error = server.inflate(&second, true, 1 << 20).unwrap_err();
        assert_eq!(error, ProtocolError::InvalidCompressedData.into());
    }

    #[test]
    fn rfc7692_7_1_1_no_context_takeover_releases_the_state_after_each_message() {
        let params = DeflateParams {
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let (mut client, mut server) = pair(params);
        let text = b"a message that repeats itself, a message that repeats itself".repeat(3);
        let first = client.compress(&text).unwrap();
        let second = client.compress(&text).unwrap();
        assert_eq!(first, second);
        assert!(!client.holds_state());
        assert_eq!(inflate_all(&mut server, &first, 1 << 20).unwrap(), text);
        assert!(!server.holds_state());
        assert_eq!(inflate_all(&mut server, &second, 1 << 20).unwrap(), text);
    }

    #[test]
    fn without_context_takeover_the_thread_lends_one_compressor_and_decompressor() {
        let params = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        let text = b"a message that repeats itself, a message that repeats itself".repeat(3);
        // Two connections of one thread, taking turns: each message is compressed alone
        // (the same bytes every time) by the thread's compressor, and each connection
        // holds none in between.
        let (mut client_a, mut server_a) = pair(params);
        let (mut client_b, mut server_b) = pair(params);
        let first = server_a.compress(&text).unwrap();
        let address = SPARE_COMPRESSOR.with(|c| {
            let spare = c.take();
            let at = spare.as_ref().map(|(_, c)| std::ptr::from_ref(c) as usize);
            c.set(spare);
            at
        });
        assert!(address.is_some(), "the compressor went back to the thread");
        assert_eq!(server_b.compress(&text).unwrap(), first);
        assert_eq!(server_a.compress(&text).unwrap(), first);
        assert!(!server_a.holds_state() && !server_b.holds_state());
        // The decompressor likewise, between messages.
        for turn in 0..3 {
            let client = if turn == 1 {
                &mut client_b
            } else {
                &mut client_a
            };
            assert_eq!(inflate_all(client, &first, 1 << 20).unwrap(), text);
            assert!(!client.holds_state());
        }
        assert!(SPARE_DECOMPRESSOR.with(|d| {
            let spare = d.take();
            let kept = spare.is_some();
            d.set(spare);
            kept
        }));
    }

    #[test]
    fn incompressible_data_is_not_compressed_and_the_window_starts_over() {
        let (mut client, mut server) = pair(DeflateParams::default());
        let noise = crate::deflate::test_noise(4096);
        assert_eq!(client.compress(&noise), None);
        // The next message must not refer to bytes the peer never inflated.
        let text = b"hello hello hello hello hello hello hello hello".to_vec();
        let packed = client.compress(&text).unwrap();
        assert_eq!(inflate_all(&mut server, &packed, 1 << 20).unwrap(), text);
    }

    /// 20,000 short lines, about 300 KB: compressible, and long enough to fill any buffer.
    fn lines() -> Vec<u8> {
        (0..20_000u32)
            .flat_map(|i| format!("line {} of {}\n", i % 700, i % 13).into_bytes())
            .collect()
    }

    fn with_window_and_memory(bits: u8, mem_level: u8) -> DeflateParams {
        DeflateParams {
            server_max_window_bits: bits,
            client_max_window_bits: bits,
            mem_level,
            ..DeflateParams::default()
        }
    }

    #[test]
    fn every_window_and_memory_level_round_trips() {
        let text = lines();
        for bits in 9..=15 {
            for mem_level in 1..=9 {
                let (mut client, mut server) = pair(with_window_and_memory(bits, mem_level));
                // Twice: the second message refers back into the first.
                for _ in 0..2 {
                    let packed = client.compress(&text).unwrap();
                    assert_eq!(
                        inflate_all(&mut server, &packed, 1 << 20).unwrap(),
                        text,
                        "{bits} bits, memory level {mem_level}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_memory_level_is_the_compressors() {
        // The memory level sets how many symbols a deflate block holds (2^(level + 6)): at 1
        // the output is cut into many more blocks, each with its own code tables, than at 5
        // or 9, and 5 and 9 cut it differently.
        let text = lines();
        let size = |mem_level| {
            let mut state = DeflateState::new(Role::Client, with_window_and_memory(15, mem_level));
            state.compress(&text).unwrap().len()
        };
        let (one, five, nine) = (size(1), size(5), size(9));
        assert!(
            one > five && one > nine && five != nine,
            "{one} {five} {nine}"
        );
        // Out of range in the (public) parameters: the nearest level.
        assert_eq!(size(0), one);
        assert_eq!(size(200), nine);
    }

    #[test]
    fn the_spare_compressor_is_kept_with_its_level_window_and_memory_level() {
        let text = lines();
        let spare = || {
            SPARE_COMPRESSOR.with(|c| {
                let spare = c.take();
                let settings = spare.as_ref().map(|(settings, _)| *settings);
                c.set(spare);
                settings
            })
        };
        let no_context = |level, bits, mem_level| {
            DeflateState::new(
                Role::Server,
                DeflateParams {
                    server_no_context_takeover: true,
                    level,
                    ..with_window_and_memory(bits, mem_level)
                },
            )
        };
        for (level, bits, mem_level) in [(6, 12, 5), (6, 12, 9), (6, 15, 9), (1, 15, 9), (1, 8, 1)]
        {
            let mut server = no_context(level, bits, mem_level);
            let packed = server.compress(&text).unwrap();
            let expected = Settings {
                level,
                window_bits: zlib_window_bits(bits),
                mem_level,
            };
            assert_eq!(spare(), Some(expected));
            // What it compressed is what a compressor made with those settings makes.
            assert_eq!(
                deflate_sync(&mut expected.compressor(), &text).unwrap(),
                packed
            );
        }
    }

    #[test]
    fn incompressible_data_never_panics_at_any_level_window_or_memory_level() {
        // zlib-rs 0.6 panicked here at level 1 when its output ran out in the middle of a
        // sync flush (with flate2 too, at memory level 8): 70 KB of noise did it.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..70_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let text = lines();
        for level in 1..=9 {
            for bits in [8, 12, 15] {
                for mem_level in [1, 5, 8, 9] {
                    let (mut client, mut server) = pair(DeflateParams {
                        level,
                        ..with_window_and_memory(bits, mem_level)
                    });
                    for piece in [&noise[..300], &noise[..], &noise[..5000]] {
                        assert_eq!(client.compress(piece), None, "{level} {bits} {mem_level}");
                    }
                    let packed = client.compress(&text).unwrap();
                    assert_eq!(inflate_all(&mut server, &packed, 1 << 20).unwrap(), text);
                }
            }
        }
    }

    #[test]
    fn every_window_size_round_trips_including_8() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {} of {}\n", i % 700, i % 13).into_bytes())
            .collect();
        for bits in 8..=15 {
            let params = DeflateParams {
                server_max_window_bits: bits,
                client_max_window_bits: bits,
                ..DeflateParams::default()
            };
            let (mut client, mut server) = pair(params);
            let packed = client.compress(&text).unwrap();
            assert_eq!(
                inflate_all(&mut server, &packed, 1 << 20).unwrap(),
                text,
                "{bits}"
            );
        }
    }

    #[test]
    fn rfc7692_8_inflating_past_the_limit_fails_1009_without_inflating_it_all() {
        let (mut client, mut server) = pair(DeflateParams::default());
        let zeros = vec![0u8; 10 << 20];
        let bomb = client.compress(&zeros).unwrap();
        assert!(bomb.len() < 16 << 10, "{}", bomb.len());
        let err = server.inflate(&bomb, true, 1 << 20).unwrap_err();
        assert_eq!(err.close_code().map(|c| c.as_u16()), Some(1009));
        assert!(
            server.inflated.capacity() <= (1 << 20) + 4096,
            "{}",
            server.inflated.capacity()
        );
    }

    #[test]
    fn exactly_the_limit_is_accepted() {
        let (mut client, mut server) = pair(DeflateParams::default());
        let data = vec![7u8; 5000];
        let packed = client.compress(&data).unwrap();
        assert_eq!(inflate_all(&mut server, &packed, 5000).unwrap(), data);
        let packed = client.compress(&data).unwrap();
        assert!(server.inflate(&packed, true, 4999).is_err());
    }

    #[test]
    fn garbage_fails_as_invalid_compressed_data() {
        let mut server = DeflateState::new(Role::Server, DeflateParams::default());
        let err = server.inflate(&[0xff; 16], true, 1 << 20).unwrap_err();
        assert_eq!(err, ProtocolError::InvalidCompressedData.into());
    }

    #[test]
    fn input_in_pieces_inflates_the_same() {
        let (mut client, mut server) = pair(DeflateParams::default());
        let text = "κόσμε and some ascii, ".repeat(500).into_bytes();
        let packed = client.compress(&text).unwrap();
        for piece in packed.chunks(7) {
            server.inflate(piece, false, 1 << 20).unwrap();
        }
        server.inflate(&[], true, 1 << 20).unwrap();
        assert_eq!(server.finish_message(), text);
    }
}

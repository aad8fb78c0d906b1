//! The compressor and decompressor of one connection (RFC 7692 §7.2), allocated on first use;
//! for a side with "no context takeover", borrowed from the thread for one message instead,
//! so that such a connection holds neither between messages.

use std::cell::Cell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::DeflateParams;
use crate::error::{CapacityError, Error, ProtocolError};
use crate::role::Role;

/// The empty stored block a sync flush ends with, removed by the sender and put back by the
/// receiver (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The first output buffer of a message holds at least this many bytes.
const MIN_INFLATE_CHUNK: usize = 256;

thread_local! {
    /// The compressor of senders with "no context takeover", which start every message with
    /// an empty window anyway: one per thread, reset between messages, rather than one
    /// (about 256 KiB with a 15-bit window) allocated and freed for every message and held
    /// by no connection in between (uWebSockets' shared compressor). Kept with its level and
    /// window bits, which a reset keeps. A side with context takeover takes it too for its
    /// first message, and keeps it.
    static SPARE_COMPRESSOR: Cell<Option<(u32, u8, Compress)>> = const { Cell::new(None) };
    /// Likewise the decompressor for peers with "no context takeover", between messages,
    /// with its window bits: it serves any peer whose window is no larger. (zlib-rs inflates
    /// with a full window whatever it was given, but zlib's contract is the window asked
    /// for, so a smaller one is never lent to a peer with a larger window.)
    static SPARE_DECOMPRESSOR: Cell<Option<(u8, Decompress)>> = const { Cell::new(None) };
}

/// A compressor with `level` and `bits`: this thread's spare when it matches, else a new one.
fn borrow_compressor(level: u32, bits: u8) -> Compress {
    match SPARE_COMPRESSOR.take() {
        Some((l, b, compressor)) if l == level && b == bits => compressor,
        _ => Compress::new_with_window_bits(Compression::new(level), false, bits),
    }
}

/// A decompressor with a window of at least `bits`: this thread's spare when it has one, else
/// a new one.
fn borrow_decompressor(bits: u8) -> Decompress {
    match SPARE_DECOMPRESSOR.take() {
        Some((b, decompressor)) if b >= bits => decompressor,
        _ => Decompress::new_with_window_bits(false, bits),
    }
}

/// permessage-deflate state of one connection.
pub(crate) struct DeflateState {
    params: DeflateParams,
    /// Our compressor: reset after each message (or dropped) with "no context takeover".
    local_no_context_takeover: bool,
    local_window_bits: u8,
    /// The peer's: our decompressor is dropped after each message when it resets its window.
    remote_no_context_takeover: bool,
    remote_window_bits: u8,
    compressor: Option<Compress>,
    decompressor: Option<Decompress>,
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
            .field("inflated", &self.inflated.len())
            .finish_non_exhaustive()
    }
}

/// zlib cannot deflate with an 8-bit window, and `flate2` asks for 9 to 15 both ways: an 8
/// is served with 9, whose deflate output still never refers back more than 250 bytes (zlib
/// keeps `MIN_LOOKAHEAD` = 262 bytes of a 512-byte window free), and whose inflate window
/// is larger than needed, which is always safe.
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
            local_window_bits: zlib_window_bits(local_bits),
            remote_no_context_takeover: remote_nct,
            remote_window_bits: zlib_window_bits(remote_bits),
            compressor: None,
            decompressor: None,
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

    /// Whether a compressor or decompressor is allocated (what an idle connection costs).
    #[cfg(test)]
    pub(crate) fn holds_state(&self) -> bool {
        self.compressor.is_some() || self.decompressor.is_some()
    }

    // ----- sending ---------------------------------------------------------------------------

    /// Compresses one whole message (RFC 7692 §7.2.1): deflate with a sync flush, minus the
    /// `00 00 ff ff` tail. `None` when the result would not be smaller than `payload`: the
    /// message then goes out uncompressed, which §6 allows for any message.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> Option<Bytes> {
        let (level, bits) = (self.params.level, self.local_window_bits);
        if self.local_no_context_takeover {
            // The next message starts with an empty window: the thread's compressor serves,
            // and this connection holds none between messages.
            let mut compressor = borrow_compressor(level, bits);
            let result = deflate_sync(&mut compressor, payload);
            compressor.reset();
            SPARE_COMPRESSOR.set(Some((level, bits, compressor)));
            return result;
        }
        let compressor = self
            .compressor
            .get_or_insert_with(|| borrow_compressor(level, bits));
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
        let bits = self.remote_window_bits;
        let decompressor = self
            .decompressor
            .get_or_insert_with(|| borrow_decompressor(bits));
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
        if self.remote_no_context_takeover {
            // The next message starts a new stream: the thread keeps the decompressor.
            if let Some(mut decompressor) = self.decompressor.take() {
                decompressor.reset(false);
                // Labelled with the window asked for: one lent with a larger window serves
                // no larger peer than that.
                SPARE_DECOMPRESSOR.set(Some((self.remote_window_bits, decompressor)));
            }
        } else if self.stream_ended {
            self.decompressor = None;
        }
        self.stream_ended = false;
        Bytes::from(std::mem::take(&mut self.inflated))
    }

    /// Drops all state: the connection failed, nothing more is compressed or inflated.
    pub(crate) fn release(&mut self) {
        self.compressor = None;
        self.decompressor = None;
        self.inflated = Vec::new();
        self.stream_ended = false;
    }
}

/// Deflates `input` with a sync flush and strips the tail; `None` when the output would not be
/// smaller than the input (or, which zlib never does, the compressor fails).
fn deflate_sync(compressor: &mut Compress, input: &[u8]) -> Option<Bytes> {
    // Anything as long as the input plus the tail is no gain: stop there.
    let cap = input.len().checked_add(TAIL.len())?;
    let mut out = Vec::with_capacity(cap);
    let mut rest = input;
    loop {
        let before_in = compressor.total_in();
        let before_out = compressor.total_out();
        compressor
            .compress_vec(rest, &mut out, FlushCompress::Sync)
            .ok()?;
        let consumed = usize::try_from(compressor.total_in() - before_in).ok()?;
        rest = rest.get(consumed..)?;
        if rest.is_empty() && out.len() < out.capacity() {
            // Room was left over: the flush is complete (zlib's rule for Z_SYNC_FLUSH).
            break;
        }
        if out.len() >= cap || (consumed == 0 && compressor.total_out() == before_out) {
            return None;
        }
    }
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
        // RFC 7692 §7.2.3.1: "Hello" is 0xf2 0x48 0xcd 0xc9 0xc9 0x07 0x00.
        let mut state = DeflateState::new(
            Role::Server,
            DeflateParams {
                threshold: 0,
                ..DeflateParams::default()
            },
        );
        let mut out = Vec::with_capacity(64);
        let compressor = state
            .compressor
            .get_or_insert_with(|| Compress::new_with_window_bits(Compression::new(6), false, 15));
        compressor
            .compress_vec(b"Hello", &mut out, FlushCompress::Sync)
            .unwrap();
        assert_eq!(
            out,
            [
                0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff
            ]
        );
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
        assert!(client.compressor.is_some() && server.decompressor.is_some());
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
            let at = spare
                .as_ref()
                .map(|(_, _, c)| std::ptr::from_ref(c) as usize);
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
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert_eq!(client.compress(&noise), None);
        // The next message must not refer to bytes the peer never inflated.
        let text = b"hello hello hello hello hello hello hello hello".to_vec();
        let packed = client.compress(&text).unwrap();
        assert_eq!(inflate_all(&mut server, &packed, 1 << 20).unwrap(), text);
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

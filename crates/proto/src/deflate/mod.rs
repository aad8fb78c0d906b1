//! permessage-deflate (RFC 7692), behind the `deflate` feature: the negotiation in the opening
//! handshake and per-message compression on an open [`Connection`](crate::Connection).
//!
//! **Negotiation** ([`DeflateConfig`], RFC 7692 §5 and §7.1). A client sends
//! [`DeflateConfig::offer`] as its `Sec-WebSocket-Extensions` value and checks the server's
//! answer with [`DeflateConfig::accept_response`], which fails the handshake on a parameter it
//! did not allow. A server calls [`DeflateConfig::negotiate`] with the client's offers and gets
//! the [`DeflateParams`] and the response header value for the first offer it can accept;
//! offers with unknown, malformed or repeated parameters are declined, as §5 says.
//!
//! **Messages** (RFC 7692 §6 and §7.2). [`Config::deflate`](crate::Config::deflate) turns
//! compression on for a connection with the negotiated [`DeflateParams`]:
//!
//! - outgoing data messages of at least [`DeflateParams::threshold`] bytes are compressed
//!   with one `Z_SYNC_FLUSH`, the `00 00 ff ff` tail is removed (§7.2.1), RSV1 is set on the
//!   first frame only, and the message is fragmented after compression if asked to. A message
//!   that would not get smaller is sent as it is (RSV1 clear), which §6 allows;
//! - received messages with RSV1 on their first frame are inflated as their payload arrives,
//!   with the tail appended at the end (§7.2.2); the output is bounded by `max_message_size`
//!   (close 1009 as soon as it would go past, never after inflating it all), text is checked
//!   as UTF-8 on the inflated bytes, and RSV1 on a continuation or control frame fails with
//!   1002 (§6.1). Data that does not inflate fails with 1007, as Node's `ws` does;
//! - control frames are never compressed;
//! - "no context takeover" resets the LZ77 window between messages (§7.1.1).
//!
//! **One compression for many connections.** A server without context takeover compresses
//! every message alone, so the compressed bytes are the same for every connection that agreed
//! to the same window: [`SharedDeflate`] compresses a message once for all of them, as
//! [`encode_server_frame`](crate::encode_server_frame) encodes a plain frame once (the Hub's
//! fan-out in wsworker does this, as uWebSockets' shared compressor does).
//!
//! **Memory.** Nothing is allocated until the first compressed message, so a connection that
//! negotiated compression but sends nothing large costs nothing more. Decompressing, a
//! connection keeps at most the peer's context: the last bytes the peer compressed, as many
//! as its window (4 KiB at 12 bits, 32 KiB at 15), nothing when the peer has "no context
//! takeover"; the decompressor itself is the thread's, lent for each message and given that
//! context as its dictionary. Compressing with context takeover, a connection keeps its
//! compressor for its life: about 160 KiB with 12-bit windows (zlib-rs: a 128 KiB hash table
//! whatever the window and memory level, twice the window, two bytes per window position, and
//! the memory level's buffers as large messages fill them); with "no context takeover" the
//! thread lends one for each message. The README's permessage-deflate section has the
//! measurements.
//!
//! **Backend.** `zlib-rs`, a pure-Rust port of zlib (no C compiler needed): its own API
//! compresses (raw deflate with a chosen window size and memory level), `flate2` on it
//! inflates. zlib cannot deflate with an 8-bit window (256 bytes); as zlib itself, Node's `ws`
//! and others do, a negotiated 8 is served with a 9-bit window, whose output never refers
//! further back than 250 bytes, so any peer with a 256-byte window inflates it.

mod codec;
mod params;
mod shared;

pub(crate) use codec::DeflateState;
pub use params::{DeflateConfig, DeflateParams};
pub use shared::SharedDeflate;

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The smallest LZ77 window the parameters allow: 2^8 bytes.
pub const MIN_WINDOW_BITS: u8 = 8;

/// The largest LZ77 window: 2^15 bytes, what a side may use when nothing limits it.
pub const MAX_WINDOW_BITS: u8 = 15;

/// The window a server asks for by default, its own and the client's (when the client's
/// offer lets it): 2^12 bytes, as Python's `websockets` does.
pub const DEFAULT_WINDOW_BITS: u8 = 12;

/// The smallest zlib memory level.
pub const MIN_MEM_LEVEL: u8 = 1;

/// The largest zlib memory level.
pub const MAX_MEM_LEVEL: u8 = 9;

/// The default memory level of the compressor (zlib's own is 8), as Python's `websockets`
/// uses: see [`DeflateConfig::mem_level`].
pub const DEFAULT_MEM_LEVEL: u8 = 5;

/// The default threshold: messages shorter than this many bytes are sent uncompressed.
pub const DEFAULT_THRESHOLD: usize = 32;

/// The default compression level (0 = store, 1 = fastest … 9 = smallest).
pub const DEFAULT_LEVEL: u8 = 6;

/// `len` bytes that do not compress (xorshift), the same each time: for the tests.
#[cfg(test)]
pub(crate) fn test_noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

//! One compression of a message for many server connections (a fan-out), as uWebSockets'
//! shared compressor does: a server that resets its window after every message
//! (`server_no_context_takeover`) compresses each message alone, so the same compressed
//! bytes are what it would send on every connection that agreed to the same window, level
//! and threshold. [`SharedDeflate`] names those terms; its [`encode`](SharedDeflate::encode)
//! makes the frame once, with the same compressor the connections use (the thread's).

use std::num::NonZeroU8;

use super::DeflateParams;
use super::codec::{Settings, compress_alone};
use crate::connection::{PreparedFrame, compressed_server_frame};
use crate::message::Message;

/// The terms under which a server connection with permessage-deflate takes a message
/// compressed once for many connections: our window, compression level, memory level and
/// threshold. Two connections with equal terms take the same compressed frame.
///
/// Only a server connection whose own side has no context takeover
/// (`server_no_context_takeover`, the wsworker server's default) has such terms: with
/// context takeover each message is compressed against the connection's own past messages,
/// and its peer keeps them as its context, which a message compressed for many would break.
/// Such a connection takes the plain frame ([`encode_server_frame`]): a message with RSV1
/// clear is simply uncompressed (RFC 7692 §6), and leaves both contexts as they were.
///
/// ```
/// use wsworker_proto::deflate::{DeflateParams, SharedDeflate};
/// use wsworker_proto::{Config, Connection, Event, Message, Role};
///
/// let params = DeflateParams {
///     server_no_context_takeover: true,
///     server_max_window_bits: 12,
///     ..DeflateParams::default()
/// };
/// let terms = SharedDeflate::for_server(&params).expect("no context takeover");
/// let message = Message::text("the same words again and again, ".repeat(10));
/// let frame = terms.encode(&message).expect("it compresses");
/// // Compressed once: RSV1 set, a fraction of the message's size.
/// assert_eq!(frame.as_bytes()[0] & 0x40, 0x40);
/// assert!(frame.as_bytes().len() < message.len() / 4);
///
/// // Every server connection with these terms sends it as it is.
/// let mut server = Connection::new(Role::Server, Config::default().deflate(Some(params)));
/// assert_eq!(server.shared_deflate(), Some(terms));
/// server.send_prepared(&frame).unwrap();
/// let mut client = Connection::new(Role::Client, Config::default().deflate(Some(params)));
/// while let Some(chunk) = server.poll_transmit() {
///     client.receive(&chunk);
/// }
/// assert_eq!(client.poll_event().unwrap(), Some(Event::Message(message)));
/// ```
///
/// [`encode_server_frame`]: crate::encode_server_frame
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedDeflate {
    /// The compressor's level (never 0: a level of 0 compresses nothing), window and memory
    /// level, as the connection's own compressor is made.
    level: NonZeroU8,
    window_bits: u8,
    mem_level: u8,
    /// A `u16` as bytes, so that the terms (5 bytes, byte-aligned) fit in the padding of
    /// the runtime's per-connection state.
    threshold: [u8; 2],
}

impl SharedDeflate {
    /// The terms of a server connection that agreed to `params`: `None` when it compresses
    /// nothing (level 0), keeps its context (no `server_no_context_takeover`), or leaves
    /// messages under a threshold above 64 KiB uncompressed, and so takes no shared
    /// compressed frame (it gets the plain one).
    pub fn for_server(params: &DeflateParams) -> Option<Self> {
        if !params.server_no_context_takeover {
            return None;
        }
        let settings = Settings::new(
            params.level,
            params.server_max_window_bits,
            params.mem_level,
        );
        Some(Self {
            level: NonZeroU8::new(settings.level)?,
            window_bits: settings.window_bits,
            mem_level: settings.mem_level,
            threshold: u16::try_from(params.threshold).ok()?.to_ne_bytes(),
        })
    }

    /// `message` as one compressed server frame (final, unmasked, RSV1 set; raw deflate with
    /// one sync flush, its `00 00 ff ff` tail removed, RFC 7692 §7.2.1), compressed alone
    /// with the thread's compressor, as a connection with these terms compresses each of its
    /// messages. `None` when a connection would send it uncompressed: shorter than the
    /// threshold, or not made smaller by compression. Send the plain frame then
    /// ([`encode_server_frame`](crate::encode_server_frame)).
    ///
    /// The frame goes only to server connections whose
    /// [`shared_deflate`](crate::Connection::shared_deflate) equals these terms (a larger
    /// window than the peer agreed to would refer further back than it keeps).
    pub fn encode(&self, message: &Message) -> Option<PreparedFrame> {
        let payload = message.as_bytes();
        if payload.len() < usize::from(u16::from_ne_bytes(self.threshold)) {
            return None;
        }
        let compressed = compress_alone(self.settings(), payload)?;
        Some(compressed_server_frame(message.is_text(), &compressed))
    }

    /// The window the frames are compressed with, in bits (9 to 15: an agreed 8 is served
    /// with 9, see the module's notes on the backend).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    fn settings(&self) -> Settings {
        Settings {
            level: self.level.get(),
            window_bits: self.window_bits,
            mem_level: self.mem_level,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::encode_server_frame;
    use crate::role::Role;
    use crate::{Config, Connection, Event};

    fn no_context(bits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: true,
            server_max_window_bits: bits,
            ..DeflateParams::default()
        }
    }

    fn text() -> Message {
        Message::text(
            (0..400)
                .map(|i| format!("line {} of {}; ", i % 37, i % 11))
                .collect::<String>(),
        )
    }

    /// What a client with `params` decodes from `frame`.
    fn decoded(params: DeflateParams, frame: &PreparedFrame) -> Message {
        let mut server = Connection::new(Role::Server, Config::default().deflate(Some(params)));
        server.send_prepared(frame).unwrap();
        let mut client = Connection::new(Role::Client, Config::default().deflate(Some(params)));
        while let Some(chunk) = server.poll_transmit() {
            client.receive(&chunk);
        }
        match client.poll_event().unwrap() {
            Some(Event::Message(message)) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_shared_frame_is_the_frame_a_connection_with_the_same_terms_sends() {
        for bits in 8..=15 {
            let params = no_context(bits);
            let terms = SharedDeflate::for_server(&params).unwrap();
            let message = text();
            let frame = terms.encode(&message).unwrap();
            // Byte for byte what the connection itself sends, and what its peer inflates.
            let mut server = Connection::new(Role::Server, Config::default().deflate(Some(params)));
            server.send_message(message.clone()).unwrap();
            let mut sent = Vec::new();
            while let Some(chunk) = server.poll_transmit() {
                sent.extend_from_slice(&chunk);
            }
            assert_eq!(&frame.as_bytes()[..], &sent[..], "{bits} bits");
            assert_eq!(decoded(params, &frame), message);
        }
    }

    #[test]
    fn terms_follow_what_the_connection_compresses_with() {
        let terms = |params| SharedDeflate::for_server(&params);
        assert_eq!(terms(DeflateParams::default()), None, "context takeover");
        assert_eq!(
            terms(DeflateParams {
                level: 0,
                ..no_context(12)
            }),
            None,
            "level 0 compresses nothing"
        );
        // An agreed 8 is compressed with 9, as the connection does.
        assert_eq!(terms(no_context(8)), terms(no_context(9)));
        assert_ne!(terms(no_context(12)), terms(no_context(15)));
        assert_eq!(terms(no_context(12)).unwrap().window_bits(), 12);
        // The client's side does not matter: it is not what the server compresses with.
        assert_eq!(
            terms(DeflateParams {
                client_no_context_takeover: true,
                client_max_window_bits: 9,
                ..no_context(12)
            }),
            terms(no_context(12))
        );
        // A connection says its own.
        let server = Connection::new(
            Role::Server,
            Config::default().deflate(Some(no_context(10))),
        );
        assert_eq!(server.shared_deflate(), terms(no_context(10)));
        let client = Connection::new(
            Role::Client,
            Config::default().deflate(Some(no_context(10))),
        );
        assert_eq!(client.shared_deflate(), None, "a client masks every frame");
        assert_eq!(
            Connection::new(Role::Server, Config::default()).shared_deflate(),
            None
        );
    }

    #[test]
    fn a_threshold_past_64_kib_takes_the_plain_frame() {
        let params = DeflateParams {
            threshold: 1 << 16,
            ..no_context(12)
        };
        assert_eq!(SharedDeflate::for_server(&params), None);
        let params = DeflateParams {
            threshold: (1 << 16) - 1,
            ..no_context(12)
        };
        assert!(SharedDeflate::for_server(&params).is_some());
    }

    #[test]
    fn below_the_threshold_or_when_it_would_not_shrink_the_plain_frame_goes() {
        let params = DeflateParams {
            threshold: 100,
            ..no_context(12)
        };
        let terms = SharedDeflate::for_server(&params).unwrap();
        assert_eq!(terms.encode(&Message::text("a".repeat(99))), None);
        assert!(terms.encode(&Message::text("a".repeat(100))).is_some());
        let noise = crate::deflate::test_noise(4096);
        let noise = Message::binary(noise);
        assert_eq!(terms.encode(&noise), None);
        // As the connection itself: RSV1 clear, the plain frame.
        let mut server = Connection::new(Role::Server, Config::default().deflate(Some(params)));
        server.send_message(noise.clone()).unwrap();
        let mut sent = Vec::new();
        while let Some(chunk) = server.poll_transmit() {
            sent.extend_from_slice(&chunk);
        }
        assert_eq!(&sent[..], &encode_server_frame(&noise).as_bytes()[..]);
    }

    #[test]
    fn each_window_is_compressed_with_its_own() {
        // Two blocks of 1,000 letters of 16 (half a byte of entropy each) taking turns: the
        // repeats are 2,000 bytes back, out of a 9-bit window's reach (interop's
        // deflate_window_check.py checks with a strict 256-byte inflate that a narrow window
        // is honoured; zlib-rs inflates with 32 KiB whatever it is told).
        let block = |seed: u32| {
            (0..1000u32).map(move |i| b'a' + ((i ^ seed).wrapping_mul(2_654_435_761) >> 28) as u8)
        };
        let blocks: Vec<u8> = (0..8u32).flat_map(|round| block(round % 2)).collect();
        let message = Message::binary(blocks);
        let narrow = SharedDeflate::for_server(&no_context(9)).unwrap();
        let wide = SharedDeflate::for_server(&no_context(15)).unwrap();
        let narrow_frame = narrow.encode(&message).unwrap();
        let wide_frame = wide.encode(&message).unwrap();
        assert!(decoded(no_context(9), &narrow_frame) == message);
        assert!(decoded(no_context(15), &wide_frame) == message);
        let (narrow_len, wide_len) = (narrow_frame.as_bytes().len(), wide_frame.as_bytes().len());
        assert!(wide_len < narrow_len / 2, "{wide_len} {narrow_len}");
    }
}

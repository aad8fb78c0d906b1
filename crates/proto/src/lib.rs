//! # wsworker-proto
//!
//! The WebSocket protocol (RFC 6455) as a sans-IO state machine: no sockets, no async
//! runtime, no threads, no clocks. The caller owns the I/O; this crate turns received bytes
//! into events and calls into bytes to send, and checks every rule a receiver must check.
//!
//! ```text
//!            ┌──────────────── wsworker-proto ─────────────────┐
//!  bytes in ─┼─▶ handshake ─▶ FrameDecoder ─▶ Connection ─▶ Event ─┼─▶ application
//! bytes out ◀┼── handshake ◀──── SendQueue ◀── Connection ◀── send_* ┼── application
//!            └─────────────────────────────────────────────────┘
//! ```
//!
//! The connection's types live at the crate root; the modules hold the pieces a caller needs
//! only to go below the connection:
//!
//! - [`handshake`]: the HTTP/1.1 Upgrade request and response (§4), and the HTTP/2 extended
//!   CONNECT (RFC 8441), both sides.
//! - [`frame`]: frame headers and the streaming decoder (§5.2).
//! - [`mask`]: payload masking (§5.3).
//! - `deflate` (feature `deflate`): permessage-deflate (RFC 7692), its negotiation and
//!   per-message compression.
//!
//! At the root: [`Connection`], one side of an open connection (§5–§7): events out, frames
//! in, pings and closes answered, limits enforced; its [`Config`] and [`Role`]; what it hands
//! out and takes ([`Event`], [`Message`], [`Utf8Bytes`], [`CloseFrame`], [`CloseCode`], …);
//! and the errors ([`Error`] and its kinds).
//!
//! A server loop, with the socket left out:
//!
//! ```
//! use wsworker_proto::{Config, Connection, Event, Message, ReadyState, Role};
//!
//! let mut conn = Connection::new(Role::Server, Config::default());
//! // A masked text frame "Hello" (RFC 6455 §5.7) arrives from the socket…
//! conn.receive(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
//! while let Some(event) = conn.poll_event().expect("a valid frame") {
//!     if let Event::Message(Message::Text(text)) = event {
//!         conn.send_text(format!("hello {text}")).unwrap();
//!     }
//! }
//! // …and the reply goes back with one write.
//! let reply = conn.poll_transmit().unwrap();
//! assert_eq!(&reply[..], b"\x81\x0bhello Hello");
//! assert_eq!(conn.ready_state(), ReadyState::Open);
//! ```
//!
//! Network input never panics: a frame that breaks a rule makes
//! [`Connection::poll_event`] return an [`Error`] whose [`Error::close_code`] has already
//! been queued in a close frame.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![doc(test(attr(deny(warnings))))]

mod close;
mod config;
mod connection;
#[cfg(feature = "deflate")]
pub mod deflate;
mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
mod message;
mod role;
mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::Config;
pub use connection::{Connection, PreparedFrame, ReadyState, encode_server_frame};
pub use error::{ApiMisuse, CapacityError, Error, ProtocolError};
pub use handshake::error::HandshakeError;
pub use message::{Event, EventRef, Message, MessageRef, Outgoing, WrongType};
pub use role::Role;
pub use utf8::{InvalidUtf8, Utf8Bytes};

// Hooks for the runtime (`wsworker`), the benchmarks and the fuzzers: public so that they can
// reach them, left out of the documentation as no application needs them.
#[doc(hidden)]
pub use connection::{Dormant, FrameBuffer, MAX_LENT};
#[doc(hidden)]
pub use utf8::Utf8Validator;

//! The opening handshake (RFC 6455 §4): the HTTP/1.1 Upgrade request and its 101 response,
//! as bytes in and bytes out; and the same handshake for an HTTP layer that reads and writes
//! the heads itself (hyper), as `http` types, over HTTP/1.1 or HTTP/2 (RFC 8441 extended
//! CONNECT, answered with 200).
//!
//! **Server side.** [`ServerHandshake`] gathers the request as it arrives (or call
//! [`parse_request`] on a buffer you manage) and yields a [`Request`] for any well-formed
//! HTTP/1.x request head, plus the bytes that followed it. The application then routes:
//! [`Request::is_websocket_upgrade`] says whether it asks for a WebSocket at all (if not, serve
//! it as plain HTTP), [`Request::validate_upgrade`] applies the rules of RFC 6455 §4.2.1, and
//! [`Request::accept`] builds the 101 response with the chosen subprotocol and extensions.
//! Every failure is a [`HandshakeError`]: [`HandshakeError::status`] gives its HTTP status and
//! [`HandshakeError::to_response`] the whole rejection; [`reject_response`] builds one for the
//! application's own reasons (403 for a bad origin, 401...).
//!
//! **Under an HTTP layer, and HTTP/2.** [`Request::from_http`] takes the request as hyper
//! parsed it (with, over HTTP/2, its `:protocol`); the same accessors and the same
//! [`Request::validate_upgrade`] apply, with the rules of RFC 8441 §4–5 for HTTP/2 (CONNECT,
//! `:protocol: websocket`, version 13, no key, no `Upgrade`). [`Request::accept_parts`] makes
//! the same checks of the application's choice as [`Request::accept`] and gives the answer as
//! an `http::Response<()>`: 101 over HTTP/1.1, 200 over HTTP/2. A refusal is
//! [`HandshakeError::to_http_response`].
//!
//! **Client side.** [`ClientHandshake`] parses a `ws://` or `wss://` URL, writes the request
//! with a random key, the offered subprotocols and extensions and extra headers, and checks
//! the [`Response`] (RFC 6455 §4.1): status 101, `Sec-WebSocket-Accept`, and a subprotocol and
//! extensions the client offered. Over HTTP/2, [`ClientHandshake::h2_request`] gives the
//! extended CONNECT as an `http::Request<()>` and [`ClientHandshake::check_h2_response`] makes
//! the same checks of the subprotocol and extensions on the 200.
//!
//! Both sides stop at [`DEFAULT_MAX_HEADER_SIZE`] bytes of head unless configured otherwise,
//! and accept at most [`MAX_HEADERS`] header lines. Neither loses the bytes that follow the
//! head in the same read: they are the first WebSocket frames and belong to the connection.
//!
//! Parsing uses `httparse`. A [`Request`] lives as long as its connection, so it keeps only a
//! copy of the request head and offsets into it, and builds an [`http::HeaderMap`] only when
//! [`Request::headers`] is called; the short-lived [`Response`] keeps a `HeaderMap`.

mod accept_key;
mod client;
pub(crate) mod error;
mod extension;
mod http_head;
mod http_util;
mod request;
mod server;
#[cfg(test)]
mod tests_h2;

pub use accept_key::{WEBSOCKET_GUID, accept_key};
pub use client::{ClientHandshake, Response};
use error::HandshakeError;
pub use extension::Extension;
pub use request::{Request, parse_request};
pub use server::{ServerHandshake, accept_response, reject_response, response_head};

/// The default limit on the size of a request or response head (request or status line and
/// headers), in bytes: 8 KiB. A longer head fails with [`HandshakeError::TooLarge`] (431).
pub const DEFAULT_MAX_HEADER_SIZE: usize = 8 * 1024;

/// The most header lines a request or response head may have; more fail with
/// [`HandshakeError::TooManyHeaders`] (431).
pub const MAX_HEADERS: usize = 64;

/// The request of RFC 6455 §1.3, shared by the tests of the submodules.
#[cfg(test)]
const RFC_REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\n\
    Host: server.example.com\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

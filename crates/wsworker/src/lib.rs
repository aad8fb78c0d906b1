//! # wsworker
//!
//! A WebSocket server framework in the shape of PHP's Workerman — a [`Worker`] listening on
//! `websocket://HOST:PORT` with `count` workers and callbacks — on tokio, built on the
//! sans-IO protocol core [`wsworker_proto`].
//!
//! ```no_run
//! // The server from the classic Workerman example.
//! use wsworker::Worker;
//!
//! fn main() -> wsworker::Result<()> {
//!     let mut worker = Worker::new("websocket://0.0.0.0:2346")?;
//!     worker.count(4); // four workers, each with its own event loop and listener
//!     worker.on_message(|conn, msg| {
//!         conn.send(format!("hello {}", msg.to_text()?))?;
//!         Ok(())
//!     });
//!     worker.run() // blocks, like Worker::runAll()
//! }
//! ```
//!
//! And a client in the shape of the browser's `WebSocket` ([`WebSocket`], in [`client`]):
//!
//! ```no_run
//! use wsworker::{Message, ReadyState, WebSocket, WsEvent};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> wsworker::Result<()> {
//! let ws = WebSocket::connect("ws://127.0.0.1:2346", ["chat"]).await?;
//! assert_eq!(ws.ready_state(), ReadyState::Open);
//! ws.send("tom")?; // queues; never waits
//! while let Some(event) = ws.next().await {
//!     match event {
//!         WsEvent::Message(Message::Text(text)) => {
//!             assert_eq!(text, "hello tom");
//!             ws.close(1000, "bye")?;
//!         }
//!         WsEvent::Close(info) => assert!(info.was_clean),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Inside a server you already run: an [`Endpoint`] is what a `Worker` handles connections
//! with — callbacks, limits, the [`Hub`], metrics — without the listeners; its [`Service`]
//! serves any stream ([`Service::serve`]), a hyper upgrade (feature `hyper`:
//! HTTP/1.1, and HTTP/2 per RFC 8441) or an axum route (feature `axum`: `wsworker::axum`).
//!
//! With the `tls` feature (on by default), on rustls with the ring provider: the server
//! serves `websocket+tls://` (and `https://` for its HTTP handler) with `Worker::tls_pem`
//! or `Worker::tls_config`, and the client connects to `wss://` URLs, trusting the
//! `webpki-roots` CAs plus any added with `WebSocketBuilder::tls_ca_pem_file`.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "axum")]
pub mod axum;
#[doc(hidden)]
pub mod bench;
mod buffers;
mod callback;
pub mod client;
mod driver;
mod error;
pub mod hub;
mod metrics;
pub mod resume;
pub mod server;
mod shared;
#[cfg(feature = "tls")]
mod tls;

/// The rustls this crate is built with (feature `tls`), for [`Worker::tls_config`] and
/// [`WebSocketBuilder::tls_config`].
#[cfg(feature = "tls")]
pub use rustls;

pub use client::{ReconnectPolicy, WebSocket, WebSocketBuilder, WsEvent};
pub use error::{Error, Http2Error, Result};
pub use hub::{Hub, Target};
pub use server::{
    Connection, Connections, Endpoint, Handshake, HttpResponse, Keepalive, Metrics, OverflowPolicy,
    RunningServer, Service, StopSignal, Worker,
};
pub use shared::CloseInfo;
pub use wsworker_proto as proto;
pub use wsworker_proto::handshake::Request;
pub use wsworker_proto::{CloseCode, Message, MessageRef, Outgoing, ReadyState, Utf8Bytes};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

//! The client: [`WebSocket`] is the browser's `WebSocket` in Rust — `url`, `protocol`,
//! `extensions`, `readyState`, `bufferedAmount`, `send`, `close` with the browser's rules,
//! and the events open, message, error and close.
//!
//! Events come out of a [`Stream`] ([`WebSocket::next`]), or go to `on_*` callbacks
//! registered on the [`WebSocketBuilder`] for those who want the JavaScript shape: an event
//! kind with a callback goes to the callback instead of the stream.
//!
//! A connection is driven by its own tokio task (the same driver as the server's
//! connections): the handle only queues commands and reads events, so it is `Send + Sync`,
//! cheap to clone, and never blocks. Dropping every handle closes the connection with 1000.
//!
//! Beyond the browser, on request: a [`ReconnectPolicy`]
//! ([`WebSocketBuilder::reconnect`]) keeps the handle across lost connections, with
//! jittered exponential backoff over one URL or several ([`WebSocketBuilder::fallback_urls`]),
//! holding what is sent meanwhile; and [`WebSocketBuilder::resume`] speaks
//! `wsworker.resume.v1` with a server that agrees to it, so that each reconnect brings the
//! messages missed, once each ([`crate::resume`]). Without them a connection is the
//! browser's: one attempt, and its end is the end.
//!
//! ```no_run
//! use wsworker::{Message, ReadyState, WebSocket, WsEvent};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> wsworker::Result<()> {
//! let ws = WebSocket::connect("ws://127.0.0.1:2346", ["chat"]).await?;
//! assert_eq!(ws.ready_state(), ReadyState::Open);
//! ws.send("tom")?;
//! while let Some(event) = ws.next().await {
//!     match event {
//!         WsEvent::Message(Message::Text(text)) => {
//!             println!("{text}");
//!             ws.close(1000, "bye")?;
//!         }
//!         WsEvent::Close(info) => println!("closed with {}", info.code),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod builder;
mod connect;
mod extensions;
mod gate;
#[cfg(feature = "hyper")]
mod h2;
mod handler;
mod latest;
mod policy;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wsworker_proto::{CloseCode, CloseFrame, Message, Outgoing, ReadyState};

pub use builder::WebSocketBuilder;
#[cfg(feature = "hyper")]
pub use h2::Http2Connection;
pub use policy::ReconnectPolicy;

use crate::error::{Error, Result};
use crate::resume::FailReason;
use crate::shared::{CloseInfo, Command, Shared};

/// Something that happened on a client connection, in order. The stream of events ends
/// after [`WsEvent::Close`].
#[derive(Debug)]
#[non_exhaustive]
pub enum WsEvent {
    /// The opening handshake succeeded: the connection is open. Not yielded for the first
    /// open after [`WebSocket::connect`] or [`WebSocketBuilder::connect`], whose resolving
    /// is that event; with a [`ReconnectPolicy`], yielded again on each reconnect.
    Open,
    /// A message from the server.
    Message(Message),
    /// Something went wrong: the connection could not be established, the server broke the
    /// protocol, the socket failed, or a callback panicked. A [`WsEvent::Close`] follows
    /// when the error ends the connection.
    Error(Error),
    /// The connection is over; always the last event. `was_clean` tells whether the closing
    /// handshake completed; a connection that failed reports 1006.
    Close(CloseInfo),
    /// With a [`ReconnectPolicy`]: the connection was lost, or an attempt to make it failed
    /// (after its [`WsEvent::Error`]); attempt `attempt` (from 1 after each open) follows
    /// after `delay`, on the next URL ([`WebSocket::url`] is already that one).
    Reconnecting {
        /// The number of the next attempt since the connection was last open.
        attempt: u32,
        /// How long until it.
        delay: Duration,
        /// How the lost connection ended, or 1006 (not clean) for a failed attempt.
        close: CloseInfo,
    },
    /// With [`WebSocketBuilder::resume`]: the server opened a new session (its `hello`):
    /// on the first connection, or when a resume found nothing to resume.
    Session {
        /// The session's public id.
        id: String,
        /// How long after a loss it can be resumed.
        window: Duration,
    },
    /// With [`WebSocketBuilder::resume`]: the server resumed the session after a
    /// reconnect. The messages missed in the `recovered` topics follow (once each, in
    /// order); those of the `failed` topics are gone, for the reason given — the
    /// application may want to fetch their state afresh.
    Resumed {
        /// The session's public id.
        id: String,
        /// The topics whose missed messages follow (`all`, `u:USER`, `g:GROUP`).
        recovered: Box<[String]>,
        /// The topics whose missed messages cannot be replayed, and why.
        failed: Box<[(String, FailReason)]>,
    },
}

/// The future [`Stream::poll_next`] keeps between polls.
type NextEvent = Pin<Box<dyn Future<Output = Option<WsEvent>> + Send>>;

/// A WebSocket client connection with the browser API's shape.
///
/// Create one with [`WebSocket::connect`] (resolves once open) or with
/// [`WebSocket::builder`] for headers, limits, timeouts and callbacks, and
/// [`WebSocketBuilder::open`] to get the handle at once in
/// [`ReadyState::Connecting`], like `new WebSocket(url)`.
///
/// Clones are handles on the same connection; they share one event stream (each event goes
/// to one reader). When the last handle is dropped the connection is closed with 1000.
pub struct WebSocket {
    inner: Arc<Inner>,
    /// `None` for the handle given to callbacks, which must not keep the connection open.
    owner: Option<Arc<Owner>>,
    /// The pending read of [`Stream::poll_next`]; only touched through `&mut self`.
    next: Mutex<Option<NextEvent>>,
}

/// What the handles of one connection share.
struct Inner {
    /// The URL given, then the fallback URLs.
    urls: Box<[String]>,
    /// The index in `urls` of the current connection or attempt.
    url: AtomicUsize,
    shared: Arc<Shared>,
    /// What the current connection's handshake settled.
    negotiated: latest::Latest<Negotiated>,
    /// With a reconnect policy or resume: the messages sent while the connection is not
    /// ready.
    gate: Option<gate::Gate>,
    /// Set by the first `close` (or the last handle's drop): the browser is CLOSING from
    /// then on, even before the driver has taken the close command.
    closing: AtomicBool,
    /// Stops a connection that is still being established.
    cancel: CancellationToken,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<WsEvent>>,
    /// What the events waiting in `events` weigh, so that the connection stops reading from
    /// the server while the application is behind.
    backlog: Backlog,
    owner: Weak<Owner>,
}

/// What the events queued in the event stream and not yet read by the application weigh
/// ([`weight`]). Above [`BACKLOG_LIMIT`] the connection stops reading from the socket: the
/// server's send buffer fills instead of this process's memory (TCP carries the
/// backpressure), and reading resumes once the application has caught up.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    /// The sum of the queued events' weights.
    weight: AtomicUsize,
    /// The driver's waker, left while it waits for room.
    waker: Mutex<Option<Waker>>,
}

/// The weight of unread events above which a client connection stops reading.
pub(super) const BACKLOG_LIMIT: usize = 16 << 20;

/// What an event weighs besides its payload: its slot in the channel and the bookkeeping of
/// its payload. Without it a server streaming empty messages (two bytes each on the wire)
/// would queue events without limit, none of them adding a byte to the backlog; with it,
/// at most `BACKLOG_LIMIT / EVENT_OVERHEAD` (262,144) events wait, whatever their size.
pub(super) const EVENT_OVERHEAD: usize = 64;

// The event's own slot is part of the overhead.
const _: () = assert!(size_of::<WsEvent>() <= EVENT_OVERHEAD);

/// What `event` weighs in the backlog: its payload and [`EVENT_OVERHEAD`].
pub(super) fn weight(event: &WsEvent) -> usize {
    let payload = match event {
        WsEvent::Message(message) => message.len(),
        _ => 0,
    };
    EVENT_OVERHEAD + payload
}

impl Backlog {
    /// An event of this weight was queued.
    pub(super) fn added(&self, weight: usize) {
        self.weight.fetch_add(weight, Ordering::AcqRel);
    }

    /// An event of this weight was taken; wakes the driver when that made room.
    pub(super) fn taken(&self, weight: usize) {
        let before = self.weight.fetch_sub(weight, Ordering::AcqRel);
        if before > BACKLOG_LIMIT && before - weight <= BACKLOG_LIMIT {
            let waker = self
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    /// Ready while there is room for more events; otherwise leaves the waker for
    /// [`Backlog::taken`].
    pub(super) fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.weight.load(Ordering::Acquire) <= BACKLOG_LIMIT {
            return Poll::Ready(());
        }
        *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        // Taken in between: no wake-up is coming for the waker just left.
        if self.weight.load(Ordering::Acquire) <= BACKLOG_LIMIT {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Inner {
    /// The next event of the stream, its weight taken off the backlog.
    async fn recv(&self) -> Option<WsEvent> {
        let event = self.events.lock().await.recv().await;
        if let Some(event) = &event {
            self.backlog.taken(weight(event));
        }
        event
    }
}

/// What the handshake settled.
#[derive(Debug, PartialEq, Eq)]
struct Negotiated {
    protocol: String,
    extensions: String,
}

/// Alive while a user's handle is: its drop closes the connection.
struct Owner {
    inner: Arc<Inner>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.inner.start_close(CloseCode::NORMAL, "");
    }
}

impl Inner {
    /// The current connection or attempt is to `urls[index]`.
    fn set_url(&self, index: usize) {
        self.url
            .store(index.min(self.urls.len() - 1), Ordering::Release);
    }

    fn ready_state(&self) -> ReadyState {
        let state = self.shared.ready_state();
        if state < ReadyState::Closing && self.closing.load(Ordering::Acquire) {
            ReadyState::Closing
        } else {
            state
        }
    }

    /// Closes once: a close frame when open (queued behind what was sent before), the end of
    /// the attempt when still connecting, nothing when already closing.
    fn start_close(&self, code: CloseCode, reason: &str) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        // While connecting, the command waits in the channel: if the handshake completes
        // before the cancellation is seen, the driver still closes right after opening.
        let _ = self.shared.submit(Command::Close(code, reason.to_owned()));
        self.cancel.cancel();
    }
}

impl WebSocket {
    /// Connects to `url` offering `protocols` (in order of preference; pass
    /// `[] as [&str; 0]` for none, or use [`WebSocket::builder`]) and resolves once the
    /// connection is open, within 10 seconds for the TCP connection and the handshake.
    ///
    /// # Errors
    /// - [`Error::InvalidAddress`] for a URL that is not `ws://host[:port][/path]`, and
    ///   [`Error::Handshake`] for a subprotocol that is not a token or is given twice;
    /// - [`Error::Unsupported`] for `wss://` in a build without the `tls` feature;
    /// - [`Error::Io`] when the TCP connection fails (refused, unreachable, reset);
    /// - [`Error::Rejected`] when the server answers with another status than 101, and
    ///   [`Error::Handshake`] for a 101 response that breaks RFC 6455 §4.1;
    /// - [`Error::Timeout`] after 10 seconds.
    pub async fn connect<I, S>(url: &str, protocols: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder(url).protocols(protocols).connect().await
    }

    /// A builder for a connection to `url`, with the defaults: no subprotocols, no extra
    /// headers, a 16 MiB message limit, a 10 s connect timeout, no callbacks.
    pub fn builder(url: impl Into<String>) -> WebSocketBuilder {
        WebSocketBuilder::new(url.into())
    }

    /// A connecting handle (owning) and what its task needs.
    fn new_connecting(
        urls: Box<[String]>,
        shared: Arc<Shared>,
        events: mpsc::UnboundedReceiver<WsEvent>,
        gate: Option<gate::Gate>,
    ) -> Self {
        debug_assert!(!urls.is_empty());
        let owner = Arc::new_cyclic(|owner| Owner {
            inner: Arc::new(Inner {
                urls,
                url: AtomicUsize::new(0),
                shared,
                negotiated: latest::Latest::default(),
                gate,
                closing: AtomicBool::new(false),
                cancel: CancellationToken::new(),
                events: tokio::sync::Mutex::new(events),
                backlog: Backlog::default(),
                owner: owner.clone(),
            }),
        });
        Self {
            inner: owner.inner.clone(),
            owner: Some(owner),
            next: Mutex::new(None),
        }
    }

    /// A handle that does not keep the connection open, for the callbacks.
    fn detached(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            owner: None,
            next: Mutex::new(None),
        }
    }

    /// The URL given; with [`WebSocketBuilder::fallback_urls`], the URL of the current
    /// connection or attempt.
    pub fn url(&self) -> &str {
        let index = self.inner.url.load(Ordering::Acquire);
        self.inner.urls.get(index).map_or("", String::as_str)
    }

    /// The subprotocol the server selected; empty while connecting and when it selected
    /// none. After a reconnect, the last connection's.
    pub fn protocol(&self) -> &str {
        self.inner
            .negotiated
            .get()
            .map_or("", |n| n.protocol.as_str())
    }

    /// The extensions the server accepted (`Sec-WebSocket-Extensions`); empty while
    /// connecting and when none.
    pub fn extensions(&self) -> &str {
        self.inner
            .negotiated
            .get()
            .map_or("", |n| n.extensions.as_str())
    }

    /// What this handle shares with the connection's driver.
    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The state: `Connecting` until the handshake succeeds, `Open`, `Closing` from the
    /// first [`close`](Self::close) or the server's close frame, `Closed` once the
    /// connection is gone.
    pub fn ready_state(&self) -> ReadyState {
        self.inner.ready_state()
    }

    /// Bytes queued by [`send`](Self::send) and not yet written to the socket (those held
    /// while a connection that reconnects or resumes is not ready included).
    pub fn buffered_amount(&self) -> usize {
        let held = self.inner.gate.as_ref().map_or(0, gate::Gate::held_bytes);
        self.inner.shared.buffered_amount() + held
    }

    /// Queues a message: a `String` or `&str` goes as text, `Vec<u8>`, `&[u8]` or `Bytes` as
    /// binary, a `Message` or `MessageRef` as what it is. It never waits; watch [`buffered_amount`](Self::buffered_amount) to pace
    /// large sends. Unlike the browser, which throws while connecting, a message sent before
    /// the connection is open is queued and goes out right after the handshake (it is
    /// dropped if the connection fails).
    ///
    /// With a [`ReconnectPolicy`] (or [`resume`](WebSocketBuilder::resume)), a message sent
    /// while the connection is not ready — between connections, or until the server has
    /// answered `resume` — is held, within [`queue_limit`](WebSocketBuilder::queue_limit),
    /// and goes out first on the next connection; the lost connection's messages that it
    /// had not yet taken are held again too.
    ///
    /// # Errors
    /// [`Error::Closed`] once [`close`](Self::close) was called or the connection is closing
    /// or closed (with a policy: once it is over for good); [`Error::QueueFull`] when a
    /// message to hold would pass the limit.
    pub fn send(&self, message: impl Outgoing) -> Result<()> {
        if self.inner.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        match &self.inner.gate {
            Some(gate) => gate.send(&self.inner.shared, message.into_message()),
            None => self.inner.shared.send(message),
        }
    }

    /// Starts the closing handshake, with the browser's rules: `code` is 1000 or 3000–4999
    /// and `reason` at most 123 bytes of UTF-8. The [`WsEvent::Close`] event tells when it is
    /// done. While connecting, the attempt is abandoned instead (error and close 1006
    /// events, as in the browser). Closing a connection that is already closing or closed
    /// does nothing.
    ///
    /// # Errors
    /// [`Error::InvalidClose`] for another code or a longer reason.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        let code = code.into();
        if !code.is_allowed_for_application() || reason.len() > CloseFrame::MAX_REASON_LEN {
            return Err(Error::InvalidClose {
                code: code.as_u16(),
                reason_len: reason.len(),
            });
        }
        self.inner.start_close(code, reason);
        Ok(())
    }

    /// The next event not handled by a callback; `None` after [`WsEvent::Close`].
    ///
    /// Cancel-safe. Clones share the stream: concurrent readers each get different events.
    ///
    /// Events wait here until taken, within a bound: while they weigh more than 16 MiB (a
    /// message its payload plus 64 bytes, any other event 64 bytes), nothing more is read
    /// from the server, whose sends wait in TCP until the application catches up.
    pub async fn next(&self) -> Option<WsEvent> {
        self.inner.recv().await
    }

    /// Records what the handshake negotiated; called before each connection opens.
    fn set_negotiated(&self, protocol: &str, extensions: &str) {
        self.inner.negotiated.set(Negotiated {
            protocol: protocol.to_owned(),
            extensions: extensions.to_owned(),
        });
    }
}

impl Clone for WebSocket {
    /// Another handle on the same connection. A clone of the handle a callback receives
    /// keeps the connection open like any other handle (while one still does).
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            owner: self.owner.clone().or_else(|| self.inner.owner.upgrade()),
            next: Mutex::new(None),
        }
    }
}

impl Stream for WebSocket {
    type Item = WsEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WsEvent>> {
        let this = self.get_mut();
        // Only `&mut self` reaches the slot, so the lock is never contended.
        let slot = this.next.get_mut().unwrap_or_else(PoisonError::into_inner);
        let inner = &this.inner;
        let next = slot.get_or_insert_with(|| {
            let inner = inner.clone();
            Box::pin(async move { inner.recv().await })
        });
        let event = ready!(next.as_mut().poll(cx));
        *slot = None;
        Poll::Ready(event)
    }
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("url", &self.url())
            .field("protocol", &self.protocol())
            .field("extensions", &self.extensions())
            .field("ready_state", &self.ready_state())
            .field("buffered_amount", &self.buffered_amount())
            .finish()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<WebSocket>();
    assert_send_sync::<WebSocketBuilder>();
    assert_send_sync::<WsEvent>();
};

//! The application's callbacks, what they return, and the driver handler that calls them
//! with every panic contained to the one connection it happened on.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use wsworker_proto::handshake::Request;
use wsworker_proto::{Event, Message, MessageRef, ReadyState};

use super::connection::Connection;
use crate::driver::Handler;
use crate::error::{Error, Result};
use crate::shared::{CloseInfo, Shared, contain};

/// What `on_handshake` decides about an opening request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Accept, with the chosen subprotocol (one the client offered, or none) and extra
    /// response headers.
    Accept {
        /// The subprotocol, which must be one of [`Request::protocols`].
        protocol: Option<String>,
        /// Extra headers for the 101 response (`Set-Cookie`, …).
        headers: Vec<(String, String)>,
        /// A value the connection carries from its start ([`Handshake::with_data`]).
        data: Option<Attached>,
    },
    /// Refuse with an HTTP status (401, 403, 404, …) and a short text body.
    Reject {
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
}

impl Handshake {
    /// Accept without a subprotocol.
    pub fn accept() -> Self {
        Self::Accept {
            protocol: None,
            headers: Vec::new(),
            data: None,
        }
    }

    /// Accept with `protocol` as the subprotocol.
    pub fn accept_protocol(protocol: impl Into<String>) -> Self {
        Self::Accept {
            protocol: Some(protocol.into()),
            headers: Vec::new(),
            data: None,
        }
    }

    /// Refuse with `status` and `body`.
    pub fn reject(status: u16, body: impl Into<String>) -> Self {
        Self::Reject {
            status,
            body: body.into(),
        }
    }

    /// Adds a header to an accepting response (ignored on a rejection).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Self::Accept { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }

    /// Attaches a value of the application's own type (the user a token names, say) to the
    /// accepted connection, from before `on_connect`: [`Connection::data`] returns it
    /// (ignored on a rejection).
    ///
    /// ```
    /// use wsworker::{Endpoint, Handshake};
    ///
    /// struct User {
    ///     name: String,
    /// }
    ///
    /// let mut endpoint = Endpoint::new();
    /// endpoint.on_handshake(|request| match request.query_param("token").as_deref() {
    ///     Some("s3cret") => Handshake::accept().with_data(User { name: "tom".into() }),
    ///     _ => Handshake::reject(401, "who are you?"),
    /// });
    /// endpoint.on_message(|conn, msg| {
    ///     let user = conn.data::<User>().expect("attached at the handshake");
    ///     conn.send(format!("{}: {}", user.name, msg.to_text()?))?;
    ///     Ok(())
    /// });
    /// ```
    #[must_use]
    pub fn with_data<T: Any + Send + Sync>(mut self, value: T) -> Self {
        if let Self::Accept { data, .. } = &mut self {
            *data = Some(Attached(Arc::new(value)));
        }
        self
    }
}

/// A value attached to a connection at its handshake ([`Handshake::with_data`]), read with
/// [`Connection::data`].
#[derive(Clone)]
pub struct Attached(pub(crate) Arc<dyn Any + Send + Sync>);

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Attached(..)")
    }
}

/// The same value (not merely an equal one).
impl PartialEq for Attached {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Attached {}

/// What an asynchronous `on_handshake` returns.
pub(crate) type HandshakeFuture = Pin<Box<dyn Future<Output = Handshake> + Send>>;

/// The application's handshake decision, in the form it chose.
pub(crate) enum OnHandshake {
    Sync(Box<dyn Fn(&Request) -> Handshake + Send + Sync>),
    Async(Box<dyn Fn(Request) -> HandshakeFuture + Send + Sync>),
}

impl OnHandshake {
    /// The decision about `request`; a panic (of the callback or of its future) refuses it
    /// with 500.
    pub(crate) async fn decide(&self, request: &Request) -> Handshake {
        let refused = |panic: String| {
            tracing::warn!(%panic, "on_handshake panicked");
            Handshake::reject(500, "internal error")
        };
        match self {
            Self::Sync(f) => contain(|| f(request)).unwrap_or_else(refused),
            Self::Async(f) => match contain(|| f(request.clone())) {
                Ok(future) => Contained(future).await.unwrap_or_else(refused),
                Err(panic) => refused(panic),
            },
        }
    }
}

/// A future whose panics are caught, each poll's as [`contain`] catches a call's.
struct Contained(HandshakeFuture);

impl Future for Contained {
    type Output = std::result::Result<Handshake, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match contain(|| self.0.as_mut().poll(cx)) {
            Ok(Poll::Ready(decision)) => Poll::Ready(Ok(decision)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// A plain HTTP response, for requests on the WebSocket port that do not ask for an upgrade
/// (see [`Worker::on_http`](super::Endpoint::on_http)). The connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Bytes,
}

impl HttpResponse {
    /// A response with `status`, `Content-Type: text/plain` and `body`.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `200 OK` with an HTML body.
    pub fn html(body: impl Into<Bytes>) -> Self {
        Self::new(200, body).with_header("Content-Type", "text/html; charset=utf-8")
    }

    /// `200 OK` with a JavaScript body (a script or an ES module a page loads).
    pub fn javascript(body: impl Into<Bytes>) -> Self {
        Self::new(200, body).with_header("Content-Type", "text/javascript; charset=utf-8")
    }

    /// `404 Not Found`.
    pub fn not_found() -> Self {
        Self::new(404, "not found\n")
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

type Cb<F> = Option<Box<F>>;
type MessageFn = dyn Fn(&Connection, Message) -> Result<()> + Send + Sync;
type MessageRefFn = dyn Fn(&Connection, MessageRef<'_>) -> Result<()> + Send + Sync;
type CloseFn = dyn Fn(&Connection, &CloseInfo) + Send + Sync;
type ErrorFn = dyn Fn(&Connection, &Error) + Send + Sync;

/// Every callback a worker may have.
#[derive(Default)]
pub(crate) struct Callbacks {
    pub(crate) on_worker_start: Cb<dyn Fn(usize) + Send + Sync>,
    pub(crate) on_handshake: Option<OnHandshake>,
    pub(crate) on_connect: Cb<dyn Fn(&Connection) + Send + Sync>,
    pub(crate) on_message: Option<OnMessage>,
    pub(crate) on_close: Cb<CloseFn>,
    pub(crate) on_error: Cb<ErrorFn>,
    pub(crate) on_buffer_full: Cb<dyn Fn(&Connection) + Send + Sync>,
    pub(crate) on_buffer_drain: Cb<dyn Fn(&Connection) + Send + Sync>,
    pub(crate) on_http: Cb<dyn Fn(&Request) -> HttpResponse + Send + Sync>,
}

impl Callbacks {
    /// Whether these callbacks do anything with an open connection (an endpoint with
    /// routes and none of these serves its routes' paths only).
    pub(crate) fn serves_connections(&self) -> bool {
        self.on_handshake.is_some() || self.on_connect.is_some() || self.on_message.is_some()
    }
}

/// The message callback, in the form the application chose.
pub(crate) enum OnMessage {
    Owned(Box<MessageFn>),
    Borrowed(Box<MessageRefFn>),
}

/// Connects one connection's driver to the application's callbacks.
pub(crate) struct ServerHandler {
    pub(crate) conn: Connection,
    pub(crate) callbacks: Arc<Callbacks>,
}

impl ServerHandler {
    /// Calls a callback; a panic or an error is reported to `on_error` and closes this
    /// connection (with the error's own close code: [`crate::callback::ending`]), the
    /// worker and the other connections carry on.
    fn call(&self, f: impl FnOnce() -> Result<()>) {
        let closing = self.conn.ready_state() != ReadyState::Open;
        let Some(error) = crate::callback::run(closing, f) else {
            return;
        };
        tracing::warn!(conn = self.conn.id(), %error, "callback failed");
        self.report(&error);
        let (code, reason) = crate::callback::ending(&error);
        let _ = self.conn.close(code, reason);
    }

    /// The client's first frame on a connection that resumes: the session's opening, not
    /// the application's message. Whether it was that.
    fn opening(&self, payload: &[u8]) -> bool {
        let Some(resume) = self.conn.resume() else {
            return false;
        };
        if !resume.awaits_opening() {
            return false;
        }
        if let Ok(hub) = self.conn.hub() {
            crate::hub::ResumeState::open(&hub, &self.conn, payload);
        }
        true
    }

    /// The connection could not start (hyper's upgrade failed): reported to `on_error`.
    #[cfg(feature = "hyper")]
    pub(crate) fn failed(&self, error: &Error) {
        tracing::debug!(conn = self.conn.id(), %error, "upgrade failed");
        self.report(error);
    }

    fn report(&self, error: &Error) {
        if let Some(on_error) = &self.callbacks.on_error {
            // A panicking error handler has nowhere left to report to.
            let _ = contain(|| on_error(&self.conn, error));
        }
    }
}

impl Handler for ServerHandler {
    fn shared(&self) -> &Shared {
        self.conn.shared()
    }

    fn on_open(&mut self) {
        // The connection's way to its Hub, not a second handle here: 8 bytes less for
        // every open connection. The Hub outlives the worker's connections.
        if let Ok(hub) = self.conn.hub() {
            hub.connections().insert(&self.conn);
        }
        if let Some(cb) = &self.callbacks.on_connect {
            self.call(|| {
                cb(&self.conn);
                Ok(())
            });
        }
    }

    fn borrows(&self) -> bool {
        matches!(self.callbacks.on_message, Some(OnMessage::Borrowed(_)))
    }

    fn on_message_ref(&mut self, message: MessageRef<'_>) {
        if self.opening(message.as_bytes()) {
            return;
        }
        match &self.callbacks.on_message {
            Some(OnMessage::Borrowed(cb)) => self.call(|| cb(&self.conn, message)),
            Some(OnMessage::Owned(cb)) => self.call(|| cb(&self.conn, message.to_owned())),
            None => {}
        }
    }

    fn on_event(&mut self, event: Event) {
        let Event::Message(message) = event else {
            return;
        };
        if self.opening(message.as_bytes()) {
            return;
        }
        match &self.callbacks.on_message {
            Some(OnMessage::Owned(cb)) => self.call(|| cb(&self.conn, message)),
            // A message that arrived fragmented, compressed or large: given, not lent. Sent
            // back, it is shared rather than copied.
            Some(OnMessage::Borrowed(cb)) => {
                let _viewing = self.conn.shared().viewing(&message);
                self.call(|| cb(&self.conn, message.view()));
            }
            None => {}
        }
    }

    fn on_error(&mut self, error: Error) {
        tracing::debug!(conn = self.conn.id(), %error, "connection error");
        self.report(&error);
    }

    fn on_buffer_full(&mut self) {
        if let Some(cb) = &self.callbacks.on_buffer_full {
            self.call(|| {
                cb(&self.conn);
                Ok(())
            });
        }
    }

    fn on_buffer_drain(&mut self) {
        if let Some(cb) = &self.callbacks.on_buffer_drain {
            self.call(|| {
                cb(&self.conn);
                Ok(())
            });
        }
    }

    fn on_close(&mut self, info: CloseInfo) {
        if let Ok(hub) = self.conn.hub() {
            if let Some(resume) = self.conn.resume() {
                resume.closed(&hub);
            }
            hub.connections().remove(&self.conn);
            hub.forget(self.conn.id());
        }
        if let Some(cb) = &self.callbacks.on_close {
            let _ = contain(|| cb(&self.conn, &info));
        }
    }
}

//! The server-side connection handle given to callbacks: cheap to clone, usable from any
//! thread or task.

use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
#[cfg(doc)]
use wsworker_proto::MessageRef;
use wsworker_proto::handshake::Request;
use wsworker_proto::{CloseCode, CloseFrame, Message, Outgoing, PreparedFrame, ReadyState};

use crate::error::{Error, Result};
use crate::hub::{ResumeState, WeakHub};
use crate::shared::{Command, Shared};

type Data = Arc<dyn Any + Send + Sync>;

/// One client's connection, as the server's callbacks see it.
///
/// Sending only queues: it never blocks the worker. A send from inside one of this
/// connection's own callbacks is applied as soon as the callback returns; from elsewhere it
/// travels to the connection's worker through a channel.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    /// In the handle's own allocation: one allocation per connection fewer.
    shared: Shared,
    worker_id: usize,
    remote_addr: Option<SocketAddr>,
    request: Request,
    protocol: Option<Box<str>>,
    data: Mutex<Option<Data>>,
    /// For the Hub's calls on this connection (users, groups).
    hub: WeakHub,
    /// The session, when the connection agreed to `wsworker.resume.v1`.
    resume: Option<Arc<ResumeState>>,
}

impl Connection {
    pub(crate) fn new(
        shared: Shared,
        worker_id: usize,
        remote_addr: Option<SocketAddr>,
        request: Request,
        protocol: Option<String>,
        hub: WeakHub,
        resume: Option<ResumeState>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared,
                worker_id,
                remote_addr,
                request,
                protocol: protocol.map(String::into_boxed_str),
                data: Mutex::new(None),
                hub,
                resume: resume.map(Arc::new),
            }),
        }
    }

    /// The session, when the connection resumes.
    pub(crate) fn resume(&self) -> Option<&Arc<ResumeState>> {
        self.inner.resume.as_ref()
    }

    /// Queues `message` as it is, past the session's framing.
    pub(crate) fn send_raw(&self, message: Message) -> Result<()> {
        self.inner.shared.send(message)
    }

    /// The terms under which the connection takes a message compressed once for many.
    #[cfg(feature = "deflate")]
    pub(crate) fn shared_deflate(&self) -> Option<&wsworker_proto::deflate::SharedDeflate> {
        self.inner.shared.shared_deflate()
    }

    /// What this handle shares with the connection's driver.
    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// A number unique to this connection within the process.
    pub fn id(&self) -> u64 {
        self.inner.shared.id()
    }

    /// The worker (0-based) that serves this connection.
    pub fn worker_id(&self) -> usize {
        self.inner.worker_id
    }

    /// The client's address; `None` for a connection served over a stream with no IP
    /// address ([`Service::serve`](super::Service::serve) over a Unix socket, say).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr
    }

    /// The opening handshake request: path, query, headers, cookies, origin. WebSocket has no
    /// request scope of its own; this is it.
    pub fn request(&self) -> &Request {
        &self.inner.request
    }

    /// The subprotocol chosen in the handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.inner.protocol.as_deref()
    }

    /// The state: `Open` until a close frame is sent or received, `Closed` once the
    /// connection is gone.
    pub fn ready_state(&self) -> ReadyState {
        self.inner.shared.ready_state()
    }

    /// Bytes queued for this client and not yet written to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.inner.shared.buffered_amount()
    }

    /// Queues a message: a `String` or `&str` is sent as text, `Vec<u8>`, `&[u8]` or `Bytes`
    /// as binary, a [`Message`] or [`MessageRef`] as what it is. From inside this
    /// connection's own callback a small message is encoded at once, with no copy of its
    /// own: sending a borrowed message back (an echo) allocates nothing.
    ///
    /// On a connection that resumes ([`crate::resume`]) the message goes with the
    /// protocol's head (`v`), after the session's setup if it is under way.
    ///
    /// # Errors
    /// [`Error::Closed`] once the connection is closing or closed.
    pub fn send(&self, message: impl Outgoing) -> Result<()> {
        match &self.inner.resume {
            Some(resume) => resume.send_plain(self, message.into_message()),
            None => self.inner.shared.send(message),
        }
    }

    /// Queues a frame encoded once for many connections (see
    /// [`Connections::broadcast`](super::Connections::broadcast)), as it is. Not for a
    /// connection that resumes, whose frames carry the protocol's heads: send to it with
    /// [`Connection::send`] or through the [`Hub`](crate::Hub). A plain frame
    /// ([`encode_server_frame`](wsworker_proto::encode_server_frame)) goes to any
    /// connection; one compressed with
    /// [`SharedDeflate`](wsworker_proto::deflate::SharedDeflate) only to connections that
    /// agreed to those terms (the Hub and `broadcast` pick the form for each recipient).
    ///
    /// # Errors
    /// [`Error::Closed`] once the connection is closing or closed.
    pub fn send_prepared(&self, frame: &PreparedFrame) -> Result<()> {
        self.inner.shared.send_prepared(frame)
    }

    /// Queues a ping with up to 125 bytes of payload.
    ///
    /// # Errors
    /// [`Error::Closed`] once the connection is closing or closed; a longer payload is an
    /// [`Error::Proto`].
    pub fn ping(&self, payload: impl Into<Bytes>) -> Result<()> {
        let payload = payload.into();
        if payload.len() as u64 > wsworker_proto::frame::MAX_CONTROL_PAYLOAD {
            return Err(wsworker_proto::Error::from(
                wsworker_proto::ApiMisuse::ControlPayloadTooLong(payload.len()),
            )
            .into());
        }
        self.inner.shared.submit(Command::Ping(payload))
    }

    /// Starts the closing handshake with `code` and `reason`. A server may use any code
    /// that can be sent (1000–1003, 1007–1014, 3000–4999).
    ///
    /// # Errors
    /// [`Error::InvalidClose`] for a code that cannot be sent or a reason over 123 bytes;
    /// [`Error::Closed`] when the connection is already closing.
    pub fn close(&self, code: impl Into<CloseCode>, reason: &str) -> Result<()> {
        let code = code.into();
        CloseFrame::new(code, reason).map_err(|_| Error::InvalidClose {
            code: code.as_u16(),
            reason_len: reason.len(),
        })?;
        self.inner
            .shared
            .submit(Command::Close(code, reason.to_owned()))
    }

    /// Attaches a value of the application's own type to this connection (replacing any
    /// earlier one).
    pub fn set_data<T: Any + Send + Sync>(&self, value: T) {
        *self.lock_data() = Some(Arc::new(value));
    }

    /// Attaches what the handshake attached ([`Handshake::with_data`](super::Handshake::with_data)).
    pub(crate) fn attach(&self, data: super::callbacks::Attached) {
        *self.lock_data() = Some(data.0);
    }

    /// The value attached with [`Connection::set_data`] or at the handshake
    /// ([`Handshake::with_data`](super::Handshake::with_data)), if it is a `T`.
    pub fn data<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.lock_data().clone()?.downcast::<T>().ok()
    }

    /// The server's Hub, while the server runs.
    pub(crate) fn hub(&self) -> Result<crate::hub::Hub> {
        self.inner.hub.get()
    }

    /// Binds this connection to user `uid` (see [`Hub::bind_uid`](crate::hub::Hub::bind_uid)):
    /// `hub.send_to_uid(uid, ..)` reaches it, on whatever thread it runs.
    ///
    /// # Errors
    /// [`Error::Closed`] once the connection is gone.
    pub fn bind_uid(&self, uid: &str) -> Result<()> {
        self.hub()?.bind_uid(self.id(), uid)
    }

    /// Unbinds this connection from its user, if it has one.
    pub fn unbind_uid(&self) {
        if let Ok(hub) = self.hub() {
            hub.unbind_uid(self.id());
        }
    }

    /// The user this connection is bound to.
    pub fn uid(&self) -> Option<String> {
        self.hub().ok()?.uid_of(self.id())
    }

    /// Puts this connection in `group` (see [`Hub::join_group`](crate::hub::Hub::join_group)).
    ///
    /// # Errors
    /// [`Error::Closed`] once the connection is gone.
    pub fn join_group(&self, group: &str) -> Result<()> {
        self.hub()?.join_group(self.id(), group)
    }

    /// Takes this connection out of `group`.
    pub fn leave_group(&self, group: &str) {
        if let Ok(hub) = self.hub() {
            hub.leave_group(self.id(), group);
        }
    }

    /// The groups this connection is in, in the order it joined them.
    pub fn groups(&self) -> Vec<String> {
        self.inner
            .hub
            .get()
            .map(|hub| hub.groups_of(self.id()))
            .unwrap_or_default()
    }

    fn lock_data(&self) -> std::sync::MutexGuard<'_, Option<Data>> {
        // The lock only guards a pointer swap; a panic while holding it cannot leave the
        // value half-written, so a poisoned lock is still usable.
        self.inner.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id())
            .field("worker_id", &self.worker_id())
            .field("remote_addr", &self.remote_addr())
            .field("path", &self.request().path())
            .field("protocol", &self.protocol())
            .field("ready_state", &self.ready_state())
            .finish()
    }
}

//! The handling half of a server: what handles connections once something has accepted
//! them — the callbacks, the limits, the deflate policy, the [`Hub`] (registry, users,
//! groups, engine) and the metrics. A [`Worker`](super::Worker) is an `Endpoint` plus
//! listeners and worker threads; embedding in another server (axum, hyper, a Unix socket)
//! is an `Endpoint` alone, made a [`Service`] with [`Endpoint::service`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use wsworker_proto::handshake::Request;
use wsworker_proto::{Message, MessageRef};

use super::callbacks::{Callbacks, Handshake, HttpResponse, OnHandshake, OnMessage};
use super::connection::Connection;
use super::registry::Connections;
use super::service::Service;
#[cfg(doc)]
use super::{DEFAULT_MAX_PENDING_HANDSHAKES, Rejection};
use super::{Keepalive, OverflowPolicy, Settings, origin};
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::shared::CloseInfo;

/// Shards of the connection registry: one per worker up to this many.
pub(super) const REGISTRY_SHARDS: usize = 16;

/// What handles WebSocket connections, without listeners: configure it as a
/// [`Worker`](super::Worker) (a `Worker` derefs to its `Endpoint`, so every method here is
/// a `Worker` method too), then serve connections that another server accepted with
/// [`Endpoint::service`].
///
/// ```
/// use wsworker::Endpoint;
///
/// let mut endpoint = Endpoint::new();
/// endpoint.max_message_size(64 * 1024).on_message(|conn, msg| {
///     conn.send(msg)?;
///     Ok(())
/// });
/// let service = endpoint.service();
/// assert_eq!(service.connections().len(), 0);
/// ```
pub struct Endpoint {
    pub(super) callbacks: Callbacks,
    pub(super) settings: Settings,
    pub(super) hub: Hub,
    pub(super) metrics: Metrics,
    /// Other paths' callbacks and settings ([`Endpoint::route`]).
    pub(super) routes: Vec<(String, Self)>,
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint with the documented defaults, no callbacks and an in-process [`Hub`].
    pub fn new() -> Self {
        Self {
            callbacks: Callbacks::default(),
            settings: Settings::default(),
            hub: Hub::new(Connections::new(REGISTRY_SHARDS)),
            metrics: Metrics::default(),
            routes: Vec::new(),
        }
    }

    /// Serves the WebSocket endpoint at `path` with callbacks of its own, so one port
    /// serves several endpoints (`/chat`, `/feed`, ...): `configure` sets them on an
    /// `Endpoint` that shares this one's [`Hub`] and metrics and starts from its settings
    /// as they are now. Per route: the callbacks (`on_http` too), the message and frame
    /// size limits, permessage-deflate and the allowed origins; the timeouts, keepalive,
    /// send-buffer limits and connection limits are the server's. The path is matched
    /// exactly, without the query (`/chat?room=1` is `/chat`). A path without a route is
    /// served by this endpoint's own callbacks; when it has no handshake, connect or
    /// message callback, such a request gets `404 Not Found`. A second route for a path
    /// replaces the first.
    ///
    /// ```
    /// let mut worker = wsworker::Worker::new("websocket://127.0.0.1:0")?;
    /// worker
    ///     .route("/echo", |echo| {
    ///         echo.on_message(|conn, msg| {
    ///             conn.send(msg)?;
    ///             Ok(())
    ///         });
    ///     })
    ///     .route("/shout", |shout| {
    ///         shout.max_message_size(1024).on_message(|conn, msg| {
    ///             conn.send(msg.to_text()?.to_uppercase())?;
    ///             Ok(())
    ///         });
    ///     });
    /// # Ok::<(), wsworker::Error>(())
    /// ```
    pub fn route(&mut self, path: &str, configure: impl FnOnce(&mut Self)) -> &mut Self {
        let mut route = Self {
            callbacks: Callbacks::default(),
            settings: self.settings.clone(),
            hub: self.hub.clone(),
            metrics: self.metrics.clone(),
            routes: Vec::new(),
        };
        configure(&mut route);
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.routes.retain(|(p, _)| *p != path);
        self.routes.push((path, route));
        self
    }

    /// Serves connections accepted elsewhere (over any stream, or upgraded by hyper or
    /// axum) with this endpoint's callbacks and settings, on the caller's tokio runtime.
    /// The service counts as one worker (id 0) in the metrics and in
    /// [`Connection::worker_id`].
    pub fn service(self) -> Service {
        Service::new(self)
    }

    /// Every open connection of this server, across its workers: capture it in a callback
    /// to broadcast.
    ///
    /// ```no_run
    /// let mut worker = wsworker::Worker::new("websocket://0.0.0.0:2346")?;
    /// let everyone = worker.connections();
    /// worker.on_message(move |_, msg| {
    ///     everyone.broadcast(msg);
    ///     Ok(())
    /// });
    /// # Ok::<(), wsworker::Error>(())
    /// ```
    pub fn connections(&self) -> Connections {
        self.hub.connections().clone()
    }

    /// The server's [`Hub`]: messages to a connection, a user, a group or all, from any
    /// callback, thread or task; users bound and groups joined.
    ///
    /// ```no_run
    /// let mut worker = wsworker::Worker::new("websocket://0.0.0.0:2346")?;
    /// let hub = worker.hub();
    /// worker.on_connect(|conn| {
    ///     let _ = conn.join_group("lobby");
    /// });
    /// worker.on_message(move |_, msg| {
    ///     hub.send_to_group("lobby", msg);
    ///     Ok(())
    /// });
    /// # Ok::<(), wsworker::Error>(())
    /// ```
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// Carries the Hub's sends, memberships and queries to every node sharing `engine`
    /// (the `wsworker-redis` crate's Redis engine, say): see [`crate::hub::engine`].
    /// Connection ids carry the engine's node id from then on.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when an engine is installed already.
    pub fn engine(&mut self, engine: impl crate::hub::Engine) -> Result<&mut Self> {
        self.hub.install(Arc::new(engine))?;
        Ok(self)
    }

    /// Lets clients that offer `wsworker.resume.v1` resume their sessions after a lost
    /// connection, on this node or any other sharing the engine (see
    /// [`Hub::resume`](crate::Hub::resume) and `docs/RESUME.md`). Needs an engine that keeps
    /// history ([`Endpoint::engine`] with the Redis engine).
    ///
    /// ```no_run
    /// use wsworker::Worker;
    /// use wsworker::resume::ResumeConfig;
    ///
    /// let mut worker = Worker::new("websocket://0.0.0.0:2346")?;
    /// // worker.engine(wsworker_redis::RedisEngine::start(..)?)?;
    /// worker.resume(ResumeConfig::default())?;
    /// worker.hub().on_resume(|conn, report| {
    ///     for (topic, reason) in &report.failed {
    ///         let _ = conn.send(format!("state of {topic} afresh ({reason})"));
    ///     }
    /// });
    /// # Ok::<(), wsworker::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Unsupported`] when resume is set already.
    pub fn resume(&mut self, config: crate::resume::ResumeConfig) -> Result<&mut Self> {
        self.hub.resume(config)?;
        Ok(self)
    }

    /// The server's counters (connections, messages, bytes, closes by code, refused
    /// handshakes by reason, dropped messages), readable from any thread while it runs.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The largest message accepted (close 1009 above it). Default 16 MiB.
    pub fn max_message_size(&mut self, bytes: usize) -> &mut Self {
        self.settings.proto = self.settings.proto.clone().max_message_size(bytes);
        self
    }

    /// The largest frame accepted (close 1009 above it). Default 16 MiB.
    pub fn max_frame_size(&mut self, bytes: usize) -> &mut Self {
        self.settings.proto = self.settings.proto.clone().max_frame_size(bytes);
        self
    }

    /// permessage-deflate (RFC 7692): `Some(config)` accepts a client's offer with these
    /// settings, `None` never compresses. The default is
    /// `Some(DeflateConfig::default().server_no_context_takeover(true))`: 12-bit windows
    /// asked for both ways (as Python's `websockets` does), messages of 32 bytes or more
    /// compressed at level 6 with zlib memory level 5, and our side compressing each
    /// message on its own with a compressor the worker thread lends (about 160 KiB it
    /// would otherwise keep per connection); the client keeps its context, which costs the
    /// last bytes it compressed, up to its window (4 KiB at 12 bits), per connection that
    /// has sent a compressed message (3 KiB measured in all after one small message, 6 KiB
    /// after many). See [`DeflateConfig`](wsworker_proto::deflate::DeflateConfig) for what
    /// each setting costs.
    /// Broadcast frames ([`Connections::broadcast`]) are encoded once and not compressed.
    ///
    /// ```no_run
    /// use wsworker::proto::deflate::DeflateConfig;
    ///
    /// let mut worker = wsworker::Worker::new("websocket://0.0.0.0:2346")?;
    /// // Better compression of similar messages, for about 160 KiB more per connection:
    /// // our side keeps its context too.
    /// worker.permessage_deflate(Some(DeflateConfig::default()));
    /// // The least memory: neither side keeps a context.
    /// worker.permessage_deflate(Some(
    ///     DeflateConfig::default()
    ///         .server_no_context_takeover(true)
    ///         .client_no_context_takeover(true),
    /// ));
    /// # Ok::<(), wsworker::Error>(())
    /// ```
    #[cfg(feature = "deflate")]
    pub fn permessage_deflate(
        &mut self,
        config: Option<wsworker_proto::deflate::DeflateConfig>,
    ) -> &mut Self {
        self.settings.deflate = config;
        self
    }

    /// The largest handshake request head (431 above it). Default 8 KiB.
    pub fn max_header_size(&mut self, bytes: usize) -> &mut Self {
        self.settings.max_header_size = bytes;
        self
    }

    /// How long a client has to send its handshake request (408 after it). Default 10 s.
    pub fn handshake_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// How long to wait for the peer's close frame after ours. Default 5 s.
    pub fn close_timeout(&mut self, timeout: Duration) -> &mut Self {
        Arc::make_mut(&mut self.settings.driver).close_timeout = timeout;
        self
    }

    /// How long a graceful stop (SIGINT/SIGTERM,
    /// [`RunningServer::shutdown`](super::RunningServer::shutdown), [`Service::shutdown`])
    /// waits for the closing handshakes before it ends the connections left. Those still end properly:
    /// `on_close` runs for each (1006, not clean, unless its closing handshake was done and
    /// only the client's end of TCP was awaited) and the metrics count them closed. Default
    /// the close timeout plus 2 s (7 s with the default close timeout).
    pub fn shutdown_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.settings.shutdown_timeout = Some(timeout);
        self
    }

    /// The send buffer limits per connection: `on_buffer_full` above `soft`
    /// (`on_buffer_drain` once it is empty again), and at `hard` the
    /// [`OverflowPolicy`] (close 1008 by default). Defaults 1 MiB and 16 MiB.
    pub fn send_buffer_limits(&mut self, soft: usize, hard: usize) -> &mut Self {
        let driver = Arc::make_mut(&mut self.settings.driver);
        driver.soft_buffer_limit = soft;
        driver.hard_buffer_limit = hard.max(soft);
        self
    }

    /// What happens at the hard send-buffer limit: close the connection with 1008 (the
    /// default) or drop the message and count it.
    pub fn overflow_policy(&mut self, policy: OverflowPolicy) -> &mut Self {
        Arc::make_mut(&mut self.settings.driver).overflow = policy;
        self
    }

    /// Idle keepalive: ping a client silent for `interval`, drop it when nothing arrives
    /// within `timeout` more; `None` turns it off. Default 30 s and 30 s.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use wsworker::server::Keepalive;
    ///
    /// let mut worker = wsworker::Worker::new("websocket://0.0.0.0:2346")?;
    /// worker.keepalive(Some(Keepalive::new(Duration::from_secs(10), Duration::from_secs(5))));
    /// # Ok::<(), wsworker::Error>(())
    /// ```
    pub fn keepalive(&mut self, keepalive: Option<Keepalive>) -> &mut Self {
        Arc::make_mut(&mut self.settings.driver).keepalive = keepalive;
        self
    }

    /// At most this many open connections per worker (per [`Service`] when embedded); a handshake beyond it gets `503
    /// Service Unavailable` (with `Retry-After`). Default: no limit but the process's file
    /// descriptors.
    pub fn max_connections(&mut self, per_worker: usize) -> &mut Self {
        self.settings.max_connections = Some(per_worker);
        self
    }

    /// At most this many connections per worker (per [`Service`]) in their opening handshake at once (TLS and
    /// WebSocket, or a plain HTTP answer): a connection accepted beyond it is closed at once,
    /// without an answer, and counted as a [`Rejection::Pending`]. Each handshake holds its
    /// state until it ends or the [handshake timeout](Self::handshake_timeout) fires, so this
    /// bounds what sockets that connect and send nothing (or a TLS hello and nothing) can
    /// take. Open connections are bounded by [`max_connections`](Self::max_connections)
    /// instead. Default [`DEFAULT_MAX_PENDING_HANDSHAKES`] (1,024).
    pub fn max_pending_handshakes(&mut self, per_worker: usize) -> &mut Self {
        self.settings.max_pending_handshakes = per_worker;
        self
    }

    /// Accepts handshakes only from these origins (`https://example.com`,
    /// `http://localhost:8080`; `null` for pages opened from files); any other `Origin` gets
    /// `403 Forbidden`. Compared as RFC 6454 serializes origins: scheme and host without
    /// regard to case, a default port equal to no port. A request without `Origin` does not
    /// come from a browser page and is accepted: the check protects browsers' users from
    /// other sites' pages (cross-site WebSocket hijacking); it is not authentication.
    ///
    /// ```no_run
    /// let mut worker = wsworker::Worker::new("websocket://0.0.0.0:2346")?;
    /// worker.allowed_origins(["https://example.com", "http://localhost:8080"]);
    /// # Ok::<(), wsworker::Error>(())
    /// ```
    pub fn allowed_origins<I, S>(&mut self, origins: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.settings.allowed_origins = Some(
            origins
                .into_iter()
                .map(|o| origin::normalize(o.as_ref()))
                .collect(),
        );
        self
    }

    /// Decides about each valid opening request: accept (choosing a subprotocol) or reject
    /// with an HTTP status. Without it every valid request is accepted with no subprotocol.
    pub fn on_handshake(
        &mut self,
        f: impl Fn(&Request) -> Handshake + Send + Sync + 'static,
    ) -> &mut Self {
        self.callbacks.on_handshake = Some(OnHandshake::Sync(Box::new(f)));
        self
    }

    /// As [`on_handshake`](Self::on_handshake), deciding asynchronously (a token looked up in
    /// a database, say) with the request given (a copy of its head). The decision is awaited
    /// within the [handshake timeout](Self::handshake_timeout) (408 after it); other
    /// connections go on meanwhile. Replaces an `on_handshake`.
    ///
    /// ```
    /// use wsworker::{Endpoint, Handshake};
    ///
    /// # async fn lookup(_token: &str) -> Option<u64> { Some(7) }
    /// let mut endpoint = Endpoint::new();
    /// endpoint.on_handshake_async(|request| async move {
    ///     let token = request.query_param("token").unwrap_or_default().into_owned();
    ///     match lookup(&token).await {
    ///         Some(user_id) => Handshake::accept().with_data(user_id),
    ///         None => Handshake::reject(401, "unknown token"),
    ///     }
    /// });
    /// ```
    pub fn on_handshake_async<F>(
        &mut self,
        f: impl Fn(Request) -> F + Send + Sync + 'static,
    ) -> &mut Self
    where
        F: Future<Output = Handshake> + Send + 'static,
    {
        self.callbacks.on_handshake = Some(OnHandshake::Async(Box::new(move |request| {
            Box::pin(f(request))
        })));
        self
    }

    /// Called when a connection is open.
    pub fn on_connect(&mut self, f: impl Fn(&Connection) + Send + Sync + 'static) -> &mut Self {
        self.callbacks.on_connect = Some(Box::new(f));
        self
    }

    /// Called for each complete message. An error returned (or a panic) is reported to
    /// `on_error` and closes this connection with 1011. Replaces an
    /// [`on_message_ref`](Self::on_message_ref).
    pub fn on_message(
        &mut self,
        f: impl Fn(&Connection, Message) -> Result<()> + Send + Sync + 'static,
    ) -> &mut Self {
        self.callbacks.on_message = Some(OnMessage::Owned(Box::new(f)));
        self
    }

    /// As [`on_message`](Self::on_message), with the message lent for the call instead of
    /// given: a message that arrived in one frame (most do) is read where it arrived, in the
    /// worker's receive buffer, with no allocation and no reference count. The fastest way
    /// to answer or inspect messages; [`MessageRef::to_owned`] keeps one. Replaces an
    /// `on_message`.
    ///
    /// The replies to a run of messages read together are queued together when the run
    /// ends (in order, before anything else that connection sends):
    /// [`Connection::buffered_amount`] and `on_buffer_full` see them then.
    ///
    /// ```no_run
    /// use wsworker::{MessageRef, Worker};
    ///
    /// let mut worker = Worker::new("websocket://127.0.0.1:2346")?;
    /// worker.on_message_ref(|conn, msg| {
    ///     match msg {
    ///         // An echo: the reply is encoded straight from the receive buffer.
    ///         MessageRef::Binary(_) => conn.send(msg)?,
    ///         MessageRef::Text(name) => conn.send(format!("hello {name}"))?,
    ///     }
    ///     Ok(())
    /// });
    /// worker.run()?;
    /// # Ok::<(), wsworker::Error>(())
    /// ```
    pub fn on_message_ref(
        &mut self,
        f: impl Fn(&Connection, MessageRef<'_>) -> Result<()> + Send + Sync + 'static,
    ) -> &mut Self {
        self.callbacks.on_message = Some(OnMessage::Borrowed(Box::new(f)));
        self
    }

    /// Called once when a connection is over, with its close code, reason and whether the
    /// closing handshake completed.
    pub fn on_close(
        &mut self,
        f: impl Fn(&Connection, &CloseInfo) + Send + Sync + 'static,
    ) -> &mut Self {
        self.callbacks.on_close = Some(Box::new(f));
        self
    }

    /// Called on a protocol violation by the client, an I/O error, or a failed callback.
    pub fn on_error(
        &mut self,
        f: impl Fn(&Connection, &Error) + Send + Sync + 'static,
    ) -> &mut Self {
        self.callbacks.on_error = Some(Box::new(f));
        self
    }

    /// Called when a connection's send buffer goes above the soft limit.
    pub fn on_buffer_full(&mut self, f: impl Fn(&Connection) + Send + Sync + 'static) -> &mut Self {
        self.callbacks.on_buffer_full = Some(Box::new(f));
        self
    }

    /// Called when a connection's send buffer has drained after `on_buffer_full`.
    pub fn on_buffer_drain(
        &mut self,
        f: impl Fn(&Connection) + Send + Sync + 'static,
    ) -> &mut Self {
        self.callbacks.on_buffer_drain = Some(Box::new(f));
        self
    }

    /// Answers plain HTTP `GET`/`HEAD` requests on the WebSocket port (a demo page, a health
    /// check). Without it they get `426 Upgrade Required`.
    pub fn on_http(
        &mut self,
        f: impl Fn(&Request) -> HttpResponse + Send + Sync + 'static,
    ) -> &mut Self {
        self.callbacks.on_http = Some(Box::new(f));
        self
    }
}

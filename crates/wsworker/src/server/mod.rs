//! The server: a [`Worker`] listens on `websocket://HOST:PORT` with `count` worker threads,
//! each running its own single-threaded tokio runtime and its own `SO_REUSEPORT` listener —
//! the threads play the part of Workerman's processes, and nothing on the per-message path
//! is shared between them. The worker's event loop (`event_loop`) accepts: a plain
//! connection lives in it from its handshake to its end, a TLS one gets a task of its own.

mod accept;
mod address;
mod callbacks;
mod connection;
mod event_loop;
mod extensions;
mod listener;
mod origin;
mod refusal;
mod registry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use wsworker_proto::handshake::{DEFAULT_MAX_HEADER_SIZE, Request};
use wsworker_proto::{CloseCode, Message, MessageRef};

pub use callbacks::{Handshake, HttpResponse};
pub use connection::Connection;
pub use registry::Connections;

pub use crate::driver::{Keepalive, OverflowPolicy};
pub use crate::metrics::{CloseCodeGroup, Metrics, MetricsSnapshot, Rejection, WorkerSnapshot};

use crate::driver::DriverConfig;
use crate::error::{Error, Result};
use crate::hub::Hub;
use crate::metrics::WorkerCounters;
use crate::shared::CloseInfo;
use callbacks::{Callbacks, OnMessage};

/// The default of [`Worker::max_pending_handshakes`].
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1024;

/// Settings of a server's connections. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) proto: wsworker_proto::Config,
    /// Shared by every connection's driver.
    pub(crate) driver: Arc<DriverConfig>,
    pub(crate) max_header_size: usize,
    pub(crate) handshake_timeout: Duration,
    /// Set by the application; otherwise [`Settings::shutdown_timeout`] derives it.
    pub(crate) shutdown_timeout: Option<Duration>,
    /// Open connections per worker above which new ones get 503.
    pub(crate) max_connections: Option<usize>,
    /// Handshakes in progress per worker above which new connections are closed at once.
    pub(crate) max_pending_handshakes: usize,
    /// The origins allowed (normalized), when the allow-list is on.
    pub(crate) allowed_origins: Option<Vec<String>>,
    /// permessage-deflate: accept offers with these settings, or refuse compression.
    #[cfg(feature = "deflate")]
    pub(crate) deflate: Option<wsworker_proto::deflate::DeflateConfig>,
}

/// The server's permessage-deflate settings unless told otherwise: our side compresses
/// without context takeover, so one compressor per worker thread serves every connection
/// (uWebSockets' shared compressor) and a connection holds none between messages — about
/// 256 KiB less per connection that has sent a compressed message, for somewhat less
/// compression of small, similar messages.
#[cfg(feature = "deflate")]
fn default_deflate() -> wsworker_proto::deflate::DeflateConfig {
    wsworker_proto::deflate::DeflateConfig::default().server_no_context_takeover(true)
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            proto: wsworker_proto::Config::default(),
            driver: Arc::default(),
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
            handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: None,
            max_connections: None,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            allowed_origins: None,
            #[cfg(feature = "deflate")]
            deflate: Some(default_deflate()),
        }
    }
}

/// How much longer than the close timeout a graceful stop waits by default: the drivers
/// apply the 1001 a moment after the stop begins, and each connection's close timeout starts
/// only then.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

impl Settings {
    /// How long a graceful stop waits for the connections to end: as set, or the close
    /// timeout plus [`SHUTDOWN_MARGIN`], so that a connection still closing is not cut off
    /// sooner than its own close timeout would cut it.
    pub(crate) fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
            .unwrap_or(self.driver.close_timeout + SHUTDOWN_MARGIN)
    }
}

/// What every worker thread of a server shares.
pub(crate) struct ServerContext {
    pub(crate) callbacks: Arc<Callbacks>,
    pub(crate) settings: Settings,
    pub(crate) hub: Hub,
    /// Each worker's counters, by worker id.
    pub(crate) counters: Vec<Arc<WorkerCounters>>,
    /// The TLS handshake for every accepted connection, when the server speaks TLS.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A WebSocket server in the shape of Workerman's `Worker`.
///
/// ```no_run
/// use wsworker::Worker;
///
/// fn main() -> wsworker::Result<()> {
///     let mut worker = Worker::new("websocket://0.0.0.0:2346")?;
///     worker.count(4);
///     worker.on_message(|conn, msg| {
///         conn.send(format!("hello {}", msg.to_text()?))?;
///         Ok(())
///     });
///     worker.run()
/// }
/// ```
pub struct Worker {
    address: String,
    addr: SocketAddr,
    /// The address is `websocket+tls://`: TLS is required.
    tls_scheme: bool,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ServerConfig>>,
    count: usize,
    callbacks: Callbacks,
    settings: Settings,
    hub: Hub,
    metrics: Metrics,
}

/// Shards of the connection registry: one per worker up to this many.
const REGISTRY_SHARDS: usize = 16;

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("address", &self.address)
            .field("count", &self.count)
            .field("tls", &self.is_tls())
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A server for `websocket://HOST:PORT` (IPv4, `[IPv6]` or a host name; port 0 picks a
    /// free port, see [`RunningServer::local_addr`]). One worker until [`Worker::count`].
    ///
    /// `websocket+tls://HOST:PORT` serves TLS (`wss://`, and `https://` for
    /// [`Worker::on_http`]); it needs a certificate from [`Worker::tls_pem`] or
    /// [`Worker::tls_config`] before [`Worker::start`].
    ///
    /// # Errors
    /// [`Error::InvalidAddress`] for another scheme or a bad address;
    /// [`Error::Unsupported`] for `websocket+tls://` without the `tls` feature.
    pub fn new(address: &str) -> Result<Self> {
        let (addr, tls_scheme) = address::parse(address)?;
        Ok(Self {
            address: address.to_owned(),
            addr,
            tls_scheme,
            #[cfg(feature = "tls")]
            tls: None,
            count: 1,
            callbacks: Callbacks::default(),
            settings: Settings::default(),
            hub: Hub::new(Connections::new(REGISTRY_SHARDS)),
            metrics: Metrics::default(),
        })
    }

    /// Serves TLS with this certificate chain (PEM, leaf first) and private key (PEM: PKCS#8,
    /// PKCS#1 or SEC1), announcing ALPN `http/1.1`. Turns TLS on whatever the address's
    /// scheme: `websocket://` with a certificate serves `wss://` too.
    ///
    /// ```no_run
    /// let mut worker = wsworker::Worker::new("websocket+tls://0.0.0.0:2346")?;
    /// worker.tls_pem("cert.pem", "key.pem")?;
    /// # Ok::<(), wsworker::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Tls`] when a file cannot be read, holds no certificate or key, or the key
    /// does not fit the certificate.
    #[cfg(feature = "tls")]
    pub fn tls_pem(
        &mut self,
        cert_chain: impl AsRef<std::path::Path>,
        key: impl AsRef<std::path::Path>,
    ) -> Result<&mut Self> {
        let config = crate::tls::server_config_from_pem(cert_chain.as_ref(), key.as_ref())?;
        self.tls = Some(config);
        Ok(self)
    }

    /// Serves TLS with a rustls configuration of your own (client certificates, a
    /// certificate resolver, another crypto provider, ...), used as it is: set its
    /// `alpn_protocols` to `http/1.1` (or leave them empty), since the server speaks
    /// HTTP/1.1 only. Turns TLS on whatever the address's scheme.
    #[cfg(feature = "tls")]
    pub fn tls_config(&mut self, config: Arc<rustls::ServerConfig>) -> &mut Self {
        self.tls = Some(config);
        self
    }

    /// Whether the server will speak TLS: a certificate was given, or the address is
    /// `websocket+tls://`.
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return true;
        }
        self.tls_scheme
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
    /// history ([`Worker::engine`] with the Redis engine).
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

    /// The number of worker threads (at least 1).
    pub fn count(&mut self, count: usize) -> &mut Self {
        self.count = count.max(1);
        self
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
    /// `Some(DeflateConfig::default().server_no_context_takeover(true))`: 15-bit windows,
    /// messages of 32 bytes or more compressed at level 6, and our side compressing each
    /// message on its own with a compressor the worker thread lends (about 256 KiB it
    /// would otherwise keep per connection); the client keeps its context, which costs a
    /// decompressor (about 20 KiB measured) per connection that has sent a compressed
    /// message. See [`DeflateConfig`](wsworker_proto::deflate::DeflateConfig) for what each
    /// setting costs.
    /// Broadcast frames ([`Connections::broadcast`]) are encoded once and not compressed.
    ///
    /// ```no_run
    /// use wsworker::proto::deflate::DeflateConfig;
    ///
    /// let mut worker = wsworker::Worker::new("websocket://0.0.0.0:2346")?;
    /// // Better compression of similar messages, for 256 KiB more per connection: our side
    /// // keeps its context too.
    /// worker.permessage_deflate(Some(DeflateConfig::default()));
    /// // The least memory: neither side keeps a context, 12-bit windows.
    /// worker.permessage_deflate(Some(
    ///     DeflateConfig::default()
    ///         .server_no_context_takeover(true)
    ///         .client_no_context_takeover(true)
    ///         .server_max_window_bits(12)
    ///         .client_max_window_bits(12),
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

    /// How long a graceful stop (SIGINT/SIGTERM, [`RunningServer::shutdown`]) waits for the
    /// closing handshakes before it ends the connections left. Those still end properly:
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

    /// At most this many open connections per worker; a handshake beyond it gets `503
    /// Service Unavailable` (with `Retry-After`). Default: no limit but the process's file
    /// descriptors.
    pub fn max_connections(&mut self, per_worker: usize) -> &mut Self {
        self.settings.max_connections = Some(per_worker);
        self
    }

    /// At most this many connections per worker in their opening handshake at once (TLS and
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

    /// Called on each worker thread when it starts, with the worker's id (0-based).
    pub fn on_worker_start(&mut self, f: impl Fn(usize) + Send + Sync + 'static) -> &mut Self {
        self.callbacks.on_worker_start = Some(Box::new(f));
        self
    }

    /// Decides about each valid opening request: accept (choosing a subprotocol) or reject
    /// with an HTTP status. Without it every valid request is accepted with no subprotocol.
    pub fn on_handshake(
        &mut self,
        f: impl Fn(&Request) -> Handshake + Send + Sync + 'static,
    ) -> &mut Self {
        self.callbacks.on_handshake = Some(Box::new(f));
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

    /// Binds the listeners and starts the worker threads; returns at once. Stop it with
    /// [`RunningServer::shutdown`].
    ///
    /// # Errors
    /// [`Error::Io`] when the address cannot be bound; [`Error::Tls`] for
    /// `websocket+tls://` without a certificate.
    pub fn start(self) -> Result<RunningServer> {
        let is_tls = self.is_tls();
        #[cfg(feature = "tls")]
        let tls = match (&self.tls, self.tls_scheme) {
            (Some(config), _) => Some(tokio_rustls::TlsAcceptor::from(config.clone())),
            (None, true) => {
                return Err(crate::tls::error(
                    format!(
                        "{} needs a certificate and key: call Worker::tls_pem or \
                         Worker::tls_config before starting",
                        self.address
                    ),
                    None,
                ));
            }
            (None, false) => None,
        };
        let listeners = listener::bind_all(self.addr, self.count)?;
        let local_addr = listeners
            .first()
            .map(|l| l.local_addr())
            .transpose()?
            .unwrap_or(self.addr);
        let hub = self.hub;
        let counters = self.metrics.start(listeners.len());
        let ctx = Arc::new(ServerContext {
            callbacks: Arc::new(self.callbacks),
            settings: self.settings,
            hub: hub.clone(),
            counters,
            #[cfg(feature = "tls")]
            tls,
        });
        let (stop, stopped) = watch::channel(false);
        let mut threads = Vec::with_capacity(listeners.len());
        for (worker_id, listener) in listeners.into_iter().enumerate() {
            let ctx = ctx.clone();
            let stopped = stopped.clone();
            let thread = std::thread::Builder::new()
                .name(format!("wsworker-{worker_id}"))
                .spawn(move || worker_main(worker_id, listener, ctx, stopped))?;
            threads.push(thread);
        }
        tracing::info!(address = %local_addr, workers = threads.len(), tls = is_tls, "listening");
        Ok(RunningServer {
            local_addr,
            tls: is_tls,
            hub,
            stop,
            threads,
        })
    }

    /// Starts the server and blocks until SIGINT or SIGTERM, then stops gracefully: no new
    /// connections, close 1001 to every client, up to [`Worker::shutdown_timeout`] for the closing handshakes.
    ///
    /// # Errors
    /// As [`Worker::start`].
    pub fn run(self) -> Result<()> {
        Self::run_all([self])
    }

    /// Starts several servers together (a WebSocket port and a plain HTTP port, say) and
    /// stops them all on SIGINT or SIGTERM, as Workerman's `Worker::runAll()` does.
    ///
    /// # Errors
    /// The first error of [`Worker::start`]; servers already started are stopped.
    pub fn run_all(workers: impl IntoIterator<Item = Self>) -> Result<()> {
        let signal = StopSignal::install()?;
        let mut running = Vec::new();
        for worker in workers {
            match worker.start() {
                Ok(server) => running.push(server),
                Err(error) => {
                    for server in running {
                        server.shutdown();
                    }
                    return Err(error);
                }
            }
        }
        signal.wait()?;
        tracing::info!("shutting down");
        for server in &running {
            server.request_stop();
        }
        for server in running {
            server.join();
        }
        Ok(())
    }
}

/// A started server.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    tls: bool,
    hub: Hub,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// The address the server listens on (with the port picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the server speaks TLS (`wss://` and `https://`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// All open connections, for broadcast.
    pub fn connections(&self) -> &Connections {
        self.hub.connections()
    }

    /// The server's [`Hub`] (see [`Worker::hub`]).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn request_stop(&self) {
        let _ = self.stop.send(true);
    }

    fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }

    /// Blocks until SIGINT or SIGTERM, then stops gracefully.
    ///
    /// # Errors
    /// [`Error::Io`] when the signal handlers cannot be installed (the server is stopped).
    pub fn run_until_signal(self) -> Result<()> {
        self.stop_on(StopSignal::install()?)
    }

    /// Blocks until `signal` arrives, then stops gracefully. Install the [`StopSignal`]
    /// before announcing the server, so an early signal is not lost.
    ///
    /// # Errors
    /// [`Error::Io`] when waiting for the signal fails (the server is stopped).
    pub fn stop_on(self, signal: StopSignal) -> Result<()> {
        let waited = signal.wait();
        tracing::info!("shutting down");
        self.shutdown();
        waited
    }

    /// Stops gracefully (as on SIGTERM) and waits for the worker threads.
    pub fn shutdown(self) {
        self.request_stop();
        self.join();
    }
}

fn worker_main(
    worker_id: usize,
    listener: std::net::TcpListener,
    ctx: Arc<ServerContext>,
    mut stopped: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(worker_id, %error, "cannot start the worker's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        if let Some(cb) = &ctx.callbacks.on_worker_start
            && let Err(panic) = crate::shared::contain(|| cb(worker_id))
        {
            tracing::error!(worker_id, %panic, "on_worker_start panicked");
        }
        let tasks = TaskTracker::new();
        let shutdown_timeout = ctx.settings.shutdown_timeout();
        let (event_loop, loop_stop) =
            match event_loop::EventLoop::new(listener, worker_id, ctx.clone(), tasks.clone()) {
                Ok(parts) => parts,
                Err(error) => {
                    tracing::error!(worker_id, %error, "cannot start the worker's event loop");
                    return;
                }
            };
        // Unconstrained: the loop yields by itself after a bounded number of rounds, and
        // tokio's per-task budget would otherwise be shared by all of its connections.
        tasks.spawn(tokio::task::unconstrained(event_loop));
        let _ = stopped.wait_for(|stop| *stop).await;
        // The loop closes its listener when it next runs, before it would accept again;
        // every connection is asked to close (one whose handshake ends later is closed as
        // it opens).
        loop_stop.stop();
        ctx.hub.connections().close_worker(
            worker_id,
            CloseCode::GOING_AWAY,
            "server shutting down",
        );
        tasks.close();
        let _ = tokio::time::timeout(shutdown_timeout, tasks.wait()).await;
        // Dropping the runtime drops the connections left, and each driver's drop reports
        // its connection's end.
    });
}

/// SIGINT and SIGTERM, caught from the moment this value exists: create it before telling
/// anyone the server is up, so that a signal sent right away stops the server gracefully
/// instead of killing the process.
#[derive(Debug)]
pub struct StopSignal {
    runtime: tokio::runtime::Runtime,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    /// Starts catching SIGINT and SIGTERM.
    ///
    /// # Errors
    /// [`Error::Io`] when the handlers cannot be installed.
    pub fn install() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let _guard = runtime.enter();
            let interrupt = signal(SignalKind::interrupt())?;
            let terminate = signal(SignalKind::terminate())?;
            drop(_guard);
            Ok(Self {
                runtime,
                interrupt,
                terminate,
            })
        }
        #[cfg(not(unix))]
        Ok(Self { runtime })
    }

    /// Blocks until SIGINT or SIGTERM arrives (or arrived since [`StopSignal::install`]).
    ///
    /// # Errors
    /// [`Error::Io`] when waiting for the signal fails.
    pub fn wait(self) -> Result<()> {
        #[cfg(unix)]
        {
            let Self {
                runtime,
                mut interrupt,
                mut terminate,
            } = self;
            runtime.block_on(async {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            });
            Ok(())
        }
        #[cfg(not(unix))]
        {
            self.runtime.block_on(tokio::signal::ctrl_c())?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_waits_longer_than_a_connection_may_take_to_close() {
        let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
        assert_eq!(worker.settings.shutdown_timeout(), Duration::from_secs(7));
        worker.close_timeout(Duration::from_secs(30));
        assert_eq!(worker.settings.shutdown_timeout(), Duration::from_secs(32));
        worker.shutdown_timeout(Duration::from_secs(1));
        assert_eq!(worker.settings.shutdown_timeout(), Duration::from_secs(1));
    }
}

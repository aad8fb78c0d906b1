//! The server: a [`Worker`] listens on `websocket://HOST:PORT` with `count` worker threads,
//! each running its own single-threaded tokio runtime and its own `SO_REUSEPORT` listener —
//! the threads play the part of Workerman's processes, and nothing on the per-message path
//! is shared between them. The worker's event loop (`event_loop`) accepts: a plain
//! connection lives in it from its handshake to its end, a TLS one gets a task of its own.

mod accept;
mod address;
mod callbacks;
mod connection;
mod endpoint;
mod event_loop;
mod extensions;
#[cfg(feature = "hyper")]
mod h2;
#[cfg(feature = "hyper")]
mod hyper_upgrade;
mod listener;
mod origin;
mod refusal;
mod registry;
#[cfg(feature = "hyper")]
mod rewind;
mod service;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use wsworker_proto::CloseCode;
use wsworker_proto::handshake::DEFAULT_MAX_HEADER_SIZE;

pub use callbacks::{Attached, Handshake, HttpResponse};
pub use connection::Connection;
pub use endpoint::Endpoint;
pub use registry::Connections;
pub use service::Service;

pub use crate::driver::{Keepalive, OverflowPolicy};
pub use crate::metrics::{CloseCodeGroup, Metrics, MetricsSnapshot, Rejection, WorkerSnapshot};

use crate::driver::DriverConfig;
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::hub::Hub;
use crate::metrics::WorkerCounters;
use callbacks::Callbacks;

/// The default of [`Worker::max_pending_handshakes`](crate::Endpoint::max_pending_handshakes).
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

/// The server's permessage-deflate settings unless told otherwise: `DeflateConfig`'s
/// defaults (12-bit windows, memory level 5, as Python's `websockets`), and our side
/// compresses without context takeover, so one compressor per worker thread serves every
/// connection (uWebSockets' shared compressor) and a connection holds none between messages
/// — about 160 KiB less per connection that has sent a compressed message, for somewhat less
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
    /// [`Endpoint::route`]s, by path.
    pub(crate) routes: Vec<Route>,
    /// Becomes `true` when the server begins to stop (for HTTP/2's GOAWAY).
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) stop: watch::Receiver<bool>,
    /// TLS connections that choose `h2`, and cleartext ones that open with the HTTP/2
    /// preface, are served over HTTP/2 (`Worker::http2`).
    #[cfg_attr(not(feature = "hyper"), allow(dead_code))]
    pub(crate) http2: bool,
    pub(crate) hub: Hub,
    /// Each worker's counters, by worker id.
    pub(crate) counters: Vec<Arc<WorkerCounters>>,
    /// The TLS handshake for every accepted connection, when the server speaks TLS.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The callbacks and settings of one path ([`Endpoint::route`]).
pub(crate) struct Route {
    pub(crate) path: String,
    pub(crate) callbacks: Arc<Callbacks>,
    pub(crate) settings: Settings,
}

/// The callbacks and settings a request gets: its path's route, or the endpoint's own.
#[derive(Clone, Copy)]
pub(crate) struct Routed<'a> {
    pub(crate) callbacks: &'a Arc<Callbacks>,
    pub(crate) settings: &'a Settings,
}

impl ServerContext {
    /// `endpoint`'s callbacks, settings and Hub, with `counters` for its workers.
    pub(crate) fn new(
        endpoint: Endpoint,
        counters: Vec<Arc<WorkerCounters>>,
        stop: watch::Receiver<bool>,
        #[cfg(feature = "tls")] tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        let Endpoint {
            callbacks,
            settings,
            hub,
            metrics: _,
            routes,
        } = endpoint;
        let routes = routes
            .into_iter()
            .map(|(path, route)| Route {
                path,
                callbacks: Arc::new(route.callbacks),
                settings: route.settings,
            })
            .collect();
        Self {
            callbacks: Arc::new(callbacks),
            settings,
            routes,
            stop,
            http2: false,
            hub,
            counters,
            #[cfg(feature = "tls")]
            tls,
        }
    }

    /// What serves `path`: its route, else the endpoint itself — unless it has routes and
    /// no connection callbacks of its own (`None`: 404).
    pub(crate) fn route(&self, path: &str) -> Option<Routed<'_>> {
        if let Some(route) = self.routes.iter().find(|r| r.path == path) {
            return Some(Routed {
                callbacks: &route.callbacks,
                settings: &route.settings,
            });
        }
        (self.routes.is_empty() || self.callbacks.serves_connections()).then_some(Routed {
            callbacks: &self.callbacks,
            settings: &self.settings,
        })
    }
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
    http2: bool,
    endpoint: Endpoint,
}

/// A `Worker` is its [`Endpoint`] (callbacks, limits, Hub, metrics) plus listeners and
/// threads: every `Endpoint` method is a `Worker` method.
impl std::ops::Deref for Worker {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl std::ops::DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Endpoint {
        &mut self.endpoint
    }
}

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
    /// [`Worker::on_http`](crate::Endpoint::on_http)); it needs a certificate from [`Worker::tls_pem`] or
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
            http2: false,
            endpoint: Endpoint::new(),
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

    /// The TLS configuration to serve: as given, with ALPN `h2` offered first when HTTP/2
    /// is on.
    #[cfg(feature = "tls")]
    fn tls_for_start(&self, config: &Arc<rustls::ServerConfig>) -> Arc<rustls::ServerConfig> {
        #[cfg(feature = "hyper")]
        if self.http2 && !config.alpn_protocols.iter().any(|p| p == b"h2") {
            let mut config = (**config).clone();
            config.alpn_protocols = h2::ALPN.iter().map(|p| p.to_vec()).collect();
            return Arc::new(config);
        }
        config.clone()
    }

    /// The number of worker threads (at least 1).
    pub fn count(&mut self, count: usize) -> &mut Self {
        self.count = count.max(1);
        self
    }

    /// Serves HTTP/2 too (off by default): TLS connections whose ALPN chooses `h2`, and
    /// cleartext connections that open with the HTTP/2 preface (prior knowledge, as
    /// `h2c` clients and proxies speak it), go to hyper's HTTP/2 server with extended
    /// CONNECT on, so browsers open WebSockets inside their HTTP/2 connection (RFC 8441)
    /// and load `on_http`'s pages over it; HTTP/1.1 keeps the server's own path, on the
    /// same port. The TLS configuration gets ALPN `h2, http/1.1` (a configuration of your
    /// own from [`Worker::tls_config`] too, unless it names `h2` already). Browsers speak
    /// HTTP/2 over TLS only. The HTTP/1.1 `Upgrade: h2c` dance is not offered.
    /// Backpressure holds over HTTP/2 as over HTTP/1.1: a stream's bytes wait in the
    /// connection's send buffer, seen by `buffered_amount`, `on_buffer_full` and the hard
    /// limit.
    #[cfg(feature = "hyper")]
    pub fn http2(&mut self, on: bool) -> &mut Self {
        self.http2 = on;
        self
    }

    /// Called on each worker thread when it starts, with the worker's id (0-based).
    pub fn on_worker_start(&mut self, f: impl Fn(usize) + Send + Sync + 'static) -> &mut Self {
        self.endpoint.callbacks.on_worker_start = Some(Box::new(f));
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
            (Some(config), _) => Some(tokio_rustls::TlsAcceptor::from(self.tls_for_start(config))),
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
        let counters = self.endpoint.metrics.start(listeners.len());
        let hub = self.endpoint.hub.clone();
        let (stop, stopped) = watch::channel(false);
        let mut ctx = ServerContext::new(
            self.endpoint,
            counters,
            stopped.clone(),
            #[cfg(feature = "tls")]
            tls,
        );
        ctx.http2 = self.http2;
        let ctx = Arc::new(ctx);
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
    /// connections, close 1001 to every client, up to [`Worker::shutdown_timeout`](crate::Endpoint::shutdown_timeout) for the closing handshakes.
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

    /// The server's [`Hub`] (see [`Worker::hub`](crate::Endpoint::hub)).
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

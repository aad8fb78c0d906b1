//! An [`Endpoint`] serving connections that something else accepted: any stream (a Unix
//! socket, a stream a proxy hands over, an in-memory duplex), on the caller's tokio
//! runtime, with the graceful shutdown that covers them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use wsworker_proto::CloseCode;

use super::ServerContext;
use super::accept;
use super::endpoint::Endpoint;
use super::refusal::Refusal;
use super::registry::Connections;
use crate::hub::Hub;
use crate::metrics::{Metrics, Rejection};

/// The worker id a service's connections carry.
pub(super) const SERVICE_WORKER: usize = 0;

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Serving,
    /// [`Service::shutdown`] was called: new requests get 503, open connections were asked
    /// to close with 1001.
    Stopping,
    /// The shutdown timeout passed: the connections left are dropped (each reported closed,
    /// 1006).
    Aborting,
}

/// An [`Endpoint`] serving connections accepted elsewhere, on the caller's tokio runtime:
/// cheap to clone, one per application (the state an axum router or a hyper service
/// holds).
///
/// ```
/// use wsworker::Endpoint;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut endpoint = Endpoint::new();
/// endpoint.on_message(|conn, msg| {
///     conn.send(msg)?;
///     Ok(())
/// });
/// let service = endpoint.service();
///
/// // Any stream will do: here one end of an in-memory pipe, the client at the other.
/// let (server_io, mut client_io) = tokio::io::duplex(4096);
/// tokio::spawn(service.serve(server_io, None));
///
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// client_io
///     .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
///     .await
///     .unwrap();
/// let mut head = [0u8; 12];
/// client_io.read_exact(&mut head).await.unwrap();
/// assert_eq!(&head, b"HTTP/1.1 101");
///
/// // Stop taking connections, close every open one with 1001, wait for them.
/// service.shutdown().await;
/// # }
/// ```
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Arc<ServerContext>,
    metrics: Metrics,
    /// Every connection served, from its first byte to its end.
    tasks: TaskTracker,
    state: watch::Sender<State>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("connections", &self.inner.tasks.len())
            .field("state", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

/// Runs `connection` until it ends or the shutdown times out (dropping a driver reports its
/// connection's end, 1006, and balances the counters).
async fn until_aborted(inner: &Inner, connection: impl Future<Output = ()>) {
    let mut state = inner.state.subscribe();
    tokio::select! {
        () = connection => {}
        _ = state.wait_for(|s| *s == State::Aborting) => {}
    }
}

impl Service {
    pub(super) fn new(endpoint: Endpoint) -> Self {
        let metrics = endpoint.metrics.clone();
        let counters = metrics.start(1);
        // No listeners to stop: the service's own state says when it stops.
        let (_, never) = watch::channel(false);
        let ctx = Arc::new(ServerContext::new(
            endpoint,
            counters,
            never,
            #[cfg(feature = "tls")]
            None,
        ));
        Self {
            inner: Arc::new(Inner {
                ctx,
                metrics,
                tasks: TaskTracker::new(),
                state: watch::Sender::new(State::Serving),
            }),
        }
    }

    /// Serves one connection over `io`, as the standalone server serves a TCP connection:
    /// reads the opening request (within the handshake timeout and the header size limit),
    /// answers it (101, plain HTTP through `on_http`, or a refusal with its status), then
    /// runs the WebSocket connection to its end. `remote_addr` is what
    /// [`Connection::remote_addr`](super::Connection::remote_addr) reports (`None` for a
    /// stream with no IP address: a Unix socket, a pipe).
    ///
    /// Spawn the future (it is `Send`) or await it; it resolves when the connection is over.
    /// After [`shutdown`](Self::shutdown) a new request gets `503 Service Unavailable`.
    pub fn serve<S>(
        &self,
        io: S,
        remote_addr: Option<SocketAddr>,
    ) -> impl Future<Output = ()> + Send + use<S>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let inner = self.inner.clone();
        self.inner.tasks.track_future(async move {
            let ctx = &inner.ctx;
            let counters = &ctx.counters[SERVICE_WORKER];
            let mut io = io;
            if *inner.state.borrow() != State::Serving {
                let response = Refusal::of(Rejection::ShuttingDown).counted(counters);
                return accept::refuse(&mut io, &response).await;
            }
            let Some(pending) = counters.begin_handshake(ctx.settings.max_pending_handshakes)
            else {
                return;
            };
            let deadline = Instant::now() + ctx.settings.handshake_timeout;
            let head = bytes::BytesMut::new();
            let opened = accept::open(io, head, remote_addr, SERVICE_WORKER, ctx, deadline).await;
            drop(pending);
            if let Some(opened) = opened {
                until_aborted(&inner, opened.driver(SERVICE_WORKER, ctx)).await;
            }
        })
    }

    /// The context the service's connections share.
    #[cfg(feature = "hyper")]
    pub(super) fn context(&self) -> &ServerContext {
        &self.inner.ctx
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    #[cfg(feature = "hyper")]
    pub(super) fn is_stopping(&self) -> bool {
        *self.inner.state.borrow() != State::Serving
    }

    /// Runs a connection's future on the current runtime, counted until it ends and
    /// dropped if the shutdown times out.
    #[cfg(feature = "hyper")]
    pub(super) fn spawn(&self, connection: impl Future<Output = ()> + Send + 'static) {
        let inner = self.inner.clone();
        self.inner
            .tasks
            .spawn(async move { until_aborted(&inner.clone(), connection).await });
    }

    /// Stops gracefully: new requests get 503 from now on, every open connection (and
    /// every one whose handshake ends later) is asked to close with 1001 `server shutting
    /// down`; the future resolves when the last connection is over. Connections that have
    /// not ended within the [shutdown timeout](Endpoint::shutdown_timeout) are then dropped
    /// (reported closed, 1006). Chain it after `axum::serve(..).with_graceful_shutdown(..)`,
    /// whose own wait does not cover upgraded connections.
    pub fn shutdown(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        inner.state.send_if_modified(|state| {
            let serving = *state == State::Serving;
            if serving {
                *state = State::Stopping;
            }
            serving
        });
        inner.ctx.hub.connections().close_worker(
            SERVICE_WORKER,
            CloseCode::GOING_AWAY,
            "server shutting down",
        );
        inner.tasks.close();
        async move {
            let timeout = inner.ctx.settings.shutdown_timeout();
            if tokio::time::timeout(timeout, inner.tasks.wait())
                .await
                .is_err()
            {
                inner.state.send_replace(State::Aborting);
                inner.tasks.wait().await;
            }
        }
    }

    /// Every open connection of this service.
    pub fn connections(&self) -> &Connections {
        self.inner.ctx.hub.connections()
    }

    /// The service's [`Hub`] (see [`Endpoint::hub`]).
    pub fn hub(&self) -> &Hub {
        &self.inner.ctx.hub
    }

    /// The service's counters (as one worker).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }
}

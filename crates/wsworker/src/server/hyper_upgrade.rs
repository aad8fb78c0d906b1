//! Embedding under hyper (feature `hyper`): an upgrade request that hyper received — an
//! HTTP/1.1 `GET` with `Upgrade: websocket`, or an HTTP/2 extended `CONNECT` with
//! `:protocol = websocket` (RFC 8441) — is decided as the standalone server decides, the
//! response is returned at once for hyper to write, and the connection runs on the caller's
//! runtime when hyper yields the upgraded stream. The application never awaits the stream
//! before returning the response, so the well-known deadlock of doing so cannot be written.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::BytesMut;
use hyper::ext::Protocol;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use wsworker_proto::handshake::Request;
use wsworker_proto::{Connection as Proto, Role};

use super::ServerContext;
use super::refusal::{self, Refusal};
use super::service::{SERVICE_WORKER, Service};
use super::upgrade;
use crate::driver::Driver;
use crate::error::Error;
use crate::metrics::Rejection;

impl Service {
    /// Answers a WebSocket upgrade request that hyper received (HTTP/1.1 or HTTP/2 extended
    /// CONNECT, RFC 8441): `101 Switching Protocols` (HTTP/1.1) or `200 OK` (HTTP/2) when
    /// the request passes everything the standalone server checks (origins, routes,
    /// `on_handshake`, limits), or the refusal with its status and reason. Return the
    /// response to hyper as it is (its body type is `String`; map it if yours differs):
    /// the connection starts on the current tokio runtime when hyper hands over the
    /// upgraded stream, and a failed upgrade is reported to `on_error`. `remote_addr` is
    /// what [`Connection::remote_addr`](super::Connection::remote_addr) reports.
    ///
    /// Serve HTTP/2 with `enable_connect_protocol()` on hyper's builder, or browsers will
    /// not offer WebSockets over it. A request that did not come through a hyper server
    /// (no upgrade to take over) gets 500.
    ///
    /// ```no_run
    /// use std::convert::Infallible;
    ///
    /// use hyper::server::conn::http1;
    /// use hyper::service::service_fn;
    /// use hyper_util::rt::TokioIo;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let mut endpoint = wsworker::Endpoint::new();
    /// endpoint.on_message(|conn, msg| {
    ///     conn.send(msg)?;
    ///     Ok(())
    /// });
    /// let service = endpoint.service();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// loop {
    ///     let (stream, peer) = listener.accept().await?;
    ///     let service = service.clone();
    ///     tokio::spawn(async move {
    ///         let serve = service_fn(move |request| {
    ///             let answer = service.upgrade(request, Some(peer));
    ///             async move { Ok::<_, Infallible>(answer.await) }
    ///         });
    ///         let _ = http1::Builder::new()
    ///             .serve_connection(TokioIo::new(stream), serve)
    ///             .with_upgrades()
    ///             .await;
    ///     });
    /// }
    /// # }
    /// ```
    pub fn upgrade<B>(
        &self,
        request: http::Request<B>,
        remote_addr: Option<SocketAddr>,
    ) -> impl Future<Output = http::Response<String>> + Send + use<B> {
        let (mut parts, body) = request.into_parts();
        // The body of an upgrade request is empty (or, over HTTP/2, the stream itself,
        // which hyper hands over as the upgraded IO).
        drop(body);
        let (protocol, on_upgrade) = take_upgrade(&mut parts);
        let service = self.clone();
        async move {
            let host = Host {
                ctx: service.context(),
                worker_id: SERVICE_WORKER,
                stopping: service.is_stopping(),
                spawn: &|connection| service.spawn(connection),
            };
            answer(host, parts, protocol, on_upgrade, remote_addr).await
        }
    }
}

/// Where an upgraded connection lives: a [`Service`]'s or a worker's.
pub(super) struct Host<'a> {
    pub(super) ctx: &'a ServerContext,
    pub(super) worker_id: usize,
    /// New requests get 503.
    pub(super) stopping: bool,
    /// Runs the connection (tracked for the shutdown).
    pub(super) spawn: &'a (dyn Fn(Pin<Box<dyn Future<Output = ()> + Send>>) + Sync),
}

/// A request's `:protocol` and hyper's handle on its upgrade, taken from its extensions.
pub(super) fn take_upgrade(
    parts: &mut http::request::Parts,
) -> (Option<String>, Option<OnUpgrade>) {
    let on_upgrade = parts.extensions.remove::<OnUpgrade>();
    let protocol = parts
        .extensions
        .get::<Protocol>()
        .map(|p| p.as_str().to_owned());
    (protocol, on_upgrade)
}

/// Decides about an upgrade request hyper received and answers it; the accepted
/// connection is handed to `host.spawn`, to start when hyper yields the upgraded stream.
pub(super) async fn answer(
    host: Host<'_>,
    parts: http::request::Parts,
    protocol: Option<String>,
    on_upgrade: Option<OnUpgrade>,
    remote_addr: Option<SocketAddr>,
) -> http::Response<String> {
    let version = parts.version;
    let ctx = host.ctx;
    let counters = &ctx.counters[host.worker_id];
    let refused = |response: Vec<u8>| refusal::to_http(&response, version);
    if host.stopping {
        return refused(Refusal::of(Rejection::ShuttingDown).counted(counters));
    }
    let mut request = match Request::from_parts(&parts, protocol.as_deref()) {
        Ok(request) => request,
        Err(error) => {
            counters.rejected(Rejection::of(&error));
            return error.to_http_response(version);
        }
    };
    let Some(routed) = ctx.route(request.path()) else {
        return refused(Refusal::of(Rejection::NotFound).counted(counters));
    };
    if let Err(error) = request.validate_upgrade() {
        counters.rejected(Rejection::of(&error));
        return error.to_http_response(version);
    }
    let deadline = Instant::now() + ctx.settings.handshake_timeout;
    let accepted = match upgrade::decide(&request, routed, ctx, counters, deadline).await {
        Ok(accepted) => accepted,
        Err(response) => return refused(response),
    };
    let response = request.accept_parts(
        accepted.protocol.as_deref(),
        accepted.extensions.as_deref(),
        &accepted.header_refs(),
    );
    let (Ok(response), Some(on_upgrade)) = (response, on_upgrade) else {
        tracing::warn!("an upgrade hyper cannot hand over, or an invalid on_handshake answer");
        return refused(Refusal::internal().counted(counters));
    };
    request.shrink_to_head();
    let config = accepted.config.clone();
    let handler = accepted.open(request, remote_addr, host.worker_id, ctx);
    let driver_config = ctx.settings.driver.clone();
    let counters = counters.clone();
    (host.spawn)(Box::pin(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let proto = Proto::with_buffer(Role::Server, config, BytesMut::new());
                Driver::new(TokioIo::new(upgraded), proto, handler, driver_config)
                    .with_counters(counters)
                    .await;
            }
            Err(error) => handler.failed(&Error::Io(io::Error::other(error))),
        }
    }));
    response.map(|()| String::new())
}

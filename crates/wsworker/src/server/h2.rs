//! HTTP/2 on the standalone server (`Worker::http2`, feature `hyper`): a TLS connection
//! whose ALPN chose `h2`, and a cleartext one that opens with the HTTP/2 preface (prior
//! knowledge, RFC 9113 §3.3), go to hyper's HTTP/2 server with extended CONNECT on
//! (RFC 8441). Each `CONNECT :protocol=websocket` stream becomes a connection of this
//! worker, decided and run as the HTTP/1.1 ones are; other requests go to `on_http`.
//! HTTP/1.1 keeps its own path.
//!
//! Flow control must not hide bytes from the send-buffer limits, where neither
//! `buffered_amount` nor `on_buffer_full` would see them. A reader that stops reading a
//! stream closes its window: h2 gives the stream no capacity beyond it, so the driver's
//! writes wait and its queue grows — soft limit, then hard limit — as over HTTP/1.1
//! (measured in tests/http2.rs: with a 64 KiB window, 128 KiB left the driver: the window,
//! and the write hyper's stream task holds while it waits for capacity). A peer that stops
//! reading the whole connection, its windows open, leaves the data in h2's send buffer
//! instead: [`MAX_SEND_BUF`] keeps that to what a socket's own buffer holds over HTTP/1.1
//! (hyper's default is 400 KiB a stream).
//!
//! When the driver gives up on a stalled stream (the hard limit's 1008), hyper keeps the
//! stream, and the write it holds, until the peer reads it, resets it or the connection
//! ends: hyper's upgraded stream has no way to reset it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;

use super::ServerContext;
use super::hyper_upgrade::{Host, answer, take_upgrade};
use super::refusal::{self, Refusal};
use crate::metrics::Rejection;

/// What hyper may hold of a stream's data beyond the peer's window.
const MAX_SEND_BUF: usize = 64 * 1024;
/// How much a client may send on a stream before its connection's driver reads it.
const STREAM_WINDOW: u32 = 1 << 20;
/// The same for all of a connection's streams together.
const CONNECTION_WINDOW: u32 = 8 << 20;

/// What a client speaking HTTP/2 with prior knowledge sends first (RFC 9113 §3.4): a
/// request line no HTTP/1.1 server accepts.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The ALPN protocol ids the server offers with HTTP/2 on.
#[cfg(feature = "tls")]
pub(crate) const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Whether the TLS handshake chose HTTP/2.
#[cfg(feature = "tls")]
pub(crate) fn negotiated(stream: &crate::tls::ServerStream) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// Serves one HTTP/2 connection (TLS, or cleartext from its preface on) until it ends; when
/// the worker stops, a GOAWAY turns new streams away while the WebSockets open on it close
/// (1001) and end.
pub(crate) async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    worker_id: usize,
    ctx: Arc<ServerContext>,
    tasks: TaskTracker,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .enable_connect_protocol()
        .max_send_buf_size(MAX_SEND_BUF)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    let service_ctx = ctx.clone();
    let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
        let (ctx, tasks) = (service_ctx.clone(), tasks.clone());
        async move {
            Ok::<_, std::convert::Infallible>(respond(request, peer, worker_id, &ctx, &tasks).await)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stop = ctx.stop.clone();
    tokio::select! {
        _ = connection.as_mut() => return,
        Ok(_) = stop.wait_for(|stop| *stop) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}

async fn respond(
    request: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
    worker_id: usize,
    ctx: &ServerContext,
    tasks: &TaskTracker,
) -> http::Response<Full<Bytes>> {
    let (mut parts, body) = request.into_parts();
    drop(body);
    if parts.method == http::Method::CONNECT {
        let (protocol, on_upgrade) = take_upgrade(&mut parts);
        let host = Host {
            ctx,
            worker_id,
            stopping: *ctx.stop.borrow(),
            spawn: &|connection| {
                tasks.spawn(connection);
            },
        };
        return answer(host, parts, protocol, on_upgrade, Some(peer))
            .await
            .map(|body| Full::new(Bytes::from(body)));
    }
    plain_http(&parts, worker_id, ctx).map(Full::new)
}

/// A request that is not a WebSocket: the route's `on_http`, as over HTTP/1.1.
fn plain_http(
    parts: &http::request::Parts,
    worker_id: usize,
    ctx: &ServerContext,
) -> http::Response<Bytes> {
    let counters = &ctx.counters[worker_id];
    let refused = |rejection| {
        refusal::to_http(&Refusal::of(rejection).counted(counters), parts.version).map(Bytes::from)
    };
    let Some(routed) = ctx.route(parts.uri.path()) else {
        return refused(Rejection::NotFound);
    };
    let Some(on_http) = &routed.callbacks.on_http else {
        return refused(Rejection::UpgradeRequired);
    };
    let head = parts.method == http::Method::HEAD;
    if !head && parts.method != http::Method::GET {
        return refused(Rejection::MethodNotAllowed);
    }
    let request = match wsworker_proto::handshake::Request::from_parts(parts, None) {
        Ok(request) => request,
        Err(error) => return error.to_http_response(parts.version).map(Bytes::from),
    };
    let answer = crate::shared::contain(|| on_http(&request)).unwrap_or_else(|panic| {
        tracing::warn!(%panic, "on_http panicked");
        super::HttpResponse::new(500, "internal error\n")
    });
    let mut response = http::Response::new(if head {
        Bytes::new()
    } else {
        answer.body.clone()
    });
    *response.status_mut() = http::StatusCode::from_u16(answer.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    if !response.headers().contains_key(http::header::CONTENT_TYPE) {
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

//! One accepted TCP connection, from its first byte to the driver: the opening handshake
//! within a size limit and a deadline, the origin allow-list, the connection limit, the
//! application's decision, plain HTTP for requests that do not ask for an upgrade, and a
//! status for everything refused (counted by reason in the metrics). With HTTP/2 on, a
//! plain connection whose first bytes are the HTTP/2 preface is handed to HTTP/2 instead.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
#[cfg(feature = "tls")]
use tokio::net::TcpStream;
use tokio::time::Instant;
#[cfg(feature = "tls")]
use tokio_util::task::TaskTracker;
use wsworker_proto::handshake::{Request, ServerHandshake, reject_response, response_head};
use wsworker_proto::{Connection as Proto, HandshakeError, Role};

use super::ServerContext;
use super::callbacks::{Callbacks, HttpResponse, ServerHandler};
use super::event_loop::{Handshaken, LoopStream};
use super::refusal::Refusal;
use super::upgrade;
use crate::driver::Driver;
use crate::metrics::{PendingHandshake, Rejection, WorkerCounters};
use crate::shared::contain;

/// The opening handshake of a plain connection, run by the worker's event loop on the
/// socket it accepted: the open connection's driver, the connection for HTTP/2 when it
/// opened with the HTTP/2 preface (and HTTP/2 is on), or `None` when the request was
/// answered otherwise or the client went away. The handshake counts as `pending` until it
/// ends, or its future is dropped.
pub(crate) fn open_plain(
    stream: LoopStream,
    peer: SocketAddr,
    worker_id: usize,
    ctx: Arc<ServerContext>,
    pending: PendingHandshake,
) -> impl Future<Output = Option<Handshaken>> + Send + 'static {
    let deadline = Instant::now() + ctx.settings.handshake_timeout;
    async move {
        #[cfg(feature = "hyper")]
        let (stream, head) = {
            let (mut stream, mut head) = (stream, BytesMut::new());
            if ctx.http2 && opens_http2(&mut stream, &mut head, deadline).await {
                drop(pending);
                let read = head;
                return Some(Handshaken::Http2 { stream, read, peer });
            }
            (stream, head)
        };
        #[cfg(not(feature = "hyper"))]
        let head = BytesMut::new();
        let opened = open(stream, head, Some(peer), worker_id, &ctx, deadline).await;
        drop(pending);
        let mut opened = opened?;
        opened.stream.keep_marks();
        Some(Handshaken::Open(
            opened.driver(worker_id, &ctx).with_loop_clock(),
        ))
    }
}

/// Reads into `head` until it shows whether the client speaks HTTP/2 with prior knowledge:
/// `true` once it holds the whole preface, `false` at the first byte that differs from it
/// (the first one, for an HTTP/1.1 request: the cost of this look on the fast path), or when
/// the client went away or the deadline passed first (which the HTTP/1.1 handshake, given
/// what was read, then finds out for itself).
#[cfg(feature = "hyper")]
async fn opens_http2<S>(stream: &mut S, head: &mut BytesMut, deadline: Instant) -> bool
where
    S: AsyncRead + Unpin,
{
    use super::h2::PREFACE;
    while head.len() < PREFACE.len() && PREFACE.starts_with(head) {
        head.reserve(1024);
        match tokio::time::timeout_at(deadline, stream.read_buf(head)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
    head.starts_with(PREFACE)
}

/// The TLS handshake, then the WebSocket one — both within the handshake timeout — in a
/// task of its own; the open connection then gets a task on `tasks`. Both handshakes count
/// as `pending`, which this task holds until they end (or it is dropped).
#[cfg(feature = "tls")]
pub(crate) async fn serve_tls(
    mut stream: TcpStream,
    peer: SocketAddr,
    worker_id: usize,
    ctx: Arc<ServerContext>,
    tasks: TaskTracker,
    pending: PendingHandshake,
) {
    let deadline = Instant::now() + ctx.settings.handshake_timeout;
    let Some(acceptor) = &ctx.tls else { return };
    if !starts_like_tls(&mut stream, deadline).await {
        let response = Refusal::of(Rejection::Tls).counted(&ctx.counters[worker_id]);
        return refuse(&mut stream, &response).await;
    }
    let Some(stream) = crate::tls::accept(acceptor, stream, peer, deadline).await else {
        return ctx.counters[worker_id].rejected(Rejection::Tls);
    };
    #[cfg(feature = "hyper")]
    if ctx.http2 && super::h2::negotiated(&stream) {
        drop(pending);
        return super::h2::serve(stream, peer, worker_id, ctx.clone(), tasks).await;
    }
    // The open connection gets a task of its own rather than going on in this one: a task
    // is as large as its future for as long as it lives, and this one's holds the
    // handshake's state, the context and the stream's slot besides the driver.
    let opened = open(
        stream,
        BytesMut::new(),
        Some(peer),
        worker_id,
        &ctx,
        deadline,
    )
    .await;
    drop(pending);
    if let Some(opened) = opened {
        tasks.spawn(opened.driver(worker_id, &ctx));
    }
}

/// Whether the client's first byte may open a TLS record: `false` for a letter, the start
/// of a plain HTTP request (an `http://` or `ws://` client on the TLS port), which gets a
/// 400 that says why. `true` when nothing could be read, so the TLS handshake fails as
/// usual.
#[cfg(feature = "tls")]
async fn starts_like_tls(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) => !first[0].is_ascii_alphabetic(),
        _ => true,
    }
}

/// An open connection, as its handshake leaves it.
pub(super) struct Opened<S> {
    stream: S,
    proto: Proto,
    handler: ServerHandler,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Opened<S> {
    /// The connection's driver, counted in its worker's metrics.
    pub(super) fn driver(self, worker_id: usize, ctx: &ServerContext) -> Driver<S, ServerHandler> {
        Driver::new(
            self.stream,
            self.proto,
            self.handler,
            ctx.settings.driver.clone(),
        )
        .with_counters(ctx.counters[worker_id].clone())
    }
}

/// The opening handshake, from `head`, the bytes of the request read already: the open
/// connection, or `None` when the request was answered otherwise (plain HTTP, a refusal) or
/// the client went away.
pub(super) async fn open<S>(
    mut stream: S,
    head: BytesMut,
    peer: Option<SocketAddr>,
    worker_id: usize,
    ctx: &ServerContext,
    deadline: Instant,
) -> Option<Opened<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let counters = &ctx.counters[worker_id];
    let read = tokio::time::timeout_at(
        deadline,
        read_request(&mut stream, head, ctx.settings.max_header_size),
    )
    .await;
    let (mut request, rest, read) = match read {
        Ok(Ok(Some(parts))) => parts,
        // The client went away before finishing its request.
        Ok(Ok(None)) | Ok(Err(Failure::Io)) => return None,
        Ok(Err(Failure::Handshake(error))) => {
            refuse(&mut stream, &Refusal::handshake(&error).counted(counters)).await;
            return None;
        }
        Err(_) => {
            let response = Refusal::of(Rejection::Timeout).counted(counters);
            refuse(&mut stream, &response).await;
            return None;
        }
    };

    let Some(routed) = ctx.route(request.path()) else {
        let response = Refusal::of(Rejection::NotFound).counted(counters);
        answer(&mut stream, &request, &response).await;
        return None;
    };
    if !request.is_websocket_upgrade() {
        serve_http(&mut stream, &request, routed.callbacks, counters).await;
        return None;
    }
    if let Err(error) = request.validate_upgrade() {
        let response = Refusal::handshake(&error).counted(counters);
        answer(&mut stream, &request, &response).await;
        return None;
    }
    let accepted = match upgrade::decide(&request, routed, ctx, counters, deadline).await {
        Ok(accepted) => accepted,
        Err(response) => {
            refuse(&mut stream, &response).await;
            return None;
        }
    };
    let response = match request.accept(
        accepted.protocol.as_deref(),
        accepted.extensions.as_deref(),
        &accepted.header_refs(),
    ) {
        Ok(response) => response,
        Err(error) => {
            tracing::warn!(%error, "on_handshake chose an invalid response");
            refuse(&mut stream, &Refusal::internal().counted(counters)).await;
            return None;
        }
    };
    // The 101 goes out with the driver's first write, after `on_connect` has run: whatever
    // the application does as the connection opens (join its rooms, bind its user) is done
    // before the client can see it open, and what it sends follows the 101 in one write.
    let mut proto = Proto::with_buffer(Role::Server, accepted.config.clone(), rest);
    if proto.queue_handshake_response(response.into()).is_err() {
        return None;
    }
    // The connection's bytes both ways, from the handshake on (the driver counts the 101
    // and the frames it writes, and the frames it reads after these).
    counters.received(read);
    // The connection keeps its request for its whole life: the head alone, its header
    // lines parsed again on the application's rare lookups (the handshake's own lookups,
    // above, used the offsets).
    request.shrink_to_head();
    let handler = accepted.open(request, peer, worker_id, ctx);
    Some(Opened {
        stream,
        proto,
        handler,
    })
}

enum Failure {
    Io,
    Handshake(HandshakeError),
}

/// What [`read_request`] read: the request, the bytes after it, and how many bytes that was
/// in all.
type RequestRead = (Request, BytesMut, usize);

/// Reads until the request head, which begins with `head`, is complete, or `None` when the
/// client closed first.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: BytesMut,
    max_size: usize,
) -> Result<Option<RequestRead>, Failure> {
    let mut handshake = ServerHandshake::with_max_size(max_size);
    let mut read = head.len();
    // Nothing searched yet: `head` is the buffer's start.
    *handshake.recv_buffer_mut() = head;
    loop {
        if read > 0
            && let Some((request, rest)) = handshake.poll_request().map_err(Failure::Handshake)?
        {
            return Ok(Some((request, BytesMut::from(rest), read)));
        }
        let buf = handshake.recv_buffer_mut();
        buf.reserve(1024);
        let n = stream.read_buf(buf).await.map_err(|_| Failure::Io)?;
        if n == 0 {
            return Ok(None);
        }
        read += n;
    }
}

async fn serve_http<S>(
    stream: &mut S,
    request: &Request,
    callbacks: &Callbacks,
    counters: &WorkerCounters,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let method = request.method().as_str();
    let response = match &callbacks.on_http {
        Some(cb) if method == "GET" || method == "HEAD" => {
            let response = contain(|| cb(request)).unwrap_or_else(|panic| {
                tracing::warn!(%panic, "on_http panicked");
                HttpResponse::new(500, "internal error\n")
            });
            let headers: Vec<(&str, &str)> = response
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            reject_response(response.status, &headers, &response.body)
                .or_else(|_| reject_response(500, &[], b"invalid response\n"))
                .unwrap_or_default()
        }
        Some(_) => Refusal::of(Rejection::MethodNotAllowed).counted(counters),
        None => Refusal::of(Rejection::UpgradeRequired).counted(counters),
    };
    answer(stream, request, &response).await;
}

/// Writes the final response to `request`: only its head to a `HEAD`, whose answer never
/// has a body (RFC 9110 §9.3.2), whatever its status.
async fn answer<S>(stream: &mut S, request: &Request, response: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let response = if request.method() == "HEAD" {
        response_head(response)
    } else {
        response
    };
    refuse(stream, response).await;
}

/// How long a final response may take to write: a client that sends a request and never
/// reads must not hold its connection (and a stopping worker) longer.
const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes a final response and closes the connection gracefully.
pub(super) async fn refuse<S>(stream: &mut S, response: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let written = tokio::time::timeout(RESPONSE_TIMEOUT, stream.write_all(response)).await;
    if matches!(written, Ok(Ok(()))) {
        let _ = stream.shutdown().await;
        // Drain what the client still sends (briefly) so closing does not reset the
        // connection before it has read the response. On the heap: a buffer here would
        // be part of every connection's task.
        let mut sink = vec![0u8; 1024];
        let drain = async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
    }
}

//! `bench --http2`: the echo run over WebSockets on HTTP/2 (RFC 8441), with the library's
//! client rather than the raw sockets of [`super::conn`] — HTTP/2 framing, HPACK and flow
//! control are not worth a second implementation in a load generator, and the client is
//! what an application would use.
//!
//! The `--conns` WebSockets are multiplexed in groups: each group of `--streams` (default
//! [`DEFAULT_STREAMS`]) shares one HTTP/2 connection, so a run opens
//! ⌈conns / streams⌉ HTTP/2 connections. HTTP/2 connections and WebSocket streams open at
//! most [`super::MAX_CONCURRENT_HANDSHAKES`] at a time, each within
//! [`CONNECT_TIMEOUT`]; the window, the drain and the close are bounded as in the
//! raw-socket run. Closed loop only: each WebSocket keeps `--inflight` messages
//! outstanding; every echo is compared with what was sent. permessage-deflate is not
//! offered and the idle keepalive is off, as in the raw-socket run.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use wsworker::client::Http2Connection;
use wsworker::{Message, WebSocket, WsEvent};

use super::conn::{CLOSE_TIMEOUT, CONNECT_TIMEOUT, DRAIN_TIMEOUT, Failure, Start, fail};
use super::frames::payload;
use super::stats::{ErrorKind, Local, Stats};

/// WebSockets per HTTP/2 connection by default: within the 100 concurrent streams RFC 9113
/// §6.5.2 recommends a server allows at least.
pub(super) const DEFAULT_STREAMS: u32 = 100;

/// Echoes a WebSocket counts before it flushes them into the shared stats (and at its end),
/// so that the progress line moves without a lock per echo.
const FLUSH_EVERY: u64 = 256;

/// What every WebSocket of the run does.
#[derive(Debug)]
pub(super) struct Http2Plan {
    /// The URL of the echo server (`ws://` for cleartext HTTP/2, `wss://` for TLS).
    pub(super) url: String,
    /// CA files trusted for `wss://`, besides the built-in roots.
    pub(super) ca: Vec<PathBuf>,
    pub(super) conns: usize,
    /// WebSockets per HTTP/2 connection.
    pub(super) streams: usize,
    pub(super) size: usize,
    pub(super) binary: bool,
    pub(super) inflight: usize,
}

impl Http2Plan {
    /// A builder for the HTTP/2 connection (its TLS settings and timeout).
    fn connection(&self) -> wsworker::WebSocketBuilder {
        let mut builder = WebSocket::builder(self.url.as_str()).connect_timeout(CONNECT_TIMEOUT);
        for ca in &self.ca {
            builder = builder.tls_ca_pem_file(ca);
        }
        builder
    }

    /// The message every WebSocket sends (and expects back).
    fn message(&self) -> Message {
        let bytes = payload(self.size, self.binary);
        if self.binary {
            Message::binary(bytes)
        } else {
            // ASCII letters only (`payload`).
            Message::text(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

/// Opens every group (an HTTP/2 connection and its WebSockets); returns the groups' tasks.
/// Each WebSocket says on `dialed` whether it opened.
pub(super) async fn dial_all(
    plan: Arc<Http2Plan>,
    dialed: mpsc::UnboundedSender<bool>,
    start: watch::Receiver<Option<Start>>,
    stats: Arc<Stats>,
) -> JoinSet<()> {
    let permits = Arc::new(Semaphore::new(super::MAX_CONCURRENT_HANDSHAKES));
    let message = plan.message();
    let mut groups = JoinSet::new();
    for first in (0..plan.conns).step_by(plan.streams.max(1)) {
        let members = first..(first + plan.streams).min(plan.conns);
        groups.spawn(group(
            members,
            Arc::clone(&plan),
            message.clone(),
            Arc::clone(&permits),
            dialed.clone(),
            start.clone(),
            Arc::clone(&stats),
        ));
    }
    groups
}

/// One HTTP/2 connection and the WebSockets `members` on it, to their end. A connection
/// that cannot be made fails each of its WebSockets.
async fn group(
    members: std::ops::Range<usize>,
    plan: Arc<Http2Plan>,
    message: Message,
    permits: Arc<Semaphore>,
    dialed: mpsc::UnboundedSender<bool>,
    start: watch::Receiver<Option<Start>>,
    stats: Arc<Stats>,
) {
    let Ok(permit) = permits.acquire().await else {
        return;
    };
    let connected = Http2Connection::connect_with(plan.connection()).await;
    drop(permit);
    let h2 = match connected {
        Ok(h2) => h2,
        Err(error) => {
            let kind = match error {
                wsworker::Error::Timeout(_) => ErrorKind::Timeout,
                _ => ErrorKind::Connect,
            };
            let detail = format!("http/2 connection: {}", error_chain(&error));
            for index in members {
                stats.error(index, kind, &detail);
                let _ = dialed.send(false);
            }
            return;
        }
    };
    let mut sockets = JoinSet::new();
    for index in members {
        let (h2, plan, message, permits) = (
            h2.clone(),
            Arc::clone(&plan),
            message.clone(),
            Arc::clone(&permits),
        );
        let (dialed, mut start, stats) = (dialed.clone(), start.clone(), Arc::clone(&stats));
        sockets.spawn(async move {
            let opened = open(&h2, &plan, &permits).await;
            let ws = match opened {
                Ok(ws) => ws,
                Err(failure) => {
                    stats.error(index, failure.kind, failure.detail);
                    let _ = dialed.send(false);
                    return;
                }
            };
            let _ = dialed.send(true);
            let mut local = Local::default();
            let result = session(index, &ws, &plan, &message, &mut start, &stats, &mut local).await;
            stats.flush(index, &mut local);
            if let Err(failure) = result {
                stats.error(index, failure.kind, failure.detail);
            }
        });
    }
    // The connection is kept by its WebSockets from here on.
    drop(h2);
    while sockets.join_next().await.is_some() {}
}

/// Opens one WebSocket on `h2`, holding a permit while it opens.
async fn open(
    h2: &Http2Connection,
    plan: &Http2Plan,
    permits: &Semaphore,
) -> Result<WebSocket, Failure> {
    let Ok(_permit) = permits.acquire().await else {
        return Err(fail(ErrorKind::Connect, "the run is over"));
    };
    let builder = h2
        .websocket(plan.url.as_str())
        .keepalive(None)
        .connect_timeout(CONNECT_TIMEOUT)
        .max_message_size(plan.size.max(1 << 20));
    #[cfg(feature = "deflate")]
    let builder = builder.permessage_deflate(None);
    builder.connect().await.map_err(|error| {
        let kind = match error {
            wsworker::Error::Timeout(_) => ErrorKind::Timeout,
            wsworker::Error::Http2(wsworker::Http2Error::Closed) => ErrorKind::Connect,
            _ => ErrorKind::Handshake,
        };
        fail(kind, format!("websocket stream: {}", error_chain(&error)))
    })
}

/// Everything after the open: waits for the window, runs it, drains and closes.
async fn session(
    index: usize,
    ws: &WebSocket,
    plan: &Http2Plan,
    message: &Message,
    start: &mut watch::Receiver<Option<Start>>,
    stats: &Stats,
    local: &mut Local,
) -> Result<(), Failure> {
    let window = loop {
        if let Some(window) = *start.borrow_and_update() {
            break window;
        }
        tokio::select! {
            changed = start.changed() => if changed.is_err() {
                // The run was called off.
                let _ = ws.close(1000, "");
                return Ok(());
            },
            event = ws.next() => match event {
                Some(WsEvent::Message(_)) => {
                    local.mismatch(index, || "a message came while none was outstanding");
                }
                other => return Err(ended(other)),
            },
        }
    };
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(plan.inflight);
    let send = |sent_at: &mut VecDeque<Instant>, now: Instant| {
        sent_at.push_back(now);
        ws.send(message.clone())
            .map_err(|error| fail(ErrorKind::Protocol, format!("send failed: {error}")))
    };
    let now = Instant::now();
    for _ in 0..plan.inflight {
        send(&mut sent_at, now)?;
    }
    let drain_by = window.stop + DRAIN_TIMEOUT;
    let mut echoes = 0u64;
    loop {
        let running = Instant::now() < window.stop;
        if !running && sent_at.is_empty() {
            break;
        }
        let deadline = if running { window.stop } else { drain_by };
        tokio::select! {
            biased;
            event = ws.next() => match event {
                Some(WsEvent::Message(echo)) => {
                    let now = Instant::now();
                    match sent_at.pop_front() {
                        None => local.mismatch(index, || "a message came while none was outstanding"),
                        Some(_) if echo != *message => local.mismatch(index, || {
                            format!("an echo of {} bytes differs from the message sent", echo.len())
                        }),
                        Some(sent) => local.echo(now.saturating_duration_since(sent), now < window.stop),
                    }
                    echoes += 1;
                    if echoes.is_multiple_of(FLUSH_EVERY) {
                        stats.flush(index, local);
                    }
                    if now < window.stop {
                        send(&mut sent_at, now)?;
                    }
                }
                other => return Err(ended(other)),
            },
            () = sleep_until(deadline) => if !running {
                let outstanding = sent_at.len();
                let _ = ws.close(1000, "");
                return Err(fail(
                    ErrorKind::Timeout,
                    format!(
                        "{outstanding} echoes still outstanding {} s after the end",
                        DRAIN_TIMEOUT.as_secs()
                    ),
                ));
            },
        }
    }
    let _ = ws.close(1000, "");
    let closed = timeout(CLOSE_TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(WsEvent::Close(info)) => return Some(info),
                None => return None,
                // Late echoes of a drain that timed out were counted already.
                Some(_) => {}
            }
        }
    })
    .await;
    match closed {
        Ok(Some(info)) if info.was_clean => Ok(()),
        Ok(Some(info)) => Err(fail(
            ErrorKind::Protocol,
            format!("the close was not clean: {} {:?}", info.code, info.reason),
        )),
        Ok(None) => Err(fail(
            ErrorKind::Protocol,
            "the connection ended without its close",
        )),
        Err(_) => Err(fail(
            ErrorKind::Timeout,
            format!(
                "no close frame from the server within {} s of ours",
                CLOSE_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// The failure an event other than a message means, before our close.
fn ended(event: Option<WsEvent>) -> Failure {
    match event {
        Some(WsEvent::Close(info)) => super::conn::server_closed(
            Some(info.code.as_u16()).filter(|_| info.was_clean),
            &info.reason,
        ),
        Some(WsEvent::Error(error)) => fail(ErrorKind::Protocol, error_chain(&error)),
        None => fail(ErrorKind::Protocol, "the server ended the connection"),
        Some(other) => fail(ErrorKind::Protocol, format!("unexpected event {other:?}")),
    }
}

/// An error and its sources, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! HTTP/2 for the tests: hyper's own HTTP/2 client, in cleartext with prior knowledge,
//! opening WebSockets with extended CONNECT (RFC 8441) and speaking them with the protocol
//! core; and a server that floods a client on request, for the send-buffer limits.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper::ext::Protocol;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use wsworker::server::OverflowPolicy;
use wsworker::{CloseInfo, Worker};
use wsworker_proto::{Config, Connection, Event};

use super::WAIT;

/// What a client speaking HTTP/2 with prior knowledge sends first.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 connection of hyper's client.
pub struct H2Client {
    send: SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
}

impl H2Client {
    /// Connects to `addr` speaking HTTP/2 at once (prior knowledge), with `window` as the
    /// receive window of each stream: what the server may send on a stream nobody reads.
    pub async fn connect(addr: SocketAddr, window: u32) -> Self {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(window)
            .handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(connection);
        Self { send, addr }
    }

    /// `method path` with `protocol`, and the response's head.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        protocol: Option<&'static str>,
    ) -> Response<Incoming> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("sec-websocket-version", "13");
        if let Some(protocol) = protocol {
            request = request.extension(Protocol::from_static(protocol));
        }
        let request = request.body(Empty::new()).unwrap();
        timeout(WAIT, self.send.send_request(request))
            .await
            .expect("no answer")
            .unwrap()
    }

    /// `GET path`: the status and the body.
    pub async fn get(&mut self, path: &str) -> (StatusCode, Bytes) {
        let response = self.request(Method::GET, path, None).await;
        let status = response.status();
        let body = timeout(WAIT, response.into_body().collect())
            .await
            .expect("the body did not end")
            .unwrap()
            .to_bytes();
        (status, body)
    }

    /// `CONNECT :protocol=websocket` to `path`: the WebSocket, or the status of the refusal.
    pub async fn websocket(&mut self, path: &str) -> Result<H2Socket, StatusCode> {
        let response = self.request(Method::CONNECT, path, Some("websocket")).await;
        if response.status() != StatusCode::OK {
            return Err(response.status());
        }
        let upgraded = timeout(WAIT, hyper::upgrade::on(response))
            .await
            .expect("no upgraded stream")
            .unwrap();
        Ok(H2Socket {
            io: TokioIo::new(upgraded),
            conn: Connection::new(wsworker_proto::Role::Client, Config::default()),
        })
    }
}

/// A WebSocket on an HTTP/2 stream, spoken with the protocol core. Nothing is read from the
/// stream but by [`H2Socket::next_event`]: a test that stops calling it stops reading, and
/// the stream's window stays closed.
pub struct H2Socket {
    io: TokioIo<Upgraded>,
    pub conn: Connection,
}

impl H2Socket {
    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) {
        self.conn.send_text(text.to_owned()).unwrap();
        self.flush().await;
    }

    /// Writes what the connection queued.
    pub async fn flush(&mut self) {
        while let Some(chunk) = self.conn.poll_transmit() {
            timeout(WAIT, self.io.write_all(&chunk))
                .await
                .expect("write timed out")
                .unwrap();
        }
    }

    /// The next event (answering what the protocol answers), `None` once the stream ended
    /// or failed; fails after [`WAIT`].
    pub async fn next_event(&mut self) -> Option<Event> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match self.conn.poll_event() {
                Ok(Some(event)) => {
                    self.flush().await;
                    return Some(event);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            let n = timeout(WAIT, self.io.read(&mut buf))
                .await
                .expect("timed out waiting for an event")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.conn.receive(&buf[..n]);
        }
    }
}

/// The size of each message of a flood.
pub const FLOOD_MESSAGE: usize = 64 * 1024;

/// What a flooding server saw, in order.
#[derive(Debug)]
pub enum Flooded {
    /// `on_buffer_full`, with the connection's `buffered_amount` then.
    Full(usize),
    /// The flood sent (or had dropped) its last message.
    Done,
    /// `on_close`.
    Closed(CloseInfo),
}

/// A worker serving HTTP/2 too whose answer to the text `flood N` is N bytes in
/// [`FLOOD_MESSAGE`]-byte binary messages, sent one per turn of its runtime (a task that
/// yields after each): the driver writes what the client's window lets out between two,
/// so they pile up in the send buffer only when the client stops reading. With the send
/// buffer limits `soft` and `hard` and `policy` at the hard limit.
pub fn flooding_worker(
    policy: OverflowPolicy,
    soft: usize,
    hard: usize,
) -> (Worker, mpsc::Receiver<Flooded>) {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker
        .http2(true)
        .send_buffer_limits(soft, hard)
        .overflow_policy(policy)
        .close_timeout(Duration::from_millis(500));
    let (tx, rx) = mpsc::channel();
    let (full, done, closed) = (tx.clone(), tx.clone(), tx);
    worker.on_message(move |conn, msg| {
        let bytes: usize = msg
            .as_text()
            .and_then(|text| text.strip_prefix("flood "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let (conn, done) = (conn.clone(), done.clone());
        tokio::spawn(async move {
            for _ in 0..bytes / FLOOD_MESSAGE {
                if conn.send(vec![7u8; FLOOD_MESSAGE]).is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let _ = done.send(Flooded::Done);
        });
        Ok(())
    });
    worker.on_buffer_full(move |conn| {
        let _ = full.send(Flooded::Full(conn.buffered_amount()));
    });
    worker.on_close(move |_, info| {
        let _ = closed.send(Flooded::Closed(info.clone()));
    });
    (worker, rx)
}

/// The next thing the flooding server saw, within [`WAIT`].
pub fn next_flooded(seen: &mpsc::Receiver<Flooded>) -> Flooded {
    seen.recv_timeout(WAIT)
        .expect("the flooding server saw nothing more")
}

/// What a flooding server must see first of a client that stopped reading:
/// `on_buffer_full`, with more than `soft` bytes queued and no more than `hard`.
fn full(seen: &mpsc::Receiver<Flooded>, soft: usize, hard: usize) {
    let Flooded::Full(buffered) = next_flooded(seen) else {
        panic!("on_buffer_full first");
    };
    assert!(
        buffered > soft && buffered <= hard,
        "{buffered} bytes queued"
    );
}

/// With [`OverflowPolicy::Close`]: `on_buffer_full`, then the close with 1008 at the hard
/// limit, counted, nothing dropped.
pub fn full_then_1008(
    seen: &mpsc::Receiver<Flooded>,
    metrics: &wsworker::Metrics,
    soft: usize,
    hard: usize,
) {
    full(seen, soft, hard);
    let closed = loop {
        match next_flooded(seen) {
            Flooded::Closed(info) => break info,
            Flooded::Done => {}
            other => panic!("expected the close, got {other:?}"),
        }
    };
    assert_eq!(closed.code, wsworker::CloseCode::POLICY_VIOLATION);
    let snapshot = metrics.snapshot();
    let group = wsworker::server::CloseCodeGroup::of(1008);
    assert_eq!(snapshot.closes.get(&group), Some(&1));
    assert_eq!(snapshot.total().dropped_messages, 0);
}

/// With [`OverflowPolicy::DropNew`]: `on_buffer_full`, then the end of a flood of `flood`
/// bytes with messages dropped at the hard limit and the connection open. Returns how many
/// messages were queued.
pub fn full_then_drops(
    seen: &mpsc::Receiver<Flooded>,
    metrics: &wsworker::Metrics,
    soft: usize,
    hard: usize,
    flood: usize,
) -> u64 {
    full(seen, soft, hard);
    assert!(
        matches!(next_flooded(seen), Flooded::Done),
        "the flood ends, the connection open"
    );
    let snapshot = metrics.snapshot().total();
    assert!(snapshot.dropped_messages > 0, "nothing dropped");
    assert_eq!(
        snapshot.messages_sent + snapshot.dropped_messages,
        (flood / FLOOD_MESSAGE) as u64
    );
    snapshot.messages_sent
}

/// Runs `interop/python/h2_check.py` (Python's `h2` on a plain socket) against `url`: it
/// must pass every check.
pub fn python_h2_check(url: &str) {
    let mut command = std::process::Command::new(super::python());
    command
        .arg(super::repo_root().join("interop/python/h2_check.py"))
        .arg(url);
    let output = super::run_to_end(command, "python h2_check", Duration::from_secs(30));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in ["settings", "connect", "echo", "501", "close"] {
        assert!(said.contains(&format!("ok {check}\n")), "{check}: {said}");
    }
}

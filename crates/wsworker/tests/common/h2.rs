//! HTTP/2 for the tests: hyper's own HTTP/2 client, in cleartext with prior knowledge,
//! opening WebSockets with extended CONNECT (RFC 8441) and speaking them with the protocol
//! core.

use std::net::SocketAddr;

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

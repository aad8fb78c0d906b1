//! Test helpers: a blocking client built on the protocol core alone, so the server is tested
//! against code that shares nothing with its runtime.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "hyper")]
pub mod h2;
pub mod pki;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::timeout;

use wsworker::{CloseInfo, Message, RunningServer, WebSocket, Worker, WsEvent};
use wsworker_proto::handshake::{ClientHandshake, Response};
use wsworker_proto::{Config, Connection, Event, Role};

/// A blocking WebSocket client over a std `TcpStream`.
pub struct RawClient {
    pub stream: TcpStream,
    pub conn: Connection,
    pub response: Response,
}

impl RawClient {
    pub fn connect(addr: SocketAddr, path: &str, protocols: &[&str]) -> Result<Self, String> {
        let url = format!("ws://{addr}{path}");
        let mut handshake = ClientHandshake::new(&url)
            .map_err(|e| e.to_string())?
            .with_protocols(protocols.iter().copied())
            .map_err(|e| e.to_string())?;
        let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&handshake.request_bytes())
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed during handshake".into());
            }
            match handshake.receive(&buf[..n]) {
                Ok(None) => {}
                Ok(Some((response, rest))) => {
                    let mut conn = Connection::new(Role::Client, Config::default());
                    conn.receive(&rest);
                    return Ok(Self {
                        stream,
                        conn,
                        response,
                    });
                }
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    }

    pub fn flush(&mut self) {
        while let Some(chunk) = self.conn.poll_transmit() {
            self.stream.write_all(&chunk).unwrap();
        }
    }

    /// Writes what the connection queued, and then `extra`, with one write, so that the
    /// server finds it all together.
    pub fn flush_in_one_write(&mut self, extra: &[u8]) {
        let mut bytes = Vec::new();
        while let Some(chunk) = self.conn.poll_transmit() {
            bytes.extend_from_slice(&chunk);
        }
        bytes.extend_from_slice(extra);
        self.stream.write_all(&bytes).unwrap();
    }

    /// Every event until the server's close frame (included), the end of the socket or an
    /// error.
    pub fn events_until_close(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(Ok(event)) = self.next_event() {
            let last = matches!(event, Event::Close(_));
            events.push(event);
            if last {
                break;
            }
        }
        events
    }

    /// The next event, reading as needed; `None` when the socket closed.
    pub fn next_event(&mut self) -> Option<Result<Event, wsworker_proto::Error>> {
        loop {
            match self.conn.poll_event() {
                Ok(Some(event)) => {
                    self.flush();
                    return Some(Ok(event));
                }
                Ok(None) => {}
                Err(e) => {
                    self.flush();
                    return Some(Err(e));
                }
            }
            let mut buf = [0u8; 16384];
            let n = self.stream.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            self.conn.receive(&buf[..n]);
        }
    }

    /// Whether the server closed the TCP connection (reads EOF) within the read timeout.
    pub fn reads_eof(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }
}

/// Marks the end of what a test sent to a room: [`texts_until_end`] reads up to it.
pub const END: &str = "--end--";

/// Connects a [`RawClient`] at `path` and waits until its connection has opened, as the
/// server's `on_connect` reports its id on `opened`; the client and the id.
pub fn connect_reported(
    server: &RunningServer,
    opened: &std::sync::mpsc::Receiver<u64>,
    path: &str,
) -> (RawClient, u64) {
    let client = RawClient::connect(server.local_addr(), path, &[]).unwrap();
    let id = opened.recv_timeout(WAIT).expect("on_connect");
    (client, id)
}

/// The texts a client receives up to [`END`].
pub fn texts_until_end(client: &mut RawClient) -> Vec<String> {
    let mut texts = Vec::new();
    loop {
        match client.next_event() {
            Some(Ok(Event::Message(Message::Text(text)))) if text.as_str() == END => {
                return texts;
            }
            Some(Ok(Event::Message(Message::Text(text)))) => texts.push(text.to_string()),
            Some(Ok(_)) => {}
            other => panic!("the connection ended before the end mark: {other:?}"),
        }
    }
}

/// Sends raw bytes and returns everything the server answers until it closes.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits (up to 10 s) until the server's workers count `n` handshakes in progress.
pub fn wait_pending_handshakes(metrics: &wsworker::Metrics, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending = metrics.snapshot().total().handshakes_pending;
        if pending == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} handshakes in progress, not {n}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How many connections the server closed as it accepted them, for want of a place among
/// the handshakes in progress.
pub fn rejected_as_pending(metrics: &wsworker::Metrics) -> Option<u64> {
    metrics
        .snapshot()
        .rejections
        .get(&wsworker::server::Rejection::Pending)
        .copied()
}

/// Whether the server closed `stream` without answering (EOF or reset), within 10 s.
pub fn closed_without_a_word(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

/// The hello server on a free loopback port: `hello <text>` for text, the bytes of
/// `hello ` and the data for binary.
pub fn hello_worker() -> Worker {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.on_message(|conn, msg| {
        match msg {
            Message::Text(text) => conn.send(format!("hello {text}"))?,
            Message::Binary(data) => conn.send([&b"hello "[..], &data].concat())?,
        }
        Ok(())
    });
    worker
}

/// The bound on every wait in the async tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The interop venv's Python (`bash interop/setup.sh` makes it).
pub fn python() -> PathBuf {
    let venv = std::env::var_os("INTEROP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".interop-venv"));
    venv.join("bin/python")
}

/// Runs `command` to its end, for at most `limit` (then kills it and panics, with what it
/// said), with its stdout and stderr read while it runs: a peer that writes more than a pipe
/// holds (64 KiB) would otherwise block on its write and never exit.
pub fn run_to_end(mut command: Command, what: &str, limit: Duration) -> Output {
    fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            out
        })
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start ({e}); run `bash interop/setup.sh`"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let said = |pipe: std::thread::JoinHandle<Vec<u8>>| {
                String::from_utf8_lossy(&pipe.join().unwrap_or_default()).into_owned()
            };
            panic!(
                "{what}: still running after {limit:?}; it said:\n{}{}",
                said(stdout),
                said(stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// A peer's echo server (`interop/`), killed (by its PID) when dropped. The peers exit when
/// their stdin closes, so it stays piped while this lives.
pub struct PeerServer {
    child: Child,
    pub port: u16,
}

impl PeerServer {
    pub fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the peer server; run `bash interop/setup.sh`");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("LISTENING ") {
                    let _ = tx.send(port.trim().parse::<u16>().ok());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .ok()
            .flatten()
            .expect("the peer server did not say where it listens");
        Self { child, port }
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops a server from async code, bounded.
pub async fn stop(server: RunningServer) {
    timeout(WAIT, tokio::task::spawn_blocking(move || server.shutdown()))
        .await
        .expect("server shutdown timed out")
        .unwrap();
}

/// The next event, failing after [`WAIT`] or when the stream ended.
pub async fn event(ws: &WebSocket) -> WsEvent {
    timeout(WAIT, ws.next())
        .await
        .expect("timed out waiting for an event")
        .expect("the stream ended")
}

/// The next event, which must be a message.
pub async fn message(ws: &WebSocket) -> Message {
    match event(ws).await {
        WsEvent::Message(message) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The close event (messages before it are skipped); checks that the stream ends after it.
pub async fn closed(ws: &WebSocket) -> CloseInfo {
    loop {
        match event(ws).await {
            WsEvent::Close(info) => {
                let end = timeout(WAIT, ws.next()).await.unwrap();
                assert!(end.is_none(), "the stream ends after close");
                return info;
            }
            WsEvent::Message(_) | WsEvent::Open => {}
            other => panic!("expected the close, got {other:?}"),
        }
    }
}

/// Connects to `url`, sends `tom` and checks the `hello tom` answer.
pub async fn say_hello(url: &str) -> WebSocket {
    let ws = WebSocket::connect(url, Vec::<String>::new()).await.unwrap();
    ws.send("tom").unwrap();
    assert_eq!(message(&ws).await, Message::from("hello tom"));
    ws
}

/// The remote address of every connection `endpoint` opens, as `on_connect` sees it.
pub fn record_peers(endpoint: &mut wsworker::Endpoint) -> Arc<Mutex<Vec<Option<SocketAddr>>>> {
    let peers = Arc::new(Mutex::new(Vec::new()));
    let seen = peers.clone();
    endpoint.on_connect(move |conn| seen.lock().unwrap().push(conn.remote_addr()));
    peers
}

/// A child process killed (by its PID) and reaped when dropped.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Serves `app` with axum on a loopback port (HTTP/1.1 and cleartext HTTP/2, the client's
/// address in `ConnectInfo`); its address.
#[cfg(feature = "axum")]
pub async fn axum_serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

//! Test helpers: a blocking client built on the protocol core alone, so the server is tested
//! against code that shares nothing with its runtime.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use wsworker::{Message, Worker};
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

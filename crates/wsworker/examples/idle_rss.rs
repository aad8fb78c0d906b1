//! Memory per idle connection, as a server pays it: opens N client connections to a running
//! echo server (`wsworker serve --mode echo --count 1`), optionally exchanges one message on
//! each, and reports how much the server's resident memory (VmRSS of its PID, Linux) grew,
//! per connection.
//!
//! ```text
//! wsworker serve websocket://127.0.0.1:9001 --mode echo --count 1 &
//! cargo run --release --example idle_rss -- PID ws://127.0.0.1:9001/ 1000 [MODE] [MESSAGE_BYTES] [MESSAGES]
//! ```
//!
//! MODE: `plain` (no permessage-deflate), `deflate` (the client's default offer,
//! `permessage-deflate; client_max_window_bits`: the server answers with its own defaults),
//! `no-context-takeover` (both sides asked to reset their windows after each message),
//! `window-12` (12-bit windows asked for both ways). With MESSAGE_BYTES > 0 each connection
//! echoes MESSAGES (default 1) text messages of that size first — JSON chat lines, as
//! compressible as a chat's traffic, different in each message — so a compressing server
//! allocates its compressor and decompressor (and, with more messages, fills their windows),
//! and the compression ratio of the server's replies is printed beside the memory: the
//! payload bytes of its reply frames on the wire over the messages' bytes. `partial`: each connection (no
//! compression) sends one byte, the start of a frame, and waits — what a connection costs
//! that holds a partial frame.
//!
//! The connections are raw sockets driven by `wsworker::proto` (handshake and `Connection`),
//! so that the reply's bytes on the wire can be counted.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsworker::bench::chat_lines;
use wsworker::proto::deflate::DeflateConfig;
use wsworker::proto::frame::FrameHeader;
use wsworker::proto::handshake::ClientHandshake;
use wsworker::proto::{Config, Connection, Event, Message, Role};

type BoxError = Box<dyn std::error::Error>;

fn vm_rss_kib(pid: u32) -> Result<u64, BoxError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("bad VmRSS line")?
        .parse()?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pid, url, count, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: idle_rss PID URL COUNT [plain|deflate|no-context-takeover|window-12|partial] \
             [MESSAGE_BYTES] [MESSAGES]"
                .into(),
        );
    };
    let pid: u32 = pid.parse()?;
    let count: usize = count.parse()?;
    let mode = rest.first().map_or("deflate", String::as_str);
    let message_bytes: usize = rest.get(1).map_or(Ok(0), |n| n.parse())?;
    let messages: u64 = rest.get(2).map_or(Ok(1), |n| n.parse())?;
    let deflate = match mode {
        "plain" | "partial" => None,
        "deflate" => Some(DeflateConfig::default()),
        "no-context-takeover" => Some(
            DeflateConfig::default()
                .server_no_context_takeover(true)
                .client_no_context_takeover(true),
        ),
        "window-12" => Some(
            DeflateConfig::default()
                .server_max_window_bits(12)
                .client_max_window_bits(12),
        ),
        other => return Err(format!("unknown mode {other}").into()),
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_rss_kib(pid)?;
    let mut open = Vec::with_capacity(count);
    let mut extensions = String::new();
    let (mut plain_bytes, mut wire_bytes) = (0u64, 0u64);
    for index in 0..count {
        let mut client = Client::connect(url, deflate.as_ref()).await?;
        extensions.clone_from(&client.extensions);
        if mode == "partial" {
            client.stream.write_all(&[0x81]).await?;
        } else if message_bytes > 0 {
            for message in 0..messages {
                let text = chat_lines(message_bytes, index as u64 * messages + message);
                wire_bytes += client.echo(&text).await?;
                plain_bytes += text.len() as u64;
            }
        }
        open.push(client);
    }
    // Let the server settle (its tasks finish their last reads and writes).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = vm_rss_kib(pid)?;
    let per_connection = (after.saturating_sub(before) as f64) / count as f64;
    let ratio = if plain_bytes > 0 {
        format!(
            ", replies {:.3} of the message bytes on the wire",
            wire_bytes as f64 / plain_bytes as f64
        )
    } else {
        String::new()
    };
    let messages = if message_bytes > 0 { messages } else { 0 };
    println!(
        "mode {mode}, {messages} × {message_bytes} B, extensions {extensions:?}: server VmRSS \
         {before} KiB -> {after} KiB with {count} connections: {per_connection:.1} KiB per \
         connection{ratio}"
    );
    for client in &mut open {
        client.close().await;
    }
    Ok(())
}

/// One connection: the socket and the protocol state driving it.
struct Client {
    stream: TcpStream,
    conn: Connection,
    /// What the server answered in `Sec-WebSocket-Extensions`.
    extensions: String,
}

impl Client {
    /// Connects and completes the opening handshake, offering `deflate` if given.
    async fn connect(url: &str, deflate: Option<&DeflateConfig>) -> Result<Self, BoxError> {
        let mut handshake = ClientHandshake::new(url)?;
        if let Some(config) = deflate {
            handshake = handshake.with_extensions(&config.offer())?;
        }
        let authority = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .ok_or("no host:port in the URL")?;
        let mut stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&handshake.request_bytes()).await?;
        let mut buf = [0u8; 1024];
        let (response, rest) = loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err("closed during the handshake".into());
            }
            if let Some(done) = handshake.receive(&buf[..n])? {
                break done;
            }
        };
        let params = match deflate {
            Some(config) => config.accept_response(response.extensions())?,
            None => None,
        };
        let mut conn = Connection::new(Role::Client, Config::default().deflate(params));
        conn.receive(&rest);
        Ok(Self {
            stream,
            conn,
            extensions: response.extensions_header().to_owned(),
        })
    }

    /// Sends `text`, waits for its echo and checks it; returns the payload bytes of the
    /// reply's data frames as they came on the wire (compressed or not).
    async fn echo(&mut self, text: &str) -> Result<u64, BoxError> {
        self.conn.send_text(text.to_owned())?;
        self.flush().await?;
        let mut wire = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match self.conn.poll_event()? {
                Some(Event::Message(Message::Text(echo))) if echo.as_str() == text => break,
                Some(Event::Ping(_)) => self.flush().await?,
                Some(other) => return Err(format!("not the echo: {other:?}").into()),
                None => {
                    let n =
                        tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                            .await
                            .map_err(|_| "no echo within 10 s")??;
                    if n == 0 {
                        return Err("closed before the echo".into());
                    }
                    wire.extend_from_slice(&buf[..n]);
                    self.conn.receive(&buf[..n]);
                }
            }
        }
        data_payload_bytes(&wire)
    }

    async fn flush(&mut self) -> Result<(), BoxError> {
        while let Some(bytes) = self.conn.poll_transmit() {
            self.stream.write_all(&bytes).await?;
        }
        Ok(())
    }

    /// The closing handshake, bounded: our close frame, then whatever comes for 5 s.
    async fn close(&mut self) {
        if self.conn.close(1000.into(), "").is_ok() && self.flush().await.is_ok() {
            let mut buf = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while matches!(self.stream.read(&mut buf).await, Ok(n) if n > 0) {}
            })
            .await;
        }
    }
}

/// The payload bytes of the data frames in `wire` (whole frames, as received).
fn data_payload_bytes(mut wire: &[u8]) -> Result<u64, BoxError> {
    let mut total = 0;
    while let Some((header, header_len)) = FrameHeader::parse(wire)? {
        let frame_len = header_len + usize::try_from(header.payload_len)?;
        if !header.opcode.is_control() {
            total += header.payload_len;
        }
        wire = wire.get(frame_len..).ok_or("a partial frame")?;
    }
    Ok(total)
}

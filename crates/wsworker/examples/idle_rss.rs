//! Memory per idle connection, as a server pays it: opens N client connections to a running
//! echo server (`wsworker serve --mode echo --count 1`), optionally exchanges one message on
//! each, and reports how much the server's resident memory (VmRSS of its PID, Linux) grew,
//! per connection.
//!
//! ```text
//! wsworker serve websocket://127.0.0.1:9001 --mode echo --count 1 &
//! cargo run --release --example idle_rss -- PID ws://127.0.0.1:9001/ 1000 [MODE] [MESSAGE_BYTES]
//! ```
//!
//! MODE: `plain` (no permessage-deflate), `deflate` (the default offer, context takeover),
//! `no-context-takeover` (both sides reset their windows after each message), `window-12`
//! (context takeover with 4 KiB windows both ways, as Python's websockets defaults to). With
//! MESSAGE_BYTES > 0 each connection echoes one compressible text message of that size
//! first, so a compressing server allocates its compressor and decompressor. `partial`: each
//! connection (a raw socket, no compression) sends one byte, the start of a frame, and waits
//! — what a connection costs that holds a partial frame.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsworker::proto::deflate::DeflateConfig;
use wsworker::proto::handshake::ClientHandshake;
use wsworker::{Message, WebSocket, WsEvent};

fn vm_rss_kib(pid: u32) -> Result<u64, Box<dyn std::error::Error>> {
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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pid, url, count, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: idle_rss PID URL COUNT [plain|deflate|no-context-takeover|window-12|partial] \
             [MESSAGE_BYTES]"
                .into(),
        );
    };
    let pid: u32 = pid.parse()?;
    let count: usize = count.parse()?;
    let mode = rest.first().map_or("deflate", String::as_str);
    let message_bytes: usize = rest.get(1).map_or(Ok(0), |n| n.parse())?;
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
    let text: String = (0..message_bytes)
        .map(|i| char::from(b'a' + (i % 7) as u8))
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = vm_rss_kib(pid)?;
    let mut open = Vec::with_capacity(count);
    let mut partial = Vec::with_capacity(count);
    let mut extensions = String::new();
    for _ in 0..count {
        if mode == "partial" {
            partial.push(open_with_a_frame_started(url).await?);
            continue;
        }
        let ws = WebSocket::builder(url.as_str())
            .permessage_deflate(deflate.clone())
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await?;
        extensions = ws.extensions().to_owned();
        if message_bytes > 0 {
            ws.send(text.as_str())?;
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(WsEvent::Message(Message::Text(echo)))) if echo.as_str() == text => {}
                other => return Err(format!("no echo: {other:?}").into()),
            }
        }
        open.push(ws);
    }
    // Let the server settle (its tasks finish their last reads and writes).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = vm_rss_kib(pid)?;
    drop(partial);
    let per_connection = (after.saturating_sub(before) as f64) * 1024.0 / count as f64;
    println!(
        "mode {mode}, message {message_bytes} B, extensions {extensions:?}: server VmRSS \
         {before} KiB -> {after} KiB with {count} connections: {:.1} KiB per connection",
        per_connection / 1024.0
    );
    for ws in &open {
        let _ = ws.close(1000, "");
    }
    for ws in &open {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while ws.next().await.is_some() {}
        })
        .await;
    }
    Ok(())
}

/// A raw connection, handshake done, that has sent the first byte of a text frame.
async fn open_with_a_frame_started(url: &str) -> Result<TcpStream, Box<dyn std::error::Error>> {
    let mut handshake = ClientHandshake::new(url)?;
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or("no host:port in the URL")?;
    let mut stream = TcpStream::connect(authority).await?;
    stream.write_all(&handshake.request_bytes()).await?;
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        if handshake.receive(&buf[..n])?.is_some() {
            break;
        }
    }
    stream.write_all(&[0x81]).await?;
    Ok(stream)
}

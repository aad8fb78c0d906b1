//! Echo server on tokio-tungstenite, written as its examples write one (`autobahn-server.rs`):
//! `accept_async` (here `accept_async_with_config`, to raise the size limits; the rest of the
//! configuration is the default, a 128 KiB read buffer per connection among it), then a
//! `StreamExt::next` / `SinkExt::send` loop that sends every text or binary message back as
//! it came. Close and ping are answered by the library. No permessage-deflate (tungstenite
//! has none), one thread: a tokio current-thread runtime.
//!
//! TCP_NODELAY is left off, as in the examples: `send` writes and flushes each message on its
//! own, and Nagle's algorithm then coalesces those small writes while earlier ones are
//! unacknowledged (with TCP_NODELAY on, 20-byte messages in flight echoed at about half the
//! rate in a quick check).
//!
//! Usage: `echo-tungstenite 127.0.0.1:PORT`; prints one line on stdout once it listens.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::accept_async_with_config;
use tokio_tungstenite::tungstenite::{Result, protocol::WebSocketConfig};

/// Messages and frames up to 64 MiB: the 16 MiB scenario fits with room to spare.
const MAX_SIZE: usize = 64 << 20;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .expect("usage: echo-tungstenite 127.0.0.1:PORT");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        println!("echo-tungstenite listening on {addr}");
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(async move {
                        if let Err(error) = echo(stream).await {
                            eprintln!("connection: {error}");
                        }
                    });
                }
                Err(error) => {
                    eprintln!("accept: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}

async fn echo(stream: TcpStream) -> Result<()> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_SIZE))
        .max_frame_size(Some(MAX_SIZE));
    let mut ws = accept_async_with_config(stream, Some(config)).await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

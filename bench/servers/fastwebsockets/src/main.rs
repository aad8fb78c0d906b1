//! Echo server on fastwebsockets, written as its `echo_server.rs` example writes one: hyper
//! serves HTTP/1.1, `upgrade::upgrade` answers the WebSocket handshake, and each connection
//! runs in its own task (`tokio::task::unconstrained`, as in the example) reading frames
//! through a `FragmentCollector` (so a fragmented message is echoed whole) and writing every
//! text or binary frame back. The library answers close and ping (`set_auto_close`,
//! `set_auto_pong`). No permessage-deflate (fastwebsockets has none), one thread: a tokio
//! current-thread runtime.
//!
//! TCP_NODELAY is left off, as in the example: `write_frame` writes each frame on its own, and
//! Nagle's algorithm then coalesces those small writes while earlier ones are unacknowledged
//! (with TCP_NODELAY on, 20-byte messages in flight echoed at about half the rate in a quick
//! check).
//!
//! Usage: `echo-fastwebsockets 127.0.0.1:PORT`; prints one line on stdout once it listens.

use std::time::Duration;

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;

/// Messages up to 64 MiB: the 16 MiB scenario fits with room to spare.
const MAX_SIZE: usize = 64 << 20;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .expect("usage: echo-fastwebsockets 127.0.0.1:PORT");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        println!("echo-fastwebsockets listening on {addr}");
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    eprintln!("accept: {error}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let conn = http1::Builder::new()
                    .serve_connection(io, service_fn(server_upgrade))
                    .with_upgrades();
                if let Err(error) = conn.await {
                    eprintln!("http: {error}");
                }
            });
        }
    });
}

async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        if let Err(error) = tokio::task::unconstrained(echo(fut)).await {
            eprintln!("connection: {error}");
        }
    });
    Ok(response)
}

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    ws.set_max_message_size(MAX_SIZE);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

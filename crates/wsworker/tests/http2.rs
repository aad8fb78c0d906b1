//! HTTP/2 on the standalone server in cleartext (prior knowledge), with hyper's own HTTP/2
//! client: the connection leaves the event loop for hyper's server with the preface it
//! read, WebSockets open on it with extended CONNECT and pages load over it, HTTP/1.1
//! keeps working on the same port; and the send-buffer limits hold over HTTP/2 as over
//! HTTP/1.1 when the client stops reading a stream.
#![cfg(feature = "hyper")]

mod common;

use std::io::{Read, Write};

use common::h2::{
    FLOOD_MESSAGE, Flooded, H2Client, flooding_worker, full_then_1008, full_then_drops,
    next_flooded,
};
use common::{RawClient, WAIT, hello_worker, raw_exchange, say_hello, stop};
use hyper::StatusCode;
use wsworker::server::OverflowPolicy;
use wsworker::{CloseCode, HttpResponse};
use wsworker_proto::{Event, Message};

/// The hello server with HTTP/2 on and a page for `GET /`.
fn hello_http2() -> wsworker::RunningServer {
    let mut worker = hello_worker();
    worker
        .http2(true)
        .on_http(|_| HttpResponse::html("<p>the page</p>"));
    worker.start().unwrap()
}

/// The next event of `socket`, which must be a text message.
async fn text(socket: &mut common::h2::H2Socket) -> String {
    match socket.next_event().await {
        Some(Event::Message(Message::Text(text))) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[tokio::test]
async fn cleartext_http2_carries_websockets_and_pages_beside_http11() {
    let server = hello_http2();
    let addr = server.local_addr();

    let mut client = H2Client::connect(addr, 1 << 20).await;
    let (status, page) = client.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&page[..], b"<p>the page</p>");

    // Two WebSockets on the one connection, each answered on its own stream.
    let mut a = client.websocket("/").await.unwrap();
    let mut b = client.websocket("/").await.unwrap();
    a.send_text("tom").await;
    b.send_text("ann").await;
    assert_eq!(text(&mut b).await, "hello ann");
    assert_eq!(text(&mut a).await, "hello tom");
    a.conn.close(CloseCode::NORMAL, "").unwrap();
    a.flush().await;
    match a.next_event().await {
        Some(Event::Close(frame)) => assert_eq!(frame.map(|f| f.code), Some(CloseCode::NORMAL)),
        other => panic!("expected the close, got {other:?}"),
    }
    b.send_text("again").await;
    assert_eq!(
        text(&mut b).await,
        "hello again",
        "the other stream goes on"
    );
    drop((a, b, client));

    // HTTP/1.1 on the same port keeps the event loop's path.
    let ws = say_hello(&format!("ws://{addr}/")).await;
    ws.close(CloseCode::NORMAL, "").unwrap();
    stop(server).await;
}

#[test]
fn a_preface_that_arrives_in_pieces_is_replayed_whole_to_http2() {
    let server = hello_http2();
    let mut stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // The preface in two writes, then an empty SETTINGS frame: hyper answers with its own
    // SETTINGS (a frame of type 4 on stream 0), which it would not if a byte were lost.
    stream.write_all(b"PRI * HTTP/2.0\r\n").unwrap();
    stream.write_all(b"\r\nSM\r\n\r\n").unwrap();
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[3], 4, "a SETTINGS frame: {head:?}");
    assert_eq!(&head[5..], &[0, 0, 0, 0], "on stream 0");
    let mut settings = vec![0u8; usize::from(u16::from_be_bytes([head[1], head[2]]))];
    stream.read_exact(&mut settings).unwrap();
    assert!(
        settings.chunks(6).any(|s| s == [0, 8, 0, 0, 0, 1]),
        "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 in {settings:?}"
    );
    drop(stream);
    server.shutdown();
}

#[test]
fn without_http2_the_preface_gets_an_http11_refusal() {
    let server = hello_worker().start().unwrap();
    let answer = raw_exchange(server.local_addr(), common::h2::PREFACE);
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    // And with HTTP/2 on, a request that only begins like the preface is HTTP/1.1's.
    server.shutdown();
    let server = hello_http2();
    let answer = raw_exchange(server.local_addr(), b"PRI /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    client.conn.send_text("tom").unwrap();
    client.flush();
    assert!(matches!(
        client.next_event(),
        Some(Ok(Event::Message(Message::Text(t)))) if t == "hello tom"
    ));
    drop(client);
    server.shutdown();
}

#[tokio::test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
async fn python_h2_against_the_standalone_server() {
    let server = hello_http2();
    let url = format!("http://{}/", server.local_addr());
    tokio::task::spawn_blocking(move || common::h2::python_h2_check(&url))
        .await
        .unwrap();
    stop(server).await;
}

/// The client's window on each stream in the backpressure tests: what the server may send
/// on a stream nobody reads, before hyper's send buffer (64 KiB) and then the driver's
/// queue take the rest.
const WINDOW: u32 = 64 * 1024;
/// The flood: far more than the window, hyper's buffer and the hard limit together.
const FLOOD: usize = 8 << 20;
const SOFT: usize = 128 * 1024;
const HARD: usize = 512 * 1024;

/// Opens a WebSocket over HTTP/2 to a flooding server, asks for [`FLOOD`] bytes and reads
/// none of them.
async fn stalled_flood(addr: std::net::SocketAddr) -> (H2Client, common::h2::H2Socket) {
    let mut client = H2Client::connect(addr, WINDOW).await;
    let mut socket = client.websocket("/").await.unwrap();
    socket.send_text(&format!("flood {FLOOD}")).await;
    (client, socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http2_reader_gets_on_buffer_full_then_1008() {
    let (worker, seen) = flooding_worker(OverflowPolicy::Close, SOFT, HARD);
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let stalled = stalled_flood(server.local_addr()).await;
    tokio::task::block_in_place(|| full_then_1008(&seen, &metrics, SOFT, HARD));
    // What left the driver: the client's window and a message in flight (frame heads
    // included), no more; the rest waited in the driver's queue, where the limits see it.
    let sent = metrics.snapshot().total().bytes_sent as usize;
    assert!(
        sent <= WINDOW as usize + 2 * (FLOOD_MESSAGE + 14),
        "{sent} bytes went into HTTP/2 for a reader whose window is {WINDOW}"
    );
    // hyper keeps the stream until what it holds of it is sent: the client goes first, or
    // the stop would wait for it.
    drop(stalled);
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http2_reader_gets_on_buffer_full_then_drops_and_everything_queued() {
    let (worker, seen) = flooding_worker(OverflowPolicy::DropNew, SOFT, HARD);
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let (_client, mut socket) = stalled_flood(server.local_addr()).await;
    let queued =
        tokio::task::block_in_place(|| full_then_drops(&seen, &metrics, SOFT, HARD, FLOOD));

    // Reading again: everything that was queued arrives, and the connection still works.
    for _ in 0..queued {
        match socket.next_event().await {
            Some(Event::Message(Message::Binary(data))) => assert_eq!(data.len(), FLOOD_MESSAGE),
            other => panic!("expected the queued messages, got {other:?}"),
        }
    }
    socket.conn.close(CloseCode::NORMAL, "").unwrap();
    socket.flush().await;
    assert!(matches!(socket.next_event().await, Some(Event::Close(_))));
    match tokio::task::block_in_place(|| next_flooded(&seen)) {
        Flooded::Closed(info) => assert_eq!(info.code, CloseCode::NORMAL),
        other => panic!("expected the close, got {other:?}"),
    }
    stop(server).await;
}

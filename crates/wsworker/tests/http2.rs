//! HTTP/2 on the standalone server in cleartext (prior knowledge), with hyper's own HTTP/2
//! client: the connection leaves the event loop for hyper's server with the preface it
//! read, WebSockets open on it with extended CONNECT and pages load over it, HTTP/1.1
//! keeps working on the same port.
#![cfg(feature = "hyper")]

mod common;

use std::io::{Read, Write};

use common::h2::H2Client;
use common::{RawClient, WAIT, hello_worker, raw_exchange, say_hello, stop};
use hyper::StatusCode;
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

//! permessage-deflate (RFC 7692) between our client and our server on loopback: every
//! parameter combination, compression turned off on either side, malformed offers declined,
//! answers the client must refuse, and the limit on the inflated size.
#![cfg(feature = "deflate")]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::{WAIT, closed, message, stop};
use wsworker::proto::deflate::DeflateConfig;
use wsworker::proto::handshake::accept_key;
use wsworker::{Error, Message, RunningServer, WebSocket, Worker};

fn echo_server(deflate: Option<DeflateConfig>) -> RunningServer {
    echo_server_lending(deflate, false)
}

/// The echo server, with the messages lent to its callback (`on_message_ref`: replies below
/// the compression threshold are encoded at once, uncompressed) or given.
fn echo_server_lending(deflate: Option<DeflateConfig>, lend: bool) -> RunningServer {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.permessage_deflate(deflate);
    if lend {
        worker.on_message_ref(|conn, msg| {
            conn.send(msg)?;
            Ok(())
        });
    } else {
        worker.on_message(|conn, msg| {
            conn.send(msg)?;
            Ok(())
        });
    }
    worker.start().unwrap()
}

async fn connect(server: &RunningServer, deflate: Option<DeflateConfig>) -> WebSocket {
    WebSocket::builder(format!("ws://{}/", server.local_addr()))
        .permessage_deflate(deflate)
        .connect()
        .await
        .unwrap()
}

fn messages() -> Vec<Message> {
    let json: String = (0..2000)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item {}\"}}", i % 37))
        .collect();
    vec![
        Message::text("tom"),
        Message::text(json.as_str()),
        Message::binary(vec![0u8; 100_000]),
        Message::text("κόσμε 🎉 ".repeat(500)),
        Message::text(json),
        Message::binary((0..3000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>()),
        Message::text(""),
    ]
}

async fn echo_all(ws: &WebSocket) {
    for m in messages() {
        ws.send(m.clone()).unwrap();
        assert_eq!(message(ws).await, m);
    }
}

/// Each (server settings, client settings) pair: the client sees the answer it expects and
/// every message kind makes the round trip twice (the second time through the windows the
/// first one left, where context takeover applies); every other pair with the messages lent
/// to the server's callback.
#[tokio::test]
async fn every_parameter_combination_round_trips() {
    // A server without window limits of its own: RFC 7692's defaults, 15 bits both ways.
    let wide = || {
        DeflateConfig::default()
            .server_max_window_bits(15)
            .client_max_window_bits(15)
    };
    let combinations: Vec<(DeflateConfig, DeflateConfig, &str)> = vec![
        (
            DeflateConfig::default(),
            DeflateConfig::default(),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        (wide(), DeflateConfig::default(), "permessage-deflate"),
        (
            DeflateConfig::default().server_no_context_takeover(true),
            DeflateConfig::default(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; \
             client_max_window_bits=12",
        ),
        (
            wide(),
            DeflateConfig::default().server_no_context_takeover(true),
            "permessage-deflate; server_no_context_takeover",
        ),
        (
            DeflateConfig::default().client_no_context_takeover(true),
            DeflateConfig::default(),
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; \
             client_max_window_bits=12",
        ),
        (
            wide(),
            DeflateConfig::default().client_no_context_takeover(true),
            "permessage-deflate; client_no_context_takeover",
        ),
        (
            DeflateConfig::default().server_max_window_bits(10),
            DeflateConfig::default(),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
        ),
        (
            wide(),
            DeflateConfig::default().server_max_window_bits(8),
            "permessage-deflate; server_max_window_bits=8",
        ),
        (
            DeflateConfig::default().server_max_window_bits(9),
            DeflateConfig::default().server_max_window_bits(12),
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=12",
        ),
        (
            wide().client_max_window_bits(9),
            DeflateConfig::default(),
            "permessage-deflate; client_max_window_bits=9",
        ),
        (
            DeflateConfig::default(),
            DeflateConfig::default().client_max_window_bits(8),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=8",
        ),
        (
            DeflateConfig::default().mem_level(1),
            DeflateConfig::default().mem_level(9),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        (
            DeflateConfig::default()
                .server_no_context_takeover(true)
                .client_no_context_takeover(true)
                .server_max_window_bits(8)
                .client_max_window_bits(8),
            DeflateConfig::default().threshold(0).level(1),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=8; client_max_window_bits=8",
        ),
        (
            DeflateConfig::default().level(9).threshold(1 << 20),
            DeflateConfig::default()
                .server_no_context_takeover(true)
                .client_no_context_takeover(true)
                .server_max_window_bits(11)
                .client_max_window_bits(13)
                .level(0),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=11; client_max_window_bits=12",
        ),
    ];
    for (i, (server_config, client_config, expected)) in combinations.into_iter().enumerate() {
        let server = echo_server_lending(Some(server_config.clone()), i % 2 == 0);
        let ws = connect(&server, Some(client_config.clone())).await;
        assert_eq!(
            ws.extensions(),
            expected,
            "{server_config:?} / {client_config:?}"
        );
        echo_all(&ws).await;
        echo_all(&ws).await;
        ws.close(1000, "").unwrap();
        assert!(closed(&ws).await.was_clean);
        stop(server).await;
    }
}

#[tokio::test]
async fn compression_off_on_either_side_means_none() {
    let server = echo_server(None);
    let ws = connect(&server, Some(DeflateConfig::default())).await;
    assert_eq!(ws.extensions(), "");
    echo_all(&ws).await;
    stop(server).await;

    let server = echo_server(Some(DeflateConfig::default()));
    let ws = connect(&server, None).await;
    assert_eq!(ws.extensions(), "");
    echo_all(&ws).await;
    stop(server).await;
}

/// Sends a handshake with this `Sec-WebSocket-Extensions` value; returns the response head.
fn handshake_with_extensions(server: &RunningServer, offer: &str) -> String {
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {offer}\r\n\r\n"
    );
    let mut stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed in the head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn rfc7692_5_server_declines_malformed_offers_and_takes_the_next() {
    let server = echo_server(Some(DeflateConfig::default()));
    for bad in [
        "permessage-deflate; foo=1",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_no_context_takeover=yes",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    ] {
        let head = handshake_with_extensions(&server, bad);
        assert!(head.starts_with("HTTP/1.1 101"), "{bad}: {head}");
        assert!(!head.contains("Sec-WebSocket-Extensions"), "{bad}: {head}");
    }
    let head = handshake_with_extensions(
        &server,
        "permessage-deflate; x=1, permessage-deflate; server_no_context_takeover",
    );
    assert!(
        head.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             server_max_window_bits=12\r\n"
        ),
        "{head}"
    );
    // Chromium's offer, answered as Python's websockets answers it.
    let head = handshake_with_extensions(&server, "permessage-deflate; client_max_window_bits");
    assert!(
        head.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12; \
             client_max_window_bits=12\r\n"
        ),
        "{head}"
    );
    stop(server).await;
}

/// A server that answers the opening handshake with this `Sec-WebSocket-Extensions` value,
/// once; returns its URL.
fn fake_server(answer: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim();
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Extensions: {answer}\r\n\r\n",
            accept_key(key.as_bytes())
        );
        let _ = stream.write_all(response.as_bytes());
        // Hold the connection until the client gives up on it.
        let _ = stream.read(&mut byte);
    });
    url
}

#[tokio::test]
async fn rfc7692_5_client_fails_the_connection_on_a_parameter_it_did_not_allow() {
    for (config, answer) in [
        (
            DeflateConfig::default(),
            "permessage-deflate; server_max_window_bits=16",
        ),
        (
            DeflateConfig::default(),
            "permessage-deflate; client_max_window_bits",
        ),
        (DeflateConfig::default(), "permessage-deflate; mystery"),
        (
            DeflateConfig::default(),
            "permessage-deflate, permessage-deflate",
        ),
        (
            DeflateConfig::default().server_no_context_takeover(true),
            "permessage-deflate",
        ),
        (
            DeflateConfig::default().server_max_window_bits(10),
            "permessage-deflate; server_max_window_bits=12",
        ),
        (
            DeflateConfig::default().client_max_window_bits(10),
            "permessage-deflate; client_max_window_bits=11",
        ),
    ] {
        let url = fake_server(answer);
        let result = WebSocket::builder(url)
            .permessage_deflate(Some(config.clone()))
            .connect()
            .await;
        assert!(
            matches!(result, Err(Error::Handshake(_))),
            "{config:?} / {answer}: {result:?}"
        );
    }
    // An extension never offered is refused too, with compression off.
    let url = fake_server("permessage-deflate");
    let result = WebSocket::builder(url)
        .permessage_deflate(None)
        .connect()
        .await;
    assert!(matches!(result, Err(Error::Handshake(_))), "{result:?}");
}

#[tokio::test]
async fn rfc7692_8_small_message_inflating_past_the_limit_closes_1009() {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.max_message_size(64 << 10).on_message(|conn, msg| {
        conn.send(msg)?;
        Ok(())
    });
    let server = worker.start().unwrap();
    let ws = connect(&server, Some(DeflateConfig::default())).await;
    assert_eq!(
        ws.extensions(),
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; \
         client_max_window_bits=12",
        "the server's default"
    );
    // Exactly the limit passes; one byte more, a few hundred bytes on the wire, does not.
    ws.send(vec![0u8; 64 << 10]).unwrap();
    assert_eq!(message(&ws).await, Message::binary(vec![0u8; 64 << 10]));
    ws.send(vec![0u8; 16 << 20]).unwrap();
    let info = closed(&ws).await;
    assert_eq!(info.code.as_u16(), 1009, "{info:?}");
    stop(server).await;
}

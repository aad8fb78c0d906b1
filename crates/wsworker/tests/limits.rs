//! The server's protections and what it counts: idle keepalive, the connection limit, the
//! origin allow-list, the overflow policy at the hard send-buffer limit, and the metrics
//! that record all of it.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    RawClient, closed_without_a_word, hello_worker, raw_exchange, rejected_as_pending,
    wait_pending_handshakes,
};
use wsworker::server::{CloseCodeGroup, Keepalive, OverflowPolicy, Rejection};
use wsworker::{CloseCode, CloseInfo, Handshake, Message, Worker};
use wsworker_proto::Event;

fn upgrade_request(origin: Option<&str>) -> Vec<u8> {
    let mut request = "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n"
        .to_owned();
    if let Some(origin) = origin {
        request.push_str(&format!("Origin: {origin}\r\n"));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// The status line of the server's answer to `request`, leaving the connection open.
fn status_of(addr: std::net::SocketAddr, request: &[u8]) -> (String, std::net::TcpStream) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed before a status");
        head.push(byte[0]);
    }
    (String::from_utf8_lossy(&head).trim().to_owned(), stream)
}

fn closes(rx: &mpsc::Receiver<CloseInfo>) -> CloseInfo {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("on_close within 10 s")
}

#[test]
fn a_silent_client_that_does_not_answer_the_ping_is_dropped() {
    let mut worker = hello_worker();
    worker.keepalive(Some(Keepalive::new(
        Duration::from_millis(200),
        Duration::from_millis(200),
    )));
    let (tx, rx) = mpsc::channel();
    worker.on_close(move |_, info| {
        let _ = tx.send(info.clone());
    });
    let metrics = worker.metrics();
    let server = worker.start().unwrap();

    let started = Instant::now();
    let mut dead = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    // Reads the ping but never answers it (no poll_event, no flush).
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match dead.stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let info = closes(&rx);
    let elapsed = started.elapsed();
    assert_eq!(seen, b"\x89\x00", "one empty ping, then the end");
    assert_eq!(info.code, CloseCode::ABNORMAL);
    assert!(!info.was_clean);
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert_eq!(
        metrics
            .snapshot()
            .closes
            .get(&CloseCodeGroup::Registered(1006)),
        Some(&1)
    );
    server.shutdown();
}

#[test]
fn a_client_that_answers_pings_stays_open_through_many_intervals() {
    let mut worker = hello_worker();
    worker.keepalive(Some(Keepalive::new(
        Duration::from_millis(100),
        Duration::from_millis(300),
    )));
    let server = worker.start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    // next_event answers each ping as it reads it.
    let mut pings = 0;
    while pings < 5 {
        match client.next_event() {
            Some(Ok(Event::Ping(payload))) => {
                assert!(payload.is_empty());
                pings += 1;
            }
            other => panic!("expected pings, got {other:?}"),
        }
    }
    client.conn.send_text("tom").unwrap();
    client.flush();
    loop {
        match client.next_event() {
            Some(Ok(Event::Ping(_))) => {}
            Some(Ok(event)) => {
                assert_eq!(event, Event::Message(Message::text("hello tom")));
                break;
            }
            other => panic!("expected the answer, got {other:?}"),
        }
    }
    drop(client);
    server.shutdown();
}

#[test]
fn without_keepalive_a_silent_connection_gets_no_ping() {
    let mut worker = hello_worker();
    worker.keepalive(None);
    let server = worker.start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 16];
    let read = client.stream.read(&mut buf);
    assert!(
        matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut),
        "{read:?}"
    );
    drop(client);
    server.shutdown();
}

#[tokio::test]
async fn our_client_finds_a_server_that_stopped_answering() {
    // A "server" that completes the handshake, then never reads or writes again.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let request = String::from_utf8(head).unwrap();
        let key = request
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = wsworker_proto::handshake::accept_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let ws = wsworker::WebSocket::builder(format!("ws://{addr}/"))
        .keepalive(Some(Keepalive::new(
            Duration::from_millis(100),
            Duration::from_millis(100),
        )))
        .connect()
        .await
        .unwrap();
    let mut saw_timeout = false;
    loop {
        match common::event(&ws).await {
            wsworker::WsEvent::Error(wsworker::Error::Timeout(_)) => saw_timeout = true,
            wsworker::WsEvent::Close(info) => {
                assert_eq!(info.code, CloseCode::ABNORMAL);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_timeout);
    server.abort();
}

#[test]
fn beyond_max_connections_a_handshake_gets_503_and_is_counted() {
    let mut worker = hello_worker();
    worker.max_connections(3);
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    let mut open: Vec<RawClient> = (0..3)
        .map(|_| RawClient::connect(addr, "/", &[]).unwrap())
        .collect();
    let (status, _) = status_of(addr, &upgrade_request(None));
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(
        metrics.snapshot().rejections.get(&Rejection::Full),
        Some(&1)
    );

    // One leaves: there is room again.
    let mut leaving = open.pop().unwrap();
    leaving.conn.close(CloseCode::NORMAL, "").unwrap();
    leaving.flush();
    assert!(leaving.reads_eof());
    // The server waits for the client's end of the TCP connection before it counts the
    // connection as gone.
    drop(leaving);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.snapshot().total().connections_open != 2 {
        assert!(Instant::now() < deadline, "the close was not counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut again = RawClient::connect(addr, "/", &[]).unwrap();
    again.conn.send_text("tom").unwrap();
    again.flush();
    assert_eq!(
        again.next_event().unwrap().unwrap(),
        Event::Message(Message::text("hello tom"))
    );
    assert_eq!(metrics.snapshot().total().connections_open, 3);
    drop((open, again));
    server.shutdown();
}

#[test]
fn origins_off_the_allow_list_get_403() {
    let mut worker = hello_worker();
    worker.allowed_origins(["https://example.com", "http://localhost:8080"]);
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    for (origin, expected) in [
        (Some("https://example.com"), "101"),
        (Some("HTTPS://EXAMPLE.COM:443"), "101"),
        (Some("http://localhost:8080"), "101"),
        (None, "101"),
        (Some("https://evil.example"), "403"),
        (Some("http://example.com"), "403"),
        (Some("null"), "403"),
    ] {
        let (status, _) = status_of(addr, &upgrade_request(origin));
        assert!(
            status.starts_with(&format!("HTTP/1.1 {expected} ")),
            "{origin:?}: {status}"
        );
    }
    assert_eq!(
        metrics.snapshot().rejections.get(&Rejection::Origin),
        Some(&3)
    );
    server.shutdown();
}

/// A worker whose every message triggers `burst` answers of `size` bytes to a client that
/// does not read them.
fn flooding_worker(policy: OverflowPolicy) -> (Worker, mpsc::Receiver<CloseInfo>) {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker
        .send_buffer_limits(64 * 1024, 256 * 1024)
        .overflow_policy(policy)
        .close_timeout(Duration::from_millis(500));
    worker.on_message(|conn, _| {
        for _ in 0..64 {
            conn.send(vec![7u8; 16 * 1024])?;
        }
        Ok(())
    });
    let (tx, rx) = mpsc::channel();
    worker.on_close(move |_, info| {
        let _ = tx.send(info.clone());
    });
    (worker, rx)
}

#[test]
fn drop_new_keeps_the_connection_and_counts_what_did_not_fit() {
    let (mut worker, closed) = flooding_worker(OverflowPolicy::DropNew);
    let full = Arc::new(AtomicUsize::new(0));
    let seen = full.clone();
    worker.on_buffer_full(move |_| {
        seen.fetch_add(1, Ordering::Relaxed);
    });
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    client.conn.send_text("go").unwrap();
    client.flush();
    // 64 × 16 KiB = 1 MiB asked for, at most 256 KiB (plus what the socket took) queued.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.snapshot().total().dropped_messages == 0 {
        assert!(Instant::now() < deadline, "nothing was dropped");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(full.load(Ordering::Relaxed), 1, "on_buffer_full once");
    // Everything that was queued arrives, and the connection still works.
    let mut received = 0;
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let snapshot = metrics.snapshot().total();
    let queued = snapshot.messages_sent;
    assert_eq!(queued + snapshot.dropped_messages, 64);
    while received < queued {
        match client.next_event() {
            Some(Ok(Event::Message(m))) => {
                assert_eq!(m.len(), 16 * 1024);
                received += 1;
            }
            other => panic!("expected the queued answers, got {other:?}"),
        }
    }
    client.conn.close(CloseCode::NORMAL, "").unwrap();
    client.flush();
    assert!(matches!(client.next_event(), Some(Ok(Event::Close(_)))));
    drop(client);
    assert_eq!(closes(&closed).code, CloseCode::NORMAL);
    server.shutdown();
}

#[test]
fn close_policy_cuts_off_a_client_that_does_not_read_with_1008() {
    let (worker, closed) = flooding_worker(OverflowPolicy::Close);
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    client.conn.send_text("go").unwrap();
    client.flush();
    // Unread answers fill the socket, then the queue: the server closes without waiting
    // for the client.
    let info = closes(&closed);
    drop(client);
    assert_eq!(info.code, CloseCode::POLICY_VIOLATION);
    assert_eq!(metrics.snapshot().total().dropped_messages, 0);
    assert_eq!(
        metrics.snapshot().closes.get(&CloseCodeGroup::of(1008)),
        Some(&1)
    );
    server.shutdown();
}

#[test]
fn metrics_count_messages_bytes_closes_and_rejections() {
    let worker = hello_worker();
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    let mut client = RawClient::connect(addr, "/", &[]).unwrap();
    // The handshake is counted too: its request, and the response once the write that
    // carried it has returned (which the client may see first).
    let deadline = Instant::now() + Duration::from_secs(10);
    let opened = loop {
        let total = metrics.snapshot().total();
        if total.bytes_sent > 0 || Instant::now() > deadline {
            break total;
        }
        std::thread::yield_now();
    };
    assert!(opened.bytes_received > b"GET / HTTP/1.1\r\n\r\n".len() as u64);
    assert!(opened.bytes_sent > b"HTTP/1.1 101 Switching Protocols\r\n\r\n".len() as u64);
    for _ in 0..3 {
        client.conn.send_text("tom").unwrap();
        client.flush();
        assert!(matches!(client.next_event(), Some(Ok(Event::Message(_)))));
    }
    client.conn.close(CloseCode::new(4001), "done").unwrap();
    client.flush();
    assert!(matches!(client.next_event(), Some(Ok(Event::Close(_)))));
    assert!(client.reads_eof());
    drop(client);
    assert!(raw_exchange(addr, b"NOT HTTP\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 426"));

    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics
        .snapshot()
        .closes
        .contains_key(&CloseCodeGroup::of(4001))
    {
        assert!(Instant::now() < deadline, "the close was not counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let snapshot = metrics.snapshot();
    let total = snapshot.total();
    assert_eq!(total.connections_open, 0);
    assert_eq!(total.connections_accepted, 1);
    assert_eq!(total.messages_received, 3);
    assert_eq!(total.messages_sent, 3);
    // Three masked "tom" frames (9 bytes) and a close of 4 + 2 + 4 bytes; three "hello tom"
    // frames (11 bytes) and the 4-byte close echo.
    assert_eq!(total.bytes_received - opened.bytes_received, 3 * 9 + 12);
    assert_eq!(total.bytes_sent - opened.bytes_sent, 3 * 11 + 4);
    assert_eq!(snapshot.rejections.get(&Rejection::BadRequest), Some(&1));
    assert_eq!(
        snapshot.rejections.get(&Rejection::UpgradeRequired),
        Some(&1)
    );
    let text = metrics.to_prometheus();
    assert!(
        text.contains("wsworker_closes_total{code=\"4xxx\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("wsworker_messages_received_total{worker=\"0\"} 3\n"));
    server.shutdown();
}

#[test]
fn one_message_larger_than_the_hard_limit_still_goes_out() {
    // The limit is on answers piling up unread: the echo of a message of the maximum size
    // (16 MiB by default, as large as the default hard limit) must not close the connection.
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.send_buffer_limits(1024, 4096);
    worker.on_message(|conn, msg| {
        conn.send(msg)?;
        Ok(())
    });
    let server = worker.start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    let big = vec![3u8; 64 * 1024];
    client.conn.send_binary(big.clone()).unwrap();
    client.flush();
    assert_eq!(
        client.next_event().unwrap().unwrap(),
        Event::Message(Message::binary(big))
    );
    drop(client);
    server.shutdown();
}

// ----- the limits with replies encoded at once -------------------------------------------

/// Replies from a callback, lent the message (`on_message_ref`) or given it: "big" is
/// answered with 9,000 bytes (queued as a command: too large to encode at once), "many" with
/// `n` replies of 50 bytes (encoded at once), "close" with its echo and a close 4000,
/// anything else with its echo.
fn replying_worker(lend: bool, n: usize) -> Worker {
    fn answer(
        conn: &wsworker::Connection,
        msg: wsworker::MessageRef<'_>,
        n: usize,
    ) -> wsworker::Result<()> {
        match msg.as_text() {
            Some("big") => conn.send(vec![1u8; 9000])?,
            Some("many") => {
                for _ in 0..n {
                    conn.send("x".repeat(50))?;
                }
            }
            Some("close") => {
                conn.send(msg)?;
                conn.close(4000u16, "asked")?;
            }
            _ => conn.send(msg)?,
        }
        Ok(())
    }
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    if lend {
        worker.on_message_ref(move |conn, msg| answer(conn, msg, n));
    } else {
        worker.on_message(move |conn, msg| answer(conn, msg.view(), n));
    }
    worker
}

/// Starts `worker`, sends `texts` in one write (with a ping before the one at
/// `ping_before`), and returns how many messages the server sent before its close frame and
/// that frame's code; then stops the server.
fn exchange(
    worker: Worker,
    texts: &[&str],
    ping_before: Option<usize>,
) -> (usize, Option<CloseCode>) {
    let server = worker.start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    for (i, text) in texts.iter().enumerate() {
        if ping_before == Some(i) {
            client.conn.send_ping(&b"p"[..]).unwrap();
        }
        client.conn.send_text(*text).unwrap();
    }
    client.flush_in_one_write(&[]);
    let events = client.events_until_close();
    let messages = events
        .iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .count();
    let close = match events.last() {
        Some(Event::Close(frame)) => frame.as_ref().map(|f| f.code),
        _ => None,
    };
    drop(client);
    server.shutdown();
    (messages, close)
}

#[test]
fn replies_encoded_at_once_count_against_the_hard_limit() {
    for lend in [false, true] {
        // 9,000 bytes queued, then 190 × 52: the hard limit of 10,000 is crossed after 19.
        // (The ping puts "many" in a run of its own, after "big"'s reply is queued.)
        let mut worker = replying_worker(lend, 190);
        worker.send_buffer_limits(10_000, 10_000);
        let (messages, close) = exchange(worker, &["big", "many"], Some(1));
        assert_eq!(close, Some(CloseCode::POLICY_VIOLATION), "lend {lend}");
        // 9,004 bytes queued leave room for 19 replies of 52 (all written together).
        assert_eq!(messages, 1 + 19, "lend {lend}");
    }
}

#[test]
fn what_on_buffer_full_sends_after_replies_encoded_at_once_is_applied() {
    for lend in [false, true] {
        let mut worker = replying_worker(lend, 100);
        worker.send_buffer_limits(10_000, 1_000_000);
        worker.on_buffer_full(|conn| {
            let _ = conn.close(4001u16, "full");
        });
        let (messages, close) = exchange(worker, &["big", "many"], None);
        assert_eq!(
            close,
            Some(CloseCode::from(4001)),
            "lend {lend}: {messages}"
        );
    }
}

#[test]
fn what_on_buffer_full_sends_counts_against_the_hard_limit() {
    for lend in [false, true] {
        // "big" alone (9,000 bytes, admitted into the empty buffer) is over the soft limit
        // of 5,000; on_buffer_full then sends 150 × 52 bytes: the hard limit of 10,000 is
        // crossed after 19 of them.
        let mut worker = replying_worker(lend, 0);
        worker.send_buffer_limits(5_000, 10_000);
        worker.on_buffer_full(|conn| {
            for _ in 0..150 {
                let _ = conn.send("y".repeat(50));
            }
        });
        let (messages, close) = exchange(worker, &["big"], None);
        assert_eq!(close, Some(CloseCode::POLICY_VIOLATION), "lend {lend}");
        // 9,004 bytes queued leave room for 19 of 52 (all written together).
        assert_eq!(messages, 1 + 19, "lend {lend}");
    }
}

#[test]
fn a_reply_dropped_after_the_close_is_not_counted_as_sent() {
    for lend in [false, true] {
        let worker = replying_worker(lend, 0);
        let metrics = worker.metrics();
        // A ping between: "after" comes in a second run of plain messages.
        let (messages, close) = exchange(worker, &["close", "after"], Some(1));
        assert_eq!(
            (messages, close),
            (1, Some(CloseCode::from(4000))),
            "lend {lend}"
        );
        // The server has stopped: every count is in.
        let total = metrics.snapshot().total();
        assert_eq!(total.messages_received, 2, "lend {lend}");
        assert_eq!(total.messages_sent, 1, "lend {lend}");
    }
}

#[test]
fn close_codes_clients_choose_are_counted_by_range() {
    let worker = hello_worker();
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    for code in [3001, 3999, 4000, 4999, 1000] {
        let mut client = RawClient::connect(addr, "/", &[]).unwrap();
        client.conn.close(CloseCode::new(code), "").unwrap();
        client.flush();
        assert!(matches!(client.next_event(), Some(Ok(Event::Close(_)))));
        assert!(client.reads_eof());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.snapshot().closes.values().sum::<u64>() < 5 {
        assert!(Instant::now() < deadline, "the closes were not counted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.closes.into_iter().collect::<Vec<_>>(),
        [
            (CloseCodeGroup::Registered(1000), 1),
            (CloseCodeGroup::Range3xxx, 2),
            (CloseCodeGroup::Range4xxx, 2),
        ]
    );
    let text = metrics.to_prometheus();
    let series: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("wsworker_closes_total{"))
        .collect();
    assert_eq!(
        series,
        [
            "wsworker_closes_total{code=\"1000\"} 1",
            "wsworker_closes_total{code=\"3xxx\"} 2",
            "wsworker_closes_total{code=\"4xxx\"} 2",
        ]
    );
    server.shutdown();
}

/// A WebSocket request for `path`.
fn upgrade_request_to(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn handshakes_in_progress_are_bounded_and_each_end_frees_its_place() {
    let mut worker = hello_worker();
    worker.count(1).max_pending_handshakes(4);
    worker.on_handshake(|request| match request.path() {
        "/panic" => panic!("on_handshake panics"),
        "/reject" => Handshake::reject(403, "no"),
        _ => Handshake::accept(),
    });
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let addr = server.local_addr();

    // Four sockets that connect and send nothing take every place.
    let mut silent: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    wait_pending_handshakes(&metrics, 4);
    let mut fifth = std::net::TcpStream::connect(addr).unwrap();
    assert!(closed_without_a_word(&mut fifth));
    assert_eq!(rejected_as_pending(&metrics), Some(1));

    // A client that leaves frees its place; so does every other way a handshake ends: a
    // refusal, a panic in on_handshake, a plain HTTP answer, a connection that opens.
    drop(silent.pop());
    wait_pending_handshakes(&metrics, 3);
    for (request, status) in [
        (upgrade_request_to("/reject"), "403"),
        (upgrade_request_to("/panic"), "500"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), "426"),
    ] {
        let reply = raw_exchange(addr, &request);
        assert!(reply.starts_with(&format!("HTTP/1.1 {status} ")), "{reply}");
        wait_pending_handshakes(&metrics, 3);
    }
    let mut open = RawClient::connect(addr, "/", &[]).unwrap();
    wait_pending_handshakes(&metrics, 3);

    // So one more silent socket fits, and the one after it does not.
    silent.push(std::net::TcpStream::connect(addr).unwrap());
    wait_pending_handshakes(&metrics, 4);
    let mut over = std::net::TcpStream::connect(addr).unwrap();
    assert!(closed_without_a_word(&mut over));
    assert_eq!(rejected_as_pending(&metrics), Some(2));
    let text = metrics.to_prometheus();
    assert!(
        text.contains("wsworker_handshake_rejections_total{reason=\"pending\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("wsworker_handshakes_pending{worker=\"0\"} 4\n"));

    // The open connection never counted, and is served.
    open.conn.send_text("tom").unwrap();
    open.flush();
    assert_eq!(
        open.next_event().unwrap().unwrap(),
        Event::Message(Message::text("hello tom"))
    );
    drop(silent);
    wait_pending_handshakes(&metrics, 0);
    drop(open);
    server.shutdown();
}

#[test]
fn a_handshake_that_times_out_frees_its_place() {
    let mut worker = hello_worker();
    worker
        .count(1)
        .max_pending_handshakes(1)
        .handshake_timeout(Duration::from_millis(200));
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    let _ = silent.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    drop(silent);
    wait_pending_handshakes(&metrics, 0);
    let client = RawClient::connect(addr, "/", &[]).unwrap();
    assert_eq!(metrics.snapshot().rejections.get(&Rejection::Pending), None);
    drop(client);
    server.shutdown();
}

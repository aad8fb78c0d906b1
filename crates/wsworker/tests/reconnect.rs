//! The client's reconnect policy against real servers on loopback: a restarted server, the
//! closes that end a connection and those that do not, the bound on attempts, round robin
//! over URLs, closing and sending between connections; and the client's side of
//! `wsworker.resume.v1` against a scripted server (the frames of `docs/RESUME.md`, written
//! with `wsworker::resume::wire`).

mod common;

use common::{WAIT, event, stop};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use wsworker::resume::wire::{self, Opening, Positions, SessionInfo};
use wsworker::resume::{FailReason, PROTOCOL};
use wsworker::{
    CloseCode, Error, Message, ReadyState, ReconnectPolicy, RunningServer, WebSocket, Worker,
    WsEvent,
};
use wsworker_proto::handshake::ServerHandshake;
use wsworker_proto::{Config, Connection, Event, Role};

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Quick attempts, for servers that come back soon.
fn quick() -> ReconnectPolicy {
    ReconnectPolicy::new()
        .initial_delay(ms(20))
        .max_delay(ms(200))
        .jitter(0.0)
}

/// A server on `addr` that echoes, and closes with CODE on "close CODE".
fn echo_on(addr: &str) -> Worker {
    let mut worker = Worker::new(&format!("websocket://{addr}")).unwrap();
    worker.on_message(|conn, msg| {
        match msg.as_text().and_then(|t| t.strip_prefix("close ")) {
            Some(code) => conn.close(code.parse::<u16>().unwrap_or(4000), "bye")?,
            None => conn.send(msg)?,
        }
        Ok(())
    });
    worker
}

fn url(server: &RunningServer) -> String {
    format!("ws://{}/", server.local_addr())
}

/// A URL on which nothing listens: connections are refused.
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("ws://{}/", listener.local_addr().unwrap())
}

#[track_caller]
fn assert_text(event: WsEvent, expected: &str) {
    match event {
        WsEvent::Message(Message::Text(text)) => assert_eq!(text.as_str(), expected),
        other => panic!("expected the message {expected:?}, got {other:?}"),
    }
}

/// The next event, which must announce attempt `attempt`; its close info.
#[track_caller]
fn reconnecting(event: WsEvent, expected_attempt: u32) -> (Duration, wsworker::CloseInfo) {
    match event {
        WsEvent::Reconnecting {
            attempt,
            delay,
            close,
        } => {
            assert_eq!(attempt, expected_attempt);
            (delay, close)
        }
        other => panic!("expected Reconnecting {{ attempt: {expected_attempt} }}, got {other:?}"),
    }
}

/// Events up to the next open (excluded), which must be failed attempts: an error and the
/// next attempt, each time.
async fn failures_until_open(ws: &WebSocket) -> usize {
    let mut failures = 0;
    loop {
        match event(ws).await {
            WsEvent::Open => return failures,
            // Refused, or cut short by the stopping server.
            WsEvent::Error(_) => failures += 1,
            WsEvent::Reconnecting { close, .. } => {
                assert_eq!((close.code, close.was_clean), (CloseCode::ABNORMAL, false));
            }
            other => panic!("expected failed attempts, got {other:?}"),
        }
    }
}

/// The stream ends after the close event.
async fn assert_ended(ws: &WebSocket) {
    let end = timeout(WAIT, ws.next())
        .await
        .expect("the stream did not end");
    assert!(end.is_none(), "an event after the close: {end:?}");
}

#[tokio::test]
async fn a_restarted_server_is_reconnected_and_held_messages_go_first() {
    let server = echo_on("127.0.0.1:0").start().unwrap();
    let addr = server.local_addr();
    let ws = WebSocket::builder(url(&server)).reconnect(quick()).open();
    assert!(matches!(event(&ws).await, WsEvent::Open));
    ws.send("one").unwrap();
    assert_text(event(&ws).await, "one");

    // A graceful stop says 1001 (going away) to every client.
    stop(server).await;
    let (delay, close) = reconnecting(event(&ws).await, 1);
    assert_eq!((close.code, close.was_clean), (CloseCode::GOING_AWAY, true));
    assert_eq!(delay, ms(20));
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    // Sent while away: held, and sent first once connected again.
    ws.send("held").unwrap();
    assert_eq!(ws.buffered_amount(), 4);

    let server = echo_on(&addr.to_string()).start().unwrap();
    failures_until_open(&ws).await;
    assert_eq!(ws.ready_state(), ReadyState::Open);
    assert_text(event(&ws).await, "held");
    ws.send("two").unwrap();
    assert_text(event(&ws).await, "two");
    assert_eq!(ws.buffered_amount(), 0);

    // The application's close is the end.
    ws.close(1000, "done").unwrap();
    match event(&ws).await {
        WsEvent::Close(info) => assert_eq!((info.code, info.was_clean), (CloseCode::NORMAL, true)),
        other => panic!("{other:?}"),
    }
    assert_ended(&ws).await;
    assert!(matches!(ws.send("late"), Err(Error::Closed)));
    stop(server).await;
}

#[tokio::test]
async fn a_close_with_1000_is_the_end_and_1012_is_not() {
    let mut worker = echo_on("127.0.0.1:0");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    worker.on_connect(move |_| {
        counted.fetch_add(1, Ordering::Relaxed);
    });
    let server = worker.start().unwrap();
    let ws = WebSocket::builder(url(&server))
        .reconnect(quick())
        .connect()
        .await
        .unwrap();

    ws.send("close 1012").unwrap();
    let (_, close) = reconnecting(event(&ws).await, 1);
    assert_eq!(
        (close.code, close.reason.as_str()),
        (CloseCode::SERVICE_RESTART, "bye")
    );
    assert!(matches!(event(&ws).await, WsEvent::Open), "open again");
    ws.send("after the restart").unwrap();
    assert_text(event(&ws).await, "after the restart");

    ws.send("close 1000").unwrap();
    match event(&ws).await {
        WsEvent::Close(info) => assert_eq!((info.code, info.was_clean), (CloseCode::NORMAL, true)),
        other => panic!("{other:?}"),
    }
    assert_ended(&ws).await;
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(connections.load(Ordering::Relaxed), 2);
    stop(server).await;
}

#[tokio::test]
async fn callbacks_hear_each_open_and_one_close() {
    let server = echo_on("127.0.0.1:0").start().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (opened, closed) = (tx.clone(), tx);
    let ws = WebSocket::builder(url(&server))
        .reconnect(quick())
        .on_open(move |ws| {
            let _ = opened.send(format!("open {}", ws.ready_state() as u8));
            // Sent from the callback: goes out on this connection.
            let _ = ws.send("hi");
        })
        .on_close(move |_, info| {
            let _ = closed.send(format!("close {}", info.code));
        })
        .open();
    let mut next = async || timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    assert_eq!(next().await, "open 1");
    assert_text(event(&ws).await, "hi");
    ws.send("close 1011").unwrap();
    let (_, close) = reconnecting(event(&ws).await, 1);
    assert_eq!(close.code, CloseCode::INTERNAL_ERROR);
    assert_eq!(next().await, "open 1", "on_open again");
    assert_text(event(&ws).await, "hi");
    ws.close(4000, "").unwrap();
    assert_eq!(next().await, "close 4000");
    assert_ended(&ws).await;
    stop(server).await;
}

#[tokio::test]
async fn a_policy_decides_which_closes_are_retried() {
    let server = echo_on("127.0.0.1:0").start().unwrap();
    let ws = WebSocket::builder(url(&server))
        .reconnect(quick().reconnect_on(|close| close.code.as_u16() == 4001))
        .connect()
        .await
        .unwrap();
    ws.send("close 4001").unwrap();
    reconnecting(event(&ws).await, 1);
    assert!(matches!(event(&ws).await, WsEvent::Open));
    ws.send("close 1001").unwrap();
    match event(&ws).await {
        WsEvent::Close(info) => assert_eq!(info.code, CloseCode::GOING_AWAY),
        other => panic!("{other:?}"),
    }
    stop(server).await;
}

#[tokio::test(start_paused = true)]
async fn attempts_back_off_and_the_last_failure_ends_with_close() {
    let ws = WebSocket::builder(refused_url())
        .reconnect(
            ReconnectPolicy::new()
                .initial_delay(ms(100))
                .max_delay(ms(250))
                .jitter(0.0)
                .max_attempts(3),
        )
        .open();
    let start = Instant::now();
    let mut delays = Vec::new();
    for attempt in 1..=3 {
        assert!(matches!(event(&ws).await, WsEvent::Error(Error::Io(_))));
        let (delay, close) = reconnecting(event(&ws).await, attempt);
        assert_eq!((close.code, close.was_clean), (CloseCode::ABNORMAL, false));
        assert_eq!(ws.ready_state(), ReadyState::Connecting);
        delays.push(delay);
    }
    assert_eq!(delays, [ms(100), ms(200), ms(250)]);
    assert!(matches!(event(&ws).await, WsEvent::Error(Error::Io(_))));
    match event(&ws).await {
        WsEvent::Close(info) => {
            assert_eq!((info.code, info.was_clean), (CloseCode::ABNORMAL, false))
        }
        other => panic!("{other:?}"),
    }
    // Each attempt waited its delay, on the paused clock.
    let waited = start.elapsed();
    assert!(waited >= ms(550) && waited < ms(600), "{waited:?}");
    assert_ended(&ws).await;
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}

#[tokio::test]
async fn connect_with_a_policy_fails_with_the_last_attempts_error() {
    let result = WebSocket::builder(refused_url())
        .reconnect(quick().max_attempts(2))
        .connect()
        .await;
    assert!(matches!(result, Err(Error::Io(_))), "{result:?}");
}

#[tokio::test]
async fn attempts_go_round_robin_over_the_urls() {
    let server = echo_on("127.0.0.1:0").start().unwrap();
    let (refused, good) = (refused_url(), url(&server));
    let ws = WebSocket::builder(&refused)
        .fallback_urls([&good])
        .reconnect(quick())
        .open();
    assert_eq!(ws.url(), refused);
    assert!(matches!(event(&ws).await, WsEvent::Error(Error::Io(_))));
    reconnecting(event(&ws).await, 1);
    assert_eq!(ws.url(), good, "the next attempt goes to the next URL");
    assert!(matches!(event(&ws).await, WsEvent::Open));
    ws.send("x").unwrap();
    assert_text(event(&ws).await, "x");

    // A loss moves on too: to the first URL (refused), then back to the second.
    ws.send("close 1013").unwrap();
    let (_, close) = reconnecting(event(&ws).await, 1);
    assert_eq!(close.code, CloseCode::TRY_AGAIN_LATER);
    assert_eq!(ws.url(), refused);
    assert!(matches!(event(&ws).await, WsEvent::Error(Error::Io(_))));
    reconnecting(event(&ws).await, 2);
    assert_eq!(ws.url(), good);
    assert!(matches!(event(&ws).await, WsEvent::Open));

    // `connect` resolves at the first open, its failed attempts unreported.
    let ws = WebSocket::builder(&refused)
        .fallback_urls([&good])
        .reconnect(quick())
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.url(), good);
    ws.send("y").unwrap();
    assert_text(event(&ws).await, "y");
    stop(server).await;
}

#[tokio::test]
async fn an_invalid_fallback_url_fails_at_once() {
    let result = WebSocket::builder("ws://127.0.0.1:1/")
        .fallback_urls(["http://127.0.0.1:2/"])
        .reconnect(quick())
        .connect()
        .await;
    assert!(
        matches!(result, Err(Error::InvalidAddress { .. })),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn closing_between_attempts_stops_and_what_is_held_is_bounded() {
    let ws = WebSocket::builder(refused_url())
        .reconnect(ReconnectPolicy::new().initial_delay(Duration::from_secs(60)))
        .queue_limit(2 * 64 + 10)
        .open();
    let start = Instant::now();
    assert!(matches!(event(&ws).await, WsEvent::Error(_)));
    reconnecting(event(&ws).await, 1);
    ws.send("12345").unwrap();
    ws.send(vec![1u8; 5]).unwrap();
    assert_eq!(ws.buffered_amount(), 10);
    assert!(matches!(ws.send(""), Err(Error::QueueFull { .. })));

    ws.close(1000, "").unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    match event(&ws).await {
        WsEvent::Close(info) => {
            assert_eq!((info.code, info.was_clean), (CloseCode::ABNORMAL, false))
        }
        other => panic!("{other:?}"),
    }
    assert_ended(&ws).await;
    assert!(start.elapsed() < Duration::from_secs(60), "no more waiting");
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert_eq!(ws.buffered_amount(), 0, "what was held is dropped");
    assert!(matches!(ws.send("x"), Err(Error::Closed)));
}

#[tokio::test]
async fn without_a_policy_a_loss_is_the_end_as_in_the_browser() {
    let server = echo_on("127.0.0.1:0").start().unwrap();
    let ws = WebSocket::connect(&url(&server), [""; 0]).await.unwrap();
    ws.send("close 1012").unwrap();
    match event(&ws).await {
        WsEvent::Close(info) => assert_eq!(info.code, CloseCode::SERVICE_RESTART),
        other => panic!("{other:?}"),
    }
    assert_ended(&ws).await;
    stop(server).await;
}

/// A scripted server connection: the protocol core on a socket.
struct Peer {
    socket: TcpStream,
    conn: Connection,
}

impl Peer {
    /// Accepts the next connection, agreeing to `wsworker.resume.v1` when it is offered;
    /// also returns the protocols offered.
    async fn accept(listener: &TcpListener) -> (Self, Vec<String>) {
        let (mut socket, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        let mut handshake = ServerHandshake::new();
        let (request, rest) = loop {
            let buf = handshake.recv_buffer_mut();
            buf.reserve(4096);
            let n = socket.read_buf(buf).await.unwrap();
            assert_ne!(n, 0, "the client left during the handshake");
            if let Some(parts) = handshake.poll_request().unwrap() {
                break parts;
            }
        };
        let offered: Vec<String> = request.protocols().map(str::to_owned).collect();
        let protocol = offered.iter().any(|p| p == PROTOCOL).then_some(PROTOCOL);
        let response = request.accept(protocol, None, &[]).unwrap();
        socket.write_all(&response).await.unwrap();
        let mut conn = Connection::new(Role::Server, Config::default());
        conn.receive(&rest);
        (Self { socket, conn }, offered)
    }

    async fn flush(&mut self) {
        while let Some(chunk) = self.conn.poll_transmit() {
            self.socket.write_all(&chunk).await.unwrap();
        }
    }

    async fn send(&mut self, message: impl Into<Message>) {
        self.conn.send_message(message).unwrap();
        self.flush().await;
    }

    /// The next event from the client (pongs included, pings answered).
    async fn event(&mut self) -> Option<Event> {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match self.conn.poll_event() {
                // Answered by the core (the pong is queued).
                Ok(Some(Event::Ping(_))) => continue,
                Ok(Some(event)) => {
                    self.flush().await;
                    return Some(event);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            self.flush().await;
            let n = timeout(WAIT, self.socket.read(&mut buf))
                .await
                .expect("the client said nothing")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.conn.receive(&buf[..n]);
        }
    }

    async fn message(&mut self) -> Message {
        match self.event().await {
            Some(Event::Message(message)) => message,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// A ping and its pong: everything the client had written before the ping arrived has
    /// been read by then.
    async fn barrier(&mut self) {
        self.conn.send_ping(&b"barrier"[..]).unwrap();
        self.flush().await;
        match self.event().await {
            Some(Event::Pong(data)) => assert_eq!(&data[..], b"barrier"),
            other => panic!("expected the pong, got {other:?}"),
        }
    }
}

fn session(token: &str) -> SessionInfo {
    SessionInfo {
        session: "s1".into(),
        token: token.into(),
        window: 120,
    }
}

fn stamp(epoch: u64, offset: u64, id: u64) -> wsworker::hub::Stamp {
    wsworker::hub::Stamp { epoch, offset, id }
}

/// An `m` frame of text.
fn m(topic: &str, stamp: wsworker::hub::Stamp, with_epoch: bool, payload: &str) -> Message {
    Message::text(wire::message_head(topic, &stamp, with_epoch) + payload)
}

/// The next event that is not an error (a dropped connection may report one).
async fn event_past_errors(ws: &WebSocket) -> WsEvent {
    loop {
        match event(ws).await {
            WsEvent::Error(_) => {}
            other => return other,
        }
    }
}

#[tokio::test]
async fn the_client_starts_resumes_and_hands_over_the_payloads_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws = WebSocket::builder(format!("ws://{}/", listener.local_addr().unwrap()))
        .protocols(["chat"])
        .resume(true)
        .reconnect(quick())
        .open();
    // Sent before anything: held until the server's answer.
    ws.send("early").unwrap();

    let (mut server, offered) = Peer::accept(&listener).await;
    assert_eq!(offered, [PROTOCOL, "chat"], "offered first");
    assert_eq!(server.message().await, Message::text("start\n"));
    server.barrier().await;
    assert!(matches!(event(&ws).await, WsEvent::Open));
    assert_eq!(ws.protocol(), PROTOCOL);
    let mut positions = Positions::new();
    positions.insert("all".into(), stamp(7, 0, 0));
    server
        .send(wire::encode_hello(&session("t1"), &positions))
        .await;
    assert_eq!(
        server.message().await,
        Message::text("early"),
        "after the answer"
    );
    match event(&ws).await {
        WsEvent::Session { id, window } => {
            assert_eq!((id.as_str(), window), ("s1", Duration::from_secs(120)))
        }
        other => panic!("{other:?}"),
    }

    server
        .send(m("all", stamp(7, 1, 1), false, "first\nline"))
        .await;
    server
        .send(m("all", stamp(7, 1, 1), false, "duplicate"))
        .await;
    server.send(Message::text("v\nvolatile")).await;
    let big = vec![0xa5u8; 100_000];
    let mut frame = wire::message_head("g:bin", &stamp(9, 5, 5), true).into_bytes();
    frame.extend_from_slice(&big);
    server.send(Message::binary(frame)).await;
    server.send(m("all", stamp(7, 2, 2), false, "second")).await;
    assert_text(event(&ws).await, "first\nline");
    assert_text(event(&ws).await, "volatile");
    match event(&ws).await {
        WsEvent::Message(Message::Binary(data)) => assert_eq!(&data[..], &big[..]),
        other => panic!("{other:?}"),
    }
    assert_text(event(&ws).await, "second");

    // The connection drops; sent meanwhile is held for the next one.
    drop(server);
    let (_, close) = reconnecting(event_past_errors(&ws).await, 1);
    assert_eq!(close.code, CloseCode::ABNORMAL);
    ws.send("while away").unwrap();

    let (mut server, _) = Peer::accept(&listener).await;
    let opening = server.message().await;
    let mut expected = Positions::new();
    expected.insert("all".into(), stamp(7, 2, 2));
    expected.insert("g:bin".into(), stamp(9, 5, 5));
    assert_eq!(
        wire::parse_opening(opening.as_bytes()).unwrap(),
        Opening::Resume {
            token: "t1".into(),
            positions: expected
        }
    );
    server.barrier().await;
    assert!(matches!(event(&ws).await, WsEvent::Open));
    let mut positions = Positions::new();
    positions.insert("g:bin".into(), stamp(10, 0, 0));
    server
        .send(wire::encode_resumed(
            &session("t2"),
            &["all".to_owned()],
            &[("g:bin".to_owned(), FailReason::Epoch)],
            &positions,
        ))
        .await;
    assert_eq!(server.message().await, Message::text("while away"));
    match event(&ws).await {
        WsEvent::Resumed {
            id,
            recovered,
            failed,
        } => {
            assert_eq!(id, "s1");
            assert_eq!(&recovered[..], ["all".to_owned()]);
            assert_eq!(&failed[..], [("g:bin".to_owned(), FailReason::Epoch)]);
        }
        other => panic!("{other:?}"),
    }
    // The replay overlaps what the client had: once each.
    for (offset, text) in [
        (2, "second again"),
        (3, "third"),
        (3, "third again"),
        (4, "fourth"),
    ] {
        server
            .send(m("all", stamp(7, offset, offset), false, text))
            .await;
    }
    assert_text(event(&ws).await, "third");
    assert_text(event(&ws).await, "fourth");

    // A frame that is not the protocol's: reported, and the connection closed with 1002,
    // which is not retried.
    server.send(Message::text("no head")).await;
    assert!(matches!(event(&ws).await, WsEvent::Error(Error::Resume(_))));
    match server.event().await {
        Some(Event::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::PROTOCOL_ERROR),
        other => panic!("{other:?}"),
    }
    server.flush().await;
    drop(server);
    match event(&ws).await {
        WsEvent::Close(info) => assert_eq!(info.code, CloseCode::PROTOCOL_ERROR),
        other => panic!("{other:?}"),
    }
    assert_ended(&ws).await;
}

#[tokio::test]
async fn a_server_that_does_not_agree_to_resume_gets_a_plain_connection() {
    let server = echo_on("127.0.0.1:0").start().unwrap();
    let ws = WebSocket::builder(url(&server))
        .resume(true)
        .reconnect(quick())
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.protocol(), "");
    ws.send("m all 1 0000000000000001\nas is").unwrap();
    assert_text(event(&ws).await, "m all 1 0000000000000001\nas is");
    stop(server).await;
}

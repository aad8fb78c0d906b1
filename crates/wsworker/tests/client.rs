//! The client against our own server on loopback: round trips, subprotocols, closing from
//! either side, the browser's rules, failures to connect, callbacks and ready states.

mod common;

use common::{WAIT, closed, event, message, stop};

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use wsworker::{
    CloseCode, CloseInfo, Error, Handshake, Keepalive, Message, ReadyState, RunningServer,
    WebSocket, Worker, WsEvent,
};
use wsworker_proto::handshake::ServerHandshake;
use wsworker_proto::{Config, Connection, Event, Role};

const NO_PROTOCOLS: [&str; 0] = [];

fn echo_worker() -> Worker {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.on_message(|conn, msg| {
        if msg.as_text() == Some("close me") {
            conn.close(4000, "server says bye")?;
        } else {
            conn.send(msg)?;
        }
        Ok(())
    });
    worker
}

fn url(server: &RunningServer) -> String {
    format!("ws://{}/", server.local_addr())
}

/// Closes normally and checks the echo.
async fn close_normally(ws: &WebSocket) {
    ws.close(1000, "").unwrap();
    let info = closed(ws).await;
    assert_eq!((info.code, info.was_clean), (CloseCode::NORMAL, true));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
}

/// Each `on_close` of the server, as (code, reason, was_clean).
fn record_server_closes(worker: &mut Worker) -> mpsc::UnboundedReceiver<(u16, String, bool)> {
    let (tx, rx) = mpsc::unbounded_channel();
    worker.on_close(move |_, info| {
        let _ = tx.send((info.code.as_u16(), info.reason.clone(), info.was_clean));
    });
    rx
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    timeout(WAIT, rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

#[tokio::test]
async fn hello_round_trip_text_and_binary() {
    let worker = common::hello_worker();
    let server = worker.start().unwrap();
    let ws = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Open);
    assert_eq!(ws.url(), url(&server));
    // permessage-deflate is offered and accepted by default, the server compressing each
    // message on its own, with 12-bit windows both ways.
    let extensions = if cfg!(feature = "deflate") {
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; \
         client_max_window_bits=12"
    } else {
        ""
    };
    assert_eq!((ws.protocol(), ws.extensions()), ("", extensions));
    ws.send("tom").unwrap();
    assert_eq!(message(&ws).await, Message::text("hello tom"));
    ws.send(vec![1u8, 2]).unwrap();
    assert_eq!(
        message(&ws).await,
        Message::binary(b"hello \x01\x02".to_vec())
    );
    close_normally(&ws).await;
    stop(server).await;
}

#[tokio::test]
async fn empty_messages_round_trip() {
    let server = echo_worker().start().unwrap();
    let ws = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap();
    ws.send("").unwrap();
    ws.send(Vec::new()).unwrap();
    assert_eq!(message(&ws).await, Message::text(""));
    assert_eq!(message(&ws).await, Message::binary(Vec::new()));
    close_normally(&ws).await;
    stop(server).await;
}

#[tokio::test]
async fn one_mib_binary_round_trips() {
    let server = echo_worker().start().unwrap();
    let ws = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap();
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    ws.send(data.clone()).unwrap();
    assert!(ws.buffered_amount() <= data.len() + 14);
    assert_eq!(message(&ws).await, Message::binary(data));
    close_normally(&ws).await;
    assert_eq!(ws.buffered_amount(), 0);
    stop(server).await;
}

#[tokio::test]
async fn a_burst_of_100_messages_arrives_in_order() {
    let server = echo_worker().start().unwrap();
    let ws = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap();
    for i in 0..100 {
        ws.send(format!("message {i}")).unwrap();
    }
    for i in 0..100 {
        assert_eq!(message(&ws).await, Message::text(format!("message {i}")));
    }
    close_normally(&ws).await;
    stop(server).await;
}

fn chat_worker() -> Worker {
    let mut worker = echo_worker();
    worker.on_handshake(|request| {
        if request.protocols().any(|p| p == "chat") {
            Handshake::accept_protocol("chat")
        } else {
            Handshake::accept()
        }
    });
    worker
}

#[tokio::test]
async fn the_server_chooses_a_subprotocol() {
    let server = chat_worker().start().unwrap();
    let ws = WebSocket::connect(&url(&server), ["superchat", "chat"])
        .await
        .unwrap();
    assert_eq!(ws.protocol(), "chat");
    close_normally(&ws).await;
    stop(server).await;
}

#[tokio::test]
async fn the_server_chooses_no_subprotocol() {
    let server = chat_worker().start().unwrap();
    let ws = WebSocket::connect(&url(&server), ["superchat"])
        .await
        .unwrap();
    assert_eq!(ws.protocol(), "");
    close_normally(&ws).await;
    stop(server).await;
}

#[tokio::test]
async fn the_client_closes_with_a_code_and_reason() {
    let mut worker = echo_worker();
    let mut server_closes = record_server_closes(&mut worker);
    let server = worker.start().unwrap();
    let ws = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap();
    ws.close(4001, "done here").unwrap();
    assert!(matches!(ws.send("late"), Err(Error::Closed)));
    let info = closed(&ws).await;
    assert_eq!(info.code, CloseCode::new(4001));
    assert!(info.was_clean);
    assert_eq!(
        recv(&mut server_closes).await,
        (4001, "done here".to_owned(), true)
    );
    stop(server).await;
}

#[tokio::test]
async fn the_server_closes_with_a_code_and_reason() {
    let server = echo_worker().start().unwrap();
    let ws = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap();
    ws.send("close me").unwrap();
    let info = closed(&ws).await;
    assert_eq!(
        info,
        CloseInfo {
            code: CloseCode::new(4000),
            reason: "server says bye".into(),
            was_clean: true,
        }
    );
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(matches!(ws.send("late"), Err(Error::Closed)));
    ws.close(1000, "").unwrap(); // closing a closed connection does nothing
    stop(server).await;
}

#[tokio::test]
async fn close_follows_the_browser_rules() {
    let server = echo_worker().start().unwrap();
    let ws = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap();
    for code in [
        999u16, 1001, 1002, 1005, 1006, 1011, 1015, 2999, 5000, 65535,
    ] {
        assert!(
            matches!(ws.close(code, ""), Err(Error::InvalidClose { code: c, reason_len: 0 }) if c == code),
            "code {code}"
        );
    }
    let long = "x".repeat(124);
    assert!(matches!(
        ws.close(1000, &long),
        Err(Error::InvalidClose {
            code: 1000,
            reason_len: 124
        })
    ));
    // 62 two-byte characters: 124 bytes of UTF-8.
    assert!(matches!(
        ws.close(3000, &"é".repeat(62)),
        Err(Error::InvalidClose {
            reason_len: 124,
            ..
        })
    ));
    assert_eq!(
        ws.ready_state(),
        ReadyState::Open,
        "a refused close changes nothing"
    );
    ws.send("still open").unwrap();
    assert_eq!(message(&ws).await, Message::text("still open"));
    ws.close(4999, &"y".repeat(123)).unwrap();
    ws.close(1000, "again").unwrap(); // a second close is a no-op
    let info = closed(&ws).await;
    // The event reports the server's close frame: our code echoed, without the reason.
    assert_eq!((info.code.as_u16(), info.was_clean), (4999, true));
    stop(server).await;
}

#[tokio::test]
async fn a_rejected_handshake_reports_the_status() {
    let mut worker = echo_worker();
    worker.on_handshake(|_| Handshake::reject(403, "go away"));
    let server = worker.start().unwrap();
    let error = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Rejected { status: 403 }),
        "{error:?}"
    );
    stop(server).await;
}

/// An address where nothing listens.
fn closed_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn a_refused_connection_is_an_io_error() {
    let url = format!("ws://{}/", closed_port());
    let error = WebSocket::connect(&url, NO_PROTOCOLS).await.unwrap_err();
    assert!(matches!(&error, Error::Io(_)), "{error:?}");
}

#[tokio::test]
async fn bad_urls_are_refused() {
    for url in [
        "http://127.0.0.1:2346/",
        "ws://",
        "ws:///chat",
        "ws://:80/",
        "127.0.0.1:2346",
        "ws://127.0.0.1:99999/",
        "ws://127.0.0.1/#fragment",
        "",
    ] {
        let error = WebSocket::connect(url, NO_PROTOCOLS).await.unwrap_err();
        assert!(
            matches!(&error, Error::InvalidAddress { address, .. } if address == url),
            "{url}: {error:?}"
        );
    }
    let error = WebSocket::connect("ws://127.0.0.1:1/", ["not a token"])
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Handshake(_)), "{error:?}");
    let error = WebSocket::builder("ws://127.0.0.1:1/")
        .header("Bad", "line\r\nInjected: 1")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Handshake(_)), "{error:?}");
}

#[tokio::test]
#[cfg(not(feature = "tls"))]
async fn wss_needs_the_tls_feature() {
    let error = WebSocket::connect("wss://127.0.0.1:1/", NO_PROTOCOLS)
        .await
        .unwrap_err();
    let Error::Unsupported(what) = error else {
        panic!("{error:?}")
    };
    assert!(what.contains("wss://") && what.contains("tls"), "{what}");
}

/// With TLS, `wss://` gets as far as the TCP connection (TLS itself: tests/tls.rs).
#[tokio::test]
#[cfg(feature = "tls")]
async fn wss_to_a_closed_port_is_an_io_error() {
    let error = WebSocket::connect("wss://127.0.0.1:1/", NO_PROTOCOLS)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Io(_)), "{error:?}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(WAIT).await;
        drop(socket);
    });
    let error = WebSocket::builder(format!("ws://{addr}/"))
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    hold.abort();
}

#[tokio::test]
async fn open_reports_a_failure_as_error_then_close_1006() {
    let ws = WebSocket::builder(format!("ws://{}/", closed_port())).open();
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    assert!(matches!(event(&ws).await, WsEvent::Error(Error::Io(_))));
    let info = closed(&ws).await;
    assert_eq!((info.code, info.was_clean), (CloseCode::ABNORMAL, false));
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    assert!(matches!(ws.send("x"), Err(Error::Closed)));
}

#[tokio::test]
async fn open_with_callbacks_fires_open_message_and_close() {
    let server = echo_worker().start().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let (on_open, on_message, on_close) = (tx.clone(), tx.clone(), tx);
    let ws = WebSocket::builder(url(&server))
        .on_open(move |ws| {
            on_open
                .send(format!("open {:?}", ws.ready_state()))
                .unwrap();
            ws.send("tom").unwrap();
        })
        .on_message(move |ws, msg| {
            on_message
                .send(format!("message {}", msg.to_text()?))
                .unwrap();
            ws.close(3000, "thanks")?;
            Ok(())
        })
        .on_close(move |ws, info| {
            let line = format!("close {} {} {}", info.code, info.reason, info.was_clean);
            on_close.send(line).unwrap();
            assert_eq!(ws.ready_state(), ReadyState::Closed);
        })
        .open();
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    assert_eq!(recv(&mut rx).await, "open Open");
    assert_eq!(recv(&mut rx).await, "message tom");
    assert_eq!(recv(&mut rx).await, "close 3000  true"); // the server's echo
    // Every event went to a callback: the stream only ends.
    assert!(timeout(WAIT, ws.next()).await.unwrap().is_none());
    stop(server).await;
}

#[tokio::test]
async fn ready_state_goes_connecting_open_closing_closed() {
    let server = echo_worker().start().unwrap();
    let ws = WebSocket::builder(url(&server)).open();
    assert_eq!(ws.ready_state(), ReadyState::Connecting);
    assert!(matches!(event(&ws).await, WsEvent::Open));
    assert_eq!(ws.ready_state(), ReadyState::Open);
    ws.close(1000, "bye").unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    let info = closed(&ws).await;
    assert!(info.was_clean);
    assert_eq!(ws.ready_state(), ReadyState::Closed);
    stop(server).await;
}

#[tokio::test]
async fn messages_sent_while_connecting_go_out_after_the_handshake() {
    let server = echo_worker().start().unwrap();
    let ws = WebSocket::builder(url(&server)).open();
    ws.send("early").unwrap();
    assert!(matches!(event(&ws).await, WsEvent::Open));
    assert_eq!(message(&ws).await, Message::text("early"));
    close_normally(&ws).await;
    stop(server).await;
}

#[tokio::test]
async fn close_while_connecting_fails_the_attempt() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(WAIT).await;
        drop(socket);
    });
    let ws = WebSocket::builder(format!("ws://{addr}/")).open();
    ws.close(1000, "").unwrap();
    assert_eq!(ws.ready_state(), ReadyState::Closing);
    assert!(matches!(event(&ws).await, WsEvent::Error(Error::Closed)));
    let info = closed(&ws).await;
    assert_eq!((info.code, info.was_clean), (CloseCode::ABNORMAL, false));
    hold.abort();
}

#[tokio::test]
async fn dropping_every_handle_closes_with_1000() {
    let mut worker = echo_worker();
    let mut server_closes = record_server_closes(&mut worker);
    let server = worker.start().unwrap();
    let ws = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap();
    let other = ws.clone();
    drop(ws);
    other.send("still here").unwrap();
    assert_eq!(message(&other).await, Message::text("still here"));
    drop(other);
    assert_eq!(recv(&mut server_closes).await, (1000, String::new(), true));
    stop(server).await;
}

#[tokio::test]
async fn the_handle_is_a_stream() {
    let server = echo_worker().start().unwrap();
    let mut ws = WebSocket::connect(&url(&server), NO_PROTOCOLS)
        .await
        .unwrap();
    ws.send("via stream").unwrap();
    let next = timeout(WAIT, poll_fn(|cx| Pin::new(&mut ws).poll_next(cx)))
        .await
        .unwrap();
    assert!(matches!(next, Some(WsEvent::Message(m)) if m == Message::text("via stream")));
    ws.close(1000, "").unwrap();
    let mut events = Vec::new();
    while let Some(event) = timeout(WAIT, poll_fn(|cx| Pin::new(&mut ws).poll_next(cx)))
        .await
        .unwrap()
    {
        events.push(event);
    }
    assert!(matches!(&events[..], [WsEvent::Close(info)] if info.was_clean));
    stop(server).await;
}

#[tokio::test]
async fn a_panicking_callback_is_reported_and_closes_with_1011() {
    let mut worker = echo_worker();
    let mut server_closes = record_server_closes(&mut worker);
    let server = worker.start().unwrap();
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let ws = WebSocket::builder(url(&server))
        .on_message(|_, _| panic!("boom"))
        .on_error(move |_, error| seen.lock().unwrap().push(error.to_string()))
        .connect()
        .await
        .unwrap();
    ws.send("trigger").unwrap();
    let info = closed(&ws).await;
    assert_eq!(info.code, CloseCode::INTERNAL_ERROR);
    assert_eq!(*errors.lock().unwrap(), ["callback panicked: boom"]);
    assert_eq!(recv(&mut server_closes).await.0, 1011);
    stop(server).await;
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let server = echo_worker().start().unwrap();
    let ws = WebSocket::builder(url(&server))
        .max_message_size(10)
        .connect()
        .await
        .unwrap();
    ws.send("0123456789").unwrap();
    assert_eq!(message(&ws).await, Message::text("0123456789"));
    ws.send("0123456789a").unwrap();
    assert!(matches!(event(&ws).await, WsEvent::Error(Error::Proto(_))));
    let info = closed(&ws).await;
    assert_eq!(info.code, CloseCode::MESSAGE_TOO_BIG);
    stop(server).await;
}

#[test]
fn handles_and_their_futures_are_send_and_sync() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync + Clone + Unpin>() {}
    assert_send_sync::<WebSocket>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ws = WebSocket::builder(format!("ws://{}/", closed_port())).open();
        assert_send(&ws.next());
        assert_send(&WebSocket::connect("ws://127.0.0.1:1/", NO_PROTOCOLS));
        assert_send(&WebSocket::builder("ws://127.0.0.1:1/").connect());
    });
}

#[tokio::test]
async fn a_server_whose_client_reads_late_goes_full_then_drains() {
    // 48 MiB sent at once to a client whose application reads nothing yet: the server's
    // buffer goes over its soft limit (on_buffer_full), then every message arrives, in order,
    // and the buffer drains (on_buffer_drain). That the client stops reading meanwhile is
    // `a_client_that_does_not_read_its_events_pushes_back_on_the_server`.
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    let (full_tx, mut full_rx) = mpsc::unbounded_channel();
    let drained = full_tx.clone();
    worker
        .permessage_deflate(None)
        // Room for all 48 MiB: only the client's reading decides how fast the buffer drains.
        .send_buffer_limits(1 << 20, 64 << 20)
        .on_connect(|conn| {
            for i in 0..48u8 {
                let _ = conn.send(vec![i; 1 << 20]);
            }
        })
        .on_buffer_full(move |_| {
            let _ = full_tx.send("full");
        })
        .on_buffer_drain(move |_| {
            let _ = drained.send("drain");
        });
    let server = worker.start().unwrap();
    let ws = WebSocket::builder(format!("ws://{}/", server.local_addr()))
        .connect()
        .await
        .unwrap();
    assert_eq!(timeout(WAIT, full_rx.recv()).await.unwrap(), Some("full"));
    for i in 0..48u8 {
        let message = message(&ws).await;
        assert_eq!(message.len(), 1 << 20);
        assert!(
            message.as_bytes().iter().all(|&b| b == i),
            "message {i} out of order"
        );
    }
    assert_eq!(timeout(WAIT, full_rx.recv()).await.unwrap(), Some("drain"));
    ws.close(1000, "").unwrap();
    closed(&ws).await;
    stop(server).await;
}

/// A one-connection server in the test's own runtime: the protocol core's handshake over a
/// raw loopback socket, then `serve` with the socket (no subprotocol, no extension). Nothing
/// of it runs outside the runtime, so that the paused clock moves only once the client and
/// the server both wait ([`settle`]).
async fn raw_server<F, Fut>(serve: F) -> (String, JoinHandle<()>)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut handshake = ServerHandshake::new();
        let request = loop {
            let buf = handshake.recv_buffer_mut();
            buf.reserve(4096);
            let n = socket.read_buf(buf).await.unwrap();
            assert_ne!(n, 0, "the client left during the handshake");
            if let Some((request, rest)) = handshake.poll_request().unwrap() {
                assert!(rest.is_empty(), "frames before the response");
                break request;
            }
        };
        let response = request.accept(None, None, &[]).unwrap();
        socket.write_all(&response).await.unwrap();
        serve(socket).await;
    });
    (url, task)
}

/// When the server of [`behind`] sends what it was given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    /// Right after the handshake.
    AtOnce,
    /// On the client's first (keepalive) ping, ahead of the pong that answers it.
    OnPing,
}

/// What the server of [`behind`] does once it has written what it was given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Answers as a live server does until the client leaves: pongs for pings, the closing
    /// handshake, then the end of the TCP connection (the server's to close first).
    Answer,
    /// Reads and answers nothing until the client leaves.
    KeepSilent,
}

/// Serves `conn` on `socket` as [`Then`] says.
async fn serve(mut conn: Connection, mut socket: TcpStream, then: Then) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        if then == Then::KeepSilent {
            continue;
        }
        conn.receive(&buf[..n]);
        while let Ok(Some(_)) = conn.poll_event() {}
        while let Some(chunk) = conn.poll_transmit() {
            if socket.write_all(&chunk).await.is_err() {
                return;
            }
        }
        if conn.is_receive_done() {
            return;
        }
    }
}

/// Writes what `conn` queued, counting the bytes in `written` as they go.
async fn write_counted(conn: &mut Connection, socket: &mut TcpStream, written: &AtomicUsize) {
    while let Some(chunk) = conn.poll_transmit() {
        for piece in chunk.chunks(64 * 1024) {
            socket.write_all(piece).await.unwrap();
            written.fetch_add(piece.len(), Ordering::SeqCst);
        }
    }
}

/// Reads until `conn` has seen a ping (whose pong it queues).
async fn await_ping(conn: &mut Connection, socket: &mut TcpStream) {
    let mut buf = vec![0; 1024];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        assert_ne!(n, 0, "the client left before pinging");
        conn.receive(&buf[..n]);
        while let Some(event) = conn.poll_event().unwrap() {
            if matches!(event, Event::Ping(_)) {
                return;
            }
        }
    }
}

/// A client whose application has read nothing, and a raw server ([`raw_server`]) that sent it,
/// as `when` says, what `queue` queues on a server's protocol core, then does as `then` says;
/// returned once neither can go further ([`settle`]), with how many bytes the server could
/// write by then.
async fn behind(
    queue: impl FnOnce(&mut Connection) + Send + 'static,
    keepalive: Option<Keepalive>,
    when: When,
    then: Then,
) -> (WebSocket, JoinHandle<()>, usize) {
    let written = Arc::new(AtomicUsize::new(0));
    let progress = written.clone();
    let (url, server) = raw_server(move |mut socket| async move {
        let mut conn = Connection::new(Role::Server, Config::default());
        if when == When::OnPing {
            await_ping(&mut conn, &mut socket).await;
        }
        // Frames of whole, uncompressed messages owe nothing to the connection's state: a
        // second core encodes them, so that they go ahead of what `conn` queued (the pong).
        let mut given = Connection::new(Role::Server, Config::default());
        queue(&mut given);
        write_counted(&mut given, &mut socket, &progress).await;
        write_counted(&mut conn, &mut socket, &progress).await;
        serve(conn, socket, then).await;
    })
    .await;
    let ws = WebSocket::builder(url)
        .keepalive(keepalive)
        .connect()
        .await
        .unwrap();
    settle(&written).await;
    (ws, server, written.load(Ordering::SeqCst))
}

/// Returns once every task of the test's runtime waits with nothing to do: the clock is paused
/// and moves (by an hour here) only then, and only when no socket is ready. The server's
/// written count must then stay as it is across a second such wait, so that a packet still on
/// its way through the kernel cannot pass for the end of the traffic.
async fn settle(written: &AtomicUsize) {
    tokio::time::pause();
    for _ in 0..10 {
        let before = written.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        if written.load(Ordering::SeqCst) == before {
            break;
        }
    }
    tokio::time::resume();
}

/// The events the client's stream holds right now, taken without waiting. Nothing else runs on
/// the test's thread meanwhile, so the client's driver cannot add any.
fn queued_events(ws: &WebSocket) -> Vec<WsEvent> {
    let mut events = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        let next = pin!(tokio::task::unconstrained(ws.next()));
        match next.poll(&mut cx) {
            Poll::Ready(Some(event)) => events.push(event),
            Poll::Ready(None) | Poll::Pending => return events,
        }
    }
}

/// `count` messages of 1 MiB, the `i`th made of the byte `i`.
fn mebibytes(count: u8) -> impl FnOnce(&mut Connection) + Send + 'static {
    move |conn| {
        for i in 0..count {
            conn.send_binary(vec![i; 1 << 20]).unwrap();
        }
    }
}

/// Checks that `events`, then the stream, hold the messages of [`mebibytes`], in order.
async fn take_mebibytes(ws: &WebSocket, events: Vec<WsEvent>, count: u8) {
    let mut events = events.into_iter();
    for i in 0..count {
        let message = match events.next() {
            Some(WsEvent::Message(message)) => message,
            Some(other) => panic!("expected a message, got {other:?}"),
            None => message(ws).await,
        };
        assert_eq!(message.len(), 1 << 20);
        assert!(
            message.as_bytes().iter().all(|&b| b == i),
            "message {i} out of order"
        );
    }
    assert!(events.next().is_none());
}

#[tokio::test]
async fn a_client_that_does_not_read_its_events_pushes_back_on_the_server() {
    // 48 messages of 1 MiB to a client whose application reads nothing yet: the client stops
    // reading once more than 16 MiB of messages wait, so the rest stays with the server
    // instead of going to the client's memory; then every message arrives, in order.
    let (ws, server, written) = behind(mebibytes(48), None, When::AtOnce, Then::Answer).await;
    let queued = queued_events(&ws);
    // The read that took the backlog over the limit may have completed one more message or
    // two.
    assert!(
        (16..=18).contains(&queued.len()),
        "{} messages queued",
        queued.len()
    );
    assert!(
        written < 48 << 20,
        "the server could write everything although nobody read the client's events"
    );
    take_mebibytes(&ws, queued, 48).await;
    close_normally(&ws).await;
    timeout(WAIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_flood_of_empty_messages_stops_the_client_reading_too() {
    // Empty text frames, two bytes each on the wire, weigh nothing in payload: each event's
    // own weight (64) must still bound the queue, so the client stops reading after 16 MiB
    // worth of events (262,144) instead of queueing the whole flood.
    const FRAMES: usize = 1 << 19;
    let flood = |conn: &mut Connection| {
        for _ in 0..FRAMES {
            conn.send_text("").unwrap();
        }
    };
    let (ws, server, _) = behind(flood, None, When::AtOnce, Then::Answer).await;
    let queued = queued_events(&ws);
    // Reading stops at the first room check above the limit: one read (64 KiB, 32,768
    // frames; twice that allowed) after the limit was reached.
    let at_limit = (16 << 20) / 64;
    assert!(
        queued.len() > at_limit && queued.len() <= at_limit + 65_536,
        "{} events queued",
        queued.len()
    );
    let mut count = 0;
    for event in queued {
        assert!(matches!(event, WsEvent::Message(m) if m == Message::text("")));
        count += 1;
    }
    // Then reading resumes and the rest arrives.
    let rest = async {
        while count < FRAMES {
            match ws.next().await {
                Some(WsEvent::Message(m)) => assert_eq!(m, Message::text("")),
                other => panic!("expected a message, got {other:?}"),
            }
            count += 1;
        }
    };
    timeout(WAIT, rest).await.expect("timed out");
    close_normally(&ws).await;
    timeout(WAIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn queued_messages_do_not_keep_the_read_buffer_alive() {
    // A message handed out as a slice of the buffer it was read into (64 KiB) keeps all of
    // it alive while it waits in the queue: a server trickling one tiny message per read would
    // make each cost 64 KiB, whatever the backlog counts. A queued message smaller than that
    // owns its bytes, lent (up to 4 KiB) or handed out whole (above), whether it came with
    // the handshake's response or later.
    for when in [When::AtOnce, When::OnPing] {
        let messages = |conn: &mut Connection| {
            conn.send_binary(vec![1u8; 10]).unwrap();
            conn.send_binary(vec![2u8; 10 << 10]).unwrap();
        };
        let (ws, server, _) = behind(messages, Some(KEEPALIVE), when, Then::Answer).await;
        let queued = queued_events(&ws);
        assert_eq!(queued.len(), 2);
        for event in queued {
            let WsEvent::Message(Message::Binary(data)) = event else {
                panic!("expected a binary message, got {event:?}");
            };
            let len = data.len();
            let data = data
                .try_into_mut()
                .unwrap_or_else(|_| panic!("a message of {len} bytes shares its allocation"));
            assert_eq!(data.capacity(), len, "a message of {len} bytes");
        }
        close_normally(&ws).await;
        timeout(WAIT, server).await.unwrap().unwrap();
    }
}

const KEEPALIVE: Keepalive = Keepalive {
    interval: Duration::from_secs(30),
    timeout: Duration::from_secs(30),
};

#[tokio::test]
async fn keepalive_spares_a_live_server_while_the_application_is_behind() {
    // The server answers the keepalive ping behind 17 MiB of messages, more than the backlog
    // holds: the application reads nothing for an hour (on the paused clock: many keepalive
    // intervals and timeouts), so the client stops reading and the pong waits unread in the
    // socket. The server is alive, though: the connection must still be open when the
    // application catches up.
    let (ws, server, _) = behind(mebibytes(17), Some(KEEPALIVE), When::OnPing, Then::Answer).await;
    take_mebibytes(&ws, Vec::new(), 17).await;
    assert_eq!(ws.ready_state(), ReadyState::Open);
    close_normally(&ws).await;
    timeout(WAIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn keepalive_keeps_a_server_that_answers_on_a_paused_clock() {
    // On the paused clock the ping and its pong are often seen at the same instant (the clock
    // stands still while the client and the server work): that pong answers the ping too.
    let (ws, server, _) = behind(|_| {}, Some(KEEPALIVE), When::AtOnce, Then::Answer).await;
    // The hour that `behind` waited: 60 pings, each answered.
    assert_eq!(ws.ready_state(), ReadyState::Open);
    assert!(queued_events(&ws).is_empty());
    close_normally(&ws).await;
    timeout(WAIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn keepalive_drops_a_silent_server_once_the_application_catches_up() {
    // The keepalive waits while the application is behind, and starts again when it has
    // caught up: a server silent from then on is dropped after interval + timeout.
    let (ws, server, _) = behind(
        mebibytes(17),
        Some(KEEPALIVE),
        When::AtOnce,
        Then::KeepSilent,
    )
    .await;
    take_mebibytes(&ws, Vec::new(), 17).await;
    let caught_up = Instant::now();
    // Time is the subject: the paused clock runs to the keepalive's steps.
    tokio::time::pause();
    let next = timeout(Duration::from_secs(3600), ws.next()).await.unwrap();
    assert!(
        matches!(next, Some(WsEvent::Error(Error::Timeout(_)))),
        "{next:?}"
    );
    // Counted from when the application caught up (give or take the real time the catching
    // up took, and the timer's millisecond ticks).
    let silence = KEEPALIVE.interval + KEEPALIVE.timeout;
    let elapsed = caught_up.elapsed();
    assert!(
        elapsed > silence - Duration::from_secs(1) && elapsed < silence + Duration::from_secs(1),
        "{elapsed:?}"
    );
    let next = timeout(Duration::from_secs(3600), ws.next()).await.unwrap();
    assert!(
        matches!(&next, Some(WsEvent::Close(info)) if info.code == CloseCode::ABNORMAL && !info.was_clean),
        "{next:?}"
    );
    tokio::time::resume();
    timeout(WAIT, server).await.unwrap().unwrap();
}

//! The server against real sockets on loopback: handshake answers, echo, close, broadcast,
//! callbacks, panics, workers.

mod common;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use common::{RawClient, hello_worker, raw_exchange};
use wsworker::{CloseCode, Handshake, HttpResponse, Message, MessageRef, Worker};
use wsworker_proto::Event;

#[test]
fn hello_tom() {
    let server = hello_worker().start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    client.conn.send_text("tom").unwrap();
    client.flush();
    assert_eq!(
        client.next_event().unwrap().unwrap(),
        Event::Message(Message::text("hello tom"))
    );
    client.conn.send_binary(vec![1u8, 2]).unwrap();
    client.flush();
    assert_eq!(
        client.next_event().unwrap().unwrap(),
        Event::Message(Message::binary(b"hello \x01\x02".to_vec()))
    );
    client.conn.close(CloseCode::NORMAL, "bye").unwrap();
    client.flush();
    let Event::Close(Some(frame)) = client.next_event().unwrap().unwrap() else {
        panic!("expected the close echo")
    };
    assert_eq!(frame.code, CloseCode::NORMAL);
    assert!(
        client.reads_eof(),
        "the server closes the TCP connection first"
    );
    drop(client);
    server.shutdown();
}

#[test]
fn frames_sent_with_the_handshake_are_not_lost() {
    let server = hello_worker().start().unwrap();
    let addr = server.local_addr();
    let mut handshake =
        wsworker_proto::handshake::ClientHandshake::new(&format!("ws://{addr}/")).unwrap();
    let mut client = wsworker_proto::Connection::new(
        wsworker_proto::Role::Client,
        wsworker_proto::Config::default(),
    );
    client.send_text("early").unwrap();
    let mut bytes = handshake.request_bytes();
    while let Some(chunk) = client.poll_transmit() {
        bytes.extend_from_slice(&chunk);
    }
    let reply = raw_exchange_until(addr, &bytes, b"hello early");
    assert!(reply.contains("101 Switching Protocols"), "{reply}");
    let _ = &mut handshake;
    server.shutdown();
}

/// A TCP socket of this machine as `/proc/net/tcp` lists it (IPv4).
struct TcpEntry {
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    /// The kernel's state number: 1 ESTABLISHED, 8 CLOSE_WAIT, 10 LISTEN, ...
    state: u8,
    /// For a listening socket: the connections waiting in its accept queue.
    rx_queue: u32,
}

/// Every IPv4 TCP socket of this machine (those of other network namespaces aside).
fn tcp_sockets() -> Vec<TcpEntry> {
    // "0100007F:1F90": the address's bytes (in network order in memory) printed as one
    // native u32 in hex, then the port in hex.
    fn address(hex: &str) -> Option<std::net::SocketAddr> {
        let (ip, port) = hex.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(std::net::SocketAddr::from((
            std::net::Ipv4Addr::from(ip.to_ne_bytes()),
            port,
        )))
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (_, rx_queue) = fields.get(4)?.split_once(':')?;
            Some(TcpEntry {
                local: address(fields.get(1)?)?,
                remote: address(fields.get(2)?)?,
                state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
                rx_queue: u32::from_str_radix(rx_queue, 16).ok()?,
            })
        })
        .collect()
}

/// Waits (bounded) until `ready` holds for the machine's TCP sockets.
fn wait_for_sockets(what: &str, ready: impl Fn(&[TcpEntry]) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ready(&tcp_sockets()) {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn the_end_of_a_client_that_arrives_while_its_handshake_waits_is_seen() {
    // The worker is held in a callback while another client's request, two messages and its
    // FIN arrive in one burst: the edges that reported all of it came while that client's
    // handshake was still under way, and its open connection must still see the end.
    let (closed_tx, closed_rx) = mpsc::channel();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = std::sync::Mutex::new(release_rx);
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.keepalive(None);
    worker.on_message(move |_, message| {
        if message == Message::text("block") {
            let _ = entered_tx.send(());
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
        }
        Ok(())
    });
    worker.on_close(move |conn, _| {
        let _ = closed_tx.send(conn.id());
    });
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    let mut blocker = RawClient::connect(addr, "/", &[]).unwrap();
    let mut late = std::net::TcpStream::connect(addr).unwrap();
    let late_addr = late.local_addr().unwrap();
    // Accepted: the server's end of it is there and the listener's queue is empty. The loop
    // polls a handshake in the round that accepted it, so it has looked for the request
    // (none yet) and waits for an edge.
    wait_for_sockets("the late connection accepted", |sockets| {
        let established = sockets
            .iter()
            .any(|s| s.local == addr && s.remote == late_addr && s.state == 1);
        let queued: u32 = sockets
            .iter()
            .filter(|s| s.local == addr && s.state == 10)
            .map(|s| s.rx_queue)
            .sum();
        established && queued == 0
    });
    blocker.conn.send_text("block").unwrap();
    blocker.flush();
    entered_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the worker never ran the blocking callback");

    let handshake =
        wsworker_proto::handshake::ClientHandshake::new(&format!("ws://{addr}/")).unwrap();
    let mut client = wsworker_proto::Connection::new(
        wsworker_proto::Role::Client,
        wsworker_proto::Config::default(),
    );
    // More than the handshake reads at once, then a little more.
    client.send_binary(vec![7u8; 4096]).unwrap();
    client.send_binary(vec![7u8; 10]).unwrap();
    let mut bytes = handshake.request_bytes();
    while let Some(chunk) = client.poll_transmit() {
        bytes.extend_from_slice(&chunk);
    }
    late.write_all(&bytes).unwrap();
    late.shutdown(std::net::Shutdown::Write).unwrap();
    // The server's kernel has all of it, the FIN too (its end is in CLOSE_WAIT), while the
    // worker is still held.
    wait_for_sockets("the late connection's FIN received", |sockets| {
        sockets
            .iter()
            .any(|s| s.local == addr && s.remote == late_addr && s.state == 8)
    });
    release_tx.send(()).unwrap();

    let closed = closed_rx.recv_timeout(Duration::from_secs(5));
    assert!(
        closed.is_ok(),
        "the server never saw the end of the connection whose handshake it came during"
    );
    drop(blocker);
    server.shutdown();
}

/// Sends bytes and reads until `needle` appears (or the timeout).
fn raw_exchange_until(addr: std::net::SocketAddr, bytes: &[u8], needle: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(needle.len()).any(|w| w == needle) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn plain_get_without_handler_gets_426() {
    let server = hello_worker().start().unwrap();
    let reply = raw_exchange(server.local_addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 426 "), "{reply}");
    assert!(reply.contains("Upgrade: websocket"), "{reply}");
    server.shutdown();
}

#[test]
fn plain_get_goes_to_the_http_handler() {
    let mut worker = hello_worker();
    worker.on_http(|req| match req.path() {
        "/" => HttpResponse::html("<h1>demo</h1>"),
        "/app.js" => HttpResponse::javascript("let x = 1;"),
        _ => HttpResponse::not_found(),
    });
    let server = worker.start().unwrap();
    let reply = raw_exchange(server.local_addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(
        reply.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"),
        "{reply}"
    );
    assert!(reply.ends_with("<h1>demo</h1>"), "{reply}");
    // A script the page loads: browsers run it only with a JavaScript content type.
    let reply = raw_exchange(
        server.local_addr(),
        b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(
        reply.contains("\r\nContent-Type: text/javascript; charset=utf-8\r\n"),
        "{reply}"
    );
    assert!(reply.ends_with("let x = 1;"), "{reply}");
    let reply = raw_exchange(
        server.local_addr(),
        b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 404 "), "{reply}");
    let reply = raw_exchange(server.local_addr(), b"POST / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 405 "), "{reply}");
    server.shutdown();
}

#[test]
fn malformed_and_invalid_requests_get_a_status() {
    let server = hello_worker().start().unwrap();
    let addr = server.local_addr();
    let cases: [(&[u8], &str); 4] = [
        (b"garbage\r\n\r\n", "400"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "426",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n",
            "400",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
            "400",
        ),
    ];
    for (request, status) in cases {
        let reply = raw_exchange(addr, request);
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request:?} -> {reply}"
        );
    }
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 10_000));
    big.extend_from_slice(b"\r\n\r\n");
    assert!(raw_exchange(addr, &big).starts_with("HTTP/1.1 431 "));
    server.shutdown();
}

#[test]
fn requests_that_must_not_be_upgraded_get_400() {
    let server = hello_worker().start().unwrap();
    let addr = server.local_addr();
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for request in [
        format!("GET * HTTP/1.1\r\nHost: x\r\n{upgrade}\r\n"),
        format!("GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n{upgrade}\r\n"),
        // A body would be read as the first frames.
        format!("GET / HTTP/1.1\r\nHost: x\r\n{upgrade}Content-Length: 6\r\n\r\nabcdef"),
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{upgrade}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        ),
    ] {
        let reply = raw_exchange(addr, request.as_bytes());
        assert!(
            reply.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{request:?} -> {reply}"
        );
    }
    server.shutdown();
}

#[test]
fn head_gets_the_content_length_of_the_get_and_no_body() {
    let mut worker = hello_worker();
    worker.on_http(|_| HttpResponse::html("<h1>demo</h1>"));
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    let get = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
    assert_eq!(get_body, "<h1>demo</h1>");
    let head = raw_exchange(addr, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    // Everything up to the end of the head, and nothing after it.
    assert_eq!(head, format!("{get_head}\r\n\r\n"));
    let length = format!("\r\nContent-Length: {}\r\n", get_body.len());
    assert!(head.contains(&length), "{head}");
    server.shutdown();
}

#[test]
fn a_refused_head_gets_the_head_of_the_refusal_and_no_body() {
    // No on_http: a plain HEAD gets the head of the 426 a GET gets.
    let server = hello_worker().start().unwrap();
    let addr = server.local_addr();
    let get = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
    assert!(get_head.starts_with("HTTP/1.1 426 "), "{get}");
    assert!(!get_body.is_empty(), "a GET's refusal says why");
    let head = raw_exchange(addr, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head, format!("{get_head}\r\n\r\n"));
    // A HEAD that asks for an upgrade gets a 405, also without a body.
    let head = raw_exchange(
        addr,
        b"HEAD / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 405 "), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "nothing after the head: {head:?}"
    );
    server.shutdown();
}

#[test]
fn on_handshake_sees_the_request_and_decides() {
    let mut worker = hello_worker();
    worker.on_handshake(|req| {
        if req.query() == Some("token=secret") {
            match req.protocols().find(|p| *p == "chat") {
                Some(p) => Handshake::accept_protocol(p),
                None => Handshake::accept(),
            }
        } else {
            Handshake::reject(403, "forbidden")
        }
    });
    let (tx, rx) = mpsc::channel();
    worker.on_connect(move |conn| {
        let _ = tx.send((
            conn.request().path().to_owned(),
            conn.protocol().map(str::to_owned),
        ));
    });
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    let client = RawClient::connect(addr, "/room?token=secret", &["x", "chat"]).unwrap();
    assert_eq!(client.response.protocol(), Some("chat"));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        ("/room".to_owned(), Some("chat".to_owned()))
    );
    let Err(err) = RawClient::connect(addr, "/room", &[]) else {
        panic!("the handshake should be refused")
    };
    assert!(err.contains("403"), "{err}");
    drop(client);
    server.shutdown();
}

/// What an asynchronous handshake attaches to its connection.
#[derive(Debug, PartialEq)]
struct User(String);

#[test]
fn an_async_handshake_attaches_data_and_other_connections_go_on_meanwhile() {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    // The decision for `slow` waits until `fast` has been served: were decisions awaited
    // one at a time, neither would finish.
    let fast_served = Arc::new(tokio::sync::Notify::new());
    let served = fast_served.clone();
    let (waiting_tx, waiting) = mpsc::channel();
    let waiting_tx = std::sync::Mutex::new(waiting_tx);
    worker
        .handshake_timeout(Duration::from_secs(2))
        .on_handshake_async(move |req| {
            let served = served.clone();
            let waiting = waiting_tx.lock().unwrap().clone();
            async move {
                match req.query_param("name").as_deref() {
                    Some("slow") => {
                        let notified = served.notified();
                        let _ = waiting.send(());
                        notified.await;
                    }
                    Some("never") => std::future::pending().await,
                    Some("panic") => panic!("the lookup failed"),
                    Some(_) => {}
                    None => return Handshake::reject(401, "who are you?"),
                }
                let name = req.query_param("name").unwrap_or_default().into_owned();
                Handshake::accept().with_data(User(name))
            }
        })
        .on_message(|conn, _| {
            let user = conn.data::<User>().expect("the handshake attached a user");
            conn.send(format!("hello {}", user.0))?;
            Ok(())
        });
    let notify = fast_served.clone();
    worker.on_connect(move |conn| {
        if conn.data::<User>().is_some_and(|u| u.0 == "fast") {
            notify.notify_one();
        }
    });
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    let slow = std::thread::spawn(move || RawClient::connect(addr, "/?name=slow", &[]));
    waiting.recv_timeout(Duration::from_secs(5)).unwrap();
    let mut fast = RawClient::connect(addr, "/?name=fast", &[]).unwrap();
    let mut slow = slow.join().unwrap().unwrap();
    for (client, name) in [(&mut fast, "fast"), (&mut slow, "slow")] {
        client.conn.send_text("hi").unwrap();
        client.flush();
        assert_eq!(
            client.next_event().unwrap().unwrap(),
            Event::Message(Message::from(format!("hello {name}")))
        );
    }
    let refused = |path: &str| match RawClient::connect(addr, path, &[]) {
        Ok(_) => panic!("{path} should be refused"),
        Err(err) => err,
    };
    assert!(refused("/").contains("401"));
    assert!(refused("/?name=panic").contains("500"));
    // The decision is bounded by the handshake timeout.
    assert!(refused("/?name=never").contains("408"));
    drop((fast, slow));
    server.shutdown();
}

#[test]
fn routes_serve_several_endpoints_on_one_port_sharing_the_hub() {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    let hub = worker.hub();
    worker
        .route("/echo", |echo| {
            echo.on_message(|conn, msg| {
                conn.send(msg)?;
                Ok(())
            });
        })
        .route("shout", move |shout| {
            shout
                .max_message_size(1024)
                .on_message(move |_, msg| {
                    // To everyone, on both routes: one Hub.
                    hub.send_to_all(msg.to_text()?.to_uppercase());
                    Ok(())
                })
                .on_http(|_| HttpResponse::new(200, "shout here\n"));
        });
    let server = worker.start().unwrap();
    let addr = server.local_addr();

    let mut echo = RawClient::connect(addr, "/echo?room=1", &[]).unwrap();
    let mut shout = RawClient::connect(addr, "/shout", &[]).unwrap();
    echo.conn.send_text("hi").unwrap();
    echo.flush();
    assert_eq!(
        echo.next_event().unwrap().unwrap(),
        Event::Message(Message::from("hi"))
    );
    shout.conn.send_text("hey").unwrap();
    shout.flush();
    for client in [&mut shout, &mut echo] {
        assert_eq!(
            client.next_event().unwrap().unwrap(),
            Event::Message(Message::from("HEY"))
        );
    }
    // Each route's own limit: 2 KiB passes /echo and closes /shout with 1009.
    let big = "x".repeat(2048);
    echo.conn.send_text(big.as_str()).unwrap();
    echo.flush();
    assert_eq!(
        echo.next_event().unwrap().unwrap(),
        Event::Message(Message::from(big.clone()))
    );
    shout.conn.send_text(big.as_str()).unwrap();
    shout.flush();
    let Event::Close(Some(frame)) = shout.next_event().unwrap().unwrap() else {
        panic!("/shout closes above its limit")
    };
    assert_eq!(frame.code, CloseCode::MESSAGE_TOO_BIG);

    // A path with no route, on a worker with no callbacks of its own: 404.
    let Err(err) = RawClient::connect(addr, "/", &[]) else {
        panic!("/ has no endpoint")
    };
    assert!(err.contains("404"), "{err}");
    // Plain HTTP goes to the route's on_http.
    let http = raw_exchange(addr, b"GET /shout HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(http.ends_with("shout here\n"), "{http}");
    let http = raw_exchange(addr, b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(http.starts_with("HTTP/1.1 404"), "{http}");
    drop((echo, shout));
    server.shutdown();
}

#[test]
fn a_callback_failing_on_a_message_of_the_wrong_type_closes_with_1003() {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.on_message(|conn, msg| {
        conn.send(format!("hello {}", msg.to_text()?))?;
        Ok(())
    });
    let server = worker.start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    client.conn.send_binary(&b"\x00\x01"[..]).unwrap();
    client.flush();
    let Event::Close(Some(frame)) = client.next_event().unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(frame.code, CloseCode::UNSUPPORTED_DATA);
    assert_eq!(frame.reason, "unsupported data");
    drop(client);
    server.shutdown();
}

#[test]
fn a_panicking_callback_closes_only_its_connection_with_1011() {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    let errors = Arc::new(AtomicUsize::new(0));
    let seen = errors.clone();
    worker.on_message(|conn, msg| {
        if msg.as_text() == Some("boom") {
            panic!("boom");
        }
        conn.send(msg)?;
        Ok(())
    });
    worker.on_error(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    let server = worker.start().unwrap();
    let mut victim = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    let mut other = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    victim.conn.send_text("boom").unwrap();
    victim.flush();
    let Event::Close(Some(frame)) = victim.next_event().unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(frame.code, CloseCode::INTERNAL_ERROR);
    other.conn.send_text("still here").unwrap();
    other.flush();
    assert_eq!(
        other.next_event().unwrap().unwrap(),
        Event::Message(Message::text("still here"))
    );
    assert_eq!(errors.load(Ordering::SeqCst), 1);
    drop((victim, other));
    server.shutdown();
}

#[test]
fn protocol_violation_closes_with_1002_after_earlier_replies() {
    use std::io::Write;
    let server = hello_worker().start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    client.conn.send_text("tom").unwrap();
    client.flush();
    // An unmasked frame from a client breaks RFC 6455 §5.1.
    client.stream.write_all(b"\x81\x02hi").unwrap();
    assert_eq!(
        client.next_event().unwrap().unwrap(),
        Event::Message(Message::text("hello tom"))
    );
    let Event::Close(Some(frame)) = client.next_event().unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(frame.code, CloseCode::PROTOCOL_ERROR);
    drop(client);
    server.shutdown();
}

#[test]
fn broadcast_reaches_every_connection_of_every_worker() {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.count(4);
    let everyone = worker.connections();
    worker.on_message(move |_, msg| {
        everyone.broadcast(msg);
        Ok(())
    });
    let server = worker.start().unwrap();
    let addr = server.local_addr();
    let mut clients: Vec<RawClient> = (0..200)
        .map(|_| RawClient::connect(addr, "/", &[]).unwrap())
        .collect();
    // Wait until every connection is registered.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.connections().len() < 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.connections().len(), 200);
    let busy_workers = server
        .connections()
        .per_worker()
        .iter()
        .filter(|&&n| n > 0)
        .count();
    assert!(busy_workers > 1, "{:?}", server.connections().per_worker());
    clients[0].conn.send_text("to all").unwrap();
    clients[0].flush();
    for client in &mut clients {
        assert_eq!(
            client.next_event().unwrap().unwrap(),
            Event::Message(Message::text("to all"))
        );
    }
    drop(clients);
    server.shutdown();
}

#[test]
fn shutdown_closes_every_client_with_1001() {
    let server = hello_worker().start().unwrap();
    let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
    // Make sure the connection is registered before stopping.
    client.conn.send_text("x").unwrap();
    client.flush();
    client.next_event().unwrap().unwrap();
    let stopper = std::thread::spawn(move || server.shutdown());
    let Event::Close(Some(frame)) = client.next_event().unwrap().unwrap() else {
        panic!()
    };
    assert_eq!(frame.code, CloseCode::GOING_AWAY);
    // The close echo went out with next_event; ending the TCP connection lets the server
    // finish without waiting out its close timeout.
    drop(client);
    stopper.join().unwrap();
}

// ----- messages lent or given, replies encoded at once or queued -------------------------

/// An echo server whose callback gets the message lent (`on_message_ref`) or given
/// (`on_message`). A message `close` closes with 4000 after its echo and sends once more.
fn echo_worker(lend: bool) -> Worker {
    fn answer(conn: &wsworker::Connection, msg: MessageRef<'_>) -> wsworker::Result<()> {
        conn.send(msg)?;
        if msg == MessageRef::Text("close") {
            conn.close(4000u16, "asked")?;
            // Dropped, as a browser drops a send after close(): the close frame is last.
            let _ = conn.send("after the close");
        }
        Ok(())
    }
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    if lend {
        worker.on_message_ref(answer);
    } else {
        worker.on_message(|conn, msg| answer(conn, msg.view()));
    }
    worker
}

#[test]
fn every_kind_of_message_in_one_write_is_answered_in_order() {
    for lend in [true, false] {
        let server = echo_worker(lend).start().unwrap();
        let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
        let big = vec![7u8; 70_000]; // a 64-bit length: not a plain frame
        let over_direct = vec![9u8; 5_000]; // queued, not encoded at once
        client.conn.send_text("a").unwrap();
        client.conn.send_ping(&b"p"[..]).unwrap();
        client.conn.send_fragmented("bc", 1).unwrap();
        client.conn.send_binary(over_direct.clone()).unwrap();
        client.conn.send_text("d").unwrap();
        client.conn.send_binary(big.clone()).unwrap();
        client.conn.send_text("κόσμε").unwrap();
        client.conn.send_text("close").unwrap();
        client.conn.send_text("not read").unwrap();
        // All in one write, so the server finds them in as few reads as its buffer allows
        // (two: the batch is larger than a read).
        client.flush_in_one_write(&[]);
        let events = client.events_until_close();
        let Some(Event::Close(Some(close))) = events.last() else {
            panic!("lend {lend}: {events:?}")
        };
        assert_eq!(close.code, CloseCode::from(4000), "lend {lend}");
        let expected = [
            Event::Message(Message::text("a")),
            Event::Pong(bytes::Bytes::from_static(b"p")),
            Event::Message(Message::text("bc")),
            Event::Message(Message::binary(over_direct.clone())),
            Event::Message(Message::text("d")),
            Event::Message(Message::binary(big.clone())),
            Event::Message(Message::text("κόσμε")),
            Event::Message(Message::text("close")),
        ];
        assert_eq!(events[..events.len() - 1], expected, "lend {lend}");
        drop(client);
        server.shutdown();
    }
}

#[test]
fn a_violation_after_lent_messages_closes_after_their_replies() {
    for (bad, code) in [
        (&b"\x81\x02hi"[..], CloseCode::PROTOCOL_ERROR), // unmasked
        (&b"\x81\x82\0\0\0\0\xff\xfe"[..], CloseCode::INVALID_PAYLOAD), // not UTF-8
    ] {
        let server = echo_worker(true).start().unwrap();
        let mut client = RawClient::connect(server.local_addr(), "/", &[]).unwrap();
        client.conn.send_text("one").unwrap();
        client.conn.send_binary(&b"two"[..]).unwrap();
        client.flush_in_one_write(bad);
        let events = client.events_until_close();
        assert_eq!(
            events[..2],
            [
                Event::Message(Message::text("one")),
                Event::Message(Message::binary(&b"two"[..]))
            ]
        );
        let [Event::Close(Some(close))] = &events[2..] else {
            panic!("{events:?}")
        };
        assert_eq!(close.code, code);
        drop(client);
        server.shutdown();
    }
}

//! `wsworker bench` as a user runs it: the real binary against real servers on loopback,
//! `wsworker serve` and small servers written here that echo wrongly (or rightly, but in
//! fragments and with pings). Every run is short and bounded; no assertion is about speed.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Serve, wsworker_within};
use serde_json::Value;
use wsworker_proto::handshake::ServerHandshake;
use wsworker_proto::{Config, Connection, Event, Message, Role};

/// No bench run of these tests may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What a bench run left: its exit status, its output, and its stdout as JSON if it is.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    json: Option<Value>,
}

impl Run {
    /// A figure of the JSON report, by its path of keys.
    fn get(&self, path: &[&str]) -> &Value {
        let mut value = self
            .json
            .as_ref()
            .unwrap_or_else(|| panic!("no JSON: {}\n{}", self.stdout, self.stderr));
        for key in path {
            value = value
                .get(key)
                .unwrap_or_else(|| panic!("no {path:?} in {}", self.stdout));
        }
        value
    }

    fn number(&self, path: &[&str]) -> f64 {
        self.get(path)
            .as_f64()
            .unwrap_or_else(|| panic!("{path:?} is not a number: {}", self.stdout))
    }

    fn errors(&self, kind: &str) -> f64 {
        self.number(&["errors", kind])
    }
}

/// Runs `wsworker bench ARGS`, killed and failed past [`RUN_LIMIT`].
fn bench(args: &[&str]) -> Run {
    let (code, stdout, stderr) = wsworker_within(&[&["bench"][..], args].concat(), RUN_LIMIT);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    Run {
        code,
        json: serde_json::from_str(stdout.trim()).ok(),
        stdout,
        stderr,
    }
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

/// The keys of the JSON report, exactly.
fn assert_report_keys(run: &Run) {
    let mut expected = [
        "url",
        "conns",
        "size",
        "binary",
        "inflight",
        "duration_s",
        "connections_opened",
        "connections_failed",
        "handshakes_per_s",
        "messages",
        "msgs_per_s",
        "mb_per_s",
        "rtt_us",
        "errors",
        "client_cpu_s",
        "client_cpu_ns_per_msg",
        "deflate",
    ];
    expected.sort_unstable();
    assert_eq!(keys(run.get(&[])), expected, "{}", run.stdout);
    assert_eq!(keys(run.get(&["rtt_us"])), ["max", "p50", "p99", "p999"]);
    assert_eq!(
        keys(run.get(&["errors"])),
        ["connect", "handshake", "mismatch", "protocol", "timeout"]
    );
}

/// A clean run: exit 0, echoes, and no error of any kind.
fn assert_clean(run: &Run) {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for kind in ["connect", "handshake", "protocol", "mismatch", "timeout"] {
        assert_eq!(run.errors(kind), 0.0, "{kind}: {}", run.stdout);
    }
}

#[test]
fn a_short_run_against_serve_echo_is_clean() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--mode", "echo", "--count", "1"]);
    let url = serve.url();
    let run = bench(&[&url, "--conns", "20", "--duration", "1.5", "--json"]);
    assert_clean(&run);
    assert_report_keys(&run);
    assert_eq!(run.get(&["url"]), &Value::from(url.as_str()));
    assert_eq!(run.number(&["conns"]), 20.0);
    assert_eq!(run.number(&["size"]), 20.0);
    assert_eq!(run.get(&["binary"]), &Value::Bool(false));
    assert_eq!(run.number(&["inflight"]), 16.0);
    assert_eq!(run.number(&["connections_opened"]), 20.0);
    assert_eq!(run.number(&["connections_failed"]), 0.0);
    assert!(run.number(&["messages"]) > 0.0, "{}", run.stdout);
    assert!(run.number(&["msgs_per_s"]) > 0.0);
    assert!(run.number(&["handshakes_per_s"]) > 0.0);
    let p50 = run.number(&["rtt_us", "p50"]);
    assert!(p50 > 0.0 && p50 <= run.number(&["rtt_us", "p99"]));
    assert!(run.number(&["rtt_us", "p999"]) <= run.number(&["rtt_us", "max"]));
    // Payload bytes echoed per second, one way.
    let mb = run.number(&["messages"]) * 20.0 / 1e6 / run.number(&["duration_s"]);
    assert!(
        (run.number(&["mb_per_s"]) - mb).abs() < 0.01,
        "{}",
        run.stdout
    );
    assert!(run.number(&["client_cpu_s"]) >= 0.0);
    assert!(run.number(&["client_cpu_ns_per_msg"]) >= 0.0);
}

/// `--http2`: the WebSockets open as streams of HTTP/2 connections (`--streams` to a
/// connection) to `serve --http2` over TLS; every echo checked, the report as over TCP.
#[test]
#[cfg(feature = "tls")]
fn a_short_http2_run_against_serve_http2_is_clean() {
    let dir = common::test_certificates();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let serve = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--mode",
        "echo",
        "--count",
        "1",
        "--http2",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("wss://localhost:{}/", serve.addr.port());
    let run = bench(&[
        &url,
        "--http2",
        "--ca",
        ca.to_str().unwrap(),
        "--conns",
        "10",
        "--streams",
        "4",
        "--size",
        "100",
        "--binary",
        "--duration",
        "1",
        "--json",
    ]);
    assert_clean(&run);
    assert_report_keys(&run);
    assert_eq!(run.number(&["connections_opened"]), 10.0);
    assert!(run.number(&["messages"]) > 0.0, "{}", run.stdout);
    assert!(run.number(&["rtt_us", "p50"]) > 0.0);

    // The same server without HTTP/2 (ALPN http/1.1 only): every WebSocket fails to connect.
    drop(serve);
    let serve = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--mode",
        "echo",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("wss://localhost:{}/", serve.addr.port());
    let run = bench(&[
        &url,
        "--http2",
        "--ca",
        ca.to_str().unwrap(),
        "--conns",
        "3",
        "--duration",
        "1",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.number(&["connections_opened"]), 0.0);
    assert_eq!(run.errors("connect"), 3.0, "{}", run.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn large_binary_messages_paced_runs_and_the_text_report() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--mode", "echo", "--count", "1"]);
    let url = serve.url();
    // 100,000 bytes: the 8-byte length form, several reads per echo.
    let run = bench(&[
        &url,
        "--binary",
        "--size",
        "100000",
        "--conns",
        "4",
        "--inflight",
        "4",
        "--duration",
        "1",
        "--json",
    ]);
    assert_clean(&run);
    assert_eq!(run.get(&["binary"]), &Value::Bool(true));
    assert!(run.number(&["messages"]) > 0.0, "{}", run.stdout);

    // --rate paces the sends (and --threads runs them on several threads).
    let run = bench(&[
        &url,
        "--rate",
        "500",
        "--conns",
        "10",
        "--duration",
        "1",
        "--threads",
        "2",
        "--size",
        "126",
        "--json",
    ]);
    assert_clean(&run);
    let messages = run.number(&["messages"]);
    assert!(
        messages > 0.0 && messages <= 500.0 * 1.0 + 10.0,
        "{}",
        run.stdout
    );

    // Without --json: a table on stdout, nothing on stderr (not a terminal).
    let run = bench(&[&url, "--conns", "2", "--duration", "0.5", "--text"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.json.is_none());
    for label in [
        "connections",
        "echoed",
        "msgs/s",
        "rtt",
        "p99.9",
        "errors",
        "none",
        "client cpu",
    ] {
        assert!(run.stdout.contains(label), "{label}: {}", run.stdout);
    }
    assert_eq!(run.stderr, "");
}

#[test]
fn idle_connections_are_held_and_counted() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--mode", "echo", "--count", "1"]);
    let run = bench(&[&serve.url(), "--idle", "50", "--duration", "0.5", "--json"]);
    assert_clean(&run);
    assert_report_keys(&run);
    assert_eq!(run.number(&["conns"]), 50.0);
    assert_eq!(run.number(&["connections_opened"]), 50.0);
    assert!(run.number(&["handshakes_per_s"]) > 0.0);
    for path in [
        &["messages"][..],
        &["msgs_per_s"],
        &["mb_per_s"],
        &["rtt_us", "p50"],
        &["size"],
        &["client_cpu_ns_per_msg"],
    ] {
        assert!(run.get(path).is_null(), "{path:?}: {}", run.stdout);
    }
    // --connect-rate paces the handshakes (20 at 100/s: about 0.2 s).
    let run = bench(&[
        &serve.url(),
        "--idle",
        "20",
        "--connect-rate",
        "100",
        "--duration",
        "0.2",
        "--json",
    ]);
    assert_clean(&run);
    assert!(run.number(&["handshakes_per_s"]) < 1000.0, "{}", run.stdout);
}

#[test]
fn idle_deflate_connections_each_echo_one_compressed_message_first() {
    // `serve` accepts permessage-deflate by default.
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--mode", "echo", "--count", "1"]);
    let run = bench(&[
        &serve.url(),
        "--idle",
        "20",
        "--deflate",
        "--duration",
        "0.2",
        "--json",
    ]);
    assert_clean(&run);
    assert_report_keys(&run);
    assert_eq!(run.number(&["connections_opened"]), 20.0);
    assert_eq!(
        run.get(&["deflate", "offer"]),
        &Value::from("permessage-deflate; client_max_window_bits")
    );
    assert_eq!(run.number(&["deflate", "size"]), 1024.0);
    // Every connection echoed its 1 KiB of chat lines, and the replies came compressed.
    assert_eq!(run.number(&["deflate", "plain_bytes"]), 20.0 * 1024.0);
    let (wire, ratio) = (
        run.number(&["deflate", "wire_bytes"]),
        run.number(&["deflate", "ratio"]),
    );
    assert!(wire > 0.0 && ratio > 0.05 && ratio < 0.6, "{}", run.stdout);
    assert!(
        (wire / (20.0 * 1024.0) - ratio).abs() < 1e-3,
        "{}",
        run.stdout
    );
    // --size sets the message; the text report says what was offered and the ratio.
    let run = bench(&[
        &serve.url(),
        "--idle",
        "3",
        "--deflate",
        "--size",
        "4000",
        "--duration",
        "0.1",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("one 4000-byte text message echoed per connection, replies 0."),
        "{}",
        run.stdout
    );
    // A server that declines compression fails every connection.
    let plain = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--mode",
        "echo",
        "--count",
        "1",
        "--no-deflate",
    ]);
    let run = bench(&[
        &plain.url(),
        "--idle",
        "2",
        "--deflate",
        "--duration",
        "0.1",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.errors("handshake"), 2.0, "{}", run.stdout);
    assert!(
        run.stderr.contains("did not accept permessage-deflate"),
        "{}",
        run.stderr
    );
    // An echo that is not the message sent is a mismatch (the hello server adds "hello ").
    let hello = Serve::start(&["websocket://127.0.0.1:0", "--count", "1"]);
    let run = bench(&[
        &hello.url(),
        "--idle",
        "2",
        "--deflate",
        "--duration",
        "0.1",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.errors("mismatch"), 2.0, "{}", run.stdout);
}

/// What the servers written here do with each message.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Echo it with its first byte changed.
    Flip,
    /// Echo it in fragments of 7 bytes, with a ping before every 10th.
    FragmentAndPing,
    /// Never answer (but answer the closing handshake).
    Swallow,
}

/// A WebSocket server on loopback made from `wsworker_proto` alone, a thread per connection.
/// Returns its address and the number of pongs it received.
fn misbehaving_server(behaviour: Behaviour) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let pongs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pongs);
    // The threads end with the test process.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let pongs = Arc::clone(&counter);
            std::thread::spawn(move || {
                let _ = serve_connection(stream, behaviour, &pongs);
            });
        }
    });
    (addr, pongs)
}

fn serve_connection(
    mut stream: TcpStream,
    behaviour: Behaviour,
    pongs: &AtomicUsize,
) -> io::Result<()> {
    let Some((mut conn, response)) = accept(&mut stream)? else {
        return Ok(());
    };
    stream.write_all(&response)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut messages = 0usize;
    loop {
        while let Some(event) = conn.poll_event().map_err(|e| invalid(&e))? {
            match event {
                Event::Message(message) => {
                    messages += 1;
                    reply(&mut conn, behaviour, message, messages).map_err(|e| invalid(&e))?;
                }
                Event::Pong(_) => {
                    pongs.fetch_add(1, Ordering::Relaxed);
                }
                Event::Close(_) => {
                    while let Some(bytes) = conn.poll_transmit() {
                        stream.write_all(&bytes)?;
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        while let Some(bytes) = conn.poll_transmit() {
            stream.write_all(&bytes)?;
        }
        let read = stream.read(&mut buf)?;
        if read == 0 {
            return Ok(());
        }
        conn.receive(&buf[..read]);
    }
}

/// An `io::Error` for what `wsworker_proto` rejected.
fn invalid(error: &dyn std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// The server's side of the opening handshake on `stream`: the connection, with what came
/// after the request already received, and the response still to write; `None` if the
/// client left first.
fn accept(stream: &mut TcpStream) -> io::Result<Option<(Connection, Vec<u8>)>> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; 16 << 10];
    let mut handshake = ServerHandshake::new();
    let (request, rest) = loop {
        let read = stream.read(&mut buf)?;
        if read == 0 {
            return Ok(None);
        }
        if let Some(done) = handshake.receive(&buf[..read]).map_err(|e| invalid(&e))? {
            break done;
        }
    };
    let response = request.accept(None, None, &[]).map_err(|e| invalid(&e))?;
    let mut conn = Connection::new(Role::Server, Config::default());
    conn.receive(&rest);
    Ok(Some((conn, response.to_vec())))
}

fn reply(
    conn: &mut Connection,
    behaviour: Behaviour,
    message: Message,
    count: usize,
) -> Result<(), wsworker_proto::Error> {
    match behaviour {
        Behaviour::Flip => match message {
            Message::Text(text) => {
                // ASCII letters swap case: still valid UTF-8, no longer the same.
                let mut bytes = text.as_bytes().to_vec();
                if let Some(first) = bytes.first_mut() {
                    *first ^= 0x20;
                }
                conn.send_text(String::from_utf8(bytes).unwrap())
            }
            Message::Binary(data) => {
                let mut bytes = data.to_vec();
                if let Some(first) = bytes.first_mut() {
                    *first ^= 0xff;
                }
                conn.send_binary(bytes)
            }
        },
        Behaviour::FragmentAndPing => {
            if count % 10 == 1 {
                conn.send_ping(&b"are you there"[..])?;
            }
            conn.send_fragmented(message, 7)
        }
        Behaviour::Swallow => Ok(()),
    }
}

#[test]
fn a_server_that_changes_a_byte_is_caught() {
    let (addr, _) = misbehaving_server(Behaviour::Flip);
    let url = format!("ws://{addr}/");
    for kind in ["--text", "--binary"] {
        let run = bench(&[&url, kind, "--conns", "3", "--duration", "0.5", "--json"]);
        assert_eq!(run.code, 1, "{kind}: {}\n{}", run.stdout, run.stderr);
        assert_report_keys(&run);
        assert!(run.errors("mismatch") > 0.0, "{}", run.stdout);
        assert_eq!(run.errors("protocol"), 0.0, "{}", run.stderr);
        assert_eq!(run.number(&["messages"]), 0.0, "{}", run.stdout);
        // The first mismatch is shown.
        assert!(run.stderr.contains("mismatch error"), "{}", run.stderr);
        assert!(
            run.stderr.contains("first difference at byte 0"),
            "{}",
            run.stderr
        );
    }
}

/// A plain TCP echo after the opening handshake (bench/run's raw ceiling): every byte back
/// as it came, so the client's frames come back masked. A thread per connection.
fn byte_echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The threads end with the test process.
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || -> io::Result<()> {
                let mut buf = vec![0u8; 64 << 10];
                let mut handshake = ServerHandshake::new();
                let (request, rest) = loop {
                    let read = stream.read(&mut buf)?;
                    if read == 0 {
                        return Ok(());
                    }
                    if let Some(done) = handshake.receive(&buf[..read]).map_err(|e| invalid(&e))? {
                        break done;
                    }
                };
                let response = request.accept(None, None, &[]).map_err(|e| invalid(&e))?;
                stream.write_all(&response)?;
                stream.write_all(&rest)?;
                loop {
                    let read = stream.read(&mut buf)?;
                    if read == 0 {
                        return Ok(());
                    }
                    stream.write_all(&buf[..read])?;
                }
            });
        }
    });
    addr
}

#[test]
fn masked_echoes_are_checked_with_masked_echo_and_refused_without() {
    let url = format!("ws://{}/", byte_echo_server());
    for (kind, size) in [("--text", "20"), ("--binary", "70000")] {
        let args = [
            &url,
            kind,
            "--size",
            size,
            "--conns",
            "2",
            "--inflight",
            "4",
        ];
        let run = bench(&[&args[..], &["--duration", "0.5", "--json", "--masked-echo"]].concat());
        assert_clean(&run);
        assert!(run.number(&["messages"]) > 0.0, "{}", run.stdout);
        let run = bench(&[&args[..], &["--duration", "0.5", "--json"]].concat());
        assert_eq!(run.code, 1, "{kind}: {}\n{}", run.stdout, run.stderr);
        assert!(run.errors("protocol") > 0.0, "{}", run.stdout);
        assert_eq!(run.number(&["messages"]), 0.0, "{}", run.stdout);
    }
}

#[test]
fn fragmented_echoes_and_server_pings_are_handled() {
    let (addr, pongs) = misbehaving_server(Behaviour::FragmentAndPing);
    let url = format!("ws://{addr}/");
    let run = bench(&[
        &url,
        "--conns",
        "3",
        "--size",
        "100",
        "--duration",
        "0.5",
        "--json",
    ]);
    assert_clean(&run);
    assert!(run.number(&["messages"]) > 0.0, "{}", run.stdout);
    assert!(pongs.load(Ordering::Relaxed) > 0, "no pong came back");
}

#[test]
fn missing_echoes_are_timeouts_after_a_bounded_wait() {
    let (addr, _) = misbehaving_server(Behaviour::Swallow);
    let url = format!("ws://{addr}/");
    let began = Instant::now();
    let run = bench(&[&url, "--conns", "2", "--duration", "0.2", "--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.errors("timeout"), 2.0, "{}", run.stdout);
    assert_eq!(run.number(&["messages"]), 0.0);
    assert!(run.get(&["rtt_us", "p50"]).is_null(), "{}", run.stdout);
    assert!(
        run.stderr.contains("echoes still outstanding"),
        "{}",
        run.stderr
    );
    // The wait for the last echoes is bounded (2 s), not the test's limit.
    assert!(began.elapsed() < RUN_LIMIT / 2);
}

#[test]
fn a_server_that_closes_the_connection_is_a_protocol_error() {
    // Messages over the server's limit make it close with 1009.
    let serve = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--mode",
        "echo",
        "--count",
        "1",
        "--max-message-size",
        "10",
    ]);
    let run = bench(&[&serve.url(), "--conns", "2", "--duration", "0.5", "--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.errors("protocol"), 2.0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("the server closed the connection: 1009"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_hello_server_is_not_an_echo_server() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--count", "1"]);
    let run = bench(&[&serve.url(), "--conns", "2", "--duration", "0.5", "--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.errors("mismatch") > 0.0, "{}", run.stdout);
    assert!(
        run.stderr.contains("got 26 bytes \"hello "),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_arguments_fail_with_a_message() {
    for args in [
        &["ws://127.0.0.1:1/", "--conns", "0"][..],
        &["ws://127.0.0.1:1/", "--size", "x"],
        &["ws://127.0.0.1:1/", "--inflight", "0"],
        &["ws://127.0.0.1:1/", "--duration", "0"],
        &["ws://127.0.0.1:1/", "--duration", "-1"],
        &["ws://127.0.0.1:1/", "--rate", "nan"],
        &["ws://127.0.0.1:1/", "--text", "--binary"],
        &["ws://127.0.0.1:1/", "--idle", "5", "--conns", "3"],
        &["ws://127.0.0.1:1/", "--idle", "5", "--size", "3"],
        &["ws://127.0.0.1:1/", "--deflate"],
        &["ws://127.0.0.1:1/", "--conns", "5", "--deflate"],
        &["ws://127.0.0.1:1/", "--source-ips", "300"],
        &["ws://[::1]:1/", "--source-ips", "4"],
        &["ws://127.0.0.1:1/", "--threads", "0"],
        &["wss://127.0.0.1:1/"],
        &["ws://127.0.0.1:1/", "--streams", "4"],
        &["ws://127.0.0.1:1/", "--http2", "--rate", "10"],
        &["ws://127.0.0.1:1/", "--http2", "--fanout"],
        &["ws://127.0.0.1:1/", "--http2", "--streams", "0"],
        &["http://127.0.0.1:1/"],
        &["--conns", "3"],
        &["ws://127.0.0.1:1/", "--room", "a"],
        &["ws://127.0.0.1:1/", "--fanout", "--size", "19"],
        &["ws://127.0.0.1:1/", "--fanout", "--binary"],
        &["ws://127.0.0.1:1/", "--fanout", "--idle", "3"],
        &["ws://127.0.0.1:1/", "--fanout", "--rate", "2000000"],
        &["ws://127.0.0.1:1/", "--fanout", "--room", ""],
        &["ws://127.0.0.1:1/", "--node", "ws://127.0.0.1:2/"],
        &[
            "ws://127.0.0.1:1/",
            "--fanout",
            "--node",
            "wss://127.0.0.1:2/",
        ],
        &[
            "ws://127.0.0.1:1/",
            "--fanout",
            "--node",
            "http://127.0.0.1:2/",
        ],
        &[
            "ws://127.0.0.1:1/",
            "--fanout",
            "--node",
            "ws://[::1]:2/",
            "--source-ips",
            "4",
        ],
        &[
            "ws://127.0.0.1:1/",
            "--fanout",
            "--rate",
            "1000000",
            "--duration",
            "5000",
        ],
    ] {
        let run = bench(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(!run.stderr.trim().is_empty(), "{args:?}: no message");
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
}

#[test]
fn an_unreachable_server_is_a_clear_failure() {
    let unused = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", unused.local_addr().unwrap());
    drop(unused);
    let run = bench(&[&url, "--conns", "3", "--duration", "0.5", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.number(&["connections_opened"]), 0.0);
    assert_eq!(run.number(&["connections_failed"]), 3.0);
    assert_eq!(run.errors("connect"), 3.0);
    assert!(run.get(&["msgs_per_s"]).is_null(), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("3 connect errors, the first: connection"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("refused"), "{}", run.stderr);
    assert!(run.stderr.contains("no connection to"), "{}", run.stderr);
}

/// The keys of the fan-out JSON report, exactly.
fn assert_fanout_keys(run: &Run) {
    let mut expected = [
        "mode",
        "url",
        "room",
        "conns",
        "size",
        "deflate",
        "rate",
        "inflight",
        "duration_s",
        "connections_opened",
        "handshakes_per_s",
        "published",
        "deliveries",
        "expected_deliveries",
        "delivery_span_s",
        "deliveries_per_s",
        "latency_us",
        "errors",
        "client_cpu_s",
        "client_cpu_ns_per_delivery",
        "nodes",
    ];
    expected.sort_unstable();
    assert_eq!(keys(run.get(&[])), expected, "{}", run.stdout);
    assert_eq!(
        keys(run.get(&["latency_us"])),
        ["max", "p50", "p99", "p999"]
    );
    for node in run.get(&["nodes"]).as_array().unwrap() {
        assert_eq!(keys(node), ["deliveries", "subscribers", "url"]);
    }
    let mut kinds = FANOUT_ERRORS.to_vec();
    kinds.sort_unstable();
    assert_eq!(keys(run.get(&["errors"])), kinds);
}

/// The error kinds of a fan-out report.
const FANOUT_ERRORS: [&str; 9] = [
    "connect",
    "handshake",
    "protocol",
    "mismatch",
    "timeout",
    "gap",
    "duplicate",
    "reorder",
    "missing",
];

/// A clean fan-out run: exit 0, the report's keys, and no error of any kind.
fn assert_fanout_clean(run: &Run) {
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_fanout_keys(run);
    for kind in FANOUT_ERRORS {
        assert_eq!(run.errors(kind), 0.0, "{kind}: {}", run.stdout);
    }
}

#[test]
fn fanout_through_serve_chat_delivers_every_message_in_order() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--mode", "chat", "--count", "2"]);
    // A URL with a query already: the room is added to it, percent-encoded.
    let url = format!("{}?user=bench", serve.url());
    let run = bench(&[
        &url,
        "--fanout",
        "--conns",
        "20",
        "--size",
        "32",
        "--rate",
        "400",
        "--duration",
        "0.5",
        "--room",
        "a room/1",
        "--json",
    ]);
    assert_fanout_clean(&run);
    assert_eq!(run.get(&["mode"]), &Value::from("fanout"));
    assert_eq!(run.get(&["room"]), &Value::from("a room/1"));
    assert_eq!(run.number(&["rate"]), 400.0);
    assert!(run.get(&["inflight"]).is_null(), "{}", run.stdout);
    assert_eq!(run.number(&["connections_opened"]), 20.0);
    // 400 messages per second for 0.5 s, however late the publisher wakes up.
    assert_eq!(run.number(&["published"]), 200.0, "{}", run.stdout);
    assert_eq!(run.number(&["deliveries"]), 200.0 * 20.0, "{}", run.stdout);
    assert_eq!(run.number(&["expected_deliveries"]), 200.0 * 20.0);
    // Deliveries per second over the time to the last one (at least the window).
    let span = run.number(&["delivery_span_s"]);
    assert!(span >= run.number(&["duration_s"]), "{}", run.stdout);
    // (span is rounded to the millisecond).
    let per_s = run.number(&["deliveries_per_s"]);
    assert!(
        (per_s - 4000.0 / span).abs() < per_s * 0.01,
        "{}",
        run.stdout
    );
    let p50 = run.number(&["latency_us", "p50"]);
    assert!(p50 > 0.0 && p50 <= run.number(&["latency_us", "max"]));
    assert!(run.number(&["client_cpu_ns_per_delivery"]) >= 0.0);

    // Without --json: the table; a room of its own for each run, so runs do not mix.
    let run = bench(&[
        &serve.url(),
        "--fanout",
        "--conns",
        "3",
        "--rate",
        "100",
        "--duration",
        "0.2",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for label in [
        "subscribers",
        "3 of 3 opened in room \"bench\"",
        "published",
        "delivered",
        "deliveries/s",
        "latency",
        "p99.9",
        "errors       none",
        "ns per delivery",
        "paced at 100 msgs/s",
    ] {
        assert!(run.stdout.contains(label), "{label}: {}", run.stdout);
    }
    assert_eq!(run.stderr, "");
}

/// What [`relay_server`] does wrong.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// None: every message goes to everyone, at once.
    None,
    /// Message 5 (sequence number 5, not counting sync messages) goes to no one.
    Drop,
    /// Message 5 goes to everyone after message 6.
    Swap,
    /// Messages from 190 on go to no one.
    Stop,
    /// As `Stop`, and after message 5 the server closes the first subscriber's connection.
    Kick,
    /// None: every message goes to everyone, but a connection joins the room only 300 ms
    /// after its handshake (as a server whose rooms live elsewhere might).
    LateJoin,
}

/// One connection of a [`relay_server`]: its protocol state and where it writes.
struct Member {
    conn: Connection,
    stream: TcpStream,
}

impl Member {
    /// Writes what the protocol state has queued; errors are the member's own business
    /// (it may be gone).
    fn transmit(&mut self) {
        while let Some(bytes) = self.conn.poll_transmit() {
            if self.stream.write_all(&bytes).is_err() {
                return;
            }
        }
    }
}

/// A chat room on loopback made from `wsworker_proto` alone, a thread per connection: every
/// text message goes to every connection (the sender too), but one of them wrongly.
fn relay_server(fault: Fault) -> SocketAddr {
    relay_nodes(fault, 1)[0].0
}

/// [`relay_server`]'s room behind `count` listeners, as a cluster of nodes that share their
/// rooms: a message sent on one goes to the members on every one. Returns each listener's
/// address and how many connections it has accepted.
fn relay_nodes(fault: Fault, count: usize) -> Vec<(SocketAddr, Arc<AtomicUsize>)> {
    let room: Arc<Mutex<Vec<Arc<Mutex<Member>>>>> = Arc::default();
    let held = Arc::new(Mutex::new(None));
    (0..count)
        .map(|_| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let (room, held, counter) =
                (Arc::clone(&room), Arc::clone(&held), Arc::clone(&accepted));
            // The threads end with the test process.
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let (room, held) = (Arc::clone(&room), Arc::clone(&held));
                    std::thread::spawn(move || {
                        let _ = relay_connection(stream, fault, &room, &held);
                    });
                }
            });
            (addr, accepted)
        })
        .collect()
}

fn relay_connection(
    mut stream: TcpStream,
    fault: Fault,
    room: &Arc<Mutex<Vec<Arc<Mutex<Member>>>>>,
    held: &Mutex<Option<Message>>,
) -> io::Result<()> {
    let Some((conn, response)) = accept(&mut stream)? else {
        return Ok(());
    };
    let member = Arc::new(Mutex::new(Member {
        conn,
        stream: stream.try_clone()?,
    }));
    if let Fault::LateJoin = fault {
        member.lock().unwrap().stream.write_all(&response)?;
        // The connection's messages are relayed at once; it only receives them later.
        let (room, member) = (Arc::clone(room), Arc::clone(&member));
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            room.lock().unwrap().push(member);
        });
    } else {
        // In the room before the client knows it is open: a message sent after cannot miss
        // it.
        room.lock().unwrap().push(Arc::clone(&member));
        member.lock().unwrap().stream.write_all(&response)?;
    }
    let mut buf = vec![0u8; 64 << 10];
    // Bytes that came with the handshake are parsed before the first read.
    let mut read = 0;
    loop {
        let mut messages = Vec::new();
        let mut closed = false;
        {
            let mut member = member.lock().unwrap();
            member.conn.receive(&buf[..read]);
            while let Some(event) = member.conn.poll_event().map_err(|e| invalid(&e))? {
                match event {
                    Event::Message(message) => messages.push(message),
                    Event::Close(_) => closed = true,
                    _ => {}
                }
            }
            member.transmit();
        }
        for message in messages {
            let everyone: Vec<_> = room.lock().unwrap().clone();
            // The bench's messages start with their sequence number in 8 hex digits.
            let seq = match &message {
                Message::Text(text) => text.get(..8).unwrap_or_default().to_owned(),
                Message::Binary(_) => String::new(),
            };
            let batch = match (fault, seq.as_str()) {
                (Fault::Drop, "00000005") => vec![],
                (Fault::Swap, "00000005") => {
                    *held.lock().unwrap() = Some(message);
                    vec![]
                }
                (Fault::Stop | Fault::Kick, seq) if ("000000be".."ffffffff").contains(&seq) => {
                    vec![]
                }
                (Fault::Swap, "00000006") => [Some(message), held.lock().unwrap().take()]
                    .into_iter()
                    .flatten()
                    .collect(),
                _ => vec![message],
            };
            for message in batch {
                for other in &everyone {
                    let mut other = other.lock().unwrap();
                    if other.conn.send_message(message.clone()).is_ok() {
                        other.transmit();
                    }
                }
            }
            if let (Fault::Kick, "00000005") = (fault, seq.as_str()) {
                // The publisher joins last: the first in the room is a subscriber.
                if let Some(first) = everyone.iter().find(|other| !Arc::ptr_eq(other, &member)) {
                    let _ = first.lock().unwrap().stream.shutdown(Shutdown::Both);
                }
            }
        }
        if closed {
            room.lock()
                .unwrap()
                .retain(|other| !Arc::ptr_eq(other, &member));
            return Ok(());
        }
        read = stream.read(&mut buf)?;
        if read == 0 {
            room.lock()
                .unwrap()
                .retain(|other| !Arc::ptr_eq(other, &member));
            return Ok(());
        }
    }
}

/// A fan-out run of 20 subscribers through a [`relay_server`] with `fault`.
fn fanout_through(fault: Fault) -> Run {
    let url = format!("ws://{}/", relay_server(fault));
    bench(&[
        &url,
        "--fanout",
        "--conns",
        "20",
        "--rate",
        "400",
        "--duration",
        "0.5",
        "--json",
    ])
}

#[test]
fn fanout_closed_loop_through_serve_chat_delivers_every_message_to_everyone() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--mode", "chat", "--count", "2"]);
    let run = bench(&[
        &serve.url(),
        "--fanout",
        "--conns",
        "20",
        "--size",
        "32",
        "--inflight",
        "8",
        "--duration",
        "0.5",
        "--json",
    ]);
    assert_fanout_clean(&run);
    assert_eq!(run.number(&["inflight"]), 8.0);
    assert!(run.get(&["rate"]).is_null(), "{}", run.stdout);
    assert_eq!(run.number(&["connections_opened"]), 20.0);
    let published = run.number(&["published"]);
    assert!(published >= 8.0, "{}", run.stdout);
    assert_eq!(
        run.number(&["deliveries"]),
        published * 20.0,
        "{}",
        run.stdout
    );
    assert_eq!(run.number(&["expected_deliveries"]), published * 20.0);
    assert!(run.number(&["deliveries_per_s"]) > 0.0, "{}", run.stdout);
    assert!(run.number(&["latency_us", "p99"]) > 0.0, "{}", run.stdout);

    let run = bench(&[
        &serve.url(),
        "--fanout",
        "--conns",
        "3",
        "--inflight",
        "64",
        "--duration",
        "0.2",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for label in ["64 in flight (closed loop): ", "errors       none"] {
        assert!(run.stdout.contains(label), "{label}: {}", run.stdout);
    }
}

#[test]
fn fanout_with_deflate_inflates_every_delivery_and_needs_the_server_to_agree() {
    // `serve` accepts permessage-deflate by default: the Hub compresses each message once.
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--mode", "chat", "--count", "1"]);
    let run = bench(&[
        &serve.url(),
        "--fanout",
        "--deflate",
        "--conns",
        "10",
        "--size",
        "1024",
        "--inflight",
        "8",
        "--duration",
        "0.3",
        "--json",
    ]);
    assert_fanout_clean(&run);
    assert_eq!(run.get(&["deflate"]), &Value::from(true));
    let published = run.number(&["published"]);
    assert!(published >= 8.0, "{}", run.stdout);
    assert_eq!(
        run.number(&["deliveries"]),
        published * 10.0,
        "{}",
        run.stdout
    );
    // Without --deflate the same server's frames are plain: the report says so.
    let run = bench(&[
        &serve.url(),
        "--fanout",
        "--conns",
        "2",
        "--duration",
        "0.1",
        "--json",
    ]);
    assert_fanout_clean(&run);
    assert_eq!(run.get(&["deflate"]), &Value::from(false));
    // A server that declines compression fails every subscriber.
    let plain = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--mode",
        "chat",
        "--count",
        "1",
        "--no-deflate",
    ]);
    let run = bench(&[
        &plain.url(),
        "--fanout",
        "--deflate",
        "--conns",
        "3",
        "--duration",
        "0.1",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.errors("handshake"), 3.0, "{}", run.stdout);
    assert!(
        run.stderr.contains("did not accept permessage-deflate"),
        "{}",
        run.stderr
    );
}

#[test]
fn fanout_closed_loop_waits_until_every_subscriber_has_a_message() {
    // Messages from 190 on reach no one: 190 complete, then 8 more in flight, and the
    // publisher waits for them until the window ends.
    let url = format!("ws://{}/", relay_server(Fault::Stop));
    let run = bench(&[
        &url,
        "--fanout",
        "--conns",
        "20",
        "--inflight",
        "8",
        "--duration",
        "2",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.number(&["published"]), 198.0, "{}", run.stdout);
    assert_eq!(run.number(&["deliveries"]), 190.0 * 20.0, "{}", run.stdout);
    // 8 missing on each of the 20 subscribers and the publisher.
    assert_eq!(run.errors("missing"), 8.0 * 21.0, "{}", run.stdout);
    for kind in ["gap", "duplicate", "reorder", "timeout", "protocol"] {
        assert_eq!(run.errors(kind), 0.0, "{kind}: {}", run.stdout);
    }
}

#[test]
fn fanout_closed_loop_goes_on_without_a_subscriber_the_server_closed() {
    // The first subscriber is closed after message 5: the others' messages complete
    // without it, up to the 190 the server relays, then 8 more in flight.
    let url = format!("ws://{}/", relay_server(Fault::Kick));
    let run = bench(&[
        &url,
        "--fanout",
        "--conns",
        "20",
        "--inflight",
        "8",
        "--duration",
        "2",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.number(&["published"]), 198.0, "{}", run.stdout);
    assert_eq!(run.errors("protocol"), 1.0, "{}", run.stdout);
    // Messages 0 to 5 to the closed one, 190 to each of the others.
    assert_eq!(
        run.number(&["deliveries"]),
        6.0 + 190.0 * 19.0,
        "{}",
        run.stdout
    );
    assert_eq!(run.errors("missing"), 8.0 * 20.0, "{}", run.stdout);
    assert!(
        run.stderr.contains("the server ended the connection"),
        "{}",
        run.stderr
    );
}

#[test]
fn fanout_takes_a_rate_or_an_inflight_not_both() {
    let run = bench(&[
        "ws://127.0.0.1:1/",
        "--fanout",
        "--rate",
        "10",
        "--inflight",
        "8",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert_eq!(
        run.stderr.trim(),
        "wsworker bench: --fanout takes --rate (paced) or --inflight (closed loop), not both"
    );
}

#[test]
fn fanout_counts_a_dropped_message_as_a_gap_everywhere() {
    let run = fanout_through(Fault::Drop);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_fanout_keys(&run);
    // The 20 subscribers and the publisher miss message 5.
    assert_eq!(run.errors("gap"), 21.0, "{}", run.stdout);
    for kind in ["duplicate", "reorder", "missing", "mismatch", "protocol"] {
        assert_eq!(run.errors(kind), 0.0, "{kind}: {}", run.stdout);
    }
    assert_eq!(run.number(&["published"]), 200.0, "{}", run.stdout);
    assert_eq!(run.number(&["deliveries"]), 199.0 * 20.0, "{}", run.stdout);
    assert!(
        run.stderr.contains("21 gap errors, the first: connection"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("message 6 came while 5 was expected"),
        "{}",
        run.stderr
    );
}

#[test]
fn fanout_counts_swapped_messages_as_gap_and_reorder() {
    let run = fanout_through(Fault::Swap);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.errors("gap"), 21.0, "{}", run.stdout);
    assert_eq!(run.errors("reorder"), 21.0, "{}", run.stdout);
    assert_eq!(run.errors("missing"), 0.0, "{}", run.stdout);
    assert!(
        run.stderr.contains("message 5 came after message 6"),
        "{}",
        run.stderr
    );
}

#[test]
fn fanout_counts_messages_that_never_come_as_missing_after_a_bounded_wait() {
    let began = Instant::now();
    let run = fanout_through(Fault::Stop);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    // 200 published, 190 relayed: 10 missing on each of 21 connections.
    assert_eq!(run.errors("missing"), 210.0, "{}", run.stdout);
    for kind in ["gap", "duplicate", "reorder", "timeout"] {
        assert_eq!(run.errors(kind), 0.0, "{kind}: {}", run.stdout);
    }
    assert_eq!(run.number(&["deliveries"]), 190.0 * 20.0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("10 of 200 messages had not come 2 s after the last was sent"),
        "{}",
        run.stderr
    );
    // The wait for them is bounded (2 s), not the test's limit.
    assert!(began.elapsed() < RUN_LIMIT / 2);
}

#[test]
fn fanout_waits_until_every_connection_is_in_the_room() {
    let run = fanout_through(Fault::LateJoin);
    assert_fanout_clean(&run);
    assert_eq!(run.number(&["deliveries"]), 200.0 * 20.0, "{}", run.stdout);
}

/// The `nodes` of a fan-out report: URL, subscribers and deliveries of each.
fn fanout_nodes(run: &Run) -> Vec<(String, f64, f64)> {
    (run.get(&["nodes"]).as_array().unwrap().iter())
        .map(|node| {
            (
                node["url"].as_str().unwrap().to_owned(),
                node["subscribers"].as_f64().unwrap(),
                node["deliveries"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn fanout_spreads_subscribers_over_the_nodes_of_a_cluster() {
    let nodes = relay_nodes(Fault::None, 3);
    let urls: Vec<_> = nodes
        .iter()
        .map(|(addr, _)| format!("ws://{addr}/"))
        .collect();
    let run = bench(&[
        &urls[0],
        "--fanout",
        "--node",
        &urls[1],
        "--node",
        &urls[2],
        "--conns",
        "7",
        "--rate",
        "400",
        "--duration",
        "0.5",
        "--json",
    ]);
    assert_fanout_clean(&run);
    assert_eq!(run.get(&["url"]), &Value::from(urls[0].as_str()));
    assert_eq!(run.number(&["published"]), 200.0, "{}", run.stdout);
    assert_eq!(run.number(&["deliveries"]), 200.0 * 7.0, "{}", run.stdout);
    // Subscribers 0, 3, 6 on the first node, 1, 4 on the second, 2, 5 on the third; every
    // one got every message through the shared room.
    assert_eq!(
        fanout_nodes(&run),
        [
            (urls[0].clone(), 3.0, 600.0),
            (urls[1].clone(), 2.0, 400.0),
            (urls[2].clone(), 2.0, 400.0),
        ],
        "{}",
        run.stdout
    );
    // The servers saw it so too: the publisher is on the first.
    let accepted: Vec<_> = nodes
        .iter()
        .map(|(_, accepted)| accepted.load(Ordering::SeqCst))
        .collect();
    assert_eq!(accepted, [4, 2, 2]);

    // The text report has a line for the nodes.
    let run = bench(&[
        &urls[0],
        "--fanout",
        "--node",
        &urls[1],
        "--conns",
        "2",
        "--rate",
        "100",
        "--duration",
        "0.2",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = format!(
        "nodes        {}: 1 subscriber and the publisher, 20 deliveries; {}: 1 subscriber, 20 \
         deliveries",
        urls[0], urls[1]
    );
    assert!(run.stdout.contains(&line), "{line}\n{}", run.stdout);
}

#[test]
fn fanout_over_nodes_that_do_not_share_rooms_counts_what_the_others_miss() {
    // Two chat servers without an engine between them: a room is each one's own.
    let first = Serve::start(&["websocket://127.0.0.1:0", "--mode", "chat", "--count", "1"]);
    let second = Serve::start(&["websocket://127.0.0.1:0", "--mode", "chat", "--count", "1"]);
    let (first_url, second_url) = (first.url(), second.url());
    let run = bench(&[
        &first_url,
        "--fanout",
        "--node",
        &second_url,
        "--conns",
        "4",
        "--rate",
        "100",
        "--duration",
        "0.2",
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert_fanout_keys(&run);
    assert_eq!(run.number(&["published"]), 20.0, "{}", run.stdout);
    // The second node's two subscribers get nothing: the publisher waited for them in
    // vain (one timeout), then they miss every message.
    assert_eq!(
        fanout_nodes(&run),
        [(first_url, 2.0, 40.0), (second_url.clone(), 2.0, 0.0)],
        "{}",
        run.stdout
    );
    assert_eq!(run.number(&["deliveries"]), 40.0, "{}", run.stdout);
    assert_eq!(run.errors("missing"), 40.0, "{}", run.stdout);
    assert_eq!(run.errors("timeout"), 1.0, "{}", run.stdout);
    for kind in [
        "gap",
        "duplicate",
        "reorder",
        "mismatch",
        "protocol",
        "connect",
    ] {
        assert_eq!(run.errors(kind), 0.0, "{kind}: {}", run.stdout);
    }
    let line = format!("{second_url}: 0 deliveries of 40 expected (2 subscribers)");
    assert!(run.stderr.contains(&line), "{line}\n{}", run.stderr);
}

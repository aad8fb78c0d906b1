//! The `wsworker` command as a user runs it: the real binary, on loopback.

mod common;

#[cfg(feature = "tls")]
use common::test_certificates;
use common::{Serve, chromium_check, screenshot, workspace_root};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

#[test]
fn serve_answers_the_demo_page_and_stops_cleanly_on_sigterm() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--count", "2"]);
    let page = http_get(serve.addr, "/");
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(
        page.contains("new WebSocket("),
        "the demo page uses the browser API"
    );
    assert!(page.contains(r#"<script src="/resume.js">"#), "{page}");
    let script = http_get(serve.addr, "/resume.js");
    assert!(script.starts_with("HTTP/1.1 200 OK"), "{script}");
    assert!(
        script.contains("\r\nContent-Type: text/javascript; charset=utf-8\r\n"),
        "{script}"
    );
    assert!(
        script.contains("class ResumingWebSocket") && script.contains("\"wsworker.resume.v1\""),
        "{script}"
    );
    assert!(http_get(serve.addr, "/missing").starts_with("HTTP/1.1 404 "));
    assert_eq!(serve.stop(), 0);
}

/// A client that sent its opening handshake and waits for the answer.
struct Opening {
    stream: TcpStream,
    answer: Vec<u8>,
}

impl Opening {
    fn start(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        stream.set_nonblocking(true).unwrap();
        Self {
            stream,
            answer: Vec::new(),
        }
    }

    /// Whether the server answered 101 yet (reads what has arrived, without waiting).
    fn opened(&mut self) -> bool {
        let mut buf = [0u8; 512];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.answer.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let text = String::from_utf8_lossy(&self.answer);
        assert!(
            self.answer.is_empty() || text.starts_with("HTTP/1.1 101 "),
            "{text}"
        );
        text.contains("\r\n\r\n")
    }
}

/// How many of the descriptors below `limit` process `pid` has open: all of them when
/// it cannot open another (descriptors it inherited above the limit do not count).
fn open_files(pid: u32, limit: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| {
        dir.flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&fd| fd < limit)
            .count()
    })
}

/// Whether every thread of process `pid` is asleep (in a state other than R, running or
/// runnable), from `/proc/<pid>/task/*/stat`.
fn all_threads_asleep(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // The state follows the command name in parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        state.is_some_and(|state| state != "R")
    })
}

#[test]
fn a_server_out_of_file_descriptors_serves_the_waiting_clients_once_others_leave() {
    // Room for a few dozen connections: the rest wait in the listen queue while accepting
    // fails (EMFILE), and must be served, not dropped, as the first ones close.
    const FILES: u32 = 64;
    let serve = Serve::start_with_file_limit(FILES, &["websocket://127.0.0.1:0", "--count", "1"]);
    let pid = serve.child.id();
    let mut waiting: Vec<Opening> = (0..120).map(|_| Opening::start(serve.addr)).collect();
    // Every descriptor in use: accepting fails from now on.
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_files(pid, FILES) < FILES as usize {
        assert!(
            Instant::now() < deadline,
            "the server never used its {FILES} descriptors: {} open",
            open_files(pid, FILES)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Out of descriptors, with clients still arriving: the worker waits between its tries
    // to accept rather than spinning on the listener's edges (a busy loop took ~75 % of a
    // core here; waiting takes ~1 %). A spinning thread is always running or runnable, so it
    // is never seen asleep, however loaded the machine; one that waits is asleep nearly
    // always, so some of these looks find the whole server asleep.
    let cpu_before = common::cpu_seconds(pid);
    let mut asleep = 0;
    for _ in 0..100 {
        waiting.push(Opening::start(serve.addr));
        std::thread::sleep(Duration::from_millis(20));
        asleep += usize::from(all_threads_asleep(pid));
    }
    println!(
        "out of descriptors: the server was asleep at {asleep} of 100 looks and used {:.2} s \
         of CPU",
        common::cpu_seconds(pid) - cpu_before
    );
    assert!(
        asleep > 0,
        "the server was never asleep while it could not accept: it spins"
    );
    assert_eq!(
        open_files(pid, FILES),
        FILES as usize,
        "the server freed descriptors: the test proves nothing"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut rounds = 0;
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} clients never got their 101",
            waiting.len()
        );
        let before = waiting.len();
        // The connections that opened leave (the server closes its side and frees the
        // descriptor), making room for those still queued; only they make room, so each
        // round that serves some is one the file limit held the rest back.
        waiting.retain_mut(|client| !client.opened());
        if waiting.len() < before {
            rounds += 1;
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(
        rounds >= 2,
        "the file limit never held anyone back: the test proves nothing"
    );
    assert!(http_get(serve.addr, "/").starts_with("HTTP/1.1 200 OK"));
    assert_eq!(serve.stop(), 0);
}

#[test]
fn bad_arguments_fail_with_a_message() {
    for args in [
        &["serve", "http://127.0.0.1:1"][..],
        &["serve", "--keepalive-timeout", "0"],
        &["serve", "--metrics", "localhost"],
        &["serve", "--overflow", "ignore"],
        &["serve", "--max-connections", "-1"],
        &["serve", "--max-pending-handshakes", "x"],
        &["serve", "websocket://127.0.0.1"],
        &["serve", "--count", "0"],
        &["serve", "--mode", "shout"],
        &["frobnicate"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_wsworker"))
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.trim().is_empty(), "{args:?}: no message");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn serve_exposes_its_counters_in_the_prometheus_format() {
    let serve = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--count",
        "2",
        "--metrics",
        "127.0.0.1:0",
        "--allow-origin",
        "https://example.com",
    ]);
    let metrics = serve.metrics.expect("the metrics address is announced");
    let url = format!("ws://{}/", serve.addr);
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--send", "tom"], "");
    assert_eq!((code, stdout.as_str()), (0, "hello tom\n"), "{stderr}");
    let (code, _, stderr) = wsworker(
        &["connect", &url, "--header", "Origin: https://evil.example"],
        "",
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("403"), "{stderr}");

    // The server counts a close once the client's end of the TCP connection arrives.
    let deadline = Instant::now() + Duration::from_secs(5);
    let page = loop {
        let page = http_get(metrics, "/metrics");
        if page.contains("wsworker_closes_total{code=\"1000\"} 1") || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("text/plain; version=0.0.4"), "{page}");
    let value = |name: &str| -> u64 {
        page.lines()
            .filter(|l| l.starts_with(name))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(value("wsworker_messages_received_total{"), 1, "{page}");
    assert_eq!(value("wsworker_messages_sent_total{"), 1, "{page}");
    assert_eq!(value("wsworker_closes_total{code=\"1000\"}"), 1, "{page}");
    assert_eq!(
        value("wsworker_handshake_rejections_total{reason=\"origin\"}"),
        1,
        "{page}"
    );
    assert_eq!(
        page.lines()
            .filter(|l| l.starts_with("wsworker_connections_open{"))
            .count(),
        2,
        "one gauge per worker: {page}"
    );
    assert!(http_get(metrics, "/").starts_with("HTTP/1.1 404 "));
    assert_eq!(serve.stop(), 0);
}

#[test]
fn serve_closes_connections_beyond_its_pending_handshakes() {
    let serve = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--count",
        "1",
        "--max-pending-handshakes",
        "1",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = serve.metrics.expect("the metrics address is announced");
    let silent = TcpStream::connect(serve.addr).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !http_get(metrics, "/metrics").contains("wsworker_handshakes_pending{worker=\"0\"} 1\n") {
        assert!(
            Instant::now() < deadline,
            "the silent socket is not counted"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut over = TcpStream::connect(serve.addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let read = over.read(&mut buf);
    assert!(
        matches!(&read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the connection beyond the limit is not closed at once: {read:?}"
    );
    let page = http_get(metrics, "/metrics");
    assert!(
        page.contains("wsworker_handshake_rejections_total{reason=\"pending\"} 1\n"),
        "{page}"
    );
    drop(silent);
    assert_eq!(serve.stop(), 0);
}

#[test]
fn the_port_in_use_is_a_clear_error() {
    // A listener bound without SO_REUSEPORT keeps the port to itself.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let output = Command::new(env!("CARGO_BIN_EXE_wsworker"))
        .args(["serve", &format!("websocket://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wsworker: i/o error"), "{stderr}");
}

fn wsworker(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsworker"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn connect_scripted_and_interactive_against_serve() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--count", "2"]);
    let url = format!("ws://{}/", serve.addr);
    let (code, stdout, stderr) =
        wsworker(&["connect", &url, "--send", "tom", "--send", "κόσμε"], "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "hello tom\nhello κόσμε\n");
    assert!(stderr.contains("closed: code 1000"), "{stderr}");

    let (code, stdout, stderr) = wsworker(
        &[
            "connect",
            &url,
            "--close-code",
            "4000",
            "--close-reason",
            "done",
        ],
        "a\nb\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "hello a\nhello b\n");
    assert!(stderr.contains("closed: code 4000"), "{stderr}");
    assert_eq!(serve.stop(), 0);
}

/// Text that would drive a terminal: set its title, clear the screen, ring the bell, go
/// back to the start of the line, C1 CSI (U+009B) and NEL (U+0085), DEL, NUL.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{9b}31m\u{85}\u{7f}\0tab\there\nnext";

#[test]
fn connect_shows_control_characters_from_the_server_instead_of_obeying_them() {
    let mut worker = wsworker::Worker::new("websocket://127.0.0.1:0").unwrap();
    worker.on_message(|conn, _| {
        conn.send(HOSTILE)?;
        conn.close(4000, "\u{1b}[2Jbye")?;
        Ok(())
    });
    let server = worker.start().unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let (_, stdout, stderr) = wsworker(&["connect", &url, "--send", "x"], "");
    // As `cat -v` shows them; tab and line feed only lay the text out.
    assert_eq!(
        stdout, "^[]0;pwned^G^[[2J^MM-^[31mM-^E^?^@tab\there\nnext\n",
        "{stderr}"
    );
    assert!(stderr.contains("closed: code 4000"), "{stderr}");
    for output in [&stdout, &stderr] {
        assert!(
            !output
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "a control character reached the terminal: {output:?}"
        );
    }
    server.shutdown();
}

/// A line typed after the server's close frame arrived, while the closing handshake is
/// still under way, is not sent; the session ends with the server's close code, not an
/// error. The server is written here on the protocol core so that it can hold the closing
/// handshake open until the line was typed.
#[test]
fn a_line_typed_while_the_server_closes_reports_the_close_code() {
    use std::io::BufRead as _;
    use wsworker_proto::handshake::ServerHandshake;
    use wsworker_proto::{CloseCode, Config, Connection, Event, Role};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsworker"))
        .args(["connect", &url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines_tx.send(line);
        }
    });
    let mut said = Vec::new();
    let mut wait_for = |needle: &str| {
        while !said
            .last()
            .is_some_and(|line: &String| line.contains(needle))
        {
            match lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) => said.push(line),
                Err(_) => panic!("connect never said {needle:?}; it said {said:#?}"),
            }
        }
    };

    let (mut stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut handshake = ServerHandshake::new();
    let mut buf = [0u8; 4096];
    let (request, rest) = loop {
        let n = stream.read(&mut buf).unwrap();
        assert_ne!(n, 0, "connect hung up during the handshake");
        if let Some(done) = handshake.receive(&buf[..n]).unwrap() {
            break done;
        }
    };
    stream
        .write_all(&request.accept(None, None, &[]).unwrap())
        .unwrap();
    let mut conn = Connection::new(Role::Server, Config::default());
    conn.receive(&rest);
    wait_for("connected to");

    conn.close(CloseCode::new(4001), "bye").unwrap();
    while let Some(chunk) = conn.poll_transmit() {
        stream.write_all(&chunk).unwrap();
    }
    // The client's answer to the close: from now on it is closing.
    loop {
        match conn.poll_event().unwrap() {
            Some(Event::Close(_)) => break,
            Some(other) => panic!("expected the close answer, got {other:?}"),
            None => {
                let n = stream.read(&mut buf).unwrap();
                assert_ne!(n, 0, "connect hung up without answering the close");
                conn.receive(&buf[..n]);
            }
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"too late\n").unwrap();
    wait_for("not sent");
    // The server ends the closing handshake: TCP closes, the session with it.
    drop(stream);
    wait_for("closed: code 4001");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {said:#?}");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(stdout, "", "nothing was received");
}

#[test]
fn connect_failures_are_one_line_and_a_non_zero_exit() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("ws://{}/", unused.local_addr().unwrap());
    drop(unused);
    for (args, expected) in [
        (vec!["connect", refused.as_str()], "wsworker: i/o error"),
        (
            vec!["connect", "http://127.0.0.1:1/"],
            "wsworker: invalid address",
        ),
        (
            vec!["connect", "wss://127.0.0.1:1/"],
            if cfg!(feature = "tls") {
                "wsworker: i/o error"
            } else {
                "wsworker: unsupported"
            },
        ),
        (
            vec![
                "connect",
                "ws://127.0.0.1:1/",
                "--close-code",
                "1001",
                "--send",
                "x",
            ],
            "wsworker: invalid close",
        ),
    ] {
        let (code, _, stderr) = wsworker(&args, "");
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
}

/// Headless Chromium opens the demo page, says `tom`, reads `hello tom`, closes.
#[test]
#[ignore = "needs Chromium and the interop peers: bash interop/setup.sh"]
fn chromium_uses_the_demo_page() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--count", "2"]);
    let url = format!("http://{}/", serve.addr);
    let stdout = chromium_check("browser_check.mjs", &[&url, &screenshot("demo.png")]);
    assert!(stdout.contains("PASS send-receive"), "{stdout}");
    assert_eq!(serve.stop(), 0);
}

/// Headless Chromium chats through the demo page's chat view against `serve --mode chat`:
/// four pages (two in one room, one in another, one in none) join with their user names,
/// a room message reaches only the room, `@alice …` only alice, a message from the page
/// with no room everyone; each page's list of received messages is checked exactly. One
/// server with two worker threads (the kernel spreads the pages' connections over them);
/// tests/cluster.rs runs the same script over two nodes sharing a Redis. Without Redis the
/// server does not agree to `wsworker.resume.v1`: the chat's resuming WebSocket (web/resume.js)
/// talks plain WebSocket.
#[test]
#[ignore = "needs Chromium and the interop peers: bash interop/setup.sh"]
fn chromium_chats_in_rooms_and_privately_through_the_demo_page() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--mode", "chat", "--count", "2"]);
    let url = format!("http://{}/", serve.addr);
    let stdout = chromium_check(
        "chat_check.mjs",
        &["--screenshot", &screenshot("demo-chat.png"), &url],
    );
    assert!(stdout.contains("PASS exact-lists"), "{stdout}");
    assert!(stdout.contains(", protocol (none))"), "{stdout}");
    assert_eq!(serve.stop(), 0);
}

/// `serve --tls-cert --tls-key` says https and wss, and `connect --ca` talks to it.
#[test]
#[cfg(feature = "tls")]
fn serve_and_connect_over_tls() {
    let dir = test_certificates();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let ca = dir.join("ca.pem");
    let serve = Serve::start(&[
        "websocket+tls://127.0.0.1:0",
        "--count",
        "1",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("wss://{}/", serve.addr);
    let (code, stdout, stderr) = wsworker(
        &[
            "connect",
            &url,
            "--ca",
            ca.to_str().unwrap(),
            "--send",
            "tom",
        ],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "hello tom\n");

    // Without the CA: one line that names the reason.
    let (code, _, stderr) = wsworker(&["connect", &url, "--send", "tom"], "");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("wsworker: tls error: certificate verify failed: unknown issuer"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(serve.stop(), 0);

    // A certificate without its key is refused before anything listens.
    let output = Command::new(env!("CARGO_BIN_EXE_wsworker"))
        .args(["serve", "websocket://127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!output.status.success());
    // websocket+tls:// without a certificate: a clear error.
    let output = Command::new(env!("CARGO_BIN_EXE_wsworker"))
        .args(["serve", "websocket+tls://127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a certificate"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `interop/node/h2_check.mjs` against `url` (with `args`): it must pass every check.
fn node_h2_check(url: &str, args: &[&str]) {
    let output = Command::new("node")
        .arg(workspace_root().join("interop/node/h2_check.mjs"))
        .arg(url)
        .args(args)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in ["settings", "connect", "echo", "two streams", "501", "close"] {
        assert!(said.contains(&format!("ok {check}\n")), "{check}: {said}");
    }
}

/// `serve --http2`: Node's own HTTP/2 client opens WebSockets with extended CONNECT
/// (RFC 8441) beside HTTP/1.1 clients on the same port, and headless Chromium loads the demo
/// page over HTTP/2 and opens its WebSocket inside that connection (its network log shows
/// the handshake answered 200).
#[test]
#[cfg(feature = "tls")]
#[ignore = "needs Chromium and the interop peers: bash interop/setup.sh"]
fn serve_http2_carries_websockets_for_node_and_chromium() {
    let dir = test_certificates();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let serve = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--http2",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    node_h2_check(
        &format!("https://localhost:{}/", serve.addr.port()),
        &["--ca", ca.to_str().unwrap()],
    );
    // HTTP/1.1 on the same port, through the server's own path.
    let (code, stdout, stderr) = wsworker(
        &[
            "connect",
            &format!("wss://localhost:{}/", serve.addr.port()),
            "--ca",
            ca.to_str().unwrap(),
        ],
        "tom\n",
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("hello tom"), "{stdout}");

    let url = format!("https://{}/", serve.addr);
    let stdout = chromium_check(
        "browser_check.mjs",
        &[
            "--ignore-certificate-errors",
            "--expect-h2",
            &url,
            &screenshot("demo-h2.png"),
        ],
    );
    assert!(stdout.contains("PASS http2"), "{stdout}");
    assert!(stdout.contains("PASS send-receive"), "{stdout}");
    assert_eq!(serve.stop(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve --http2` without TLS: Node's HTTP/2 client, speaking it from its first byte
/// (prior knowledge), opens WebSockets with extended CONNECT, and `connect` over HTTP/1.1
/// is answered on the same port.
#[test]
#[cfg(feature = "tls")]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
fn serve_http2_in_cleartext_for_node_beside_http11() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--http2", "--count", "2"]);
    node_h2_check(&format!("http://{}/", serve.addr), &[]);
    let (code, stdout, stderr) = wsworker(&["connect", &format!("ws://{}/", serve.addr)], "tom\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("hello tom"), "{stdout}");
    assert_eq!(serve.stop(), 0);
}

/// `connect --http2` opens its WebSocket inside an HTTP/2 connection to `serve --http2`
/// (TLS, ALPN h2), and fails with the reason against servers that cannot carry it: TLS
/// without `--http2` (no h2), plain `ws://` (no HTTP/2 at all).
#[test]
#[cfg(feature = "tls")]
fn connect_http2_to_serve_http2() {
    let dir = test_certificates();
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let serve = Serve::start(&[&["websocket://127.0.0.1:0", "--http2"][..], &tls].concat());
    let url = format!("wss://localhost:{}/", serve.addr.port());
    let ca = ca.to_str().unwrap();
    let (code, stdout, stderr) = wsworker(
        &[
            "connect", &url, "--http2", "--ca", ca, "--send", "tom", "--send", "jerry",
        ],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "hello tom\nhello jerry\n", "{stderr}");
    assert!(stderr.contains("connected to"), "{stderr}");
    assert!(stderr.contains("closed: code 1000"), "{stderr}");
    assert_eq!(serve.stop(), 0);

    // The same server without --http2 chooses http/1.1: --http2 fails, and says why.
    let serve = Serve::start(&[&["websocket://127.0.0.1:0"][..], &tls].concat());
    let url = format!("wss://localhost:{}/", serve.addr.port());
    let (code, stdout, stderr) = wsworker(
        &["connect", &url, "--http2", "--ca", ca, "--send", "tom"],
        "",
    );
    assert_ne!(code, 0);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("h2"), "{stderr}");
    // Without --http2, the same command works: the failure was HTTP/2's.
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--ca", ca, "--send", "tom"], "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "hello tom\n");
    assert_eq!(serve.stop(), 0);

    let serve = Serve::start(&["websocket://127.0.0.1:0"]);
    let (code, _, stderr) = wsworker(&["connect", &serve.url(), "--http2", "--send", "tom"], "");
    assert_ne!(code, 0);
    assert!(stderr.contains("does not speak HTTP/2"), "{stderr}");
    assert_eq!(serve.stop(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Headless Chromium loads the demo page over https from `serve --tls-cert --tls-key` and
/// talks to the server over wss (the test certificate accepted with
/// `--ignore-certificate-errors`, for this test only); then its chat view, against
/// `serve --mode chat`, chats over wss.
#[test]
#[cfg(feature = "tls")]
#[ignore = "needs Chromium and the interop peers: bash interop/setup.sh"]
fn chromium_uses_the_demo_page_over_https_and_wss() {
    let dir = test_certificates();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let serve = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--count",
        "2",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("https://{}/", serve.addr);
    let stdout = chromium_check(
        "browser_check.mjs",
        &[
            "--ignore-certificate-errors",
            &url,
            &screenshot("demo-tls.png"),
        ],
    );
    assert!(stdout.contains("PASS send-receive"), "{stdout}");
    assert!(
        stdout.contains(&format!("ws.url: \"wss://{}/\"", serve.addr)),
        "{stdout}"
    );
    assert_eq!(serve.stop(), 0);

    // The chat view connects back to the page's own origin: wss:// here.
    let serve = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--mode",
        "chat",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("https://{}/", serve.addr);
    let stdout = chromium_check("chat_check.mjs", &["--ignore-certificate-errors", &url]);
    assert!(stdout.contains("PASS exact-lists"), "{stdout}");
    assert!(
        stdout.contains(&format!("(e.g. wss://{}/?room=", serve.addr)),
        "{stdout}"
    );
    assert_eq!(serve.stop(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// permessage-deflate is on by default on both commands, and `--no-deflate` turns it off on
/// either side; `connect` prints the negotiated extensions: the server's defaults (12-bit
/// windows both ways, its own without context takeover unless `--deflate-context-takeover`).
#[cfg(feature = "deflate")]
#[test]
fn serve_and_connect_negotiate_permessage_deflate_unless_disabled() {
    let long = "tom ".repeat(300);
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--count", "1"]);
    let url = format!("ws://{}/", serve.addr);
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--send", &long], "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("hello {long}\n"));
    assert!(
        stderr.contains(
            "extensions \"permessage-deflate; server_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=12\""
        ),
        "{stderr}"
    );
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--no-deflate", "--send", &long], "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("hello {long}\n"));
    assert!(stderr.contains("extensions \"\""), "{stderr}");
    assert_eq!(serve.stop(), 0);

    let serve = Serve::start(&[
        "websocket://127.0.0.1:0",
        "--count",
        "1",
        "--deflate-context-takeover",
    ]);
    let url = format!("ws://{}/", serve.addr);
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--send", &long, "--send", &long], "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("hello {long}\nhello {long}\n"));
    assert!(
        stderr.contains(
            "extensions \"permessage-deflate; server_max_window_bits=12; \
             client_max_window_bits=12\""
        ),
        "{stderr}"
    );
    assert_eq!(serve.stop(), 0);

    let serve = Serve::start(&["websocket://127.0.0.1:0", "--count", "1", "--no-deflate"]);
    let url = format!("ws://{}/", serve.addr);
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--send", &long], "");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("hello {long}\n"));
    assert!(stderr.contains("extensions \"\""), "{stderr}");
    assert_eq!(serve.stop(), 0);
}

/// Chromium's own offer (`permessage-deflate; client_max_window_bits`) is accepted by
/// `wsworker serve` and used: the page's `ws.extensions` says so (with the server's
/// `server_no_context_takeover` and 12-bit windows both ways, which Chromium did not ask for
/// and accepts, RFC 7692 §7.1.1.1 and §7.1.2), and a long message makes the round trip
/// compressed both ways.
#[cfg(feature = "deflate")]
#[test]
#[ignore = "needs Chromium and the interop peers: bash interop/setup.sh"]
fn chromium_negotiates_and_uses_permessage_deflate() {
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--count", "2"]);
    let url = format!("http://{}/", serve.addr);
    let stdout = chromium_check(
        "browser_check.mjs",
        &["--expect-deflate", &url, &screenshot("demo-deflate.png")],
    );
    assert!(
        stdout.contains(
            "ws.extensions: \"permessage-deflate; server_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=12\""
        ),
        "{stdout}"
    );
    assert!(stdout.contains("PASS send-receive-long"), "{stdout}");
    // Twice 6,000 varied characters: Chromium's second copy refers back no further than the
    // 4 KiB it agreed to, all the server keeps of its context.
    assert!(stdout.contains("PASS send-receive-twice"), "{stdout}");
    assert_eq!(serve.stop(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn chat_mode_rooms_private_messages_and_everyone() {
    use wsworker::{Message, WebSocket, WsEvent};

    // One worker: a client's room is joined before the next client's messages are read.
    let serve = Serve::start(&["websocket://127.0.0.1:0", "--mode", "chat", "--count", "1"]);
    let url = |query: &str| format!("ws://{}/{query}", serve.addr);
    let alice = WebSocket::connect(&url("?user=alice&room=a"), [""; 0])
        .await
        .unwrap();
    let bob = WebSocket::connect(&url("?user=bob&room=a"), [""; 0])
        .await
        .unwrap();
    let carol = WebSocket::connect(&url("?user=carol&room=b"), [""; 0])
        .await
        .unwrap();
    let dave = WebSocket::connect(&url(""), [""; 0]).await.unwrap();
    async fn text(ws: &WebSocket) -> String {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(WsEvent::Message(Message::Text(text)))) => text.to_string(),
            other => panic!("expected a message, got {other:?}"),
        }
    }

    alice.send("hi room a").unwrap();
    assert_eq!(text(&bob).await, "hi room a");
    alice.send("@carol psst").unwrap();
    assert_eq!(text(&carol).await, "@carol psst");
    dave.send("to everyone").unwrap();
    // Each client's messages, in order, up to the last one sent to all.
    assert_eq!(
        text(&alice).await,
        "hi room a",
        "the sender's room includes it"
    );
    assert_eq!(text(&alice).await, "to everyone");
    assert_eq!(text(&bob).await, "to everyone");
    assert_eq!(
        text(&carol).await,
        "to everyone",
        "a private message reached only carol"
    );
    assert_eq!(text(&dave).await, "to everyone");
    for ws in [alice, bob, carol, dave] {
        ws.close(1000, "").unwrap();
        while let Some(event) = ws.next().await {
            if let WsEvent::Close(info) = event {
                assert!(info.was_clean, "{info:?}");
            }
        }
    }
    assert_eq!(serve.stop(), 0);
}

//! Embedding in axum (and so hyper): the ready route over HTTP/1.1 and cleartext HTTP/2,
//! refusals with their status, a failed upgrade reported to `on_error`, and the graceful
//! shutdown that covers upgraded connections.
#![cfg(feature = "axum")]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use common::{
    WAIT, closed, message, python, raw_exchange, record_peers, repo_root, run_to_end, say_hello,
};
use tokio::time::timeout;
use wsworker::{CloseCode, CloseInfo, Endpoint, Error, Message, Service, WebSocket};

/// What the test's endpoint saw end: closes and errors.
#[derive(Default)]
struct Seen {
    closes: Vec<CloseInfo>,
    errors: Vec<String>,
}

/// `hello NAME` to text, binary echoed.
fn endpoint(seen: &Arc<Mutex<Seen>>) -> Endpoint {
    let mut endpoint = Endpoint::new();
    let (closes, errors) = (seen.clone(), seen.clone());
    endpoint
        .on_message(|conn, msg| {
            match msg {
                Message::Text(name) => conn.send(format!("hello {name}"))?,
                binary => conn.send(binary)?,
            }
            Ok(())
        })
        .on_close(move |_, info| closes.lock().unwrap().closes.push(info.clone()))
        .on_error(move |_, error: &Error| errors.lock().unwrap().errors.push(error.to_string()));
    endpoint
}

/// An axum app with a page at `/` and the WebSocket route at `/ws`, on a loopback port.
async fn serve(service: &Service) -> SocketAddr {
    let app = Router::new()
        .route("/", get(|| async { Html("<p>the page</p>") }))
        .route("/ws", wsworker::axum::route(service.clone()));
    common::axum_serve(app).await
}

#[tokio::test]
async fn the_axum_route_serves_websockets_beside_the_apps_pages() {
    let seen = Arc::default();
    let mut endpoint = endpoint(&seen);
    let peers = record_peers(&mut endpoint);
    let service = endpoint.service();
    let addr = serve(&service).await;

    let ws = say_hello(&format!("ws://{addr}/ws")).await;
    let peer = peers.lock().unwrap()[0].expect("axum's ConnectInfo gives the address");
    assert!(peer.ip().is_loopback());

    let answers = tokio::task::spawn_blocking(move || {
        [
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            // Not an upgrade: 426, with what to upgrade to.
            "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
            // An upgrade with the wrong version: 426 too, naming the right one.
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            // Without a key: 400, saying so.
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        ]
        // axum keeps connections alive; the exchange reads to the end.
        .map(|request| {
            raw_exchange(
                addr,
                request
                    .replacen("Host: x", "Host: x\r\nConnection: close", 1)
                    .as_bytes(),
            )
        })
    })
    .await
    .unwrap();
    assert!(answers[0].ends_with("<p>the page</p>"), "{}", answers[0]);
    assert!(answers[1].starts_with("HTTP/1.1 426"), "{}", answers[1]);
    assert!(
        answers[1]
            .to_ascii_lowercase()
            .contains("upgrade: websocket")
    );
    assert!(answers[2].starts_with("HTTP/1.1 426"), "{}", answers[2]);
    assert!(
        answers[2]
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13")
    );
    assert!(answers[3].starts_with("HTTP/1.1 400"), "{}", answers[3]);
    assert!(answers[3].contains("key"), "{}", answers[3]);
    assert!(answers[4].starts_with("HTTP/1.1 405"), "{}", answers[4]);

    ws.close(1000, "bye").unwrap();
    assert!(closed(&ws).await.was_clean);
    timeout(WAIT, service.shutdown()).await.unwrap();
    assert_eq!(seen.lock().unwrap().closes.len(), 1);
}

#[tokio::test]
async fn shutdown_after_axum_closes_upgraded_connections_with_1001() {
    let seen = Arc::default();
    let service = endpoint(&seen).service();
    let addr = serve(&service).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let ws = WebSocket::connect(&format!("ws://{addr}/ws"), Vec::<String>::new())
            .await
            .unwrap();
        ws.send("x").unwrap();
        message(&ws).await;
        clients.push(ws);
    }
    timeout(WAIT, service.shutdown()).await.unwrap();
    let closes = seen.lock().unwrap().closes.clone();
    assert_eq!(
        closes.len(),
        3,
        "every connection ended before the future resolved"
    );
    for ws in &clients {
        assert_eq!(closed(ws).await.code, CloseCode::GOING_AWAY);
    }
}

#[tokio::test]
async fn an_upgrade_hyper_cannot_complete_reaches_on_error() {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let mut endpoint = endpoint(&seen);
    // The decision waits until the client is gone (reset), so hyper's 101 meets a dead
    // connection and the upgrade fails.
    let gone = Arc::new(tokio::sync::Notify::new());
    let asked = Arc::new(tokio::sync::Notify::new());
    let (gone_wait, asked_tell) = (gone.clone(), asked.clone());
    let (error_tx, mut errors) = tokio::sync::mpsc::unbounded_channel();
    endpoint.on_error(move |_, error| {
        let _ = error_tx.send(error.to_string());
    });
    endpoint.on_handshake_async(move |_| {
        let (gone, asked) = (gone_wait.clone(), asked_tell.clone());
        async move {
            asked.notify_one();
            gone.notified().await;
            wsworker::Handshake::accept()
        }
    });
    let service = endpoint.service();
    let addr = serve(&service).await;

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    timeout(WAIT, asked.notified()).await.unwrap();
    drop(stream); // linger 0: a reset
    gone.notify_one();
    let error = timeout(WAIT, errors.recv())
        .await
        .expect("on_error hears of the failed upgrade")
        .unwrap();
    assert!(error.contains("i/o"), "{error}");
    assert!(seen.lock().unwrap().closes.is_empty(), "it never opened");
    assert_eq!(service.connections().len(), 0);
}

#[tokio::test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
async fn python_websockets_through_the_axum_route() {
    let seen = Arc::default();
    let service = endpoint(&seen).service();
    let addr = serve(&service).await;
    let mut command = Command::new(python());
    command.arg("-c").arg(
        "import sys\n\
         from websockets.sync.client import connect\n\
         with connect(sys.argv[1]) as ws:\n\
         \x20   ws.send('tom')\n\
         \x20   print(ws.recv())\n\
         \x20   ws.send(b'\\x01\\x02')\n\
         \x20   print(ws.recv().hex())\n",
    );
    command.arg(format!("ws://{addr}/ws"));
    let output = tokio::task::spawn_blocking(move || {
        run_to_end(command, "python websockets", Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello tom\n0102\n");
}

#[tokio::test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
async fn python_h2_through_the_axum_route() {
    let seen = Arc::default();
    let service = endpoint(&seen).service();
    let addr = serve(&service).await;
    let url = format!("http://{addr}/ws");
    tokio::task::spawn_blocking(move || common::h2::python_h2_check(&url))
        .await
        .unwrap();
    timeout(WAIT, service.shutdown()).await.unwrap();
    let closes = seen.lock().unwrap().closes.clone();
    assert_eq!(closes.len(), 1);
    assert!(closes[0].code == CloseCode::NORMAL && closes[0].was_clean);
}

#[tokio::test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
async fn node_http2_client_through_the_axum_route() {
    let seen = Arc::default();
    let service = endpoint(&seen).service();
    let addr = serve(&service).await;
    let mut command = Command::new("node");
    command
        .arg(repo_root().join("interop/node/h2_check.mjs"))
        .arg(format!("http://{addr}/ws"))
        .arg("--binary");
    let output = tokio::task::spawn_blocking(move || {
        run_to_end(command, "node h2_check", Duration::from_secs(30))
    })
    .await
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
    timeout(WAIT, service.shutdown()).await.unwrap();
    let closes = seen.lock().unwrap().closes.clone();
    assert_eq!(closes.len(), 2);
    assert!(
        closes
            .iter()
            .any(|c| c.code == CloseCode::NORMAL && c.was_clean)
    );
}

/// The example's binary, built by `cargo test` beside this test's.
fn example(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    deps.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

/// Starts `examples/axum.rs` with `args` on a free port; its URL line and the process.
fn start_example(args: &[&std::ffi::OsStr]) -> (String, common::Reaped) {
    use std::io::BufRead;
    let mut child = Command::new(example("axum"))
        .args(args)
        .env("PORT", "0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the example is built by `cargo test`");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (line, common::Reaped(child))
}

#[test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
fn the_axum_example_serves_http1_h2c_and_h2_over_tls() {
    let h2_check = |url: &str, extra: &[&std::ffi::OsStr]| {
        let mut command = Command::new("node");
        command
            .arg(repo_root().join("interop/node/h2_check.mjs"))
            .arg(url)
            .arg("--echo")
            .args(extra);
        let output = run_to_end(command, "node h2_check", Duration::from_secs(30));
        let said = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{said}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            said.contains("ok connect\n") && said.contains("ok echo\n"),
            "{said}"
        );
    };

    let (line, _plain) = start_example(&[]);
    let base = line.split_whitespace().next().unwrap().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    h2_check(&format!("{base}ws"), &[]);
    let page = raw_exchange(
        base.trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap(),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(page.contains("new WebSocket"), "{page}");

    let pki = common::pki::Pki::loopback();
    let (line, _tls) = start_example(&[
        "--tls".as_ref(),
        pki.cert_file().as_os_str(),
        pki.key_file().as_os_str(),
    ]);
    let base = line.split_whitespace().next().unwrap().to_owned();
    assert!(base.starts_with("https://localhost:"), "{line}");
    h2_check(
        &format!("{base}ws"),
        &["--ca".as_ref(), pki.ca_file().as_os_str()],
    );
}

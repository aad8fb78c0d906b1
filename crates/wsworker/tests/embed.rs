//! The handling half without the listeners: an `Endpoint` made a `Service`, serving streams
//! that the test accepts itself (TCP, a Unix socket), and its graceful shutdown.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    RawClient, WAIT, closed, message, python, raw_exchange, record_peers, run_to_end, say_hello,
};
use tokio::net::TcpListener;
use tokio::time::timeout;
use wsworker::{CloseCode, CloseInfo, Endpoint, HttpResponse, Message, Service, WebSocket};

/// Accepts TCP connections on a loopback port and hands each to `service`.
async fn listen(service: &Service) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = service.clone();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(service.serve(stream, Some(peer)));
        }
    });
    addr
}

/// An opening request with this `Sec-WebSocket-Version`.
fn upgrade_request(version: u8) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    )
}

/// An endpoint that answers `hello NAME` and records the close of each connection.
fn hello_endpoint(closes: &Arc<Mutex<Vec<CloseInfo>>>) -> Endpoint {
    let mut endpoint = Endpoint::new();
    let closes = closes.clone();
    endpoint
        .on_message(|conn, msg| {
            conn.send(format!("hello {}", msg.to_text()?))?;
            Ok(())
        })
        .on_close(move |_, info| closes.lock().unwrap().push(info.clone()))
        .on_http(|_| HttpResponse::new(200, "plain http\n"));
    endpoint
}

#[tokio::test]
async fn a_service_serves_streams_accepted_elsewhere_as_the_worker_serves_its_own() {
    let closes = Arc::default();
    let mut endpoint = hello_endpoint(&closes);
    let peers = record_peers(&mut endpoint);
    let service = endpoint.service();
    let addr = listen(&service).await;

    let ws = say_hello(&format!("ws://{addr}/")).await;
    assert_eq!(service.connections().len(), 1);
    let peer = peers.lock().unwrap()[0].expect("a TCP peer has an address");
    assert!(peer.ip().is_loopback() && peer.port() != addr.port());

    // Plain HTTP through on_http, and a refusal with its status, as on the Worker's port.
    let http = tokio::task::spawn_blocking(move || {
        (
            raw_exchange(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
            raw_exchange(addr, upgrade_request(8).as_bytes()),
        )
    })
    .await
    .unwrap();
    assert!(http.0.starts_with("HTTP/1.1 200"), "{}", http.0);
    assert!(http.0.ends_with("plain http\n"), "{}", http.0);
    assert!(http.1.starts_with("HTTP/1.1 426"), "{}", http.1);

    ws.close(1000, "bye").unwrap();
    assert!(closed(&ws).await.was_clean);
    timeout(WAIT, service.shutdown()).await.unwrap();
    let closes = closes.lock().unwrap();
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].code, CloseCode::NORMAL);
    let snapshot = service.metrics().snapshot();
    assert_eq!(snapshot.workers.len(), 1);
    assert_eq!(snapshot.workers[0].connections_accepted, 1);
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001_and_resolves_after_the_last() {
    let closes = Arc::default();
    let service = hello_endpoint(&closes).service();
    let addr = listen(&service).await;
    let mut clients = Vec::new();
    for name in ["a", "b", "c"] {
        let ws = WebSocket::connect(&format!("ws://{addr}/"), Vec::<String>::new())
            .await
            .unwrap();
        ws.send(name).unwrap();
        assert_eq!(message(&ws).await, Message::from(format!("hello {name}")));
        clients.push(ws);
    }

    let shutdown = service.shutdown();
    // Refused from the moment shutdown is called, before its future is polled.
    let refused =
        tokio::task::spawn_blocking(move || raw_exchange(addr, upgrade_request(13).as_bytes()))
            .await
            .unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.ends_with("server shutting down\n"), "{refused}");

    timeout(WAIT, shutdown).await.expect("the shutdown ends");
    // Resolved only once every connection was over and reported.
    let ended = closes.lock().unwrap().clone();
    assert_eq!(ended.len(), 3);
    assert!(
        ended
            .iter()
            .all(|info| info.code == CloseCode::GOING_AWAY && info.was_clean)
    );
    assert!(service.connections().is_empty());
    for ws in &clients {
        let info = closed(ws).await;
        assert_eq!(
            (info.code, info.reason.as_str()),
            (CloseCode::GOING_AWAY, "server shutting down")
        );
    }
}

#[tokio::test]
async fn shutdown_drops_the_connections_still_open_after_its_timeout() {
    let closes: Arc<Mutex<Vec<CloseInfo>>> = Arc::default();
    let mut endpoint = hello_endpoint(&closes);
    endpoint
        .close_timeout(Duration::from_secs(60))
        .shutdown_timeout(Duration::from_millis(200));
    let service = endpoint.service();
    let addr = listen(&service).await;
    // A client that never reads: it never answers the close.
    let client = tokio::task::spawn_blocking(move || RawClient::connect(addr, "/", &[]))
        .await
        .unwrap()
        .unwrap();
    timeout(WAIT, async {
        while service.connections().is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap();

    timeout(WAIT, service.shutdown())
        .await
        .expect("the shutdown ends");
    let ended = closes.lock().unwrap().clone();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].code, CloseCode::ABNORMAL);
    assert!(!ended[0].was_clean);
    drop(client);
}

#[tokio::test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
async fn python_websockets_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("wsworker-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ws.sock");
    let _ = std::fs::remove_file(&path);
    let closes = Arc::default();
    let service = hello_endpoint(&closes).service();
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let serving = service.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serving.serve(stream, None));
        }
    });

    let mut command = Command::new(python());
    command.arg("-c").arg(
        "import sys\n\
         from websockets.sync.client import unix_connect\n\
         with unix_connect(sys.argv[1], uri='ws://localhost/chat') as ws:\n\
         \x20   ws.send('tom')\n\
         \x20   print(ws.recv())\n",
    );
    command.arg(&path);
    let output = tokio::task::spawn_blocking(move || {
        run_to_end(command, "python unix_connect", Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello tom\n");
    timeout(WAIT, service.shutdown()).await.unwrap();
    let closes = closes.lock().unwrap();
    assert_eq!(closes.len(), 1);
    assert_eq!(closes[0].code, CloseCode::NORMAL);
    let _ = std::fs::remove_dir_all(&dir);
}

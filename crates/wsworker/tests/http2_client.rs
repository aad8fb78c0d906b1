//! Our client over HTTP/2 (RFC 8441): `WebSocketBuilder::http2` and `Http2Connection`
//! against an axum server (cleartext HTTP/2 with prior knowledge) and against
//! `Worker::http2(true)` (TLS, ALPN h2, certificates made at test time); several WebSockets
//! on one HTTP/2 connection; close codes both ways; reconnecting on a new HTTP/2
//! connection; and the typed errors of servers that cannot carry it: a hyper HTTP/2 server
//! without extended CONNECT, an HTTP/1.1-only server, a TLS server that does not choose h2.
#![cfg(all(feature = "axum", feature = "tls"))]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{WAIT, closed, event, message, stop};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::time::timeout;
use wsworker::client::Http2Connection;
use wsworker::{
    CloseCode, CloseInfo, Endpoint, Error, Handshake, Http2Error, Message, ReconnectPolicy,
    Service, WebSocket, Worker, WsEvent,
};

// ----- the server's side ------------------------------------------------------------------

/// What the server saw: each handshake (over HTTP/2 or not, and from where), each close.
struct Seen {
    handshakes: Vec<bool>,
    peers: Vec<Option<SocketAddr>>,
    closes: Vec<CloseInfo>,
    /// The number of closes, to wait on.
    closed: tokio::sync::watch::Sender<usize>,
}

/// `hello NAME` to text, binary echoed, `close CODE` closes with CODE; subprotocol `chat`
/// when offered.
fn configure(endpoint: &mut Endpoint) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen {
        handshakes: Vec::new(),
        peers: Vec::new(),
        closes: Vec::new(),
        closed: tokio::sync::watch::channel(0).0,
    }));
    let (on_handshake, on_connect, on_close) = (seen.clone(), seen.clone(), seen.clone());
    endpoint
        .on_handshake(move |request| {
            on_handshake
                .lock()
                .unwrap()
                .handshakes
                .push(request.is_h2());
            if request.protocols().any(|p| p == "chat") {
                Handshake::accept_protocol("chat")
            } else {
                Handshake::accept()
            }
        })
        .on_connect(move |conn| on_connect.lock().unwrap().peers.push(conn.remote_addr()))
        .on_message(|conn, msg| {
            match msg {
                Message::Text(text) => match text.strip_prefix("close ") {
                    Some(code) => conn.close(code.parse::<u16>().unwrap(), "as asked")?,
                    None => conn.send(format!("hello {text}"))?,
                },
                binary => conn.send(binary)?,
            }
            Ok(())
        })
        .on_close(move |_, info| {
            let mut seen = on_close.lock().unwrap();
            seen.closes.push(info.clone());
            seen.closed.send_replace(seen.closes.len());
        });
    seen
}

/// An axum app with the WebSocket route at `/ws`, on a loopback port: axum serves HTTP/1.1
/// and cleartext HTTP/2 (prior knowledge), with extended CONNECT on.
async fn axum_server(service: &Service) -> SocketAddr {
    let app = axum::Router::new().route("/ws", wsworker::axum::route(service.clone()));
    common::axum_serve(app).await
}

/// Waits until the server has seen `n` closes; returns them.
async fn server_closes(seen: &Mutex<Seen>, n: usize) -> Vec<CloseInfo> {
    let mut closed = seen.lock().unwrap().closed.subscribe();
    timeout(WAIT, closed.wait_for(|closed| *closed >= n))
        .await
        .expect("the server did not see the closes")
        .unwrap();
    seen.lock().unwrap().closes.clone()
}

async fn hello(ws: &WebSocket, name: &str) {
    ws.send(name).unwrap();
    assert_eq!(message(ws).await, Message::text(format!("hello {name}")));
}

/// The error of a connection that must fail.
async fn connect_error(builder: wsworker::WebSocketBuilder) -> Error {
    match timeout(WAIT, builder.connect()).await.expect("timed out") {
        Ok(_) => panic!("the connection should have failed"),
        Err(error) => error,
    }
}

// ----- certificates ---------------------------------------------------------------------

/// A test CA and a server certificate for the loopback names, as files in a temporary
/// directory (removed on drop).
struct Pki {
    ca_pem: String,
    dir: PathBuf,
}

impl Pki {
    fn loopback() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("wsworker h2 test CA {n}"));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &ca).unwrap();
        let dir = std::env::temp_dir().join(format!("wsworker-h2-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        Self {
            ca_pem: ca.pem(),
            dir,
        }
    }

    /// A TLS worker with this certificate, HTTP/2 on or off.
    fn worker(&self, http2: bool) -> Worker {
        let mut worker = Worker::new("websocket+tls://127.0.0.1:0").unwrap();
        worker
            .tls_pem(self.dir.join("cert.pem"), self.dir.join("key.pem"))
            .unwrap();
        worker.http2(http2);
        worker
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ----- cleartext HTTP/2 to axum -----------------------------------------------------------

#[tokio::test]
async fn a_websocket_over_cleartext_http2_to_axum() {
    let mut endpoint = Endpoint::new();
    let seen = configure(&mut endpoint);
    let service = endpoint.service();
    let addr = axum_server(&service).await;

    let ws = WebSocket::builder(format!("ws://{addr}/ws"))
        .protocols(["chat"])
        .http2()
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.protocol(), "chat");
    assert!(
        ws.extensions().starts_with("permessage-deflate"),
        "{}",
        ws.extensions()
    );
    hello(&ws, "tom").await;
    // Large enough for many DATA frames and the flow-control windows, both ways.
    let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    ws.send(big.clone()).unwrap();
    assert_eq!(message(&ws).await, Message::binary(big));
    ws.close(4000, "bye").unwrap();
    let info = closed(&ws).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(info.code.as_u16(), 4000);
    let closes = server_closes(&seen, 1).await;
    assert_eq!(closes[0].code.as_u16(), 4000);
    assert_eq!(closes[0].reason, "bye");
    // Over HTTP/2, not HTTP/1.1.
    assert_eq!(seen.lock().unwrap().handshakes, [true]);

    // Without `http2()`, the same server takes the HTTP/1.1 upgrade: the test tells them apart.
    let ws = WebSocket::connect(&format!("ws://{addr}/ws"), ["chat"])
        .await
        .unwrap();
    hello(&ws, "jerry").await;
    assert_eq!(seen.lock().unwrap().handshakes, [true, false]);
    timeout(WAIT, service.shutdown()).await.unwrap();
}

#[tokio::test]
async fn several_websockets_share_one_http2_connection() {
    let mut endpoint = Endpoint::new();
    let seen = configure(&mut endpoint);
    let service = endpoint.service();
    let addr = axum_server(&service).await;

    let h2 = Http2Connection::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    assert_eq!(h2.origin(), format!("ws://127.0.0.1:{}", addr.port()));
    let a = h2
        .websocket(format!("ws://{addr}/ws"))
        .protocols(["chat"])
        .connect()
        .await
        .unwrap();
    let b = h2
        .websocket(format!("ws://{addr}/ws"))
        .connect()
        .await
        .unwrap();
    assert_eq!((a.protocol(), b.protocol()), ("chat", ""));
    // Interleaved: each stream gets its own answers.
    a.send("a1").unwrap();
    b.send("b1").unwrap();
    a.send("a2").unwrap();
    assert_eq!(message(&b).await, Message::text("hello b1"));
    assert_eq!(message(&a).await, Message::text("hello a1"));
    assert_eq!(message(&a).await, Message::text("hello a2"));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.handshakes, [true, true]);
        // One TCP connection under both.
        assert_eq!(seen.peers.len(), 2);
        assert_eq!(seen.peers[0], seen.peers[1]);
    }

    // The server closes one: the other goes on.
    a.send("close 4001").unwrap();
    let info = closed(&a).await;
    assert_eq!(info.code.as_u16(), 4001);
    assert_eq!(info.reason, "as asked");
    assert!(info.was_clean, "{info:?}");
    hello(&b, "still here").await;
    // And a third opens on the same connection after it.
    let c = h2
        .websocket(format!("ws://{addr}/ws"))
        .connect()
        .await
        .unwrap();
    hello(&c, "c").await;
    let peers = seen.lock().unwrap().peers.clone();
    assert_eq!(peers[2], peers[0]);
    b.close(1000, "").unwrap();
    assert_eq!(closed(&b).await.code, CloseCode::NORMAL);
    drop(c);
    let closes = server_closes(&seen, 3).await;
    assert!(closes.iter().all(|c| c.was_clean), "{closes:?}");

    // A URL of another origin is refused at once.
    let other = connect_error(h2.websocket("ws://127.0.0.1:1/ws")).await;
    assert!(matches!(other, Error::InvalidAddress { .. }), "{other:?}");
    timeout(WAIT, service.shutdown()).await.unwrap();
}

#[tokio::test]
async fn a_lost_websocket_reconnects_on_a_new_http2_connection() {
    let mut endpoint = Endpoint::new();
    let seen = configure(&mut endpoint);
    let service = endpoint.service();
    let addr = axum_server(&service).await;

    let ws = WebSocket::builder(format!("ws://{addr}/ws"))
        .http2()
        .reconnect(ReconnectPolicy::default().initial_delay(Duration::from_millis(10)))
        .connect()
        .await
        .unwrap();
    hello(&ws, "tom").await;
    // 1012 (service restart): the policy tries again.
    ws.send("close 1012").unwrap();
    loop {
        match event(&ws).await {
            WsEvent::Reconnecting { close, .. } => assert_eq!(close.code.as_u16(), 1012),
            WsEvent::Open => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    hello(&ws, "again").await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.handshakes, [true, true]);
    // A new HTTP/2 connection: another client port.
    assert_ne!(seen.peers[0], seen.peers[1]);
}

/// A TCP relay to `to` on a loopback port; says on the channel when a relayed connection
/// is over (both ways).
async fn relay(to: SocketAddr) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ended, ends) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let ended = ended.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(to).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                let _ = ended.send(());
            });
        }
    });
    (addr, ends)
}

#[tokio::test]
async fn http2_connections_end_with_their_last_user() {
    let mut endpoint = Endpoint::new();
    let _seen = configure(&mut endpoint);
    let service = endpoint.service();
    let (addr, mut ends) = relay(axum_server(&service).await).await;

    // A WebSocket's own HTTP/2 connection ends with it.
    let ws = WebSocket::builder(format!("ws://{addr}/ws"))
        .http2()
        .connect()
        .await
        .unwrap();
    hello(&ws, "tom").await;
    ws.close(1000, "").unwrap();
    assert!(closed(&ws).await.was_clean);
    timeout(WAIT, ends.recv())
        .await
        .expect("the HTTP/2 connection outlived its WebSocket");

    // A shared one outlives its WebSockets while a handle on it is kept, then ends.
    let h2 = Http2Connection::connect(&format!("ws://{addr}/"))
        .await
        .unwrap();
    let ws = h2
        .websocket(format!("ws://{addr}/ws"))
        .connect()
        .await
        .unwrap();
    hello(&ws, "jerry").await;
    drop(ws);
    let ws = h2
        .websocket(format!("ws://{addr}/ws"))
        .connect()
        .await
        .unwrap();
    hello(&ws, "jerry again").await;
    assert!(!h2.is_closed());
    drop(h2);
    // The WebSocket keeps it.
    hello(&ws, "still").await;
    drop(ws);
    timeout(WAIT, ends.recv())
        .await
        .expect("the HTTP/2 connection outlived its users");
    assert!(ends.try_recv().is_err(), "one connection each time");
    timeout(WAIT, service.shutdown()).await.unwrap();
}

// ----- TLS, ALPN h2, to Worker::http2 -----------------------------------------------------

#[tokio::test]
async fn websockets_over_tls_http2_to_the_standalone_worker() {
    let pki = Pki::loopback();
    let mut worker = pki.worker(true);
    let seen = configure(&mut worker);
    let server = worker.start().unwrap();
    let url = format!("wss://localhost:{}/", server.local_addr().port());

    let ws = WebSocket::builder(url.clone())
        .tls_ca_pem(&pki.ca_pem)
        .http2()
        .connect()
        .await
        .unwrap();
    hello(&ws, "tom").await;
    ws.close(1000, "done").unwrap();
    assert!(closed(&ws).await.was_clean);

    let h2 = Http2Connection::connect_with(WebSocket::builder(url.clone()).tls_ca_pem(&pki.ca_pem))
        .await
        .unwrap();
    let a = h2.websocket(format!("{url}a")).connect().await.unwrap();
    let b = h2.websocket(format!("{url}b")).connect().await.unwrap();
    hello(&a, "a").await;
    hello(&b, "b").await;
    b.send("close 4002").unwrap();
    assert_eq!(closed(&b).await.code.as_u16(), 4002);
    hello(&a, "a again").await;
    a.close(4003, "a is done").unwrap();
    assert_eq!(closed(&a).await.code.as_u16(), 4003);
    let closes = server_closes(&seen, 3).await;
    assert!(
        closes
            .iter()
            .any(|c| c.code.as_u16() == 4003 && c.reason == "a is done")
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.handshakes, [true, true, true]);
        assert_ne!(seen.peers[0], seen.peers[1]);
        assert_eq!(seen.peers[1], seen.peers[2]);
    }
    drop(h2);
    stop(server).await;
}

// ----- servers that cannot carry it: typed errors -----------------------------------------

/// A hyper HTTP/2 server (cleartext) without `enable_connect_protocol`: its SETTINGS lack
/// `SETTINGS_ENABLE_CONNECT_PROTOCOL`. Answers every request 200.
async fn h2_server_without_extended_connect() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Empty::<bytes::Bytes>::new(),
                    ))
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_server_without_extended_connect_is_a_typed_error() {
    let addr = h2_server_without_extended_connect().await;
    let error = connect_error(WebSocket::builder(format!("ws://{addr}/ws")).http2()).await;
    assert!(
        matches!(error, Error::Http2(Http2Error::ConnectProtocolDisabled)),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("SETTINGS_ENABLE_CONNECT_PROTOCOL"),
        "{error}"
    );
    let error = Http2Connection::connect(&format!("ws://{addr}/"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Http2(Http2Error::ConnectProtocolDisabled)),
        "{error:?}"
    );
}

#[tokio::test]
async fn servers_that_do_not_speak_http2_are_typed_errors() {
    // HTTP/1.1 only, cleartext: the HTTP/2 preface is not a request it takes.
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    let _ = configure(&mut worker);
    let server = worker.start().unwrap();
    let error =
        connect_error(WebSocket::builder(format!("ws://{}/", server.local_addr())).http2()).await;
    assert!(
        matches!(error, Error::Http2(Http2Error::NotHttp2)),
        "{error:?}"
    );
    stop(server).await;

    // TLS without h2: the server offers http/1.1 only, and refuses our h2.
    let pki = Pki::loopback();
    let server = pki.worker(false).start().unwrap();
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let error = connect_error(WebSocket::builder(url).tls_ca_pem(&pki.ca_pem).http2()).await;
    assert!(
        matches!(
            error,
            Error::Http2(Http2Error::NotNegotiated { alpn: None })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("ALPN h2"), "{error}");
    stop(server).await;
}

#[tokio::test]
async fn a_tls_server_that_chooses_no_protocol_is_not_negotiated() {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let pki = Pki::loopback();
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(pki.dir.join("cert.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(pki.dir.join("key.pem")).unwrap();
    // No ALPN at all: the server chooses nothing.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // Held until the client gave up.
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut sink).await;
    });
    let url = format!("wss://localhost:{port}/");
    let error = connect_error(WebSocket::builder(url).tls_ca_pem(&pki.ca_pem).http2()).await;
    assert!(
        matches!(
            error,
            Error::Http2(Http2Error::NotNegotiated { alpn: None })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("ALPN h2"), "{error}");
    timeout(WAIT, server).await.unwrap().unwrap();
}

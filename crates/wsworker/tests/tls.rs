//! TLS: our client and our server over `wss://` with certificates made at test time
//! (`rcgen`), certificate errors, plain HTTP and broken hellos on the TLS port, `https://`
//! for the HTTP handler; and (ignored, `bash interop/setup.sh` first) the Python
//! `websockets` client against our server and our client against its server, over TLS.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{
    PeerServer, WAIT, closed, closed_without_a_word, message, python, rejected_as_pending,
    repo_root, run_to_end, stop, wait_pending_handshakes,
};
use tokio::time::timeout;
use wsworker::rustls::pki_types::pem::PemObject;
use wsworker::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use wsworker::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use wsworker::{Error, Handshake, HttpResponse, Message, RunningServer, WebSocket, Worker};

// ----- certificates ---------------------------------------------------------------------

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting only `pki`'s CA, announcing `alpn`.
fn client_config(pki: &Pki, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()).unwrap();
    let mut config = ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

// ----- servers and clients --------------------------------------------------------------

/// The hello server over TLS with `pki`'s certificate, and a page on GET /.
fn hello_tls_worker(pki: &Pki) -> Worker {
    let mut worker = Worker::new("websocket+tls://127.0.0.1:0").unwrap();
    worker.tls_pem(pki.cert_file(), pki.key_file()).unwrap();
    worker.on_message(|conn, msg| {
        match msg {
            Message::Text(text) => conn.send(format!("hello {text}"))?,
            Message::Binary(data) => conn.send(data)?,
        }
        Ok(())
    });
    worker.on_http(|request| match request.path() {
        "/" => HttpResponse::html("<title>over tls</title>"),
        _ => HttpResponse::not_found(),
    });
    worker
}

fn wss_url(server: &RunningServer) -> String {
    format!("wss://{}/", server.local_addr())
}

async fn hello_and_close(ws: &WebSocket) {
    ws.send("tom").unwrap();
    assert_eq!(message(ws).await, Message::text("hello tom"));
    ws.close(1000, "bye").unwrap();
    let info = closed(ws).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(info.code.as_u16(), 1000);
}

/// The error of a connection that must fail.
async fn connect_error(builder: wsworker::WebSocketBuilder) -> Error {
    match timeout(WAIT, builder.connect()).await.expect("timed out") {
        Ok(_) => panic!("the connection should have failed"),
        Err(error) => error,
    }
}

/// A blocking TLS client on std's `TcpStream` (rustls' own `StreamOwned`), to speak HTTP or
/// raw bytes over TLS.
fn tls_stream(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Whether the server closes this raw connection (EOF or reset) within `WAIT`.
fn server_closes(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = [0u8; 1024];
    let started = Instant::now();
    while started.elapsed() < WAIT {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

// ----- our client, our server -----------------------------------------------------------

#[tokio::test]
async fn our_client_and_server_over_wss_with_an_added_ca() {
    let pki = Pki::loopback();
    let mut worker = hello_tls_worker(&pki);
    worker.count(2);
    assert!(worker.is_tls());
    let server = worker.start().unwrap();
    assert!(server.is_tls());

    // By IP address (checked against the certificate's IP addresses), CA from a file.
    let ws = WebSocket::builder(wss_url(&server))
        .tls_ca_pem_file(pki.ca_file())
        .connect()
        .await
        .unwrap();
    hello_and_close(&ws).await;

    // By name (SNI "localhost"), CA from memory; a 1 MiB message in both directions, in
    // many TLS records.
    let url = format!("wss://localhost:{}/chat", server.local_addr().port());
    let ws = WebSocket::builder(url)
        .tls_ca_pem(&pki.ca_pem)
        .connect()
        .await
        .unwrap();
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    ws.send(big.clone()).unwrap();
    assert_eq!(message(&ws).await, Message::binary(big));
    hello_and_close(&ws).await;

    // Many small messages, each answered, in order.
    let ws = WebSocket::builder(wss_url(&server))
        .tls_ca_pem(&pki.ca_pem)
        .connect()
        .await
        .unwrap();
    for i in 0..200 {
        ws.send(format!("{i}")).unwrap();
    }
    for i in 0..200 {
        assert_eq!(message(&ws).await, Message::text(format!("hello {i}")));
    }
    hello_and_close(&ws).await;
    stop(server).await;
}

#[tokio::test]
async fn the_server_closing_first_is_clean_over_tls() {
    let pki = Pki::loopback();
    let mut worker = Worker::new("websocket+tls://127.0.0.1:0").unwrap();
    worker.tls_pem(pki.cert_file(), pki.key_file()).unwrap();
    worker.on_message(|conn, _| {
        conn.close(4001, "server bye")?;
        Ok(())
    });
    let server = worker.start().unwrap();
    let ws = WebSocket::builder(wss_url(&server))
        .tls_ca_pem(&pki.ca_pem)
        .connect()
        .await
        .unwrap();
    ws.send("close please").unwrap();
    let info = closed(&ws).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(
        (info.code.as_u16(), info.reason.as_str()),
        (4001, "server bye")
    );
    stop(server).await;
}

#[tokio::test]
async fn rustls_configs_of_ones_own_on_both_sides() {
    let pki = Pki::loopback();
    let chain = vec![CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let server_config = ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    // A TLS configuration turns TLS on for websocket:// too.
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    assert!(!worker.is_tls());
    worker.tls_config(Arc::new(server_config));
    assert!(worker.is_tls());
    worker.on_message(|conn, msg| {
        conn.send(format!("hello {}", msg.to_text()?))?;
        Ok(())
    });
    let server = worker.start().unwrap();
    assert!(server.is_tls());

    let ws = WebSocket::builder(wss_url(&server))
        .tls_config(client_config(&pki, &[]))
        .connect()
        .await
        .unwrap();
    hello_and_close(&ws).await;
    stop(server).await;
}

// ----- errors ---------------------------------------------------------------------------

#[tokio::test]
async fn an_untrusted_certificate_is_a_clear_error() {
    let pki = Pki::loopback();
    let server = hello_tls_worker(&pki).start().unwrap();

    // Only the web roots: our test CA is unknown.
    let error = connect_error(WebSocket::builder(wss_url(&server))).await;
    assert_eq!(
        error.to_string(),
        "tls error: certificate verify failed: unknown issuer"
    );
    let source = std::error::Error::source(&error).expect("a source");
    assert!(
        matches!(
            source.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{source:?}"
    );

    // Another CA than the one that signed the server's certificate.
    let other = Pki::loopback();
    let error = connect_error(WebSocket::builder(wss_url(&server)).tls_ca_pem(&other.ca_pem)).await;
    assert!(error.to_string().contains("unknown issuer"), "{error}");

    // The right CA, but a certificate for other names.
    let elsewhere = Pki::new(&["example.test"]);
    let mut worker = hello_tls_worker(&elsewhere);
    worker.count(1);
    let misnamed = worker.start().unwrap();
    let error =
        connect_error(WebSocket::builder(wss_url(&misnamed)).tls_ca_pem(&elsewhere.ca_pem)).await;
    let text = error.to_string();
    assert!(
        text.starts_with("tls error: certificate verify failed: certificate not valid for name"),
        "{text}"
    );
    assert!(text.contains("example.test"), "{text}");

    // The server is still fine.
    let ws = WebSocket::builder(wss_url(&server))
        .tls_ca_pem(&pki.ca_pem)
        .connect()
        .await
        .unwrap();
    hello_and_close(&ws).await;
    stop(misnamed).await;
    stop(server).await;
}

#[tokio::test]
async fn wss_to_a_plain_server_and_ws_to_a_tls_server_fail_clearly() {
    let pki = Pki::loopback();
    let tls = hello_tls_worker(&pki).start().unwrap();
    let mut plain = Worker::new("websocket://127.0.0.1:0").unwrap();
    plain.on_message(|_, _| Ok(()));
    let plain = plain.start().unwrap();

    let error = connect_error(
        WebSocket::builder(format!("wss://{}/", plain.local_addr())).tls_ca_pem(&pki.ca_pem),
    )
    .await;
    assert!(matches!(error, Error::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("does not speak TLS"), "{error}");

    // A ws:// client on the TLS port gets a 400 that says why.
    let error = connect_error(WebSocket::builder(format!("ws://{}/", tls.local_addr()))).await;
    assert!(
        matches!(error, Error::Rejected { status: 400 }),
        "{error:?}"
    );
    stop(plain).await;
    stop(tls).await;
}

#[tokio::test]
async fn bad_ca_files_fail_the_connection() {
    let error =
        connect_error(WebSocket::builder("wss://127.0.0.1:1/").tls_ca_pem_file("/nonexistent.pem"))
            .await;
    assert_eq!(
        error.to_string(),
        "tls error: cannot read the CA file /nonexistent.pem"
    );
    let error =
        connect_error(WebSocket::builder("wss://127.0.0.1:1/").tls_ca_pem("no pem here")).await;
    assert!(error.to_string().contains("no certificate"), "{error}");
}

#[test]
fn server_certificate_problems_are_clear_errors() {
    let pki = Pki::loopback();
    let mut worker = Worker::new("websocket+tls://127.0.0.1:0").unwrap();
    let error = worker
        .tls_pem(pki.dir.join("missing.pem"), pki.key_file())
        .unwrap_err();
    assert!(matches!(error, Error::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("missing.pem"), "{error}");

    // A key file with no key in it.
    let error = worker
        .tls_pem(pki.cert_file(), pki.cert_file())
        .unwrap_err();
    assert!(
        error.to_string().contains("no usable private key"),
        "{error}"
    );

    // A key of another certificate.
    let other = Pki::loopback();
    let error = worker
        .tls_pem(pki.cert_file(), other.key_file())
        .unwrap_err();
    assert!(
        error.to_string().contains("cannot be used together"),
        "{error}"
    );

    // websocket+tls:// and no certificate: start says what is missing.
    let error = Worker::new("websocket+tls://127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap_err();
    assert!(matches!(error, Error::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("tls_pem"), "{error}");
}

// ----- the TLS port under bad clients ---------------------------------------------------

#[tokio::test]
async fn plain_http_and_broken_hellos_cost_one_connection_each() {
    let pki = Pki::loopback();
    let mut worker = hello_tls_worker(&pki);
    worker.handshake_timeout(Duration::from_millis(500));
    let server = worker.start().unwrap();
    let addr = server.local_addr();

    // A good connection, open through everything below.
    let good = WebSocket::builder(wss_url(&server))
        .tls_ca_pem(&pki.ca_pem)
        .connect()
        .await
        .unwrap();
    good.send("before").unwrap();
    assert_eq!(message(&good).await, Message::text("hello before"));

    let bad_clients = tokio::task::spawn_blocking(move || {
        // Plain HTTP to the TLS port: a 400 that says why, then the connection ends.
        let mut http = TcpStream::connect(addr).unwrap();
        http.set_read_timeout(Some(WAIT)).unwrap();
        write!(http, "GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = http.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("this port speaks TLS"), "{answer}");

        // A TLS record header followed by garbage: the handshake fails, the socket closes.
        let mut broken = TcpStream::connect(addr).unwrap();
        broken
            .write_all(b"\x16\x03\x01\x00\x20this is not a client hello at all!!")
            .unwrap();
        assert!(server_closes(&mut broken), "broken hello");

        // Binary garbage that is not TLS at all.
        let mut junk = TcpStream::connect(addr).unwrap();
        junk.write_all(&[0xff; 64]).unwrap();
        assert!(server_closes(&mut junk), "junk");

        // A hello cut short, then silence: dropped at the handshake timeout.
        let mut stalled = TcpStream::connect(addr).unwrap();
        stalled.write_all(b"\x16\x03\x01\x02\x00\x01").unwrap();
        assert!(server_closes(&mut stalled), "stalled hello");

        // Silence from the start: dropped at the handshake timeout.
        let mut silent = TcpStream::connect(addr).unwrap();
        assert!(server_closes(&mut silent), "silent client");

        // A client that closes in the middle of the handshake.
        let mut gone = TcpStream::connect(addr).unwrap();
        gone.write_all(b"\x16\x03\x01").unwrap();
        drop(gone);
    });
    timeout(Duration::from_secs(30), bad_clients)
        .await
        .expect("the bad clients took too long")
        .unwrap();

    // The good connection never noticed; new connections work.
    good.send("after").unwrap();
    assert_eq!(message(&good).await, Message::text("hello after"));
    hello_and_close(&good).await;
    let ws = WebSocket::builder(wss_url(&server))
        .tls_ca_pem(&pki.ca_pem)
        .connect()
        .await
        .unwrap();
    hello_and_close(&ws).await;
    stop(server).await;
}

// ----- https for the HTTP handler, ALPN -------------------------------------------------

#[tokio::test]
async fn tls_handshakes_in_progress_are_bounded() {
    let pki = Pki::loopback();
    let mut worker = hello_tls_worker(&pki);
    worker.count(1).max_pending_handshakes(4);
    let metrics = worker.metrics();
    let server = worker.start().unwrap();
    let addr = server.local_addr();

    // Three sockets that send nothing and one that starts a ClientHello (a record header
    // announcing 512 bytes, and 4 of them) take every place.
    let mut silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    silent[3]
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc")
        .unwrap();
    wait_pending_handshakes(&metrics, 4);
    let mut fifth = TcpStream::connect(addr).unwrap();
    assert!(closed_without_a_word(&mut fifth));
    assert_eq!(rejected_as_pending(&metrics), Some(1));

    // One leaves: a wss client gets its place, and gives it back once open.
    drop(silent.remove(0));
    wait_pending_handshakes(&metrics, 3);
    let ws = WebSocket::builder(wss_url(&server))
        .tls_ca_pem(&pki.ca_pem)
        .connect()
        .await
        .unwrap();
    wait_pending_handshakes(&metrics, 3);
    silent.push(TcpStream::connect(addr).unwrap());
    wait_pending_handshakes(&metrics, 4);
    let mut over = TcpStream::connect(addr).unwrap();
    assert!(closed_without_a_word(&mut over));
    assert_eq!(rejected_as_pending(&metrics), Some(2));
    hello_and_close(&ws).await;
    drop(silent);
    wait_pending_handshakes(&metrics, 0);
    stop(server).await;
}

#[tokio::test]
async fn the_http_handler_answers_over_https_with_alpn_http11() {
    let pki = Pki::loopback();
    let server = hello_tls_worker(&pki).start().unwrap();
    let addr = server.local_addr();
    let config = client_config(&pki, &[b"h2", b"http/1.1"]);
    let (answer, alpn) = tokio::task::spawn_blocking(move || {
        let mut tls = tls_stream(addr, config);
        write!(tls, "GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        tls.flush().unwrap();
        let mut answer = String::new();
        let _ = tls.read_to_string(&mut answer);
        (answer, tls.conn.alpn_protocol().map(<[u8]>::to_vec))
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("<title>over tls</title>"), "{answer}");
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));

    // A client that offers only h2 gets no protocol it can use: the handshake fails.
    let config = client_config(&pki, &[b"h2"]);
    let failed = tokio::task::spawn_blocking(move || {
        let mut tls = tls_stream(addr, config);
        tls.write_all(b"GET / HTTP/1.1\r\n\r\n")
            .and_then(|()| tls.flush())
            .is_err()
    })
    .await
    .unwrap();
    assert!(failed, "ALPN h2 only must fail");
    stop(server).await;
}

// ----- interop: Python websockets over TLS ----------------------------------------------

/// The server `interop/python/client_check.py` expects (subprotocols, echo, `close CODE
/// REASON`), over TLS.
fn interop_tls_server(pki: &Pki) -> RunningServer {
    let mut worker = Worker::new("websocket+tls://127.0.0.1:0").unwrap();
    worker.count(2);
    worker.tls_pem(pki.cert_file(), pki.key_file()).unwrap();
    worker.on_handshake(
        |req| match req.protocols().find(|p| ["chat", "superchat"].contains(p)) {
            Some(p) => Handshake::accept_protocol(p),
            None => Handshake::accept(),
        },
    );
    worker.on_message(|conn, msg| {
        if let Some(command) = msg.as_text().and_then(|t| t.strip_prefix("close ")) {
            let (code, reason) = command.split_once(' ').unwrap_or((command, ""));
            conn.close(code.parse().unwrap_or(1000), reason)?;
        } else {
            conn.send(msg)?;
        }
        Ok(())
    });
    worker.start().unwrap()
}

#[test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
fn python_websockets_client_against_our_tls_server() {
    let pki = Pki::loopback();
    let server = interop_tls_server(&pki);
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let mut command = Command::new(python());
    command
        .arg(repo_root().join("interop/python/client_check.py"))
        .arg("--ca")
        .arg(pki.ca_file())
        .arg(&url);
    let output = run_to_end(command, "python client_check", Duration::from_secs(90));
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    server.shutdown();
}

#[tokio::test]
#[ignore = "needs the interop peers: bash interop/setup.sh"]
async fn our_client_against_python_websockets_tls_server() {
    let pki = Pki::loopback();
    let mut command = Command::new(python());
    command
        .arg(repo_root().join("interop/python/echo_server.py"))
        .arg("--cert")
        .arg(pki.cert_file())
        .arg("--key")
        .arg(pki.key_file());
    let server = PeerServer::start(command);
    let connect = |protocols: &[&str]| {
        WebSocket::builder(format!("wss://localhost:{}/", server.port))
            .protocols(protocols)
            .tls_ca_pem_file(pki.ca_file())
            .connect()
    };

    let ws = connect(&["chat"]).await.unwrap();
    assert_eq!(ws.protocol(), "chat");
    let text = "κόσμε 🎉 hello ✓";
    ws.send(text).unwrap();
    assert_eq!(message(&ws).await, Message::text(text));
    let big: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    ws.send(big.clone()).unwrap();
    assert_eq!(message(&ws).await, Message::binary(big));
    for i in 0..100 {
        ws.send(format!("msg-{i}")).unwrap();
    }
    for i in 0..100 {
        assert_eq!(message(&ws).await, Message::text(format!("msg-{i}")));
    }
    ws.close(4000, "client bye").unwrap();
    let info = closed(&ws).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(info.code.as_u16(), 4000);

    let ws = connect(&[]).await.unwrap();
    ws.send("close 4001 server bye").unwrap();
    let info = closed(&ws).await;
    assert!(info.was_clean, "{info:?}");
    assert_eq!(
        (info.code.as_u16(), info.reason.as_str()),
        (4001, "server bye")
    );

    // Without the test CA, Python's certificate is refused with the reason.
    let error = connect_error(WebSocket::builder(format!(
        "wss://localhost:{}/",
        server.port
    )))
    .await;
    assert!(error.to_string().contains("unknown issuer"), "{error}");
}

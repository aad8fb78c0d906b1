//! wsworker inside an axum app: one router serving a page at `/` and an echo WebSocket at
//! `/ws`, HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on the same port — or, with
//! `--tls`, HTTPS with ALPN `h2` and `http/1.1`, where browsers open the WebSocket inside
//! their HTTP/2 connection (RFC 8441).
//!
//! ```text
//! cargo run --example axum                          # http://127.0.0.1:3000/
//! PORT=8080 cargo run --example axum -- --tls       # https://localhost:8080/, self-signed
//! cargo run --example axum -- --tls cert.pem key.pem
//! ```
//!
//! Ctrl-C stops it gracefully: axum stops accepting, then every WebSocket is closed with
//! 1001 and the program waits for them.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use wsworker::rustls;
use wsworker::rustls::pki_types::pem::PemObject;
use wsworker::rustls::pki_types::{CertificateDer, PrivateKeyDer};

const PAGE: &str = r#"<!doctype html>
<title>wsworker in axum</title>
<p id="log">connecting…</p>
<script>
  const ws = new WebSocket(location.origin.replace(/^http/, "ws") + "/ws");
  const log = (line) => (document.getElementById("log").textContent += "\n" + line);
  ws.onopen = () => { log("open"); ws.send("tom"); };
  ws.onmessage = (event) => log("echo: " + event.data);
  ws.onclose = (event) => log("closed " + event.code);
</script>
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut endpoint = wsworker::Endpoint::new();
    endpoint.on_message(|conn, msg| {
        conn.send(msg)?;
        Ok(())
    });
    let service = endpoint.service();
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", wsworker::axum::route(service.clone()));

    let port: u16 = std::env::var("PORT").map_or(Ok(3000), |p| p.parse())?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {
            println!("http://{}/ (HTTP/1.1 and h2c)", listener.local_addr()?);
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(ctrl_c())
            .await?;
        }
        Some("--tls") => {
            let config = tls_config(args.get(1).zip(args.get(2)))?;
            println!(
                "https://localhost:{}/ (HTTP/2 and HTTP/1.1)",
                listener.local_addr()?.port()
            );
            serve_tls(listener, app, config).await?;
        }
        Some(other) => return Err(format!("unknown argument {other} (try --tls)").into()),
    }
    // axum's graceful shutdown does not cover upgraded connections: close them with 1001
    // and wait for them.
    service.shutdown().await;
    Ok(())
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// A TLS configuration announcing `h2` and `http/1.1`: from PEM files, or a self-signed
/// certificate for `localhost`.
fn tls_config(
    files: Option<(&String, &String)>,
) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error + Send + Sync>> {
    let (chain, key) = match files {
        Some((cert, key)) => (
            CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_file(key)?,
        ),
        None => {
            let generated = rcgen::generate_simple_self_signed(["localhost".to_owned()])?;
            (
                vec![generated.cert.der().clone()],
                PrivateKeyDer::from_pem_slice(generated.signing_key.serialize_pem().as_bytes())?,
            )
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// axum's `serve` without TLS; this is the same over TLS: each connection's handshake, then
/// hyper's server for whichever version ALPN chose, with extended CONNECT on.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let stop = ctrl_c();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut stop => return Ok(()),
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http2().enable_connect_protocol();
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app))
                .await;
        });
    }
}

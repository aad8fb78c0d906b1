//! Embedding in axum 0.8 (feature `axum`): a ready route, and an extractor for handlers of
//! your own. Both accept `GET` (HTTP/1.1) and `CONNECT` (HTTP/2, RFC 8441) — a route that
//! answers `GET` only never sees the WebSockets browsers open over HTTP/2. Refusals carry
//! their status and reason (400, 403, 404, 426, 501, 503, or the application's own);
//! axum answers other methods with 405.
//!
//! ```no_run
//! use axum::Router;
//! use axum::response::Html;
//! use axum::routing::get;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let mut endpoint = wsworker::Endpoint::new();
//! endpoint.on_message(|conn, msg| {
//!     conn.send(msg)?;
//!     Ok(())
//! });
//! let service = endpoint.service();
//! let app = Router::new()
//!     .route("/", get(|| async { Html("<p>hello</p>") }))
//!     .route("/ws", wsworker::axum::route(service.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! // axum's graceful shutdown does not cover upgraded connections: close them with 1001
//! // and wait for them.
//! service.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::Service;

/// The methods a WebSocket route answers: `GET` for HTTP/1.1, `CONNECT` for HTTP/2.
fn websocket_methods() -> MethodFilter {
    MethodFilter::GET.or(MethodFilter::CONNECT)
}

/// A route that serves WebSockets with `service`, over HTTP/1.1 and HTTP/2: mount it with
/// `Router::route("/ws", wsworker::axum::route(service))`. The client's address comes from
/// axum's `ConnectInfo<SocketAddr>` when the app is served with
/// `into_make_service_with_connect_info`.
pub fn route<S>(service: Service) -> MethodRouter<S, Infallible>
where
    S: Clone + Send + Sync + 'static,
{
    on(websocket_methods(), move |request: Request| {
        let remote_addr = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        service.upgrade(request, remote_addr)
    })
}

/// An extractor for a WebSocket upgrade, for a handler that does more than [`route`] (reads
/// other extractors first, say). Take it last-but-body in the handler's arguments and return
/// what [`accept`](Self::accept) gives; the [`Service`] comes from the router's state
/// (`Service: FromRef<S>`). Mount the handler with `on(MethodFilter::GET.or(MethodFilter::CONNECT), ..)`
/// or `any(..)`, not `get(..)` alone.
///
/// ```
/// use axum::Router;
/// use axum::routing::any;
/// use wsworker::axum::WebSocketUpgrade;
///
/// async fn chat(upgrade: WebSocketUpgrade) -> axum::http::Response<String> {
///     upgrade.accept().await
/// }
///
/// let service = wsworker::Endpoint::new().service();
/// let app: Router = Router::new().route("/chat", any(chat)).with_state(service);
/// # drop(app);
/// ```
#[derive(Debug)]
pub struct WebSocketUpgrade {
    service: Service,
    request: http::Request<()>,
    remote_addr: Option<SocketAddr>,
}

impl<S> FromRequestParts<S> for WebSocketUpgrade
where
    Service: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let mut request = http::Request::new(());
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        // What the upgrade needs from the extensions: hyper's handle on the connection (taken:
        // only one can have it) and HTTP/2's `:protocol`.
        if let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() {
            request.extensions_mut().insert(on_upgrade);
        }
        if let Some(protocol) = parts.extensions.get::<hyper::ext::Protocol>() {
            request.extensions_mut().insert(protocol.clone());
        }
        Ok(Self {
            service: Service::from_ref(state),
            request,
            remote_addr: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
        })
    }
}

impl WebSocketUpgrade {
    /// The request's path, headers and the rest, to look at before accepting.
    pub fn request(&self) -> &http::Request<()> {
        &self.request
    }

    /// Decides and answers as [`Service::upgrade`] does: the response to return.
    pub async fn accept(self) -> http::Response<String> {
        self.service.upgrade(self.request, self.remote_addr).await
    }
}

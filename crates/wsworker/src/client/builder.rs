//! [`WebSocketBuilder`]: everything about a client connection that is not the URL — subprotocols,
//! headers, limits, the connect timeout, reconnecting and resuming, and the
//! JavaScript-shaped callbacks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wsworker_proto::{Config, Message};

use super::handler::{Callbacks, ClientHandler, Ready};
use super::{ReconnectPolicy, WebSocket, connect};
use crate::driver::Keepalive;
use crate::error::{Error, Result};
use crate::shared::{CloseInfo, Shared};

/// Default limit for the TCP connection plus the opening handshake.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default limit of the messages held while a connection that reconnects or resumes is not
/// ready.
const DEFAULT_QUEUE_LIMIT: usize = 1 << 20;

/// Settings and callbacks for a client connection, from [`WebSocket::builder`].
///
/// ```no_run
/// use wsworker::WebSocket;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> wsworker::Result<()> {
/// let ws = WebSocket::builder("ws://127.0.0.1:2346/chat")
///     .protocols(["chat"])
///     .header("Origin", "http://example.com")
///     .on_open(|ws| {
///         let _ = ws.send("tom");
///     })
///     .on_message(|ws, msg| {
///         println!("{}", msg.to_text()?);
///         ws.close(1000, "bye")?;
///         Ok(())
///     })
///     .on_close(|_, info| println!("closed: {} {}", info.code, info.reason))
///     .open(); // returns at once, in CONNECTING
/// # drop(ws);
/// # Ok(())
/// # }
/// ```
pub struct WebSocketBuilder {
    url: String,
    fallback_urls: Vec<String>,
    reconnect: Option<ReconnectPolicy>,
    resume: bool,
    queue_limit: usize,
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    config: Config,
    connect_timeout: Duration,
    keepalive: Option<Keepalive>,
    callbacks: Callbacks,
    #[cfg(feature = "tls")]
    tls: crate::tls::ClientTls,
    extensions: super::extensions::Offers,
    /// Over HTTP/2 (RFC 8441): on a connection of its own, or on one given.
    #[cfg(feature = "hyper")]
    http2: Option<super::h2::Transport>,
}

/// What [`Http2Connection::connect_with`](super::Http2Connection::connect_with) takes from
/// a builder.
#[cfg(feature = "hyper")]
pub(super) struct Http2Parts {
    pub(super) handshake: wsworker_proto::handshake::ClientHandshake,
    #[cfg(feature = "tls")]
    pub(super) tls: Option<crate::tls::Connector>,
    pub(super) timeout: Duration,
}

impl WebSocketBuilder {
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            fallback_urls: Vec::new(),
            reconnect: None,
            resume: false,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            protocols: Vec::new(),
            headers: Vec::new(),
            config: Config::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive: Some(Keepalive::default()),
            callbacks: Callbacks::default(),
            #[cfg(feature = "tls")]
            tls: crate::tls::ClientTls::default(),
            extensions: super::extensions::Offers::default(),
            #[cfg(feature = "hyper")]
            http2: None,
        }
    }

    /// Opens the WebSocket over HTTP/2 (RFC 8441) instead of HTTP/1.1, on an HTTP/2
    /// connection of its own: cleartext with prior knowledge for `ws://` (the server must
    /// speak HTTP/2 on that port, as `axum::serve` does), TLS with ALPN `h2` for `wss://`
    /// (the server must choose `h2`, as `Worker::http2(true)` does). Once the server's
    /// SETTINGS allow WebSockets, the WebSocket is an extended CONNECT stream; subprotocols,
    /// headers and permessage-deflate are negotiated as over HTTP/1.1, and the connection
    /// behaves the same. Each attempt of a [`reconnect`](Self::reconnect) policy makes a new
    /// HTTP/2 connection. To share one HTTP/2 connection between WebSockets, see
    /// [`Http2Connection`](super::Http2Connection).
    ///
    /// Feature `hyper`.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> wsworker::Result<()> {
    /// let ws = wsworker::WebSocket::builder("wss://example.com/chat")
    ///     .http2()
    ///     .connect()
    ///     .await?;
    /// ws.send("hello")?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Those of [`WebSocket::connect`], and [`Error::Http2`]:
    /// [`ConnectProtocolDisabled`](crate::Http2Error::ConnectProtocolDisabled) when the
    /// server's SETTINGS do not allow WebSockets over HTTP/2,
    /// [`NotNegotiated`](crate::Http2Error::NotNegotiated) when the TLS server did not choose
    /// `h2`, [`NotHttp2`](crate::Http2Error::NotHttp2) when the server does not speak
    /// HTTP/2; [`Error::Rejected`] when it answers the CONNECT with another status than 2xx.
    #[cfg(feature = "hyper")]
    #[must_use]
    pub fn http2(mut self) -> Self {
        self.http2 = Some(super::h2::Transport::Own);
        self
    }

    /// Opens the WebSocket as a stream of `connection` (HTTP/2, RFC 8441), as
    /// [`http2`](Self::http2) does but without a connection of its own; the URL (and every
    /// fallback URL) must be of the connection's origin, or the WebSocket fails at once with
    /// [`Error::InvalidAddress`]. The builder's TLS settings and connect timeout do not
    /// apply to the connection, made already; the timeout still bounds the opening of the
    /// stream. With a [`reconnect`](Self::reconnect) policy, each attempt opens a new stream
    /// on the same connection: once that connection is gone, the attempts fail with
    /// [`Http2Error::Closed`](crate::Http2Error::Closed) — use [`http2`](Self::http2) for
    /// a WebSocket that must outlive its HTTP/2 connection.
    ///
    /// Feature `hyper`. [`Http2Connection::websocket`](super::Http2Connection::websocket)
    /// is a shorthand.
    #[cfg(feature = "hyper")]
    #[must_use]
    pub fn over(mut self, connection: &super::Http2Connection) -> Self {
        self.http2 = Some(super::h2::Transport::Over(connection.clone()));
        self
    }

    /// The handshake to the builder's URL, its TLS connector for HTTP/2, and its connect
    /// timeout.
    #[cfg(feature = "hyper")]
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    pub(super) fn into_http2_parts(mut self) -> Result<Http2Parts> {
        let recipe = connect::Recipe {
            protocols: Vec::new(),
            headers: Vec::new(),
            extensions: super::extensions::Offers::default(),
            http2: None,
        };
        let handshake = recipe.handshake(&self.url)?;
        #[cfg(feature = "tls")]
        let tls = self.tls.prepare(handshake.is_tls(), true)?;
        Ok(Http2Parts {
            handshake,
            #[cfg(feature = "tls")]
            tls,
            timeout: self.connect_timeout,
        })
    }

    /// Offers these subprotocols, in order of preference (the browser's `protocols`
    /// argument). Names that are not tokens, or given twice, fail the connection with
    /// [`Error::Handshake`].
    #[must_use]
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.protocols = protocols
            .into_iter()
            .map(|p| p.as_ref().to_owned())
            .collect();
        self
    }

    /// Reconnects as `policy` says when the connection is lost or an attempt fails. The
    /// handle stays the same: its events report each loss ([`WsEvent::Reconnecting`], after
    /// the [`WsEvent::Error`] of a failure) and each new open ([`WsEvent::Open`], and
    /// `on_open`); [`WsEvent::Close`] comes once, at the end — a close by the application,
    /// a close the policy does not retry (1000 from the server, say), or the last attempt
    /// failed.
    ///
    /// Between connections [`WebSocket::ready_state`] is `Connecting`, and
    /// [`WebSocket::send`] holds the messages (up to [`queue_limit`](Self::queue_limit)) to
    /// send them first on the next connection. Messages the lost connection had taken
    /// but not yet written to the socket are lost with it. [`WebSocketBuilder::connect`]
    /// resolves at the first open, trying again as the policy says (its failures are not
    /// reported as events), and fails with the last attempt's error.
    ///
    /// Without a policy (the default) the connection is the browser's: one attempt, and
    /// its loss is the end.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use wsworker::{ReconnectPolicy, WebSocket, WsEvent};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let ws = WebSocket::builder("ws://10.0.0.1:2346/")
    ///     .fallback_urls(["ws://10.0.0.2:2346/"])
    ///     .reconnect(ReconnectPolicy::default().max_delay(Duration::from_secs(5)))
    ///     .open();
    /// while let Some(event) = ws.next().await {
    ///     match event {
    ///         WsEvent::Open => println!("open on {}", ws.url()),
    ///         WsEvent::Reconnecting { attempt, delay, close, .. } => {
    ///             println!("lost ({}); attempt {attempt} in {delay:?}", close.code)
    ///         }
    ///         WsEvent::Message(msg) => println!("{msg:?}"),
    ///         WsEvent::Close(info) => println!("over: {}", info.code),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// [`WsEvent::Reconnecting`]: super::WsEvent::Reconnecting
    /// [`WsEvent::Error`]: super::WsEvent::Error
    /// [`WsEvent::Open`]: super::WsEvent::Open
    /// [`WsEvent::Close`]: super::WsEvent::Close
    #[must_use]
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// More URLs of the same service (other nodes), tried round robin after the first:
    /// each attempt after a loss or a failure goes to the next URL. [`WebSocket::url`] is the
    /// URL of the current connection or attempt. Used with a [`reconnect`](Self::reconnect)
    /// policy only; every URL must be valid (or the connection fails at once, as with an
    /// invalid first URL).
    #[must_use]
    pub fn fallback_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fallback_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// Resumes with `wsworker.resume.v1` ([`crate::resume`], `docs/RESUME.md`): offers the
    /// subprotocol (first, before the others), and when the server agrees to it opens a
    /// session on the first connection and resumes it on every later one, so that the
    /// messages missed while away arrive once each, in order, per topic — or the
    /// [`WsEvent::Resumed`] event says per topic why not.
    ///
    /// The protocol's frames are the client's business: messages arrive without their
    /// head (text as text, binary as binary), duplicates (at or before a topic's last
    /// position) are dropped, and the application's sends wait until the server has
    /// answered (`hello` or `resumed`). [`WsEvent::Session`] reports a new session. A
    /// frame that breaks the protocol is reported ([`Error::Resume`]) and closes the
    /// connection with 1002. When the server does not agree, the connection is a plain one.
    ///
    /// Use it with a [`reconnect`](Self::reconnect) policy: without one there is nothing to
    /// resume.
    ///
    /// [`WsEvent::Resumed`]: super::WsEvent::Resumed
    /// [`WsEvent::Session`]: super::WsEvent::Session
    #[must_use]
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// With [`reconnect`](Self::reconnect) or [`resume`](Self::resume): the most the
    /// messages held while the connection is not ready may weigh (each its payload and 64
    /// bytes); a send past it fails with [`Error::QueueFull`]. Default 1 MiB.
    #[must_use]
    pub fn queue_limit(mut self, bytes: usize) -> Self {
        self.queue_limit = bytes;
        self
    }

    /// Adds a header to the opening request (`Origin`, `Cookie`, `Authorization`, …). A name
    /// that is not a token, a value with control characters, or a header the handshake
    /// writes itself (`Host`, `Upgrade`, `Sec-WebSocket-*`, …) fails the connection with
    /// [`Error::Handshake`].
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The largest message (and frame) accepted from the server; a bigger one closes the
    /// connection with 1009. Default 16 MiB.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config = self.config.max_message_size(bytes).max_frame_size(bytes);
        self
    }

    /// How long the TCP connection and the opening handshake may take together before the
    /// attempt fails with [`Error::Timeout`]. Default 10 s.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Idle keepalive: ping a server silent for `interval`, and end the connection (1006,
    /// with an [`Error::Timeout`] event) when nothing arrives within `timeout` more; `None`
    /// turns it off. Default 30 s and 30 s. While the application is behind on its events
    /// (more than 16 MiB of them unread) nothing is read from the server, and the keepalive
    /// waits too: the silence counts from when reading resumes.
    #[must_use]
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// permessage-deflate (RFC 7692): `Some(config)` offers it with these settings (the
    /// default is `Some(DeflateConfig::default())`, which offers
    /// `permessage-deflate; client_max_window_bits` as browsers do), `None` offers nothing.
    /// An answer with a parameter the offer did not allow fails the connection with
    /// [`Error::Handshake`]; [`WebSocket::extensions`] shows what the server accepted.
    ///
    /// ```no_run
    /// use wsworker::proto::deflate::DeflateConfig;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> wsworker::Result<()> {
    /// let ws = wsworker::WebSocket::builder("ws://127.0.0.1:2346/")
    ///     .permessage_deflate(Some(DeflateConfig::default().client_no_context_takeover(true)))
    ///     .connect()
    ///     .await?;
    /// println!("{}", ws.extensions()); // "permessage-deflate; client_no_context_takeover"
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn permessage_deflate(
        mut self,
        config: Option<wsworker_proto::deflate::DeflateConfig>,
    ) -> Self {
        self.extensions.deflate = config;
        self
    }

    /// For `wss://`: trusts the CA certificates in this PEM file too, besides the
    /// `webpki-roots` trust anchors (a private CA, a test CA, or a self-signed server
    /// certificate). Repeatable. A file that cannot be read or holds no certificate fails
    /// the connection with [`Error::Tls`].
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> wsworker::Result<()> {
    /// let ws = wsworker::WebSocket::builder("wss://localhost:2346/")
    ///     .tls_ca_pem_file("ca.pem")
    ///     .connect()
    ///     .await?;
    /// # drop(ws);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_ca_pem_file(mut self, path: impl AsRef<std::path::Path>) -> Self {
        self.tls.add_ca_pem_file(path.as_ref());
        self
    }

    /// For `wss://`: trusts the CA certificates in this PEM text too (as
    /// [`WebSocketBuilder::tls_ca_pem_file`], from memory).
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_ca_pem(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.tls.add_ca_pem(pem.as_ref());
        self
    }

    /// For `wss://`: this rustls configuration, used as it is (its roots, client
    /// certificates, provider, ALPN — announce `http/1.1` or nothing), instead of the
    /// `webpki-roots` one; CAs added with `tls_ca_pem*` are then ignored. The server name
    /// (SNI and the certificate check) is the URL's host. Over HTTP/2
    /// (`http2()`, feature `hyper`) its ALPN is replaced by `h2`.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls.set_config(config);
        self
    }

    /// Called once the connection is open (the browser's `onopen`), before any message.
    /// Open events then skip the stream. A panic is contained: it is reported as an error
    /// and closes the connection with 1011.
    #[must_use]
    pub fn on_open(mut self, f: impl Fn(&WebSocket) + Send + Sync + 'static) -> Self {
        self.callbacks.on_open = Some(Box::new(f));
        self
    }

    /// Called for each message (the browser's `onmessage`), which then skips the stream.
    /// Sends made here go out as soon as it returns. An error returned (say from
    /// `msg.to_text()?`) or a panic is reported as an error and closes the connection with
    /// 1011.
    #[must_use]
    pub fn on_message(
        mut self,
        f: impl Fn(&WebSocket, Message) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.callbacks.on_message = Some(Box::new(f));
        self
    }

    /// Called for each error (the browser's `onerror`), which then skips the stream.
    #[must_use]
    pub fn on_error(mut self, f: impl Fn(&WebSocket, &Error) + Send + Sync + 'static) -> Self {
        self.callbacks.on_error = Some(Box::new(f));
        self
    }

    /// Called once when the connection is over (the browser's `onclose`), with the code,
    /// the reason and whether the close was clean; the close event then skips the stream
    /// (which still ends).
    #[must_use]
    pub fn on_close(mut self, f: impl Fn(&WebSocket, &CloseInfo) + Send + Sync + 'static) -> Self {
        self.callbacks.on_close = Some(Box::new(f));
        self
    }

    /// Connects and resolves once the connection is open; `on_open` has run by then. A
    /// failure is returned, not reported to `on_error` or `on_close`, and the stream
    /// starts after the open event.
    ///
    /// # Errors
    /// As [`WebSocket::connect`].
    pub async fn connect(self) -> Result<WebSocket> {
        let (ready, opened) = oneshot::channel();
        let ws = self.spawn(Some(ready));
        match opened.await {
            Ok(Ok(())) => Ok(ws),
            Ok(Err(error)) => Err(error),
            // The task was dropped: its runtime is shutting down.
            Err(_) => Err(Error::Closed),
        }
    }

    /// Starts connecting and returns at once, in [`ReadyState::Connecting`], like the
    /// browser's `new WebSocket(url)`. A failure (any error of [`WebSocket::connect`])
    /// arrives as an error event followed by a close event with 1006 and `was_clean`
    /// false.
    ///
    /// # Panics
    /// When called outside a tokio runtime, as [`tokio::spawn`] does.
    ///
    /// [`ReadyState::Connecting`]: crate::ReadyState::Connecting
    pub fn open(self) -> WebSocket {
        self.spawn(None)
    }

    fn spawn(mut self, ready: Option<Ready>) -> WebSocket {
        let mut urls = vec![std::mem::take(&mut self.url)];
        if self.reconnect.is_some() {
            urls.append(&mut self.fallback_urls);
        }
        let mut protocols = std::mem::take(&mut self.protocols);
        if self.resume && !protocols.iter().any(|p| p == crate::resume::PROTOCOL) {
            protocols.insert(0, crate::resume::PROTOCOL.to_owned());
        }
        let recipe = connect::Recipe {
            protocols,
            headers: std::mem::take(&mut self.headers),
            extensions: self.extensions,
            #[cfg(feature = "hyper")]
            http2: self.http2.take(),
        };
        // Every URL is checked now: a bad one is a mistake to report at once, not after
        // the first connection is lost.
        let mut first = recipe.handshake(&urls[0]);
        if first.is_ok()
            && let Some(Err(error)) = urls[1..]
                .iter()
                .map(|url| recipe.handshake(url))
                .find(Result::is_err)
        {
            first = Err(error);
        }
        #[cfg(feature = "tls")]
        let tls = match &first {
            Ok(_) => {
                let any_tls = urls.iter().any(|url| {
                    recipe
                        .handshake(url)
                        .is_ok_and(|handshake| handshake.is_tls())
                });
                self.tls
                    .prepare(any_tls, recipe.own_http2())
                    .unwrap_or_else(|error| {
                        first = Err(error);
                        None
                    })
            }
            Err(_) => None,
        };
        let shared = Arc::new(Shared::new());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let gated = self.reconnect.is_some() || self.resume;
        let ws = WebSocket::new_connecting(
            urls.into(),
            Arc::clone(&shared),
            events_rx,
            gated.then(|| super::gate::Gate::new(self.queue_limit)),
        );
        let handler = ClientHandler::new(
            ws.detached(),
            self.callbacks,
            events_tx,
            ready,
            self.reconnect.clone(),
            self.resume,
        );
        let plan = connect::Plan {
            first,
            recipe,
            config: self.config,
            timeout: self.connect_timeout,
            keepalive: self.keepalive,
            cancel: ws.inner.cancel.clone(),
            #[cfg(feature = "tls")]
            tls,
            policy: self.reconnect,
        };
        tokio::spawn(connect::run(plan, shared, handler));
        ws
    }
}

impl fmt::Debug for WebSocketBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("WebSocketBuilder");
        d.field("url", &self.url)
            .field("fallback_urls", &self.fallback_urls)
            .field("reconnect", &self.reconnect)
            .field("resume", &self.resume)
            .field("queue_limit", &self.queue_limit)
            .field("protocols", &self.protocols)
            // Names only: values may be credentials.
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("config", &self.config)
            .field("connect_timeout", &self.connect_timeout)
            .field("keepalive", &self.keepalive);
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls);
        #[cfg(feature = "hyper")]
        d.field("http2", &self.http2);
        d.finish_non_exhaustive()
    }
}

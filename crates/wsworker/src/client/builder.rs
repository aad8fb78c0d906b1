//! [`WebSocketBuilder`]: everything about a client connection that is not the URL — subprotocols,
//! headers, limits, the connect timeout, and the JavaScript-shaped callbacks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wsworker_proto::handshake::ClientHandshake;
use wsworker_proto::{Config, HandshakeError, Message};

use super::handler::{Callbacks, ClientHandler, Ready};
use super::{WebSocket, connect};
use crate::driver::Keepalive;
use crate::error::{Error, Result};
use crate::shared::{CloseInfo, Shared};

/// Default limit for the TCP connection plus the opening handshake.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    protocols: Vec<String>,
    headers: Vec<(String, String)>,
    config: Config,
    connect_timeout: Duration,
    keepalive: Option<Keepalive>,
    callbacks: Callbacks,
    #[cfg(feature = "tls")]
    tls: crate::tls::ClientTls,
    extensions: super::extensions::Offers,
}

impl WebSocketBuilder {
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            protocols: Vec::new(),
            headers: Vec::new(),
            config: Config::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive: Some(Keepalive::default()),
            callbacks: Callbacks::default(),
            #[cfg(feature = "tls")]
            tls: crate::tls::ClientTls::default(),
            extensions: super::extensions::Offers::default(),
        }
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
    /// (SNI and the certificate check) is the URL's host.
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
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut handshake = self.handshake();
        #[cfg(feature = "tls")]
        let tls = match &handshake {
            Ok(h) => self.tls.prepare(h.is_tls()).unwrap_or_else(|error| {
                handshake = Err(error);
                None
            }),
            Err(_) => None,
        };
        let shared = Arc::new(Shared::new());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let url = std::mem::take(&mut self.url);
        let ws = WebSocket::new_connecting(url, Arc::clone(&shared), events_rx);
        let handler = ClientHandler::new(ws.detached(), self.callbacks, events_tx, ready);
        let attempt = connect::Attempt {
            handshake,
            config: self.config,
            timeout: self.connect_timeout,
            keepalive: self.keepalive,
            cancel: ws.inner.cancel.clone(),
            #[cfg(feature = "tls")]
            tls,
            extensions: self.extensions,
        };
        tokio::spawn(connect::run(attempt, shared, handler));
        ws
    }

    /// The opening handshake, or why it cannot be attempted.
    fn handshake(&self) -> Result<ClientHandshake> {
        let handshake = ClientHandshake::new(&self.url).map_err(|error| match error {
            HandshakeError::InvalidUrl(reason) => Error::InvalidAddress {
                address: self.url.clone(),
                reason,
            },
            other => other.into(),
        })?;
        #[cfg(not(feature = "tls"))]
        if handshake.is_tls() {
            return Err(Error::Unsupported(
                "wss:// needs the `tls` feature of wsworker",
            ));
        }
        let mut handshake = self
            .extensions
            .apply(handshake.with_protocols(&self.protocols)?)?;
        for (name, value) in &self.headers {
            handshake = handshake.with_header(name, value)?;
        }
        Ok(handshake)
    }
}

impl fmt::Debug for WebSocketBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("WebSocketBuilder");
        d.field("url", &self.url)
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
        d.finish_non_exhaustive()
    }
}

//! WebSockets over HTTP/2 (RFC 8441, feature `hyper`): [`Http2Connection`], an HTTP/2
//! connection to one origin on hyper's client — cleartext with prior knowledge for `ws://`,
//! TLS with ALPN `h2` for `wss://` — on which each WebSocket is a stream opened with an
//! extended CONNECT (`:protocol = websocket`). The stream then carries the same driver and
//! protocol core as a WebSocket over HTTP/1.1, from the open state (there is no handshake
//! in the stream).
//!
//! A server takes extended CONNECT only when its SETTINGS say so
//! (`SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`, RFC 8441 §3). hyper applies the server's
//! SETTINGS inside its connection task and reports the setting only on the connection
//! future it hands over, not on the request sender: the connection here reads the
//! server's first frame itself on its way to hyper ([`SettingsTap`]) — it must be SETTINGS
//! (RFC 9113 §3.4) — and opening it waits for that frame, failing with
//! [`Http2Error::ConnectProtocolDisabled`] when it does not enable the protocol.
//!
//! Flow control is kept as tight as on the server side (`server/h2.rs`): hyper holds at
//! most [`MAX_SEND_BUF`] of a stream's data beyond what the server's window lets out, so
//! that [`WebSocket::buffered_amount`](super::WebSocket::buffered_amount) sees a server
//! that does not read.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use wsworker_proto::handshake::{ClientHandshake, Response};

use super::{WebSocket, WebSocketBuilder};
use crate::error::{Error, Http2Error, Result};

/// What hyper may hold of a stream's data beyond the server's window.
const MAX_SEND_BUF: usize = 64 * 1024;
/// How much the server may send on a stream before the WebSocket's driver reads it.
const STREAM_WINDOW: u32 = 1 << 20;
/// The same for all of a connection's streams together.
const CONNECTION_WINDOW: u32 = 8 << 20;

/// The stream a WebSocket over HTTP/2 runs on.
pub(super) type Http2Stream = TokioIo<Upgraded>;

/// How a WebSocket builder uses HTTP/2.
#[derive(Clone, Debug)]
pub(super) enum Transport {
    /// A new HTTP/2 connection for each connection attempt.
    Own,
    /// A stream of this connection.
    Over(Http2Connection),
}

/// An HTTP/2 connection to one origin (scheme, host and port), on which WebSockets open as
/// streams (RFC 8441). Cheap to clone: the clones share the connection.
///
/// It connects with [`Http2Connection::connect`] (or [`connect_with`](Self::connect_with)
/// for TLS settings and a timeout), which resolves once the server's SETTINGS allowed
/// WebSockets; each [`websocket`](Self::websocket) then opens another stream on it. The
/// connection stays while a clone of it or one of its WebSockets does, and ends (GOAWAY)
/// after the last.
///
/// ```no_run
/// use wsworker::client::Http2Connection;
/// use wsworker::{Message, WsEvent};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> wsworker::Result<()> {
/// let h2 = Http2Connection::connect("wss://example.com/").await?;
/// let chat = h2.websocket("wss://example.com/chat").protocols(["chat"]).connect().await?;
/// let feed = h2.websocket("wss://example.com/feed").connect().await?;
/// chat.send("hello")?;
/// while let Some(WsEvent::Message(Message::Text(text))) = feed.next().await {
///     println!("{text}");
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Http2Connection {
    inner: Arc<Inner>,
}

struct Inner {
    /// The origin, as `scheme://host:port`.
    origin: String,
    tls: bool,
    host: String,
    port: u16,
    /// Requests go through a clone of it (sending needs `&mut`).
    send: SendRequest<Empty<Bytes>>,
}

impl Http2Connection {
    /// Connects to the origin of `url` (`ws://` or `wss://`; the path is not used) and
    /// resolves once the server's SETTINGS allowed WebSockets, within 10 seconds. For
    /// `wss://` the server's certificate is checked against the `webpki-roots` CAs; use
    /// [`connect_with`](Self::connect_with) for others.
    ///
    /// # Errors
    /// - [`Error::InvalidAddress`] for a URL that is not `ws://` or `wss://`;
    /// - [`Error::Io`] when the TCP connection fails, [`Error::Tls`] when TLS does;
    /// - [`Error::Http2`]: [`Http2Error::NotNegotiated`] when the TLS server did not choose
    ///   `h2`, [`Http2Error::NotHttp2`] when the server does not speak HTTP/2,
    ///   [`Http2Error::ConnectProtocolDisabled`] when it does not allow WebSockets over it;
    /// - [`Error::Timeout`] after 10 seconds.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(WebSocket::builder(url)).await
    }

    /// Connects as [`connect`](Self::connect) does, to the origin of the builder's URL,
    /// with its TLS settings ([`tls_ca_pem`](WebSocketBuilder::tls_ca_pem),
    /// [`tls_config`](WebSocketBuilder::tls_config), … — the ALPN announced is `h2`) and its
    /// [`connect_timeout`](WebSocketBuilder::connect_timeout). Nothing else of the builder
    /// is used.
    ///
    /// ```no_run
    /// use wsworker::WebSocket;
    /// use wsworker::client::Http2Connection;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> wsworker::Result<()> {
    /// let h2 = Http2Connection::connect_with(
    ///     WebSocket::builder("wss://localhost:8443/").tls_ca_pem_file("ca.pem"),
    /// )
    /// .await?;
    /// let ws = h2.websocket("wss://localhost:8443/chat").connect().await?;
    /// # drop(ws);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with(builder: WebSocketBuilder) -> Result<Self> {
        let parts = builder.into_http2_parts()?;
        let open = Self::open(
            &parts.handshake,
            #[cfg(feature = "tls")]
            parts.tls.as_ref(),
        );
        tokio::time::timeout(parts.timeout, open)
            .await
            .unwrap_or(Err(Error::Timeout("http/2 connect")))
    }

    /// A builder for a WebSocket to `url` (of this connection's origin) as a stream of this
    /// connection: [`WebSocket::builder`] with
    /// [`over(self)`](WebSocketBuilder::over).
    pub fn websocket(&self, url: impl Into<String>) -> WebSocketBuilder {
        WebSocket::builder(url).over(self)
    }

    /// Whether the connection is over: no more WebSockets can open on it.
    pub fn is_closed(&self) -> bool {
        self.inner.send.is_closed()
    }

    /// The origin, `scheme://host:port`.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Whether `handshake` is to this connection's origin.
    pub(super) fn serves(&self, handshake: &ClientHandshake) -> bool {
        handshake.is_tls() == self.inner.tls
            && handshake.port() == self.inner.port
            && handshake.host().eq_ignore_ascii_case(&self.inner.host)
    }

    /// A new connection to the origin of `handshake`, once the server's SETTINGS allowed
    /// WebSockets.
    pub(super) async fn open(
        handshake: &ClientHandshake,
        #[cfg(feature = "tls")] tls: Option<&crate::tls::Connector>,
    ) -> Result<Self> {
        let tcp = TcpStream::connect((handshake.host(), handshake.port())).await?;
        let _ = tcp.set_nodelay(true);
        #[cfg(feature = "tls")]
        if handshake.is_tls() {
            let Some(tls) = tls else {
                return Err(Error::Unsupported("wss:// without a TLS connector"));
            };
            let stream = tls
                .connect(handshake.host(), tcp)
                .await
                .map_err(not_negotiated)?;
            let alpn = stream.get_ref().1.alpn_protocol();
            if alpn != Some(crate::tls::ALPN_H2) {
                let alpn = alpn.map(|alpn| String::from_utf8_lossy(alpn).into());
                return Err(Http2Error::NotNegotiated { alpn }.into());
            }
            return Self::start(handshake, stream).await;
        }
        #[cfg(not(feature = "tls"))]
        if handshake.is_tls() {
            return Err(Error::Unsupported(
                "wss:// needs the `tls` feature of wsworker",
            ));
        }
        Self::start(handshake, tcp).await
    }

    /// HTTP/2 over an established stream, once the server's SETTINGS allowed WebSockets.
    async fn start<S>(handshake: &ClientHandshake, stream: S) -> Result<Self>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (settings_tx, settings) = oneshot::channel();
        let tap = SettingsTap {
            inner: stream,
            first_frame: Some(FirstFrame::new(settings_tx)),
        };
        let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .max_send_buf_size(MAX_SEND_BUF)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake(TokioIo::new(tap))
            .await
            .map_err(|e| failed("the HTTP/2 handshake failed", e))?;
        let host = handshake.host().to_owned();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%host, %error, "http/2 connection failed");
            }
        });
        match settings.await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(Http2Error::ConnectProtocolDisabled.into()),
            Ok(Err(error)) => return Err(error.into()),
            // The connection ended before the server's first frame was whole.
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection before its HTTP/2 SETTINGS",
                )
                .into());
            }
        }
        let scheme = if handshake.is_tls() { "wss" } else { "ws" };
        let host = handshake.host();
        // An IPv6 address goes in brackets.
        let origin = if host.contains(':') {
            format!("{scheme}://[{host}]:{}", handshake.port())
        } else {
            format!("{scheme}://{host}:{}", handshake.port())
        };
        Ok(Self {
            inner: Arc::new(Inner {
                origin,
                tls: handshake.is_tls(),
                host: handshake.host().to_owned(),
                port: handshake.port(),
                send,
            }),
        })
    }

    /// Opens the WebSocket `handshake` describes as a stream of this connection: the
    /// stream, and the server's answer (checked).
    pub(super) async fn open_websocket(
        &self,
        handshake: &ClientHandshake,
    ) -> Result<(Http2Stream, Response)> {
        let mut request = handshake.h2_request()?.map(|()| Empty::<Bytes>::new());
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let mut send = self.inner.send.clone();
        if send.is_closed() {
            return Err(Http2Error::Closed.into());
        }
        send.ready()
            .await
            .map_err(|e| closed_or(e, "the HTTP/2 connection failed"))?;
        let answer = send
            .send_request(request)
            .await
            .map_err(|e| closed_or(e, "the server refused the WebSocket's stream"))?;
        let response = handshake.check_h2_response(answer.status(), answer.headers())?;
        let upgraded = hyper::upgrade::on(answer)
            .await
            .map_err(|e| failed("the WebSocket's stream could not be taken over", e))?;
        Ok((TokioIo::new(upgraded), response))
    }
}

impl fmt::Debug for Http2Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http2Connection")
            .field("origin", &self.inner.origin)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// [`Http2Error::NotNegotiated`] for a TLS server that refused the handshake for want of a
/// common ALPN protocol (it does not offer `h2`); `error` itself otherwise.
#[cfg(feature = "tls")]
fn not_negotiated(error: Error) -> Error {
    let refused = match &error {
        Error::Tls {
            source: Some(source),
            ..
        } => matches!(
            source.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::NoApplicationProtocol
            ))
        ),
        _ => false,
    };
    if refused {
        Http2Error::NotNegotiated { alpn: None }.into()
    } else {
        error
    }
}

fn failed(what: &'static str, error: hyper::Error) -> Error {
    Http2Error::Failed(Box::new(Failed {
        what,
        source: error,
    }))
    .into()
}

/// What [`Http2Error::Failed`] holds: the step that failed, and hyper's error.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
struct Failed {
    what: &'static str,
    source: hyper::Error,
}

/// [`Http2Error::Closed`] when `error` says the connection is gone, [`failed`] otherwise.
fn closed_or(error: hyper::Error, what: &'static str) -> Error {
    if error.is_closed() || error.is_canceled() {
        Http2Error::Closed.into()
    } else {
        failed(what, error)
    }
}

// ----- the server's first frame ----------------------------------------------------------

/// The size of an HTTP/2 frame header (RFC 9113 §4.1).
const FRAME_HEADER: usize = 9;
/// The SETTINGS frame type.
const SETTINGS: u8 = 0x4;
/// The ACK flag of a SETTINGS frame.
const ACK: u8 = 0x1;
/// `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 8441 §3).
const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
/// The largest frame before the client's own SETTINGS are acknowledged
/// (`SETTINGS_MAX_FRAME_SIZE`'s initial value, RFC 9113 §6.5.2).
const MAX_FIRST_FRAME: usize = 16_384;

/// The server's first frame, read as it goes by: whether it enables extended CONNECT, or
/// why it is not the SETTINGS frame every HTTP/2 server starts with.
type FirstFrameOutcome = Result<bool, Http2Error>;

/// Gathers the server's first frame and reports what it says.
struct FirstFrame {
    buf: Vec<u8>,
    report: oneshot::Sender<FirstFrameOutcome>,
}

impl FirstFrame {
    fn new(report: oneshot::Sender<FirstFrameOutcome>) -> Self {
        Self {
            buf: Vec::with_capacity(FRAME_HEADER),
            report,
        }
    }

    /// Takes `bytes` read from the server; the outcome once the frame is whole (or known
    /// not to be SETTINGS).
    fn feed(&mut self, bytes: &[u8]) -> Option<FirstFrameOutcome> {
        let wanted = match self.buf.get(..FRAME_HEADER) {
            Some(header) => FRAME_HEADER + frame_len(header),
            None => FRAME_HEADER,
        };
        let take = wanted.saturating_sub(self.buf.len()).min(bytes.len());
        self.buf.extend_from_slice(&bytes[..take]);
        let header = self.buf.get(..FRAME_HEADER)?;
        let len = frame_len(header);
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        if kind != SETTINGS
            || flags & ACK != 0
            || stream != 0
            || !len.is_multiple_of(6)
            || len > MAX_FIRST_FRAME
        {
            return Some(Err(Http2Error::NotHttp2));
        }
        if wanted == FRAME_HEADER && take < bytes.len() {
            // The header just completed: the payload may be in the same read.
            return self.feed(&bytes[take..]);
        }
        let payload = self.buf.get(FRAME_HEADER..FRAME_HEADER + len)?;
        let enabled = payload
            .chunks_exact(6)
            .rev()
            .find(|setting| u16::from_be_bytes([setting[0], setting[1]]) == ENABLE_CONNECT_PROTOCOL)
            .map(|setting| u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]))
            == Some(1);
        Some(Ok(enabled))
    }
}

/// The 24-bit length of a frame header.
fn frame_len(header: &[u8]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

/// The connection's stream on its way to hyper: passes everything through, and reads the
/// server's first frame as it goes by.
struct SettingsTap<S> {
    inner: S,
    /// Until the first frame is whole.
    first_frame: Option<FirstFrame>,
}

impl<S: AsyncRead + Unpin> AsyncRead for SettingsTap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(first) = self.first_frame.as_mut()
            && let Some(outcome) = first.feed(&buf.filled()[before..])
            && let Some(first) = self.first_frame.take()
        {
            let _ = first.report.send(outcome);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SettingsTap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(entries: &[(u16, u32)], flags: u8) -> Vec<u8> {
        let len = entries.len() * 6;
        let mut frame = vec![0, (len >> 8) as u8, len as u8, SETTINGS, flags, 0, 0, 0, 0];
        for (id, value) in entries {
            frame.extend_from_slice(&id.to_be_bytes());
            frame.extend_from_slice(&value.to_be_bytes());
        }
        frame
    }

    fn outcome_in_pieces(bytes: &[u8], piece: usize) -> Option<FirstFrameOutcome> {
        let (tx, _rx) = oneshot::channel();
        let mut first = FirstFrame::new(tx);
        let mut outcome = None;
        for chunk in bytes.chunks(piece) {
            if let Some(o) = first.feed(chunk) {
                outcome = Some(o);
                break;
            }
        }
        outcome
    }

    #[test]
    fn the_first_settings_frame_tells_whether_extended_connect_is_on() {
        let on = settings(
            &[(0x3, 100), (ENABLE_CONNECT_PROTOCOL, 1), (0x4, 65_535)],
            0,
        );
        let off = settings(&[(0x3, 100)], 0);
        let zero = settings(&[(ENABLE_CONNECT_PROTOCOL, 0)], 0);
        for piece in [1, 2, 5, 9, 10, 100] {
            let mut more = on.clone();
            // What follows the frame in the same read is not looked at.
            more.extend_from_slice(&settings(&[], ACK));
            assert!(matches!(outcome_in_pieces(&more, piece), Some(Ok(true))));
            assert!(matches!(outcome_in_pieces(&off, piece), Some(Ok(false))));
            assert!(matches!(outcome_in_pieces(&zero, piece), Some(Ok(false))));
        }
        assert!(matches!(
            outcome_in_pieces(&settings(&[], 0), 3),
            Some(Ok(false))
        ));
        // Incomplete: no outcome yet.
        assert!(outcome_in_pieces(&on[..on.len() - 1], 4).is_none());
    }

    #[test]
    fn a_first_frame_that_is_not_settings_is_not_http2() {
        let not = [
            b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
            settings(&[], ACK),
            // A PING.
            vec![0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8],
            // A length that is not a multiple of 6.
            vec![0, 0, 5, SETTINGS, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5],
            // On a stream.
            vec![0, 0, 0, SETTINGS, 0, 0, 0, 0, 1],
        ];
        for bytes in not {
            assert!(matches!(
                outcome_in_pieces(&bytes, 64),
                Some(Err(Http2Error::NotHttp2))
            ));
        }
    }
}

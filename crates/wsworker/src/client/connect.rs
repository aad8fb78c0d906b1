//! A client connection's task: the TCP connection, the TLS handshake for `wss://`, and the
//! opening handshake (RFC 6455 §4.1) within the connect timeout, then the shared driver
//! until the connection ends — and, with a [`ReconnectPolicy`], the next attempt after the
//! policy's delay, on the next URL, until the policy gives up or the application closes.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use wsworker_proto::handshake::{ClientHandshake, Response};
use wsworker_proto::{Config, Connection as Proto, HandshakeError, ReadyState, Role};

use super::ReconnectPolicy;
use super::handler::{ClientHandler, Ended};
use crate::driver::{Driver, DriverConfig};
use crate::error::{Error, Result};
use crate::shared::{CloseInfo, Shared};

/// How much room each read of the response head gets.
const READ_CHUNK: usize = 4096;

/// What makes an opening handshake, whatever the URL.
pub(super) struct Recipe {
    pub(super) protocols: Vec<String>,
    pub(super) headers: Vec<(String, String)>,
    /// The extensions offered (permessage-deflate), to check the answer against.
    pub(super) extensions: super::extensions::Offers,
    /// Over HTTP/2, and on which connection.
    #[cfg(feature = "hyper")]
    pub(super) http2: Option<super::h2::Transport>,
}

impl Recipe {
    /// A fresh opening handshake to `url` (each attempt has its own key), or why it cannot
    /// be attempted.
    pub(super) fn handshake(&self, url: &str) -> Result<ClientHandshake> {
        let handshake = ClientHandshake::new(url).map_err(|error| match error {
            HandshakeError::InvalidUrl(reason) => Error::InvalidAddress {
                address: url.to_owned(),
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
        #[cfg(feature = "hyper")]
        if let Some(super::h2::Transport::Over(connection)) = &self.http2
            && !connection.serves(&handshake)
        {
            return Err(Error::InvalidAddress {
                address: url.to_owned(),
                reason: "not of the origin of the HTTP/2 connection",
            });
        }
        Ok(handshake)
    }

    /// Whether each attempt makes an HTTP/2 connection of its own (its TLS announces `h2`).
    #[cfg(feature = "tls")]
    pub(super) fn own_http2(&self) -> bool {
        #[cfg(feature = "hyper")]
        return matches!(self.http2, Some(super::h2::Transport::Own));
        #[cfg(not(feature = "hyper"))]
        false
    }
}

/// What the builder decided for the connection and its attempts.
pub(super) struct Plan {
    /// The first attempt's handshake, or why there can be none (every URL was checked).
    pub(super) first: Result<ClientHandshake>,
    pub(super) recipe: Recipe,
    pub(super) config: Config,
    pub(super) timeout: Duration,
    pub(super) keepalive: Option<crate::driver::Keepalive>,
    /// Cancelled by `close` (or the last handle's drop).
    pub(super) cancel: CancellationToken,
    /// The TLS connector, when a URL is `wss://`.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<crate::tls::Connector>,
    pub(super) policy: Option<ReconnectPolicy>,
}

/// The connection under the WebSocket: plain TCP, or TLS for `wss://`.
enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<crate::tls::ClientStream>),
    /// A stream of an HTTP/2 connection.
    #[cfg(feature = "hyper")]
    Http2(super::h2::Http2Stream),
}

/// Connects, then drives the connection to its end, and again as the policy says; every
/// outcome is reported through `handler`.
pub(super) async fn run(mut plan: Plan, shared: Arc<Shared>, mut handler: ClientHandler) {
    let mut handshake = match std::mem::replace(&mut plan.first, Err(Error::Closed)) {
        Ok(handshake) => handshake,
        // Nothing to attempt: no policy makes it work.
        Err(error) => {
            shared.set_ready_state(ReadyState::Closed);
            return handler.fail(error);
        }
    };
    let urls = handler.ws().inner.urls.len();
    let mut url = 0;
    // Attempts since the last open (or the start).
    let mut attempt: u32 = 0;
    loop {
        let lost = match connect_and_drive(&plan, &mut handshake, &shared, &mut handler).await {
            Ok(Ended::Over) => return,
            Ok(Ended::Lost(info)) => {
                attempt = 0;
                info
            }
            Err(error) => {
                if plan.policy.is_none() || plan.cancel.is_cancelled() {
                    shared.set_ready_state(ReadyState::Closed);
                    return handler.fail(error);
                }
                // Still connecting: the next attempt (or the end, below) follows.
                handler.attempt_failed(error);
                CloseInfo::dropped()
            }
        };
        attempt = attempt.saturating_add(1);
        let Some(policy) = plan.policy.as_ref().filter(|p| p.allows(attempt)) else {
            shared.set_ready_state(ReadyState::Closed);
            return handler.closed(lost);
        };
        let delay = policy.delay(attempt);
        url = (url + 1) % urls;
        shared.set_ready_state(ReadyState::Connecting);
        handler.ws().inner.set_url(url);
        handler.reconnecting(attempt, delay, lost);
        tokio::select! {
            biased;
            () = plan.cancel.cancelled() => {
                shared.set_ready_state(ReadyState::Closed);
                return handler.closed(CloseInfo::dropped());
            }
            () = tokio::time::sleep(delay) => {}
        }
        handshake = match plan.recipe.handshake(handler.ws().url()) {
            Ok(handshake) => handshake,
            // Checked when the builder spawned this task: not expected.
            Err(error) => {
                shared.set_ready_state(ReadyState::Closed);
                return handler.fail(error);
            }
        };
    }
}

/// One attempt: connects, and drives the connection to its end when it opens.
///
/// # Errors
/// Why the connection could not be established.
async fn connect_and_drive(
    plan: &Plan,
    handshake: &mut ClientHandshake,
    shared: &Arc<Shared>,
    handler: &mut ClientHandler,
) -> Result<Ended> {
    #[cfg(feature = "tls")]
    let tls = plan.tls.as_ref().filter(|_| handshake.is_tls());
    let established = tokio::select! {
        biased;
        () = plan.cancel.cancelled() => Err(Error::Closed),
        result = tokio::time::timeout(plan.timeout, establish(
            handshake,
            #[cfg(feature = "hyper")]
            plan.recipe.http2.as_ref(),
            #[cfg(feature = "tls")]
            tls,
        )) => {
            result.unwrap_or(Err(Error::Timeout("websocket connect and opening handshake")))
        }
    };
    let (stream, response, rest) = established.inspect_err(|error| {
        tracing::debug!(url = handler.ws().url(), %error, "websocket connect failed");
    })?;
    // An answer the offer did not allow fails the connection (RFC 7692 §5): the stream is
    // dropped unused.
    let config = plan
        .recipe
        .extensions
        .accept(plan.config.clone(), &response)
        .inspect_err(|error| {
            tracing::debug!(url = handler.ws().url(), %error, "websocket connect failed");
        })?;
    handler.ws().set_negotiated(
        response.protocol().unwrap_or_default(),
        response.extensions_header(),
    );
    let proto = Proto::with_buffer(Role::Client, config, BytesMut::from(rest));
    let config = Arc::new(DriverConfig {
        keepalive: plan.keepalive,
        ..DriverConfig::default()
    });
    debug_assert!(Arc::ptr_eq(shared, &handler.ws().inner.shared));
    match stream {
        Stream::Plain(stream) => drive(stream, proto, &mut *handler, config).await,
        #[cfg(feature = "tls")]
        Stream::Tls(stream) => drive(*stream, proto, &mut *handler, config).await,
        #[cfg(feature = "hyper")]
        Stream::Http2(stream) => drive(stream, proto, &mut *handler, config).await,
    }
    Ok(handler.take_ended())
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    proto: Proto,
    handler: &mut ClientHandler,
    config: Arc<DriverConfig>,
) {
    Driver::new(stream, proto, handler, config).await;
}

/// The TCP connection, the TLS handshake when there is a connector, and the opening
/// handshake: the stream, the server's response, and the bytes that came after it (the
/// server's first frames).
async fn establish(
    handshake: &mut ClientHandshake,
    #[cfg(feature = "hyper")] http2: Option<&super::h2::Transport>,
    #[cfg(feature = "tls")] tls: Option<&crate::tls::Connector>,
) -> Result<(Stream, Response, Bytes)> {
    #[cfg(feature = "hyper")]
    if let Some(transport) = http2 {
        let connection = match transport {
            super::h2::Transport::Over(connection) => connection.clone(),
            // Not kept: the WebSocket's stream keeps the connection, which ends with it.
            super::h2::Transport::Own => {
                super::Http2Connection::open(
                    handshake,
                    #[cfg(feature = "tls")]
                    tls,
                )
                .await?
            }
        };
        let (stream, response) = connection.open_websocket(handshake).await?;
        return Ok((Stream::Http2(stream), response, Bytes::new()));
    }
    let stream = TcpStream::connect((handshake.host(), handshake.port())).await?;
    let _ = stream.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        let mut stream = tls.connect(handshake.host(), stream).await?;
        let (response, rest) = upgrade(&mut stream, handshake).await?;
        return Ok((Stream::Tls(Box::new(stream)), response, rest));
    }
    let mut stream = stream;
    let (response, rest) = upgrade(&mut stream, handshake).await?;
    Ok((Stream::Plain(stream), response, rest))
}

/// The opening handshake on an established stream.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    handshake: &mut ClientHandshake,
) -> Result<(Response, Bytes)> {
    stream.write_all(&handshake.request_bytes()).await?;
    // TLS buffers what it encrypts: push it out.
    stream.flush().await?;
    loop {
        let buf = handshake.recv_buffer_mut();
        buf.reserve(READ_CHUNK);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the opening handshake",
            )
            .into());
        }
        if let Some((response, rest)) = handshake.poll_response()? {
            return Ok((response, rest));
        }
    }
}

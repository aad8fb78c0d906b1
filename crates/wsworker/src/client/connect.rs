//! A client connection's task: the TCP connection, the TLS handshake for `wss://`, and the
//! opening handshake (RFC 6455 §4.1) within the connect timeout, then the shared driver
//! until the connection ends.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use wsworker_proto::handshake::{ClientHandshake, Response};
use wsworker_proto::{Config, Connection as Proto, ReadyState, Role};

use super::handler::ClientHandler;
use crate::driver::{Driver, DriverConfig};
use crate::error::{Error, Result};
use crate::shared::Shared;

/// How much room each read of the response head gets.
const READ_CHUNK: usize = 4096;

/// What the builder decided for one attempt.
pub(super) struct Attempt {
    pub(super) handshake: Result<ClientHandshake>,
    pub(super) config: Config,
    pub(super) timeout: Duration,
    pub(super) keepalive: Option<crate::driver::Keepalive>,
    /// Cancelled by `close` (or the last handle's drop) while connecting.
    pub(super) cancel: CancellationToken,
    /// The TLS connector, for `wss://`.
    #[cfg(feature = "tls")]
    pub(super) tls: Option<crate::tls::Connector>,
    /// The extensions offered (permessage-deflate), to check the answer against.
    pub(super) extensions: super::extensions::Offers,
}

/// The connection under the WebSocket: plain TCP, or TLS for `wss://`.
enum Stream {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<crate::tls::ClientStream>),
}

/// Connects, then drives the connection to its end; every outcome is reported through
/// `handler`.
pub(super) async fn run(attempt: Attempt, shared: Arc<Shared>, handler: ClientHandler) {
    let established = match attempt.handshake {
        Ok(mut handshake) => tokio::select! {
            biased;
            () = attempt.cancel.cancelled() => Err(Error::Closed),
            result = tokio::time::timeout(attempt.timeout, establish(
                &mut handshake,
                #[cfg(feature = "tls")]
                attempt.tls.as_ref(),
            )) => {
                result.unwrap_or(Err(Error::Timeout("websocket connect and opening handshake")))
            }
        },
        Err(error) => Err(error),
    };
    let (stream, response, rest) = match established {
        Ok(parts) => parts,
        Err(error) => {
            tracing::debug!(url = handler.ws().url(), %error, "websocket connect failed");
            shared.set_ready_state(ReadyState::Closed);
            return handler.fail(error);
        }
    };
    // An answer the offer did not allow fails the connection (RFC 7692 §5): the stream is
    // dropped unused.
    let config = match attempt.extensions.accept(attempt.config, &response) {
        Ok(config) => config,
        Err(error) => {
            tracing::debug!(url = handler.ws().url(), %error, "websocket connect failed");
            shared.set_ready_state(ReadyState::Closed);
            return handler.fail(error);
        }
    };
    handler.ws().set_negotiated(
        response.protocol().unwrap_or_default(),
        response.extensions_header(),
    );
    let proto = Proto::with_buffer(Role::Client, config, BytesMut::from(rest));
    let config = Arc::new(DriverConfig {
        keepalive: attempt.keepalive,
        ..DriverConfig::default()
    });
    match stream {
        Stream::Plain(stream) => drive(stream, proto, handler, config).await,
        #[cfg(feature = "tls")]
        Stream::Tls(stream) => drive(*stream, proto, handler, config).await,
    }
}

async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    proto: Proto,
    handler: ClientHandler,
    config: Arc<DriverConfig>,
) {
    Driver::new(stream, proto, handler, config).await;
}

/// The TCP connection, the TLS handshake when there is a connector, and the opening
/// handshake: the stream, the server's response, and the bytes that came after it (the
/// server's first frames).
async fn establish(
    handshake: &mut ClientHandshake,
    #[cfg(feature = "tls")] tls: Option<&crate::tls::Connector>,
) -> Result<(Stream, Response, Bytes)> {
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

//! A client connection's task: the TCP connection and the opening handshake (RFC 6455 §4.1)
//! within the connect timeout, then the shared driver until the connection ends.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wsworker_proto::handshake::{ClientHandshake, Response};
use wsworker_proto::{Config, Connection as Proto, ReadyState, Role};

use super::handler::ClientHandler;
use crate::driver::{Driver, DriverConfig};
use crate::error::{Error, Result};
use crate::shared::{Command, Shared};

/// How much room each read of the response head gets.
const READ_CHUNK: usize = 4096;

/// What the builder decided for one attempt.
pub(super) struct Attempt {
    pub(super) handshake: Result<ClientHandshake>,
    pub(super) config: Config,
    pub(super) timeout: Duration,
    /// Cancelled by `close` (or the last handle's drop) while connecting.
    pub(super) cancel: CancellationToken,
}

/// Connects, then drives the connection to its end; every outcome is reported through
/// `handler`.
pub(super) async fn run(
    attempt: Attempt,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    handler: ClientHandler,
) {
    let established = match attempt.handshake {
        Ok(mut handshake) => tokio::select! {
            biased;
            () = attempt.cancel.cancelled() => Err(Error::Closed),
            result = tokio::time::timeout(attempt.timeout, establish(&mut handshake)) => {
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
    handler.ws().set_negotiated(
        response.protocol().unwrap_or_default(),
        response.extensions_header(),
    );
    let proto = Proto::with_buffer(Role::Client, attempt.config, BytesMut::from(rest));
    Driver::new(
        stream,
        proto,
        shared,
        commands,
        handler,
        DriverConfig::default(),
    )
    .run()
    .await;
}

/// The TCP connection and the opening handshake: the socket, the server's response, and the
/// bytes that came after it (the server's first frames).
async fn establish(handshake: &mut ClientHandshake) -> Result<(TcpStream, Response, Bytes)> {
    let mut stream = TcpStream::connect((handshake.host(), handshake.port())).await?;
    let _ = stream.set_nodelay(true);
    stream.write_all(&handshake.request_bytes()).await?;
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
            return Ok((stream, response, rest));
        }
    }
}

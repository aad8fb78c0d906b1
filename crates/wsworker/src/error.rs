//! The runtime's error type.

use std::io;

use wsworker_proto::{CloseCode, HandshakeError};

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the runtime. Messages describe this layer only; the cause is in
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket operation failed.
    #[error("i/o error")]
    Io(#[from] io::Error),
    /// The peer broke the protocol, or a call broke its rules.
    #[error("websocket protocol error")]
    Proto(#[from] wsworker_proto::Error),
    /// An address or URL that cannot be used, with the reason.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        /// What was given.
        address: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The server answered the opening handshake with this status instead of 101.
    #[error("handshake rejected with HTTP status {status}")]
    Rejected {
        /// The HTTP status.
        status: u16,
    },
    /// The opening handshake failed.
    #[error("handshake failed")]
    Handshake(#[source] HandshakeError),
    /// The connection is closing or closed: nothing more can be sent.
    #[error("connection closed")]
    Closed,
    /// A close code or reason the browser API would refuse (1000 or 3000–4999, reason at
    /// most 123 bytes).
    #[error("invalid close: code {code}, reason of {reason_len} bytes")]
    InvalidClose {
        /// The code given.
        code: u16,
        /// The reason's length in bytes.
        reason_len: usize,
    },
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The message is binary where text was expected (or the reverse).
    #[error("expected a {expected} message")]
    WrongMessageType {
        /// `"text"` or `"binary"`.
        expected: &'static str,
    },
    /// A user callback panicked; the connection was closed with 1011.
    #[error("callback panicked: {0}")]
    CallbackPanic(String),
    /// A callback returned an error (for example `msg.to_text()?` on a binary message).
    #[error("callback failed: {0}")]
    Callback(Box<dyn std::error::Error + Send + Sync>),
    /// TLS failed: the peer's certificate could not be verified ("certificate verify
    /// failed: unknown issuer"), the TLS handshake broke, or a certificate, key or CA could
    /// not be loaded. The rustls (or I/O) error, when there is one, is the source.
    #[error("tls error: {reason}")]
    Tls {
        /// What went wrong, in words.
        reason: Box<str>,
        /// The underlying error: a `rustls::Error` for handshake and certificate failures.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The Hub's engine could not carry a message or answer a query.
    #[error("hub engine: {0}")]
    Engine(#[from] crate::hub::EngineError),
    /// Something this build does not support yet.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A client that reconnects or resumes holds the messages sent while it is not ready
    /// (between connections, until the server answers `resume`), up to a limit
    /// ([`WebSocketBuilder::queue_limit`](crate::WebSocketBuilder::queue_limit)): this one
    /// would have passed it.
    #[error("the send queue is full ({limit} bytes held while the connection is not ready)")]
    QueueFull {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The server broke `wsworker.resume.v1`: a frame that is not one of the protocol's.
    /// The connection is closed with 1002.
    #[error("resume protocol error")]
    Resume(#[from] crate::resume::wire::WireError),
    /// A WebSocket over HTTP/2 (RFC 8441, `WebSocketBuilder::http2` with the `hyper`
    /// feature) could not be opened:
    /// the server does not allow it, did not choose HTTP/2, or the HTTP/2 connection failed.
    #[error("http/2: {0}")]
    Http2(#[from] Http2Error),
}

/// Why a WebSocket over HTTP/2 could not be opened ([`Error::Http2`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Http2Error {
    /// The server's SETTINGS do not enable the extended CONNECT protocol
    /// (`SETTINGS_ENABLE_CONNECT_PROTOCOL`, RFC 8441 §3): it speaks HTTP/2 but does not take
    /// WebSockets over it. Connect over HTTP/1.1 instead.
    #[error(
        "the server does not allow WebSockets over HTTP/2 \
         (no SETTINGS_ENABLE_CONNECT_PROTOCOL in its SETTINGS, RFC 8441)"
    )]
    ConnectProtocolDisabled,
    /// The TLS server did not choose HTTP/2 (ALPN `h2`): it refused it (it offers
    /// `http/1.1` only, say), or chose nothing or something else.
    #[error(
        "the TLS server does not speak HTTP/2 (it did not choose ALPN h2{})",
        alpn.as_deref().map(|alpn| format!("; it chose {alpn:?}")).unwrap_or_default()
    )]
    NotNegotiated {
        /// The protocol the server chose instead, if any.
        alpn: Option<Box<str>>,
    },
    /// The server's first frame is not SETTINGS (RFC 9113 §3.4): it does not speak HTTP/2
    /// (over `ws://`, HTTP/2 is spoken with prior knowledge).
    #[error("the server does not speak HTTP/2: its first frame is not SETTINGS")]
    NotHttp2,
    /// The HTTP/2 connection is closed: no more WebSockets can open on it.
    #[error("the HTTP/2 connection is closed")]
    Closed,
    /// The HTTP/2 connection or the WebSocket's stream failed: its message says which step,
    /// and its source is the HTTP/2 layer's (hyper's) error.
    #[error(transparent)]
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// The close code this error ends a connection with, when it ends one.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Proto(e) => e.close_code(),
            Self::CallbackPanic(_) | Self::Callback(_) => Some(CloseCode::INTERNAL_ERROR),
            // `msg.to_text()?` on a binary message: the peer sent data the application
            // does not take.
            Self::WrongMessageType { .. } => Some(CloseCode::UNSUPPORTED_DATA),
            _ => None,
        }
    }
}

impl From<wsworker_proto::WrongType> for Error {
    fn from(error: wsworker_proto::WrongType) -> Self {
        Self::WrongMessageType {
            expected: error.expected,
        }
    }
}

impl From<HandshakeError> for Error {
    fn from(error: HandshakeError) -> Self {
        match error {
            HandshakeError::UnexpectedStatus(status) => Self::Rejected { status },
            other => Self::Handshake(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        assert!(size_of::<Error>() <= 40, "{}", size_of::<Error>());
    }
}

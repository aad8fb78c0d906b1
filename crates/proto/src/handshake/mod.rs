//! The opening handshake (RFC 6455 §4). Placeholder until the handshake module lands.

/// An opening handshake that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request or response could not be parsed.
    #[error("malformed")]
    Malformed,
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    pub fn status(&self) -> u16 {
        400
    }
}

//! Which end of the connection this side is: the rules on masking depend on it (RFC 6455 §5.1).

/// The side of a WebSocket connection this endpoint plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that opened the TCP connection and sent the Upgrade request. It masks every
    /// frame it sends and must reject masked frames from the server.
    Client,
    /// The side that accepted the Upgrade request. It never masks and must reject unmasked
    /// frames from the client.
    Server,
}

impl Role {
    /// Whether frames sent by this side carry a masking key.
    pub const fn masks_outgoing(self) -> bool {
        matches!(self, Self::Client)
    }

    /// Whether frames received by this side must carry a masking key.
    pub const fn expects_masked(self) -> bool {
        matches!(self, Self::Server)
    }
}

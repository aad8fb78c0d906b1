//! Errors of the protocol core, each mapped in exactly one place to what it costs the peer:
//! [`Error::close_code`] for a connection, [`HandshakeError::status`] for a handshake.
//!
//! Network bytes can cause [`ProtocolError`], [`CapacityError`] and [`HandshakeError`];
//! [`ApiMisuse`] only comes from the calling code.

use crate::HandshakeError;
use crate::close::CloseCode;

/// Any error of the protocol core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke a rule of RFC 6455.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    /// The peer sent more than the configured limits allow.
    #[error("limit exceeded: {0}")]
    Capacity(#[from] CapacityError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The calling code asked for something the protocol forbids.
    #[error("api misuse: {0}")]
    ApiMisuse(#[from] ApiMisuse),
}

impl Error {
    /// The close code this error is answered with on an open connection, or `None` when it
    /// does not close the connection (a handshake error or a refused call).
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Protocol(e) => Some(e.close_code()),
            Self::Capacity(_) => Some(CloseCode::MESSAGE_TOO_BIG),
            Self::Handshake(_) | Self::ApiMisuse(_) => None,
        }
    }
}

/// A rule of RFC 6455 §5 or §7 (or RFC 7692 for permessage-deflate) that the peer broke.
/// Each variant names its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// §5.1: a server must close the connection on an unmasked frame from a client.
    #[error("unmasked frame from a client")]
    UnmaskedFrameFromClient,
    /// §5.1: a client must close the connection on a masked frame from a server.
    #[error("masked frame from a server")]
    MaskedFrameFromServer,
    /// §5.2: RSV1–3 must be 0 unless an extension gives them a meaning.
    #[error("reserved bits set: {0:#05b}")]
    ReservedBitsSet(u8),
    /// §5.2: opcodes 0x3–0x7 and 0xB–0xF are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// §5.5: control frames carry at most 125 bytes of payload.
    #[error("control frame payload of {0} bytes (at most 125)")]
    ControlFrameTooLong(u64),
    /// §5.5: control frames must not be fragmented.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// §5.4: a continuation frame needs a message in progress.
    #[error("continuation frame without a message in progress")]
    ContinuationWithoutStart,
    /// §5.4: fragments of one message may not be interleaved with a new data message.
    #[error("new data frame while a fragmented message is unfinished")]
    DataFrameInsideFragmentedMessage,
    /// §5.2: the most significant bit of a 64-bit payload length must be 0.
    #[error("64-bit payload length with the most significant bit set")]
    LengthTopBitSet,
    /// §5.6 and §8.1: a text message must be valid UTF-8 (close 1007).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// §5.5.1: a close payload is empty or at least 2 bytes long.
    #[error("close frame with a 1-byte payload")]
    CloseFrameOneByte,
    /// §7.4: this code may not be sent in a close frame.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// §5.5.1: the close reason must be UTF-8 (close 1007).
    #[error("invalid UTF-8 in a close reason")]
    InvalidCloseReasonUtf8,
    /// RFC 7692 §6.1: with permessage-deflate, RSV1 marks the first frame of a compressed
    /// message; it may not be set on a continuation or control frame.
    #[error("RSV1 set on a continuation or control frame")]
    Rsv1OutsideFirstFrame,
    /// RFC 7692 §7.2.2: a compressed message that does not inflate (close 1007, as Node's
    /// `ws` answers it).
    #[error("invalid compressed data")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code that answers this violation: 1007 for bad UTF-8 and data that does not
    /// inflate, 1002 for the rest.
    pub fn close_code(self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReasonUtf8 | Self::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// A configured limit the peer went past (close 1009), decided from frame headers before the
/// payload is buffered, or for a compressed message as soon as it inflates past the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// A frame announced more payload than `max_frame_size`.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message grew past `max_message_size` (a compressed message: its inflated size).
    #[error("message of at least {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// The size the message reached (or would reach with the announced frame).
        size: u64,
        /// The configured limit.
        max: u64,
    },
}

/// A call the protocol forbids; network input never causes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiMisuse {
    /// Data or pings may not be sent once a close frame has been sent (§5.5.1).
    #[error("the connection is closing or closed")]
    SendAfterClose,
    /// This code may not be used to close.
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A close reason is at most 123 bytes.
    #[error("close reason of {0} bytes (at most 123)")]
    CloseReasonTooLong(usize),
    /// Ping and pong payloads are at most 125 bytes.
    #[error("control payload of {0} bytes (at most 125)")]
    ControlPayloadTooLong(usize),
    /// A prepared (unmasked) frame cannot be sent by a client, which must mask every frame.
    #[error("prepared frames are for the server role")]
    PreparedFrameFromClient,
    /// The fragment size must be at least 1 byte.
    #[error("fragment size must be at least 1")]
    ZeroFragmentSize,
    /// The handshake's response goes first, on a server connection with nothing queued.
    #[error("the handshake response must be queued first, by a server")]
    HandshakeResponseNotFirst,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stays_small() {
        assert!(size_of::<Error>() <= 32, "{}", size_of::<Error>());
    }

    #[test]
    fn close_codes_are_mapped_once() {
        assert_eq!(
            Error::from(ProtocolError::InvalidUtf8).close_code(),
            Some(CloseCode::INVALID_PAYLOAD)
        );
        assert_eq!(
            Error::from(ProtocolError::ReservedOpcode(3)).close_code(),
            Some(CloseCode::PROTOCOL_ERROR)
        );
        assert_eq!(
            Error::from(CapacityError::FrameTooLarge { size: 2, max: 1 }).close_code(),
            Some(CloseCode::MESSAGE_TOO_BIG)
        );
        assert_eq!(Error::from(ApiMisuse::SendAfterClose).close_code(), None);
    }
}

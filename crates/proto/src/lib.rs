//! Sans-IO WebSocket protocol core (RFC 6455). (Crate docs are written when the modules land.)
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod close;
pub mod error;
pub mod handshake;
pub mod role;

pub use close::{CloseCode, CloseFrame};
pub use error::{ApiMisuse, CapacityError, Error, ProtocolError};
pub use handshake::HandshakeError;
pub use role::Role;

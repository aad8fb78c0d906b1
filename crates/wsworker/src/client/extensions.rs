//! The extensions a client offers and its check of the server's answer: permessage-deflate
//! (RFC 7692) when the `deflate` feature is on.

use wsworker_proto::Config;
use wsworker_proto::handshake::{ClientHandshake, Response};

use crate::error::Result;

/// What the client offers in `Sec-WebSocket-Extensions`.
#[derive(Debug, Clone)]
pub(super) struct Offers {
    /// permessage-deflate with these settings, or no compression.
    #[cfg(feature = "deflate")]
    pub(super) deflate: Option<wsworker_proto::deflate::DeflateConfig>,
}

impl Default for Offers {
    /// permessage-deflate with the default settings, when the feature is on.
    fn default() -> Self {
        Self {
            #[cfg(feature = "deflate")]
            deflate: Some(wsworker_proto::deflate::DeflateConfig::default()),
        }
    }
}

impl Offers {
    /// The handshake with the offers added.
    pub(super) fn apply(&self, handshake: ClientHandshake) -> Result<ClientHandshake> {
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &self.deflate {
            return Ok(handshake.with_extensions(&deflate.offer())?);
        }
        Ok(handshake)
    }

    /// Checks what the server accepted and returns the connection's settings with it.
    ///
    /// # Errors
    /// [`Error::Handshake`](crate::Error::Handshake) when the answer is one the client must
    /// fail the connection on (RFC 7692 §5: a parameter it did not allow).
    pub(super) fn accept(&self, config: Config, response: &Response) -> Result<Config> {
        #[cfg(feature = "deflate")]
        if let Some(deflate) = &self.deflate {
            let params = deflate.accept_response(response.extensions())?;
            return Ok(config.deflate(params));
        }
        let _ = response;
        Ok(config)
    }
}

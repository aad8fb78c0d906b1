//! Extensions for an accepted request: permessage-deflate (RFC 7692) when the `deflate`
//! feature is on and the worker accepts it.

use wsworker_proto::Config;
use wsworker_proto::handshake::Request;

use super::Settings;

/// The `Sec-WebSocket-Extensions` answer for `request` (or none) and the settings of its
/// connection, with the negotiated compression.
pub(super) fn negotiate(request: &Request, settings: &Settings) -> (Option<String>, Config) {
    #[cfg(feature = "deflate")]
    if let Some(deflate) = &settings.deflate {
        // The request passed `validate_upgrade`, so its extensions parse.
        let offers = request.extensions().unwrap_or_default();
        if let Some((params, answer)) = deflate.negotiate(&offers) {
            return (Some(answer), settings.proto.clone().deflate(Some(params)));
        }
    }
    let _ = request;
    (None, settings.proto.clone())
}

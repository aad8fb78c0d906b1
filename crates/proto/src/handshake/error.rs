//! [`HandshakeError`]: every way an opening handshake (RFC 6455 §4) can fail, and the one place
//! each is mapped to the HTTP status a server answers it with.

use super::http_util::{self, HeaderLine};

/// An opening handshake that failed.
///
/// The variants fall into four groups:
/// - the bytes are not an acceptable HTTP head (both sides): [`TooLarge`](Self::TooLarge),
///   [`TooManyHeaders`](Self::TooManyHeaders), [`Malformed`](Self::Malformed);
/// - a well-formed HTTP request that is not a valid WebSocket upgrade (server side, RFC 6455
///   §4.2.1, RFC 8441 §4): [`NotUpgrade`](Self::NotUpgrade) to
///   [`UnsupportedProtocol`](Self::UnsupportedProtocol);
/// - a server response the client refuses (RFC 6455 §4.1):
///   [`UnexpectedStatus`](Self::UnexpectedStatus) to
///   [`UnofferedExtension`](Self::UnofferedExtension);
/// - a mistake of the calling code, never caused by network bytes:
///   [`InvalidUrl`](Self::InvalidUrl), [`InvalidInput`](Self::InvalidInput).
///
/// [`status`](Self::status) maps each variant to its HTTP status and
/// [`to_response`](Self::to_response) builds the whole rejection a server sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head (request or status line plus headers) did not end within `max` bytes (431).
    #[error("http head exceeds the limit of {max} bytes")]
    TooLarge {
        /// The configured limit.
        max: usize,
    },
    /// The head has more header lines than the parser accepts (431).
    #[error("more than {} header lines", super::MAX_HEADERS)]
    TooManyHeaders,
    /// The bytes are not an HTTP/1.x head (400).
    #[error("malformed http head: {0}")]
    Malformed(&'static str),

    /// A well-formed request that does not ask for a WebSocket (`Upgrade: websocket` missing):
    /// 426, with `Upgrade: websocket` in the response (RFC 9110 §15.5.22).
    #[error("not a websocket upgrade request")]
    NotUpgrade,
    /// An upgrade request whose method is not GET (RFC 6455 §4.1): 405, with `Allow: GET`.
    #[error("method not allowed for a websocket upgrade")]
    MethodNotAllowed,
    /// An upgrade request in HTTP/1.0 (RFC 6455 §4.1 needs at least HTTP/1.1): 400.
    #[error("websocket upgrade needs http/1.1")]
    UnsupportedHttpVersion,
    /// A header the handshake requires is absent (400); the payload is its lowercase name.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header has an invalid value or appears more often than allowed (400); the payload is
    /// its lowercase name.
    #[error("invalid header {0}")]
    InvalidHeader(&'static str),
    /// `Sec-WebSocket-Version` is absent or not `13` (RFC 6455 §4.4): 426, with
    /// `Sec-WebSocket-Version: 13` in the response.
    #[error("unsupported websocket version (only 13 is supported)")]
    UnsupportedVersion,
    /// An HTTP/2 extended CONNECT whose `:protocol` is not `websocket` (RFC 8441 §4): 501, the
    /// server does not implement the protocol asked for.
    #[error("extended connect for a protocol other than websocket")]
    UnsupportedProtocol,

    /// The server answered with this status instead of accepting: not 101 over HTTP/1.1, not
    /// 2xx over HTTP/2 (client side).
    #[error("server answered the handshake with status {0}")]
    UnexpectedStatus(u16),
    /// The server's 101 response breaks a rule of RFC 6455 §4.1 (client side); the payload says
    /// which.
    #[error("invalid server response: {0}")]
    InvalidResponse(&'static str),
    /// `Sec-WebSocket-Accept` does not match the key the client sent (client side).
    #[error("sec-websocket-accept does not match the key")]
    AcceptMismatch,
    /// The server selected a subprotocol the client did not offer (client side).
    #[error("server selected a subprotocol that was not offered")]
    UnofferedProtocol,
    /// The server accepted an extension the client did not offer (client side).
    #[error("server accepted an extension that was not offered")]
    UnofferedExtension,

    /// The URL given to the client is not a usable `ws://` or `wss://` URL.
    #[error("invalid websocket url: {0}")]
    InvalidUrl(&'static str),
    /// The calling code passed an argument the handshake cannot send (a header with CR or LF,
    /// a protocol name that is not a token, a header the handshake sets itself...).
    #[error("invalid handshake input: {0}")]
    InvalidInput(&'static str),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    ///
    /// | status | errors |
    /// | --- | --- |
    /// | 400 | `Malformed`, `UnsupportedHttpVersion`, `MissingHeader`, `InvalidHeader` |
    /// | 405 | `MethodNotAllowed` |
    /// | 426 | `NotUpgrade`, `UnsupportedVersion` |
    /// | 431 | `TooLarge`, `TooManyHeaders` |
    /// | 500 | `InvalidUrl`, `InvalidInput` (the local code is at fault) |
    /// | 501 | `UnsupportedProtocol` |
    /// | 502 | errors only a client reports about a server's response (`UnexpectedStatus`, `InvalidResponse`, `AcceptMismatch`, `UnofferedProtocol`, `UnofferedExtension`): what a gateway relaying this handshake would answer |
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_)
            | Self::UnsupportedHttpVersion
            | Self::MissingHeader(_)
            | Self::InvalidHeader(_) => 400,
            Self::MethodNotAllowed => 405,
            Self::NotUpgrade | Self::UnsupportedVersion => 426,
            Self::TooLarge { .. } | Self::TooManyHeaders => 431,
            Self::InvalidUrl(_) | Self::InvalidInput(_) => 500,
            Self::UnsupportedProtocol => 501,
            Self::UnexpectedStatus(_)
            | Self::InvalidResponse(_)
            | Self::AcceptMismatch
            | Self::UnofferedProtocol
            | Self::UnofferedExtension => 502,
        }
    }

    /// The complete HTTP response a server sends to refuse a handshake that failed with this
    /// error: status line, the headers the status requires, `Content-Type: text/plain`,
    /// `Content-Length`, `Connection: close`, and the error message as the body.
    ///
    /// A 426 carries `Upgrade: websocket` and `Connection: Upgrade, close` (RFC 9110 §7.8 and
    /// §15.5.22), plus `Sec-WebSocket-Version: 13` for [`UnsupportedVersion`](Self::UnsupportedVersion)
    /// (RFC 6455 §4.4); a 405 carries `Allow: GET`.
    pub fn to_response(&self) -> Vec<u8> {
        let connection = if self.status() == 426 {
            "Upgrade, close"
        } else {
            "close"
        };
        let mut body = self.to_string();
        body.push('\n');
        http_util::write_rejection(
            self.status(),
            self.required_headers(false),
            connection,
            body.as_bytes(),
        )
    }

    /// The refusal of [`to_response`](Self::to_response) as an `http::Response`, for an HTTP
    /// layer that writes the head itself (hyper), to a request of `version`: the status, the
    /// headers the status requires, `content-type: text/plain; charset=utf-8`, and the error
    /// message as the body. The HTTP layer adds the length and decides whether the connection
    /// stays open.
    ///
    /// Over HTTP/1.x these are the headers of [`to_response`](Self::to_response), with
    /// `Connection: upgrade` beside `Upgrade` (RFC 9110 §7.8). Over HTTP/2, which has no
    /// Upgrade (RFC 9113 §8.6), a 426 carries no `Upgrade`, and a 405 `Allow: CONNECT`
    /// (RFC 8441 §4).
    ///
    /// ```
    /// use wsworker_proto::HandshakeError;
    ///
    /// let refusal = HandshakeError::UnsupportedProtocol.to_http_response(http::Version::HTTP_2);
    /// assert_eq!(refusal.status(), http::StatusCode::NOT_IMPLEMENTED);
    /// assert_eq!(refusal.body(), "extended connect for a protocol other than websocket\n");
    /// let refusal = HandshakeError::MethodNotAllowed.to_http_response(http::Version::HTTP_2);
    /// assert_eq!(refusal.headers()["allow"], "CONNECT");
    /// ```
    pub fn to_http_response(&self, version: http::Version) -> http::Response<String> {
        let h2 = version >= http::Version::HTTP_2;
        let mut body = self.to_string();
        body.push('\n');
        let mut response = http::Response::new(body);
        *response.status_mut() = http::StatusCode::from_u16(self.status())
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        *response.version_mut() = version;
        let headers = response.headers_mut();
        for (name, value) in self.required_headers(h2) {
            // Constants, valid names: `from_bytes` writes them in lowercase.
            if let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) {
                headers.append(name, http::HeaderValue::from_static(value));
            }
        }
        if !h2 && headers.contains_key(http::header::UPGRADE) {
            headers.append(
                http::header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
        }
        headers.append(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }

    /// The headers a refusal with this error must carry, besides those of every response:
    /// over HTTP/1.x (`h2` false) or over HTTP/2.
    fn required_headers(&self, h2: bool) -> &'static [HeaderLine<'static>] {
        match (self, h2) {
            (Self::NotUpgrade, false) => &[("Upgrade", "websocket")],
            (Self::UnsupportedVersion, false) => {
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
            }
            (Self::UnsupportedVersion, true) => &[("Sec-WebSocket-Version", "13")],
            (Self::MethodNotAllowed, false) => &[("Allow", "GET")],
            (Self::MethodNotAllowed, true) => &[("Allow", "CONNECT")],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn handshake_error_stays_small() {
        assert!(
            size_of::<HandshakeError>() <= 24,
            "{}",
            size_of::<HandshakeError>()
        );
    }

    #[test]
    fn statuses_are_mapped_once() {
        assert_eq!(HandshakeError::Malformed("x").status(), 400);
        assert_eq!(HandshakeError::MissingHeader("host").status(), 400);
        assert_eq!(
            HandshakeError::InvalidHeader("sec-websocket-key").status(),
            400
        );
        assert_eq!(HandshakeError::UnsupportedHttpVersion.status(), 400);
        assert_eq!(HandshakeError::MethodNotAllowed.status(), 405);
        assert_eq!(HandshakeError::NotUpgrade.status(), 426);
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert_eq!(HandshakeError::TooLarge { max: 1 }.status(), 431);
        assert_eq!(HandshakeError::TooManyHeaders.status(), 431);
        assert_eq!(HandshakeError::InvalidInput("x").status(), 500);
        assert_eq!(HandshakeError::UnsupportedProtocol.status(), 501);
        assert_eq!(HandshakeError::UnexpectedStatus(403).status(), 502);
        assert_eq!(HandshakeError::AcceptMismatch.status(), 502);
    }

    #[test]
    fn version_rejection_advertises_version_13() {
        let r = text(HandshakeError::UnsupportedVersion.to_response());
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{r}");
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{r}");
        assert!(r.contains("\r\nUpgrade: websocket\r\n"), "{r}");
        assert!(r.contains("\r\nConnection: Upgrade, close\r\n"), "{r}");
    }

    #[test]
    fn not_upgrade_rejection_carries_upgrade_header() {
        let r = text(HandshakeError::NotUpgrade.to_response());
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{r}");
        assert!(r.contains("\r\nUpgrade: websocket\r\n"), "{r}");
        assert!(!r.contains("Sec-WebSocket-Version"), "{r}");
    }

    #[test]
    fn method_rejection_carries_allow_get() {
        let r = text(HandshakeError::MethodNotAllowed.to_response());
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("\r\nAllow: GET\r\n"), "{r}");
    }

    #[test]
    fn rejection_is_complete_and_closes() {
        let err = HandshakeError::MissingHeader("sec-websocket-key");
        let r = text(err.to_response());
        let body = "missing header sec-websocket-key\n";
        assert_eq!(
            r,
            format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        );
    }
}

//! What the server answers a request it refuses, and how it counts it: each refusal's
//! status, headers and body in one place, whichever step of the handshake refused it.

use wsworker_proto::HandshakeError;
use wsworker_proto::handshake::reject_response;

use crate::metrics::{Rejection, WorkerCounters};

/// A refused request: why (for the metrics) and the response it gets.
pub(super) struct Refusal {
    rejection: Option<Rejection>,
    response: Vec<u8>,
}

impl Refusal {
    /// A refusal the server makes for `rejection` itself: its answer follows from the
    /// reason. (`BadRequest`, `HeaderTooLarge` and `Application` carry their own:
    /// [`Refusal::handshake`], [`Refusal::application`].)
    pub(super) fn of(rejection: Rejection) -> Self {
        let response = match rejection {
            Rejection::Timeout => reject_response(408, &[], b"request timeout\n"),
            Rejection::Origin => reject_response(403, &[], b"origin not allowed\n"),
            Rejection::Full => reject_response(
                503,
                &[("Retry-After", "1")],
                b"too many connections, try again later\n",
            ),
            Rejection::ShuttingDown => {
                reject_response(503, &[("Retry-After", "1")], b"server shutting down\n")
            }
            Rejection::NotFound => reject_response(404, &[], b"no WebSocket endpoint here\n"),
            Rejection::Tls => {
                reject_response(400, &[], b"this port speaks TLS: use https:// or wss://\n")
            }
            // A plain HTTP request other than GET or HEAD to the HTTP handler.
            Rejection::MethodNotAllowed => {
                reject_response(405, &[("Allow", "GET, HEAD")], b"method not allowed\n")
            }
            Rejection::UpgradeRequired => Ok(HandshakeError::NotUpgrade.to_response()),
            Rejection::BadRequest
            | Rejection::HeaderTooLarge
            | Rejection::Application
            | Rejection::Pending => reject_response(400, &[], b"bad request\n"),
        };
        Self {
            rejection: Some(rejection),
            response: response.unwrap_or_default(),
        }
    }

    /// A handshake the protocol refuses: its status and body are the error's.
    pub(super) fn handshake(error: &HandshakeError) -> Self {
        Self {
            rejection: Some(Rejection::of(error)),
            response: error.to_response(),
        }
    }

    /// A handshake the application's `on_handshake` refused with `status` and `body` (a
    /// 500 when those cannot make a response).
    pub(super) fn application(status: u16, body: &[u8]) -> Self {
        let response = reject_response(status, &[], body)
            .or_else(|_| reject_response(500, &[], b"invalid rejection\n"))
            .unwrap_or_default();
        Self {
            rejection: Some(Rejection::Application),
            response,
        }
    }

    /// A failure of ours (not the client's): a 500, not counted as a rejection.
    pub(super) fn internal() -> Self {
        Self {
            rejection: None,
            response: reject_response(500, &[], b"internal error\n").unwrap_or_default(),
        }
    }

    /// Counts it in `counters`; the response to write.
    pub(super) fn counted(self, counters: &WorkerCounters) -> Vec<u8> {
        if let Some(rejection) = self.rejection {
            counters.rejected(rejection);
        }
        self.response
    }
}

/// A response of ours in wire form (a refusal) as an `http::Response`, for an HTTP layer
/// that writes the head itself: one mapping of refusals to responses for every transport.
/// Hop-by-hop headers are left to that layer.
#[cfg(feature = "hyper")]
pub(super) fn to_http(response: &[u8], version: http::Version) -> http::Response<String> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Response::new(&mut headers);
    let body_at = match parsed.parse(response) {
        Ok(httparse::Status::Complete(at)) => at,
        _ => response.len(),
    };
    let mut http = http::Response::new(String::from_utf8_lossy(&response[body_at..]).into_owned());
    *http.status_mut() = parsed
        .code
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    *http.version_mut() = version;
    for header in parsed.headers.iter() {
        let name = header.name.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "connection" | "content-length" | "transfer-encoding" | "keep-alive"
        ) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(header.value),
        ) {
            http.headers_mut().append(name, value);
        }
    }
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(refusal: Refusal) -> String {
        let response = String::from_utf8(refusal.response).unwrap();
        response.lines().next().unwrap().to_owned()
    }

    #[cfg(feature = "hyper")]
    #[test]
    fn a_refusal_maps_to_the_same_http_response() {
        let wire = Refusal::of(Rejection::Full).response;
        let http = to_http(&wire, http::Version::HTTP_2);
        assert_eq!(http.status(), 503);
        assert_eq!(http.headers()["retry-after"], "1");
        assert!(!http.headers().contains_key("connection"));
        assert!(!http.headers().contains_key("content-length"));
        assert_eq!(http.body(), "too many connections, try again later\n");
    }

    #[test]
    fn every_refusal_has_its_status() {
        for (rejection, line) in [
            (Rejection::Timeout, "HTTP/1.1 408 Request Timeout"),
            (Rejection::Origin, "HTTP/1.1 403 Forbidden"),
            (Rejection::Full, "HTTP/1.1 503 Service Unavailable"),
            (Rejection::Tls, "HTTP/1.1 400 Bad Request"),
            (
                Rejection::MethodNotAllowed,
                "HTTP/1.1 405 Method Not Allowed",
            ),
            (Rejection::UpgradeRequired, "HTTP/1.1 426 Upgrade Required"),
        ] {
            assert_eq!(status(Refusal::of(rejection)), line, "{rejection:?}");
        }
        assert_eq!(
            status(Refusal::application(401, b"who are you\n")),
            "HTTP/1.1 401 Unauthorized"
        );
        assert_eq!(
            status(Refusal::application(99, b"")),
            "HTTP/1.1 500 Internal Server Error"
        );
        assert_eq!(
            status(Refusal::handshake(&HandshakeError::NotUpgrade)),
            "HTTP/1.1 426 Upgrade Required"
        );
        let full = String::from_utf8(Refusal::of(Rejection::Full).response).unwrap();
        assert!(full.contains("Retry-After: 1\r\n"), "{full}");
    }
}

//! The HTTP/1.1 head of a request an HTTP layer (hyper) parsed into `http` types, so that
//! [`Request::from_http`](super::Request::from_http) keeps what [`parse_request`] keeps and
//! every rule is read from one representation, whichever version the request came in.
//!
//! An HTTP/2 request is written as a gateway to HTTP/1.1 writes it (RFC 9113 §8.3.1): the
//! `:path` becomes the target and `:authority` the `Host` header.
//!
//! [`parse_request`]: super::parse_request

use http::header::HOST;
use http::{HeaderMap, Method, Uri, Version};

use super::HandshakeError;

/// The head `METHOD target HTTP/1.x`, the header lines and the blank line, every line ending
/// in CRLF. `version` is HTTP/1.0, HTTP/1.1 or HTTP/2 (written as HTTP/1.1).
pub(crate) fn render(
    method: &Method,
    uri: &Uri,
    version: Version,
    headers: &HeaderMap,
) -> Result<Vec<u8>, HandshakeError> {
    let h2 = version == Version::HTTP_2;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    if h2 {
        // hyper builds the URI of an HTTP/2 request from `:scheme`, `:authority` and
        // `:path`; the target is the `:path` (a CONNECT without one names an authority).
        let target = match (uri.path_and_query(), uri.authority()) {
            (Some(path), _) => path.as_str(),
            (None, Some(authority)) if method == Method::CONNECT => authority.as_str(),
            (None, _) => "/",
        };
        out.extend_from_slice(target.as_bytes());
    } else {
        out.extend_from_slice(uri.to_string().as_bytes());
    }
    out.extend_from_slice(if version == Version::HTTP_10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    if h2 && let Some(authority) = uri.authority() {
        let mut hosts = headers.get_all(HOST).iter().peekable();
        if hosts.peek().is_none() {
            line(&mut out, b"host", authority.as_str().as_bytes());
        } else if hosts.any(|host| {
            !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
        }) {
            return Err(HandshakeError::InvalidHeader("host"));
        }
    }
    for (name, value) in headers {
        line(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Appends `name: value\r\n`. A `HeaderMap` holds no CR or LF, so no line can be smuggled.
fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

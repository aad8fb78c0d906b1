//! The server's view of the opening request: [`parse_request`] reads any well-formed HTTP/1.x
//! request head into a [`Request`], and [`Request::validate_upgrade`] decides whether it is a
//! valid WebSocket upgrade (RFC 6455 §4.2.1), so plain HTTP requests can go elsewhere.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, Method, Uri, Version};

use super::extension::{self, Extension};
use super::http_util::{self, HeaderLine};
use super::{HandshakeError, MAX_HEADERS, server};

/// A parsed HTTP/1.x request head: the "request scope" an application sees during the
/// handshake (path, query, headers, cookies, origin, offered subprotocols and extensions).
///
/// Parsing only checks HTTP syntax; call [`validate_upgrade`](Self::validate_upgrade) (or
/// [`accept`](Self::accept), which calls it) to apply the WebSocket rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: Method,
    target: String,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// Parses a request head from the start of `buf`, looking at no more than `max_size` bytes.
///
/// Returns `Ok(None)` when the head is not complete yet (`buf` is then shorter than
/// `max_size`), or the request and the number of bytes the head took: whatever follows in
/// `buf` (a body, or the first WebSocket frames sent in the same read) belongs to the caller.
/// [`ServerHandshake`](super::ServerHandshake) does the buffering for callers that read in
/// pieces.
///
/// # Errors
///
/// - [`HandshakeError::TooLarge`] when the head does not end within `max_size` bytes;
/// - [`HandshakeError::TooManyHeaders`] beyond [`MAX_HEADERS`] header lines;
/// - [`HandshakeError::Malformed`] when the bytes are not an HTTP/1.0 or HTTP/1.1 request head.
pub fn parse_request(
    buf: &[u8],
    max_size: usize,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let head = http_util::limited(buf, max_size);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(head).map_err(http_util::parse_error)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return http_util::partial(buf, max_size),
    };
    // A complete parse always fills method, path and version.
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HandshakeError::Malformed("incomplete request line"));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| HandshakeError::Malformed("invalid method"))?;
    let uri = target
        .parse::<Uri>()
        .map_err(|_| HandshakeError::Malformed("invalid request target"))?;
    let version = match version {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return Err(HandshakeError::Malformed("invalid http version")),
    };
    let headers = http_util::header_map(parsed.headers)?;
    let request = Request {
        method,
        target: target.to_owned(),
        uri,
        version,
        headers,
    };
    Ok(Some((request, len)))
}

impl Request {
    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The HTTP version: [`Version::HTTP_11`] or [`Version::HTTP_10`].
    pub fn version(&self) -> Version {
        self.version
    }

    /// The request target exactly as sent, such as `/chat?room=1`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The request target parsed as a URI (origin-form `/chat?room=1`, or absolute-form
    /// `http://host/chat` as sent to proxies).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// The path of the target, without the query: `/chat` for `/chat?room=1`. Still
    /// percent-encoded.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The query of the target, without the `?`: `Some("room=1")` for `/chat?room=1`. Still
    /// percent-encoded.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// All headers, repeated ones included, looked up without regard to case.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first `name` header (any case) as text, trimmed; `None` when absent or not visible
    /// ASCII (read [`headers`](Self::headers) for the raw bytes).
    pub fn header(&self, name: &str) -> Option<&str> {
        http_util::first(&self.headers, name)
    }

    /// The `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.header("host")
    }

    /// The `Origin` header, which browsers send (RFC 6455 §10.2): the server decides whether
    /// to trust it. Browsers send `null` for opaque origins.
    pub fn origin(&self) -> Option<&str> {
        self.header("origin")
    }

    /// The `Sec-WebSocket-Key` header, as text.
    pub fn key(&self) -> Option<&str> {
        self.header("sec-websocket-key")
    }

    /// The subprotocols the client offers, in its order of preference: the elements of every
    /// `Sec-WebSocket-Protocol` header, trimmed.
    pub fn protocols(&self) -> impl Iterator<Item = &str> {
        http_util::list_elements(&self.headers, "sec-websocket-protocol")
    }

    /// The extensions the client offers, in order, from every `Sec-WebSocket-Extensions`
    /// header.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidHeader`] when a header breaks the grammar of RFC 6455 §9.1.
    pub fn extensions(&self) -> Result<Vec<Extension>, HandshakeError> {
        let mut out = Vec::new();
        for value in self.headers.get_all("sec-websocket-extensions") {
            let value = value
                .to_str()
                .map_err(|_| HandshakeError::InvalidHeader("sec-websocket-extensions"))?;
            extension::parse_into(value, &mut out)?;
        }
        Ok(out)
    }

    /// The cookies of every `Cookie` header as `(name, value)` pairs, trimmed, in order
    /// (RFC 6265 §5.4). Values are returned as sent (quotes and percent-encoding kept).
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .get_all("cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.trim(), value.trim()))
            .filter(|(name, _)| !name.is_empty())
    }

    /// The value of the first cookie called `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether the request asks for a WebSocket: an `Upgrade` header lists `websocket` (any
    /// case). A server routes the other requests to plain HTTP handling; for this one,
    /// [`validate_upgrade`](Self::validate_upgrade) decides.
    pub fn is_websocket_upgrade(&self) -> bool {
        http_util::has_token(&self.headers, "upgrade", "websocket")
    }

    /// Applies the rules of RFC 6455 §4.2.1 to this request.
    ///
    /// # Errors
    ///
    /// Checked in this order, each error with its status in [`HandshakeError::status`]:
    /// - [`NotUpgrade`](HandshakeError::NotUpgrade) (426): no `Upgrade: websocket`;
    /// - [`MethodNotAllowed`](HandshakeError::MethodNotAllowed) (405): method other than GET;
    /// - [`UnsupportedHttpVersion`](HandshakeError::UnsupportedHttpVersion) (400): HTTP/1.0;
    /// - [`MissingHeader`](HandshakeError::MissingHeader) or
    ///   [`InvalidHeader`](HandshakeError::InvalidHeader) (400) for `host` (exactly one,
    ///   non-empty, no userinfo), then `connection` (must list `upgrade`);
    /// - [`UnsupportedVersion`](HandshakeError::UnsupportedVersion) (426):
    ///   `Sec-WebSocket-Version` absent, repeated, or not `13`;
    /// - `MissingHeader`/`InvalidHeader` (400) for `sec-websocket-key` (exactly one, base64 of
    ///   16 bytes), `sec-websocket-protocol` (tokens), `sec-websocket-extensions` (RFC 6455 §9.1
    ///   syntax).
    pub fn validate_upgrade(&self) -> Result<(), HandshakeError> {
        if !self.is_websocket_upgrade() {
            return Err(HandshakeError::NotUpgrade);
        }
        if self.method != Method::GET {
            return Err(HandshakeError::MethodNotAllowed);
        }
        if self.version != Version::HTTP_11 {
            return Err(HandshakeError::UnsupportedHttpVersion);
        }
        match http_util::single(&self.headers, "host") {
            Ok(Some(host)) if is_valid_host(host) => {}
            Ok(None) => return Err(HandshakeError::MissingHeader("host")),
            _ => return Err(HandshakeError::InvalidHeader("host")),
        }
        if !http_util::has_token(&self.headers, "connection", "upgrade") {
            return Err(if self.headers.contains_key("connection") {
                HandshakeError::InvalidHeader("connection")
            } else {
                HandshakeError::MissingHeader("connection")
            });
        }
        if http_util::single(&self.headers, "sec-websocket-version") != Ok(Some("13")) {
            return Err(HandshakeError::UnsupportedVersion);
        }
        match http_util::single(&self.headers, "sec-websocket-key") {
            Ok(Some(key)) if is_valid_key(key) => {}
            Ok(None) => return Err(HandshakeError::MissingHeader("sec-websocket-key")),
            _ => return Err(HandshakeError::InvalidHeader("sec-websocket-key")),
        }
        let protocols = self.headers.get_all("sec-websocket-protocol");
        let protocols_ok = protocols.iter().all(|value| value.to_str().is_ok())
            && self.protocols().all(http_util::is_token);
        if !protocols_ok {
            return Err(HandshakeError::InvalidHeader("sec-websocket-protocol"));
        }
        self.extensions()?;
        Ok(())
    }

    /// Validates the request and builds the `101 Switching Protocols` response that accepts
    /// it, with the subprotocol and extensions the application chose and its extra headers
    /// (see [`accept_response`](super::accept_response)).
    ///
    /// # Errors
    ///
    /// Any error of [`validate_upgrade`](Self::validate_upgrade) (answer it with
    /// [`HandshakeError::to_response`]), or [`HandshakeError::InvalidInput`] when `protocol`
    /// was not offered by the client, an extension in `extensions` was not offered, or an
    /// argument cannot be sent (see [`accept_response`](super::accept_response)).
    pub fn accept(
        &self,
        protocol: Option<&str>,
        extensions: Option<&str>,
        extra_headers: &[HeaderLine<'_>],
    ) -> Result<Vec<u8>, HandshakeError> {
        self.validate_upgrade()?;
        if protocol.is_some_and(|chosen| !self.protocols().any(|offered| offered == chosen)) {
            return Err(HandshakeError::InvalidInput(
                "subprotocol was not offered by the client",
            ));
        }
        if let Some(extensions) = extensions {
            let offered = self.extensions()?;
            let chosen = Extension::parse_list(extensions)
                .map_err(|_| HandshakeError::InvalidInput("invalid extensions syntax"))?;
            let all_offered = chosen.iter().all(|chosen| {
                offered
                    .iter()
                    .any(|offer| offer.name.eq_ignore_ascii_case(&chosen.name))
            });
            if !all_offered {
                return Err(HandshakeError::InvalidInput(
                    "extension was not offered by the client",
                ));
            }
        }
        let key = self.key().unwrap_or_default();
        server::accept_response(key, protocol, extensions, extra_headers)
    }
}

/// A `Host` value: a non-empty authority without userinfo (RFC 9112 §3.2, RFC 6455 §4.1).
fn is_valid_host(host: &str) -> bool {
    !host.contains('@') && host.parse::<http::uri::Authority>().is_ok()
}

/// A `Sec-WebSocket-Key`: base64 of exactly 16 bytes (RFC 6455 §4.1 item 7).
fn is_valid_key(key: &str) -> bool {
    let mut decoded = [0u8; 18];
    // A 24-character value decodes to at most 18 bytes; longer values are wrong anyway.
    key.len() == 24 && STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::RFC_REQUEST;

    fn parse(bytes: &[u8]) -> Request {
        let (request, len) = parse_request(bytes, 8192).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        request
    }

    /// The RFC request with `header` (a full line, or `Name:` prefix to remove) replaced.
    fn with(name: &str, line: Option<&str>) -> Vec<u8> {
        let text = std::str::from_utf8(RFC_REQUEST).unwrap();
        let mut out = String::new();
        let mut replaced = false;
        for l in text.split_inclusive("\r\n") {
            if l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            {
                if let Some(line) = line {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
                replaced = true;
            } else if l == "\r\n" && !replaced {
                if let Some(line) = line {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
                out.push_str(l);
            } else {
                out.push_str(l);
            }
        }
        out.into_bytes()
    }

    fn validate(bytes: &[u8]) -> Result<(), HandshakeError> {
        parse(bytes).validate_upgrade()
    }

    #[test]
    fn rfc_6455_example_request_is_parsed_and_valid() {
        let request = parse(RFC_REQUEST);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.target(), "/chat");
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), None);
        assert_eq!(request.host(), Some("server.example.com"));
        assert_eq!(request.origin(), Some("http://example.com"));
        assert_eq!(request.key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(
            request.protocols().collect::<Vec<_>>(),
            ["chat", "superchat"]
        );
        assert_eq!(request.extensions().unwrap(), []);
        assert_eq!(request.headers().len(), 7);
        assert_eq!(request.header("SEC-WEBSOCKET-VERSION"), Some("13"));
        assert!(request.is_websocket_upgrade());
        assert_eq!(request.validate_upgrade(), Ok(()));
    }

    #[test]
    fn path_and_query_are_split() {
        let request = parse(b"GET /a/b%20c?x=1&y=2 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(request.path(), "/a/b%20c");
        assert_eq!(request.query(), Some("x=1&y=2"));
        assert_eq!(request.target(), "/a/b%20c?x=1&y=2");
        let request = parse(b"GET http://h:1/p?q HTTP/1.1\r\nHost: h:1\r\n\r\n");
        assert_eq!(request.path(), "/p");
        assert_eq!(request.query(), Some("q"));
    }

    #[test]
    fn plain_http_request_parses_but_is_not_an_upgrade() {
        let request = parse(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
        assert!(!request.is_websocket_upgrade());
        assert_eq!(request.validate_upgrade(), Err(HandshakeError::NotUpgrade));
        assert_eq!(HandshakeError::NotUpgrade.status(), 426);
        let request = parse(b"POST /form HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.version(), Version::HTTP_10);
    }

    #[test]
    fn upgrade_other_than_websocket_is_not_an_upgrade() {
        let bytes = with("upgrade", Some("Upgrade: h2c"));
        assert_eq!(validate(&bytes), Err(HandshakeError::NotUpgrade));
    }

    #[test]
    fn upgrade_and_connection_tokens_are_case_insensitive_inside_lists() {
        let bytes = with("upgrade", Some("upgrade: foo, WebSocket"));
        let bytes = String::from_utf8(bytes)
            .unwrap()
            .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        assert_eq!(validate(bytes.as_bytes()), Ok(()));
        let bytes = with("connection", Some("connection: KEEP-ALIVE,upgrade"));
        assert_eq!(validate(&bytes), Ok(()));
    }

    #[test]
    fn connection_without_upgrade_token_is_400() {
        let err = validate(&with("connection", Some("Connection: keep-alive"))).unwrap_err();
        assert_eq!(err, HandshakeError::InvalidHeader("connection"));
        assert_eq!(err.status(), 400);
        let err = validate(&with("connection", None)).unwrap_err();
        assert_eq!(err, HandshakeError::MissingHeader("connection"));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn method_other_than_get_is_405() {
        let bytes = String::from_utf8(RFC_REQUEST.to_vec())
            .unwrap()
            .replacen("GET", "POST", 1);
        let err = validate(bytes.as_bytes()).unwrap_err();
        assert_eq!(err, HandshakeError::MethodNotAllowed);
        assert_eq!(err.status(), 405);
    }

    #[test]
    fn http_1_0_upgrade_is_400() {
        let bytes = String::from_utf8(RFC_REQUEST.to_vec())
            .unwrap()
            .replacen("HTTP/1.1", "HTTP/1.0", 1);
        let err = validate(bytes.as_bytes()).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedHttpVersion);
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn missing_or_bad_host_is_400() {
        assert_eq!(
            validate(&with("host", None)),
            Err(HandshakeError::MissingHeader("host"))
        );
        for bad in ["Host:", "Host: user@h", "Host: a b", "Host: [::1"] {
            assert_eq!(
                validate(&with("host", Some(bad))),
                Err(HandshakeError::InvalidHeader("host")),
                "{bad}"
            );
        }
        let twice = with("host", Some("Host: a\r\nHost: b"));
        assert_eq!(validate(&twice), Err(HandshakeError::InvalidHeader("host")));
        assert_eq!(HandshakeError::InvalidHeader("host").status(), 400);
        assert_eq!(validate(&with("host", Some("Host: [::1]:9001"))), Ok(()));
    }

    #[test]
    fn version_other_than_13_is_426() {
        for line in [
            Some("Sec-WebSocket-Version: 8"),
            Some("Sec-WebSocket-Version: 13, 8"),
            Some("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13"),
            Some("Sec-WebSocket-Version: 14"),
            None,
        ] {
            let err = validate(&with("sec-websocket-version", line)).unwrap_err();
            assert_eq!(err, HandshakeError::UnsupportedVersion, "{line:?}");
            assert_eq!(err.status(), 426);
        }
    }

    #[test]
    fn key_must_be_base64_of_16_bytes() {
        let cases = [
            // 15 bytes
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA",
            // 17 bytes
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=",
            // 16 bytes without padding
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA",
            // not base64
            "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==",
            // non-canonical trailing bits
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAB==",
            "Sec-WebSocket-Key:",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        ];
        for line in cases {
            let err = validate(&with("sec-websocket-key", Some(line))).unwrap_err();
            assert_eq!(
                err,
                HandshakeError::InvalidHeader("sec-websocket-key"),
                "{line}"
            );
            assert_eq!(err.status(), 400);
        }
        let err = validate(&with("sec-websocket-key", None)).unwrap_err();
        assert_eq!(err, HandshakeError::MissingHeader("sec-websocket-key"));
        assert_eq!(err.status(), 400);
        let ok = "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==";
        assert_eq!(validate(&with("sec-websocket-key", Some(ok))), Ok(()));
    }

    #[test]
    fn protocols_are_collected_from_all_headers_in_order() {
        let bytes = with(
            "sec-websocket-protocol",
            Some("Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol: ,c ,"),
        );
        let request = parse(&bytes);
        assert_eq!(request.protocols().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(request.validate_upgrade(), Ok(()));
    }

    #[test]
    fn protocol_that_is_not_a_token_is_400() {
        let bytes = with(
            "sec-websocket-protocol",
            Some("Sec-WebSocket-Protocol: chat, su/per"),
        );
        assert_eq!(
            validate(&bytes),
            Err(HandshakeError::InvalidHeader("sec-websocket-protocol"))
        );
    }

    #[test]
    fn extensions_are_collected_from_all_headers() {
        let bytes = with(
            "sec-websocket-extensions",
            Some(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
                 Sec-WebSocket-Extensions: x-a; p=\"1\", x-b",
            ),
        );
        let request = parse(&bytes);
        let names: Vec<_> = request
            .extensions()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["permessage-deflate", "x-a", "x-b"]);
        assert_eq!(request.validate_upgrade(), Ok(()));
        let bad = with(
            "sec-websocket-extensions",
            Some("Sec-WebSocket-Extensions: a;;"),
        );
        assert_eq!(
            validate(&bad),
            Err(HandshakeError::InvalidHeader("sec-websocket-extensions"))
        );
    }

    #[test]
    fn cookies_are_split_into_pairs() {
        let request = parse(
            b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1; b = two ;junk; c=\r\nCookie: d=\"q\"\r\n\r\n",
        );
        assert_eq!(
            request.cookies().collect::<Vec<_>>(),
            [("a", "1"), ("b", "two"), ("c", ""), ("d", "\"q\"")]
        );
        assert_eq!(request.cookie("b"), Some("two"));
        assert_eq!(request.cookie("x"), None);
    }

    #[test]
    fn headers_keep_repeats_and_ignore_case() {
        let request = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
        let values: Vec<_> = request.headers().get_all("X-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(request.header("x-A"), Some("1"));
    }

    #[test]
    fn trailing_bytes_are_not_consumed() {
        let mut bytes = RFC_REQUEST.to_vec();
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        bytes.extend_from_slice(&frame);
        let (_, len) = parse_request(&bytes, 8192).unwrap().unwrap();
        assert_eq!(len, RFC_REQUEST.len());
        assert_eq!(&bytes[len..], frame);
    }

    #[test]
    fn incomplete_head_needs_more_bytes() {
        for end in 0..RFC_REQUEST.len() {
            assert_eq!(parse_request(&RFC_REQUEST[..end], 8192), Ok(None), "{end}");
        }
    }

    #[test]
    fn head_over_the_limit_is_too_large() {
        let limit = RFC_REQUEST.len() - 1;
        let err = parse_request(RFC_REQUEST, limit).unwrap_err();
        assert_eq!(err, HandshakeError::TooLarge { max: limit });
        assert_eq!(err.status(), 431);
        // A partial head that already fills the limit cannot end within it.
        assert_eq!(
            parse_request(&RFC_REQUEST[..limit], limit),
            Err(HandshakeError::TooLarge { max: limit })
        );
        assert_eq!(parse_request(&RFC_REQUEST[..limit - 1], limit), Ok(None));
        // Exactly at the limit is fine, and so are frame bytes past the limit.
        let mut bytes = RFC_REQUEST.to_vec();
        bytes.extend_from_slice(&[0x81; 100]);
        assert!(parse_request(&bytes, RFC_REQUEST.len()).unwrap().is_some());
        // An endless header line.
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(
            parse_request(&long, 8192),
            Err(HandshakeError::TooLarge { max: 8192 })
        );
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            bytes.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let err = parse_request(&bytes, 8192).unwrap_err();
        assert_eq!(err, HandshakeError::TooManyHeaders);
        assert_eq!(err.status(), 431);
    }

    #[test]
    fn garbage_is_malformed() {
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / FOO\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
        ] {
            let err = parse_request(garbage, 8192).unwrap_err();
            assert!(
                matches!(err, HandshakeError::Malformed(_)),
                "{garbage:?}: {err:?}"
            );
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn request_is_send_sync_clone_debug() {
        fn check<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
        check::<Request>();
    }
}

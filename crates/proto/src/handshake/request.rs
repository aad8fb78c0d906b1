//! The server's view of the opening request: [`parse_request`] reads any well-formed HTTP/1.x
//! request head into a [`Request`], and [`Request::validate_upgrade`] decides whether it is a
//! valid WebSocket upgrade (RFC 6455 §4.2.1), so plain HTTP requests can go elsewhere.
//! [`Request::from_http`] makes the same `Request` of one an HTTP layer parsed, HTTP/2
//! included (RFC 8441), so both versions share every accessor and rule.
//!
//! A server keeps each connection's [`Request`] for the connection's whole life (the
//! application reads it at any time), so it is kept small: one copy of the request head,
//! exactly the head's length, where the target lies in it, and for each header line the
//! offsets of its name and value (16 bytes a line, where an [`http::HeaderMap`] costs about
//! 80 bytes a header plus an allocation per value). A request kept long can drop even the
//! offsets ([`Request::shrink_to_head`], as the server does once a connection is open):
//! its accessors then parse the head again with the parser that accepted it, so they find
//! exactly what it delimited. Only [`Request::headers`] and [`Request::uri`], which hand
//! out `http` types, build them, on first call: a server that never asks for the whole map
//! never pays for it.

use std::borrow::Cow;
use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri, Version};

use super::extension::{self, Extension};
use super::http_util::{self, HeaderLine};
use super::{HandshakeError, MAX_HEADERS, http_head, server};

/// The longest head [`parse_request`] reads, whatever `max_size` says: offsets into the head
/// are `u32`, which halves the size of a header line, and no real head comes near 4 GiB.
pub(crate) const MAX_HEAD: usize = u32::MAX as usize;

/// One header line: where its name and its value (as httparse delimits it) lie in the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    name: Span,
    value: Span,
}

/// Where a piece of the request head lies in [`Request`]'s copy of it: bytes `start..end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// The span of `part`, a slice of `head` the parser returned (the target, a header name
    /// or value). `None` if it is not inside `head`, which httparse never does.
    fn of(head: &[u8], part: &[u8]) -> Option<Self> {
        if part.is_empty() {
            // An empty slice may point anywhere; any empty span reads the same.
            return Some(Self::default());
        }
        // Comparing addresses needs no unsafe code; a `part` outside `head` wraps around
        // to a huge offset and fails the bounds check.
        let start = part.as_ptr().addr().wrapping_sub(head.as_ptr().addr());
        let end = start
            .checked_add(part.len())
            .filter(|&end| end <= head.len())?;
        Some(Self {
            start: u32::try_from(start).ok()?,
            end: u32::try_from(end).ok()?,
        })
    }

    /// The span as an index range (`u32` always fits in `usize` on the targets we build for).
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A parsed HTTP/1.x request head: the "request scope" an application sees during the
/// handshake (path, query, headers, cookies, origin, offered subprotocols and extensions).
///
/// Parsing only checks HTTP syntax; call [`validate_upgrade`](Self::validate_upgrade) (or
/// [`accept`](Self::accept), which calls it) to apply the WebSocket rules.
///
/// Two requests are equal when their heads are the same bytes, whether or not
/// [`headers`](Self::headers) or [`uri`](Self::uri) have been called on them.
#[derive(Clone)]
pub struct Request {
    method: Method,
    version: Version,
    /// The request head as received: request line, header lines and the blank line.
    head: Box<[u8]>,
    target: Span,
    /// The header lines, until [`Request::shrink_to_head`].
    lines: Option<Box<[Line]>>,
    /// What `uri()` and `headers()` build on first call. Boxed, and one box for both, so the
    /// rarely used caches take 16 bytes in every connection's request rather than 200.
    built: OnceLock<Box<Built>>,
    /// Set once [`Request::validate_upgrade`] passed: the request never changes, so
    /// [`Request::accept`] after it need not check it again (a server does both).
    validated: OnceLock<()>,
    /// Whether `head` holds, after the blank line that ends the head, the `:protocol` of an
    /// HTTP/2 extended CONNECT ([`Request::from_http`]). Kept there rather than in a field
    /// of its own so that every connection's request stays as small as it was.
    has_protocol: bool,
}

/// The `http` types a [`Request`] builds when asked for them.
#[derive(Debug, Default, Clone)]
struct Built {
    uri: OnceLock<Uri>,
    headers: OnceLock<HeaderMap>,
}

/// Parses a request head from the start of `buf`, looking at no more than `max_size` bytes.
///
/// Returns `Ok(None)` when the head is not complete yet (`buf` is then shorter than
/// `max_size`), or the request and the number of bytes the head took: whatever follows in
/// `buf` (a body, or the first WebSocket frames sent in the same read) belongs to the caller.
/// [`ServerHandshake`](super::ServerHandshake) does the buffering for callers that read in
/// pieces. The request keeps a copy of the head, so `buf` can be reused at once.
///
/// # Errors
///
/// - [`HandshakeError::TooLarge`] when the head does not end within `max_size` bytes (nor
///   within 4 GiB, whatever `max_size` says);
/// - [`HandshakeError::TooManyHeaders`] beyond [`MAX_HEADERS`] header lines;
/// - [`HandshakeError::Malformed`] when the bytes are not an HTTP/1.0 or HTTP/1.1 request head,
///   or its target's form does not fit its method (`GET *`, `GET example.com:80`: RFC 9112
///   §3.2 keeps the asterisk-form for OPTIONS and the authority-form for CONNECT).
pub fn parse_request(
    buf: &[u8],
    max_size: usize,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let max_size = max_size.min(MAX_HEAD);
    let head = http_util::limited(buf, max_size);
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed
        .parse_with_uninit_headers(head, &mut headers)
        .map_err(http_util::parse_error)?
    {
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
    // Checked here so that `uri()` cannot fail later. The parsed value is a copy of the
    // target, so it is dropped: `uri()` builds one when asked.
    if target.parse::<Uri>().is_err() {
        return Err(HandshakeError::Malformed("invalid request target"));
    }
    if !target_fits(&method, target) {
        return Err(HandshakeError::Malformed(
            "request target form does not fit the method",
        ));
    }
    let version = match version {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return Err(HandshakeError::Malformed("invalid http version")),
    };
    let outside = || HandshakeError::Malformed("parser output outside the head");
    let mut lines = Vec::with_capacity(parsed.headers.len());
    for header in parsed.headers.iter() {
        // The checks of a HeaderMap, so the same heads fail, and `headers()` cannot.
        http_util::check_header_line(header.name.as_bytes(), header.value)?;
        lines.push(Line {
            name: Span::of(head, header.name.as_bytes()).ok_or_else(outside)?,
            value: Span::of(head, header.value).ok_or_else(outside)?,
        });
    }
    let request = Request {
        method,
        version,
        // A copy of exactly the head: a slice of `buf` would keep the whole read buffer
        // alive, and the caller owns `buf`.
        head: head.get(..len).unwrap_or(head).into(),
        target: Span::of(head, target.as_bytes()).ok_or_else(outside)?,
        // `lines` has exactly the capacity it needs, so this does not reallocate.
        lines: Some(lines.into_boxed_slice()),
        built: OnceLock::new(),
        validated: OnceLock::new(),
        has_protocol: false,
    };
    Ok(Some((request, len)))
}

impl Request {
    /// The request an HTTP layer such as hyper parsed, for a server that embeds the handshake
    /// under it: an HTTP/1.x request (checked by the rules of RFC 6455 §4.2.1, answered with
    /// 101) or an HTTP/2 one (RFC 8441 extended CONNECT, answered with 200). `protocol` is the
    /// `:protocol` pseudo-header of an HTTP/2 request (hyper hands it out as the
    /// `hyper::ext::Protocol` extension: pass `protocol.as_str()`), `None` when it has none.
    ///
    /// The request keeps the HTTP/1.1 rendering of the head, as a gateway from HTTP/2 writes
    /// it (RFC 9113 §8.3.1): the target is the `:path`, and `:authority` becomes the `Host`
    /// header. Every accessor, the validation and [`accept_parts`](Self::accept_parts) are
    /// then exactly those of a request read from the wire; only [`version`](Self::version),
    /// [`is_h2`](Self::is_h2) and [`protocol`](Self::protocol) tell an HTTP/2 request apart.
    /// The HTTP/2 layer's own limit on the header list applies, not
    /// [`DEFAULT_MAX_HEADER_SIZE`](super::DEFAULT_MAX_HEADER_SIZE); [`MAX_HEADERS`] does.
    ///
    /// ```
    /// use wsworker_proto::handshake::Request;
    ///
    /// // What hyper hands a server for a browser's `new WebSocket("wss://example.com/chat")`
    /// // over HTTP/2.
    /// let http = http::Request::connect("https://example.com/chat?room=1")
    ///     .version(http::Version::HTTP_2)
    ///     .header("sec-websocket-version", "13")
    ///     .header("sec-websocket-protocol", "chat")
    ///     .header("origin", "https://example.com")
    ///     .body(())
    ///     .unwrap();
    /// let request = Request::from_http(&http, Some("websocket"))?;
    /// assert!(request.is_h2());
    /// assert_eq!(request.protocol(), Some("websocket"));
    /// assert_eq!((request.path(), request.query()), ("/chat", Some("room=1")));
    /// assert_eq!(request.host(), Some("example.com"));
    /// assert_eq!(request.validate_upgrade(), Ok(()));
    /// # Ok::<(), wsworker_proto::HandshakeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`HandshakeError::Malformed`] for a version other than HTTP/1.0, HTTP/1.1 and
    ///   HTTP/2, a `protocol` on an HTTP/1.x request, or a target whose form does not fit
    ///   the method (as [`parse_request`]);
    /// - [`HandshakeError::InvalidHeader`] (`host`) for an HTTP/2 request whose `Host`
    ///   header names another authority than its `:authority` (RFC 9113 §8.3.1);
    /// - [`HandshakeError::TooManyHeaders`] beyond [`MAX_HEADERS`] header lines.
    pub fn from_http<B>(
        request: &http::Request<B>,
        protocol: Option<&str>,
    ) -> Result<Self, HandshakeError> {
        Self::from_pieces(
            request.method(),
            request.uri(),
            request.version(),
            request.headers(),
            protocol,
        )
    }

    /// [`from_http`](Self::from_http) for the parts of a request, as
    /// `http::Request::into_parts` gives them (a server keeps the body, to put the request
    /// together again for its HTTP layer's upgrade).
    ///
    /// ```
    /// use wsworker_proto::HandshakeError;
    /// use wsworker_proto::handshake::Request;
    ///
    /// let (parts, ()) = http::Request::connect("https://example.com/chat")
    ///     .version(http::Version::HTTP_2)
    ///     .header("sec-websocket-version", "13")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let request = Request::from_parts(&parts, Some("foo"))?;
    /// let refused = request.validate_upgrade().unwrap_err();
    /// assert_eq!(refused, HandshakeError::UnsupportedProtocol);
    /// assert_eq!(refused.status(), 501);
    /// # Ok::<(), HandshakeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_http`](Self::from_http).
    pub fn from_parts(
        parts: &http::request::Parts,
        protocol: Option<&str>,
    ) -> Result<Self, HandshakeError> {
        Self::from_pieces(
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            protocol,
        )
    }

    fn from_pieces(
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
        protocol: Option<&str>,
    ) -> Result<Self, HandshakeError> {
        let h2 = match version {
            Version::HTTP_10 | Version::HTTP_11 => false,
            Version::HTTP_2 => true,
            _ => return Err(HandshakeError::Malformed("unsupported http version")),
        };
        if protocol.is_some() && !h2 {
            return Err(HandshakeError::Malformed(":protocol outside http/2"));
        }
        let mut buf = http_head::render(method, uri, version, headers)?;
        let head_len = buf.len();
        if let Some(protocol) = protocol {
            buf.extend_from_slice(protocol.as_bytes());
        }
        // A rendered head ends with its blank line, and no earlier: `http` types hold no
        // line ends. Checked all the same, as the protocol is found after that line.
        let Some((mut request, len)) = parse_request(&buf, MAX_HEAD)? else {
            return Err(HandshakeError::Malformed("incomplete head"));
        };
        if len != head_len {
            return Err(HandshakeError::Malformed("head ends early"));
        }
        request.version = version;
        if protocol.is_some() {
            // The spans index the same bytes in the longer copy.
            request.head = buf.into_boxed_slice();
            request.has_protocol = true;
        }
        Ok(request)
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The HTTP version: [`Version::HTTP_11`] or [`Version::HTTP_10`] for a request read from
    /// the wire, also [`Version::HTTP_2`] for one built by [`from_http`](Self::from_http).
    pub fn version(&self) -> Version {
        self.version
    }

    /// Whether the request came over HTTP/2, where a WebSocket is opened by an extended
    /// CONNECT (RFC 8441) answered with 200, not by an Upgrade answered with 101.
    pub fn is_h2(&self) -> bool {
        self.version == Version::HTTP_2
    }

    /// The `:protocol` pseudo-header of an HTTP/2 extended CONNECT (RFC 8441 §4): `websocket`
    /// for a WebSocket; `None` for any other request.
    pub fn protocol(&self) -> Option<&str> {
        if !self.has_protocol {
            return None;
        }
        // A rendered head ends at its first empty line (values hold no line ends), and the
        // protocol follows it.
        let end = self.head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        std::str::from_utf8(self.head.get(end..)?).ok()
    }

    /// The request target exactly as sent, such as `/chat?room=1`.
    pub fn target(&self) -> &str {
        // httparse handed the target out as `str`, so this never fails.
        std::str::from_utf8(self.bytes(self.target)).unwrap_or_default()
    }

    /// The request target parsed as a URI (origin-form `/chat?room=1`, or absolute-form
    /// `http://host/chat` as sent to proxies).
    ///
    /// Built on first call.
    pub fn uri(&self) -> &Uri {
        self.built().uri.get_or_init(|| {
            // `parse_request` parsed the same bytes with the same function, so this succeeds.
            Uri::try_from(self.target()).unwrap_or_default()
        })
    }

    /// The path of the target, without the query: `/chat` for `/chat?room=1`. Still
    /// percent-encoded. The same as `uri().path()`, without building the URI.
    pub fn path(&self) -> &str {
        split_target(self.target()).0
    }

    /// The query of the target, without the `?`: `Some("room=1")` for `/chat?room=1`. Still
    /// percent-encoded. The same as `uri().query()`, without building the URI.
    pub fn query(&self) -> Option<&str> {
        split_target(self.target()).1
    }

    /// The first value of the query parameter `name`, decoded as browsers encode forms
    /// (`+` and `%20` are spaces): `Some("green room")` for `room` in
    /// `/chat?room=green+room&user=tom`. A parameter without `=` has the empty value.
    ///
    /// ```
    /// use wsworker_proto::handshake::parse_request;
    ///
    /// let head = b"GET /chat?room=green+room&user=t%C3%B3m&flag HTTP/1.1\r\nHost: x\r\n\r\n";
    /// let (request, _) = parse_request(head, 1024).unwrap().unwrap();
    /// assert_eq!(request.query_param("room").as_deref(), Some("green room"));
    /// assert_eq!(request.query_param("user").as_deref(), Some("tóm"));
    /// assert_eq!(request.query_param("flag").as_deref(), Some(""));
    /// assert_eq!(request.query_param("nope"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        form_urlencoded::parse(self.query()?.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// All headers, repeated ones included, looked up without regard to case.
    ///
    /// Built on first call: prefer [`header`](Self::header) and the other accessors, which
    /// read the head directly.
    pub fn headers(&self) -> &HeaderMap {
        self.built().headers.get_or_init(|| {
            let mut map = HeaderMap::new();
            self.each_line(|name, value| {
                let name = HeaderName::from_bytes(name);
                let value = HeaderValue::from_bytes(value);
                // `parse_request` checked both by the same rules, so neither fails.
                if let (Ok(name), Ok(value)) = (name, value) {
                    map.append(name, value);
                }
            });
            map
        })
    }

    /// The first `name` header (any case) as text, trimmed; `None` when absent or not visible
    /// ASCII (read [`headers`](Self::headers) for the raw bytes).
    pub fn header(&self, name: &str) -> Option<&str> {
        http_util::first(self.values(name))
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
        http_util::list_elements(self.values("sec-websocket-protocol"))
    }

    /// The extensions the client offers, in order, from every `Sec-WebSocket-Extensions`
    /// header.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidHeader`] when a header breaks the grammar of RFC 6455 §9.1.
    pub fn extensions(&self) -> Result<Vec<Extension>, HandshakeError> {
        let mut out = Vec::new();
        for value in self.values("sec-websocket-extensions") {
            let value = http_util::visible_ascii(value)
                .ok_or(HandshakeError::InvalidHeader("sec-websocket-extensions"))?;
            extension::parse_into(value, &mut out)?;
        }
        Ok(out)
    }

    /// The cookies of every `Cookie` header as `(name, value)` pairs, trimmed, in order
    /// (RFC 6265 §5.4). Values are returned as sent (quotes and percent-encoding kept).
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values("cookie")
            .filter_map(http_util::visible_ascii)
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
    /// case), or, over HTTP/2, it is a CONNECT (or carries a `:protocol`). A server routes the
    /// other requests to plain HTTP handling; for this one,
    /// [`validate_upgrade`](Self::validate_upgrade) decides.
    pub fn is_websocket_upgrade(&self) -> bool {
        http_util::has_token(self.values("upgrade"), "websocket")
            || (self.is_h2() && (self.method == Method::CONNECT || self.has_protocol))
    }

    /// Applies the rules of RFC 6455 §4.2.1 to this request, or over HTTP/2 those of RFC 8441
    /// §4–5 (extended CONNECT).
    ///
    /// # Errors
    ///
    /// Checked in this order, each error with its status in [`HandshakeError::status`]:
    /// - [`NotUpgrade`](HandshakeError::NotUpgrade) (426): not
    ///   [`is_websocket_upgrade`](Self::is_websocket_upgrade);
    /// - [`MethodNotAllowed`](HandshakeError::MethodNotAllowed) (405): method other than GET
    ///   (other than CONNECT over HTTP/2: a GET there cannot switch protocols);
    /// - HTTP/1.x: [`UnsupportedHttpVersion`](HandshakeError::UnsupportedHttpVersion) (400)
    ///   for HTTP/1.0;
    /// - HTTP/2: [`MissingHeader`](HandshakeError::MissingHeader) (400) for a CONNECT without
    ///   `:protocol`, [`UnsupportedProtocol`](HandshakeError::UnsupportedProtocol) (501) for a
    ///   `:protocol` other than `websocket` (any case, as RFC 9110 §7.8 compares protocol
    ///   names), and [`InvalidHeader`](HandshakeError::InvalidHeader) (400) for a
    ///   connection-specific header (`connection`, `upgrade`, `keep-alive`,
    ///   `proxy-connection`, or `te` other than `trailers`: RFC 9113 §8.2.2);
    /// - [`InvalidHeader`](HandshakeError::InvalidHeader) (400) for `transfer-encoding` (any)
    ///   or `content-length` (other than `0`; any over HTTP/2, where the stream's data is the
    ///   connection): a body would be read as frames;
    /// - [`MissingHeader`](HandshakeError::MissingHeader) or
    ///   [`InvalidHeader`](HandshakeError::InvalidHeader) (400) for `host` (exactly one,
    ///   non-empty, no userinfo), then, HTTP/1.x only, `connection` (must list `upgrade`);
    /// - [`UnsupportedVersion`](HandshakeError::UnsupportedVersion) (426):
    ///   `Sec-WebSocket-Version` absent, repeated, or not `13`;
    /// - `MissingHeader`/`InvalidHeader` (400) for `sec-websocket-key` (HTTP/1.x only: exactly
    ///   one, base64 of 16 bytes; over HTTP/2 the key is not used, RFC 8441 §5, and one sent
    ///   anyway is ignored), `sec-websocket-protocol` (tokens), `sec-websocket-extensions`
    ///   (RFC 6455 §9.1 syntax).
    pub fn validate_upgrade(&self) -> Result<(), HandshakeError> {
        if self.validated.get().is_some() {
            return Ok(());
        }
        self.check_upgrade()?;
        let _ = self.validated.set(());
        Ok(())
    }

    /// The rules of both versions, in one order; the version decides only the checks of the
    /// request line and the headers only one version has.
    fn check_upgrade(&self) -> Result<(), HandshakeError> {
        if !self.is_websocket_upgrade() {
            return Err(HandshakeError::NotUpgrade);
        }
        let h2 = self.is_h2();
        if h2 {
            self.check_extended_connect()?;
        } else {
            if self.method != Method::GET {
                return Err(HandshakeError::MethodNotAllowed);
            }
            if self.version != Version::HTTP_11 {
                return Err(HandshakeError::UnsupportedHttpVersion);
            }
        }
        // A body would be read as the client's first frames (RFC 9112 §6.3 frames a request
        // body by these headers): a request that announces one is not a handshake.
        // `Content-Length: 0` announces none, except over HTTP/2, where the stream's data
        // frames, which the length counts, are the connection.
        if self.values("transfer-encoding").next().is_some() {
            return Err(HandshakeError::InvalidHeader("transfer-encoding"));
        }
        if self
            .values("content-length")
            .any(|value| h2 || http_util::trim_ows(value) != b"0")
        {
            return Err(HandshakeError::InvalidHeader("content-length"));
        }
        match http_util::single(self.values("host")) {
            Ok(Some(host)) if is_valid_host(host) => {}
            Ok(None) => return Err(HandshakeError::MissingHeader("host")),
            _ => return Err(HandshakeError::InvalidHeader("host")),
        }
        if !h2 && !http_util::has_token(self.values("connection"), "upgrade") {
            return Err(if self.values("connection").next().is_some() {
                HandshakeError::InvalidHeader("connection")
            } else {
                HandshakeError::MissingHeader("connection")
            });
        }
        if http_util::single(self.values("sec-websocket-version")) != Ok(Some("13")) {
            return Err(HandshakeError::UnsupportedVersion);
        }
        if !h2 {
            match http_util::single(self.values("sec-websocket-key")) {
                Ok(Some(key)) if is_valid_key(key) => {}
                Ok(None) => return Err(HandshakeError::MissingHeader("sec-websocket-key")),
                _ => return Err(HandshakeError::InvalidHeader("sec-websocket-key")),
            }
        }
        let protocols_ok = self
            .values("sec-websocket-protocol")
            .all(|value| http_util::visible_ascii(value).is_some())
            && self.protocols().all(http_util::is_token);
        if !protocols_ok {
            return Err(HandshakeError::InvalidHeader("sec-websocket-protocol"));
        }
        self.extensions()?;
        Ok(())
    }

    /// The request line of an HTTP/2 WebSocket (RFC 8441 §4) and the headers HTTP/2 forbids
    /// (RFC 9113 §8.2.2), which an Upgrade over HTTP/1.1 needs.
    fn check_extended_connect(&self) -> Result<(), HandshakeError> {
        if self.method != Method::CONNECT {
            return Err(HandshakeError::MethodNotAllowed);
        }
        match self.protocol() {
            None => return Err(HandshakeError::MissingHeader(":protocol")),
            Some(protocol) if !protocol.eq_ignore_ascii_case("websocket") => {
                return Err(HandshakeError::UnsupportedProtocol);
            }
            Some(_) => {}
        }
        for name in ["connection", "upgrade", "keep-alive", "proxy-connection"] {
            if self.values(name).next().is_some() {
                return Err(HandshakeError::InvalidHeader(name));
            }
        }
        if self
            .values("te")
            .any(|value| !http_util::trim_ows(value).eq_ignore_ascii_case(b"trailers"))
        {
            return Err(HandshakeError::InvalidHeader("te"));
        }
        Ok(())
    }

    /// Validates the request and builds the `101 Switching Protocols` response that accepts
    /// it, with the subprotocol and extensions the application chose and its extra headers
    /// (see [`accept_response`](super::accept_response)): the bytes a server that writes its
    /// own HTTP/1.1 sends. [`accept_parts`](Self::accept_parts) gives the same answer as an
    /// `http::Response`, for either version.
    ///
    /// # Errors
    ///
    /// Any error of [`validate_upgrade`](Self::validate_upgrade) (answer it with
    /// [`HandshakeError::to_response`]), or [`HandshakeError::InvalidInput`] when `protocol`
    /// was not offered by the client, an extension in `extensions` was not offered, an
    /// argument cannot be sent (see [`accept_response`](super::accept_response)), or the
    /// request came over HTTP/2, whose answer is not HTTP/1.1 bytes.
    pub fn accept(
        &self,
        protocol: Option<&str>,
        extensions: Option<&str>,
        extra_headers: &[HeaderLine<'_>],
    ) -> Result<Vec<u8>, HandshakeError> {
        self.check_choice(protocol, extensions)?;
        if self.is_h2() {
            return Err(HandshakeError::InvalidInput(
                "an http/2 request is answered with accept_parts",
            ));
        }
        let key = self.key().unwrap_or_default();
        server::accept_response(key, protocol, extensions, extra_headers)
    }

    /// Validates the request and builds the response that accepts it, for an HTTP layer that
    /// writes the head itself (hyper): over HTTP/1.1 `101 Switching Protocols` with `Upgrade`,
    /// `Connection` and `Sec-WebSocket-Accept`; over HTTP/2 `200 OK` (RFC 8441 §5). Both carry
    /// the chosen `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` and the extra
    /// headers. The checks are those of [`accept`](Self::accept), to the letter: the same
    /// subprotocol and extensions are accepted or refused whichever version the request came
    /// in.
    ///
    /// ```
    /// use wsworker_proto::handshake::Request;
    ///
    /// let http = http::Request::connect("https://example.com/chat")
    ///     .version(http::Version::HTTP_2)
    ///     .header("sec-websocket-version", "13")
    ///     .header("sec-websocket-protocol", "v1, v2")
    ///     .body(())
    ///     .unwrap();
    /// let request = Request::from_http(&http, Some("websocket"))?;
    /// let response = request.accept_parts(Some("v2"), None, &[("set-cookie", "seen=1")])?;
    /// assert_eq!(response.status(), http::StatusCode::OK);
    /// assert_eq!(response.headers()["sec-websocket-protocol"], "v2");
    /// assert_eq!(response.headers()["set-cookie"], "seen=1");
    /// assert!(!response.headers().contains_key("sec-websocket-accept"));
    /// # Ok::<(), wsworker_proto::HandshakeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`accept`](Self::accept), HTTP/2 excepted; over HTTP/2 the extra headers may not set
    /// the headers HTTP/2 forbids either (`keep-alive`, `proxy-connection`, `te`).
    pub fn accept_parts(
        &self,
        protocol: Option<&str>,
        extensions: Option<&str>,
        extra_headers: &[HeaderLine<'_>],
    ) -> Result<http::Response<()>, HandshakeError> {
        self.check_choice(protocol, extensions)?;
        let key = if self.is_h2() {
            None
        } else {
            Some(self.key().unwrap_or_default())
        };
        server::accept_http(key, protocol, extensions, extra_headers)
    }

    /// What every accepting answer checks first: the request is valid, and the application
    /// chose a subprotocol and extensions the client offered.
    fn check_choice(
        &self,
        protocol: Option<&str>,
        extensions: Option<&str>,
    ) -> Result<(), HandshakeError> {
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
        Ok(())
    }

    /// The raw values of every `name` header (any case), in order. Names were checked to be
    /// valid header names, and a `HeaderName` is the name in lowercase ASCII, so comparing
    /// without regard to ASCII case finds exactly what `HeaderMap::get_all` finds (nothing for
    /// a `name` that is not a valid header name).
    fn values<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s [u8]> + use<'s, 'n> {
        let named = move |line_name: &[u8]| line_name.eq_ignore_ascii_case(name.as_bytes());
        // With the offsets (the handshake's own dozen lookups), straight from them; without,
        // what one parse finds (no allocation unless the header is there).
        let from_lines = self.lines.as_deref().map(|lines| {
            lines
                .iter()
                .filter(move |line| named(self.bytes(line.name)))
                .map(|line| self.bytes(line.value))
        });
        let mut reparsed = Vec::new();
        if from_lines.is_none() {
            self.each_line(|line_name, value| {
                if named(line_name) {
                    reparsed.push(value);
                }
            });
        }
        from_lines.into_iter().flatten().chain(reparsed)
    }

    /// Drops the offsets of the header lines (16 bytes a line), keeping only the head: the
    /// header accessors then parse the head again (with the parser that accepted it: the
    /// same lines, for a few hundred nanoseconds a lookup). For a request kept long, as a
    /// server keeps each open connection's.
    pub fn shrink_to_head(&mut self) {
        self.lines = None;
    }

    /// Calls `f` with the name and value of every header line, in order, as httparse
    /// delimits them: from the offsets, or by parsing the head again without them.
    fn each_line<'s>(&'s self, mut f: impl FnMut(&'s [u8], &'s [u8])) {
        if let Some(lines) = &self.lines {
            for line in lines {
                f(self.bytes(line.name), self.bytes(line.value));
            }
            return;
        }
        // Uninitialized slots: the parser writes those it fills, so no 2 KiB of empty
        // headers is written first on every lookup.
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut []);
        // It parsed before, byte for byte the same, so it parses again.
        if parsed
            .parse_with_uninit_headers(&self.head, &mut headers)
            .is_ok()
        {
            for header in parsed.headers.iter() {
                f(header.name.as_bytes(), header.value);
            }
        }
    }

    fn built(&self) -> &Built {
        self.built.get_or_init(Box::default)
    }

    /// The bytes of the head under `span`. Spans are made inside the head, so the empty
    /// fallback is never taken; it only spares a panic path.
    fn bytes(&self, span: Span) -> &[u8] {
        self.head.get(span.range()).unwrap_or_default()
    }
}

impl PartialEq for Request {
    fn eq(&self, other: &Self) -> bool {
        // Everything else is read from the head; the caches are not content.
        self.method == other.method && self.version == other.version && self.head == other.head
    }
}

impl Eq for Request {}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// The header lines as `name: "value"` pairs, in order.
        struct Lines<'a>(&'a Request);
        /// A value in quotes, bytes outside printable ASCII escaped.
        struct Value<'a>(&'a [u8]);
        impl fmt::Debug for Lines<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut map = f.debug_map();
                self.0.each_line(|name, value| {
                    map.entry(&String::from_utf8_lossy(name), &Value(value));
                });
                map.finish()
            }
        }
        impl fmt::Debug for Value<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "\"{}\"", self.0.escape_ascii())
            }
        }
        let mut out = f.debug_struct("Request");
        out.field("method", &self.method)
            .field("target", &self.target())
            .field("version", &self.version);
        if let Some(protocol) = self.protocol() {
            out.field("protocol", &protocol);
        }
        out.field("headers", &Lines(self)).finish()
    }
}

/// The path and query of a target that parses as a [`Uri`], exactly as [`Uri::path`] and
/// [`Uri::query`] give them, without building the URI:
/// - origin-form (`/p?q`) and absolute-form (`http://h/p?q`): the path up to the first `?`,
///   the query after it, both ending at a `#` (`http` drops fragments); an absolute-form path
///   is `/` when empty (`http://h`, `http://h?q`);
/// - asterisk-form (`*`, for OPTIONS): path `*`;
/// - authority-form (`h:443`, for CONNECT): empty path.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let path_and_query = if target.starts_with('/') {
        target
    } else if target == "*" {
        return ("*", None);
    } else if let Some(scheme_end) = target.find("://") {
        // A scheme holds no `/`, so this is the first `://`; the authority runs to the first
        // `/`, `?` or `#`.
        let authority = target.get(scheme_end + 3..).unwrap_or_default();
        let end = authority.find(['/', '?', '#']).unwrap_or(authority.len());
        authority.get(end..).unwrap_or_default()
    } else {
        // Neither `/` nor `://`: the whole target is an authority.
        return ("", None);
    };
    let without_fragment = path_and_query
        .split_once('#')
        .map_or(path_and_query, |(before, _)| before);
    let (path, query) = match without_fragment.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (without_fragment, None),
    };
    (if path.is_empty() { "/" } else { path }, query)
}

/// Whether the form of `target` (a valid URI) is one `method` may use (RFC 9112 §3.2):
/// origin-form (`/p?q`) and absolute-form (`http://h/p`) for any method, the asterisk-form
/// (`*`) for OPTIONS only, the authority-form (`h:443`) for CONNECT only. Anything else is an
/// invalid request line, such as `GET * HTTP/1.1`, which has no resource to upgrade.
fn target_fits(method: &Method, target: &str) -> bool {
    // As `split_target` tells the forms apart.
    if target.starts_with('/') || target.contains("://") {
        true
    } else if target == "*" {
        method == Method::OPTIONS
    } else {
        method == Method::CONNECT
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
    fn a_validation_is_remembered_only_when_it_passes() {
        let valid = parse(RFC_REQUEST);
        assert!(valid.validated.get().is_none());
        assert_eq!(valid.validate_upgrade(), Ok(()));
        assert!(valid.validated.get().is_some(), "remembered");
        assert!(valid.clone().validated.get().is_some(), "clones keep it");
        let response = valid.accept(None, None, &[]).unwrap();
        assert_eq!(
            response,
            parse(RFC_REQUEST).accept(None, None, &[]).unwrap()
        );

        let invalid = parse(&with(
            "sec-websocket-version",
            Some("Sec-WebSocket-Version: 8"),
        ));
        for _ in 0..2 {
            assert_eq!(
                invalid.validate_upgrade(),
                Err(HandshakeError::UnsupportedVersion)
            );
            assert!(
                invalid.validated.get().is_none(),
                "a failure is not remembered"
            );
        }
        assert_eq!(
            invalid.accept(None, None, &[]),
            Err(HandshakeError::UnsupportedVersion),
            "accept checks what failed"
        );
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
        fn check<T: Clone + Send + Sync + fmt::Debug + Eq + 'static>() {}
        check::<Request>();
    }

    /// What a parsed request keeps: its inline size, and on the heap one copy of the head and
    /// 16 bytes a header line (none after `shrink_to_head`), nothing else until `headers()`
    /// or `uri()` is called.
    #[test]
    fn parsed_request_keeps_the_head_and_spans_only() {
        assert!(
            size_of::<Request>() <= 88,
            "size_of::<Request>() = {}",
            size_of::<Request>()
        );
        assert_eq!(size_of::<Line>(), 16);
        let mut request = parse(RFC_REQUEST);
        // The head is a copy of exactly the bytes the head took...
        assert_eq!(&request.head[..], RFC_REQUEST);
        assert_eq!(request.lines.as_ref().map(|lines| lines.len()), Some(7));
        request.shrink_to_head();
        assert!(request.lines.is_none());
        // ...and not a view of the caller's buffer, which may be much larger.
        let mut buf = RFC_REQUEST.to_vec();
        buf.extend_from_slice(&[0u8; 4096]);
        let (request, _) = parse_request(&buf, 8192).unwrap().unwrap();
        assert_eq!(request.head.len(), RFC_REQUEST.len());
        assert!(!request.head.as_ptr_range().contains(&buf.as_ptr()));
    }

    /// Without its offsets a request answers every accessor exactly as with them: the head
    /// is parsed again by the same parser.
    #[test]
    fn a_request_shrunk_to_its_head_reads_the_same() {
        let heads: [&[u8]; 3] = [
            RFC_REQUEST,
            b"GET /a?b=c HTTP/1.1\r\nHost: x\r\nCookie: a=1; b=2\r\ncookie:  c=3 \r\n\
              Sec-WebSocket-Protocol: p1\r\nsec-websocket-protocol:p2 ,  p3\r\n\
              X-Empty:\r\nX-Tab:\tv\t\r\n\r\n",
            b"GET / HTTP/1.0\nHost: y\nOrigin: http://o\n\n",
        ];
        for head in heads {
            let full = parse(head);
            let mut shrunk = full.clone();
            shrunk.shrink_to_head();
            assert!(shrunk.lines.is_none());
            for name in ["host", "cookie", "origin", "x-empty", "x-tab", "absent"] {
                assert_eq!(full.header(name), shrunk.header(name), "{name}");
                assert_eq!(
                    full.values(name).collect::<Vec<_>>(),
                    shrunk.values(name).collect::<Vec<_>>(),
                    "{name}"
                );
            }
            assert!(full.protocols().eq(shrunk.protocols()));
            assert!(full.cookies().eq(shrunk.cookies()));
            assert_eq!(full.headers(), shrunk.headers());
            assert_eq!(format!("{full:?}"), format!("{shrunk:?}"));
            assert_eq!(full, shrunk);
        }
    }

    #[test]
    fn accessors_do_not_build_the_header_map_or_the_uri() {
        let request = parse(RFC_REQUEST);
        let untouched = |request: &Request| request.built.get().is_none();
        assert_eq!(request.header("Sec-WebSocket-Version"), Some("13"));
        assert_eq!(request.protocols().count(), 2);
        assert_eq!(request.validate_upgrade(), Ok(()));
        assert!(request.is_websocket_upgrade());
        let _ = (
            request.host(),
            request.origin(),
            request.key(),
            request.cookie("a"),
        );
        let _ = (request.extensions(), request.cookies().count());
        let _ = (request.method(), request.version(), request.target());
        let _ = (request.path(), request.query());
        assert!(request.accept(Some("chat"), None, &[]).is_ok());
        let _ = format!("{request:?}");
        assert!(untouched(&request));
        assert_eq!(request.headers().len(), 7);
        assert!(request.built().headers.get().is_some());
        assert!(request.built().uri.get().is_none());
        assert_eq!(request.uri().path(), "/chat");
        assert!(request.built().uri.get().is_some());
    }

    /// `uri()` and `headers()` give the parts of the head, absolute-form targets included.
    #[test]
    fn uri_and_header_values_are_the_heads() {
        let request =
            parse(b"GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nX-Long: some value\r\n\r\n");
        let uri = request.uri();
        assert_eq!(uri.path(), "/a/b");
        assert_eq!(uri.query(), Some("c=d"));
        assert_eq!(uri.authority().unwrap().as_str(), "example.com:8080");
        assert_eq!(request.headers().get("x-long").unwrap(), "some value");
    }

    #[test]
    fn a_target_form_that_does_not_fit_the_method_is_malformed() {
        let malformed = HandshakeError::Malformed("request target form does not fit the method");
        for request in [
            "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
            "HEAD * HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET example.com:80 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "GET example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "OPTIONS example.com:80 HTTP/1.1\r\n\r\n",
            "CONNECT * HTTP/1.1\r\n\r\n",
        ] {
            let err = parse_request(request.as_bytes(), 8192).unwrap_err();
            assert_eq!(err, malformed, "{request:?}");
            assert!(
                err.to_response()
                    .starts_with(b"HTTP/1.1 400 Bad Request\r\n")
            );
        }
        for request in [
            "OPTIONS * HTTP/1.1\r\n\r\n",
            "CONNECT example.com:443 HTTP/1.1\r\n\r\n",
            "GET http://example.com:80/chat HTTP/1.1\r\n\r\n",
            "GET /chat HTTP/1.1\r\n\r\n",
        ] {
            assert!(parse_request(request.as_bytes(), 8192).is_ok_and(|r| r.is_some()));
        }
    }

    #[test]
    fn an_upgrade_that_announces_a_body_is_refused() {
        for (line, header) in [
            ("Content-Length: 5", "content-length"),
            ("Content-Length: 00", "content-length"),
            ("Transfer-Encoding: chunked", "transfer-encoding"),
            ("Transfer-Encoding: identity", "transfer-encoding"),
        ] {
            let bytes = with(line.split(':').next().unwrap(), Some(line));
            assert_eq!(
                validate(&bytes),
                Err(HandshakeError::InvalidHeader(header)),
                "{line}"
            );
            let response = HandshakeError::InvalidHeader(header).to_response();
            assert!(response.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        }
        // Two lengths, one of them not 0.
        let two = with("X-None", Some("Content-Length: 0\r\nContent-Length: 1"));
        assert_eq!(
            validate(&two),
            Err(HandshakeError::InvalidHeader("content-length"))
        );
        // No body announced: still a handshake.
        assert_eq!(
            validate(&with("Content-Length", Some("Content-Length: 0"))),
            Ok(())
        );
    }

    /// `path()` and `query()`, read from the target text, agree with the `Uri` they used to
    /// come from, for every form of target.
    #[test]
    fn path_and_query_match_the_uri_for_every_target_form() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            // origin-form
            ("/", "/", None),
            ("/chat", "/chat", None),
            ("/a/b%20c?x=1&y=2", "/a/b%20c", Some("x=1&y=2")),
            ("/?", "/", Some("")),
            ("/a?b?c", "/a", Some("b?c")),
            ("/a#frag", "/a", None),
            ("/a?q#frag?x", "/a", Some("q")),
            ("//double", "//double", None),
            // absolute-form
            ("http://h:1/p?q", "/p", Some("q")),
            ("HTTP://h/p", "/p", None),
            ("https://h", "/", None),
            ("ws://h?q=1", "/", Some("q=1")),
            ("http://h#f", "/", None),
            ("foo+bar://user@h:9/x/y?z#w", "/x/y", Some("z")),
            ("http://[::1]:9001/chat?room=1", "/chat", Some("room=1")),
            // asterisk-form and authority-form
            ("*", "*", None),
            ("example.com:443", "", None),
            ("h", "", None),
        ];
        for &(target, path, query) in cases {
            let method = match target {
                "*" => "OPTIONS",
                _ if path.is_empty() => "CONNECT",
                _ => "GET",
            };
            let bytes = format!("{method} {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let request = parse(bytes.as_bytes());
            assert_eq!(request.target(), target);
            assert_eq!((request.path(), request.query()), (path, query), "{target}");
            let uri = request.uri();
            assert_eq!((uri.path(), uri.query()), (path, query), "uri of {target}");
        }
    }

    proptest::proptest! {
        #[test]
        fn path_and_query_agree_with_the_uri(
            target in "(/|\\*|[a-z+]{1,5}://|[a-zA-Z0-9.\\[\\]:@]{0,6})[a-zA-Z0-9/?#:@%.*\\[\\]=&+~-]{0,16}"
        ) {
            // Each form with a method it fits.
            for method in ["GET", "OPTIONS", "CONNECT"] {
                let bytes = format!("{method} {target} HTTP/1.1\r\n\r\n");
                if let Ok(Some((request, _))) = parse_request(bytes.as_bytes(), 8192) {
                    let uri = request.uri();
                    proptest::prop_assert_eq!(request.path(), uri.path());
                    proptest::prop_assert_eq!(request.query(), uri.query());
                }
            }
        }
    }

    /// Looking up names in the spans finds what `HeaderMap` finds, for any name.
    #[test]
    fn header_lookups_agree_with_the_header_map() {
        let request = parse(
            b"GET / HTTP/1.1\r\nHost: h\r\nX-A:  1 \r\nx-a: 2\r\nX-Obs: caf\xc3\xa9\r\n\
              X-Empty:\r\nX-Tab: \ta\tb\t\r\nx_under: u\r\nX-Obs: later\r\n\r\n",
        );
        let names = [
            "x-a",
            "X-A",
            "X-a",
            "x-obs",
            "x-empty",
            "X-TAB",
            "x_under",
            "X_UNDER",
            "host",
            "missing",
            "",
            "x a",
            "x-a:",
            "x-\u{e9}",
            "X-\u{212a}",
        ];
        for name in names {
            let expected = request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches([' ', '\t']));
            assert_eq!(request.header(name), expected, "{name:?}");
            let all: Vec<&[u8]> = request
                .headers()
                .get_all(name)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            assert_eq!(request.values(name).collect::<Vec<_>>(), all, "{name:?}");
        }
        assert_eq!(request.header("x-obs"), None);
        assert_eq!(request.header("x-tab"), Some("a\tb"));
        assert_eq!(request.header("x-empty"), Some(""));
    }

    /// Matching names without regard to ASCII case is what `HeaderName` does: every byte it
    /// accepts is kept, ASCII letters in lowercase.
    #[test]
    fn header_names_normalise_to_ascii_lowercase() {
        for b in 0..=u8::MAX {
            if let Ok(name) = HeaderName::from_bytes(&[b'x', b]) {
                assert_eq!(
                    name.as_str().as_bytes(),
                    [b'x', b.to_ascii_lowercase()],
                    "{b:#04x}"
                );
            }
        }
    }

    /// Lines a `HeaderMap` refuses still fail the parse, with the same errors.
    #[test]
    fn invalid_header_bytes_fail_as_before() {
        for b in 0..=u8::MAX {
            let bytes = [b"GET / HTTP/1.1\r\nX: a".as_slice(), &[b], b"b\r\n\r\n"].concat();
            let old = old_parse(&bytes);
            assert_eq!(
                parse_request(&bytes, 8192).map(|r| r.map(|(_, n)| n)),
                old,
                "{b:#04x}"
            );
            let bytes = [b"GET / HTTP/1.1\r\nX".as_slice(), &[b], b"y: v\r\n\r\n"].concat();
            let old = old_parse(&bytes);
            assert_eq!(
                parse_request(&bytes, 8192).map(|r| r.map(|(_, n)| n)),
                old,
                "{b:#04x}"
            );
        }
    }

    /// The checks `parse_request` made before it kept spans: httparse, then a `HeaderMap`.
    fn old_parse(bytes: &[u8]) -> Result<Option<usize>, HandshakeError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(bytes).map_err(http_util::parse_error)? {
            httparse::Status::Complete(len) => {
                http_util::header_map(parsed.headers)?;
                Ok(Some(len))
            }
            httparse::Status::Partial => Ok(None),
        }
    }

    #[test]
    fn equality_is_by_content_not_by_caches() {
        let a = parse(RFC_REQUEST);
        let b = parse(RFC_REQUEST);
        let _ = (a.headers(), a.uri());
        assert_eq!(a, b);
        assert_eq!(a.clone(), b);
        assert_eq!(a.clone().headers().len(), 7);
        let other = parse(&with("origin", Some("Origin: http://other.example")));
        assert_ne!(a, other);
    }

    #[test]
    fn debug_shows_the_request_not_the_spans() {
        let request = parse(b"GET /p?q HTTP/1.1\r\nHost: h\r\nX-Bin: a\xffb\"c\r\n\r\n");
        let text = format!("{request:?}");
        assert_eq!(
            text,
            "Request { method: GET, target: \"/p?q\", version: HTTP/1.1, \
             headers: {\"Host\": \"h\", \"X-Bin\": \"a\\xffb\\\"c\"} }"
        );
    }
}

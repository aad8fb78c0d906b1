//! The server side: [`ServerHandshake`] gathers a request that arrives in pieces, and
//! [`accept_response`] / [`reject_response`] build the bytes that answer it (RFC 6455 §4.2.2).

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, HeaderValue, UPGRADE};
use http::{StatusCode, Version};

use super::accept_key::accept_key;
use super::extension::Extension;
use super::http_util::{self, HeaderLine};
use super::request::{MAX_HEAD, Request, parse_request};
use super::{DEFAULT_MAX_HEADER_SIZE, HandshakeError};

/// Headers [`accept_response`] writes itself, so `extra_headers` may not set them.
const ACCEPT_OWNED: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// The connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2) that [`ACCEPT_OWNED`]
/// does not hold already: an HTTP/2 answer's extra headers may not set them either.
const H2_FORBIDDEN: &[&str] = &["keep-alive", "proxy-connection", "te"];

/// Headers [`reject_response`] writes itself, so `extra_headers` may not set them.
const REJECT_OWNED: &[&str] = &["content-length", "transfer-encoding", "connection"];

/// Gathers the bytes of an opening request until its head is complete.
///
/// Feed it what the socket returns, with [`receive`](Self::receive) or by reading into
/// [`recv_buffer_mut`](Self::recv_buffer_mut) and calling [`poll_request`](Self::poll_request).
/// Once the head is complete it yields the [`Request`] and the bytes that followed it in the
/// buffer (the client's first frames, or an HTTP body): hand those to the connection, they are
/// part of the stream. The buffer is then empty and the next request can be read, for plain
/// HTTP keep-alive.
///
/// Each byte is looked at once however the head arrives: the parser runs when the new bytes
/// may end the head (a line feed followed by an empty line), not on every read, so a head
/// sent a byte per segment costs one parse rather than one per byte. (It also runs at once
/// when the method holds a byte no method may hold, so that a TLS hello or another protocol
/// is refused on its first bytes.)
///
/// ```
/// use wsworker_proto::handshake::ServerHandshake;
///
/// let mut handshake = ServerHandshake::new();
/// assert!(handshake.receive(b"GET /chat HTTP/1.1\r\nHost: example.com\r\n").unwrap().is_none());
/// let (request, rest) = handshake
///     .receive(b"Upgrade: websocket\r\nConnection: Upgrade\r\n\
///                Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
///                Sec-WebSocket-Version: 13\r\n\r\n\x88\x80")
///     .unwrap()
///     .unwrap();
/// assert_eq!(request.path(), "/chat");
/// assert_eq!(&rest[..], b"\x88\x80");
/// let response = request.accept(None, None, &[]).unwrap();
/// assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
/// ```
#[derive(Debug, Clone)]
pub struct ServerHandshake {
    buf: BytesMut,
    max_size: usize,
    scan: HeadScan,
    /// How many times the parser ran: the tests' evidence that a head is parsed once.
    #[cfg(test)]
    parses: usize,
}

/// How far the search for the end of the head has come in the buffer.
#[derive(Debug, Clone, Copy, Default)]
struct HeadScan {
    /// Bytes of the buffer searched already.
    scanned: usize,
    /// Where the request line starts, once a byte other than CR or LF has arrived: empty
    /// lines before a request are ignored (RFC 9112 §2.2, as the parser does), so they
    /// cannot end the head.
    start: Option<usize>,
    /// The method has ended (a byte other than a token's came after it).
    past_method: bool,
}

impl HeadScan {
    /// Looks at the bytes of `head` after those scanned already: whether the parser should
    /// run now, because the head may end in them or the method holds a byte no method may
    /// hold (the parser then refuses the request at once rather than after a timeout).
    fn advance(&mut self, head: &[u8]) -> bool {
        let from = self.scanned.min(head.len());
        self.scanned = head.len();
        let start = match self.start {
            Some(start) => start,
            None => {
                let new = head.get(from..).unwrap_or_default();
                let Some(i) = new.iter().position(|b| !matches!(b, b'\r' | b'\n')) else {
                    return false;
                };
                self.start = Some(from + i);
                from + i
            }
        };
        if !self.past_method {
            let method = head.get(from.max(start)..).unwrap_or_default();
            let Some(i) = method.iter().position(|b| !http_util::is_tchar(*b)) else {
                return false;
            };
            self.past_method = true;
            if method.get(i) != Some(&b' ') {
                return true;
            }
        }
        // The head ends with `\n\n` or `\n\r\n` (the parser takes bare line feeds too): the
        // two bytes before the new ones may hold the start of one that ends in them.
        let window = head
            .get(from.saturating_sub(2).max(start)..)
            .unwrap_or_default();
        ends_head(window)
    }
}

/// Whether `bytes` hold the end of a head: a line feed, then an empty line.
fn ends_head(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .any(|(i, _)| match i.checked_sub(1).and_then(|j| bytes.get(j)) {
            Some(b'\n') => true,
            Some(b'\r') => i.checked_sub(2).and_then(|j| bytes.get(j)) == Some(&b'\n'),
            _ => false,
        })
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A handshake that accepts request heads up to [`DEFAULT_MAX_HEADER_SIZE`] bytes.
    pub fn new() -> Self {
        Self::with_max_size(DEFAULT_MAX_HEADER_SIZE)
    }

    /// A handshake that accepts request heads up to `max_size` bytes.
    pub fn with_max_size(max_size: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_size,
            scan: HeadScan::default(),
            #[cfg(test)]
            parses: 0,
        }
    }

    /// The limit on the request head, in bytes.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The buffer to read socket bytes into directly; call [`poll_request`](Self::poll_request)
    /// after each read. Only append to it: the bytes in it were searched already.
    pub fn recv_buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends `data` to the buffer and polls for the request.
    ///
    /// # Errors
    ///
    /// As [`poll_request`](Self::poll_request).
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<(Request, Bytes)>, HandshakeError> {
        self.buf.extend_from_slice(data);
        self.poll_request()
    }

    /// The request, once its head is complete, with the bytes that followed it; `Ok(None)`
    /// while more bytes are needed.
    ///
    /// # Errors
    ///
    /// As [`parse_request`]: [`HandshakeError::TooLarge`],
    /// [`TooManyHeaders`](HandshakeError::TooManyHeaders) (431) or
    /// [`Malformed`](HandshakeError::Malformed) (400). The WebSocket rules are not checked
    /// here: see [`Request::validate_upgrade`]. After an error the handshake is over; answer it
    /// with [`HandshakeError::to_response`] and close.
    pub fn poll_request(&mut self) -> Result<Option<(Request, Bytes)>, HandshakeError> {
        let max_size = self.max_size.min(MAX_HEAD);
        if self.scan.scanned > self.buf.len() {
            // The caller took bytes out after all: search it again.
            self.scan = HeadScan::default();
        }
        if !self.scan.advance(http_util::limited(&self.buf, max_size)) {
            return http_util::partial(&self.buf, max_size);
        }
        #[cfg(test)]
        {
            self.parses += 1;
        }
        let Some((request, len)) = parse_request(&self.buf, max_size)? else {
            return Ok(None);
        };
        // `len` <= `self.buf.len()`: it counts bytes of a prefix the parser read.
        let _head = self.buf.split_to(len);
        // The next request (plain HTTP keep-alive) starts in an empty buffer.
        self.scan = HeadScan::default();
        Ok(Some((request, self.buf.split().freeze())))
    }
}

/// Builds the `101 Switching Protocols` response to a request whose `Sec-WebSocket-Key` is
/// `key` (the header text), selecting `protocol` and `extensions` (a
/// `Sec-WebSocket-Extensions` value) when given, followed by `extra_headers` (such as
/// `Set-Cookie`):
///
/// ```text
/// HTTP/1.1 101 Switching Protocols\r\n
/// Upgrade: websocket\r\n
/// Connection: Upgrade\r\n
/// Sec-WebSocket-Accept: {accept_key(key)}\r\n
/// [Sec-WebSocket-Protocol: {protocol}\r\n]
/// [Sec-WebSocket-Extensions: {extensions}\r\n]
/// [{extra headers}\r\n]
/// \r\n
/// ```
///
/// This does not check the request: prefer [`Request::accept`], which validates it and checks
/// that the protocol and extensions were offered.
///
/// # Errors
///
/// [`HandshakeError::InvalidInput`] when `protocol` is not a token, `extensions` is not valid
/// RFC 6455 §9.1 syntax, an extra header name is not a token or its value holds a control
/// character (CR or LF would inject headers), or an extra header is one this function writes.
pub fn accept_response(
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[HeaderLine<'_>],
) -> Result<Vec<u8>, HandshakeError> {
    check_accept_input(protocol, extensions, extra_headers, ACCEPT_OWNED)?;
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    http_util::write_header(&mut out, "Upgrade", "websocket");
    http_util::write_header(&mut out, "Connection", "Upgrade");
    http_util::write_header(
        &mut out,
        "Sec-WebSocket-Accept",
        &accept_key(key.as_bytes()),
    );
    if let Some(protocol) = protocol {
        http_util::write_header(&mut out, "Sec-WebSocket-Protocol", protocol);
    }
    if let Some(extensions) = extensions.filter(|e| !e.trim().is_empty()) {
        http_util::write_header(&mut out, "Sec-WebSocket-Extensions", extensions);
    }
    for (name, value) in extra_headers {
        http_util::write_header(&mut out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Checks what the application put in an accepting answer, whichever its form: `protocol` a
/// token, `extensions` valid RFC 6455 §9.1 syntax, the extra headers sendable and none of
/// `reserved`.
fn check_accept_input(
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[HeaderLine<'_>],
    reserved: &[&'static str],
) -> Result<(), HandshakeError> {
    if protocol.is_some_and(|protocol| !http_util::is_token(protocol)) {
        return Err(HandshakeError::InvalidInput("subprotocol is not a token"));
    }
    if let Some(extensions) = extensions {
        http_util::check_header("Sec-WebSocket-Extensions", extensions, &[])?;
        Extension::parse_list(extensions)
            .map_err(|_| HandshakeError::InvalidInput("invalid extensions syntax"))?;
    }
    for (name, value) in extra_headers {
        http_util::check_header(name, value, reserved)?;
    }
    Ok(())
}

/// The answer of [`accept_response`] as an `http::Response`, for
/// [`Request::accept_parts`]: with the `key` of an HTTP/1.1 upgrade, `101 Switching Protocols`
/// with `Upgrade`, `Connection` and `Sec-WebSocket-Accept`; without one (an HTTP/2 extended
/// CONNECT, RFC 8441 §5), `200 OK`. Then the chosen subprotocol and extensions and the extra
/// headers, checked as [`accept_response`] checks them (over HTTP/2, the headers it forbids
/// refused too).
pub(crate) fn accept_http(
    key: Option<&str>,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[HeaderLine<'_>],
) -> Result<http::Response<()>, HandshakeError> {
    check_accept_input(protocol, extensions, extra_headers, ACCEPT_OWNED)?;
    if key.is_none() {
        for (name, value) in extra_headers {
            http_util::check_header(name, value, H2_FORBIDDEN)?;
        }
    }
    let mut response = http::Response::new(());
    let headers = response.headers_mut();
    if let Some(key) = key {
        headers.append(UPGRADE, HeaderValue::from_static("websocket"));
        headers.append(CONNECTION, HeaderValue::from_static("Upgrade"));
        let accept = accept_key(key.as_bytes());
        http_util::append_header(headers, "sec-websocket-accept", &accept)?;
    }
    if let Some(protocol) = protocol {
        http_util::append_header(headers, "sec-websocket-protocol", protocol)?;
    }
    if let Some(extensions) = extensions.filter(|e| !e.trim().is_empty()) {
        http_util::append_header(headers, "sec-websocket-extensions", extensions)?;
    }
    for (name, value) in extra_headers {
        http_util::append_header(headers, name, value)?;
    }
    if key.is_some() {
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *response.version_mut() = Version::HTTP_11;
    } else {
        *response.status_mut() = StatusCode::OK;
        *response.version_mut() = Version::HTTP_2;
    }
    Ok(response)
}

/// Builds a response that refuses a handshake (or answers a plain HTTP request) and closes the
/// connection: the status line with its standard reason phrase, `extra_headers`,
/// `Content-Type: text/plain; charset=utf-8` unless `extra_headers` sets one,
/// `Content-Length`, `Connection: close`, and `body`.
///
/// For a request that failed [`Request::validate_upgrade`], use
/// [`HandshakeError::to_response`], which adds the headers its status requires.
///
/// # Errors
///
/// [`HandshakeError::InvalidInput`] when `status` is not in 200..=599, a header name is not a
/// token, a value holds a control character, or a header is one this function writes
/// (`Content-Length`, `Transfer-Encoding`, `Connection`).
pub fn reject_response(
    status: u16,
    extra_headers: &[HeaderLine<'_>],
    body: &[u8],
) -> Result<Vec<u8>, HandshakeError> {
    if !(200..=599).contains(&status) {
        return Err(HandshakeError::InvalidInput(
            "rejection status must be in 200..=599",
        ));
    }
    for (name, value) in extra_headers {
        http_util::check_header(name, value, REJECT_OWNED)?;
    }
    Ok(http_util::write_rejection(
        status,
        extra_headers,
        "close",
        body,
    ))
}

/// The head of a response built here ([`reject_response`], [`HandshakeError::to_response`]),
/// without its body: the answer to a `HEAD` request, whatever the status, whose
/// `Content-Length` is still the length of the body a `GET` would get (RFC 9110 §9.3.2 and
/// §8.6).
///
/// ```
/// use wsworker_proto::handshake::{reject_response, response_head};
///
/// let response = reject_response(200, &[], b"hello\n").unwrap();
/// assert!(response_head(&response).ends_with(b"Content-Length: 6\r\nConnection: close\r\n\r\n"));
/// ```
pub fn response_head(response: &[u8]) -> &[u8] {
    // A head built here ends at its first empty line (header values never hold a line end).
    response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response, |at| &response[..at + 4])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::handshake::RFC_REQUEST;

    /// The response of RFC 6455 §1.3.
    const RFC_RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\r\n";

    fn text(bytes: &[u8]) -> &str {
        std::str::from_utf8(bytes).unwrap()
    }

    #[test]
    fn rfc_6455_example_exchange_gives_the_rfc_response() {
        let mut handshake = ServerHandshake::new();
        let (request, rest) = handshake.receive(RFC_REQUEST).unwrap().unwrap();
        assert!(rest.is_empty());
        let response = request.accept(Some("chat"), None, &[]).unwrap();
        assert_eq!(text(&response), text(RFC_RESPONSE));
        let direct = accept_response("dGhlIHNhbXBsZSBub25jZQ==", Some("chat"), None, &[]).unwrap();
        assert_eq!(direct, RFC_RESPONSE);
    }

    #[test]
    fn request_arriving_byte_by_byte_is_assembled() {
        let mut handshake = ServerHandshake::new();
        let (last, head) = RFC_REQUEST.split_last().unwrap();
        for byte in head {
            assert_eq!(handshake.receive(&[*byte]), Ok(None));
        }
        let (request, rest) = handshake.receive(&[*last]).unwrap().unwrap();
        assert_eq!(request.key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(rest.is_empty());
    }

    #[test]
    fn a_head_fed_byte_by_byte_is_parsed_once_as_if_fed_at_once() {
        let frame = [0x81u8, 0x80, 1, 2, 3, 4];
        let input = [RFC_REQUEST, &frame[..]].concat();
        let (whole, whole_rest) = ServerHandshake::new().receive(&input).unwrap().unwrap();
        let mut handshake = ServerHandshake::new();
        let mut got = None;
        for (i, byte) in input.iter().enumerate() {
            if let Some((request, rest)) = handshake.receive(&[*byte]).unwrap() {
                got = Some((request, [&rest[..], &input[i + 1..]].concat()));
                break;
            }
        }
        let (request, rest) = got.unwrap();
        assert_eq!(handshake.parses, 1);
        assert_eq!(request, whole);
        assert_eq!(rest, whole_rest);
        assert_eq!(rest, frame);
    }

    #[test]
    fn the_end_of_the_head_split_at_every_offset_is_found() {
        // The end of the head in every position of a two-read split, for each line ending
        // the parser takes.
        for input in [
            RFC_REQUEST,
            b"GET / HTTP/1.1\nHost: h\n\n".as_slice(),
            b"GET / HTTP/1.1\r\nHost: h\n\r\n".as_slice(),
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n".as_slice(),
        ] {
            let (expected, _) = parse_request(input, DEFAULT_MAX_HEADER_SIZE)
                .unwrap()
                .unwrap();
            for split in 0..=input.len() {
                let mut handshake = ServerHandshake::new();
                let first = handshake.receive(&input[..split]).unwrap();
                let (request, rest) = match first {
                    Some(done) => {
                        assert_eq!(split, input.len());
                        done
                    }
                    None => handshake.receive(&input[split..]).unwrap().unwrap(),
                };
                assert_eq!(request, expected, "split at {split}");
                assert!(rest.is_empty());
                assert_eq!(handshake.parses, 1, "split at {split}");
            }
        }
    }

    #[test]
    fn empty_lines_before_the_request_do_not_end_it() {
        let mut handshake = ServerHandshake::new();
        for _ in 0..100 {
            assert_eq!(handshake.receive(b"\r\n"), Ok(None));
        }
        assert_eq!(handshake.receive(b"\n\n"), Ok(None));
        assert_eq!(handshake.parses, 0);
        let (request, _) = handshake.receive(RFC_REQUEST).unwrap().unwrap();
        assert_eq!(request.path(), "/chat");
    }

    #[test]
    fn a_head_that_never_ends_is_too_large_without_a_parse() {
        let mut handshake = ServerHandshake::with_max_size(1024);
        assert_eq!(handshake.receive(b"GET / HTTP/1.1\r\n"), Ok(None));
        let mut result = Ok(None);
        for _ in 0..1024 {
            result = handshake.receive(b"a");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(HandshakeError::TooLarge { max: 1024 }));
        assert_eq!(handshake.parses, 0);
    }

    #[test]
    fn bytes_after_the_request_are_kept() {
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut handshake = ServerHandshake::new();
        let split = RFC_REQUEST.len() - 3;
        assert_eq!(handshake.receive(&RFC_REQUEST[..split]), Ok(None));
        let tail = [&RFC_REQUEST[split..], &frame[..]].concat();
        let (_, rest) = handshake.receive(&tail).unwrap().unwrap();
        assert_eq!(&rest[..], frame);
        assert!(handshake.recv_buffer_mut().is_empty());
    }

    #[test]
    fn recv_buffer_is_polled_in_place() {
        let mut handshake = ServerHandshake::new();
        handshake.recv_buffer_mut().extend_from_slice(RFC_REQUEST);
        handshake.recv_buffer_mut().extend_from_slice(b"GET");
        let (request, rest) = handshake.poll_request().unwrap().unwrap();
        assert_eq!(request.path(), "/chat");
        assert_eq!(&rest[..], b"GET");
    }

    #[test]
    fn pipelined_plain_requests_are_read_one_after_another() {
        let mut handshake = ServerHandshake::new();
        let two = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
        let (first, rest) = handshake.receive(two).unwrap().unwrap();
        assert_eq!(first.path(), "/a");
        let (second, rest) = handshake.receive(&rest).unwrap().unwrap();
        assert_eq!(second.path(), "/b");
        assert!(rest.is_empty());
    }

    #[test]
    fn handshake_over_the_limit_is_too_large() {
        let mut handshake = ServerHandshake::with_max_size(64);
        assert_eq!(handshake.receive(&RFC_REQUEST[..63]), Ok(None));
        assert_eq!(
            handshake.receive(&RFC_REQUEST[63..64]),
            Err(HandshakeError::TooLarge { max: 64 })
        );
        let mut handshake = ServerHandshake::new();
        assert_eq!(handshake.max_size(), DEFAULT_MAX_HEADER_SIZE);
        let long = [b"GET / HTTP/1.1\r\nCookie: ".as_slice(), &[b'a'; 8192]].concat();
        assert_eq!(
            handshake.receive(&long),
            Err(HandshakeError::TooLarge { max: 8192 })
        );
        let r = text(&HandshakeError::TooLarge { max: 8192 }.to_response()).to_owned();
        assert!(r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }

    #[test]
    fn garbage_handshake_is_malformed_400() {
        let mut handshake = ServerHandshake::new();
        let err = handshake
            .receive(b"\x16\x03\x01\x00\xa5\x01\x00\x00")
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Malformed(_)));
        assert!(
            err.to_response()
                .starts_with(b"HTTP/1.1 400 Bad Request\r\n")
        );
    }

    #[test]
    fn accept_writes_protocol_extensions_and_extra_headers_in_order() {
        let response = accept_response(
            "dGhlIHNhbXBsZSBub25jZQ==",
            Some("chat"),
            Some("permessage-deflate; server_no_context_takeover"),
            &[("Set-Cookie", "id=1"), ("X-Server", "wsworker")],
        )
        .unwrap();
        assert_eq!(
            text(&response),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\
             Set-Cookie: id=1\r\nX-Server: wsworker\r\n\r\n"
        );
    }

    #[test]
    fn accept_refuses_header_injection() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let cases: [(Option<&str>, Option<&str>, &[HeaderLine<'_>]); 6] = [
            (Some("chat\r\nX-Evil: 1"), None, &[]),
            (Some("a b"), None, &[]),
            (None, Some("x\r\nX-Evil: 1"), &[]),
            (None, None, &[("X-A", "1\r\nX-Evil: 1")]),
            (None, None, &[("X-A\r\nX-Evil", "1")]),
            (None, None, &[("Sec-WebSocket-Accept", "forged")]),
        ];
        for (protocol, extensions, extra) in cases {
            let err = accept_response(key, protocol, extensions, extra).unwrap_err();
            assert!(matches!(err, HandshakeError::InvalidInput(_)), "{err:?}");
            assert_eq!(err.status(), 500);
        }
    }

    #[test]
    fn request_accept_checks_the_offer() {
        let (request, _) = ServerHandshake::new()
            .receive(RFC_REQUEST)
            .unwrap()
            .unwrap();
        assert!(matches!(
            request.accept(Some("other"), None, &[]),
            Err(HandshakeError::InvalidInput(_))
        ));
        assert!(matches!(
            request.accept(None, Some("permessage-deflate"), &[]),
            Err(HandshakeError::InvalidInput(_))
        ));
        let response = request.accept(Some("superchat"), None, &[]).unwrap();
        assert!(text(&response).contains("\r\nSec-WebSocket-Protocol: superchat\r\n"));
        let response = request.accept(None, None, &[]).unwrap();
        assert!(!text(&response).contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn request_accept_refuses_an_invalid_upgrade() {
        let plain = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let (request, _) = ServerHandshake::new().receive(plain).unwrap().unwrap();
        assert_eq!(
            request.accept(None, None, &[]),
            Err(HandshakeError::NotUpgrade)
        );
    }

    #[test]
    fn reject_response_is_complete() {
        let response = reject_response(403, &[("X-Reason", "origin")], b"forbidden\n").unwrap();
        assert_eq!(
            text(&response),
            "HTTP/1.1 403 Forbidden\r\nX-Reason: origin\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\n\
             Connection: close\r\n\r\nforbidden\n"
        );
        let html = reject_response(404, &[("Content-Type", "text/html")], b"").unwrap();
        assert_eq!(
            text(&html),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
    }

    #[test]
    fn the_head_of_a_response_announces_the_body_it_leaves_out() {
        let body = b"<h1>hello</h1>\n";
        let extra = [("Content-Type", "text/html")];
        let full = reject_response(200, &extra, body).unwrap();
        let head = response_head(&full);
        assert_eq!([head, body].concat(), full);
        assert!(text(head).contains("\r\nContent-Length: 15\r\n"));
        assert!(head.ends_with(b"\r\n\r\n"));
        let refusal = HandshakeError::NotUpgrade.to_response();
        assert!(response_head(&refusal).len() < refusal.len());
        assert!(response_head(&refusal).ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn reject_response_refuses_bad_input() {
        for (status, extra) in [
            (101, &[][..]),
            (600, &[][..]),
            (400, &[("Connection", "keep-alive")][..]),
            (400, &[("X", "a\nb")][..]),
        ] {
            assert!(matches!(
                reject_response(status, extra, b""),
                Err(HandshakeError::InvalidInput(_))
            ));
        }
    }

    proptest! {
        /// Parsing only when the scan says so agrees with parsing everything at once: the
        /// same request and rest when either completes, the same error when the pieces fail
        /// (an error in a head that never ends may go unseen until the limit or the timeout).
        #[test]
        fn scanning_agrees_with_parsing_the_whole_input(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "GET", "OPTIONS", " ", "/", "*", "a", "h:1", ":", "\r\n", "\n", "\r",
                    "HTTP/1.1", "Host: h", "\x16", "\t",
                ]),
                0..12,
            ),
            line in proptest::sample::select(vec![
                "", "GET / HTTP/1.1\r\n", "\r\nGET /a HTTP/1.1\n", "OPTIONS * HTTP/1.1\r\n",
            ]),
            end in proptest::sample::select(vec!["", "\r\n\r\n", "\n\n", "\r\n\r\nrest"]),
            piece in 1usize..8,
        ) {
            let input = [line, &parts.concat(), end].concat().into_bytes();
            let whole = parse_request(&input, DEFAULT_MAX_HEADER_SIZE);
            let mut handshake = ServerHandshake::new();
            let mut fed = 0;
            let mut got = Ok(None);
            for chunk in input.chunks(piece) {
                fed += chunk.len();
                got = handshake.receive(chunk);
                if !matches!(got, Ok(None)) {
                    break;
                }
            }
            match (got, whole) {
                (Ok(Some((request, rest))), Ok(Some((expected, len)))) => {
                    prop_assert_eq!(request, expected);
                    prop_assert_eq!([&rest[..], &input[fed..]].concat(), &input[len..]);
                }
                (Ok(None), Ok(None) | Err(_)) => {}
                (Err(error), Err(expected)) => prop_assert_eq!(error, expected),
                (got, whole) => prop_assert!(false, "{got:?} but at once {whole:?}"),
            }
        }

        #[test]
        fn any_split_of_a_request_gives_the_same_result(
            splits in proptest::collection::vec(0..RFC_REQUEST.len() + 11, 0..6),
        ) {
            let frame = [0x81u8, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
            let input = [RFC_REQUEST, &frame[..]].concat();
            let expected = parse_request(&input, DEFAULT_MAX_HEADER_SIZE).unwrap().unwrap().0;
            let mut splits = splits;
            splits.sort_unstable();
            let mut handshake = ServerHandshake::new();
            let mut got = None;
            let mut start = 0;
            for end in splits.into_iter().chain([input.len()]) {
                let chunk = &input[start..end];
                start = end;
                if let Some((request, rest)) = handshake.receive(chunk).unwrap() {
                    // What follows in later reads belongs to the connection too.
                    let rest = [&rest[..], &input[start..]].concat();
                    got = Some((request, rest));
                    break;
                }
            }
            let (request, rest) = got.unwrap();
            prop_assert_eq!(request, expected);
            prop_assert_eq!(&rest[..], &frame[..]);
        }
    }
}

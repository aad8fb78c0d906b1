//! The client side (RFC 6455 §4.1): [`ClientHandshake`] turns a `ws://` or `wss://` URL into
//! the opening request and checks the server's answer, yielding a [`Response`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Uri};

use super::accept_key::accept_key;
use super::extension::{self, Extension};
use super::http_util;
use super::{DEFAULT_MAX_HEADER_SIZE, HandshakeError, MAX_HEADERS};

/// Headers [`ClientHandshake::request_bytes`] writes itself, so extra headers may not set them.
const CLIENT_OWNED: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// The connection-specific headers HTTP/2 forbids (RFC 9113 §8.2.2) that [`CLIENT_OWNED`]
/// does not hold already: [`ClientHandshake::h2_request`] refuses them as extra headers.
const H2_FORBIDDEN: &[&str] = &["keep-alive", "proxy-connection", "te"];

/// The client's half of an opening handshake: the request to send and the checks on the
/// response.
///
/// ```
/// use wsworker_proto::handshake::ClientHandshake;
///
/// let mut handshake = ClientHandshake::new("ws://[::1]:9001/chat?room=1")?
///     .with_protocols(["chat", "superchat"])?
///     .with_header("Origin", "http://example.com")?;
/// assert_eq!((handshake.host(), handshake.port(), handshake.is_tls()), ("::1", 9001, false));
/// let request = handshake.request_bytes(); // write these to the socket
/// assert!(request.starts_with(b"GET /chat?room=1 HTTP/1.1\r\nHost: [::1]:9001\r\n"));
///
/// // Then feed what the socket returns until the response is complete.
/// let mut reply = format!(
///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///      Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
///     wsworker_proto::handshake::accept_key(handshake.key().as_bytes()),
/// )
/// .into_bytes();
/// reply.extend_from_slice(&[0x81, 0x00]); // the server's first frame, in the same read
/// let (response, rest) = handshake.receive(&reply)?.expect("complete");
/// assert_eq!(response.protocol(), Some("chat"));
/// assert_eq!(&rest[..], [0x81, 0x00]); // kept for the connection
/// # Ok::<(), wsworker_proto::HandshakeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    url: String,
    tls: bool,
    host: String,
    port: u16,
    host_header: String,
    resource: String,
    key: String,
    protocols: Vec<String>,
    extensions: Option<(String, Vec<Extension>)>,
    headers: Vec<(String, String)>,
    max_size: usize,
    buf: BytesMut,
}

impl ClientHandshake {
    /// A handshake for `url`, with a random key, no subprotocols, no extensions and the
    /// default limit on the response head ([`DEFAULT_MAX_HEADER_SIZE`]).
    ///
    /// The URL is `ws://` or `wss://` (any case), a host (a name, an IPv4 address, or an IPv6
    /// address in brackets), an optional port (default 80 for `ws`, 443 for `wss`), and an
    /// optional path and query.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidUrl`] when `url` does not parse, has another scheme, has
    /// userinfo (`user@`), a fragment (`#`, forbidden by RFC 6455 §3), an empty host, or a
    /// port that is not a number up to 65535.
    pub fn new(url: &str) -> Result<Self, HandshakeError> {
        if url.contains('#') {
            return Err(HandshakeError::InvalidUrl("fragment is not allowed"));
        }
        let uri = url
            .parse::<Uri>()
            .map_err(|_| HandshakeError::InvalidUrl("not a url"))?;
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            _ => return Err(HandshakeError::InvalidUrl("scheme must be ws or wss")),
        };
        let authority = uri
            .authority()
            .ok_or(HandshakeError::InvalidUrl("missing host"))?
            .as_str();
        if authority.contains('@') {
            return Err(HandshakeError::InvalidUrl("userinfo is not allowed"));
        }
        let host = uri.host().unwrap_or_default();
        if host.is_empty() {
            return Err(HandshakeError::InvalidUrl("empty host"));
        }
        // The authority is the host followed by an optional `:port`.
        let port = match authority.get(host.len()..).unwrap_or_default() {
            "" => None,
            rest => Some(
                rest.strip_prefix(':')
                    .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or(HandshakeError::InvalidUrl("invalid port"))?,
            ),
        };
        let default_port = if tls { 443 } else { 80 };
        let host_header = match port {
            Some(port) if port != default_port => format!("{host}:{port}"),
            _ => host.to_owned(),
        };
        let resource = match uri.path_and_query().map(|pq| pq.as_str()) {
            Some(pq) if pq.starts_with('/') => pq.to_owned(),
            Some(pq) => format!("/{pq}"),
            None => "/".to_owned(),
        };
        Ok(Self {
            url: url.to_owned(),
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: port.unwrap_or(default_port),
            host_header,
            resource,
            key: STANDARD.encode(rand::random::<[u8; 16]>()),
            protocols: Vec::new(),
            extensions: None,
            headers: Vec::new(),
            max_size: DEFAULT_MAX_HEADER_SIZE,
            buf: BytesMut::new(),
        })
    }

    /// Offers these subprotocols, in order of preference (the browser's `protocols` argument).
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidInput`] when a name is not an RFC 9110 token or appears twice.
    pub fn with_protocols<I, S>(mut self, protocols: I) -> Result<Self, HandshakeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<String> = Vec::new();
        for protocol in protocols {
            let protocol = protocol.as_ref();
            if !http_util::is_token(protocol) {
                return Err(HandshakeError::InvalidInput("subprotocol is not a token"));
            }
            if list.iter().any(|p| p == protocol) {
                return Err(HandshakeError::InvalidInput("subprotocol offered twice"));
            }
            list.push(protocol.to_owned());
        }
        self.protocols = list;
        Ok(self)
    }

    /// Offers extensions: `offer` is the `Sec-WebSocket-Extensions` value to send, such as
    /// `permessage-deflate; client_max_window_bits`. The server may accept only extensions
    /// named here. An empty offer offers nothing.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidInput`] when `offer` breaks the syntax of RFC 6455 §9.1.
    pub fn with_extensions(mut self, offer: &str) -> Result<Self, HandshakeError> {
        http_util::check_header("Sec-WebSocket-Extensions", offer, &[])?;
        let parsed = Extension::parse_list(offer)
            .map_err(|_| HandshakeError::InvalidInput("invalid extensions syntax"))?;
        self.extensions = if parsed.is_empty() {
            None
        } else {
            Some((offer.trim().to_owned(), parsed))
        };
        Ok(self)
    }

    /// Adds a header to the request, such as `Origin`, `Cookie` or `Authorization`.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidInput`] when the name is not a token, the value holds a control
    /// character (CR or LF would inject headers), or the header is one the handshake writes
    /// (`Host`, `Upgrade`, `Connection`, `Sec-WebSocket-*`, `Content-Length`,
    /// `Transfer-Encoding`).
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Self, HandshakeError> {
        http_util::check_header(name, value, CLIENT_OWNED)?;
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// Uses this key instead of a random one, for tests and reproducible bytes. RFC 6455 §4.1
    /// requires a fresh random key per connection otherwise.
    pub fn with_key(mut self, key: [u8; 16]) -> Self {
        self.key = STANDARD.encode(key);
        self
    }

    /// Accepts response heads up to `max_size` bytes.
    pub fn with_max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The host to connect to, IPv6 addresses without brackets (`::1`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to: the URL's, or 80 for `ws`, 443 for `wss`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the URL is `wss://`, so the connection needs TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The request target: path and query, such as `/chat?room=1` (`/` when the URL has none).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The `Sec-WebSocket-Key` value sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The subprotocols offered.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The `Sec-WebSocket-Extensions` offer, if any.
    pub fn extensions(&self) -> Option<&str> {
        self.extensions.as_ref().map(|(text, _)| text.as_str())
    }

    /// The request to write to the server:
    ///
    /// ```text
    /// GET {resource} HTTP/1.1\r\n
    /// Host: {host}[:{port} when not the default]\r\n
    /// Upgrade: websocket\r\n
    /// Connection: Upgrade\r\n
    /// Sec-WebSocket-Key: {key}\r\n
    /// Sec-WebSocket-Version: 13\r\n
    /// [Sec-WebSocket-Protocol: {protocols, comma-separated}\r\n]
    /// [Sec-WebSocket-Extensions: {offer}\r\n]
    /// [{extra headers}\r\n]
    /// \r\n
    /// ```
    pub fn request_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.resource.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        http_util::write_header(&mut out, "Host", &self.host_header);
        http_util::write_header(&mut out, "Upgrade", "websocket");
        http_util::write_header(&mut out, "Connection", "Upgrade");
        http_util::write_header(&mut out, "Sec-WebSocket-Key", &self.key);
        http_util::write_header(&mut out, "Sec-WebSocket-Version", "13");
        if !self.protocols.is_empty() {
            http_util::write_header(
                &mut out,
                "Sec-WebSocket-Protocol",
                &self.protocols.join(", "),
            );
        }
        if let Some((offer, _)) = &self.extensions {
            http_util::write_header(&mut out, "Sec-WebSocket-Extensions", offer);
        }
        for (name, value) in &self.headers {
            http_util::write_header(&mut out, name, value);
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The request of an HTTP/2 WebSocket (RFC 8441 §4), for an HTTP/2 layer (hyper, h2) to
    /// send on a connection whose server allowed it (`SETTINGS_ENABLE_CONNECT_PROTOCOL`):
    /// method CONNECT, the URI `https://` (`http://` for `ws://`) authority and resource,
    /// `sec-websocket-version: 13`, the offered subprotocols and extensions, and the extra
    /// headers. There is no key (RFC 8441 §5), and no `Host`: the URI's authority is the
    /// `:authority`.
    ///
    /// The `:protocol` pseudo-header is the HTTP/2 layer's: the caller adds it as that layer's
    /// request extension (with hyper,
    /// `request.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"))`).
    /// Check the answer with [`check_h2_response`](Self::check_h2_response).
    ///
    /// ```
    /// use wsworker_proto::handshake::ClientHandshake;
    ///
    /// let handshake = ClientHandshake::new("wss://example.com/chat")?.with_protocols(["chat"])?;
    /// let request = handshake.h2_request()?;
    /// assert_eq!(request.method(), http::Method::CONNECT);
    /// assert_eq!(request.uri(), "https://example.com/chat");
    /// assert_eq!(request.version(), http::Version::HTTP_2);
    /// assert_eq!(request.headers()["sec-websocket-version"], "13");
    /// assert_eq!(request.headers()["sec-websocket-protocol"], "chat");
    /// assert!(!request.headers().contains_key("sec-websocket-key"));
    /// # Ok::<(), wsworker_proto::HandshakeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidInput`] when an extra header is one HTTP/2 forbids
    /// (`keep-alive`, `proxy-connection`, `te`: RFC 9113 §8.2.2).
    pub fn h2_request(&self) -> Result<http::Request<()>, HandshakeError> {
        let scheme = if self.tls { "https" } else { "http" };
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(self.host_header.as_str())
            .path_and_query(self.resource.as_str())
            .build()
            .map_err(|_| HandshakeError::InvalidUrl("not a url"))?;
        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::CONNECT;
        *request.uri_mut() = uri;
        *request.version_mut() = http::Version::HTTP_2;
        let headers = request.headers_mut();
        http_util::append_header(headers, "sec-websocket-version", "13")?;
        if !self.protocols.is_empty() {
            let protocols = self.protocols.join(", ");
            http_util::append_header(headers, "sec-websocket-protocol", &protocols)?;
        }
        if let Some((offer, _)) = &self.extensions {
            http_util::append_header(headers, "sec-websocket-extensions", offer)?;
        }
        for (name, value) in &self.headers {
            http_util::check_header(name, value, H2_FORBIDDEN)?;
            http_util::append_header(headers, name, value)?;
        }
        Ok(request)
    }

    /// Checks the answer to [`h2_request`](Self::h2_request) (RFC 8441 §5): a 2xx status
    /// (RFC 9113 §8.5), then exactly the checks of an HTTP/1.1 answer on the subprotocol and
    /// extensions. `Sec-WebSocket-Accept` is not used over HTTP/2, and is not looked at.
    ///
    /// ```
    /// use wsworker_proto::HandshakeError;
    /// use wsworker_proto::handshake::ClientHandshake;
    ///
    /// let handshake = ClientHandshake::new("wss://example.com/chat")?.with_protocols(["chat"])?;
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("sec-websocket-protocol", http::HeaderValue::from_static("chat"));
    /// let response = handshake.check_h2_response(http::StatusCode::OK, &headers)?;
    /// assert_eq!(response.protocol(), Some("chat"));
    /// assert_eq!(
    ///     handshake.check_h2_response(http::StatusCode::FORBIDDEN, &headers),
    ///     Err(HandshakeError::UnexpectedStatus(403)),
    /// );
    /// # Ok::<(), wsworker_proto::HandshakeError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// - [`UnexpectedStatus`](HandshakeError::UnexpectedStatus): the status is not 2xx;
    /// - [`InvalidResponse`](HandshakeError::InvalidResponse),
    ///   [`UnofferedProtocol`](HandshakeError::UnofferedProtocol),
    ///   [`UnofferedExtension`](HandshakeError::UnofferedExtension): as
    ///   [`parse_response`](Self::parse_response) for the subprotocol and extensions.
    pub fn check_h2_response(
        &self,
        status: http::StatusCode,
        headers: &HeaderMap,
    ) -> Result<Response, HandshakeError> {
        if !status.is_success() {
            return Err(HandshakeError::UnexpectedStatus(status.as_u16()));
        }
        self.check_selection(status.as_u16(), headers.clone())
    }

    /// Parses and checks a response head at the start of `buf`.
    ///
    /// Returns `Ok(None)` when the head is not complete yet, or the response and the number
    /// of bytes the head took: what follows is the server's first frames.
    ///
    /// # Errors
    ///
    /// - [`HandshakeError::TooLarge`], [`TooManyHeaders`](HandshakeError::TooManyHeaders),
    ///   [`Malformed`](HandshakeError::Malformed): as for requests;
    /// - [`UnexpectedStatus`](HandshakeError::UnexpectedStatus): the status is not 101;
    /// - [`InvalidResponse`](HandshakeError::InvalidResponse): not HTTP/1.1, `Upgrade` is not
    ///   exactly `websocket` (any case), `Connection` does not list `upgrade`, `Sec-WebSocket-Accept` is
    ///   missing or repeated, `Sec-WebSocket-Protocol` is repeated, or
    ///   `Sec-WebSocket-Extensions` is not valid syntax;
    /// - [`AcceptMismatch`](HandshakeError::AcceptMismatch): the accept value is not the hash
    ///   of our key;
    /// - [`UnofferedProtocol`](HandshakeError::UnofferedProtocol): the server selected a
    ///   subprotocol we did not offer (selecting none is allowed);
    /// - [`UnofferedExtension`](HandshakeError::UnofferedExtension): the server accepted an
    ///   extension we did not offer.
    pub fn parse_response(&self, buf: &[u8]) -> Result<Option<(Response, usize)>, HandshakeError> {
        let head = http_util::limited(buf, self.max_size);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let len = match parsed.parse(head).map_err(http_util::parse_error)? {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return http_util::partial(buf, self.max_size),
        };
        // A complete parse always fills version and code.
        let (Some(version), Some(status)) = (parsed.version, parsed.code) else {
            return Err(HandshakeError::Malformed("incomplete status line"));
        };
        let headers = http_util::header_map(parsed.headers)?;
        let response = self.verify(version, status, headers)?;
        Ok(Some((response, len)))
    }

    /// The buffer to read socket bytes into directly; call
    /// [`poll_response`](Self::poll_response) after each read.
    pub fn recv_buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends `data` to the buffer and polls for the response.
    ///
    /// # Errors
    ///
    /// As [`parse_response`](Self::parse_response).
    pub fn receive(&mut self, data: &[u8]) -> Result<Option<(Response, Bytes)>, HandshakeError> {
        self.buf.extend_from_slice(data);
        self.poll_response()
    }

    /// The checked response, once its head is complete, with the bytes that followed it (the
    /// server's first frames: give them to the connection); `Ok(None)` while more bytes are
    /// needed.
    ///
    /// # Errors
    ///
    /// As [`parse_response`](Self::parse_response). Any error fails the connection.
    pub fn poll_response(&mut self) -> Result<Option<(Response, Bytes)>, HandshakeError> {
        let Some((response, len)) = self.parse_response(&self.buf)? else {
            return Ok(None);
        };
        // `len` <= `self.buf.len()`: it counts bytes of a prefix the parser read.
        let _head = self.buf.split_to(len);
        Ok(Some((response, self.buf.split().freeze())))
    }

    /// The checks of RFC 6455 §4.1 on a complete response head.
    fn verify(
        &self,
        version: u8,
        status: u16,
        headers: HeaderMap,
    ) -> Result<Response, HandshakeError> {
        if status != 101 {
            return Err(HandshakeError::UnexpectedStatus(status));
        }
        if version != 1 {
            return Err(HandshakeError::InvalidResponse(
                "101 response not in http/1.1",
            ));
        }
        // The answer names the one protocol switched to (RFC 6455 §4.1, step 2 of the
        // checks): a list such as `h2c, websocket` is a server that switched to something
        // else or did not understand the request. Unlike the request's header, which may
        // offer several protocols (§4.2.1), it is `websocket` and nothing else.
        match http_util::single(http_util::map_values(&headers, "upgrade")) {
            Ok(Some(upgrade)) if upgrade.eq_ignore_ascii_case("websocket") => {}
            _ => {
                return Err(HandshakeError::InvalidResponse("upgrade is not websocket"));
            }
        }
        if !http_util::has_token(http_util::map_values(&headers, "connection"), "upgrade") {
            return Err(HandshakeError::InvalidResponse(
                "missing connection: upgrade",
            ));
        }
        match http_util::single(http_util::map_values(&headers, "sec-websocket-accept")) {
            Ok(Some(accept)) if accept == accept_key(self.key.as_bytes()) => {}
            Ok(Some(_)) => return Err(HandshakeError::AcceptMismatch),
            Ok(None) => {
                return Err(HandshakeError::InvalidResponse(
                    "missing sec-websocket-accept",
                ));
            }
            Err(()) => {
                return Err(HandshakeError::InvalidResponse(
                    "invalid sec-websocket-accept",
                ));
            }
        }
        self.check_selection(status, headers)
    }

    /// The checks both versions make on an accepting response, whose status and the headers
    /// only one version has were checked already: a subprotocol and extensions the client
    /// offered.
    fn check_selection(&self, status: u16, headers: HeaderMap) -> Result<Response, HandshakeError> {
        let protocol =
            match http_util::single(http_util::map_values(&headers, "sec-websocket-protocol")) {
                Ok(None) => None,
                Ok(Some(protocol)) if self.protocols.iter().any(|p| p == protocol) => {
                    Some(protocol.to_owned())
                }
                Ok(Some(_)) => return Err(HandshakeError::UnofferedProtocol),
                Err(()) => {
                    return Err(HandshakeError::InvalidResponse(
                        "invalid sec-websocket-protocol",
                    ));
                }
            };
        let invalid_extensions =
            HandshakeError::InvalidResponse("invalid sec-websocket-extensions");
        let mut extensions = Vec::new();
        let mut extensions_header = String::new();
        for value in http_util::map_values(&headers, "sec-websocket-extensions") {
            let value =
                http_util::visible_ascii(value).ok_or_else(|| invalid_extensions.clone())?;
            extension::parse_into(value, &mut extensions)
                .map_err(|_| invalid_extensions.clone())?;
            let value = value.trim_matches([' ', '\t']);
            if !value.is_empty() {
                if !extensions_header.is_empty() {
                    extensions_header.push_str(", ");
                }
                extensions_header.push_str(value);
            }
        }
        let offered: &[Extension] = self
            .extensions
            .as_ref()
            .map_or(&[], |(_, parsed)| parsed.as_slice());
        let all_offered = extensions.iter().all(|accepted| {
            offered
                .iter()
                .any(|offer| offer.name.eq_ignore_ascii_case(&accepted.name))
        });
        if !all_offered {
            return Err(HandshakeError::UnofferedExtension);
        }
        Ok(Response {
            status,
            headers,
            protocol,
            extensions,
            extensions_header,
        })
    }
}

/// A server's accepting response that passed the checks of the client: `101 Switching
/// Protocols` over HTTP/1.1 (RFC 6455 §4.1), a 2xx over HTTP/2 (RFC 8441 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: HeaderMap,
    protocol: Option<String>,
    extensions: Vec<Extension>,
    extensions_header: String,
}

impl Response {
    /// The status code: 101 over HTTP/1.1, 2xx over HTTP/2; other statuses fail the handshake.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// All headers, repeated ones included, looked up without regard to case.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The first `name` header (any case) as text, trimmed; `None` when absent or not visible
    /// ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        http_util::first(http_util::map_values(&self.headers, name))
    }

    /// The subprotocol the server selected, one of those offered; `None` when it selected
    /// none (the browser's `protocol` is then the empty string).
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The extensions the server accepted, in order, with their parameters.
    pub fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    /// The accepted extensions as header text, the `Sec-WebSocket-Extensions` values joined
    /// with `", "`; empty when none (the browser's `extensions`).
    pub fn extensions_header(&self) -> &str {
        &self.extensions_header
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{RFC_REQUEST, ServerHandshake};

    /// The key of RFC 6455 §1.3, `dGhlIHNhbXBsZSBub25jZQ==`, decoded.
    const RFC_KEY: [u8; 16] = *b"the sample nonce";

    const RFC_RESPONSE: &str = "HTTP/1.1 101 Switching Protocols\r\n\
        Upgrade: websocket\r\n\
        Connection: Upgrade\r\n\
        Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
        Sec-WebSocket-Protocol: chat\r\n\r\n";

    fn rfc_client() -> ClientHandshake {
        ClientHandshake::new("ws://server.example.com/chat")
            .unwrap()
            .with_protocols(["chat", "superchat"])
            .unwrap()
            .with_header("Origin", "http://example.com")
            .unwrap()
            .with_key(RFC_KEY)
    }

    fn verify(client: &ClientHandshake, response: &str) -> Result<Response, HandshakeError> {
        let (response_parsed, len) = client.parse_response(response.as_bytes())?.unwrap();
        assert_eq!(len, response.len());
        Ok(response_parsed)
    }

    #[test]
    fn url_forms_give_host_port_and_resource() {
        let cases = [
            (
                "ws://example.com",
                "example.com",
                80,
                false,
                "/",
                "example.com",
            ),
            (
                "wss://example.com",
                "example.com",
                443,
                true,
                "/",
                "example.com",
            ),
            (
                "ws://example.com:80/",
                "example.com",
                80,
                false,
                "/",
                "example.com",
            ),
            (
                "wss://example.com:443/a",
                "example.com",
                443,
                true,
                "/a",
                "example.com",
            ),
            (
                "ws://example.com:443/",
                "example.com",
                443,
                false,
                "/",
                "example.com:443",
            ),
            ("wss://h:80/", "h", 80, true, "/", "h:80"),
            (
                "ws://h:8080/chat?x=1&y",
                "h",
                8080,
                false,
                "/chat?x=1&y",
                "h:8080",
            ),
            ("ws://h?x=1", "h", 80, false, "/?x=1", "h"),
            (
                "WSS://Example.COM/P",
                "Example.COM",
                443,
                true,
                "/P",
                "Example.COM",
            ),
            (
                "ws://127.0.0.1:2346",
                "127.0.0.1",
                2346,
                false,
                "/",
                "127.0.0.1:2346",
            ),
            ("ws://[::1]:9001/", "::1", 9001, false, "/", "[::1]:9001"),
            (
                "wss://[2001:db8::1]/x",
                "2001:db8::1",
                443,
                true,
                "/x",
                "[2001:db8::1]",
            ),
        ];
        for (url, host, port, tls, resource, host_header) in cases {
            let client = ClientHandshake::new(url).unwrap();
            assert_eq!(client.url(), url);
            assert_eq!(client.host(), host, "{url}");
            assert_eq!(client.port(), port, "{url}");
            assert_eq!(client.is_tls(), tls, "{url}");
            assert_eq!(client.resource(), resource, "{url}");
            let request = String::from_utf8(client.request_bytes()).unwrap();
            assert!(
                request.starts_with(&format!(
                    "GET {resource} HTTP/1.1\r\nHost: {host_header}\r\n"
                )),
                "{url}: {request}"
            );
        }
    }

    #[test]
    fn bad_urls_are_invalid_url() {
        for url in [
            "",
            "example.com",
            "/chat",
            "http://example.com/",
            "https://example.com/",
            "ftp://example.com/",
            "ws://user@example.com/",
            "ws://user:pass@example.com/",
            "ws://example.com/#frag",
            "ws://example.com/chat#",
            "ws://",
            "ws:///chat",
            "ws://:80/",
            "ws://h:99999/",
            "ws://h:x/",
            "ws://h:/",
            "ws://h:+80/",
            "ws://[::1/",
            "ws://h/a b",
            "ws://hé/",
        ] {
            let err = ClientHandshake::new(url).unwrap_err();
            assert!(
                matches!(err, HandshakeError::InvalidUrl(_)),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn request_bytes_with_fixed_key_are_exact() {
        let client = rfc_client()
            .with_extensions("permessage-deflate; client_max_window_bits")
            .unwrap();
        assert_eq!(
            String::from_utf8(client.request_bytes()).unwrap(),
            "GET /chat HTTP/1.1\r\n\
             Host: server.example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             Origin: http://example.com\r\n\r\n"
        );
        let bare = ClientHandshake::new("ws://h/").unwrap().with_key(RFC_KEY);
        let bare = String::from_utf8(bare.request_bytes()).unwrap();
        assert!(!bare.contains("Sec-WebSocket-Protocol"));
        assert!(!bare.contains("Sec-WebSocket-Extensions"));
    }

    #[test]
    fn random_keys_are_16_bytes_and_differ() {
        let a = ClientHandshake::new("ws://h/").unwrap();
        let b = ClientHandshake::new("ws://h/").unwrap();
        assert_ne!(a.key(), b.key());
        assert_eq!(STANDARD.decode(a.key()).unwrap().len(), 16);
    }

    #[test]
    fn protocol_names_must_be_unique_tokens() {
        let client = || ClientHandshake::new("ws://h/").unwrap();
        for bad in [
            &["a b"][..],
            &[""],
            &["chat", "chat"],
            &["a,b"],
            &["x\r\ny"],
        ] {
            assert!(
                matches!(
                    client().with_protocols(bad),
                    Err(HandshakeError::InvalidInput(_))
                ),
                "{bad:?}"
            );
        }
        let ok = client()
            .with_protocols(vec![String::from("v1.chat"), "v2".into()])
            .unwrap();
        assert_eq!(ok.protocols(), ["v1.chat", "v2"]);
        assert!(client().with_protocols(Vec::<String>::new()).is_ok());
    }

    #[test]
    fn extra_headers_cannot_inject_or_override() {
        let client = || ClientHandshake::new("ws://h/").unwrap();
        for (name, value) in [
            ("X-A", "1\r\nX-Evil: 1"),
            ("X-A\r\nX-Evil", "1"),
            ("X A", "1"),
            ("Host", "other"),
            ("sec-websocket-key", "x"),
            ("Sec-WebSocket-Version", "8"),
            ("Connection", "close"),
        ] {
            assert!(
                matches!(
                    client().with_header(name, value),
                    Err(HandshakeError::InvalidInput(_))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn extension_offer_must_be_valid() {
        let client = || ClientHandshake::new("ws://h/").unwrap();
        assert!(client().with_extensions("a;;").is_err());
        assert!(client().with_extensions("a\r\nX: 1").is_err());
        assert_eq!(client().with_extensions(" ").unwrap().extensions(), None);
    }

    #[test]
    fn rfc_6455_example_response_is_accepted() {
        let client = rfc_client();
        let response = verify(&client, RFC_RESPONSE).unwrap();
        assert_eq!(response.status(), 101);
        assert_eq!(response.protocol(), Some("chat"));
        assert_eq!(response.extensions(), []);
        assert_eq!(response.extensions_header(), "");
        assert_eq!(response.header("upgrade"), Some("websocket"));
        assert_eq!(response.headers().len(), 4);
    }

    #[test]
    fn response_tokens_are_case_insensitive_inside_lists() {
        let response = RFC_RESPONSE
            .replace("Upgrade: websocket", "upgrade: WebSocket")
            .replace("Connection: Upgrade", "connection: keep-alive, UPGRADE");
        assert!(verify(&rfc_client(), &response).is_ok());
    }

    #[test]
    fn upgrade_must_be_websocket_and_nothing_else() {
        // RFC 6455 §4.1: the value is `websocket`, compared without regard to case; a list
        // that includes it is a server switching to something else.
        for upgrade in [
            "Upgrade: h2c, websocket\r\n",
            "Upgrade: websocket, h2c\r\n",
            "Upgrade: websocket,\r\n",
            "Upgrade: websocket/13\r\n",
            "Upgrade: websockets\r\n",
            "Upgrade: websocket\r\nUpgrade: websocket\r\n",
            "Upgrade: h2c\r\nUpgrade: websocket\r\n",
            "Upgrade: \r\n",
        ] {
            let response = RFC_RESPONSE.replace("Upgrade: websocket\r\n", upgrade);
            assert_eq!(
                verify(&rfc_client(), &response),
                Err(HandshakeError::InvalidResponse("upgrade is not websocket")),
                "{upgrade:?}"
            );
        }
        for upgrade in [
            "Upgrade: WEBSOCKET\r\n",
            "Upgrade:websocket\r\n",
            "Upgrade: \t websocket \t\r\n",
        ] {
            let response = RFC_RESPONSE.replace("Upgrade: websocket\r\n", upgrade);
            assert!(verify(&rfc_client(), &response).is_ok(), "{upgrade:?}");
        }
    }

    #[test]
    fn status_other_than_101_is_unexpected_status() {
        let err = verify(
            &rfc_client(),
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(err, HandshakeError::UnexpectedStatus(403));
        let err = verify(&rfc_client(), "HTTP/1.1 200 OK\r\n\r\n").unwrap_err();
        assert_eq!(err, HandshakeError::UnexpectedStatus(200));
    }

    #[test]
    fn wrong_accept_is_accept_mismatch() {
        let response = RFC_RESPONSE.replace(
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOA=",
        );
        assert_eq!(
            verify(&rfc_client(), &response).unwrap_err(),
            HandshakeError::AcceptMismatch
        );
        let other_key = rfc_client().with_key([0; 16]);
        assert_eq!(
            verify(&other_key, RFC_RESPONSE).unwrap_err(),
            HandshakeError::AcceptMismatch
        );
    }

    #[test]
    fn missing_or_repeated_accept_is_invalid_response() {
        let missing =
            RFC_RESPONSE.replace("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", "");
        assert!(matches!(
            verify(&rfc_client(), &missing),
            Err(HandshakeError::InvalidResponse(_))
        ));
        let twice = RFC_RESPONSE.replace(
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n",
        );
        assert!(matches!(
            verify(&rfc_client(), &twice),
            Err(HandshakeError::InvalidResponse(_))
        ));
    }

    #[test]
    fn missing_upgrade_or_connection_is_invalid_response() {
        for response in [
            RFC_RESPONSE.replace("Upgrade: websocket\r\n", ""),
            RFC_RESPONSE.replace("Upgrade: websocket\r\n", "Upgrade: h2c\r\n"),
            RFC_RESPONSE.replace("Connection: Upgrade\r\n", ""),
            RFC_RESPONSE.replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\n"),
            RFC_RESPONSE.replace("HTTP/1.1", "HTTP/1.0"),
        ] {
            assert!(
                matches!(
                    verify(&rfc_client(), &response),
                    Err(HandshakeError::InvalidResponse(_))
                ),
                "{response}"
            );
        }
    }

    #[test]
    fn protocol_not_offered_is_refused() {
        let other = RFC_RESPONSE.replace("Protocol: chat", "Protocol: other");
        assert_eq!(
            verify(&rfc_client(), &other).unwrap_err(),
            HandshakeError::UnofferedProtocol
        );
        let both = RFC_RESPONSE.replace("Protocol: chat", "Protocol: chat, superchat");
        assert_eq!(
            verify(&rfc_client(), &both).unwrap_err(),
            HandshakeError::UnofferedProtocol
        );
        let case = RFC_RESPONSE.replace("Protocol: chat", "Protocol: CHAT");
        assert_eq!(
            verify(&rfc_client(), &case).unwrap_err(),
            HandshakeError::UnofferedProtocol
        );
        let none_offered = ClientHandshake::new("ws://h/").unwrap().with_key(RFC_KEY);
        assert_eq!(
            verify(&none_offered, RFC_RESPONSE).unwrap_err(),
            HandshakeError::UnofferedProtocol
        );
        let twice = RFC_RESPONSE.replace(
            "Sec-WebSocket-Protocol: chat\r\n",
            "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n",
        );
        assert!(matches!(
            verify(&rfc_client(), &twice),
            Err(HandshakeError::InvalidResponse(_))
        ));
    }

    #[test]
    fn no_protocol_selected_is_allowed() {
        let response = RFC_RESPONSE.replace("Sec-WebSocket-Protocol: chat\r\n", "");
        assert_eq!(verify(&rfc_client(), &response).unwrap().protocol(), None);
    }

    #[test]
    fn extension_not_offered_is_refused() {
        let response = RFC_RESPONSE.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        );
        assert_eq!(
            verify(&rfc_client(), &response).unwrap_err(),
            HandshakeError::UnofferedExtension
        );
        let other_offer = rfc_client()
            .with_extensions("x-webkit-deflate-frame")
            .unwrap();
        assert_eq!(
            verify(&other_offer, &response).unwrap_err(),
            HandshakeError::UnofferedExtension
        );
        let bad = RFC_RESPONSE.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: a;;\r\n\r\n");
        let offered = rfc_client().with_extensions("a").unwrap();
        assert!(matches!(
            verify(&offered, &bad),
            Err(HandshakeError::InvalidResponse(_))
        ));
    }

    #[test]
    fn offered_extension_is_reported() {
        let client = rfc_client()
            .with_extensions("permessage-deflate; client_max_window_bits")
            .unwrap();
        let response = RFC_RESPONSE.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n",
        );
        let response = verify(&client, &response).unwrap();
        assert_eq!(response.extensions().len(), 1);
        assert_eq!(response.extensions()[0].name, "permessage-deflate");
        assert_eq!(
            response.extensions_header(),
            "permessage-deflate; server_no_context_takeover"
        );
    }

    #[test]
    fn response_in_pieces_and_trailing_frames() {
        let mut client = rfc_client();
        let frame = [0x81, 0x02, b'h', b'i'];
        let bytes = [RFC_RESPONSE.as_bytes(), &frame].concat();
        let (head, _) = bytes.split_at(RFC_RESPONSE.len() - 1);
        for byte in head {
            assert_eq!(client.receive(&[*byte]), Ok(None));
        }
        let (response, rest) = client.receive(&bytes[head.len()..]).unwrap().unwrap();
        assert_eq!(response.protocol(), Some("chat"));
        assert_eq!(&rest[..], frame);
        let (_, len) = rfc_client().parse_response(&bytes).unwrap().unwrap();
        assert_eq!(&bytes[len..], frame);
    }

    #[test]
    fn response_too_large_or_malformed() {
        let client = rfc_client().with_max_size(32);
        assert_eq!(
            client.parse_response(RFC_RESPONSE.as_bytes()),
            Err(HandshakeError::TooLarge { max: 32 })
        );
        assert_eq!(
            client.parse_response(&RFC_RESPONSE.as_bytes()[..31]),
            Ok(None)
        );
        let err = rfc_client()
            .parse_response(b"SSH-2.0-OpenSSH_9.6\r\n")
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn client_and_server_agree() {
        let client = ClientHandshake::new("ws://localhost:2346/chat?room=7")
            .unwrap()
            .with_protocols(["v2.chat", "v1.chat"])
            .unwrap()
            .with_extensions("permessage-deflate; client_max_window_bits")
            .unwrap()
            .with_header("Cookie", "session=abc; theme=dark")
            .unwrap();
        let mut server = ServerHandshake::new();
        let (request, rest) = server.receive(&client.request_bytes()).unwrap().unwrap();
        assert!(rest.is_empty());
        assert_eq!(request.validate_upgrade(), Ok(()));
        assert_eq!(request.path(), "/chat");
        assert_eq!(request.query(), Some("room=7"));
        assert_eq!(request.host(), Some("localhost:2346"));
        assert_eq!(request.cookie("session"), Some("abc"));
        assert_eq!(
            request.protocols().collect::<Vec<_>>(),
            ["v2.chat", "v1.chat"]
        );
        assert_eq!(request.extensions().unwrap()[0].name, "permessage-deflate");
        let accept = request
            .accept(
                Some("v1.chat"),
                Some("permessage-deflate"),
                &[("Set-Cookie", "seen=1")],
            )
            .unwrap();
        let (response, len) = client.parse_response(&accept).unwrap().unwrap();
        assert_eq!(len, accept.len());
        assert_eq!(response.protocol(), Some("v1.chat"));
        assert_eq!(response.extensions_header(), "permessage-deflate");
        assert_eq!(response.header("set-cookie"), Some("seen=1"));
    }

    #[test]
    fn rfc_request_round_trips_through_the_client() {
        let client = rfc_client();
        let request = client.request_bytes();
        // Same headers as the RFC's example, in the order this crate writes them.
        let (ours, _) = crate::handshake::parse_request(&request, 8192)
            .unwrap()
            .unwrap();
        let (rfc, _) = crate::handshake::parse_request(RFC_REQUEST, 8192)
            .unwrap()
            .unwrap();
        assert_eq!(ours.headers().len(), rfc.headers().len());
        for (name, value) in rfc.headers() {
            assert_eq!(ours.headers().get(name), Some(value), "{name}");
        }
    }

    #[test]
    fn response_is_send_sync_clone_debug() {
        fn check<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
        check::<Response>();
        check::<ClientHandshake>();
    }
}

//! Tests of the handshake as `http` types: HTTP/2 extended CONNECT (RFC 8441) on both sides,
//! and HTTP/1.1 under an HTTP layer, each held to the HTTP/1.1 byte path for the same offers.

use http::{HeaderMap, Method, StatusCode, Version};

use super::{
    ClientHandshake, HandshakeError, RFC_REQUEST, Request, Response, accept_key, parse_request,
};

/// The RFC 6455 §1.3 request as a browser sends it over HTTP/2: the same offers and origin,
/// with `extra` headers added, with `method`. Its `:protocol` goes to `Request::from_http`.
fn h2(method: Method, extra: &[(&str, &str)]) -> http::Request<()> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri("https://server.example.com/chat")
        .version(Version::HTTP_2)
        .header("origin", "http://example.com")
        .header("sec-websocket-protocol", "chat, superchat")
        .header("sec-websocket-version", "13");
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

/// [`h2`] with `:protocol: websocket`, as [`Request::from_http`] builds it.
fn h2_request(extra: &[(&str, &str)]) -> Request {
    Request::from_http(&h2(Method::CONNECT, extra), Some("websocket")).unwrap()
}

/// A request from `http`, validated.
fn validate(http: &http::Request<()>, protocol: Option<&str>) -> Result<(), HandshakeError> {
    Request::from_http(http, protocol)?.validate_upgrade()
}

fn rfc_h1() -> Request {
    parse_request(RFC_REQUEST, 8192).unwrap().unwrap().0
}

/// The RFC request over HTTP/1.1 with `header` added before the blank line.
fn rfc_h1_with(header: &str) -> Request {
    let text = std::str::from_utf8(RFC_REQUEST).unwrap();
    let text = text.replacen("\r\n\r\n", &format!("\r\n{header}\r\n\r\n"), 1);
    parse_request(text.as_bytes(), 8192).unwrap().unwrap().0
}

/// The headers of an HTTP/1.1 response written as bytes, with its status.
fn parse_response(bytes: &[u8]) -> (u16, HeaderMap) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    assert!(parsed.parse(bytes).unwrap().is_complete());
    let mut map = HeaderMap::new();
    for header in parsed.headers.iter() {
        map.append(
            http::HeaderName::from_bytes(header.name.as_bytes()).unwrap(),
            http::HeaderValue::from_bytes(header.value).unwrap(),
        );
    }
    (parsed.code.unwrap(), map)
}

/// The headers that say what was negotiated: subprotocol and extensions.
fn negotiated(headers: &HeaderMap) -> Vec<(String, String)> {
    ["sec-websocket-protocol", "sec-websocket-extensions"]
        .into_iter()
        .flat_map(|name| {
            headers
                .get_all(name)
                .iter()
                .map(move |value| (name.to_owned(), value.to_str().unwrap().to_owned()))
        })
        .collect()
}

// ----- server: HTTP/2 ------------------------------------------------------------------------

#[test]
fn an_h2_websocket_request_is_accepted_with_200() {
    let request = h2_request(&[]);
    assert!(request.is_h2());
    assert_eq!(request.version(), Version::HTTP_2);
    assert_eq!(request.method(), Method::CONNECT);
    assert_eq!(request.protocol(), Some("websocket"));
    assert_eq!(request.target(), "/chat");
    assert_eq!(request.host(), Some("server.example.com"));
    assert_eq!(request.origin(), Some("http://example.com"));
    assert_eq!(request.key(), None);
    assert!(request.is_websocket_upgrade());
    assert_eq!(request.validate_upgrade(), Ok(()));
    let response = request.accept_parts(Some("chat"), None, &[]).unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.headers()["sec-websocket-protocol"], "chat");
    for absent in [
        "sec-websocket-accept",
        "upgrade",
        "connection",
        "sec-websocket-extensions",
    ] {
        assert!(!response.headers().contains_key(absent), "{absent}");
    }
    assert_eq!(response.headers().len(), 1);
}

#[test]
fn the_h2_answer_negotiates_exactly_what_the_h1_answer_does() {
    let offers = "permessage-deflate; client_max_window_bits, x-other";
    let h1 = rfc_h1_with(&format!("Sec-WebSocket-Extensions: {offers}"));
    let over_h2 = h2_request(&[("sec-websocket-extensions", offers)]);
    assert_eq!(h1.extensions(), over_h2.extensions());
    assert!(h1.protocols().eq(over_h2.protocols()));
    let extra = [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")];
    for (protocol, extensions) in [
        (None, None),
        (Some("chat"), None),
        (Some("superchat"), Some("permessage-deflate")),
        (
            None,
            Some("x-other, permessage-deflate; server_no_context_takeover"),
        ),
        (Some("chat"), Some(" ")),
    ] {
        let bytes = h1.accept(protocol, extensions, &extra).unwrap();
        let (status, h1_headers) = parse_response(&bytes);
        assert_eq!(status, 101);
        let response = over_h2.accept_parts(protocol, extensions, &extra).unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            negotiated(response.headers()),
            negotiated(&h1_headers),
            "{protocol:?} {extensions:?}"
        );
        let cookies = response.headers().get_all("set-cookie").iter();
        assert!(cookies.eq(h1_headers.get_all("set-cookie").iter()));
    }
    // What the client did not offer is refused the same way over both.
    for (protocol, extensions) in [
        (Some("other"), None),
        (Some("CHAT"), None),
        (None, Some("x-unoffered")),
        (None, Some("permessage-deflate;;")),
    ] {
        let refused = h1.accept(protocol, extensions, &[]).unwrap_err();
        assert!(matches!(refused, HandshakeError::InvalidInput(_)));
        assert_eq!(
            over_h2.accept_parts(protocol, extensions, &[]).unwrap_err(),
            refused,
            "{protocol:?} {extensions:?}"
        );
    }
}

/// The runtime's negotiation, fed the extensions of either request, answers them alike.
#[cfg(feature = "deflate")]
#[test]
fn permessage_deflate_is_negotiated_alike_over_both() {
    let config = crate::deflate::DeflateConfig::default();
    for offers in [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
        "permessage-deflate; x=1, permessage-deflate",
        "x-other",
    ] {
        let h1 = rfc_h1_with(&format!("Sec-WebSocket-Extensions: {offers}"));
        let over_h2 = h2_request(&[("sec-websocket-extensions", offers)]);
        let on_h1 = config.negotiate(&h1.extensions().unwrap());
        let on_h2 = config.negotiate(&over_h2.extensions().unwrap());
        assert_eq!(on_h1, on_h2, "{offers}");
        let answer = on_h2.as_ref().map(|(_, answer)| answer.as_str());
        let (_, h1_headers) = parse_response(&h1.accept(None, answer, &[]).unwrap());
        let response = over_h2.accept_parts(None, answer, &[]).unwrap();
        assert_eq!(negotiated(response.headers()), negotiated(&h1_headers));
        // And the client takes the answer over HTTP/2 as over HTTP/1.1.
        let client = ClientHandshake::new("wss://server.example.com/chat")
            .unwrap()
            .with_extensions(offers)
            .unwrap();
        let checked = client
            .check_h2_response(response.status(), response.headers())
            .unwrap();
        assert_eq!(
            config.accept_response(checked.extensions()).unwrap(),
            on_h2.map(|(params, _)| params),
            "{offers}"
        );
    }
}

#[test]
fn a_missing_or_other_version_is_refused_as_over_h1() {
    for version in [None, Some("8"), Some("13, 8"), Some("14")] {
        let mut http = h2(Method::CONNECT, &[]);
        http.headers_mut().remove("sec-websocket-version");
        if let Some(version) = version {
            http.headers_mut()
                .insert("sec-websocket-version", version.parse().unwrap());
        }
        let err = validate(&http, Some("websocket")).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedVersion, "{version:?}");
        assert_eq!(err.status(), 426);
        let h1 = match version {
            Some(version) => std::str::from_utf8(RFC_REQUEST)
                .unwrap()
                .replace("Version: 13", &format!("Version: {version}")),
            None => std::str::from_utf8(RFC_REQUEST)
                .unwrap()
                .replace("Sec-WebSocket-Version: 13\r\n", ""),
        };
        let h1 = parse_request(h1.as_bytes(), 8192).unwrap().unwrap().0;
        assert_eq!(h1.validate_upgrade(), Err(err));
    }
    let twice = h2(Method::CONNECT, &[("sec-websocket-version", "13")]);
    assert_eq!(
        validate(&twice, Some("websocket")),
        Err(HandshakeError::UnsupportedVersion)
    );
}

#[test]
fn a_protocol_other_than_websocket_is_501() {
    for protocol in ["foo", "websockets", "", "connect-udp"] {
        let err = validate(&h2(Method::CONNECT, &[]), Some(protocol)).unwrap_err();
        assert_eq!(err, HandshakeError::UnsupportedProtocol, "{protocol:?}");
        assert_eq!(err.status(), 501);
        let refusal = err.to_http_response(Version::HTTP_2);
        assert_eq!(refusal.status(), StatusCode::NOT_IMPLEMENTED);
    }
    // Protocol names compare without regard to case (RFC 9110 §7.8), as `Upgrade` does.
    assert_eq!(
        validate(&h2(Method::CONNECT, &[]), Some("WebSocket")),
        Ok(())
    );
}

#[test]
fn a_connect_without_protocol_is_400() {
    let request = Request::from_http(&h2(Method::CONNECT, &[]), None).unwrap();
    assert_eq!(request.protocol(), None);
    assert!(
        request.is_websocket_upgrade(),
        "a CONNECT is for this handshake to refuse"
    );
    let err = request.validate_upgrade().unwrap_err();
    assert_eq!(err, HandshakeError::MissingHeader(":protocol"));
    assert_eq!(err.status(), 400);
    // A classic CONNECT, to an authority, is refused the same way.
    let tunnel = http::Request::connect("server.example.com:443")
        .version(Version::HTTP_2)
        .body(())
        .unwrap();
    let request = Request::from_http(&tunnel, None).unwrap();
    assert_eq!(request.target(), "server.example.com:443");
    assert_eq!(
        request.validate_upgrade(),
        Err(HandshakeError::MissingHeader(":protocol"))
    );
}

#[test]
fn a_get_over_h2_cannot_upgrade() {
    // An HTTP/1.1-style upgrade sent over HTTP/2, where 101 does not exist: 405, and the
    // refusal names the method that works.
    let upgrade = h2(
        Method::GET,
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    );
    let request = Request::from_http(&upgrade, None).unwrap();
    assert!(request.is_websocket_upgrade());
    let err = request.validate_upgrade().unwrap_err();
    assert_eq!(err, HandshakeError::MethodNotAllowed);
    assert_eq!(err.status(), 405);
    let refusal = err.to_http_response(Version::HTTP_2);
    assert_eq!(refusal.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(refusal.headers()["allow"], "CONNECT");
    assert_eq!(
        request.accept_parts(None, None, &[]).unwrap_err(),
        HandshakeError::MethodNotAllowed
    );
    // A GET with a `:protocol` (which HTTP/2 layers refuse before us) is no better.
    assert_eq!(
        validate(&h2(Method::GET, &[]), Some("websocket")),
        Err(HandshakeError::MethodNotAllowed)
    );
    // A plain GET is plain HTTP, for the application's own pages.
    let plain = Request::from_http(&h2(Method::GET, &[]), None).unwrap();
    assert!(!plain.is_websocket_upgrade());
    assert_eq!(plain.validate_upgrade(), Err(HandshakeError::NotUpgrade));
    let refusal = HandshakeError::NotUpgrade.to_http_response(Version::HTTP_2);
    assert!(!refusal.headers().contains_key("upgrade"));
}

/// RFC 8441 §5: the key is not used over HTTP/2. One sent anyway (a client that translated an
/// HTTP/1.1 request, say) is ignored, valid or not, and no accept value is answered.
#[test]
fn a_key_over_h2_is_ignored() {
    for key in ["dGhlIHNhbXBsZSBub25jZQ==", "not a key"] {
        let request = h2_request(&[("sec-websocket-key", key)]);
        assert_eq!(request.key(), Some(key));
        assert_eq!(request.validate_upgrade(), Ok(()));
        let response = request.accept_parts(None, None, &[]).unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key("sec-websocket-accept"));
    }
}

#[test]
fn connection_specific_headers_are_refused_over_h2() {
    for (name, value) in [
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "gzip"),
        ("transfer-encoding", "chunked"),
        // Over HTTP/2 the stream's data is the connection: no length, not even 0.
        ("content-length", "0"),
        ("content-length", "5"),
    ] {
        let request = h2_request(&[(name, value)]);
        let err = request.validate_upgrade().unwrap_err();
        assert_eq!(err, HandshakeError::InvalidHeader(name), "{name}");
        assert_eq!(err.status(), 400);
    }
    assert_eq!(h2_request(&[("te", "trailers")]).validate_upgrade(), Ok(()));
}

#[test]
fn the_authority_is_the_host() {
    // A Host that agrees with `:authority` is kept; one that does not is refused (RFC 9113
    // §8.3.1).
    let same = h2_request(&[("host", "SERVER.example.com")]);
    assert_eq!(same.host(), Some("SERVER.example.com"));
    assert_eq!(same.headers().get_all("host").iter().count(), 1);
    assert_eq!(same.validate_upgrade(), Ok(()));
    let other = h2(Method::CONNECT, &[("host", "evil.example")]);
    assert_eq!(
        Request::from_http(&other, Some("websocket")),
        Err(HandshakeError::InvalidHeader("host"))
    );
    // No authority at all: no host, as over HTTP/1.1.
    let mut bare = h2(Method::CONNECT, &[]);
    *bare.uri_mut() = "/chat".parse().unwrap();
    assert_eq!(
        validate(&bare, Some("websocket")),
        Err(HandshakeError::MissingHeader("host"))
    );
    let with_port = http::Request::connect("https://[::1]:9001/chat?room=1")
        .version(Version::HTTP_2)
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let request = Request::from_http(&with_port, Some("websocket")).unwrap();
    assert_eq!(request.host(), Some("[::1]:9001"));
    assert_eq!(request.query_param("room").as_deref(), Some("1"));
    assert_eq!(request.validate_upgrade(), Ok(()));
}

#[test]
fn an_h2_request_is_not_answered_with_h1_bytes() {
    let request = h2_request(&[]);
    assert!(matches!(
        request.accept(None, None, &[]),
        Err(HandshakeError::InvalidInput(_))
    ));
}

#[test]
fn h2_answers_refuse_headers_h2_forbids() {
    let over_h2 = h2_request(&[]);
    let h1 = rfc_h1();
    for name in ["keep-alive", "te", "Proxy-Connection"] {
        assert!(
            matches!(
                over_h2.accept_parts(None, None, &[(name, "x")]),
                Err(HandshakeError::InvalidInput(_))
            ),
            "{name}"
        );
        assert!(
            h1.accept_parts(None, None, &[(name, "x")]).is_ok(),
            "{name}"
        );
    }
    for name in ["connection", "sec-websocket-accept", "content-length"] {
        assert!(over_h2.accept_parts(None, None, &[(name, "x")]).is_err());
        assert!(h1.accept_parts(None, None, &[(name, "x")]).is_err());
    }
    assert!(
        over_h2
            .accept_parts(None, None, &[("x-a", "1\r\nx-b: 2")])
            .is_err()
    );
}

#[test]
fn versions_and_protocols_that_do_not_fit_are_malformed() {
    let mut http = h2(Method::CONNECT, &[]);
    *http.version_mut() = Version::HTTP_11;
    assert_eq!(
        Request::from_http(&http, Some("websocket")),
        Err(HandshakeError::Malformed(":protocol outside http/2"))
    );
    for version in [Version::HTTP_09, Version::HTTP_3] {
        *http.version_mut() = version;
        assert!(matches!(
            Request::from_http(&http, None),
            Err(HandshakeError::Malformed(_))
        ));
    }
    let mut many = h2(Method::CONNECT, &[]);
    for i in 0..super::MAX_HEADERS {
        many.headers_mut().append(
            format!("x-{i}").parse::<http::HeaderName>().unwrap(),
            "v".parse().unwrap(),
        );
    }
    assert_eq!(
        Request::from_http(&many, Some("websocket")),
        Err(HandshakeError::TooManyHeaders)
    );
}

#[test]
fn an_h2_request_keeps_its_protocol() {
    let mut request = h2_request(&[("cookie", "a=1")]);
    let copy = request.clone();
    request.shrink_to_head();
    assert_eq!(request.protocol(), Some("websocket"));
    assert_eq!(request.cookie("a"), Some("1"));
    assert_eq!(request.headers(), copy.headers());
    assert_eq!(request, copy);
    let other = Request::from_http(&h2(Method::CONNECT, &[("cookie", "a=1")]), Some("x")).unwrap();
    assert_ne!(request, other);
    let no_protocol = Request::from_http(&h2(Method::CONNECT, &[("cookie", "a=1")]), None).unwrap();
    assert_ne!(request, no_protocol);
    let debug = format!("{request:?}");
    assert!(
        debug.starts_with(
            "Request { method: CONNECT, target: \"/chat\", version: HTTP/2.0, \
             protocol: \"websocket\", headers: {\"host\": \"server.example.com\""
        ),
        "{debug}"
    );
}

#[test]
fn h2_refusals_carry_what_their_status_requires() {
    let refusal = HandshakeError::UnsupportedVersion.to_http_response(Version::HTTP_2);
    assert_eq!(refusal.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(refusal.version(), Version::HTTP_2);
    assert_eq!(refusal.headers()["sec-websocket-version"], "13");
    assert!(!refusal.headers().contains_key("upgrade"));
    assert!(!refusal.headers().contains_key("connection"));
    assert_eq!(
        refusal.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    assert_eq!(
        refusal.body(),
        "unsupported websocket version (only 13 is supported)\n"
    );
    let refusal = HandshakeError::MissingHeader(":protocol").to_http_response(Version::HTTP_2);
    assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
    assert_eq!(refusal.body(), "missing header :protocol\n");
}

// ----- server: HTTP/1.1 under an HTTP layer --------------------------------------------------

/// The RFC request as hyper hands it over HTTP/1.1 is the request parsed from the bytes, and
/// its answer as an `http::Response` is the 101 of the byte path, header for header.
#[test]
fn an_h1_request_from_http_is_the_parsed_request() {
    let parsed = rfc_h1();
    let mut http = http::Request::get("/chat").version(Version::HTTP_11);
    for (name, value) in parsed.headers() {
        http = http.header(name, value);
    }
    let request = Request::from_http(&http.body(()).unwrap(), None).unwrap();
    assert!(!request.is_h2());
    assert_eq!(request.protocol(), None);
    assert_eq!(request.headers(), parsed.headers());
    assert_eq!(request.target(), parsed.target());
    assert_eq!(request.validate_upgrade(), Ok(()));
    let extra = [("Set-Cookie", "seen=1")];
    let response = request.accept_parts(Some("chat"), None, &extra).unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.version(), Version::HTTP_11);
    let (status, headers) = parse_response(&parsed.accept(Some("chat"), None, &extra).unwrap());
    assert_eq!(status, 101);
    assert_eq!(response.headers(), &headers);
    assert_eq!(
        response.headers()["sec-websocket-accept"],
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ==").as_str()
    );
    // The same rules: an HTTP/1.1 request without a key is refused however it arrived.
    let (mut parts, ()) = http::Request::get("/chat")
        .version(Version::HTTP_11)
        .body(())
        .unwrap()
        .into_parts();
    parts.headers = parsed.headers().clone();
    parts.headers.remove("sec-websocket-key");
    assert_eq!(
        Request::from_parts(&parts, None)
            .unwrap()
            .validate_upgrade(),
        Err(HandshakeError::MissingHeader("sec-websocket-key"))
    );
}

#[test]
fn h1_refusals_as_http_responses_match_the_bytes() {
    for err in [
        HandshakeError::UnsupportedVersion,
        HandshakeError::NotUpgrade,
        HandshakeError::MethodNotAllowed,
        HandshakeError::MissingHeader("host"),
        HandshakeError::TooLarge { max: 10 },
    ] {
        let refusal = err.to_http_response(Version::HTTP_11);
        let (status, headers) = parse_response(&err.to_response());
        assert_eq!(refusal.status(), status, "{err:?}");
        for name in ["upgrade", "sec-websocket-version", "allow", "content-type"] {
            assert_eq!(
                refusal.headers().get(name),
                headers.get(name),
                "{err:?} {name}"
            );
        }
        let upgrade = refusal.headers().contains_key("upgrade");
        assert_eq!(refusal.headers().contains_key("connection"), upgrade);
        let bytes = err.to_response();
        assert!(bytes.ends_with(refusal.body().as_bytes()));
    }
}

// ----- client --------------------------------------------------------------------------------

#[test]
fn the_h2_request_is_an_extended_connect() {
    let client = ClientHandshake::new("ws://server.example.com:8080/chat?room=1")
        .unwrap()
        .with_protocols(["chat", "superchat"])
        .unwrap()
        .with_extensions("permessage-deflate; client_max_window_bits")
        .unwrap()
        .with_header("Origin", "http://example.com")
        .unwrap();
    let request = client.h2_request().unwrap();
    assert_eq!(request.method(), Method::CONNECT);
    assert_eq!(request.version(), Version::HTTP_2);
    assert_eq!(request.uri(), "http://server.example.com:8080/chat?room=1");
    let headers = request.headers();
    assert_eq!(headers["sec-websocket-version"], "13");
    assert_eq!(headers["sec-websocket-protocol"], "chat, superchat");
    assert_eq!(
        headers["sec-websocket-extensions"],
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(headers["origin"], "http://example.com");
    assert_eq!(headers.len(), 4, "no key, no host, no upgrade: {headers:?}");
    let bare = ClientHandshake::new("wss://h/")
        .unwrap()
        .h2_request()
        .unwrap();
    assert_eq!(bare.uri(), "https://h/");
    assert_eq!(bare.headers().len(), 1);
    for name in ["te", "keep-alive", "proxy-connection"] {
        let client = ClientHandshake::new("wss://h/")
            .unwrap()
            .with_header(name, "x")
            .unwrap();
        assert!(client.request_bytes().starts_with(b"GET / HTTP/1.1\r\n"));
        assert!(
            matches!(client.h2_request(), Err(HandshakeError::InvalidInput(_))),
            "{name}"
        );
    }
}

/// The answers of a server to a client's offers: `(header lines, accepted)`.
const ANSWERS: &[(&[(&str, &str)], bool)] = &[
    (&[], true),
    (&[("sec-websocket-protocol", "chat")], true),
    (&[("sec-websocket-protocol", "other")], false),
    (&[("sec-websocket-protocol", "chat, superchat")], false),
    (
        &[
            ("sec-websocket-protocol", "chat"),
            ("sec-websocket-protocol", "chat"),
        ],
        false,
    ),
    (&[("sec-websocket-extensions", "permessage-deflate")], true),
    (
        &[(
            "sec-websocket-extensions",
            "permessage-deflate; server_no_context_takeover",
        )],
        true,
    ),
    (&[("sec-websocket-extensions", "x-unoffered")], false),
    (
        &[("sec-websocket-extensions", "permessage-deflate;;")],
        false,
    ),
];

/// A 200 is checked exactly as a 101 is, on the subprotocol and extensions.
#[test]
fn a_200_is_checked_as_a_101() {
    let client = ClientHandshake::new("ws://server.example.com/chat")
        .unwrap()
        .with_protocols(["chat", "superchat"])
        .unwrap()
        .with_extensions("permessage-deflate")
        .unwrap();
    for (lines, accepted) in ANSWERS {
        let mut headers = HeaderMap::new();
        let mut h1 = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n",
            accept_key(client.key().as_bytes())
        );
        for (name, value) in *lines {
            headers.append(*name, value.parse().unwrap());
            h1.push_str(&format!("{name}: {value}\r\n"));
        }
        h1.push_str("\r\n");
        let over_h1 = client
            .parse_response(h1.as_bytes())
            .map(|r| r.map(|(r, _)| r));
        let over_h2 = client.check_h2_response(StatusCode::OK, &headers);
        assert_eq!(over_h2.is_ok(), *accepted, "{lines:?}: {over_h2:?}");
        match (over_h1, over_h2) {
            (Ok(Some(h1)), Ok(h2)) => {
                assert_eq!(h2.status(), 200);
                assert_eq!(h1.protocol(), h2.protocol());
                assert_eq!(h1.extensions(), h2.extensions());
                assert_eq!(h1.extensions_header(), h2.extensions_header());
            }
            (Err(h1), Err(h2)) => assert_eq!(h1, h2, "{lines:?}"),
            (h1, h2) => panic!("{lines:?}: {h1:?} but {h2:?}"),
        }
    }
}

#[test]
fn an_h2_answer_other_than_2xx_is_refused() {
    let client = ClientHandshake::new("wss://h/").unwrap();
    for status in [101, 301, 400, 403, 501] {
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(
            client.check_h2_response(status, &HeaderMap::new()),
            Err(HandshakeError::UnexpectedStatus(status.as_u16()))
        );
    }
    let response: Response = client
        .check_h2_response(StatusCode::NO_CONTENT, &HeaderMap::new())
        .unwrap();
    assert_eq!(response.status(), 204);
}

/// The whole HTTP/2 handshake, the HTTP/2 layer played by moving the `http` types across.
#[test]
fn client_and_server_agree_over_h2() {
    let client = ClientHandshake::new("wss://localhost:2346/chat?room=7")
        .unwrap()
        .with_protocols(["v2.chat", "v1.chat"])
        .unwrap()
        .with_extensions("permessage-deflate; client_max_window_bits")
        .unwrap()
        .with_header("Cookie", "session=abc")
        .unwrap();
    let request = Request::from_http(&client.h2_request().unwrap(), Some("websocket")).unwrap();
    assert_eq!(request.validate_upgrade(), Ok(()));
    assert_eq!(request.host(), Some("localhost:2346"));
    assert_eq!(request.query(), Some("room=7"));
    assert_eq!(request.cookie("session"), Some("abc"));
    let response = request
        .accept_parts(
            Some("v1.chat"),
            Some("permessage-deflate"),
            &[("Set-Cookie", "seen=1")],
        )
        .unwrap();
    let response = client
        .check_h2_response(response.status(), response.headers())
        .unwrap();
    assert_eq!(response.protocol(), Some("v1.chat"));
    assert_eq!(response.extensions_header(), "permessage-deflate");
    assert_eq!(response.header("set-cookie"), Some("seen=1"));
}

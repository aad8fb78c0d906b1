//! The HTTP/1.1 pieces both sides share: bounded head parsing, token lists (RFC 9110 §5.6),
//! header checks, and writing header lines that cannot smuggle a CR or LF.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::HandshakeError;

/// One header line to write: `(name, value)`.
pub(crate) type HeaderLine<'a> = (&'a str, &'a str);

/// The part of `buf` the parser may look at: never more than `max_size` bytes.
pub(crate) fn limited(buf: &[u8], max_size: usize) -> &[u8] {
    buf.get(..max_size).unwrap_or(buf)
}

/// What a partial head means: wait for more bytes, or give up because the head cannot end
/// within `max_size` bytes.
pub(crate) fn partial<T>(buf: &[u8], max_size: usize) -> Result<Option<T>, HandshakeError> {
    if buf.len() >= max_size {
        Err(HandshakeError::TooLarge { max: max_size })
    } else {
        Ok(None)
    }
}

/// Maps a parse failure of `httparse` to ours.
pub(crate) fn parse_error(err: httparse::Error) -> HandshakeError {
    match err {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders,
        httparse::Error::HeaderName => HandshakeError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HandshakeError::Malformed("invalid header value"),
        httparse::Error::NewLine => HandshakeError::Malformed("invalid line ending"),
        httparse::Error::Status => HandshakeError::Malformed("invalid status code"),
        httparse::Error::Token => HandshakeError::Malformed("invalid token"),
        httparse::Error::Version => HandshakeError::Malformed("invalid http version"),
    }
}

/// Copies parsed header lines into a [`HeaderMap`], keeping repeated headers (the client's
/// [`Response`](super::Response), which is short-lived, keeps one).
pub(crate) fn header_map(headers: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| HandshakeError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| HandshakeError::Malformed("invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

/// Checks a parsed header line by the rules [`header_map`] applies, with the same errors, for
/// a side that keeps the raw head instead of a [`HeaderMap`] (the server's
/// [`Request`](super::Request)): the value is checked without copying it into a
/// [`HeaderValue`].
pub(crate) fn check_header_line(name: &[u8], value: &[u8]) -> Result<(), HandshakeError> {
    // Copies only names that are not standard ones, and only for this check.
    if HeaderName::from_bytes(name).is_err() {
        return Err(HandshakeError::Malformed("invalid header name"));
    }
    if !value.iter().all(|&b| is_value_byte(b)) {
        return Err(HandshakeError::Malformed("invalid header value"));
    }
    Ok(())
}

/// Whether [`HeaderValue::from_bytes`] accepts `b`: anything but control characters, HTAB
/// excepted (obs-text, 0x80 to 0xFF, is accepted). A test holds this to the `http` crate.
fn is_value_byte(b: u8) -> bool {
    (b >= 0x20 && b != 0x7f) || b == b'\t'
}

/// The raw values of every `name` header (any case) of `headers`, in order: how a side that
/// keeps a [`HeaderMap`] feeds the header rules below.
pub(crate) fn map_values<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> impl Iterator<Item = &'a [u8]> + use<'a> {
    headers.get_all(name).iter().map(HeaderValue::as_bytes)
}

/// A header value as text if it is visible ASCII (printable ASCII, SP and HTAB), the rule of
/// [`HeaderValue::to_str`], which the header rules below have always applied.
pub(crate) fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || b == b'\t')
    {
        // ASCII is UTF-8, so this never fails.
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Whether `b` may appear in an RFC 9110 §5.6.2 token.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `s` is an RFC 9110 §5.6.2 token (non-empty).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Trims optional whitespace (SP and HTAB) from both ends.
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = s.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(start), Some(end)) => s.get(start..=end).unwrap_or_default(),
        _ => &[],
    }
}

// The header rules. Each takes the raw values of one header name, in order, so the server's
// `Request` (spans into its head) and the client's `Response` (a `HeaderMap`, through
// `map_values`) share one definition of each.

/// The non-empty elements of the comma lists (RFC 9110 §5.6.1) in `values`, trimmed. Values
/// that are not visible ASCII are skipped.
pub(crate) fn list_elements<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a str> {
    values
        .filter_map(visible_ascii)
        .flat_map(|value| value.split(','))
        .map(|element| element.trim_matches([' ', '\t']))
        .filter(|element| !element.is_empty())
}

/// Whether some value in `values` lists `token`, compared without regard to case.
pub(crate) fn has_token<'a>(mut values: impl Iterator<Item = &'a [u8]>, token: &str) -> bool {
    values.any(|value| {
        value
            .split(|&b| b == b',')
            .any(|element| trim_ows(element).eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// The value of a header that may appear at most once, trimmed: `Ok(None)` when `values` is
/// empty, `Err(())` when it holds more than one value or the value is not visible ASCII.
pub(crate) fn single<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<&'a str>, ()> {
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    let value = visible_ascii(value).ok_or(())?;
    Ok(Some(value.trim_matches([' ', '\t'])))
}

/// The first value in `values` as text, trimmed, if it is visible ASCII (later values are not
/// looked at).
pub(crate) fn first<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Option<&'a str> {
    values
        .next()
        .and_then(visible_ascii)
        .map(|value| value.trim_matches([' ', '\t']))
}

/// Checks a header the calling code wants to send: the name must be a token and the value free
/// of control characters other than HTAB (so no CR or LF can start a new header line), and the
/// name must not be one of `reserved` (headers the handshake writes itself).
pub(crate) fn check_header(
    name: &str,
    value: &str,
    reserved: &[&'static str],
) -> Result<(), HandshakeError> {
    if !is_token(name) {
        return Err(HandshakeError::InvalidInput("header name is not a token"));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HandshakeError::InvalidInput(
            "header value contains a control character",
        ));
    }
    if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(HandshakeError::InvalidInput(
            "header is set by the handshake itself",
        ));
    }
    Ok(())
}

/// Appends `name: value\r\n`. The caller has checked both with [`check_header`] or they are
/// constants.
pub(crate) fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value` to `headers`. The caller has checked both with [`check_header`] or
/// they are constants, so this fails only on a name or value [`check_header`] let through and
/// the `http` crate does not take.
pub(crate) fn append_header(
    headers: &mut HeaderMap,
    name: &str,
    value: &str,
) -> Result<(), HandshakeError> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| HandshakeError::InvalidInput("header name is not a token"))?;
    let value = HeaderValue::from_str(value)
        .map_err(|_| HandshakeError::InvalidInput("header value contains a control character"))?;
    headers.append(name, value);
    Ok(())
}

/// The reason phrase for `status`, empty when unknown (RFC 9112 §4 allows that).
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Appends the status line `HTTP/1.1 {status} {reason}\r\n`.
pub(crate) fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// A complete rejection: status line, `extra` headers (already checked), a text/plain content
/// type unless `extra` has one, `Content-Length`, `Connection: {connection}`, blank line, body.
pub(crate) fn write_rejection(
    status: u16,
    extra: &[HeaderLine<'_>],
    connection: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    write_status_line(&mut out, status);
    for (name, value) in extra {
        write_header(&mut out, name, value);
    }
    if !extra
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        write_header(&mut out, "Content-Type", "text/plain; charset=utf-8");
    }
    write_header(&mut out, "Content-Length", &body.len().to_string());
    write_header(&mut out, "Connection", connection);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn tokens_are_found_inside_comma_lists_in_any_case() {
        let headers = map(&[("connection", "keep-alive, Upgrade")]);
        assert!(has_token(map_values(&headers, "connection"), "upgrade"));
        let headers = map(&[("connection", "keep-alive"), ("connection", " UPGRADE\t")]);
        assert!(has_token(map_values(&headers, "Connection"), "upgrade"));
        let headers = map(&[("connection", "keep-alive, upgrades")]);
        assert!(!has_token(map_values(&headers, "connection"), "upgrade"));
    }

    #[test]
    fn list_elements_span_all_headers_and_skip_empty_ones() {
        let headers = map(&[("x", "a, b,,"), ("x", " c ")]);
        assert_eq!(
            list_elements(map_values(&headers, "x")).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        let raw: [&[u8]; 3] = [b"a", b"b\x80, x", b"\tc"];
        assert_eq!(
            list_elements(raw.into_iter()).collect::<Vec<_>>(),
            ["a", "c"]
        );
    }

    #[test]
    fn single_rejects_repeated_headers() {
        assert_eq!(
            single(map_values(&map(&[("x", " 1 ")]), "x")),
            Ok(Some("1"))
        );
        assert_eq!(single(map_values(&map(&[]), "x")), Ok(None));
        let twice = map(&[("x", "1"), ("x", "1")]);
        assert_eq!(single(map_values(&twice, "x")), Err(()));
        assert_eq!(single([b"\x80".as_slice()].into_iter()), Err(()));
    }

    #[test]
    fn first_looks_at_the_first_value_only() {
        let raw: [&[u8]; 2] = [b" a\t", b"b"];
        assert_eq!(first(raw.into_iter()), Some("a"));
        let raw: [&[u8]; 2] = [b"\xff", b"b"];
        assert_eq!(first(raw.into_iter()), None);
        assert_eq!(first(map_values(&map(&[("x", "v")]), "X")), Some("v"));
        // An invalid name finds nothing, as HeaderMap::get does.
        assert_eq!(first(map_values(&map(&[("x", "v")]), "x y")), None);
    }

    /// The copies of the `http` crate's value rules agree with it on every byte.
    #[test]
    fn value_rules_match_the_http_crate() {
        for b in 0..=u8::MAX {
            let value = [b'a', b, b'z'];
            assert_eq!(
                check_header_line(b"x", &value).is_ok(),
                HeaderValue::from_bytes(&value).is_ok(),
                "{b:#04x}"
            );
            let text = HeaderValue::from_bytes(&value)
                .ok()
                .and_then(|v| v.to_str().ok().map(str::to_owned));
            assert_eq!(visible_ascii(&value).map(str::to_owned), text, "{b:#04x}");
        }
    }

    #[test]
    fn header_input_with_cr_or_lf_is_refused() {
        assert!(check_header("X-A", "ok\tvalue", &[]).is_ok());
        assert!(check_header("X-A", "a\r\nX-Evil: 1", &[]).is_err());
        assert!(check_header("X-A", "a\nb", &[]).is_err());
        assert!(check_header("X-A", "a\0b", &[]).is_err());
        assert!(check_header("X A", "v", &[]).is_err());
        assert!(check_header("X-A:", "v", &[]).is_err());
        assert!(check_header("", "v", &[]).is_err());
        assert!(check_header("upgrade", "v", &["Upgrade"]).is_err());
    }

    #[test]
    fn trim_ows_handles_blank_input() {
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
        assert_eq!(trim_ows(b" a b "), b"a b");
    }

    #[test]
    fn unknown_status_has_empty_reason() {
        assert_eq!(reason_phrase(403), "Forbidden");
        assert_eq!(reason_phrase(599), "");
    }
}

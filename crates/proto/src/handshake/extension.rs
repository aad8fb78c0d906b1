//! `Sec-WebSocket-Extensions` values (RFC 6455 §9.1): a comma list of extensions, each a token
//! with `;`-separated parameters whose values are tokens or quoted strings.

use std::fmt;

use super::HandshakeError;
use super::http_util::{is_tchar, is_token};

/// One extension of a `Sec-WebSocket-Extensions` header: a name and its parameters, in order.
///
/// `Display` writes it back in header syntax (`permessage-deflate; client_max_window_bits=10`),
/// so a list is formatted by joining extensions with `", "`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Extension {
    /// The extension token, such as `permessage-deflate`.
    pub name: String,
    /// The parameters: name and value, `None` for a parameter given without `=`. Quoted values
    /// are stored unescaped.
    pub params: Vec<(String, Option<String>)>,
}

impl Extension {
    /// An extension without parameters.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// The first parameter called `name` (compared without regard to case): `None` when absent,
    /// `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Parses one `Sec-WebSocket-Extensions` header value. Empty list elements are skipped
    /// (RFC 9110 §5.6.1), so an empty value gives an empty list.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidHeader`] when the value does not follow the grammar of
    /// RFC 6455 §9.1, including a quoted value that is not a token once unescaped.
    pub fn parse_list(value: &str) -> Result<Vec<Self>, HandshakeError> {
        let mut out = Vec::new();
        parse_into(value, &mut out)?;
        Ok(out)
    }
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for (name, value) in &self.params {
            write!(f, "; {name}")?;
            match value {
                Some(value) if is_token(value) => write!(f, "={value}")?,
                Some(value) => {
                    f.write_str("=\"")?;
                    for c in value.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                }
                None => {}
            }
        }
        Ok(())
    }
}

const INVALID: HandshakeError = HandshakeError::InvalidHeader("sec-websocket-extensions");

/// Parses `value` and appends its extensions to `out`.
pub(crate) fn parse_into(value: &str, out: &mut Vec<Extension>) -> Result<(), HandshakeError> {
    let mut cursor = Cursor {
        bytes: value.as_bytes(),
        pos: 0,
    };
    loop {
        cursor.skip_ows();
        match cursor.peek() {
            None => return Ok(()),
            Some(b',') => {
                cursor.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let mut extension = Extension::new(cursor.token()?);
        loop {
            cursor.skip_ows();
            if !cursor.eat(b';') {
                break;
            }
            cursor.skip_ows();
            let name = cursor.token()?;
            cursor.skip_ows();
            let value = if cursor.eat(b'=') {
                cursor.skip_ows();
                Some(if cursor.peek() == Some(b'"') {
                    cursor.quoted()?
                } else {
                    cursor.token()?
                })
            } else {
                None
            };
            extension.params.push((name, value));
        }
        out.push(extension);
        match cursor.peek() {
            None => return Ok(()),
            Some(b',') => cursor.pos += 1,
            Some(_) => return Err(INVALID),
        }
    }
}

/// A position in a header value.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let found = self.peek() == Some(b);
        if found {
            self.pos += 1;
        }
        found
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> Result<String, HandshakeError> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        match self.bytes.get(start..self.pos) {
            Some(token) if !token.is_empty() => {
                // Token bytes are ASCII, so this never fails.
                String::from_utf8(token.to_vec()).map_err(|_| INVALID)
            }
            _ => Err(INVALID),
        }
    }

    /// A quoted-string (RFC 9110 §5.6.4) whose unescaped text must be a token (RFC 6455 §9.1).
    fn quoted(&mut self) -> Result<String, HandshakeError> {
        if !self.eat(b'"') {
            return Err(INVALID);
        }
        let mut text = String::new();
        loop {
            let b = self.peek().ok_or(INVALID)?;
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let escaped = self.peek().ok_or(INVALID)?;
                    self.pos += 1;
                    text.push(char::from(escaped));
                }
                _ => text.push(char::from(b)),
            }
        }
        if is_token(&text) {
            Ok(text)
        } else {
            Err(INVALID)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(name: &str, params: &[(&str, Option<&str>)]) -> Extension {
        Extension {
            name: name.to_owned(),
            params: params
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.map(str::to_owned)))
                .collect(),
        }
    }

    #[test]
    fn extensions_parse_names_params_and_values() {
        let list = Extension::parse_list(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-foo",
        )
        .unwrap();
        assert_eq!(
            list,
            [
                ext(
                    "permessage-deflate",
                    &[
                        ("client_max_window_bits", None),
                        ("server_max_window_bits", Some("10"))
                    ]
                ),
                ext("x-foo", &[]),
            ]
        );
        assert_eq!(list[0].param("SERVER_MAX_WINDOW_BITS"), Some(Some("10")));
        assert_eq!(list[0].param("client_max_window_bits"), Some(None));
        assert_eq!(list[0].param("absent"), None);
    }

    #[test]
    fn extension_quoted_values_are_unescaped() {
        let list = Extension::parse_list(r#"a;b="10" ;c = "x\yz""#).unwrap();
        assert_eq!(list, [ext("a", &[("b", Some("10")), ("c", Some("xyz"))])]);
    }

    #[test]
    fn extension_quoted_value_must_be_a_token() {
        assert!(Extension::parse_list(r#"a; b="x y""#).is_err());
        assert!(Extension::parse_list(r#"a; b="x,y""#).is_err());
        assert!(Extension::parse_list(r#"a; b="""#).is_err());
        assert!(Extension::parse_list(r#"a; b="unterminated"#).is_err());
        assert!(Extension::parse_list(r#"a; b="x\"#).is_err());
    }

    #[test]
    fn extension_syntax_errors_are_invalid_header() {
        for bad in [
            "a;", "a; =1", "a b", ";a", "a; b=", "a, b c", "a; b=1 2", "a/b",
        ] {
            assert_eq!(
                Extension::parse_list(bad),
                Err(HandshakeError::InvalidHeader("sec-websocket-extensions")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn extension_empty_elements_are_skipped() {
        assert_eq!(Extension::parse_list("").unwrap(), []);
        assert_eq!(
            Extension::parse_list(" , a ,, b ,").unwrap(),
            [ext("a", &[]), ext("b", &[])]
        );
    }

    #[test]
    fn extension_display_round_trips() {
        let text = "permessage-deflate; client_max_window_bits; server_max_window_bits=10";
        let list = Extension::parse_list(text).unwrap();
        assert_eq!(list[0].to_string(), text);
        let odd = ext("a", &[("b", Some("x \"y\""))]);
        assert_eq!(odd.to_string(), r#"a; b="x \"y\"""#);
    }
}

//! Close codes and close frames (RFC 6455 §5.5.1 and §7.4).
//!
//! A close payload is empty, or a 2-byte code followed by at most 123 bytes of UTF-8 reason.
//! Which codes may travel on the wire is decided here and nowhere else.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ApiMisuse, ProtocolError};

/// A close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a kind of data this endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present. Reported locally, never sent.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame. Reported locally, never sent.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: message data inconsistent with its type (invalid UTF-8 in a text message).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message that violates the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway got an invalid response upstream (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: the TLS handshake failed. Reported locally, never sent.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Wraps any number; whether it may be sent is asked with [`CloseCode::is_valid_on_wire`].
    pub const fn new(code: u16) -> Self {
        Self(code)
    }

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether this code may appear in a close frame (RFC 6455 §7.4.1 and §7.4.2, plus the
    /// codes IANA registered since: 1012–1014).
    ///
    /// 1004 is reserved, 1005, 1006 and 1015 are only for reporting, and everything else in
    /// 0–2999 is unassigned. 3000–3999 are for libraries and frameworks, 4000–4999 private.
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether application code may close with this code, following the browser API's rule
    /// (1000, or 3000–4999); the protocol's own codes are sent by the library itself.
    pub const fn is_allowed_for_application(self) -> bool {
        matches!(self.0, 1000 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The content of a close frame that carried a status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, valid UTF-8 of at most [`CloseFrame::MAX_REASON_LEN`] bytes.
    pub reason: String,
}

impl CloseFrame {
    /// The longest close reason that fits a control frame: 125 bytes minus the 2-byte code.
    pub const MAX_REASON_LEN: usize = 123;

    /// A close frame with `code` and `reason`, checked as an application's call is checked.
    ///
    /// # Errors
    /// [`ApiMisuse::InvalidCloseCode`] when the code may not be sent, and
    /// [`ApiMisuse::CloseReasonTooLong`] when the reason exceeds 123 bytes.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Result<Self, ApiMisuse> {
        let reason = reason.into();
        if !code.is_valid_on_wire() {
            return Err(ApiMisuse::InvalidCloseCode(code.as_u16()));
        }
        if reason.len() > Self::MAX_REASON_LEN {
            return Err(ApiMisuse::CloseReasonTooLong(reason.len()));
        }
        Ok(Self { code, reason })
    }

    /// Parses a received close payload: `Ok(None)` for an empty payload (no status code).
    ///
    /// # Errors
    /// A 1-byte payload, a code that may not be sent, or a reason that is not UTF-8 are
    /// protocol errors (RFC 6455 §5.5.1, §7.4).
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ProtocolError> {
        match payload {
            [] => Ok(None),
            [_] => Err(ProtocolError::CloseFrameOneByte),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_valid_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
                let reason = simdutf8::basic::from_utf8(reason)
                    .map_err(|_| ProtocolError::InvalidCloseReasonUtf8)?;
                Ok(Some(Self {
                    code,
                    reason: reason.to_owned(),
                }))
            }
        }
    }

    /// The frame payload: the code in network byte order followed by the reason.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(2 + self.reason.len());
        out.put_u16(self.code.0);
        out.put_slice(self.reason.as_bytes());
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_payload_of_one_byte_is_a_protocol_error() {
        assert_eq!(
            CloseFrame::parse(&[0x03]),
            Err(ProtocolError::CloseFrameOneByte)
        );
    }

    #[test]
    fn empty_close_payload_has_no_status() {
        assert_eq!(CloseFrame::parse(&[]), Ok(None));
    }

    #[test]
    fn invalid_close_codes_are_protocol_errors() {
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let payload = code.to_be_bytes();
            assert_eq!(
                CloseFrame::parse(&payload),
                Err(ProtocolError::InvalidCloseCode(code)),
                "code {code}"
            );
        }
    }

    #[test]
    fn valid_close_codes_parse() {
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            let frame = CloseFrame::parse(&code.to_be_bytes()).unwrap().unwrap();
            assert_eq!(frame.code.as_u16(), code);
            assert_eq!(frame.reason, "");
        }
    }

    #[test]
    fn invalid_utf8_in_close_reason_is_an_error() {
        let payload = [
            0x03, 0xe8, b'o', b'k', 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce,
            0xb5, 0xed, 0xa0, 0x80, 0x65,
        ];
        assert_eq!(
            CloseFrame::parse(&payload),
            Err(ProtocolError::InvalidCloseReasonUtf8)
        );
    }

    #[test]
    fn close_frame_round_trips() {
        let frame = CloseFrame::new(CloseCode::GOING_AWAY, "bye κόσμε").unwrap();
        assert_eq!(CloseFrame::parse(&frame.encode()), Ok(Some(frame)));
    }

    #[test]
    fn application_rules_follow_the_browser() {
        assert!(CloseCode::NORMAL.is_allowed_for_application());
        assert!(CloseCode::new(3000).is_allowed_for_application());
        assert!(CloseCode::new(4999).is_allowed_for_application());
        assert!(!CloseCode::GOING_AWAY.is_allowed_for_application());
        assert!(!CloseCode::new(5000).is_allowed_for_application());
        assert_eq!(
            CloseFrame::new(CloseCode::NORMAL, "x".repeat(124)),
            Err(ApiMisuse::CloseReasonTooLong(124))
        );
        assert_eq!(
            CloseFrame::new(CloseCode::NO_STATUS, ""),
            Err(ApiMisuse::InvalidCloseCode(1005))
        );
    }
}

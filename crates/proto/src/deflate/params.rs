//! Negotiating permessage-deflate in the opening handshake (RFC 7692 §5 and §7.1): the
//! client's offer, the server's choice among the offers, and the client's check of the answer.

use super::{
    DEFAULT_LEVEL, DEFAULT_MEM_LEVEL, DEFAULT_THRESHOLD, DEFAULT_WINDOW_BITS, EXTENSION_NAME,
    MAX_MEM_LEVEL, MAX_WINDOW_BITS, MIN_MEM_LEVEL, MIN_WINDOW_BITS,
};
use crate::HandshakeError;
use crate::handshake::Extension;

/// What this side wants from permessage-deflate; the same settings serve both roles.
///
/// `DeflateConfig::default()` is what Python's `websockets` chooses. As a server it keeps
/// context takeover both ways and asks for 12-bit (4 KiB) windows: its own always
/// (`server_max_window_bits=12`), the client's when the client's offer carries
/// `client_max_window_bits` (browsers' offers do). As a client it offers
/// `permessage-deflate; client_max_window_bits`: no request of its own, and the server may
/// limit our window (15 bits when it does not). Either way messages of 32 bytes or more are
/// compressed at level 6 with zlib memory level 5.
///
/// | setting | as a server | as a client |
/// | --- | --- | --- |
/// | [`server_no_context_takeover`](Self::server_no_context_takeover) | always answer `server_no_context_takeover`: each message compressed on its own, with a compressor the thread lends (the connection keeps none) | offer it: ask the server to reset its compressor (a server that cannot declines the offer) |
/// | [`client_no_context_takeover`](Self::client_no_context_takeover) | answer `client_no_context_takeover`: ask the client to reset its compressor | offer it; each message compressed on its own, with a compressor the thread lends |
/// | [`server_max_window_bits`](Self::server_max_window_bits) | the largest window we compress with, answered when below 15 or asked for. Default 12 | below 15: offer `server_max_window_bits=N`, the largest window the server may use. Default: not offered (the server chooses) |
/// | [`client_max_window_bits`](Self::client_max_window_bits) | below 15: limit the client's window when its offer allows it. Default 12 | the largest window we compress with: `client_max_window_bits` is offered bare at 15, `=N` below. Default: offered bare (the server chooses; 15 when it does not) |
/// | [`threshold`](Self::threshold), [`level`](Self::level), [`mem_level`](Self::mem_level) | not negotiated: how this side compresses | the same |
///
/// **Memory.** Per connection, a side keeps its compressor when it compresses with context
/// takeover (zlib-rs: a 128 KiB hash table whatever the settings, twice the window, two bytes
/// per window position, and buffers of 7 bytes × 2^(memory level + 6) as large messages
/// fill them: about 160 KiB with the defaults), and the peer's context when the peer keeps
/// one (the last bytes it compressed, up to its window: 4 KiB at 12 bits). Without context
/// takeover the thread lends a compressor for each message, and the decompressor is always
/// the thread's. The README's permessage-deflate section has the measurements.
///
/// Server side:
///
/// ```
/// use wsworker_proto::deflate::DeflateConfig;
/// use wsworker_proto::handshake::Extension;
///
/// // Chromium's offer, answered as Python's websockets answers it.
/// let offers = Extension::parse_list("permessage-deflate; client_max_window_bits").unwrap();
/// let config = DeflateConfig::default();
/// let (params, response) = config.negotiate(&offers).expect("an acceptable offer");
/// assert_eq!(
///     response,
///     "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
/// );
/// assert_eq!(params.client_max_window_bits, 12);
/// // 15 bits: no limit of ours, nothing to answer.
/// let config = DeflateConfig::default().server_max_window_bits(15).client_max_window_bits(15);
/// let (params, response) = config.negotiate(&offers).expect("an acceptable offer");
/// assert_eq!(response, "permessage-deflate");
/// assert_eq!(params.client_max_window_bits, 15);
/// ```
///
/// Client side:
///
/// ```
/// use wsworker_proto::deflate::DeflateConfig;
/// use wsworker_proto::handshake::Extension;
///
/// let config = DeflateConfig::default();
/// assert_eq!(config.offer(), "permessage-deflate; client_max_window_bits");
/// let answer = Extension::parse_list("permessage-deflate; server_no_context_takeover").unwrap();
/// let params = config.accept_response(&answer).unwrap().expect("compression is on");
/// assert!(params.server_no_context_takeover);
/// // A parameter the offer did not allow fails the connection.
/// let bad = Extension::parse_list("permessage-deflate; server_max_window_bits=16").unwrap();
/// assert!(config.accept_response(&bad).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    /// `None` until set: the role's default (a server's [`DEFAULT_WINDOW_BITS`], a client
    /// asks for nothing).
    server_max_window_bits: Option<u8>,
    /// `None` until set: the role's default (a server's [`DEFAULT_WINDOW_BITS`], a client
    /// offers the parameter bare).
    client_max_window_bits: Option<u8>,
    threshold: usize,
    level: u8,
    mem_level: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            threshold: DEFAULT_THRESHOLD,
            level: DEFAULT_LEVEL,
            mem_level: DEFAULT_MEM_LEVEL,
        }
    }
}

/// The parameters in force on a connection once the handshake agreed on permessage-deflate,
/// with this side's own compression settings. Pass them to
/// [`Config::deflate`](crate::Config::deflate).
///
/// The window sizes are the largest each side compresses with (8 to 15, in bits); a side with
/// "no context takeover" starts every message with an empty window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, 8 to 15 bits.
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, 8 to 15 bits.
    pub client_max_window_bits: u8,
    /// Not negotiated: outgoing messages shorter than this are sent uncompressed.
    pub threshold: usize,
    /// Not negotiated: the compression level, 0 to 9 (above 9 is taken as 9).
    pub level: u8,
    /// Not negotiated: zlib's memory level of the compressor, 1 to 9 (values outside are
    /// taken as the nearest). See [`DeflateConfig::mem_level`].
    pub mem_level: u8,
}

impl Default for DeflateParams {
    /// Context takeover and 15-bit windows both ways, what an offer and an answer without
    /// parameters agree on; the default threshold, level and memory level.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            threshold: DEFAULT_THRESHOLD,
            level: DEFAULT_LEVEL,
            mem_level: DEFAULT_MEM_LEVEL,
        }
    }
}

impl DeflateConfig {
    /// Whether the server resets its compressor after each message (see the table on
    /// [`DeflateConfig`]). Default `false`.
    #[must_use]
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Whether the client resets its compressor after each message. Default `false`.
    #[must_use]
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// The server's largest LZ77 window in bits, clamped to 8..=15. Default: as a server
    /// 12 ([`DEFAULT_WINDOW_BITS`]); as a client not offered, so 15 unless the server
    /// chooses less. 15 on a server answers nothing and compresses with 32 KiB windows.
    #[must_use]
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = Some(bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS));
        self
    }

    /// The client's largest LZ77 window in bits, clamped to 8..=15. Default: as a server
    /// 12 ([`DEFAULT_WINDOW_BITS`]), answered to offers that carry `client_max_window_bits`;
    /// as a client offered bare, so the server's choice (15 when it makes none).
    #[must_use]
    pub fn client_max_window_bits(mut self, bits: u8) -> Self {
        self.client_max_window_bits = Some(bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS));
        self
    }

    /// Outgoing messages shorter than this many bytes are sent uncompressed: on short
    /// messages compression saves little and costs a compressor's memory. Default 32.
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The compression level, clamped to 0..=9 (0 stores, 1 is fastest, 9 smallest).
    /// Default 6.
    #[must_use]
    pub fn level(mut self, level: u8) -> Self {
        self.level = level.min(9);
        self
    }

    /// zlib's memory level for the compressor, clamped to 1..=9: the size of its buffers of
    /// pending symbols and output (7 bytes for each of 2^(level + 6) symbols: 14 KiB at 5,
    /// 112 KiB at 8, zlib's own default), which sets how long a deflate block may be. Lower saves memory
    /// on large messages for a little compression; small messages use only the start of the
    /// buffer. (zlib-rs, unlike zlib, keeps a 128 KiB hash table at every level.) Not
    /// negotiated. Default 5, as Python's `websockets` uses.
    #[must_use]
    pub fn mem_level(mut self, level: u8) -> Self {
        self.mem_level = level.clamp(MIN_MEM_LEVEL, MAX_MEM_LEVEL);
        self
    }

    /// The configured threshold.
    pub fn threshold_value(&self) -> usize {
        self.threshold
    }

    /// The configured compression level.
    pub fn level_value(&self) -> u8 {
        self.level
    }

    /// The configured memory level.
    pub fn mem_level_value(&self) -> u8 {
        self.mem_level
    }

    // ----- server ----------------------------------------------------------------------------

    /// Server side: picks the first acceptable `permessage-deflate` offer among `offers` (all
    /// the client's extensions, in order) and returns the parameters in force and the
    /// `Sec-WebSocket-Extensions` value that accepts it; `None` when no offer is acceptable,
    /// and the connection goes on without compression.
    ///
    /// An offer is declined (RFC 7692 §5) when it has a parameter this extension does not
    /// define, a value that is not allowed (window bits other than a plain decimal 8 to 15, a
    /// value on a `*_no_context_takeover`), or the same parameter twice. Otherwise the answer
    /// follows §7.1: the client's requests are granted (`server_no_context_takeover`, a
    /// smaller `server_max_window_bits`), this side's own settings are added, and
    /// `client_max_window_bits` is only answered when the offer carries it.
    pub fn negotiate(&self, offers: &[Extension]) -> Option<(DeflateParams, String)> {
        offers
            .iter()
            .filter(|offer| offer.name.eq_ignore_ascii_case(EXTENSION_NAME))
            .find_map(|offer| self.accept_offer(offer))
    }

    fn accept_offer(&self, offer: &Extension) -> Option<(DeflateParams, String)> {
        let offered = Written::parse(offer, Side::Offer).ok()?;
        let server_no_context_takeover =
            offered.server_no_context_takeover || self.server_no_context_takeover;
        let client_no_context_takeover =
            offered.client_no_context_takeover || self.client_no_context_takeover;
        // server_max_window_bits: the client's limit, or ours when smaller; ours alone is
        // only written when it limits anything.
        let ours = self.server_max_window_bits.unwrap_or(DEFAULT_WINDOW_BITS);
        let server_bits = match offered.server_max_window_bits {
            Some(asked) => Some(asked.min(ours)),
            None => (ours < MAX_WINDOW_BITS).then_some(ours),
        };
        // client_max_window_bits: only in answer to an offer that carries it (§7.1.2.2).
        // A value in the offer is only a hint, so it is written back (lowered to ours if
        // need be) to bind the client to it; unanswered, the client may use 15 bits.
        let ours = self.client_max_window_bits.unwrap_or(DEFAULT_WINDOW_BITS);
        let (client_bits, client_bits_answer) = match offered.client_max_window_bits {
            None => (MAX_WINDOW_BITS, None),
            Some(None) => (ours, (ours < MAX_WINDOW_BITS).then_some(ours)),
            Some(Some(theirs)) => {
                let bits = theirs.min(ours);
                (bits, Some(bits))
            }
        };
        let answer = Written {
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits_answer.map(Some),
        };
        let params = DeflateParams {
            server_no_context_takeover,
            client_no_context_takeover,
            server_max_window_bits: server_bits.unwrap_or(MAX_WINDOW_BITS),
            client_max_window_bits: client_bits,
            threshold: self.threshold,
            level: self.level,
            mem_level: self.mem_level,
        };
        Some((params, answer.to_header()))
    }

    // ----- client ----------------------------------------------------------------------------

    /// Client side: the `Sec-WebSocket-Extensions` value offering permessage-deflate with
    /// these settings. `client_max_window_bits` is always offered (bare unless set below
    /// 15), so the server may limit our window, as browsers do; `server_max_window_bits`
    /// only when set below 15.
    pub fn offer(&self) -> String {
        Written {
            server_no_context_takeover: self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: self.asked_server_window_bits(),
            client_max_window_bits: Some(
                self.client_max_window_bits
                    .filter(|&bits| bits < MAX_WINDOW_BITS),
            ),
        }
        .to_header()
    }

    /// Client side: the `server_max_window_bits` we offer, if any.
    fn asked_server_window_bits(&self) -> Option<u8> {
        self.server_max_window_bits
            .filter(|&bits| bits < MAX_WINDOW_BITS)
    }

    /// Client side: checks the extensions the server accepted (the parsed
    /// `Sec-WebSocket-Extensions` of its 101 response) against [`offer`](Self::offer):
    /// `Ok(None)` when the server did not accept permessage-deflate, the parameters in force
    /// when it did.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidResponse`] when the answer breaks RFC 7692 §5 or §7.1, and the
    /// client must fail the connection: permessage-deflate accepted twice, a parameter not
    /// defined for a response or given twice, a value that is not allowed (including a bare
    /// `client_max_window_bits`), `server_no_context_takeover` missing when we asked for it,
    /// `server_max_window_bits` missing or larger than we asked, `client_max_window_bits`
    /// larger than we offered.
    pub fn accept_response(
        &self,
        accepted: &[Extension],
    ) -> Result<Option<DeflateParams>, HandshakeError> {
        let mut answers = accepted
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME));
        let Some(answer) = answers.next() else {
            return Ok(None);
        };
        if answers.next().is_some() {
            return Err(invalid("permessage-deflate accepted twice"));
        }
        let answer = Written::parse(answer, Side::Response).map_err(ParamError::into_error)?;
        if self.server_no_context_takeover && !answer.server_no_context_takeover {
            return Err(invalid(
                "permessage-deflate: server_no_context_takeover was asked for",
            ));
        }
        let asked = self.asked_server_window_bits();
        let server_bits = match answer.server_max_window_bits {
            None if asked.is_some() => {
                return Err(invalid(
                    "permessage-deflate: server_max_window_bits was asked for",
                ));
            }
            None => MAX_WINDOW_BITS,
            Some(bits) if bits > asked.unwrap_or(MAX_WINDOW_BITS) => {
                return Err(invalid(
                    "permessage-deflate: server_max_window_bits above the offer",
                ));
            }
            Some(bits) => bits,
        };
        let ours = self.client_max_window_bits.unwrap_or(MAX_WINDOW_BITS);
        let client_bits = match answer.client_max_window_bits.flatten() {
            None => ours,
            Some(bits) if bits > ours => {
                return Err(invalid(
                    "permessage-deflate: client_max_window_bits above the offer",
                ));
            }
            Some(bits) => bits,
        };
        Ok(Some(DeflateParams {
            server_no_context_takeover: answer.server_no_context_takeover,
            client_no_context_takeover: answer.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
            threshold: self.threshold,
            level: self.level,
            mem_level: self.mem_level,
        }))
    }
}

fn invalid(reason: &'static str) -> HandshakeError {
    HandshakeError::InvalidResponse(reason)
}

/// Where a parameter list comes from: a client's offer may carry `client_max_window_bits`
/// without a value, a server's response may not (RFC 7692 §7.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Offer,
    Response,
}

/// Why a parameter list is not acceptable (RFC 7692 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamError {
    Unknown,
    InvalidValue,
    Duplicate,
}

impl ParamError {
    fn into_error(self) -> HandshakeError {
        invalid(match self {
            Self::Unknown => "permessage-deflate: unknown parameter",
            Self::InvalidValue => "permessage-deflate: invalid parameter value",
            Self::Duplicate => "permessage-deflate: repeated parameter",
        })
    }
}

/// The four parameters as written in one offer or response. `client_max_window_bits` is
/// `Some(None)` when written without a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Written {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

impl Written {
    fn parse(extension: &Extension, side: Side) -> Result<Self, ParamError> {
        let mut out = Self::default();
        for (name, value) in &extension.params {
            let value = value.as_deref();
            if name.eq_ignore_ascii_case("server_no_context_takeover") {
                flag(&mut out.server_no_context_takeover, value)?;
            } else if name.eq_ignore_ascii_case("client_no_context_takeover") {
                flag(&mut out.client_no_context_takeover, value)?;
            } else if name.eq_ignore_ascii_case("server_max_window_bits") {
                if out.server_max_window_bits.is_some() {
                    return Err(ParamError::Duplicate);
                }
                out.server_max_window_bits = Some(
                    value
                        .and_then(window_bits)
                        .ok_or(ParamError::InvalidValue)?,
                );
            } else if name.eq_ignore_ascii_case("client_max_window_bits") {
                if out.client_max_window_bits.is_some() {
                    return Err(ParamError::Duplicate);
                }
                out.client_max_window_bits = Some(match (value, side) {
                    (None, Side::Offer) => None,
                    (None, Side::Response) => return Err(ParamError::InvalidValue),
                    (Some(v), _) => Some(window_bits(v).ok_or(ParamError::InvalidValue)?),
                });
            } else {
                return Err(ParamError::Unknown);
            }
        }
        Ok(out)
    }

    /// The extension in header syntax, parameters in the order RFC 7692's examples use.
    fn to_header(self) -> String {
        let mut out = String::from(EXTENSION_NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if let Some(bits) = self.server_max_window_bits {
            out.push_str(&format!("; server_max_window_bits={bits}"));
        }
        match self.client_max_window_bits {
            None => {}
            Some(None) => out.push_str("; client_max_window_bits"),
            Some(Some(bits)) => out.push_str(&format!("; client_max_window_bits={bits}")),
        }
        out
    }
}

/// A `*_no_context_takeover` parameter: no value, at most once.
fn flag(seen: &mut bool, value: Option<&str>) -> Result<(), ParamError> {
    if *seen {
        return Err(ParamError::Duplicate);
    }
    if value.is_some() {
        return Err(ParamError::InvalidValue);
    }
    *seen = true;
    Ok(())
}

/// A window size: a decimal 8 to 15 without leading zeros (RFC 7692 §7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    match value {
        "8" => Some(8),
        "9" => Some(9),
        "10" => Some(10),
        "11" => Some(11),
        "12" => Some(12),
        "13" => Some(13),
        "14" => Some(14),
        "15" => Some(15),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offers(header: &str) -> Vec<Extension> {
        Extension::parse_list(header).unwrap()
    }

    fn server_answer(config: &DeflateConfig, header: &str) -> Option<(DeflateParams, String)> {
        config.negotiate(&offers(header))
    }

    /// RFC 7692's own defaults: no window limit of our own, so that each rule shows alone.
    fn wide() -> DeflateConfig {
        DeflateConfig::default()
            .server_max_window_bits(15)
            .client_max_window_bits(15)
    }

    fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
            ..DeflateParams::default()
        }
    }

    // ----- §7.1 server side: the answer ---------------------------------------------------

    #[test]
    fn rfc7692_7_1_offer_without_parameters_is_accepted_without_parameters() {
        let (p, answer) = server_answer(&wide(), "permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert_eq!(p, DeflateParams::default());
    }

    #[test]
    fn rfc7692_7_1_1_1_server_no_context_takeover_asked_is_granted() {
        let (p, answer) =
            server_answer(&wide(), "permessage-deflate; server_no_context_takeover").unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
        assert_eq!(p, params(true, false, 15, 15));
    }

    #[test]
    fn rfc7692_7_1_1_1_server_may_add_server_no_context_takeover() {
        let config = wide().server_no_context_takeover(true);
        let (p, answer) = server_answer(&config, "permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
        assert!(p.server_no_context_takeover);
    }

    #[test]
    fn rfc7692_7_1_1_2_client_no_context_takeover_is_echoed_or_added() {
        let (p, answer) =
            server_answer(&wide(), "permessage-deflate; client_no_context_takeover").unwrap();
        assert_eq!(answer, "permessage-deflate; client_no_context_takeover");
        assert!(p.client_no_context_takeover);
        let config = wide().client_no_context_takeover(true);
        let (p, answer) = server_answer(&config, "permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate; client_no_context_takeover");
        assert!(p.client_no_context_takeover);
    }

    #[test]
    fn rfc7692_7_1_2_1_server_max_window_bits_asked_is_granted_or_lowered() {
        let (p, answer) = server_answer(
            &DeflateConfig::default(),
            "permessage-deflate; server_max_window_bits=10",
        )
        .unwrap();
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(p.server_max_window_bits, 10);
        let config = DeflateConfig::default().server_max_window_bits(9);
        let (p, answer) =
            server_answer(&config, "permessage-deflate; server_max_window_bits=12").unwrap();
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=9");
        assert_eq!(p.server_max_window_bits, 9);
        // Not asked for: our own limit is still announced.
        let (p, answer) = server_answer(&config, "permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=9");
        assert_eq!(p.server_max_window_bits, 9);
    }

    #[test]
    fn rfc7692_7_1_2_2_client_max_window_bits_answered_only_when_offered() {
        let config = wide().client_max_window_bits(10);
        // Not in the offer: the server must not send it, and the client keeps 15.
        let (p, answer) = server_answer(&config, "permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert_eq!(p.client_max_window_bits, 15);
        // Bare in the offer: the server may set it.
        let (p, answer) =
            server_answer(&config, "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(answer, "permessage-deflate; client_max_window_bits=10");
        assert_eq!(p.client_max_window_bits, 10);
        // With a value (a hint): written back to bind the client, lowered to ours if need be.
        let (p, answer) =
            server_answer(&config, "permessage-deflate; client_max_window_bits=12").unwrap();
        assert_eq!(answer, "permessage-deflate; client_max_window_bits=10");
        assert_eq!(p.client_max_window_bits, 10);
        let (p, answer) =
            server_answer(&config, "permessage-deflate; client_max_window_bits=9").unwrap();
        assert_eq!(answer, "permessage-deflate; client_max_window_bits=9");
        assert_eq!(p.client_max_window_bits, 9);
        // No limit of ours leaves a bare offer unanswered (Chromium's offer).
        let (p, answer) =
            server_answer(&wide(), "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert_eq!(p, DeflateParams::default());
    }

    #[test]
    fn defaults_answer_as_python_websockets_does() {
        // Each offer with the answer Python's websockets 17.4 gives with its defaults
        // (server_max_window_bits=12, client_max_window_bits=12).
        for (offer, answer, sbits, cbits) in [
            (
                "permessage-deflate",
                "permessage-deflate; server_max_window_bits=12",
                12,
                15,
            ),
            (
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
                12,
                12,
            ),
            (
                "permessage-deflate; client_max_window_bits=15",
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
                12,
                12,
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                "permessage-deflate; server_max_window_bits=12",
                12,
                15,
            ),
            (
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
                10,
                9,
            ),
        ] {
            let (p, got) = server_answer(&DeflateConfig::default(), offer).unwrap();
            assert_eq!(got, answer, "{offer}");
            assert_eq!(p, params(false, false, sbits, cbits), "{offer}");
            assert_eq!((p.level, p.mem_level, p.threshold), (6, 5, 32));
        }
        // The runtime's server adds server_no_context_takeover to that.
        let config = DeflateConfig::default().server_no_context_takeover(true);
        let (p, answer) =
            server_answer(&config, "permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12; \
             client_max_window_bits=12"
        );
        assert_eq!(p, params(true, false, 12, 12));
    }

    #[test]
    fn client_defaults_offer_as_python_websockets_does() {
        let config = DeflateConfig::default();
        assert_eq!(config.offer(), "permessage-deflate; client_max_window_bits");
        // The window is the server's choice, 15 bits when it makes none.
        assert_eq!(
            client_check(
                &config,
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
            ),
            Ok(Some(params(false, false, 12, 12)))
        );
        assert_eq!(
            client_check(&config, "permessage-deflate"),
            Ok(Some(params(false, false, 15, 15)))
        );
        // Our own server's default answer.
        let (_, answer) = server_answer(&config, &config.offer()).unwrap();
        assert_eq!(
            client_check(&config, &answer),
            Ok(Some(params(false, false, 12, 12)))
        );
    }

    #[test]
    fn the_memory_level_is_carried_into_the_parameters_of_both_roles() {
        for (set, expected) in [
            (None, 5),
            (Some(1), 1),
            (Some(9), 9),
            (Some(0), 1),
            (Some(12), 9),
        ] {
            let config = match set {
                Some(level) => DeflateConfig::default().mem_level(level),
                None => DeflateConfig::default(),
            };
            assert_eq!(config.mem_level_value(), expected);
            let (server, answer) = server_answer(&config, &config.offer()).unwrap();
            assert_eq!(server.mem_level, expected);
            let client = client_check(&config, &answer).unwrap().unwrap();
            assert_eq!(client.mem_level, expected);
        }
    }

    #[test]
    fn rfc7692_5_offer_with_unknown_parameter_is_declined() {
        assert_eq!(
            server_answer(&DeflateConfig::default(), "permessage-deflate; x=1"),
            None
        );
    }

    #[test]
    fn rfc7692_5_offer_with_invalid_values_is_declined() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=true",
        ] {
            assert_eq!(server_answer(&DeflateConfig::default(), bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc7692_5_offer_with_repeated_parameter_is_declined() {
        for bad in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
        ] {
            assert_eq!(server_answer(&DeflateConfig::default(), bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc7692_5_quoted_values_are_read_unquoted() {
        let (p, _) = server_answer(
            &DeflateConfig::default(),
            r#"permessage-deflate; server_max_window_bits="10""#,
        )
        .unwrap();
        assert_eq!(p.server_max_window_bits, 10);
    }

    #[test]
    fn rfc7692_5_first_acceptable_offer_wins() {
        let (p, answer) = server_answer(
            &DeflateConfig::default(),
            "x-other, permessage-deflate; bogus, \
             permessage-deflate; server_no_context_takeover; server_max_window_bits=9, \
             permessage-deflate",
        )
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9"
        );
        assert_eq!(p, params(true, false, 9, 15));
        assert_eq!(server_answer(&DeflateConfig::default(), "x-other"), None);
    }

    #[test]
    fn autobahn_and_chromium_offers_are_accepted() {
        // Chromium.
        assert!(
            server_answer(
                &DeflateConfig::default(),
                "permessage-deflate; client_max_window_bits"
            )
            .is_some()
        );
        // Autobahn 13.7: three offers, the first acceptable wins; the client's window is
        // ours to choose.
        let (p, answer) = server_answer(
            &DeflateConfig::default(),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits; \
             server_no_context_takeover; server_max_window_bits=9, \
             permessage-deflate; client_no_context_takeover; client_max_window_bits; \
             server_no_context_takeover, \
             permessage-deflate; client_no_context_takeover; client_max_window_bits",
        )
        .unwrap();
        assert_eq!(
            answer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=12"
        );
        assert_eq!(p, params(true, true, 9, 12));
    }

    #[test]
    fn extension_name_is_matched_without_regard_to_case() {
        assert!(server_answer(&DeflateConfig::default(), "PerMessage-Deflate").is_some());
    }

    // ----- §7.1 client side: the offer and the check of the answer ------------------------

    #[test]
    fn client_offer_reflects_the_settings() {
        assert_eq!(
            DeflateConfig::default().offer(),
            "permessage-deflate; client_max_window_bits"
        );
        let config = DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(10)
            .client_max_window_bits(9);
        assert_eq!(
            config.offer(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
        // The offer is what a server parses back into the same request.
        let (p, _) = config.negotiate(&offers(&config.offer())).unwrap();
        assert_eq!(p, params(true, true, 10, 9));
    }

    fn client_check(
        config: &DeflateConfig,
        answer: &str,
    ) -> Result<Option<DeflateParams>, HandshakeError> {
        config.accept_response(&offers(answer))
    }

    #[test]
    fn client_without_deflate_in_the_answer_goes_on_uncompressed() {
        assert_eq!(client_check(&DeflateConfig::default(), "x-other"), Ok(None));
        assert_eq!(client_check(&DeflateConfig::default(), ""), Ok(None));
    }

    #[test]
    fn rfc7692_7_1_client_applies_what_the_server_answered() {
        let got = client_check(
            &DeflateConfig::default(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9",
        );
        assert_eq!(got, Ok(Some(params(true, true, 10, 9))));
    }

    #[test]
    fn rfc7692_7_1_1_1_client_fails_when_server_no_context_takeover_is_missing() {
        let config = DeflateConfig::default().server_no_context_takeover(true);
        assert!(client_check(&config, "permessage-deflate").is_err());
        assert!(client_check(&config, "permessage-deflate; server_no_context_takeover").is_ok());
    }

    #[test]
    fn rfc7692_7_1_1_2_client_keeps_its_own_no_context_takeover() {
        let config = DeflateConfig::default().client_no_context_takeover(true);
        let p = client_check(&config, "permessage-deflate")
            .unwrap()
            .unwrap();
        assert!(p.client_no_context_takeover);
    }

    #[test]
    fn rfc7692_7_1_2_1_client_fails_on_server_window_missing_or_above_the_offer() {
        let config = DeflateConfig::default().server_max_window_bits(10);
        assert!(client_check(&config, "permessage-deflate").is_err());
        assert!(client_check(&config, "permessage-deflate; server_max_window_bits=11").is_err());
        assert_eq!(
            client_check(&config, "permessage-deflate; server_max_window_bits=9"),
            Ok(Some(params(false, false, 9, 15)))
        );
        // Not asked for: any valid value is the server's own choice.
        assert_eq!(
            client_check(
                &DeflateConfig::default(),
                "permessage-deflate; server_max_window_bits=8"
            ),
            Ok(Some(params(false, false, 8, 15)))
        );
    }

    #[test]
    fn rfc7692_7_1_2_2_client_fails_on_client_window_above_the_offer_or_without_value() {
        let config = DeflateConfig::default().client_max_window_bits(10);
        assert!(client_check(&config, "permessage-deflate; client_max_window_bits=11").is_err());
        assert!(client_check(&config, "permessage-deflate; client_max_window_bits").is_err());
        assert_eq!(
            client_check(&config, "permessage-deflate; client_max_window_bits=8"),
            Ok(Some(params(false, false, 15, 8)))
        );
        assert_eq!(
            client_check(&config, "permessage-deflate"),
            Ok(Some(params(false, false, 15, 10)))
        );
    }

    #[test]
    fn rfc7692_5_client_fails_on_unknown_repeated_or_invalid_parameters() {
        for bad in [
            "permessage-deflate; x=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate, permessage-deflate",
        ] {
            assert!(
                matches!(
                    client_check(&DeflateConfig::default(), bad),
                    Err(HandshakeError::InvalidResponse(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_parameters_stay_small() {
        // Every connection's `Config` holds them: 16 bytes, and `None` costs nothing more.
        assert_eq!(size_of::<DeflateParams>(), 16);
        assert_eq!(size_of::<Option<DeflateParams>>(), 16);
    }

    #[test]
    fn settings_are_clamped() {
        let config = DeflateConfig::default()
            .server_max_window_bits(3)
            .client_max_window_bits(40)
            .level(12)
            .mem_level(0);
        assert_eq!(config.server_max_window_bits, Some(8));
        assert_eq!(config.client_max_window_bits, Some(15));
        assert_eq!(config.level_value(), 9);
        assert_eq!(config.mem_level_value(), 1);
    }
}

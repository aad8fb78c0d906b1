//! Per-connection settings: limits, how outgoing messages are framed, and (feature `deflate`)
//! the negotiated permessage-deflate parameters.

/// Settings for one [`Connection`](crate::Connection). `Config::default()` gives the
/// documented defaults; the builder methods change one setting each.
///
/// ```
/// let config = wsworker_proto::Config::default()
///     .max_message_size(1 << 20)
///     .fragment_size(Some(64 * 1024));
/// assert_eq!(config.max_frame_size_value(), 16 << 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    max_message_size: usize,
    max_frame_size: usize,
    fragment_size: Option<usize>,
    #[cfg(feature = "deflate")]
    deflate: Option<crate::deflate::DeflateParams>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: Self::DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: Self::DEFAULT_MAX_MESSAGE_SIZE,
            fragment_size: None,
            #[cfg(feature = "deflate")]
            deflate: None,
        }
    }
}

impl Config {
    /// 16 MiB: the default limit for a message and for one frame.
    pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

    /// The largest message accepted, summed over its fragments; a bigger one closes the
    /// connection with 1009 as soon as a frame header announces it. Default 16 MiB.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The largest data frame accepted (close 1009 above it, decided from the header).
    /// Default 16 MiB.
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Splits every outgoing data message into frames of at most this many payload bytes.
    /// `None` (the default) sends each message as one frame. `Some(0)` is treated as
    /// `None`.
    #[must_use]
    pub fn fragment_size(mut self, bytes: Option<usize>) -> Self {
        self.fragment_size = bytes.filter(|&n| n > 0);
        self
    }

    /// Compresses messages with permessage-deflate (RFC 7692) using the parameters the
    /// handshake agreed on ([`DeflateConfig::negotiate`] on a server,
    /// [`DeflateConfig::accept_response`] on a client), or not at all with `None` (the
    /// default). Only set parameters both sides agreed on: the peer must expect RSV1.
    ///
    /// [`DeflateConfig::negotiate`]: crate::deflate::DeflateConfig::negotiate
    /// [`DeflateConfig::accept_response`]: crate::deflate::DeflateConfig::accept_response
    #[cfg(feature = "deflate")]
    #[must_use]
    pub fn deflate(mut self, params: Option<crate::deflate::DeflateParams>) -> Self {
        self.deflate = params;
        self
    }

    /// The permessage-deflate parameters, when compression is on.
    #[cfg(feature = "deflate")]
    pub fn deflate_value(&self) -> Option<&crate::deflate::DeflateParams> {
        self.deflate.as_ref()
    }

    /// The configured message size limit.
    pub fn max_message_size_value(&self) -> usize {
        self.max_message_size
    }

    /// The configured frame size limit.
    pub fn max_frame_size_value(&self) -> usize {
        self.max_frame_size
    }

    /// The configured fragment size for outgoing messages.
    pub fn fragment_size_value(&self) -> Option<usize> {
        self.fragment_size
    }
}

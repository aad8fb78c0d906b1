//! Resume after reconnect: the subprotocol `wsworker.resume.v1`, with which a client that
//! lost its connection gets, on any node, exactly the messages it missed — once each, in
//! order, per topic — or is told per topic why not. The protocol and its guarantees are in
//! `docs/RESUME.md`; [`wire`] reads and writes its frames, and [`ClientSession`] keeps a
//! client's side of a session.

mod client;
pub mod wire;

pub use client::{ClientSession, ClientStep};

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The subprotocol's name, as offered in `Sec-WebSocket-Protocol`.
pub const PROTOCOL: &str = "wsworker.resume.v1";

/// Why a topic's missed messages could not be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// The topic's history was lost (a new epoch).
    Epoch,
    /// The messages since the client's position are no longer kept, or the session expired.
    Expired,
    /// The message at the client's offset is another one than the client saw.
    Mismatch,
    /// More messages were missed than the server replays.
    TooFar,
}

impl FailReason {
    /// The reason's name on the wire: `epoch`, `expired`, `mismatch`, `too_far`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Epoch => "epoch",
            Self::Expired => "expired",
            Self::Mismatch => "mismatch",
            Self::TooFar => "too_far",
        }
    }
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a server resumes sessions ([`Worker::resume`](crate::Endpoint::resume)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeConfig {
    pub(crate) window: Duration,
    pub(crate) max_replay: usize,
    pub(crate) max_buffered: usize,
}

impl Default for ResumeConfig {
    /// A window of 2 minutes, at most 1,000 messages replayed per topic, at most 10,000
    /// messages held for a connection while its session is being set up.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(120),
            max_replay: 1_000,
            max_buffered: 10_000,
        }
    }
}

impl ResumeConfig {
    /// How long after a connection is lost its session can be resumed (at least 1 s).
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window.max(Duration::from_secs(1));
        self
    }

    /// The most messages replayed per topic; a client that missed more fails the topic
    /// with [`FailReason::TooFar`].
    #[must_use]
    pub fn max_replay(mut self, max: usize) -> Self {
        self.max_replay = max;
        self
    }

    /// The most messages held for a connection while its session is set up (its history
    /// read); past it the connection is closed with 1013, to resume again.
    #[must_use]
    pub fn max_buffered(mut self, max: usize) -> Self {
        self.max_buffered = max.max(1);
        self
    }
}

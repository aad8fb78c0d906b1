//! The frames of one message for a fan-out, each form encoded at most once, when a recipient
//! first needs it: the plain frame, and with permessage-deflate the compressed frame of each
//! set of compression terms among the recipients (usually one: every connection of a server
//! answers with the same window), compressed once for all of them.
//!
//! Which form a connection takes is decided by its terms alone
//! ([`SharedDeflate`](wsworker_proto::deflate::SharedDeflate), noted as it opened):
//!
//! - no permessage-deflate, or a message the connection would not compress (below its
//!   threshold, or one compression does not make smaller): the plain frame;
//! - permessage-deflate with `server_no_context_takeover` (the server's default): the frame
//!   compressed once for every connection with the same window, level and threshold;
//! - permessage-deflate with context takeover (`serve --deflate-context-takeover`): the
//!   plain frame. A frame compressed for many would not be what the connection's own
//!   compressor, whose window holds its earlier messages, can go on from, and compressing
//!   per recipient would cost a compression per recipient; an uncompressed message leaves
//!   both sides' contexts as they were (RFC 7692 §6).

use std::borrow::Cow;

#[cfg(feature = "deflate")]
use wsworker_proto::deflate::SharedDeflate;
use wsworker_proto::{Message, PreparedFrame, encode_server_frame};

use crate::server::Connection;

/// The forms of one message's frame, for a fan-out.
pub(crate) struct Frames<'a> {
    message: Cow<'a, Message>,
    plain: Option<PreparedFrame>,
    /// Per set of terms met: the compressed frame, or `None` when the plain frame goes
    /// instead. Allocated only once a recipient has permessage-deflate.
    #[cfg(feature = "deflate")]
    compressed: Vec<(SharedDeflate, Option<PreparedFrame>)>,
    /// Deliveries of a compressed frame (counted once the fan-out is over).
    #[cfg(feature = "deflate")]
    compressed_sends: u64,
}

impl<'a> Frames<'a> {
    /// The frames of `message`, none encoded yet.
    pub(crate) fn new(message: &'a Message) -> Self {
        Self::of(Cow::Borrowed(message))
    }

    /// The frames of a message of their own (made for them).
    pub(crate) fn owned(message: Message) -> Frames<'static> {
        Frames::of(Cow::Owned(message))
    }

    fn of(message: Cow<'a, Message>) -> Self {
        Self {
            message,
            plain: None,
            #[cfg(feature = "deflate")]
            compressed: Vec::new(),
            #[cfg(feature = "deflate")]
            compressed_sends: 0,
        }
    }

    /// Queues the message's frame for `conn`, in the form it takes; whether it was queued.
    pub(crate) fn send(&mut self, conn: &Connection) -> bool {
        conn.shared().send_prepared(self.form(conn)).is_ok()
    }

    /// [`Frames::send`], leaving what this thread holds held (see `cork`): for the
    /// connection whose callbacks hold it, which is left out of what is held.
    pub(super) fn send_as_is(&mut self, conn: &Connection) -> bool {
        conn.shared().send_prepared_as_is(self.form(conn)).is_ok()
    }

    /// The form of the frame `conn` takes.
    fn form(&mut self, conn: &Connection) -> &PreparedFrame {
        #[cfg(feature = "deflate")]
        if let Some(terms) = conn.shared_deflate() {
            return self.compressed(terms);
        }
        self.plain()
    }

    /// The plain frame.
    pub(super) fn plain(&mut self) -> &PreparedFrame {
        let message = &self.message;
        self.plain
            .get_or_insert_with(|| encode_server_frame(message))
    }

    /// The frame for connections with `terms`: compressed once for them all, or the plain
    /// frame when they send this message uncompressed.
    #[cfg(feature = "deflate")]
    fn compressed(&mut self, terms: &SharedDeflate) -> &PreparedFrame {
        let at = match self.compressed.iter().position(|(seen, _)| seen == terms) {
            Some(at) => at,
            None => {
                self.compressed.push((*terms, terms.encode(&self.message)));
                self.compressed.len() - 1
            }
        };
        if self.compressed[at].1.is_some() {
            self.compressed_sends += 1;
        }
        match &self.compressed[at].1 {
            Some(frame) => frame,
            None => {
                let message = &self.message;
                self.plain
                    .get_or_insert_with(|| encode_server_frame(message))
            }
        }
    }

    /// What this fan-out compressed: messages compressed and deliveries of them.
    pub(crate) fn counts(&self) -> FanoutCounts {
        #[cfg(feature = "deflate")]
        return FanoutCounts {
            compressions: self.compressed.iter().filter(|(_, f)| f.is_some()).count() as u64,
            compressed_sends: self.compressed_sends,
            written_now: 0,
        };
        #[cfg(not(feature = "deflate"))]
        FanoutCounts::default()
    }
}

/// How many fan-out frames were compressed, and how many deliveries took one.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanoutCounts {
    /// Compressions: one per message and set of compression terms among its recipients.
    pub compressions: u64,
    /// Deliveries of a compressed frame.
    pub compressed_sends: u64,
    /// Recipients of a fan-out held on an event loop that got its frames written straight
    /// to their sockets, one write for all the messages held (see `hub::cork`).
    pub written_now: u64,
}

impl FanoutCounts {
    /// Whether nothing was compressed.
    pub(crate) fn is_zero(&self) -> bool {
        self.compressions == 0 && self.compressed_sends == 0 && self.written_now == 0
    }
}

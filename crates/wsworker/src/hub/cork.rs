//! Fan-out corked on a worker's event loop: a Hub send to all or to a group (or a
//! `Connections::broadcast`), made while the loop runs one of its connections (that
//! connection's callbacks, usually `on_message`), is held until that connection's poll is
//! over, and then goes to each recipient once for all the messages held — their frames, encoded once, in one write straight to the recipient's
//! socket when nothing waits to be sent there before them. Sent one by one, every message
//! cost every recipient a lock, a copy into its queue, a wake-up and a poll of its driver;
//! corked, a round of messages costs each recipient one look and one `send(2)`, as
//! uWebSockets' pub/sub does (it drains its topics at the end of each loop iteration).
//!
//! The recipients are taken when the first message is held (the connections of the topic
//! then, those closing left out), not at the flush: what other threads change meanwhile
//! does not decide who gets it, and no lock is held while the flush writes. The connection
//! whose callbacks send is left out and gets each message at once, the ordinary way: it is
//! the one connection whose own poll goes on meanwhile, and its close (read in that poll)
//! must come after what it was sent before it.
//!
//! A recipient that cannot take the write at once (something queued, a close under way, a
//! socket of another worker or a TLS task, permessage-deflate terms of its own) gets the
//! held messages the ordinary way, one queued frame each; a socket that takes only part of
//! the write gets the rest queued ahead of anything else, and its driver writes it when the
//! socket has room.
//!
//! Order: each recipient gets the messages in the order they were sent. What is held goes
//! out before anything else this thread queues for any connection — any send, close or
//! ping flushes it first, the ordinary way ([`release`]) — and before a membership
//! changes or a fan-out takes the Hub's or the registry's locks (which the flush takes
//! too); messages to different topics are held in order and go out in order. Sends from
//! other threads are as concurrent with these as they were: their order relative to them
//! is whatever the queue's lock makes it.

use std::cell::{Cell, RefCell};

use bytes::{Bytes, BytesMut};
use wsworker_proto::{Message, ReadyState};

use super::{FanoutCounts, Frames, Hub, Topic};
use crate::server::{Connection, Connections};

thread_local! {
    /// The loop runs a connection: the Hub holds this thread's fan-outs.
    static CORKING: Cell<bool> = const { Cell::new(false) };
    /// The id of the connection the loop runs (0: none known, as during its handshake).
    static RUNNING: Cell<u64> = const { Cell::new(0) };
    /// Something is held: the thread's next send flushes it first.
    static HELD: Cell<bool> = const { Cell::new(false) };
    static CORK: RefCell<Vec<Segment>> = const { RefCell::new(Vec::new()) };
}

/// Messages held for one set of recipients.
struct Segment {
    source: Source,
    /// Where the fan-out's counts go.
    connections: Connections,
    /// The source's connections when the first message was held, but those closing and
    /// the connection whose callbacks send.
    recipients: Vec<Connection>,
    /// That connection, when it is one of the topic's: it got each message at once.
    running: Option<Connection>,
    frames: Vec<Frames<'static>>,
}

/// Whom a segment's messages are for.
enum Source {
    /// A Hub's topic, but `except`.
    Hub {
        hub: Hub,
        topic: Topic,
        except: Vec<u64>,
    },
    /// Every connection of a server: [`Connections::broadcast`].
    All,
}

/// How the event loop writes the held frames to a recipient of its own: `bytes`, complete
/// frames of `messages` messages, written (or the rest queued) when it returns `true`;
/// when it returns `false` the recipient gets them the ordinary way.
pub(crate) type WriteNow<'a> = dyn FnMut(&Connection, &Bytes, usize) -> bool + 'a;

/// While the guard lives, the Hub holds this thread's fan-outs to all and to groups: the
/// event loop makes one around each poll of a connection, and calls [`flush`] after it.
#[must_use]
pub(crate) struct Corking(());

impl Corking {
    /// Holds the fan-outs of the callbacks of connection `running` (0 when its id is not
    /// known yet: during its handshake).
    pub(crate) fn begin(running: u64) -> Self {
        CORKING.set(true);
        RUNNING.set(running);
        Self(())
    }
}

impl Drop for Corking {
    fn drop(&mut self) {
        CORKING.set(false);
        RUNNING.set(0);
    }
}

/// Whether a fan-out made now is held.
pub(crate) fn corking() -> bool {
    CORKING.get()
}

/// Holds `message` for `topic` but `except` on `hub`; how many connections it is for.
pub(super) fn hold(hub: &Hub, topic: &Topic, except: &[u64], message: &Message) -> usize {
    let is_same = |last: &Segment| match &last.source {
        Source::Hub {
            hub: held,
            topic: held_topic,
            except: held_except,
        } => held_topic == topic && held_except == except && held.is(hub),
        Source::All => false,
    };
    let new = (!CORK.with_borrow(|cork| cork.last().is_some_and(is_same))).then(|| {
        let mut recipients = Vec::new();
        hub.each_of_as_is(topic, None, |conn| {
            if !except.contains(&conn.id()) {
                recipients.push(conn.clone());
            }
            0
        });
        let source = Source::Hub {
            hub: hub.clone(),
            topic: topic.clone(),
            except: except.to_vec(),
        };
        Segment::new(source, hub.inner.connections.clone(), recipients)
    });
    hold_in(new, message)
}

/// Holds `message` for every connection of `connections` ([`Connections::broadcast`]); how
/// many connections it is for. `None` when it cannot be held: a connection resumes (its
/// frames carry the protocol's head, see `session`), and gets it the ordinary way.
pub(crate) fn hold_broadcast(connections: &Connections, message: &Message) -> Option<usize> {
    let is_same =
        |last: &Segment| matches!(last.source, Source::All) && last.connections.is(connections);
    let mut new = None;
    if !CORK.with_borrow(|cork| cork.last().is_some_and(is_same)) {
        let mut recipients = Vec::new();
        let mut resumes = false;
        connections.for_each_as_is(|conn| {
            resumes |= conn.resume().is_some();
            recipients.push(conn.clone());
            0
        });
        if resumes {
            return None;
        }
        new = Some(Segment::new(Source::All, connections.clone(), recipients));
    }
    Some(hold_in(new, message))
}

/// Holds `message` in `new` (pushed first), or else in the last segment; how many
/// connections it is for.
fn hold_in(new: Option<Segment>, message: &Message) -> usize {
    let count = CORK.with_borrow_mut(|cork| {
        if let Some(new) = new {
            cork.push(new);
        }
        let Some(last) = cork.last_mut() else {
            unreachable!("a segment is held: pushed now, or the same as this message's")
        };
        let mut frames = Frames::owned(message.clone());
        if let Some(running) = &last.running {
            // At once, and leaving the rest held (this touches no cork): nothing held is
            // for it, what it was sent before went at once too.
            frames.send_as_is(running);
        }
        last.frames.push(frames);
        last.recipients.len() + usize::from(last.running.is_some())
    });
    HELD.set(true);
    count
}

/// Sends what this thread holds, the ordinary way, before something else is queued or a
/// lock the flush takes is taken. One thread-local load when nothing is held.
#[inline]
pub(crate) fn release() {
    if HELD.get() {
        flush(&mut |_, _, _| false);
    }
}

/// Sends what this thread holds: to each recipient, `write_now` first.
pub(crate) fn flush(write_now: &mut WriteNow<'_>) {
    if !HELD.replace(false) {
        return;
    }
    let mut segments = CORK.take();
    for segment in &mut segments {
        segment.deliver(write_now);
    }
    segments.clear();
    // The list's room is kept for the next round.
    CORK.set(segments);
}

impl Segment {
    /// A segment for `candidates` (the source's connections now): those closing are left
    /// out, and the connection whose callbacks send is set apart.
    fn new(source: Source, connections: Connections, mut candidates: Vec<Connection>) -> Self {
        let running_id = RUNNING.get();
        let mut running = None;
        candidates.retain(|conn| {
            if conn.ready_state() >= ReadyState::Closing {
                return false;
            }
            if conn.id() == running_id {
                running = Some(conn.clone());
                return false;
            }
            true
        });
        Self {
            source,
            connections,
            recipients: candidates,
            running,
            frames: Vec::new(),
        }
    }

    fn deliver(&mut self, write_now: &mut WriteNow<'_>) {
        let Self {
            connections,
            recipients,
            frames,
            ..
        } = self;
        // Every frame of the segment, back to back: what a recipient without compression
        // gets in one write. Made when the first such recipient is met.
        let mut plain: Option<Bytes> = None;
        let messages = frames.len();
        let mut written_now = 0;
        // No lock is held: the recipients were taken as the first message was held.
        for conn in recipients.iter() {
            #[cfg(feature = "deflate")]
            let compressed = conn.shared_deflate().is_some();
            #[cfg(not(feature = "deflate"))]
            let compressed = false;
            if !compressed {
                let bytes = plain.get_or_insert_with(|| {
                    let mut bytes = BytesMut::new();
                    for frames in frames.iter_mut() {
                        bytes.extend_from_slice(frames.plain().as_bytes());
                    }
                    bytes.freeze()
                });
                if write_now(conn, bytes, messages) {
                    written_now += 1;
                    continue;
                }
            }
            for frames in frames.iter_mut() {
                frames.send(conn);
            }
        }
        for frames in frames.iter() {
            connections.count_fanout(frames.counts());
        }
        connections.count_fanout(FanoutCounts {
            written_now,
            ..FanoutCounts::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_held_outside_a_corking_scope() {
        assert!(!corking());
        let scope = Corking::begin(0);
        assert!(corking());
        drop(scope);
        assert!(!corking());
    }
}

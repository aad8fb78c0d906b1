//! Fan-out corked on a worker's event loop: a Hub send to all or to a group, made while the
//! loop runs one of its connections (that connection's callbacks, usually `on_message`), is
//! held until that connection's poll is over, and then goes to each recipient once for all
//! the messages held — their frames, encoded once, in one write straight to the recipient's
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
use wsworker_proto::Message;

use super::{FanoutCounts, Frames, Hub, Topic};
use crate::server::Connection;
use wsworker_proto::ReadyState;

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
    hub: Hub,
    topic: Topic,
    except: Vec<u64>,
    /// The topic's connections when the first message was held, but `except`, those
    /// closing and the connection whose callbacks send.
    recipients: Vec<Connection>,
    /// That connection, when it is one of the topic's: it got each message at once.
    running: Option<Connection>,
    frames: Vec<Frames<'static>>,
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
pub(super) fn corking() -> bool {
    CORKING.get()
}

/// Holds `message` for `topic` but `except` on `hub`; how many connections it is for.
pub(super) fn hold(hub: &Hub, topic: &Topic, except: &[u64], message: &Message) -> usize {
    let count = CORK.with_borrow_mut(|cork| {
        let same = cork
            .last()
            .is_some_and(|last| last.topic == *topic && last.except == except && last.hub.is(hub));
        if !same {
            cork.push(Segment::new(hub, topic, except));
        }
        let Some(last) = cork.last_mut() else {
            unreachable!("a segment was pushed")
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
    /// A segment for `topic` but `except` on `hub`, its recipients taken now.
    fn new(hub: &Hub, topic: &Topic, except: &[u64]) -> Self {
        let running_id = RUNNING.get();
        let mut recipients = Vec::new();
        let mut running = None;
        hub.each_of_as_is(topic, None, |conn| {
            let id = conn.id();
            if except.contains(&id) || conn.ready_state() >= ReadyState::Closing {
                return 0;
            }
            if id == running_id {
                running = Some(conn.clone());
            } else {
                recipients.push(conn.clone());
            }
            0
        });
        Self {
            hub: hub.clone(),
            topic: topic.clone(),
            except: except.to_vec(),
            recipients,
            running,
            frames: Vec::new(),
        }
    }

    fn deliver(&mut self, write_now: &mut WriteNow<'_>) {
        let Self {
            hub,
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
        let connections = &hub.inner.connections;
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

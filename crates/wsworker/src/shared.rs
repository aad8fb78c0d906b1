//! What a connection's handles share with the task that drives it: the inbox of commands
//! from other tasks and threads, the ready state and the buffered byte count.
//!
//! A handle used from inside one of its own connection's callbacks (the usual
//! `conn.send(..)` in `on_message`) does not go through the channel: the driver is already
//! running on this thread, so the command goes into a thread-local outbox that the driver
//! applies as soon as the callback returns — no channel, no lock, no task wake-up. A small
//! message sent so is not even queued as a command: it is encoded into the outbox's frame
//! buffer at once, and the driver copies the frames into the connection's send queue.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use wsworker_proto::{CloseCode, FrameBuffer, Message, Outgoing, PreparedFrame, ReadyState};

use crate::error::{Error, Result};

/// Something a handle asks the driver to do.
#[derive(Debug)]
pub(crate) enum Command {
    Send(Message),
    Prepared(PreparedFrame),
    Ping(Bytes),
    Close(CloseCode, String),
}

impl Command {
    /// The bytes this command adds to the send queue, for `buffered_amount`.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Self::Send(m) => m.len(),
            Self::Prepared(f) => f.as_bytes().len(),
            Self::Ping(p) => p.len(),
            Self::Close(_, r) => r.len() + 2,
        }
    }
}

/// How a connection ended, as the browser's `CloseEvent` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code: the peer's, ours when we failed the connection, 1005 when the close
    /// frame had none, 1006 when the connection dropped without a closing handshake.
    pub code: CloseCode,
    /// The reason that came with the code.
    pub reason: String,
    /// Whether the closing handshake completed.
    pub was_clean: bool,
}

impl CloseInfo {
    /// An end without a completed closing handshake.
    pub(crate) fn unclean(code: CloseCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            was_clean: false,
        }
    }

    /// The TCP connection ended without a closing handshake (1006).
    pub(crate) fn dropped() -> Self {
        Self::unclean(CloseCode::ABNORMAL, String::new())
    }
}

/// Runs a user callback, turning a panic into its message so that it ends only the
/// connection it happened on.
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned())
    })
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The next connection serial of this process (from 1): a connection's id, or its low bits
/// when a Hub engine puts the node's id above them.
pub(crate) fn next_serial() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Commands from other tasks or threads, waiting for the driver.
///
/// A mutex and a queue rather than a channel: a channel allocates its first block of slots
/// when it is made, and every connection would carry it; this holds nothing until a
/// command comes, and the lock is only ever contended by a sender and the driver.
#[derive(Debug, Default)]
struct Inbox {
    commands: Vec<Command>,
    /// The driver's waker: left on its first look and kept (a task's waker does not change),
    /// so that looking at an empty inbox needs no lock.
    waker: Option<Waker>,
}

/// State shared by a connection's handles and its driver.
#[derive(Debug)]
pub(crate) struct Shared {
    id: u64,
    inbox: Mutex<Inbox>,
    /// Commands in the inbox: the driver looks here first, without the lock.
    waiting: AtomicUsize,
    /// Bytes sent through the inbox and not yet taken by the driver.
    pending: AtomicUsize,
    /// Bytes in the protocol's send queue, as last published by the driver.
    queued: AtomicUsize,
    state: AtomicU8,
    /// The connection resumes ([`crate::resume`]): a peer that does not keep up is closed
    /// with 1013 (try again later: it resumes and gets what it missed) rather than 1008.
    resumable: bool,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self::with_id(next_serial())
    }

    pub(crate) fn with_id(id: u64) -> Self {
        Self {
            id,
            inbox: Mutex::default(),
            waiting: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            state: AtomicU8::new(ReadyState::Connecting as u8),
            resumable: false,
        }
    }

    /// Marks the connection as one that resumes.
    pub(crate) fn set_resumable(&mut self) {
        self.resumable = true;
    }

    /// Whether the connection resumes.
    pub(crate) fn resumable(&self) -> bool {
        self.resumable
    }

    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // A command queue stays consistent whatever panicked while it was locked.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the commands waiting for the driver, in order, and leaves `waker` to be woken
    /// by the next one. `registered` is the driver's note that its waker is already there:
    /// then an empty inbox costs one atomic load.
    pub(crate) fn take_commands(&self, waker: &Waker, registered: &mut bool) -> Vec<Command> {
        if *registered && self.waiting.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let mut inbox = self.inbox();
        match &inbox.waker {
            Some(known) if known.will_wake(waker) => {}
            _ => inbox.waker = Some(waker.clone()),
        }
        *registered = true;
        self.waiting.store(0, Ordering::Relaxed);
        std::mem::take(&mut inbox.commands)
    }

    /// Takes the commands left in the inbox by a driver that is gone: a client connection
    /// that ended and is to be replaced by another.
    pub(crate) fn drain_commands(&self) -> Vec<Command> {
        let commands = {
            let mut inbox = self.inbox();
            self.waiting.store(0, Ordering::Relaxed);
            std::mem::take(&mut inbox.commands)
        };
        for command in &commands {
            self.taken(command);
        }
        commands
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn ready_state(&self) -> ReadyState {
        match self.state.load(Ordering::Acquire) {
            0 => ReadyState::Connecting,
            1 => ReadyState::Open,
            2 => ReadyState::Closing,
            _ => ReadyState::Closed,
        }
    }

    pub(crate) fn set_ready_state(&self, state: ReadyState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub(crate) fn buffered_amount(&self) -> usize {
        self.pending.load(Ordering::Relaxed) + self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn publish_queued(&self, bytes: usize) {
        self.queued.store(bytes, Ordering::Relaxed);
    }

    /// Called by the driver for each command it takes from the inbox.
    pub(crate) fn taken(&self, command: &Command) {
        self.pending.fetch_sub(command.weight(), Ordering::Relaxed);
    }

    /// Sends a message: encoded at once or queued in the outbox when the driver is running
    /// this connection's callback on this thread, through the inbox otherwise.
    pub(crate) fn send(&self, message: impl Outgoing) -> Result<()> {
        if self.ready_state() >= ReadyState::Closing {
            return Err(Error::Closed);
        }
        match outbox::send(self.id, message) {
            Ok(()) => Ok(()),
            Err(message) => {
                self.enqueue(Command::Send(message.into_message()));
                Ok(())
            }
        }
    }

    /// Hands a command to the driver: through the outbox when the driver is running this
    /// connection's callback on this thread, through the inbox otherwise.
    pub(crate) fn submit(&self, command: Command) -> Result<()> {
        if self.ready_state() >= ReadyState::Closing {
            return Err(Error::Closed);
        }
        if let Err(command) = outbox::push(self.id, command) {
            self.enqueue(command);
        }
        Ok(())
    }

    fn enqueue(&self, command: Command) {
        self.pending.fetch_add(command.weight(), Ordering::Relaxed);
        let mut inbox = self.inbox();
        inbox.commands.push(command);
        self.waiting.store(inbox.commands.len(), Ordering::Release);
        // The driver takes the whole inbox at once, so the first command wakes it and the
        // ones after it are taken with that one.
        if inbox.commands.len() == 1
            && let Some(waker) = &inbox.waker
        {
            waker.wake_by_ref();
        }
    }
}

/// What sends from a connection's callbacks may encode at once, into the outbox's frames,
/// instead of queuing a command: messages of at most `max_payload` bytes while the frames
/// take at most `room` bytes more. The driver sets it from the connection's state (see
/// [`wsworker_proto::Connection::plain_frame_limit`]) and its buffer limits, so a send
/// that needs more (compression, fragments, a check against the limits) takes the command
/// path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Direct {
    pub(crate) max_payload: usize,
    pub(crate) room: usize,
}

impl Direct {
    /// Nothing is encoded at once.
    pub(crate) const NONE: Self = Self {
        max_payload: 0,
        room: 0,
    };
}

/// The thread-local outbox of the connection whose callbacks are running.
pub(crate) mod outbox {
    use super::*;

    /// The frame buffer is dropped rather than kept above this capacity.
    const FRAMES_KEEP_AT_MOST: usize = 1 << 20;

    /// Whose callbacks run on this thread, and what they sent: one thread-local, so a send
    /// costs one access.
    struct Outbox {
        current: u64,
        commands: Vec<Command>,
        /// Messages encoded at once, ahead of `commands` (a message is only encoded here
        /// while no command waits, so the order holds).
        frames: FrameBuffer,
        direct: Direct,
        /// A message given to the driver (not lent) that a callback is seeing borrowed: a
        /// send of it back shares its bytes instead of copying them.
        viewed: Option<Message>,
    }

    thread_local! {
        static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox {
            current: 0,
            commands: Vec::new(),
            frames: FrameBuffer::new(),
            direct: Direct::NONE,
            viewed: None,
        });
        /// A list for the driver to move a callback's commands into, lent so that no
        /// connection keeps one of its own.
        static SPARE: Cell<Vec<Command>> = const { Cell::new(Vec::new()) };
    }

    /// An empty list to pass to [`take_sent`].
    pub(crate) fn borrow_list() -> Vec<Command> {
        SPARE.take()
    }

    /// Gives back the list from [`borrow_list`], emptied.
    pub(crate) fn give_back_list(list: Vec<Command>) {
        debug_assert!(list.is_empty());
        SPARE.set(list);
    }

    /// Queues `command` if `id`'s outbox is open on this thread; gives it back if not.
    pub(crate) fn push(id: u64, command: Command) -> Result<(), Command> {
        OUTBOX.with_borrow_mut(|outbox| {
            if outbox.current == id {
                outbox.commands.push(command);
                Ok(())
            } else {
                Err(command)
            }
        })
    }

    /// Encodes `message` into the frames, or queues it as a command, if `id`'s outbox is
    /// open on this thread; gives it back if not.
    pub(crate) fn send<M: Outgoing>(id: u64, message: M) -> Result<(), M> {
        OUTBOX.with_borrow_mut(|outbox| {
            if outbox.current != id {
                return Err(message);
            }
            let view = message.view();
            let len = view.len();
            let frame_len = FrameBuffer::frame_len(len);
            if outbox.commands.is_empty()
                && len <= outbox.direct.max_payload
                && frame_len <= outbox.direct.room
            {
                outbox.frames.push(view);
                outbox.direct.room -= frame_len;
                return Ok(());
            }
            let shared = outbox
                .viewed
                .as_ref()
                .filter(|viewed| {
                    viewed.is_text() == view.is_text()
                        && std::ptr::eq(viewed.as_bytes(), view.as_bytes())
                })
                .cloned();
            let message = shared.unwrap_or_else(|| message.into_message());
            outbox.commands.push(Command::Send(message));
            Ok(())
        })
    }

    /// While the guard lives, a callback sees `message` borrowed: sending it back (the same
    /// bytes) shares them, with no copy.
    pub(crate) fn viewing(message: &Message) -> Viewing {
        OUTBOX.with_borrow_mut(|outbox| outbox.viewed = Some(message.clone()));
        Viewing(())
    }

    /// See [`viewing`].
    #[must_use]
    pub(crate) struct Viewing(());

    impl Drop for Viewing {
        fn drop(&mut self) {
            OUTBOX.with_borrow_mut(|outbox| outbox.viewed = None);
        }
    }

    /// Opens `id`'s outbox on this thread until the guard is dropped: sends through its
    /// handles are encoded or queued here instead of going through the inbox.
    pub(crate) fn open(id: u64, direct: Direct) -> Scope {
        OUTBOX.with_borrow_mut(|outbox| {
            // A driver run from inside another connection's callback (never by this crate)
            // must not take that callback's sends as its own.
            let unsent = (!outbox.commands.is_empty() || !outbox.frames.is_empty()).then(|| {
                Box::new((
                    std::mem::take(&mut outbox.commands),
                    std::mem::take(&mut outbox.frames),
                ))
            });
            Scope {
                outer: std::mem::replace(&mut outbox.current, id),
                direct: std::mem::replace(&mut outbox.direct, direct),
                unsent,
            }
        })
    }

    /// Hands what was sent since the last call to the driver: the frames to `flush` (which
    /// queues those there are and returns what may be encoded at once from now on), then
    /// the commands, moved to the end of `sent` (an empty list: swapped, so neither side
    /// gives up its allocation). `false` when no command was sent.
    pub(crate) fn take_sent(
        sent: &mut Vec<Command>,
        flush: impl FnOnce(&mut FrameBuffer) -> Direct,
    ) -> bool {
        debug_assert!(sent.is_empty());
        OUTBOX.with_borrow_mut(|outbox| {
            outbox.direct = flush(&mut outbox.frames);
            outbox.frames.clear();
            if outbox.frames.capacity() > FRAMES_KEEP_AT_MOST {
                // A connection's buffer, swapped in, that grew for a slow peer.
                outbox.frames = FrameBuffer::new();
            }
            if outbox.commands.is_empty() {
                return false;
            }
            std::mem::swap(&mut outbox.commands, sent);
            // The commands change the buffer: until the driver says what is left (see
            // `set_direct`), what callbacks send meanwhile (errors) takes the command path.
            outbox.direct = Direct::NONE;
            true
        })
    }

    /// Sets what may be encoded at once from now on.
    pub(crate) fn set_direct(direct: Direct) {
        OUTBOX.with_borrow_mut(|outbox| outbox.direct = direct);
    }

    /// An open outbox; dropping it restores the one open before (callbacks of another
    /// connection, or none), also when a panic unwinds through it.
    #[must_use]
    pub(crate) struct Scope {
        outer: u64,
        direct: Direct,
        /// What the outer scope's callback had sent when this one opened.
        unsent: Option<Box<(Vec<Command>, FrameBuffer)>>,
    }

    impl Drop for Scope {
        fn drop(&mut self) {
            OUTBOX.with_borrow_mut(|outbox| {
                outbox.current = self.outer;
                outbox.direct = self.direct;
                if std::thread::panicking() {
                    // What the unwinding driver never applied must not reach the next
                    // connection's driver on this thread.
                    outbox.commands.clear();
                    outbox.frames.clear();
                }
                if let Some(unsent) = self.unsent.take() {
                    (outbox.commands, outbox.frames) = *unsent;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsworker_proto::{Config, Connection as Proto, Event, MessageRef, Role};

    /// Room for anything small.
    const OPEN: Direct = Direct {
        max_payload: 100,
        room: 1000,
    };

    /// What the outbox holds, taken: the frames as the messages a client decodes from them,
    /// and the commands.
    fn take() -> (Vec<Message>, Vec<Command>) {
        let mut server = Proto::new(Role::Server, Config::default());
        let mut sent = outbox::borrow_list();
        let mut frames = 0;
        outbox::take_sent(&mut sent, |encoded| {
            frames = encoded.frames();
            server.send_frames(encoded).unwrap();
            OPEN
        });
        let mut client = Proto::new(Role::Client, Config::default());
        while let Some(chunk) = server.poll_transmit() {
            client.receive(&chunk);
        }
        let mut messages = Vec::new();
        while let Some(Event::Message(m)) = client.poll_event().unwrap() {
            messages.push(m);
        }
        assert_eq!(messages.len(), frames);
        let commands = sent.split_off(0);
        outbox::give_back_list(sent);
        // As the driver does once it has applied them.
        outbox::set_direct(OPEN);
        (messages, commands)
    }

    fn sent_message(command: &Command) -> &Message {
        match command {
            Command::Send(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_outbox_takes_only_its_own_connections_sends_in_order() {
        let mut sent = outbox::borrow_list();
        {
            let _scope = outbox::open(7, Direct::NONE);
            assert!(outbox::push(8, Command::Ping(Bytes::from_static(b"other"))).is_err());
            assert!(outbox::send(8, "other").is_err());
            for payload in [&b"a"[..], b"b"] {
                outbox::push(7, Command::Ping(Bytes::from_static(payload))).unwrap();
            }
            assert!(outbox::take_sent(&mut sent, |_| Direct::NONE));
        }
        let pings: Vec<_> = sent
            .drain(..)
            .map(|c| match c {
                Command::Ping(p) => p,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(pings, [&b"a"[..], b"b"]);
        assert!(
            outbox::push(7, Command::Ping(Bytes::new())).is_err(),
            "closed"
        );
        outbox::give_back_list(sent);
    }

    #[test]
    fn small_sends_are_encoded_at_once_and_the_rest_keep_their_order_as_commands() {
        let _scope = outbox::open(7, OPEN);
        outbox::send(7, "a").unwrap();
        outbox::send(7, MessageRef::Binary(b"b")).unwrap();
        outbox::send(7, "x".repeat(101)).unwrap(); // over max_payload: a command
        outbox::send(7, "c").unwrap(); // after a command: a command too
        let (frames, commands) = take();
        assert_eq!(frames, [Message::text("a"), Message::binary(&b"b"[..])]);
        let commands: Vec<_> = commands.iter().map(sent_message).collect();
        assert_eq!(
            commands,
            [&Message::text("x".repeat(101)), &Message::text("c")]
        );

        // Once the commands are applied, small sends are encoded at once again.
        outbox::send(7, "d").unwrap();
        let (frames, commands) = take();
        assert_eq!((frames, commands.len()), (vec![Message::text("d")], 0));
    }

    #[test]
    fn sends_past_the_room_are_commands() {
        let _scope = outbox::open(
            7,
            Direct {
                max_payload: 100,
                room: 2 + 5 + 2 + 5 + 3,
            },
        );
        for text in ["12345", "67890", "more"] {
            outbox::send(7, text).unwrap();
        }
        let (frames, commands) = take();
        assert_eq!(frames, [Message::text("12345"), Message::text("67890")]);
        assert_eq!(sent_message(&commands[0]), &Message::text("more"));
        drop(_scope);

        let _scope = outbox::open(7, Direct::NONE);
        outbox::send(7, "").unwrap();
        let (frames, commands) = take();
        assert!(
            frames.is_empty(),
            "no room at all: not even an empty message"
        );
        assert_eq!(commands.len(), 1);
    }

    #[test]
    fn a_given_message_seen_borrowed_is_shared_when_sent_back() {
        let _scope = outbox::open(7, OPEN);
        let given = Message::binary(vec![3u8; 10_000]);
        {
            let _viewing = outbox::viewing(&given);
            outbox::send(7, given.view()).unwrap();
            outbox::send(7, MessageRef::Binary(&given.as_bytes()[1..])).unwrap();
            outbox::send(7, MessageRef::Text("not it")).unwrap();
        }
        outbox::send(7, given.view()).unwrap(); // no longer viewed
        let (frames, commands) = take();
        assert!(frames.is_empty(), "behind a command: all commands");
        let sent: Vec<_> = commands.iter().map(sent_message).collect();
        assert!(std::ptr::eq(sent[0].as_bytes(), given.as_bytes()), "shared");
        assert_eq!(sent[1].as_bytes(), &given.as_bytes()[1..]);
        assert!(
            !std::ptr::eq(sent[1].as_bytes(), &given.as_bytes()[1..]),
            "a copy"
        );
        assert_eq!(sent[2], &Message::text("not it"));
        assert_eq!(sent[3], &given);
        assert!(
            !std::ptr::eq(sent[3].as_bytes(), given.as_bytes()),
            "a copy"
        );
    }

    #[test]
    fn an_inner_scope_does_not_take_the_outer_ones_sends() {
        let _outer = outbox::open(7, OPEN);
        outbox::send(7, "outer frame").unwrap();
        outbox::push(7, Command::Ping(Bytes::new())).unwrap();
        {
            let _inner = outbox::open(9, OPEN);
            outbox::send(9, "inner").unwrap();
            let (frames, commands) = take();
            assert_eq!((frames, commands.len()), (vec![Message::text("inner")], 0));
        }
        let (frames, commands) = take();
        assert_eq!(frames, [Message::text("outer frame")]);
        assert!(matches!(commands[..], [Command::Ping(_)]));
    }

    #[test]
    fn sends_left_by_a_panic_do_not_reach_the_next_connection() {
        let unwound = catch_unwind(|| {
            let _scope = outbox::open(7, OPEN);
            outbox::push(7, Command::Ping(Bytes::from_static(b"lost"))).unwrap();
            outbox::send(7, "lost").unwrap();
            panic!("a driver bug");
        });
        assert!(unwound.is_err());
        let _scope = outbox::open(9, OPEN);
        let (frames, commands) = take();
        assert_eq!((frames.len(), commands.len()), (0, 0), "nothing of 7's");
    }
}

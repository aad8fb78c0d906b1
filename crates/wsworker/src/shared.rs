//! What a connection's handles share with the task that drives it: the connection's one
//! outbound queue, the ready state and the buffered byte count.
//!
//! Every send reaches the driver the same way, whoever makes it: the connection's own
//! callback (the usual `conn.send(..)` in `on_message`), another connection's callback,
//! another task or thread — except a Hub fan-out held on the connection's event loop,
//! which its loop may write straight to the socket while nothing is queued here (see
//! `hub::cork`; every send here lets what its thread holds go first). A small plain message is encoded straight into the queue's frame
//! buffer while the driver's budget for that allows and no command waits (so the order
//! holds); anything else waits as a [`Command`] (a prepared frame, as a Hub fan-out sends,
//! is one: its bytes are shared by all its recipients). The driver takes frames and
//! commands in one lock after each callback and whenever it is woken, and leaves a new
//! budget. A send made while the driver runs this connection's callbacks does not wake it:
//! the driver looks right after the callback returns (one atomic load when nothing was
//! sent).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
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

/// What the connection sends, waiting for its driver.
///
/// A mutex and a queue rather than a channel: a channel allocates its first block of slots
/// when it is made, and every connection would carry it; this holds nothing while nothing
/// waits (the frame buffer is lent by the driver while it runs the callbacks, see
/// [`Shared::begin_callbacks`]), and the lock is only ever contended by a sender and the
/// driver.
#[derive(Debug, Default)]
struct Outbound {
    /// Messages encoded at once, ahead of `commands` (a message is only encoded here while
    /// no command waits, so the order holds).
    /// (Boxed: every connection carries the field, and holds no buffer while idle.)
    frames: Option<Box<FrameBuffer>>,
    commands: Vec<Command>,
    /// What may still be encoded into `frames`: left by the driver each time it takes the
    /// queue, and spent by the sends.
    direct: Direct,
    /// A message given to the driver (not lent) that a callback is seeing borrowed: a send
    /// of it back shares its bytes instead of copying them.
    /// (Boxed: every connection carries the field, and only a message too large to lend
    /// sets it.)
    viewed: Option<Box<Message>>,
    /// The driver is running this connection's callbacks and looks at the queue after
    /// each: nothing needs to wake it.
    in_callbacks: bool,
    /// The driver's waker: left on its first look and kept (a task's waker does not change).
    waker: Option<Waker>,
}

/// State shared by a connection's handles and its driver.
#[derive(Debug)]
pub(crate) struct Shared {
    id: u64,
    outbound: Mutex<Outbound>,
    /// Something waits in the queue: the driver looks here first, without the lock. Only
    /// changed under the lock.
    has_queued: AtomicBool,
    /// Bytes sent through the queue and not yet taken by the driver (the frames' and the
    /// commands'). Only written under the queue's lock.
    pending: AtomicUsize,
    /// Bytes in the protocol's send queue, as last published by the driver.
    queued: AtomicUsize,
    state: AtomicU8,
    /// Where the connection's driver lives, when an event loop runs it: the loop's serial
    /// and the connection's slot in it (0: none). A fan-out held on that loop
    /// ([`crate::hub::Corking`]) is written straight to the connection's socket.
    home: AtomicU64,
    /// The connection resumes ([`crate::resume`]): a peer that does not keep up is closed
    /// with 1013 (try again later: it resumes and gets what it missed) rather than 1008.
    resumable: bool,
    /// The terms under which a server connection takes a message compressed once for many
    /// (a Hub fan-out): set as it opens when it agreed to permessage-deflate without
    /// context takeover on our side.
    #[cfg(feature = "deflate")]
    shared_deflate: Option<wsworker_proto::deflate::SharedDeflate>,
}

impl Shared {
    pub(crate) fn new() -> Self {
        Self::with_id(next_serial())
    }

    pub(crate) fn with_id(id: u64) -> Self {
        Self {
            id,
            outbound: Mutex::default(),
            has_queued: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            state: AtomicU8::new(ReadyState::Connecting as u8),
            home: AtomicU64::new(0),
            resumable: false,
            #[cfg(feature = "deflate")]
            shared_deflate: None,
        }
    }

    /// Notes that the event loop `serial` runs the connection's driver, in `slot`.
    pub(crate) fn set_home(&self, serial: u32, slot: usize) {
        let home = u64::from(serial) << 32 | (slot as u64 & u64::from(u32::MAX));
        self.home.store(home, Ordering::Relaxed);
    }

    /// The event loop that runs the connection's driver, and its slot there.
    pub(crate) fn home(&self) -> Option<(u32, usize)> {
        let home = self.home.load(Ordering::Relaxed);
        (home != 0).then_some(((home >> 32) as u32, (home & u64::from(u32::MAX)) as usize))
    }

    /// Whether something sent waits for the driver.
    pub(crate) fn has_queued(&self) -> bool {
        self.has_queued.load(Ordering::Acquire)
    }

    /// Marks the connection as one that resumes.
    pub(crate) fn set_resumable(&mut self) {
        self.resumable = true;
    }

    /// Whether the connection resumes.
    pub(crate) fn resumable(&self) -> bool {
        self.resumable
    }

    /// Notes the terms under which the connection takes shared compressed frames.
    #[cfg(feature = "deflate")]
    pub(crate) fn set_shared_deflate(
        &mut self,
        terms: Option<wsworker_proto::deflate::SharedDeflate>,
    ) {
        self.shared_deflate = terms;
    }

    /// The terms under which the connection takes shared compressed frames, if any.
    #[cfg(feature = "deflate")]
    pub(crate) fn shared_deflate(&self) -> Option<&wsworker_proto::deflate::SharedDeflate> {
        self.shared_deflate.as_ref()
    }

    fn outbound(&self) -> MutexGuard<'_, Outbound> {
        // A queue stays consistent whatever panicked while it was locked.
        self.outbound.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Sends a message: encoded into the queue's frames at once when the driver's budget
    /// allows and no command waits, queued as a command otherwise.
    pub(crate) fn send(&self, message: impl Outgoing) -> Result<()> {
        if self.ready_state() >= ReadyState::Closing {
            return Err(Error::Closed);
        }
        crate::hub::release_cork();
        let mut queue = self.outbound();
        let view = message.view();
        let len = view.len();
        let frame_len = FrameBuffer::frame_len(len);
        if len <= queue.direct.max_payload
            && self.encode_at_once(&mut queue, frame_len, |frames| frames.push(view))
        {
            return Ok(());
        }
        let shared = queue
            .viewed
            .as_ref()
            .filter(|viewed| {
                viewed.is_text() == view.is_text()
                    && std::ptr::eq(viewed.as_bytes(), view.as_bytes())
            })
            .map(|viewed| Message::clone(viewed));
        let message = shared.unwrap_or_else(|| message.into_message());
        self.push(&mut queue, Command::Send(message));
        Ok(())
    }

    /// Sends a frame encoded once for many connections (a Hub fan-out): a small one is
    /// copied into the queue's frames when the driver's budget allows and no command waits,
    /// as a small message is; a larger one shares its bytes, as a command.
    pub(crate) fn send_prepared(&self, frame: &PreparedFrame) -> Result<()> {
        crate::hub::release_cork();
        self.send_prepared_as_is(frame)
    }

    /// [`Shared::send_prepared`], leaving a fan-out this thread holds held: for the
    /// connection left out of it (see `hub::cork`).
    pub(crate) fn send_prepared_as_is(&self, frame: &PreparedFrame) -> Result<()> {
        if self.ready_state() >= ReadyState::Closing {
            return Err(Error::Closed);
        }
        let mut queue = self.outbound();
        let len = frame.as_bytes().len();
        if len <= COPY_PREPARED_AT_MOST
            && self.encode_at_once(&mut queue, len, |frames| frames.push_prepared(frame))
        {
            return Ok(());
        }
        self.push(&mut queue, Command::Prepared(frame.clone()));
        Ok(())
    }

    /// Encodes `frame_len` bytes straight into the queue's frames with `encode` when no
    /// command waits (so the order holds) and the driver's room allows; whether it did.
    fn encode_at_once(
        &self,
        queue: &mut Outbound,
        frame_len: usize,
        encode: impl FnOnce(&mut FrameBuffer),
    ) -> bool {
        if !queue.commands.is_empty() || frame_len > queue.direct.room {
            return false;
        }
        encode(queue.frames.get_or_insert_default());
        queue.direct.room -= frame_len;
        self.queued_in(queue, frame_len);
        true
    }

    /// Hands a command to the driver, after everything sent before.
    pub(crate) fn submit(&self, command: Command) -> Result<()> {
        if self.ready_state() >= ReadyState::Closing {
            return Err(Error::Closed);
        }
        crate::hub::release_cork();
        self.push(&mut self.outbound(), command);
        Ok(())
    }

    fn push(&self, queue: &mut Outbound, command: Command) {
        let weight = command.weight();
        queue.commands.push(command);
        self.queued_in(queue, weight);
    }

    /// Counts `bytes` just queued, and wakes the driver if this is the first thing waiting
    /// and it is not about to look anyway.
    fn queued_in(&self, queue: &mut Outbound, bytes: usize) {
        // Only written under the lock: a load and a store, not an atomic addition.
        let pending = self.pending.load(Ordering::Relaxed);
        self.pending.store(pending + bytes, Ordering::Relaxed);
        if self.has_queued.load(Ordering::Relaxed) {
            // The driver takes the whole queue at once: the first send woke it.
            return;
        }
        self.has_queued.store(true, Ordering::Release);
        if !queue.in_callbacks
            && let Some(waker) = &queue.waker
        {
            waker.wake_by_ref();
        }
    }

    /// Leaves the driver's waker, to be woken by the next send.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut queue = self.outbound();
        match &queue.waker {
            Some(known) if known.will_wake(waker) => {}
            _ => queue.waker = Some(waker.clone()),
        }
    }

    /// The driver is about to run this connection's callbacks: sends need not wake it,
    /// messages within `direct` are encoded at once, into `frames` (an empty buffer with
    /// room, lent for the callbacks) unless the queue has a buffer already. Gives `frames`
    /// back when it is not taken.
    pub(crate) fn begin_callbacks(
        &self,
        direct: Direct,
        frames: Box<FrameBuffer>,
    ) -> Option<Box<FrameBuffer>> {
        let mut queue = self.outbound();
        queue.in_callbacks = true;
        if queue.commands.is_empty() {
            queue.direct = direct;
        }
        match &queue.frames {
            Some(_) => Some(frames),
            None => {
                queue.frames = Some(frames);
                None
            }
        }
    }

    /// The callbacks are over: takes what they sent, as [`Shared::take_sent`] does, in the
    /// same lock; and gives the driver its frame buffer back when nothing is encoded in it
    /// (the one lent, or one a send made).
    /// What is sent from now on wakes the driver again.
    pub(crate) fn end_callbacks(
        &self,
        flush: impl FnOnce(&mut FrameBuffer) -> Direct,
    ) -> (Vec<Command>, Option<Box<FrameBuffer>>) {
        let mut queue = self.outbound();
        queue.in_callbacks = false;
        let commands = if self.has_queued.load(Ordering::Relaxed) {
            self.take(&mut queue, flush)
        } else {
            Vec::new()
        };
        // An empty buffer goes back even without room: left in the queue, it would cost
        // every connection that sent nothing in its callbacks (most of them, once open) an
        // allocation for as long as it lives.
        let frames = queue.frames.take_if(|frames| frames.is_empty());
        (commands, frames)
    }

    /// Takes what was sent since the last call, `None` when nothing was (one atomic load):
    /// the frames to `flush` (which queues those there are and returns what may be encoded
    /// at once from now on), then the commands, returned in order. While there are commands,
    /// nothing more is encoded at once (they change the buffer) until the driver says what
    /// is left ([`Shared::set_direct`]).
    pub(crate) fn take_sent(
        &self,
        flush: impl FnOnce(&mut FrameBuffer) -> Direct,
    ) -> Option<Vec<Command>> {
        if !self.has_queued.load(Ordering::Acquire) {
            return None;
        }
        Some(self.take(&mut self.outbound(), flush))
    }

    fn take(
        &self,
        queue: &mut Outbound,
        flush: impl FnOnce(&mut FrameBuffer) -> Direct,
    ) -> Vec<Command> {
        self.has_queued.store(false, Ordering::Relaxed);
        self.pending.store(0, Ordering::Relaxed);
        queue.direct = match &mut queue.frames {
            Some(frames) => flush(frames),
            None => flush(&mut FrameBuffer::new()),
        };
        // A connection's buffer, swapped in by `send_frames`, that grew for a slow peer.
        queue
            .frames
            .take_if(|frames| frames.capacity() > FRAMES_KEEP_AT_MOST);
        if queue.commands.is_empty() {
            return Vec::new();
        }
        queue.direct = Direct::NONE;
        std::mem::take(&mut queue.commands)
    }

    /// Drops the frame buffer when it is empty: what a recipient of other connections'
    /// sends (a fan-out) keeps between rounds, given up when its connection goes to sleep.
    pub(crate) fn shed_frames(&self) {
        self.outbound().frames.take_if(|frames| frames.is_empty());
    }

    /// Sets what may be encoded at once from now on.
    pub(crate) fn set_direct(&self, direct: Direct) {
        let mut queue = self.outbound();
        if queue.commands.is_empty() {
            queue.direct = direct;
        }
    }

    /// Takes the commands left by a driver that is gone: a client connection that ended
    /// and is to be replaced by another. Nothing more is encoded at once.
    pub(crate) fn drain_commands(&self) -> Vec<Command> {
        let mut queue = self.outbound();
        self.has_queued.store(false, Ordering::Relaxed);
        self.pending.store(0, Ordering::Relaxed);
        queue.direct = Direct::NONE;
        queue.frames = None;
        // A driver that unwound out of its callbacks left this set; the next one must be woken.
        queue.in_callbacks = false;
        std::mem::take(&mut queue.commands)
    }

    /// While the guard lives, a callback sees `message` borrowed: sending it back (the same
    /// bytes) shares them, with no copy.
    pub(crate) fn viewing(&self, message: &Message) -> Viewing<'_> {
        self.outbound().viewed = Some(Box::new(message.clone()));
        Viewing(self)
    }
}

/// See [`Shared::viewing`].
#[must_use]
pub(crate) struct Viewing<'a>(&'a Shared);

impl Drop for Viewing<'_> {
    fn drop(&mut self) {
        self.0.outbound().viewed = None;
    }
}

/// A prepared frame up to this size is copied into a connection's frames rather than
/// shared: below it, the copy is cheaper than the reference count and the extra piece
/// (measured with the chat fan-out, 32-byte messages to 1,000 connections: see
/// bench/RESULTS.md).
const COPY_PREPARED_AT_MOST: usize = 512;

/// The frame buffer is dropped rather than kept above this capacity.
const FRAMES_KEEP_AT_MOST: usize = 1 << 20;

/// What sends may encode at once, into the queue's frames, instead of queuing a command:
/// messages of at most `max_payload` bytes while the frames take at most `room` bytes more.
/// The driver sets it from the connection's state (see
/// [`wsworker_proto::Connection::plain_frame_limit`]) and its buffer limits, so a send
/// that needs more (compression, fragments, a check against the limits) takes the command
/// path.
#[derive(Debug, Clone, Copy, Default)]
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;
    use wsworker_proto::{Config, Connection as Proto, Event, MessageRef, Role};

    /// Room for anything small.
    const OPEN: Direct = Direct {
        max_payload: 100,
        room: 1000,
    };

    /// A connection's shared state, open, with `direct` to encode at once.
    fn open(direct: Direct) -> Shared {
        let shared = Shared::new();
        shared.set_ready_state(ReadyState::Open);
        shared.set_direct(direct);
        shared
    }

    /// A server connection with a write buffer, as the driver lends it the worker's.
    fn server() -> Proto {
        let mut server = Proto::new(Role::Server, Config::default());
        let _ = server.replace_send_buffer(bytes::BytesMut::with_capacity(4096));
        server
    }

    /// The messages a client decodes from what `server` has to send.
    fn delivered(server: &mut Proto) -> Vec<Message> {
        let mut client = Proto::new(Role::Client, Config::default());
        while let Some(chunk) = server.poll_transmit() {
            client.receive(&chunk);
        }
        let mut messages = Vec::new();
        while let Some(Event::Message(m)) = client.poll_event().unwrap() {
            messages.push(m);
        }
        messages
    }

    /// What the queue holds, taken as the driver takes it: the frames as the messages a
    /// client decodes from them, and the commands; then the budget is `OPEN` again.
    fn take(shared: &Shared) -> (Vec<Message>, Vec<Command>) {
        let mut server = server();
        let mut frames = 0;
        let commands = shared
            .take_sent(|encoded| {
                frames = encoded.frames();
                server.send_frames(encoded).unwrap();
                OPEN
            })
            .unwrap_or_default();
        let messages = delivered(&mut server);
        assert_eq!(messages.len(), frames);
        // As the driver does once it has applied the commands.
        shared.set_direct(OPEN);
        (messages, commands)
    }

    fn sent_message(command: &Command) -> &Message {
        match command {
            Command::Send(m) => m,
            other => panic!("{other:?}"),
        }
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn small_sends_are_encoded_at_once_and_the_rest_keep_their_order_as_commands() {
        let shared = open(OPEN);
        shared.send("a").unwrap();
        shared.send(MessageRef::Binary(b"b")).unwrap();
        shared.send("x".repeat(101)).unwrap(); // over max_payload: a command
        shared.send("c").unwrap(); // after a command: a command too
        shared.submit(Command::Ping(Bytes::new())).unwrap();
        assert_eq!(shared.buffered_amount(), 3 + 3 + 101 + 1);
        let (frames, commands) = take(&shared);
        assert_eq!(frames, [Message::text("a"), Message::binary(&b"b"[..])]);
        assert_eq!(sent_message(&commands[0]), &Message::text("x".repeat(101)));
        assert_eq!(sent_message(&commands[1]), &Message::text("c"));
        assert!(matches!(commands[2], Command::Ping(_)));
        assert_eq!(shared.buffered_amount(), 0, "taken");

        // Once the commands are applied, small sends are encoded at once again.
        shared.send("d").unwrap();
        let (frames, commands) = take(&shared);
        assert_eq!((frames, commands.len()), (vec![Message::text("d")], 0));
        assert!(shared.take_sent(|_| OPEN).is_none(), "nothing left");
    }

    #[test]
    fn small_prepared_frames_are_copied_and_the_rest_keep_their_order_as_commands() {
        let prepare = |text: &str| wsworker_proto::encode_server_frame(&Message::text(text));
        let big = "x".repeat(COPY_PREPARED_AT_MOST);
        let shared = open(Direct {
            max_payload: 100,
            room: 10_000,
        });
        shared.send_prepared(&prepare("a")).unwrap();
        shared.send("b").unwrap();
        shared.send_prepared(&prepare(&big)).unwrap(); // over the copy limit: a command
        shared.send_prepared(&prepare("c")).unwrap(); // after a command: a command too
        let (frames, commands) = take(&shared);
        assert_eq!(frames, [Message::text("a"), Message::text("b")]);
        let prepared: Vec<_> = commands
            .iter()
            .map(|command| match command {
                Command::Prepared(frame) => frame.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(prepared, [prepare(&big), prepare("c")]);

        // Past the room, a small one is a command as well.
        let shared = open(Direct {
            max_payload: 100,
            room: 3,
        });
        shared.send_prepared(&prepare("a")).unwrap();
        shared.send_prepared(&prepare("b")).unwrap();
        let (frames, commands) = take(&shared);
        assert_eq!((frames, commands.len()), (vec![Message::text("a")], 1));

        shared.set_ready_state(ReadyState::Closing);
        assert!(matches!(
            shared.send_prepared(&prepare("late")),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn sends_past_the_room_are_commands() {
        let shared = open(Direct {
            max_payload: 100,
            room: 2 + 5 + 2 + 5 + 3,
        });
        for text in ["12345", "67890", "more"] {
            shared.send(text).unwrap();
        }
        let (frames, commands) = take(&shared);
        assert_eq!(frames, [Message::text("12345"), Message::text("67890")]);
        assert_eq!(sent_message(&commands[0]), &Message::text("more"));

        let shared = open(Direct::NONE);
        shared.send("").unwrap();
        let (frames, commands) = take(&shared);
        assert!(
            frames.is_empty(),
            "no room at all: not even an empty message"
        );
        assert_eq!(commands.len(), 1);
    }

    #[test]
    fn a_given_message_seen_borrowed_is_shared_when_sent_back() {
        let shared = open(OPEN);
        let given = Message::binary(vec![3u8; 10_000]);
        {
            let _viewing = shared.viewing(&given);
            shared.send(given.view()).unwrap();
            shared
                .send(MessageRef::Binary(&given.as_bytes()[1..]))
                .unwrap();
            shared.send(MessageRef::Text("not it")).unwrap();
        }
        shared.send(given.view()).unwrap(); // no longer viewed
        let (frames, commands) = take(&shared);
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
    fn a_send_from_another_thread_takes_the_same_path_and_wakes_the_driver_once() {
        let shared = Arc::new(open(OPEN));
        let count = Arc::new(Count::default());
        shared.register(&Arc::clone(&count).into());
        let sender = Arc::clone(&shared);
        std::thread::spawn(move || {
            sender.send("from afar").unwrap();
            sender.send("x".repeat(101)).unwrap();
            sender.send("behind it").unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(
            count.get(),
            1,
            "the first send woke the driver, the others did not"
        );
        let (frames, commands) = take(&shared);
        assert_eq!(frames, [Message::text("from afar")], "encoded at once");
        let commands: Vec<_> = commands.iter().map(sent_message).collect();
        assert_eq!(
            commands,
            [&Message::text("x".repeat(101)), &Message::text("behind it")]
        );
        shared.send("again").unwrap();
        assert_eq!(count.get(), 2, "taken: the next send wakes it again");
    }

    /// Ends the callbacks as the driver does: what is taken, decoded; and the buffer given
    /// back, if any.
    fn end(shared: &Shared) -> (Vec<Message>, Vec<Command>, Option<Box<FrameBuffer>>) {
        let mut server = server();
        let (commands, back) = shared.end_callbacks(|encoded| {
            server.send_frames(encoded).unwrap();
            OPEN
        });
        (delivered(&mut server), commands, back)
    }

    #[test]
    fn sends_during_the_callbacks_wake_nothing_and_their_end_takes_them() {
        let shared = open(OPEN);
        let count = Arc::new(Count::default());
        shared.register(&Arc::clone(&count).into());
        let lent = shared.begin_callbacks(OPEN, Box::default());
        assert!(lent.is_none(), "the queue had no buffer: it took this one");
        shared.send("reply").unwrap();
        assert_eq!(count.get(), 0, "the driver looks after the callback");
        let (frames, _) = take(&shared);
        assert_eq!(frames, [Message::text("reply")]);
        shared.send("another").unwrap();
        shared.submit(Command::Ping(Bytes::new())).unwrap();
        let (frames, commands, back) = end(&shared);
        assert_eq!(frames, [Message::text("another")], "taken with the end");
        assert!(matches!(commands[..], [Command::Ping(_)]));
        assert!(back.is_some(), "the buffer, given back");
        assert_eq!(count.get(), 0);
        assert!(shared.take_sent(|_| OPEN).is_none(), "nothing left");

        shared.send("after the callbacks").unwrap();
        assert_eq!(count.get(), 1, "wakes the driver");
    }

    #[test]
    fn an_idle_connection_holds_no_frame_buffer() {
        let shared = open(OPEN);
        let mut spare = FrameBuffer::new();
        spare.push(MessageRef::Text("warm up"));
        spare.clear();
        assert!(shared.begin_callbacks(OPEN, Box::new(spare)).is_none());
        let (_, _, back) = end(&shared);
        assert!(back.is_some(), "nothing sent: the lent buffer comes back");
        let (_, _, back) = end(&shared);
        assert!(back.is_none(), "the queue has none left");
        shared.send("later").unwrap();
        let (frames, _) = take(&shared);
        assert_eq!(
            frames,
            [Message::text("later")],
            "without a lent buffer too"
        );
    }

    #[test]
    fn sends_after_the_close_are_refused_and_a_drained_queue_encodes_nothing_more() {
        let shared = open(OPEN);
        shared.submit(Command::Ping(Bytes::new())).unwrap();
        assert_eq!(shared.drain_commands().len(), 1);
        assert_eq!(shared.buffered_amount(), 0);
        shared.send("x").unwrap();
        assert_eq!(shared.drain_commands().len(), 1, "a command, not a frame");
        shared.set_ready_state(ReadyState::Closing);
        assert!(matches!(shared.send("late"), Err(Error::Closed)));
        assert!(matches!(
            shared.submit(Command::Ping(Bytes::new())),
            Err(Error::Closed)
        ));
    }

    #[test]
    fn a_recipients_frame_buffer_stays_small_and_goes_when_shed() {
        let shared = open(OPEN);
        let frame = wsworker_proto::encode_server_frame(&Message::text("a"));
        shared.send_prepared(&frame).unwrap();
        let (messages, _) = take(&shared);
        assert_eq!(messages, [Message::text("a")]);
        // The frames were copied into the connection's buffer: the recipient keeps its own
        // small one, not the worker's write buffer (4 KiB in `server()`).
        let kept = shared.outbound().frames.as_ref().map(|f| f.capacity());
        assert!(kept.is_some_and(|c| c < 4096), "{kept:?}");
        shared.shed_frames();
        assert!(shared.outbound().frames.is_none());
        // A buffer holding frames is not shed.
        shared.send_prepared(&frame).unwrap();
        shared.shed_frames();
        assert_eq!(take(&shared).0, [Message::text("a")]);
    }
}

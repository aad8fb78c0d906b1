//! The future that owns one socket and its `wsworker_proto::Connection`, for either role:
//! a task of its own (the client, a TLS server connection) or an entry of a server
//! worker's event loop (a plain server connection).
//!
//! One `poll` does everything that is ready, in an order that keeps replies in order and
//! syscalls few: commands from handles, then reads (each read is decoded at once and every
//! event handed to the [`Handler`], whose sends are applied right after it returns), then
//! one vectored write of everything queued, then the timers (idle keepalive, close
//! timeout). The proto crate does all the protocol work; this module only moves bytes,
//! keeps time and enforces the send-buffer limits.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;
use wsworker_proto::{
    CloseCode, Connection as Proto, Error as ProtoError, Event, EventRef, MAX_LENT, MessageRef,
    ReadyState, Role,
};

use crate::buffers;
use crate::error::Error;
use crate::metrics::WorkerCounters;
use crate::shared::{CloseInfo, Command, Direct, Shared, outbox};

/// How much room a read gets at least in a connection's own buffer (one holding a partial
/// frame).
const READ_RESERVE: usize = 8 * 1024;
/// The largest leftover of a read (the start of a frame) parked in an allocation of its own
/// rather than kept in the worker's read buffer: copying it out and back in costs at most an
/// eighth of a full read.
const PARK_AT_MOST: usize = buffers::READ_SIZE / 8;
/// How many slices one vectored write takes at most.
const MAX_IOV: usize = 64;
/// The slices a write usually needs (the queue is mostly one buffer of encoded frames):
/// an array this size is cleared for it instead of one of `MAX_IOV`, which cost more than
/// the rest of a small write's user-space work.
const FEW_IOV: usize = 4;
/// Reads, commands and writes one poll may do before it yields to other connections.
const BUDGET: usize = 32;
/// Bytes one poll may read before it yields: a read fills what the frame decoder reserved,
/// up to a whole large frame, so the count of reads alone would let one connection
/// sending big messages hold the worker for megabytes.
const READ_BUDGET: usize = 1 << 20;

/// What the driver tells the code that owns the connection (server callbacks or the client's
/// event stream).
pub(crate) trait Handler {
    /// What the connection's handles share with the driver.
    fn shared(&self) -> &Shared;
    /// The connection is open; called once, first. Sends made here go out before anything
    /// else.
    fn on_open(&mut self) {}
    /// Whether the handler can take more events now; while it cannot, nothing is read from
    /// the socket (the peer's sends back up in TCP instead of in memory here).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
    /// An event from the peer. Sends made through a handle while this runs are applied as
    /// soon as it returns, before anything else is read.
    fn on_event(&mut self, event: Event);
    /// Whether messages are to be lent ([`Handler::on_message_ref`]) rather than given.
    fn borrows(&self) -> bool {
        false
    }
    /// A message lent from the receive buffer, when [`Handler::borrows`]. Sends made while
    /// it runs are applied with those of the run of plain messages it belongs to, as soon as
    /// the run ends, before anything else is read.
    fn on_message_ref(&mut self, message: MessageRef<'_>) {
        self.on_event(Event::Message(message.to_owned()));
    }
    /// An error: a protocol violation by the peer (the close frame is already queued), or
    /// an I/O error.
    fn on_error(&mut self, error: Error);
    /// The send buffer went above the soft limit.
    fn on_buffer_full(&mut self) {}
    /// The send buffer drained after [`Handler::on_buffer_full`].
    fn on_buffer_drain(&mut self) {}
    /// The connection is over; called once, last.
    fn on_close(&mut self, info: CloseInfo);
}

/// A handler lent to a driver, so that it outlives the connection: a client that
/// reconnects hands the same one to each connection's driver.
impl<H: Handler + ?Sized> Handler for &mut H {
    fn shared(&self) -> &Shared {
        (**self).shared()
    }
    fn on_open(&mut self) {
        (**self).on_open();
    }
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        (**self).poll_ready(cx)
    }
    fn on_event(&mut self, event: Event) {
        (**self).on_event(event);
    }
    fn borrows(&self) -> bool {
        (**self).borrows()
    }
    fn on_message_ref(&mut self, message: MessageRef<'_>) {
        (**self).on_message_ref(message);
    }
    fn on_error(&mut self, error: Error) {
        (**self).on_error(error);
    }
    fn on_buffer_full(&mut self) {
        (**self).on_buffer_full();
    }
    fn on_buffer_drain(&mut self) {
        (**self).on_buffer_drain();
    }
    fn on_close(&mut self, info: CloseInfo) {
        (**self).on_close(info);
    }
}

/// Idle keepalive: a ping after `interval` without a byte from the peer, and the connection
/// dropped (1006) when nothing arrives within `timeout` after that ping. It finds peers that
/// vanished without closing (a pulled cable, a sleeping laptop, a NAT that forgot the
/// connection), which TCP alone may not notice for hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Silence before the ping.
    pub interval: Duration,
    /// How long the peer has to answer it (any bytes count, not only the pong).
    pub timeout: Duration,
}

impl Keepalive {
    /// A ping after `interval` of silence, the connection dropped `timeout` later without an
    /// answer.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Self { interval, timeout }
    }
}

impl Default for Keepalive {
    /// 30 s of silence, then 30 s for the answer.
    fn default() -> Self {
        Self::new(Duration::from_secs(30), Duration::from_secs(30))
    }
}

/// What happens to a message that would take a connection's send buffer over the hard limit
/// (the peer reads more slowly than the application sends).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Close the connection with 1008 (the default): a peer that does not keep up is cut
    /// off, and every message it was sent before is still delivered first.
    #[default]
    Close,
    /// Drop the message and count it (`dropped_messages` in the server's metrics); the
    /// connection stays open. For feeds where a newer message supersedes the older ones.
    DropNew,
}

/// Limits and timeouts the driver enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DriverConfig {
    /// After our close frame is sent, how long to wait for the peer's close frame and
    /// the end of the TCP connection before dropping it.
    pub(crate) close_timeout: Duration,
    /// `on_buffer_full` above this many buffered bytes.
    pub(crate) soft_buffer_limit: usize,
    /// What to do with a message that would go above this many buffered bytes.
    pub(crate) hard_buffer_limit: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) keepalive: Option<Keepalive>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            close_timeout: Duration::from_secs(5),
            soft_buffer_limit: 1 << 20,
            hard_buffer_limit: 16 << 20,
            overflow: OverflowPolicy::Close,
            keepalive: Some(Keepalive::default()),
        }
    }
}

/// Drives one connection until it is over: awaiting it runs the connection to its end and
/// reports that through `on_close`.
///
/// A hand-written future rather than an `async fn`: the task of every connection is as
/// large as its future, and an `async fn` taking the driver by value keeps two copies of it.
///
/// The end of a connection's bookkeeping cannot be skipped: a driver dropped before its
/// connection ended (its worker's runtime shut down at the deadline, or a bug of ours
/// panicked out of `poll` and the event loop dropped it) still reports the end, as a
/// connection dropped without a close (1006), and balances the counters.
pub(crate) struct Driver<S, H: Handler> {
    io: S,
    conn: Proto,
    handler: H,
    /// Shared by all the connections of a worker.
    config: Arc<DriverConfig>,
    /// How the connection ended, once known (boxed: every connection carries the field).
    close: Option<Box<CloseInfo>>,
    read_eof: bool,
    write_shut: bool,
    buffer_full: bool,
    deadline: Option<Pin<Box<Sleep>>>,
    keepalive: Option<KeepaliveState>,
    /// The server's counters for this worker; `None` for a client.
    counters: Option<Arc<WorkerCounters>>,
    /// Where the connection is in the handler's eyes.
    phase: Phase,
    /// The shared inbox holds this task's waker.
    inbox_registered: bool,
    /// The keepalive runs on the caller's clock ([`Driver::keepalive_tick`]).
    loop_clock: bool,
    /// The peer did not answer the keepalive ping in time (found by the caller's clock).
    keepalive_expired: bool,
    /// The keepalive found reading paused because the handler could not take more events
    /// (kept here rather than in the keepalive's state, where it would cost a word).
    keepalive_paused: bool,
}

impl<S, H> Future for Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler + Unpin,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.borrow_write_buffer();
        if this.phase == Phase::New {
            this.phase = Phase::Open;
            this.in_scope(H::on_open);
            // Bytes that arrived with the handshake may already hold frames.
            this.process_events();
        }
        let done = this.drive(cx);
        this.give_back_write_buffer();
        ready!(done);
        this.finish();
        Poll::Ready(())
    }
}

impl<S, H: Handler> Driver<S, H> {
    /// Reports the end of the connection through `on_close`, once.
    fn finish(&mut self) {
        let phase = std::mem::replace(&mut self.phase, Phase::Finished);
        if phase == Phase::Finished {
            return;
        }
        self.handler.shared().set_ready_state(ReadyState::Closed);
        self.handler.shared().publish_queued(0);
        let info = self
            .close
            .take()
            .map_or_else(CloseInfo::dropped, |info| *info);
        if let Some(counters) = &self.counters {
            counters.closed(info.code.as_u16());
        }
        if phase == Phase::Open {
            // `on_close` answers `on_open`: a connection dropped before its first poll was
            // never reported open.
            self.handler.on_close(info);
        }
    }
}

impl<S, H: Handler> Drop for Driver<S, H> {
    fn drop(&mut self) {
        if self.phase != Phase::Finished && self.conn.ready_state() != ReadyState::Closed {
            // Whatever the closing handshake had reached, the connection ends here, unclean.
            self.close = Some(Box::new(CloseInfo::dropped()));
        }
        self.finish();
    }
}

/// A connection's life as its handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not polled yet: `on_open` has not run.
    New,
    /// `on_open` ran; `on_close` is owed.
    Open,
    /// The end was reported (`on_close`, the counters).
    Finished,
}

/// The idle keepalive's clock.
struct KeepaliveState {
    /// Wakes the driver when the next step is due; made on the first poll, and never for a
    /// connection of a server worker's event loop, whose clock is the loop's
    /// ([`Driver::keepalive_tick`]): one timer per worker instead of one per connection.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the peer's last bytes arrived.
    last_heard: Instant,
    /// When our unanswered ping went out.
    ping_sent: Option<Instant>,
}

/// What the keepalive does next.
enum KeepaliveStep {
    /// Nothing until then.
    Wait(Instant),
    /// The ping was queued.
    Ping,
    /// The ping went unanswered.
    Expired,
}

impl KeepaliveState {
    /// Advances the keepalive to `now`, queuing the ping on `conn` when it is due.
    fn step(&mut self, config: Keepalive, now: Instant, conn: &mut Proto) -> KeepaliveStep {
        if let Some(sent) = self.ping_sent {
            // Bytes heard at the very instant the ping went out came after it (the ping is
            // due only `interval` after the last bytes): they answer it. Only a clock that
            // stands still while the driver works (tokio's paused clock) shows such a tie.
            if self.last_heard < sent {
                let deadline = sent + config.timeout;
                return if now >= deadline {
                    KeepaliveStep::Expired
                } else {
                    KeepaliveStep::Wait(deadline)
                };
            }
            self.ping_sent = None;
        }
        let due = self.last_heard + config.interval;
        if due > now {
            return KeepaliveStep::Wait(due);
        }
        let _ = conn.send_ping(Bytes::new());
        self.ping_sent = Some(now);
        KeepaliveStep::Ping
    }
}

impl<S, H> Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    pub(crate) fn new(io: S, conn: Proto, handler: H, config: Arc<DriverConfig>) -> Self {
        handler.shared().set_ready_state(ReadyState::Open);
        let keepalive = config.keepalive.map(|_| KeepaliveState {
            timer: None,
            last_heard: Instant::now(),
            ping_sent: None,
        });
        Self {
            io,
            conn,
            handler,
            config,
            close: None,
            read_eof: false,
            write_shut: false,
            buffer_full: false,
            deadline: None,
            keepalive,
            counters: None,
            phase: Phase::New,
            inbox_registered: false,
            loop_clock: false,
            keepalive_expired: false,
            keepalive_paused: false,
        }
    }

    /// Leaves the keepalive's timing to the caller, which calls
    /// [`Driver::keepalive_tick`] now and then (a server worker's event loop).
    pub(crate) fn with_loop_clock(mut self) -> Self {
        self.loop_clock = true;
        self
    }

    /// The keepalive at `now`, for a driver on the loop's clock: queues the ping or marks
    /// the connection to be dropped when due. Returns whether the driver is to be polled.
    pub(crate) fn keepalive_tick(&mut self, now: Instant) -> bool {
        let (Some(config), Some(state)) = (self.config.keepalive, &mut self.keepalive) else {
            return false;
        };
        if self.keepalive_expired
            || self.keepalive_paused
            || self.conn.ready_state() != ReadyState::Open
        {
            return false;
        }
        match state.step(config, now, &mut self.conn) {
            KeepaliveStep::Wait(_) => false,
            KeepaliveStep::Ping => true,
            KeepaliveStep::Expired => {
                self.keepalive_expired = true;
                true
            }
        }
    }

    /// Counts this connection's traffic in a server worker's metrics.
    pub(crate) fn with_counters(mut self, counters: Arc<WorkerCounters>) -> Self {
        counters.opened();
        self.counters = Some(counters);
        self
    }

    /// The connection's stream.
    pub(crate) fn io_mut(&mut self) -> &mut S {
        &mut self.io
    }

    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Once per wake-up, not per round: a ping it queues goes out with the first write.
        if self.poll_keepalive(cx) {
            return Poll::Ready(());
        }
        let mut read = 0;
        // A read that was pending has registered this task for the next bytes: trying again
        // in the same wake-up finds none, and would copy a parked leftover in and out again.
        let mut may_read = true;
        for _ in 0..BUDGET {
            let mut progressed = self.poll_commands(cx);
            if may_read {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(n)) => {
                        progressed = true;
                        read += n;
                    }
                    Poll::Ready(Err(e)) => return self.abort(e),
                    Poll::Pending => may_read = false,
                }
            }
            match self.poll_write(cx) {
                Poll::Ready(Ok(wrote)) => progressed |= wrote,
                Poll::Ready(Err(e)) => return self.abort(e),
                Poll::Pending => {}
            }
            self.sync_state();
            if let Poll::Ready(()) = self.poll_finish(cx) {
                return Poll::Ready(());
            }
            if !progressed {
                return Poll::Pending;
            }
            if read >= READ_BUDGET {
                break;
            }
        }
        // Out of budget with work left: let the other connections of this worker run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Applies commands from handles on other tasks or threads.
    fn poll_commands(&mut self, cx: &mut Context<'_>) -> bool {
        let commands = self
            .handler
            .shared()
            .take_commands(cx.waker(), &mut self.inbox_registered);
        let progressed = !commands.is_empty();
        for command in commands {
            self.handler.shared().taken(&command);
            self.apply(command);
        }
        if progressed {
            self.check_buffer();
        }
        progressed
    }

    /// Applies one command; the caller checks the buffer limits once after a batch.
    fn apply(&mut self, command: Command) {
        let is_message = matches!(command, Command::Send(_) | Command::Prepared(_));
        if is_message && !self.admit(&command) {
            return;
        }
        let result = match command {
            Command::Send(message) => self.conn.send_message(message),
            Command::Prepared(frame) => self.conn.send_prepared(&frame),
            Command::Ping(payload) => self.conn.send_ping(payload),
            Command::Close(code, reason) => {
                let result = self.conn.close(code, &reason);
                if result.is_ok() {
                    self.close = Some(Box::new(CloseInfo::unclean(code, reason)));
                }
                result
            }
        };
        if let (true, Ok(()), Some(counters)) = (is_message, &result, &self.counters) {
            counters.messages_sent(1);
        }
        // A send that raced with the close is dropped, as the browser drops it.
        if let Err(error) = result
            && !matches!(error, ProtoError::ApiMisuse(_))
        {
            self.handler.on_error(error.into());
        }
    }

    /// Whether a message may be queued. One that would take the send buffer over the hard
    /// limit is dropped and counted ([`OverflowPolicy::DropNew`]) or closes the connection
    /// with 1008 ([`OverflowPolicy::Close`]) — unless the buffer is empty: the limit is on
    /// messages piling up unread, and a single message as large as the limit (the echo of a
    /// message of the maximum size) must still go out.
    fn admit(&mut self, command: &Command) -> bool {
        let queued = self.conn.buffered_amount();
        if queued == 0
            || queued + command.weight() <= self.config.hard_buffer_limit
            || self.conn.ready_state() != ReadyState::Open
        {
            return true;
        }
        match self.config.overflow {
            OverflowPolicy::DropNew => {
                if let Some(counters) = &self.counters {
                    counters.message_dropped();
                }
            }
            OverflowPolicy::Close => {
                // A connection that resumes comes back for what it missed: "try again
                // later" rather than a violation.
                let code = if self.handler.shared().resumable() {
                    CloseCode::TRY_AGAIN_LATER
                } else {
                    CloseCode::POLICY_VIOLATION
                };
                let _ = self.conn.close(code, "send buffer full");
                self.close = Some(Box::new(CloseInfo::unclean(code, "send buffer full")));
            }
        }
        false
    }

    /// Sends the keepalive ping when the peer has been silent too long; `true` when the
    /// peer did not answer it in time and the connection is to be dropped. Paused while
    /// reading is (the handler's backpressure).
    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(config), Some(state)) = (self.config.keepalive, &mut self.keepalive) else {
            return false;
        };
        if self.conn.ready_state() != ReadyState::Open {
            // The close timeout watches a closing connection.
            self.keepalive = None;
            return false;
        }
        // While the handler cannot take more events nothing is read (`poll_read`), so the
        // peer's answer may be waiting unread in the socket: its silence proves nothing. The
        // keepalive waits, and counts the silence afresh from when reading resumes (the
        // handler's waker brings the driver back here then, and the timer is re-armed below).
        if self.handler.poll_ready(cx).is_pending() {
            self.keepalive_paused = true;
            return false;
        }
        if std::mem::take(&mut self.keepalive_paused) {
            state.last_heard = Instant::now();
        }
        let mut expired = self.keepalive_expired;
        if !self.loop_clock {
            let mut timer = state.timer.take().unwrap_or_else(|| {
                Box::pin(tokio::time::sleep_until(state.last_heard + config.interval))
            });
            while !expired && timer.as_mut().poll(cx).is_ready() {
                let now = Instant::now();
                match state.step(config, now, &mut self.conn) {
                    KeepaliveStep::Wait(due) => timer.as_mut().reset(due),
                    KeepaliveStep::Ping => timer.as_mut().reset(now + config.timeout),
                    KeepaliveStep::Expired => expired = true,
                }
            }
            state.timer = Some(timer);
        }
        if expired {
            self.close = Some(Box::new(CloseInfo::unclean(
                CloseCode::ABNORMAL,
                "keepalive timeout",
            )));
            self.handler
                .on_error(Error::Timeout("no answer to the keepalive ping"));
        }
        expired
    }

    /// Reads what is available and hands every decoded event to the handler.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_eof {
            return Poll::Pending;
        }
        let discard = self.conn.is_receive_done();
        if !discard && self.handler.poll_ready(cx).is_pending() {
            return Poll::Pending;
        }
        let buf = self.conn.recv_buffer_mut();
        // Between reads a connection holds no buffer, or the start of a frame parked in an
        // allocation of its own size: the read goes into the worker's buffer, the parked
        // bytes copied in front. Only a large partial frame keeps a buffer of its own.
        let parked = (buf.len() <= PARK_AT_MOST).then(|| {
            let mut lent = buffers::borrow_read();
            lent.extend_from_slice(buf);
            std::mem::replace(buf, lent)
        });
        if parked.is_none() && buf.capacity() - buf.len() < READ_RESERVE / 8 {
            buf.reserve(READ_RESERVE);
        }
        let read = poll_read_buf(Pin::new(&mut self.io), cx, buf);
        let n = match read {
            Poll::Ready(Ok(n)) => n,
            Poll::Ready(Err(e)) => {
                self.give_back_read_buffer(parked);
                return Poll::Ready(Err(e));
            }
            Poll::Pending => {
                self.give_back_read_buffer(parked);
                return Poll::Pending;
            }
        };
        if n > 0 {
            if let Some(state) = &mut self.keepalive {
                state.last_heard = Instant::now();
            }
            if let Some(counters) = &self.counters {
                counters.received(n);
            }
        }
        if n == 0 {
            self.read_eof = true;
            if !discard {
                // The TCP connection ended without a closing handshake.
                self.close
                    .get_or_insert_with(|| Box::new(CloseInfo::dropped()));
            }
        } else if discard {
            // After the close frame nothing more is read, but the socket is drained until
            // the peer closes it, so that closing ours does not reset the connection and
            // destroy the close frame we sent.
            self.conn.recv_buffer_mut().clear();
        } else {
            self.process_events();
        }
        self.give_back_read_buffer(None);
        Poll::Ready(Ok(n))
    }

    /// Lends the worker's write buffer to a connection with nothing queued, for this poll.
    fn borrow_write_buffer(&mut self) {
        if !self.conn.wants_transmit() {
            // Nothing is queued, so the swap cannot fail; what it gives back is empty.
            let _ = self.conn.replace_send_buffer(buffers::borrow_write());
        }
    }

    /// Returns the write buffer to the worker once everything in it is written.
    fn give_back_write_buffer(&mut self) {
        if let Ok(buf) = self.conn.replace_send_buffer(BytesMut::new())
            && buf.capacity() > 0
        {
            buffers::give_back_write(buf);
        }
    }

    /// Returns the receive buffer to the worker after a read, unless a large partial frame
    /// is left in it: a small leftover (the start of a frame) is parked in an allocation of
    /// its own size, so that a peer that sends a frame's first byte and then waits holds a
    /// few bytes, not the worker's whole buffer. `parked` is what the read started from,
    /// reused when nothing was read.
    fn give_back_read_buffer(&mut self, parked: Option<BytesMut>) {
        let buf = self.conn.recv_buffer_mut();
        let left = buf.len();
        if left > PARK_AT_MOST.max(buf.capacity() / 8) {
            // The decoder made room for the rest of a large frame; copying its start out
            // and back in at every read would cost more than the room.
            return;
        }
        let leftover = match parked {
            Some(parked) if parked.len() == left && parked.capacity() == left => parked,
            _ if left == 0 => BytesMut::new(),
            _ => BytesMut::from(&buf[..]),
        };
        let mut lent = std::mem::replace(buf, leftover);
        if lent.capacity() > 0 {
            lent.clear();
            buffers::give_back_read(lent);
        }
    }

    /// Runs a handler method with this connection's outbox open, then applies what it sent.
    fn in_scope(&mut self, f: impl FnOnce(&mut H)) {
        let _scope = outbox::open(self.handler.shared().id(), self.direct());
        let mut sent = outbox::borrow_list();
        f(&mut self.handler);
        self.apply_sent(&mut sent);
        outbox::give_back_list(sent);
    }

    /// What sends from this connection's callbacks may encode at once: messages it sends as
    /// one plain frame, up to the lower buffer limit (a send past it takes the command path,
    /// where the limits are enforced).
    fn direct(&self) -> Direct {
        match self.conn.plain_frame_limit() {
            // A larger message goes through the command path, which queues it without a copy
            // (the size below which the protocol core lends and copies messages).
            Some(limit) => Direct {
                max_payload: limit.min(MAX_LENT),
                room: self
                    .config
                    .soft_buffer_limit
                    .min(self.config.hard_buffer_limit)
                    .saturating_sub(self.conn.buffered_amount()),
            },
            None => Direct::NONE,
        }
    }

    /// Applies, in order, what the handler sent through the outbox (the frames encoded at
    /// once, then the commands), and what the callbacks that this fires (buffer full,
    /// errors) send in turn, until nothing is left; then tells the outbox what may be
    /// encoded at once from the buffer as it now is. `sent` is an empty list to use.
    fn apply_sent(&mut self, sent: &mut Vec<Command>) {
        loop {
            let mut flushed = None;
            let commands = outbox::take_sent(sent, |frames| {
                if !frames.is_empty() {
                    let count = frames.frames();
                    // Frames are only encoded while the connection can send them (`direct`);
                    // were one dropped, it is not counted, as `apply` does not count it.
                    flushed = Some(self.conn.send_frames(frames).map(|()| count));
                }
                self.direct()
            });
            if let (Some(Ok(count)), Some(counters)) = (&flushed, &self.counters) {
                counters.messages_sent(*count);
            }
            if commands {
                // Nothing is encoded at once while the commands change the buffer
                // (`take_sent` closed the outbox's budget); the callbacks that follow get the
                // one left after.
                for command in sent.drain(..) {
                    self.apply(command);
                }
                outbox::set_direct(self.direct());
            } else if flushed.is_none() {
                return;
            }
            // Only a callback (or a command, whose errors call one) can have sent more.
            if !self.check_buffer() && !commands {
                return;
            }
        }
    }

    /// Hands every complete event to the handler, with the outbox open for the whole batch
    /// and each event's sends applied before the next event.
    fn process_events(&mut self) {
        let _scope = outbox::open(self.handler.shared().id(), self.direct());
        let mut sent = outbox::borrow_list();
        let borrows = self.handler.borrows();
        loop {
            if borrows {
                // A run of plain messages: their replies pile up in the outbox and are
                // queued together below, before anything that may queue frames of its own.
                let mut received = 0;
                while let Some(message) = self.conn.poll_message_ref() {
                    received += 1;
                    self.handler.on_message_ref(message);
                }
                if let Some(counters) = &self.counters {
                    counters.messages_received(received);
                }
                self.apply_sent(&mut sent);
            }
            let polled = if borrows {
                self.conn.poll_event_ref()
            } else {
                self.conn.poll_event().map(|e| e.map(EventRef::Owned))
            };
            match polled {
                Ok(Some(EventRef::Message(message))) => {
                    if let Some(counters) = &self.counters {
                        counters.messages_received(1);
                    }
                    self.handler.on_message_ref(message);
                }
                Ok(Some(EventRef::Owned(event))) => {
                    if let (Event::Message(_), Some(counters)) = (&event, &self.counters) {
                        counters.messages_received(1);
                    }
                    if let Event::Close(frame) = &event {
                        // Whoever started it, the peer's close frame is what gets reported.
                        self.close = Some(Box::new(CloseInfo {
                            code: frame.as_ref().map_or(CloseCode::NO_STATUS, |f| f.code),
                            reason: frame.as_ref().map(|f| f.reason.clone()).unwrap_or_default(),
                            was_clean: true,
                        }));
                    }
                    self.handler.on_event(event);
                }
                Ok(None) => break,
                Err(error) => {
                    self.close = Some(Box::new(CloseInfo::unclean(
                        error.close_code().unwrap_or(CloseCode::PROTOCOL_ERROR),
                        error.to_string(),
                    )));
                    self.handler.on_error(error.into());
                    self.apply_sent(&mut sent);
                    break;
                }
            }
            // Also after a lent run's flush: what this event queued (a pong, a close) counts
            // against the room of the next run.
            self.apply_sent(&mut sent);
        }
        outbox::give_back_list(sent);
    }

    /// Writes everything queued, with one vectored write per batch of slices.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut wrote = false;
        while self.conn.wants_transmit() {
            let written = if self.conn.transmit_slice_count() <= FEW_IOV {
                self.write_vectored::<FEW_IOV>(cx)
            } else {
                self.write_vectored::<MAX_IOV>(cx)
            };
            let n = match written {
                Poll::Ready(result) => result?,
                Poll::Pending if wrote => break,
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.advance_transmit(n);
            if let Some(counters) = &self.counters {
                counters.sent(n);
            }
            wrote = true;
        }
        if wrote {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        }
        Poll::Ready(Ok(wrote))
    }

    /// One vectored write of up to `N` slices of what is queued.
    fn write_vectored<const N: usize>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut slices = [IoSlice::new(&[]); N];
        let count = self.conn.transmit_slices(&mut slices);
        Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count])
    }

    /// Publishes the state to the handles and fires the buffer callbacks.
    fn sync_state(&mut self) {
        let state = self.conn.ready_state();
        self.handler
            .shared()
            .set_ready_state(if state == ReadyState::Closed {
                // Closed for the application once the TCP connection is gone too.
                ReadyState::Closing
            } else {
                state
            });
        self.check_buffer();
        if state != ReadyState::Open && self.deadline.is_none() {
            self.deadline = Some(Box::pin(tokio::time::sleep_until(
                Instant::now() + self.config.close_timeout,
            )));
        }
    }

    /// Publishes the buffered amount and fires the buffer callbacks; `true` when one was
    /// called.
    fn check_buffer(&mut self) -> bool {
        let buffered = self.conn.buffered_amount();
        self.handler.shared().publish_queued(buffered);
        if !self.buffer_full && buffered > self.config.soft_buffer_limit {
            self.buffer_full = true;
            self.handler.on_buffer_full();
        } else if self.buffer_full && buffered == 0 {
            self.buffer_full = false;
            self.handler.on_buffer_drain();
        } else {
            return false;
        }
        true
    }

    /// Ends the connection once the closing handshake is done and flushed, or the peer
    /// went away, or the close timeout passed.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_eof && !self.conn.wants_transmit() {
            return Poll::Ready(());
        }
        if self.read_eof && self.conn.ready_state() != ReadyState::Closed {
            // The peer is gone mid-conversation: nothing we queue will be read.
            return Poll::Ready(());
        }
        if self.conn.ready_state() == ReadyState::Closed
            && !self.conn.wants_transmit()
            && !self.write_shut
            && self.conn.role() == Role::Server
        {
            // RFC 6455 §7.1.1: the server closes the TCP connection first. Half-close, then
            // wait for the client's end (read side) so no data is lost to a reset.
            if Pin::new(&mut self.io).poll_shutdown(cx).is_ready() {
                self.write_shut = true;
            }
        }
        if let Some(deadline) = &mut self.deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            if let Some(info) = &mut self.close
                && self.conn.ready_state() != ReadyState::Closed
            {
                info.was_clean = false;
            }
            return Poll::Ready(());
        }
        Poll::Pending
    }

    fn abort(&mut self, error: io::Error) -> Poll<()> {
        if self.conn.ready_state() != ReadyState::Closed {
            self.close = Some(Box::new(CloseInfo::dropped()));
            self.handler.on_error(Error::Io(error));
        }
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::task::Waker;

    use tokio::io::{AsyncWriteExt, DuplexStream};
    use wsworker_proto::{Config, Message};

    use super::*;
    use crate::shared::contain;

    /// What the test handler saw.
    #[derive(Default)]
    struct Seen {
        messages: Vec<Message>,
        closes: Vec<CloseInfo>,
    }

    /// Records events; panics on a message when told to, as a bug of ours would (nothing
    /// contains it, unlike the server's callbacks).
    struct Recorder {
        shared: Shared,
        seen: Rc<RefCell<Seen>>,
        panic_on_message: bool,
    }

    impl Handler for Recorder {
        fn shared(&self) -> &Shared {
            &self.shared
        }

        fn on_event(&mut self, event: Event) {
            if let Event::Message(message) = event {
                assert!(!self.panic_on_message, "a bug in the library");
                self.seen.borrow_mut().messages.push(message);
            }
        }

        fn on_error(&mut self, _: Error) {}

        fn on_close(&mut self, info: CloseInfo) {
            self.seen.borrow_mut().closes.push(info);
        }
    }

    struct Setup {
        driver: Driver<DuplexStream, Recorder>,
        peer: DuplexStream,
        seen: Rc<RefCell<Seen>>,
        counters: Arc<WorkerCounters>,
    }

    fn server(panic_on_message: bool) -> Setup {
        let (io, peer) = tokio::io::duplex(1 << 20);
        let seen = Rc::new(RefCell::new(Seen::default()));
        let handler = Recorder {
            shared: Shared::new(),
            seen: seen.clone(),
            panic_on_message,
        };
        let counters = Arc::new(WorkerCounters::default());
        let driver = Driver::new(
            io,
            Proto::new(Role::Server, Config::default()),
            handler,
            Arc::default(),
        )
        .with_counters(counters.clone());
        Setup {
            driver,
            peer,
            seen,
            counters,
        }
    }

    /// A client's (masked) frame of a text message.
    fn client_frame(text: &str) -> Vec<u8> {
        let mut client = Proto::new(Role::Client, Config::default());
        client.send_text(text.to_owned()).unwrap();
        let mut bytes = Vec::new();
        while let Some(chunk) = client.poll_transmit() {
            bytes.extend_from_slice(&chunk);
        }
        bytes
    }

    fn poll(driver: &mut Driver<DuplexStream, Recorder>) -> Poll<()> {
        Pin::new(driver).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[tokio::test]
    async fn a_driver_dropped_before_the_end_reports_1006_and_balances_the_counters() {
        let Setup {
            mut driver,
            seen,
            counters,
            peer: _peer,
        } = server(false);
        assert!(poll(&mut driver).is_pending());
        assert_eq!(counters.open(), 1);
        // As the worker's runtime does with the connections left at the shutdown deadline.
        drop(driver);
        let closes = &seen.borrow().closes;
        assert_eq!(closes.len(), 1, "on_close ran once");
        assert_eq!(closes[0].code, CloseCode::ABNORMAL);
        assert!(!closes[0].was_clean);
        assert_eq!(counters.open(), 0);
    }

    #[tokio::test]
    async fn a_panic_out_of_the_driver_still_ends_the_connection_properly() {
        let Setup {
            mut driver,
            mut peer,
            seen,
            counters,
        } = server(true);
        peer.write_all(&client_frame("boom")).await.unwrap();
        // The event loop contains a panic that escapes a connection, then drops it.
        assert!(contain(|| poll(&mut driver)).is_err());
        drop(driver);
        let closes = &seen.borrow().closes;
        assert_eq!(closes.len(), 1, "on_close ran once");
        assert_eq!(closes[0].code, CloseCode::ABNORMAL);
        assert_eq!(counters.open(), 0, "the max_connections slot is free again");
    }

    #[tokio::test]
    async fn a_driver_dropped_unopened_balances_the_counters_without_on_close() {
        let Setup {
            driver,
            seen,
            counters,
            ..
        } = server(false);
        assert_eq!(counters.open(), 1);
        drop(driver);
        assert!(seen.borrow().closes.is_empty(), "never reported open");
        assert_eq!(counters.open(), 0);
    }

    #[tokio::test]
    async fn a_connection_ended_normally_reports_once() {
        let Setup {
            mut driver,
            peer,
            seen,
            counters,
        } = server(false);
        assert!(poll(&mut driver).is_pending());
        drop(peer);
        assert!(poll(&mut driver).is_ready());
        drop(driver);
        assert_eq!(seen.borrow().closes.len(), 1);
        assert_eq!(counters.open(), 0);
    }

    #[tokio::test]
    async fn the_start_of_a_frame_is_parked_small_and_the_read_buffer_goes_back() {
        let Setup {
            mut driver,
            mut peer,
            seen,
            ..
        } = server(false);
        let frame = client_frame("hello");
        // A frame's first byte, then its next few, each read on its own.
        for (at, end) in [(0, 1), (1, 3), (3, 9)] {
            peer.write_all(&frame[at..end]).await.unwrap();
            assert!(poll(&mut driver).is_pending());
            let held = driver.conn.recv_buffer_mut();
            // Once the header (2 bytes and the 4 of the mask) is whole, the payload's start
            // is what is left.
            let left = if end < 6 { end } else { end - 6 };
            assert_eq!(held.len(), left, "the leftover is kept");
            assert!(
                held.capacity() < 64,
                "the leftover of {end} bytes holds {} bytes",
                held.capacity()
            );
            assert!(
                buffers::read_buffer_at_home().is_some_and(|c| c >= buffers::READ_SIZE),
                "the worker's read buffer is back"
            );
        }
        peer.write_all(&frame[9..]).await.unwrap();
        assert!(poll(&mut driver).is_pending());
        assert_eq!(seen.borrow().messages, [Message::from("hello")]);
        assert_eq!(driver.conn.recv_buffer_mut().capacity(), 0);
    }

    #[tokio::test]
    async fn a_large_partial_frame_keeps_its_buffer_and_arrives_whole() {
        let Setup {
            mut driver,
            mut peer,
            seen,
            ..
        } = server(false);
        let text = "x".repeat(300_000);
        let frame = client_frame(&text);
        let mut sent = 0;
        for piece in frame.chunks(50_000) {
            peer.write_all(piece).await.unwrap();
            sent += piece.len();
            assert!(poll(&mut driver).is_pending());
            if sent < frame.len() {
                // Far more than a leftover worth parking: the decoder's room stays.
                assert!(driver.conn.recv_buffer_mut().capacity() >= 50_000);
            }
        }
        assert_eq!(seen.borrow().messages, [Message::from(text)]);
    }

    #[tokio::test]
    async fn frames_split_anywhere_across_reads_arrive_whole() {
        let Setup {
            mut driver,
            mut peer,
            seen,
            ..
        } = server(false);
        let messages: Vec<String> = (0..40).map(|i| "m".repeat(i * 37)).collect();
        let stream: Vec<u8> = messages.iter().flat_map(|m| client_frame(m)).collect();
        // Reads of every size from 1 byte up, so each read ends at another point of a frame.
        let mut at = 0;
        let mut size = 1;
        while at < stream.len() {
            let end = (at + size).min(stream.len());
            peer.write_all(&stream[at..end]).await.unwrap();
            assert!(poll(&mut driver).is_pending());
            at = end;
            size += 7;
        }
        let seen = seen.borrow();
        let got: Vec<&str> = seen.messages.iter().map(|m| m.to_text().unwrap()).collect();
        assert_eq!(got, messages);
    }
}

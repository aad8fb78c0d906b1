//! The future that owns one socket and its `wsworker_proto::Connection`, for either role:
//! a task of its own (the client, a TLS server connection) or an entry of a server
//! worker's event loop (a plain server connection).
//!
//! One `poll` does everything that is ready, in an order that keeps replies in order and
//! syscalls few: what handles on other tasks sent, then reads (each read is decoded at once
//! and every event handed to the [`Handler`], whose sends are applied right after it
//! returns), then
//! one vectored write of everything queued, then the timers (idle keepalive, close
//! timeout). The proto crate does all the protocol work; this module only moves bytes,
//! keeps time and enforces the send-buffer limits. (A fan-out held on the event loop is
//! written to an idle connection's socket by the loop, through
//! [`Driver::write_now`], within the same limits.)
//!
//! By concern: [`read`](mod@read) (socket → protocol core → handler), [`reply`](mod@reply) (what
//! the connection's handles send, from its callbacks or elsewhere: one queue,
//! [`Shared`]), [`write`](mod@write) (queued frames → socket, and the send
//! buffer's limits), [`keepalive`](mod@keepalive) (the idle ping and its clock), [`close`](mod@close) (the state the
//! handles see, the close timeout, the end); this module holds the loop that runs them and
//! the handles' commands.
//!
//! State: where the connection is in its life is one [`Stage`] (not polled yet, open,
//! closing with the close timeout running, read side ended, write side shut, ended,
//! reported), so that a timer without a closing handshake or a half-closed client cannot be
//! written; the protocol's own state (which close frames went which way) stays in the
//! protocol core. The keepalive's state (heard, pinged, paused, expired; its own timer or
//! the event loop's clock) is the keepalive's. What is left are two independent facts that
//! hold in any stage, kept as plain booleans: the send buffer went over its soft limit
//! (`on_buffer_full` was called and `on_buffer_drain` is owed), and the outbound queue knows
//! this task's waker.

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
use crate::shared::{CloseInfo, Command, Direct, Shared};

mod close;
mod keepalive;
mod read;
mod reply;
mod rest;
mod write;

pub use keepalive::Keepalive;
use keepalive::KeepaliveState;

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
    conn: rest::ProtoSlot,
    handler: H,
    /// Shared by all the connections of a worker.
    config: Arc<DriverConfig>,
    /// How the connection ended, once known (boxed: every connection carries the field).
    close: Option<Box<CloseInfo>>,
    /// Where the connection is in its life: the socket's two directions, the close timeout,
    /// what the handler was told.
    stage: Stage,
    keepalive: Option<KeepaliveState>,
    /// The server's counters for this worker; `None` for a client.
    counters: Option<Arc<WorkerCounters>>,
    /// The send buffer went above the soft limit and `on_buffer_full` was called; cleared by
    /// `on_buffer_drain`. Independent of the stage: a closing connection still drains.
    buffer_full: bool,
    /// The outbound queue holds this task's waker (left on the first look, kept after: a
    /// task's waker does not change).
    waker_registered: bool,
    /// The last read filled all the room it was given: the peer streams, and the next
    /// read into a buffer of the connection's own gets room beyond the frame's end.
    streaming: bool,
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
        let opening = matches!(this.stage, Stage::New);
        if opening {
            this.stage = Stage::Open;
            this.in_scope(H::on_open);
            // Bytes that arrived with the handshake may already hold frames.
            this.process_events();
        }
        let mut progressed = false;
        let done = this.drive(cx, &mut progressed);
        this.give_back_write_buffer();
        let closed = matches!(this.stage, Stage::WriteShut(_));
        if (opening || !progressed || closed) && done.is_pending() {
            // A connection that opened and waits, or was polled for nothing (a socket's
            // edge without bytes), sleeps at once: the many opened in a burst must not all
            // hold their state until the runtime's sweep (`rest`). A connection that moved
            // bytes waits for the sweep, or a busy one would wake and sleep per message.
            // So does a server's connection whose closing handshake is over: it sends
            // nothing more and discards what arrives until the client's end (when many
            // clients leave at once, the state machine was most of what each held).
            this.rest();
        }
        ready!(done);
        this.finish();
        Poll::Ready(())
    }
}

impl<S, H: Handler> Driver<S, H> {
    /// Puts the protocol state to sleep if the connection is open with nothing in flight
    /// (see `rest`), or a server's closing handshake is over and it waits for the client's
    /// end: between polls, where the runtime sweeps its idle connections. Whether it sleeps.
    pub(crate) fn rest(&mut self) -> bool {
        if !matches!(self.stage, Stage::Open | Stage::WriteShut(_)) {
            return false;
        }
        if self.conn.is_asleep() {
            return true;
        }
        if !self.conn.sleep() {
            return false;
        }
        // What it was sent meanwhile is applied: the frame buffer it was lent for that goes.
        self.handler.shared().shed_frames();
        true
    }

    /// Reports the end of the connection through `on_close`, once.
    fn finish(&mut self) {
        let stage = std::mem::replace(&mut self.stage, Stage::Reported);
        if matches!(stage, Stage::Reported) {
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
        if !matches!(stage, Stage::New) {
            // `on_close` answers `on_open`: a connection dropped before its first poll was
            // never reported open.
            self.handler.on_close(info);
        }
    }
}

impl<S, H: Handler> Drop for Driver<S, H> {
    fn drop(&mut self) {
        if !matches!(self.stage, Stage::Reported) && self.conn.ready_state() != ReadyState::Closed {
            // Whatever the closing handshake had reached, the connection ends here, unclean.
            self.end(CloseInfo::dropped());
        }
        self.finish();
    }
}

/// A timer of the driver's own.
type Timer = Pin<Box<Sleep>>;

/// Where a connection is in its life, from the driver's side: one value rather than a
/// boolean per fact, so that only the transitions that happen can be written (the close
/// timeout exists exactly while the closing handshake runs, a half-closed socket is a
/// closing server's, nothing follows the end).
///
/// The protocol's own state (open, closing, closed: which close frames went which way)
/// stays in the protocol core; this is the socket's and the handler's.
///
/// The transitions: `New` → `Open` on the first poll (`on_open`); `Open` → `Closing` when
/// a close frame goes out or comes in; `Closing` → `WriteShut` when a server's closing
/// handshake is done and flushed; `Closing` or `WriteShut` → `ReadClosed` when the peer
/// ends its side after its close frame with some of ours still unwritten; → `Ended` when
/// the peer ends its side otherwise, the close timeout passes, everything is flushed after
/// `ReadClosed`, an I/O error or the keepalive ends it; `Ended` → `Reported` once
/// `on_close` ran (a driver dropped early goes there from any stage).
enum Stage {
    /// Not polled yet: `on_open` has not run.
    New,
    /// `on_open` ran; reading and writing, no close frame either way yet.
    Open,
    /// A close frame went out or came in; the close timeout runs (its timer, or `None` on
    /// the loop's clock: see `close_timer`).
    Closing(Option<Timer>),
    /// The peer ended its side after its close frame: what is queued (our close frame) is
    /// written, then the connection ends. Nothing more is read.
    ReadClosed(Option<Timer>),
    /// A server half-closed its socket after the closing handshake (RFC 6455 §7.1.1) and
    /// reads until the peer ends its side. Nothing more is written.
    WriteShut(Option<Timer>),
    /// Over: the future completes and reports it.
    Ended,
    /// The end was reported (`on_close`, the counters).
    Reported,
}

impl Stage {
    /// Whether the socket is still read.
    fn reads(&self) -> bool {
        matches!(
            self,
            Self::New | Self::Open | Self::Closing(_) | Self::WriteShut(_)
        )
    }
}

impl<S, H> Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    pub(crate) fn new(io: S, conn: Proto, handler: H, config: Arc<DriverConfig>) -> Self {
        handler.shared().set_ready_state(ReadyState::Open);
        let keepalive = config.keepalive.map(|_| KeepaliveState::new());
        Self {
            io,
            conn: rest::ProtoSlot::new(conn),
            handler,
            config,
            close: None,
            stage: Stage::New,
            keepalive,
            counters: None,
            buffer_full: false,
            waker_registered: false,
            streaming: false,
        }
    }

    /// Counts this connection's traffic in a server worker's metrics.
    pub(crate) fn with_counters(mut self, counters: Arc<WorkerCounters>) -> Self {
        counters.opened();
        self.counters = Some(counters);
        self
    }

    /// What the connection's handles share with it.
    pub(crate) fn shared(&self) -> &Shared {
        self.handler.shared()
    }

    /// The connection's stream.
    pub(crate) fn io_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// `any_progress` is set when something was read, written or applied.
    fn drive(&mut self, cx: &mut Context<'_>, any_progress: &mut bool) -> Poll<()> {
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
            *any_progress = true;
            if read >= READ_BUDGET {
                break;
            }
        }
        // Out of budget with work left: let the other connections of this worker run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Applies what handles on other tasks or threads sent (and leaves the waker for the
    /// next).
    fn poll_commands(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.waker_registered {
            self.handler.shared().register(cx.waker());
            self.waker_registered = true;
        }
        self.apply_sent()
    }

    /// Applies one command; the caller checks the buffer limits once after a batch.
    fn apply(&mut self, command: Command) {
        let is_message = matches!(command, Command::Send(_) | Command::Prepared(_));
        if is_message && !self.admit(&command) {
            return;
        }
        let result = match command {
            Command::Send(message) => self.conn.get().send_message(message),
            Command::Prepared(frame) => self.conn.get().send_prepared(&frame),
            Command::Ping(payload) => self.conn.get().send_ping(payload),
            Command::Close(code, reason) => {
                let result = self.conn.get().close(code, &reason);
                if result.is_ok() {
                    self.end(CloseInfo::unclean(code, reason));
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
}

#[cfg(test)]
mod tests;

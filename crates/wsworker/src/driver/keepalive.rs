//! The idle keepalive: a ping after a silence, the connection dropped when the ping goes
//! unanswered; on a timer of its own (a task) or on the event loop's clock
//! ([`Driver::keepalive_tick`]), one step function for both.

use super::rest::ProtoSlot;
use super::*;

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

/// The idle keepalive's state.
pub(super) struct KeepaliveState {
    clock: Clock,
    watch: Watch,
}

/// What brings the driver back when the keepalive's next step is due.
enum Clock {
    /// A timer of its own, made on the first poll.
    Own(Option<Timer>),
    /// The server worker's event loop, which calls [`Driver::keepalive_tick`]: one timer
    /// per worker instead of one per connection.
    Loop,
}

/// Where the keepalive is: one value, as there is a last time heard only while no ping
/// is awaited (any bytes answer the ping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// The peer's last bytes arrived then; a ping goes out `interval` after.
    Heard(Instant),
    /// Our ping went out then and is unanswered.
    Pinged(Instant),
    /// The handler cannot take more events, so nothing is read and the peer's answer may
    /// be waiting unread in the socket: its silence proves nothing. Counted afresh from
    /// when reading resumes.
    Paused,
    /// The ping went unanswered: the connection is to be dropped. Final.
    Expired,
    /// The closing handshake runs: the close timeout ends it then. Only on the loop's
    /// clock, where it saves the connection a timer of its own while it closes.
    Closing(Instant),
}

/// What the keepalive does next.
pub(super) enum KeepaliveStep {
    /// Nothing until then.
    Wait(Instant),
    /// The ping was queued.
    Ping,
    /// The ping went unanswered.
    Expired,
}

impl KeepaliveState {
    /// The keepalive of a connection that opens now.
    pub(super) fn new() -> Self {
        Self {
            clock: Clock::Own(None),
            watch: Watch::Heard(Instant::now()),
        }
    }

    /// The peer's bytes arrived (now): they answer a ping, and end a pause. (Not the close
    /// timeout's watch: the closing handshake has its own end.)
    pub(super) fn heard(&mut self) {
        if !matches!(self.watch, Watch::Expired | Watch::Closing(_)) {
            self.watch = Watch::Heard(Instant::now());
        }
    }

    /// When the next step is due; `None` while paused, once expired or closing.
    fn due(&self, config: Keepalive) -> Option<Instant> {
        match self.watch {
            Watch::Heard(at) => Some(at + config.interval),
            Watch::Pinged(at) => Some(at + config.timeout),
            Watch::Paused | Watch::Expired | Watch::Closing(_) => None,
        }
    }

    /// Watches the close timeout, due at `deadline`, when on the loop's clock (the
    /// keepalive itself is over); whether it does.
    pub(super) fn watch_close(&mut self, deadline: Instant) -> bool {
        let on_loop = matches!(self.clock, Clock::Loop);
        if on_loop {
            self.watch = Watch::Closing(deadline);
        }
        on_loop
    }

    /// The close timeout's deadline, when this state watches it.
    pub(super) fn close_deadline(&self) -> Option<Instant> {
        match self.watch {
            Watch::Closing(deadline) => Some(deadline),
            _ => None,
        }
    }

    /// Advances the keepalive to `now`, queuing the ping on `conn` when it is due (the only
    /// step that wakes a sleeping connection's state).
    fn step(&mut self, config: Keepalive, now: Instant, conn: &mut ProtoSlot) -> KeepaliveStep {
        match self.watch {
            Watch::Heard(at) if at + config.interval > now => {
                KeepaliveStep::Wait(at + config.interval)
            }
            Watch::Heard(_) => {
                let _ = conn.get().send_ping(Bytes::new());
                self.watch = Watch::Pinged(now);
                KeepaliveStep::Ping
            }
            Watch::Pinged(at) if at + config.timeout > now => {
                KeepaliveStep::Wait(at + config.timeout)
            }
            Watch::Pinged(_) | Watch::Expired => {
                self.watch = Watch::Expired;
                KeepaliveStep::Expired
            }
            // The close timeout is the driver's (see `poll_finish`).
            Watch::Closing(deadline) => KeepaliveStep::Wait(deadline),
            // Nothing is due until reading resumes, which wakes the driver.
            Watch::Paused => KeepaliveStep::Wait(now + config.interval),
        }
    }
}

impl<S, H> Driver<S, H>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    /// Leaves the keepalive's timing to the caller, which calls
    /// [`Driver::keepalive_tick`] now and then (a server worker's event loop).
    pub(crate) fn with_loop_clock(mut self) -> Self {
        if let Some(state) = &mut self.keepalive {
            state.clock = Clock::Loop;
        }
        self
    }

    /// The keepalive at `now`, for a driver on the loop's clock: queues the ping or marks
    /// the connection to be dropped when due; or, while it closes, whether the close
    /// timeout passed. Returns whether the driver is to be polled.
    pub(crate) fn keepalive_tick(&mut self, now: Instant) -> bool {
        let (Some(config), Some(state)) = (self.config.keepalive, &mut self.keepalive) else {
            return false;
        };
        if let Some(deadline) = state.close_deadline() {
            return now >= deadline;
        }
        if state.due(config).is_none() || self.conn.ready_state() != ReadyState::Open {
            return false;
        }
        match state.step(config, now, &mut self.conn) {
            KeepaliveStep::Wait(_) => false,
            KeepaliveStep::Ping | KeepaliveStep::Expired => true,
        }
    }

    /// Sends the keepalive ping when the peer has been silent too long; `true` when the
    /// peer did not answer it in time and the connection is to be dropped. Paused while
    /// reading is (the handler's backpressure).
    pub(super) fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> bool {
        let (Some(config), Some(state)) = (self.config.keepalive, &mut self.keepalive) else {
            return false;
        };
        if self.conn.ready_state() != ReadyState::Open {
            // The close timeout watches a closing connection (on the loop's clock, through
            // this state's watch, kept for it).
            if state.close_deadline().is_none() {
                self.keepalive = None;
            }
            return false;
        }
        if state.watch != Watch::Expired {
            // While reading is paused the keepalive waits (the handler's waker brings the
            // driver back here when it resumes, and the timer is re-armed below).
            if self.handler.poll_ready(cx).is_pending() {
                state.watch = Watch::Paused;
                return false;
            }
            if state.watch == Watch::Paused {
                state.watch = Watch::Heard(Instant::now());
            }
            if let Clock::Own(slot) = &mut state.clock {
                let mut timer = slot.take().unwrap_or_else(|| {
                    let due = state.due(config).unwrap_or_else(Instant::now);
                    Box::pin(tokio::time::sleep_until(due))
                });
                while state.watch != Watch::Expired && timer.as_mut().poll(cx).is_ready() {
                    let now = Instant::now();
                    match state.step(config, now, &mut self.conn) {
                        KeepaliveStep::Wait(due) => timer.as_mut().reset(due),
                        KeepaliveStep::Ping => timer.as_mut().reset(now + config.timeout),
                        KeepaliveStep::Expired => {}
                    }
                }
                state.clock = Clock::Own(Some(timer));
            }
        }
        let expired = state.watch == Watch::Expired;
        if expired {
            self.end(CloseInfo::unclean(CloseCode::ABNORMAL, "keepalive timeout"));
            self.handler
                .on_error(Error::Timeout("no answer to the keepalive ping"));
        }
        expired
    }
}

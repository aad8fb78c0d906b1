//! The idle keepalive: a ping after a silence, the connection dropped when the ping goes
//! unanswered; on a timer of its own (a task) or on the event loop's clock
//! ([`Driver::keepalive_tick`]), one step function for both.

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

/// The idle keepalive's clock.
pub(super) struct KeepaliveState {
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
            timer: None,
            last_heard: Instant::now(),
            ping_sent: None,
        }
    }

    /// The peer's bytes arrived (now).
    pub(super) fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// Advances the keepalive to `now`, queuing the ping on `conn` when it is due.
    pub(super) fn step(
        &mut self,
        config: Keepalive,
        now: Instant,
        conn: &mut Proto,
    ) -> KeepaliveStep {
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

    /// Sends the keepalive ping when the peer has been silent too long; `true` when the
    /// peer did not answer it in time and the connection is to be dropped. Paused while
    /// reading is (the handler's backpressure).
    pub(super) fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> bool {
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
            self.end(CloseInfo::unclean(CloseCode::ABNORMAL, "keepalive timeout"));
            self.handler
                .on_error(Error::Timeout("no answer to the keepalive ping"));
        }
        expired
    }
}

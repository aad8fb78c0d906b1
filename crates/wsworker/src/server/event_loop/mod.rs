//! A worker's event loop for its open plain-TCP connections: the worker's own epoll (mio),
//! registered once in the worker's tokio runtime, and a slab of drivers it polls as their
//! sockets become ready — uWebSockets' model, inside tokio.
//!
//! Why not a tokio task per connection: an idle connection costs what it holds, and a task
//! holds a header and its future rounded up to a cache line (~512 bytes here), and tokio's
//! readiness slot for the socket another 256. Here a connection is its driver in one
//! allocation and a small waker; that is most of the way to 1 KiB per idle connection.
//! The per-message path is the driver's, unchanged: the loop only says which sockets are
//! ready, and runs the connections that were woken (a send from another thread, a timer).
//!
//! The handshake still runs in a task of its own (on tokio's socket, with its timeout), and
//! hands the open connection over; TLS connections stay in tasks (their state is tens of
//! KiB anyway).

mod stream;
mod sys;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mio::{Events, Interest, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};

pub(crate) use stream::LoopStream;

use super::callbacks::ServerHandler;
use crate::driver::{Driver, Keepalive};
use crate::shared::contain;

/// A connection of the event loop.
pub(crate) type LoopDriver = Driver<LoopStream, ServerHandler>;

/// Readiness events taken from the worker's epoll per call.
const EVENTS: usize = 256;
/// Rounds (readiness, then every connection ready or woken) one poll of the loop runs before
/// it yields to the worker's other tasks.
const ROUNDS: usize = 8;

/// One worker's event loop: a future that runs until the worker stops and its last
/// connection is over.
pub(crate) struct EventLoop {
    epoll: AsyncFd<mio::Poll>,
    events: Events,
    conns: Slab<Box<Entry>>,
    shared: Arc<LoopShared>,
    /// Connections to poll this round (reused).
    run: Vec<usize>,
    /// The keepalive's clock for every connection of the loop, when keepalive is on.
    clock: Option<Clock>,
}

/// One timer for the keepalive of all the loop's connections: each tick asks every
/// connection whether its ping (or its drop) is due. The idle keepalive is measured in
/// seconds, so a tick of a quarter of its shortest duration (at most a second) is precise
/// enough, and costs a few nanoseconds per connection per tick instead of a timer each.
struct Clock {
    timer: Pin<Box<Sleep>>,
    period: Duration,
}

impl Clock {
    fn new(keepalive: Keepalive) -> Self {
        let period = (keepalive.interval.min(keepalive.timeout) / 4)
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        Self {
            timer: Box::pin(tokio::time::sleep(period)),
            period,
        }
    }
}

/// A connection in the slab: its driver and what puts it back on the run list.
struct Entry {
    driver: LoopDriver,
    /// Made into the driver's `Waker` for each poll (one reference count up and down)
    /// rather than kept as one: 16 bytes less for every connection.
    wake: Arc<ConnWaker>,
}

/// What the loop shares with the handshake tasks and the connections' wakers.
#[derive(Default)]
struct LoopShared {
    state: Mutex<LoopState>,
}

#[derive(Default)]
struct LoopState {
    /// Connections whose waker was called (slots).
    woken: Vec<usize>,
    /// Connections handed over by their handshake, to be registered.
    opened: Vec<LoopDriver>,
    /// Handshakes under way that may still hand a connection over.
    handshakes: usize,
    stopping: bool,
    waker: Option<Waker>,
}

impl LoopShared {
    fn state(&self) -> MutexGuard<'_, LoopState> {
        // Every change under the lock is a push or a counter: consistent whatever panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the loop's task after `change` (made under the lock).
    fn update(&self, change: impl FnOnce(&mut LoopState)) {
        let waker = {
            let mut state = self.state();
            change(&mut state);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A connection's waker: puts its slot on the loop's list once until it is polled.
struct ConnWaker {
    slot: usize,
    queued: AtomicBool,
    shared: Arc<LoopShared>,
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.claim() {
            self.shared.update(|state| state.woken.push(self.slot));
        }
    }
}

impl ConnWaker {
    /// Marks the connection as on its way to the run list: `true` if it was not already.
    fn claim(&self) -> bool {
        !self.queued.swap(true, Ordering::AcqRel)
    }
}

/// Lets a handshake task hand its connection to the loop; while it exists, the loop does not
/// end (a stopping worker still closes the connections whose handshake ends late).
pub(crate) struct LoopHandle {
    shared: Arc<LoopShared>,
}

impl LoopHandle {
    /// Hands an open connection over to the loop.
    pub(crate) fn open(self, driver: LoopDriver) {
        self.shared.update(|state| state.opened.push(driver));
    }
}

impl Drop for LoopHandle {
    fn drop(&mut self) {
        self.shared.update(|state| state.handshakes -= 1);
    }
}

/// Tells the loop its worker stops: it ends once its connections are over.
pub(crate) struct LoopStop {
    shared: Arc<LoopShared>,
}

impl LoopStop {
    pub(crate) fn stop(&self) {
        self.shared.update(|state| state.stopping = true);
    }

    /// A handle for one more handshake.
    pub(crate) fn handle(&self) -> LoopHandle {
        self.shared.state().handshakes += 1;
        LoopHandle {
            shared: self.shared.clone(),
        }
    }
}

impl EventLoop {
    /// A loop registered in the current tokio runtime, and what starts handshakes and stops
    /// it. `keepalive` is that of the connections it will run.
    pub(crate) fn new(keepalive: Option<Keepalive>) -> io::Result<(Self, LoopStop)> {
        let shared = Arc::new(LoopShared::default());
        let event_loop = Self {
            epoll: sys::register_epoll(mio::Poll::new()?)?,
            events: Events::with_capacity(EVENTS),
            conns: Slab::new(),
            shared: shared.clone(),
            run: Vec::new(),
            clock: keepalive.map(Clock::new),
        };
        Ok((event_loop, LoopStop { shared }))
    }

    /// Takes in what arrived from other tasks and threads: opened connections, wakers called.
    /// Returns whether the loop may end once it has no connection.
    fn take_shared(&mut self, cx: &mut Context<'_>) -> bool {
        let (opened, woken, may_end) = {
            let mut state = self.shared.state();
            match &state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
            }
            (
                std::mem::take(&mut state.opened),
                std::mem::take(&mut state.woken),
                state.stopping && state.handshakes == 0,
            )
        };
        for slot in woken {
            // A waker may outlive its connection (a timer, a handle): then the slot is gone
            // or another connection's, and polling that one early is harmless.
            if self.conns.contains(slot) {
                self.run.push(slot);
            }
        }
        for driver in opened {
            self.insert(driver);
        }
        may_end
    }

    fn insert(&mut self, driver: LoopDriver) {
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        let wake = Arc::new(ConnWaker {
            slot,
            queued: AtomicBool::new(true),
            shared: self.shared.clone(),
        });
        let entry = entry.insert(Box::new(Entry { driver, wake }));
        let registered = self.epoll.get_ref().registry().register(
            entry.driver.io_mut().source(),
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        );
        match registered {
            // Its first poll calls `on_open` and handles bytes that came with the handshake.
            Ok(()) => self.run.push(slot),
            Err(error) => {
                tracing::warn!(%error, "cannot register a connection with the event loop");
                self.conns.remove(slot).driver.abandon(error);
            }
        }
    }

    /// Puts the connections whose sockets epoll reports ready on the run list.
    fn take_readiness(&mut self, cx: &mut Context<'_>) {
        loop {
            let mut guard = match self.epoll.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(error)) => {
                    tracing::error!(%error, "the event loop's epoll failed");
                    return;
                }
                Poll::Pending => return,
            };
            match guard
                .get_inner_mut()
                .poll(&mut self.events, Some(Duration::ZERO))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::error!(%error, "the event loop's epoll failed");
                    return;
                }
            }
            let mut count = 0;
            for event in &self.events {
                count += 1;
                let slot = event.token().0;
                let Some(entry) = self.conns.get_mut(slot) else {
                    continue;
                };
                // An error or a hang-up shows in the next read or write.
                entry.driver.io_mut().set_ready(event);
                if entry.wake.claim() {
                    self.run.push(slot);
                }
            }
            if count < EVENTS {
                // Drained: tokio reports the next edge (and keeps this one if another came
                // while we looked); the next look registers this task for it.
                guard.clear_ready();
            }
        }
    }

    /// Ticks the keepalive clock when due: the connections whose ping or drop is due go on
    /// the run list. An empty loop lets its clock stop.
    fn tick(&mut self, cx: &mut Context<'_>) {
        let Some(clock) = &mut self.clock else {
            return;
        };
        if self.conns.is_empty() {
            return;
        }
        while clock.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            for (slot, entry) in &mut self.conns {
                if entry.driver.keepalive_tick(now) && entry.wake.claim() {
                    self.run.push(slot);
                }
            }
            clock.timer.as_mut().reset(now + clock.period);
        }
    }

    /// Polls every connection on the run list once; ends those that are over.
    fn run_ready(&mut self) {
        // Wakers called while these run go to the shared list, not to this one.
        let mut run = std::mem::take(&mut self.run);
        for slot in run.drain(..) {
            let Some(entry) = self.conns.get_mut(slot) else {
                continue;
            };
            entry.wake.queued.store(false, Ordering::Release);
            let waker = Waker::from(entry.wake.clone());
            let mut cx = Context::from_waker(&waker);
            // Callbacks' panics are contained in the driver; one that escapes (a bug of
            // ours) ends its connection, not the worker's others, as it would in a task.
            let done = contain(|| Pin::new(&mut entry.driver).poll(&mut cx).is_ready())
                .unwrap_or_else(|panic| {
                    tracing::error!(%panic, "a connection's driver panicked");
                    true
                });
            if done {
                let mut entry = self.conns.remove(slot);
                let _ = self
                    .epoll
                    .get_ref()
                    .registry()
                    .deregister(entry.driver.io_mut().source());
            }
        }
        // Keeps the list's room for the next round.
        self.run = run;
    }
}

impl Future for EventLoop {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        for _ in 0..ROUNDS {
            let may_end = this.take_shared(cx);
            this.take_readiness(cx);
            this.tick(cx);
            if this.run.is_empty() {
                if may_end && this.conns.is_empty() {
                    return Poll::Ready(());
                }
                return Poll::Pending;
            }
            this.run_ready();
        }
        // Work left: let the worker's other tasks (handshakes, the application's) run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_connection_stays_small() {
        // An open connection of the event loop is this allocation, for as long as it lives:
        // a server holding many idle connections pays it for each.
        let size = size_of::<Entry>();
        assert!(size <= 392, "a connection's slab entry is {size} bytes");
    }
}

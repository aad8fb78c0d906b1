//! A worker's event loop: the worker's own epoll (mio), registered once in the worker's
//! tokio runtime, its listening socket, and a slab of connections — each a plain socket's
//! opening handshake, then its driver — polled as their sockets become ready:
//! uWebSockets' model, inside tokio.
//!
//! Why not a tokio task per connection: an idle connection costs what it holds, and a task
//! holds a header and its future rounded up to a cache line (~512 bytes here), and tokio's
//! readiness slot for the socket another 256. Here a connection is its driver in one
//! allocation and a small waker; that is most of the way to 1 KiB per idle connection.
//! The per-message path is the driver's, unchanged: the loop only says which sockets are
//! ready, and runs the connections that were woken (a send from another thread, a timer).
//!
//! The loop accepts, so a plain connection's socket is registered once, in the loop's
//! epoll, for its whole life: its handshake (a future, with its timeout on tokio's timer)
//! runs in the same slab entry that then holds its driver. A TLS connection goes to a
//! tokio task as it is accepted (its state is tens of KiB anyway).
//!
//! With HTTP/2 on (`Worker::http2`), a plain connection may turn out to speak HTTP/2 with
//! prior knowledge: the handshake looks at its first bytes for the preface. Such a
//! connection leaves the loop for a task of hyper's HTTP/2 server, at the one point where
//! the loop holds both the socket and its registry: the handshake hands back its stream and
//! the bytes it read ([`Handshaken::Http2`]), the loop takes the socket out of its epoll
//! (else its edges would go on waking whichever connection gets the slot next) and out of
//! the slab, and gives it to tokio's reactor (`TcpStream::from_std`, as for TLS) behind a
//! [`Rewind`](super::rewind::Rewind) that replays those bytes before the socket's own. The
//! socket is never read by two owners, and nothing is peeked: an HTTP/1.1 request costs
//! one comparison of its first byte with the preface's (none with HTTP/2 off).

mod stream;
mod sys;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mio::net::TcpListener;
use mio::{Events, Interest, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};
use tokio_util::task::TaskTracker;

use stream::Ends;
pub(crate) use stream::LoopStream;

use super::ServerContext;
use super::accept;
use super::callbacks::ServerHandler;
use crate::driver::{Driver, Keepalive};
use crate::hub::{Corking, flush_cork};
use crate::server::Connection;
use crate::shared::contain;

/// A connection of the event loop.
pub(crate) type LoopDriver = Driver<LoopStream, ServerHandler>;

/// How a plain connection's opening handshake ends when the connection goes on.
#[allow(
    clippy::large_enum_variant,
    reason = "a handshake's result, moved once: boxing the driver would cost an allocation \
              for every connection"
)]
pub(crate) enum Handshaken {
    /// A WebSocket: its driver, which stays in the loop.
    Open(LoopDriver),
    /// A client speaking HTTP/2 with prior knowledge: its socket, with the bytes read from
    /// it so far, leaves the loop for HTTP/2 (see the module's docs).
    #[cfg(feature = "hyper")]
    Http2 {
        stream: LoopStream,
        read: bytes::BytesMut,
        peer: std::net::SocketAddr,
    },
}

/// What polling a connection of the loop came to.
enum Step {
    /// It goes on: its waker brings it back.
    Going,
    /// It is over: its entry goes.
    Over,
    /// Its socket leaves the loop for HTTP/2 (see the module's docs).
    #[cfg(feature = "hyper")]
    Http2 {
        stream: LoopStream,
        read: bytes::BytesMut,
        peer: std::net::SocketAddr,
    },
}

/// The serial of the next event loop made.
static NEXT_SERIAL: AtomicU32 = AtomicU32::new(1);

/// Readiness events taken from the worker's epoll per call.
const EVENTS: usize = 256;
/// Rounds (readiness, then every connection ready or woken) one poll of the loop runs before
/// it yields to the worker's other tasks.
const ROUNDS: usize = 8;
/// Connections accepted per round at most: a burst of them is taken in turns with the
/// connections already open.
const ACCEPTS: usize = 64;
/// The listener's token: slab keys never reach it.
const LISTENER: Token = Token(usize::MAX);
/// How long accepting pauses after it failed for want of resources (file descriptors,
/// memory), rather than retrying at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// One worker's event loop: a future that accepts until the worker stops and runs until
/// its last connection is over.
pub(crate) struct EventLoop {
    /// Names this loop among the process's (from 1), for the connections it runs (see
    /// [`Shared::set_home`](crate::shared::Shared::set_home)).
    serial: u32,
    epoll: AsyncFd<mio::Poll>,
    events: Events,
    conns: Slab<Box<Entry>>,
    shared: Arc<LoopShared>,
    /// Connections to poll this round (reused).
    run: Vec<usize>,
    /// The clock of every connection of the loop: keepalive, and the sweep that puts idle
    /// connections to sleep.
    clock: Clock,
    accept: Acceptor,
}

/// The loop's listening socket and what its connections start with.
struct Acceptor {
    /// Until the worker stops.
    listener: Option<TcpListener>,
    /// Connections may be waiting: accept until `WouldBlock`.
    ready: bool,
    /// Accepting failed for want of resources: wait before trying again.
    backoff: Option<Pin<Box<Sleep>>>,
    /// Accepting has failed since it last succeeded (the failure was logged).
    failing: bool,
    worker_id: usize,
    ctx: Arc<ServerContext>,
    /// Where TLS connections get their tasks.
    tasks: TaskTracker,
}

/// One timer for all the loop's connections: each tick asks every connection whether its
/// keepalive ping (or its drop) is due, and puts those with nothing in flight to sleep
/// (see `driver::rest`). The idle keepalive is measured in seconds, so a tick of a quarter
/// of its shortest duration (at most a second) is precise enough, and costs a few
/// nanoseconds per connection per tick instead of a timer each.
struct Clock {
    timer: Pin<Box<Sleep>>,
    period: Duration,
}

impl Clock {
    /// With the keepalive, the loop's clock also runs each closing connection's close
    /// timeout (`close`): its tick is a quarter of the shortest of them too.
    fn new(keepalive: Option<Keepalive>, close_timeout: Duration) -> Self {
        let period = keepalive
            .map_or(Duration::MAX, |k| {
                k.interval.min(k.timeout).min(close_timeout) / 4
            })
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
        Self {
            timer: Box::pin(tokio::time::sleep(period)),
            period,
        }
    }
}

/// A connection in the slab and what puts it back on the run list.
struct Entry {
    conn: Conn,
    /// Made into the connection's `Waker` for each poll (one reference count up and down)
    /// rather than kept as one: 16 bytes less for every connection.
    wake: Arc<ConnWaker>,
}

/// A connection of the loop, first opening, then open.
#[allow(
    clippy::large_enum_variant,
    reason = "the entry is boxed already; boxing the driver again would cost an allocation \
              and a pointer chase per open connection to save bytes during its handshake only"
)]
enum Conn {
    Opening {
        /// How it opens, `None` when the request was answered otherwise (plain HTTP, a
        /// refusal) or the client went away.
        handshake: Pin<Box<dyn Future<Output = Option<Handshaken>> + Send>>,
        /// The ends its socket's edges reported meanwhile (say, the request, a message
        /// and the client's FIN in one burst), for the open connection's stream.
        ends: Ends,
    },
    Open(LoopDriver),
}

impl Conn {
    /// Polls the handshake or the driver (the driver at once when the handshake opens it);
    /// an open connection notes that it lives at `home` (the loop's serial, its slot).
    fn poll(&mut self, cx: &mut Context<'_>, home: (u32, usize)) -> Step {
        if let Self::Opening { handshake, ends } = self {
            match handshake.as_mut().poll(cx) {
                Poll::Pending => return Step::Going,
                Poll::Ready(None) => return Step::Over,
                // Its first poll calls `on_open` and handles bytes that came with the request.
                Poll::Ready(Some(Handshaken::Open(mut driver))) => {
                    driver.io_mut().set_ends(*ends);
                    driver.shared().set_home(home.0, home.1);
                    *self = Self::Open(driver);
                }
                #[cfg(feature = "hyper")]
                Poll::Ready(Some(Handshaken::Http2 { stream, read, peer })) => {
                    return Step::Http2 { stream, read, peer };
                }
            }
        }
        match self {
            Self::Open(driver) => match Pin::new(driver).poll(cx) {
                Poll::Ready(()) => Step::Over,
                Poll::Pending => Step::Going,
            },
            Self::Opening { .. } => Step::Going,
        }
    }
}

/// What the loop shares with the worker and the connections' wakers.
#[derive(Default)]
struct LoopShared {
    state: Mutex<LoopState>,
}

#[derive(Default)]
struct LoopState {
    /// Connections whose waker was called (slots).
    woken: Vec<usize>,
    stopping: bool,
    waker: Option<Waker>,
}

impl LoopShared {
    fn state(&self) -> MutexGuard<'_, LoopState> {
        // Every change under the lock is a push or a flag: consistent whatever panicked.
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

/// Tells the loop its worker stops: it closes its listener, and ends once its connections
/// are over.
pub(crate) struct LoopStop {
    shared: Arc<LoopShared>,
}

impl LoopStop {
    pub(crate) fn stop(&self) {
        self.shared.update(|state| state.stopping = true);
    }
}

impl EventLoop {
    /// The loop of worker `worker_id`, accepting on `listener` (non-blocking), registered in
    /// the current tokio runtime; and what stops it. TLS connections get their tasks on
    /// `tasks`.
    pub(crate) fn new(
        listener: std::net::TcpListener,
        worker_id: usize,
        ctx: Arc<ServerContext>,
        tasks: TaskTracker,
    ) -> io::Result<(Self, LoopStop)> {
        let shared = Arc::new(LoopShared::default());
        let epoll = sys::register_epoll(mio::Poll::new()?)?;
        let mut listener = TcpListener::from_std(listener);
        epoll
            .get_ref()
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let event_loop = Self {
            serial: NEXT_SERIAL.fetch_add(1, Ordering::Relaxed),
            epoll,
            events: Events::with_capacity(EVENTS),
            conns: Slab::new(),
            shared: shared.clone(),
            run: Vec::new(),
            clock: Clock::new(
                ctx.settings.driver.keepalive,
                ctx.settings.driver.close_timeout,
            ),
            accept: Acceptor {
                listener: Some(listener),
                // Connections may have queued before the registration.
                ready: true,
                backoff: None,
                failing: false,
                worker_id,
                ctx,
                tasks,
            },
        };
        Ok((event_loop, LoopStop { shared }))
    }

    /// Takes in what arrived from other tasks and threads: wakers called, the stop.
    /// Returns whether the worker stops.
    fn take_shared(&mut self, cx: &mut Context<'_>) -> bool {
        let (woken, stopping) = {
            let mut state = self.shared.state();
            match &state.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => state.waker = Some(cx.waker().clone()),
            }
            (std::mem::take(&mut state.woken), state.stopping)
        };
        for slot in woken {
            // A waker may outlive its connection (a timer, a handle): then the slot is gone
            // or another connection's, and polling that one early is harmless.
            if self.conns.contains(slot) {
                self.run.push(slot);
            }
        }
        if stopping && let Some(mut listener) = self.accept.listener.take() {
            let _ = self.epoll.get_ref().registry().deregister(&mut listener);
            self.accept.ready = false;
            self.accept.backoff = None;
        }
        stopping
    }

    /// Accepts the connections waiting (up to a round's share): a plain one goes into the
    /// slab with its handshake, a TLS one to a task.
    fn accept(&mut self, cx: &mut Context<'_>) {
        if let Some(timer) = &mut self.accept.backoff {
            if timer.as_mut().poll(cx).is_pending() {
                return;
            }
            self.accept.backoff = None;
            self.accept.ready = true;
        }
        for _ in 0..ACCEPTS {
            let (true, Some(listener)) = (self.accept.ready, &self.accept.listener) else {
                return;
            };
            let accepted = listener.accept();
            match accepted {
                Ok((stream, peer)) => {
                    self.accept.failing = false;
                    self.start(stream, peer);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.accept.ready = false,
                // This connection's trouble, not the listener's: reset while queued, or a
                // network error accept(2) passes on from it (to be retried like EAGAIN, its
                // manual says).
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::NetworkDown
                            | io::ErrorKind::NetworkUnreachable
                            | io::ErrorKind::HostUnreachable
                    ) => {}
                Err(error) => {
                    // Out of file descriptors, most likely: the connections stay queued;
                    // back off instead of spinning on them, and say so once until one is
                    // accepted again.
                    if !self.accept.failing {
                        self.accept.failing = true;
                        tracing::warn!(
                            worker_id = self.accept.worker_id,
                            %error,
                            "accept failed; retrying every {ACCEPT_BACKOFF:?}"
                        );
                    }
                    self.accept.ready = false;
                    let mut timer = Box::pin(tokio::time::sleep(ACCEPT_BACKOFF));
                    // Registers this task with the timer.
                    let _ = timer.as_mut().poll(cx);
                    self.accept.backoff = Some(timer);
                    return;
                }
            }
        }
    }

    /// Starts a connection just accepted, or closes it at once when the worker has as many
    /// handshakes in progress as it may have (counted as a rejection).
    fn start(&mut self, mut stream: mio::net::TcpStream, peer: std::net::SocketAddr) {
        let Acceptor {
            worker_id,
            ctx,
            tasks,
            ..
        } = &self.accept;
        // Dropping the stream closes it.
        let Some(pending) =
            ctx.counters[*worker_id].begin_handshake(ctx.settings.max_pending_handshakes)
        else {
            return;
        };
        let _ = stream.set_nodelay(true);
        #[cfg(feature = "tls")]
        if ctx.tls.is_some() {
            match tokio::net::TcpStream::from_std(stream.into()) {
                Ok(stream) => {
                    tasks.spawn(accept::serve_tls(
                        stream,
                        peer,
                        *worker_id,
                        ctx.clone(),
                        tasks.clone(),
                        pending,
                    ));
                }
                Err(error) => tracing::warn!(%error, "cannot register a TLS connection"),
            }
            return;
        }
        #[cfg(not(feature = "tls"))]
        let _ = tasks;
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        // Registered once, for the connection's whole life: edge-triggered, both ways.
        let registered = self.epoll.get_ref().registry().register(
            &mut stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(error) = registered {
            tracing::warn!(%error, "cannot register a connection with the event loop");
            return;
        }
        let handshake = accept::open_plain(
            LoopStream::accepted(stream),
            peer,
            *worker_id,
            ctx.clone(),
            pending,
        );
        entry.insert(Box::new(Entry {
            conn: Conn::Opening {
                handshake: Box::pin(handshake),
                ends: Ends::default(),
            },
            wake: Arc::new(ConnWaker {
                slot,
                queued: AtomicBool::new(true),
                shared: self.shared.clone(),
            }),
        }));
        // Its request may be waiting already.
        self.run.push(slot);
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
                if event.token() == LISTENER {
                    // During a backoff its timer says when to try again.
                    self.accept.ready |= self.accept.backoff.is_none();
                    continue;
                }
                let slot = event.token().0;
                let Some(entry) = self.conns.get_mut(slot) else {
                    continue;
                };
                // An error or a hang-up shows in the next read or write. (A handshake's
                // stream keeps no marks: it tries its reads and writes.)
                match &mut entry.conn {
                    Conn::Open(driver) => driver.io_mut().set_ready(event),
                    Conn::Opening { ends, .. } => *ends = ends.and(Ends::of(event)),
                }
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

    /// Ticks the clock when due: the connections whose keepalive ping or drop is due go on
    /// the run list, and those with nothing in flight sleep. An empty loop lets its clock
    /// stop. Once per poll of the loop: the timer wakes the loop's task when it is due.
    fn tick(&mut self, cx: &mut Context<'_>) {
        let clock = &mut self.clock;
        if self.conns.is_empty() {
            return;
        }
        while clock.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            for (slot, entry) in &mut self.conns {
                let Conn::Open(driver) = &mut entry.conn else {
                    continue;
                };
                if driver.keepalive_tick(now) {
                    if entry.wake.claim() {
                        self.run.push(slot);
                    }
                } else {
                    driver.rest();
                }
            }
            clock.timer.as_mut().reset(now + clock.period);
        }
    }

    /// Gives a connection that speaks HTTP/2 to a task of hyper's HTTP/2 server: out of the
    /// loop's epoll, into tokio's, with the bytes read from it replayed first.
    #[cfg(feature = "hyper")]
    fn hand_over_http2(
        &self,
        stream: LoopStream,
        read: bytes::BytesMut,
        peer: std::net::SocketAddr,
    ) {
        let mut socket = stream.into_socket();
        if let Err(error) = self.epoll.get_ref().registry().deregister(&mut socket) {
            tracing::warn!(%error, "cannot take an HTTP/2 connection out of the event loop");
            return;
        }
        let socket = match tokio::net::TcpStream::from_std(socket.into()) {
            Ok(socket) => socket,
            Err(error) => {
                tracing::warn!(%error, "cannot register an HTTP/2 connection");
                return;
            }
        };
        let Acceptor {
            worker_id,
            ctx,
            tasks,
            ..
        } = &self.accept;
        tasks.spawn(super::h2::serve(
            super::rewind::Rewind::new(read, socket),
            peer,
            *worker_id,
            ctx.clone(),
            tasks.clone(),
        ));
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
            let home = (self.serial, slot);
            let running = match &entry.conn {
                Conn::Open(driver) => driver.shared().id(),
                Conn::Opening { .. } => 0,
            };
            // The Hub holds the fan-outs of its callbacks, for the flush below.
            let corking = Corking::begin(running);
            // Callbacks' panics are contained in the driver; one that escapes (a bug of
            // ours) ends its connection, not the worker's others, as it would in a task.
            let step = contain(|| entry.conn.poll(&mut cx, home)).unwrap_or_else(|panic| {
                tracing::error!(%panic, "a connection panicked");
                Step::Over
            });
            drop(corking);
            match step {
                Step::Going => {}
                // Closing the socket takes it out of the epoll (no one else holds it): no
                // `epoll_ctl` to deregister it first.
                Step::Over => drop(self.conns.remove(slot)),
                #[cfg(feature = "hyper")]
                Step::Http2 { stream, read, peer } => {
                    drop(self.conns.remove(slot));
                    self.hand_over_http2(stream, read, peer);
                }
            }
            self.flush_cork();
        }
        // Keeps the list's room for the next round.
        self.run = run;
    }

    /// Sends the fan-outs the Hub held while a connection ran: to each recipient this loop
    /// runs, straight to its socket when nothing waits there (see `hub::cork`).
    fn flush_cork(&mut self) {
        let serial = self.serial;
        let conns = &mut self.conns;
        flush_cork(
            &mut |conn: &Connection, bytes: &bytes::Bytes, messages: usize| {
                let Some((home, slot)) = conn.shared().home() else {
                    return false;
                };
                let Some(entry) = conns.get_mut(slot).filter(|_| home == serial) else {
                    return false;
                };
                let Conn::Open(driver) = &mut entry.conn else {
                    return false;
                };
                // The slot may hold another connection by now.
                if !std::ptr::eq(driver.shared(), conn.shared()) {
                    return false;
                }
                match driver.write_now(bytes, messages) {
                    None => false,
                    Some(rest) => {
                        if rest {
                            entry.wake.wake_by_ref();
                        }
                        true
                    }
                }
            },
        );
    }
}

impl Future for EventLoop {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.tick(cx);
        for _ in 0..ROUNDS {
            let stopping = this.take_shared(cx);
            this.take_readiness(cx);
            this.accept(cx);
            if this.run.is_empty() {
                if stopping && this.conns.is_empty() {
                    return Poll::Ready(());
                }
                if !this.accept.ready {
                    return Poll::Pending;
                }
            }
            this.run_ready();
        }
        // Work left: let the worker's other tasks (TLS connections, the application's) run.
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

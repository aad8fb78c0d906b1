//! One connection of a fan-out run after its handshake: a subscriber, which checks every
//! message it receives for order and records its latency, or the publisher, which sends the
//! messages, paced or closed loop, and checks its own copies (it is in the room too) the
//! same way.
//!
//! A message is text of the run's size: its sequence number (8 hex digits) and its send time
//! (12 hex digits of nanoseconds since the run's epoch, a monotonic clock shared by every
//! connection of this process), then the run's padding. The parser takes the first 20 bytes
//! as they come and compares the rest with the padding (see
//! [`super::super::frames::ReplyParser::with_head`]).
//!
//! Before its first message the publisher sends sync messages (sequence number
//! [`SYNC_SEQ`]) until every connection has received one: a server may add a connection to
//! its room a little after the handshake (or, elsewhere, much later), and a connection that
//! has one message from the publisher gets all that follow, in order. Only then does the
//! measured window start.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use wsworker_proto::frame::OpCode;

use super::Pace;
use super::completion::Completion;
use crate::bench::conn::{CLOSE_TIMEOUT, Failure, fail, invalid_frame, io_fail, server_closed};
use crate::bench::cpu;
use crate::bench::frames::{Inflate, Reply, ReplyParser, client_frame, close_frame};
use crate::bench::stats::{ErrorKind, Local, Stats};

/// The bytes of a message's head: sequence number and send time, in hex.
pub(super) const HEAD_LEN: usize = 20;
/// The send time is kept modulo 2^48 ns (78 hours, far beyond a run's bound).
const TIME_MASK: u64 = (1 << 48) - 1;
/// The sequence number of a sync message (never a published one's: those are below it).
const SYNC_SEQ: u64 = u32::MAX as u64;
/// How often the publisher sends a sync message until every connection has one.
const SYNC_INTERVAL: Duration = Duration::from_millis(20);
/// How long the publisher sends sync messages at most; then the run goes on with what is in
/// the room (and a timeout error).
const SYNC_TIMEOUT: Duration = Duration::from_secs(5);
/// The read buffer of a connection (messages are checked as they come, so it need not hold
/// one).
const READ_BUFFER: usize = 16 << 10;

/// What every connection of a fan-out run shares.
#[derive(Debug)]
pub(super) struct Shared {
    /// A message with its head still blank: the padding every message carries.
    pub(super) template: Vec<u8>,
    /// The zero of the send times.
    pub(super) epoch: Instant,
    /// Deliveries, latencies and the errors of the echo mode's kinds.
    pub(super) stats: Arc<Stats>,
    /// Order errors.
    pub(super) order: Order,
    /// Connections (the publisher too) that have received a sync message.
    pub(super) synced: AtomicU64,
    /// When the last delivery came, in nanoseconds since the epoch (0: none yet).
    pub(super) last_delivery_ns: AtomicU64,
    /// Deliveries per node (as the plan's URLs), added by each subscriber as it ends.
    pub(super) node_deliveries: Vec<AtomicU64>,
    /// With `--inflight`: which messages every subscriber has.
    pub(super) completion: Option<Completion>,
}

/// What the publisher did.
#[derive(Debug, Default)]
pub(super) struct Window {
    /// Messages sent.
    pub(super) sent: u64,
    /// The publishing window (zero when it did not start).
    pub(super) duration: Duration,
    /// When it opened, in nanoseconds since the epoch.
    pub(super) at_ns: u64,
    /// This process's CPU time when the window opened, if `/proc` told.
    pub(super) cpu_before: Option<u64>,
}

/// The end of publishing, as the publisher announces it to every connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Published {
    /// Messages sent (sequence numbers 0 to `count` − 1).
    pub(super) count: u64,
    /// When connections stop waiting for the messages still missing.
    pub(super) deadline: Instant,
}

/// The kinds of order error, as the report names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OrderError {
    /// Messages skipped over: a later one came first (each skipped one counts).
    Gap,
    /// The message just received, again.
    Duplicate,
    /// A message older than the one before it (one that was counted as a gap).
    Reorder,
    /// Messages that had not come when the wait for them ended (each counts).
    Missing,
}

impl OrderError {
    /// Every kind, in the order of the report.
    pub(super) const ALL: [Self; 4] = [Self::Gap, Self::Duplicate, Self::Reorder, Self::Missing];

    /// The name used in the report and its JSON.
    pub(super) const fn name(self) -> &'static str {
        match self {
            Self::Gap => "gap",
            Self::Duplicate => "duplicate",
            Self::Reorder => "reorder",
            Self::Missing => "missing",
        }
    }
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Order errors of the whole run. They are rare (a correct server makes none), so they are
/// counted as they happen, without batching.
#[derive(Debug, Default)]
pub(super) struct Order {
    counts: [AtomicU64; 4],
    samples: Mutex<[Option<String>; 4]>,
}

impl Order {
    /// Counts `count` errors of `kind` on connection `conn`, described by `detail` if they are
    /// the first of their kind.
    pub(super) fn add(&self, conn: usize, kind: OrderError, count: u64, detail: impl fmt::Display) {
        self.counts[kind as usize].fetch_add(count, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples[kind as usize].get_or_insert_with(|| format!("connection {conn}: {detail}"));
    }

    /// The count of `kind`.
    pub(super) fn count(&self, kind: OrderError) -> u64 {
        self.counts[kind as usize].load(Ordering::Relaxed)
    }

    /// The first error of `kind`, in words.
    pub(super) fn sample(&self, kind: OrderError) -> Option<String> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner)[kind as usize].clone()
    }
}

/// The message with sequence number `seq`, sent at `time_ns` after the epoch.
pub(super) fn message(template: &[u8], seq: u32, time_ns: u64) -> Vec<u8> {
    let mut bytes = template.to_vec();
    let head = format!("{seq:08x}{:012x}", time_ns & TIME_MASK);
    bytes[..HEAD_LEN].copy_from_slice(head.as_bytes());
    bytes
}

/// The sequence number and send time in a message's head, if it is one.
fn parse_head(head: &[u8]) -> Option<(u64, u64)> {
    // By hand, once per delivery: only hex digits (from_str_radix would take a sign too),
    // at most 12 of them, so no overflow.
    let hex = |bytes: &[u8]| {
        bytes.iter().try_fold(0u64, |value, &byte| {
            let digit = match byte {
                b'0'..=b'9' => byte - b'0',
                b'a'..=b'f' => byte - b'a' + 10,
                b'A'..=b'F' => byte - b'A' + 10,
                _ => return None,
            };
            Some(value << 4 | u64::from(digit))
        })
    };
    if head.len() != HEAD_LEN {
        return None;
    }
    Some((hex(&head[..8])?, hex(&head[8..])?))
}

/// One connection of the run.
pub(super) struct Peer {
    index: usize,
    /// The node (the plan's URL) it is connected to.
    node: usize,
    stream: TcpStream,
    shared: Arc<Shared>,
    /// The publisher: its copies are checked but are not deliveries.
    publisher: bool,
    parser: ReplyParser,
    key: [u8; 4],
    inbuf: Vec<u8>,
    end: usize,
    out: Vec<u8>,
    /// The sequence number expected next.
    next: u64,
    /// Whether a sync message came (it is counted once in [`Shared::synced`]).
    synced: bool,
    /// Deliveries so far (not yet in [`Shared::node_deliveries`]).
    deliveries: u64,
    local: Local,
    /// Our close frame is on its way: what still comes is not checked.
    closing: bool,
    /// The server's close frame, once it came: its code and reason.
    close: Option<(Option<u16>, String)>,
}

impl Peer {
    /// Connection `index` to node `node` on `stream`, with `leftover` bytes already read
    /// after the handshake.
    pub(super) fn new(
        index: usize,
        node: usize,
        stream: TcpStream,
        leftover: &[u8],
        shared: Arc<Shared>,
        publisher: bool,
    ) -> Self {
        let mut inbuf = vec![0; READ_BUFFER.max(leftover.len() * 2)];
        inbuf[..leftover.len()].copy_from_slice(leftover);
        Self {
            index,
            node,
            stream,
            parser: ReplyParser::with_head(shared.template.clone(), HEAD_LEN),
            shared,
            publisher,
            key: rand::random(),
            inbuf,
            end: leftover.len(),
            out: Vec::new(),
            next: 0,
            synced: false,
            deliveries: 0,
            local: Local::default(),
            closing: false,
            close: None,
        }
    }

    /// Inflates what comes compressed with `inflate` (`--deflate`).
    pub(super) fn with_inflate(mut self, inflate: Option<Inflate>) -> Self {
        self.parser = std::mem::replace(&mut self.parser, ReplyParser::new(Vec::new(), false))
            .with_inflate(inflate);
        self
    }

    /// A subscriber's whole life: receives until every published message came or the wait
    /// for them ended, then closes. Every count and error goes to the shared stats.
    pub(super) async fn subscribe(mut self, published: watch::Receiver<Option<Published>>) {
        let result = self.receive_all(published).await;
        self.finish(result);
    }

    /// Counts what is left and the failure, if any.
    fn finish(&mut self, result: Result<(), Failure>) {
        if let Some(completion) = self.shared.completion.as_ref().filter(|_| !self.publisher) {
            // A subscriber ends early only when its connection failed: the closed loop goes
            // on without it. After publishing this changes nothing.
            completion.leave();
        }
        self.shared.stats.flush(self.index, &mut self.local);
        self.shared.node_deliveries[self.node].fetch_add(self.deliveries, Ordering::Relaxed);
        if let Err(failure) = result {
            self.shared
                .stats
                .error(self.index, failure.kind, failure.detail);
        }
    }

    /// Receives until the end of the run, then closes.
    async fn receive_all(
        &mut self,
        mut published: watch::Receiver<Option<Published>>,
    ) -> Result<(), Failure> {
        if self.end > 0 {
            self.process(Instant::now())?;
        }
        let end = loop {
            if let Some(end) = *published.borrow_and_update() {
                break end;
            }
            // One wait for the end of publishing across every read, rather than one made
            // and dropped per read: a lock less, twice, per wake-up of each subscriber.
            let mut changed = pin!(published.changed());
            loop {
                tokio::select! {
                    // Biased: the socket first; the end of publishing is looked at when it
                    // has nothing (a subscriber that lags behind reads on until it has all).
                    biased;
                    ready = ready(&self.stream, !self.out.is_empty()) => self.on_ready(ready)?,
                    changed = &mut changed => {
                        if changed.is_err() {
                            // The run was called off before publishing ended: leave quietly.
                            return Ok(());
                        }
                        break;
                    }
                }
            }
        };
        self.drain(end).await?;
        self.close().await
    }

    /// Receives until message `end.count - 1` came or `end.deadline` passed; counts the
    /// messages still missing then.
    async fn drain(&mut self, end: Published) -> Result<(), Failure> {
        let mut deadline = pin!(sleep_until(end.deadline));
        while self.next < end.count {
            tokio::select! {
                ready = ready(&self.stream, !self.out.is_empty()) => self.on_ready(ready)?,
                () = &mut deadline => {
                    let (missing, count) = (end.count - self.next, end.count);
                    let secs = super::DRAIN_TIMEOUT.as_secs();
                    self.shared.order.add(
                        self.index,
                        OrderError::Missing,
                        missing,
                        format_args!(
                            "{missing} of {count} messages had not come {secs} s after the \
                             last was sent"
                        ),
                    );
                    break;
                }
            }
        }
        Ok(())
    }

    /// The closing handshake: our close frame, then the server's within [`CLOSE_TIMEOUT`].
    async fn close(&mut self) -> Result<(), Failure> {
        self.closing = true;
        self.out.extend_from_slice(&close_frame(1000, self.key));
        self.flush()?;
        let mut deadline = pin!(sleep_until(Instant::now() + CLOSE_TIMEOUT));
        while self.close.is_none() {
            tokio::select! {
                ready = ready(&self.stream, !self.out.is_empty()) => self.on_ready(ready)?,
                () = &mut deadline => {
                    let secs = CLOSE_TIMEOUT.as_secs();
                    return Err(fail(
                        ErrorKind::Timeout,
                        format!("no close frame from the server within {secs} s of ours"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The publisher's whole life: sync messages until all `members` connections are in
    /// the room, then messages at `pace` for `duration` (at most `limit`); it announces how
    /// many on `published`, then receives its own copies like a subscriber and closes.
    pub(super) async fn publish(
        mut self,
        pace: Pace,
        duration: Duration,
        limit: u64,
        members: u64,
        published: watch::Sender<Option<Published>>,
    ) -> Window {
        let mut sent = 0;
        let mut window = Window::default();
        let mut result = self.sync(members).await;
        if result.is_ok() {
            window.cpu_before = cpu::process_cpu_ns();
            let at = Instant::now();
            window.at_ns = self.since_epoch(at);
            let stop = at + duration;
            window.duration = duration;
            result = match pace {
                Pace::Rate(rate) => self.send_paced(rate, at, stop, limit, &mut sent).await,
                Pace::Inflight(inflight) => {
                    self.send_closed_loop(u64::from(inflight), stop, limit, &mut sent)
                        .await
                }
            };
        }
        window.sent = sent;
        published.send_replace(Some(Published {
            count: sent,
            deadline: Instant::now() + super::DRAIN_TIMEOUT,
        }));
        let result = match result {
            Ok(()) => self.receive_all(published.subscribe()).await,
            Err(failure) => Err(failure),
        };
        self.finish(result);
        window
    }

    /// Sends a sync message every [`SYNC_INTERVAL`] until `members` connections have one,
    /// for [`SYNC_TIMEOUT`] at most (then counts a timeout, and the run goes on).
    async fn sync(&mut self, members: u64) -> Result<(), Failure> {
        let give_up = Instant::now() + SYNC_TIMEOUT;
        let mut timer = pin!(sleep_until(Instant::now()));
        loop {
            tokio::select! {
                biased;
                ready = ready(&self.stream, !self.out.is_empty()) => self.on_ready(ready)?,
                () = &mut timer => {
                    let synced = self.shared.synced.load(Ordering::Relaxed);
                    if synced >= members {
                        return Ok(());
                    }
                    let now = Instant::now();
                    if now >= give_up {
                        self.shared.stats.error(self.index, ErrorKind::Timeout, format!(
                            "(the publisher) only {synced} of {members} connections received \
                             a message from it within {} s: not in the room?",
                            SYNC_TIMEOUT.as_secs()
                        ));
                        return Ok(());
                    }
                    let time_ns = self.since_epoch(now);
                    // SYNC_SEQ is u32::MAX.
                    let payload = message(&self.shared.template, SYNC_SEQ as u32, time_ns);
                    self.out
                        .extend_from_slice(&client_frame(OpCode::Text, &payload, self.key));
                    self.flush()?;
                    timer.as_mut().reset(now + SYNC_INTERVAL);
                }
            }
        }
    }

    /// Nanoseconds from the run's epoch to `now`.
    fn since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.shared.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Sends every message due, paced: message `n` is due at `at + n / rate`.
    async fn send_paced(
        &mut self,
        rate: f64,
        at: Instant,
        stop: Instant,
        limit: u64,
        sent: &mut u64,
    ) -> Result<(), Failure> {
        let due_at = |n: u64| at + Duration::from_secs_f64(n as f64 / rate);
        let mut timer = pin!(sleep_until(at));
        loop {
            tokio::select! {
                // Biased: under load the socket is always ready; the clock is checked after
                // each read too.
                biased;
                ready = ready(&self.stream, !self.out.is_empty()) => self.on_ready(ready)?,
                () = &mut timer => {}
            }
            let now = Instant::now();
            let time_ns = self.since_epoch(now);
            // Every message due before `stop` is sent, even by a late wake-up: the count of a
            // run is rate × duration, however busy the machine.
            while *sent < limit && due_at(*sent) <= now && due_at(*sent) < stop {
                // `limit` fits a u32 (checked with the arguments).
                let payload = message(&self.shared.template, *sent as u32, time_ns);
                self.out
                    .extend_from_slice(&client_frame(OpCode::Text, &payload, self.key));
                *sent += 1;
            }
            self.flush()?;
            if *sent >= limit || due_at(*sent) >= stop {
                return Ok(());
            }
            timer.as_mut().reset(due_at(*sent));
        }
    }

    /// Sends until `stop` (at most `limit` messages), keeping `inflight` messages that not
    /// every subscriber has received yet: a message more for each one they all have.
    async fn send_closed_loop(
        &mut self,
        inflight: u64,
        stop: Instant,
        limit: u64,
        sent: &mut u64,
    ) -> Result<(), Failure> {
        let shared = Arc::clone(&self.shared);
        let Some(completion) = shared.completion.as_ref() else {
            return Ok(());
        };
        // Messages below it are complete.
        let mut done = 0;
        let mut stop_timer = pin!(sleep_until(stop));
        loop {
            completion.advance(&mut done, *sent);
            let now = Instant::now();
            if now >= stop {
                return Ok(());
            }
            let time_ns = self.since_epoch(now);
            while *sent < limit && *sent < done + inflight {
                // `limit` fits a u32.
                let payload = message(&self.shared.template, *sent as u32, time_ns);
                self.out
                    .extend_from_slice(&client_frame(OpCode::Text, &payload, self.key));
                *sent += 1;
            }
            self.flush()?;
            tokio::select! {
                // Biased: a completion first, so that the window refills at once; the
                // publisher's own copies are read when none is pending.
                biased;
                () = completion.changed() => {}
                ready = ready(&self.stream, !self.out.is_empty()) => self.on_ready(ready)?,
                () = &mut stop_timer => return Ok(()),
            }
        }
    }

    /// Writes what is pending if the socket is writable, then reads and handles what came.
    fn on_ready(&mut self, ready: io::Result<Ready>) -> Result<(), Failure> {
        let ready = ready.map_err(io_fail("socket"))?;
        if ready.is_writable() {
            self.flush()?;
        }
        if !(ready.is_readable() || ready.is_read_closed()) {
            return Ok(());
        }
        match read_some(&self.stream, &mut self.inbuf[self.end..]) {
            Ok(0) => {
                return Err(fail(ErrorKind::Protocol, "the server ended the connection"));
            }
            Ok(read) => self.end += read,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) => return Err(io_fail("read failed")(error)),
        }
        self.process(Instant::now())?;
        self.shared.stats.flush(self.index, &mut self.local);
        self.flush()
    }

    /// Parses the buffered bytes: checks and counts messages, queues pongs, notes a close.
    fn process(&mut self, now: Instant) -> Result<(), Failure> {
        let Self {
            index,
            shared,
            publisher,
            parser,
            key,
            inbuf,
            end,
            out,
            next,
            synced,
            deliveries,
            local,
            closing,
            close,
            ..
        } = self;
        let (index, publisher, closing) = (*index, *publisher, *closing);
        let since_epoch = u64::try_from(now.duration_since(shared.epoch).as_nanos())
            .unwrap_or(u64::MAX)
            & TIME_MASK;
        let delivered_before = *deliveries;
        let next_before = *next;
        let used = parser
            .feed(&inbuf[..*end], |reply| match reply {
                // After our close frame, what still comes is not checked.
                Reply::Message(_) if closing => {}
                Reply::Message(Err(mismatch)) => local.mismatch(index, || mismatch),
                Reply::Message(Ok(head)) => {
                    let Some((seq, sent_ns)) = parse_head(head) else {
                        local.mismatch(index, || {
                            format!("not a fan-out message: {:?}", String::from_utf8_lossy(head))
                        });
                        return;
                    };
                    if seq == SYNC_SEQ {
                        if !*synced {
                            *synced = true;
                            shared.synced.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                    check_order(&shared.order, index, next, seq);
                    if !publisher {
                        let latency = since_epoch.wrapping_sub(sent_ns) & TIME_MASK;
                        local.echo(Duration::from_nanos(latency), true);
                        *deliveries += 1;
                    }
                }
                Reply::Ping(data) => {
                    out.extend_from_slice(&client_frame(OpCode::Pong, data, *key));
                }
                Reply::Pong => {}
                Reply::Close { code, reason } => *close = Some((code, reason)),
            })
            .map_err(invalid_frame)?;
        if let Some(completion) = shared.completion.as_ref().filter(|_| !publisher) {
            // Once per read: the expected sequence number only moves on.
            if *next > next_before {
                completion.passed(next_before, *next);
            }
        }
        if *deliveries > delivered_before {
            let now_ns = u64::try_from(now.duration_since(shared.epoch).as_nanos()).unwrap_or(0);
            shared.last_delivery_ns.fetch_max(now_ns, Ordering::Relaxed);
        }
        // What is left is a partial header or control frame: move it to the front.
        inbuf.copy_within(used..*end, 0);
        *end -= used;
        match close {
            Some((code, reason)) if !closing => Err(server_closed(*code, reason)),
            _ => Ok(()),
        }
    }

    /// Writes what is pending, as far as the socket takes it.
    fn flush(&mut self) -> Result<(), Failure> {
        let mut pos = 0;
        while pos < self.out.len() {
            match self.stream.try_write(&self.out[pos..]) {
                Ok(0) => {
                    return Err(fail(
                        ErrorKind::Protocol,
                        "write failed: the socket took nothing",
                    ));
                }
                Ok(written) => pos += written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(io_fail("write failed")(error)),
            }
        }
        self.out.drain(..pos);
        Ok(())
    }
}

/// Waits until `stream` is readable (or its reading side closed), or writable when `write`.
/// Through the stream's own waker slots: a `TcpStream::ready` future is a waiter of its own,
/// added to and taken from a list under a lock each time a subscriber waits.
async fn ready(stream: &TcpStream, write: bool) -> io::Result<Ready> {
    poll_fn(|cx| {
        let mut ready = Ready::EMPTY;
        if write && let Poll::Ready(result) = stream.poll_write_ready(cx) {
            result?;
            ready |= Ready::WRITABLE;
        }
        if let Poll::Ready(result) = stream.poll_read_ready(cx) {
            result?;
            ready |= Ready::READABLE;
        }
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Ok(ready))
        }
    })
    .await
}

/// Reads what `stream` has into `buf` (0: the server ended the connection). A read shorter
/// than `buf` emptied the socket: the stream's readiness is then cleared as a read that
/// would block clears it, so that the next wait goes to the reactor at once instead of
/// through that read, a system call per wake-up saved. Readiness that came after the read
/// began is kept (tokio clears only the readiness it saw before `read`).
fn read_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut read = None;
    let result = stream.try_io(Interest::READABLE, || {
        let count = stream.try_read(buf)?;
        read = Some(count);
        if count > 0 && count < buf.len() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match (read, result) {
        (Some(count), _) => Ok(count),
        (None, Err(error)) => Err(error),
        // The closure returns Ok only after a read.
        (None, Ok(())) => Ok(0),
    }
}

/// Checks that `seq` is the sequence number expected next on connection `conn`, counts
/// what is wrong, and moves `next` on.
fn check_order(order: &Order, conn: usize, next: &mut u64, seq: u64) {
    if seq == *next {
        *next += 1;
    } else if seq > *next {
        let skipped = seq - *next;
        order.add(
            conn,
            OrderError::Gap,
            skipped,
            format_args!("message {seq} came while {} was expected", *next),
        );
        *next = seq + 1;
    } else if seq + 1 == *next {
        order.add(
            conn,
            OrderError::Duplicate,
            1,
            format_args!("message {seq} came twice"),
        );
    } else {
        order.add(
            conn,
            OrderError::Reorder,
            1,
            format_args!("message {seq} came after message {}", *next - 1),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_carry_sequence_and_time() {
        let template = vec![b'x'; 32];
        let bytes = message(&template, 0x1234, 987_654_321);
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[..HEAD_LEN], b"0000123400003ade68b1");
        assert_eq!(parse_head(&bytes[..HEAD_LEN]), Some((0x1234, 987_654_321)));
        assert_eq!(parse_head(b"+0001234000000000000"), None);
        assert_eq!(parse_head(b"short"), None);
    }

    #[test]
    fn order_errors_are_counted_by_kind() {
        let order = Order::default();
        let mut next = 0;
        for seq in [0, 1, 1, 4, 2, 5] {
            check_order(&order, 7, &mut next, seq);
        }
        assert_eq!(next, 6);
        assert_eq!(order.count(OrderError::Duplicate), 1);
        assert_eq!(order.count(OrderError::Gap), 2);
        assert_eq!(order.count(OrderError::Reorder), 1);
        assert_eq!(order.count(OrderError::Missing), 0);
        assert_eq!(
            order.sample(OrderError::Gap).as_deref(),
            Some("connection 7: message 4 came while 2 was expected")
        );
    }
}

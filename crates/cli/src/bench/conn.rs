//! One connection of a run, on a raw TCP stream: the opening handshake, then the traffic loop.
//!
//! The loop does as little as it can per message. The frame is built and masked once; `K`
//! copies of it sit in one buffer, so the first `K` messages leave with one write, and after
//! each read the connection tops its window up with as many frames as echoes came back, in
//! one more write. Replies are parsed in place (see [`super::frames`]). Send times wait in a
//! FIFO ring, since a server echoes in order, and round-trip times go to the histograms in
//! one batch per read (see [`super::stats`]).

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest, Ready};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use wsworker_proto::frame::OpCode;
use wsworker_proto::handshake::ClientHandshake;

use super::frames::{Inflate, Reply, ReplyParser, client_frame, close_frame, payload};
use super::stats::{ErrorKind, Local, Stats};

/// The TCP connection and the opening handshake must be done within this.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After the measured window, how long a connection waits for its outstanding echoes.
pub(super) const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// After our close frame, how long a connection waits for the server's.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The smallest and largest read buffer of a connection. Replies are compared as they come,
/// so the buffer need not hold a whole message: it is sized for one window of small echoes.
const READ_BUFFER: (usize, usize) = (4 << 10, 64 << 10);
/// The most bytes of pre-built frames a connection keeps (at least one frame).
const BATCH_BYTES: usize = 256 << 10;

/// What every connection of a run does, decided before the first one opens.
#[derive(Debug)]
pub(super) struct Plan {
    /// The handshake to make, with the URL's host, port and resource (a fresh key is drawn
    /// for each connection).
    pub(super) handshake: ClientHandshake,
    /// The server's address.
    pub(super) target: SocketAddr,
    /// Source addresses to rotate over (127.0.0.1 up to 127.0.0.N); 1 leaves the choice to
    /// the kernel.
    pub(super) source_ips: u8,
    /// The payload size of each message.
    pub(super) size: usize,
    /// Binary messages rather than text.
    pub(super) binary: bool,
    /// Messages in flight per connection; 0 for idle connections.
    pub(super) inflight: usize,
    /// How many connections the run opens (to spread paced sends over time).
    pub(super) conns: usize,
    /// Whether the server's frames may be masked (`--masked-echo`).
    pub(super) masked_echo: bool,
    /// `--deflate`: the message each connection echoes through permessage-deflate after
    /// its handshake (the handshake offers it).
    #[cfg(feature = "deflate")]
    pub(super) deflate: Option<super::deflate::DeflatePlan>,
    /// `--fanout --deflate`: permessage-deflate as this offers it (the handshake carries the
    /// offer), which the server must accept; the connection inflates what comes.
    #[cfg(feature = "deflate")]
    pub(super) inflate: Option<wsworker_proto::deflate::DeflateConfig>,
}

impl Plan {
    /// The address connection `index` binds to before connecting, if any.
    fn source_ip(&self, index: usize) -> Option<IpAddr> {
        (self.source_ips > 1).then(|| {
            // 1 + index % N <= N <= 254.
            let host = 1 + (index % usize::from(self.source_ips)) as u8;
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, host))
        })
    }
}

/// The measured window, sent to every open connection at once when all have been tried.
#[derive(Debug, Clone, Copy)]
pub(super) struct Start {
    /// When the window opens.
    pub(super) at: Instant,
    /// When it closes: no message is sent from then on.
    pub(super) stop: Instant,
    /// With `--rate`: the seconds between two messages of one connection.
    pub(super) interval: Option<f64>,
}

/// Why a connection stopped early, counted under its kind.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) kind: ErrorKind,
    pub(super) detail: String,
}

/// A [`Failure`] of `kind`.
pub(super) fn fail(kind: ErrorKind, detail: impl Into<String>) -> Failure {
    Failure {
        kind,
        detail: detail.into(),
    }
}

/// A socket error while doing `what`, as a protocol failure.
pub(super) fn io_fail(what: &str) -> impl FnOnce(io::Error) -> Failure + '_ {
    move |error| fail(ErrorKind::Protocol, format!("{what}: {error}"))
}

/// A frame from the server that the parser rejected.
pub(super) fn invalid_frame(error: wsworker_proto::ProtocolError) -> Failure {
    fail(
        ErrorKind::Protocol,
        format!("invalid frame from the server: {error}"),
    )
}

/// The server's close frame, with `code` and `reason`, before the client's.
pub(super) fn server_closed(code: Option<u16>, reason: &str) -> Failure {
    fail(
        ErrorKind::Protocol,
        match code {
            Some(code) => format!("the server closed the connection: {code} {reason:?}"),
            None => "the server closed the connection without a code".to_owned(),
        },
    )
}

/// One connection from start to end: connects (holding `permit` until the handshake is
/// done), says on `dialed` whether it opened, waits for the window on `start` (answering
/// pings meanwhile), runs its traffic, drains and closes. Everything it counts goes to
/// `stats`; it never panics on what the server sends.
pub(super) async fn run(
    index: usize,
    plan: Arc<Plan>,
    permit: OwnedSemaphorePermit,
    dialed: mpsc::UnboundedSender<bool>,
    mut start: watch::Receiver<Option<Start>>,
    stats: Arc<Stats>,
) {
    let opened = dial(index, &plan).await;
    drop(permit);
    let (stream, leftover) = match opened {
        Ok((stream, leftover, _exchanged, _)) => {
            #[cfg(feature = "deflate")]
            if let Some(exchanged) = _exchanged {
                stats.compressed(index, exchanged);
            }
            (stream, leftover)
        }
        Err(failure) => {
            stats.error(index, failure.kind, failure.detail);
            let _ = dialed.send(false);
            return;
        }
    };
    let _ = dialed.send(true);
    let mut conn = Conn::new(index, stream, leftover, &plan, Arc::clone(&stats));
    let result = conn.session(&mut start).await;
    stats.flush(index, &mut conn.local);
    if let Err(failure) = result {
        stats.error(index, failure.kind, failure.detail);
    }
}

/// What [`dial`] leaves: the stream, whatever the server sent after its 101 response (or,
/// with `--deflate`, after its compressed echo), the bytes of that echo, and with
/// `--fanout --deflate` the inflater of what the server compresses.
pub(super) type Dialed = (TcpStream, Vec<u8>, Option<Exchanged>, Option<Inflate>);

/// The bytes of the `--deflate` echo (nothing without the feature).
#[cfg(feature = "deflate")]
pub(super) use super::deflate::Exchanged;
/// The bytes of the `--deflate` echo (nothing without the feature).
#[cfg(not(feature = "deflate"))]
pub(super) type Exchanged = ();

/// The TCP connection and the opening handshake (with `--deflate`, and the compressed echo),
/// bounded by [`CONNECT_TIMEOUT`].
pub(super) async fn dial(index: usize, plan: &Plan) -> Result<Dialed, Failure> {
    match timeout(CONNECT_TIMEOUT, handshake(index, plan)).await {
        Ok(result) => result,
        Err(_) => Err(fail(
            ErrorKind::Timeout,
            format!(
                "no connection and handshake within {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn handshake(index: usize, plan: &Plan) -> Result<Dialed, Failure> {
    let target = plan.target;
    let source = plan.source_ip(index);
    let connect_fail = |error: io::Error| {
        let from = source.map(|ip| format!(" from {ip}")).unwrap_or_default();
        fail(
            ErrorKind::Connect,
            format!("connect to {target}{from}: {error}"),
        )
    };
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(connect_fail)?;
    if let Some(ip) = source {
        // Each source address has its own ephemeral ports: N of them fit N times as many
        // connections to one server port.
        socket.bind(SocketAddr::new(ip, 0)).map_err(connect_fail)?;
    }
    let mut stream = socket.connect(target).await.map_err(connect_fail)?;
    // Frames leave as soon as they are written; batching is done here, not by Nagle.
    stream.set_nodelay(true).map_err(connect_fail)?;

    let handshake_fail = |what: &'static str| {
        move |error: io::Error| fail(ErrorKind::Handshake, format!("{what}: {error}"))
    };
    let mut handshake = plan.handshake.clone().with_key(rand::random());
    stream
        .write_all(&handshake.request_bytes())
        .await
        .map_err(handshake_fail("sending the request"))?;
    handshake.recv_buffer_mut().reserve(1024);
    loop {
        let read = stream
            .read_buf(handshake.recv_buffer_mut())
            .await
            .map_err(handshake_fail("reading the response"))?;
        if read == 0 {
            return Err(fail(
                ErrorKind::Handshake,
                "the server ended the connection before its handshake response",
            ));
        }
        match handshake.poll_response() {
            Ok(Some((response, rest))) => {
                #[cfg(feature = "deflate")]
                if let Some(deflate) = &plan.deflate {
                    let (rest, exchanged) = super::deflate::exchange(
                        &mut stream,
                        &response,
                        rest.to_vec(),
                        index,
                        deflate,
                    )
                    .await?;
                    return Ok((stream, rest, Some(exchanged), None));
                }
                #[cfg(feature = "deflate")]
                if let Some(config) = &plan.inflate {
                    let params = super::deflate::agreed(config, &response)?;
                    return Ok((stream, rest.to_vec(), None, Some(Inflate::new(&params))));
                }
                drop(response);
                return Ok((stream, rest.to_vec(), None, None));
            }
            Ok(None) => {}
            Err(error) => return Err(fail(ErrorKind::Handshake, error.to_string())),
        }
    }
}

/// What the connection is doing; it decides what a reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Open, waiting for the window: nothing is sent, nothing is expected but pings.
    Wait,
    /// In the window: sending.
    Run,
    /// After the window: waiting for the outstanding echoes.
    Drain,
    /// Our close frame is sent: waiting for the server's. Late echoes are ignored (a drain
    /// that timed out was counted already) and pings are not answered (nothing may follow a
    /// close frame).
    Closing,
}

/// `--rate`: messages are due at fixed times. A message held back because the window was
/// full has its round trip measured from when it was due, so that a server that falls
/// behind shows in the latencies rather than slowing the sender down and hiding it
/// ("coordinated omission"). Otherwise it is measured from when it left: the timer wakes up
/// to a millisecond late, and that delay is the client's, not the server's.
#[derive(Debug)]
struct Pace {
    /// When message 0 is due.
    first: Instant,
    /// Seconds between two messages.
    interval: f64,
    /// Messages due before the window closes.
    total: u64,
    /// Messages sent so far.
    sent: u64,
    /// Whether the window was full at the last send: the messages due since then waited
    /// for the server.
    held: bool,
}

impl Pace {
    fn new(first: Instant, interval: f64, stop: Instant) -> Self {
        let span = stop.saturating_duration_since(first).as_secs_f64();
        Self {
            first,
            interval,
            total: (span / interval).ceil() as u64,
            sent: 0,
            held: false,
        }
    }

    /// When message `n` is due.
    fn due_at(&self, n: u64) -> Instant {
        self.first + Duration::from_secs_f64(n as f64 * self.interval)
    }

    /// How many messages are due at `now`.
    fn due(&self, now: Instant) -> u64 {
        if now < self.first {
            return 0;
        }
        let elapsed = (now - self.first).as_secs_f64();
        ((elapsed / self.interval).floor() as u64 + 1).min(self.total)
    }
}

/// An open connection.
struct Conn {
    index: usize,
    stream: TcpStream,
    stats: Arc<Stats>,
    local: Local,
    parser: ReplyParser,
    /// The connection's masking key, for all its frames.
    key: [u8; 4],
    /// Received bytes; `start..end` are not parsed yet.
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// Copies of the masked message frame, back to back.
    batch: Vec<u8>,
    frame_len: usize,
    batch_frames: usize,
    /// Bytes the socket did not take yet; `out_pos..` are still to be written. Empty when
    /// nothing is pending.
    out: Vec<u8>,
    out_pos: usize,
    /// When each outstanding message was sent (or due), oldest first.
    sent_at: VecDeque<Instant>,
    /// Messages in flight at most.
    inflight: usize,
    /// Echoes received before this count as the window's.
    window_end: Instant,
    pace: Option<Pace>,
    /// How many connections the run opens (paced sends are spread over them).
    conns: usize,
    /// The server's close frame, once it came.
    close: Option<(Option<u16>, String)>,
}

impl Conn {
    fn new(
        index: usize,
        stream: TcpStream,
        leftover: Vec<u8>,
        plan: &Plan,
        stats: Arc<Stats>,
    ) -> Self {
        let message = payload(plan.size, plan.binary);
        // One random key for every frame of the connection. RFC 6455 §5.3 wants a fresh key
        // per frame, so that a browser's scripts cannot choose the bytes on the wire and
        // poison caching proxies; a load generator runs no untrusted script, and reusing the
        // key lets every frame be built and masked once.
        let key: [u8; 4] = rand::random();
        let opcode = if plan.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        let frame = client_frame(opcode, &message, key);
        let batch_frames = plan.inflight.min(BATCH_BYTES / frame.len()).max(1);
        let read_size = (plan.inflight * (plan.size + 14)).clamp(READ_BUFFER.0, READ_BUFFER.1);
        let mut inbuf = vec![0; read_size.max(leftover.len() + READ_BUFFER.0)];
        inbuf[..leftover.len()].copy_from_slice(&leftover);
        Self {
            index,
            stream,
            stats,
            local: Local::default(),
            parser: ReplyParser::new(message, plan.binary).accept_masked(plan.masked_echo),
            key,
            inbuf,
            start: 0,
            end: leftover.len(),
            batch: frame.repeat(if plan.inflight == 0 { 0 } else { batch_frames }),
            frame_len: frame.len(),
            batch_frames,
            out: Vec::new(),
            out_pos: 0,
            sent_at: VecDeque::with_capacity(plan.inflight),
            inflight: plan.inflight,
            window_end: Instant::now(),
            pace: None,
            conns: plan.conns,
            close: None,
        }
    }

    /// Everything after the handshake.
    async fn session(&mut self, start: &mut watch::Receiver<Option<Start>>) -> Result<(), Failure> {
        if self.end > 0 {
            self.process(Instant::now(), Phase::Wait)?;
            self.flush()?;
        }
        let Some(window) = self.wait_for_start(start).await? else {
            // The run was called off: leave quietly.
            return Ok(());
        };
        self.window_end = window.stop;
        if let Some(interval) = window.interval {
            // Connections start a fraction of an interval apart, so that the total rate is
            // even rather than a burst from every connection at once.
            let offset = interval * (self.index as f64 / self.conns.max(1) as f64);
            let first = window.at + Duration::from_secs_f64(offset);
            self.pace = Some(Pace::new(first, interval, window.stop));
        }
        self.pump(Phase::Run, window.stop).await?;
        if !self
            .pump(Phase::Drain, Instant::now() + DRAIN_TIMEOUT)
            .await?
        {
            let outstanding = self.sent_at.len();
            self.close_quietly();
            return Err(fail(
                ErrorKind::Timeout,
                format!(
                    "{outstanding} echoes still outstanding {} s after the end",
                    DRAIN_TIMEOUT.as_secs()
                ),
            ));
        }
        self.out.extend_from_slice(&close_frame(1000, self.key));
        self.flush()?;
        if !self
            .pump(Phase::Closing, Instant::now() + CLOSE_TIMEOUT)
            .await?
        {
            return Err(fail(
                ErrorKind::Timeout,
                format!(
                    "no close frame from the server within {} s of ours",
                    CLOSE_TIMEOUT.as_secs()
                ),
            ));
        }
        Ok(())
    }

    /// Waits for the window, answering pings; `None` when the run was called off.
    async fn wait_for_start(
        &mut self,
        start: &mut watch::Receiver<Option<Start>>,
    ) -> Result<Option<Start>, Failure> {
        loop {
            if let Some(window) = *start.borrow_and_update() {
                return Ok(Some(window));
            }
            tokio::select! {
                changed = start.changed() => if changed.is_err() {
                    return Ok(None);
                },
                ready = self.stream.ready(self.interest()) => {
                    self.on_ready(ready, Phase::Wait)?;
                    self.flush()?;
                }
            }
        }
    }

    /// Runs `phase` until it is done (`true`: all echoes in for a drain, the server's close
    /// frame for a close) or `deadline` passes (`false`; the end of a run's window).
    async fn pump(&mut self, phase: Phase, deadline: Instant) -> Result<bool, Failure> {
        let mut expiry = pin!(sleep_until(deadline));
        let mut timer = pin!(sleep_until(deadline));
        let mut timer_armed = false;
        if phase == Phase::Run {
            if let Some(next) = self.send_more(Instant::now())? {
                timer.as_mut().reset(next);
                timer_armed = true;
            }
            self.flush()?;
        }
        loop {
            let done = match phase {
                Phase::Drain => self.sent_at.is_empty() && self.out.is_empty(),
                Phase::Closing => self.close.is_some(),
                Phase::Wait | Phase::Run => false,
            };
            if done {
                return Ok(true);
            }
            // Biased: under load the socket is always ready, so the clock is also checked
            // after each read rather than left to the timers.
            tokio::select! {
                biased;
                ready = self.stream.ready(self.interest()) => {
                    if let Some((now, _)) = self.on_ready(ready, phase)?
                        && phase == Phase::Run
                    {
                        if now >= deadline {
                            return Ok(false);
                        }
                        if let Some(next) = self.send_more(now)? {
                            timer.as_mut().reset(next);
                            timer_armed = true;
                        } else if self.pace.is_some() {
                            // Window full: the next echo, not the clock, sends again.
                            timer_armed = false;
                        }
                    }
                    self.flush()?;
                }
                () = &mut expiry => return Ok(false),
                () = &mut timer, if timer_armed => {
                    timer_armed = false;
                    if let Some(next) = self.send_more(Instant::now())? {
                        timer.as_mut().reset(next);
                        timer_armed = true;
                    }
                    self.flush()?;
                }
            }
        }
    }

    /// Readable when nothing waits to be written; writable too when something does.
    fn interest(&self) -> Interest {
        if self.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        }
    }

    /// Writes what is pending if the socket is writable, then reads and handles what came
    /// if it is readable. Returns when the read happened and how many echoes it completed,
    /// or `None` when nothing was read.
    fn on_ready(
        &mut self,
        ready: io::Result<Ready>,
        phase: Phase,
    ) -> Result<Option<(Instant, usize)>, Failure> {
        let ready = ready.map_err(io_fail("socket"))?;
        if ready.is_writable() {
            self.flush()?;
        }
        if !(ready.is_readable() || ready.is_read_closed()) || !self.read(phase)? {
            return Ok(None);
        }
        let now = Instant::now();
        let completed = self.process(now, phase)?;
        self.stats.flush(self.index, &mut self.local);
        Ok(Some((now, completed)))
    }

    /// One read into the buffer: `false` when the socket had nothing after all.
    fn read(&mut self, phase: Phase) -> Result<bool, Failure> {
        if self.end == self.inbuf.len() {
            // Not reached (what is left unparsed is small), but a full buffer would read as
            // the end of the stream.
            self.inbuf.resize(self.inbuf.len() * 2, 0);
        }
        match self.stream.try_read(&mut self.inbuf[self.end..]) {
            Ok(0) => Err(fail(
                ErrorKind::Protocol,
                match phase {
                    Phase::Closing => "the server ended the connection without a close frame",
                    _ => "the server ended the connection",
                },
            )),
            Ok(read) => {
                self.end += read;
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(error) => Err(io_fail("read failed")(error)),
        }
    }

    /// Parses the buffered bytes: counts echoes, queues pongs, notes a close. Returns how
    /// many outstanding messages were answered.
    fn process(&mut self, now: Instant, phase: Phase) -> Result<usize, Failure> {
        let Self {
            index,
            local,
            parser,
            key,
            inbuf,
            start,
            end,
            out,
            sent_at,
            window_end,
            close,
            ..
        } = self;
        let index = *index;
        let mut completed = 0;
        let used = parser
            .feed(&inbuf[*start..*end], |reply| match reply {
                Reply::Message(_) if phase == Phase::Closing => {}
                Reply::Message(result) => {
                    let Some(sent) = sent_at.pop_front() else {
                        local.mismatch(index, || "a message came while none was outstanding");
                        return;
                    };
                    completed += 1;
                    match result {
                        Ok(_) => local.echo(now.saturating_duration_since(sent), now < *window_end),
                        Err(mismatch) => local.mismatch(index, || mismatch),
                    }
                }
                Reply::Ping(data) if phase != Phase::Closing => {
                    out.extend_from_slice(&client_frame(OpCode::Pong, data, *key));
                }
                Reply::Ping(_) | Reply::Pong => {}
                Reply::Close { code, reason } => *close = Some((code, reason)),
            })
            .map_err(invalid_frame)?;
        *start += used;
        // What is left is a partial header or control frame (at most 135 bytes): move it to
        // the front so that the next read has the room.
        inbuf.copy_within(*start..*end, 0);
        *end -= *start;
        *start = 0;
        if phase != Phase::Closing
            && let Some((code, reason)) = &self.close
        {
            let failure = server_closed(*code, reason);
            self.close_quietly();
            return Err(failure);
        }
        Ok(completed)
    }

    /// Tops the window up: with `--rate`, the messages due by `now` (as far as the window
    /// allows); without it, back to `inflight` outstanding, until the window closes. Returns
    /// when the next paced message is due, if the connection must wake up for it.
    fn send_more(&mut self, now: Instant) -> Result<Option<Instant>, Failure> {
        let room = self.inflight - self.sent_at.len();
        let Some(pace) = &mut self.pace else {
            if now < self.window_end && room > 0 {
                self.sent_at.extend(std::iter::repeat_n(now, room));
                self.queue_frames(room)?;
            }
            return Ok(None);
        };
        if now < pace.first {
            return Ok(Some(pace.first));
        }
        let count = (pace.due(now) - pace.sent).min(room as u64);
        for n in pace.sent..pace.sent + count {
            self.sent_at
                .push_back(if pace.held { pace.due_at(n) } else { now });
        }
        pace.sent += count;
        pace.held = self.sent_at.len() == self.inflight;
        let next = (pace.sent < pace.total && self.sent_at.len() < self.inflight)
            .then(|| pace.due_at(pace.sent));
        // `count` <= `room`, a usize.
        self.queue_frames(count as usize)?;
        Ok(next)
    }

    /// Sends `count` message frames: straight from the pre-built batch when nothing else is
    /// pending (the usual case: one write, no copy), else after what is.
    fn queue_frames(&mut self, mut count: usize) -> Result<(), Failure> {
        while count > 0 {
            let frames = count.min(self.batch_frames);
            let bytes = &self.batch[..frames * self.frame_len];
            if self.out.is_empty() {
                let written = match self.stream.try_write(bytes) {
                    Ok(written) => written,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(error) => return Err(io_fail("write failed")(error)),
                };
                self.out.extend_from_slice(&bytes[written..]);
                self.out_pos = 0;
            } else {
                self.out.extend_from_slice(bytes);
            }
            count -= frames;
        }
        Ok(())
    }

    /// Writes what is pending, as far as the socket takes it.
    fn flush(&mut self) -> Result<(), Failure> {
        while self.out_pos < self.out.len() {
            match self.stream.try_write(&self.out[self.out_pos..]) {
                Ok(0) => {
                    return Err(fail(
                        ErrorKind::Protocol,
                        "write failed: the socket took nothing",
                    ));
                }
                Ok(written) => self.out_pos += written,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(io_fail("write failed")(error)),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(())
    }

    /// A close frame (1000) on the way out of a failed connection, if it can go now without
    /// breaking a frame in the middle; nothing is waited for.
    fn close_quietly(&mut self) {
        if self.out.is_empty() {
            let _ = self.stream.try_write(&close_frame(1000, self.key));
        }
    }
}

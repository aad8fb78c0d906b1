//! The soak test: `wsworker serve --mode echo` as a child process, holding `SOAK_CONNS`
//! WebSocket connections open at once while every one of them exchanges messages for
//! `SOAK_SECONDS`, beside slowloris sockets (a handshake request one byte per second) and
//! clients that send malformed frames.
//!
//! Ignored by default; CI runs it as the short soak with `cargo test --workspace --
//! --ignored`. By hand:
//!
//! ```text
//! SOAK_CONNS=1000 SOAK_SECONDS=5 cargo test -p wsworker-cli --test soak -- --ignored --nocapture
//! SOAK_SECONDS=60 cargo test --release -p wsworker-cli --test soak -- --ignored --nocapture
//! ```
//!
//! Environment (defaults in brackets): `SOAK_CONNS` [10000] connections held open,
//! `SOAK_SECONDS` [10] of message exchange, `SOAK_SLOWLORIS` [200] slowloris sockets,
//! `SOAK_MALFORMED` [50] malformed-frame clients, `SOAK_COUNT` [2] server workers, and
//! `SOAK_RATE` [5000 in a debug build, 25000 in release] messages per second over all
//! connections, the load the pacing aims at (each connection sends a burst of 1–4 messages
//! then sleeps, at least 50–200 ms, longer when there are many connections).
//!
//! Every wait is bounded: the test fails rather than hangs, within `SOAK_SECONDS` + 80 s.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufRead, BufReader, IoSlice};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::cpu_seconds;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout, timeout_at};
use wsworker_proto::handshake::ClientHandshake;
use wsworker_proto::{CloseCode, Config, Connection, Event, Message, Role, Utf8Bytes};

/// Client sockets are bound to 127.0.0.1 … 127.0.0.SOURCES in turn.
const SOURCES: usize = 8;
/// The server's default handshake timeout: slowloris sockets are cut off after it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once while the connections open.
const CONNECT_CONCURRENCY: usize = 256;
/// Tries per connection (TCP connect and opening handshake).
const CONNECT_ATTEMPTS: u32 = 5;
/// One try: TCP connect and opening handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// All the connections must be open within this.
const CONNECT_PHASE_LIMIT: Duration = Duration::from_secs(30);
/// After the exchange, how long a connection waits for its outstanding echoes.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// The closing handshake (our close frame, the server's close frame).
const CLOSE_LIMIT: Duration = Duration::from_secs(10);
/// After the server's close frame, how long to wait for it to end the TCP connection.
const EOF_LIMIT: Duration = Duration::from_secs(5);
/// The slowloris and malformed clients must stop within this once told to.
const SIDE_STOP_LIMIT: Duration = Duration::from_secs(20);
/// The server must exit within this after SIGTERM.
const SERVER_STOP_LIMIT: Duration = Duration::from_secs(15);
/// The whole test, beyond `SOAK_SECONDS`.
const OVERALL_SLACK: Duration = Duration::from_secs(80);
/// Mean burst size: a window of 1..=4 drawn per connection, a burst of 1..=window.
const MEAN_BURST: f64 = 1.75;
/// Failure descriptions kept per category for the report.
const SAMPLES: usize = 8;

// ----- settings ------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Settings {
    conns: usize,
    seconds: u64,
    slowloris: usize,
    malformed: usize,
    count: u16,
    rate: u64,
}

impl Settings {
    fn from_env() -> Self {
        let default_rate = if cfg!(debug_assertions) { 5000 } else { 25000 };
        let settings = Self {
            conns: env_or("SOAK_CONNS", 10_000),
            seconds: env_or("SOAK_SECONDS", 10),
            slowloris: env_or("SOAK_SLOWLORIS", 200),
            malformed: env_or("SOAK_MALFORMED", 50),
            count: env_or("SOAK_COUNT", 2),
            rate: env_or("SOAK_RATE", default_rate),
        };
        assert!(settings.conns > 0, "SOAK_CONNS must be at least 1");
        assert!(settings.seconds > 0, "SOAK_SECONDS must be at least 1");
        assert!(settings.count > 0, "SOAK_COUNT must be at least 1");
        assert!(settings.rate > 0, "SOAK_RATE must be at least 1");
        settings
    }

    /// The mean pause between two bursts of one connection: the target rate spread over all
    /// connections, never below 125 ms (so each connection sleeps at least 50–200 ms).
    fn pause_mean(&self) -> Duration {
        let secs = self.conns as f64 * MEAN_BURST / self.rate as f64;
        Duration::from_secs_f64(secs.max(0.125))
    }
}

fn env_or<T>(name: &str, default: T) -> T
where
    T: FromStr,
    T::Err: std::fmt::Debug,
{
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|error| panic!("{name}={value:?} is not a valid number: {error:?}")),
        Err(_) => default,
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (the server, spawned afterwards,
/// inherits it); fails when even the hard limit is below `needed`.
fn raise_nofile_limit(needed: u64) -> u64 {
    use rlimit::Resource;
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).expect("getrlimit(RLIMIT_NOFILE)");
    let target = if hard == rlimit::INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20)
    } else {
        hard
    };
    assert!(
        target >= needed,
        "the RLIMIT_NOFILE hard limit is {hard}, too low for this soak: it needs {needed} file \
         descriptors (SOAK_CONNS + SOAK_SLOWLORIS + SOAK_MALFORMED + 100); raise the hard \
         limit (ulimit -Hn, as root) or lower SOAK_CONNS"
    );
    if soft < target {
        rlimit::setrlimit(Resource::NOFILE, target, hard).expect("setrlimit(RLIMIT_NOFILE)");
    }
    target
}

// ----- the server ----------------------------------------------------------------------------

/// What the server wrote to stderr (logs at `warn` and above).
#[derive(Debug, Default)]
struct ServerLog {
    lines: usize,
    first: Vec<String>,
    panicked: bool,
}

/// `wsworker serve --mode echo` as a child process; killed (that PID only) if still running
/// when dropped, as on a failed assertion.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// Where the server serves `GET /metrics`.
    metrics: SocketAddr,
    log: Arc<Mutex<ServerLog>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    /// VmRSS, KiB.
    rss: u64,
    /// VmHWM (peak RSS), KiB.
    hwm: u64,
}

impl Memory {
    /// From `/proc/<pid>/status` (zeros once the process is gone).
    fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        Self {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
        }
    }
}

impl Server {
    fn start(count: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_wsworker"))
            .args([
                "serve",
                "websocket://127.0.0.1:0",
                "--mode",
                "echo",
                "--count",
            ])
            .arg(count.to_string())
            .args(["--log-level", "warn", "--metrics", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsworker serve");
        let mut server = Self {
            child,
            addr: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            metrics: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            log: Arc::default(),
        };
        // Both pipes are drained for the whole run by their own threads, so the server never
        // blocks on (or fails at) a write to them.
        let stdout = server.child.stdout.take().expect("stdout piped");
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines_tx.send(line);
            }
        });
        let stderr = server.child.stderr.take().expect("stderr piped");
        let log = server.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.lines += 1;
                log.panicked |= line.contains("panicked");
                if log.first.len() < SAMPLES {
                    log.first.push(line);
                }
            }
        });
        // As in tests/cli.rs: "wsworker serving echo on ws://127.0.0.1:PORT with N workers",
        // then the line about the demo page.
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the server did not announce itself within 30 s");
        server.addr = first
            .split_whitespace()
            .find_map(|word| word.strip_prefix("ws://"))
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .unwrap_or_else(|error| panic!("no address in {first:?}: {error}"));
        // "metrics at http://127.0.0.1:PORT/metrics", then the line about the demo page.
        let second = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the server's second line");
        server.metrics = second
            .strip_prefix("metrics at http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("unexpected second line: {second}"))
            .parse()
            .unwrap_or_else(|error| panic!("no address in {second:?}: {error}"));
        let third = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the server's third line");
        assert!(third.contains("in a browser"), "{third}");
        server
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's counters from `GET /metrics`, summed over the label sets of each name.
    async fn metrics(&self) -> io::Result<BTreeMap<String, u64>> {
        let mut stream = timeout(Duration::from_secs(10), TcpStream::connect(self.metrics))
            .await
            .map_err(|_| io::Error::other("metrics connect timed out"))??;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\n\r\n")
            .await?;
        let mut page = String::new();
        timeout(Duration::from_secs(10), stream.read_to_string(&mut page))
            .await
            .map_err(|_| io::Error::other("metrics read timed out"))??;
        let mut sums = BTreeMap::new();
        for line in page.lines().filter(|l| l.starts_with("wsworker_")) {
            let (series, value) = line.rsplit_once(' ').unwrap_or((line, "0"));
            // Per worker counters are summed; other labels (code, reason) are kept.
            let name = match series.split_once("{worker=") {
                Some((name, _)) => name,
                None => series,
            };
            *sums.entry(name.to_owned()).or_default() += value.parse::<u64>().unwrap_or(0);
        }
        Ok(sums)
    }

    fn memory(&self) -> Memory {
        Memory::of(self.pid())
    }

    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM (to this PID, with the `kill` command), then the exit code; `None` when the
    /// server did not exit within [`SERVER_STOP_LIMIT`] (it is killed when dropped).
    async fn stop(&mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
        let deadline = Instant::now() + SERVER_STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ----- client plumbing -----------------------------------------------------------------------

/// The source address of the `n`th client socket of a kind: 127.0.0.1 … 127.0.0.8 in turn.
fn source(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (n % SOURCES) as u8)
}

async fn tcp_connect(src: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// An open WebSocket connection: the raw socket and the sans-IO client state.
struct Ws {
    stream: TcpStream,
    conn: Connection,
}

impl Ws {
    /// TCP connect from `src`, then the opening handshake, within [`CONNECT_TIMEOUT`].
    async fn connect(src: Ipv4Addr, addr: SocketAddr, url: &str) -> Result<Self, String> {
        let open = async {
            let mut stream = tcp_connect(src, addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let mut handshake =
                ClientHandshake::new(url).map_err(|e| format!("handshake setup: {e}"))?;
            stream
                .write_all(&handshake.request_bytes())
                .await
                .map_err(|e| format!("write request: {e}"))?;
            loop {
                let buf = handshake.recv_buffer_mut();
                buf.reserve(1024);
                let n = stream
                    .read_buf(buf)
                    .await
                    .map_err(|e| format!("read response: {e}"))?;
                if n == 0 {
                    return Err("EOF during the opening handshake".to_owned());
                }
                let polled = handshake
                    .poll_response()
                    .map_err(|e| format!("handshake: {e}"))?;
                if let Some((_response, rest)) = polled {
                    let conn = Connection::with_buffer(
                        Role::Client,
                        Config::default(),
                        BytesMut::from(rest),
                    );
                    return Ok(Self { stream, conn });
                }
            }
        };
        timeout(CONNECT_TIMEOUT, open)
            .await
            .unwrap_or_else(|_| Err("connect and handshake timed out".to_owned()))
    }

    /// Writes everything queued, with vectored writes.
    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_transmit() {
            let written = {
                let mut slices = [IoSlice::new(&[]); 32];
                let n = self.conn.transmit_slices(&mut slices);
                self.stream.write_vectored(&slices[..n]).await?
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.conn.advance_transmit(written);
        }
        Ok(())
    }

    /// Reads what is there into the connection's buffer (cancel-safe: `read_buf`).
    async fn read_some(&mut self) -> io::Result<usize> {
        let buf = self.conn.recv_buffer_mut();
        buf.reserve(2048);
        self.stream.read_buf(buf).await
    }

    /// Reads and discards until the server ends the TCP connection: `true` on EOF within
    /// `limit`.
    async fn wait_eof(&mut self, limit: Duration) -> bool {
        let mut scratch = [0u8; 512];
        let eof = async {
            loop {
                match self.stream.read(&mut scratch).await {
                    Ok(0) => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        };
        timeout(limit, eof).await.unwrap_or(false)
    }
}

/// SplitMix64: deterministic per seed, good enough to vary sizes and pauses.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `"<conn>:<seq>"`, then `|` and filler (ASCII and 2-, 3- and 4-byte characters) up to a
/// length of 1..=200 bytes drawn from `rng` (never shorter than the label itself).
fn payload(conn: usize, seq: u64, rng: &mut Rng) -> String {
    const FILL: [char; 8] = ['a', 'Z', '0', '~', 'é', 'κ', '€', '𝄞'];
    let target = rng.range(1, 200) as usize;
    let mut text = format!("{conn}:{seq}");
    if text.len() < target {
        text.push('|');
    }
    while text.len() < target {
        let c = FILL[rng.range(0, FILL.len() as u64 - 1) as usize];
        text.push(if text.len() + c.len_utf8() <= target {
            c
        } else {
            '.'
        });
    }
    text
}

/// The connection number and sequence number at the start of an echo.
fn parse_label(text: &str) -> Option<(usize, u64)> {
    let (conn, rest) = text.split_once(':')?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    Some((conn.parse().ok()?, rest.get(..digits)?.parse().ok()?))
}

// ----- the connections held open -------------------------------------------------------------

/// When the exchange runs, and how each connection paces itself.
#[derive(Debug, Clone, Copy)]
struct Plan {
    start: Instant,
    end: Instant,
    pause_mean: Duration,
}

impl Plan {
    /// A pause between two bursts: 0.4 to 1.6 times the mean.
    fn pause(&self, rng: &mut Rng) -> Duration {
        self.pause_mean.mul_f64(0.4 + 1.2 * rng.unit())
    }
}

/// What one connection saw.
#[derive(Debug, Default)]
struct ConnReport {
    sent: u64,
    /// Echoes received (whatever they held).
    received: u64,
    /// Echoes of a message whose echo had already arrived.
    duplicated: u64,
    /// Echoes that overtook an earlier message's echo.
    reordered: u64,
    /// Echoes whose bytes differ from what was sent, that name another connection or an
    /// unsent sequence number, or that are binary.
    mismatched: u64,
    /// Messages whose echo never came.
    lost: u64,
    /// Bursts skipped because the window of in-flight messages was full.
    stalls: u64,
    /// The server answered our close 1000 with a close 1000.
    close_ok: bool,
    /// Then it ended the TCP connection.
    eof_after_close: bool,
    error: Option<String>,
}

impl ConnReport {
    fn check_echo(
        &mut self,
        id: usize,
        text: &Utf8Bytes,
        outstanding: &mut Outstanding,
        next_seq: u64,
    ) {
        self.received += 1;
        let Some((conn, seq)) = parse_label(text.as_str()) else {
            self.mismatched += 1;
            return;
        };
        if conn != id {
            self.mismatched += 1;
            return;
        }
        match outstanding.iter().position(|(s, _)| *s == seq) {
            Some(pos) => {
                if pos > 0 {
                    self.reordered += 1;
                }
                let sent = outstanding.remove(pos).map(|(_, sent)| sent);
                if sent.as_ref().map(Utf8Bytes::as_bytes) != Some(text.as_bytes()) {
                    self.mismatched += 1;
                }
            }
            None if seq < next_seq => self.duplicated += 1,
            None => self.mismatched += 1,
        }
    }

    /// Handles every event decoded so far; `Err` when the connection cannot go on.
    fn handle_events(
        &mut self,
        id: usize,
        conn: &mut Connection,
        outstanding: &mut Outstanding,
        next_seq: u64,
    ) -> Result<(), String> {
        loop {
            match conn.poll_event() {
                Ok(None) => return Ok(()),
                Ok(Some(Event::Message(Message::Text(text)))) => {
                    self.check_echo(id, &text, outstanding, next_seq);
                }
                // Binary: this test sends only text.
                Ok(Some(Event::Message(_))) => {
                    self.received += 1;
                    self.mismatched += 1;
                }
                Ok(Some(Event::Close(frame))) => {
                    return Err(format!("the server closed first: {frame:?}"));
                }
                // Pings (answered by the connection) and pongs.
                Ok(Some(_)) => {}
                Err(error) => return Err(format!("invalid data from the server: {error}")),
            }
        }
    }
}

/// Messages sent whose echo has not arrived: sequence number and text, oldest first.
type Outstanding = VecDeque<(u64, Utf8Bytes)>;

/// One connection's exchange: bursts of messages until `plan.end`, every echo checked, then
/// the outstanding echoes awaited and the closing handshake.
async fn exchange(id: usize, mut ws: Ws, plan: Plan) -> ConnReport {
    let mut report = ConnReport::default();
    let mut rng = Rng::new(id as u64);
    let window = rng.range(1, 4) as usize;
    let mut outstanding = Outstanding::with_capacity(window);
    let mut next_seq = 0u64;
    let mut next_send = plan.start + plan.pause_mean.mul_f64(1.6 * rng.unit());
    loop {
        let now = Instant::now();
        let sending = now < plan.end;
        if !sending && outstanding.is_empty() {
            break;
        }
        let wake = if sending {
            next_send.min(plan.end)
        } else {
            plan.end + DRAIN_LIMIT
        };
        if !sending && now >= wake {
            report.error = Some(format!(
                "{} echoes still outstanding {DRAIN_LIMIT:?} after the exchange",
                outstanding.len()
            ));
            break;
        }
        tokio::select! {
            read = ws.read_some() => match read {
                Ok(0) => {
                    report.error = Some("EOF during the exchange".to_owned());
                    break;
                }
                Ok(_) => {
                    if let Err(error) =
                        report.handle_events(id, &mut ws.conn, &mut outstanding, next_seq)
                    {
                        report.error = Some(error);
                        break;
                    }
                }
                Err(error) => {
                    report.error = Some(format!("read during the exchange: {error}"));
                    break;
                }
            },
            () = sleep_until(wake) => {
                let now = Instant::now();
                if now < plan.end && now >= next_send {
                    let room = window - outstanding.len();
                    if room == 0 {
                        report.stalls += 1;
                    } else {
                        let burst = (rng.range(1, window as u64) as usize).min(room);
                        for _ in 0..burst {
                            let text = Utf8Bytes::from(payload(id, next_seq, &mut rng));
                            ws.conn.send_text(text.clone()).expect("send_text while open");
                            outstanding.push_back((next_seq, text));
                            next_seq += 1;
                            report.sent += 1;
                        }
                    }
                    next_send = now + plan.pause(&mut rng);
                }
            }
        }
        if let Err(error) = ws.flush().await {
            report.error = Some(format!("write during the exchange: {error}"));
            break;
        }
    }
    report.lost = outstanding.len() as u64;
    if report.error.is_some() {
        return report;
    }
    // The closing handshake: our 1000, the server's 1000 back, then its end of TCP.
    let closing = async {
        ws.conn
            .close(CloseCode::NORMAL, "")
            .map_err(|e| format!("close: {e}"))?;
        ws.flush().await.map_err(|e| format!("write close: {e}"))?;
        loop {
            let n = ws
                .read_some()
                .await
                .map_err(|e| format!("read while closing: {e}"))?;
            if n == 0 {
                return Err("EOF before the server's close frame".to_owned());
            }
            loop {
                match ws.conn.poll_event() {
                    Ok(None) => break,
                    Ok(Some(Event::Close(Some(frame)))) if frame.code == CloseCode::NORMAL => {
                        return Ok(());
                    }
                    Ok(Some(Event::Close(frame))) => {
                        return Err(format!("the server answered close 1000 with {frame:?}"));
                    }
                    Ok(Some(Event::Message(_))) => {
                        report.received += 1;
                        report.mismatched += 1;
                    }
                    Ok(Some(_)) => {}
                    Err(error) => return Err(format!("invalid data while closing: {error}")),
                }
            }
        }
    };
    match timeout(CLOSE_LIMIT, closing).await {
        Ok(Ok(())) => {
            report.close_ok = true;
            report.eof_after_close = ws.wait_eof(EOF_LIMIT).await;
        }
        Ok(Err(error)) => report.error = Some(error),
        Err(_) => report.error = Some(format!("no close frame back within {CLOSE_LIMIT:?}")),
    }
    report
}

/// What opening the connections took.
#[derive(Debug, Default)]
struct ConnectReport {
    opened: usize,
    retries: u64,
    elapsed: Duration,
    failures: Vec<String>,
    failed: usize,
}

/// A connection's opening: the connection or why it failed, and the tries it took.
type Opening = (Result<Ws, String>, u32);

/// Opens `conns` connections, at most [`CONNECT_CONCURRENCY`] handshakes at a time, each
/// retried up to [`CONNECT_ATTEMPTS`] times; all within [`CONNECT_PHASE_LIMIT`].
async fn open_all(conns: usize, addr: SocketAddr, url: &str) -> (Vec<(usize, Ws)>, ConnectReport) {
    let started = Instant::now();
    let deadline = started + CONNECT_PHASE_LIMIT;
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let url: Arc<str> = url.into();
    let tasks: Vec<JoinHandle<Opening>> = (0..conns)
        .map(|id| {
            let permits = permits.clone();
            let url = url.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore open");
                let mut last = String::new();
                for attempt in 0..CONNECT_ATTEMPTS {
                    if attempt > 0 {
                        sleep(Duration::from_millis(100 << attempt)).await;
                    }
                    match Ws::connect(source(id), addr, &url).await {
                        Ok(ws) => return (Ok(ws), attempt),
                        Err(error) => last = error,
                    }
                }
                (Err(last), CONNECT_ATTEMPTS)
            })
        })
        .collect();
    let mut report = ConnectReport::default();
    let mut open = Vec::with_capacity(conns);
    for (id, mut task) in tasks.into_iter().enumerate() {
        let failure = match timeout_at(deadline, &mut task).await {
            Ok(Ok((Ok(ws), retries))) => {
                report.retries += u64::from(retries);
                open.push((id, ws));
                continue;
            }
            Ok(Ok((Err(error), retries))) => {
                report.retries += u64::from(retries);
                format!("connection {id}: {error} (after {retries} tries)")
            }
            Ok(Err(error)) => format!("connection {id}: task failed: {error}"),
            Err(_) => {
                task.abort();
                format!("connection {id}: not open within {CONNECT_PHASE_LIMIT:?}")
            }
        };
        report.failed += 1;
        if report.failures.len() < SAMPLES {
            report.failures.push(failure);
        }
    }
    report.opened = open.len();
    report.elapsed = started.elapsed();
    (open, report)
}

// ----- slowloris -----------------------------------------------------------------------------

#[derive(Debug, Default)]
struct SlowlorisReport {
    /// Cut off with a 408 response.
    cut_408: u64,
    /// Cut off with a bare EOF.
    cut_eof: u64,
    /// Cut off with a reset or a write error.
    cut_reset: u64,
    /// Shortest and longest time from connect to cutoff, seconds.
    min_secs: f64,
    max_secs: f64,
    connect_failures: u64,
    connect_error: Option<String>,
    /// Each task's cutoffs.
    per_task: Vec<u64>,
    /// Anything wrong: cut off before the handshake timeout, never cut off, another answer.
    failures: Vec<String>,
    failed: u64,
}

impl SlowlorisReport {
    fn cutoffs(&self) -> u64 {
        self.cut_408 + self.cut_eof + self.cut_reset
    }

    fn fail(&mut self, failure: String) {
        self.failed += 1;
        if self.failures.len() < SAMPLES {
            self.failures.push(failure);
        }
    }
}

enum Cut {
    Status408,
    Eof,
    Reset,
}

enum SlowOutcome {
    Stopped,
    ConnectFailed(String),
    Cut(Cut, Duration),
    Other(String),
}

/// One slowloris connection: the opening request one byte per second until the server cuts
/// it off (or the stop signal).
async fn slowloris_once(
    src: Ipv4Addr,
    addr: SocketAddr,
    url: &str,
    stop: &mut watch::Receiver<bool>,
) -> SlowOutcome {
    // Timed from before the connect: the server's deadline starts at accept, later.
    let started = Instant::now();
    let mut stream = match timeout(CONNECT_TIMEOUT, tcp_connect(src, addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return SlowOutcome::ConnectFailed(error.to_string()),
        Err(_) => return SlowOutcome::ConnectFailed("connect timed out".to_owned()),
    };
    let request = ClientHandshake::new(url)
        .expect("valid url")
        .request_bytes();
    let limit = started + HANDSHAKE_TIMEOUT + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    let cut = |answer: &[u8], otherwise: Cut| {
        if answer.is_empty() {
            SlowOutcome::Cut(otherwise, started.elapsed())
        } else if answer.starts_with(b"HTTP/1.1 408 ") {
            SlowOutcome::Cut(Cut::Status408, started.elapsed())
        } else {
            let line = answer.split(|&b| b == b'\r').next().unwrap_or_default();
            SlowOutcome::Other(format!(
                "answered {:?} after {:.1} s",
                String::from_utf8_lossy(line),
                started.elapsed().as_secs_f64()
            ))
        }
    };
    loop {
        tokio::select! {
            () = async { let _ = stop.wait_for(|stop| *stop).await; } => return SlowOutcome::Stopped,
            read = stream.read(&mut buf) => match read {
                Ok(0) => return cut(&answer, Cut::Eof),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(_) => return cut(&answer, Cut::Reset),
            },
            _ = tick.tick() => {
                if sent < request.len() {
                    if stream.write_all(&request[sent..=sent]).await.is_err() {
                        return cut(&answer, Cut::Reset);
                    }
                    sent += 1;
                }
            }
            () = sleep_until(limit) => {
                return SlowOutcome::Other(format!(
                    "not cut off after {:.1} s ({sent} bytes sent)",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
    }
}

async fn slowloris(
    index: usize,
    total: usize,
    addr: SocketAddr,
    url: Arc<str>,
    mut stop: watch::Receiver<bool>,
    report: Arc<Mutex<SlowlorisReport>>,
) -> u64 {
    // Spread the starts over the first second.
    sleep(Duration::from_secs(1).mul_f64(index as f64 / total as f64)).await;
    let mut cutoffs = 0;
    let mut round = 0;
    while !*stop.borrow() {
        let outcome = slowloris_once(source(index + round), addr, &url, &mut stop).await;
        round += 1;
        if matches!(outcome, SlowOutcome::Stopped) {
            break;
        }
        if let SlowOutcome::ConnectFailed(error) = outcome {
            {
                let mut report = report.lock().unwrap();
                report.connect_failures += 1;
                report.connect_error.get_or_insert(error);
            }
            sleep(Duration::from_millis(500)).await;
            continue;
        }
        let mut report = report.lock().unwrap();
        match outcome {
            SlowOutcome::Stopped | SlowOutcome::ConnectFailed(_) => {}
            SlowOutcome::Cut(kind, after) => {
                cutoffs += 1;
                match kind {
                    Cut::Status408 => report.cut_408 += 1,
                    Cut::Eof => report.cut_eof += 1,
                    Cut::Reset => report.cut_reset += 1,
                }
                let secs = after.as_secs_f64();
                if report.cutoffs() == 1 || secs < report.min_secs {
                    report.min_secs = secs;
                }
                report.max_secs = report.max_secs.max(secs);
                // Timed from before the connect, so never below the timeout but for timer
                // granularity.
                if after < HANDSHAKE_TIMEOUT - Duration::from_secs(1) {
                    report.fail(format!(
                        "slowloris {index}: cut off after {secs:.1} s, before the handshake \
                         timeout"
                    ));
                }
            }
            SlowOutcome::Other(what) => report.fail(format!("slowloris {index}: {what}")),
        }
    }
    cutoffs
}

// ----- malformed frames ----------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Malformed {
    Unmasked,
    ReservedOpcode,
    Rsv1WithoutDeflate,
    InvalidUtf8,
    LongPing,
    ContinuationWithoutStart,
}

impl Malformed {
    const ALL: [Self; 6] = [
        Self::Unmasked,
        Self::ReservedOpcode,
        Self::Rsv1WithoutDeflate,
        Self::InvalidUtf8,
        Self::LongPing,
        Self::ContinuationWithoutStart,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Unmasked => "unmasked frame",
            Self::ReservedOpcode => "reserved opcode 0x3",
            Self::Rsv1WithoutDeflate => "RSV1 without deflate",
            Self::InvalidUtf8 => "invalid UTF-8 text",
            Self::LongPing => "126-byte ping",
            Self::ContinuationWithoutStart => "continuation without start",
        }
    }

    /// The close code RFC 6455 calls for: 1007 for text that is not UTF-8 (§8.1), 1002 for
    /// the protocol errors (§5.1, §5.2, §5.4, §5.5).
    fn expected(self) -> u16 {
        match self {
            Self::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }

    fn bytes(self) -> Vec<u8> {
        match self {
            Self::Unmasked => frame(0x81, b"unmasked", false),
            Self::ReservedOpcode => frame(0x83, b"reserved", true),
            Self::Rsv1WithoutDeflate => frame(0xC1, b"rsv1", true),
            // A valid κ, then bytes that are never UTF-8.
            Self::InvalidUtf8 => frame(0x81, &[0xCE, 0xBA, 0xFF, 0xFE], true),
            Self::LongPing => frame(0x89, &[b'p'; 126], true),
            Self::ContinuationWithoutStart => frame(0x80, b"continued", true),
        }
    }
}

/// A frame with this first byte (FIN, RSV, opcode) and payload, masked or not.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    const KEY: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut out = vec![first];
    match u16::try_from(payload.len()) {
        Ok(len) if len < 126 => out.push(mask_bit | len as u8),
        Ok(len) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&len.to_be_bytes());
        }
        Err(_) => unreachable!("small test frames only"),
    }
    if masked {
        out.extend_from_slice(&KEY);
        out.extend(payload.iter().zip(KEY.iter().cycle()).map(|(b, k)| b ^ k));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

#[derive(Debug, Default)]
struct MalformedReport {
    /// Close frames received, by (case, code).
    closes: BTreeMap<(&'static str, u16), u64>,
    right: u64,
    wrong: u64,
    /// Cycles that got no close frame at all (handshake refused, EOF, reset, timeout, …).
    failed: u64,
    failures: Vec<String>,
    /// Each task's cycles with the right code.
    per_task: Vec<u64>,
}

impl MalformedReport {
    fn fail(&mut self, failure: String) {
        self.failed += 1;
        if self.failures.len() < SAMPLES {
            self.failures.push(failure);
        }
    }

    fn by_code(&self) -> BTreeMap<u16, u64> {
        let mut codes = BTreeMap::new();
        for ((_, code), n) in &self.closes {
            *codes.entry(*code).or_insert(0) += n;
        }
        codes
    }
}

/// One malformed client: a valid handshake, the malformed frame, and the server's close
/// code (answered, then the TCP end awaited briefly).
async fn malformed_once(
    src: Ipv4Addr,
    addr: SocketAddr,
    url: &str,
    kind: Malformed,
) -> Result<u16, String> {
    let mut ws = Ws::connect(src, addr, url).await?;
    ws.stream
        .write_all(&kind.bytes())
        .await
        .map_err(|e| format!("write the malformed frame: {e}"))?;
    let code = 'read: loop {
        let n = ws.read_some().await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("EOF without a close frame".to_owned());
        }
        loop {
            match ws.conn.poll_event() {
                Ok(None) => break,
                Ok(Some(Event::Close(Some(frame)))) => break 'read frame.code.as_u16(),
                Ok(Some(Event::Close(None))) => {
                    return Err("a close frame without a code".to_owned());
                }
                Ok(Some(Event::Message(message))) => {
                    return Err(format!("a message instead of a close: {message:?}"));
                }
                Ok(Some(_)) => {}
                Err(error) => return Err(format!("invalid data from the server: {error}")),
            }
        }
    };
    // Our answering close frame (queued by the connection), then the server's end of TCP.
    let _ = ws.flush().await;
    let _ = ws.wait_eof(Duration::from_secs(2)).await;
    Ok(code)
}

async fn malformed(
    index: usize,
    addr: SocketAddr,
    url: Arc<str>,
    stop: watch::Receiver<bool>,
    report: Arc<Mutex<MalformedReport>>,
) -> u64 {
    let mut rng = Rng::new(0x5EED_0000 + index as u64);
    let mut right = 0;
    let mut round = index;
    while !*stop.borrow() {
        let kind = Malformed::ALL[round % Malformed::ALL.len()];
        round += 1;
        let outcome = timeout(
            CONNECT_TIMEOUT + Duration::from_secs(5),
            malformed_once(source(round), addr, &url, kind),
        )
        .await
        .unwrap_or_else(|_| Err("no close frame within 15 s".to_owned()));
        {
            let mut report = report.lock().unwrap();
            match outcome {
                Ok(code) => {
                    *report.closes.entry((kind.name(), code)).or_insert(0) += 1;
                    if code == kind.expected() {
                        report.right += 1;
                        right += 1;
                    } else {
                        report.wrong += 1;
                        report.fail(format!(
                            "malformed {index}, {}: close {code}, expected {}",
                            kind.name(),
                            kind.expected()
                        ));
                    }
                }
                Err(error) => report.fail(format!("malformed {index}, {}: {error}", kind.name())),
            }
        }
        sleep(Duration::from_millis(rng.range(100, 300))).await;
    }
    right
}

// ----- the test ------------------------------------------------------------------------------

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: minutes of load; run with --ignored (tune with SOAK_CONNS, SOAK_SECONDS, …)"]
async fn soak_echo_server_with_slowloris_and_malformed_clients() {
    let settings = Settings::from_env();
    let needed = (settings.conns + settings.slowloris + settings.malformed + 100) as u64;
    let nofile = raise_nofile_limit(needed);
    let mut server = Server::start(settings.count);
    let budget = Duration::from_secs(settings.seconds) + OVERALL_SLACK;
    if timeout(budget, soak(settings, nofile, &mut server))
        .await
        .is_err()
    {
        panic!("the soak did not finish within SOAK_SECONDS + {OVERALL_SLACK:?}");
    }
}

async fn soak(settings: Settings, nofile: u64, server: &mut Server) {
    let addr = server.addr;
    let url: Arc<str> = format!("ws://{addr}/").into();
    let baseline = server.memory();
    eprintln!(
        "soak: {settings:?}, RLIMIT_NOFILE {nofile}, server pid {} on {addr}, RSS at start \
         {:.1} MiB",
        server.pid(),
        mib(baseline.rss)
    );

    // Beside everything, from the start: slowloris sockets and malformed-frame clients.
    let side_started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let slow_report = Arc::new(Mutex::new(SlowlorisReport::default()));
    let slow_tasks: Vec<JoinHandle<u64>> = (0..settings.slowloris)
        .map(|i| {
            tokio::spawn(slowloris(
                i,
                settings.slowloris,
                addr,
                url.clone(),
                stop_rx.clone(),
                slow_report.clone(),
            ))
        })
        .collect();
    let bad_report = Arc::new(Mutex::new(MalformedReport::default()));
    let bad_tasks: Vec<JoinHandle<u64>> = (0..settings.malformed)
        .map(|i| {
            tokio::spawn(malformed(
                i,
                addr,
                url.clone(),
                stop_rx.clone(),
                bad_report.clone(),
            ))
        })
        .collect();

    // Every connection opened and held.
    let (open, connect) = open_all(settings.conns, addr, &url).await;
    let when_open = server.memory();
    eprintln!(
        "soak: {} of {} connections open in {:.2} s ({:.0} handshakes/s, {} retries); server \
         RSS {:.1} MiB",
        connect.opened,
        settings.conns,
        connect.elapsed.as_secs_f64(),
        connect.opened as f64 / connect.elapsed.as_secs_f64(),
        connect.retries,
        mib(when_open.rss)
    );

    // The exchange.
    let pid = server.pid();
    let cpu_start = (cpu_seconds(pid), cpu_seconds(std::process::id()));
    let start = Instant::now();
    let plan = Plan {
        start,
        end: start + Duration::from_secs(settings.seconds),
        pause_mean: settings.pause_mean(),
    };
    let tasks: Vec<(usize, JoinHandle<ConnReport>)> = open
        .into_iter()
        .map(|(id, ws)| (id, tokio::spawn(exchange(id, ws, plan))))
        .collect();
    // The server at its fullest: every connection open, the exchange just over; and the
    // CPU time both sides spent on the exchange.
    // VmRSS is also sampled at each tenth of the exchange, to tell growth from a plateau.
    let sampler = tokio::spawn(async move {
        let mut series = Vec::with_capacity(10);
        for tenth in 1..10 {
            sleep_until(plan.start + (plan.end - plan.start) * tenth / 10).await;
            series.push(Memory::of(pid).rss);
        }
        sleep_until(plan.end - Duration::from_millis(200)).await;
        let cpu = (cpu_seconds(pid), cpu_seconds(std::process::id()));
        let memory = Memory::of(pid);
        series.push(memory.rss);
        (memory, series, cpu.0 - cpu_start.0, cpu.1 - cpu_start.1)
    });
    let join_deadline = plan.end + DRAIN_LIMIT + CLOSE_LIMIT + EOF_LIMIT + Duration::from_secs(5);
    let mut total = ConnReport::default();
    let (mut closed_ok, mut eofs, mut errors) = (0usize, 0usize, 0usize);
    let mut error_samples = Vec::new();
    for (id, mut task) in tasks {
        let report = match timeout_at(join_deadline, &mut task).await {
            Ok(Ok(report)) => report,
            Ok(Err(error)) => ConnReport {
                error: Some(format!("task failed: {error}")),
                ..ConnReport::default()
            },
            Err(_) => {
                task.abort();
                ConnReport {
                    error: Some("did not finish in time".to_owned()),
                    ..ConnReport::default()
                }
            }
        };
        total.sent += report.sent;
        total.received += report.received;
        total.duplicated += report.duplicated;
        total.reordered += report.reordered;
        total.mismatched += report.mismatched;
        total.lost += report.lost;
        total.stalls += report.stalls;
        closed_ok += usize::from(report.close_ok);
        eofs += usize::from(report.eof_after_close);
        if let Some(error) = report.error {
            errors += 1;
            if error_samples.len() < SAMPLES {
                error_samples.push(format!("connection {id}: {error}"));
            }
        }
    }
    let exchange_secs = (plan.end - plan.start).as_secs_f64();
    let (peak_during, rss_series, server_cpu, client_cpu) =
        timeout(Duration::from_secs(1), sampler)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
    let after_close = server.memory();

    // Stop the slowloris and malformed clients.
    let _ = stop_tx.send(true);
    let side_secs = side_started.elapsed().as_secs_f64();
    let side_deadline = Instant::now() + SIDE_STOP_LIMIT;
    let mut side_stuck = 0;
    let mut slow_per_task = Vec::new();
    for mut task in slow_tasks {
        match timeout_at(side_deadline, &mut task).await {
            Ok(Ok(cutoffs)) => slow_per_task.push(cutoffs),
            _ => {
                task.abort();
                side_stuck += 1;
            }
        }
    }
    let mut bad_per_task = Vec::new();
    for mut task in bad_tasks {
        match timeout_at(side_deadline, &mut task).await {
            Ok(Ok(right)) => bad_per_task.push(right),
            _ => {
                task.abort();
                side_stuck += 1;
            }
        }
    }
    let mut slow = std::mem::take(&mut *slow_report.lock().unwrap());
    slow.per_task = slow_per_task;
    let mut bad = std::mem::take(&mut *bad_report.lock().unwrap());
    bad.per_task = bad_per_task;

    // What the server counted must agree with what the clients counted.
    let metrics = server.metrics().await;
    // The server: still alive, then SIGTERM and exit 0.
    let final_memory = server.memory();
    let alive = server.is_alive();
    let exit = if alive { server.stop().await } else { None };
    let log = std::mem::take(&mut *server.log.lock().unwrap());

    let opened = connect.opened.max(1) as f64;
    let codes = bad
        .by_code()
        .iter()
        .map(|(code, n)| format!("{code}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "soak summary: connections={opened_n}/{conns} messages sent={sent} received={received} \
         lost={lost} duplicated={dup} reordered={reord} mismatched={mism} stalls={stalls} \
         duration={exchange_secs:.1}s msgs/s={rate:.0} handshakes/s={hs:.0} \
         (open in {open_secs:.2}s, retries={retries}) closes_ok={closed_ok} \
         tcp_eof_after_close={eofs} \
         cpu_during_exchange: server={server_cpu:.1}s client={client_cpu:.1}s \
         server_rss: start={rss0:.1}MiB open={rss1:.1}MiB end_of_exchange={rss2:.1}MiB \
         during_exchange(each tenth)=[{series}]MiB \
         after_close={rss3:.1}MiB peak(VmHWM)={hwm:.1}MiB per_conn={per_conn:.1}KiB \
         (VmHWM/conns {hwm_per_conn:.1}KiB) slowloris: cutoffs={cut} (408={c408} eof={ceof} \
         reset={creset}) after {min:.1}-{max:.1}s connect_failures={sfail} over {side_secs:.1}s \
         malformed closes: {codes} right={right} wrong={wrong} failed={bfail} \
         server_stderr_lines={lines} exit={exit:?}",
        opened_n = connect.opened,
        conns = settings.conns,
        sent = total.sent,
        received = total.received,
        lost = total.lost,
        dup = total.duplicated,
        reord = total.reordered,
        mism = total.mismatched,
        stalls = total.stalls,
        rate = total.received as f64 / exchange_secs,
        hs = connect.opened as f64 / connect.elapsed.as_secs_f64(),
        open_secs = connect.elapsed.as_secs_f64(),
        retries = connect.retries,
        rss0 = mib(baseline.rss),
        rss1 = mib(when_open.rss),
        rss2 = mib(peak_during.rss),
        series = rss_series
            .iter()
            .map(|&kib| format!("{:.0}", mib(kib)))
            .collect::<Vec<_>>()
            .join(","),
        rss3 = mib(after_close.rss),
        hwm = mib(final_memory.hwm),
        per_conn = when_open.rss.saturating_sub(baseline.rss) as f64 / opened,
        hwm_per_conn = final_memory.hwm as f64 / opened,
        cut = slow.cutoffs(),
        c408 = slow.cut_408,
        ceof = slow.cut_eof,
        creset = slow.cut_reset,
        min = slow.min_secs,
        max = slow.max_secs,
        sfail = slow.connect_failures,
        right = bad.right,
        wrong = bad.wrong,
        bfail = bad.failed,
        lines = log.lines,
    );
    for (what, samples) in [
        ("connect", &connect.failures),
        ("exchange", &error_samples),
        ("slowloris", &slow.failures),
        ("malformed", &bad.failures),
        ("server stderr", &log.first),
    ] {
        for sample in samples {
            eprintln!("soak: {what}: {sample}");
        }
    }
    if let Some(error) = &slow.connect_error {
        eprintln!("soak: slowloris connect: {error}");
    }

    // The verdict.
    let mut problems = Vec::new();
    if connect.opened != settings.conns {
        problems.push(format!(
            "only {} of {} connections opened ({} failed)",
            connect.opened, settings.conns, connect.failed
        ));
    }
    if total.lost + total.duplicated + total.reordered + total.mismatched > 0 {
        problems.push(format!(
            "echoes: lost={} duplicated={} reordered={} mismatched={}",
            total.lost, total.duplicated, total.reordered, total.mismatched
        ));
    }
    if total.sent != total.received {
        problems.push(format!(
            "{} messages sent, {} echoes received",
            total.sent, total.received
        ));
    }
    if errors > 0 || closed_ok != connect.opened {
        problems.push(format!(
            "{errors} connections failed during the exchange or the close; {closed_ok} of {} \
             got close 1000 back",
            connect.opened
        ));
    }
    if bad.wrong > 0 || bad.failed > 0 {
        problems.push(format!(
            "malformed clients: {} wrong close codes, {} cycles without a close frame",
            bad.wrong, bad.failed
        ));
    }
    if let Some(idle) = bad.per_task.iter().position(|&right| right == 0) {
        problems.push(format!("malformed client {idle} never completed a cycle"));
    }
    if slow.failed > 0 {
        problems.push(format!("slowloris: {} failures", slow.failed));
    }
    // Each slowloris socket had time to be cut off at least once (started within the first
    // second, cut off after the handshake timeout).
    let slowloris_due = HANDSHAKE_TIMEOUT + Duration::from_secs(4);
    if side_secs >= slowloris_due.as_secs_f64()
        && let Some(never) = slow.per_task.iter().position(|&cutoffs| cutoffs == 0)
    {
        problems.push(format!(
            "slowloris socket {never} was never cut off in {side_secs:.1} s"
        ));
    }
    if side_stuck > 0 {
        problems.push(format!(
            "{side_stuck} slowloris or malformed clients did not stop within {SIDE_STOP_LIMIT:?}"
        ));
    }
    match &metrics {
        Ok(metrics) => {
            let get = |name: &str| metrics.get(name).copied().unwrap_or(0);
            println!(
                "soak server metrics: received={} sent={} accepted={} open={} closes_1000={} \
                 closes_1002={} closes_1007={} rejected_timeout={}",
                get("wsworker_messages_received_total"),
                get("wsworker_messages_sent_total"),
                get("wsworker_connections_accepted_total"),
                get("wsworker_connections_open"),
                get("wsworker_closes_total{code=\"1000\"}"),
                get("wsworker_closes_total{code=\"1002\"}"),
                get("wsworker_closes_total{code=\"1007\"}"),
                get("wsworker_handshake_rejections_total{reason=\"timeout\"}"),
            );
            // Only the soak connections send complete messages; the malformed clients'
            // frames fail before they make one.
            if get("wsworker_messages_received_total") != total.sent
                || get("wsworker_messages_sent_total") != total.received
            {
                problems.push(format!(
                    "the server counted {} messages in and {} out; the clients sent {} and \
                     received {}",
                    get("wsworker_messages_received_total"),
                    get("wsworker_messages_sent_total"),
                    total.sent,
                    total.received
                ));
            }
            if get("wsworker_closes_total{code=\"1000\"}") < closed_ok as u64 {
                problems.push(format!(
                    "the server counted {} closes with 1000, the clients {closed_ok}",
                    get("wsworker_closes_total{code=\"1000\"}")
                ));
            }
            if get("wsworker_handshake_rejections_total{reason=\"timeout\"}") < slow.cut_408 as u64
            {
                problems.push(format!(
                    "the server counted {} handshake timeouts, the slowloris sockets saw {} 408s",
                    get("wsworker_handshake_rejections_total{reason=\"timeout\"}"),
                    slow.cut_408
                ));
            }
        }
        Err(error) => problems.push(format!("GET /metrics failed: {error}")),
    }
    if log.panicked {
        problems.push("the server's stderr reports a panic".to_owned());
    }
    if !alive {
        problems.push("the server process was not alive at the end".to_owned());
    } else if exit != Some(0) {
        problems.push(format!(
            "the server's exit after SIGTERM: {exit:?} (expected 0)"
        ));
    }
    assert!(
        problems.is_empty(),
        "soak failed:\n  {}",
        problems.join("\n  ")
    );
}

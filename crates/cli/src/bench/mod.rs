//! `wsworker bench URL`: a load generator for WebSocket echo servers (and, with `--fanout`,
//! for a chat server's broadcast: see [`fanout`]).
//!
//! It opens `--conns` connections (at most [`MAX_CONCURRENT_HANDSHAKES`] handshakes at a
//! time, or `--connect-rate` per second), then, once every one has been tried, runs the
//! measured window of `--duration` seconds on all of them at once: closed loop (each
//! connection keeps `--inflight` messages outstanding) or paced (`--rate` messages per
//! second in all). Every echo is compared with what was sent. After the window, connections
//! stop sending, wait for their last echoes and close (1000); then the report: connections,
//! handshakes per second, echoes per second, payload MB/s, round-trip percentiles, errors
//! by kind, and the generator's own CPU time per message. `--idle N` only holds N
//! connections open through the window, to measure handshakes and idle connections; with
//! `--deflate` each of them first echoes one compressible message through
//! permessage-deflate, to measure what compression leaves behind in a server (see
//! [`deflate`]).
//!
//! The client is built to be cheap, so that one core of it can saturate a fast server: a
//! current-thread runtime by default, the handshake from `wsworker_proto`, and raw TCP after
//! it (see [`conn`]); permessage-deflate is offered only with `--deflate`.
//!
//! - [`conn`]: one connection's handshake and traffic loop;
//! - `deflate`: `--deflate`, the compressed echo before an idle connection idles;
//! - [`frames`]: the frames sent and the parser of the replies;
//! - [`stats`]: the shared counts and histograms;
//! - [`report`]: the figures, as JSON or text;
//! - [`cpu`]: the process's CPU time;
//! - [`fanout`]: `--fanout`, broadcast through a chat server's room, every delivery checked
//!   for order;
//! - `h2`: `--http2`, the echo run over WebSockets on HTTP/2 connections, with the
//!   library's client (`--streams` WebSockets per HTTP/2 connection).

mod conn;
mod cpu;
#[cfg(feature = "deflate")]
mod deflate;
mod fanout;
mod frames;
#[cfg(feature = "tls")]
mod h2;
mod report;
mod stats;

use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, ToSocketAddrs as _};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until, timeout};
use wsworker_proto::handshake::ClientHandshake;

use conn::{CLOSE_TIMEOUT, DRAIN_TIMEOUT, Plan, Start};
use report::Report;
use stats::{ErrorKind, Stats};

/// Handshakes in progress at once: enough to open thousands of connections quickly, few
/// enough not to overflow the server's accept queue (its listen backlog).
const MAX_CONCURRENT_HANDSHAKES: usize = 64;

/// Source addresses used by default for a target on 127.0.0.0/8.
const DEFAULT_SOURCE_IPS: u8 = 8;

/// Messages in flight per connection when `--inflight` is not given.
const DEFAULT_INFLIGHT: u32 = 16;

/// Exit status for arguments that parse but cannot be used (as clap's own usage errors).
const USAGE_ERROR: u8 = 2;

/// Payload bytes per message unless `--size` says otherwise.
const DEFAULT_SIZE: usize = 20;

/// Arguments of `wsworker bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The echo server (with --fanout, the chat server): ws://HOST:PORT/PATH (wss:// only
    /// with --http2: the raw-socket bench measures the server, not TLS).
    #[arg(value_parser = parse_url)]
    url: ClientHandshake,
    /// Connections to open (with --fanout: subscribers, besides the publisher).
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    conns: u32,
    /// Payload bytes per message [default: 20; with --deflate, 1024].
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(0..=64 << 20))]
    size: Option<u32>,
    /// Text messages (ASCII letters) [the default].
    #[arg(long, conflicts_with = "binary")]
    text: bool,
    /// Binary messages (random bytes).
    #[arg(long)]
    binary: bool,
    /// Messages in flight per connection (default 16; with --rate: at most). With --fanout
    /// (instead of --rate): closed loop, the publisher keeps K messages outstanding, each
    /// until every subscriber has it.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=65_536))]
    inflight: Option<u32>,
    /// Seconds of measured traffic (with --fanout: of publishing; fractions allowed).
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = positive)]
    duration: f64,
    /// Messages per second over all connections, evenly paced (latency under a given load);
    /// without it each connection keeps --inflight messages outstanding (closed loop). With
    /// --fanout: the publisher's messages per second (default 100, at most 1,000,000;
    /// not with --inflight).
    #[arg(long, value_name = "MSGS_PER_S", value_parser = positive)]
    rate: Option<f64>,
    /// Handshakes per second at most while connecting (default: as fast as the server
    /// answers, with at most 64 in progress).
    #[arg(long, value_name = "HANDSHAKES_PER_S", value_parser = positive)]
    connect_rate: Option<f64>,
    /// Open N connections and hold them without traffic for --duration; report how fast they
    /// opened.
    #[arg(long, value_name = "N", conflicts_with_all = ["conns", "text", "binary", "inflight", "rate"],
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    idle: Option<u32>,
    /// With --idle: offer permessage-deflate as the library's client does
    /// (`permessage-deflate; client_max_window_bits`) and, before holding a connection idle,
    /// echo one text message of --size bytes (default 1024: JSON chat lines, as compressible
    /// as a chat's traffic) through the compression the server agreed to; the echo is
    /// checked, and a server that does not agree fails the connection. The report adds the
    /// compression ratio of the server's replies (their payload bytes on the wire over the
    /// messages' bytes). With --fanout: every connection offers permessage-deflate as the
    /// library's client does and fails unless the server agrees; the subscribers inflate
    /// what comes compressed before they check it, and the messages are JSON chat lines
    /// (compressible as a chat's traffic) after their head rather than random letters.
    #[cfg(feature = "deflate")]
    #[arg(long)]
    deflate: bool,
    /// Bind connections to 127.0.0.1 … 127.0.0.N in turn, so that more connections fit the
    /// ephemeral ports (default: 8 for a target on 127.0.0.0/8, else the kernel's choice).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=254))]
    source_ips: Option<u8>,
    /// Runtime worker threads (1: a single-thread runtime, one core for the load).
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// Fan-out through a chat server (`wsworker serve --mode chat`): --conns subscribers and
    /// one publisher in --room; the publisher sends --rate text messages per second (default
    /// 100), or keeps --inflight K outstanding until every subscriber has them (closed
    /// loop), of --size bytes (at least 20) carrying a sequence number and a send time;
    /// every subscriber checks each delivery's order and records its latency.
    #[arg(long, conflicts_with_all = ["idle", "binary", "connect_rate"])]
    fanout: bool,
    /// With --fanout: the room, sent as `?room=NAME` (default: bench).
    #[arg(long, value_name = "NAME", requires = "fanout")]
    room: Option<String>,
    /// With --fanout: another node of the same cluster (repeat for more). The subscribers
    /// are spread round-robin over URL and every --node URL (subscriber i on the (i mod
    /// n)-th); the publisher is on URL. The report counts subscribers and deliveries per
    /// node.
    #[arg(long = "node", value_name = "URL", requires = "fanout", value_parser = parse_plain_url)]
    nodes: Vec<ClientHandshake>,
    /// Take masked frames from the server (unmasked to check them): for a server that sends
    /// the client's frames back byte for byte, as bench/run's raw TCP ceiling does (RFC 6455
    /// forbids a WebSocket server to mask; without this flag a masked frame is an error).
    #[arg(long, conflicts_with_all = ["fanout"])]
    masked_echo: bool,
    /// Print the report as one JSON object on stdout: messages are the echoes received in
    /// the measured window (duration_s), mb_per_s their payload bytes per second one way
    /// (in millions), rtt_us round trips in microseconds, client_cpu_s this process's CPU
    /// time in the window; null where a figure does not apply.
    /// With --fanout: rate or inflight (the other null), published, deliveries (received by the subscribers, expected_deliveries
    /// = published × subscribers), deliveries_per_s over delivery_span_s (the window's
    /// start to the last delivery, at least duration_s), latency_us
    /// (send to receive), errors by kind (gap, duplicate, reorder, missing too) and
    /// client_cpu_ns_per_delivery; nodes: per URL (URL first, then each --node), its
    /// subscribers and their deliveries. deflate: null, or with --deflate the offer, the
    /// message size, plain_bytes (of the messages echoed), wire_bytes (the payload bytes of
    /// the server's replies on the wire) and ratio (wire over plain).
    #[arg(long)]
    json: bool,
    /// Open the WebSockets over HTTP/2 (RFC 8441), with the library's client rather than raw
    /// sockets: ws:// is cleartext HTTP/2 (prior knowledge, as axum serves it), wss:// TLS
    /// with ALPN h2 (as `serve --http2` offers; --ca for a private CA). The --conns
    /// WebSockets share ⌈conns / --streams⌉ HTTP/2 connections. Closed loop only.
    #[cfg(feature = "tls")]
    #[arg(long, conflicts_with_all = ["fanout", "rate", "connect_rate", "idle", "source_ips", "masked_echo"])]
    http2: bool,
    /// With --http2: WebSockets per HTTP/2 connection (default 100).
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "N", requires = "http2",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    streams: Option<u32>,
    /// With --http2 and wss://: trust the CA certificates in this PEM file too (repeatable),
    /// besides the built-in web roots.
    #[cfg(feature = "tls")]
    #[arg(long = "ca", value_name = "FILE", requires = "http2")]
    ca: Vec<std::path::PathBuf>,
}

/// A `ws://` or `wss://` URL, checked as the handshake will use it (`wss://` only with
/// `--http2`: checked by [`run`]).
fn parse_url(url: &str) -> Result<ClientHandshake, String> {
    ClientHandshake::new(url).map_err(|error| error.to_string())
}

/// A `ws://` URL, checked as the handshake will use it.
fn parse_plain_url(url: &str) -> Result<ClientHandshake, String> {
    let handshake = parse_url(url)?;
    if handshake.is_tls() {
        return Err(
            "wss:// is not supported by bench (it measures the server on plain TCP)".to_owned(),
        );
    }
    Ok(handshake)
}

/// The first address of `url`'s host and port, or why there is none.
fn resolve(url: &ClientHandshake) -> Result<std::net::SocketAddr, String> {
    let host = url.host();
    match (host, url.port()).to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| format!("{host} has no address")),
        Err(error) => Err(format!("cannot resolve {host}: {error}")),
    }
}

/// A finite number above zero.
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        Ok(_) => Err("must be a number above 0".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

/// Runs the bench: 0 when it completed without any error, 1 otherwise, 2 for arguments
/// that cannot be used with this target.
pub(crate) fn run(args: BenchArgs) -> Result<ExitCode, wsworker::Error> {
    #[cfg(feature = "tls")]
    let http2 = args.http2;
    #[cfg(not(feature = "tls"))]
    let http2 = false;
    if args.url.is_tls() && !http2 {
        eprintln!(
            "wsworker bench: wss:// needs --http2 (the raw-socket bench measures the server on \
             plain TCP)"
        );
        return Ok(ExitCode::from(USAGE_ERROR));
    }
    // Resolved before the runtime starts: no blocking thread comes and goes during the run.
    let mut targets = Vec::with_capacity(1 + args.nodes.len());
    for url in std::iter::once(&args.url).chain(&args.nodes) {
        match resolve(url) {
            Ok(target) => targets.push(target),
            Err(message) => return Ok(fail_line(&message)),
        }
    }
    let target = targets[0];
    let not_loopback_v4 = targets
        .iter()
        .find(|target| !matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback()));
    let source_ips = match (args.source_ips, not_loopback_v4) {
        (Some(n), Some(other)) if n > 1 => {
            eprintln!(
                "wsworker bench: --source-ips needs a target on 127.0.0.0/8, not {}",
                other.ip()
            );
            return Ok(ExitCode::from(USAGE_ERROR));
        }
        (Some(n), _) => n,
        (None, None) => DEFAULT_SOURCE_IPS,
        (None, Some(_)) => 1,
    };
    if args.fanout {
        return run_fanout(args, &targets, source_ips);
    }
    let idle = args.idle.is_some();
    #[cfg(feature = "deflate")]
    let deflate = args.deflate.then(|| {
        deflate::DeflatePlan::new(
            args.size
                .map_or(deflate::DEFAULT_SIZE, |size| size as usize),
        )
    });
    #[cfg(not(feature = "deflate"))]
    let deflate: Option<()> = None;
    if deflate.is_some() && !idle {
        eprintln!("wsworker bench: --deflate needs --idle or --fanout");
        return Ok(ExitCode::from(USAGE_ERROR));
    }
    if idle && deflate.is_none() && args.size.is_some() {
        eprintln!("wsworker bench: --idle sends no messages: --size needs --deflate with it");
        return Ok(ExitCode::from(USAGE_ERROR));
    }
    #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
    let mut handshake = args.url.clone();
    #[cfg(feature = "deflate")]
    if let Some(deflate) = &deflate {
        handshake = match handshake.with_extensions(&deflate.config.offer()) {
            Ok(handshake) => handshake,
            Err(error) => return Ok(fail_line(&error.to_string())),
        };
    }
    #[cfg(feature = "deflate")]
    let deflate_run = deflate.as_ref().map(|plan| report::DeflateRun {
        offer: plan.config.offer(),
        size: plan.size,
    });
    #[cfg(not(feature = "deflate"))]
    let deflate_run = None;
    let conns = args.idle.unwrap_or(args.conns) as usize;
    let plan = Arc::new(Plan {
        handshake,
        target,
        source_ips,
        size: if idle {
            0
        } else {
            args.size.map_or(DEFAULT_SIZE, |size| size as usize)
        },
        binary: args.binary,
        inflight: if idle {
            0
        } else {
            args.inflight.unwrap_or(DEFAULT_INFLIGHT) as usize
        },
        conns,
        masked_echo: args.masked_echo,
        #[cfg(feature = "deflate")]
        deflate,
        #[cfg(feature = "deflate")]
        inflate: None,
    });
    let settings = Settings {
        duration: Duration::from_secs_f64(args.duration),
        rate: args.rate,
        connect_rate: args.connect_rate,
        shards: usize::from(args.threads),
    };
    #[cfg(feature = "tls")]
    let http2 = args.http2.then(|| {
        let streams = args.streams.unwrap_or(h2::DEFAULT_STREAMS) as usize;
        Arc::new(h2::Http2Plan {
            url: args.url.url().to_owned(),
            ca: args.ca.clone(),
            conns,
            streams,
            size: plan.size,
            binary: plan.binary,
            inflight: plan.inflight,
        })
    });
    #[cfg(not(feature = "tls"))]
    let http2: Option<()> = None;
    // Over HTTP/2, a descriptor per HTTP/2 connection.
    raise_open_file_limit(match &http2 {
        #[cfg(feature = "tls")]
        Some(h2) => conns.div_ceil(h2.streams),
        _ => conns,
    });
    let runtime = runtime(args.threads)?;
    let measured = match http2 {
        #[cfg(feature = "tls")]
        Some(h2) => {
            let dial = |dialed, start, stats| h2::dial_all(h2, dialed, start, stats);
            runtime.block_on(drive(conns, settings, dial))
        }
        _ => {
            let dial = |dialed, start, stats| {
                dial_all(
                    Arc::clone(&plan),
                    settings.connect_rate,
                    dialed,
                    start,
                    stats,
                )
            };
            runtime.block_on(drive(conns, settings, dial))
        }
    };
    drop(runtime);
    let report = Report {
        url: args.url.url().to_owned(),
        conns,
        idle,
        deflate: deflate_run,
        size: plan.size,
        binary: plan.binary,
        inflight: plan.inflight,
        rate: args.rate,
        window_s: measured.window_s,
        opened: measured.opened,
        failed: measured.failed,
        connect_s: measured.connect_s,
        counts: measured.stats.merged(),
        cpu_ns: measured.cpu_ns,
    };
    print_report(
        args.json,
        || report.to_json(),
        || report.to_text(),
        &report.error_lines(),
    );
    if report.opened == 0 {
        eprintln!(
            "wsworker bench: no connection to {} could be opened",
            report.url
        );
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `--fanout` run: 0 when every delivery came, in order, without any error; 1
/// otherwise; 2 for arguments that cannot be used.
fn run_fanout(
    args: BenchArgs,
    targets: &[std::net::SocketAddr],
    source_ips: u8,
) -> Result<ExitCode, wsworker::Error> {
    let usage = |message: &str| {
        eprintln!("wsworker bench: {message}");
        Ok(ExitCode::from(USAGE_ERROR))
    };
    let room = args.room.unwrap_or_else(|| fanout::DEFAULT_ROOM.to_owned());
    let pace = match (args.rate, args.inflight) {
        (Some(_), Some(_)) => {
            return usage("--fanout takes --rate (paced) or --inflight (closed loop), not both");
        }
        (Some(rate), None) => fanout::Pace::Rate(rate),
        (None, Some(inflight)) => fanout::Pace::Inflight(inflight),
        (None, None) => fanout::Pace::Rate(fanout::DEFAULT_RATE),
    };
    let urls: Vec<_> = std::iter::once(&args.url)
        .chain(&args.nodes)
        .map(|url| url.url().to_owned())
        .collect();
    #[cfg(feature = "deflate")]
    let deflate = args
        .deflate
        .then(wsworker_proto::deflate::DeflateConfig::default);
    #[cfg(not(feature = "deflate"))]
    let deflate: Option<()> = None;
    let plan = fanout::FanoutPlan {
        urls,
        room,
        conns: args.conns as usize,
        size: args.size.map_or(DEFAULT_SIZE, |size| size as usize),
        pace,
        duration: Duration::from_secs_f64(args.duration),
        deflate: deflate.is_some(),
    };
    if plan.size < fanout::MIN_SIZE {
        return usage(&format!(
            "--fanout needs --size {} or more (a message carries a sequence number and a time)",
            fanout::MIN_SIZE
        ));
    }
    if plan.room.is_empty() {
        return usage("--room must not be empty");
    }
    if matches!(pace, fanout::Pace::Rate(rate) if rate > fanout::MAX_RATE) {
        return usage(&format!(
            "--fanout takes --rate {} at most",
            fanout::MAX_RATE
        ));
    }
    if plan.limit().is_none() {
        return usage("--rate × --duration is more messages than a run can number (2^32)");
    }
    // One connection plan per node: its room's URL and its address.
    let mut nodes = Vec::with_capacity(plan.urls.len());
    for (url, &target) in plan.urls.iter().zip(targets) {
        #[cfg_attr(not(feature = "deflate"), allow(unused_mut))]
        let mut handshake = match ClientHandshake::new(&fanout::room_url(url, &plan.room)) {
            Ok(handshake) => handshake,
            Err(error) => return usage(&format!("the room's URL: {error}")),
        };
        #[cfg(feature = "deflate")]
        if let Some(config) = &deflate {
            handshake = match handshake.with_extensions(&config.offer()) {
                Ok(handshake) => handshake,
                Err(error) => return Ok(fail_line(&error.to_string())),
            };
        }
        nodes.push(Arc::new(Plan {
            handshake,
            target,
            source_ips,
            size: plan.size,
            binary: false,
            inflight: 0,
            // The subscribers and the publisher.
            conns: plan.conns + 1,
            masked_echo: false,
            #[cfg(feature = "deflate")]
            deflate: None,
            #[cfg(feature = "deflate")]
            inflate: deflate.clone(),
        }));
    }
    raise_open_file_limit(plan.conns + 1);
    let runtime = runtime(args.threads)?;
    let report = runtime.block_on(fanout::drive(plan, nodes, usize::from(args.threads)));
    drop(runtime);
    print_report(
        args.json,
        || report.to_json(),
        || report.to_text(),
        &report.error_lines(),
    );
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The runtime the connections run on: `threads` worker threads, or the current thread.
fn runtime(threads: u16) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(threads))
            .enable_all()
            .build()
    }
}

/// Prints the report on stdout (JSON or text) and its error lines on stderr. A reader that
/// went away must not turn into a panic: the exit status still tells.
fn print_report(
    json: bool,
    to_json: impl FnOnce() -> String,
    to_text: impl FnOnce() -> String,
    errors: &[String],
) {
    let mut stdout = std::io::stdout().lock();
    let _ = if json {
        writeln!(stdout, "{}", to_json())
    } else {
        write!(stdout, "{}", to_text())
    };
    let _ = stdout.flush();
    drop(stdout);
    for line in errors {
        eprintln!("wsworker bench: {line}");
    }
}

/// Prints `message` as the one line of a run that could not start; exit status 1.
fn fail_line(message: &str) -> ExitCode {
    eprintln!("wsworker bench: {message}");
    ExitCode::FAILURE
}

/// Raises the soft limit on open files towards what `conns` connections need, as far as the
/// hard limit allows, and warns when that is not enough.
fn raise_open_file_limit(conns: usize) {
    let needed = conns as u64 + 64;
    match rlimit::increase_nofile_limit(needed) {
        Ok(limit) if limit < needed => eprintln!(
            "wsworker bench: the open-file limit is {limit}: not all of {conns} connections \
             can open (raise the hard limit, as with `ulimit -Hn`)"
        ),
        _ => {}
    }
}

/// The parts of the arguments the driver needs.
#[derive(Debug, Clone, Copy)]
struct Settings {
    duration: Duration,
    rate: Option<f64>,
    connect_rate: Option<f64>,
    shards: usize,
}

/// What [`drive`] measured.
struct Measured {
    stats: Arc<Stats>,
    opened: u64,
    failed: u64,
    connect_s: f64,
    window_s: f64,
    cpu_ns: Option<u64>,
}

/// The run: connect phase, window, drain and close, of `conns` connections that `dial`
/// starts (raw sockets, or WebSockets over HTTP/2).
async fn drive<D, F>(conns: usize, settings: Settings, dial: D) -> Measured
where
    D: FnOnce(mpsc::UnboundedSender<bool>, watch::Receiver<Option<Start>>, Arc<Stats>) -> F,
    F: Future<Output = JoinSet<()>> + Send + 'static,
{
    let stats = Arc::new(Stats::new(settings.shards));
    let progress = Progress {
        enabled: std::io::stderr().is_terminal(),
    };
    let mut ticks = interval_at(
        Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);

    let (dialed_tx, mut dialed) = mpsc::unbounded_channel();
    let (start_tx, start_rx) = watch::channel(None);
    let connect_began = Instant::now();
    let dialer = tokio::spawn(dial(dialed_tx, start_rx, Arc::clone(&stats)));
    let (mut opened, mut failed) = (0u64, 0u64);
    while opened + failed < conns as u64 {
        tokio::select! {
            outcome = dialed.recv() => match outcome {
                Some(true) => opened += 1,
                Some(false) => failed += 1,
                None => break,
            },
            _ = ticks.tick() => progress.show(&format!(
                "connecting: {opened} of {conns} open, {failed} failed"
            )),
        }
    }
    let connect_s = connect_began.elapsed().as_secs_f64();
    let mut tasks = dialer.await.unwrap_or_default();

    let mut measured = Measured {
        stats: Arc::clone(&stats),
        opened,
        failed,
        connect_s,
        window_s: 0.0,
        cpu_ns: None,
    };
    if opened > 0 {
        let cpu_before = cpu::process_cpu_ns();
        let at = Instant::now();
        let stop = at + settings.duration;
        start_tx.send_replace(Some(Start {
            at,
            stop,
            interval: settings.rate.map(|rate| opened as f64 / rate),
        }));
        let (mut last_messages, mut last_tick) = (0, at);
        loop {
            tokio::select! {
                () = sleep_until(stop) => break,
                now = ticks.tick() => {
                    let (messages, errors) = stats.progress();
                    let rate = (messages - last_messages) as f64
                        / now.duration_since(last_tick).as_secs_f64().max(1e-3);
                    (last_messages, last_tick) = (messages, now);
                    progress.show(&format!(
                        "{:.0} s: {rate:.0} msgs/s, {messages} messages, {errors} errors",
                        (now - at).as_secs_f64()
                    ));
                }
            }
        }
        let cpu_after = cpu::process_cpu_ns();
        measured.window_s = stop.duration_since(at).as_secs_f64();
        measured.cpu_ns = cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after.saturating_sub(before));
        progress.show("draining and closing");
    }
    // Dropping the sender calls the run off for connections that never saw a window.
    drop(start_tx);
    // Each connection bounds its own drain and close; this only guards against a bug.
    let limit = DRAIN_TIMEOUT + CLOSE_TIMEOUT + Duration::from_secs(5);
    if timeout(limit, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        for _ in 0..tasks.len() {
            stats.error(0, ErrorKind::Timeout, "a connection did not finish closing");
        }
        tasks.abort_all();
    }
    progress.clear();
    measured
}

/// Starts every connection: paced by `connect_rate` if given, and never more than
/// [`MAX_CONCURRENT_HANDSHAKES`] handshakes at once. Returns the connections' tasks.
async fn dial_all(
    plan: Arc<Plan>,
    connect_rate: Option<f64>,
    dialed: mpsc::UnboundedSender<bool>,
    start: watch::Receiver<Option<Start>>,
    stats: Arc<Stats>,
) -> JoinSet<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    let began = Instant::now();
    let mut tasks = JoinSet::new();
    for index in 0..plan.conns {
        if let Some(rate) = connect_rate {
            sleep_until(began + Duration::from_secs_f64(index as f64 / rate)).await;
        }
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            break;
        };
        tasks.spawn(conn::run(
            index,
            Arc::clone(&plan),
            permit,
            dialed.clone(),
            start.clone(),
            Arc::clone(&stats),
        ));
    }
    tasks
}

/// The live progress line on stderr: one line rewritten in place, once a second, and only
/// when stderr is a terminal (nothing in logs and pipes).
struct Progress {
    enabled: bool,
}

impl Progress {
    fn show(&self, text: &str) {
        if self.enabled {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K{text}");
            let _ = stderr.flush();
        }
    }

    fn clear(&self) {
        self.show("");
    }
}

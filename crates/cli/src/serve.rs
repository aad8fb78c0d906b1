//! `wsworker serve`: the hello server (or echo, or chat) with the demo page.

use std::process::ExitCode;

use std::io::Write as _;
use std::time::Duration;

use clap::{Args, ValueEnum};
use wsworker::server::{Keepalive, OverflowPolicy};
use wsworker::{Handshake, HttpResponse, Hub, Message, MessageRef, Metrics, Worker};
use wsworker_redis::{RedisConfig, RedisEngine};

/// The demo page, written with the browser API as the tutorial shows it.
const DEMO_PAGE: &str = include_str!("../../../web/index.html");
/// The browser's resuming WebSocket (`wsworker.resume.v1`), which the demo page's chat view
/// loads from `/resume.js`.
const RESUME_JS: &str = include_str!("../../../web/resume.js");

/// Arguments of `wsworker serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Where to listen, written as in Workerman: websocket://HOST:PORT (an IPv6 host in
    /// brackets, as `websocket://[::1]:9001`).
    /// websocket+tls://HOST:PORT for TLS (then --tls-cert and --tls-key are needed).
    #[arg(default_value = "websocket://0.0.0.0:2346")]
    address: String,
    /// Serve TLS (https and wss) with this certificate chain (PEM, leaf first).
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[cfg(feature = "tls")]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Serve HTTP/2 too, beside HTTP/1.1 on the same port: over TLS (ALPN h2), where
    /// browsers then load the page and open the WebSocket inside one HTTP/2 connection
    /// (RFC 8441), and in cleartext to clients that open with the HTTP/2 preface (prior
    /// knowledge, h2c).
    #[cfg(feature = "tls")]
    #[arg(long)]
    http2: bool,
    /// Worker threads (default: one per CPU core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    count: Option<u16>,
    /// What to answer: hello (`hello <message>`), echo (each message back as it came), chat
    /// (rooms: `?room=NAME` joins one, `?user=NAME` names the user; a message goes to the
    /// sender's room, or to everyone without one; `@NAME text` only to user NAME).
    #[arg(long, value_enum, default_value_t = Mode::Hello)]
    mode: Mode,
    /// The largest message accepted, in bytes (close 1009 above it).
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Refuse permessage-deflate (accepted by default: messages of 32 bytes or more are
    /// compressed when the client offers it, as browsers do).
    #[cfg(feature = "deflate")]
    #[arg(long)]
    no_deflate: bool,
    /// Keep the server's permessage-deflate context between messages (answer without
    /// `server_no_context_takeover`): smaller replies when messages look alike, for a
    /// compressor held by every connection that has sent a compressed message.
    #[cfg(feature = "deflate")]
    #[arg(long, conflicts_with = "no_deflate")]
    deflate_context_takeover: bool,
    /// At most this many open connections per worker; more get 503 (default: no limit).
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// At most this many connections per worker in their opening handshake at once; more
    /// are closed as they are accepted.
    #[arg(long, value_name = "N",
          default_value_t = wsworker::server::DEFAULT_MAX_PENDING_HANDSHAKES)]
    max_pending_handshakes: usize,
    /// Accept WebSocket handshakes only from this page origin (as `https://example.com`);
    /// repeat for several. Others get 403; requests without Origin (not from a browser)
    /// are accepted.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Ping a client after this many seconds of silence (0: no keepalive).
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    keepalive: u64,
    /// Drop a client that has not answered the keepalive ping after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    keepalive_timeout: u64,
    /// On SIGINT/SIGTERM, wait this many seconds at most for the clients to complete their
    /// closing handshakes (default: 7, the close timeout plus 2); those left are dropped
    /// (1006).
    #[arg(long, value_name = "SECONDS")]
    shutdown_timeout: Option<u64>,
    /// What to do with a message that would take a client's send buffer over 16 MiB:
    /// close the connection with 1008, or drop the message (and count it).
    #[arg(long, value_enum, default_value_t = Overflow::Close)]
    overflow: Overflow,
    /// Serve the server's counters in the Prometheus text format at
    /// http://HOST:PORT/metrics (as `127.0.0.1:9090`).
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Share the Hub with every node using this Redis (`redis://HOST:PORT`): with `--mode
    /// chat`, rooms, users and everyone span the nodes, each room in one order everywhere.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// This node's id among the nodes sharing `--redis`, 1..=65535 (default: random).
    #[arg(long, value_name = "ID", requires = "redis",
          value_parser = clap::value_parser!(u16).range(1..))]
    node_id: Option<u16>,
    /// With `--redis`: how long, in seconds, a client that offers `wsworker.resume.v1` may
    /// take to come back (to any node) and resume its session with exactly the messages it
    /// missed; 0 turns resume off.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 120,
        requires = "redis"
    )]
    resume_window: u64,
    /// With `--redis`: messages kept per room, user and everyone, for filling gaps
    /// between nodes and for resume.
    #[arg(long, value_name = "N", default_value_t = 1_000, requires = "redis",
          value_parser = clap::value_parser!(u64).range(1..))]
    history_len: u64,
    /// With `--redis`: the most messages replayed per room to a client that resumes; past
    /// it the room fails with `too_far`.
    #[arg(long, value_name = "N", default_value_t = 1_000, requires = "redis")]
    max_replay: usize,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Overflow {
    Close,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Hello,
    Echo,
    Chat,
}

pub(crate) fn run(args: ServeArgs) -> Result<ExitCode, Box<dyn std::error::Error + Send + Sync>> {
    crate::init_logging(args.log_level);
    let count = args.count.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        usize::from,
    );
    let mut worker = Worker::new(&args.address)?;
    #[cfg(feature = "tls")]
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        worker.tls_pem(cert, key)?;
    }
    #[cfg(feature = "tls")]
    worker.http2(args.http2);
    worker
        .count(count)
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_message_size);
    #[cfg(feature = "deflate")]
    if args.no_deflate {
        worker.permessage_deflate(None);
    } else if args.deflate_context_takeover {
        worker.permessage_deflate(Some(wsworker::proto::deflate::DeflateConfig::default()));
    }
    if let Some(max) = args.max_connections {
        worker.max_connections(max);
    }
    worker.max_pending_handshakes(args.max_pending_handshakes);
    if !args.allow_origins.is_empty() {
        worker.allowed_origins(&args.allow_origins);
    }
    worker.keepalive((args.keepalive > 0).then(|| {
        Keepalive::new(
            Duration::from_secs(args.keepalive),
            Duration::from_secs(args.keepalive_timeout),
        )
    }));
    if let Some(seconds) = args.shutdown_timeout {
        worker.shutdown_timeout(Duration::from_secs(seconds));
    }
    if let Some(url) = &args.redis {
        let mut config = RedisConfig::new(url.as_str()).history_len(args.history_len.try_into()?);
        if let Some(id) = args.node_id {
            config = config.node_id(id);
        }
        // Its own words, not a wsworker::Error's ("callback failed: …"); the URL without
        // its password.
        let engine = RedisEngine::start(config)
            .map_err(|error| format!("cannot use Redis at {}: {error}", without_password(url)))?;
        worker.engine(engine)?;
        if args.resume_window > 0 {
            worker.resume(
                wsworker::resume::ResumeConfig::default()
                    .window(Duration::from_secs(args.resume_window))
                    .max_replay(args.max_replay),
            )?;
        }
    }
    worker.overflow_policy(match args.overflow {
        Overflow::Close => OverflowPolicy::Close,
        Overflow::Drop => OverflowPolicy::DropNew,
    });
    let metrics = worker.metrics();
    match args.mode {
        Mode::Hello => {
            worker.on_message_ref(|conn, msg| {
                conn.send(hello(msg))?;
                Ok(())
            });
        }
        Mode::Echo => {
            worker.on_message_ref(|conn, msg| {
                conn.send(msg)?;
                Ok(())
            });
        }
        Mode::Chat => chat(&mut worker),
    }
    worker.on_http(|request| match request.path() {
        "/" | "/index.html" => HttpResponse::html(DEMO_PAGE),
        "/resume.js" => HttpResponse::javascript(RESUME_JS),
        _ => HttpResponse::not_found(),
    });
    // Caught before the server is announced: a SIGTERM right after the announcement must
    // still stop it gracefully.
    let signal = wsworker::StopSignal::install()?;
    let metrics_server = match args.metrics {
        Some(addr) => Some(metrics_endpoint(addr, metrics, worker.hub())?.start()?),
        None => None,
    };
    let hub = worker.hub();
    let server = match worker.start() {
        Ok(server) => server,
        Err(error) => {
            if let Some(endpoint) = metrics_server {
                endpoint.shutdown();
            }
            return Err(error.into());
        }
    };
    let addr = server.local_addr();
    let page_host = if addr.ip().is_unspecified() {
        if addr.is_ipv6() {
            "[::1]".to_owned()
        } else {
            "127.0.0.1".to_owned()
        }
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let mode = args
        .mode
        .to_possible_value()
        .map(|v| v.get_name().to_owned());
    let (ws, http) = if server.is_tls() {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    // Announced without println!: a reader that went away must not make the server panic.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "wsworker serving {mode} on {ws}://{addr} with {count} worker{s}",
        mode = mode.unwrap_or_default(),
        s = if count == 1 { "" } else { "s" },
    );
    if let Some(url) = &args.redis {
        let _ = writeln!(
            out,
            "node {} sharing its Hub over {}",
            hub.node_id(),
            without_password(url)
        );
        if args.resume_window > 0 {
            let _ = writeln!(
                out,
                "clients that offer wsworker.resume.v1 resume within {} s, on any node",
                args.resume_window
            );
        }
    }
    if let Some(endpoint) = &metrics_server {
        let _ = writeln!(out, "metrics at http://{}/metrics", endpoint.local_addr());
    }
    let _ = writeln!(
        out,
        "open {http}://{page_host}:{port}/ in a browser for the demo page",
        port = addr.port()
    );
    let _ = out.flush();
    drop(out);
    let stopped = server.stop_on(signal);
    if let Some(endpoint) = metrics_server {
        endpoint.shutdown();
    }
    stopped?;
    Ok(ExitCode::SUCCESS)
}

/// `url` with the password of its user info (`redis://user:PASSWORD@host`) replaced by
/// `***`, to be printed.
fn without_password(url: &str) -> std::borrow::Cow<'_, str> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let authority_end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else {
        return url.into();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}***{}", &url[..=start + colon], &url[at..]).into(),
        None => url.into(),
    }
}

/// A one-worker HTTP server that answers `GET /metrics` with `metrics` in the Prometheus
/// text format, and 404 to everything else (WebSocket handshakes included).
fn metrics_endpoint(
    addr: std::net::SocketAddr,
    metrics: Metrics,
    hub: Hub,
) -> Result<Worker, wsworker::Error> {
    let mut endpoint = Worker::new(&format!("websocket://{addr}"))?;
    endpoint
        .keepalive(None)
        .on_handshake(|_| Handshake::reject(404, "not found"))
        .on_http(move |request| match request.path() {
            "/metrics" => {
                HttpResponse::new(200, metrics.to_prometheus() + &hub.engine_prometheus())
                    .with_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            }
            _ => HttpResponse::not_found(),
        });
    Ok(endpoint)
}

/// `hello <data>`: text for text, the bytes of `hello ` and the data for binary.
fn hello(msg: MessageRef<'_>) -> Message {
    match msg {
        MessageRef::Text(text) => Message::from(format!("hello {text}")),
        MessageRef::Binary(data) => Message::from([&b"hello "[..], data].concat()),
    }
}

/// `--mode chat`: rooms and private messages, on the server's Hub. A client picks its room
/// with `?room=NAME` (none: the room of everyone) and its name with `?user=NAME`. A text goes
/// to everyone in the sender's room, the sender included; a text that starts with `@NAME `
/// only to user NAME's connections. Messages go out as they came, so load tools can check
/// them.
fn chat(worker: &mut Worker) {
    worker.on_connect(|conn| {
        // Fails only if the connection is already gone.
        if let Some(user) = conn.request().query_param("user") {
            let _ = conn.bind_uid(&user);
        }
        if let Some(room) = conn.request().query_param("room") {
            let _ = conn.join_group(&room);
        }
    });
    let hub = worker.hub();
    worker.on_message(move |conn, msg| {
        if let Some(user) = addressee(&msg) {
            hub.send_to_uid(&user, msg);
        } else if let Some(room) = conn.groups().first() {
            hub.send_to_group(room, msg);
        } else {
            hub.send_to_all(msg);
        }
        Ok(())
    });
}

/// The user a private chat message is for: `NAME` in `@NAME text`.
fn addressee(msg: &Message) -> Option<String> {
    let Message::Text(text) = msg else {
        return None;
    };
    let (user, _) = text.strip_prefix('@')?.split_once(' ')?;
    (!user.is_empty()).then(|| user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_redis_url_is_printed_without_its_password() {
        for (url, printed) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:secret@h:1/0", "redis://:***@h:1/0"),
            ("redis://user:se:cr@et@h:1", "redis://user:***@h:1"),
            ("redis://user@h:1", "redis://user@h:1"),
            ("rediss://u:p@h/db@x", "rediss://u:***@h/db@x"),
        ] {
            assert_eq!(without_password(url), printed, "{url}");
        }
    }
}

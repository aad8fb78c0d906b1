//! `wsworker serve`: the hello server (or echo, or chat) with the demo page.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use wsworker::{HttpResponse, Message, Worker};

/// The demo page, written with the browser API as the tutorial shows it.
const DEMO_PAGE: &str = include_str!("../../../web/index.html");

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
    /// Worker threads (default: one per CPU core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    count: Option<u16>,
    /// What to answer: hello (`hello <message>`), echo (each message back as it came), chat
    /// (every message to everyone).
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
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Hello,
    Echo,
    Chat,
}

pub(crate) fn run(args: ServeArgs) -> Result<ExitCode, wsworker::Error> {
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
    worker
        .count(count)
        .max_message_size(args.max_message_size)
        .max_frame_size(args.max_message_size);
    #[cfg(feature = "deflate")]
    if args.no_deflate {
        worker.permessage_deflate(None);
    }
    match args.mode {
        Mode::Hello => {
            worker.on_message(|conn, msg| {
                conn.send(hello(msg))?;
                Ok(())
            });
        }
        Mode::Echo => {
            worker.on_message(|conn, msg| {
                conn.send(msg)?;
                Ok(())
            });
        }
        Mode::Chat => {
            let everyone = worker.connections();
            worker.on_message(move |_, msg| {
                everyone.broadcast(msg);
                Ok(())
            });
        }
    }
    worker.on_http(|request| match request.path() {
        "/" | "/index.html" => HttpResponse::html(DEMO_PAGE),
        _ => HttpResponse::not_found(),
    });
    // Caught before the server is announced: a SIGTERM right after the announcement must
    // still stop it gracefully.
    let signal = wsworker::StopSignal::install()?;
    let server = worker.start()?;
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
    println!(
        "wsworker serving {mode} on {ws}://{addr} with {count} worker{s}",
        mode = mode.unwrap_or_default(),
        s = if count == 1 { "" } else { "s" },
    );
    println!(
        "open {http}://{page_host}:{port}/ in a browser for the demo page",
        port = addr.port()
    );
    server.stop_on(signal)?;
    Ok(ExitCode::SUCCESS)
}

/// `hello <data>`: text for text, the bytes of `hello ` and the data for binary.
fn hello(msg: Message) -> Message {
    match msg {
        Message::Text(text) => Message::from(format!("hello {text}")),
        Message::Binary(data) => Message::from([&b"hello "[..], &data].concat()),
    }
}

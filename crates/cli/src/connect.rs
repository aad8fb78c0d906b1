//! `wsworker connect`: a client on the terminal. Interactive by default (each stdin line
//! is sent as a text message, each message received is printed); with `--send`, a
//! scripted exchange for shell scripts; with `--expect N` alone, a listener that exits once
//! N messages came. With several URLs, `--reconnect` or `--resume` it reconnects (round
//! robin over the URLs, 100 ms to 2 s apart) and resumes with `wsworker.resume.v1`, saying
//! so on stderr; stdout has only the messages. With `--http2`, the WebSocket is a stream of
//! an HTTP/2 connection (RFC 8441).
//!
//! What the server sends reaches the user's terminal, so its control characters are shown,
//! never obeyed (see [`terminal_safe`]): a server must not be able to move the cursor, set
//! the window title or answer back through the terminal.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;
use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tokio::sync::mpsc;
use wsworker::{CloseInfo, Message, ReconnectPolicy, WebSocket, WsEvent};

/// Arguments of `wsworker connect`.
#[derive(Debug, Args)]
pub(crate) struct ConnectArgs {
    /// The server: ws://HOST:PORT/PATH?QUERY, or wss://… for TLS (port, path and query
    /// optional). Several: other nodes of the same service, tried round robin whenever the
    /// connection is lost or an attempt fails.
    #[arg(value_name = "URL", required = true, num_args = 1..)]
    urls: Vec<String>,
    /// Reconnect when the connection is lost or an attempt fails (implied by several URLs
    /// and by --resume): 100 ms, then doubling up to 2 s, jittered; not after a close with
    /// 1000 or by this end.
    #[arg(long)]
    reconnect: bool,
    /// Offer wsworker.resume.v1 and, when the server agrees, resume the session on every
    /// reconnect: the messages missed meanwhile arrive, once each (implies --reconnect).
    #[arg(long)]
    resume: bool,
    /// For wss://: trust the CA certificates in this PEM file too (repeatable), besides the
    /// built-in web roots.
    #[cfg(feature = "tls")]
    #[arg(long = "ca", value_name = "FILE")]
    ca: Vec<std::path::PathBuf>,
    /// A subprotocol to offer (repeat for several, in order of preference).
    #[arg(long = "protocol", value_name = "P")]
    protocols: Vec<String>,
    /// An extra request header, as 'Name: value' (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Send this text message instead of reading stdin (repeatable); then wait for the
    /// replies, close and exit.
    #[arg(long = "send", value_name = "TEXT")]
    send: Vec<String>,
    /// How many messages to wait for before closing (with --send, default: one per
    /// --send). Without --send: nothing is sent, stdin is not read, and the exit status is
    /// 0 once N messages came, not 0 at the --timeout.
    #[arg(long, value_name = "N")]
    expect: Option<usize>,
    /// With --send or --expect: how long to wait for the messages, in seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    timeout: f64,
    /// The close code to send at the end (1000 or 3000–4999).
    #[arg(long, default_value_t = 1000, value_name = "CODE")]
    close_code: u16,
    /// The close reason to send at the end.
    #[arg(long, default_value = "", value_name = "TEXT")]
    close_reason: String,
    /// Do not offer permessage-deflate (offered by default, as browsers do).
    #[cfg(feature = "deflate")]
    #[arg(long)]
    no_deflate: bool,
    /// Open the WebSocket over HTTP/2 (RFC 8441): TLS with ALPN h2 for wss:// (as
    /// `serve --http2` offers), cleartext HTTP/2 with prior knowledge for ws://. Fails when
    /// the server does not allow WebSockets over HTTP/2. Each reconnect makes a new HTTP/2
    /// connection.
    #[cfg(feature = "tls")]
    #[arg(long)]
    http2: bool,
}

fn parse_header(value: &str) -> Result<(String, String), String> {
    let (name, value) = value
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', got {value:?}"))?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

pub(crate) fn run(args: ConnectArgs) -> Result<ExitCode, wsworker::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(session(args))
}

async fn session(args: ConnectArgs) -> Result<ExitCode, wsworker::Error> {
    if !wsworker::CloseCode::new(args.close_code).is_allowed_for_application() {
        return Err(wsworker::Error::InvalidClose {
            code: args.close_code,
            reason_len: args.close_reason.len(),
        });
    }
    let mut builder = WebSocket::builder(args.urls[0].as_str()).protocols(&args.protocols);
    for (name, value) in &args.headers {
        builder = builder.header(name, value);
    }
    #[cfg(feature = "deflate")]
    if args.no_deflate {
        builder = builder.permessage_deflate(None);
    }
    #[cfg(feature = "tls")]
    for ca in &args.ca {
        builder = builder.tls_ca_pem_file(ca);
    }
    #[cfg(feature = "tls")]
    if args.http2 {
        builder = builder.http2();
    }
    let ws = if reconnects(&args) {
        // Opens and losses are reported as they come (`status`), the first one included.
        builder
            .fallback_urls(&args.urls[1..])
            .reconnect(policy())
            .resume(args.resume)
            .open()
    } else {
        let ws = builder.connect().await?;
        print_connected(&ws);
        ws
    };
    // Whether the connection is open, for the status lines (`connect` above opened it).
    let open = Cell::new(!reconnects(&args));
    let (info, success) = if args.send.is_empty() && args.expect.is_none() {
        let info = interactive(&ws, &args, &open).await?;
        let clean = info.was_clean;
        (info, clean)
    } else {
        scripted(&ws, &args, &open).await?
    };
    eprintln!(
        "closed: code {} reason {:?} clean={}",
        info.code, info.reason, info.was_clean
    );
    Ok(if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The CLI's reconnect policy: quick, for a person or a script waiting.
fn policy() -> ReconnectPolicy {
    ReconnectPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_secs(2))
}

fn print_connected(ws: &WebSocket) {
    eprintln!(
        "connected to {} (protocol {:?}, extensions {:?})",
        ws.url(),
        ws.protocol(),
        ws.extensions()
    );
}

/// Reports an event that is neither a message, an error nor the close, on stderr.
/// `open` follows the connection: a reconnect after an open connection is a loss, after a
/// failed attempt another attempt.
fn status(ws: &WebSocket, event: &WsEvent, open: &Cell<bool>) {
    match event {
        WsEvent::Open => {
            open.set(true);
            print_connected(ws);
        }
        WsEvent::Reconnecting {
            attempt,
            delay,
            close,
        } => {
            let then = format!(
                "attempt {attempt} to {} in {} ms",
                ws.url(),
                delay.as_millis()
            );
            if open.replace(false) {
                eprintln!(
                    "connection lost (code {} reason {:?}); {then}",
                    close.code,
                    terminal_safe(&close.reason)
                );
            } else {
                eprintln!("not connected; {then}");
            }
        }
        WsEvent::Session { id, window } => eprintln!(
            "session {} (resumable for {} s)",
            terminal_safe(id),
            window.as_secs()
        ),
        WsEvent::Resumed {
            recovered, failed, ..
        } => {
            let recovered: Vec<_> = recovered.iter().map(|t| terminal_safe(t)).collect();
            let failed: Vec<_> = failed
                .iter()
                .map(|(topic, reason)| format!("{} ({reason})", terminal_safe(topic)))
                .collect();
            eprintln!(
                "resumed: recovered [{}] failed [{}]",
                recovered.join(", "),
                failed.join(", ")
            );
        }
        _ => {}
    }
}

/// Lines from stdin go out, messages come in; stdin's end closes the connection.
async fn interactive(
    ws: &WebSocket,
    args: &ConnectArgs,
    open: &Cell<bool>,
) -> Result<CloseInfo, wsworker::Error> {
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    // Blocking stdin reads get a thread of their own; the channel ends with stdin.
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.recv(), if stdin_open => match line {
                Some(line) => match ws.send(line) {
                    Ok(()) => {}
                    // The server closed, or started to, before the line went out: its close
                    // event, which follows, says how; that is the session's outcome.
                    Err(wsworker::Error::Closed) => {
                        eprintln!("not sent: the connection is closing");
                    }
                    // Reconnecting, with too much held already.
                    Err(error @ wsworker::Error::QueueFull { .. }) => {
                        eprintln!("not sent: {error}");
                    }
                    Err(error) => return Err(error),
                },
                None => {
                    stdin_open = false;
                    ws.close(args.close_code, &args.close_reason)?;
                }
            },
            event = ws.next() => match event {
                Some(WsEvent::Message(msg)) => print_message(&msg),
                Some(WsEvent::Error(error)) => print_error(&error),
                Some(WsEvent::Close(info)) => return Ok(info),
                Some(event) => status(ws, &event, open),
                None => return Err(wsworker::Error::Closed),
            },
        }
    }
}

/// Sends every --send message (if any), waits for the messages expected, closes. Returns
/// how the connection ended and whether that is a success: every message came, and the
/// close was clean — or, reconnecting, came at all (the connection may have been between
/// two when it was closed).
async fn scripted(
    ws: &WebSocket,
    args: &ConnectArgs,
    open: &Cell<bool>,
) -> Result<(CloseInfo, bool), wsworker::Error> {
    for text in &args.send {
        ws.send(text.as_str())?;
    }
    let expect = args.expect.unwrap_or(args.send.len());
    let wait = Duration::from_secs_f64(args.timeout.max(0.0));
    let mut received = 0;
    let deadline = tokio::time::Instant::now() + wait;
    while received < expect {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(WsEvent::Message(msg))) => {
                print_message(&msg);
                received += 1;
            }
            Ok(Some(WsEvent::Error(error))) => print_error(&error),
            Ok(Some(WsEvent::Close(info))) => {
                eprintln!("the connection closed after {received} of {expect} messages");
                return Ok((info, false));
            }
            Ok(Some(event)) => status(ws, &event, open),
            Ok(None) => return Err(wsworker::Error::Closed),
            Err(_) => {
                eprintln!("timed out after {received} of {expect} messages");
                ws.close(args.close_code, &args.close_reason)?;
                return Ok((wait_close(ws, open).await?, false));
            }
        }
    }
    ws.close(args.close_code, &args.close_reason)?;
    let info = wait_close(ws, open).await?;
    let success = info.was_clean || reconnects(args);
    Ok((info, success))
}

/// Whether the connection reconnects (several URLs, --reconnect or --resume).
fn reconnects(args: &ConnectArgs) -> bool {
    args.reconnect || args.resume || args.urls.len() > 1
}

async fn wait_close(ws: &WebSocket, open: &Cell<bool>) -> Result<CloseInfo, wsworker::Error> {
    while let Some(event) = ws.next().await {
        match event {
            WsEvent::Message(msg) => print_message(&msg),
            WsEvent::Close(info) => return Ok(info),
            other => status(ws, &other, open),
        }
    }
    Err(wsworker::Error::Closed)
}

/// An error the connection reported, on stderr (its text may quote the server).
fn print_error(error: &wsworker::Error) {
    eprintln!("error: {}", terminal_safe(&crate::error_chain(error)));
}

fn print_message(msg: &Message) {
    match msg {
        Message::Text(text) => println!("{}", terminal_safe(text)),
        Message::Binary(data) => {
            let hex: String = data.iter().take(32).map(|b| format!("{b:02x}")).collect();
            let more = if data.len() > 32 { "…" } else { "" };
            println!("[binary, {} bytes] {hex}{more}", data.len());
        }
    }
}

/// `text` with its control characters made visible, as `cat -v` shows them, so that text
/// from the network cannot drive the terminal it is printed on: a C0 control as `^@`…`^_`
/// (ESC is `^[`), DEL as `^?`, a C1 control (U+0080–U+009F, which terminals may obey as
/// ESC sequences: U+009B is CSI) as `M-` and the C0 form of its low bits, and a character
/// that reorders or hides the text around it (see [`reorders`]) as `<U+202E>`. Line feed and
/// tab are kept: they only lay the text out. Borrowed when there is nothing to escape.
pub(crate) fn terminal_safe(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| (c.is_control() && c != '\n' && c != '\t') || reorders(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        if reorders(c) {
            let _ = write!(out, "<U+{:04X}>", u32::from(c));
            continue;
        }
        let code = u32::from(c);
        if code >= 0x80 {
            out.push_str("M-");
        }
        // `^` and the character 64 places up: ^@ for NUL, ^[ for ESC, ^? for DEL (127).
        let _ = write!(out, "^{}", char::from(((code & 0x7f) ^ 0x40) as u8));
    }
    Cow::Owned(out)
}

/// Whether `c` changes how the text around it is shown without being a control character:
/// the bidirectional overrides and isolates (which can make a line read backwards), the
/// zero-width characters (which hide text) and the line and paragraph separators.
fn reorders(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::{ConnectArgs, reconnects, terminal_safe};
    use clap::Parser;

    /// `connect`'s arguments on their own.
    #[derive(Debug, Parser)]
    struct Connect {
        #[command(flatten)]
        args: ConnectArgs,
    }

    fn parse(args: &[&str]) -> Result<ConnectArgs, clap::Error> {
        Connect::try_parse_from(std::iter::once("connect").chain(args.iter().copied()))
            .map(|c| c.args)
    }

    #[test]
    fn urls_and_the_reconnect_options_parse() {
        let args = parse(&[
            "ws://a/",
            "ws://b/",
            "--resume",
            "--expect",
            "3",
            "--timeout",
            "2.5",
        ])
        .unwrap();
        assert_eq!(args.urls, ["ws://a/", "ws://b/"]);
        assert!(args.resume && !args.reconnect && reconnects(&args));
        assert_eq!((args.expect, args.timeout), (Some(3), 2.5));
        assert!(args.send.is_empty());

        let args = parse(&["ws://a/"]).unwrap();
        assert!(!reconnects(&args), "one URL: the browser's single attempt");
        assert!(reconnects(&parse(&["ws://a/", "--reconnect"]).unwrap()));
        assert!(reconnects(&parse(&["ws://a/", "ws://b/"]).unwrap()));
        // URLs and options in any order.
        let args = parse(&["--send", "x", "ws://a/", "--reconnect", "ws://b/"]).unwrap();
        assert_eq!((args.urls.len(), args.send.len()), (2, 1));

        assert!(parse(&[]).is_err(), "a URL is required");
        assert!(parse(&["ws://a/", "--expect", "-1"]).is_err());
    }

    #[test]
    fn control_characters_are_shown_as_cat_v_shows_them() {
        assert_eq!(
            terminal_safe("hello κόσμε\tand\nmore"),
            "hello κόσμε\tand\nmore"
        );
        assert_eq!(
            terminal_safe("\u{1b}]0;title\u{7}\u{1b}[2J\r\0\u{7f}\u{9b}1m\u{85}\u{9f}"),
            "^[]0;title^G^[[2J^M^@^?M-^[1mM-^EM-^_"
        );
        assert_eq!(
            terminal_safe("abc\u{202e}fed\u{200b}\u{2066}x\u{2069}"),
            "abc<U+202E>fed<U+200B><U+2066>x<U+2069>"
        );
    }
}

//! `wsworker`: the hello server from the classic Workerman tutorial and its demo page
//! (`serve`), a client for the terminal (`connect`), and a load generator (`bench`).

mod bench;
mod connect;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A WebSocket toolkit: a Workerman-style server and a browser-style client.
#[derive(Debug, Parser)]
#[command(name = "wsworker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve WebSocket (the hello server by default) and the demo page on plain GET /.
    Serve(serve::ServeArgs),
    /// Connect to a WebSocket server: stdin lines out, messages in (or --send for scripts).
    Connect(connect::ConnectArgs),
    /// Load-test an echo server: many connections, messages in flight, round-trip times.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<ExitCode, Box<dyn std::error::Error + Send + Sync>> = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Connect(args) => connect::run(args).map_err(Into::into),
        Command::Bench(args) => bench::run(args).map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            // The chain may quote what a server sent (a TLS alert, a certificate's names).
            eprintln!(
                "wsworker: {}",
                connect::terminal_safe(&error_chain(&*error))
            );
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line: `invalid address ...: i/o error: Address in use`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Sets up logging at `level` (error, warn, info, debug, trace) on stderr.
fn init_logging(level: tracing::Level) {
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

//! What the tests of the `wsworker` command share: a running `wsworker serve`.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `wsworker serve`, stopped with SIGTERM (by its PID) when dropped.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where `--metrics` serves, when it was given.
    pub metrics: Option<SocketAddr>,
}

impl Serve {
    pub fn start(args: &[&str]) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_wsworker")), args)
    }

    /// `wsworker serve` with its open-file limit lowered to `files`, by the shell's `ulimit`
    /// (the server does not raise it).
    pub fn start_with_file_limit(files: u32, args: &[&str]) -> Self {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            r#"ulimit -n "$1" && shift && exec "$@""#,
            "sh",
            &files.to_string(),
            env!("CARGO_BIN_EXE_wsworker"),
        ]);
        Self::spawn(command, args)
    }

    fn spawn(mut command: Command, args: &[&str]) -> Self {
        let mut child = command
            .arg("serve")
            .args(args)
            .args(["--log-level", "warn"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        // "wsworker serving hello on ws://127.0.0.1:PORT with N workers" (wss:// with TLS)
        let addr = first
            .split_whitespace()
            .find_map(|word| word.strip_prefix("ws://").or(word.strip_prefix("wss://")))
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .unwrap();
        let mut second = lines.next().unwrap().unwrap();
        // "metrics at http://127.0.0.1:PORT/metrics" with --metrics
        let metrics = second
            .strip_prefix("metrics at http://")
            .map(|rest| rest.trim_end_matches("/metrics").parse().unwrap());
        if metrics.is_some() {
            second = lines.next().unwrap().unwrap();
        }
        assert!(second.contains("in a browser"), "{second}");
        Self {
            child,
            addr,
            metrics,
        }
    }

    pub fn stop(mut self) -> i32 {
        terminate(&self.child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

impl Serve {
    /// The WebSocket URL of the server.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }
}

/// CPU time (user + system) of a process so far, from `/proc/<pid>/stat`, seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // Clock ticks: 100 per second on Linux (USER_HZ).
    (ticks(11) + ticks(12)) as f64 / 100.0
}

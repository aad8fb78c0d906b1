//! What the tests of the `wsworker` command share: a running `wsworker serve`, and a chat
//! cluster of them ([`cluster`]).
#![allow(dead_code, unreachable_pub)]

pub mod cluster;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `wsworker serve`, stopped with SIGTERM (by its PID) when dropped.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    /// Where `--metrics` serves, when it was given.
    pub metrics: Option<SocketAddr>,
    /// The node id it announced, with `--redis`.
    pub node: Option<u16>,
    /// The Redis URL it announced sharing its Hub over, with `--redis`.
    pub redis: Option<String>,
    /// The resume window it announced, in seconds, with `--redis`.
    pub resume: Option<u64>,
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
        // A panic below must not leave the server running on its own.
        let guard = KillOnDrop(Some(child));
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        // "wsworker serving hello on ws://127.0.0.1:PORT with N workers" (wss:// with TLS)
        let addr = first
            .split_whitespace()
            .find_map(|word| word.strip_prefix("ws://").or(word.strip_prefix("wss://")))
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .parse()
            .unwrap();
        // Then, in this order and each only with its option: "node N sharing its Hub over
        // URL" (--redis), "clients that offer wsworker.resume.v1 resume within …" (--redis
        // unless --resume-window 0), "metrics at http://127.0.0.1:PORT/metrics"
        // (--metrics); last "open http://… in a browser …".
        let mut node = None;
        let mut redis = None;
        let mut metrics = None;
        let mut resume = None;
        loop {
            let line = lines.next().unwrap().unwrap();
            if let Some(rest) = line.strip_prefix("node ") {
                let (id, url) = rest
                    .split_once(" sharing its Hub over ")
                    .unwrap_or_else(|| panic!("unexpected line: {line}"));
                node = Some(id.parse().unwrap());
                redis = Some(url.to_owned());
            } else if let Some(rest) =
                line.strip_prefix("clients that offer wsworker.resume.v1 resume within ")
            {
                let seconds = rest.split_whitespace().next().unwrap_or_default();
                resume = Some(seconds.parse().unwrap());
            } else if let Some(rest) = line.strip_prefix("metrics at http://") {
                metrics = Some(rest.trim_end_matches("/metrics").parse().unwrap());
            } else {
                assert!(line.contains("in a browser"), "{line}");
                break;
            }
        }
        Self {
            child: guard.defuse(),
            addr,
            metrics,
            node,
            redis,
            resume,
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

/// A child process killed when dropped, unless taken back with [`KillOnDrop::defuse`].
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn defuse(mut self) -> Child {
        self.0.take().unwrap()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn terminate(child: &Child) {
    signal(child, "TERM");
}

/// Sends `signal` (`TERM`, `STOP`, `CONT`) to a child process of the test, by its PID.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal}");
}

impl Serve {
    /// The WebSocket URL of the server.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Sends the server signal `name` (`STOP`, `CONT`).
    pub fn signal(&self, name: &str) {
        signal(&self.child, name);
    }

    /// Kills the server with SIGKILL (no close to its clients, no goodbye to Redis) and
    /// waits for its end.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
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

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where a Chromium check puts screenshot `name`: the workspace's `target` directory.
pub fn screenshot(name: &str) -> String {
    workspace_root()
        .join("target")
        .join(name)
        .display()
        .to_string()
}

/// Runs the Chromium check `script` of `interop/node/` with `args`, prints its output and
/// checks that it passed; returns its stdout.
pub fn chromium_check(script: &str, args: &[&str]) -> String {
    let output = Command::new("node")
        .arg(workspace_root().join("interop/node").join(script))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}");
    stdout
}

/// Runs `wsworker ARGS` to its end: its exit code (-1 for a signal), stdout and stderr.
/// Killed and failed past `limit`, a hang being a failure.
pub fn wsworker_within(args: &[&str], limit: Duration) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsworker"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read both pipes on their own threads so that a full pipe cannot stall the child.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wsworker {args:?} ran over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
    )
}

/// A test CA and a certificate it signed for 127.0.0.1 and localhost, written as PEM files
/// (`ca.pem`, `cert.pem`, `key.pem`) into a fresh temporary directory.
pub fn test_certificates() -> PathBuf {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wsworker cli test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wsworker-cli-tls-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    dir
}

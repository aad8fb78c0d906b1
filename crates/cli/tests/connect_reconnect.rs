//! `wsworker connect` listening (`--expect` without `--send`) and reconnecting over several
//! URLs, as a user runs it: the real binary against a `Worker` started by the test.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wsworker::{RunningServer, Worker};

/// Runs `wsworker` with `args` (stdin empty): its exit code, stdout and stderr.
fn wsworker(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_wsworker"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A server that greets each connection with what `greet` says for its number (from 1),
/// then closes with the code given, if any.
fn greeter(
    greet: impl Fn(usize) -> (Vec<&'static str>, Option<u16>) + Send + Sync + 'static,
) -> RunningServer {
    let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    worker.on_connect(move |conn| {
        let n = connections.fetch_add(1, Ordering::Relaxed) + 1;
        let (messages, close) = greet(n);
        for message in messages {
            let _ = conn.send(message);
        }
        if let Some(code) = close {
            let _ = conn.close(code, "restarting");
        }
    });
    worker.start().unwrap()
}

fn url(server: &RunningServer) -> String {
    format!("ws://{}/", server.local_addr())
}

fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("ws://{}/", listener.local_addr().unwrap())
}

#[test]
fn expect_without_send_listens_for_n_messages() {
    let server = greeter(|_| (vec!["m1", "m2", "m3"], None));
    let url = url(&server);
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--expect", "3"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "m1\nm2\nm3\n");
    assert!(stderr.contains("closed: code 1000"), "{stderr}");

    // One more than comes: not 0, at the timeout.
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--expect", "4", "--timeout", "0.5"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "m1\nm2\nm3\n");
    assert!(
        stderr.contains("timed out after 3 of 4 messages"),
        "{stderr}"
    );
    server.shutdown();
}

#[test]
fn several_urls_reconnect_round_robin_across_a_loss() {
    // The first connection hears "one" and is told the server restarts; the next, "two".
    let server = greeter(|n| match n {
        1 => (vec!["one"], Some(1012)),
        _ => (vec!["two"], None),
    });
    let (refused, good) = (refused_url(), url(&server));
    let (code, stdout, stderr) = wsworker(&[
        "connect",
        &refused,
        &good,
        "--expect",
        "2",
        "--timeout",
        "10",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "one\ntwo\n", "{stderr}");
    // The first URL refused, the second answered; lost with 1012, then round robin: the
    // first again (refused), and the second.
    assert!(stderr.contains("error: i/o error"), "{stderr}");
    assert!(stderr.contains(&format!("attempt 1 to {good}")), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "code 1012 reason \"restarting\"); attempt 1 to {refused}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("attempt 2 to {good}")), "{stderr}");
    assert_eq!(
        stderr.matches(&format!("connected to {good}")).count(),
        2,
        "{stderr}"
    );
    server.shutdown();
}

#[test]
fn reconnect_on_one_url_and_no_reconnect_without_it() {
    // Odd connections hear "one" and are told the server goes away; even ones, "two".
    let server = greeter(|n| match n % 2 {
        1 => (vec!["one"], Some(1001)),
        _ => (vec!["two"], None),
    });
    let url = url(&server);
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--reconnect", "--expect", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "one\ntwo\n");

    // Without --reconnect the loss is the end (the next connection would say "two").
    let (code, stdout, stderr) = wsworker(&["connect", &url, "--expect", "2"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "one\n");
    assert!(
        stderr.contains("the connection closed after 1 of 2 messages"),
        "{stderr}"
    );
    server.shutdown();
}

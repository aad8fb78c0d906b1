//! Resume in the browser: the demo page's chat view with `web/resume.js` on node 1 of a
//! `wsworker serve --mode chat --redis` cluster, node 1 killed with SIGKILL mid-stream, the
//! page back on node 2 with every message exactly once. Chromium runs
//! interop/node/resume_check.mjs; this test is the rest of the world: the Redis, the
//! nodes, the sender and the kill.
//!
//! Also web/resume.js alone, frame by frame, in Node.
//!
//! Ignored by default: they need Node, and `redis-server` and Chromium (interop/setup.sh
//! checks for the one and installs the others; `.ci/run` runs ignored tests after it).

mod common;
// The Redis harness of wsworker-redis's own tests: a `redis-server` per test on a free port.
#[path = "../../redis/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Serve, cluster, workspace_root};
use support::{RedisServer, WAIT};
use tokio::sync::mpsc;
use wsworker::{Message, WebSocket, WsEvent};

/// The room of the test; its topic is `g:r`.
const ROOM: &str = "r";

/// Node `id` of the chat sharing `redis` (which offers resume by default).
fn chat_node(redis: &RedisServer, id: u16) -> Serve {
    let serve = cluster::chat_node(&redis.url(), id).start();
    assert_eq!(serve.resume, Some(120), "the node offers resume");
    serve
}

/// The Chromium check, running: its lines as they come (each printed too), and the
/// process, killed when dropped.
struct Check {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Check {
    fn spawn(script: &str, args: &[&str]) -> Self {
        let mut child = Command::new("node")
            .arg(workspace_root().join("interop/node").join(script))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        let script = script.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{script}: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to `limit` for a line that starts with `PASS <step>`; panics on a `FAIL`,
    /// on the end of the output, or past the limit. `None` if nothing came within `limit`
    /// and `patient`.
    async fn passed(&mut self, step: &str, limit: Duration, patient: bool) -> Option<String> {
        let want = format!("PASS {step}");
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    assert!(!line.starts_with("FAIL"), "{}", self.seen.join("\n"));
                    if line.starts_with(&want) {
                        return Some(line);
                    }
                }
                Ok(None) => panic!("the check ended before {want}:\n{}", self.seen.join("\n")),
                Err(_) if patient => return None,
                Err(_) => panic!("no {want} within {limit:?}:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits for the check to end (it bounds itself); whether it succeeded, and all of its
    /// output.
    async fn finish(mut self) -> (bool, String) {
        while let Ok(Some(line)) = tokio::time::timeout(WAIT, self.lines.recv()).await {
            self.seen.push(line);
        }
        let status = self.child.wait().unwrap();
        (status.success(), self.seen.join("\n"))
    }
}

impl Drop for Check {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the sender's own room messages (it is in the room too) and reports each text.
fn echo(ws: WebSocket) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = ws.next().await {
            if let WsEvent::Message(Message::Text(text)) = event
                && tx.send(text.to_string()).is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Waits until the sender's own `text` has come back through the room: then it is
/// published, and in the room's history in Redis.
async fn echoed(echoes: &mut mpsc::UnboundedReceiver<String>, text: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, echoes.recv()).await {
            Ok(Some(got)) if got == text => return,
            Ok(Some(_)) => {}
            other => panic!("{text} did not come back to the sender: {other:?}"),
        }
    }
}

/// Three nodes on one Redis; Chromium loads the demo page from node 1 and opens the chat
/// in room `r` with node 2 as the other node (`?nodes=`). A sender on node 3 sends the
/// room `1` … `300`, one every 10 ms. After 100, node 2 is stopped (SIGSTOP) and node 1
/// killed (SIGKILL); 101 … 150 are sent and come back to the sender (so they are in the
/// room's history) before node 2 goes on (SIGCONT): the page, which lost node 1 and can
/// only reach node 2, gets them from the replay, never live. Then 151 … 300. The page
/// must say it resumed with the room recovered, be on node 2, and show exactly
/// `1` … `300`, once each, in order (resume_check.mjs checks the page).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server and chromium (interop/setup.sh installs them)"]
async fn chromium_resumes_on_another_node_after_kill_9_with_every_message_once() {
    const N: usize = 300;
    const KILL_AFTER: usize = 100;
    const GAP: usize = 50;
    /// From Chromium's launch to the page in the room.
    const JOIN_LIMIT: Duration = Duration::from_secs(40);

    let redis = RedisServer::start();
    let mut one = chat_node(&redis, 1);
    let two = chat_node(&redis, 2);
    let three = chat_node(&redis, 3);

    let page = format!("http://{}/", one.addr);
    let other = two.addr.to_string();
    let count = N.to_string();
    let mut check = Check::spawn(
        "resume_check.mjs",
        &["--room", ROOM, "--count", &count, "--nodes", &other, &page],
    );

    let sender = WebSocket::connect(&format!("{}?room={ROOM}&user=sender", three.url()), [""; 0])
        .await
        .unwrap();
    let mut echoes = echo(sender.clone());

    // The page is in the room once a probe shows on it (its node subscribed in Redis).
    check.passed("join", JOIN_LIMIT, false).await;
    let deadline = Instant::now() + WAIT;
    for probe in 0.. {
        sender.send(format!("probe {probe}")).unwrap();
        let shown = check
            .passed("probe", Duration::from_millis(100), true)
            .await;
        if shown.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no probe showed on the page");
    }

    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for i in 1..=N {
        tick.tick().await;
        sender.send(i.to_string()).unwrap();
        if i == KILL_AFTER {
            // Node 2 takes no new connection until the gap is in the history; node 1 dies
            // without a goodbye to Redis or a close to the page.
            two.signal("STOP");
            one.kill_9();
        }
        if i == KILL_AFTER + GAP {
            echoed(&mut echoes, &i.to_string()).await;
            two.signal("CONT");
        }
    }

    let resumed = check.passed("resume", WAIT, false).await.unwrap();
    assert!(resumed.contains("; failed nothing"), "{resumed}");
    check.passed("exactly-once", WAIT, false).await;
    let (success, output) = check.finish().await;
    assert!(success, "{output}");
    assert!(
        output.contains(&format!("PASS exactly-once ({N} messages after")),
        "{output}"
    );

    sender.close(1000, "").unwrap();
    drop(one);
    assert_eq!(two.stop(), 0);
    assert_eq!(three.stop(), 0);
}

/// web/resume.js frame by frame in Node, over a stand-in for the browser's WebSocket:
/// duplicates by topic and offset within an epoch, a new epoch, binary payloads after the
/// head, bad frames, positions in sessionStorage, a resume with a failed topic, the close
/// codes that reconnect and those that end, the bounded send queue, and the plain fallback
/// (interop/node/resume_js_check.mjs).
#[test]
#[ignore = "needs node (interop/setup.sh checks for it)"]
fn resume_js_frame_by_frame() {
    let output = Command::new("node")
        .arg(workspace_root().join("interop/node/resume_js_check.mjs"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("\n# pass 4\n# fail 0\n"), "{stdout}");
}

//! Resume across a cluster of `wsworker serve --mode chat --redis URL` nodes (child
//! processes sharing one real `redis-server`), with the crate's own client resuming
//! (`WebSocketBuilder::resume`): a node killed with SIGKILL under 1,000 messages a second,
//! and a rolling restart of every node under load, leave every resuming client with the
//! whole sequence, once each, in order.
//!
//! Ignored by default (they need `redis-server`, which interop/setup.sh installs); `.ci/run`
//! runs them with `cargo test -- --ignored`.

mod common;
#[path = "../../redis/tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::Serve;
use common::cluster::{chat_node, probe_until_ready};
use support::{Node, RedisServer, WAIT, free_port};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wsworker::{Message, ReconnectPolicy, WebSocket, WsEvent};

const ROOM: &str = "r";
/// Sent before the numbered messages until every client has one: every node hears the
/// room then.
const PROBE: &str = "probe";

/// What each test starts with: a Redis, nodes of the chat on ports of their own (kept
/// across a restart), and the publisher, a node in this process.
struct Cluster {
    publisher: Node,
    /// Node `k + 1`; `None` only while it restarts.
    nodes: Vec<Option<Serve>>,
    ports: Vec<u16>,
    redis: RedisServer,
}

impl Cluster {
    /// `n` nodes, ids 1..=n; the publisher is node 9.
    fn start(n: usize) -> Self {
        let redis = RedisServer::start();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let nodes = (0..n)
            .map(|k| Some(resume_node(&redis, k as u16 + 1, ports[k])))
            .collect();
        let publisher = Node::start(&redis, 9);
        Self {
            publisher,
            nodes,
            ports,
            redis,
        }
    }

    /// The WebSocket URL of node `k + 1`.
    fn url(&self, k: usize) -> String {
        format!("ws://127.0.0.1:{}/", self.ports[k])
    }

    /// Kills node `k + 1` with SIGKILL.
    fn kill_9(&mut self, k: usize) {
        self.nodes[k].as_mut().unwrap().kill_9();
    }

    /// Stops node `k + 1` (SIGTERM) and starts it again on its port.
    fn restart(&mut self, k: usize) {
        let node = self.nodes[k].take().unwrap();
        assert_eq!(node.stop(), 0, "node {} stops cleanly", k + 1);
        self.nodes[k] = Some(resume_node(&self.redis, k as u16 + 1, self.ports[k]));
    }

    /// Publishes `range` to the room at 1,000 messages a second (10 every 10 ms), calling
    /// `at` before each message.
    async fn publish(
        &mut self,
        range: std::ops::RangeInclusive<usize>,
        mut at: impl FnMut(&mut Self, usize),
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for i in range {
            if i % 10 == 1 {
                tick.tick().await;
            }
            at(self, i);
            self.publisher.hub.send_to_group(ROOM, i.to_string());
        }
    }
}

/// Node `id` of the chat, on `port`, keeping (and replaying) up to 10,000 messages per
/// room: a client away for seconds under 1,000 messages a second still resumes.
fn resume_node(redis: &RedisServer, id: u16, port: u16) -> Serve {
    chat_node(&redis.url(), id)
        .port(port)
        .args(&["--history-len", "10000", "--max-replay", "10000"])
        .start()
}

/// A resuming chat client in [`ROOM`]: `urls[0]` first, the others round robin after a
/// loss.
async fn resuming_client(urls: &[String], user: &str) -> WebSocket {
    let with_room = |url: &String| format!("{url}?room={ROOM}&user={user}");
    WebSocket::builder(with_room(&urls[0]))
        .fallback_urls(urls[1..].iter().map(with_room))
        .reconnect(
            ReconnectPolicy::new()
                .initial_delay(Duration::from_millis(50))
                .max_delay(Duration::from_millis(500)),
        )
        .resume(true)
        .connect()
        .await
        .unwrap()
}

/// What a resuming client saw: the numbered texts, how many times it resumed, and every
/// topic that failed to resume.
#[derive(Debug, Default)]
struct Seen {
    texts: Vec<String>,
    resumes: usize,
    failed: Vec<String>,
}

/// Reads `ws` until it has `n` numbered texts (or nothing comes for [`WAIT`]); says
/// `ready` on its first probe.
async fn read(ws: WebSocket, n: usize, ready: mpsc::UnboundedSender<()>) -> Seen {
    let mut seen = Seen::default();
    let mut probed = false;
    while seen.texts.len() < n {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(WsEvent::Message(Message::Text(text)))) => {
                if text.starts_with(PROBE) {
                    if !probed {
                        probed = true;
                        let _ = ready.send(());
                    }
                } else {
                    seen.texts.push(text.to_string());
                }
            }
            Ok(Some(WsEvent::Resumed { failed, .. })) => {
                seen.resumes += 1;
                seen.failed
                    .extend(failed.iter().map(|(t, r)| format!("{t} ({r})")));
            }
            Ok(Some(WsEvent::Close(info))) => panic!("closed for good: {info:?}"),
            Ok(None) => break,
            Ok(Some(_)) => {}
            Err(_) => break,
        }
    }
    seen
}

/// Says where `got` is not exactly `1..=n`.
fn check(who: &str, seen: &Seen, n: usize) {
    let got = &seen.texts;
    if let Some(i) = (0..got.len().min(n)).find(|&i| got[i] != (i + 1).to_string()) {
        panic!(
            "{who}: message {} is {:?} (the ones before: {:?}); {seen:?}",
            i + 1,
            got[i],
            &got[i.saturating_sub(3)..i],
        );
    }
    assert_eq!(got.len(), n, "{who}: {} of {n} messages", got.len());
    assert!(seen.failed.is_empty(), "{who}: failed {:?}", seen.failed);
}

/// The resuming clients of a test, each read by a task of its own until it has `n`
/// numbered texts.
struct Readers {
    n: usize,
    ready_tx: mpsc::UnboundedSender<()>,
    ready: mpsc::UnboundedReceiver<()>,
    tasks: Vec<(String, JoinHandle<Seen>)>,
}

impl Readers {
    fn new(n: usize) -> Self {
        let (ready_tx, ready) = mpsc::unbounded_channel();
        Self {
            n,
            ready_tx,
            ready,
            tasks: Vec::new(),
        }
    }

    /// A resuming client, `who`, on `urls[0]` first, the others after a loss.
    async fn add(&mut self, who: String, urls: &[String]) {
        let ws = resuming_client(urls, &who.replace(' ', "_")).await;
        let task = tokio::spawn(read(ws, self.n, self.ready_tx.clone()));
        self.tasks.push((who, task));
    }

    /// Probes through `publisher` until every reader got one.
    async fn wait_ready(&mut self, publisher: &Node) {
        let probe = |n| {
            publisher.hub.send_to_group(ROOM, format!("{PROBE} {n}"));
        };
        probe_until_ready(probe, self.tasks.len(), &mut self.ready, WAIT).await;
    }

    /// What each reader saw, once it is done; each checked to be `1..=n` once, in order.
    async fn checked(self) -> Vec<(String, Seen)> {
        let mut all = Vec::new();
        for (who, task) in self.tasks {
            let seen = task.await.unwrap();
            check(&who, &seen, self.n);
            all.push((who, seen));
        }
        all
    }
}

/// Three nodes; two resuming clients on node 1 (then node 3, then node 2 after a loss)
/// and one on each other node; the publisher is a fourth node, in this process. Node 1 is
/// killed with SIGKILL a third of the way through 3,000 messages at 1,000 a second: its
/// clients resume on node 3, and every client gets 1..=3,000 once, in order, with no topic
/// failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_node_killed_under_load_loses_its_resuming_clients_nothing() {
    const N: usize = 3_000;
    let mut cluster = Cluster::start(3);
    let mut readers = Readers::new(N);
    for (who, order) in [
        ("node 1 client 0", [0, 2, 1]),
        ("node 1 client 1", [0, 2, 1]),
        ("node 2 client", [1, 2, 0]),
        ("node 3 client", [2, 0, 1]),
    ] {
        let list: Vec<String> = order.iter().map(|&k| cluster.url(k)).collect();
        readers.add(who.to_owned(), &list).await;
    }
    readers.wait_ready(&cluster.publisher).await;

    cluster
        .publish(1..=N, |cluster, i| {
            if i == N / 3 {
                cluster.kill_9(0);
            }
        })
        .await;
    for (who, seen) in readers.checked().await {
        if who.starts_with("node 1") {
            assert_eq!(seen.resumes, 1, "{who} resumed once, on node 3");
        }
    }
}

/// Three nodes restarted one after another (SIGTERM, then the same port again) while
/// 4,000 messages go out at 1,000 a second: each of the six resuming clients moves on at
/// each restart of its node and gets 1..=4,000 once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn a_rolling_restart_under_load_loses_no_resuming_client_a_message() {
    const N: usize = 4_000;
    let mut cluster = Cluster::start(3);
    let mut readers = Readers::new(N);
    for first in 0..3 {
        for k in 0..2 {
            let list: Vec<String> = (0..3).map(|j| cluster.url((first + j) % 3)).collect();
            readers
                .add(format!("node {} client {k}", first + 1), &list)
                .await;
        }
    }
    readers.wait_ready(&cluster.publisher).await;

    // Node k restarts at message k * N / 4.
    let restarts: Vec<usize> = (1..=3).map(|k| k * N / 4).collect();
    cluster
        .publish(1..=N, |cluster, i| {
            if let Some(k) = restarts.iter().position(|&at| at == i) {
                cluster.restart(k);
            }
        })
        .await;
    for (who, seen) in readers.checked().await {
        assert!(seen.resumes >= 1, "{who} moved on at its node's restart");
    }
}

/// `wsworker connect NODE1 NODE2 --resume --expect N` as its own process: node 1 is killed
/// with SIGKILL partway through N messages at 1,000 a second; the command resumes on node 2,
/// says so on stderr (recovered, nothing failed), prints 1..=N on stdout, one a line, and
/// exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server (interop/setup.sh installs it)"]
async fn connect_resume_rides_out_a_killed_node() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    const N: usize = 2_000;
    let mut cluster = Cluster::start(2);
    let urls: Vec<String> = (0..2)
        .map(|k| format!("{}?room={ROOM}", cluster.url(k)))
        .collect();
    let expect = N.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsworker"))
        .args(["connect", &urls[0], &urls[1], "--resume"])
        .args(["--expect", &expect, "--timeout", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    // Its status lines, as they come: the session is set up before anything is published.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut status = Vec::new();
    loop {
        let line = lines.recv_timeout(WAIT).expect("a session line");
        let session = line.starts_with("session ");
        status.push(line);
        if session {
            break;
        }
    }

    cluster
        .publish(1..=N, |cluster, i| {
            if i == N / 3 {
                cluster.kill_9(0);
            }
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let code = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit.code();
        }
        assert!(Instant::now() < deadline, "connect did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    status.extend(lines.try_iter());
    let printed = out.join().unwrap();
    let expected: String = (1..=N).map(|i| format!("{i}\n")).collect();
    assert!(
        printed == expected,
        "stdout is not 1..={N}; stderr: {status:#?}"
    );
    assert_eq!(code, Some(0), "{status:#?}");
    let resumed: Vec<&String> = status
        .iter()
        .filter(|l| l.starts_with("resumed:"))
        .collect();
    assert_eq!(resumed.len(), 1, "{status:#?}");
    assert!(
        resumed[0].contains("g:r") && resumed[0].ends_with("failed []"),
        "{status:#?}"
    );
}

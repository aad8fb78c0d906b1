//! What the engine's tests share: a real `redis-server` of the test's own on a free
//! loopback port, nodes (in-process Workers, each with its own engine) and clients.

#![allow(dead_code, unreachable_pub)]

pub mod resume;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wsworker::{Hub, Message, RunningServer, WebSocket, Worker, WsEvent};
use wsworker_redis::{RedisConfig, RedisEngine};

/// The longest any test waits for one event.
pub const WAIT: Duration = Duration::from_secs(30);

/// A `redis-server` child process, stopped when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port, without persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts one with AOF and `appendfsync always` (`durable`: a restart loses nothing),
    /// or without persistence.
    pub fn start_durable(durable: bool) -> Self {
        if durable {
            Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
        } else {
            Self::start()
        }
    }

    /// Starts one with extra `redis-server` arguments (`--appendonly yes`, say).
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let mut server = Self {
            port,
            child: None,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let dir = std::env::temp_dir().join(format!(
            "wsworker-redis-{}-{}",
            std::process::id(),
            self.port
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server (interop/setup.sh installs it)");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until it answers PING.
    fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut conn) = self.connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection_with_timeout(Duration::from_secs(2))
    }

    /// Runs one command and returns its answer.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut self.connection().unwrap()).unwrap()
    }

    /// `SHUTDOWN NOSAVE`, then the same server again on the same port: everything lost.
    pub fn restart(&mut self) {
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN")
            .arg("NOSAVE")
            .query(&mut self.connection().unwrap());
        let mut child = self.child.take().unwrap();
        child.wait().unwrap();
        self.spawn();
    }

    /// Sends the server a signal (`STOP`, `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node: a Worker with its own engine; connections bind `?user=` and join `?room=` as
/// they open, and report their ids.
pub struct Node {
    pub server: RunningServer,
    pub hub: Hub,
    opened: mpsc::Receiver<u64>,
    pub resyncs: mpsc::Receiver<wsworker::hub::Resync>,
    /// Each closed connection's id and close code.
    pub closes: mpsc::Receiver<(u64, u16)>,
}

impl Node {
    pub fn start(redis: &RedisServer, node_id: u16) -> Self {
        Self::start_with(RedisConfig::new(redis.url()).node_id(node_id))
    }

    pub fn start_with(config: RedisConfig) -> Self {
        Self::start_custom(config, |_| {})
    }

    /// A node whose clients may resume (`wsworker.resume.v1`) with `resume`.
    pub fn start_resume(config: RedisConfig, resume: wsworker::resume::ResumeConfig) -> Self {
        Self::start_custom(config, move |worker| {
            worker.resume(resume).unwrap();
        })
    }

    /// A node with `setup` applied to its worker after its engine is installed.
    pub fn start_custom(config: RedisConfig, setup: impl FnOnce(&mut Worker)) -> Self {
        // The engine's warnings (a batch that failed, a reconnect) in the test's output.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_test_writer()
            .try_init();
        let mut worker = Worker::new("websocket://127.0.0.1:0").unwrap();
        worker.count(2);
        worker.engine(RedisEngine::start(config).unwrap()).unwrap();
        setup(&mut worker);
        let (closed_tx, closes) = mpsc::channel();
        worker.on_close(move |conn, info| {
            let _ = closed_tx.send((conn.id(), info.code.as_u16()));
        });
        let (opened_tx, opened) = mpsc::channel();
        worker.on_connect(move |conn| {
            if let Some(user) = conn.request().query_param("user") {
                conn.bind_uid(&user).unwrap();
            }
            if let Some(room) = conn.request().query_param("room") {
                conn.join_group(&room).unwrap();
            }
            let _ = opened_tx.send(conn.id());
        });
        let hub = worker.hub();
        let (resync_tx, resyncs) = mpsc::channel();
        hub.on_resync(move |_, resync| {
            let _ = resync_tx.send(resync.clone());
        });
        Self {
            server: worker.start().unwrap(),
            hub,
            opened,
            resyncs,
            closes,
        }
    }

    /// `ws://ADDR`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.server.local_addr())
    }

    /// Connects a client at `path`; it and its connection's id once open.
    pub async fn connect(&self, path: &str) -> (WebSocket, u64) {
        let url = format!("ws://{}{path}", self.server.local_addr());
        let ws = WebSocket::connect(&url, [""; 0]).await.unwrap();
        let id = self.opened.recv_timeout(WAIT).expect("on_connect");
        (ws, id)
    }
}

/// The next text message of `ws`, skipping other events.
pub async fn next_text(ws: &WebSocket) -> String {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(WsEvent::Message(Message::Text(text)))) => return text.to_string(),
            Ok(Some(WsEvent::Message(_) | WsEvent::Open)) => {}
            Ok(Some(other)) => panic!("expected a text message, got {other:?}"),
            Ok(None) => panic!("the connection ended"),
            Err(_) => panic!("no message within {WAIT:?}"),
        }
    }
}

/// The next text message of `ws`, or `None` when none comes within [`WAIT`].
pub async fn try_next_text(ws: &WebSocket) -> Option<String> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(WsEvent::Message(Message::Text(text)))) => return Some(text.to_string()),
            Ok(Some(WsEvent::Message(_) | WsEvent::Open)) => {}
            Ok(Some(other)) => panic!("expected a text message, got {other:?}"),
            Ok(None) => panic!("the connection ended"),
            Err(_) => return None,
        }
    }
}

/// Waits until `check` holds, looking again whenever `every` has passed; panics after
/// [`WAIT`]. For state only another process shows (Redis's subscriptions, say).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client's texts as they come, read by a task of their own.
pub struct Inbox {
    pub ws: std::sync::Arc<WebSocket>,
    texts: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Inbox {
    pub fn new(ws: WebSocket) -> Self {
        let ws = std::sync::Arc::new(ws);
        let (tx, texts) = tokio::sync::mpsc::unbounded_channel();
        let reader = ws.clone();
        tokio::spawn(async move {
            while let Some(event) = reader.next().await {
                if let WsEvent::Message(Message::Text(text)) = event
                    && tx.send(text.to_string()).is_err()
                {
                    return;
                }
            }
        });
        Self { ws, texts }
    }

    /// The next text.
    pub async fn next(&mut self) -> String {
        match tokio::time::timeout(WAIT, self.texts.recv()).await {
            Ok(Some(text)) => text,
            Ok(None) => panic!("the connection ended"),
            Err(_) => panic!("no message within {WAIT:?}"),
        }
    }

    /// Every text up to and including `last`.
    pub async fn until(&mut self, last: &str) -> Vec<String> {
        let mut texts = Vec::new();
        loop {
            let text = match tokio::time::timeout(WAIT, self.texts.recv()).await {
                Ok(Some(text)) => text,
                other => panic!("waiting for {last:?}: {other:?}, after {texts:?}"),
            };
            let done = text == last;
            texts.push(text);
            if done {
                return texts;
            }
        }
    }
}

/// The value of metric `name` in the node's engine counters.
pub fn engine_metric(hub: &Hub, name: &str) -> u64 {
    hub.engine_prometheus()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

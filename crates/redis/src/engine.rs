//! The engine's handle: what the Hub holds ([`RedisEngine`], the [`Engine`] calls), and
//! the start of the engine's thread: a small tokio runtime of its own, so that the engine
//! works beside a [`Worker`](wsworker::Worker)'s event loops and outside any runtime of the
//! application's. The calls only queue commands for the actor ([`crate::actor`]), which
//! owns all state.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use redis::RedisError;
use tokio::sync::{mpsc, oneshot};
use wsworker::hub::engine::{Confirm, History, Query, QueryFuture, Reply, Sessions};
use wsworker::hub::{Engine, EngineError, Envelope, HubLink, Stamp, Topic};

use crate::RedisConfig;
use crate::actor::Actor;

/// The Redis engine: install it with [`Worker::engine`](wsworker::Endpoint::engine) or
/// [`Hub::install`](wsworker::Hub::install). See the crate docs for what it guarantees.
///
/// Dropping it (with the last handle of its Hub) takes this node's memberships out of
/// Redis and stops its thread.
pub struct RedisEngine {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Cmd>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

/// Why [`RedisEngine::start`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL: {0}")]
    Url(#[source] RedisError),
    /// Redis did not answer.
    #[error("cannot reach Redis: {0}")]
    Connect(#[source] RedisError),
    /// Another live node has this node id.
    #[error(
        "node id {0} is taken by a live node (another node, or one that stopped less than the node TTL ago)"
    )]
    NodeIdTaken(u16),
    /// Node id 0 (ids are 1..=65535).
    #[error("node id 0: node ids are 1..=65535")]
    InvalidNodeId,
    /// Redis took connections but did not let the node subscribe in time.
    #[error("Redis did not complete the node's subscriptions within {0:?}")]
    Timeout(Duration),
    /// The engine's thread or runtime could not start.
    #[error("cannot start the engine's thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What the engine's handle and its thread share.
pub(crate) struct Shared {
    pub(crate) node: u16,
    /// Sends accepted and not yet answered by Redis.
    pub(crate) queued: AtomicUsize,
    pub(crate) queue_len: usize,
    pub(crate) link: OnceLock<HubLink>,
    pub(crate) connected: AtomicBool,
    /// The engine stopped because another node took its id: sends fail.
    pub(crate) evicted: AtomicBool,
    pub(crate) counters: Counters,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) volatile: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) fills: AtomicU64,
    pub(crate) filled: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) queue_drops: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) purged_nodes: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// What the handle asks of the actor.
pub(crate) enum Cmd {
    Publish(Envelope, Option<Confirm>),
    Interest(Topic, bool),
    Presence(Topic, u64, bool),
    Ungroup(String),
    Query(Query, oneshot::Sender<Result<Vec<u64>, EngineError>>),
    Positions(Vec<Topic>, Reply<Vec<Stamp>>),
    History(Topic, u64, usize, Reply<History>),
    SessionSave(String, Vec<u8>, Duration, bool, Reply<bool>),
    SessionClaim(String, Reply<Option<Vec<u8>>>),
    SessionKeep(String, Duration, bool),
    Stop,
}

impl RedisEngine {
    /// Connects to Redis, registers this node and starts the engine's thread. Fails when
    /// Redis does not answer within [`RedisConfig::connect_timeout`] or the node id is taken;
    /// later outages are ridden out (see the crate docs).
    ///
    /// # Errors
    /// See [`StartError`].
    pub fn start(config: RedisConfig) -> Result<Self, StartError> {
        let client = redis::Client::open(config.url.as_str()).map_err(StartError::Url)?;
        let node = config
            .node_id
            .unwrap_or_else(|| rand::random_range(1..=u16::MAX));
        if node == 0 {
            return Err(StartError::InvalidNodeId);
        }
        let instance: u64 = rand::random();
        let shared = Arc::new(Shared {
            node,
            queued: AtomicUsize::new(0),
            queue_len: config.queue_len,
            link: OnceLock::new(),
            connected: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let (commands, requests) = mpsc::unbounded_channel();
        let shared_config = config.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name(format!("wsworker-redis-{node}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(StartError::Thread(error)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut actor =
                        match Actor::start(client, config, thread_shared, instance).await {
                            Ok(actor) => actor,
                            Err(error) => {
                                let _ = ready_tx.send(Err(error));
                                return;
                            }
                        };
                    actor.ready = Some(ready_tx);
                    actor.run(requests).await;
                });
            })
            .map_err(StartError::Thread)?;
        let bound = start_bound(&shared_config);
        let started = match ready_rx.recv_timeout(bound) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(StartError::Timeout(bound)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(StartError::Thread(
                std::io::Error::other("the engine's thread ended before it started"),
            )),
        };
        if let Err(error) = started {
            drop(commands); // the actor stops
            let _ = thread.join();
            return Err(error);
        }
        Ok(Self {
            shared,
            commands,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether the engine's connection to Redis is up now.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    fn command(&self, cmd: Cmd) {
        // The actor lives as long as this handle; a send fails only while it stops.
        let _ = self.commands.send(cmd);
    }
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        let _ = self.commands.send(Cmd::Stop);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            // Not from the engine's own thread (a Hub dropped by a delivery): it ends alone.
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine")
            .field("node", &self.shared.node)
            .field("connected", &self.is_connected())
            .finish()
    }
}

impl Engine for RedisEngine {
    fn node_id(&self) -> u16 {
        self.shared.node
    }

    fn attach(&self, hub: HubLink) {
        let _ = self.shared.link.set(hub);
    }

    fn publish(&self, envelope: Envelope, confirm: Option<Confirm>) {
        let shared = &self.shared;
        if shared.evicted.load(Ordering::Relaxed) {
            bump(&shared.counters.errors, 1);
            if let Some(confirm) = confirm {
                let _ = confirm.send(Err(EngineError::Stopped));
            }
            return;
        }
        if shared.queued.fetch_add(1, Ordering::AcqRel) >= shared.queue_len {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            bump(&shared.counters.queue_drops, 1);
            if let Some(confirm) = confirm {
                let _ = confirm.send(Err(EngineError::QueueFull));
            }
            return;
        }
        self.command(Cmd::Publish(envelope, confirm));
    }

    fn interest(&self, topic: &Topic, interested: bool) {
        self.command(Cmd::Interest(topic.clone(), interested));
    }

    fn presence(&self, topic: &Topic, conn_id: u64, present: bool) {
        self.command(Cmd::Presence(topic.clone(), conn_id, present));
    }

    fn ungroup(&self, group: &str) {
        self.command(Cmd::Ungroup(group.to_owned()));
    }

    fn query(&self, query: Query) -> QueryFuture {
        let (reply, answer) = oneshot::channel();
        self.command(Cmd::Query(query, reply));
        Box::pin(async move { answer.await.unwrap_or(Err(EngineError::Stopped)) })
    }

    fn sessions(&self) -> Option<&dyn Sessions> {
        Some(self)
    }

    fn prometheus(&self, out: &mut String) {
        let c = &self.shared.counters;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = [
            (
                "published",
                "Ordered messages published to Redis by this node.",
                get(&c.published),
            ),
            (
                "volatile_published",
                "Volatile messages published to Redis by this node.",
                get(&c.volatile),
            ),
            (
                "received",
                "Messages received from Redis pub/sub.",
                get(&c.received),
            ),
            (
                "gap_fills",
                "Reads of a topic's stream to fill a gap.",
                get(&c.fills),
            ),
            (
                "filled",
                "Messages delivered from a topic's stream (not pub/sub).",
                get(&c.filled),
            ),
            (
                "resyncs",
                "Gaps that could not be filled, reported to on_resync.",
                get(&c.resyncs),
            ),
            (
                "queue_drops",
                "Sends refused: the queue for Redis was full, or volatile while Redis was away.",
                get(&c.queue_drops),
            ),
            ("errors", "Operations Redis refused.", get(&c.errors)),
            (
                "reconnects",
                "Connections to Redis made again after losing one.",
                get(&c.reconnects),
            ),
            (
                "purged_nodes",
                "Dead nodes whose memberships this node purged.",
                get(&c.purged_nodes),
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP wsworker_engine_{name}_total {help}");
            let _ = writeln!(out, "# TYPE wsworker_engine_{name}_total counter");
            let _ = writeln!(out, "wsworker_engine_{name}_total {value}");
        }
        let gauges = [
            (
                "queued",
                "Sends waiting for Redis.",
                self.shared.queued.load(Ordering::Relaxed) as u64,
            ),
            (
                "connected",
                "1 while the connection to Redis is up.",
                u64::from(self.is_connected()),
            ),
            ("node_id", "This node's id.", u64::from(self.shared.node)),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP wsworker_engine_{name} {help}");
            let _ = writeln!(out, "# TYPE wsworker_engine_{name} gauge");
            let _ = writeln!(out, "wsworker_engine_{name} {value}");
        }
    }
}

impl Sessions for RedisEngine {
    fn positions(&self, topics: Vec<Topic>, reply: Reply<Vec<Stamp>>) {
        if topics.is_empty() {
            reply(Ok(Vec::new()));
            return;
        }
        self.command(Cmd::Positions(topics, reply));
    }

    fn history(&self, topic: Topic, from: u64, max: usize, reply: Reply<History>) {
        self.command(Cmd::History(topic, from.max(1), max, reply));
    }

    fn save(&self, token: &str, record: Vec<u8>, ttl: Duration, create: bool, reply: Reply<bool>) {
        self.command(Cmd::SessionSave(
            token.to_owned(),
            record,
            ttl,
            create,
            reply,
        ));
    }

    fn claim(&self, token: &str, reply: Reply<Option<Vec<u8>>>) {
        self.command(Cmd::SessionClaim(token.to_owned(), reply));
    }

    fn keep(&self, token: &str, ttl: Duration, alive: bool) {
        self.command(Cmd::SessionKeep(token.to_owned(), ttl, alive));
    }
}

/// How long a start may take: a connection, a reply, the pub/sub connection and its
/// subscriptions.
fn start_bound(config: &RedisConfig) -> Duration {
    config.connect_timeout * 2 + config.response_timeout * 3
}

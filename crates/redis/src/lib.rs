//! The Redis engine of wsworker's [`Hub`](wsworker::Hub): a user's, a group's and
//! everyone's messages reach every node sharing one Redis, each topic in one order on every
//! node, with no silent holes.
//!
//! ```no_run
//! use wsworker::Worker;
//! use wsworker_redis::{RedisConfig, RedisEngine};
//!
//! let mut worker = Worker::new("websocket://0.0.0.0:2346")?;
//! let engine = RedisEngine::start(RedisConfig::new("redis://127.0.0.1:6379"))?;
//! worker.engine(engine)?;
//! let hub = worker.hub();
//! worker.on_message(move |_, msg| {
//!     hub.send_to_all(msg); // every connection of every node
//!     Ok(())
//! });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is guaranteed
//!
//! - **Interest**: a node subscribes to a user's or a group's channel only while it has a
//!   connection of that user or group, plus the channel of all connections and its own
//!   node's (for messages to one of its connections). A group's messages reach only the
//!   nodes with members.
//! - **Order**: every message to a topic gets the topic's next offset in the same atomic
//!   step (a Lua script) that appends it to the topic's stream and publishes it. Every node
//!   — the sender's too — delivers a topic's messages in offset order: no two clients see
//!   a topic's messages in two orders. A node's own messages to one topic keep the order
//!   they were sent in. Volatile sends ([`wsworker::Target::volatile`]) skip all of this.
//! - **No silent holes**: Redis pub/sub drops messages when a subscriber is cut off or
//!   reconnects. A node that sees a gap in a topic's offsets (or finds, after
//!   resubscribing, that the topic moved on) reads the missing range from the topic's
//!   stream once, for all its connections, and holds later messages back until it has. A
//!   range the stream no longer has (trimmed past [`RedisConfig::history_len`], expired
//!   after [`RedisConfig::history_ttl`], or lost with a restarted Redis — a new epoch) is
//!   reported to [`Hub::on_resync`](wsworker::Hub::on_resync), never skipped silently.
//! - **Publishing exactly once**: a batch of publishes whose reply was lost is sent again;
//!   each publish carries its node's serial, and the script skips serials it has seen.
//! - **Faults**: while Redis is unreachable, sends wait in a bounded queue
//!   ([`RedisConfig::queue_len`]) and are sent, in order, when it is back; when the queue
//!   is full a send fails at once (counted; [`Hub::send_confirmed`](wsworker::Hub::send_confirmed)
//!   returns the error). Meanwhile this node's own connections get this node's messages at
//!   once, in the order they were sent (their place in the topic's order is given later,
//!   and other nodes' messages may come before or after them). The engine reconnects and
//!   resubscribes by itself, then fills what it missed.
//! - **Presence**: memberships are written to Redis for cluster-wide queries
//!   ([`Hub::cluster`](wsworker::Hub::cluster)). Each node beats every
//!   [`RedisConfig::heartbeat`]; any node that sees a heartbeat older than
//!   [`RedisConfig::node_ttl`] purges that node's memberships, so a node killed with
//!   `kill -9` leaves none behind for longer than `node_ttl` + `heartbeat`. A node that was
//!   purged while it lived (stalled past the TTL) writes its memberships again; one whose
//!   id another node took meanwhile stops its engine. A node that stops sends what it had
//!   queued (for up to 2 s) and takes its memberships out at once.
//! - **Epochs**: a topic's epoch changes when its history is lost: Redis restarted empty,
//!   restored from an older snapshot, or a replica promoted (each is another run of the
//!   server, which the publish script sees). Offsets never go back within an epoch.
//!
//! Not guaranteed: order between different topics (a user's and a group's messages to one
//! connection interleave as they arrive); delivery to a connection that was not a member
//! when the message reached its node; anything across a Redis failover that loses
//! acknowledged writes beyond what an epoch change reports.

mod actor;
mod engine;
mod order;
mod pubsub;
mod reply;
mod scripts;
mod wire;

use std::time::Duration;

pub use engine::{RedisEngine, StartError};

/// How a [`RedisEngine`] connects and what it keeps. [`RedisConfig::new`] gives the
/// defaults.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub(crate) url: String,
    pub(crate) node_id: Option<u16>,
    pub(crate) prefix: String,
    pub(crate) history_len: usize,
    pub(crate) history_ttl: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) node_ttl: Duration,
    pub(crate) queue_len: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

impl RedisConfig {
    /// Redis at `url` (`redis://[user:password@]host:port[/db]`), with the defaults: a
    /// random node id, prefix `wsw`, 1,000 messages of history per topic kept 5 minutes, a
    /// heartbeat every second and a node TTL of 5 seconds, 10,000 sends queued while Redis
    /// is away, 3 s to connect and 2 s for a reply.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            node_id: None,
            prefix: "wsw".to_owned(),
            history_len: 1_000,
            history_ttl: Duration::from_secs(300),
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(5),
            queue_len: 10_000,
            connect_timeout: Duration::from_secs(3),
            response_timeout: Duration::from_secs(2),
        }
    }

    /// This node's id, unique among the nodes sharing the Redis (1..=65535; random by
    /// default). Starting a node whose id belongs to a live node fails.
    #[must_use]
    pub fn node_id(mut self, id: u16) -> Self {
        self.node_id = Some(id);
        self
    }

    /// The prefix of every key and channel, for several applications on one Redis.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Messages kept per topic for filling gaps (at least; Redis trims approximately).
    #[must_use]
    pub fn history_len(mut self, len: usize) -> Self {
        self.history_len = len.max(1);
        self
    }

    /// How long a topic's history outlives its last message.
    #[must_use]
    pub fn history_ttl(mut self, ttl: Duration) -> Self {
        self.history_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// How often this node tells Redis it lives.
    #[must_use]
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every.max(Duration::from_millis(10));
        self
    }

    /// How old a node's last heartbeat may be before other nodes purge its memberships;
    /// keep it a few heartbeats long.
    #[must_use]
    pub fn node_ttl(mut self, ttl: Duration) -> Self {
        self.node_ttl = ttl.max(Duration::from_millis(10));
        self
    }

    /// Sends (ordered or volatile) waiting for Redis at most; past it sends fail at once.
    #[must_use]
    pub fn queue_len(mut self, len: usize) -> Self {
        self.queue_len = len.max(1);
        self
    }

    /// How long a connection attempt may take.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a reply may take before the connection is given up and made again.
    #[must_use]
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
}

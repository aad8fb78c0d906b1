//! The engine's one task, which owns all its state: the queue of Redis operations
//! (publishes, memberships, queries, topic reads, heartbeats), sent in order, one pipelined
//! batch at a time, over one multiplexed connection; each topic's [`Order`]; the node's
//! memberships as last written. The pub/sub connection is [`crate::pubsub`]'s.
//!
//! A topic's life on a node: interest → read its state (the baseline: its epoch and last
//! offset, read in order with this node's publishes, so that a message sent after a join
//! is after the baseline) → subscribe → read its state again (a check: what was published
//! while subscribing is filled from the stream) → messages in order, gaps filled → no
//! interest → unsubscribe.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout};
use wsworker::hub::engine::{Confirm, History, Query, Reply};
use wsworker::hub::{EngineError, Envelope, HubLink, Resync, Stamp, Topic};

use crate::RedisConfig;
use crate::engine::{Cmd, Shared, StartError, bump};
use crate::order::{Order, Step};
use crate::pubsub::{SubRequest, pubsub_task};
use crate::reply::{
    Entries, State, Top, ids, millis, parse_history, parse_positions, parse_state, position,
};
use crate::scripts;
use crate::wire::{self, Body, Live};

/// Operations sent in one pipelined batch at most.
const MAX_BATCH: usize = 1_024;
/// Bytes of messages in one batch at most (a larger message goes alone).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// The longest wait between two connection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a topic's offset counter outlives its last message, at least: a counter that
/// expires starts a new epoch, which nodes report as a resync.
const MIN_OFFSET_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long Redis remembers an instance's last published serial (for retried batches).
const SERIAL_TTL: Duration = Duration::from_secs(3600);
/// How long a stopping engine may take to send what it had queued.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a stopping engine may take to take its memberships out of Redis.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a resumed session's old token stays dead (its old connection, on a node that
/// has not noticed, cannot write the record back meanwhile).
const CLAIMED_TTL: Duration = Duration::from_secs(3600);
/// This node's own delivered serials remembered (and unseen messages kept), at most.
const MAX_OWN_REMEMBERED: usize = 100_000;

/// What the actor's helpers tell it.
pub(crate) enum Event {
    Batch(Vec<Op>, RedisResult<Vec<RedisResult<Value>>>),
    Connected(RedisResult<Connected>),
    Subscribed(Vec<String>),
    Live(String, Vec<u8>),
    PubsubDown,
}

/// One Redis operation in the actor's queue.
pub(crate) enum Op {
    Publish(Publish),
    Volatile {
        channel: String,
        data: Vec<u8>,
    },
    Presence {
        topic: String,
        conn: u64,
        present: bool,
    },
    Query {
        key: String,
        reply: oneshot::Sender<Result<Vec<u64>, EngineError>>,
    },
    Ungroup {
        channel: String,
    },
    State(StateRead),
    Heartbeat,
    Positions {
        topics: Vec<Topic>,
        reply: Reply<Vec<Stamp>>,
    },
    History {
        topic: Topic,
        from: u64,
        max: usize,
        reply: Reply<History>,
    },
    SessionSave {
        key: String,
        record: Vec<u8>,
        ttl: Duration,
        create: bool,
        reply: Reply<bool>,
    },
    SessionClaim {
        key: String,
        reply: Reply<Option<Vec<u8>>>,
    },
    SessionKeep {
        key: String,
        ttl: Duration,
    },
}

/// A connection to Redis, with what the engine learns of the server on connecting.
pub(crate) struct Connected {
    conn: MultiplexedConnection,
    /// The server's run id (see [`Actor::run_id`]).
    run_id: String,
    /// AOF with `appendfsync always`, and not a promoted replica: a restart loses nothing.
    durable: bool,
}

pub(crate) struct Publish {
    envelope: Envelope,
    serial: u64,
    confirm: Option<Confirm>,
}

/// A read of a topic's state (and a range of its stream), for one incarnation of this
/// node's interest in it: a reply for an earlier one (the node left and came back
/// meanwhile) is dropped.
pub(crate) struct StateRead {
    topic: Topic,
    incarnation: u64,
    purpose: Purpose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Baseline,
    Check,
    Fill { from: u64, to: u64, ticket: u64 },
}

impl Op {
    /// About how many bytes of message it carries.
    fn size(&self) -> usize {
        match self {
            Self::Publish(publish) => 64 + publish.envelope.message.len(),
            Self::Volatile { data, .. } => data.len(),
            // Its reply may hold up to its most entries: alone in its batch.
            Self::History { .. } => MAX_BATCH_BYTES,
            _ => 64,
        }
    }

    /// Redis commands this operation takes in a pipeline.
    fn commands(&self) -> usize {
        match self {
            Self::Presence { .. } => 2,
            _ => 1,
        }
    }

    /// Whether it is an answer to wait for (not queued through an outage: it would be
    /// stale on arrival); then it is answered `Unavailable`.
    fn fail_if_question(self) -> Option<Self> {
        match self {
            Self::Query { reply, .. } => {
                let _ = reply.send(Err(EngineError::Unavailable));
            }
            Self::Positions { reply, .. } => reply(Err(EngineError::Unavailable)),
            Self::History { reply, .. } => reply(Err(EngineError::Unavailable)),
            Self::SessionClaim { reply, .. } => reply(Err(EngineError::Unavailable)),
            // Renewed at the next tick.
            Self::SessionKeep { .. } => {}
            op => return Some(op),
        }
        None
    }
}

/// The scripts' hashes, for EVALSHA (loaded on every connection).
struct Scripts {
    publish: redis::Script,
    state: redis::Script,
    heartbeat: redis::Script,
    leave: redis::Script,
    positions: redis::Script,
    history: redis::Script,
    session_save: redis::Script,
    session_claim: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            publish: redis::Script::new(scripts::PUBLISH),
            state: redis::Script::new(scripts::STATE),
            heartbeat: redis::Script::new(scripts::HEARTBEAT),
            leave: redis::Script::new(scripts::LEAVE),
            positions: redis::Script::new(scripts::POSITIONS),
            history: redis::Script::new(scripts::HISTORY),
            session_save: redis::Script::new(scripts::SESSION_SAVE),
            session_claim: redis::Script::new(scripts::SESSION_CLAIM),
        }
    }

    fn all() -> [&'static str; 8] {
        [
            scripts::PUBLISH,
            scripts::STATE,
            scripts::HEARTBEAT,
            scripts::LEAVE,
            scripts::POSITIONS,
            scripts::HISTORY,
            scripts::SESSION_SAVE,
            scripts::SESSION_CLAIM,
        ]
    }
}

/// A topic this node is interested in.
struct TopicState {
    /// Which interest of this node in the topic this is (reads carry it).
    incarnation: u64,
    /// A check is queued already: one is enough.
    check_queued: bool,
    /// `None` until the baseline is read.
    order: Option<Order<(u64, Body)>>,
    /// The last serial delivered from each origin node: a message published twice (a
    /// retried batch whose first run was lost with a restarted Redis, then published
    /// again in the new epoch) is delivered once.
    origins: HashMap<(u16, u64), u64>,
}

impl TopicState {
    fn new(incarnation: u64) -> Self {
        Self {
            incarnation,
            check_queued: false,
            order: None,
            origins: HashMap::new(),
        }
    }

    /// Whether a message of `origin` with `serial` is new here (and notes it).
    fn first_time(&mut self, origin: (u16, u64), serial: u64) -> bool {
        let last = self.origins.entry(origin).or_insert(0);
        let new = serial > *last;
        *last = (*last).max(serial);
        new
    }
}

/// The engine's state, owned by its one task.
pub(crate) struct Actor {
    config: RedisConfig,
    client: redis::Client,
    shared: Arc<Shared>,
    node: u16,
    instance: u64,
    scripts: Scripts,
    conn: Option<MultiplexedConnection>,
    /// The Redis server's run id, read on connecting: a topic whose offsets were written
    /// by another run (a restart, a failover) starts a new epoch, even if its keys were
    /// restored from a snapshot.
    run_id: String,
    /// The server loses nothing on a restart ([`Connected::durable`]): topics keep their
    /// epochs across its runs.
    durable: bool,
    /// Another live node took this node's id (this one stalled past the TTL): it stops.
    evicted: bool,
    connecting: bool,
    backoff: Duration,
    outbox: VecDeque<Op>,
    in_flight: bool,
    /// The serial of this node's last publish.
    serial: u64,
    /// The highest serial of this node's own messages seen coming back.
    seen_serial: u64,
    /// This node's messages Redis took and has not sent back yet (for topics this node is
    /// in): if the connection fails now, they are delivered here before those not taken.
    unseen: VecDeque<(u64, Envelope)>,
    /// The serials of this node's own messages delivered here, early (while Redis was
    /// away) or in order: each once, whichever way comes first. (Other nodes' messages are
    /// kept once by [`TopicState::first_time`]; this node's cannot be, as an early delivery
    /// may come before an older message still held for its topic's order.)
    own_delivered: BTreeSet<u64>,
    /// The serials of this node's own messages delivered early (with no place) to the
    /// connections that do not resume: those that do get them once they have their place.
    early: BTreeSet<u64>,
    /// Sessions of this node's live connections, renewed every third of their TTL.
    sessions: HashMap<String, Duration>,
    last_keep: Instant,
    topics: HashMap<Topic, TopicState>,
    /// Interests begun so far (see [`TopicState::incarnation`]).
    incarnations: u64,
    /// This node's memberships as written to Redis: written again if Redis lost them.
    presence: HashMap<Topic, HashSet<u64>>,
    registered: bool,
    heartbeat_queued: bool,
    /// Told once the node hears its base channels (all, its node's): [`RedisEngine::start`]
    /// returns then, so that nothing sent after it is missed.
    pub(crate) ready: Option<std::sync::mpsc::Sender<Result<(), StartError>>>,
    /// Base channels not yet subscribed.
    unready: HashSet<String>,
    subs: mpsc::UnboundedSender<SubRequest>,
    events_tx: mpsc::UnboundedSender<Event>,
    events: mpsc::UnboundedReceiver<Event>,
}

impl Actor {
    /// Connects, registers the node (its first heartbeat) and starts the pub/sub task.
    pub(crate) async fn start(
        client: redis::Client,
        config: RedisConfig,
        shared: Arc<Shared>,
        instance: u64,
    ) -> Result<Self, StartError> {
        let Connected {
            mut conn,
            run_id,
            durable,
        } = connect(&client, &config)
            .await
            .map_err(StartError::Connect)?;
        let node = shared.node;
        let scripts = Scripts::new();
        let beat: RedisResult<Value> = heartbeat_invocation(&scripts, &config, node, instance)
            .invoke_async(&mut conn)
            .await;
        if let Err(error) = beat {
            return Err(match error.code() {
                Some("WSWORKER") => StartError::NodeIdTaken(node),
                _ => StartError::Connect(error),
            });
        }
        shared.connected.store(true, Ordering::Relaxed);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (subs, sub_requests) = mpsc::unbounded_channel();
        tokio::spawn(pubsub_task(
            client.clone(),
            config.clone(),
            sub_requests,
            events_tx.clone(),
        ));
        let mut actor = Self {
            config,
            client,
            shared,
            node,
            instance,
            scripts,
            conn: Some(conn),
            run_id,
            durable,
            evicted: false,
            connecting: false,
            backoff: Duration::from_millis(50),
            outbox: VecDeque::new(),
            in_flight: false,
            serial: 0,
            unseen: VecDeque::new(),
            seen_serial: 0,
            own_delivered: BTreeSet::new(),
            early: BTreeSet::new(),
            sessions: HashMap::new(),
            last_keep: Instant::now(),
            topics: HashMap::new(),
            incarnations: 0,
            presence: HashMap::new(),
            registered: true,
            heartbeat_queued: false,
            ready: None,
            unready: HashSet::new(),
            subs,
            events_tx,
            events,
        };
        for topic in [Topic::All, Topic::Node(node)] {
            actor.unready.insert(actor.channel(&topic));
            actor.interest(topic, true);
        }
        Ok(actor)
    }

    pub(crate) async fn run(&mut self, mut commands: mpsc::UnboundedReceiver<Cmd>) {
        let mut beat = tokio::time::interval(self.config.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Cmd::Stop) | None => break,
                    Some(cmd) => {
                        self.command(cmd);
                        // Take whatever else is waiting before sending: one batch for all.
                        while let Ok(cmd) = commands.try_recv() {
                            if matches!(cmd, Cmd::Stop) {
                                self.stop().await;
                                return;
                            }
                            self.command(cmd);
                        }
                    }
                },
                Some(event) = self.events.recv() => self.event(event),
                _ = beat.tick() => {
                    if !self.heartbeat_queued {
                        self.heartbeat_queued = true;
                        self.outbox.push_back(Op::Heartbeat);
                    }
                    self.keep_sessions();
                }
            }
            if self.evicted {
                self.shared.evicted.store(true, Ordering::Relaxed);
                break;
            }
            self.pump();
        }
        self.stop().await;
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Publish(envelope, confirm) => self.publish(envelope, confirm),
            Cmd::Interest(topic, interested) => self.interest(topic, interested),
            Cmd::Presence(topic, conn, present) => {
                let entry = self.presence.entry(topic.clone()).or_default();
                if present {
                    entry.insert(conn);
                } else {
                    entry.remove(&conn);
                    if entry.is_empty() {
                        self.presence.remove(&topic);
                    }
                }
                self.outbox.push_back(Op::Presence {
                    topic: topic.key(),
                    conn,
                    present,
                });
            }
            Cmd::Ungroup(group) => {
                let channel = self.channel(&Topic::Group(group.into()));
                self.outbox.push_back(Op::Ungroup { channel });
            }
            Cmd::Query(_, reply) if self.conn.is_none() => {
                // Not queued: an answer from after the outage would be stale on arrival.
                let _ = reply.send(Err(EngineError::Unavailable));
            }
            Cmd::Query(query, reply) => {
                let topic = match query {
                    Query::UidConnections(uid) => Topic::Uid(uid),
                    Query::GroupMembers(group) => Topic::Group(group),
                };
                let key = self.key("p", &topic);
                self.outbox.push_back(Op::Query { key, reply });
            }
            Cmd::Positions(topics, reply) => self.question(Op::Positions { topics, reply }),
            Cmd::History(topic, from, max, reply) => self.question(Op::History {
                topic,
                from,
                max,
                reply,
            }),
            Cmd::SessionSave(token, record, ttl, create, reply) => {
                let key = self.session_key(&token);
                self.outbox.push_back(Op::SessionSave {
                    key,
                    record,
                    ttl,
                    create,
                    reply,
                });
            }
            Cmd::SessionClaim(token, reply) => {
                let key = self.session_key(&token);
                self.question(Op::SessionClaim { key, reply });
            }
            Cmd::SessionKeep(token, ttl, alive) => {
                let key = self.session_key(&token);
                if alive {
                    self.sessions.insert(key, ttl);
                } else {
                    // Its window starts now.
                    self.sessions.remove(&key);
                    self.outbox.push_back(Op::SessionKeep { key, ttl });
                }
            }
            Cmd::Stop => {}
        }
    }

    /// Queues a question, or answers it `Unavailable` while Redis is away.
    fn question(&mut self, op: Op) {
        if self.conn.is_none() {
            let _ = op.fail_if_question();
        } else {
            self.outbox.push_back(op);
        }
    }

    /// Renews the TTL of the sessions of this node's live connections, every third of it.
    fn keep_sessions(&mut self) {
        let Some(shortest) = self.sessions.values().min().copied() else {
            return;
        };
        if self.last_keep.elapsed() < shortest / 3 {
            return;
        }
        self.last_keep = Instant::now();
        let keys: Vec<(String, Duration)> =
            self.sessions.iter().map(|(k, t)| (k.clone(), *t)).collect();
        // A third more than the window: renewed every third, a session whose node dies
        // still has the whole window left.
        for (key, ttl) in keys {
            self.outbox.push_back(Op::SessionKeep {
                key,
                ttl: ttl + ttl / 3,
            });
        }
    }

    fn publish(&mut self, envelope: Envelope, confirm: Option<Confirm>) {
        if envelope.volatile && self.conn.is_none() {
            // Volatile: worthless once late. Dropped, not queued, while Redis is away.
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            bump(&self.shared.counters.queue_drops, 1);
            if let Some(confirm) = confirm {
                let _ = confirm.send(Err(EngineError::Unavailable));
            }
            return;
        }
        if envelope.volatile {
            let channel = self.channel(&envelope.topic);
            let data = wire::volatile(&wire::encode(
                &envelope,
                (self.node, self.instance),
                0,
                false,
            ));
            self.outbox.push_back(Op::Volatile { channel, data });
            if let Some(confirm) = confirm {
                let _ = confirm.send(Ok(None));
            }
            return;
        }
        self.serial += 1;
        let publish = Publish {
            envelope,
            serial: self.serial,
            confirm,
        };
        if self.conn.is_none() {
            self.deliver_early(&publish);
        }
        self.outbox.push_back(Op::Publish(publish));
    }

    fn interest(&mut self, topic: Topic, interested: bool) {
        if interested {
            if self.topics.contains_key(&topic) {
                return;
            }
            self.incarnations += 1;
            let incarnation = self.incarnations;
            self.topics
                .insert(topic.clone(), TopicState::new(incarnation));
            self.outbox.push_back(Op::State(StateRead {
                topic,
                incarnation,
                purpose: Purpose::Baseline,
            }));
        } else if self.topics.remove(&topic).is_some() {
            let _ = self
                .subs
                .send(SubRequest::Unsubscribe(self.channel(&topic)));
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Batch(ops, result) => self.batch_done(ops, result),
            Event::Connected(result) => {
                self.connecting = false;
                match result {
                    Ok(connected) => {
                        tracing::info!(node = self.node, "connected to Redis again");
                        self.conn = Some(connected.conn);
                        self.run_id = connected.run_id;
                        self.durable = connected.durable;
                        // The heartbeat first: memberships are written only by a node
                        // that is registered (a purge finds them).
                        self.outbox.retain(|op| !matches!(op, Op::Heartbeat));
                        self.outbox.push_front(Op::Heartbeat);
                        self.heartbeat_queued = true;
                        self.backoff = Duration::from_millis(50);
                        self.shared.connected.store(true, Ordering::Relaxed);
                        bump(&self.shared.counters.reconnects, 1);
                    }
                    Err(error) => {
                        tracing::debug!(%error, "connecting to Redis failed");
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                        self.reconnect();
                    }
                }
            }
            Event::Subscribed(channels) => {
                for channel in &channels {
                    self.unready.remove(channel);
                }
                if self.unready.is_empty()
                    && let Some(ready) = self.ready.take()
                {
                    let _ = ready.send(Ok(()));
                }
                for channel in channels {
                    let Some(topic) = self.topic_of(&channel) else {
                        continue;
                    };
                    self.check(topic);
                }
            }
            Event::Live(channel, payload) => self.live(&channel, &payload),
            Event::PubsubDown => {
                tracing::warn!(node = self.node, "lost the Redis pub/sub connection");
                bump(&self.shared.counters.reconnects, 1);
            }
        }
    }

    /// Sends the next batch, unless one is in flight or the connection is down.
    fn pump(&mut self) {
        if self.in_flight || self.outbox.is_empty() {
            return;
        }
        let Some(mut conn) = self.conn.clone() else {
            return;
        };
        // By count and by bytes: a batch's reply must come well within the response
        // timeout, or the batch would fail and be sent again for ever.
        let mut bytes = 0;
        let n = self
            .outbox
            .iter()
            .take(MAX_BATCH)
            .take_while(|op| {
                let first = bytes == 0;
                bytes += op.size();
                first || bytes <= MAX_BATCH_BYTES
            })
            .count();
        let ops: Vec<Op> = self.outbox.drain(..n).collect();
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for op in &ops {
            self.add(op, &mut pipe);
        }
        self.in_flight = true;
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let result = pipe.query_async(&mut conn).await;
            let _ = events.send(Event::Batch(ops, result));
        });
    }

    fn add(&self, op: &Op, pipe: &mut redis::Pipeline) {
        let config = &self.config;
        match op {
            Op::Publish(publish) => {
                let topic = &publish.envelope.topic;
                let body = wire::encode(
                    &publish.envelope,
                    (self.node, self.instance),
                    publish.serial,
                    false,
                );
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.publish.get_hash())
                    .arg(3)
                    .arg(self.key("t", topic))
                    .arg(self.key("s", topic))
                    .arg(format!(
                        "{}:serial:{}:{}",
                        config.prefix, self.node, self.instance
                    ))
                    .arg(self.channel(topic))
                    .arg(&body[..])
                    .arg(config.history_len)
                    .arg(millis(config.history_ttl))
                    .arg(millis(config.history_ttl.max(MIN_OFFSET_TTL)))
                    .arg(publish.serial)
                    .arg(millis(SERIAL_TTL))
                    .arg(&self.run_id)
                    .arg(if self.durable { "1" } else { "0" })
                    .arg(wire::message_id(self.instance, publish.serial));
            }
            Op::Positions { topics, .. } => {
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.positions.get_hash())
                    .arg(topics.len() * 2);
                for topic in topics {
                    pipe.arg(self.key("t", topic)).arg(self.key("s", topic));
                }
                pipe.arg(&self.run_id)
                    .arg(if self.durable { "1" } else { "0" })
                    .arg(millis(config.history_ttl.max(MIN_OFFSET_TTL)));
            }
            Op::History {
                topic, from, max, ..
            } => {
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.history.get_hash())
                    .arg(2)
                    .arg(self.key("t", topic))
                    .arg(self.key("s", topic))
                    .arg(*from)
                    .arg(*max)
                    .arg(&self.run_id)
                    .arg(if self.durable { "1" } else { "0" });
            }
            Op::SessionSave {
                key,
                record,
                ttl,
                create,
                ..
            } => {
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.session_save.get_hash())
                    .arg(2)
                    .arg(key)
                    .arg(format!("{key}:claimed"))
                    .arg(&record[..])
                    .arg(millis(*ttl))
                    .arg(if *create { "1" } else { "0" });
            }
            Op::SessionClaim { key, .. } => {
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.session_claim.get_hash())
                    .arg(2)
                    .arg(key)
                    .arg(format!("{key}:claimed"))
                    .arg(millis(CLAIMED_TTL));
            }
            Op::SessionKeep { key, ttl } => {
                pipe.cmd("PEXPIRE").arg(key).arg(millis(*ttl));
            }
            Op::Volatile { channel, data } => {
                pipe.cmd("PUBLISH").arg(channel).arg(&data[..]);
            }
            Op::Presence {
                topic,
                conn,
                present,
            } => {
                let verb = if *present { "SADD" } else { "SREM" };
                pipe.cmd(verb)
                    .arg(format!("{}:p:{topic}", config.prefix))
                    .arg(conn);
                pipe.cmd(verb)
                    .arg(format!("{}:n:{}", config.prefix, self.node))
                    .arg(format!("{conn}|{topic}"));
            }
            Op::Query { key, .. } => {
                pipe.cmd("SMEMBERS").arg(key);
            }
            Op::Ungroup { channel } => {
                pipe.cmd("PUBLISH")
                    .arg(channel)
                    .arg(format!("xungroup,{}", self.node));
            }
            Op::State(read) => {
                let (from, to) = match read.purpose {
                    Purpose::Fill { from, to, .. } => (from, to),
                    _ => (0, 0),
                };
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.state.get_hash())
                    .arg(2)
                    .arg(self.key("t", &read.topic))
                    .arg(self.key("s", &read.topic))
                    .arg(from)
                    .arg(to);
            }
            Op::Heartbeat => {
                pipe.cmd("EVALSHA")
                    .arg(self.scripts.heartbeat.get_hash())
                    .arg(2)
                    .arg(format!("{}:nodes", config.prefix))
                    .arg(format!("{}:node:{}", config.prefix, self.node))
                    .arg(self.node)
                    .arg(self.instance.to_string())
                    .arg(millis(config.node_ttl))
                    .arg(&config.prefix);
            }
        }
    }

    fn batch_done(&mut self, ops: Vec<Op>, result: RedisResult<Vec<RedisResult<Value>>>) {
        self.in_flight = false;
        let results = match result {
            Ok(results) => results,
            Err(error) => {
                tracing::warn!(%error, node = self.node, "a batch to Redis failed; sent again once reconnected");
                self.requeue(ops);
                self.lost_connection();
                return;
            }
        };
        let mut results = results.into_iter();
        let mut retry = Vec::new();
        for op in ops {
            let replies: Vec<RedisResult<Value>> = results.by_ref().take(op.commands()).collect();
            let first = replies
                .into_iter()
                .next()
                .unwrap_or_else(|| Err(RedisError::from(std::io::Error::other("no reply"))));
            if matches!(&first, Err(e) if e.code() == Some("NOSCRIPT")) {
                retry.push(op);
                continue;
            }
            self.reply(op, first);
        }
        if !retry.is_empty() {
            // Redis forgot the scripts (restarted between two batches): load them again.
            self.requeue(retry);
            self.lost_connection();
        }
    }

    fn requeue(&mut self, ops: Vec<Op>) {
        for op in ops.into_iter().rev() {
            self.outbox.push_front(op);
        }
    }

    fn reply(&mut self, op: Op, reply: RedisResult<Value>) {
        let counters = &self.shared.counters;
        match op {
            Op::Publish(publish) => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                let answer = match reply {
                    Ok(value) => {
                        bump(&counters.published, 1);
                        if publish.serial > self.seen_serial
                            && self.topics.contains_key(&publish.envelope.topic)
                            && self.unseen.len() < MAX_OWN_REMEMBERED
                        {
                            self.unseen
                                .push_back((publish.serial, publish.envelope.clone()));
                        }
                        Ok(position(&value))
                    }
                    Err(error) => {
                        bump(&counters.errors, 1);
                        tracing::warn!(%error, "Redis refused a publish");
                        Err(EngineError::Backend(error.to_string()))
                    }
                };
                if let Some(confirm) = publish.confirm {
                    let _ = confirm.send(answer);
                }
            }
            Op::Volatile { .. } => {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                match reply {
                    Ok(_) => bump(&counters.volatile, 1),
                    Err(_) => bump(&counters.errors, 1),
                }
            }
            Op::Presence { .. } | Op::Ungroup { .. } => {
                if let Err(error) = reply {
                    bump(&counters.errors, 1);
                    tracing::warn!(%error, "Redis refused a membership change");
                }
            }
            Op::Query { reply: answer, .. } => {
                let _ = answer.send(
                    reply
                        .map(|value| ids(&value))
                        .map_err(|error| EngineError::Backend(error.to_string())),
                );
            }
            Op::State(read) => {
                let parsed = reply.as_ref().ok().and_then(parse_state);
                match parsed {
                    Some(state) => self.state(read, state),
                    None => {
                        bump(&counters.errors, 1);
                        tracing::warn!(reply = ?reply.err(), topic = %read.topic, "reading a topic's state failed; again");
                        // Again, after what is queued: a topic whose keys hold another
                        // program's data is read again and again, but never misread.
                        self.outbox.push_back(Op::State(read));
                    }
                }
            }
            Op::Positions {
                topics,
                reply: reply_fn,
            } => {
                let answer = match reply {
                    Ok(value) => match parse_positions(&value) {
                        Some(tops) if tops.len() == topics.len() => {
                            Ok(tops.into_iter().map(|top| top_stamp(&top)).collect())
                        }
                        _ => Err(EngineError::Backend(format!(
                            "unexpected positions reply {value:?}"
                        ))),
                    },
                    Err(error) => Err(EngineError::Backend(error.to_string())),
                };
                reply_fn(answer);
            }
            Op::History {
                topic,
                reply: reply_fn,
                ..
            } => {
                let answer = match reply {
                    Ok(value) => match parse_history(&value) {
                        Some((top, entries)) => Ok(history(&topic, &top, entries)),
                        None => Err(EngineError::Backend(format!(
                            "unexpected history reply {value:?}"
                        ))),
                    },
                    Err(error) => Err(EngineError::Backend(error.to_string())),
                };
                reply_fn(answer);
            }
            Op::SessionSave {
                reply: reply_fn, ..
            } => {
                reply_fn(
                    reply
                        .map(|value| matches!(value, Value::Int(1)))
                        .map_err(|error| EngineError::Backend(error.to_string())),
                );
            }
            Op::SessionClaim {
                reply: reply_fn, ..
            } => {
                reply_fn(
                    reply
                        .map(|value| match value {
                            Value::BulkString(record) => Some(record),
                            _ => None,
                        })
                        .map_err(|error| EngineError::Backend(error.to_string())),
                );
            }
            Op::SessionKeep { .. } => {}
            Op::Heartbeat => {
                self.heartbeat_queued = false;
                match reply {
                    Ok(value) => self.heartbeat(&value),
                    Err(error) if error.code() == Some("WSWORKER") => {
                        tracing::error!(%error, node = self.node, "another node took this node's id; stopping the engine");
                        self.evicted = true;
                    }
                    Err(error) => {
                        bump(&counters.errors, 1);
                        tracing::error!(%error, node = self.node, "heartbeat refused");
                    }
                }
            }
        }
    }

    /// Reads a topic's state again after (re)subscribing, unless a check is queued.
    fn check(&mut self, topic: Topic) {
        let Some(state) = self.topics.get_mut(&topic) else {
            return;
        };
        if state.order.is_none() || state.check_queued {
            return; // the baseline's own subscription will check
        }
        state.check_queued = true;
        let incarnation = state.incarnation;
        self.outbox.push_back(Op::State(StateRead {
            topic,
            incarnation,
            purpose: Purpose::Check,
        }));
    }

    /// A topic's state (and stream range) read back.
    fn state(&mut self, read: StateRead, (top, epoch, entries): State) {
        let stamp_epoch = epoch.unwrap_or(0);
        let topic = read.topic;
        let Some(state) = self.topics.get_mut(&topic) else {
            return; // no interest any more
        };
        if state.incarnation != read.incarnation {
            return; // for an interest that ended since
        }
        let mut steps = Vec::new();
        match (read.purpose, &mut state.order) {
            (Purpose::Baseline, order @ None) => {
                *order = Some(Order::new(epoch, top));
                let _ = self.subs.send(SubRequest::Subscribe(self.channel(&topic)));
            }
            (Purpose::Check, Some(order)) => {
                state.check_queued = false;
                order.on_check(epoch, top, &mut steps);
            }
            (Purpose::Fill { to, ticket, .. }, Some(order)) => {
                bump(&self.shared.counters.fills, 1);
                let entries = entries
                    .into_iter()
                    .filter_map(|(offset, body)| Some((offset, (offset, wire::decode(&body)?))))
                    .collect::<Vec<_>>();
                bump(&self.shared.counters.filled, entries.len() as u64);
                order.on_fill(ticket, epoch, top, entries, to, &mut steps);
            }
            _ => {}
        }
        self.steps(&topic, stamp_epoch, steps);
    }

    fn heartbeat(&mut self, value: &Value) {
        let (new, purged) = match value {
            Value::Array(items) if items.len() == 2 => (
                matches!(items[0], Value::Int(1)),
                match &items[1] {
                    Value::Array(ids) => ids.len(),
                    _ => 0,
                },
            ),
            _ => (false, 0),
        };
        if purged > 0 {
            tracing::info!(purged, "purged the memberships of dead nodes");
            bump(&self.shared.counters.purged_nodes, purged as u64);
        }
        if new && self.registered {
            // Redis lost this node (restarted, or purged it while it stalled): write its
            // memberships again.
            tracing::warn!(
                node = self.node,
                "Redis had lost this node; writing its memberships again"
            );
            let entries: Vec<(String, u64)> = self
                .presence
                .iter()
                .flat_map(|(topic, ids)| ids.iter().map(move |id| (topic.key(), *id)))
                .collect();
            for (topic, conn) in entries {
                self.outbox.push_back(Op::Presence {
                    topic,
                    conn,
                    present: true,
                });
            }
        }
        self.registered = true;
    }

    /// A message from pub/sub.
    fn live(&mut self, channel: &str, payload: &[u8]) {
        bump(&self.shared.counters.received, 1);
        let Some(topic) = self.topic_of(channel) else {
            return;
        };
        match wire::parse_live(payload) {
            Some(Live::Ordered {
                offset,
                epoch,
                body,
            }) => {
                let Some(body) = wire::decode(body) else {
                    tracing::warn!(%topic, "a message in Redis is not the engine's");
                    return;
                };
                if (body.origin, body.instance) == (self.node, self.instance) {
                    self.saw_own(body.serial);
                }
                let Some(order) = self.topics.get_mut(&topic).and_then(|s| s.order.as_mut()) else {
                    return;
                };
                let mut steps = Vec::new();
                order.on_live(epoch, offset, (offset, body), &mut steps);
                self.steps(&topic, epoch, steps);
            }
            Some(Live::Volatile(body)) => {
                let Some(body) = wire::decode(body) else {
                    return;
                };
                if body.origin != self.node && self.topics.contains_key(&topic) {
                    let mut envelope = body.into_envelope(topic);
                    envelope.volatile = true;
                    if let Some(link) = self.link() {
                        link.deliver(&envelope, None);
                    }
                }
            }
            Some(Live::Control(control)) => {
                let from_here = format!("ungroup,{}", self.node);
                if control.starts_with(b"ungroup,")
                    && control != from_here.as_bytes()
                    && let (Topic::Group(group), Some(link)) = (&topic, self.link())
                {
                    link.ungroup(group);
                }
            }
            None => tracing::warn!(%topic, "a message in Redis is not the engine's"),
        }
    }

    /// Carries out a topic's steps; `epoch` is the epoch of the messages they deliver.
    fn steps(&mut self, topic: &Topic, epoch: u64, steps: Vec<Step<(u64, Body)>>) {
        for step in steps {
            match step {
                Step::Deliver((offset, body)) => {
                    let stamp = Stamp {
                        epoch,
                        offset,
                        id: body.id(),
                    };
                    let own = (body.origin, body.instance) == (self.node, self.instance);
                    if own && self.early.remove(&body.serial) {
                        // Its place, for the connections that resume.
                        self.saw_own(body.serial);
                        if let Some(link) = self.link() {
                            link.deliver_late(&body.into_envelope(topic.clone()), stamp);
                        }
                        continue;
                    }
                    let first = if own {
                        self.saw_own(body.serial);
                        self.note_own(body.serial)
                    } else {
                        self.topics.get_mut(topic).is_some_and(|state| {
                            state.first_time((body.origin, body.instance), body.serial)
                        })
                    };
                    if !first {
                        continue;
                    }
                    if let Some(link) = self.link() {
                        link.deliver(&body.into_envelope(topic.clone()), Some(stamp));
                    }
                }
                Step::Fill { from, to, ticket } => {
                    let Some(state) = self.topics.get(topic) else {
                        continue;
                    };
                    self.outbox.push_back(Op::State(StateRead {
                        topic: topic.clone(),
                        incarnation: state.incarnation,
                        purpose: Purpose::Fill { from, to, ticket },
                    }));
                }
                Step::Resync { lost, epoch } => {
                    bump(&self.shared.counters.resyncs, 1);
                    if let Some(link) = self.link() {
                        link.resync(&Resync {
                            topic: topic.clone(),
                            lost,
                            epoch,
                        });
                    }
                }
            }
        }
    }

    /// The connection is gone: this node's queued messages go to its own connections now
    /// (in the order they were sent), and a new connection is sought.
    fn lost_connection(&mut self) {
        if self.conn.take().is_some() {
            self.shared.connected.store(false, Ordering::Relaxed);
        }
        // First what Redis took but has not sent back yet, then what it has not taken: the
        // order they were sent in.
        let unseen = std::mem::take(&mut self.unseen);
        let queued = self.outbox.iter().filter_map(|op| match op {
            Op::Publish(publish) => Some((publish.serial, publish.envelope.clone())),
            _ => None,
        });
        let early: Vec<(u64, Envelope)> = unseen.into_iter().chain(queued).collect();
        for (serial, envelope) in early {
            if serial > self.seen_serial {
                self.deliver_early_envelope(serial, &envelope);
            }
        }
        // Questions are not queued through an outage.
        let mut kept = VecDeque::with_capacity(self.outbox.len());
        for op in self.outbox.drain(..) {
            if let Some(op) = op.fail_if_question() {
                kept.push_back(op);
            }
        }
        self.outbox = kept;
        self.reconnect();
    }

    /// This node's message `serial` came back from Redis.
    fn saw_own(&mut self, serial: u64) {
        self.seen_serial = self.seen_serial.max(serial);
        while self
            .unseen
            .front()
            .is_some_and(|(s, _)| *s <= self.seen_serial)
        {
            self.unseen.pop_front();
        }
    }

    fn deliver_early(&mut self, publish: &Publish) {
        let envelope = publish.envelope.clone();
        self.deliver_early_envelope(publish.serial, &envelope);
    }

    fn deliver_early_envelope(&mut self, serial: u64, envelope: &Envelope) {
        if !self.topics.contains_key(&envelope.topic) || !self.note_own(serial) {
            return; // no connection of this node is in the topic, or it has it already
        }
        self.early.insert(serial);
        while self.early.len() > MAX_OWN_REMEMBERED {
            self.early.pop_first();
        }
        if let Some(link) = self.link() {
            link.deliver_early(envelope);
        }
    }

    /// Notes this node's message `serial` delivered here; whether it was not already.
    fn note_own(&mut self, serial: u64) -> bool {
        let new = self.own_delivered.insert(serial);
        while self.own_delivered.len() > MAX_OWN_REMEMBERED {
            self.own_delivered.pop_first();
        }
        new
    }

    fn reconnect(&mut self) {
        if self.connecting {
            return;
        }
        self.connecting = true;
        let (client, config, events) = (
            self.client.clone(),
            self.config.clone(),
            self.events_tx.clone(),
        );
        let backoff = self.backoff;
        tokio::spawn(async move {
            sleep(backoff).await;
            let _ = events.send(Event::Connected(connect(&client, &config).await));
        });
    }

    /// Takes this node's memberships out of Redis (best effort, bounded) and fails what
    /// was still queued.
    async fn stop(&mut self) {
        // What the application sent before it stopped goes out first, if Redis is there:
        // batch after batch, for at most FLUSH_TIMEOUT.
        self.outbox.retain(|op| {
            matches!(
                op,
                Op::Publish(_)
                    | Op::Volatile { .. }
                    | Op::SessionSave { .. }
                    | Op::SessionKeep { .. }
            )
        });
        let deadline = tokio::time::Instant::now() + FLUSH_TIMEOUT;
        loop {
            if !self.in_flight {
                if self.outbox.is_empty() || self.conn.is_none() {
                    break;
                }
                self.pump();
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Batch(ops, result))) => self.batch_done(ops, result),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        if let Some(mut conn) = self.conn.take() {
            let mut leave = self.scripts.leave.prepare_invoke();
            leave
                .key(format!("{}:nodes", self.config.prefix))
                .arg(self.node)
                .arg(self.instance.to_string())
                .arg(&self.config.prefix);
            let _ = timeout(LEAVE_TIMEOUT, leave.invoke_async::<Value>(&mut conn)).await;
        }
        for op in self.outbox.drain(..) {
            if let Op::Publish(Publish {
                confirm: Some(confirm),
                ..
            }) = op
            {
                let _ = confirm.send(Err(EngineError::Stopped));
            }
        }
        self.shared.connected.store(false, Ordering::Relaxed);
    }

    fn session_key(&self, token: &str) -> String {
        format!("{}:sess:{token}", self.config.prefix)
    }

    fn link(&self) -> Option<&HubLink> {
        self.shared.link.get()
    }

    fn key(&self, kind: &str, topic: &Topic) -> String {
        format!("{}:{kind}:{}", self.config.prefix, topic.key())
    }

    fn channel(&self, topic: &Topic) -> String {
        self.key("c", topic)
    }

    fn topic_of(&self, channel: &str) -> Option<Topic> {
        let key = channel
            .strip_prefix(self.config.prefix.as_str())?
            .strip_prefix(":c:")?;
        Topic::from_key(key)
    }
}

fn heartbeat_invocation<'a>(
    scripts: &'a Scripts,
    config: &RedisConfig,
    node: u16,
    instance: u64,
) -> redis::ScriptInvocation<'a> {
    let mut invocation = scripts.heartbeat.prepare_invoke();
    invocation
        .key(format!("{}:nodes", config.prefix))
        .key(format!("{}:node:{node}", config.prefix))
        .arg(node)
        .arg(instance.to_string())
        .arg(millis(config.node_ttl))
        .arg(&config.prefix);
    invocation
}

/// The stamp of a topic's last message, from a [`Top`].
fn top_stamp(&(offset, epoch, id): &Top) -> Stamp {
    Stamp { epoch, offset, id }
}

/// A topic's history from the history script's answer.
fn history(topic: &Topic, top: &Top, entries: Option<Entries>) -> History {
    let top_stamp = top_stamp(top);
    let entries = entries.map(|entries| {
        entries
            .into_iter()
            .filter_map(|(offset, body)| {
                let body = wire::decode(&body)?;
                let stamp = Stamp {
                    epoch: top_stamp.epoch,
                    offset,
                    id: body.id(),
                };
                Some((stamp, body.into_envelope(topic.clone())))
            })
            .collect()
    });
    History {
        top: top_stamp,
        entries,
    }
}

/// A multiplexed connection with the engine's timeouts, its scripts loaded.
async fn connect(client: &redis::Client, config: &RedisConfig) -> RedisResult<Connected> {
    let settings = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(Some(config.response_timeout));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&settings)
        .await?;
    for script in Scripts::all() {
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query_async(&mut conn)
            .await?;
    }
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    let field = |info: &str, name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let run_id = field(&info, "run_id");
    let durable = durable(&mut conn, field).await;
    Ok(Connected {
        conn,
        run_id,
        durable,
    })
}

/// Whether the server loses nothing it acknowledged on a restart: AOF on with `appendfsync
/// always`, and it was never a replica promoted (whose data may lack the old primary's last
/// writes). A server that does not let us ask (`CONFIG` renamed away) is taken as not
/// durable.
async fn durable(conn: &mut MultiplexedConnection, field: impl Fn(&str, &str) -> String) -> bool {
    let persistence: RedisResult<String> = redis::cmd("INFO")
        .arg("persistence")
        .query_async(conn)
        .await;
    let replication: RedisResult<String> = redis::cmd("INFO")
        .arg("replication")
        .query_async(conn)
        .await;
    let fsync: RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query_async(conn)
        .await;
    let (Ok(persistence), Ok(replication), Ok(fsync)) = (persistence, replication, fsync) else {
        return false;
    };
    field(&persistence, "aof_enabled") == "1"
        && fsync.get(1).is_some_and(|f| f == "always")
        && field(&replication, "role") == "master"
        && field(&replication, "master_replid2")
            .bytes()
            .all(|b| b == b'0')
}

//! The Hub's way past one process: an [`Engine`] carries messages, memberships and
//! queries between nodes (the `wsworker-redis` crate's Redis engine, say), and hands what
//! arrives for this node back through a [`HubLink`].
//!
//! Without an engine the Hub keeps everything in the process: its worker threads share it
//! and every send is delivered at once. With one:
//!
//! - a message is addressed to a [`Topic`] (all, a user, a group, a node for one
//!   connection); the engine gives it the topic's next [`Position`] and delivers it, on every
//!   node with members of the topic — this one included — in position order, through
//!   [`HubLink::deliver`]; a node never sees a topic's messages in an order another node
//!   does not;
//! - [`Envelope::volatile`] messages skip the order: delivered here at once, sent to the
//!   other nodes with no position and no history;
//! - the Hub tells the engine which topics this node has members of
//!   ([`Engine::interest`]), so that a node hears only what its connections need, and every
//!   membership ([`Engine::presence`]), so that queries answer for the whole cluster;
//! - what an engine cannot deliver in order (a gap it could not fill) it reports with
//!   [`HubLink::resync`], which reaches the application's
//!   [`Hub::on_resync`](super::Hub::on_resync).
//!
//! An engine's methods are called from the worker threads, under the Hub's index lock for
//! membership changes: they queue and return, never wait on the network.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::oneshot;
use wsworker_proto::Message;

use super::{Hub, WeakHub};

/// Bits of a connection id below the node id: a connection id is `node << NODE_SHIFT |
/// serial`, below 2^53 so that JavaScript's numbers hold it exactly.
pub const NODE_SHIFT: u32 = 37;

/// The node of connection `conn_id` (see [`NODE_SHIFT`]).
pub fn node_of(conn_id: u64) -> u16 {
    // Ids are below 2^53: the node fits 16 bits.
    (conn_id >> NODE_SHIFT) as u16
}

/// What a message is addressed to: the unit of order, of history and of interest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Every connection of every node.
    All,
    /// A user's connections.
    Uid(Box<str>),
    /// A group's connections.
    Group(Box<str>),
    /// The connections of one node, for messages to one of them (the envelope names it).
    Node(u16),
}

impl Topic {
    /// The topic's name as engines store it: `all`, `u:NAME`, `g:NAME`, `n:ID`.
    pub fn key(&self) -> String {
        match self {
            Self::All => "all".to_owned(),
            Self::Uid(uid) => format!("u:{uid}"),
            Self::Group(group) => format!("g:{group}"),
            Self::Node(node) => format!("n:{node}"),
        }
    }

    /// The topic [`Topic::key`] named, if `key` is one.
    pub fn from_key(key: &str) -> Option<Self> {
        if key == "all" {
            return Some(Self::All);
        }
        let (kind, name) = key.split_once(':')?;
        match kind {
            "u" => Some(Self::Uid(name.into())),
            "g" => Some(Self::Group(name.into())),
            "n" => name.parse().ok().map(Self::Node),
            _ => None,
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A message on its way to a topic's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Where it goes.
    pub topic: Topic,
    /// For [`Topic::Node`]: the one connection it is for.
    pub conn: Option<u64>,
    /// Connections left out.
    pub except: Vec<u64>,
    /// The message.
    pub message: Message,
    /// No order, no position, no history: delivered on this node at once.
    pub volatile: bool,
}

/// Where a message stands in its topic: the topic's epoch (a new one whenever the engine
/// lost the topic's history, a restarted Redis say) and its offset in it (1, 2, 3, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The topic's epoch.
    pub epoch: u64,
    /// The message's offset in the epoch, from 1.
    pub offset: u64,
}

/// A message's place for clients that resume ([`crate::resume`]): its topic's epoch, its
/// offset, and an id that tells it from any other message published at that offset (after a
/// failover re-issued offsets, say). An id of 0 means unknown (a topic with no message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Stamp {
    /// The topic's epoch.
    pub epoch: u64,
    /// The message's offset in the epoch, from 1 (0: before the first message).
    pub offset: u64,
    /// The message's id.
    pub id: u64,
}

impl Stamp {
    /// The epoch and offset, without the id.
    pub fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.offset,
        }
    }
}

/// Messages an engine could not deliver in order: the application should bring the
/// topic's connections up to date another way (send them the state afresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    /// The topic.
    pub topic: Topic,
    /// What was lost, when known: the first and last offset (in `epoch`) that will never be
    /// delivered. `None` when the topic's history itself was lost (its epoch changed).
    pub lost: Option<(u64, u64)>,
    /// The topic's epoch from now on.
    pub epoch: u64,
}

/// Why an engine could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine's backend is unreachable and its queue of sends is full.
    #[error("engine unavailable: its queue is full")]
    QueueFull,
    /// The engine's backend is unreachable now (for queries, which are not queued).
    #[error("engine unavailable: its backend is unreachable")]
    Unavailable,
    /// The engine's backend did not take the request in time.
    #[error("engine timed out")]
    Timeout,
    /// The engine has stopped.
    #[error("engine stopped")]
    Stopped,
    /// The backend refused the request.
    #[error("engine backend error: {0}")]
    Backend(String),
}

/// The answer to a published message's sender: its position, or why it was not published.
pub type Confirm = oneshot::Sender<Result<Option<Position>, EngineError>>;

/// A query's answer, in the future.
pub type QueryFuture = Pin<Box<dyn Future<Output = Result<Vec<u64>, EngineError>> + Send>>;

/// A cluster-wide question about memberships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// The ids of a user's connections.
    UidConnections(Box<str>),
    /// The ids of a group's connections.
    GroupMembers(Box<str>),
}

/// Carries the Hub's messages, memberships and queries between nodes. See the module docs.
///
/// Methods are called from any thread, some under the Hub's lock: they must queue the work
/// and return.
pub trait Engine: Send + Sync + 'static {
    /// This node's id, the high bits of its connections' ids ([`NODE_SHIFT`]); unique among
    /// the nodes sharing the engine's backend.
    fn node_id(&self) -> u16;

    /// Called once, when the engine is installed: where it delivers what arrives.
    fn attach(&self, hub: HubLink);

    /// Publishes `envelope` to its topic on every node (this one included unless it is
    /// volatile: the Hub delivered that already). `confirm`, when given, gets the
    /// message's position once the backend has it, or the reason it will not be sent.
    fn publish(&self, envelope: Envelope, confirm: Option<Confirm>);

    /// This node has local members of `topic` (`true`, from its first) or no longer has
    /// (`false`, after its last left): the engine delivers a topic's messages here only in
    /// between.
    fn interest(&self, topic: &Topic, interested: bool);

    /// Connection `conn_id` of this node joined (`true`) or left (`false`) `topic`, a user
    /// or a group, for cluster-wide queries.
    fn presence(&self, topic: &Topic, conn_id: u64, present: bool);

    /// Empties `group` on every node: each node's [`HubLink::ungroup`] runs.
    fn ungroup(&self, group: &str);

    /// Answers `query` for every node.
    fn query(&self, query: Query) -> QueryFuture;

    /// What the engine keeps for clients that resume, if it keeps history; `None` (the
    /// default) turns resume off.
    fn sessions(&self) -> Option<&dyn Sessions> {
        None
    }

    /// The engine's counters as Prometheus text exposition lines (each with its `# HELP`
    /// and `# TYPE`), appended to `out`. Nothing by default.
    fn prometheus(&self, out: &mut String) {
        let _ = out;
    }
}

/// An engine's handle on its Hub: delivers what arrives for this node. It does not keep
/// the Hub alive; once the Hub is gone its methods do nothing.
#[derive(Clone)]
pub struct HubLink(pub(super) WeakHub);

/// Which of a topic's connections a delivery is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Every one.
    All,
    /// Those without resume: the message has no place yet (sent while the engine's
    /// backend was away); resuming connections get it once it has ([`Reach::Resuming`]).
    Plain,
    /// Only those with resume: the others had it early ([`Reach::Plain`]).
    Resuming,
}

impl HubLink {
    /// Delivers `envelope` to this node's connections of its topic, the frame encoded once,
    /// with the message's place (`stamp`) for connections that resume ([`crate::resume`]);
    /// returns how many it was queued for.
    pub fn deliver(&self, envelope: &Envelope, stamp: Option<Stamp>) -> usize {
        self.hub()
            .map_or(0, |hub| hub.deliver_local(envelope, stamp, Reach::All))
    }

    /// Delivers a message that has no place yet (its topic's order is not known while the
    /// engine's backend is away) to the connections that do not resume; deliver it to the
    /// others with [`HubLink::deliver_late`] once it has its place.
    pub fn deliver_early(&self, envelope: &Envelope) -> usize {
        self.hub()
            .map_or(0, |hub| hub.deliver_local(envelope, None, Reach::Plain))
    }

    /// Delivers a message given to [`HubLink::deliver_early`] to the connections that
    /// resume, now that it has its place.
    pub fn deliver_late(&self, envelope: &Envelope, stamp: Stamp) -> usize {
        self.hub().map_or(0, |hub| {
            hub.deliver_local(envelope, Some(stamp), Reach::Resuming)
        })
    }

    /// Tells the application that a topic's messages were lost ([`Resync`]).
    pub fn resync(&self, resync: &Resync) {
        if let Some(hub) = self.hub() {
            hub.resynced(resync);
        }
    }

    /// Empties `group` on this node (another node called [`Hub::ungroup`]).
    pub fn ungroup(&self, group: &str) {
        if let Some(hub) = self.hub() {
            hub.ungroup_local(group);
        }
    }

    /// Every membership of this node's connections, each user or group with its connection
    /// ids: what an engine writes again after its backend lost it.
    pub fn memberships(&self) -> Vec<(Topic, Vec<u64>)> {
        self.hub().map(|hub| hub.memberships()).unwrap_or_default()
    }

    fn hub(&self) -> Option<Hub> {
        self.0.get().ok()
    }
}

impl fmt::Debug for HubLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HubLink")
    }
}

/// How an engine answers: once, on whatever thread it runs.
pub type Reply<T> = Box<dyn FnOnce(Result<T, EngineError>) + Send>;

/// A topic's recent history, for a client that resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The topic's last message now (epoch 0: the topic has no epoch — no message, or its
    /// history is gone; id 0: its last message is no longer kept).
    pub top: Stamp,
    /// The messages kept from the offset asked for (that one included) to `top`, in
    /// offset order; `None` when more than the maximum asked for follow it.
    pub entries: Option<Vec<(Stamp, Envelope)>>,
}

/// What an engine keeps for clients that resume ([`crate::resume`]): topics' positions and
/// history, and sessions written ahead. Every method queues its work and returns; the
/// answer comes through its [`Reply`].
pub trait Sessions: Send + Sync {
    /// The current position of each topic, in the order asked (its last message; offset 0
    /// when it has none). A topic with no epoch gets one, so that a position given before
    /// its first message still tells a later history apart from a lost one.
    fn positions(&self, topics: Vec<Topic>, reply: Reply<Vec<Stamp>>);

    /// `topic`'s messages from offset `from` (at least 1) to its last, if at most `max` + 1.
    fn history(&self, topic: Topic, from: u64, max: usize, reply: Reply<History>);

    /// Writes session `token`'s record, kept for `ttl`: a new session (`create`), or an
    /// existing one, which another node may have claimed meanwhile (then `false`).
    fn save(
        &self,
        token: &str,
        record: Vec<u8>,
        ttl: std::time::Duration,
        create: bool,
        reply: Reply<bool>,
    );

    /// Takes session `token`'s record, atomically: of two claims, one gets it.
    fn claim(&self, token: &str, reply: Reply<Option<Vec<u8>>>);

    /// Keeps session `token` from expiring while its connection lives (`alive`), by
    /// renewing its `ttl`; after `alive` is `false` it expires `ttl` later.
    fn keep(&self, token: &str, ttl: std::time::Duration, alive: bool);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_keys_round_trip() {
        for topic in [
            Topic::All,
            Topic::Uid("tom".into()),
            Topic::Group("room:1".into()),
            Topic::Node(513),
        ] {
            assert_eq!(Topic::from_key(&topic.key()), Some(topic));
        }
        assert_eq!(Topic::from_key("x:1"), None);
        assert_eq!(Topic::from_key("n:big"), None);
    }

    #[test]
    fn connection_ids_carry_their_node_below_2_pow_53() {
        let id = (u64::from(u16::MAX) << NODE_SHIFT) | ((1 << NODE_SHIFT) - 1);
        assert!(id < 1 << 53);
        assert_eq!(node_of(id), u16::MAX);
        assert_eq!(node_of(7 << NODE_SHIFT | 12), 7);
    }
}

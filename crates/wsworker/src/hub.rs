//! The Hub: Workerman's addressing — a message to a connection, to a user, to a group or to
//! all — over a server's connections, from any callback, thread or task (GatewayWorker's
//! `sendToClient`, `sendToUid`, `sendToGroup`, `sendToAll`, `bindUid`, `joinGroup`).
//!
//! The Hub knows connections, not listeners: whatever accepted a connection (a [`Worker`]'s
//! own listeners today) registers it, and its end takes it out of every user and group.
//!
//! Every send encodes its frame once and shares the bytes with every recipient; it only
//! queues, as [`Connection::send`] does, and returns how many connections it was queued for.
//! With permessage-deflate, a message is compressed once for every recipient that agreed to
//! the same terms without context takeover on our side (the server's default): they all get
//! the same compressed frame, as uWebSockets' shared compressor does. A message below the
//! compression threshold or that compression does not shrink goes plain, as it would on a
//! connection of its own; so does every message to a connection with context takeover on
//! our side (`server_no_context_takeover` not agreed), whose compressor's window must hold
//! exactly what it compressed for that connection: compressing per recipient would cost a
//! compression per recipient, and an uncompressed message leaves both contexts as they
//! were (RFC 7692 §6). Send to such a connection with [`Connection::send`] to have a
//! message compressed for it alone.
//! Within one process delivery is immediate, and the messages of one sender to one address
//! reach each recipient in the order they were sent. A send to all or to a group made in a
//! connection's callbacks on a worker's event loop (a chat's `on_message`) is held until
//! that connection's poll is over, and then written to each recipient's socket at once,
//! one write for all the messages held, as uWebSockets corks its pub/sub (see `cork`):
//! anything else the thread sends, and any membership change, lets it go first, so the
//! order holds. Its recipients are the topic's connections when it was sent; the sending
//! connection, if it is one, gets it at once.
//!
//! [`Worker`]: crate::Worker
//!
//! ```no_run
//! use wsworker::Worker;
//! use wsworker::hub::Target;
//!
//! let mut worker = Worker::new("websocket://0.0.0.0:2346")?;
//! let hub = worker.hub();
//! worker.on_connect(|conn| {
//!     // `/?room=lobby`: the connection joins its room.
//!     if let Some(room) = conn.request().query_param("room") {
//!         let _ = conn.join_group(&room);
//!     }
//! });
//! worker.on_message(move |conn, msg| {
//!     for room in conn.groups() {
//!         // Everyone in the room but the sender.
//!         hub.send(Target::group(room).except(conn.id()), msg.clone());
//!     }
//!     Ok(())
//! });
//! # Ok::<(), wsworker::Error>(())
//! ```

mod cork;
pub mod engine;
mod frames;
mod session;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use tokio::sync::oneshot;
use wsworker_proto::Message;

pub(crate) use cork::{
    Corking, corking, flush as flush_cork, hold_broadcast, release as release_cork,
};
pub use engine::{Engine, EngineError, Envelope, HubLink, Position, Resync, Stamp, Topic};
use engine::{NODE_SHIFT, Query, Reach, node_of};
#[doc(hidden)]
pub use frames::FanoutCounts;
pub(crate) use frames::Frames;
pub(crate) use session::ResumeFrames;
pub use session::ResumeReport;
pub(crate) use session::ResumeState;

use crate::error::{Error, Result};
use crate::resume::ResumeConfig;
use crate::server::{Connection, Connections};

/// Addressing across a server's connections: users, groups, all. Cheap to clone, `Send +
/// Sync`; get it with [`Worker::hub`](crate::Endpoint::hub).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// The application's answer to lost messages ([`Hub::on_resync`]).
type ResyncCallback = Arc<dyn Fn(&Hub, &Resync) + Send + Sync>;

/// The application's look at a resumed session ([`Hub::on_resume`]).
type ResumeCallback = Arc<dyn Fn(&Connection, &ResumeReport) + Send + Sync>;

struct Inner {
    connections: Connections,
    /// Who is bound to which user and in which groups. Locked by membership changes and by
    /// sends to a user or a group, never on a connection's own message path.
    index: Mutex<Index>,
    /// Set once, before connections come ([`Hub::install`]).
    engine: OnceLock<Arc<dyn Engine>>,
    on_resync: Mutex<Option<ResyncCallback>>,
    /// Set once, before connections come ([`Hub::resume`]).
    resume: OnceLock<ResumeConfig>,
    on_resume: Mutex<Option<ResumeCallback>>,
}

/// Memberships, both ways: a connection's user and groups, and each user's and group's
/// connections.
///
/// A user's and a group's lists hold the connections themselves (a handle is a pointer, as
/// small as an id): a fan-out walks them without looking each member up by its id, which
/// cost a hash per delivery.
#[derive(Default)]
struct Index {
    members: HashMap<u64, Member>,
    /// A user has a few connections (a phone, a laptop): a short list, in the order bound.
    users: HashMap<Box<str>, Vec<Connection>>,
    groups: HashMap<Box<str>, HashMap<u64, Connection>>,
}

/// A connection that has a user or a group.
struct Member {
    conn: Connection,
    uid: Option<Box<str>>,
    groups: Vec<Box<str>>,
}

/// Where a message goes: all connections, a user's, a group's or one connection; optionally
/// except some connections (the sender, usually), optionally volatile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    topic: Topic,
    conn: Option<u64>,
    except: Vec<u64>,
    volatile: bool,
}

impl Target {
    /// Every open connection (of every node, with an engine).
    pub fn all() -> Self {
        Self::to(Topic::All, None)
    }

    /// Every connection bound to user `uid` ([`Hub::bind_uid`]).
    pub fn uid(uid: impl Into<String>) -> Self {
        Self::to(Topic::Uid(uid.into().into_boxed_str()), None)
    }

    /// Every connection in `group` ([`Hub::join_group`]).
    pub fn group(group: impl Into<String>) -> Self {
        Self::to(Topic::Group(group.into().into_boxed_str()), None)
    }

    /// The connection with id `conn_id` ([`Connection::id`]), on whichever node it is.
    pub fn conn(conn_id: u64) -> Self {
        Self::to(Topic::Node(node_of(conn_id)), Some(conn_id))
    }

    /// Leaves out the connection `conn_id` (the sender of a message to its room, say); may
    /// be repeated.
    #[must_use]
    pub fn except(mut self, conn_id: u64) -> Self {
        self.except.push(conn_id);
        self
    }

    /// Skips the order across nodes, for messages whose loss or reordering nobody minds
    /// (cursors, typing indicators): delivered on this node at once, and to the other
    /// nodes without a position or history. Without an engine every send is immediate.
    #[must_use]
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    fn to(topic: Topic, conn: Option<u64>) -> Self {
        Self {
            topic,
            conn,
            except: Vec::new(),
            volatile: false,
        }
    }

    fn into_envelope(self, message: Message) -> Envelope {
        Envelope {
            topic: self.topic,
            conn: self.conn,
            except: self.except,
            message,
            volatile: self.volatile,
        }
    }
}

impl Hub {
    pub(crate) fn new(connections: Connections) -> Self {
        Self {
            inner: Arc::new(Inner {
                connections,
                index: Mutex::default(),
                engine: OnceLock::new(),
                on_resync: Mutex::default(),
                resume: OnceLock::new(),
                on_resume: Mutex::default(),
            }),
        }
    }

    /// Every open connection, for what [`Connections`] offers beside the Hub.
    pub fn connections(&self) -> &Connections {
        &self.inner.connections
    }

    /// Installs `engine`: from now on sends, memberships and [`Hub::cluster`] queries span
    /// every node sharing it. Install it before the first connection opens
    /// ([`Worker::engine`](crate::Endpoint::engine) does): connection ids take the engine's
    /// node id from then on.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when an engine is installed already.
    pub fn install(&self, engine: Arc<dyn Engine>) -> Result<()> {
        let link = HubLink(self.downgrade());
        if self.inner.engine.set(engine.clone()).is_err() {
            return Err(Error::Unsupported("a Hub takes one engine"));
        }
        engine.attach(link);
        // Memberships made before the engine came (none, when installed before the start).
        for (topic, ids) in self.memberships() {
            engine.interest(&topic, true);
            for id in ids {
                engine.presence(&topic, id, true);
            }
        }
        Ok(())
    }

    /// The engine's node id, 0 without an engine: the high bits of new connections' ids.
    pub fn node_id(&self) -> u16 {
        self.engine().map_or(0, |engine| engine.node_id())
    }

    /// The first id of a connection serial `serial` on this node.
    pub(crate) fn connection_id(&self, serial: u64) -> u64 {
        u64::from(self.node_id()) << NODE_SHIFT | (serial & ((1 << NODE_SHIFT) - 1))
    }

    /// Calls `callback` whenever the engine could not deliver a topic's messages in order
    /// (see [`Resync`]), with this Hub to send the topic's connections what they need
    /// afresh; without one, a warning is logged.
    ///
    /// It runs on the engine's thread: send from it, but do not wait there for the engine
    /// (a [`Hub::send_confirmed`] or [`Hub::cluster`] query awaited inside would wait for
    /// itself); spawn a task for that. Use the `Hub` it is given rather than capturing one:
    /// a Hub captured here keeps itself, and its engine, alive for ever.
    pub fn on_resync(&self, callback: impl Fn(&Self, &Resync) + Send + Sync + 'static) {
        *self
            .inner
            .on_resync
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(callback));
    }

    /// Lets clients resume: connections that offer the subprotocol
    /// [`wsworker.resume.v1`](crate::resume) get it, and with it sessions that survive
    /// the loss of their connection and of the node they were on (see
    /// `docs/RESUME.md`). Needs an engine that keeps history (the Redis engine): without
    /// one the subprotocol is not agreed to. Set it before the first connection opens
    /// ([`Worker::resume`](crate::Endpoint::resume) does).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when resume is set already.
    pub fn resume(&self, config: ResumeConfig) -> Result<()> {
        self.inner
            .resume
            .set(config)
            .map_err(|_| Error::Unsupported("resume is set once"))
    }

    /// How sessions resume, when clients may (resume set, and an engine that keeps
    /// history installed).
    pub(crate) fn resume_config(&self) -> Option<ResumeConfig> {
        let config = self.inner.resume.get()?;
        self.engine()?.sessions()?;
        Some(*config)
    }

    /// Calls `callback` after a connection resumed its session, with what was replayed
    /// and what failed (send the failed topics' state afresh). It runs on the connection's
    /// worker, after the replay was queued and before live messages follow.
    pub fn on_resume(&self, callback: impl Fn(&Connection, &ResumeReport) + Send + Sync + 'static) {
        *self
            .inner
            .on_resume
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(callback));
    }

    fn resumed(&self, conn: &Connection, report: &ResumeReport) {
        let callback = self
            .inner
            .on_resume
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(callback) = callback
            && let Err(panic) = crate::shared::contain(|| callback(conn, report))
        {
            tracing::warn!(%panic, "on_resume panicked");
        }
    }

    /// Sends `message` to every connection `target` names, the frame encoded once per node;
    /// only queues, as [`Connection::send`] does.
    ///
    /// Returns how many connections of this node it was queued (or held) for now: every
    /// recipient without an engine (those closing are skipped). With an engine a message reaches
    /// every node's recipients, this node's included, once the engine has given it its
    /// place in the topic's order: then this returns 0, except for volatile messages and
    /// messages to a connection of this node, queued at once. A message the engine cannot
    /// take (its queue is full while its backend is away) is counted in its metrics; use
    /// [`Hub::send_confirmed`] to learn of it.
    pub fn send(&self, target: Target, message: impl Into<Message>) -> usize {
        let envelope = target.into_envelope(message.into());
        match self.engine() {
            Some(engine) if !self.is_local(&envelope) => {
                let local = if envelope.volatile {
                    self.deliver_local(&envelope, None, Reach::All)
                } else {
                    0
                };
                engine.publish(envelope, None);
                local
            }
            _ => self.deliver_local(&envelope, None, Reach::All),
        }
    }

    /// [`Hub::send`], and waits until the engine has published the message: its position in
    /// its topic, or `None` when it needed no engine (no engine installed, a volatile
    /// message, a message to a connection of this node).
    ///
    /// # Errors
    /// [`Error::Engine`] when the engine could not publish it.
    pub async fn send_confirmed(
        &self,
        target: Target,
        message: impl Into<Message>,
    ) -> Result<Option<Position>> {
        let envelope = target.into_envelope(message.into());
        let engine = match self.engine() {
            Some(engine) if !self.is_local(&envelope) && !envelope.volatile => engine,
            _ => {
                self.send_envelope_now(envelope);
                return Ok(None);
            }
        };
        let (confirm, confirmed) = oneshot::channel();
        engine.publish(envelope, Some(confirm));
        match confirmed.await {
            Ok(result) => result.map_err(Error::Engine),
            Err(_) => Err(Error::Engine(EngineError::Stopped)),
        }
    }

    fn send_envelope_now(&self, envelope: Envelope) {
        let volatile_elsewhere = envelope.volatile && !self.is_local(&envelope);
        self.deliver_local(&envelope, None, Reach::All);
        if let (Some(engine), true) = (self.engine(), volatile_elsewhere) {
            engine.publish(envelope, None);
        }
    }

    /// Queues `message` for every open connection. See [`Hub::send`].
    pub fn send_to_all(&self, message: impl Into<Message>) -> usize {
        self.send(Target::all(), message)
    }

    /// Queues `message` for every connection of user `uid`. See [`Hub::send`].
    pub fn send_to_uid(&self, uid: &str, message: impl Into<Message>) -> usize {
        self.send(Target::uid(uid), message)
    }

    /// Queues `message` for every connection in `group`. See [`Hub::send`].
    pub fn send_to_group(&self, group: &str, message: impl Into<Message>) -> usize {
        self.send(Target::group(group), message)
    }

    /// Queues `message` for the connection `conn_id`, on whichever node it is. See
    /// [`Hub::send`].
    pub fn send_to_conn(&self, conn_id: u64, message: impl Into<Message>) -> usize {
        self.send(Target::conn(conn_id), message)
    }

    /// Binds connection `conn_id` (of this node) to user `uid`, replacing the user it was
    /// bound to: a connection has at most one user, a user any number of connections.
    ///
    /// # Errors
    /// [`Error::Closed`] when no open connection of this node has this id.
    pub fn bind_uid(&self, conn_id: u64, uid: &str) -> Result<()> {
        cork::release();
        let mut index = self.index();
        let member = self.member(&mut index, conn_id)?;
        if member.uid.as_deref() == Some(uid) {
            return Ok(());
        }
        let old = member.uid.replace(uid.into());
        let conn = member.conn.clone();
        if let Some(old) = old {
            let last = index.leave_user(&old, conn_id);
            self.left(Topic::Uid(old), &conn, last);
        }
        let conns = index.users.entry(uid.into()).or_default();
        let first = conns.is_empty();
        conns.push(conn.clone());
        self.joined(Topic::Uid(uid.into()), &conn, first);
        Ok(())
    }

    /// Unbinds connection `conn_id` from its user, if it has one.
    pub fn unbind_uid(&self, conn_id: u64) {
        cork::release();
        let mut index = self.index();
        let Some(member) = index.members.get_mut(&conn_id) else {
            return;
        };
        let conn = member.conn.clone();
        if let Some(uid) = member.uid.take() {
            let last = index.leave_user(&uid, conn_id);
            self.left(Topic::Uid(uid), &conn, last);
        }
        index.drop_if_bare(conn_id);
    }

    /// Puts connection `conn_id` (of this node) in `group` (no change if it is in it
    /// already).
    ///
    /// # Errors
    /// [`Error::Closed`] when no open connection of this node has this id.
    pub fn join_group(&self, conn_id: u64, group: &str) -> Result<()> {
        cork::release();
        let mut index = self.index();
        let member = self.member(&mut index, conn_id)?;
        if member.groups.iter().any(|g| &**g == group) {
            return Ok(());
        }
        member.groups.push(group.into());
        let conn = member.conn.clone();
        let conns = index.groups.entry(group.into()).or_default();
        let first = conns.is_empty();
        conns.insert(conn_id, conn.clone());
        self.joined(Topic::Group(group.into()), &conn, first);
        Ok(())
    }

    /// Takes connection `conn_id` out of `group`.
    pub fn leave_group(&self, conn_id: u64, group: &str) {
        cork::release();
        let mut index = self.index();
        let Some(member) = index.members.get_mut(&conn_id) else {
            return;
        };
        let before = member.groups.len();
        member.groups.retain(|g| &**g != group);
        let conn = member.conn.clone();
        if member.groups.len() != before {
            let last = index.leave_group(group, conn_id);
            self.left(Topic::Group(group.into()), &conn, last);
        }
        index.drop_if_bare(conn_id);
    }

    /// Empties `group`: every connection leaves it, on every node with an engine.
    pub fn ungroup(&self, group: &str) {
        self.ungroup_local(group);
        if let Some(engine) = self.engine() {
            engine.ungroup(group);
        }
    }

    /// Empties `group` on this node.
    fn ungroup_local(&self, group: &str) {
        cork::release();
        let mut index = self.index();
        let Some(conns) = index.groups.remove(group) else {
            return;
        };
        let topic = Topic::Group(group.into());
        for id in conns.into_keys() {
            if let Some(member) = index.members.get_mut(&id) {
                member.groups.retain(|g| &**g != group);
                let conn = member.conn.clone();
                self.left(topic.clone(), &conn, false);
            }
            index.drop_if_bare(id);
        }
        if let Some(engine) = self.engine() {
            engine.interest(&topic, false);
        }
    }

    /// Whether user `uid` has an open connection on this node. See [`Hub::cluster`] for
    /// every node's.
    pub fn is_uid_online(&self, uid: &str) -> bool {
        self.index().users.contains_key(uid)
    }

    /// The ids of user `uid`'s connections on this node, in the order they were bound.
    pub fn uid_connections(&self, uid: &str) -> Vec<u64> {
        self.index()
            .users
            .get(uid)
            .map(|conns| conns.iter().map(Connection::id).collect())
            .unwrap_or_default()
    }

    /// How many connections of this node are in `group`.
    pub fn group_len(&self, group: &str) -> usize {
        self.index().groups.get(group).map_or(0, HashMap::len)
    }

    /// The ids of this node's connections in `group`, smallest first.
    pub fn group_members(&self, group: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .index()
            .groups
            .get(group)
            .map(|conns| conns.keys().copied().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Queries that answer for every node sharing the engine (for this node alone without
    /// one). A round trip to the engine's backend: await them outside a connection's
    /// callbacks (in a task), or use the local queries above there.
    pub fn cluster(&self) -> Cluster<'_> {
        Cluster { hub: self }
    }

    /// The user connection `conn_id` (of this node) is bound to.
    pub fn uid_of(&self, conn_id: u64) -> Option<String> {
        let index = self.index();
        index
            .members
            .get(&conn_id)?
            .uid
            .as_deref()
            .map(str::to_owned)
    }

    /// The groups connection `conn_id` (of this node) is in, in the order it joined them.
    pub fn groups_of(&self, conn_id: u64) -> Vec<String> {
        self.index()
            .members
            .get(&conn_id)
            .map(|m| m.groups.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default()
    }

    /// The engine's counters as Prometheus text (empty without an engine), to serve beside
    /// [`Metrics::to_prometheus`](crate::Metrics::to_prometheus).
    pub fn engine_prometheus(&self) -> String {
        let mut out = String::new();
        if let Some(engine) = self.engine() {
            engine.prometheus(&mut out);
        }
        out
    }

    /// Takes a connection that ended out of its user and its groups (after it left the
    /// registry: a bind or join racing with its end either finds it gone or is undone here).
    pub(crate) fn forget(&self, conn_id: u64) {
        cork::release();
        let mut index = self.index();
        let Some(member) = index.members.remove(&conn_id) else {
            return;
        };
        let conn = member.conn;
        if let Some(uid) = member.uid {
            let last = index.leave_user(&uid, conn_id);
            self.left(Topic::Uid(uid), &conn, last);
        }
        for group in member.groups {
            let last = index.leave_group(&group, conn_id);
            self.left(Topic::Group(group), &conn, last);
        }
    }

    /// Queues `envelope`'s message for this node's connections of its topic (those
    /// `reach` names), at its place `stamp` in the topic.
    fn deliver_local(&self, envelope: &Envelope, stamp: Option<Stamp>, reach: Reach) -> usize {
        let except = &envelope.except;
        // Each form of the frame (plain, compressed once per set of permessage-deflate
        // terms) is encoded once, when a recipient first needs it.
        let mut frames = Frames::new(&envelope.message);
        if self.inner.resume.get().is_none() {
            // No connection has a session: one gets it as it opens, only once resume is
            // set, which is never unset. The common case, and the fan-out to thousands:
            // nothing per recipient but picking the form and the send.
            if reach == Reach::Resuming {
                return 0;
            }
            if corking() && matches!(envelope.topic, Topic::All | Topic::Group(_)) {
                return cork::hold(self, &envelope.topic, except, &envelope.message);
            }
            let sent = self.each_of(&envelope.topic, envelope.conn, |conn| {
                usize::from(!except.contains(&conn.id()) && frames.send(conn))
            });
            self.inner.connections.count_fanout(frames.counts());
            return sent;
        }
        let mut resuming = ResumeFrames::new(&envelope.topic, stamp, &envelope.message);
        let sent = self.each_of(&envelope.topic, envelope.conn, |conn| {
            if except.contains(&conn.id()) {
                return 0;
            }
            usize::from(match (conn.resume(), reach) {
                (Some(_), Reach::Plain) | (None, Reach::Resuming) => false,
                (Some(resume), _) => resume.offer(conn, &mut resuming),
                (None, _) => frames.send(conn),
            })
        });
        self.inner.connections.count_fanout(frames.counts());
        self.inner.connections.count_fanout(resuming.counts());
        sent
    }

    /// Calls `f` on this node's connections of `topic` (`conn`, for a node's topic); the
    /// sum of what it returned.
    fn each_of(
        &self,
        topic: &Topic,
        conn: Option<u64>,
        f: impl FnMut(&Connection) -> usize,
    ) -> usize {
        // What this thread holds goes first: `f` sends, after it.
        cork::release();
        self.each_of_as_is(topic, conn, f)
    }

    /// [`Hub::each_of`], leaving what this thread holds held: for `f` that sends nothing.
    fn each_of_as_is(
        &self,
        topic: &Topic,
        conn: Option<u64>,
        mut f: impl FnMut(&Connection) -> usize,
    ) -> usize {
        match topic {
            Topic::All => self.inner.connections.for_each_as_is(f),
            Topic::Node(_) => conn
                .and_then(|id| self.inner.connections.get(id))
                .map_or(0, |c| f(&c)),
            // Called under the lock: a send only pushes to each connection's inbox, and the
            // lock keeps a membership change from landing in the middle of a fan-out.
            Topic::Uid(uid) => {
                let index = self.index();
                index.users.get(uid).into_iter().flatten().map(f).sum()
            }
            Topic::Group(group) => {
                let index = self.index();
                index
                    .groups
                    .get(group)
                    .into_iter()
                    .flat_map(HashMap::values)
                    .map(f)
                    .sum()
            }
        }
    }

    /// Whether `self` and `other` are the same Hub.
    fn is(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether `envelope` is for a connection of this node (no engine needed).
    fn is_local(&self, envelope: &Envelope) -> bool {
        matches!(envelope.topic, Topic::Node(node) if node == self.node_id())
    }

    fn resynced(&self, resync: &Resync) {
        // A resuming connection must not skip the hole in silence: it is closed (1013), and
        // its resume tells it what could not be replayed.
        let close = |conn: &Connection| {
            if conn.resume().is_some() {
                let _ = conn.close(
                    wsworker_proto::CloseCode::TRY_AGAIN_LATER,
                    "messages lost; resume",
                );
            }
            0
        };
        self.each_of(&resync.topic, None, close);
        let callback = self
            .inner
            .on_resync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match callback {
            Some(callback) => callback(self, resync),
            None => tracing::warn!(
                topic = %resync.topic,
                lost = ?resync.lost,
                epoch = resync.epoch,
                "messages lost; no on_resync callback to tell"
            ),
        }
    }

    /// Every user and group of this node with its connections.
    fn memberships(&self) -> Vec<(Topic, Vec<u64>)> {
        let index = self.index();
        let users = index.users.iter().map(|(uid, conns)| {
            (
                Topic::Uid(uid.clone()),
                conns.iter().map(Connection::id).collect(),
            )
        });
        let groups = index
            .groups
            .iter()
            .map(|(group, conns)| (Topic::Group(group.clone()), conns.keys().copied().collect()));
        users.chain(groups).collect()
    }

    /// Tells the engine of a new membership (called under the index lock, so that the
    /// engine sees memberships change in the order they did), and the connection's
    /// session, if it resumes: after the engine's interest, so that the position it reads
    /// comes after the topic's baseline.
    fn joined(&self, topic: Topic, conn: &Connection, first: bool) {
        if let Some(engine) = self.engine() {
            if first {
                engine.interest(&topic, true);
            }
            engine.presence(&topic, conn.id(), true);
        }
        if let Some(resume) = conn.resume() {
            resume.joined(self, conn, topic);
        }
    }

    /// Tells the engine of a membership that ended, and the connection's session.
    fn left(&self, topic: Topic, conn: &Connection, last: bool) {
        if let Some(resume) = conn.resume() {
            resume.left(self, conn, &topic);
        }
        if let Some(engine) = self.engine() {
            engine.presence(&topic, conn.id(), false);
            if last {
                engine.interest(&topic, false);
            }
        }
    }

    fn engine(&self) -> Option<&Arc<dyn Engine>> {
        self.inner.engine.get()
    }

    /// A weak handle, for the connections (which the Hub holds) to reach it.
    pub(crate) fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

    /// The index. A membership change, and a fan-out (which sends under this lock), first
    /// let go of a fan-out this thread holds (`cork::release`): it goes to the members it
    /// was sent to, and its flush takes this lock.
    fn index(&self) -> MutexGuard<'_, Index> {
        // Every change under the lock keeps both directions of the index consistent before
        // anything that could panic (allocation aside): a poisoned index is still whole.
        self.inner.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of open connection `conn_id`, made if it has none.
    fn member<'a>(&self, index: &'a mut Index, conn_id: u64) -> Result<&'a mut Member> {
        match index.members.entry(conn_id) {
            Entry::Occupied(entry) => Ok(entry.into_mut()),
            Entry::Vacant(entry) => {
                // Looked up under the index's lock: a connection that ends leaves the
                // registry before `forget` takes this lock, so it is either found here and
                // forgotten later, or not found.
                let conn = self.inner.connections.get(conn_id).ok_or(Error::Closed)?;
                Ok(entry.insert(Member {
                    conn,
                    uid: None,
                    groups: Vec::new(),
                }))
            }
        }
    }
}

/// Queries over every node sharing the Hub's engine: [`Hub::cluster`].
#[derive(Debug, Clone, Copy)]
pub struct Cluster<'a> {
    hub: &'a Hub,
}

impl Cluster<'_> {
    /// Whether user `uid` has an open connection on any node.
    ///
    /// # Errors
    /// [`Error::Engine`] when the engine cannot answer.
    pub async fn is_uid_online(&self, uid: &str) -> Result<bool> {
        Ok(!self.uid_connections(uid).await?.is_empty())
    }

    /// The ids of user `uid`'s connections on every node, smallest first.
    ///
    /// # Errors
    /// [`Error::Engine`] when the engine cannot answer.
    pub async fn uid_connections(&self, uid: &str) -> Result<Vec<u64>> {
        match self.hub.engine() {
            None => {
                let mut ids = self.hub.uid_connections(uid);
                ids.sort_unstable();
                Ok(ids)
            }
            Some(engine) => sorted(engine.query(Query::UidConnections(uid.into())).await),
        }
    }

    /// How many connections are in `group` on every node.
    ///
    /// # Errors
    /// [`Error::Engine`] when the engine cannot answer.
    pub async fn group_len(&self, group: &str) -> Result<usize> {
        Ok(self.group_members(group).await?.len())
    }

    /// The ids of the connections in `group` on every node, smallest first.
    ///
    /// # Errors
    /// [`Error::Engine`] when the engine cannot answer.
    pub async fn group_members(&self, group: &str) -> Result<Vec<u64>> {
        match self.hub.engine() {
            None => Ok(self.hub.group_members(group)),
            Some(engine) => sorted(engine.query(Query::GroupMembers(group.into())).await),
        }
    }
}

fn sorted(answer: std::result::Result<Vec<u64>, EngineError>) -> Result<Vec<u64>> {
    let mut ids = answer.map_err(Error::Engine)?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

impl Index {
    /// Takes `conn_id` out of user `uid`; whether it was the user's last connection.
    fn leave_user(&mut self, uid: &str, conn_id: u64) -> bool {
        let Some(conns) = self.users.get_mut(uid) else {
            return false;
        };
        conns.retain(|conn| conn.id() != conn_id);
        let last = conns.is_empty();
        if last {
            self.users.remove(uid);
        }
        last
    }

    /// Takes `conn_id` out of `group`; whether it was the group's last connection.
    fn leave_group(&mut self, group: &str, conn_id: u64) -> bool {
        let Some(conns) = self.groups.get_mut(group) else {
            return false;
        };
        conns.remove(&conn_id);
        let last = conns.is_empty();
        if last {
            self.groups.remove(group);
        }
        last
    }

    /// Drops the entry of a connection left with no user and no group.
    fn drop_if_bare(&mut self, conn_id: u64) {
        if self
            .members
            .get(&conn_id)
            .is_some_and(|m| m.uid.is_none() && m.groups.is_empty())
        {
            self.members.remove(&conn_id);
        }
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.index();
        f.debug_struct("Hub")
            .field("connections", &self.inner.connections.len())
            .field("users", &index.users.len())
            .field("groups", &index.groups.len())
            .finish()
    }
}

/// A connection's way back to its Hub, which does not keep the Hub alive (the Hub holds the
/// connection).
#[derive(Clone, Default)]
pub(crate) struct WeakHub(Weak<Inner>);

impl WeakHub {
    /// The Hub, while the server runs.
    pub(crate) fn get(&self) -> Result<Hub> {
        self.0
            .upgrade()
            .map(|inner| Hub { inner })
            .ok_or(Error::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::FanOut;

    /// The fan-out's two loops (resume not set; set, with no connection resuming) reach the
    /// same connections: all but those left out, and none for the resuming ones alone.
    #[test]
    fn the_plain_fan_out_reaches_the_same_connections_with_or_without_resume_set() {
        for resume in [false, true] {
            let fanout = FanOut::new(3, resume);
            let link = HubLink(fanout.hub().downgrade());
            let all = Target::all().into_envelope(Message::from("m"));
            let first = fanout.hub().connections().to_vec()[0].id();
            let but_one = Target::all()
                .except(first)
                .into_envelope(Message::from("m"));
            let stamp = Stamp {
                epoch: 1,
                offset: 1,
                id: 1,
            };
            assert_eq!(link.deliver(&all, Some(stamp)), 3, "resume set: {resume}");
            assert_eq!(link.deliver(&but_one, None), 2, "resume set: {resume}");
            assert_eq!(link.deliver_early(&all), 3, "resume set: {resume}");
            assert_eq!(link.deliver_late(&all, stamp), 0, "resume set: {resume}");
            fanout.drain();
        }
    }
}

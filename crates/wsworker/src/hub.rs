//! The Hub: Workerman's addressing — a message to a connection, to a user, to a group or to
//! all — over a server's connections, from any callback, thread or task (GatewayWorker's
//! `sendToClient`, `sendToUid`, `sendToGroup`, `sendToAll`, `bindUid`, `joinGroup`).
//!
//! The Hub knows connections, not listeners: whatever accepted a connection (a [`Worker`]'s
//! own listeners today) registers it, and its end takes it out of every user and group.
//!
//! Every send encodes its frame once and shares the bytes with every recipient; it only
//! queues, as [`Connection::send`] does, and returns how many connections it was queued for.
//! Within one process delivery is immediate, and the messages of one sender to one address
//! reach each recipient in the order they were sent.
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

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use wsworker_proto::{Message, encode_server_frame};

use crate::error::{Error, Result};
use crate::server::{Connection, Connections};

/// Addressing across a server's connections: users, groups, all. Cheap to clone, `Send +
/// Sync`; get it with [`Worker::hub`](crate::Worker::hub).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    connections: Connections,
    /// Who is bound to which user and in which groups. Locked by membership changes and by
    /// sends to a user or a group, never on a connection's own message path.
    index: Mutex<Index>,
}

/// Memberships, both ways: a connection's user and groups, and each user's and group's
/// connections.
#[derive(Default)]
struct Index {
    members: HashMap<u64, Member>,
    /// A user has a few connections (a phone, a laptop): a short list.
    users: HashMap<Box<str>, Vec<u64>>,
    groups: HashMap<Box<str>, HashSet<u64>>,
}

/// A connection that has a user or a group.
struct Member {
    conn: Connection,
    uid: Option<Box<str>>,
    groups: Vec<Box<str>>,
}

/// Where a message goes: all connections, a user's, a group's or one connection; optionally
/// except some connections (the sender, usually).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    to: To,
    except: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum To {
    All,
    Uid(String),
    Group(String),
    Conn(u64),
}

impl Target {
    /// Every open connection.
    pub fn all() -> Self {
        Self::to(To::All)
    }

    /// Every connection bound to user `uid` ([`Hub::bind_uid`]).
    pub fn uid(uid: impl Into<String>) -> Self {
        Self::to(To::Uid(uid.into()))
    }

    /// Every connection in `group` ([`Hub::join_group`]).
    pub fn group(group: impl Into<String>) -> Self {
        Self::to(To::Group(group.into()))
    }

    /// The connection with id `conn_id` ([`Connection::id`]).
    pub fn conn(conn_id: u64) -> Self {
        Self::to(To::Conn(conn_id))
    }

    /// Leaves out the connection `conn_id` (the sender of a message to its room, say); may
    /// be repeated.
    #[must_use]
    pub fn except(mut self, conn_id: u64) -> Self {
        self.except.push(conn_id);
        self
    }

    fn to(to: To) -> Self {
        Self {
            to,
            except: Vec::new(),
        }
    }
}

impl Hub {
    pub(crate) fn new(connections: Connections) -> Self {
        Self {
            inner: Arc::new(Inner {
                connections,
                index: Mutex::default(),
            }),
        }
    }

    /// Every open connection, for what [`Connections`] offers beside the Hub.
    pub fn connections(&self) -> &Connections {
        &self.inner.connections
    }

    /// Queues `message` for every connection `target` names, the frame encoded once.
    /// Returns how many connections it was queued for (those closing are skipped).
    pub fn send(&self, target: Target, message: impl Into<Message>) -> usize {
        let frame = encode_server_frame(&message.into());
        let skip = |conn: &Connection| target.except.contains(&conn.id());
        let deliver =
            |conn: &Connection| usize::from(!skip(conn) && conn.send_prepared(&frame).is_ok());
        match &target.to {
            To::All => self.inner.connections.for_each(deliver),
            To::Conn(id) => self.inner.connections.get(*id).map_or(0, |c| deliver(&c)),
            // Queued under the lock: a send only pushes to each connection's inbox, and the
            // lock keeps a membership change from landing in the middle of a fan-out.
            To::Uid(uid) => {
                let index = self.index();
                index.each(index.users.get(uid.as_str()).into_iter().flatten(), deliver)
            }
            To::Group(group) => {
                let index = self.index();
                index.each(
                    index.groups.get(group.as_str()).into_iter().flatten(),
                    deliver,
                )
            }
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

    /// Queues `message` for the connection `conn_id`: 1 if it is open, else 0.
    pub fn send_to_conn(&self, conn_id: u64, message: impl Into<Message>) -> usize {
        self.send(Target::conn(conn_id), message)
    }

    /// Binds connection `conn_id` to user `uid`, replacing the user it was bound to: a
    /// connection has at most one user, a user any number of connections.
    ///
    /// # Errors
    /// [`Error::Closed`] when no open connection has this id.
    pub fn bind_uid(&self, conn_id: u64, uid: &str) -> Result<()> {
        let mut index = self.index();
        let member = self.member(&mut index, conn_id)?;
        let old = member.uid.replace(uid.into());
        if let Some(old) = old {
            index.leave_user(&old, conn_id);
        }
        let ids = index.users.entry(uid.into()).or_default();
        if !ids.contains(&conn_id) {
            ids.push(conn_id);
        }
        Ok(())
    }

    /// Unbinds connection `conn_id` from its user, if it has one.
    pub fn unbind_uid(&self, conn_id: u64) {
        let mut index = self.index();
        let Some(member) = index.members.get_mut(&conn_id) else {
            return;
        };
        if let Some(uid) = member.uid.take() {
            index.leave_user(&uid, conn_id);
        }
        index.drop_if_bare(conn_id);
    }

    /// Puts connection `conn_id` in `group` (no change if it is in it already).
    ///
    /// # Errors
    /// [`Error::Closed`] when no open connection has this id.
    pub fn join_group(&self, conn_id: u64, group: &str) -> Result<()> {
        let mut index = self.index();
        let member = self.member(&mut index, conn_id)?;
        if !member.groups.iter().any(|g| &**g == group) {
            member.groups.push(group.into());
        }
        index
            .groups
            .entry(group.into())
            .or_default()
            .insert(conn_id);
        Ok(())
    }

    /// Takes connection `conn_id` out of `group`.
    pub fn leave_group(&self, conn_id: u64, group: &str) {
        let mut index = self.index();
        let Some(member) = index.members.get_mut(&conn_id) else {
            return;
        };
        member.groups.retain(|g| &**g != group);
        index.leave_group(group, conn_id);
        index.drop_if_bare(conn_id);
    }

    /// Empties `group`: every connection leaves it.
    pub fn ungroup(&self, group: &str) {
        let mut index = self.index();
        let Some(ids) = index.groups.remove(group) else {
            return;
        };
        for id in ids {
            if let Some(member) = index.members.get_mut(&id) {
                member.groups.retain(|g| &**g != group);
            }
            index.drop_if_bare(id);
        }
    }

    /// Whether user `uid` has an open connection.
    pub fn is_uid_online(&self, uid: &str) -> bool {
        self.index().users.contains_key(uid)
    }

    /// The ids of user `uid`'s connections, in the order they were bound.
    pub fn uid_connections(&self, uid: &str) -> Vec<u64> {
        self.index().users.get(uid).cloned().unwrap_or_default()
    }

    /// How many connections are in `group`.
    pub fn group_len(&self, group: &str) -> usize {
        self.index().groups.get(group).map_or(0, HashSet::len)
    }

    /// The ids of the connections in `group`, smallest first.
    pub fn group_members(&self, group: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .index()
            .groups
            .get(group)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// The user connection `conn_id` is bound to.
    pub fn uid_of(&self, conn_id: u64) -> Option<String> {
        let index = self.index();
        index
            .members
            .get(&conn_id)?
            .uid
            .as_deref()
            .map(str::to_owned)
    }

    /// The groups connection `conn_id` is in, in the order it joined them.
    pub fn groups_of(&self, conn_id: u64) -> Vec<String> {
        self.index()
            .members
            .get(&conn_id)
            .map(|m| m.groups.iter().map(|g| g.to_string()).collect())
            .unwrap_or_default()
    }

    /// Takes a connection that ended out of its user and its groups (after it left the
    /// registry: a bind or join racing with its end either finds it gone or is undone here).
    pub(crate) fn forget(&self, conn_id: u64) {
        let mut index = self.index();
        let Some(member) = index.members.remove(&conn_id) else {
            return;
        };
        if let Some(uid) = &member.uid {
            index.leave_user(uid, conn_id);
        }
        for group in &member.groups {
            index.leave_group(group, conn_id);
        }
    }

    /// A weak handle, for the connections (which the Hub holds) to reach it.
    pub(crate) fn downgrade(&self) -> WeakHub {
        WeakHub(Arc::downgrade(&self.inner))
    }

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

impl Index {
    /// Calls `f` on the members `ids` names; the sum of what it returned.
    fn each<'a>(
        &self,
        ids: impl Iterator<Item = &'a u64>,
        f: impl Fn(&Connection) -> usize,
    ) -> usize {
        ids.map(|id| self.members.get(id).map_or(0, |m| f(&m.conn)))
            .sum()
    }

    fn leave_user(&mut self, uid: &str, conn_id: u64) {
        if let Some(ids) = self.users.get_mut(uid) {
            ids.retain(|id| *id != conn_id);
            if ids.is_empty() {
                self.users.remove(uid);
            }
        }
    }

    fn leave_group(&mut self, group: &str, conn_id: u64) {
        if let Some(ids) = self.groups.get_mut(group) {
            ids.remove(&conn_id);
            if ids.is_empty() {
                self.groups.remove(group);
            }
        }
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

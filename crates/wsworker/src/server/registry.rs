//! Every open connection of a server, across its workers: for broadcast and for shutdown.
//!
//! The map is only locked when a connection opens or closes and when a broadcast walks it,
//! never on the per-message path. Each worker has its own shard, so workers accepting at
//! the same time do not contend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wsworker_proto::{CloseCode, Message, encode_server_frame};

use super::connection::Connection;

type Shard = HashMap<u64, Connection>;

/// A handle on all open connections of a server (every worker). Cheap to clone; capture it
/// in a callback to broadcast.
#[derive(Clone, Debug, Default)]
pub struct Connections {
    shards: Arc<Vec<Mutex<Shard>>>,
}

impl Connections {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            shards: Arc::new((0..workers.max(1)).map(|_| Mutex::default()).collect()),
        }
    }

    fn shard(&self, worker: usize) -> MutexGuard<'_, Shard> {
        let index = worker % self.shards.len().max(1);
        // Only inserts and removals happen under the lock; a poisoned shard is still whole.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, conn: &Connection) {
        self.shard(conn.worker_id()).insert(conn.id(), conn.clone());
    }

    pub(crate) fn remove(&self, conn: &Connection) {
        self.shard(conn.worker_id()).remove(&conn.id());
    }

    /// Sends `message` to every open connection, encoding the frame once: every recipient
    /// shares the same bytes. Returns how many connections it was queued for.
    pub fn broadcast(&self, message: impl Into<Message>) -> usize {
        let frame = encode_server_frame(&message.into());
        let mut sent = 0;
        for worker in 0..self.shards.len() {
            for conn in self.shard(worker).values() {
                sent += usize::from(conn.send_prepared(&frame).is_ok());
            }
        }
        sent
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|w| self.shard(w).len()).sum()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many connections each worker serves.
    pub fn per_worker(&self) -> Vec<usize> {
        (0..self.shards.len())
            .map(|w| self.shard(w).len())
            .collect()
    }

    /// The open connection with this id.
    pub fn get(&self, id: u64) -> Option<Connection> {
        (0..self.shards.len()).find_map(|w| self.shard(w).get(&id).cloned())
    }

    /// A snapshot of the open connections.
    pub fn to_vec(&self) -> Vec<Connection> {
        (0..self.shards.len())
            .flat_map(|w| self.shard(w).values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Starts the closing handshake on every connection of one worker.
    pub(crate) fn close_worker(&self, worker: usize, code: CloseCode, reason: &str) {
        let conns: Vec<Connection> = self.shard(worker).values().cloned().collect();
        for conn in conns {
            let _ = conn.close(code, reason);
        }
    }
}

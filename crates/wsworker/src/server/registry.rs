//! Every open connection of a server, across its workers: for broadcast and for shutdown.
//!
//! The map is only locked when a connection opens or closes and when a broadcast walks it,
//! never on the per-message path. Each worker has its own shard, so workers accepting at
//! the same time do not contend.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use wsworker_proto::{CloseCode, Message};

use super::connection::Connection;
use crate::hub::{FanoutCounts, Frames};

/// One worker's connections.
#[derive(Debug, Default)]
struct Shard {
    conns: HashMap<u64, Connection>,
    /// Set when the worker stops: the close for connections whose handshake ends after that.
    closing: Option<(CloseCode, String)>,
}

/// A handle on all open connections of a server (every worker). Cheap to clone; capture it
/// in a callback to broadcast.
#[derive(Clone, Debug, Default)]
pub struct Connections {
    shards: Arc<Vec<Mutex<Shard>>>,
    /// What the fan-outs over these connections (broadcasts, the Hub's sends) compressed.
    fanout: Arc<FanoutTotals>,
}

/// [`FanoutCounts`] summed over every fan-out: added once per fan-out that compressed
/// anything, from whichever thread sent it.
#[derive(Debug, Default)]
struct FanoutTotals {
    compressions: AtomicU64,
    compressed_sends: AtomicU64,
    written_now: AtomicU64,
}

impl Connections {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            shards: Arc::new((0..workers.max(1)).map(|_| Mutex::default()).collect()),
            fanout: Arc::default(),
        }
    }

    /// Whether `self` and `other` are the same server's connections.
    pub(crate) fn is(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shards, &other.shards)
    }

    fn shard(&self, worker: usize) -> MutexGuard<'_, Shard> {
        let index = worker % self.shards.len().max(1);
        // Only inserts and removals happen under the lock; a poisoned shard is still whole.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, conn: &Connection) {
        // What this thread holds goes first: a close below queues under the shard's lock,
        // which a held fan-out's flush takes.
        crate::hub::release_cork();
        let mut shard = self.shard(conn.worker_id());
        shard.conns.insert(conn.id(), conn.clone());
        if let Some((code, reason)) = &shard.closing {
            // Its handshake ended after the worker began to stop: it is closed like the rest,
            // instead of holding the shutdown until its timeout.
            let _ = conn.close(*code, reason);
        }
    }

    pub(crate) fn remove(&self, conn: &Connection) {
        self.shard(conn.worker_id()).conns.remove(&conn.id());
    }

    /// Sends `message` to every open connection, encoding the frame once: every recipient
    /// shares the same bytes. Returns how many connections it was queued for.
    ///
    /// With permessage-deflate the message is compressed once for every connection that
    /// agreed to the same terms without context takeover on our side, as the
    /// [`Hub`](crate::Hub) does (see its module's notes); others get the plain frame.
    ///
    /// From a connection's callbacks on a worker's event loop, the message is held until
    /// that connection's poll ends and then written to each connection there at once, as
    /// the Hub's sends to all are (see [`crate::hub`]).
    pub fn broadcast(&self, message: impl Into<Message>) -> usize {
        let message = message.into();
        if crate::hub::corking()
            && let Some(count) = crate::hub::hold_broadcast(self, &message)
        {
            return count;
        }
        let mut frames = Frames::new(&message);
        // Connections that resume get the message with the protocol's head, encoded once.
        let topic = crate::hub::Topic::All;
        let mut resuming = crate::hub::ResumeFrames::new(&topic, None, &message);
        let sent = self.for_each(|conn| {
            usize::from(match conn.resume() {
                Some(resume) => resume.offer(conn, &mut resuming),
                None => frames.send(conn),
            })
        });
        self.count_fanout(frames.counts());
        self.count_fanout(resuming.counts());
        sent
    }

    /// Adds what a fan-out compressed to the totals.
    pub(crate) fn count_fanout(&self, counts: FanoutCounts) {
        if counts.is_zero() {
            return;
        }
        let totals = &self.fanout;
        totals
            .compressions
            .fetch_add(counts.compressions, Ordering::Relaxed);
        totals
            .compressed_sends
            .fetch_add(counts.compressed_sends, Ordering::Relaxed);
        totals
            .written_now
            .fetch_add(counts.written_now, Ordering::Relaxed);
    }

    /// What the fan-outs over these connections compressed so far: how many times a message
    /// was compressed for many connections, and how many deliveries took such a frame. For
    /// tests and benchmarks.
    #[doc(hidden)]
    pub fn fanout_counts(&self) -> FanoutCounts {
        FanoutCounts {
            compressions: self.fanout.compressions.load(Ordering::Relaxed),
            compressed_sends: self.fanout.compressed_sends.load(Ordering::Relaxed),
            written_now: self.fanout.written_now.load(Ordering::Relaxed),
        }
    }

    /// Calls `f` on every open connection, one shard locked at a time; the sum of what it
    /// returned.
    pub(crate) fn for_each(&self, f: impl FnMut(&Connection) -> usize) -> usize {
        // What this thread holds goes first: `f` sends, after it.
        crate::hub::release_cork();
        self.for_each_as_is(f)
    }

    /// [`Connections::for_each`], leaving what this thread holds held: for `f` that sends
    /// nothing.
    pub(crate) fn for_each_as_is(&self, mut f: impl FnMut(&Connection) -> usize) -> usize {
        (0..self.shards.len())
            .map(|w| self.shard(w).conns.values().map(&mut f).sum::<usize>())
            .sum()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        (0..self.shards.len())
            .map(|w| self.shard(w).conns.len())
            .sum()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many connections each worker serves.
    pub fn per_worker(&self) -> Vec<usize> {
        (0..self.shards.len())
            .map(|w| self.shard(w).conns.len())
            .collect()
    }

    /// The open connection with this id.
    pub fn get(&self, id: u64) -> Option<Connection> {
        (0..self.shards.len()).find_map(|w| self.shard(w).conns.get(&id).cloned())
    }

    /// A snapshot of the open connections.
    pub fn to_vec(&self) -> Vec<Connection> {
        (0..self.shards.len())
            .flat_map(|w| self.shard(w).conns.values().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Starts the closing handshake on every connection of one worker, and on those whose
    /// handshake is still under way as they open.
    pub(crate) fn close_worker(&self, worker: usize, code: CloseCode, reason: &str) {
        let conns: Vec<Connection> = {
            let mut shard = self.shard(worker);
            shard.closing = Some((code, reason.to_owned()));
            shard.conns.values().cloned().collect()
        };
        for conn in conns {
            let _ = conn.close(code, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use wsworker_proto::handshake::parse_request;

    use super::*;
    use crate::hub::WeakHub;
    use crate::shared::Shared;

    fn connection(worker: usize) -> Connection {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (request, _) = parse_request(head, 1024).unwrap().unwrap();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let conn = Connection::new(
            Shared::new(),
            worker,
            Some(peer),
            request,
            None,
            WeakHub::default(),
            None,
        );
        conn.shared()
            .set_ready_state(wsworker_proto::ReadyState::Open);
        conn
    }

    #[test]
    fn a_connection_opening_after_its_worker_began_to_stop_is_closed_too() {
        let registry = Connections::new(2);
        let before = connection(0);
        registry.insert(&before);
        registry.close_worker(0, CloseCode::GOING_AWAY, "server shutting down");
        let late = connection(0);
        let other_worker = connection(1);
        registry.insert(&late);
        registry.insert(&other_worker);
        // A close queued for the driver counts in the buffered amount until it is taken.
        assert!(before.buffered_amount() > 0);
        assert!(late.buffered_amount() > 0, "closed as it opened");
        assert_eq!(other_worker.buffered_amount(), 0, "another worker goes on");
    }
}

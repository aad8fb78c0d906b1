//! The sends of a client that reconnects or resumes: they go straight to the connection
//! while it is ready, and wait here, in order and within a bound, while it is not — between
//! connections, and until the server answers `start` or `resume` — to go out first when it
//! is ready again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use wsworker_proto::Message;

use crate::error::{Error, Result};
use crate::shared::{Command, Shared};

/// What a held message weighs besides its payload, so that empty messages are bounded too.
const MESSAGE_OVERHEAD: usize = 64;

/// Messages held while the connection is not ready.
#[derive(Debug)]
pub(super) struct Gate {
    state: Mutex<State>,
    /// The most the held messages may weigh.
    limit: usize,
    /// The payload bytes held, for `buffered_amount` without the lock.
    held: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    /// Sends go to the connection.
    open: bool,
    /// The connection is over for good: sends fail.
    ended: bool,
    queue: VecDeque<Message>,
    /// What the queue weighs (payloads and overheads).
    weight: usize,
}

impl Gate {
    /// A closed gate that holds at most `limit` bytes.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            state: Mutex::default(),
            limit,
            held: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The queue stays consistent whatever panicked while it was locked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `message` on the connection when it is ready, holds it otherwise.
    ///
    /// # Errors
    /// [`Error::Closed`] once the connection is over for good; [`Error::QueueFull`] when
    /// holding the message would pass the limit.
    pub(super) fn send(&self, shared: &Shared, message: Message) -> Result<()> {
        let mut state = self.lock();
        if state.ended {
            return Err(Error::Closed);
        }
        // The lock is held across the send, so that `close` finds every message sent before
        // it in the connection's inbox.
        if state.open && shared.send(message.clone()).is_ok() {
            return Ok(());
        }
        // Not ready, or the connection is closing and refused it: the next one sends it.
        let weight = message.len() + MESSAGE_OVERHEAD;
        if state.weight + weight > self.limit {
            return Err(Error::QueueFull { limit: self.limit });
        }
        state.weight += weight;
        self.held.fetch_add(message.len(), Ordering::Relaxed);
        state.queue.push_back(message);
        Ok(())
    }

    /// The connection is ready: what was held goes out first, in order, then every send
    /// goes straight to it. Called by the connection's driver (the messages go out ahead of
    /// anything sent after).
    pub(super) fn open(&self, shared: &Shared) {
        let mut state = self.lock();
        if state.ended {
            return;
        }
        while let Some(message) = state.queue.pop_front() {
            if shared.send(message.clone()).is_err() {
                // Closing already: kept for the next connection.
                state.queue.push_front(message);
                return;
            }
            state.weight -= message.len() + MESSAGE_OVERHEAD;
            self.held.fetch_sub(message.len(), Ordering::Relaxed);
        }
        state.open = true;
    }

    /// The connection is lost: sends are held from now on, and those still waiting in its
    /// inbox come back to the front of the queue (accepted already, they do not count
    /// against the limit).
    pub(super) fn close(&self, shared: &Shared) {
        let mut state = self.lock();
        state.open = false;
        for command in shared.drain_commands().into_iter().rev() {
            if let Command::Send(message) = command {
                state.weight += message.len() + MESSAGE_OVERHEAD;
                self.held.fetch_add(message.len(), Ordering::Relaxed);
                state.queue.push_front(message);
            }
        }
    }

    /// The connection is over for good: what was held is dropped, and sends fail.
    pub(super) fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        state.open = false;
        state.queue.clear();
        state.weight = 0;
        self.held.store(0, Ordering::Relaxed);
    }

    /// The payload bytes held.
    pub(super) fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsworker_proto::ReadyState;

    fn sent(shared: &Shared) -> Vec<Message> {
        shared
            .drain_commands()
            .into_iter()
            .map(|c| match c {
                Command::Send(m) => m,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn sends_wait_while_closed_and_go_out_first_in_order() {
        let shared = Shared::new();
        let gate = Gate::new(1 << 20);
        gate.send(&shared, Message::text("a")).unwrap();
        gate.send(&shared, Message::binary(vec![1, 2])).unwrap();
        assert_eq!(gate.held_bytes(), 3);
        assert!(sent(&shared).is_empty());
        shared.set_ready_state(ReadyState::Open);
        gate.open(&shared);
        gate.send(&shared, Message::text("c")).unwrap();
        assert_eq!(
            sent(&shared),
            [
                Message::text("a"),
                Message::binary(vec![1, 2]),
                Message::text("c")
            ]
        );
        assert_eq!(gate.held_bytes(), 0);
    }

    #[test]
    fn a_lost_connections_unsent_messages_come_back_first() {
        let shared = Shared::new();
        shared.set_ready_state(ReadyState::Open);
        let gate = Gate::new(1 << 20);
        gate.open(&shared);
        gate.send(&shared, Message::text("unsent 1")).unwrap();
        gate.send(&shared, Message::text("unsent 2")).unwrap();
        // The connection closes: further sends are refused by it and held.
        shared.set_ready_state(ReadyState::Closing);
        gate.send(&shared, Message::text("during the close"))
            .unwrap();
        gate.close(&shared);
        gate.send(&shared, Message::text("while away")).unwrap();
        assert_eq!(shared.buffered_amount(), 0);
        shared.set_ready_state(ReadyState::Open);
        gate.open(&shared);
        assert_eq!(
            sent(&shared),
            ["unsent 1", "unsent 2", "during the close", "while away"].map(Message::text)
        );
    }

    #[test]
    fn the_queue_is_bounded_and_an_ended_gate_refuses() {
        let shared = Shared::new();
        let gate = Gate::new(2 * MESSAGE_OVERHEAD + 10);
        gate.send(&shared, Message::text("12345")).unwrap();
        gate.send(&shared, Message::text("12345")).unwrap();
        assert!(matches!(
            gate.send(&shared, Message::text("")),
            Err(Error::QueueFull { .. })
        ));
        gate.end();
        assert_eq!(gate.held_bytes(), 0);
        assert!(matches!(
            gate.send(&shared, Message::text("x")),
            Err(Error::Closed)
        ));
        shared.set_ready_state(ReadyState::Open);
        gate.open(&shared);
        assert!(sent(&shared).is_empty());
    }
}

//! What a connection's handles share with the task that drives it: the command channel,
//! the ready state and the buffered byte count.
//!
//! A handle used from inside one of its own connection's callbacks (the usual
//! `conn.send(..)` in `on_message`) does not go through the channel: the driver is already
//! running on this thread, so the command goes into a thread-local outbox that the driver
//! applies as soon as the callback returns — no channel, no lock, no task wake-up.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use wsworker_proto::{CloseCode, Message, PreparedFrame, ReadyState};

use crate::error::{Error, Result};

/// Something a handle asks the driver to do.
#[derive(Debug)]
pub(crate) enum Command {
    Send(Message),
    Prepared(PreparedFrame),
    Ping(Bytes),
    Close(CloseCode, String),
}

impl Command {
    /// The bytes this command adds to the send queue, for `buffered_amount`.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Self::Send(m) => m.len(),
            Self::Prepared(f) => f.as_bytes().len(),
            Self::Ping(p) => p.len(),
            Self::Close(_, r) => r.len() + 2,
        }
    }
}

/// How a connection ended, as the browser's `CloseEvent` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code: the peer's, ours when we failed the connection, 1005 when the close
    /// frame had none, 1006 when the connection dropped without a closing handshake.
    pub code: CloseCode,
    /// The reason that came with the code.
    pub reason: String,
    /// Whether the closing handshake completed.
    pub was_clean: bool,
}

/// Runs a user callback, turning a panic into its message so that it ends only the
/// connection it happened on.
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned())
    })
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// State shared by a connection's handles and its driver.
#[derive(Debug)]
pub(crate) struct Shared {
    id: u64,
    tx: mpsc::UnboundedSender<Command>,
    /// Bytes sent through the channel and not yet taken by the driver.
    pending: AtomicUsize,
    /// Bytes in the protocol's send queue, as last published by the driver.
    queued: AtomicUsize,
    state: AtomicU8,
}

impl Shared {
    pub(crate) fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            tx,
            pending: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            state: AtomicU8::new(ReadyState::Connecting as u8),
        };
        (Arc::new(shared), rx)
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn ready_state(&self) -> ReadyState {
        match self.state.load(Ordering::Acquire) {
            0 => ReadyState::Connecting,
            1 => ReadyState::Open,
            2 => ReadyState::Closing,
            _ => ReadyState::Closed,
        }
    }

    pub(crate) fn set_ready_state(&self, state: ReadyState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub(crate) fn buffered_amount(&self) -> usize {
        self.pending.load(Ordering::Relaxed) + self.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn publish_queued(&self, bytes: usize) {
        self.queued.store(bytes, Ordering::Relaxed);
    }

    /// Called by the driver for each command it takes from the channel.
    pub(crate) fn taken(&self, command: &Command) {
        self.pending.fetch_sub(command.weight(), Ordering::Relaxed);
    }

    /// Hands a command to the driver: through the outbox when the driver is running this
    /// connection's callback on this thread, through the channel otherwise.
    pub(crate) fn submit(&self, command: Command) -> Result<()> {
        if self.ready_state() >= ReadyState::Closing {
            return Err(Error::Closed);
        }
        let Err(command) = outbox::push(self.id, command) else {
            return Ok(());
        };
        let weight = command.weight();
        self.pending.fetch_add(weight, Ordering::Relaxed);
        self.tx.send(command).map_err(|_| {
            self.pending.fetch_sub(weight, Ordering::Relaxed);
            Error::Closed
        })
    }
}

/// The thread-local outbox of the connection whose callback is running.
pub(crate) mod outbox {
    use super::*;

    thread_local! {
        static CURRENT: Cell<u64> = const { Cell::new(0) };
        static COMMANDS: RefCell<Vec<Command>> = const { RefCell::new(Vec::new()) };
    }

    /// Queues `command` if `id`'s callback is running on this thread; gives it back if not.
    pub(crate) fn push(id: u64, command: Command) -> Result<(), Command> {
        if CURRENT.get() != id {
            return Err(command);
        }
        COMMANDS.with_borrow_mut(|commands| commands.push(command));
        Ok(())
    }

    /// Runs `f` with `id`'s outbox open, then moves what it queued to the end of `sent`.
    pub(crate) fn scope<R>(id: u64, f: impl FnOnce() -> R, sent: &mut Vec<Command>) -> R {
        let outer = CURRENT.replace(id);
        let result = f();
        CURRENT.set(outer);
        COMMANDS.with_borrow_mut(|commands| sent.append(commands));
        result
    }
}

//! The protocol state of a connection, put to sleep between bursts of traffic: an open
//! connection with nothing in flight keeps only its [`Dormant`] form (settings, the mask
//! source, the permessage-deflate state), and its full state machine — most of an idle
//! connection's memory — goes back to the thread, to be lent again when it wakes.
//!
//! When: a connection that has just opened, or whose poll moved nothing, sleeps at the end
//! of that poll; one that moved bytes sleeps at the runtime's next sweep (the event loop's
//! clock, at most a second later), so that a busy connection does not wake and sleep for
//! every message. Any use of the state machine wakes it.
//!
//! Waking costs no allocation once the thread holds a spare: the box of the last connection
//! that went to sleep is reused, and it is likely in the cache, where an idle connection's
//! own state would not be.

use std::cell::Cell;

use wsworker_proto::{Config, Connection as Proto, Dormant, ReadyState, Role};

thread_local! {
    /// The box of the last connection that went to sleep on this thread, empty.
    static SPARE: Cell<Option<Box<Proto>>> = const { Cell::new(None) };
}

/// A connection's protocol state: awake in a box of its own, or asleep. One of the two is
/// there at any time (a struct rather than an enum so that waking needs no placeholder).
#[derive(Debug)]
pub(super) struct ProtoSlot {
    awake: Option<Box<Proto>>,
    asleep: Option<Dormant>,
}

impl ProtoSlot {
    /// A connection's state, awake.
    pub(super) fn new(conn: Proto) -> Self {
        Self {
            awake: Some(Box::new(conn)),
            asleep: None,
        }
    }

    /// The state machine, woken first if it sleeps.
    #[inline]
    pub(super) fn get(&mut self) -> &mut Proto {
        if self.asleep.is_some() {
            self.wake();
        }
        // The slot is made awake, and only `sleep` empties `awake`, filling `asleep`: the
        // default is never made.
        self.awake
            .get_or_insert_with(|| Box::new(Proto::new(Role::Server, Config::default())))
    }

    #[cold]
    fn wake(&mut self) {
        if let Some(dormant) = self.asleep.take() {
            self.awake = Some(wake(dormant));
        }
    }

    /// Puts the state machine to sleep if it is [at rest](Proto::is_at_rest) or [closed and
    /// flushed](Proto::is_closed_and_flushed); its box goes to the thread. Whether it
    /// sleeps.
    pub(super) fn sleep(&mut self) -> bool {
        let Some(conn) = self.awake.as_mut() else {
            return self.asleep.is_some();
        };
        let Some(dormant) = conn.sleep() else {
            return false;
        };
        self.asleep = Some(dormant);
        SPARE.set(self.awake.take());
        true
    }

    /// The state, as the browser API names it.
    pub(super) fn ready_state(&self) -> ReadyState {
        match (&self.awake, &self.asleep) {
            (Some(conn), _) => conn.ready_state(),
            (None, Some(dormant)) => dormant.ready_state(),
            (None, None) => ReadyState::Open,
        }
    }

    /// Whether the state machine sleeps.
    pub(super) fn is_asleep(&self) -> bool {
        self.asleep.is_some()
    }
}

/// The state machine `dormant` was, in the thread's spare box when it has one.
fn wake(dormant: Dormant) -> Box<Proto> {
    let conn = Proto::wake(dormant);
    match SPARE.take() {
        Some(mut boxed) => {
            *boxed = conn;
            boxed
        }
        None => Box::new(conn),
    }
}

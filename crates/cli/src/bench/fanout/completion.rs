//! The closed loop of `--fanout --inflight K`: which published messages every subscriber has
//! received, so that the publisher keeps K of them outstanding.
//!
//! A message in flight has a counter in a ring (slot `seq mod len`, `len` ≥ K, so the K
//! messages in flight never share one). Each subscriber adds one to the counter of every
//! message its expected sequence number moves past — the message it received, and those a
//! gap skipped (they will not come any more) — so each subscriber counts each message once.
//! The subscriber that brings a counter to the number of subscribers wakes the publisher,
//! which then takes the complete messages off the front of its window (clearing their
//! counters for the messages `len` further on) and sends as many new ones.
//!
//! A subscriber that ends early (the server closed it) leaves: the number a counter must
//! reach drops by one and the publisher is woken, so the loop goes on without it. What that
//! subscriber counted before it left still counts, so around its departure a message may be
//! taken as complete one subscriber early; the run has failed anyway (its error is counted).
//! A subscriber that never joined the room would hold every message back: the publishing
//! window (`--duration`) bounds that, and the drain counts what did not come.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::Notify;

/// The counters of the messages in flight, shared by the subscribers and the publisher.
#[derive(Debug)]
pub(super) struct Completion {
    /// Per message in flight, the subscribers that have it (slot `seq & mask`).
    counts: Box<[AtomicU32]>,
    mask: u64,
    /// Subscribers still receiving: the count at which a message is complete.
    target: AtomicU32,
    /// Wakes the publisher when a message completes or a subscriber leaves.
    wake: Notify,
}

impl Completion {
    /// Counters for `inflight` messages in flight to `subscribers` subscribers.
    pub(super) fn new(inflight: u32, subscribers: u32) -> Self {
        let len = inflight.max(1).next_power_of_two();
        Self {
            counts: (0..len).map(|_| AtomicU32::new(0)).collect(),
            mask: u64::from(len - 1),
            target: AtomicU32::new(subscribers),
            wake: Notify::new(),
        }
    }

    /// A subscriber's expected sequence number moved from `from` to `to` (exclusive): it
    /// has every message in between, or will not get those it skipped.
    pub(super) fn passed(&self, from: u64, to: u64) {
        // Only a server that invents sequence numbers skips more than the ring holds; the
        // counters then mean little, but the work stays bounded.
        let from = from.max(to.saturating_sub(self.mask + 1));
        let target = self.target.load(Ordering::Acquire);
        let mut complete = false;
        for seq in from..to {
            // `seq & mask` < the ring's length, which is a u32.
            let count = self.counts[(seq & self.mask) as usize].fetch_add(1, Ordering::AcqRel) + 1;
            complete |= count >= target;
        }
        if complete {
            self.wake.notify_one();
        }
    }

    /// A subscriber stopped receiving before the end of the run.
    pub(super) fn leave(&self) {
        // Never below zero, even if called once too often.
        let _ = (self.target).fetch_update(Ordering::AcqRel, Ordering::Acquire, |target| {
            target.checked_sub(1)
        });
        self.wake.notify_one();
    }

    /// Moves `done` past the messages every subscriber has, among those below `sent`, and
    /// clears their counters for the messages that will take their slots.
    pub(super) fn advance(&self, done: &mut u64, sent: u64) {
        let target = self.target.load(Ordering::Acquire);
        while *done < sent {
            let slot = &self.counts[(*done & self.mask) as usize];
            if slot.load(Ordering::Acquire) < target {
                break;
            }
            slot.store(0, Ordering::Release);
            *done += 1;
        }
    }

    /// Waits until a message may have completed or a subscriber left. A wake-up that came
    /// while the publisher was busy is kept for its next wait.
    pub(super) async fn changed(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::pin::{Pin, pin};
    use std::task::{Context, Poll, Waker};

    use super::*;

    #[test]
    fn a_message_completes_when_every_subscriber_has_it() {
        let completion = Completion::new(3, 2);
        let mut done = 0;
        // Ring of 4: messages 0..3 in flight.
        completion.passed(0, 2);
        completion.advance(&mut done, 3);
        assert_eq!(done, 0);
        completion.passed(0, 1);
        completion.advance(&mut done, 3);
        assert_eq!(done, 1);
        // A gap: the second subscriber skipped message 1 and got 2.
        completion.passed(1, 3);
        completion.advance(&mut done, 3);
        assert_eq!(done, 2);
        completion.passed(2, 3);
        completion.advance(&mut done, 3);
        assert_eq!(done, 3);
        // The slots were cleared for the messages that reuse them.
        completion.passed(3, 5);
        completion.advance(&mut done, 5);
        assert_eq!(done, 3);
        completion.passed(3, 5);
        completion.advance(&mut done, 5);
        assert_eq!(done, 5);
    }

    #[test]
    fn a_subscriber_that_leaves_holds_nothing_back() {
        let completion = Completion::new(8, 3);
        let mut done = 0;
        completion.passed(0, 4);
        completion.passed(0, 4);
        completion.advance(&mut done, 4);
        assert_eq!(done, 0);
        completion.leave();
        completion.advance(&mut done, 4);
        assert_eq!(done, 4);
        // Never sent: never complete, whatever the counters say.
        completion.passed(4, 6);
        completion.passed(4, 6);
        completion.advance(&mut done, 5);
        assert_eq!(done, 5);
    }

    #[test]
    fn the_last_subscriber_wakes_the_publisher() {
        let completion = Completion::new(2, 2);
        completion.passed(0, 1);
        let mut waiting = pin!(completion.changed());
        assert!(poll_once(waiting.as_mut()).is_pending());
        completion.passed(0, 1);
        assert!(poll_once(waiting.as_mut()).is_ready());
        // Nothing completes, nothing wakes.
        completion.passed(1, 2);
        assert!(poll_once(pin!(completion.changed())).is_pending());
        // A wake-up with no one waiting is kept for the next wait.
        completion.passed(1, 2);
        assert!(poll_once(pin!(completion.changed())).is_ready());
        assert!(poll_once(pin!(completion.changed())).is_pending());
    }

    /// Polls a future once.
    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }
}

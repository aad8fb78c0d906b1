//! A topic's order on one node: messages come from Redis pub/sub, which may drop some
//! (a subscriber cut off, a reconnect) and never reorders what it delivers; each carries
//! its topic's epoch and offset. This releases them in offset order, asks for the topic's
//! stream to fill a gap before anything later is released, and reports what cannot be
//! filled (trimmed, or gone with the epoch) instead of delivering a hole.
//!
//! Pure logic, no I/O: the engine feeds it what arrives and carries out the [`Step`]s.

use std::collections::BTreeMap;

/// The most messages held back behind a gap; past it the gap is given up (reported) so
/// that a stalled fill cannot grow a node's memory without bound.
pub(crate) const MAX_HELD: usize = 10_000;
/// The most offsets one fill reads: a long gap is read in several, so that no reply is
/// large enough to time out.
pub(crate) const MAX_FILL: u64 = 256;

/// What the engine should do, in order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step<T> {
    /// Hand this message to the node's members.
    Deliver(T),
    /// Read offsets `from..=to` from the topic's stream and call [`Order::on_fill`] with
    /// `ticket`.
    Fill { from: u64, to: u64, ticket: u64 },
    /// Tell the application: offsets `lost` (in the topic's old epoch when `lost` is
    /// `None`: everything after what was delivered) will never come; `epoch` from now on.
    Resync {
        lost: Option<(u64, u64)>,
        epoch: u64,
    },
}

/// One topic's state on one node.
#[derive(Debug)]
pub(crate) struct Order<T> {
    /// The epoch of what was delivered; `None` before the topic existed.
    epoch: Option<u64>,
    /// The next offset to deliver.
    next: u64,
    /// Messages past a gap, waiting for the fill.
    held: BTreeMap<u64, T>,
    /// The highest offset known to exist in `epoch`.
    top: u64,
    /// The ticket of the fill in flight (at most one per topic: a gap is filled once per
    /// node). A reply with another ticket is stale (asked before an epoch change).
    filling: Option<u64>,
    tickets: u64,
}

impl<T> Order<T> {
    /// Starts after `top`, the topic's last offset in `epoch` when this node became
    /// interested (`None`, 0: the topic has no messages yet).
    pub(crate) fn new(epoch: Option<u64>, top: u64) -> Self {
        Self {
            epoch,
            next: top + 1,
            top,
            held: BTreeMap::new(),
            filling: None,
            tickets: 0,
        }
    }

    /// The epoch and the next offset to deliver.
    #[cfg(test)]
    pub(crate) fn position(&self) -> (Option<u64>, u64) {
        (self.epoch, self.next)
    }

    /// A message from pub/sub.
    pub(crate) fn on_live(&mut self, epoch: u64, offset: u64, message: T, out: &mut Vec<Step<T>>) {
        if self.epoch != Some(epoch) {
            self.new_epoch(Some(epoch), out);
        }
        if offset < self.next || self.held.contains_key(&offset) {
            return; // a duplicate (the seam of a fill)
        }
        self.top = self.top.max(offset);
        self.held.insert(offset, message);
        self.release(out);
        if self.held.len() > MAX_HELD {
            // The gap before the held messages is given up.
            let first = self.first_held();
            out.push(Step::Resync {
                lost: Some((self.next, first - 1)),
                epoch,
            });
            self.next = first;
            self.release(out);
        }
        self.ask_fill(out);
    }

    /// The topic's state read after a (re)subscription: its epoch (`None`: the topic has
    /// no messages) and last offset. Fills what was published while this node was not
    /// listening.
    pub(crate) fn on_check(&mut self, epoch: Option<u64>, top: u64, out: &mut Vec<Step<T>>) {
        // The check was read on another connection than the live messages come on, and
        // may be older than some of them: one that shows an earlier epoch (or none) than
        // theirs is stale, not a lost history. (Epochs only grow; a history that is lost
        // shows when the topic's next message comes in a new epoch.)
        if epoch < self.epoch {
            return;
        }
        if self.epoch != epoch {
            self.new_epoch(epoch, out);
        }
        self.top = self.top.max(top);
        self.ask_fill(out);
    }

    /// The answer to a [`Step::Fill`] of `from..=to`: the topic's epoch and last offset now,
    /// and the entries of the range the stream still has, in offset order.
    pub(crate) fn on_fill(
        &mut self,
        ticket: u64,
        epoch: Option<u64>,
        top: u64,
        entries: Vec<(u64, T)>,
        to: u64,
        out: &mut Vec<Step<T>>,
    ) {
        if self.filling != Some(ticket) {
            return; // asked before an epoch change: not this history's
        }
        self.filling = None;
        if self.epoch != epoch {
            // The history the fill read is not the one the gap is in.
            self.new_epoch(epoch, out);
            self.on_check(epoch, top, out);
            return;
        }
        self.top = self.top.max(top);
        let epoch = epoch.unwrap_or(0);
        for (offset, message) in entries {
            if offset < self.next || offset > to {
                continue;
            }
            if offset > self.next {
                out.push(Step::Resync {
                    lost: Some((self.next, offset - 1)),
                    epoch,
                });
                self.next = offset;
            }
            self.held.remove(&offset);
            out.push(Step::Deliver(message));
            self.next += 1;
        }
        if self.next <= to {
            // Not in the stream any more (trimmed or expired) and not held.
            let last = self
                .held
                .keys()
                .next()
                .map_or(to, |first| (first - 1).min(to));
            if last >= self.next {
                out.push(Step::Resync {
                    lost: Some((self.next, last)),
                    epoch,
                });
                self.next = last + 1;
            }
        }
        self.release(out);
        self.ask_fill(out);
    }

    /// Delivers the held messages that follow on.
    fn release(&mut self, out: &mut Vec<Step<T>>) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() < self.next {
                entry.remove();
            } else if *entry.key() == self.next {
                out.push(Step::Deliver(entry.remove()));
                self.next += 1;
            } else {
                break;
            }
        }
    }

    /// Asks for the gap before the first held message, or up to the highest offset known,
    /// unless a fill is in flight.
    fn ask_fill(&mut self, out: &mut Vec<Step<T>>) {
        if self.filling.is_some() {
            return;
        }
        let to = match self.held.keys().next() {
            Some(first) => first - 1,
            None => self.top,
        };
        if to >= self.next {
            self.tickets += 1;
            self.filling = Some(self.tickets);
            out.push(Step::Fill {
                from: self.next,
                to: to.min(self.next + MAX_FILL - 1),
                ticket: self.tickets,
            });
        }
    }

    fn first_held(&self) -> u64 {
        self.held.keys().next().copied().unwrap_or(self.next)
    }

    /// The topic's history changed under us: whatever followed what was delivered is lost
    /// (reported, unless the topic is new to this node), and the new epoch starts at 1.
    fn new_epoch(&mut self, epoch: Option<u64>, out: &mut Vec<Step<T>>) {
        if self.epoch.is_some() {
            out.push(Step::Resync {
                lost: None,
                epoch: epoch.unwrap_or(0),
            });
        }
        self.epoch = epoch;
        self.next = 1;
        self.top = 0;
        self.held.clear();
        self.filling = None;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn delivered(steps: &[Step<u64>]) -> Vec<u64> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Deliver(m) => Some(*m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn in_order_messages_pass_straight_through() {
        let mut order = Order::new(Some(7), 10);
        let mut out = Vec::new();
        for off in 11..=13 {
            order.on_live(7, off, off, &mut out);
        }
        assert_eq!(
            out,
            vec![Step::Deliver(11), Step::Deliver(12), Step::Deliver(13)]
        );
        order.on_live(7, 12, 12, &mut out); // a duplicate
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_check_older_than_the_live_messages_is_no_lost_history() {
        let mut order = Order::new(None, 0);
        let mut out = Vec::new();
        order.on_live(7, 1, 1, &mut out);
        // Read before message 1 was published, answered after it came.
        order.on_check(None, 0, &mut out);
        order.on_check(Some(6), 40, &mut out);
        assert_eq!(out, vec![Step::Deliver(1)]);
        assert_eq!(order.position(), (Some(7), 2));
        // A newer epoch in a check is a lost history.
        order.on_check(Some(8), 0, &mut out);
        assert_eq!(
            out[1..],
            [Step::Resync {
                lost: None,
                epoch: 8
            }]
        );
    }

    #[test]
    fn a_gap_is_filled_once_before_later_messages_are_released() {
        let mut order = Order::new(Some(7), 0);
        let mut out = Vec::new();
        order.on_live(7, 1, 1, &mut out);
        order.on_live(7, 4, 4, &mut out);
        order.on_live(7, 5, 5, &mut out);
        assert_eq!(
            out,
            vec![
                Step::Deliver(1),
                Step::Fill {
                    from: 2,
                    to: 3,
                    ticket: 1
                }
            ],
            "4 and 5 wait, one fill asked"
        );
        out.clear();
        order.on_fill(1, Some(7), 5, vec![(2, 2), (3, 3)], 3, &mut out);
        assert_eq!(delivered(&out), vec![2, 3, 4, 5]);
        assert_eq!(order.position(), (Some(7), 6));
    }

    #[test]
    fn a_trimmed_range_is_reported_not_skipped_silently() {
        let mut order = Order::new(Some(7), 0);
        let mut out = Vec::new();
        order.on_live(7, 6, 6, &mut out);
        out.clear();
        // The stream kept only 4 and 5 of 1..=5.
        order.on_fill(1, Some(7), 6, vec![(4, 4), (5, 5)], 5, &mut out);
        assert_eq!(
            out,
            vec![
                Step::Resync {
                    lost: Some((1, 3)),
                    epoch: 7
                },
                Step::Deliver(4),
                Step::Deliver(5),
                Step::Deliver(6)
            ]
        );
    }

    #[test]
    fn a_new_epoch_is_reported_and_read_from_its_start() {
        let mut order = Order::new(Some(7), 3);
        let mut out = Vec::new();
        order.on_live(9, 2, 2, &mut out);
        assert_eq!(
            out,
            vec![
                Step::Resync {
                    lost: None,
                    epoch: 9
                },
                Step::Fill {
                    from: 1,
                    to: 1,
                    ticket: 1
                }
            ]
        );
        out.clear();
        order.on_fill(1, Some(9), 2, vec![(1, 1)], 1, &mut out);
        assert_eq!(delivered(&out), vec![1, 2]);
    }

    #[test]
    fn a_check_after_resubscribing_fills_what_was_missed() {
        let mut order = Order::<u64>::new(Some(7), 3);
        let mut out = Vec::new();
        order.on_check(Some(7), 3, &mut out);
        assert!(out.is_empty(), "nothing missed");
        order.on_check(Some(7), 6, &mut out);
        assert_eq!(
            out,
            vec![Step::Fill {
                from: 4,
                to: 6,
                ticket: 1
            }]
        );
        out.clear();
        order.on_check(Some(7), 8, &mut out);
        assert!(out.is_empty(), "a fill is in flight already");
    }

    #[test]
    fn a_topic_that_did_not_exist_starts_at_one_without_a_resync() {
        let mut order = Order::new(None, 0);
        let mut out = Vec::new();
        order.on_live(5, 1, 1, &mut out);
        assert_eq!(out, vec![Step::Deliver(1)]);
    }

    #[test]
    fn held_messages_are_bounded() {
        let mut order = Order::new(Some(1), 0);
        let mut out = Vec::new();
        for off in 2..=(MAX_HELD as u64 + 2) {
            order.on_live(1, off, off, &mut out);
        }
        assert!(out.contains(&Step::Resync {
            lost: Some((1, 1)),
            epoch: 1
        }));
        assert_eq!(delivered(&out).len(), MAX_HELD + 1);
    }

    #[test]
    fn a_fill_asked_before_an_epoch_change_is_ignored_when_it_answers() {
        let mut order = Order::new(Some(7), 0);
        let mut out = Vec::new();
        order.on_live(7, 500, 500, &mut out); // asks 1..=256 (ticket 1)
        out.clear();
        // Redis restarted: the new epoch's offset 1 arrives, then the old fill answers from
        // the new Redis (epoch 9, top 1, nothing in 1..=256 but offset 1).
        order.on_live(9, 1, 1, &mut out);
        assert!(out.contains(&Step::Deliver(1)));
        out.clear();
        order.on_fill(1, Some(9), 1, vec![(1, 1)], 256, &mut out);
        assert!(out.is_empty(), "stale: {out:?}");
        order.on_live(9, 2, 2, &mut out);
        assert_eq!(
            out,
            vec![Step::Deliver(2)],
            "offset 2 is not taken for a duplicate"
        );
    }

    #[test]
    fn a_long_gap_is_read_in_chunks() {
        let mut order = Order::new(Some(1), 0);
        let mut out = Vec::new();
        order.on_live(1, 1_000, 1_000, &mut out);
        assert_eq!(
            out,
            vec![Step::Fill {
                from: 1,
                to: MAX_FILL,
                ticket: 1
            }]
        );
        out.clear();
        order.on_fill(
            1,
            Some(1),
            1_000,
            (1..=MAX_FILL).map(|o| (o, o)).collect(),
            MAX_FILL,
            &mut out,
        );
        assert_eq!(
            out.last(),
            Some(&Step::Fill {
                from: MAX_FILL + 1,
                to: 2 * MAX_FILL,
                ticket: 2
            })
        );
    }

    #[test]
    fn a_check_read_before_later_messages_arrived_changes_nothing() {
        let mut order = Order::new(Some(7), 0);
        let mut out = Vec::new();
        for off in 1..=5 {
            order.on_live(7, off, off, &mut out);
        }
        out.clear();
        // Read when the topic's top was 2: older than what was delivered since.
        order.on_check(Some(7), 2, &mut out);
        assert!(out.is_empty(), "{out:?}");
        order.on_live(7, 6, 6, &mut out);
        assert_eq!(out, vec![Step::Deliver(6)]);
    }

    proptest! {
        /// Whatever pub/sub drops, with fills from a stream that has everything, every
        /// message is delivered once, in order.
        #[test]
        fn drops_with_fills_deliver_everything_in_order(
            kept in proptest::collection::vec(any::<bool>(), 1..200),
            fill_late in any::<bool>(),
        ) {
            let n = kept.len() as u64;
            let mut order = Order::new(Some(1), 0);
            let mut out = Vec::new();
            let mut got = Vec::new();
            let mut fills = Vec::new();
            let run = |out: &mut Vec<Step<u64>>, fills: &mut Vec<(u64, u64, u64)>, got: &mut Vec<u64>| {
                for step in out.drain(..) {
                    match step {
                        Step::Deliver(m) => got.push(m),
                        Step::Fill { from, to, ticket } => fills.push((from, to, ticket)),
                        Step::Resync { .. } => panic!("nothing is lost here"),
                    }
                }
            };
            for (i, keep) in kept.iter().enumerate() {
                let off = i as u64 + 1;
                if *keep {
                    order.on_live(1, off, off, &mut out);
                    run(&mut out, &mut fills, &mut got);
                }
                if !fill_late {
                    while let Some((from, to, ticket)) = fills.pop() {
                        order.on_fill(ticket, Some(1), off, (from..=to).map(|o| (o, o)).collect(), to, &mut out);
                        run(&mut out, &mut fills, &mut got);
                    }
                }
            }
            order.on_check(Some(1), n, &mut out);
            run(&mut out, &mut fills, &mut got);
            while let Some((from, to, ticket)) = fills.pop() {
                order.on_fill(ticket, Some(1), n, (from..=to).map(|o| (o, o)).collect(), to, &mut out);
                run(&mut out, &mut fills, &mut got);
            }
            prop_assert_eq!(got, (1..=n).collect::<Vec<_>>());
        }
    }
}

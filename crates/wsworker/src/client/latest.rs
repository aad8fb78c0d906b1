//! [`Latest`]: a value that each new connection of a handle may change (what its handshake
//! negotiated) and that the handle lends out as `&str` for as long as it lives. The values
//! are kept in an append-only list — each distinct one once, so it stays as short as the
//! number of different answers — and the current one is an index into it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most distinct values kept; past it, a new value is not recorded (a server that
/// answers differently on every reconnect would otherwise grow the list without end).
const MAX_VALUES: usize = 32;

/// The current value among those seen; written by one task, read by any.
#[derive(Debug)]
pub(super) struct Latest<T> {
    first: OnceLock<Box<Node<T>>>,
    /// 0 for none, else the 1-based position of the current value in the list.
    current: AtomicUsize,
}

#[derive(Debug)]
struct Node<T> {
    value: T,
    next: OnceLock<Box<Self>>,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self {
            first: OnceLock::new(),
            current: AtomicUsize::new(0),
        }
    }
}

impl<T: PartialEq> Latest<T> {
    /// The current value.
    pub(super) fn get(&self) -> Option<&T> {
        let position = self.current.load(Ordering::Acquire);
        let mut node = self.first.get()?;
        for _ in 1..position {
            node = node.next.get()?;
        }
        (position > 0).then_some(&node.value)
    }

    /// Makes `value` the current one. Only one task may call it (the connection's).
    pub(super) fn set(&self, value: T) {
        let mut slot = &self.first;
        let mut position = 1;
        loop {
            match slot.get() {
                Some(node) if node.value == value => break,
                Some(node) if position < MAX_VALUES => {
                    slot = &node.next;
                    position += 1;
                }
                Some(_) => return,
                None => {
                    let _ = slot.set(Box::new(Node {
                        value,
                        next: OnceLock::new(),
                    }));
                    break;
                }
            }
        }
        self.current.store(position, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_value_changes_and_each_distinct_one_is_kept_once() {
        let latest = Latest::default();
        assert_eq!(latest.get(), None);
        latest.set("a".to_owned());
        let a: &String = latest.get().unwrap();
        latest.set("b".to_owned());
        assert_eq!(latest.get().map(String::as_str), Some("b"));
        assert_eq!(a, "a", "what was lent stays valid");
        latest.set("a".to_owned());
        assert_eq!(latest.get().map(String::as_str), Some("a"));
        assert_eq!(latest.current.load(Ordering::Relaxed), 1, "not kept twice");
    }

    #[test]
    fn the_list_is_bounded() {
        let latest = Latest::default();
        for i in 0..100 {
            latest.set(i);
        }
        assert_eq!(latest.get(), Some(&(MAX_VALUES - 1)));
        latest.set(3);
        assert_eq!(latest.get(), Some(&3));
    }
}

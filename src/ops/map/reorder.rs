//! Results come back in any order; `map` prints them in input order. The
//! window holds results that arrived early, and tells the dispatcher when
//! it may read more input, so memory stays bounded however long the input
//! and however large the outputs that wait behind one slow item.

use std::collections::VecDeque;

pub(super) struct Reorder<T> {
    /// The next sequence number to hand out.
    next: u64,
    /// The items from `next` on, as far as one has a result: results
    /// arrive close to their turn (each engine's batch is a run of
    /// sequence numbers), so a ring indexed from `next` holds them with
    /// no search and no rebalancing.
    early: VecDeque<Slot<T>>,
    window: u64,
    /// Bytes of the early results, and how many may wait.
    held: usize,
    budget: usize,
}

enum Slot<T> {
    Awaited,
    /// An item that will never have a result.
    Never,
    Arrived(T, usize),
}

impl<T> Reorder<T> {
    /// At most `window` items, and no new one once `budget` bytes wait.
    pub(super) fn new(window: u64, budget: usize) -> Self {
        Self {
            next: 0,
            early: VecDeque::new(),
            window,
            held: 0,
            budget,
        }
    }

    /// Item `seq`'s slot; none for an item whose turn has passed.
    fn slot(&mut self, seq: u64) -> Option<&mut Slot<T>> {
        let at = seq.checked_sub(self.next)? as usize;
        if at >= self.early.len() {
            self.early.resize_with(at + 1, || Slot::Awaited);
        }
        Some(&mut self.early[at])
    }

    /// The result of item `seq`, `size` bytes of it.
    pub(super) fn insert(&mut self, seq: u64, value: T, size: usize) {
        if let Some(slot) = self.slot(seq) {
            *slot = Slot::Arrived(value, size);
            self.held += size;
        }
    }

    /// Item `seq` has no result (it was never run); stop waiting for it.
    pub(super) fn skip(&mut self, seq: u64) {
        if let Some(slot) = self.slot(seq) {
            *slot = Slot::Never;
        }
    }

    /// The next result in order, if it has arrived.
    pub(super) fn pop(&mut self) -> Option<T> {
        loop {
            match self.early.pop_front()? {
                Slot::Arrived(value, size) => {
                    self.next += 1;
                    self.held -= size;
                    return Some(value);
                }
                Slot::Never => self.next += 1,
                Slot::Awaited => {
                    self.early.push_front(Slot::Awaited);
                    return None;
                }
            }
        }
    }

    /// Whether item `seq` may be started: it is within `window` of the
    /// oldest result still awaited, and the early results fit the budget.
    /// (What is already read always runs: the oldest item is never held up.)
    pub(super) fn admits(&self, seq: u64) -> bool {
        seq < self.next + self.window && self.held < self.budget
    }

    /// Everything still held, in order, gaps and all (the map is ending).
    pub(super) fn drain(&mut self) -> Vec<T> {
        self.held = 0;
        self.next += self.early.len() as u64;
        std::mem::take(&mut self.early)
            .into_iter()
            .filter_map(|slot| match slot {
                Slot::Arrived(value, _) => Some(value),
                Slot::Awaited | Slot::Never => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Reorder;

    #[test]
    fn releases_in_order_and_bounds_the_window() {
        let mut r = Reorder::new(3, usize::MAX);
        assert!(r.admits(2) && !r.admits(3));
        r.insert(2, "c", 1);
        r.insert(1, "b", 1);
        assert_eq!(r.pop(), None);
        r.insert(0, "a", 1);
        assert_eq!(r.pop(), Some("a"));
        assert_eq!(r.pop(), Some("b"));
        assert_eq!(r.pop(), Some("c"));
        assert_eq!(r.pop(), None);
        assert!(r.admits(5) && !r.admits(6));
    }

    #[test]
    fn skipped_items_do_not_block_and_drain_keeps_order() {
        let mut r = Reorder::new(10, usize::MAX);
        r.skip(0);
        r.insert(1, 1, 1);
        assert_eq!(r.pop(), Some(1));
        r.insert(5, 5, 1);
        r.insert(3, 3, 1);
        assert_eq!(r.pop(), None);
        assert_eq!(r.drain(), vec![3, 5]);
    }

    #[test]
    fn a_result_whose_turn_has_passed_is_dropped() {
        let mut r = Reorder::new(10, 1);
        r.insert(0, "a", 0);
        assert_eq!(r.pop(), Some("a"));
        r.insert(0, "again", 5);
        r.skip(0);
        assert_eq!(r.pop(), None);
        assert!(r.admits(10) && !r.admits(11), "nothing is held");
    }

    #[test]
    fn large_early_results_close_the_window_until_they_go_out() {
        let mut r = Reorder::new(100, 10);
        r.insert(1, "big", 6);
        assert!(r.admits(2));
        r.insert(2, "bigger", 6);
        assert!(!r.admits(3), "12 bytes wait behind item 0");
        r.insert(0, "small", 1);
        assert_eq!(r.pop(), Some("small"));
        assert_eq!(r.pop(), Some("big"));
        assert!(r.admits(3), "6 bytes wait");
        assert_eq!(r.pop(), Some("bigger"));
        assert!(r.admits(3) && r.admits(102) && !r.admits(103));
    }
}

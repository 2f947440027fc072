//! Results come back in any order; `map` prints them in input order. The
//! window holds results that arrived early, and tells the dispatcher when
//! it may read more input, so memory stays bounded however long the input.

use std::collections::BTreeMap;

pub struct Reorder<T> {
    /// The next sequence number to hand out.
    next: u64,
    /// Early results; `None` for an item that will never have one.
    early: BTreeMap<u64, Option<T>>,
    window: u64,
}

impl<T> Reorder<T> {
    pub fn new(window: u64) -> Self {
        Self {
            next: 0,
            early: BTreeMap::new(),
            window,
        }
    }

    pub fn insert(&mut self, seq: u64, value: T) {
        self.early.insert(seq, Some(value));
    }

    /// Item `seq` has no result (it was never run); stop waiting for it.
    pub fn skip(&mut self, seq: u64) {
        self.early.insert(seq, None);
    }

    /// The next result in order, if it has arrived.
    pub fn pop(&mut self) -> Option<T> {
        while let Some(entry) = self.early.first_entry() {
            if *entry.key() != self.next {
                return None;
            }
            self.next += 1;
            if let Some(value) = entry.remove() {
                return Some(value);
            }
        }
        None
    }

    /// Whether item `seq` may be started: it is within `window` of the
    /// oldest result still awaited.
    pub fn admits(&self, seq: u64) -> bool {
        seq < self.next + self.window
    }

    /// Everything still held, in order, gaps and all (the map is ending).
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.early)
            .into_values()
            .flatten()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Reorder;

    #[test]
    fn releases_in_order_and_bounds_the_window() {
        let mut r = Reorder::new(3);
        assert!(r.admits(2) && !r.admits(3));
        r.insert(2, "c");
        r.insert(1, "b");
        assert_eq!(r.pop(), None);
        r.insert(0, "a");
        assert_eq!(r.pop(), Some("a"));
        assert_eq!(r.pop(), Some("b"));
        assert_eq!(r.pop(), Some("c"));
        assert_eq!(r.pop(), None);
        assert!(r.admits(5) && !r.admits(6));
    }

    #[test]
    fn skipped_items_do_not_block_and_drain_keeps_order() {
        let mut r = Reorder::new(10);
        r.skip(0);
        r.insert(1, 1);
        assert_eq!(r.pop(), Some(1));
        r.insert(5, 5);
        r.insert(3, 3);
        assert_eq!(r.pop(), None);
        assert_eq!(r.drain(), vec![3, 5]);
    }
}

//! The items sent to an engine and not finished, by sequence number.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Keyed by sequence numbers, which are small, distinct and dense: one
/// multiplication spreads them over the table's buckets, where the
/// default hasher (built to resist keys an attacker chose) cost more
/// than the rest of a task's bookkeeping.
pub(super) type BySeq<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

#[derive(Default)]
pub(super) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn write_u64(&mut self, seq: u64) {
        // Fibonacci hashing: the table takes its bucket from the high
        // bits, which the golden ratio's multiple mixes from all of them.
        self.0 = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0 ^ u64::from(b));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

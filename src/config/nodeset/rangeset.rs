//! A set of indexes for one bracket, `1-5,7`, `001-010/3`: ClusterShell's
//! `RangeSet`, with its parsing rules, its order and its folding.

use std::collections::BTreeSet;
use std::fmt;

use super::NodeSetError;
use super::index::{Index, py_int, py_strip};

/// More indexes than this in one set is refused: pcl expands every name,
/// and no cluster it can drive has that many hosts.
pub(super) const MAX_INDEXES: usize = 1 << 20;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct RangeSet(BTreeSet<Index>);

fn bad(part: &str, why: &str) -> NodeSetError {
    NodeSetError::Parse {
        part: part.to_owned(),
        why: why.to_owned(),
    }
}

impl RangeSet {
    pub(super) fn one(index: Index) -> RangeSet {
        RangeSet(BTreeSet::from([index]))
    }

    /// Comma-separated `a`, `a-b` and `a-b/step` parts, as ClusterShell
    /// reads them: negative bounds (`-5`, `-3-2`, `-8--4`), zero padding
    /// taken from the lower bound, and both bounds the same length when
    /// either is padded.
    pub(super) fn parse(pattern: &str) -> Result<RangeSet, NodeSetError> {
        let mut set = RangeSet::default();
        for part in pattern.split(',') {
            let part = py_strip(part);
            let (base, step) = match part.split_once('/') {
                None => (part, 1),
                Some((base, step)) => (
                    base,
                    py_int(step).ok_or_else(|| bad(part, "cannot convert string to integer"))?,
                ),
            };
            let (begin, end, begin_sign, end_sign) = if !base.contains('-') {
                if step != 1 {
                    return Err(bad(part, "invalid step usage"));
                }
                (base, base, 1, 1)
            } else {
                let bounds: Vec<&str> = base.split('-').map(py_strip).collect();
                match bounds[..] {
                    ["", end] => (end, end, -1, -1),
                    [begin, end] => (begin, end, 1, 1),
                    [_, begin, end] => (begin, end, -1, 1),
                    [_, begin, _, end] => (begin, end, -1, -1),
                    _ => return Err(bad(part, "too many '-' in range")),
                }
            };
            let not_int = || {
                let why = if part.is_empty() {
                    "empty range"
                } else {
                    "cannot convert string to integer"
                };
                bad(part, why)
            };
            let (start, pad) = match py_int(begin).ok_or_else(not_int)? {
                0 => (0, if begin.len() > 1 { begin.len() } else { 0 }),
                _ => {
                    let stripped = begin.trim_start_matches('0');
                    let pad = if stripped.len() < begin.len() {
                        begin.len()
                    } else {
                        0
                    };
                    (py_int(stripped).ok_or_else(not_int)?, pad)
                }
            };
            let end_digits = match py_int(end).ok_or_else(not_int)? {
                0 => end,
                _ => end.trim_start_matches('0'),
            };
            let end_pad = end_digits.len() < end.len();
            if (pad > 0 || end_pad) && begin.len() != end.len() {
                return Err(bad(part, "padding length mismatch"));
            }
            let stop = py_int(end_digits).ok_or_else(not_int)?;
            if pad > 0 && begin_sign < 0 {
                return Err(bad(part, "padding not supported in negative ranges"));
            }
            if start * begin_sign > stop * end_sign || step < 1 {
                return Err(bad(part, "invalid values in range"));
            }
            set.add_range(start * begin_sign, stop * end_sign, step, pad, part)?;
        }
        Ok(set)
    }

    /// `first` to `last` inclusive, every `step`.
    fn add_range(
        &mut self,
        first: i128,
        last: i128,
        step: i128,
        pad: usize,
        part: &str,
    ) -> Result<(), NodeSetError> {
        let count = (last - first) / step + 1;
        if count > (MAX_INDEXES - self.len().min(MAX_INDEXES)) as i128 {
            return Err(bad(part, "range too large"));
        }
        let mut value = first;
        while value <= last {
            self.0.insert(Index::new(value, pad));
            value += step;
        }
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In ClusterShell's order.
    pub(super) fn iter(&self) -> impl Iterator<Item = Index> + '_ {
        self.0.iter().copied()
    }

    pub(super) fn first(&self) -> Option<Index> {
        self.0.first().copied()
    }

    pub(super) fn last(&self) -> Option<Index> {
        self.0.last().copied()
    }

    pub(super) fn update(&mut self, other: &RangeSet) {
        self.0.extend(other.iter());
    }

    pub(super) fn intersection(&self, other: &RangeSet) -> RangeSet {
        RangeSet(self.0.intersection(&other.0).copied().collect())
    }

    pub(super) fn difference(&self, other: &RangeSet) -> RangeSet {
        RangeSet(self.0.difference(&other.0).copied().collect())
    }

    pub(super) fn symmetric_difference(&self, other: &RangeSet) -> RangeSet {
        RangeSet(self.0.symmetric_difference(&other.0).copied().collect())
    }

    pub(super) fn is_disjoint(&self, other: &RangeSet) -> bool {
        self.0.is_disjoint(&other.0)
    }

    /// Strictly larger and holding all of `other`.
    pub(super) fn is_proper_superset(&self, other: &RangeSet) -> bool {
        self.len() > other.len() && self.0.is_superset(&other.0)
    }

    pub(super) fn is_subset(&self, other: &RangeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Runs of consecutive indexes written alike (`8-9`, then `07-11` for
    /// `8,9,07,08,09,10,11`), as ClusterShell folds them: a padded run
    /// keeps one width, an unpadded one takes no padded index.
    pub(super) fn runs(&self) -> Vec<(Index, Index)> {
        let mut runs: Vec<(Index, Index)> = Vec::new();
        for index in self.iter() {
            if let Some((start, last)) = runs.last_mut() {
                let same_writing = if start.padded() {
                    index.width() == start.width()
                } else {
                    !index.padded()
                };
                if same_writing && index.value() == last.value() + 1 {
                    *last = index;
                    continue;
                }
            }
            runs.push((index, index));
        }
        runs
    }
}

/// Folded, as `nodeset -f` writes the inside of a bracket: `1-3,5,07-11`.
impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, (start, last)) in self.runs().into_iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if start == last {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{last}")?;
            }
        }
        Ok(())
    }
}

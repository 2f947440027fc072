//! Host ranges as ClusterShell 1.9 reads and writes them: `nodeset -e`
//! (`NodeSet::parse` then `names`) and `nodeset -f` (`fold`), with the
//! same names, in the same order, refusing the same typos.
//!
//! pcl's own parser rather than a crate, because the order of the names
//! decides engine ids and must be ClusterShell's: names sort by their
//! pattern (the text around the numbers, with `%s` for each number and
//! `%` written `%%`), then by their numbers (shorter first, so `9`
//! before `07` before `10`). What pcl does not take from ClusterShell:
//! node groups (`@name`), which need a group source pcl does not have,
//! sets of more than `MAX_NAMES` names, and sets of names with several
//! numbers that ClusterShell would spend minutes folding.

mod index;
mod nd;
mod rangeset;
mod scan;

use std::collections::BTreeMap;

use nd::RangeSetNd;
use rangeset::RangeSet;

/// A set of more names than this is refused.
const MAX_NAMES: usize = rangeset::MAX_INDEXES;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NodeSetError {
    #[error("{why} at {part:?}")]
    Parse { part: String, why: String },
    #[error("'@' node groups are not supported")]
    Group,
    #[error("more than {MAX_NAMES} names")]
    TooMany,
    #[error(
        "more than {} names with several numbers whose ranges overlap unevenly; \
         write them as fewer, larger ranges",
        nd::MAX_FULL_FOLD
    )]
    TooTangled,
}

/// How an operand joins what is left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// `,`
    Union,
    /// `!`
    Difference,
    /// `&`
    Intersection,
    /// `^`
    Xor,
}

impl Op {
    fn from_char(c: char) -> Option<Op> {
        Some(match c {
            ',' => Op::Union,
            '!' => Op::Difference,
            '&' => Op::Intersection,
            '^' => Op::Xor,
            _ => return None,
        })
    }

    fn as_char(self) -> char {
        match self {
            Op::Union => ',',
            Op::Difference => '!',
            Op::Intersection => '&',
            Op::Xor => '^',
        }
    }
}

/// The numbers of the names sharing one pattern.
#[derive(Debug, Clone)]
enum Ranges {
    /// A name without digits.
    Name,
    One(RangeSet),
    Many(RangeSetNd),
}

impl Ranges {
    fn of(mut sets: Vec<RangeSet>) -> Ranges {
        match sets.len() {
            0 => Ranges::Name,
            1 => Ranges::One(sets.pop().expect("one set")),
            _ => Ranges::Many(RangeSetNd::new(sets)),
        }
    }

    /// What ClusterShell keeps when it adds a new pattern: a copy, which
    /// for several numbers means folded first.
    fn copied(&mut self) -> Ranges {
        match self {
            Ranges::Many(nd) => Ranges::Many(nd.copy()),
            other => other.clone(),
        }
    }

    fn is_empty(&mut self) -> bool {
        match self {
            Ranges::Name => false,
            Ranges::One(set) => set.is_empty(),
            Ranges::Many(nd) => nd.len() == 0,
        }
    }
}

/// A set of host names.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeSet {
    /// By pattern, in the order names come out.
    patterns: BTreeMap<String, Ranges>,
}

impl NodeSet {
    /// Reads a node set string such as `node[01-16],login1` or
    /// `node[01-64]!node13`.
    pub(crate) fn parse(text: &str) -> Result<NodeSet, NodeSetError> {
        let escaped = index::py_strip(text).replace('%', "%%");
        let mut set = NodeSet::default();
        let mut total = 0usize;
        for part in scan::scan(&escaped)? {
            if part.pattern.starts_with('@') {
                return Err(NodeSetError::Group);
            }
            let size: usize = part.ranges.iter().map(RangeSet::len).product();
            total = total.saturating_add(size);
            if total > MAX_NAMES {
                return Err(NodeSetError::TooMany);
            }
            let mut operand = NodeSet::default();
            operand
                .patterns
                .insert(part.pattern, Ranges::of(part.ranges));
            match part.op {
                Op::Union => set.update(&mut operand),
                Op::Difference => set.difference_update(&operand),
                Op::Intersection => set.intersection_update(&operand),
                Op::Xor => set.symmetric_difference_update(&mut operand),
            }
        }
        for ranges in set.patterns.values_mut() {
            if let Ranges::Many(nd) = ranges {
                if nd.too_large() {
                    return Err(NodeSetError::TooTangled);
                }
            }
        }
        Ok(set)
    }

    /// The set of `names`, each read as one name (no ranges, no
    /// operators), for folding names pcl already has.
    pub(crate) fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> NodeSet {
        let mut set = NodeSet::default();
        for name in names {
            let escaped = name.replace('%', "%%");
            // Only an empty name has no pattern; it has nothing to add.
            if let Ok((pattern, ranges)) = scan::scan_single(&escaped) {
                let mut operand = NodeSet::default();
                operand.patterns.insert(pattern, Ranges::of(ranges));
                set.update(&mut operand);
            }
        }
        set
    }

    /// Every name, in `nodeset -e` order.
    pub(crate) fn names(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        for (pattern, ranges) in &mut self.patterns {
            match ranges {
                Ranges::Name => names.push(format(pattern, &[])),
                Ranges::One(set) => {
                    names.extend(set.iter().map(|i| format(pattern, &[i.to_string()])));
                }
                Ranges::Many(nd) => {
                    for tuple in nd.tuples() {
                        let args: Vec<String> = tuple.iter().map(|i| i.to_string()).collect();
                        names.push(format(pattern, &args));
                    }
                }
            }
        }
        names
    }

    /// The folded form, as `nodeset -f` writes it: `node[01-04,07],login1`.
    pub(crate) fn fold(&mut self) -> String {
        let bracket = |set: &RangeSet| {
            if set.len() > 1 {
                format!("[{set}]")
            } else {
                set.to_string()
            }
        };
        let mut parts = Vec::new();
        for (pattern, ranges) in &mut self.patterns {
            match ranges {
                Ranges::Name => parts.push(format(pattern, &[])),
                Ranges::One(set) => parts.push(format(pattern, &[bracket(set)])),
                Ranges::Many(nd) => {
                    for vector in nd.vectors() {
                        let args: Vec<String> = vector.iter().map(bracket).collect();
                        parts.push(format(pattern, &args));
                    }
                }
            }
        }
        parts.join(",")
    }

    fn update(&mut self, other: &mut NodeSet) {
        for (pattern, ranges) in &mut other.patterns {
            match (self.patterns.get_mut(pattern), ranges) {
                (Some(Ranges::One(mine)), Ranges::One(theirs)) => mine.update(theirs),
                (Some(Ranges::Many(mine)), Ranges::Many(theirs)) => mine.update(theirs),
                (Some(_), _) => {}
                (None, ranges) => {
                    self.patterns.insert(pattern.clone(), ranges.copied());
                }
            }
        }
    }

    fn difference_update(&mut self, other: &NodeSet) {
        for (pattern, ranges) in &other.patterns {
            let Some(mine) = self.patterns.get_mut(pattern) else {
                continue;
            };
            match (&mut *mine, ranges) {
                (Ranges::One(mine), Ranges::One(theirs)) => *mine = mine.difference(theirs),
                (Ranges::Many(mine), Ranges::Many(theirs)) => mine.difference_update(theirs),
                _ => {}
            }
            if matches!(mine, Ranges::Name) || mine.is_empty() {
                self.patterns.remove(pattern);
            }
        }
    }

    fn intersection_update(&mut self, other: &NodeSet) {
        let mut common = BTreeMap::new();
        for (pattern, ranges) in &other.patterns {
            let Some(mine) = self.patterns.get_mut(pattern) else {
                continue;
            };
            let mut meet = match (mine, ranges) {
                (Ranges::Name, Ranges::Name) => Ranges::Name,
                (Ranges::One(mine), Ranges::One(theirs)) => Ranges::One(mine.intersection(theirs)),
                (Ranges::Many(mine), Ranges::Many(theirs)) => {
                    let mut meet = mine.copy();
                    meet.intersection_update(theirs);
                    Ranges::Many(meet)
                }
                _ => continue,
            };
            if !meet.is_empty() {
                common.insert(pattern.clone(), meet);
            }
        }
        self.patterns = common;
    }

    fn symmetric_difference_update(&mut self, other: &mut NodeSet) {
        let mut purge = Vec::new();
        for (pattern, mine) in &mut self.patterns {
            match (mine, other.patterns.get_mut(pattern)) {
                (Ranges::One(mine), Some(Ranges::One(theirs))) => {
                    *mine = mine.symmetric_difference(theirs);
                }
                (Ranges::Many(mine), Some(Ranges::Many(theirs))) => {
                    mine.symmetric_difference_update(theirs);
                }
                (_, Some(_)) => purge.push(pattern.clone()),
                (_, None) => {}
            }
        }
        for (pattern, theirs) in &mut other.patterns {
            if !self.patterns.contains_key(pattern) {
                self.patterns.insert(pattern.clone(), theirs.copied());
            }
        }
        for (pattern, mine) in &mut self.patterns {
            if !matches!(mine, Ranges::Name) && mine.is_empty() {
                purge.push(pattern.clone());
            }
        }
        for pattern in purge {
            self.patterns.remove(&pattern);
        }
    }
}

/// A pattern with its `%s` filled in and `%%` back to `%`.
fn format(pattern: &str, args: &[String]) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut args = args.iter();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push_str(args.next().map_or("", String::as_str)),
            _ => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests;

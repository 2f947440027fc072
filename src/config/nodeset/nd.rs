//! Names with several numbers (`rack[1-2]node[01-08]`): ClusterShell's
//! `RangeSetND`, a list of vectors of index sets, one set per number.
//!
//! The order `nodeset -e` gives such names comes from how ClusterShell
//! folds the vectors, and when: lazily, before reading them, with a cheap
//! merge when only one number varies and a full one otherwise. Engine ids
//! follow that order, so this follows ClusterShell step by step, including
//! which operations fold first.

use std::cmp::Reverse;

use super::index::Index;
use super::rangeset::RangeSet;

type Vector = Vec<RangeSet>;

#[derive(Debug, Clone)]
pub(super) struct RangeSetNd {
    vectors: Vec<Vector>,
    /// The vectors may need folding before they are read.
    dirty: bool,
    /// Several numbers vary: skip the cheap fold on update.
    multivar: bool,
    /// A full fold was needed over more than `MAX_FULL_FOLD` names and was
    /// not done; the set is refused.
    too_large: bool,
}

/// Names a full fold takes at most: it handles every name on its own, and
/// past this it would take seconds and hundreds of MiB.
pub(super) const MAX_FULL_FOLD: usize = 1 << 17;

impl RangeSetNd {
    /// The names of one written pattern, such as `a[1-2]b[3-4]`.
    pub(super) fn new(vector: Vector) -> RangeSetNd {
        RangeSetNd::with_vectors(vec![vector])
    }

    fn with_vectors(vectors: Vec<Vector>) -> RangeSetNd {
        RangeSetNd {
            vectors,
            dirty: true,
            multivar: false,
            too_large: false,
        }
    }

    /// A folded copy (folding this one in place first, as ClusterShell
    /// does); the copy forgets the multivariate hint.
    pub(super) fn copy(&mut self) -> RangeSetNd {
        self.fold();
        RangeSetNd {
            vectors: self.vectors.clone(),
            dirty: self.dirty,
            multivar: false,
            too_large: self.too_large,
        }
    }

    pub(super) fn len(&mut self) -> usize {
        self.fold();
        self.vectors
            .iter()
            .map(|v| v.iter().map(RangeSet::len).product::<usize>())
            .sum()
    }

    /// The folded vectors.
    pub(super) fn vectors(&mut self) -> &[Vector] {
        self.fold();
        &self.vectors
    }

    /// Every name's indexes, in `nodeset -e` order.
    pub(super) fn tuples(&mut self) -> Vec<Vec<Index>> {
        self.fold();
        let mut all = Vec::new();
        for vector in &self.vectors {
            product(vector, &mut all);
        }
        all
    }

    /// Whether a fold this set needed was refused as too large.
    pub(super) fn too_large(&mut self) -> bool {
        self.fold();
        self.too_large
    }

    /// Adds `other`'s vectors as they are (unfolded).
    pub(super) fn update(&mut self, other: &RangeSetNd) {
        // A fold refused on the way taints every set built from it.
        self.too_large |= other.too_large;
        self.extend(other.vectors.iter().cloned());
    }

    fn extend(&mut self, vectors: impl IntoIterator<Item = Vector>) {
        self.vectors.extend(vectors);
        self.dirty = true;
        if !self.multivar {
            self.fold_univariate();
        }
    }

    /// Each vector is cut by each excluded one in turn: a piece disjoint
    /// from it in some number stays whole, one inside it in every number
    /// goes, any other is cut along each number where they overlap (the
    /// cuts may overlap; the next fold merges them).
    pub(super) fn difference_update(&mut self, other: &RangeSetNd) {
        self.too_large |= other.too_large;
        let mut kept = Vec::new();
        for vector in &self.vectors {
            let mut pieces = vec![vector.clone()];
            for exclude in &other.vectors {
                let mut next = Vec::new();
                for piece in pieces.drain(..) {
                    let mut split = Vec::new();
                    for (pos, (rg1, rg2)) in piece.iter().zip(exclude).enumerate() {
                        if rg1.is_subset(rg2) {
                            continue;
                        }
                        if !rg1.is_disjoint(rg2) {
                            let mut cut = piece.clone();
                            cut[pos] = rg1.difference(rg2);
                            split.push(cut);
                        } else {
                            split = vec![piece.clone()];
                            break;
                        }
                    }
                    next.extend(split);
                }
                if !next.is_empty() {
                    pieces = next;
                }
            }
            kept.extend(pieces);
        }
        self.vectors = kept;
        self.dirty = true;
    }

    pub(super) fn intersection_update(&mut self, other: &RangeSetNd) {
        let mut common = RangeSetNd::with_vectors(Vec::new());
        for vector in &self.vectors {
            for with in &other.vectors {
                let meet: Vector = vector
                    .iter()
                    .zip(with)
                    .map(|(a, b)| a.intersection(b))
                    .collect();
                if !meet.iter().any(RangeSet::is_empty) {
                    common.extend([meet]);
                }
            }
        }
        self.vectors = common.vectors().to_vec();
        self.too_large |= common.too_large || other.too_large;
        self.dirty = true;
    }

    pub(super) fn symmetric_difference_update(&mut self, other: &mut RangeSetNd) {
        let mut only_other = other.copy();
        only_other.difference_update(self);
        self.difference_update(other);
        self.update(&only_other);
    }

    fn fold(&mut self) {
        if !self.dirty {
            return;
        }
        if self.vectors.len() > 1 {
            if !self.fold_univariate() {
                self.fold_multivariate();
            }
        } else {
            self.dirty = false;
        }
    }

    /// When the vectors differ in one number only, merge them into the
    /// first. Says whether it could.
    fn fold_univariate(&mut self) -> bool {
        let dim = self.vectors.first().map_or(0, Vec::len);
        let mut varying = None;
        let mut differing = 0;
        if dim > 1 {
            for i in 0..dim {
                let first = &self.vectors[0][i];
                if self.vectors.iter().any(|v| &v[i] != first) {
                    differing += 1;
                    if differing > 1 {
                        break;
                    }
                    varying = Some(i);
                }
            }
        }
        let univariate = dim == 1 || differing == 1;
        if univariate {
            let axis = varying.unwrap_or(0);
            let rest: Vec<Vector> = self.vectors.drain(1..).collect();
            for vector in rest {
                self.vectors[0][axis].update(&vector[axis]);
            }
            self.dirty = false;
        }
        self.multivar = !univariate;
        univariate
    }

    /// Every name as its own vector, then merge pairs that differ in one
    /// number, largest first, until nothing merges.
    fn fold_multivariate(&mut self) {
        let count: usize = self
            .vectors
            .iter()
            .map(|v| v.iter().map(RangeSet::len).product::<usize>())
            .sum();
        if count > MAX_FULL_FOLD {
            self.too_large = true;
            self.dirty = false;
            return;
        }
        let mut names = Vec::new();
        for vector in &self.vectors {
            product(vector, &mut names);
        }
        names.sort();
        names.dedup();
        self.vectors = names
            .into_iter()
            .map(|name| name.into_iter().map(RangeSet::one).collect())
            .collect();
        // Cheap passes (each vector tried against the next ones until one
        // does not merge) while they change something, then full ones.
        let mut full = false;
        loop {
            self.sort();
            if !self.merge_pass(full) {
                if full {
                    break;
                }
                full = true;
            }
        }
        self.dirty = false;
    }

    /// Merges each vector with the ones after it, in order. A merged
    /// vector takes the first one's place and the second is dropped.
    fn merge_pass(&mut self, full: bool) -> bool {
        let mut slots: Vec<Option<Vector>> = self.vectors.drain(..).map(Some).collect();
        let mut changed = false;
        for i in 0..slots.len() {
            if slots[i].is_none() {
                continue;
            }
            for j in i + 1..slots.len() {
                let (Some(first), Some(second)) = (&slots[i], &slots[j]) else {
                    continue;
                };
                match mergeable(first, second) {
                    Some(differing) => {
                        changed = true;
                        let second = slots[j].take().expect("checked above");
                        let first = slots[i].as_mut().expect("checked above");
                        if let Some(pos) = differing {
                            join(
                                &mut first[pos],
                                second.into_iter().nth(pos).expect("same length"),
                            );
                        }
                    }
                    None if !full => break,
                    None => {}
                }
            }
        }
        self.vectors = slots.into_iter().flatten().collect();
        changed
    }

    /// Larger vectors first, then larger sets first along each number,
    /// then by first and last index as text.
    fn sort(&mut self) {
        self.vectors.sort_by_cached_key(|v| {
            let size = v.iter().map(RangeSet::len).product::<usize>();
            let axes: Vec<(Reverse<usize>, String, String)> = v
                .iter()
                .map(|rg| {
                    let text = |i: Option<Index>| i.map(|i| i.to_string()).unwrap_or_default();
                    (Reverse(rg.len()), text(rg.first()), text(rg.last()))
                })
                .collect();
            (Reverse(size), axes)
        });
    }
}

/// Whether two vectors can be one: when they differ in at most one number
/// (`Some` of where), and there either do not overlap or one holds the
/// other.
fn mergeable(a: &[RangeSet], b: &[RangeSet]) -> Option<Option<usize>> {
    let mut differing = None;
    for (pos, (rg1, rg2)) in a.iter().zip(b).enumerate() {
        if rg1 == rg2 {
            continue;
        }
        let joinable =
            rg1.is_disjoint(rg2) || rg1.is_proper_superset(rg2) || rg2.is_proper_superset(rg1);
        if differing.is_some() || !joinable {
            return None;
        }
        differing = Some(pos);
    }
    Some(differing)
}

/// The union of two sets that are disjoint or nested.
fn join(set: &mut RangeSet, other: RangeSet) {
    if set.is_disjoint(&other) {
        set.update(&other);
    } else if other.is_proper_superset(set) {
        *set = other;
    }
}

/// Appends every combination, the last number varying fastest.
fn product(vector: &[RangeSet], out: &mut Vec<Vec<Index>>) {
    let mut combos: Vec<Vec<Index>> = vec![Vec::new()];
    for axis in vector {
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                axis.iter().map(move |index| {
                    let mut next = prefix.clone();
                    next.push(index);
                    next
                })
            })
            .collect();
    }
    out.extend(combos);
}

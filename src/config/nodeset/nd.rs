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
}

impl RangeSetNd {
    /// The names of one written pattern, such as `a[1-2]b[3-4]`.
    pub(super) fn new(vector: Vector) -> RangeSetNd {
        RangeSetNd {
            vectors: vec![vector],
            dirty: true,
            multivar: false,
        }
    }

    fn with_vectors(vectors: Vec<Vector>) -> RangeSetNd {
        RangeSetNd {
            vectors,
            dirty: true,
            multivar: false,
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

    /// Adds `other`'s vectors as they are (unfolded).
    pub(super) fn update(&mut self, other: &RangeSetNd) {
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
        let mut full = false;
        let mut changed = true;
        while changed {
            changed = false;
            self.sort();
            let mut i = 0;
            while i + 1 < self.vectors.len() {
                let mut item1 = self.vectors[i].clone();
                let mut j = i + 1;
                i += 1;
                while j < self.vectors.len() {
                    let merged = merge(&item1, &self.vectors[j]);
                    j += 1;
                    match merged {
                        Some(new) => {
                            changed = true;
                            self.vectors[i - 1] = new.clone();
                            item1 = new;
                            j -= 1;
                            self.vectors.remove(j);
                        }
                        None if !full => break,
                        None => {}
                    }
                }
            }
            if !changed && !full {
                changed = true;
                full = true;
            }
        }
        self.dirty = false;
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

/// Two vectors as one, when they differ in at most one number and there
/// either do not overlap or one holds the other.
fn merge(a: &[RangeSet], b: &[RangeSet]) -> Option<Vector> {
    let mut differing = 0;
    let mut merged = Vec::with_capacity(a.len());
    for (rg1, rg2) in a.iter().zip(b) {
        if rg1 == rg2 {
            merged.push(rg1.clone());
            continue;
        }
        differing += 1;
        if differing > 1 {
            return None;
        }
        if rg1.is_disjoint(rg2) {
            let mut union = rg1.clone();
            union.update(rg2);
            merged.push(union);
        } else if rg2.is_proper_superset(rg1) {
            merged.push(rg2.clone());
        } else if rg1.is_proper_superset(rg2) {
            merged.push(rg1.clone());
        } else {
            return None;
        }
    }
    Some(merged)
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

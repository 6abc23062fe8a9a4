//! The `VectorIndex` trait, filters and hits.

use steerfeed_core::Embedding;

use crate::error::Result;
use crate::idset::IdSet;

/// One search result: an internal id and its inner product with the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The internal id.
    pub id: u32,
    /// Inner product with the query (cosine similarity).
    pub similarity: f32,
}

/// Which ids a search may return (deleted ids are never returned, whatever the filter).
#[derive(Clone, Copy, Default)]
pub enum Filter<'a> {
    /// Every id.
    #[default]
    All,
    /// Only ids in this set (an allow-list: its size tells the selectivity exactly).
    Allow(&'a IdSet),
    /// Every id except those in this set (seen, blocked, revoked).
    Deny(&'a IdSet),
    /// Ids for which the predicate is true (selectivity is estimated by sampling).
    Predicate(&'a (dyn Fn(u32) -> bool + Sync)),
}

impl std::fmt::Debug for Filter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::All => f.write_str("All"),
            Filter::Allow(s) => write!(f, "Allow({} ids)", s.len()),
            Filter::Deny(s) => write!(f, "Deny({} ids)", s.len()),
            Filter::Predicate(_) => f.write_str("Predicate"),
        }
    }
}

impl Filter<'_> {
    /// True when `id` passes.
    #[inline]
    pub fn allows(&self, id: u32) -> bool {
        match self {
            Filter::All => true,
            Filter::Allow(s) => s.contains(id),
            Filter::Deny(s) => !s.contains(id),
            Filter::Predicate(p) => p(id),
        }
    }
}

/// A vector index over unit vectors with inner-product similarity.
///
/// Ids are the caller's internal ids (`u32`); the caller maps them to video ids. An id
/// is never reused: an update deletes the old id and inserts under a new one.
pub trait VectorIndex: Send + Sync {
    /// The dimension of every vector.
    fn dim(&self) -> usize;

    /// How many vectors a search can return (inserted and not deleted).
    fn len(&self) -> usize;

    /// True when no vector can be returned.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a vector (validated and normalised). Visible to every search that starts
    /// after this returns.
    fn insert(&self, id: u32, vector: &Embedding) -> Result<()>;

    /// Deletes `id`; no search that starts after this returns will return it. True when
    /// it was present.
    fn delete(&self, id: u32) -> bool;

    /// True when `id` is present and not deleted.
    fn contains(&self, id: u32) -> bool;

    /// Up to `k` ids most similar to `query` among those `filter` allows, most similar
    /// first. Returns `k` results whenever at least `k` allowed ids exist.
    fn search(&self, query: &[f32], k: usize, filter: Filter<'_>) -> Result<Vec<Hit>>;
}

/// Checks a query: the dimension and finite values.
pub(crate) fn check_query(query: &[f32], dim: usize) -> Result<()> {
    if query.len() != dim {
        return Err(steerfeed_core::Error::WrongDimension {
            field: "query",
            expected: dim,
            got: query.len(),
        }
        .into());
    }
    if let Some(index) = query.iter().position(|v| !v.is_finite()) {
        return Err(steerfeed_core::Error::NonFinite {
            field: "query",
            index,
        }
        .into());
    }
    Ok(())
}

/// Keeps the best `k` hits; a bounded min-heap on similarity.
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: std::collections::BinaryHeap<std::cmp::Reverse<Scored>>,
}

/// A hit ordered by similarity (then id, for determinism).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scored(pub f32, pub u32);

impl Eq for Scored {}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k + 1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// The most hits kept.
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    #[inline]
    pub(crate) fn push(&mut self, similarity: f32, id: u32) {
        if self.k == 0 {
            return;
        }
        let s = Scored(similarity, id);
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(s));
        } else if let Some(std::cmp::Reverse(worst)) = self.heap.peek()
            && s > *worst
        {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(s));
        }
    }

    pub(crate) fn into_hits(self) -> Vec<Hit> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v.into_iter()
            .map(|Scored(similarity, id)| Hit { id, similarity })
            .collect()
    }
}

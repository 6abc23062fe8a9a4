//! `FlatIndex`: exact search by scanning every vector. The reference the HNSW index is
//! tested against, and the right index for small catalogs.

use std::collections::HashMap;
use std::sync::RwLock;

use steerfeed_core::Embedding;

use crate::distance::dot;
use crate::error::{Error, Result};
use crate::index::{Filter, Hit, TopK, VectorIndex, check_query};

/// Scans `vectors` (rows of `dim`) and keeps the best `k` rows whose label passes `pass`.
pub(crate) fn scan(
    vectors: &[f32],
    dim: usize,
    labels: &[u32],
    query: &[f32],
    top: &mut TopK,
    pass: impl Fn(u32) -> bool,
) {
    for (row, &label) in vectors.chunks_exact(dim).zip(labels) {
        if pass(label) {
            top.push(dot(query, row), label);
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    labels: Vec<u32>,
    vectors: Vec<f32>,
    position: HashMap<u32, usize>,
}

/// Exact inner-product search over all vectors.
#[derive(Debug)]
pub struct FlatIndex {
    dim: usize,
    inner: RwLock<Inner>,
}

impl FlatIndex {
    /// An empty index of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            inner: RwLock::new(Inner::default()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        crate::sync::read(&self.inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        crate::sync::write(&self.inner)
    }
}

impl VectorIndex for FlatIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.read().labels.len()
    }

    fn insert(&self, id: u32, vector: &Embedding) -> Result<()> {
        vector.check_dim("embedding", self.dim)?;
        let mut inner = self.write();
        if inner.position.contains_key(&id) {
            return Err(Error::DuplicateId(id));
        }
        let pos = inner.labels.len();
        inner.labels.push(id);
        inner.vectors.extend_from_slice(vector.as_slice());
        inner.position.insert(id, pos);
        Ok(())
    }

    fn delete(&self, id: u32) -> bool {
        let mut inner = self.write();
        let Some(pos) = inner.position.remove(&id) else {
            return false;
        };
        let last = inner.labels.len() - 1;
        inner.labels.swap_remove(pos);
        if pos != last {
            let moved = inner.labels[pos];
            inner.position.insert(moved, pos);
            let dim = self.dim;
            inner
                .vectors
                .copy_within(last * dim..(last + 1) * dim, pos * dim);
        }
        let new_len = last * self.dim;
        inner.vectors.truncate(new_len);
        true
    }

    fn contains(&self, id: u32) -> bool {
        self.read().position.contains_key(&id)
    }

    fn search(&self, query: &[f32], k: usize, filter: Filter<'_>) -> Result<Vec<Hit>> {
        check_query(query, self.dim)?;
        let inner = self.read();
        let mut top = TopK::new(k);
        scan(
            &inner.vectors,
            self.dim,
            &inner.labels,
            query,
            &mut top,
            |id| filter.allows(id),
        );
        Ok(top.into_hits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idset::IdSet;

    fn e(v: &[f32]) -> Embedding {
        Embedding::normalized("v", v).unwrap()
    }

    #[test]
    fn exact_search_orders_by_similarity_and_honours_filters_and_deletes() {
        let idx = FlatIndex::new(2);
        idx.insert(1, &e(&[1.0, 0.0])).unwrap();
        idx.insert(2, &e(&[0.8, 0.6])).unwrap();
        idx.insert(3, &e(&[0.0, 1.0])).unwrap();
        assert!(matches!(
            idx.insert(2, &e(&[1.0, 1.0])),
            Err(Error::DuplicateId(2))
        ));
        let ids = |hits: Vec<Hit>| hits.iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(
            ids(idx.search(&[1.0, 0.0], 3, Filter::All).unwrap()),
            vec![1, 2, 3]
        );
        let deny: IdSet = [1].into_iter().collect();
        assert_eq!(
            ids(idx.search(&[1.0, 0.0], 2, Filter::Deny(&deny)).unwrap()),
            vec![2, 3]
        );
        assert!(idx.delete(2));
        assert!(!idx.delete(2));
        assert_eq!(
            ids(idx.search(&[1.0, 0.0], 3, Filter::All).unwrap()),
            vec![1, 3]
        );
        assert_eq!(idx.len(), 2);
        assert!(idx.search(&[1.0], 1, Filter::All).is_err());
        assert!(idx.search(&[f32::NAN, 0.0], 1, Filter::All).is_err());
    }
}

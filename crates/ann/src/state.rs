//! What an index holds at one moment: the sealed graph, the exact live segment beside
//! it, and the deletions. [`crate::hnsw`] serves and changes it; [`crate::persist`]
//! writes and reads it.

use std::sync::Arc;

use crate::graph::Graph;
use crate::idset::IdSet;
use crate::tags::Tags;

/// The mutable state behind one lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) graph: Arc<Graph>,
    pub(crate) live_labels: Vec<u32>,
    pub(crate) live_vectors: Vec<f32>,
    /// Every id ever deleted (ids are never reused).
    pub(crate) tombstones: IdSet,
    /// Every id present and not deleted.
    pub(crate) present: IdSet,
    /// Tombstones that still have a node in `graph`.
    pub(crate) graph_tombstones: usize,
    /// Every id's tags, and the graph's partitions by tag.
    pub(crate) tags: Tags,
}

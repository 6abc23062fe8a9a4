//! `HnswIndex`: a sealed HNSW segment plus a small live segment, tombstones, filtered
//! search, background compaction and persistence.
//!
//! # Segments
//!
//! Vectors live in one of two places. The **sealed** segment is an HNSW graph in flat
//! arrays ([`crate::graph`]), built on several threads. The **live** segment
//! takes new inserts and is searched exactly. Once the live segment holds `max_live`
//! vectors, a background thread **folds** them into the graph: it inserts them one by
//! one as hnswlib inserts (each planned under the read lock, then written and moved out
//! of the live segment under the write lock in one step, so a search sees every vector
//! exactly once), at the cost of about one search per vector rather than a rebuild of
//! the whole graph. A **rebuild** (a new graph from every vector not deleted, swapped
//! in) runs instead when tombstones exceed `max_tombstone_ratio` of the graph, which a
//! fold cannot shrink, or when the live segment is at least as large as the graph (the
//! first load, where the parallel build is faster). Searches run all the while.
//! Compactions chain: while the index is still over a threshold after one (inserts
//! went on meanwhile), the same thread runs another; and an index loaded over those
//! thresholds compacts once asked to ([`HnswIndex::compact_if_needed`]), so however
//! vectors arrive, the index ends with them in a graph.
//!
//! # Deletes
//!
//! A delete sets a tombstone that every search checks, so it takes effect for every
//! search that starts after `delete` returns; the vector leaves the graph at the next
//! compaction. Tombstoned nodes still route graph walks (as in hnswlib's mark-delete).
//!
//! # Filtered search: the rule
//!
//! Let `s` be the share of the sealed graph the filter (and the tombstones) allow: exact
//! for an allow-list or deny-list (from its size), estimated from 512 evenly spaced
//! nodes for a predicate.
//!
//! - `s <= exact_below` (default 0.03) and at most `exact_max` (20,000) vectors allowed:
//!   scan the allowed vectors — for an allow-list only its members are touched. A
//!   selective filter (a small allow-list) is then exact (with int8 codes: the codes
//!   pick the best `4k`, ranked by their exact vectors) and fast, where a graph walk
//!   would visit most of the graph to find `k` allowed nodes. A scan's cost grows with
//!   what it allows and a walk's with the logarithm of the graph: a 1 % list scanned
//!   costs about 1.6× an unfiltered search at 1M and 4.2× at 4M, where the widened walk
//!   costs 1.2×, hence the cap.
//! - otherwise: walk the graph with the filter inside: disallowed nodes route the walk
//!   but never enter the results, and the walk's frontier is widened to
//!   `ef / sqrt(s)` (at most `max_ef`), so a 10 % filter walks about 3× as far as an
//!   unfiltered search rather than the 10× a walk that waits for `ef` allowed nodes needs.
//! - if the walk still returns fewer than `k` allowed ids, scan exactly. So a search
//!   returns `k` results whenever `k` allowed ids exist.
//!
//! A filter that is a tag (an `only` topic) has a better path: ids inserted with tags
//! ([`HnswIndex::insert_tagged`], [`HnswIndex::build_tagged`]) are partitioned by tag
//! (`crate::tags`), and [`HnswIndex::search_tagged`] walks the tag's own sub-graph, as
//! an unfiltered search walks the graph, rather than filtering or scanning the whole.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{RwLock, RwLockReadGuard, RwLockUpgradableReadGuard, RwLockWriteGuard};

use steerfeed_core::Embedding;

use crate::error::{Error, Result};
use crate::flat::scan;
use crate::graph::{Gather, Graph, SpillTo, SubGraph};
use crate::idset::IdSet;
use crate::index::{Filter, Hit, TopK, VectorIndex, check_query};
use crate::params::{HnswBuildParams, HnswSearchParams};
use crate::persist;
use crate::state::State;
use crate::tags::{TagMap, Tags, link};

/// How often a fold looks whether a save has released the graph.
const SAVE_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(10);
/// How long a fold waits for a save to release the graph before it stops.
const SAVE_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug)]
struct Shared {
    dim: usize,
    build: HnswBuildParams,
    search: HnswSearchParams,
    state: RwLock<State>,
    compacting: AtomicBool,
    compactions: AtomicU64,
    folded: AtomicU64,
    /// Where rebuilds spill their exact vectors ([`HnswIndex::set_spill`]).
    spill: parking_lot::Mutex<Option<SpillTo>>,
    /// Compactions are left to another process ([`HnswIndex::hold_compactions`]).
    held: AtomicBool,
}

/// How many times higher the thresholds are while compactions are held: a bound that
/// only an index whose snapshots stopped coming reaches.
const HELD_SLACK: usize = 8;

/// The tombstone share past which an index whose compactions are held rebuilds itself
/// (when the configured ratio is lower).
const HELD_TOMBSTONES: f32 = 0.5;

/// Statistics of an index, for reports and metrics.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct IndexStats {
    /// Vectors a search can return.
    pub live_ids: usize,
    /// Nodes in the sealed graph (including tombstoned ones).
    pub graph_nodes: usize,
    /// Vectors in the live segment.
    pub live_segment: usize,
    /// Tombstoned nodes still in the graph.
    pub graph_tombstones: usize,
    /// Rebuilds finished so far.
    pub compactions: u64,
    /// Vectors folded from the live segment into the graph so far.
    pub folded: u64,
    /// Approximate bytes held by vectors and links in the process's memory.
    pub heap_bytes: usize,
    /// Bytes of exact vectors memory-mapped from a file (an int8 graph opened from its
    /// index file or that has saved to it and mapped it, or a graph built with its
    /// vectors spilled, see [`HnswIndex::bulk`]): page cache, not counted in
    /// `heap_bytes`.
    pub mapped_bytes: usize,
    /// Tags whose partition has a sub-graph of its own.
    pub linked_partitions: usize,
    /// Graph nodes in partitions outside their sub-graphs (scanned by tagged searches
    /// until relinked).
    pub unlinked_partition_nodes: usize,
    /// Mean layer-0 links per graph node.
    pub mean_degree: f32,
    /// True while a compaction runs.
    pub compacting: bool,
}

/// What a save copies out of an index under its lock: the file is then written
/// without holding it.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub graph: Arc<Graph>,
    pub live_labels: Vec<u32>,
    pub live_vectors: Vec<f32>,
    pub tombstones: IdSet,
    /// Every id's tags.
    pub tags: TagMap,
    /// The graph's partitions' sub-graphs, by tag.
    pub subs: Vec<(u32, Arc<SubGraph>)>,
    /// Changes to the graph when the copy was taken: rebuilds plus folded vectors.
    pub graph_changes: u64,
}

/// An HNSW index with live updates. Cheap to clone handles are not provided: share it
/// behind an `Arc`.
#[derive(Debug)]
pub struct HnswIndex {
    shared: Arc<Shared>,
}

/// An index being built a vector at a time ([`HnswIndex::bulk`]).
#[derive(Debug)]
pub struct BulkBuild {
    index: HnswIndex,
    labels: Vec<u32>,
    vectors: Gather,
    present: IdSet,
    tags: Tags,
}

impl BulkBuild {
    /// Adds `id` with its vector and tags; a wrong dimension or an id given twice is
    /// refused and changes nothing. A write to the spill file that fails is
    /// [`Error::Spill`], and then the build cannot finish: every later call fails too.
    pub fn push(&mut self, id: u32, e: &Embedding, tags: &[u32]) -> Result<()> {
        e.check_dim("embedding", self.index.shared.dim)?;
        if self.present.contains(id) {
            return Err(Error::DuplicateId(id));
        }
        self.vectors
            .push(e.as_slice())
            .map_err(|source| spill_error(&self.index, source))?;
        self.present.insert(id);
        self.labels.push(id);
        self.tags.set(id, tags);
        Ok(())
    }

    /// Vectors pushed so far.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The index over every vector pushed.
    pub fn finish(self) -> Result<HnswIndex> {
        let Self {
            index,
            labels,
            vectors,
            present,
            mut tags,
        } = self;
        let floats = vectors
            .finish()
            .map_err(|source| spill_error(&index, source))?;
        let build = index.shared.build;
        let graph = Graph::build_over(index.shared.dim, labels, floats, &build);
        tags.parts = Tags::partition(&graph, &tags.of, &IdSet::new(), &build);
        let mut state = index.write();
        state.graph = Arc::new(graph);
        state.present = present;
        state.tags = tags;
        drop(state);
        Ok(index)
    }
}

/// A failure to write or map `index`'s spill file.
fn spill_error(index: &HnswIndex, source: std::io::Error) -> Error {
    let dir = index.shared.spill.lock().as_ref().map(|s| s.dir.clone());
    Error::Spill {
        dir: dir.unwrap_or_default(),
        source,
    }
}

impl HnswIndex {
    /// An empty index.
    pub fn new(dim: usize, build: HnswBuildParams, search: HnswSearchParams) -> Result<Self> {
        build.validate()?;
        search.validate()?;
        if dim == 0 {
            return Err(steerfeed_core::Error::Empty { field: "dim" }.into());
        }
        Ok(Self::from_state(
            dim,
            build,
            search,
            State {
                graph: Arc::new(Graph::empty(dim, build.m, build.vectors)),
                live_labels: Vec::new(),
                live_vectors: Vec::new(),
                tombstones: IdSet::new(),
                present: IdSet::new(),
                graph_tombstones: 0,
                tags: Tags::default(),
            },
        ))
    }

    pub(crate) fn from_state(
        dim: usize,
        build: HnswBuildParams,
        search: HnswSearchParams,
        state: State,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                dim,
                build,
                search,
                state: RwLock::new(state),
                compacting: AtomicBool::new(false),
                compactions: AtomicU64::new(0),
                folded: AtomicU64::new(0),
                spill: parking_lot::Mutex::new(None),
                held: AtomicBool::new(false),
            }),
        }
    }

    /// Builds an index over `items` in one go (the graph directly, no live segment).
    pub fn build(
        dim: usize,
        items: impl IntoIterator<Item = (u32, Embedding)>,
        build: HnswBuildParams,
        search: HnswSearchParams,
    ) -> Result<Self> {
        Self::build_tagged(
            dim,
            items.into_iter().map(|(id, e)| (id, e, Vec::new())),
            build,
            search,
        )
    }

    /// [`HnswIndex::build`] with each id's tags (see [`HnswIndex::search_tagged`]): a tag
    /// carried by at least `partition_min` ids gets a sub-graph of its own.
    pub fn build_tagged(
        dim: usize,
        items: impl IntoIterator<Item = (u32, Embedding, Vec<u32>)>,
        build: HnswBuildParams,
        search: HnswSearchParams,
    ) -> Result<Self> {
        let mut bulk = Self::bulk(dim, build, search, None)?;
        for (id, e, tags) in items {
            bulk.push(id, &e, &tags)?;
        }
        bulk.finish()
    }

    /// A build that takes its vectors one at a time ([`BulkBuild::push`]), so the
    /// caller need not hold them all first. With `spill`, the exact vectors go to an
    /// unnamed file in its directory once they pass its size (or stay in memory, with a
    /// warning, when the file cannot be created), and the build reads them mapped. An
    /// int8 index then keeps them mapped, as page cache, until
    /// [`HnswIndex::save_and_map`] maps them from the index file instead; float rows
    /// copy them into the graph, so the file serves only the build. Later rebuilds of
    /// the index spill the same way ([`HnswIndex::set_spill`]).
    pub fn bulk(
        dim: usize,
        build: HnswBuildParams,
        search: HnswSearchParams,
        spill: Option<&SpillTo>,
    ) -> Result<BulkBuild> {
        let index = Self::new(dim, build, search)?;
        index.set_spill(spill.cloned());
        Ok(BulkBuild {
            index,
            labels: Vec::new(),
            vectors: Gather::new(spill, 0),
            present: IdSet::new(),
            tags: Tags::default(),
        })
    }

    /// Where this index's rebuilds may spill their exact vectors (see
    /// [`HnswIndex::bulk`]); `None`, the default, keeps them in memory.
    pub fn set_spill(&self, spill: Option<SpillTo>) {
        *self.shared.spill.lock() = spill;
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.shared.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.shared.write()
    }

    /// The default query parameters.
    pub fn search_params(&self) -> HnswSearchParams {
        self.shared.search
    }

    /// The build parameters.
    pub fn build_params(&self) -> HnswBuildParams {
        self.shared.build
    }

    /// Searches with explicit query parameters (see the module docs for the filter rule).
    pub fn search_with(
        &self,
        query: &[f32],
        k: usize,
        filter: Filter<'_>,
        params: &HnswSearchParams,
    ) -> Result<Vec<Hit>> {
        check_query(query, self.shared.dim)?;
        params.validate()?;
        let state = self.read();
        let tombstones = &state.tombstones;
        let pass = |id: u32| !tombstones.contains(id) && filter.allows(id);
        let graph = &state.graph;
        let n = graph.len();
        let mut top = TopK::new(k);

        if n > 0 && k > 0 {
            let ratio = match filter {
                Filter::All => 1.0 - state.graph_tombstones as f32 / n as f32,
                Filter::Allow(set) => (set.len() as f32 / n as f32).min(1.0),
                Filter::Deny(set) => 1.0 - (set.len() + state.graph_tombstones) as f32 / n as f32,
                Filter::Predicate(_) => graph.estimate_pass_ratio(&pass),
            };
            if params.scans(ratio, n) {
                match filter {
                    Filter::Allow(set) => graph.scan_labels(query, set.iter(), &pass, &mut top),
                    _ => graph.scan(query, &pass, &mut top),
                }
            } else {
                let ef = params.ef.min(params.max_ef);
                // The narrower the filter, the wider the walk: ef / sqrt(share).
                let walk_ef = ((ef as f32 / ratio.max(1e-4).sqrt()) as usize)
                    .clamp(ef, params.max_ef.max(ef));
                let unfiltered = matches!(filter, Filter::All) && state.graph_tombstones == 0;
                let pass_ref: &dyn Fn(u32) -> bool = &pass;
                graph.search(
                    query,
                    k,
                    ef,
                    walk_ef,
                    (!unfiltered).then_some(pass_ref),
                    &mut top,
                );
                if top.len() < k {
                    // The walk came back short: fall back to an exact scan.
                    top = TopK::new(k);
                    graph.scan(query, &pass, &mut top);
                }
            }
        }
        scan(
            &state.live_vectors,
            self.shared.dim,
            &state.live_labels,
            query,
            &mut top,
            pass,
        );
        Ok(top.into_hits())
    }

    /// Up to `k` ids carrying any of `tags` that `filter` lets through, most similar
    /// first (an `only` topic). Each tag's partition is searched on its own: its
    /// sub-graph walked as the whole graph is (a walk that comes back short falls back
    /// to scanning it), the nodes outside it and the live segment's ids with the tag
    /// scanned exactly. An id carrying several of the tags is returned once.
    pub fn search_tagged(
        &self,
        query: &[f32],
        k: usize,
        tags: &[u32],
        filter: Filter<'_>,
        params: &HnswSearchParams,
    ) -> Result<Vec<Hit>> {
        check_query(query, self.shared.dim)?;
        params.validate()?;
        let state = self.read();
        let tombstones = &state.tombstones;
        let pass = |id: u32| !tombstones.contains(id) && filter.allows(id);
        let pass_ref: &dyn Fn(u32) -> bool = &pass;
        let graph = &state.graph;
        let unfiltered = matches!(filter, Filter::All) && state.graph_tombstones == 0;
        let mut wanted = tags.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut hits: Vec<Hit> = Vec::new();
        for &tag in &wanted {
            if k == 0 {
                break;
            }
            let mut top = TopK::new(k);
            if let Some(part) = state.tags.parts.get(&tag) {
                if let Some(sub) = &part.sub {
                    let ef = params.ef.min(params.max_ef);
                    // A filter inside the partition widens the walk as a filter of
                    // about a quarter of the graph would.
                    let walk_ef = if unfiltered {
                        ef
                    } else {
                        (2 * ef).min(params.max_ef.max(ef))
                    };
                    graph.search_in(
                        Some(sub),
                        query,
                        k,
                        ef,
                        walk_ef,
                        (!unfiltered).then_some(pass_ref),
                        &mut top,
                    );
                    if top.len() < k {
                        top = TopK::new(k);
                        let nodes: Vec<_> = sub
                            .nodes
                            .iter()
                            .copied()
                            .filter(|&n| pass(graph.labels[n as usize]))
                            .collect();
                        graph.scan_nodes(query, &nodes, &mut top);
                    }
                }
                let rest: Vec<_> = part
                    .rest
                    .iter()
                    .copied()
                    .filter(|&n| pass(graph.labels[n as usize]))
                    .collect();
                graph.scan_nodes(query, &rest, &mut top);
            }
            scan(
                &state.live_vectors,
                self.shared.dim,
                &state.live_labels,
                query,
                &mut top,
                |label| pass(label) && state.tags.has(label, tag),
            );
            hits.extend(top.into_hits());
        }
        drop(state);
        if wanted.len() > 1 {
            hits.sort_by(|a, b| a.id.cmp(&b.id).then(b.similarity.total_cmp(&a.similarity)));
            hits.dedup_by_key(|h| h.id);
        }
        hits.sort_by(|a, b| b.similarity.total_cmp(&a.similarity).then(a.id.cmp(&b.id)));
        hits.truncate(k);
        Ok(hits)
    }

    /// Inserts `id` with its tags (see [`HnswIndex::search_tagged`]); otherwise as
    /// [`VectorIndex::insert`].
    pub fn insert_tagged(&self, id: u32, vector: &Embedding, tags: &[u32]) -> Result<()> {
        vector.check_dim("embedding", self.shared.dim)?;
        let mut s = self.write();
        if s.present.contains(id) || s.tombstones.contains(id) {
            return Err(Error::DuplicateId(id));
        }
        s.present.insert(id);
        s.live_labels.push(id);
        s.live_vectors.extend_from_slice(vector.as_slice());
        s.tags.set(id, tags);
        let compact = self.shared.needs_compaction(&s);
        drop(s);
        if compact {
            Shared::spawn_compaction(&self.shared);
        }
        Ok(())
    }

    /// Rebuilds the sealed graph from every vector not deleted, taking in the live
    /// segment. Searches and writes go on meanwhile; blocks the caller until done.
    pub fn compact(&self) {
        Shared::compact(&self.shared);
    }

    /// Leaves this index's graph work to another process whose snapshots of the same
    /// index replace its contents (a replica that does not lead): while held, the
    /// thresholds that start a background fold or rebuild are raised (`max_live` eight
    /// times, the tombstone share to at least a half), so the live segment only grows
    /// until the next snapshot, and only an index whose snapshots stopped coming works
    /// on itself. Releasing the hold starts what the configured thresholds ask for.
    /// [`HnswIndex::compact`] runs whatever the hold.
    pub fn hold_compactions(&self, held: bool) {
        let was = self.shared.held.swap(held, Ordering::AcqRel);
        if was && !held {
            self.compact_if_needed();
        }
    }

    /// True while [`HnswIndex::hold_compactions`] holds them.
    pub fn compactions_held(&self) -> bool {
        self.shared.held.load(Ordering::Acquire)
    }

    /// Starts [`HnswIndex::compact`] on a background thread unless one is running.
    pub fn compact_in_background(&self) {
        Shared::spawn_compaction(&self.shared);
    }

    /// Starts a background compaction when the index is over a threshold (`max_live`
    /// vectors in the live segment, or tombstones over `max_tombstone_ratio`) and none
    /// runs: for an index loaded from a file, whose inserts did not go through
    /// [`VectorIndex::insert`]. True when the index is over a threshold.
    pub fn compact_if_needed(&self) -> bool {
        let needed = self.shared.needs_compaction(&self.read());
        if needed {
            Shared::spawn_compaction(&self.shared);
        }
        needed
    }

    /// Replaces this index's contents with `other`'s (an index loaded from a newer file)
    /// in one step: a search sees one or the other, whole. The swap counts as a rebuild
    /// (so a save that compares rebuilds writes the new graph). Answers the old contents,
    /// for the caller to free once its own locks are released; `None`, changing nothing,
    /// while a compaction runs (it would build on the old contents: try again later),
    /// when `other` is shared (its own compaction runs), or when its dimension differs.
    pub(crate) fn swap_with(&self, other: HnswIndex) -> Option<State> {
        if other.shared.dim != self.shared.dim
            || self
                .shared
                .compacting
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return None;
        }
        let old = Arc::try_unwrap(other.shared).ok().map(|theirs| {
            let old = std::mem::replace(&mut *self.write(), theirs.state.into_inner());
            self.shared.compactions.fetch_add(1, Ordering::AcqRel);
            old
        });
        self.shared.compacting.store(false, Ordering::Release);
        old
    }

    /// True while a compaction runs.
    pub fn is_compacting(&self) -> bool {
        self.shared.compacting.load(Ordering::Acquire)
    }

    /// Rebuilds finished so far (cheaper than [`HnswIndex::stats`]).
    pub fn compactions(&self) -> u64 {
        self.shared.compactions.load(Ordering::Acquire)
    }

    /// Nodes in the sealed graph (cheaper than [`HnswIndex::stats`]).
    pub fn graph_len(&self) -> usize {
        self.read().graph.len()
    }

    /// Vectors folded into the graph so far (cheaper than [`HnswIndex::stats`]).
    pub fn folded(&self) -> u64 {
        self.shared.folded.load(Ordering::Acquire)
    }

    /// True when `id` is a node of the sealed graph (not deleted), false when it is in
    /// the live segment or absent.
    pub fn in_graph(&self, id: u32) -> bool {
        let s = self.read();
        s.present.contains(id) && s.graph.has_label(id)
    }

    /// The tags `id` was inserted with (ascending; none for an id without tags).
    pub fn tags(&self, id: u32) -> Vec<u32> {
        self.read()
            .tags
            .of
            .get(id)
            .map(<[u32]>::to_vec)
            .unwrap_or_default()
    }

    /// The stored vectors of `ids` (`None` for an id absent or deleted), in order.
    pub fn vectors(&self, ids: &[u32]) -> Vec<Option<Vec<f32>>> {
        let s = self.read();
        let dim = self.shared.dim;
        let mut live: Option<std::collections::HashMap<u32, usize>> = None;
        ids.iter()
            .map(|&id| {
                if !s.present.contains(id) {
                    return None;
                }
                if let Some(&node) = s.graph.node_of.get(id as usize)
                    && node != u32::MAX
                {
                    return Some(s.graph.vector(node).to_vec());
                }
                let rows = live.get_or_insert_with(|| {
                    s.live_labels
                        .iter()
                        .enumerate()
                        .map(|(row, &label)| (label, row))
                        .collect()
                });
                rows.get(&id)
                    .map(|&row| s.live_vectors[row * dim..(row + 1) * dim].to_vec())
            })
            .collect()
    }

    /// Counts and sizes.
    pub fn stats(&self) -> IndexStats {
        let s = self.read();
        IndexStats {
            live_ids: s.present.len(),
            graph_nodes: s.graph.len(),
            live_segment: s.live_labels.len(),
            graph_tombstones: s.graph_tombstones,
            compactions: self.shared.compactions.load(Ordering::Acquire),
            folded: self.folded(),
            heap_bytes: s.graph.heap_bytes()
                + s.tags.heap_bytes()
                + s.live_vectors.len() * 4
                + s.live_labels.len() * 4,
            mapped_bytes: s.graph.mapped_bytes(),
            linked_partitions: s.tags.parts.values().filter(|p| p.sub.is_some()).count(),
            unlinked_partition_nodes: s.tags.parts.values().map(|p| p.rest.len()).sum(),
            mean_degree: s.graph.mean_degree(),
            compacting: self.is_compacting(),
        }
    }

    /// Copies what a save writes (the graph is shared, not copied). The caller may hold
    /// a lock taken before the index's (the video id map's).
    pub(crate) fn parts(&self) -> Parts {
        let s = self.read();
        Parts {
            graph: Arc::clone(&s.graph),
            live_labels: s.live_labels.clone(),
            live_vectors: s.live_vectors.clone(),
            tombstones: s.tombstones.clone(),
            tags: s.tags.of.clone(),
            subs: s.tags.subs(),
            graph_changes: self.compactions() + self.folded(),
        }
    }

    /// Writes the index to `path` in the index file format (`persist`), atomically,
    /// with catalog version 0 and no video ids. The index's lock is held only while its
    /// state is copied.
    pub fn save(&self, path: &Path) -> Result<()> {
        Self::save_parts(self.parts(), path)
    }

    fn save_parts(p: Parts, path: &Path) -> Result<()> {
        persist::save(
            path,
            &persist::Contents {
                catalog_version: 0,
                graph: p.graph,
                live_labels: p.live_labels,
                live_vectors: p.live_vectors,
                tombstones: p.tombstones,
                tags: p.tags,
                subs: p.subs,
                ids: persist::IdTable::default(),
            },
        )
    }

    /// [`HnswIndex::save`] to the index's own file, after which an int8 graph maps its
    /// exact vectors from it rather than holding them in memory (so nothing may rewrite
    /// that file in place: a later save renames a new file over it, which is safe). True
    /// when the vectors were mapped.
    pub fn save_and_map(&self, path: &Path) -> Result<bool> {
        let p = self.parts();
        let graph = Arc::clone(&p.graph);
        Self::save_parts(p, path)?;
        Ok(self.adopt_file(graph, path))
    }

    /// After `saved` was saved to `path` (the index's own file): an int8 graph
    /// unchanged since reads its exact vectors from the file's map instead of holding
    /// them in memory, so an index built or rebuilt in this process costs, once saved,
    /// what one opened from its file does. True when it did; false for float rows, a
    /// graph changed since (the next save tries again), a file that does not hold these
    /// vectors, or a map that could not be made (logged: the save itself stands).
    pub(crate) fn adopt_file(&self, saved: Arc<Graph>, path: &Path) -> bool {
        if self.shared.build.vectors != crate::params::VectorStorage::Int8 {
            return false;
        }
        let mapped = match persist::map_vectors(path, saved.len(), self.shared.dim) {
            Ok(Some(mapped)) => mapped,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot map the saved index's vectors; they stay in memory");
                return false;
            }
        };
        // Compared outside the index's lock. The saved graph stays shared until the lock
        // is held, so no fold changes it in place meanwhile (a fold waits while a copy
        // is shared) and its allocation cannot be reused by another graph.
        let Some(floats) = saved.adopt_floats(mapped) else {
            return false;
        };
        let mut s = self.write();
        if !Arc::ptr_eq(&s.graph, &saved) {
            return false;
        }
        drop(saved);
        // Another save may hold a copy: the next save tries again.
        Arc::get_mut(&mut s.graph).is_some_and(|graph| graph.set_floats(floats))
    }

    /// Reads an index written by [`HnswIndex::save`] (or the index part of a
    /// [`crate::VideoIndex`] file). A corrupt, truncated or foreign file, one of another
    /// format version or of another dimension, is [`Error::BadFile`]; the caller can
    /// always rebuild from the stored embeddings instead.
    pub fn load(
        path: &Path,
        dim: usize,
        build: HnswBuildParams,
        search: HnswSearchParams,
    ) -> Result<Self> {
        build.validate()?;
        search.validate()?;
        let loaded = persist::load(path, dim, build.vectors)?;
        Ok(Self::from_state(dim, build, search, loaded.state))
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write()
    }

    fn needs_compaction(&self, state: &State) -> bool {
        let live = state.live_labels.len();
        let graph = state.graph.len().max(1);
        let (max_live, max_ratio) = if self.held.load(Ordering::Acquire) {
            (
                self.build.max_live.saturating_mul(HELD_SLACK),
                self.build.max_tombstone_ratio.max(HELD_TOMBSTONES),
            )
        } else {
            (self.build.max_live, self.build.max_tombstone_ratio)
        };
        (max_live > 0 && live >= max_live)
            || (state.graph_tombstones as f32 / graph as f32) > max_ratio
    }

    fn spawn_compaction(shared: &Arc<Shared>) {
        if shared
            .compacting
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let bg = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("steerfeed-compact".into())
            .spawn(move || {
                if bg.maintain_locked() {
                    bg.chain();
                } else {
                    bg.compacting.store(false, Ordering::Release);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a compaction thread");
            shared.compacting.store(false, Ordering::Release);
        }
    }

    /// Called by the holder of the `compacting` flag after a compaction swapped its
    /// graph in: runs more compactions while the index is still over a threshold, then
    /// lowers the flag. A write that crossed a threshold while the flag was up started
    /// nothing, so the need is checked again after lowering it.
    fn chain(&self) {
        loop {
            while self.needs_compaction(&self.read()) {
                if !self.maintain_locked() {
                    self.compacting.store(false, Ordering::Release);
                    return;
                }
            }
            self.compacting.store(false, Ordering::Release);
            if !self.needs_compaction(&self.read())
                || self
                    .compacting
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
            {
                return;
            }
        }
    }

    fn compact(shared: &Arc<Shared>) {
        // Wait for a background compaction to finish, then run one here.
        while shared
            .compacting
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        shared.compact_locked();
        shared.compacting.store(false, Ordering::Release);
        // Inserts that went on meanwhile may have crossed a threshold again.
        if shared.needs_compaction(&shared.read()) {
            Shared::spawn_compaction(shared);
        }
    }

    /// One compaction the thresholds ask for: a rebuild when tombstones are over the
    /// ratio or the live segment is at least as large as the graph, otherwise a fold.
    /// The caller holds the `compacting` flag. True when it changed the index.
    fn maintain_locked(&self) -> bool {
        let rebuild = {
            let s = self.read();
            let graph = s.graph.len().max(1);
            s.graph_tombstones as f32 / graph as f32 > self.build.max_tombstone_ratio
                || s.live_labels.len() >= s.graph.len()
        };
        if rebuild {
            self.compact_locked()
        } else {
            self.fold_locked() > 0
        }
    }

    /// Folds the live segment into the graph (see the module docs): as many vectors as
    /// it held when the fold started, newest first. The caller holds the `compacting`
    /// flag, so this thread is the graph's only writer. Returns the vectors taken out of
    /// the live segment (folded, or dropped as deleted).
    fn fold_locked(&self) -> usize {
        let started = std::time::Instant::now();
        let dim = self.dim;
        let (quota, graph) = {
            let s = self.read();
            (s.live_labels.len(), Arc::clone(&s.graph))
        };
        // Room for the new rows is made on a copy taken outside the lock (this thread is
        // the graph's only writer, so the copy stays current), then swapped in.
        let roomier = graph.with_room(quota);
        drop(graph);
        if let Some(roomier) = roomier {
            self.write().graph = Arc::new(roomier);
        }
        let mut folded = 0;
        let mut dropped = 0;
        let mut waited = std::time::Duration::ZERO;
        while folded + dropped < quota {
            // Planned under an upgradable read (searches go on; this thread is the only
            // one that takes it), then upgraded to write the plan and move the row out
            // of the live segment in one step.
            let s = self.state.upgradable_read();
            let Some(&label) = s.live_labels.last() else {
                break;
            };
            if Arc::strong_count(&s.graph) > 1 {
                // A save is copying the graph out: the fold changes it in place, so it
                // waits for the save rather than plan for nothing.
                drop(s);
                if waited >= SAVE_WAIT_LIMIT {
                    tracing::warn!("the index graph stayed shared; the fold stops here");
                    break;
                }
                std::thread::sleep(SAVE_WAIT_STEP);
                waited += SAVE_WAIT_STEP;
                continue;
            }
            let row = s.live_labels.len() - 1;
            let vector = s.live_vectors[row * dim..(row + 1) * dim].to_vec();
            let plan = (!s.tombstones.contains(label)).then(|| {
                s.graph
                    .plan_insert(label, &vector, self.build.ef_construction)
            });
            // No writer ran in between: the row is where the plan found it, and a
            // label deleted now was deleted when planning (`plan` is then `None`).
            let mut s = RwLockUpgradableReadGuard::upgrade(s);
            let state = &mut *s;
            let applied = match plan {
                Some(plan) => match Arc::get_mut(&mut state.graph) {
                    Some(graph) => {
                        let applied = graph.apply_insert(label, &vector, plan);
                        if applied {
                            state.tags.folded(label, (graph.len() - 1) as u32);
                        }
                        applied
                    }
                    // A save took its copy while this plan was made: plan again after it.
                    None => continue,
                },
                None => false,
            };
            if !applied && !state.tombstones.contains(label) {
                // A plan refused by the graph it was made on: a bug, not a state to
                // loop on. The vector stays live (and searched exactly).
                tracing::error!(label, "a fold plan was refused; the live segment stays");
                break;
            }
            state.live_labels.swap_remove(row);
            let last = state.live_labels.len();
            if row != last {
                state
                    .live_vectors
                    .copy_within(last * dim..(last + 1) * dim, row * dim);
            }
            state.live_vectors.truncate(last * dim);
            if applied {
                folded += 1;
            } else {
                dropped += 1;
            }
        }
        self.folded.fetch_add(folded as u64, Ordering::AcqRel);
        let (nodes, live) = {
            let s = self.read();
            (s.graph.len(), s.live_labels.len())
        };
        tracing::info!(
            folded,
            dropped,
            nodes,
            live,
            seconds = started.elapsed().as_secs_f64(),
            "live segment folded into the index graph"
        );
        self.relink_stale();
        folded + dropped
    }

    /// Relinks each partition whose folded nodes have outgrown its sub-graph (see
    /// `tags`). The caller holds the `compacting` flag: no fold or rebuild changes the
    /// graph's nodes meanwhile, so the nodes gathered stay valid while the sub-graph is
    /// built outside the lock.
    fn relink_stale(&self) {
        let stale = self.read().tags.stale(self.build.partition_min);
        for tag in stale {
            let (graph, nodes) = {
                let s = self.read();
                (
                    Arc::clone(&s.graph),
                    s.tags.relink_nodes(&s.graph, tag, &s.tombstones),
                )
            };
            let Some(nodes) = nodes else { continue };
            let part = link(&graph, nodes, &self.build);
            drop(graph);
            let linked = part.len();
            self.write().tags.parts.insert(tag, part);
            tracing::info!(tag, linked, "index partition relinked");
        }
    }

    /// A rebuild's input: every vector of `graph` and the first `live_len` of the live
    /// segment, without `tombstones`. Read outside the state lock: nothing changes a
    /// graph in place while it is shared (folds and file adoptions go through
    /// `Arc::get_mut`), and the caller holds both the `compacting` flag and a handle.
    fn gather(
        &self,
        graph: &Graph,
        live_len: usize,
        tombstones: &IdSet,
        hint: usize,
        spill: Option<&SpillTo>,
    ) -> std::io::Result<(Vec<u32>, crate::graph::Floats)> {
        let mut labels = Vec::with_capacity(hint);
        let mut vectors = Gather::new(spill, hint * self.dim);
        for (row, &label) in graph.vectors().zip(&graph.labels) {
            if !tombstones.contains(label) {
                labels.push(label);
                vectors.push(row)?;
            }
        }
        let s = self.read();
        for (row, &label) in s
            .live_vectors
            .chunks_exact(self.dim)
            .zip(&s.live_labels)
            .take(live_len)
        {
            if !s.tombstones.contains(label) {
                labels.push(label);
                vectors.push(row)?;
            }
        }
        drop(s);
        Ok((labels, vectors.finish()?))
    }

    /// A rebuild: a new graph from every vector not deleted, swapped in. The caller
    /// holds the `compacting` flag. True when the rebuilt graph was swapped in.
    fn compact_locked(&self) -> bool {
        let started = std::time::Instant::now();
        let (graph, live_len, tombstones, hint) = {
            let s = self.read();
            (
                Arc::clone(&s.graph),
                s.live_labels.len(),
                s.tombstones.clone(),
                s.present.len(),
            )
        };
        let spill = self.spill.lock().clone();
        let gathered = self
            .gather(&graph, live_len, &tombstones, hint, spill.as_ref())
            .or_else(|e| {
                tracing::error!(error = %e, "the rebuild's spill file failed; gathering its vectors in memory");
                self.gather(&graph, live_len, &tombstones, hint, None)
            });
        drop(tombstones);
        let (labels, vectors) = match gathered {
            Ok(gathered) => gathered,
            Err(e) => {
                tracing::error!(error = %e, "cannot gather the rebuild's vectors");
                return false;
            }
        };
        let of = self.read().tags.of.clone();
        let built = Graph::build_over(self.dim, labels, vectors, &self.build);
        let parts = Tags::partition(&built, &of, &IdSet::new(), &self.build);
        drop(of);
        let mut s = self.write();
        if !Arc::ptr_eq(&s.graph, &graph) {
            tracing::warn!("the graph changed during compaction; keeping the newer one");
            return false;
        }
        s.graph_tombstones = built
            .labels
            .iter()
            .filter(|&&l| s.tombstones.contains(l))
            .count();
        s.graph = Arc::new(built);
        let state = &mut *s;
        state.tags.parts = parts;
        // Tags of ids gone from the index go; an id deleted while this rebuild ran is
        // still a node of the new graph (and of its partitions), so it keeps its tags
        // until the next rebuild, as a saved partition needs them.
        let (present, graph) = (&state.present, &state.graph);
        state
            .tags
            .retain(|label| present.contains(label) || graph.has_label(label));
        s.live_labels.drain(..live_len);
        let dim = self.dim;
        s.live_vectors.drain(..live_len * dim);
        self.compactions.fetch_add(1, Ordering::AcqRel);
        tracing::info!(
            nodes = s.graph.len(),
            live = s.live_labels.len(),
            seconds = started.elapsed().as_secs_f64(),
            "index compacted"
        );
        true
    }
}

impl VectorIndex for HnswIndex {
    fn dim(&self) -> usize {
        self.shared.dim
    }

    fn len(&self) -> usize {
        self.read().present.len()
    }

    fn insert(&self, id: u32, vector: &Embedding) -> Result<()> {
        self.insert_tagged(id, vector, &[])
    }

    fn delete(&self, id: u32) -> bool {
        let mut s = self.write();
        if !s.present.remove(id) {
            return false;
        }
        s.tombstones.insert(id);
        if s.graph.has_label(id) {
            s.graph_tombstones += 1;
        }
        let compact = self.shared.needs_compaction(&s);
        drop(s);
        if compact {
            Shared::spawn_compaction(&self.shared);
        }
        true
    }

    fn contains(&self, id: u32) -> bool {
        self.read().present.contains(id)
    }

    fn search(&self, query: &[f32], k: usize, filter: Filter<'_>) -> Result<Vec<Hit>> {
        self.search_with(query, k, filter, &self.shared.search)
    }
}

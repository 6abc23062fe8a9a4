//! Building a graph on several threads: hnswlib's insertion, run concurrently.
//!
//! Every node's level is drawn from its label ([`level_of`], the law a fold draws), and
//! nodes are inserted by a pool of threads that take the next node from a shared
//! counter. One insertion, as in hnswlib:
//!
//! 1. read the entry point and the top layer (under the entry lock; a node whose level
//!    is above the top keeps that lock for its whole insertion, so two new tops never
//!    race);
//! 2. descend greedily through the layers above the node's level;
//! 3. on each of its layers, search `ef_construction` candidates, keep the neighbour
//!    heuristic's choice of `m` as the node's links, and add the node to each chosen
//!    neighbour's list, re-selecting that list with the heuristic when it would
//!    overflow (`2m` on layer 0, `m` above).
//!
//! Links live in atomics: a search reads a list while another thread may rewrite it and
//! sees a mix of old and new links, every one of them a node of that layer, which is
//! what hnswlib's readers see too. A list is rewritten under its node's lock, and a
//! thread holds at most one node lock at a time, so no two threads wait on each other
//! in a circle.
//!
//! After the build, [`Graph::refine_layer0`] re-selects layer-0 lists over forward and
//! reverse links with free slots filled, as a fold selects them (an int8 graph by its
//! codes). The builder scores exact vectors throughout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::insert::{apart_by, level_of, select_neighbours};
use super::{Floats, Graph, Node, descend, search_layer_with};
use crate::distance::distance;
use crate::params::HnswBuildParams;

/// Fixed-capacity link lists, one row of `1 + cap` atomics each (count, then slots).
struct Lists {
    cap: usize,
    slots: Vec<AtomicU32>,
}

impl Lists {
    fn new(rows: usize, cap: usize) -> Self {
        let mut slots = Vec::with_capacity(rows * (1 + cap));
        slots.resize_with(rows * (1 + cap), || AtomicU32::new(0));
        Self { cap, slots }
    }

    /// Copies row `row` into `out` (cleared first).
    fn read(&self, row: usize, out: &mut Vec<Node>) {
        out.clear();
        let base = row * (1 + self.cap);
        let count = (self.slots[base].load(Ordering::Acquire) as usize).min(self.cap);
        out.extend(
            self.slots[base + 1..base + 1 + count]
                .iter()
                .map(|s| s.load(Ordering::Relaxed)),
        );
    }

    /// Replaces row `row` with `list` (at most `cap` links): slots first, then the count,
    /// so a reader never counts a slot not yet written.
    fn write(&self, row: usize, list: &[Node]) {
        let base = row * (1 + self.cap);
        let count = list.len().min(self.cap);
        for (slot, &node) in self.slots[base + 1..].iter().zip(&list[..count]) {
            slot.store(node, Ordering::Relaxed);
        }
        self.slots[base].store(count as u32, Ordering::Release);
    }

    /// Row `row` as plain values (after the build).
    fn row(&self, row: usize) -> impl Iterator<Item = u32> + '_ {
        let base = row * (1 + self.cap);
        let count = (self.slots[base].load(Ordering::Acquire) as usize).min(self.cap);
        std::iter::once(count as u32).chain(
            self.slots[base + 1..base + 1 + self.cap]
                .iter()
                .map(|s| s.load(Ordering::Relaxed)),
        )
    }
}

/// The graph while threads insert into it.
struct Builder<'v> {
    dim: usize,
    vectors: &'v [f32],
    m: usize,
    ef: usize,
    levels: Vec<u8>,
    layer0: Lists,
    /// A node's first row in `upper` (its rows for layers `1..=level` follow), or
    /// `u32::MAX` for a node on layer 0 only.
    upper_row: Vec<u32>,
    upper: Lists,
    locks: Vec<Mutex<()>>,
    /// The entry point and the top layer.
    entry: Mutex<(Node, usize)>,
}

impl<'v> Builder<'v> {
    fn new(dim: usize, labels: &[u32], vectors: &'v [f32], m: usize, ef: usize) -> Self {
        let n = labels.len();
        let levels: Vec<u8> = labels.iter().map(|&l| level_of(l, m) as u8).collect();
        let mut upper_row = vec![u32::MAX; n];
        let mut rows = 0u32;
        for (node, &level) in levels.iter().enumerate() {
            if level > 0 {
                upper_row[node] = rows;
                rows += u32::from(level);
            }
        }
        let mut locks = Vec::with_capacity(n);
        locks.resize_with(n, || Mutex::new(()));
        Self {
            dim,
            vectors,
            m,
            ef,
            layer0: Lists::new(n, 2 * m),
            upper_row,
            upper: Lists::new(rows as usize, m),
            locks,
            entry: Mutex::new((0, usize::from(levels[0]))),
            levels,
        }
    }

    #[inline]
    fn vector(&self, node: Node) -> &'v [f32] {
        let at = node as usize * self.dim;
        &self.vectors[at..at + self.dim]
    }

    /// The lists and row of `node` on `layer`, when the node is on that layer.
    fn row_of(&self, layer: usize, node: Node) -> Option<(&Lists, usize)> {
        if layer == 0 {
            return Some((&self.layer0, node as usize));
        }
        if usize::from(self.levels[node as usize]) < layer {
            return None;
        }
        let first = self.upper_row[node as usize] as usize;
        Some((&self.upper, first + layer - 1))
    }

    fn neighbours(&self, layer: usize, node: Node, out: &mut Vec<Node>) {
        match self.row_of(layer, node) {
            Some((lists, row)) => lists.read(row, out),
            None => out.clear(),
        }
    }

    /// Best-first search of one layer from `entry`, keeping the `ef` nearest: nearest
    /// first.
    fn search_layer(&self, query: &[f32], entry: &[(f32, Node)], layer: usize) -> Vec<(f32, Node)> {
        search_layer_with(
            self.levels.len(),
            query,
            entry,
            self.ef,
            |node, out| self.neighbours(layer, node, out),
            |n| self.vector(n),
        )
    }

    /// Inserts `node` (see the module docs).
    fn insert(&self, node: Node) {
        let level = usize::from(self.levels[node as usize]);
        let query = self.vector(node);
        let guard = self.entry.lock();
        let (entry, top) = *guard;
        // A new top keeps the entry lock for its whole insertion.
        let held = if level > top {
            Some(guard)
        } else {
            drop(guard);
            None
        };
        let mut links = Vec::with_capacity(2 * self.m);
        let dist = |x: Node| distance(query, self.vector(x));
        let start = descend(
            (dist(entry), entry),
            (level + 1..=top).rev(),
            |layer, node, out| self.neighbours(layer, node, out),
            dist,
        );
        let mut entries = vec![start];
        let vector_of = |x: Node| self.vector(x);
        for layer in (0..=level.min(top)).rev() {
            let mut found = self.search_layer(query, &entries, layer);
            // Another thread that reached this node on a layer above may already have
            // linked it here: it is not its own neighbour.
            found.retain(|&(_, c)| c != node);
            let chosen = select_neighbours(&found, self.m, false, apart_by(vector_of));
            if let Some((lists, row)) = self.row_of(layer, node) {
                let _own = self.locks[node as usize].lock();
                // Links other threads added to this list before it was written are kept.
                lists.read(row, &mut links);
                if links.is_empty() {
                    lists.write(row, &chosen);
                } else {
                    let list = self.merge(node, &chosen, &links, lists.cap);
                    lists.write(row, &list);
                }
            }
            for &nb in &chosen {
                self.connect(layer, nb, node, &mut links);
            }
            entries = found;
        }
        if let Some(mut guard) = held {
            *guard = (node, level);
        }
    }

    /// `chosen` and `present` as one list of at most `cap` (re-selected with the
    /// heuristic when they do not fit).
    fn merge(&self, node: Node, chosen: &[Node], present: &[Node], cap: usize) -> Vec<Node> {
        let base = self.vector(node);
        let mut cand: Vec<(f32, Node)> = chosen
            .iter()
            .chain(present)
            .filter(|&&c| c != node)
            .map(|&c| (distance(base, self.vector(c)), c))
            .collect();
        cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        cand.dedup_by_key(|c| c.1);
        if cand.len() <= cap {
            return cand.into_iter().map(|(_, c)| c).collect();
        }
        select_neighbours(&cand, cap, false, apart_by(|x| self.vector(x)))
    }

    /// Adds `new` to `node`'s list on `layer`, re-selecting the list with the heuristic
    /// when it is full.
    fn connect(&self, layer: usize, node: Node, new: Node, list: &mut Vec<Node>) {
        let Some((lists, row)) = self.row_of(layer, node) else {
            return;
        };
        let _lock = self.locks[node as usize].lock();
        lists.read(row, list);
        if list.contains(&new) {
            return;
        }
        if list.len() < lists.cap {
            list.push(new);
            lists.write(row, list);
            return;
        }
        let chosen = self.merge(node, &[new], list, lists.cap);
        lists.write(row, &chosen);
    }

    /// The finished graph's layer-0 rows, upper layers and entry point.
    #[allow(clippy::type_complexity)]
    fn finish(self) -> (Vec<u32>, Vec<HashMap<Node, Box<[Node]>>>, Node) {
        let n = self.levels.len();
        let m0 = self.layer0.cap;
        let mut l0 = Vec::with_capacity(n * (1 + m0));
        for node in 0..n {
            l0.extend(self.layer0.row(node));
        }
        let (entry, top) = *self.entry.lock();
        let mut upper: Vec<HashMap<Node, Box<[Node]>>> = vec![HashMap::new(); top];
        let mut list = Vec::new();
        for (node, &level) in self.levels.iter().enumerate() {
            for layer in 1..=usize::from(level).min(top) {
                self.neighbours(layer, node as Node, &mut list);
                upper[layer - 1].insert(node as Node, list.as_slice().into());
            }
        }
        (l0, upper, entry)
    }
}

impl Graph {
    /// Builds a graph over `vectors` (rows of `dim`, unit length) labelled `labels` on
    /// `params.threads` threads (0: every core); see the module docs.
    pub(crate) fn build(
        dim: usize,
        labels: Vec<u32>,
        vectors: Vec<f32>,
        params: &HnswBuildParams,
    ) -> Self {
        Self::build_over(dim, labels, Floats::Owned(vectors), params)
    }

    /// [`Graph::build`] over vectors held in memory or mapped (a spilled build's).
    pub(crate) fn build_over(
        dim: usize,
        labels: Vec<u32>,
        vectors: Floats,
        params: &HnswBuildParams,
    ) -> Self {
        let n = labels.len();
        if n == 0 {
            return Self::empty(dim, params.m, params.vectors);
        }
        let vectors = match vectors.contiguous() {
            Some(_) => vectors,
            None => Floats::Owned(vectors.rows(1).flatten().copied().collect()),
        };
        let all = vectors.contiguous().unwrap_or_default();
        let builder = Builder::new(dim, &labels, all, params.m, params.ef_construction);
        let threads = match params.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            t => t,
        }
        .clamp(1, n);
        // Node 0 is the first entry point; the others are taken in turn by the workers.
        let next = AtomicUsize::new(1);
        let work = || {
            loop {
                let node = next.fetch_add(1, Ordering::Relaxed);
                if node >= n {
                    break;
                }
                builder.insert(node as Node);
            }
        };
        std::thread::scope(|scope| {
            for i in 1..threads {
                let spawned = std::thread::Builder::new()
                    .name(format!("steerfeed-build-{i}"))
                    .spawn_scoped(scope, work);
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot start a build thread; building on fewer");
                    break;
                }
            }
            work();
        });
        let m0 = builder.layer0.cap;
        let (l0, upper, entry) = builder.finish();
        let mut graph =
            Graph::assemble(dim, labels, vectors, m0, &l0, upper, entry, params.vectors);
        // The build's lists are in the graph's rows now: their copy goes before the
        // refinement gathers its own arrays.
        drop(l0);
        graph.refine_layer0();
        graph
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use steerfeed_world::vectors::dataset;

    use super::*;
    use crate::graph::testing::{assert_well_formed, found_first};
    use crate::index::TopK;
    use crate::params::VectorStorage;

    const DIM: usize = 24;

    fn params(threads: usize, vectors: VectorStorage) -> HnswBuildParams {
        HnswBuildParams {
            m: 8,
            ef_construction: 64,
            threads,
            vectors,
            ..HnswBuildParams::default()
        }
    }

    fn build_as(vectors: &[f32], threads: usize, storage: VectorStorage) -> Graph {
        let n = vectors.len() / DIM;
        // Labels that are not the rows, so node and label mix-ups show.
        let labels = (0..n as u32).map(|i| 7 * i + 3).collect();
        Graph::build(DIM, labels, vectors.to_vec(), &params(threads, storage))
    }

    fn build(vectors: &[f32], threads: usize) -> Graph {
        build_as(vectors, threads, VectorStorage::F32)
    }

    #[test]
    fn graphs_built_on_one_or_several_threads_are_well_formed_and_find_neighbours() {
        let (vectors, queries) = dataset(3_000, 200, DIM, 21);
        for (threads, storage) in [
            (1, VectorStorage::F32),
            (2, VectorStorage::F32),
            (4, VectorStorage::F32),
            (2, VectorStorage::Int8),
        ] {
            let g = build_as(&vectors, threads, storage);
            for (node, v) in vectors.chunks_exact(DIM).enumerate() {
                assert_eq!(
                    g.vector(node as Node),
                    v,
                    "{storage:?} holds the exact vectors"
                );
            }
            assert_eq!(g.len(), 3_000);
            assert_well_formed(&g);
            assert!(!g.upper.is_empty(), "3,000 levels with m = 8 reach layer 1");
            let share = found_first(&g, &queries, 48) as f64 / 200.0;
            assert!(share >= 0.97, "{threads} threads, {storage:?}: {share}");
            // Every node has an in-link and is reached from the entry on layer 0, and
            // the walk finds nearly every vector as its own nearest neighbour (HNSW
            // promises no more than that).
            let mut in_degree = vec![0; g.len()];
            for node in 0..g.len() as Node {
                for &nb in g.links(node) {
                    in_degree[nb.to_bits() as usize] += 1;
                }
            }
            let orphans = (0..g.len())
                .filter(|&i| in_degree[i] == 0 && i as Node != g.entry)
                .count();
            assert_eq!(orphans, 0, "{threads} threads");
            assert_eq!(g.unreached().len(), 0, "{threads} threads");
            let itself = vectors
                .chunks_exact(DIM)
                .enumerate()
                .filter(|(node, v)| {
                    let mut top = TopK::new(1);
                    g.search(v, 1, 32, 32, None, &mut top);
                    top.into_hits()[0].id == g.labels[*node]
                })
                .count();
            // Threads interleave differently in each run, and so does the graph: 2,980
            // to 3,000 were seen on four threads over two cores.
            assert!(itself >= 2_970, "{threads} threads: {itself} of 3,000");
        }
    }

    #[test]
    fn int8_rows_of_a_dimension_not_a_multiple_of_four_hold_their_codes() {
        const ODD: usize = 23;
        let (vectors, queries) = dataset(1_500, 50, ODD, 24);
        let g = Graph::build(
            ODD,
            (0..1_500).collect(),
            vectors.clone(),
            &params(2, VectorStorage::Int8),
        );
        assert_well_formed(&g);
        for (node, v) in vectors.chunks_exact(ODD).enumerate() {
            assert_eq!(g.vector(node as Node), v);
            // The codes reconstruct the vector within half a step per coordinate.
            let (scale, codes) = g.codes(node as Node);
            for (&x, &c) in v.iter().zip(codes) {
                assert!((x - scale * f32::from(c)).abs() <= scale * 0.5 + 1e-6);
            }
        }
        let found = found_first(&g, &queries, 48);
        assert!(found >= 48, "{found} of 50");
    }

    #[test]
    fn layer0_reselection_in_blocks_is_the_reselection_of_all_at_once() {
        let (vectors, _) = dataset(1_200, 1, DIM, 25);
        for storage in [VectorStorage::F32, VectorStorage::Int8] {
            let built = build_as(&vectors, 1, storage);
            let (n, m0) = (built.len(), built.m0);
            // Lists no refinement has seen (a refined graph's lists come back as they
            // are): up to m0 / 2 links to nodes drawn by a seeded generator.
            let mut state = 0x2545_f491_4f6c_dd1d_u64;
            let mut draw = |below: usize| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 33) as usize % below
            };
            let mut l0 = Vec::with_capacity(n * (1 + m0));
            for node in 0..n {
                let count = 1 + draw(m0 / 2);
                let mut list: Vec<u32> = (0..count)
                    .map(|_| draw(n) as u32)
                    .filter(|&c| c != node as u32)
                    .collect();
                list.sort_unstable();
                list.dedup();
                l0.push(list.len() as u32);
                l0.extend(&list);
                l0.resize(l0.len() + m0 - list.len(), 0);
            }
            let g = Graph::assemble(
                DIM,
                built.labels.clone(),
                Floats::Owned(vectors.clone()),
                m0,
                &l0,
                built.upper.clone(),
                built.entry,
                storage,
            );
            let lists = |g: &Graph| -> Vec<Vec<Node>> {
                (0..g.len() as Node)
                    .map(|node| g.links(node).iter().map(|x| x.to_bits()).collect())
                    .collect()
            };
            // The oracle: every node's candidates are its own links and the nodes
            // linking to it (gathered here one list per node), all re-selected from the
            // graph as it stands before any list is written.
            let mut incoming: Vec<Vec<Node>> = vec![Vec::new(); n];
            for node in 0..n as Node {
                for &nb in g.links(node) {
                    incoming[nb.to_bits() as usize].push(node);
                }
            }
            let flat = super::super::Incoming::gather(&g);
            for (node, from) in incoming.iter().enumerate() {
                assert_eq!(flat.of(node as Node), from.as_slice(), "node {node}");
            }
            let expected: Vec<Vec<Node>> = (0..n as Node)
                .map(|node| {
                    let mut cand: Vec<(f32, Node)> = g
                        .links(node)
                        .iter()
                        .map(|x| x.to_bits())
                        .chain(incoming[node as usize].iter().copied())
                        .filter(|&c| c != node)
                        .map(|c| (g.apart(node, c), c))
                        .collect();
                    cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    cand.dedup_by_key(|c| c.1);
                    select_neighbours(&cand, m0, true, |a, b| g.apart(a, b))
                })
                .collect();
            let before = lists(&g);
            let changed = (0..n).filter(|&i| expected[i] != before[i]).count();
            assert!(changed > n / 2, "{storage:?}: only {changed} lists change");
            for block in [1, 7, 64, 1_200, 5_000] {
                let mut h = g.clone();
                h.reselect_layer0(block);
                assert!(
                    lists(&h) == expected,
                    "{storage:?}, blocks of {block}: not the lists of all at once"
                );
            }
        }
    }

    #[test]
    fn an_int8_graph_reselects_its_links_from_its_codes_not_its_exact_vectors() {
        let (vectors, _) = dataset(1_000, 1, DIM, 26);
        // Other exact vectors under the same codes: the rows in reverse order.
        let reversed: Vec<f32> = vectors.chunks_exact(DIM).rev().flatten().copied().collect();
        let rows = |g: &Graph| -> Vec<Vec<u32>> { g.link_rows().map(Iterator::collect).collect() };
        let int8 = build_as(&vectors, 1, VectorStorage::Int8);
        let mut own = int8.clone();
        own.reselect_layer0(100);
        let mut other = int8.clone();
        other.floats = Floats::Owned(reversed.clone());
        other.reselect_layer0(100);
        assert_eq!(rows(&own), rows(&other));
        // The same exchange in a graph of floats changes its lists: the check above
        // would see a re-selection that read the exact vectors.
        let f32s = build_as(&vectors, 1, VectorStorage::F32);
        let mut own = f32s.clone();
        own.reselect_layer0(100);
        let mut other = Graph::assemble(
            DIM,
            f32s.labels.clone(),
            Floats::Owned(reversed),
            f32s.m0,
            &rows(&f32s).concat(),
            f32s.upper.clone(),
            f32s.entry,
            VectorStorage::F32,
        );
        other.reselect_layer0(100);
        assert_ne!(rows(&own), rows(&other));
    }

    #[test]
    fn a_build_on_one_thread_is_deterministic() {
        let (vectors, _) = dataset(800, 1, DIM, 22);
        assert_eq!(build(&vectors, 1), build(&vectors, 1));
    }

    #[test]
    fn tiny_and_degenerate_sets_build() {
        let (vectors, _) = dataset(5, 1, DIM, 23);
        for n in 1..=5 {
            let g = build(&vectors[..n * DIM], 2);
            assert_eq!(g.len(), n);
            assert_well_formed(&g);
        }
        // Every vector the same: every distance ties, and the graph still holds them all.
        let same: Vec<f32> = vectors[..DIM].repeat(400);
        let g = build(&same, 2);
        assert_well_formed(&g);
        let mut top = TopK::new(10);
        g.search(&vectors[..DIM], 10, 32, 32, None, &mut top);
        assert_eq!(top.into_hits().len(), 10);
    }
}

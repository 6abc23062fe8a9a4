//! The HNSW graph: built by `hnsw_rs`, exported into flat arrays, searched by our own
//! code, and grown one node at a time by a fold ([`insert`]).
//!
//! Layout: one row per node in a single array, `[count, m0 link slots, vector]` (links
//! stored as `f32` bit patterns), so a node's links sit right before its vector: the walk
//! reads a node's vector when it scores it, and when it later expands that node its
//! links are already in cache (hnswlib's layout). The sparse upper layers live in hash
//! maps (a search touches them a few dozen times).
//! A search reuses a per-thread visited array stamped with an epoch, so it allocates
//! nothing per visited node, and prefetches neighbour vectors before scoring them.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use hnsw_rs::prelude::Hnsw;

use crate::distance::{InnerProduct, distance, prefetch};
use crate::index::TopK;
use crate::params::HnswBuildParams;

mod insert;

/// Most layers `hnsw_rs` may create (its dump format also requires 16).
const MAX_LAYERS: usize = 16;

/// A node id inside one graph.
pub(crate) type Node = u32;

/// A distance paired with a node, ordered by distance then node.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dist(f32, Node);

impl Eq for Dist {}

impl PartialOrd for Dist {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Dist {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| self.1.cmp(&other.1))
    }
}

/// Per-thread visited marks, reset in O(1) by bumping the epoch.
#[derive(Default)]
struct Visited {
    marks: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn reset(&mut self, n: usize) {
        if self.marks.len() < n {
            self.marks.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `node`; true when it was not marked in this search.
    #[inline]
    fn insert(&mut self, node: Node) -> bool {
        let m = &mut self.marks[node as usize];
        if *m == self.epoch {
            false
        } else {
            *m = self.epoch;
            true
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = RefCell::new(Visited::default());
}

/// Asks the kernel to back a large, not yet touched allocation with transparent huge
/// pages: a graph walk touches nodes at random, and with 4 KiB pages nearly every node
/// costs a TLB miss. A hint only; where the kernel says no, nothing changes.
fn advise_huge_pages(v: &Vec<f32>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = v.capacity() * std::mem::size_of::<f32>();
        if bytes < 4 * HUGE {
            return;
        }
        let start = v.as_ptr() as usize;
        let aligned = start.div_ceil(HUGE) * HUGE;
        let len = (start + bytes).saturating_sub(aligned) / HUGE * HUGE;
        if len > 0 {
            // SAFETY: the range lies inside the vector's own allocation; MADV_HUGEPAGE
            // changes no contents and no mapping, only how later faults are served.
            let rc =
                unsafe { libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
            if rc != 0 {
                tracing::debug!("madvise(MADV_HUGEPAGE) declined");
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// An HNSW graph; only a fold adds nodes to it (a rebuild makes a new one).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Graph {
    pub(crate) dim: usize,
    /// Node to the caller's id.
    pub(crate) labels: Vec<u32>,
    /// Layer-0 slots per node.
    pub(crate) m0: usize,
    /// `labels.len()` rows of `1 + m0 + dim` floats: link count and links (as bits), vector.
    data: Vec<f32>,
    /// `upper[l - 1]`: neighbours of the nodes present on layer `l`.
    pub(crate) upper: Vec<HashMap<Node, Box<[Node]>>>,
    pub(crate) entry: Node,
    /// Caller's id to node, `u32::MAX` where absent.
    pub(crate) node_of: Vec<u32>,
}

impl Graph {
    /// An empty graph.
    pub(crate) fn empty(dim: usize, m: usize) -> Self {
        Self {
            dim,
            labels: Vec::new(),
            m0: 2 * m,
            data: Vec::new(),
            upper: Vec::new(),
            entry: 0,
            node_of: Vec::new(),
        }
    }

    /// Builds a graph over `vectors` (rows of `dim`, unit length) labelled `labels`.
    pub(crate) fn build(
        dim: usize,
        labels: Vec<u32>,
        vectors: Vec<f32>,
        params: &HnswBuildParams,
    ) -> Self {
        let n = labels.len();
        if n == 0 {
            return Self::empty(dim, params.m);
        }
        let hnsw: Hnsw<'_, f32, InnerProduct> = Hnsw::new(
            params.m,
            n,
            MAX_LAYERS,
            params.ef_construction,
            InnerProduct,
        );
        let data: Vec<(&[f32], usize)> = vectors.chunks_exact(dim).zip(0..n).collect();
        let insert = || hnsw.parallel_insert_slice(&data);
        match params.threads {
            0 => insert(),
            t => match rayon::ThreadPoolBuilder::new().num_threads(t).build() {
                Ok(pool) => pool.install(insert),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make a build pool; using the global one");
                    insert();
                }
            },
        }
        let mut graph = Self::export(&hnsw, dim, labels, vectors, 2 * params.m);
        drop(hnsw);
        graph.refine_layer0();
        graph
    }

    /// Re-selects every node's layer-0 links with the HNSW neighbour heuristic over its
    /// current links and the nodes that link to it.
    ///
    /// `hnsw_rs` picks a new node's own links with the heuristic, but when a reverse link
    /// overflows a neighbour's list it just drops the farthest entry, so over a large
    /// build the lists collapse onto each node's nearest neighbours and the long-range
    /// links that let a walk cross between clusters are lost (recall at equal `ef` fell
    /// well below hnswlib's at 1M). hnswlib re-applies the heuristic when it shrinks a
    /// list; doing it once here, over forward and reverse links, restores that shape.
    pub(crate) fn refine_layer0(&mut self) {
        use rayon::prelude::*;
        let n = self.len();
        if n < 2 {
            return;
        }
        let mut incoming: Vec<Vec<Node>> = vec![Vec::new(); n];
        for node in 0..n as Node {
            for &nb in self.links(node) {
                incoming[nb.to_bits() as usize].push(node);
            }
        }
        let m0 = self.m0;
        let lists: Vec<Vec<Node>> = (0..n as Node)
            .into_par_iter()
            .map(|node| {
                let me = self.vector(node);
                let mut cand: Vec<(f32, Node)> = self
                    .links(node)
                    .iter()
                    .map(|x| x.to_bits())
                    .chain(incoming[node as usize].iter().copied())
                    .filter(|&c| c != node)
                    .map(|c| (distance(me, self.vector(c)), c))
                    .collect();
                cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                cand.dedup_by_key(|c| c.1);
                // Free slots go to the nearest pruned candidates (hnswlib's
                // keepPrunedConnections): diverse links first, then density.
                insert::select_neighbours(&cand, m0, true, |c| self.vector(c))
            })
            .collect();
        for (node, list) in lists.into_iter().enumerate() {
            self.set_links(node as Node, &list);
        }
    }

    fn export(
        hnsw: &Hnsw<'_, f32, InnerProduct>,
        dim: usize,
        labels: Vec<u32>,
        vectors: Vec<f32>,
        m0: usize,
    ) -> Self {
        let n = labels.len();
        let mut l0 = vec![0u32; n * (1 + m0)];
        let max_level = usize::from(hnsw.get_max_level_observed());
        let mut upper: Vec<HashMap<Node, Box<[Node]>>> = vec![HashMap::new(); max_level];
        let indexation = hnsw.get_point_indexation();
        for point in indexation {
            let node = point.get_origin_id();
            let level = usize::from(point.get_point_id().0);
            for (layer, neighbours) in point
                .get_neighborhood_id()
                .iter()
                .enumerate()
                .take(level + 1)
            {
                let ids = neighbours.iter().map(|nb| nb.d_id as Node);
                if layer == 0 {
                    let row = &mut l0[node * (1 + m0)..(node + 1) * (1 + m0)];
                    let mut count = 0;
                    for (slot, id) in row[1..].iter_mut().zip(ids) {
                        *slot = id;
                        count += 1;
                    }
                    row[0] = count;
                } else if let Some(map) = upper.get_mut(layer - 1) {
                    map.insert(node as Node, ids.collect());
                }
            }
        }
        let entry = indexation
            .get_layer_iterator(max_level)
            .next()
            .map_or(0, |p| p.get_origin_id() as Node);
        Self::assemble(dim, labels, &vectors, m0, &l0, upper, entry)
    }

    /// Interleaves layer-0 link rows (`1 + m0` each) and vectors (`dim` each) into the
    /// serving layout.
    pub(crate) fn assemble(
        dim: usize,
        labels: Vec<u32>,
        vectors: &[f32],
        m0: usize,
        l0: &[u32],
        upper: Vec<HashMap<Node, Box<[Node]>>>,
        entry: Node,
    ) -> Self {
        let stride = 1 + m0 + dim;
        let mut data = Vec::with_capacity(labels.len() * stride);
        advise_huge_pages(&data);
        for (links, vector) in l0.chunks_exact(1 + m0).zip(vectors.chunks_exact(dim)) {
            data.extend(links.iter().map(|&x| f32::from_bits(x)));
            data.extend_from_slice(vector);
        }
        let mut graph = Self {
            dim,
            labels,
            m0,
            data,
            upper,
            entry,
            node_of: Vec::new(),
        };
        graph.index_labels();
        graph
    }

    fn stride(&self) -> usize {
        1 + self.m0 + self.dim
    }

    /// Every node's vector, in node order.
    pub(crate) fn vectors(&self) -> impl Iterator<Item = &[f32]> {
        let skip = 1 + self.m0;
        self.data
            .chunks_exact(self.stride())
            .map(move |r| &r[skip..])
    }

    /// Every node's layer-0 row (count then `m0` slots), in node order.
    pub(crate) fn link_rows(&self) -> impl Iterator<Item = impl Iterator<Item = u32> + '_> {
        let m0 = self.m0;
        self.data
            .chunks_exact(self.stride())
            .map(move |r| r[..1 + m0].iter().map(|x| x.to_bits()))
    }

    /// Fills `node_of` from `labels`.
    pub(crate) fn index_labels(&mut self) {
        let max = self
            .labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        self.node_of = vec![u32::MAX; max];
        for (node, &label) in self.labels.iter().enumerate() {
            self.node_of[label as usize] = node as u32;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when `label` is a node of this graph.
    pub(crate) fn has_label(&self, label: u32) -> bool {
        self.node_of
            .get(label as usize)
            .is_some_and(|&n| n != u32::MAX)
    }

    #[inline]
    pub(crate) fn vector(&self, node: Node) -> &[f32] {
        let start = node as usize * self.stride() + 1 + self.m0;
        &self.data[start..start + self.dim]
    }

    /// The row of a node from its start (links first), for prefetching.
    #[inline]
    fn row(&self, node: Node) -> &[f32] {
        let start = node as usize * self.stride();
        &self.data[start..start + self.stride()]
    }

    /// A node's layer-0 links, as `f32` bit patterns (`to_bits` gives the node).
    #[inline]
    fn links(&self, node: Node) -> &[f32] {
        let row = node as usize * self.stride();
        let count = (self.data[row].to_bits() as usize).min(self.m0);
        &self.data[row + 1..row + 1 + count]
    }

    /// Walks the graph: greedy descent through the upper layers, then a best-first search
    /// of layer 0.
    ///
    /// The walk's frontier is bounded by the best `walk_ef` nodes seen, allowed or not;
    /// the results are the best `ef` nodes whose label passes `pass` (every node when
    /// `pass` is `None`). Disallowed nodes
    /// route the walk but never enter the results (the filter is inside the search, not
    /// applied after it). With no filter `walk_ef == ef` and this is plain HNSW search;
    /// with a filter the caller widens `walk_ef` as the filter narrows. The walk goes on
    /// past its bound while fewer than `k` allowed nodes were found.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        walk_ef: usize,
        pass: Option<&dyn Fn(u32) -> bool>,
        top: &mut TopK,
    ) {
        let n = self.len();
        if n == 0 || k == 0 {
            return;
        }
        let ef = ef.max(k);
        let walk_ef = walk_ef.max(ef);
        let mut cur = self.entry;
        let mut cur_d = distance(query, self.vector(cur));
        for layer in self.upper.iter().rev() {
            loop {
                let mut changed = false;
                if let Some(neighbours) = layer.get(&cur) {
                    for &nb in neighbours.iter() {
                        let d = distance(query, self.vector(nb));
                        if d < cur_d {
                            cur_d = d;
                            cur = nb;
                            changed = true;
                        }
                    }
                }
                if !changed {
                    break;
                }
            }
        }

        VISITED.with(|visited| {
            let mut visited = visited.borrow_mut();
            visited.reset(n);
            visited.insert(cur);
            let mut candidates: BinaryHeap<Reverse<Dist>> = BinaryHeap::with_capacity(walk_ef * 4);
            // The best `walk_ef` nodes seen, allowed or not: bounds the walk.
            let mut frontier: BinaryHeap<Dist> = BinaryHeap::with_capacity(walk_ef + 1);
            // The best `ef` allowed nodes. Without a filter it is the frontier itself.
            let mut results: BinaryHeap<Dist> = BinaryHeap::with_capacity(ef + 1);
            let filtered = pass.is_some();
            let allowed = |node: Node| pass.is_none_or(|p| p(self.labels[node as usize]));
            candidates.push(Reverse(Dist(cur_d, cur)));
            frontier.push(Dist(cur_d, cur));
            if filtered && allowed(cur) {
                results.push(Dist(cur_d, cur));
            }
            let mut bound = if walk_ef <= 1 { cur_d } else { f32::INFINITY };
            while let Some(Reverse(Dist(d, node))) = candidates.pop() {
                let found = if filtered {
                    results.len()
                } else {
                    frontier.len()
                };
                if d > bound && found >= k {
                    break;
                }
                let links = self.links(node);
                for &nb in links.iter().take(2) {
                    prefetch(self.row(nb.to_bits()));
                    prefetch(self.vector(nb.to_bits()));
                }
                for (i, &nb) in links.iter().enumerate() {
                    let nb = nb.to_bits();
                    if let Some(&ahead) = links.get(i + 2) {
                        prefetch(self.row(ahead.to_bits()));
                        prefetch(self.vector(ahead.to_bits()));
                    }
                    if !visited.insert(nb) {
                        continue;
                    }
                    let dn = distance(query, self.vector(nb));
                    if frontier.len() < walk_ef || dn < bound {
                        candidates.push(Reverse(Dist(dn, nb)));
                        frontier.push(Dist(dn, nb));
                        if frontier.len() > walk_ef {
                            frontier.pop();
                        }
                        if frontier.len() >= walk_ef
                            && let Some(worst) = frontier.peek()
                        {
                            bound = worst.0;
                        }
                    }
                    if filtered
                        && allowed(nb)
                        && (results.len() < ef || results.peek().is_some_and(|w| dn < w.0))
                    {
                        results.push(Dist(dn, nb));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
            let out = if filtered { results } else { frontier };
            for Dist(d, node) in out {
                top.push(1.0 - d, self.labels[node as usize]);
            }
        });
    }

    /// Exact scan of every node whose label passes.
    pub(crate) fn scan(&self, query: &[f32], pass: &dyn Fn(u32) -> bool, top: &mut TopK) {
        for (v, &label) in self.vectors().zip(&self.labels) {
            if pass(label) {
                top.push(crate::distance::dot(query, v), label);
            }
        }
    }

    /// Exact scan of the listed labels only (those in this graph that pass).
    pub(crate) fn scan_labels(
        &self,
        query: &[f32],
        labels: impl Iterator<Item = u32>,
        pass: &dyn Fn(u32) -> bool,
        top: &mut TopK,
    ) {
        for label in labels {
            if let Some(&node) = self.node_of.get(label as usize)
                && node != u32::MAX
                && pass(label)
            {
                top.push(crate::distance::dot(query, self.vector(node)), label);
            }
        }
    }

    /// Estimates the share of nodes whose label passes, from up to 512 evenly spaced nodes.
    pub(crate) fn estimate_pass_ratio(&self, pass: &dyn Fn(u32) -> bool) -> f32 {
        let n = self.len();
        if n == 0 {
            return 1.0;
        }
        let samples = n.min(512);
        let step = n as f64 / samples as f64;
        let passed = (0..samples)
            .filter(|&i| pass(self.labels[(i as f64 * step) as usize]))
            .count();
        passed as f32 / samples as f32
    }

    /// Mean number of layer-0 links per node.
    pub(crate) fn mean_degree(&self) -> f32 {
        if self.labels.is_empty() {
            return 0.0;
        }
        let total: usize = (0..self.labels.len() as Node)
            .map(|n| self.links(n).len())
            .sum();
        total as f32 / self.labels.len() as f32
    }

    /// Bytes held by the graph's arrays.
    pub(crate) fn heap_bytes(&self) -> usize {
        let upper: usize = self
            .upper
            .iter()
            .map(|m| {
                m.len() * (std::mem::size_of::<(Node, Box<[Node]>)>() + 8)
                    + m.values().map(|v| v.len() * 4).sum::<usize>()
            })
            .sum();
        self.labels.len() * 4 + self.data.len() * 4 + self.node_of.len() * 4 + upper
    }
}

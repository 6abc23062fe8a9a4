//! The HNSW graph: built on several threads ([`build`]), searched, and grown one node at
//! a time by a fold ([`insert`]).
//!
//! Layout: one row per node in a single array, `[count, m0 link slots, vector]` (links
//! stored as `f32` bit patterns; with int8 storage the vector's place holds its scale and
//! packed codes, and the exact vectors live beside the rows), so a node's links sit right
//! before what the walk scores: the walk
//! reads a node's vector when it scores it, and when it later expands that node its
//! links are already in cache (hnswlib's layout). The sparse upper layers live in hash
//! maps (a search touches them a few dozen times).
//! A search reuses a per-thread visited array stamped with an epoch, so it allocates
//! nothing per visited node, and prefetches neighbour vectors before scoring them.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::distance::{distance, dot, prefetch, prefetch_all};
use crate::index::TopK;
use crate::params::VectorStorage;
use crate::quant::{QueryCodes, code_distance, quantize};

mod build;
mod floats;
mod insert;
mod partition;

pub use floats::SpillTo;
pub(crate) use floats::{Floats, Gather};
pub(crate) use partition::SubGraph;

/// Most layers a graph may have.
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

/// Greedy descent from `(cur_d, cur)` through `layers` (top first): on each, moves to a
/// nearer neighbour while there is one. What an insertion does above its own level;
/// `neighbours` writes a node's links on a layer into its buffer, `dist` scores a node.
pub(crate) fn descend(
    (mut cur_d, mut cur): (f32, Node),
    layers: impl Iterator<Item = usize>,
    mut neighbours: impl FnMut(usize, Node, &mut Vec<Node>),
    dist: impl Fn(Node) -> f32,
) -> (f32, Node) {
    let mut links = Vec::new();
    for layer in layers {
        loop {
            let mut changed = false;
            neighbours(layer, cur, &mut links);
            for &nb in &links {
                let d = dist(nb);
                if d < cur_d {
                    (cur_d, cur) = (d, nb);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }
    (cur_d, cur)
}

/// Best-first search of one layer over `nodes` nodes from `entry`, keeping the `ef`
/// nearest, nearest first: what an insertion searches (a fold's and a build's).
/// `neighbours` writes a node's links on the layer into its buffer; `vector` gives a
/// node's exact vector.
pub(crate) fn search_layer_with<'v>(
    nodes: usize,
    query: &[f32],
    entry: &[(f32, Node)],
    ef: usize,
    mut neighbours: impl FnMut(Node, &mut Vec<Node>),
    vector: impl Fn(Node) -> &'v [f32],
) -> Vec<(f32, Node)> {
    VISITED.with(|visited| {
        let mut visited = visited.borrow_mut();
        visited.reset(nodes);
        let mut links = Vec::new();
        let mut candidates: BinaryHeap<Reverse<Dist>> = BinaryHeap::with_capacity(ef * 2);
        let mut results: BinaryHeap<Dist> = BinaryHeap::with_capacity(ef + 1);
        for &(d, e) in entry {
            if visited.insert(e) {
                candidates.push(Reverse(Dist(d, e)));
                results.push(Dist(d, e));
                if results.len() > ef {
                    results.pop();
                }
            }
        }
        while let Some(Reverse(Dist(d, node))) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| d > w.0) {
                break;
            }
            neighbours(node, &mut links);
            for &nb in links.iter().take(2) {
                prefetch(vector(nb));
            }
            for (i, &nb) in links.iter().enumerate() {
                if let Some(&ahead) = links.get(i + 2) {
                    prefetch(vector(ahead));
                }
                if !visited.insert(nb) {
                    continue;
                }
                let dn = distance(query, vector(nb));
                if results.len() < ef || results.peek().is_some_and(|w| dn < w.0) {
                    candidates.push(Reverse(Dist(dn, nb)));
                    results.push(Dist(dn, nb));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        results
            .into_sorted_vec()
            .into_iter()
            .map(|Dist(d, n)| (d, n))
            .collect()
    })
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

/// What a walk follows: the graph's own links, or a sub-graph's over the graph's nodes.
pub(crate) trait Adjacency {
    /// True when a node's links sit at the start of its row in the graph, so fetching
    /// the row ahead also fetches them.
    const OWN_ROWS: bool;
    /// Where a walk starts.
    fn entry(&self) -> Node;
    /// The upper layers, bottom first.
    fn upper(&self) -> &[HashMap<Node, Box<[Node]>>];
    /// The layer-0 links of `node`.
    fn links(&self, node: Node) -> &[u32];
}

/// The graph's own links.
struct Own<'g>(&'g Graph);

impl Adjacency for Own<'_> {
    const OWN_ROWS: bool = true;

    #[inline]
    fn entry(&self) -> Node {
        self.0.entry
    }

    #[inline]
    fn upper(&self) -> &[HashMap<Node, Box<[Node]>>] {
        &self.0.upper
    }

    #[inline]
    fn links(&self, node: Node) -> &[u32] {
        as_bits(self.0.links(node))
    }
}

/// Link slots stored as `f32` bit patterns, read as the `u32` nodes they hold.
#[inline]
fn as_bits(links: &[f32]) -> &[u32] {
    // SAFETY: `f32` and `u32` have the same size and alignment, and every bit pattern
    // is a valid `u32`; the slice covers the same memory for the same lifetime.
    unsafe { std::slice::from_raw_parts(links.as_ptr().cast::<u32>(), links.len()) }
}

impl PartialEq for Graph {
    /// Rows compare by their bits: packed codes are no floats (some are NaN patterns).
    fn eq(&self, other: &Self) -> bool {
        self.dim == other.dim
            && self.labels == other.labels
            && self.m0 == other.m0
            && self.storage == other.storage
            && self.data.len() == other.data.len()
            && self
                .data
                .iter()
                .zip(&other.data)
                .all(|(a, b)| a.to_bits() == b.to_bits())
            && self.floats == other.floats
            && self.upper == other.upper
            && self.entry == other.entry
            && self.node_of == other.node_of
    }
}

/// Words of a row after its links: the vector, or its scale and packed codes.
fn payload(dim: usize, storage: VectorStorage) -> usize {
    match storage {
        VectorStorage::F32 => dim,
        VectorStorage::Int8 => 1 + dim.div_ceil(4),
    }
}

/// Appends the payload of `vector` to a row being written.
fn push_payload(data: &mut Vec<f32>, vector: &[f32], storage: VectorStorage) {
    match storage {
        VectorStorage::F32 => data.extend_from_slice(vector),
        VectorStorage::Int8 => {
            let mut codes = vec![0i8; vector.len().div_ceil(4) * 4];
            let scale = quantize(vector, &mut codes[..vector.len()]);
            data.push(scale);
            data.extend(codes.chunks_exact(4).map(|c| {
                f32::from_bits(u32::from_ne_bytes([
                    c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8,
                ]))
            }));
        }
    }
}

/// The nodes linking to each node on layer 0, in one flat array (a list per node
/// would cost an allocation and its slack for each of millions of nodes).
struct Incoming {
    /// `from[at[node]..at[node + 1]]` link to `node`.
    at: Vec<usize>,
    from: Vec<Node>,
}

impl Incoming {
    fn gather(graph: &Graph) -> Self {
        let n = graph.len();
        let mut at = vec![0usize; n + 1];
        for node in 0..n as Node {
            for &nb in graph.links(node) {
                at[nb.to_bits() as usize + 1] += 1;
            }
        }
        for i in 0..n {
            at[i + 1] += at[i];
        }
        let mut next = at.clone();
        let mut from = vec![0; at[n]];
        for node in 0..n as Node {
            for &nb in graph.links(node) {
                let slot = &mut next[nb.to_bits() as usize];
                from[*slot] = node;
                *slot += 1;
            }
        }
        Self { at, from }
    }

    fn of(&self, node: Node) -> &[Node] {
        &self.from[self.at[node as usize]..self.at[node as usize + 1]]
    }
}

/// An HNSW graph; only a fold adds nodes to it (a rebuild makes a new one).
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    pub(crate) dim: usize,
    /// Node to the caller's id.
    pub(crate) labels: Vec<u32>,
    /// Layer-0 slots per node.
    pub(crate) m0: usize,
    /// How a node's row holds its vector.
    pub(crate) storage: VectorStorage,
    /// `labels.len()` rows of `1 + m0 + payload` 4-byte words: link count and links (as
    /// bits), then the vector (`dim` floats), or its scale and codes (one float, then
    /// `dim` codes packed four to a word).
    data: Vec<f32>,
    /// With codes in the rows: every node's exact vector, in node order, for rescoring
    /// and for inserting. Empty otherwise.
    floats: Floats,
    /// `upper[l - 1]`: neighbours of the nodes present on layer `l`.
    pub(crate) upper: Vec<HashMap<Node, Box<[Node]>>>,
    pub(crate) entry: Node,
    /// Caller's id to node, `u32::MAX` where absent.
    pub(crate) node_of: Vec<u32>,
}

impl Graph {
    /// An empty graph.
    pub(crate) fn empty(dim: usize, m: usize, storage: VectorStorage) -> Self {
        Self {
            dim,
            labels: Vec::new(),
            m0: 2 * m,
            storage,
            data: Vec::new(),
            floats: Floats::default(),
            upper: Vec::new(),
            entry: 0,
            node_of: Vec::new(),
        }
    }

    /// Re-selects every node's layer-0 links with the HNSW neighbour heuristic over its
    /// current links and the nodes that link to it.
    ///
    /// A build selects a new node's own `m` links with the heuristic and re-applies it
    /// when a neighbour's list overflows, as hnswlib does; lists then often hold fewer
    /// than `m0` links. Re-selecting over forward and reverse links, with free slots
    /// given to the nearest pruned candidates (hnswlib's keepPrunedConnections), keeps
    /// the heuristic's long-range links and fills the rest with density: recall at equal
    /// `ef` rises above hnswlib's. Then any node a walk from the entry cannot reach is
    /// linked from its nearest reachable node.
    ///
    /// A graph of int8 rows re-selects from its codes (the approximate distances a walk
    /// of it scores), not its exact vectors: those may be mapped from a file larger than
    /// the page cache beside the graph, which re-selecting every list would read at
    /// random several times over (linking an unreached node, rare, reads a few). Lists
    /// are re-selected a block of nodes at a time (every block reads only the lists as
    /// the build left them: a node's candidates are its own links and the reverse links
    /// gathered first), so at most one block's new lists is held beside the graph.
    pub(crate) fn refine_layer0(&mut self) {
        /// Nodes re-selected between two writes of their lists.
        const BLOCK: usize = 1 << 16;
        if self.len() < 2 {
            return;
        }
        self.reselect_layer0(BLOCK);
        // A link that made way for another may have been some node's only way in from
        // the entry: passes repeat (a few at most) while they find nodes to link.
        for _ in 0..8 {
            if !self.link_unreached() {
                break;
            }
        }
    }

    /// The re-selection of [`Graph::refine_layer0`], `block` nodes at a time.
    fn reselect_layer0(&mut self, block: usize) {
        use rayon::prelude::*;
        let n = self.len();
        let incoming = Incoming::gather(self);
        let m0 = self.m0;
        for start in (0..n).step_by(block) {
            let lists: Vec<Vec<Node>> = (start..(start + block).min(n))
                .into_par_iter()
                .map(|node| {
                    let node = node as Node;
                    let mut cand: Vec<(f32, Node)> = self
                        .links(node)
                        .iter()
                        .map(|x| x.to_bits())
                        .chain(incoming.of(node).iter().copied())
                        .filter(|&c| c != node)
                        .map(|c| (self.apart(node, c), c))
                        .collect();
                    cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    cand.dedup_by_key(|c| c.1);
                    // Free slots go to the nearest pruned candidates (hnswlib's
                    // keepPrunedConnections): diverse links first, then density.
                    insert::select_neighbours(&cand, m0, true, |a, b| self.apart(a, b))
                })
                .collect();
            for (i, list) in lists.into_iter().enumerate() {
                self.set_links((start + i) as Node, &list);
            }
        }
    }

    /// Layer-0 nodes no walk from the entry can reach, in node order.
    #[cfg(test)]
    pub(crate) fn unreached(&self) -> Vec<Node> {
        let mut reached = vec![false; self.len()];
        self.mark_reached(self.entry, &mut reached);
        (0..self.len() as Node)
            .filter(|&n| !reached[n as usize])
            .collect()
    }

    /// Marks every node reachable on layer 0 from `from` (not already marked).
    fn mark_reached(&self, from: Node, reached: &mut [bool]) {
        if std::mem::replace(&mut reached[from as usize], true) {
            return;
        }
        let mut stack = vec![from];
        while let Some(node) = stack.pop() {
            for &nb in self.links(node) {
                let nb = nb.to_bits();
                if !std::mem::replace(&mut reached[nb as usize], true) {
                    stack.push(nb);
                }
            }
        }
    }

    /// One pass linking every layer-0 node a walk from the entry cannot reach from its
    /// nearest reachable node. The heuristic can leave a node, or a small island of
    /// nodes linking to each other, without links from the rest when their neighbours
    /// prefer nodes nearer to them; a concurrent build more often. The link takes a free
    /// slot, or the place of a link whose target other reached nodes also link to (the
    /// last such); a node whose nearest reachable nodes have neither tries the next ones.
    /// A replaced link can still have been a node's only way in through a cycle, which
    /// the next pass finds. Rare: a breadth of the graph, then one search per unreached
    /// node. True when it linked a node.
    fn link_unreached(&mut self) -> bool {
        let n = self.len();
        if n < 2 {
            return false;
        }
        let mut reached = vec![false; n];
        self.mark_reached(self.entry, &mut reached);
        if !reached.contains(&false) {
            return false;
        }
        let mut linked = false;
        // Links from reached nodes only: another such link is another way in.
        let mut in_degree = vec![0u32; n];
        for node in (0..n as Node).filter(|&node| reached[node as usize]) {
            for &nb in self.links(node) {
                in_degree[nb.to_bits() as usize] += 1;
            }
        }
        for node in 0..n as Node {
            if reached[node as usize] {
                continue;
            }
            let query = self.vector(node).to_vec();
            let start = [(distance(&query, self.vector(self.entry)), self.entry)];
            let found = self.search_layer(&query, &start, 64, 0);
            for &(_, from) in found
                .iter()
                .filter(|&&(_, c)| c != node && reached[c as usize])
            {
                let mut list: Vec<Node> = self.links(from).iter().map(|x| x.to_bits()).collect();
                if list.len() >= self.m0 {
                    // The last link whose target keeps another way in.
                    let Some(at) = list.iter().rposition(|&t| in_degree[t as usize] > 1) else {
                        continue;
                    };
                    in_degree[list[at] as usize] -= 1;
                    list.remove(at);
                }
                list.push(node);
                in_degree[node as usize] += 1;
                self.set_links(from, &list);
                self.mark_reached(node, &mut reached);
                linked = true;
                break;
            }
        }
        linked
    }

    /// Interleaves layer-0 link rows (`1 + m0` each) and vectors (`dim` each) into the
    /// serving layout; with codes in the rows, `vectors` stays beside them as it is
    /// (mapped or in memory).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        dim: usize,
        labels: Vec<u32>,
        vectors: Floats,
        m0: usize,
        l0: &[u32],
        upper: Vec<HashMap<Node, Box<[Node]>>>,
        entry: Node,
        storage: VectorStorage,
    ) -> Self {
        let stride = 1 + m0 + payload(dim, storage);
        let mut data = Vec::with_capacity(labels.len() * stride);
        advise_huge_pages(&data);
        for (links, vector) in l0.chunks_exact(1 + m0).zip(vectors.rows(dim)) {
            data.extend(links.iter().map(|&x| f32::from_bits(x)));
            push_payload(&mut data, vector, storage);
        }
        let floats = match storage {
            VectorStorage::F32 => Floats::default(),
            VectorStorage::Int8 => vectors,
        };
        let mut graph = Self {
            dim,
            labels,
            m0,
            storage,
            data,
            floats,
            upper,
            entry,
            node_of: Vec::new(),
        };
        graph.index_labels();
        graph
    }

    /// The distance between two nodes as a build selects links by it: exact with floats
    /// in the rows, from the codes with int8 rows (see [`Graph::refine_layer0`]).
    #[inline]
    fn apart(&self, a: Node, b: Node) -> f32 {
        match self.storage {
            VectorStorage::F32 => distance(self.vector(a), self.vector(b)),
            VectorStorage::Int8 => code_distance(self.codes(a), self.codes(b)),
        }
    }

    fn stride(&self) -> usize {
        1 + self.m0 + payload(self.dim, self.storage)
    }

    /// Every node's vector, in node order.
    pub(crate) fn vectors(&self) -> Box<dyn Iterator<Item = &[f32]> + '_> {
        match self.storage {
            VectorStorage::F32 => {
                let skip = 1 + self.m0;
                Box::new(
                    self.data
                        .chunks_exact(self.stride())
                        .map(move |r| &r[skip..]),
                )
            }
            VectorStorage::Int8 => Box::new(self.floats.rows(self.dim)),
        }
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

    /// The exact vector of `node`.
    #[inline]
    pub(crate) fn vector(&self, node: Node) -> &[f32] {
        match self.storage {
            VectorStorage::F32 => {
                let start = node as usize * self.stride() + 1 + self.m0;
                &self.data[start..start + self.dim]
            }
            VectorStorage::Int8 => self.floats.slice(node as usize * self.dim, self.dim),
        }
    }

    /// The scale and codes of `node` (int8 storage only).
    #[inline]
    pub(super) fn codes(&self, node: Node) -> (f32, &[i8]) {
        let start = node as usize * self.stride() + 1 + self.m0;
        let words = &self.data[start + 1..start + payload(self.dim, VectorStorage::Int8)];
        // SAFETY: the words are plain 4-byte values whose bytes are the codes; an i8
        // has no invalid bit patterns and alignment 1, and the slice covers
        // `4 * words.len() >= dim` bytes of the same allocation.
        let codes = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<i8>(), self.dim) };
        (self.data[start], codes)
    }

    /// The words of `node`'s row a walk reads when it scores the node: its vector or
    /// its codes.
    #[inline]
    fn scored(&self, node: Node) -> &[f32] {
        let start = node as usize * self.stride() + 1 + self.m0;
        &self.data[start..start + payload(self.dim, self.storage)]
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
    ///
    /// With codes in the rows the walk scores nodes by their codes, and the `ef` nodes
    /// it ends with are rescored with their exact vectors before they reach `top`.
    pub(crate) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        walk_ef: usize,
        pass: Option<&dyn Fn(u32) -> bool>,
        top: &mut TopK,
    ) {
        self.search_in(None, query, k, ef, walk_ef, pass, top);
    }

    /// [`Graph::search`] over the links of `sub` (its nodes only) when given, else over
    /// the whole graph.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn search_in(
        &self,
        sub: Option<&SubGraph>,
        query: &[f32],
        k: usize,
        ef: usize,
        walk_ef: usize,
        pass: Option<&dyn Fn(u32) -> bool>,
        top: &mut TopK,
    ) {
        match sub {
            None => self.search_over(&Own(self), query, k, ef, walk_ef, pass, top),
            Some(s) => self.search_over(s, query, k, ef, walk_ef, pass, top),
        }
    }

    /// [`Graph::search_in`] over `adj`, monomorphised per adjacency so the graph's own
    /// walk pays nothing for sub-graphs.
    #[allow(clippy::too_many_arguments)]
    fn search_over<A: Adjacency>(
        &self,
        adj: &A,
        query: &[f32],
        k: usize,
        ef: usize,
        walk_ef: usize,
        pass: Option<&dyn Fn(u32) -> bool>,
        top: &mut TopK,
    ) {
        match self.storage {
            VectorStorage::F32 => self.walk(
                adj,
                |node| distance(query, self.vector(node)),
                k,
                ef,
                walk_ef,
                pass,
                |d, node| top.push(1.0 - d, self.labels[node as usize]),
            ),
            VectorStorage::Int8 => {
                let codes = QueryCodes::new(query);
                self.walk(
                    adj,
                    |node| {
                        let (scale, c) = self.codes(node);
                        codes.distance(scale, c)
                    },
                    k,
                    ef,
                    walk_ef,
                    pass,
                    |_, node| {
                        let d = distance(query, self.vector(node));
                        top.push(1.0 - d, self.labels[node as usize]);
                    },
                );
            }
        }
    }

    /// The walk behind [`Graph::search`], scoring nodes with `dist` and handing each of
    /// the nodes it ends with to `out`.
    #[allow(clippy::too_many_arguments)]
    fn walk<A: Adjacency>(
        &self,
        adj: &A,
        dist: impl Fn(Node) -> f32,
        k: usize,
        ef: usize,
        walk_ef: usize,
        pass: Option<&dyn Fn(u32) -> bool>,
        mut out: impl FnMut(f32, Node),
    ) {
        let n = self.len();
        if n == 0 || k == 0 {
            return;
        }
        let ef = ef.max(k);
        let walk_ef = walk_ef.max(ef);
        let mut cur = adj.entry();
        let mut cur_d = dist(cur);
        for layer in adj.upper().iter().rev() {
            loop {
                let mut changed = false;
                if let Some(neighbours) = layer.get(&cur) {
                    for &nb in neighbours.iter() {
                        let d = dist(nb);
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
                let links = adj.links(node);
                for &nb in links.iter().take(2) {
                    if A::OWN_ROWS {
                        prefetch(self.row(nb));
                    }
                    prefetch(self.scored(nb));
                }
                for (i, &nb) in links.iter().enumerate() {
                    if let Some(&ahead) = links.get(i + 2) {
                        if A::OWN_ROWS {
                            prefetch(self.row(ahead));
                        }
                        prefetch(self.scored(ahead));
                    }
                    if !visited.insert(nb) {
                        continue;
                    }
                    let dn = dist(nb);
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
            let found = if filtered { results } else { frontier };
            for Dist(d, node) in found {
                out(d, node);
            }
        });
    }

    /// Scan of every node whose label passes (see [`Graph::scan_nodes`]).
    pub(crate) fn scan(&self, query: &[f32], pass: &dyn Fn(u32) -> bool, top: &mut TopK) {
        let nodes: Vec<Node> = (0..self.len() as Node)
            .filter(|&node| pass(self.labels[node as usize]))
            .collect();
        self.scan_nodes(query, &nodes, top);
    }

    /// Scan of the listed labels only (those in this graph that pass; see
    /// [`Graph::scan_nodes`]).
    pub(crate) fn scan_labels(
        &self,
        query: &[f32],
        labels: impl Iterator<Item = u32>,
        pass: &dyn Fn(u32) -> bool,
        top: &mut TopK,
    ) {
        let nodes: Vec<Node> = labels
            .filter_map(|label| {
                let node = *self.node_of.get(label as usize)?;
                (node != u32::MAX && pass(label)).then_some(node)
            })
            .collect();
        self.scan_nodes(query, &nodes, top);
    }

    /// Scores `nodes` against `query` into `top`, fetching rows a few nodes ahead: exact
    /// for float rows. With codes in the rows, the codes pick the best `4k` (at least
    /// `k + 32`) and their exact vectors rank them, so a scan reads a quarter of the
    /// bytes and its results are exact unless the codes misplace a true neighbour
    /// below that many others.
    pub(crate) fn scan_nodes(&self, query: &[f32], nodes: &[Node], top: &mut TopK) {
        match self.storage {
            VectorStorage::F32 => {
                // A float row is 24 lines: its first two are fetched, and the hardware
                // prefetcher follows the rest.
                const AHEAD: usize = 4;
                for (i, &node) in nodes.iter().enumerate() {
                    if let Some(&ahead) = nodes.get(i + AHEAD) {
                        prefetch(self.scored(ahead));
                    }
                    top.push(dot(query, self.vector(node)), self.labels[node as usize]);
                }
            }
            VectorStorage::Int8 => {
                // Codes are 6 to 7 lines, in rows of random order: every line is fetched,
                // this many rows ahead.
                const AHEAD: usize = 8;
                let codes = QueryCodes::new(query);
                let mut near = TopK::new((4 * top.k()).max(top.k() + 32));
                for (i, &node) in nodes.iter().enumerate() {
                    if let Some(&ahead) = nodes.get(i + AHEAD) {
                        prefetch_all(self.scored(ahead));
                    }
                    let (scale, c) = self.codes(node);
                    near.push(1.0 - codes.distance(scale, c), node);
                }
                for hit in near.into_hits() {
                    top.push(
                        dot(query, self.vector(hit.id)),
                        self.labels[hit.id as usize],
                    );
                }
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

    /// Bytes of exact vectors mapped from the index file or a spill file (page cache,
    /// not heap).
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.floats.mapped_bytes()
    }

    /// This graph's exact vectors read from `mapped` (a map of a file this graph was
    /// saved to); `None` when the graph holds no int8 codes or `mapped` does not hold
    /// exactly its vectors (every value is compared).
    pub(crate) fn adopt_floats(&self, mapped: Floats) -> Option<Floats> {
        (self.storage == VectorStorage::Int8)
            .then(|| self.floats.adopt(mapped))
            .flatten()
    }

    /// Replaces the exact vectors with `floats` made by [`Graph::adopt_floats`] on this
    /// graph, unchanged since; false (and nothing changed) when they do not hold as many
    /// values.
    pub(crate) fn set_floats(&mut self, floats: Floats) -> bool {
        if floats.len() != self.floats.len() {
            return false;
        }
        self.floats = floats;
        true
    }

    /// Where the mapped vectors start in their file.
    #[cfg(test)]
    pub(crate) fn mapped_start(&self) -> Option<usize> {
        match &self.floats {
            Floats::Mapped { start, .. } => Some(*start),
            Floats::Owned(_) => None,
        }
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
        self.labels.len() * 4
            + self.data.len() * 4
            + self.floats.heap_bytes()
            + self.node_of.len() * 4
            + upper
    }
}

/// Checks shared by the graph's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;

    use super::{Graph, Node};
    use crate::distance::distance;
    use crate::index::TopK;

    /// What a graph must satisfy for its search and its file format: every link names a
    /// node, no node links to itself or twice to one node, lists stay within their
    /// caps, a node on an upper layer is on every layer below it, the entry is on the
    /// top layer, and labels map to nodes both ways.
    pub(crate) fn assert_well_formed(g: &Graph) {
        let n = g.len() as Node;
        for node in 0..n {
            let l0 = g.neighbours(0, node);
            assert!(l0.len() <= g.m0);
            assert!(
                l0.iter().all(|&x| x < n && x != node),
                "node {node}: {l0:?}"
            );
            assert_eq!(l0.iter().collect::<HashSet<_>>().len(), l0.len());
            assert_eq!(g.node_of[g.labels[node as usize] as usize], node);
        }
        for (i, layer) in g.upper.iter().enumerate() {
            for (&node, list) in layer {
                assert!(
                    node < n && list.len() <= g.m0 / 2,
                    "layer {}: {node}",
                    i + 1
                );
                assert!(list.iter().all(|&x| x < n && x != node));
                assert!(
                    list.iter().all(|x| layer.contains_key(x)),
                    "an upper-layer link leaves its layer"
                );
                if i > 0 {
                    assert!(g.upper[i - 1].contains_key(&node));
                }
            }
        }
        if let Some(top) = g.upper.last() {
            assert!(
                top.contains_key(&g.entry),
                "the entry is not on the top layer"
            );
        }
    }

    /// How many of `queries` (rows of the graph's dimension) the walk at `ef` answers
    /// with their brute-force nearest node first.
    pub(crate) fn found_first(g: &Graph, queries: &[f32], ef: usize) -> usize {
        queries
            .chunks_exact(g.dim)
            .filter(|q| {
                let mut top = TopK::new(1);
                g.search(q, 1, ef, ef, None, &mut top);
                top.into_hits()[0].id == g.labels[nearest(g, q) as usize]
            })
            .count()
    }

    /// The nearest node by brute force.
    fn nearest(g: &Graph, q: &[f32]) -> Node {
        (0..g.len() as Node)
            .min_by(|&a, &b| distance(q, g.vector(a)).total_cmp(&distance(q, g.vector(b))))
            .unwrap()
    }
}

//! Inserting one node into a sealed graph: how the live segment is folded in without
//! rebuilding the graph.
//!
//! HNSW insertion as hnswlib does it, in two steps so that searches keep running:
//!
//! 1. [`Graph::plan_insert`] reads the graph only (the caller holds a read lock that
//!    no writer can pass, parking_lot's upgradable read): it
//!    draws the node's level from its label, descends greedily through the layers above
//!    it, and on each of its layers searches `ef_construction` candidates, keeps the
//!    neighbour heuristic's choice as the node's links, and works out each chosen
//!    neighbour's list with the new node added (re-selected by the heuristic once it
//!    would overflow).
//! 2. [`Graph::apply_insert`] writes that plan (the caller holds the write lock for a
//!    few microseconds): it appends the node and replaces the changed lists.
//!
//! A plan is only valid for the graph it was computed on: one writer (the index's fold)
//! plans and applies in turn, and a plan for another graph size is refused.
//!
//! Layer-0 lists are selected as [`Graph::refine_layer0`] selects them (the heuristic,
//! then free slots to the nearest pruned candidates), so a folded node's links have the
//! shape of a built one's; upper-layer lists keep the heuristic's choice only, up to `m`.
//! A fold scores exact vectors even in an int8 graph (where the refinement scores codes):
//! it reads a few hundred of them per node, not every list's.

use std::collections::HashMap;

use super::{Graph, MAX_LAYERS, Node, descend, search_layer_with};
use crate::distance::distance;
use crate::params::VectorStorage;

/// Where one new node goes, computed against a graph of `nodes` nodes.
#[derive(Debug, Clone)]
pub(crate) struct InsertPlan {
    nodes: usize,
    /// `links[l]`: the new node's links on layer `l`, for `l` in `0..=level`.
    links: Vec<Vec<Node>>,
    /// `(layer, node, list)`: a neighbour's list that changes, in full.
    updates: Vec<(usize, Node, Vec<Node>)>,
}

/// The level of the node labelled `label`: `floor(-ln(u) / ln(m))` for a `u` in `(0, 1]`
/// drawn from the label, so a fold is deterministic (hnswlib draws the same law).
pub(crate) fn level_of(label: u32, m: usize) -> usize {
    let mut h = u64::from(label) ^ 0x5EED_F01D_0000_0000;
    // splitmix64's finaliser.
    h = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let ml = 1.0 / (m.max(2) as f64).ln();
    ((-u.ln() * ml) as usize).min(MAX_LAYERS - 1)
}

/// The HNSW neighbour heuristic over `candidates` (nearest first, distances to the
/// base): a candidate is kept when it is nearer the base than to every one kept so far
/// (`apart` gives the distance between two nodes), up to `cap`; with `fill`, free slots
/// then go to the nearest pruned candidates.
pub(super) fn select_neighbours(
    candidates: &[(f32, Node)],
    cap: usize,
    fill: bool,
    apart: impl Fn(Node, Node) -> f32,
) -> Vec<Node> {
    let mut keep: Vec<Node> = Vec::with_capacity(cap);
    let mut pruned: Vec<Node> = Vec::new();
    for &(d, c) in candidates {
        if keep.len() >= cap {
            break;
        }
        if keep.iter().all(|&s| apart(c, s) > d) {
            keep.push(c);
        } else if fill {
            pruned.push(c);
        }
    }
    if fill {
        let free = cap - keep.len();
        keep.extend(pruned.into_iter().take(free));
    }
    keep
}

/// The exact distance between two nodes whose vectors `vector_of` gives.
pub(super) fn apart_by<'v>(vector_of: impl Fn(Node) -> &'v [f32]) -> impl Fn(Node, Node) -> f32 {
    move |a, b| distance(vector_of(a), vector_of(b))
}

impl Graph {
    /// The neighbours of `node` on `layer` (empty where it has none).
    pub(super) fn neighbours(&self, layer: usize, node: Node) -> Vec<Node> {
        if layer == 0 {
            self.links(node).iter().map(|x| x.to_bits()).collect()
        } else {
            self.upper
                .get(layer - 1)
                .and_then(|m| m.get(&node))
                .map_or_else(Vec::new, |l| l.to_vec())
        }
    }

    /// Best-first search of one layer from `entry`, keeping the `ef` nearest: nearest
    /// first.
    pub(super) fn search_layer(
        &self,
        query: &[f32],
        entry: &[(f32, Node)],
        ef: usize,
        layer: usize,
    ) -> Vec<(f32, Node)> {
        let neighbours = |node: Node, out: &mut Vec<Node>| {
            out.clear();
            if layer == 0 {
                out.extend(self.links(node).iter().map(|x| x.to_bits()));
            } else if let Some(list) = self.upper.get(layer - 1).and_then(|m| m.get(&node)) {
                out.extend_from_slice(list);
            }
        };
        search_layer_with(self.len(), query, entry, ef, neighbours, |n| self.vector(n))
    }

    /// Plans the insertion of `vector` (unit length, `dim` long) labelled `label`; see
    /// the module docs. Reads the graph only. Upper-layer lists hold up to `m0 / 2`
    /// links, the `m` the graph was built with (not the configuration's, which may have
    /// changed since a saved graph was built).
    pub(crate) fn plan_insert(
        &self,
        label: u32,
        vector: &[f32],
        ef_construction: usize,
    ) -> InsertPlan {
        let m = (self.m0 / 2).max(2);
        let level = level_of(label, m);
        let nodes = self.len();
        let mut plan = InsertPlan {
            nodes,
            links: vec![Vec::new(); level + 1],
            updates: Vec::new(),
        };
        if nodes == 0 {
            return plan;
        }
        let new = nodes as Node;
        let vector_of = |x: Node| -> &[f32] { if x == new { vector } else { self.vector(x) } };
        let top = self.upper.len();
        let dist = |x: Node| distance(vector, self.vector(x));
        let start = descend(
            (dist(self.entry), self.entry),
            (level + 1..=top).rev(),
            |layer, node, out| {
                out.clear();
                out.extend(self.neighbours(layer, node));
            },
            dist,
        );
        let mut entry = vec![start];
        for layer in (0..=level.min(top)).rev() {
            let found = self.search_layer(vector, &entry, ef_construction.max(1), layer);
            let (cap, fill) = if layer == 0 {
                (self.m0, true)
            } else {
                (m, false)
            };
            let chosen = select_neighbours(&found, cap, fill, apart_by(vector_of));
            for &nb in &chosen {
                let mut list = self.neighbours(layer, nb);
                if list.len() < cap {
                    list.push(new);
                } else {
                    let base = self.vector(nb);
                    let mut cand: Vec<(f32, Node)> = list
                        .iter()
                        .chain(std::iter::once(&new))
                        .filter(|&&c| c != nb)
                        .map(|&c| (distance(base, vector_of(c)), c))
                        .collect();
                    cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    cand.dedup_by_key(|c| c.1);
                    let reselected = select_neighbours(&cand, cap, fill, apart_by(vector_of));
                    if reselected == list {
                        continue;
                    }
                    list = reselected;
                }
                plan.updates.push((layer, nb, list));
            }
            plan.links[layer] = chosen;
            entry = found;
        }
        plan
    }

    /// Rows a fold of `extra` nodes would need beyond the data array's capacity: when
    /// some, a copy of the graph with room for `extra` more nodes (and an eighth more,
    /// so a run of folds copies the graph only every so often); `None` when it fits.
    /// Made under a read lock and swapped in, so the write lock never waits on a copy.
    pub(crate) fn with_room(&self, extra: usize) -> Option<Graph> {
        let stride = self.stride();
        let floats_fit =
            self.storage == VectorStorage::F32 || self.floats.has_room(extra * self.dim);
        if floats_fit && self.data.capacity() >= self.data.len() + extra * stride {
            return None;
        }
        let rows = self.len() + extra.max(self.len() / 8);
        let mut data = Vec::with_capacity(rows * stride);
        super::advise_huge_pages(&data);
        data.extend_from_slice(&self.data);
        let mut labels = Vec::with_capacity(rows);
        labels.extend_from_slice(&self.labels);
        let floats = match self.storage {
            VectorStorage::F32 => super::Floats::default(),
            VectorStorage::Int8 => self.floats.with_room((rows - self.len()) * self.dim),
        };
        Some(Graph {
            dim: self.dim,
            labels,
            m0: self.m0,
            storage: self.storage,
            data,
            floats,
            upper: self.upper.clone(),
            entry: self.entry,
            node_of: self.node_of.clone(),
        })
    }

    /// Writes a plan made by [`Graph::plan_insert`] on this graph: appends the node and
    /// replaces the changed lists. False (and nothing changed) when the plan was made
    /// for another graph size or `vector` has the wrong length.
    pub(crate) fn apply_insert(&mut self, label: u32, vector: &[f32], plan: InsertPlan) -> bool {
        if plan.nodes != self.len() || vector.len() != self.dim || self.has_label(label) {
            return false;
        }
        let node = self.len() as Node;
        let level = plan.links.len() - 1;
        let mut links = plan.links.into_iter();
        let layer0 = links.next().unwrap_or_default();
        self.data
            .push(f32::from_bits(layer0.len().min(self.m0) as u32));
        self.data.extend(
            layer0
                .iter()
                .map(|&n| f32::from_bits(n))
                .chain(std::iter::repeat(f32::from_bits(0)))
                .take(self.m0),
        );
        super::push_payload(&mut self.data, vector, self.storage);
        if self.storage == VectorStorage::Int8 {
            self.floats.extend_from_slice(vector);
        }
        self.labels.push(label);
        let at = label as usize;
        if self.node_of.len() <= at {
            self.node_of.resize(at + 1, u32::MAX);
        }
        self.node_of[at] = node;
        let top = self.upper.len();
        for (layer, list) in (1..=level).zip(links) {
            while self.upper.len() < layer {
                self.upper.push(HashMap::new());
            }
            self.upper[layer - 1].insert(node, list.into_boxed_slice());
        }
        for (layer, nb, list) in plan.updates {
            if layer == 0 {
                self.set_links(nb, &list);
            } else if let Some(map) = self.upper.get_mut(layer - 1) {
                map.insert(nb, list.into_boxed_slice());
            }
        }
        if node == 0 || level > top {
            self.entry = node;
        }
        true
    }

    /// Replaces a node's layer-0 list (at most `m0` links).
    pub(super) fn set_links(&mut self, node: Node, list: &[Node]) {
        let m0 = self.m0;
        let row = node as usize * self.stride();
        self.data[row] = f32::from_bits(list.len().min(m0) as u32);
        for (slot, &id) in self.data[row + 1..row + 1 + m0]
            .iter_mut()
            .zip(list.iter().chain(std::iter::repeat(&0)))
        {
            *slot = f32::from_bits(id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use steerfeed_world::vectors::dataset;

    use super::*;
    use crate::graph::testing::{assert_well_formed, found_first};
    use crate::index::TopK;
    use crate::params::HnswBuildParams;

    const DIM: usize = 16;
    const M: usize = 6;
    const EF: usize = 40;

    fn built(vectors: &[f32], n: usize) -> Graph {
        built_as(vectors, n, VectorStorage::default())
    }

    fn built_as(vectors: &[f32], n: usize, storage: VectorStorage) -> Graph {
        let params = HnswBuildParams {
            m: M,
            ef_construction: EF,
            threads: 1,
            vectors: storage,
            ..HnswBuildParams::default()
        };
        Graph::build(
            DIM,
            (0..n as u32).collect(),
            vectors[..n * DIM].to_vec(),
            &params,
        )
    }

    /// Plans and applies the rows `from..to` of `vectors`, labelled by row.
    fn fold(graph: &mut Graph, vectors: &[f32], from: usize, to: usize) {
        for row in from..to {
            let v = &vectors[row * DIM..(row + 1) * DIM];
            let plan = graph.plan_insert(row as u32, v, EF);
            assert!(graph.apply_insert(row as u32, v, plan), "row {row}");
        }
    }

    #[test]
    fn folded_nodes_keep_the_graph_well_formed_and_are_found() {
        for storage in [VectorStorage::Int8, VectorStorage::F32] {
            let (vectors, queries) = dataset(900, 60, DIM, 11);
            let mut g = built_as(&vectors, 300, storage);
            fold(&mut g, &vectors, 300, 900);
            assert_eq!(g.len(), 900);
            assert_well_formed(&g);
            // Every folded vector is its own nearest neighbour through the walk.
            for row in 300..900u32 {
                let mut top = TopK::new(1);
                let v = &vectors[row as usize * DIM..][..DIM];
                g.search(v, 1, 32, 32, None, &mut top);
                assert_eq!(top.into_hits()[0].id, row);
            }
            // And queries find their brute-force nearest neighbour.
            let found = found_first(&g, &queries, 32);
            assert!(
                found >= 57,
                "{storage:?}: {found} of 60 queries found their nearest"
            );
        }
    }

    #[test]
    fn a_fold_into_an_empty_graph_builds_one_and_is_deterministic() {
        let (vectors, _) = dataset(400, 1, DIM, 12);
        let mut a = Graph::empty(DIM, M, crate::params::VectorStorage::F32);
        fold(&mut a, &vectors, 0, 400);
        assert_well_formed(&a);
        let mut b = Graph::empty(DIM, M, crate::params::VectorStorage::F32);
        fold(&mut b, &vectors, 0, 400);
        assert_eq!(a, b);
        assert!(
            !a.upper.is_empty(),
            "400 levels drawn with m = 6 reach layer 1"
        );
    }

    #[test]
    fn a_plan_for_another_graph_or_a_present_label_changes_nothing() {
        let (vectors, _) = dataset(300, 1, DIM, 13);
        let mut g = built(&vectors, 200);
        let v = &vectors[200 * DIM..201 * DIM];
        let stale = g.plan_insert(200, v, EF);
        fold(&mut g, &vectors, 201, 202);
        let before = g.clone();
        assert!(!g.apply_insert(200, v, stale));
        let plan = g.plan_insert(5, v, EF);
        assert!(!g.apply_insert(5, v, plan), "label 5 is already a node");
        let plan = g.plan_insert(200, v, EF);
        assert!(!g.apply_insert(200, &v[..DIM - 1], plan));
        assert_eq!(g, before);
    }

    #[test]
    fn levels_follow_the_hnsw_law() {
        // P(level >= 1) = 1/m: about 1,667 of 10,000 labels for m = 6.
        let above: usize = (0..10_000u32).filter(|&l| level_of(l, M) >= 1).count();
        assert!((1_450..1_900).contains(&above), "{above}");
        assert!((0..10_000u32).all(|l| level_of(l, M) < MAX_LAYERS));
    }
}

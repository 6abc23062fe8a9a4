//! Sub-graphs: HNSW links among the nodes of a graph that carry one tag (an `only`
//! topic), so a search restricted to them walks a small graph of their own instead of
//! the whole graph (where most neighbours fail the filter) or a scan of all of them.
//!
//! A sub-graph holds links only: its nodes are the parent graph's nodes, and a walk
//! scores them with the parent's rows (floats or int8 codes, then exact rescoring), so a
//! node costs `4 * (1 + m0)` bytes in each sub-graph it belongs to (with half the
//! parent's links), not a copy of its vector.

use std::collections::HashMap;

use super::{Graph, Node};
use crate::params::{HnswBuildParams, VectorStorage};

/// HNSW links among some nodes of a parent [`Graph`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubGraph {
    /// The parent's nodes it links, ascending and distinct.
    pub(crate) nodes: Vec<Node>,
    /// Layer-0 slots per node.
    pub(crate) m0: usize,
    /// One row per node of `nodes`, in that order: a link count then `m0` slots, each a
    /// parent node that is also in `nodes`.
    pub(crate) l0: Vec<u32>,
    /// `upper[l - 1]`: the links of the nodes on layer `l`, keyed by parent node.
    pub(crate) upper: Vec<HashMap<Node, Box<[Node]>>>,
    /// Where a walk starts: a parent node on the top layer.
    pub(crate) entry: Node,
}

impl super::Adjacency for SubGraph {
    const OWN_ROWS: bool = false;

    #[inline]
    fn entry(&self) -> Node {
        self.entry
    }

    #[inline]
    fn upper(&self) -> &[HashMap<Node, Box<[Node]>>] {
        &self.upper
    }

    #[inline]
    fn links(&self, node: Node) -> &[u32] {
        SubGraph::links(self, node)
    }
}

impl SubGraph {
    /// The layer-0 links of `node` (empty for a node it does not hold).
    #[inline]
    pub(crate) fn links(&self, node: Node) -> &[u32] {
        match self.nodes.binary_search(&node) {
            Ok(row) => {
                let at = row * (1 + self.m0);
                let count = (self.l0[at] as usize).min(self.m0);
                &self.l0[at + 1..at + 1 + count]
            }
            Err(_) => &[],
        }
    }

    /// True when `node` is one of its nodes.
    pub(crate) fn holds(&self, node: Node) -> bool {
        self.nodes.binary_search(&node).is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Bytes of its arrays.
    pub(crate) fn heap_bytes(&self) -> usize {
        let upper: usize = self
            .upper
            .iter()
            .map(|m| m.len() * 24 + m.values().map(|v| v.len() * 4).sum::<usize>())
            .sum();
        self.nodes.len() * 4 + self.l0.len() * 4 + upper
    }

    /// Checks a sub-graph read from a file against a parent of `parent_len` nodes:
    /// nodes ascending and in range, rows sized, every link to one of its own nodes,
    /// layers nested, the entry on the top layer.
    pub(crate) fn check(&self, parent_len: usize) -> Result<(), String> {
        let n = self.nodes.len();
        if n == 0 || self.m0 == 0 || self.m0 > 1024 {
            return Err("an empty sub-graph or one out of range".into());
        }
        if self.nodes.windows(2).any(|w| w[0] >= w[1])
            || self.nodes.last().is_some_and(|&x| x as usize >= parent_len)
        {
            return Err("sub-graph nodes out of order or range".into());
        }
        if self.l0.len() != n * (1 + self.m0) {
            return Err("sub-graph rows of the wrong size".into());
        }
        for row in self.l0.chunks_exact(1 + self.m0) {
            let c = row[0] as usize;
            if c > self.m0 || row[1..=c].iter().any(|&x| !self.holds(x)) {
                return Err("sub-graph links out of range".into());
            }
        }
        for (i, layer) in self.upper.iter().enumerate() {
            for (&node, links) in layer {
                let below = i == 0 || self.upper[i - 1].contains_key(&node);
                if !self.holds(node)
                    || !below
                    || links.len() > self.m0
                    || links.iter().any(|x| !layer.contains_key(x))
                {
                    return Err("sub-graph upper layers out of range".into());
                }
            }
        }
        let on_top = self
            .upper
            .last()
            .map_or(self.holds(self.entry), |top| top.contains_key(&self.entry));
        if !on_top {
            return Err("the sub-graph's entry is not on its top layer".into());
        }
        Ok(())
    }
}

impl Graph {
    /// Builds a sub-graph over `nodes` (this graph's nodes, ascending and distinct, at
    /// least one) with the parallel builder: a graph of their vectors, whose links are
    /// then renamed to this graph's nodes.
    ///
    /// A graph of int8 rows builds from its codes, decoded: they sit in its rows, in
    /// memory, while its exact vectors may be mapped from a file that no longer fits in
    /// the page cache (a partition takes every few dozenth row, so copying its exact
    /// vectors would read nearly every page of that file once per partition). The codes
    /// are what a walk of the sub-graph scores anyway, before it rescores exactly.
    pub(crate) fn build_sub(&self, nodes: Vec<Node>, params: &HnswBuildParams) -> SubGraph {
        debug_assert!(nodes.windows(2).all(|w| w[0] < w[1]));
        let mut vectors = Vec::with_capacity(nodes.len() * self.dim);
        for &node in &nodes {
            match self.storage {
                VectorStorage::F32 => vectors.extend_from_slice(self.vector(node)),
                VectorStorage::Int8 => {
                    let (scale, codes) = self.codes(node);
                    vectors.extend(codes.iter().map(|&c| scale * f32::from(c)));
                }
            }
        }
        // Labels are the parent's nodes, so a node's level here (drawn from its label)
        // is not its level in the parent: the sub-graph's upper layers are its own.
        // Half the graph's links (at least 8, or the graph's own when fewer): a partition
        // is a few percent of the graph, and at 200k vectors in 39 partitions of 5k
        // half the links still found 0.99 of the ten nearest at ef 16, faster than a
        // full set and built in three quarters of the time.
        let params = HnswBuildParams {
            vectors: VectorStorage::F32,
            m: (params.m / 2).max(params.m.min(8)),
            ..*params
        };
        let own = Graph::build(self.dim, nodes.clone(), vectors, &params);
        let rename = |x: Node| nodes[x as usize];
        let mut l0 = Vec::with_capacity(nodes.len() * (1 + own.m0));
        for row in own.link_rows() {
            let mut row = row
                .enumerate()
                .map(|(i, x)| if i == 0 { x } else { rename(x) });
            let count = row.next().unwrap_or(0);
            l0.push(count);
            l0.extend(row.take(count as usize));
            l0.resize(l0.len() + own.m0 - count as usize, 0);
        }
        let upper = own
            .upper
            .iter()
            .map(|layer| {
                layer
                    .iter()
                    .map(|(&node, links)| {
                        (rename(node), links.iter().map(|&x| rename(x)).collect())
                    })
                    .collect()
            })
            .collect();
        SubGraph {
            m0: own.m0,
            l0,
            upper,
            entry: rename(own.entry),
            nodes,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use steerfeed_world::vectors::dataset;

    use super::*;
    use crate::distance::dot;
    use crate::index::TopK;

    fn params() -> HnswBuildParams {
        HnswBuildParams {
            m: 8,
            ef_construction: 64,
            threads: 2,
            ..HnswBuildParams::default()
        }
    }

    /// Every third node of a 3,000-node graph, in either storage: the sub-graph is well
    /// formed and its walk finds the nearest member of the brute-force answer for
    /// nearly every query, returning members only.
    #[test]
    fn a_sub_graph_walk_finds_the_nearest_members() {
        let dim = 24;
        let (base, queries) = dataset(3_000, 100, dim, 11);
        for storage in [VectorStorage::F32, VectorStorage::Int8] {
            let p = HnswBuildParams {
                vectors: storage,
                ..params()
            };
            let labels: Vec<u32> = (0..3_000).map(|i| i * 7).collect();
            let g = Graph::build(dim, labels, base.clone(), &p);
            let members: Vec<Node> = (0..g.len() as Node).filter(|n| n % 3 == 0).collect();
            let sub = g.build_sub(members.clone(), &p);
            sub.check(g.len()).unwrap();
            assert_eq!(sub.nodes, members);
            let mut found = 0;
            for q in queries.chunks_exact(dim) {
                let mut top = TopK::new(10);
                g.search_in(Some(&sub), q, 10, 64, 64, None, &mut top);
                let hits = top.into_hits();
                assert_eq!(hits.len(), 10);
                for h in &hits {
                    let node = g.node_of[h.id as usize];
                    assert!(sub.holds(node), "a non-member was returned");
                    assert!((h.similarity - dot(q, g.vector(node))).abs() < 1e-4);
                }
                let best = members
                    .iter()
                    .copied()
                    .max_by(|&a, &b| dot(q, g.vector(a)).total_cmp(&dot(q, g.vector(b))))
                    .unwrap();
                found += usize::from(hits[0].id == g.labels[best as usize]);
            }
            assert!(found >= 97, "{storage:?}: {found} of 100");
        }
    }

    #[test]
    fn damaged_sub_graphs_are_refused() {
        let dim = 8;
        let (base, _) = dataset(300, 1, dim, 3);
        let g = Graph::build(dim, (0..300).collect(), base, &params());
        let good = g.build_sub((0..300).step_by(2).collect(), &params());
        good.check(g.len()).unwrap();
        let mut outside = good.clone();
        outside.l0[1] = 1; // an odd node is not a member
        outside.l0[0] = outside.l0[0].max(1);
        assert!(outside.check(g.len()).is_err());
        let mut unsorted = good.clone();
        unsorted.nodes.swap(0, 1);
        assert!(unsorted.check(g.len()).is_err());
        assert!(good.check(100).is_err(), "nodes beyond the parent");
        let mut entry = good.clone();
        entry.entry = 1;
        assert!(entry.check(g.len()).is_err());
    }
}

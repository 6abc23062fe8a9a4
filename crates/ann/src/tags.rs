//! Tags: small integers a caller attaches to ids (a video's topics), and per tag a
//! partition of the sealed graph, so a search restricted to one tag (an `only` topic)
//! costs about what an unfiltered search of a graph that size does.
//!
//! A tag carried by at least `partition_min` graph nodes gets a [`SubGraph`] of its own
//! links over them, built with the graph. Nodes a fold adds later, and every node of a
//! tag too small to link, are the partition's `rest`, scanned exactly; once the rest
//! outgrows a quarter of the sub-graph (and `partition_min`), the compaction thread
//! rebuilds that one sub-graph over both. A rebuild of the whole graph rebuilds every
//! partition.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use crate::graph::{Graph, Node, SubGraph};
use crate::idset::IdSet;
use crate::params::HnswBuildParams;

/// Id to its tags (ids with none are absent).
pub(crate) type TagMap = HashMap<u32, Box<[u32]>, FxBuildHasher>;

/// The graph nodes carrying one tag.
#[derive(Debug, Clone, Default)]
pub(crate) struct Partition {
    /// Links among most of them.
    pub(crate) sub: Option<Arc<SubGraph>>,
    /// Those outside `sub`: folded since it was built, or all of them.
    pub(crate) rest: Vec<Node>,
}

impl Partition {
    /// Nodes in the partition.
    pub(crate) fn len(&self) -> usize {
        self.sub.as_ref().map_or(0, |s| s.len()) + self.rest.len()
    }

    /// True when the rest has outgrown the sub-graph: a quarter of it, and at least
    /// `min` nodes.
    fn stale(&self, min: usize) -> bool {
        let linked = self.sub.as_ref().map_or(0, |s| s.len());
        self.rest.len() >= min.max(1) && self.rest.len() * 4 >= linked
    }
}

/// Every id's tags and the graph's partitions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tags {
    /// Shared with saves in progress; copied on write while one holds it.
    pub(crate) of: Arc<TagMap>,
    pub(crate) parts: HashMap<u32, Partition, FxBuildHasher>,
}

impl Tags {
    /// True when `label` carries `tag`.
    pub(crate) fn has(&self, label: u32, tag: u32) -> bool {
        self.of.get(&label).is_some_and(|t| t.contains(&tag))
    }

    /// Records the tags of a new id (none: nothing).
    pub(crate) fn set(&mut self, label: u32, tags: &[u32]) {
        if tags.is_empty() {
            return;
        }
        let mut own: Vec<u32> = tags.to_vec();
        own.sort_unstable();
        own.dedup();
        Arc::make_mut(&mut self.of).insert(label, own.into_boxed_slice());
    }

    /// A fold put `label` into the graph as `node`: it joins its tags' rests.
    pub(crate) fn folded(&mut self, label: u32, node: Node) {
        if let Some(tags) = self.of.get(&label) {
            for &tag in tags.iter() {
                self.parts.entry(tag).or_default().rest.push(node);
            }
        }
    }

    /// Forgets the tags of ids no longer anywhere (after a rebuild dropped them).
    pub(crate) fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        if self.of.keys().any(|&l| !keep(l)) {
            Arc::make_mut(&mut self.of).retain(|&l, _| keep(l));
        }
    }

    /// The graph's nodes per tag, ascending, skipping tombstoned labels.
    fn members(
        graph: &Graph,
        of: &TagMap,
        tombstones: &IdSet,
    ) -> HashMap<u32, Vec<Node>, FxBuildHasher> {
        let mut members: HashMap<u32, Vec<Node>, FxBuildHasher> = HashMap::default();
        if of.is_empty() {
            return members;
        }
        for (node, &label) in graph.labels.iter().enumerate() {
            if tombstones.contains(label) {
                continue;
            }
            if let Some(tags) = of.get(&label) {
                for &tag in tags.iter() {
                    members.entry(tag).or_default().push(node as Node);
                }
            }
        }
        members
    }

    /// Partitions `graph` (freshly built) by the tags in `of`.
    pub(crate) fn partition(
        graph: &Graph,
        of: &TagMap,
        tombstones: &IdSet,
        params: &HnswBuildParams,
    ) -> HashMap<u32, Partition, FxBuildHasher> {
        let started = std::time::Instant::now();
        let parts: HashMap<u32, Partition, FxBuildHasher> = Self::members(graph, of, tombstones)
            .into_iter()
            .map(|(tag, nodes)| (tag, link(graph, nodes, params)))
            .collect();
        let linked = parts.values().filter(|p| p.sub.is_some()).count();
        if linked > 0 {
            tracing::info!(
                tags = parts.len(),
                linked,
                seconds = started.elapsed().as_secs_f64(),
                "index partitions built"
            );
        }
        parts
    }

    /// The partitions of a graph read from a file with the sub-graphs `subs` saved
    /// beside it: each tag's nodes outside its sub-graph are its rest.
    pub(crate) fn with_subs(
        graph: &Graph,
        of: Arc<TagMap>,
        mut subs: HashMap<u32, SubGraph, FxBuildHasher>,
    ) -> Self {
        let mut parts: HashMap<u32, Partition, FxBuildHasher> = HashMap::default();
        for (tag, nodes) in Self::members(graph, &of, &IdSet::new()) {
            let sub = subs.remove(&tag);
            let rest = match &sub {
                Some(s) => nodes.into_iter().filter(|&n| !s.holds(n)).collect(),
                None => nodes,
            };
            parts.insert(
                tag,
                Partition {
                    sub: sub.map(Arc::new),
                    rest,
                },
            );
        }
        Self { of, parts }
    }

    /// Tags whose rest has outgrown their sub-graph (see the module docs).
    pub(crate) fn stale(&self, min: usize) -> Vec<u32> {
        let mut tags: Vec<u32> = self
            .parts
            .iter()
            .filter(|(_, p)| p.stale(min))
            .map(|(&t, _)| t)
            .collect();
        tags.sort_unstable();
        tags
    }

    /// The nodes a relinked partition of `tag` holds: all of its nodes not tombstoned,
    /// ascending (`None` for a tag without nodes).
    pub(crate) fn relink_nodes(
        &self,
        graph: &Graph,
        tag: u32,
        tombstones: &IdSet,
    ) -> Option<Vec<Node>> {
        let part = self.parts.get(&tag)?;
        let mut nodes: Vec<Node> = part
            .sub
            .iter()
            .flat_map(|s| s.nodes.iter().copied())
            .chain(part.rest.iter().copied())
            .filter(|&n| !tombstones.contains(graph.labels[n as usize]))
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        Some(nodes)
    }

    /// The partitions' sub-graphs, by increasing tag (what a save writes).
    pub(crate) fn subs(&self) -> Vec<(u32, Arc<SubGraph>)> {
        let mut subs: Vec<(u32, Arc<SubGraph>)> = self
            .parts
            .iter()
            .filter_map(|(&t, p)| p.sub.clone().map(|s| (t, s)))
            .collect();
        subs.sort_unstable_by_key(|(t, _)| *t);
        subs
    }

    /// Bytes held by the tag map and the partitions.
    pub(crate) fn heap_bytes(&self) -> usize {
        let of: usize = self.of.values().map(|t| 24 + 4 * t.len()).sum();
        let parts: usize = self
            .parts
            .values()
            .map(|p| p.sub.as_ref().map_or(0, |s| s.heap_bytes()) + 4 * p.rest.len())
            .sum();
        of + parts
    }
}

/// A partition over `nodes` (ascending): linked when there are at least `partition_min`.
pub(crate) fn link(graph: &Graph, nodes: Vec<Node>, params: &HnswBuildParams) -> Partition {
    if nodes.len() >= params.partition_min.max(2) {
        Partition {
            sub: Some(Arc::new(graph.build_sub(nodes, params))),
            rest: Vec::new(),
        }
    } else {
        Partition {
            sub: None,
            rest: nodes,
        }
    }
}

//! Tags: small integers a caller attaches to ids (a video's topics), and per tag a
//! partition of the sealed graph, so a search restricted to one tag (an `only` topic)
//! costs about what an unfiltered search of a graph that size does.
//!
//! A tag carried by at least `partition_min` graph nodes gets a [`SubGraph`] of its own
//! links over them, built with the graph. Nodes a fold adds later, and every node of a
//! tag too small to link, are the partition's `rest`, scanned exactly. The compaction
//! thread relinks a partition (one sub-graph over both) once its rest reaches an eighth
//! of its sub-graph (and at least [`RELINK_MIN`] nodes), or links one without a
//! sub-graph once it has `partition_min` nodes. It looks after each fold, so the
//! scanned rest of a linked partition stays near an eighth of it (more by what one fold
//! adds, and by deleted nodes until the relink drops them). A rebuild of the whole
//! graph rebuilds every partition.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use crate::graph::{Graph, Node, SubGraph};
use crate::idset::IdSet;
use crate::params::HnswBuildParams;

/// Fewest folded nodes that relink a partition.
pub(crate) const RELINK_MIN: usize = 256;

/// Ids per chunk of a [`TagMap`], as a shift.
const CHUNK_SHIFT: u32 = 12;

type Chunk = HashMap<u32, Box<[u32]>, FxBuildHasher>;

/// Id to its tags (ids with none are absent), in chunks of 4,096 consecutive ids shared
/// copy-on-write: a copy (what a save or a rebuild takes) costs a pointer per chunk, and
/// a write while a copy is held copies that one chunk, not the map.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TagMap {
    chunks: HashMap<u32, Arc<Chunk>, FxBuildHasher>,
    len: usize,
}

impl TagMap {
    /// The tags of `label`.
    pub(crate) fn get(&self, label: u32) -> Option<&[u32]> {
        self.chunks
            .get(&(label >> CHUNK_SHIFT))?
            .get(&label)
            .map(|t| &t[..])
    }

    /// Sets the tags of `label`.
    pub(crate) fn insert(&mut self, label: u32, tags: Box<[u32]>) {
        let chunk = self.chunks.entry(label >> CHUNK_SHIFT).or_default();
        if Arc::make_mut(chunk).insert(label, tags).is_none() {
            self.len += 1;
        }
    }

    /// Keeps the ids `keep` accepts; copies only the chunks that change.
    pub(crate) fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        let mut len = 0;
        for chunk in self.chunks.values_mut() {
            if chunk.keys().any(|&l| !keep(l)) {
                Arc::make_mut(chunk).retain(|&l, _| keep(l));
            }
            len += chunk.len();
        }
        self.chunks.retain(|_, c| !c.is_empty());
        self.len = len;
    }

    /// Every id and its tags, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &[u32])> {
        self.chunks
            .values()
            .flat_map(|c| c.iter().map(|(&l, t)| (l, &t[..])))
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

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

    /// True when it should be relinked (see the module docs); `min` is
    /// `partition_min`.
    fn stale(&self, min: usize) -> bool {
        match &self.sub {
            Some(sub) => self.rest.len() >= RELINK_MIN.max(sub.len() / 8),
            None => self.rest.len() >= min.max(2),
        }
    }
}

/// Every id's tags and the graph's partitions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tags {
    /// Shared with saves and rebuilds in progress, chunk by chunk.
    pub(crate) of: TagMap,
    pub(crate) parts: HashMap<u32, Partition, FxBuildHasher>,
}

impl Tags {
    /// True when `label` carries `tag`.
    pub(crate) fn has(&self, label: u32, tag: u32) -> bool {
        self.of.get(label).is_some_and(|t| t.contains(&tag))
    }

    /// Records the tags of a new id (none: nothing).
    pub(crate) fn set(&mut self, label: u32, tags: &[u32]) {
        if tags.is_empty() {
            return;
        }
        let mut own: Vec<u32> = tags.to_vec();
        own.sort_unstable();
        own.dedup();
        self.of.insert(label, own.into_boxed_slice());
    }

    /// A fold put `label` into the graph as `node`: it joins its tags' rests.
    pub(crate) fn folded(&mut self, label: u32, node: Node) {
        if let Some(tags) = self.of.get(label) {
            for &tag in tags.iter() {
                self.parts.entry(tag).or_default().rest.push(node);
            }
        }
    }

    /// Forgets the tags of ids no longer anywhere (after a rebuild dropped them).
    pub(crate) fn retain(&mut self, keep: impl Fn(u32) -> bool) {
        self.of.retain(keep);
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
            if let Some(tags) = of.get(label) {
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
        of: TagMap,
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
        let of = 24 * self.of.len() + self.of.iter().map(|(_, t)| 4 * t.len()).sum::<usize>();
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The map against a `BTreeMap` oracle through inserts, replacements, copies taken
    /// midway (which later writes must not reach) and a retain.
    #[test]
    fn a_tag_map_behaves_as_a_map_and_its_copies_stay_as_taken() {
        let mut map = TagMap::default();
        let mut oracle: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut copies: Vec<(TagMap, BTreeMap<u32, Vec<u32>>)> = Vec::new();
        for i in 0..20_000u32 {
            // Ids spread over many chunks, some set twice.
            let label = (i * 7_919) % 30_000;
            let tags = vec![i % 5, 5 + i % 3];
            map.insert(label, tags.clone().into_boxed_slice());
            oracle.insert(label, tags);
            if i % 5_000 == 0 {
                copies.push((map.clone(), oracle.clone()));
            }
        }
        let check = |m: &TagMap, o: &BTreeMap<u32, Vec<u32>>| {
            assert_eq!(m.len(), o.len());
            let mut all: Vec<(u32, Vec<u32>)> = m.iter().map(|(l, t)| (l, t.to_vec())).collect();
            all.sort();
            assert_eq!(
                all,
                o.iter().map(|(&l, t)| (l, t.clone())).collect::<Vec<_>>()
            );
            for l in 0..30_000 {
                assert_eq!(m.get(l), o.get(&l).map(Vec::as_slice));
            }
        };
        check(&map, &oracle);
        map.retain(|l| l % 3 != 0);
        oracle.retain(|l, _| l % 3 != 0);
        check(&map, &oracle);
        for (copy, then) in &copies {
            check(copy, then);
        }
        map.retain(|_| false);
        assert!(map.is_empty() && map.iter().next().is_none());
    }
}

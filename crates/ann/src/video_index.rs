//! `VideoIndex`: an [`HnswIndex`] keyed by video id, implementing core's
//! [`VectorSearch`] port.
//!
//! Internal ids are assigned in order and never reused: re-upserting a video deletes its
//! old internal id and inserts the new vector under a fresh one, so a search never sees
//! a half-updated video. Lock order is always the id map, then the index.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use steerfeed_core::ports::{Neighbor, VectorSearch};
use steerfeed_core::{Embedding, TopicId, VideoId};

use crate::error::{Error, Result};
use crate::graph::SpillTo;
use crate::hnsw::{BulkBuild, HnswIndex, IndexStats, Parts};
use crate::index::{Filter, VectorIndex};
use crate::params::{HnswBuildParams, HnswSearchParams};
use crate::persist::{self, IdTable};

#[derive(Debug, Default)]
struct IdMap {
    next: u32,
    internal: HashMap<VideoId, u32>,
    /// Internal id to video, `None` where replaced or removed.
    video: Vec<Option<VideoId>>,
    /// Topic to its tag in the index: its place in `topic_names`.
    topics: HashMap<TopicId, u32>,
    topic_names: Vec<TopicId>,
}

impl IdMap {
    /// True when internal id `i` is a video `allow` lets through (every video without it).
    fn passes(&self, i: u32, allow: Option<&(dyn Fn(&VideoId) -> bool + Sync)>) -> bool {
        self.video
            .get(i as usize)
            .and_then(Option::as_ref)
            .is_some_and(|v| allow.is_none_or(|f| f(v)))
    }

    /// The tags of `topics`, interning new ones.
    fn tags(&mut self, topics: &[TopicId]) -> Vec<u32> {
        topics
            .iter()
            .map(|t| match self.topics.get(t) {
                Some(&tag) => tag,
                None => {
                    let tag = self.topic_names.len() as u32;
                    self.topics.insert(t.clone(), tag);
                    self.topic_names.push(t.clone());
                    tag
                }
            })
            .collect()
    }

    fn index_videos(&mut self) {
        self.video = vec![None; self.next as usize];
        for (v, &i) in &self.internal {
            if let Some(slot) = self.video.get_mut(i as usize) {
                *slot = Some(v.clone());
            }
        }
    }
}

/// A vector index keyed by video id.
///
/// It also carries the **applied catalog version**: the store's catalog version up to
/// which every catalog change has reached the index. The owner sets it after each change
/// ([`VideoIndex::set_applied_version`]); a save records it, so the file reflects at
/// least every change at or below it.
#[derive(Debug)]
pub struct VideoIndex {
    index: HnswIndex,
    ids: RwLock<IdMap>,
    applied: AtomicU64,
}

/// A consistent copy of a [`VideoIndex`], taken under its locks by
/// [`VideoIndex::snapshot`] and written by [`IndexSnapshot::save`] without them.
#[derive(Debug, Clone)]
pub struct IndexSnapshot {
    catalog_version: u64,
    parts: Parts,
    ids: IdTable,
}

impl IndexSnapshot {
    /// The applied catalog version read before the copy was taken: the copy holds every
    /// catalog change at or below it.
    pub fn catalog_version(&self) -> u64 {
        self.catalog_version
    }

    /// Changes to the index's graph (rebuilds plus folded vectors) when the copy was
    /// taken: a file saved with the same catalog version and changes holds the same.
    pub fn graph_changes(&self) -> u64 {
        self.parts.graph_changes
    }

    /// Videos in the copy.
    pub fn len(&self) -> usize {
        self.ids.entries.len()
    }

    /// True when the copy holds no video.
    pub fn is_empty(&self) -> bool {
        self.ids.entries.is_empty()
    }

    /// Writes the copy to `path` as one index file (format in `persist`): a temporary
    /// file, fsynced, renamed over `path`, then the directory fsynced.
    pub fn save(&self, path: &Path) -> Result<()> {
        persist::save(
            path,
            &persist::Contents {
                catalog_version: self.catalog_version,
                graph: self.parts.graph.clone(),
                live_labels: self.parts.live_labels.clone(),
                live_vectors: self.parts.live_vectors.clone(),
                tombstones: self.parts.tombstones.clone(),
                tags: self.parts.tags.clone(),
                subs: self.parts.subs.clone(),
                ids: self.ids.clone(),
            },
        )
    }
}

/// A video index being built a video at a time ([`VideoIndex::bulk`]).
#[derive(Debug)]
pub struct VideoBulk {
    map: IdMap,
    bulk: BulkBuild,
}

impl VideoBulk {
    /// Adds `video`; a wrong dimension or a video given twice is refused.
    pub fn push(&mut self, video: VideoId, e: &Embedding, topics: &[TopicId]) -> Result<()> {
        if self.map.internal.contains_key(&video) {
            return Err(steerfeed_core::Error::Conflict {
                entity: steerfeed_core::Entity::Video,
                id: video.to_string(),
                reason: "given twice".into(),
            }
            .into());
        }
        let tags = self.map.tags(topics);
        self.bulk.push(self.map.next, e, &tags)?;
        self.map.internal.insert(video, self.map.next);
        self.map.next += 1;
        Ok(())
    }

    /// Videos pushed so far.
    pub fn len(&self) -> usize {
        self.bulk.len()
    }

    /// True before the first push.
    pub fn is_empty(&self) -> bool {
        self.bulk.is_empty()
    }

    /// The index over every video pushed.
    pub fn finish(self) -> Result<VideoIndex> {
        let mut map = self.map;
        map.index_videos();
        Ok(VideoIndex {
            index: self.bulk.finish()?,
            ids: RwLock::new(map),
            applied: AtomicU64::new(0),
        })
    }
}

impl VideoIndex {
    /// After `snap` of this index was saved to `path` (the index's own file, not a
    /// copy elsewhere): an int8 graph unchanged since reads its exact vectors from the
    /// file's map instead of memory. True when it did.
    pub fn adopt_saved(&self, snap: IndexSnapshot, path: &Path) -> bool {
        self.index.adopt_file(snap.parts.graph, path)
    }

    /// An empty index.
    pub fn new(dim: usize, build: HnswBuildParams, search: HnswSearchParams) -> Result<Self> {
        Ok(Self {
            index: HnswIndex::new(dim, build, search)?,
            ids: RwLock::new(IdMap::default()),
            applied: AtomicU64::new(0),
        })
    }

    /// Builds the graph over `videos` in one go (start-up from the stored embeddings).
    pub fn build(
        dim: usize,
        videos: impl IntoIterator<Item = (VideoId, Embedding)>,
        build: HnswBuildParams,
        search: HnswSearchParams,
    ) -> Result<Self> {
        Self::build_with_topics(
            dim,
            videos.into_iter().map(|(v, e)| (v, e, Vec::new())),
            build,
            search,
        )
    }

    /// [`VideoIndex::build`] with each video's topics, so a search restricted to topics
    /// ([`VectorSearch::search_topics`]) walks each topic's own partition.
    pub fn build_with_topics(
        dim: usize,
        videos: impl IntoIterator<Item = (VideoId, Embedding, Vec<TopicId>)>,
        build: HnswBuildParams,
        search: HnswSearchParams,
    ) -> Result<Self> {
        let mut bulk = Self::bulk(dim, build, search, None)?;
        for (video, e, topics) in videos {
            bulk.push(video, &e, &topics)?;
        }
        bulk.finish()
    }

    /// A build that takes one video at a time ([`VideoBulk::push`]); `spill` as for
    /// [`HnswIndex::bulk`].
    pub fn bulk(
        dim: usize,
        build: HnswBuildParams,
        search: HnswSearchParams,
        spill: Option<&SpillTo>,
    ) -> Result<VideoBulk> {
        Ok(VideoBulk {
            map: IdMap::default(),
            bulk: HnswIndex::bulk(dim, build, search, spill)?,
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, IdMap> {
        crate::sync::read(&self.ids)
    }

    fn write(&self) -> RwLockWriteGuard<'_, IdMap> {
        crate::sync::write(&self.ids)
    }

    /// Replaces this index's contents, id map and applied catalog version with `other`'s
    /// (an index loaded from a snapshot and brought up to the catalogue), in one step for
    /// every search (`HnswIndex::swap_with`; the id map's lock is taken first, as
    /// everywhere). False, changing nothing, while a compaction of either index runs or
    /// when the dimensions differ.
    pub fn replace_with(&self, other: VideoIndex) -> bool {
        let VideoIndex {
            index,
            ids: theirs,
            applied,
        } = other;
        let theirs = theirs
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ids = self.write();
        let Some(old_state) = self.index.swap_with(index) else {
            return false;
        };
        let old_ids = std::mem::replace(&mut *ids, theirs);
        self.applied.store(applied.into_inner(), Ordering::Release);
        drop(ids);
        // Freed after the locks, not while searches wait on them.
        drop((old_state, old_ids));
        true
    }

    /// Adds or replaces a video's vector; visible to every search that starts after this returns.
    pub fn upsert(&self, video: &VideoId, e: &Embedding) -> Result<()> {
        self.upsert_with_topics(video, e, &[])
    }

    /// [`VideoIndex::upsert`] with the video's topics (see
    /// [`VideoIndex::build_with_topics`]).
    pub fn upsert_with_topics(
        &self,
        video: &VideoId,
        e: &Embedding,
        topics: &[TopicId],
    ) -> Result<()> {
        e.check_dim("embedding", self.index.dim())?;
        let mut ids = self.write();
        let fresh = ids.next;
        let tags = ids.tags(topics);
        self.index.insert_tagged(fresh, e, &tags)?;
        ids.next += 1;
        ids.video.push(Some(video.clone()));
        if let Some(old) = ids.internal.insert(video.clone(), fresh) {
            self.index.delete(old);
            if let Some(slot) = ids.video.get_mut(old as usize) {
                *slot = None;
            }
        }
        Ok(())
    }

    /// Removes a video; no search that starts after this returns will return it.
    /// Removing a video the index does not hold is a no-op (false).
    pub fn remove(&self, video: &VideoId) -> bool {
        let mut ids = self.write();
        match ids.internal.remove(video) {
            Some(old) => {
                if let Some(slot) = ids.video.get_mut(old as usize) {
                    *slot = None;
                }
                self.index.delete(old)
            }
            None => false,
        }
    }

    /// The indexed vectors of `videos` (`None` for a video not indexed), in order.
    pub fn vectors(&self, videos: &[VideoId]) -> Vec<Option<Vec<f32>>> {
        let ids = self.read();
        let internal: Vec<Option<u32>> = videos
            .iter()
            .map(|v| ids.internal.get(v).copied())
            .collect();
        let known: Vec<u32> = internal.iter().flatten().copied().collect();
        let mut found = self.index.vectors(&known).into_iter();
        internal
            .into_iter()
            .map(|i| i.and_then(|_| found.next().flatten()))
            .collect()
    }

    /// The indexed topics of `videos`, sorted (`None` for a video not indexed), in order.
    pub fn topics(&self, videos: &[VideoId]) -> Vec<Option<Vec<TopicId>>> {
        let ids = self.read();
        videos
            .iter()
            .map(|v| {
                let internal = *ids.internal.get(v)?;
                let mut topics: Vec<TopicId> = self
                    .index
                    .tags(internal)
                    .into_iter()
                    .filter_map(|t| ids.topic_names.get(t as usize).cloned())
                    .collect();
                topics.sort();
                Some(topics)
            })
            .collect()
    }

    /// True when the video is in the sealed graph, false when it waits in the live
    /// segment or is not indexed.
    pub fn in_graph(&self, video: &VideoId) -> bool {
        let ids = self.read();
        ids.internal
            .get(video)
            .is_some_and(|&i| self.index.in_graph(i))
    }

    /// Replaces every id the index holds by `share(id)`, an equal id (the store's shared
    /// allocation of it, so lookups of the ids searches return compare pointers).
    pub fn share_ids(&self, share: impl Fn(&VideoId) -> VideoId) {
        let mut ids = self.write();
        let internal = std::mem::take(&mut ids.internal);
        ids.internal = internal
            .into_iter()
            .map(|(v, i)| {
                let shared = share(&v);
                debug_assert_eq!(shared, v);
                (shared, i)
            })
            .collect();
        ids.index_videos();
    }

    /// True when the video is indexed.
    pub fn contains(&self, video: &VideoId) -> bool {
        self.read().internal.contains_key(video)
    }

    /// Videos in the index.
    pub fn len(&self) -> usize {
        self.read().internal.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The underlying index (for compaction and statistics).
    pub fn index(&self) -> &HnswIndex {
        &self.index
    }

    /// Counts and sizes.
    pub fn stats(&self) -> IndexStats {
        self.index.stats()
    }

    /// The applied catalog version (see the type's docs).
    pub fn applied_version(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Records that every catalog change up to `version` has reached the index. Call
    /// after the change's index writes returned, with changes serialised (a save reads
    /// the version first, then copies the index).
    pub fn set_applied_version(&self, version: u64) {
        self.applied.store(version, Ordering::Release);
    }

    /// A consistent copy of the index, its id map and its applied catalog version, for
    /// [`IndexSnapshot::save`]. The version is read first, so the copy holds at least
    /// every change at or below it. The locks are held only while copying (the sealed
    /// graph is shared, not copied).
    pub fn snapshot(&self) -> IndexSnapshot {
        let catalog_version = self.applied_version();
        let ids = self.read();
        let parts = self.index.parts();
        let entries = ids
            .video
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i as u32, v.clone())))
            .collect();
        let next = ids.next;
        let topics = ids.topic_names.clone();
        drop(ids);
        IndexSnapshot {
            catalog_version,
            parts,
            ids: IdTable {
                next,
                entries,
                topics,
            },
        }
    }

    /// Writes the index to `path` ([`VideoIndex::snapshot`], then
    /// [`IndexSnapshot::save`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.snapshot().save(path)
    }

    /// Reads what [`VideoIndex::save`] wrote, with its applied catalog version. A damaged
    /// file, one of another format version or dimension, or an id map that does not
    /// match the index is [`Error::BadFile`]: rebuild from the stored embeddings then.
    pub fn load(
        path: &Path,
        dim: usize,
        build: HnswBuildParams,
        search: HnswSearchParams,
    ) -> Result<Self> {
        build.validate()?;
        search.validate()?;
        let loaded = persist::load(path, dim, build.vectors)?;
        let bad = |reason: &str| Error::BadFile {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let table = loaded.ids;
        let state = &loaded.state;
        if table.entries.len() != state.present.len()
            || table
                .entries
                .iter()
                .any(|(i, _)| !state.present.contains(*i))
        {
            return Err(bad("the id map does not match the index"));
        }
        if table.next == 0 && (!state.tombstones.is_empty() || state.graph.len() > 0) {
            return Err(bad("no id map (an index saved without video ids)"));
        }
        let names = table.topics.len();
        if state
            .tags
            .of
            .iter()
            .any(|(_, tags)| tags.iter().any(|&t| t as usize >= names))
        {
            return Err(bad("a tag the file names no topic for"));
        }
        if loaded.format_version < 4 && !table.entries.is_empty() {
            return Err(bad(
                "a file of format 3 or older holds no video topics (the index is rebuilt with them)",
            ));
        }
        let mut map = IdMap {
            next: table.next,
            internal: HashMap::with_capacity(table.entries.len()),
            video: Vec::new(),
            topics: table
                .topics
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u32))
                .collect(),
            topic_names: table.topics,
        };
        map.internal
            .extend(table.entries.into_iter().map(|(i, v)| (v, i)));
        map.index_videos();
        let index = HnswIndex::from_state(dim, build, search, loaded.state);
        Ok(Self {
            index,
            ids: RwLock::new(map),
            applied: AtomicU64::new(loaded.catalog_version),
        })
    }
}

impl VideoIndex {
    /// The videos of internal-id hits, dropping any no longer mapped.
    fn neighbours(ids: &IdMap, hits: Vec<crate::index::Hit>) -> Vec<Neighbor> {
        hits.into_iter()
            .filter_map(|h| {
                ids.video
                    .get(h.id as usize)
                    .and_then(Option::as_ref)
                    .map(|v| Neighbor {
                        video: v.clone(),
                        similarity: h.similarity,
                    })
            })
            .collect()
    }
}

impl VectorSearch for VideoIndex {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        allow: Option<&(dyn Fn(&VideoId) -> bool + Sync)>,
    ) -> steerfeed_core::Result<Vec<Neighbor>> {
        let ids = self.read();
        let pass = |i: u32| ids.passes(i, allow);
        // Replaced and removed internal ids are tombstoned in the index, so without a
        // filter every hit maps to a live video.
        let hits = match allow {
            Some(_) => self.index.search(query, k, Filter::Predicate(&pass))?,
            None => self.index.search(query, k, Filter::All)?,
        };
        Ok(Self::neighbours(&ids, hits))
    }

    fn search_topics(
        &self,
        query: &[f32],
        k: usize,
        topics: &[TopicId],
        allow: Option<&(dyn Fn(&VideoId) -> bool + Sync)>,
    ) -> steerfeed_core::Result<Vec<Neighbor>> {
        let ids = self.read();
        let tags: Vec<u32> = topics
            .iter()
            .filter_map(|t| ids.topics.get(t).copied())
            .collect();
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let pass = |i: u32| ids.passes(i, allow);
        let filter = match allow {
            Some(_) => Filter::Predicate(&pass),
            None => Filter::All,
        };
        let hits =
            self.index
                .search_tagged(query, k, &tags, filter, &self.index.search_params())?;
        Ok(Self::neighbours(&ids, hits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steerfeed_world::vectors::clustered;

    const DIM: usize = 16;

    fn vid(i: usize) -> VideoId {
        VideoId::new(format!("v{i}")).unwrap()
    }

    fn topic(t: &str) -> TopicId {
        TopicId::new(t).unwrap()
    }

    /// The test's own topic table: `v{i}` is about cooking when `i % 4 == 0`, pets
    /// when `i % 4 == 1`, both when `i % 12 == 0`.
    fn topics_of(i: usize) -> Vec<TopicId> {
        let mut t = Vec::new();
        if i.is_multiple_of(4) {
            t.push(topic("cooking"));
        }
        if i % 4 == 1 || i.is_multiple_of(12) {
            t.push(topic("pets"));
        }
        t
    }

    #[test]
    fn topic_searches_follow_upserts_moves_and_removals_and_survive_a_reload() {
        let data = clustered(1_200, DIM, 8, 0.5, 4);
        let params = HnswBuildParams {
            partition_min: 100,
            ..HnswBuildParams::default()
        };
        let idx = VideoIndex::build_with_topics(
            DIM,
            data.chunks_exact(DIM)
                .take(1_000)
                .enumerate()
                .map(|(i, row)| (vid(i), Embedding::new("e", row, DIM).unwrap(), topics_of(i))),
            params,
            HnswSearchParams::default(),
        )
        .unwrap();
        for (i, row) in data.chunks_exact(DIM).enumerate().skip(1_000) {
            idx.upsert_with_topics(
                &vid(i),
                &Embedding::new("e", row, DIM).unwrap(),
                &topics_of(i),
            )
            .unwrap();
        }
        let number = |v: &VideoId| v.as_str()[1..].parse::<usize>().unwrap();
        let about = |n: &[Neighbor], t: &str| {
            n.iter()
                .all(|h| topics_of(number(&h.video)).contains(&topic(t)))
        };
        let q = &data[8 * DIM..9 * DIM];
        let cooking = idx.search_topics(q, 20, &[topic("cooking")], None).unwrap();
        assert_eq!(cooking.len(), 20);
        assert!(about(&cooking, "cooking"));
        assert_eq!(cooking[0].video, vid(8), "a video is its own nearest");
        // Two topics: either, each video once.
        let both = idx
            .search_topics(q, 40, &[topic("cooking"), topic("pets")], None)
            .unwrap();
        let distinct: std::collections::HashSet<_> = both.iter().map(|h| &h.video).collect();
        assert_eq!(distinct.len(), 40);
        assert!(both.iter().all(|h| !topics_of(number(&h.video)).is_empty()));
        // A topic nobody carries, or none: nothing.
        assert!(
            idx.search_topics(q, 5, &[topic("opera")], None)
                .unwrap()
                .is_empty()
        );
        assert!(idx.search_topics(q, 5, &[], None).unwrap().is_empty());
        // An allow filter inside the topic.
        let odd_tens = |v: &VideoId| (number(v) / 10) % 2 == 1;
        let filtered = idx
            .search_topics(q, 10, &[topic("pets")], Some(&odd_tens))
            .unwrap();
        assert_eq!(filtered.len(), 10);
        assert!(filtered.iter().all(|h| odd_tens(&h.video)) && about(&filtered, "pets"));

        // v8 moves to pets only: no longer a cooking video, found as a pets one.
        idx.upsert_with_topics(
            &vid(8),
            &Embedding::new("e", q, DIM).unwrap(),
            &[topic("pets")],
        )
        .unwrap();
        assert_eq!(
            idx.topics(&[vid(8), vid(12), vid(9_999)]),
            vec![
                Some(vec![topic("pets")]),
                Some(vec![topic("cooking"), topic("pets")]),
                None,
            ]
        );
        let cooking = idx.search_topics(q, 20, &[topic("cooking")], None).unwrap();
        assert!(cooking.iter().all(|h| h.video != vid(8)));
        assert_eq!(
            idx.search_topics(q, 1, &[topic("pets")], None).unwrap()[0].video,
            vid(8)
        );
        assert!(idx.remove(&vid(12)));
        let both = idx
            .search_topics(q, 300, &[topic("cooking"), topic("pets")], None)
            .unwrap();
        assert!(both.iter().all(|h| h.video != vid(12)));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("videos.idx");
        idx.save(&path).unwrap();
        let back = VideoIndex::load(&path, DIM, params, HnswSearchParams::default()).unwrap();
        for t in ["cooking", "pets"] {
            assert_eq!(
                back.search_topics(q, 30, &[topic(t)], None).unwrap(),
                idx.search_topics(q, 30, &[topic(t)], None).unwrap()
            );
        }
        assert_eq!(back.topics(&[vid(8)]), vec![Some(vec![topic("pets")])]);
        // A topic first seen after the reload gets a tag of its own.
        back.upsert_with_topics(
            &vid(5_000),
            &Embedding::new("e", q, DIM).unwrap(),
            &[topic("opera")],
        )
        .unwrap();
        assert_eq!(
            back.search_topics(q, 3, &[topic("opera")], None).unwrap()[0].video,
            vid(5_000)
        );
        assert_eq!(
            back.search_topics(q, 1, &[topic("pets")], None).unwrap()[0].video,
            vid(8)
        );
    }

    #[test]
    fn upsert_replaces_remove_hides_and_save_load_round_trips() {
        let data = clustered(300, DIM, 8, 0.5, 9);
        let idx =
            VideoIndex::new(DIM, HnswBuildParams::default(), HnswSearchParams::default()).unwrap();
        for (i, row) in data.chunks_exact(DIM).enumerate() {
            idx.upsert(&vid(i), &Embedding::new("e", row, DIM).unwrap())
                .unwrap();
        }
        let q = &data[5 * DIM..6 * DIM];
        assert_eq!(idx.search(q, 1, None).unwrap()[0].video, vid(5));
        // Moving v5 elsewhere: searching its old place no longer finds it first.
        idx.upsert(
            &vid(5),
            &Embedding::new("e", &data[200 * DIM..201 * DIM], DIM).unwrap(),
        )
        .unwrap();
        assert_eq!(idx.len(), 300);
        let top = idx.search(q, 1, None).unwrap();
        assert_ne!(top[0].video, vid(5));
        assert!(idx.remove(&vid(7)));
        assert!(!idx.remove(&vid(7)));
        let all = idx.search(q, 300, None).unwrap();
        assert!(all.iter().all(|n| n.video != vid(7)));
        let not_even = idx
            .search(q, 50, Some(&|v: &VideoId| v.as_str().ends_with('1')))
            .unwrap();
        assert!(not_even.iter().all(|n| n.video.as_str().ends_with('1')));
        assert!(matches!(
            idx.upsert(&vid(1), &Embedding::normalized("e", &[1.0, 2.0]).unwrap()),
            Err(Error::Input(_))
        ));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("videos.idx");
        idx.save(&path).unwrap();
        let back = VideoIndex::load(
            &path,
            DIM,
            HnswBuildParams::default(),
            HnswSearchParams::default(),
        )
        .unwrap();
        assert_eq!(back.len(), idx.len());
        assert_eq!(
            back.search(q, 10, None).unwrap(),
            idx.search(q, 10, None).unwrap()
        );
    }

    fn params() -> (HnswBuildParams, HnswSearchParams) {
        (
            HnswBuildParams {
                max_live: 0,
                ..HnswBuildParams::default()
            },
            HnswSearchParams::default(),
        )
    }

    #[test]
    fn the_file_holds_the_applied_version_the_ids_and_both_segments() {
        let data = clustered(400, DIM, 8, 0.5, 3);
        let e = |i: usize| Embedding::new("e", &data[i * DIM..(i + 1) * DIM], DIM).unwrap();
        let (b, s) = params();
        let idx = VideoIndex::build(DIM, (0..300).map(|i| (vid(i), e(i))), b, s).unwrap();
        for i in 300..400 {
            idx.upsert(&vid(i), &e(i)).unwrap(); // live segment
        }
        idx.upsert(&vid(3), &e(399)).unwrap(); // moved: a graph tombstone
        idx.remove(&vid(350)); // a live tombstone
        idx.set_applied_version(42);
        assert!(idx.in_graph(&vid(10)) && !idx.in_graph(&vid(3)) && !idx.in_graph(&vid(320)));
        let got = idx.vectors(&[vid(10), vid(320), vid(3), vid(350), vid(9999)]);
        assert_eq!(got[0].as_deref(), Some(e(10).as_slice()));
        assert_eq!(got[1].as_deref(), Some(e(320).as_slice()));
        assert_eq!(got[2].as_deref(), Some(e(399).as_slice()));
        assert_eq!((got[3].is_none(), got[4].is_none()), (true, true));

        let snap = idx.snapshot();
        assert_eq!((snap.catalog_version(), snap.len()), (42, 399));
        // Writes after the copy are not in it.
        idx.upsert(&vid(5000), &e(0)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.hnsw");
        snap.save(&path).unwrap();
        let back = VideoIndex::load(&path, DIM, b, s).unwrap();
        assert_eq!(back.applied_version(), 42);
        assert_eq!(back.len(), 399);
        assert!(!back.contains(&vid(5000)) && !back.contains(&vid(350)));
        for i in [0, 3, 10, 299, 300, 320, 399] {
            assert_eq!(back.vectors(&[vid(i)]), idx.vectors(&[vid(i)]), "video {i}");
        }
        let st = back.stats();
        assert_eq!(
            (st.graph_nodes, st.graph_tombstones, st.live_segment),
            (300, 1, 101)
        );
        // Fresh internal ids continue after the saved ones.
        back.upsert(&vid(7000), &e(1)).unwrap();
        assert_eq!(back.search(&data[DIM..2 * DIM], 2, None).unwrap().len(), 2);

        // An index saved without video ids is not a video index.
        let bare = HnswIndex::build(DIM, (0..10u32).map(|i| (i, e(i as usize))), b, s).unwrap();
        bare.save(&path).unwrap();
        assert!(matches!(
            VideoIndex::load(&path, DIM, b, s),
            Err(Error::BadFile { .. })
        ));
        assert_eq!(HnswIndex::load(&path, DIM, b, s).unwrap().len(), 10);
    }
}

#[cfg(test)]
mod replace_tests {
    use super::*;
    use steerfeed_world::vectors::clustered;

    const DIM: usize = 16;

    fn vid(i: usize) -> VideoId {
        VideoId::new(format!("v{i}")).unwrap()
    }

    fn index_of(data: &[f32], ids: std::ops::Range<usize>, version: u64) -> VideoIndex {
        let idx = VideoIndex::build(
            DIM,
            ids.map(|i| {
                (
                    vid(i),
                    Embedding::new("e", &data[i * DIM..(i + 1) * DIM], DIM).unwrap(),
                )
            }),
            HnswBuildParams::default(),
            HnswSearchParams::default(),
        )
        .unwrap();
        idx.set_applied_version(version);
        idx
    }

    fn nearest(idx: &VideoIndex, data: &[f32], i: usize) -> Option<VideoId> {
        idx.search(&data[i * DIM..(i + 1) * DIM], 1, None)
            .unwrap()
            .first()
            .map(|h| h.video.clone())
    }

    #[test]
    fn a_replacement_is_whole_for_every_search_and_refused_while_not_possible() {
        let data = clustered(900, DIM, 6, 0.5, 9);
        let old = index_of(&data, 0..300, 4);
        let new = index_of(&data, 200..900, 9);
        // Searches run on other threads while the contents change. The old index holds
        // v0..v299 and the new v200..v899: a hit below 200 can only come from the old, one
        // from 300 on only from the new, and no search may show both. Each thread's first
        // search runs before the swap (the swap waits for it) and its last after (it
        // starts once the swap is done), so each sees both indexes.
        let started = std::sync::atomic::AtomicUsize::new(0);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let threads: Vec<_> = (0..2)
                .map(|t| {
                    let (old, data, stop, started) = (&old, &data, &stop, &started);
                    scope.spawn(move || {
                        let (mut saw_old, mut saw_new) = (false, false);
                        for n in 0.. {
                            let done = stop.load(Ordering::Acquire);
                            // Near v0..v99 early on, near v600..v899 at the end.
                            let i = if done {
                                600 + (t * 131 + n * 17) % 300
                            } else {
                                (t * 37 + n * 11) % 100
                            };
                            let hits = old.search(&data[i * DIM..(i + 1) * DIM], 10, None).unwrap();
                            assert_eq!(hits.len(), 10);
                            let numbers: Vec<usize> = hits
                                .iter()
                                .map(|h| h.video.as_str()[1..].parse().unwrap())
                                .collect();
                            let from_old = numbers.iter().any(|&k| k < 200);
                            let from_new = numbers.iter().any(|&k| k >= 300);
                            assert!(!(from_old && from_new), "a mix: {numbers:?}");
                            saw_old |= from_old;
                            saw_new |= from_new;
                            if n == 0 {
                                started.fetch_add(1, Ordering::AcqRel);
                            }
                            if done {
                                break;
                            }
                        }
                        (saw_old, saw_new)
                    })
                })
                .collect();
            while started.load(Ordering::Acquire) < 2 {
                std::thread::yield_now();
            }
            assert!(old.replace_with(new));
            stop.store(true, Ordering::Release);
            for t in threads {
                assert_eq!(t.join().unwrap(), (true, true), "each thread saw both");
            }
        });
        assert_eq!(old.len(), 700);
        assert_eq!(old.applied_version(), 9);
        assert_eq!(nearest(&old, &data, 850), Some(vid(850)));
        assert!(!old.contains(&vid(10)), "the old contents are gone");
        // Writes go on on the replacement.
        old.upsert(
            &vid(10),
            &Embedding::new("e", &data[10 * DIM..11 * DIM], DIM).unwrap(),
        )
        .unwrap();
        assert_eq!(nearest(&old, &data, 10), Some(vid(10)));

        // Another dimension: refused, nothing changes.
        let other =
            VideoIndex::new(8, HnswBuildParams::default(), HnswSearchParams::default()).unwrap();
        assert!(!old.replace_with(other));
        assert_eq!(old.len(), 701);
        assert_eq!(old.applied_version(), 9);
    }
}

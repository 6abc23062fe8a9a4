//! `VideoIndex`: an [`HnswIndex`] keyed by video id, implementing core's
//! [`VectorSearch`] port.
//!
//! Internal ids are assigned in order and never reused: re-upserting a video deletes its
//! old internal id and inserts the new vector under a fresh one, so a search never sees
//! a half-updated video. Lock order is always the id map, then the index.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use steerfeed_core::ports::{Neighbor, VectorSearch};
use steerfeed_core::{Embedding, VideoId};

use crate::error::{Error, Result};
use crate::hnsw::{HnswIndex, IndexStats};
use crate::index::{Filter, VectorIndex};
use crate::params::{HnswBuildParams, HnswSearchParams};

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct IdMap {
    next: u32,
    internal: HashMap<VideoId, u32>,
    #[serde(skip)]
    video: Vec<Option<VideoId>>,
}

impl IdMap {
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
#[derive(Debug)]
pub struct VideoIndex {
    index: HnswIndex,
    ids: RwLock<IdMap>,
}

const IDS_VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct IdsFile {
    version: u32,
    map: IdMap,
}

impl VideoIndex {
    /// An empty index.
    pub fn new(dim: usize, build: HnswBuildParams, search: HnswSearchParams) -> Result<Self> {
        Ok(Self {
            index: HnswIndex::new(dim, build, search)?,
            ids: RwLock::new(IdMap::default()),
        })
    }

    /// Builds the graph over `videos` in one go (start-up from the stored embeddings).
    pub fn build(
        dim: usize,
        videos: impl IntoIterator<Item = (VideoId, Embedding)>,
        build: HnswBuildParams,
        search: HnswSearchParams,
    ) -> Result<Self> {
        let mut map = IdMap::default();
        let mut items = Vec::new();
        for (video, e) in videos {
            if map.internal.contains_key(&video) {
                return Err(steerfeed_core::Error::Conflict {
                    entity: steerfeed_core::Entity::Video,
                    id: video.to_string(),
                    reason: "given twice".into(),
                }
                .into());
            }
            map.internal.insert(video, map.next);
            items.push((map.next, e));
            map.next += 1;
        }
        map.index_videos();
        Ok(Self {
            index: HnswIndex::build(dim, items, build, search)?,
            ids: RwLock::new(map),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, IdMap> {
        crate::sync::read(&self.ids)
    }

    fn write(&self) -> RwLockWriteGuard<'_, IdMap> {
        crate::sync::write(&self.ids)
    }

    /// Adds or replaces a video's vector; visible to every search that starts after this returns.
    pub fn upsert(&self, video: &VideoId, e: &Embedding) -> Result<()> {
        e.check_dim("embedding", self.index.dim())?;
        let mut ids = self.write();
        let fresh = ids.next;
        self.index.insert(fresh, e)?;
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

    /// Writes the index to `path` and its id map beside it (`path` + `.ids`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let ids = self.read();
        self.index.save(path)?;
        let ids_path = ids_path(path);
        let io = |source| Error::Io {
            path: ids_path.clone(),
            source,
        };
        let file = IdsFile {
            version: IDS_VERSION,
            map: IdMap {
                next: ids.next,
                internal: ids.internal.clone(),
                video: Vec::new(),
            },
        };
        let json = serde_json::to_vec(&file).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = ids_path.with_extension("ids.tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &ids_path).map_err(io)
    }

    /// Reads what [`VideoIndex::save`] wrote. Any mismatch between the two files is
    /// [`Error::BadFile`]: rebuild from the stored embeddings then.
    pub fn load(
        path: &Path,
        dim: usize,
        build: HnswBuildParams,
        search: HnswSearchParams,
    ) -> Result<Self> {
        let index = HnswIndex::load(path, dim, build, search)?;
        let ids_path = ids_path(path);
        let bad = |reason: String| Error::BadFile {
            path: ids_path.clone(),
            reason,
        };
        let bytes = std::fs::read(&ids_path).map_err(|source| Error::Io {
            path: ids_path.clone(),
            source,
        })?;
        let file: IdsFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if file.version != IDS_VERSION {
            return Err(bad(format!(
                "id map version {}, this build reads {IDS_VERSION}",
                file.version
            )));
        }
        let mut map = file.map;
        if map.internal.len() != index.len()
            || map
                .internal
                .values()
                .any(|&i| i >= map.next || !index.contains(i))
        {
            return Err(bad("the id map does not match the index".into()));
        }
        map.index_videos();
        Ok(Self {
            index,
            ids: RwLock::new(map),
        })
    }
}

fn ids_path(path: &Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".ids");
    p.into()
}

impl VectorSearch for VideoIndex {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        allow: Option<&(dyn Fn(&VideoId) -> bool + Sync)>,
    ) -> steerfeed_core::Result<Vec<Neighbor>> {
        let ids = self.read();
        let pass = |i: u32| {
            ids.video
                .get(i as usize)
                .and_then(Option::as_ref)
                .is_some_and(|v| allow.is_none_or(|f| f(v)))
        };
        // Replaced and removed internal ids are tombstoned in the index, so without a
        // filter every hit maps to a live video.
        let hits = match allow {
            Some(_) => self.index.search(query, k, Filter::Predicate(&pass))?,
            None => self.index.search(query, k, Filter::All)?,
        };
        Ok(hits
            .into_iter()
            .filter_map(|h| {
                ids.video
                    .get(h.id as usize)
                    .and_then(Option::as_ref)
                    .map(|v| Neighbor {
                        video: v.clone(),
                        similarity: h.similarity,
                    })
            })
            .collect())
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
        std::fs::write(
            ids_path(&path),
            b"{\"version\": 1, \"map\": {\"next\": 0, \"internal\": {}}}",
        )
        .unwrap();
        assert!(matches!(
            VideoIndex::load(
                &path,
                DIM,
                HnswBuildParams::default(),
                HnswSearchParams::default()
            ),
            Err(Error::BadFile { .. })
        ));
    }
}

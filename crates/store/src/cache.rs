//! A bounded, sharded cache of decoded videos.
//!
//! Invalidation is race-free: each shard has a version that writers bump (under the
//! shard lock) after changing sled and before removing the entry; a reader that missed
//! notes the version before reading sled and inserts what it read only if the version
//! has not moved, so a value read before a write can never be cached after it.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use std::sync::{Arc, RwLock};

use steerfeed_core::{Video, VideoId};

const SHARDS: usize = 16;

/// A hash map with foldhash (fast, seeded per process) for the store's long-lived maps.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, RandomState>;
/// The set of [`FastMap`].
pub(crate) type FastSet<K> = std::collections::HashSet<K, RandomState>;

#[derive(Default)]
struct Shard {
    map: FastMap<VideoId, Arc<Video>>,
    version: u64,
}

pub(crate) struct VideoCache {
    shards: Vec<RwLock<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

impl VideoCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS),
            hasher: RandomState::default(),
        }
    }

    fn shard(&self, id: &VideoId) -> &RwLock<Shard> {
        let h = self.hasher.hash_one(id.as_str()) as usize;
        &self.shards[h % SHARDS]
    }

    /// The cached video, or the shard version to pass to [`VideoCache::insert`].
    pub fn get(&self, id: &VideoId) -> Result<Arc<Video>, u64> {
        let s = self.shard(id).read().unwrap_or_else(|e| e.into_inner());
        match s.map.get(id) {
            Some(v) => Ok(Arc::clone(v)),
            None => Err(s.version),
        }
    }

    /// Caches `video` read at shard version `version`, unless a writer moved since.
    pub fn insert(&self, video: &Arc<Video>, version: u64) {
        if self.per_shard == 0 {
            return;
        }
        let mut s = self
            .shard(&video.id)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if s.version != version {
            return;
        }
        if s.map.len() >= self.per_shard
            && !s.map.contains_key(&video.id)
            && let Some(evict) = s.map.keys().next().cloned()
        {
            // HashMap order is effectively random: a cheap random eviction.
            s.map.remove(&evict);
        }
        s.map.insert(video.id.clone(), Arc::clone(video));
    }

    /// Forgets `id`; call after the write reached sled.
    pub fn invalidate(&self, id: &VideoId) {
        let mut s = self.shard(id).write().unwrap_or_else(|e| e.into_inner());
        s.version += 1;
        s.map.remove(id);
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }
}

/// A bounded cache of decoded per-user records (users, preferences, parental controls),
/// with the same race-free rule as [`VideoCache`]: one version for the whole map, bumped
/// by writers after their sled commit; a reader that missed inserts what it read only if
/// the version has not moved since before its read. Writes to these records are rare,
/// so one version is enough.
pub(crate) struct RecordCache<V> {
    inner: RwLock<Records<V>>,
    cap: usize,
}

struct Records<V> {
    map: FastMap<steerfeed_core::UserId, V>,
    version: u64,
}

impl<V: Clone> RecordCache<V> {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: RwLock::new(Records {
                map: FastMap::default(),
                version: 0,
            }),
            cap,
        }
    }

    /// The cached record, or the version to pass to [`RecordCache::insert`].
    pub fn get(&self, id: &steerfeed_core::UserId) -> Result<V, u64> {
        let r = self.inner.read().unwrap_or_else(|e| e.into_inner());
        match r.map.get(id) {
            Some(v) => Ok(v.clone()),
            None => Err(r.version),
        }
    }

    /// Caches `value` read at `version`, unless a writer moved since; starts over when
    /// full.
    pub fn insert(&self, id: &steerfeed_core::UserId, value: V, version: u64) {
        if self.cap == 0 {
            return;
        }
        let mut w = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if w.version != version {
            return;
        }
        if w.map.len() >= self.cap {
            w.map.clear();
        }
        w.map.insert(id.clone(), value);
    }

    /// Forgets `id`; call after the write reached sled.
    pub fn invalidate(&self, id: &steerfeed_core::UserId) {
        let mut w = self.inner.write().unwrap_or_else(|e| e.into_inner());
        w.version += 1;
        w.map.remove(id);
    }
}

/// One shared allocation per id: ids the store hands out (decoded videos, the mirrors)
/// come from here, so comparing two of them is a pointer comparison (see core's ids)
/// instead of a read of both strings, which in large maps is a cache miss each. Holds
/// every id interned for the life of the store (about 40 bytes each).
pub(crate) struct Interner<T> {
    set: RwLock<FastSet<T>>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Self {
            set: RwLock::new(FastSet::default()),
        }
    }
}

impl<T> Interner<T>
where
    T: Clone + Eq + std::hash::Hash + std::borrow::Borrow<str>,
{
    /// The shared allocation of `id`'s text (`id` itself the first time).
    pub fn get(&self, id: &T) -> T {
        let key: &str = id.borrow();
        if let Some(c) = self.set.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return c.clone();
        }
        let mut w = self.set.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = w.get(key) {
            return c.clone();
        }
        w.insert(id.clone());
        id.clone()
    }
}

/// The store's interners.
#[derive(Default)]
pub(crate) struct Ids {
    videos: Interner<steerfeed_core::VideoId>,
    users: Interner<steerfeed_core::UserId>,
    /// Topics are few: sharing them keeps their bytes in cache for the many maps keyed
    /// by topic (the page's caps, the topic source).
    topics: Interner<steerfeed_core::TopicId>,
}

impl Ids {
    pub fn video(&self, id: &steerfeed_core::VideoId) -> steerfeed_core::VideoId {
        self.videos.get(id)
    }

    pub fn user(&self, id: &steerfeed_core::UserId) -> steerfeed_core::UserId {
        self.users.get(id)
    }

    /// `v` with its ids (own, creator, cameos, remixed video, topics) shared.
    pub fn canonical(&self, mut v: Video) -> Video {
        v.id = self.video(&v.id);
        v.creator = self.user(&v.creator);
        for t in &mut v.topics {
            *t = self.topics.get(t);
        }
        for p in &mut v.cameos {
            *p = self.user(p);
        }
        if let Some(r) = &v.remix_of {
            v.remix_of = Some(self.video(r));
        }
        v
    }
}

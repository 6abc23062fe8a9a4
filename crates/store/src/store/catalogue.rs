//! The catalogue: videos and their embeddings, the time indexes, the catalogue version
//! and the log of which videos each version changed.

use super::*;

/// A `catalog_log` key: the catalog version (big-endian, so the log sorts by version)
/// followed by the video id.
fn catalog_log_key(version: u64, id: &VideoId) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.as_str().len());
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

impl Store {
    // -----------------------------------------------------------------------------------
    // Videos.

    /// Inserts or replaces videos, all or nothing. Each must validate for the store's
    /// dimension and carry its embedding (the engine computes it from the caption first).
    /// A repeated id in the batch: the last one wins. Durable when it returns.
    pub fn upsert_videos(&self, videos: &[Video]) -> Result<()> {
        let dim = self.inner.opts.dim;
        for (i, v) in videos.iter().enumerate() {
            let bad = |e: Error| {
                Error::invalid("videos", format!("video {i} ({:?}): {e}", v.id.as_str()))
            };
            v.validate(dim).map_err(bad)?;
            if v.embedding.is_none() {
                return Err(bad(Error::invalid(
                    "embedding",
                    "required: the engine computes it from the caption before storing",
                )));
            }
        }
        // The creator and every person in a cameo must be known users: consent and age
        // rules are read from their records. (A remix may name a video not stored yet.)
        let erasures = self.erasure_epoch();
        for v in videos {
            self.require_user(&v.creator)?;
            for p in &v.cameos {
                self.require_user(p)?;
            }
        }
        let mut last = std::collections::HashMap::new();
        for (i, v) in videos.iter().enumerate() {
            last.insert(&v.id, i);
        }
        let batch: Vec<&Video> = videos
            .iter()
            .enumerate()
            .filter(|(i, v)| last.get(&v.id) == Some(i))
            .map(|(_, v)| v)
            .collect();
        let generation = {
            let _p = self.persist_lock();
            let _g = self.write_lock();
            self.still_known(
                erasures,
                batch
                    .iter()
                    .flat_map(|v| std::iter::once(&v.creator).chain(&v.cameos)),
            )?;
            let t = self.t();
            let mut w = Writes::default();
            let mut live_delta: i64 = 0;
            let mut olds = Vec::with_capacity(batch.len());
            for v in &batch {
                // An unreadable old record is replaced as if absent (its time-index keys,
                // which cannot be known, may stay behind; they name this id, whose new
                // record is what they then read).
                let old = match t.videos.get(v.id.as_str()).map_err(db_err)? {
                    Some(b) => decode_video(&b).ok(),
                    None => None,
                };
                if let Some(o) = &old
                    && !o.deleted
                {
                    self.unindex(&mut w, o);
                    live_delta -= 1;
                }
                w.insert(&t.videos, v.id.as_str(), encode_video(v));
                if let Some(e) = &v.embedding {
                    let mut b = Vec::new();
                    codec::encode_f32s(&mut b, e.as_slice());
                    w.insert(&t.embeddings, v.id.as_str(), b);
                }
                if !v.deleted {
                    self.index(&mut w, v);
                    live_delta += 1;
                } else {
                    w.remove(&t.counters, v.id.as_str());
                }
                olds.push(old);
            }
            let live = self.adjust_live(&mut w, live_delta);
            let version = self.bump_catalog(&mut w, batch.iter().map(|v| &v.id));
            let generation = self.commit_writes(w)?;
            self.inner.live_videos.store(live, Ordering::Release);
            self.inner.catalog_version.store(version, Ordering::Release);
            {
                let mut m = self.inner.mirror.time_mut();
                for (v, old) in batch.iter().zip(&olds) {
                    if let Some(o) = old
                        && !o.deleted
                    {
                        m.unindex(o);
                    }
                    if !v.deleted {
                        m.index(v, &self.inner.ids);
                    }
                }
            }
            for v in &batch {
                self.inner.cache.invalidate(&v.id);
            }
            let deleted: Vec<&VideoId> =
                batch.iter().filter(|v| v.deleted).map(|v| &v.id).collect();
            self.forget_deleted_videos(&deleted);
            generation
        };
        self.durable(generation)
    }

    /// The next catalog version, written in the same transaction as the change, with one
    /// `catalog_log` entry per video the change touches.
    pub(super) fn bump_catalog<'a, 'i>(
        &'a self,
        w: &mut Writes<'a>,
        videos: impl Iterator<Item = &'i VideoId>,
    ) -> u64 {
        let t = self.t();
        let v = self.inner.catalog_version.load(Ordering::Acquire) + 1;
        w.insert(&t.meta, CATALOG_VERSION_KEY, v.to_be_bytes());
        for id in videos {
            w.insert(&t.catalog_log, catalog_log_key(v, id), []);
        }
        v
    }

    /// The catalog version: bumped durably by every [`Store::upsert_videos`] and
    /// [`Store::delete_video`], so an ANN index saved with the version it reflects can
    /// tell what changed since ([`Store::catalog_changes_since`]).
    pub fn catalog_version(&self) -> u64 {
        self.inner.catalog_version.load(Ordering::Acquire)
    }

    /// The distinct videos changed (upserted or deleted) at catalog versions above
    /// `version`, in id order; `None` when the catalog log cannot tell: `version` is
    /// below the log's floor (trimmed, or from before the store kept a log) or above the
    /// current catalog version (the caller's state is from some other store).
    pub fn catalog_changes_since(&self, version: u64) -> Result<Option<Vec<VideoId>>> {
        if version < self.catalog_log_floor() || version > self.catalog_version() {
            return Ok(None);
        }
        let mut ids = std::collections::BTreeSet::new();
        let from = version.checked_add(1).map(u64::to_be_bytes);
        let scan = match from {
            Some(from) => self.t().catalog_log.range(from..),
            None => return Ok(Some(Vec::new())),
        };
        for kv in scan {
            let (k, _) = kv.map_err(db_err)?;
            let id = k
                .get(8..)
                .ok_or_else(|| corrupt("catalog log key"))
                .and_then(video_of)?;
            ids.insert(id);
        }
        // A trim removes entries only after raising the floor: if the floor is still at or
        // below `version`, nothing above `version` was removed while this scanned.
        if version < self.catalog_log_floor() {
            return Ok(None);
        }
        Ok(Some(ids.into_iter().collect()))
    }

    /// The catalog log's floor: the log holds every change made at a version above it.
    pub fn catalog_log_floor(&self) -> u64 {
        self.inner.catalog_floor.load(Ordering::Acquire)
    }

    /// Forgets the catalog log up to `version` (clamped to the current catalog version):
    /// raises the floor durably, then removes the entries at or below it. Call once a
    /// state reflecting every change up to `version` is durable elsewhere (a saved
    /// index). A crash between the two steps only leaves entries below the floor, which
    /// no reader looks at and the next trim removes.
    pub fn trim_catalog_log(&self, version: u64) -> Result<()> {
        let upto = version.min(self.catalog_version());
        let t = self.t();
        {
            let _g = self.write_lock();
            if upto > self.catalog_log_floor() {
                t.meta
                    .insert(CATALOG_FLOOR_KEY, &upto.to_be_bytes())
                    .map_err(db_err)?;
                self.inner.catalog_floor.store(upto, Ordering::Release);
            }
        }
        self.inner.db.flush().map_err(db_err)?;
        let end = upto.checked_add(1).map(u64::to_be_bytes);
        loop {
            let mut batch = Batch::default();
            let mut n = 0;
            let keys = match end {
                Some(end) => t.catalog_log.range(..end),
                None => t.catalog_log.range::<&[u8], _>(..),
            };
            for kv in keys.take(TRIM_CHUNK) {
                let (k, _) = kv.map_err(db_err)?;
                batch.remove(k);
                n += 1;
            }
            if n == 0 {
                return Ok(());
            }
            // Under the write lock, as every write: a copy of the store's files
            // (`copy_to`) holds it to see no write in progress.
            let _g = self.write_lock();
            t.catalog_log.apply_batch(batch).map_err(db_err)?;
        }
    }

    pub(super) fn adjust_live<'a>(&'a self, w: &mut Writes<'a>, delta: i64) -> u64 {
        let live = (self.inner.live_videos.load(Ordering::Acquire) as i64 + delta).max(0) as u64;
        if delta != 0 {
            w.insert(&self.t().meta, LIVE_VIDEOS_KEY, live.to_be_bytes());
        }
        live
    }

    pub(super) fn index<'a>(&'a self, w: &mut Writes<'a>, v: &Video) {
        let t = self.t();
        let at = ms(v.created_at);
        let id = v.id.as_str();
        w.insert(&t.by_creator, timed(v.creator.as_str(), at, id), []);
        w.insert(&t.newest, timed_global(at, id), []);
        for p in &v.cameos {
            w.insert(&t.featuring, timed(p.as_str(), at, id), []);
        }
        for topic in &v.topics {
            w.insert(&t.by_topic, timed(topic.as_str(), at, id), []);
        }
    }

    pub(super) fn unindex<'a>(&'a self, w: &mut Writes<'a>, v: &Video) {
        let t = self.t();
        let at = ms(v.created_at);
        let id = v.id.as_str();
        w.remove(&t.by_creator, timed(v.creator.as_str(), at, id));
        w.remove(&t.newest, timed_global(at, id));
        for p in &v.cameos {
            w.remove(&t.featuring, timed(p.as_str(), at, id));
        }
        for topic in &v.topics {
            w.remove(&t.by_topic, timed(topic.as_str(), at, id));
        }
    }

    /// Marks a video deleted: it leaves the time indexes, the counters and the top lists,
    /// and every cache, before this returns (durable). Deleting twice is not an error.
    pub fn delete_video(&self, id: &VideoId) -> Result<()> {
        let generation = {
            let _p = self.persist_lock();
            let _g = self.write_lock();
            let t = self.t();
            let b = t
                .videos
                .get(id.as_str())
                .map_err(db_err)?
                .ok_or_else(|| Error::not_found(Entity::Video, id))?;
            let Ok(mut v) = decode_video(&b) else {
                // Unreadable (withheld already): deleting it removes the record outright.
                let mut w = Writes::default();
                w.remove(&t.videos, id.as_str());
                w.remove(&t.embeddings, id.as_str());
                w.remove(&t.counters, id.as_str());
                let version = self.bump_catalog(&mut w, std::iter::once(id));
                let generation = self.commit_writes(w)?;
                self.inner.catalog_version.store(version, Ordering::Release);
                self.inner.cache.invalidate(id);
                drop((_g, _p));
                return self.durable(generation);
            };
            let mut w = Writes::default();
            let mut delta = 0;
            let was_live = !v.deleted;
            if was_live {
                self.unindex(&mut w, &v);
                v.deleted = true;
                delta = -1;
                w.insert(&t.videos, id.as_str(), encode_video(&v));
                w.remove(&t.counters, id.as_str());
            }
            let live = self.adjust_live(&mut w, delta);
            let version = self.bump_catalog(&mut w, std::iter::once(id));
            let generation = self.commit_writes(w)?;
            self.inner.live_videos.store(live, Ordering::Release);
            self.inner.catalog_version.store(version, Ordering::Release);
            if was_live {
                self.inner.mirror.time_mut().unindex(&v);
            }
            self.forget_deleted_videos(&[id]);
            generation
        };
        self.durable(generation)
    }

    /// Drops what memory holds of videos just deleted in sled (call under the write
    /// lock): their decoded records, their counters (the overlay's, the cache's, and the
    /// clean layer, which may hold them, as a whole) and their places in the top lists.
    pub(super) fn forget_deleted_videos(&self, ids: &[&VideoId]) {
        if ids.is_empty() {
            return;
        }
        {
            let mut ov = self.overlay_write();
            for id in ids {
                ov.active.counters.remove(*id);
            }
            let old = ov.clean.take();
            self.forget_layer(old.as_deref());
        }
        for id in ids {
            self.inner.cache.invalidate(id);
            self.forget_counter(id);
            lock(&self.inner.popular).remove(id);
            lock(&self.inner.remix).remove(id);
        }
    }

    /// The store's shared allocation of `id` (`id` itself the first time). Ids other
    /// parts keep for long (the vector index's id table) should come from here: the
    /// store's caches then compare them by pointer, without reading the bytes.
    pub fn intern_video(&self, id: &VideoId) -> VideoId {
        self.inner.ids.video(id)
    }

    /// The video (deleted or not, with its embedding), from the cache when it is there.
    pub fn video(&self, id: &VideoId) -> Result<Option<Arc<Video>>> {
        let version = match self.inner.cache.get(id) {
            Ok(v) => return Ok(Some(v)),
            Err(version) => version,
        };
        let t = self.t();
        let Some(b) = t.videos.get(id.as_str()).map_err(db_err)? else {
            return Ok(None);
        };
        // An unreadable record is withheld: read as absent until an upsert replaces it.
        let Ok(v) = decode_video(&b) else {
            self.inner
                .damage
                .note("videos", id.as_str().as_bytes(), DamageRule::VideoWithheld);
            return Ok(None);
        };
        let mut v = self.inner.ids.canonical(v);
        if let Some(e) = t.embeddings.get(id.as_str()).map_err(db_err)? {
            match decode_embedding(&e) {
                Ok(e) => v.embedding = Some(e),
                // Unreadable: the video is withheld (read as deleted) until re-upserted.
                Err(_) => {
                    self.inner.damage.note(
                        "embeddings",
                        id.as_str().as_bytes(),
                        DamageRule::VideoWithheld,
                    );
                    v.deleted = true;
                }
            }
        }
        let v = Arc::new(v);
        self.inner.cache.insert(&v, version);
        Ok(Some(v))
    }

    /// Many videos at once, in the order asked (`None` for unknown ids).
    pub fn videos(&self, ids: &[&VideoId]) -> Result<Vec<Option<Arc<Video>>>> {
        ids.iter().map(|id| self.video(id)).collect()
    }

    /// Calls `f(id, embedding, topics)` for every live stored video, in id order (to
    /// build or rebuild the ANN index). Deleted videos' embeddings are not read. A video whose
    /// record or embedding cannot be read is skipped, withheld and noted (see
    /// [`Store::damage`]). Stops at the first error `f` returns.
    pub fn for_each_embedding(
        &self,
        mut f: impl FnMut(VideoId, Embedding, Vec<steerfeed_core::TopicId>) -> Result<()>,
    ) -> Result<()> {
        let t = self.t();
        for kv in t.embeddings.iter() {
            let (k, e) = kv.map_err(db_err)?;
            let withheld = |what: &'static str| {
                self.inner.damage.note(what, &k, DamageRule::VideoWithheld);
            };
            let Ok(id) = video_of(&k) else {
                withheld("embeddings");
                continue;
            };
            let topics = match t.videos.get(&k).map_err(db_err)? {
                Some(b) => match decode_video(&b) {
                    Ok(v) if !v.deleted => Some(v.topics),
                    Ok(_) => None,
                    Err(_) => {
                        withheld("videos");
                        None
                    }
                },
                None => None,
            };
            let Some(topics) = topics else {
                continue;
            };
            match decode_embedding(&e) {
                Ok(e) => f(id, e, topics)?,
                Err(_) => withheld("embeddings"),
            }
        }
        Ok(())
    }

    /// Decoded videos currently cached in memory.
    pub fn cached_videos(&self) -> usize {
        self.inner.cache.len()
    }

    /// Videos not deleted.
    pub fn video_count(&self) -> u64 {
        self.inner.live_videos.load(Ordering::Acquire)
    }

    /// Accounts stored (erased people are removed). A scan of the accounts' keys.
    pub fn user_count(&self) -> Result<u64> {
        Ok(self.t().users.len() as u64)
    }
}

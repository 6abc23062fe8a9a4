//! The core ports, implemented on [`Store`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;
use steerfeed_core::ports::{
    ActionCounts, ActionStats, CameoConsent, ConsentLedger, Engagement, EngagementStats,
    SocialGraph, UserHistory, VideoCatalog,
};
use steerfeed_core::{Result, TopicId, UserId, Video, VideoId};

use crate::codec::{CounterRec, ms};
use crate::mirror::{TimeIndex, Timeline};
use crate::store::Store;
use crate::trees::db_err;

fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Videos from the newest-first timeline `pick` chooses in the in-memory time index.
    fn scan_timed(
        &self,
        pick: impl FnOnce(&TimeIndex) -> Option<&Timeline>,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>> {
        let since = since.map(ms);
        let ids: Vec<VideoId> = {
            let m = self.inner.mirror().time();
            let Some(line) = pick(&m) else {
                return Ok(Vec::new());
            };
            line.iter()
                .take_while(|(at, _)| since.is_none_or(|s| at.0 >= s))
                .take(limit)
                .map(|(_, id)| id.clone())
                .collect()
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(v) = self.video(id)?
                && !v.deleted
            {
                out.push(v);
            }
        }
        Ok(out)
    }
}

impl VideoCatalog for Store {
    fn video(&self, id: &VideoId) -> Result<Option<Arc<Video>>> {
        Store::video(self, id)
    }

    fn recent_by_creator(
        &self,
        creator: &UserId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>> {
        self.scan_timed(|m| m.by_creator.get(creator), Some(since), limit)
    }

    fn newest(&self, since: Timestamp, limit: usize) -> Result<Vec<Arc<Video>>> {
        self.scan_timed(|m| Some(&m.newest), Some(since), limit)
    }

    fn featuring(&self, person: &UserId, limit: usize) -> Result<Vec<Arc<Video>>> {
        self.scan_timed(|m| m.featuring.get(person), None, limit)
    }

    fn recent_by_topic(
        &self,
        topic: &TopicId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>> {
        self.scan_timed(|m| m.by_topic.get(topic), Some(since), limit)
    }

    fn creator_video_count(&self, creator: &UserId, up_to: usize) -> Result<usize> {
        Ok(self
            .inner
            .mirror()
            .time()
            .by_creator
            .get(creator)
            .map_or(0, |line| line.len().min(up_to)))
    }
}

impl SocialGraph for Store {
    fn following(&self, user: &UserId) -> Result<Vec<UserId>> {
        self.following_ids(user)
    }

    fn follows(&self, a: &UserId, b: &UserId) -> Result<bool> {
        self.follows_edge(a, b)
    }
}

impl EngagementStats for Store {
    fn popular(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>> {
        Ok(self
            .inner
            .popular()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .top(ms(now), limit))
    }

    fn remix_trending(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>> {
        Ok(self
            .inner
            .remix()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .top(ms(now), limit))
    }
}

impl ActionStats for Store {
    fn video_counts(&self, videos: &[&VideoId], now: Timestamp) -> Result<Vec<ActionCounts>> {
        let hl = self.half_life_ms();
        let now = ms(now);
        // The overlay (newest), then the read cache, then sled (filling the cache).
        let epoch = self.inner.counter_epoch().load(Ordering::Acquire);
        let mut out: Vec<Option<Option<CounterRec>>> = {
            let ov = self.overlay_read();
            let cache = read(self.inner.counter_cache());
            videos
                .iter()
                .map(|id| match ov.counter(id) {
                    Some(rec) => Some(Some(*rec)),
                    None => cache.get(*id).copied(),
                })
                .collect()
        };
        let mut fill = Vec::new();
        for (slot, id) in out.iter_mut().zip(videos) {
            if slot.is_none() {
                let rec = match self.t().counters.get(id.as_str()).map_err(db_err)? {
                    Some(b) => Some(CounterRec::decode(&b)?),
                    None => None,
                };
                *slot = Some(rec);
                fill.push(((*id).clone(), rec));
            }
        }
        if !fill.is_empty() {
            let mut cache = write(self.inner.counter_cache());
            if self.inner.counter_epoch().load(Ordering::Acquire) != epoch {
                fill.clear(); // something was dropped meanwhile: do not cache what we read
            }
            if cache.len() + fill.len() > self.max_cached_counters() {
                cache.clear();
            }
            cache.extend(fill);
        }
        Ok(out
            .into_iter()
            .map(|r| {
                r.flatten()
                    .map_or_else(ActionCounts::default, |r| r.counts_at(now, hl))
            })
            .collect())
    }

    fn creator_counts(&self, creator: &UserId, now: Timestamp) -> Result<ActionCounts> {
        let at = |rec: Option<CounterRec>| {
            rec.map_or_else(ActionCounts::default, |r| {
                r.counts_at(ms(now), self.half_life_ms())
            })
        };
        let epoch = self.inner.counter_epoch().load(Ordering::Acquire);
        if let Some(rec) = self.overlay_read().creator(creator) {
            return Ok(at(Some(*rec)));
        }
        if let Some(rec) = read(self.inner.creator_cache()).get(creator) {
            return Ok(at(*rec));
        }
        let rec = match self
            .t()
            .creator_counts
            .get(creator.as_str())
            .map_err(db_err)?
        {
            Some(b) => Some(CounterRec::decode(&b)?),
            None => None,
        };
        let mut cache = write(self.inner.creator_cache());
        if self.inner.counter_epoch().load(Ordering::Acquire) == epoch {
            if cache.len() >= self.max_cached_counters() {
                cache.clear();
            }
            cache.insert(creator.clone(), rec);
        }
        Ok(at(rec))
    }
}

impl UserHistory for Store {
    fn recent_engagements(&self, user: &UserId, limit: usize) -> Result<Vec<Engagement>> {
        Store::recent_engagements(self, user, limit)
    }
}

impl ConsentLedger for Store {
    fn cameo_consent(
        &self,
        person: &UserId,
        creator: &UserId,
        video: &VideoId,
    ) -> Result<Option<CameoConsent>> {
        let Some(facts) = self.person_facts(person)? else {
            return Ok(None);
        };
        // Revocations are read fresh every time (from the mirror, which changes before
        // `revoke_consent` returns): they must be in force at once.
        let rel = self.inner.mirror().rel();
        Ok(Some(CameoConsent {
            scope: facts.scope,
            age_band: facts.age_band,
            parental_scope: facts.parental_scope,
            creator_approved: rel.is_approved(person, creator),
            mutual: rel.mutual(person, creator),
            revoked: rel.revoked(person, Some(video), Some(creator)),
        }))
    }
}

//! The core ports, implemented on [`Store`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use jiff::Timestamp;
use steerfeed_core::ports::{
    ActionCounts, ActionStats, CameoConsent, ConsentLedger, Engagement, EngagementStats,
    SocialGraph, UserHistory, VideoCatalog,
};
use steerfeed_core::{Result, TopicId, UserId, Video, VideoId};

use crate::codec::{CounterRec, after_sep, corrupt, from_newest_first, ms, pair, prefix};
use crate::store::{MAX_CACHED_COUNTERS, Revocation, Store, db_err};

fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Videos from a newest-first index scan: keys are `[owner \0] time(8) id`.
    fn scan_timed(
        &self,
        tree: &sled::Tree,
        owner: Option<&str>,
        since: Option<Timestamp>,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>> {
        let iter = match owner {
            Some(o) => tree.scan_prefix(prefix(o)),
            None => tree.iter(),
        };
        let mut out = Vec::new();
        for kv in iter {
            if out.len() >= limit {
                break;
            }
            let (k, _) = kv.map_err(db_err)?;
            let rest = match owner {
                Some(_) => after_sep(&k).ok_or_else(|| corrupt("time index key"))?,
                None => &k[..],
            };
            let at = from_newest_first(rest).ok_or_else(|| corrupt("time index key"))?;
            if since.is_some_and(|s| at < ms(s)) {
                break;
            }
            let id = Store::video_of_key(&rest[8..])?;
            if let Some(v) = self.video(&id)?
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
        self.scan_timed(
            &self.t().by_creator,
            Some(creator.as_str()),
            Some(since),
            limit,
        )
    }

    fn newest(&self, since: Timestamp, limit: usize) -> Result<Vec<Arc<Video>>> {
        self.scan_timed(&self.t().newest, None, Some(since), limit)
    }

    fn featuring(&self, person: &UserId, limit: usize) -> Result<Vec<Arc<Video>>> {
        self.scan_timed(&self.t().featuring, Some(person.as_str()), None, limit)
    }

    fn recent_by_topic(
        &self,
        topic: &TopicId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>> {
        self.scan_timed(&self.t().by_topic, Some(topic.as_str()), Some(since), limit)
    }

    fn creator_video_count(&self, creator: &UserId, up_to: usize) -> Result<usize> {
        let mut n = 0;
        for kv in self
            .t()
            .by_creator
            .scan_prefix(prefix(creator.as_str()))
            .take(up_to)
        {
            kv.map_err(db_err)?;
            n += 1;
        }
        Ok(n)
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
            .popular
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .top(ms(now), limit))
    }

    fn remix_trending(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>> {
        Ok(self
            .inner
            .remix
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
        let epoch = self.inner.counter_epoch.load(Ordering::Acquire);
        let mut out: Vec<Option<Option<CounterRec>>> = {
            let ov = self.overlay_read();
            let cache = read(&self.inner.counter_cache);
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
            let mut cache = write(&self.inner.counter_cache);
            if self.inner.counter_epoch.load(Ordering::Acquire) != epoch {
                fill.clear(); // something was dropped meanwhile: do not cache what we read
            }
            if cache.len() + fill.len() > MAX_CACHED_COUNTERS {
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
        let epoch = self.inner.counter_epoch.load(Ordering::Acquire);
        if let Some(rec) = self.overlay_read().creator(creator) {
            return Ok(at(Some(*rec)));
        }
        if let Some(rec) = read(&self.inner.creator_cache).get(creator) {
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
        let mut cache = write(&self.inner.creator_cache);
        if self.inner.counter_epoch.load(Ordering::Acquire) == epoch {
            if cache.len() >= MAX_CACHED_COUNTERS {
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
        let t = self.t();
        // Revocations are read fresh every time: they must be in force at once.
        let revoked = self.is_revoked(person, &Revocation::Video(video.clone()))?
            || self.is_revoked(person, &Revocation::Creator(creator.clone()))?;
        Ok(Some(CameoConsent {
            scope: facts.scope,
            age_band: facts.age_band,
            parental_scope: facts.parental_scope,
            creator_approved: t
                .approved
                .contains_key(pair(person.as_str(), creator.as_str()))
                .map_err(db_err)?,
            mutual: self.follows_edge(person, creator)? && self.follows_edge(creator, person)?,
            revoked,
        }))
    }
}

//! Page pools: the ranked candidates a page left unserved, kept per user so the next
//! page of the same session is picked from them instead of ranking from scratch.
//!
//! A pool is what [`Pipeline::run_pooled`](steerfeed_core::Pipeline::run_pooled) returns
//! next to a page: up to `size` scored candidates, best first, the page's own taken out.
//! The next request of the same user and session within `ttl_s` of the full ranking
//! that made it takes the pool (no other request can use it meanwhile), and the engine
//! runs the gates, every filter, the selector and the inline throttles on it, with each
//! video read again from the catalog when the catalog changed since (its version moved),
//! so consent, deletions, blocks, seen items, safety and audience rules hold exactly as
//! on a fresh page. What a pool trades away is only
//! freshness of the candidate set and scores: videos uploaded after the full ranking,
//! and engagement counted since, reach the user at the next full ranking (at most
//! `ttl_s` later, or when the pool runs low).
//!
//! Writes that change what the sources or the objective see for a user (preferences,
//! parental controls, follows, blocks, mutes, the user record, relation events) call
//! [`Pools::forget`], and a pool built from state read before such a write is never
//! stored: every build carries the invalidation stamp it read first.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steerfeed_core::{Candidate, IdMap, SessionId, Timestamp, UserId};

/// How long an invalidation mark is kept: far longer than any feed request takes.
const MARK_LIFETIME: Duration = Duration::from_secs(30);

/// Settings of the page pools (`[pages]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagesConfig {
    /// Seconds a pool stays usable after the full ranking that made it; 0 turns pools
    /// off (every page is ranked from scratch).
    pub pool_ttl_s: u64,
    /// Candidates kept per pool.
    pub pool_size: usize,
    /// Users with a pool at most; when full, expired pools go first, then all.
    pub pool_users: usize,
}

impl Default for PagesConfig {
    fn default() -> Self {
        Self {
            pool_ttl_s: 60,
            pool_size: 400,
            pool_users: 20_000,
        }
    }
}

impl PagesConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> steerfeed_core::Result<()> {
        if self.pool_ttl_s > 3_600 {
            return Err(steerfeed_core::Error::OutOfRange {
                field: "pages.pool_ttl_s",
                got: self.pool_ttl_s as f64,
                min: 0.0,
                max: 3_600.0,
            });
        }
        if self.pool_ttl_s > 0 && (self.pool_size == 0 || self.pool_users == 0) {
            return Err(steerfeed_core::Error::invalid(
                "pages",
                "pool_size and pool_users must be at least 1 when pools are on",
            ));
        }
        Ok(())
    }
}

/// A pool taken for one request.
pub(crate) struct Taken {
    /// The candidates, best first.
    pub candidates: Vec<Candidate>,
    /// When the full ranking that made the pool ran (request time).
    pub ranked_at: Timestamp,
    /// The store's catalog version read before that ranking: when it has not moved,
    /// the pool's videos are still the catalog's.
    pub catalog: u64,
}

enum Entry {
    Pool {
        candidates: Vec<Candidate>,
        ranked_at: Timestamp,
        catalog: u64,
        session: Option<SessionId>,
        /// The rank profile that ranked it.
        profile: String,
    },
    /// The user's ranking inputs changed at invalidation stamp `stamp`.
    Forgotten { stamp: u64, at: Instant },
}

const SHARDS: usize = 16;

/// Every user's pool, in shards to keep lock hold times short.
pub(crate) struct Pools {
    cfg: PagesConfig,
    shards: Vec<Mutex<IdMap<UserId, Entry>>>,
    stamp: AtomicU64,
}

impl Pools {
    pub fn new(cfg: PagesConfig) -> Self {
        Self {
            cfg,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            stamp: AtomicU64::new(0),
        }
    }

    /// True when pools are on.
    pub fn enabled(&self) -> bool {
        self.cfg.pool_ttl_s > 0
    }

    /// Candidates to keep per pool (0 when pools are off).
    pub fn size(&self) -> usize {
        if self.enabled() {
            self.cfg.pool_size
        } else {
            0
        }
    }

    /// The invalidation stamp to read before a ranking's inputs.
    pub fn stamp(&self) -> u64 {
        self.stamp.load(Ordering::Acquire)
    }

    fn shard(&self, user: &UserId) -> std::sync::MutexGuard<'_, IdMap<UserId, Entry>> {
        let h = user.as_str().bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        self.shards[h % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `user`'s pool when it belongs to `session`, was ranked by `profile` and is
    /// still fresh at `now`.
    pub fn take(
        &self,
        user: &UserId,
        session: Option<&SessionId>,
        now: Timestamp,
        profile: &str,
    ) -> Option<Taken> {
        if !self.enabled() {
            return None;
        }
        let mut shard = self.shard(user);
        if !matches!(shard.get(user), Some(Entry::Pool { .. })) {
            return None;
        }
        let Some(Entry::Pool {
            candidates,
            ranked_at,
            catalog,
            session: owner,
            profile: ranked_by,
        }) = shard.remove(user)
        else {
            return None;
        };
        let age_ms = now.as_millisecond() - ranked_at.as_millisecond();
        let fresh = (0..=self.ttl_ms()).contains(&age_ms);
        (fresh && owner.as_ref() == session && ranked_by == profile).then_some(Taken {
            candidates,
            ranked_at,
            catalog,
        })
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.cfg.pool_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The videos of `user`'s pool, best first, without taking it.
    pub fn peek(&self, user: &UserId) -> Option<Vec<steerfeed_core::VideoId>> {
        match self.shard(user).get(user) {
            Some(Entry::Pool { candidates, .. }) => {
                Some(candidates.iter().map(|c| c.id().clone()).collect())
            }
            _ => None,
        }
    }

    /// Keeps `candidates` as `user`'s pool, unless the user's inputs changed after
    /// `stamp` (read before the ranking's inputs were). `catalog` is the store's catalog
    /// version read before the ranking.
    pub fn put(
        &self,
        user: &UserId,
        stamp: u64,
        candidates: Vec<Candidate>,
        (ranked_at, catalog): (Timestamp, u64),
        session: Option<&SessionId>,
        profile: &str,
    ) {
        if !self.enabled() || candidates.is_empty() {
            return;
        }
        let mut shard = self.shard(user);
        if let Some(Entry::Forgotten { stamp: s, .. }) = shard.get(user)
            && *s > stamp
        {
            return;
        }
        let cap = self.cfg.pool_users.div_ceil(SHARDS).max(1);
        if shard.len() >= cap {
            let ttl = self.ttl_ms();
            let now = ranked_at.as_millisecond();
            shard.retain(|_, e| match e {
                Entry::Pool { ranked_at, .. } => now - ranked_at.as_millisecond() <= ttl,
                Entry::Forgotten { at, .. } => at.elapsed() < MARK_LIFETIME,
            });
            if shard.len() >= cap {
                shard.retain(|_, e| matches!(e, Entry::Forgotten { .. }));
            }
        }
        shard.insert(
            user.clone(),
            Entry::Pool {
                candidates,
                ranked_at,
                catalog,
                session: session.cloned(),
                profile: profile.to_owned(),
            },
        );
    }

    /// Drops `user`'s pool; a ranking that read its inputs before this call will not
    /// store one either. Call after the write is done.
    pub fn forget(&self, user: &UserId) {
        if !self.enabled() {
            return;
        }
        let stamp = self.stamp.fetch_add(1, Ordering::AcqRel) + 1;
        self.shard(user).insert(
            user.clone(),
            Entry::Forgotten {
                stamp,
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use steerfeed_core::{Reason, Video, VideoId};

    use super::*;

    fn cand(i: usize) -> Candidate {
        let v = Video::new(
            VideoId::new(format!("v{i}")).unwrap(),
            UserId::new("c").unwrap(),
            Timestamp::UNIX_EPOCH,
            10.0,
        );
        Candidate::new(Arc::new(v), "test", 0.0, Reason::Popular)
    }

    fn pools(ttl: u64) -> Pools {
        Pools::new(PagesConfig {
            pool_ttl_s: ttl,
            pool_size: 10,
            pool_users: 32,
        })
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn a_pool_is_taken_once_within_its_ttl_by_its_session() {
        let p = pools(60);
        let u = UserId::new("u").unwrap();
        let s = SessionId::new("s1").unwrap();
        p.put(
            &u,
            p.stamp(),
            vec![cand(1)],
            (at(100), 0),
            Some(&s),
            "default",
        );
        assert!(
            p.take(&u, None, at(110), "default").is_none(),
            "another session"
        );
        p.put(
            &u,
            p.stamp(),
            vec![cand(1)],
            (at(100), 0),
            Some(&s),
            "default",
        );
        assert!(
            p.take(&u, Some(&s), at(161), "default").is_none(),
            "expired"
        );
        p.put(
            &u,
            p.stamp(),
            vec![cand(1), cand(2)],
            (at(100), 0),
            Some(&s),
            "default",
        );
        assert!(
            p.take(&u, Some(&s), at(160), "b_side").is_none(),
            "another profile's pool is not served"
        );
        p.put(
            &u,
            p.stamp(),
            vec![cand(1), cand(2)],
            (at(100), 0),
            Some(&s),
            "default",
        );
        let t = p.take(&u, Some(&s), at(160), "default").unwrap();
        assert_eq!(t.candidates.len(), 2);
        assert_eq!(t.ranked_at, at(100));
        assert!(
            p.take(&u, Some(&s), at(160), "default").is_none(),
            "taken already"
        );
    }

    #[test]
    fn a_pool_built_before_a_forget_is_never_stored() {
        let p = pools(60);
        let u = UserId::new("u").unwrap();
        let before = p.stamp();
        p.forget(&u);
        p.put(&u, before, vec![cand(1)], (at(100), 0), None, "default");
        assert!(p.take(&u, None, at(100), "default").is_none());
        p.put(&u, p.stamp(), vec![cand(1)], (at(100), 0), None, "default");
        assert!(p.take(&u, None, at(100), "default").is_some());
        p.put(&u, p.stamp(), vec![cand(1)], (at(100), 0), None, "default");
        p.forget(&u);
        assert!(
            p.take(&u, None, at(100), "default").is_none(),
            "forget drops a stored pool"
        );
    }

    #[test]
    fn pools_off_keep_nothing_and_full_shards_make_room() {
        let off = pools(0);
        let u = UserId::new("u").unwrap();
        off.put(&u, 0, vec![cand(1)], (at(0), 0), None, "default");
        assert!(off.take(&u, None, at(0), "default").is_none());
        assert_eq!(off.size(), 0);

        let p = pools(60);
        for i in 0..500 {
            let u = UserId::new(format!("u{i}")).unwrap();
            p.put(&u, p.stamp(), vec![cand(i)], (at(100), 0), None, "default");
        }
        let held: usize = p.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= 32 + SHARDS, "{held} pools held");
        let last = UserId::new("u499").unwrap();
        assert!(
            p.take(&last, None, at(100), "default").is_some(),
            "the newest pool is kept"
        );
    }
}

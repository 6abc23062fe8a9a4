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
//! stored: every build carries the invalidation stamp it read with its inputs.
//!
//! A store shared by several processes ([`Storage::shared_pools`]) keeps the pools
//! itself, so the next page of a session is picked from its pool whichever replica it
//! reaches: the pool travels as bytes (the `wire` module) without its videos, which the
//! taking replica reads from its own catalog after catching up, so every filter judges
//! them as that replica's fresh page would. The stamp is then the person's own, kept
//! beside their pool with a position in the store's logs at or past every write its
//! forgets were for (or an unknown one), and it is read while the request catches up
//! (one wait for both): a write any replica acknowledged and forgot a pool for is either
//! before the stamp and within the catch-up, or before the stamp and past the catch-up
//! or of an unknown position (the pool is not kept), or after the stamp (the pool is
//! not kept).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use steerfeed_core::storage::{POOL_STAMP_GUARD_S, SharedPools, Storage};
use steerfeed_core::{Candidate, IdMap, SessionId, Timestamp, UserId, VideoId};

mod wire;

/// How long an invalidation mark is kept: far longer than any feed request takes.
const MARK_LIFETIME: Duration = Duration::from_secs(30);

/// What became of the pools pages left, since the process started. A shared store's
/// keep is counted once the store answers it, which a page does not wait for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolCounts {
    /// Stored, for the next page of the session.
    pub kept: u64,
    /// Not stored: a write changed the person's inputs after the ranking read them, or
    /// may have (a shared store's stamp moved past what the request caught up to).
    pub refused: u64,
    /// Not stored: the shared store could not be reached (when the stamp was read or
    /// when the pool was written), the pool did not fit its format, or the ranking
    /// ended too long after reading its stamp. A pool whose time to live is over
    /// (what is left of one served from) is not counted.
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counts {
    kept: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    fn add(n: &AtomicU64) {
        n.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> PoolCounts {
        PoolCounts {
            kept: self.kept.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Settings of the page pools (`[pages]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagesConfig {
    /// Seconds a pool stays usable after the full ranking that made it; 0 turns pools
    /// off (every page is ranked from scratch).
    pub pool_ttl_s: u64,
    /// Candidates kept per pool.
    pub pool_size: usize,
    /// Users with a pool at most in this process's memory (a shared store keeps its
    /// pools itself, each for `pool_ttl_s`); when full, expired pools go first, then all.
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

/// What a request found of its user's pool, before it read anything it ranks with.
pub(crate) struct Opened {
    /// What a pool this request makes is kept under.
    pub stamp: Stamp,
    /// The pool, when it belongs to the request's session and profile and is fresh.
    pub taken: Option<Taken>,
    /// The store caught up while the pool was taken ([`SharedPools::take_pool`]).
    pub caught_up: bool,
}

/// What a pool a request makes may be kept under.
#[derive(Debug, Clone, Copy)]
enum Under {
    /// The stamp read.
    Stamp(u64),
    /// Nothing: a write the request's catch-up may not hold moved the stamp (one
    /// acknowledged while it caught up, or one of an unknown position).
    Moved,
    /// Nothing: the shared store could not answer for the stamp.
    Unknown,
}

/// The invalidation stamp a request read before its inputs, and the request's time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    value: Under,
    /// The request's time, against which a pool's age is counted.
    at: Timestamp,
    /// When it was read: a shared store remembers a moved stamp for a limited time, so
    /// a ranking that outlasts half of it keeps nothing.
    read: Instant,
}

impl Stamp {
    fn new(value: Under, at: Timestamp, read: Instant) -> Self {
        Self { value, at, read }
    }
}

/// How long after reading its stamp a ranking may still keep a pool in a shared store:
/// half of what the store remembers a moved stamp.
const SHARED_KEEP_WITHIN: Duration = Duration::from_secs(POOL_STAMP_GUARD_S / 2);

/// How far a pool kept by another process may seem to come from the future: the
/// processes' clocks differ a little.
const CLOCK_SKEW_MS: i64 = 5_000;

/// A pool taken for one request.
pub(crate) struct Taken {
    /// When the full ranking that made the pool ran (request time).
    pub ranked_at: Timestamp,
    /// The candidates, best first.
    pub items: Pooled,
}

/// The candidates of a taken pool.
pub(crate) enum Pooled {
    /// Kept in this process, with the videos of the store's catalog version `catalog`
    /// (read before the ranking): while the version has not moved, they are current.
    Held {
        candidates: Vec<Candidate>,
        catalog: u64,
    },
    /// Read from the shared store: the videos are to be read.
    Stored(Vec<wire::Stored>),
}

impl Pooled {
    /// The candidates with their videos as `read` has them now, in order; those whose
    /// video is gone are left out. `catalog` is the store's catalog version now.
    pub fn current(
        self,
        catalog: u64,
        read: impl Fn(&VideoId) -> steerfeed_core::Result<Option<Arc<steerfeed_core::Video>>>,
    ) -> steerfeed_core::Result<Vec<Candidate>> {
        match self {
            Pooled::Held {
                candidates,
                catalog: made,
            } if made == catalog => Ok(candidates),
            Pooled::Held { candidates, .. } => {
                let mut pool = Vec::with_capacity(candidates.len());
                for mut c in candidates {
                    if let Some(v) = read(c.id())? {
                        c.video = v;
                        pool.push(c);
                    }
                }
                Ok(pool)
            }
            Pooled::Stored(items) => {
                let mut pool = Vec::with_capacity(items.len());
                for s in items {
                    if let Some(v) = read(&s.id)? {
                        pool.push(s.with_video(v));
                    }
                }
                Ok(pool)
            }
        }
    }
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

/// Every user's pool: in this process's memory, in shards to keep lock hold times short,
/// or in the store when it shares them between processes.
pub(crate) struct Pools {
    cfg: PagesConfig,
    shards: Vec<Mutex<IdMap<UserId, Entry>>>,
    stamp: AtomicU64,
    /// The store, when it keeps the pools.
    store: Option<Arc<dyn Storage>>,
    /// Shared with the keeps a shared store answers later.
    counts: Arc<Counts>,
}

impl Pools {
    /// Pools in this process's memory, or in `store` when it keeps them
    /// ([`Storage::shared_pools`]).
    pub fn new(cfg: PagesConfig, store: Option<Arc<dyn Storage>>) -> Self {
        Self {
            cfg,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            stamp: AtomicU64::new(0),
            store: store.filter(|s| s.shared_pools().is_some()),
            counts: Arc::default(),
        }
    }

    /// What became of the pools pages left.
    pub fn counts(&self) -> PoolCounts {
        self.counts.read()
    }

    fn shared(&self) -> Option<&dyn SharedPools> {
        self.store.as_deref().and_then(|s| s.shared_pools())
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

    /// Reads the stamp and takes `user`'s pool when it belongs to `session`, was ranked
    /// by `profile` and is still fresh at `now`: call before reading anything the
    /// ranking reads. A shared store catches up in the same wait (`caught_up`), and its
    /// catch-up's error is this call's; call this before any other catch-up. A pool
    /// that does not fit is dropped all the same. A shared store that cannot answer for
    /// the pool costs the pool (the page is ranked afresh and keeps none), with a
    /// warning.
    pub fn open(
        &self,
        user: &UserId,
        session: Option<&SessionId>,
        now: Timestamp,
        profile: &str,
    ) -> steerfeed_core::Result<Opened> {
        // Before the store is asked: its answer may come after its catch-up.
        let read = Instant::now();
        if !self.enabled() {
            return Ok(Opened {
                stamp: Stamp::new(Under::Unknown, now, read),
                taken: None,
                caught_up: false,
            });
        }
        let Some(shared) = self.shared() else {
            return Ok(Opened {
                stamp: Stamp::new(Under::Stamp(self.stamp()), now, read),
                taken: self.take(user, session, now, profile),
                caught_up: false,
            });
        };
        let (stamp, taken) = match shared.take_pool(user)? {
            Ok((stamp, bytes)) => (
                stamp.map_or(Under::Moved, Under::Stamp),
                bytes.and_then(|b| self.stored(&b, session, now, profile)),
            ),
            Err(e) => {
                tracing::warn!(user = %user, error = %e, "could not take the page pool");
                (Under::Unknown, None)
            }
        };
        Ok(Opened {
            stamp: Stamp::new(stamp, now, read),
            taken,
            caught_up: true,
        })
    }

    /// A pool read from the shared store, when it fits the request.
    fn stored(
        &self,
        bytes: &[u8],
        session: Option<&SessionId>,
        now: Timestamp,
        profile: &str,
    ) -> Option<Taken> {
        let Some(pool) = wire::decode(bytes) else {
            tracing::warn!("a stored page pool did not read back; ranking afresh");
            return None;
        };
        // Kept by any process, so counted across two clocks.
        let age_ms = now.as_millisecond() - pool.ranked_at.as_millisecond();
        let fits = (-CLOCK_SKEW_MS..=self.ttl_ms()).contains(&age_ms)
            && pool.session.as_deref() == session.map(SessionId::as_str)
            && pool.profile == profile;
        fits.then_some(Taken {
            ranked_at: pool.ranked_at,
            items: Pooled::Stored(pool.items),
        })
    }

    fn fresh(&self, ranked_at: Timestamp, now: Timestamp) -> bool {
        let age_ms = now.as_millisecond() - ranked_at.as_millisecond();
        (0..=self.ttl_ms()).contains(&age_ms)
    }

    /// The invalidation stamp of the pools in memory.
    fn stamp(&self) -> u64 {
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

    /// Takes `user`'s pool from memory when it fits (see [`Pools::open`]).
    fn take(
        &self,
        user: &UserId,
        session: Option<&SessionId>,
        now: Timestamp,
        profile: &str,
    ) -> Option<Taken> {
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
        drop(shard);
        (self.fresh(ranked_at, now) && owner.as_ref() == session && ranked_by == profile).then_some(
            Taken {
                ranked_at,
                items: Pooled::Held {
                    candidates,
                    catalog,
                },
            },
        )
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.cfg.pool_ttl_s.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The videos of `user`'s pool, best first, without taking it.
    pub fn peek(&self, user: &UserId) -> Option<Vec<VideoId>> {
        if let Some(shared) = self.shared() {
            let bytes = match shared.peek_pool(user) {
                Ok(b) => b?,
                Err(e) => {
                    tracing::warn!(user = %user, error = %e, "could not read the page pool");
                    return None;
                }
            };
            return Some(
                wire::decode(&bytes)?
                    .items
                    .into_iter()
                    .map(|s| s.id)
                    .collect(),
            );
        }
        match self.shard(user).get(user) {
            Some(Entry::Pool { candidates, .. }) => {
                Some(candidates.iter().map(|c| c.id().clone()).collect())
            }
            _ => None,
        }
    }

    /// Keeps `candidates` as `user`'s pool, unless the user's inputs changed after
    /// `stamp` (from [`Pools::open`], read before the ranking's inputs were). `made` is
    /// when the full ranking ran and the store's catalog version read before it.
    pub fn put(
        &self,
        user: &UserId,
        stamp: Stamp,
        candidates: Vec<Candidate>,
        made: (Timestamp, u64),
        session: Option<&SessionId>,
        profile: &str,
    ) {
        if !self.enabled() || candidates.is_empty() {
            return;
        }
        let value = match stamp.value {
            Under::Stamp(value) => value,
            Under::Moved => return Counts::add(&self.counts.refused),
            Under::Unknown => return Counts::add(&self.counts.failed),
        };
        match self.shared() {
            Some(_) if stamp.read.elapsed() >= SHARED_KEEP_WITHIN => {
                tracing::warn!(user = %user, "a ranking too long after its stamp keeps no pool");
                Counts::add(&self.counts.failed);
            }
            Some(shared) => {
                // What the pool has left of its time to live, in whole seconds.
                let age_ms = stamp.at.as_millisecond() - made.0.as_millisecond();
                let left_ms = self.ttl_ms().saturating_sub(age_ms.max(0));
                let left_ms = u64::try_from(left_ms).unwrap_or(0);
                if left_ms == 0 {
                    return;
                }
                let left_s = left_ms.div_ceil(1000);
                let owner = (session, profile);
                self.put_shared(shared, user, (value, left_s), &candidates, made.0, owner);
            }
            None => self.put_local(user, value, candidates, made, session, profile),
        }
    }

    /// Keeps a pool in the shared store under `stamp` for `ttl_s` seconds.
    fn put_shared(
        &self,
        shared: &dyn SharedPools,
        user: &UserId,
        (stamp, ttl_s): (u64, u64),
        candidates: &[Candidate],
        ranked_at: Timestamp,
        (session, profile): (Option<&SessionId>, &str),
    ) {
        let session = session.map(SessionId::as_str);
        let Some(bytes) = wire::encode(candidates, ranked_at, session, profile) else {
            tracing::warn!(user = %user, "a page pool too large for its format was not kept");
            return Counts::add(&self.counts.failed);
        };
        // Counted once the store answers, which the page does not wait for.
        let counts = Arc::clone(&self.counts);
        let whose = user.clone();
        let done = Box::new(move |outcome: steerfeed_core::Result<bool>| match outcome {
            Ok(true) => Counts::add(&counts.kept),
            Ok(false) => Counts::add(&counts.refused),
            Err(e) => {
                tracing::warn!(user = %whose, error = %e, "could not keep the page pool");
                Counts::add(&counts.failed);
            }
        });
        if let Err(e) = shared.keep_pool(user, stamp, &bytes, ttl_s, done) {
            tracing::warn!(user = %user, error = %e, "could not keep the page pool");
            Counts::add(&self.counts.failed);
        }
    }

    fn put_local(
        &self,
        user: &UserId,
        stamp: u64,
        candidates: Vec<Candidate>,
        (ranked_at, catalog): (Timestamp, u64),
        session: Option<&SessionId>,
        profile: &str,
    ) {
        let mut shard = self.shard(user);
        if let Some(Entry::Forgotten { stamp: s, .. }) = shard.get(user)
            && *s > stamp
        {
            return Counts::add(&self.counts.refused);
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
        Counts::add(&self.counts.kept);
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

    /// Drops the pools of `users`; a ranking that read its inputs before this call will
    /// not store one either. Call after the write is done. A shared store that cannot be
    /// reached leaves the pool for its time to live, with a warning: every filter still
    /// judges its videos, only the write's effect on the order waits.
    pub fn forget(&self, users: &[UserId]) {
        if let Some(shared) = self.shared() {
            // Whether or not this process keeps pools: others sharing the store may.
            if let Err(e) = shared.forget_pools(users) {
                tracing::warn!(users = users.len(), error = %e, "could not drop page pools");
            }
            return;
        }
        if !self.enabled() {
            return;
        }
        for user in users {
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
        Pools::new(
            PagesConfig {
                pool_ttl_s: ttl,
                pool_size: 10,
                pool_users: 32,
            },
            None,
        )
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn st(value: u64) -> Stamp {
        Stamp::new(Under::Stamp(value), at(100), Instant::now())
    }

    /// The stamp a request reads now.
    fn local(p: &Pools) -> Stamp {
        st(p.stamp())
    }

    #[test]
    fn a_pool_is_taken_once_within_its_ttl_by_its_session() {
        let p = pools(60);
        let u = UserId::new("u").unwrap();
        let s = SessionId::new("s1").unwrap();
        p.put(
            &u,
            local(&p),
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
            local(&p),
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
            local(&p),
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
            local(&p),
            vec![cand(1), cand(2)],
            (at(100), 0),
            Some(&s),
            "default",
        );
        let t = p.take(&u, Some(&s), at(160), "default").unwrap();
        let Pooled::Held { candidates, .. } = t.items else {
            panic!("a pool in memory is held")
        };
        assert_eq!(candidates.len(), 2);
        assert_eq!(t.ranked_at, at(100));
        assert!(
            p.take(&u, Some(&s), at(160), "default").is_none(),
            "taken already"
        );
    }

    #[test]
    fn a_stored_pool_is_served_only_to_its_session_and_profile_while_fresh() {
        let p = pools(60);
        let s = SessionId::new("s1").unwrap();
        let pool = vec![cand(1), cand(2), cand(3)];
        let bytes = wire::encode(&pool, at(100), Some("s1"), "default").unwrap();
        let t = p.stored(&bytes, Some(&s), at(160), "default").unwrap();
        assert_eq!(t.ranked_at, at(100));
        let Pooled::Stored(items) = t.items else {
            panic!("a pool read from a store is stored")
        };
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["v1", "v2", "v3"]);
        let other = SessionId::new("s2").unwrap();
        assert!(p.stored(&bytes, Some(&other), at(110), "default").is_none());
        assert!(p.stored(&bytes, None, at(110), "default").is_none());
        assert!(p.stored(&bytes, Some(&s), at(110), "b_side").is_none());
        assert!(
            p.stored(&bytes, Some(&s), at(161), "default").is_none(),
            "expired"
        );
        assert!(
            p.stored(&bytes, Some(&s), at(96), "default").is_some(),
            "another process's clock a few seconds ahead"
        );
        assert!(
            p.stored(&bytes, Some(&s), at(94), "default").is_none(),
            "from the future"
        );
        assert!(
            p.stored(&bytes[..bytes.len() - 1], Some(&s), at(110), "default")
                .is_none()
        );
    }

    #[test]
    fn a_taken_pool_is_brought_up_to_the_catalog_it_is_served_from() {
        let pool = vec![cand(1), cand(2), cand(3)];
        let newer = |id: &VideoId| -> steerfeed_core::Result<Option<Arc<Video>>> {
            // v2 is gone; the others come back relabelled (a longer duration).
            Ok((id.as_str() != "v2").then(|| {
                let mut v = Video::new(
                    id.clone(),
                    UserId::new("c").unwrap(),
                    Timestamp::UNIX_EPOCH,
                    10.0,
                );
                v.duration_s = 99.0;
                Arc::new(v)
            }))
        };
        let held = |catalog| Pooled::Held {
            candidates: pool.clone(),
            catalog,
        };
        // The catalog has not moved: the videos are current as they are.
        let same = held(7).current(7, newer).unwrap();
        assert_eq!(same.len(), 3);
        assert!(same.iter().all(|c| c.video.duration_s == 10.0));
        // It moved: every video is read again, and a missing one leaves.
        let moved = held(7).current(8, newer).unwrap();
        let ids: Vec<&str> = moved.iter().map(|c| c.id().as_str()).collect();
        assert_eq!(ids, ["v1", "v3"]);
        assert!(moved.iter().all(|c| c.video.duration_s == 99.0));
        // A stored pool's videos are always read.
        let bytes = wire::encode(&pool, at(0), None, "default").unwrap();
        let stored = Pooled::Stored(wire::decode(&bytes).unwrap().items)
            .current(7, newer)
            .unwrap();
        let ids: Vec<&str> = stored.iter().map(|c| c.id().as_str()).collect();
        assert_eq!(ids, ["v1", "v3"]);
        assert!(stored.iter().all(|c| c.video.duration_s == 99.0));
    }

    #[test]
    fn a_pool_built_before_a_forget_is_never_stored() {
        let p = pools(60);
        let u = UserId::new("u").unwrap();
        let before = p.stamp();
        p.forget(std::slice::from_ref(&u));
        p.put(&u, st(before), vec![cand(1)], (at(100), 0), None, "default");
        assert!(p.take(&u, None, at(100), "default").is_none());
        p.put(&u, local(&p), vec![cand(1)], (at(100), 0), None, "default");
        assert!(p.take(&u, None, at(100), "default").is_some());
        p.put(&u, local(&p), vec![cand(1)], (at(100), 0), None, "default");
        p.forget(std::slice::from_ref(&u));
        assert!(
            p.take(&u, None, at(100), "default").is_none(),
            "forget drops a stored pool"
        );
        let counts = PoolCounts {
            kept: 2,
            refused: 1,
            failed: 0,
        };
        assert_eq!(p.counts(), counts);
    }

    #[test]
    fn a_stamp_moved_past_the_catch_up_or_unread_keeps_nothing_and_is_counted_apart() {
        let p = pools(60);
        let u = UserId::new("u").unwrap();
        for under in [Under::Moved, Under::Unknown] {
            let stamp = Stamp::new(under, at(100), Instant::now());
            p.put(&u, stamp, vec![cand(1)], (at(100), 0), None, "default");
            assert!(p.take(&u, None, at(100), "default").is_none(), "{under:?}");
        }
        let counts = PoolCounts {
            kept: 0,
            refused: 1,
            failed: 1,
        };
        assert_eq!(p.counts(), counts);
    }

    #[test]
    fn pools_off_keep_nothing_and_full_shards_make_room() {
        let off = pools(0);
        let u = UserId::new("u").unwrap();
        off.put(&u, st(0), vec![cand(1)], (at(0), 0), None, "default");
        assert!(off.take(&u, None, at(0), "default").is_none());
        assert_eq!(off.size(), 0);

        let p = pools(60);
        for i in 0..500 {
            let u = UserId::new(format!("u{i}")).unwrap();
            p.put(&u, local(&p), vec![cand(i)], (at(100), 0), None, "default");
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

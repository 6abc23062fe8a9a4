//! The store: the [`Store`] handle, its shared state, and the pieces every part of it
//! uses (locks, the durable write, the caches' invalidation). The rest is split by
//! concern:
//!
//! - `open`: opening, the schema header and its upgrades, the background threads;
//! - `catalogue`: videos, embeddings, the catalogue version and its change log;
//! - `users`: users and their time zones, parental controls, preferences;
//! - `social`: follows, blocks and mutes, consent and its revocations;
//! - `viewer`: wellbeing, served pages, seen history, interest and affinity, the viewer;
//! - `erase`: erasing a person and exporting what is stored about them;
//! - `bulk`: the bulk export of every record of the kinds asked for;
//! - `backup`: a consistent copy of the store's files taken while it serves;
//! - `ingest`: the event log's writes, and each event staged into the overlay
//!   (`crate::derived`);
//! - `persist`: the persister writing the overlay to the derived trees, and the replay;
//! - `rings`: appends to the seen and history rings, and reading a history;
//! - `warm`: loading the resident mirror (`crate::resident`) after open.

mod backup;
mod bulk;
mod catalogue;
mod erase;
mod ingest;
mod open;
mod persist;
mod rings;
mod social;
mod users;
mod viewer;
mod warm;

pub use backup::{copy_tree, write_synced};
pub use open::SCHEMA_VERSION;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use sled::{Batch, Db, Tree};
use steerfeed_core::storage::{Preferences, Revocation, ServedPage};
use steerfeed_core::{
    ConsentScope, Constraints, Embedding, Entity, Error, Event, ParentalControls, Result, User,
    UserId, Video, VideoId, Viewer, WellbeingState,
};

use crate::cache::{FastMap, Ids, RecordCache, VideoCache};
use crate::codec::{
    self, CounterRec, Decayed, after_sep, corrupt, decode_embedding, decode_video, encode_video,
    ms, pair, prefix, timed, timed_global, u64_of,
};
use crate::commit::GroupCommit;
use crate::damage::{DamageLog, DamageReport, DamageRule};
use crate::derived::Overlay;
use crate::mirror::{Edge, Mirror};
use crate::options::StoreOptions;
use crate::records::{ConsentRec, PersonFacts, WellbeingRec};
use crate::toplist::TopList;
use crate::trees::Derived;
#[cfg(feature = "test-hooks")]
use crate::trees::Mask;
use crate::trees::{
    CATALOG_FLOOR_KEY, CATALOG_VERSION_KEY, HEADER_KEY, LIVE_VIDEOS_KEY, STORE_ID_KEY, TREE_NAMES,
    TRIM_CHUNK, Trees, WATERMARK_KEY, Writes, db_err,
};

/// Time zones cached for the write path (the cache starts over past it).
pub(crate) const MAX_CACHED_ZONES: usize = 100_000;

pub(crate) struct Inner {
    db: Db,
    t: Trees,
    opts: StoreOptions,
    path: Option<PathBuf>,
    /// Serialises writers: read-modify-write of counters, vectors and rings is then
    /// race-free without optimistic transactions, and sled work is CPU-bound anyway.
    write: Mutex<()>,
    commit: GroupCommit,
    cache: VideoCache,
    popular: Mutex<TopList>,
    remix: Mutex<TopList>,
    next_seq: AtomicU64,
    /// The next impression log entry's number (written under the write lock).
    next_impression: AtomicU64,
    /// Impression log entries not yet written to sled, as (number, time served in ms,
    /// record): served state, written with the rest by the persister.
    impressions_pending: Mutex<Vec<(u64, i64, Vec<u8>)>>,
    live_videos: AtomicU64,
    catalog_version: AtomicU64,
    /// The catalog log's floor: `catalog_log` holds every change made above it.
    catalog_floor: AtomicU64,
    /// Derived state not yet written to its trees (see `derived.rs`).
    overlay: RwLock<Overlay>,
    /// Set by [`Store::crash_for_tests`]: closing must not persist the overlay.
    crashed: AtomicBool,
    /// Set when the last handle goes: background work (the cache warmer) stops.
    closing: AtomicBool,
    /// Set when the cache warmer is done (or was not started).
    warm: AtomicBool,
    /// Wakes the background persister before its period is up (a write left the
    /// active layer over its bound, or the store is closing).
    persist_wake: Wake,
    /// Held while derived state is written out (taken before `write`): one persist at a
    /// time, and video deletions never race with one.
    persist: Mutex<()>,
    /// Time zones of users seen by recent batches (wellbeing days are local).
    time_zones: RwLock<std::collections::HashMap<UserId, TimeZone>>,
    /// Bumped after every change to a user, a consent scope or parental controls: a
    /// cached [`PersonFacts`] is valid only while the epoch it was read at is current.
    consent_epoch: AtomicU64,
    /// Per-person consent facts the feed's consent filter reads for every cameo.
    person_facts: RwLock<FastMap<UserId, (u64, Option<PersonFacts>)>>,
    /// Decoded per-video counters read from sled (the overlay is consulted first). An
    /// entry leaves when a layer holding its key leaves the overlay (`forget_layer`), so
    /// it can never shadow a newer value, and when its video is deleted.
    counter_cache: RwLock<FastMap<VideoId, Option<CounterRec>>>,
    /// The same for per-creator counters.
    creator_cache: RwLock<FastMap<UserId, Option<CounterRec>>>,
    /// Bumped whenever cached counters are dropped: a reader fills the caches only if no
    /// drop happened since it began, so a value read before a drop is never cached after.
    counter_epoch: AtomicU64,
    /// The time indexes, relations, approvals and revocations in memory (`mirror.rs`).
    mirror: Mirror,
    /// Shared allocations of the ids the store hands out.
    ids: Ids,
    /// Unreadable records found so far, and the rule each fell under (`damage.rs`).
    damage: DamageLog,
    /// The people erased, in order (`crate::erasure`); its lock serialises erasures.
    erasures: crate::erasure::ErasureLog,
    /// The store's identity (`meta` `store_id`), which its copies keep.
    store_id: String,
    /// Erasures carried out since open, bumped under the write lock: a write that checked
    /// its users before taking the lock checks them again under it when this moved, so
    /// nothing is written for a person erased in between.
    erasure_epoch: AtomicU64,
    /// Decoded users, preferences and parental controls.
    users: RecordCache<Option<User>>,
    prefs: RecordCache<Option<Arc<Preferences>>>,
    parental: RecordCache<ParentalControls>,
    /// Items reserved for pages today, per person (`served.rs`).
    served: crate::served::ServedItems,
}

/// What the other parts of the crate (ingest, the persister, the ports, the resident
/// state) reach of the shared state: each a narrow view of one field.
impl Inner {
    pub(crate) fn served(&self) -> &crate::served::ServedItems {
        &self.served
    }

    /// sled's database (flushes).
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// The group commit of the event log.
    pub(crate) fn commit(&self) -> &GroupCommit {
        &self.commit
    }

    /// The in-memory popular list.
    pub(crate) fn popular(&self) -> &Mutex<TopList> {
        &self.popular
    }

    /// The in-memory remix-trending list.
    pub(crate) fn remix(&self) -> &Mutex<TopList> {
        &self.remix
    }

    /// The next event sequence number.
    pub(crate) fn next_seq(&self) -> &AtomicU64 {
        &self.next_seq
    }

    /// True once the last handle went: background work stops.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Wakes the background persister.
    pub(crate) fn persist_wake(&self) -> &Wake {
        &self.persist_wake
    }

    /// Time zones of users seen by recent batches.
    pub(crate) fn time_zones(&self) -> &RwLock<std::collections::HashMap<UserId, TimeZone>> {
        &self.time_zones
    }

    /// Decoded per-video counters read from sled.
    pub(crate) fn counter_cache(&self) -> &RwLock<FastMap<VideoId, Option<CounterRec>>> {
        &self.counter_cache
    }

    /// Decoded per-creator counters read from sled.
    pub(crate) fn creator_cache(&self) -> &RwLock<FastMap<UserId, Option<CounterRec>>> {
        &self.creator_cache
    }

    /// Bumped whenever cached counters are dropped.
    pub(crate) fn counter_epoch(&self) -> &AtomicU64 {
        &self.counter_epoch
    }

    /// The in-memory mirrors of the index and relation trees.
    pub(crate) fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The store's shared id allocations.
    pub(crate) fn ids(&self) -> &Ids {
        &self.ids
    }
}

/// Cached counter records before a cache starts over, at least.
const MIN_CACHED_COUNTERS: usize = 500_000;

/// Cached users (and preferences, parental controls) before a cache starts over.
const MAX_CACHED_USERS: usize = 1_000_000;

/// Cached persons before the cache starts over.
const MAX_PERSON_FACTS: usize = 200_000;

/// Bumps the consent epoch when dropped, i.e. after the write it guards returned (or
/// failed): every person-facts entry read before is then stale.
struct EpochBump<'a>(&'a Store);

impl Drop for EpochBump<'_> {
    fn drop(&mut self) {
        self.0.inner.consent_epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// A flag a thread sleeps on until it is raised or a period is up.
#[derive(Default)]
pub(crate) struct Wake {
    raised: Mutex<bool>,
    cond: std::sync::Condvar,
}

impl Wake {
    pub fn raise(&self) {
        *lock(&self.raised) = true;
        self.cond.notify_one();
    }

    /// Sleeps until the flag is raised or `period` passed; lowers it.
    pub fn wait(&self, period: std::time::Duration) {
        let raised = lock(&self.raised);
        let (mut raised, _) = self
            .cond
            .wait_timeout_while(raised, period, |r| !*r)
            .unwrap_or_else(|e| e.into_inner());
        *raised = false;
    }
}

/// Owned by every clone of a [`Store`]: when the last one goes, it stops the background
/// persister and writes the derived state out before the database closes.
struct Closer {
    inner: Arc<Inner>,
    thread: Option<std::thread::JoinHandle<()>>,
    warmer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.inner.closing.store(true, Ordering::Release);
        self.inner.persist_wake.raise();
        for t in [self.thread.take(), self.warmer.take()]
            .into_iter()
            .flatten()
        {
            let _ = t.join();
        }
        let s = Store {
            inner: Arc::clone(&self.inner),
            _closer: None,
        };
        if !s.inner.crashed.load(Ordering::Acquire)
            && let Err(e) = s.persist_round()
        {
            tracing::warn!(error = %e, "store: could not write derived state at close");
        }
        // Everything on disk before the files close, so a reopen finds them unlocked.
        if let Err(e) = s.inner.db.flush() {
            tracing::warn!(error = %e, "store: could not flush at close");
        }
    }
}

/// The embedded store. Cheap to clone (an `Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    _closer: Option<Arc<Closer>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("dim", &self.inner.opts.dim)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::internal("store", e))
}

fn unjson<T: serde::de::DeserializeOwned>(b: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(b).map_err(|_| corrupt(what))
}

fn user_of(b: &[u8]) -> Result<UserId> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| UserId::new(s).ok())
        .ok_or_else(|| corrupt("user key"))
}

fn video_of(b: &[u8]) -> Result<VideoId> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| VideoId::new(s).ok())
        .ok_or_else(|| corrupt("video key"))
}

impl Store {
    /// True once the background cache warmer finished (at once when it is off).
    pub fn is_warm(&self) -> bool {
        self.inner.warm.load(Ordering::Acquire)
    }

    /// Reads stored videos into the video cache, with their counters and their
    /// creators' counters, in key order until the cache is full; stops early when the
    /// store closes. Everything goes through the ordinary readers ([`Store::video`] and
    /// the `ActionStats` port), whose version and epoch checks keep a concurrent write
    /// from being shadowed. Returns how many videos were read.
    pub fn warm_video_cache(&self) -> Result<usize> {
        use steerfeed_core::ports::ActionStats;
        const CHUNK: usize = 1024;
        let now = Timestamp::now();
        let cap = self.inner.opts.video_cache;
        let mut creators = HashSet::new();
        let mut n = 0;
        let mut keys = self.t().videos.iter().keys();
        loop {
            if self.inner.closing.load(Ordering::Acquire) {
                break;
            }
            let mut ids = Vec::with_capacity(CHUNK);
            for k in keys.by_ref().take(CHUNK.min(cap - n)) {
                ids.push(video_of(&k.map_err(db_err)?)?);
            }
            if ids.is_empty() {
                break;
            }
            n += ids.len();
            let mut videos = Vec::with_capacity(ids.len());
            for id in &ids {
                if let Some(v) = self.video(id)? {
                    if creators.insert(v.creator.clone()) {
                        self.creator_counts(&v.creator, now)?;
                    }
                    videos.push(v);
                }
            }
            // Keyed by the cached videos' own ids, which the feed looks up with: an id
            // compared with a clone of itself is a pointer comparison.
            self.video_counts(&videos.iter().map(|v| &v.id).collect::<Vec<_>>(), now)?;
        }
        Ok(n)
    }

    pub(crate) fn overlay_read(&self) -> RwLockReadGuard<'_, Overlay> {
        self.inner.overlay.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn overlay_write(&self) -> RwLockWriteGuard<'_, Overlay> {
        self.inner
            .overlay
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn persist_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.inner.persist)
    }

    /// Holds the persister and every writer, with every acknowledged write on disk: what
    /// sled holds stays as it is until the guards drop.
    pub(crate) fn hold_writes(&self) -> Result<(MutexGuard<'_, ()>, MutexGuard<'_, ()>)> {
        let persist = self.persist_lock();
        let write = self.write_lock();
        let db = &self.inner.db;
        self.inner
            .commit
            .wait_durable(self.inner.commit.written(), || db.flush())?;
        Ok((persist, write))
    }

    /// Test support: writes the derived state of the named trees only (`counters`,
    /// `wellbeing`, ...; see the crate docs), as a crash halfway through writing the
    /// derived state would leave it. Behind the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub fn persist_derived_for_tests(&self, trees: &[&str]) -> Result<()> {
        let mask = Derived::ALL
            .iter()
            .filter(|d| trees.contains(&d.name()))
            .fold(Mask::NONE, |m, d| m.with(*d));
        self.persist_some(mask)
    }

    /// Test support: writes at most `keep` keys of each derived tree from the derived
    /// state in memory, and no watermark, as a crash halfway through a persist would
    /// leave the trees; true when some keys were left out. Behind the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub fn persist_torn_for_tests(&self, keep: usize) -> Result<bool> {
        self.persist_torn(keep)
    }

    /// Test support: closes the store as a crash would after the last acknowledged write:
    /// the log is on disk, derived state still in memory is lost. Behind the
    /// `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub fn crash_for_tests(self) -> Result<()> {
        self.inner.crashed.store(true, Ordering::Release);
        let _held = self.hold_writes()?;
        let mut ov = self.overlay_write();
        let applied = ov.applied;
        *ov = Overlay::new(applied);
        Ok(())
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    pub(crate) fn t(&self) -> &Trees {
        &self.inner.t
    }

    /// Cached counter records (per video, and per creator) before a cache starts over.
    pub(crate) fn max_cached_counters(&self) -> usize {
        self.inner.opts.video_cache.max(MIN_CACHED_COUNTERS)
    }

    pub(crate) fn half_life_ms(&self) -> f64 {
        self.inner.opts.counter_half_life_h * 3_600_000.0
    }

    pub(crate) fn gap_ms(&self) -> i64 {
        i64::from(self.inner.opts.session_gap_min) * 60_000
    }

    pub(crate) fn write_lock(&self) -> MutexGuard<'_, ()> {
        lock(&self.inner.write)
    }

    /// Commits `w` atomically and returns the write generation (call under the write lock).
    pub(crate) fn commit_writes(&self, w: Writes<'_>) -> Result<u64> {
        w.commit()?;
        Ok(self.inner.commit.written())
    }

    /// Waits until write generation `generation` is on disk (group commit).
    pub(crate) fn durable(&self, generation: u64) -> Result<()> {
        let db = &self.inner.db;
        self.inner.commit.wait_durable(generation, || db.flush())
    }

    /// Applies the writes `build` makes in one transaction, then `after` once they are
    /// committed, still under the write lock (the in-memory mirrors change in the order
    /// sled did, and caches drop what the write changed), and returns when durable.
    pub(super) fn write_durably(
        &self,
        build: impl for<'s> FnOnce(&'s Self, &mut Writes<'s>) -> Result<()>,
        after: impl FnOnce(&Inner),
    ) -> Result<()> {
        let generation = {
            let _g = self.write_lock();
            let mut w = Writes::default();
            build(self, &mut w)?;
            let generation = self.commit_writes(w)?;
            after(&self.inner);
            generation
        };
        self.durable(generation)
    }

    /// [`Store::write_durably`] of a write about `users`, who must be stored: checked
    /// first, and again under the write lock when someone was erased meanwhile, so that
    /// nothing is written for a person erased in between.
    pub(super) fn write_durably_for(
        &self,
        users: &[&UserId],
        build: impl for<'s> FnOnce(&'s Self, &mut Writes<'s>) -> Result<()>,
        after: impl FnOnce(&Inner),
    ) -> Result<()> {
        let erasures = self.erasure_epoch();
        for u in users {
            self.require_user(u)?;
        }
        self.write_durably(
            |s, w| {
                s.still_known(erasures, users.iter().copied())?;
                build(s, w)
            },
            after,
        )
    }

    /// Flushes everything written so far to disk, derived state in memory included.
    pub fn flush(&self) -> Result<()> {
        self.persist_round()?;
        let generation = self.inner.commit.written();
        self.durable(generation)
    }

    /// Events accepted so far (the log is append-only; sequence numbers start at 1).
    pub fn event_count(&self) -> u64 {
        self.inner.next_seq.load(Ordering::Acquire) - 1
    }

    /// Calls `f(seq, event)` for every logged event with sequence number `>= from`, in
    /// order (to rebuild in-memory indexes such as co-engagement at start-up).
    pub fn for_each_event(&self, from: u64, f: impl FnMut(u64, Event) -> Result<()>) -> Result<()> {
        crate::log::for_each_logged(&self.t().events, from, f)
    }

    /// Every unreadable record found since open, and the rule each fell under (see the
    /// table in `damage.rs`): open reads the relation and revocation trees whole, and
    /// embeddings and consent records are noted when read.
    pub fn damage(&self) -> DamageReport {
        self.inner.damage.report()
    }
}

impl Store {
    /// Drops the cached counters of every key in `layer`, which is leaving the overlay:
    /// a value cached while the layer was there may be older than what it wrote.
    pub(crate) fn forget_layer(&self, layer: Option<&crate::layer::Layer>) {
        let Some(layer) = layer else { return };
        self.inner.counter_epoch.fetch_add(1, Ordering::AcqRel);
        if !layer.counters.is_empty() {
            let mut c = self
                .inner
                .counter_cache
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for id in layer.counters.keys() {
                c.remove(id);
            }
        }
        if !layer.creators.is_empty() {
            let mut c = self
                .inner
                .creator_cache
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for id in layer.creators.keys() {
                c.remove(id);
            }
        }
    }

    /// Drops one video's cached counters (deleted videos lose theirs).
    pub(crate) fn forget_counter(&self, id: &VideoId) {
        self.inner.counter_epoch.fetch_add(1, Ordering::AcqRel);
        self.inner
            .counter_cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

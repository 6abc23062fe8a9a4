//! The store: opening, the schema header, the write API and the readers.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use sled::{Batch, Db, Tree};
use steerfeed_core::{
    ConsentScope, Constraints, Embedding, Entity, Error, Event, ParentalControls, Result, User,
    UserId, Video, VideoId, Viewer, WellbeingState,
};

use steerfeed_core::storage::{Preferences, Revocation, ServedPage};

use crate::cache::{FastMap, Ids, RecordCache, VideoCache};
use crate::codec::{
    self, CounterRec, Decayed, after_sep, corrupt, decode_embedding, decode_video, encode_video,
    ms, pair, prefix, timed, timed_global, u64_of,
};
use crate::commit::GroupCommit;
use crate::damage::{DamageLog, DamageReport, DamageRule};
#[cfg(feature = "test-hooks")]
use crate::derived::Mask;
use crate::derived::{Derived, Overlay, WATERMARK_KEY};
use crate::mirror::{Edge, Mirror};
use crate::options::StoreOptions;
use crate::toplist::TopList;

/// Bytes that open the header: a store made by anything else is refused.
pub(crate) const MAGIC: &[u8; 16] = b"steerfeed-store\0";
/// The layout version this build reads and writes.
///
/// Version 2: binary event records and per-tree watermarks of the derived state. A
/// version 1 store is upgraded in place at open (its derived state was written in one
/// transaction with the log, so every watermark starts at the last logged event).
/// Version 3: the `by_topic` index; a version 1 or 2 store gets it built at open from
/// its videos.
/// Version 4: the event log holds records of up to 48 events each (`codec.rs`), the
/// idempotency keys are stored as segments of key hashes, and the seen and history rings
/// as fragments without a stored head (`derived.rs`); version 3's one-event records,
/// one-key entries and one-entry ring keys still read, so a version 3 store only gets
/// the new header.
/// Version 5: wellbeing records are binary (`codec::encode_wellbeing`), about a quarter
/// of their JSON size; JSON records still read, so a version 3 or 4 store only gets the
/// new header.
/// Version 6: records in the derived trees end in their as-of number (the last event
/// they reflect, `codec.rs`), so the persister can write keys one by one and a replay
/// after a crash halfway through still counts every event once; records without one
/// still read, so a version 3 to 5 store only gets the new header.
/// Version 7: the `catalog_log` tree records which videos each catalog version changed
/// (written in the same transaction as the change), so a vector index saved at an older
/// version can be brought up to date by replaying the videos changed since; its floor
/// (`meta` `catalog_log_floor`) is the version below which the log no longer reaches. A
/// store of an older schema gets the empty tree and a floor at its current catalog
/// version, then the new header (an older build refuses the store, since it would
/// change videos without logging them).
pub const SCHEMA_VERSION: u32 = 7;

/// Time zones cached for the write path (the cache starts over past it).
pub(crate) const MAX_CACHED_ZONES: usize = 100_000;
const HEADER_KEY: &[u8] = b"header";
const LIVE_VIDEOS_KEY: &[u8] = b"live_videos";
/// Meta key of the catalog version: bumped by every video upsert and deletion, so an
/// index saved beside the store can tell whether it is still current.
const CATALOG_VERSION_KEY: &[u8] = b"catalog_version";
/// Meta key of the catalog log's floor: `catalog_log` holds every change made at a
/// version above it.
const CATALOG_FLOOR_KEY: &[u8] = b"catalog_log_floor";
/// Keys removed per batch when the catalog log is trimmed (a batch holds sled's
/// process-wide write lock while it applies).
const TRIM_CHUNK: usize = 1024;

pub(crate) fn db_err(e: sled::Error) -> Error {
    Error::internal("store", e)
}

pub(crate) fn tx_err(e: TransactionError<()>) -> Error {
    match e {
        TransactionError::Storage(e) => db_err(e),
        TransactionError::Abort(()) => Error::internal("store", "transaction aborted"),
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct ConsentRec {
    pub scope: ConsentScope,
}

/// Wellbeing counters plus what the store needs to keep them: the local day they count,
/// the last activity (sessions end after a gap) and the last counted item (an impression
/// followed by a view of the same video counts one item).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct WellbeingRec {
    pub state: WellbeingState,
    pub day: Option<jiff::civil::Date>,
    pub last_active: Option<Timestamp>,
    pub last_item: Option<VideoId>,
}

impl WellbeingRec {
    /// Moves the daily counters to the local day of `at`; true when `at` falls on the
    /// counted day (an event from an earlier day does not count towards today).
    pub fn roll(&mut self, tz: &TimeZone, at: Timestamp) -> bool {
        let d = tz.to_datetime(at).date();
        match self.day {
            Some(cur) if d < cur => false,
            Some(cur) if d == cur => true,
            _ => {
                self.day = Some(d);
                self.state.minutes_today = 0.0;
                self.state.items_today = 0;
                true
            }
        }
    }

    /// Records activity at `at`: a gap longer than `gap_ms` starts a new session.
    pub fn touch(&mut self, at: Timestamp, gap_ms: i64) {
        match self.last_active {
            Some(last) if at < last => {}
            Some(last) if ms(at) - ms(last) <= gap_ms && self.state.session_started.is_some() => {
                self.last_active = Some(at);
            }
            _ => {
                self.state.session_started = Some(at);
                self.state.session_items = 0;
                self.last_active = Some(at);
            }
        }
    }

    /// The state as of `now`: daily counters of an earlier local day read as zero, and a
    /// session idle for longer than `gap_ms` has ended.
    pub fn view(&self, tz: &TimeZone, now: Timestamp, gap_ms: i64) -> WellbeingState {
        let mut s = self.state.clone();
        if let Some(day) = self.day
            && tz.to_datetime(now).date() > day
        {
            s.minutes_today = 0.0;
            s.items_today = 0;
        }
        if self
            .last_active
            .is_none_or(|last| ms(now) - ms(last) > gap_ms)
        {
            s.session_started = None;
            s.session_items = 0;
        }
        s
    }
}

pub(crate) struct Trees {
    pub meta: Tree,
    pub videos: Tree,
    pub embeddings: Tree,
    pub by_creator: Tree,
    pub newest: Tree,
    pub featuring: Tree,
    pub by_topic: Tree,
    pub users: Tree,
    pub follows: Tree,
    pub followers: Tree,
    pub blocks: Tree,
    pub mutes: Tree,
    pub consent: Tree,
    pub approved: Tree,
    pub revocations: Tree,
    pub parental: Tree,
    pub prefs: Tree,
    pub wellbeing: Tree,
    pub seen: Tree,
    pub history: Tree,
    pub counters: Tree,
    pub creator_counts: Tree,
    pub interest: Tree,
    pub affinity: Tree,
    pub events: Tree,
    pub event_keys: Tree,
    pub catalog_log: Tree,
}

/// Every tree name, in the order of [`Trees`].
pub(crate) const TREE_NAMES: [&str; 27] = [
    "meta",
    "videos",
    "embeddings",
    "by_creator",
    "newest",
    "featuring",
    "by_topic",
    "users",
    "follows",
    "followers",
    "blocks",
    "mutes",
    "consent",
    "approved",
    "revocations",
    "parental",
    "prefs",
    "wellbeing",
    "seen",
    "history",
    "counters",
    "creator_counts",
    "interest",
    "affinity",
    "events",
    "event_keys",
    "catalog_log",
];

impl Trees {
    fn open(db: &Db) -> Result<Self> {
        let o = |name: &str| db.open_tree(name).map_err(db_err);
        Ok(Self {
            meta: o("meta")?,
            videos: o("videos")?,
            embeddings: o("embeddings")?,
            by_creator: o("by_creator")?,
            newest: o("newest")?,
            featuring: o("featuring")?,
            by_topic: o("by_topic")?,
            users: o("users")?,
            follows: o("follows")?,
            followers: o("followers")?,
            blocks: o("blocks")?,
            mutes: o("mutes")?,
            consent: o("consent")?,
            approved: o("approved")?,
            revocations: o("revocations")?,
            parental: o("parental")?,
            prefs: o("prefs")?,
            wellbeing: o("wellbeing")?,
            seen: o("seen")?,
            history: o("history")?,
            counters: o("counters")?,
            creator_counts: o("creator_counts")?,
            interest: o("interest")?,
            affinity: o("affinity")?,
            events: o("events")?,
            event_keys: o("event_keys")?,
            catalog_log: o("catalog_log")?,
        })
    }
}

/// The writes of one logical change, one batch per tree, committed atomically.
#[derive(Default)]
pub(crate) struct Writes<'a> {
    batches: Vec<(&'a Tree, Batch)>,
}

impl<'a> Writes<'a> {
    pub fn batch(&mut self, tree: &'a Tree) -> &mut Batch {
        let i = match self
            .batches
            .iter()
            .position(|(t, _)| std::ptr::eq(*t, tree))
        {
            Some(i) => i,
            None => {
                self.batches.push((tree, Batch::default()));
                self.batches.len() - 1
            }
        };
        &mut self.batches[i].1
    }

    pub fn insert(&mut self, tree: &'a Tree, k: impl AsRef<[u8]>, v: impl AsRef<[u8]>) {
        self.batch(tree).insert(k.as_ref(), v.as_ref());
    }

    pub fn remove(&mut self, tree: &'a Tree, k: impl AsRef<[u8]>) {
        self.batch(tree).remove(k.as_ref());
    }

    /// Applies everything atomically: one batch for one tree, a transaction for several.
    pub fn commit(self) -> Result<()> {
        match self.batches.len() {
            0 => Ok(()),
            1 => {
                let mut it = self.batches.into_iter();
                match it.next() {
                    Some((t, b)) => t.apply_batch(b).map_err(db_err),
                    None => Ok(()),
                }
            }
            _ => {
                let trees: Vec<&Tree> = self.batches.iter().map(|(t, _)| *t).collect();
                trees[..]
                    .transaction(|tx| {
                        for (t, (_, b)) in tx.iter().zip(&self.batches) {
                            t.apply_batch(b)?;
                        }
                        Ok::<(), ConflictableTransactionError<()>>(())
                    })
                    .map_err(tx_err)
            }
        }
    }
}

pub(crate) struct Inner {
    pub db: Db,
    pub t: Trees,
    pub opts: StoreOptions,
    pub path: Option<PathBuf>,
    /// Serialises writers: read-modify-write of counters, vectors and rings is then
    /// race-free without optimistic transactions, and sled work is CPU-bound anyway.
    pub write: Mutex<()>,
    pub commit: GroupCommit,
    pub cache: VideoCache,
    pub popular: Mutex<TopList>,
    pub remix: Mutex<TopList>,
    pub next_seq: AtomicU64,
    pub live_videos: AtomicU64,
    pub catalog_version: AtomicU64,
    /// The catalog log's floor: `catalog_log` holds every change made above it.
    pub catalog_floor: AtomicU64,
    /// Derived state not yet written to its trees (see `derived.rs`).
    pub overlay: RwLock<Overlay>,
    /// Set by [`Store::crash_for_tests`]: closing must not persist the overlay.
    pub crashed: AtomicBool,
    /// Set when the last handle goes: background work (the cache warmer) stops.
    pub closing: AtomicBool,
    /// Set when the cache warmer is done (or was not started).
    pub warm: AtomicBool,
    /// Wakes the background persister before its period is up (a write left the
    /// active layer over its bound, or the store is closing).
    pub persist_wake: Wake,
    /// Held while derived state is written out (taken before `write`): one persist at a
    /// time, and video deletions never race with one.
    pub persist: Mutex<()>,
    /// Time zones of users seen by recent batches (wellbeing days are local).
    pub time_zones: RwLock<std::collections::HashMap<UserId, TimeZone>>,
    /// Bumped after every change to a user, a consent scope or parental controls: a
    /// cached [`PersonFacts`] is valid only while the epoch it was read at is current.
    pub consent_epoch: AtomicU64,
    /// Per-person consent facts the feed's consent filter reads for every cameo.
    pub person_facts: RwLock<FastMap<UserId, (u64, Option<PersonFacts>)>>,
    /// Decoded per-video counters read from sled (the overlay is consulted first). An
    /// entry leaves when a layer holding its key leaves the overlay (`forget_layer`), so
    /// it can never shadow a newer value, and when its video is deleted.
    pub counter_cache: RwLock<FastMap<VideoId, Option<CounterRec>>>,
    /// The same for per-creator counters.
    pub creator_cache: RwLock<FastMap<UserId, Option<CounterRec>>>,
    /// Bumped whenever cached counters are dropped: a reader fills the caches only if no
    /// drop happened since it began, so a value read before a drop is never cached after.
    pub counter_epoch: AtomicU64,
    /// The time indexes, relations, approvals and revocations in memory (`mirror.rs`).
    pub mirror: Mirror,
    /// Shared allocations of the ids the store hands out.
    pub ids: Ids,
    /// Unreadable records found so far, and the rule each fell under (`damage.rs`).
    pub damage: DamageLog,
    /// Decoded users, preferences and parental controls.
    pub users: RecordCache<Option<User>>,
    pub prefs: RecordCache<Option<Arc<Preferences>>>,
    pub parental: RecordCache<ParentalControls>,
}

/// Cached counter records before a cache starts over, at least.
const MIN_CACHED_COUNTERS: usize = 500_000;

/// What the consent filter needs of a person, whatever the video: cached per person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PersonFacts {
    pub age_band: steerfeed_core::AgeBand,
    pub scope: ConsentScope,
    pub parental_scope: Option<ConsentScope>,
}

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

fn header(dim: usize) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&SCHEMA_VERSION.to_be_bytes());
    h.extend_from_slice(&(dim as u32).to_be_bytes());
    h
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    Follow,
    Block,
    Mute,
}

impl Rel {
    fn field(self) -> &'static str {
        match self {
            Rel::Follow => "follow",
            Rel::Block => "block",
            Rel::Mute => "mute",
        }
    }
}

/// A `catalog_log` key: the catalog version (big-endian, so the log sorts by version)
/// followed by the video id.
fn catalog_log_key(version: u64, id: &VideoId) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + id.as_str().len());
    k.extend_from_slice(&version.to_be_bytes());
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

pub(crate) fn revocation_key(person: &UserId, r: &Revocation) -> Vec<u8> {
    let mut k = prefix(person.as_str());
    match r {
        Revocation::Video(v) => {
            k.push(b'v');
            k.extend_from_slice(v.as_str().as_bytes());
        }
        Revocation::Creator(c) => {
            k.push(b'c');
            k.extend_from_slice(c.as_str().as_bytes());
        }
    }
    k
}

impl Store {
    /// Opens (or creates) the store at `path`. A new store gets a header with
    /// [`SCHEMA_VERSION`] and `opts.dim`; an existing one must carry the same version and
    /// dimension, and a directory holding some other sled database is refused.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Store> {
        let config = sled::Config::new()
            .path(path)
            .cache_capacity(opts.cache_bytes())
            .flush_every_ms(Some(opts.flush_every_ms.max(1)));
        Self::open_with(config, opts, Some(path.to_path_buf()))
    }

    /// A store in a temporary directory that is removed when the store is dropped (tests).
    pub fn temporary(opts: StoreOptions) -> Result<Store> {
        let config = sled::Config::new()
            .temporary(true)
            .cache_capacity(opts.cache_bytes())
            .flush_every_ms(Some(opts.flush_every_ms.max(1)));
        Self::open_with(config, opts, None)
    }

    fn open_with(config: sled::Config, opts: StoreOptions, path: Option<PathBuf>) -> Result<Store> {
        let config = config.mode(sled::Mode::HighThroughput);
        opts.validate()?;
        let shown = path
            .as_ref()
            .map_or_else(|| "(temporary)".to_owned(), |p| p.display().to_string());
        // sled reports corrupt files as errors, but be certain a foreign file never
        // brings the caller down.
        let open = || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())).map_err(|_| {
                Error::internal("store", format!("{shown}: sled panicked opening the files"))
            })
        };
        // sled's I/O threads may hold the file lock for a moment after a store in this
        // process closed (spacejam/sled#1289): wait for it, up to 5 s on a loaded
        // machine, rather than fail a quick reopen.
        let mut res = open()?;
        for _ in 0..500 {
            match &res {
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock") =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    res = open()?;
                }
                _ => break,
            }
        }
        let db = res.map_err(|e| match e {
            sled::Error::Corruption { .. } => Error::invalid(
                "store.path",
                format!("{shown}: the files are corrupt or not a sled database ({e})"),
            ),
            other => Error::internal("store", format!("{shown}: cannot open: {other}")),
        })?;
        let version = Self::check_header(&db, &opts, &shown)?;
        let t = Trees::open(&db)?;
        let next_seq = match t.events.last().map_err(db_err)? {
            Some((k, v)) => {
                u64_of(&k).ok_or_else(|| corrupt("event key"))? + codec::record_len(&v)?
            }
            None => 1,
        };
        let catalog_version = match t.meta.get(CATALOG_VERSION_KEY).map_err(db_err)? {
            Some(b) => u64_of(&b).ok_or_else(|| corrupt("catalog version"))?,
            None => 0,
        };
        if version < 7 {
            // Builds before schema 7 changed videos without logging them: the log starts
            // now (7, not SCHEMA_VERSION: later schemas keep the log). Done
            // before any header is rewritten, so a crash in between redoes it.
            t.catalog_log.clear().map_err(db_err)?;
            t.meta
                .insert(CATALOG_FLOOR_KEY, &catalog_version.to_be_bytes())
                .map_err(db_err)?;
            db.flush().map_err(db_err)?;
        }
        let catalog_floor = match t.meta.get(CATALOG_FLOOR_KEY).map_err(db_err)? {
            Some(b) => u64_of(&b).ok_or_else(|| corrupt("catalog log floor"))?,
            None => {
                // A new store (or one whose upgrade stopped right after the header was
                // rewritten, which no build could change videos in since): the log
                // starts at the current version.
                t.meta
                    .insert(CATALOG_FLOOR_KEY, &catalog_version.to_be_bytes())
                    .map_err(db_err)?;
                catalog_version
            }
        };
        if catalog_floor > catalog_version {
            return Err(corrupt("catalog log floor"));
        }
        if version == 1 {
            // Version 1 wrote derived state in one transaction with the log: it is
            // complete up to the last event.
            for d in Derived::ALL {
                d.tree(&t)
                    .insert(WATERMARK_KEY, &(next_seq - 1).to_be_bytes())
                    .map_err(db_err)?;
            }
            t.meta
                .insert(HEADER_KEY, header(opts.dim))
                .map_err(db_err)?;
            db.flush().map_err(db_err)?;
            tracing::info!(path = %shown, "store: upgraded schema version 1 to 2");
        }
        if version < 3 {
            let mut n = 0usize;
            for kv in t.videos.iter() {
                let (_, b) = kv.map_err(db_err)?;
                let v = decode_video(&b)?;
                if v.deleted {
                    continue;
                }
                let at = ms(v.created_at);
                for topic in &v.topics {
                    t.by_topic
                        .insert(timed(topic.as_str(), at, v.id.as_str()), &[])
                        .map_err(db_err)?;
                }
                n += 1;
            }
            t.meta
                .insert(HEADER_KEY, header(opts.dim))
                .map_err(db_err)?;
            db.flush().map_err(db_err)?;
            tracing::info!(path = %shown, videos = n, "store: upgraded to schema version 3 (topic index)");
        }
        if (3..SCHEMA_VERSION).contains(&version) {
            // This build reads everything versions 3 to 6 wrote (see `SCHEMA_VERSION`),
            // so only the header changes (the catalog log was started above).
            t.meta
                .insert(HEADER_KEY, header(opts.dim))
                .map_err(db_err)?;
            db.flush().map_err(db_err)?;
            tracing::info!(path = %shown, from = version, "store: upgraded the schema version to {SCHEMA_VERSION}");
        }
        let live = match t.meta.get(LIVE_VIDEOS_KEY).map_err(db_err)? {
            Some(b) => u64_of(&b).ok_or_else(|| corrupt("video count"))?,
            None => 0,
        };
        let hl = opts.counter_half_life_h * 3_600_000.0;
        let mut popular = TopList::new(opts.top_lists, hl);
        let mut remix = TopList::new(opts.top_lists, hl);
        for kv in t.counters.iter() {
            let (k, v) = kv.map_err(db_err)?;
            if k.as_ref() == WATERMARK_KEY {
                continue;
            }
            let id = video_of(&k)?;
            let rec = CounterRec::decode(&v)?;
            popular.update(&id, rec.popular, rec.at_ms);
            remix.update(&id, rec.remix, rec.at_ms);
        }
        let inner = Arc::new(Inner {
            overlay: RwLock::new(Overlay::new(next_seq - 1)),
            crashed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            warm: AtomicBool::new(false),
            persist_wake: Wake::default(),
            persist: Mutex::new(()),
            time_zones: RwLock::default(),
            consent_epoch: AtomicU64::new(0),
            person_facts: RwLock::default(),
            counter_cache: RwLock::default(),
            creator_cache: RwLock::default(),
            counter_epoch: AtomicU64::new(0),
            mirror: Mirror::default(),
            ids: Ids::default(),
            damage: DamageLog::default(),
            users: RecordCache::new(MAX_CACHED_USERS),
            prefs: RecordCache::new(MAX_CACHED_USERS),
            parental: RecordCache::new(MAX_CACHED_USERS),
            cache: VideoCache::new(opts.video_cache),
            popular: Mutex::new(popular),
            remix: Mutex::new(remix),
            next_seq: AtomicU64::new(next_seq),
            live_videos: AtomicU64::new(live),
            catalog_version: AtomicU64::new(catalog_version),
            catalog_floor: AtomicU64::new(catalog_floor),
            write: Mutex::new(()),
            commit: GroupCommit::default(),
            db,
            t,
            opts,
            path,
        });
        let bare = Store {
            inner: Arc::clone(&inner),
            _closer: None,
        };
        bare.replay()?;
        inner.mirror.load(&inner.t, &inner.ids, &inner.damage)?;
        let bg = Arc::clone(&inner);
        let every = std::time::Duration::from_millis(opts.derived_persist_ms.max(1));
        let thread = std::thread::Builder::new()
            .name("steerfeed-store-persist".into())
            .spawn(move || {
                let s = Store {
                    inner: bg,
                    _closer: None,
                };
                loop {
                    s.inner.persist_wake.wait(every);
                    if s.inner.closing.load(Ordering::Acquire) {
                        break;
                    }
                    if s.inner.crashed.load(Ordering::Acquire) {
                        continue;
                    }
                    if let Err(e) = s.persist_round() {
                        tracing::warn!(error = %e, "store: could not write derived state");
                    }
                }
            })
            .map_err(|e| Error::internal("store", format!("cannot start the persister: {e}")))?;
        let warmer = if opts.warm_video_cache && opts.video_cache > 0 {
            let bg = Arc::clone(&inner);
            let spawned = std::thread::Builder::new()
                .name("steerfeed-store-warm".into())
                .spawn(move || {
                    let s = Store {
                        inner: bg,
                        _closer: None,
                    };
                    match s.warm_video_cache() {
                        Ok(n) => tracing::debug!(videos = n, "store: video cache warmed"),
                        Err(e) => {
                            tracing::warn!(error = %e, "store: could not warm the video cache")
                        }
                    }
                    match s.warm_resident() {
                        Ok(n) => tracing::debug!(users = n, "store: per-user state resident"),
                        Err(e) => {
                            tracing::warn!(error = %e, "store: could not load per-user state")
                        }
                    }
                    s.inner.warm.store(true, Ordering::Release);
                });
            match spawned {
                Ok(h) => Some(h),
                Err(e) => {
                    // Only a cold cache: the store works without it.
                    tracing::warn!(error = %e, "store: cannot start the cache warmer");
                    inner.warm.store(true, Ordering::Release);
                    None
                }
            }
        } else {
            inner.warm.store(true, Ordering::Release);
            None
        };
        Ok(Store {
            inner: Arc::clone(&inner),
            _closer: Some(Arc::new(Closer {
                inner,
                thread: Some(thread),
                warmer,
            })),
        })
    }

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
        let _p = self.persist_lock();
        let _g = self.write_lock();
        let db = &self.inner.db;
        self.inner
            .commit
            .wait_durable(self.inner.commit.written(), || db.flush())?;
        let mut ov = self.overlay_write();
        let applied = ov.applied;
        *ov = Overlay::new(applied);
        Ok(())
    }

    /// Checks (or writes) the header; returns the schema version found (a new store gets
    /// [`SCHEMA_VERSION`]; an older one is upgraded by the caller).
    fn check_header(db: &Db, opts: &StoreOptions, shown: &str) -> Result<u32> {
        let names: HashSet<Vec<u8>> = db.tree_names().iter().map(|n| n.to_vec()).collect();
        if !names.contains(b"meta".as_slice()) {
            let foreign = names.iter().any(|n| {
                n.as_slice() != b"__sled__default"
                    && !TREE_NAMES.iter().any(|t| t.as_bytes() == n.as_slice())
            }) || !db.is_empty();
            if foreign || names.len() > 1 {
                return Err(Error::invalid(
                    "store.path",
                    format!("{shown}: holds a database that is not a steerfeed store"),
                ));
            }
            let meta = db.open_tree("meta").map_err(db_err)?;
            meta.insert(HEADER_KEY, header(opts.dim)).map_err(db_err)?;
            db.flush().map_err(db_err)?;
            return Ok(SCHEMA_VERSION);
        }
        let meta = db.open_tree("meta").map_err(db_err)?;
        let h = meta.get(HEADER_KEY).map_err(db_err)?.ok_or_else(|| {
            Error::invalid(
                "store.path",
                format!("{shown}: no steerfeed header (not a steerfeed store, or damaged)"),
            )
        })?;
        if h.len() != MAGIC.len() + 8 || &h[..MAGIC.len()] != MAGIC {
            return Err(Error::invalid(
                "store.path",
                format!("{shown}: the header is not a steerfeed header (foreign or corrupt store)"),
            ));
        }
        let version = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let dim = u32::from_be_bytes([h[20], h[21], h[22], h[23]]) as usize;
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(Error::invalid(
                "store.schema_version",
                format!(
                    "{shown}: schema version {version}, but this build reads version {SCHEMA_VERSION}; \
                     no migration is available"
                ),
            ));
        }
        if dim != opts.dim {
            return Err(Error::WrongDimension {
                field: "store.dim",
                expected: dim,
                got: opts.dim,
            });
        }
        Ok(version)
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
    fn write_durably(
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

    /// Flushes everything written so far to disk, derived state in memory included.
    pub fn flush(&self) -> Result<()> {
        self.persist_round()?;
        let generation = self.inner.commit.written();
        self.durable(generation)
    }

    // -----------------------------------------------------------------------------------
    // Existence checks.

    fn require_user(&self, id: &UserId) -> Result<()> {
        if self.t().users.contains_key(id.as_str()).map_err(db_err)? {
            Ok(())
        } else {
            Err(Error::not_found(Entity::User, id))
        }
    }

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
            let t = self.t();
            let mut w = Writes::default();
            let mut live_delta: i64 = 0;
            let mut olds = Vec::with_capacity(batch.len());
            for v in &batch {
                let old = match t.videos.get(v.id.as_str()).map_err(db_err)? {
                    Some(b) => Some(decode_video(&b)?),
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
                if v.deleted {
                    let mut ov = self.overlay_write();
                    ov.active.counters.remove(&v.id);
                    let old = ov.clean.take();
                    self.forget_layer(old.as_deref());
                    self.forget_counter(&v.id);
                    lock(&self.inner.popular).remove(&v.id);
                    lock(&self.inner.remix).remove(&v.id);
                }
            }
            generation
        };
        self.durable(generation)
    }

    /// The next catalog version, written in the same transaction as the change, with one
    /// `catalog_log` entry per video the change touches.
    fn bump_catalog<'a, 'i>(
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
            t.catalog_log.apply_batch(batch).map_err(db_err)?;
        }
    }

    fn adjust_live<'a>(&'a self, w: &mut Writes<'a>, delta: i64) -> u64 {
        let live = (self.inner.live_videos.load(Ordering::Acquire) as i64 + delta).max(0) as u64;
        if delta != 0 {
            w.insert(&self.t().meta, LIVE_VIDEOS_KEY, live.to_be_bytes());
        }
        live
    }

    fn index<'a>(&'a self, w: &mut Writes<'a>, v: &Video) {
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

    fn unindex<'a>(&'a self, w: &mut Writes<'a>, v: &Video) {
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
            let mut v = decode_video(&b)?;
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
            self.inner.cache.invalidate(id);
            let mut ov = self.overlay_write();
            ov.active.counters.remove(id);
            let old = ov.clean.take();
            self.forget_layer(old.as_deref());
            self.forget_counter(id);
            drop(ov);
            lock(&self.inner.popular).remove(id);
            lock(&self.inner.remix).remove(id);
            generation
        };
        self.durable(generation)
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
        let mut v = self.inner.ids.canonical(decode_video(&b)?);
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

    /// Calls `f(id, embedding)` for every live stored video, in id order (to build or
    /// rebuild the ANN index). Deleted videos' embeddings are not read. A video whose
    /// record or embedding cannot be read is skipped, withheld and noted (see
    /// [`Store::damage`]). Stops at the first error `f` returns.
    pub fn for_each_embedding(
        &self,
        mut f: impl FnMut(VideoId, Embedding) -> Result<()>,
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
            let live = match t.videos.get(&k).map_err(db_err)? {
                Some(b) => match decode_video(&b) {
                    Ok(v) => !v.deleted,
                    Err(_) => {
                        withheld("videos");
                        false
                    }
                },
                None => false,
            };
            if !live {
                continue;
            }
            match decode_embedding(&e) {
                Ok(e) => f(id, e)?,
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

    /// Events accepted so far (the log is append-only; sequence numbers start at 1).
    pub fn event_count(&self) -> u64 {
        self.inner.next_seq.load(Ordering::Acquire) - 1
    }

    /// Calls `f(seq, event)` for every logged event with sequence number `>= from`, in
    /// order (to rebuild in-memory indexes such as co-engagement at start-up).
    pub fn for_each_event(&self, from: u64, f: impl FnMut(u64, Event) -> Result<()>) -> Result<()> {
        crate::ingest::for_each_logged(&self.t().events, from, f)
    }

    // -----------------------------------------------------------------------------------
    // Users and the social graph.

    /// Inserts or replaces a user (the time zone must be known).
    pub fn upsert_user(&self, user: &User) -> Result<()> {
        user.validate()?;
        let b = json(user)?;
        let _epoch = EpochBump(self);
        self.write_durably(
            |s, w| {
                w.insert(&s.t().users, user.id.as_str(), b);
                // Under the write lock: no batch can cache the old zone again.
                s.inner
                    .time_zones
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&user.id);
                Ok(())
            },
            |i| i.users.invalidate(&user.id),
        )
    }

    /// The user, if known.
    pub fn user(&self, id: &UserId) -> Result<Option<User>> {
        let version = match self.inner.users.get(id) {
            Ok(u) => return Ok(u),
            Err(version) => version,
        };
        let u = match self.t().users.get(id.as_str()).map_err(db_err)? {
            Some(b) => Some(unjson::<User>(&b, "user")?),
            None => None,
        };
        self.inner.users.insert(id, u.clone(), version);
        Ok(u)
    }

    /// The user's time zone, cached for later batches. Call under the write lock (the
    /// cache is filled only there, so an upsert can never be overtaken by a stale zone).
    pub(crate) fn time_zone_for_write(&self, id: &UserId) -> Result<TimeZone> {
        if let Some(tz) = self.cached_time_zone(id) {
            return Ok(tz);
        }
        let tz = self.time_zone(id)?;
        let mut c = self
            .inner
            .time_zones
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if c.len() >= MAX_CACHED_ZONES {
            c.clear();
        }
        c.insert(id.clone(), tz.clone());
        Ok(tz)
    }

    fn cached_time_zone(&self, id: &UserId) -> Option<TimeZone> {
        self.inner
            .time_zones
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    pub(crate) fn time_zone(&self, id: &UserId) -> Result<TimeZone> {
        if let Some(tz) = self.cached_time_zone(id) {
            return Ok(tz);
        }
        Ok(self
            .user(id)?
            .and_then(|u| TimeZone::get(&u.time_zone).ok())
            .unwrap_or(TimeZone::UTC))
    }

    fn relation(&self, a: &UserId, b: &UserId, rel: Rel, on: bool) -> Result<()> {
        if a == b {
            return Err(Error::invalid(
                rel.field(),
                "a user cannot do this to themselves",
            ));
        }
        self.require_user(a)?;
        self.require_user(b)?;
        let edge = match rel {
            Rel::Follow => Edge::Follow,
            Rel::Block => Edge::Block,
            Rel::Mute => Edge::Mute,
        };
        self.write_durably(
            |s, w| {
                let t = s.t();
                let (ab, ba) = (pair(a.as_str(), b.as_str()), pair(b.as_str(), a.as_str()));
                let mut keys = vec![(
                    match rel {
                        Rel::Follow => &t.follows,
                        Rel::Block => &t.blocks,
                        Rel::Mute => &t.mutes,
                    },
                    ab,
                )];
                if rel == Rel::Follow {
                    keys.push((&t.followers, ba));
                }
                for (tree, key) in keys {
                    if on {
                        w.insert(tree, key, []);
                    } else {
                        w.remove(tree, key);
                    }
                }
                Ok(())
            },
            |i| i.mirror.rel_mut().set(edge, a, b, on, &i.ids),
        )
    }

    /// `a` follows `b` (both must exist). Durable when it returns.
    pub fn follow(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Follow, true)
    }

    /// `a` stops following `b`.
    pub fn unfollow(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Follow, false)
    }

    /// `a` blocks `b` (both must exist). Durable when it returns.
    pub fn block(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Block, true)
    }

    /// `a` unblocks `b`.
    pub fn unblock(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Block, false)
    }

    /// `a` mutes `b` (both must exist).
    pub fn mute(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Mute, true)
    }

    /// `a` unmutes `b`.
    pub fn unmute(&self, a: &UserId, b: &UserId) -> Result<()> {
        self.relation(a, b, Rel::Mute, false)
    }

    fn second_ids(&self, tree: &Tree, a: &UserId) -> Result<Vec<UserId>> {
        tree.scan_prefix(prefix(a.as_str()))
            .map(|kv| {
                let (k, _) = kv.map_err(db_err)?;
                user_of(after_sep(&k).ok_or_else(|| corrupt("relation key"))?)
            })
            .collect()
    }

    /// Who follows `user`.
    pub fn followers(&self, user: &UserId) -> Result<Vec<UserId>> {
        self.second_ids(&self.t().followers, user)
    }

    /// Whom `user` blocked.
    pub fn blocked(&self, user: &UserId) -> Result<Vec<UserId>> {
        Ok(self.inner.mirror.rel().from(Edge::Block, user))
    }

    /// Whom `user` muted (including creators hidden with "hide creator").
    pub fn muted(&self, user: &UserId) -> Result<Vec<UserId>> {
        Ok(self.inner.mirror.rel().from(Edge::Mute, user))
    }

    pub(crate) fn following_ids(&self, user: &UserId) -> Result<Vec<UserId>> {
        Ok(self.inner.mirror.rel().from(Edge::Follow, user))
    }

    pub(crate) fn follows_edge(&self, a: &UserId, b: &UserId) -> Result<bool> {
        Ok(self.inner.mirror.rel().has(Edge::Follow, a, b))
    }

    // -----------------------------------------------------------------------------------
    // Consent, parental controls, preferences.

    /// Sets who may use `person`'s likeness and, for [`ConsentScope::Approved`], the
    /// approved users (replacing the previous list). Stored as given: the teen clamp is
    /// policy, applied by the ranking. Durable when it returns.
    pub fn set_consent(
        &self,
        person: &UserId,
        scope: ConsentScope,
        approved: &[UserId],
    ) -> Result<()> {
        if approved.len() > self.inner.opts.max_approved {
            return Err(Error::TooLarge {
                field: "approved",
                limit: self.inner.opts.max_approved,
                got: approved.len(),
            });
        }
        self.require_user(person)?;
        let rec = json(&ConsentRec { scope })?;
        let _epoch = EpochBump(self);
        self.write_durably(
            |s, w| {
                let t = s.t();
                w.insert(&t.consent, person.as_str(), rec);
                for kv in t.approved.scan_prefix(prefix(person.as_str())) {
                    let (k, _) = kv.map_err(db_err)?;
                    w.remove(&t.approved, k);
                }
                for a in approved {
                    w.insert(&t.approved, pair(person.as_str(), a.as_str()), []);
                }
                Ok(())
            },
            |i| i.mirror.rel_mut().set_approved(person, approved, &i.ids),
        )
    }

    /// The scope `person` set ([`ConsentScope::Nobody`] when none, and when the record
    /// cannot be read: an unreadable consent fails closed, see `damage.rs`).
    pub(crate) fn consent_scope(&self, person: &UserId) -> Result<ConsentScope> {
        Ok(
            match self.t().consent.get(person.as_str()).map_err(db_err)? {
                Some(b) => match unjson::<ConsentRec>(&b, "consent") {
                    Ok(rec) => rec.scope,
                    Err(_) => {
                        self.inner.damage.note(
                            "consent",
                            person.as_str().as_bytes(),
                            DamageRule::LikenessWithheld,
                        );
                        ConsentScope::Nobody
                    }
                },
                None => ConsentScope::Nobody,
            },
        )
    }

    /// Every unreadable record found since open, and the rule each fell under (see the
    /// table in `damage.rs`): open reads the relation and revocation trees whole, and
    /// embeddings and consent records are noted when read.
    pub fn damage(&self) -> DamageReport {
        self.inner.damage.report()
    }

    /// The scope `person` set and their approved list.
    pub fn consent(&self, person: &UserId) -> Result<(ConsentScope, Vec<UserId>)> {
        Ok((
            self.consent_scope(person)?,
            self.second_ids(&self.t().approved, person)?,
        ))
    }

    /// `person` withdraws consent for one video or for every video of one creator. The
    /// next [`ConsentLedger`](steerfeed_core::ports::ConsentLedger) read sees it; durable
    /// when it returns.
    pub fn revoke_consent(&self, person: &UserId, revocation: &Revocation) -> Result<()> {
        self.require_user(person)?;
        let key = revocation_key(person, revocation);
        self.write_durably(
            |s, w| {
                w.insert(&s.t().revocations, key, []);
                Ok(())
            },
            |i| {
                i.mirror
                    .rel_mut()
                    .revoke(person, revocation.clone(), &i.ids)
            },
        )
    }

    /// True when `person` revoked `revocation`.
    pub fn is_revoked(&self, person: &UserId, revocation: &Revocation) -> Result<bool> {
        let rel = self.inner.mirror.rel();
        Ok(match revocation {
            Revocation::Video(v) => rel.revoked(person, Some(v), None),
            Revocation::Creator(c) => rel.revoked(person, None, Some(c)),
        })
    }

    /// Sets a user's parental controls. Durable when it returns.
    pub fn set_parental_controls(&self, user: &UserId, controls: &ParentalControls) -> Result<()> {
        controls.validate()?;
        self.require_user(user)?;
        let b = json(controls)?;
        let _epoch = EpochBump(self);
        self.write_durably(
            |s, w| {
                w.insert(&s.t().parental, user.as_str(), b);
                Ok(())
            },
            |i| i.parental.invalidate(user),
        )
    }

    /// A user's parental controls (defaults when none are set).
    pub fn parental_controls(&self, user: &UserId) -> Result<ParentalControls> {
        let version = match self.inner.parental.get(user) {
            Ok(p) => return Ok(p),
            Err(version) => version,
        };
        let p = match self.t().parental.get(user.as_str()).map_err(db_err)? {
            Some(b) => unjson::<ParentalControls>(&b, "parental controls")?,
            None => ParentalControls::default(),
        };
        self.inner.parental.insert(user, p.clone(), version);
        Ok(p)
    }

    /// A person's consent facts, from the per-person cache when it is current.
    pub(crate) fn person_facts(&self, person: &UserId) -> Result<Option<PersonFacts>> {
        let epoch = self.inner.consent_epoch.load(Ordering::Acquire);
        if let Some((e, f)) = self
            .inner
            .person_facts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(person)
            && *e == epoch
        {
            return Ok(*f);
        }
        let facts = match self.user(person)? {
            None => None,
            Some(u) => Some(PersonFacts {
                age_band: u.age_band,
                scope: self.consent_scope(person)?,
                parental_scope: self.parental_controls(person)?.cameo_scope,
            }),
        };
        let mut cache = self
            .inner
            .person_facts
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_PERSON_FACTS {
            cache.clear();
        }
        // Tagged with the epoch read *before* the reads: if a write landed meanwhile,
        // the entry is already stale and is never used.
        cache.insert(person.clone(), (epoch, facts));
        Ok(facts)
    }

    /// Stores a user's preference text and its compiled constraints (replacing any).
    pub fn set_preferences(
        &self,
        user: &UserId,
        text: &str,
        constraints: &Constraints,
    ) -> Result<()> {
        let limit = self.inner.opts.max_preference_bytes;
        if text.len() > limit {
            return Err(Error::TooLarge {
                field: "text",
                limit,
                got: text.len(),
            });
        }
        constraints.validate()?;
        self.require_user(user)?;
        let b = json(&Preferences {
            text: text.to_owned(),
            constraints: constraints.clone(),
        })?;
        self.write_durably(
            |s, w| {
                w.insert(&s.t().prefs, user.as_str(), b);
                Ok(())
            },
            |i| i.prefs.invalidate(user),
        )
    }

    /// Removes a user's preferences.
    pub fn clear_preferences(&self, user: &UserId) -> Result<()> {
        self.write_durably(
            |s, w| {
                w.remove(&s.t().prefs, user.as_str());
                Ok(())
            },
            |i| i.prefs.invalidate(user),
        )
    }

    /// A user's preferences, expired or not.
    pub fn preferences(&self, user: &UserId) -> Result<Option<Preferences>> {
        let version = match self.inner.prefs.get(user) {
            Ok(p) => return Ok(p.map(|p| Preferences::clone(&p))),
            Err(version) => version,
        };
        let p = match self.t().prefs.get(user.as_str()).map_err(db_err)? {
            Some(b) => Some(Arc::new(unjson::<Preferences>(&b, "preferences")?)),
            None => None,
        };
        self.inner.prefs.insert(user, p.clone(), version);
        Ok(p.map(|p| Preferences::clone(&p)))
    }

    /// The constraints in force at `now`: empty when none are set or they expired.
    pub fn active_constraints(&self, user: &UserId, now: Timestamp) -> Result<Constraints> {
        Ok(self
            .preferences(user)?
            .map(|p| p.constraints)
            .filter(|c| !c.is_expired(now))
            .unwrap_or_default())
    }

    // -----------------------------------------------------------------------------------
    // Wellbeing, seen history, interest, viewer.

    pub(crate) fn wellbeing_rec(&self, user: &UserId) -> Result<WellbeingRec> {
        if let Some(r) = self.overlay_read().wellbeing(user) {
            return Ok(r.clone());
        }
        self.stored_wellbeing(user).map(|(r, _)| r)
    }

    /// The wellbeing record in sled (the overlay may hold a newer one) and its as-of
    /// number (0 when it has none).
    pub(crate) fn stored_wellbeing(&self, user: &UserId) -> Result<(WellbeingRec, u64)> {
        match self.t().wellbeing.get(user.as_str()).map_err(db_err)? {
            Some(b) => Self::decode_wellbeing_asof(&b),
            None => Ok((WellbeingRec::default(), 0)),
        }
    }

    /// A wellbeing record: binary since schema version 5, JSON (it starts with `{`)
    /// before.
    pub(crate) fn decode_wellbeing(b: &[u8]) -> Result<WellbeingRec> {
        Self::decode_wellbeing_asof(b).map(|(r, _)| r)
    }

    /// [`Store::decode_wellbeing`] and the record's as-of number (0 when it has none).
    pub(crate) fn decode_wellbeing_asof(b: &[u8]) -> Result<(WellbeingRec, u64)> {
        match b.first() {
            Some(b'{') => unjson(b, "wellbeing").map(|r| (r, 0)),
            _ => codec::decode_wellbeing(b),
        }
    }

    /// Wellbeing counters as of `now`: the daily counters restart at local midnight in
    /// the user's time zone, and a session idle for longer than the session gap has ended.
    pub fn wellbeing(&self, user: &UserId, now: Timestamp) -> Result<WellbeingState> {
        let tz = self.time_zone(user)?;
        Ok(self.wellbeing_rec(user)?.view(&tz, now, self.gap_ms()))
    }

    /// Records the page served to `user` at `now`: the items enter the seen history and
    /// the session counters. Not waited on for durability (a lost record only means an
    /// item may be served again); sled writes it within `flush_every_ms`.
    pub fn record_served(&self, user: &UserId, videos: &[VideoId], now: Timestamp) -> Result<()> {
        self.record_page(
            user,
            &ServedPage {
                videos,
                ..ServedPage::default()
            },
            now,
        )
    }

    /// Records what one served page changes for its viewer, in one write (one lock, one
    /// overlay update; not waited on): its items are seen and counted in the session,
    /// and the check-in or break card it showed is noted (a break card once per "not
    /// great" answer per session).
    pub fn record_page(&self, user: &UserId, page: &ServedPage<'_>, now: Timestamp) -> Result<()> {
        {
            let _g = self.write_lock();
            let mut rec = self.wellbeing_rec(user)?;
            let videos = page.videos;
            if !videos.is_empty() {
                rec.touch(now, self.gap_ms());
                rec.state.session_items = rec
                    .state
                    .session_items
                    .saturating_add(u32::try_from(videos.len()).unwrap_or(u32::MAX));
            }
            let st = &mut rec.state;
            if page.checkin && st.last_checkin.is_none_or(|t| t < now) {
                st.last_checkin = Some(now);
            }
            if page.break_card && st.last_break.is_none_or(|t| t < now) {
                st.last_break = Some(now);
            }
            let mut ring = crate::ingest::Rings::default();
            {
                let ov = self.overlay_read();
                for v in videos {
                    ring.push_seen(self, &ov, (user, u64::MAX), ms(now), v)?;
                }
            }
            let mut ov = self.overlay_write();
            let added = ring.install(self, &mut ov);
            ov.pending +=
                added + usize::from(ov.active.wellbeing.insert(user.clone(), rec).is_none());
        }
        self.persist_if_due()
    }

    /// The user's seen history, newest first (at most `seen_per_user`).
    pub fn seen(&self, user: &UserId) -> Result<Vec<(VideoId, Timestamp)>> {
        let ov = self.overlay_read();
        let cap = self.inner.opts.seen_per_user;
        crate::ingest::read_ring(
            &self.t().seen,
            &ov.rings(user, |l| &l.seen),
            user,
            cap,
            usize::try_from(cap).unwrap_or(usize::MAX),
            |v| {
                let at = codec::i64_le(v, 0).ok_or_else(|| corrupt("seen"))?;
                Ok((video_of(&v[8..])?, codec::ts_of_ms(at)))
            },
        )
    }

    /// The user's interest vector: the recency-weighted average of the embeddings of the
    /// videos they engaged with, each weighted by [`StoreOptions::weight`].
    pub fn interest(&self, user: &UserId) -> Result<Option<Embedding>> {
        {
            // The overlay, else the resident copy of sled, read under one lock.
            let ov = self.overlay_read();
            let resident = ov.resident.get(user).map(|r| &r.interest);
            match (ov.interest(user), resident) {
                (Some((_, v)), _) | (None, Some(Some((_, v)))) => {
                    return Ok(Embedding::normalized("interest", v).ok());
                }
                (None, Some(None)) => return Ok(None),
                (None, None) => {}
            }
        }
        match self.t().interest.get(user.as_str()).map_err(db_err)? {
            Some(b) => {
                let ((_, v), _) = codec::decode_interest(&b, self.inner.opts.dim)?;
                Ok(Embedding::normalized("interest", &v).ok())
            }
            None => Ok(None),
        }
    }

    /// Decayed interaction strength of `user` with each creator, in `[0, 1)`.
    pub fn creator_affinity(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> Result<steerfeed_core::IdMap<UserId, f32>> {
        let o = &self.inner.opts;
        let hl = o.affinity_half_life_h * 3_600_000.0;
        let ov = self.overlay_read();
        // The resident copy of sled when it has the user, else sled; the overlay on top.
        let mut all = match ov.resident.get(user) {
            Some(r) => r.affinity.clone(),
            None => {
                let mut all = std::collections::HashMap::new();
                for kv in self.t().affinity.scan_prefix(prefix(user.as_str())) {
                    let (k, v) = kv.map_err(db_err)?;
                    all.insert(
                        user_of(after_sep(&k).ok_or_else(|| corrupt("affinity key"))?)?,
                        Decayed::decode(&v)?,
                    );
                }
                all
            }
        };
        all.extend(ov.affinities(user));
        drop(ov);
        Ok(all
            .into_iter()
            .filter_map(|(c, d)| {
                let a = 1.0 - (-d.at(ms(now), hl) / o.affinity_scale).exp2();
                (a >= o.affinity_floor).then_some((c, a))
            })
            .collect())
    }

    /// Everything the ranking needs to know about the viewer's relations and history.
    pub fn load_viewer(&self, user: &UserId, now: Timestamp) -> Result<Viewer> {
        let own: steerfeed_core::IdSet<VideoId> = self
            .inner
            .mirror
            .time()
            .by_creator
            .get(user)
            .map(|tl| {
                tl.iter()
                    .take(self.inner.opts.own_recent)
                    .map(|(_, id)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        let relations_unreadable = {
            let rel = self.inner.mirror.rel();
            rel.all_viewers_restricted || rel.restricted_viewers.contains(user)
        };
        Ok(Viewer {
            relations_unreadable,
            following: self.following_ids(user)?.into_iter().collect(),
            blocked: self.blocked(user)?.into_iter().collect(),
            muted: self.muted(user)?.into_iter().collect(),
            seen: self.seen(user)?.into_iter().map(|(v, _)| v).collect(),
            own_videos: own,
            creator_affinity: self.creator_affinity(user, now)?,
        })
    }
}

impl Store {
    /// Drops the cached counters of every key in `layer`, which is leaving the overlay:
    /// a value cached while the layer was there may be older than what it wrote.
    pub(crate) fn forget_layer(&self, layer: Option<&crate::derived::Layer>) {
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

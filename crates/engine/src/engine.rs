//! The engine: what an app opens once and calls from any thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use steerfeed_ann::VideoIndex;
use steerfeed_core::explain::quoted_caption;
use steerfeed_core::storage::{ItemAsk, ItemGrant, Relation, Storage};
use steerfeed_core::{
    AgeBand, Candidate, CardKind, ConsentScope, Constraints, Cursor, Embedding, Entity,
    ErasureReport, Error, Event, Explanation, FeedContext, FeedItem, FeedRequest, FeedResponse,
    ImpressionItem, ImpressionPage, OwnVideos, PageShadow, ParentalControls, Pipeline,
    PipelineOutput, PreferenceEdit, Reason, Record, Result, StageReport, Timestamp, Trace, User,
    UserId, Video, VideoId,
};
use steerfeed_rank::scorers::ModelSlot;
use steerfeed_rank::{CoEngagementIndex, Ports, RankConfig, build_pipeline};

use crate::config::DEFAULT_PROFILE;
use crate::model::{HAND_SET, ModelInfo, RankModel};
use steerfeed_steer::{Encoder, PreferenceParser};
use steerfeed_store::{
    IngestReport, Logged, Preferences, Revocation, ServedPage, Store, StoreOptions,
};

use crate::config::Config;
use crate::pool::{Opened, Pools, Taken};
use crate::profile::{ProfileSummary, summarize};

mod backup;
mod inspect;
mod learning;

pub use backup::{BackupFile, BackupManifest, RestoreReport};
pub use inspect::{
    CameoView, Limits, PersonView, Preview, SourceHit, StageSummary, VideoVerdict, VideoView,
};
pub use learning::{LabeledImpression, Outcomes};

/// Most recent logged events replayed into the co-engagement model at open.
const CO_ENGAGEMENT_REPLAY: u64 = 1_000_000;

/// File name of the vector index inside the store directory (format:
/// `steerfeed_ann`'s `persist` module; it records the catalog version it reflects).
/// The vector index file in the store directory.
pub const INDEX_FILE: &str = "index.hnsw";
/// Files of the index format 1 (an id map and a version stamp beside the index): an
/// index saved by an older build, rebuilt once and then removed.
const LEGACY_INDEX_FILES: [&str; 2] = ["index.version", "index.hnsw.ids"];
/// How often the background saver looks for a finished rebuild or enough folds.
const SAVE_POLL: Duration = Duration::from_secs(1);
/// Folds since the last save, as a share of the graph, that call for a save. A save
/// writes the whole graph, so saves follow folds in proportion; what a crash loses is
/// replayed from the catalog log into the live segment and folded again.
const SAVE_AFTER_FOLDED_SHARE: u64 = 10;
/// Polls to wait before retrying a save that failed.
const SAVE_RETRY_POLLS: u32 = 30;

/// How [`Engine::open`] got its vector index: loaded from the index file and brought up
/// to date from the store's catalog log, or rebuilt from the stored embeddings.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexOpen {
    /// Videos read from the index file (0 when rebuilt).
    pub loaded: usize,
    /// Videos changed since the file was saved, replayed onto it (0 when rebuilt).
    pub replayed: usize,
    /// True when the index was built from the stored embeddings.
    pub rebuilt: bool,
    /// Why the file was not used, when rebuilt.
    pub reason: Option<String>,
    /// The catalog version the file reflected, when loaded.
    pub file_version: Option<u64>,
    /// The catalog version the index reflects after open.
    pub version: u64,
    /// Milliseconds spent loading and replaying, or rebuilding.
    pub ms: u64,
}

/// The index file and the saves into it, shared by the engine and its saver thread.
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    /// The catalog version and graph changes (rebuilds plus folded vectors) of the file
    /// on disk, if it is usable.
    /// Held for a whole save, so saves run one at a time and files only move forward.
    saved: Mutex<Option<(u64, u64)>>,
    /// The oldest catalog version the catalog log must keep reaching back to (an index
    /// file of it may still be adopted); saves trim the log no further. `u64::MAX`: no
    /// such file.
    keep_log_from: AtomicU64,
}

impl IndexFile {
    /// Saves `index` unless the file already holds this catalog version and the same
    /// graph changes, then trims the store's catalog log up to the saved version (or
    /// to `keep_log_from`, when lower). The index is copied under its own locks and
    /// written without them; catalog writes go on meanwhile. True when a file was
    /// written.
    fn save(&self, index: &VideoIndex, store: &dyn Storage) -> Result<bool> {
        let mut saved = lock(&self.saved);
        let snap = index.snapshot();
        let key = (snap.catalog_version(), snap.graph_changes());
        if *saved == Some(key) {
            return Ok(false);
        }
        let started = Instant::now();
        snap.save(&self.path).map_err(ann_error)?;
        *saved = Some(key);
        if let Some(dir) = self.path.parent() {
            for name in LEGACY_INDEX_FILES {
                match std::fs::remove_file(dir.join(name)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        tracing::warn!(error = %e, file = name, "cannot remove an old index file");
                    }
                    _ => {}
                }
            }
        }
        store.trim_catalog_log(key.0.min(self.keep_log_from.load(Ordering::Acquire)))?;
        let videos = snap.len();
        // An int8 graph now maps its exact vectors from the file it was saved to.
        let mapped = index.adopt_saved(snap, &self.path);
        tracing::info!(
            videos,
            catalog_version = key.0,
            mapped,
            ms = started.elapsed().as_millis() as u64,
            "vector index saved"
        );
        Ok(true)
    }
}

/// A stop flag the saver thread sleeps on.
#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    cond: Condvar,
}

impl Stop {
    fn stop(&self) {
        *lock(&self.stopped) = true;
        self.cond.notify_all();
    }

    /// Sleeps up to `period`; true once stopped.
    fn wait(&self, period: Duration) -> bool {
        let g = lock(&self.stopped);
        let (g, _) = self
            .cond
            .wait_timeout_while(g, period, |s| !*s)
            .unwrap_or_else(PoisonError::into_inner);
        *g
    }
}

/// The background saver: saves the index after every rebuild and after folds of a
/// tenth of the graph (and once at start when the index was rebuilt, so a crash after a
/// rebuild does not rebuild again).
#[derive(Debug)]
struct Saver {
    stop: Arc<Stop>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Saver {
    fn start(
        file: Arc<IndexFile>,
        index: Arc<VideoIndex>,
        store: Arc<dyn Storage>,
        now: bool,
    ) -> Self {
        let stop = Arc::new(Stop::default());
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("steerfeed-index-save".into())
            .spawn(move || {
                // Rebuilds and folds are counted from 0 for every index opened, so one
                // that ran before this thread started (at open) is saved too.
                let mut seen = if now { None } else { Some((0, 0)) };
                let mut wait = 0u32;
                while !flag.wait(SAVE_POLL) {
                    let hnsw = index.index();
                    let (rebuilt, folded) = (hnsw.compactions(), hnsw.folded());
                    let due = match seen {
                        None => true,
                        Some((r, f)) => {
                            r != rebuilt
                                || (folded > f
                                    && (folded - f) * SAVE_AFTER_FOLDED_SHARE
                                        >= hnsw.graph_len().max(1) as u64)
                        }
                    };
                    if !due {
                        continue;
                    }
                    if wait > 0 {
                        wait -= 1;
                        continue;
                    }
                    match file.save(&index, &*store) {
                        Ok(_) => seen = Some((rebuilt, folded)),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not save the vector index; retrying later");
                            wait = SAVE_RETRY_POLLS;
                        }
                    }
                }
            });
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the index saver; the index is saved at checkpoints only");
                None
            }
        };
        Self { stop, thread }
    }

    fn shut(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The steerfeed engine. `Send + Sync`: share it behind an `Arc`; feed requests run in
/// parallel with each other and with ingest.
///
/// Every write is durable when its call returns (events by group commit), and a
/// deletion or a consent revocation is in force for every feed request that starts
/// after the call returned: feeds read consent and the deleted flag from the store,
/// and the index drops a deleted video before `delete_video` returns.
pub struct Engine {
    config: Config,
    encoder: Arc<Encoder>,
    parser: PreferenceParser,
    store: Arc<dyn Storage>,
    index: Arc<VideoIndex>,
    co: Arc<CoEngagementIndex>,
    /// The last event sequence number fed to the co-engagement model.
    co_seq: Mutex<u64>,
    /// Serialises catalog writes (store, then index, then the index's applied catalog
    /// version), so the applied version always covers every change at or below it.
    catalog: Mutex<()>,
    /// The index file; saved by `saver` after rebuilds and folds and by `checkpoint`.
    index_file: Arc<IndexFile>,
    /// How the index was opened.
    index_open: IndexOpen,
    saver: Saver,
    /// The rank profiles: `default` first, then the configured ones in name order.
    rankers: Vec<Ranker>,
    /// Later pages of a session, picked from what its first ranking left.
    pools: Pools,
    /// Set by [`Engine::close_discarding_index`]: closing must not save the index.
    discard_index: Mutex<bool>,
    /// Held while a backup is written: one at a time.
    backing_up: Mutex<()>,
    /// Serialise each user's preference writes (a user's id picks a stripe), so an edit's
    /// read, change and write is not interleaved with another write of the same user's
    /// preferences.
    preference_locks: [Mutex<()>; PREFERENCE_STRIPES],
    /// This process's request ids: a random-enough prefix, then a counter.
    request_prefix: u64,
    requests: AtomicU64,
}

/// Stripes of [`Engine`]'s preference locks.
const PREFERENCE_STRIPES: usize = 64;

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.config.store.path)
            .field("videos", &self.index.len())
            .field("profiles", &self.rankers.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_error(context: &'static str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::internal(context, format!("{}: {e}", path.display()))
}

/// A ranked page and the pool it leaves for the next one.
struct Ranked {
    out: PipelineOutput,
    pool: Vec<Candidate>,
    /// When the full ranking behind `pool` ran (request time), and the catalog version
    /// its videos are current to.
    made: (Timestamp, u64),
}

impl Engine {
    /// Opens the engine: checks the configuration, loads the encoder (the model and the
    /// runtime fetched by `make setup`), opens the store at `store.path` (creating it),
    /// loads the vector index file and replays onto it the videos changed since it was
    /// saved (from the store's catalog log), or rebuilds the index from the stored
    /// embeddings when the file is missing, unreadable, of another format or older than
    /// the log reaches (see [`Engine::index_open`]), and replays the event log into the
    /// co-engagement model. An index over its thresholds folds or rebuilds in the
    /// background, and a background thread saves the index after every rebuild and
    /// after folds of a tenth of the graph. A
    /// missing model file is an [`Unavailable`](steerfeed_core::Error::Unavailable) error
    /// naming the command to run.
    pub fn open(config: Config) -> Result<Self> {
        config.validate()?;
        let parser = open_parser(&config)?;
        let encoder = parser.encoder().clone();

        let dir = &config.store.path;
        std::fs::create_dir_all(dir).map_err(|e| io_error("store", dir, e))?;
        let opts = StoreOptions {
            dim: encoder.dim(),
            ..config.store.options
        };
        let log = match &config.store.erasure_log {
            Some(log) => log.clone(),
            None => steerfeed_store::erasure_log_beside(dir),
        };
        let store: Arc<dyn Storage> = Arc::new(Store::open_with_erasure_log(
            &dir.join("db"),
            opts,
            Some(&log),
        )?);
        Self::open_on(config, parser, store)
    }

    /// Opens the engine on a store of the caller's (another [`Storage`] backend): the
    /// encoder and taxonomy come with `parser` ([`open_parser`]), the vector index from
    /// `config.store.path` as [`Engine::open`] does.
    pub fn open_with(config: Config, store: Arc<dyn Storage>) -> Result<Self> {
        config.validate()?;
        let parser = open_parser(&config)?;
        let dir = &config.store.path;
        std::fs::create_dir_all(dir).map_err(|e| io_error("store", dir, e))?;
        Self::open_on(config, parser, store)
    }

    fn open_on(config: Config, parser: PreferenceParser, store: Arc<dyn Storage>) -> Result<Self> {
        let encoder = parser.encoder().clone();
        let dir = config.store.path.clone();
        let (index, index_open) = open_index(&config, &*store, encoder.dim())?;
        // The ids searches return are then the store's own: its cache compares pointers.
        index.share_ids(|id| store.intern_video(id));
        // However the vectors arrived (a file saved with a big live segment, a long
        // replay), they end in a graph.
        index.index().compact_if_needed();
        let index = Arc::new(index);
        let index_file = Arc::new(IndexFile {
            path: dir.join(INDEX_FILE),
            saved: Mutex::new(
                (!index_open.rebuilt)
                    .then(|| index_open.file_version.map(|v| (v, 0)))
                    .flatten(),
            ),
            keep_log_from: AtomicU64::new(u64::MAX),
        });

        // The co-engagement model and the trending list in it weigh recent engagements (the
        // last 50 per user, half-lives of days), so replaying the newest events rebuilds
        // them; the cap bounds the open time however long the log grows.
        let co = Arc::new(CoEngagementIndex::with_trending(
            config.rank.co_engagement.index,
            config.rank.trending,
        ));
        let logged = store.event_count();
        let mut last = logged.saturating_sub(CO_ENGAGEMENT_REPLAY);
        store.for_each_event(last + 1, &mut |seq, e| {
            co.record(&e.user, &e.kind, e.at);
            last = seq;
            Ok(())
        })?;

        let ports = Ports {
            catalog: store.clone(),
            graph: store.clone(),
            search: index.clone(),
            engagement: store.clone(),
            actions: store.clone(),
            history: store.clone(),
            co_engagement: co.clone(),
            trending: co.clone(),
            consent: store.clone(),
            model: Arc::new(ModelSlot::default()),
            shadow: None,
        };
        let profiles: Vec<(&str, Option<&Path>)> =
            std::iter::once((DEFAULT_PROFILE, config.learning.model.as_deref()))
                .chain(
                    config
                        .profiles
                        .iter()
                        .map(|(name, p)| (name.as_str(), p.model.as_deref())),
                )
                .collect();
        // Every profile's model slot first: a shadow scores with its profile's slot, so a
        // model put in force there scores in the shadow too.
        let slots: Vec<Arc<ModelSlot>> = profiles
            .iter()
            .map(|_| Arc::new(ModelSlot::default()))
            .collect();
        let shadowed = config.shadowed_profiles();
        let shadow = match config.learning.shadow.as_deref() {
            Some(name) => {
                let at = profiles.iter().position(|(p, _)| *p == name);
                let model = at.map(|i| slots[i].clone()).ok_or_else(|| {
                    Error::invalid("learning.shadow", format!("no rank profile {name:?}"))
                })?;
                let rank = config.profile_rank(name)?;
                Some(steerfeed_rank::Shadow {
                    scorer: rank.scorer,
                    model,
                    share: config.learning.shadow_share,
                    explore: rank.selector.explore,
                })
            }
            None => None,
        };
        let mut rankers = Vec::with_capacity(profiles.len());
        for ((name, model), slot) in profiles.iter().zip(slots) {
            let rank = config.profile_rank(name)?;
            let mut ports = ports.clone();
            ports.model = slot;
            ports.shadow = shadow.clone().filter(|_| shadowed.contains(name));
            let shadow_name = ports.shadow.as_ref().and(config.learning.shadow.clone());
            let mut ranker = Ranker::new(name, &rank, *model, ports)?;
            ranker.shadow = shadow_name;
            rankers.push(ranker);
        }
        tracing::info!(
            videos = store.video_count(),
            events = store.event_count(),
            indexed = index.len(),
            "engine open"
        );
        let pools = Pools::new(config.pages, Some(store.clone()));
        let saver = Saver::start(
            index_file.clone(),
            index.clone(),
            store.clone(),
            index_open.rebuilt,
        );
        Ok(Self {
            config,
            encoder,
            parser,
            store,
            index,
            co,
            co_seq: Mutex::new(last),
            catalog: Mutex::new(()),
            preference_locks: std::array::from_fn(|_| Mutex::new(())),
            request_prefix: request_prefix(),
            requests: AtomicU64::new(0),
            index_file,
            index_open,
            saver,
            pools,
            rankers,
            discard_index: Mutex::new(false),
            backing_up: Mutex::new(()),
        })
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store (for tools and tests that read it directly).
    pub fn store(&self) -> &dyn Storage {
        &*self.store
    }

    /// Embeds a text with the engine's language model.
    pub fn embed(&self, text: &str) -> Result<Embedding> {
        Ok(self.encoder.embed(text)?)
    }

    /// The preference parser.
    pub fn parser(&self) -> &PreferenceParser {
        &self.parser
    }

    /// Compiles plain-language preferences into constraints for a viewer of `audience`
    /// (policy applied), expiring `steering.expiry_days` after `now`, without storing them.
    pub fn parse_preferences(
        &self,
        text: &str,
        audience: AgeBand,
        now: Timestamp,
    ) -> Result<Constraints> {
        Ok(self.parser.parse(text, audience, now)?)
    }

    /// Validates videos and fills in what the app left out: the embedding from the
    /// caption, the topics from the embedding. A bad video is an error naming its field,
    /// and then no video of the batch is changed.
    pub fn prepare_videos(&self, videos: &mut [Video]) -> Result<()> {
        let dim = self.encoder.dim();
        for v in videos.iter() {
            v.validate(dim)?;
        }
        let mut prepared = videos.to_vec();
        self.parser.prepare_videos(&mut prepared)?;
        videos.clone_from_slice(&prepared);
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Catalog.

    /// Adds or replaces videos: validates the whole batch (nothing changes if one is
    /// bad), embeds captions and infers topics where the app gave none, stores them and
    /// indexes them. Searchable when this returns.
    pub fn upsert_videos(&self, videos: &[Video]) -> Result<()> {
        let mut prepared = videos.to_vec();
        self.prepare_videos(&mut prepared)?;
        let _catalog = lock(&self.catalog);
        let written = self.store.upsert_videos(&prepared).and_then(|()| {
            for v in &prepared {
                match (&v.embedding, v.deleted) {
                    (Some(e), false) => self
                        .index
                        .upsert_with_topics(&self.store.intern_video(&v.id), e, &v.topics)
                        .map_err(ann_error)?,
                    _ => {
                        self.index.remove(&v.id);
                    }
                }
            }
            Ok(())
        });
        self.applied(written)
    }

    /// Ends a catalog write (under the catalog mutex): on success the index reflects the
    /// store's catalog version. After a failure the store may still have committed the
    /// change (a flush that failed after the write), or the index may hold part of the
    /// batch: the index then catches up from the catalog log, so that no later write's
    /// version claims a change the index never got.
    fn applied(&self, written: Result<()>) -> Result<()> {
        // Read once: a store shared with other processes may move it meanwhile.
        let version = self.store.catalog_version();
        match written {
            // This write is the one version the index lacks.
            Ok(()) if self.index.applied_version() + 1 == version => {
                self.index.set_applied_version(version);
                Ok(())
            }
            // A store shared with other processes applied their writes with this one.
            Ok(()) => self.replay_index(),
            Err(e) => {
                match replay(&*self.store, &self.index) {
                    Ok(Ok(_)) => {}
                    Ok(Err(reason)) => {
                        tracing::error!(%reason, "vector index behind the catalog; the next open rebuilds it")
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "vector index behind the catalog; the next open replays it")
                    }
                }
                Err(e)
            }
        }
    }

    /// Deletes a video: durable, out of the index and never served again once this
    /// returns. Unknown ids are a [`NotFound`](Error::NotFound) error.
    pub fn delete_video(&self, id: &VideoId) -> Result<()> {
        let _catalog = lock(&self.catalog);
        let written = self.store.delete_video(id).map(|()| {
            self.index.remove(id);
        });
        self.applied(written)
    }

    /// Brings the store and the vector index up to every write acknowledged before the
    /// call: with a store shared by several processes, what the others wrote (a
    /// revocation, a deletion, a new video) is in force for what follows. The feed calls
    /// it first; with the embedded store it costs nothing.
    pub fn catch_up(&self) -> Result<()> {
        self.store.catch_up()?;
        self.catch_up_index()
    }

    /// Brings the vector index up to the store's catalog.
    fn catch_up_index(&self) -> Result<()> {
        if self.index.applied_version() != self.store.catalog_version() {
            let _catalog = lock(&self.catalog);
            self.replay_index()?;
        }
        Ok(())
    }

    /// Applies the catalog log since the index's version to the index (under the catalog
    /// mutex).
    fn replay_index(&self) -> Result<()> {
        match replay(&*self.store, &self.index)? {
            Ok(_) => Ok(()),
            Err(reason) => Err(Error::Unavailable {
                what: format!("the vector index cannot catch up with the catalog: {reason}"),
            }),
        }
    }

    /// Videos in the vector index.
    pub fn indexed_videos(&self) -> usize {
        self.index.len()
    }

    /// The `k` indexed videos nearest to `embedding` (inner product), straight from the
    /// vector index: no filter but deletion (for tools and tests).
    pub fn similar_videos(
        &self,
        embedding: &Embedding,
        k: usize,
    ) -> Result<Vec<steerfeed_core::ports::Neighbor>> {
        use steerfeed_core::ports::VectorSearch;
        embedding.check_dim("embedding", self.encoder.dim())?;
        self.index.search(embedding.as_slice(), k, None)
    }

    /// A stored video.
    pub fn video(&self, id: &VideoId) -> Result<Option<Arc<Video>>> {
        self.store.video(id)
    }

    /// Makes the index file on disk current: writes the vector index (with the catalog
    /// version it reflects) unless the file already holds this version and the same
    /// compactions, then drops the store's catalog log up to that version (or up to
    /// [`Engine::keep_catalog_log_from`]'s, when lower). The file
    /// then reflects every catalog write that returned before the call. Called by the
    /// sidecar at shutdown and on drop; safe to call at any time (catalog writes go on
    /// while the file is written).
    pub fn checkpoint(&self) -> Result<()> {
        self.index_file.save(&self.index, &*self.store).map(|_| ())
    }

    /// Writes the vector index as it stands to `path` (the engine's own file is left
    /// alone), in the format [`Engine::open`] loads; answers the catalog version it
    /// reflects. For snapshots other processes start from.
    pub fn snapshot_index(&self, path: &std::path::Path) -> Result<u64> {
        let snap = self.index.snapshot();
        snap.save(path).map_err(ann_error)?;
        Ok(snap.catalog_version())
    }

    /// Takes the index file at `path` (another process's snapshot, of this store's
    /// catalogue at an older or equal version) as the vector index while serving: it is
    /// loaded and brought up to the catalogue outside every lock, then brought up to the
    /// last write and swapped in under the catalog mutex, so every search sees the old
    /// index or the new one, whole, and a video written after the snapshot is searchable
    /// in it at once. `Ok(Some(version))`: swapped, answering the snapshot's version;
    /// `Ok(None)`: a compaction of this index was running (try again later). A file
    /// that does not load, or a catalogue log that no longer reaches back to it, is an
    /// error and changes nothing.
    pub fn adopt_index_file(&self, path: &Path) -> Result<Option<u64>> {
        // No background work on the loaded index while it is replayed (a compaction would
        // hold it, and the swap needs it alone): thresholds it never reaches. Swapped in,
        // its contents fall under this index's own.
        let build = steerfeed_ann::HnswBuildParams {
            max_live: 0,
            max_tombstone_ratio: 1.0,
            ..self.config.index.build
        };
        // Read from a copy in the store's directory: an int8 index maps its exact vectors
        // from the file it loaded, which must not be one another machine deletes. The
        // copy's name goes once it is loaded (the map holds the file).
        let copy = self
            .config
            .store
            .path
            .join(format!("{INDEX_FILE}.adopting"));
        std::fs::copy(path, &copy).map_err(|e| Error::Unavailable {
            what: format!("copying index snapshot {}: {e}", path.display()),
        })?;
        let loaded = VideoIndex::load(
            &copy,
            self.parser.encoder().dim(),
            build,
            self.config.index.search,
        );
        let _ = std::fs::remove_file(&copy);
        let loaded = loaded.map_err(ann_error)?;
        let version = loaded.applied_version();
        let unusable = |reason: String| Error::Unavailable {
            what: format!("index snapshot {}: {reason}", path.display()),
        };
        replay(&*self.store, &loaded)?.map_err(unusable)?;
        loaded.share_ids(|id| self.store.intern_video(id));
        let _catalog = lock(&self.catalog);
        replay(&*self.store, &loaded)?.map_err(unusable)?;
        if !self.index.replace_with(loaded) {
            return Ok(None);
        }
        self.index.index().compact_if_needed();
        Ok(Some(version))
    }

    /// How [`Engine::open`] got the vector index: loaded from its file (and how many
    /// changed videos were replayed onto it) or rebuilt, and why.
    pub fn index_open(&self) -> &IndexOpen {
        &self.index_open
    }

    /// The file the vector index is saved to (for tools that report its size).
    pub fn index_file(&self) -> PathBuf {
        self.config.store.path.join(INDEX_FILE)
    }

    /// The catalog version the vector index reflects (every change up to it reached it).
    pub fn index_catalog_version(&self) -> u64 {
        self.index.applied_version()
    }

    /// True when the store's catalog log still reaches back to `version`, so that an
    /// index file saved at that version can be brought up to date here
    /// ([`Engine::adopt_index_file`]); this engine's own index saves trim the log.
    pub fn catalog_log_reaches(&self, version: u64) -> Result<bool> {
        Ok(self.store.catalog_changes_since(version)?.is_some())
    }

    /// Keeps the store's catalog log reaching back to `version` from now on: this
    /// engine's index saves trim it no further, so an index file of that version or a
    /// later one (another process's snapshot) can still be adopted
    /// ([`Engine::adopt_index_file`]) however far this engine's own saves have gone.
    /// Call it with each newer file's version as it appears; `u64::MAX` (the default)
    /// lets saves trim up to their own version. Entries already trimmed stay trimmed.
    pub fn keep_catalog_log_from(&self, version: u64) {
        self.index_file
            .keep_log_from
            .store(version, Ordering::Release);
    }

    /// Counts and sizes of the vector index.
    pub fn index_stats(&self) -> steerfeed_ann::IndexStats {
        self.index.stats()
    }

    /// Leaves the vector index's folds and rebuilds to another process whose snapshots
    /// this one swaps in ([`Engine::adopt_index_file`]), or takes them back: see
    /// [`HnswIndex::hold_compactions`](steerfeed_ann::HnswIndex::hold_compactions).
    pub fn leave_index_work_to_snapshots(&self, leave: bool) {
        self.index.index().hold_compactions(leave);
    }

    /// Rebuilds the index graph now, folding in videos added since the last build and
    /// dropping deleted ones (otherwise done in the background past `index.build`'s
    /// thresholds); blocks until done, and catalog writes wait meanwhile. Useful after a
    /// bulk load, before `checkpoint`.
    pub fn compact_index(&self) {
        let _catalog = lock(&self.catalog);
        self.index.index().compact();
    }

    /// Waits until no index compaction runs or is due: every video added so far is then
    /// in the graph but for fewer than `index.build.max_live`. For bulk loads that want
    /// a folded index before serving (the demo catalog); compactions otherwise run in
    /// the background while the engine serves.
    pub fn settle_index(&self) {
        let index = self.index.index();
        while index.is_compacting() || index.compact_if_needed() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // -----------------------------------------------------------------------------------
    // Users, the graph, consent, parental controls.

    /// Adds or replaces a user (age band, time zone).
    pub fn upsert_user(&self, user: &User) -> Result<()> {
        self.forgetting(&user.id, self.store.upsert_user(user))
    }

    /// `r`, the result of a write that changes what ranking reads for `user`, after
    /// dropping the user's page pool (whether the write succeeded or not).
    pub(crate) fn forgetting<T>(&self, user: &UserId, r: Result<T>) -> Result<T> {
        self.pools.forget(std::slice::from_ref(user));
        r
    }

    /// A stored user.
    pub fn user(&self, id: &UserId) -> Result<Option<User>> {
        self.store.user(id)
    }

    pub(crate) fn known(&self, id: &UserId) -> Result<User> {
        self.caught_up_read(|| self.store.user(id))?
            .ok_or_else(|| Error::not_found(Entity::User, id))
    }

    /// The stored video `id` (deleted or not), read as [`Engine::known`] reads a user.
    pub(crate) fn known_video(&self, id: &VideoId) -> Result<Arc<Video>> {
        self.caught_up_read(|| self.store.video(id))?
            .ok_or_else(|| Error::not_found(Entity::Video, id))
    }

    /// `read`, and on a miss `read` again once caught up: what another process sharing
    /// the store created is known here at once.
    fn caught_up_read<T>(&self, read: impl Fn() -> Result<Option<T>>) -> Result<Option<T>> {
        if let Some(found) = read()? {
            return Ok(Some(found));
        }
        self.catch_up()?;
        read()
    }

    /// `user` follows `creator`.
    pub fn follow(&self, user: &UserId, creator: &UserId) -> Result<()> {
        self.known(user)?;
        self.forgetting(
            user,
            self.store
                .set_relation(user, creator, Relation::Follow, true),
        )
    }

    /// Sets several follows, blocks and mutes, `(a, b, relation, on)`, in one durable
    /// write, in order, all or nothing: each names two distinct stored users.
    pub fn set_relations(&self, items: &[(UserId, UserId, Relation, bool)]) -> Result<()> {
        let written = self.store.set_relations(items);
        self.forget_pools(items.iter().map(|(a, ..)| a));
        written
    }

    /// `user` stops following `creator`.
    pub fn unfollow(&self, user: &UserId, creator: &UserId) -> Result<()> {
        self.known(user)?;
        self.forgetting(
            user,
            self.store
                .set_relation(user, creator, Relation::Follow, false),
        )
    }

    /// `user` blocks `other`: nothing by or featuring them is served again once this
    /// returns (durable).
    pub fn block(&self, user: &UserId, other: &UserId) -> Result<()> {
        self.known(user)?;
        self.forgetting(
            user,
            self.store.set_relation(user, other, Relation::Block, true),
        )
    }

    /// `user` mutes `creator` (durable).
    pub fn mute(&self, user: &UserId, creator: &UserId) -> Result<()> {
        self.known(user)?;
        self.forgetting(
            user,
            self.store.set_relation(user, creator, Relation::Mute, true),
        )
    }

    /// `user` unblocks `other`.
    pub fn unblock(&self, user: &UserId, other: &UserId) -> Result<()> {
        self.known(user)?;
        self.forgetting(
            user,
            self.store.set_relation(user, other, Relation::Block, false),
        )
    }

    /// `user` unmutes `creator`.
    pub fn unmute(&self, user: &UserId, creator: &UserId) -> Result<()> {
        self.known(user)?;
        self.forgetting(
            user,
            self.store
                .set_relation(user, creator, Relation::Mute, false),
        )
    }

    /// Sets who may use `person`'s likeness in cameos, and the approved list. Everyone
    /// approved must be known (the store checks, under its write lock): an id approved
    /// before its user exists would hand the consent to whoever is created under it later
    /// (an erased person's id included).
    pub fn set_consent(
        &self,
        person: &UserId,
        scope: ConsentScope,
        approved: &[UserId],
    ) -> Result<()> {
        self.known(person)?;
        self.store.set_consent(person, scope, approved)
    }

    /// Revokes `person`'s consent for one video or every video of one creator; no video
    /// it covers is served once this returns (durable).
    pub fn revoke_consent(&self, person: &UserId, revocation: &Revocation) -> Result<()> {
        self.known(person)?;
        // What is revoked must exist: a typo would otherwise be acknowledged and protect
        // nothing. (A deleted video may still be revoked.)
        match revocation {
            Revocation::Video(v) => {
                self.known_video(v)?;
            }
            Revocation::Creator(c) => {
                self.known(c)?;
            }
        }
        self.store.revoke_consent(person, revocation)
    }

    /// Sets a user's parental controls (durable).
    pub fn set_parental_controls(&self, user: &UserId, controls: &ParentalControls) -> Result<()> {
        controls.validate()?;
        self.known(user)?;
        self.forgetting(user, self.store.set_parental_controls(user, controls))
    }

    // -----------------------------------------------------------------------------------
    // Preferences.

    /// Compiles `text` for `user` (teen policy applied for teens), stores the text and
    /// the constraints, and returns the constraints. Bad text is an error and changes
    /// nothing.
    pub fn set_preferences(
        &self,
        user: &UserId,
        text: &str,
        now: Timestamp,
    ) -> Result<Constraints> {
        let u = self.known(user)?;
        if text.trim().is_empty() {
            return Err(Error::invalid(
                "text",
                "empty: to drop a user's preferences, DELETE /v1/users/{id}/preferences \
                 (Engine::clear_preferences)",
            ));
        }
        let mut constraints = self.parser.parse(text, u.age_band, now)?;
        let _writing = self.preference_lock(user);
        self.forgetting(user, self.store.set_preferences(user, text, &constraints))?;
        constraints.describe();
        Ok(constraints)
    }

    /// The user's preference text and constraints at `now`, if set, each item with its
    /// description and the whole in plain words (`summary`); an item whose own expiry
    /// passed is no longer shown (ranking stopped applying it then).
    pub fn preferences(&self, user: &UserId, now: Timestamp) -> Result<Option<Preferences>> {
        self.known(user)?;
        Ok(self.store.preferences(user)?.map(|mut p| {
            p.constraints = p.constraints.without_expired_items(now);
            described(p)
        }))
    }

    /// Edits the user's constraints without retyping the rest: removes items, changes an
    /// item's strength or expiry, then compiles `add` (with the user's policy) and merges
    /// it in; answers the edited preferences. Items that expired are dropped first. Any
    /// bad part (an address naming no item or several, a strength out of range, an expiry
    /// not in the future, bad text) is an error and nothing changes.
    pub fn edit_preferences(
        &self,
        user: &UserId,
        edit: &PreferenceEdit,
        now: Timestamp,
    ) -> Result<Preferences> {
        let u = self.known(user)?;
        let _writing = self.preference_lock(user);
        let current = self.store.preferences(user)?;
        if edit.remove.is_empty() && edit.change.is_empty() && edit.add.is_none() {
            // Nothing to do: the preferences as they are.
            return match current {
                Some(p) => Ok(described(p)),
                None => Err(Error::NotFound {
                    entity: Entity::User,
                    id: format!("{user} (no preferences set)"),
                }),
            };
        }
        let (mut text, mut c) = match current {
            Some(p) => (p.text, p.constraints.active(now)),
            None => (String::new(), Constraints::default()),
        };
        for address in &edit.remove {
            c.remove_item(address)?;
        }
        for change in &edit.change {
            c.change_item(change, now)?;
        }
        if let Some(added) = &edit.add {
            if added.trim().is_empty() {
                return Err(Error::invalid("add", "empty text"));
            }
            c.merge(self.parser.parse(added, u.age_band, now)?);
            text = joined_text(&text, added, self.parser.max_text_bytes());
        }
        c.validate()?;
        self.forgetting(user, self.store.set_preferences(user, &text, &c))?;
        Ok(described(Preferences {
            text,
            constraints: c,
            summary: Vec::new(),
        }))
    }

    /// Forgets the user's preferences.
    pub fn clear_preferences(&self, user: &UserId) -> Result<()> {
        self.known(user)?;
        let _writing = self.preference_lock(user);
        self.forgetting(user, self.store.clear_preferences(user))
    }

    /// The lock that serialises `user`'s preference writes.
    pub(crate) fn preference_lock(&self, user: &UserId) -> MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut h);
        lock(&self.preference_locks[(h.finish() as usize) % PREFERENCE_STRIPES])
    }

    // -----------------------------------------------------------------------------------
    // Events.

    /// Logs and counts events. The batch is validated first (a bad event is an error
    /// naming it, and nothing of the batch is kept); events whose key was seen before
    /// are reported as duplicates and not counted again. Durable when this returns.
    pub fn ingest_events(&self, events: &[Event]) -> Result<IngestReport> {
        for e in events {
            e.validate()?;
        }
        let (report, logged) = self.store.ingest_events(events)?;
        self.forget_pools_of_steering_events(events);
        self.feed_co_engagement(events, &logged)?;
        Ok(report)
    }

    /// Events that change what the user's very next page must be end their page pool:
    /// a check-in answer (a "not great" turns on lighter mode, which the scores carry),
    /// a follow (sources and ties), and the negative signals (hide creator, not
    /// interested, report), whose page should show at once that they were heard.
    fn forget_pools_of_steering_events(&self, events: &[Event]) {
        use steerfeed_core::EventKind as K;
        self.forget_pools(
            events
                .iter()
                .filter(|e| {
                    matches!(
                        e.kind,
                        K::CheckinAnswer { .. }
                            | K::Follow { .. }
                            | K::HideCreator { .. }
                            | K::NotInterested { .. }
                            | K::Report { .. }
                    )
                })
                .map(|e| &e.user),
        );
    }

    /// Drops the page pools of `users`, each once however often it is named (with the
    /// shared backend, one wait on Redis for them all).
    fn forget_pools<'a>(&self, users: impl Iterator<Item = &'a UserId>) {
        let mut once = steerfeed_core::IdSet::default();
        let users: Vec<UserId> = users
            .filter(|u| once.insert((*u).clone()))
            .cloned()
            .collect();
        if !users.is_empty() {
            self.pools.forget(&users);
        }
    }

    /// Feeds the co-engagement model every logged event it has not seen, in log order,
    /// exactly once: the batch just logged straight from memory when it is next in the
    /// log (the usual case), otherwise everything new read back from the log (another
    /// writer's batch logged in between, or events logged past the engine).
    fn feed_co_engagement(&self, events: &[Event], logged: &Logged) -> Result<()> {
        let mut last = lock(&self.co_seq);
        let n = logged.accepted.len() as u64;
        if n > 0 && *last + 1 == logged.first_seq {
            self.co.record_all(
                logged
                    .accepted
                    .iter()
                    .filter_map(|&i| events.get(i))
                    .map(|e| (&e.user, &e.kind, e.at)),
            );
            *last += n;
            return Ok(());
        }
        if *last >= self.store.event_count() {
            return Ok(());
        }
        let from = *last + 1;
        self.store.for_each_event(from, &mut |seq, e| {
            self.co.record(&e.user, &e.kind, e.at);
            *last = seq;
            Ok(())
        })
    }

    // -----------------------------------------------------------------------------------
    // The feed.

    /// Ranks a page for `request.user` (docs/design.md §3). Unknown users are a
    /// [`NotFound`](Error::NotFound) error. The served items are recorded as seen.
    pub fn feed(&self, request: &FeedRequest) -> Result<FeedResponse> {
        self.feed_traced(request).map(|(r, _)| r)
    }

    /// [`Engine::feed`], also returning what every stage did (counts, removed ids,
    /// microseconds), with the context load and the response assembly as two more
    /// entries (`context`, `respond`): for operators, metrics and the harness.
    pub fn feed_traced(&self, request: &FeedRequest) -> Result<(FeedResponse, Trace)> {
        let started = std::time::Instant::now();
        let now = request.now().unwrap_or_else(Timestamp::now);
        let page_no = match request.cursor() {
            Some(c) => parse_cursor(c)?,
            None => 0,
        };
        let ranker = self.ranker_for(request)?;
        let me = request.user();
        // Before anything the ranking reads, with the catch-up or before it: a pool made
        // from older inputs than a write that forgot the user's pool is never kept.
        let Opened {
            stamp,
            taken,
            caught_up,
        } = self.pools.open(me, request.session(), now, &ranker.name)?;
        if caught_up {
            self.catch_up_index()?;
        } else {
            self.catch_up()?;
        }
        let catalog = self.store.catalog_version();
        let user = self.known(me)?;
        let mut ctx = self.context(request, user, now)?;
        let grant = self.reserve_items(&mut ctx)?;
        let context_us = micros(started);
        // A page that fails after its reservation gives every item back.
        let give_back = |served: usize| {
            let Some(g) = &grant else { return };
            let unused = g
                .granted
                .saturating_sub(u32::try_from(served).unwrap_or(u32::MAX));
            if unused > 0
                && let Err(e) = self.store.release_items(me, g, unused)
            {
                // The items stay spent: the teen is served fewer today, never more.
                tracing::warn!(user = %me, error = %e, "could not give back reserved items");
            }
        };
        let Ranked { out, pool, made } = match self.rank(ranker, &mut ctx, (now, catalog), taken) {
            Ok(r) => r,
            Err(e) => {
                give_back(0);
                return Err(e);
            }
        };
        let respond_started = std::time::Instant::now();
        let mut trace = out.trace;
        trace
            .stages
            .insert(0, StageReport::timing("context", context_us));

        let items = out.items;
        let ids: Vec<VideoId> = items.iter().map(|c| c.id().clone()).collect();
        let shown = |kind| out.cards.iter().any(|c| c.kind == kind);
        let request_id = self.next_request_id();
        let impressions = (self.config.learning.log_impressions && !items.is_empty())
            .then(|| impression_page(&request_id, ranker, self.page_shadow(ranker), &items));
        let page = ServedPage {
            videos: &ids,
            checkin: shown(CardKind::Checkin),
            break_card: shown(CardKind::Break),
            impressions: impressions.as_ref(),
        };
        if (!ids.is_empty() || page.checkin || page.break_card)
            && let Err(e) = self.store.record_page(me, &page, now)
        {
            give_back(0);
            return Err(e);
        }
        give_back(ids.len());
        if !out.stopped {
            self.pools
                .put(me, stamp, pool, made, request.session(), &ranker.name);
        }
        let mut cards = out.cards;
        for c in &mut cards {
            c.position = c.position.min(items.len());
        }
        // No cursor past the last page a cursor may name.
        let next_cursor = (!out.stopped && page_no < MAX_PAGE)
            .then(|| Cursor::new(format!("p{}", page_no + 1)))
            .transpose()?;
        let response = FeedResponse {
            items: self.feed_items(items),
            cards,
            next_cursor,
            applied: ctx.constraints,
            request_id,
            profile: ranker.name.clone(),
        };
        trace
            .stages
            .push(StageReport::timing("respond", micros(respond_started)));
        Ok((response, trace))
    }

    /// The videos the user's next page of the same session would be picked from (best
    /// first), when pages are pooled (`[pages]`) and the user has a pool: for operators
    /// and tests. The pool stays in place.
    pub fn page_pool(&self, user: &UserId) -> Option<Vec<VideoId>> {
        self.pools.peek(user)
    }

    /// What became of the page pools this process's pages left: kept, refused because
    /// a write changed the person's inputs meanwhile, or failed.
    pub fn page_pool_counts(&self) -> crate::PoolCounts {
        self.pools.counts()
    }

    /// Ranks the page: from `taken`, the user's page pool for this session, when it
    /// still fills a page (traced as `pool`, with the microseconds spent bringing its
    /// videos up to date), else from scratch (traced as `pool_short` when a pool ran
    /// low). `catalog` is the catalog version read before this request's inputs.
    fn rank(
        &self,
        ranker: &Ranker,
        ctx: &mut FeedContext,
        (now, catalog): (Timestamp, u64),
        taken: Option<Taken>,
    ) -> Result<Ranked> {
        let keep = self.pools.size();
        let request = &ctx.request;
        let mut short = None;
        if let Some(taken) = taken {
            let started = std::time::Instant::now();
            // Current videos: a deletion, a relabel or new cameos since the ranking are
            // what the filters must judge. Every video write moves the catalog version,
            // so while it stands still the videos of a pool held here are the catalog's.
            let pool = taken.items.current(catalog, |id| self.store.video(id))?;
            let pool_us = micros(started);
            let (mut out, pool) = ranker.pipeline.run_pooled(ctx, Some(pool), keep)?;
            // A page a count cap cut is as full as it may be: keep the pool.
            if out.stopped || out.cut || out.items.len() >= request.limit() {
                out.trace
                    .stages
                    .insert(0, StageReport::timing("pool", pool_us));
                // The pool's videos are now at least as new as `catalog`.
                let made = (taken.ranked_at, catalog);
                return Ok(Ranked { out, pool, made });
            }
            short = Some(pool_us);
        }
        // Only a full ranking reads the interest vector (a pooled page is not scored
        // again): blend the recent taste in now.
        self.blend_recent_interest(ctx)?;
        let (mut out, pool) = ranker.pipeline.run_pooled(ctx, None, keep)?;
        if let Some(us) = short {
            out.trace
                .stages
                .insert(0, StageReport::timing("pool_short", us));
        }
        Ok(Ranked {
            out,
            pool,
            made: (now, catalog),
        })
    }

    /// Ranked candidates as the items of a page, each with its explanation in words.
    /// A new request id: unique within the process, and across processes but by chance.
    fn next_request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("{:012x}{n:08x}", self.request_prefix & 0xffff_ffff_ffff)
    }

    fn feed_items(&self, items: Vec<Candidate>) -> Vec<FeedItem> {
        items
            .into_iter()
            .map(|c| FeedItem {
                video: c.id().clone(),
                score: c.score,
                source: c.source.to_owned(),
                breakdown: c.breakdown,
                explanation: Explanation::new(self.quote_caption(c.reason)),
            })
            .collect()
    }

    /// A co-engagement reason with the start of its engagement's caption filled in (only
    /// served items are rendered, so candidates carry the id alone).
    fn quote_caption(&self, reason: Reason) -> Reason {
        match reason {
            Reason::CoEngagement {
                because: Some(id),
                caption: None,
            } => {
                let caption = self
                    .store
                    .video(&id)
                    .ok()
                    .flatten()
                    .filter(|v| !v.deleted)
                    .and_then(|v| quoted_caption(&v.caption));
                Reason::CoEngagement {
                    because: Some(id),
                    caption,
                }
            }
            other => other,
        }
    }

    /// Blends the viewer's recent taste into the context's interest vector, and sets the
    /// interest directions of a varied recent history, as a full ranking reads them (not
    /// when personalization is off).
    pub(crate) fn blend_recent_interest(&self, ctx: &mut FeedContext) -> Result<()> {
        if !ctx.parental.personalization {
            return Ok(());
        }
        let cfg = &self.config.rank.recent_profile;
        if cfg.share <= 0.0 {
            return Ok(());
        }
        let long = ctx.interest.take();
        let history = self
            .store
            .recent_engagements(ctx.request.user(), cfg.history_len())?;
        let embedding = |v: &VideoId| -> Result<Option<Embedding>> {
            Ok(self
                .store
                .video(v)?
                .filter(|v| !v.deleted)
                .and_then(|v| v.embedding.clone()))
        };
        let recent = cfg.profile(&history, embedding)?;
        ctx.interest = cfg.blend(long.as_ref(), recent.as_deref());
        // Several interests only beside an interest vector (the source searches them in
        // its place), and only clusters of its dimension (a blend would otherwise fall
        // back to the long-term vector, the same direction twice).
        if let Some(dim) = ctx.interest.as_ref().map(Embedding::dim) {
            ctx.interests = cfg
                .clusters(&history, embedding)?
                .iter()
                .filter(|c| c.len() == dim)
                .filter_map(|c| cfg.blend(long.as_ref(), Some(c)))
                .collect();
        }
        Ok(())
    }

    /// Loads everything the stages read about this request.
    fn context(&self, request: &FeedRequest, user: User, now: Timestamp) -> Result<FeedContext> {
        self.context_steered(request, user, now, None)
    }

    /// [`Engine::context`], with `steering` in place of the user's stored constraints
    /// when given (a preview of preferences not yet applied).
    fn context_steered(
        &self,
        request: &FeedRequest,
        user: User,
        now: Timestamp,
        steering: Option<Constraints>,
    ) -> Result<FeedContext> {
        let id = user.id.clone();
        let mut ctx = FeedContext::new(request.clone(), user, now);
        ctx.parental = self.store.parental_controls(&id)?;
        ctx.wellbeing = self.store.wellbeing(&id, now)?;
        ctx.viewer = self.store.load_viewer(&id, now)?;
        // Personalization off (a parent's choice): the feed any viewer of this age band
        // with these follows would get. Nothing learned from the viewer's history (no
        // interest vector, no creator affinity, no co-engagement source) and no steering
        // (their preferences are kept, not applied). Safety, consent, blocks, wellbeing
        // and the seen list (no repeats) still hold.
        if ctx.parental.personalization {
            ctx.constraints = match steering {
                Some(c) => c.active(now),
                None => self.store.active_constraints(&id, now)?,
            };
            ctx.interest = self.store.interest(&id)?;
        } else {
            ctx.viewer.creator_affinity.clear();
        }
        if !ctx.constraints.is_empty() {
            let r = self.parser.concepts().resolve(&ctx.constraints)?;
            ctx.concepts = r.concepts;
            ctx.exclude = r.exclude;
            ctx.only = r.only;
        }
        Ok(ctx)
    }

    /// Reserves a teen's daily items for this page (`Storage::reserve_items`, counted
    /// across every process the store is shared by) and lowers what the context leaves
    /// them to the grant, so the gates and the page cap read one count that racing pages
    /// cannot both spend. Nothing for adults, nor for a request a gate stops anyway (a
    /// reported count at the cap already, bedtime, the scroll cap).
    fn reserve_items(&self, ctx: &mut FeedContext) -> Result<Option<ItemGrant>> {
        use steerfeed_rank::throttles::{daily_limit_reached, is_bedtime, scroll_cap_reached};
        let cfg = &self.config.rank.wellbeing;
        if ctx.user.age_band != AgeBand::Teen
            || daily_limit_reached(cfg, ctx)
            || is_bedtime(cfg, ctx)
            || scroll_cap_reached(ctx)
        {
            return Ok(None);
        }
        let cap = cfg.teen_daily_items;
        let ask = ItemAsk {
            day: steerfeed_rank::throttles::local_date(ctx),
            floor: ctx.wellbeing.items_today,
            want: u32::try_from(ctx.request.limit()).unwrap_or(u32::MAX),
            cap,
        };
        let grant = self.store.reserve_items(&ctx.user.id, ask)?;
        let w = &mut ctx.wellbeing;
        w.items_today = w.items_today.max(cap.saturating_sub(grant.granted));
        Ok(Some(grant))
    }

    /// What the user is seeing most, and their active constraints in words.
    pub fn profile_summary(&self, user: &UserId) -> Result<ProfileSummary> {
        self.profile_summary_at(user, Timestamp::now())
    }

    /// [`Engine::profile_summary`] with the constraints active at `now` (for replays and
    /// simulations that run on their own clock).
    pub fn profile_summary_at(&self, user: &UserId, now: Timestamp) -> Result<ProfileSummary> {
        self.known(user)?;
        let seen = self.store.seen(user)?;
        let mut videos = Vec::with_capacity(seen.len().min(500));
        for (id, _) in seen.iter().take(500) {
            if let Some(v) = self.store.video(id)? {
                videos.push(v);
            }
        }
        let constraints = self.store.active_constraints(user, now)?;
        Ok(summarize(user, &videos, constraints))
    }
}

impl Engine {
    /// Erases a person (`DELETE /v1/users/{id}`): everything the store holds about them
    /// (see [`Storage::erase_user`]), every video featuring them deleted and out of the
    /// vector index, their own videos deleted or kept as `own_videos` says, their page
    /// pool dropped. Durable and in force for the next request when it returns;
    /// idempotent (`already_erased`); an id never stored is `NotFound`.
    pub fn erase_user(&self, user: &UserId, own_videos: OwnVideos) -> Result<ErasureReport> {
        let _prefs = self.preference_lock(user);
        let _catalog = lock(&self.catalog);
        let mut report = None;
        let written = self.store.erase_user(user, own_videos).map(|r| {
            for id in &r.deleted {
                self.index.remove(id);
            }
            report = Some(r);
        });
        self.pools.forget(std::slice::from_ref(user));
        self.co.forget_user(user);
        self.applied(written)?;
        report.ok_or_else(|| Error::internal("engine", "an erasure returned no report"))
    }

    /// Everything stored about a person, in the export record format (`GET
    /// /v1/users/{id}/export`); empty for an unknown or erased person.
    pub fn export_user(&self, user: &UserId) -> Result<Vec<Record>> {
        // What other processes sharing the store wrote about them counts too.
        self.catch_up()?;
        self.store.export_user(user, Timestamp::now())
    }

    /// Closes the engine without saving its vector index, and removes the index saved
    /// before, so that the next [`Engine::open`] builds the graph over every stored
    /// embedding at once: the end of a bulk load into the live segment.
    pub fn close_discarding_index(self) -> Result<()> {
        let dir = self.config.store.path.clone();
        *lock(&self.discard_index) = true;
        drop(self);
        for name in std::iter::once(INDEX_FILE).chain(LEGACY_INDEX_FILES) {
            let path = dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("index", &path, e)),
            }
        }
        Ok(())
    }
}

/// One rank profile: its pipeline, and the trained model its scorer applies.
struct Ranker {
    name: String,
    pipeline: Pipeline,
    /// The profile's hand-set heads (its `[rank.scorer]`), when no model is in force.
    hand_set: steerfeed_rank::scorers::HeadModels,
    /// A trained model's heads, when one is in force (the scorer reads them).
    slot: Arc<ModelSlot>,
    /// The model in force and the ones a rollback returns to, newest last (`None`: the
    /// hand-set heads).
    models: Mutex<ModelHistory>,
    /// The profile scored beside this one (`[learning] shadow`), if any.
    shadow: Option<String>,
}

impl Ranker {
    /// The profile `name` ranking with `rank` and the stages' `ports`, serving the model
    /// file at `model` when one is named (in `ports.model`, the profile's own slot).
    fn new(name: &str, rank: &RankConfig, model: Option<&Path>, ports: Ports) -> Result<Self> {
        let slot = ports.model.clone();
        let mut models = ModelHistory::default();
        if let Some(path) = model {
            let m = RankModel::load(path)?;
            slot.set(Some(m.scoring_model()?));
            tracing::info!(profile = name, model = %m.id, path = %path.display(), "serving a trained model");
            models.current = Some(m);
        }
        Ok(Self {
            name: name.to_owned(),
            pipeline: build_pipeline(rank, &ports)?,
            hand_set: steerfeed_rank::scorers::HeadModels::from_config(&rank.scorer),
            slot,
            models: Mutex::new(models),
            shadow: None,
        })
    }
}

/// The model in force and the ones before it.
#[derive(Debug, Default)]
struct ModelHistory {
    current: Option<RankModel>,
    previous: Vec<Option<RankModel>>,
}

/// Models a rollback can return to, at most (older ones are forgotten).
const MODEL_HISTORY: usize = 8;

impl ModelHistory {
    fn info(&self) -> ModelInfo {
        let id = |m: &Option<RankModel>| m.as_ref().map_or(HAND_SET.to_owned(), |m| m.id.clone());
        ModelInfo {
            id: id(&self.current),
            metadata: self
                .current
                .as_ref()
                .map_or(serde_json::Value::Null, |m| m.metadata.clone()),
            previous: self.previous.last().map(id),
        }
    }
}

impl Engine {
    /// The shadow `ranker`'s pages are served beside, as the impression log names it.
    fn page_shadow(&self, ranker: &Ranker) -> Option<PageShadow> {
        let name = ranker.shadow.as_deref()?;
        let shadow = self.ranker(name).ok()?;
        Some(PageShadow {
            profile: name.to_owned(),
            model: model_id(shadow),
            share: self.config.learning.shadow_share,
        })
    }

    /// The rank profile `name`; an unknown one is an error naming the configured ones.
    fn ranker(&self, name: &str) -> Result<&Ranker> {
        self.rankers
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| Error::not_found(Entity::Profile, name))
    }

    /// The profile that serves `request`: the one it names, else the user's experiment
    /// assignment, else `default`.
    fn ranker_for(&self, request: &FeedRequest) -> Result<&Ranker> {
        match (request.profile(), &self.config.experiment) {
            (Some(name), _) => self.ranker(name),
            (None, Some(x)) => self.ranker(x.assign(request.user().as_str())),
            (None, None) => Ok(&self.rankers[0]),
        }
    }

    /// The names of the rank profiles, `default` first.
    pub fn profiles(&self) -> Vec<&str> {
        self.rankers.iter().map(|r| r.name.as_str()).collect()
    }

    /// The profile that would serve `request` (see [`FeedRequest::with_profile`] and
    /// `[experiment]`).
    pub fn profile_for(&self, request: &FeedRequest) -> Result<&str> {
        self.ranker_for(request).map(|r| r.name.as_str())
    }

    /// The model of the `default` profile's action heads, and what a rollback would
    /// return to.
    pub fn model_info(&self) -> ModelInfo {
        lock(&self.rankers[0].models).info()
    }

    /// [`Engine::model_info`] of profile `profile`.
    pub fn model_info_for(&self, profile: &str) -> Result<ModelInfo> {
        Ok(lock(&self.ranker(profile)?.models).info())
    }

    /// The coefficients of the `default` profile's action heads in force: a trained
    /// model's, else the hand-set ones of `[rank.scorer]`.
    pub fn head_models(&self) -> steerfeed_rank::scorers::HeadModels {
        let r = &self.rankers[0];
        r.slot.get().map_or(r.hand_set, |m| m.heads)
    }

    /// [`Engine::head_models`] of profile `profile`.
    pub fn head_models_for(&self, profile: &str) -> Result<steerfeed_rank::scorers::HeadModels> {
        let r = self.ranker(profile)?;
        Ok(r.slot.get().map_or(r.hand_set, |m| m.heads))
    }

    /// Puts `model` in force in the `default` profile for every request that starts
    /// scoring afterwards, once its feature schema and coefficients check; the model it
    /// replaces is kept for [`Engine::rollback_model`]. A refused model changes nothing.
    pub fn set_model(&self, model: RankModel) -> Result<ModelInfo> {
        self.set_model_for(DEFAULT_PROFILE, model)
    }

    /// [`Engine::set_model`] in profile `profile`.
    pub fn set_model_for(&self, profile: &str, model: RankModel) -> Result<ModelInfo> {
        let r = self.ranker(profile)?;
        let scoring = model.scoring_model()?;
        let mut h = lock(&r.models);
        r.slot.set(Some(scoring));
        let old = h.current.replace(model);
        h.previous.push(old);
        if h.previous.len() > MODEL_HISTORY {
            h.previous.remove(0);
        }
        let info = h.info();
        tracing::info!(profile, model = %info.id, "model in force");
        Ok(info)
    }

    /// Puts the model before the one in force in the `default` profile back in force
    /// (the hand-set heads when that was none); an error when there is nothing to
    /// return to.
    pub fn rollback_model(&self) -> Result<ModelInfo> {
        self.rollback_model_for(DEFAULT_PROFILE)
    }

    /// [`Engine::rollback_model`] in profile `profile`.
    pub fn rollback_model_for(&self, profile: &str) -> Result<ModelInfo> {
        let r = self.ranker(profile)?;
        let mut h = lock(&r.models);
        let Some(back) = h.previous.pop() else {
            return Err(Error::invalid(
                "model",
                "no earlier model to return to since the engine opened",
            ));
        };
        let scoring = back.as_ref().map(RankModel::scoring_model).transpose()?;
        r.slot.set(scoring);
        h.current = back;
        let info = h.info();
        tracing::info!(profile, model = %info.id, "model rolled back");
        Ok(info)
    }
}

/// The request-id prefix of this process: a hash of its id and its start time.
fn request_prefix() -> u64 {
    let mut h = steerfeed_core::hash::Fnv1a::new();
    h.update(&std::process::id().to_le_bytes());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.update(&nanos.to_le_bytes());
    h.finish()
}

/// The id of the model `ranker` serves.
fn model_id(ranker: &Ranker) -> String {
    lock(&ranker.models)
        .current
        .as_ref()
        .map_or_else(|| HAND_SET.to_owned(), |m| m.id.clone())
}

/// The impression log's page for the served `items`.
fn impression_page(
    request: &str,
    ranker: &Ranker,
    shadow: Option<PageShadow>,
    items: &[Candidate],
) -> ImpressionPage {
    ImpressionPage {
        request: request.to_owned(),
        profile: ranker.name.clone(),
        model: model_id(ranker),
        shadow,
        items: items
            .iter()
            .enumerate()
            .map(|(i, c)| ImpressionItem {
                video: c.id().clone(),
                position: u32::try_from(i).unwrap_or(u32::MAX),
                source: c.source.to_owned(),
                propensity: c.propensity,
                inputs: c.inputs,
                breakdown: c.breakdown,
                draw: c.draw,
            })
            .collect(),
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.saver.shut();
        if *lock(&self.discard_index) {
            return;
        }
        if let Err(e) = self.checkpoint() {
            tracing::warn!(error = %e, "could not save the vector index; the next open replays more of the catalog log, or rebuilds");
        }
    }
}

/// Preferences with each item's description and the summary filled in.
fn described(mut p: Preferences) -> Preferences {
    p.summary = p.constraints.describe();
    p
}

/// The stored text after an edit added `added`: the texts in order, separated by " / ",
/// the oldest dropped (at a character boundary) to stay within `limit` bytes.
fn joined_text(previous: &str, added: &str, limit: usize) -> String {
    let mut text = if previous.trim().is_empty() {
        added.to_owned()
    } else {
        format!("{previous} / {added}")
    };
    if text.len() > limit {
        let mut cut = text.len() - limit;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text.drain(..cut);
    }
    text
}

/// Loads the encoder and the taxonomy and returns the preference parser alone, for
/// tools that compile preferences without a store (`steerfeed prefs`).
pub fn open_parser(config: &Config) -> Result<PreferenceParser> {
    let encoder = Arc::new(Encoder::open(&config.model)?);
    Ok(PreferenceParser::open(encoder, config.steering.clone())?)
}

fn micros(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Where the index's builds and rebuilds spill their exact vectors: the store's
/// directory.
fn spill_to(config: &Config) -> steerfeed_ann::SpillTo {
    steerfeed_ann::SpillTo::new(&config.store.path)
}

/// The index over every stored embedding, or `None` when the spill file failed (the
/// caller builds again without one).
fn build_index(
    store: &dyn Storage,
    dim: usize,
    (build, search): (
        steerfeed_ann::HnswBuildParams,
        steerfeed_ann::HnswSearchParams,
    ),
    spill: Option<&steerfeed_ann::SpillTo>,
) -> Result<Option<VideoIndex>> {
    let spill_failed = |e: &steerfeed_ann::Error| {
        tracing::error!(error = %e, "the index build's spill file failed; building in memory");
    };
    let mut bulk = VideoIndex::bulk(dim, build, search, spill).map_err(ann_error)?;
    let mut failed = false;
    let walked = store.for_each_embedding(&mut |id, e, topics| {
        bulk.push(id, &e, &topics).map_err(|e| {
            if matches!(e, steerfeed_ann::Error::Spill { .. }) {
                spill_failed(&e);
                failed = true;
            }
            ann_error(e)
        })
    });
    if failed {
        return Ok(None);
    }
    walked?;
    match bulk.finish() {
        Ok(index) => Ok(Some(index)),
        Err(e @ steerfeed_ann::Error::Spill { .. }) => {
            spill_failed(&e);
            Ok(None)
        }
        Err(e) => Err(ann_error(e)),
    }
}

fn ann_error(e: steerfeed_ann::Error) -> Error {
    Error::from(e)
}

/// Loads the index file and replays the catalog changes made since it was saved, or,
/// when that cannot be done, rebuilds the index from the stored embeddings. Runs before
/// the engine takes writes, so the store's catalog stands still meanwhile.
fn open_index(config: &Config, store: &dyn Storage, dim: usize) -> Result<(VideoIndex, IndexOpen)> {
    let dir = &config.store.path;
    let path: PathBuf = dir.join(INDEX_FILE);
    let (build, search) = (config.index.build, config.index.search);
    let started = Instant::now();
    let legacy: Vec<&str> = LEGACY_INDEX_FILES
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .collect();
    let reason = if !legacy.is_empty() {
        format!(
            "index files of format 1 from an older build ({}); this build reads format {}",
            legacy.join(", "),
            steerfeed_ann::FORMAT_VERSION
        )
    } else if !path.exists() {
        "no index file".to_owned()
    } else {
        match VideoIndex::load(&path, dim, build, search) {
            Err(e) => e.to_string(),
            Ok(index) => match replay(store, &index) {
                // The store could not answer the replay (a damaged log key): rebuild.
                Err(e) => format!("the catalog log could not be replayed: {e}"),
                Ok(Err(reason)) => reason,
                Ok(Ok(replayed)) => {
                    index.index().set_spill(Some(spill_to(config)));
                    let report = IndexOpen {
                        loaded: index.len() + replayed.removed - replayed.added,
                        replayed: replayed.changed,
                        rebuilt: false,
                        reason: None,
                        file_version: Some(replayed.file_version),
                        version: index.applied_version(),
                        ms: started.elapsed().as_millis() as u64,
                    };
                    tracing::info!(
                        loaded = report.loaded,
                        replayed = report.replayed,
                        file_version = replayed.file_version,
                        catalog_version = report.version,
                        ms = report.ms,
                        "vector index loaded"
                    );
                    return Ok((index, report));
                }
            },
        }
    };
    if path.exists() || !legacy.is_empty() {
        tracing::warn!(%reason, "vector index file not used; rebuilding from the store");
    } else {
        tracing::info!(%reason, "building the vector index from the store");
    }
    let version = store.catalog_version();
    // The videos go to the build one at a time, and their exact vectors past a few
    // hundred megabytes to an unnamed file beside the store: a catalogue whose floats
    // do not fit in memory beside the graph still builds. A spill file that fails part
    // way (a full disk) costs a second pass in memory, as builds ran before.
    let spill = spill_to(config);
    let index = match build_index(store, dim, (build, search), Some(&spill))? {
        Some(index) => index,
        None => build_index(store, dim, (build, search), None)?
            .ok_or_else(|| Error::internal("index build", "spilled without a spill file"))?,
    };
    index.index().set_spill(Some(spill));
    let damage = store.damage();
    if !damage.is_empty() {
        tracing::error!(
            records = damage.total,
            "store: unreadable records were found; each is withheld or restricts what is served (Store::damage lists them)"
        );
    }
    let n = index.len();
    index.set_applied_version(version);
    let report = IndexOpen {
        rebuilt: true,
        reason: Some(reason),
        version,
        ms: started.elapsed().as_millis() as u64,
        ..IndexOpen::default()
    };
    tracing::info!(videos = n, ms = report.ms, "vector index built");
    Ok((index, report))
}

/// What [`replay`] did.
struct Replayed {
    file_version: u64,
    /// Distinct videos changed since the file's version.
    changed: usize,
    /// Videos the replay put into the index that the file did not hold.
    added: usize,
    /// Videos the replay took out of the index.
    removed: usize,
}

/// Brings a loaded index up to the store's catalog: every video changed after the
/// file's version is upserted with its stored embedding when it is live (skipped when
/// the index already holds that vector: a change the file caught), else removed (a
/// no-op when absent). The outer error is the store's; the inner one says why the file
/// cannot be used.
fn replay(
    store: &dyn Storage,
    index: &VideoIndex,
) -> Result<std::result::Result<Replayed, String>> {
    let file_version = index.applied_version();
    let version = store.catalog_version();
    if file_version > version {
        return Ok(Err(format!(
            "the index file reflects catalog version {file_version}, beyond the store's \
             {version} (an index from another store, or a store restored from an older copy)"
        )));
    }
    let Some(changed) = store.catalog_changes_since(file_version)? else {
        return Ok(Err(format!(
            "the store's catalog log no longer reaches back to the index file's version \
             {file_version}"
        )));
    };
    let mut live = Vec::new();
    let mut embeddings = Vec::new();
    let mut topics = Vec::new();
    let (mut added, mut removed) = (0, 0);
    for id in &changed {
        match store.video(id)? {
            Some(v) if !v.deleted => match &v.embedding {
                Some(e) => {
                    live.push(id.clone());
                    embeddings.push(e.clone());
                    topics.push(v.topics.clone());
                }
                None => removed += usize::from(index.remove(id)),
            },
            _ => removed += usize::from(index.remove(id)),
        }
    }
    let current = index.vectors(&live);
    let current_topics = index.topics(&live);
    for ((((id, e), topics), indexed), indexed_topics) in live
        .iter()
        .zip(&embeddings)
        .zip(&topics)
        .zip(current)
        .zip(current_topics)
    {
        // The store re-normalises embeddings it reads, which may move the last bit.
        let same = indexed.as_deref().is_some_and(|v| {
            v.len() == e.as_slice().len()
                && v.iter()
                    .zip(e.as_slice())
                    .all(|(a, b)| (a - b).abs() <= 1e-6)
        });
        let mut wanted = topics.clone();
        wanted.sort();
        wanted.dedup();
        if !same || indexed_topics.as_ref() != Some(&wanted) {
            added += usize::from(indexed.is_none());
            index
                .upsert_with_topics(&store.intern_video(id), e, topics)
                .map_err(ann_error)?;
        }
    }
    index.set_applied_version(version);
    Ok(Ok(Replayed {
        file_version,
        changed: changed.len(),
        added,
        removed,
    }))
}

/// Most pages one session can scroll to: far past any scroll cap, far below overflow.
const MAX_PAGE: u64 = 1_000_000;

/// Reads a cursor this engine issued (`p<page>`, page at most [`MAX_PAGE`]).
fn parse_cursor(c: &Cursor) -> Result<u64> {
    c.as_str()
        .strip_prefix('p')
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n <= MAX_PAGE)
        .ok_or_else(|| Error::invalid("cursor", "not a cursor this engine issued"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
    }

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_cursor(&Cursor::new("p3").unwrap()).unwrap(), 3);
        assert!(parse_cursor(&Cursor::new("q3").unwrap()).is_err());
        assert!(parse_cursor(&Cursor::new("p-1").unwrap()).is_err());
        assert!(parse_cursor(&Cursor::new("p+1").unwrap()).is_err());
        for big in ["p18446744073709551615", "p18446744073709551616", "p1000001"] {
            assert!(parse_cursor(&Cursor::new(big).unwrap()).is_err(), "{big}");
        }
        assert_eq!(
            parse_cursor(&Cursor::new("p1000000").unwrap()).unwrap(),
            MAX_PAGE
        );
    }
}

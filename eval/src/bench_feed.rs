//! `steerfeed bench feed`: the end-to-end engine benchmark.
//!
//! 1. **World.** A seeded [`World`] of `--users` users and `--videos` videos. Captions
//!    are not embedded: videos keep the world's clustered 384-d embeddings and topics,
//!    so [`Engine::upsert_videos`] never calls the encoder for them.
//! 2. **Store.** The engine's `store.path` is a cache folder keyed by the parameters,
//!    `<cache>/bench-feed/<videos>-<users>-<seed>/` (`<cache>` is `$STEERFEED_CACHE`,
//!    else `~/.cache/steerfeed`; `--cache-dir DIR` replaces `<cache>/bench-feed`). A
//!    marker file ([`MARKER_FILE`]) is written once the build completed; a folder without
//!    it (a build killed midway) is wiped and rebuilt, and so is any folder with
//!    `--fresh`. With the marker, the run reuses the store and the index checkpoint, so
//!    the engine starts in seconds.
//! 3. **Build** (only when the cache is missing): users, videos in batches of 1,000,
//!    follows, consents, revocations, then the event history in batches of 1,000. Videos
//!    are upserted with `index.build.max_live = 0` (each insert is appended to the
//!    index's exact live segment, no background rebuilds), then the engine is reopened so
//!    that it builds the HNSW graph once over every stored embedding; the bench then
//!    checkpoints the index and writes the marker. Users, follows, consents and
//!    revocations are written by `--load-threads` writers so that their durable writes
//!    share the store's group-commit flushes.
//! 4. **Ingest**: fresh events (a seeded sample in the world's id space, re-keyed with a
//!    run-unique prefix so they are never duplicates) through [`Engine::ingest_events`]
//!    in batches of 1,000, from one thread, then (with `--threads T`, T > 1) from T
//!    writers. Each phase's rate is sustained: its clock stops when the store has been
//!    flushed after the last call (the derived state the events changed is on disk),
//!    and the rate until the last acknowledgement is reported beside it.
//! 5. **Feed**: `--requests` requests for seeded random users of the world, each a fresh
//!    [`FeedRequest`] issued by `--threads` threads after a warm-up of 100 requests that
//!    is not counted. The clock advances `--clock-step-ms` per request from the world's
//!    `now`, so page pools expire and bedtimes and daily limits come as they would in a
//!    live app. Served items are recorded as seen, so a user asked twice gets new items.
//!    Latencies and stage costs are over the ranked requests; requests a wellbeing gate
//!    answered (bedtime, the daily limit, the scroll cap) are counted apart.
//!
//! [`run`] returns the [`FeedReport`]; the command prints it as one JSON object on
//! stdout. Progress goes to stderr.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use steerfeed::demo::{LoadOptions, LoadStep, for_each_parallel, load_world_with};
use steerfeed::{
    CardKind, Config, Engine, Event, EventKey, FeedRequest, FeedResponse, Timestamp, Trace, UserId,
};
use steerfeed_world::{World, WorldConfig};

use crate::progress::Progress;

/// The file, inside the cache folder, whose presence says the build completed.
pub const MARKER_FILE: &str = "bench-feed.json";

/// The default `--clock-step-ms`: 2,100 requests span 17.5 minutes of the world's time,
/// so a user's page pool (60 s) has expired by the time they ask again.
pub const DEFAULT_CLOCK_STEP_MS: u64 = 500;
/// The engine's index file inside `store.path` (see `[store]` in `config/default.toml`).
/// Marker format; a marker of another version is treated as a half-built cache.
const MARKER_VERSION: u32 = 1;
/// Videos per `upsert_videos` call and events per `ingest_events` call.
const BATCH: usize = 1000;
/// Default events per user of the world (`WorldConfig::new`'s).
const DEFAULT_EVENTS_PER_USER: usize = 40;
/// Most videos of the world the ingest sample's events point at.
const SAMPLE_VIDEOS: usize = 10_000;

/// Arguments of `steerfeed bench feed`.
#[derive(Debug, Clone, Args)]
pub struct FeedArgs {
    /// Videos in the world.
    #[arg(long)]
    pub videos: usize,
    /// Users in the world.
    #[arg(long)]
    pub users: usize,
    /// Seed of the world, of the ingest sample and of the requests' users.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Threads issuing feed requests (and ingest writers in the second ingest phase).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Feed requests measured (after the warm-up).
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Feed requests before the measured ones, not counted.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Items per feed request.
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Milliseconds the clock advances per feed request (warm-up included): request `i`
    /// is made at the world's `now + i × step`, so page pools expire and days, bedtimes
    /// and daily limits turn as they would for a live app. 0 keeps every request at
    /// `now`. With several threads, requests run about in that order, not exactly.
    #[arg(long, default_value_t = DEFAULT_CLOCK_STEP_MS)]
    pub clock_step_ms: u64,
    /// Folder holding the keyed cache folders [default: $STEERFEED_CACHE/bench-feed, else
    /// ~/.cache/steerfeed/bench-feed].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Rebuild the store even when a complete cached one exists.
    #[arg(long)]
    pub fresh: bool,
    /// Run on the shared backend (PostgreSQL, NATS JetStream and Redis, `[shared]`; throwaway
    /// servers started for the run when none are configured), loading the world afresh
    /// into a new namespace: needs the binary built with the `shared` feature.
    #[arg(long)]
    pub shared: bool,
    /// Events ingested per ingest phase (single writer, then --threads writers).
    #[arg(long, default_value_t = 100_000)]
    pub ingest_events: usize,
    /// Mean engagements per user in the world's history (each comes with three
    /// impressions); part of the cache key when not the default.
    #[arg(long, default_value_t = DEFAULT_EVENTS_PER_USER)]
    pub events_per_user: usize,
    /// Writers loading users, follows, consents and revocations (their durable writes
    /// share flushes).
    #[arg(long, default_value_t = 32)]
    pub load_threads: usize,
}

impl FeedArgs {
    /// Arguments with every default but the size of the world.
    pub fn new(videos: usize, users: usize, seed: u64) -> Self {
        Self {
            videos,
            users,
            seed,
            threads: 1,
            requests: 2000,
            warmup: 100,
            limit: 20,
            clock_step_ms: DEFAULT_CLOCK_STEP_MS,
            cache_dir: None,
            fresh: false,
            shared: false,
            ingest_events: 100_000,
            events_per_user: DEFAULT_EVENTS_PER_USER,
            load_threads: 32,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.videos == 0 || self.users == 0 {
            bail!("--videos and --users must be above zero");
        }
        if self.threads == 0 || self.load_threads == 0 {
            bail!("--threads and --load-threads must be above zero");
        }
        if self.requests == 0 {
            bail!("--requests must be above zero");
        }
        if self.ingest_events == 0 {
            bail!("--ingest-events must be above zero");
        }
        Ok(())
    }

    /// The cache folder of these parameters.
    pub fn cache_path(&self) -> PathBuf {
        let base = self
            .cache_dir
            .clone()
            .unwrap_or_else(|| steerfeed::steer::config::cache_dir().join("bench-feed"));
        let mut key = format!("{}-{}-{}", self.videos, self.users, self.seed);
        if self.events_per_user != DEFAULT_EVENTS_PER_USER {
            key.push_str(&format!("-e{}", self.events_per_user));
        }
        base.join(key)
    }

    fn world_config(&self) -> WorldConfig {
        let mut c = WorldConfig::new(self.seed, self.users, self.videos);
        c.events_per_user = self.events_per_user;
        c
    }
}

/// How [`Engine::open`] got its vector index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenMode {
    /// Loaded from the index file (and brought up to date from the catalog log).
    Reload,
    /// Built from the stored embeddings.
    Rebuild,
}

/// The parameters of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Videos in the world.
    pub videos: usize,
    /// Users in the world.
    pub users: usize,
    /// Seed.
    pub seed: u64,
    /// Engagements per user in the world's history.
    pub events_per_user: usize,
    /// Feed threads (and ingest writers of the parallel phase).
    pub threads: usize,
    /// Measured feed requests.
    pub requests: usize,
    /// Warm-up requests.
    pub warmup: usize,
    /// Items per request.
    pub limit: u32,
    /// Milliseconds the clock advances per feed request.
    pub clock_step_ms: u64,
}

/// The cache folder and whether this run reused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// The folder (the engine's `store.path`).
    pub dir: PathBuf,
    /// True when a complete cached store was reused, false when it was built now.
    pub reused: bool,
}

/// Loading the world into a fresh store (recorded in the marker; a run that reuses the
/// cache reports the stats of the run that built it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildStats {
    /// Generating the world, in milliseconds.
    pub world_ms: f64,
    /// Users upserted.
    pub users: usize,
    /// Users per second (`--load-threads` writers).
    pub users_per_s: f64,
    /// Videos upserted.
    pub videos: usize,
    /// Videos per second end to end: upserts plus the reopen that builds the graph.
    pub videos_per_s: f64,
    /// Videos per second through `upsert_videos` alone (store writes, durable, and the
    /// append to the index's live segment), batches of 1,000, one thread.
    pub upsert_videos_per_s: f64,
    /// The reopen that builds the HNSW graph over every stored video, in milliseconds
    /// (it also loads the model and replays the event log: see `open_ms` of a reload).
    pub rebuild_open_ms: f64,
    /// Follow edges.
    pub follows: usize,
    /// Follows per second (`--load-threads` writers).
    pub follows_per_s: f64,
    /// Consent grants.
    pub consents: usize,
    /// Consent revocations.
    pub revocations: usize,
    /// History events ingested.
    pub events: usize,
    /// History events per second (one thread, batches of 1,000, in time order).
    pub events_per_s: f64,
    /// Writers of users, follows, consents and revocations.
    pub load_threads: usize,
    /// The whole build (world, load, reopen, checkpoint), in milliseconds.
    pub total_ms: f64,
}

/// Ingest throughput of fresh events, sustained: each phase's clock stops once the
/// derived state its events changed is on disk (the store flushed after the last call),
/// not when the last call returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestStats {
    /// Events ingested by one writer.
    pub events: usize,
    /// Their sustained rate (batches of 1,000, until the persister caught up).
    pub events_per_s: f64,
    /// Their rate until the last call returned (every event acknowledged, hence in the
    /// log; derived state partly still in memory).
    pub acknowledged_per_s: f64,
    /// Milliseconds from the last acknowledgement until the derived state was on disk.
    pub catch_up_ms: f64,
    /// Writers of the parallel phase (absent when `--threads` is 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// Events ingested by the parallel writers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threaded_events: Option<usize>,
    /// Their combined sustained rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threaded_events_per_s: Option<f64>,
    /// Their combined rate until the last call returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threaded_acknowledged_per_s: Option<f64>,
    /// Generating the sample, in milliseconds (not in the rates).
    pub sample_ms: f64,
}

/// Feed latency of the ranked requests (those no gate stopped); the gated ones are
/// counted apart, since a gate answers before anything is ranked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedStats {
    /// Measured requests that were ranked.
    pub requests: usize,
    /// Threads issuing them.
    pub threads: usize,
    /// Latency percentiles and maximum, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
    /// Mean latency.
    pub mean_ms: f64,
    /// Mean items per page.
    pub mean_items: f64,
    /// Ranked requests that returned no item (nothing left to serve).
    pub empty_pages: usize,
    /// Requests per second over the measured phase (gated ones included).
    pub qps: f64,
    /// The measured requests a gate stopped (bedtime, the daily limit, the session's
    /// scroll cap): answered with the gate's card and no item.
    pub gated: GatedStats,
    /// Mean microseconds and mean output count of each stage (and of the context load
    /// and the response assembly), in pipeline order.
    pub stages: Vec<StageTiming>,
}

/// Requests a wellbeing gate answered.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GatedStats {
    /// How many.
    pub requests: usize,
    /// Their median latency, in milliseconds (0 with none).
    pub p50_ms: f64,
    /// Their 99th percentile.
    pub p99_ms: f64,
    /// Stopped at bedtime.
    pub bedtime: usize,
    /// Stopped by the daily limit.
    pub limit_reached: usize,
    /// Stopped by the session's scroll cap.
    pub caught_up: usize,
}

/// One stage's mean cost over the measured requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    /// The stage's name.
    pub stage: String,
    /// Mean wall time, in microseconds, over the requests it ran in.
    pub mean_us: f64,
    /// Mean candidates out (proposed, kept, selected).
    pub mean_out: f64,
    /// Requests it ran in.
    pub runs: usize,
}

/// The vector index on disk after the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// `index.hnsw` (graph, vectors, live segment, tombstones, id map), bytes.
    pub file_bytes: u64,
}

/// What one run measured: printed as one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedReport {
    /// Always "feed".
    pub bench: String,
    /// The parameters.
    pub params: Params,
    /// The cache folder.
    pub cache: CacheInfo,
    /// Opening the engine on the complete store, in milliseconds (with `open_mode`
    /// "rebuild" this includes the index graph build; both include replaying the event
    /// log into the co-engagement model).
    pub open_ms: f64,
    /// Milliseconds after open until the background cache warmer finished.
    pub warm_ms: f64,
    /// Whether that open reloaded the index checkpoint or rebuilt the index.
    pub open_mode: OpenMode,
    /// The build.
    pub build: BuildStats,
    /// Ingest.
    pub ingest: IngestStats,
    /// Feed latency.
    pub feed: FeedStats,
    /// Videos in the store (not deleted).
    pub video_count: u64,
    /// Events in the store's log after the run.
    pub event_count: u64,
    /// The vector index on disk.
    pub index: IndexInfo,
    /// With the shared backend: a mirror started by replaying both logs against one
    /// started from a mirror snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_start: Option<MirrorStart>,
}

/// A shared backend process's mirror, started two ways on the same deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MirrorStart {
    /// Opening a store whose mirror replays both logs from their beginnings, in
    /// milliseconds.
    pub replay_ms: f64,
    /// Writing a mirror snapshot from it, in milliseconds.
    pub snapshot_ms: f64,
    /// The snapshot's size in bytes.
    pub snapshot_bytes: u64,
    /// How long applying the logs waited while the copy settled, in milliseconds.
    pub snapshot_held_ms: u64,
    /// Trimming both logs up to that snapshot, in milliseconds.
    pub trim_ms: f64,
    /// Change log rows the trim removed.
    pub changes_trimmed: u64,
    /// Stream messages the trim removed.
    pub messages_trimmed: u64,
    /// Opening a store from that snapshot (copying it, then catching up the trimmed
    /// logs), in milliseconds.
    pub from_snapshot_ms: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    version: u32,
    videos: usize,
    users: usize,
    seed: u64,
    events_per_user: usize,
    build: BuildStats,
}

/// Opens the engine the benchmark measures, on a configuration.
pub type Opener<'a> = dyn Fn(Config) -> anyhow::Result<Engine> + 'a;

/// Runs the benchmark with `config` (its `store.path` is replaced by the cache folder).
pub fn run(config: Config, args: &FeedArgs) -> anyhow::Result<FeedReport> {
    run_with(config, args, &|c| Ok(Engine::open(c)?))
}

/// [`run`] with the engine opened by `open` (another storage backend: the store the
/// cache folder holds is then only the index file, so pass `fresh`).
pub fn run_with(config: Config, args: &FeedArgs, open: &Opener<'_>) -> anyhow::Result<FeedReport> {
    args.validate()?;
    let dir = args.cache_path();
    let mut config = config;
    config.store.path = dir.clone();

    let cached = if args.fresh {
        None
    } else {
        read_marker(&dir, args)
    };
    let reused = cached.is_some();
    let build_started = Instant::now();
    let mut build = match cached {
        Some(build) => {
            eprintln!(
                "bench feed: reusing the complete store in {}",
                dir.display()
            );
            build
        }
        None => {
            if dir.exists() {
                eprintln!(
                    "bench feed: {} is incomplete, stale or --fresh was given; rebuilding",
                    dir.display()
                );
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            load(&config, args, &dir, open)?
        }
    };

    eprintln!("bench feed: opening the engine");
    let started = Instant::now();
    let engine = open(config).context("opening the engine")?;
    let open_ms = ms(started.elapsed());
    let open_mode = if engine.index_open().rebuilt {
        OpenMode::Rebuild
    } else {
        OpenMode::Reload
    };
    eprintln!("bench feed: engine open in {open_ms:.0} ms ({open_mode:?})");
    // Measure the engine as it serves once started: wait for the cache warmer.
    let warming = Instant::now();
    while !engine.store().is_warm() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let warm_ms = ms(warming.elapsed());
    eprintln!("bench feed: caches warmed {warm_ms:.0} ms after open");

    if !reused {
        build.rebuild_open_ms = open_ms;
        let upsert_s = build.videos as f64 / build.upsert_videos_per_s.max(f64::MIN_POSITIVE);
        build.videos_per_s = rate(build.videos, upsert_s + open_ms / 1000.0);
        engine.checkpoint().context("checkpointing the index")?;
        build.total_ms = ms(build_started.elapsed());
        write_marker(&dir, args, &build)?;
        eprintln!(
            "bench feed: build complete in {:.1} s; marker written",
            build.total_ms / 1000.0
        );
    }

    let ingest = measure_ingest(&engine, args)?;
    let feed = measure_feed(&engine, args)?;
    let video_count = engine.store().video_count();
    let event_count = engine.store().event_count();
    let index_file = engine.index_file();
    drop(engine); // checkpoints the index (its catalog version is unchanged)

    let index = IndexInfo {
        file_bytes: std::fs::metadata(&index_file).map_or(0, |m| m.len()),
    };
    Ok(FeedReport {
        bench: "feed".into(),
        params: Params {
            videos: args.videos,
            users: args.users,
            seed: args.seed,
            events_per_user: args.events_per_user,
            threads: args.threads,
            requests: args.requests,
            warmup: args.warmup,
            limit: args.limit,
            clock_step_ms: args.clock_step_ms,
        },
        cache: CacheInfo { dir, reused },
        open_ms,
        warm_ms,
        open_mode,
        build,
        ingest,
        feed,
        video_count,
        event_count,
        index,
        mirror_start: None,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn rate(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

fn read_marker(dir: &Path, args: &FeedArgs) -> Option<BuildStats> {
    let bytes = std::fs::read(dir.join(MARKER_FILE)).ok()?;
    let m: Marker = serde_json::from_slice(&bytes).ok()?;
    (m.version == MARKER_VERSION
        && m.videos == args.videos
        && m.users == args.users
        && m.seed == args.seed
        && m.events_per_user == args.events_per_user)
        .then_some(m.build)
}

fn write_marker(dir: &Path, args: &FeedArgs, build: &BuildStats) -> anyhow::Result<()> {
    let marker = Marker {
        version: MARKER_VERSION,
        videos: args.videos,
        users: args.users,
        seed: args.seed,
        events_per_user: args.events_per_user,
        build: build.clone(),
    };
    let path = dir.join(MARKER_FILE);
    let tmp = dir.join(format!("{MARKER_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&marker)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// Progress of one phase on stderr (the harness's bar), and its elapsed time.
struct Phase {
    bar: Progress,
    started: Instant,
}

impl Phase {
    fn new(what: &str, total: usize) -> Self {
        Self {
            bar: Progress::new(format!("bench feed: {what}"), total as u64),
            started: Instant::now(),
        }
    }

    fn tick(&self, done: usize) {
        self.bar.set(done as u64);
    }

    /// Ends the bar; returns the elapsed time.
    fn finish(&self) -> Duration {
        self.bar.finish();
        self.started.elapsed()
    }
}

/// Calls `f` on every item from `threads` threads, with a progress bar; returns the
/// elapsed time.
fn par_for_each<T: Sync>(
    what: &'static str,
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> steerfeed::Result<()> + Sync,
) -> anyhow::Result<Duration> {
    let progress = Phase::new(what, items.len());
    for_each_parallel(items.len(), threads, &|i| f(&items[i]), &|d| {
        progress.tick(d)
    })
    .with_context(|| format!("loading {what}"))?;
    Ok(progress.finish())
}

/// Generates the world and loads it into a fresh store at `dir`, with the index in
/// bulk mode; leaves no index checkpoint, so the next open builds the graph once.
fn load(
    config: &Config,
    args: &FeedArgs,
    dir: &Path,
    open: &Opener<'_>,
) -> anyhow::Result<BuildStats> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    eprintln!(
        "bench feed: generating the world ({} videos, {} users, seed {})",
        args.videos, args.users, args.seed
    );
    let started = Instant::now();
    let world = World::generate(args.world_config());
    let world_ms = ms(started.elapsed());
    eprintln!(
        "bench feed: world in {:.1} s: {} follows, {} consents, {} revocations, {} events",
        world_ms / 1000.0,
        world.follows.len(),
        world.consents.len(),
        world.revocations.len(),
        world.events.len()
    );
    if world.videos.iter().any(|v| v.embedding.is_none()) {
        bail!("the world left a video without an embedding");
    }

    let mut bulk = config.clone();
    bulk.store.path = dir.to_path_buf();
    // Every insert goes to the exact live segment; no background rebuild while loading.
    bulk.index.build.max_live = 0;
    let engine = open(bulk).context("opening the engine to load the world")?;
    let lt = args.load_threads;
    // One bar per step of the loader.
    let bar: Mutex<Option<(LoadStep, Phase)>> = Mutex::new(None);
    let progress = |step: LoadStep, done: usize, total: usize| {
        let mut bar = bar.lock().unwrap_or_else(|p| p.into_inner());
        if bar.as_ref().is_none_or(|(s, _)| *s != step) {
            if let Some((_, phase)) = bar.take() {
                phase.finish();
            }
            *bar = Some((step, Phase::new(step.name(), total)));
        }
        if let Some((_, phase)) = bar.as_ref() {
            phase.tick(done);
        }
    };
    let report = load_world_with(
        &engine,
        &world,
        &LoadOptions {
            batch: BATCH,
            threads: lt,
            progress: &progress,
        },
    )
    .context("loading the world")?;
    if let Some((_, phase)) = bar.into_inner().unwrap_or_else(|p| p.into_inner()) {
        phase.finish();
    }

    let stats = BuildStats {
        world_ms,
        users: report.users,
        users_per_s: rate(report.users, report.user_secs),
        videos: report.videos,
        videos_per_s: 0.0, // set once the graph is built
        upsert_videos_per_s: rate(report.videos, report.video_secs),
        rebuild_open_ms: 0.0,
        follows: report.follows,
        follows_per_s: rate(report.follows, report.follow_secs),
        consents: report.consents,
        revocations: report.revocations,
        events: world.events.len(),
        events_per_s: rate(world.events.len(), report.event_secs),
        load_threads: lt,
        total_ms: 0.0,
    };
    drop(world);
    // The next open builds the graph over every stored embedding at once.
    engine
        .close_discarding_index()
        .context("closing the loading engine")?;
    Ok(stats)
}

/// Fresh events in the world's id space: the history of a smaller world (same users,
/// the oldest videos, another seed), re-keyed `b<base>-<phase><n>` so that no key was
/// logged before (`base` is the store's event count, which only grows).
fn ingest_sample(args: &FeedArgs, n: usize) -> Vec<Event> {
    let mut c = WorldConfig::new(
        args.seed.wrapping_add(1),
        args.users,
        args.videos.min(SAMPLE_VIDEOS),
    );
    // Each engagement comes with three impressions: about 4 * events_per_user per user.
    c.events_per_user = n.div_ceil(4 * args.users).max(1);
    let mut events = World::generate(c).events;
    // A small world may give fewer events than asked for: repeat them (new keys below).
    if events.is_empty() {
        return events;
    }
    let base = events.len();
    while events.len() < n {
        let more = events[events.len() % base].clone();
        events.push(more);
    }
    events.truncate(n);
    events
}

fn rekey(events: &[Event], prefix: &str) -> anyhow::Result<Vec<Event>> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Ok(Event {
                key: EventKey::new(format!("{prefix}{i}"))?,
                ..e.clone()
            })
        })
        .collect()
}

fn measure_ingest(engine: &Engine, args: &FeedArgs) -> anyhow::Result<IngestStats> {
    let started = Instant::now();
    let sample = ingest_sample(args, args.ingest_events);
    let base = engine.store().event_count();
    let single = rekey(&sample, &format!("b{base}-s"))?;
    let threaded = rekey(&sample, &format!("b{base}-p"))?;
    let sample_ms = ms(started.elapsed());
    if single.is_empty() {
        bail!("the ingest sample is empty");
    }

    let progress = Phase::new("ingest (1 writer)", single.len());
    let mut done = 0;
    for chunk in single.chunks(BATCH) {
        let report = engine.ingest_events(chunk).context("ingesting")?;
        if report.accepted != chunk.len() {
            bail!(
                "ingest: {} of {} events were duplicates",
                chunk.len() - report.accepted,
                chunk.len()
            );
        }
        done += chunk.len();
        progress.tick(done);
    }
    let acknowledged = progress.finish();
    let (sustained, catch_up) = caught_up(engine, acknowledged)?;

    let mut stats = IngestStats {
        events: single.len(),
        events_per_s: rate(single.len(), sustained.as_secs_f64()),
        acknowledged_per_s: rate(single.len(), acknowledged.as_secs_f64()),
        catch_up_ms: ms(catch_up),
        threads: None,
        threaded_events: None,
        threaded_events_per_s: None,
        threaded_acknowledged_per_s: None,
        sample_ms,
    };
    if args.threads > 1 {
        let batches: Vec<&[Event]> = threaded.chunks(BATCH).collect();
        let acknowledged = par_for_each("ingest batches (threads)", &batches, args.threads, |b| {
            engine.ingest_events(b).map(|_| ())
        })?;
        let (sustained, _) = caught_up(engine, acknowledged)?;
        stats.threads = Some(args.threads);
        stats.threaded_events = Some(threaded.len());
        stats.threaded_events_per_s = Some(rate(threaded.len(), sustained.as_secs_f64()));
        stats.threaded_acknowledged_per_s = Some(rate(threaded.len(), acknowledged.as_secs_f64()));
    }
    Ok(stats)
}

/// Flushes the store (the derived state still in memory goes to disk) right after an
/// ingest phase that took `acknowledged`; returns the phase's sustained time and the
/// flush's share of it.
fn caught_up(engine: &Engine, acknowledged: Duration) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    engine.store().flush().context("flushing after ingest")?;
    let catch_up = started.elapsed();
    Ok((acknowledged + catch_up, catch_up))
}

fn uid(i: usize) -> anyhow::Result<UserId> {
    // The world names its users u0, u1, ... (`World::users`).
    Ok(UserId::new(format!("u{i}"))?)
}

/// What one timed feed request gave.
struct Served {
    latency: Duration,
    items: usize,
    /// The gate that stopped it, if one did.
    gate: Option<CardKind>,
    trace: Trace,
}

/// One timed feed request at `now`.
fn one_feed(engine: &Engine, user: &UserId, limit: u32, now: Timestamp) -> anyhow::Result<Served> {
    let started = Instant::now();
    let request = FeedRequest::new(user.clone(), limit)?.at(now);
    let (page, trace) = engine
        .feed_traced(&request)
        .with_context(|| format!("feed for {user}"))?;
    let latency = started.elapsed();
    Ok(Served {
        latency,
        items: page.items.len(),
        gate: gate_of(&page),
        trace,
    })
}

/// The gate that stopped a page: a bedtime, daily-limit or scroll-cap card on a page
/// without items.
fn gate_of(page: &FeedResponse) -> Option<CardKind> {
    if !page.items.is_empty() {
        return None;
    }
    page.cards.iter().map(|c| c.kind).find(|k| {
        matches!(
            k,
            CardKind::Bedtime | CardKind::LimitReached | CardKind::CaughtUp
        )
    })
}

/// The time of request `i` (warm-up included) under `--clock-step-ms`.
fn request_time(start: Timestamp, step_ms: u64, i: usize) -> anyhow::Result<Timestamp> {
    let offset = jiff::SignedDuration::from_millis(
        i64::try_from(step_ms.saturating_mul(i as u64)).context("clock step too large")?,
    );
    start
        .checked_add(offset)
        .context("the bench clock ran past the end of time")
}

/// Mean cost of each stage, in the order stages first appeared.
fn stage_timings<'a>(traces: impl Iterator<Item = &'a Trace>) -> Vec<StageTiming> {
    let mut order: Vec<&'static str> = Vec::new();
    let mut acc: std::collections::HashMap<&'static str, (u64, usize, usize)> =
        std::collections::HashMap::new();
    for t in traces {
        for r in &t.stages {
            let e = acc.entry(r.stage).or_insert_with(|| {
                order.push(r.stage);
                (0, 0, 0)
            });
            e.0 += r.micros;
            e.1 += r.output;
            e.2 += 1;
        }
    }
    order
        .into_iter()
        .map(|stage| {
            let (us, out, runs) = acc[stage];
            StageTiming {
                stage: stage.to_owned(),
                mean_us: us as f64 / runs.max(1) as f64,
                mean_out: out as f64 / runs.max(1) as f64,
                runs,
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    ms(sorted[rank - 1])
}

fn measure_feed(engine: &Engine, args: &FeedArgs) -> anyhow::Result<FeedStats> {
    let start = args.world_config().now;
    let at = |i: usize| request_time(start, args.clock_step_ms, i);
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0xfeed_feed);
    let users = (0..args.warmup + args.requests)
        .map(|_| uid(rng.random_range(0..args.users)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (warmup, measured) = users.split_at(args.warmup);

    eprintln!("bench feed: {} warm-up requests", warmup.len());
    for (i, u) in warmup.iter().enumerate() {
        one_feed(engine, u, args.limit, at(i)?)?;
    }

    let progress = Phase::new("feed requests", measured.len());
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Served>> = Mutex::new(Vec::with_capacity(measured.len()));
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads {
            s.spawn(|| {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(u) = measured.get(i) else { break };
                    let served =
                        at(args.warmup + i).and_then(|now| one_feed(engine, u, args.limit, now));
                    match served {
                        Ok(r) => mine.push(r),
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
                            slot.get_or_insert(e);
                            break;
                        }
                    }
                    progress.tick(i + 1);
                }
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            });
        }
    });
    let wall = started.elapsed();
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    progress.finish();

    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let measured_n = results.len();
    let (gated, ranked): (Vec<Served>, Vec<Served>) =
        results.into_iter().partition(|r| r.gate.is_some());
    let sorted = |rs: &[Served]| {
        let mut lat: Vec<Duration> = rs.iter().map(|r| r.latency).collect();
        lat.sort_unstable();
        lat
    };
    let lat = sorted(&ranked);
    let gated_lat = sorted(&gated);
    let count = |k: CardKind| gated.iter().filter(|r| r.gate == Some(k)).count();
    let n = ranked.len();
    let items: usize = ranked.iter().map(|r| r.items).sum();
    let total: Duration = lat.iter().sum();
    let pct = |lat: &[Duration], p| {
        if lat.is_empty() {
            0.0
        } else {
            percentile(lat, p)
        }
    };
    Ok(FeedStats {
        requests: n,
        threads: args.threads,
        p50_ms: pct(&lat, 0.50),
        p95_ms: pct(&lat, 0.95),
        p99_ms: pct(&lat, 0.99),
        max_ms: lat.last().map_or(0.0, |d| ms(*d)),
        mean_ms: ms(total) / n.max(1) as f64,
        mean_items: items as f64 / n.max(1) as f64,
        empty_pages: ranked.iter().filter(|r| r.items == 0).count(),
        qps: rate(measured_n, wall.as_secs_f64()),
        gated: GatedStats {
            requests: gated.len(),
            p50_ms: pct(&gated_lat, 0.50),
            p99_ms: pct(&gated_lat, 0.99),
            bedtime: count(CardKind::Bedtime),
            limit_reached: count(CardKind::LimitReached),
            caught_up: count(CardKind::CaughtUp),
        },
        stages: stage_timings(ranked.iter().map(|r| &r.trace)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gate_card_on_a_page_without_items_counts_as_gated() {
        use steerfeed::{
            Card, Constraints, Explanation, FeedItem, Reason, ScoreBreakdown, VideoId,
        };
        let page = |items: usize, kinds: &[CardKind]| FeedResponse {
            items: (0..items)
                .map(|i| FeedItem {
                    video: VideoId::new(format!("v{i}")).unwrap(),
                    score: 1.0,
                    source: "popular".into(),
                    breakdown: ScoreBreakdown::default(),
                    explanation: Explanation::new(Reason::Popular),
                })
                .collect(),
            cards: kinds
                .iter()
                .map(|&kind| Card {
                    kind,
                    position: 0,
                    message: String::new(),
                })
                .collect(),
            next_cursor: None,
            applied: Constraints::default(),
            request_id: String::new(),
            profile: String::new(),
        };
        assert_eq!(
            gate_of(&page(0, &[CardKind::Bedtime])),
            Some(CardKind::Bedtime)
        );
        assert_eq!(
            gate_of(&page(0, &[CardKind::Checkin, CardKind::LimitReached])),
            Some(CardKind::LimitReached)
        );
        assert_eq!(
            gate_of(&page(0, &[CardKind::CaughtUp])),
            Some(CardKind::CaughtUp)
        );
        // Nothing left to serve is an empty page, not a gate.
        assert_eq!(gate_of(&page(0, &[])), None);
        assert_eq!(gate_of(&page(0, &[CardKind::Checkin])), None);
        // A page with items was ranked, whatever cards ride along.
        assert_eq!(gate_of(&page(3, &[CardKind::Break])), None);
    }

    #[test]
    fn the_clock_advances_by_the_step_per_request() {
        let start = Timestamp::from_second(1_795_000_000).unwrap();
        assert_eq!(request_time(start, 500, 0).unwrap(), start);
        assert_eq!(
            request_time(start, 500, 7).unwrap().as_millisecond() - start.as_millisecond(),
            3_500
        );
        assert_eq!(request_time(start, 0, 1_000).unwrap(), start);
        assert!(request_time(start, u64::MAX, 2).is_err());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert!((percentile(&d, 0.5) - 50.0).abs() < 1e-9);
        assert!((percentile(&d, 0.99) - 99.0).abs() < 1e-9);
        assert!((percentile(&d[..1], 0.99) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_cache_folder_is_keyed_by_the_parameters() {
        let mut a = FeedArgs::new(1000, 100, 7);
        a.cache_dir = Some(PathBuf::from("/x"));
        assert_eq!(a.cache_path(), PathBuf::from("/x/1000-100-7"));
        a.events_per_user = 5;
        assert_eq!(a.cache_path(), PathBuf::from("/x/1000-100-7-e5"));
    }
}

//! The `engine` row: MicroLens replayed through the engine an app runs.
//!
//! A real [`Engine`] on a temporary sled store with the configuration it is given (the
//! shipped defaults from `steerfeed eval microlens`) learns the training interactions the
//! way an app would teach it, and the metrics are read off the pages `Engine::feed`
//! serves:
//!
//! - every catalogue item is a [`Video`] whose caption is its title, with no embedding
//!   and no topics: the engine embeds the caption with its model and infers the topics,
//!   as for an app that sends neither (a title longer than a caption may be is cut to
//!   the limit at a character boundary). Each item has its own creator (the data names
//!   none), and every video is created 24 hours before the longest sequence starts;
//! - every training interaction (a public comment in MicroLens) is ingested through
//!   [`Engine::ingest_events`] as an [`EventKind::Comment`]. The data has no timestamps,
//!   only each user's order, so the sequences are aligned at their ends: a user's last
//!   interaction happens at [`end_time`] and each earlier one [`STEP_S`] seconds before
//!   the next. Every user's order is kept, recent positions are recent for everyone,
//!   and the engine's decayed counters see what the users did last as the latest
//!   activity;
//! - each test user then asks for pages of [`PAGE`] items at [`end_time`] plus a minute,
//!   one session, following the cursor until [`DEPTH`] items (or the largest cut-off)
//!   were served. A target counts where it was served; a target never served is a miss.
//!
//! Nothing is filtered out of a served page by the harness: a video the user already
//! engaged with is the engine's to leave out, and [`Outcome::re_served`] counts any it
//! served again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rayon::prelude::*;
use steerfeed::demo::for_each_parallel;
use steerfeed::video::MAX_CAPTION_LEN;
use steerfeed::{
    Config, Cursor, Engine, Event, EventKey, EventKind, FeedRequest, SessionId, Timestamp, User,
    UserId, Video, VideoId,
};

use super::data::{Case, Catalogue, Sequence};
use super::embed::Embeddings;
use super::{MethodResult, Served};
use crate::metrics;
use crate::progress::Progress;

/// Items per requested page.
pub const PAGE: u32 = 20;
/// Items served per user at least (MRR is MRR@`DEPTH`).
pub const DEPTH: usize = 50;
/// Seconds between two consecutive interactions of one user.
pub const STEP_S: i64 = 3_600;
/// How the replay dates interactions, as reported in its row.
pub const TIME_MAPPING: &str = "each user's last training interaction at one shared end \
     time, each earlier one an hour before the next; pages asked a minute after the end";

const VIDEO_BATCH: usize = 256;
const EVENT_BATCH: usize = 1_000;

/// The moment every user's last training interaction happened.
pub fn end_time() -> Timestamp {
    // 2026-06-01T12:00:00Z: any fixed instant; only differences matter.
    Timestamp::from_second(1_780_315_200).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// An engine that has learned the training interactions.
pub struct ReplayEngine {
    /// The engine, on its temporary store.
    pub engine: Engine,
    _dir: tempfile::TempDir,
    ids: Vec<VideoId>,
    dense: HashMap<VideoId, u32>,
    /// When the pages are asked for.
    pub now: Timestamp,
    /// Seconds spent loading the catalogue, the users and the interactions.
    pub load_seconds: f64,
}

impl ReplayEngine {
    fn new(engine: Engine, dir: tempfile::TempDir, cat: &Catalogue, started: Instant) -> Self {
        // The ids were checked when the store was taught (a cached one: the same ids).
        let ids = video_ids(cat).unwrap_or_default();
        let dense = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        Self {
            engine,
            _dir: dir,
            ids,
            dense,
            now: Timestamp::from_second(end_time().as_second() + 60).unwrap_or_else(|_| end_time()),
            load_seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// The video of catalogue item `i` (dense index).
    pub fn video_id(&self, i: u32) -> Option<&VideoId> {
        self.ids.get(i as usize)
    }

    /// When case `i` of a run staggered by `step_ms` milliseconds asks for its pages.
    pub fn asked_at(&self, i: usize, step_ms: i64) -> anyhow::Result<Timestamp> {
        let offset = i64::try_from(i)?.saturating_mul(step_ms);
        Ok(Timestamp::from_millisecond(
            self.now.as_millisecond().saturating_add(offset),
        )?)
    }

    /// The dense index of a served video.
    fn dense_of(&self, id: &VideoId) -> anyhow::Result<u32> {
        self.dense
            .get(id)
            .copied()
            .with_context(|| format!("the engine served {id}, which is not in the catalogue"))
    }
}

/// The engine's id of a MicroLens user.
pub fn user_id(user: &str) -> anyhow::Result<UserId> {
    UserId::new(format!("mu{user}")).with_context(|| format!("user {user:?} as an engine id"))
}

fn creator_id(item: u64) -> anyhow::Result<UserId> {
    Ok(UserId::new(format!("mc{item}"))?)
}

/// Opens an engine with `config` on a new temporary store and teaches it `cat` and
/// `train` (see the module doc for how).
pub fn build(config: Config, cat: &Catalogue, train: &[Sequence]) -> anyhow::Result<ReplayEngine> {
    build_cached(config, cat, train, None)
}

/// [`build`], keeping a pristine copy of the taught store in `cache` and starting from a
/// copy of it when one for the same data is there: runs that only change the ranking
/// configuration (`STEERFEED__RANK__…`) then skip the minutes of embedding and ingest.
/// The engine serves from its own temporary copy, so the cached store never records a
/// served page.
pub fn build_cached(
    mut config: Config,
    cat: &Catalogue,
    train: &[Sequence],
    cache: Option<&Path>,
) -> anyhow::Result<ReplayEngine> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("a temporary store for the replay")?;
    let store = dir.path().join("store");
    config.store.path = store.clone();
    let key = cache.map(|c| c.join(format!("store-{:016x}", data_key(&config, cat, train))));
    if let Some(cached) = key.as_ref().filter(|k| k.join(READY).exists()) {
        copy_dir(cached, &store)?;
        std::fs::remove_file(store.join(READY))?;
        let engine = Engine::open(config).context("opening the replay engine")?;
        eprintln!("replay: the taught store copied from {}", cached.display());
        return Ok(ReplayEngine::new(engine, dir, cat, started));
    }
    let engine = teach(config, cat, train)?;
    let Some(cached) = key else {
        return Ok(ReplayEngine::new(engine, dir, cat, started));
    };
    // Close to save the index beside the store, keep a copy, reopen.
    let config = engine.config().clone();
    drop(engine);
    let partial = cached.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    copy_dir(&store, &partial)?;
    std::fs::write(partial.join(READY), b"")?;
    if cached.exists() {
        std::fs::remove_dir_all(&cached)?;
    }
    std::fs::rename(&partial, &cached)?;
    let engine = Engine::open(config).context("reopening the replay engine")?;
    Ok(ReplayEngine::new(engine, dir, cat, started))
}

/// Marks a cached store as complete.
const READY: &str = "replay-ready";

/// A key of what a taught store holds: the titles, the sequences, the replay's time
/// mapping, the build (a new binary teaches again), and every setting read while
/// teaching (all but `[rank]`, read when the engine opens, and the store's path).
fn data_key(config: &Config, cat: &Catalogue, train: &[Sequence]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        cat.ids.as_slice(),
        cat.titles.as_slice(),
        STEP_S,
        end_time().as_second(),
    )
        .hash(&mut h);
    for s in train {
        (s.user.as_str(), s.items.as_slice()).hash(&mut h);
    }
    let build = std::env::current_exe()
        .and_then(|exe| exe.metadata())
        .and_then(|m| m.modified())
        .ok();
    (env!("CARGO_PKG_VERSION"), build).hash(&mut h);
    let mut taught = config.clone();
    taught.rank = Default::default();
    taught.store.path = PathBuf::new();
    serde_json::to_string(&taught)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// A new engine on `config`'s store, taught `cat` and `train`.
fn teach(config: Config, cat: &Catalogue, train: &[Sequence]) -> anyhow::Result<Engine> {
    let engine = Engine::open(config).context("opening the replay engine")?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let end = end_time().as_second();
    let longest = train.iter().map(|s| s.items.len()).max().unwrap_or(0);
    let created = Timestamp::from_second(end - (longest as i64 + 24) * STEP_S)?;

    // Users: one creator per item, then the viewers.
    let mut users = Vec::with_capacity(cat.len() + train.len());
    for &item in &cat.ids {
        users.push(creator_id(item)?);
    }
    for s in train {
        users.push(user_id(&s.user)?);
    }
    let progress = Progress::new("replay: users", users.len() as u64);
    for_each_parallel(
        users.len(),
        threads * 4,
        &|i| engine.upsert_user(&User::new(users[i].clone())),
        &|n| progress.set(n as u64),
    )?;
    progress.finish();

    // Videos: captions only; the engine embeds them and infers their topics.
    let ids = video_ids(cat)?;
    let progress = Progress::new("replay: videos (embedded by the engine)", ids.len() as u64);
    let batches = ids.len().div_ceil(VIDEO_BATCH);
    for_each_parallel(
        batches,
        threads,
        &|b| {
            let range = b * VIDEO_BATCH..((b + 1) * VIDEO_BATCH).min(ids.len());
            let videos: Vec<Video> = range
                .map(|i| Video {
                    caption: caption(&cat.titles[i]),
                    ..Video::new(ids[i].clone(), users[i].clone(), created, 30.0)
                })
                .collect();
            engine.upsert_videos(&videos)
        },
        &|n| progress.set((n * VIDEO_BATCH).min(ids.len()) as u64),
    )?;
    progress.finish();

    // Interactions: comments, each user's last at `end`, one step apart.
    let mut events = Vec::with_capacity(train.iter().map(|s| s.items.len()).sum());
    for s in train {
        let user = user_id(&s.user)?;
        let last = s.items.len().saturating_sub(1);
        for (k, &item) in s.items.iter().enumerate() {
            let Some(video) = ids.get(item as usize) else {
                bail!("user {}: item index {item} outside the catalogue", s.user);
            };
            events.push(Event {
                key: EventKey::new(format!("{}-{k}", user.as_str()))?,
                user: user.clone(),
                at: Timestamp::from_second(end - (last - k) as i64 * STEP_S)?,
                kind: EventKind::Comment {
                    video: video.clone(),
                },
            });
        }
    }
    // Batches of whole users (about EVENT_BATCH events each), so that each user's
    // events are logged in their order whatever batches run in parallel.
    let mut chunks: Vec<&[Event]> = Vec::new();
    let (mut from, mut at) = (0, 0);
    for s in train {
        at += s.items.len();
        if at - from >= EVENT_BATCH {
            chunks.push(&events[from..at]);
            from = at;
        }
    }
    if from < events.len() {
        chunks.push(&events[from..]);
    }
    let progress = Progress::new("replay: interactions", events.len() as u64);
    for_each_parallel(
        chunks.len(),
        threads,
        &|c| engine.ingest_events(chunks[c]).map(|_| ()),
        &|n| progress.set(chunks.iter().take(n).map(|c| c.len()).sum::<usize>() as u64),
    )?;
    progress.finish();
    engine.settle_index();
    Ok(engine)
}

/// The catalogue's video ids, in dense order.
fn video_ids(cat: &Catalogue) -> anyhow::Result<Vec<VideoId>> {
    Ok(cat
        .ids
        .iter()
        .map(|item| VideoId::new(format!("ml{item}")))
        .collect::<Result<_, _>>()?)
}

/// A title as a caption: cut at a character boundary to the longest caption the engine
/// accepts, as an app would before sending it (the encoder reads far fewer tokens).
fn caption(title: &str) -> String {
    let mut end = title.len().min(MAX_CAPTION_LEN);
    while !title.is_char_boundary(end) {
        end -= 1;
    }
    title[..end].to_owned()
}

/// What one test user was served.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Served items (dense indices), in order, at most the depth asked.
    pub served: Vec<u32>,
    /// The source that proposed each served item.
    pub sources: Vec<String>,
    /// Where the target was served, from 1 (as [`metrics::rank_of`] counts), within the
    /// depth asked.
    pub rank: Option<usize>,
    /// The target was on a served page, within the depth or on the last page's items past
    /// it (the engine serves, and logs, whole pages).
    pub target_served: bool,
    /// Served items the user had already engaged with (the engine should serve none).
    pub re_served: usize,
    /// How long each page request took.
    pub latencies: Vec<Duration>,
}

/// Asks `Engine::feed` for pages for every case until `depth` items were served (or the
/// engine has no more), in parallel on all cores. Returns each case's outcome and the
/// wall time of the whole run.
pub fn serve(
    replay: &ReplayEngine,
    cases: &[Case],
    depth: usize,
) -> anyhow::Result<(Vec<Outcome>, Duration)> {
    serve_staggered(replay, cases, depth, 0)
}

/// [`serve`], case `i` asking for its pages `i · step_ms` milliseconds after
/// [`ReplayEngine::now`] (see [`ReplayEngine::asked_at`]), so that the served pages
/// have an order in time.
pub fn serve_staggered(
    replay: &ReplayEngine,
    cases: &[Case],
    depth: usize,
    step_ms: i64,
) -> anyhow::Result<(Vec<Outcome>, Duration)> {
    let progress = Progress::new("replay: Engine::feed", cases.len() as u64);
    let done = AtomicUsize::new(0);
    let started = Instant::now();
    let out = cases
        .par_iter()
        .enumerate()
        .map(|(i, case)| {
            let o = replay
                .asked_at(i, step_ms)
                .and_then(|at| serve_one(replay, case, depth, at));
            if done.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
                progress.set(done.load(Ordering::Relaxed) as u64);
            }
            o
        })
        .collect::<anyhow::Result<Vec<Outcome>>>()?;
    let wall = started.elapsed();
    progress.finish();
    Ok((out, wall))
}

fn serve_one(
    replay: &ReplayEngine,
    case: &Case,
    depth: usize,
    at: Timestamp,
) -> anyhow::Result<Outcome> {
    let user = user_id(&case.user)?;
    let session = SessionId::new("replay")?;
    let mut served = Vec::with_capacity(depth);
    let mut sources = Vec::with_capacity(depth);
    let mut latencies = Vec::new();
    let mut cursor: Option<Cursor> = None;
    while served.len() < depth {
        let mut request = FeedRequest::new(user.clone(), PAGE)?
            .with_session(session.clone())
            .at(at);
        if let Some(c) = cursor.take() {
            request = request.with_cursor(c);
        }
        let t = Instant::now();
        let page = replay
            .engine
            .feed(&request)
            .with_context(|| format!("feed of {user}"))?;
        latencies.push(t.elapsed());
        if page.items.is_empty() {
            break;
        }
        for item in &page.items {
            served.push(replay.dense_of(&item.video)?);
            sources.push(item.source.clone());
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let target_served = served.contains(&case.target);
    served.truncate(depth);
    sources.truncate(depth);
    let rank = served.iter().position(|&i| i == case.target).map(|p| p + 1);
    let re_served = served.iter().filter(|i| case.history.contains(i)).count();
    Ok(Outcome {
        served,
        sources,
        rank,
        target_served,
        re_served,
        latencies,
    })
}

/// The `engine` row from the outcomes: the same metrics as the other rows, read off the
/// served pages, and what only served pages show (throughput, latency, sources).
pub fn score(
    replay: &ReplayEngine,
    outcomes: &[Outcome],
    wall: Duration,
    n: usize,
    ks: &[usize],
    emb: &Embeddings,
) -> MethodResult {
    let users = outcomes.len().max(1) as f64;
    let mut hr = vec![0.0; ks.len()];
    let mut ndcg = vec![0.0; ks.len()];
    let (mut mrr, mut div) = (0.0, 0.0);
    let mut sources: BTreeMap<String, f64> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut re_served = 0;
    let kcov = ks.iter().copied().max().unwrap_or(10);
    for o in outcomes {
        for (a, &k) in ks.iter().enumerate() {
            hr[a] += metrics::hit_at(o.rank, k);
            ndcg[a] += metrics::ndcg_at(o.rank, k);
        }
        mrr += metrics::reciprocal_rank(o.rank);
        let ten = &o.served[..o.served.len().min(10)];
        div += metrics::intra_list_diversity(ten, |i| emb.row(i as usize));
        for s in &o.sources[..o.sources.len().min(kcov)] {
            *sources.entry(s.clone()).or_default() += 1.0;
        }
        latencies.extend(&o.latencies);
        re_served += o.re_served;
    }
    let total: f64 = sources.values().sum();
    for v in sources.values_mut() {
        *v /= total.max(1.0);
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let coverage = metrics::coverage(
        outcomes
            .iter()
            .map(|o| &o.served[..o.served.len().min(kcov)]),
        n,
    );
    MethodResult {
        method: "engine".to_owned(),
        via: "Engine::feed".to_owned(),
        hr: ks.iter().zip(&hr).map(|(&k, v)| (k, v / users)).collect(),
        ndcg: ks.iter().zip(&ndcg).map(|(&k, v)| (k, v / users)).collect(),
        mrr: mrr / users,
        coverage,
        diversity: div / users,
        users: outcomes.len(),
        seconds: wall.as_secs_f64(),
        served: Some(Served {
            requests: latencies.len(),
            requests_per_s: latencies.len() as f64 / wall.as_secs_f64().max(1e-9),
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            sources,
            re_served_history: re_served,
            load_seconds: replay.load_seconds,
            time_mapping: TIME_MAPPING,
        }),
        training: None,
    }
}

/// Builds the replay engine from `train`, serves every case and scores the pages.
pub fn run(
    config: Config,
    cat: &Catalogue,
    train: &[Sequence],
    cases: &[Case],
    ks: &[usize],
    emb: &Embeddings,
    cache: Option<&Path>,
) -> anyhow::Result<MethodResult> {
    let replay = build_cached(config, cat, train, cache)?;
    eprintln!(
        "replay engine loaded in {:.1}s ({} videos indexed)",
        replay.load_seconds,
        replay.engine.indexed_videos()
    );
    serve_and_score(&replay, cases, ks, emb, cat.len())
}

/// Items each case is served: [`DEPTH`], or the largest cut-off when it is deeper.
pub fn depth_for(ks: &[usize]) -> usize {
    ks.iter().copied().max().unwrap_or(10).max(DEPTH)
}

/// Serves every case through `replay` as deep as `ks` needs and scores the pages over a
/// catalogue of `n` items.
pub fn serve_and_score(
    replay: &ReplayEngine,
    cases: &[Case],
    ks: &[usize],
    emb: &Embeddings,
    n: usize,
) -> anyhow::Result<MethodResult> {
    let (outcomes, wall) = serve(replay, cases, depth_for(ks))?;
    Ok(score(replay, &outcomes, wall, n, ks, emb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_titles_are_cut_at_a_character_boundary() {
        assert_eq!(caption("short"), "short");
        let long = "é".repeat(MAX_CAPTION_LEN);
        let cut = caption(&long);
        assert!(cut.len() <= MAX_CAPTION_LEN && cut.len() >= MAX_CAPTION_LEN - 1);
        assert!(long.starts_with(&cut));
    }
}

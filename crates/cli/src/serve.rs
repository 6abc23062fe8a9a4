//! `steerfeed serve`: the sidecar on `server.bind`, loading the engine (and a demo
//! catalog into an empty store) while it already answers `/healthz` and `/readyz`; on
//! SIGHUP it reloads the API keys (`server.api_keys_file`); on SIGTERM or Ctrl-C it
//! drains, saves the vector index and flushes the store.

use anyhow::Context;
use steerfeed::Engine;
use steerfeed::demo::load_world;
use steerfeed::world::{World, WorldConfig};
use steerfeed_server::app;
use steerfeed_server::keys::Scope;
use steerfeed_server::listen::{ConnLimits, serve as listen};
use steerfeed_server::{AppState, SidecarConfig};

/// Arguments of `steerfeed serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// When the store holds no video yet, load a seeded synthetic demo catalog (users,
    /// follows, consent, videos with clustered embeddings and topics, events).
    #[arg(long)]
    demo: bool,
    /// Videos in the demo catalog.
    #[arg(long, default_value_t = 3_000)]
    demo_videos: usize,
    /// Users in the demo catalog.
    #[arg(long, default_value_t = 500)]
    demo_users: usize,
    /// Keep the world's clustered synthetic embeddings instead of embedding the demo
    /// captions with the language model (faster for large demo catalogs).
    #[arg(long)]
    demo_synthetic_embeddings: bool,
    /// Seed of the demo catalog.
    #[arg(long, default_value_t = 42)]
    demo_seed: u64,
}

/// Loads the demo world into an empty store.
fn load_demo(engine: &Engine, args: &ServeArgs) -> anyhow::Result<()> {
    if !args.demo || engine.store().video_count() > 0 {
        return Ok(());
    }
    tracing::info!(
        videos = args.demo_videos,
        users = args.demo_users,
        seed = args.demo_seed,
        "empty store: loading the demo catalog"
    );
    let mut world = World::generate(WorldConfig::new(
        args.demo_seed,
        args.demo_users,
        args.demo_videos,
    ));
    if !args.demo_synthetic_embeddings {
        tracing::info!(videos = world.videos.len(), "embedding the demo captions");
        let encoder = engine.parser().encoder().clone();
        world
            .reembed(64, |texts| encoder.embed_batch(texts))
            .context("embedding the demo captions")?;
    }
    let report = load_world(engine, &world, 1_000).context("loading the demo catalog")?;
    // The catalog arrived through the upsert path, faster than graphs build: wait for
    // the last compaction, so the sidecar is ready with every video in the graph (a
    // restart later serves at once and compacts in the background instead).
    engine.settle_index();
    engine.checkpoint().context("saving the index")?;
    tracing::info!(?report, "demo catalog loaded (users u0.., videos v0..)");
    Ok(())
}

/// Work started once the engine serves (the shared backend's index snapshots).
type Job = Box<dyn FnOnce(std::sync::Arc<Engine>) + Send>;

/// The engine on the embedded store, or on the shared backend when `[shared]` names its
/// servers (its mirror caught up with both logs before this returns, so the sidecar is
/// ready only then).
fn open_engine(config: &SidecarConfig) -> anyhow::Result<(Engine, Option<Job>)> {
    if !config.shared.enabled() {
        return Ok((Engine::open(config.engine.clone())?, None));
    }
    #[cfg(feature = "shared")]
    {
        open_shared(&config.engine, &config.shared)
    }
    #[cfg(not(feature = "shared"))]
    anyhow::bail!(
        "[shared] names servers, but this steerfeed was built without the shared backend: \
         cargo build --release -p steerfeed-cli --features shared"
    )
}

/// The engine a command that works on the store opens (`logs export`, `train`, `users`,
/// `import`, `export`...): on the embedded store, which no sidecar may hold, or with
/// `[shared]` on the shared backend, as a process of the deployment of its own whose
/// index lives in a temporary directory (taken from the newest index snapshot when
/// there is one), so the replicas' files are left alone.
pub struct ToolEngine {
    engine: Engine,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for ToolEngine {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.engine
    }
}

/// Opens a [`ToolEngine`].
pub fn open_tool(
    engine: steerfeed::Config,
    shared: &steerfeed_server::config::SharedConfig,
) -> anyhow::Result<ToolEngine> {
    if !shared.enabled() {
        let path = engine.store.path.clone();
        let engine = Engine::open(engine).with_context(|| {
            format!(
                "opening the store at {} (a running sidecar holds it: stop it, or pass --url to work through it)",
                path.display()
            )
        })?;
        return Ok(ToolEngine { engine, _dir: None });
    }
    #[cfg(feature = "shared")]
    {
        let dir = tempfile::Builder::new()
            .prefix("steerfeed-tool-")
            .tempdir()
            .context("a temporary directory for the index")?;
        let mut engine = engine;
        engine.store.path = dir.path().to_path_buf();
        // Without the snapshot loop: this process never leads nor trims.
        let (engine, _snapshot_loop) = open_shared(&engine, shared)?;
        Ok(ToolEngine {
            engine,
            _dir: Some(dir),
        })
    }
    #[cfg(not(feature = "shared"))]
    anyhow::bail!(
        "[shared] names servers, but this steerfeed was built without the shared backend: \
         cargo build --release -p steerfeed-cli --features shared"
    )
}

/// `steerfeed bench feed --shared`: the benchmark on the shared backend, each engine it
/// opens a process of one new namespace (on the servers `[shared]` names, or on
/// throwaway ones started for the run).
pub fn bench_feed_shared(
    config: &SidecarConfig,
    args: &steerfeed_eval::bench_feed::FeedArgs,
) -> anyhow::Result<steerfeed_eval::bench_feed::FeedReport> {
    #[cfg(feature = "shared")]
    {
        let (postgres_url, nats_url, redis_url, redis_cluster) = if config.shared.enabled() {
            let c = &config.shared;
            (
                c.postgres_url.clone(),
                c.nats_url.clone(),
                c.redis_url.clone(),
                c.redis_cluster,
            )
        } else {
            let s = steerfeed_shared::servers::Servers::shared().map_err(anyhow::Error::msg)?;
            eprintln!(
                "bench feed: throwaway servers: {}, {} and {}",
                s.postgres_url, s.nats_url, s.redis_url
            );
            (
                s.postgres_url.clone(),
                s.nats_url.clone(),
                s.redis_url.clone(),
                false,
            )
        };
        let namespace = steerfeed_shared::servers::Servers::namespace("bench");
        let dim = std::cell::Cell::new(0);
        let open = |engine: steerfeed::Config| -> anyhow::Result<Engine> {
            let parser = steerfeed::open_parser(&engine)?;
            dim.set(parser.encoder().dim());
            let store = steerfeed_shared::SharedStore::open(steerfeed_shared::SharedOptions {
                postgres_url: postgres_url.clone(),
                nats_url: nats_url.clone(),
                redis_url: redis_url.clone(),
                redis_cluster,
                namespace: namespace.clone(),
                store: steerfeed::store::StoreOptions {
                    dim: parser.encoder().dim(),
                    ..engine.store.options
                },
                timeout: std::time::Duration::from_millis(config.shared.timeout_ms),
                mirror_snapshots: None,
            })?;
            Ok(Engine::open_with(engine, std::sync::Arc::new(store))?)
        };
        let mut args = args.clone();
        args.fresh = true;
        if args.cache_dir.is_none() {
            args.cache_dir = Some(std::env::temp_dir().join(format!("steerfeed-{namespace}")));
        }
        let mut report = steerfeed_eval::bench_feed::run_with(config.engine.clone(), &args, &open)?;
        // A mirror replayed from both logs' beginnings, then one from its snapshot.
        let snapshots = std::env::temp_dir().join(format!("steerfeed-{namespace}-mirrors"));
        let options = || steerfeed_shared::SharedOptions {
            redis_cluster,
            timeout: std::time::Duration::from_millis(config.shared.timeout_ms),
            mirror_snapshots: Some(snapshots.clone()),
            ..steerfeed_shared::SharedOptions::new(
                &postgres_url,
                &nats_url,
                &redis_url,
                &namespace,
                steerfeed::store::StoreOptions {
                    dim: dim.get(),
                    ..config.engine.store.options
                },
            )
        };
        eprintln!(
            "bench feed: a mirror replayed from both logs, then, with the logs trimmed, one from a snapshot"
        );
        let started = std::time::Instant::now();
        let replayed = steerfeed_shared::SharedStore::open(options())?;
        let replay_ms = ms(started);
        let started = std::time::Instant::now();
        let saved = replayed.save_mirror()?;
        let snapshot_ms = ms(started);
        // Nothing else reads the logs meanwhile: no process is waited for.
        let started = std::time::Instant::now();
        let trimmed = replayed
            .trim_logs(std::time::Duration::ZERO, steerfeed_shared::Trim::Both)?
            .context("no mirror snapshot to trim to")?;
        let trim_ms = ms(started);
        drop(replayed);
        let started = std::time::Instant::now();
        let restored = steerfeed_shared::SharedStore::open(options())?;
        let from_snapshot_ms = ms(started);
        anyhow::ensure!(
            restored.started_from() == Some(saved.position),
            "the mirror did not start from the snapshot just written"
        );
        report.mirror_start = Some(steerfeed_eval::bench_feed::MirrorStart {
            replay_ms,
            snapshot_ms,
            snapshot_bytes: saved.bytes,
            snapshot_held_ms: saved.held_ms,
            trim_ms,
            changes_trimmed: trimmed.changes,
            messages_trimmed: trimmed.messages,
            from_snapshot_ms,
        });
        drop(restored);
        std::fs::remove_dir_all(&snapshots)?;
        Ok(report)
    }
    #[cfg(not(feature = "shared"))]
    {
        let _ = (config, args);
        anyhow::bail!(
            "--shared needs the shared backend: cargo build --release -p steerfeed-cli --features shared"
        )
    }
}

#[cfg(feature = "shared")]
fn ms(since: std::time::Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[cfg(feature = "shared")]
fn open_shared(
    engine: &steerfeed::Config,
    shared: &steerfeed_server::config::SharedConfig,
) -> anyhow::Result<(Engine, Option<Job>)> {
    use std::sync::Arc;
    use steerfeed::storage::Storage;

    let parser = steerfeed::open_parser(engine)?;
    let store = Arc::new(
        steerfeed_shared::SharedStore::open(steerfeed_shared::SharedOptions {
            postgres_url: shared.postgres_url.clone(),
            nats_url: shared.nats_url.clone(),
            redis_url: shared.redis_url.clone(),
            redis_cluster: shared.redis_cluster,
            namespace: shared.namespace.clone(),
            store: steerfeed::store::StoreOptions {
                dim: parser.encoder().dim(),
                ..engine.store.options
            },
            timeout: std::time::Duration::from_millis(shared.timeout_ms),
            mirror_snapshots: (!shared.snapshot_dir.is_empty()
                && shared.mirror_snapshot_interval_s > 0)
                .then(|| std::path::PathBuf::from(&shared.snapshot_dir)),
        })
        .context("opening the shared backend")?,
    );
    tracing::info!(
        namespace = %shared.namespace,
        applied = ?store.applied(),
        started_from = ?store.started_from(),
        "shared backend: mirror caught up"
    );
    let snapshots = (!shared.snapshot_dir.is_empty())
        .then(|| {
            steerfeed_shared::snapshots::Snapshots::open(
                std::path::Path::new(&shared.snapshot_dir),
                &shared.namespace,
            )
        })
        .transpose()?;
    let mut installed = None;
    if let Some(snapshots) = &snapshots {
        let file = engine.store.path.join(steerfeed::INDEX_FILE);
        installed = snapshots.install(&file, store.catalog_version())?;
        if let Some(stamp) = installed {
            tracing::info!(
                catalog_version = stamp.version,
                "index snapshot taken as this replica's index"
            );
        }
    }
    let engine = Engine::open_with(engine.clone(), store.clone())?;
    if let Some(snapshots) = &snapshots {
        // Before the engine's first index save (its saver waits a second first).
        keep_log_for_snapshots(&store, &engine, snapshots);
    }
    let every = Every {
        index: std::time::Duration::from_secs(shared.snapshot_interval_s),
        mirror: (shared.mirror_snapshot_interval_s > 0)
            .then(|| std::time::Duration::from_secs(shared.mirror_snapshot_interval_s)),
        trim: match shared.trim_logs {
            steerfeed_server::config::TrimLogs::None => None,
            steerfeed_server::config::TrimLogs::Stream => Some(steerfeed_shared::Trim::Stream),
            steerfeed_server::config::TrimLogs::Both => Some(steerfeed_shared::Trim::Both),
        },
    };
    let job: Job = Box::new(move |engine: Arc<Engine>| {
        let watched = store.clone();
        let spawned = std::thread::Builder::new()
            .name("restart-watch".into())
            .spawn(move || watch_for_restart(&watched));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the thread that watches for a restart");
        }
        if let Some(snapshots) = snapshots {
            let spawned = std::thread::Builder::new()
                .name("index-snapshots".into())
                .spawn(move || snapshot_loop(&store, &engine, &snapshots, every, installed));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the index snapshot thread");
            }
        }
    });
    Ok((engine, Some(job)))
}

/// Exits with [`EXIT_RESTART`] within [`TICK`] of the store finding that it must be
/// started again (whatever call found it: a feed, a write, a catch-up), so that a
/// replica answering 503 to everything does not stay up.
#[cfg(feature = "shared")]
fn watch_for_restart(store: &steerfeed_shared::SharedStore) {
    loop {
        std::thread::sleep(TICK);
        if store.must_restart() {
            // It answers 503 to everything from now on; a new process starts afresh
            // from the newest mirror snapshot.
            tracing::error!(
                "this replica's mirror can no longer follow the logs: exiting so that it is started again"
            );
            std::process::exit(EXIT_RESTART);
        }
    }
}

/// Every `interval`: while this replica leads the deployment, writes a snapshot of its
/// index when the catalogue moved or the graph changed since the last one; otherwise
/// takes a snapshot newer than the last it took (`adopted`, the one it started from) as
/// its index, while serving, so that its graph follows the leader's rebuilds, and leaves
/// the graph work to the leader meanwhile (its own folds and rebuilds wait for far
/// higher thresholds, which only a replica whose snapshots stopped coming, or whose
/// uploads outrun them, reaches).
/// While leading, it also writes a snapshot of its mirror when `every.mirror` has passed
/// since its last and the logs moved, then trims the logs.
/// Between those looks it catches up every [`TICK`] at most (so that it reports where its
/// mirror stands), and a leader writes a mirror snapshot at once when there is none, or
/// an erasure left none newer than itself.
#[cfg(feature = "shared")]
fn snapshot_loop(
    store: &steerfeed_shared::SharedStore,
    engine: &Engine,
    snapshots: &steerfeed_shared::snapshots::Snapshots,
    every: Every,
    mut adopted: Option<steerfeed_shared::snapshots::Stamp>,
) {
    use steerfeed::storage::Storage;

    let interval = every.index;
    let mut last = None;
    let mut mirror = MirrorSchedule::default();
    // Whether this replica leads is known before the catch-ups below add to its index.
    let mut leads = false;
    if let Ok(lead) = store.try_lead() {
        engine.leave_index_work_to_snapshots(!lead);
        leads = lead;
    }
    let tick = interval.min(TICK);
    let mut look = std::time::Instant::now() + interval;
    loop {
        std::thread::sleep(tick);
        // A replica that serves nothing applies the logs only here: what it snapshots,
        // or the snapshots it can take, follow the version it has applied.
        if let Err(e) = engine.catch_up() {
            // One that leaves the process unable to go on is `watch_for_restart`'s.
            tracing::warn!(error = %e, "index snapshots: cannot catch up");
            continue;
        }
        if std::time::Instant::now() < look {
            // Only the replica that led at the last look, and one snapshot in a while at
            // most (erasures in a row, or a disk that refuses it, must not make it copy
            // its store on every tick).
            if every.mirror.is_some()
                && leads
                && mirror.may_retry()
                && store.mirror_snapshot_missing()
                && store.try_lead().unwrap_or(false)
            {
                mirror.write_and_trim(store, every.trim);
            }
            continue;
        }
        look = std::time::Instant::now() + interval;
        let newest = keep_log_for_snapshots(store, engine, snapshots);
        let lead = store.try_lead();
        leads = matches!(lead, Ok(true));
        match lead {
            Ok(true) => engine.leave_index_work_to_snapshots(false),
            Ok(false) => {
                engine.leave_index_work_to_snapshots(true);
                adopted = adopt_newer_snapshot(engine, newest, adopted);
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether this replica leads");
                continue;
            }
        }
        if let Some(period) = every.mirror
            && mirror.due(store, period)
        {
            mirror.write_and_trim(store, every.trim);
        }
        // The catalogue moved, or this index was rebuilt or folded since the last.
        let stats = engine.index_stats();
        let now = (store.catalog_version(), stats.compactions + stats.folded);
        if last == Some(now) {
            continue;
        }
        let written = snapshots.publish(|path| {
            Ok(steerfeed_shared::snapshots::Stamp {
                version: engine.snapshot_index(path)?,
                changes: now.1,
            })
        });
        match written {
            Ok(stamp) => {
                tracing::info!(
                    catalog_version = stamp.version,
                    graph_changes = stamp.changes,
                    "index snapshot written"
                );
                last = Some(now);
                adopted = Some(stamp);
            }
            Err(e) => tracing::error!(error = %e, "index snapshot not written"),
        }
    }
}

/// How often at most the snapshot loop catches up between its looks: a replica reports
/// where its mirror stands as it catches up.
#[cfg(feature = "shared")]
const TICK: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the leader waits, between its looks, before it writes another mirror snapshot
/// because none is newer than the last erasure.
#[cfg(feature = "shared")]
const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// How lately a replica must have reported where its mirror stands for a trim of the
/// logs to leave what it still needs: replicas report at least every [`TICK`] and as
/// they serve.
#[cfg(feature = "shared")]
const LIVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(300);

/// The exit status of a replica whose mirror can no longer follow the logs
/// (`EX_TEMPFAIL`): it fell behind what they keep, or it holds what they may not (a
/// write whose commit failed, a logged change or batch it could not apply). Started
/// again, it builds its mirror afresh (from the newest mirror snapshot, when there is
/// one).
#[cfg(feature = "shared")]
const EXIT_RESTART: i32 = 75;

/// How often the snapshot loop looks, and writes mirror snapshots (`None`: never), and
/// whether it trims the logs after each.
#[cfg(feature = "shared")]
#[derive(Clone, Copy)]
struct Every {
    index: std::time::Duration,
    mirror: Option<std::time::Duration>,
    trim: Option<steerfeed_shared::Trim>,
}

/// The leader's last mirror snapshot: when, and the log positions it held; and when it
/// last tried to write one.
#[cfg(feature = "shared")]
#[derive(Default)]
struct MirrorSchedule {
    last: Option<(std::time::Instant, (u64, u64))>,
    tried: Option<std::time::Instant>,
}

#[cfg(feature = "shared")]
impl MirrorSchedule {
    /// True when `period` has passed since the last snapshot (or there was none) and the
    /// logs moved since, or when none is newer than the last erasure.
    fn due(&self, store: &steerfeed_shared::SharedStore, period: std::time::Duration) -> bool {
        let now = store.applied();
        // None left (an erasure removes the older ones): a replica starting now would
        // find none, so one is due at once.
        store.mirror_snapshot_missing()
            || self
                .last
                .is_none_or(|(at, held)| at.elapsed() >= period && held != now)
    }

    /// True when the last try to write a snapshot is at least [`RETRY_AFTER`] old.
    fn may_retry(&self) -> bool {
        self.tried.is_none_or(|t| t.elapsed() >= RETRY_AFTER)
    }

    /// Writes a snapshot of the mirror, then trims the logs as `trim` says.
    fn write_and_trim(
        &mut self,
        store: &steerfeed_shared::SharedStore,
        trim: Option<steerfeed_shared::Trim>,
    ) {
        self.tried = Some(std::time::Instant::now());
        match store.save_mirror() {
            Ok(saved) => {
                let p = saved.position;
                self.last = Some((std::time::Instant::now(), (p.version, p.seq)));
            }
            Err(e) => return tracing::error!(error = %e, "mirror snapshot not written"),
        }
        if let Some(which) = trim
            && let Err(e) = store.trim_logs(LIVE_WITHIN, which)
        {
            tracing::error!(error = %e, "logs not trimmed");
        }
    }
}

/// Keeps this replica's catalogue log reaching back to the newest snapshot at most its
/// catalogue version (the one it would swap in). That snapshot is often older than the
/// replica's own index, which goes on taking writes between the leader's snapshots, and
/// the replica's own index saves would otherwise trim the log up to their newer version.
/// A later snapshot has this version or a higher one (one leader's snapshots only move
/// forward), so the log reaches back to every snapshot still to come. Snapshots all
/// beyond the replica's version (or none) hold nothing back: its saves are below them.
/// Answers that snapshot (`None` too when the directory cannot be listed).
#[cfg(feature = "shared")]
fn keep_log_for_snapshots(
    store: &steerfeed_shared::SharedStore,
    engine: &Engine,
    snapshots: &steerfeed_shared::snapshots::Snapshots,
) -> Option<(steerfeed_shared::snapshots::Stamp, std::path::PathBuf)> {
    use steerfeed::storage::Storage;

    match snapshots.newest_at_most(store.catalog_version()) {
        Ok(newest) => {
            let version = newest.as_ref().map_or(u64::MAX, |(stamp, _)| stamp.version);
            engine.keep_catalog_log_from(version);
            newest
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the index snapshots");
            None
        }
    }
}

/// Takes `newest`, the newest snapshot at most this replica's catalogue version (from
/// [`keep_log_for_snapshots`]), when it is newer than `adopted` and this replica's
/// catalogue log still reaches back to it (it does, unless a new leader's snapshots
/// restarted below the last one's); answers the snapshot now adopted (or tried: one
/// that cannot be taken is not tried again, unless a server was unavailable).
#[cfg(feature = "shared")]
fn adopt_newer_snapshot(
    engine: &Engine,
    newest: Option<(steerfeed_shared::snapshots::Stamp, std::path::PathBuf)>,
    adopted: Option<steerfeed_shared::snapshots::Stamp>,
) -> Option<steerfeed_shared::snapshots::Stamp> {
    let Some(newest) = newest.filter(|(stamp, _)| adopted.is_none_or(|a| *stamp > a)) else {
        return adopted;
    };
    match engine.catalog_log_reaches(newest.0.version) {
        Ok(true) => {}
        Ok(false) => return adopted,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the catalogue log");
            return adopted;
        }
    }
    let replica_version = engine.index_catalog_version();
    let started = std::time::Instant::now();
    match engine.adopt_index_file(&newest.1) {
        Ok(Some(_)) => {
            let stats = engine.index_stats();
            tracing::info!(
                catalog_version = newest.0.version,
                replica_version,
                graph_changes = newest.0.changes,
                graph_nodes = stats.graph_nodes,
                live_segment = stats.live_segment,
                ms = started.elapsed().as_millis() as u64,
                "index snapshot swapped in"
            );
            Some(newest.0)
        }
        // A compaction of this replica's index runs: next time.
        Ok(None) => adopted,
        Err(e) => {
            tracing::warn!(error = %e, snapshot = %newest.1.display(), "index snapshot not swapped in");
            match e.class() {
                steerfeed::ErrorClass::Unavailable => adopted,
                _ => Some(newest.0),
            }
        }
    }
}

/// What to try once the demo sidecar is ready.
fn print_demo_help(config: &SidecarConfig) {
    let auth = config
        .server
        .api_keys
        .first()
        .map(|k| format!(" -H 'authorization: Bearer {k}'"))
        .unwrap_or_default();
    let base = format!("http://{}", config.server.bind);
    let json = " -H 'content-type: application/json'";
    println!(
        "\nsteerfeed is ready on {base} (demo users u0..., videos v0...).\n\
         Try:\n\
         \x20 curl -s{auth}{json} -X PUT {base}/v1/users/u1/preferences -d '{{\"text\": \"more cooking, no politics\"}}'\n\
         \x20 curl -s{auth}{json} -X POST {base}/v1/feed -d '{{\"user\": \"u1\", \"limit\": 5}}'\n\
         \x20 curl -s{auth}{json} -X POST {base}/v1/users/u7/consent/revocations -d '{{\"video\": \"v42\"}}'\n"
    );
}

pub async fn serve(config: SidecarConfig, args: ServeArgs) -> anyhow::Result<()> {
    let bind = config.server.bind;
    // A key file that is missing or does not parse stops the server here.
    let state = AppState::try_new(config.clone()).context("loading the API keys")?;
    let keys = state.keys();
    if keys.required() {
        tracing::info!(
            keys = keys.len(),
            feed = keys.count(Scope::Feed),
            write = keys.count(Scope::Write),
            admin = keys.count(Scope::Admin),
            file = ?config.server.api_keys_file,
            "API keys loaded"
        );
    } else {
        tracing::warn!("no API keys configured: auth is off (loopback only)");
    }
    #[cfg(unix)]
    tokio::spawn(steerfeed_server::listen::reload_keys_on_hangup(
        state.clone(),
    ));
    tokio::spawn(steerfeed_server::sample_metrics_every(state.clone()));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    tracing::info!(%bind, "listening; loading the engine");

    let loader = {
        let state = state.clone();
        let demo_config = config.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let (engine, job) = open_engine(&config).context("opening the engine")?;
            load_demo(&engine, &args)?;
            state.set_engine(engine);
            if let (Some(job), Some(engine)) = (job, state.engine()) {
                job(std::sync::Arc::clone(engine));
            }
            if args.demo {
                print_demo_help(&demo_config);
            }
            tracing::info!("engine loaded; ready");
            Ok(())
        })
    };
    let limits = ConnLimits::from_config(&state.config().server);
    let mut server = tokio::spawn(listen(
        listener,
        app(state.clone()),
        limits,
        shutdown_signal(),
    ));
    tokio::select! {
        served = &mut server => {
            // A shutdown signal arrived while the engine was loading.
            served.context("server task")?.context("serving")?;
            tracing::info!("shut down before the engine was loaded");
            return Ok(());
        }
        loaded = loader => {
            let loaded = loaded.context("engine loader panicked").and_then(|r| r);
            if let Err(e) = loaded {
                server.abort();
                return Err(e);
            }
        }
    }
    server.await.context("server task")?.context("serving")?;
    if let Some(engine) = state.engine() {
        engine
            .checkpoint()
            .context("saving the index at shutdown")?;
        engine
            .store()
            .flush()
            .context("flushing the store at shutdown")?;
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

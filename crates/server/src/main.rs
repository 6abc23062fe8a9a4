//! The `steerfeed` command: `serve` runs the HTTP ranking sidecar; `config` prints the
//! effective configuration; `bench ann` and `bench feed` are the benchmarks; `prefs` parses
//! and scores preferences; `eval` is the offline evaluation harness.

#![allow(clippy::print_stdout)] // a command line prints

use std::future::IntoFuture;
use std::path::PathBuf;

use anyhow::Context;

mod bench_cmd;
mod prefs_cmd;
use clap::{Parser, Subcommand};
use steerfeed::demo::load_world;
use steerfeed::world::{World, WorldConfig};
use steerfeed::{Config, Engine};
use steerfeed_server::{AppState, app};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// mimalloc instead of the system allocator: sled allocates and frees a node copy on
/// every write, and glibc's allocator spent about a third of the ingest thread on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "steerfeed",
    version,
    about = "Feed ranking for AI-video social apps"
)]
struct Cli {
    /// Configuration file (TOML), layered over the defaults and under STEERFEED__* variables.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP ranking sidecar.
    Serve(ServeArgs),
    /// Print the effective configuration (defaults, file and environment merged).
    Config,
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Natural-language preferences.
    #[command(subcommand)]
    Prefs(PrefsCommand),
    /// The offline evaluation harness.
    #[command(subcommand)]
    Eval(EvalCommand),
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Leave-last-out replay on MicroLens: the engine against its baselines.
    Microlens(Box<steerfeed_eval::microlens::Args>),
    /// Closed-loop sessions on a seeded synthetic world through the real engine.
    Simulate(Box<steerfeed_eval::sim::Args>),
    /// Runs the evaluations and writes JSON, a Markdown report and PNG plots to a folder.
    Report(Box<steerfeed_eval::report::Args>),
}

/// Arguments of `steerfeed serve`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
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

#[derive(Subcommand)]
enum PrefsCommand {
    /// Print the Constraints JSON of a text (or of each line of --jsonl FILE).
    Parse(prefs_cmd::ParseArgs),
    /// Score the parser on labelled lines: micro precision, recall, F1 and exact match.
    Eval(prefs_cmd::EvalArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// ANN recall, QPS, build time and size on TEXMEX files or a synthetic set.
    Ann(Box<bench_cmd::AnnArgs>),
    /// The engine end to end on a seeded world: build (cached), ingest and feed latency.
    Feed(Box<steerfeed_server::bench_feed::FeedArgs>),
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Config => {
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Bench(BenchCommand::Ann(args)) => {
            init_tracing(&config);
            bench_cmd::ann(*args)
        }
        Command::Bench(BenchCommand::Feed(args)) => {
            init_tracing(&config);
            let report = steerfeed_server::bench_feed::run(config, &args)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Prefs(PrefsCommand::Parse(args)) => prefs_cmd::parse(config, args),
        Command::Prefs(PrefsCommand::Eval(args)) => prefs_cmd::eval(config, args),
        Command::Eval(cmd) => {
            init_tracing(&config);
            match cmd {
                EvalCommand::Microlens(args) => steerfeed_eval::microlens::run(config, &args),
                EvalCommand::Simulate(args) => steerfeed_eval::sim::run(config, &args),
                EvalCommand::Report(args) => steerfeed_eval::report::run(config, &args),
            }
        }
        Command::Serve(args) => {
            init_tracing(&config);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(serve(config, args))
        }
    }
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

/// What to try once the demo sidecar is ready.
fn print_demo_help(config: &Config) {
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

async fn serve(config: Config, args: ServeArgs) -> anyhow::Result<()> {
    let bind = config.server.bind;
    let state = AppState::new(config.clone());
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    tracing::info!(%bind, "listening; loading the engine");

    let loader = {
        let state = state.clone();
        let demo_config = config.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let engine = Engine::open(config).context("opening the engine")?;
            load_demo(&engine, &args)?;
            state.set_engine(engine);
            if args.demo {
                print_demo_help(&demo_config);
            }
            tracing::info!("engine loaded; ready");
            Ok(())
        })
    };
    let mut server = tokio::spawn(
        axum::serve(listener, app(state.clone()))
            .with_graceful_shutdown(shutdown_signal())
            .into_future(),
    );
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

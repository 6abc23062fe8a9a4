//! The `steerfeed` command: `serve` runs the HTTP ranking sidecar; `config` prints the
//! effective configuration; `bench ann` and `bench feed` are the benchmarks; `prefs` parses
//! and scores preferences; `eval` is the offline evaluation harness; `users` erases or
//! exports a person on a stopped store; `import` and `export` move records in and out.

#![allow(clippy::print_stdout)] // a command line prints

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

#[cfg(feature = "learn")]
mod learn;
mod logs;
mod remote;
mod serve;
mod transfer;

use clap::{Parser, Subcommand};
use steerfeed_eval::{ann_bench, bench_feed, prefs};
use steerfeed_server::SidecarConfig;
use steerfeed_server::config::{LogConfig, LogFormat};
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
    Serve(serve::ServeArgs),
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
    /// A person's data on the configured store, with the sidecar stopped: erase or export.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Imports records (JSON Lines or CSV) into the stopped store, or through a running
    /// sidecar with --url: streaming, idempotent and resumable.
    Import(Box<transfer::ImportArgs>),
    /// Exports records (JSON Lines or CSV) from the stopped store, or from a running
    /// sidecar with --url.
    Export(Box<transfer::ExportArgs>),
    /// Writes a backup (store, vector index, erasure log, checksummed) into a new
    /// directory: of the stopped store, or of a running sidecar's with --url (the
    /// directory is then on the sidecar's machine).
    Backup {
        /// The new directory.
        dir: PathBuf,
        #[command(flatten)]
        remote: remote::Remote,
    },
    /// The impression log of the stopped store: every served item, why it was served,
    /// and what its viewer did next.
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Fits the action heads from the impression log (of the stopped store, or of a
    /// `steerfeed logs export` file): writes a checksummed model file and prints a
    /// report of its quality against the heads in force on the latest served items.
    #[cfg(feature = "learn")]
    Train(Box<learn::TrainArgs>),
    /// The model of the action heads: check a file, or show, set or roll back the one a
    /// running sidecar serves (--url).
    #[cfg(feature = "learn")]
    #[command(subcommand)]
    Model(learn::ModelCommand),
    /// Restores a backup into the configured store path, which must be empty or absent:
    /// checks every file, then carries out the erasures made after the backup.
    Restore {
        /// The backup's directory.
        backup: PathBuf,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Erases a person, as `DELETE /v1/users/{id}` does; prints what was erased.
    Erase {
        /// The person's id.
        id: String,
        /// What happens to the videos they made.
        #[arg(long, value_parser = ["delete", "keep"])]
        videos: String,
    },
    /// Prints everything stored about a person, one JSON record a line (the format of
    /// `GET /v1/users/{id}/export` and of bulk exports).
    Export {
        /// The person's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum LogsCommand {
    /// Writes every item served since a time with its outcomes (the viewer's events
    /// about it within `[learning] outcome_window_s`), one JSON object a line.
    Export(logs::ExportArgs),
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Leave-last-out replay on MicroLens: the engine against its baselines.
    Microlens(Box<steerfeed_eval::microlens::Args>),
    /// Closed-loop sessions on a seeded synthetic world through the real engine.
    Simulate(Box<steerfeed_eval::sim::Args>),
    /// Closes the learning loop in the simulator: run with the configured heads, train
    /// on the engine's impression log, run again with the trained model, over seeds.
    #[cfg(feature = "learn")]
    Loop(Box<steerfeed_eval::closed_loop::Args>),
    /// Estimates from the impression log what another exploration rate (or a profile
    /// that differs only by it, or the profile the pages were served beside as their
    /// `[learning] shadow`) would earn, per explorable slot or page by page:
    /// self-normalised inverse propensity scoring over the slots that could explore.
    Offpolicy(Box<steerfeed_eval::offpolicy::Args>),
    /// Runs the evaluations and writes JSON, a Markdown report and PNG plots to a folder.
    Report(Box<steerfeed_eval::report::Args>),
}

#[derive(Subcommand)]
enum PrefsCommand {
    /// Print the Constraints JSON of a text (or of each line of --jsonl FILE).
    Parse(prefs::ParseArgs),
    /// Score the parser on labelled lines: micro precision, recall, F1 and exact match.
    Eval(prefs::EvalArgs),
    /// Fit the learned reader's heads on the corpus's train split (deterministic).
    Train(prefs::TrainArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// ANN recall, QPS, build time and size on TEXMEX files or a synthetic set.
    Ann(Box<ann_bench::AnnArgs>),
    /// The engine end to end on a seeded world: build (cached), ingest and feed latency.
    Feed(Box<bench_feed::FeedArgs>),
    /// `steerfeed train`'s fitting on a generated impression log with known truth: time,
    /// calibration and coefficient recovery.
    #[cfg(feature = "learn")]
    Train(learn::BenchTrainArgs),
}

fn init_tracing(log: &LogConfig) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match log.format {
        LogFormat::Json => registry.with(layer.json().with_current_span(true)).init(),
        // Colour codes only for a person at a terminal, never into a file or a pipe.
        LogFormat::Text => registry
            .with(layer.with_ansi(std::io::stderr().is_terminal()))
            .init(),
    }
}

/// Runs the command. A reader that stopped reading (`steerfeed export | head`) ends the
/// command quietly and successfully, as it does for other command-line tools; any other
/// error is printed with its causes and exits with 1.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if reader_went_away(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes `text` and a newline to standard output, returning the error a closed pipe
/// gives (`println!` would panic on it).
pub(crate) fn say(text: impl std::fmt::Display) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// True when `e` comes from writing to a pipe whose reader has closed it, directly or
/// through `serde_json` (whose error hides the I/O error from the chain of causes).
fn reader_went_away(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
    })
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sidecar = SidecarConfig::load(cli.config.as_deref())?;
    let config = sidecar.engine.clone();
    match cli.command {
        Command::Config => {
            write!(std::io::stdout().lock(), "{}", sidecar.to_toml())?;
            Ok(())
        }
        Command::Bench(BenchCommand::Ann(args)) => {
            init_tracing(&sidecar.log);
            ann_bench::ann(*args)
        }
        Command::Bench(BenchCommand::Feed(args)) => {
            init_tracing(&sidecar.log);
            let report = if args.shared {
                serve::bench_feed_shared(&sidecar, &args)?
            } else {
                bench_feed::run(config, &args)?
            };
            say(serde_json::to_string_pretty(&report)?)?;
            Ok(())
        }
        #[cfg(feature = "learn")]
        Command::Bench(BenchCommand::Train(args)) => learn::bench_train(&args),
        Command::Prefs(PrefsCommand::Parse(args)) => prefs::parse(config, args),
        Command::Prefs(PrefsCommand::Eval(args)) => prefs::eval(config, args),
        Command::Prefs(PrefsCommand::Train(args)) => prefs::train(config, args),
        Command::Eval(cmd) => {
            init_tracing(&sidecar.log);
            match cmd {
                EvalCommand::Microlens(args) => steerfeed_eval::microlens::run(config, &args),
                EvalCommand::Simulate(args) => steerfeed_eval::sim::run(config, &args),
                #[cfg(feature = "learn")]
                EvalCommand::Loop(args) => steerfeed_eval::closed_loop::run(config, &args),
                EvalCommand::Offpolicy(args) => logs::offpolicy(config, &sidecar.shared, &args),
                EvalCommand::Report(args) => steerfeed_eval::report::run(config, &args),
            }
        }
        Command::Users(cmd) => {
            init_tracing(&sidecar.log);
            users(config, &sidecar.shared, cmd)
        }
        Command::Import(args) => {
            init_tracing(&sidecar.log);
            transfer::import(config, &sidecar.server, &sidecar.shared, &args)
        }
        Command::Export(args) => {
            init_tracing(&sidecar.log);
            transfer::export(config, &sidecar.shared, &args)
        }
        Command::Backup { dir, remote } => {
            init_tracing(&sidecar.log);
            backup(config, &sidecar.shared, &dir, &remote)
        }
        Command::Logs(LogsCommand::Export(args)) => {
            init_tracing(&sidecar.log);
            logs::export(&*open_stopped(config, &sidecar.shared)?, &args)
        }
        #[cfg(feature = "learn")]
        Command::Train(args) => {
            init_tracing(&sidecar.log);
            learn::train(config, &sidecar.shared, &args)
        }
        #[cfg(feature = "learn")]
        Command::Model(cmd) => learn::model(&cmd),
        Command::Restore { backup } => {
            init_tracing(&sidecar.log);
            let report = steerfeed::Engine::restore(&backup, config)?;
            let mut shown = serde_json::to_value(&report)?;
            shown["backup"]["files"] = report.backup.files.len().into();
            say(serde_json::to_string_pretty(&shown)?)?;
            Ok(())
        }
        Command::Serve(args) => {
            init_tracing(&sidecar.log);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(serve::serve(sidecar, args))
        }
    }
}

/// `steerfeed backup`: through the sidecar when `remote` names one, else on the stopped
/// store; prints the manifest (with the number of files rather than their list).
fn backup(
    config: steerfeed::Config,
    shared: &steerfeed_server::config::SharedConfig,
    dir: &std::path::Path,
    remote: &remote::Remote,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let manifest: steerfeed::BackupManifest = match remote.url {
        Some(_) => {
            let dir = std::path::absolute(dir).context("the backup's directory")?;
            remote.post_json(
                "/v1/backups",
                &serde_json::json!({ "dir": dir.display().to_string() }),
            )?
        }
        None => open_stopped(config, shared)?.backup(dir)?,
    };
    let mut shown = serde_json::to_value(&manifest)?;
    shown["files"] = manifest.files.len().into();
    shown["seconds"] = started.elapsed().as_secs_f64().into();
    say(serde_json::to_string_pretty(&shown)?)?;
    Ok(())
}

/// Opens the engine on the configured store, which no sidecar may hold, or on the
/// shared backend `[shared]` names.
fn open_stopped(
    config: steerfeed::Config,
    shared: &steerfeed_server::config::SharedConfig,
) -> anyhow::Result<serve::ToolEngine> {
    serve::open_tool(config, shared)
}

fn users(
    config: steerfeed::Config,
    shared: &steerfeed_server::config::SharedConfig,
    cmd: UsersCommand,
) -> anyhow::Result<()> {
    let engine = open_stopped(config, shared)?;
    match cmd {
        UsersCommand::Erase { id, videos } => {
            let own = match videos.as_str() {
                "delete" => steerfeed::OwnVideos::Delete,
                _ => steerfeed::OwnVideos::Keep,
            };
            let report = engine.erase_user(&steerfeed::UserId::new(id)?, own)?;
            say(serde_json::to_string_pretty(&report)?)?;
        }
        UsersCommand::Export { id } => {
            for record in engine.export_user(&steerfeed::UserId::new(id)?)? {
                say(serde_json::to_string(&record)?)?;
            }
        }
    }
    Ok(())
}

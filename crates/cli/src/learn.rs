//! `steerfeed train` and `steerfeed model`: fitting the action heads from the
//! impression log, and the model a running sidecar serves.

use std::path::PathBuf;

use anyhow::Context;
use steerfeed::Timestamp;
use steerfeed::model::{ModelInfo, RankModel};

use crate::remote::Remote;

/// `steerfeed train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Where to write the model file.
    #[arg(long)]
    pub out: PathBuf,
    /// Train on items served at or after this (an RFC 3339 time, or an age: `30d`).
    #[arg(long, default_value = "30d")]
    pub since: String,
    /// Read served items with outcomes from this file (the JSON lines of `steerfeed
    /// logs export`) instead of the stopped store.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Write the report here (default: standard output).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// The share of served items, the latest, held out for the report.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// L2 penalty on the coefficients.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Train the heads of this rank profile, on the items it served.
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// Fit only these heads (comma-separated, e.g. `like,complete_view`); the others keep
    /// the coefficients in force.
    #[arg(long, value_delimiter = ',')]
    pub heads: Vec<String>,
    /// Trees of the learned second stage (a LambdaMART ranker of the blend, e.g. 100);
    /// 0, the default, trains none, and the model serves the heads alone (in the
    /// simulator the second stage orders held-out pages better and serves less creation
    /// per hour).
    #[arg(long, default_value_t = steerfeed_learn::TrainConfig::default().ranker_rounds)]
    pub ranker_rounds: usize,
    /// Candidates the second stage re-scores per request, the best by the first stage.
    #[arg(long, default_value_t = steerfeed_learn::TrainConfig::default().ranker_depth)]
    pub ranker_depth: u32,
    /// Keep the second stage even when it orders the held-out pages worse than the heads
    /// alone (by default it is then left out of the model).
    #[arg(long)]
    pub keep_ranker: bool,
    /// How the trained heads are weighed: `kept` sets each head's value scale so that it
    /// adds to the objective what the heads in force added on the training items (the
    /// configured weights and the other terms were set against their scale);
    /// `calibrated` weighs the calibrated probabilities by the configured weights as
    /// they are.
    #[arg(long, default_value = "kept")]
    pub balance: steerfeed_learn::Balance,
    /// Fit no calibration maps: every head's probability is the logistic function of
    /// its logit.
    #[arg(long)]
    pub no_calibration: bool,
}

/// Trains the heads and writes the model file and the report.
pub fn train(
    config: steerfeed::Config,
    shared: &steerfeed_server::config::SharedConfig,
    args: &TrainArgs,
) -> anyhow::Result<()> {
    let since = crate::logs::parse_since(&args.since, Timestamp::now())?;
    let profile = args.profile.as_str();
    let rank = config.profile_rank(profile)?;
    let weights = rank.scorer.weights;
    let (mut rows, current) = match &args.input {
        Some(path) => {
            let file = match profile {
                steerfeed::DEFAULT_PROFILE => config.learning.model.clone(),
                p => config.profiles.get(p).and_then(|p| p.model.clone()),
            };
            let current = match file {
                Some(m) => RankModel::load(&m)?.head_models()?,
                None => steerfeed::rank::scorers::HeadModels::from_config(&rank.scorer),
            };
            (crate::logs::read_rows(path, since)?, current)
        }
        None => {
            let engine = crate::open_stopped(config, shared)?;
            let mut rows = Vec::new();
            engine.for_each_labeled_impression(since, &mut |r| {
                rows.push(r);
                Ok(())
            })?;
            let current = engine.head_models_for(profile)?;
            (rows, current)
        }
    };
    rows.retain(|r| r.profile == profile);
    let mut cfg = steerfeed_learn::TrainConfig {
        holdout: args.holdout,
        alpha: args.alpha,
        ranker_rounds: args.ranker_rounds,
        ranker_depth: args.ranker_depth,
        keep_ranker: args.keep_ranker,
        balance: args.balance,
        ..steerfeed_learn::TrainConfig::default()
    }
    .without_calibration(args.no_calibration);
    if !args.heads.is_empty() {
        cfg = cfg.only_heads(&args.heads)?;
    }
    let (model, report) = steerfeed_learn::train(&rows, &current, &weights, &cfg)?;
    model.save(&args.out)?;
    let text = serde_json::to_string_pretty(&report)?;
    match &args.report {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => crate::say(text)?,
    }
    eprintln!(
        "model {} written to {} ({} served items, {} held out)",
        model.id,
        args.out.display(),
        report.rows,
        report.holdout_rows
    );
    Ok(())
}

/// `steerfeed model`.
#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Checks a model file (header, checksum, feature schema) and prints its id.
    Check {
        /// The file.
        file: PathBuf,
    },
    /// The model a running sidecar serves.
    Show {
        /// The rank profile (default: `default`).
        #[arg(long)]
        profile: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Puts a model file in force on a running sidecar.
    Set {
        /// The file.
        file: PathBuf,
        /// The rank profile (default: `default`).
        #[arg(long)]
        profile: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Returns a running sidecar to the model before the one in force.
    Rollback {
        /// The rank profile (default: `default`).
        #[arg(long)]
        profile: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

fn need_url(remote: &Remote) -> anyhow::Result<()> {
    anyhow::ensure!(
        remote.url.is_some(),
        "--url is needed: the model in force is a running sidecar's (a stopped one serves \
         the file named in [learning] model)"
    );
    Ok(())
}

/// `route`, with the profile's query when one is named.
fn path(route: &str, profile: Option<&str>) -> String {
    match profile {
        Some(p) => format!("{route}?profile={p}"),
        None => route.to_owned(),
    }
}

/// Runs a `steerfeed model` command.
pub fn model(cmd: &ModelCommand) -> anyhow::Result<()> {
    let info: ModelInfo = match cmd {
        ModelCommand::Check { file } => {
            let m = RankModel::load(file)?;
            crate::say(&m.id)?;
            return Ok(());
        }
        ModelCommand::Show { profile, remote } => {
            need_url(remote)?;
            return crate::say(serde_json::to_string_pretty(
                &remote.get_json::<serde_json::Value>(&path("/v1/model", profile.as_deref()))?,
            )?);
        }
        ModelCommand::Set {
            file,
            profile,
            remote,
        } => {
            need_url(remote)?;
            // Checked here first, so a damaged file is named before anything is sent.
            RankModel::load(file)?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            remote.put_json(
                &path("/v1/model", profile.as_deref()),
                &serde_json::json!({ "file": text }),
            )?
        }
        ModelCommand::Rollback { profile, remote } => {
            need_url(remote)?;
            remote.post_json(
                &path("/v1/model/rollback", profile.as_deref()),
                &serde_json::json!({}),
            )?
        }
    };
    crate::say(serde_json::to_string_pretty(&info)?)
}

/// `steerfeed bench train`.
#[derive(clap::Args)]
pub struct BenchTrainArgs {
    /// Served items in the generated log.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Seed of the generated log.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Trees of the learned second stage to fit as well (0, as `steerfeed train` by
    /// default: none).
    #[arg(long, default_value_t = steerfeed_learn::TrainConfig::default().ranker_rounds)]
    pub ranker_rounds: usize,
}

/// Trains on a generated log with known truth and prints the time it took and the
/// quality reached, as one JSON object.
pub fn bench_train(args: &BenchTrainArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let rows = steerfeed_learn::synthetic::generate(args.rows, args.seed);
    let generate_seconds = started.elapsed().as_secs_f64();
    let cfg = steerfeed::rank::scorers::ScorerConfig::default();
    let current = steerfeed::rank::scorers::HeadModels::from_config(&cfg);
    let started = std::time::Instant::now();
    let (model, report) = steerfeed_learn::train(
        &rows,
        &current,
        &cfg.weights,
        &steerfeed_learn::TrainConfig {
            ranker_rounds: args.ranker_rounds,
            ..steerfeed_learn::TrainConfig::default()
        },
    )?;
    let train_seconds = started.elapsed().as_secs_f64();
    let truth = steerfeed_learn::synthetic::truth();
    let fitted = model.head_models()?;
    let heads: Vec<serde_json::Value> = report
        .heads
        .iter()
        .enumerate()
        .map(|(a, h)| {
            let off = fitted.coef[a]
                .iter()
                .zip(&truth.coef[a])
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            serde_json::json!({
                "head": h.head,
                "train_positives": h.train_positives,
                "holdout_positives": h.holdout_positives,
                "fitted": h.fitted,
                "ece_trained": h.trained.ece,
                "ece_current": h.current.ece,
                "auc_trained": h.trained.auc,
                "auc_current": h.current.auc,
                "log_loss_trained": h.trained.log_loss,
                "log_loss_current": h.current.log_loss,
                "largest_coefficient_error": off,
                "calibrated": fitted.calibration[a].is_some(),
                "value_scale": fitted.value_scale[a],
            })
        })
        .collect();
    crate::say(serde_json::to_string_pretty(&serde_json::json!({
        "rows": report.rows,
        "train_rows": report.train_rows,
        "holdout_rows": report.holdout_rows,
        "generate_seconds": generate_seconds,
        "fit_seconds": report.fit_seconds,
        "train_seconds": train_seconds,
        "ndcg_current": report.ndcg_current,
        "ndcg_trained": report.ndcg_trained,
        "ndcg_ranker": report.ndcg_ranker,
        "ranker_trees": report.ranker_trees,
        "ranker_kept": report.ranker_kept,
        "heads": heads,
    }))?)
}

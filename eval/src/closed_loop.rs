//! `steerfeed eval loop`: the learning loop closed in the simulator.
//!
//! For each seed, a world is simulated twice through the real engine, with the same
//! people, videos and schedule:
//!
//! 1. **defaults**: the configured (hand-set) heads serve, with logged exploration; the
//!    engine's impression log is joined to the outcomes
//!    ([`Engine::for_each_labeled_impression`]) and [`steerfeed_learn::train`] fits the
//!    heads on it, exactly as `steerfeed train` does on a stopped store;
//! 2. **trained**: the same world again, with the fitted model in force from the first
//!    session (and the same exploration).
//!
//! The behaviour model defaults to [`Behaviour::Hidden`]: people create because of
//! traits the engine cannot read, so the trained model only helps if what it learned
//! from its own logs does. Each metric is reported per arm and as the paired difference
//! (trained − defaults), with the mean over seeds and a 95 % Student-t interval.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use steerfeed::model::RankModel;
use steerfeed::{Config, Engine, LabeledImpression, Timestamp};
pub use steerfeed_learn::{TrainConfig, TrainReport};

use crate::offpolicy::{self, Reward, Target};
use crate::sim::{self, Behaviour, Policy, SimOptions, SimReport};

/// Arguments of `steerfeed eval loop`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Users in each world.
    #[arg(long, default_value_t = 300)]
    pub users: usize,
    /// Videos in each world.
    #[arg(long, default_value_t = 3000)]
    pub videos: usize,
    /// Simulated days of each run.
    #[arg(long, default_value_t = 2)]
    pub days: u32,
    /// Seeds (worlds): `seed`, `seed + 1`, ...
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The share of slots filled by logged exploration in both arms.
    #[arg(long, default_value_t = 0.1)]
    pub explore: f32,
    /// How simulated people come to create.
    #[arg(long, value_enum, default_value_t = Behaviour::Hidden)]
    pub behaviour: Behaviour,
    /// The share of served items, the latest, held out of training for its report.
    #[arg(long, default_value_t = 0.2)]
    pub holdout: f64,
    /// L2 penalty on the coefficients.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Fit only these heads (comma-separated, e.g. `create,remix,cameo_use`); the others
    /// keep the configured coefficients.
    #[arg(long, value_delimiter = ',')]
    pub heads: Vec<String>,
    /// Trees of the learned second stage of the blend (e.g. 100); 0, the default,
    /// trains the heads alone.
    #[arg(long, default_value_t = TrainConfig::default().ranker_rounds)]
    pub ranker_rounds: usize,
    /// Candidates the second stage re-scores per request.
    #[arg(long, default_value_t = TrainConfig::default().ranker_depth)]
    pub ranker_depth: u32,
    /// Keep the second stage even when it orders the held-out pages worse than the heads.
    #[arg(long)]
    pub keep_ranker: bool,
    /// How the trained heads are weighed: `kept` (each head adds what the configured
    /// heads added on the training items) or `calibrated` (the configured weights on
    /// the calibrated probabilities).
    #[arg(long, default_value = "kept")]
    pub balance: steerfeed_learn::Balance,
    /// Fit no calibration maps: every head's probability is the logistic function of
    /// its logit.
    #[arg(long)]
    pub no_calibration: bool,
    /// Also run each seed with the configured heads serving and the trained model as
    /// their shadow (`[learning] shadow`) at this share of every slot, and estimate the
    /// trained model's rewards from that log alone, to set beside its own run. 0: no
    /// such run.
    #[arg(long, default_value_t = 0.0)]
    pub shadow_share: f32,
    /// Also write the whole report (every run, every training report) here as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What to run (the library form of [`Args`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LoopOptions {
    /// Users, videos and days of each run.
    pub users: usize,
    /// Videos.
    pub videos: usize,
    /// Days.
    pub days: u32,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// Exploration share in both arms.
    pub explore: f32,
    /// Behaviour model.
    pub behaviour: Behaviour,
    /// Training settings.
    pub train: TrainConfig,
    /// Show progress bars.
    pub progress: bool,
    /// The trained model's share as the configured heads' shadow in a third run per
    /// seed (0: none).
    pub shadow_share: f32,
}

impl TryFrom<&Args> for LoopOptions {
    type Error = anyhow::Error;

    fn try_from(a: &Args) -> anyhow::Result<Self> {
        let mut train = TrainConfig {
            holdout: a.holdout,
            alpha: a.alpha,
            ranker_rounds: a.ranker_rounds,
            ranker_depth: a.ranker_depth,
            keep_ranker: a.keep_ranker,
            balance: a.balance,
            ..TrainConfig::default()
        }
        .without_calibration(a.no_calibration);
        if !a.heads.is_empty() {
            train = train.only_heads(&a.heads)?;
        }
        Ok(Self {
            users: a.users,
            videos: a.videos,
            days: a.days,
            seeds: (0..a.seeds).map(|k| a.seed.wrapping_add(k)).collect(),
            explore: a.explore,
            behaviour: a.behaviour,
            train,
            progress: true,
            shadow_share: a.shadow_share,
        })
    }
}

/// One seed's two runs and the training between them.
#[derive(Debug, Clone, Serialize)]
pub struct SeedRun {
    /// The seed.
    pub seed: u64,
    /// The run with the configured heads.
    pub defaults: SimReport,
    /// The trained model's rewards estimated from a run of the configured heads with it
    /// as their shadow, beside its own run's (when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowCheck>,
    /// What training on that run's log reported.
    pub train: TrainReport,
    /// The trained model's id.
    pub model: String,
    /// The run with the trained model.
    pub trained: SimReport,
}

/// A mean over seeds and its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Runs.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Lower end of the 95 % Student-t interval (none below two runs).
    pub low: Option<f64>,
    /// Upper end.
    pub high: Option<f64>,
}

impl Estimate {
    /// The mean of `xs` and its 95 % Student-t interval.
    pub fn of(xs: &[f64]) -> Self {
        let n = xs.len();
        let mean = if n == 0 {
            0.0
        } else {
            xs.iter().sum::<f64>() / n as f64
        };
        if n < 2 {
            return Self {
                n,
                mean,
                low: None,
                high: None,
            };
        }
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half = t975(n - 1) * (var / n as f64).sqrt();
        Self {
            n,
            mean,
            low: Some(mean - half),
            high: Some(mean + half),
        }
    }
}

/// The 97.5 % quantile of Student's t with `df` degrees of freedom, from the table for
/// `df` ≤ 30 and 40, 60 and 120 beyond; between those rows, the value of the row below
/// (the wider interval). Infinite for `df` = 0.
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::INFINITY,
        1..=30 => T[df - 1],
        31..=39 => T[29],
        40..=59 => 2.021,
        60..=119 => 2.000,
        _ => 1.980,
    }
}

/// One metric over the seeds: each arm, and the paired difference.
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    /// The metric.
    pub metric: String,
    /// With the configured heads.
    pub defaults: Estimate,
    /// With the trained model.
    pub trained: Estimate,
    /// Trained − defaults, seed by seed.
    pub difference: Estimate,
}

/// What `steerfeed eval loop` measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoopReport {
    /// Users, videos, days, behaviour and exploration of every run.
    pub users: usize,
    /// Videos.
    pub videos: usize,
    /// Days.
    pub days: u32,
    /// Behaviour model.
    pub behaviour: Behaviour,
    /// Exploration share.
    pub explore: f32,
    /// Per metric, over the seeds.
    pub metrics: Vec<Compared>,
    /// Every seed's runs.
    pub runs: Vec<SeedRun>,
}

/// Reads one metric from a run's report.
pub type Metric = fn(&SimReport) -> f64;

/// The metrics compared, each read from a run's report.
pub const METRICS: [(&str, Metric); 6] = [
    ("creation per session hour", |r| r.creation_per_hour),
    ("passive minutes per user-day", |r| {
        r.passive_minutes_per_user_day
    }),
    ("minutes per user-day", |r| r.minutes_per_user_day),
    ("steering compliance after", |r| r.steering.after),
    ("steering gain (after − before)", |r| {
        r.steering.after - r.steering.before
    }),
    ("violations", |r| {
        (r.teen_limit_violations + r.consent_violations + r.hard_exclusion_violations) as f64
    }),
];

fn sim_options(o: &LoopOptions, seed: u64, model: Option<RankModel>) -> SimOptions {
    SimOptions {
        behaviour: o.behaviour,
        explore: Some(o.explore),
        model,
        progress: o.progress,
        ..SimOptions::new(o.users, o.videos, o.days, seed, Policy::Creation)
    }
}

/// The served items of the default profile in `engine`'s impression log, with outcomes.
fn labeled(engine: &Engine) -> anyhow::Result<Vec<LabeledImpression>> {
    let mut rows = Vec::new();
    engine.for_each_labeled_impression(Timestamp::MIN, &mut |r| {
        if r.profile == steerfeed::DEFAULT_PROFILE {
            rows.push(r);
        }
        Ok(())
    })?;
    Ok(rows)
}

/// The profile name the trained model is served under as the configured heads' shadow.
const SHADOW: &str = "trained";

/// The rewards [`ShadowCheck`] compares.
const SHADOW_REWARDS: [Reward; 3] = [Reward::CompleteView, Reward::Like, Reward::Creation];

/// A shadow's estimate of the trained model against its own run, for one reward.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowReward {
    /// The reward.
    pub reward: Reward,
    /// Per served item, in the run of the configured heads.
    pub configured: offpolicy::Estimate,
    /// Per served item, in the run with the trained model as the shadow (what it
    /// served, a mixture of both).
    pub logged: offpolicy::Estimate,
    /// The trained model at the loop's exploration rate, estimated slot by slot from
    /// that log.
    pub estimate: offpolicy::Estimate,
    /// Per served item, in the trained model's own run.
    pub trained: offpolicy::Estimate,
}

/// The trained model estimated from the log of pages served beside it.
#[derive(Debug, Clone, Serialize)]
pub struct ShadowCheck {
    /// Its share of every slot.
    pub share: f32,
    /// Per reward.
    pub rewards: Vec<ShadowReward>,
}

fn shadow_check(
    share: f32,
    eps: f32,
    configured: &[LabeledImpression],
    logged: &[LabeledImpression],
    trained: &[LabeledImpression],
) -> anyhow::Result<ShadowCheck> {
    let mut rewards = Vec::new();
    for reward in SHADOW_REWARDS {
        rewards.push(ShadowReward {
            reward,
            configured: offpolicy::served(configured, reward)?,
            logged: offpolicy::served(logged, reward)?,
            estimate: offpolicy::estimate(logged, Target::Shadow(f64::from(eps)), reward)?,
            trained: offpolicy::served(trained, reward)?,
        });
    }
    Ok(ShadowCheck { share, rewards })
}

/// Runs the loop for every seed.
pub fn closed_loop(config: &Config, o: &LoopOptions) -> anyhow::Result<LoopReport> {
    if o.seeds.is_empty() {
        anyhow::bail!("at least one seed");
    }
    // Checked before the first run rather than after it.
    if !(0.0..=1.0).contains(&o.explore) {
        anyhow::bail!("explore must be between 0 and 1");
    }
    if !(0.0..=1.0).contains(&o.shadow_share) || o.shadow_share + o.explore > 1.0 {
        anyhow::bail!("shadow share must be between 0 and 1 - explore");
    }
    if !(o.train.holdout > 0.0 && o.train.holdout < 1.0) {
        anyhow::bail!("holdout must be between 0 and 1, both excluded");
    }
    if !(o.train.alpha.is_finite() && o.train.alpha >= 0.0) {
        anyhow::bail!("alpha must be a finite number of at least 0");
    }
    let weights = config.rank.scorer.weights;
    let mut runs = Vec::new();
    for &seed in &o.seeds {
        eprintln!("seed {seed}: the configured heads");
        let (defaults, (model, train, defaults_rows)) =
            sim::simulate_then(config, &sim_options(o, seed, None), |engine| {
                let rows = labeled(engine)?;
                let current = engine.head_models();
                let (model, report) = steerfeed_learn::train(&rows, &current, &weights, &o.train)
                    .with_context(|| format!("training on seed {seed}'s log"))?;
                Ok((model, report, rows))
            })?;
        eprintln!("seed {seed}: the trained model {}", model.id);
        let id = model.id.clone();
        let (trained, trained_rows) =
            sim::simulate_then(config, &sim_options(o, seed, Some(model.clone())), labeled)?;
        let shadow = if o.shadow_share > 0.0 {
            eprintln!("seed {seed}: the configured heads with the trained model as their shadow");
            let mut c = config.clone();
            c.profiles
                .insert(SHADOW.to_owned(), steerfeed::ProfileConfig::default());
            c.learning.shadow = Some(SHADOW.to_owned());
            c.learning.shadow_share = o.shadow_share;
            // As the simulator will run it.
            c.rank.selector.explore = o.explore;
            c.validate()?;
            let mut so = sim_options(o, seed, None);
            so.shadow_model = Some(model);
            let (_, rows) = sim::simulate_then(&c, &so, labeled)?;
            Some(shadow_check(
                o.shadow_share,
                o.explore,
                &defaults_rows,
                &rows,
                &trained_rows,
            )?)
        } else {
            None
        };
        runs.push(SeedRun {
            seed,
            defaults,
            shadow,
            train,
            model: id,
            trained,
        });
    }
    let metrics = METRICS
        .iter()
        .map(|(name, get)| {
            let a: Vec<f64> = runs.iter().map(|r| get(&r.defaults)).collect();
            let b: Vec<f64> = runs.iter().map(|r| get(&r.trained)).collect();
            let d: Vec<f64> = a.iter().zip(&b).map(|(a, b)| b - a).collect();
            Compared {
                metric: (*name).to_owned(),
                defaults: Estimate::of(&a),
                trained: Estimate::of(&b),
                difference: Estimate::of(&d),
            }
        })
        .collect();
    Ok(LoopReport {
        users: o.users,
        videos: o.videos,
        days: o.days,
        behaviour: o.behaviour,
        explore: o.explore,
        metrics,
        runs,
    })
}

/// The human-readable summary.
pub fn summary(r: &LoopReport) -> String {
    let mut s = format!(
        "{} seeds, {} users, {} videos, {} days, behaviour {:?}, exploration {}\n\
         {:<32} {:>26} {:>26} {:>30}\n",
        r.runs.len(),
        r.users,
        r.videos,
        r.days,
        r.behaviour,
        r.explore,
        "metric (mean, 95 % CI)",
        "configured heads",
        "trained model",
        "trained − configured",
    );
    let e = |x: &Estimate| match (x.low, x.high) {
        (Some(lo), Some(hi)) => format!("{:.3} [{lo:.3}, {hi:.3}]", x.mean),
        _ => format!("{:.3} (one run)", x.mean),
    };
    for m in &r.metrics {
        s.push_str(&format!(
            "{:<32} {:>26} {:>26} {:>30}\n",
            m.metric,
            e(&m.defaults),
            e(&m.trained),
            e(&m.difference)
        ));
    }
    for run in &r.runs {
        let t = &run.train;
        let heads: Vec<String> = t
            .heads
            .iter()
            .filter(|h| h.fitted)
            .map(|h| {
                format!(
                    "{} ECE {:.4}→{:.4} AUC {:.3}→{:.3} viewer AUC {:.3}→{:.3}",
                    h.head,
                    h.current.ece,
                    h.trained.ece,
                    h.current.auc,
                    h.trained.auc,
                    h.current.viewer_auc,
                    h.trained.viewer_auc
                )
            })
            .collect();
        let ranker = t.ndcg_ranker.map_or(String::new(), |n| {
            let kept = if t.ranker_kept { "kept" } else { "left out" };
            format!(" (heads and ranker {n:.4}, {kept})")
        });
        s.push_str(&format!(
            "seed {}: model {} from {} served items ({} held out); NDCG@10 {:.4}→{:.4}{ranker}; {}\n",
            run.seed,
            run.model,
            t.rows,
            t.holdout_rows,
            t.ndcg_current,
            t.ndcg_trained,
            heads.join(", ")
        ));
        if let Some(sh) = &run.shadow {
            let parts: Vec<String> = sh
                .rewards
                .iter()
                .map(|r| {
                    format!(
                        "{} estimate {:.4} ± {:.4} (trained run {:.4} ± {:.4}, configured {:.4}, logged {:.4})",
                        r.reward.name(),
                        r.estimate.value,
                        r.estimate.std_error,
                        r.trained.value,
                        r.trained.std_error,
                        r.configured.value,
                        r.logged.value
                    )
                })
                .collect();
            s.push_str(&format!(
                "seed {}: the trained model as the shadow at {}: {}\n",
                run.seed,
                sh.share,
                parts.join("; ")
            ));
        }
    }
    let checks: Vec<&ShadowCheck> = r.runs.iter().filter_map(|r| r.shadow.as_ref()).collect();
    if !checks.is_empty() {
        for (k, reward) in SHADOW_REWARDS.iter().enumerate() {
            let diff = |f: fn(&ShadowReward) -> f64| {
                let xs: Vec<f64> = checks.iter().map(|c| f(&c.rewards[k])).collect();
                e(&Estimate::of(&xs))
            };
            s.push_str(&format!(
                "{} per item over the seeds: estimate − trained run {}, configured − trained run {}\n",
                reward.name(),
                diff(|r| r.estimate.value - r.trained.value),
                diff(|r| r.configured.value - r.trained.value),
            ));
        }
    }
    s
}

/// Runs `steerfeed eval loop`.
pub fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let r = closed_loop(&config, &LoopOptions::try_from(args)?)?;
    if let Some(p) = &args.out {
        std::fs::write(p, serde_json::to_string_pretty(&r)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let text = if args.json {
        serde_json::to_string(&r.metrics)?
    } else {
        summary(&r)
    };
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

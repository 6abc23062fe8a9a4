//! `steerfeed eval report`: runs the evaluations and writes what they found to a folder.
//!
//! 1. **MicroLens** (when its files are there): every method of [`crate::microlens`] on
//!    the dev split at K = 1, 5, 10, 20, 50 → `microlens.jsonl` and `hr_at_k.png`.
//! 2. **Simulation** ([`crate::sim`]) on one seeded world, several times: the `creation`
//!    and `engagement` policies; the creation weight swept (`--creation-weights`) →
//!    `tradeoff.png` (creation actions per hour against passive minutes); the default
//!    policy without wellbeing throttles → `sessions.png` (session lengths with and
//!    without throttles); steering compliance before/after → `steering.png`. Every run is
//!    a line of `sim.jsonl`.
//! 3. `report.md`: the tables and the plots, with the command that made them.
//!
//! [`write`] turns results into files and is separate from [`run`], which computes them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;
use steerfeed::Config;

use crate::microlens::methods::Weights;
use crate::microlens::{self, MethodResult};
use crate::plot::{self, Series};
use crate::sim::{self, Policy, SimOptions, SimReport};

/// Arguments of `steerfeed eval report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder the report is written to (created if missing).
    #[arg(long, default_value = "eval/report")]
    pub out: PathBuf,
    /// MicroLens pairs (`user<TAB>item item ...`); the MicroLens part is skipped when this
    /// file does not exist.
    #[arg(long, default_value = "../shared/data/microlens-50k/pairs.tsv")]
    pub pairs: PathBuf,
    /// MicroLens titles (`item,title`).
    #[arg(long, default_value = "../shared/data/microlens-50k/titles.csv")]
    pub titles: PathBuf,
    /// Skip the MicroLens part.
    #[arg(long)]
    pub skip_microlens: bool,
    /// MicroLens: folder of the title-embedding cache [default: $STEERFEED_CACHE/embeddings].
    #[arg(long)]
    pub embedding_cache: Option<PathBuf>,
    /// MicroLens: evaluate only the first N users (quick runs).
    #[arg(long)]
    pub limit_users: Option<usize>,
    /// MicroLens: keep the engine row's taught store here and reuse it (see
    /// `eval microlens --replay-cache`).
    #[arg(long)]
    pub replay_cache: Option<PathBuf>,
    /// MicroLens: validation users the blend's weights are tuned on.
    #[arg(long, default_value_t = 5000)]
    pub tune_users: usize,
    /// Skip the simulation part.
    #[arg(long)]
    pub skip_simulation: bool,
    /// Users of the simulated world.
    #[arg(long, default_value_t = 300)]
    pub users: usize,
    /// Videos of the simulated world.
    #[arg(long, default_value_t = 3_000)]
    pub videos: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 2)]
    pub days: u32,
    /// Seed of the simulated world.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Creation weights swept for the creation/consumption trade-off.
    #[arg(long, value_delimiter = ',', default_value = "0,2.5,5,10,20")]
    pub creation_weights: Vec<f32>,
}

/// The K of the HR@K curves.
pub const CURVE_KS: [usize; 5] = [1, 5, 10, 20, 50];

/// One simulation run of the report and what it was for.
#[derive(Debug, Clone, Serialize)]
pub struct SimRun {
    /// `policy:creation`, `policy:engagement`, `sweep:<w>`, `no-throttles`.
    pub role: String,
    /// What the run measured.
    #[serde(flatten)]
    pub report: SimReport,
}

/// Everything a report is made of.
#[derive(Debug, Clone, Default)]
pub struct Results {
    /// MicroLens rows, one per method (empty when skipped).
    pub microlens: Vec<MethodResult>,
    /// The blend's weights chosen on the validation split, and their validation
    /// NDCG@10.
    pub blend_weights: Option<(Weights, f64)>,
    /// Why MicroLens was skipped, if it was.
    pub microlens_skipped: Option<String>,
    /// Simulation runs.
    pub sims: Vec<SimRun>,
    /// The command line that produced the results.
    pub command: String,
}

/// Runs `steerfeed eval report`.
pub fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let results = compute(&config, args)?;
    let files = write(&args.out, &results)?;
    for f in files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}

/// Runs the evaluations `args` ask for.
pub fn compute(config: &Config, args: &Args) -> anyhow::Result<Results> {
    let mut results = Results {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        ..Results::default()
    };
    if args.skip_microlens {
        results.microlens_skipped = Some("--skip-microlens".to_owned());
    } else if !args.pairs.exists() || !args.titles.exists() {
        results.microlens_skipped = Some(format!(
            "{} or {} not found",
            args.pairs.display(),
            args.titles.display()
        ));
    } else {
        eprintln!("MicroLens: every method on the dev split");
        let margs = microlens::Args {
            pairs: args.pairs.clone(),
            titles: args.titles.clone(),
            test: None,
            k: CURVE_KS.to_vec(),
            methods: Vec::new(),
            validate: false,
            limit_users: args.limit_users,
            tune_users: args.tune_users,
            json: false,
            cache: args.embedding_cache.clone(),
            replay_cache: args.replay_cache.clone(),
            engine_on_validation: false,
            train_heads: false,
            train_users: 0,
            balance: "kept".to_owned(),
        };
        let (rows, tuning) =
            microlens::load_and_evaluate(config, &margs).context("MicroLens replay")?;
        results.microlens = rows;
        results.blend_weights = tuning.first().map(|t| (t.weights, t.ndcg10));
    }

    if args.skip_simulation {
        return Ok(results);
    }
    let base =
        |policy: Policy| SimOptions::new(args.users, args.videos, args.days, args.seed, policy);
    let mut plan: Vec<(String, SimOptions)> = vec![
        ("policy:creation".to_owned(), base(Policy::Creation)),
        ("policy:engagement".to_owned(), base(Policy::Engagement)),
    ];
    for &w in &args.creation_weights {
        let mut o = base(Policy::Creation);
        o.creation_weight = Some(w);
        plan.push((format!("sweep:{w}"), o));
    }
    let mut o = base(Policy::Creation);
    o.no_throttles = true;
    plan.push(("no-throttles".to_owned(), o));
    // A swept weight equal to the configured creation weights is the creation policy's
    // run again: reuse it instead of simulating the same thing twice.
    let cw = &config.rank.scorer.weights;
    let is_default = |w: f32| cw.create == w && cw.remix == w && cw.cameo_use == w;
    let total = plan.len();
    for (i, (role, opts)) in plan.into_iter().enumerate() {
        let same = opts.policy == Policy::Creation && !opts.no_throttles;
        let reused = match opts.creation_weight {
            Some(w) if same && is_default(w) => sim_run(&results, "policy:creation").cloned(),
            _ => None,
        };
        let report = match reused {
            Some(mut r) => {
                eprintln!(
                    "simulation {}/{total}: {role} (the creation policy's run)",
                    i + 1
                );
                r.creation_weight = opts.creation_weight;
                r
            }
            None => {
                eprintln!("simulation {}/{total}: {role}", i + 1);
                sim::simulate(config, &opts).with_context(|| format!("simulation {role}"))?
            }
        };
        results.sims.push(SimRun { role, report });
    }
    Ok(results)
}

fn sim_run<'a>(results: &'a Results, role: &str) -> Option<&'a SimReport> {
    results
        .sims
        .iter()
        .find(|r| r.role == role)
        .map(|r| &r.report)
}

/// Writes `results` into `out`: `microlens.jsonl`, `sim.jsonl`, the PNG plots and
/// `report.md`. Returns the files written.
pub fn write(out: &Path, results: &Results) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Vec::new();
    let mut md = String::new();
    let _ = writeln!(md, "# steerfeed evaluation report\n");
    let _ = writeln!(md, "Made by `{}`.\n", results.command);

    // MicroLens.
    let _ = writeln!(md, "## MicroLens-50k, leave-last-out (dev split)\n");
    if let Some(why) = &results.microlens_skipped {
        let _ = writeln!(md, "Skipped: {why}.\n");
    }
    if !results.microlens.is_empty() {
        let path = out.join("microlens.jsonl");
        let mut lines = String::new();
        for r in &results.microlens {
            lines.push_str(&serde_json::to_string(r)?);
            lines.push('\n');
        }
        std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);

        let _ = writeln!(
            md,
            "| method | HR@10 | NDCG@10 | HR@20 | NDCG@20 | MRR | coverage | diversity | seconds |\n\
             |---|---|---|---|---|---|---|---|---|"
        );
        for r in &results.microlens {
            let at = |m: &std::collections::BTreeMap<usize, f64>, k| {
                m.get(&k).map_or("–".to_owned(), |v| format!("{v:.4}"))
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.1} |",
                r.method,
                at(&r.hr, 10),
                at(&r.ndcg, 10),
                at(&r.hr, 20),
                at(&r.ndcg, 20),
                r.mrr,
                r.coverage,
                r.diversity,
                r.seconds
            );
        }
        if let Some((w, ndcg)) = &results.blend_weights {
            let _ = writeln!(
                md,
                "\nThe `blend` row's weights, chosen on a validation split carved from \
                 the training data (validation NDCG@10 {ndcg:.4}): sequence co-engagement {}, \
                 item-kNN {}, co-engagement index {}, content {}, recent popularity {}.",
                w.seq, w.knn, w.coeng, w.content, w.recent_pop
            );
        }
        let series: Vec<Series> = results
            .microlens
            .iter()
            .map(|r| {
                Series::new(
                    r.method.clone(),
                    r.hr.iter().map(|(&k, &v)| (k as f64, v)).collect(),
                )
            })
            .collect();
        let path = out.join("hr_at_k.png");
        plot::line_chart(&path, "MicroLens-50k: HR@K", "K", "HR@K", &series)?;
        files.push(path);
        let _ = writeln!(md, "\n![HR@K per method](hr_at_k.png)\n");
    }

    // Simulation.
    let _ = writeln!(md, "## Closed-loop simulation\n");
    if !results.sims.is_empty() {
        let path = out.join("sim.jsonl");
        let mut lines = String::new();
        for r in &results.sims {
            lines.push_str(&serde_json::to_string(r)?);
            lines.push('\n');
        }
        std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
        files.push(path);
        let first = &results.sims[0].report;
        let _ = writeln!(
            md,
            "{} users, {} videos, {} days, seed {}.\n",
            first.users, first.videos, first.days, first.seed
        );
        let _ = writeln!(
            md,
            "| run | creation/h | passive min/user-day | following share | diversity | check-ins | breaks | teen-limit viol. | consent viol. | exclusion viol. | steering before → after | seconds |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in &results.sims {
            let s = &r.report;
            let _ = writeln!(
                md,
                "| {} | {:.2} | {:.1} | {:.3} | {:.3} | {} | {} | {} | {} | {} | {:.3} → {:.3} | {:.0} |",
                r.role,
                s.creation_per_hour,
                s.passive_minutes_per_user_day,
                s.following_share,
                s.diversity,
                s.checkins_shown,
                s.breaks_shown,
                s.teen_limit_violations,
                s.consent_violations,
                s.hard_exclusion_violations,
                s.steering.before,
                s.steering.after,
                s.seconds
            );
        }

        // Trade-off: creation per hour against passive minutes as the weight varies.
        let sweep: Vec<&SimRun> = results
            .sims
            .iter()
            .filter(|r| r.role.starts_with("sweep:"))
            .collect();
        if !sweep.is_empty() {
            let mut series = vec![
                Series::new(
                    "creation weight sweep",
                    sweep
                        .iter()
                        .map(|r| {
                            (
                                r.report.passive_minutes_per_user_day,
                                r.report.creation_per_hour,
                            )
                        })
                        .collect(),
                )
                .with_labels(
                    sweep
                        .iter()
                        .map(|r| format!("w={}", r.role.trim_start_matches("sweep:")))
                        .collect(),
                ),
            ];
            if let Some(e) = sim_run(results, "policy:engagement") {
                series.push(
                    Series::new(
                        "engagement policy",
                        vec![(e.passive_minutes_per_user_day, e.creation_per_hour)],
                    )
                    .with_labels(vec!["engagement".to_owned()]),
                );
            }
            let path = out.join("tradeoff.png");
            plot::line_chart(
                &path,
                "Creation vs consumption as the creation weight varies",
                "passive minutes per user-day",
                "creation actions per hour",
                &series,
            )?;
            files.push(path);
            let _ = writeln!(md, "\n![creation/consumption trade-off](tradeoff.png)\n");
        }

        // Steering compliance before/after, per policy.
        let policies: Vec<&SimRun> = results
            .sims
            .iter()
            .filter(|r| r.role.starts_with("policy:"))
            .collect();
        if !policies.is_empty() {
            let categories: Vec<String> = policies
                .iter()
                .map(|r| r.role.trim_start_matches("policy:").to_owned())
                .collect();
            let groups = vec![
                (
                    "before the preference".to_owned(),
                    policies.iter().map(|r| r.report.steering.before).collect(),
                ),
                (
                    "after the preference".to_owned(),
                    policies.iter().map(|r| r.report.steering.after).collect(),
                ),
            ];
            let path = out.join("steering.png");
            plot::bar_chart(
                &path,
                "Steering compliance: share of the feed matching the preference",
                "share of served items",
                &categories,
                &groups,
            )?;
            files.push(path);
            let _ = writeln!(md, "![steering compliance](steering.png)\n");
        }

        // Session lengths with and without throttles.
        if let (Some(with), Some(without)) = (
            sim_run(results, "policy:creation"),
            sim_run(results, "no-throttles"),
        ) && !with.session_minutes.is_empty()
            && !without.session_minutes.is_empty()
        {
            let as_f64 = |v: &[f32]| v.iter().map(|&m| f64::from(m)).collect::<Vec<_>>();
            let path = out.join("sessions.png");
            plot::histogram(
                &path,
                "Session length",
                "minutes",
                &[
                    (
                        "with wellbeing throttles".to_owned(),
                        as_f64(&with.session_minutes),
                    ),
                    (
                        "without throttles".to_owned(),
                        as_f64(&without.session_minutes),
                    ),
                ],
                30,
            )?;
            files.push(path);
            let _ = writeln!(md, "![session lengths](sessions.png)\n");
        }
    }

    let path = out.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
    files.push(path);
    Ok(files)
}

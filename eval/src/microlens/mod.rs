//! `steerfeed eval microlens`: leave-last-out replay on MicroLens-50k.
//!
//! Every method ranks all items not in the user's history; the metrics are in
//! [`crate::metrics`]. A target the method cannot reach (in the history, or outside the
//! interest-ANN list) still counts, as a miss.

pub mod data;
pub mod embed;
#[cfg(feature = "learn")]
pub mod learned;
pub mod methods;
pub mod replay;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use rayon::prelude::*;
use steerfeed::Config;
use steerfeed::steer::Encoder;

use crate::metrics;
use crate::progress::Progress;
use data::{Case, Split};
use embed::Embeddings;
use methods::{Method, Model, Weights};

/// Every method, in report order: four baselines, the harness's blend of the signals
/// that won on this data, and the engine itself (replayed through `Engine::feed`).
pub const METHODS: [&str; 6] = [
    "popularity",
    "item-knn",
    "content",
    "interest-ann",
    "blend",
    "engine",
];
const BLOCK: usize = 32;

/// Arguments of `steerfeed eval microlens`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// `user<TAB>item item ...`, oldest first.
    #[arg(long)]
    pub pairs: PathBuf,
    /// `item,title` (quoted CSV with a header).
    #[arg(long)]
    pub titles: PathBuf,
    /// `user<TAB>item` test targets; without it, the last item of each sequence is held out.
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// Cut-offs K, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,20")]
    pub k: Vec<usize>,
    /// Methods to run, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Print the validation-split numbers used to tune the engine.
    #[arg(long)]
    pub validate: bool,
    /// Evaluate only the first N users (quick runs).
    #[arg(long)]
    pub limit_users: Option<usize>,
    /// Validation users used for tuning (the first N of the training users).
    #[arg(long, default_value_t = 5000)]
    pub tune_users: usize,
    /// One JSON object per method per line.
    #[arg(long)]
    pub json: bool,
    /// Folder of the embedding cache [default: $STEERFEED_CACHE/embeddings].
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Keeps the engine row's taught store in this folder and starts from it when the
    /// data is the same (for runs that only change `STEERFEED__RANK__…`).
    #[arg(long)]
    pub replay_cache: Option<PathBuf>,
    /// Replays the engine on the validation split carved from the training data (the
    /// first `--tune-users` training users' last item held out) instead of the dev
    /// targets: the split to choose engine settings on. The row is `engine-validation`.
    #[arg(long)]
    pub engine_on_validation: bool,
    /// Also trains the comment head on pages the engine served for the validation split
    /// (see `--train-users`) and replays the dev targets with the trained model in force:
    /// the `engine-trained` row, beside the `engine` row.
    #[arg(long)]
    pub train_heads: bool,
    /// Validation users whose served pages train the heads (the first N of the training
    /// users, their last item held out).
    #[arg(long, default_value_t = 20_000, requires = "train_heads")]
    pub train_users: usize,
    /// How the trained head is weighed (`steerfeed train --balance`): `kept` (it adds
    /// what the configured head added on the served items) or `calibrated`.
    #[arg(long, default_value = "kept", requires = "train_heads")]
    pub balance: String,
}

/// How the `engine-trained` row's model was trained.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Training {
    /// The model's id.
    pub model: String,
    /// The head trained (the one MicroLens interactions label).
    pub head: String,
    /// Validation users served.
    pub validation_users: usize,
    /// Served items in the impression log.
    pub served_items: usize,
    /// Of them, the validation items served (on any page served): the positives.
    pub hits: usize,
    /// The training report (per head: positives, coefficients, held-out quality of the
    /// heads in force and the trained ones).
    pub report: serde_json::Value,
    /// The models the dev pages were served with, as the impression log names them
    /// (empty until the dev pages are served).
    pub served_with: Vec<String>,
}

/// One method's results.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResult {
    /// Method name.
    pub method: String,
    /// How the row was produced: `harness` (scored over every item inside the
    /// evaluation) or `Engine::feed` (read off the pages the engine served).
    pub via: String,
    /// HR@K for each K.
    pub hr: BTreeMap<usize, f64>,
    /// NDCG@K for each K.
    pub ndcg: BTreeMap<usize, f64>,
    /// Mean reciprocal rank.
    pub mrr: f64,
    /// Distinct items in all top-(max K) lists / catalogue size.
    pub coverage: f64,
    /// Mean intra-list diversity of the top-10.
    pub diversity: f64,
    /// Users evaluated.
    pub users: usize,
    /// Wall time of scoring (for the engine: of serving every test user's pages).
    pub seconds: f64,
    /// What only served pages show (the engine's row).
    pub served: Option<Served>,
    /// How the model of the `engine-trained` row was trained.
    pub training: Option<Training>,
}

/// The serving side of the engine's row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Served {
    /// Feed requests made.
    pub requests: usize,
    /// Requests per second over the serving phase (all cores).
    pub requests_per_s: f64,
    /// Median request latency.
    pub p50_ms: f64,
    /// 99th percentile request latency.
    pub p99_ms: f64,
    /// Share of served items (top max-K of each user) per source.
    pub sources: BTreeMap<String, f64>,
    /// Served items the user had already engaged with (expected 0).
    pub re_served_history: usize,
    /// Seconds to load the catalogue, users and interactions into the engine.
    pub load_seconds: f64,
    /// How interactions were dated.
    pub time_mapping: &'static str,
}

impl serde::Serialize for MethodResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("method", &self.method)?;
        m.serialize_entry("via", &self.via)?;
        for (k, v) in &self.hr {
            m.serialize_entry(&format!("hr@{k}"), v)?;
            if let Some(n) = self.ndcg.get(k) {
                m.serialize_entry(&format!("ndcg@{k}"), n)?;
            }
        }
        m.serialize_entry("mrr", &self.mrr)?;
        m.serialize_entry("coverage", &self.coverage)?;
        m.serialize_entry("diversity", &self.diversity)?;
        m.serialize_entry("users", &self.users)?;
        m.serialize_entry("seconds", &self.seconds)?;
        if let Some(served) = &self.served {
            m.serialize_entry("served", served)?;
        }
        if let Some(training) = &self.training {
            m.serialize_entry("training", training)?;
        }
        m.end()
    }
}

#[derive(Default)]
struct Acc {
    hr: Vec<f64>,
    ndcg: Vec<f64>,
    mrr: f64,
    div: f64,
    lists: Vec<Vec<u32>>,
}

/// Evaluates one method over `cases`.
pub fn evaluate_method(
    method: &Method<'_>,
    cases: &[Case],
    n: usize,
    ks: &[usize],
    emb: &Embeddings,
) -> anyhow::Result<MethodResult> {
    let started = Instant::now();
    let kmax = ks.iter().copied().max().unwrap_or(10).max(10);
    let progress = Progress::new(method.name(), cases.len() as u64);
    let accs = cases
        .par_chunks(BLOCK)
        .map(|chunk| {
            // The method sees each user's history, never the target.
            let histories: Vec<&[u32]> = chunk.iter().map(|c| c.history.as_slice()).collect();
            let scores = method.score(n, &histories)?;
            let mut acc = Acc {
                hr: vec![0.0; ks.len()],
                ndcg: vec![0.0; ks.len()],
                ..Acc::default()
            };
            for (c, mut s) in chunk.iter().zip(scores) {
                for &h in &c.history {
                    if let Some(x) = s.get_mut(h as usize) {
                        *x = f32::NEG_INFINITY;
                    }
                }
                let rank = metrics::rank_of(&s, c.target as usize);
                for (a, &k) in ks.iter().enumerate() {
                    acc.hr[a] += metrics::hit_at(rank, k);
                    acc.ndcg[a] += metrics::ndcg_at(rank, k);
                }
                acc.mrr += metrics::reciprocal_rank(rank);
                let top = metrics::top_k(&s, kmax);
                let ten = &top[..top.len().min(10)];
                acc.div += metrics::intra_list_diversity(ten, |i| emb.row(i as usize));
                acc.lists.push(top);
            }
            progress.inc(chunk.len() as u64);
            Ok(acc)
        })
        .collect::<anyhow::Result<Vec<Acc>>>()?;
    progress.finish();
    let users = cases.len().max(1) as f64;
    let mut hr = vec![0.0; ks.len()];
    let mut ndcg = vec![0.0; ks.len()];
    let (mut mrr, mut div) = (0.0, 0.0);
    for a in &accs {
        for i in 0..ks.len() {
            hr[i] += a.hr[i];
            ndcg[i] += a.ndcg[i];
        }
        mrr += a.mrr;
        div += a.div;
    }
    let kcov = ks.iter().copied().max().unwrap_or(10);
    let coverage = metrics::coverage(
        accs.iter()
            .flat_map(|a| a.lists.iter().map(|l| &l[..l.len().min(kcov)])),
        n,
    );
    Ok(MethodResult {
        method: method.name().to_owned(),
        via: "harness".to_owned(),
        hr: ks.iter().zip(&hr).map(|(&k, v)| (k, v / users)).collect(),
        ndcg: ks.iter().zip(&ndcg).map(|(&k, v)| (k, v / users)).collect(),
        mrr: mrr / users,
        coverage,
        diversity: div / users,
        users: cases.len(),
        seconds: started.elapsed().as_secs_f64(),
        served: None,
        training: None,
    })
}

/// The weight grid searched on the validation split (item-kNN or co-engagement at weight 1 sets the scale).
pub fn weight_grid() -> Vec<Weights> {
    let mut out = Vec::new();
    for (knn, coeng) in [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)] {
        for seq in [0.0, 0.5, 1.0, 2.0] {
            for content in [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2] {
                for recent_pop in [0.0, 0.1, 0.2, 0.4, 0.8, 1.6] {
                    out.push(Weights {
                        seq,
                        knn,
                        coeng,
                        content,
                        recent_pop,
                    });
                }
            }
        }
    }
    out
}

/// One row of the tuning table: weights and their validation NDCG@10 / HR@10.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TuneRow {
    /// The weights.
    pub weights: Weights,
    /// Validation NDCG@10.
    pub ndcg10: f64,
    /// Validation HR@10.
    pub hr10: f64,
}

/// Tunes the engine's weights on a validation split carved from the training data only:
/// the last training item of each of the first `users` training sequences is held out.
pub fn tune(
    train: &[data::Sequence],
    n: usize,
    emb: &Embeddings,
    users: usize,
) -> anyhow::Result<Vec<TuneRow>> {
    let (val_train, val_cases) = validation_split(train)?;
    let model = Model::fit(&val_train, n)?;
    let pop = methods::recent_pop_signal(&model);
    let grid = weight_grid();
    let cases = &val_cases[..val_cases.len().min(users)];
    let progress = Progress::new("tuning on validation", cases.len() as u64);
    let sums = cases
        .par_chunks(BLOCK)
        .map(|chunk| {
            let histories: Vec<&[u32]> = chunk.iter().map(|c| c.history.as_slice()).collect();
            let sigs = methods::signals(&model, emb, &histories);
            let mut sums = vec![(0.0f64, 0.0f64); grid.len()];
            let mut s = vec![0f32; n];
            for (c, sig) in chunk.iter().zip(&sigs) {
                for (g, w) in grid.iter().enumerate() {
                    methods::blend(sig, &pop, w, &mut s);
                    for &h in &c.history {
                        s[h as usize] = f32::NEG_INFINITY;
                    }
                    let rank = metrics::rank_of(&s, c.target as usize);
                    sums[g].0 += metrics::ndcg_at(rank, 10);
                    sums[g].1 += metrics::hit_at(rank, 10);
                }
            }
            progress.inc(chunk.len() as u64);
            sums
        })
        .reduce(
            || vec![(0.0, 0.0); grid.len()],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    x.0 += y.0;
                    x.1 += y.1;
                }
                a
            },
        );
    progress.finish();
    let u = cases.len().max(1) as f64;
    let mut rows: Vec<TuneRow> = grid
        .into_iter()
        .zip(sums)
        .map(|(weights, (nd, hr))| TuneRow {
            weights,
            ndcg10: nd / u,
            hr10: hr / u,
        })
        .collect();
    rows.sort_by(|a, b| b.ndcg10.total_cmp(&a.ndcg10));
    Ok(rows)
}

/// The validation split carved from `train`: the last item of every training sequence
/// of two items or more is held out; shorter sequences stay whole in its training data.
pub fn validation_split(
    train: &[data::Sequence],
) -> anyhow::Result<(Vec<data::Sequence>, Vec<Case>)> {
    let usable: Vec<data::Sequence> = train
        .iter()
        .filter(|s| s.items.len() >= 2)
        .cloned()
        .collect();
    if usable.is_empty() {
        bail!("no training sequence of two items or more to validate on");
    }
    let val = data::leave_last_out(&usable)?;
    let mut val_train = val.train;
    val_train.extend(train.iter().filter(|s| s.items.len() < 2).cloned());
    Ok((val_train, val.cases))
}

/// Loads the data and builds the split.
pub fn load(args: &Args) -> anyhow::Result<(data::Catalogue, Split)> {
    let tname = args.titles.display().to_string();
    let cat = data::parse_titles(&data::read(&args.titles)?, &tname)?;
    let pname = args.pairs.display().to_string();
    let seqs = data::parse_pairs(&data::read(&args.pairs)?, &pname, &cat)?;
    let mut split = match &args.test {
        Some(t) => data::with_test(seqs, &data::read(t)?, &t.display().to_string(), &cat)?,
        None => data::leave_last_out(&seqs)?,
    };
    if let Some(l) = args.limit_users {
        split.cases.truncate(l);
    }
    Ok((cat, split))
}

/// Checks `--methods` and `--k`; returns the methods to run, in report order.
pub fn check_args(args: &Args) -> anyhow::Result<Vec<&'static str>> {
    let chosen: Vec<&str> = if args.methods.is_empty() {
        METHODS.to_vec()
    } else {
        for m in &args.methods {
            if !METHODS.contains(&m.as_str()) {
                bail!("unknown method {m}; known: {}", METHODS.join(", "));
            }
        }
        METHODS
            .iter()
            .copied()
            .filter(|m| args.methods.iter().any(|a| a == m))
            .collect()
    };
    if args.k.is_empty() || args.k.contains(&0) {
        bail!("--k needs positive cut-offs");
    }
    if args.train_heads {
        if !cfg!(feature = "learn") {
            bail!("--train-heads needs a build with the `learn` feature");
        }
        if !chosen.contains(&"engine") {
            bail!("--train-heads adds a row to the engine's: run the engine method");
        }
        if args.engine_on_validation {
            bail!(
                "--train-heads trains on the validation split: it replays the dev targets, not --engine-on-validation"
            );
        }
        if args.train_users == 0 {
            bail!("--train-users needs at least one user");
        }
    }
    Ok(chosen)
}

/// Runs the chosen methods; returns their rows and the tuning table (when the engine ran).
pub fn evaluate(
    config: &Config,
    args: &Args,
    cat: &data::Catalogue,
    split: &Split,
    emb: &Embeddings,
) -> anyhow::Result<(Vec<MethodResult>, Vec<TuneRow>)> {
    let chosen = check_args(args)?;
    if emb.len() != cat.len() {
        bail!("{} embeddings for {} titles", emb.len(), cat.len());
    }
    let n = cat.len();
    let model = Model::fit(&split.train, n)?;
    let mut out = Vec::new();
    let mut tuning = Vec::new();
    for name in chosen {
        let result = match name {
            "popularity" => {
                evaluate_method(&Method::Popularity(&model), &split.cases, n, &args.k, emb)?
            }
            "item-knn" => evaluate_method(&Method::ItemKnn(&model), &split.cases, n, &args.k, emb)?,
            "content" => evaluate_method(&Method::Content(emb), &split.cases, n, &args.k, emb)?,
            "interest-ann" => {
                let t = Instant::now();
                let index = methods::build_index(emb)?;
                eprintln!(
                    "hnsw index over {n} titles built in {:.1}s",
                    t.elapsed().as_secs_f64()
                );
                evaluate_method(
                    &Method::InterestAnn(emb, &index),
                    &split.cases,
                    n,
                    &args.k,
                    emb,
                )?
            }
            "engine" if args.engine_on_validation => {
                let (train, cases) = validation_split(&split.train)?;
                let cases = &cases[..cases.len().min(args.tune_users)];
                let cache = args.replay_cache.as_deref();
                let mut row = replay::run(config.clone(), cat, &train, cases, &args.k, emb, cache)?;
                row.method = "engine-validation".to_owned();
                row
            }
            "engine" => {
                let cache = args.replay_cache.as_deref();
                let row = replay::run(
                    config.clone(),
                    cat,
                    &split.train,
                    &split.cases,
                    &args.k,
                    emb,
                    cache,
                )?;
                if args.train_heads {
                    out.push(row);
                    trained_row(config, args, cat, split, emb)?
                } else {
                    row
                }
            }
            _ => {
                tuning = tune(&split.train, n, emb, args.tune_users)?;
                let w = tuning.first().map(|r| r.weights).unwrap_or_default();
                eprintln!("blend weights chosen on validation: {w:?}");
                let pop = methods::recent_pop_signal(&model);
                evaluate_method(
                    &Method::Blend(&model, emb, pop, w),
                    &split.cases,
                    n,
                    &args.k,
                    emb,
                )?
            }
        };
        out.push(result);
    }
    Ok((out, tuning))
}

/// The `engine-trained` row (see [`learned`]).
#[cfg(feature = "learn")]
fn trained_row(
    config: &Config,
    args: &Args,
    cat: &data::Catalogue,
    split: &Split,
    emb: &Embeddings,
) -> anyhow::Result<MethodResult> {
    let cache = args.replay_cache.as_deref();
    let trained = learned::train_on_validation(
        config,
        cat,
        &split.train,
        args.train_users,
        &args.k,
        args.balance.parse()?,
        cache,
    )?;
    eprintln!(
        "model {} trained on {} served items of {} validation users ({} hits)",
        trained.model.id,
        trained.rows.len(),
        trained.training.validation_users,
        trained.outcomes.len()
    );
    let replay = replay::build_cached(config.clone(), cat, &split.train, cache)?;
    learned::run(&replay, &split.cases, &args.k, emb, cat.len(), trained)
}

#[cfg(not(feature = "learn"))]
fn trained_row(
    _: &Config,
    _: &Args,
    _: &data::Catalogue,
    _: &Split,
    _: &Embeddings,
) -> anyhow::Result<MethodResult> {
    bail!("--train-heads needs a build with the `learn` feature")
}

/// Loads the data, embeds the titles with the real encoder (cached) and runs the chosen
/// methods: what `steerfeed eval microlens` and the report share.
pub fn load_and_evaluate(
    config: &Config,
    args: &Args,
) -> anyhow::Result<(Vec<MethodResult>, Vec<TuneRow>)> {
    check_args(args)?;
    let (cat, split) = load(args)?;
    eprintln!(
        "{} items, {} training sequences, {} test cases",
        cat.len(),
        split.train.len(),
        split.cases.len()
    );
    let encoder = Encoder::open(&config.model).context("opening the encoder")?;
    let dir = args
        .cache
        .clone()
        .unwrap_or_else(|| steerfeed::steer::config::cache_dir().join("embeddings"));
    let emb = embed::embed_titles(&encoder, &cat.titles, &dir)?;
    drop(encoder);
    evaluate(config, args, &cat, &split, &emb)
}

/// Runs `steerfeed eval microlens`.
pub fn run(config: Config, args: &Args) -> anyhow::Result<()> {
    let (rows, tuning) = load_and_evaluate(&config, args)?;
    let mut out = std::io::stdout().lock();
    if args.validate && !tuning.is_empty() {
        writeln!(
            out,
            "# validation (last training item of the first {} users held out), best first",
            args.tune_users
        )?;
        for r in tuning.iter().take(15) {
            if args.json {
                writeln!(out, "{}", serde_json::json!({"validation": r}))?;
            } else {
                writeln!(
                    out,
                    "seq {:.2} knn {:.2} coeng {:.2} content {:.2} recent_pop {:.2}: ndcg@10 {:.4} hr@10 {:.4}",
                    r.weights.seq,
                    r.weights.knn,
                    r.weights.coeng,
                    r.weights.content,
                    r.weights.recent_pop,
                    r.ndcg10,
                    r.hr10
                )?;
            }
        }
    }
    for r in &rows {
        if args.json {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        } else {
            let ks: Vec<String> =
                r.hr.iter()
                    .map(|(k, h)| {
                        format!(
                            "HR@{k} {h:.4} NDCG@{k} {:.4}",
                            r.ndcg.get(k).copied().unwrap_or(0.0)
                        )
                    })
                    .collect();
            writeln!(
                out,
                "{:<13} {} MRR {:.4} coverage {:.4} diversity {:.4} users {} {:.1}s",
                r.method,
                ks.join(" "),
                r.mrr,
                r.coverage,
                r.diversity,
                r.users,
                r.seconds
            )?;
        }
    }
    Ok(())
}

//! # steerfeed-learn
//!
//! Fits the action heads from the engine's own logs. [`train`] takes served items
//! joined to their outcomes (`steerfeed::Engine::for_each_labeled_impression`, or the
//! JSON lines of `steerfeed logs export`), splits them by time, fits each head by
//! L2-regularised logistic regression over the features the scorer reads
//! (`steerfeed::rank::scorers::FEATURES`), and measures the new heads against the
//! ones in force on the later part: log-loss, AUC and expected calibration error per
//! head, and NDCG of the held-out pages re-ranked by each.
//!
//! The fitting is linfa's (`linfa-logistic`, L-BFGS through argmin): the maintained
//! Rust implementation, with the L2 penalty and intercept the heads need.

pub mod ranker;
pub mod synthetic;

use std::collections::HashMap;

use linfa::prelude::*;
use linfa_logistic::LogisticRegression;
use ndarray016::{Array1, Array2};
use pav_regression::{IsotonicRegression, Point};
use steerfeed::impression::HEADS;
use steerfeed::model::RankModel;
use steerfeed::rank::scorers::{ActionWeights, Calibration, FEATURES, HeadModels, MAX_KNOTS};
use steerfeed::{Error, HeadInputs, LabeledImpression, Result, Timestamp, UserId};

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The share of served items, the latest by time, held out for the report.
    pub holdout: f64,
    /// L2 penalty on the coefficients (the intercept is not penalised), against the
    /// summed log-loss.
    pub alpha: f64,
    /// L-BFGS iterations at most per head.
    pub max_iterations: u64,
    /// A head with fewer positives than this in the training part keeps the
    /// coefficients in force.
    pub min_positives: usize,
    /// Positions the NDCG of a held-out page counts.
    pub ndcg_k: usize,
    /// Bins of equal count for the expected calibration error.
    pub ece_bins: usize,
    /// The heads to fit ([`HEADS`] order); the others keep the coefficients in force.
    pub heads: [bool; 8],
    /// Boosting rounds (trees) of the learned second stage; 0 (the default) fits none:
    /// in the simulator a second stage fitted on the served pages orders held-out pages
    /// better and serves less creation per hour (eval/README.md, "The learning loop").
    pub ranker_rounds: usize,
    /// Levels per tree of the second stage, at most.
    pub ranker_tree_depth: usize,
    /// The second stage's learning rate.
    pub ranker_eta: f64,
    /// Candidates the second stage re-scores per request (the best by the first stage).
    pub ranker_depth: u32,
    /// Training pages with items of different grades needed to fit the second stage.
    pub ranker_min_pages: usize,
    /// Keep the second stage even when it orders the held-out pages worse than the
    /// trained heads alone (by default it is then left out of the model).
    pub keep_ranker: bool,
    /// How the trained heads are weighed against each other and the objective's other
    /// terms.
    pub balance: Balance,
    /// A fitted head with at least this many positives in the training part gets a
    /// calibration map: isotonic regression of its outcomes on its logit over the
    /// training part, kept as at most [`MAX_KNOTS`] knots. `usize::MAX`: none.
    pub calibration_min_positives: usize,
}

/// How a trained model's heads are weighed in the objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Each head's value scale is set so that, over the training items, it adds to the
    /// objective what the heads in force added (`Σ s·p` of the new head equals that of
    /// the old one): the configured weights, the tie, steering, freshness and
    /// consumption terms were set against the scale of the heads in force, and a
    /// calibrated head's probabilities are smaller, by a different factor per head.
    /// A head keeps its order of the items and gets the weight it had.
    #[default]
    Kept,
    /// Every value scale 1: the configured weights apply to the calibrated
    /// probabilities as they are (weights set as the value of one action).
    Calibrated,
}

impl std::str::FromStr for Balance {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "kept" => Ok(Self::Kept),
            "calibrated" => Ok(Self::Calibrated),
            other => Err(Error::invalid(
                "train.balance",
                format!("{other:?}: kept or calibrated"),
            )),
        }
    }
}

impl TrainConfig {
    /// Fits no calibration maps when `off` (every head's probability is then the
    /// logistic function of its logit).
    pub fn without_calibration(mut self, off: bool) -> Self {
        if off {
            self.calibration_min_positives = usize::MAX;
        }
        self
    }

    /// Fits only the heads named in `names` (from [`HEADS`]).
    pub fn only_heads<S: AsRef<str>>(mut self, names: &[S]) -> Result<Self> {
        if names.is_empty() {
            return Err(Error::invalid("train.heads", "name at least one head"));
        }
        let mut heads = [false; 8];
        for n in names {
            let n = n.as_ref().trim();
            match HEADS.iter().position(|h| *h == n) {
                Some(a) => heads[a] = true,
                None => {
                    return Err(Error::invalid(
                        "train.heads",
                        format!("unknown head {n:?} (the heads: {})", HEADS.join(", ")),
                    ));
                }
            }
        }
        self.heads = heads;
        Ok(self)
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            holdout: 0.2,
            alpha: 1.0,
            max_iterations: 200,
            min_positives: 20,
            ndcg_k: 10,
            ece_bins: 10,
            heads: [true; 8],
            ranker_rounds: 0,
            ranker_tree_depth: 6,
            ranker_eta: 0.1,
            ranker_depth: 100,
            ranker_min_pages: 50,
            keep_ranker: false,
            balance: Balance::Kept,
            calibration_min_positives: 500,
        }
    }
}

/// One head's quality on the held-out part.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeadQuality {
    /// Mean log-loss.
    pub log_loss: f64,
    /// Area under the ROC curve (0.5 when the held-out part has one class only).
    pub auc: f64,
    /// Expected calibration error over bins of equal count.
    pub ece: f64,
    /// Mean predicted probability.
    pub mean_predicted: f64,
    /// AUC within each viewer's items, averaged over the viewers with both outcomes
    /// (weighted by their positives): how well the head orders one person's feed,
    /// without the differences between people that the plain AUC also rewards.
    #[serde(default)]
    pub viewer_auc: f64,
}

/// What training did to one head.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HeadReport {
    /// The head.
    pub head: String,
    /// Positives in the training part.
    pub train_positives: usize,
    /// Positives in the held-out part.
    pub holdout_positives: usize,
    /// The head was fitted (else it keeps the coefficients in force: too few positives,
    /// or not among the heads to fit).
    pub fitted: bool,
    /// The coefficients, by feature.
    pub coefficients: Vec<(String, f32)>,
    /// The factor on the head's weight in the objective.
    #[serde(default = "one")]
    pub value_scale: f32,
    /// The heads in force, on the held-out part.
    pub current: HeadQuality,
    /// The trained heads, on the held-out part.
    pub trained: HeadQuality,
}

/// The report of one training.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// Served items read.
    pub rows: usize,
    /// Of them, left out because their outcome window was still open.
    pub incomplete_rows: usize,
    /// In the training part.
    pub train_rows: usize,
    /// In the held-out part (served at or after `split_at`).
    pub holdout_rows: usize,
    /// The first serving time of the held-out part.
    pub split_at: Timestamp,
    /// Per head.
    pub heads: Vec<HeadReport>,
    /// Held-out pages with at least one positive outcome.
    pub ndcg_pages: usize,
    /// Mean NDCG@k of those pages ordered by each item's logged score with the action
    /// value of the heads in force in place of the logged one (the logged action value
    /// goes whole: with it the negative-feedback penalty, the lighter-mode boost and any
    /// ranker's value), graded by what the viewer did at the trained model's weights.
    pub ndcg_current: f64,
    /// The same, with the trained heads' action value.
    pub ndcg_trained: f64,
    /// The same, with the trained second stage's value (absent when no second stage was
    /// fitted).
    #[serde(default)]
    pub ndcg_ranker: Option<f64>,
    /// Trees of the second stage (0 when none was fitted).
    #[serde(default)]
    pub ranker_trees: usize,
    /// The second stage is in the model: it was fitted, and it ordered the held-out
    /// pages at least as well as the trained heads alone (or `keep_ranker` was set). The
    /// same held-out pages both choose and measure it, so `ndcg_ranker` of a kept ranker
    /// leans optimistic.
    #[serde(default)]
    pub ranker_kept: bool,
    /// Seconds spent fitting.
    pub fit_seconds: f64,
}

fn one() -> f32 {
    1.0
}

/// The features of head `a` for one item, in [`FEATURES`] order without the bias.
fn features(a: usize, x: &HeadInputs) -> [f64; 8] {
    let on = |b: bool| f64::from(u8::from(b));
    [
        f64::from(x.prior[a]),
        f64::from(x.interest),
        f64::from(x.tie),
        f64::from(x.co_engagement),
        f64::from(x.creator[a]),
        on(x.followed),
        on(x.remix_chain),
        on(x.friend_cameo),
    ]
}

/// Fits one head; `None` when the labels are of one class.
fn fit_head(a: usize, rows: &[&LabeledImpression], cfg: &TrainConfig) -> Result<Option<[f32; 9]>> {
    let n = rows.len();
    let mut x = Array2::<f64>::zeros((n, FEATURES.len() - 1));
    let mut y = Array1::<bool>::from_elem(n, false);
    for (i, r) in rows.iter().enumerate() {
        for (j, v) in features(a, &r.inputs).into_iter().enumerate() {
            x[[i, j]] = v;
        }
        y[i] = r.outcomes.heads()[a];
    }
    if y.iter().all(|&v| v) || y.iter().all(|&v| !v) {
        return Ok(None);
    }
    let data = Dataset::new(x, y);
    // The loss is summed over the rows, so is its gradient: the tolerance scales with
    // them (a mean gradient below 1e-5 per row).
    let fitted = LogisticRegression::default()
        .alpha(cfg.alpha)
        .with_intercept(true)
        .max_iterations(cfg.max_iterations)
        .gradient_tolerance(1e-5 * n as f64)
        .fit(&data)
        .map_err(|e| Error::internal("train", format!("fitting {}: {e}", HEADS[a])))?;
    // linfa models the more frequent class: turn it around when that is "no action".
    let sign = if fitted.labels().pos.class { 1.0 } else { -1.0 };
    let mut c = [0.0f32; 9];
    c[0] = (sign * fitted.intercept()) as f32;
    for (j, w) in fitted.params().iter().enumerate() {
        c[j + 1] = (sign * w) as f32;
    }
    Ok(Some(c))
}

/// Head `a`'s calibration map: the isotonic regression (pool adjacent violators, by
/// `pav_regression`) of its outcomes on its logit under `heads` over `rows`, summed up
/// in [`MAX_KNOTS`] − 2 bins of equal count, each a knot at its mean logit and the mean
/// fitted probability of its items (the fit's own blocks can be a handful of items,
/// too few to read one point off), between knots at the lowest and highest logit.
/// `None` when there are fewer items than knots, the logits take fewer than two values
/// within f32's precision, or one is not finite. (`pav_regression` rather than
/// linfa-linear's isotonic regression, whose fit of 20,000 items of a logistic truth
/// pools most of them into one block.)
fn calibrate(a: usize, rows: &[&LabeledImpression], heads: &HeadModels) -> Option<Calibration> {
    let points: Vec<Point<f64>> = rows
        .iter()
        .map(|r| {
            let y = f64::from(u8::from(r.outcomes.heads()[a]));
            Point::new(f64::from(heads.logit(a, &r.inputs)), y)
        })
        .collect();
    let mut z: Vec<f64> = points.iter().map(|p| *p.x()).collect();
    if z.iter().any(|x| !x.is_finite()) {
        return None;
    }
    z.sort_by(f64::total_cmp);
    let n = z.len();
    if n < MAX_KNOTS || z[0] == z[n - 1] {
        return None;
    }
    let iso = IsotonicRegression::new_ascending(&points).ok()?;
    let blocks = iso.get_points_sorted();
    let (first, last) = (blocks.first()?, blocks.last()?);
    // The fit between its blocks' centres, flat beyond the first and the last.
    let fitted = |x: f64| -> f64 {
        if x <= *first.x() {
            *first.y()
        } else if x >= *last.x() {
            *last.y()
        } else {
            iso.interpolate(x).unwrap_or(*first.y())
        }
    };
    // The lowest and highest logits are knots too, so the map does not flatten the
    // outer halves of the first and last bins.
    let bins = MAX_KNOTS - 2;
    let mut at: Vec<(f64, f64)> = vec![(z[0], fitted(z[0]))];
    for k in 0..bins {
        let bin = &z[k * n / bins..(k + 1) * n / bins];
        let m = bin.len() as f64;
        let p = bin.iter().map(|&x| fitted(x)).sum::<f64>() / m;
        at.push((bin.iter().sum::<f64>() / m, p));
    }
    at.push((z[n - 1], fitted(z[n - 1])));
    let mut knots: Vec<(f32, f32)> = Vec::with_capacity(MAX_KNOTS);
    for (x, p) in at {
        let (x, p) = (x as f32, p.clamp(0.0, 1.0) as f32);
        match knots.last() {
            Some(&(lx, _)) if x <= lx => {}
            // Rounding may take a hair off a rising value: keep the map monotone.
            Some(&(_, lp)) => knots.push((x, p.max(lp))),
            None => knots.push((x, p)),
        }
    }
    Calibration::new(&knots).ok()
}

/// Per head, the value scale that makes the trained head add to the objective, over
/// `rows`, what the head in force added: `Σ s_cur·p_cur / Σ p_new`. A head that was not
/// fitted keeps its scale; so does one whose probabilities sum to nothing.
fn value_scales(
    rows: &[&LabeledImpression],
    current: &HeadModels,
    trained: &HeadModels,
    fitted: &[bool; 8],
) -> [f32; 8] {
    let mut old = [0.0f64; 8];
    let mut new = [0.0f64; 8];
    for r in rows {
        let (p, q) = (current.probs(&r.inputs), trained.probs(&r.inputs));
        for (a, (p, q)) in p.heads().into_iter().zip(q.heads()).enumerate() {
            old[a] += f64::from(current.value_scale[a]) * f64::from(p);
            new[a] += f64::from(q);
        }
    }
    let max = f64::from(steerfeed::rank::scorers::MAX_VALUE_SCALE);
    std::array::from_fn(|a| {
        let s = old[a] / new[a];
        if fitted[a] && s.is_finite() && s > 0.0 {
            s.clamp(1.0 / max, max) as f32
        } else {
            current.value_scale[a]
        }
    })
}

/// Area under the ROC curve of predictions `p` against labels `y` (by ranks, ties
/// sharing their mean rank); 0.5 when `y` has one class only.
pub fn auc(p: &[f64], y: &[bool]) -> f64 {
    // Pairs only: a longer side's tail is not scored.
    let n = p.len().min(y.len());
    let (p, y) = (&p[..n], &y[..n]);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let positives = y.iter().filter(|&&v| v).count();
    let negatives = y.len() - positives;
    if positives == 0 || negatives == 0 {
        return 0.5;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| y[order[k]]).count() as f64 * mean_rank;
        i = j + 1;
    }
    (rank_sum - (positives * (positives + 1)) as f64 / 2.0) / (positives * negatives) as f64
}

/// The AUC within each group (`groups[i]` is item `i`'s), averaged over the groups
/// with both classes, weighted by their positives; 0.5 when no group has both.
pub fn grouped_auc<G: Ord>(p: &[f64], y: &[bool], groups: &[G]) -> f64 {
    // In group order, so that the sum, and its last digits, are the same on every run.
    let mut by: std::collections::BTreeMap<&G, (Vec<f64>, Vec<bool>)> = Default::default();
    for ((&p, &y), g) in p.iter().zip(y).zip(groups) {
        let e = by.entry(g).or_default();
        e.0.push(p);
        e.1.push(y);
    }
    let (mut sum, mut weight) = (0.0, 0.0);
    for (p, y) in by.values() {
        let pos = y.iter().filter(|&&v| v).count();
        if pos == 0 || pos == y.len() {
            continue;
        }
        sum += pos as f64 * auc(p, y);
        weight += pos as f64;
    }
    if weight > 0.0 { sum / weight } else { 0.5 }
}

/// Log-loss, AUC, ECE and mean of predictions `p` against labels `y`; `viewer_auc` is
/// the AUC within the groups `viewers` (one group when `None`).
pub fn quality(p: &[f64], y: &[bool], viewers: Option<&[&UserId]>, bins: usize) -> HeadQuality {
    let n = p.len().max(1) as f64;
    let eps = 1e-7;
    let log_loss = p
        .iter()
        .zip(y)
        .map(|(&p, &y)| {
            let p = p.clamp(eps, 1.0 - eps);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / n;
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let auc_all = auc(p, y);
    let bins = bins.max(1);
    let mut ece = 0.0;
    for b in 0..bins {
        let lo = b * order.len() / bins;
        let hi = (b + 1) * order.len() / bins;
        if hi <= lo {
            continue;
        }
        let idx = &order[lo..hi];
        let mp = idx.iter().map(|&i| p[i]).sum::<f64>() / idx.len() as f64;
        let my = idx.iter().filter(|&&i| y[i]).count() as f64 / idx.len() as f64;
        ece += (idx.len() as f64 / n) * (mp - my).abs();
    }
    HeadQuality {
        log_loss,
        auc: auc_all,
        ece,
        mean_predicted: p.iter().sum::<f64>() / n,
        viewer_auc: viewers.map_or(auc_all, |g| grouped_auc(p, y, g)),
    }
}

/// NDCG@k of `gains` in the order of `scores` (higher first).
pub fn ndcg(scores: &[f64], gains: &[f64], k: usize) -> f64 {
    let dcg = |order: &[usize]| {
        order
            .iter()
            .take(k)
            .enumerate()
            .map(|(i, &j)| gains[j] / ((i + 2) as f64).log2())
            .sum::<f64>()
    };
    let mut by_score: Vec<usize> = (0..scores.len()).collect();
    by_score.sort_by(|&i, &j| scores[j].total_cmp(&scores[i]).then(i.cmp(&j)));
    let mut ideal: Vec<usize> = (0..gains.len()).collect();
    ideal.sort_by(|&i, &j| gains[j].total_cmp(&gains[i]));
    let best = dcg(&ideal);
    if best <= 0.0 {
        0.0
    } else {
        dcg(&by_score) / best
    }
}

/// The creation-weighted value of what the viewer did: `Σ_a w_a · [did a]`.
pub(crate) fn gain(w: &ActionWeights, r: &LabeledImpression) -> f64 {
    w.heads()
        .iter()
        .zip(r.outcomes.heads())
        .map(|(&w, on)| if on { f64::from(w) } else { 0.0 })
        .sum()
}

/// `Σ_a w_a · p_a` under `heads`, from the logged inputs, as the scorer computes it.
fn action_value(w: &ActionWeights, heads: &HeadModels, x: &HeadInputs) -> f64 {
    w.heads()
        .iter()
        .zip(heads.probs(x).heads())
        .map(|(&w, p)| f64::from(w) * f64::from(p))
        .sum()
}

/// Trains heads on `rows` (served items with outcomes, in any order) against `current`,
/// the heads in force, with the objective's action `weights`; returns the model
/// (its id `m-` and the CRC-32 of its coefficients, value scales, calibration maps and
/// ranker) and the report.
pub fn train(
    rows: &[LabeledImpression],
    current: &HeadModels,
    weights: &ActionWeights,
    cfg: &TrainConfig,
) -> Result<(RankModel, TrainReport)> {
    if !(cfg.holdout > 0.0 && cfg.holdout < 1.0) {
        return Err(Error::invalid("train.holdout", "must be between 0 and 1"));
    }
    if cfg.ranker_rounds > 10_000 {
        return Err(Error::invalid("train.ranker_rounds", "at most 10000 trees"));
    }
    if cfg.ranker_depth == 0 || cfg.ranker_depth > steerfeed::rank::scorers::blend::MAX_DEPTH {
        return Err(Error::invalid(
            "train.ranker_depth",
            format!(
                "re-scores 1 to {} candidates",
                steerfeed::rank::scorers::blend::MAX_DEPTH
            ),
        ));
    }
    let trees_ok = (1..=16).contains(&cfg.ranker_tree_depth);
    let eta_ok = cfg.ranker_eta > 0.0 && cfg.ranker_eta <= 1.0;
    if !(trees_ok && eta_ok) {
        return Err(Error::invalid(
            "train.ranker",
            "trees of 1 to 16 levels, a learning rate in (0, 1]",
        ));
    }
    let mut sorted: Vec<&LabeledImpression> = rows.iter().filter(|r| r.complete).collect();
    let incomplete_rows = rows.len() - sorted.len();
    sorted.sort_by_key(|r| r.at);
    let cut = ((1.0 - cfg.holdout) * sorted.len() as f64) as usize;
    let Some(split) = sorted.get(cut).map(|r| r.at) else {
        return Err(Error::invalid(
            "train",
            format!(
                "{} served items whose outcome window has closed ({incomplete_rows} more \
                 still open): too few to hold some out",
                sorted.len()
            ),
        ));
    };
    let (train_rows, holdout): (Vec<&LabeledImpression>, Vec<&LabeledImpression>) =
        sorted.iter().partition(|r| r.at < split);
    if train_rows.is_empty() {
        return Err(Error::invalid(
            "train",
            "every served item has the same time: nothing is left to train on before the held-out part",
        ));
    }
    let started = std::time::Instant::now();
    let mut trained = *current;
    let positives: [usize; 8] =
        std::array::from_fn(|a| train_rows.iter().filter(|r| r.outcomes.heads()[a]).count());
    let mut fitted = [false; 8];
    for (a, done) in fitted.iter_mut().enumerate() {
        if !cfg.heads[a] || positives[a] < cfg.min_positives {
            continue;
        }
        if let Some(c) = fit_head(a, &train_rows, cfg)? {
            trained.coef[a] = c;
            *done = true;
        }
    }
    // A refitted head's old map read the old logit: it gets a new one or none.
    trained.validate()?;
    for (a, &done) in fitted.iter().enumerate() {
        if done {
            trained.calibration[a] = (positives[a] >= cfg.calibration_min_positives)
                .then(|| calibrate(a, &train_rows, &trained))
                .flatten();
        }
    }
    trained.value_scale = match cfg.balance {
        Balance::Kept => value_scales(&train_rows, current, &trained, &fitted),
        // A head that was not refitted keeps the weight it had.
        Balance::Calibrated => std::array::from_fn(|a| {
            if fitted[a] {
                1.0
            } else {
                current.value_scale[a]
            }
        }),
    };
    trained.validate()?;
    // What the heads in force weigh the heads by, and what the new model weighs them
    // by: the value of an action, for the grades and the held-out pages, is the latter.
    let in_force = current.weigh(weights);
    let weights = &trained.weigh(weights);
    let ranker = ranker::fit(&train_rows, &trained, weights, cfg)?;
    let blend = ranker.as_ref().map(|r| r.compile()).transpose()?;
    let fit_seconds = started.elapsed().as_secs_f64();

    let viewers: Vec<&UserId> = holdout.iter().map(|r| &r.user).collect();
    let mut heads = Vec::new();
    for (a, head) in HEADS.iter().enumerate() {
        let y: Vec<bool> = holdout.iter().map(|r| r.outcomes.heads()[a]).collect();
        let p = |m: &HeadModels| -> Vec<f64> {
            holdout
                .iter()
                .map(|r| f64::from(m.prob(a, &r.inputs)))
                .collect()
        };
        heads.push(HeadReport {
            head: (*head).to_owned(),
            train_positives: positives[a],
            holdout_positives: y.iter().filter(|&&v| v).count(),
            fitted: fitted[a],
            coefficients: FEATURES
                .iter()
                .map(|f| (*f).to_owned())
                .zip(trained.coef[a])
                .collect(),
            value_scale: trained.value_scale[a],
            current: quality(&p(current), &y, Some(&viewers), cfg.ece_bins),
            trained: quality(&p(&trained), &y, Some(&viewers), cfg.ece_bins),
        });
    }

    // Held-out pages: each item's logged terms but the action value, plus the action
    // value of the heads in force, of the trained heads, or of the ranker. The logged
    // action value goes whole (with the negative-feedback penalty and the lighter-mode
    // boost, which all three then lack alike), so the items served by another model,
    // or re-scored by a ranker, compare as fairly as the rest.
    let mut pages: HashMap<&str, Vec<&LabeledImpression>> = HashMap::new();
    for r in &holdout {
        pages.entry(r.request.as_str()).or_default().push(r);
    }
    let (mut n, mut cur, mut new, mut ranked) = (0usize, 0.0, 0.0, 0.0);
    let mut requests: Vec<&&str> = pages.keys().collect();
    requests.sort();
    for req in requests {
        let items = &pages[*req];
        let gains: Vec<f64> = items.iter().map(|r| gain(weights, r)).collect();
        if gains.iter().all(|&g| g <= 0.0) {
            continue;
        }
        let base = |r: &LabeledImpression| {
            f64::from(r.breakdown.total) - f64::from(r.breakdown.action_value)
        };
        let now: Vec<f64> = items
            .iter()
            .map(|r| base(r) + action_value(&in_force, current, &r.inputs))
            .collect();
        let then: Vec<f64> = items
            .iter()
            .map(|r| base(r) + action_value(weights, &trained, &r.inputs))
            .collect();
        cur += ndcg(&now, &gains, cfg.ndcg_k);
        new += ndcg(&then, &gains, cfg.ndcg_k);
        if let Some(b) = &blend {
            let by_ranker: Vec<f64> = items
                .iter()
                .map(|r| base(r) + f64::from(b.value(&ranker::row(&trained, r))))
                .collect();
            ranked += ndcg(&by_ranker, &gains, cfg.ndcg_k);
        }
        n += 1;
    }
    let ndcg_trained = if n > 0 { new / n as f64 } else { 0.0 };
    let ndcg_ranker = blend
        .as_ref()
        .map(|_| if n > 0 { ranked / n as f64 } else { 0.0 });
    let ranker_trees = ranker.as_ref().map_or(0, |r| r.trees.len());
    let ranker =
        ranker.filter(|_| cfg.keep_ranker || ndcg_ranker.is_some_and(|r| r >= ndcg_trained));
    let report = TrainReport {
        rows: rows.len(),
        incomplete_rows,
        train_rows: train_rows.len(),
        holdout_rows: holdout.len(),
        split_at: split,
        heads,
        ndcg_pages: n,
        ndcg_current: if n > 0 { cur / n as f64 } else { 0.0 },
        ndcg_trained,
        ndcg_ranker,
        ranker_trees,
        ranker_kept: ranker.is_some(),
        fit_seconds,
    };
    let mut crc = crc32fast::Hasher::new();
    for c in trained.coef.iter().flatten().chain(&trained.value_scale) {
        crc.update(&c.to_le_bytes());
    }
    // Each map under its head's index and length, so the same map on another head is
    // another model.
    for (a, c) in trained.calibration.iter().enumerate() {
        let knots: Vec<(f32, f32)> = c.iter().flat_map(|c| c.knots()).collect();
        crc.update(&[a as u8, knots.len() as u8]);
        for (x, p) in knots {
            crc.update(&x.to_le_bytes());
            crc.update(&p.to_le_bytes());
        }
    }
    if let Some(r) = &ranker {
        crc.update(&serde_json::to_vec(r).map_err(|e| Error::internal("train", e))?);
    }
    let crc = crc.finalize();
    let metadata = serde_json::json!({
        "trained_at": Timestamp::now(),
        "fitter": "linfa-logistic 0.8 (L2-regularised logistic regression, L-BFGS)",
        "ranker_fitter": ranker.as_ref().map(|_| "hessboost 0.4 (LambdaMART, rank:ndcg)"),
        "config": cfg,
        "report": report,
    });
    let mut model = RankModel::from_heads(format!("m-{crc:08x}"), &trained, metadata);
    if let Some(r) = ranker {
        model = model.with_ranker(r);
    }
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fit_recovers_the_generating_model_and_is_calibrated() {
        let rows = synthetic::generate(200_000, 7);
        let current = HeadModels::from_config(&steerfeed::rank::scorers::ScorerConfig::default());
        let weights = steerfeed::rank::scorers::ScorerConfig::default().weights;
        let (model, report) = train(&rows, &current, &weights, &TrainConfig::default()).unwrap();
        let truth = synthetic::truth();
        let fitted = model.head_models().unwrap();
        // like (6) and complete_view (7) have thousands of positives: their coefficients
        // come back within a tenth or so of the truth.
        for a in [6, 7] {
            for f in 0..9 {
                let (got, want) = (fitted.coef[a][f], truth.coef[a][f]);
                assert!(
                    (got - want).abs() < 0.2,
                    "head {a} feature {f}: {got} vs {want}"
                );
            }
            let h = &report.heads[a];
            assert!(h.fitted && h.holdout_positives >= 1_000, "{h:?}");
            assert!(h.trained.ece <= 0.02, "{h:?}");
            assert!(h.trained.log_loss < h.current.log_loss, "{h:?}");
        }
        // The labels' model ranks much as the hand-set one does here: the held-out pages'
        // NDCG is no worse beyond noise.
        assert!(
            report.ndcg_trained >= report.ndcg_current - 0.005,
            "{report:?}"
        );
    }

    #[test]
    fn auc_and_ece_match_hand_worked_cases() {
        // Perfectly separated: AUC 1; all equal scores: AUC 0.5.
        let q = quality(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true], None, 2);
        assert!((q.auc - 1.0).abs() < 1e-12);
        // Bins {0.1, 0.2} (mean 0.15, rate 0) and {0.8, 0.9} (mean 0.85, rate 1):
        // ECE = 0.5·0.15 + 0.5·0.15.
        assert!((q.ece - 0.15).abs() < 1e-12);
        let q = quality(&[0.5; 4], &[false, true, false, true], None, 1);
        assert!((q.auc - 0.5).abs() < 1e-12);
        assert!(q.ece.abs() < 1e-12, "calibrated on average");
        assert!((q.log_loss - std::f64::consts::LN_2).abs() < 1e-9);
        // Reversed: AUC 0.
        let q = quality(&[0.9, 0.1], &[false, true], None, 1);
        assert!(q.auc.abs() < 1e-12);
    }

    #[test]
    fn only_the_named_heads_are_fitted() {
        let rows = synthetic::generate(20_000, 3);
        let scorer = steerfeed::rank::scorers::ScorerConfig::default();
        let current = HeadModels::from_config(&scorer);
        let cfg = TrainConfig {
            ranker_rounds: 100,
            ..TrainConfig::default()
        }
        .only_heads(&["like", "complete_view"])
        .unwrap();
        let (model, report) = train(&rows, &current, &scorer.weights, &cfg).unwrap();
        let fitted = model.head_models().unwrap();
        for (a, h) in report.heads.iter().enumerate() {
            let named = h.head == "like" || h.head == "complete_view";
            assert_eq!(h.fitted, named, "{}", h.head);
            if !named {
                assert_eq!(fitted.coef[a], current.coef[a], "{}", h.head);
            }
        }
        // The second stage is in the model exactly when it ordered the held-out pages at
        // least as well as the heads alone, unless it is kept regardless.
        let by_ranker = report.ndcg_ranker.expect("a ranker was fitted");
        assert_eq!(report.ranker_kept, by_ranker >= report.ndcg_trained);
        assert_eq!(model.ranker.is_some(), report.ranker_kept);
        // One tree of one split at a tiny rate orders no better than the heads; kept only
        // when asked.
        let weak = TrainConfig {
            ranker_rounds: 1,
            ranker_tree_depth: 1,
            ranker_eta: 1e-3,
            ..cfg
        };
        let (dropped, r) = train(&rows, &current, &scorer.weights, &weak).unwrap();
        let worse = r.ndcg_ranker.expect("a ranker was fitted");
        assert!(worse < r.ndcg_trained, "{worse} {}", r.ndcg_trained);
        assert!(dropped.ranker.is_none() && !r.ranker_kept && r.ranker_trees == 1);
        let kept = TrainConfig {
            keep_ranker: true,
            ..weak
        };
        let (model, r) = train(&rows, &current, &scorer.weights, &kept).unwrap();
        assert!(r.ndcg_ranker.is_some() && r.ranker_kept && model.ranker.is_some());
        assert!(TrainConfig::default().only_heads(&["likes"]).is_err());
        assert!(TrainConfig::default().only_heads::<&str>(&[]).is_err());
    }

    /// A uniform draw in [0, 1) from a SplitMix64 state.
    fn uniform(state: &mut u64) -> f64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / 2f64.powi(64)
    }

    #[test]
    fn a_head_whose_outcomes_leave_the_logistic_curve_is_calibrated_by_its_map() {
        // Completed views drawn through a steeper, squashed link of the truth's logit:
        // between 2 % and 52 %, which no logistic function of the features reaches.
        let truth = synthetic::truth();
        let mut rows = synthetic::generate(120_000, 11);
        let mut state = 17u64;
        for r in &mut rows {
            let z = f64::from(truth.logit(7, &r.inputs));
            let p = 0.02 + 0.5 / (1.0 + (-3.0 * (z - 0.5)).exp());
            r.outcomes.complete_view = uniform(&mut state) < p;
        }
        let scorer = steerfeed::rank::scorers::ScorerConfig::default();
        let current = HeadModels::from_config(&scorer);
        let none = TrainConfig::default().without_calibration(true);
        let (plain_model, plain) = train(&rows, &current, &scorer.weights, &none).unwrap();
        let (model, calibrated) =
            train(&rows, &current, &scorer.weights, &TrainConfig::default()).unwrap();
        let (p, c) = (&plain.heads[7], &calibrated.heads[7]);
        assert!(c.holdout_positives >= 1_000, "{c:?}");
        assert!(
            c.trained.ece < 0.5 * p.trained.ece && c.trained.ece <= 0.01,
            "ECE {} with the map, {} without",
            c.trained.ece,
            p.trained.ece
        );
        assert!(c.trained.log_loss < p.trained.log_loss);
        // The map only relabels the logit: the items' order within the head is kept.
        assert!((c.trained.auc - p.trained.auc).abs() < 0.01, "{c:?} {p:?}");
        let heads = model.head_models().unwrap();
        assert!(
            plain_model
                .head_models()
                .unwrap()
                .calibration
                .iter()
                .all(Option::is_none)
        );
        assert!(heads.calibration[7].is_some());
        // Refitted without maps while that model is in force, no head keeps an old map
        // (it read the old logit).
        let (refit, _) = train(&rows, &heads, &scorer.weights, &none).unwrap();
        assert!(
            refit
                .head_models()
                .unwrap()
                .calibration
                .iter()
                .all(Option::is_none)
        );
        // A row whose inputs overflow is refused, not a panic.
        let mut broken = rows.clone();
        broken[10].inputs.interest = f32::INFINITY;
        broken[20].inputs.prior[7] = f32::NAN;
        assert!(train(&broken, &current, &scorer.weights, &TrainConfig::default()).is_err());
        // Heads with fewer training positives than the threshold keep the logistic curve.
        for (a, h) in calibrated.heads.iter().enumerate() {
            let calibrated = heads.calibration[a].is_some();
            assert_eq!(
                calibrated,
                h.fitted && h.train_positives >= TrainConfig::default().calibration_min_positives,
                "{}",
                h.head
            );
        }
    }

    #[test]
    fn the_kept_balance_gives_each_head_the_value_the_heads_in_force_gave() {
        let rows = synthetic::generate(60_000, 5);
        let scorer = steerfeed::rank::scorers::ScorerConfig::default();
        let current = HeadModels::from_config(&scorer);
        let (model, report) =
            train(&rows, &current, &scorer.weights, &TrainConfig::default()).unwrap();
        let heads = model.head_models().unwrap();
        let training: Vec<&LabeledImpression> =
            rows.iter().filter(|r| r.at < report.split_at).collect();
        assert_eq!(training.len(), report.train_rows);
        let sum = |m: &HeadModels, a: usize| -> f64 {
            training
                .iter()
                .map(|r| f64::from(m.value_scale[a]) * f64::from(m.probs(&r.inputs).heads()[a]))
                .sum()
        };
        let mut moved = 0;
        for (a, h) in report.heads.iter().enumerate() {
            assert_eq!(h.value_scale, heads.value_scale[a]);
            if !h.fitted {
                assert_eq!(heads.value_scale[a], 1.0, "{}", h.head);
                continue;
            }
            let (old, new) = (sum(&current, a), sum(&heads, a));
            assert!(
                (new - old).abs() <= 1e-3 * old,
                "{}: {new} vs {old}",
                h.head
            );
            if (heads.value_scale[a] - 1.0).abs() > 0.1 {
                moved += 1;
            }
        }
        assert!(moved >= 4, "{:?}", heads.value_scale);
        // Trained again on other rows with that model in force, the scales of the heads
        // with thousands of positives barely move: both models are calibrated, so the balance
        // passes on as it was.
        let again = synthetic::generate(60_000, 6);
        let (next, _) = train(&again, &heads, &scorer.weights, &TrainConfig::default()).unwrap();
        let next = next.head_models().unwrap();
        let mut checked = 0;
        for (a, h) in report.heads.iter().enumerate() {
            let (s, t) = (heads.value_scale[a], next.value_scale[a]);
            if h.train_positives >= 5_000 {
                assert!((t / s - 1.0).abs() < 0.05, "{}: {s} then {t}", h.head);
                checked += 1;
            }
        }
        assert!(checked >= 2);
        // The calibrated balance weighs every head as configured.
        let calibrated = TrainConfig {
            balance: Balance::Calibrated,
            ..TrainConfig::default()
        };
        let (m, r) = train(&rows, &current, &scorer.weights, &calibrated).unwrap();
        assert_eq!(m.head_models().unwrap().value_scale, [1.0; 8]);
        assert!(m.value_scale.is_empty());
        assert!(r.heads.iter().all(|h| h.value_scale == 1.0));
        assert!("kept".parse::<Balance>().unwrap() == Balance::Kept);
        assert!("calibrated".parse::<Balance>().unwrap() == Balance::Calibrated);
        assert!("even".parse::<Balance>().is_err());
    }

    #[test]
    fn the_viewer_auc_ignores_differences_between_viewers() {
        // Viewer a's scores are all above b's, and a's negative outranks b's positive:
        // the pooled AUC is 3/4, but within each viewer the positive comes first.
        let p = [0.9, 0.8, 0.2, 0.1];
        let y = [true, false, true, false];
        let (a, b) = (UserId::new("a").unwrap(), UserId::new("b").unwrap());
        let v = [&a, &a, &b, &b];
        let q = quality(&p, &y, Some(&v), 1);
        assert!((q.auc - 0.75).abs() < 1e-12);
        assert!((q.viewer_auc - 1.0).abs() < 1e-12);
        // Weighted by positives: a (one positive, AUC 0) and b (two positives, AUC 1).
        let p = [0.1, 0.9, 0.9, 0.8, 0.1];
        let y = [true, false, true, true, false];
        let v = [&a, &a, &b, &b, &b];
        assert!((grouped_auc(&p, &y, &v) - 2.0 / 3.0).abs() < 1e-12);
        // A viewer with one class only counts for nothing.
        assert!((grouped_auc(&[0.3, 0.4], &[true, true], &[&a, &b]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn ndcg_is_one_for_the_ideal_order_and_less_otherwise() {
        let gains = [0.0, 3.0, 1.0];
        assert!((ndcg(&[0.0, 2.0, 1.0], &gains, 10) - 1.0).abs() < 1e-12);
        // Order (0, 2, 1): DCG = 0 + 1/log2(3) + 3/log2(4); ideal = 3 + 1/log2(3).
        let want = (1.0 / 3f64.log2() + 3.0 / 2.0) / (3.0 + 1.0 / 3f64.log2());
        assert!((ndcg(&[2.0, 0.0, 1.0], &gains, 10) - want).abs() < 1e-12);
        assert_eq!(ndcg(&[1.0, 2.0], &[0.0, 0.0], 10), 0.0);
    }
}

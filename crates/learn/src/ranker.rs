//! The learned second stage of the blend: LambdaMART (`rank:ndcg`) over the served
//! pages, fitted by hessboost, a maintained pure-Rust reimplementation of XGBoost's
//! gradient boosting (its LambdaRank objective is XGBoost's), so the build needs no C++
//! library. The trees are copied into the model file's own layout
//! ([`BlendRankerFile`]), which the engine walks without hessboost.

use std::collections::BTreeMap;

use hessboost::objective::LambdaRank;
use hessboost::prelude::*;
use steerfeed::rank::scorers::{
    ActionWeights, BLEND_FEATURES, BlendRankerFile, HeadModels, blend::BlendTree, blend_features,
};
use steerfeed::{Error, LabeledImpression, Result};

use crate::{TrainConfig, gain};

/// The relevance grade of an item: `round(log2(1 + gain))`, so that LambdaMART's NDCG
/// gain `2^grade − 1` is about the creation-weighted value of what the viewer did.
pub(crate) fn grade(gain: f64) -> f32 {
    (1.0 + gain.max(0.0)).log2().round().min(31.0) as f32
}

/// The ranker's feature row of a logged item, with the heads' probabilities under
/// `heads`.
pub(crate) fn row(heads: &HeadModels, r: &LabeledImpression) -> [f32; BLEND_FEATURES.len()] {
    let p = heads.probs(&r.inputs);
    blend_features(&p, &r.inputs, r.breakdown.freshness, r.breakdown.cold_start)
}

fn plain_value(w: &ActionWeights, heads: &HeadModels, r: &LabeledImpression) -> f64 {
    w.heads()
        .iter()
        .zip(heads.probs(&r.inputs).heads())
        .map(|(&w, p)| f64::from(w) * f64::from(p))
        .sum()
}

/// Fits the ranker on the training part's pages (the served items of each request,
/// graded by what the viewer did), with the heads' probabilities under `heads`, the
/// model's new heads. `None` when fewer than `cfg.ranker_min_pages` pages have items
/// of different grades (nothing to order), or when `cfg.ranker_rounds` is 0.
pub fn fit(
    rows: &[&LabeledImpression],
    heads: &HeadModels,
    weights: &ActionWeights,
    cfg: &TrainConfig,
) -> Result<Option<BlendRankerFile>> {
    if cfg.ranker_rounds == 0 {
        return Ok(None);
    }
    let mut pages: BTreeMap<&str, Vec<&LabeledImpression>> = BTreeMap::new();
    for r in rows {
        pages.entry(r.request.as_str()).or_default().push(r);
    }
    let (mut x, mut y, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    for items in pages.values() {
        let grades: Vec<f32> = items.iter().map(|r| grade(gain(weights, r))).collect();
        if grades.iter().all(|&g| g == grades[0]) {
            continue;
        }
        for (r, g) in items.iter().zip(grades) {
            x.extend_from_slice(&row(heads, r));
            y.push(g);
        }
        sizes.push(items.len());
    }
    if sizes.len() < cfg.ranker_min_pages.max(1) {
        return Ok(None);
    }
    let n = y.len();
    let boost = |e: HessboostError| Error::internal("train.ranker", e.to_string());
    let data = DMatrix::from_dense(&x, n, BLEND_FEATURES.len())
        .and_then(|d| d.with_labels(&y))
        .and_then(|d| d.with_group_sizes(&sizes))
        .map_err(boost)?;
    let params = TrainingParams::builder()
        .objective(Objective::RankNdcg(LambdaRank::default()))
        .max_depth(cfg.ranker_tree_depth)
        .eta(cfg.ranker_eta)
        .seed(0)
        .build()
        .map_err(boost)?;
    let model = Trainer::new(&params, &data, cfg.ranker_rounds)
        .train()
        .map_err(boost)?
        .model;
    let (base_score, trees) = convert(&model)?;
    let mut file = BlendRankerFile {
        features: BLEND_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        depth: cfg.ranker_depth,
        base_score,
        shift: 0.0,
        scale: 1.0,
        trees,
    };
    // The line that puts the margin on the action value's scale: the same mean and
    // spread as `Σ_a s_a·w_a·p_a` of the new heads, over the training rows.
    let compiled = file.compile()?;
    let (mut m, mut v) = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for r in rows {
        m.push(f64::from(compiled.margin(&row(heads, r))));
        v.push(plain_value(weights, heads, r));
    }
    let (mean_m, sd_m) = mean_sd(&m);
    let (mean_v, sd_v) = mean_sd(&v);
    let scale = sd_v / sd_m;
    let shift = mean_v - scale * mean_m;
    // Trees that barely separate the rows (a spread near 0) would need a scale beyond
    // what a model may hold: there is nothing for them to add.
    if !(scale.is_finite() && shift.is_finite() && scale <= 1e5 && shift.abs() <= 1e5) {
        return Ok(None);
    }
    file.scale = scale as f32;
    file.shift = shift as f32;
    file.compile()?;
    Ok(Some(file))
}

/// hessboost's trees in the model file's layout, each leaf scaled by its tree's
/// weight, and the margin before any tree.
fn convert(model: &BoostedModel) -> Result<(f32, Vec<BlendTree>)> {
    let mut trees = Vec::with_capacity(model.trees().len());
    for (tree, weight) in model.trees().iter().zip(model.tree_weights()) {
        if tree.has_categorical_splits() || tree.is_vector_leaf() || tree.linear_leaves().is_some()
        {
            return Err(Error::internal(
                "train.ranker",
                "the fitted trees are not plain threshold trees",
            ));
        }
        let nodes = tree.nodes();
        let mut t = BlendTree {
            feature: Vec::with_capacity(nodes.len()),
            threshold: Vec::with_capacity(nodes.len()),
            left: Vec::with_capacity(nodes.len()),
            right: Vec::with_capacity(nodes.len()),
            value: Vec::with_capacity(nodes.len()),
        };
        for node in nodes {
            if node.is_leaf() {
                t.feature.push(-1);
                t.threshold.push(0.0);
                t.left.push(0);
                t.right.push(0);
                t.value.push(node.leaf_value * weight);
            } else {
                t.feature.push(node.split_feature as i32);
                t.threshold.push(node.split_cond);
                t.left.push(node.left as u32);
                t.right.push(node.right as u32);
                t.value.push(0.0);
            }
        }
        trees.push(t);
    }
    Ok((model.base_score(), trees))
}

fn mean_sd(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine's walk of the copied trees gives hessboost's own margins.
    #[test]
    fn the_copied_trees_score_as_hessboost_does() {
        // 300 groups of 8 rows of random features; the grade depends on a few of them.
        let (groups, per, w) = (300usize, 8usize, BLEND_FEATURES.len());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32
        };
        let n = groups * per;
        let x: Vec<f32> = (0..n * w).map(|_| next() * 2.0 - 1.0).collect();
        let y: Vec<f32> = (0..n)
            .map(|i| {
                let r = &x[i * w..(i + 1) * w];
                let s = 2.0 * r[0] + r[24] - r[9] + 0.3 * next();
                (s.max(0.0) * 2.0).round().min(4.0)
            })
            .collect();
        let data = DMatrix::from_dense(&x, n, w)
            .unwrap()
            .with_labels(&y)
            .unwrap()
            .with_group_sizes(&vec![per; groups])
            .unwrap();
        let params = TrainingParams::builder()
            .objective(Objective::RankNdcg(LambdaRank::default()))
            .max_depth(4)
            .eta(0.3)
            .build()
            .unwrap();
        let model = Trainer::new(&params, &data, 20).train().unwrap().model;
        let (base_score, trees) = convert(&model).unwrap();
        let file = BlendRankerFile {
            features: BLEND_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            depth: 10,
            base_score,
            shift: 0.0,
            scale: 1.0,
            trees,
        };
        let ours = file.compile().unwrap();
        assert_eq!(file.trees.len(), 20);
        let mut distinct = std::collections::BTreeSet::new();
        for i in 0..n {
            let r: [f32; BLEND_FEATURES.len()] = x[i * w..(i + 1) * w].try_into().unwrap();
            let theirs = model.predict_margin_row(&r, ..).unwrap();
            let got = ours.margin(&r);
            assert!(
                (got - theirs).abs() <= 1e-5 * theirs.abs().max(1.0),
                "row {i}: {got} vs {theirs}"
            );
            distinct.insert(got.to_bits());
        }
        assert!(
            distinct.len() > 50,
            "the trees split: {} distinct margins",
            distinct.len()
        );
    }

    #[test]
    fn grades_follow_the_value_of_what_was_done() {
        assert_eq!(grade(0.0), 0.0);
        assert_eq!(grade(-3.0), 0.0);
        // A like (1): 2^1 − 1 = 1.
        assert_eq!(grade(1.0), 1.0);
        // A create (10) and a like: log2(12) ≈ 3.58.
        assert_eq!(grade(11.0), 4.0);
        assert_eq!(grade(1e30), 31.0);
    }
}

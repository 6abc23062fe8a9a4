//! The learned second stage of the blend: a gradient-boosted ranker (LambdaMART,
//! fitted by `steerfeed train`) that replaces the action heads' `Σ_a s_a·w_a·p_a` for the
//! best candidates of a request.
//!
//! The ranker reads what the heads read and what they said ([`BLEND_FEATURES`]), and
//! its raw score is put on the action value's scale by a line fitted at training
//! (`value = shift + scale · margin`, matching the mean and spread of `Σ_a s_a·w_a·p_a` on
//! the training rows). The terms that are policy rather than prediction stay outside
//! it and are added as before: tie, steering, the consumption cost, freshness, cold
//! start, wellbeing, the negative-feedback penalty and the lighter-mode creation
//! boost. A ranker therefore reorders what people are predicted to do; it cannot undo
//! a steering request or a wellbeing rule.
//!
//! Only the `depth` best candidates by the first-stage score are re-scored (a cascade,
//! as the first stage is cheap and the trees are not); the rest keep their first-stage
//! score, which is on the same scale.

use steerfeed_core::{ActionProbs, Error, HeadInputs, Result};

/// The ranker's features, in order: each head's probability (the heads in force), the
/// video's own smoothed rate and the creator's lift per head (logits), the shared head
/// inputs, and the freshness and cold-start terms of the score.
pub const BLEND_FEATURES: [&str; 32] = [
    "p_create",
    "p_remix",
    "p_cameo_use",
    "p_comment",
    "p_share",
    "p_follow",
    "p_like",
    "p_complete_view",
    "prior_create",
    "prior_remix",
    "prior_cameo_use",
    "prior_comment",
    "prior_share",
    "prior_follow",
    "prior_like",
    "prior_complete_view",
    "creator_create",
    "creator_remix",
    "creator_cameo_use",
    "creator_comment",
    "creator_share",
    "creator_follow",
    "creator_like",
    "creator_complete_view",
    "interest",
    "tie",
    "co_engagement",
    "followed",
    "remix_chain",
    "friend_cameo",
    "freshness",
    "cold_start",
];

/// The number of [`BLEND_FEATURES`].
pub const BLEND_WIDTH: usize = BLEND_FEATURES.len();

/// The feature row of one candidate, in [`BLEND_FEATURES`] order.
pub fn blend_features(
    p: &ActionProbs,
    x: &HeadInputs,
    freshness: f32,
    cold_start: f32,
) -> [f32; BLEND_WIDTH] {
    let on = |b: bool| f32::from(u8::from(b));
    let mut row = [0.0f32; BLEND_WIDTH];
    row[..8].copy_from_slice(&p.heads());
    row[8..16].copy_from_slice(&x.prior);
    row[16..24].copy_from_slice(&x.creator);
    row[24..].copy_from_slice(&[
        x.interest,
        x.tie,
        x.co_engagement,
        on(x.followed),
        on(x.remix_chain),
        on(x.friend_cameo),
        freshness,
        cold_start,
    ]);
    row
}

/// One regression tree, as the model file holds it: parallel arrays by node, node 0 the
/// root. An inner node sends a row left when its feature is below the threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlendTree {
    /// Per node: the index of the feature split on, or -1 for a leaf.
    pub feature: Vec<i32>,
    /// Per inner node: the threshold (0 for a leaf).
    pub threshold: Vec<f32>,
    /// Per inner node: the node a row below the threshold goes to (0 for a leaf).
    pub left: Vec<u32>,
    /// Per inner node: the node a row at or above the threshold goes to (0 for a leaf).
    pub right: Vec<u32>,
    /// Per leaf: the value it adds to the margin (0 for an inner node).
    pub value: Vec<f32>,
}

/// Nodes per tree, at most.
const MAX_NODES: usize = 1 << 16;
/// Levels from a root to a leaf, at most.
const MAX_PATH: usize = 32;
/// Trees per ranker, at most.
const MAX_TREES: usize = 10_000;
/// Nodes in all trees, at most.
const MAX_TOTAL_NODES: usize = 1 << 22;
/// Candidates re-scored per request, at most.
pub const MAX_DEPTH: u32 = 100_000;

/// The learned second stage as the model file holds it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlendRankerFile {
    /// The features the trees read, in order ([`BLEND_FEATURES`]).
    pub features: Vec<String>,
    /// Candidates re-scored per request: the best by the first-stage score.
    pub depth: u32,
    /// The margin before any tree.
    pub base_score: f32,
    /// `value = shift + scale · margin`.
    pub shift: f32,
    /// `value = shift + scale · margin`.
    pub scale: f32,
    /// The trees, summed into the margin.
    pub trees: Vec<BlendTree>,
}

/// One node of a checked ranker, laid out for the walk.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    /// The feature, or `u32::MAX` for a leaf.
    feature: u32,
    /// The threshold of an inner node, the value of a leaf.
    threshold: f32,
    /// Children, as indices into the ranker's node array.
    left: u32,
    right: u32,
}

/// A checked ranker the scorer applies.
#[derive(Debug, Clone, PartialEq)]
pub struct BlendRanker {
    depth: usize,
    base_score: f32,
    shift: f32,
    scale: f32,
    /// Every tree's nodes, tree after tree.
    nodes: Vec<Node>,
    /// Where each tree's root is in `nodes`.
    roots: Vec<u32>,
}

impl BlendRankerFile {
    /// Checks the file's ranker and lays it out for the walk: the schema is this
    /// build's, every number is finite, every tree's arrays have one entry per node,
    /// and every child comes after its parent within the tree (so every walk ends).
    pub fn compile(&self) -> Result<BlendRanker> {
        let bad = |why: String| Error::invalid("model.ranker", why);
        if self.features.iter().map(String::as_str).ne(BLEND_FEATURES) {
            return Err(bad(format!(
                "the ranker's feature schema {:?} does not match this engine's {:?}",
                self.features, BLEND_FEATURES
            )));
        }
        if self.depth == 0 || self.depth > MAX_DEPTH {
            return Err(bad(format!(
                "depth {} is not within 1 to {MAX_DEPTH}",
                self.depth
            )));
        }
        for (what, v) in [
            ("base_score", self.base_score),
            ("shift", self.shift),
            ("scale", self.scale),
        ] {
            if !v.is_finite() || v.abs() > 1e6 {
                return Err(bad(format!("{what} {v} is not a number within ±1e6")));
            }
        }
        if self.scale < 0.0 {
            return Err(bad(format!("scale {} is negative", self.scale)));
        }
        if self.trees.is_empty() || self.trees.len() > MAX_TREES {
            return Err(bad(format!(
                "{} trees: a ranker has 1 to {MAX_TREES}",
                self.trees.len()
            )));
        }
        let mut nodes = Vec::new();
        let mut roots = Vec::with_capacity(self.trees.len());
        for (t, tree) in self.trees.iter().enumerate() {
            let n = tree.feature.len();
            if n == 0
                || n > MAX_NODES
                || [
                    tree.threshold.len(),
                    tree.left.len(),
                    tree.right.len(),
                    tree.value.len(),
                ]
                .iter()
                .any(|&len| len != n)
            {
                return Err(bad(format!(
                    "tree {t}: its arrays must have one entry per node, 1 to {MAX_NODES} nodes"
                )));
            }
            if nodes.len() + n > MAX_TOTAL_NODES {
                return Err(bad(format!(
                    "more than {MAX_TOTAL_NODES} nodes in all trees"
                )));
            }
            let root = nodes.len() as u32;
            roots.push(root);
            // Levels below the root, per node (children come after their parent, so a
            // parent's is known first; a node no parent names stays at 0 and is never
            // reached).
            let mut level = vec![0usize; n];
            for i in 0..n {
                let f = tree.feature[i];
                if f < 0 {
                    let v = tree.value[i];
                    if !v.is_finite() || v.abs() > 1e6 {
                        return Err(bad(format!("tree {t} node {i}: leaf value {v}")));
                    }
                    nodes.push(Node {
                        feature: u32::MAX,
                        threshold: v,
                        left: 0,
                        right: 0,
                    });
                    continue;
                }
                let (l, r, th) = (
                    tree.left[i] as usize,
                    tree.right[i] as usize,
                    tree.threshold[i],
                );
                if f as usize >= BLEND_WIDTH {
                    return Err(bad(format!(
                        "tree {t} node {i}: feature {f} is not in the schema"
                    )));
                }
                if l <= i || r <= i || l >= n || r >= n {
                    return Err(bad(format!(
                        "tree {t} node {i}: children {l} and {r} must come after it, within {n} nodes"
                    )));
                }
                if th.is_nan() {
                    return Err(bad(format!(
                        "tree {t} node {i}: the threshold is not a number"
                    )));
                }
                if level[i] + 1 > MAX_PATH {
                    return Err(bad(format!(
                        "tree {t}: a path longer than {MAX_PATH} levels"
                    )));
                }
                level[l] = level[i] + 1;
                level[r] = level[i] + 1;
                nodes.push(Node {
                    feature: f as u32,
                    threshold: th,
                    left: root + l as u32,
                    right: root + r as u32,
                });
            }
        }
        Ok(BlendRanker {
            depth: self.depth as usize,
            base_score: self.base_score,
            shift: self.shift,
            scale: self.scale,
            nodes,
            roots,
        })
    }
}

impl BlendRanker {
    /// Candidates re-scored per request.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The trees' summed output for `row`. The scorer's features are finite; a NaN
    /// would go right at every split (hessboost would follow the node's default way).
    pub fn margin(&self, row: &[f32; BLEND_WIDTH]) -> f32 {
        let mut sum = self.base_score;
        for &root in &self.roots {
            let mut node = self.nodes[root as usize];
            while node.feature != u32::MAX {
                let next = if row[node.feature as usize] < node.threshold {
                    node.left
                } else {
                    node.right
                };
                node = self.nodes[next as usize];
            }
            sum += node.threshold;
        }
        sum
    }

    /// The value that stands for `Σ_a s_a·w_a·p_a` in the score.
    pub fn value(&self, row: &[f32; BLEND_WIDTH]) -> f32 {
        self.shift + self.scale * self.margin(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stump on `interest` (left: -1, right: +2) and a leaf of 0.5.
    fn file() -> BlendRankerFile {
        BlendRankerFile {
            features: BLEND_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            depth: 10,
            base_score: 0.25,
            shift: 1.0,
            scale: 2.0,
            trees: vec![
                BlendTree {
                    feature: vec![24, -1, -1],
                    threshold: vec![0.1, 0.0, 0.0],
                    left: vec![1, 0, 0],
                    right: vec![2, 0, 0],
                    value: vec![0.0, -1.0, 2.0],
                },
                BlendTree {
                    feature: vec![-1],
                    threshold: vec![0.0],
                    left: vec![0],
                    right: vec![0],
                    value: vec![0.5],
                },
            ],
        }
    }

    #[test]
    fn a_row_walks_each_tree_to_its_leaf() {
        let r = file().compile().unwrap();
        let x = |interest: f32| {
            let inputs = HeadInputs {
                interest,
                ..HeadInputs::default()
            };
            blend_features(&ActionProbs::default(), &inputs, 0.0, 0.0)
        };
        // Below the threshold: 0.25 − 1 + 0.5; at it and above: 0.25 + 2 + 0.5.
        assert_eq!(r.margin(&x(0.0)), -0.25);
        assert_eq!(r.margin(&x(0.1)), 2.75);
        assert_eq!(r.value(&x(0.5)), 1.0 + 2.0 * 2.75);
        assert_eq!(r.depth(), 10);
    }

    #[test]
    fn the_features_land_where_the_schema_names_them() {
        let p = ActionProbs::from_heads([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
        let x = HeadInputs {
            prior: [-1.0; 8],
            creator: [0.5; 8],
            interest: 0.3,
            tie: 0.4,
            co_engagement: 0.6,
            followed: true,
            remix_chain: false,
            friend_cameo: true,
        };
        let row = blend_features(&p, &x, 0.7, 0.9);
        let at = |name: &str| row[BLEND_FEATURES.iter().position(|f| *f == name).unwrap()];
        assert_eq!(at("p_like"), 0.7);
        assert_eq!(at("p_create"), 0.1);
        assert_eq!(at("prior_share"), -1.0);
        assert_eq!(at("creator_follow"), 0.5);
        assert_eq!(at("interest"), 0.3);
        assert_eq!(at("tie"), 0.4);
        assert_eq!(at("co_engagement"), 0.6);
        assert_eq!(at("followed"), 1.0);
        assert_eq!(at("remix_chain"), 0.0);
        assert_eq!(at("friend_cameo"), 1.0);
        assert_eq!(at("freshness"), 0.7);
        assert_eq!(at("cold_start"), 0.9);
    }

    #[test]
    fn a_damaged_or_foreign_ranker_is_refused() {
        let err = |f: BlendRankerFile| f.compile().unwrap_err().to_string();
        let mut f = file();
        f.features.swap(0, 1);
        assert!(err(f).contains("feature schema"));
        let mut f = file();
        f.trees[0].left[0] = 0;
        assert!(err(f).contains("must come after it"), "a cycle");
        let mut f = file();
        f.trees[0].right[0] = 3;
        assert!(err(f).contains("must come after it"), "out of the tree");
        let mut f = file();
        f.trees[0].feature[0] = BLEND_WIDTH as i32;
        assert!(err(f).contains("not in the schema"));
        let mut f = file();
        f.trees[0].value.pop();
        assert!(err(f).contains("one entry per node"));
        let mut f = file();
        f.trees[1].value[0] = f32::INFINITY;
        assert!(err(f).contains("leaf value"));
        let mut f = file();
        f.trees[0].threshold[0] = f32::NAN;
        assert!(err(f).contains("threshold"));
        let mut f = file();
        f.scale = -1.0;
        assert!(err(f).contains("negative"));
        let mut f = file();
        f.depth = 0;
        assert!(err(f).contains("depth"));
        let mut f = file();
        f.trees.clear();
        assert!(err(f).contains("trees"));
        // A chain of 40 splits, each sending both ways to the next node.
        let mut f = file();
        let n = 41;
        f.trees[0] = BlendTree {
            feature: (0..n).map(|i| if i + 1 < n { 24 } else { -1 }).collect(),
            threshold: vec![0.0; n],
            left: (0..n)
                .map(|i| if i + 1 < n { i as u32 + 1 } else { 0 })
                .collect(),
            right: (0..n)
                .map(|i| if i + 1 < n { i as u32 + 1 } else { 0 })
                .collect(),
            value: vec![0.0; n],
        };
        assert!(err(f).contains("levels"));
    }
}

//! The methods: popularity, item-kNN, content, interest-ANN and the harness's blend (the
//! engine's own row is a replay through `Engine::feed`, in [`super::replay`]).

use std::collections::HashMap;

use steerfeed::ann::distance::dot;
use steerfeed::ann::{Filter, HnswBuildParams, HnswIndex, HnswSearchParams, IdSet};
use steerfeed::ports::CoEngagement;
use steerfeed::rank::{CoEngagementIndex, CoEngagementParams};
use steerfeed::{Embedding, EventKind, UserId, VideoId};

use super::data::Sequence;
use super::embed::Embeddings;

/// Weight of a history item `p` positions from the end in item-kNN: `0.6^p`.
pub const KNN_DECAY: f32 = 0.6;
/// Recency decay of the content profile.
pub const CONTENT_DECAY: f32 = 0.7;
/// How far ahead in a sequence an item counts as following another.
pub const SEQ_WINDOW: usize = 3;
/// Weight of a follower `d` steps ahead: `SEQ_STEP^(d-1)`.
pub const SEQ_STEP: f32 = 0.5;
/// Weight of an interaction `p` positions from the end of its sequence in recent popularity.
pub const RECENT_DECAY: f32 = 0.5;
/// Engagements the engine's co-engagement index remembers per user.
pub const COENG_WINDOW: usize = 10;
/// Links the engine's co-engagement index keeps per item.
pub const COENG_NEIGHBORS: usize = 200;
/// Items the interest-ANN method retrieves per user.
pub const ANN_LIST: usize = 200;

/// Sparse rows of item-to-item weights.
pub type Sparse = Vec<Vec<(u32, f32)>>;

/// What every method learns from the training sequences.
#[derive(Debug, Clone)]
pub struct Model {
    /// Catalogue size.
    pub n: usize,
    /// Interactions per item over the whole training log.
    pub pop: Vec<f32>,
    /// Position-weighted interactions near the end of the sequences (`RECENT_DECAY^p`).
    pub recent: Vec<f32>,
    /// Item-kNN: co-occurrence in one user's sequence, cosine-normalised.
    pub knn: Sparse,
    /// Sequence-aware co-engagement: `j` following `i` within `SEQ_WINDOW` steps,
    /// distance-weighted, normalised by `sqrt(n_i n_j)`.
    pub seq: Sparse,
    /// The engine's [`CoEngagementIndex`] fed the sequences (one position = one hour,
    /// proximity half-weight at one step, no time decay), its links normalised by
    /// `sqrt(n_i n_j)`.
    pub coeng: Sparse,
}

/// Feeds the training sequences to the engine's [`CoEngagementIndex`] as comments, one
/// position apart = one hour, and reads every item's links back as a sparse matrix.
pub fn co_engagement(train: &[Sequence], n: usize, pop: &[f32]) -> anyhow::Result<Sparse> {
    let index = CoEngagementIndex::new(CoEngagementParams {
        window: COENG_WINDOW,
        half_life_h: 1e9,
        proximity_h: 1.0,
        max_neighbors: COENG_NEIGHBORS,
        // Symmetric, no per-position decay: the blend's signal as it was tuned.
        sequence_decay: 1.0,
        backward: 1.0,
        popularity_exponent: 0.0,
    });
    let base = jiff::Timestamp::from_second(1_800_000_000)?;
    let videos: Vec<VideoId> = (0..n)
        .map(|i| VideoId::new(format!("v{i}")))
        .collect::<Result<_, _>>()?;
    for s in train {
        let user = UserId::new(format!("u{}", s.user))?;
        for (pos, &i) in s.items.iter().enumerate() {
            let at = base.checked_add(jiff::SignedDuration::from_hours(pos as i64))?;
            let kind = EventKind::Comment {
                video: videos[i as usize].clone(),
            };
            index.record(&user, &kind, at);
        }
    }
    let now = base.checked_add(jiff::SignedDuration::from_hours(1_000_000))?;
    let mut rows = Vec::with_capacity(n);
    for (i, v) in videos.iter().enumerate() {
        let links = index.co_engaged(v, now, COENG_NEIGHBORS)?;
        let mut row = Vec::with_capacity(links.len());
        for (other, w) in links {
            let j: u32 = other
                .as_str()
                .strip_prefix('v')
                .and_then(|x| x.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("unexpected video id {}", other.as_str()))?;
            row.push((j, w / (pop[i] * pop[j as usize]).sqrt().max(1.0)));
        }
        rows.push(row);
    }
    Ok(rows)
}

fn to_sparse(maps: Vec<HashMap<u32, f32>>, norm: impl Fn(usize, usize, f32) -> f32) -> Sparse {
    maps.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let mut row: Vec<(u32, f32)> = m
                .into_iter()
                .map(|(j, v)| (j, norm(i, j as usize, v)))
                .collect();
            row.sort_unstable_by_key(|e| e.0);
            row
        })
        .collect()
}

impl Model {
    /// Learns from `train` over a catalogue of `n` items.
    pub fn fit(train: &[Sequence], n: usize) -> anyhow::Result<Self> {
        let mut pop = vec![0f32; n];
        let mut recent = vec![0f32; n];
        let mut users = vec![0f32; n];
        let mut co: Vec<HashMap<u32, f32>> = vec![HashMap::new(); n];
        let mut fwd: Vec<HashMap<u32, f32>> = vec![HashMap::new(); n];
        for s in train {
            let len = s.items.len();
            for (pos, &i) in s.items.iter().enumerate() {
                pop[i as usize] += 1.0;
                recent[i as usize] += RECENT_DECAY.powi((len - 1 - pos) as i32);
                for d in 1..=SEQ_WINDOW {
                    let Some(&j) = s.items.get(pos + d) else {
                        break;
                    };
                    if j != i {
                        *fwd[i as usize].entry(j).or_default() += SEQ_STEP.powi(d as i32 - 1);
                    }
                }
            }
            let mut set = s.items.clone();
            set.sort_unstable();
            set.dedup();
            for &i in &set {
                users[i as usize] += 1.0;
            }
            for (a, &i) in set.iter().enumerate() {
                for &j in &set[a + 1..] {
                    *co[i as usize].entry(j).or_default() += 1.0;
                    *co[j as usize].entry(i).or_default() += 1.0;
                }
            }
        }
        let cos = |i: usize, j: usize, v: f32| v / (users[i] * users[j]).sqrt().max(1.0);
        let knn = to_sparse(co, cos);
        let seq = to_sparse(fwd, |i, j, v| v / (pop[i] * pop[j]).sqrt().max(1.0));
        let coeng = co_engagement(train, n, &pop)?;
        Ok(Self {
            n,
            pop,
            recent,
            knn,
            seq,
            coeng,
        })
    }
}

/// Adds `Σ_p decay^p row(h_p)` over the history (p from the end) into `out`.
pub fn spread(rows: &Sparse, history: &[u32], decay: f32, out: &mut [f32]) {
    let mut w = 1.0f32;
    for &h in history.iter().rev() {
        if let Some(row) = rows.get(h as usize) {
            for &(j, v) in row {
                out[j as usize] += w * v;
            }
        }
        w *= decay;
    }
}

/// The recency-weighted, normalised mean of the history's embeddings.
pub fn profile(emb: &Embeddings, history: &[u32], decay: f32) -> Vec<f32> {
    let mut p = vec![0f32; emb.dim];
    let mut w = 1.0f32;
    for &h in history.iter().rev() {
        for (x, y) in p.iter_mut().zip(emb.row(h as usize)) {
            *x += w * y;
        }
        w *= decay;
    }
    let norm = p.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        p.iter_mut().for_each(|x| *x /= norm);
    }
    p
}

/// Cosine of every item with each profile; `out[u][i]`. Items outer so a row stays in cache.
pub fn content_block(emb: &Embeddings, profiles: &[Vec<f32>], out: &mut [Vec<f32>]) {
    for i in 0..emb.len() {
        let row = emb.row(i);
        for (p, o) in profiles.iter().zip(out.iter_mut()) {
            o[i] = dot(row, p);
        }
    }
}

fn scale_to_max(v: &mut [f32]) {
    let m = v.iter().copied().fold(0.0f32, f32::max);
    if m > 0.0 {
        v.iter_mut().for_each(|x| *x /= m);
    }
}

/// Weights of the blend.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Weights {
    /// Sequence-aware co-engagement (scaled to max 1 per user).
    pub seq: f32,
    /// Item-kNN co-occurrence (scaled to max 1 per user).
    pub knn: f32,
    /// The engine's co-engagement index (scaled to max 1 per user).
    pub coeng: f32,
    /// Content: cosine with the recency-weighted title profile.
    pub content: f32,
    /// Recent popularity, `log(1+x)/log(1+max)`.
    pub recent_pop: f32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            seq: 1.0,
            knn: 1.0,
            coeng: 0.0,
            content: 0.1,
            recent_pop: 0.05,
        }
    }
}

/// The blend's per-user signals, each a dense vector over the catalogue.
#[derive(Debug, Clone)]
pub struct Signals {
    /// Sequence co-engagement.
    pub seq: Vec<f32>,
    /// Item-kNN.
    pub knn: Vec<f32>,
    /// Co-engagement from the engine's index.
    pub coeng: Vec<f32>,
    /// Content cosine.
    pub content: Vec<f32>,
}

/// Log-scaled recent popularity in [0, 1].
pub fn recent_pop_signal(model: &Model) -> Vec<f32> {
    let m = model.recent.iter().copied().fold(0.0f32, f32::max);
    let d = (1.0 + m).ln().max(f32::MIN_POSITIVE);
    model.recent.iter().map(|x| (1.0 + x).ln() / d).collect()
}

/// Computes the blend's signals for a block of histories (oldest item first).
pub fn signals(model: &Model, emb: &Embeddings, histories: &[&[u32]]) -> Vec<Signals> {
    let profiles: Vec<Vec<f32>> = histories
        .iter()
        .map(|h| profile(emb, h, CONTENT_DECAY))
        .collect();
    let mut content = vec![vec![0f32; model.n]; histories.len()];
    content_block(emb, &profiles, &mut content);
    histories
        .iter()
        .zip(content)
        .map(|(h, content)| {
            let mut seq = vec![0f32; model.n];
            spread(&model.seq, h, KNN_DECAY, &mut seq);
            scale_to_max(&mut seq);
            let mut knn = vec![0f32; model.n];
            spread(&model.knn, h, KNN_DECAY, &mut knn);
            scale_to_max(&mut knn);
            let mut coeng = vec![0f32; model.n];
            spread(&model.coeng, h, KNN_DECAY, &mut coeng);
            scale_to_max(&mut coeng);
            Signals {
                seq,
                knn,
                coeng,
                content,
            }
        })
        .collect()
}

/// Blends signals with weights into `out`.
pub fn blend(s: &Signals, pop: &[f32], w: &Weights, out: &mut [f32]) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = w.seq * s.seq[i]
            + w.knn * s.knn[i]
            + w.coeng * s.coeng[i]
            + w.content * s.content[i]
            + w.recent_pop * pop[i];
    }
}

/// A method that scores every item for a block of histories.
pub enum Method<'a> {
    /// Whole-log popularity.
    Popularity(&'a Model),
    /// Item-kNN with `KNN_DECAY` history weighting.
    ItemKnn(&'a Model),
    /// Content only: cosine with the recency-weighted title profile.
    Content(&'a Embeddings),
    /// The interest vector through the engine's HNSW index; only the retrieved list ranks.
    InterestAnn(&'a Embeddings, &'a HnswIndex),
    /// The harness's blend of the signals that won on this data (a reference for the
    /// engine's own row, which is served by `Engine::feed`).
    Blend(&'a Model, &'a Embeddings, Vec<f32>, Weights),
}

impl Method<'_> {
    /// The row name.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Popularity(_) => "popularity",
            Method::ItemKnn(_) => "item-knn",
            Method::Content(_) => "content",
            Method::InterestAnn(..) => "interest-ann",
            Method::Blend(..) => "blend",
        }
    }

    /// Scores every item for each history (oldest item first; higher is better,
    /// `NEG_INFINITY` = out of reach). A method gets the histories only: no target.
    pub fn score(&self, n: usize, histories: &[&[u32]]) -> anyhow::Result<Vec<Vec<f32>>> {
        Ok(match self {
            Method::Popularity(m) => histories.iter().map(|_| m.pop.clone()).collect(),
            Method::ItemKnn(m) => histories
                .iter()
                .map(|h| {
                    let mut s = vec![0f32; n];
                    spread(&m.knn, h, KNN_DECAY, &mut s);
                    s
                })
                .collect(),
            Method::Content(emb) => {
                let profiles: Vec<Vec<f32>> = histories
                    .iter()
                    .map(|h| profile(emb, h, CONTENT_DECAY))
                    .collect();
                let mut out = vec![vec![0f32; n]; histories.len()];
                content_block(emb, &profiles, &mut out);
                out
            }
            Method::InterestAnn(emb, index) => {
                let mut out = Vec::with_capacity(histories.len());
                for h in histories {
                    let p = profile(emb, h, CONTENT_DECAY);
                    let mut s = vec![f32::NEG_INFINITY; n];
                    if p.iter().any(|x| *x != 0.0) {
                        let mut deny = IdSet::new();
                        for &item in *h {
                            deny.insert(item);
                        }
                        let hits = index.search_with(
                            &p,
                            ANN_LIST,
                            Filter::Deny(&deny),
                            &index.search_params(),
                        )?;
                        for h in hits {
                            if let Some(x) = s.get_mut(h.id as usize) {
                                *x = h.similarity;
                            }
                        }
                    }
                    out.push(s);
                }
                out
            }
            Method::Blend(m, emb, pop, w) => signals(m, emb, histories)
                .iter()
                .map(|sig| {
                    let mut s = vec![0f32; n];
                    blend(sig, pop, w, &mut s);
                    s
                })
                .collect(),
        })
    }
}

/// The engine's HNSW index over the title embeddings (ids = dense item indices).
pub fn build_index(emb: &Embeddings) -> anyhow::Result<HnswIndex> {
    let items = (0..emb.len())
        .map(|i| Ok((i as u32, Embedding::new("title", emb.row(i), emb.dim)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let search = HnswSearchParams {
        ef: ANN_LIST.max(64),
        ..HnswSearchParams::default()
    };
    Ok(HnswIndex::build(
        emb.dim,
        items,
        HnswBuildParams::default(),
        search,
    )?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn seq(user: &str, items: &[u32]) -> Sequence {
        Sequence {
            user: user.to_owned(),
            items: items.to_vec(),
        }
    }

    fn weight(rows: &Sparse, i: usize, j: u32) -> f32 {
        rows[i].iter().find(|e| e.0 == j).map_or(0.0, |e| e.1)
    }

    #[test]
    fn fit_counts_followers_co_occurrence_and_co_engagement() {
        let train = [seq("a", &[0, 1, 2]), seq("b", &[0, 1]), seq("c", &[3, 0])];
        let m = Model::fit(&train, 5).unwrap();
        assert_eq!(m.pop, vec![3.0, 2.0, 1.0, 1.0, 0.0]);
        // Recent popularity: item 1 is last once (1) and second to last once (0.5).
        assert!((m.recent[1] - 1.5).abs() < 1e-6);
        // 0 → 1 follows twice at distance 1: 2 / sqrt(3 * 2).
        assert!((weight(&m.seq, 0, 1) - 2.0 / 6f32.sqrt()).abs() < 1e-6);
        // Never 1 → 0: the sequence signal is directional.
        assert_eq!(weight(&m.seq, 1, 0), 0.0);
        // 0 → 2 at distance 2 weighs SEQ_STEP.
        assert!((weight(&m.seq, 0, 2) - SEQ_STEP / 3f32.sqrt()).abs() < 1e-6);
        // Item-kNN is symmetric: 0 and 1 share two users of 3 and 2.
        assert!((weight(&m.knn, 0, 1) - 2.0 / 6f32.sqrt()).abs() < 1e-6);
        assert_eq!(weight(&m.knn, 0, 1), weight(&m.knn, 1, 0));
        // The engine's index links items engaged by the same user, both ways, and
        // nearer steps more.
        assert!(weight(&m.coeng, 0, 1) > 0.0 && weight(&m.coeng, 1, 0) > 0.0);
        assert!(weight(&m.coeng, 3, 0) > 0.0);
        assert_eq!(weight(&m.coeng, 3, 1), 0.0);
        assert!(weight(&m.coeng, 2, 1) > weight(&m.coeng, 2, 0));
        assert!(m.coeng[4].is_empty());
    }

    #[test]
    fn spread_weights_recent_history_more() {
        let rows: Sparse = vec![vec![(2, 1.0)], vec![(2, 1.0), (3, 1.0)], vec![], vec![]];
        let mut out = vec![0.0; 4];
        spread(&rows, &[0, 1], 0.5, &mut out);
        // Item 1 is last (weight 1), item 0 before it (0.5).
        assert_eq!(out, vec![0.0, 0.0, 1.5, 1.0]);
    }
}

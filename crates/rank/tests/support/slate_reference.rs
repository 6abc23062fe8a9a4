//! The selector's greedy page fill as it was before its bookkeeping was optimised
//! (caps checked on the page slice for each visited item, a heap of bounds rebuilt per
//! slot, SipHash sets): a test oracle. `select_slate` must pick exactly the same items in
//! the same order on any input.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};

use steerfeed_core::vector::dot;
use steerfeed_core::{Shift, UserId, VideoId};

use steerfeed_rank::selectors::{DiversityMethod, PageRules, SelectorConfig, SlateItem};

/// Added to the diagonal of the window's similarity matrix, so near-duplicate picks keep
/// it positive definite.
const DPP_JITTER: f32 = 1e-3;
/// Smallest pivot of the window's Cholesky factor.
const MIN_PIVOT: f32 = 1e-6;
/// Slack on share arithmetic (`0.1 · 30` is not exactly 3 in floating point).
const SHARE_EPS: f64 = 1e-9;

/// Chooses and orders at most `limit` of `items` (given best score first) under the
/// diversity objective and the hard caps of `config` and `rules`; returns indices into
/// `items`, each at most once, and never two items with the same id. Expects a validated
/// `config`; it stays total (no panic) for any config and any scores.
pub fn select_slate(
    items: &[SlateItem<'_>],
    config: &SelectorConfig,
    rules: PageRules<'_>,
    limit: usize,
) -> Vec<usize> {
    let limit = limit.min(items.len());
    if limit == 0 {
        return Vec::new();
    }
    Greedy::new(items, config, rules, limit).run()
}

/// Which items the following rule lets take the next slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follow {
    Any,
    OnlyFollowed,
    NotFollowed,
}

impl Follow {
    fn admits(self, followed: bool) -> bool {
        match self {
            Follow::Any => true,
            Follow::OnlyFollowed => followed,
            Follow::NotFollowed => !followed,
        }
    }
}

/// A candidate and the upper bound of its objective, ordered best first, then by index.
#[derive(Debug, Clone, Copy)]
struct Bound {
    key: f32,
    item: usize,
}

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .total_cmp(&other.key)
            .then_with(|| other.item.cmp(&self.item))
    }
}

struct Greedy<'a, 'b> {
    items: &'b [SlateItem<'a>],
    config: &'b SelectorConfig,
    rules: PageRules<'b>,
    limit: usize,
    /// `items[..active]` are considered.
    active: usize,
    pool_min: f32,
    pool_span: f32,
    /// Normalised score in `[0, 1]` of each active item.
    rel: Vec<f32>,
    /// Dense creator index of each active item.
    creator: Vec<usize>,
    creators: HashMap<&'a UserId, usize>,
    /// Items of each creator on the page.
    per_creator: Vec<usize>,
    /// `decay[k]`: the author-decay multiplier of a creator's k-th item.
    decay: Vec<f32>,
    alive: Vec<bool>,
    page: Vec<usize>,
    picked: HashSet<&'a VideoId>,
    followed_on_page: usize,
    /// MMR: the largest (non-negative) similarity of each active item to `page[..checked]`.
    max_sim: Vec<f32>,
    checked: Vec<usize>,
    /// DPP: similarity of active item `i` to the pick at page position `p`, at
    /// `i * limit + p`; NaN until computed.
    sims: Vec<f32>,
    /// DPP: the first page position of the window and the window's Cholesky factor.
    window_start: usize,
    chol: Vec<f32>,
    scratch: Vec<f32>,
    heap: Vec<Bound>,
}

impl<'a, 'b> Greedy<'a, 'b> {
    fn new(
        items: &'b [SlateItem<'a>],
        config: &'b SelectorConfig,
        rules: PageRules<'b>,
        limit: usize,
    ) -> Self {
        let pool = config.pool.max(1).min(items.len());
        let (lo, hi) = items[..pool]
            .iter()
            .map(|it| it.score)
            .filter(|s| s.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| {
                (lo.min(s), hi.max(s))
            });
        let (pool_min, pool_span) = if hi > lo { (lo, hi - lo) } else { (0.0, 0.0) };
        let mut g = Self {
            items,
            config,
            rules,
            limit,
            active: 0,
            pool_min,
            pool_span,
            rel: Vec::with_capacity(pool),
            creator: Vec::with_capacity(pool),
            creators: HashMap::with_capacity(pool),
            per_creator: Vec::new(),
            decay: (0..=limit).map(|k| config.author_decay(k)).collect(),
            alive: Vec::with_capacity(pool),
            page: Vec::with_capacity(limit),
            picked: HashSet::with_capacity(limit),
            followed_on_page: 0,
            max_sim: Vec::new(),
            checked: Vec::new(),
            sims: Vec::new(),
            window_start: 0,
            chol: Vec::new(),
            scratch: Vec::new(),
            heap: Vec::with_capacity(pool),
        };
        g.grow_to(pool);
        g
    }

    fn run(mut self) -> Vec<usize> {
        while self.page.len() < self.limit {
            if self.config.method == DiversityMethod::Dpp {
                self.prepare_window();
            }
            match self.next() {
                Some(i) => self.push(i),
                None => break,
            }
        }
        self.page
    }

    /// The best item that may take the next slot, growing the pool when none in it may.
    fn next(&mut self) -> Option<usize> {
        loop {
            let found = match self.follow_rule() {
                Follow::OnlyFollowed => self
                    .best(Follow::OnlyFollowed)
                    .or_else(|| self.best(Follow::Any)),
                rule => self.best(rule),
            };
            if found.is_some() {
                return found;
            }
            let step = self.config.pool.max(1);
            if self.active >= self.items.len() {
                return None;
            }
            self.grow_to(self.active.saturating_add(step).min(self.items.len()));
        }
    }

    fn follow_rule(&self) -> Follow {
        let len = (self.page.len() + 1) as f64;
        match self.rules.following {
            None => Follow::Any,
            Some(Shift::More) => {
                let need = (f64::from(self.config.following_more) * len - SHARE_EPS).ceil();
                if (self.followed_on_page as f64) < need {
                    Follow::OnlyFollowed
                } else {
                    Follow::Any
                }
            }
            Some(Shift::Less) => {
                let allowed = (f64::from(self.config.following_less) * len + SHARE_EPS).floor();
                if (self.followed_on_page + 1) as f64 > allowed {
                    Follow::NotFollowed
                } else {
                    Follow::Any
                }
            }
        }
    }

    /// The eligible item with the best objective among those `rule` admits, visiting by
    /// upper bound and stopping when no bound can beat the best so far.
    fn best(&mut self, rule: Follow) -> Option<usize> {
        let mut buf = std::mem::take(&mut self.heap);
        buf.clear();
        buf.extend(
            (0..self.active)
                .filter(|&i| self.alive[i] && rule.admits(self.items[i].followed))
                .map(|i| Bound {
                    key: self.bound(i),
                    item: i,
                }),
        );
        let mut heap = BinaryHeap::from(buf);
        let mut best: Option<(f32, usize)> = None;
        while let Some(Bound { key, item }) = heap.pop() {
            if best.is_some_and(|(v, _)| key < v) {
                break;
            }
            if !self.eligible(item) {
                continue;
            }
            let Some(v) = self.value(item, best.map(|(v, _)| v)) else {
                continue;
            };
            if best.is_none_or(|(bv, bi)| v > bv || (v == bv && item < bi)) {
                best = Some((v, item));
            }
        }
        self.heap = heap.into_vec();
        best.map(|(_, i)| i)
    }

    fn quality(&self, i: usize) -> f32 {
        let k = self.per_creator[self.creator[i]];
        self.rel[i]
            * self
                .decay
                .get(k)
                .copied()
                .unwrap_or(self.config.author_decay_floor)
    }

    fn bound(&self, i: usize) -> f32 {
        let q = self.quality(i);
        match self.config.method {
            DiversityMethod::Mmr => self.config.mmr_lambda * q,
            DiversityMethod::Dpp => q * q,
        }
    }

    /// The exact objective of item `i`, or `None` as soon as it is known to fall below
    /// `floor` (similarities only lower it, so the work done so far is kept for later).
    fn value(&mut self, i: usize, floor: Option<f32>) -> Option<f32> {
        let q = self.quality(i);
        let floor = floor.unwrap_or(f32::NEG_INFINITY);
        match self.config.method {
            DiversityMethod::Mmr => {
                let l = self.config.mmr_lambda;
                let value = |max_sim: f32| l * q - (1.0 - l) * max_sim;
                while self.checked[i] < self.page.len() {
                    if value(self.max_sim[i]) < floor {
                        return None;
                    }
                    let s = self.sim_items(i, self.page[self.checked[i]]).max(0.0);
                    self.max_sim[i] = self.max_sim[i].max(s);
                    self.checked[i] += 1;
                }
                Some(value(self.max_sim[i]))
            }
            DiversityMethod::Dpp => self.residual(i, q * q, floor).map(|r| q * q * r),
        }
    }

    /// The hard caps and the id check for appending item `i` to the page.
    fn eligible(&mut self, i: usize) -> bool {
        let it = self.items[i];
        if self.picked.contains(it.id) {
            self.alive[i] = false;
            return false;
        }
        let len = self.page.len();
        let from = len.saturating_sub(self.config.topic_window.saturating_sub(1));
        let recent = &self.page[from..];
        for (n, t) in it.topics.iter().enumerate() {
            if it.topics[..n].contains(t) {
                continue;
            }
            let count = recent
                .iter()
                .filter(|&&p| self.items[p].topics.contains(t))
                .count();
            if self.rules.only_topics.contains(t) {
                continue;
            }
            let cap = if self.rules.boosted_topics.contains(t) {
                self.config.steered_topic_cap.max(self.config.topic_cap)
            } else {
                self.config.topic_cap
            };
            if count >= cap {
                return false;
            }
        }
        if self.rules.teen && it.sensitive {
            let w = self.config.teen_sensitive_window.saturating_sub(1);
            let count = self.page[len.saturating_sub(w)..]
                .iter()
                .filter(|&&p| self.items[p].sensitive)
                .count();
            if count >= self.config.teen_sensitive_cap {
                return false;
            }
        }
        true
    }

    fn push(&mut self, i: usize) {
        self.alive[i] = false;
        self.page.push(i);
        self.per_creator[self.creator[i]] += 1;
        self.followed_on_page += usize::from(self.items[i].followed);
        self.picked.insert(self.items[i].id);
    }

    /// Brings `items[..to]` into consideration.
    fn grow_to(&mut self, to: usize) {
        for i in self.active..to {
            let it = self.items[i];
            let rel = if !it.score.is_finite() {
                0.0
            } else if self.pool_span > 0.0 {
                ((it.score - self.pool_min) / self.pool_span).clamp(0.0, 1.0)
            } else {
                1.0
            };
            self.rel.push(rel);
            let next = self.per_creator.len();
            let c = *self.creators.entry(it.creator).or_insert(next);
            if c == next {
                self.per_creator.push(0);
            }
            self.creator.push(c);
            self.alive.push(true);
        }
        match self.config.method {
            DiversityMethod::Mmr => {
                self.max_sim.resize(to, 0.0);
                self.checked.resize(to, 0);
            }
            DiversityMethod::Dpp => self.sims.resize(to * self.limit, f32::NAN),
        }
        self.active = to;
    }

    /// Cosine similarity of two items; 0 when either has no embedding.
    fn sim_items(&self, a: usize, b: usize) -> f32 {
        match (self.items[a].embedding, self.items[b].embedding) {
            (Some(x), Some(y)) => {
                let s = dot(x, y);
                if s.is_finite() { s } else { 0.0 }
            }
            _ => 0.0,
        }
    }

    /// Similarity of active item `i` to the pick at page position `p`, cached.
    fn sim_to_pick(&mut self, i: usize, p: usize) -> f32 {
        let at = i * self.limit + p;
        let cached = self.sims[at];
        if !cached.is_nan() {
            return cached;
        }
        let s = self.sim_items(i, self.page[p]);
        self.sims[at] = s;
        s
    }

    /// Factors the similarity matrix of the last `dpp_window` picks.
    fn prepare_window(&mut self) {
        let len = self.page.len();
        let start = len.saturating_sub(self.config.dpp_window);
        let k = len - start;
        self.window_start = start;
        self.chol.clear();
        self.chol.resize(k * k, 0.0);
        for r in 0..k {
            for c in 0..=r {
                let mut sum = if r == c {
                    1.0 + DPP_JITTER
                } else {
                    self.sim_to_pick(self.page[start + r], start + c)
                };
                for m in 0..c {
                    sum -= self.chol[r * k + m] * self.chol[c * k + m];
                }
                self.chol[r * k + c] = if r == c {
                    sum.max(MIN_PIVOT).sqrt()
                } else {
                    sum / self.chol[c * k + c]
                };
            }
        }
    }

    /// DPP: the share of item `i`'s (unit) feature vector not explained by the window,
    /// `1 − s_Wᵀ S_W⁻¹ s_W`, in `[0, 1]`; the greedy MAP gain is `q2 ·` this. `None` as
    /// soon as `q2 ·` the partial residual (which only shrinks) falls below `floor`.
    fn residual(&mut self, i: usize, q2: f32, floor: f32) -> Option<f32> {
        let start = self.window_start;
        let k = self.page.len() - start;
        self.scratch.clear();
        let mut norm = 0.0;
        for a in 0..k {
            if q2 * (1.0 - norm) < floor {
                return None;
            }
            let mut v = self.sim_to_pick(i, start + a);
            for m in 0..a {
                v -= self.chol[a * k + m] * self.scratch[m];
            }
            v /= self.chol[a * k + a];
            self.scratch.push(v);
            norm += v * v;
        }
        let r = 1.0 - norm;
        Some(if r.is_finite() {
            r.clamp(0.0, 1.0)
        } else {
            0.0
        })
    }
}

//! [`select_slate`]: the page policy as one pure function over [`SlateItem`]s.
//!
//! A greedy loop fills the page one slot at a time. Each step:
//!
//! 1. the following rule decides which items may take the slot: with "more", followed
//!    creators first while the page (this slot included) is short of
//!    `ceil(following_more · len)`; with "less", no followed creator once the slot would
//!    exceed `floor(following_less · len)`;
//! 2. each candidate's quality is its min-max normalised score over the pool times the
//!    author decay of its creator's count on the page so far;
//! 3. candidates are visited by normalised score, highest first; each has an upper
//!    bound of its objective (MMR: `λ·q`; DPP: `q²`, since similarity only lowers
//!    either): one whose bound cannot beat the best so far is skipped, the hard caps are
//!    checked (from per-topic counts of the window, kept per step), the exact objective
//!    is computed, and the visit stops as soon as the normalised score alone (times the
//!    largest decay) cannot beat the best. The result is the exact greedy pick, at the
//!    cost of a few similarity evaluations per step instead of one per pooled candidate;
//! 4. when nothing in the pool may take the slot, the next `pool` candidates join it; when
//!    nothing at all may, the page ends.
//!
//! Caps are checked on the window that ends at the new slot; as the page only grows at
//! the end, that checks every window of the final page.
//!
//! **Exploration** (`config.explore` = ε > 0): once step 3 has found the greedy pick
//! `g`, the slot goes, with probability ε, to an item drawn uniformly from `U`, the pool's
//! under-exposed items that the following rule admits and the caps let take the slot
//! (`g` otherwise, and always when `U` is empty). The draws come from a generator seeded
//! by the caller, so one seed replays one page. The served item `x`'s propensity is
//! `(1 − ε)·[x = g] + ε·[x ∈ U]/|U|`, the probability of that choice given the slots
//! before it; the slot also reports `[x = g]`, `|U|` and `[x ∈ U]` (a [`SlotDraw`]), from
//! which an estimator computes that probability for another ε.
//!
//! **A shadow** (a second score per item and a share `s`): a second greedy loop runs in
//! lockstep over the same items ordered by the shadow scores, under the same rules, and
//! is given the served item at each slot, so at every slot it knows the pick `h` another
//! profile's scorer would make after the same earlier slots. The slot goes to `h` with
//! probability `s`, to a drawn item with probability ε (where `U` is not empty) and to `g`
//! otherwise; the propensity is `s·[x = h] + ε·[x ∈ U]/|U| + (1 − ε − s)·[x = g]`, and
//! the slot's draw reports `[x = h]` as well, with `|U|` = 0 where nothing could be
//! drawn, and, when the shadow explores, the shadow's own draw set `U_h` (`|U_h|` and
//! `[x ∈ U_h]`). Each loop keeps its own considered items: the other's pick joins its
//! page without joining what it picks or draws from. With `s` = 0 the page, and every
//! draw from the seed, is what no shadow gives.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;
use steerfeed_core::vector::dot;
use steerfeed_core::{Shift, SlotDraw, TopicId, UserId, VideoId};

use super::{DiversityMethod, PageRules, SelectorConfig, SlateItem};

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
    select_slate_seeded(items, config, rules, limit, 0).page
}

/// A page chosen by [`select_slate_seeded`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slate {
    /// Indices into the items, in page order.
    pub page: Vec<usize>,
    /// Per slot, the probability that the selector put its item there (1 for every
    /// slot when `config.explore` is 0).
    pub propensity: Vec<f32>,
    /// Per slot, the choice exploration faced (`None` where it could not explore).
    pub draws: Vec<Option<SlotDraw>>,
}

/// [`select_slate`] with exploration's draws seeded by `seed`; also returns each
/// slot's propensity and draw.
pub fn select_slate_seeded(
    items: &[SlateItem<'_>],
    config: &SelectorConfig,
    rules: PageRules<'_>,
    limit: usize,
    seed: u64,
) -> Slate {
    let limit = limit.min(items.len());
    if limit == 0 {
        return Slate::default();
    }
    let mut g = Greedy::new(items, config, rules, limit);
    g.rng = seed;
    g.run(None)
}

/// What a shadow is, for [`select_slate_shadowed`].
#[derive(Debug, Clone, Copy)]
pub struct ShadowSpec<'s> {
    /// Item `i`'s score by the shadow profile's scorer (non-finite: last).
    pub scores: &'s [f32],
    /// The probability with which each slot serves the shadow's greedy pick.
    pub share: f32,
    /// The shadow profile's own exploration rate: above 0, each slot also reports the
    /// shadow's own draw set, so that an estimate of the shadow exploring can be made.
    pub explore: f32,
}

/// [`select_slate_seeded`] beside a shadow (see the module docs). A share of 0 is
/// [`select_slate_seeded`].
pub fn select_slate_shadowed(
    items: &[SlateItem<'_>],
    config: &SelectorConfig,
    rules: PageRules<'_>,
    limit: usize,
    seed: u64,
    shadow: ShadowSpec<'_>,
) -> Slate {
    let ShadowSpec {
        scores: shadow_scores,
        share,
        explore: shadow_explore,
    } = shadow;
    if share.is_nan() || share <= 0.0 || shadow_scores.len() != items.len() {
        return select_slate_seeded(items, config, rules, limit, seed);
    }
    let limit = limit.min(items.len());
    if limit == 0 {
        return Slate::default();
    }
    let key = |i: usize| {
        let s = shadow_scores[i];
        if s.is_finite() { s } else { f32::NEG_INFINITY }
    };
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    let shadow_items: Vec<SlateItem<'_>> = order
        .iter()
        .map(|&i| SlateItem {
            score: key(i),
            ..items[i]
        })
        .collect();
    let mut to_shadow = vec![0; items.len()];
    for (j, &i) in order.iter().enumerate() {
        to_shadow[i] = j;
    }
    let mut g = Greedy::new(items, config, rules, limit);
    g.rng = seed;
    let lockstep = Lockstep {
        greedy: Greedy::new(&shadow_items, config, rules, limit),
        to_main: order,
        to_shadow,
        share: share.min(1.0 - config.explore).max(0.0),
        explores: shadow_explore > 0.0,
    };
    g.run(Some(lockstep))
}

/// The shadow's greedy loop, run beside the serving one over its own order of the items.
struct Lockstep<'a, 'b> {
    greedy: Greedy<'a, 'b>,
    /// Shadow index → item index, and back.
    to_main: Vec<usize>,
    to_shadow: Vec<usize>,
    share: f32,
    /// The shadow explores: report its draw sets.
    explores: bool,
}

/// The shadow's choice at one slot, as item indices.
struct ShadowPick {
    pick: usize,
    share: f32,
    /// The items the shadow's own exploration could draw (empty when it does not explore).
    under: Vec<usize>,
}

impl Lockstep<'_, '_> {
    /// The shadow's pick for the next slot and its draw set.
    fn pick(&mut self) -> Option<ShadowPick> {
        if self.greedy.config.method == DiversityMethod::Dpp {
            self.greedy.prepare_window();
        }
        let j = self.greedy.next()?;
        let under = if self.explores {
            let mut u: Vec<usize> = self
                .greedy
                .draw_set(j)
                .into_iter()
                .map(|k| self.to_main[k])
                .collect();
            u.sort_unstable();
            u
        } else {
            Vec::new()
        };
        Some(ShadowPick {
            pick: self.to_main[j],
            share: self.share,
            under,
        })
    }

    /// Puts item `i`, which the page served, on the shadow's page too.
    fn serve(&mut self, i: usize) {
        self.greedy.push_any(self.to_shadow[i]);
    }
}

/// SplitMix64: the next draw of the generator whose state is `state`.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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

struct Greedy<'a, 'b> {
    items: &'b [SlateItem<'a>],
    config: &'b SelectorConfig,
    rules: PageRules<'b>,
    limit: usize,
    /// `items[..active]` have their bookkeeping (creators, ids, topics) set up.
    active: usize,
    /// `items[..considered]` may be picked or drawn (`considered <= active`): an item the
    /// page took from beyond them (the shadow's pick) is on the page without widening
    /// what this loop itself chooses from.
    considered: usize,
    pool_min: f32,
    pool_span: f32,
    /// Normalised score in `[0, 1]` of each active item.
    rel: Vec<f32>,
    /// Dense creator index of each active item.
    creator: Vec<usize>,
    creators: HashMap<&'a UserId, usize, FxBuildHasher>,
    /// Items of each creator on the page.
    per_creator: Vec<usize>,
    /// `decay[k]`: the author-decay multiplier of a creator's k-th item.
    decay: Vec<f32>,
    alive: Vec<bool>,
    page: Vec<usize>,
    /// Dense id index of each active item (items sharing an id share it).
    id_of: Vec<usize>,
    ids: HashMap<&'a VideoId, usize, FxBuildHasher>,
    /// Per dense id: an item with that id is on the page.
    id_picked: Vec<bool>,
    /// The distinct dense topic indices of active item `i`:
    /// `topic_list[topic_start[i]..topic_start[i + 1]]`.
    topic_start: Vec<usize>,
    topic_list: Vec<usize>,
    topics: HashMap<&'a TopicId, usize, FxBuildHasher>,
    /// Per dense topic: the cap of the topic window (`usize::MAX` for an exempt topic).
    topic_cap: Vec<usize>,
    /// Per dense topic: items carrying it among the page items that share a topic window
    /// with the next slot.
    window_topics: Vec<usize>,
    /// Items with a safety label among the page items that share a teen window with the
    /// next slot.
    window_sensitive: usize,
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
    /// The considered items by `rel`, highest first (then by index): the visiting order.
    by_rel: Vec<usize>,
    /// The largest author-decay multiplier, so `rel · decay_max` bounds any quality.
    decay_max: f32,
    /// Exploration's generator state, and each slot's propensity and draw.
    rng: u64,
    propensity: Vec<f32>,
    draws: Vec<Option<SlotDraw>>,
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
            considered: 0,
            pool_min,
            pool_span,
            rel: Vec::with_capacity(pool),
            creator: Vec::with_capacity(pool),
            creators: HashMap::with_capacity_and_hasher(pool, FxBuildHasher),
            per_creator: Vec::new(),
            decay: (0..=limit).map(|k| config.author_decay(k)).collect(),
            alive: Vec::with_capacity(pool),
            page: Vec::with_capacity(limit),
            id_of: Vec::with_capacity(pool),
            ids: HashMap::with_capacity_and_hasher(pool, FxBuildHasher),
            id_picked: Vec::with_capacity(pool),
            topic_start: vec![0],
            topic_list: Vec::new(),
            topics: HashMap::default(),
            topic_cap: Vec::new(),
            window_topics: Vec::new(),
            window_sensitive: 0,
            followed_on_page: 0,
            max_sim: Vec::new(),
            checked: Vec::new(),
            sims: Vec::new(),
            window_start: 0,
            chol: Vec::new(),
            scratch: Vec::new(),
            by_rel: Vec::with_capacity(pool),
            decay_max: 0.0,
            rng: 0,
            propensity: Vec::with_capacity(limit),
            draws: Vec::with_capacity(limit),
        };
        g.decay_max = g
            .decay
            .iter()
            .fold(config.author_decay_floor, |m, &d| m.max(d));
        g.grow_to(pool);
        g
    }

    fn run(mut self, mut shadow: Option<Lockstep<'a, '_>>) -> Slate {
        while self.page.len() < self.limit {
            if self.config.method == DiversityMethod::Dpp {
                self.prepare_window();
            }
            match self.next() {
                Some(g) => {
                    let h = shadow.as_mut().and_then(Lockstep::pick);
                    let (i, p, draw) = self.explore(g, h);
                    // The shadow's pick may lie beyond the items this loop considers yet.
                    self.push_any(i);
                    if let Some(s) = shadow.as_mut() {
                        s.serve(i);
                    }
                    self.propensity.push(p);
                    self.draws.push(draw);
                }
                None => break,
            }
        }
        Slate {
            page: self.page,
            propensity: self.propensity,
            draws: self.draws,
        }
    }

    /// The items exploration may draw for the slot whose greedy pick is `g`: alive,
    /// under-exposed, admitted by the following rule `g` was picked under ("more from
    /// followed" falls back to any) and allowed by the caps.
    fn draw_set(&mut self, g: usize) -> Vec<usize> {
        let rule = match self.follow_rule() {
            Follow::OnlyFollowed if !self.items[g].followed => Follow::Any,
            rule => rule,
        };
        let max = self.config.explore_max_exposures;
        let mut under = Vec::new();
        for i in 0..self.considered {
            if self.alive[i]
                && rule.admits(self.items[i].followed)
                && self.items[i].exposures < max
                && self.eligible(i)
            {
                under.push(i);
            }
        }
        under
    }

    /// The item that takes the slot whose greedy pick is `g` (and the shadow's choice),
    /// its propensity and the choice exploration faced (see the module docs).
    fn explore(&mut self, g: usize, shadow: Option<ShadowPick>) -> (usize, f32, Option<SlotDraw>) {
        let eps = self.config.explore;
        let share = shadow.as_ref().map_or(0.0, |s| s.share);
        if eps <= 0.0 && shadow.is_none() {
            return (g, 1.0, None);
        }
        let under = if eps > 0.0 {
            self.draw_set(g)
        } else {
            Vec::new()
        };
        if under.is_empty() && shadow.is_none() {
            return (g, 1.0, None);
        }
        let eps = if under.is_empty() { 0.0 } else { eps };
        let n = under.len() as u64;
        let draw = (splitmix64(&mut self.rng) >> 11) as f64 / (1u64 << 53) as f64;
        let pick = if draw < f64::from(eps) {
            under[(splitmix64(&mut self.rng) % n) as usize]
        } else if let Some(h) = shadow
            .as_ref()
            .filter(|_| draw < f64::from(eps) + f64::from(share))
        {
            h.pick
        } else {
            g
        };
        let in_draw = under.contains(&pick);
        let shadow_greedy = shadow.as_ref().is_some_and(|h| h.pick == pick);
        let greedy = if pick == g { 1.0 - eps - share } else { 0.0 };
        let drawn = if in_draw { eps / n as f32 } else { 0.0 };
        let shadowed = if shadow_greedy { share } else { 0.0 };
        let count = |u: &[usize]| u32::try_from(u.len()).unwrap_or(u32::MAX);
        let draw = SlotDraw {
            greedy: pick == g,
            drawable: count(&under),
            in_draw,
            shadow_greedy,
            shadow_drawable: shadow.as_ref().map_or(0, |h| count(&h.under)),
            shadow_in_draw: shadow
                .as_ref()
                .is_some_and(|h| h.under.binary_search(&pick).is_ok()),
        };
        (pick, greedy + drawn + shadowed, Some(draw))
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
            if self.considered >= self.items.len() {
                return None;
            }
            self.grow_to(self.considered.saturating_add(step).min(self.items.len()));
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

    /// The eligible item with the best objective among those `rule` admits. Items are
    /// visited by `rel` (an upper bound of their quality up to `decay_max`); one whose own
    /// bound cannot beat the best so far is skipped, and the visit stops as soon as the
    /// `rel` bound cannot. Similarities only lower an objective, so this is the exact
    /// argmax (ties to the lowest index) whatever the visiting order.
    fn best(&mut self, rule: Follow) -> Option<usize> {
        let mut best: Option<(f32, usize)> = None;
        for n in 0..self.by_rel.len() {
            let i = self.by_rel[n];
            if best.is_some_and(|(v, _)| self.top(i) < v) {
                break;
            }
            if !self.alive[i] || !rule.admits(self.items[i].followed) {
                continue;
            }
            if best.is_some_and(|(v, _)| self.bound(i) < v) || !self.eligible(i) {
                continue;
            }
            let Some(v) = self.value(i, best.map(|(v, _)| v)) else {
                continue;
            };
            if best.is_none_or(|(bv, bi)| v > bv || (v == bv && i < bi)) {
                best = Some((v, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// The objective's bound for quality `q`: MMR `λ·q`, DPP `q²`.
    fn bound_of(&self, q: f32) -> f32 {
        match self.config.method {
            DiversityMethod::Mmr => self.config.mmr_lambda * q,
            DiversityMethod::Dpp => q * q,
        }
    }

    /// A bound of item `i`'s bound whatever its creator's count on the page.
    fn top(&self, i: usize) -> f32 {
        self.bound_of(self.rel[i] * self.decay_max)
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
        self.bound_of(self.quality(i))
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

    /// The hard caps and the id check for appending item `i` to the page (an item whose
    /// id is on the page is retired for good).
    fn eligible(&mut self, i: usize) -> bool {
        if self.id_picked[self.id_of[i]] {
            self.alive[i] = false;
            return false;
        }
        let topics = &self.topic_list[self.topic_start[i]..self.topic_start[i + 1]];
        if topics
            .iter()
            .any(|&t| self.window_topics[t] >= self.topic_cap[t])
        {
            return false;
        }
        !(self.rules.teen
            && self.items[i].sensitive
            && self.window_sensitive >= self.config.teen_sensitive_cap)
    }

    /// [`Self::push`] of any item, bringing it (and the items ranked above it) into
    /// consideration first.
    fn push_any(&mut self, i: usize) {
        if i >= self.active {
            self.set_up(i + 1);
        }
        self.push(i);
    }

    fn push(&mut self, i: usize) {
        self.alive[i] = false;
        self.page.push(i);
        self.per_creator[self.creator[i]] += 1;
        self.followed_on_page += usize::from(self.items[i].followed);
        self.id_picked[self.id_of[i]] = true;
        self.refresh_windows();
    }

    /// Recounts, for the next slot, the topics and safety labels of the page items within
    /// the topic and teen windows that end at it.
    fn refresh_windows(&mut self) {
        let len = self.page.len();
        self.window_topics.iter_mut().for_each(|n| *n = 0);
        let from = len.saturating_sub(self.config.topic_window.saturating_sub(1));
        for &p in &self.page[from..] {
            for &t in &self.topic_list[self.topic_start[p]..self.topic_start[p + 1]] {
                self.window_topics[t] += 1;
            }
        }
        let from = len.saturating_sub(self.config.teen_sensitive_window.saturating_sub(1));
        self.window_sensitive = self.page[from..]
            .iter()
            .filter(|&&p| self.items[p].sensitive)
            .count();
    }

    /// Brings `items[..to]` into consideration.
    fn grow_to(&mut self, to: usize) {
        self.set_up(to);
        self.considered = self.considered.max(to);
        let to = self.considered;
        let rel = &self.rel;
        self.by_rel.clear();
        self.by_rel.extend(0..to);
        self.by_rel
            .sort_unstable_by(|&a, &b| rel[b].total_cmp(&rel[a]).then(a.cmp(&b)));
    }

    /// Sets up the bookkeeping of `items[..to]`.
    fn set_up(&mut self, to: usize) {
        if to <= self.active {
            return;
        }
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
            let next = self.id_picked.len();
            let d = *self.ids.entry(it.id).or_insert(next);
            if d == next {
                self.id_picked.push(false);
            }
            self.id_of.push(d);
            let first = self.topic_list.len();
            for t in it.topics {
                let next = self.topic_cap.len();
                let d = *self.topics.entry(t).or_insert(next);
                if d == next {
                    let cap = if self.rules.only_topics.contains(t) {
                        usize::MAX
                    } else if self.rules.boosted_topics.contains(t) {
                        self.config.steered_topic_cap.max(self.config.topic_cap)
                    } else {
                        self.config.topic_cap
                    };
                    self.topic_cap.push(cap);
                    self.window_topics.push(0);
                }
                if !self.topic_list[first..].contains(&d) {
                    self.topic_list.push(d);
                }
            }
            self.topic_start.push(self.topic_list.len());
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

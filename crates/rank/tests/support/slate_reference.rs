//! A test oracle for the selector's page fill, written from the definitions and sharing
//! no code with `select_slate`: it takes the page the selector chose and checks, slot by
//! slot, that the pick is one a greedy fill may make.
//!
//! At each slot it recomputes from scratch, in `f64`, which items may take the slot
//! (the id, topic, teen and following rules over the candidates considered so far, the
//! pool widening by `pool` when none in it may) and each such item's objective:
//! - MMR: `λ·q − (1 − λ)·max(0, max similarity to the page)`;
//! - DPP: `q² · (1 − sᵀ (S + εI)⁻¹ s)`, where `S` holds the similarities among the last
//!   `dpp_window` picks (1 on the diagonal), `s` the item's similarities to them, and
//!   the system is solved by Gaussian elimination (the selector keeps an incremental
//!   Cholesky factor in `f32` instead);
//!
//! where `q` is the item's score normalised over the first pool, times the author decay
//! of its creator's items already on the page. The pick must be allowed and its objective
//! within a rounding tolerance of the best allowed; the page may end early only when no
//! item may take the next slot.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use steerfeed_core::Shift;

use steerfeed_rank::selectors::{DiversityMethod, PageRules, SelectorConfig, SlateItem};

/// Added to the diagonal of the window's similarity matrix.
const DPP_JITTER: f64 = 1e-3;
/// Slack on share arithmetic (`0.1 · 30` is not exactly 3 in floating point).
const SHARE_EPS: f64 = 1e-9;
/// How far below the best objective a pick may be: the selector works in `f32` (an
/// incremental Cholesky factor for DPP), which puts its objectives within a few `1e-6`
/// of these `f64` ones even for windows of near-duplicates; a wrong pick is almost always
/// further off than this.
const MMR_TOLERANCE: f64 = 1e-5;
const DPP_TOLERANCE: f64 = 2e-5;

/// Checks `page` (indices into `items`, in page order) as described in the module docs;
/// the error says which slot breaks which rule.
pub fn check_slate(
    items: &[SlateItem<'_>],
    config: &SelectorConfig,
    rules: PageRules<'_>,
    limit: usize,
    page: &[usize],
) -> Result<(), String> {
    let limit = limit.min(items.len());
    if page.len() > limit {
        return Err(format!("{} items on a page of at most {limit}", page.len()));
    }
    let q0 = normalised_scores(items, config.pool);
    let step = config.pool.max(1);
    let mut active = step.min(items.len());
    for slot in 0..=page.len() {
        let taken = &page[..slot];
        let allowed = loop {
            let allowed = allowed_items(items, config, rules, &taken_set(taken), taken, active);
            if !allowed.is_empty() || active >= items.len() {
                break allowed;
            }
            active = (active + step).min(items.len());
        };
        let Some(&pick) = page.get(slot) else {
            // The page ended: only the limit or the lack of an allowed item may end it.
            if slot < limit && !allowed.is_empty() {
                return Err(format!(
                    "the page ends at {slot} while items {allowed:?} may take the slot"
                ));
            }
            return Ok(());
        };
        if !allowed.contains(&pick) {
            return Err(format!(
                "slot {slot}: item {pick} may not take it (allowed: {allowed:?})"
            ));
        }
        let value = |i: usize| objective(items, config, &q0, taken, i);
        let best =
            allowed
                .iter()
                .map(|&i| (value(i), i))
                .fold((f64::NEG_INFINITY, usize::MAX), |a, b| {
                    if b.0 > a.0 { b } else { a }
                });
        let tolerance = match config.method {
            DiversityMethod::Mmr => MMR_TOLERANCE,
            DiversityMethod::Dpp => DPP_TOLERANCE,
        };
        if value(pick) < best.0 - tolerance {
            return Err(format!(
                "slot {slot}: item {pick} has objective {}, item {} has {}",
                value(pick),
                best.1,
                best.0
            ));
        }
    }
    Ok(())
}

fn taken_set(taken: &[usize]) -> HashSet<usize> {
    taken.iter().copied().collect()
}

/// Scores mapped to `[0, 1]` by the finite scores of the first `pool` items (all 1 when
/// they are equal; non-finite scores map to 0, later items are clamped).
fn normalised_scores(items: &[SlateItem<'_>], pool: usize) -> Vec<f64> {
    let head = &items[..pool.max(1).min(items.len())];
    let finite: Vec<f64> = head
        .iter()
        .map(|it| f64::from(it.score))
        .filter(|s| s.is_finite())
        .collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    items
        .iter()
        .map(|it| {
            let s = f64::from(it.score);
            if !s.is_finite() {
                0.0
            } else if hi > lo {
                ((s - lo) / (hi - lo)).clamp(0.0, 1.0)
            } else {
                1.0
            }
        })
        .collect()
}

/// The items among the first `active` that may take the next slot after `taken`: the
/// following rule's set, or when it asks for a followed creator and none may, any.
fn allowed_items(
    items: &[SlateItem<'_>],
    config: &SelectorConfig,
    rules: PageRules<'_>,
    taken_idx: &HashSet<usize>,
    taken: &[usize],
    active: usize,
) -> Vec<usize> {
    let ids: HashSet<_> = taken.iter().map(|&p| items[p].id).collect();
    let fits: Vec<usize> = (0..active)
        .filter(|i| !taken_idx.contains(i) && !ids.contains(items[*i].id))
        .filter(|&i| within_caps(items, config, rules, taken, i))
        .collect();
    let followed_on_page = taken.iter().filter(|&&p| items[p].followed).count();
    let len = (taken.len() + 1) as f64;
    let admits =
        |i: &usize, followed: Option<bool>| followed.is_none_or(|f| items[*i].followed == f);
    match rules.following {
        None => fits,
        Some(Shift::More) => {
            let need = (f64::from(config.following_more) * len - SHARE_EPS).ceil();
            if (followed_on_page as f64) < need {
                let only: Vec<usize> = fits
                    .iter()
                    .copied()
                    .filter(|i| admits(i, Some(true)))
                    .collect();
                if only.is_empty() { fits } else { only }
            } else {
                fits
            }
        }
        Some(Shift::Less) => {
            let allowed = (f64::from(config.following_less) * len + SHARE_EPS).floor();
            if (followed_on_page + 1) as f64 > allowed {
                fits.into_iter()
                    .filter(|i| admits(i, Some(false)))
                    .collect()
            } else {
                fits
            }
        }
    }
}

/// The topic cap (over the last `topic_window` slots including this one; `only` topics
/// exempt, boosted ones at the steered cap) and the teen cap on sensitive items.
fn within_caps(
    items: &[SlateItem<'_>],
    config: &SelectorConfig,
    rules: PageRules<'_>,
    taken: &[usize],
    i: usize,
) -> bool {
    let it = &items[i];
    let window = |w: usize| &taken[taken.len().saturating_sub(w.saturating_sub(1))..];
    let topics: HashSet<_> = it.topics.iter().collect();
    for t in topics {
        if rules.only_topics.contains(t) {
            continue;
        }
        let cap = if rules.boosted_topics.contains(t) {
            config.steered_topic_cap.max(config.topic_cap)
        } else {
            config.topic_cap
        };
        let count = window(config.topic_window)
            .iter()
            .filter(|&&p| items[p].topics.contains(t))
            .count();
        if count >= cap {
            return false;
        }
    }
    if rules.teen && it.sensitive {
        let count = window(config.teen_sensitive_window)
            .iter()
            .filter(|&&p| items[p].sensitive)
            .count();
        if count >= config.teen_sensitive_cap {
            return false;
        }
    }
    true
}

/// Cosine similarity of two items (their embeddings are unit vectors); 0 without one.
fn similarity(items: &[SlateItem<'_>], a: usize, b: usize) -> f64 {
    match (items[a].embedding, items[b].embedding) {
        (Some(x), Some(y)) => {
            let s: f64 = x
                .iter()
                .zip(y)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum();
            if s.is_finite() { s } else { 0.0 }
        }
        _ => 0.0,
    }
}

/// The objective of item `i` for the slot after `taken`.
fn objective(
    items: &[SlateItem<'_>],
    config: &SelectorConfig,
    q0: &[f64],
    taken: &[usize],
    i: usize,
) -> f64 {
    let mut per_creator: HashMap<_, usize> = HashMap::new();
    for &p in taken {
        *per_creator.entry(items[p].creator).or_default() += 1;
    }
    let k = per_creator.get(items[i].creator).copied().unwrap_or(0);
    let floor = f64::from(config.author_decay_floor);
    let decay = (1.0 - floor) * f64::from(config.author_decay_factor).powi(k as i32) + floor;
    let q = q0[i] * decay;
    match config.method {
        DiversityMethod::Mmr => {
            let lambda = f64::from(config.mmr_lambda);
            let max_sim = taken
                .iter()
                .map(|&p| similarity(items, i, p).max(0.0))
                .fold(0.0, f64::max);
            lambda * q - (1.0 - lambda) * max_sim
        }
        DiversityMethod::Dpp => {
            let window = &taken[taken.len().saturating_sub(config.dpp_window)..];
            q * q * residual(items, window, i)
        }
    }
}

/// `1 − sᵀ (S + εI)⁻¹ s` clamped to `[0, 1]` (0 when not finite), by Gaussian
/// elimination with partial pivoting on the augmented system `[S + εI | s]`.
fn residual(items: &[SlateItem<'_>], window: &[usize], i: usize) -> f64 {
    let n = window.len();
    if n == 0 {
        return 1.0;
    }
    let s: Vec<f64> = window.iter().map(|&p| similarity(items, i, p)).collect();
    let mut m: Vec<Vec<f64>> = (0..n)
        .map(|r| {
            let mut row: Vec<f64> = (0..n)
                .map(|c| {
                    if r == c {
                        1.0 + DPP_JITTER
                    } else {
                        similarity(items, window[r], window[c])
                    }
                })
                .collect();
            row.push(s[r]);
            row
        })
        .collect();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))
            .unwrap();
        m.swap(col, pivot);
        let (upper, lower) = m.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for row in lower {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let tail: f64 = (r + 1..n).map(|c| m[r][c] * x[c]).sum();
        x[r] = (m[r][n] - tail) / m[r][r];
    }
    let r = 1.0 - s.iter().zip(&x).map(|(a, b)| a * b).sum::<f64>();
    if r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::residual;

    use steerfeed_core::{UserId, VideoId};
    use steerfeed_rank::selectors::SlateItem;

    #[test]
    fn the_residual_follows_its_definition_on_small_windows() {
        let id = VideoId::new("v").unwrap();
        let creator = UserId::new("c").unwrap();
        let e = [
            [1.0f32, 0.0],
            [0.0, 1.0],
            [
                std::f32::consts::FRAC_1_SQRT_2,
                std::f32::consts::FRAC_1_SQRT_2,
            ],
        ];
        let items: Vec<SlateItem<'_>> = e
            .iter()
            .map(|v| SlateItem {
                id: &id,
                score: 1.0,
                creator: &creator,
                topics: &[],
                sensitive: false,
                followed: false,
                embedding: Some(v.as_slice()),
                exposures: 0.0,
            })
            .collect();
        // Orthogonal to the window: nothing explained.
        assert!((residual(&items, &[0], 1) - 1.0).abs() < 1e-12);
        // One pick at 45°: 1 − s²/(1 + ε).
        let want = 1.0 - 0.5 / (1.0 + super::DPP_JITTER);
        assert!((residual(&items, &[0], 2) - want).abs() < 1e-6);
        // A window spanning the plane explains almost all of the third vector:
        // 1 − sᵀ(I(1 + ε))⁻¹s with s = (√½, √½).
        let want = 1.0 - 1.0 / (1.0 + super::DPP_JITTER);
        assert!((residual(&items, &[0, 1], 2) - want).abs() < 1e-6);
    }
}

//! The synchronous pipeline runner (docs/design.md §3).
//!
//! Order: gate throttles, sources (candidates deduplicated by video, first source wins),
//! filters, scorers, the finite-score guard, sorting by score, the selector, inline
//! throttles. Every stage's counts land in the [`Trace`]. The runner is synchronous:
//! ANN search, ONNX inference and store reads are in-process, blocking work; callers
//! that serve async traffic run it on a blocking pool.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxBuildHasher;

use crate::error::{Error, Result};
use crate::feed::Card;
use crate::ids::VideoId;
use crate::score::rank_order;
use crate::stage::{
    Candidate, FeedContext, Filter, Role, Scorer, Selector, Source, StageReport, Throttle,
    ThrottleAction, Trace,
};
use crate::video::Video;

/// The name under which the runner reports candidates dropped for a non-finite score.
pub const NON_FINITE_GUARD: &str = "non_finite_score";

/// The result of one pipeline run.
#[derive(Debug)]
pub struct PipelineOutput {
    /// The page, in order.
    pub items: Vec<Candidate>,
    /// Cards, with positions into `items`.
    pub cards: Vec<Card>,
    /// True when a throttle stopped the request (the page is then empty).
    pub stopped: bool,
    /// True when an inline throttle cut the page short of its limit (a count cap is
    /// close): the page is as full as it may be.
    pub cut: bool,
    /// What each stage did.
    pub trace: Trace,
}

/// Takes the best `limit` candidates as they are ordered: the plainest selector.
#[derive(Debug, Default, Clone, Copy)]
pub struct TopK;

impl Selector for TopK {
    fn select(
        &self,
        _: &FeedContext,
        mut c: Vec<Candidate>,
        limit: usize,
    ) -> Result<Vec<Candidate>> {
        c.truncate(limit);
        Ok(c)
    }

    fn name(&self) -> &'static str {
        "top_k"
    }
}

/// A configured feed pipeline. Build one with [`Pipeline::builder`].
pub struct Pipeline {
    gates: Vec<Box<dyn Throttle>>,
    sources: Vec<Box<dyn Source>>,
    filters: Vec<Box<dyn Filter>>,
    scorers: Vec<Box<dyn Scorer>>,
    selector: Box<dyn Selector>,
    inline: Vec<Box<dyn Throttle>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[&'static str]| v.join(", ");
        f.debug_struct("Pipeline")
            .field(
                "gates",
                &names(&self.gates.iter().map(|s| s.name()).collect::<Vec<_>>()),
            )
            .field(
                "sources",
                &names(&self.sources.iter().map(|s| s.name()).collect::<Vec<_>>()),
            )
            .field(
                "filters",
                &names(&self.filters.iter().map(|s| s.name()).collect::<Vec<_>>()),
            )
            .field(
                "scorers",
                &names(&self.scorers.iter().map(|s| s.name()).collect::<Vec<_>>()),
            )
            .field("selector", &self.selector.name())
            .field(
                "inline",
                &names(&self.inline.iter().map(|s| s.name()).collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// Builds a [`Pipeline`]; stages of one role run in the order they are added.
#[derive(Default)]
pub struct PipelineBuilder {
    gates: Vec<Box<dyn Throttle>>,
    sources: Vec<Box<dyn Source>>,
    filters: Vec<Box<dyn Filter>>,
    scorers: Vec<Box<dyn Scorer>>,
    selector: Option<Box<dyn Selector>>,
    inline: Vec<Box<dyn Throttle>>,
}

impl PipelineBuilder {
    /// Adds a gate throttle (runs before any other stage).
    pub fn gate(mut self, t: impl Throttle + 'static) -> Self {
        self.gates.push(Box::new(t));
        self
    }

    /// Adds a source.
    pub fn source(mut self, s: impl Source + 'static) -> Self {
        self.sources.push(Box::new(s));
        self
    }

    /// Adds a filter.
    pub fn filter(mut self, f: impl Filter + 'static) -> Self {
        self.filters.push(Box::new(f));
        self
    }

    /// Adds a scorer.
    pub fn scorer(mut self, s: impl Scorer + 'static) -> Self {
        self.scorers.push(Box::new(s));
        self
    }

    /// Sets the selector (default: [`TopK`]).
    pub fn selector(mut self, s: impl Selector + 'static) -> Self {
        self.selector = Some(Box::new(s));
        self
    }

    /// Adds an inline throttle (runs on the chosen page).
    pub fn inline(mut self, t: impl Throttle + 'static) -> Self {
        self.inline.push(Box::new(t));
        self
    }

    /// Finishes the pipeline; it needs at least one source.
    pub fn build(self) -> Result<Pipeline> {
        if self.sources.is_empty() {
            return Err(Error::invalid(
                "pipeline",
                "a pipeline needs at least one source",
            ));
        }
        Ok(Pipeline {
            gates: self.gates,
            sources: self.sources,
            filters: self.filters,
            scorers: self.scorers,
            selector: self.selector.unwrap_or_else(|| Box::new(TopK)),
            inline: self.inline,
        })
    }
}

impl Pipeline {
    /// Starts a builder.
    pub fn builder() -> PipelineBuilder {
        PipelineBuilder::default()
    }

    /// Runs every stage for one request.
    pub fn run(&self, ctx: &FeedContext) -> Result<PipelineOutput> {
        self.run_pooled(ctx, None, 0).map(|(out, _)| out)
    }

    /// Runs the request and also returns up to `keep` of the ranked candidates the page
    /// left unserved, best first: the pool the next page of the same session can be
    /// picked from.
    ///
    /// With `pool` (the candidates a previous call returned, so distinct videos), the
    /// sources and scorers are skipped: the pool's candidates keep the scores they were
    /// given, and every gate, filter, the selector and the inline throttles run on them
    /// as on fresh ones, so whatever a filter enforces (consent, deletions, blocks, seen
    /// items, steering exclusions, audience) holds for a pooled page exactly as for a
    /// fresh one, as long as the caller hands in candidates whose videos are current.
    pub fn run_pooled(
        &self,
        ctx: &FeedContext,
        pool: Option<Vec<Candidate>>,
        keep: usize,
    ) -> Result<(PipelineOutput, Vec<Candidate>)> {
        let span = tracing::info_span!("pipeline", user = %ctx.request.user());
        let _enter = span.enter();
        let mut trace = Trace::default();
        let mut cards = Vec::new();

        for gate in &self.gates {
            match gate.run(ctx, &[], &mut trace)? {
                ThrottleAction::Pass => {}
                ThrottleAction::Stop(card) => return Ok((stopped(card, trace), Vec::new())),
                ThrottleAction::Insert(card) => cards.push(card),
                // Nothing to cut before there is a page.
                ThrottleAction::Cut(_) => {}
            }
        }

        let pooled = pool.is_some();
        let mut candidates = match pool {
            // Distinct already: a pool is what an earlier call returned.
            Some(pool) => pool,
            None => {
                let mut candidates = Vec::new();
                for source in &self.sources {
                    let proposed = source.run(ctx, &mut trace)?;
                    if candidates.is_empty() {
                        candidates = proposed;
                    } else {
                        candidates.extend(proposed);
                    }
                }
                dedup_by_id(&mut candidates);
                candidates
            }
        };

        for filter in &self.filters {
            candidates = filter.run(ctx, candidates, &mut trace)?;
        }

        if !pooled {
            for scorer in &self.scorers {
                scorer.run(ctx, &mut candidates, &mut trace)?;
            }
        }
        candidates = drop_non_finite(candidates, &mut trace);
        sort_by_rank(&mut candidates);

        let limit = ctx.request.limit();
        // The page comes from the best candidates; keeping `keep` beyond the page's size
        // leaves at least `keep` once the page's own are taken out.
        let kept = if keep == 0 { 0 } else { keep + limit };
        let mut rest = pool_of(&candidates, kept);
        let mut page = self.selector.run(ctx, candidates, limit, &mut trace)?;
        let mut cut = false;

        for throttle in &self.inline {
            match throttle.run(ctx, &page, &mut trace)? {
                ThrottleAction::Pass => {}
                ThrottleAction::Stop(card) => return Ok((stopped(card, trace), Vec::new())),
                ThrottleAction::Insert(card) => cards.push(card),
                ThrottleAction::Cut(n) => {
                    cut |= n < page.len();
                    page.truncate(n);
                }
            }
        }
        for card in &mut cards {
            card.position = card.position.min(page.len());
        }
        cards.sort_by_key(|c| c.position);

        if !rest.is_empty() {
            let served: HashSet<&VideoId, FxBuildHasher> = page.iter().map(|c| c.id()).collect();
            rest.retain(|c| !served.contains(c.id()));
            rest.truncate(keep);
        }
        Ok((
            PipelineOutput {
                items: page,
                cards,
                stopped: false,
                cut,
                trace,
            },
            rest,
        ))
    }
}

/// What the pipeline makes of one video for one request ([`Pipeline::explain_video`]).
#[derive(Debug, Clone)]
pub struct VideoTrace {
    /// The gate that stops the whole request (no video would be served), with its card.
    pub stopped_by: Option<(&'static str, Card)>,
    /// The sources that propose the video, in pipeline order, each with the video's
    /// place (0-based) among that source's own candidates.
    pub proposed_by: Vec<(&'static str, usize)>,
    /// Every filter that removes it, in pipeline order (each judged on its own).
    pub removed_by: Vec<&'static str>,
    /// The video scored as a candidate of the first source that proposes it (of no
    /// source, `source` "none", when none does).
    pub scored: Candidate,
}

impl Pipeline {
    /// What each stage does with `video` for this request, without serving anything:
    /// whether a gate stops the request, which sources propose the video, which filters
    /// remove it and the score the scorers give it. Every stage reads as for a page; a
    /// filter judges the video alone, and a video no source proposes is still filtered
    /// and scored, so an operator sees every reason at once.
    pub fn explain_video(&self, ctx: &FeedContext, video: Arc<Video>) -> Result<VideoTrace> {
        let mut trace = Trace::default();
        let mut stopped_by = None;
        for gate in &self.gates {
            if let ThrottleAction::Stop(card) = gate.run(ctx, &[], &mut trace)? {
                stopped_by = Some((gate.name(), card));
                break;
            }
        }
        let mut proposed_by = Vec::new();
        let mut first = None;
        for source in &self.sources {
            let proposed = source.run(ctx, &mut trace)?;
            if let Some(at) = proposed.iter().position(|c| c.id() == &video.id) {
                proposed_by.push((source.name(), at));
                if first.is_none() {
                    first = proposed.into_iter().nth(at);
                }
            }
        }
        let candidate = first.unwrap_or_else(|| {
            Candidate::new(Arc::clone(&video), "none", 0.0, crate::Reason::Fresh)
        });
        let mut removed_by = Vec::new();
        for filter in &self.filters {
            if filter
                .run(ctx, vec![candidate.clone()], &mut trace)?
                .is_empty()
            {
                removed_by.push(filter.name());
            }
        }
        let mut scored = vec![candidate];
        for scorer in &self.scorers {
            scorer.run(ctx, &mut scored, &mut trace)?;
        }
        let scored = scored.pop().ok_or_else(|| {
            Error::invalid("pipeline", "a scorer removed the candidate it was given")
        })?;
        Ok(VideoTrace {
            stopped_by,
            proposed_by,
            removed_by,
            scored,
        })
    }
}

/// What a page pool keeps of `candidates` (sorted best first): the best `kept` by score
/// and, when a shadow scored them, the best `kept` by the shadow's score too, so that a
/// later page drawn from the pool offers the shadow its own best as the first ranking
/// did; in the order of `candidates`.
fn pool_of(candidates: &[Candidate], kept: usize) -> Vec<Candidate> {
    if kept == 0 || !candidates.iter().any(|c| c.shadow_score.is_finite()) {
        return candidates.iter().take(kept).cloned().collect();
    }
    let mut keep = vec![false; candidates.len()];
    keep.iter_mut().take(kept).for_each(|k| *k = true);
    let mut by_shadow: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].shadow_score.is_finite())
        .collect();
    by_shadow.sort_by(|&a, &b| {
        candidates[b]
            .shadow_score
            .total_cmp(&candidates[a].shadow_score)
            .then(a.cmp(&b))
    });
    for &i in by_shadow.iter().take(kept) {
        keep[i] = true;
    }
    candidates
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(c, _)| c.clone())
        .collect()
}

fn stopped(mut card: Card, trace: Trace) -> PipelineOutput {
    card.position = 0;
    PipelineOutput {
        items: Vec::new(),
        cards: vec![card],
        stopped: true,
        cut: false,
        trace,
    }
}

/// Keeps the first candidate of each video, in order (the first source wins).
fn dedup_by_id(candidates: &mut Vec<Candidate>) {
    let mut seen: HashSet<&VideoId, FxBuildHasher> =
        HashSet::with_capacity_and_hasher(candidates.len(), FxBuildHasher);
    let first: Vec<bool> = candidates.iter().map(|c| seen.insert(c.id())).collect();
    drop(seen);
    if first.iter().all(|&f| f) {
        return;
    }
    let mut first = first.into_iter();
    candidates.retain(|_| first.next().unwrap_or(false));
}

/// Sorts by score, highest first, then by id ([`rank_order`], so non-finite scores sink):
/// sorts integer keys, then moves each candidate once to its place (a candidate is large;
/// sorting it in place moves it many times). Ids are distinct after [`dedup_by_id`], and
/// the index breaks any tie left, so the order is total and equals the stable sort's.
fn sort_by_rank(candidates: &mut Vec<Candidate>) {
    if u32::try_from(candidates.len()).is_err() {
        candidates.sort_by(|a, b| rank_order(a.score, b.score).then_with(|| a.id().cmp(b.id())));
        return;
    }
    // Upper half: the score as an integer that orders like `rank_order`; lower half: the
    // index. Equal scores are then ordered by id.
    let mut order: Vec<u64> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (u64::from(rank_key(c.score)) << 32) | i as u64)
        .collect();
    order.sort_unstable();
    let index = |k: u64| (k & u64::from(u32::MAX)) as usize;
    let mut run = 0;
    while run < order.len() {
        let key = order[run] >> 32;
        let end = order[run..]
            .iter()
            .position(|&k| k >> 32 != key)
            .map_or(order.len(), |n| run + n);
        if end - run > 1 {
            order[run..end].sort_unstable_by(|&a, &b| {
                candidates[index(a)]
                    .id()
                    .cmp(candidates[index(b)].id())
                    .then(a.cmp(&b))
            });
        }
        run = end;
    }
    if order.iter().enumerate().all(|(at, &k)| at == index(k)) {
        return;
    }
    let mut slots: Vec<Option<Candidate>> =
        std::mem::take(candidates).into_iter().map(Some).collect();
    candidates.extend(
        order
            .into_iter()
            .filter_map(|k| slots.get_mut(index(k)).and_then(Option::take)),
    );
}

/// A key whose ascending order is [`rank_order`]'s: finite scores highest first (in
/// `total_cmp` order, so `+0` before `-0`), then every non-finite score, all equal.
fn rank_key(score: f32) -> u32 {
    if !score.is_finite() {
        return u32::MAX;
    }
    let bits = score.to_bits();
    // `total_cmp`'s transform, as an unsigned integer that orders like the float ...
    let ascending = bits ^ ((((bits as i32) >> 31) as u32) >> 1) ^ 0x8000_0000;
    // ... reversed; a finite score never reaches `u32::MAX` (only -NaN patterns map to 0).
    !ascending
}

/// Non-finite scores never take a slot: they are removed and reported like a filter.
fn drop_non_finite(mut candidates: Vec<Candidate>, trace: &mut Trace) -> Vec<Candidate> {
    let start = Instant::now();
    let input = candidates.len();
    if candidates.iter().all(|c| c.score.is_finite()) {
        return candidates;
    }
    let bad: Vec<Candidate> = candidates
        .extract_if(.., |c| !c.score.is_finite())
        .collect();
    let kept = candidates;
    if !bad.is_empty() {
        tracing::warn!(
            count = bad.len(),
            "dropped candidates with non-finite scores"
        );
        trace.stages.push(StageReport {
            stage: NON_FINITE_GUARD,
            role: Role::Filter,
            input,
            output: kept.len(),
            removed: bad.iter().map(|c| c.id().clone()).collect(),
            card: None,
            micros: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
    }
    kept
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn score() -> impl Strategy<Value = f32> {
        prop_oneof![
            any::<f32>(),
            Just(f32::NAN),
            Just(-f32::NAN),
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            Just(f32::MAX),
            Just(f32::MIN),
        ]
    }

    fn candidate(id: &str, score: f32) -> Candidate {
        let video = crate::video::Video::new(
            VideoId::new(id).unwrap(),
            crate::ids::UserId::new("c").unwrap(),
            jiff::Timestamp::UNIX_EPOCH,
            10.0,
        );
        let mut c = Candidate::new(std::sync::Arc::new(video), "s", 0.0, crate::Reason::Popular);
        c.score = score;
        c
    }

    proptest! {
        #[test]
        fn rank_key_orders_like_rank_order(a in score(), b in score()) {
            prop_assert_eq!(rank_key(a).cmp(&rank_key(b)), rank_order(a, b));
        }

        #[test]
        fn sort_by_rank_is_the_stable_sort_by_score_then_id(
            scores in proptest::collection::vec(
                prop_oneof![score(), (0u8..4).prop_map(f32::from)], 0..64),
            ids in proptest::collection::vec(0u16..1000, 64),
        ) {
            let mut seen = std::collections::HashSet::new();
            let mut candidates: Vec<Candidate> = scores
                .iter()
                .zip(&ids)
                .filter(|(_, id)| seen.insert(**id))
                .map(|(&s, id)| candidate(&format!("v{id}"), s))
                .collect();
            let mut expected: Vec<(VideoId, u32)> =
                candidates.iter().map(|c| (c.id().clone(), c.score.to_bits())).collect();
            expected.sort_by(|a, b| {
                rank_order(f32::from_bits(a.1), f32::from_bits(b.1)).then_with(|| a.0.cmp(&b.0))
            });
            sort_by_rank(&mut candidates);
            let got: Vec<(VideoId, u32)> =
                candidates.iter().map(|c| (c.id().clone(), c.score.to_bits())).collect();
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_pool_keeps_the_shadows_best_too() {
        // Best first by score; the shadow likes the last two best.
        let mut cands: Vec<Candidate> = (0..8)
            .map(|i| candidate(&format!("v{i}"), 10.0 - i as f32))
            .collect();
        let ids = |p: &[Candidate]| -> Vec<String> {
            p.iter().map(|c| c.id().as_str().to_owned()).collect()
        };
        assert_eq!(ids(&pool_of(&cands, 3)), ["v0", "v1", "v2"]);
        for (i, c) in cands.iter_mut().enumerate() {
            c.shadow_score = if i == 5 { f32::NAN } else { i as f32 };
        }
        // v7 and v6 by the shadow (v5 has no shadow score), in the order of the list.
        assert_eq!(
            ids(&pool_of(&cands, 3)),
            ["v0", "v1", "v2", "v4", "v6", "v7"]
        );
        assert!(pool_of(&cands, 0).is_empty());
    }
}

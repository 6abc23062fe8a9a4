//! The synchronous pipeline runner (DESIGN §3).
//!
//! Order: gate throttles, sources (candidates deduplicated by video, first source wins),
//! filters, scorers, the finite-score guard, sorting by score, the selector, inline
//! throttles. Every stage's counts land in the [`Trace`]. The runner is synchronous:
//! ANN search, ONNX inference and store reads are in-process, blocking work; callers
//! that serve async traffic run it on a blocking pool.

use std::collections::HashSet;
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
        let span = tracing::info_span!("pipeline", user = %ctx.request.user());
        let _enter = span.enter();
        let mut trace = Trace::default();
        let mut cards = Vec::new();

        for gate in &self.gates {
            match gate.run(ctx, &[], &mut trace)? {
                ThrottleAction::Pass => {}
                ThrottleAction::Stop(card) => return Ok(stopped(card, trace)),
                ThrottleAction::Insert(card) => cards.push(card),
            }
        }

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

        for filter in &self.filters {
            candidates = filter.run(ctx, candidates, &mut trace)?;
        }

        for scorer in &self.scorers {
            scorer.run(ctx, &mut candidates, &mut trace)?;
        }
        candidates = drop_non_finite(candidates, &mut trace);
        sort_by_rank(&mut candidates);

        let limit = ctx.request.limit();
        let page = self.selector.run(ctx, candidates, limit, &mut trace)?;

        for throttle in &self.inline {
            match throttle.run(ctx, &page, &mut trace)? {
                ThrottleAction::Pass => {}
                ThrottleAction::Stop(card) => return Ok(stopped(card, trace)),
                ThrottleAction::Insert(card) => cards.push(card),
            }
        }
        for card in &mut cards {
            card.position = card.position.min(page.len());
        }
        cards.sort_by_key(|c| c.position);

        Ok(PipelineOutput {
            items: page,
            cards,
            stopped: false,
            trace,
        })
    }
}

fn stopped(mut card: Card, trace: Trace) -> PipelineOutput {
    card.position = 0;
    PipelineOutput {
        items: Vec::new(),
        cards: vec![card],
        stopped: true,
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

/// Sorts by score, highest first, then by id: sorts indices, then moves each candidate
/// once to its place (a candidate is large; sorting it in place moves it many times).
/// Ids are distinct after [`dedup_by_id`], and the index breaks any tie left, so the
/// order is total and equals the stable sort's.
fn sort_by_rank(candidates: &mut Vec<Candidate>) {
    let mut order: Vec<(f32, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.score, i))
        .collect();
    order.sort_unstable_by(|&(sa, a), &(sb, b)| {
        rank_order(sa, sb)
            .then_with(|| candidates[a].id().cmp(candidates[b].id()))
            .then(a.cmp(&b))
    });
    if order.iter().enumerate().all(|(at, &(_, i))| at == i) {
        return;
    }
    let mut slots: Vec<Option<Candidate>> =
        std::mem::take(candidates).into_iter().map(Some).collect();
    candidates.extend(
        order
            .into_iter()
            .filter_map(|(_, i)| slots.get_mut(i).and_then(Option::take)),
    );
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

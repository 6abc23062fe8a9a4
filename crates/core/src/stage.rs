//! The stage traits of the feed pipeline (docs/design.md §3).
//!
//! Each stage has one method to implement. The provided `run` method wraps it in a
//! tracing span, records counts and timing in the request's [`Trace`], and turns a
//! failure into [`Error::Stage`] naming the stage, so the runner, `eval` and `/metrics`
//! can say which stage produced, dropped or failed what.
//!
//! `name` has a default (the type's name) and is meant to be overridden with a short,
//! stable snake_case name (`following`, `consent`), which is what metrics and traces use.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxBuildHasher;

use crate::constraints::Constraints;
use crate::error::{Error, Result};
use crate::explain::Reason;
use crate::feed::{Card, FeedRequest};
use crate::ids::{TopicId, UserId, VideoId};
use crate::score::ScoreBreakdown;
use crate::user::{ParentalControls, User, WellbeingState};
use crate::vector::Embedding;
use crate::video::Video;

/// Everything the stages know about one request, loaded once before they run.
#[derive(Debug, Clone)]
pub struct FeedContext {
    /// The request.
    pub request: FeedRequest,
    /// The clock of this request.
    pub now: jiff::Timestamp,
    /// The viewer.
    pub user: User,
    /// The viewer's active (unexpired, policy-checked) steering constraints.
    pub constraints: Constraints,
    /// Parental controls in force.
    pub parental: ParentalControls,
    /// Wellbeing counters.
    pub wellbeing: WellbeingState,
    /// The viewer's interest vector, unless personalization is off or there is none yet.
    pub interest: Option<Embedding>,
    /// Several interest directions when the viewer's recent history is varied (each a
    /// cluster of it, blended with the long-term vector), searched in place of
    /// `interest` by the interest source; empty otherwise.
    pub interests: Vec<Embedding>,
    /// The steering concepts of `constraints` as vectors (embedded once by the engine when
    /// the preferences are set): positive weights boost, negative weights reduce.
    pub concepts: Vec<ConceptVector>,
    /// The `exclude` concepts of `constraints`, resolved (weight unused).
    pub exclude: Vec<ConceptVector>,
    /// The `only` concepts of `constraints`, resolved (weight unused).
    pub only: Vec<ConceptVector>,
    /// What the engine knows about the viewer's relations and recent history.
    pub viewer: Viewer,
}

impl FeedContext {
    /// A context for `request` by `user` at `now` with no constraints, default parental
    /// controls, fresh wellbeing counters, no interest vector and no history; the engine
    /// fills in the rest from the store.
    pub fn new(request: FeedRequest, user: User, now: jiff::Timestamp) -> Self {
        Self {
            request,
            now,
            user,
            constraints: Constraints::default(),
            parental: ParentalControls::default(),
            wellbeing: WellbeingState::default(),
            interest: None,
            interests: Vec::new(),
            concepts: Vec::new(),
            exclude: Vec::new(),
            only: Vec::new(),
            viewer: Viewer::default(),
        }
    }

    /// Minutes since the session started (0 without a session).
    pub fn session_minutes(&self) -> f32 {
        self.wellbeing
            .session_started
            .map_or(0.0, |t| minutes_between(t, self.now))
    }
}

/// Minutes from `a` to `b`, 0 when `b` is earlier.
pub fn minutes_between(a: jiff::Timestamp, b: jiff::Timestamp) -> f32 {
    ((b.as_millisecond() - a.as_millisecond()).max(0) as f64 / 60_000.0) as f32
}

/// A set of ids hashed with [`FxBuildHasher`]: ids are short strings, and the viewer's
/// sets are built and probed hundreds of times per request, where SipHash's cost shows.
pub type IdSet<T> = HashSet<T, FxBuildHasher>;

/// A map from ids hashed with [`FxBuildHasher`] (see [`IdSet`]).
pub type IdMap<K, V> = HashMap<K, V, FxBuildHasher>;

/// The viewer's relations and recent history, loaded once per request. Bounded by the
/// store (recent seen items, recent own videos), so every check is a set lookup.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// Creators the viewer follows.
    pub following: IdSet<UserId>,
    /// Creators the viewer blocked.
    pub blocked: IdSet<UserId>,
    /// Creators the viewer muted (or hid with "hide creator").
    pub muted: IdSet<UserId>,
    /// Videos served to or seen by the viewer recently, and videos marked not interested.
    pub seen: IdSet<VideoId>,
    /// The viewer's own recent videos (to recognise remixes of them).
    pub own_videos: IdSet<VideoId>,
    /// Recent interaction strength with each creator, in `[0, 1]` (likes, comments,
    /// remixes of their videos, decayed): the "recent interaction" part of the tie term.
    pub creator_affinity: IdMap<UserId, f32>,
    /// The viewer's block or mute list could not be read in full (a damaged record): the
    /// feed fails closed, serving only people the viewer follows, since anyone else might
    /// be the one the unreadable record blocks.
    pub relations_unreadable: bool,
}

/// A steering concept as a direction in the catalog's embedding space.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptVector {
    /// The phrase or topic, for explanations.
    pub label: String,
    /// The taxonomy topic, when the concept names one: a video carrying it matches fully.
    pub topic: Option<TopicId>,
    /// Its embedding.
    pub vector: Embedding,
    /// Signed strength: positive for boost, negative for reduce.
    pub weight: f32,
}

/// A video on its way through the pipeline.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The video.
    pub video: Arc<Video>,
    /// The name of the source that proposed it.
    pub source: &'static str,
    /// The source's own relevance (similarity, co-engagement weight, ...).
    pub source_score: f32,
    /// Why the source proposed it.
    pub reason: Reason,
    /// The ranking score; set by scorers.
    pub score: f32,
    /// How the score was made; set by scorers.
    pub breakdown: ScoreBreakdown,
    /// What the action heads read; set by scorers, logged with the impression.
    pub inputs: crate::HeadInputs,
    /// The video's (decayed) exposures; set by scorers. Exploration favours the few.
    pub exposures: f32,
    /// The probability that the selector put this candidate in its slot; 1 for a slot
    /// it fills by ranking alone.
    pub propensity: f32,
    /// The choice the selector faced when it could explore this candidate's slot.
    pub draw: Option<crate::SlotDraw>,
    /// The score the shadow profile's scorer gave it (`[learning] shadow`); NaN when no
    /// shadow scored it.
    pub shadow_score: f32,
}

impl Candidate {
    /// A new candidate with no score yet.
    pub fn new(video: Arc<Video>, source: &'static str, source_score: f32, reason: Reason) -> Self {
        Self {
            video,
            source,
            source_score,
            reason,
            score: 0.0,
            breakdown: ScoreBreakdown::default(),
            inputs: crate::HeadInputs::default(),
            exposures: 0.0,
            propensity: 1.0,
            draw: None,
            shadow_score: f32::NAN,
        }
    }

    /// The video's id.
    pub fn id(&self) -> &VideoId {
        &self.video.id
    }
}

/// The role a stage plays, for traces and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// Proposes candidates.
    Source,
    /// Removes candidates.
    Filter,
    /// Scores candidates.
    Scorer,
    /// Chooses and orders the page.
    Selector,
    /// Stops the request or inserts a card.
    Throttle,
    /// Work around the stages: loading the context, assembling the response.
    Context,
}

/// What one stage did in one request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageReport {
    /// The stage's name.
    pub stage: &'static str,
    /// Its role.
    pub role: Role,
    /// Candidates in.
    pub input: usize,
    /// Candidates out (for a source, how many it proposed).
    pub output: usize,
    /// For a filter, the ids it removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<VideoId>,
    /// For a throttle, the card it produced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<Card>,
    /// Wall time in microseconds.
    pub micros: u64,
}

impl StageReport {
    /// A report that only times a step outside the stages (loading the context,
    /// assembling the response).
    pub fn timing(stage: &'static str, micros: u64) -> Self {
        Self {
            stage,
            role: Role::Context,
            input: 0,
            output: 0,
            removed: Vec::new(),
            card: None,
            micros,
        }
    }
}

/// What every stage did in one request, in order.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Trace {
    /// One report per stage run.
    pub stages: Vec<StageReport>,
}

impl Trace {
    /// The report of the stage named `stage`, if it ran.
    pub fn stage(&self, stage: &str) -> Option<&StageReport> {
        self.stages.iter().find(|r| r.stage == stage)
    }

    fn push(&mut self, report: StageReport) {
        tracing::debug!(
            stage = report.stage,
            role = ?report.role,
            input = report.input,
            output = report.output,
            micros = report.micros,
            "stage done"
        );
        self.stages.push(report);
    }
}

fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

fn stage_error(stage: &'static str, e: Error) -> Error {
    Error::Stage {
        stage,
        source: Box::new(e),
    }
}

fn elapsed_us(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Proposes candidates (docs/design.md §3 step 3).
pub trait Source: Send + Sync {
    /// Proposes candidates for the request.
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>>;

    /// A short, stable name.
    fn name(&self) -> &'static str {
        short_type_name::<Self>()
    }

    /// Runs [`Source::fetch`] in a span and records what it proposed.
    fn run(&self, ctx: &FeedContext, trace: &mut Trace) -> Result<Vec<Candidate>> {
        let span = tracing::debug_span!("source", stage = self.name());
        let _enter = span.enter();
        let start = Instant::now();
        let out = self.fetch(ctx).map_err(|e| stage_error(self.name(), e))?;
        trace.push(StageReport {
            stage: self.name(),
            role: Role::Source,
            input: 0,
            output: out.len(),
            removed: Vec::new(),
            card: None,
            micros: elapsed_us(start),
        });
        Ok(out)
    }
}

/// What a filter kept and what it removed.
#[derive(Debug, Default)]
pub struct Filtered {
    /// Candidates that pass.
    pub kept: Vec<Candidate>,
    /// Candidates removed.
    pub removed: Vec<Candidate>,
}

impl Filtered {
    /// Splits `candidates` by a predicate: those for which `keep` is true are kept, both
    /// sides in their original order. In place: the kept candidates stay in the input's
    /// buffer (untouched when nothing is removed), only removed ones move.
    pub fn partition(
        mut candidates: Vec<Candidate>,
        mut keep: impl FnMut(&Candidate) -> bool,
    ) -> Self {
        let removed = candidates.extract_if(.., |c| !keep(c)).collect();
        Self {
            kept: candidates,
            removed,
        }
    }

    /// Keeps every candidate.
    pub fn all(candidates: Vec<Candidate>) -> Self {
        Self {
            kept: candidates,
            removed: Vec::new(),
        }
    }
}

/// Removes candidates that must not be served (docs/design.md §3 step 4).
pub trait Filter: Send + Sync {
    /// Splits the candidates into kept and removed.
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered>;

    /// A short, stable name.
    fn name(&self) -> &'static str {
        short_type_name::<Self>()
    }

    /// Runs [`Filter::filter`] in a span and records what it removed.
    fn run(
        &self,
        ctx: &FeedContext,
        candidates: Vec<Candidate>,
        trace: &mut Trace,
    ) -> Result<Vec<Candidate>> {
        let span = tracing::debug_span!("filter", stage = self.name());
        let _enter = span.enter();
        let start = Instant::now();
        let input = candidates.len();
        let Filtered { kept, removed } = self
            .filter(ctx, candidates)
            .map_err(|e| stage_error(self.name(), e))?;
        if kept.len() + removed.len() != input {
            return Err(stage_error(
                self.name(),
                Error::internal("pipeline", "a filter lost or invented candidates"),
            ));
        }
        trace.push(StageReport {
            stage: self.name(),
            role: Role::Filter,
            input,
            output: kept.len(),
            removed: removed.iter().map(|c| c.id().clone()).collect(),
            card: None,
            micros: elapsed_us(start),
        });
        Ok(kept)
    }
}

/// Scores candidates (docs/design.md §3 step 5): sets `score` and `breakdown`.
pub trait Scorer: Send + Sync {
    /// Scores every candidate in place.
    fn score(&self, ctx: &FeedContext, candidates: &mut [Candidate]) -> Result<()>;

    /// A short, stable name.
    fn name(&self) -> &'static str {
        short_type_name::<Self>()
    }

    /// Runs [`Scorer::score`] in a span.
    fn run(
        &self,
        ctx: &FeedContext,
        candidates: &mut [Candidate],
        trace: &mut Trace,
    ) -> Result<()> {
        let span = tracing::debug_span!("scorer", stage = self.name());
        let _enter = span.enter();
        let start = Instant::now();
        self.score(ctx, candidates)
            .map_err(|e| stage_error(self.name(), e))?;
        trace.push(StageReport {
            stage: self.name(),
            role: Role::Scorer,
            input: candidates.len(),
            output: candidates.len(),
            removed: Vec::new(),
            card: None,
            micros: elapsed_us(start),
        });
        Ok(())
    }
}

/// Chooses and orders at most `limit` candidates (docs/design.md §3 step 6). Receives them
/// sorted by score, highest first, all scores finite.
pub trait Selector: Send + Sync {
    /// Picks the page.
    fn select(
        &self,
        ctx: &FeedContext,
        candidates: Vec<Candidate>,
        limit: usize,
    ) -> Result<Vec<Candidate>>;

    /// A short, stable name.
    fn name(&self) -> &'static str {
        short_type_name::<Self>()
    }

    /// Runs [`Selector::select`] in a span; the page is cut to `limit` whatever it returns.
    fn run(
        &self,
        ctx: &FeedContext,
        candidates: Vec<Candidate>,
        limit: usize,
        trace: &mut Trace,
    ) -> Result<Vec<Candidate>> {
        let span = tracing::debug_span!("selector", stage = self.name());
        let _enter = span.enter();
        let start = Instant::now();
        let input = candidates.len();
        let mut page = self
            .select(ctx, candidates, limit)
            .map_err(|e| stage_error(self.name(), e))?;
        page.truncate(limit);
        trace.push(StageReport {
            stage: self.name(),
            role: Role::Selector,
            input,
            output: page.len(),
            removed: Vec::new(),
            card: None,
            micros: elapsed_us(start),
        });
        Ok(page)
    }
}

/// What a throttle decided.
#[derive(Debug, Clone, PartialEq)]
pub enum ThrottleAction {
    /// Nothing to do.
    Pass,
    /// Stop: serve this card and no items (a gate: daily limit, bedtime, scroll cap).
    Stop(Card),
    /// Add this card to the page (check-in, creation prompt).
    Insert(Card),
    /// Serve at most this many of the page's items (a cap is close: the rest would
    /// overshoot it). Inline throttles only; the items cut stay in the page pool.
    Cut(usize),
}

/// Wellbeing and parental throttles (docs/design.md §3 steps 2 and 7, §6). Gate throttles run
/// before any other work with an empty page; inline throttles run on the chosen page.
pub trait Throttle: Send + Sync {
    /// Decides on the request, given the page chosen so far (empty for gates).
    fn check(&self, ctx: &FeedContext, page: &[Candidate]) -> Result<ThrottleAction>;

    /// A short, stable name.
    fn name(&self) -> &'static str {
        short_type_name::<Self>()
    }

    /// Runs [`Throttle::check`] in a span and records any card.
    fn run(
        &self,
        ctx: &FeedContext,
        page: &[Candidate],
        trace: &mut Trace,
    ) -> Result<ThrottleAction> {
        let span = tracing::debug_span!("throttle", stage = self.name());
        let _enter = span.enter();
        let start = Instant::now();
        let action = self
            .check(ctx, page)
            .map_err(|e| stage_error(self.name(), e))?;
        let (card, output) = match &action {
            ThrottleAction::Pass => (None, page.len()),
            ThrottleAction::Stop(c) => (Some(c.clone()), 0),
            ThrottleAction::Insert(c) => (Some(c.clone()), page.len()),
            ThrottleAction::Cut(n) => (None, page.len().min(*n)),
        };
        trace.push(StageReport {
            stage: self.name(),
            role: Role::Throttle,
            input: page.len(),
            output,
            removed: Vec::new(),
            card,
            micros: elapsed_us(start),
        });
        Ok(action)
    }
}

// Boxed stages are stages, so configured lists of them can be added to a pipeline.

impl<T: Source + ?Sized> Source for Box<T> {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        (**self).fetch(ctx)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}

impl<T: Filter + ?Sized> Filter for Box<T> {
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        (**self).filter(ctx, candidates)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}

impl<T: Throttle + ?Sized> Throttle for Box<T> {
    fn check(&self, ctx: &FeedContext, page: &[Candidate]) -> Result<ThrottleAction> {
        (**self).check(ctx, page)
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
}

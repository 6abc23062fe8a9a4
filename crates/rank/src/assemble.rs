//! The assembled ranking pipeline (docs/design.md §3): every source, filter, the objective
//! scorer, the diversity selector and the wellbeing throttles, wired into core's
//! [`Pipeline`] from one [`RankConfig`] and the [`Ports`] the engine provides.

use std::sync::Arc;

use steerfeed_core::ports::{
    ActionStats, CoEngagement, ConsentLedger, EngagementStats, SocialGraph, Trending, UserHistory,
    VectorSearch, VideoCatalog,
};
use steerfeed_core::{Pipeline, PipelineBuilder, Result};

use crate::filters::{FilterConfig, default_filters};
use crate::recent_profile::RecentProfileConfig;
use crate::scorers::{ObjectiveScorer, ScorerConfig, ShadowScorer};
use crate::selectors::{DiversitySelector, SelectorConfig};
use crate::sources::{
    CoEngagementConfig, CoEngagementSource, FollowingSource, FreshSource, InterestAnnSource,
    PopularSource, RemixTrendsSource, SocialCameoSource, SourceQuotas, SteerAnnSource,
    SteerTopicSource, TrendingSource,
};
use crate::throttles::{
    BedtimeGate, BreakThrottle, CheckinThrottle, CreationPromptThrottle, DailyLimitGate,
    PageCapThrottle, ScrollCapGate, WellbeingConfig,
};
use crate::trending::TrendingParams;

/// Every ranking tunable, one section per stage role; each field has its defaults.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankConfig {
    /// Per-source quotas.
    pub sources: SourceQuotas,
    /// How recent engagements vote in the co-engagement source.
    pub co_engagement: CoEngagementConfig,
    /// The recent-taste profile blended into the interest vector.
    pub recent_profile: RecentProfileConfig,
    /// What counts as trending across the catalogue.
    pub trending: TrendingParams,
    /// Filter thresholds.
    pub filters: FilterConfig,
    /// The objective.
    pub scorer: ScorerConfig,
    /// The page: diversity and caps.
    pub selector: SelectorConfig,
    /// Wellbeing and parental policy.
    pub wellbeing: WellbeingConfig,
}

impl RankConfig {
    /// Checks every section.
    pub fn validate(&self) -> Result<()> {
        self.co_engagement.validate()?;
        self.recent_profile.validate()?;
        self.trending.validate()?;
        self.filters.validate()?;
        self.scorer.validate()?;
        self.selector.validate()?;
        self.wellbeing.validate()?;
        Ok(())
    }
}

/// What the stages read: the store's ports, the vector index and the co-engagement
/// model.
#[derive(Clone)]
pub struct Ports {
    /// Videos.
    pub catalog: Arc<dyn VideoCatalog>,
    /// The follow graph.
    pub graph: Arc<dyn SocialGraph>,
    /// The ANN index.
    pub search: Arc<dyn VectorSearch>,
    /// Popular and remix-trending lists.
    pub engagement: Arc<dyn EngagementStats>,
    /// Per-video and per-creator action counters.
    pub actions: Arc<dyn ActionStats>,
    /// Users' recent engagements.
    pub history: Arc<dyn UserHistory>,
    /// Item-to-item co-engagement.
    pub co_engagement: Arc<dyn CoEngagement>,
    /// The trending list.
    pub trending: Arc<dyn Trending>,
    /// Cameo consent.
    pub consent: Arc<dyn ConsentLedger>,
    /// The action heads' coefficients the scorer applies.
    pub model: Arc<crate::scorers::ModelSlot>,
    /// Another profile scoring beside this one, whose greedy picks the selector serves
    /// at a share of the slots (none: no shadow).
    pub shadow: Option<Shadow>,
}

/// A shadow profile, as the stages need it: its objective, its model slot (shared with
/// the profile itself, so a model put in force there scores here too) and the share.
#[derive(Clone)]
pub struct Shadow {
    /// The shadow profile's objective.
    pub scorer: ScorerConfig,
    /// Its action heads.
    pub model: Arc<crate::scorers::ModelSlot>,
    /// The probability with which each slot serves its greedy pick, in `(0, 1]`.
    pub share: f32,
    /// Its own exploration rate (`selector.explore`).
    pub explore: f32,
}

/// Builds the pipeline. Sources run in an order that makes the most telling reason win
/// when two propose the same video: following, friends' cameos, steering (by embedding, then by topic),
/// co-engagement, interest, remix trends, trending, fresh, popular.
pub fn build_pipeline(cfg: &RankConfig, p: &Ports) -> Result<Pipeline> {
    cfg.validate()?;
    let q = &cfg.sources;
    let b = Pipeline::builder()
        .source(FollowingSource::new(
            p.catalog.clone(),
            p.graph.clone(),
            q.following,
        ))
        .source(SocialCameoSource::new(
            p.catalog.clone(),
            p.graph.clone(),
            q.social_cameo,
        ))
        .source(SteerAnnSource::new(
            p.catalog.clone(),
            p.search.clone(),
            q.steer_ann,
        ))
        .source(SteerTopicSource::new(p.catalog.clone(), q.steer_topic))
        .source(CoEngagementSource::new(
            p.catalog.clone(),
            p.history.clone(),
            p.co_engagement.clone(),
            q.co_engagement,
            cfg.co_engagement,
        ))
        .source(InterestAnnSource::new(
            p.catalog.clone(),
            p.search.clone(),
            q.interest_ann,
        ))
        .source(RemixTrendsSource::new(
            p.catalog.clone(),
            p.engagement.clone(),
            q.remix_trends,
        ))
        .source(TrendingSource::new(
            p.catalog.clone(),
            p.trending.clone(),
            q.trending,
        ))
        .source(FreshSource::new(p.catalog.clone(), q.fresh))
        .source(PopularSource::new(
            p.catalog.clone(),
            p.engagement.clone(),
            q.popular,
        ));
    ranking_stages(b, cfg, p)?.build()
}

/// Adds everything after the sources to `b`: the gate throttles, the filters, the
/// objective scorer, the selector and the inline throttles. [`build_pipeline`] uses it
/// after adding the sources; the ranking bench uses it after a fixed candidate set.
/// Fails only when `cfg` does not validate.
pub fn ranking_stages(
    mut b: PipelineBuilder,
    cfg: &RankConfig,
    p: &Ports,
) -> Result<PipelineBuilder> {
    let wellbeing = Arc::new(cfg.wellbeing.clone());
    b = b
        .gate(DailyLimitGate::new(wellbeing.clone()))
        .gate(BedtimeGate::new(wellbeing.clone()))
        .gate(ScrollCapGate::new());
    for f in default_filters(&cfg.filters, p.graph.clone(), p.consent.clone()) {
        b = b.filter(f);
    }
    let objective = |scorer: ScorerConfig, model: &Arc<crate::scorers::ModelSlot>| {
        ObjectiveScorer::new(
            scorer,
            cfg.wellbeing.clone(),
            p.actions.clone(),
            p.graph.clone(),
            p.consent.clone(),
            model.clone(),
        )
    };
    b = b.scorer(objective(cfg.scorer, &p.model));
    let mut selector = DiversitySelector::new(cfg.selector)?;
    if let Some(sh) = &p.shadow {
        b = b.scorer(ShadowScorer::new(objective(sh.scorer, &sh.model)));
        selector = selector.with_shadow(sh.share, sh.explore)?;
    }
    Ok(b.selector(selector)
        .inline(PageCapThrottle::new(wellbeing.clone()))
        .inline(CheckinThrottle::new(wellbeing.clone()))
        .inline(CreationPromptThrottle::new(wellbeing.clone()))
        .inline(BreakThrottle::new(wellbeing)))
}

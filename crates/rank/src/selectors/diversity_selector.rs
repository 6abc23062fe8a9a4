//! [`DiversitySelector`]: the pipeline's selector stage (docs/design.md §3 step 6).

use steerfeed_core::{Candidate, FeedContext, Result, Selector, TopicId};

use super::{PageRules, SelectorConfig, ShadowSpec, SlateItem, select_slate_shadowed};

/// Diversity re-rank (MMR or sliding-window DPP), author decay, topic cap, following
/// share from steering and the teen sensitive-content cap, as one greedy page fill
/// ([`select_slate`]). Scores and breakdowns are left as the scorer set them.
#[derive(Debug, Clone, Default)]
pub struct DiversitySelector {
    config: SelectorConfig,
    /// The share of each slot served to the shadow's greedy pick (0: no shadow).
    shadow_share: f32,
    /// The shadow profile's own exploration rate.
    shadow_explore: f32,
}

impl DiversitySelector {
    /// A selector with `config`, once it passes [`SelectorConfig::validate`].
    pub fn new(config: SelectorConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            shadow_share: 0.0,
            shadow_explore: 0.0,
        })
    }

    /// The selector serving, at every slot, the shadow's greedy pick (by the candidates'
    /// shadow scores) with probability `share` (see [`select_slate_shadowed`]), and
    /// reporting the shadow's own draw sets when its rate `explore` is above 0; a share
    /// that leaves no room beside this selector's `explore` is an error.
    pub fn with_shadow(mut self, share: f32, explore: f32) -> Result<Self> {
        if !(0.0..=1.0).contains(&share) || share + self.config.explore > 1.0 {
            return Err(steerfeed_core::Error::invalid(
                "shadow_share",
                format!(
                    "must be in [0, 1] and at most 1 - explore ({}), not {share}",
                    1.0 - self.config.explore
                ),
            ));
        }
        self.shadow_share = share;
        self.shadow_explore = explore;
        Ok(self)
    }

    /// The configuration in force.
    pub fn config(&self) -> &SelectorConfig {
        &self.config
    }
}

/// Exploration's seed for one request: a hash of the viewer, the request's clock and its
/// cursor, so the same request replays the same page.
fn explore_seed(ctx: &FeedContext) -> u64 {
    let mut h = steerfeed_core::hash::Fnv1a::new();
    h.update(ctx.request.user().as_str().as_bytes());
    h.update(&ctx.now.as_millisecond().to_le_bytes());
    if let Some(c) = ctx.request.cursor() {
        h.update(c.as_str().as_bytes());
    }
    h.finish()
}

impl Selector for DiversitySelector {
    fn select(
        &self,
        ctx: &FeedContext,
        candidates: Vec<Candidate>,
        limit: usize,
    ) -> Result<Vec<Candidate>> {
        let only = ctx.constraints.only_topics();
        let boosted: Vec<TopicId> = ctx
            .constraints
            .boost
            .iter()
            .filter_map(|c| c.topic.clone())
            .collect();
        let rules = PageRules::for_context(ctx).with_topics(&only, &boosted);
        let following = rules.following.map(|_| &ctx.viewer.following);
        let slate = {
            let items: Vec<SlateItem<'_>> = candidates
                .iter()
                .map(|c| SlateItem::from_candidate(c, following))
                .collect();
            let shadow: Vec<f32> = if self.shadow_share > 0.0 {
                candidates.iter().map(|c| c.shadow_score).collect()
            } else {
                Vec::new()
            };
            select_slate_shadowed(
                &items,
                &self.config,
                rules,
                limit,
                explore_seed(ctx),
                ShadowSpec {
                    scores: &shadow,
                    share: self.shadow_share,
                    explore: self.shadow_explore,
                },
            )
        };
        // Each chosen candidate moves once, straight to its slot; the rest are dropped.
        let mut slot_of = vec![usize::MAX; candidates.len()];
        for (slot, &i) in slate.page.iter().enumerate() {
            if let Some(s) = slot_of.get_mut(i) {
                *s = slot;
            }
        }
        let mut page: Vec<Option<Candidate>> = (0..slate.page.len()).map(|_| None).collect();
        for (mut c, &slot) in candidates.into_iter().zip(&slot_of) {
            if let Some(p) = page.get_mut(slot) {
                c.propensity = slate.propensity.get(slot).copied().unwrap_or(1.0);
                c.draw = slate.draws.get(slot).copied().flatten();
                *p = Some(c);
            }
        }
        Ok(page.into_iter().flatten().collect())
    }

    fn name(&self) -> &'static str {
        "diversity"
    }
}

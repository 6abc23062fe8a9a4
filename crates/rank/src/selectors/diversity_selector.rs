//! [`DiversitySelector`]: the pipeline's selector stage (docs/design.md §3 step 6).

use steerfeed_core::{Candidate, FeedContext, Result, Selector, TopicId};

use super::{PageRules, SelectorConfig, SlateItem, select_slate};

/// Diversity re-rank (MMR or sliding-window DPP), author decay, topic cap, following
/// share from steering and the teen sensitive-content cap, as one greedy page fill
/// ([`select_slate`]). Scores and breakdowns are left as the scorer set them.
#[derive(Debug, Clone, Default)]
pub struct DiversitySelector {
    config: SelectorConfig,
}

impl DiversitySelector {
    /// A selector with `config`, once it passes [`SelectorConfig::validate`].
    pub fn new(config: SelectorConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self { config })
    }

    /// The configuration in force.
    pub fn config(&self) -> &SelectorConfig {
        &self.config
    }
}

impl Selector for DiversitySelector {
    fn select(
        &self,
        ctx: &FeedContext,
        candidates: Vec<Candidate>,
        limit: usize,
    ) -> Result<Vec<Candidate>> {
        let only: Vec<TopicId> = ctx
            .constraints
            .only
            .iter()
            .filter_map(|c| c.topic.clone())
            .collect();
        let boosted: Vec<TopicId> = ctx
            .constraints
            .boost
            .iter()
            .filter_map(|c| c.topic.clone())
            .collect();
        let rules = PageRules::for_context(ctx).with_topics(&only, &boosted);
        let following = rules.following.map(|_| &ctx.viewer.following);
        let order = {
            let items: Vec<SlateItem<'_>> = candidates
                .iter()
                .map(|c| SlateItem::from_candidate(c, following))
                .collect();
            select_slate(&items, &self.config, rules, limit)
        };
        // Each chosen candidate moves once, straight to its slot; the rest are dropped.
        let mut slot_of = vec![usize::MAX; candidates.len()];
        for (slot, &i) in order.iter().enumerate() {
            if let Some(s) = slot_of.get_mut(i) {
                *s = slot;
            }
        }
        let mut page: Vec<Option<Candidate>> = (0..order.len()).map(|_| None).collect();
        for (c, &slot) in candidates.into_iter().zip(&slot_of) {
            if let Some(p) = page.get_mut(slot) {
                *p = Some(c);
            }
        }
        Ok(page.into_iter().flatten().collect())
    }

    fn name(&self) -> &'static str {
        "diversity"
    }
}

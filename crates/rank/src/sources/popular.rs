use std::sync::Arc;

use steerfeed_core::ports::{EngagementStats, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source};

use super::hydrate;

/// Popular right now: the fallback that always has something to propose.
pub struct PopularSource {
    catalog: Arc<dyn VideoCatalog>,
    stats: Arc<dyn EngagementStats>,
    quota: usize,
}

impl PopularSource {
    /// A source proposing at most `quota` videos.
    pub fn new(
        catalog: Arc<dyn VideoCatalog>,
        stats: Arc<dyn EngagementStats>,
        quota: usize,
    ) -> Self {
        Self {
            catalog,
            stats,
            quota,
        }
    }
}

impl Source for PopularSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        let popular = self.stats.popular(ctx.now, self.quota)?;
        hydrate(self.catalog.as_ref(), popular, "popular", |_| {
            Reason::Popular
        })
    }

    fn name(&self) -> &'static str {
        "popular"
    }
}

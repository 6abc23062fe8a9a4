use std::sync::Arc;

use steerfeed_core::ports::{EngagementStats, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source};

use super::hydrate;

/// Videos with the highest recent remix and creation velocity.
pub struct RemixTrendsSource {
    catalog: Arc<dyn VideoCatalog>,
    stats: Arc<dyn EngagementStats>,
    quota: usize,
}

impl RemixTrendsSource {
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

impl Source for RemixTrendsSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        let trending = self.stats.remix_trending(ctx.now, self.quota)?;
        hydrate(self.catalog.as_ref(), trending, "remix_trends", |_| {
            Reason::RemixTrend
        })
    }

    fn name(&self) -> &'static str {
        "remix_trends"
    }
}

use std::sync::Arc;

use steerfeed_core::ports::{EngagementStats, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source};

use super::stats::StatsSource;

/// Videos with the highest recent remix and creation velocity.
pub struct RemixTrendsSource(StatsSource<dyn EngagementStats>);

impl RemixTrendsSource {
    /// A source proposing at most `quota` videos.
    pub fn new(
        catalog: Arc<dyn VideoCatalog>,
        stats: Arc<dyn EngagementStats>,
        quota: usize,
    ) -> Self {
        Self(StatsSource::new(
            catalog,
            stats,
            quota,
            "remix_trends",
            |s, now, k| s.remix_trending(now, k),
            Reason::RemixTrend,
        ))
    }
}

impl Source for RemixTrendsSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        self.0.fetch(ctx)
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }
}

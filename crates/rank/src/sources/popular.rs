use std::sync::Arc;

use steerfeed_core::ports::{EngagementStats, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source};

use super::stats::StatsSource;

/// Popular right now: the fallback that always has something to propose.
pub struct PopularSource(StatsSource<dyn EngagementStats>);

impl PopularSource {
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
            "popular",
            |s, now, k| s.popular(now, k),
            Reason::Popular,
        ))
    }
}

impl Source for PopularSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        self.0.fetch(ctx)
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }
}

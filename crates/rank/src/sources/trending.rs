use std::sync::Arc;

use steerfeed_core::ports::{Trending, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source};

use super::stats::StatsSource;

/// What is rising across the catalogue now: the videos whose engagement climbs fastest
/// against their own baseline (see [`crate::trending`]).
pub struct TrendingSource(StatsSource<dyn Trending>);

impl TrendingSource {
    /// A source proposing at most `quota` videos.
    pub fn new(catalog: Arc<dyn VideoCatalog>, trending: Arc<dyn Trending>, quota: usize) -> Self {
        Self(StatsSource::new(
            catalog,
            trending,
            quota,
            "trending",
            |t, now, k| t.trending(now, k),
            Reason::Trending,
        ))
    }
}

impl Source for TrendingSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        self.0.fetch(ctx)
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }
}

use std::sync::Arc;

use steerfeed_core::ports::{EngagementStats, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Timestamp, VideoId};

use super::hydrate;

type Pick = fn(&dyn EngagementStats, Timestamp, usize) -> Result<Vec<(VideoId, f32)>>;

/// A source that proposes the top of one ranked list of the engagement stats; `popular`
/// and `remix_trends` differ only in the list, the name and the reason.
pub(super) struct StatsSource {
    catalog: Arc<dyn VideoCatalog>,
    stats: Arc<dyn EngagementStats>,
    quota: usize,
    name: &'static str,
    pick: Pick,
    reason: Reason,
}

impl StatsSource {
    pub(super) fn new(
        catalog: Arc<dyn VideoCatalog>,
        stats: Arc<dyn EngagementStats>,
        quota: usize,
        name: &'static str,
        pick: Pick,
        reason: Reason,
    ) -> Self {
        Self {
            catalog,
            stats,
            quota,
            name,
            pick,
            reason,
        }
    }

    pub(super) fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        let ranked = (self.pick)(self.stats.as_ref(), ctx.now, self.quota)?;
        hydrate(self.catalog.as_ref(), ranked, self.name, |_| {
            self.reason.clone()
        })
    }

    pub(super) fn name(&self) -> &'static str {
        self.name
    }
}

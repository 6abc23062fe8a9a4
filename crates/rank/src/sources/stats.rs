use std::sync::Arc;

use steerfeed_core::ports::VideoCatalog;
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Timestamp, VideoId};

use super::hydrate;

type Pick<P> = fn(&P, Timestamp, usize) -> Result<Vec<(VideoId, f32)>>;

/// A source that proposes the top of one ranked list the port `P` keeps for the whole
/// catalogue; `popular`, `remix_trends` and `trending` differ only in the list, the name
/// and the reason.
pub(super) struct StatsSource<P: ?Sized> {
    catalog: Arc<dyn VideoCatalog>,
    stats: Arc<P>,
    quota: usize,
    name: &'static str,
    pick: Pick<P>,
    reason: Reason,
}

impl<P: ?Sized> StatsSource<P> {
    pub(super) fn new(
        catalog: Arc<dyn VideoCatalog>,
        stats: Arc<P>,
        quota: usize,
        name: &'static str,
        pick: Pick<P>,
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
        let ranked = (self.pick)(&self.stats, ctx.now, self.quota)?;
        hydrate(self.catalog.as_ref(), ranked, self.name, |_| {
            self.reason.clone()
        })
    }

    pub(super) fn name(&self) -> &'static str {
        self.name
    }
}

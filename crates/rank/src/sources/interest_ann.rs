use std::sync::Arc;

use steerfeed_core::ports::{VectorSearch, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source};

use super::{Nearest, hydrate};

/// Nearest neighbours of the viewer's interest vector.
pub struct InterestAnnSource {
    catalog: Arc<dyn VideoCatalog>,
    search: Arc<dyn VectorSearch>,
    quota: usize,
}

impl InterestAnnSource {
    /// A source proposing at most `quota` videos.
    pub fn new(
        catalog: Arc<dyn VideoCatalog>,
        search: Arc<dyn VectorSearch>,
        quota: usize,
    ) -> Self {
        Self {
            catalog,
            search,
            quota,
        }
    }
}

impl Source for InterestAnnSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        let Some(interest) = ctx
            .interest
            .as_ref()
            .filter(|_| ctx.parental.personalization)
        else {
            return Ok(Vec::new());
        };
        let hits = if ctx.interests.len() < 2 {
            Nearest::of(self.search.as_ref(), ctx, interest.as_slice(), self.quota)?.into_hits()
        } else {
            // Each direction gets an equal share of the quota; a video near two of them
            // keeps its best similarity.
            let share = self.quota.div_ceil(ctx.interests.len());
            let searches = ctx
                .interests
                .iter()
                .map(|d| Nearest::of(self.search.as_ref(), ctx, d.as_slice(), share))
                .collect::<Result<Vec<_>>>()?;
            Nearest::merge(searches, self.quota)
        };
        hydrate(
            self.catalog.as_ref(),
            hits.into_iter().map(|n| (n.video, n.similarity)),
            "interest_ann",
            |v| Reason::Interest {
                topic: v.topics.first().cloned(),
            },
        )
    }

    fn name(&self) -> &'static str {
        "interest_ann"
    }
}

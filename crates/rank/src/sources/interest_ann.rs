use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;
use steerfeed_core::ports::{Neighbor, VectorSearch, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source, VideoId};

use super::{hydrate, nearest};

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
            nearest(self.search.as_ref(), ctx, interest.as_slice(), self.quota)?
        } else {
            // Each direction gets an equal share of the quota; a video near two of them
            // keeps its best similarity.
            let share = self.quota.div_ceil(ctx.interests.len());
            let mut best: HashMap<VideoId, f32, FxBuildHasher> = HashMap::default();
            for direction in &ctx.interests {
                for hit in nearest(self.search.as_ref(), ctx, direction.as_slice(), share)? {
                    let s = best.entry(hit.video).or_insert(f32::NEG_INFINITY);
                    *s = s.max(hit.similarity);
                }
            }
            let mut merged: Vec<Neighbor> = best
                .into_iter()
                .map(|(video, similarity)| Neighbor { video, similarity })
                .collect();
            merged.sort_by(|a, b| {
                b.similarity
                    .total_cmp(&a.similarity)
                    .then_with(|| a.video.cmp(&b.video))
            });
            merged.truncate(self.quota);
            merged
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

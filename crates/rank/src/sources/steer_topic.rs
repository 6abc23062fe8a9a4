use std::collections::HashSet;
use std::sync::Arc;

use steerfeed_core::ports::VideoCatalog;
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source};

use super::{from_videos, recency};

/// Recent videos carrying each topic the viewer asked for more of ("more cooking"
/// proposes recent cooking videos). It complements [`super::SteerAnnSource`]: it does
/// not depend on the catalog's embeddings living in the language model's space, so
/// steering by topic works when the app supplies its own embeddings.
pub struct SteerTopicSource {
    catalog: Arc<dyn VideoCatalog>,
    quota_per_concept: usize,
    /// Oldest video proposed, in days. Default 14.
    pub max_age_days: i64,
}

impl SteerTopicSource {
    /// A source proposing at most `quota_per_concept` videos per boosted topic.
    pub fn new(catalog: Arc<dyn VideoCatalog>, quota_per_concept: usize) -> Self {
        Self {
            catalog,
            quota_per_concept,
            max_age_days: 14,
        }
    }
}

impl Source for SteerTopicSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        if !ctx.parental.personalization || self.quota_per_concept == 0 {
            return Ok(Vec::new());
        }
        let since = ctx
            .now
            .checked_sub(jiff::SignedDuration::from_hours(24 * self.max_age_days))
            .unwrap_or(jiff::Timestamp::MIN);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for c in ctx.concepts.iter().filter(|c| c.weight > 0.0) {
            let Some(topic) = &c.topic else { continue };
            let k = ((self.quota_per_concept as f32) * c.weight.min(2.0)).ceil() as usize;
            let videos = self
                .catalog
                .recent_by_topic(topic, since, k)?
                .into_iter()
                .filter(|v| seen.insert(v.id.clone()))
                .map(|v| {
                    let s = recency(ctx.now, v.created_at, 72.0);
                    (v, s)
                });
            out.extend(from_videos(videos, "steer_topic", |_| Reason::Steering {
                concept: c.label.clone(),
            }));
        }
        Ok(out)
    }

    fn name(&self) -> &'static str {
        "steer_topic"
    }
}

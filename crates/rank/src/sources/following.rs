use std::sync::Arc;

use steerfeed_core::ports::{SocialGraph, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source};

use super::{from_videos, recency};

/// Recent videos of the people the viewer follows, newest first, mutuals' slightly ahead.
pub struct FollowingSource {
    catalog: Arc<dyn VideoCatalog>,
    graph: Arc<dyn SocialGraph>,
    quota: usize,
    /// Oldest video proposed, in days. Default 14.
    pub max_age_days: i64,
}

impl FollowingSource {
    /// A source proposing at most `quota` videos.
    pub fn new(catalog: Arc<dyn VideoCatalog>, graph: Arc<dyn SocialGraph>, quota: usize) -> Self {
        Self {
            catalog,
            graph,
            quota,
            max_age_days: 14,
        }
    }
}

impl Source for FollowingSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        let user = ctx.request.user();
        let followed = self.graph.following(user)?;
        if followed.is_empty() || self.quota == 0 {
            return Ok(Vec::new());
        }
        let since = ctx
            .now
            .checked_sub(jiff::SignedDuration::from_hours(24 * self.max_age_days))
            .unwrap_or(jiff::Timestamp::MIN);
        // Enough per creator that one prolific creator cannot fill the quota alone.
        let per_creator = (self.quota / followed.len()).max(3).min(self.quota);
        let mut videos = Vec::new();
        for creator in &followed {
            let mutual = self.graph.follows(creator, user)?;
            for v in self
                .catalog
                .recent_by_creator(creator, since, per_creator)?
                .into_iter()
                .filter(|v| !v.deleted)
            {
                let score = recency(ctx.now, v.created_at, 48.0) * if mutual { 1.2 } else { 1.0 };
                videos.push((v, score));
            }
        }
        videos.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
        videos.truncate(self.quota);
        Ok(from_videos(videos, "following", |v| Reason::Following {
            creator: v.creator.clone(),
        }))
    }

    fn name(&self) -> &'static str {
        "following"
    }
}

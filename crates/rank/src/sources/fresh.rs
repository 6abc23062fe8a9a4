use std::sync::Arc;

use steerfeed_core::ports::VideoCatalog;
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source};

use super::{from_videos, recency};

/// New videos, with new creators (few posts so far) first: the cold-start lift.
pub struct FreshSource {
    catalog: Arc<dyn VideoCatalog>,
    quota: usize,
    /// How far back "new" reaches, in hours. Default 48.
    pub window_h: i64,
    /// A creator with at most this many videos counts as new. Default 5.
    pub new_creator_max_videos: usize,
}

impl FreshSource {
    /// A source proposing at most `quota` videos.
    pub fn new(catalog: Arc<dyn VideoCatalog>, quota: usize) -> Self {
        Self {
            catalog,
            quota,
            window_h: 48,
            new_creator_max_videos: 5,
        }
    }
}

impl Source for FreshSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        if self.quota == 0 {
            return Ok(Vec::new());
        }
        let since = ctx
            .now
            .checked_sub(jiff::SignedDuration::from_hours(self.window_h))
            .unwrap_or(jiff::Timestamp::MIN);
        let mut scored = Vec::new();
        // One count per creator, however many of the newest videos are theirs.
        let mut is_new: std::collections::HashMap<steerfeed_core::UserId, bool> =
            std::collections::HashMap::new();
        for v in self
            .catalog
            .newest(since, self.quota * 2)?
            .into_iter()
            .filter(|v| !v.deleted)
        {
            let new_creator = match is_new.get(&v.creator) {
                Some(&n) => n,
                None => {
                    let cap = self.new_creator_max_videos + 1;
                    let n = self.catalog.creator_video_count(&v.creator, cap)?
                        <= self.new_creator_max_videos;
                    is_new.insert(v.creator.clone(), n);
                    n
                }
            };
            let score = recency(ctx.now, v.created_at, 24.0) + if new_creator { 1.0 } else { 0.0 };
            scored.push((v, score));
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
        scored.truncate(self.quota);
        Ok(from_videos(scored, "fresh", |_| Reason::Fresh))
    }

    fn name(&self) -> &'static str {
        "fresh"
    }
}

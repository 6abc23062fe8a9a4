use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rustc_hash::FxBuildHasher;
use steerfeed_core::ports::{CoEngagement, UserHistory, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source, VideoId};

use super::{hydrate, recency};
use crate::coengagement::engagement_weight;

/// Videos co-engaged with the viewer's recent history: each recent engagement votes for
/// its co-engaged videos with (co-engagement weight) × (how strong the engagement was)
/// × (how recent it was).
pub struct CoEngagementSource {
    catalog: Arc<dyn VideoCatalog>,
    history: Arc<dyn UserHistory>,
    co: Arc<dyn CoEngagement>,
    quota: usize,
    /// Recent engagements used as seeds. Default 30.
    pub seeds: usize,
    /// Half-life of a seed's vote, in hours. Default 72.
    pub half_life_h: f64,
}

impl CoEngagementSource {
    /// A source proposing at most `quota` videos.
    pub fn new(
        catalog: Arc<dyn VideoCatalog>,
        history: Arc<dyn UserHistory>,
        co: Arc<dyn CoEngagement>,
        quota: usize,
    ) -> Self {
        Self {
            catalog,
            history,
            co,
            quota,
            seeds: 30,
            half_life_h: 72.0,
        }
    }
}

impl Source for CoEngagementSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        if !ctx.parental.personalization || self.quota == 0 {
            return Ok(Vec::new());
        }
        let history = self
            .history
            .recent_engagements(ctx.request.user(), self.seeds)?;
        let engaged: HashSet<&VideoId, FxBuildHasher> = history.iter().map(|e| &e.video).collect();
        // Votes add up in history order whatever the hasher; the ranking below is total.
        let mut votes: HashMap<VideoId, f32, FxBuildHasher> = HashMap::default();
        for e in &history {
            let w = engagement_weight(&e.kind) * recency(ctx.now, e.at, self.half_life_h);
            if w <= 0.0 {
                continue;
            }
            for (video, co) in self.co.co_engaged(&e.video, ctx.now, self.quota)? {
                if !engaged.contains(&video) {
                    *votes.entry(video).or_default() += w * co;
                }
            }
        }
        let mut ranked: Vec<(VideoId, f32)> = votes.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(self.quota);
        hydrate(self.catalog.as_ref(), ranked, "co_engagement", |_| {
            Reason::CoEngagement
        })
    }

    fn name(&self) -> &'static str {
        "co_engagement"
    }
}

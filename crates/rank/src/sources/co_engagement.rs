use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rustc_hash::FxBuildHasher;
use steerfeed_core::ports::{CoEngagement, UserHistory, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source, VideoId};

use super::recency;
use crate::coengagement::{CoEngagementParams, engagement_weight};

/// Co-engagement (`[rank.co_engagement]`): how the viewer's recent engagements vote in
/// [`CoEngagementSource`], and the item-to-item index they vote through.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoEngagementConfig {
    /// Recent engagements used as seeds, newest first. Default 30.
    pub seeds: usize,
    /// Half-life of a seed's vote, in hours. Default 72.
    pub half_life_h: f64,
    /// The k-th newest seed (from 0) votes with `position_decay^k` on top of its age:
    /// what someone engaged with last says most about what they want next, however
    /// the engagements are spaced in time. 1 turns it off. Default 0.5.
    pub position_decay: f64,
    /// The item-to-item index (`[rank.co_engagement.index]`).
    pub index: CoEngagementParams,
}

impl Default for CoEngagementConfig {
    fn default() -> Self {
        Self {
            seeds: 30,
            half_life_h: 72.0,
            position_decay: 0.5,
            index: CoEngagementParams::default(),
        }
    }
}

impl CoEngagementConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        self.index.validate()?;
        let bad = |field: &'static str, reason: String| {
            Err(steerfeed_core::Error::invalid(field, reason))
        };
        if !(1..=1_000).contains(&self.seeds) {
            return bad(
                "rank.co_engagement.seeds",
                format!("{} is not in 1..=1000", self.seeds),
            );
        }
        if !(self.half_life_h.is_finite() && self.half_life_h > 0.0) {
            return bad(
                "rank.co_engagement.half_life_h",
                format!("{} is not a positive number of hours", self.half_life_h),
            );
        }
        if !(self.position_decay > 0.0 && self.position_decay <= 1.0) {
            return bad(
                "rank.co_engagement.position_decay",
                format!("{} is not in (0, 1]", self.position_decay),
            );
        }
        Ok(())
    }
}

/// A candidate's votes, and the seed (an index into the viewer's recent history) that
/// gave the most of them.
#[derive(Debug, Default, Clone, Copy)]
struct Vote {
    total: f32,
    best: f32,
    seed: Option<usize>,
}

impl Vote {
    fn add(&mut self, w: f32, seed: usize) {
        self.total += w;
        if w > self.best {
            self.best = w;
            self.seed = Some(seed);
        }
    }
}

/// Videos co-engaged with the viewer's recent history: each recent engagement votes for
/// its co-engaged videos with (co-engagement weight) × (how strong the engagement was)
/// × (how recent it was, in time and in position). A candidate's score is its votes
/// over the strongest candidate's, in (0, 1]; its explanation names the engagement that
/// gave it the most ("Because you watched …").
pub struct CoEngagementSource {
    catalog: Arc<dyn VideoCatalog>,
    history: Arc<dyn UserHistory>,
    co: Arc<dyn CoEngagement>,
    quota: usize,
    seeds: CoEngagementConfig,
}

impl CoEngagementSource {
    /// A source proposing at most `quota` videos, its seeds voting as `seeds` says.
    pub fn new(
        catalog: Arc<dyn VideoCatalog>,
        history: Arc<dyn UserHistory>,
        co: Arc<dyn CoEngagement>,
        quota: usize,
        seeds: CoEngagementConfig,
    ) -> Self {
        Self {
            catalog,
            history,
            co,
            quota,
            seeds,
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
            .recent_engagements(ctx.request.user(), self.seeds.seeds)?;
        let engaged: HashSet<&VideoId, FxBuildHasher> = history.iter().map(|e| &e.video).collect();
        // Votes add up in history order whatever the hasher; the ranking below is total.
        // Beside its votes, each candidate keeps the seed that gave it the most (the
        // first such seed on a tie: the newest), which its explanation names.
        let mut votes: HashMap<VideoId, Vote, FxBuildHasher> = HashMap::default();
        let mut position = 1.0f64;
        for (seed, e) in history.iter().enumerate() {
            let w = engagement_weight(&e.kind)
                * recency(ctx.now, e.at, self.seeds.half_life_h)
                * position as f32;
            position *= self.seeds.position_decay;
            if w <= 0.0 {
                continue;
            }
            for (video, co) in self.co.co_engaged(&e.video, ctx.now, self.quota)? {
                if !engaged.contains(&video) {
                    votes.entry(video).or_default().add(w * co, seed);
                }
            }
        }
        let mut ranked: Vec<(VideoId, Vote)> = votes.into_iter().collect();
        ranked.sort_by(|a, b| b.1.total.total_cmp(&a.1.total).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(self.quota);
        let top = ranked.first().map_or(0.0, |r| r.1.total);
        let mut out = Vec::with_capacity(ranked.len());
        for (id, vote) in ranked {
            let Some(video) = self.catalog.video(&id)?.filter(|v| !v.deleted) else {
                continue;
            };
            let score = if top > 0.0 {
                vote.total / top
            } else {
                vote.total
            };
            // The engine quotes the seed's caption when it serves the item.
            let reason = Reason::CoEngagement {
                because: vote.seed.map(|k| history[k].video.clone()),
                caption: None,
            };
            out.push(Candidate::new(video, "co_engagement", score, reason));
        }
        Ok(out)
    }

    fn name(&self) -> &'static str {
        "co_engagement"
    }
}

//! Candidate sources (docs/design.md §3 step 3), each a [`steerfeed_core::Source`] with a quota.
//!
//! | source | proposes | needs |
//! | --- | --- | --- |
//! | [`FollowingSource`] | recent videos of people you follow | catalog, graph |
//! | [`InterestAnnSource`] | ANN on your interest vector | vector search, catalog |
//! | [`SteerAnnSource`] | one ANN query per positive steering concept | vector search, catalog |
//! | [`SteerTopicSource`] | recent videos of each boosted topic | catalog |
//! | [`CoEngagementSource`] | what people who engaged with your recent videos engaged with | history, co-engagement, catalog |
//! | [`RemixTrendsSource`] | high recent remix and creation velocity | stats, catalog |
//! | [`TrendingSource`] | engagement climbing fastest now against its own baseline | trending, catalog |
//! | [`SocialCameoSource`] | videos featuring people you follow, or you | graph, catalog |
//! | [`FreshSource`] | new videos, new creators first (cold start) | catalog |
//! | [`PopularSource`] | popular right now (fallback) | stats, catalog |
//!
//! Sources that personalise (interest, steering, co-engagement) propose nothing when
//! parental controls turn personalization off; the others (following, social cameos,
//! remix trends, trending, fresh, popular) know nothing of the viewer but their follows
//! and always run.

mod co_engagement;
mod following;
mod fresh;
mod interest_ann;
mod popular;
mod remix_trends;
mod social_cameo;
mod stats;
mod steer_ann;
mod steer_topic;
mod trending;

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

pub use co_engagement::{CoEngagementConfig, CoEngagementSource};
pub use following::FollowingSource;
pub use fresh::FreshSource;
pub use interest_ann::InterestAnnSource;
pub use popular::PopularSource;
pub use remix_trends::RemixTrendsSource;
pub use social_cameo::SocialCameoSource;
pub use steer_ann::SteerAnnSource;
pub use steer_topic::SteerTopicSource;
use steerfeed_core::ports::{Neighbor, VectorSearch, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Video, VideoId};
pub use trending::TrendingSource;

/// How many candidates each source may propose per request, one default each.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceQuotas {
    /// `following`. Default 200.
    pub following: usize,
    /// `interest_ann`. Default 200.
    pub interest_ann: usize,
    /// `steer_ann`, per positive concept. Default 60.
    pub steer_ann: usize,
    /// `steer_topic`, per boosted topic. Default 60.
    pub steer_topic: usize,
    /// `co_engagement`. Default 150.
    pub co_engagement: usize,
    /// `remix_trends`. Default 60.
    pub remix_trends: usize,
    /// `trending`. Default 60.
    pub trending: usize,
    /// `social_cameo`. Default 60.
    pub social_cameo: usize,
    /// `fresh`. Default 60.
    pub fresh: usize,
    /// `popular`. Default 100.
    pub popular: usize,
}

impl Default for SourceQuotas {
    fn default() -> Self {
        Self {
            following: 200,
            interest_ann: 200,
            steer_ann: 60,
            steer_topic: 60,
            co_engagement: 150,
            remix_trends: 60,
            trending: 60,
            social_cameo: 60,
            fresh: 60,
            popular: 100,
        }
    }
}

/// Looks up scored ids in the catalog and makes candidates of those that exist and are
/// not deleted, keeping the given order.
pub(crate) fn hydrate(
    catalog: &dyn VideoCatalog,
    scored: impl IntoIterator<Item = (VideoId, f32)>,
    source: &'static str,
    reason: impl Fn(&Video) -> Reason,
) -> Result<Vec<Candidate>> {
    let scored = scored.into_iter();
    let mut out = Vec::with_capacity(scored.size_hint().0);
    for (id, score) in scored {
        if let Some(video) = catalog.video(&id)?
            && !video.deleted
        {
            let r = reason(&video);
            out.push(Candidate::new(video, source, score, r));
        }
    }
    Ok(out)
}

/// The nearest neighbours of `query` a vector source proposes, in two groups of up to
/// `k` each: the `k` nearest of the whole catalogue (`any`) and, when the viewer's
/// `only` steering names topics, the `k` nearest of those topics (`on_topic`; an index
/// walks each topic's own partition). An unfiltered search alone returns mostly videos
/// the steering filter then removes, and for a narrow topic often none; the unfiltered
/// one stays because the filter also keeps a video close enough to an `only` concept
/// without carrying its topic. A caller that merges several searches cuts each group to
/// its own quota ([`Nearest::merge`]), so neither crowds the other out.
pub(crate) struct Nearest {
    pub(crate) any: Vec<Neighbor>,
    pub(crate) on_topic: Vec<Neighbor>,
}

impl Nearest {
    /// Searches `query` (see the type's docs).
    pub(crate) fn of(
        search: &dyn VectorSearch,
        ctx: &FeedContext,
        query: &[f32],
        k: usize,
    ) -> Result<Self> {
        let topics = ctx.constraints.only_topics();
        let on_topic = if topics.is_empty() {
            Vec::new()
        } else {
            search.search_topics(query, k, &topics, None)?
        };
        Ok(Self {
            any: search.search(query, k, None)?,
            on_topic,
        })
    }

    /// Both groups as one list, each video once with its best similarity, best first.
    pub(crate) fn into_hits(self) -> Vec<Neighbor> {
        if self.on_topic.is_empty() {
            // One search's hits: already distinct and best first.
            return self.any;
        }
        Self::merge([self], usize::MAX)
    }

    /// Several searches' groups merged: per group each video once with its best
    /// similarity, the best `quota` kept, then the two groups as one list, each video
    /// once, best first.
    pub(crate) fn merge(searches: impl IntoIterator<Item = Self>, quota: usize) -> Vec<Neighbor> {
        let mut any: Scores = HashMap::default();
        let mut on_topic: Scores = HashMap::default();
        for s in searches {
            for (group, hits) in [(&mut any, s.any), (&mut on_topic, s.on_topic)] {
                for hit in hits {
                    let best = group.entry(hit.video).or_insert(f32::NEG_INFINITY);
                    *best = best.max(hit.similarity);
                }
            }
        }
        if on_topic.is_empty() {
            let mut hits = best_first(any);
            hits.truncate(quota);
            return hits;
        }
        let mut all: Scores = HashMap::default();
        for group in [any, on_topic] {
            for hit in best_first(group).into_iter().take(quota) {
                let best = all.entry(hit.video).or_insert(f32::NEG_INFINITY);
                *best = best.max(hit.similarity);
            }
        }
        best_first(all)
    }
}

/// Each video's best similarity.
type Scores = HashMap<VideoId, f32, FxBuildHasher>;

/// Videos by decreasing similarity, ties by id.
fn best_first(scores: Scores) -> Vec<Neighbor> {
    let mut hits: Vec<Neighbor> = scores
        .into_iter()
        .map(|(video, similarity)| Neighbor { video, similarity })
        .collect();
    hits.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| a.video.cmp(&b.video))
    });
    hits
}

/// Makes candidates of videos already loaded, skipping deleted ones.
pub(crate) fn from_videos(
    videos: impl IntoIterator<Item = (Arc<Video>, f32)>,
    source: &'static str,
    reason: impl Fn(&Video) -> Reason,
) -> Vec<Candidate> {
    videos
        .into_iter()
        .filter(|(v, _)| !v.deleted)
        .map(|(v, s)| {
            let r = reason(&v);
            Candidate::new(v, source, s, r)
        })
        .collect()
}

/// Recency in `[0, 1]`: 1 now, 0.5 after `half_life_h` hours.
pub(crate) fn recency(
    now: steerfeed_core::Timestamp,
    at: steerfeed_core::Timestamp,
    half_life_h: f64,
) -> f32 {
    let age_h = (now.as_millisecond() - at.as_millisecond()).max(0) as f64 / 3_600_000.0;
    0.5f64.powf(age_h / half_life_h) as f32
}

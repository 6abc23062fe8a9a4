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

use std::collections::HashSet;
use std::sync::Arc;

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
use steerfeed_core::{Candidate, FeedContext, Reason, Result, TopicId, Video, VideoId};
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

/// The nearest neighbours of `query` a vector source proposes: the `k` nearest. When the
/// viewer's `only` steering names topics, the `k` nearest videos of those topics come
/// in (an index walks each topic's own partition): an unfiltered search alone returns
/// mostly videos the steering filter then removes, and for a narrow topic often none.
/// The unfiltered `k` nearest stay, each video once (the filter also keeps a video close
/// enough to an `only` concept without carrying its topic), so up to `2k` in all, best
/// first.
pub(crate) fn nearest(
    search: &dyn VectorSearch,
    ctx: &FeedContext,
    query: &[f32],
    k: usize,
) -> Result<Vec<Neighbor>> {
    let only = &ctx.constraints.only;
    let topics: Vec<TopicId> = only.iter().filter_map(|c| c.topic.clone()).collect();
    if topics.is_empty() {
        return search.search(query, k, None);
    }
    let mut hits = search.search_topics(query, k, &topics, None)?;
    let on_topic: HashSet<VideoId> = hits.iter().map(|h| h.video.clone()).collect();
    hits.extend(
        search
            .search(query, k, None)?
            .into_iter()
            .filter(|h| !on_topic.contains(&h.video)),
    );
    hits.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| a.video.cmp(&b.video))
    });
    Ok(hits)
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

//! Ports: the traits through which ranking stages read the catalog, the social graph and
//! the vector index. `steerfeed-store` and `steerfeed-ann` implement them, the engine
//! wires them, and tests use in-memory implementations, so ranking logic never depends
//! on sled or on how the vector index is built.

use std::sync::Arc;

use jiff::Timestamp;

use crate::error::Result;
use crate::event::EventKind;
use crate::ids::{TopicId, UserId, VideoId};
use crate::user::{AgeBand, ConsentScope};
use crate::video::Video;

/// Reads videos.
pub trait VideoCatalog: Send + Sync {
    /// The video with this id, deleted or not; `None` when unknown.
    fn video(&self, id: &VideoId) -> Result<Option<Arc<Video>>>;

    /// A creator's videos posted at or after `since`, newest first, at most `limit`.
    fn recent_by_creator(
        &self,
        creator: &UserId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>>;

    /// Videos posted at or after `since`, newest first, at most `limit`.
    fn newest(&self, since: Timestamp, limit: usize) -> Result<Vec<Arc<Video>>>;

    /// Videos in which `person` appears in a cameo, newest first, at most `limit`.
    fn featuring(&self, person: &UserId, limit: usize) -> Result<Vec<Arc<Video>>>;

    /// Videos carrying `topic`, posted at or after `since`, newest first, at most
    /// `limit` (steering by topic without relying on the embedding space).
    fn recent_by_topic(
        &self,
        topic: &TopicId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>>;

    /// How many videos `creator` has posted, counting no further than `up_to` (callers
    /// ask "is this a new creator?", which must not cost a scan of a prolific one).
    fn creator_video_count(&self, creator: &UserId, up_to: usize) -> Result<usize>;
}

/// Engagement counters kept up to date from events, decayed over time.
pub trait EngagementStats: Send + Sync {
    /// Videos with the highest recent engagement, with their decayed score, best first.
    fn popular(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>>;

    /// Videos with the highest recent remix and creation velocity, best first.
    fn remix_trending(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>>;
}

/// What is rising across the catalogue now.
pub trait Trending: Send + Sync {
    /// Videos whose engagement climbs fastest now, with their trend score, best first.
    fn trending(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>>;
}

/// One thing a user did with a video, for history-based sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Engagement {
    /// The video.
    pub video: VideoId,
    /// What the user did.
    pub kind: EventKind,
    /// When.
    pub at: Timestamp,
}

/// A user's recent engagements.
pub trait UserHistory: Send + Sync {
    /// The user's most recent engagements (views, likes, remixes, ...), newest first.
    fn recent_engagements(&self, user: &UserId, limit: usize) -> Result<Vec<Engagement>>;
}

/// Item-to-item co-engagement: videos engaged with by the same people.
pub trait CoEngagement: Send + Sync {
    /// The videos most co-engaged with `video`, with their weights, best first.
    fn co_engaged(
        &self,
        video: &VideoId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(VideoId, f32)>>;
}

/// A neighbour returned by a vector search.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbor {
    /// The video.
    pub video: VideoId,
    /// Inner product with the query (cosine similarity of unit vectors).
    pub similarity: f32,
}

/// Nearest-neighbour search over video embeddings.
pub trait VectorSearch: Send + Sync {
    /// Up to `k` videos most similar to `query` among those `allow` lets through (all
    /// when `None`: an index then takes its fastest, unfiltered path), most similar
    /// first. Deleted videos are never returned.
    fn search(
        &self,
        query: &[f32],
        k: usize,
        allow: Option<&(dyn Fn(&VideoId) -> bool + Sync)>,
    ) -> Result<Vec<Neighbor>>;
    /// [`VectorSearch::search`] among the videos carrying any of `topics` (an `only`
    /// topic): an index searches each topic's own partition rather than filtering the
    /// whole catalogue, so a topic of a few percent costs about an unfiltered search.
    fn search_topics(
        &self,
        query: &[f32],
        k: usize,
        topics: &[TopicId],
        allow: Option<&(dyn Fn(&VideoId) -> bool + Sync)>,
    ) -> Result<Vec<Neighbor>>;
}

/// Reads the follow graph.
pub trait SocialGraph: Send + Sync {
    /// Whom `user` follows.
    fn following(&self, user: &UserId) -> Result<Vec<UserId>>;
    /// True when `a` follows `b`.
    fn follows(&self, a: &UserId, b: &UserId) -> Result<bool>;
    /// True when `a` and `b` follow each other.
    fn is_mutual(&self, a: &UserId, b: &UserId) -> Result<bool> {
        Ok(self.follows(a, b)? && self.follows(b, a)?)
    }
}

/// Time-decayed action counters of one video, or summed over a creator's videos.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionCounts {
    /// Times shown.
    pub impressions: f32,
    /// Views (any watch time).
    pub views: f32,
    /// Views watched to the end.
    pub complete_views: f32,
    /// Likes.
    pub likes: f32,
    /// Comments.
    pub comments: f32,
    /// Shares.
    pub shares: f32,
    /// Follows of the creator from the video.
    pub follows: f32,
    /// Remixes made of it.
    pub remixes: f32,
    /// Cameos used from it.
    pub cameo_uses: f32,
    /// New videos it inspired.
    pub creates: f32,
    /// Quick skips, "not interested", hides and reports.
    pub negatives: f32,
}

impl ActionCounts {
    /// Adds `weight` times one event of `kind` (a no-op for kinds that are not about a
    /// video's reception, such as check-in answers).
    pub fn add(&mut self, kind: &EventKind, weight: f32) {
        let slot = match kind {
            EventKind::Impression { .. } => &mut self.impressions,
            EventKind::View { completed, .. } => {
                if *completed {
                    self.complete_views += weight;
                }
                &mut self.views
            }
            EventKind::Like { .. } => &mut self.likes,
            EventKind::Comment { .. } => &mut self.comments,
            EventKind::Share { .. } => &mut self.shares,
            EventKind::Follow { .. } => &mut self.follows,
            EventKind::Remix { .. } => &mut self.remixes,
            EventKind::CameoUse { .. } => &mut self.cameo_uses,
            EventKind::Create { .. } => &mut self.creates,
            EventKind::Skip { .. }
            | EventKind::NotInterested { .. }
            | EventKind::HideCreator { .. }
            | EventKind::Report { .. } => &mut self.negatives,
            EventKind::CheckinAnswer { .. } => return,
        };
        *slot += weight;
    }

    /// Adds another set of counters.
    pub fn merge(&mut self, o: &ActionCounts) {
        self.impressions += o.impressions;
        self.views += o.views;
        self.complete_views += o.complete_views;
        self.likes += o.likes;
        self.comments += o.comments;
        self.shares += o.shares;
        self.follows += o.follows;
        self.remixes += o.remixes;
        self.cameo_uses += o.cameo_uses;
        self.creates += o.creates;
        self.negatives += o.negatives;
    }

    /// Multiplies every counter by `factor` (time decay).
    pub fn scale(&mut self, factor: f32) {
        for x in [
            &mut self.impressions,
            &mut self.views,
            &mut self.complete_views,
            &mut self.likes,
            &mut self.comments,
            &mut self.shares,
            &mut self.follows,
            &mut self.remixes,
            &mut self.cameo_uses,
            &mut self.creates,
            &mut self.negatives,
        ] {
            *x *= factor;
        }
    }

    /// How many times the video reached someone: impressions, or views when the app
    /// logs no impressions.
    pub fn exposures(&self) -> f32 {
        self.impressions.max(self.views)
    }
}

/// Per-video and per-creator action counters, for the scorer's action heads.
pub trait ActionStats: Send + Sync {
    /// The counters of each video, in the order asked (zeros for unknown videos).
    fn video_counts(&self, videos: &[&VideoId], now: Timestamp) -> Result<Vec<ActionCounts>>;

    /// The counters summed over a creator's videos (zeros for unknown creators).
    fn creator_counts(&self, creator: &UserId, now: Timestamp) -> Result<ActionCounts>;
}

/// What one person's consent says about appearing in one video (docs/design.md §2). The
/// ranking policy turns these facts into a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameoConsent {
    /// Who the person lets use their likeness, as they set it.
    pub scope: ConsentScope,
    /// The person's age band (teens: at most mutuals).
    pub age_band: AgeBand,
    /// A stricter scope set by the person's parental controls.
    pub parental_scope: Option<ConsentScope>,
    /// The video's creator is on the person's approved list.
    pub creator_approved: bool,
    /// The person and the creator follow each other.
    pub mutual: bool,
    /// The person revoked consent for this video or for every video of this creator.
    pub revoked: bool,
}

/// Reads cameo consent.
pub trait ConsentLedger: Send + Sync {
    /// The facts about `person` appearing in `video` by `creator`; `None` when the
    /// person is unknown (an unknown person never consented).
    fn cameo_consent(
        &self,
        person: &UserId,
        creator: &UserId,
        video: &VideoId,
    ) -> Result<Option<CameoConsent>>;
}

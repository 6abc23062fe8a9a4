//! Ports: the traits through which ranking stages read the catalog, the social graph and
//! the vector index. `steerfeed-store` and `steerfeed-ann` implement them, the engine
//! wires them, and tests use in-memory implementations, so ranking logic never depends
//! on sled or hnsw_rs.

use std::sync::Arc;

use jiff::Timestamp;

use crate::error::Result;
use crate::event::EventKind;
use crate::ids::{UserId, VideoId};
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

    /// How many videos `creator` has posted.
    fn creator_video_count(&self, creator: &UserId) -> Result<usize>;
}

/// Engagement counters kept up to date from events, decayed over time.
pub trait EngagementStats: Send + Sync {
    /// Videos with the highest recent engagement, with their decayed score, best first.
    fn popular(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>>;

    /// Videos with the highest recent remix and creation velocity, best first.
    fn remix_trending(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>>;
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

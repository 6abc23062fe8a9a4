//! Ports: the traits through which ranking stages read the catalog, the social graph and
//! the vector index. `steerfeed-store` and `steerfeed-ann` implement them, the engine
//! wires them, and tests use in-memory implementations, so ranking logic never depends
//! on sled or hnsw_rs.

use std::sync::Arc;

use crate::error::Result;
use crate::ids::{UserId, VideoId};
use crate::video::Video;

/// Reads videos.
pub trait VideoCatalog: Send + Sync {
    /// The video with this id, deleted or not; `None` when unknown.
    fn video(&self, id: &VideoId) -> Result<Option<Arc<Video>>>;
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
    /// Up to `k` videos most similar to `query` among those for which `allow` is true,
    /// most similar first. Deleted videos are never returned.
    fn search(
        &self,
        query: &[f32],
        k: usize,
        allow: &dyn Fn(&VideoId) -> bool,
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

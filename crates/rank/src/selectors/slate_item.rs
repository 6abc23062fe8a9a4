//! [`SlateItem`]: what the page policy reads of one candidate.

use steerfeed_core::{Candidate, IdSet, TopicId, UserId, VideoId};

/// A borrowed view of one candidate: everything [`select_slate`](super::select_slate)
/// needs and nothing else, so the policy is a pure function that tests can feed directly.
#[derive(Debug, Clone, Copy)]
pub struct SlateItem<'a> {
    /// The video's id (a second item with the same id is never picked).
    pub id: &'a VideoId,
    /// The scorer's score (finite; the page policy never writes it back).
    pub score: f32,
    /// The creator, for author decay.
    pub creator: &'a UserId,
    /// The video's topics, for the topic cap (each distinct topic counts once per item).
    pub topics: &'a [TopicId],
    /// Carries any safety label, for the teen cap.
    pub sensitive: bool,
    /// Made by a creator the viewer follows, for the following share.
    pub followed: bool,
    /// The unit embedding; an item without one has similarity 0 to everything.
    pub embedding: Option<&'a [f32]>,
    /// The video's exposures so far (exploration picks among the under-exposed).
    pub exposures: f32,
}

impl<'a> SlateItem<'a> {
    /// The view of `c`; `following` is the viewer's followed creators when the following
    /// share matters (pass `None` to skip the lookups).
    pub fn from_candidate(c: &'a Candidate, following: Option<&IdSet<UserId>>) -> Self {
        let v = &*c.video;
        Self {
            id: &v.id,
            score: c.score,
            creator: &v.creator,
            topics: &v.topics,
            sensitive: !v.safety.is_empty(),
            followed: following.is_some_and(|f| f.contains(&v.creator)),
            embedding: v.embedding.as_ref().map(|e| e.as_slice()),
            exposures: c.exposures,
        }
    }
}

//! An in-memory implementation of every port, built from a `steerfeed_world::World`: the
//! test double of the store for ranking tests and the ranking bench.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use steerfeed_core::ports::{
    ActionCounts, ActionStats, CameoConsent, ConsentLedger, Engagement, EngagementStats, Neighbor,
    SocialGraph, UserHistory, VectorSearch, VideoCatalog,
};
use steerfeed_core::{
    AgeBand, ConsentScope, Embedding, FeedContext, FeedRequest, Result, Timestamp, User, UserId,
    Video, VideoId, Viewer,
};
use steerfeed_rank::engagement_weight;
use steerfeed_world::{Revocation, World};

/// Every port, in memory.
#[derive(Default)]
pub struct Mem {
    pub videos: HashMap<VideoId, Arc<Video>>,
    pub order: Vec<VideoId>,
    pub users: HashMap<UserId, User>,
    pub follows: HashSet<(UserId, UserId)>,
    pub counts: HashMap<VideoId, ActionCounts>,
    pub creator_counts: HashMap<UserId, ActionCounts>,
    pub consent: HashMap<UserId, ConsentScope>,
    pub revoked_videos: HashSet<(UserId, VideoId)>,
    pub revoked_creators: HashSet<(UserId, UserId)>,
    pub history: HashMap<UserId, Vec<Engagement>>,
    /// When set, `popular` returns this list instead of ranking the counters.
    pub popular: Vec<(VideoId, f32)>,
    /// When set, `remix_trending` returns this list instead of ranking the counters.
    pub remix: Vec<(VideoId, f32)>,
}

impl Mem {
    /// Loads a world: videos, users, follows, consent, revocations, and the events as
    /// counters and histories.
    pub fn from_world(w: &World) -> Self {
        let mut m = Mem::default();
        for v in &w.videos {
            m.put(v.clone());
        }
        for u in &w.users {
            m.users.insert(u.user.id.clone(), u.user.clone());
        }
        m.follows = w.follows.iter().cloned().collect();
        for c in &w.consents {
            m.consent.insert(c.person.clone(), c.scope);
        }
        for r in &w.revocations {
            match r {
                Revocation::Video { person, video } => {
                    m.revoked_videos.insert((person.clone(), video.clone()));
                }
                Revocation::Creator { person, creator } => {
                    m.revoked_creators.insert((person.clone(), creator.clone()));
                }
            }
        }
        for e in &w.events {
            if let Some(video) = e.kind.video() {
                m.record(&e.user, video, &e.kind, e.at);
            }
        }
        m
    }

    /// Adds or replaces a video.
    pub fn put(&mut self, v: Video) {
        if !self.videos.contains_key(&v.id) {
            self.order.push(v.id.clone());
        }
        self.videos.insert(v.id.clone(), Arc::new(v));
    }

    /// Counts one event of `user` on `video`.
    pub fn record(
        &mut self,
        user: &UserId,
        video: &VideoId,
        kind: &steerfeed_core::EventKind,
        at: Timestamp,
    ) {
        self.counts.entry(video.clone()).or_default().add(kind, 1.0);
        if let Some(v) = self.videos.get(video) {
            self.creator_counts
                .entry(v.creator.clone())
                .or_default()
                .add(kind, 1.0);
        }
        self.history.entry(user.clone()).or_default().insert(
            0,
            Engagement {
                video: video.clone(),
                kind: kind.clone(),
                at,
            },
        );
    }

    pub fn video(&self, id: &str) -> Arc<Video> {
        self.videos[&VideoId::new(id).unwrap()].clone()
    }

    /// The viewer's state as the store would load it.
    pub fn viewer(&self, user: &UserId) -> Viewer {
        let mut v = Viewer {
            following: self
                .follows
                .iter()
                .filter(|(a, _)| a == user)
                .map(|(_, b)| b.clone())
                .collect(),
            ..Viewer::default()
        };
        v.own_videos = self
            .videos
            .values()
            .filter(|x| x.creator == *user)
            .map(|x| x.id.clone())
            .collect();
        for e in self.history.get(user).into_iter().flatten() {
            v.seen.insert(e.video.clone());
            if let Some(video) = self.videos.get(&e.video) {
                let a = v
                    .creator_affinity
                    .entry(video.creator.clone())
                    .or_insert(0.0);
                *a = (*a + engagement_weight(&e.kind) / 20.0).min(1.0);
            }
        }
        v
    }

    /// The mean embedding of what the user engaged with, weighted by engagement.
    pub fn interest(&self, user: &UserId) -> Option<Embedding> {
        let mut acc: Vec<f32> = Vec::new();
        for e in self.history.get(user).into_iter().flatten() {
            let w = engagement_weight(&e.kind);
            if let Some(emb) = self.videos.get(&e.video).and_then(|v| v.embedding.clone()) {
                if acc.is_empty() {
                    acc = vec![0.0; emb.dim()];
                }
                for (a, x) in acc.iter_mut().zip(emb.as_slice()) {
                    *a += w * x;
                }
            }
        }
        Embedding::normalized("interest", &acc).ok()
    }

    /// A full context for `user` at `now` with its viewer state and interest vector.
    pub fn ctx(&self, user: &str, now: Timestamp, limit: u32) -> FeedContext {
        let id = UserId::new(user).unwrap();
        let u = self
            .users
            .get(&id)
            .cloned()
            .unwrap_or_else(|| User::new(id.clone()));
        let mut ctx = FeedContext::new(FeedRequest::new(id.clone(), limit).unwrap(), u, now);
        ctx.viewer = self.viewer(&id);
        ctx.interest = self.interest(&id);
        ctx
    }

    fn newest_first(&self, mut vs: Vec<Arc<Video>>, limit: usize) -> Vec<Arc<Video>> {
        vs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        vs.truncate(limit);
        vs
    }

    fn top(&self, f: impl Fn(&ActionCounts) -> f32, limit: usize) -> Vec<(VideoId, f32)> {
        let mut v: Vec<(VideoId, f32)> = self
            .counts
            .iter()
            .map(|(id, c)| (id.clone(), f(c)))
            .filter(|(_, s)| *s > 0.0)
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        v
    }
}

impl VideoCatalog for Mem {
    fn video(&self, id: &VideoId) -> Result<Option<Arc<Video>>> {
        Ok(self.videos.get(id).cloned())
    }
    fn recent_by_creator(
        &self,
        c: &UserId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>> {
        let vs = self
            .videos
            .values()
            .filter(|v| v.creator == *c && v.created_at >= since)
            .cloned()
            .collect();
        Ok(self.newest_first(vs, limit))
    }
    fn newest(&self, since: Timestamp, limit: usize) -> Result<Vec<Arc<Video>>> {
        let vs = self
            .videos
            .values()
            .filter(|v| v.created_at >= since)
            .cloned()
            .collect();
        Ok(self.newest_first(vs, limit))
    }
    fn featuring(&self, person: &UserId, limit: usize) -> Result<Vec<Arc<Video>>> {
        let vs = self
            .videos
            .values()
            .filter(|v| v.cameos.contains(person))
            .cloned()
            .collect();
        Ok(self.newest_first(vs, limit))
    }
    fn recent_by_topic(
        &self,
        topic: &steerfeed_core::TopicId,
        since: Timestamp,
        limit: usize,
    ) -> Result<Vec<Arc<Video>>> {
        let mut vs: Vec<Arc<Video>> = self
            .videos
            .values()
            .filter(|v| v.topics.contains(topic) && v.created_at >= since)
            .cloned()
            .collect();
        vs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        vs.truncate(limit);
        Ok(vs)
    }
    fn creator_video_count(&self, c: &UserId, up_to: usize) -> Result<usize> {
        Ok(self
            .videos
            .values()
            .filter(|v| v.creator == *c)
            .take(up_to)
            .count())
    }
}

impl SocialGraph for Mem {
    fn following(&self, user: &UserId) -> Result<Vec<UserId>> {
        let mut f: Vec<UserId> = self
            .follows
            .iter()
            .filter(|(a, _)| a == user)
            .map(|(_, b)| b.clone())
            .collect();
        f.sort();
        Ok(f)
    }
    fn follows(&self, a: &UserId, b: &UserId) -> Result<bool> {
        Ok(self.follows.contains(&(a.clone(), b.clone())))
    }
}

impl EngagementStats for Mem {
    fn popular(&self, _: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>> {
        if !self.popular.is_empty() {
            return Ok(self.popular.iter().take(limit).cloned().collect());
        }
        Ok(self.top(|c| c.views + 2.0 * c.likes, limit))
    }
    fn remix_trending(&self, _: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>> {
        if !self.remix.is_empty() {
            return Ok(self.remix.iter().take(limit).cloned().collect());
        }
        Ok(self.top(|c| c.remixes + c.creates + c.cameo_uses, limit))
    }
}

impl ActionStats for Mem {
    fn video_counts(&self, videos: &[&VideoId], _: Timestamp) -> Result<Vec<ActionCounts>> {
        Ok(videos
            .iter()
            .map(|v| self.counts.get(*v).copied().unwrap_or_default())
            .collect())
    }
    fn creator_counts(&self, creator: &UserId, _: Timestamp) -> Result<ActionCounts> {
        Ok(self
            .creator_counts
            .get(creator)
            .copied()
            .unwrap_or_default())
    }
}

impl UserHistory for Mem {
    fn recent_engagements(&self, user: &UserId, limit: usize) -> Result<Vec<Engagement>> {
        Ok(self
            .history
            .get(user)
            .map(|h| h.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }
}

impl ConsentLedger for Mem {
    fn cameo_consent(
        &self,
        person: &UserId,
        creator: &UserId,
        video: &VideoId,
    ) -> Result<Option<CameoConsent>> {
        let Some(user) = self.users.get(person) else {
            return Ok(None);
        };
        Ok(Some(CameoConsent {
            scope: self.consent.get(person).copied().unwrap_or_default(),
            age_band: user.age_band,
            parental_scope: None,
            creator_approved: false,
            mutual: self.follows.contains(&(person.clone(), creator.clone()))
                && self.follows.contains(&(creator.clone(), person.clone())),
            revoked: self
                .revoked_videos
                .contains(&(person.clone(), video.clone()))
                || self
                    .revoked_creators
                    .contains(&(person.clone(), creator.clone())),
        }))
    }
}

impl VectorSearch for Mem {
    fn search(
        &self,
        query: &[f32],
        k: usize,
        allow: Option<&(dyn Fn(&VideoId) -> bool + Sync)>,
    ) -> Result<Vec<Neighbor>> {
        let mut hits: Vec<Neighbor> = self
            .order
            .iter()
            .filter_map(|id| {
                let v = &self.videos[id];
                if v.deleted || allow.is_some_and(|f| !f(id)) {
                    return None;
                }
                v.embedding.as_ref().map(|e| Neighbor {
                    video: id.clone(),
                    similarity: steerfeed_core::vector::dot(e.as_slice(), query),
                })
            })
            .collect();
        hits.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then_with(|| a.video.cmp(&b.video))
        });
        hits.truncate(k);
        Ok(hits)
    }

    fn search_topics(
        &self,
        query: &[f32],
        k: usize,
        topics: &[steerfeed_core::TopicId],
        allow: Option<&(dyn Fn(&VideoId) -> bool + Sync)>,
    ) -> Result<Vec<Neighbor>> {
        let on_topic = |id: &VideoId| {
            self.videos[id].topics.iter().any(|t| topics.contains(t)) && allow.is_none_or(|f| f(id))
        };
        self.search(query, k, Some(&on_topic))
    }
}

/// Whether every person in `video`'s cameos (but its creator) consents to appearing in
/// it in this world: the consent rule stated here on its own, as the oracle of the
/// tests, without the production `consent_allows` or `ConsentScope`'s order.
///
/// A revocation (of the video or of the creator) always refuses. Otherwise the scope in
/// force is the narrowest of: what the person set, `mutuals` when the person is a teen,
/// and their parental scope when set; `nobody` refuses, `approved` needs the creator on
/// the person's list, `mutuals` the list or a mutual follow, `everyone` allows. A person
/// the world does not know never consented.
pub fn consents(m: &Mem, video: &Video) -> bool {
    use steerfeed_core::ConsentScope as S;
    let breadth = |s: S| match s {
        S::Nobody => 0,
        S::Approved => 1,
        S::Mutuals => 2,
        S::Everyone => 3,
    };
    video
        .cameos
        .iter()
        .filter(|p| **p != video.creator)
        .all(|p| {
            let Some(f) = m.cameo_consent(p, &video.creator, &video.id).unwrap() else {
                return false;
            };
            if f.revoked {
                return false;
            }
            let mut scope = breadth(f.scope);
            if f.age_band == AgeBand::Teen {
                scope = scope.min(breadth(S::Mutuals));
            }
            if let Some(parental) = f.parental_scope {
                scope = scope.min(breadth(parental));
            }
            match scope {
                0 => false,
                1 => f.creator_approved,
                2 => f.creator_approved || f.mutual,
                _ => true,
            }
        })
}

/// A teen user id of the world, if any.
pub fn a_teen(w: &World) -> Option<String> {
    w.users
        .iter()
        .find(|u| u.user.age_band == AgeBand::Teen)
        .map(|u| u.user.id.to_string())
}

/// Every port the pipeline needs, from `mem`, with a co-engagement model fed `events`.
pub fn ports(mem: Arc<Mem>, events: &[steerfeed_core::Event]) -> steerfeed_rank::Ports {
    let co = Arc::new(steerfeed_rank::CoEngagementIndex::new(
        steerfeed_rank::CoEngagementParams::default(),
    ));
    for e in events {
        co.record(&e.user, &e.kind, e.at);
    }
    steerfeed_rank::Ports {
        catalog: mem.clone(),
        graph: mem.clone(),
        search: mem.clone(),
        engagement: mem.clone(),
        actions: mem.clone(),
        history: mem.clone(),
        co_engagement: co.clone(),
        trending: co,
        consent: mem,
        model: Default::default(),
        shadow: None,
    }
}

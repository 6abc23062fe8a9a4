use std::collections::HashSet;
use std::sync::Arc;

use steerfeed_core::ports::{SocialGraph, VideoCatalog};
use steerfeed_core::{Candidate, FeedContext, Reason, Result, Source, UserId};

use super::{from_videos, recency};

/// Videos featuring the viewer or people they follow in a cameo (made by anyone).
/// Consent is not checked here: the consent filter removes what may not be served.
pub struct SocialCameoSource {
    catalog: Arc<dyn VideoCatalog>,
    graph: Arc<dyn SocialGraph>,
    quota: usize,
}

impl SocialCameoSource {
    /// A source proposing at most `quota` videos.
    pub fn new(catalog: Arc<dyn VideoCatalog>, graph: Arc<dyn SocialGraph>, quota: usize) -> Self {
        Self {
            catalog,
            graph,
            quota,
        }
    }
}

impl Source for SocialCameoSource {
    fn fetch(&self, ctx: &FeedContext) -> Result<Vec<Candidate>> {
        if self.quota == 0 {
            return Ok(Vec::new());
        }
        let me = ctx.request.user();
        let mut people: Vec<UserId> = vec![me.clone()];
        people.extend(self.graph.following(me)?);
        let per_person = (self.quota / people.len()).max(2).min(self.quota);
        let mut seen = HashSet::new();
        let mut videos = Vec::new();
        for person in &people {
            for v in self.catalog.featuring(person, per_person)? {
                // Your own videos are not "featuring a friend".
                if v.creator != *me && !v.deleted && seen.insert(v.id.clone()) {
                    let person_in_it = person.clone();
                    videos.push((
                        v.clone(),
                        recency(ctx.now, v.created_at, 72.0),
                        person_in_it,
                    ));
                }
            }
        }
        videos.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.id.cmp(&b.0.id)));
        videos.truncate(self.quota);
        let featured: std::collections::HashMap<_, _> = videos
            .iter()
            .map(|(v, _, p)| (v.id.clone(), p.clone()))
            .collect();
        Ok(from_videos(
            videos.into_iter().map(|(v, s, _)| (v, s)),
            "social_cameo",
            |v| match featured.get(&v.id) {
                Some(p) if p == me => Reason::FeaturesYou,
                Some(p) => Reason::FriendCameo { person: p.clone() },
                None => Reason::FriendCameo {
                    person: v.creator.clone(),
                },
            },
        ))
    }

    fn name(&self) -> &'static str {
        "social_cameo"
    }
}

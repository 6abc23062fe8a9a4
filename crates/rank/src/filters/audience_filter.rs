use std::collections::HashMap;
use std::sync::Arc;

use steerfeed_core::ports::SocialGraph;
use steerfeed_core::{Audience, Candidate, FeedContext, Filter, Filtered, Result, UserId};

/// Followers-only videos reach the creator's followers; mutuals-only videos reach
/// people who follow the creator and whom the creator follows back.
pub struct AudienceFilter {
    graph: Arc<dyn SocialGraph>,
}

impl AudienceFilter {
    /// A filter reading "does the creator follow the viewer" from `graph`.
    pub fn new(graph: Arc<dyn SocialGraph>) -> Self {
        Self { graph }
    }
}

impl Filter for AudienceFilter {
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        let me = ctx.request.user();
        // One graph read per distinct creator of a mutuals-only video.
        let mut follows_back: HashMap<UserId, bool> = HashMap::new();
        for c in &candidates {
            let v = &c.video;
            if v.audience == Audience::Mutuals
                && ctx.viewer.following.contains(&v.creator)
                && !follows_back.contains_key(&v.creator)
            {
                let back = self.graph.follows(&v.creator, me)?;
                follows_back.insert(v.creator.clone(), back);
            }
        }
        Ok(Filtered::partition(candidates, |c| {
            let v = &c.video;
            // The following lookup only for the videos whose audience needs it.
            let follows = || ctx.viewer.following.contains(&v.creator);
            match v.audience {
                Audience::Public => true,
                Audience::Followers => follows(),
                Audience::Mutuals => {
                    follows() && follows_back.get(&v.creator).copied() == Some(true)
                }
            }
        }))
    }

    fn name(&self) -> &'static str {
        "audience"
    }
}

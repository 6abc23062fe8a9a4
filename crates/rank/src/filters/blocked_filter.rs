use steerfeed_core::{Candidate, FeedContext, Filter, Filtered, Result};

/// Removes videos by creators the viewer blocked or muted, and videos featuring a
/// blocked person. When the viewer's block or mute list could not be read in full
/// ([`Viewer::relations_unreadable`](steerfeed_core::Viewer)), it fails closed: only
/// videos whose creator and every cameo are the viewer or people they follow remain.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockedFilter;

impl Filter for BlockedFilter {
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        let v = &ctx.viewer;
        if v.blocked.is_empty() && v.muted.is_empty() && !v.relations_unreadable {
            return Ok(Filtered::all(candidates));
        }
        let me = ctx.request.user();
        let known = |p: &steerfeed_core::UserId| p == me || v.following.contains(p);
        Ok(Filtered::partition(candidates, |c| {
            let creator = &c.video.creator;
            !v.blocked.contains(creator)
                && !v.muted.contains(creator)
                && !c.video.cameos.iter().any(|p| v.blocked.contains(p))
                && (!v.relations_unreadable || (known(creator) && c.video.cameos.iter().all(known)))
        }))
    }

    fn name(&self) -> &'static str {
        "blocked"
    }
}

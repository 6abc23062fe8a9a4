use steerfeed_core::{Candidate, FeedContext, Filter, Filtered, Result};

/// Removes videos by creators the viewer blocked or muted, and videos featuring a
/// blocked person.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockedFilter;

impl Filter for BlockedFilter {
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        let v = &ctx.viewer;
        if v.blocked.is_empty() && v.muted.is_empty() {
            return Ok(Filtered::all(candidates));
        }
        Ok(Filtered::partition(candidates, |c| {
            let creator = &c.video.creator;
            !v.blocked.contains(creator)
                && !v.muted.contains(creator)
                && !c.video.cameos.iter().any(|p| v.blocked.contains(p))
        }))
    }

    fn name(&self) -> &'static str {
        "blocked"
    }
}

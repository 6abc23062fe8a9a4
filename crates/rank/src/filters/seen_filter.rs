use steerfeed_core::{Candidate, FeedContext, Filter, Filtered, Result};

/// Removes the videos in the viewer's seen history (served to them, or named in any of
/// their recent events: seen, engaged with, skipped, marked "not interested") and the
/// viewer's own videos.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeenFilter;

impl Filter for SeenFilter {
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        let me = ctx.request.user();
        Ok(Filtered::partition(candidates, |c| {
            !ctx.viewer.seen.contains(c.id()) && c.video.creator != *me
        }))
    }

    fn name(&self) -> &'static str {
        "seen"
    }
}

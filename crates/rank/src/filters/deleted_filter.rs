use steerfeed_core::{Candidate, FeedContext, Filter, Filtered, Result};

/// Removes deleted videos (sources skip them already; this is the guarantee).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeletedFilter;

impl Filter for DeletedFilter {
    fn filter(&self, _: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        Ok(Filtered::partition(candidates, |c| !c.video.deleted))
    }

    fn name(&self) -> &'static str {
        "deleted"
    }
}

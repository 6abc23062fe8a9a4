use steerfeed_core::{AgeBand, Candidate, FeedContext, Filter, Filtered, Result, SafetyLabel};

/// Safety by age band: teens are never served mature videos. Other sensitive labels
/// are allowed at most once in ten items for teens, which the selector enforces.
/// Runs whatever the parental controls say: turning personalization off keeps it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SafetyFilter;

impl Filter for SafetyFilter {
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        if ctx.user.age_band != AgeBand::Teen {
            return Ok(Filtered::all(candidates));
        }
        Ok(Filtered::partition(candidates, |c| {
            !c.video.safety.contains(&SafetyLabel::Mature)
        }))
    }

    fn name(&self) -> &'static str {
        "safety"
    }
}

#[cfg(doc)]
use steerfeed_core::SafetyLabel;
use steerfeed_core::{AgeBand, Candidate, FeedContext, Filter, Filtered, Result};

/// Safety by age band: teens are never served videos with a teen-restricted label
/// (mature, gambling, alcohol and drugs, self-harm; [`SafetyLabel::is_teen_restricted`]).
/// Other labels are allowed at most once in ten items for teens, which the selector
/// enforces.
/// Runs whatever the parental controls say: turning personalization off keeps it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SafetyFilter;

impl Filter for SafetyFilter {
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        if ctx.user.age_band != AgeBand::Teen {
            return Ok(Filtered::all(candidates));
        }
        Ok(Filtered::partition(candidates, |c| {
            !c.video.safety.iter().any(|l| l.is_teen_restricted())
        }))
    }

    fn name(&self) -> &'static str {
        "safety"
    }
}

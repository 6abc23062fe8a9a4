use steerfeed_core::{Candidate, FeedContext, Filter, Filtered, Result};

/// Removes videos longer than the steering `max_duration_s` ("only short clips").
#[derive(Debug, Clone, Copy, Default)]
pub struct DurationFilter;

impl Filter for DurationFilter {
    fn filter(&self, ctx: &FeedContext, candidates: Vec<Candidate>) -> Result<Filtered> {
        let Some(max) = ctx.constraints.max_duration_s else {
            return Ok(Filtered::all(candidates));
        };
        let max = max as f32;
        Ok(Filtered::partition(candidates, |c| {
            c.video.duration_s <= max
        }))
    }

    fn name(&self) -> &'static str {
        "duration"
    }
}

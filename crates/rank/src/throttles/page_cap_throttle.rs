use std::sync::Arc;

use steerfeed_core::{Candidate, FeedContext, Result, Throttle, ThrottleAction};

use super::{WellbeingConfig, items_left};

/// Inline: cuts the page to what the count caps leave ([`items_left`]: the parental
/// scroll cap of the session, a teen's daily items), so the page before a cap does not
/// overshoot it; the gates then stop the next request. It owns the cut: no other stage
/// trims a page for a cap.
#[derive(Debug, Clone, Default)]
pub struct PageCapThrottle {
    cfg: Arc<WellbeingConfig>,
}

impl PageCapThrottle {
    /// A throttle with `cfg` (a [`WellbeingConfig`] or a shared `Arc` of one).
    pub fn new(cfg: impl Into<Arc<WellbeingConfig>>) -> Self {
        Self { cfg: cfg.into() }
    }
}

impl Throttle for PageCapThrottle {
    fn check(&self, ctx: &FeedContext, page: &[Candidate]) -> Result<ThrottleAction> {
        Ok(match items_left(&self.cfg, ctx) {
            Some(left) if left < page.len() => ThrottleAction::Cut(left),
            _ => ThrottleAction::Pass,
        })
    }

    fn name(&self) -> &'static str {
        "page_cap"
    }
}

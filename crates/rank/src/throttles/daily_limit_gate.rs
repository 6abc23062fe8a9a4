use std::sync::Arc;

use steerfeed_core::{Candidate, CardKind, FeedContext, Result, Throttle, ThrottleAction};

use super::{WellbeingConfig, card, daily_limit_reached};

/// Gate: stops the feed with a `limit_reached` card once today's allowance is used up
/// ([`daily_limit_reached`]): for teens `teen_daily_minutes` or `teen_daily_items`; for
/// any account with parental controls, their `daily_limit_minutes` instead of the minute
/// default.
#[derive(Debug, Clone, Default)]
pub struct DailyLimitGate {
    cfg: Arc<WellbeingConfig>,
}

impl DailyLimitGate {
    /// A gate with `cfg` (a [`WellbeingConfig`] or a shared `Arc` of one).
    pub fn new(cfg: impl Into<Arc<WellbeingConfig>>) -> Self {
        Self { cfg: cfg.into() }
    }
}

/// The `limit_reached` card's text.
const MESSAGE: &str = "That's your viewing time for today. See you tomorrow!";

impl Throttle for DailyLimitGate {
    fn check(&self, ctx: &FeedContext, _page: &[Candidate]) -> Result<ThrottleAction> {
        Ok(if daily_limit_reached(&self.cfg, ctx) {
            ThrottleAction::Stop(card(CardKind::LimitReached, 0, MESSAGE))
        } else {
            ThrottleAction::Pass
        })
    }

    fn name(&self) -> &'static str {
        "daily_limit"
    }
}

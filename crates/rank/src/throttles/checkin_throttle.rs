use std::sync::Arc;

use steerfeed_core::{Candidate, CardKind, FeedContext, Result, Throttle, ThrottleAction};

use super::{WellbeingConfig, card, checkin_due};

/// Inline: puts a `checkin` card at the top of the page when a check-in is due
/// ([`checkin_due`]): every `checkin_minutes` (teens `teen_checkin_minutes`) of continuous
/// session, counted from the later of the session's start and the last check-in card.
/// The store records `last_checkin` when the card is served, which restarts the count.
#[derive(Debug, Clone, Default)]
pub struct CheckinThrottle {
    cfg: Arc<WellbeingConfig>,
}

impl CheckinThrottle {
    /// A throttle with `cfg` (a [`WellbeingConfig`] or a shared `Arc` of one).
    pub fn new(cfg: impl Into<Arc<WellbeingConfig>>) -> Self {
        Self { cfg: cfg.into() }
    }
}

/// The `checkin` card's text.
const MESSAGE: &str = "Quick check-in: how are you feeling right now?";

impl Throttle for CheckinThrottle {
    fn check(&self, ctx: &FeedContext, _page: &[Candidate]) -> Result<ThrottleAction> {
        Ok(if checkin_due(&self.cfg, ctx) {
            ThrottleAction::Insert(card(CardKind::Checkin, 0, MESSAGE))
        } else {
            ThrottleAction::Pass
        })
    }

    fn name(&self) -> &'static str {
        "checkin"
    }
}

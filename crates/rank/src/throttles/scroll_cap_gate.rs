use steerfeed_core::{Candidate, CardKind, FeedContext, Result, Throttle, ThrottleAction};

use super::{card, scroll_cap_reached};

/// Gate: stops the feed with a `caught_up` card once the session has served as many
/// items as the parental scroll cap allows ([`scroll_cap_reached`]). It needs no config:
/// the cap comes from the account's parental controls.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrollCapGate;

impl ScrollCapGate {
    /// The gate.
    pub fn new() -> Self {
        Self
    }
}

/// The `caught_up` card's text.
const MESSAGE: &str = "You're all caught up for now. Maybe time for something else?";

impl Throttle for ScrollCapGate {
    fn check(&self, ctx: &FeedContext, _page: &[Candidate]) -> Result<ThrottleAction> {
        Ok(if scroll_cap_reached(ctx) {
            ThrottleAction::Stop(card(CardKind::CaughtUp, 0, MESSAGE))
        } else {
            ThrottleAction::Pass
        })
    }

    fn name(&self) -> &'static str {
        "scroll_cap"
    }
}

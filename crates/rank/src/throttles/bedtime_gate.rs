use std::sync::Arc;

use steerfeed_core::{Candidate, CardKind, FeedContext, Result, Throttle, ThrottleAction};

use super::{WellbeingConfig, card, is_bedtime};

/// Gate: stops a teen's feed with a `bedtime` card while their local time is inside the
/// bedtime window ([`is_bedtime`]; 22:00–06:00 by default). An unknown time zone is read
/// as UTC with a warning (see [`local_time`](super::local_time)).
#[derive(Debug, Clone, Default)]
pub struct BedtimeGate {
    cfg: Arc<WellbeingConfig>,
}

impl BedtimeGate {
    /// A gate with `cfg` (a [`WellbeingConfig`] or a shared `Arc` of one).
    pub fn new(cfg: impl Into<Arc<WellbeingConfig>>) -> Self {
        Self { cfg: cfg.into() }
    }
}

/// The `bedtime` card's text.
const MESSAGE: &str = "It's late. Time to rest; your feed will be here in the morning.";

impl Throttle for BedtimeGate {
    fn check(&self, ctx: &FeedContext, _page: &[Candidate]) -> Result<ThrottleAction> {
        Ok(if is_bedtime(&self.cfg, ctx) {
            ThrottleAction::Stop(card(CardKind::Bedtime, 0, MESSAGE))
        } else {
            ThrottleAction::Pass
        })
    }

    fn name(&self) -> &'static str {
        "bedtime"
    }
}

use std::sync::Arc;

use steerfeed_core::{Candidate, CardKind, FeedContext, Result, Throttle, ThrottleAction};

use super::{WellbeingConfig, card, lighter_mode};

/// Inline: offers a break (a `break` card at the top of the page) after a "not great"
/// check-in answer, at most once per answer per session.
///
/// The rule: a break is due while [`lighter_mode`] holds (the last answer is "not great"
/// and younger than `not_great_hours`) and no break card was served since the later of
/// the answer and the session's start (`WellbeingState::last_break`, which the engine
/// records when it serves the card). So a new "not great" answer, or a new session while
/// the answer is still recent, earns one more offer; the state is durable, so a restart
/// or another replica does not repeat it.
#[derive(Debug, Clone, Default)]
pub struct BreakThrottle {
    cfg: Arc<WellbeingConfig>,
}

impl BreakThrottle {
    /// A throttle with `cfg` (a [`WellbeingConfig`] or a shared `Arc` of one).
    pub fn new(cfg: impl Into<Arc<WellbeingConfig>>) -> Self {
        Self { cfg: cfg.into() }
    }
}

/// The `break` card's text.
const MESSAGE: &str =
    "Sorry it's not a great moment. How about a short break? We'll be here when you're back.";

impl Throttle for BreakThrottle {
    fn check(&self, ctx: &FeedContext, _page: &[Candidate]) -> Result<ThrottleAction> {
        if !lighter_mode(&self.cfg, ctx) {
            return Ok(ThrottleAction::Pass);
        }
        let w = &ctx.wellbeing;
        let Some((_, answered)) = w.last_answer else {
            return Ok(ThrottleAction::Pass);
        };
        let since = w.session_started.map_or(answered, |s| s.max(answered));
        if w.last_break.is_some_and(|b| b >= since) {
            return Ok(ThrottleAction::Pass);
        }
        Ok(ThrottleAction::Insert(card(CardKind::Break, 0, MESSAGE)))
    }

    fn name(&self) -> &'static str {
        "break"
    }
}

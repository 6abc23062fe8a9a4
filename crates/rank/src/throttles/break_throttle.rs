use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use steerfeed_core::{
    Candidate, CardKind, FeedContext, Result, Throttle, ThrottleAction, Timestamp, UserId,
    minutes_between,
};

use super::{WellbeingConfig, card, lighter_mode};

/// Inline: offers a break (a `break` card at the top of the page) after a "not great"
/// check-in answer, at most once per answer per session.
///
/// The rule: a break is due while [`lighter_mode`] holds (the last answer is "not great"
/// and younger than `not_great_hours`). It is offered on the first page that finds it due
/// for a given (answer, session) pair, where the pair is the answer's timestamp and the
/// session's `session_started`; later pages of the same session pass. A new "not great"
/// answer, or a new session while the answer is still recent, earns one more offer.
///
/// `WellbeingState` records when the last check-in card was shown but not when a break
/// card was, so the throttle remembers the pairs it offered itself, in memory shared by
/// its clones: build it once per engine, not once per request. The memory is one entry
/// per viewer with a recent answer; entries older than `not_great_hours` are swept as it
/// grows. After a restart, or on another replica, a break may be offered once more. The
/// offer is remembered when the card is produced, even if a later stage fails the request.
/// For the pure rule without memory, use [`lighter_mode`].
#[derive(Debug, Clone, Default)]
pub struct BreakThrottle {
    cfg: Arc<WellbeingConfig>,
    offered: Arc<Mutex<OfferLog>>,
}

/// The (answer, session) pair a break was offered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Offer {
    answered: Timestamp,
    session: Option<Timestamp>,
}

/// Entries held before the first sweep.
const FIRST_SWEEP: usize = 4096;

#[derive(Debug, Default)]
struct OfferLog {
    by_user: HashMap<UserId, Offer>,
    sweep_at: usize,
}

impl BreakThrottle {
    /// A throttle with `cfg` (a [`WellbeingConfig`] or a shared `Arc` of one) and an empty
    /// memory of offers.
    pub fn new(cfg: impl Into<Arc<WellbeingConfig>>) -> Self {
        Self {
            cfg: cfg.into(),
            offered: Arc::default(),
        }
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
        let Some((_, answered)) = ctx.wellbeing.last_answer else {
            return Ok(ThrottleAction::Pass);
        };
        let offer = Offer {
            answered,
            session: ctx.wellbeing.session_started,
        };
        let mut log = self.offered.lock().unwrap_or_else(PoisonError::into_inner);
        if log.by_user.get(&ctx.user.id) == Some(&offer) {
            return Ok(ThrottleAction::Pass);
        }
        if log.by_user.len() >= log.sweep_at.max(FIRST_SWEEP) {
            let window = f64::from(self.cfg.not_great_hours) * 60.0;
            log.by_user
                .retain(|_, o| f64::from(minutes_between(o.answered, ctx.now)) < window);
            log.sweep_at = (log.by_user.len() * 2).max(FIRST_SWEEP);
        }
        log.by_user.insert(ctx.user.id.clone(), offer);
        Ok(ThrottleAction::Insert(card(CardKind::Break, 0, MESSAGE)))
    }

    fn name(&self) -> &'static str {
        "break"
    }
}

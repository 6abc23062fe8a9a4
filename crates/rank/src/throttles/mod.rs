//! Wellbeing and parental throttles (docs/design.md §3 steps 2 and 7, §6).
//!
//! Gates run before any other stage; when one stops the request, the feed is one card and
//! no items:
//!
//! | gate | name | card | when |
//! | --- | --- | --- | --- |
//! | [`DailyLimitGate`] | `daily_limit` | `limit_reached` | teen daily minutes or items used up; a parental minute limit for any account |
//! | [`BedtimeGate`] | `bedtime` | `bedtime` | a teen's local time inside the bedtime window |
//! | [`ScrollCapGate`] | `scroll_cap` | `caught_up` | the parental scroll cap reached this session |
//!
//! Inline throttles run on the chosen page and add a card to it:
//!
//! | throttle | name | card | when |
//! | --- | --- | --- | --- |
//! | [`CheckinThrottle`] | `checkin` | `checkin` | every 30 minutes of session (teens 20) |
//! | [`CreationPromptThrottle`] | `creation_prompt` | `creation_prompt` | a passive streak of 20 views |
//! | [`BreakThrottle`] | `break` | `break` | once per recent "not great" answer per session |
//!
//! [`PageCapThrottle`] (`page_cap`) runs first among them and adds no card: it cuts the
//! page to what the scroll cap and a teen's daily items leave ([`items_left`]), so no page
//! overshoots a cap the gates enforce.
//!
//! Every throttle is `Clone` and takes a [`WellbeingConfig`] or an `Arc` of one shared with
//! the others (`DailyLimitGate::new(cfg.clone())`). The decisions are pure functions over the
//! config and the [`FeedContext`], public here (`daily_limit_reached`, `is_bedtime`,
//! `checkin_due`, ...) so the engine and the harness can ask the same questions; the scorer calls
//! [`consumption_lambda`] for λ(session) and [`lighter_mode`] with
//! [`WellbeingConfig::is_light`] and [`WellbeingConfig::is_heavy`] to lighten the feed
//! after a "not great" check-in.
//!
//! [`FeedContext`]: steerfeed_core::FeedContext

mod bedtime_gate;
mod break_throttle;
mod checkin_throttle;
mod creation_prompt_throttle;
mod daily_limit_gate;
mod page_cap_throttle;
mod policy;
mod scroll_cap_gate;
mod time_of_day;
mod wellbeing_config;

pub use bedtime_gate::BedtimeGate;
pub use break_throttle::BreakThrottle;
pub use checkin_throttle::CheckinThrottle;
pub use creation_prompt_throttle::CreationPromptThrottle;
pub use daily_limit_gate::DailyLimitGate;
pub use page_cap_throttle::PageCapThrottle;
pub use policy::{
    checkin_due, checkin_interval, consumption_lambda, creation_prompt_due, daily_limit_reached,
    daily_minute_limit, is_bedtime, items_left, lighter_mode, local_date, local_time,
    scroll_cap_reached,
};
pub use scroll_cap_gate::ScrollCapGate;
use steerfeed_core::{Card, CardKind};
pub use time_of_day::TimeOfDay;
pub use wellbeing_config::WellbeingConfig;

fn card(kind: CardKind, position: usize, message: &str) -> Card {
    Card {
        kind,
        position,
        message: message.to_owned(),
    }
}

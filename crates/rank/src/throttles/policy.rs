//! The wellbeing policy as pure functions of the config and the request context, shared by
//! the throttles and by the scorer (docs/design.md §5 λ(session), §6).

use steerfeed_core::{AgeBand, CheckinAnswer, FeedContext, Timestamp, minutes_between};

use super::{TimeOfDay, WellbeingConfig};

fn is_teen(ctx: &FeedContext) -> bool {
    ctx.user.age_band == AgeBand::Teen
}

/// λ(session) of docs/design.md §5: the cost the scorer charges per unit of passive-view
/// probability, growing as the session goes on.
///
/// `λ = min(lambda_max, lambda_base + lambda_per_hour · session hours + streak term)`,
/// where the streak term is 0 below the `passive_streak` threshold and
/// `lambda_streak · streak / threshold` from it on (a step up at the threshold, then
/// growing). It is non-decreasing in session minutes and in the passive streak, at most
/// `lambda_max`, and always finite and non-negative (0 if the config is so broken that
/// the sum is not a number). With the defaults: 0.05 at the start, 0.5 after an hour, 0.25
/// at a 20-view passive streak, capped at 0.8.
pub fn consumption_lambda(cfg: &WellbeingConfig, ctx: &FeedContext) -> f32 {
    let hours = ctx.session_minutes() / 60.0;
    let threshold = cfg.passive_streak.max(1);
    let streak = ctx.wellbeing.passive_streak;
    let streak_term = if streak >= threshold {
        cfg.lambda_streak * (streak as f32 / threshold as f32)
    } else {
        0.0
    };
    let lambda = (cfg.lambda_base + cfg.lambda_per_hour * hours + streak_term)
        .min(cfg.lambda_max)
        .max(0.0);
    if lambda.is_finite() { lambda } else { 0.0 }
}

/// True while the viewer's last check-in answer is "not great" and was given less than
/// `not_great_hours` ago (an answer stamped in the future counts as just given). While it
/// holds, the scorer shifts toward lighter, creation-oriented content
/// ([`WellbeingConfig::is_light`], [`WellbeingConfig::is_heavy`]) and a break is offered.
pub fn lighter_mode(cfg: &WellbeingConfig, ctx: &FeedContext) -> bool {
    match ctx.wellbeing.last_answer {
        Some((CheckinAnswer::NotGreat, at)) => is_recent(cfg, at, ctx.now),
        _ => false,
    }
}

fn is_recent(cfg: &WellbeingConfig, at: Timestamp, now: Timestamp) -> bool {
    f64::from(minutes_between(at, now)) < f64::from(cfg.not_great_hours) * 60.0
}

/// Minutes of continuous session between check-in cards for this viewer:
/// `teen_checkin_minutes` for teens, `checkin_minutes` otherwise.
pub fn checkin_interval(cfg: &WellbeingConfig, ctx: &FeedContext) -> f32 {
    let minutes = if is_teen(ctx) {
        cfg.teen_checkin_minutes
    } else {
        cfg.checkin_minutes
    };
    minutes as f32
}

/// True when a check-in card is due: at least [`checkin_interval`] minutes have passed
/// since the later of the session's start and the last check-in card. Never without a
/// session.
pub fn checkin_due(cfg: &WellbeingConfig, ctx: &FeedContext) -> bool {
    let Some(started) = ctx.wellbeing.session_started else {
        return false;
    };
    let since = ctx
        .wellbeing
        .last_checkin
        .map_or(started, |c| c.max(started));
    minutes_between(since, ctx.now) >= checkin_interval(cfg, ctx)
}

/// The viewer's daily viewing limit in minutes, if any: parental controls'
/// `daily_limit_minutes` when set (for any account), else `teen_daily_minutes` for teens,
/// else none.
pub fn daily_minute_limit(cfg: &WellbeingConfig, ctx: &FeedContext) -> Option<u32> {
    ctx.parental
        .daily_limit_minutes
        .or_else(|| is_teen(ctx).then_some(cfg.teen_daily_minutes))
}

/// True when the viewer has used up today's allowance: minutes watched today reached
/// [`daily_minute_limit`], or, for teens, items served today reached `teen_daily_items`.
/// A non-finite minute counter counts as reached when a minute limit applies (fail
/// closed: a broken counter must not lift a teen's limit).
pub fn daily_limit_reached(cfg: &WellbeingConfig, ctx: &FeedContext) -> bool {
    let w = &ctx.wellbeing;
    let minutes = daily_minute_limit(cfg, ctx)
        .is_some_and(|limit| !w.minutes_today.is_finite() || w.minutes_today >= limit as f32);
    let items = is_teen(ctx) && w.items_today >= cfg.teen_daily_items;
    minutes || items
}

/// The viewer's local time of day at `ctx.now` in `ctx.user.time_zone`.
///
/// An unknown time zone (users are validated on the way in, so this means the bundled
/// time zone database lacks a name the app's does) is read as UTC with a warning rather
/// than failing the request: the viewer still gets a feed, and a teen still gets a
/// bedtime, if possibly at the wrong hour.
pub fn local_time(ctx: &FeedContext) -> TimeOfDay {
    let dt = zone(ctx).to_datetime(ctx.now);
    let minutes = i32::from(dt.hour()) * 60 + i32::from(dt.minute());
    u32::try_from(minutes)
        .ok()
        .and_then(|m| TimeOfDay::from_minutes(m).ok())
        .unwrap_or(TimeOfDay::MIDNIGHT)
}

/// The viewer's local date at `ctx.now` (the day their daily limits count in), read as
/// [`local_time`] reads the time.
pub fn local_date(ctx: &FeedContext) -> jiff::civil::Date {
    zone(ctx).to_datetime(ctx.now).date()
}

fn zone(ctx: &FeedContext) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(&ctx.user.time_zone).unwrap_or_else(|e| {
        tracing::warn!(
            user = %ctx.user.id,
            time_zone = %ctx.user.time_zone,
            error = %e,
            "unknown time zone; reading local time as UTC"
        );
        jiff::tz::TimeZone::UTC
    })
}

/// True when the viewer is a teen and their local time ([`local_time`]) is inside the
/// bedtime window, from `bedtime_start` (inclusive) to `bedtime_end` (exclusive), wrapping
/// midnight.
pub fn is_bedtime(cfg: &WellbeingConfig, ctx: &FeedContext) -> bool {
    is_teen(ctx) && local_time(ctx).is_within(cfg.bedtime_start, cfg.bedtime_end)
}

/// True when parental controls set a scroll cap and the session has served that many
/// items.
pub fn scroll_cap_reached(ctx: &FeedContext) -> bool {
    ctx.parental
        .scroll_cap
        .is_some_and(|cap| ctx.wellbeing.session_items >= cap)
}

/// Items the viewer may still be served before a count cap stops them: what the
/// parental scroll cap leaves of this session and, for teens, what `teen_daily_items`
/// leaves of today, whichever is less; `None` when no count cap applies. The gates stop
/// a request at a cap ([`scroll_cap_reached`], [`daily_limit_reached`]); this keeps the
/// page before it from overshooting.
pub fn items_left(cfg: &WellbeingConfig, ctx: &FeedContext) -> Option<usize> {
    let w = &ctx.wellbeing;
    let session = ctx
        .parental
        .scroll_cap
        .map(|cap| cap.saturating_sub(w.session_items));
    let today = is_teen(ctx).then(|| cfg.teen_daily_items.saturating_sub(w.items_today));
    let left = match (session, today) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    left.map(|n| n as usize)
}

/// True when the passive streak has reached the `passive_streak` threshold.
pub fn creation_prompt_due(cfg: &WellbeingConfig, ctx: &FeedContext) -> bool {
    ctx.wellbeing.passive_streak >= cfg.passive_streak
}

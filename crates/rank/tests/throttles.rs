//! Tests of the wellbeing and parental throttles and the wellbeing policy functions.
//!
//! 1. Daily limit: a teen at the minute or item limit gets `limit_reached`, and the
//!    assembled pipeline serves exactly that card and no items; adults are not limited
//!    unless parental controls set a limit, which replaces the teen default too.
//! 2. Bedtime: the same instant is bedtime in Tokyo and not in UTC; the window's edges
//!    (21:59 / 22:00, 05:59 / 06:00); a custom window; an unknown time zone reads as UTC.
//! 3. Scroll cap: `caught_up` exactly at the parental cap; the page before a count cap
//!    (scroll cap, a teen's daily items) is cut to what the cap leaves, never more.
//! 4. Check-in cadence: 19 vs 20 teen minutes, 29 vs 30 adult minutes, counted from the
//!    later of the session start and the last check-in.
//! 5. Creation prompt at the passive-streak threshold, early in the page.
//! 6. Break after a recent "not great" answer, once per answer per session; not after
//!    "great", "okay" or an old answer. Lighter mode and the light/heavy helpers.
//! 7. λ(session): the documented values, monotone in session minutes and streak, capped
//!    and finite (proptest).
//! 8. Whenever any gate stops, the pipeline serves no items (proptest over random states).
//! 9. Config: validation rejects bad values naming the field; serde_json round trip;
//!    bedtimes as "HH:MM" or minutes of the day.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use proptest::prelude::*;
use steerfeed_core::{
    AgeBand, Candidate, Card, CardKind, CheckinAnswer, Error, FeedContext, FeedRequest, Pipeline,
    Reason, Result, SafetyLabel, Source, Throttle, ThrottleAction, Timestamp, TopicId, User,
    UserId, Video, VideoId,
};
use steerfeed_rank::throttles::{
    BedtimeGate, BreakThrottle, CheckinThrottle, CreationPromptThrottle, DailyLimitGate,
    PageCapThrottle, ScrollCapGate, TimeOfDay, WellbeingConfig, checkin_interval,
    consumption_lambda, is_bedtime, lighter_mode, local_time,
};

/// 14:00 UTC, 23:00 in Tokyo, 10:00 in New York (daylight time).
const NOW: &str = "2026-03-10T14:00:00Z";

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    at(NOW)
}

fn minutes_before(t: Timestamp, minutes: i64) -> Timestamp {
    Timestamp::from_millisecond(t.as_millisecond() - minutes * 60_000).unwrap()
}

fn ctx_at(age: AgeBand, tz: &str, now: Timestamp) -> FeedContext {
    let id = UserId::new("viewer").unwrap();
    let mut user = User::new(id.clone());
    user.age_band = age;
    user.time_zone = tz.to_owned();
    FeedContext::new(FeedRequest::new(id, 20).unwrap(), user, now)
}

fn teen() -> FeedContext {
    ctx_at(AgeBand::Teen, "UTC", now())
}

fn adult() -> FeedContext {
    ctx_at(AgeBand::Adult, "UTC", now())
}

fn cfg() -> WellbeingConfig {
    WellbeingConfig::default()
}

fn check(t: &impl Throttle, ctx: &FeedContext) -> ThrottleAction {
    t.check(ctx, &[]).unwrap()
}

fn stop_kind(a: &ThrottleAction) -> Option<CardKind> {
    match a {
        ThrottleAction::Stop(c) => Some(c.kind),
        _ => None,
    }
}

fn inserted(a: &ThrottleAction) -> Option<&Card> {
    match a {
        ThrottleAction::Insert(c) => Some(c),
        _ => None,
    }
}

fn video(id: &str) -> Arc<Video> {
    Arc::new(Video::new(
        VideoId::new(id).unwrap(),
        UserId::new("creator").unwrap(),
        at("2026-03-01T00:00:00Z"),
        10.0,
    ))
}

/// Proposes five videos with descending scores.
struct Few;

impl Source for Few {
    fn fetch(&self, _: &FeedContext) -> Result<Vec<Candidate>> {
        Ok((0..5)
            .map(|i| {
                let mut c = Candidate::new(video(&format!("v{i}")), "few", 1.0, Reason::Popular);
                c.score = 1.0 - i as f32 * 0.1;
                c
            })
            .collect())
    }

    fn name(&self) -> &'static str {
        "few"
    }
}

fn pipeline(cfg: WellbeingConfig) -> Pipeline {
    let cfg = Arc::new(cfg);
    Pipeline::builder()
        .gate(DailyLimitGate::new(cfg.clone()))
        .gate(BedtimeGate::new(cfg.clone()))
        .gate(ScrollCapGate::new())
        .source(Few)
        .inline(PageCapThrottle::new(cfg.clone()))
        .inline(CheckinThrottle::new(cfg.clone()))
        .inline(CreationPromptThrottle::new(cfg.clone()))
        .inline(BreakThrottle::new(cfg))
        .build()
        .unwrap()
}

// 1. Daily limit.

#[test]
fn a_teen_at_the_daily_minute_limit_gets_limit_reached_and_no_items() {
    let mut ctx = teen();
    ctx.wellbeing.minutes_today = 60.0;
    let action = check(&DailyLimitGate::new(cfg()), &ctx);
    let ThrottleAction::Stop(card) = &action else {
        panic!("expected a stop, got {action:?}");
    };
    assert_eq!(card.kind, CardKind::LimitReached);
    assert!(!card.message.is_empty());

    let out = pipeline(cfg()).run(&ctx).unwrap();
    assert!(out.stopped);
    assert!(out.items.is_empty());
    assert_eq!(out.cards, vec![card.clone()]);
    assert!(
        out.trace.stage("few").is_none(),
        "no source runs after a gate stops"
    );
    assert_eq!(
        out.trace
            .stage("daily_limit")
            .unwrap()
            .card
            .as_ref()
            .unwrap()
            .kind,
        CardKind::LimitReached
    );

    ctx.wellbeing.minutes_today = 59.9;
    assert_eq!(
        check(&DailyLimitGate::new(cfg()), &ctx),
        ThrottleAction::Pass
    );
    let out = pipeline(cfg()).run(&ctx).unwrap();
    assert!(!out.stopped);
    assert_eq!(out.items.len(), 5);
}

#[test]
fn a_teen_at_the_daily_item_cap_is_stopped() {
    let gate = DailyLimitGate::new(cfg());
    let mut ctx = teen();
    ctx.wellbeing.items_today = 299;
    assert_eq!(check(&gate, &ctx), ThrottleAction::Pass);
    ctx.wellbeing.items_today = 300;
    assert_eq!(stop_kind(&check(&gate, &ctx)), Some(CardKind::LimitReached));
}

#[test]
fn a_broken_minute_counter_does_not_lift_a_teen_limit() {
    let mut ctx = teen();
    ctx.wellbeing.minutes_today = f32::NAN;
    assert_eq!(
        stop_kind(&check(&DailyLimitGate::new(cfg()), &ctx)),
        Some(CardKind::LimitReached)
    );
}

#[test]
fn adults_are_not_limited_without_a_parental_limit() {
    let mut ctx = adult();
    ctx.wellbeing.minutes_today = 600.0;
    ctx.wellbeing.items_today = 5_000;
    assert_eq!(
        check(&DailyLimitGate::new(cfg()), &ctx),
        ThrottleAction::Pass
    );
}

#[test]
fn a_parental_limit_applies_to_any_account_and_replaces_the_teen_default() {
    let gate = DailyLimitGate::new(cfg());
    let mut ctx = adult();
    ctx.parental.daily_limit_minutes = Some(30);
    ctx.wellbeing.minutes_today = 29.5;
    assert_eq!(check(&gate, &ctx), ThrottleAction::Pass);
    ctx.wellbeing.minutes_today = 30.0;
    assert_eq!(stop_kind(&check(&gate, &ctx)), Some(CardKind::LimitReached));

    // A parent can give a teen more time than the default, or less.
    let mut ctx = teen();
    ctx.parental.daily_limit_minutes = Some(90);
    ctx.wellbeing.minutes_today = 75.0;
    assert_eq!(check(&gate, &ctx), ThrottleAction::Pass);
    ctx.wellbeing.minutes_today = 90.0;
    assert_eq!(stop_kind(&check(&gate, &ctx)), Some(CardKind::LimitReached));
    ctx.parental.daily_limit_minutes = Some(15);
    ctx.wellbeing.minutes_today = 15.0;
    assert_eq!(stop_kind(&check(&gate, &ctx)), Some(CardKind::LimitReached));
}

// 2. Bedtime.

#[test]
fn the_same_instant_is_bedtime_in_tokyo_and_not_in_utc() {
    let gate = BedtimeGate::new(cfg());
    let tokyo = ctx_at(AgeBand::Teen, "Asia/Tokyo", now());
    let utc = ctx_at(AgeBand::Teen, "UTC", now());
    let new_york = ctx_at(AgeBand::Teen, "America/New_York", now());
    assert_eq!(local_time(&tokyo), TimeOfDay::new(23, 0).unwrap());
    assert_eq!(local_time(&utc), TimeOfDay::new(14, 0).unwrap());
    assert_eq!(local_time(&new_york), TimeOfDay::new(10, 0).unwrap());
    assert_eq!(stop_kind(&check(&gate, &tokyo)), Some(CardKind::Bedtime));
    assert_eq!(check(&gate, &utc), ThrottleAction::Pass);
    assert_eq!(check(&gate, &new_york), ThrottleAction::Pass);

    let out = pipeline(cfg()).run(&tokyo).unwrap();
    assert!(out.stopped && out.items.is_empty());
    assert_eq!(out.cards.len(), 1);
    assert_eq!(out.cards[0].kind, CardKind::Bedtime);

    // Adults have no bedtime.
    let adult_tokyo = ctx_at(AgeBand::Adult, "Asia/Tokyo", now());
    assert_eq!(check(&gate, &adult_tokyo), ThrottleAction::Pass);
}

#[test]
fn bedtime_window_edges() {
    let c = cfg();
    let teen_at = |s: &str| ctx_at(AgeBand::Teen, "UTC", at(s));
    assert!(!is_bedtime(&c, &teen_at("2026-03-10T21:59:00Z")));
    assert!(!is_bedtime(&c, &teen_at("2026-03-10T21:59:59Z")));
    assert!(is_bedtime(&c, &teen_at("2026-03-10T22:00:00Z")));
    assert!(is_bedtime(&c, &teen_at("2026-03-11T00:00:00Z")));
    assert!(is_bedtime(&c, &teen_at("2026-03-11T05:59:00Z")));
    assert!(!is_bedtime(&c, &teen_at("2026-03-11T06:00:00Z")));
    // In Tokyo (UTC+9) 22:00 local is 13:00 UTC.
    let tokyo_at = |s: &str| ctx_at(AgeBand::Teen, "Asia/Tokyo", at(s));
    assert!(!is_bedtime(&c, &tokyo_at("2026-03-10T12:59:00Z")));
    assert!(is_bedtime(&c, &tokyo_at("2026-03-10T13:00:00Z")));
    assert!(is_bedtime(&c, &tokyo_at("2026-03-10T20:59:00Z")));
    assert!(!is_bedtime(&c, &tokyo_at("2026-03-10T21:00:00Z")));
}

#[test]
fn a_bedtime_window_that_does_not_wrap_midnight() {
    // "HH:MM" and minutes of the day are both accepted.
    let c: WellbeingConfig =
        serde_json::from_str(r#"{"bedtime_start": "13:00", "bedtime_end": 900}"#).unwrap();
    c.validate().unwrap();
    assert_eq!(c.bedtime_end, TimeOfDay::new(15, 0).unwrap());
    let teen_at = |s: &str| ctx_at(AgeBand::Teen, "UTC", at(s));
    assert!(!is_bedtime(&c, &teen_at("2026-03-10T12:59:00Z")));
    assert!(is_bedtime(&c, &teen_at("2026-03-10T13:00:00Z")));
    assert!(is_bedtime(&c, &teen_at("2026-03-10T14:59:00Z")));
    assert!(!is_bedtime(&c, &teen_at("2026-03-10T15:00:00Z")));
    assert!(!is_bedtime(&c, &teen_at("2026-03-10T23:00:00Z")));
}

#[test]
fn an_unknown_time_zone_reads_as_utc_and_does_not_panic() {
    let gate = BedtimeGate::new(cfg());
    let late = ctx_at(AgeBand::Teen, "Mars/Olympus", at("2026-03-10T23:00:00Z"));
    assert_eq!(stop_kind(&check(&gate, &late)), Some(CardKind::Bedtime));
    let day = ctx_at(AgeBand::Teen, "Mars/Olympus", now());
    assert_eq!(local_time(&day), TimeOfDay::new(14, 0).unwrap());
    assert_eq!(check(&gate, &day), ThrottleAction::Pass);
}

// 3. Scroll cap.

#[test]
fn the_scroll_cap_stops_the_session_exactly_at_the_cap() {
    let gate = ScrollCapGate::new();
    let mut ctx = teen();
    ctx.wellbeing.session_items = 10_000;
    assert_eq!(check(&gate, &ctx), ThrottleAction::Pass, "no cap, no stop");
    ctx.parental.scroll_cap = Some(50);
    ctx.wellbeing.session_items = 49;
    assert_eq!(check(&gate, &ctx), ThrottleAction::Pass);
    ctx.wellbeing.session_items = 50;
    assert_eq!(stop_kind(&check(&gate, &ctx)), Some(CardKind::CaughtUp));
    let out = pipeline(cfg()).run(&ctx).unwrap();
    assert!(out.stopped && out.items.is_empty());
    assert_eq!(out.cards[0].kind, CardKind::CaughtUp);
    assert_eq!(out.cards[0].position, 0);
}

#[test]
fn the_page_before_a_count_cap_is_cut_to_what_the_cap_leaves() {
    let c = cfg();
    // (age, scroll cap, session items, items today) -> items served of the five.
    let cases = [
        (AgeBand::Adult, None, 0, 0, 5),
        (AgeBand::Adult, Some(50), 47, 0, 3),
        (AgeBand::Adult, Some(50), 45, 0, 5),
        (AgeBand::Adult, None, 0, c.teen_daily_items + 9, 5),
        (AgeBand::Teen, None, 0, c.teen_daily_items - 2, 2),
        (AgeBand::Teen, Some(50), 49, c.teen_daily_items - 2, 1),
        (AgeBand::Teen, Some(50), 40, c.teen_daily_items - 4, 4),
        (AgeBand::Teen, Some(50), 0, 0, 5),
    ];
    for (age, cap, session, today, want) in cases {
        let mut ctx = ctx_at(age, "UTC", now());
        ctx.parental.scroll_cap = cap;
        ctx.wellbeing.session_items = session;
        ctx.wellbeing.items_today = today;
        let out = pipeline(cfg()).run(&ctx).unwrap();
        assert!(!out.stopped);
        assert_eq!(
            out.items.len(),
            want,
            "{age:?} cap {cap:?} {session} {today}"
        );
        // The best items are kept, in order.
        let ids: Vec<&str> = out.items.iter().map(|i| i.id().as_str()).collect();
        let best: Vec<String> = (0..want).map(|i| format!("v{i}")).collect();
        assert_eq!(ids, best);
        let report = out.trace.stage("page_cap").unwrap();
        assert_eq!((report.input, report.output), (5, want));
    }
}

// 4. Check-in cadence.

fn in_session(mut ctx: FeedContext, session_minutes: i64) -> FeedContext {
    ctx.wellbeing.session_started = Some(minutes_before(ctx.now, session_minutes));
    ctx
}

#[test]
fn teens_get_a_checkin_every_20_minutes() {
    let t = CheckinThrottle::new(cfg());
    assert_eq!(checkin_interval(&cfg(), &teen()), 20.0);
    assert_eq!(check(&t, &in_session(teen(), 19)), ThrottleAction::Pass);
    let card = inserted(&check(&t, &in_session(teen(), 20)))
        .cloned()
        .unwrap();
    assert_eq!(card.kind, CardKind::Checkin);
    assert_eq!(card.position, 0);
}

#[test]
fn adults_get_a_checkin_every_30_minutes() {
    let t = CheckinThrottle::new(cfg());
    assert_eq!(checkin_interval(&cfg(), &adult()), 30.0);
    assert_eq!(check(&t, &in_session(adult(), 29)), ThrottleAction::Pass);
    assert_eq!(
        inserted(&check(&t, &in_session(adult(), 30))).unwrap().kind,
        CardKind::Checkin
    );
    // One millisecond short of 30 minutes is not yet due.
    let mut ctx = adult();
    ctx.wellbeing.session_started =
        Some(Timestamp::from_millisecond(ctx.now.as_millisecond() - 30 * 60_000 + 1).unwrap());
    assert_eq!(check(&t, &ctx), ThrottleAction::Pass);
}

#[test]
fn the_checkin_cadence_counts_from_the_last_checkin() {
    let t = CheckinThrottle::new(cfg());
    let mut ctx = in_session(adult(), 100);
    ctx.wellbeing.last_checkin = Some(minutes_before(ctx.now, 29));
    assert_eq!(check(&t, &ctx), ThrottleAction::Pass);
    ctx.wellbeing.last_checkin = Some(minutes_before(ctx.now, 30));
    assert!(inserted(&check(&t, &ctx)).is_some());

    // A check-in from an earlier session does not count: the new session starts the clock.
    let mut ctx = in_session(adult(), 10);
    ctx.wellbeing.last_checkin = Some(minutes_before(ctx.now, 180));
    assert_eq!(check(&t, &ctx), ThrottleAction::Pass);

    // No session, no check-in.
    let mut ctx = adult();
    ctx.wellbeing.last_checkin = Some(minutes_before(ctx.now, 180));
    assert_eq!(check(&t, &ctx), ThrottleAction::Pass);
}

#[test]
fn a_due_checkin_is_served_with_the_page() {
    let out = pipeline(cfg()).run(&in_session(adult(), 45)).unwrap();
    assert!(!out.stopped);
    assert_eq!(out.items.len(), 5);
    assert_eq!(out.cards.len(), 1);
    assert_eq!(out.cards[0].kind, CardKind::Checkin);
    assert_eq!(out.cards[0].position, 0);
}

// 5. Creation prompt.

#[test]
fn a_creation_prompt_appears_at_the_passive_streak_threshold_early_in_the_page() {
    let t = CreationPromptThrottle::new(cfg());
    let mut ctx = adult();
    ctx.wellbeing.passive_streak = 19;
    assert_eq!(check(&t, &ctx), ThrottleAction::Pass);
    ctx.wellbeing.passive_streak = 20;
    let out = pipeline(cfg()).run(&ctx).unwrap();
    assert_eq!(out.items.len(), 5);
    assert_eq!(out.cards.len(), 1);
    assert_eq!(out.cards[0].kind, CardKind::CreationPrompt);
    assert_eq!(out.cards[0].position, 1);
    // On an empty page the card still has a valid position.
    assert_eq!(inserted(&check(&t, &ctx)).unwrap().position, 0);
}

// 6. Break and lighter mode.

fn answered(mut ctx: FeedContext, answer: CheckinAnswer, minutes_ago: i64) -> FeedContext {
    ctx.wellbeing.last_answer = Some((answer, minutes_before(ctx.now, minutes_ago)));
    ctx
}

#[test]
fn a_break_is_offered_after_not_great_once_per_answer_per_session() {
    let t = BreakThrottle::new(cfg());
    let ctx = answered(in_session(adult(), 40), CheckinAnswer::NotGreat, 5);
    assert!(lighter_mode(&cfg(), &ctx));
    let card = inserted(&check(&t, &ctx)).cloned().unwrap();
    assert_eq!(card.kind, CardKind::Break);
    assert_eq!(card.position, 0);
    // The engine records the served card; the next page of the session does not repeat it.
    let mut later = ctx.clone();
    later.wellbeing.last_break = Some(ctx.now);
    later.now = minutes_before(ctx.now, -3);
    assert_eq!(check(&t, &later), ThrottleAction::Pass);
    assert_eq!(
        check(&BreakThrottle::new(cfg()), &later),
        ThrottleAction::Pass
    );
    assert!(lighter_mode(&cfg(), &later), "lighter mode itself stays on");
    // A new session while the answer is still recent gets one more offer.
    let mut next_session = later.clone();
    next_session.wellbeing.session_started = Some(later.now);
    assert!(inserted(&check(&t, &next_session)).is_some());
    next_session.wellbeing.last_break = Some(later.now);
    assert_eq!(check(&t, &next_session), ThrottleAction::Pass);
    // So does a new "not great" answer.
    let mut again = next_session;
    again.now = minutes_before(again.now, -10);
    let again = answered(again, CheckinAnswer::NotGreat, 1);
    assert!(inserted(&check(&t, &again)).is_some());
}

#[test]
fn no_break_after_great_okay_or_an_old_answer() {
    let t = BreakThrottle::new(cfg());
    for ctx in [
        answered(in_session(adult(), 40), CheckinAnswer::Great, 5),
        answered(in_session(adult(), 40), CheckinAnswer::Okay, 5),
        answered(in_session(adult(), 300), CheckinAnswer::NotGreat, 120),
        answered(in_session(adult(), 300), CheckinAnswer::NotGreat, 180),
        in_session(adult(), 40),
    ] {
        assert_eq!(check(&t, &ctx), ThrottleAction::Pass, "{:?}", ctx.wellbeing);
        assert!(!lighter_mode(&cfg(), &ctx));
    }
    // Just inside the window.
    let ctx = answered(in_session(adult(), 300), CheckinAnswer::NotGreat, 119);
    assert!(inserted(&check(&t, &ctx)).is_some());
}

#[test]
fn a_break_is_served_with_the_page_after_not_great() {
    let ctx = answered(in_session(teen(), 5), CheckinAnswer::NotGreat, 2);
    let p = pipeline(cfg());
    let out = p.run(&ctx).unwrap();
    assert_eq!(out.items.len(), 5);
    assert_eq!(
        out.cards.iter().map(|c| c.kind).collect::<Vec<_>>(),
        vec![CardKind::Break]
    );
    let mut served = ctx.clone();
    served.wellbeing.last_break = Some(ctx.now);
    let out = p.run(&served).unwrap();
    assert!(out.cards.is_empty(), "offered once: {:?}", out.cards);
}

fn topical(topics: &[&str], safety: &[SafetyLabel]) -> Video {
    let mut v = (*video("t")).clone();
    v.topics = topics.iter().map(|t| TopicId::new(t).unwrap()).collect();
    v.safety = safety.to_vec();
    v
}

#[test]
fn light_and_heavy_videos() {
    let c = cfg();
    let pets = topical(&["pets"], &[]);
    assert!(c.is_light(&pets) && !c.is_heavy(&pets));
    let politics = topical(&["politics", "comedy"], &[]);
    assert!(c.is_heavy(&politics) && !c.is_light(&politics));
    let labelled = topical(&["cooking"], &[SafetyLabel::Sensitive]);
    assert!(c.is_heavy(&labelled) && !c.is_light(&labelled));
    let neither = topical(&["tech"], &[]);
    assert!(!c.is_heavy(&neither) && !c.is_light(&neither));
}

// 7. λ(session).

#[test]
fn lambda_takes_the_documented_values() {
    let c = cfg();
    let close = |a: f32, b: f32| (a - b).abs() < 1e-4;
    assert!(close(consumption_lambda(&c, &adult()), 0.05));
    assert!(close(consumption_lambda(&c, &in_session(adult(), 60)), 0.5));
    let mut ctx = adult();
    ctx.wellbeing.passive_streak = 19;
    assert!(close(consumption_lambda(&c, &ctx), 0.05));
    ctx.wellbeing.passive_streak = 20;
    assert!(close(consumption_lambda(&c, &ctx), 0.25));
    assert!(close(
        consumption_lambda(&c, &in_session(adult(), 600)),
        0.8
    ));
    ctx.wellbeing.passive_streak = u32::MAX;
    assert!(close(consumption_lambda(&c, &ctx), 0.8));
}

fn lambda_config() -> impl Strategy<Value = WellbeingConfig> {
    (
        0.0f32..1.0,
        0.0f32..2.0,
        0.0f32..2.0,
        0.0f32..3.0,
        1u32..100,
    )
        .prop_map(
            |(base, per_hour, streak, extra, threshold)| WellbeingConfig {
                lambda_base: base,
                lambda_per_hour: per_hour,
                lambda_streak: streak,
                lambda_max: base + extra,
                passive_streak: threshold,
                ..WellbeingConfig::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lambda_is_monotone_capped_and_finite(
        c in lambda_config(),
        m1 in 0i64..2_000, dm in 0i64..2_000,
        s1 in 0u32..500, ds in 0u32..500,
    ) {
        c.validate().unwrap();
        let lam = |minutes: i64, streak: u32| {
            let mut ctx = in_session(adult(), minutes);
            ctx.wellbeing.passive_streak = streak;
            consumption_lambda(&c, &ctx)
        };
        let base = lam(m1, s1);
        prop_assert!(base.is_finite());
        prop_assert!(base >= 0.0 && base <= c.lambda_max);
        prop_assert!(base >= c.lambda_base.min(c.lambda_max) - 1e-6);
        prop_assert!(lam(m1 + dm, s1) >= base, "not monotone in minutes");
        prop_assert!(lam(m1, s1 + ds) >= base, "not monotone in streak");
        prop_assert!(lam(m1 + dm, s1 + ds) >= base);
    }

    #[test]
    fn whenever_a_gate_stops_the_pipeline_serves_no_items(
        teen in any::<bool>(),
        tz in prop::sample::select(vec!["UTC", "Asia/Tokyo", "America/New_York", "Europe/Paris", "Mars/Olympus"]),
        second in 1_780_000_000i64..1_780_000_000 + 3 * 86_400,
        minutes_today in 0.0f32..120.0,
        items_today in 0u32..400,
        session_items in 0u32..200,
        session_minutes in prop::option::of(0i64..120),
        passive_streak in 0u32..40,
        scroll_cap in prop::option::of(1u32..150),
        daily_limit in prop::option::of(1u32..120),
    ) {
        let age = if teen { AgeBand::Teen } else { AgeBand::Adult };
        let mut ctx = ctx_at(age, tz, Timestamp::from_second(second).unwrap());
        ctx.wellbeing.minutes_today = minutes_today;
        ctx.wellbeing.items_today = items_today;
        ctx.wellbeing.session_items = session_items;
        ctx.wellbeing.session_started = session_minutes.map(|m| minutes_before(ctx.now, m));
        ctx.wellbeing.passive_streak = passive_streak;
        ctx.parental.scroll_cap = scroll_cap;
        ctx.parental.daily_limit_minutes = daily_limit;

        let c = cfg();
        let c_items = c.teen_daily_items;
        let gates: [Box<dyn Throttle>; 3] = [
            Box::new(DailyLimitGate::new(c.clone())),
            Box::new(BedtimeGate::new(c.clone())),
            Box::new(ScrollCapGate::new()),
        ];
        let first_stop = gates.iter().find_map(|g| stop_kind(&g.check(&ctx, &[]).unwrap()));
        let out = pipeline(c).run(&ctx).unwrap();
        match first_stop {
            Some(kind) => {
                prop_assert!(out.items.is_empty());
                prop_assert!(out.stopped);
                prop_assert_eq!(out.cards.len(), 1);
                prop_assert_eq!(out.cards[0].kind, kind);
            }
            None => {
                prop_assert!(!out.stopped);
                // What the count caps leave, at most the five proposed.
                let mut left = 5u32;
                if let Some(cap) = scroll_cap {
                    left = left.min(cap - session_items);
                }
                if teen {
                    left = left.min(c_items - items_today);
                }
                prop_assert_eq!(out.items.len(), left as usize);
                prop_assert!(out.cards.iter().all(|c| !matches!(
                    c.kind,
                    CardKind::LimitReached | CardKind::Bedtime | CardKind::CaughtUp
                )));
            }
        }
    }
}

// 9. Config.

#[test]
fn the_default_config_is_valid_and_round_trips_through_json() {
    let c = cfg();
    c.validate().unwrap();
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["bedtime_start"], "22:00");
    assert_eq!(json["bedtime_end"], "06:00");
    assert_eq!(json["teen_daily_minutes"], 60);
    let back: WellbeingConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, c);

    let partial: WellbeingConfig = serde_json::from_str(r#"{"teen_daily_minutes": 45}"#).unwrap();
    assert_eq!(partial.teen_daily_minutes, 45);
    assert_eq!(partial.checkin_minutes, c.checkin_minutes);
}

#[test]
fn config_json_rejects_unknown_fields_and_bad_times() {
    for bad in [
        r#"{"teen_daily_minute": 45}"#,
        r#"{"bedtime_start": "25:00"}"#,
        r#"{"bedtime_start": "7:00"}"#,
        r#"{"bedtime_start": "22:60"}"#,
        r#"{"bedtime_start": "late"}"#,
        r#"{"bedtime_start": 1440}"#,
        r#"{"bedtime_start": -1}"#,
    ] {
        assert!(
            serde_json::from_str::<WellbeingConfig>(bad).is_err(),
            "accepted {bad}"
        );
    }
}

#[test]
fn validation_rejects_nonsense_naming_the_field() {
    let field = |tweak: fn(&mut WellbeingConfig)| {
        let mut c = cfg();
        tweak(&mut c);
        c.validate().unwrap_err().field()
    };
    assert_eq!(
        field(|c| c.teen_daily_minutes = 0),
        Some("teen_daily_minutes")
    );
    assert_eq!(
        field(|c| c.teen_daily_minutes = 24 * 60 + 1),
        Some("teen_daily_minutes")
    );
    assert_eq!(field(|c| c.teen_daily_items = 0), Some("teen_daily_items"));
    assert_eq!(field(|c| c.checkin_minutes = 0), Some("checkin_minutes"));
    assert_eq!(
        field(|c| c.teen_checkin_minutes = 0),
        Some("teen_checkin_minutes")
    );
    assert_eq!(field(|c| c.passive_streak = 0), Some("passive_streak"));
    assert_eq!(
        field(|c| c.creation_prompt_position = 1_000),
        Some("creation_prompt_position")
    );
    assert_eq!(field(|c| c.not_great_hours = -1.0), Some("not_great_hours"));
    assert_eq!(field(|c| c.lambda_base = -0.1), Some("lambda_base"));
    assert_eq!(
        field(|c| c.lambda_per_hour = f32::INFINITY),
        Some("lambda_per_hour")
    );
    assert_eq!(field(|c| c.lambda_max = 0.01), Some("lambda_max"));
    assert_eq!(
        field(|c| c.bedtime_end = c.bedtime_start),
        Some("bedtime_end")
    );
    assert_eq!(
        field(|c| c.light_topics.push("Not A Topic".into())),
        Some("light_topics")
    );
    assert_eq!(
        field(|c| c.heavy_topics.push(String::new())),
        Some("heavy_topics")
    );
    assert_eq!(
        field(|c| c.heavy_topics.push("pets".into())),
        Some("light_topics")
    );

    let mut c = cfg();
    c.lambda_streak = f32::NAN;
    assert!(matches!(
        c.validate(),
        Err(Error::NonFinite {
            field: "lambda_streak",
            ..
        })
    ));
    c.lambda_streak = 20.0;
    assert!(matches!(
        c.validate(),
        Err(Error::OutOfRange {
            field: "lambda_streak",
            ..
        })
    ));
}

#[test]
fn times_of_day_parse_and_print() {
    assert_eq!(TimeOfDay::parse("06:30").unwrap().minutes(), 390);
    assert_eq!(TimeOfDay::from_minutes(1439).unwrap().to_string(), "23:59");
    assert!(TimeOfDay::from_minutes(1440).is_err());
    assert!(TimeOfDay::parse("24:00").is_err());
    assert!(TimeOfDay::new(23, 60).is_err());
}

#[test]
fn throttles_have_short_stable_names() {
    let c = cfg();
    let names = [
        DailyLimitGate::new(c.clone()).name(),
        BedtimeGate::new(c.clone()).name(),
        ScrollCapGate::new().name(),
        PageCapThrottle::new(c.clone()).name(),
        CheckinThrottle::new(c.clone()).name(),
        CreationPromptThrottle::new(c.clone()).name(),
        BreakThrottle::new(c).name(),
    ];
    assert_eq!(
        names,
        [
            "daily_limit",
            "bedtime",
            "scroll_cap",
            "page_cap",
            "checkin",
            "creation_prompt",
            "break"
        ]
    );
}

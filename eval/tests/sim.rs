#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The closed-loop simulation through the real engine (the language model fetched by
//! `make setup`), and the violation checks it relies on.

use std::sync::OnceLock;

use steerfeed::world::{Revocation, World, WorldConfig};
use steerfeed::{Concept, Config, ConsentScope, Constraints};
use steerfeed_eval::sim::{Ground, Policy, SimOptions, SimReport, simulate};

fn opts(policy: Policy) -> SimOptions {
    let mut o = SimOptions::new(60, 600, 2, 42, policy);
    o.progress = false;
    o
}

fn creation_run() -> &'static SimReport {
    static R: OnceLock<SimReport> = OnceLock::new();
    R.get_or_init(|| simulate(&Config::default(), &opts(Policy::Creation)).unwrap())
}

#[test]
fn a_closed_loop_run_breaks_no_rule_and_steers() {
    let r = creation_run();
    assert!(r.sessions > 0 && r.items_served > 0, "{r:?}");
    assert_eq!(r.session_minutes.len(), r.sessions);
    assert_eq!(r.consent_violations, 0);
    assert_eq!(r.teen_limit_violations, 0);
    // Teens did reach a gate (bedtime or a daily limit), so the teen zero was exercised.
    assert!(r.gates > 0, "no gate fired: {r:?}");
    assert_eq!(r.hard_exclusion_violations, 0);
    // Revocations did happen during the run, so the consent zero covers them.
    assert!(r.revocations_during_run > 0);
    // Some sessions were long enough for a check-in card.
    assert!(r.checkins_shown > 0);
    // Preference users see more of what they asked for after asking.
    assert!(r.steering.users > 0 && r.steering.items_before > 0 && r.steering.items_after > 0);
    assert!(r.steering.after >= r.steering.before, "{:?}", r.steering);
    assert!(r.creation_actions > 0);
    assert!(r.diversity > 1.0);
}

fn engagement_run() -> &'static SimReport {
    static R: OnceLock<SimReport> = OnceLock::new();
    R.get_or_init(|| simulate(&Config::default(), &opts(Policy::Engagement)).unwrap())
}

#[test]
fn the_engagement_policy_breaks_no_rule_either_and_ranks_differently() {
    let engagement = engagement_run();
    assert_eq!(engagement.consent_violations, 0);
    assert_eq!(engagement.teen_limit_violations, 0);
    assert_eq!(engagement.hard_exclusion_violations, 0);
    // Same world, same people, another objective: the runs part ways.
    let creation = creation_run();
    assert_ne!(
        (creation.items_served, creation.creation_actions),
        (engagement.items_served, engagement.creation_actions)
    );
}

/// What the creation heads' feature lifts change: the creation policy serves more items
/// in a remix chain than the engagement policy, which does not weigh remixes.
#[test]
fn the_creation_policy_serves_more_remix_chain_items_than_the_engagement_policy() {
    let creation = creation_run();
    let engagement = engagement_run();
    assert!(
        creation.remix_chain_share > engagement.remix_chain_share,
        "remix-chain share: creation {} engagement {}",
        creation.remix_chain_share,
        engagement.remix_chain_share
    );
}

/// The design's target: more creation per session hour than the engagement policy. With
/// the creation lifts it holds at 300 users / 3,000 videos
/// (seed 42: 1.46 vs 1.33 creation actions per session hour) and on average at 150 /
/// 1,500 (seeds 1–5: mean 1.47 vs 1.30, but only 3 of 5 seeds), not at this test's
/// scale (60 users, ~40 creation actions a run, where the draw's noise is larger than
/// the effect), and a larger run is too slow for a debug test. Run it with `--ignored`
/// after changing the scorer; measure with `steerfeed eval simulate`.
#[test]
#[ignore = "at the test's 60-user scale noise exceeds the effect; measured at 150 and 300 users instead"]
fn the_creation_policy_raises_creation_over_the_engagement_policy() {
    let creation = creation_run();
    let engagement = engagement_run();
    assert!(
        creation.creation_per_hour > engagement.creation_per_hour,
        "creation {} engagement {}",
        creation.creation_per_hour,
        engagement.creation_per_hour
    );
}

#[test]
fn bad_options_are_errors() {
    let mut o = opts(Policy::Creation);
    o.users = 0;
    assert!(simulate(&Config::default(), &o).is_err());
    let mut o = opts(Policy::Creation);
    o.page = 0;
    assert!(simulate(&Config::default(), &o).is_err());
    for e in [-0.1, 1.5, f32::NAN] {
        let mut o = opts(Policy::Creation);
        o.explore = Some(e);
        let err = simulate(&Config::default(), &o).unwrap_err().to_string();
        assert!(err.contains("explore"), "{err}");
    }
    // A kept store must be a new one: a run never loads its world into another's.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), b"x").unwrap();
    let mut o = opts(Policy::Creation);
    o.store = Some(dir.path().to_path_buf());
    let err = simulate(&Config::default(), &o).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("data")).unwrap(), b"x");
}

fn world() -> World {
    World::generate(WorldConfig::new(5, 40, 400))
}

#[test]
fn a_served_revoked_video_is_detected() {
    let w = world();
    let mut g = Ground::of(&w);
    // A video featuring someone whose consent covers it now.
    let v = w
        .videos
        .iter()
        .find(|v| v.cameos.iter().any(|p| *p != v.creator) && !g.consent_violation(&v.id))
        .expect("a consenting cameo video");
    let person = v.cameos.iter().find(|p| **p != v.creator).unwrap().clone();
    g.revoke(&Revocation::Video {
        person: person.clone(),
        video: v.id.clone(),
    });
    assert!(g.consent_violation(&v.id));

    // A creator-wide revocation covers the creator's other videos featuring the person.
    let mut g = Ground::of(&w);
    g.revoke(&Revocation::Creator {
        person,
        creator: v.creator.clone(),
    });
    assert!(g.consent_violation(&v.id));

    // A person who never consented makes any video featuring them a violation.
    let mut g = Ground::of(&w);
    let featured = v.cameos.iter().find(|p| **p != v.creator).unwrap();
    g.scopes.insert(featured.clone(), ConsentScope::Nobody);
    assert!(g.consent_violation(&v.id));
    // Unknown videos are never taken as fine.
    assert!(g.consent_violation(&steerfeed::VideoId::new("nope").unwrap()));
}

#[test]
fn a_served_excluded_topic_is_detected() {
    let w = world();
    let g = Ground::of(&w);
    let v = &w.videos[0];
    let topic = v.topics[0].clone();
    let exclude = Constraints {
        exclude: vec![Concept {
            topic: Some(topic.clone()),
            phrase: None,
            expires_at: None,
            description: None,
        }],
        ..Constraints::default()
    };
    assert!(g.exclusion_violation(&v.id, &exclude));
    let other = w
        .videos
        .iter()
        .find(|x| !x.topics.contains(&topic))
        .unwrap();
    assert!(!g.exclusion_violation(&other.id, &exclude));
    let only = Constraints {
        only: vec![Concept {
            topic: Some(topic),
            phrase: None,
            expires_at: None,
            description: None,
        }],
        ..Constraints::default()
    };
    assert!(!g.exclusion_violation(&v.id, &only));
    assert!(g.exclusion_violation(&other.id, &only));
}

/// Exploration never bypasses a rule: with every slot drawn at random among the
/// candidates that may take it, a closed-loop run still breaks no consent, teen limit
/// or hard exclusion, and its impression log holds the draws' propensities.
#[test]
fn a_fully_explored_run_breaks_no_rule_and_logs_its_propensities() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.rank.selector.explore = 1.0;
    config.rank.selector.explore_max_exposures = 1e9;
    let mut o = opts(Policy::Creation);
    o.store = Some(dir.path().join("store"));
    let r = simulate(&config, &o).unwrap();
    assert!(r.items_served > 0);
    assert_eq!(r.consent_violations, 0);
    assert_eq!(r.teen_limit_violations, 0);
    assert_eq!(r.hard_exclusion_violations, 0);
    assert!(r.revocations_during_run > 0 && r.gates > 0, "{r:?}");
    assert_ne!(r.items_served, 0);

    let mut c = Config::default();
    c.store.path = dir.path().join("store");
    let engine = steerfeed::Engine::open(c).unwrap();
    let (mut items, mut drawn) = (0usize, 0usize);
    engine
        .for_each_labeled_impression(steerfeed::Timestamp::UNIX_EPOCH, &mut |row| {
            items += 1;
            assert!(row.propensity > 0.0 && row.propensity <= 1.0);
            drawn += usize::from(row.propensity < 1.0);
            Ok(())
        })
        .unwrap();
    assert_eq!(items as u64, r.items_served, "every served item is logged");
    assert!(
        drawn * 10 > items * 9,
        "{drawn} of {items} slots were drawn"
    );
}

/// One seed replays one run: the same options give the same sessions, the same served
/// items and the same reactions (the graph is built once, by one thread).
#[test]
fn a_seed_replays_its_run() {
    let mut o = opts(Policy::Creation);
    o.days = 1;
    o.users = 40;
    o.videos = 400;
    let run = || {
        let mut r = simulate(&Config::default(), &o).unwrap();
        r.seconds = 0.0;
        r
    };
    let (a, b) = (run(), run());
    assert!(a.items_served > 0 && a.sessions > 0);
    assert_eq!(a, b);
    o.seed += 1;
    let mut c = simulate(&Config::default(), &o).unwrap();
    c.seconds = 0.0;
    assert_ne!(a, c, "another seed is another run");
}

/// Every item a run of `config` at exploration rate `eps` served, with its outcomes.
fn logged_run(config: &Config, eps: f32) -> Vec<steerfeed::LabeledImpression> {
    let mut o = opts(Policy::Creation);
    o.explore = Some(eps);
    let (_, rows) = steerfeed_eval::sim::simulate_then(config, &o, |engine| {
        let mut rows = Vec::new();
        engine.for_each_labeled_impression(steerfeed::Timestamp::MIN, &mut |r| {
            rows.push(r);
            Ok(())
        })?;
        Ok(rows)
    })
    .unwrap();
    rows
}

/// The off-policy estimate of another exploration rate, read off one run's impression
/// log: every explorable slot's logged propensity is its draw's probability at the
/// logged rate, every page weighs 1 at that rate, and the page-by-page estimate for
/// ε = 0.5 from a run at ε = 0.3 agrees with the run at 0.5 within the noise of both. (The slot-by-slot estimate holds each
/// page's earlier slots as logged; the simulated people tire of repeated topics, so it
/// reads exploration as costlier than the other run finds it: see eval/README.md.)
#[test]
fn an_off_policy_estimate_agrees_with_the_other_rates_own_run() {
    use steerfeed_eval::offpolicy::{Reward, estimate, estimate_pages, on_policy_pages};
    let run = |eps: f32| logged_run(&Config::default(), eps);
    let (logged_rows, other_rows) = (run(0.3), run(0.5));
    let explorable = logged_rows.iter().filter(|r| r.draw.is_some()).count();
    assert!(
        explorable * 2 > logged_rows.len(),
        "{explorable} of {}",
        logged_rows.len()
    );
    for r in logged_rows.iter().filter(|r| r.draw.is_some()) {
        let p = r.draw.unwrap().probability(0.3);
        assert!((p - f64::from(r.propensity)).abs() < 1e-5, "{r:?}");
    }
    let reward = Reward::CompleteView;
    // Slot by slot: greedy slots weigh (1 − 0.5)/(1 − 0.3), drawn ones 0.5/0.3.
    let slots = estimate(&logged_rows, 0.5, reward).unwrap();
    assert!((slots.max_weight - 0.5 / 0.3).abs() < 0.01, "{slots:?}");
    assert!(
        slots.effective_units > 0.8 * slots.units as f64,
        "{slots:?}"
    );
    // Page by page: at the logged rate every page weighs 1 (an exact check of the
    // logged propensities against the draws); at 0.5, against the other rate's own pages
    // (a check of the wiring end to end: in this small world the interval is wide).
    let same = estimate_pages(&logged_rows, 0.3, reward).unwrap();
    let own = on_policy_pages(&logged_rows, reward).unwrap();
    assert!((same.value - own.value).abs() < 1e-6, "{same:?} {own:?}");
    assert!((same.max_weight - 1.0).abs() < 1e-5, "{same:?}");
    let est = estimate_pages(&logged_rows, 0.5, reward).unwrap();
    let other = on_policy_pages(&other_rows, reward).unwrap();
    assert!(est.effective_units > 0.05 * est.units as f64, "{est:?}");
    let noise = est.std_error.hypot(other.std_error);
    assert!(
        (est.value - other.value).abs() < 3.0 * noise,
        "estimate {est:?} against the run {other:?}"
    );
}

/// A profile that ranks differently (other weights), scored beside the serving one as
/// its shadow: every slot of the logged pages has a draw whose probability under the
/// serving mixture is the logged propensity, some slots served the shadow's pick where
/// the serving profile would not have, and the slot-by-slot estimate of the shadow
/// agrees with what the shadow earns in a run of its own, within the noise of both. (In
/// this small world these weights move the rewards little; the estimator's accuracy
/// against a known truth is `offpolicy.rs`'s unit tests.)
#[test]
fn a_shadow_profiles_estimate_agrees_with_its_own_run() {
    use steerfeed_eval::offpolicy::{Reward, Target, estimate, on_policy};
    let run = |config: &Config| logged_run(config, 0.1);
    let (weights, reward, share) = ("complete_view = -10.0", Reward::CompleteView, 0.6);
    let mut logged = Config::default();
    logged.profiles.insert(
        "other".into(),
        steerfeed::ProfileConfig {
            rank: toml::from_str(&format!("[scorer.weights]\n{weights}\n")).unwrap(),
            model: None,
        },
    );
    logged.learning.shadow = Some("other".into());
    logged.learning.shadow_share = share;
    logged.validate().unwrap();
    let own = Config {
        rank: logged.profile_rank("other").unwrap(),
        ..Config::default()
    };
    let (rows, other_rows) = (run(&logged), run(&own));

    assert!(!rows.is_empty());
    let mut shadow_only = 0;
    for r in &rows {
        let sh = r.shadow.as_ref().expect("every page names its shadow");
        assert_eq!((sh.profile.as_str(), sh.share), ("other", share));
        let d = r.draw.expect("every slot beside a shadow has a draw");
        let p = d.logged_probability(0.1, f64::from(share));
        assert!((p - f64::from(r.propensity)).abs() < 1e-5, "{r:?}");
        shadow_only += usize::from(d.shadow_greedy && !d.greedy && !d.in_draw);
    }
    assert!(
        shadow_only * 20 > rows.len(),
        "{shadow_only} of {}",
        rows.len()
    );
    assert!(other_rows.iter().all(|r| r.shadow.is_none()));

    let est = estimate(&rows, Target::Shadow(0.1), reward).unwrap();
    let truth = on_policy(&other_rows, reward).unwrap();
    let logged_value = on_policy(&rows, reward).unwrap();
    assert!(
        est.max_weight > 1.0 && est.max_weight.is_finite(),
        "{est:?}"
    );
    assert!(est.effective_units < est.units as f64, "{est:?}");
    let noise = est.std_error.hypot(truth.std_error);
    assert!(
        (est.value - truth.value).abs() < 3.0 * noise,
        "{weights}: estimate {est:?} against its own run {truth:?} (logged {logged_value:?})"
    );
}

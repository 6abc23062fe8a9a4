//! The impression log end to end, on a real store, index and model: every served item
//! is logged with what made its score, and joined to what its viewer did next.
//!
//! 1. Each served item is in the log, in page order, under the response's request id,
//!    with its source and score terms, and with head inputs from which the configured
//!    heads' formula gives back the served probabilities.
//! 2. Events about a served video within the outcome window are its outcomes; later
//!    ones, and events about videos not served, are nobody's.
//! 3. An erased person's impressions leave the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use steerfeed::demo::load_world;
use steerfeed::rank::scorers::ScorerConfig;
use steerfeed::world::{World, WorldConfig};
use steerfeed::{
    Config, Engine, Event, EventKey, EventKind, FeedRequest, LabeledImpression, OwnVideos,
    Timestamp, UserId, VideoId,
};

fn engine(dir: &std::path::Path) -> (Engine, World) {
    let mut c = Config::default();
    c.store.path = dir.to_path_buf();
    let mut wc = WorldConfig::new(23, 60, 600);
    wc.events_per_user = 10;
    let w = World::generate(wc);
    let engine = Engine::open(c).unwrap_or_else(|e| panic!("{e}"));
    load_world(&engine, &w, 500).unwrap();
    (engine, w)
}

fn labeled(engine: &Engine, since: Timestamp) -> Vec<LabeledImpression> {
    let mut rows = Vec::new();
    engine
        .for_each_labeled_impression(since, &mut |r| {
            rows.push(r);
            Ok(())
        })
        .unwrap();
    rows
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The probability of head `a` from the logged inputs and the configured coefficients
/// (the formula of the scorer's documentation, written out here).
fn head_probability(cfg: &ScorerConfig, row: &LabeledImpression, a: usize) -> f32 {
    let (_, h) = cfg.heads.all()[a];
    let x = &row.inputs;
    let on = |b: bool| f32::from(u8::from(b));
    let invite = match a {
        0 => cfg.lifts.followed_creator * on(x.followed),
        1 => cfg.lifts.remix_chain * on(x.remix_chain),
        2 => cfg.lifts.friend_cameo * on(x.friend_cameo),
        _ => 0.0,
    };
    sigmoid(
        x.prior[a]
            + h.interest * x.interest
            + h.tie * x.tie
            + h.co_engagement * x.co_engagement
            + h.creator * x.creator[a]
            + invite,
    )
}

#[test]
fn served_items_are_logged_with_what_made_their_scores_and_joined_to_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, w) = engine(dir.path());
    let now = w.config.now;
    let cfg = engine.config().rank.scorer;

    // Pages for several people; remember what each response served.
    let mut served = Vec::new();
    let mut ids = Vec::new();
    for s in w.users.iter().take(8) {
        let req = FeedRequest::new(s.user.id.clone(), 10).unwrap().at(now);
        let r = engine.feed(&req).unwrap();
        if r.items.is_empty() {
            continue;
        }
        assert!(!r.request_id.is_empty());
        ids.push(r.request_id.clone());
        served.push((s.user.id.clone(), r));
    }
    assert!(served.len() >= 5, "enough people were served");
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "request ids are distinct");

    let rows = labeled(&engine, now);
    let want: Vec<(String, UserId, VideoId, u32)> = served
        .iter()
        .flat_map(|(u, r)| {
            r.items
                .iter()
                .enumerate()
                .map(move |(i, it)| (r.request_id.clone(), u.clone(), it.video.clone(), i as u32))
        })
        .collect();
    let got: Vec<(String, UserId, VideoId, u32)> = rows
        .iter()
        .map(|r| {
            (
                r.request.clone(),
                r.user.clone(),
                r.video.clone(),
                r.position,
            )
        })
        .collect();
    assert_eq!(
        got, want,
        "every served item, in page order, under its request"
    );
    let by_item: HashMap<(&str, &VideoId), &steerfeed::FeedItem> = served
        .iter()
        .flat_map(|(_, r)| {
            r.items
                .iter()
                .map(move |it| ((r.request_id.as_str(), &it.video), it))
        })
        .collect();
    let mut checked = 0;
    for row in &rows {
        let item = by_item[&(row.request.as_str(), &row.video)];
        assert_eq!(row.source, item.source);
        assert_eq!(row.breakdown, item.breakdown, "the score terms as served");
        assert_eq!(row.profile, "default");
        assert_eq!(row.propensity, 1.0);
        assert_eq!(row.at, now);
        let served_p = row.breakdown.actions.heads();
        for (a, &sp) in served_p.iter().enumerate() {
            if a == 5 && row.inputs.followed {
                assert_eq!(sp, 0.0, "nobody follows a creator twice");
                continue;
            }
            let want = head_probability(&cfg, row, a);
            assert!(
                (want - sp).abs() <= 1e-5 * want.max(1e-3),
                "head {a} of {}: {want} from the logged inputs, {sp} served",
                row.video
            );
            checked += 1;
        }
    }
    assert!(checked >= 200, "{checked} head probabilities checked");
    assert!(
        rows.iter()
            .all(|r| r.outcomes == steerfeed::Outcomes::default())
    );

    // Outcomes: the first person's first three items.
    let (user, page) = &served[0];
    let v = |i: usize| page.items[i].video.clone();
    let at = |secs: i64| Timestamp::from_second(now.as_second() + secs).unwrap();
    let ev = |key: &str, secs: i64, kind: EventKind| Event {
        key: EventKey::new(key).unwrap(),
        user: user.clone(),
        at: at(secs),
        kind,
    };
    let unserved = w
        .videos
        .iter()
        .map(|x| x.id.clone())
        .find(|id| !page.items.iter().any(|it| &it.video == id))
        .unwrap();
    let window = engine.config().learning.outcome_window_s as i64;
    engine
        .ingest_events(&[
            ev("o1", 10, EventKind::Like { video: v(0) }),
            ev(
                "o2",
                20,
                EventKind::View {
                    video: v(0),
                    watch_ms: 9_000,
                    completed: true,
                },
            ),
            ev("o3", window + 60, EventKind::Like { video: v(1) }),
            ev("o4", 5, EventKind::Skip { video: v(2) }),
            ev(
                "o5",
                30,
                EventKind::Remix {
                    video: v(2),
                    new_video: None,
                },
            ),
            ev(
                "o6",
                15,
                EventKind::Like {
                    video: unserved.clone(),
                },
            ),
        ])
        .unwrap();
    let rows = labeled(&engine, now);
    let of = |video: &VideoId| {
        rows.iter()
            .find(|r| &r.user == user && &r.video == video)
            .unwrap()
            .outcomes
    };
    let o0 = of(&v(0));
    assert!(o0.like && o0.view && o0.complete_view && o0.watch_ms == 9_000);
    assert!(!o0.skip && !o0.remix);
    assert_eq!(
        of(&v(1)),
        steerfeed::Outcomes::default(),
        "after the window"
    );
    let o2 = of(&v(2));
    assert!(o2.skip && o2.remix && !o2.like);
    assert_eq!(
        o2.heads(),
        [false, true, false, false, false, false, false, false]
    );
    assert!(
        rows.iter()
            .filter(|r| &r.user != user)
            .all(|r| r.outcomes == steerfeed::Outcomes::default()),
        "another person's items get nothing of these"
    );
    assert!(!rows.iter().any(|r| r.video == unserved && &r.user == user));

    // `since` leaves earlier pages out.
    assert!(labeled(&engine, at(1)).is_empty());

    // Erasure.
    engine.erase_user(user, OwnVideos::Keep).unwrap();
    let rows = labeled(&engine, now);
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| &r.user != user),
        "the erased person's pages left"
    );
}

/// FNV-1a, 64-bit (the published constants), as the oracle of experiment assignment.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// MurmurHash3's 64-bit finaliser (the published constants).
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ceb9fe1a85ec53);
    k ^ (k >> 33)
}

/// The profile a user falls in: their mixed hash's place in [0, 1) against the
/// cumulative shares in name order.
fn assigned(salt: &str, user: &str, shares: &[(&str, f64)]) -> String {
    let h = fmix64(fnv1a(&[salt.as_bytes(), &[0], user.as_bytes()]));
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    let mut edge = 0.0;
    for (name, share) in shares {
        edge += share;
        if u < edge {
            return (*name).to_owned();
        }
    }
    "default".to_owned()
}

fn creation(r: &steerfeed::FeedResponse) -> f32 {
    r.items
        .iter()
        .map(|i| {
            let a = &i.breakdown.actions;
            a.create + a.remix + a.cameo_use
        })
        .sum()
}

#[test]
fn profiles_serve_by_experiment_assignment_or_by_name_and_override_the_ranking() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.store.path = dir.path().to_path_buf();
    let heavy: toml::Table = toml::from_str(
        "[scorer.weights]\ncreate = 60.0\nremix = 60.0\ncameo_use = 60.0\nlike = 0.0\ncomplete_view = 0.0\n",
    )
    .unwrap();
    c.profiles.insert(
        "creation_heavy".into(),
        steerfeed::ProfileConfig {
            rank: heavy,
            model: None,
        },
    );
    c.profiles
        .insert("b_side".into(), steerfeed::ProfileConfig::default());
    let shares = [("b_side", 0.2), ("creation_heavy", 0.3)];
    c.experiment = Some(steerfeed::ExperimentConfig {
        salt: "exp-7".into(),
        shares: shares.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect(),
    });

    // Configuration mistakes are refused with their reason.
    let mut bad = c.clone();
    bad.experiment
        .as_mut()
        .unwrap()
        .shares
        .insert("b_side".into(), 0.9);
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("more than 1")
    );
    let mut bad = c.clone();
    bad.experiment
        .as_mut()
        .unwrap()
        .shares
        .insert("nope".into(), 0.1);
    assert!(bad.validate().unwrap_err().to_string().contains("nope"));
    let mut bad = c.clone();
    bad.profiles.get_mut("b_side").unwrap().rank =
        toml::from_str("[scorer.weights]\ncreat = 1.0\n").unwrap();
    assert!(bad.validate().unwrap_err().to_string().contains("b_side"));
    let mut bad = c.clone();
    bad.profiles
        .insert("default".into(), steerfeed::ProfileConfig::default());
    assert!(bad.validate().is_err());
    // No profile weakens a rule.
    for rule in [
        "[wellbeing]\nteen_daily_minutes = 600\n",
        "[selector]\nteen_sensitive_cap = 5\n",
        "[filters]\n",
        "[trending]\n",
    ] {
        let mut bad = c.clone();
        bad.profiles.get_mut("b_side").unwrap().rank = toml::from_str(rule).unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains("cannot differ by profile"), "{rule}: {e}");
    }

    let mut wc = WorldConfig::new(5, 60, 600);
    wc.events_per_user = 10;
    let w = World::generate(wc);
    let engine = Engine::open(c).unwrap_or_else(|e| panic!("{e}"));
    load_world(&engine, &w, 500).unwrap();
    assert_eq!(engine.profiles(), ["default", "b_side", "creation_heavy"]);
    let now = w.config.now;

    // Assignment: deterministic, the oracle's, and about the shares.
    let mut counts = HashMap::new();
    for i in 0..6_000 {
        let user = format!("someone-{i}");
        let req = FeedRequest::new(UserId::new(&user).unwrap(), 5).unwrap();
        let got = engine.profile_for(&req).unwrap().to_owned();
        assert_eq!(got, assigned("exp-7", &user, &shares), "{user}");
        assert_eq!(
            engine.profile_for(&req).unwrap(),
            got,
            "the same every time"
        );
        *counts.entry(got).or_insert(0usize) += 1;
    }
    for (name, share) in [("b_side", 0.2), ("creation_heavy", 0.3), ("default", 0.5)] {
        let got = counts[name] as f64 / 6_000.0;
        assert!(
            (got - share).abs() < 0.03,
            "{name}: {got} of users, share {share}"
        );
    }

    // Served: each person by their profile, named in the response and the impressions.
    for s in w.users.iter().take(20) {
        let req = FeedRequest::new(s.user.id.clone(), 10).unwrap().at(now);
        let r = engine.feed(&req).unwrap();
        assert_eq!(r.profile, assigned("exp-7", s.user.id.as_str(), &shares));
    }
    for row in labeled(&engine, now) {
        assert_eq!(row.profile, assigned("exp-7", row.user.as_str(), &shares));
    }

    // A request may name a profile; the heavy creation weights pick more of what people
    // make things from.
    let (mut heavy_creation, mut default_creation) = (0.0, 0.0);
    for s in w.users.iter().skip(20).take(25) {
        let later = Timestamp::from_second(now.as_second() + 60).unwrap();
        let req = |p: &str| {
            FeedRequest::new(s.user.id.clone(), 10)
                .unwrap()
                .at(later)
                .with_profile(p)
                .unwrap()
        };
        let h = engine.preview(&req("creation_heavy"), None).unwrap().page;
        let d = engine.preview(&req("default"), None).unwrap().page;
        assert_eq!(
            (h.profile.as_str(), d.profile.as_str()),
            ("creation_heavy", "default")
        );
        heavy_creation += creation(&h);
        default_creation += creation(&d);
    }
    assert!(
        heavy_creation > default_creation,
        "creation probability served: heavy {heavy_creation}, default {default_creation}"
    );
    let unknown = FeedRequest::new(w.users[0].user.id.clone(), 5)
        .unwrap()
        .with_profile("nope")
        .unwrap();
    assert!(
        engine
            .feed(&unknown)
            .unwrap_err()
            .to_string()
            .contains("nope")
    );
    assert!(
        FeedRequest::new(w.users[0].user.id.clone(), 5)
            .unwrap()
            .with_profile("no spaces")
            .is_err()
    );

    // Each profile holds its own model.
    assert_eq!(
        engine.model_info_for("creation_heavy").unwrap().id,
        "hand-set"
    );
    assert!(engine.rollback_model_for("b_side").is_err());
}

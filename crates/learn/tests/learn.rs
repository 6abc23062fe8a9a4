//! Training from the engine's own logs, end to end on a real store, index and model: a
//! preference planted in a seeded world's outcomes is learned, the trained model
//! changes the pages the way the preference says, a model of another schema is refused
//! while the one in force keeps serving, and a rollback returns to the hand-set heads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use steerfeed::demo::load_world;
use steerfeed::model::HAND_SET;
use steerfeed::world::{World, WorldConfig};
use steerfeed::{
    Config, Engine, Event, EventKey, EventKind, FeedRequest, LabeledImpression, Timestamp, UserId,
    VideoId,
};
use steerfeed_learn::{TrainConfig, train};

const LIKE: usize = 6;
const FOLLOWED: usize = 6;

fn rows(engine: &Engine) -> Vec<LabeledImpression> {
    let mut out = Vec::new();
    engine
        .for_each_labeled_impression(Timestamp::UNIX_EPOCH, &mut |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
    out
}

/// A uniform draw in [0, 1) from a hash of `s` (the planted behaviour's coin).
fn coin(s: &str) -> f64 {
    let h = steerfeed::hash::Fnv1a::of(s.as_bytes());
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn previews(engine: &Engine, users: &[UserId], now: Timestamp) -> Vec<Vec<(VideoId, f32)>> {
    users
        .iter()
        .map(|u| {
            let req = FeedRequest::new(u.clone(), 10).unwrap().at(now);
            let p = engine.preview(&req, None).unwrap();
            p.page
                .items
                .iter()
                .map(|i| (i.video.clone(), i.breakdown.actions.like))
                .collect()
        })
        .collect()
}

/// A seeded world of 80 people and 1,200 videos on a fresh store, and six days of pages
/// of ten items served to each person with the hand-set heads.
fn served_world(seed: u64) -> (tempfile::TempDir, Engine, World, Vec<UserId>) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.store.path = dir.path().to_path_buf();
    let mut wc = WorldConfig::new(seed, 80, 1_200);
    wc.events_per_user = 8;
    let w = World::generate(wc);
    let engine = Engine::open(c).unwrap_or_else(|e| panic!("{e}"));
    load_world(&engine, &w, 500).unwrap();
    let users: Vec<UserId> = w.users.iter().map(|s| s.user.id.clone()).collect();
    for day in 0..6i64 {
        for (i, u) in users.iter().enumerate() {
            let now =
                Timestamp::from_second(w.config.now.as_second() + day * 86_400 + i as i64).unwrap();
            engine
                .feed(&FeedRequest::new(u.clone(), 10).unwrap().at(now))
                .unwrap();
        }
    }
    (dir, engine, w, users)
}

#[test]
fn a_planted_preference_is_learned_served_refused_in_another_schema_and_rolled_back() {
    let (_dir, engine, w, users) = served_world(31);
    // The planted behaviour: people like half of what their followed creators made,
    // and one item in fifty of the rest.
    let served = rows(&engine);
    let mut likes = Vec::new();
    for (n, r) in served.iter().enumerate() {
        let rate = if r.inputs.followed { 0.5 } else { 0.02 };
        if coin(&format!("{}/{}/{}", r.user, r.video, r.at)) < rate {
            likes.push(Event {
                key: EventKey::new(format!("like-{n}")).unwrap(),
                user: r.user.clone(),
                at: Timestamp::from_second(r.at.as_second() + 30).unwrap(),
                kind: EventKind::Like {
                    video: r.video.clone(),
                },
            });
        }
    }
    for chunk in likes.chunks(500) {
        engine.ingest_events(chunk).unwrap();
    }
    let followed = served.iter().filter(|r| r.inputs.followed).count();
    assert!(
        followed >= 100,
        "{followed} served items of followed creators"
    );

    let labeled = rows(&engine);
    assert_eq!(labeled.len(), served.len());
    let current = engine.head_models();
    let (model, report) = train(
        &labeled,
        &current,
        &engine.config().rank.scorer.weights,
        &TrainConfig::default(),
    )
    .unwrap();
    let like = &report.heads[LIKE];
    assert_eq!(like.head, "like");
    assert!(like.fitted, "{like:?}");
    assert!(like.train_positives >= 20, "{like:?}");
    let learned = model.head_models().unwrap();
    assert_eq!(
        current.coef[LIKE][FOLLOWED], 0.0,
        "the hand-set like head ignores follows"
    );
    assert!(
        learned.coef[LIKE][FOLLOWED] > 1.0,
        "the like head learned the planted preference: {:?}",
        like.coefficients
    );
    assert!(
        like.trained.log_loss < like.current.log_loss,
        "the trained head predicts held-out likes better: {like:?}"
    );
    assert!(like.trained.auc > like.current.auc, "{like:?}");
    assert!(report.ndcg_pages > 0);
    assert!(report.holdout_rows > 0 && report.train_rows > report.holdout_rows);

    // Served: followed creators' videos get a higher like probability, and pages change.
    let later = Timestamp::from_second(w.config.now.as_second() + 7 * 86_400).unwrap();
    let probe: Vec<UserId> = users.iter().take(30).cloned().collect();
    let before = previews(&engine, &probe, later);
    let info = engine.set_model(model.clone()).unwrap();
    assert_eq!(info.id, model.id);
    assert_eq!(info.previous.as_deref(), Some(HAND_SET));
    let after = previews(&engine, &probe, later);
    assert_ne!(before, after, "the trained model changes the pages");
    // The planted rates come back: about one half for followed creators' videos, about
    // one in fifty for the rest (the hand-set heads are far from both).
    let mean_like = |pages: &[Vec<(VideoId, f32)>]| {
        let (mut f, mut nf, mut o, mut no) = (0.0f64, 0usize, 0.0f64, 0usize);
        for (u, page) in probe.iter().zip(pages) {
            let following: HashSet<UserId> = engine
                .person(u, later)
                .unwrap()
                .following
                .into_iter()
                .collect();
            for (video, p) in page {
                let creator = engine
                    .store()
                    .video(video)
                    .unwrap()
                    .unwrap()
                    .creator
                    .clone();
                if following.contains(&creator) {
                    f += f64::from(*p);
                    nf += 1;
                } else {
                    o += f64::from(*p);
                    no += 1;
                }
            }
        }
        assert!(nf > 0 && no > 0, "both kinds of video on the pages");
        (f / nf as f64, o / no as f64)
    };
    let (followed_after, others_after) = mean_like(&after);
    assert!(
        (0.3..0.7).contains(&followed_after),
        "followed creators' videos: like {followed_after}"
    );
    assert!(others_after < 0.08, "other videos: like {others_after}");
    let (followed_before, others_before) = mean_like(&before);
    assert!(
        (followed_before - 0.5).abs() > (followed_after - 0.5).abs()
            || (others_before - 0.02).abs() > (others_after - 0.02).abs(),
        "the trained heads are nearer the planted rates: before {followed_before}/{others_before}, \
         after {followed_after}/{others_after}"
    );

    // Another schema is refused, and the model in force keeps serving.
    let mut other = model.clone();
    other.features.swap(2, 3);
    let err = engine.set_model(other).unwrap_err().to_string();
    assert!(err.contains("feature schema"), "{err}");
    assert_eq!(engine.model_info().id, model.id);
    assert_eq!(previews(&engine, &probe, later), after);

    // Rollback: the hand-set heads again, the same pages as before.
    let back = engine.rollback_model().unwrap();
    assert_eq!(back.id, HAND_SET);
    assert_eq!(previews(&engine, &probe, later), before);
    assert!(
        engine.rollback_model().is_err(),
        "nothing before the hand-set heads"
    );
}

/// The share of page items whose freshness term lies in `[lo, hi]`, over `users`' pages
/// at `now`.
fn share_in_band(engine: &Engine, users: &[UserId], now: Timestamp, lo: f32, hi: f32) -> f64 {
    let (mut inside, mut all) = (0usize, 0usize);
    for u in users {
        let req = FeedRequest::new(u.clone(), 10).unwrap().at(now);
        for item in engine.preview(&req, None).unwrap().page.items {
            all += 1;
            inside += usize::from((lo..=hi).contains(&item.breakdown.freshness));
        }
    }
    assert!(all > 0);
    inside as f64 / all as f64
}

#[test]
fn a_preference_the_heads_cannot_draw_is_learned_by_the_second_stage() {
    let (_dir, engine, w, users) = served_world(37);
    // The planted behaviour: people like videos of middling age (the middle third of the
    // served items' freshness terms) most. No head reads a video's age, and no linear
    // function of it draws a band.
    let served = rows(&engine);
    let mut fresh: Vec<f32> = served.iter().map(|r| r.breakdown.freshness).collect();
    fresh.sort_by(f32::total_cmp);
    let (lo, hi) = (fresh[fresh.len() / 3], fresh[2 * fresh.len() / 3]);
    assert!(lo < hi, "served items of different ages: {lo} {hi}");
    let mut likes = Vec::new();
    for (n, r) in served.iter().enumerate() {
        let rate = if (lo..=hi).contains(&r.breakdown.freshness) {
            0.6
        } else {
            0.03
        };
        if coin(&format!("band/{}/{}/{}", r.user, r.video, r.at)) < rate {
            likes.push(Event {
                key: EventKey::new(format!("like-{n}")).unwrap(),
                user: r.user.clone(),
                at: Timestamp::from_second(r.at.as_second() + 30).unwrap(),
                kind: EventKind::Like {
                    video: r.video.clone(),
                },
            });
        }
    }
    for chunk in likes.chunks(500) {
        engine.ingest_events(chunk).unwrap();
    }
    let labeled = rows(&engine);
    let current = engine.head_models();
    let weights = engine.config().rank.scorer.weights;
    let (plain, plain_report) =
        train(&labeled, &current, &weights, &TrainConfig::default()).unwrap();
    assert!(plain.ranker.is_none() && plain_report.ndcg_ranker.is_none());
    let with_ranker = TrainConfig {
        ranker_rounds: 100,
        ..TrainConfig::default()
    };
    let (ranked, report) = train(&labeled, &current, &weights, &with_ranker).unwrap();
    assert_eq!(
        ranked.head_models().unwrap(),
        plain.head_models().unwrap(),
        "the second stage leaves the heads as they are fitted"
    );
    assert!(report.ranker_trees > 0 && report.ranker_kept, "{report:?}");
    let by_ranker = report.ndcg_ranker.unwrap();
    assert!(
        by_ranker > report.ndcg_trained + 0.05,
        "held-out pages are ordered better by the ranker: {by_ranker} against the heads' {}",
        report.ndcg_trained
    );

    // Served: more of each page lies in the band with the ranker than with the heads
    // alone, the file read back as written.
    let mid = Timestamp::from_second(w.config.now.as_second() + 3 * 86_400).unwrap();
    let probe: Vec<UserId> = users.iter().take(40).cloned().collect();
    engine.set_model(plain).unwrap();
    let without = share_in_band(&engine, &probe, mid, lo, hi);
    let back = steerfeed::model::RankModel::from_bytes(&ranked.to_bytes().unwrap()).unwrap();
    engine.set_model(back).unwrap();
    let with = share_in_band(&engine, &probe, mid, lo, hi);
    assert!(
        with > without + 0.1,
        "pages in the band: {with} with the ranker, {without} without"
    );
    // A ranker of another schema is refused and the one in force keeps serving.
    let mut other = ranked.clone();
    other.ranker.as_mut().unwrap().features.swap(0, 1);
    let err = engine.set_model(other).unwrap_err().to_string();
    assert!(
        err.contains("model.ranker") && err.contains("feature schema"),
        "{err}"
    );
    assert_eq!(engine.model_info().id, ranked.id);
    assert_eq!(share_in_band(&engine, &probe, mid, lo, hi), with);
    // One rollback returns to the heads alone.
    engine.rollback_model().unwrap();
    assert_eq!(share_in_band(&engine, &probe, mid, lo, hi), without);
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The `engine` row goes through the engine: a seeded catalogue with planted chains is
//! replayed through a real `Engine` (sled store, HNSW index, the language model), and
//! what `Engine::feed` serves is what counts.
//!
//! 1. The chains are found on the served pages (far above popularity), nothing a user
//!    engaged with is served again, the engine learned each user's history and never
//!    the target, and the row says how it was produced.
//! 2. A deleted video is never served, so never counted as a hit, even where the same
//!    target was a hit for similar users before the deletion.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use steerfeed::Config;
use steerfeed_eval::microlens::data::{self, Catalogue, Sequence};
use steerfeed_eval::microlens::embed::Embeddings;
use steerfeed_eval::microlens::methods::{Method, Model};
use steerfeed_eval::microlens::{evaluate_method, replay};

const THEMES: [&str; 24] = [
    "tabby kitten chasing a laser pointer",
    "street food tacos in mexico city",
    "electric guitar solo on a rooftop",
    "snowboarding down a powder slope",
    "baking sourdough bread at home",
    "puppy learning to fetch a ball",
    "makeup tutorial for a bold red lip",
    "football free kick practice",
    "origami crane folded from paper",
    "drone flight over a volcano",
    "chess opening traps explained",
    "watercolor painting of a harbor",
    "skateboard tricks at the park",
    "sushi chef slicing fresh tuna",
    "yoga flow for a stiff back",
    "vintage car engine restoration",
    "stand-up comedy about airports",
    "lego city build time-lapse",
    "parrot talking and dancing",
    "budget travel tips for japan",
    "home workout with dumbbells",
    "piano cover of a pop song",
    "science experiment with dry ice",
    "fishing for trout in a river",
];
const STEPS: usize = 8;

/// Items in chains of `STEPS`, one theme each; every user walks a run of a chain from a
/// random start, with a little popular noise.
fn world(seed: u64, users: usize) -> (Catalogue, Vec<Sequence>, Embeddings) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cat = Catalogue::default();
    for (c, theme) in THEMES.iter().enumerate() {
        for s in 0..STEPS {
            let i = c * STEPS + s;
            cat.ids.push(1_000 + i as u64);
            cat.titles.push(format!(
                "{theme}, episode {} #{}",
                s + 1,
                theme.split(' ').next().unwrap()
            ));
            cat.index.insert(1_000 + i as u64, i as u32);
        }
    }
    let mut seqs = Vec::new();
    for u in 0..users {
        let c = rng.random_range(0..THEMES.len());
        let start = rng.random_range(0..STEPS - 4);
        let mut items = Vec::new();
        for s in 0..rng.random_range(3..=4) {
            if rng.random_bool(0.15) {
                items.push(rng.random_range(0..4u32) * STEPS as u32);
            }
            let item = (c * STEPS + start + s) as u32;
            if !items.contains(&item) {
                items.push(item);
            }
        }
        seqs.push(Sequence {
            user: format!("{u}"),
            items,
        });
    }
    // Diversity only: a random unit vector per item.
    let dim = 8;
    let data = (0..cat.len())
        .flat_map(|_| {
            let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.into_iter().map(move |x| x / n)
        })
        .collect();
    (cat, seqs, Embeddings { dim, data })
}

#[test]
fn the_engine_row_is_read_off_served_pages_and_finds_the_chains() {
    let (cat, seqs, emb) = world(3, 500);
    let split = data::leave_last_out(&seqs).unwrap();
    let n = cat.len();
    let ks = [10, 20];
    let replay = replay::build(Config::default(), &cat, &split.train).unwrap();
    assert_eq!(
        replay.engine.indexed_videos(),
        n,
        "every caption embedded and indexed"
    );
    let (outcomes, wall) = replay::serve(&replay, &split.cases, replay::DEPTH).unwrap();
    let row = replay::score(&replay, &outcomes, wall, n, &ks, &emb);

    for (case, o) in split.cases.iter().zip(&outcomes) {
        let distinct: HashSet<u32> = o.served.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            o.served.len(),
            "{}: an item served twice",
            case.user
        );
        assert!(
            o.served.iter().all(|i| !case.history.contains(i)),
            "{}: served something they engaged with",
            case.user
        );
        assert_eq!(
            o.rank,
            o.served
                .iter()
                .position(|&i| i == case.target)
                .map(|p| p + 1)
        );
        assert_eq!(o.sources.len(), o.served.len());
    }
    // What the engine learned of each test user is their history: never the target.
    for case in split
        .cases
        .iter()
        .filter(|c| !c.history.contains(&c.target))
    {
        let user = replay::user_id(&case.user).unwrap();
        let learned = replay
            .engine
            .store()
            .recent_engagements(&user, 1_000)
            .unwrap();
        assert_eq!(learned.len(), case.history.len(), "{}", case.user);
        let target = replay.video_id(case.target).unwrap();
        assert!(
            learned.iter().all(|e| &e.video != target),
            "{} saw its target",
            case.user
        );
    }
    let served = row.served.as_ref().unwrap();
    assert_eq!(row.via, "Engine::feed");
    assert_eq!(row.users, split.cases.len());
    assert_eq!(served.re_served_history, 0);
    assert!(served.requests >= split.cases.len());
    let share: f64 = served.sources.values().sum();
    assert!((share - 1.0).abs() < 1e-9, "{:?}", served.sources);
    let json = serde_json::to_value(&row).unwrap();
    assert_eq!(json["via"], "Engine::feed");
    for field in ["requests_per_s", "p50_ms", "p99_ms", "load_seconds"] {
        assert!(json["served"][field].as_f64().unwrap() > 0.0, "{field}");
    }

    // The oracle: the fraction of test users whose target is the next step of their
    // chain, which co-engagement can propose, against popularity on the same cases.
    let model = Model::fit(&split.train, n).unwrap();
    let pop = evaluate_method(&Method::Popularity(&model), &split.cases, n, &ks, &emb).unwrap();
    assert!(
        row.hr[&20] > pop.hr[&20] + 0.15,
        "engine HR@20 {} vs popularity {}",
        row.hr[&20],
        pop.hr[&20]
    );
    // HR@K recounted from the served lists themselves.
    for k in ks {
        let hits = split
            .cases
            .iter()
            .zip(&outcomes)
            .filter(|(c, o)| o.served.iter().take(k).any(|&i| i == c.target))
            .count();
        let want = hits as f64 / split.cases.len() as f64;
        assert!(
            (row.hr[&k] - want).abs() < 1e-12,
            "HR@{k} {} vs {want}",
            row.hr[&k]
        );
    }
}

#[test]
fn a_deleted_video_is_never_served_so_never_a_hit() {
    let (cat, seqs, emb) = world(5, 400);
    let split = data::leave_last_out(&seqs).unwrap();
    let replay = replay::build(Config::default(), &cat, &split.train).unwrap();
    let (first, second) = split.cases.split_at(split.cases.len() / 2);

    // The first half: the targets that were hits.
    let (before, _) = replay::serve(&replay, first, replay::DEPTH).unwrap();
    let hit: HashSet<u32> = first
        .iter()
        .zip(&before)
        .filter(|(_, o)| o.rank.is_some())
        .map(|(c, _)| c.target)
        .collect();
    assert!(hit.len() >= 5, "only {} targets were hits", hit.len());
    for &i in &hit {
        replay
            .engine
            .delete_video(replay.video_id(i).unwrap())
            .unwrap();
    }

    // The second half: users of the same chains; the deleted targets never come back.
    let exposed = second.iter().filter(|c| hit.contains(&c.target)).count();
    assert!(
        exposed >= 5,
        "only {exposed} later cases aim at a deleted target"
    );
    let (after, wall) = replay::serve(&replay, second, replay::DEPTH).unwrap();
    for (c, o) in second.iter().zip(&after) {
        assert!(
            o.served.iter().all(|i| !hit.contains(i)),
            "{}: a deleted video served",
            c.user
        );
        if hit.contains(&c.target) {
            assert_eq!(o.rank, None);
        }
    }
    let row = replay::score(&replay, &after, wall, cat.len(), &[10, 20], &emb);
    let reachable = second.iter().filter(|c| !hit.contains(&c.target)).count();
    assert!(
        row.hr[&20] * second.len() as f64 <= reachable as f64 + 1e-9,
        "hits counted on deleted targets"
    );
}

/// A cached taught store serves exactly what a freshly taught one does, and serving
/// never writes into the cache (a second copy serves the same pages again).
#[test]
fn a_cached_taught_store_serves_what_a_fresh_one_does() {
    let (cat, seqs, _) = world(9, 200);
    let split = data::leave_last_out(&seqs).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cases = &split.cases[..60];
    // A store taught and served without a cache, then two runs through the cache (the
    // first teaches and keeps a copy, the second starts from it).
    let fresh = replay::build(Config::default(), &cat, &split.train).unwrap();
    let mut runs = vec![replay::serve(&fresh, cases, replay::DEPTH).unwrap().0];
    drop(fresh);
    for _ in 0..2 {
        let r = replay::build_cached(Config::default(), &cat, &split.train, Some(cache.path()))
            .unwrap();
        runs.push(replay::serve(&r, cases, replay::DEPTH).unwrap().0);
    }
    let served =
        |o: &[replay::Outcome]| -> Vec<Vec<u32>> { o.iter().map(|o| o.served.clone()).collect() };
    assert!(runs[0].iter().any(|o| !o.served.is_empty()));
    assert_eq!(
        served(&runs[0]),
        served(&runs[1]),
        "fresh and cached differ"
    );
    assert_eq!(
        served(&runs[1]),
        served(&runs[2]),
        "serving wrote into the cache"
    );
}

/// Heads trained on the pages served for the validation split: the outcomes are exactly
/// the validation items served, never a dev target; every one labels its served item;
/// the comment head learns the planted chains (co-engagement proposes the next step);
/// and the dev replay serves with the trained model in force.
#[cfg(feature = "learn")]
#[test]
fn heads_trained_on_validation_pages_never_see_a_dev_target() {
    use std::collections::HashMap;
    use steerfeed_eval::microlens::{learned, validation_split};

    let (cat, seqs, emb) = world(11, 600);
    let split = data::leave_last_out(&seqs).unwrap();
    let ks = [10, 20];
    let config = Config::default();
    let trained = learned::train_on_validation(
        &config,
        &cat,
        &split.train,
        usize::MAX,
        &ks,
        steerfeed_learn::Balance::default(),
        None,
    )
    .unwrap();

    // The oracle of the outcomes: each validation case's held-out item, from the split.
    let (_, val_cases) = validation_split(&split.train).unwrap();
    let val_target: HashMap<String, u32> = val_cases
        .iter()
        .map(|c| (c.user.clone(), c.target))
        .collect();
    let dev_target: HashMap<String, u32> = split
        .cases
        .iter()
        .map(|c| (c.user.clone(), c.target))
        .collect();
    let name = |u: &steerfeed::UserId| u.as_str().strip_prefix("mu").unwrap().to_owned();
    assert!(
        trained.outcomes.len() >= 40,
        "{} hits",
        trained.outcomes.len()
    );
    for (user, video) in &trained.outcomes {
        let want = replay_video(&cat, val_target[&name(user)]);
        assert_eq!(
            video.as_str(),
            want,
            "{user}: an outcome that is not its validation item"
        );
        let dev = replay_video(&cat, dev_target[&name(user)]);
        assert_ne!(video.as_str(), dev, "{user}: its dev target was an outcome");
    }
    // Every served item is a validation user's, and the labelled ones are the hits.
    assert!(
        trained
            .rows
            .iter()
            .all(|r| val_target.contains_key(&name(&r.user)))
    );
    let mut labelled: Vec<(String, String)> = trained
        .rows
        .iter()
        .filter(|r| r.outcomes.comment)
        .map(|r| (r.user.as_str().to_owned(), r.video.as_str().to_owned()))
        .collect();
    let mut hits: Vec<(String, String)> = trained
        .outcomes
        .iter()
        .map(|(u, v)| (u.as_str().to_owned(), v.as_str().to_owned()))
        .collect();
    labelled.sort();
    hits.sort();
    assert_eq!(labelled, hits);
    // Every served validation item is a positive, wherever on the served pages it was.
    for r in &trained.rows {
        if r.video.as_str() == replay_video(&cat, val_target[&name(&r.user)]) {
            assert!(
                r.outcomes.comment,
                "{} served its validation item unlabelled",
                r.user
            );
        }
    }
    assert_eq!(trained.training.hits, hits.len());
    assert_eq!(trained.training.served_items, trained.rows.len());

    // The comment head was fitted, and weighs co-engagement (which proposes the next
    // step of a chain) above the configured coefficient.
    let report = &trained.training.report;
    let head = report["heads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["head"] == learned::HEAD)
        .unwrap();
    assert_eq!(head["fitted"], true, "{head}");
    let coef = |name: &str| {
        head["coefficients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c[0] == name)
            .unwrap()[1]
            .as_f64()
            .unwrap()
    };
    // Measured on the held-out (latest) validation pages: the trained head orders each
    // viewer's served items better and is calibrated better than the configured one.
    let q = |which: &str, m: &str| head[which][m].as_f64().unwrap();
    assert!(head["holdout_positives"].as_u64().unwrap() >= 20, "{head}");
    assert!(
        q("trained", "viewer_auc") > q("current", "viewer_auc"),
        "{head}"
    );
    assert!(q("trained", "ece") < q("current", "ece"), "{head}");
    let configured = f64::from(config.rank.scorer.heads.comment.co_engagement);
    assert!(
        coef("co_engagement") > configured,
        "co-engagement {} against the configured {configured}",
        coef("co_engagement")
    );

    let model = trained.model.id.clone();
    let dev = replay::build(config, &cat, &split.train).unwrap();
    let row = learned::run(&dev, &split.cases, &ks, &emb, cat.len(), trained).unwrap();
    assert_eq!(row.method, "engine-trained");
    let training = row.training.as_ref().unwrap();
    assert_eq!(training.model, model);
    assert_eq!(
        training.served_with,
        vec![model],
        "the dev pages' logged model"
    );
    assert_eq!(row.users, split.cases.len());
}

/// The engine's id of catalogue item `i` (as the replay names it).
#[cfg(feature = "learn")]
fn replay_video(cat: &Catalogue, i: u32) -> String {
    format!("ml{}", cat.ids[i as usize])
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The MicroLens loader, split and an end-to-end run on a seeded synthetic dataset.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use steerfeed_eval::microlens::data::{self, Case, Sequence};
use steerfeed_eval::microlens::embed::{self, Embeddings};
use steerfeed_eval::microlens::methods::{self, Method, Model};
use steerfeed_eval::microlens::{evaluate_method, tune};

const TITLES: &str = "item,title\n\
1,\"Cats, dogs and \"\"friends\"\"\"\n\
2,plain title\n\
7,\"two\nlines\"\n";

#[test]
fn titles_with_commas_quotes_and_newlines() {
    let cat = data::parse_titles(TITLES, "t.csv").unwrap();
    assert_eq!(cat.ids, vec![1, 2, 7]);
    assert_eq!(cat.titles[0], "Cats, dogs and \"friends\"");
    assert_eq!(cat.titles[1], "plain title");
    assert_eq!(cat.titles[2], "two\nlines");
    assert_eq!(cat.index[&7], 2);
}

#[test]
fn bad_titles_name_the_line() {
    let e = data::parse_titles("item,title\n1,a\nx,b\n", "t.csv").unwrap_err();
    assert!(format!("{e:#}").contains("t.csv:3"), "{e:#}");
    let e = data::parse_titles("id,name\n1,a\n", "t.csv").unwrap_err();
    assert!(format!("{e:#}").contains("header"), "{e:#}");
    let e = data::parse_titles("item,title\n1,\"open\n", "t.csv").unwrap_err();
    assert!(format!("{e:#}").contains("never closed"), "{e:#}");
    let e = data::parse_titles("item,title\n1,a\n1,b\n", "t.csv").unwrap_err();
    assert!(format!("{e:#}").contains("twice"), "{e:#}");
}

#[test]
fn pairs_and_leave_last_out() {
    let cat = data::parse_titles(TITLES, "t.csv").unwrap();
    let seqs = data::parse_pairs("u1\t1 2 7\n\nu2\t7 1\n", "p.tsv", &cat).unwrap();
    assert_eq!(seqs.len(), 2);
    assert_eq!(seqs[0].items, vec![0, 1, 2]);
    let split = data::leave_last_out(&seqs).unwrap();
    assert_eq!(split.train[0].items, vec![0, 1]);
    assert_eq!(
        split.cases[0],
        Case {
            user: "u1".into(),
            history: vec![0, 1],
            target: 2
        }
    );
    assert_eq!(
        split.cases[1],
        Case {
            user: "u2".into(),
            history: vec![2],
            target: 0
        }
    );

    let e = data::parse_pairs("u1\t1 9\n", "p.tsv", &cat).unwrap_err();
    assert!(
        format!("{e:#}").contains("p.tsv:1: item 9 has no title"),
        "{e:#}"
    );
    let e = data::parse_pairs("u1\t1\nu2 1 2\n", "p.tsv", &cat).unwrap_err();
    assert!(format!("{e:#}").contains("p.tsv:2"), "{e:#}");
    let e = data::parse_pairs("u1\t\n", "p.tsv", &cat).unwrap_err();
    assert!(format!("{e:#}").contains("empty history"), "{e:#}");
    let single = data::parse_pairs("u1\t1\n", "p.tsv", &cat).unwrap();
    assert!(data::leave_last_out(&single).is_err());
}

#[test]
fn test_file_mode_trains_on_everything() {
    let cat = data::parse_titles(TITLES, "t.csv").unwrap();
    let seqs = data::parse_pairs("u1\t1 2\nu2\t7\n", "p.tsv", &cat).unwrap();
    let split = data::with_test(seqs.clone(), "u2\t2\n", "x.tsv", &cat).unwrap();
    assert_eq!(split.train, seqs);
    assert_eq!(
        split.cases,
        vec![Case {
            user: "u2".into(),
            history: vec![2],
            target: 1
        }]
    );
    let e = data::with_test(seqs.clone(), "u3\t2\n", "x.tsv", &cat).unwrap_err();
    assert!(
        format!("{e:#}").contains("x.tsv:1: unknown user u3"),
        "{e:#}"
    );
    let e = data::with_test(seqs, "u1\t5\n", "x.tsv", &cat).unwrap_err();
    assert!(format!("{e:#}").contains("no title"), "{e:#}");
}

#[test]
fn embedding_cache_round_trips_and_checks_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let titles = vec!["a".to_owned(), "b".to_owned()];
    let e = Embeddings {
        dim: 2,
        data: vec![1.0, 0.0, 0.0, 1.0],
    };
    let path = embed::cache_path(dir.path(), 42, &titles);
    let th = embed::titles_hash(&titles);
    embed::save(&path, &e, 42, th).unwrap();
    assert_eq!(embed::load(&path, 2, 42, th).unwrap(), e);
    assert!(embed::load(&path, 2, 43, th).is_err());
    assert!(embed::load(&path, 3, 42, th).is_err());
    let other = vec!["a".to_owned(), "c".to_owned()];
    assert_ne!(embed::cache_path(dir.path(), 42, &other), path);
}

/// Items in 40 chains of 10; each user walks a chain from a random start (with a little noise),
/// and a few items are much more popular than the rest but off the chains' order.
fn synthetic(seed: u64) -> (Vec<Sequence>, usize, Embeddings) {
    let chains = 40;
    let len = 10;
    let n = chains * len;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seqs = Vec::new();
    for u in 0..600 {
        let c = rng.random_range(0..chains);
        let start = rng.random_range(0..len - 5);
        let steps = rng.random_range(4..=5);
        let mut items = Vec::new();
        for s in 0..steps {
            if rng.random_bool(0.15) {
                items.push(rng.random_range(0..5u32) * 10); // popular noise
            }
            items.push((c * len + start + s) as u32);
        }
        seqs.push(Sequence {
            user: format!("u{u}"),
            items,
        });
    }
    // Titles: one random unit vector per chain plus noise per item.
    let dim = 16;
    let mut data = Vec::with_capacity(n * dim);
    let centres: Vec<Vec<f32>> = (0..chains)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect();
    for i in 0..n {
        let v: Vec<f32> = centres[i / len]
            .iter()
            .map(|x| x + rng.random_range(-0.3f32..0.3))
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        data.extend(v.iter().map(|x| x / norm));
    }
    (seqs, n, Embeddings { dim, data })
}

#[test]
fn planted_chains_are_found_by_knn_and_the_blend_not_popularity() {
    let (seqs, n, emb) = synthetic(7);
    let split = data::leave_last_out(&seqs).unwrap();
    let model = Model::fit(&split.train, n).unwrap();
    let ks = [10, 20];
    let pop = evaluate_method(&Method::Popularity(&model), &split.cases, n, &ks, &emb).unwrap();
    let knn = evaluate_method(&Method::ItemKnn(&model), &split.cases, n, &ks, &emb).unwrap();
    let content = evaluate_method(&Method::Content(&emb), &split.cases, n, &ks, &emb).unwrap();
    let index = methods::build_index(&emb).unwrap();
    let ann = evaluate_method(
        &Method::InterestAnn(&emb, &index),
        &split.cases,
        n,
        &ks,
        &emb,
    )
    .unwrap();
    let rows = tune(&split.train, n, &emb, 10_000).unwrap();
    let w = rows[0].weights;
    assert!(rows[0].ndcg10 >= rows[rows.len() - 1].ndcg10);
    let blend = evaluate_method(
        &Method::Blend(&model, &emb, methods::recent_pop_signal(&model), w),
        &split.cases,
        n,
        &ks,
        &emb,
    )
    .unwrap();
    for r in [&pop, &knn, &content, &ann, &blend] {
        assert_eq!(r.users, 600);
        assert!(r.hr[&10] <= r.hr[&20]);
        assert!(r.ndcg[&10] <= r.hr[&10]);
        assert!((0.0..=1.0).contains(&r.coverage));
        let json = serde_json::to_value(r).unwrap();
        assert!(json.get("hr@10").is_some() && json.get("ndcg@20").is_some());
    }
    assert!(knn.ndcg[&10] > pop.ndcg[&10] + 0.1, "{knn:?} vs {pop:?}");
    assert!(
        blend.ndcg[&10] > pop.ndcg[&10] + 0.1,
        "{blend:?} vs {pop:?}"
    );
    // Content knows the chain but not the order; the sequence signal does.
    assert!(
        blend.ndcg[&10] > content.ndcg[&10],
        "{blend:?} vs {content:?}"
    );
    assert!(knn.coverage > pop.coverage);
}

#[test]
fn unknown_methods_and_zero_k_are_refused() {
    let mut args = steerfeed_eval::microlens::Args {
        pairs: "p.tsv".into(),
        titles: "t.csv".into(),
        test: None,
        k: vec![10, 20],
        methods: vec!["engine".into(), "popularity".into()],
        validate: false,
        limit_users: None,
        tune_users: 10,
        json: true,
        cache: None,
        replay_cache: None,
        engine_on_validation: false,
        train_heads: false,
        train_users: 100,
        balance: "kept".to_owned(),
    };
    let chosen = steerfeed_eval::microlens::check_args(&args).unwrap();
    assert_eq!(chosen, vec!["popularity", "engine"]);
    args.methods = vec!["bogus".into()];
    let e = steerfeed_eval::microlens::check_args(&args).unwrap_err();
    assert!(e.to_string().contains("unknown method bogus"), "{e}");
    args.methods.clear();
    args.k = vec![0];
    assert!(steerfeed_eval::microlens::check_args(&args).is_err());

    // Training adds a row to the engine's, on the dev replay, from at least one user
    // (in a build with the `learn` feature, which a test of this package alone lacks).
    args.k = vec![10];
    args.train_heads = true;
    if !cfg!(feature = "learn") {
        let e = steerfeed_eval::microlens::check_args(&args).unwrap_err();
        assert!(e.to_string().contains("`learn` feature"), "{e}");
        return;
    }
    assert!(steerfeed_eval::microlens::check_args(&args).is_ok());
    args.methods = vec!["blend".into()];
    let e = steerfeed_eval::microlens::check_args(&args).unwrap_err();
    assert!(e.to_string().contains("engine method"), "{e}");
    args.methods = vec!["engine".into()];
    args.engine_on_validation = true;
    assert!(steerfeed_eval::microlens::check_args(&args).is_err());
    args.engine_on_validation = false;
    args.train_users = 0;
    assert!(steerfeed_eval::microlens::check_args(&args).is_err());
}

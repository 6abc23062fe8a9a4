#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `steerfeed eval report` end to end at a tiny size: a seeded MicroLens-shaped dataset
//! (titles embedded by the real encoder into a temporary cache) and a small simulated
//! world through the real engine; every file the report promises is written, the PNGs
//! decode, and the Markdown holds every method and run.

use std::fmt::Write as _;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use steerfeed::Config;
use steerfeed_eval::microlens::METHODS;
use steerfeed_eval::report::{Args, compute, write};

/// 60 items in 6 topics; 80 users whose sequences walk chains i → i+1 within a topic.
fn dataset(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut rng = StdRng::seed_from_u64(7);
    let topics = [
        "cooking", "cats", "football", "painting", "guitar", "travel",
    ];
    let mut titles = String::from("item,title\n");
    for i in 1..=60 {
        let t = topics[(i - 1) / 10];
        writeln!(titles, "{i},\"a short video about {t}, part {i} #{t}\"").unwrap();
    }
    let mut pairs = String::new();
    for u in 1..=80 {
        let topic = rng.random_range(0..6usize);
        let start = rng.random_range(0..5usize);
        let len = rng.random_range(4..=6usize);
        let items: Vec<String> = (0..len)
            .map(|j| (topic * 10 + (start + j) % 10 + 1).to_string())
            .collect();
        writeln!(pairs, "{u}\t{}", items.join(" ")).unwrap();
    }
    let p = dir.join("pairs.tsv");
    let t = dir.join("titles.csv");
    std::fs::write(&p, pairs).unwrap();
    std::fs::write(&t, titles).unwrap();
    (p, t)
}

#[test]
fn a_small_report_writes_every_table_and_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let (pairs, titles) = dataset(tmp.path());
    let out = tmp.path().join("report");
    let args = Args {
        out: out.clone(),
        pairs,
        titles,
        skip_microlens: false,
        // The embedding cache goes to the temporary folder, not the user's cache.
        embedding_cache: Some(tmp.path().join("embeddings")),
        limit_users: None,
        replay_cache: None,
        tune_users: 80,
        skip_simulation: false,
        users: 24,
        videos: 240,
        days: 1,
        seed: 3,
        creation_weights: vec![0.0, 10.0],
    };
    let results = compute(&Config::default(), &args).unwrap();
    assert_eq!(results.microlens.len(), METHODS.len());
    assert!(results.microlens_skipped.is_none());
    let roles: Vec<&str> = results.sims.iter().map(|r| r.role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "policy:creation",
            "policy:engagement",
            "sweep:0",
            "sweep:10",
            "no-throttles"
        ]
    );
    // The swept default weight reuses the creation policy's run (its wall time to the
    // nanosecond, which a second simulation would not reproduce), labelled with its weight.
    let (creation, sweep10) = (&results.sims[0].report, &results.sims[3].report);
    assert_eq!(sweep10.creation_weight, Some(10.0));
    assert_eq!(sweep10.seconds.to_bits(), creation.seconds.to_bits());
    assert_ne!(
        sweep10.seconds.to_bits(),
        results.sims[2].report.seconds.to_bits()
    );
    for r in &results.sims {
        assert_eq!(r.report.consent_violations, 0, "{}", r.role);
        assert_eq!(r.report.teen_limit_violations, 0, "{}", r.role);
        assert_eq!(r.report.hard_exclusion_violations, 0, "{}", r.role);
    }

    let files = write(&out, &results).unwrap();
    for name in [
        "microlens.jsonl",
        "hr_at_k.png",
        "sim.jsonl",
        "tradeoff.png",
        "steering.png",
        "sessions.png",
        "report.md",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "{name} not in {files:?}"
        );
        assert!(out.join(name).is_file(), "{name} missing");
    }
    for png in [
        "hr_at_k.png",
        "tradeoff.png",
        "steering.png",
        "sessions.png",
    ] {
        let img = image::open(out.join(png)).unwrap();
        assert!(img.width() > 100 && img.height() > 100, "{png}");
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for m in METHODS {
        assert!(md.contains(&format!("| {m} |")), "{m} missing from\n{md}");
    }
    for role in roles {
        assert!(md.contains(&format!("| {role} |")), "{role} missing");
    }
    let jsonl = std::fs::read_to_string(out.join("microlens.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), METHODS.len());
    for row in &rows {
        for k in [1, 5, 10, 20, 50] {
            let hr = row[format!("hr@{k}")].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&hr));
        }
    }
    // HR@K never falls as K grows.
    for row in &rows {
        let hr: Vec<f64> = [1, 5, 10, 20, 50]
            .iter()
            .map(|k| row[format!("hr@{k}")].as_f64().unwrap())
            .collect();
        assert!(hr.windows(2).all(|w| w[0] <= w[1]), "{row}");
    }
}

#[test]
fn skipped_parts_are_said_and_nothing_is_plotted_for_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let args = Args {
        out: out.clone(),
        pairs: tmp.path().join("missing.tsv"),
        titles: tmp.path().join("missing.csv"),
        skip_microlens: false,
        embedding_cache: None,
        limit_users: None,
        replay_cache: None,
        tune_users: 10,
        skip_simulation: true,
        users: 10,
        videos: 10,
        days: 1,
        seed: 1,
        creation_weights: vec![],
    };
    let results = compute(&Config::default(), &args).unwrap();
    assert!(results.microlens.is_empty() && results.sims.is_empty());
    assert!(
        results
            .microlens_skipped
            .as_deref()
            .unwrap()
            .contains("not found")
    );
    write(&out, &results).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("Skipped:"), "{md}");
    assert!(!out.join("hr_at_k.png").exists());
    assert!(!out.join("sim.jsonl").exists());
}

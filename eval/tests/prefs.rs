//! The preference parser's quality floors, scored by the harness's `prefs` module on the
//! project's own labelled sets (`crates/steer/tests/data/`) with the real model:
//! `prefs-tune.jsonl` (156 lines, the parser was developed against it) and
//! `prefs-holdout.jsonl` (60 lines, never tuned on) and `prefs-blind.jsonl` (80 lines written
//! by someone who had seen neither the parser, its word lists, the exemplars nor the other
//! sets; measured once, never tuned on); and the held-out families of the reader's corpus
//! (`data/reader/corpus.jsonl`, split `holdout`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use steerfeed::{Config, Timestamp, open_parser};
use steerfeed_eval::prefs::score::{Score, evaluate, read_jsonl};

fn score(file: &str) -> Score {
    let path = format!(
        "{}/../crates/steer/tests/data/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let lines = read_jsonl(&text).unwrap();
    let parser = open_parser(&Config::default()).unwrap_or_else(|e| panic!("{e}"));
    let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
    let (score, results) = evaluate(&parser, &lines, now).unwrap();
    for r in results.iter().filter(|r| r.expected != r.got) {
        eprintln!(
            "{file}: {:?}: expected {:?}, got {:?}",
            r.text, r.expected, r.got
        );
    }
    eprintln!("{file}: {score:?}");
    score
}

#[test]
fn tuning_set_f1_floor() {
    let s = score("prefs-tune.jsonl");
    assert!(s.lines >= 150);
    assert!(s.f1 >= 0.95, "F1 {}", s.f1);
    assert!(s.exact_match >= 0.9, "exact {}", s.exact_match);
}

#[test]
fn held_out_set_f1_floor() {
    let s = score("prefs-holdout.jsonl");
    assert!(s.lines >= 60);
    // The parser scores 0.958 / 0.950 here (how it got there: docs/benchmarks.md); the
    // floors leave room for a small change, not for a lost capability. The set was never
    // tuned on, but 25 of its lines share a phrase with the exemplars and with none of
    // the descriptions (common names: "minecraft", "naruto"), so it overstates how far
    // the exemplars generalise.
    assert!(s.f1 >= 0.94, "F1 {}", s.f1);
    assert!(s.exact_match >= 0.92, "exact {}", s.exact_match);
}

#[test]
fn blind_set_f1_floor() {
    let s = score("prefs-blind.jsonl");
    assert!(s.lines >= 80);
    // The parser scores 0.961 / 0.925 here; the set was written by someone who saw
    // neither the parser nor its data, and its first score is in docs/benchmarks.md.
    assert!(s.f1 >= 0.94, "F1 {}", s.f1);
    assert!(s.exact_match >= 0.9, "exact {}", s.exact_match);
}

#[test]
fn corpus_held_out_families_floor() {
    let path = format!("{}/../data/reader/corpus.jsonl", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<_> = read_jsonl(&text)
        .unwrap()
        .into_iter()
        .filter(|l| l.split.as_deref() == Some("holdout"))
        .collect();
    assert!(lines.len() >= 300);
    let parser = open_parser(&Config::default()).unwrap_or_else(|e| panic!("{e}"));
    let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
    let (s, _) = evaluate(&parser, &lines, now).unwrap();
    eprintln!("corpus holdout: {s:?}");
    // Families of constructions and of hand-written paraphrases the reader never saw
    // (used to choose the L2 penalty and the labelling, so a validation set): 0.787 /
    // 0.637 with the reader, 0.728 / 0.558 with the word lists alone; 0.924 / 0.863 since
    // the training split's phrases became exemplars (160 of the held-out lines share one),
    // with litotes, slot exemplars and spelling repair. Most misses left are topics (a
    // target phrase mapped to the wrong topic or to none).
    assert!(s.f1 >= 0.91, "F1 {}", s.f1);
    assert!(s.exact_match >= 0.84, "exact {}", s.exact_match);
}

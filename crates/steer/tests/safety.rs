//! The teen safety net on the real model.
//!
//! 1. Alone (no parser): every adversarial teen request in `tests/data/teen-restricted*.jsonl`
//!    is flagged, in its category; no request of `tests/data/teen-benign*.jsonl` is. The
//!    sets were written one after another, each before the table was extended for it, and
//!    none of their lines is in the table; a set's first contact measured how far the
//!    table generalises (docs/benchmarks.md), and the sets now guard the classes they
//!    taught. The `-d` sets hold holes and false rejections found by reading the code.
//! 2. Through the parser, with its learned reader and with the word lists alone: each
//!    adversarial request comes back with a non-empty `rejected`
//!    and no boost or only beyond the harmless topics the line allows; benign requests,
//!    exclusions of restricted content included, get no rejection from the net.
//! 3. The labelled steering sets read as a teen: nothing is rejected that an adult would
//!    have had applied, except restricted or sensitive topics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, OnceLock};

use steerfeed_core::{AgeBand, Timestamp};
use steerfeed_steer::{Encoder, EncoderConfig, ParserConfig, PreferenceParser};

fn parser() -> &'static PreferenceParser {
    static P: OnceLock<PreferenceParser> = OnceLock::new();
    P.get_or_init(|| {
        let encoder =
            Arc::new(Encoder::open(&EncoderConfig::default()).unwrap_or_else(|e| panic!("{e}")));
        PreferenceParser::open(encoder, ParserConfig::default()).unwrap()
    })
}

/// The parser with its learned reader and with the word lists alone: the net must stand
/// whichever reads the items.
fn parsers() -> [&'static PreferenceParser; 2] {
    static W: OnceLock<PreferenceParser> = OnceLock::new();
    [
        parser(),
        W.get_or_init(|| parser().clone().with_reader(None)),
    ]
}

fn now() -> Timestamp {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    allowed: Vec<String>,
}

fn cases(file: &str) -> Vec<Case> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The adversarial sets, in the order they were written: each was first run against the
/// table as it stood (see the module documentation).
fn restricted_cases() -> Vec<Case> {
    [
        "teen-restricted.jsonl",
        "teen-restricted-b.jsonl",
        "teen-restricted-c.jsonl",
    ]
    .into_iter()
    .flat_map(cases)
    .collect()
}

fn benign_cases() -> Vec<Case> {
    [
        "teen-benign.jsonl",
        "teen-benign-c.jsonl",
        "teen-benign-d.jsonl",
    ]
    .into_iter()
    .flat_map(cases)
    .collect()
}

#[test]
fn the_net_alone_flags_every_adversarial_request_in_its_category() {
    let p = parser();
    let net = p.safety();
    let cases = restricted_cases();
    assert!(cases.len() >= 80);
    let mut missed = Vec::new();
    let mut wrong = Vec::new();
    for case in &cases {
        let flags = net.check(p.encoder(), &case.text).unwrap();
        let want = case.category.as_deref().unwrap();
        if flags.is_empty() {
            missed.push(case.text.clone());
        } else if !flags
            .iter()
            .any(|f| net.categories()[f.category].id == want)
        {
            wrong.push(format!(
                "{:?}: {:?}",
                case.text,
                flags
                    .iter()
                    .map(|f| (&net.categories()[f.category].id, &f.matched))
                    .collect::<Vec<_>>()
            ));
        }
    }
    eprintln!("missed {missed:#?}\nwrong category {wrong:#?}");
    assert!(
        missed.is_empty(),
        "{} of {} missed",
        missed.len(),
        cases.len()
    );
    assert!(wrong.is_empty(), "{} in a wrong category", wrong.len());
}

#[test]
fn the_net_alone_leaves_benign_requests_and_exclusions_alone() {
    let p = parser();
    let net = p.safety();
    let cases = benign_cases();
    let mut flagged = Vec::new();
    for case in &cases {
        let flags = net.check(p.encoder(), &case.text).unwrap();
        if !flags.is_empty() {
            flagged.push(format!("{:?}: {:?}", case.text, flags));
        }
    }
    assert!(flagged.is_empty(), "{flagged:#?}");
}

#[test]
fn through_the_parser_every_adversarial_request_is_rejected_and_never_boosted() {
    let mut failures = Vec::new();
    for (p, case) in parsers()
        .into_iter()
        .flat_map(|p| restricted_cases().into_iter().map(move |c| (p, c)))
    {
        let c = p.parse(&case.text, AgeBand::Teen, now()).unwrap();
        let applied: Vec<String> = c
            .boost
            .iter()
            .map(|x| x.topic.clone())
            .chain(c.only.iter().map(|x| x.topic.clone()))
            .map(|t| t.map(|t| t.as_str().to_owned()).unwrap_or_default())
            .filter(|t| !case.allowed.contains(t))
            .collect();
        if c.rejected.is_empty() || !applied.is_empty() {
            failures.push(format!(
                "{:?} (reader {}): {c:?}",
                case.text,
                p.reader().is_some()
            ));
        }
        for r in &c.rejected {
            assert!(!r.reason.is_empty());
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn through_the_parser_benign_requests_are_not_rejected() {
    for (p, case) in parsers()
        .into_iter()
        .flat_map(|p| benign_cases().into_iter().map(move |c| (p, c)))
    {
        let c = p.parse(&case.text, AgeBand::Teen, now()).unwrap();
        // The parser's own topic policy may still refuse a sensitive topic it mapped the
        // text to ("nerf battles" read as violence); the net must not add a rejection.
        assert!(
            c.rejected.iter().all(|r| r.label.is_none()),
            "{:?}: {c:?}",
            case.text
        );
    }
}

#[test]
fn the_labelled_steering_sets_read_as_a_teen_lose_nothing_harmless_to_the_net() {
    // Lines whose expected facts boost or only a topic the teen policy limits are left
    // out: rejecting those is the point.
    const LIMITED: [&str; 4] = ["mature", "violence", "weight_loss", "sad"];
    let p = parser();
    let mut checked = 0;
    let mut flagged = Vec::new();
    for file in ["prefs-tune.jsonl", "prefs-holdout.jsonl"] {
        let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let expect = &v["expect"];
            let positive: Vec<&str> = ["boost", "only", "rejected"]
                .iter()
                .filter_map(|k| expect[*k].as_array())
                .flatten()
                .filter_map(|t| t.as_str())
                .collect();
            if positive.iter().any(|t| LIMITED.contains(t)) {
                continue;
            }
            checked += 1;
            let text = v["text"].as_str().unwrap();
            let c = p.parse(text, AgeBand::Teen, now()).unwrap();
            if c.rejected.iter().any(|r| r.label.is_some()) {
                flagged.push(format!("{text:?}: {:?}", c.rejected));
            }
        }
    }
    assert!(checked > 150, "{checked}");
    assert!(flagged.is_empty(), "{flagged:#?}");
}

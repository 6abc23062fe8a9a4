//! Scoring the parser against labelled preferences (`prefs-dev.jsonl` format).
//!
//! Each line is `{"text": ..., "audience": "adult"|"teen" (optional), "expect": {...}}`
//! where `expect` lists topic ids under `boost`, `reduce`, `exclude`, `only`,
//! `rejected`, and the slots `following`, `freshness`, `max_duration_s`, `remix`,
//! `friends_cameos`. Both sides become sets of facts (`"boost:cooking"`,
//! `"max_duration_s:20"`); the score is micro precision, recall and F1 over facts and
//! the share of lines whose facts match exactly.

use std::collections::BTreeSet;

use steerfeed::steer::{PreferenceParser, Result};
use steerfeed::{AgeBand, Constraints, Timestamp};

/// One labelled line.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Labelled {
    /// The preference text.
    pub text: String,
    /// The audience (default adult).
    #[serde(default)]
    pub audience: Option<AgeBand>,
    /// The expected facts.
    #[serde(default)]
    pub expect: serde_json::Map<String, serde_json::Value>,
    /// The paraphrase family (corpus lines).
    #[serde(default)]
    pub family: Option<String>,
    /// `train` or `holdout` (corpus lines).
    #[serde(default)]
    pub split: Option<String>,
}

/// The facts of an `expect` object.
pub fn expected_facts(expect: &serde_json::Map<String, serde_json::Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (key, value) in expect {
        match value {
            serde_json::Value::Array(topics) => {
                for t in topics {
                    if let Some(t) = t.as_str() {
                        out.insert(format!("{key}:{t}"));
                    }
                }
            }
            serde_json::Value::String(s) => {
                out.insert(format!("{key}:{s}"));
            }
            other => {
                out.insert(format!("{key}:{other}"));
            }
        }
    }
    out
}

/// The facts of compiled constraints.
pub fn facts(c: &Constraints) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let lists = [
        (
            "boost",
            c.boost.iter().map(|x| x.topic.clone()).collect::<Vec<_>>(),
        ),
        ("reduce", c.reduce.iter().map(|x| x.topic.clone()).collect()),
        (
            "exclude",
            c.exclude.iter().map(|x| x.topic.clone()).collect(),
        ),
        ("only", c.only.iter().map(|x| x.topic.clone()).collect()),
        (
            "rejected",
            c.rejected.iter().map(|x| x.topic.clone()).collect(),
        ),
    ];
    for (key, topics) in lists {
        for t in topics.into_iter().flatten() {
            out.insert(format!("{key}:{t}"));
        }
    }
    if let Some(f) = c.following {
        out.insert(format!(
            "following:{}",
            serde_json::to_value(f)
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .unwrap_or_default()
        ));
    }
    if c.freshness.is_some() {
        out.insert("freshness:newer".into());
    }
    if let Some(d) = c.max_duration_s {
        out.insert(format!("max_duration_s:{d}"));
    }
    if let Some(r) = c.remix {
        out.insert(format!("remix:{r}"));
    }
    if let Some(f) = c.friends_cameos {
        out.insert(format!("friends_cameos:{f}"));
    }
    out
}

/// Scores over a set of lines.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Score {
    /// Lines scored.
    pub lines: usize,
    /// Micro precision over facts.
    pub precision: f64,
    /// Micro recall over facts.
    pub recall: f64,
    /// Micro F1 over facts.
    pub f1: f64,
    /// Share of lines whose facts match exactly.
    pub exact_match: f64,
    /// Median time to parse one line, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile time to parse one line, in milliseconds.
    pub p95_ms: f64,
}

/// One line's outcome, for reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LineResult {
    /// The text.
    pub text: String,
    /// Expected facts.
    pub expected: BTreeSet<String>,
    /// Facts the parser produced.
    pub got: BTreeSet<String>,
}

/// Parses every line and scores the result.
pub fn evaluate(
    parser: &PreferenceParser,
    lines: &[Labelled],
    now: Timestamp,
) -> Result<(Score, Vec<LineResult>)> {
    let (mut tp, mut fp, mut fn_, mut exact) = (0usize, 0usize, 0usize, 0usize);
    let mut results = Vec::with_capacity(lines.len());
    let mut times = Vec::with_capacity(lines.len());
    for line in lines {
        let started = std::time::Instant::now();
        let c = parser.parse(&line.text, line.audience.unwrap_or(AgeBand::Adult), now)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let got = facts(&c);
        let expected = expected_facts(&line.expect);
        tp += got.intersection(&expected).count();
        fp += got.difference(&expected).count();
        fn_ += expected.difference(&got).count();
        exact += usize::from(got == expected);
        results.push(LineResult {
            text: line.text.clone(),
            expected,
            got,
        });
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok((
        Score {
            lines: lines.len(),
            precision,
            recall,
            f1,
            exact_match: ratio(exact, lines.len()),
            p50_ms: pct(0.5),
            p95_ms: pct(0.95),
        },
        results,
    ))
}

/// Reads JSON lines of [`Labelled`], skipping blank lines; a bad line is an error naming it.
pub fn read_jsonl(text: &str) -> Result<Vec<Labelled>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| {
                steerfeed::Error::invalid("jsonl", format!("line {}: {e}", n + 1)).into()
            })
        })
        .collect()
}

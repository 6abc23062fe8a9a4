//! Scoring the parser against labelled preferences (`prefs-dev.jsonl` format).
//!
//! Each line is `{"text": ..., "audience": "adult"|"teen" (optional), "expect": {...}}`
//! where `expect` lists topic ids under `boost`, `reduce`, `exclude`, `only`,
//! `rejected`, and the slots `following`, `freshness`, `max_duration_s`, `remix`,
//! `friends_cameos`. Both sides become sets of facts (`"boost:cooking"`,
//! `"max_duration_s:20"`); the score is micro precision, recall and F1 over facts and
//! the share of lines whose facts match exactly.

use std::collections::{BTreeMap, BTreeSet};

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
    /// The kind of case the line tests (sets written per category of error).
    #[serde(default)]
    pub category: Option<String>,
    /// How strongly the line asks (`mild`, `normal`, `strong`; corpus lines).
    #[serde(default)]
    pub intensity: Option<String>,
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
    /// Lines wrong in each way (see [`error_kinds`]); a line can be wrong in several.
    pub errors: BTreeMap<String, usize>,
}

/// The lists a topic can be put in.
const LISTS: [&str; 4] = ["boost", "reduce", "exclude", "only"];

/// How a line's facts differ from the expected ones:
/// - `missed_topic`: a topic expected in a list is in none;
/// - `extra_topic`: a topic is in a list though none was expected for it;
/// - `wrong_list`: a topic is in a list, but not the expected one;
/// - `rejected`: the teen refusals differ;
/// - `slot:NAME`: a slot (following, friends_cameos, remix, freshness, max_duration_s)
///   differs.
pub fn error_kinds(expected: &BTreeSet<String>, got: &BTreeSet<String>) -> BTreeSet<String> {
    let split = |f: &String| {
        let (k, v) = f.split_once(':').unwrap_or((f.as_str(), ""));
        (k.to_owned(), v.to_owned())
    };
    let listed = |facts: &BTreeSet<String>| -> BTreeSet<(String, String)> {
        facts
            .iter()
            .map(split)
            .filter(|(k, _)| LISTS.contains(&k.as_str()))
            .collect()
    };
    let (e, g) = (listed(expected), listed(got));
    let topics = |s: &BTreeSet<(String, String)>| -> BTreeSet<String> {
        s.iter().map(|(_, t)| t.clone()).collect()
    };
    let (et, gt) = (topics(&e), topics(&g));
    let mut out = BTreeSet::new();
    if et.difference(&gt).next().is_some() {
        out.insert("missed_topic".to_owned());
    }
    if gt.difference(&et).next().is_some() {
        out.insert("extra_topic".to_owned());
    }
    if e.symmetric_difference(&g)
        .any(|(_, t)| et.contains(t) && gt.contains(t))
    {
        out.insert("wrong_list".to_owned());
    }
    for f in expected.symmetric_difference(got) {
        let (k, _) = split(f);
        if k == "rejected" {
            out.insert("rejected".to_owned());
        } else if !LISTS.contains(&k.as_str()) {
            out.insert(format!("slot:{k}"));
        }
    }
    out
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
    /// Strengths of the boosted and reduced items.
    pub strengths: Vec<f32>,
}

/// Micro precision, recall and F1 over facts, and the share of exact lines, of some
/// lines' results, and how many lines they are.
pub fn micro<'a>(results: impl IntoIterator<Item = &'a LineResult>) -> (f64, f64, f64, f64, usize) {
    let (mut tp, mut fp, mut fn_, mut exact, mut n) = (0usize, 0usize, 0usize, 0usize, 0usize);
    for r in results {
        tp += r.got.intersection(&r.expected).count();
        fp += r.got.difference(&r.expected).count();
        fn_ += r.expected.difference(&r.got).count();
        exact += usize::from(r.got == r.expected);
        n += 1;
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let (p, r) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
    let f1 = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f1, ratio(exact, n), n)
}

/// Of the lines labelled with an intensity whose facts came out right and that boost or
/// reduce something: how many there are, and the share whose every strength is the
/// label's (mild 0.5, normal 1, strong 2).
pub fn intensity_accuracy(lines: &[Labelled], results: &[LineResult]) -> (usize, f64) {
    let strength = |label: &str| match label {
        "mild" => Some(0.5),
        "normal" => Some(1.0),
        "strong" => Some(2.0),
        _ => None,
    };
    let (mut n, mut right) = (0usize, 0usize);
    for (line, r) in lines.iter().zip(results) {
        let Some(want) = line.intensity.as_deref().and_then(strength) else {
            continue;
        };
        if r.got != r.expected || r.strengths.is_empty() {
            continue;
        }
        n += 1;
        right += usize::from(r.strengths.iter().all(|&s| (s - want).abs() < 1e-6));
    }
    (n, if n == 0 { 1.0 } else { right as f64 / n as f64 })
}

/// Parses every line and scores the result.
pub fn evaluate(
    parser: &PreferenceParser,
    lines: &[Labelled],
    now: Timestamp,
) -> Result<(Score, Vec<LineResult>)> {
    let mut results = Vec::with_capacity(lines.len());
    let mut times = Vec::with_capacity(lines.len());
    let mut errors = BTreeMap::new();
    for line in lines {
        let started = std::time::Instant::now();
        let c = parser.parse(&line.text, line.audience.unwrap_or(AgeBand::Adult), now)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let got = facts(&c);
        let expected = expected_facts(&line.expect);
        for kind in error_kinds(&expected, &got) {
            *errors.entry(kind).or_insert(0) += 1;
        }
        results.push(LineResult {
            text: line.text.clone(),
            expected,
            got,
            strengths: c
                .boost
                .iter()
                .chain(&c.reduce)
                .map(|x| x.strength)
                .collect(),
        });
    }
    let (precision, recall, f1, exact_match, _) = micro(&results);
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
            exact_match,
            p50_ms: pct(0.5),
            p95_ms: pct(0.95),
            errors,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(facts: &[&str]) -> BTreeSet<String> {
        facts.iter().map(|f| (*f).to_owned()).collect()
    }

    fn kinds(expected: &[&str], got: &[&str]) -> Vec<String> {
        error_kinds(&set(expected), &set(got)).into_iter().collect()
    }

    #[test]
    fn each_way_of_being_wrong_is_named() {
        assert!(kinds(&["boost:jazz"], &["boost:jazz"]).is_empty());
        assert_eq!(kinds(&["boost:jazz"], &[]), ["missed_topic"]);
        assert_eq!(kinds(&[], &["boost:jazz"]), ["extra_topic"]);
        assert_eq!(kinds(&["boost:jazz"], &["exclude:jazz"]), ["wrong_list"]);
        assert_eq!(
            kinds(&["boost:jazz"], &["boost:jazz", "exclude:jazz"]),
            ["wrong_list"]
        );
        assert_eq!(
            kinds(
                &["boost:jazz", "reduce:golf"],
                &["boost:art", "reduce:golf"]
            ),
            ["extra_topic", "missed_topic"]
        );
        assert_eq!(
            kinds(
                &["following:more"],
                &["following:less", "friends_cameos:true"]
            ),
            ["slot:following", "slot:friends_cameos"]
        );
        assert_eq!(kinds(&["rejected:mature"], &[]), ["rejected"]);
    }
}

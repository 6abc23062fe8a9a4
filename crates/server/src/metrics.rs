//! Prometheus metrics, rendered in the text exposition format at `GET /metrics`:
//! request counts and latencies by route, per-stage pipeline latencies, candidates per
//! source, removals per filter, and throttle cards fired. Plain atomics and maps behind a
//! mutex: the hot path takes one short lock per request.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use steerfeed::{Role, Trace};

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram over [`BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Requests observed.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// What `self` holds beyond `earlier` (a later reading of the same histogram).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let mut out = self.clone();
        for (c, e) in out.counts.iter_mut().zip(earlier.counts) {
            *c = c.saturating_sub(e);
        }
        out.count = self.count.saturating_sub(earlier.count);
        out.sum = (self.sum - earlier.sum).max(0.0);
        out
    }

    /// Adds `other`'s observations.
    pub fn add(&mut self, other: &Histogram) {
        for (c, o) in self.counts.iter_mut().zip(other.counts) {
            *c += o;
        }
        self.count += other.count;
        self.sum += other.sum;
    }

    /// The mean, in milliseconds (0 when empty).
    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64 * 1e3
        }
    }

    /// The `q` quantile as the upper bound of the bucket that holds it, in milliseconds
    /// (0 when empty; beyond the last bound, the last bound).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let want = (q * self.count as f64).ceil().max(1.0) as u64;
        BUCKETS
            .iter()
            .zip(self.counts)
            .find(|&(_, c)| c >= want)
            .map_or(BUCKETS[BUCKETS.len() - 1], |(b, _)| *b)
            * 1e3
    }

    fn observe(&mut self, seconds: f64) {
        for (b, c) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// (route, status) -> latency histogram.
    requests: BTreeMap<(String, u16), Histogram>,
    /// stage -> latency histogram.
    stages: BTreeMap<&'static str, Histogram>,
    /// source -> candidates proposed.
    candidates: BTreeMap<&'static str, u64>,
    /// filter -> candidates removed.
    removed: BTreeMap<&'static str, u64>,
    /// (throttle, card kind) -> cards.
    throttles: BTreeMap<(&'static str, String), u64>,
    /// Feed requests answered with no item (a gate stopped them).
    stopped: u64,
    /// Feed requests whose pipeline ran (their candidates are counted).
    traced: u64,
    /// profile -> (pages served, items served).
    profiles: BTreeMap<String, (u64, u64)>,
}

/// Cumulative metrics at one moment ([`Metrics::reading`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// `POST /v1/feed` latency.
    pub feed: Histogram,
    /// Latency per pipeline stage.
    pub stages: BTreeMap<&'static str, Histogram>,
    /// Feed requests whose pipeline ran.
    pub traced: u64,
    /// Candidates proposed per source.
    pub candidates: BTreeMap<&'static str, u64>,
}

/// The server's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records one HTTP request: its matched route (or `unmatched`), status and latency.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.lock()
            .requests
            .entry((route.to_owned(), status))
            .or_default()
            .observe(seconds);
    }

    /// Records a page served by rank profile `profile` with `items` items.
    pub fn profile(&self, profile: &str, items: usize) {
        let mut m = self.lock();
        let e = m.profiles.entry(profile.to_owned()).or_default();
        e.0 += 1;
        e.1 += items as u64;
    }

    /// Records what the pipeline did for one feed request.
    pub fn trace(&self, trace: &Trace, items: usize) {
        let mut m = self.lock();
        for r in &trace.stages {
            m.stages
                .entry(r.stage)
                .or_default()
                .observe(r.micros as f64 / 1e6);
            match r.role {
                Role::Source => *m.candidates.entry(r.stage).or_default() += r.output as u64,
                Role::Filter => *m.removed.entry(r.stage).or_default() += r.removed.len() as u64,
                Role::Throttle => {
                    if let Some(card) = &r.card {
                        let kind = serde_json::to_value(card.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        *m.throttles.entry((r.stage, kind)).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        if items == 0 {
            m.stopped += 1;
        }
        m.traced += 1;
    }

    /// The cumulative readings the console's history is made of: the latency of the
    /// feeds served (2xx answers), each stage's, the feeds whose pipeline ran and the
    /// candidates each source proposed.
    pub fn reading(&self) -> Reading {
        let m = self.lock();
        let mut feed = Histogram::default();
        for ((route, status), h) in &m.requests {
            if route == "/v1/feed" && (200..300).contains(status) {
                feed.add(h);
            }
        }
        Reading {
            feed,
            stages: m.stages.clone(),
            traced: m.traced,
            candidates: m.candidates.clone(),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let m = self.lock();
        let mut out = String::new();
        out.push_str(
            "# HELP steerfeed_http_request_duration_seconds HTTP requests by route and status.\n",
        );
        out.push_str("# TYPE steerfeed_http_request_duration_seconds histogram\n");
        for ((route, status), h) in &m.requests {
            let labels = format!("route=\"{}\",status=\"{status}\"", escape(route));
            h.render(&mut out, "steerfeed_http_request_duration_seconds", &labels);
        }
        out.push_str("# HELP steerfeed_stage_duration_seconds Time per feed pipeline stage.\n");
        out.push_str("# TYPE steerfeed_stage_duration_seconds histogram\n");
        for (stage, h) in &m.stages {
            let labels = format!("stage=\"{stage}\"");
            h.render(&mut out, "steerfeed_stage_duration_seconds", &labels);
        }
        out.push_str("# HELP steerfeed_source_candidates_total Candidates proposed per source.\n");
        out.push_str("# TYPE steerfeed_source_candidates_total counter\n");
        for (s, n) in &m.candidates {
            let _ = writeln!(
                out,
                "steerfeed_source_candidates_total{{source=\"{s}\"}} {n}"
            );
        }
        out.push_str("# HELP steerfeed_filter_removed_total Candidates removed per filter.\n");
        out.push_str("# TYPE steerfeed_filter_removed_total counter\n");
        for (f, n) in &m.removed {
            let _ = writeln!(out, "steerfeed_filter_removed_total{{filter=\"{f}\"}} {n}");
        }
        out.push_str("# HELP steerfeed_throttle_cards_total Cards served per throttle and kind.\n");
        out.push_str("# TYPE steerfeed_throttle_cards_total counter\n");
        for ((t, kind), n) in &m.throttles {
            let _ = writeln!(
                out,
                "steerfeed_throttle_cards_total{{throttle=\"{t}\",kind=\"{kind}\"}} {n}"
            );
        }
        out.push_str("# HELP steerfeed_feed_stopped_total Feed requests a gate answered with a card and no items.\n");
        out.push_str("# TYPE steerfeed_feed_stopped_total counter\n");
        let _ = writeln!(out, "steerfeed_feed_stopped_total {}", m.stopped);
        out.push_str("# HELP steerfeed_profile_pages_total Feed pages served per rank profile.\n");
        out.push_str("# TYPE steerfeed_profile_pages_total counter\n");
        for (p, (pages, _)) in &m.profiles {
            let _ = writeln!(
                out,
                "steerfeed_profile_pages_total{{profile=\"{}\"}} {pages}",
                escape(p)
            );
        }
        out.push_str("# HELP steerfeed_profile_items_total Feed items served per rank profile.\n");
        out.push_str("# TYPE steerfeed_profile_items_total counter\n");
        for (p, (_, items)) in &m.profiles {
            let _ = writeln!(
                out,
                "steerfeed_profile_items_total{{profile=\"{}\"}} {items}",
                escape(p)
            );
        }
        out
    }
}

/// Appends the engine's page pool counts to `out` (the exposition format).
pub fn render_pools(out: &mut String, counts: steerfeed::PoolCounts) {
    out.push_str("# HELP steerfeed_page_pools_total Page pools left by feed pages, by what became of them.\n");
    out.push_str("# TYPE steerfeed_page_pools_total counter\n");
    for (outcome, n) in [
        ("kept", counts.kept),
        ("refused", counts.refused),
        ("failed", counts.failed),
    ] {
        let _ = writeln!(
            out,
            "steerfeed_page_pools_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
}

/// `text` (the exposition format) with `name="value"` first among every sample's labels.
pub fn with_label(text: &str, name: &str, value: &str) -> String {
    let label = format!("{name}=\"{}\"", escape(value));
    let mut out = String::with_capacity(text.len() + text.lines().count() * (label.len() + 3));
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let (metric, rest) = line.split_at(name_end);
            out.push_str(metric);
            match rest.strip_prefix('{') {
                Some(labels) if labels.starts_with('}') => {
                    let _ = write!(out, "{{{label}{labels}");
                }
                Some(labels) => {
                    let _ = write!(out, "{{{label},{labels}");
                }
                None => {
                    let _ = write!(out, "{{{label}}}{rest}");
                }
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use steerfeed::{Card, CardKind, StageReport, VideoId};

    use super::*;

    #[test]
    fn a_label_goes_first_on_every_sample_and_nowhere_else() {
        let text = "# HELP a x\n# TYPE a counter\na 3\nb{route=\"/v1\",le=\"1\"} 2\nc{} 1\n";
        let got = with_label(text, "replica", "r\"1");
        assert_eq!(
            got,
            "# HELP a x\n# TYPE a counter\na{replica=\"r\\\"1\"} 3\n\
             b{replica=\"r\\\"1\",route=\"/v1\",le=\"1\"} 2\nc{replica=\"r\\\"1\"} 1\n"
        );
    }

    #[test]
    fn traces_and_requests_render_as_prometheus_text() {
        let m = Metrics::default();
        m.request("/v1/feed", 200, 0.004);
        m.request("/v1/feed", 200, 0.02);
        let mut trace = Trace::default();
        trace.stages.push(StageReport {
            stage: "following",
            role: Role::Source,
            input: 0,
            output: 12,
            removed: Vec::new(),
            card: None,
            micros: 300,
        });
        trace.stages.push(StageReport {
            stage: "consent",
            role: Role::Filter,
            input: 12,
            output: 10,
            removed: vec![VideoId::new("v1").unwrap(), VideoId::new("v2").unwrap()],
            card: None,
            micros: 90,
        });
        trace.stages.push(StageReport {
            stage: "checkin",
            role: Role::Throttle,
            input: 10,
            output: 10,
            removed: Vec::new(),
            card: Some(Card {
                kind: CardKind::Checkin,
                position: 0,
                message: "hi".into(),
            }),
            micros: 1,
        });
        m.trace(&trace, 10);
        let text = m.render();
        assert!(text.contains(
            "steerfeed_http_request_duration_seconds_bucket{route=\"/v1/feed\",status=\"200\",le=\"0.005\"} 1"
        ), "{text}");
        assert!(text.contains(
            "steerfeed_http_request_duration_seconds_count{route=\"/v1/feed\",status=\"200\"} 2"
        ));
        assert!(text.contains("steerfeed_source_candidates_total{source=\"following\"} 12"));
        assert!(text.contains("steerfeed_filter_removed_total{filter=\"consent\"} 2"));
        assert!(
            text.contains(
                "steerfeed_throttle_cards_total{throttle=\"checkin\",kind=\"checkin\"} 1"
            )
        );
        assert!(text.contains("steerfeed_stage_duration_seconds_count{stage=\"following\"} 1"));
        assert!(text.contains("steerfeed_feed_stopped_total 0"));
        assert!(!text.contains("steerfeed_profile_pages_total{"));
        m.profile("default", 10);
        m.profile("default", 0);
        m.profile("b_side", 7);
        let text = m.render();
        assert!(text.contains("steerfeed_profile_pages_total{profile=\"default\"} 2"));
        assert!(text.contains("steerfeed_profile_items_total{profile=\"default\"} 10"));
        assert!(text.contains("steerfeed_profile_pages_total{profile=\"b_side\"} 1"));
        assert!(text.contains("steerfeed_profile_items_total{profile=\"b_side\"} 7"));
    }
}

//! A short server-side history of the metrics, for the console's charts: `/metrics` is
//! cumulative, so rates and latencies over the last hours need readings kept over time.
//!
//! Every `server.metrics_sample_s` the sidecar takes a [`Sample`] (the cumulative
//! [`Reading`] of the metrics, the events logged and the catalogue's size) and keeps the
//! newest `server.metrics_history_s` worth of them. [`History::series`] turns the samples
//! in a window into points: the difference between two samples is what happened between
//! them, so a point over any span of samples is exact, not an average of averages.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use crate::metrics::{Histogram, Reading};

/// One reading of everything the history follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When, in seconds since the Unix epoch (for labels only: the wall clock may step).
    pub at: f64,
    /// When, in seconds on a monotonic clock: what spans and windows are measured on.
    pub t: f64,
    /// Events logged so far.
    pub events: u64,
    /// Videos in the catalogue (not deleted).
    pub videos: u64,
    /// The metrics.
    pub reading: Reading,
}

/// The samples kept.
#[derive(Debug)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
    keep: usize,
}

/// Most points one series answers.
pub const MAX_POINTS: usize = 360;
/// Most samples a history keeps (`server.metrics_history_s / server.metrics_sample_s`
/// may not ask for more).
pub const MAX_SAMPLES: u64 = 20_000;

/// One point of a series: what happened between two samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Point {
    /// The end of the span, in seconds since the Unix epoch.
    pub at: f64,
    /// The span's length in seconds.
    pub seconds: f64,
    /// Events logged per second.
    pub events_per_s: f64,
    /// Feeds served (2xx) per second.
    pub feeds_per_s: f64,
    /// Videos in the catalogue at the end.
    pub videos: u64,
    /// Latency of the feeds served.
    pub feed: Latency,
    /// Latency per pipeline stage that ran in the span.
    #[schema(value_type = BTreeMap<String, Latency>)]
    pub stages: BTreeMap<&'static str, Latency>,
    /// Candidates each source proposed per feed whose pipeline ran.
    #[schema(value_type = BTreeMap<String, f64>)]
    pub candidates_per_feed: BTreeMap<&'static str, f64>,
}

/// Latency over a span, in milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Latency {
    /// Observations.
    pub count: u64,
    /// The mean.
    pub mean_ms: f64,
    /// The median, as the upper bound of its histogram bucket.
    pub p50_ms: f64,
    /// The 99th percentile, as the upper bound of its histogram bucket.
    pub p99_ms: f64,
}

impl Latency {
    fn of(h: &Histogram) -> Self {
        Self {
            count: h.count(),
            mean_ms: h.mean_ms(),
            p50_ms: h.quantile_ms(0.5),
            p99_ms: h.quantile_ms(0.99),
        }
    }
}

impl History {
    /// A history keeping at most `keep` samples (2 to [`MAX_SAMPLES`]).
    pub fn new(keep: usize) -> Self {
        Self {
            samples: Mutex::new(VecDeque::new()),
            keep: keep.clamp(2, MAX_SAMPLES as usize),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `sample`, dropping the oldest beyond the limit.
    pub fn push(&self, sample: Sample) {
        let mut s = self.lock();
        s.push_back(sample);
        while s.len() > self.keep {
            s.pop_front();
        }
    }

    /// Samples kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True before the first sample.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The samples of the last `window_s` seconds before `now` (on the samples'
    /// monotonic clock, `t`), and the one just before the window, which starts its first
    /// span, as at most `points` points, oldest first, each spanning whole samples.
    pub fn series(&self, now: f64, window_s: f64, points: usize) -> Vec<Point> {
        let s = self.lock();
        let from = now - window_s;
        let first = s.iter().rposition(|x| x.t <= from).unwrap_or(0);
        let kept: Vec<&Sample> = s.iter().skip(first).collect();
        if kept.len() < 2 {
            return Vec::new();
        }
        let spans = kept.len() - 1;
        let points = points.clamp(1, MAX_POINTS).min(spans);
        // Sample indexes at the span boundaries, evenly spread.
        let bounds: Vec<usize> = (0..=points).map(|i| i * spans / points).collect();
        bounds
            .windows(2)
            .filter_map(|w| match w {
                [a, b] if b > a => Some(point(kept[*a], kept[*b])),
                _ => None,
            })
            .collect()
    }
}

fn point(a: &Sample, b: &Sample) -> Point {
    let seconds = (b.t - a.t).max(1e-3);
    let feed = b.reading.feed.since(&a.reading.feed);
    let feeds = feed.count();
    let traced = b.reading.traced.saturating_sub(a.reading.traced);
    let stages = b
        .reading
        .stages
        .iter()
        .filter_map(|(name, h)| {
            let d = match a.reading.stages.get(name) {
                Some(e) => h.since(e),
                None => h.clone(),
            };
            (d.count() > 0).then(|| (*name, Latency::of(&d)))
        })
        .collect();
    let candidates_per_feed = b
        .reading
        .candidates
        .iter()
        .filter_map(|(name, n)| {
            let d = n.saturating_sub(a.reading.candidates.get(name).copied().unwrap_or(0));
            (traced > 0).then(|| (*name, d as f64 / traced as f64))
        })
        .collect();
    Point {
        at: b.at,
        seconds,
        events_per_s: b.events.saturating_sub(a.events) as f64 / seconds,
        feeds_per_s: feeds as f64 / seconds,
        videos: b.videos,
        feed: Latency::of(&feed),
        stages,
        candidates_per_feed,
    }
}

#[cfg(test)]
mod tests {
    use steerfeed::{Role, StageReport, Trace};

    use super::*;
    use crate::metrics::Metrics;

    fn trace(micros: u64, proposed: usize) -> Trace {
        let mut t = Trace::default();
        t.stages.push(StageReport {
            stage: "following",
            role: Role::Source,
            input: 0,
            output: proposed,
            removed: Vec::new(),
            card: None,
            micros,
        });
        t
    }

    /// Feeds at known latencies between samples: each point reports exactly the
    /// requests, events and candidates of its own span.
    #[test]
    fn points_are_the_differences_between_samples() {
        let m = Metrics::default();
        let h = History::new(100);
        let sample = |at: f64, events: u64| Sample {
            at: 1e9 + at,
            t: at,
            events,
            videos: 7,
            reading: m.reading(),
        };
        h.push(sample(0.0, 0));
        // Span 1: 10 feeds at 2 ms, 30 events.
        for _ in 0..10 {
            m.request("/v1/feed", 200, 0.002);
            m.trace(&trace(400, 5), 5);
        }
        h.push(sample(10.0, 30));
        // Span 2: 4 feeds at 40 ms and one at 200 ms, 5 events; a gate stopped the last
        // (traced, no candidate); a refused feed (401, 429) and an error (503) are no
        // feeds served, nor is another route.
        for _ in 0..4 {
            m.request("/v1/feed", 200, 0.04);
            m.trace(&trace(30_000, 2), 2);
        }
        m.request("/v1/feed", 200, 0.2);
        m.trace(&trace(10, 0), 0);
        m.request("/v1/feed", 401, 0.0001);
        m.request("/v1/feed", 429, 0.0001);
        m.request("/v1/feed", 503, 3.0);
        m.request("/v1/events", 200, 1.0);
        h.push(sample(20.0, 35));

        let points = h.series(20.0, 100.0, 10);
        assert_eq!(points.len(), 2);
        let (p1, p2) = (&points[0], &points[1]);
        assert_eq!((p1.at, p1.seconds), (1e9 + 10.0, 10.0));
        assert!((p1.events_per_s - 3.0).abs() < 1e-9);
        assert!((p1.feeds_per_s - 1.0).abs() < 1e-9);
        assert_eq!(p1.feed.count, 10);
        assert!((p1.feed.mean_ms - 2.0).abs() < 1e-9);
        assert_eq!(p1.feed.p99_ms, 2.5);
        assert_eq!(p1.stages["following"].count, 10);
        assert!((p1.stages["following"].mean_ms - 0.4).abs() < 1e-9);
        assert!((p1.candidates_per_feed["following"] - 5.0).abs() < 1e-9);

        assert_eq!(p2.feed.count, 5);
        assert!((p2.feed.mean_ms - (4.0 * 40.0 + 200.0) / 5.0).abs() < 1e-9);
        assert_eq!(p2.feed.p50_ms, 50.0);
        assert_eq!(p2.feed.p99_ms, 250.0);
        assert!((p2.events_per_s - 0.5).abs() < 1e-9);
        assert!((p2.candidates_per_feed["following"] - 8.0 / 5.0).abs() < 1e-9);
        assert!((p2.feeds_per_s - 0.5).abs() < 1e-9);

        // One point over both spans is their sum, not an average of the two.
        let one = h.series(20.0, 100.0, 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].feed.count, 15);
        assert!((one[0].events_per_s - 35.0 / 20.0).abs() < 1e-9);
        // A window holding only the last span.
        let last = h.series(20.0, 10.0, 10);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].feed.count, 5);
    }

    #[test]
    fn the_oldest_samples_go_first() {
        let h = History::new(3);
        for i in 0..5 {
            h.push(Sample {
                at: f64::from(i),
                t: f64::from(i),
                events: 0,
                videos: 0,
                reading: Reading::default(),
            });
        }
        assert_eq!(h.len(), 3);
        let points = h.series(4.0, 100.0, 10);
        assert_eq!(points.iter().map(|p| p.at).collect::<Vec<_>>(), [3.0, 4.0]);
    }
}

//! Item-to-item co-engagement, kept up to date as events arrive.
//!
//! Each user's last `window` engagements are remembered. When a user engages with a
//! video, every video in that window gains co-engagement with it, weighted by the
//! weaker of the two engagements and by how close in time they were. Weights decay
//! exponentially with a half-life, so what people engage with together *now* counts
//! most; each video keeps its strongest `max_neighbors` links. The store rebuilds this
//! from the event log at start-up and feeds it every new event.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use jiff::Timestamp;
pub use steerfeed_core::event::engagement_weight;
use steerfeed_core::ports::CoEngagement;
use steerfeed_core::{EventKind, Result, UserId, VideoId};

/// Tunables of [`CoEngagementIndex`], one default each.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoEngagementParams {
    /// Engagements remembered per user. Default 50.
    pub window: usize,
    /// Half-life of a co-engagement weight, in hours. Default 168 (a week).
    pub half_life_h: f64,
    /// Two engagements this many hours apart count half as much as simultaneous ones. Default 24.
    pub proximity_h: f64,
    /// Links kept per video. Default 200.
    pub max_neighbors: usize,
}

impl Default for CoEngagementParams {
    fn default() -> Self {
        Self {
            window: 50,
            half_life_h: 168.0,
            proximity_h: 24.0,
            max_neighbors: 200,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Decayed {
    value: f32,
    at: Timestamp,
}

fn hours_between(a: Timestamp, b: Timestamp) -> f64 {
    (a.as_millisecond() - b.as_millisecond()).unsigned_abs() as f64 / 3_600_000.0
}

impl Decayed {
    fn at(&self, now: Timestamp, half_life_h: f64) -> f32 {
        if now <= self.at {
            return self.value;
        }
        self.value * 0.5f64.powf(hours_between(now, self.at) / half_life_h) as f32
    }
}

#[derive(Debug, Default)]
struct Inner {
    recent: HashMap<UserId, VecDeque<(VideoId, f32, Timestamp)>>,
    links: HashMap<VideoId, HashMap<VideoId, Decayed>>,
}

/// An in-memory, incrementally updated co-engagement index.
#[derive(Debug, Default)]
pub struct CoEngagementIndex {
    params: CoEngagementParams,
    inner: RwLock<Inner>,
}

impl CoEngagementIndex {
    /// An empty index.
    pub fn new(params: CoEngagementParams) -> Self {
        Self {
            params,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// Records one event (call once per event; the store deduplicates retries).
    pub fn record(&self, user: &UserId, kind: &EventKind, at: Timestamp) {
        let Some(video) = kind.video() else { return };
        let w = engagement_weight(kind);
        if w <= 0.0 {
            return;
        }
        let p = self.params;
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window: Vec<(VideoId, f32, Timestamp)> = inner
            .recent
            .get(user)
            .map(|r| r.iter().filter(|(v, _, _)| v != video).cloned().collect())
            .unwrap_or_default();
        for (other, w_other, at_other) in window {
            let pair =
                w.min(w_other) * 0.5f64.powf(hours_between(at, at_other) / p.proximity_h) as f32;
            for (a, b) in [(video, &other), (&other, video)] {
                let links = inner.links.entry(a.clone()).or_default();
                let e = links.entry(b.clone()).or_insert(Decayed { value: 0.0, at });
                let later = e.at.max(at);
                e.value = e.at(later, p.half_life_h) + pair;
                e.at = later;
                if links.len() > 2 * p.max_neighbors {
                    prune(links, p.max_neighbors, later, p.half_life_h);
                }
            }
        }
        let ring = inner.recent.entry(user.clone()).or_default();
        ring.push_back((video.clone(), w, at));
        while ring.len() > p.window {
            ring.pop_front();
        }
    }
}

fn prune(links: &mut HashMap<VideoId, Decayed>, keep: usize, now: Timestamp, half_life_h: f64) {
    let mut all: Vec<(VideoId, f32)> = links
        .iter()
        .map(|(v, d)| (v.clone(), d.at(now, half_life_h)))
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (v, _) in all.into_iter().skip(keep) {
        links.remove(&v);
    }
}

impl CoEngagement for CoEngagementIndex {
    fn co_engaged(
        &self,
        video: &VideoId,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(VideoId, f32)>> {
        let inner = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(links) = inner.links.get(video) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(VideoId, f32)> = links
            .iter()
            .map(|(v, d)| (v.clone(), d.at(now, self.params.half_life_h)))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out.truncate(limit);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> VideoId {
        VideoId::new(s).unwrap()
    }

    fn like(s: &str) -> EventKind {
        EventKind::Like { video: v(s) }
    }

    fn t(h: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + h * 3600).unwrap()
    }

    #[test]
    fn co_engaged_videos_link_both_ways_and_decay() {
        let idx = CoEngagementIndex::new(CoEngagementParams::default());
        let (a, b) = (UserId::new("a").unwrap(), UserId::new("b").unwrap());
        idx.record(&a, &like("x"), t(0));
        idx.record(&a, &like("y"), t(0));
        idx.record(&b, &like("x"), t(1));
        idx.record(&b, &like("z"), t(1));
        idx.record(
            &b,
            &EventKind::Remix {
                video: v("y"),
                new_video: None,
            },
            t(1),
        );
        let from_x = idx.co_engaged(&v("x"), t(1), 10).unwrap();
        let ids: Vec<&str> = from_x.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(ids, vec!["y", "z"], "y was co-engaged by two users");
        let from_z = idx.co_engaged(&v("z"), t(1), 10).unwrap();
        assert!(from_z.iter().any(|(v, _)| v.as_str() == "x"));
        let later = idx.co_engaged(&v("x"), t(1 + 168), 10).unwrap();
        assert!(
            (later[0].1 - from_x[0].1 / 2.0).abs() < 1e-3,
            "one half-life halves the weight"
        );
    }

    #[test]
    fn impressions_and_skips_do_not_count() {
        let idx = CoEngagementIndex::new(CoEngagementParams::default());
        let a = UserId::new("a").unwrap();
        idx.record(&a, &EventKind::Impression { video: v("x") }, t(0));
        idx.record(&a, &EventKind::Skip { video: v("y") }, t(0));
        idx.record(&a, &like("z"), t(0));
        assert!(idx.co_engaged(&v("z"), t(0), 10).unwrap().is_empty());
    }

    #[test]
    fn neighbour_lists_are_bounded() {
        let idx = CoEngagementIndex::new(CoEngagementParams {
            max_neighbors: 5,
            window: 100,
            ..CoEngagementParams::default()
        });
        let a = UserId::new("a").unwrap();
        for i in 0..40 {
            idx.record(&a, &like(&format!("v{i}")), t(0));
        }
        let inner = idx.inner.read().unwrap();
        assert!(inner.links.values().all(|l| l.len() <= 10));
    }
}

//! Item-to-item co-engagement, kept up to date as events arrive.
//!
//! Each user's last `window` engagements are remembered. When a user engages with a
//! video, every video in that window gains co-engagement with it, weighted by the
//! weaker of the two engagements and by how close in time they were. Weights decay
//! exponentially with a half-life, so what people engage with together *now* counts
//! most; each video keeps its strongest `max_neighbors` links. The store rebuilds this
//! from the event log at start-up and feeds it every new event.
//!
//! Videos are interned to dense `u32` numbers the first time they are engaged with, so
//! an engagement updates up to `2 × window` links without cloning or re-hashing ids.
//! The same numbers index the trending list ([`crate::trending`]), which the same events
//! feed.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;

use jiff::Timestamp;
pub use steerfeed_core::event::engagement_weight;
use steerfeed_core::ports::{CoEngagement, Trending};
use steerfeed_core::{EventKind, Result, UserId, VideoId};

use crate::trending::{Trend, TrendingParams};

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
    /// A pair `k` engagements apart in a user's sequence counts `sequence_decay^(k-1)`:
    /// what people engage with next to each other says more than what they engaged
    /// with once in the same week, however the engagements are spaced in time. 1 turns
    /// it off. Default 1 (on MicroLens, with time proximity already counted, a decay
    /// per position did not help on the validation split).
    pub sequence_decay: f64,
    /// Weight of a link against the order of the engagements (from the later video to
    /// the earlier) relative to one along it (from the earlier to what came next): 1 is
    /// symmetric, lower makes the links say "people who engaged with this engaged with
    /// that next". Default 0.1.
    pub backward: f64,
    /// A link's weight is divided by `(engagement of the one video × engagement of the
    /// other)^popularity_exponent`, each the video's decayed sum of engagement weights
    /// (the same half-life): 0 keeps raw co-engagement, which favours what everyone
    /// engages with; 0.5 makes it the cosine of item-kNN. Default 0.
    pub popularity_exponent: f64,
}

impl Default for CoEngagementParams {
    fn default() -> Self {
        Self {
            window: 50,
            half_life_h: 168.0,
            proximity_h: 24.0,
            max_neighbors: 200,
            sequence_decay: 1.0,
            backward: 0.1,
            popularity_exponent: 0.0,
        }
    }
}

impl CoEngagementParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, field: &'static str, got: String| {
            if ok {
                Ok(())
            } else {
                Err(steerfeed_core::Error::invalid(field, got))
            }
        };
        let positive = |x: f64| x.is_finite() && x > 0.0;
        let unit = |x: f64| x > 0.0 && x <= 1.0;
        check(
            (1..=10_000).contains(&self.window),
            "rank.co_engagement.index.window",
            format!("{} is not in 1..=10000", self.window),
        )?;
        check(
            positive(self.half_life_h),
            "rank.co_engagement.index.half_life_h",
            format!("{} is not positive", self.half_life_h),
        )?;
        check(
            positive(self.proximity_h),
            "rank.co_engagement.index.proximity_h",
            format!("{} is not positive", self.proximity_h),
        )?;
        check(
            (1..=100_000).contains(&self.max_neighbors),
            "rank.co_engagement.index.max_neighbors",
            format!("{} is not in 1..=100000", self.max_neighbors),
        )?;
        check(
            unit(self.sequence_decay),
            "rank.co_engagement.index.sequence_decay",
            format!("{} is not in (0, 1]", self.sequence_decay),
        )?;
        check(
            unit(self.backward),
            "rank.co_engagement.index.backward",
            format!("{} is not in (0, 1]", self.backward),
        )?;
        check(
            (0.0..=1.0).contains(&self.popularity_exponent),
            "rank.co_engagement.index.popularity_exponent",
            format!("{} is not in [0, 1]", self.popularity_exponent),
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Decayed {
    value: f32,
    /// Milliseconds since the epoch.
    at: i64,
}

fn hours_between(a: i64, b: i64) -> f64 {
    (a - b).unsigned_abs() as f64 / 3_600_000.0
}

impl Decayed {
    fn at(&self, now: i64, half_life_h: f64) -> f32 {
        if now <= self.at {
            return self.value;
        }
        self.value * 0.5f64.powf(hours_between(now, self.at) / half_life_h) as f32
    }
}

/// A hasher for the interned `u32` video numbers (a multiplicative hash; the numbers
/// are dense, so this spreads them well and costs one multiplication).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Links = HashMap<u32, Decayed, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default)]
struct Inner {
    /// Video id → its number; `names[n]` is the id of number `n`, `links[n]` its links,
    /// `engaged[n]` its decayed sum of engagement weights.
    ids: HashMap<VideoId, u32>,
    names: Vec<VideoId>,
    links: Vec<Links>,
    engaged: Vec<Decayed>,
    /// Per user, the last engagements: (video number, weight, ms).
    recent: HashMap<UserId, VecDeque<(u32, f32, i64)>>,
    /// What rises now, by video number.
    trend: Trend,
}

impl Inner {
    fn intern(&mut self, video: &VideoId) -> u32 {
        if let Some(&n) = self.ids.get(video) {
            return n;
        }
        let n = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.ids.insert(video.clone(), n);
        self.names.push(video.clone());
        self.links.push(Links::default());
        self.engaged.push(Decayed { value: 0.0, at: 0 });
        n
    }

    fn record(&mut self, p: &CoEngagementParams, user: &UserId, kind: &EventKind, at: Timestamp) {
        let Some(video) = kind.video() else { return };
        let w = engagement_weight(kind);
        if w <= 0.0 {
            return;
        }
        let at = at.as_millisecond();
        let me = self.intern(video);
        // Only a popularity exponent reads the engagement sums.
        if p.popularity_exponent > 0.0
            && let Some(d) = self.engaged.get_mut(me as usize)
        {
            let later = d.at.max(at);
            d.value =
                d.at(later, p.half_life_h) + Decayed { value: w, at }.at(later, p.half_life_h);
            d.at = later;
        }
        let Inner {
            recent,
            links,
            trend,
            ..
        } = self;
        let ring = match recent.get_mut(user) {
            Some(r) => r,
            None => recent.entry(user.clone()).or_default(),
        };
        // The strongest engagement this person already had with the video among their
        // remembered ones: the trend counts each person once, by their strongest.
        let mut before = 0.0f32;
        // The ring is oldest first: the k-th newest earlier engagement is k apart.
        let n = ring.len();
        for (i, &(other, w_other, at_other)) in ring.iter().enumerate() {
            if other == me {
                before = before.max(w_other);
                continue;
            }
            let apart = (n - i) as i32;
            let pair = w.min(w_other)
                * (0.5f64.powf(hours_between(at, at_other) / p.proximity_h)
                    * p.sequence_decay.powi(apart - 1)) as f32;
            // The earlier of the two (by event time; arrival order when equal) links
            // along the order to the later one, and back at `backward`: an event
            // delivered late still links the way it happened.
            let (first, then) = if at_other <= at {
                (other, me)
            } else {
                (me, other)
            };
            let backward = pair * p.backward as f32;
            for (a, b, pair) in [(first, then, pair), (then, first, backward)] {
                let Some(l) = links.get_mut(a as usize) else {
                    continue;
                };
                let e = l.entry(b).or_insert(Decayed { value: 0.0, at });
                let later = e.at.max(at);
                e.value = e.at(later, p.half_life_h) + pair;
                e.at = later;
                if l.len() > 2 * p.max_neighbors {
                    prune(l, p.max_neighbors, later, p.half_life_h);
                }
            }
        }
        if w > before {
            trend.record(me, w - before, at);
        }
        ring.push_back((me, w, at));
        while ring.len() > p.window {
            ring.pop_front();
        }
    }
}

/// An in-memory, incrementally updated co-engagement index, with the trending list the
/// same events feed.
#[derive(Debug, Default)]
pub struct CoEngagementIndex {
    params: CoEngagementParams,
    inner: RwLock<Inner>,
}

impl CoEngagementIndex {
    /// An empty index, its trending list with the default [`TrendingParams`].
    pub fn new(params: CoEngagementParams) -> Self {
        Self::with_trending(params, TrendingParams::default())
    }

    /// An empty index whose trending list uses `trending`.
    pub fn with_trending(params: CoEngagementParams, trending: TrendingParams) -> Self {
        Self {
            params,
            inner: RwLock::new(Inner {
                trend: Trend::new(trending),
                ..Inner::default()
            }),
        }
    }

    /// Records one event (call once per event; the store deduplicates retries).
    pub fn record(&self, user: &UserId, kind: &EventKind, at: Timestamp) {
        self.record_all([(user, kind, at)]);
    }

    /// Forgets a person's recent engagements (they were erased): their later events, or
    /// those of someone new under their id, link to nothing of theirs. The links their
    /// events added between videos stay (anonymous sums, not per person).
    pub fn forget_user(&self, user: &UserId) {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recent
            .remove(user);
    }

    /// Records events in order, taking the index's lock once ([`CoEngagementIndex::record`]
    /// for each).
    pub fn record_all<'a>(
        &self,
        events: impl IntoIterator<Item = (&'a UserId, &'a EventKind, Timestamp)>,
    ) {
        let mut inner = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (user, kind, at) in events {
            inner.record(&self.params, user, kind, at);
        }
    }
}

fn prune(links: &mut Links, keep: usize, now: i64, half_life_h: f64) {
    let mut all: Vec<(u32, f32)> = links
        .iter()
        .map(|(v, d)| (*v, d.at(now, half_life_h)))
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
        let Some((&me, links)) = inner
            .ids
            .get(video)
            .and_then(|n| Some((n, inner.links.get(*n as usize)?)))
        else {
            return Ok(Vec::new());
        };
        let now = now.as_millisecond();
        let hl = self.params.half_life_h;
        let names = &inner.names;
        let alpha = self.params.popularity_exponent;
        // `engaged^-alpha` of a video number (1 with the exponent at 0).
        let damp = |n: u32| -> f32 {
            if alpha == 0.0 {
                return 1.0;
            }
            let e = inner.engaged.get(n as usize).map_or(0.0, |d| d.at(now, hl));
            if e > 0.0 {
                f64::from(e).powf(-alpha) as f32
            } else {
                1.0
            }
        };
        let own = damp(me);
        // Weights by number first: only the `limit` kept are sorted and named (a popular
        // video links to thousands).
        let mut out: Vec<(&VideoId, f32)> = links
            .iter()
            .filter_map(|(v, d)| Some((names.get(*v as usize)?, d.at(now, hl) * own * damp(*v))))
            .collect();
        let order = |a: &(&VideoId, f32), b: &(&VideoId, f32)| {
            b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0))
        };
        if out.len() > limit {
            if limit == 0 {
                return Ok(Vec::new());
            }
            out.select_nth_unstable_by(limit - 1, order);
            out.truncate(limit);
        }
        out.sort_unstable_by(order);
        Ok(out.into_iter().map(|(v, w)| (v.clone(), w)).collect())
    }
}

impl Trending for CoEngagementIndex {
    fn trending(&self, now: Timestamp, limit: usize) -> Result<Vec<(VideoId, f32)>> {
        let inner = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(inner
            .trend
            .top(now.as_millisecond(), limit)
            .into_iter()
            .filter_map(|(n, score)| Some((inner.names.get(n as usize)?.clone(), score)))
            .collect())
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

    /// Ten people like `seed` then `hit` (liked by 90 more people on its own); two like
    /// `seed` then `niche` (liked by nobody else). Raw co-engagement puts the hit first;
    /// with the exponent at 0.5 each link is divided by the square root of the two
    /// videos' engagement sums, the cosine of item-kNN, and the niche video comes first.
    #[test]
    fn a_popularity_exponent_divides_links_by_both_videos_engagement() {
        let record = |idx: &CoEngagementIndex| {
            for i in 0..10 {
                let who = UserId::new(format!("p{i}")).unwrap();
                idx.record(&who, &like("seed"), t(0));
                idx.record(&who, &like("hit"), t(0));
            }
            for i in 0..2 {
                let who = UserId::new(format!("q{i}")).unwrap();
                idx.record(&who, &like("seed"), t(0));
                idx.record(&who, &like("niche"), t(0));
            }
            for i in 0..90 {
                let who = UserId::new(format!("r{i}")).unwrap();
                idx.record(&who, &like("hit"), t(0));
            }
        };
        let raw = CoEngagementIndex::new(CoEngagementParams::default());
        record(&raw);
        let names =
            |got: &[(VideoId, f32)]| got.iter().map(|x| x.0.to_string()).collect::<Vec<_>>();
        let got = raw.co_engaged(&v("seed"), t(0), 10).unwrap();
        assert_eq!(names(&got), ["hit", "niche"]);
        // A like weighs 2: seed 12 likes (24), hit 100 (200), niche 2 (4); links along
        // the order 10 × 2 and 2 × 2.
        assert!(
            (got[0].1 - 20.0).abs() < 1e-4 && (got[1].1 - 4.0).abs() < 1e-4,
            "{got:?}"
        );
        let cosine = CoEngagementIndex::new(CoEngagementParams {
            popularity_exponent: 0.5,
            ..CoEngagementParams::default()
        });
        record(&cosine);
        let got = cosine.co_engaged(&v("seed"), t(0), 10).unwrap();
        assert_eq!(names(&got), ["niche", "hit"]);
        let want_niche = 4.0 / (24.0f32 * 4.0).sqrt();
        let want_hit = 20.0 / (24.0f32 * 200.0).sqrt();
        assert!((got[0].1 - want_niche).abs() < 1e-4, "{got:?}");
        assert!((got[1].1 - want_hit).abs() < 1e-4, "{got:?}");
    }

    /// The trending list counts each person once, by their strongest engagement: one
    /// person viewing, liking and remixing a video many times adds 6 (a remix), as one
    /// remix does; two people liking it add 4.
    #[test]
    fn the_trend_counts_each_person_once_by_their_strongest_engagement() {
        let idx = CoEngagementIndex::with_trending(
            CoEngagementParams::default(),
            TrendingParams {
                min_trend: 0.0,
                ..TrendingParams::default()
            },
        );
        let one = UserId::new("one").unwrap();
        let view = EventKind::View {
            video: v("busy"),
            watch_ms: 5_000,
            completed: true,
        };
        let remix = EventKind::Remix {
            video: v("busy"),
            new_video: None,
        };
        for _ in 0..5 {
            for kind in [&view, &like("busy"), &remix] {
                idx.record(&one, kind, t(0));
            }
        }
        for who in ["a", "b"] {
            idx.record(&UserId::new(who).unwrap(), &like("pair"), t(0));
        }
        let got = idx.trending(t(0), 10).unwrap();
        let score = |id: &str| got.iter().find(|x| x.0.as_str() == id).map(|x| x.1);
        assert!((score("busy").unwrap() - 6.0).abs() < 1e-4, "{got:?}");
        assert!((score("pair").unwrap() - 4.0).abs() < 1e-4, "{got:?}");
    }

    /// The `limit` strongest links, strongest first and ties by id, whatever the limit:
    /// checked against a plain sort of every link's weight.
    #[test]
    fn the_strongest_links_come_first_for_every_limit() {
        let idx = CoEngagementIndex::new(CoEngagementParams {
            window: 100,
            ..CoEngagementParams::default()
        });
        // Each user likes the hub and a few of 30 videos: link counts, hence weights,
        // vary and tie.
        for u in 0..40u32 {
            let user = UserId::new(format!("u{u}")).unwrap();
            idx.record(&user, &like("hub"), t(0));
            for k in 0..3 {
                let n = (u * 7 + k * 11) % 30;
                idx.record(&user, &like(&format!("n{n:02}")), t(i64::from(k)));
            }
        }
        let all = idx.co_engaged(&v("hub"), t(5), usize::MAX).unwrap();
        assert!(all.len() >= 25, "{}", all.len());
        let mut oracle = all.clone();
        oracle.sort_by(|a, b| {
            b.1.partial_cmp(&a.1)
                .unwrap()
                .then_with(|| a.0.as_str().cmp(b.0.as_str()))
        });
        assert_eq!(all, oracle);
        assert!(
            all.windows(2).any(|w| w[0].1 == w[1].1),
            "the set has ties to order"
        );
        for limit in [0, 1, 2, 5, 13, all.len() - 1, all.len(), all.len() + 3] {
            let top = idx.co_engaged(&v("hub"), t(5), limit).unwrap();
            assert_eq!(top, all[..limit.min(all.len())], "limit {limit}");
        }
    }

    /// Links point from the earlier engagement to the later one, by event time: the
    /// same pair delivered in order or late gives the same links, and the link back
    /// weighs `backward` of the link along.
    #[test]
    fn links_follow_the_order_of_event_times_not_of_arrival() {
        let (a, b) = (UserId::new("a").unwrap(), UserId::new("b").unwrap());
        let idx = CoEngagementIndex::new(CoEngagementParams::default());
        idx.record(&a, &like("x"), t(0));
        idx.record(&a, &like("y"), t(1));
        // b's engagements arrive late: y's event first, though x happened first.
        idx.record(&b, &like("y"), t(1));
        idx.record(&b, &like("x"), t(0));
        let along = idx.co_engaged(&v("x"), t(1), 10).unwrap()[0].1;
        let back = idx.co_engaged(&v("y"), t(1), 10).unwrap()[0].1;
        let backward = CoEngagementParams::default().backward as f32;
        assert!((back / along - backward).abs() < 1e-4, "{back} / {along}");
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
        assert!(inner.links.iter().all(|l| l.len() <= 10));
    }
}

//! What is rising across the catalogue right now, kept up to date as events arrive.
//!
//! Each engaged video keeps two decayed sums of its engagement weights (a like counts 2,
//! a complete view 1, a remix 6, as for co-engagement), each person counted once by their
//! strongest engagement among their remembered ones (the co-engagement index feeds it
//! only what a person adds above that): a recent sum with a short half-life and a
//! baseline with a long one. Its trend is `recent² / baseline`, the recent volume times
//! how far the recent rate runs above the baseline: a video engaged with steadily for
//! days ranks below one whose engagement climbs now, and a quiet video with one fresh
//! engagement ranks by that one engagement alone.
//!
//! Between two of a video's events both sums only decay, so every trend falls by the same
//! factor per hour (`log2` of it by `2/short − 1/long`): the order of the videos changes
//! only when one of them gets an event. A sorted set keyed on each trend projected to a
//! common instant therefore stays sorted without touching the other videos, and keeps the
//! top `capacity`: exactly while events arrive in time order (an event never lowers a
//! trend then), nearly when one arrives late (it adds less to the recent sum than to the
//! baseline, so it can lower a listed video below one dropped before). A video trends while its trend is at least `min_trend`; as the
//! trend never exceeds the recent sum (the baseline holds everything the recent sum holds,
//! decayed less), that is also the support it needs now. Reading walks the set from the
//! top and stops at the first video below it, so a read costs the videos it returns.

use std::collections::{BTreeSet, HashMap};

use steerfeed_core::Result;

/// The shortest half-life, in hours (a minute): shorter ones would make the keys' slope
/// overflow.
const MIN_HALF_LIFE_H: f64 = 1.0 / 60.0;
/// The longest half-life, in hours (30 days): the engine rebuilds the list at open from
/// the newest million events, which must hold what still counts.
const MAX_HALF_LIFE_H: f64 = 720.0;

/// Tunables of the trending list (`[rank.trending]`), one default each.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrendingParams {
    /// Half-life of the recent sum, in hours. Default 6.
    pub short_half_life_h: f64,
    /// Half-life of the baseline sum, in hours; at least `short_half_life_h`. Default 72.
    pub long_half_life_h: f64,
    /// A video trends only while its trend is at least this, in weighted engagements.
    /// One person adds at most 6 (a remix), so 8 takes at least two people; on a video
    /// nobody engaged with before, four likes at once make 8. Default 8.
    pub min_trend: f64,
    /// Videos kept in the sorted list. Default 2,000.
    pub capacity: usize,
}

impl Default for TrendingParams {
    fn default() -> Self {
        Self {
            short_half_life_h: 6.0,
            long_half_life_h: 72.0,
            min_trend: 8.0,
            capacity: 2_000,
        }
    }
}

impl TrendingParams {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        let fail =
            |field: &'static str, got: String| Err(steerfeed_core::Error::invalid(field, got));
        if !(MIN_HALF_LIFE_H..=MAX_HALF_LIFE_H).contains(&self.short_half_life_h) {
            return fail(
                "rank.trending.short_half_life_h",
                format!(
                    "{} is not in {MIN_HALF_LIFE_H}..={MAX_HALF_LIFE_H} hours",
                    self.short_half_life_h
                ),
            );
        }
        if !(self.short_half_life_h..=MAX_HALF_LIFE_H).contains(&self.long_half_life_h) {
            return fail(
                "rank.trending.long_half_life_h",
                format!(
                    "{} is not in short_half_life_h ({})..={MAX_HALF_LIFE_H} hours",
                    self.long_half_life_h, self.short_half_life_h
                ),
            );
        }
        if !(self.min_trend.is_finite() && self.min_trend >= 0.0) {
            return fail(
                "rank.trending.min_trend",
                format!("{} is not a non-negative number", self.min_trend),
            );
        }
        if !(1..=1_000_000).contains(&self.capacity) {
            return fail(
                "rank.trending.capacity",
                format!("{} is not in 1..=1000000", self.capacity),
            );
        }
        Ok(())
    }

    /// How much `log2` of every trend falls per millisecond.
    fn fall_per_ms(&self) -> f64 {
        (2.0 / self.short_half_life_h - 1.0 / self.long_half_life_h) / 3_600_000.0
    }
}

/// A trend's place in the order: `log2(trend)` projected to the epoch, so keys of
/// videos last updated at different times compare as their trends do now.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key(f64);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    recent: f64,
    baseline: f64,
    /// Milliseconds since the epoch the sums are valid at.
    at: i64,
}

fn decay(value: f64, ms: i64, half_life_h: f64) -> f64 {
    if ms <= 0 {
        return value;
    }
    value * 0.5f64.powf(ms as f64 / (half_life_h * 3_600_000.0))
}

/// The sums and the sorted list, by the interned video numbers of the co-engagement
/// index that holds it.
#[derive(Debug, Default)]
pub(crate) struct Trend {
    params: TrendingParams,
    sums: Vec<Sums>,
    order: BTreeSet<(Key, u32)>,
    listed: HashMap<u32, Key>,
}

impl Trend {
    pub(crate) fn new(params: TrendingParams) -> Self {
        Self {
            params,
            ..Self::default()
        }
    }

    /// Adds an engagement of weight `w` at `at_ms` to video `n`. An event older than the
    /// video's last one adds what is left of it at that time.
    pub(crate) fn record(&mut self, n: u32, w: f32, at_ms: i64) {
        let p = self.params;
        let i = n as usize;
        if self.sums.len() <= i {
            self.sums.resize(i + 1, Sums::default());
        }
        let s = &mut self.sums[i];
        let at = s.at.max(at_ms);
        let w = f64::from(w);
        s.recent = decay(s.recent, at - s.at, p.short_half_life_h)
            + decay(w, at - at_ms, p.short_half_life_h);
        s.baseline = decay(s.baseline, at - s.at, p.long_half_life_h)
            + decay(w, at - at_ms, p.long_half_life_h);
        s.at = at;
        let trend = s.recent * s.recent / s.baseline;
        if !(trend.is_finite() && trend > 0.0) {
            return;
        }
        let key = Key(trend.log2() + at as f64 * p.fall_per_ms());
        if let Some(old) = self.listed.get(&n).copied() {
            self.order.remove(&(old, n));
        } else if self.listed.len() >= p.capacity {
            match self.order.first().copied() {
                Some((min, min_n)) if min < key => {
                    self.order.remove(&(min, min_n));
                    self.listed.remove(&min_n);
                }
                _ => return,
            }
        }
        self.listed.insert(n, key);
        self.order.insert((key, n));
    }

    /// Up to `limit` video numbers with their trend at `now_ms`, highest first, down to
    /// the first below `min_trend`. A video whose last event is later than `now_ms` (a
    /// clock behind the events') counts with its trend at that event, never more.
    pub(crate) fn top(&self, now_ms: i64, limit: usize) -> Vec<(u32, f32)> {
        let p = self.params;
        let fall = p.fall_per_ms();
        let mut out = Vec::with_capacity(limit.min(self.listed.len()));
        for &(Key(key), n) in self.order.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let at = self.sums.get(n as usize).map_or(now_ms, |s| s.at);
            let trend = (key - now_ms.max(at) as f64 * fall).exp2();
            if trend < p.min_trend {
                break;
            }
            // Of the order, only its own value can be out of f32's range: skip it alone.
            if (trend as f32).is_finite() {
                out.push((n, trend as f32));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn params() -> TrendingParams {
        TrendingParams {
            min_trend: 0.0,
            ..TrendingParams::default()
        }
    }

    /// The oracle: the trend of a video from its raw (weight, ms) events, summed directly.
    fn brute(events: &[(f32, i64)], now: i64, p: &TrendingParams) -> f64 {
        let sum = |hl: f64| -> f64 {
            events
                .iter()
                .map(|&(w, at)| f64::from(w) * 0.5f64.powf((now - at) as f64 / (hl * H as f64)))
                .sum()
        };
        let r = sum(p.short_half_life_h);
        r * r / sum(p.long_half_life_h)
    }

    #[test]
    fn a_climbing_video_outranks_a_steady_one_of_more_volume() {
        let mut t = Trend::new(params());
        // Video 0: 2 engagements an hour for three days. Video 1: nothing for days, then
        // 4 an hour for the last three hours (less than a tenth of video 0's volume).
        for h in 0..72 {
            t.record(0, 2.0, h * H);
        }
        for h in 69..72 {
            t.record(1, 4.0, h * H);
        }
        let top = t.top(72 * H, 10);
        assert_eq!(top.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 0]);
    }

    #[test]
    fn the_order_and_scores_match_a_direct_sum_of_the_events_at_any_later_time() {
        let p = params();
        let mut t = Trend::new(p);
        let mut events: Vec<Vec<(f32, i64)>> = vec![Vec::new(); 30];
        // A fixed pseudo-random stream, some events delivered out of order.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for step in 0..600i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 30) as u32;
            let late = if x.is_multiple_of(7) { 2 * H } else { 0 };
            let at = step * H / 10 - late;
            let w = [0.3f32, 1.0, 2.0, 3.0, 6.0][(x >> 8) as usize % 5];
            t.record(n, w, at);
            events[n as usize].push((w, at));
        }
        for now in [60 * H, 61 * H, 90 * H] {
            let got = t.top(now, 30);
            let engaged = events.iter().filter(|e| !e.is_empty()).count();
            assert_eq!(got.len(), engaged);
            for (n, score) in &got {
                let want = brute(&events[*n as usize], now, &p);
                let rel = (f64::from(*score) - want).abs() / want;
                assert!(rel < 1e-3, "video {n} at {now}: {score} against {want}");
            }
            assert!(
                got.windows(2).all(|w| w[0].1 >= w[1].1 * (1.0 - 1e-4)),
                "{got:?}"
            );
        }
    }

    #[test]
    fn a_bounded_list_keeps_exactly_the_top_trends() {
        let p = TrendingParams {
            capacity: 5,
            ..params()
        };
        let mut small = Trend::new(p);
        let mut full = Trend::new(TrendingParams {
            capacity: 1_000,
            ..p
        });
        let mut x: u64 = 99;
        for step in 0..2_000i64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let n = ((x >> 33) % 200) as u32;
            small.record(n, 1.0, step * H / 50);
            full.record(n, 1.0, step * H / 50);
        }
        let now = 41 * H;
        assert_eq!(small.top(now, 5), full.top(now, 5));
    }

    /// A video with one engagement of 6 trends at 6 (recent = baseline = 6); after 3 hours
    /// its trend is 6 · 0.5^(2·3/6 − 3/72) = 3.09, after 4 hours 2.47, below a threshold
    /// of 3. A video with one like (2) never reaches it.
    #[test]
    fn a_trend_fades_below_the_threshold_and_a_read_stops_there() {
        let mut t = Trend::new(TrendingParams {
            min_trend: 3.0,
            ..TrendingParams::default()
        });
        t.record(0, 6.0, 0);
        t.record(1, 2.0, 0);
        let at = |h: i64| t.top(h * H, 10);
        assert_eq!(at(0).iter().map(|x| x.0).collect::<Vec<_>>(), vec![0]);
        assert!((at(0)[0].1 - 6.0).abs() < 1e-4);
        let three = at(3);
        assert_eq!(three.len(), 1);
        assert!((f64::from(three[0].1) - 6.0 * 0.5f64.powf(1.0 - 3.0 / 72.0)).abs() < 1e-3);
        assert!(at(4).is_empty());
        // A clock behind the last event reads the trend at that event, not extrapolated
        // backwards.
        assert!((at(-100)[0].1 - 6.0).abs() < 1e-4);
    }

    #[test]
    fn ranges_are_checked() {
        let ok = TrendingParams::default();
        assert!(ok.validate().is_ok());
        for bad in [
            TrendingParams {
                short_half_life_h: 0.0,
                ..ok
            },
            TrendingParams {
                long_half_life_h: 1.0,
                ..ok
            },
            TrendingParams {
                min_trend: f64::NAN,
                ..ok
            },
            TrendingParams { capacity: 0, ..ok },
            TrendingParams {
                short_half_life_h: 1e-300,
                ..ok
            },
            TrendingParams {
                long_half_life_h: 1e6,
                ..ok
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}

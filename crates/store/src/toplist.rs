//! The in-memory popular and remix-trending lists.
//!
//! Every score decays with the same half-life, so the order of two scores never changes
//! with time: a score `s` valid at `t` is kept as the time-free key
//! `log2(s) + t / half_life`, and the score at `now` is `2^(key − now / half_life)`.
//! Scores only grow when events arrive, so keeping the best `capacity` keys as events
//! update them keeps the exact top list (a deleted video leaves a gap until reopen).

use std::collections::{BTreeSet, HashMap};

use steerfeed_core::VideoId;

#[derive(Debug, Clone, Copy)]
struct Key(f64);

impl PartialEq for Key {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Key {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

pub(crate) struct TopList {
    capacity: usize,
    half_life_ms: f64,
    by_key: BTreeSet<(Key, VideoId)>,
    by_id: HashMap<VideoId, Key>,
}

impl TopList {
    pub fn new(capacity: usize, half_life_ms: f64) -> Self {
        Self {
            capacity,
            half_life_ms,
            by_key: BTreeSet::new(),
            by_id: HashMap::new(),
        }
    }

    fn key(&self, score: f32, at_ms: i64) -> Option<Key> {
        (score > 0.0 && score.is_finite())
            .then(|| Key(f64::from(score).log2() + at_ms as f64 / self.half_life_ms))
    }

    /// Sets the score of `id`, valid at `at_ms`.
    pub fn update(&mut self, id: &VideoId, score: f32, at_ms: i64) {
        let Some(key) = self.key(score, at_ms) else {
            return;
        };
        if let Some(old) = self.by_id.get(id).copied() {
            self.by_key.remove(&(old, id.clone()));
        } else if self.by_id.len() >= self.capacity {
            match self.by_key.first().cloned() {
                Some((min, min_id)) if min < key => {
                    self.by_key.remove(&(min, min_id.clone()));
                    self.by_id.remove(&min_id);
                }
                _ => return,
            }
        }
        self.by_id.insert(id.clone(), key);
        self.by_key.insert((key, id.clone()));
    }

    pub fn remove(&mut self, id: &VideoId) {
        if let Some(k) = self.by_id.remove(id) {
            self.by_key.remove(&(k, id.clone()));
        }
    }

    /// The best `limit` entries with their scores at `now_ms`.
    pub fn top(&self, now_ms: i64, limit: usize) -> Vec<(VideoId, f32)> {
        let shift = now_ms as f64 / self.half_life_ms;
        self.by_key
            .iter()
            .rev()
            .take(limit)
            .map(|(k, id)| (id.clone(), (k.0 - shift).exp2() as f32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(i: usize) -> VideoId {
        VideoId::new(format!("v{i}")).unwrap()
    }

    #[test]
    fn keeps_the_best_and_decays_scores() {
        let hl = 1_000.0;
        let mut t = TopList::new(2, hl);
        t.update(&v(1), 1.0, 0);
        t.update(&v(2), 4.0, 0);
        t.update(&v(3), 2.0, 1_000); // 2 at t=1000 is 4 at t=0: ties v2, not above it
        t.update(&v(4), 0.1, 0);
        let top = t.top(1_000, 10);
        assert_eq!(top.len(), 2);
        assert!(top.iter().any(|(id, _)| *id == v(2)));
        assert!(!top.iter().any(|(id, _)| *id == v(4) || *id == v(1)));
        assert!((top[0].1 - 2.0).abs() < 1e-4);
        t.update(&v(1), 100.0, 0);
        assert_eq!(t.top(0, 1)[0].0, v(1));
        t.remove(&v(1));
        assert_eq!(t.top(0, 10).len(), 1);
    }
}

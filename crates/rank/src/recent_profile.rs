//! The viewer's recent taste: a recency-weighted mean of the embeddings of their last
//! engagements, blended into the long-term interest vector.
//!
//! The interest vector the store keeps decays over a week and weighs every engagement of
//! that week by its kind only, so a varied history blurs into one mean. What someone
//! engaged with in the last few minutes says more about what they want next: the
//! profile weighs the k-th newest engagement `position_decay^k` (times its kind's
//! weight), and the viewer's interest becomes `normalise((1 − share)·long + share·recent)`.
//! Every reader of the interest vector (the `interest_ann` source, the objective's
//! interest term) then sees the blend, at the cost of one history read and a few cached
//! catalogue lookups per request.

use steerfeed_core::ports::Engagement;
use steerfeed_core::vector::dot;
use steerfeed_core::{Embedding, Error, Result, VideoId};

use crate::coengagement::engagement_weight;

/// Cluster centres more similar than this are one interest.
const SAME_INTEREST: f32 = 0.85;

/// `[rank.recent_profile]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecentProfileConfig {
    /// The newest engagements the profile averages. Default 10.
    pub engagements: usize,
    /// The k-th newest (from 0) weighs `position_decay^k`. Default 0.7.
    pub position_decay: f32,
    /// The profile's share of the blended interest vector, in [0, 1]; 0 turns it off
    /// (no history read). Default 0.5.
    pub share: f32,
    /// Most interest directions the `interest_ann` source searches: the newest
    /// `cluster_engagements` engagements are clustered, and each cluster's centre,
    /// blended with the long-term vector as the recent profile is, is searched with an
    /// equal share of the source's quota (PinnerSage's idea: one mean vector blurs a
    /// varied history). 1 searches the one blended vector. Default 1.
    pub interests: usize,
    /// The newest engagements clustered into interests. Default 30.
    pub cluster_engagements: usize,
}

impl Default for RecentProfileConfig {
    fn default() -> Self {
        Self {
            engagements: 10,
            position_decay: 0.7,
            share: 0.5,
            interests: 1,
            cluster_engagements: 30,
        }
    }
}

impl RecentProfileConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if !(1..=1_000).contains(&self.engagements) {
            return Err(Error::invalid(
                "rank.recent_profile.engagements",
                format!("{} is not in 1..=1000", self.engagements),
            ));
        }
        if !(self.position_decay > 0.0 && self.position_decay <= 1.0) {
            return Err(Error::invalid(
                "rank.recent_profile.position_decay",
                format!("{} is not in (0, 1]", self.position_decay),
            ));
        }
        if !(0.0..=1.0).contains(&self.share) {
            return Err(Error::invalid(
                "rank.recent_profile.share",
                format!("{} is not in [0, 1]", self.share),
            ));
        }
        if !(1..=8).contains(&self.interests) {
            return Err(Error::invalid(
                "rank.recent_profile.interests",
                format!("{} is not in 1..=8", self.interests),
            ));
        }
        if !(1..=1_000).contains(&self.cluster_engagements) {
            return Err(Error::invalid(
                "rank.recent_profile.cluster_engagements",
                format!("{} is not in 1..=1000", self.cluster_engagements),
            ));
        }
        Ok(())
    }

    /// The engagements [`RecentProfileConfig::profile`] and
    /// [`RecentProfileConfig::clusters`] read, newest first.
    pub fn history_len(&self) -> usize {
        if self.interests > 1 {
            self.engagements.max(self.cluster_engagements)
        } else {
            self.engagements
        }
    }

    /// The interest clusters of `history` (newest first): up to `interests` centres
    /// (unit directions of the clusters' weighted means), heaviest first, from a weighted k-means
    /// over the newest `cluster_engagements` engagements with an embedding (each weighs
    /// its kind's weight; seeds: the newest, then each time the point farthest from the
    /// seeds so far; ten rounds). Centres with a cosine above 0.85 are merged into one
    /// interest. Empty when fewer than two interests hold a sixth of the weight each:
    /// the one blended vector then serves.
    pub fn clusters(
        &self,
        history: &[Engagement],
        mut embedding: impl FnMut(&VideoId) -> Result<Option<Embedding>>,
    ) -> Result<Vec<Vec<f32>>> {
        if self.interests < 2 {
            return Ok(Vec::new());
        }
        let mut points: Vec<(f32, Embedding)> = Vec::new();
        for e in history.iter().take(self.cluster_engagements) {
            let w = engagement_weight(&e.kind);
            if w <= 0.0 {
                continue;
            }
            if let Some(v) = embedding(&e.video)?
                && points.first().is_none_or(|p| p.1.dim() == v.dim())
            {
                points.push((w, v));
            }
        }
        let k = self.interests.min(points.len());
        if k < 2 {
            return Ok(Vec::new());
        }
        let dim = points[0].1.dim();
        // Farthest-point seeds: deterministic, and spread over the history.
        let mut centres: Vec<Vec<f32>> = vec![points[0].1.as_slice().to_vec()];
        while centres.len() < k {
            let far = points
                .iter()
                .map(|(_, p)| {
                    centres
                        .iter()
                        .map(|c| dot(p.as_slice(), c))
                        .fold(f32::NEG_INFINITY, f32::max)
                })
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i);
            match far {
                Some(i) => centres.push(points[i].1.as_slice().to_vec()),
                None => break,
            }
        }
        let mut assign = vec![0usize; points.len()];
        let mut weights = Vec::new();
        for _ in 0..10 {
            for (a, (_, p)) in assign.iter_mut().zip(&points) {
                *a = centres
                    .iter()
                    .enumerate()
                    .map(|(j, c)| (j, dot(p.as_slice(), c)))
                    .max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.cmp(&x.0)))
                    .map_or(0, |(j, _)| j);
            }
            let mut sums = vec![vec![0.0f32; dim]; centres.len()];
            weights = vec![0.0f32; centres.len()];
            for (&a, (w, p)) in assign.iter().zip(&points) {
                weights[a] += w;
                for (s, x) in sums[a].iter_mut().zip(p.as_slice()) {
                    *s += w * x;
                }
            }
            for ((c, s), w) in centres.iter_mut().zip(sums).zip(&weights) {
                if *w > 0.0 {
                    // The direction of the weighted mean (its length is irrelevant to
                    // the assignment by dot product once normalised).
                    let n = s.iter().map(|x| x * x).sum::<f32>().sqrt();
                    if n > 0.0 {
                        *c = s.iter().map(|x| x / n).collect();
                    }
                }
            }
        }
        // The last round's weights: its assignment is the final one.
        let total: f32 = weights.iter().sum();
        let mut by_weight: Vec<(f32, Vec<f32>)> = weights.into_iter().zip(centres).collect();
        by_weight.sort_by(|a, b| b.0.total_cmp(&a.0));
        // Centres this close are parts of one interest (k-means splits a broad one as
        // readily as it separates two): the lighter joins the heavier.
        let mut kept: Vec<(f32, Vec<f32>)> = Vec::new();
        for (w, c) in by_weight {
            match kept.iter_mut().find(|(_, k)| dot(k, &c) > SAME_INTEREST) {
                Some(k) => k.0 += w,
                None => kept.push((w, c)),
            }
        }
        kept.retain(|(w, _)| total > 0.0 && *w * 6.0 >= total);
        if kept.len() < 2 {
            return Ok(Vec::new());
        }
        kept.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(kept.into_iter().map(|(_, c)| c).collect())
    }

    /// The recent profile of `history` (newest first), unnormalised; `None` when no
    /// engagement with weight has an embedding. `embedding` looks a video's up.
    pub fn profile(
        &self,
        history: &[Engagement],
        mut embedding: impl FnMut(&VideoId) -> Result<Option<Embedding>>,
    ) -> Result<Option<Vec<f32>>> {
        let mut sum: Option<Vec<f32>> = None;
        let mut position = 1.0f32;
        for e in history.iter().take(self.engagements) {
            let w = engagement_weight(&e.kind) * position;
            position *= self.position_decay;
            if w <= 0.0 {
                continue;
            }
            let Some(v) = embedding(&e.video)? else {
                continue;
            };
            let acc = sum.get_or_insert_with(|| vec![0.0; v.dim()]);
            if acc.len() != v.dim() {
                continue;
            }
            for (a, x) in acc.iter_mut().zip(v.as_slice()) {
                *a += w * x;
            }
        }
        Ok(sum)
    }

    /// `normalise((1 − share)·long + share·recent/|recent|)`: the long-term vector alone
    /// when there is no recent profile, the recent one alone when there is no long-term
    /// vector; `None` when neither gives a direction.
    pub fn blend(&self, long: Option<&Embedding>, recent: Option<&[f32]>) -> Option<Embedding> {
        let recent = recent.filter(|r| long.is_none_or(|l| l.dim() == r.len()));
        let Some(recent) = recent else {
            return long.cloned();
        };
        let norm = recent
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            return long.cloned();
        }
        let (a, b) = match long {
            Some(_) => (1.0 - self.share, self.share),
            None => (0.0, 1.0),
        };
        let mixed: Vec<f32> = recent
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let l = long.map_or(0.0, |l| l.as_slice()[i]);
                a * l + b * (*r / norm as f32)
            })
            .collect();
        Embedding::new("interest", &mixed, mixed.len())
            .ok()
            .or_else(|| long.cloned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use jiff::Timestamp;
    use steerfeed_core::EventKind;

    fn liked(id: &str) -> Engagement {
        let video = VideoId::new(id).unwrap();
        Engagement {
            kind: EventKind::Like {
                video: video.clone(),
            },
            video,
            at: Timestamp::UNIX_EPOCH,
        }
    }

    fn unit(v: &[f32]) -> Embedding {
        Embedding::new("e", v, v.len()).unwrap()
    }

    /// A unit vector near axis `axis` of 4 dimensions, tilted by `tilt` toward the next.
    fn near(axis: usize, tilt: f32) -> Embedding {
        let mut v = [0.0f32; 4];
        v[axis] = 1.0;
        v[(axis + 1) % 4] = tilt;
        let n = (1.0 + tilt * tilt).sqrt();
        unit(&v.map(|x| x / n))
    }

    /// Clusters of a history whose i-th engagement has the embedding `of(i)`.
    fn clusters_of(
        cfg: &RecentProfileConfig,
        n: usize,
        of: impl Fn(usize) -> Embedding,
    ) -> Vec<Vec<f32>> {
        let history: Vec<Engagement> = (0..n).map(|i| liked(&format!("v{i}"))).collect();
        cfg.clusters(&history, |id| {
            Ok(Some(of(id.as_str()[1..].parse::<usize>().unwrap())))
        })
        .unwrap()
    }

    #[test]
    fn a_varied_history_splits_into_interests_heaviest_first() {
        let cfg = RecentProfileConfig {
            interests: 3,
            ..RecentProfileConfig::default()
        };
        // Eight engagements near axis 0 and four near axis 2, interleaved.
        let of = |i: usize| {
            if i % 3 == 2 {
                near(2, 0.1 * (i % 4) as f32)
            } else {
                near(0, 0.1 * (i % 5) as f32)
            }
        };
        let c = clusters_of(&cfg, 12, of);
        assert_eq!(c.len(), 2, "{c:?}");
        let unit_c = |c: &[f32]| {
            let n = c.iter().map(|x| x * x).sum::<f32>().sqrt();
            c.iter().map(|x| x / n).collect::<Vec<f32>>()
        };
        assert!(dot(&unit_c(&c[0]), near(0, 0.2).as_slice()) > 0.95, "{c:?}");
        assert!(
            dot(&unit_c(&c[1]), near(2, 0.15).as_slice()) > 0.95,
            "{c:?}"
        );
    }

    #[test]
    fn one_interest_or_a_minor_one_gives_no_split() {
        let cfg = RecentProfileConfig {
            interests: 3,
            ..RecentProfileConfig::default()
        };
        // All near one axis: one interest.
        assert!(clusters_of(&cfg, 12, |i| near(1, 0.05 * i as f32)).is_empty());
        // One of 12 elsewhere: under a sixth of the weight, so no second interest.
        assert!(
            clusters_of(&cfg, 12, |i| if i == 5 {
                near(3, 0.0)
            } else {
                near(1, 0.0)
            })
            .is_empty()
        );
        // Off by configuration.
        let off = RecentProfileConfig::default();
        assert!(clusters_of(&off, 12, |i| near(i % 4, 0.0)).is_empty());
        // Only the newest cluster_engagements count: the older half differs, unseen.
        let short = RecentProfileConfig {
            interests: 3,
            cluster_engagements: 6,
            ..RecentProfileConfig::default()
        };
        assert!(
            clusters_of(&short, 12, |i| if i < 6 {
                near(0, 0.0)
            } else {
                near(2, 0.0)
            })
            .is_empty()
        );
    }

    #[test]
    fn the_newest_engagement_weighs_most_and_missing_embeddings_are_skipped() {
        let cfg = RecentProfileConfig {
            position_decay: 0.5,
            ..RecentProfileConfig::default()
        };
        let history = [liked("x"), liked("gone"), liked("y")];
        let p = cfg
            .profile(&history, |id| {
                Ok(match id.as_str() {
                    "x" => Some(unit(&[1.0, 0.0])),
                    "y" => Some(unit(&[0.0, 1.0])),
                    _ => None,
                })
            })
            .unwrap()
            .unwrap();
        let w = engagement_weight(&history[0].kind);
        // x at position 0 (weight w), y at position 2 (w · 0.25).
        assert!(
            (p[0] - w).abs() < 1e-6 && (p[1] - 0.25 * w).abs() < 1e-6,
            "{p:?}"
        );
        assert!(cfg.profile(&[], |_| Ok(None)).unwrap().is_none());
    }

    #[test]
    fn the_blend_moves_the_interest_toward_the_recent_profile_by_its_share() {
        let long = unit(&[1.0, 0.0]);
        let recent = [0.0, 3.0];
        let at = |share: f32| {
            RecentProfileConfig {
                share,
                ..RecentProfileConfig::default()
            }
            .blend(Some(&long), Some(&recent))
            .unwrap()
        };
        let y = unit(&[0.0, 1.0]);
        assert!((dot(at(0.0).as_slice(), long.as_slice()) - 1.0).abs() < 1e-6);
        assert!((dot(at(1.0).as_slice(), y.as_slice()) - 1.0).abs() < 1e-6);
        // Half and half of two unit vectors: 45°.
        let half = at(0.5);
        assert!((half.as_slice()[0] - half.as_slice()[1]).abs() < 1e-6);
        let cfg = RecentProfileConfig::default();
        assert_eq!(cfg.blend(Some(&long), None), Some(long.clone()));
        assert!(
            (dot(
                cfg.blend(None, Some(&recent)).unwrap().as_slice(),
                y.as_slice()
            ) - 1.0)
                .abs()
                < 1e-6
        );
        assert_eq!(cfg.blend(None, None), None);
        // Opposite vectors at half share cancel: the long-term vector stays.
        assert_eq!(cfg.blend(Some(&long), Some(&[-1.0, 0.0])), Some(long));
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        for bad in [
            RecentProfileConfig {
                engagements: 0,
                ..RecentProfileConfig::default()
            },
            RecentProfileConfig {
                position_decay: 0.0,
                ..RecentProfileConfig::default()
            },
            RecentProfileConfig {
                share: 1.5,
                ..RecentProfileConfig::default()
            },
            RecentProfileConfig {
                share: f32::NAN,
                ..RecentProfileConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(RecentProfileConfig::default().validate().is_ok());
    }
}

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
use steerfeed_core::{Embedding, Error, Result, VideoId};

use crate::coengagement::engagement_weight;

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
}

impl Default for RecentProfileConfig {
    fn default() -> Self {
        Self {
            engagements: 10,
            position_decay: 0.7,
            share: 0.5,
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
        Ok(())
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
    use steerfeed_core::vector::dot;

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

//! Typed score details and the total order on scores.

use std::cmp::Ordering;

/// Calibrated probabilities of each action head for one (user, video) pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionProbs {
    /// Creates a new video inspired by this one.
    pub create: f32,
    /// Remixes it.
    pub remix: f32,
    /// Uses a cameo from it.
    pub cameo_use: f32,
    /// Comments.
    pub comment: f32,
    /// Shares.
    pub share: f32,
    /// Follows the creator.
    pub follow: f32,
    /// Likes.
    pub like: f32,
    /// Watches to the end.
    pub complete_view: f32,
}

impl ActionProbs {
    /// The complete-view head's index in `crate::impression::HEADS` order.
    pub const COMPLETE_VIEW: usize = 7;

    /// The eight probabilities, in `crate::impression::HEADS` order.
    pub fn heads(&self) -> [f32; 8] {
        [
            self.create,
            self.remix,
            self.cameo_use,
            self.comment,
            self.share,
            self.follow,
            self.like,
            self.complete_view,
        ]
    }

    /// The probabilities from an array in `crate::impression::HEADS` order.
    pub fn from_heads(p: [f32; 8]) -> Self {
        Self {
            create: p[0],
            remix: p[1],
            cameo_use: p[2],
            comment: p[3],
            share: p[4],
            follow: p[5],
            like: p[6],
            complete_view: p[7],
        }
    }
}

/// The terms of the objective (docs/design.md §5) for one item, as they were added up. Every
/// served item carries one; explanations are rendered from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreBreakdown {
    /// The action heads' probabilities.
    pub actions: ActionProbs,
    /// Σ s_a · w_a · p_a (s_a: the value scale of the model in force, 1 for the
    /// hand-set heads), the lighter-mode creation boost and the negative-feedback
    /// penalty included.
    pub action_value: f32,
    /// β · tie(user, creator).
    pub tie: f32,
    /// γ · Σ s_c · sim(video, c) over steering concepts (negative for reduce).
    pub steering: f32,
    /// λ(session) · p_passive, subtracted.
    pub consumption_cost: f32,
    /// Freshness term.
    pub freshness: f32,
    /// Cold-start lift for new creators and videos.
    pub cold_start: f32,
    /// Wellbeing shift after a "not great" check-in: lighter content up, heavy down.
    pub wellbeing: f32,
    /// The sum that ranks the item.
    pub total: f32,
}

impl ScoreBreakdown {
    /// Adds the terms up into `total` and returns it.
    pub fn sum(&mut self) -> f32 {
        self.total = self.action_value + self.tie + self.steering - self.consumption_cost
            + self.freshness
            + self.cold_start
            + self.wellbeing;
        self.total
    }
}

/// Compares two scores so that higher comes first and non-finite scores (NaN, ±∞) sink
/// below every finite one. Use it with `sort_by` for a descending, total order.
pub fn rank_order(a: f32, b: f32) -> Ordering {
    match (a.is_finite(), b.is_finite()) {
        (true, true) => b.total_cmp(&a),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn non_finite_scores_sink() {
        let mut v = [f32::NAN, 1.0, f32::INFINITY, -3.0, f32::NEG_INFINITY, 2.0];
        v.sort_by(|a, b| rank_order(*a, *b));
        assert_eq!(&v[..3], &[2.0, 1.0, -3.0]);
        assert!(v[3..].iter().all(|x| !x.is_finite()));
    }

    #[test]
    fn breakdown_sums_its_terms() {
        let mut b = ScoreBreakdown {
            action_value: 1.0,
            tie: 0.5,
            steering: -0.25,
            consumption_cost: 0.5,
            freshness: 0.1,
            cold_start: 0.05,
            ..ScoreBreakdown::default()
        };
        assert!((b.sum() - 0.9).abs() < 1e-6);
        let again = b.sum();
        assert_eq!(b.total, again);
    }

    proptest! {
        #[test]
        fn rank_order_is_a_total_order_consistent_with_descending_finite_values(
            xs in proptest::collection::vec(
                prop_oneof![any::<f32>(), Just(f32::NAN), Just(f32::INFINITY)], 0..64)
        ) {
            let mut sorted = xs.clone();
            sorted.sort_by(|a, b| rank_order(*a, *b));
            let finite: Vec<f32> = sorted.iter().copied().take_while(|x| x.is_finite()).collect();
            prop_assert_eq!(finite.len(), xs.iter().filter(|x| x.is_finite()).count());
            prop_assert!(finite.windows(2).all(|w| w[0] >= w[1]));
        }
    }
}

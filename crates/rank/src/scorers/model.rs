//! The action heads as a linear model over [`HeadInputs`]: the coefficients the scorer
//! applies, the hand-set ones derived from [`ScorerConfig`], and the slot through which
//! a trained model replaces them while the engine serves.

use std::sync::{Arc, RwLock};

use steerfeed_core::{ActionProbs, Error, HeadInputs, Result};

use super::ScorerConfig;
use super::blend::BlendRanker;

/// The features of every head, in coefficient order: `bias` is 1, `prior` and
/// `creator` are the head's own entries of [`HeadInputs::prior`] and
/// [`HeadInputs::creator`], the flags are 0 or 1.
pub const FEATURES: [&str; 9] = [
    "bias",
    "prior",
    "interest",
    "tie",
    "co_engagement",
    "creator",
    "followed",
    "remix_chain",
    "friend_cameo",
];

/// Coefficients of the eight heads (in `steerfeed_core::impression::HEADS` order), each
/// over [`FEATURES`]: `p_a = σ(Σ_f coef[a][f] · x_f)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadModels {
    /// Per head, per feature.
    pub coef: [[f32; 9]; 8],
}

impl HeadModels {
    /// The hand-set heads of `cfg`: bias 0, prior 1, the configured interest, tie,
    /// co-engagement and creator coefficients, and each creation invitation on its own
    /// head (followed creator on create, remix chain on remix, friend's cameo on
    /// cameo_use).
    pub fn from_config(cfg: &ScorerConfig) -> Self {
        let mut coef = [[0.0f32; 9]; 8];
        for (a, (_, h)) in cfg.heads.all().iter().enumerate() {
            coef[a] = [
                0.0,
                1.0,
                h.interest,
                h.tie,
                h.co_engagement,
                h.creator,
                0.0,
                0.0,
                0.0,
            ];
        }
        coef[0][6] = cfg.lifts.followed_creator;
        coef[1][7] = cfg.lifts.remix_chain;
        coef[2][8] = cfg.lifts.friend_cameo;
        Self { coef }
    }

    /// Head `a`'s logit for the inputs `x`.
    pub fn logit(&self, a: usize, x: &HeadInputs) -> f32 {
        let c = &self.coef[a];
        let on = |b: bool| f32::from(u8::from(b));
        c[0] + c[1] * x.prior[a]
            + c[2] * x.interest
            + c[3] * x.tie
            + c[4] * x.co_engagement
            + c[5] * x.creator[a]
            + c[6] * on(x.followed)
            + c[7] * on(x.remix_chain)
            + c[8] * on(x.friend_cameo)
    }

    /// The eight heads' probabilities for the inputs `x` (the follow head is 0 for a
    /// creator the viewer already follows: nobody follows twice).
    pub fn probs(&self, x: &HeadInputs) -> ActionProbs {
        let mut p = ActionProbs::from_heads(std::array::from_fn(|a| {
            1.0 / (1.0 + (-self.logit(a, x)).exp())
        }));
        if x.followed {
            p.follow = 0.0;
        }
        p
    }

    /// Every coefficient is finite and within ±100 (a logit beyond that is certainty).
    pub fn validate(&self) -> Result<()> {
        for (a, c) in self.coef.iter().enumerate() {
            for (f, x) in c.iter().enumerate() {
                if !(x.is_finite() && x.abs() <= 100.0) {
                    return Err(Error::invalid(
                        "model.heads",
                        format!(
                            "{} · {}: {x} is not a number within ±100",
                            steerfeed_core::impression::HEADS[a],
                            FEATURES[f]
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a trained model puts in force: its heads, and its learned second stage when it
/// has one.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoringModel {
    /// The action heads.
    pub heads: HeadModels,
    /// The ranker that re-scores the best candidates' action value, if any.
    pub ranker: Option<BlendRanker>,
}

impl From<HeadModels> for ScoringModel {
    fn from(heads: HeadModels) -> Self {
        Self {
            heads,
            ranker: None,
        }
    }
}

/// A trained model, when one is in force (else the scorer applies the hand-set heads
/// of its configuration), replaced whole while requests run: a request reads the slot
/// once, at the start of its scoring.
#[derive(Debug, Default)]
pub struct ModelSlot {
    current: RwLock<Option<Arc<ScoringModel>>>,
}

impl ModelSlot {
    /// The trained model in force, if any.
    pub fn get(&self) -> Option<Arc<ScoringModel>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `model` in force (`None`: the hand-set heads); returns what it replaces.
    pub fn set(&self, model: Option<ScoringModel>) -> Option<Arc<ScoringModel>> {
        let mut g = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *g, model.map(Arc::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_set_heads_put_each_invitation_on_its_own_head() {
        let cfg = ScorerConfig::default();
        let m = HeadModels::from_config(&cfg);
        let x = HeadInputs {
            prior: [-3.0; 8],
            followed: true,
            remix_chain: true,
            friend_cameo: true,
            ..HeadInputs::default()
        };
        let base = HeadInputs {
            prior: [-3.0; 8],
            ..HeadInputs::default()
        };
        let lift = |a: usize| m.logit(a, &x) - m.logit(a, &base);
        assert!((lift(0) - cfg.lifts.followed_creator).abs() < 1e-6);
        assert!((lift(1) - cfg.lifts.remix_chain).abs() < 1e-6);
        assert!((lift(2) - cfg.lifts.friend_cameo).abs() < 1e-6);
        for a in 3..8 {
            assert_eq!(lift(a), 0.0, "head {a}");
        }
        assert_eq!(m.logit(6, &base), -3.0, "bias 0, prior weight 1");
    }

    #[test]
    fn a_slot_swaps_whole_and_returns_the_old_heads() {
        let a = HeadModels::from_config(&ScorerConfig::default());
        let mut b = a;
        b.coef[3][0] = 0.5;
        let slot = ModelSlot::default();
        assert!(slot.get().is_none());
        assert!(slot.set(Some(a.into())).is_none());
        let held = slot.get().unwrap();
        assert_eq!(slot.set(Some(b.into())).unwrap().heads, a);
        assert_eq!(held.heads, a, "a request's heads stay as it read them");
        assert_eq!(slot.get().unwrap().heads, b);
        assert_eq!(slot.set(None).unwrap().heads, b);
        assert!(slot.get().is_none());
        b.coef[0][1] = f32::NAN;
        assert!(b.validate().is_err());
        assert!(a.validate().is_ok());
    }
}

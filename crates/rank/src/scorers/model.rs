//! The action heads as a linear model over [`HeadInputs`]: the coefficients the scorer
//! applies, the hand-set ones derived from [`ScorerConfig`], and the slot through which
//! a trained model replaces them while the engine serves.

use std::sync::{Arc, RwLock};

use steerfeed_core::{ActionProbs, Error, HeadInputs, Result};

use super::blend::BlendRanker;
use super::{ActionWeights, ScorerConfig};

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

/// The largest factor a head's value scale may put on its weight, and the inverse the
/// smallest.
pub const MAX_VALUE_SCALE: f32 = 1.0e4;

/// Coefficients of the eight heads (in `steerfeed_core::impression::HEADS` order), each
/// over [`FEATURES`]: `p_a = σ(Σ_f coef[a][f] · x_f)`; and what a unit of each head's
/// probability is worth in the objective beside its configured weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadModels {
    /// Per head, per feature.
    pub coef: [[f32; 9]; 8],
    /// Per head, the factor on its weight in the objective: the objective adds
    /// `value_scale[a] · w_a · p_a`, and the consumption cost charges the complete-view
    /// head's probability times its factor. 1 for the hand-set heads; a trained model
    /// sets it so that each head adds, on the items it was trained on, what the heads it
    /// replaces added (the configured weights and the other terms were set against those
    /// heads' scale, which overstates every rate, and not by the same factor).
    pub value_scale: [f32; 8],
    /// Per head, the map from its logit to its probability when the head was
    /// calibrated after fitting (else the logistic function).
    pub calibration: [Option<Calibration>; 8],
}

/// The most knots a head's calibration map holds.
pub const MAX_KNOTS: usize = 33;

/// The largest logit, either way, a knot may sit at (a logit beyond ±100 is already
/// certainty; this bound keeps every distance between knots finite).
pub const MAX_KNOT_LOGIT: f32 = 1.0e4;

/// A monotone map from a head's logit to its probability: linear between knots, flat
/// beyond the first and the last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    len: usize,
    logit: [f32; MAX_KNOTS],
    prob: [f32; MAX_KNOTS],
}

impl Calibration {
    /// The map through `knots` (logit, probability): 2 to [`MAX_KNOTS`] of them,
    /// logits within ±[`MAX_KNOT_LOGIT`] and rising, probabilities in `[0, 1]` and never
    /// falling.
    pub fn new(knots: &[(f32, f32)]) -> Result<Self> {
        let bad = |why: String| Err(Error::invalid("model.calibration", why));
        if !(2..=MAX_KNOTS).contains(&knots.len()) {
            return bad(format!(
                "{} knots, but a map has 2 to {MAX_KNOTS}",
                knots.len()
            ));
        }
        let mut c = Self {
            len: knots.len(),
            logit: [0.0; MAX_KNOTS],
            prob: [0.0; MAX_KNOTS],
        };
        for (k, &(x, p)) in knots.iter().enumerate() {
            if !(x.abs() <= MAX_KNOT_LOGIT && (0.0..=1.0).contains(&p)) {
                return bad(format!(
                    "knot {k}: ({x}, {p}) is not a logit within ±{MAX_KNOT_LOGIT} and a probability"
                ));
            }
            if k > 0 && !(x > c.logit[k - 1] && p >= c.prob[k - 1]) {
                return bad(format!(
                    "knot {k}: ({x}, {p}) does not follow ({}, {}): logits rise, probabilities never fall",
                    c.logit[k - 1],
                    c.prob[k - 1]
                ));
            }
            c.logit[k] = x;
            c.prob[k] = p;
        }
        Ok(c)
    }

    /// The knots, (logit, probability).
    pub fn knots(&self) -> impl Iterator<Item = (f32, f32)> + '_ {
        self.logit[..self.len]
            .iter()
            .copied()
            .zip(self.prob[..self.len].iter().copied())
    }

    /// The probability of logit `z` (NaN stays NaN).
    pub fn prob(&self, z: f32) -> f32 {
        let (xs, ps) = (&self.logit[..self.len], &self.prob[..self.len]);
        if z.is_nan() {
            return z;
        }
        // The first knot at or above `z`.
        let k = xs.partition_point(|&x| x < z);
        if k == 0 {
            return ps[0];
        }
        if k == self.len {
            return ps[self.len - 1];
        }
        let t = (z - xs[k - 1]) / (xs[k] - xs[k - 1]);
        (ps[k - 1] + t * (ps[k] - ps[k - 1])).clamp(ps[k - 1], ps[k])
    }
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
        Self::unscaled(coef)
    }

    /// Heads of these coefficients, each weighed as configured (every value scale 1).
    pub fn unscaled(coef: [[f32; 9]; 8]) -> Self {
        Self {
            coef,
            value_scale: [1.0; 8],
            calibration: [None; 8],
        }
    }

    /// The objective's weights of the eight heads under these heads: each configured
    /// weight times the head's value scale (`negative` as configured).
    pub fn weigh(&self, w: &ActionWeights) -> ActionWeights {
        let s = &self.value_scale;
        ActionWeights {
            create: w.create * s[0],
            remix: w.remix * s[1],
            cameo_use: w.cameo_use * s[2],
            comment: w.comment * s[3],
            share: w.share * s[4],
            follow: w.follow * s[5],
            like: w.like * s[6],
            complete_view: w.complete_view * s[7],
            negative: w.negative,
        }
    }

    /// The complete-view head's value scale, which the consumption cost's passive-view
    /// probability is weighed by.
    pub fn passive_scale(&self) -> f32 {
        self.value_scale[ActionProbs::COMPLETE_VIEW]
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

    /// Head `a`'s probability for the inputs `x`: its calibration map of the logit,
    /// else the logistic function of it.
    pub fn prob(&self, a: usize, x: &HeadInputs) -> f32 {
        let z = self.logit(a, x);
        match &self.calibration[a] {
            Some(c) => c.prob(z),
            None => 1.0 / (1.0 + (-z).exp()),
        }
    }

    /// The eight heads' probabilities for the inputs `x` (the follow head is 0 for a
    /// creator the viewer already follows: nobody follows twice).
    pub fn probs(&self, x: &HeadInputs) -> ActionProbs {
        let mut p = ActionProbs::from_heads(std::array::from_fn(|a| self.prob(a, x)));
        if x.followed {
            p.follow = 0.0;
        }
        p
    }

    /// Every coefficient is finite and within ±100 (a logit beyond that is certainty),
    /// and every value scale within [`MAX_VALUE_SCALE`] of 1 either way.
    pub fn validate(&self) -> Result<()> {
        for (a, s) in self.value_scale.iter().enumerate() {
            if !(s.is_finite() && (1.0 / MAX_VALUE_SCALE..=MAX_VALUE_SCALE).contains(s)) {
                return Err(Error::invalid(
                    "model.value_scale",
                    format!(
                        "{}: {s} is not a number between {} and {MAX_VALUE_SCALE}",
                        steerfeed_core::impression::HEADS[a],
                        1.0 / MAX_VALUE_SCALE
                    ),
                ));
            }
        }
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
    fn a_calibration_map_interpolates_between_its_knots_and_is_flat_beyond() {
        let c = Calibration::new(&[(-4.0, 0.01), (-2.0, 0.05), (0.0, 0.45), (1.0, 0.5)]).unwrap();
        assert_eq!(c.prob(-9.0), 0.01);
        assert_eq!(c.prob(-4.0), 0.01);
        assert!((c.prob(-3.0) - 0.03).abs() < 1e-6);
        assert!((c.prob(-1.0) - 0.25).abs() < 1e-6);
        assert_eq!(c.prob(0.0), 0.45);
        assert_eq!(c.prob(7.0), 0.5);
        assert!(c.prob(f32::NAN).is_nan());
        // Monotone wherever it is asked.
        let mut last = 0.0;
        for k in -100..100 {
            let p = c.prob(k as f32 / 10.0);
            assert!(p >= last);
            last = p;
        }
        for bad in [
            vec![(0.0, 0.5)],
            vec![(0.0, 0.5), (0.0, 0.6)],
            vec![(0.0, 0.5), (1.0, 0.4)],
            vec![(0.0, 0.5), (f32::INFINITY, 0.6)],
            vec![(-3.0e38, 0.1), (3.0e38, 0.9)],
            vec![(0.0, -0.1), (1.0, 0.4)],
            vec![(0.0, 0.5), (1.0, f32::NAN)],
            vec![(0.0, 0.1); MAX_KNOTS + 1],
        ] {
            assert!(Calibration::new(&bad).is_err(), "{bad:?}");
        }
        // A head with a map reads it; the others stay logistic.
        let mut m = HeadModels::from_config(&ScorerConfig::default());
        m.calibration[7] = Some(c);
        let x = HeadInputs {
            prior: [-1.0; 8],
            ..HeadInputs::default()
        };
        let p = m.probs(&x);
        assert!((p.complete_view - 0.25).abs() < 1e-6);
        assert!((p.like - 1.0 / (1.0 + 1.0f32.exp())).abs() < 1e-6);
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

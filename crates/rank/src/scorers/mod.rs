//! The creation-over-consumption objective (docs/design.md §5).
//!
//! ```text
//! score(u, v) =  Σ_a s_a · w_a · p_a(u, v)           action heads (s_a: a model's value scale)
//!              + β · tie(u, creator(v))               follows, mutuals, recent interaction
//!              + γ · Σ_c s_c · match(v, c)            steering concepts (boost +, reduce −)
//!              − λ(session) · s_cv · p_passive(u, v)  consumption cost, grows with the session
//!              + freshness + cold start               new videos, new creators
//!              + wellbeing                            lighter content after a "not great" check-in
//! ```
//!
//! **Action heads.** Each `p_a` is a calibrated probability. Its anchor is the video's
//! own rate of that action, smoothed with a Beta prior: `(count_a + m·base_a) /
//! (exposures + m)`, so a new video starts at the base rate and moves toward what
//! people actually do with it as exposures accumulate. Personal features shift it in
//! logit space: `p_a = σ(logit(rate_a) + c_interest·(sim − sim_ref) + c_tie·tie +
//! c_co·co_engagement + c_creator·creator_lift_a)`. For a viewer with average interest
//! and no tie the head *is* the video's smoothed rate, which is what makes it
//! calibrated at the anchor. The coefficients are the hand-set ones of `[rank.scorer]`
//! unless a model trained from the impression log is in force ([`HeadModels`], a
//! linear model over the same inputs, with a bias and a weight on the prior).
//! The creator lift is the creator's own smoothed rate against the base, in logits,
//! shrunk by the creator's exposures, so a creator whose videos get remixed lifts their
//! new videos before those have any history.
//!
//! **Creation invitations.** The creation heads also read what about the item itself
//! invites making something, each a fixed lift in logit space ([`CreationLifts`]), so
//! they separate videos from the first impression instead of waiting for a video's own
//! rare creation counts to outgrow the prior: `remix` is lifted for a video in a remix
//! chain (it remixes another video, or has itself been remixed); `cameo_use` for a
//! video featuring someone the viewer follows whose cameo consent would let the viewer
//! use their likeness (the same policy the consent filter applies, asked for the
//! viewer as creator); `create` for a video by a creator the viewer follows. These
//! only move the creation heads, so with creation weights 0 they change nothing.
//!
//! **Weights.** Creation dominates: remix, create and cameo_use weigh 10, an order of
//! magnitude above like (1), and like is above a completed view (0.2). A passive
//! completed view is also what the consumption cost charges, so as a session grows a
//! video people merely watch loses ground to one people make things from.
//!
//! **Personalization off** (parental controls): the interest vector, co-engagement and
//! creator affinity are ignored; follows still count, safety is untouched.

pub mod blend;
mod model;
mod objective_scorer;
mod shadow_scorer;

pub use blend::{BLEND_FEATURES, BlendRanker, BlendRankerFile, blend_features};
pub use model::{
    Calibration, FEATURES, HeadModels, MAX_KNOTS, MAX_VALUE_SCALE, ModelSlot, ScoringModel,
};
pub use objective_scorer::ObjectiveScorer;
pub use shadow_scorer::ShadowScorer;
use steerfeed_core::{Error, Result};

/// Weights `w_a` of the action heads. Defaults: create, remix, cameo_use 10; comment,
/// share 2; follow 1.5; like 1; complete_view 0.2; and a penalty of 2 per unit of
/// smoothed negative-feedback rate (skips, "not interested", hides, reports).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct ActionWeights {
    pub create: f32,
    pub remix: f32,
    pub cameo_use: f32,
    pub comment: f32,
    pub share: f32,
    pub follow: f32,
    pub like: f32,
    pub complete_view: f32,
    /// Subtracted per unit of smoothed negative rate.
    pub negative: f32,
}

impl ActionWeights {
    /// The weights of the eight heads, in `steerfeed_core::impression::HEADS` order
    /// (`negative` is not a head).
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
}

impl Default for ActionWeights {
    fn default() -> Self {
        Self {
            create: 10.0,
            remix: 10.0,
            cameo_use: 10.0,
            comment: 2.0,
            share: 2.0,
            follow: 1.5,
            like: 1.0,
            complete_view: 0.2,
            negative: 2.0,
        }
    }
}

/// One action head: its base rate (the Beta prior's mean) and the coefficients of the
/// personal features in logit space.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadParams {
    /// The action's rate per exposure across the catalog.
    pub base_rate: f32,
    /// Per unit of interest similarity above `interest_reference`.
    pub interest: f32,
    /// Per unit of tie strength.
    pub tie: f32,
    /// Per unit of co-engagement strength (the co-engagement source's score, relative
    /// to its strongest candidate of the request, in (0, 1]).
    pub co_engagement: f32,
    /// Per logit of creator lift.
    pub creator: f32,
}

const fn head(base_rate: f32, interest: f32, tie: f32) -> HeadParams {
    HeadParams {
        base_rate,
        interest,
        tie,
        co_engagement: 4.0,
        creator: 1.0,
    }
}

/// The eight heads. Default base rates: complete_view 0.35, like 0.06, comment 0.01,
/// share 0.01, follow 0.005, remix 0.005, create 0.003, cameo_use 0.002; interest
/// coefficient 3 (2 for follow and complete_view), tie coefficient 0.5–1, co-engagement
/// coefficient 4 (chosen on the MicroLens validation split), creator coefficient 1.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct Heads {
    pub create: HeadParams,
    pub remix: HeadParams,
    pub cameo_use: HeadParams,
    pub comment: HeadParams,
    pub share: HeadParams,
    pub follow: HeadParams,
    pub like: HeadParams,
    pub complete_view: HeadParams,
}

impl Default for Heads {
    fn default() -> Self {
        Self {
            create: head(0.003, 3.0, 0.5),
            remix: head(0.005, 3.0, 0.5),
            cameo_use: head(0.002, 3.0, 1.0),
            comment: head(0.01, 3.0, 1.0),
            share: head(0.01, 3.0, 0.5),
            follow: head(0.005, 2.0, 0.5),
            like: head(0.06, 3.0, 0.8),
            complete_view: head(0.35, 2.0, 0.5),
        }
    }
}

impl Heads {
    /// The heads in a fixed order: create, remix, cameo_use, comment, share, follow,
    /// like, complete_view.
    pub fn all(&self) -> [(&'static str, &HeadParams); 8] {
        [
            ("create", &self.create),
            ("remix", &self.remix),
            ("cameo_use", &self.cameo_use),
            ("comment", &self.comment),
            ("share", &self.share),
            ("follow", &self.follow),
            ("like", &self.like),
            ("complete_view", &self.complete_view),
        ]
    }
}

/// The tie term `β · tie`, with `tie = follow·[follows] + mutual·[mutual] +
/// interaction·affinity` in `[0, 1]`. Defaults: β 1, follow 0.5, mutual 0.3,
/// interaction 0.2.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct TieParams {
    pub beta: f32,
    pub follow: f32,
    pub mutual: f32,
    pub interaction: f32,
}

impl Default for TieParams {
    fn default() -> Self {
        Self {
            beta: 1.0,
            follow: 0.5,
            mutual: 0.3,
            interaction: 0.2,
        }
    }
}

/// The steering term. A concept matches a video fully when the video carries its
/// topic, else by `(sim − threshold) / (1 − threshold)` above the threshold.
/// Defaults: γ 1.5, threshold 0.3, remix and friends' cameo bonuses 0.5 each (for the
/// `remix` and `friends_cameos` constraints; negative when they are `false`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(missing_docs)]
pub struct SteeringParams {
    pub gamma: f32,
    pub threshold: f32,
    pub remix_bonus: f32,
    pub friends_cameo_bonus: f32,
}

impl Default for SteeringParams {
    fn default() -> Self {
        Self {
            gamma: 2.0,
            threshold: 0.3,
            remix_bonus: 0.5,
            friends_cameo_bonus: 0.5,
        }
    }
}

/// Lifts of the creation heads, in logits, for what about an item invites making
/// something (see the [module docs](self)). Defaults: remix_chain 2, friend_cameo 2,
/// followed_creator 1.5 (about ×7.4, ×7.4 and ×4.5 on a rare action's odds: a chain
/// is an open template, a friend's likeness an invitation to play along). Kept below
/// what would let a creation invitation outweigh an explicit steering request.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreationLifts {
    /// Added to the remix head when the video remixes another or has been remixed.
    pub remix_chain: f32,
    /// Added to the cameo_use head when the video features someone the viewer follows
    /// whose consent covers the viewer using their likeness.
    pub friend_cameo: f32,
    /// Added to the create head when the viewer follows the video's creator.
    pub followed_creator: f32,
}

impl Default for CreationLifts {
    fn default() -> Self {
        Self {
            remix_chain: 2.0,
            friend_cameo: 2.0,
            followed_creator: 1.5,
        }
    }
}

/// All scorer tunables, one default each (see the field types).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScorerConfig {
    /// Action weights.
    pub weights: ActionWeights,
    /// Action heads.
    pub heads: Heads,
    /// The creation heads' lifts for items that invite creation.
    pub lifts: CreationLifts,
    /// Beta prior strength of a video's rates, in pseudo-exposures. Default 50.
    pub prior_strength: f32,
    /// Beta prior strength of a creator's rates (and the fade of the creator cold-start
    /// lift). Default 50: a creator's counters sum over all their videos, so even a
    /// small creator passes 50 exposures within a few videos, and a creator whose
    /// videos people build on is recognised that much sooner.
    pub creator_prior_strength: f32,
    /// Interest similarity that adds nothing to the heads. Default 0.3.
    pub interest_reference: f32,
    /// The tie term.
    pub tie: TieParams,
    /// The steering term.
    pub steering: SteeringParams,
    /// Freshness weight: `weight · 0.5^(age_h / half_life_h)`. Default 0.1.
    pub freshness_weight: f32,
    /// Freshness half-life in hours. Default 48.
    pub freshness_half_life_h: f32,
    /// Freshness multiplier when steering asks for newer videos. Default 5.
    pub newer_multiplier: f32,
    /// Cold-start lift of a video with no exposures, fading as `m / (m + exposures)`. Default 0.1.
    pub cold_start_video: f32,
    /// Cold-start lift of a creator with no exposures, fading likewise. Default 0.15.
    pub cold_start_creator: f32,
    /// After a "not great" check-in: added to light videos. Default 0.4.
    pub light_bonus: f32,
    /// After a "not great" check-in: subtracted from heavy videos. Default 0.8.
    pub heavy_penalty: f32,
    /// After a "not great" check-in: creation heads' weights are multiplied by this. Default 1.5.
    pub creation_multiplier: f32,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self {
            weights: ActionWeights::default(),
            heads: Heads::default(),
            lifts: CreationLifts::default(),
            prior_strength: 50.0,
            creator_prior_strength: 50.0,
            interest_reference: 0.3,
            tie: TieParams::default(),
            steering: SteeringParams::default(),
            freshness_weight: 0.1,
            freshness_half_life_h: 48.0,
            newer_multiplier: 5.0,
            cold_start_video: 0.1,
            cold_start_creator: 0.15,
            light_bonus: 0.4,
            heavy_penalty: 0.8,
            creation_multiplier: 1.5,
        }
    }
}

fn finite(field: &'static str, x: f32) -> Result<()> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(Error::NonFinite { field, index: 0 })
    }
}

fn positive(field: &'static str, x: f32) -> Result<()> {
    finite(field, x)?;
    if x > 0.0 {
        Ok(())
    } else {
        Err(Error::OutOfRange {
            field,
            got: f64::from(x),
            min: f64::from(f32::MIN_POSITIVE),
            max: f64::from(f32::MAX),
        })
    }
}

impl ScorerConfig {
    /// Checks that every number is finite, base rates are probabilities in `(0, 1)`, and
    /// prior strengths and half-lives are positive.
    pub fn validate(&self) -> Result<()> {
        let w = &self.weights;
        for x in w.heads().into_iter().chain([w.negative]) {
            finite("scorer.weights", x)?;
        }
        for (_, h) in self.heads.all() {
            finite(
                "scorer.heads",
                h.interest + h.tie + h.co_engagement + h.creator,
            )?;
            if !(h.base_rate > 0.0 && h.base_rate < 1.0) {
                return Err(Error::OutOfRange {
                    field: "scorer.heads.base_rate",
                    got: f64::from(h.base_rate),
                    min: 0.0,
                    max: 1.0,
                });
            }
        }
        let l = &self.lifts;
        for x in [l.remix_chain, l.friend_cameo, l.followed_creator] {
            finite("scorer.lifts", x)?;
        }
        positive("scorer.prior_strength", self.prior_strength)?;
        positive("scorer.creator_prior_strength", self.creator_prior_strength)?;
        positive("scorer.freshness_half_life_h", self.freshness_half_life_h)?;
        let s = &self.steering;
        if !(s.threshold.is_finite() && (-1.0..1.0).contains(&s.threshold)) {
            return Err(Error::OutOfRange {
                field: "scorer.steering.threshold",
                got: f64::from(s.threshold),
                min: -1.0,
                max: 1.0,
            });
        }
        for (field, x) in [
            ("scorer.interest_reference", self.interest_reference),
            (
                "scorer.tie",
                self.tie.beta + self.tie.follow + self.tie.mutual,
            ),
            ("scorer.tie.interaction", self.tie.interaction),
            (
                "scorer.steering",
                s.gamma + s.remix_bonus + s.friends_cameo_bonus,
            ),
            ("scorer.freshness_weight", self.freshness_weight),
            ("scorer.newer_multiplier", self.newer_multiplier),
            (
                "scorer.cold_start",
                self.cold_start_video + self.cold_start_creator,
            ),
            ("scorer.light_bonus", self.light_bonus + self.heavy_penalty),
            ("scorer.creation_multiplier", self.creation_multiplier),
        ] {
            finite(field, x)?;
        }
        Ok(())
    }
}

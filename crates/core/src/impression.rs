//! The impression log: what was served, why, and how likely it was to be served.
//!
//! Every served page is logged with its viewer, its request id, the rank profile that
//! made it and, per item, its position, the source that proposed it, the probability
//! the serving policy had of putting it there (1 for a deterministic slot), the inputs
//! of the action heads ([`HeadInputs`]) and the terms of its score. A model fitted from
//! the log reads the same inputs the scorer read when it served the item.

use crate::{ScoreBreakdown, Timestamp, UserId, VideoId};

/// The action heads, in the order of every per-head array.
pub const HEADS: [&str; 8] = [
    "create",
    "remix",
    "cameo_use",
    "comment",
    "share",
    "follow",
    "like",
    "complete_view",
];

/// What the action heads read for one (viewer, video) pair when it was scored. Each
/// head's logit is `prior[a] + c_interest·interest + c_tie·tie + c_co·co_engagement +
/// c_creator·creator[a]`, plus the creation invitations the flags turn on.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadInputs {
    /// Per head ([`HEADS`] order): the logit of the video's smoothed rate.
    pub prior: [f32; 8],
    /// Per head: the creator's smoothed rate against the base rate, in logits.
    pub creator: [f32; 8],
    /// Interest similarity minus the reference (0 without personalization).
    pub interest: f32,
    /// Tie strength with the creator, in `[0, 1]`.
    pub tie: f32,
    /// Co-engagement strength, in `[0, 1]`.
    pub co_engagement: f32,
    /// The viewer follows the creator.
    pub followed: bool,
    /// The video is in a remix chain.
    pub remix_chain: bool,
    /// The video features a followed person whose consent covers the viewer.
    pub friend_cameo: bool,
}

/// One served item of a logged page.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpressionItem {
    /// The video.
    pub video: VideoId,
    /// Its position on the page, from 0.
    pub position: u32,
    /// The source that proposed it.
    pub source: String,
    /// The probability that the serving policy put this video in this slot, in
    /// `(0, 1]`: 1 for a slot filled by ranking.
    pub propensity: f32,
    /// What the action heads read.
    pub inputs: HeadInputs,
    /// The terms of its score.
    pub breakdown: ScoreBreakdown,
    /// How exploration could have filled its slot; absent for a slot filled by ranking
    /// alone (no exploration, or nothing to draw).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draw: Option<SlotDraw>,
}

/// The choice the selector faced at an item's slot when it could explore: with
/// probability `1 − ε` its greedy pick, with probability `ε` one of `drawable` items
/// drawn uniformly. It is what an estimator needs to compute the probability that
/// another exploration rate serves the same item in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotDraw {
    /// The item was the greedy pick for the slot.
    pub greedy: bool,
    /// How many items exploration could have drawn for the slot (at least 1).
    pub drawable: u32,
    /// The item was one of them.
    pub in_draw: bool,
}

impl SlotDraw {
    /// The probability that a selector exploring at rate `eps` serves this item in this
    /// slot: `(1 − ε)·[greedy] + ε·[in_draw]/drawable`.
    pub fn probability(&self, eps: f64) -> f64 {
        let greedy = if self.greedy { 1.0 - eps } else { 0.0 };
        let drawn = if self.in_draw && self.drawable > 0 {
            eps / f64::from(self.drawable)
        } else {
            0.0
        };
        greedy + drawn
    }
}

/// What a served page logs beside its served-state writes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpressionPage {
    /// The request's id (also in the response).
    pub request: String,
    /// The rank profile that served it.
    pub profile: String,
    /// The id of the model whose heads scored it (`hand-set` for the configured ones).
    pub model: String,
    /// The items, in page order.
    pub items: Vec<ImpressionItem>,
}

/// A page as the impression log holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedPage {
    /// Its place in the log (from 1, in the order pages were recorded).
    pub seq: u64,
    /// The viewer.
    pub user: UserId,
    /// When it was served.
    pub at: Timestamp,
    /// What was served.
    pub page: ImpressionPage,
}

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
///
/// On a page served with a shadow profile ([`PageShadow`]) every slot has one: the slot
/// also served the shadow's greedy pick with probability `share`, whether the item was
/// that pick is `shadow_greedy`, and `drawable` is 0 where nothing could be drawn (no
/// rate explores there). It is then what an estimator needs for the shadow profile too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotDraw {
    /// The item was the greedy pick for the slot.
    pub greedy: bool,
    /// How many items exploration could have drawn for the slot (at least 1 on a page
    /// without a shadow).
    pub drawable: u32,
    /// The item was one of them.
    pub in_draw: bool,
    /// The item was the shadow profile's greedy pick for the slot, given the page's
    /// earlier slots (false on a page served without a shadow).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow_greedy: bool,
    /// How many items the shadow profile's own exploration could have drawn for the slot
    /// (0 on a page without a shadow, or beside a shadow that does not explore).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shadow_drawable: u32,
    /// The item was one of them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow_in_draw: bool,
}

impl HeadInputs {
    /// Bits of [`HeadInputs::flag_bits`] in use.
    pub const FLAG_MASK: u8 = 0b111;

    /// The three flags packed as the binary formats store them: bit 0 followed, bit 1
    /// remix chain, bit 2 friend's cameo.
    pub fn flag_bits(&self) -> u8 {
        u8::from(self.followed) | u8::from(self.remix_chain) << 1 | u8::from(self.friend_cameo) << 2
    }

    /// These inputs with the flags read from the bits [`HeadInputs::flag_bits`] writes;
    /// bits outside [`HeadInputs::FLAG_MASK`] are not read.
    pub fn with_flag_bits(self, bits: u8) -> Self {
        Self {
            followed: bits & 1 != 0,
            remix_chain: bits & 2 != 0,
            friend_cameo: bits & 4 != 0,
            ..self
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SlotDraw {
    /// The probability that a selector exploring at rate `eps` serves this item in this
    /// slot: `(1 − ε)·[greedy] + ε·[in_draw]/drawable`, and `[greedy]` where nothing
    /// could be drawn.
    pub fn probability(&self, eps: f64) -> f64 {
        Self::policy(self.greedy, self.in_draw, self.drawable, eps)
    }

    /// The same for the shadow profile exploring at rate `eps`: its greedy pick and its
    /// own draw set in place of the serving profile's.
    pub fn shadow_probability(&self, eps: f64) -> f64 {
        Self::policy(
            self.shadow_greedy,
            self.shadow_in_draw,
            self.shadow_drawable,
            eps,
        )
    }

    /// The probability that the serving selector, exploring at rate `eps` with a shadow
    /// of share `share`, served this item: `share·[shadow_greedy] + ε·[in_draw]/drawable
    /// + (1 − ε − share)·[greedy]`, with ε at 0 where nothing could be drawn.
    pub fn logged_probability(&self, eps: f64, share: f64) -> f64 {
        let eps = if self.drawable == 0 { 0.0 } else { eps };
        let b = |x: bool| f64::from(u8::from(x));
        share * b(self.shadow_greedy)
            + Self::policy(false, self.in_draw, self.drawable, eps)
            + (1.0 - eps - share) * b(self.greedy)
    }

    fn policy(greedy: bool, in_draw: bool, drawable: u32, eps: f64) -> f64 {
        if drawable == 0 {
            return f64::from(u8::from(greedy));
        }
        let greedy = if greedy { 1.0 - eps } else { 0.0 };
        let drawn = if in_draw {
            eps / f64::from(drawable)
        } else {
            0.0
        };
        greedy + drawn
    }
}

/// The shadow profile a page was served beside (`[learning] shadow`): at every slot its
/// greedy pick, given the page's earlier slots, was served with probability `share`, so
/// the log holds what an estimate of that profile needs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageShadow {
    /// The shadow profile.
    pub profile: String,
    /// The id of the model whose heads scored it for the shadow.
    pub model: String,
    /// The share of each slot its greedy pick was served with.
    pub share: f32,
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
    /// The shadow profile it was served beside, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<PageShadow>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_pack_in_their_documented_bits_and_unpack_to_themselves() {
        // The layout both binary formats store, written out by hand.
        let cases = [
            ((false, false, false), 0b000),
            ((true, false, false), 0b001),
            ((false, true, false), 0b010),
            ((false, false, true), 0b100),
            ((true, true, false), 0b011),
            ((true, false, true), 0b101),
            ((false, true, true), 0b110),
            ((true, true, true), 0b111),
        ];
        let base = HeadInputs {
            prior: [0.5; 8],
            creator: [-0.25; 8],
            interest: 0.1,
            tie: 0.2,
            co_engagement: 0.3,
            ..HeadInputs::default()
        };
        for ((followed, remix_chain, friend_cameo), bits) in cases {
            let h = HeadInputs {
                followed,
                remix_chain,
                friend_cameo,
                ..base
            };
            assert_eq!(h.flag_bits(), bits, "{h:?}");
            assert_eq!(bits & !HeadInputs::FLAG_MASK, 0);
            // Unpacking sets the flags and leaves every other input as it was, and the
            // bits other formats put beside them are not read.
            assert_eq!(base.with_flag_bits(bits), h);
            assert_eq!(base.with_flag_bits(bits | 0b1111_1000), h);
        }
    }
}

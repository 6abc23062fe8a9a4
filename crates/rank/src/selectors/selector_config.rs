//! [`SelectorConfig`]: every tunable of the diversity selector, one default each.

use steerfeed_core::{Error, Result};

use super::DiversityMethod;

/// Largest accepted `dpp_window` (the per-step Cholesky is cubic in it).
pub const MAX_DPP_WINDOW: usize = 64;

/// The diversity selector's configuration (docs/design.md §3 step 6, §6). Every field has one
/// default, stated in its doc; `{}` deserialises to [`SelectorConfig::default`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectorConfig {
    /// The diversity re-rank. Default [`DiversityMethod::Dpp`] (why: the [module docs](super)).
    pub method: DiversityMethod,
    /// MMR trade-off in `[0, 1]`: 1 is pure (decayed) quality, 0 pure novelty. Default 0.7.
    pub mmr_lambda: f32,
    /// DPP: how many of the last picks the kernel looks at, `1..=64`. Default 10.
    pub dpp_window: usize,
    /// How many of the best-scored candidates the re-rank considers, at least 1; the rest
    /// are used only when no candidate of the pool may take the next slot. Default 200.
    pub pool: usize,
    /// Author decay floor in `[0, 1]`: the k-th item of a creator on the page has its
    /// quality multiplied by `(1 − floor)·factor^k + floor`. Default 0.25.
    pub author_decay_floor: f32,
    /// Author decay factor in `[0, 1]` (see `author_decay_floor`). Default 0.5.
    pub author_decay_factor: f32,
    /// Most items carrying one topic in any `topic_window` consecutive items, at least 1.
    /// Hard: the page ends shorter rather than break it. Default 3.
    pub topic_cap: usize,
    /// The window of `topic_cap`, at least 1. Default 10.
    pub topic_window: usize,
    /// The cap, in the same window, for a topic the viewer asked for more of ("more
    /// cooking"); topics in a steering `only` list are not capped at all. Default 6.
    pub steered_topic_cap: usize,
    /// Teens: most items with any safety label in any `teen_sensitive_window` consecutive
    /// items (0 allowed: none). Hard. Default 1.
    pub teen_sensitive_cap: usize,
    /// The window of `teen_sensitive_cap`, at least 1. Default 10.
    pub teen_sensitive_window: usize,
    /// Steering "more from people I follow": the least share of the page, in `[0, 1]`,
    /// from followed creators, as far as such candidates may take a slot. Default 0.5.
    pub following_more: f32,
    /// Steering "less from people I follow": the largest share of the page, in `[0, 1]`,
    /// from followed creators. Hard. Default 0.1.
    pub following_less: f32,
    /// Exploration: the chance, in `[0, 1]`, that a slot goes to an under-exposed
    /// candidate drawn uniformly among those that may take it (epsilon-greedy; every
    /// cap still applies, and filters ran before). Each served item's propensity is
    /// logged. Default 0 (off).
    pub explore: f32,
    /// Exploration's under-exposed: fewer (decayed) exposures than this. Default 200.
    pub explore_max_exposures: f32,
}

impl Default for SelectorConfig {
    fn default() -> Self {
        Self {
            method: DiversityMethod::default(),
            mmr_lambda: 0.7,
            dpp_window: 10,
            pool: 200,
            author_decay_floor: 0.25,
            author_decay_factor: 0.5,
            topic_cap: 3,
            topic_window: 10,
            steered_topic_cap: 6,
            teen_sensitive_cap: 1,
            teen_sensitive_window: 10,
            following_more: 0.5,
            following_less: 0.1,
            explore: 0.0,
            explore_max_exposures: 200.0,
        }
    }
}

impl SelectorConfig {
    /// Rejects values that make no sense: a fraction that is NaN or outside `[0, 1]`, a
    /// window, pool or topic cap of 0, a DPP window above [`MAX_DPP_WINDOW`].
    pub fn validate(&self) -> Result<()> {
        for (field, v) in [
            ("mmr_lambda", self.mmr_lambda),
            ("author_decay_floor", self.author_decay_floor),
            ("author_decay_factor", self.author_decay_factor),
            ("following_more", self.following_more),
            ("following_less", self.following_less),
            ("explore", self.explore),
        ] {
            unit(field, v)?;
        }
        if !(self.explore_max_exposures.is_finite() && self.explore_max_exposures > 0.0) {
            return Err(Error::invalid(
                "explore_max_exposures",
                "must be a positive number of exposures",
            ));
        }
        for (field, v) in [
            ("pool", self.pool),
            ("topic_cap", self.topic_cap),
            ("topic_window", self.topic_window),
            ("steered_topic_cap", self.steered_topic_cap),
            ("teen_sensitive_window", self.teen_sensitive_window),
        ] {
            if v == 0 {
                return Err(Error::invalid(field, "must be at least 1"));
            }
        }
        if !(1..=MAX_DPP_WINDOW).contains(&self.dpp_window) {
            return Err(Error::OutOfRange {
                field: "dpp_window",
                got: self.dpp_window as f64,
                min: 1.0,
                max: MAX_DPP_WINDOW as f64,
            });
        }
        Ok(())
    }

    /// The author-decay multiplier of the k-th item (k = 0, 1, ...) of one creator.
    pub fn author_decay(&self, k: usize) -> f32 {
        let k = i32::try_from(k).unwrap_or(i32::MAX);
        (1.0 - self.author_decay_floor) * self.author_decay_factor.powi(k) + self.author_decay_floor
    }
}

fn unit(field: &'static str, v: f32) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::NonFinite { field, index: 0 });
    }
    if !(0.0..=1.0).contains(&v) {
        return Err(Error::OutOfRange {
            field,
            got: f64::from(v),
            min: 0.0,
            max: 1.0,
        });
    }
    Ok(())
}

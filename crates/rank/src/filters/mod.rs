//! Hard filters (docs/design.md §3 step 4): each removes what must not be served and, through
//! [`steerfeed_core::Filter::run`], reports the ids it removed under its name.
//!
//! | filter | removes |
//! | --- | --- |
//! | [`DeletedFilter`] (`deleted`) | deleted videos |
//! | [`BlockedFilter`] (`blocked`) | videos by creators the viewer blocked or muted |
//! | [`SeenFilter`] (`seen`) | videos served to the viewer or named in any of their recent events (seen, engaged with, skipped, marked not interested), and their own |
//! | [`SafetyFilter`] (`safety`) | teen-restricted labels for teens: mature, gambling, alcohol and drugs, self-harm (other labels are capped by the selector) |
//! | [`AudienceFilter`] (`audience`) | followers-only videos for non-followers, mutuals-only for non-mutuals |
//! | [`DurationFilter`] (`duration`) | videos longer than the steering `max_duration_s` |
//! | [`SteeringFilter`] (`steering`) | steering `exclude` matches, and everything outside `only` |
//! | [`ConsentFilter`] (`consent`) | videos featuring anyone whose cameo consent does not cover them |
//!
//! The cheap set lookups run first; consent, which reads the ledger for every person
//! in a cameo, runs last on what is left. [`default_filters`] returns them in that order.

mod audience_filter;
mod blocked_filter;
mod consent_filter;
mod deleted_filter;
mod duration_filter;
mod safety_filter;
mod seen_filter;
mod steering_filter;

use std::sync::Arc;

pub use audience_filter::AudienceFilter;
pub use blocked_filter::BlockedFilter;
pub use consent_filter::{ConsentFilter, consent_allows, effective_scope};
pub use deleted_filter::DeletedFilter;
pub use duration_filter::DurationFilter;
pub use safety_filter::SafetyFilter;
pub use seen_filter::SeenFilter;
use steerfeed_core::ports::{ConsentLedger, SocialGraph};
use steerfeed_core::{Error, Filter, Result};
pub use steering_filter::{SteeringFilter, concept_match};

/// Tunables of the filters, one default each.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// A video whose embedding has at least this cosine similarity with an `exclude`
    /// phrase is excluded. Default 0.5.
    pub exclude_similarity: f32,
    /// A video needs at least this similarity with an `only` phrase (or the topic) to
    /// pass. Default 0.4.
    pub only_similarity: f32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            exclude_similarity: 0.5,
            only_similarity: 0.4,
        }
    }
}

impl FilterConfig {
    /// Checks that both thresholds are finite similarities in `(-1, 1]`.
    pub fn validate(&self) -> Result<()> {
        for (field, x) in [
            ("exclude_similarity", self.exclude_similarity),
            ("only_similarity", self.only_similarity),
        ] {
            if !(x.is_finite() && x > -1.0 && x <= 1.0) {
                return Err(Error::OutOfRange {
                    field,
                    got: f64::from(x),
                    min: -1.0,
                    max: 1.0,
                });
            }
        }
        Ok(())
    }
}

/// Every filter, cheapest first, consent last.
pub fn default_filters(
    cfg: &FilterConfig,
    graph: Arc<dyn SocialGraph>,
    consent: Arc<dyn ConsentLedger>,
) -> Vec<Box<dyn Filter>> {
    vec![
        Box::new(DeletedFilter),
        Box::new(BlockedFilter),
        Box::new(SeenFilter),
        Box::new(SafetyFilter),
        Box::new(AudienceFilter::new(graph.clone())),
        Box::new(DurationFilter),
        Box::new(SteeringFilter::new(*cfg)),
        Box::new(ConsentFilter::new(consent)),
    ]
}

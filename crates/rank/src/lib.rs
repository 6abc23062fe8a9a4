//! # steerfeed-rank
//!
//! The ranking stages as pure logic over core types (docs/design.md §3, §5, §6), one directory
//! per stage role and one file per stage:
//!
//! - [`sources`]: eight candidate sources with quotas, and the [`coengagement`] model
//!   one of them reads;
//! - [`filters`]: the hard filters (deleted, blocked, seen, safety, audience, duration,
//!   steering, consent), each reporting what it removed;
//! - [`scorers`]: the creation-over-consumption objective with calibrated action heads,
//!   a `ScoreBreakdown` and a user-facing reason per item;
//! - [`selectors`]: diversity, author decay, topic caps, the following share and the
//!   teen sensitive-content cap;
//! - [`throttles`]: the wellbeing and parental gates and inline cards, and the policy
//!   functions (λ(session), lighter mode) the scorer reads;
//! - [`assemble`]: all of it wired into core's `Pipeline` from one [`RankConfig`].
//!
//! It depends on `steerfeed-core` only and reaches the index and the store through
//! core's ports, so it compiles and tests fast with in-memory data.

#![warn(missing_docs)]

pub mod assemble;
pub mod coengagement;
pub mod filters;
pub mod recent_profile;
pub mod scorers;
pub mod selectors;
pub mod sources;
pub mod throttles;
pub mod trending;

pub use assemble::{Ports, RankConfig, Shadow, build_pipeline, ranking_stages};
pub use coengagement::{CoEngagementIndex, CoEngagementParams, engagement_weight};
pub use recent_profile::RecentProfileConfig;
pub use sources::{CoEngagementConfig, SourceQuotas};
pub use throttles::WellbeingConfig;
pub use trending::TrendingParams;

//! # steerfeed-rank
//!
//! The ranking stages as pure logic over core types (DESIGN §3, §5, §6): candidate
//! [`sources`] and the [`coengagement`] model they read today; filters, the
//! creation-over-consumption scorer, the diversity selector and the wellbeing throttles
//! come with the ranking issue. It depends on `steerfeed-core` only and reaches the index
//! and the store through core's ports, so it compiles and tests fast with in-memory data.

#![warn(missing_docs)]

pub mod assemble;
pub mod coengagement;
pub mod filters;
pub mod scorers;
pub mod selectors;
pub mod sources;
pub mod throttles;

pub use assemble::{Ports, RankConfig, build_pipeline, ranking_stages};
pub use coengagement::{CoEngagementIndex, CoEngagementParams, engagement_weight};
pub use sources::SourceQuotas;

//! # steerfeed-core
//!
//! The vocabulary of steerfeed: ids, [`Video`], [`Event`], [`FeedRequest`] and
//! [`FeedResponse`], steering [`Constraints`], [`ScoreBreakdown`] and [`Explanation`];
//! the stage traits ([`Source`], [`Filter`], [`Scorer`], [`Selector`], [`Throttle`]) and
//! the synchronous [`Pipeline`] runner; and the [ports] through which stages reach the
//! index and the store.
//!
//! Design decisions:
//!
//! - **Validation at the boundary.** Ids, embeddings, requests and constraints check
//!   themselves when constructed or deserialised, so a value of these types is valid
//!   everywhere downstream. Bad input is a user [`Error`] with the field named.
//! - **Small stages.** Each stage trait has one method to implement and a provided `run`
//!   that opens a tracing span and records counts in the request's [`Trace`], so the
//!   harness and `/metrics` can say which filter dropped what.
//! - **Total order on scores.** [`rank_order`] sinks NaN and infinities; the runner
//!   removes non-finite scores before selection, so they never take a slot.
//! - **No heavy dependencies.** This crate depends on serde, thiserror, tracing and jiff
//!   only, so every other crate builds on it quickly.

#![warn(missing_docs)]

pub mod bytes;
pub mod constraints;
pub mod error;
pub mod event;
pub mod explain;
pub mod feed;
#[cfg(feature = "openapi")]
pub mod formats;
pub mod hash;
pub mod ids;
pub mod impression;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod person;
pub mod pipeline;
pub mod policy;
pub mod ports;
pub mod preference_edit;
pub mod score;
pub mod stage;
pub mod storage;
pub mod user;
pub mod vector;
pub mod video;
pub mod wire;

pub use constraints::{
    Concept, Constraints, Freshness, Rejected, Shift, Unclear, UnclearReason, WeightedConcept,
};
pub use error::{Entity, Error, ErrorClass, Result};
pub use event::{Event, EventKind};
pub use explain::{Explanation, Reason};
pub use feed::{Card, CardKind, Cursor, FeedItem, FeedRequest, FeedResponse};
pub use ids::{EventKey, SessionId, TopicId, UserId, VideoId};
pub use impression::{
    HeadInputs, ImpressionItem, ImpressionPage, LoggedPage, PageShadow, SlotDraw,
};
pub use jiff::Timestamp;
pub use person::{ErasureReport, OwnVideos, Record, RecordKind};
pub use pipeline::{Pipeline, PipelineBuilder, PipelineOutput, TopK, VideoTrace};
pub use preference_edit::{ItemAddress, ItemChange, ItemList};
pub use score::{ActionProbs, ScoreBreakdown, rank_order};
pub use stage::{
    Candidate, ConceptVector, FeedContext, Filter, Filtered, IdMap, IdSet, Role, Scorer, Selector,
    Source, StageReport, Throttle, ThrottleAction, Trace, Viewer, minutes_between,
};
pub use storage::PreferenceEdit;
pub use user::{AgeBand, CheckinAnswer, ConsentScope, ParentalControls, User, WellbeingState};
pub use vector::Embedding;
pub use video::{Audience, SafetyLabel, Video};

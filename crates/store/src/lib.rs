//! # steerfeed-store
//!
//! (docs to come)

#![warn(missing_docs)]

mod cache;
mod codec;
mod commit;
mod ingest;
mod options;
mod ports;
mod store;
mod toplist;

pub use options::{StoreOptions, WeightFn, default_weight};
pub use store::{IngestReport, Preferences, Revocation, SCHEMA_VERSION, Store};

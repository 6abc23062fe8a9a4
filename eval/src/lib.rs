//! # steerfeed-eval
//!
//! The offline evaluation harness (docs/design.md §8), reached through `steerfeed eval`:
//!
//! - [`microlens`]: leave-last-out replay on MicroLens-50k (HR@K, NDCG@K, MRR, coverage,
//!   intra-list diversity) for the engine and its baselines;
//! - [`sim`]: closed-loop sessions on a seeded synthetic world through the real engine;
//! - [`report`]: runs both and writes JSON, a Markdown report and PNG plots;
//! - [`metrics`], [`plot`], [`progress`]: the pieces they share.

#![warn(missing_docs)]

pub mod metrics;
pub mod microlens;
pub mod plot;
pub mod progress;
pub mod report;
pub mod sim;

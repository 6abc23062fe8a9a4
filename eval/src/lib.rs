//! # steerfeed-eval
//!
//! The offline evaluation harness (docs/design.md §8), reached through `steerfeed eval`:
//!
//! - [`microlens`]: leave-last-out replay on MicroLens-50k (HR@K, NDCG@K, MRR, coverage,
//!   intra-list diversity) for the engine and its baselines;
//! - [`sim`]: closed-loop sessions on a seeded synthetic world through the real engine;
//! - [`closed_loop`]: `steerfeed eval loop`, simulate with the configured heads, train on
//!   the engine's own impression log, simulate again with the trained model, over seeds;
//! - [`report`]: runs both and writes JSON, a Markdown report and PNG plots;
//! - [`bench_feed`]: `steerfeed bench feed`, the engine end to end on a seeded world
//!   (build, ingest, feed latency);
//! - [`ann_bench`]: `steerfeed bench ann`, the vector index on TEXMEX files or a seeded
//!   set (recall, QPS, build time, size);
//! - [`prefs`]: `steerfeed prefs parse|eval`, the steering parser scored on labelled lines;
//! - [`metrics`], [`plot`], [`progress`]: the pieces they share.

#![warn(missing_docs)]

pub mod ann_bench;
pub mod bench_feed;
#[cfg(feature = "learn")]
pub mod closed_loop;
pub mod metrics;
pub mod microlens;
pub mod offpolicy;
pub mod plot;
pub mod prefs;
pub mod progress;
pub mod report;
pub mod sim;

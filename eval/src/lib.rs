//! # steerfeed-eval
//!
//! The offline evaluation harness (DESIGN §8): MicroLens-50k replay (HR@K, NDCG@K, MRR,
//! coverage, diversity) against baselines, closed-loop simulation on synthetic worlds,
//! and reports with plots. Reached through `steerfeed eval`.
//!
//! The harness arrives with the evaluation issue; this crate is its home.

#![warn(missing_docs)]

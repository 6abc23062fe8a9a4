//! # steerfeed-ann
//!
//! Candidate retrieval by vector similarity (DESIGN §1, §3): the `VectorIndex` trait,
//! `HnswIndex` (graphs built by `hnsw_rs`), `FlatIndex` (exact, for tests and small
//! catalogs), tombstones, filtered search and dump/load. It implements the
//! [`steerfeed_core::ports::VectorSearch`] port that the ranking sources use.
//!
//! The index itself arrives with the candidate-generation issue; this crate is its home.

#![warn(missing_docs)]

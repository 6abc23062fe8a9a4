//! # steerfeed-rank
//!
//! The ranking stages as pure logic over core types (DESIGN §3, §5, §6): candidate
//! sources, filters (deleted, seen, blocked, consent, safety, audience, steering,
//! duration), the creation-over-consumption scorer, the diversity selector, wellbeing
//! throttles and explanations. It depends on `steerfeed-core` only and reaches the index
//! and the store through core's ports, so it compiles and tests fast with in-memory data.
//!
//! The stages arrive with the ranking and candidate-generation issues; this crate is their home.

#![warn(missing_docs)]

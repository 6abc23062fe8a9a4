//! # steerfeed-store
//!
//! The embedded store on sled 0.34 (DESIGN §2, §10): videos, users, the follow graph,
//! consent, parental controls, preferences, wellbeing counters, seen history, action
//! counters, the idempotent event log and embeddings, implementing core's ports.
//!
//! The store arrives with the embedded-engine issue; this crate is its home.

#![warn(missing_docs)]

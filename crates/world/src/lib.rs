//! # steerfeed-world
//!
//! Seeded synthetic worlds (DESIGN §1, §8): users with topic interests, age bands and
//! time zones, a follow graph with homophily, creators, captions, clustered embeddings,
//! remix chains, cameo grants and revocations, event histories and a behaviour model.
//! The same seed gives the same world. Used by tests, benches, the demo and the simulator.
//!
//! The generator arrives with the ranking issue; this crate is its home.

#![warn(missing_docs)]

//! # steerfeed-world
//!
//! Seeded synthetic worlds (docs/design.md §1, §8) for tests, benches, the demo and the
//! simulator: users with topic interests, age bands and time zones; creators; a follow
//! graph with homophily and mutuals; videos with topics, safety labels, captions from
//! varied per-topic templates and clustered embeddings; remix chains; cameo consent
//! grants and revocations; and event histories. The same [`WorldConfig`] (seed
//! included) always gives the same [`World`].
//!
//! Embeddings are clustered by topic (a seeded centre per topic, the video's topics
//! mixed, plus noise), so ANN and steering-by-topic behave as on real data. When real
//! caption embeddings are wanted, [`World::reembed`] replaces them through any encoder
//! the caller passes (this crate depends on `steerfeed-core` only).

#![warn(missing_docs)]

pub mod behaviour;
mod captions;
mod generate;
pub mod vectors;

pub use generate::{ConsentGrant, Revocation, SimUser, World, WorldConfig, label_of};

/// The default taxonomy's topic ids (docs/design.md §4), in a fixed order.
pub const DEFAULT_TOPICS: [&str; 39] = [
    "comedy",
    "cooking",
    "pets",
    "wildlife",
    "dance",
    "music",
    "gaming",
    "anime",
    "sports",
    "soccer",
    "basketball",
    "fitness",
    "extreme_sports",
    "beauty",
    "fashion",
    "travel",
    "cars",
    "tech",
    "science",
    "diy",
    "art",
    "film",
    "politics",
    "finance",
    "parenting",
    "relationships",
    "horror",
    "asmr",
    "home",
    "gardening",
    "history",
    "motivation",
    "vlogs",
    "magic",
    "weight_loss",
    "violence",
    "mature",
    "sad",
    "ai_art",
];

//! # steerfeed-ann
//!
//! Candidate retrieval by vector similarity (docs/design.md §1, §3). [`VectorIndex`] is the
//! trait; [`HnswIndex`] is the serving index and [`FlatIndex`] the exact one (for tests
//! and small catalogs). Vectors are unit length and similarity is the inner product.
//!
//! Design decisions:
//!
//! - **`hnsw_rs` builds, we serve.** `hnsw_rs` stays the graph builder; the graph is then
//!   exported into flat, cache-friendly arrays (contiguous vectors, fixed-width layer-0
//!   links) and searched by our own code with a reusable visited array, prefetching and
//!   an AVX2+FMA inner product chosen at run time. `hnsw_rs`'s own search allocates per
//!   candidate and locks per neighbour list, which made it 3× slower than hnswlib here.
//! - **Segments.** New vectors go to a small live segment searched exactly; a background
//!   fold inserts them into the graph (a rebuild drops tombstones), while searches go on.
//! - **Filters inside the search**, with an exact scan when the filter is selective; see
//!   [`hnsw`] for the rule.
//! - **Ids are `u32` and never reused**; the caller maps them to video ids.
//! - **One file per index** (`persist`): sealed graph, live segment, tombstones, the
//!   video-id map and the catalog version the index reflects, versioned
//!   ([`FORMAT_VERSION`]), checksummed and written atomically, so an index saved at
//!   any moment can be reloaded and brought up to date from the store's catalog log.

#![warn(missing_docs)]

pub mod distance;
pub mod error;
pub mod flat;
mod graph;
pub mod hnsw;
pub mod idset;
pub mod index;
pub mod params;
mod persist;
mod quant;
mod state;
mod sync;
pub mod video_index;

pub use error::{Error, Result};
pub use flat::FlatIndex;
pub use hnsw::{HnswIndex, IndexStats};
pub use idset::IdSet;
pub use index::{Filter, Hit, VectorIndex};
pub use params::{HnswBuildParams, HnswSearchParams, VectorStorage};
pub use persist::FORMAT_VERSION;
pub use video_index::{IndexSnapshot, VideoIndex};

//! # steerfeed-ann
//!
//! Candidate retrieval by vector similarity (docs/design.md §1, §3). [`VectorIndex`] is the
//! trait; [`HnswIndex`] is the serving index and [`FlatIndex`] the exact one (for tests
//! and small catalogs). Vectors are unit length and similarity is the inner product.
//!
//! Design decisions:
//!
//! - **Our own graph, built and searched.** The builder ([`graph`]'s `build`) is
//!   hnswlib's insertion run on several threads over lock-free link lists, followed by a
//!   re-selection of layer-0 links over forward and reverse links and a pass that links
//!   any node a walk could not reach. `hnsw_rs` built the graph before: 3× hnswlib's
//!   build time, and a graph that lost recall at 1M because it shrank overflowing
//!   neighbour lists by distance alone. The graph lives in flat, cache-friendly arrays
//!   (node rows with links beside the vector) searched with a reusable visited array,
//!   prefetching and an AVX2+FMA inner product chosen at run time.
//! - **Int8 codes, exact answers** ([`VectorStorage::Int8`]): the walk can read int8
//!   codes (a quarter of the bytes) and rescore its best candidates with the exact
//!   vectors, which an index opened from its file maps rather than reads.
//! - **Builds larger than memory** ([`SpillTo`]): a build gathers its vectors one at a
//!   time ([`HnswIndex::bulk`]) and, given a spill directory, writes them past a size to
//!   an unnamed file there and builds over it mapped, so its floats are page cache the
//!   kernel can drop, not the process's own memory.
//! - **Segments.** New vectors go to a small live segment searched exactly; a background
//!   fold inserts them into the graph (a rebuild drops tombstones), while searches go on.
//! - **Filters inside the search**, with an exact scan when the filter is selective; see
//!   [`hnsw`] for the rule.
//! - **Partitions by tag** (`tags`): ids may carry tags (a video's topics); a tag with
//!   enough nodes gets a sub-graph of its own links over the graph's rows, so a search
//!   restricted to one topic ([`HnswIndex::search_tagged`]) walks a small graph instead
//!   of scanning or filtering the whole one.
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
mod tags;
pub mod video_index;

pub use error::{Error, Result};
pub use flat::FlatIndex;
pub use graph::SpillTo;
pub use hnsw::{BulkBuild, HnswIndex, IndexStats};
pub use idset::IdSet;
pub use index::{Filter, Hit, VectorIndex};
pub use params::{HnswBuildParams, HnswSearchParams, VectorStorage};
pub use persist::FORMAT_VERSION;
pub use video_index::{IndexSnapshot, VideoBulk, VideoIndex};

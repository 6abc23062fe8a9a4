//! # steerfeed
//!
//! A feed-ranking engine for short-video social apps in which every video is generated:
//! users steer their feed in plain language, the objective rewards creation over
//! passive consumption, and wellbeing throttles, teen limits, parental controls and
//! likeness consent are enforced inside the engine.
//!
//! This is the facade an app depends on: it re-exports the core types and wires the
//! index, the encoder, the ranking stages and the store behind [`Engine`]. The inner
//! crates (`steerfeed-core`, `-ann`, `-steer`, `-rank`, `-store`) never need naming.
//!
//! ```
//! use steerfeed::{Config, Engine};
//!
//! let engine = Engine::open(Config::default())?;
//! let v = engine.embed("way more cooking videos")?;
//! assert_eq!(v.dim(), 384);
//! # Ok::<(), steerfeed::Error>(())
//! ```

#![warn(missing_docs)]

pub mod config;
mod engine;

pub use config::{Config, ConfigError};
pub use engine::Engine;
/// Vector indexes, for apps that manage their own (and for `steerfeed bench ann`).
pub use steerfeed_ann as ann;
pub use steerfeed_core::*;
/// The encoder, the taxonomy and the preference parser.
pub use steerfeed_steer as steer;

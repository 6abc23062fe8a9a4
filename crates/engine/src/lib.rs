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
//! use steerfeed::{Config, Engine, FeedRequest, Timestamp, User, UserId, Video, VideoId};
//!
//! let dir = tempfile::tempdir()?;
//! let mut config = Config::default();
//! config.store.path = dir.path().to_path_buf(); // the store and the index live here
//! let engine = Engine::open(config)?;            // loads the model `make setup` fetched
//!
//! let (ana, me) = (UserId::new("ana")?, UserId::new("me")?);
//! engine.upsert_user(&User::new(ana.clone()))?;
//! engine.upsert_user(&User::new(me.clone()))?;
//! let now = Timestamp::now();
//! engine.upsert_videos(&[
//!     Video { caption: "a tabby kitten chases a laser pointer".into(),
//!             ..Video::new(VideoId::new("v1")?, ana.clone(), now, 12.0) },
//!     Video { caption: "breaking news from parliament tonight".into(),
//!             ..Video::new(VideoId::new("v2")?, ana.clone(), now, 40.0) },
//! ])?; // embeddings and topics come from the captions
//! engine.follow(&me, &ana)?;
//! engine.set_preferences(&me, "more cats, no politics", now)?;
//!
//! let page = engine.feed(&FeedRequest::new(me, 10)?.at(now))?;
//! assert_eq!(page.items.len(), 1); // "no politics" removed v2
//! assert_eq!(page.items[0].video.as_str(), "v1");
//! println!("{}", page.items[0].explanation.text);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod demo;
mod engine;
pub mod model;
mod pool;
mod profile;
mod transfer;

pub use config::{
    Config, ConfigError, DEFAULT_PROFILE, ExperimentConfig, LearningConfig, ProfileConfig,
};
pub use engine::{
    BackupFile, BackupManifest, CameoView, Engine, INDEX_FILE, IndexOpen, LabeledImpression,
    Limits, Outcomes, PersonView, Preview, RestoreReport, SourceHit, StageSummary, VideoVerdict,
    VideoView, open_parser,
};
pub use pool::{PagesConfig, PoolCounts};
pub use profile::{ProfileSummary, TopicShare};
/// Vector indexes, for apps that manage their own (and for `steerfeed bench ann`).
pub use steerfeed_ann as ann;
pub use steerfeed_core::*;
/// The ranking stages and their configuration.
pub use steerfeed_rank as rank;
/// The encoder, the taxonomy and the preference parser.
pub use steerfeed_steer as steer;
/// The embedded store.
pub use steerfeed_store as store;
pub use steerfeed_store::{IngestReport, Preferences, Revocation};
/// Seeded synthetic worlds (for demos, benches and simulations).
pub use steerfeed_world as world;
pub use transfer::Imported;

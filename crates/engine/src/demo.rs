//! Loading a seeded synthetic world (`steerfeed-world`) into an engine: the demo catalog
//! of `make run`, the engine bench, the example and the tests use it.

use std::time::Instant;

use steerfeed_core::Result;
use steerfeed_world::{Revocation as WorldRevocation, World};

use crate::Engine;
use steerfeed_store::Revocation;

/// What [`load_world`] did and how fast.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LoadReport {
    /// Users stored.
    pub users: usize,
    /// Videos stored and indexed.
    pub videos: usize,
    /// Seconds spent on videos.
    pub video_secs: f64,
    /// Follow edges.
    pub follows: usize,
    /// Events ingested (accepted).
    pub events: usize,
    /// Seconds spent on events.
    pub event_secs: f64,
}

/// Loads `world` into `engine`: users, videos (in batches of `batch`), follows, consent
/// grants, revocations, then events (in batches of `batch`).
pub fn load_world(engine: &Engine, world: &World, batch: usize) -> Result<LoadReport> {
    let batch = batch.max(1);
    let mut r = LoadReport::default();
    for u in &world.users {
        engine.upsert_user(&u.user)?;
    }
    r.users = world.users.len();
    let start = Instant::now();
    for chunk in world.videos.chunks(batch) {
        engine.upsert_videos(chunk)?;
    }
    r.videos = world.videos.len();
    r.video_secs = start.elapsed().as_secs_f64();
    for (a, b) in &world.follows {
        engine.follow(a, b)?;
    }
    r.follows = world.follows.len();
    for g in &world.consents {
        engine.set_consent(&g.person, g.scope, &[])?;
    }
    for rev in &world.revocations {
        match rev {
            WorldRevocation::Video { person, video } => {
                engine.revoke_consent(person, &Revocation::Video(video.clone()))?
            }
            WorldRevocation::Creator { person, creator } => {
                engine.revoke_consent(person, &Revocation::Creator(creator.clone()))?
            }
        }
    }
    let start = Instant::now();
    for chunk in world.events.chunks(batch) {
        r.events += engine.ingest_events(chunk)?.accepted;
    }
    r.event_secs = start.elapsed().as_secs_f64();
    Ok(r)
}

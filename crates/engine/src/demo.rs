//! Loading a seeded synthetic world (`steerfeed-world`) into an engine: the demo catalog
//! of `make run`, the engine bench, the example, the simulation and the tests use it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use steerfeed_core::storage::Relation;
use steerfeed_core::{Error, Result};
use steerfeed_world::{Revocation as WorldRevocation, World};

use crate::Engine;
use steerfeed_store::Revocation;

/// What [`load_world`] did and how fast.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct LoadReport {
    /// Users stored.
    pub users: usize,
    /// Seconds spent on users.
    pub user_secs: f64,
    /// Videos stored and indexed.
    pub videos: usize,
    /// Seconds spent on videos.
    pub video_secs: f64,
    /// Follow edges.
    pub follows: usize,
    /// Seconds spent on follows.
    pub follow_secs: f64,
    /// Consent grants.
    pub consents: usize,
    /// Consent revocations.
    pub revocations: usize,
    /// Events ingested (accepted).
    pub events: usize,
    /// Seconds spent on events.
    pub event_secs: f64,
}

/// The steps of a load, in order, as [`LoadOptions::progress`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadStep {
    /// Users.
    Users,
    /// Videos, in batches.
    Videos,
    /// Follow edges.
    Follows,
    /// Consent grants.
    Consents,
    /// Consent revocations.
    Revocations,
    /// The history of events, in batches.
    Events,
}

impl LoadStep {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            LoadStep::Users => "users",
            LoadStep::Videos => "videos",
            LoadStep::Follows => "follows",
            LoadStep::Consents => "consents",
            LoadStep::Revocations => "revocations",
            LoadStep::Events => "events",
        }
    }
}

/// How to load: the batch size of videos, follows and events, the threads that write
/// users and consent (each an independent write), and a progress callback.
pub struct LoadOptions<'a> {
    /// Videos per `upsert_videos` call, follows per `set_relations` call and events per
    /// `ingest_events` call.
    pub batch: usize,
    /// Threads for the per-item writes (users, consent); batches go in order.
    pub threads: usize,
    /// Called with the step, the items done and the step's total: once at the start of
    /// each step (0 done), as work finishes, and at its end (all done).
    pub progress: &'a (dyn Fn(LoadStep, usize, usize) + Sync),
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        Self {
            batch: 1_000,
            threads: 1,
            progress: &|_, _, _| {},
        }
    }
}

/// Loads `world` into `engine` in order: users, videos and follows (in batches of
/// `batch`), consent grants, revocations, then events (in batches of `batch`).
pub fn load_world(engine: &Engine, world: &World, batch: usize) -> Result<LoadReport> {
    load_world_with(
        engine,
        world,
        &LoadOptions {
            batch,
            ..LoadOptions::default()
        },
    )
}

/// [`load_world`] with threads and progress ([`LoadOptions`]).
pub fn load_world_with(
    engine: &Engine,
    world: &World,
    opts: &LoadOptions<'_>,
) -> Result<LoadReport> {
    let batch = opts.batch.max(1);
    let each = |step, items: usize, f: &(dyn Fn(usize) -> Result<()> + Sync)| {
        load_step(step, items, opts, f)
    };
    let mut r = LoadReport::default();

    r.users = world.users.len();
    r.user_secs = each(LoadStep::Users, r.users, &|i| {
        engine.upsert_user(&world.users[i].user)
    })?;
    r.videos = world.videos.len();
    r.video_secs = in_batches(LoadStep::Videos, &world.videos, batch, opts, |chunk| {
        engine.upsert_videos(chunk)
    })?;
    r.follows = world.follows.len();
    // In batches: one durable write each (on the shared backend, one logged change).
    r.follow_secs = in_batches(LoadStep::Follows, &world.follows, batch, opts, |chunk| {
        let follows: Vec<_> = chunk
            .iter()
            .map(|(a, b)| (a.clone(), b.clone(), Relation::Follow, true))
            .collect();
        engine.set_relations(&follows)
    })?;
    r.consents = world.consents.len();
    each(LoadStep::Consents, r.consents, &|i| {
        let g = &world.consents[i];
        engine.set_consent(&g.person, g.scope, &[])
    })?;
    r.revocations = world.revocations.len();
    each(
        LoadStep::Revocations,
        r.revocations,
        &|i| match &world.revocations[i] {
            WorldRevocation::Video { person, video } => {
                engine.revoke_consent(person, &Revocation::Video(video.clone()))
            }
            WorldRevocation::Creator { person, creator } => {
                engine.revoke_consent(person, &Revocation::Creator(creator.clone()))
            }
        },
    )?;
    let accepted = AtomicUsize::new(0);
    r.event_secs = in_batches(LoadStep::Events, &world.events, batch, opts, |chunk| {
        let report = engine.ingest_events(chunk)?;
        accepted.fetch_add(report.accepted, Ordering::Relaxed);
        Ok(())
    })?;
    r.events = accepted.into_inner();
    Ok(r)
}

/// Calls `f` on each batch of `items` in order; returns the seconds taken.
fn in_batches<T>(
    step: LoadStep,
    items: &[T],
    batch: usize,
    opts: &LoadOptions<'_>,
    mut f: impl FnMut(&[T]) -> Result<()>,
) -> Result<f64> {
    let started = Instant::now();
    (opts.progress)(step, 0, items.len());
    let mut done = 0;
    for chunk in items.chunks(batch) {
        f(chunk)?;
        done += chunk.len();
        (opts.progress)(step, done, items.len());
    }
    if items.is_empty() {
        (opts.progress)(step, 0, 0);
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Calls `f(i)` for every `i < n` from `threads` threads, telling `done` how many are
/// finished as they finish; the first error stops the others and is returned. Returns
/// the seconds taken. (The loader's per-item writes, and the engine bench's writers.)
pub fn for_each_parallel(
    n: usize,
    threads: usize,
    f: &(dyn Fn(usize) -> Result<()> + Sync),
    done: &(dyn Fn(usize) + Sync),
) -> Result<f64> {
    const CHUNK: usize = 16;
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let work = || {
        while !stop.load(Ordering::Relaxed) {
            let from = next.fetch_add(CHUNK, Ordering::Relaxed);
            if from >= n {
                break;
            }
            for i in from..(from + CHUNK).min(n) {
                if let Err(e) = f(i) {
                    stop.store(true, Ordering::Relaxed);
                    failure
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    return;
                }
            }
            let d = finished.fetch_add(CHUNK, Ordering::Relaxed) + CHUNK;
            done(d.min(n));
        }
    };
    let threads = threads.clamp(1, n.div_ceil(CHUNK).max(1));
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(work);
            }
        });
    }
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(started.elapsed().as_secs_f64())
}

/// [`for_each_parallel`] for one step of a load, with its progress.
fn load_step(
    step: LoadStep,
    n: usize,
    opts: &LoadOptions<'_>,
    f: &(dyn Fn(usize) -> Result<()> + Sync),
) -> Result<f64> {
    (opts.progress)(step, 0, n);
    let secs = for_each_parallel(n, opts.threads, f, &|d| (opts.progress)(step, d, n))?;
    if n == 0 {
        (opts.progress)(step, 0, 0);
    }
    Ok(secs)
}

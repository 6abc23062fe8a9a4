//! Store benches on a seeded world (2,000 users, 20,000 videos, 384 dimensions):
//! one video read (cached and not), a 1,000-video batch read, `video_counts` for 1,000
//! videos, and `ingest_events` throughput with one writer (batches of 10, 100 and 1,000)
//! and with four concurrent writers (group commit). Run with `cargo bench -p steerfeed-store`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steerfeed_core::ports::ActionStats;
use steerfeed_core::{Event, EventKey, VideoId};
use steerfeed_store::{Store, StoreOptions};
use steerfeed_world::{World, WorldConfig};

const USERS: usize = 2_000;
const VIDEOS: usize = 20_000;
const BATCH: usize = 100;

fn world() -> World {
    let mut c = WorldConfig::new(11, USERS, VIDEOS);
    c.events_per_user = 20;
    World::generate(c)
}

fn load(world: &World, dir: &std::path::Path, opts: StoreOptions) -> Store {
    let store = Store::open(dir, opts).unwrap();
    for u in &world.users {
        store.upsert_user(&u.user).unwrap();
    }
    for chunk in world.videos.chunks(1_000) {
        store.upsert_videos(chunk).unwrap();
    }
    for chunk in world.events.chunks(1_000) {
        store.ingest_events(chunk).unwrap();
    }
    store
}

/// World events under fresh idempotency keys, so each batch is really ingested.
fn fresh_batch(world: &World, counter: &AtomicU64) -> Vec<Event> {
    fresh(world, counter, BATCH)
}

fn fresh(world: &World, counter: &AtomicU64, n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let mut e = world.events[n as usize % world.events.len()].clone();
            e.key = EventKey::new(format!("bench-{n}")).unwrap();
            e
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let world = world();
    let dir = tempfile::tempdir().unwrap();
    let store = load(&world, &dir.path().join("cached"), StoreOptions::default());
    let cold_dir = tempfile::tempdir().unwrap();
    let cold = load(
        &world,
        &cold_dir.path().join("cold"),
        StoreOptions {
            video_cache: 0,
            ..StoreOptions::default()
        },
    );
    let ids: Vec<VideoId> = world.videos.iter().map(|v| v.id.clone()).collect();
    let step = ids.len() / 1_000;
    let thousand: Vec<&VideoId> = ids.iter().step_by(step).take(1_000).collect();
    let now = world.config.now;
    for id in &thousand {
        store.video(id).unwrap();
    }

    let mut g = c.benchmark_group("read");
    let mut i = 0usize;
    g.bench_function("video_cached_20k", |b| {
        b.iter(|| {
            i = (i + 1) % thousand.len();
            let v = store.video(thousand[i]).unwrap();
            assert!(black_box(v).is_some());
        })
    });
    let mut i = 0usize;
    g.bench_function("video_uncached_20k", |b| {
        b.iter(|| {
            i = (i + 7) % ids.len();
            let v = cold.video(&ids[i]).unwrap();
            assert!(black_box(v).is_some());
        })
    });
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("videos_batch_1000_cached", |b| {
        b.iter(|| {
            let vs = store.videos(&thousand).unwrap();
            assert_eq!(black_box(vs).len(), 1_000);
        })
    });
    g.bench_function("videos_batch_1000_uncached", |b| {
        b.iter(|| {
            let vs = cold.videos(&thousand).unwrap();
            assert_eq!(black_box(vs).len(), 1_000);
        })
    });
    g.bench_function("video_counts_1000", |b| {
        b.iter(|| {
            let cs = store.video_counts(&thousand, now).unwrap();
            assert_eq!(black_box(cs).len(), 1_000);
        })
    });
    g.finish();

    let counter = AtomicU64::new(0);
    let mut g = c.benchmark_group("ingest");
    g.sample_size(20);
    // Long enough to include several background writes of the derived state, which
    // share sled with the log appends.
    g.measurement_time(std::time::Duration::from_secs(15));
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("events_batch100_1_writer", |b| {
        b.iter(|| {
            let r = store.ingest_events(&fresh_batch(&world, &counter)).unwrap();
            assert_eq!(r.accepted, BATCH);
        })
    });
    g.throughput(Throughput::Elements(1_000));
    g.bench_function("events_batch1000_1_writer", |b| {
        b.iter(|| {
            let r = store
                .ingest_events(&fresh(&world, &counter, 1_000))
                .unwrap();
            assert_eq!(r.accepted, 1_000);
        })
    });
    g.throughput(Throughput::Elements(4 * BATCH as u64));
    g.bench_function("events_batch100_4_writers", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        let r = store.ingest_events(&fresh_batch(&world, &counter)).unwrap();
                        assert_eq!(r.accepted, BATCH);
                    });
                }
            });
        })
    });
    g.throughput(Throughput::Elements(4 * 10));
    g.bench_function("events_batch10_4_writers", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for _ in 0..4 {
                    s.spawn(|| {
                        let batch: Vec<Event> =
                            fresh_batch(&world, &counter).into_iter().take(10).collect();
                        assert_eq!(store.ingest_events(&batch).unwrap().accepted, 10);
                    });
                }
            });
        })
    });
    g.throughput(Throughput::Elements(10));
    g.bench_function("events_batch10_1_writer", |b| {
        b.iter(|| {
            let batch: Vec<Event> = fresh_batch(&world, &counter).into_iter().take(10).collect();
            assert_eq!(store.ingest_events(&batch).unwrap().accepted, 10);
        })
    });
    g.finish();
}

criterion_group!(store_benches, benches);
criterion_main!(store_benches);

//! What the shared backend adds to a request, against throwaway PostgreSQL, NATS and
//! Redis servers on loopback (NATS fsyncing every message): a catch-up with nothing new (what
//! every feed pays first), recording a served page (one JetStream message, applied back),
//! a revocation (one PostgreSQL transaction), a teen's page reserving its items and
//! giving some back (two Redis scripts), a page pool kept and taken (two Redis scripts),
//! follows written by eight threads at once (change log writes committed together), and
//! ingest throughput through one process in batches of 48 events. Run with `cargo bench -p steerfeed-shared`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steerfeed_core::storage::{ItemAsk, Relation, Revocation, ServedPage, Storage};
use steerfeed_core::{Event, EventKey, EventKind, Timestamp, VideoId};
use steerfeed_shared::servers::Servers;
use steerfeed_shared::{SharedOptions, SharedStore};
use steerfeed_store::StoreOptions;
use steerfeed_world::{World, WorldConfig};

const BATCH: usize = 48;
const WRITERS: usize = 8;

fn open() -> (SharedStore, World) {
    let servers = Servers::shared().unwrap();
    let store = SharedStore::open(SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &servers.redis_url,
        &Servers::namespace("b"),
        StoreOptions::with_dim(32),
    ))
    .unwrap();
    let mut c = WorldConfig::new(7, 500, 5_000);
    c.dim = 32;
    c.events_per_user = 0;
    let world = World::generate(c);
    for u in &world.users {
        store.upsert_user(&u.user).unwrap();
    }
    for chunk in world.videos.chunks(1_000) {
        store.upsert_videos(chunk).unwrap();
    }
    (store, world)
}

fn bench(c: &mut Criterion) {
    let (store, world) = open();
    let now = Timestamp::now();
    c.bench_function("catch_up_idle", |b| b.iter(|| store.catch_up().unwrap()));
    let page: Vec<VideoId> = world.videos[..20].iter().map(|v| v.id.clone()).collect();
    let user = world.users[0].user.id.clone();
    c.bench_function("record_page_20", |b| {
        b.iter(|| {
            store
                .record_page(
                    &user,
                    &ServedPage {
                        videos: &page,
                        ..ServedPage::default()
                    },
                    now,
                )
                .unwrap()
        })
    });
    let n = AtomicU64::new(0);
    c.bench_function("revoke_consent", |b| {
        b.iter(|| {
            let i = n.fetch_add(1, Ordering::Relaxed) as usize % world.videos.len();
            store
                .revoke_consent(&user, &Revocation::Video(world.videos[i].id.clone()))
                .unwrap()
        })
    });
    let day = AtomicU64::new(0);
    let first = jiff::civil::date(2026, 1, 1);
    c.bench_function("reserve_and_release_items", |b| {
        b.iter(|| {
            // A new day every 30 pages: the cap never stops the reservations.
            let d = day.fetch_add(1, Ordering::Relaxed) / 30;
            let on = first
                .checked_add(jiff::Span::new().days(d as i64 % 3_000))
                .unwrap();
            let ask = ItemAsk {
                day: on,
                floor: 0,
                want: 10,
                cap: 300,
            };
            let g = store.reserve_items(&user, ask).unwrap();
            store.release_items(&user, &g, 3).unwrap()
        })
    });
    // A page pool of 400 candidates is about 70–80 KB: kept after a ranking, taken by the
    // next page; a tenth of that for the cost of its size; a take that finds none. A keep
    // is not waited for, but the next take reaches Redis after it.
    let pool = vec![7u8; 80_000];
    let pools = store.shared_pools().unwrap();
    c.bench_function("keep_and_take_pool_80k", |b| {
        b.iter(|| {
            let stamp = pools.take_pool(&user).unwrap().unwrap().0.unwrap();
            pools
                .keep_pool(&user, stamp, &pool, 60, Box::new(|_| {}))
                .unwrap();
        })
    });
    let small = vec![7u8; 8_000];
    c.bench_function("keep_and_take_pool_8k", |b| {
        b.iter(|| {
            let stamp = pools.take_pool(&user).unwrap().unwrap().0.unwrap();
            pools
                .keep_pool(&user, stamp, &small, 60, Box::new(|_| {}))
                .unwrap();
        })
    });
    c.bench_function("take_pool_empty", |b| {
        b.iter(|| pools.take_pool(&world.users[1].user.id).unwrap().unwrap())
    });
    // Follows and unfollows from eight threads at once, as eight requests: each a
    // write of the change log, which commits every write queued by then together.
    let mut g = c.benchmark_group("writes");
    g.throughput(Throughput::Elements(WRITERS as u64));
    let round = AtomicU64::new(0);
    g.bench_function("follows_8_writers", |b| {
        b.iter_custom(|iters| {
            let on = round.fetch_add(1, Ordering::Relaxed).is_multiple_of(2);
            let started = std::time::Instant::now();
            std::thread::scope(|s| {
                for t in 0..WRITERS {
                    let (store, world) = (&store, &world);
                    s.spawn(move || {
                        for i in 0..iters as usize {
                            let a = &world.users[(t * 31 + i) % world.users.len()].user.id;
                            let b = &world.users[(t * 17 + i * 7 + 1) % world.users.len()]
                                .user
                                .id;
                            if a != b {
                                store.set_relation(a, b, Relation::Follow, on).unwrap();
                            }
                        }
                    });
                }
            });
            started.elapsed()
        })
    });
    g.finish();
    let key = AtomicU64::new(0);
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("batch_48", |b| {
        b.iter(|| {
            let events: Vec<Event> = (0..BATCH)
                .map(|i| {
                    let k = key.fetch_add(1, Ordering::Relaxed) as usize;
                    Event {
                        key: EventKey::new(format!("k{k}")).unwrap(),
                        user: world.users[k % world.users.len()].user.id.clone(),
                        at: now,
                        kind: EventKind::View {
                            video: world.videos[(k * 7 + i) % world.videos.len()].id.clone(),
                            watch_ms: 8_000,
                            completed: false,
                        },
                    }
                })
                .collect();
            store.ingest_events(&events).unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);

//! A process whose PostgreSQL is down answers `Unavailable` (HTTP 503) to every write and
//! to the catch-up every feed starts with, so no feed is ranked on a mirror that may lack
//! a revocation; one whose NATS is down takes no event, and its catch-up fails only when
//! it has an acknowledged batch to read from the stream; one whose Redis is down reserves no teen's items and is not
//! ready; when the server is back, the same process carries on, and what
//! the stream had acknowledged before a kill -9 of its server is there for a process that
//! starts afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use steerfeed_core::ports::ConsentLedger;
use steerfeed_core::storage::{ItemAsk, Revocation, Storage};
use steerfeed_core::{
    AgeBand, ConsentScope, Embedding, ErrorClass, Event, EventKey, EventKind, Timestamp, User,
    UserId, Video, VideoId,
};
use steerfeed_shared::servers::{OwnServers, Servers};
use steerfeed_shared::{SharedOptions, SharedStore};
use steerfeed_store::StoreOptions;

const DIM: usize = 8;

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn vid(s: &str) -> VideoId {
    VideoId::new(s).unwrap()
}

fn view(key: &str) -> Event {
    Event {
        key: EventKey::new(key).unwrap(),
        user: uid("viewer"),
        at: Timestamp::from_second(1_795_000_000).unwrap(),
        kind: EventKind::View {
            video: vid("v"),
            watch_ms: 60_000,
            completed: false,
        },
    }
}

/// Retries `f` until it succeeds (a client finding its server again), for up to 30 s.
fn eventually<T>(mut f: impl FnMut() -> steerfeed_core::Result<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        match f() {
            Ok(t) => return t,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                assert_eq!(e.class(), ErrorClass::Unavailable, "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("still failing: {e}"),
        }
    }
}

#[test]
fn with_a_server_down_writes_and_catch_up_fail_unavailable_and_recover_when_it_is_back() {
    let mut own = OwnServers::start().unwrap();
    let mut opts = SharedOptions::new(
        &own.servers.postgres_url,
        &own.servers.nats_url,
        &own.servers.redis_url,
        "outage",
        StoreOptions::with_dim(DIM),
    );
    opts.timeout = Duration::from_secs(2);
    let s = SharedStore::open(opts.clone()).unwrap();
    for id in ["creator", "person", "viewer"] {
        s.upsert_user(&User {
            id: uid(id),
            age_band: AgeBand::Adult,
            time_zone: "UTC".into(),
        })
        .unwrap();
    }
    s.set_consent(&uid("person"), ConsentScope::Everyone, &[])
        .unwrap();
    let raw: Vec<f32> = (0..DIM).map(|i| i as f32 + 1.0).collect();
    s.upsert_videos(&[Video {
        embedding: Some(Embedding::new("embedding", &raw, DIM).unwrap()),
        cameos: vec![uid("person")],
        ..Video::new(vid("v"), uid("creator"), Timestamp::now(), 10.0)
    }])
    .unwrap();
    s.ingest_events(&[view("before")]).unwrap();

    // PostgreSQL down: no write, no catch-up, so no feed.
    own.kill_postgres();
    let revoke = || s.revoke_consent(&uid("person"), &Revocation::Video(vid("v")));
    assert_eq!(revoke().unwrap_err().class(), ErrorClass::Unavailable);
    assert_eq!(s.catch_up().unwrap_err().class(), ErrorClass::Unavailable);
    own.start_postgres().unwrap();
    eventually(|| s.catch_up());
    revoke().unwrap();
    let facts = s
        .cameo_consent(&uid("person"), &uid("creator"), &vid("v"))
        .unwrap()
        .unwrap();
    assert!(facts.revoked);

    // NATS down: no event is taken. A catch-up with a batch acknowledged meanwhile to
    // read from the stream fails (the batch stood for by moving the recorded head one
    // past this process's mirror); one whose mirror holds every acknowledged write needs
    // no NATS.
    own.kill_nats();
    assert_eq!(
        s.ingest_events(&[view("during")]).unwrap_err().class(),
        ErrorClass::Unavailable
    );
    s.catch_up().unwrap();
    let head = |by: i64| {
        let changed = own
            .servers
            .sql(&format!(
                "UPDATE sf_outage.stream_head SET seq = seq + ({by}) WHERE id = 1"
            ))
            .unwrap();
        assert_eq!(changed, 1);
    };
    head(1);
    assert_eq!(s.catch_up().unwrap_err().class(), ErrorClass::Unavailable);
    head(-1);
    s.catch_up().unwrap();
    own.start_nats().unwrap();
    eventually(|| s.catch_up());
    // The acknowledged event survived the restart; the refused one may be sent again
    // and counts once.
    let (report, _) = eventually(|| s.ingest_events(&[view("during")]));
    assert_eq!(report.accepted + report.duplicates.len(), 1);
    s.catch_up().unwrap();
    assert_eq!(s.event_count(), 2);
    // A process starting now reads both events back from the restarted server's disk.
    let fresh = SharedStore::open(opts).unwrap();
    assert_eq!(fresh.event_count(), 2);

    // Redis down: no teen's page is reserved (so none is served) and the replica is not
    // ready; back, the same process reserves again.
    let day = jiff::civil::date(2026, 12, 6);
    let ask = ItemAsk {
        day,
        floor: 0,
        want: 10,
        cap: 25,
    };
    let reserve = || s.reserve_items(&uid("viewer"), ask);
    assert_eq!(reserve().unwrap().granted, 10);
    own.kill_redis();
    assert_eq!(reserve().unwrap_err().class(), ErrorClass::Unavailable);
    assert_eq!(s.health().unwrap_err().class(), ErrorClass::Unavailable);
    own.start_redis().unwrap();
    eventually(|| s.health());
    // The throwaway server kept nothing on disk: the day starts over from the floor.
    let g = eventually(reserve);
    assert_eq!((g.before, g.granted), (0, 10));
}

fn adult(id: &str) -> User {
    User {
        id: uid(id),
        age_band: AgeBand::Adult,
        time_zone: "UTC".into(),
    }
}

#[test]
fn a_write_postgresql_loses_before_its_commit_leaves_the_process_refusing_until_restarted() {
    let own = std::sync::Arc::new(std::sync::Mutex::new(OwnServers::start().unwrap()));
    let servers = own.lock().unwrap().servers.clone();
    let mut opts = SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &servers.redis_url,
        "commit",
        StoreOptions::with_dim(DIM),
    );
    opts.timeout = Duration::from_secs(2);
    let s = SharedStore::open(opts.clone()).unwrap();
    s.upsert_user(&adult("kept")).unwrap();
    assert!(!s.must_restart());

    // The server dies once the mirror took the write and before the log has it.
    let killer = std::sync::Arc::clone(&own);
    s.before_next_commit(Box::new(move || killer.lock().unwrap().kill_postgres()));
    let lost = s.upsert_user(&adult("lost")).unwrap_err();
    assert_eq!(lost.class(), ErrorClass::Unavailable, "{lost}");
    // The mirror holds what the log does not: the two disagree.
    assert!(s.user(&uid("lost")).unwrap().is_some());
    assert!(s.must_restart());

    // The server back, the process still serves nothing and writes nothing.
    own.lock().unwrap().start_postgres().unwrap();
    let fresh = eventually(|| SharedStore::open(opts.clone()));
    for refused in [
        s.catch_up().unwrap_err(),
        s.health().unwrap_err(),
        s.upsert_user(&adult("later")).unwrap_err(),
    ] {
        assert_eq!(refused.class(), ErrorClass::Unavailable, "{refused}");
        assert!(refused.to_string().contains("restart"), "{refused}");
    }
    // A process started now holds what was committed, and writes.
    assert!(fresh.user(&uid("kept")).unwrap().is_some());
    assert!(fresh.user(&uid("lost")).unwrap().is_none());
    fresh.upsert_user(&adult("later")).unwrap();
    assert!(!fresh.must_restart());
}

/// A feed's pool take goes to Redis while its catch-up reads PostgreSQL and NATS: a
/// Redis that is down or hangs costs the pool (the inner error), never the catch-up,
/// even when the store's own timeout is shorter than a pool call's.
#[test]
fn a_redis_down_or_hanging_costs_a_feed_its_pool_and_not_its_catch_up() {
    let mut own = OwnServers::start().unwrap();
    let mut opts = SharedOptions::new(
        &own.servers.postgres_url,
        &own.servers.nats_url,
        &own.servers.redis_url,
        "hang",
        StoreOptions::with_dim(DIM),
    );
    // Shorter than the Redis client's own wait for an answer, so the store's bounds
    // decide what a hanging server costs.
    opts.timeout = Duration::from_millis(450);
    let writer = SharedStore::open(opts.clone()).unwrap();
    let reader = SharedStore::open(opts).unwrap();
    let pools = reader.shared_pools().unwrap();
    assert_eq!(
        pools.take_pool(&uid("p0")).unwrap().unwrap(),
        (Some(0), None)
    );

    for (round, hang) in [false, true].into_iter().enumerate() {
        let id = format!("p{}", round + 1);
        writer.upsert_user(&adult(&id)).unwrap();
        if hang {
            own.pause_redis(true).unwrap();
        } else {
            own.kill_redis();
        }
        let taken = pools.take_pool(&uid(&id)).expect("the catch-up answers");
        assert_eq!(
            taken.unwrap_err().class(),
            ErrorClass::Unavailable,
            "hang: {hang}"
        );
        assert!(
            reader.user(&uid(&id)).unwrap().is_some(),
            "caught up without Redis (hang: {hang})"
        );
        if hang {
            own.pause_redis(false).unwrap();
        } else {
            own.start_redis().unwrap();
        }
        eventually(|| pools.take_pool(&uid(&id)).and_then(|t| t));
    }
}

#[test]
fn a_catch_up_waits_for_acknowledged_batches_and_not_for_others_pages() {
    let mut own = OwnServers::start().unwrap();
    let (a, b) = two_with_a_video(&own.servers, "pages");
    let page = [vid("v9")];
    b.record_page(
        &uid("viewer"),
        &steerfeed_core::storage::ServedPage {
            videos: &page,
            ..Default::default()
        },
        Timestamp::from_second(1_795_000_000).unwrap(),
    )
    .unwrap();
    b.flush().unwrap();
    // The head every catch-up reads (`stream_head`) leaves the page out.
    let servers = own.servers.clone();
    let head_is = |cmp: &str, seq: u64| {
        let statement =
            format!("UPDATE sf_pages.stream_head SET seq = seq WHERE id = 1 AND seq {cmp} {seq}");
        servers.sql(&statement).unwrap() == 1
    };
    let page_seq = b.applied().1;
    assert!(
        head_is("<", page_seq),
        "the page at {page_seq} is not waited for"
    );

    // The page is in the stream, and NATS hangs: `a` has every acknowledged write, so
    // its catch-up (every feed's start) does not wait on NATS.
    own.pause_nats(true).unwrap();
    let caught_up = a.catch_up();
    own.pause_nats(false).unwrap();
    caught_up.unwrap();

    // The page still reaches `a`, with no batch after it: each catch-up applies what its
    // consumer already holds.
    common::catch_up_until_seen(&a, &uid("viewer"), &page);

    // A batch acknowledged through `b` is in the head before `b` answers, so in `a` at
    // its very next catch-up (its consumer dropped first: the head, not a delivery that
    // happened to come first, brings the batch in).
    a.drop_stream_consumer();
    b.ingest_events(&[view("after")]).unwrap();
    let batch_seq = b.applied().1;
    assert!(batch_seq > page_seq);
    assert!(
        head_is(">=", batch_seq),
        "the batch at {batch_seq} is waited for"
    );
    a.catch_up().unwrap();
    assert_eq!(a.event_count(), 1);
}

#[test]
fn a_process_does_not_start_on_a_stream_that_lost_acknowledged_batches() {
    let own = OwnServers::start().unwrap();
    let opts = SharedOptions::new(
        &own.servers.postgres_url,
        &own.servers.nats_url,
        &own.servers.redis_url,
        "lost",
        StoreOptions::with_dim(DIM),
    );
    let first = SharedStore::open(opts.clone()).unwrap();
    first.upsert_user(&adult("viewer")).unwrap();
    drop(first);
    // The head names a batch past the stream's end, as after a stream restored from an
    // older copy.
    let set_head = |seq: u64| {
        let changed = own
            .servers
            .sql(&format!(
                "UPDATE sf_lost.stream_head SET seq = {seq} WHERE id = 1"
            ))
            .unwrap();
        assert_eq!(changed, 1);
    };
    set_head(5);
    let refused = SharedStore::open(opts.clone()).map(drop).unwrap_err();
    assert_eq!(refused.class(), ErrorClass::Unavailable);
    assert!(
        refused.to_string().contains("lost acknowledged messages"),
        "{refused}"
    );
    // Told to serve without them, it starts.
    set_head(0);
    let started = SharedStore::open(opts).unwrap();
    assert!(started.user(&uid("viewer")).unwrap().is_some());
}

/// Two processes on `ns` of the shared test servers, with a viewer, a creator and their
/// video, `b` caught up.
fn two_on(ns: &str) -> (SharedStore, SharedStore, &'static Servers) {
    let servers = Servers::shared().unwrap();
    let (a, b) = two_with_a_video(servers, ns);
    (a, b, servers)
}

/// Two processes on `ns` of `servers` (calls time out after 2 s), with a viewer, a
/// creator and their video, `b` caught up.
fn two_with_a_video(servers: &Servers, ns: &str) -> (SharedStore, SharedStore) {
    let mut opts = SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &servers.redis_url,
        ns,
        StoreOptions::with_dim(DIM),
    );
    opts.timeout = Duration::from_secs(2);
    let a = SharedStore::open(opts.clone()).unwrap();
    let b = SharedStore::open(opts).unwrap();
    for id in ["viewer", "creator"] {
        a.upsert_user(&adult(id)).unwrap();
    }
    let raw: Vec<f32> = (0..DIM).map(|i| i as f32 + 1.0).collect();
    a.upsert_videos(&[Video {
        embedding: Some(Embedding::new("embedding", &raw, DIM).unwrap()),
        ..Video::new(vid("v"), uid("creator"), Timestamp::now(), 10.0)
    }])
    .unwrap();
    b.catch_up().unwrap();
    (a, b)
}

/// Runs `f` with the event stream of namespace `ns`.
fn with_event_stream<T>(
    servers: &Servers,
    ns: &str,
    f: impl AsyncFnOnce(async_nats::jetstream::Context, async_nats::jetstream::stream::Stream) -> T,
) -> T {
    let name = format!("STEERFEED_{}", ns.to_ascii_uppercase());
    common::with_stream(servers, &name, f)
}

fn record(s: &SharedStore, videos: &[VideoId]) {
    s.record_page(
        &uid("viewer"),
        &steerfeed_core::storage::ServedPage {
            videos,
            ..Default::default()
        },
        Timestamp::from_second(1_795_000_000).unwrap(),
    )
    .unwrap();
    s.flush().unwrap();
}

/// Catches `s` up until a catch-up fails (within 60 s, else `never`), then checks the
/// process stopped: cut off, and 503 to every call.
fn catch_up_until_stopped(s: &SharedStore, never: &str) {
    let start = std::time::Instant::now();
    let stopped = loop {
        match s.catch_up() {
            Ok(()) => {
                assert!(start.elapsed() < Duration::from_secs(60), "{never}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => break e,
        }
    };
    assert_eq!(stopped.class(), ErrorClass::Unavailable, "{stopped}");
    assert!(s.cut_off());
    assert_stopped(s);
}

/// The process answers 503 to every call from now on and says to restart it.
fn assert_stopped(s: &SharedStore) {
    for (call, result) in [
        ("catch-up", s.catch_up()),
        ("ingest", s.ingest_events(&[view("later")]).map(drop)),
        ("write", s.upsert_user(&adult("later"))),
    ] {
        let e = result.expect_err(call);
        assert_eq!(e.class(), ErrorClass::Unavailable, "{call}: {e}");
        assert!(e.to_string().contains("restart"), "{call}: {e}");
    }
}

#[test]
fn messages_deleted_from_the_stream_under_a_running_process_stop_it() {
    let ns = Servers::namespace("gap");
    let (a, b, servers) = two_on(&ns);
    a.ingest_events(&[view("first")]).unwrap();
    // Two pages `a` has not read yet (no consumer), then both gone from the stream.
    a.drop_stream_consumer();
    record(&b, &[vid("p1")]);
    record(&b, &[vid("p2")]);
    let gone = b.applied().1;
    with_event_stream(servers, &ns, async |_, stream| {
        for seq in [gone - 1, gone] {
            assert!(stream.delete_message(seq).await.unwrap(), "message {seq}");
        }
    });
    record(&b, &[vid("p3")]);
    // `a` holds every acknowledged write, so its catch-ups succeed until its consumer,
    // made anew, delivers the page after the gap: then it stops, rather than serve
    // without the two pages.
    catch_up_until_stopped(&a, "a never met the gap");
    let seen: Vec<VideoId> = a
        .seen(&uid("viewer"))
        .unwrap()
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(seen, [vid("v")], "no page past the gap applied");
}

#[test]
fn a_stream_made_anew_under_a_running_process_stops_it() {
    let ns = Servers::namespace("renumbered");
    let (a, b, servers) = two_on(&ns);
    a.ingest_events(&[view("first")]).unwrap();
    a.ingest_events(&[view("second")]).unwrap();
    assert_eq!(a.event_count(), 2);
    // The stream deleted and made again with its settings: it numbers from 1 again.
    with_event_stream(servers, &ns, async |js, mut stream| {
        let config = stream.info().await.unwrap().config.clone();
        js.delete_stream(&config.name).await.unwrap();
        js.create_stream(config).await.unwrap();
    });
    // The new batch is acknowledged as message 1, which `a` applied as another batch.
    let e = a.ingest_events(&[view("third")]).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Unavailable, "{e}");
    assert!(e.to_string().contains("lost acknowledged messages"), "{e}");
    assert_stopped(&a);
    assert_eq!(
        Storage::event_count(a.mirror()),
        2,
        "the third batch is not counted"
    );
    // `b`, which ingests nothing, finds out at a catch-up within seconds.
    catch_up_until_stopped(&b, "b never noticed the stream made anew");
    // Nor does a process start on it: the head names the second batch.
    drop(b);
    let mut opts = SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &servers.redis_url,
        &ns,
        StoreOptions::with_dim(DIM),
    );
    opts.timeout = Duration::from_secs(2);
    let refused = SharedStore::open(opts).map(drop).unwrap_err();
    assert!(
        refused.to_string().contains("lost acknowledged messages"),
        "{refused}"
    );
}

//! Page pools in Redis, through two stores of one deployment (two replicas): a pool kept
//! by one is taken by the other, once; a pool ranked before a forget is never kept, and
//! stamps never repeat; an erasure removes the pool and moves the stamp; racing takes
//! hand a pool to exactly one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::KeepAnswered;
use steerfeed_core::UserId;
use steerfeed_core::storage::{SharedPools, Storage};
use steerfeed_shared::servers::Servers;
use steerfeed_shared::{SharedOptions, SharedStore};
use steerfeed_store::StoreOptions;

fn store(servers: &Servers, ns: &str) -> SharedStore {
    SharedStore::open(SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &servers.redis_url,
        ns,
        StoreOptions::with_dim(8),
    ))
    .unwrap()
}

fn pools(s: &SharedStore) -> &dyn SharedPools {
    s.shared_pools().expect("the shared backend keeps pools")
}

#[test]
fn a_pool_kept_on_one_replica_is_taken_once_on_another() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("pl");
    let (a, b) = (store(servers, &ns), store(servers, &ns));
    let (pa, pb) = (pools(&a), pools(&b));
    let u = UserId::new("u").unwrap();
    let other = UserId::new("w").unwrap();

    assert_eq!(
        pa.take_pool(&u).unwrap().unwrap(),
        (Some(0), None),
        "nobody has a pool yet"
    );
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    assert!(pa.keep_answered(&u, 0, &bytes, 60).unwrap());
    assert_eq!(pb.peek_pool(&u).unwrap().as_deref(), Some(&bytes[..]));
    assert_eq!(pb.peek_pool(&other).unwrap(), None, "pools are per person");
    assert_eq!(
        pb.take_pool(&u).unwrap().unwrap(),
        (Some(0), Some(bytes.clone()))
    );
    assert_eq!(
        pa.take_pool(&u).unwrap().unwrap(),
        (Some(0), None),
        "taken already"
    );

    // A forget on either replica moves the stamp: a ranking that read an older one keeps
    // nothing, one that read the new one keeps its pool. Stamps never repeat.
    let mut seen = vec![0];
    assert!(pa.keep_answered(&u, 0, b"second", 60).unwrap());
    pb.forget_pool(&u).unwrap();
    assert_eq!(pa.peek_pool(&u).unwrap(), None, "a forget drops the pool");
    assert!(!pa.keep_answered(&u, 0, b"stale", 60).unwrap());
    let (s1, none) = pb.take_pool(&u).unwrap().unwrap();
    let s1 = s1.expect("a forget this store's catch-up holds");
    assert!(none.is_none() && s1 > 0);
    seen.push(s1);
    assert!(pb.keep_answered(&u, s1, b"fresh", 60).unwrap());
    for _ in 0..5 {
        pa.forget_pool(&u).unwrap();
        let s = pa.take_pool(&u).unwrap().unwrap().0.unwrap();
        assert!(s > *seen.last().unwrap(), "{s} after {seen:?}");
        seen.push(s);
    }
    for old in &seen[..seen.len() - 1] {
        assert!(
            !pb.keep_answered(&u, *old, b"stale again", 60).unwrap(),
            "{old}"
        );
    }
    let last = *seen.last().unwrap();
    // The other person's stamp never moved.
    assert_eq!(pa.take_pool(&other).unwrap().unwrap(), (Some(0), None));

    // The pool lives its time to live; a stamp lives the guard after its last move.
    assert!(pa.keep_answered(&u, last, b"short", 1).unwrap());
    let client = redis::Client::open(servers.redis_url.as_str()).unwrap();
    let mut c = client.get_connection().unwrap();
    let mut keys = |suffix: &str| -> Vec<String> {
        redis::cmd("KEYS")
            .arg(format!("sf:{ns}:*:{suffix}"))
            .query(&mut c)
            .unwrap()
    };
    let (pool_keys, stamp_keys) = (keys("pool"), keys("pool_stamp"));
    assert_eq!(
        keys("pool_in:*"),
        Vec::<String>::new(),
        "a keep, kept or refused, leaves no staged pool"
    );
    assert_eq!(
        (pool_keys.len(), stamp_keys.len()),
        (1, 1),
        "only u's: {pool_keys:?} {stamp_keys:?}"
    );
    let mut ttl = |k: &str| -> i64 { redis::cmd("TTL").arg(k).query(&mut c).unwrap() };
    assert!(
        (0..=1).contains(&ttl(&pool_keys[0])),
        "the pool's own time to live"
    );
    let guard = ttl(&stamp_keys[0]);
    assert!((100..=120).contains(&guard), "stamp ttl {guard}");
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    assert_eq!(
        pa.take_pool(&u).unwrap().unwrap(),
        (Some(last), None),
        "the pool expired, its stamp did not"
    );

    // An erasure removes the person's pool and moves their stamp on.
    b.upsert_user(&steerfeed_core::User::new(u.clone()))
        .unwrap();
    assert!(pa.keep_answered(&u, last, b"before erasure", 60).unwrap());
    b.erase_user(&u, steerfeed_core::OwnVideos::Delete).unwrap();
    assert_eq!(pa.peek_pool(&u).unwrap(), None);
    assert!(
        !pa.keep_answered(&u, last, b"ranked before the erasure", 60)
            .unwrap()
    );
    let (after, none) = pb.take_pool(&u).unwrap().unwrap();
    assert!(after.unwrap() > last && none.is_none());
}

#[test]
fn a_keep_after_the_server_lost_its_scripts_keeps_ahead_of_the_next_take() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("pf");
    let a = store(servers, &ns);
    let u = UserId::new("u").unwrap();
    let stamp = pools(&a).take_pool(&u).unwrap().unwrap().0.unwrap();
    assert!(pools(&a).keep_answered(&u, stamp, b"first", 60).unwrap());
    // As after a restart of Redis without persistence: the pool goes too, scripts go.
    let client = redis::Client::open(servers.redis_url.as_str()).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    // The next take, sent before the keep is answered, still finds the pool.
    let (tx, rx) = std::sync::mpsc::channel();
    let done = Box::new(move |outcome| tx.send(outcome).unwrap());
    pools(&a).keep_pool(&u, stamp, b"second", 60, done).unwrap();
    assert_eq!(
        pools(&a).take_pool(&u).unwrap().unwrap(),
        (Some(stamp), Some(b"second".to_vec()))
    );
    assert!(rx.recv().unwrap().unwrap());
    pools(&a).forget_pool(&u).unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    assert!(
        !pools(&a).keep_answered(&u, stamp, b"stale", 60).unwrap(),
        "after the flush, the keep still checks the stamp"
    );
    let staged: Vec<String> = redis::cmd("KEYS")
        .arg(format!("sf:{ns}:*:pool_in:*"))
        .query(&mut c)
        .unwrap();
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn racing_takes_on_two_replicas_hand_a_pool_to_exactly_one() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("pr");
    let stores = [Arc::new(store(servers, &ns)), Arc::new(store(servers, &ns))];
    let u = UserId::new("racer").unwrap();
    for round in 0..30u8 {
        let stamp = pools(&stores[0]).take_pool(&u).unwrap().unwrap().0.unwrap();
        assert!(
            pools(&stores[1])
                .keep_answered(&u, stamp, &[round; 300], 60)
                .unwrap()
        );
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = Arc::clone(&stores[i % 2]);
                let (u, barrier) = (u.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    pools(&s).take_pool(&u).unwrap().unwrap().1
                })
            })
            .collect();
        let got: Vec<Vec<u8>> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(got, vec![vec![round; 300]], "round {round}");
    }
}

/// Forgetting many people at once (one wait on Redis for them all) moves each one's
/// stamp and drops each one's pool, and nobody else's; a person named twice is fine.
#[test]
fn forgetting_many_at_once_moves_every_named_stamp_and_no_other() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("pm");
    let (a, b) = (store(servers, &ns), store(servers, &ns));
    let (pa, pb) = (pools(&a), pools(&b));
    let people: Vec<UserId> = (0..40)
        .map(|i| UserId::new(format!("p{i}")).unwrap())
        .collect();
    for p in &people {
        assert!(pa.keep_answered(p, 0, p.as_str().as_bytes(), 60).unwrap());
    }
    let mut named: Vec<UserId> = people.iter().step_by(3).cloned().collect();
    named.push(people[0].clone());
    pb.forget_pools(&named).unwrap();
    for (i, p) in people.iter().enumerate() {
        let (stamp, pool) = pa.take_pool(p).unwrap().unwrap();
        let stamp = stamp.expect("a stamp whose forget the catch-up holds");
        if i % 3 == 0 {
            assert!(stamp > 0 && pool.is_none(), "{p}: forgotten");
            assert!(!pa.keep_answered(p, 0, b"stale", 60).unwrap(), "{p}");
        } else {
            assert_eq!(
                (stamp, pool.as_deref()),
                (0, Some(p.as_str().as_bytes())),
                "{p}: untouched"
            );
        }
    }
    pb.forget_pools(&[]).unwrap();
}

/// A take reads the stamp while its store catches up. A stamp moved by a forget whose
/// writes the catch-up holds is one to keep under; a stamp whose forget is past the
/// heads the catch-up read (a write acknowledged while the take ran), or whose position
/// names another stamp (moved by a build that records none), keeps nothing; the pool
/// is taken all the same.
#[test]
fn a_stamp_moved_past_what_the_take_caught_up_to_keeps_no_pool() {
    use steerfeed_core::{Embedding, Event, EventKey, EventKind, Timestamp, User, Video, VideoId};
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("pp");
    let (a, b) = (store(servers, &ns), store(servers, &ns));
    let (pa, pb) = (pools(&a), pools(&b));
    let (u, maker) = (UserId::new("u").unwrap(), UserId::new("maker").unwrap());
    let t0 = Timestamp::from_second(1_700_000_000).unwrap();

    // A write through b (a change), then its forget: a's take holds the write.
    b.upsert_user(&User::new(u.clone())).unwrap();
    pb.forget_pool(&u).unwrap();
    assert_eq!(a.user(&u).unwrap(), None, "a has not caught up yet");
    let (stamp, none) = pa.take_pool(&u).unwrap().unwrap();
    let stamp = stamp.expect("the forget's write is within the take's catch-up");
    assert!(stamp > 0 && none.is_none());
    assert!(a.user(&u).unwrap().is_some(), "the take caught up");
    assert!(pa.keep_answered(&u, stamp, b"fresh", 60).unwrap());

    // An event through b (the event log), then its forget.
    b.upsert_user(&User::new(maker.clone())).unwrap();
    let raw: Vec<f32> = (0..8).map(|i| i as f32 + 0.5).collect();
    let v = Video {
        embedding: Some(Embedding::new("embedding", &raw, 8).unwrap()),
        ..Video::new(VideoId::new("v").unwrap(), maker.clone(), t0, 10.0)
    };
    b.upsert_videos(&[v]).unwrap();
    let hide = Event {
        key: EventKey::new("hide-1").unwrap(),
        user: u.clone(),
        at: t0,
        kind: EventKind::HideCreator {
            video: VideoId::new("v").unwrap(),
        },
    };
    b.ingest_events(std::slice::from_ref(&hide)).unwrap();
    pb.forget_pool(&u).unwrap();
    let events_before = a.event_count();
    let (stamp, gone) = pa.take_pool(&u).unwrap().unwrap();
    let stamp = stamp.expect("the forget's event is within the take's catch-up");
    assert_eq!(gone, None, "the forget dropped the pool");
    assert_eq!(
        a.event_count(),
        events_before + 1,
        "the take applied the event"
    );
    assert!(pa.keep_answered(&u, stamp, b"fresh again", 60).unwrap());

    // Positions past either log's head, as a forget acknowledged after the take read
    // the heads would record; and a position naming another stamp.
    let client = redis::Client::open(servers.redis_url.as_str()).unwrap();
    let mut c = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("sf:{ns}:*:pool_at"))
        .query(&mut c)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let at: String = redis::cmd("GET").arg(&keys[0]).query(&mut c).unwrap();
    let parts: Vec<u64> = at.split(':').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{at}");
    assert_eq!(parts[0], stamp, "{at}");
    assert_eq!(
        (parts[1], parts[2]),
        b.applied(),
        "the forget's position is where b's writes left its mirror"
    );
    assert_eq!(a.applied(), b.applied(), "a's take caught up to it");
    assert!(parts[1] > 0 && parts[2] > 0, "{at}");
    let far = 1_000_000_000;
    for moved in [
        format!("{stamp}:{}:{}", parts[1] + far, parts[2]),
        format!("{stamp}:{}:{}", parts[1], parts[2] + far),
        format!("{}:{}:{}", stamp - 1, parts[1], parts[2]),
    ] {
        let _: () = redis::cmd("SET")
            .arg(&keys[0])
            .arg(&moved)
            .query(&mut c)
            .unwrap();
        assert!(pa.keep_answered(&u, stamp, b"kept", 60).unwrap(), "{moved}");
        assert_eq!(
            pa.take_pool(&u).unwrap().unwrap(),
            (None, Some(b"kept".to_vec())),
            "{moved}"
        );
    }
    // Its own position again: the stamp is one to keep under.
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(&at)
        .query(&mut c)
        .unwrap();
    assert_eq!(pa.take_pool(&u).unwrap().unwrap(), (Some(stamp), None));
}

/// Forgets reach Redis in any order: one that reaches it after a later write's forget
/// leaves the later position. A stamp moved by a build that records no position keeps
/// an unknown one through later forgets, so no ranking keeps a pool under it.
#[test]
fn a_late_forget_keeps_the_later_position_and_an_unknown_one_stays_unknown() {
    use steerfeed_core::{Embedding, Event, EventKey, EventKind, Timestamp, User, Video, VideoId};
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("po");
    let (a, b) = (store(servers, &ns), store(servers, &ns));
    let (pa, pb) = (pools(&a), pools(&b));
    let client = redis::Client::open(servers.redis_url.as_str()).unwrap();
    let mut c = client.get_connection().unwrap();
    // The one key of the namespace ending in `suffix`.
    let key = |c: &mut redis::Connection, suffix: &str| -> String {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("sf:{ns}:*:{suffix}"))
            .query(c)
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        keys[0].clone()
    };
    let mut get = |suffix: &str| -> String {
        let k = key(&mut c, suffix);
        redis::cmd("GET").arg(k).query(&mut c).unwrap()
    };
    let position = |at: &str| -> (u64, u64) {
        let parts: Vec<u64> = at.split(':').skip(1).map(|p| p.parse().unwrap()).collect();
        (parts[0], parts[1])
    };

    let u = UserId::new("u").unwrap();
    b.upsert_user(&User::new(u.clone())).unwrap();
    let early = b.applied();
    // Later writes through a, to both logs, forgotten; b has not caught up to them, and
    // its forget (of its own earlier write) arrives last.
    let w = UserId::new("w").unwrap();
    a.upsert_user(&User::new(w.clone())).unwrap();
    let t0 = Timestamp::from_second(1_700_000_000).unwrap();
    let raw: Vec<f32> = (0..8).map(|i| i as f32 + 0.5).collect();
    a.upsert_videos(&[Video {
        embedding: Some(Embedding::new("embedding", &raw, 8).unwrap()),
        ..Video::new(VideoId::new("v").unwrap(), w.clone(), t0, 10.0)
    }])
    .unwrap();
    a.ingest_events(&[Event {
        key: EventKey::new("like-1").unwrap(),
        user: w,
        at: t0,
        kind: EventKind::Like {
            video: VideoId::new("v").unwrap(),
        },
    }])
    .unwrap();
    let late = a.applied();
    assert!(
        late.0 > early.0 && late.1 > early.1,
        "{late:?} after {early:?}"
    );
    pa.forget_pool(&u).unwrap();
    assert_eq!(b.applied(), early, "b did not catch up");
    pb.forget_pool(&u).unwrap();
    let at = get("pool_at");
    assert_eq!(position(&at), late, "{at}");
    let stamp: u64 = get("pool_stamp").parse().unwrap();
    assert!(at.starts_with(&format!("{stamp}:")), "{at} for {stamp}");
    assert_eq!(pb.take_pool(&u).unwrap().unwrap(), (Some(stamp), None));

    // An older build's forget moves the stamp alone.
    let mut c = client.get_connection().unwrap();
    let stamp_key = key(&mut c, "pool_stamp");
    let _: () = redis::cmd("SET")
        .arg(&stamp_key)
        .arg(stamp + 1)
        .arg("EX")
        .arg(120)
        .query(&mut c)
        .unwrap();
    assert_eq!(pa.take_pool(&u).unwrap().unwrap(), (None, None));
    for _ in 0..3 {
        pb.forget_pool(&u).unwrap();
        let at = get("pool_at");
        assert!(at.ends_with(":unknown"), "{at}");
        let (stamp, _) = pa.take_pool(&u).unwrap().unwrap();
        assert_eq!(stamp, None, "{at}");
    }
}

#[test]
fn a_take_right_after_a_keep_on_the_same_replica_finds_the_pool_not_yet_answered() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("plo");
    let a = store(servers, &ns);
    let pa = pools(&a);
    let (tx, rx) = std::sync::mpsc::channel();
    for round in 0..50u32 {
        let u = UserId::new(format!("u{round}")).unwrap();
        // Large enough that Redis answers it well after the call returns.
        let bytes: Vec<u8> = (0..=255u8)
            .cycle()
            .skip(round as usize)
            .take(80_000)
            .collect();
        let tx = tx.clone();
        let done = Box::new(move |outcome| tx.send((round, outcome)).unwrap());
        pa.keep_pool(&u, 0, &bytes, 60, done).unwrap();
        assert_eq!(
            pa.take_pool(&u).unwrap().unwrap(),
            (Some(0), Some(bytes)),
            "round {round}: the take follows the keep"
        );
    }
    drop(tx);
    let mut answered: Vec<(u32, bool)> = rx
        .iter()
        .map(|(round, outcome)| (round, outcome.unwrap()))
        .collect();
    answered.sort_unstable();
    let expected: Vec<(u32, bool)> = (0..50).map(|r| (r, true)).collect();
    assert_eq!(answered, expected, "each keep told once, kept");
}

//! Page pools in Redis, through two stores of one deployment (two replicas): a pool kept
//! by one is taken by the other, once; a pool ranked before a forget is never kept, and
//! stamps never repeat; an erasure removes the pool and moves the stamp; racing takes
//! hand a pool to exactly one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

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
        pa.take_pool(&u).unwrap(),
        (0, None),
        "nobody has a pool yet"
    );
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    assert!(pa.keep_pool(&u, 0, &bytes, 60).unwrap());
    assert_eq!(pb.peek_pool(&u).unwrap().as_deref(), Some(&bytes[..]));
    assert_eq!(pb.peek_pool(&other).unwrap(), None, "pools are per person");
    assert_eq!(pb.take_pool(&u).unwrap(), (0, Some(bytes.clone())));
    assert_eq!(pa.take_pool(&u).unwrap(), (0, None), "taken already");

    // A forget on either replica moves the stamp: a ranking that read an older one keeps
    // nothing, one that read the new one keeps its pool. Stamps never repeat.
    let mut seen = vec![0];
    assert!(pa.keep_pool(&u, 0, b"second", 60).unwrap());
    pb.forget_pool(&u).unwrap();
    assert_eq!(pa.peek_pool(&u).unwrap(), None, "a forget drops the pool");
    assert!(!pa.keep_pool(&u, 0, b"stale", 60).unwrap());
    let (s1, none) = pb.take_pool(&u).unwrap();
    assert!(none.is_none() && s1 > 0);
    seen.push(s1);
    assert!(pb.keep_pool(&u, s1, b"fresh", 60).unwrap());
    for _ in 0..5 {
        pa.forget_pool(&u).unwrap();
        let (s, _) = pa.take_pool(&u).unwrap();
        assert!(s > *seen.last().unwrap(), "{s} after {seen:?}");
        seen.push(s);
    }
    for old in &seen[..seen.len() - 1] {
        assert!(
            !pb.keep_pool(&u, *old, b"stale again", 60).unwrap(),
            "{old}"
        );
    }
    let last = *seen.last().unwrap();
    // The other person's stamp never moved.
    assert_eq!(pa.take_pool(&other).unwrap(), (0, None));

    // The pool lives its time to live; a stamp lives the guard after its last move.
    assert!(pa.keep_pool(&u, last, b"short", 1).unwrap());
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
        pa.take_pool(&u).unwrap(),
        (last, None),
        "the pool expired, its stamp did not"
    );

    // An erasure removes the person's pool and moves their stamp on.
    b.upsert_user(&steerfeed_core::User::new(u.clone()))
        .unwrap();
    assert!(pa.keep_pool(&u, last, b"before erasure", 60).unwrap());
    b.erase_user(&u, steerfeed_core::OwnVideos::Delete).unwrap();
    assert_eq!(pa.peek_pool(&u).unwrap(), None);
    assert!(
        !pa.keep_pool(&u, last, b"ranked before the erasure", 60)
            .unwrap()
    );
    let (after, none) = pb.take_pool(&u).unwrap();
    assert!(after > last && none.is_none());
}

#[test]
fn a_keep_after_the_server_lost_its_scripts_loads_them_and_keeps() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("pf");
    let a = store(servers, &ns);
    let u = UserId::new("u").unwrap();
    let (stamp, _) = pools(&a).take_pool(&u).unwrap();
    assert!(pools(&a).keep_pool(&u, stamp, b"first", 60).unwrap());
    // As after a restart of Redis without persistence: the pool goes too, scripts go.
    let client = redis::Client::open(servers.redis_url.as_str()).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    assert!(pools(&a).keep_pool(&u, stamp, b"second", 60).unwrap());
    assert_eq!(
        pools(&a).take_pool(&u).unwrap(),
        (stamp, Some(b"second".to_vec()))
    );
    pools(&a).forget_pool(&u).unwrap();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    assert!(
        !pools(&a).keep_pool(&u, stamp, b"stale", 60).unwrap(),
        "a reloaded script still checks the stamp"
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
        let (stamp, _) = pools(&stores[0]).take_pool(&u).unwrap();
        assert!(
            pools(&stores[1])
                .keep_pool(&u, stamp, &[round; 300], 60)
                .unwrap()
        );
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = Arc::clone(&stores[i % 2]);
                let (u, barrier) = (u.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    pools(&s).take_pool(&u).unwrap().1
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
        assert!(pa.keep_pool(p, 0, p.as_str().as_bytes(), 60).unwrap());
    }
    let mut named: Vec<UserId> = people.iter().step_by(3).cloned().collect();
    named.push(people[0].clone());
    pb.forget_pools(&named).unwrap();
    for (i, p) in people.iter().enumerate() {
        let (stamp, pool) = pa.take_pool(p).unwrap();
        if i % 3 == 0 {
            assert!(stamp > 0 && pool.is_none(), "{p}: forgotten");
            assert!(!pa.keep_pool(p, 0, b"stale", 60).unwrap(), "{p}");
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

//! The shared backend's counters and page pools on a Redis Cluster of three masters
//! started by the test:
//! every person's keys carry one hash tag (a script changing two of them would fail with
//! `CROSSSLOT` otherwise, as the control below shows), people spread over the masters,
//! reservations racing from three replicas never grant more than the cap, and erasure
//! removes the person's keys.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::KeepAnswered;
use steerfeed_core::storage::{ItemAsk, Storage};
use steerfeed_core::{AgeBand, OwnVideos, User, UserId};
use steerfeed_shared::servers::{RedisCluster, Servers};
use steerfeed_shared::{SharedOptions, SharedStore};
use steerfeed_store::StoreOptions;

const PEOPLE: usize = 120;

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn open(ns: &str, cluster: &RedisCluster) -> Arc<SharedStore> {
    let servers = Servers::shared().expect("test servers");
    let mut opts = SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &cluster.url,
        ns,
        StoreOptions::with_dim(8),
    );
    opts.redis_cluster = true;
    Arc::new(SharedStore::open(opts).expect("shared store on a Redis Cluster"))
}

/// Every key of the namespace on each node: node port → keys.
fn keys_by_node(cluster: &RedisCluster, ns: &str) -> BTreeMap<u16, Vec<String>> {
    cluster
        .ports
        .iter()
        .map(|&port| {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            let mut c = client.get_connection().unwrap();
            let mut keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("sf:{ns}:*"))
                .query(&mut c)
                .unwrap();
            keys.sort();
            (port, keys)
        })
        .collect()
}

/// The hash tag of a key: what its first `{…}` holds, as Redis Cluster reads it.
fn tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let close = open + 1 + key[open + 1..].find('}')?;
    (close > open + 1).then(|| &key[open + 1..close])
}

#[test]
fn a_persons_keys_share_one_slot_and_racing_replicas_never_pass_the_cap() {
    let cluster = RedisCluster::start(3).expect("a Redis Cluster");
    let ns = Servers::namespace("rc");
    let replicas: Vec<_> = (0..3).map(|_| open(&ns, &cluster)).collect();
    let people: Vec<UserId> = (0..PEOPLE).map(|i| uid(&format!("p{i}"))).collect();
    for p in &people {
        replicas[0]
            .upsert_user(&User {
                id: p.clone(),
                age_band: AgeBand::Teen,
                time_zone: "UTC".into(),
            })
            .unwrap();
    }
    // Pages of 10 against 25 a day, through the replicas in turn: 10, 10, 5, then none;
    // the second page gives 4 back, which the next reservation gets.
    let day = jiff::civil::date(2026, 12, 6);
    let ask = ItemAsk {
        day,
        floor: 0,
        want: 10,
        cap: 25,
    };
    for (i, p) in people.iter().enumerate() {
        let r = |k: usize| &replicas[(i + k) % 3];
        let g: Vec<_> = (0..4)
            .map(|k| r(k).reserve_items(p, ask).unwrap())
            .collect();
        let got: Vec<(u32, u32)> = g.iter().map(|g| (g.before, g.granted)).collect();
        assert_eq!(got, [(0, 10), (10, 10), (20, 5), (25, 0)], "{p}");
        r(1).release_items(p, &g[1], 4).unwrap();
        r(2).release_items(p, &g[1], 4).unwrap();
        let again = r(0).reserve_items(p, ask).unwrap();
        assert_eq!((again.before, again.granted), (21, 4), "{p}");
        // A page pool kept through one replica, taken through the next and forgotten
        // through the third, as on one server.
        let pools = |k: usize| r(k).shared_pools().unwrap();
        assert_eq!(
            pools(0).take_pool(p).unwrap().unwrap(),
            (Some(0), None),
            "{p}"
        );
        assert!(
            pools(1)
                .keep_answered(p, 0, p.as_str().as_bytes(), 60)
                .unwrap()
        );
        let taken = pools(2).take_pool(p).unwrap().unwrap();
        assert_eq!(
            taken,
            (Some(0), Some(p.as_str().as_bytes().to_vec())),
            "{p}"
        );
        pools(0).forget_pool(p).unwrap();
        assert!(!pools(1).keep_answered(p, 0, b"stale", 60).unwrap(), "{p}");
    }

    // Every key has a hash tag; each person's keys share theirs; people spread over every
    // master.
    let by_node = keys_by_node(&cluster, &ns);
    let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for keys in by_node.values() {
        for k in keys {
            let t = tag(k).unwrap_or_else(|| panic!("{k} has no hash tag"));
            tags.entry(t.to_owned()).or_default().push(k.clone());
        }
    }
    assert_eq!(tags.len(), PEOPLE, "one tag per person");
    // Reserved items, open grants, the pool stamp and its position (the forget dropped
    // the pool).
    assert!(tags.values().all(|ks| ks.len() == 4), "{tags:?}");
    for (port, keys) in &by_node {
        assert!(
            keys.len() >= PEOPLE / 10,
            "master {port} holds {} keys",
            keys.len()
        );
    }

    // Three replicas racing one person's new day: the cap exactly, never more.
    let racing = day.tomorrow().unwrap();
    let granted: u32 = std::thread::scope(|scope| {
        let handles: Vec<_> = replicas
            .iter()
            .map(|r| {
                let r = Arc::clone(r);
                let p = people[0].clone();
                scope.spawn(move || {
                    (0..40)
                        .map(|_| {
                            let racing = ItemAsk {
                                day: racing,
                                floor: 0,
                                want: 3,
                                cap: 100,
                            };
                            let g = r.reserve_items(&p, racing).unwrap();
                            assert!(g.before + g.granted <= 100, "{g:?}");
                            g.granted
                        })
                        .sum::<u32>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(granted, 100);

    // Erasing a person removes their counters, and only theirs; of their keys only the
    // pool stamp and its position stay (numbers, moved on by the erasure).
    let all_keys = || -> BTreeSet<String> {
        keys_by_node(&cluster, &ns)
            .into_values()
            .flatten()
            .collect()
    };
    let before = all_keys();
    replicas[1].erase_user(&people[7], OwnVideos::Keep).unwrap();
    let after = all_keys();
    assert!(after.is_subset(&before));
    let removed: Vec<&String> = before.difference(&after).collect();
    assert_eq!(removed.len(), 2, "their items and grants: {removed:?}");
    let erased = tag(removed[0]).unwrap();
    assert!(
        removed.iter().all(|k| tag(k) == Some(erased)),
        "{removed:?}"
    );
    let left: Vec<&String> = after.iter().filter(|k| tag(k) == Some(erased)).collect();
    let mut left: Vec<&str> = left.iter().filter_map(|k| k.rsplit(':').next()).collect();
    left.sort_unstable();
    assert_eq!(
        left,
        ["pool_at", "pool_stamp"],
        "their stamp and its position"
    );
}

#[test]
fn the_cluster_refuses_a_script_over_keys_of_two_slots() {
    // The control: what a key without the person's tag would meet.
    let cluster = RedisCluster::start(3).expect("a Redis Cluster");
    let client = redis::cluster::ClusterClient::new(vec![cluster.url.as_str()]).unwrap();
    let mut c = client.get_connection().unwrap();
    let script = redis::Script::new("return redis.call('SET', KEYS[1], KEYS[2])");
    let apart = script
        .key("sf:control:{p1}:items")
        .key("sf:control:p1:grants")
        .invoke::<String>(&mut c);
    let err = apart.expect_err("keys of two slots in one script");
    assert!(
        err.to_string().to_lowercase().contains("crossslot"),
        "{err}"
    );
    let together: String = script
        .key("sf:control:{p1}:items")
        .key("sf:control:{p1}:grants")
        .invoke(&mut c)
        .unwrap();
    assert_eq!(together, "OK");
}

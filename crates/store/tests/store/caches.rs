//! Memory against the trees: the in-memory mirrors always answer like the trees they
//! mirror, warming fills the video cache up to its size and never shadows a write, a
//! cached video reads as deleted after its deletion, and rings read across memory
//! layers and sled keep their order and bounds.

use std::sync::Arc;

use steerfeed_core::ports::{ConsentLedger, EngagementStats, SocialGraph, VideoCatalog};
use steerfeed_core::{
    AgeBand, ConsentScope, EventKind, OwnVideos, Timestamp, TopicId, User, UserId, Video, VideoId,
};
use steerfeed_store::{Revocation, Store, StoreOptions};

use crate::support::{at, ev, like, opts, seeded, uid, vid, video};

/// Everything the feed reads from the in-memory mirrors (time indexes, relations,
/// approvals, revocations), as plain values.
fn mirrored_view(store: &Store, users: &[UserId], videos: &[VideoId]) -> Vec<String> {
    let epoch = Timestamp::from_second(0).unwrap();
    let ids = |vs: Vec<Arc<Video>>| vs.iter().map(|v| v.id.to_string()).collect::<Vec<_>>();
    let mut out = vec![format!(
        "newest {:?}",
        ids(store.newest(epoch, 1000).unwrap())
    )];
    for u in users {
        out.push(format!(
            "{u}: following {:?} blocked {:?} muted {:?} videos {:?} count {} featuring {:?}",
            store.following(u).unwrap(),
            store.blocked(u).unwrap(),
            store.muted(u).unwrap(),
            ids(store.recent_by_creator(u, epoch, 1000).unwrap()),
            store.creator_video_count(u, 1000).unwrap(),
            ids(store.featuring(u, 1000).unwrap()),
        ));
        for topic in ["pets", "cooking", "music"] {
            let t = TopicId::new(topic).unwrap();
            out.push(format!(
                "topic {topic}: {:?}",
                ids(store.recent_by_topic(&t, epoch, 1000).unwrap())
            ));
        }
        for c in users {
            for v in videos {
                out.push(format!(
                    "consent {u} {c} {v}: {:?}",
                    store.cameo_consent(u, c, v).unwrap()
                ));
            }
        }
    }
    out
}

#[test]
fn the_in_memory_mirrors_always_equal_the_trees() {
    // A seeded run of every write that changes a mirrored tree (erasures included). At checkpoints the live
    // store (its mirrors changed write by write) must answer exactly like the same store
    // reopened (its mirrors loaded from the trees).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let users: Vec<UserId> = ["a", "b", "c", "d"].iter().map(|u| uid(u)).collect();
    let videos: Vec<VideoId> = (0..8).map(|i| vid(&format!("v{i}"))).collect();
    let topics = ["pets", "cooking", "music"];
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut store = Store::open(&path, opts()).unwrap();
    for u in &users {
        store
            .upsert_user(&User {
                id: u.clone(),
                age_band: AgeBand::Adult,
                time_zone: "UTC".into(),
            })
            .unwrap();
    }
    let mut served_events = 0;
    let mut erasures = 0;
    for step in 0..240 {
        let (a, b) = (users[next(4)].clone(), users[next(4)].clone());
        let v = videos[next(8)].clone();
        match next(9) {
            0 | 1 => {
                let mut vd = video(v.as_str(), a.as_str(), next(1000) as i64);
                vd.topics = vec![TopicId::new(topics[next(3)]).unwrap()];
                vd.cameos = if next(2) == 0 {
                    vec![b.clone()]
                } else {
                    vec![]
                };
                store.upsert_videos(&[vd]).unwrap();
            }
            2 => {
                let _ = store.delete_video(&v); // unknown videos are an error: fine
            }
            3 if a != b => match next(6) {
                0 => store.follow(&a, &b).unwrap(),
                1 => store.unfollow(&a, &b).unwrap(),
                2 => store.block(&a, &b).unwrap(),
                3 => store.unblock(&a, &b).unwrap(),
                4 => store.mute(&a, &b).unwrap(),
                _ => store.unmute(&a, &b).unwrap(),
            },
            4 => {
                let scope = [
                    ConsentScope::Nobody,
                    ConsentScope::Approved,
                    ConsentScope::Mutuals,
                    ConsentScope::Everyone,
                ][next(4)];
                store
                    .set_consent(&a, scope, std::slice::from_ref(&b))
                    .unwrap();
            }
            5 => {
                let r = if next(2) == 0 {
                    Revocation::Video(v.clone())
                } else {
                    Revocation::Creator(b.clone())
                };
                store.revoke_consent(&a, &r).unwrap();
            }
            6 | 7 if store.video(&v).unwrap().is_some_and(|x| !x.deleted) => {
                served_events += 1;
                let kind = if next(2) == 0 {
                    EventKind::Follow { video: v.clone() }
                } else {
                    EventKind::HideCreator { video: v.clone() }
                };
                store
                    .ingest_events(&[ev(&format!("e{served_events}"), a.as_str(), step, kind)])
                    .unwrap();
            }
            8 if next(3) == 0 => {
                // An erasure, then the id stored again as someone new.
                let own = [OwnVideos::Delete, OwnVideos::Keep][next(2)];
                store.erase_user(&a, own).unwrap();
                erasures += 1;
                store
                    .upsert_user(&User {
                        id: a.clone(),
                        age_band: AgeBand::Adult,
                        time_zone: "UTC".into(),
                    })
                    .unwrap();
            }
            _ => {}
        }
        if step % 60 == 59 {
            let live = mirrored_view(&store, &users, &videos);
            drop(store);
            store = Store::open(&path, opts()).unwrap();
            let reloaded = mirrored_view(&store, &users, &videos);
            assert_eq!(
                live, reloaded,
                "the mirrors drifted from the trees by step {step}"
            );
        }
    }
    assert!(served_events > 0);
    assert!(erasures > 0);
    // The run exercised what it is meant to: relations, cameos, revocations.
    let view = mirrored_view(&store, &users, &videos).join("\n");
    assert!(view.contains("revoked: true"), "no revocation in force");
    assert!(view.contains("following [U"), "no follow edge left");
}

#[test]
fn warming_fills_the_caches_up_to_their_size_and_never_shadows_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let cold = StoreOptions {
        warm_video_cache: false,
        video_cache: 6,
        ..opts()
    };
    {
        let store = Store::open(&path, cold).unwrap();
        store.upsert_user(&User::new(uid("a"))).unwrap();
        let vs: Vec<Video> = (0..10).map(|i| video(&format!("w{i}"), "a", i)).collect();
        store.upsert_videos(&vs).unwrap();
    }
    let store = Store::open(&path, cold).unwrap();
    assert_eq!(store.cached_videos(), 0, "nothing is read before warming");
    assert_eq!(
        store.warm_video_cache().unwrap(),
        6,
        "warming stops at the cache size"
    );
    // (A small cache is split in shards that evict on their own: at most its size.)
    assert!((1..=6).contains(&store.cached_videos()));
    drop(store);
    let roomy = StoreOptions {
        video_cache: 1000,
        ..cold
    };
    let store = Store::open(&path, roomy).unwrap();
    assert_eq!(store.warm_video_cache().unwrap(), 10);
    assert_eq!(store.cached_videos(), 10, "the whole catalog is in memory");
    // A write after warming is what readers see.
    let mut changed = video("w0", "a", 0);
    changed.caption = "rewritten".into();
    store.upsert_videos(&[changed]).unwrap();
    assert_eq!(
        store.video(&vid("w0")).unwrap().unwrap().caption,
        "rewritten"
    );
    drop(store);
    // Warming in the background at open: the store closes cleanly while it runs or after.
    let warm = StoreOptions {
        warm_video_cache: true,
        ..roomy
    };
    let store = Store::open(&path, warm).unwrap();
    assert_eq!(
        store.video(&vid("w0")).unwrap().unwrap().caption,
        "rewritten"
    );
    drop(store);
    let store = Store::open(&path, warm).unwrap();
    for _ in 0..6000 {
        if store.is_warm() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(store.is_warm(), "the warmer never finished");
    assert_eq!(
        store.cached_videos(),
        10,
        "warmed in the background at open"
    );
    drop(store);
    let store = Store::open(&path, cold).unwrap();
    assert_eq!(store.video_count(), 10);
}

#[test]
fn rings_read_across_memory_and_sled_keep_order_and_bounds() {
    let store = Store::temporary(StoreOptions {
        seen_per_user: 7,
        history_per_user: 6,
        derived_persist_ms: 3_600_000,
        ..opts()
    })
    .unwrap();
    seeded(&store);
    let seen_of = |s: &Store| -> Vec<String> {
        s.seen(&uid("a"))
            .unwrap()
            .into_iter()
            .map(|(v, _)| v.to_string())
            .collect()
    };
    let expect = |from: usize, to: usize| -> Vec<String> {
        (from..to).rev().map(|i| format!("s{i}")).collect()
    };
    let serve = |i: usize| {
        store
            .record_served(&uid("a"), &[vid(&format!("s{i}"))], at(1_000 + i as i64))
            .unwrap();
    };
    (0..10).for_each(serve);
    assert_eq!(seen_of(&store), expect(3, 10), "all in memory");
    store.persist_derived_for_tests(&["seen"]).unwrap();
    assert_eq!(seen_of(&store), expect(3, 10), "all in sled");
    (10..14).for_each(serve);
    assert_eq!(
        seen_of(&store),
        expect(7, 14),
        "newest in memory, the rest in sled"
    );
    store.persist_derived_for_tests(&["seen"]).unwrap();
    (14..16).for_each(serve);
    assert_eq!(seen_of(&store), expect(9, 16));

    let videos = ["va1", "va2", "va3", "vb1"];
    let like_n = |i: usize| ev(&format!("l{i}"), "c", 3_000 + i as i64, like(videos[i % 4]));
    store
        .ingest_events(&(0..5).map(like_n).collect::<Vec<_>>())
        .unwrap();
    store.persist_derived_for_tests(&["history"]).unwrap();
    store
        .ingest_events(&(5..8).map(like_n).collect::<Vec<_>>())
        .unwrap();
    // The six newest likes, newest first: 7, 6, 5 (memory), 4, 3, 2 (sled).
    let all: Vec<String> = (2..8).rev().map(|i| videos[i % 4].to_string()).collect();
    for limit in 1..=8 {
        let got: Vec<String> = store
            .recent_engagements(&uid("c"), limit)
            .unwrap()
            .into_iter()
            .map(|e| e.video.to_string())
            .collect();
        assert_eq!(got, all[..limit.min(6)], "limit {limit}");
    }
}

#[test]
fn a_cached_video_reads_deleted_after_its_deletion() {
    // That deletion reaches every read is a contract; here, that the read it reaches
    // was served from the video cache.
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    store
        .ingest_events(&[ev("k", "b", 300, like("va3"))])
        .unwrap();
    let cached = store.video(&vid("va3")).unwrap().unwrap();
    assert!(!cached.deleted);
    assert!(store.cached_videos() > 0);
    assert_eq!(store.popular(at(302), 10).unwrap()[0].0, vid("va3"));
    store.delete_video(&vid("va3")).unwrap();
    assert!(store.video(&vid("va3")).unwrap().unwrap().deleted);
    assert!(store.popular(at(302), 10).unwrap().is_empty());
}

//! Durability: everything survives a reopen; the event log is the write-ahead log, so
//! derived state left behind it (a simulated crash, a persist torn between keys, trees at
//! different watermarks) is replayed exactly once and idempotency keys hold across the
//! replay; the catalogue log and its floor survive a reopen; and a child process killed
//! with SIGKILL mid-write loses no acknowledged write.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use steerfeed_core::ports::{ActionStats, EngagementStats, SocialGraph};
use steerfeed_core::{ConsentScope, Constraints, Event, EventKind, ParentalControls, User};
use steerfeed_store::{Revocation, Store, StoreOptions};

use crate::support::{
    at, changes, derived, emb, ev, lazy_opts, like, mixed_batch, opts, raw_sled, reference,
    reference_with, seeded, strs, uid, vid, video, view,
};

fn write_everything(store: &Store) {
    seeded(store);
    store.follow(&uid("a"), &uid("b")).unwrap();
    store.block(&uid("b"), &uid("c")).unwrap();
    store.mute(&uid("c"), &uid("a")).unwrap();
    store
        .set_consent(&uid("b"), ConsentScope::Approved, &[uid("a")])
        .unwrap();
    store
        .revoke_consent(&uid("b"), &Revocation::Creator(uid("a")))
        .unwrap();
    store
        .set_parental_controls(
            &uid("c"),
            &ParentalControls {
                scroll_cap: Some(20),
                ..ParentalControls::default()
            },
        )
        .unwrap();
    store
        .set_preferences(&uid("a"), "more pets", &Constraints::default())
        .unwrap();
    store
        .ingest_events(&[
            ev("e1", "a", 300, like("vb1")),
            ev("e2", "c", 300, view("va1", 90_000)),
            ev("e3", "c", 310, like("va1")),
        ])
        .unwrap();
    store
        .record_served(&uid("a"), &[vid("va1")], at(320))
        .unwrap();
}

#[test]
fn reopening_persists_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (pop, counts, wb) = {
        let store = Store::open(&path, opts()).unwrap();
        write_everything(&store);
        store.flush().unwrap();
        (
            store.popular(at(400), 10).unwrap(),
            store
                .video_counts(&[&vid("va1"), &vid("vb1")], at(400))
                .unwrap(),
            store.wellbeing(&uid("c"), at(400)).unwrap(),
        )
    };
    let store = Store::open(&path, opts()).unwrap();
    assert_eq!(store.video_count(), 4);
    assert_eq!(store.event_count(), 3);
    assert!(store.user(&uid("c")).unwrap().is_some());
    assert!(store.follows(&uid("a"), &uid("b")).unwrap());
    assert_eq!(store.followers(&uid("b")).unwrap(), vec![uid("a")]);
    assert_eq!(store.blocked(&uid("b")).unwrap(), vec![uid("c")]);
    assert_eq!(store.muted(&uid("c")).unwrap(), vec![uid("a")]);
    assert_eq!(
        store.consent(&uid("b")).unwrap(),
        (ConsentScope::Approved, vec![uid("a")])
    );
    assert!(
        store
            .is_revoked(&uid("b"), &Revocation::Creator(uid("a")))
            .unwrap()
    );
    assert_eq!(
        store.parental_controls(&uid("c")).unwrap().scroll_cap,
        Some(20)
    );
    assert_eq!(
        store.preferences(&uid("a")).unwrap().unwrap().text,
        "more pets"
    );
    assert_eq!(store.popular(at(400), 10).unwrap(), pop);
    assert_eq!(pop.len(), 2);
    assert_eq!(
        store
            .video_counts(&[&vid("va1"), &vid("vb1")], at(400))
            .unwrap(),
        counts
    );
    assert_eq!(store.wellbeing(&uid("c"), at(400)).unwrap(), wb);
    assert!(store.interest(&uid("a")).unwrap().is_some());
    // The served va1 and the liked vb1.
    assert_eq!(store.seen(&uid("a")).unwrap().len(), 2);
    assert_eq!(store.video(&vid("va2")).unwrap().unwrap().creator, uid("a"));
    assert_eq!(store.recent_engagements(&uid("c"), 10).unwrap().len(), 2);
    // A retried batch after the restart is still recognised.
    let r = store
        .ingest_events(&[ev("e1", "a", 300, like("vb1"))])
        .unwrap();
    assert_eq!((r.accepted, r.duplicates.len()), (0, 1));
}

#[test]
fn the_catalog_log_and_its_floor_survive_a_reopen_and_trims_free_the_tree() {
    // What the log answers is a contract (`contract::the_catalog_log_names_every_changed_video`);
    // here, sled's floor record, a reopen, and the entries a trim removes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open(&path, opts()).unwrap();
    assert_eq!((store.catalog_version(), store.catalog_log_floor()), (0, 0));
    seeded(&store); // 1
    store.delete_video(&vid("va2")).unwrap(); // 2
    let mut moved = video("va1", "a", 0);
    moved.embedding = Some(emb(99));
    store
        .upsert_videos(&[video("vc1", "c", 5), moved.clone(), moved])
        .unwrap(); // 3
    assert_eq!((store.catalog_version(), store.catalog_log_floor()), (3, 0));
    store.trim_catalog_log(2).unwrap();
    assert_eq!(store.catalog_log_floor(), 2);
    store.trim_catalog_log(1).unwrap(); // never lowers it
    assert_eq!(store.catalog_log_floor(), 2);
    drop(store);

    // The floor and the log survive a reopen.
    let store = Store::open(&path, opts()).unwrap();
    assert_eq!((store.catalog_version(), store.catalog_log_floor()), (3, 2));
    assert_eq!(changes(&store, 1), None);
    assert_eq!(changes(&store, 2), strs(&["va1", "vc1"]));
    store.delete_video(&vid("vc1")).unwrap(); // 4
    assert_eq!(changes(&store, 3), strs(&["vc1"]));
    // Past the current version, the trim stops at it.
    store.trim_catalog_log(100).unwrap();
    assert_eq!(store.catalog_log_floor(), 4);
    assert_eq!(changes(&store, 4), strs(&[]));
    drop(store);
    let db = raw_sled(&path);
    assert_eq!(
        db.open_tree("catalog_log").unwrap().len(),
        0,
        "trimmed entries are removed"
    );
}

#[test]
fn derived_state_behind_the_log_is_replayed_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let batches: Vec<Vec<Event>> = (0..6)
        .map(|i| mixed_batch(&format!("b{i}"), i * 100))
        .collect();
    let want = reference(&batches);
    assert_eq!(want.events, 6 * 15);
    assert!(want.counts[0].likes > 5.0, "{:?}", want.counts[0]);
    assert_eq!(want.muted[0], vec![uid("b")]);
    assert_eq!(want.following[2], vec![uid("b")]);
    {
        let store = Store::open(&path, lazy_opts()).unwrap();
        seeded(&store);
        for b in &batches[..3] {
            store.ingest_events(b).unwrap();
        }
        // Half the state reaches its trees, then three more batches stay in memory.
        store.flush().unwrap();
        for b in &batches[3..] {
            store.ingest_events(b).unwrap();
        }
        assert_eq!(derived(&store), want, "read-your-writes before the crash");
        store.crash_for_tests().unwrap();
    }
    let store = Store::open(&path, lazy_opts()).unwrap();
    assert_eq!(derived(&store), want, "after replay");
    // Reopening again replays nothing twice.
    drop(store);
    let store = Store::open(&path, lazy_opts()).unwrap();
    assert_eq!(derived(&store), want, "after a clean reopen");
}

#[test]
fn a_persist_torn_between_keys_replays_every_event_exactly_once() {
    // The persister writes each tree key by key: a crash may leave some records of a
    // tree with the newer layer and the rest without, under the older watermark. Rings
    // of 3 entries make every persist also remove fragments that fell out of a ring
    // (after its inserts: a cut may fall between them).
    let batches: Vec<Vec<Event>> = (0..4)
        .map(|i| mixed_batch(&format!("t{i}"), i * 100))
        .collect();
    let small = StoreOptions {
        seen_per_user: 3,
        history_per_user: 3,
        ..lazy_opts()
    };
    for (name, o) in [("default rings", lazy_opts()), ("rings of 3", small)] {
        let want = reference_with(o, &batches);
        for keep in [0, 1, 2, 3, 4, 5, 8] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            {
                let store = Store::open(&path, o).unwrap();
                seeded(&store);
                for b in &batches[..2] {
                    store.ingest_events(b).unwrap();
                }
                store.flush().unwrap();
                for b in &batches[2..] {
                    store.ingest_events(b).unwrap();
                }
                let torn = store.persist_torn_for_tests(keep).unwrap();
                assert!(
                    torn || keep > 1,
                    "{name}, keep {keep}: the persist left keys out"
                );
                store.crash_for_tests().unwrap();
            }
            let store = Store::open(&path, o).unwrap();
            assert_eq!(derived(&store), want, "{name}, keep {keep}: after replay");
            drop(store);
            let store = Store::open(&path, o).unwrap();
            assert_eq!(derived(&store), want, "{name}, keep {keep}: after a reopen");
        }
    }
}

#[test]
fn each_tree_replays_from_its_own_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let batches: Vec<Vec<Event>> = (0..3)
        .map(|i| mixed_batch(&format!("p{i}"), i * 100))
        .collect();
    let want = reference(&batches);
    {
        let store = Store::open(&path, lazy_opts()).unwrap();
        seeded(&store);
        store.ingest_events(&batches[0]).unwrap();
        // A crash halfway through writing derived state: some trees have batch 0.
        store
            .persist_derived_for_tests(&["counters", "wellbeing", "seen", "event_keys"])
            .unwrap();
        store.ingest_events(&batches[1]).unwrap();
        // Others have batches 0 and 1; the rest have nothing.
        store
            .persist_derived_for_tests(&["interest", "history", "follows", "mutes"])
            .unwrap();
        store.ingest_events(&batches[2]).unwrap();
        store
            .persist_derived_for_tests(&["creator_counts"])
            .unwrap();
        store.crash_for_tests().unwrap();
    }
    let store = Store::open(&path, lazy_opts()).unwrap();
    assert_eq!(derived(&store), want);
}

#[test]
fn idempotency_holds_across_the_replay_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let batch = mixed_batch("x", 0);
    let want = reference(std::slice::from_ref(&batch));
    {
        let store = Store::open(&path, lazy_opts()).unwrap();
        seeded(&store);
        assert_eq!(store.ingest_events(&batch).unwrap().accepted, batch.len());
        // The idempotency keys exist only in memory and in the log.
        store.crash_for_tests().unwrap();
    }
    let store = Store::open(&path, lazy_opts()).unwrap();
    let r = store.ingest_events(&batch).unwrap();
    assert_eq!((r.accepted, r.duplicates.len()), (0, batch.len()));
    assert_eq!(derived(&store), want);
    // A retry mixing old and new keys counts only the new ones.
    let mut mixed = batch[..3].to_vec();
    mixed.push(ev("new-1", "b", 50, like("va1")));
    let r = store.ingest_events(&mixed).unwrap();
    assert_eq!((r.accepted, r.duplicates.len()), (1, 3));
    assert_eq!(store.event_count(), batch.len() as u64 + 1);
    let before = want.counts[0].likes;
    let c = store.video_counts(&[&vid("va1")], at(10_000)).unwrap()[0];
    // One more like (slightly decayed by the time of the read), not zero or two.
    assert!((c.likes - before - 1.0).abs() < 0.2, "{c:?} vs {before}");
}

#[test]
fn concurrent_overlapping_batches_count_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // Small limits: derived state is written out many times while writers run.
    let o = StoreOptions {
        derived_max_pending: 40,
        derived_persist_ms: 2,
        ..opts()
    };
    let store = Store::open(&path, o).unwrap();
    seeded(&store);
    // Keys 0..300: thread w ingests keys [w*50, w*50 + 150), so neighbours overlap by
    // 100 keys and three of the four threads race for some of them. Every event is a
    // like at the same instant, so the counters are exact integers.
    let accepted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let store = store.clone();
                s.spawn(move || {
                    let mut n = 0;
                    for b in 0..15 {
                        let batch: Vec<Event> = (0..10)
                            .map(|i| {
                                let k = w * 50 + b * 10 + i;
                                let video = if k % 2 == 0 { "va1" } else { "vb1" };
                                ev(&format!("k{k}"), "c", 0, like(video))
                            })
                            .collect();
                        n += store.ingest_events(&batch).unwrap().accepted;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let distinct = 300;
    assert_eq!(accepted, distinct);
    let check = |store: &Store| {
        assert_eq!(store.event_count(), distinct as u64);
        let c = store
            .video_counts(&[&vid("va1"), &vid("vb1")], at(0))
            .unwrap();
        assert_eq!((c[0].likes, c[1].likes), (150.0, 150.0));
        let cr = store.creator_counts(&uid("a"), at(0)).unwrap();
        assert_eq!(cr.likes, 150.0);
        assert_eq!(
            store.recent_engagements(&uid("c"), 1_000).unwrap().len(),
            200
        );
    };
    check(&store);
    store.crash_for_tests().unwrap();
    let store = Store::open(&path, opts()).unwrap();
    check(&store);
}

// ---------------------------------------------------------------------------------------
// Crash test.

const CHILD_ENV: &str = "STEERFEED_STORE_CRASH_CHILD";

/// The child test's name as the test harness knows it: its module path within this test
/// binary (`durability::crash_child`), so `--exact` still finds it if the module moves.
fn child_test_name() -> String {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_crate, rest)| rest);
    format!("{module}::crash_child")
}

/// Derived state written out often and in small pieces, so kills land before, during and
/// after those writes; counters that do not decay, so a recount from the log is exact.
fn crash_opts() -> StoreOptions {
    StoreOptions {
        derived_persist_ms: 3,
        derived_max_pending: 25,
        counter_half_life_h: 1e12,
        ..opts()
    }
}

/// The child role: writes until killed, printing each acknowledged write after its call
/// returned. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (path, round) = spec.split_once('|').unwrap();
    let store = Store::open(Path::new(path), crash_opts()).unwrap();
    let mut out = std::io::stdout().lock();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ round.parse::<u64>().unwrap();
    for i in 0.. {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(5) {
            let v = format!("vid{}", x % 40);
            store
                .revoke_consent(&uid("p"), &Revocation::Video(vid(&v)))
                .unwrap();
            writeln!(out, "R {v}").unwrap();
        } else {
            let n = 1 + (x % 8) as usize;
            let batch: Vec<Event> = (0..n)
                .map(|j| {
                    ev(
                        &format!("r{round}-{i}-{j}"),
                        "p",
                        i * 10 + j as i64,
                        if j % 2 == 0 {
                            like("va1")
                        } else {
                            view("vb1", 4_000)
                        },
                    )
                })
                .collect();
            store.ingest_events(&batch).unwrap();
            for e in &batch {
                writeln!(out, "E {}", e.key).unwrap();
            }
        }
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path, opts()).unwrap();
        seeded(&store);
        store.upsert_user(&User::new(uid("p"))).unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng: u64 = 42;
    let mut next = move |n: u64| {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (rng >> 33) % n
    };
    let mut events = Vec::new();
    let mut revoked = Vec::new();
    for round in 0..20 {
        let mut child = Command::new(&exe)
            .args([
                child_test_name().as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{}|{round}", path.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = 1 + next(60) as usize;
        let mut acked = 0;
        while acked < kill_after {
            let Some(line) = lines.next() else { break };
            let line = line.unwrap();
            if let Some(k) = line.strip_prefix("E ") {
                events.push(k.to_owned());
                acked += 1;
            } else if let Some(v) = line.strip_prefix("R ") {
                revoked.push(v.to_owned());
                acked += 1;
            }
        }
        assert!(
            acked > 0,
            "round {round}: the child ({}) acknowledged nothing (not found?)",
            child_test_name()
        );
        child.kill().unwrap();
        // Whatever the child printed before dying was acknowledged too.
        for line in lines {
            let line = line.unwrap();
            if let Some(k) = line.strip_prefix("E ") {
                events.push(k.to_owned());
            } else if let Some(v) = line.strip_prefix("R ") {
                revoked.push(v.to_owned());
            }
        }
        child.wait().unwrap();

        let store = Store::open(&path, crash_opts()).unwrap();
        let (mut likes, mut views) = (0u32, 0u32);
        let logged: std::collections::HashSet<String> = {
            let mut s = std::collections::HashSet::new();
            store
                .for_each_event(1, |_, e| {
                    s.insert(e.key.to_string());
                    match e.kind {
                        EventKind::Like { .. } => likes += 1,
                        EventKind::View { .. } => views += 1,
                        _ => {}
                    }
                    Ok(())
                })
                .unwrap();
            s
        };
        assert_eq!(logged.len() as u64, store.event_count(), "round {round}");
        for k in &events {
            assert!(
                logged.contains(k),
                "round {round}: acknowledged event {k} lost"
            );
        }
        for v in &revoked {
            assert!(
                store
                    .is_revoked(&uid("p"), &Revocation::Video(vid(v)))
                    .unwrap(),
                "round {round}: acknowledged revocation of {v} lost"
            );
        }
        // Derived state is exactly a recount of the log: nothing lost, nothing twice.
        let c = store
            .video_counts(&[&vid("va1"), &vid("vb1")], at(0))
            .unwrap();
        assert_eq!(c[0].likes, likes as f32, "round {round}: likes of va1");
        assert_eq!(c[1].views, views as f32, "round {round}: views of vb1");
        let creator_a = store.creator_counts(&uid("a"), at(0)).unwrap();
        assert_eq!(creator_a.likes, likes as f32, "round {round}: creator a");
        let seen = store.seen(&uid("p")).unwrap().len();
        // Every event on a video (likes and views here) enters the seen history.
        assert_eq!(
            seen as u32,
            (likes + views).min(2_000),
            "round {round}: seen"
        );
        let hist = store.recent_engagements(&uid("p"), 1_000).unwrap().len();
        assert_eq!(
            hist as u32,
            (likes + views).min(200),
            "round {round}: history"
        );
    }
    eprintln!(
        "crash test: {} events, {} revocations acknowledged",
        events.len(),
        revoked.len()
    );
    assert!(events.len() >= 20);
}

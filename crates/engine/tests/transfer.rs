//! Bulk import and export, backups and restores, on the real engine and sled store.
//!
//! 1. An export imported into a fresh engine exports as the same records, and the derived
//!    state the events rebuild (wellbeing, history, interest, affinity) is the same;
//!    importing it again changes nothing.
//! 2. Bad records are refused one by one, each with its own error, and the rest apply;
//!    with a latest time, events and videos dated after it are refused and older ones kept.
//! 3. A backup taken while another thread ingests restores into a new directory as the
//!    store it copied, with the index loaded rather than rebuilt; a person erased after
//!    the backup is erased again by the restore; a damaged backup, a non-empty target and
//!    an existing backup directory are refused; a partial backup is cleared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use steerfeed::demo::load_world;
use steerfeed::storage::Revocation;
use steerfeed::world::{World, WorldConfig};
use steerfeed::{
    Config, Embedding, Engine, Event, EventKey, EventKind, FeedRequest, Imported, OwnVideos,
    ParentalControls, Record, RecordKind, Timestamp, User, UserId, Video, VideoId,
};

fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.store.path = dir.join("store");
    c.store.erasure_log = Some(dir.join("erasures.jsonl"));
    c
}

fn world(seed: u64) -> World {
    let mut wc = WorldConfig::new(seed, 60, 400);
    wc.events_per_user = 12;
    World::generate(wc)
}

fn u(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn v(s: &str) -> VideoId {
    VideoId::new(s).unwrap()
}

fn export(engine: &Engine, kinds: &[RecordKind]) -> Vec<Record> {
    let mut out = Vec::new();
    engine
        .export(kinds, true, &mut |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
    out
}

fn all(engine: &Engine) -> Vec<Record> {
    export(engine, &RecordKind::ALL)
}

/// A loaded world with one of each kind of record an app writes.
fn loaded(dir: &Path, w: &World) -> Engine {
    let engine = Engine::open(config(dir)).unwrap();
    load_world(&engine, w, 200).unwrap();
    let (a, b, c) = (
        &w.users[0].user.id,
        &w.users[1].user.id,
        &w.users[2].user.id,
    );
    engine.block(a, b).unwrap();
    engine.mute(a, c).unwrap();
    engine
        .revoke_consent(b, &Revocation::Creator(c.clone()))
        .unwrap();
    engine
        .set_parental_controls(
            c,
            &ParentalControls {
                personalization: false,
                ..ParentalControls::default()
            },
        )
        .unwrap();
    engine
        .set_preferences(a, "more cooking, no politics", w.config.now)
        .unwrap();
    engine
}

#[test]
fn an_export_imports_as_the_same_records_and_importing_again_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(7);
    let source = loaded(&dir.path().join("a"), &w);
    let records = all(&source);
    for kind in RecordKind::ALL {
        assert!(
            records.iter().any(|r| r.kind() == Some(kind)),
            "no {kind:?} record in the export"
        );
    }
    // Kinds come in the order that imports: each kind only after every kind before it.
    let order: Vec<usize> = records
        .iter()
        .map(|r| {
            RecordKind::ALL
                .iter()
                .position(|k| Some(*k) == r.kind())
                .unwrap()
        })
        .collect();
    assert!(order.windows(2).all(|p| p[0] <= p[1]));

    let copy = Engine::open(config(&dir.path().join("b"))).unwrap();
    let mut outcomes = Vec::new();
    for chunk in records.chunks(700) {
        outcomes.extend(copy.import(chunk, None));
    }
    assert_eq!(outcomes.len(), records.len());
    for (r, o) in records.iter().zip(&outcomes) {
        assert_eq!(o.as_ref().ok(), Some(&Imported::Written), "{r:?}: {o:?}");
    }
    assert_eq!(all(&copy), records);
    assert_eq!(copy.store().event_count(), source.store().event_count());
    assert_eq!(copy.indexed_videos(), source.indexed_videos());

    // What replaying the events rebuilt is what the source holds.
    let now = w.config.now;
    for sim in w.users.iter().take(25) {
        let id = &sim.user.id;
        let (a, b) = (
            source.store().export_user(id, now).unwrap(),
            copy.store().export_user(id, now).unwrap(),
        );
        assert_eq!(a, b, "{id}");
    }

    // Again: nothing changes, and each record says why.
    let again = copy.import(&records, None);
    for (r, o) in records.iter().zip(&again) {
        let want = match r.kind().unwrap() {
            RecordKind::User | RecordKind::Video => Imported::Unchanged,
            RecordKind::Event => Imported::Duplicate,
            _ => Imported::Written,
        };
        assert_eq!(o.as_ref().ok(), Some(&want), "{r:?}");
    }
    assert_eq!(all(&copy), records);
}

fn event(key: &str, user: &str, video: &str, at: Timestamp) -> Event {
    Event {
        key: EventKey::new(key).unwrap(),
        user: u(user),
        at,
        kind: EventKind::Like { video: v(video) },
    }
}

#[test]
fn bad_records_are_refused_one_by_one_and_the_rest_apply() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let now = Timestamp::now();
    let video = |id: &str, creator: &str| Video {
        caption: format!("a cat video numbered {id}"),
        ..Video::new(v(id), u(creator), now, 20.0)
    };
    let mut records = vec![
        Record::User {
            user: User::new(u("ann")),
        },
        Record::User {
            user: User::new(u("bob")),
        },
        Record::Video {
            video: video("v1", "ann"),
        },
        Record::Video {
            video: video("v2", "ghost"),
        },
        Record::Video {
            video: Video {
                embedding: Some(Embedding::normalized("embedding", &[1.0, 0.0, 0.0]).unwrap()),
                ..video("v3", "ann")
            },
        },
        Record::Video {
            video: video("v4", "bob"),
        },
        Record::Follow {
            user: u("ann"),
            creator: u("nobody"),
        },
        Record::Follow {
            user: u("ann"),
            creator: u("bob"),
        },
        Record::Revocation {
            person: u("bob"),
            video: Some(v("v1")),
            creator: Some(u("ann")),
        },
        Record::Seen {
            user: u("ann"),
            video: v("v1"),
            at: now,
        },
    ];
    let mut bad = vec![3, 4, 6, 8];
    for i in 0..40 {
        let (key, video) = if i == 17 {
            bad.push(records.len());
            (format!("e{i}"), "v-missing")
        } else if i == 30 {
            (format!("e{i}"), "v-deleted-never")
        } else {
            (format!("e{i}"), if i % 2 == 0 { "v1" } else { "v4" })
        };
        if i == 30 {
            bad.push(records.len());
        }
        records.push(Record::Event {
            seq: 0,
            event: event(&key, if i % 3 == 0 { "bob" } else { "ann" }, video, now),
        });
    }
    // A key repeated in the file: counted once.
    records.push(Record::Event {
        seq: 0,
        event: event("e0", "bob", "v1", now),
    });
    let outcomes = engine.import(&records, None);
    assert_eq!(outcomes.len(), records.len());
    for (i, o) in outcomes.iter().enumerate() {
        if bad.contains(&i) {
            let e = o
                .as_ref()
                .expect_err(&format!("record {i} should be refused"));
            assert!(e.is_user_error(), "record {i}: {e}");
        } else {
            assert!(o.is_ok(), "record {i}: {o:?}");
        }
    }
    assert_eq!(outcomes[9].as_ref().ok(), Some(&Imported::Derived));
    assert_eq!(
        outcomes.last().unwrap().as_ref().ok(),
        Some(&Imported::Duplicate)
    );
    assert_eq!(engine.store().event_count(), 38);
    assert!(engine.video(&v("v1")).unwrap().is_some());
    assert!(engine.video(&v("v2")).unwrap().is_none());
    assert!(engine.video(&v("v3")).unwrap().is_none());
    assert!(engine.store().follows(&u("ann"), &u("bob")).unwrap());
}

#[test]
fn an_import_with_a_latest_time_refuses_what_is_dated_after_it_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let now = Timestamp::now();
    let hours = |h: i64| {
        now.checked_add(jiff::SignedDuration::from_hours(h))
            .unwrap()
    };
    let video = |id: &str, at: Timestamp| Record::Video {
        video: Video {
            caption: format!("a cooking video numbered {id}"),
            ..Video::new(v(id), u("ann"), at, 20.0)
        },
    };
    let ev = |key: &str, at: Timestamp| Record::Event {
        seq: 0,
        event: event(key, "bob", "old", at),
    };
    let records = vec![
        Record::User {
            user: User::new(u("ann")),
        },
        Record::User {
            user: User::new(u("bob")),
        },
        video("old", hours(-24 * 400)),
        video("ahead", hours(2)),
        ev("history", hours(-24 * 30)),
        ev("future", hours(1)),
        ev("skewed", now),
    ];
    let latest = Some(
        hours(0)
            .checked_add(jiff::SignedDuration::from_mins(5))
            .unwrap(),
    );
    let outcomes = engine.import(&records, latest);
    let refused: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(refused, vec![3, 5], "{outcomes:?}");
    for i in refused {
        let e = outcomes[i].as_ref().unwrap_err();
        assert!(e.is_user_error(), "{e}");
    }
    // What was refused changed nothing; what was dated in the past was kept.
    assert!(engine.video(&v("old")).unwrap().is_some());
    assert!(engine.video(&v("ahead")).unwrap().is_none());
    assert_eq!(engine.store().event_count(), 2);
    // Without a latest time (a caller keeping its own clock) every date is accepted.
    let again = engine.import(&records, None);
    assert!(again.iter().all(Result::is_ok), "{again:?}");
    assert!(engine.video(&v("ahead")).unwrap().is_some());
    assert_eq!(engine.store().event_count(), 3);
}

#[test]
fn a_backup_under_writes_restores_the_store_and_erasures_after_it_hold() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(11);
    let source = Arc::new(loaded(&dir.path().join("a"), &w));
    let now = w.config.now;
    let videos: Vec<VideoId> = w.videos.iter().map(|v| v.id.clone()).collect();

    // Events keep arriving while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (engine, stop, videos) = (source.clone(), stop.clone(), videos.clone());
        let users: Vec<UserId> = w.users.iter().map(|s| s.user.id.clone()).collect();
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::Acquire) {
                let batch: Vec<Event> = (0..20)
                    .map(|i| {
                        n += 1;
                        Event {
                            key: EventKey::new(format!("live-{n}")).unwrap(),
                            user: users[(n + i) % users.len()].clone(),
                            at: now,
                            kind: EventKind::View {
                                video: videos[n % videos.len()].clone(),
                                watch_ms: 4_000,
                                completed: n.is_multiple_of(2),
                            },
                        }
                    })
                    .collect();
                engine.ingest_events(&batch).unwrap();
            }
            n
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    let backups = dir.path().join("backups");
    // A backup cut short leaves a partial directory: the next backup clears it.
    std::fs::create_dir_all(backups.join("one.partial/db")).unwrap();
    std::fs::write(backups.join("one.partial/in-progress"), b"").unwrap();
    let manifest = source.backup(&backups.join("one")).unwrap();
    stop.store(true, Ordering::Release);
    assert!(writer.join().unwrap() > 0);
    assert!(!backups.join("one.partial").exists());
    assert!(manifest.events > 0 && manifest.events <= source.store().event_count());
    assert!(manifest.index_catalog_version <= manifest.catalog_version);
    let err = source.backup(&backups.join("one")).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    // Refused before anything is made, as the caller's mistake: inside the store's
    // directory (through directories that do not exist yet), under a regular file.
    let store_dir = source.config().store.path.clone();
    let inside = store_dir.join("not/yet/there/backup");
    let err = source.backup(&inside).unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert!(
        !store_dir.join("not").exists(),
        "a refused backup made directories"
    );
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = source.backup(&file.join("backup")).unwrap_err();
    assert!(err.is_user_error(), "{err}");
    // A ".." could lead back into the store past the check: refused whatever it names.
    let err = source
        .backup(&backups.join("new/../../a/store/x"))
        .unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert!(!backups.join("new").exists());

    // After the backup: someone is erased, with the videos featuring them.
    let erased = w
        .videos
        .iter()
        .find_map(|v| v.cameos.first().cloned())
        .expect("a cameo in the world");
    let report = source.erase_user(&erased, OwnVideos::Delete).unwrap();
    assert!(report.cameo_videos_deleted > 0 || report.own_videos_deleted > 0);

    // Restored with the live erasure log: the erasure made after the backup is carried out.
    let mut target = config(&dir.path().join("restored"));
    target.store.erasure_log = config(&dir.path().join("a")).store.erasure_log;
    let restored = Engine::restore(&backups.join("one"), target.clone()).unwrap();
    assert_eq!(restored.erasures_after_backup, 1);
    assert!(restored.index_loaded, "{restored:?}");
    let copy = Engine::open(target.clone()).unwrap();
    assert_eq!(copy.store().event_count(), manifest.events);
    assert!(copy.user(&erased).unwrap().is_none());
    for id in &report.deleted {
        assert!(copy.video(id).unwrap().is_none_or(|v| v.deleted), "{id}");
    }
    // Everything but the events written after the backup is the source's.
    let kinds: Vec<RecordKind> = RecordKind::ALL
        .into_iter()
        .filter(|k| *k != RecordKind::Event)
        .collect();
    assert_eq!(export(&copy, &kinds), export(&source, &kinds));
    let logged = |e: &Engine| {
        let mut out = Vec::new();
        e.store()
            .for_each_event(1, &mut |seq, ev| {
                if seq <= manifest.events {
                    out.push((seq, ev));
                }
                Ok(())
            })
            .unwrap();
        out
    };
    assert_eq!(logged(&copy), logged(&source));
    drop(copy);

    // Refused: a target that holds something, and a damaged backup.
    let err = Engine::restore(&backups.join("one"), target).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
    let damaged = dir.path().join("damaged");
    steerfeed::store::copy_tree(&backups.join("one"), &damaged).unwrap();
    let index = damaged.join("index.hnsw");
    let mut bytes = std::fs::read(&index).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&index, bytes).unwrap();
    let err = Engine::restore(&damaged, config(&dir.path().join("r2"))).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    let err =
        Engine::restore(&dir.path().join("nothing"), config(&dir.path().join("r3"))).unwrap_err();
    assert!(err.to_string().contains("not a complete backup"), "{err}");
}

#[test]
fn a_restored_backup_serves_the_pages_its_source_serves() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(5);
    let source = loaded(&dir.path().join("a"), &w);
    let backup = dir.path().join("backup");
    source.backup(&backup).unwrap();
    let target = config(&dir.path().join("restored"));
    let report = Engine::restore(&backup, target.clone()).unwrap();
    assert!(report.index_loaded, "{report:?}");
    assert_eq!(report.erasures_after_backup, 0);
    let copy = Engine::open(target).unwrap();
    let now = w.config.now;
    let mut served = 0;
    for sim in w.users.iter().take(30) {
        let request = FeedRequest::new(sim.user.id.clone(), 10).unwrap().at(now);
        let page = |e: &Engine| {
            e.feed(&request)
                .unwrap()
                .items
                .into_iter()
                .map(|i| (i.video, i.explanation.text))
                .collect::<Vec<_>>()
        };
        let (a, b) = (page(&source), page(&copy));
        served += a.len();
        assert_eq!(a, b, "{}", sim.user.id);
    }
    assert!(served > 100, "{served} items served in all");
}

#[test]
fn an_import_never_brings_back_someone_erased() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(13);
    let engine = loaded(&dir.path().join("a"), &w);
    let before = all(&engine);
    let gone = w.users[4].user.id.clone();
    engine.erase_user(&gone, OwnVideos::Keep).unwrap();
    let outcomes = engine.import(&before, None);
    let mut refused = 0;
    for (r, o) in before.iter().zip(&outcomes) {
        let names_gone = match r {
            Record::User { user } => user.id == gone,
            Record::Follow { user, creator } => *user == gone || *creator == gone,
            Record::Event { event, .. } => event.user == gone,
            Record::Video { video } => video.creator == gone || video.cameos.contains(&gone),
            _ => false,
        };
        if names_gone {
            let e = o.as_ref().expect_err("a record about the erased person");
            assert!(e.to_string().contains("erased"), "{e}");
            refused += 1;
        }
    }
    assert!(refused > 1, "{refused}");
    assert!(engine.user(&gone).unwrap().is_none());
    assert!(
        engine
            .store()
            .export_user(&gone, w.config.now)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn duplicate_keys_in_one_batch_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let now = Timestamp::now();
    let mut records = vec![
        Record::User {
            user: User::new(u("ann")),
        },
        Record::Video {
            video: Video {
                caption: "a dog on a skateboard".into(),
                ..Video::new(v("v1"), u("ann"), now, 20.0)
            },
        },
    ];
    for key in ["a", "b", "a", "c", "a", "b"] {
        records.push(Record::Event {
            seq: 0,
            event: event(key, "ann", "v1", now),
        });
    }
    let got: Vec<Imported> = engine
        .import(&records, None)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    use Imported::{Duplicate as D, Written as W};
    assert_eq!(&got[2..], [W, W, D, W, D, D]);
    assert_eq!(engine.store().event_count(), 3);
    // Again: every copy a duplicate.
    let again: Vec<Imported> = engine
        .import(&records[2..], None)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(again, vec![D; 6]);
}

#[test]
fn a_backup_refuses_a_home_inside_the_store_and_a_restore_a_foreign_erasure_log() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(17);
    let engine = loaded(&dir.path().join("a"), &w);
    let store = config(&dir.path().join("a")).store.path;
    let err = engine.backup(&store.join("db/inside")).unwrap_err();
    assert!(err.to_string().contains("inside the store"), "{err}");
    assert!(!store.join("db/inside.partial").exists());
    // A directory named like a partial backup but not one is left alone.
    let odd = dir.path().join("b.partial");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::write(odd.join("keep"), b"mine").unwrap();
    let err = engine.backup(&dir.path().join("b")).unwrap_err();
    assert!(
        err.to_string().contains("not a backup left unfinished"),
        "{err}"
    );
    assert!(odd.join("keep").exists());

    let backup = dir.path().join("c");
    let manifest = engine.backup(&backup).unwrap();
    assert!(!manifest.store_id.is_empty());
    // Another store's erasure log at the configured path: its erasures are not this
    // store's, and the restore refuses to carry them out.
    let target = config(&dir.path().join("r"));
    let foreign = target.store.erasure_log.clone().unwrap();
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    let entry = steerfeed::store::ErasureEntry {
        user: w.users[3].user.id.clone(),
        at: Timestamp::now(),
        own_videos: OwnVideos::Delete,
        store: Some("someone-else".into()),
    };
    std::fs::write(&foreign, serde_json::to_string(&entry).unwrap() + "\n").unwrap();
    let err = Engine::restore(&backup, target.clone()).unwrap_err();
    assert!(err.to_string().contains("another store"), "{err}");
    // This store's own erasure after the backup is carried out.
    engine
        .erase_user(&w.users[3].user.id, OwnVideos::Keep)
        .unwrap();
    let own = config(&dir.path().join("a")).store.erasure_log.unwrap();
    std::fs::copy(&own, &foreign).unwrap();
    let report = Engine::restore(&backup, target.clone()).unwrap();
    assert_eq!(report.erasures_after_backup, 1);
    let copy = Engine::open(target).unwrap();
    assert!(copy.user(&w.users[3].user.id).unwrap().is_none());
    assert!(copy.user(&w.users[2].user.id).unwrap().is_some());
}

#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests of the store. What they check:
//!
//! 1. every entity round-trips (videos with embeddings, users, follows both ways, blocks,
//!    mutes, consent, revocations, parental controls, preferences, wellbeing, interest);
//! 2. key order: creator, global and cameo indexes are newest first; seen history and
//!    engagement history are bounded and keep the newest;
//! 3. reopening persists everything, including the rebuilt popular list;
//! 4. a store with another schema version, dimension, a foreign sled database or garbage
//!    files is refused with a clear error, never a panic;
//! 5. ingest is idempotent (a retried batch, a key repeated within a batch);
//! 6. bad input changes nothing (wrong dimension, unknown video in an event, unknown user);
//! 7. consent facts (no teen clamp here; per-video and per-creator revocations; mutual);
//! 8. daily wellbeing counters roll over at local midnight in the user's time zone;
//! 9. counters decay by half after one half-life;
//! 10. derived state from events (passive streak, check-ins, hide creator, not interested,
//!     remix counters and trending, viewer affinity), deletion in every cache, concurrent
//!     writers, a seeded synthetic world;
//! 11. the log is the write-ahead log: derived state left behind the log (a simulated
//!     crash, or one halfway through writing the derived trees) is replayed exactly once,
//!     each tree from its own watermark, and idempotency keys hold across the replay;
//!     four writers with overlapping batches count every distinct event once;
//! 12. the catalog log names every video changed after a version, from its floor on,
//!     survives a reopen and a trim, and starts at the current version in a store
//!     upgraded from schema 6;
//! 13. a crash test: a child process is killed with SIGKILL mid-write 20 times; every
//!     acknowledged write is found after reopening, and the derived counters, seen and
//!     history rings equal a recount of the log.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use steerfeed_core::ports::{
    ActionStats, ConsentLedger, EngagementStats, SocialGraph, UserHistory, VideoCatalog,
};
use steerfeed_core::{
    AgeBand, Audience, CheckinAnswer, ConsentScope, Constraints, Embedding, Error, Event, EventKey,
    EventKind, ParentalControls, SafetyLabel, Timestamp, TopicId, User, UserId, Video, VideoId,
};
use steerfeed_store::{Revocation, Store, StoreOptions};

const DIM: usize = 8;
const T0: i64 = 1_795_000_000;

fn opts() -> StoreOptions {
    StoreOptions::with_dim(DIM)
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn vid(s: &str) -> VideoId {
    VideoId::new(s).unwrap()
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

fn emb(seed: usize) -> Embedding {
    let v: Vec<f32> = (0..DIM)
        .map(|i| ((seed * 31 + i * 7) % 13) as f32 - 6.0 + 0.5)
        .collect();
    Embedding::new("embedding", &v, DIM).unwrap()
}

fn video(id: &str, creator: &str, secs: i64) -> Video {
    Video {
        caption: format!("caption of {id}"),
        embedding: Some(emb(id.len() + id.bytes().map(usize::from).sum::<usize>())),
        ..Video::new(vid(id), uid(creator), at(secs), 10.0)
    }
}

fn ev(key: &str, user: &str, secs: i64, kind: EventKind) -> Event {
    Event {
        key: EventKey::new(key).unwrap(),
        user: uid(user),
        at: at(secs),
        kind,
    }
}

fn like(v: &str) -> EventKind {
    EventKind::Like { video: vid(v) }
}

fn view(v: &str, watch_ms: u64) -> EventKind {
    EventKind::View {
        video: vid(v),
        watch_ms,
        completed: false,
    }
}

/// A store with users a, b, c (c a teen in Tokyo) and videos by a and b.
fn seeded(store: &Store) {
    for (u, tz, age) in [
        ("a", "UTC", AgeBand::Adult),
        ("b", "Europe/Paris", AgeBand::Adult),
        ("c", "Asia/Tokyo", AgeBand::Teen),
    ] {
        store
            .upsert_user(&User {
                id: uid(u),
                age_band: age,
                time_zone: tz.into(),
            })
            .unwrap();
    }
    store
        .upsert_videos(&[
            video("va1", "a", 0),
            video("va2", "a", 100),
            video("va3", "a", 200),
            video("vb1", "b", 50),
        ])
        .unwrap();
}

fn assert_same_embedding(a: &Embedding, b: &Embedding) {
    assert_eq!(a.dim(), b.dim());
    for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
}

#[test]
fn every_entity_round_trips() {
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    let full = Video {
        caption: "a cat bakes bread".into(),
        topics: vec![TopicId::new("pets").unwrap()],
        remix_of: Some(vid("va1")),
        cameos: vec![uid("b"), uid("c")],
        safety: vec![SafetyLabel::Sensitive],
        audience: Audience::Followers,
        ..video("vx", "b", 300)
    };
    store.upsert_videos(std::slice::from_ref(&full)).unwrap();
    let got = store.video(&vid("vx")).unwrap().unwrap();
    let (mut a, mut b) = ((*got).clone(), full.clone());
    assert_same_embedding(a.embedding.as_ref().unwrap(), b.embedding.as_ref().unwrap());
    a.embedding = None;
    b.embedding = None;
    assert_eq!(a, b);
    assert!(store.video(&vid("nope")).unwrap().is_none());
    assert_eq!(store.video_count(), 5);

    let c = store.user(&uid("c")).unwrap().unwrap();
    assert_eq!(
        (c.age_band, c.time_zone.as_str()),
        (AgeBand::Teen, "Asia/Tokyo")
    );

    store.follow(&uid("a"), &uid("b")).unwrap();
    store.follow(&uid("c"), &uid("b")).unwrap();
    assert_eq!(
        SocialGraph::following(&store, &uid("a")).unwrap(),
        vec![uid("b")]
    );
    assert_eq!(
        store.followers(&uid("b")).unwrap(),
        vec![uid("a"), uid("c")]
    );
    assert!(store.follows(&uid("a"), &uid("b")).unwrap());
    assert!(!store.follows(&uid("b"), &uid("a")).unwrap());
    store.unfollow(&uid("c"), &uid("b")).unwrap();
    assert_eq!(store.followers(&uid("b")).unwrap(), vec![uid("a")]);

    store.block(&uid("a"), &uid("c")).unwrap();
    store.mute(&uid("a"), &uid("b")).unwrap();
    assert_eq!(store.blocked(&uid("a")).unwrap(), vec![uid("c")]);
    assert_eq!(store.muted(&uid("a")).unwrap(), vec![uid("b")]);
    store.unblock(&uid("a"), &uid("c")).unwrap();
    store.unmute(&uid("a"), &uid("b")).unwrap();
    assert!(store.blocked(&uid("a")).unwrap().is_empty());
    assert!(store.muted(&uid("a")).unwrap().is_empty());

    store
        .set_consent(&uid("b"), ConsentScope::Approved, &[uid("a"), uid("c")])
        .unwrap();
    assert_eq!(
        store.consent(&uid("b")).unwrap(),
        (ConsentScope::Approved, vec![uid("a"), uid("c")])
    );
    store
        .set_consent(&uid("b"), ConsentScope::Mutuals, &[uid("c")])
        .unwrap();
    assert_eq!(
        store.consent(&uid("b")).unwrap(),
        (ConsentScope::Mutuals, vec![uid("c")])
    );
    store
        .revoke_consent(&uid("b"), &Revocation::Video(vid("vx")))
        .unwrap();
    assert!(
        store
            .is_revoked(&uid("b"), &Revocation::Video(vid("vx")))
            .unwrap()
    );
    assert!(
        !store
            .is_revoked(&uid("b"), &Revocation::Video(vid("va1")))
            .unwrap()
    );

    let pc = ParentalControls {
        personalization: false,
        scroll_cap: Some(50),
        daily_limit_minutes: Some(30),
        cameo_scope: Some(ConsentScope::Nobody),
    };
    assert_eq!(
        store.parental_controls(&uid("c")).unwrap(),
        ParentalControls::default()
    );
    store.set_parental_controls(&uid("c"), &pc).unwrap();
    assert_eq!(store.parental_controls(&uid("c")).unwrap(), pc);

    let cons = Constraints {
        max_duration_s: Some(15),
        expires_at: Some(at(1_000)),
        ..Constraints::default()
    };
    store
        .set_preferences(&uid("a"), "short ones please", &cons)
        .unwrap();
    let p = store.preferences(&uid("a")).unwrap().unwrap();
    assert_eq!(
        (p.text.as_str(), &p.constraints),
        ("short ones please", &cons)
    );
    assert_eq!(store.active_constraints(&uid("a"), at(999)).unwrap(), cons);
    assert!(
        store
            .active_constraints(&uid("a"), at(1_000))
            .unwrap()
            .is_empty()
    );
    store.clear_preferences(&uid("a")).unwrap();
    assert!(store.preferences(&uid("a")).unwrap().is_none());

    assert!(store.interest(&uid("a")).unwrap().is_none());
    store
        .ingest_events(&[ev("k1", "a", 400, like("vb1"))])
        .unwrap();
    let interest = store.interest(&uid("a")).unwrap().unwrap();
    assert_same_embedding(
        &interest,
        store
            .video(&vid("vb1"))
            .unwrap()
            .unwrap()
            .embedding
            .as_ref()
            .unwrap(),
    );
    assert_eq!(store.event_count(), 1);

    let mut embs = Vec::new();
    store
        .for_each_embedding(|id, e| {
            assert_eq!(e.dim(), DIM);
            embs.push(id);
            Ok(())
        })
        .unwrap();
    assert_eq!(embs.len(), 5);
    let mut logged = Vec::new();
    store
        .for_each_event(1, |seq, e| {
            logged.push((seq, e));
            Ok(())
        })
        .unwrap();
    assert_eq!(logged, vec![(1, ev("k1", "a", 400, like("vb1")))]);
}

#[test]
fn time_indexes_are_newest_first_and_rings_keep_the_newest() {
    let store = Store::temporary(StoreOptions {
        seen_per_user: 5,
        history_per_user: 3,
        ..opts()
    })
    .unwrap();
    seeded(&store);
    let mut cameo = video("vc", "b", 150);
    cameo.cameos = vec![uid("a")];
    let mut cameo2 = video("vc2", "b", 10);
    cameo2.cameos = vec![uid("a")];
    store.upsert_videos(&[cameo, cameo2]).unwrap();

    let ids = |vs: Vec<Arc<Video>>| vs.iter().map(|v| v.id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ids(store.recent_by_creator(&uid("a"), at(0), 10).unwrap()),
        ["va3", "va2", "va1"]
    );
    assert_eq!(
        ids(store.recent_by_creator(&uid("a"), at(100), 10).unwrap()),
        ["va3", "va2"]
    );
    assert_eq!(
        ids(store.recent_by_creator(&uid("a"), at(0), 1).unwrap()),
        ["va3"]
    );
    assert_eq!(
        ids(store.newest(at(50), 10).unwrap()),
        ["va3", "vc", "va2", "vb1"]
    );
    assert_eq!(ids(store.featuring(&uid("a"), 10).unwrap()), ["vc", "vc2"]);
    assert_eq!(store.creator_video_count(&uid("a"), 100).unwrap(), 3);
    assert_eq!(store.creator_video_count(&uid("a"), 2).unwrap(), 2);

    // A creator whose id is a prefix of another's must not see the other's videos.
    store.upsert_user(&User::new(uid("ab"))).unwrap();
    store.upsert_videos(&[video("vab", "ab", 500)]).unwrap();
    assert_eq!(store.creator_video_count(&uid("a"), 100).unwrap(), 3);

    let served: Vec<VideoId> = (0..12).map(|i| vid(&format!("s{i}"))).collect();
    for (i, v) in served.iter().enumerate() {
        store
            .record_served(&uid("a"), std::slice::from_ref(v), at(1_000 + i as i64))
            .unwrap();
    }
    let seen: Vec<String> = store
        .seen(&uid("a"))
        .unwrap()
        .into_iter()
        .map(|(v, _)| v.to_string())
        .collect();
    assert_eq!(seen, ["s11", "s10", "s9", "s8", "s7"]);
    // One call with more items than the bound keeps the last ones too.
    store.record_served(&uid("b"), &served, at(2_000)).unwrap();
    assert_eq!(store.seen(&uid("b")).unwrap()[0].0, vid("s11"));
    assert_eq!(store.seen(&uid("b")).unwrap().len(), 5);

    let events: Vec<Event> = ["va1", "va2", "va3", "vb1"]
        .iter()
        .enumerate()
        .map(|(i, v)| ev(&format!("h{i}"), "c", 3_000 + i as i64, like(v)))
        .collect();
    store.ingest_events(&events).unwrap();
    let hist: Vec<String> = store
        .recent_engagements(&uid("c"), 10)
        .unwrap()
        .into_iter()
        .map(|e| e.video.to_string())
        .collect();
    assert_eq!(hist, ["vb1", "va3", "va2"]);
    assert_eq!(
        UserHistory::recent_engagements(&store, &uid("c"), 1)
            .unwrap()
            .len(),
        1
    );
}

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
    assert_eq!(store.seen(&uid("a")).unwrap().len(), 1);
    assert_eq!(store.video(&vid("va2")).unwrap().unwrap().creator, uid("a"));
    assert_eq!(store.recent_engagements(&uid("c"), 10).unwrap().len(), 2);
    // A retried batch after the restart is still recognised.
    let r = store
        .ingest_events(&[ev("e1", "a", 300, like("vb1"))])
        .unwrap();
    assert_eq!((r.accepted, r.duplicates.len()), (0, 1));
}

/// The store's sled database opened directly, as an older build or another program
/// would. sled's I/O threads may hold the file lock for a moment after a store closed
/// (spacejam/sled#1289), so wait for it as `Store::open` does.
fn raw_sled(path: &Path) -> sled::Db {
    let mut tries = 0;
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(sled::Error::Io(e))
                if tries < 500 && e.to_string().contains("could not acquire lock") =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot open {}: {e}", path.display()),
        }
    }
}

fn overwrite_header(path: &Path, bytes: &[u8]) {
    let db = raw_sled(path);
    db.open_tree("meta")
        .unwrap()
        .insert("header", bytes)
        .unwrap();
    db.flush().unwrap();
}

#[test]
fn a_version_3_log_of_one_event_records_reads_and_grows_in_batch_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // More events than one log record holds, so the batch spans several records.
    let batch: Vec<Event> = (0..130)
        .map(|i| ev(&format!("n{i}"), "b", i, like("va1")))
        .collect();
    {
        let store = Store::open(&path, opts()).unwrap();
        seeded(&store);
        assert_eq!(store.ingest_events(&batch).unwrap().accepted, 130);
    }
    // An older build's one-event records after them (schema version 1's JSON form is
    // one of those), and a version 3 header.
    {
        let db = raw_sled(&path);
        let log = db.open_tree("events").unwrap();
        for (seq, key) in [(131u64, "old-1"), (132, "old-2")] {
            let e = ev(key, "c", 200, like("vb1"));
            log.insert(seq.to_be_bytes(), serde_json::to_vec(&e).unwrap())
                .unwrap();
        }
        db.flush().unwrap();
    }
    let mut h = b"steerfeed-store\0".to_vec();
    h.extend_from_slice(&3u32.to_be_bytes());
    h.extend_from_slice(&(DIM as u32).to_be_bytes());
    overwrite_header(&path, &h);

    let check = |store: &Store, n: u64| {
        assert_eq!(store.event_count(), n);
        let mut seqs = Vec::new();
        let mut keys = Vec::new();
        store
            .for_each_event(1, |seq, e| {
                seqs.push(seq);
                keys.push(e.key.as_str().to_owned());
                Ok(())
            })
            .unwrap();
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
        assert_eq!(keys[0], "n0");
        assert_eq!(keys[130], "old-1");
        // Starting inside a record yields exactly the events from there on.
        for from in [1, 2, 48, 49, 50, 97, 130, 131, 132, n, n + 1] {
            let mut got = Vec::new();
            store
                .for_each_event(from, |seq, _| {
                    got.push(seq);
                    Ok(())
                })
                .unwrap();
            assert_eq!(got, (from..=n).collect::<Vec<_>>(), "from {from}");
        }
        let c = store
            .video_counts(&[&vid("va1"), &vid("vb1")], at(200))
            .unwrap();
        assert!((c[0].likes - 130.0).abs() < 1.0, "{c:?}");
        assert!(
            c[1].likes >= 2.0 - 1e-3,
            "the old records were counted: {c:?}"
        );
    };
    {
        let store = Store::open(&path, opts()).unwrap();
        check(&store, 132);
        // Retries of old and new records are recognised; new events follow on.
        let r = store
            .ingest_events(&[
                ev("old-2", "c", 200, like("vb1")),
                ev("n5", "b", 5, like("va1")),
                ev("new", "c", 300, like("vb1")),
            ])
            .unwrap();
        assert_eq!((r.accepted, r.duplicates.len()), (1, 2));
        check(&store, 133);
    }
    let store = Store::open(&path, opts()).unwrap();
    check(&store, 133);
}

#[test]
fn a_version_4_stores_json_wellbeing_reads_and_is_rewritten_in_binary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Store::open(&path, opts()).unwrap());
    // What version 4 wrote for user c: a JSON record, under a version 4 header.
    let json = format!(
        r#"{{"state":{{"session_started":"{s}","session_items":3,"minutes_today":1.5,"items_today":4,"passive_streak":2,"last_checkin":null,"last_answer":["not_great","{s}"],"last_break":null}},"day":"{d}","last_active":"{s}","last_item":"vb1"}}"#,
        s = at(100),
        d = jiff::tz::TimeZone::UTC.to_datetime(at(100)).date(),
    );
    {
        let db = raw_sled(&path);
        let wb = db.open_tree("wellbeing").unwrap();
        wb.insert("c", json.as_bytes()).unwrap();
        db.flush().unwrap();
    }
    let mut h = b"steerfeed-store\0".to_vec();
    h.extend_from_slice(&4u32.to_be_bytes());
    h.extend_from_slice(&(DIM as u32).to_be_bytes());
    overwrite_header(&path, &h);

    let store = Store::open(&path, opts()).unwrap();
    seeded(&store);
    let w = store.wellbeing(&uid("c"), at(110)).unwrap();
    assert_eq!(
        (w.session_items, w.items_today, w.passive_streak),
        (3, 4, 2)
    );
    assert!((w.minutes_today - 1.5).abs() < 1e-6);
    assert_eq!(w.last_answer, Some((CheckinAnswer::NotGreat, at(100))));
    // An impression of another video counts one more item and rewrites the record.
    store
        .ingest_events(&[ev(
            "w1",
            "c",
            120,
            EventKind::Impression { video: vid("va1") },
        )])
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let db = raw_sled(&path);
    let header = db
        .open_tree("meta")
        .unwrap()
        .get("header")
        .unwrap()
        .unwrap();
    assert_eq!(
        header[16..20],
        steerfeed_store::SCHEMA_VERSION.to_be_bytes()
    );
    let rec = db
        .open_tree("wellbeing")
        .unwrap()
        .get("c")
        .unwrap()
        .unwrap();
    assert_ne!(rec.first(), Some(&b'{'), "still JSON after a rewrite");
    drop(db);
    let store = Store::open(&path, opts()).unwrap();
    let w = store.wellbeing(&uid("c"), at(130)).unwrap();
    assert_eq!(
        (w.session_items, w.items_today, w.passive_streak),
        (3, 5, 2)
    );
}

#[test]
fn a_fragment_overlapped_by_a_newer_one_reads_each_entry_once() {
    // A ring write retried after a failed persist, when the first attempt had grown the
    // newest fragment, stores its entries again as a new fragment over the older one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let served: Vec<VideoId> = (0..4).map(|i| vid(&format!("o{i}"))).collect();
    let want = {
        let store = Store::open(&path, opts()).unwrap();
        seeded(&store);
        store.record_served(&uid("a"), &served, at(50)).unwrap();
        store.flush().unwrap();
        store.seen(&uid("a")).unwrap()
    };
    assert_eq!(want.len(), 4);
    {
        let db = raw_sled(&path);
        let seen = db.open_tree("seen").unwrap();
        let (k, v) = seen.scan_prefix(b"a\0").next_back().unwrap().unwrap();
        // The fragment's entries (count u32, then length u32 and bytes each; its as-of
        // number follows them).
        let count = u32::from_le_bytes(v[..4].try_into().unwrap());
        let mut entries = Vec::new();
        let mut at_ = 4;
        for _ in 0..count {
            let n = u32::from_le_bytes(v[at_..at_ + 4].try_into().unwrap()) as usize;
            entries.push(v[at_ + 4..at_ + 4 + n].to_vec());
            at_ += 4 + n;
        }
        assert_eq!(entries.len(), 4, "one fragment of four");
        let first = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap());
        // Its last two entries again, as a newer fragment.
        let mut key = k[..k.len() - 8].to_vec();
        key.extend_from_slice(&(first + 2).to_be_bytes());
        let mut value = 2u32.to_le_bytes().to_vec();
        for e in &entries[2..] {
            value.extend_from_slice(&(e.len() as u32).to_le_bytes());
            value.extend_from_slice(e);
        }
        seen.insert(key, value).unwrap();
        db.flush().unwrap();
    }
    let store = Store::open(&path, opts()).unwrap();
    assert_eq!(store.seen(&uid("a")).unwrap(), want);
    // And with appends in memory above them.
    store
        .record_served(&uid("a"), &[vid("o9")], at(60))
        .unwrap();
    let got = store.seen(&uid("a")).unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got[0].0, vid("o9"));
    assert_eq!(got[1..], want[..]);
}

#[test]
fn rings_persist_in_fragments_next_to_older_one_entry_keys_and_stay_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let o = || StoreOptions {
        seen_per_user: 5,
        ..opts()
    };
    drop(Store::open(&path, o()).unwrap());
    // A version 3 ring: user a saw o0, o1, o2 (one key per entry, then the head).
    {
        let db = raw_sled(&path);
        let seen = db.open_tree("seen").unwrap();
        for i in 0..3u64 {
            let mut k = b"a\0".to_vec();
            k.extend_from_slice(&i.to_be_bytes());
            let mut v = (at(i as i64).as_millisecond()).to_le_bytes().to_vec();
            v.extend_from_slice(format!("o{i}").as_bytes());
            seen.insert(k, v).unwrap();
        }
        seen.insert("a", &3u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let mut h = b"steerfeed-store\0".to_vec();
    h.extend_from_slice(&3u32.to_be_bytes());
    h.extend_from_slice(&(DIM as u32).to_be_bytes());
    overwrite_header(&path, &h);

    let mut want: Vec<String> = (0..3).map(|i| format!("o{i}")).collect();
    let seen_of = |store: &Store| -> Vec<String> {
        store
            .seen(&uid("a"))
            .unwrap()
            .into_iter()
            .map(|(v, _)| v.to_string())
            .collect()
    };
    let newest = |want: &[String]| -> Vec<String> { want.iter().rev().take(5).cloned().collect() };
    {
        let store = Store::open(&path, o()).unwrap();
        seeded(&store);
        assert_eq!(seen_of(&store), newest(&want));
        for round in 0..5 {
            let vs: Vec<VideoId> = (0..round % 3 + 1)
                .map(|i| vid(&format!("s{round}-{i}")))
                .collect();
            store
                .record_served(&uid("a"), &vs, at(100 + round as i64))
                .unwrap();
            want.extend(vs.iter().map(|v| v.to_string()));
            assert_eq!(seen_of(&store), newest(&want), "round {round}, in memory");
            store.flush().unwrap();
            assert_eq!(seen_of(&store), newest(&want), "round {round}, in sled");
        }
    }
    let store = Store::open(&path, o()).unwrap();
    assert_eq!(seen_of(&store), newest(&want));
    drop(store);
    // Only the ring's newest entries are left in sled: the old keys are gone, and so is
    // every fragment wholly out of the ring.
    let db = raw_sled(&path);
    let seen = db.open_tree("seen").unwrap();
    let keys = seen.scan_prefix(b"a\0").count();
    assert!((1..=3).contains(&keys), "{keys} keys left under a");
    assert!(seen.get(b"a\0\0\0\0\0\0\0\0\0").unwrap().is_none());
}

fn changes(store: &Store, since: u64) -> Option<Vec<String>> {
    store
        .catalog_changes_since(since)
        .unwrap()
        .map(|ids| ids.iter().map(|v| v.as_str().to_owned()).collect())
}

fn strs(ids: &[&str]) -> Option<Vec<String>> {
    Some(ids.iter().map(|s| (*s).to_owned()).collect())
}

#[test]
fn the_catalog_log_names_every_changed_video_from_its_floor_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open(&path, opts()).unwrap();
    assert_eq!((store.catalog_version(), store.catalog_log_floor()), (0, 0));
    assert_eq!(changes(&store, 0), strs(&[]));
    assert_eq!(
        changes(&store, 1),
        None,
        "a version the store never reached"
    );

    seeded(&store); // version 1: va1, va2, va3, vb1
    assert_eq!(store.catalog_version(), 1);
    assert_eq!(changes(&store, 0), strs(&["va1", "va2", "va3", "vb1"]));
    assert_eq!(changes(&store, 1), strs(&[]));

    store.delete_video(&vid("va2")).unwrap(); // 2
    let mut moved = video("va1", "a", 0);
    moved.embedding = Some(emb(99));
    // A repeated id within a batch is one change.
    store
        .upsert_videos(&[video("vc1", "c", 5), moved.clone(), moved])
        .unwrap(); // 3
    assert_eq!(store.catalog_version(), 3);
    assert_eq!(changes(&store, 1), strs(&["va1", "va2", "vc1"]));
    assert_eq!(changes(&store, 2), strs(&["va1", "vc1"]));
    assert_eq!(changes(&store, 3), strs(&[]));

    // Writes that fail change neither the version nor the log.
    assert!(store.delete_video(&vid("nope")).is_err());
    let mut bad = video("vbad", "a", 1);
    bad.embedding = Some(Embedding::new("e", &[1.0, 0.0], 2).unwrap());
    assert!(store.upsert_videos(&[video("vok", "a", 1), bad]).is_err());
    assert_eq!(store.catalog_version(), 3);
    assert_eq!(changes(&store, 2), strs(&["va1", "vc1"]));

    // Trimming raises the floor; below it the log cannot tell.
    store.trim_catalog_log(2).unwrap();
    assert_eq!(store.catalog_log_floor(), 2);
    assert_eq!(changes(&store, 1), None);
    assert_eq!(changes(&store, 0), None);
    assert_eq!(changes(&store, 2), strs(&["va1", "vc1"]));
    store.trim_catalog_log(1).unwrap(); // never lowers it
    assert_eq!(store.catalog_log_floor(), 2);
    drop(store);

    // The floor and the log survive a reopen.
    let store = Store::open(&path, opts()).unwrap();
    assert_eq!((store.catalog_version(), store.catalog_log_floor()), (3, 2));
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
fn a_store_from_schema_6_starts_its_catalog_log_at_its_catalog_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path, opts()).unwrap();
        seeded(&store);
        store.delete_video(&vid("va3")).unwrap();
    }
    // What a version 6 build leaves: no log and no floor; and say it changed videos
    // after this build last opened the store (so the log, had it one, would be stale).
    {
        let db = raw_sled(&path);
        db.drop_tree("catalog_log").unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.remove("catalog_log_floor").unwrap();
        meta.insert("catalog_version", &5u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let mut h = b"steerfeed-store\0".to_vec();
    h.extend_from_slice(&6u32.to_be_bytes());
    h.extend_from_slice(&(DIM as u32).to_be_bytes());
    overwrite_header(&path, &h);

    let store = Store::open(&path, opts()).unwrap();
    assert_eq!((store.catalog_version(), store.catalog_log_floor()), (5, 5));
    assert_eq!(changes(&store, 4), None);
    assert_eq!(changes(&store, 5), strs(&[]));
    store.upsert_videos(&[video("vd1", "a", 9)]).unwrap();
    assert_eq!(changes(&store, 5), strs(&["vd1"]));
    drop(store);
    let db = raw_sled(&path);
    let header = db
        .open_tree("meta")
        .unwrap()
        .get("header")
        .unwrap()
        .unwrap();
    assert_eq!(header[16..20], 7u32.to_be_bytes());
}

#[test]
fn foreign_old_or_corrupt_stores_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    drop(Store::open(&path, opts()).unwrap());

    // Another dimension.
    let err = Store::open(&path, StoreOptions::with_dim(DIM + 1)).unwrap_err();
    assert!(
        matches!(err, Error::WrongDimension { expected: DIM, .. }),
        "{err}"
    );

    // Another schema version.
    let mut h = b"steerfeed-store\0".to_vec();
    h.extend_from_slice(&99u32.to_be_bytes());
    h.extend_from_slice(&(DIM as u32).to_be_bytes());
    overwrite_header(&path, &h);
    let err = Store::open(&path, opts()).unwrap_err();
    assert_eq!(err.field(), Some("store.schema_version"));
    assert!(err.to_string().contains("99"), "{err}");

    // A mangled header.
    overwrite_header(&path, b"hello");
    let err = Store::open(&path, opts()).unwrap_err();
    assert!(err.to_string().contains("not a steerfeed header"), "{err}");

    // Some other application's sled database.
    let other = dir.path().join("other");
    {
        let db = raw_sled(&other);
        db.open_tree("accounts").unwrap().insert("x", "y").unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(&other, opts()).unwrap_err();
    assert!(err.to_string().contains("not a steerfeed store"), "{err}");

    // Garbage files.
    let junk = dir.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("conf"), b"\x00\x01garbage garbage garbage").unwrap();
    std::fs::write(junk.join("db"), vec![0xAB; 4096]).unwrap();
    let res = Store::open(&junk, opts());
    assert!(res.is_err(), "garbage opened as a store");

    // The original, with a good header again, still opens.
    let mut h = b"steerfeed-store\0".to_vec();
    h.extend_from_slice(&steerfeed_store::SCHEMA_VERSION.to_be_bytes());
    h.extend_from_slice(&(DIM as u32).to_be_bytes());
    overwrite_header(&path, &h);
    Store::open(&path, opts()).unwrap();
}

#[test]
fn ingest_is_idempotent() {
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    let batch = vec![
        ev("k1", "b", 10, like("va1")),
        ev("k2", "c", 11, like("va1")),
        ev("k1", "b", 10, like("va1")), // repeated inside the batch
    ];
    let r = store.ingest_events(&batch).unwrap();
    assert_eq!(r.accepted, 2);
    assert_eq!(r.duplicates, vec![EventKey::new("k1").unwrap()]);
    let r = store.ingest_events(&batch).unwrap();
    assert_eq!(r.accepted, 0);
    assert_eq!(r.duplicates.len(), 3);
    let c = store.video_counts(&[&vid("va1")], at(11)).unwrap()[0];
    assert!((c.likes - 2.0).abs() < 1e-3, "{c:?}");
    assert_eq!(store.event_count(), 2);
    assert_eq!(store.recent_engagements(&uid("b"), 10).unwrap().len(), 1);
}

#[test]
fn bad_input_changes_nothing() {
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    // Wrong dimension in the second video: the first is not stored either.
    let mut bad = video("vbad", "a", 5);
    bad.embedding = Some(Embedding::new("embedding", &[1.0, 2.0], 2).unwrap());
    let err = store
        .upsert_videos(&[video("vok", "a", 5), bad])
        .unwrap_err();
    assert!(err.to_string().contains("video 1"), "{err}");
    assert!(err.to_string().contains("expected a vector of 8"), "{err}");
    assert!(store.video(&vid("vok")).unwrap().is_none());
    // No embedding.
    let mut none = video("vnone", "a", 5);
    none.embedding = None;
    assert!(store.upsert_videos(&[none]).is_err());
    assert_eq!(store.video_count(), 4);
    // NaN never becomes an embedding.
    assert!(Embedding::new("embedding", &[f32::NAN; DIM], DIM).is_err());

    // An unknown video at index 2 rejects the batch (not found); nothing is counted.
    let batch = vec![
        ev("k1", "b", 10, like("va1")),
        ev("k2", "b", 11, view("va2", 5_000)),
        ev("k3", "b", 12, like("missing")),
    ];
    let err = store.ingest_events(&batch).unwrap_err();
    assert_eq!(err.class(), steerfeed_core::ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    // So does an event of a user the store does not know.
    let stranger = vec![
        ev("k1", "b", 10, like("va1")),
        ev("k4", "nobody", 10, like("va1")),
    ];
    let err = store.ingest_events(&stranger).unwrap_err();
    assert_eq!(err.class(), steerfeed_core::ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains("nobody"), "{err}");
    assert_eq!(store.event_count(), 0);
    assert_eq!(
        store.video_counts(&[&vid("va1")], at(20)).unwrap()[0],
        Default::default()
    );
    assert_eq!(store.wellbeing(&uid("b"), at(20)).unwrap().items_today, 0);
    assert!(store.popular(at(20), 10).unwrap().is_empty());
    // The corrected batch goes in, keys unspent.
    let mut fixed = batch.clone();
    fixed[2] = ev("k3", "b", 12, like("vb1"));
    assert_eq!(store.ingest_events(&fixed).unwrap().accepted, 3);

    // An invalid event (watch time beyond a day).
    let err = store
        .ingest_events(&[ev("k9", "b", 13, view("va1", u64::MAX))])
        .unwrap_err();
    assert!(err.to_string().contains("event 0"), "{err}");
    assert_eq!(store.event_count(), 3);

    // Unknown users where they matter.
    assert!(matches!(
        store.follow(&uid("a"), &uid("ghost")),
        Err(Error::NotFound { .. })
    ));
    assert!(store.follow(&uid("a"), &uid("a")).is_err());
    assert!(
        store
            .set_consent(&uid("ghost"), ConsentScope::Everyone, &[])
            .is_err()
    );
    assert!(
        store
            .revoke_consent(&uid("ghost"), &Revocation::Video(vid("va1")))
            .is_err()
    );
    assert!(store.following(&uid("a")).unwrap().is_empty());
    // Oversized preference text, bad parental controls, unknown time zone.
    let huge = "x".repeat(100_000);
    assert!(matches!(
        store.set_preferences(&uid("a"), &huge, &Constraints::default()),
        Err(Error::TooLarge { .. })
    ));
    assert!(store.preferences(&uid("a")).unwrap().is_none());
    let pc = ParentalControls {
        scroll_cap: Some(0),
        ..ParentalControls::default()
    };
    assert!(store.set_parental_controls(&uid("c"), &pc).is_err());
    assert_eq!(
        store.parental_controls(&uid("c")).unwrap(),
        ParentalControls::default()
    );
    let mut u = User::new(uid("a"));
    u.time_zone = "Mars/Olympus".into();
    assert!(store.upsert_user(&u).is_err());
    assert_eq!(store.user(&uid("a")).unwrap().unwrap().time_zone, "UTC");
    // Deleting an unknown video.
    assert!(matches!(
        store.delete_video(&vid("missing")),
        Err(Error::NotFound { .. })
    ));
    // A video by an unknown creator, or featuring an unknown person.
    assert!(matches!(
        store.upsert_videos(&[video("vghost", "ghost", 5)]),
        Err(Error::NotFound { .. })
    ));
    let cameo = Video {
        cameos: vec![uid("b"), uid("ghost")],
        ..video("vcameo", "a", 5)
    };
    assert!(matches!(
        store.upsert_videos(&[video("vfine", "a", 5), cameo]),
        Err(Error::NotFound { .. })
    ));
    assert!(store.video(&vid("vfine")).unwrap().is_none());
    assert!(store.video(&vid("vghost")).unwrap().is_none());
}

/// Writes raw records into a closed store's trees, as an older build or a damaged disk
/// could have left them.
fn write_raw(path: &Path, records: &[(&str, &[u8], &[u8])]) {
    let db = raw_sled(path);
    for (tree, k, v) in records {
        db.open_tree(tree).unwrap().insert(k, v.to_vec()).unwrap();
    }
    db.flush().unwrap();
}

fn revoked(store: &Store, person: &str, creator: &str, video: &str) -> bool {
    store
        .cameo_consent(&uid(person), &uid(creator), &vid(video))
        .unwrap()
        .unwrap()
        .revoked
}

#[test]
fn unreadable_records_fail_closed_and_the_store_still_opens() {
    use steerfeed_store::DamageRule;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        seeded(&store);
        store
            .upsert_user(&User {
                id: uid("d"),
                age_band: AgeBand::Adult,
                time_zone: "UTC".into(),
            })
            .unwrap();
        for p in ["c", "d"] {
            store
                .set_consent(&uid(p), ConsentScope::Everyone, &[])
                .unwrap();
        }
        store.block(&uid("b"), &uid("c")).unwrap();
    }
    // What the old normaliser stored for a sub-normal input: NaN in every slot.
    let nan: Vec<u8> = (0..DIM).flat_map(|_| f32::NAN.to_le_bytes()).collect();
    write_raw(
        dir.path(),
        &[
            ("embeddings", b"va2", &nan),
            // A revocation of c's whose kind tag is unknown: what it revoked is unknown.
            ("revocations", b"c\0xjunk", b""),
            // A block of a's whose blocked person is not UTF-8.
            ("blocks", b"a\0\xff\xfe", b""),
            ("consent", b"d", b"{not json"),
            // A follow that cannot be read is dropped.
            ("follows", b"\xc3\x28\0b", b""),
        ],
    );
    let store = Store::open(dir.path(), opts()).unwrap();

    // The embedding: the video is withheld, not indexed, and the other videos serve.
    assert!(store.video(&vid("va2")).unwrap().unwrap().deleted);
    assert!(!store.video(&vid("va1")).unwrap().unwrap().deleted);
    let mut indexed = Vec::new();
    store
        .for_each_embedding(|id, _| {
            indexed.push(id.to_string());
            Ok(())
        })
        .unwrap();
    assert_eq!(indexed, ["va1", "va3", "vb1"]);
    let newest = store.newest(at(0), 10).unwrap();
    assert!(newest.iter().all(|v| v.id != vid("va2")), "{newest:?}");
    assert_eq!(newest.len(), 3);

    // The revocation: every video featuring c reads as revoked, whoever made it; d's
    // likeness (unreadable consent) is nobody's to use; a, with no damaged record, is fine.
    assert!(revoked(&store, "c", "a", "va1"));
    assert!(revoked(&store, "c", "b", "vb1"));
    let d = store
        .cameo_consent(&uid("d"), &uid("a"), &vid("va1"))
        .unwrap()
        .unwrap();
    assert_eq!(d.scope, ConsentScope::Nobody);
    assert!(!d.revoked);
    store
        .set_consent(&uid("a"), ConsentScope::Everyone, &[])
        .unwrap();
    assert!(!revoked(&store, "a", "b", "vb1"));

    // The block: a's feed is restricted; b's (readable block) and c's are not.
    assert!(
        store
            .load_viewer(&uid("a"), at(0))
            .unwrap()
            .relations_unreadable
    );
    let b = store.load_viewer(&uid("b"), at(0)).unwrap();
    assert!(!b.relations_unreadable);
    assert!(b.blocked.contains(&uid("c")));
    assert!(
        !store
            .load_viewer(&uid("c"), at(0))
            .unwrap()
            .relations_unreadable
    );

    let damage = store.damage();
    let mut rules: Vec<(&str, DamageRule)> =
        damage.records.iter().map(|r| (r.tree, r.rule)).collect();
    rules.sort_by_key(|r| r.0);
    assert_eq!(
        rules,
        [
            ("blocks", DamageRule::ViewerRestricted),
            ("consent", DamageRule::LikenessWithheld),
            ("embeddings", DamageRule::VideoWithheld),
            ("follows", DamageRule::Dropped),
            ("revocations", DamageRule::LikenessWithheld),
        ]
    );
    assert_eq!(damage.total, 5);

    // Re-upserting the video with a good embedding serves it again.
    store.upsert_videos(&[video("va2", "a", 100)]).unwrap();
    assert!(!store.video(&vid("va2")).unwrap().unwrap().deleted);
    drop(store);

    // Records whose owner cannot be read: nobody knows whom they protect, so they hold
    // for everyone.
    write_raw(
        dir.path(),
        &[
            ("revocations", b"\xc3\x28\0vva1", b""),
            ("mutes", b"\xc3\x28\0a", b""),
        ],
    );
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(revoked(&store, "a", "b", "vb1"));
    for u in ["a", "b", "c", "d"] {
        assert!(
            store
                .load_viewer(&uid(u), at(0))
                .unwrap()
                .relations_unreadable,
            "{u}"
        );
    }
    let rules: Vec<DamageRule> = store.damage().records.iter().map(|r| r.rule).collect();
    assert!(rules.contains(&DamageRule::AllCameosWithheld));
    assert!(rules.contains(&DamageRule::AllViewersRestricted));
}

#[test]
fn consent_facts_are_reported_as_stored() {
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    // c is a teen who chose "everyone": the store reports it, the ranking clamps it.
    store
        .set_consent(&uid("c"), ConsentScope::Everyone, &[uid("b")])
        .unwrap();
    let f = store
        .cameo_consent(&uid("c"), &uid("a"), &vid("va1"))
        .unwrap()
        .unwrap();
    assert_eq!(f.scope, ConsentScope::Everyone);
    assert_eq!(f.age_band, AgeBand::Teen);
    assert_eq!(f.parental_scope, None);
    assert!(!f.creator_approved && !f.mutual && !f.revoked);
    assert!(
        store
            .cameo_consent(&uid("c"), &uid("b"), &vid("vb1"))
            .unwrap()
            .unwrap()
            .creator_approved
    );

    store.follow(&uid("c"), &uid("a")).unwrap();
    assert!(
        !store
            .cameo_consent(&uid("c"), &uid("a"), &vid("va1"))
            .unwrap()
            .unwrap()
            .mutual
    );
    store.follow(&uid("a"), &uid("c")).unwrap();
    assert!(
        store
            .cameo_consent(&uid("c"), &uid("a"), &vid("va1"))
            .unwrap()
            .unwrap()
            .mutual
    );
    assert!(store.is_mutual(&uid("a"), &uid("c")).unwrap());

    store
        .set_parental_controls(
            &uid("c"),
            &ParentalControls {
                cameo_scope: Some(ConsentScope::Approved),
                ..ParentalControls::default()
            },
        )
        .unwrap();
    let f = store
        .cameo_consent(&uid("c"), &uid("a"), &vid("va1"))
        .unwrap()
        .unwrap();
    assert_eq!(f.parental_scope, Some(ConsentScope::Approved));
    // Facts are cached per person; a change of scope is seen by the very next read.
    store
        .set_consent(&uid("c"), ConsentScope::Nobody, &[])
        .unwrap();
    let f = store
        .cameo_consent(&uid("c"), &uid("b"), &vid("vb1"))
        .unwrap()
        .unwrap();
    assert_eq!(f.scope, ConsentScope::Nobody);
    assert!(!f.creator_approved);
    store
        .set_consent(&uid("c"), ConsentScope::Everyone, &[uid("b")])
        .unwrap();

    // Per video: only that video.
    store
        .revoke_consent(&uid("c"), &Revocation::Video(vid("va1")))
        .unwrap();
    assert!(
        store
            .cameo_consent(&uid("c"), &uid("a"), &vid("va1"))
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        !store
            .cameo_consent(&uid("c"), &uid("a"), &vid("va2"))
            .unwrap()
            .unwrap()
            .revoked
    );
    // Per creator: every video of that creator, including future ones.
    store
        .revoke_consent(&uid("c"), &Revocation::Creator(uid("b")))
        .unwrap();
    assert!(
        store
            .cameo_consent(&uid("c"), &uid("b"), &vid("vb1"))
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        store
            .cameo_consent(&uid("c"), &uid("b"), &vid("vb-future"))
            .unwrap()
            .unwrap()
            .revoked
    );
    assert!(
        !store
            .cameo_consent(&uid("c"), &uid("a"), &vid("va3"))
            .unwrap()
            .unwrap()
            .revoked
    );

    // A person who never set anything: nobody; an unknown person: no facts.
    assert_eq!(
        store
            .cameo_consent(&uid("a"), &uid("b"), &vid("vb1"))
            .unwrap()
            .unwrap()
            .scope,
        ConsentScope::Nobody
    );
    assert!(
        store
            .cameo_consent(&uid("ghost"), &uid("a"), &vid("va1"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn daily_counters_roll_over_at_local_midnight() {
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    // 2026-11-18 14:50 UTC is 23:50 in Tokyo (UTC+9, no DST).
    let base: Timestamp = "2026-11-18T14:50:00Z".parse().unwrap();
    let t = |mins: i64| base + jiff::SignedDuration::from_mins(mins);
    let view_at = |key: &str, user: &str, mins: i64, v: &str| Event {
        key: EventKey::new(key).unwrap(),
        user: uid(user),
        at: t(mins),
        kind: view(v, 5 * 60_000),
    };
    store
        .ingest_events(&[view_at("t1", "c", 0, "va1"), view_at("u1", "a", 0, "va1")])
        .unwrap();
    let w = store.wellbeing(&uid("c"), t(5)).unwrap();
    assert!((w.minutes_today - 5.0).abs() < 1e-4);
    assert_eq!(w.items_today, 1);
    // 00:01 in Tokyo: a new day for c; still the same day in UTC for a.
    let w = store.wellbeing(&uid("c"), t(11)).unwrap();
    assert_eq!((w.minutes_today, w.items_today), (0.0, 0));
    assert!((store.wellbeing(&uid("a"), t(11)).unwrap().minutes_today - 5.0).abs() < 1e-4);
    // The next view counts on the new day only.
    store
        .ingest_events(&[view_at("t2", "c", 15, "va2"), view_at("u2", "a", 15, "va2")])
        .unwrap();
    let w = store.wellbeing(&uid("c"), t(16)).unwrap();
    assert!((w.minutes_today - 5.0).abs() < 1e-4, "{w:?}");
    assert_eq!(w.items_today, 1);
    assert!((store.wellbeing(&uid("a"), t(16)).unwrap().minutes_today - 10.0).abs() < 1e-4);
    // A late event from yesterday does not count towards today.
    store
        .ingest_events(&[view_at("t3", "c", 5, "va3")])
        .unwrap();
    assert!((store.wellbeing(&uid("c"), t(16)).unwrap().minutes_today - 5.0).abs() < 1e-4);
    // The passive streak counts views across the day boundary.
    assert_eq!(store.wellbeing(&uid("c"), t(16)).unwrap().passive_streak, 3);
}

#[test]
fn counters_decay_by_half_after_one_half_life() {
    let store = Store::temporary(StoreOptions {
        counter_half_life_h: 10.0,
        ..opts()
    })
    .unwrap();
    seeded(&store);
    store
        .ingest_events(&[
            ev("k1", "b", 0, like("va1")),
            ev("k2", "c", 0, like("va1")),
            ev("k3", "b", 0, like("va2")),
        ])
        .unwrap();
    let hl = 10 * 3_600;
    let now = store.video_counts(&[&vid("va1")], at(0)).unwrap()[0];
    let later = store.video_counts(&[&vid("va1")], at(hl)).unwrap()[0];
    assert!((now.likes - 2.0).abs() < 1e-4);
    assert!((later.likes - 1.0).abs() < 1e-4, "{later:?}");
    let two = store.video_counts(&[&vid("va1")], at(2 * hl)).unwrap()[0];
    assert!((two.likes - 0.5).abs() < 1e-4);
    let cr = store.creator_counts(&uid("a"), at(hl)).unwrap();
    assert!((cr.likes - 1.5).abs() < 1e-4, "{cr:?}");
    let p0 = store.popular(at(0), 10).unwrap();
    let p1 = store.popular(at(hl), 10).unwrap();
    assert_eq!(p0[0].0, vid("va1"));
    assert!((p1[0].1 - p0[0].1 / 2.0).abs() < 1e-3);
    // An event one half-life later lands on the decayed value.
    store
        .ingest_events(&[ev("k4", "a", hl, like("va1"))])
        .unwrap();
    let c = store.video_counts(&[&vid("va1")], at(hl)).unwrap()[0];
    assert!((c.likes - 2.0).abs() < 1e-4, "{c:?}");
    // An out-of-order event is added already decayed.
    store
        .ingest_events(&[ev("k5", "a", 0, like("va2"))])
        .unwrap();
    let c = store.video_counts(&[&vid("va2")], at(hl)).unwrap()[0];
    assert!((c.likes - 1.0).abs() < 1e-4, "{c:?}");
}

#[test]
fn events_update_wellbeing_history_lists_and_relations() {
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    store
        .upsert_videos(&[Video {
            remix_of: Some(vid("va1")),
            ..video("vr", "c", 500)
        }])
        .unwrap();
    store
        .ingest_events(&[
            ev("1", "b", 600, EventKind::Impression { video: vid("va1") }),
            ev("2", "b", 601, view("va1", 120_000)),
            ev("3", "b", 602, view("va2", 6_000)),
            ev("4", "b", 603, EventKind::Skip { video: vid("va3") }),
            ev(
                "5",
                "b",
                604,
                EventKind::NotInterested { video: vid("va3") },
            ),
            ev(
                "6",
                "b",
                605,
                EventKind::CheckinAnswer {
                    answer: CheckinAnswer::NotGreat,
                },
            ),
            ev(
                "7",
                "c",
                606,
                EventKind::Remix {
                    video: vid("va1"),
                    new_video: Some(vid("vr")),
                },
            ),
            ev("8", "c", 607, EventKind::HideCreator { video: vid("vb1") }),
            ev("9", "c", 608, EventKind::Follow { video: vid("va2") }),
        ])
        .unwrap();
    let w = store.wellbeing(&uid("b"), at(610)).unwrap();
    assert_eq!(
        w.items_today, 2,
        "an impression and a view of va1 count one item"
    );
    assert!((w.minutes_today - 2.1).abs() < 1e-4, "{w:?}");
    assert_eq!(w.passive_streak, 2);
    assert_eq!(w.last_answer, Some((CheckinAnswer::NotGreat, at(605))));
    assert_eq!(w.last_checkin, Some(at(605)));
    assert_eq!(w.session_started, Some(at(600)));
    store
        .ingest_events(&[ev("10", "b", 611, like("va2"))])
        .unwrap();
    assert_eq!(
        store.wellbeing(&uid("b"), at(612)).unwrap().passive_streak,
        0
    );

    let seen: Vec<VideoId> = store
        .seen(&uid("b"))
        .unwrap()
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(seen, [vid("va3"), vid("va2"), vid("va1"), vid("va1")]);

    let c = store
        .video_counts(&[&vid("va1"), &vid("va3")], at(700))
        .unwrap();
    assert!((c[0].remixes - 1.0).abs() < 1e-2);
    assert!((c[1].negatives - 2.0).abs() < 1e-2);
    assert_eq!(store.remix_trending(at(700), 10).unwrap()[0].0, vid("va1"));
    assert_eq!(store.remix_trending(at(700), 10).unwrap().len(), 1);

    assert_eq!(store.muted(&uid("c")).unwrap(), vec![uid("b")]);
    assert!(store.follows(&uid("c"), &uid("a")).unwrap());
    assert_eq!(store.followers(&uid("a")).unwrap(), vec![uid("c")]);

    // Sessions: served pages count items; a long gap starts a new session.
    store
        .record_served(&uid("b"), &[vid("vb1"), vid("va3")], at(620))
        .unwrap();
    let w = store.wellbeing(&uid("b"), at(621)).unwrap();
    assert_eq!((w.session_started, w.session_items), (Some(at(600)), 2));
    let w = store.wellbeing(&uid("b"), at(620 + 31 * 60)).unwrap();
    assert_eq!((w.session_started, w.session_items), (None, 0));
    store
        .record_served(&uid("b"), &[vid("va2")], at(620 + 31 * 60))
        .unwrap();
    let w = store.wellbeing(&uid("b"), at(620 + 31 * 60)).unwrap();
    assert_eq!(
        (w.session_started, w.session_items),
        (Some(at(620 + 31 * 60)), 1)
    );
    let card = steerfeed_store::ServedPage {
        checkin: true,
        ..Default::default()
    };
    store.record_page(&uid("b"), &card, at(2_600)).unwrap();
    assert_eq!(
        store.wellbeing(&uid("b"), at(2_601)).unwrap().last_checkin,
        Some(at(2_600))
    );

    let viewer = store.load_viewer(&uid("c"), at(700)).unwrap();
    assert!(viewer.following.contains(&uid("a")));
    assert!(viewer.muted.contains(&uid("b")));
    assert!(viewer.own_videos.contains(&vid("vr")));
    let aff = viewer.creator_affinity[&uid("a")];
    assert!(aff > 0.5 && aff < 1.0, "{aff}");
    assert!(
        !viewer.creator_affinity.contains_key(&uid("c")),
        "no affinity with oneself"
    );
    let vb = store.load_viewer(&uid("b"), at(700)).unwrap();
    assert!(vb.seen.contains(&vid("va3")));
    assert!(vb.creator_affinity[&uid("a")] > 0.0);
    assert!(vb.blocked.is_empty());
    // Affinity decays.
    let later = store
        .load_viewer(&uid("c"), at(700 + 30 * 24 * 3_600))
        .unwrap();
    assert!(later.creator_affinity[&uid("a")] < aff);
}

#[test]
fn deletion_reaches_every_index_and_cache() {
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    store
        .ingest_events(&[
            ev("k", "b", 300, like("va3")),
            ev("r", "b", 301, EventKind::CameoUse { video: vid("va3") }),
        ])
        .unwrap();
    let cached = store.video(&vid("va3")).unwrap().unwrap();
    assert!(!cached.deleted);
    assert!(store.cached_videos() > 0);
    assert_eq!(store.popular(at(302), 10).unwrap()[0].0, vid("va3"));
    store.delete_video(&vid("va3")).unwrap();
    assert!(store.video(&vid("va3")).unwrap().unwrap().deleted);
    assert!(store.popular(at(302), 10).unwrap().is_empty());
    assert!(store.remix_trending(at(302), 10).unwrap().is_empty());
    assert_eq!(
        store.recent_by_creator(&uid("a"), at(0), 10).unwrap().len(),
        2
    );
    assert_eq!(store.video_count(), 3);
    assert_eq!(
        store.video_counts(&[&vid("va3")], at(302)).unwrap()[0],
        Default::default()
    );
    store.delete_video(&vid("va3")).unwrap();
    assert_eq!(store.video_count(), 3);
    // Events about a deleted video are logged but count nowhere.
    store
        .ingest_events(&[ev("k2", "c", 303, like("va3"))])
        .unwrap();
    assert!(store.popular(at(303), 10).unwrap().is_empty());
    // The index is rebuilt from live videos only.
    let mut live = Vec::new();
    store
        .for_each_embedding(|id, _| {
            live.push(id);
            Ok(())
        })
        .unwrap();
    assert_eq!(live.len(), 3);
    assert!(!live.contains(&vid("va3")));
}

#[test]
fn concurrent_writers_lose_nothing() {
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    std::thread::scope(|s| {
        for w in 0..4 {
            let store = store.clone();
            s.spawn(move || {
                for b in 0..25 {
                    let batch: Vec<Event> = (0..4)
                        .map(|i| ev(&format!("w{w}-{b}-{i}"), "b", b * 10 + i, like("va1")))
                        .collect();
                    assert_eq!(store.ingest_events(&batch).unwrap().accepted, 4);
                }
            });
        }
    });
    assert_eq!(store.event_count(), 400);
    let mut seqs = Vec::new();
    store
        .for_each_event(1, |seq, _| {
            seqs.push(seq);
            Ok(())
        })
        .unwrap();
    assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
    let c = store.video_counts(&[&vid("va1")], at(0)).unwrap()[0];
    assert!(c.likes > 0.0);
    assert_eq!(
        store.recent_engagements(&uid("b"), 1_000).unwrap().len(),
        200
    );
}

#[test]
fn a_seeded_world_loads_and_answers() {
    let mut config = steerfeed_world::WorldConfig::new(7, 60, 300);
    config.dim = DIM;
    config.events_per_user = 20;
    let world = steerfeed_world::World::generate(config);
    let store = Store::temporary(opts()).unwrap();
    for u in &world.users {
        store.upsert_user(&u.user).unwrap();
    }
    store.upsert_videos(&world.videos).unwrap();
    for (a, b) in &world.follows {
        store.follow(a, b).unwrap();
    }
    for g in &world.consents {
        store.set_consent(&g.person, g.scope, &[]).unwrap();
    }
    for r in &world.revocations {
        match r {
            steerfeed_world::Revocation::Video { person, video } => store
                .revoke_consent(person, &Revocation::Video(video.clone()))
                .unwrap(),
            steerfeed_world::Revocation::Creator { person, creator } => store
                .revoke_consent(person, &Revocation::Creator(creator.clone()))
                .unwrap(),
        }
    }
    for chunk in world.events.chunks(100) {
        store.ingest_events(chunk).unwrap();
    }
    assert_eq!(store.video_count(), world.videos.len() as u64);
    assert_eq!(store.event_count(), world.events.len() as u64);
    let now = world.config.now;
    assert!(!store.popular(now, 20).unwrap().is_empty());
    let ids: Vec<&VideoId> = world.videos.iter().map(|v| &v.id).collect();
    let counts = store.video_counts(&ids, now).unwrap();
    let total: f32 = counts.iter().map(|c| c.exposures()).sum();
    assert!(total > 0.0);
    for r in &world.revocations {
        if let steerfeed_world::Revocation::Video { person, video } = r {
            let v = store.video(video).unwrap().unwrap();
            let f = store
                .cameo_consent(person, &v.creator, video)
                .unwrap()
                .unwrap();
            assert!(f.revoked);
        }
    }
    for (a, b) in world.follows.iter().take(20) {
        assert!(store.follows(a, b).unwrap());
    }
}

// ---------------------------------------------------------------------------------------
// The log is the write-ahead log: derived state behind it is replayed exactly once.

/// Options that keep derived state in memory until asked (no background persist).
fn lazy_opts() -> StoreOptions {
    StoreOptions {
        derived_persist_ms: 3_600_000,
        derived_max_pending: usize::MAX,
        ..opts()
    }
}

/// Events touching every derived tree: counters, creators, wellbeing, interest,
/// affinity, seen, history, follows, mutes.
fn mixed_batch(tag: &str, base: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for (i, (u, v)) in [("b", "va1"), ("c", "va2"), ("b", "va3"), ("a", "vb1")]
        .iter()
        .enumerate()
    {
        let t = base + i as i64 * 7;
        out.push(ev(
            &format!("{tag}-i{i}"),
            u,
            t,
            EventKind::Impression { video: vid(v) },
        ));
        out.push(ev(&format!("{tag}-v{i}"), u, t + 1, view(v, 20_000)));
        out.push(ev(&format!("{tag}-l{i}"), u, t + 2, like(v)));
    }
    out.push(ev(
        &format!("{tag}-f"),
        "c",
        base + 40,
        EventKind::Follow { video: vid("vb1") },
    ));
    out.push(ev(
        &format!("{tag}-h"),
        "a",
        base + 41,
        EventKind::HideCreator { video: vid("vb1") },
    ));
    out.push(ev(
        &format!("{tag}-q"),
        "c",
        base + 42,
        EventKind::CheckinAnswer {
            answer: CheckinAnswer::Okay,
        },
    ));
    out
}

/// Everything the feed reads that events derive, as comparable values.
#[derive(Debug, PartialEq)]
struct Derived {
    counts: Vec<steerfeed_core::ports::ActionCounts>,
    creators: Vec<steerfeed_core::ports::ActionCounts>,
    wellbeing: Vec<steerfeed_core::WellbeingState>,
    interest: Vec<Option<Vec<f32>>>,
    seen: Vec<Vec<(VideoId, Timestamp)>>,
    history: Vec<Vec<(VideoId, Timestamp)>>,
    affinity: Vec<Vec<(UserId, f32)>>,
    following: Vec<Vec<UserId>>,
    muted: Vec<Vec<UserId>>,
    popular: Vec<(VideoId, f32)>,
    events: u64,
}

fn derived(store: &Store) -> Derived {
    let now = at(10_000);
    let users = [uid("a"), uid("b"), uid("c")];
    let vids = [vid("va1"), vid("va2"), vid("va3"), vid("vb1")];
    let vrefs: Vec<&VideoId> = vids.iter().collect();
    Derived {
        counts: store.video_counts(&vrefs, now).unwrap(),
        creators: users
            .iter()
            .map(|u| store.creator_counts(u, now).unwrap())
            .collect(),
        wellbeing: users
            .iter()
            .map(|u| store.wellbeing(u, now).unwrap())
            .collect(),
        interest: users
            .iter()
            .map(|u| store.interest(u).unwrap().map(|e| e.as_slice().to_vec()))
            .collect(),
        seen: users.iter().map(|u| store.seen(u).unwrap()).collect(),
        history: users
            .iter()
            .map(|u| {
                store
                    .recent_engagements(u, 1_000)
                    .unwrap()
                    .into_iter()
                    .map(|e| (e.video, e.at))
                    .collect()
            })
            .collect(),
        affinity: users
            .iter()
            .map(|u| {
                let mut a: Vec<_> = store
                    .creator_affinity(u, now)
                    .unwrap()
                    .into_iter()
                    .collect();
                a.sort_by(|x, y| x.0.cmp(&y.0));
                a
            })
            .collect(),
        following: users
            .iter()
            .map(|u| SocialGraph::following(store, u).unwrap())
            .collect(),
        muted: users.iter().map(|u| store.muted(u).unwrap()).collect(),
        popular: store.popular(now, 10).unwrap(),
        events: store.event_count(),
    }
}

/// The same writes on a store that never crashes.
fn reference(batches: &[Vec<Event>]) -> Derived {
    reference_with(opts(), batches)
}

fn reference_with(o: StoreOptions, batches: &[Vec<Event>]) -> Derived {
    let store = Store::temporary(o).unwrap();
    seeded(&store);
    for b in batches {
        store.ingest_events(b).unwrap();
    }
    derived(&store)
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
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
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
        assert!(acked > 0, "round {round}: the child acknowledged nothing");
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
        assert_eq!(seen as u32, views.min(2_000), "round {round}: seen");
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

#[test]
fn cached_counters_never_shadow_newer_ones() {
    use steerfeed_core::ports::ActionStats;
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    let now = at(1_000);
    let likes = |s: &Store| {
        (
            s.video_counts(&[&vid("va1")], now).unwrap()[0].likes,
            s.creator_counts(&uid("a"), now).unwrap().likes,
        )
    };
    // Fill the caches with "nothing yet".
    assert_eq!(likes(&store), (0.0, 0.0));
    for round in 0..4 {
        store
            .ingest_events(&[ev(&format!("k{round}"), "b", 1_000, like("va1"))])
            .unwrap();
        let n = (round + 1) as f32;
        let (v, c) = likes(&store);
        assert!(
            (v - n).abs() < 1e-3 && (c - n).abs() < 1e-3,
            "round {round}: {v}, {c}"
        );
        // Written out and aged out of the overlay (newer layers about another video
        // replace it): reads come from sled or the cache.
        for j in 0..2 {
            store.flush().unwrap();
            store
                .ingest_events(&[ev(&format!("o{round}_{j}"), "a", 1_000, like("vb1"))])
                .unwrap();
        }
        store.flush().unwrap();
        let (v, c) = likes(&store);
        assert!(
            (v - n).abs() < 1e-3 && (c - n).abs() < 1e-3,
            "round {round} after flushes: {v}, {c}"
        );
    }
    // A deleted video has no counters, cached or not.
    store.delete_video(&vid("va1")).unwrap();
    assert_eq!(likes(&store).0, 0.0);
}

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
    // A seeded run of every write that changes a mirrored tree. At checkpoints the live
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
fn cached_users_preferences_and_parental_controls_follow_every_write() {
    let store = Store::temporary(opts()).unwrap();
    seeded(&store);
    let a = uid("a");
    // Read (and so cache) each record, change it, read again: the change shows.
    assert_eq!(store.user(&a).unwrap().unwrap().time_zone, "UTC");
    store
        .upsert_user(&User {
            id: a.clone(),
            age_band: AgeBand::Teen,
            time_zone: "Europe/Paris".into(),
        })
        .unwrap();
    let u = store.user(&a).unwrap().unwrap();
    assert_eq!(
        (u.time_zone.as_str(), u.age_band),
        ("Europe/Paris", AgeBand::Teen)
    );
    assert!(store.user(&uid("nobody")).unwrap().is_none());

    assert!(store.preferences(&a).unwrap().is_none());
    store
        .set_preferences(&a, "more pets", &Constraints::default())
        .unwrap();
    assert_eq!(store.preferences(&a).unwrap().unwrap().text, "more pets");
    store
        .set_preferences(&a, "less news", &Constraints::default())
        .unwrap();
    assert_eq!(store.preferences(&a).unwrap().unwrap().text, "less news");
    store.clear_preferences(&a).unwrap();
    assert!(store.preferences(&a).unwrap().is_none());

    assert_eq!(store.parental_controls(&a).unwrap().scroll_cap, None);
    store
        .set_parental_controls(
            &a,
            &ParentalControls {
                scroll_cap: Some(15),
                ..ParentalControls::default()
            },
        )
        .unwrap();
    assert_eq!(store.parental_controls(&a).unwrap().scroll_cap, Some(15));
    store
        .set_parental_controls(&a, &ParentalControls::default())
        .unwrap();
    assert_eq!(store.parental_controls(&a).unwrap().scroll_cap, None);
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

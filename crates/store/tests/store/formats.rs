//! Formats: schema headers, versions and upgrades, foreign and corrupt stores, and the
//! record formats older schemas left (version 3 event logs and rings, version 4 JSON
//! wellbeing, overlapping ring fragments, a schema 6 store without a catalogue log).

use steerfeed_core::ports::ActionStats;
use steerfeed_core::{CheckinAnswer, Error, Event, EventKind, VideoId};
use steerfeed_store::{Store, StoreOptions};

use crate::support::{
    DIM, at, changes, ev, like, opts, overwrite_header, raw_sled, seeded, strs, uid, vid, video,
};

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
    assert_eq!(
        header[16..20],
        steerfeed_store::SCHEMA_VERSION.to_be_bytes()
    );
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

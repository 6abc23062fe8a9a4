//! Options: the configured bounds and half-life are the ones applied (the contract
//! checks the defaults).

use steerfeed_core::ports::{ActionStats, EngagementStats, UserHistory};
use steerfeed_core::{Event, VideoId};
use steerfeed_store::{Store, StoreOptions};

use crate::support::{at, ev, like, opts, seeded, uid, vid};

#[test]
fn configured_ring_bounds_keep_the_newest() {
    let store = Store::temporary(StoreOptions {
        seen_per_user: 5,
        history_per_user: 3,
        ..opts()
    })
    .unwrap();
    seeded(&store);
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

#[test]
fn the_configured_counter_half_life_is_the_one_applied() {
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

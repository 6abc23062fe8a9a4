//! Contract tests every [`Storage`] must pass (the sled [`Store`](crate::Store) and any
//! other backend). Each public function is one contract: it takes a factory that returns a
//! fresh, empty store and checks one behaviour through the [`Storage`] trait and core's
//! ports only. [`storage_contract_tests!`](crate::storage_contract_tests) turns them into
//! one `#[test]` each:
//!
//! ```
//! // In another backend's tests, with `steerfeed-store` (feature `contract`) as a
//! // dev-dependency: one line, one `#[test]` per contract.
//! steerfeed_store::storage_contract_tests!(|| std::sync::Arc::new(
//!     steerfeed_store::Store::temporary(steerfeed_store::StoreOptions::with_dim(
//!         steerfeed_store::contract::DIM,
//!     ))
//!     .unwrap()
//! ));
//! # fn main() {}
//! ```
//!
//! What the factory must give: an empty store of embedding dimension [`DIM`], with the
//! documented defaults of the store options that shape what it answers (rings of
//! [`SEEN_PER_USER`] and [`HISTORY_PER_USER`] entries, counters halving every
//! [`COUNTER_HALF_LIFE_H`] hours, sessions ending after [`SESSION_GAP_MIN`] idle minutes,
//! creator affinity reaching one half at a decayed weight of [`AFFINITY_SCALE`], and
//! core's `engagement_weight` as the weight of each event kind). Expected values are
//! computed here from those numbers, never read from the store.
//!
//! What the contracts check:
//!
//! 1. a fresh store is empty: no videos, events, catalogue changes or damage, and it
//!    reports itself warm;
//! 2. every entity round-trips: videos with embeddings, users, follows, blocks and mutes
//!    (through `set_relation`, [`SocialGraph`] and the loaded viewer), consent and
//!    revocations (through [`ConsentLedger`]), parental controls, preferences and the
//!    constraints in force, interest, the event log and the embeddings, in id order;
//! 3. the creator, global, cameo and topic indexes are newest first, `since` inclusive,
//!    bounded by `limit`, and a creator whose id prefixes another's sees only their own;
//! 4. seen history and engagement history are bounded rings that keep the newest entries,
//!    read newest first (a page longer than the ring keeps its last items);
//! 5. ingest is idempotent: a retried batch and a key repeated within a batch are counted
//!    once and reported as duplicates, and the log positions say which events went in;
//! 6. a bad video batch changes nothing: wrong dimension, no embedding, unknown creator
//!    or cameo person; deleting an unknown video is `NotFound`;
//! 7. a bad event batch changes nothing: an unknown video or user is `NotFound`, an
//!    invalid event names its index, and the rejected keys stay unspent;
//! 8. bad writes about people change nothing: unknown users, a relation with oneself,
//!    oversized preference text, bad parental controls, an unknown time zone;
//! 9. consent facts are reported as stored: scope (no teen clamp), age band, parental
//!    scope, approvals, mutual follows, per-video and per-creator revocations (future
//!    videos included), and a change is seen by the next read;
//! 10. daily wellbeing counters roll over at local midnight in the user's time zone, and
//!     a late event from yesterday does not count towards today;
//! 11. counters, creator sums and popular scores halve after one half-life; an event is
//!     added at its own time (an older one already decayed);
//! 12. events update wellbeing, seen (every event on a video) and engagement history, counters, remix trending,
//!     the viewer (hide creator mutes, a follow event follows, creator affinity, own
//!     videos) and affinity decays;
//! 13. `record_page` counts items in the session (a long gap starts a new one) and notes
//!     the check-in and break cards;
//! 14. deletion reaches every read: the video reads as deleted, and it leaves the time
//!     indexes, the counts, the popular and remix lists, the counters and the embeddings;
//!     deleting twice is fine; later events about it count nowhere;
//! 15. concurrent writers lose nothing: every event logged once, sequence numbers 1..=n;
//! 16. concurrent batches with overlapping keys count each distinct event once;
//! 17. the catalogue log names every video changed after a version (a repeated id once),
//!     failed writes leave it alone, it answers `None` before its floor and past the
//!     current version, and trimming raises the floor (never lowers it, stops at the
//!     current version);
//! 18. counters read before a write never hide it, across flushes, and a deleted video
//!     has none;
//! 19. users, preferences and parental controls read before a write never hide it;
//! 20. a deletion, a block or a revocation is in force for a read that starts on another
//!     thread after the call returned, even when that thread read the old state before;
//! 21. a seeded synthetic world loads and answers (popular, counts, revocations, follows);
//! 22. an export lists what is stored about a person, and an erasure forgets it: the
//!     account, relations both ways, consent, preferences, rings, interest, their events
//!     (others keep theirs, with their numbers) and those events' keys; videos featuring
//!     them and (when asked) their own are deleted and leave every index; a second
//!     erasure answers `already_erased`, an unknown id `NotFound`;
//! 23. the bulk export lists every record in import order;
//! 24. relations set together apply in order or not at all;
//! 25. the impression log gives back every logged page as recorded, in order, from a
//!     time on; a page with no impressions logs nothing; entries older than the
//!     retention ([`IMPRESSION_RETENTION_H`]) before the newest page are gone by the
//!     next read; a person's export lists their pages and no one else's; an erasure
//!     removes the person's pages and keeps the others'.
//! 26. item reservations grant what the cap leaves of the larger of the day's reserved
//!     items and the reported floor, at most what is wanted; a release gives back once
//!     and never more than was granted; days and people count apart; concurrent
//!     reservations grant the cap exactly, never more; an erasure forgets the person's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step is a failed test

use std::sync::Arc;

// Core's ports are supertraits of `Storage`: their methods are callable on
// `dyn Storage` without importing them.
use steerfeed_core::ports::{ActionCounts, CameoConsent};
use steerfeed_core::storage::{
    IngestReport, ItemAsk, Logged, Relation, Revocation, ServedPage, Storage,
};
use steerfeed_core::{
    AgeBand, Audience, CheckinAnswer, ConsentScope, Constraints, Embedding, ErrorClass, Event,
    EventKey, EventKind, HeadInputs, ImpressionItem, ImpressionPage, LoggedPage, OwnVideos,
    ParentalControls, Record, RecordKind, SafetyLabel, ScoreBreakdown, Timestamp, TopicId, User,
    UserId, Video, VideoId, Viewer, WellbeingState,
};

/// The embedding dimension of the stores the factory gives.
pub const DIM: usize = 8;
/// Seen entries a store keeps per user (the documented default of `seen_per_user`).
pub const SEEN_PER_USER: usize = 2_000;
/// Engagements a store keeps per user (the documented default of `history_per_user`).
pub const HISTORY_PER_USER: usize = 200;
/// Half-life of action counters and popular scores, in hours (the documented default of
/// `counter_half_life_h`).
pub const COUNTER_HALF_LIFE_H: i64 = 24;
/// Idle minutes after which a session has ended (the documented default of
/// `session_gap_min`).
pub const SESSION_GAP_MIN: i64 = 30;
/// Decayed interaction weight at which creator affinity reaches one half (the documented
/// default of `affinity_scale`).
pub const AFFINITY_SCALE: f32 = 4.0;

/// How long the impression log keeps a page, in hours (the documented default of
/// `impression_retention_h`), before the newest page the log holds.
pub const IMPRESSION_RETENTION_H: i64 = 720;

/// A factory of fresh, empty stores of dimension [`DIM`] with the default options.
pub type Factory<'a> = &'a dyn Fn() -> Arc<dyn Storage>;

/// One contract.
pub type Contract = fn(Factory<'_>);

/// Every contract, by name, in the order of the module's list.
pub const ALL: &[(&str, Contract)] = &[
    ("a_fresh_store_is_empty", a_fresh_store_is_empty),
    ("every_entity_round_trips", every_entity_round_trips),
    (
        "time_indexes_are_newest_first",
        time_indexes_are_newest_first,
    ),
    (
        "rings_are_bounded_and_keep_the_newest",
        rings_are_bounded_and_keep_the_newest,
    ),
    ("ingest_is_idempotent", ingest_is_idempotent),
    ("bad_videos_change_nothing", bad_videos_change_nothing),
    ("bad_events_change_nothing", bad_events_change_nothing),
    (
        "bad_writes_about_people_change_nothing",
        bad_writes_about_people_change_nothing,
    ),
    (
        "consent_facts_are_reported_as_stored",
        consent_facts_are_reported_as_stored,
    ),
    (
        "daily_counters_roll_over_at_local_midnight",
        daily_counters_roll_over_at_local_midnight,
    ),
    (
        "counters_decay_by_half_after_one_half_life",
        counters_decay_by_half_after_one_half_life,
    ),
    (
        "events_update_wellbeing_history_counters_and_relations",
        events_update_wellbeing_history_counters_and_relations,
    ),
    (
        "record_page_counts_items_and_notes_cards",
        record_page_counts_items_and_notes_cards,
    ),
    ("deletion_reaches_every_read", deletion_reaches_every_read),
    (
        "concurrent_writers_lose_nothing",
        concurrent_writers_lose_nothing,
    ),
    (
        "concurrent_overlapping_batches_count_each_event_once",
        concurrent_overlapping_batches_count_each_event_once,
    ),
    (
        "the_catalog_log_names_every_changed_video",
        the_catalog_log_names_every_changed_video,
    ),
    (
        "counters_read_before_a_write_never_hide_it",
        counters_read_before_a_write_never_hide_it,
    ),
    (
        "people_read_before_a_write_never_hide_it",
        people_read_before_a_write_never_hide_it,
    ),
    (
        "writes_are_in_force_for_the_next_read",
        writes_are_in_force_for_the_next_read,
    ),
    (
        "a_seeded_world_loads_and_answers",
        a_seeded_world_loads_and_answers,
    ),
    (
        "erasure_forgets_the_person_everywhere",
        erasure_forgets_the_person_everywhere,
    ),
    (
        "the_bulk_export_lists_every_record_in_import_order",
        the_bulk_export_lists_every_record_in_import_order,
    ),
    (
        "relations_set_together_apply_in_order_or_not_at_all",
        relations_set_together_apply_in_order_or_not_at_all,
    ),
    (
        "the_impression_log_keeps_pages_for_the_retention",
        the_impression_log_keeps_pages_for_the_retention,
    ),
    (
        "item_reservations_never_grant_more_than_the_cap",
        item_reservations_never_grant_more_than_the_cap,
    ),
];

/// Expands to one `#[test]` per contract of [`contract`](crate::contract), each calling
/// it with stores from `$factory` (an expression callable with no argument, returning an
/// `Arc` of a type implementing [`Storage`](crate::Storage), or `Arc<dyn Storage>`; it is
/// evaluated anew for each store), plus one test that the list is complete.
#[macro_export]
macro_rules! storage_contract_tests {
    (@tests $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::contract::$name(&__storage_contract_factory);
            }
        )*

        #[test]
        fn storage_contract_tests_cover_every_contract() {
            let expanded: &[&str] = &[$(stringify!($name)),*];
            let all: ::std::vec::Vec<&str> =
                $crate::contract::ALL.iter().map(|(name, _)| *name).collect();
            assert_eq!(expanded, all.as_slice());
        }
    };
    ($factory:expr) => {
        fn __storage_contract_factory() -> ::std::sync::Arc<dyn $crate::Storage> {
            ($factory)()
        }

        $crate::storage_contract_tests!(@tests
            a_fresh_store_is_empty,
            every_entity_round_trips,
            time_indexes_are_newest_first,
            rings_are_bounded_and_keep_the_newest,
            ingest_is_idempotent,
            bad_videos_change_nothing,
            bad_events_change_nothing,
            bad_writes_about_people_change_nothing,
            consent_facts_are_reported_as_stored,
            daily_counters_roll_over_at_local_midnight,
            counters_decay_by_half_after_one_half_life,
            events_update_wellbeing_history_counters_and_relations,
            record_page_counts_items_and_notes_cards,
            deletion_reaches_every_read,
            concurrent_writers_lose_nothing,
            concurrent_overlapping_batches_count_each_event_once,
            the_catalog_log_names_every_changed_video,
            counters_read_before_a_write_never_hide_it,
            people_read_before_a_write_never_hide_it,
            writes_are_in_force_for_the_next_read,
            a_seeded_world_loads_and_answers,
            erasure_forgets_the_person_everywhere,
            the_bulk_export_lists_every_record_in_import_order,
            relations_set_together_apply_in_order_or_not_at_all,
            the_impression_log_keeps_pages_for_the_retention,
            item_reservations_never_grant_more_than_the_cap,
        );
    };
}

// ---------------------------------------------------------------------------------------
// Helpers: the oracles live here, not in the store.

/// A fixed instant every test time is relative to (November 2026).
const T0: i64 = 1_795_000_000;

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn vid(s: &str) -> VideoId {
    VideoId::new(s).unwrap()
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

fn raw(seed: usize) -> Vec<f32> {
    (0..DIM)
        .map(|i| ((seed * 31 + i * 7) % 13) as f32 - 6.0 + 0.5)
        .collect()
}

fn emb(seed: usize) -> Embedding {
    Embedding::new("embedding", &raw(seed), DIM).unwrap()
}

fn seed_of(id: &str) -> usize {
    id.len() + id.bytes().map(usize::from).sum::<usize>()
}

/// `raw(seed)` scaled to unit length, computed here.
fn unit(seed: usize) -> Vec<f32> {
    let v = raw(seed);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn video(id: &str, creator: &str, secs: i64) -> Video {
    Video {
        caption: format!("caption of {id}"),
        embedding: Some(emb(seed_of(id))),
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

fn person(id: &str, tz: &str, age_band: AgeBand) -> User {
    User {
        id: uid(id),
        age_band,
        time_zone: tz.into(),
    }
}

/// Users a (UTC), b (Paris) and c (a teen in Tokyo); videos va1 (t 0), va2 (100), va3
/// (200) by a and vb1 (50) by b.
fn seeded(s: &dyn Storage) {
    for u in [
        person("a", "UTC", AgeBand::Adult),
        person("b", "Europe/Paris", AgeBand::Adult),
        person("c", "Asia/Tokyo", AgeBand::Teen),
    ] {
        s.upsert_user(&u).unwrap();
    }
    s.upsert_videos(&[
        video("va1", "a", 0),
        video("va2", "a", 100),
        video("va3", "a", 200),
        video("vb1", "b", 50),
    ])
    .unwrap();
}

fn ingest(s: &dyn Storage, events: &[Event]) -> IngestReport {
    s.ingest_events(events).unwrap().0
}

fn ids(vs: Vec<Arc<Video>>) -> Vec<String> {
    vs.iter().map(|v| v.id.to_string()).collect()
}

fn names<'a>(xs: impl IntoIterator<Item = &'a UserId>) -> Vec<String> {
    let mut out: Vec<String> = xs.into_iter().map(ToString::to_string).collect();
    out.sort();
    out
}

fn sorted(mut xs: Vec<String>) -> Vec<String> {
    xs.sort();
    xs
}

fn strs(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| (*s).to_owned()).collect()
}

fn viewer(s: &dyn Storage, user: &str, now: Timestamp) -> Viewer {
    s.load_viewer(&uid(user), now).unwrap()
}

fn facts(s: &dyn Storage, person: &str, creator: &str, video: &str) -> CameoConsent {
    s.cameo_consent(&uid(person), &uid(creator), &vid(video))
        .unwrap()
        .unwrap_or_else(|| panic!("no consent facts for {person}"))
}

fn counts(s: &dyn Storage, v: &str, now: Timestamp) -> ActionCounts {
    s.video_counts(&[&vid(v)], now).unwrap()[0]
}

fn seen_ids(s: &dyn Storage, user: &str) -> Vec<String> {
    s.seen(&uid(user))
        .unwrap()
        .into_iter()
        .map(|(v, _)| v.to_string())
        .collect()
}

fn history(s: &dyn Storage, user: &str, limit: usize) -> Vec<(String, Timestamp)> {
    s.recent_engagements(&uid(user), limit)
        .unwrap()
        .into_iter()
        .map(|e| (e.video.to_string(), e.at))
        .collect()
}

fn wellbeing(s: &dyn Storage, user: &str, now: Timestamp) -> WellbeingState {
    s.wellbeing(&uid(user), now).unwrap()
}

fn embedded(s: &dyn Storage) -> Vec<String> {
    let mut out = Vec::new();
    s.for_each_embedding(&mut |id, e, topics| {
        assert_eq!(e.dim(), DIM, "embedding of {id}");
        let stored = s.video(&id).unwrap().expect("an embedded video is stored");
        assert_eq!(topics, stored.topics, "topics of {id}");
        out.push(id.to_string());
        Ok(())
    })
    .unwrap();
    out
}

fn logged(s: &dyn Storage, from: u64) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    s.for_each_event(from, &mut |seq, e| {
        out.push((seq, e));
        Ok(())
    })
    .unwrap();
    out
}

fn changes(s: &dyn Storage, since: u64) -> Option<Vec<String>> {
    s.catalog_changes_since(since)
        .unwrap()
        .map(|ids| sorted(ids.iter().map(|v| v.as_str().to_owned()).collect()))
}

fn close(got: f32, want: f32, tol: f32, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, expected {want}"
    );
}

fn same_vector(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: dimension");
    for (i, (x, y)) in got.iter().zip(want).enumerate() {
        assert!((x - y).abs() < 1e-5, "{what}[{i}]: {x} vs {y}");
    }
}

// ---------------------------------------------------------------------------------------
// The contracts.

/// 1. A fresh store is empty and healthy.
pub fn a_fresh_store_is_empty(new_store: Factory<'_>) {
    let s = new_store();
    assert_eq!(s.video_count(), 0);
    assert_eq!(s.user_count().unwrap(), 0);
    assert_eq!(s.event_count(), 0);
    assert_eq!(s.catalog_version(), 0);
    assert_eq!(changes(&*s, 0), Some(vec![]));
    assert!(s.newest(at(-1_000_000), 10).unwrap().is_empty());
    assert!(s.popular(at(0), 10).unwrap().is_empty());
    assert!(s.remix_trending(at(0), 10).unwrap().is_empty());
    assert!(embedded(&*s).is_empty());
    assert!(logged(&*s, 1).is_empty());
    assert!(s.user(&uid("a")).unwrap().is_none());
    assert!(s.video(&vid("va1")).unwrap().is_none());
    assert!(s.damage().is_empty());
    s.flush().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !s.is_warm() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(s.is_warm(), "an empty store never became warm");
}

/// 2. Every entity round-trips.
pub fn every_entity_round_trips(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let full = Video {
        caption: "a cat bakes bread".into(),
        topics: vec![TopicId::new("pets").unwrap()],
        remix_of: Some(vid("va1")),
        cameos: vec![uid("b"), uid("c")],
        safety: vec![SafetyLabel::Sensitive],
        audience: Audience::Followers,
        ..video("vx", "b", 300)
    };
    s.upsert_videos(std::slice::from_ref(&full)).unwrap();
    let got = s.video(&vid("vx")).unwrap().unwrap();
    same_vector(
        got.embedding.as_ref().unwrap().as_slice(),
        &unit(seed_of("vx")),
        "stored embedding",
    );
    let (mut a, mut b) = ((*got).clone(), full.clone());
    a.embedding = None;
    b.embedding = None;
    assert_eq!(a, b);
    assert!(s.video(&vid("nope")).unwrap().is_none());
    assert_eq!(s.video_count(), 5);
    assert_eq!(s.intern_video(&vid("vx")), vid("vx"));

    let c = s.user(&uid("c")).unwrap().unwrap();
    assert_eq!(
        (c.age_band, c.time_zone.as_str()),
        (AgeBand::Teen, "Asia/Tokyo")
    );
    assert!(s.user(&uid("nobody")).unwrap().is_none());

    // Follows, through the social graph port.
    s.set_relation(&uid("a"), &uid("b"), Relation::Follow, true)
        .unwrap();
    s.set_relation(&uid("c"), &uid("b"), Relation::Follow, true)
        .unwrap();
    assert_eq!(names(&s.following(&uid("a")).unwrap()), ["b"]);
    let followers_of = |s: &dyn Storage, who: &str| -> Vec<String> {
        ["a", "b", "c"]
            .into_iter()
            .filter(|u| s.follows(&uid(u), &uid(who)).unwrap())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(followers_of(&*s, "b"), ["a", "c"]);
    assert!(s.follows(&uid("a"), &uid("b")).unwrap());
    assert!(!s.follows(&uid("b"), &uid("a")).unwrap());
    assert!(!s.is_mutual(&uid("a"), &uid("b")).unwrap());
    s.set_relation(&uid("c"), &uid("b"), Relation::Follow, false)
        .unwrap();
    assert_eq!(followers_of(&*s, "b"), ["a"]);
    assert!(s.following(&uid("c")).unwrap().is_empty());

    // Blocks and mutes, through the viewer a request loads.
    s.set_relation(&uid("a"), &uid("c"), Relation::Block, true)
        .unwrap();
    s.set_relation(&uid("a"), &uid("b"), Relation::Mute, true)
        .unwrap();
    let v = viewer(&*s, "a", at(0));
    assert_eq!(names(&v.blocked), ["c"]);
    assert_eq!(names(&v.muted), ["b"]);
    assert_eq!(names(&v.following), ["b"]);
    assert!(!v.relations_unreadable);
    s.set_relation(&uid("a"), &uid("c"), Relation::Block, false)
        .unwrap();
    s.set_relation(&uid("a"), &uid("b"), Relation::Mute, false)
        .unwrap();
    let v = viewer(&*s, "a", at(0));
    assert!(v.blocked.is_empty());
    assert!(v.muted.is_empty());

    // Consent, through the consent ledger: the scope and the approved list (replaced).
    s.set_consent(&uid("b"), ConsentScope::Approved, &[uid("a"), uid("c")])
        .unwrap();
    let f = facts(&*s, "b", "a", "va1");
    assert_eq!(f.scope, ConsentScope::Approved);
    assert!(f.creator_approved);
    assert!(facts(&*s, "b", "c", "vx").creator_approved);
    // Approving someone not stored is refused and changes nothing.
    let err = s
        .set_consent(
            &uid("b"),
            ConsentScope::Everyone,
            &[uid("a"), uid("nobody")],
        )
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    let f = facts(&*s, "b", "a", "va1");
    assert_eq!(f.scope, ConsentScope::Approved);
    assert!(f.creator_approved);
    s.set_consent(&uid("b"), ConsentScope::Mutuals, &[uid("c")])
        .unwrap();
    let f = facts(&*s, "b", "a", "va1");
    assert_eq!(f.scope, ConsentScope::Mutuals);
    assert!(!f.creator_approved, "the approved list is replaced");
    assert!(facts(&*s, "b", "c", "vx").creator_approved);
    s.revoke_consent(&uid("b"), &Revocation::Video(vid("vx")))
        .unwrap();
    assert!(facts(&*s, "b", "b", "vx").revoked);
    assert!(!facts(&*s, "b", "a", "va1").revoked);

    let pc = ParentalControls {
        personalization: false,
        scroll_cap: Some(50),
        daily_limit_minutes: Some(30),
        cameo_scope: Some(ConsentScope::Nobody),
    };
    assert_eq!(
        s.parental_controls(&uid("c")).unwrap(),
        ParentalControls::default()
    );
    s.set_parental_controls(&uid("c"), &pc).unwrap();
    assert_eq!(s.parental_controls(&uid("c")).unwrap(), pc);

    let cons = Constraints {
        max_duration_s: Some(15),
        expires_at: Some(at(1_000)),
        ..Constraints::default()
    };
    s.set_preferences(&uid("a"), "short ones please", &cons)
        .unwrap();
    let p = s.preferences(&uid("a")).unwrap().unwrap();
    assert_eq!(
        (p.text.as_str(), &p.constraints),
        ("short ones please", &cons)
    );
    assert_eq!(s.active_constraints(&uid("a"), at(999)).unwrap(), cons);
    assert!(
        s.active_constraints(&uid("a"), at(1_000))
            .unwrap()
            .is_empty(),
        "expired constraints are not in force"
    );
    assert!(
        s.preferences(&uid("a")).unwrap().is_some(),
        "expired preferences are still stored"
    );
    s.clear_preferences(&uid("a")).unwrap();
    assert!(s.preferences(&uid("a")).unwrap().is_none());

    // Interest: after one like, the liked video's direction.
    assert!(s.interest(&uid("a")).unwrap().is_none());
    ingest(&*s, &[ev("k1", "a", 400, like("vb1"))]);
    let interest = s.interest(&uid("a")).unwrap().unwrap();
    same_vector(interest.as_slice(), &unit(seed_of("vb1")), "interest");
    assert_eq!(s.event_count(), 1);

    // Every live embedding, in id order; the log as written.
    assert_eq!(embedded(&*s), ["va1", "va2", "va3", "vb1", "vx"]);
    assert_eq!(logged(&*s, 1), vec![(1, ev("k1", "a", 400, like("vb1")))]);
}

/// 3. The time indexes are newest first.
pub fn time_indexes_are_newest_first(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let pets = TopicId::new("pets").unwrap();
    let cameo = Video {
        cameos: vec![uid("a")],
        topics: vec![pets.clone()],
        ..video("vc", "b", 150)
    };
    let cameo2 = Video {
        cameos: vec![uid("a")],
        topics: vec![pets.clone()],
        ..video("vc2", "b", 10)
    };
    s.upsert_videos(&[cameo, cameo2]).unwrap();

    assert_eq!(
        ids(s.recent_by_creator(&uid("a"), at(0), 10).unwrap()),
        ["va3", "va2", "va1"]
    );
    assert_eq!(
        ids(s.recent_by_creator(&uid("a"), at(100), 10).unwrap()),
        ["va3", "va2"],
        "since is inclusive"
    );
    assert_eq!(
        ids(s.recent_by_creator(&uid("a"), at(0), 1).unwrap()),
        ["va3"]
    );
    assert_eq!(
        ids(s.newest(at(50), 10).unwrap()),
        ["va3", "vc", "va2", "vb1"]
    );
    assert_eq!(ids(s.featuring(&uid("a"), 10).unwrap()), ["vc", "vc2"]);
    assert_eq!(ids(s.featuring(&uid("a"), 1).unwrap()), ["vc"]);
    assert!(s.featuring(&uid("b"), 10).unwrap().is_empty());
    assert_eq!(
        ids(s.recent_by_topic(&pets, at(0), 10).unwrap()),
        ["vc", "vc2"]
    );
    assert_eq!(ids(s.recent_by_topic(&pets, at(11), 10).unwrap()), ["vc"]);
    assert_eq!(s.creator_video_count(&uid("a"), 100).unwrap(), 3);
    assert_eq!(s.creator_video_count(&uid("a"), 2).unwrap(), 2);
    assert_eq!(s.creator_video_count(&uid("c"), 100).unwrap(), 0);

    // A creator whose id is a prefix of another's must not see the other's videos.
    s.upsert_user(&User::new(uid("ab"))).unwrap();
    s.upsert_videos(&[video("vab", "ab", 500)]).unwrap();
    assert_eq!(s.creator_video_count(&uid("a"), 100).unwrap(), 3);
    assert_eq!(
        ids(s.recent_by_creator(&uid("a"), at(0), 10).unwrap()),
        ["va3", "va2", "va1"]
    );
}

/// 4. Seen and engagement history are bounded rings keeping the newest.
pub fn rings_are_bounded_and_keep_the_newest(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    // One page per item, past the bound.
    let n = SEEN_PER_USER + 12;
    for i in 0..n {
        let v = [vid(&format!("s{i}"))];
        let page = ServedPage {
            videos: &v,
            ..ServedPage::default()
        };
        s.record_page(&uid("a"), &page, at(1_000 + i as i64))
            .unwrap();
    }
    let want: Vec<String> = (n - SEEN_PER_USER..n)
        .rev()
        .map(|i| format!("s{i}"))
        .collect();
    assert_eq!(seen_ids(&*s, "a"), want);
    let times: Vec<Timestamp> = s.seen(&uid("a")).unwrap().iter().map(|e| e.1).collect();
    assert_eq!(
        times[0],
        at(1_000 + n as i64 - 1),
        "each item's time is kept"
    );
    // One page with more items than the bound keeps its last ones, newest first.
    let page: Vec<VideoId> = (0..n).map(|i| vid(&format!("p{i}"))).collect();
    s.record_page(
        &uid("b"),
        &ServedPage {
            videos: &page,
            ..ServedPage::default()
        },
        at(2_000),
    )
    .unwrap();
    assert_eq!(
        seen_ids(&*s, "b"),
        (n - SEEN_PER_USER..n)
            .rev()
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>()
    );
    assert!(
        viewer(&*s, "b", at(2_001))
            .seen
            .contains(&vid(&format!("p{}", n - 1))),
        "the viewer's seen set"
    );

    // Engagement history: likes past the bound, newest first, `limit` respected.
    let videos = ["va1", "va2", "va3", "vb1"];
    let m = HISTORY_PER_USER + 5;
    let events: Vec<Event> = (0..m)
        .map(|i| ev(&format!("h{i}"), "c", 3_000 + i as i64, like(videos[i % 4])))
        .collect();
    assert_eq!(ingest(&*s, &events).accepted, m);
    let want: Vec<(String, Timestamp)> = (m - HISTORY_PER_USER..m)
        .rev()
        .map(|i| (videos[i % 4].to_owned(), at(3_000 + i as i64)))
        .collect();
    assert_eq!(history(&*s, "c", 10 * HISTORY_PER_USER), want);
    assert_eq!(history(&*s, "c", 3), want[..3]);
    assert_eq!(history(&*s, "c", 1).len(), 1);
    let kinds: Vec<EventKind> = s
        .recent_engagements(&uid("c"), 1)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [like(videos[(m - 1) % 4])]);
}

/// 5. Ingest is idempotent.
pub fn ingest_is_idempotent(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let batch = vec![
        ev("k1", "b", 10, like("va1")),
        ev("k2", "c", 11, like("va1")),
        ev("k1", "b", 10, like("va1")), // repeated inside the batch
    ];
    let (r, l) = s.ingest_events(&batch).unwrap();
    assert_eq!(r.accepted, 2);
    assert_eq!(r.duplicates, vec![EventKey::new("k1").unwrap()]);
    assert_eq!(
        l,
        Logged {
            first_seq: 1,
            accepted: vec![0, 1]
        }
    );
    let (r, l) = s.ingest_events(&batch).unwrap();
    assert_eq!(r.accepted, 0);
    assert_eq!(r.duplicates.len(), 3);
    assert_eq!(l, Logged::default(), "nothing logged by a retry");
    close(counts(&*s, "va1", at(11)).likes, 2.0, 1e-3, "likes of va1");
    assert_eq!(s.event_count(), 2);
    assert_eq!(s.recent_engagements(&uid("b"), 10).unwrap().len(), 1);
    // A retry mixing old and new keys logs only the new ones, after the others.
    let (r, l) = s
        .ingest_events(&[
            ev("k2", "c", 11, like("va1")),
            ev("k3", "c", 12, like("va2")),
        ])
        .unwrap();
    assert_eq!((r.accepted, r.duplicates.len()), (1, 1));
    assert_eq!(
        l,
        Logged {
            first_seq: 3,
            accepted: vec![1]
        }
    );
    let keys: Vec<String> = logged(&*s, 1)
        .into_iter()
        .map(|(seq, e)| format!("{seq}:{}", e.key))
        .collect();
    assert_eq!(keys, ["1:k1", "2:k2", "3:k3"]);
    assert_eq!(logged(&*s, 3).len(), 1);
    assert!(logged(&*s, 4).is_empty());
    // A key reused for another event is a conflict, after it was logged or within one
    // batch, and nothing of the batch is logged: another video, another time, another
    // person.
    for reused in [
        vec![
            ev("k4", "b", 13, like("va1")),
            ev("k1", "b", 10, like("va2")),
        ],
        vec![
            ev("k4", "b", 13, like("va1")),
            ev("k1", "b", 99, like("va1")),
        ],
        vec![
            ev("k4", "b", 13, like("va1")),
            ev("k1", "c", 10, like("va1")),
        ],
        vec![
            ev("k4", "b", 13, like("va1")),
            ev("k4", "b", 13, like("va2")),
        ],
    ] {
        let err = s.ingest_events(&reused).unwrap_err();
        assert_eq!(err.class(), ErrorClass::Conflict, "{err}");
        assert_eq!(s.event_count(), 3, "{err}");
    }
    // The same content again is still a retry.
    let (r, _) = s.ingest_events(&[ev("k1", "b", 10, like("va1"))]).unwrap();
    assert_eq!((r.accepted, r.duplicates.len()), (0, 1));
}

/// 6. A bad video batch changes nothing.
pub fn bad_videos_change_nothing(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let version = s.catalog_version();
    // Wrong dimension in the second video: the first is not stored either.
    let mut bad = video("vbad", "a", 5);
    bad.embedding = Some(Embedding::new("embedding", &[1.0, 2.0], 2).unwrap());
    let err = s.upsert_videos(&[video("vok", "a", 5), bad]).unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidInput, "{err}");
    assert!(err.to_string().contains("video 1"), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("expected a vector of {DIM}")),
        "{err}"
    );
    assert!(s.video(&vid("vok")).unwrap().is_none());
    // No embedding.
    let mut none = video("vnone", "a", 5);
    none.embedding = None;
    assert!(s.upsert_videos(&[none]).is_err());
    assert!(s.video(&vid("vnone")).unwrap().is_none());
    assert_eq!(s.video_count(), 4);
    // NaN never becomes an embedding.
    assert!(Embedding::new("embedding", &[f32::NAN; DIM], DIM).is_err());
    // Deleting an unknown video.
    let err = s.delete_video(&vid("missing")).unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    // A video by an unknown creator, or featuring an unknown person.
    let err = s.upsert_videos(&[video("vghost", "ghost", 5)]).unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    let cameo = Video {
        cameos: vec![uid("b"), uid("ghost")],
        ..video("vcameo", "a", 5)
    };
    let err = s
        .upsert_videos(&[video("vfine", "a", 5), cameo])
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    for v in ["vfine", "vghost", "vcameo"] {
        assert!(s.video(&vid(v)).unwrap().is_none(), "{v} stored");
    }
    assert_eq!(s.video_count(), 4);
    assert_eq!(s.catalog_version(), version, "failed writes bump nothing");
    assert_eq!(
        ids(s.recent_by_creator(&uid("a"), at(0), 10).unwrap()),
        ["va3", "va2", "va1"]
    );
    assert_eq!(embedded(&*s), ["va1", "va2", "va3", "vb1"]);
}

/// 7. A bad event batch changes nothing.
pub fn bad_events_change_nothing(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    // An unknown video at index 2 rejects the batch (not found); nothing is counted.
    let batch = vec![
        ev("k1", "b", 10, like("va1")),
        ev("k2", "b", 11, view("va2", 5_000)),
        ev("k3", "b", 12, like("missing")),
    ];
    let err = s.ingest_events(&batch).unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    // So does an event of a user the store does not know.
    let stranger = vec![
        ev("k1", "b", 10, like("va1")),
        ev("k4", "nobody", 10, like("va1")),
    ];
    let err = s.ingest_events(&stranger).unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains("nobody"), "{err}");
    assert_eq!(s.event_count(), 0);
    assert!(logged(&*s, 1).is_empty());
    assert_eq!(counts(&*s, "va1", at(20)), Default::default());
    assert_eq!(
        s.creator_counts(&uid("a"), at(20)).unwrap(),
        Default::default()
    );
    assert_eq!(wellbeing(&*s, "b", at(20)).items_today, 0);
    assert!(s.popular(at(20), 10).unwrap().is_empty());
    assert!(s.seen(&uid("b")).unwrap().is_empty());
    assert!(s.recent_engagements(&uid("b"), 10).unwrap().is_empty());
    assert!(s.interest(&uid("b")).unwrap().is_none());
    // The corrected batch goes in, keys unspent.
    let mut fixed = batch.clone();
    fixed[2] = ev("k3", "b", 12, like("vb1"));
    assert_eq!(ingest(&*s, &fixed).accepted, 3);

    // An invalid event (watch time beyond a day).
    let err = s
        .ingest_events(&[ev("k9", "b", 13, view("va1", u64::MAX))])
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidInput, "{err}");
    assert!(err.to_string().contains("event 0"), "{err}");
    assert_eq!(s.event_count(), 3);
    assert_eq!(ingest(&*s, &[ev("k9", "b", 13, like("va1"))]).accepted, 1);
}

/// 8. Bad writes about people change nothing.
pub fn bad_writes_about_people_change_nothing(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let err = s
        .set_relation(&uid("a"), &uid("ghost"), Relation::Follow, true)
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    let err = s
        .set_relation(&uid("ghost"), &uid("a"), Relation::Block, true)
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    for r in [Relation::Follow, Relation::Block, Relation::Mute] {
        assert!(
            s.set_relation(&uid("a"), &uid("a"), r, true).is_err(),
            "{r:?} of oneself"
        );
    }
    assert!(
        s.set_consent(&uid("ghost"), ConsentScope::Everyone, &[])
            .is_err()
    );
    assert!(
        s.revoke_consent(&uid("ghost"), &Revocation::Video(vid("va1")))
            .is_err()
    );
    assert!(s.following(&uid("a")).unwrap().is_empty());
    let v = viewer(&*s, "a", at(0));
    assert!(v.blocked.is_empty() && v.muted.is_empty() && v.following.is_empty());
    assert!(
        s.cameo_consent(&uid("ghost"), &uid("a"), &vid("va1"))
            .unwrap()
            .is_none()
    );

    // Oversized preference text, bad parental controls, unknown time zone.
    let huge = "x".repeat(100_000);
    let err = s
        .set_preferences(&uid("a"), &huge, &Constraints::default())
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::TooLarge, "{err}");
    assert!(s.preferences(&uid("a")).unwrap().is_none());
    // A NUL in any text (the shared backend's record cannot hold one).
    let err = s
        .set_preferences(&uid("a"), "more\0cats", &Constraints::default())
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::InvalidInput, "{err}");
    let nul_phrase: Constraints =
        serde_json::from_str(r#"{"boost": [{"phrase": "cats\u0000"}]}"#).unwrap();
    assert!(s.set_preferences(&uid("a"), "cats", &nul_phrase).is_err());
    assert!(s.preferences(&uid("a")).unwrap().is_none());
    let mut nul_caption = video("v_nul", "a", 0);
    nul_caption.caption = "a cat\0".into();
    assert!(s.upsert_videos(&[nul_caption]).is_err());
    assert!(s.video(&vid("v_nul")).unwrap().is_none());
    let pc = ParentalControls {
        scroll_cap: Some(0),
        ..ParentalControls::default()
    };
    assert!(s.set_parental_controls(&uid("c"), &pc).is_err());
    assert_eq!(
        s.parental_controls(&uid("c")).unwrap(),
        ParentalControls::default()
    );
    let mut u = User::new(uid("a"));
    u.time_zone = "Mars/Olympus".into();
    assert!(s.upsert_user(&u).is_err());
    assert_eq!(s.user(&uid("a")).unwrap().unwrap().time_zone, "UTC");
    u.id = uid("newcomer");
    assert!(s.upsert_user(&u).is_err());
    assert!(s.user(&uid("newcomer")).unwrap().is_none());
}

/// 9. Consent facts are reported as stored.
pub fn consent_facts_are_reported_as_stored(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    // c is a teen who chose "everyone": the store reports it, the ranking clamps it.
    s.set_consent(&uid("c"), ConsentScope::Everyone, &[uid("b")])
        .unwrap();
    let f = facts(&*s, "c", "a", "va1");
    assert_eq!(f.scope, ConsentScope::Everyone);
    assert_eq!(f.age_band, AgeBand::Teen);
    assert_eq!(f.parental_scope, None);
    assert!(!f.creator_approved && !f.mutual && !f.revoked);
    assert!(facts(&*s, "c", "b", "vb1").creator_approved);

    s.set_relation(&uid("c"), &uid("a"), Relation::Follow, true)
        .unwrap();
    assert!(!facts(&*s, "c", "a", "va1").mutual);
    s.set_relation(&uid("a"), &uid("c"), Relation::Follow, true)
        .unwrap();
    assert!(facts(&*s, "c", "a", "va1").mutual);
    assert!(s.is_mutual(&uid("a"), &uid("c")).unwrap());

    s.set_parental_controls(
        &uid("c"),
        &ParentalControls {
            cameo_scope: Some(ConsentScope::Approved),
            ..ParentalControls::default()
        },
    )
    .unwrap();
    assert_eq!(
        facts(&*s, "c", "a", "va1").parental_scope,
        Some(ConsentScope::Approved)
    );
    // A change of scope is seen by the very next read.
    s.set_consent(&uid("c"), ConsentScope::Nobody, &[]).unwrap();
    let f = facts(&*s, "c", "b", "vb1");
    assert_eq!(f.scope, ConsentScope::Nobody);
    assert!(!f.creator_approved);
    s.set_consent(&uid("c"), ConsentScope::Everyone, &[uid("b")])
        .unwrap();

    // Per video: only that video.
    s.revoke_consent(&uid("c"), &Revocation::Video(vid("va1")))
        .unwrap();
    assert!(facts(&*s, "c", "a", "va1").revoked);
    assert!(!facts(&*s, "c", "a", "va2").revoked);
    // Per creator: every video of that creator, including future ones.
    s.revoke_consent(&uid("c"), &Revocation::Creator(uid("b")))
        .unwrap();
    assert!(facts(&*s, "c", "b", "vb1").revoked);
    assert!(facts(&*s, "c", "b", "vb-future").revoked);
    assert!(!facts(&*s, "c", "a", "va3").revoked);
    // Revocations are the person's own: nobody else's facts change.
    s.set_consent(&uid("a"), ConsentScope::Everyone, &[])
        .unwrap();
    assert!(!facts(&*s, "a", "b", "vb1").revoked);

    // A person who never set anything: nobody; an unknown person: no facts.
    assert_eq!(facts(&*s, "b", "a", "va1").scope, ConsentScope::Nobody);
    assert!(
        s.cameo_consent(&uid("ghost"), &uid("a"), &vid("va1"))
            .unwrap()
            .is_none()
    );
}

/// 10. Daily wellbeing counters roll over at local midnight.
pub fn daily_counters_roll_over_at_local_midnight(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    // 2026-11-18 14:50 UTC is 23:50 in Tokyo (UTC+9, no DST).
    let base: Timestamp = "2026-11-18T14:50:00Z".parse().unwrap();
    let t = |mins: i64| base + jiff::SignedDuration::from_mins(mins);
    let view_at = |key: &str, user: &str, mins: i64, v: &str| Event {
        key: EventKey::new(key).unwrap(),
        user: uid(user),
        at: t(mins),
        kind: view(v, 5 * 60_000),
    };
    ingest(
        &*s,
        &[view_at("t1", "c", 0, "va1"), view_at("u1", "a", 0, "va1")],
    );
    let w = wellbeing(&*s, "c", t(5));
    close(w.minutes_today, 5.0, 1e-4, "c's minutes at 23:55");
    assert_eq!(w.items_today, 1);
    // 00:01 in Tokyo: a new day for c; still the same day in UTC for a.
    let w = wellbeing(&*s, "c", t(11));
    assert_eq!((w.minutes_today, w.items_today), (0.0, 0));
    close(
        wellbeing(&*s, "a", t(11)).minutes_today,
        5.0,
        1e-4,
        "a's minutes",
    );
    // The next view counts on the new day only.
    ingest(
        &*s,
        &[view_at("t2", "c", 15, "va2"), view_at("u2", "a", 15, "va2")],
    );
    let w = wellbeing(&*s, "c", t(16));
    close(w.minutes_today, 5.0, 1e-4, "c's minutes on the new day");
    assert_eq!(w.items_today, 1);
    close(
        wellbeing(&*s, "a", t(16)).minutes_today,
        10.0,
        1e-4,
        "a's minutes",
    );
    // A late event from yesterday does not count towards today.
    ingest(&*s, &[view_at("t3", "c", 5, "va3")]);
    close(
        wellbeing(&*s, "c", t(16)).minutes_today,
        5.0,
        1e-4,
        "after a late event",
    );
    // The passive streak counts views across the day boundary.
    assert_eq!(wellbeing(&*s, "c", t(16)).passive_streak, 3);
}

/// 11. Counters decay by half after one half-life.
pub fn counters_decay_by_half_after_one_half_life(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    ingest(
        &*s,
        &[
            ev("k1", "b", 0, like("va1")),
            ev("k2", "c", 0, like("va1")),
            ev("k3", "b", 0, like("va2")),
        ],
    );
    let hl = COUNTER_HALF_LIFE_H * 3_600;
    let decayed = |n: f32, secs: i64| n * 0.5f32.powf(secs as f32 / hl as f32);
    close(counts(&*s, "va1", at(0)).likes, 2.0, 1e-4, "now");
    close(
        counts(&*s, "va1", at(hl)).likes,
        1.0,
        1e-4,
        "one half-life on",
    );
    close(
        counts(&*s, "va1", at(2 * hl)).likes,
        0.5,
        1e-4,
        "two half-lives on",
    );
    close(
        counts(&*s, "va1", at(hl / 3)).likes,
        decayed(2.0, hl / 3),
        1e-4,
        "a third of a half-life on",
    );
    let cr = s.creator_counts(&uid("a"), at(hl)).unwrap();
    close(cr.likes, 1.5, 1e-4, "creator a's likes");
    let p0 = s.popular(at(0), 10).unwrap();
    let p1 = s.popular(at(hl), 10).unwrap();
    assert_eq!(p0[0].0, vid("va1"));
    assert_eq!(p1[0].0, vid("va1"), "decay never reorders");
    close(p1[0].1, p0[0].1 / 2.0, 1e-3, "popular score");
    // An event one half-life later lands on the decayed value.
    ingest(&*s, &[ev("k4", "a", hl, like("va1"))]);
    close(
        counts(&*s, "va1", at(hl)).likes,
        2.0,
        1e-4,
        "after a later like",
    );
    // An out-of-order event is added already decayed.
    ingest(&*s, &[ev("k5", "a", 0, like("va2"))]);
    close(
        counts(&*s, "va2", at(hl)).likes,
        1.0,
        1e-4,
        "after an older like",
    );
}

/// 12. Events update wellbeing, history, counters and relations.
pub fn events_update_wellbeing_history_counters_and_relations(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    s.upsert_videos(&[Video {
        remix_of: Some(vid("va1")),
        ..video("vr", "c", 500)
    }])
    .unwrap();
    ingest(
        &*s,
        &[
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
        ],
    );
    let w = wellbeing(&*s, "b", at(610));
    assert_eq!(
        w.items_today, 2,
        "an impression and a view of va1 count one item"
    );
    close(w.minutes_today, 2.1, 1e-4, "minutes watched");
    assert_eq!(w.passive_streak, 2);
    assert_eq!(w.last_answer, Some((CheckinAnswer::NotGreat, at(605))));
    assert_eq!(w.last_checkin, Some(at(605)));
    assert_eq!(w.session_started, Some(at(600)));
    ingest(&*s, &[ev("10", "b", 611, like("va2"))]);
    assert_eq!(
        wellbeing(&*s, "b", at(612)).passive_streak,
        0,
        "a like ends the passive streak"
    );

    // Every event on a video enters the seen history, engagements and skips included;
    // a check-in answer names none.
    assert_eq!(
        seen_ids(&*s, "b"),
        ["va2", "va3", "va3", "va2", "va1", "va1"]
    );
    assert_eq!(seen_ids(&*s, "c"), ["va2", "vb1", "va1"]);

    let c = s
        .video_counts(&[&vid("va1"), &vid("va3")], at(700))
        .unwrap();
    close(c[0].remixes, 1.0, 1e-2, "remixes of va1");
    close(c[1].negatives, 2.0, 1e-2, "negatives of va3");
    let trending = s.remix_trending(at(700), 10).unwrap();
    assert_eq!(trending.len(), 1, "{trending:?}");
    assert_eq!(trending[0].0, vid("va1"));

    // Hide creator mutes the creator; a follow event follows them.
    let vc = viewer(&*s, "c", at(700));
    assert_eq!(names(&vc.muted), ["b"]);
    assert!(s.follows(&uid("c"), &uid("a")).unwrap());
    let followers_of_a: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|u| s.follows(&uid(u), &uid("a")).unwrap())
        .collect();
    assert_eq!(followers_of_a, ["c"]);
    assert!(vc.following.contains(&uid("a")));
    assert!(vc.own_videos.contains(&vid("vr")));
    let aff = vc.creator_affinity[&uid("a")];
    assert!(aff > 0.5 && aff < 1.0, "{aff}");
    // A remix (weight 6) and a follow (weight 2) of a's videos, a minute and a half ago.
    close(
        aff,
        1.0 - (-8.0 / AFFINITY_SCALE).exp2(),
        1e-3,
        "c's affinity with a",
    );
    assert!(
        !vc.creator_affinity.contains_key(&uid("c")),
        "no affinity with oneself"
    );
    let vb = viewer(&*s, "b", at(700));
    assert!(vb.seen.contains(&vid("va3")));
    assert!(vb.creator_affinity[&uid("a")] > 0.0);
    assert!(vb.blocked.is_empty());
    // Affinity decays.
    let later = viewer(&*s, "c", at(700 + 30 * 24 * 3_600));
    assert!(later.creator_affinity[&uid("a")] < aff);
}

/// 13. `record_page` counts items and notes cards.
pub fn record_page_counts_items_and_notes_cards(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let page = |s: &dyn Storage, videos: &[VideoId], secs: i64| {
        s.record_page(
            &uid("b"),
            &ServedPage {
                videos,
                ..ServedPage::default()
            },
            at(secs),
        )
        .unwrap();
    };
    ingest(&*s, &[ev("1", "b", 600, view("va1", 10_000))]);
    // Sessions: served pages count items; a long gap starts a new session.
    page(&*s, &[vid("vb1"), vid("va3")], 620);
    let w = wellbeing(&*s, "b", at(621));
    assert_eq!((w.session_started, w.session_items), (Some(at(600)), 2));
    let gap = (SESSION_GAP_MIN + 1) * 60;
    let w = wellbeing(&*s, "b", at(620 + gap));
    assert_eq!((w.session_started, w.session_items), (None, 0));
    page(&*s, &[vid("va2")], 620 + gap);
    let w = wellbeing(&*s, "b", at(620 + gap));
    assert_eq!(
        (w.session_started, w.session_items),
        (Some(at(620 + gap)), 1)
    );
    assert_eq!(seen_ids(&*s, "b"), ["va2", "va3", "vb1", "va1"]);
    // Cards.
    let card = ServedPage {
        checkin: true,
        ..Default::default()
    };
    s.record_page(&uid("b"), &card, at(2_600)).unwrap();
    assert_eq!(wellbeing(&*s, "b", at(2_601)).last_checkin, Some(at(2_600)));
    let card = ServedPage {
        break_card: true,
        ..Default::default()
    };
    s.record_page(&uid("b"), &card, at(2_700)).unwrap();
    let w = wellbeing(&*s, "b", at(2_701));
    assert_eq!(w.last_break, Some(at(2_700)));
    assert_eq!(w.last_checkin, Some(at(2_600)));
}

/// 14. Deletion reaches every read.
pub fn deletion_reaches_every_read(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    ingest(
        &*s,
        &[
            ev("k", "b", 300, like("va3")),
            ev("r", "b", 301, EventKind::CameoUse { video: vid("va3") }),
        ],
    );
    // Read everything first (a store with caches has it cached now).
    assert!(!s.video(&vid("va3")).unwrap().unwrap().deleted);
    assert_eq!(s.popular(at(302), 10).unwrap()[0].0, vid("va3"));
    assert_eq!(s.remix_trending(at(302), 10).unwrap()[0].0, vid("va3"));
    assert!(counts(&*s, "va3", at(302)).likes > 0.0);
    assert_eq!(ids(s.newest(at(0), 10).unwrap())[0], "va3");
    let version = s.catalog_version();

    s.delete_video(&vid("va3")).unwrap();
    let gone = s.video(&vid("va3")).unwrap().unwrap();
    assert!(gone.deleted, "a deleted video reads as deleted");
    assert!(s.popular(at(302), 10).unwrap().is_empty());
    assert!(s.remix_trending(at(302), 10).unwrap().is_empty());
    assert_eq!(
        ids(s.recent_by_creator(&uid("a"), at(0), 10).unwrap()),
        ["va2", "va1"]
    );
    assert!(!ids(s.newest(at(0), 10).unwrap()).contains(&"va3".to_owned()));
    assert_eq!(s.creator_video_count(&uid("a"), 100).unwrap(), 2);
    assert_eq!(s.video_count(), 3);
    assert_eq!(counts(&*s, "va3", at(302)), Default::default());
    assert!(s.catalog_version() > version);
    s.delete_video(&vid("va3")).unwrap();
    assert_eq!(s.video_count(), 3, "deleting twice is not an error");
    // Events about a deleted video are logged but count nowhere.
    assert_eq!(ingest(&*s, &[ev("k2", "c", 303, like("va3"))]).accepted, 1);
    assert!(s.popular(at(303), 10).unwrap().is_empty());
    assert_eq!(counts(&*s, "va3", at(303)), Default::default());
    // The index is rebuilt from live videos only.
    assert_eq!(embedded(&*s), ["va1", "va2", "vb1"]);
}

/// 15. Concurrent writers lose nothing.
pub fn concurrent_writers_lose_nothing(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    std::thread::scope(|scope| {
        for w in 0..4 {
            let s = Arc::clone(&s);
            scope.spawn(move || {
                for b in 0..25 {
                    let batch: Vec<Event> = (0..4)
                        .map(|i| ev(&format!("w{w}-{b}-{i}"), "b", b * 10 + i, like("va1")))
                        .collect();
                    assert_eq!(ingest(&*s, &batch).accepted, 4);
                }
            });
        }
    });
    assert_eq!(s.event_count(), 400);
    let log = logged(&*s, 1);
    let seqs: Vec<u64> = log.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=400).collect::<Vec<u64>>());
    let mut keys: Vec<String> = log.iter().map(|(_, e)| e.key.to_string()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 400, "every event logged once");
    assert!(counts(&*s, "va1", at(0)).likes > 0.0);
    assert_eq!(
        s.recent_engagements(&uid("b"), 1_000).unwrap().len(),
        HISTORY_PER_USER.min(400)
    );
}

/// 16. Concurrent batches with overlapping keys count each distinct event once.
pub fn concurrent_overlapping_batches_count_each_event_once(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    // Keys 0..300: thread w ingests keys [w*50, w*50 + 150), so neighbours overlap by
    // 100 keys and three of the four threads race for some of them. Every event is a
    // like at the same instant, so the counters are exact.
    let accepted: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let s = Arc::clone(&s);
                scope.spawn(move || {
                    let mut n = 0;
                    for b in 0..15 {
                        let batch: Vec<Event> = (0..10)
                            .map(|i| {
                                let k = w * 50 + b * 10 + i;
                                let video = if k % 2 == 0 { "va1" } else { "vb1" };
                                ev(&format!("k{k}"), "c", 0, like(video))
                            })
                            .collect();
                        let r = ingest(&*s, &batch);
                        assert_eq!(r.accepted + r.duplicates.len(), batch.len());
                        n += r.accepted;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let distinct = 300;
    assert_eq!(accepted, distinct);
    assert_eq!(s.event_count(), distinct as u64);
    let c = s.video_counts(&[&vid("va1"), &vid("vb1")], at(0)).unwrap();
    close(c[0].likes, 150.0, 1e-3, "likes of va1");
    close(c[1].likes, 150.0, 1e-3, "likes of vb1");
    close(
        s.creator_counts(&uid("a"), at(0)).unwrap().likes,
        150.0,
        1e-3,
        "likes of creator a",
    );
    assert_eq!(
        s.recent_engagements(&uid("c"), 1_000).unwrap().len(),
        HISTORY_PER_USER.min(distinct)
    );
}

/// 17. The catalogue log names every changed video.
pub fn the_catalog_log_names_every_changed_video(new_store: Factory<'_>) {
    let s = new_store();
    assert_eq!(s.catalog_version(), 0);
    assert_eq!(changes(&*s, 0), Some(vec![]));
    assert_eq!(changes(&*s, 1), None, "a version the store never reached");

    seeded(&*s); // version 1: va1, va2, va3, vb1 (users change no version)
    assert_eq!(s.catalog_version(), 1);
    assert_eq!(changes(&*s, 0), Some(strs(&["va1", "va2", "va3", "vb1"])));
    assert_eq!(changes(&*s, 1), Some(vec![]));

    s.delete_video(&vid("va2")).unwrap(); // 2
    let mut moved = video("va1", "a", 0);
    moved.embedding = Some(emb(99));
    // A repeated id within a batch is one change, and the last one wins.
    let mut first = moved.clone();
    first.caption = "first".into();
    s.upsert_videos(&[video("vc1", "c", 5), first, moved])
        .unwrap(); // 3
    assert_eq!(s.catalog_version(), 3);
    assert_eq!(changes(&*s, 1), Some(strs(&["va1", "va2", "vc1"])));
    assert_eq!(changes(&*s, 2), Some(strs(&["va1", "vc1"])));
    assert_eq!(changes(&*s, 3), Some(vec![]));
    assert_eq!(changes(&*s, 4), None);
    assert_eq!(
        s.video(&vid("va1")).unwrap().unwrap().caption,
        "caption of va1"
    );

    // Writes that fail change neither the version nor the log.
    assert!(s.delete_video(&vid("nope")).is_err());
    let mut bad = video("vbad", "a", 1);
    bad.embedding = Some(Embedding::new("e", &[1.0, 0.0], 2).unwrap());
    assert!(s.upsert_videos(&[video("vok", "a", 1), bad]).is_err());
    assert_eq!(s.catalog_version(), 3);
    assert_eq!(changes(&*s, 2), Some(strs(&["va1", "vc1"])));

    // Trimming raises the floor; below it the log cannot tell.
    s.trim_catalog_log(2).unwrap();
    assert_eq!(changes(&*s, 1), None);
    assert_eq!(changes(&*s, 0), None);
    assert_eq!(changes(&*s, 2), Some(strs(&["va1", "vc1"])));
    s.trim_catalog_log(1).unwrap(); // never lowers it
    assert_eq!(changes(&*s, 1), None);
    assert_eq!(changes(&*s, 2), Some(strs(&["va1", "vc1"])));

    s.delete_video(&vid("vc1")).unwrap(); // 4
    assert_eq!(s.catalog_version(), 4);
    assert_eq!(changes(&*s, 3), Some(strs(&["vc1"])));
    // Past the current version, the trim stops at it.
    s.trim_catalog_log(100).unwrap();
    assert_eq!(changes(&*s, 3), None);
    assert_eq!(changes(&*s, 4), Some(vec![]));
    s.upsert_videos(&[video("vd1", "a", 9)]).unwrap(); // 5
    assert_eq!(changes(&*s, 4), Some(strs(&["vd1"])));
}

/// 18. Counters read before a write never hide it.
pub fn counters_read_before_a_write_never_hide_it(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let now = at(1_000);
    let likes = |s: &dyn Storage| {
        (
            counts(s, "va1", now).likes,
            s.creator_counts(&uid("a"), now).unwrap().likes,
        )
    };
    // Read "nothing yet" first.
    assert_eq!(likes(&*s), (0.0, 0.0));
    for round in 0..4 {
        ingest(&*s, &[ev(&format!("k{round}"), "b", 1_000, like("va1"))]);
        let n = (round + 1) as f32;
        let (v, c) = likes(&*s);
        close(v, n, 1e-3, &format!("round {round}: video"));
        close(c, n, 1e-3, &format!("round {round}: creator"));
        // Flushed, with writes about another video in between.
        for j in 0..2 {
            s.flush().unwrap();
            ingest(
                &*s,
                &[ev(&format!("o{round}_{j}"), "a", 1_000, like("vb1"))],
            );
        }
        s.flush().unwrap();
        let (v, c) = likes(&*s);
        close(v, n, 1e-3, &format!("round {round} after flushes: video"));
        close(c, n, 1e-3, &format!("round {round} after flushes: creator"));
    }
    // A deleted video has no counters, read before or not.
    s.delete_video(&vid("va1")).unwrap();
    assert_eq!(likes(&*s).0, 0.0);
}

/// 19. Users, preferences and parental controls read before a write never hide it.
pub fn people_read_before_a_write_never_hide_it(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let a = uid("a");
    assert_eq!(s.user(&a).unwrap().unwrap().time_zone, "UTC");
    s.upsert_user(&User {
        id: a.clone(),
        age_band: AgeBand::Teen,
        time_zone: "Europe/Paris".into(),
    })
    .unwrap();
    let u = s.user(&a).unwrap().unwrap();
    assert_eq!(
        (u.time_zone.as_str(), u.age_band),
        ("Europe/Paris", AgeBand::Teen)
    );
    assert_eq!(facts(&*s, "a", "b", "vb1").age_band, AgeBand::Teen);

    assert!(s.preferences(&a).unwrap().is_none());
    s.set_preferences(&a, "more pets", &Constraints::default())
        .unwrap();
    assert_eq!(s.preferences(&a).unwrap().unwrap().text, "more pets");
    s.set_preferences(&a, "less news", &Constraints::default())
        .unwrap();
    assert_eq!(s.preferences(&a).unwrap().unwrap().text, "less news");
    s.clear_preferences(&a).unwrap();
    assert!(s.preferences(&a).unwrap().is_none());

    assert_eq!(s.parental_controls(&a).unwrap().scroll_cap, None);
    s.set_parental_controls(
        &a,
        &ParentalControls {
            scroll_cap: Some(15),
            ..ParentalControls::default()
        },
    )
    .unwrap();
    assert_eq!(s.parental_controls(&a).unwrap().scroll_cap, Some(15));
    s.set_parental_controls(&a, &ParentalControls::default())
        .unwrap();
    assert_eq!(s.parental_controls(&a).unwrap().scroll_cap, None);
}

/// 20. A deletion, a block or a revocation is in force for the next read, on any thread.
pub fn writes_are_in_force_for_the_next_read(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    s.set_consent(&uid("c"), ConsentScope::Everyone, &[])
        .unwrap();
    // Each step: the reader checks (and so may cache) the state before, the writer
    // writes, and the reader checks the state after once the call returned.
    type Check = fn(&dyn Storage) -> bool;
    type Write = fn(&dyn Storage);
    let steps: [(&str, Write, Check); 5] = [
        (
            "delete va3",
            |s| s.delete_video(&vid("va3")).unwrap(),
            |s| {
                s.video(&vid("va3")).unwrap().unwrap().deleted
                    && !ids(s.newest(at(0), 10).unwrap()).contains(&"va3".to_owned())
                    && !ids(s.recent_by_creator(&uid("a"), at(0), 10).unwrap())
                        .contains(&"va3".to_owned())
            },
        ),
        (
            "a blocks c",
            |s| {
                s.set_relation(&uid("a"), &uid("c"), Relation::Block, true)
                    .unwrap()
            },
            |s| viewer(s, "a", at(0)).blocked.contains(&uid("c")),
        ),
        (
            "a mutes b",
            |s| {
                s.set_relation(&uid("a"), &uid("b"), Relation::Mute, true)
                    .unwrap()
            },
            |s| viewer(s, "a", at(0)).muted.contains(&uid("b")),
        ),
        (
            "c revokes va1",
            |s| {
                s.revoke_consent(&uid("c"), &Revocation::Video(vid("va1")))
                    .unwrap()
            },
            |s| facts(s, "c", "a", "va1").revoked,
        ),
        (
            "c revokes b",
            |s| {
                s.revoke_consent(&uid("c"), &Revocation::Creator(uid("b")))
                    .unwrap()
            },
            |s| facts(s, "c", "b", "vb1").revoked,
        ),
    ];
    let (to_reader, reader_rx) = std::sync::mpsc::channel::<(usize, bool)>();
    let (to_writer, writer_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let reader = {
            let s = Arc::clone(&s);
            scope.spawn(move || {
                for (i, after) in reader_rx {
                    let (name, _, check) = steps[i];
                    assert_eq!(
                        check(&*s),
                        after,
                        "{name}: {} the write",
                        if after { "after" } else { "before" }
                    );
                    to_writer.send(()).unwrap();
                }
            })
        };
        for (i, (_, write, _)) in steps.iter().enumerate() {
            to_reader.send((i, false)).unwrap();
            writer_rx.recv().unwrap();
            write(&*s);
            to_reader.send((i, true)).unwrap();
            writer_rx.recv().unwrap();
        }
        drop(to_reader);
        reader.join().unwrap();
    });
}

/// 21. A seeded synthetic world loads and answers.
pub fn a_seeded_world_loads_and_answers(new_store: Factory<'_>) {
    let mut config = steerfeed_world::WorldConfig::new(7, 60, 300);
    config.dim = DIM;
    config.events_per_user = 20;
    let world = steerfeed_world::World::generate(config);
    let s = new_store();
    for u in &world.users {
        s.upsert_user(&u.user).unwrap();
    }
    s.upsert_videos(&world.videos).unwrap();
    for (a, b) in &world.follows {
        s.set_relation(a, b, Relation::Follow, true).unwrap();
    }
    for g in &world.consents {
        s.set_consent(&g.person, g.scope, &[]).unwrap();
    }
    for r in &world.revocations {
        let (person, r) = match r {
            steerfeed_world::Revocation::Video { person, video } => {
                (person, Revocation::Video(video.clone()))
            }
            steerfeed_world::Revocation::Creator { person, creator } => {
                (person, Revocation::Creator(creator.clone()))
            }
        };
        s.revoke_consent(person, &r).unwrap();
    }
    for chunk in world.events.chunks(100) {
        s.ingest_events(chunk).unwrap();
    }
    assert_eq!(s.video_count(), world.videos.len() as u64);
    assert_eq!(s.event_count(), world.events.len() as u64);
    let now = world.config.now;
    assert!(!s.popular(now, 20).unwrap().is_empty());
    let all: Vec<&VideoId> = world.videos.iter().map(|v| &v.id).collect();
    let total: f32 = s
        .video_counts(&all, now)
        .unwrap()
        .iter()
        .map(|c| c.exposures())
        .sum();
    assert!(total > 0.0);
    for r in &world.revocations {
        match r {
            steerfeed_world::Revocation::Video { person, video } => {
                let v = s.video(video).unwrap().unwrap();
                let f = s.cameo_consent(person, &v.creator, video).unwrap().unwrap();
                assert!(f.revoked, "{person} revoked {video}");
            }
            steerfeed_world::Revocation::Creator { person, creator } => {
                let f = s
                    .cameo_consent(person, creator, &vid("some-video"))
                    .unwrap()
                    .unwrap();
                assert!(f.revoked, "{person} revoked {creator}");
            }
        }
    }
    for (a, b) in world.follows.iter().take(20) {
        assert!(s.follows(a, b).unwrap());
    }
}

/// Contract 22.
pub fn erasure_forgets_the_person_everywhere(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    // a appears in b's vb2; c follows a, a follows b; a has consent, preferences, a
    // served page and events; b and c have events too.
    let mut cameo = video("vb2", "b", 60);
    cameo.cameos = vec![uid("a")];
    s.upsert_videos(&[cameo]).unwrap();
    s.set_relation(&uid("a"), &uid("b"), Relation::Follow, true)
        .unwrap();
    s.set_relation(&uid("c"), &uid("a"), Relation::Follow, true)
        .unwrap();
    s.set_consent(&uid("a"), ConsentScope::Everyone, &[])
        .unwrap();
    s.set_preferences(&uid("a"), "more pets", &Constraints::default())
        .unwrap();
    ingest(
        &*s,
        &[
            ev("a1", "a", 300, like("vb1")),
            ev("b1", "b", 301, like("va1")),
            ev("a2", "a", 302, view("vb2", 5_000)),
            ev("c1", "c", 303, like("vb2")),
        ],
    );
    s.record_page(
        &uid("a"),
        &ServedPage {
            videos: &[vid("vb1")],
            ..ServedPage::default()
        },
        at(304),
    )
    .unwrap();
    let exported = s.export_user(&uid("a"), at(310)).unwrap();
    for want in [
        steerfeed_core::Record::Follow {
            user: uid("a"),
            creator: uid("b"),
        },
        steerfeed_core::Record::Follow {
            user: uid("c"),
            creator: uid("a"),
        },
        steerfeed_core::Record::Cameo {
            video: vid("vb2"),
            creator: uid("b"),
            person: uid("a"),
        },
    ] {
        assert!(exported.contains(&want), "export lacks {want:?}");
    }
    let exported_events: Vec<u64> = exported
        .iter()
        .filter_map(|r| match r {
            steerfeed_core::Record::Event { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(exported_events, [1, 3]);
    // What was set about the person, without the log: the export's first records, and
    // the account's kinds only.
    let account = s.account_records(&uid("a")).unwrap();
    assert_eq!(account[..], exported[..account.len()]);
    assert!(account.iter().all(|r| matches!(
        r.kind(),
        Some(
            RecordKind::User
                | RecordKind::Follow
                | RecordKind::Block
                | RecordKind::Mute
                | RecordKind::Consent
                | RecordKind::Revocation
                | RecordKind::ParentalControls
                | RecordKind::Preferences
        )
    )));
    for kind in [
        RecordKind::Follow,
        RecordKind::Consent,
        RecordKind::Preferences,
    ] {
        assert!(
            account.iter().any(|r| r.kind() == Some(kind)),
            "no {kind:?} in {account:?}"
        );
    }
    assert!(exported[account.len()..].iter().all(|r| !matches!(
        r.kind(),
        Some(RecordKind::Follow | RecordKind::Consent | RecordKind::Preferences)
    )));
    let count = s.event_count();

    let people = s.user_count().unwrap();
    assert_eq!(people, 3, "the seeded accounts");
    let report = s
        .erase_user(&uid("a"), steerfeed_core::OwnVideos::Delete)
        .unwrap();
    assert!(!report.already_erased);
    assert_eq!(report.events, 2);
    assert_eq!(report.own_videos_deleted, 3);
    assert_eq!(report.cameo_videos_deleted, 1);
    assert!(s.user(&uid("a")).unwrap().is_none());
    assert!(s.export_user(&uid("a"), at(310)).unwrap().is_empty());
    assert!(s.preferences(&uid("a")).unwrap().is_none());
    assert!(s.seen(&uid("a")).unwrap().is_empty());
    assert!(s.interest(&uid("a")).unwrap().is_none());
    assert!(s.following(&uid("a")).unwrap().is_empty());
    assert!(s.following(&uid("c")).unwrap().is_empty());
    assert!(s.featuring(&uid("a"), 10).unwrap().is_empty());
    assert!(
        s.recent_by_creator(&uid("a"), at(0), 10)
            .unwrap()
            .is_empty()
    );
    for v in ["va1", "va2", "va3", "vb2"] {
        assert!(s.video(&vid(v)).unwrap().unwrap().deleted, "{v} served");
    }
    assert!(!s.video(&vid("vb1")).unwrap().unwrap().deleted);
    assert_eq!(s.video_count(), 1);
    assert!(
        s.cameo_consent(&uid("a"), &uid("b"), &vid("vb2"))
            .unwrap()
            .is_none()
    );
    assert_eq!(s.event_count(), count, "numbering kept");
    assert_eq!(
        s.user_count().unwrap(),
        people - 1,
        "the erased account is not counted"
    );
    let mut left = Vec::new();
    s.for_each_event(1, &mut |seq, e| {
        left.push((seq, e.key.as_str().to_owned()));
        Ok(())
    })
    .unwrap();
    assert_eq!(left, [(2, "b1".to_owned()), (4, "c1".to_owned())]);
    // Their keys are spent no more; others' still are.
    let again = ingest(
        &*s,
        &[
            ev("a1", "b", 320, like("vb1")),
            ev("b1", "b", 301, like("va1")),
        ],
    );
    assert_eq!(again.accepted, 1);
    assert_eq!(again.duplicates, [EventKey::new("b1").unwrap()]);

    let twice = s
        .erase_user(&uid("a"), steerfeed_core::OwnVideos::Delete)
        .unwrap();
    assert!(twice.already_erased);
    let unknown = s
        .erase_user(&uid("nobody"), steerfeed_core::OwnVideos::Keep)
        .unwrap_err();
    assert_eq!(unknown.class(), ErrorClass::NotFound);

    // A video kept after its creator's erasure: a follow from it follows no one.
    s.upsert_user(&person("d", "UTC", AgeBand::Adult)).unwrap();
    s.upsert_videos(&[video("vd1", "d", 400)]).unwrap();
    s.erase_user(&uid("d"), steerfeed_core::OwnVideos::Keep)
        .unwrap();
    assert!(s.video(&vid("vd1")).unwrap().is_some(), "kept");
    let followed = ingest(
        &*s,
        &[ev(
            "d-follow",
            "b",
            401,
            EventKind::Follow { video: vid("vd1") },
        )],
    );
    assert_eq!(followed.accepted, 1);
    assert!(!s.follows(&uid("b"), &uid("d")).unwrap());
    assert!(
        s.following(&uid("b")).unwrap().is_empty(),
        "{:?}",
        s.following(&uid("b"))
    );
}

/// The bulk export lists every record an app wrote, kind by kind in the order that
/// imports, each kind in id order, deleted videos included, embeddings only when asked
/// (and for a video with no caption), and only the kinds asked for.
pub fn the_bulk_export_lists_every_record_in_import_order(new_store: Factory<'_>) {
    let s = new_store();
    let s = &*s;
    seeded(s);
    let bare = Video {
        caption: String::new(),
        ..video("vz", "b", 300)
    };
    s.upsert_videos(std::slice::from_ref(&bare)).unwrap();
    s.delete_video(&vid("va3")).unwrap();
    s.set_relation(&uid("c"), &uid("a"), Relation::Follow, true)
        .unwrap();
    s.set_relation(&uid("a"), &uid("b"), Relation::Follow, true)
        .unwrap();
    s.set_relation(&uid("b"), &uid("c"), Relation::Block, true)
        .unwrap();
    s.set_relation(&uid("c"), &uid("b"), Relation::Mute, true)
        .unwrap();
    s.set_consent(&uid("c"), ConsentScope::Approved, &[uid("a")])
        .unwrap();
    s.revoke_consent(&uid("c"), &Revocation::Creator(uid("b")))
        .unwrap();
    let controls = ParentalControls {
        personalization: false,
        ..ParentalControls::default()
    };
    s.set_parental_controls(&uid("c"), &controls).unwrap();
    let constraints = Constraints {
        max_duration_s: Some(30),
        ..Constraints::default()
    };
    s.set_preferences(&uid("a"), "short ones", &constraints)
        .unwrap();
    let (e1, e2) = (
        ev("k1", "b", 10, like("va1")),
        ev("k2", "a", 20, view("vb1", 900)),
    );
    ingest(s, &[e1.clone(), e2.clone()]);

    let listed = |kinds: &[RecordKind], embeddings: bool| {
        let mut out = Vec::new();
        s.for_each_record(kinds, embeddings, &mut |r| {
            out.push(r);
            Ok(())
        })
        .unwrap();
        out
    };
    let stripped = |id: &str, secs: i64| Video {
        embedding: None,
        ..video(id, if id.starts_with("va") { "a" } else { "b" }, secs)
    };
    let deleted = Video {
        deleted: true,
        ..stripped("va3", 200)
    };
    let want = vec![
        Record::User {
            user: person("a", "UTC", AgeBand::Adult),
        },
        Record::User {
            user: person("b", "Europe/Paris", AgeBand::Adult),
        },
        Record::User {
            user: person("c", "Asia/Tokyo", AgeBand::Teen),
        },
        Record::Video {
            video: stripped("va1", 0),
        },
        Record::Video {
            video: stripped("va2", 100),
        },
        Record::Video { video: deleted },
        Record::Video {
            video: stripped("vb1", 50),
        },
        Record::Video {
            video: bare.clone(),
        },
        Record::Follow {
            user: uid("a"),
            creator: uid("b"),
        },
        Record::Follow {
            user: uid("c"),
            creator: uid("a"),
        },
        Record::Block {
            user: uid("b"),
            other: uid("c"),
        },
        Record::Mute {
            user: uid("c"),
            other: uid("b"),
        },
        Record::Consent {
            person: uid("c"),
            scope: ConsentScope::Approved,
            approved: vec![uid("a")],
        },
        Record::Revocation {
            person: uid("c"),
            video: None,
            creator: Some(uid("b")),
        },
        Record::ParentalControls {
            user: uid("c"),
            controls,
        },
        Record::Preferences {
            user: uid("a"),
            text: "short ones".into(),
            constraints,
        },
        Record::Event { seq: 1, event: e1 },
        Record::Event { seq: 2, event: e2 },
    ];
    let got = listed(&RecordKind::ALL, false);
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(&want) {
        match (g, w) {
            // A stored embedding is unit length: compared as such.
            (Record::Video { video: g }, Record::Video { video: w }) => {
                assert_eq!(
                    Video {
                        embedding: None,
                        ..g.clone()
                    },
                    Video {
                        embedding: None,
                        ..w.clone()
                    }
                );
                assert_eq!(g.embedding.is_some(), w.embedding.is_some(), "{}", w.id);
                if let Some(e) = &g.embedding {
                    same_vector(e.as_slice(), &unit(seed_of(g.id.as_str())), "vz");
                }
            }
            _ => assert_eq!(g, w),
        }
    }
    // With embeddings, every live video carries its own.
    for r in listed(&[RecordKind::Video], true) {
        let Record::Video { video } = r else {
            panic!("{r:?}")
        };
        if !video.deleted {
            same_vector(
                video.embedding.unwrap().as_slice(),
                &unit(seed_of(video.id.as_str())),
                video.id.as_str(),
            );
        }
    }
    // Only the kinds asked for, in the export's order whatever the order asked.
    let some = listed(&[RecordKind::Event, RecordKind::User], false);
    let kinds: Vec<_> = some.iter().map(|r| r.kind().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            RecordKind::User,
            RecordKind::User,
            RecordKind::User,
            RecordKind::Event,
            RecordKind::Event
        ]
    );
}

/// Several relations set in one write apply in order (a later change of the same pair
/// wins), and a batch with one bad item (a relation with oneself, an unknown user)
/// changes nothing.
pub fn relations_set_together_apply_in_order_or_not_at_all(new_store: Factory<'_>) {
    let s = new_store();
    let s = &*s;
    seeded(s);
    let item = |a: &str, b: &str, r: Relation, on: bool| (uid(a), uid(b), r, on);
    s.set_relations(&[
        item("a", "b", Relation::Follow, true),
        item("a", "c", Relation::Block, true),
        item("c", "b", Relation::Mute, true),
        item("b", "a", Relation::Follow, true),
        item("a", "b", Relation::Follow, false),
        item("c", "a", Relation::Follow, true),
    ])
    .unwrap();
    assert!(s.following(&uid("a")).unwrap().is_empty());
    assert_eq!(names(&s.following(&uid("b")).unwrap()), ["a"]);
    assert_eq!(names(&viewer(s, "a", at(0)).blocked), ["c"]);
    assert_eq!(names(&viewer(s, "c", at(0)).muted), ["b"]);
    assert!(s.follows(&uid("b"), &uid("a")).unwrap() && s.follows(&uid("c"), &uid("a")).unwrap());
    assert!(!s.follows(&uid("a"), &uid("b")).unwrap());
    for bad in [
        item("b", "b", Relation::Block, true),
        item("b", "ghost", Relation::Follow, true),
    ] {
        let err = s
            .set_relations(&[item("b", "c", Relation::Follow, true), bad])
            .unwrap_err();
        assert!(
            matches!(err.class(), ErrorClass::InvalidInput | ErrorClass::NotFound),
            "{err}"
        );
        assert_eq!(names(&s.following(&uid("b")).unwrap()), ["a"]);
    }
}

fn impression_page(request: &str, videos: &[&str]) -> ImpressionPage {
    ImpressionPage {
        request: request.to_owned(),
        profile: "default".to_owned(),
        model: "hand-set".to_owned(),
        items: videos
            .iter()
            .enumerate()
            .map(|(i, v)| ImpressionItem {
                video: vid(v),
                position: i as u32,
                source: "popular".to_owned(),
                propensity: 1.0 / (i as f32 + 1.0),
                inputs: HeadInputs {
                    prior: std::array::from_fn(|h| -(h as f32) - 0.5),
                    creator: [0.25; 8],
                    interest: 0.1 * i as f32,
                    tie: 0.5,
                    co_engagement: 0.0,
                    followed: i % 2 == 0,
                    remix_chain: i == 1,
                    friend_cameo: false,
                },
                breakdown: ScoreBreakdown {
                    total: 2.0 - i as f32,
                    ..ScoreBreakdown::default()
                },
                // Beside a shadow every slot has a draw: the first one with nothing to draw,
                // the fourth served as the shadow's pick (which it could also draw).
                draw: Some(steerfeed_core::SlotDraw {
                    greedy: i != 3,
                    drawable: i as u32,
                    in_draw: i == 2,
                    shadow_greedy: i == 3,
                    shadow_drawable: 2 * i as u32,
                    shadow_in_draw: i == 3,
                }),
            })
            .collect(),
        shadow: Some(steerfeed_core::PageShadow {
            profile: "creation_heavy".to_owned(),
            model: "hand-set".to_owned(),
            share: 0.2,
        }),
    }
}

fn logged_pages(s: &dyn Storage, since: Timestamp) -> Vec<LoggedPage> {
    let mut out = Vec::new();
    s.for_each_impression(since, &mut |p| {
        out.push(p);
        Ok(())
    })
    .unwrap();
    out
}

/// 25. The impression log keeps pages for the retention, is in a person's export, and
///     forgets erased people.
pub fn the_impression_log_keeps_pages_for_the_retention(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let record = |user: &str, page: Option<&ImpressionPage>, videos: &[&str], secs: i64| {
        let ids: Vec<VideoId> = videos.iter().map(|v| vid(v)).collect();
        s.record_page(
            &uid(user),
            &ServedPage {
                videos: &ids,
                impressions: page,
                ..ServedPage::default()
            },
            at(secs),
        )
        .unwrap();
    };
    let p1 = impression_page("r1", &["va1", "vb1"]);
    let p2 = impression_page("r2", &["va2"]);
    let p3 = impression_page("r3", &["va3", "va2", "vb1"]);
    record("b", Some(&p1), &["va1", "vb1"], 1_000);
    record("b", None, &["va3"], 1_100);
    record("c", Some(&p2), &["va2"], 1_200);
    record("b", Some(&impression_page("empty", &[])), &[], 1_250);
    record("b", Some(&p3), &["va3", "va2", "vb1"], 1_300);
    let got = logged_pages(&*s, Timestamp::UNIX_EPOCH);
    let summary: Vec<(&str, Timestamp, &ImpressionPage)> = got
        .iter()
        .map(|p| (p.user.as_str(), p.at, &p.page))
        .collect();
    assert_eq!(
        summary,
        [
            ("b", at(1_000), &p1),
            ("c", at(1_200), &p2),
            ("b", at(1_300), &p3)
        ],
        "pages come back as recorded, in order; a page without impressions logs nothing"
    );
    assert!(
        got.windows(2).all(|w| w[0].seq < w[1].seq),
        "entry numbers grow"
    );
    let later: Vec<String> = logged_pages(&*s, at(1_200))
        .iter()
        .map(|p| p.page.request.clone())
        .collect();
    assert_eq!(later, ["r2", "r3"], "`since` is inclusive");

    // Retention: pages served a retention and a day later push the old ones out.
    let late = 1_300 + (IMPRESSION_RETENTION_H + 24) * 3_600;
    for i in 0..3 {
        let p = impression_page(&format!("late{i}"), &["va1"]);
        record("c", Some(&p), &["va1"], late + i);
    }
    let kept = logged_pages(&*s, Timestamp::UNIX_EPOCH);
    assert!(
        kept.iter().all(|p| p.page.request.starts_with("late")),
        "no page older than the retention is left"
    );
    assert_eq!(kept.len(), 3, "every page within it is");

    // Erasure: b's pages go, c's stay.
    record("b", Some(&p1), &["va1", "vb1"], late + 1_000);
    assert_eq!(logged_pages(&*s, at(late + 1_000)).len(), 1);
    // A person's export lists the pages served to them, and no one else's.
    let exported = |user: &str| -> Vec<(String, Timestamp, ImpressionPage)> {
        s.export_user(&uid(user), at(late + 1_000))
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                steerfeed_core::Record::Impression { user, at, page } => {
                    Some((user.as_str().to_owned(), at, page))
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        exported("b"),
        [("b".to_owned(), at(late + 1_000), p1.clone())],
        "b's export holds b's page"
    );
    let c_pages = exported("c");
    assert_eq!(c_pages.len(), 3, "{c_pages:?}");
    assert!(c_pages.iter().all(|(u, ..)| u == "c"));
    s.erase_user(&uid("b"), OwnVideos::Keep).unwrap();
    let after = logged_pages(&*s, Timestamp::UNIX_EPOCH);
    assert!(after.iter().all(|p| p.user.as_str() == "c"));
    assert_eq!(after.len(), 3);
}

/// 26. Item reservations grant what the cap leaves, give back once, count days and
///     people apart, never grant more than the cap to concurrent callers, and forget an
///     erased person.
pub fn item_reservations_never_grant_more_than_the_cap(new_store: Factory<'_>) {
    let s = new_store();
    seeded(&*s);
    let day = jiff::civil::date(2026, 11, 20);
    let reserve = |user: &str, day, floor, want| {
        let ask = ItemAsk {
            day,
            floor,
            want,
            cap: 25,
        };
        let g = s.reserve_items(&uid(user), ask).unwrap();
        assert_eq!(g.day, day);
        g
    };
    let pairs = |g: steerfeed_core::storage::ItemGrant| (g.before, g.granted);
    // 25 items a day: pages of 10 get 10, 10, 5, then nothing.
    let g1 = reserve("c", day, 0, 10);
    let g2 = reserve("c", day, 0, 10);
    assert_eq!((pairs(g1), pairs(g2)), ((0, 10), (10, 10)));
    assert_ne!(g1.id, g2.id, "grants are told apart");
    assert_eq!(pairs(reserve("c", day, 0, 10)), (20, 5));
    assert_eq!(pairs(reserve("c", day, 0, 10)), (25, 0));
    // g2's page served 6: 4 come back, once, and no more than it granted.
    s.release_items(&uid("c"), &g2, 4).unwrap();
    s.release_items(&uid("c"), &g2, 4).unwrap();
    assert_eq!(pairs(reserve("c", day, 0, 10)), (21, 4));
    s.release_items(&uid("c"), &g1, 1_000).unwrap();
    assert_eq!(
        pairs(reserve("c", day, 0, 30)),
        (15, 10),
        "g1 gave back its 10"
    );
    // The reported count is a floor the reserved count rises to.
    assert_eq!(pairs(reserve("b", day, 22, 10)), (22, 3));
    assert_eq!(pairs(reserve("b", day, 0, 10)), (25, 0));
    // Another day, another person: counted apart.
    let next = day.tomorrow().unwrap();
    assert_eq!(pairs(reserve("c", next, 0, 10)), (0, 10));
    assert_eq!(pairs(reserve("a", day, 0, 10)), (0, 10));

    // Concurrent pages of one person: the cap exactly, never more.
    let racing = day.tomorrow().unwrap().tomorrow().unwrap();
    let granted: Vec<u32> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&s);
                scope.spawn(move || {
                    (0..20)
                        .map(|_| {
                            let ask = ItemAsk {
                                day: racing,
                                floor: 0,
                                want: 3,
                                cap: 100,
                            };
                            let g = s.reserve_items(&uid("a"), ask).unwrap();
                            assert!(g.granted <= 3 && g.before + g.granted <= 100, "{g:?}");
                            g.granted
                        })
                        .sum::<u32>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(granted.iter().sum::<u32>(), 100, "{granted:?}");

    // An erased person's reservations are forgotten.
    s.erase_user(&uid("c"), OwnVideos::Keep).unwrap();
    s.upsert_user(&person("c", "Asia/Tokyo", AgeBand::Teen))
        .unwrap();
    assert_eq!(pairs(reserve("c", next, 0, 10)), (0, 10));
}

//! End-to-end tests of the embedded engine on a real sled store, the real HNSW index and
//! the real language model (fetched by `make setup`), loaded with seeded worlds.
//!
//! 1. Every user of a world gets an explained page; the next page does not repeat it.
//! 2. Steering in words changes the page ("more cooking", "no politics").
//! 3. A deletion or a revocation is in force for the very next request.
//! 4. Bad input gets a clear error and changes nothing.
//! 5. Reopening loads the index file, or rebuilds the index when the file is missing,
//!    damaged, of format 1 or older than the catalog log reaches, with the reason.
//! 6. Concurrency: feeds on several threads while another deletes and revokes; nothing
//!    deleted or revoked before a request started is served by it.
//! 7. Crash: a child process ingests, revokes and deletes in a loop and is killed with
//!    SIGKILL at random moments, 20 times; after each restart every acknowledged write
//!    is there, nothing revoked or deleted is served, and the store opens cleanly.
//! 8. The index across SIGKILL: a child uploads, deletes and moves videos after the
//!    last save and is killed; the reopened engine loaded the file and replayed the
//!    changes (no rebuild), and every live video is found by its own embedding, no
//!    deleted one at all, moved ones by their new vectors.
//! 9. Uploads past `max_live` end in the graph: after compactions settle, after a clean
//!    reload of a big live segment, and after a SIGKILL reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock};

use jiff::SignedDuration;
use steerfeed::demo::load_world;
use steerfeed::world::{World, WorldConfig};
use steerfeed::{
    AgeBand, Config, ConsentScope, Embedding, Engine, ErrorClass, Event, EventKey, EventKind,
    FeedRequest, OwnVideos, Revocation, SafetyLabel, Timestamp, TopicId, User, UserId, Video,
    VideoId,
};

fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.store.path = dir.to_path_buf();
    // Inside the test's directory (by default it sits beside the store's, outside it).
    c.store.erasure_log = Some(dir.join("erasures.jsonl"));
    c
}

fn small_world(seed: u64) -> World {
    let mut wc = WorldConfig::new(seed, 80, 800);
    wc.events_per_user = 15;
    World::generate(wc)
}

fn loaded(dir: &Path, w: &World) -> Engine {
    let engine = Engine::open(config(dir)).unwrap_or_else(|e| panic!("{e}"));
    load_world(&engine, w, 500).unwrap();
    engine
}

fn u(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn v(s: &str) -> VideoId {
    VideoId::new(s).unwrap()
}

fn page(engine: &Engine, user: &UserId, limit: u32, now: Timestamp) -> Vec<VideoId> {
    engine
        .feed(&FeedRequest::new(user.clone(), limit).unwrap().at(now))
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.video)
        .collect()
}

#[test]
fn every_user_gets_an_explained_page_and_the_next_page_is_new() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(1);
    let engine = loaded(dir.path(), &w);
    assert_eq!(engine.indexed_videos(), w.videos.len());
    let now = w.config.now;
    for sim in w.users.iter().take(20) {
        let req = FeedRequest::new(sim.user.id.clone(), 10).unwrap().at(now);
        let first = engine.feed(&req).unwrap();
        if first.items.is_empty() {
            // Only a gate may empty a page: here, a teen's bedtime in their time zone.
            assert_eq!(
                sim.user.age_band,
                AgeBand::Teen,
                "{} got nothing",
                sim.user.id
            );
            assert_eq!(first.cards.len(), 1);
            assert_eq!(first.cards[0].kind, steerfeed::CardKind::Bedtime);
            assert!(first.next_cursor.is_none());
            continue;
        }
        for item in &first.items {
            assert!(item.score.is_finite());
            assert!(!item.explanation.text.is_empty());
            let video = engine.video(&item.video).unwrap().unwrap();
            assert!(!video.deleted);
            if sim.user.age_band == AgeBand::Teen {
                assert!(!video.safety.contains(&SafetyLabel::Mature));
            }
        }
        let cursor = first.next_cursor.clone().unwrap();
        assert_eq!(cursor.as_str(), "p1");
        let second = engine.feed(&req.clone().with_cursor(cursor)).unwrap();
        assert_eq!(second.next_cursor.unwrap().as_str(), "p2");
        let before: HashSet<_> = first.items.iter().map(|i| &i.video).collect();
        assert!(second.items.iter().all(|i| !before.contains(&i.video)));
    }
    let summary = engine.profile_summary(&w.users[0].user.id).unwrap();
    assert!(summary.recent_items >= 10);
    assert!(!summary.seeing_most.is_empty());
}

fn topic_share(engine: &Engine, items: &[VideoId], t: &str) -> f32 {
    let t = TopicId::new(t).unwrap();
    items
        .iter()
        .filter(|id| engine.video(id).unwrap().unwrap().topics.contains(&t))
        .count() as f32
        / items.len().max(1) as f32
}

#[test]
fn steering_in_words_changes_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(2);
    let engine = loaded(dir.path(), &w);
    let now = w.config.now;
    let adults: Vec<&UserId> = w
        .users
        .iter()
        .filter(|s| s.user.age_band == AgeBand::Adult)
        .map(|s| &s.user.id)
        .collect();
    let (a, b) = (adults[0], adults[1]);
    let c = engine
        .set_preferences(b, "way more cooking videos please", now)
        .unwrap();
    assert_eq!(c.boost[0].topic.as_ref().unwrap().as_str(), "cooking");
    let plain = page(&engine, a, 20, now);
    let steered = page(&engine, b, 20, now);
    let (before, after) = (
        topic_share(&engine, &plain, "cooking"),
        topic_share(&engine, &steered, "cooking"),
    );
    assert!(after > before + 0.15, "cooking {before} -> {after}");
    assert_eq!(engine.preferences(b, now).unwrap().unwrap().constraints, c);

    // Set at the real clock: profile_summary reads the constraints active now.
    engine
        .set_preferences(a, "no politics at all", Timestamp::now())
        .unwrap();
    for _ in 0..3 {
        let items = page(&engine, a, 20, now);
        assert_eq!(topic_share(&engine, &items, "politics"), 0.0);
    }
    let summary = engine.profile_summary(a).unwrap();
    assert!(
        summary
            .steering
            .iter()
            .any(|s| s.starts_with("No politics until ")),
        "{:?}",
        summary.steering
    );
    engine.clear_preferences(a).unwrap();
    assert!(engine.preferences(a, now).unwrap().is_none());
}

/// "Only cooking" in a catalogue where cooking is about one video in forty: the
/// interest search runs inside the topic's own partition of the index (here, after a
/// reopen, read back from the index file), so it proposes every cooking video, not
/// the few among the viewer's nearest of the whole catalogue, and every page is on
/// topic. The cooking videos come from the world's own records.
#[test]
fn only_a_narrow_topic_searches_that_topic_s_partition_of_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(12);
    drop(loaded(dir.path(), &w));
    let engine = Engine::open(config(dir.path())).unwrap();
    assert!(!engine.index_open().rebuilt, "{:?}", engine.index_open());
    let now = w.config.now;
    let cooking = TopicId::new("cooking").unwrap();
    let on_topic: Vec<&Video> = w
        .videos
        .iter()
        .filter(|v| v.topics.contains(&cooking) && v.embedding.is_some())
        .collect();
    assert!(
        on_topic.len() * 20 < w.videos.len() && on_topic.len() >= 5,
        "{} cooking videos of {}",
        on_topic.len(),
        w.videos.len()
    );
    let viewer = &w
        .users
        .iter()
        .find(|s| {
            s.user.age_band == AgeBand::Adult
                && !s
                    .interests
                    .iter()
                    .any(|(t, _)| w.config.topics[*t] == cooking)
        })
        .unwrap()
        .user
        .id;
    let request = FeedRequest::new(viewer.clone(), 20).unwrap().at(now);
    let proposed = |video: &VideoId| {
        engine
            .explain_video(&request, video)
            .unwrap()
            .proposed_by
            .iter()
            .any(|h| h.source == "interest_ann")
    };
    let before = on_topic.iter().filter(|v| proposed(&v.id)).count();
    let c = engine
        .set_preferences(viewer, "only cooking videos", now)
        .unwrap();
    assert_eq!(c.only[0].topic.as_ref(), Some(&cooking), "{c:?}");
    // Without the steering the viewer's nearest videos hold few of them: the case
    // the partition is for.
    assert!(before < on_topic.len(), "{before} of {}", on_topic.len());
    let after = on_topic.iter().filter(|v| proposed(&v.id)).count();
    assert_eq!(after, on_topic.len(), "proposed before: {before}");
    // Pages until the topic runs out: all on topic, and more than the nearest-first
    // search alone could reach.
    let mut served = 0;
    loop {
        let items = page(&engine, viewer, 20, now);
        if items.is_empty() {
            break;
        }
        assert_eq!(topic_share(&engine, &items, "cooking"), 1.0);
        served += items.len();
    }
    assert!(served > before, "{served} served, {before} proposed before");
}

/// An engine loaded from `w` with a new viewer who follows six creators and whose
/// parental controls turn personalization off. With `personal`, the viewer liked eight
/// cooking videos and asked for more cooking; without, someone else made the same likes,
/// so the catalogue's counts are the same in both engines and only the viewer differs.
fn twin_engine(dir: &Path, w: &World, personal: bool) -> (Engine, UserId) {
    let engine = loaded(dir, w);
    let now = w.config.now;
    let (viewer, other) = (u("twin_viewer"), u("twin_other"));
    for id in [&viewer, &other] {
        engine.upsert_user(&User::new(id.clone())).unwrap();
    }
    for creator in w.users.iter().take(6) {
        engine.follow(&viewer, &creator.user.id).unwrap();
    }
    let cooking = TopicId::new("cooking").unwrap();
    let liked: Vec<&Video> = w
        .videos
        .iter()
        .filter(|v| v.topics.contains(&cooking))
        .take(8)
        .collect();
    assert_eq!(liked.len(), 8);
    let liker = if personal { &viewer } else { &other };
    let events: Vec<Event> = liked
        .iter()
        .enumerate()
        .map(|(i, v)| Event {
            key: EventKey::new(format!("twin{i}")).unwrap(),
            user: liker.clone(),
            at: now,
            kind: EventKind::Like {
                video: v.id.clone(),
            },
        })
        .collect();
    engine.ingest_events(&events).unwrap();
    if personal {
        engine
            .set_preferences(&viewer, "way more cooking videos please", now)
            .unwrap();
    }
    let off = steerfeed::ParentalControls {
        personalization: false,
        ..Default::default()
    };
    engine.set_parental_controls(&viewer, &off).unwrap();
    (engine, viewer)
}

/// A burst of engagement makes a quiet video trend: for a newcomer with no history and no
/// follows, `trending` proposes it first and explains it as trending; the list is rebuilt
/// from the event log when the engine reopens, and the burst fades out of it.
#[test]
fn a_burst_of_engagement_makes_a_video_trend_and_it_still_does_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(3);
    let now = w.config.now;
    let engine = loaded(dir.path(), &w);
    let engaged: HashSet<&VideoId> = w.events.iter().filter_map(|e| e.kind.video()).collect();
    let quiet = w
        .videos
        .iter()
        .find(|v| {
            !engaged.contains(&v.id) && v.cameos.is_empty() && v.safety.is_empty() && !v.deleted
        })
        .expect("a video nobody engaged with")
        .id
        .clone();
    let burst: Vec<Event> = w
        .users
        .iter()
        .take(40)
        .enumerate()
        .map(|(i, sim)| Event {
            key: EventKey::new(format!("burst{i}")).unwrap(),
            user: sim.user.id.clone(),
            at: now - SignedDuration::from_mins(3 * (40 - i as i64)),
            kind: EventKind::Like {
                video: quiet.clone(),
            },
        })
        .collect();
    engine.ingest_events(&burst).unwrap();
    engine.upsert_user(&User::new(u("newcomer"))).unwrap();
    let verdict = |engine: &Engine, at: Timestamp| {
        let req = FeedRequest::new(u("newcomer"), 20).unwrap().at(at);
        engine.explain_video(&req, &quiet).unwrap()
    };
    let check = |engine: &Engine| {
        let got = verdict(engine, now);
        let trending = got.proposed_by.iter().find(|h| h.source == "trending");
        assert_eq!(trending.map(|h| h.rank), Some(0), "{:?}", got.proposed_by);
        assert_eq!(got.explanation.unwrap().text, "Trending now");
    };
    check(&engine);
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    check(&engine);
    let week = verdict(&engine, now + SignedDuration::from_hours(24 * 7));
    assert!(
        week.proposed_by.iter().all(|h| h.source != "trending"),
        "{:?}",
        week.proposed_by
    );
}

#[test]
fn personalization_off_serves_what_any_viewer_with_those_follows_would_get() {
    let w = small_world(5);
    let now = w.config.now;
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (personal, viewer) = twin_engine(d1.path(), &w, true);
    let (plain, _) = twin_engine(d2.path(), &w, false);
    let req = FeedRequest::new(viewer.clone(), 20).unwrap().at(now);
    let got = personal.feed(&req).unwrap();
    let want = plain.feed(&req).unwrap();
    assert!(!got.items.is_empty());
    let allowed = [
        "following",
        "social_cameo",
        "remix_trends",
        "trending",
        "popular",
        "fresh",
    ];
    for item in &got.items {
        assert!(
            allowed.contains(&item.source.as_str()),
            "source {}",
            item.source
        );
        assert_eq!(item.breakdown.steering, 0.0, "{}", item.video);
        assert!(
            !item.explanation.text.to_lowercase().contains("asked"),
            "{}",
            item.explanation.text
        );
    }
    assert!(
        got.applied.is_empty(),
        "no steering is applied: {:?}",
        got.applied
    );
    let ids = |r: &steerfeed::FeedResponse| -> Vec<VideoId> {
        r.items.iter().map(|i| i.video.clone()).collect()
    };
    assert_eq!(
        ids(&got),
        ids(&want),
        "history and preferences change nothing"
    );
    // The preferences are kept, for when personalization is on again.
    assert!(personal.preferences(&viewer, now).unwrap().is_some());
    personal
        .set_parental_controls(&viewer, &steerfeed::ParentalControls::default())
        .unwrap();
    let on = personal.feed(&req).unwrap();
    assert!(!on.applied.is_empty());
}

/// A creator `c` with `followers` who follow nobody else, and one fresh video of theirs
/// featuring `p` (who consents to everyone): the video tops each follower's page.
fn a_fresh_followed_video(engine: &Engine, tag: &str, followers: usize, now: Timestamp) -> VideoId {
    let creator = u(&format!("c_{tag}"));
    let person = u(&format!("p_{tag}"));
    for id in [&creator, &person] {
        engine.upsert_user(&User::new(id.clone())).unwrap();
    }
    engine
        .set_consent(&person, ConsentScope::Everyone, &[])
        .unwrap();
    let id = v(&format!("fresh_{tag}"));
    let dim = 384;
    let mut e = vec![0.0f32; dim];
    e[7] = 1.0;
    let video = Video {
        topics: vec![TopicId::new("comedy").unwrap()],
        embedding: Some(Embedding::new("e", &e, dim).unwrap()),
        cameos: vec![person],
        ..Video::new(id.clone(), creator.clone(), now, 15.0)
    };
    engine.upsert_videos(&[video]).unwrap();
    for i in 0..followers {
        let f = u(&format!("f_{tag}_{i}"));
        engine.upsert_user(&User::new(f.clone())).unwrap();
        engine.follow(&f, &creator).unwrap();
    }
    id
}

#[test]
fn a_deletion_a_revocation_or_an_erasure_is_in_force_for_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(3);
    let engine = loaded(dir.path(), &w);
    let now = w.config.now;
    for (tag, how) in [("del", 0), ("rv", 1), ("rc", 2), ("er", 3)] {
        let id = a_fresh_followed_video(&engine, tag, 2, now);
        let f0 = u(&format!("f_{tag}_0"));
        let f1 = u(&format!("f_{tag}_1"));
        assert!(
            page(&engine, &f0, 20, now).contains(&id),
            "precondition: {tag} is served"
        );
        let person = u(&format!("p_{tag}"));
        match how {
            0 => engine.delete_video(&id).unwrap(),
            1 => engine
                .revoke_consent(&person, &Revocation::Video(id.clone()))
                .unwrap(),
            2 => engine
                .revoke_consent(&person, &Revocation::Creator(u(&format!("c_{tag}"))))
                .unwrap(),
            _ => {
                // The person featured is erased: the video leaves the index too.
                let indexed = engine.indexed_videos();
                let report = engine.erase_user(&person, OwnVideos::Keep).unwrap();
                assert_eq!(report.cameo_videos_deleted, 1);
                assert_eq!(engine.indexed_videos(), indexed - 1);
                assert!(engine.user(&person).unwrap().is_none());
                assert!(engine.export_user(&person).unwrap().is_empty());
            }
        }
        assert!(
            !page(&engine, &f1, 20, now).contains(&id),
            "{tag} served after the call"
        );
    }
}

/// A video someone engaged with is not served to them again, whether or not the app
/// also sent an impression: of two followers in the same place, the one who liked,
/// commented on, shared, remixed or skipped the fresh video never gets it; the other does.
#[test]
fn a_video_engaged_with_is_not_served_again() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(4);
    let engine = loaded(dir.path(), &w);
    let now = w.config.now;
    let kinds: [fn(VideoId) -> EventKind; 5] = [
        |video| EventKind::Like { video },
        |video| EventKind::Comment { video },
        |video| EventKind::Share { video },
        |video| EventKind::Remix {
            video,
            new_video: None,
        },
        |video| EventKind::Skip { video },
    ];
    for (n, kind) in kinds.into_iter().enumerate() {
        let tag = format!("eng{n}");
        let id = a_fresh_followed_video(&engine, &tag, 2, now);
        let engaged = u(&format!("f_{tag}_1"));
        let event = Event {
            key: EventKey::new(format!("{tag}_e")).unwrap(),
            user: engaged.clone(),
            at: now,
            kind: kind(id.clone()),
        };
        engine.ingest_events(&[event]).unwrap();
        assert!(
            page(&engine, &u(&format!("f_{tag}_0")), 20, now).contains(&id),
            "precondition: {tag} is served to the follower who did nothing"
        );
        for _ in 0..3 {
            assert!(
                !page(&engine, &engaged, 20, now).contains(&id),
                "{tag}: served again after the engagement"
            );
        }
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(4);
    let engine = loaded(dir.path(), &w);
    let now = w.config.now;
    let videos = engine.store().video_count();

    let err = engine
        .feed(&FeedRequest::new(u("nobody"), 10).unwrap())
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound);

    let mut bad = w.videos[0].clone();
    bad.id = v("new_bad");
    bad.embedding = Some(Embedding::new("e", &[1.0; 8], 8).unwrap());
    let good = Video {
        id: v("new_good"),
        ..w.videos[1].clone()
    };
    let err = engine.upsert_videos(&[good, bad]).unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert_eq!(engine.store().video_count(), videos);
    assert!(
        engine.video(&v("new_good")).unwrap().is_none(),
        "half a batch stored"
    );

    assert!(engine.delete_video(&v("no_such_video")).is_err());
    assert_eq!(engine.store().video_count(), videos);

    let me = &w.users[0].user.id;
    let before = engine.preferences(me, now).unwrap();
    assert!(
        engine
            .set_preferences(me, &"cats ".repeat(20_000), now)
            .is_err()
    );
    assert_eq!(engine.preferences(me, now).unwrap(), before);

    // Approving someone unknown is refused, and the consent stays as it was.
    let consent = |engine: &Engine| {
        let mut out = Vec::new();
        engine
            .export(&[steerfeed::RecordKind::Consent], false, &mut |r| {
                if let steerfeed::Record::Consent { person, .. } = &r
                    && person == me
                {
                    out.push(r);
                }
                Ok(())
            })
            .unwrap();
        out
    };
    let held = consent(&engine);
    let friend = w.users[1].user.id.clone();
    let err = engine
        .set_consent(
            me,
            ConsentScope::Approved,
            &[friend.clone(), u("not_yet_a_user")],
        )
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::NotFound, "{err}");
    assert!(err.to_string().contains("not_yet_a_user"), "{err}");
    assert_eq!(consent(&engine), held);
    engine
        .set_consent(me, ConsentScope::Approved, &[friend])
        .unwrap();
    assert_ne!(consent(&engine), held);

    let bad_cursor = steerfeed::Cursor::new("zz9").unwrap();
    let req = FeedRequest::new(me.clone(), 5)
        .unwrap()
        .with_cursor(bad_cursor);
    assert!(engine.feed(&req).unwrap_err().is_user_error());

    // A retried batch is counted once; a duplicate inside a batch is reported.
    let events: Vec<Event> = (0..5)
        .map(|i| Event {
            key: EventKey::new(format!("retry{i}")).unwrap(),
            user: me.clone(),
            at: now,
            kind: EventKind::Like {
                video: w.videos[i].id.clone(),
            },
        })
        .collect();
    let logged = engine.store().event_count();
    assert_eq!(engine.ingest_events(&events).unwrap().accepted, 5);
    let again = engine.ingest_events(&events).unwrap();
    assert_eq!(again.accepted, 0);
    assert_eq!(again.duplicates.len(), 5);
    assert_eq!(engine.store().event_count(), logged + 5);

    // A bad event rejects its batch whole.
    let mut batch = vec![Event {
        key: EventKey::new("fine").unwrap(),
        ..events[0].clone()
    }];
    batch.push(Event {
        key: EventKey::new("too_long").unwrap(),
        user: me.clone(),
        at: now,
        kind: EventKind::View {
            video: w.videos[0].id.clone(),
            watch_ms: u64::MAX,
            completed: false,
        },
    });
    assert!(engine.ingest_events(&batch).unwrap_err().is_user_error());
    assert_eq!(engine.store().event_count(), logged + 5);

    assert!(engine.follow(&u("ghost"), me).is_err());
}

#[test]
fn blocking_a_creator_hides_them_until_unblocked() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(7);
    let engine = loaded(dir.path(), &w);
    let now = w.config.now;
    let id = a_fresh_followed_video(&engine, "blk", 3, now);
    let creator = u("c_blk");
    let (f0, f1, f2) = (u("f_blk_0"), u("f_blk_1"), u("f_blk_2"));
    assert!(page(&engine, &f0, 20, now).contains(&id), "precondition");
    engine.block(&f1, &creator).unwrap();
    assert!(!page(&engine, &f1, 20, now).contains(&id));
    engine.unblock(&f1, &creator).unwrap();
    assert!(page(&engine, &f1, 20, now).contains(&id));
    engine.mute(&f2, &creator).unwrap();
    assert!(!page(&engine, &f2, 20, now).contains(&id));
}

#[test]
fn an_index_file_older_than_the_index_is_adopted_while_the_log_is_kept_back_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let w = small_world(9);
    let n = w.videos.len();
    let now = w.config.now;
    let engine = loaded(dir.path(), &w);

    // By default a save trims the catalog log up to its own version: a file taken
    // before it can no longer be brought up to date, and adopting it changes nothing.
    let first = files.path().join("first.hnsw");
    let v1 = engine.snapshot_index(&first).unwrap();
    let a = a_fresh_followed_video(&engine, "keep_a", 1, now);
    engine.checkpoint().unwrap();
    assert!(engine.store().catalog_version() > v1);
    assert!(!engine.catalog_log_reaches(v1).unwrap());
    let err = engine.adopt_index_file(&first).unwrap_err();
    assert!(err.to_string().contains("no longer reaches back"), "{err}");
    assert_eq!(engine.indexed_videos(), n + 1);

    // Kept back to a file's version, later saves stop there, and the file is adopted:
    // brought up to every later write, so the video written after it is searchable.
    let second = files.path().join("second.hnsw");
    let v2 = engine.snapshot_index(&second).unwrap();
    engine.keep_catalog_log_from(v2);
    let b = a_fresh_followed_video(&engine, "keep_b", 1, now);
    engine.checkpoint().unwrap();
    assert!(engine.store().catalog_version() > v2);
    assert!(engine.catalog_log_reaches(v2).unwrap());
    assert!(
        !engine.catalog_log_reaches(v1).unwrap(),
        "trimmed stays trimmed"
    );
    assert_eq!(engine.adopt_index_file(&second).unwrap(), Some(v2));
    assert_eq!(engine.indexed_videos(), n + 2);
    assert_eq!(
        engine.index_catalog_version(),
        engine.store().catalog_version()
    );
    assert!(page(&engine, &u("f_keep_b_0"), 20, now).contains(&b));
    assert!(page(&engine, &u("f_keep_a_0"), 20, now).contains(&a));

    // Lifted, the next save trims up to its own version again.
    engine.keep_catalog_log_from(u64::MAX);
    a_fresh_followed_video(&engine, "keep_c", 1, now);
    engine.checkpoint().unwrap();
    assert!(!engine.catalog_log_reaches(v2).unwrap());
}

#[test]
fn reopening_reloads_the_index_or_rebuilds_it_when_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(5);
    let n = w.videos.len();
    drop(loaded(dir.path(), &w)); // checkpoints on drop
    let file = dir.path().join("index.hnsw");
    assert!(file.exists());

    let engine = Engine::open(config(dir.path())).unwrap();
    let open = engine.index_open().clone();
    assert!(!open.rebuilt, "{open:?}");
    assert_eq!((open.loaded, open.replayed), (n, 0));
    assert_eq!(open.version, engine.store().catalog_version());
    assert_eq!(engine.indexed_videos(), n);
    let me = &w.users[1].user.id;
    assert!(!page(&engine, me, 10, w.config.now).is_empty());

    // An index file older than the catalog log reaches: saving the newer index trimmed
    // the log up to its version, so the older file cannot be replayed forward.
    let saved = tempfile::tempdir().unwrap();
    std::fs::copy(&file, saved.path().join("index.hnsw")).unwrap();
    let extra = a_fresh_followed_video(&engine, "late", 1, w.config.now);
    drop(engine);
    std::fs::copy(saved.path().join("index.hnsw"), &file).unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let open = engine.index_open().clone();
    assert!(open.rebuilt, "{open:?}");
    assert!(
        open.reason
            .as_deref()
            .unwrap()
            .contains("catalog log no longer reaches back"),
        "{open:?}"
    );
    assert_eq!(engine.indexed_videos(), n + 1);
    assert!(page(&engine, &u("f_late_0"), 20, w.config.now).contains(&extra));
    drop(engine);

    // Unusable files: each gives its reason and a rebuild, never an error or a panic.
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x08;
    let mut v1 = good.clone();
    v1[8..12].copy_from_slice(&1u32.to_le_bytes());
    /// A case: its name, the file's bytes (none: no file), a leftover file of format
    /// 1 to write beside it, and what the reason must say.
    type Case<'a> = (&'a str, Option<Vec<u8>>, Option<&'a str>, &'a str);
    let cases: [Case<'_>; 6] = [
        ("damaged", Some(flipped), None, "damaged"),
        (
            "format 3",
            Some(as_format_3(&good)),
            None,
            "holds no video topics",
        ),
        (
            "truncated",
            Some(good[..good.len() / 3].to_vec()),
            None,
            "damaged",
        ),
        ("format 1", Some(v1), None, "format version 1"),
        (
            "leftovers of format 1",
            Some(good.clone()),
            Some("index.version"),
            "format 1",
        ),
        ("missing", None, None, "no index file"),
    ];
    for (name, bytes, leftover, reason) in cases {
        match bytes {
            Some(b) => std::fs::write(&file, b).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        if let Some(f) = leftover {
            std::fs::write(dir.path().join(f), b"12").unwrap();
        }
        let engine = Engine::open(config(dir.path())).unwrap();
        let open = engine.index_open().clone();
        assert!(open.rebuilt, "{name}: {open:?}");
        assert!(
            open.reason.as_deref().unwrap().contains(reason),
            "{name}: {open:?}"
        );
        assert_eq!(engine.indexed_videos(), n + 1, "{name}");
        drop(engine);
        // The rebuilt index was saved in the current format, leftovers removed.
        assert!(!dir.path().join("index.version").exists(), "{name}");
        let engine = Engine::open(config(dir.path())).unwrap();
        assert!(
            !engine.index_open().rebuilt,
            "{name}: {:?}",
            engine.index_open()
        );
        drop(engine);
    }
}

/// The same index in format 3, made from a format-4 file here rather than by the
/// encoder: the five sections before TAGS are kept (walked by their lengths), TAGS and
/// PART dropped, the version set to 3 and the FNV-1a 64 checksum recomputed.
fn as_format_3(v4: &[u8]) -> Vec<u8> {
    assert_eq!(u32::from_le_bytes(v4[8..12].try_into().unwrap()), 4);
    let mut at = 24;
    for tag in [b"GRPH", b"VECS", b"LIVE", b"TOMB", b"IDS\0"] {
        assert_eq!(&v4[at..at + 4], tag);
        at += 12 + u64::from_le_bytes(v4[at + 4..at + 12].try_into().unwrap()) as usize;
    }
    assert_eq!(&v4[at..at + 4], b"TAGS");
    let mut out = v4[..at].to_vec();
    out[8..12].copy_from_slice(&3u32.to_le_bytes());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &out {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    out.extend_from_slice(&h.to_le_bytes());
    out
}

#[test]
fn feeds_in_parallel_with_deletes_and_revocations_never_serve_what_was_removed() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(6);
    let engine = Arc::new(loaded(dir.path(), &w));
    let now = w.config.now;
    // Videos that are likely served: the popular and the fresh.
    let victims: Vec<Video> = w.videos.iter().rev().take(60).cloned().collect();
    let removed: Arc<RwLock<HashSet<VideoId>>> = Arc::default();

    std::thread::scope(|s| {
        let writer = {
            let engine = engine.clone();
            let removed = removed.clone();
            let victims = victims.clone();
            s.spawn(move || {
                for (i, video) in victims.iter().enumerate() {
                    // A creator's own likeness in their own video needs no consent: revoke
                    // for someone else featured.
                    let other = video.cameos.iter().find(|p| **p != video.creator);
                    match other {
                        Some(p) if i % 2 == 1 => engine
                            .revoke_consent(p, &Revocation::Video(video.id.clone()))
                            .unwrap(),
                        _ => engine.delete_video(&video.id).unwrap(),
                    }
                    // Recorded only after the call returned.
                    removed.write().unwrap().insert(video.id.clone());
                }
            })
        };
        for t in 0..3 {
            let engine = engine.clone();
            let removed = removed.clone();
            let users: Vec<UserId> = w.users.iter().map(|s| s.user.id.clone()).collect();
            s.spawn(move || {
                let mut served = 0;
                for r in 0..40 {
                    let user = &users[(t * 40 + r) % users.len()];
                    let before: HashSet<VideoId> = removed.read().unwrap().clone();
                    let req = FeedRequest::new(user.clone(), 20).unwrap().at(now);
                    for item in engine.feed(&req).unwrap().items {
                        assert!(
                            !before.contains(&item.video),
                            "{} served after removal",
                            item.video
                        );
                        served += 1;
                    }
                }
                assert!(served > 0);
            });
        }
        writer.join().unwrap();
    });
    assert_eq!(removed.read().unwrap().len(), victims.len());
}

// ---------------------------------------------------------------------------------------
// Crash test.

const CHILD_ENV: &str = "STEERFEED_CRASH_CHILD_DIR";

/// The child: opens the engine on the given store and loops, printing each write after
/// the call that made it returned.
fn crash_child(dir: &Path, round: u64) {
    let engine = Engine::open(config(dir)).unwrap();
    let w = crash_world();
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    writeln!(out, "open").unwrap();
    out.flush().unwrap();
    let mut i = 0u64;
    loop {
        let key = format!("r{round}_e{i}");
        let video = w.videos[(i as usize * 7) % w.videos.len()].id.clone();
        let e = Event {
            key: EventKey::new(key.clone()).unwrap(),
            user: w.users[(i as usize) % w.users.len()].user.id.clone(),
            at: w.config.now,
            kind: EventKind::Like { video },
        };
        engine.ingest_events(&[e]).unwrap();
        writeln!(out, "event {key}").unwrap();
        if i.is_multiple_of(5) {
            let target = &w.videos[(round as usize * 31 + i as usize) % w.videos.len()];
            // A creator's own likeness in their own video needs no consent.
            if let Some(p) = target.cameos.iter().find(|p| **p != target.creator) {
                engine
                    .revoke_consent(p, &Revocation::Video(target.id.clone()))
                    .unwrap();
                writeln!(out, "revoke {}", target.id).unwrap();
            } else if engine.delete_video(&target.id).is_ok() {
                writeln!(out, "delete {}", target.id).unwrap();
            }
        }
        out.flush().unwrap();
        i += 1;
    }
}

fn crash_world() -> World {
    let mut wc = WorldConfig::new(77, 40, 300);
    wc.events_per_user = 5;
    wc.cameo_share = 0.5;
    World::generate(wc)
}

#[test]
fn acknowledged_writes_survive_sigkill_and_nothing_revoked_is_served() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let round = std::env::var("STEERFEED_CRASH_ROUND")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        crash_child(Path::new(&dir), round);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = crash_world();
    drop(loaded(dir.path(), &w));

    let mut events: Vec<String> = Vec::new();
    let mut gone: Vec<VideoId> = Vec::new();
    let mut rng = 0x9e37_79b9_u64;
    for round in 0..20u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "acknowledged_writes_survive_sigkill_and_nothing_revoked_is_served",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("STEERFEED_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let lines_before_kill = 1 + (rng % 40) as usize;
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut seen = 0;
        while seen < lines_before_kill {
            line.clear();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let l = line.trim();
            if let Some(k) = l.strip_prefix("event ") {
                events.push(k.to_owned());
            } else if let Some(id) = l.strip_prefix("revoke ").or(l.strip_prefix("delete ")) {
                gone.push(v(id));
            }
            seen += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines the child wrote before dying were acknowledged too.
        for l in reader.lines().map_while(|l| l.ok()) {
            if let Some(k) = l.strip_prefix("event ") {
                events.push(k.to_owned());
            } else if let Some(id) = l.strip_prefix("revoke ").or(l.strip_prefix("delete ")) {
                gone.push(v(id));
            }
        }

        let engine =
            Engine::open(config(dir.path())).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let mut logged = HashSet::new();
        engine
            .store()
            .for_each_event(1, &mut |_, e| {
                logged.insert(e.key.as_str().to_owned());
                Ok(())
            })
            .unwrap();
        for k in &events {
            assert!(
                logged.contains(k),
                "round {round}: acknowledged event {k} lost"
            );
        }
        let gone_set: HashSet<&VideoId> = gone.iter().collect();
        for sim in w.users.iter().step_by(4) {
            for id in page(&engine, &sim.user.id, 30, w.config.now) {
                assert!(
                    !gone_set.contains(&id),
                    "round {round}: {id} served after removal"
                );
            }
        }
        drop(engine);
    }
    assert!(
        events.len() >= 20,
        "the child acknowledged {} events",
        events.len()
    );
    assert!(!gone.is_empty());
}

// ---------------------------------------------------------------------------------------
// The vector index across crashes: loaded and replayed, not rebuilt.

const INDEX_CHILD_ENV: &str = "STEERFEED_INDEX_CHILD_DIR";
const DIM: usize = 384;

/// A seeded unit vector (the same seed gives the same vector in every process).
fn synthetic_embedding(seed: u64) -> Embedding {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let v: Vec<f32> = (0..DIM)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    Embedding::normalized("embedding", &v).unwrap()
}

/// Makes the creator of [`synthetic_video`]s a known user (a video's creator must be).
fn add_uploader(engine: &Engine) {
    engine.upsert_user(&User::new(u("uploader"))).unwrap();
}

fn synthetic_video(id: &str, seed: u64, now: Timestamp) -> Video {
    Video {
        topics: vec![TopicId::new("comedy").unwrap()],
        embedding: Some(synthetic_embedding(seed)),
        ..Video::new(v(id), u("uploader"), now, 15.0)
    }
}

/// True when a search for `e` finds `id` as an exact match (similarity 1).
fn found_exactly(engine: &Engine, e: &Embedding, id: &VideoId) -> bool {
    engine
        .similar_videos(e, 10)
        .unwrap()
        .iter()
        .any(|n| &n.video == id && n.similarity > 0.999)
}

/// The catalog changes the index child makes after opening, in order; it prints a line
/// after each returned.
enum Change {
    Upload(Vec<Video>),
    Delete(VideoId),
}

fn index_child_changes(w: &World) -> Vec<Change> {
    let now = w.config.now;
    let mut changes = Vec::new();
    // 120 new videos in batches of 10, beyond anything the saved index holds.
    for b in 0..12 {
        let batch = (0..10)
            .map(|i| {
                let n = b * 10 + i;
                synthetic_video(&format!("new{n}"), 1000 + n, now)
            })
            .collect();
        changes.push(Change::Upload(batch));
    }
    // Deletions: ten of the saved index's videos and five of the new ones.
    for video in w.videos.iter().step_by(37).take(10) {
        changes.push(Change::Delete(video.id.clone()));
    }
    for n in [3, 17, 44, 90, 119] {
        changes.push(Change::Delete(v(&format!("new{n}"))));
    }
    // One saved video moves to a new embedding, and so does one new video.
    let mut moved = w.videos[5].clone();
    moved.embedding = Some(synthetic_embedding(77));
    changes.push(Change::Upload(vec![moved]));
    changes.push(Change::Upload(vec![synthetic_video("new7", 78, now)]));
    changes
}

fn index_child(dir: &Path) {
    let engine = Engine::open(config(dir)).unwrap();
    let w = small_world(8);
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    writeln!(out, "open {}", engine.index_open().rebuilt).unwrap();
    add_uploader(&engine);
    for (i, change) in index_child_changes(&w).into_iter().enumerate() {
        match change {
            Change::Upload(videos) => engine.upsert_videos(&videos).unwrap(),
            Change::Delete(id) => engine.delete_video(&id).unwrap(),
        }
        writeln!(out, "change {i}").unwrap();
        out.flush().unwrap();
    }
    writeln!(out, "done").unwrap();
    out.flush().unwrap();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Runs the test binary's `test` as a child with `env` set to `dir`, reads its lines
/// until `until` (or its end), kills it with SIGKILL and returns the lines.
fn run_and_kill(test: &str, env: &str, dir: &Path, until: &str) -> Vec<String> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reader = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in reader.lines().map_while(|l| l.ok()) {
        // The harness's own "test ... " line has no newline: a child's first line ends it.
        let done = line.ends_with(until);
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    lines
}

#[test]
fn after_sigkill_the_index_is_loaded_and_replayed_not_rebuilt() {
    const TEST: &str = "after_sigkill_the_index_is_loaded_and_replayed_not_rebuilt";
    if let Ok(dir) = std::env::var(INDEX_CHILD_ENV) {
        index_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(8);
    let n = w.videos.len();
    drop(loaded(dir.path(), &w)); // saves the index

    let lines = run_and_kill(TEST, INDEX_CHILD_ENV, dir.path(), "done");
    // The harness prints its own lines first: "open" ends one of them.
    assert!(lines.iter().any(|l| l.ends_with("open false")), "{lines:?}");
    assert!(
        lines.last().is_some_and(|l| l.ends_with("done")),
        "{lines:?}"
    );

    let engine = Engine::open(config(dir.path())).unwrap();
    let open = engine.index_open().clone();
    assert!(!open.rebuilt, "rebuilt after SIGKILL: {open:?}");
    assert_eq!(open.loaded, n, "{open:?}");
    // 120 uploads, 10 deletions of saved videos, 1 saved video moved (the deleted and
    // moved new videos are among the 120).
    assert_eq!(open.replayed, 120 + 10 + 1, "{open:?}");
    assert_eq!(open.version, engine.store().catalog_version());
    assert_eq!(engine.indexed_videos(), n + 120 - 10 - 5);

    // The index equals the store: every live video is found by its own stored
    // embedding, no deleted one is found at all.
    let mut ids: Vec<VideoId> = w.videos.iter().map(|x| x.id.clone()).collect();
    ids.extend((0..120).map(|i| v(&format!("new{i}"))));
    let (mut live, mut deleted) = (0, 0);
    for id in &ids {
        let video = engine.video(id).unwrap().unwrap();
        let e = video.embedding.clone().unwrap();
        if video.deleted {
            deleted += 1;
            assert!(
                engine
                    .similar_videos(&e, 50)
                    .unwrap()
                    .iter()
                    .all(|x| &x.video != id),
                "deleted {id} returned"
            );
        } else {
            live += 1;
            assert!(
                found_exactly(&engine, &e, id),
                "{id} not found by its embedding"
            );
        }
    }
    assert_eq!((live, deleted), (n + 120 - 15, 15));
    // The moved videos are found by their new vectors, and no longer by their old ones.
    let old = w.videos[5].embedding.clone().unwrap();
    assert!(found_exactly(
        &engine,
        &synthetic_embedding(77),
        &w.videos[5].id
    ));
    assert!(!found_exactly(&engine, &old, &w.videos[5].id));
    assert!(found_exactly(&engine, &synthetic_embedding(78), &v("new7")));
    assert!(!found_exactly(
        &engine,
        &synthetic_embedding(1007),
        &v("new7")
    ));
    drop(engine);

    // The clean shutdown saved the replayed index: the next open replays nothing.
    let engine = Engine::open(config(dir.path())).unwrap();
    let open = engine.index_open().clone();
    assert!(!open.rebuilt && open.replayed == 0, "{open:?}");
    assert_eq!(open.loaded, n + 120 - 15);
}

fn small_index_config(dir: &Path, max_live: usize) -> Config {
    let mut c = config(dir);
    c.index.build.max_live = max_live;
    c.index.build.m = 8;
    c.index.build.ef_construction = 40;
    c
}

/// Polls until no compaction runs (seen twice, 100 ms apart); starts none itself. The
/// bound is generous and not a timing assertion: a failure says compactions never stopped.
fn settle(engine: &Engine) -> steerfeed::ann::IndexStats {
    let mut idle = 0;
    for _ in 0..3_000 {
        idle = if engine.index_stats().compacting {
            0
        } else {
            idle + 1
        };
        if idle == 2 {
            return engine.index_stats();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "compactions still running after 300 s: {:?}",
        engine.index_stats()
    );
}

fn assert_folded(engine: &Engine, total: usize, max_live: usize, when: &str) {
    let s = settle(engine);
    assert_eq!(s.live_ids, total, "{when}: {s:?}");
    assert!(
        s.live_segment < max_live,
        "{when}: live segment not folded: {s:?}"
    );
    assert_eq!(
        s.graph_nodes - s.graph_tombstones + s.live_segment,
        total,
        "{when}: {s:?}"
    );
}

const BULK_CHILD_ENV: &str = "STEERFEED_BULK_CHILD_DIR";
const BULK_MAX_LIVE: usize = 200;

/// Uploads videos `from..to` in batches of 50.
fn upload_range(engine: &Engine, from: u64, to: u64) {
    let now = Timestamp::from_second(1_795_000_000).unwrap();
    add_uploader(engine);
    let ids: Vec<u64> = (from..to).collect();
    for chunk in ids.chunks(50) {
        let batch: Vec<Video> = chunk
            .iter()
            .map(|&i| synthetic_video(&format!("bulk{i}"), i, now))
            .collect();
        engine.upsert_videos(&batch).unwrap();
    }
}

#[test]
fn uploads_past_max_live_end_in_the_graph_after_settling_reloading_and_sigkill() {
    const TEST: &str =
        "uploads_past_max_live_end_in_the_graph_after_settling_reloading_and_sigkill";
    let max_live = BULK_MAX_LIVE;
    if let Ok(dir) = std::env::var(BULK_CHILD_ENV) {
        let engine = Engine::open(small_index_config(Path::new(&dir), max_live)).unwrap();
        upload_range(&engine, 2500, 3500);
        println!("done");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(small_index_config(dir.path(), max_live)).unwrap();
    // Uploads arrive far faster than a graph builds.
    upload_range(&engine, 0, 2000);
    assert_folded(&engine, 2000, max_live, "after uploads");
    let before = engine.index_stats().compactions;

    // A clean shutdown with a big live segment (written with compactions off): the
    // reload folds it.
    drop(engine);
    let engine = Engine::open(small_index_config(dir.path(), 0)).unwrap();
    upload_range(&engine, 2000, 2500);
    assert!(engine.index_stats().live_segment >= 500);
    drop(engine);
    let engine = Engine::open(small_index_config(dir.path(), max_live)).unwrap();
    assert!(!engine.index_open().rebuilt, "{:?}", engine.index_open());
    assert_folded(&engine, 2500, max_live, "after a clean reload");
    assert!(before >= 1);
    drop(engine);

    // SIGKILL right after more uploads (background saves ran meanwhile, after the
    // compactions): the reload replays what the last save missed and folds it.
    let lines = run_and_kill(TEST, BULK_CHILD_ENV, dir.path(), "done");
    assert!(
        lines.last().is_some_and(|l| l.ends_with("done")),
        "{lines:?}"
    );
    let engine = Engine::open(small_index_config(dir.path(), max_live)).unwrap();
    let open = engine.index_open().clone();
    assert!(!open.rebuilt, "{open:?}");
    assert!(
        open.loaded >= 2500 && open.loaded + open.replayed >= 3500,
        "{open:?}"
    );
    assert_eq!(engine.indexed_videos(), 3500);
    assert_folded(&engine, 3500, max_live, "after a SIGKILL reload");
}

const FOLD_CHILD_ENV: &str = "STEERFEED_FOLD_CHILD_DIR";

/// The catalog version in an index file's header (after the magic, the format version
/// and the dimension).
fn index_file_version(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join("index.hnsw")).ok()?;
    Some(u64::from_le_bytes(bytes.get(16..24)?.try_into().ok()?))
}

#[test]
fn folds_are_saved_in_the_background_so_a_sigkill_replays_little() {
    const TEST: &str = "folds_are_saved_in_the_background_so_a_sigkill_replays_little";
    let max_live = 50;
    if let Ok(dir) = std::env::var(FOLD_CHILD_ENV) {
        let dir = Path::new(&dir);
        let engine = Engine::open(small_index_config(dir, max_live)).unwrap();
        let before = index_file_version(dir);
        // 600 uploads: whenever a save lands before the fifth batch is in, at least 350
        // folds (over a tenth of the graph) remain, so another save is due.
        upload_range(&engine, 1000, 1600);
        // Bounded wait for a background save that holds the first 250 uploads (five
        // batches, five catalog versions); not a timing assertion: the parent checks
        // what the file holds.
        let before = before.unwrap();
        let mut saved = false;
        for _ in 0..1200 {
            if index_file_version(dir).is_some_and(|v| v >= before + 5) {
                saved = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        println!("saved {saved} folded {}", engine.index_stats().folded);
        println!("done");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(small_index_config(dir.path(), max_live)).unwrap();
    upload_range(&engine, 0, 1000);
    assert_folded(&engine, 1000, max_live, "after uploads");
    drop(engine);

    let lines = run_and_kill(TEST, FOLD_CHILD_ENV, dir.path(), "done");
    assert!(
        lines.iter().any(|l| l.contains("saved true")),
        "no save after the folds: {lines:?}"
    );
    let engine = Engine::open(small_index_config(dir.path(), max_live)).unwrap();
    let open = engine.index_open().clone();
    assert!(!open.rebuilt, "{open:?}");
    // The file holds at least the first 250 uploads; what came after it replays.
    assert!(open.loaded >= 1250, "{open:?}");
    assert_eq!(engine.indexed_videos(), 1600);
    assert_folded(&engine, 1600, max_live, "after a SIGKILL reload");
}

/// A unit vector near `centre`: `centre` plus a little of another synthetic direction.
fn near(centre: &Embedding, seed: u64) -> Embedding {
    let jitter = synthetic_embedding(seed);
    let v: Vec<f32> = centre
        .as_slice()
        .iter()
        .zip(jitter.as_slice())
        .map(|(c, j)| c + 0.2 * j)
        .collect();
    Embedding::normalized("embedding", &v).unwrap()
}

/// The viewer liked twelve videos of one cluster three days ago and four of another
/// just now: the stored interest vector (a week's half-life) still points at the first,
/// the recent profile at the second. With `[rank.recent_profile] share = 1` the
/// interest-driven items come from the second cluster; with 0, from the first.
#[test]
fn the_recent_profile_moves_the_interest_toward_the_newest_engagements() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::from_second(1_795_000_000).unwrap();
    let (a, b) = (synthetic_embedding(1), synthetic_embedding(2));
    let cluster = |name: &str, centre: &Embedding, base: u64| -> Vec<Video> {
        (0..30)
            .map(|i| Video {
                embedding: Some(near(centre, base + i)),
                ..synthetic_video(
                    &format!("{name}{i}"),
                    0,
                    now - SignedDuration::from_hours(24 * 5),
                )
            })
            .collect()
    };
    let (old, new) = (cluster("a", &a, 1_000), cluster("b", &b, 2_000));
    let open = |share: f32| {
        let mut c = config(dir.path());
        c.rank.recent_profile.share = share;
        Engine::open(c).unwrap()
    };
    {
        let engine = open(0.0);
        add_uploader(&engine);
        engine.upsert_user(&User::new(u("viewer"))).unwrap();
        engine.upsert_videos(&old).unwrap();
        engine.upsert_videos(&new).unwrap();
        let like = |n: usize, video: &Video, at: Timestamp| Event {
            key: EventKey::new(format!("like{n}")).unwrap(),
            user: u("viewer"),
            at,
            kind: EventKind::Like {
                video: video.id.clone(),
            },
        };
        let mut events: Vec<Event> = old[..12]
            .iter()
            .enumerate()
            .map(|(n, x)| like(n, x, now - SignedDuration::from_hours(72)))
            .collect();
        events.extend(
            new[..4]
                .iter()
                .enumerate()
                .map(|(n, x)| like(100 + n, x, now - SignedDuration::from_mins(5 - n as i64))),
        );
        engine.ingest_events(&events).unwrap();
    }
    let interest_items = |share: f32| -> (usize, usize) {
        let engine = open(share);
        let page = engine
            .feed(&FeedRequest::new(u("viewer"), 10).unwrap().at(now))
            .unwrap();
        let from_interest: Vec<&str> = page
            .items
            .iter()
            .filter(|i| i.source == "interest_ann")
            .map(|i| i.video.as_str())
            .collect();
        let count = |p: &str| from_interest.iter().filter(|v| v.starts_with(p)).count();
        (count("a"), count("b"))
    };
    let (a_long, b_long) = interest_items(0.0);
    assert!(
        a_long > b_long,
        "share 0: the stored interest leads: a {a_long}, b {b_long}"
    );
    let (a_recent, b_recent) = interest_items(1.0);
    assert!(
        b_recent > a_recent,
        "share 1: the recent profile leads: a {a_recent}, b {b_recent}"
    );
}

/// Five people liked `seed` and then `next`; the viewer liked `seed`. Their page serves
/// `next` from the co-engagement source, explained by quoting the start of `seed`'s
/// caption.
#[test]
fn a_co_engagement_item_is_explained_by_the_video_that_proposed_it() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::from_second(1_795_000_000).unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    add_uploader(&engine);
    let seed = Video {
        caption: "Paper boats racing down a gutter after the rain, filmed at kerb height \
                  with a slow pan"
            .to_owned(),
        ..synthetic_video("seed", 1, now - SignedDuration::from_hours(48))
    };
    let next = synthetic_video("next", 2, now - SignedDuration::from_hours(48));
    engine.upsert_videos(&[seed, next]).unwrap();
    let mut events = Vec::new();
    let mut like = |who: &str, video: &str, at: Timestamp| {
        events.push(Event {
            key: EventKey::new(format!("{who}-{video}")).unwrap(),
            user: u(who),
            at,
            kind: EventKind::Like { video: v(video) },
        });
    };
    for p in 0..5 {
        let who = format!("p{p}");
        engine.upsert_user(&User::new(u(&who))).unwrap();
        like(&who, "seed", now - SignedDuration::from_hours(3));
        like(&who, "next", now - SignedDuration::from_hours(2));
    }
    engine.upsert_user(&User::new(u("viewer"))).unwrap();
    like("viewer", "seed", now - SignedDuration::from_mins(10));
    engine.ingest_events(&events).unwrap();
    let page = engine
        .feed(&FeedRequest::new(u("viewer"), 10).unwrap().at(now))
        .unwrap();
    let item = page
        .items
        .iter()
        .find(|i| i.video == v("next"))
        .unwrap_or_else(|| panic!("next not served: {page:?}"));
    assert_eq!(item.source, "co_engagement");
    assert_eq!(
        item.explanation.text,
        // The first 60 characters end inside "kerb": cut at the word before it.
        "Because you watched \u{201c}Paper boats racing down a gutter after the rain, filmed \
         at\u{2026}\u{201d}"
    );
    let json = serde_json::to_value(&item.explanation).unwrap();
    assert_eq!(json["reason"]["because"], "seed");
}

#[test]
fn the_taxonomy_labels_videos_by_topic_and_keeps_mature_ones_from_teens() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = small_world(1);
    // Copies of popular videos sent with a labelled topic and without its label, as an
    // app that forgets the label would.
    let mut unlabelled: Vec<VideoId> = Vec::new();
    for (i, source) in w.videos.clone().iter().take(30).enumerate() {
        let mut copy = source.clone();
        copy.id = v(&format!("unlabelled{i}"));
        copy.topics = vec![TopicId::new("mature").unwrap()];
        copy.safety.clear();
        unlabelled.push(copy.id.clone());
        w.videos.push(copy);
    }
    let engine = loaded(dir.path(), &w);
    for id in &unlabelled {
        let video = engine.video(id).unwrap().unwrap();
        assert!(video.safety.contains(&SafetyLabel::Mature), "{video:?}");
    }
    let now = w.config.now;
    let teens: Vec<_> = w
        .users
        .iter()
        .filter(|u| u.user.age_band == AgeBand::Teen)
        .take(10)
        .collect();
    assert!(!teens.is_empty());
    for sim in teens {
        for id in page(&engine, &sim.user.id, 20, now) {
            assert!(
                !unlabelled.contains(&id),
                "{id} served to teen {}",
                sim.user.id
            );
        }
    }
}

#[test]
fn concurrent_preference_edits_of_one_user_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(1);
    let engine = loaded(dir.path(), &w);
    let user = w
        .users
        .iter()
        .find(|u| u.user.age_band == AgeBand::Adult)
        .unwrap()
        .user
        .id
        .clone();
    let now = w.config.now;
    engine.set_preferences(&user, "more cooking", now).unwrap();
    // Each thread adds one request; an edit that read the preferences before another's
    // write and wrote after it would drop that other request.
    let adds = [
        ("more cats and dogs", "pets"),
        ("more soccer goals", "soccer"),
        ("more anime edits", "anime"),
        ("more rocket launches and space", "science"),
        ("more stand-up comedy", "comedy"),
        ("more guitar covers", "music"),
    ];
    std::thread::scope(|s| {
        for (text, _) in adds {
            let (engine, user) = (&engine, &user);
            s.spawn(move || {
                let edit = steerfeed::PreferenceEdit {
                    add: Some(text.to_owned()),
                    ..Default::default()
                };
                engine.edit_preferences(user, &edit, now).unwrap();
            });
        }
    });
    let prefs = engine.preferences(&user, now).unwrap().unwrap();
    let boosted: HashSet<&str> = prefs
        .constraints
        .boost
        .iter()
        .filter_map(|x| x.topic.as_ref().map(|t| t.as_str()))
        .collect();
    for (text, topic) in adds {
        assert!(boosted.contains(topic), "{text:?} lost: {boosted:?}");
        assert!(prefs.text.contains(text), "{:?}", prefs.text);
    }
    assert!(boosted.contains("cooking"));
}

#[test]
fn an_item_past_its_own_expiry_is_no_longer_shown() {
    let dir = tempfile::tempdir().unwrap();
    let w = small_world(1);
    let engine = loaded(dir.path(), &w);
    let user = &w
        .users
        .iter()
        .find(|u| u.user.age_band == AgeBand::Adult)
        .unwrap()
        .user
        .id;
    let now = w.config.now;
    engine
        .set_preferences(user, "more cooking, no politics", now)
        .unwrap();
    let hour = jiff::SignedDuration::from_hours(1);
    let edit = steerfeed::PreferenceEdit {
        change: vec![steerfeed::ItemChange {
            list: steerfeed::ItemList::Exclude,
            topic: Some(TopicId::new("politics").unwrap()),
            phrase: None,
            strength: None,
            expires_at: Some(now.checked_add(hour).unwrap()),
        }],
        ..Default::default()
    };
    engine.edit_preferences(user, &edit, now).unwrap();
    let topics = |at: Timestamp| -> Vec<String> {
        let p = engine.preferences(user, at).unwrap().unwrap();
        p.constraints
            .boost
            .iter()
            .filter_map(|x| x.topic.as_ref())
            .chain(
                p.constraints
                    .exclude
                    .iter()
                    .filter_map(|x| x.topic.as_ref()),
            )
            .map(|t| t.as_str().to_owned())
            .collect()
    };
    assert_eq!(topics(now), ["cooking", "politics"]);
    let later = now.checked_add(hour * 2).unwrap();
    assert_eq!(topics(later), ["cooking"]);
    // The set itself is kept, with its own expiry and its text.
    let p = engine.preferences(user, later).unwrap().unwrap();
    assert!(p.constraints.expires_at.is_some());
    assert_eq!(p.text, "more cooking, no politics");
    assert!(
        p.summary
            .iter()
            .all(|s| !s.to_lowercase().contains("politics")),
        "{:?}",
        p.summary
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn restoring_the_whole_store_directory_from_before_an_erasure_forgets_the_person_again() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let backup = root.path().join("backup");
    let mut c = Config::default();
    c.store.path = data.clone();
    let person = u("restored_person");
    {
        let engine = Engine::open(c.clone()).unwrap();
        engine.upsert_user(&User::new(person.clone())).unwrap();
        engine.upsert_user(&User::new(u("maker"))).unwrap();
        engine
            .set_consent(&person, ConsentScope::Everyone, &[])
            .unwrap();
        engine
            .upsert_videos(&[Video {
                caption: "two friends bake bread".into(),
                cameos: vec![person.clone()],
                ..Video::new(v("with_them"), u("maker"), Timestamp::now(), 20.0)
            }])
            .unwrap();
    }
    // A backup of the whole directory (store and index), then the erasure.
    copy_dir(&data, &backup);
    {
        let engine = Engine::open(c.clone()).unwrap();
        engine.erase_user(&person, OwnVideos::Delete).unwrap();
    }
    // The log sits beside the directory, not in it.
    assert!(root.path().join("data.erasures.jsonl").exists());
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&backup, &data);
    let engine = Engine::open(c).unwrap();
    assert!(engine.user(&person).unwrap().is_none());
    assert!(engine.export_user(&person).unwrap().is_empty());
    assert!(engine.video(&v("with_them")).unwrap().unwrap().deleted);
    assert_eq!(engine.indexed_videos(), 0, "the restored index caught up");
}

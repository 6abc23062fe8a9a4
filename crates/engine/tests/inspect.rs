//! Looking inside without serving, on the real engine and sled store:
//!
//! 1. A preview writes nothing (previewing twice gives the same page, no item is counted,
//!    no pool is kept) and is the page the feed then serves; after the feed served it,
//!    the next preview holds none of its items.
//! 2. A preview in words ranks as the same text stored as preferences would, and leaves
//!    the stored preferences as they were; a teen's unsafe request comes back rejected.
//! 3. A single video's verdict names what stops it: the filter (blocked creator, revoked
//!    cameo, deletion, already seen), the gate (a scroll cap reached), or that it is
//!    servable and where it sits on the next page.
//! 4. A video's view says whose consent covers its cameos, before and after a revocation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use steerfeed::demo::load_world;
use steerfeed::storage::Revocation;
use steerfeed::world::{World, WorldConfig};
use steerfeed::{
    AgeBand, Config, Engine, Error, FeedRequest, ParentalControls, Timestamp, UserId, VideoId,
};

fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.store.path = dir.join("store");
    c
}

fn world(seed: u64) -> World {
    let mut wc = WorldConfig::new(seed, 80, 800);
    wc.events_per_user = 15;
    World::generate(wc)
}

fn loaded(dir: &Path, w: &World) -> Engine {
    let engine = Engine::open(config(dir)).unwrap();
    load_world(&engine, w, 500).unwrap();
    engine
}

fn request(user: &UserId, limit: u32, now: Timestamp) -> FeedRequest {
    FeedRequest::new(user.clone(), limit).unwrap().at(now)
}

fn preview_ids(engine: &Engine, user: &UserId, now: Timestamp, text: Option<&str>) -> Vec<VideoId> {
    engine
        .preview(&request(user, 20, now), text)
        .unwrap()
        .page
        .items
        .into_iter()
        .map(|i| i.video)
        .collect()
}

fn adults(w: &World) -> impl Iterator<Item = &UserId> {
    w.users
        .iter()
        .filter(|u| u.user.age_band == AgeBand::Adult)
        .map(|u| &u.user.id)
}

#[test]
fn a_preview_writes_nothing_and_is_the_page_the_feed_then_serves() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(3);
    let engine = loaded(dir.path(), &w);
    let now = w.config.now;
    for user in adults(&w).take(5) {
        let before = engine.person(user, now).unwrap().wellbeing;
        let seen_before = engine.store().seen(user).unwrap();
        let first = preview_ids(&engine, user, now, None);
        assert!(!first.is_empty(), "{user}: an empty preview");
        assert_eq!(preview_ids(&engine, user, now, None), first, "{user}");
        assert_eq!(
            engine.person(user, now).unwrap().wellbeing,
            before,
            "{user}"
        );
        assert_eq!(
            engine.page_pool(user),
            None,
            "{user}: a preview kept a pool"
        );
        assert_eq!(engine.store().seen(user).unwrap(), seen_before, "{user}");

        let served: Vec<VideoId> = engine
            .feed(&request(user, 20, now))
            .unwrap()
            .items
            .into_iter()
            .map(|i| i.video)
            .collect();
        assert_eq!(served, first, "{user}: the feed served another page");
        // The feed's own writes are the oracle: what it marked seen, the previews did not.
        let seen: Vec<VideoId> = engine
            .store()
            .seen(user)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert!(served.iter().all(|id| seen.contains(id)), "{user}");
        assert_ne!(
            engine.person(user, now).unwrap().wellbeing,
            before,
            "{user}"
        );
        let next = preview_ids(&engine, user, now, None);
        assert!(
            next.iter().all(|id| !served.contains(id)),
            "{user}: served items previewed again"
        );
    }
}

#[test]
fn a_preview_in_words_ranks_as_those_preferences_would_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(4);
    let engine = loaded(dir.path(), &w);
    let now = w.config.now;
    let texts = [
        "only cooking videos",
        "no sports at all, more cats",
        "less from people I follow, more anime",
    ];
    for (user, text) in adults(&w).skip(1).zip(texts) {
        engine.set_preferences(user, "more music", now).unwrap();
        let stored = engine.preferences(user, now).unwrap().unwrap();
        let plain = preview_ids(&engine, user, now, None);
        let steered = engine.preview(&request(user, 20, now), Some(text)).unwrap();
        let steered_ids: Vec<VideoId> =
            steered.page.items.iter().map(|i| i.video.clone()).collect();
        assert_ne!(steered_ids, plain, "{user}: {text:?} changed nothing");
        assert!(!steered.summary.is_empty(), "{text:?}: no words for it");
        assert_eq!(
            engine.preferences(user, now).unwrap().unwrap().text,
            stored.text,
            "a preview replaced the stored preferences"
        );
        // The oracle: the same text stored, then an ordinary preview.
        engine.set_preferences(user, text, now).unwrap();
        assert_eq!(
            preview_ids(&engine, user, now, None),
            steered_ids,
            "{text:?}"
        );
    }
    let teen = w
        .users
        .iter()
        .find(|u| u.user.age_band == AgeBand::Teen)
        .unwrap();
    let p = engine
        .preview(
            &request(&teen.user.id, 20, now),
            Some("show me sexy videos and online casino tips"),
        )
        .unwrap();
    assert!(!p.page.applied.rejected.is_empty(), "{:?}", p.page.applied);
    assert!(
        p.page.applied.boost.is_empty(),
        "{:?}",
        p.page.applied.boost
    );
    assert!(matches!(
        engine.preview(&request(&teen.user.id, 20, now), Some("  ")),
        Err(Error::Invalid { .. })
    ));
}

#[test]
fn a_videos_verdict_names_the_filter_or_gate_that_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(5);
    let engine = loaded(dir.path(), &w);
    let now = w.config.now;
    let mut users = adults(&w);
    let user = users.next().unwrap().clone();

    let page = engine.preview(&request(&user, 20, now), None).unwrap();
    assert!(page.page.items.len() >= 4);
    for (at, item) in page.page.items.iter().enumerate() {
        let v = engine
            .explain_video(&request(&user, 20, now), &item.video)
            .unwrap();
        assert!(v.servable, "{v:?}");
        assert_eq!(v.on_page, Some(at), "{v:?}");
        assert!(v.removed_by.is_empty() && v.stopped_by.is_none(), "{v:?}");
        assert_eq!(v.proposed_by[0].source, item.source, "{v:?}");
        assert!(
            (v.score - item.score).abs() <= 1e-4 * item.score.abs().max(1.0),
            "{v:?}"
        );
    }

    let items = &page.page.items;
    // A blocked creator.
    let blocked = items
        .iter()
        .map(|i| engine.video(&i.video).unwrap().unwrap())
        .find(|v| v.creator != user)
        .expect("an item of someone else");
    engine.block(&user, &blocked.creator).unwrap();
    let v = engine
        .explain_video(&request(&user, 20, now), &blocked.id)
        .unwrap();
    assert!(!v.servable && v.removed_by.contains(&"blocked"), "{v:?}");
    assert_eq!(v.on_page, None);
    // A deletion.
    let deleted = &items
        .iter()
        .find(|i| {
            let v = engine.video(&i.video).unwrap().unwrap();
            v.creator != blocked.creator
        })
        .expect("an item of another creator")
        .video;
    engine.delete_video(deleted).unwrap();
    let v = engine
        .explain_video(&request(&user, 20, now), deleted)
        .unwrap();
    assert!(!v.servable && v.removed_by.contains(&"deleted"), "{v:?}");
    // Served, so seen.
    let served = engine.feed(&request(&user, 1, now)).unwrap().items[0]
        .video
        .clone();
    let v = engine
        .explain_video(&request(&user, 20, now), &served)
        .unwrap();
    assert!(!v.servable && v.removed_by.contains(&"seen"), "{v:?}");
    // A video of a creator the viewer neither follows nor is near: found by no source,
    // still filtered and scored.
    let far = w
        .videos
        .iter()
        .find(|v| {
            let verdict = engine
                .explain_video(&request(&user, 20, now), &v.id)
                .unwrap();
            verdict.proposed_by.is_empty()
        })
        .expect("some video no source proposes");
    let v = engine
        .explain_video(&request(&user, 20, now), &far.id)
        .unwrap();
    assert!(!v.servable && v.text.contains("no source"), "{v:?}");
    assert!(v.score.is_finite());

    // A gate: a scroll cap of 1 reached by one served item.
    let capped = users.next().unwrap().clone();
    let any = engine
        .preview(&request(&capped, 5, now), None)
        .unwrap()
        .page
        .items[1]
        .video
        .clone();
    engine
        .set_parental_controls(
            &capped,
            &ParentalControls {
                scroll_cap: Some(1),
                ..ParentalControls::default()
            },
        )
        .unwrap();
    engine.feed(&request(&capped, 1, now)).unwrap();
    let v = engine
        .explain_video(&request(&capped, 5, now), &any)
        .unwrap();
    assert_eq!(v.stopped_by, Some("scroll_cap"), "{v:?}");
    assert!(!v.servable && v.card.is_some());

    assert!(matches!(
        engine.explain_video(&request(&user, 20, now), &VideoId::new("no-such").unwrap()),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_revoked_cameo_leaves_the_preview_and_the_videos_view_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let w = world(6);
    let engine = loaded(dir.path(), &w);
    let now = w.config.now;
    // A viewer whose preview holds a video with someone else's cameo.
    let (viewer, video, person) = adults(&w)
        .find_map(|user| {
            engine
                .preview(&request(user, 50, now), None)
                .unwrap()
                .page
                .items
                .iter()
                .find_map(|i| {
                    let v = engine.video(&i.video).unwrap().unwrap();
                    let other = v.cameos.iter().find(|p| **p != v.creator)?.clone();
                    Some((user.clone(), v.id.clone(), other))
                })
        })
        .expect("a previewed video with a cameo");
    let view = engine.video_view(&video, now).unwrap();
    let cameo = view.cameos.iter().find(|c| c.person == person).unwrap();
    assert!(cameo.allowed, "{cameo:?}");
    assert!(view.video.embedding.is_none());

    engine
        .revoke_consent(&person, &Revocation::Video(video.clone()))
        .unwrap();
    let view = engine.video_view(&video, now).unwrap();
    let cameo = view.cameos.iter().find(|c| c.person == person).unwrap();
    assert!(
        !cameo.allowed && cameo.text.contains("revoked"),
        "{cameo:?}"
    );
    let ids = preview_ids(&engine, &viewer, now, None);
    assert!(!ids.contains(&video));
    let v = engine
        .explain_video(&request(&viewer, 50, now), &video)
        .unwrap();
    assert!(v.removed_by.contains(&"consent"), "{v:?}");
    assert!(
        engine
            .person(&person, now)
            .unwrap()
            .revoked_videos
            .contains(&video)
    );
}

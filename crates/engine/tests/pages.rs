//! Page pools (`[pages]`) end to end, on a real store, index and model: a session's
//! later pages come from what its first ranking left, and every rule still holds.
//!
//! 1. Later pages come from the pool, are new, and stay explained and within the rules.
//! 2. A deletion, a revocation or a block is in force for a pooled page at once.
//! 3. A preference change, another session or an expired pool ranks from scratch.
//! 4. An event that changes what the next page must be (a check-in answer, a negative
//!    signal) ends the pool: a "not great" answer lightens the very next page.
//! 5. A teen's served items count against the daily cap before the app reports them,
//!    and pages ranked at once serve the cap between them, never more.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;

use steerfeed::demo::load_world;
use steerfeed::world::{World, WorldConfig};
use steerfeed::{
    AgeBand, CardKind, CheckinAnswer, Config, Engine, Event, EventKey, EventKind, FeedRequest,
    FeedResponse, Revocation, SafetyLabel, SessionId, Timestamp, Trace, UserId, VideoId,
};

fn engine(dir: &Path, seed: u64) -> (Engine, World) {
    engine_with(dir, seed, Config::default())
}

fn engine_with(dir: &Path, seed: u64, mut c: Config) -> (Engine, World) {
    c.store.path = dir.to_path_buf();
    c.pages.pool_ttl_s = 60;
    c.pages.pool_size = 120;
    let mut wc = WorldConfig::new(seed, 80, 800);
    wc.events_per_user = 15;
    let w = World::generate(wc);
    let engine = Engine::open(c).unwrap_or_else(|e| panic!("{e}"));
    load_world(&engine, &w, 500).unwrap();
    (engine, w)
}

fn feed(
    engine: &Engine,
    user: &UserId,
    limit: u32,
    session: &str,
    now: Timestamp,
) -> (FeedResponse, Trace) {
    let req = FeedRequest::new(user.clone(), limit)
        .unwrap()
        .with_session(SessionId::new(session).unwrap())
        .at(now);
    engine.feed_traced(&req).unwrap()
}

fn pooled(trace: &Trace) -> bool {
    trace.stages.iter().any(|s| s.stage == "pool")
}

fn ids(r: &FeedResponse) -> Vec<VideoId> {
    r.items.iter().map(|i| i.video.clone()).collect()
}

/// Users whose first page is not stopped by a gate (a teen's bedtime).
fn awake(engine: &Engine, w: &World, now: Timestamp) -> Vec<UserId> {
    w.users
        .iter()
        .map(|s| s.user.id.clone())
        .filter(|u| {
            let (r, _) = feed(engine, u, 1, "probe", now);
            !r.items.is_empty()
        })
        .take(12)
        .collect()
}

#[test]
fn later_pages_come_from_the_pool_are_new_and_keep_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, w) = engine(dir.path(), 11);
    let now = w.config.now;
    let users = awake(&engine, &w, now);
    assert!(users.len() >= 5);
    let mut from_pool = 0;
    for user in &users {
        let (first, t1) = feed(&engine, user, 10, "s", now);
        assert!(
            !pooled(&t1),
            "a session's first page is ranked from scratch"
        );
        let pool = engine
            .page_pool(user)
            .expect("the first page leaves a pool");
        let served: HashSet<VideoId> = ids(&first).into_iter().collect();
        assert!(pool.iter().all(|v| !served.contains(v)));
        let mut seen = served;
        for n in 0..3 {
            let (next, t) = feed(&engine, user, 10, "s", now);
            if pooled(&t) {
                from_pool += 1;
            }
            let teen = w
                .users
                .iter()
                .any(|s| &s.user.id == user && s.user.age_band == AgeBand::Teen);
            for item in &next.items {
                assert!(
                    seen.insert(item.video.clone()),
                    "page {n} repeats {}",
                    item.video
                );
                assert!(!item.explanation.text.is_empty());
                assert!(item.score.is_finite());
                let video = engine.video(&item.video).unwrap().unwrap();
                assert!(!video.deleted);
                if teen {
                    assert!(!video.safety.contains(&SafetyLabel::Mature));
                }
            }
        }
    }
    assert!(
        from_pool >= users.len(),
        "only {from_pool} pooled pages for {} users",
        users.len()
    );
}

#[test]
fn a_deletion_revocation_or_block_is_in_force_for_a_pooled_page() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, w) = engine(dir.path(), 12);
    let now = w.config.now;
    let (mut pooled_pages, mut revoked) = (0, 0);
    for user in awake(&engine, &w, now) {
        feed(&engine, &user, 3, "s", now);
        let pool = engine.page_pool(&user).expect("a pool");
        // The pool's best are what the next page would serve first: delete the best,
        // revoke a cameo of the second (when someone other than its creator is in it).
        let mut removed: HashSet<VideoId> = HashSet::new();
        engine.delete_video(&pool[0]).unwrap();
        removed.insert(pool[0].clone());
        let v1 = engine.video(&pool[1]).unwrap().unwrap();
        if let Some(p) = v1.cameos.iter().find(|p| **p != v1.creator) {
            engine
                .revoke_consent(p, &Revocation::Video(v1.id.clone()))
                .unwrap();
            removed.insert(v1.id.clone());
            revoked += 1;
        }
        let (next, t) = feed(&engine, &user, 20, "s", now);
        assert!(
            pooled(&t),
            "deletions and revocations keep the pool; filters judge"
        );
        pooled_pages += 1;
        let from: HashSet<&VideoId> = pool.iter().collect();
        for v in ids(&next) {
            assert!(!removed.contains(&v), "{v} served after its removal");
            assert!(from.contains(&v), "{v} is not from the pool");
        }

        // A block forgets the pool, and its creator is not served from scratch either.
        let rest = engine
            .page_pool(&user)
            .expect("the pooled page leaves a pool");
        let Some(blocked) = rest
            .iter()
            .map(|v| engine.video(v).unwrap().unwrap().creator.clone())
            .find(|c| *c != user)
        else {
            continue;
        };
        engine.block(&user, &blocked).unwrap();
        assert!(engine.page_pool(&user).is_none());
        let (next, _) = feed(&engine, &user, 20, "s", now);
        for v in ids(&next) {
            assert_ne!(engine.video(&v).unwrap().unwrap().creator, blocked);
        }
        engine.unblock(&user, &blocked).unwrap();
    }
    assert!(
        pooled_pages >= 5 && revoked >= 1,
        "{pooled_pages} pooled, {revoked} revoked"
    );
}

#[test]
fn a_preference_change_another_session_or_an_old_pool_ranks_from_scratch() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, w) = engine(dir.path(), 13);
    let now = w.config.now;
    let user = awake(&engine, &w, now).remove(0);

    feed(&engine, &user, 5, "s", now);
    assert!(engine.page_pool(&user).is_some());
    engine.set_preferences(&user, "more cooking", now).unwrap();
    assert!(
        engine.page_pool(&user).is_none(),
        "preferences forget the pool"
    );
    let (_, t) = feed(&engine, &user, 5, "s", now);
    assert!(!pooled(&t));

    let (_, t) = feed(&engine, &user, 5, "other", now);
    assert!(!pooled(&t), "another session's pool is not used");

    let (_, t) = feed(&engine, &user, 5, "other", now);
    assert!(pooled(&t), "the same session within the ttl is pooled");

    let later = Timestamp::from_second(now.as_second() + 61).unwrap();
    let (_, t) = feed(&engine, &user, 5, "other", later);
    assert!(!pooled(&t), "a pool older than pool_ttl_s is dropped");

    engine.follow(&user, &w.users[1].user.id).unwrap();
    assert!(
        engine.page_pool(&user).is_none(),
        "a follow forgets the pool"
    );
}

#[test]
fn a_checkin_answer_or_a_negative_signal_ends_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, w) = engine(dir.path(), 17);
    let now = w.config.now;
    let users = awake(&engine, &w, now);
    let event = |user: &UserId, key: &str, kind: EventKind| Event {
        key: EventKey::new(key).unwrap(),
        user: user.clone(),
        at: now,
        kind,
    };

    // A "not great" answer: the next page of the same session is ranked again, in
    // lighter mode (the scores carry its wellbeing term).
    let user = &users[0];
    let (first, _) = feed(&engine, user, 5, "s", now);
    assert!(engine.page_pool(user).is_some());
    assert!(first.items.iter().all(|i| i.breakdown.wellbeing == 0.0));
    let answer = EventKind::CheckinAnswer {
        answer: CheckinAnswer::NotGreat,
    };
    engine
        .ingest_events(&[event(user, "ans1", answer)])
        .unwrap();
    assert!(engine.page_pool(user).is_none(), "the answer ends the pool");
    let (next, t) = feed(&engine, user, 5, "s", now);
    assert!(!pooled(&t));
    assert!(
        next.items.iter().any(|i| i.breakdown.wellbeing != 0.0),
        "lighter mode reaches the next page: {:?}",
        next.items
            .iter()
            .map(|i| i.breakdown.wellbeing)
            .collect::<Vec<_>>()
    );

    // Each negative signal ends the pool too; a like does not.
    for (n, make) in [
        |v: VideoId| EventKind::NotInterested { video: v },
        |v: VideoId| EventKind::Report { video: v },
        |v: VideoId| EventKind::HideCreator { video: v },
    ]
    .into_iter()
    .enumerate()
    {
        let user = &users[1 + n];
        let (page, _) = feed(&engine, user, 5, "s", now);
        let shown = page.items[0].video.clone();
        engine
            .ingest_events(&[event(
                user,
                &format!("like{n}"),
                EventKind::Like {
                    video: shown.clone(),
                },
            )])
            .unwrap();
        assert!(engine.page_pool(user).is_some(), "a like keeps the pool");
        engine
            .ingest_events(&[event(user, &format!("neg{n}"), make(shown))])
            .unwrap();
        assert!(engine.page_pool(user).is_none(), "signal {n} ends the pool");
    }
}

/// A page a count cap cuts (the parental scroll cap) still comes from the pool: the cut
/// page is as full as it may be, not a sign the pool ran dry. The page after the cap is
/// stopped, and nothing over the cap is served.
#[test]
fn a_page_the_scroll_cap_cuts_still_comes_from_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, w) = engine(dir.path(), 19);
    let now = w.config.now;
    // An adult never served before: the wellbeing session (by time, not by session id)
    // starts with this test's first page.
    let user = &w
        .users
        .iter()
        .find(|s| s.user.age_band == AgeBand::Adult)
        .unwrap()
        .user
        .id;
    let cap = 13;
    let controls = steerfeed::ParentalControls {
        scroll_cap: Some(cap),
        ..Default::default()
    };
    engine.set_parental_controls(user, &controls).unwrap();

    let (first, t1) = feed(&engine, user, 10, "capped", now);
    assert!(!pooled(&t1));
    assert_eq!(first.items.len(), 10);
    assert!(engine.page_pool(user).is_some());

    let (second, t2) = feed(&engine, user, 10, "capped", now);
    assert_eq!(second.items.len(), 3, "the cap leaves 3 items");
    assert!(pooled(&t2), "the cut page is served from the pool");
    let first_ids: HashSet<VideoId> = ids(&first).into_iter().collect();
    assert!(ids(&second).iter().all(|v| !first_ids.contains(v)));

    let (third, _) = feed(&engine, user, 10, "capped", now);
    assert!(
        third.items.is_empty(),
        "the cap is reached: {:?}",
        ids(&third)
    );
    assert!(!third.cards.is_empty(), "a stopped page says why");
}

#[test]
fn pages_ranked_at_once_serve_a_teens_daily_item_cap_never_more() {
    const CAP: u32 = 37;
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.rank.wellbeing.teen_daily_items = CAP;
    let (engine, w) = engine_with(dir.path(), 23, c);
    let now = w.config.now;
    // A teen it is not bedtime for: one probe item served.
    let teen = w
        .users
        .iter()
        .filter(|s| s.user.age_band == AgeBand::Teen)
        .map(|s| s.user.id.clone())
        .find(|u| !feed(&engine, u, 1, "probe", now).0.items.is_empty())
        .expect("a teen awake at the world's time");
    // What the app's reports counted today is the floor the reservations start from.
    let reported = engine.store().wellbeing(&teen, now).unwrap().items_today;
    assert!(reported < CAP - 1, "{reported}");
    let served: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (engine, teen) = (&engine, &teen);
                scope.spawn(move || {
                    let mut n = 0;
                    for page in 0..20 {
                        let (r, _) = feed(engine, teen, 10, &format!("t{t}-{page}"), now);
                        if r.items.is_empty() {
                            let limit = r.cards.iter().any(|c| c.kind == CardKind::LimitReached);
                            assert!(limit, "stopped by the daily limit: {:?}", r.cards);
                            return n;
                        }
                        n += r.items.len();
                    }
                    panic!("never stopped")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // No report came in: the pages alone reached the cap, with the probe's item.
    assert_eq!(
        1 + served.iter().sum::<usize>(),
        (CAP - reported) as usize,
        "{served:?} after {reported} reported"
    );
    let (later, _) = feed(&engine, &teen, 10, "later", now);
    assert!(later.items.is_empty());
}

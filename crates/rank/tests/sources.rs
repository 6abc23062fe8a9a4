//! Tests of the candidate sources on in-memory ports.
//!
//! 1. `following`: only followed creators, newest first, mutuals ahead, age and quota limits.
//! 2. `interest_ann`: nearest to the interest vector; nothing without one or with
//!    personalization off.
//! 3. `steer_ann`: one query per boosted concept, reduce ignored, the concept in the reason.
//!    With `only` topics both vector sources add the topics' nearest videos to their
//!    unfiltered nearest, each video once.
//! 4. `co_engagement`: fed by the real incremental index; updates as events arrive.
//! 5. `remix_trends` and `popular`: the stats' order, deleted videos skipped, quotas;
//!    `trending`: fed by the real incremental index, a climbing video ahead of a steady one.
//! 6. `social_cameo`: videos featuring you or people you follow, not your own.
//! 7. `fresh`: new creators first, nothing older than the window.
//! 8. All sources in one pipeline: candidates are deduplicated and counted per source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use steerfeed_core::ports::Engagement;
use steerfeed_core::{
    ConceptVector, Embedding, EventKind, FeedContext, FeedRequest, Pipeline, Reason, Source,
    Timestamp, User, UserId, Video, VideoId,
};
use steerfeed_rank::sources::{
    CoEngagementSource, FollowingSource, FreshSource, InterestAnnSource, PopularSource,
    RemixTrendsSource, SocialCameoSource, SteerAnnSource, SteerTopicSource, TrendingSource,
};
use steerfeed_rank::{CoEngagementConfig, CoEngagementIndex, CoEngagementParams};
use support::Mem;

const NOW_S: i64 = 1_800_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW_S).unwrap()
}

fn hours_ago(h: i64) -> Timestamp {
    Timestamp::from_second(NOW_S - h * 3600).unwrap()
}

fn u(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn v(s: &str) -> VideoId {
    VideoId::new(s).unwrap()
}

fn e(x: f32, y: f32) -> Embedding {
    Embedding::normalized("e", &[x, y]).unwrap()
}

/// Adds a video `age_h` hours old with a 2-d embedding, then lets the test tweak it.
trait AddVideo {
    fn add(
        &mut self,
        id: &str,
        creator: &str,
        age_h: i64,
        emb: Embedding,
        tweak: impl FnOnce(&mut Video),
    );
}

impl AddVideo for Mem {
    fn add(
        &mut self,
        id: &str,
        creator: &str,
        age_h: i64,
        emb: Embedding,
        tweak: impl FnOnce(&mut Video),
    ) {
        let mut video = Video::new(v(id), u(creator), hours_ago(age_h), 10.0);
        video.embedding = Some(emb);
        tweak(&mut video);
        self.put(video);
    }
}

fn ctx(user: &str) -> FeedContext {
    FeedContext::new(
        FeedRequest::new(u(user), 20).unwrap(),
        User::new(u(user)),
        now(),
    )
}

fn ids(c: &[steerfeed_core::Candidate]) -> Vec<&str> {
    c.iter().map(|c| c.id().as_str()).collect()
}

fn world() -> Arc<Mem> {
    let mut m = Mem::default();
    m.follows.insert((u("me"), u("ana")));
    m.follows.insert((u("me"), u("bo")));
    m.follows.insert((u("bo"), u("me")));
    m.add("ana1", "ana", 1, e(1.0, 0.0), |_| {});
    m.add("ana2", "ana", 5, e(1.0, 0.1), |_| {});
    m.add("ana_old", "ana", 24 * 30, e(1.0, 0.2), |_| {});
    m.add("bo1", "bo", 6, e(0.0, 1.0), |_| {});
    m.add("bo_del", "bo", 2, e(0.0, 1.0), |x| x.deleted = true);
    m.add("cy1", "cy", 3, e(0.7, 0.7), |x| x.cameos = vec![u("ana")]);
    m.add("cy2", "cy", 100, e(-1.0, 0.0), |x| x.cameos = vec![u("me")]);
    m.add("mine", "me", 1, e(-1.0, 0.5), |x| x.cameos = vec![u("me")]);
    for i in 0..8 {
        m.add(&format!("vet{i}"), "veteran", 2 + i, e(0.3, -1.0), |_| {});
    }
    m.add("newbie1", "newbie", 10, e(0.5, -1.0), |_| {});
    m.popular = vec![
        (v("cy2"), 9.0),
        (v("bo_del"), 8.0),
        (v("ana_old"), 7.0),
        (v("ghost"), 6.0),
        (v("bo1"), 5.0),
    ];
    m.remix = vec![(v("cy1"), 3.0), (v("ana1"), 2.0)];
    Arc::new(m)
}

#[test]
fn following_proposes_recent_videos_of_followed_creators() {
    let m = world();
    let s = FollowingSource::new(m.clone(), m.clone(), 10);
    let out = s.fetch(&ctx("me")).unwrap();
    // bo is a mutual (x1.2): bo1 at 6 h outranks ana1 at 1 h; old and deleted are out.
    assert_eq!(ids(&out), vec!["bo1", "ana1", "ana2"]);
    assert!(matches!(&out[1].reason, Reason::Following { creator } if creator.as_str() == "ana"));
    let s = FollowingSource::new(m.clone(), m.clone(), 1);
    assert_eq!(s.fetch(&ctx("me")).unwrap().len(), 1);
    assert!(s.fetch(&ctx("nobody")).unwrap().is_empty());
}

#[test]
fn interest_ann_needs_an_interest_and_personalization() {
    let m = world();
    let s = InterestAnnSource::new(m.clone(), m.clone(), 3);
    let mut c = ctx("me");
    assert!(s.fetch(&c).unwrap().is_empty(), "no interest vector yet");
    c.interest = Some(e(0.0, 1.0));
    let out = s.fetch(&c).unwrap();
    assert_eq!(out[0].id().as_str(), "bo1");
    assert_eq!(out.len(), 3);
    assert!(out.iter().all(|x| x.id().as_str() != "bo_del"));
    c.parental.personalization = false;
    assert!(s.fetch(&c).unwrap().is_empty());
}

#[test]
fn interest_ann_searches_each_interest_with_a_share_of_its_quota() {
    let mut m = Mem::default();
    for i in 0..6 {
        m.add(&format!("a{i}"), "ana", 1, e(1.0, 0.02 * i as f32), |_| {});
        m.add(&format!("b{i}"), "bo", 1, e(0.02 * i as f32, 1.0), |_| {});
    }
    let m = Arc::new(m);
    let s = InterestAnnSource::new(m.clone(), m.clone(), 4);
    let mut c = ctx("me");
    // One blended vector leaning to a: its nearest four are all a.
    c.interest = Some(e(1.0, 0.3));
    let one = s.fetch(&c).unwrap();
    assert!(
        ids(&one).iter().all(|id| id.starts_with('a')),
        "{:?}",
        ids(&one)
    );
    // Two interests: two each, best similarity first, no video twice.
    c.interests = vec![e(1.0, 0.0), e(0.0, 1.0)];
    let two = s.fetch(&c).unwrap();
    let got = ids(&two);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        got.iter().filter(|id| id.starts_with('a')).count(),
        2,
        "{got:?}"
    );
    assert_eq!(
        got.iter().filter(|id| id.starts_with('b')).count(),
        2,
        "{got:?}"
    );
    assert!(two.windows(2).all(|w| w[0].score >= w[1].score));
    // Never more than the quota, however it divides.
    let five = InterestAnnSource::new(m.clone(), m.clone(), 5);
    c.interests = vec![e(1.0, 0.0), e(0.0, 1.0), e(0.7, 0.7)];
    assert_eq!(five.fetch(&c).unwrap().len(), 5);
    // The same video near both interests is proposed once.
    c.interests = vec![e(1.0, 0.0), e(1.0, 0.01)];
    let same = s.fetch(&c).unwrap();
    let distinct: std::collections::HashSet<&str> = ids(&same).into_iter().collect();
    assert_eq!(distinct.len(), same.len());
    c.parental.personalization = false;
    assert!(s.fetch(&c).unwrap().is_empty());
}

#[test]
fn vector_sources_search_inside_the_only_topics() {
    let t = |s: &str| steerfeed_core::TopicId::new(s).unwrap();
    let mut m = Mem::default();
    // Ten videos right at the interest, none about cooking; three cooking videos far
    // from it, nearest first: c0, c1, c2; one pets video.
    for i in 0..10 {
        m.add(
            &format!("near{i}"),
            "ana",
            1,
            e(1.0, 0.01 * i as f32),
            |_| {},
        );
    }
    for (i, y) in [0.5f32, 1.0, 3.0].into_iter().enumerate() {
        m.add(&format!("c{i}"), "bo", 1, e(0.1, y), |v| {
            v.topics = vec![t("cooking")]
        });
    }
    m.add("p0", "bo", 1, e(0.0, 1.0), |v| v.topics = vec![t("pets")]);
    let m = Arc::new(m);
    let only = |topic: Option<&str>, phrase: Option<&str>| steerfeed_core::Concept {
        topic: topic.map(t),
        phrase: phrase.map(str::to_owned),
        expires_at: None,
        description: None,
    };
    let mut c = ctx("me");
    c.interest = Some(e(1.0, 0.0));
    // Without steering: the nearest two, no cooking among them.
    let interest = InterestAnnSource::new(m.clone(), m.clone(), 2);
    assert_eq!(ids(&interest.fetch(&c).unwrap()), vec!["near0", "near1"]);
    // Only cooking: the topic's nearest two join them, best first.
    c.constraints.only = vec![only(Some("cooking"), None)];
    assert_eq!(
        ids(&interest.fetch(&c).unwrap()),
        vec!["near0", "near1", "c0", "c1"]
    );
    c.concepts = vec![ConceptVector {
        label: "fast".into(),
        topic: None,
        vector: e(1.0, 0.0),
        weight: 1.0,
    }];
    let steer = SteerAnnSource::new(m.clone(), m.clone(), 3);
    let out = steer.fetch(&c).unwrap();
    assert_eq!(ids(&out), vec!["near0", "near1", "near2", "c0", "c1", "c2"]);
    // Two topics: either; a video of both topics or also among the nearest comes once.
    c.constraints.only = vec![only(Some("cooking"), None), only(Some("pets"), None)];
    let out = InterestAnnSource::new(m.clone(), m.clone(), 4)
        .fetch(&c)
        .unwrap();
    let got: HashSet<&str> = ids(&out).into_iter().collect();
    assert_eq!(got.len(), out.len());
    assert_eq!(
        got,
        HashSet::from(["near0", "near1", "near2", "near3", "c0", "c1", "c2", "p0"])
    );
    // Several interests: each group keeps its own quota, so the nearer unfiltered
    // videos do not crowd the topic's out.
    c.constraints.only = vec![only(Some("cooking"), None)];
    c.interests = vec![e(1.0, 0.0), e(1.0, 0.05)];
    let out = InterestAnnSource::new(m.clone(), m.clone(), 4)
        .fetch(&c)
        .unwrap();
    let got = ids(&out);
    assert!(got.contains(&"c0") && got.contains(&"c1"), "{got:?}");
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(got.iter().filter(|id| id.starts_with("near")).count(), 4);
    c.interests.clear();
    c.constraints.only = vec![only(Some("cooking"), None), only(Some("pets"), None)];
    // A quota past the catalogue: every video once.
    let wide = InterestAnnSource::new(m.clone(), m.clone(), 20)
        .fetch(&c)
        .unwrap();
    let distinct: HashSet<&str> = ids(&wide).into_iter().collect();
    assert_eq!(distinct.len(), wide.len());
    assert_eq!(wide.len(), 14, "{:?}", ids(&wide));
    assert!(wide.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn steer_topic_proposes_recent_videos_of_each_boosted_topic() {
    let mut m = Mem::default();
    let t = |s: &str| steerfeed_core::TopicId::new(s).unwrap();
    m.add("c1", "ana", 1, e(1.0, 0.0), |v| {
        v.topics = vec![t("cooking")]
    });
    m.add("c2", "bo", 3, e(0.0, 1.0), |v| {
        v.topics = vec![t("cooking"), t("diy")]
    });
    m.add("c_old", "bo", 24 * 30, e(0.0, 1.0), |v| {
        v.topics = vec![t("cooking")]
    });
    m.add("p1", "ana", 1, e(1.0, 0.0), |v| {
        v.topics = vec![t("politics")]
    });
    m.add("x1", "ana", 1, e(1.0, 0.0), |_| {});
    let m = Arc::new(m);
    let s = SteerTopicSource::new(m.clone(), 10);
    let mut c = ctx("me");
    let concept = |label: &str, weight: f32| ConceptVector {
        label: label.into(),
        topic: Some(t(label)),
        vector: e(1.0, 1.0),
        weight,
    };
    c.concepts = vec![concept("cooking", 1.0), concept("politics", -1.0)];
    let out = s.fetch(&c).unwrap();
    assert_eq!(
        ids(&out),
        vec!["c1", "c2"],
        "newest first, none too old, reduce ignored"
    );
    assert!(out.iter().all(|x| x.reason
        == Reason::Steering {
            concept: "cooking".into()
        }));
    c.parental.personalization = false;
    assert!(s.fetch(&c).unwrap().is_empty());
}

#[test]
fn steer_ann_queries_each_boosted_concept() {
    let m = world();
    let s = SteerAnnSource::new(m.clone(), m.clone(), 1);
    let mut c = ctx("me");
    c.concepts = vec![
        ConceptVector {
            label: "cats".into(),
            topic: None,
            vector: e(1.0, 0.0),
            weight: 1.0,
        },
        ConceptVector {
            label: "dogs".into(),
            topic: None,
            vector: e(0.0, 1.0),
            weight: 1.0,
        },
        ConceptVector {
            label: "politics".into(),
            topic: None,
            vector: e(-1.0, 0.0),
            weight: -1.0,
        },
    ];
    let out = s.fetch(&c).unwrap();
    assert_eq!(ids(&out).len(), 2);
    assert!(ids(&out).contains(&"ana1") && ids(&out).contains(&"bo1"));
    for cand in &out {
        let Reason::Steering { concept } = &cand.reason else {
            panic!()
        };
        let want = if cand.id().as_str() == "ana1" {
            "cats"
        } else {
            "dogs"
        };
        assert_eq!(concept, want);
    }
}

#[test]
fn co_engagement_follows_events_as_they_arrive() {
    let m = world();
    let co = Arc::new(CoEngagementIndex::new(CoEngagementParams::default()));
    // Others who liked ana1 also liked bo1 and remixed cy1.
    for other in ["x", "y"] {
        co.record(
            &u(other),
            &EventKind::Like { video: v("ana1") },
            hours_ago(3),
        );
        co.record(
            &u(other),
            &EventKind::Like { video: v("bo1") },
            hours_ago(3),
        );
    }
    co.record(&u("z"), &EventKind::Like { video: v("ana1") }, hours_ago(2));
    co.record(
        &u("z"),
        &EventKind::Remix {
            video: v("cy1"),
            new_video: None,
        },
        hours_ago(2),
    );
    let mut mem = Mem {
        ..Default::default()
    };
    mem.videos = m.videos.clone();
    mem.order = m.order.clone();
    mem.history.insert(
        u("me"),
        vec![Engagement {
            video: v("ana1"),
            kind: EventKind::Like { video: v("ana1") },
            at: hours_ago(1),
        }],
    );
    let mem = Arc::new(mem);
    let s = CoEngagementSource::new(
        mem.clone(),
        mem.clone(),
        co.clone(),
        10,
        CoEngagementConfig::default(),
    );
    let out = s.fetch(&ctx("me")).unwrap();
    assert_eq!(
        ids(&out),
        vec!["bo1", "cy1"],
        "two co-likers beat one co-remixer"
    );
    // More people remix cy1 with ana1: the order changes without a rebuild.
    for other in ["p", "q", "r"] {
        co.record(
            &u(other),
            &EventKind::Like { video: v("ana1") },
            hours_ago(1),
        );
        co.record(
            &u(other),
            &EventKind::Remix {
                video: v("cy1"),
                new_video: None,
            },
            hours_ago(1),
        );
    }
    assert_eq!(ids(&s.fetch(&ctx("me")).unwrap())[0], "cy1");
    assert!(
        ids(&s.fetch(&ctx("me")).unwrap())
            .iter()
            .all(|id| *id != "ana1"),
        "already engaged"
    );
    let mut off = ctx("me");
    off.parental.personalization = false;
    assert!(s.fetch(&off).unwrap().is_empty());
}

#[test]
fn trends_and_popular_keep_the_stats_order_and_skip_deleted_or_unknown() {
    let m = world();
    let popular = PopularSource::new(m.clone(), m.clone(), 4)
        .fetch(&ctx("me"))
        .unwrap();
    assert_eq!(
        ids(&popular),
        vec!["cy2", "ana_old"],
        "bo_del deleted, ghost unknown, quota 4 cut bo1"
    );
    let remix = RemixTrendsSource::new(m.clone(), m.clone(), 10)
        .fetch(&ctx("me"))
        .unwrap();
    assert_eq!(ids(&remix), vec!["cy1", "ana1"]);
    assert!(
        remix
            .iter()
            .all(|c| c.reason == Reason::RemixTrend && c.source == "remix_trends")
    );
}

/// ana1 gets twelve likes in its last three hours; cy2 four likes an hour for three days
/// (288 likes, 24 times ana1's volume); bo_del climbs almost as fast as ana1 (eleven
/// likes) but is deleted; bo1 had one like, below the threshold a trend needs.
#[test]
fn trending_puts_a_climbing_video_ahead_of_a_steady_one_and_skips_deleted_ones() {
    let m = world();
    let co = Arc::new(CoEngagementIndex::new(CoEngagementParams::default()));
    let like = |video: &str| EventKind::Like { video: v(video) };
    for h in (1..=72).rev() {
        for k in 0..4 {
            co.record(&u(&format!("steady{h}_{k}")), &like("cy2"), hours_ago(h));
        }
    }
    for i in 0..12 {
        let at = Timestamp::from_second(NOW_S - 3 * 3600 + i * 900).unwrap();
        co.record(&u(&format!("fan{i}")), &like("ana1"), at);
        if i > 0 {
            co.record(&u(&format!("fan{i}")), &like("bo_del"), at);
        }
    }
    co.record(&u("once"), &like("bo1"), hours_ago(1));
    let s = TrendingSource::new(m.clone(), co.clone(), 10);
    let out = s.fetch(&ctx("me")).unwrap();
    assert_eq!(ids(&out), vec!["ana1", "cy2"]);
    assert!(
        out.iter()
            .all(|c| c.reason == Reason::Trending && c.source == "trending")
    );
    // As for `popular`, the quota counts the list's places: the deleted video took one.
    let two = TrendingSource::new(m.clone(), co.clone(), 2);
    assert_eq!(ids(&two.fetch(&ctx("me")).unwrap()), vec!["ana1"]);
    // Not personal: it proposes with personalization off too.
    let mut off = ctx("me");
    off.parental.personalization = false;
    assert_eq!(s.fetch(&off).unwrap().len(), 2);
    // A day later ana1's burst has faded below the threshold; cy2's steady likes stopped
    // too, and neither trends any more.
    let mut later = ctx("me");
    later.now = Timestamp::from_second(NOW_S + 24 * 3600).unwrap();
    assert!(s.fetch(&later).unwrap().is_empty());
}

#[test]
fn social_cameo_finds_friends_and_me_in_others_videos() {
    let m = world();
    let out = SocialCameoSource::new(m.clone(), m.clone(), 10)
        .fetch(&ctx("me"))
        .unwrap();
    assert_eq!(ids(&out), vec!["cy1", "cy2"], "mine is my own video");
    // Regression: a quota below the per-person minimum panicked in `clamp`.
    assert_eq!(
        SocialCameoSource::new(m.clone(), m.clone(), 1)
            .fetch(&ctx("me"))
            .unwrap()
            .len(),
        1
    );
    assert!(matches!(&out[0].reason, Reason::FriendCameo { person } if person.as_str() == "ana"));
}

#[test]
fn fresh_puts_new_creators_first_within_the_window() {
    let m = world();
    let out = FreshSource::new(m.clone(), 3).fetch(&ctx("me")).unwrap();
    assert_eq!(out.len(), 3);
    // Creators with at most 5 videos get the lift: the veteran's newer videos come after.
    assert!(out.iter().all(|c| c.video.creator.as_str() != "veteran"));
    let out = FreshSource::new(m.clone(), 50).fetch(&ctx("me")).unwrap();
    assert!(out.iter().all(|c| c.video.created_at >= hours_ago(48)));
    assert!(!ids(&out).contains(&"cy2"), "100 h old");
}

/// A candidate's reason names the engagement that gave it the most votes (the engine
/// quotes its caption when it serves the item): dd1 is co-liked by one person with ana1 (the newest engagement) and by
/// two with ana2 (an hour older); with `position_decay` 0.6, ana2 gives it 2 × 0.6 = 1.2
/// against ana1's 1, and with 0.3 it gives 0.6, so ana1 is named.
#[test]
fn co_engagement_names_the_engagement_that_voted_most() {
    let m = world();
    let co = Arc::new(CoEngagementIndex::new(CoEngagementParams::default()));
    for (seed, people) in [("ana1", 1), ("ana2", 2)] {
        for p in 0..people {
            let who = u(&format!("{seed}_{p}"));
            co.record(&who, &EventKind::Like { video: v(seed) }, hours_ago(5));
            co.record(&who, &EventKind::Like { video: v("dd1") }, hours_ago(5));
        }
    }
    let mut mem = Mem {
        ..Default::default()
    };
    mem.videos = m.videos.clone();
    mem.order = m.order.clone();
    let mut dd1 = (*mem.videos[&v("bo1")]).clone();
    dd1.id = v("dd1");
    mem.videos.insert(v("dd1"), Arc::new(dd1));
    let liked = |video: &str, h| Engagement {
        video: v(video),
        kind: EventKind::Like { video: v(video) },
        at: hours_ago(h),
    };
    mem.history
        .insert(u("me"), vec![liked("ana1", 1), liked("ana2", 2)]);
    let mem = Arc::new(mem);
    let named = |position_decay| {
        let seeds = CoEngagementConfig {
            position_decay,
            ..CoEngagementConfig::default()
        };
        let out = CoEngagementSource::new(mem.clone(), mem.clone(), co.clone(), 10, seeds)
            .fetch(&ctx("me"))
            .unwrap();
        assert_eq!(ids(&out), ["dd1"]);
        match &out[0].reason {
            Reason::CoEngagement { because, .. } => because.clone().unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(named(0.6), v("ana2"));
    assert_eq!(named(0.3), v("ana1"));
}

/// The newest engagement votes most: with `position_decay` 0.6, bo1 (3 co-likers of
/// the newest engagement, ana1) beats cy1 (4 co-likers of the one before, ana2); with 1
/// (position ignored; the two are an hour apart, nearly equal in age) cy1 wins. Scores
/// are relative to the strongest candidate.
#[test]
fn co_engagement_weighs_the_newest_engagements_most() {
    let m = world();
    let co = Arc::new(CoEngagementIndex::new(CoEngagementParams::default()));
    for (seed, next, people) in [("ana1", "bo1", 3), ("ana2", "cy1", 4)] {
        for p in 0..people {
            let who = u(&format!("{seed}_{p}"));
            co.record(&who, &EventKind::Like { video: v(seed) }, hours_ago(5));
            co.record(&who, &EventKind::Like { video: v(next) }, hours_ago(5));
        }
    }
    let mut mem = Mem {
        ..Default::default()
    };
    mem.videos = m.videos.clone();
    mem.order = m.order.clone();
    let liked = |video: &str, h| Engagement {
        video: v(video),
        kind: EventKind::Like { video: v(video) },
        at: hours_ago(h),
    };
    mem.history
        .insert(u("me"), vec![liked("ana1", 1), liked("ana2", 2)]);
    let mem = Arc::new(mem);
    let source = |position_decay| {
        let seeds = CoEngagementConfig {
            position_decay,
            ..CoEngagementConfig::default()
        };
        CoEngagementSource::new(mem.clone(), mem.clone(), co.clone(), 10, seeds)
    };
    let by_position = source(0.6).fetch(&ctx("me")).unwrap();
    assert_eq!(ids(&by_position), ["bo1", "cy1"]);
    assert_eq!(by_position[0].source_score, 1.0);
    let ratio = by_position[1].source_score;
    assert!((ratio - 0.6 * 4.0 / 3.0).abs() < 0.02, "{ratio}");
    let flat = source(1.0).fetch(&ctx("me")).unwrap();
    assert_eq!(ids(&flat), ["cy1", "bo1"]);
    assert!(
        flat.iter()
            .all(|c| c.source_score > 0.0 && c.source_score <= 1.0)
    );
    assert!(
        CoEngagementConfig {
            position_decay: 0.0,
            ..CoEngagementConfig::default()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn all_sources_in_one_pipeline_are_deduplicated_and_counted() {
    let m = world();
    let co = Arc::new(CoEngagementIndex::new(CoEngagementParams::default()));
    for i in 0..6 {
        let fan = u(&format!("fan{i}"));
        co.record(&fan, &EventKind::Like { video: v("bo1") }, hours_ago(1));
    }
    let p = Pipeline::builder()
        .source(FollowingSource::new(m.clone(), m.clone(), 50))
        .source(InterestAnnSource::new(m.clone(), m.clone(), 50))
        .source(SteerAnnSource::new(m.clone(), m.clone(), 50))
        .source(CoEngagementSource::new(
            m.clone(),
            m.clone(),
            co.clone(),
            50,
            CoEngagementConfig::default(),
        ))
        .source(RemixTrendsSource::new(m.clone(), m.clone(), 50))
        .source(TrendingSource::new(m.clone(), co, 50))
        .source(SocialCameoSource::new(m.clone(), m.clone(), 50))
        .source(FreshSource::new(m.clone(), 50))
        .source(PopularSource::new(m.clone(), m.clone(), 50))
        .build()
        .unwrap();
    let mut c = ctx("me");
    c.interest = Some(e(1.0, 1.0));
    let out = p.run(&c).unwrap();
    let unique: HashSet<&str> = ids(&out.items).into_iter().collect();
    assert_eq!(unique.len(), out.items.len());
    assert_eq!(out.trace.stage("following").unwrap().output, 3);
    assert_eq!(
        out.trace.stage("trending").unwrap().output,
        1,
        "bo1, six likes an hour ago"
    );
    assert!(out.trace.stage("interest_ann").unwrap().output > 0);
    assert_eq!(
        out.trace.stage("steer_ann").unwrap().output,
        0,
        "no steering"
    );
    assert!(out.items.iter().all(|c| !c.video.deleted));
}

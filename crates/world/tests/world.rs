//! Tests of the world generator.
//!
//! 1. The same config gives the same world; another seed gives another one.
//! 2. Everything validates: videos (dimension, durations), events (references, times,
//!    unique keys), users (time zones), follows (no self-follows, no duplicates).
//! 3. The follow graph is homophilous and has mutuals; teens exist at about their share
//!    and never grant cameo consent wider than mutuals.
//! 4. Cameos feature only consenting people; remixes point to earlier videos; revocations
//!    name featured people.
//! 5. Embeddings cluster by topic: same-topic videos are closer than different-topic ones.
//! 6. Degenerate configs (no users, no videos, no topics) do not panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use steerfeed_core::{AgeBand, ConsentScope, Embedding};
use steerfeed_world::{Revocation, World, WorldConfig};

fn world() -> World {
    World::generate(WorldConfig::new(7, 400, 3000))
}

#[test]
fn the_same_seed_gives_the_same_world() {
    let a = world();
    assert_eq!(a, world());
    let b = World::generate(WorldConfig::new(8, 400, 3000));
    assert_ne!(a.videos, b.videos);
}

#[test]
fn everything_validates() {
    let w = world();
    assert_eq!(w.users.len(), 400);
    assert_eq!(w.videos.len(), 3000);
    let ids: HashSet<_> = w.videos.iter().map(|v| v.id.clone()).collect();
    let users: HashSet<_> = w.users.iter().map(|u| u.user.id.clone()).collect();
    for v in &w.videos {
        v.validate(384).unwrap();
        assert!(users.contains(&v.creator));
        assert!(v.created_at <= w.config.now);
        assert!(!v.caption.is_empty() && !v.topics.is_empty());
    }
    assert!(
        w.videos
            .windows(2)
            .all(|p| p[0].created_at <= p[1].created_at)
    );
    for u in &w.users {
        u.user.validate().unwrap();
        assert!((u.interests.iter().map(|x| x.1).sum::<f32>() - 1.0).abs() < 1e-4);
    }
    let keys: HashSet<_> = w.events.iter().map(|e| e.key.clone()).collect();
    assert_eq!(keys.len(), w.events.len());
    assert!(w.events.len() > 400 * 20);
    let posted: HashMap<_, _> = w
        .videos
        .iter()
        .map(|v| (v.id.clone(), v.created_at))
        .collect();
    for e in &w.events {
        e.validate().unwrap();
        assert!(users.contains(&e.user));
        let v = e.kind.video().unwrap();
        assert!(ids.contains(v));
        assert!(e.at >= posted[v] && e.at <= w.config.now);
    }
    assert!(w.events.windows(2).all(|p| p[0].at <= p[1].at));
    let edges: HashSet<_> = w.follows.iter().collect();
    assert_eq!(edges.len(), w.follows.len());
    assert!(w.follows.iter().all(|(a, b)| a != b));
}

#[test]
fn follows_are_homophilous_with_mutuals_and_teens_are_limited() {
    let w = world();
    let main: HashMap<_, _> = w
        .users
        .iter()
        .map(|u| (u.user.id.clone(), u.interests[0].0))
        .collect();
    let same = w.follows.iter().filter(|(a, b)| main[a] == main[b]).count() as f64
        / w.follows.len() as f64;
    // With 39 topics a random graph would share the main interest about 1/39 of the
    // time; topics with no creator of their own fall back to random follows.
    assert!(same > 0.15, "homophily {same}");
    let set: HashSet<_> = w.follows.iter().cloned().collect();
    let mutual = w
        .follows
        .iter()
        .filter(|(a, b)| set.contains(&(b.clone(), a.clone())))
        .count();
    assert!(mutual > 0);
    let teens = w
        .users
        .iter()
        .filter(|u| u.user.age_band == AgeBand::Teen)
        .count();
    assert!((20..=110).contains(&teens), "{teens} teens of 400");
    assert!(
        w.users
            .iter()
            .filter(|u| u.user.age_band == AgeBand::Teen)
            .all(|u| u.consent <= ConsentScope::Mutuals)
    );
}

#[test]
fn cameos_remixes_and_revocations_are_consistent() {
    let w = world();
    let granted: HashSet<_> = w.consents.iter().map(|c| c.person.clone()).collect();
    let featured: Vec<_> = w.videos.iter().filter(|v| !v.cameos.is_empty()).collect();
    assert!(featured.len() > 200);
    assert!(
        featured
            .iter()
            .flat_map(|v| &v.cameos)
            .all(|p| granted.contains(p))
    );
    let index: HashMap<_, _> = w
        .videos
        .iter()
        .enumerate()
        .map(|(i, v)| (v.id.clone(), i))
        .collect();
    let remixes: Vec<_> = w
        .videos
        .iter()
        .enumerate()
        .filter(|(_, v)| v.remix_of.is_some())
        .collect();
    assert!(remixes.len() > 100);
    assert!(
        remixes
            .iter()
            .all(|(i, v)| index[v.remix_of.as_ref().unwrap()] < *i)
    );
    assert!(!w.revocations.is_empty());
    for r in &w.revocations {
        let person = match r {
            Revocation::Video { person, .. } | Revocation::Creator { person, .. } => person,
        };
        assert!(featured.iter().any(|v| v.cameos.contains(person)));
    }
}

#[test]
fn embeddings_cluster_by_topic() {
    let w = world();
    let e = |i: usize| -> &Embedding { w.videos[i].embedding.as_ref().unwrap() };
    let (mut same, mut diff, mut ns, mut nd) = (0.0, 0.0, 0, 0);
    for i in 0..300 {
        for j in (i + 1)..300 {
            let s = f64::from(e(i).dot(e(j)));
            if w.video_topic[i] == w.video_topic[j] {
                same += s;
                ns += 1;
            } else {
                diff += s;
                nd += 1;
            }
        }
    }
    let (same, diff) = (same / f64::from(ns), diff / f64::from(nd));
    assert!(same > diff + 0.2, "same-topic {same} vs different {diff}");
}

#[test]
fn reembedding_replaces_vectors() {
    let mut w = World::generate(WorldConfig::new(1, 10, 20));
    w.reembed(7, |captions: &[&str]| -> Result<Vec<Embedding>, ()> {
        Ok(captions
            .iter()
            .map(|c| Embedding::normalized("e", &[c.len() as f32, 1.0]).unwrap())
            .collect())
    })
    .unwrap();
    assert!(
        w.videos
            .iter()
            .all(|v| v.embedding.as_ref().unwrap().dim() == 2)
    );
}

#[test]
fn degenerate_configs_do_not_panic() {
    let w = World::generate(WorldConfig::new(1, 0, 100));
    assert!(w.videos.is_empty() && w.events.is_empty());
    let w = World::generate(WorldConfig::new(1, 5, 0));
    assert!(w.events.is_empty());
    let mut c = WorldConfig::new(1, 3, 5);
    c.topics.clear();
    assert_eq!(World::generate(c).videos.len(), 5);
    let w = World::generate(WorldConfig::new(1, 1, 3));
    assert!(w.follows.is_empty());
}

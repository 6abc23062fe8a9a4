//! Helpers the test modules share: a small seeded store, event builders, raw access to
//! a closed store's sled database, and the derived state a replay must restore.

use std::path::Path;

use steerfeed_core::ports::{ActionStats, EngagementStats, SocialGraph};
use steerfeed_core::{
    AgeBand, CheckinAnswer, Embedding, Event, EventKey, EventKind, Timestamp, User, UserId, Video,
    VideoId,
};
use steerfeed_store::{Store, StoreOptions};

pub const DIM: usize = 8;
pub const T0: i64 = 1_795_000_000;

pub fn opts() -> StoreOptions {
    StoreOptions::with_dim(DIM)
}

pub fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub fn vid(s: &str) -> VideoId {
    VideoId::new(s).unwrap()
}

pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

pub fn emb(seed: usize) -> Embedding {
    let v: Vec<f32> = (0..DIM)
        .map(|i| ((seed * 31 + i * 7) % 13) as f32 - 6.0 + 0.5)
        .collect();
    Embedding::new("embedding", &v, DIM).unwrap()
}

pub fn video(id: &str, creator: &str, secs: i64) -> Video {
    Video {
        caption: format!("caption of {id}"),
        embedding: Some(emb(id.len() + id.bytes().map(usize::from).sum::<usize>())),
        ..Video::new(vid(id), uid(creator), at(secs), 10.0)
    }
}

pub fn ev(key: &str, user: &str, secs: i64, kind: EventKind) -> Event {
    Event {
        key: EventKey::new(key).unwrap(),
        user: uid(user),
        at: at(secs),
        kind,
    }
}

pub fn like(v: &str) -> EventKind {
    EventKind::Like { video: vid(v) }
}

pub fn view(v: &str, watch_ms: u64) -> EventKind {
    EventKind::View {
        video: vid(v),
        watch_ms,
        completed: false,
    }
}

/// A store with users a, b, c (c a teen in Tokyo) and videos by a and b.
pub fn seeded(store: &Store) {
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

/// The store's sled database opened directly, as an older build or another program
/// would. sled's I/O threads may hold the file lock for a moment after a store closed
/// (a known sled 0.34 behaviour), so wait for it as `Store::open` does.
pub fn raw_sled(path: &Path) -> sled::Db {
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

pub fn overwrite_header(path: &Path, bytes: &[u8]) {
    let db = raw_sled(path);
    db.open_tree("meta")
        .unwrap()
        .insert("header", bytes)
        .unwrap();
    db.flush().unwrap();
}

pub fn changes(store: &Store, since: u64) -> Option<Vec<String>> {
    store
        .catalog_changes_since(since)
        .unwrap()
        .map(|ids| ids.iter().map(|v| v.as_str().to_owned()).collect())
}

pub fn strs(ids: &[&str]) -> Option<Vec<String>> {
    Some(ids.iter().map(|s| (*s).to_owned()).collect())
}

/// Options that keep derived state in memory until asked (no background persist).
pub fn lazy_opts() -> StoreOptions {
    StoreOptions {
        derived_persist_ms: 3_600_000,
        derived_max_pending: usize::MAX,
        ..opts()
    }
}

/// Events touching every derived tree: counters, creators, wellbeing, interest,
/// affinity, seen, history, follows, mutes.
pub fn mixed_batch(tag: &str, base: i64) -> Vec<Event> {
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
pub struct Derived {
    pub counts: Vec<steerfeed_core::ports::ActionCounts>,
    pub creators: Vec<steerfeed_core::ports::ActionCounts>,
    pub wellbeing: Vec<steerfeed_core::WellbeingState>,
    pub interest: Vec<Option<Vec<f32>>>,
    pub seen: Vec<Vec<(VideoId, Timestamp)>>,
    pub history: Vec<Vec<(VideoId, Timestamp)>>,
    pub affinity: Vec<Vec<(UserId, f32)>>,
    pub following: Vec<Vec<UserId>>,
    pub muted: Vec<Vec<UserId>>,
    pub popular: Vec<(VideoId, f32)>,
    pub events: u64,
}

pub fn derived(store: &Store) -> Derived {
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
pub fn reference(batches: &[Vec<Event>]) -> Derived {
    reference_with(opts(), batches)
}

pub fn reference_with(o: StoreOptions, batches: &[Vec<Event>]) -> Derived {
    let store = Store::temporary(o).unwrap();
    seeded(&store);
    for b in batches {
        store.ingest_events(b).unwrap();
    }
    derived(&store)
}

//! Several processes' views of one shared deployment: each `SharedStore` here has its own
//! mirror and its own connections, as a separate process would, on one namespace of the
//! throwaway servers. What one acknowledges, every other sees once it catches up; all
//! of them compute the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use steerfeed_core::ports::{ConsentLedger, SocialGraph, VideoCatalog};
use steerfeed_core::storage::{Relation, Revocation, Storage};
use steerfeed_core::{
    AgeBand, ConsentScope, Embedding, Event, EventKey, EventKind, RecordKind, Timestamp, User,
    UserId, Video, VideoId,
};
use steerfeed_shared::servers::Servers;
use steerfeed_shared::{SharedOptions, SharedStore, Trim};
use steerfeed_store::StoreOptions;

const DIM: usize = 8;
const T0: i64 = 1_795_000_000;

fn replicas(n: usize) -> (String, Vec<Arc<SharedStore>>) {
    let ns = Servers::namespace("r");
    let all = (0..n).map(|_| open(&ns)).collect();
    (ns, all)
}

fn open(ns: &str) -> Arc<SharedStore> {
    let servers = Servers::shared().expect("test servers");
    Arc::new(
        SharedStore::open(SharedOptions::new(
            &servers.postgres_url,
            &servers.nats_url,
            &servers.redis_url,
            ns,
            StoreOptions::with_dim(DIM),
        ))
        .expect("shared store"),
    )
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

fn video(id: &str, creator: &str, cameos: &[&str], seed: usize) -> Video {
    let raw: Vec<f32> = (0..DIM)
        .map(|i| ((seed * 31 + i * 7) % 13) as f32 - 6.0 + 0.5)
        .collect();
    Video {
        caption: format!("caption of {id}"),
        embedding: Some(Embedding::new("embedding", &raw, DIM).unwrap()),
        cameos: cameos.iter().map(|c| uid(c)).collect(),
        ..Video::new(vid(id), uid(creator), at(seed as i64), 10.0)
    }
}

fn view(key: &str, user: &str, video: &str, secs: i64, watch_ms: u64) -> Event {
    Event {
        key: EventKey::new(key).unwrap(),
        user: uid(user),
        at: at(secs),
        kind: EventKind::View {
            video: vid(video),
            watch_ms,
            completed: false,
        },
    }
}

/// People p0..p9 (p9 a teen), each p_i with videos v_i_0..v_i_4 featuring p_{i+1} as a
/// cameo; everyone consents to everyone.
fn seed(s: &SharedStore) {
    for i in 0..10 {
        let band = if i == 9 {
            AgeBand::Teen
        } else {
            AgeBand::Adult
        };
        s.upsert_user(&User {
            id: uid(&format!("p{i}")),
            age_band: band,
            time_zone: "UTC".into(),
        })
        .unwrap();
    }
    for i in 0..10 {
        s.set_consent(&uid(&format!("p{i}")), ConsentScope::Everyone, &[])
            .unwrap();
    }
    let videos: Vec<Video> = (0..10)
        .flat_map(|i| {
            (0..5).map(move |j| {
                video(
                    &format!("v{i}_{j}"),
                    &format!("p{i}"),
                    &[&format!("p{}", (i + 1) % 10)],
                    i * 5 + j,
                )
            })
        })
        .collect();
    s.upsert_videos(&videos).unwrap();
}

/// Everything a replica holds that the app told it, and its event log, in order.
fn state(s: &SharedStore) -> (Vec<String>, Vec<String>, u64) {
    let mut records = Vec::new();
    s.for_each_record(&RecordKind::ALL, true, &mut |r| {
        records.push(serde_json::to_string(&r).unwrap());
        Ok(())
    })
    .unwrap();
    let mut events = Vec::new();
    s.for_each_event(1, &mut |seq, e| {
        events.push(format!("{seq} {}", serde_json::to_string(&e).unwrap()));
        Ok(())
    })
    .unwrap();
    (records, events, s.catalog_version())
}

#[test]
fn a_revocation_deletion_or_block_on_one_replica_is_in_force_on_the_others() {
    let (_, rs) = replicas(3);
    seed(&rs[0]);
    let mut violations = Vec::new();
    // A small deterministic generator: which replica writes, which two read.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n) as usize
    };
    for round in 0..200 {
        let writer = next(3);
        let i = round % 10;
        let j = round / 10 % 5;
        let person = uid(&format!("p{}", (i + 1) % 10));
        let creator = uid(&format!("p{i}"));
        let v = vid(&format!("v{i}_{j}"));
        let w = &rs[writer];
        match round % 3 {
            0 => w
                .revoke_consent(&person, &Revocation::Video(v.clone()))
                .unwrap(),
            1 => w.delete_video(&v).unwrap(),
            _ => w
                .set_relation(&person, &creator, Relation::Block, true)
                .unwrap(),
        }
        // The other two, at once, each catching up as a feed starts.
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .filter(|r| *r != writer)
                .map(|r| {
                    let s = &rs[r];
                    let (person, creator, v) = (&person, &creator, &v);
                    scope.spawn(move || {
                        s.catch_up().unwrap();
                        match round % 3 {
                            0 => {
                                !s.cameo_consent(person, creator, v)
                                    .unwrap()
                                    .unwrap()
                                    .revoked
                            }
                            1 => !s.video(v).unwrap().unwrap().deleted,
                            _ => !s
                                .load_viewer(person, at(0))
                                .unwrap()
                                .blocked
                                .contains(creator),
                        }
                    })
                })
                .collect();
            for h in handles {
                if h.join().unwrap() {
                    violations.push(round);
                }
            }
        });
    }
    assert!(
        violations.is_empty(),
        "not in force in rounds {violations:?}"
    );
}

#[test]
fn a_batch_sent_to_two_replicas_and_retried_on_a_third_counts_once() {
    let (_, rs) = replicas(3);
    seed(&rs[0]);
    let batch: Vec<Event> = (0..20)
        .map(|k| {
            view(
                &format!("e{k}"),
                "p1",
                &format!("v2_{}", k % 5),
                10 + k,
                60_000,
            )
        })
        .collect();
    let reports: Vec<_> = std::thread::scope(|scope| {
        let hs: Vec<_> = rs[..2]
            .iter()
            .map(|s| {
                let b = &batch;
                scope.spawn(move || s.ingest_events(b).unwrap().0)
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let retry = rs[2].ingest_events(&batch).unwrap().0;
    let accepted: usize = reports.iter().map(|r| r.accepted).sum::<usize>() + retry.accepted;
    assert_eq!(accepted, 20, "the 20 events are accepted once in all");
    assert_eq!(retry.duplicates.len(), 20);
    // A batch overlapping it in part (the same events again, then new ones), through
    // another replica: only the new keys count.
    let overlap: Vec<Event> = batch[15..]
        .iter()
        .cloned()
        .chain((20..25).map(|k| view(&format!("e{k}"), "p1", "v3_0", 100 + k, 60_000)))
        .collect();
    let r = rs[1].ingest_events(&overlap).unwrap().0;
    assert_eq!((r.accepted, r.duplicates.len()), (5, 5));
    for s in &rs {
        s.catch_up().unwrap();
        assert_eq!(s.event_count(), 25);
        let wb = s.wellbeing(&uid("p1"), at(200)).unwrap();
        assert!(
            (wb.minutes_today - 25.0).abs() < 1e-3,
            "25 one-minute views counted once: {}",
            wb.minutes_today
        );
    }
}

#[test]
fn a_teens_watch_time_spread_over_replicas_is_counted_on_every_one() {
    let (_, rs) = replicas(3);
    seed(&rs[0]);
    // 61 one-minute views, each through the next replica.
    for k in 0..61 {
        let s = &rs[k % 3];
        s.ingest_events(&[view(&format!("t{k}"), "p9", "v0_0", 10 + k as i64, 60_000)])
            .unwrap();
    }
    for s in &rs {
        s.catch_up().unwrap();
        let wb = s.wellbeing(&uid("p9"), at(100)).unwrap();
        assert!(
            (wb.minutes_today - 61.0).abs() < 1e-3,
            "every replica counts all 61 minutes: {}",
            wb.minutes_today
        );
    }
}

#[test]
fn replicas_writing_at_once_end_in_the_same_state_and_a_new_one_replays_it() {
    let (ns, rs) = replicas(3);
    seed(&rs[0]);
    std::thread::scope(|scope| {
        for (r, s) in rs.iter().enumerate() {
            scope.spawn(move || {
                for k in 0..30 {
                    let me = uid(&format!("p{}", (r * 3 + k) % 9));
                    let other = uid(&format!("p{}", (r * 3 + k + 1) % 9));
                    match k % 4 {
                        0 => s.set_relation(&me, &other, Relation::Follow, true).unwrap(),
                        1 => s
                            .upsert_videos(&[video(
                                &format!("n{r}_{k}"),
                                me.as_str(),
                                &[],
                                100 + r * 30 + k,
                            )])
                            .unwrap(),
                        2 => s
                            .revoke_consent(&other, &Revocation::Creator(me.clone()))
                            .unwrap(),
                        _ => {
                            let events: Vec<Event> = (0..5)
                                .map(|e| {
                                    view(
                                        &format!("w{r}_{k}_{e}"),
                                        me.as_str(),
                                        &format!("v{}_{}", (r + k) % 10, e),
                                        300 + k as i64,
                                        5_000,
                                    )
                                })
                                .collect();
                            s.ingest_events(&events).unwrap();
                        }
                    }
                }
            });
        }
    });
    for s in &rs {
        s.catch_up().unwrap();
    }
    let first = state(&rs[0]);
    assert_eq!(first.2, 1 + 3 * 8, "one catalogue version per video write");
    assert_eq!(first.1.len(), 3 * 7 * 5, "every event logged once");
    for s in &rs[1..] {
        assert_eq!(state(s), first, "every replica holds the same state");
    }
    // Follows one replica wrote are seen by another's graph.
    assert!(rs[2].follows(&uid("p0"), &uid("p1")).unwrap());
    // A replica started now replays both logs into the same state.
    let late = open(&ns);
    assert_eq!(state(&late), first);
}

#[test]
fn a_write_refused_on_one_replica_is_logged_nowhere() {
    let (_, rs) = replicas(2);
    seed(&rs[0]);
    rs[1].catch_up().unwrap();
    let before = (state(&rs[0]), rs[0].applied());
    // An unknown creator, an unknown user's relation, an event about an unknown video.
    assert!(
        rs[1]
            .upsert_videos(&[video("x", "nobody", &[], 1)])
            .is_err()
    );
    assert!(
        rs[1]
            .set_relation(&uid("nobody"), &uid("p0"), Relation::Follow, true)
            .is_err()
    );
    assert!(
        rs[1]
            .ingest_events(&[view("bad", "p0", "no-such-video", 1, 1_000)])
            .is_err()
    );
    rs[0].catch_up().unwrap();
    assert_eq!((state(&rs[0]), rs[0].applied()), before);
    // The refused event's key is still free.
    let r = rs[0]
        .ingest_events(&[view("bad", "p0", "v1_0", 1, 1_000)])
        .unwrap()
        .0;
    assert_eq!(r.accepted, 1);
}

#[test]
fn a_batch_acknowledged_by_a_replica_that_stops_before_applying_it_is_counted_once() {
    let (ns, rs) = replicas(3);
    seed(&rs[0]);
    let batch: Vec<Event> = (0..10)
        .map(|k| view(&format!("k{k}"), "p2", "v4_1", 20 + k, 30_000))
        .collect();
    rs[0].crash_after_next_publish();
    assert!(
        rs[0].ingest_events(&batch).is_err(),
        "the client got no answer"
    );
    assert!(
        rs[0].catch_up().is_err(),
        "the stopped replica serves nothing more"
    );
    assert!(rs[0].health().is_err(), "and says so to /readyz");
    assert!(rs[1].health().is_ok());
    // Logged, but it stopped before recording the stream's head: the client's retry
    // elsewhere is a duplicate, and records it (the original message's sequence), so
    // another replica counts it at its next catch-up (its consumer dropped first: the
    // head, not a delivery that happened to come first, brings the batch in).
    rs[1].drop_stream_consumer();
    let retry = rs[2].ingest_events(&batch).unwrap().0;
    assert_eq!((retry.accepted, retry.duplicates.len()), (0, 10));
    rs[1].catch_up().unwrap();
    assert_eq!(rs[1].event_count(), 10);
    for s in &rs[1..] {
        s.catch_up().unwrap();
        let wb = s.wellbeing(&uid("p2"), at(100)).unwrap();
        assert!(
            (wb.minutes_today - 5.0).abs() < 1e-3,
            "{}",
            wb.minutes_today
        );
    }
    // Restarted, it replays the log before it answers.
    let restarted = open(&ns);
    assert_eq!(state(&restarted), state(&rs[1]));
}

/// `f` run to completion on a runtime of its own (the servers' clients are async).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The deployment's stream, through a connection of the test's own.
async fn stream_of(ns: &str) -> async_nats::jetstream::stream::Stream {
    let servers = Servers::shared().unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(&servers.nats_url).await.unwrap());
    js.get_stream(format!("STEERFEED_{}", ns.to_ascii_uppercase()))
        .await
        .unwrap()
}

/// Every message of the deployment's stream, raw.
fn raw_stream(ns: &str) -> Vec<Vec<u8>> {
    block_on(async {
        let stream = stream_of(ns).await;
        let last = stream.get_info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            out.push(stream.get_raw_message(seq).await.unwrap().payload.to_vec());
        }
        out
    })
}

/// Runs `sql` on the test's own connection and answers `get` of each row.
fn pg_rows<T>(sql: &str, get: impl Fn(&tokio_postgres::Row) -> T) -> Vec<T> {
    let servers = Servers::shared().unwrap();
    block_on(async {
        let (client, conn) = tokio_postgres::connect(&servers.postgres_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .query(sql, &[])
            .await
            .unwrap()
            .iter()
            .map(get)
            .collect()
    })
}

/// The change log's bodies, in version order.
fn change_log(ns: &str) -> Vec<String> {
    pg_rows(
        &format!("SELECT body::text FROM sf_{ns}.changes ORDER BY version"),
        |r| r.get(0),
    )
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn the_event_log_holds_nothing_readable_of_a_person_once_erased() {
    let (ns, rs) = replicas(2);
    seed(&rs[0]);
    for who in ["erased-person-zq", "staying-person-kx"] {
        rs[0]
            .upsert_user(&User {
                id: uid(who),
                age_band: AgeBand::Adult,
                time_zone: "UTC".into(),
            })
            .unwrap();
        let events: Vec<Event> = (0..5)
            .map(|k| view(&format!("{who}-event-{k}"), who, "v0_0", 10 + k, 10_000))
            .collect();
        rs[1].ingest_events(&events).unwrap();
    }
    // Sealed from the start: no id or key in the clear, for anyone.
    let raw = raw_stream(&ns);
    assert_eq!(raw.len(), 2);
    for m in &raw {
        for needle in ["erased-person-zq", "staying-person-kx", "-event-", "v0_0"] {
            assert!(!contains(m, needle), "{needle} readable in the stream");
        }
    }
    // What they set about themselves, and relations both ways.
    let me = uid("erased-person-zq");
    rs[0]
        .set_preferences(
            &me,
            "secretly into competitive knitting",
            &Default::default(),
        )
        .unwrap();
    rs[1].set_consent(&me, ConsentScope::Everyone, &[]).unwrap();
    rs[0]
        .set_relations(&[
            (me.clone(), uid("p1"), Relation::Follow, true),
            (uid("p2"), me.clone(), Relation::Follow, true),
            (uid("p3"), uid("p4"), Relation::Follow, true),
        ])
        .unwrap();
    let report = rs[1]
        .erase_user(&me, steerfeed_core::OwnVideos::Delete)
        .unwrap();
    assert!(!report.already_erased);
    // The change log keeps their bare id (others' writes and the erasure name it), and
    // nothing they set.
    let bodies = change_log(&ns);
    assert!(bodies.iter().all(|b| !b.contains("knitting")), "{bodies:?}");
    let naming: Vec<&String> = bodies
        .iter()
        .filter(|b| b.contains("erased-person-zq"))
        .collect();
    assert_eq!(
        naming.len(),
        2,
        "the bare account and the erasure: {naming:?}"
    );
    assert!(
        bodies.iter().any(|b| b.contains("\"p3\"")),
        "others' relations stay"
    );
    // A replica started now replays both logs: the erased person's events do not open,
    // and it holds what the others hold.
    let late = open(&ns);
    for s in &rs {
        s.catch_up().unwrap();
    }
    assert_eq!(state(&late).0, state(&rs[0]).0);
    assert_eq!(state(&late).2, state(&rs[0]).2);
    assert!(
        late.export_user(&uid("erased-person-zq"), at(100))
            .unwrap()
            .is_empty()
    );
    let mut users = Vec::new();
    late.for_each_event(1, &mut |_, e| {
        users.push(e.user.as_str().to_owned());
        Ok(())
    })
    .unwrap();
    assert_eq!(users, vec!["staying-person-kx"; 5]);
    let wb = late.wellbeing(&uid("staying-person-kx"), at(100)).unwrap();
    assert!(wb.minutes_today > 0.0);
    // The replicas that applied them before the erasure forgot them with it.
    for s in &rs {
        s.catch_up().unwrap();
        assert!(
            s.export_user(&uid("erased-person-zq"), at(100))
                .unwrap()
                .is_empty()
        );
    }
}

fn open_from_snapshots(
    ns: &str,
    root: &std::path::Path,
) -> Result<SharedStore, steerfeed_core::Error> {
    let servers = Servers::shared().expect("test servers");
    SharedStore::open(SharedOptions {
        mirror_snapshots: Some(root.to_path_buf()),
        ..SharedOptions::new(
            &servers.postgres_url,
            &servers.nats_url,
            &servers.redis_url,
            ns,
            StoreOptions::with_dim(DIM),
        )
    })
}

/// A new deployment with a mirror snapshot directory, and its first process, which has
/// written the seeded people and videos.
fn seeded_with_snapshots(tag: &str) -> (tempfile::TempDir, String, SharedStore) {
    let root = tempfile::tempdir().unwrap();
    let ns = Servers::namespace(tag);
    let first = open_from_snapshots(&ns, root.path()).unwrap();
    assert_eq!(first.started_from(), None, "nothing to start from yet");
    seed(&first);
    (root, ns, first)
}

/// Removes the deployment's stream messages before `seq`, as its retention would.
fn purge_stream_before(ns: &str, seq: u64) {
    block_on(async {
        let stream = stream_of(ns).await;
        stream.purge().sequence(seq).await.unwrap();
        let first = stream.clone().info().await.unwrap().state.first_sequence;
        assert_eq!(first, seq, "the stream now starts at the purge");
    });
}

/// Views of `user` with keys `tag-0..n`.
fn views(tag: &str, user: &str, n: usize, secs: i64) -> Vec<Event> {
    (0..n)
        .map(|e| {
            view(
                &format!("{tag}-{e}"),
                user,
                &format!("v{}_{}", e % 10, e % 5),
                secs + e as i64,
                4_000,
            )
        })
        .collect()
}

#[test]
fn a_replica_started_from_a_mirror_snapshot_holds_what_the_others_do_once_the_logs_before_it_are_gone()
 {
    let (root, ns, a) = seeded_with_snapshots("m");
    a.set_relation(&uid("p1"), &uid("p2"), Relation::Follow, true)
        .unwrap();
    a.ingest_events(&views("before", "p1", 12, 100)).unwrap();
    a.revoke_consent(&uid("p3"), &Revocation::Creator(uid("p2")))
        .unwrap();
    let position = a.save_mirror().unwrap().position;
    assert_eq!(
        (position.version, position.seq),
        a.applied(),
        "the snapshot stands where its mirror had applied"
    );
    assert!(position.seq > 0 && position.version > 0);
    // Written after the snapshot, through another replica.
    let other = open(&ns);
    other
        .upsert_videos(&[video("late", "p5", &["p6"], 77)])
        .unwrap();
    other.ingest_events(&views("after", "p2", 9, 200)).unwrap();
    other
        .set_relation(&uid("p2"), &uid("p7"), Relation::Follow, true)
        .unwrap();
    other
        .revoke_consent(&uid("p6"), &Revocation::Video(vid("late")))
        .unwrap();
    // The logs' retention removes what the snapshot holds.
    purge_stream_before(&ns, position.seq + 1);
    let replayed = open_from_snapshots(&ns, tempfile::tempdir().unwrap().path());
    let refused = replayed
        .err()
        .expect("a mirror built from the start lacks the purged messages");
    assert!(
        refused.to_string().contains("gone from the stream"),
        "{refused}"
    );
    // From the snapshot: the state of the replicas that saw everything.
    let b = open_from_snapshots(&ns, root.path()).unwrap();
    assert_eq!(b.started_from(), Some(position));
    a.catch_up().unwrap();
    let expected = state(&a);
    assert_eq!(state(&b), expected);
    assert_eq!(state(&other), expected);
    assert!(b.follows(&uid("p2"), &uid("p7")).unwrap());
    assert!(b.video(&vid("late")).unwrap().is_some());
    // It goes on following the logs.
    b.ingest_events(&views("later", "p4", 3, 300)).unwrap();
    a.catch_up().unwrap();
    assert_eq!(state(&a), state(&b));
}

#[test]
fn an_erasure_removes_every_mirror_snapshot_older_than_it() {
    let (root, ns, leader) = seeded_with_snapshots("m");
    leader.ingest_events(&views("p4s", "p4", 6, 100)).unwrap();
    leader.save_mirror().unwrap();
    leader.ingest_events(&views("p5s", "p5", 6, 150)).unwrap();
    leader.save_mirror().unwrap();
    let snapshots = steerfeed_shared::mirrors::MirrorSnapshots::open(root.path(), &ns).unwrap();
    assert_eq!(snapshots.list().unwrap().len(), 2);
    // Another replica erases p4: both snapshots hold p4's views, and go.
    let eraser = open_from_snapshots(&ns, root.path()).unwrap();
    eraser
        .erase_user(&uid("p4"), steerfeed_core::OwnVideos::Delete)
        .unwrap();
    assert!(snapshots.list().unwrap().is_empty());
    // The next snapshot is taken after the erasure, and a replica started from it holds
    // what the others do.
    let after = leader.save_mirror().unwrap().position;
    assert_eq!(snapshots.list().unwrap().len(), 1);
    let started = open_from_snapshots(&ns, root.path()).unwrap();
    assert_eq!(started.started_from(), Some(after));
    eraser.catch_up().unwrap();
    assert_eq!(state(&started), state(&eraser));
    assert!(
        state(&started).1.iter().all(|e| !e.contains("\"p4\"")),
        "no event of the erased person"
    );
    // An erasure through a replica that keeps no snapshots: the leader removes the older
    // ones when it applies it, and a snapshot is then missing.
    assert!(!leader.mirror_snapshot_missing());
    open(&ns)
        .erase_user(&uid("p5"), steerfeed_core::OwnVideos::Keep)
        .unwrap();
    assert_eq!(snapshots.list().unwrap().len(), 1);
    leader.catch_up().unwrap();
    assert!(snapshots.list().unwrap().is_empty());
    assert!(leader.mirror_snapshot_missing());
    leader.save_mirror().unwrap();
    assert!(!leader.mirror_snapshot_missing());
}

#[test]
fn a_mirror_snapshot_past_the_logs_is_refused() {
    let (root, ns, a) = seeded_with_snapshots("m");
    a.ingest_events(&views("k", "p1", 4, 100)).unwrap();
    a.save_mirror().unwrap();
    // Another deployment's snapshot, where this one's logs are shorter.
    let other = Servers::namespace("m");
    let src = root.path().join(&ns).join("mirrors");
    std::fs::create_dir(root.path().join(&other)).unwrap();
    steerfeed_store::copy_tree(&src, &root.path().join(&other).join("mirrors")).unwrap();
    let refused = open_from_snapshots(&other, root.path())
        .err()
        .expect("refused");
    assert!(refused.to_string().contains("past the logs"), "{refused}");
}

/// The first column of each row `sql` answers, an integer or null.
fn pg_query(sql: &str) -> Vec<Option<i64>> {
    pg_rows(sql, |r| r.try_get(0).ok().flatten())
}

fn first_stream_seq(ns: &str) -> u64 {
    block_on(async {
        stream_of(ns)
            .await
            .info()
            .await
            .unwrap()
            .state
            .first_sequence
    })
}

#[test]
fn trimming_the_logs_keeps_what_live_replicas_and_the_oldest_mirror_snapshot_need() {
    let (root, ns, leader) = seeded_with_snapshots("t");
    leader.ingest_events(&views("a", "p1", 8, 100)).unwrap();
    // Opened here and never seen again: the trim may leave them behind.
    let unseen = open(&ns);
    let unseen_at = unseen.applied();
    let reconnected = open(&ns);
    assert_eq!(reconnected.applied(), unseen_at);
    leader.ingest_events(&views("b", "p2", 8, 200)).unwrap();
    leader
        .set_relation(&uid("p2"), &uid("p3"), Relation::Follow, true)
        .unwrap();
    // Opened here, and live: the trim keeps what it has still to apply.
    let slow = open(&ns);
    let slow_at = slow.applied();
    assert!(slow_at.0 > unseen_at.0 && slow_at.1 > unseen_at.1);
    leader
        .upsert_videos(&[video("late", "p5", &["p6"], 77)])
        .unwrap();
    leader
        .revoke_consent(&uid("p6"), &Revocation::Creator(uid("p5")))
        .unwrap();
    leader.ingest_events(&views("b2", "p6", 4, 250)).unwrap();
    let oldest = leader.save_mirror().unwrap().position;
    assert!(oldest.version > slow_at.0 && oldest.seq > slow_at.1);
    leader.ingest_events(&views("c", "p3", 8, 300)).unwrap();
    let newest = leader.save_mirror().unwrap().position;
    leader.ingest_events(&views("d", "p4", 8, 400)).unwrap();
    leader
        .set_relation(&uid("p4"), &uid("p7"), Relation::Follow, true)
        .unwrap();

    // The unseen one last reported an hour ago.
    let stale = pg_query(&format!(
        "WITH s AS (UPDATE sf_{ns}.replicas SET seen_at = now() - interval '1 hour' \
         WHERE version = {} AND seq = {} RETURNING 1) SELECT count(*) FROM s",
        unseen_at.0, unseen_at.1
    ));
    assert_eq!(stale, vec![Some(2)], "one report per process");
    let live = std::time::Duration::from_secs(600);
    let kept_for_slow = leader.trim_logs(live, Trim::Stream).unwrap().unwrap();
    assert_eq!(
        (kept_for_slow.upto.version, kept_for_slow.upto.seq),
        slow_at
    );
    assert!(kept_for_slow.changes == 0 && kept_for_slow.messages > 0);
    assert_eq!(first_stream_seq(&ns), slow_at.1 + 1);
    assert_eq!(
        pg_query(&format!("SELECT min(version) FROM sf_{ns}.changes")),
        vec![Some(1)],
        "the stream alone"
    );
    // One whose connection to the stream was lost meanwhile reads it again from where
    // it stood, finds the gap, and serves nothing from then on.
    reconnected.drop_stream_consumer();
    let gone = reconnected.catch_up().unwrap_err();
    assert!(gone.to_string().contains("restart"), "{gone}");
    assert!(reconnected.catch_up().is_err());
    // The live one catches up from what was kept.
    slow.catch_up().unwrap();
    leader.catch_up().unwrap();
    assert_eq!(state(&slow), state(&leader));
    // The change log too, to the same point (the slow one's last report).
    let both = leader.trim_logs(live, Trim::Both).unwrap().unwrap();
    assert_eq!((both.upto.version, both.upto.seq), slow_at);
    assert!(both.changes > 0);
    assert_eq!(
        pg_query(&format!("SELECT min(version) FROM sf_{ns}.changes")),
        vec![Some(slow_at.0 as i64 + 1)]
    );
    // The unseen one needs what is gone (its client may hold the stream's messages it
    // was sent, not the change log's rows): it says so and serves nothing from then on.
    let gone = unseen.catch_up().unwrap_err();
    assert!(gone.to_string().contains("restart"), "{gone}");
    assert!(unseen.catch_up().is_err());
    assert!(unseen.ingest_events(&views("e", "p1", 1, 500)).is_err());
    assert!(unseen.cut_off() && unseen.health().is_err(), "not ready");
    assert!(!slow.cut_off() && slow.health().is_ok());

    // With no process seen: up to the oldest snapshot.
    let to_snapshot = leader
        .trim_logs(std::time::Duration::ZERO, Trim::Both)
        .unwrap()
        .unwrap();
    assert_eq!(to_snapshot.upto, oldest);
    assert_eq!(first_stream_seq(&ns), oldest.seq + 1);
    assert_eq!(
        pg_query(&format!("SELECT min(version) FROM sf_{ns}.changes")),
        vec![Some(oldest.version as i64 + 1)]
    );
    assert_eq!(
        pg_query(&format!(
            "SELECT count(*) FROM sf_{ns}.change_people WHERE version <= {}",
            oldest.version
        )),
        vec![Some(0)]
    );
    // A process without snapshots cannot start; one from the newest holds what the
    // others do, and goes on following the logs.
    let servers = Servers::shared().unwrap();
    let without = SharedStore::open(SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &servers.redis_url,
        &ns,
        StoreOptions::with_dim(DIM),
    ));
    let without = without
        .err()
        .expect("no mirror can be built from the trimmed logs");
    assert!(
        without
            .to_string()
            .contains("start from a newer mirror snapshot"),
        "{without}"
    );
    let started = open_from_snapshots(&ns, root.path()).unwrap();
    assert_eq!(started.started_from(), Some(newest));
    assert_eq!(state(&started), state(&leader));
    assert!(started.follows(&uid("p4"), &uid("p7")).unwrap());
    started.ingest_events(&views("f", "p5", 3, 600)).unwrap();
    leader.catch_up().unwrap();
    slow.catch_up().unwrap();
    assert_eq!(state(&leader), state(&started));
    assert_eq!(state(&slow), state(&started));
}

#[test]
fn once_trimmed_after_an_erasure_the_change_log_holds_nothing_of_the_person() {
    let (root, ns, leader) = seeded_with_snapshots("t");
    let me = uid("erased-uploader-wq");
    leader
        .upsert_user(&User {
            id: me.clone(),
            age_band: AgeBand::Adult,
            time_zone: "UTC".into(),
        })
        .unwrap();
    leader
        .set_consent(&me, ConsentScope::Everyone, &[])
        .unwrap();
    let mut theirs = video("wq-video", me.as_str(), &["p1"], 91);
    theirs.caption = "a caption only wq wrote".into();
    leader.upsert_videos(&[theirs]).unwrap();
    leader
        .set_relation(&uid("p2"), &me, Relation::Follow, true)
        .unwrap();
    leader
        .ingest_events(&views("wq", me.as_str(), 5, 100))
        .unwrap();
    leader.save_mirror().unwrap();
    leader
        .erase_user(&me, steerfeed_core::OwnVideos::Delete)
        .unwrap();
    // What the erasure leaves in the log: the bare id, and the rows of the videos it
    // deleted.
    let before = change_log(&ns);
    assert!(before.iter().any(|b| b.contains("a caption only wq wrote")));
    assert!(before.iter().any(|b| b.contains("erased-uploader-wq")));
    leader.ingest_events(&views("after", "p3", 3, 200)).unwrap();
    let after = leader.save_mirror().unwrap().position;
    let trimmed = leader
        .trim_logs(std::time::Duration::ZERO, Trim::Both)
        .unwrap()
        .unwrap();
    assert_eq!(
        trimmed.upto, after,
        "the snapshot before the erasure is gone"
    );
    let bodies = change_log(&ns);
    assert!(
        bodies
            .iter()
            .all(|b| !b.contains("wq") && !b.contains("a caption only")),
        "{bodies:?}"
    );
    // A replica started now holds what the leader does, and nothing of theirs.
    let started = open_from_snapshots(&ns, root.path()).unwrap();
    assert_eq!(started.started_from(), Some(after));
    assert_eq!(state(&started), state(&leader));
    assert!(started.export_user(&me, at(300)).unwrap().is_empty());
    let gone = started.video(&vid("wq-video")).unwrap();
    assert!(gone.as_ref().is_none_or(|v| v.deleted), "{gone:?}");
}

fn event(key: &str, user: &str, secs: i64, kind: steerfeed_core::EventKind) -> Event {
    Event {
        key: EventKey::new(key).unwrap(),
        user: uid(user),
        at: at(secs),
        kind,
    }
}

#[test]
fn a_follow_or_mute_from_an_event_and_an_unfollow_or_unmute_logged_meanwhile_end_alike_everywhere()
{
    use steerfeed_core::EventKind;
    let root = tempfile::tempdir().unwrap();
    let ns = Servers::namespace("o");
    let publisher = open_from_snapshots(&ns, root.path()).unwrap();
    let writer = Arc::new(open_from_snapshots(&ns, root.path()).unwrap());
    seed(&publisher);
    // p1 follows p2 and has muted p3.
    publisher
        .set_relations(&[
            (uid("p1"), uid("p2"), Relation::Follow, true),
            (uid("p1"), uid("p3"), Relation::Mute, true),
        ])
        .unwrap();
    // p1 follows p2 again and hides p3 from a video, p4 follows p5 from one, while
    // another replica logs p1's unfollow and unmute (after the publisher caught up,
    // before its batch is published) and snapshots its mirror. The batch comes first
    // in the one order: the unfollow and the unmute are the last word on those pairs,
    // and p4, whom no change touched, follows p5.
    // The same replica erases p7, whose videos stay: p8's follow from one of them,
    // stamped before the erasure, ends with it everywhere, and p8's hiding of p7 (a
    // mute, which an erasure keeps) stays everywhere.
    let w = Arc::clone(&writer);
    publisher.before_next_publish(Box::new(move || {
        w.set_relations(&[
            (uid("p1"), uid("p2"), Relation::Follow, false),
            (uid("p1"), uid("p3"), Relation::Mute, false),
        ])
        .unwrap();
        w.erase_user(&uid("p7"), steerfeed_core::OwnVideos::Keep)
            .unwrap();
        w.save_mirror().unwrap();
    }));
    publisher
        .ingest_events(&[
            event("f", "p1", 50, EventKind::Follow { video: vid("v2_0") }),
            event("h", "p1", 51, EventKind::HideCreator { video: vid("v3_1") }),
            event("g", "p4", 52, EventKind::Follow { video: vid("v5_2") }),
            event("e", "p8", 53, EventKind::Follow { video: vid("v7_0") }),
            event("m", "p8", 54, EventKind::HideCreator { video: vid("v7_1") }),
        ])
        .unwrap();
    // One replica starts from the writer's snapshot (which holds the unfollow and the
    // unmute, not the batch), another replays both logs.
    let from_first = open_from_snapshots(&ns, root.path()).unwrap();
    assert!(from_first.started_from().is_some());
    let replayed = open(&ns);
    let all: [&SharedStore; 4] = [&publisher, &writer, &from_first, &replayed];
    for s in all {
        s.catch_up().unwrap();
    }
    let expected = state(&publisher);
    for (i, s) in all.into_iter().enumerate() {
        assert!(!s.follows(&uid("p1"), &uid("p2")).unwrap(), "replica {i}");
        assert!(
            !s.mirror().muted(&uid("p1")).unwrap().contains(&uid("p3")),
            "replica {i}"
        );
        assert!(s.follows(&uid("p4"), &uid("p5")).unwrap(), "replica {i}");
        assert!(!s.follows(&uid("p8"), &uid("p7")).unwrap(), "replica {i}");
        assert!(
            s.mirror().muted(&uid("p8")).unwrap().contains(&uid("p7")),
            "replica {i}"
        );
        assert!(s.health().is_ok(), "replica {i}");
        assert_eq!(state(s), expected, "replica {i}");
    }
}

#[test]
fn writes_from_many_threads_at_once_are_all_logged_once_in_one_order_and_a_refused_one_nowhere() {
    let (ns, rs) = replicas(2);
    seed(&rs[0]);
    let before = rs[0].applied().0;
    let writers = 8;
    let per = 25;
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..writers {
            let (store, refused) = (&rs[0], &refused);
            s.spawn(move || {
                for i in 0..per {
                    let a = uid(&format!("p{}", (t + i) % 9));
                    let b = uid(&format!("p{}", (t + i + 1 + i % 7) % 9));
                    let on = (t + i) % 3 != 0;
                    store.set_relation(&a, &b, Relation::Follow, on).unwrap();
                    if i % 10 == 0 {
                        // Someone the deployment does not know: refused, logged nowhere.
                        let err = store
                            .set_relation(&a, &uid("nobody-at-all"), Relation::Follow, true)
                            .unwrap_err();
                        assert!(err.to_string().contains("nobody-at-all"), "{err}");
                        refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(refused.into_inner() > 0);
    // One row per accepted write, numbered without a gap, none naming the stranger.
    let rows = pg_query(&format!(
        "SELECT count(*) FROM sf_{ns}.changes WHERE version > {before}"
    ));
    assert_eq!(rows, vec![Some((writers * per) as i64)]);
    let top = pg_query(&format!("SELECT max(version) FROM sf_{ns}.changes"));
    assert_eq!(top, vec![Some(before as i64 + (writers * per) as i64)]);
    assert!(change_log(&ns).iter().all(|b| !b.contains("nobody-at-all")));
    // Committed together: writes that came in while one transaction committed share the
    // next (a transaction's rows carry its start time).
    let transactions = pg_query(&format!(
        "SELECT count(DISTINCT at) FROM sf_{ns}.changes WHERE version > {before}"
    ));
    assert!(
        transactions[0].unwrap() < (writers * per) as i64,
        "{transactions:?}"
    );
    // The other replica, and one replaying the logs, end where the writer did.
    rs[1].catch_up().unwrap();
    let replayed = open(&ns);
    let expected = state(&rs[0]);
    assert_eq!(state(&rs[1]), expected);
    assert_eq!(state(&replayed), expected);
}

#[test]
fn a_process_reports_where_its_mirror_stands_as_it_catches_up() {
    let (ns, rs) = replicas(2);
    seed(&rs[0]);
    let reported = || {
        pg_rows(
            &format!("SELECT version, seq FROM sf_{ns}.replicas ORDER BY version, seq"),
            |r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64),
        )
    };
    // Each reported at open; the second's report is older than what it holds once the
    // first has written more.
    rs[0].ingest_events(&views("r", "p1", 4, 100)).unwrap();
    rs[1].catch_up().unwrap();
    let held = rs[1].applied();
    assert!(!reported().contains(&held), "{:?} {held:?}", reported());
    // A catch-up more than 10 s after its last report reports again (in the background).
    std::thread::sleep(std::time::Duration::from_secs(11));
    rs[1].catch_up().unwrap();
    let start = std::time::Instant::now();
    while !reported().contains(&held) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no report of {held:?}: {:?}",
            reported()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_person_updated_on_a_replica_still_has_their_events_applied_there() {
    let (_ns, r) = replicas(2);
    seed(&r[0]);
    // b has opened p1's key (a page served there) before the update it applies.
    let first = view("upd-1", "p1", "v2_0", 100, 4_000);
    r[0].ingest_events(std::slice::from_ref(&first)).unwrap();
    r[1].catch_up().unwrap();
    // The account is written again (a new time zone) through b, then a takes p1's events.
    r[1].upsert_user(&User {
        id: uid("p1"),
        age_band: AgeBand::Adult,
        time_zone: "Europe/Paris".into(),
    })
    .unwrap();
    let second = view("upd-2", "p1", "v3_0", 200, 5_000);
    r[0].catch_up().unwrap();
    r[0].ingest_events(std::slice::from_ref(&second)).unwrap();
    for s in &r {
        s.catch_up().unwrap();
        let (_, events, _) = state(s);
        assert_eq!(events.len(), 2, "both of p1's events: {events:?}");
        assert_eq!(
            s.user(&uid("p1")).unwrap().unwrap().time_zone,
            "Europe/Paris"
        );
    }
    assert_eq!(state(&r[0]), state(&r[1]));

    // Erased, then made again: their new events apply everywhere, the old ones nowhere.
    r[1].erase_user(&uid("p1"), steerfeed_core::OwnVideos::Keep)
        .unwrap();
    r[0].catch_up().unwrap();
    r[0].upsert_user(&User::new(uid("p1"))).unwrap();
    let third = view("upd-3", "p1", "v4_0", 300, 6_000);
    r[0].ingest_events(std::slice::from_ref(&third)).unwrap();
    for s in &r {
        s.catch_up().unwrap();
        let (_, events, _) = state(s);
        let theirs: Vec<&String> = events.iter().filter(|e| e.contains("\"p1\"")).collect();
        assert_eq!(theirs.len(), 1, "{theirs:?}");
        assert!(theirs[0].contains("upd-3"), "{theirs:?}");
    }
}

//! Erasure and export: an erased person leaves no record of theirs in any tree (checked
//! on the raw sled database, byte for byte), others' data stays with its numbering, the
//! erasure survives a crash and a reopen, is idempotent, and a store restored from a
//! copy made before it forgets the person again at open.

use std::collections::BTreeSet;
use std::path::Path;

use steerfeed_core::ports::{ConsentLedger, SocialGraph, VideoCatalog};
use steerfeed_core::storage::ServedPage;
use steerfeed_core::{
    AgeBand, ConsentScope, Constraints, Event, OwnVideos, ParentalControls, Record, User,
};
use steerfeed_store::{Revocation, Store};

use crate::support::{at, ev, like, opts, raw_sled, uid, vid, video, view};

/// The erased person's id: distinctive, so a byte scan of the database finds every
/// place it is written.
const ERIN: &str = "erin-the-erased";

fn person(id: &str) -> User {
    User {
        id: uid(id),
        age_band: AgeBand::Adult,
        time_zone: "UTC".into(),
    }
}

/// Erin, Bob and Cat, with Erin everywhere: two videos of her own (one with her cameo),
/// a cameo in one of Bob's, relations both ways, consent and a revocation, parental
/// controls, preferences, a served page, and events on both sides of a flush (some of
/// her state is in sled, some still in memory).
fn populate(store: &Store) {
    for u in [ERIN, "bob", "cat"] {
        store.upsert_user(&person(u)).unwrap();
    }
    let mut own_cameo = video("ve1", ERIN, 0);
    own_cameo.cameos = vec![uid(ERIN)];
    let mut bobs_cameo = video("vbc", "bob", 10);
    bobs_cameo.cameos = vec![uid(ERIN), uid("cat")];
    store
        .upsert_videos(&[
            own_cameo,
            video("ve2", ERIN, 5),
            bobs_cameo,
            video("vb1", "bob", 20),
            video("vc1", "cat", 30),
        ])
        .unwrap();
    store.follow(&uid(ERIN), &uid("bob")).unwrap();
    store.follow(&uid("cat"), &uid(ERIN)).unwrap();
    store.follow(&uid("cat"), &uid("bob")).unwrap();
    store.block(&uid(ERIN), &uid("cat")).unwrap();
    store.mute(&uid("bob"), &uid(ERIN)).unwrap();
    store.mute(&uid(ERIN), &uid("bob")).unwrap();
    store
        .set_consent(&uid(ERIN), ConsentScope::Approved, &[uid("bob")])
        .unwrap();
    store
        .set_consent(
            &uid("bob"),
            ConsentScope::Approved,
            &[uid(ERIN), uid("cat")],
        )
        .unwrap();
    store
        .revoke_consent(&uid(ERIN), &Revocation::Video(vid("vb1")))
        .unwrap();
    store
        .set_parental_controls(
            &uid(ERIN),
            &ParentalControls {
                scroll_cap: Some(30),
                ..ParentalControls::default()
            },
        )
        .unwrap();
    store
        .set_preferences(&uid(ERIN), "more cooking", &Constraints::default())
        .unwrap();
    store
        .ingest_events(&[
            ev("erin-like-1", ERIN, 100, like("vb1")),
            ev("bob-like-1", "bob", 101, like("ve1")),
            ev("erin-view-1", ERIN, 102, view("vc1", 9_000)),
            ev("cat-like-1", "cat", 103, like("vb1")),
        ])
        .unwrap();
    store.flush().unwrap();
    store
        .ingest_events(&[
            ev("bob-view-1", "bob", 200, view("vbc", 4_000)),
            ev("erin-view-2", ERIN, 201, view("vbc", 7_000)),
            ev("cat-view-1", "cat", 202, view("ve2", 3_000)),
        ])
        .unwrap();
    store
        .record_page(
            &uid(ERIN),
            &ServedPage {
                videos: &[vid("vc1")],
                ..ServedPage::default()
            },
            at(210),
        )
        .unwrap();
}

fn logged(store: &Store) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    store
        .for_each_event(1, |seq, e| {
            out.push((seq, e));
            Ok(())
        })
        .unwrap();
    out
}

/// Trees of the closed store at `path` with a key or value holding `needle`.
fn trees_holding(path: &Path, needle: &[u8]) -> BTreeSet<String> {
    let db = raw_sled(path);
    let mut out = BTreeSet::new();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        for kv in tree.iter() {
            let (k, v) = kv.unwrap();
            let holds = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
            if holds(&k) || holds(&v) {
                out.insert(String::from_utf8_lossy(&name).into_owned());
                break;
            }
        }
    }
    out
}

/// What must hold of a store once Erin is erased (with her own videos deleted), and
/// `others` are the events of everyone else logged before.
fn assert_erased(store: &Store, others: &[(u64, Event)]) {
    let erin = uid(ERIN);
    assert!(store.user(&erin).unwrap().is_none());
    assert!(store.export_user(&erin, at(300)).unwrap().is_empty());
    assert!(store.preferences(&erin).unwrap().is_none());
    assert_eq!(
        store.parental_controls(&erin).unwrap(),
        ParentalControls::default()
    );
    assert!(store.seen(&erin).unwrap().is_empty());
    assert!(store.interest(&erin).unwrap().is_none());
    assert_eq!(
        store.consent(&erin).unwrap(),
        (ConsentScope::Nobody, vec![])
    );
    assert!(
        !store
            .is_revoked(&erin, &Revocation::Video(vid("vb1")))
            .unwrap()
    );
    assert!(SocialGraph::following(store, &erin).unwrap().is_empty());
    assert_eq!(
        SocialGraph::following(store, &uid("cat")).unwrap(),
        vec![uid("bob")]
    );
    assert!(store.followers(&uid("bob")).unwrap().contains(&uid("cat")));
    // Bob's approval of her is gone; his approval of Cat stays.
    assert_eq!(
        store.consent(&uid("bob")).unwrap(),
        (ConsentScope::Approved, vec![uid("cat")])
    );
    assert!(!store.followers(&uid("bob")).unwrap().contains(&erin));
    // Her videos and the one featuring her are deleted, scrubbed of her.
    for id in ["ve1", "ve2", "vbc"] {
        let v = VideoCatalog::video(store, &vid(id)).unwrap().unwrap();
        assert!(v.deleted, "{id} still served");
        assert!(!v.cameos.contains(&erin), "{id} still names her");
    }
    assert!(
        VideoCatalog::video(store, &vid("ve1"))
            .unwrap()
            .unwrap()
            .caption
            .is_empty()
    );
    assert!(
        VideoCatalog::featuring(store, &erin, 10)
            .unwrap()
            .is_empty()
    );
    assert!(
        !VideoCatalog::video(store, &vid("vb1"))
            .unwrap()
            .unwrap()
            .deleted
    );
    // Her events are unreadable; everyone else's keep their numbers.
    let left = logged(store);
    assert!(left.iter().all(|(_, e)| e.user != erin));
    for o in others {
        assert!(left.contains(o), "lost {o:?}");
    }
    assert!(
        store
            .cameo_consent(&erin, &uid("bob"), &vid("vbc"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_erased_person_leaves_no_record_and_others_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let store = Store::open(&path, opts()).unwrap();
    populate(&store);
    let before = logged(&store);
    let count = store.event_count();
    let others: Vec<_> = before
        .iter()
        .filter(|(_, e)| e.user.as_str() != ERIN)
        .cloned()
        .collect();
    let exported = store.export_user(&uid(ERIN), at(300)).unwrap();
    let events_of_erin = exported
        .iter()
        .filter(|r| matches!(r, Record::Event { .. }))
        .count();
    assert_eq!(events_of_erin, before.len() - others.len());

    let report = store.erase_user(&uid(ERIN), OwnVideos::Delete).unwrap();
    assert!(!report.already_erased);
    assert_eq!(report.events, 3);
    assert_eq!(report.own_videos_deleted, 2);
    assert_eq!(report.cameo_videos_deleted, 1);
    assert_eq!(
        report.deleted.iter().cloned().collect::<BTreeSet<_>>(),
        [vid("ve1"), vid("ve2"), vid("vbc")].into_iter().collect()
    );
    assert_eq!(store.event_count(), count, "the numbering moved");
    assert_erased(&store, &others);
    // Cat's cameo in Bob's video is still hers.
    let vbc = VideoCatalog::video(&store, &vid("vbc")).unwrap().unwrap();
    assert_eq!(vbc.cameos, vec![uid("cat")]);

    // Her events' keys are forgotten; everyone else's still deduplicate.
    let again = store
        .ingest_events(&[
            ev("erin-like-1", "bob", 400, like("vb1")),
            ev("bob-like-1", "bob", 101, like("ve1")),
        ])
        .unwrap();
    assert_eq!(again.accepted, 1);
    assert_eq!(again.duplicates.len(), 1);
    assert_eq!(again.duplicates[0].as_str(), "bob-like-1");
    // An event on one of her deleted videos is accepted and ties Bob to no one.
    let affinity_before = store.creator_affinity(&uid("bob"), at(402)).unwrap();
    store
        .ingest_events(&[ev("bob-like-2", "bob", 402, like("ve2"))])
        .unwrap();
    let affinity_after = store.creator_affinity(&uid("bob"), at(402)).unwrap();
    assert_eq!(
        affinity_after.keys().collect::<BTreeSet<_>>(),
        affinity_before.keys().collect::<BTreeSet<_>>()
    );
    assert!(!affinity_after.contains_key(&uid(steerfeed_core::person::ERASED_CREATOR)));
    let others: Vec<_> = logged(&store)
        .into_iter()
        .filter(|(_, e)| e.user.as_str() != ERIN)
        .collect();

    // Idempotent; an id never stored is not found.
    let twice = store.erase_user(&uid(ERIN), OwnVideos::Delete).unwrap();
    assert!(twice.already_erased);
    assert_eq!(twice.events + twice.records, 0);
    assert!(store.erase_user(&uid("nobody"), OwnVideos::Keep).is_err());

    // A crash right after: nothing of hers comes back from the log's replay.
    store.crash_for_tests().unwrap();
    let store = Store::open(&path, opts()).unwrap();
    assert_erased(&store, &others);
    assert_eq!(store.erasures().len(), 1);
    drop(store);

    // Byte for byte: her id is left only where others keep it on purpose (Bob's mute of
    // her and Bob's affinity toward her as a creator).
    assert_eq!(
        trees_holding(&path, ERIN.as_bytes()),
        ["affinity", "mutes"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    // Her event keys are gone (Bob's reuse of "erin-like-1" above is his own event).
    assert!(trees_holding(&path, b"erin-view").is_empty());
    assert!(!trees_holding(&path, b"bob-like").is_empty());
}

#[test]
fn kept_videos_stay_served_and_a_person_stored_again_is_a_new_person() {
    let store = Store::temporary(opts()).unwrap();
    populate(&store);
    let report = store.erase_user(&uid(ERIN), OwnVideos::Keep).unwrap();
    // ve1 features her: it goes whatever the request (so does Bob's vbc); ve2 stays
    // hers and served.
    assert_eq!(report.own_videos_deleted, 1);
    assert_eq!(report.cameo_videos_deleted, 1);
    assert!(
        VideoCatalog::video(&store, &vid("ve1"))
            .unwrap()
            .unwrap()
            .deleted
    );
    let ve2 = VideoCatalog::video(&store, &vid("ve2")).unwrap().unwrap();
    assert!(!ve2.deleted);
    assert_eq!(ve2.creator, uid(ERIN));
    assert!(
        VideoCatalog::video(&store, &vid("vbc"))
            .unwrap()
            .unwrap()
            .deleted
    );
    // Kept is kept until asked otherwise: a second erasure with `keep` has nothing to do,
    // one with `delete` deletes the videos kept, then there is nothing left.
    assert!(
        store
            .erase_user(&uid(ERIN), OwnVideos::Keep)
            .unwrap()
            .already_erased
    );
    let deleting = store.erase_user(&uid(ERIN), OwnVideos::Delete).unwrap();
    assert!(!deleting.already_erased);
    assert_eq!(deleting.own_videos_deleted, 1);
    assert!(
        VideoCatalog::video(&store, &vid("ve2"))
            .unwrap()
            .unwrap()
            .deleted
    );
    assert!(
        store
            .erase_user(&uid(ERIN), OwnVideos::Delete)
            .unwrap()
            .already_erased
    );
    assert_eq!(store.erasures().len(), 2);
    // Stored again, the id is someone new: nothing of the erased person is theirs.
    store.upsert_user(&person(ERIN)).unwrap();
    let exported = store.export_user(&uid(ERIN), at(300)).unwrap();
    assert_eq!(exported, vec![Record::User { user: person(ERIN) }]);
    // The placeholder creator of erased videos is no one's id.
    let reserved = store.upsert_user(&person(steerfeed_core::person::ERASED_CREATOR));
    assert!(reserved.is_err());
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
fn a_store_restored_from_an_older_copy_forgets_the_person_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let backup = dir.path().join("backup");
    let others = {
        let store = Store::open(&path, opts()).unwrap();
        populate(&store);
        store.flush().unwrap();
        logged(&store)
            .into_iter()
            .filter(|(_, e)| e.user.as_str() != ERIN)
            .collect::<Vec<_>>()
    };
    copy_dir(&path, &backup);
    {
        let store = Store::open(&path, opts()).unwrap();
        store.erase_user(&uid(ERIN), OwnVideos::Delete).unwrap();
    }
    // The copy made before the erasure replaces the store; the erasure log beside it
    // stays, and opening carries the erasure out again.
    std::fs::remove_dir_all(&path).unwrap();
    copy_dir(&backup, &path);
    {
        let store = Store::open(&path, opts()).unwrap();
        assert_erased(&store, &others);
    }
    // Reopening again changes nothing (the store records what it applied).
    {
        let store = Store::open(&path, opts()).unwrap();
        assert_erased(&store, &others);
        assert_eq!(store.erasures().len(), 1);
    }
    // Without its erasure log a store that applied erasures refuses to open.
    std::fs::remove_file(dir.path().join("db.erasures.jsonl")).unwrap();
    let err = Store::open(&path, opts()).unwrap_err().to_string();
    assert!(err.contains("erasure log"), "{err}");
}

#[test]
fn an_export_lists_everything_stored_about_the_person() {
    let store = Store::temporary(opts()).unwrap();
    populate(&store);
    let records = store.export_user(&uid(ERIN), at(300)).unwrap();
    let kinds: BTreeSet<&str> = records
        .iter()
        .map(|r| match r {
            Record::User { .. } => "user",
            Record::Follow { .. } => "follow",
            Record::Block { .. } => "block",
            Record::Mute { .. } => "mute",
            Record::Consent { .. } => "consent",
            Record::Revocation { .. } => "revocation",
            Record::ParentalControls { .. } => "parental_controls",
            Record::Preferences { .. } => "preferences",
            Record::Wellbeing { .. } => "wellbeing",
            Record::Seen { .. } => "seen",
            Record::Engagement { .. } => "engagement",
            Record::Interest { .. } => "interest",
            Record::Affinity { .. } => "affinity",
            Record::Event { .. } => "event",
            Record::Video { .. } => "video",
            Record::Cameo { .. } => "cameo",
            Record::Impression { .. } => "impression",
        })
        .collect();
    for want in [
        "user",
        "follow",
        "block",
        "mute",
        "consent",
        "revocation",
        "parental_controls",
        "preferences",
        "wellbeing",
        "seen",
        "engagement",
        "interest",
        "affinity",
        "event",
        "video",
        "cameo",
    ] {
        assert!(kinds.contains(want), "no {want} record in {records:?}");
    }
    // Relations both ways: she follows Bob, Cat follows her.
    assert!(records.contains(&Record::Follow {
        user: uid(ERIN),
        creator: uid("bob"),
    }));
    assert!(records.contains(&Record::Follow {
        user: uid("cat"),
        creator: uid(ERIN),
    }));
    assert!(records.contains(&Record::Cameo {
        video: vid("vbc"),
        creator: uid("bob"),
        person: uid(ERIN),
    }));
    // Only her events, and every one of them.
    let events: Vec<&str> = records
        .iter()
        .filter_map(|r| match r {
            Record::Event { event, .. } => Some(event.key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(events, ["erin-like-1", "erin-view-1", "erin-view-2"]);
    // Each record reads back from its JSON line.
    for r in &records {
        let line = serde_json::to_string(r).unwrap();
        assert_eq!(&serde_json::from_str::<Record>(&line).unwrap(), r);
    }
}

#[test]
fn writes_racing_an_erasure_leave_nothing_of_the_person_behind() {
    // Writers keep ingesting Erin's events, recording her pages and changing her
    // relations while she is erased: each call lands before the erasure (and is erased
    // with her) or fails after it, and none leaves anything of hers behind.
    let store = Store::temporary(opts()).unwrap();
    populate(&store);
    let erased = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let events = s.spawn(|| {
            let mut n = 0u32;
            loop {
                let key = format!("race-{n}");
                n += 1;
                let done = erased.load(std::sync::atomic::Ordering::Acquire);
                let r = store.ingest_events(&[ev(&key, ERIN, 500, like("vb1"))]);
                if done {
                    assert!(r.is_err(), "an event of hers accepted after her erasure");
                    return n;
                }
            }
        });
        let pages = s.spawn(|| {
            while !erased.load(std::sync::atomic::Ordering::Acquire) {
                store
                    .record_page(
                        &uid(ERIN),
                        &ServedPage {
                            videos: &[vid("vb1")],
                            ..ServedPage::default()
                        },
                        at(501),
                    )
                    .unwrap();
                let _ = store.set_preferences(&uid(ERIN), "more cats", &Constraints::default());
                let _ = store.follow(&uid("cat"), &uid(ERIN));
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        store.erase_user(&uid(ERIN), OwnVideos::Keep).unwrap();
        erased.store(true, std::sync::atomic::Ordering::Release);
        assert!(events.join().unwrap() > 0);
        pages.join().unwrap();
    });
    let erin = uid(ERIN);
    assert!(logged(&store).iter().all(|(_, e)| e.user != erin));
    assert!(store.seen(&erin).unwrap().is_empty());
    assert_eq!(store.wellbeing(&erin, at(502)).unwrap(), Default::default());
    assert!(store.preferences(&erin).unwrap().is_none());
    assert!(
        !SocialGraph::following(&store, &uid("cat"))
            .unwrap()
            .contains(&erin)
    );
    assert!(store.export_user(&erin, at(502)).unwrap().is_empty());
}

const ERASE_CHILD_ENV: &str = "STEERFEED_STORE_ERASE_CHILD";

/// The child role of the crash test: erases the people still stored, one after another,
/// printing each after its call returned, until killed. Does nothing in a normal run.
#[test]
fn erase_child() {
    let Ok(path) = std::env::var(ERASE_CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&path), opts()).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0..PEOPLE {
        let p = uid(&format!("p{i}"));
        if store.user(&p).unwrap().is_some() {
            store.erase_user(&p, OwnVideos::Delete).unwrap();
            use std::io::Write;
            writeln!(out, "X p{i}").unwrap();
            out.flush().unwrap();
        }
    }
}

/// People in the crash test, each with a video, a follow and three events.
const PEOPLE: usize = 120;

#[test]
fn an_erasure_killed_at_any_moment_is_whole_or_not_at_all() {
    use std::io::BufRead;
    if std::env::var(ERASE_CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let store = Store::open(&path, opts()).unwrap();
        store.upsert_user(&person("host")).unwrap();
        store.upsert_videos(&[video("host-v", "host", 0)]).unwrap();
        for i in 0..PEOPLE {
            let p = format!("p{i}");
            store.upsert_user(&person(&p)).unwrap();
            store
                .upsert_videos(&[video(&format!("v-{p}"), &p, 1)])
                .unwrap();
            store.follow(&uid(&p), &uid("host")).unwrap();
            store
                .ingest_events(&[
                    ev(&format!("{p}-a"), &p, 10, like("host-v")),
                    ev(&format!("host-{p}"), "host", 11, like(&format!("v-{p}"))),
                    ev(&format!("{p}-b"), &p, 12, view("host-v", 3_000)),
                ])
                .unwrap();
        }
    }
    let total = 3 * PEOPLE as u64;
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_crate, rest)| rest);
    let child_name = format!("{module}::erase_child");
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = std::collections::BTreeSet::new();
    let mut rng: u64 = 7;
    let mut rounds = 0;
    for round in 0..6 {
        rounds += 1;
        let mut child = std::process::Command::new(&exe)
            .args([
                child_name.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ERASE_CHILD_ENV, &path)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let kill_after = 1 + (rng >> 33) % 12;
        let mut seen = 0;
        while seen < kill_after {
            let Some(line) = lines.next() else { break };
            if let Some(p) = line.unwrap().strip_prefix("X ") {
                acknowledged.insert(p.to_owned());
                seen += 1;
            }
        }
        assert!(
            seen > 0,
            "round {round}: the child ({child_name}) erased nothing"
        );
        child.kill().unwrap();
        for line in lines {
            if let Some(p) = line.unwrap().strip_prefix("X ") {
                acknowledged.insert(p.to_owned());
            }
        }
        child.wait().unwrap();

        let store = Store::open(&path, opts()).unwrap();
        assert_eq!(
            store.event_count(),
            total,
            "round {round}: the numbering moved"
        );
        let logged = logged(&store);
        for i in 0..PEOPLE {
            let p = format!("p{i}");
            let theirs = logged.iter().filter(|(_, e)| e.user.as_str() == p).count();
            let stored = store.user(&uid(&p)).unwrap().is_some();
            let own = VideoCatalog::video(&store, &vid(&format!("v-{p}")))
                .unwrap()
                .unwrap();
            if acknowledged.contains(&p) {
                assert!(
                    !stored && theirs == 0 && own.deleted,
                    "round {round}: {p} came back"
                );
            } else {
                // Whole or not at all: an erasure the kill interrupted is finished at
                // open (its log entry was written) or never began.
                assert!(
                    (stored && theirs == 2 && !own.deleted)
                        || (!stored && theirs == 0 && own.deleted),
                    "round {round}: {p} half erased (stored {stored}, {theirs} events, \
                     video deleted {})",
                    own.deleted
                );
            }
        }
        // The host's events on everyone's videos are all still there.
        assert_eq!(
            logged
                .iter()
                .filter(|(_, e)| e.user.as_str() == "host")
                .count(),
            PEOPLE
        );
        let erased = (0..PEOPLE)
            .filter(|i| store.user(&uid(&format!("p{i}"))).unwrap().is_none())
            .count();
        assert_eq!(
            store.erasures().len(),
            erased,
            "round {round}: log and store disagree"
        );
        if erased == PEOPLE {
            break;
        }
    }
    assert!(rounds >= 2, "every person was erased before the first kill");
    assert!(!acknowledged.is_empty());
}

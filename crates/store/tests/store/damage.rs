//! Damage: unreadable records fail closed (the video, the likeness or the viewer they
//! might protect is withheld or restricted), are reported, and the store still opens.

use std::path::Path;

use steerfeed_core::ports::{ConsentLedger, VideoCatalog};
use steerfeed_core::{AgeBand, ConsentScope, User};
use steerfeed_store::Store;

use crate::support::{DIM, at, opts, raw_sled, seeded, uid, vid, video};

/// Writes raw records into a closed store's trees, as an older build or a damaged disk
/// could have left them.
fn write_raw(path: &Path, records: &[(&str, &[u8], &[u8])]) {
    let db = raw_sled(path);
    for (tree, k, v) in records {
        db.open_tree(tree).unwrap().insert(k, v.to_vec()).unwrap();
    }
    db.flush().unwrap();
}

fn revoked(store: &Store, person: &str, creator: &str, video: &str) -> bool {
    store
        .cameo_consent(&uid(person), &uid(creator), &vid(video))
        .unwrap()
        .unwrap()
        .revoked
}

#[test]
fn unreadable_records_fail_closed_and_the_store_still_opens() {
    use steerfeed_store::DamageRule;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        seeded(&store);
        store
            .upsert_user(&User {
                id: uid("d"),
                age_band: AgeBand::Adult,
                time_zone: "UTC".into(),
            })
            .unwrap();
        for p in ["c", "d"] {
            store
                .set_consent(&uid(p), ConsentScope::Everyone, &[])
                .unwrap();
        }
        store.block(&uid("b"), &uid("c")).unwrap();
    }
    // What the old normaliser stored for a sub-normal input: NaN in every slot.
    let nan: Vec<u8> = (0..DIM).flat_map(|_| f32::NAN.to_le_bytes()).collect();
    write_raw(
        dir.path(),
        &[
            ("embeddings", b"va2", &nan),
            // A revocation of c's whose kind tag is unknown: what it revoked is unknown.
            ("revocations", b"c\0xjunk", b""),
            // A block of a's whose blocked person is not UTF-8.
            ("blocks", b"a\0\xff\xfe", b""),
            ("consent", b"d", b"{not json"),
            // A follow that cannot be read is dropped.
            ("follows", b"\xc3\x28\0b", b""),
        ],
    );
    let store = Store::open(dir.path(), opts()).unwrap();

    // The embedding: the video is withheld, not indexed, and the other videos serve.
    assert!(store.video(&vid("va2")).unwrap().unwrap().deleted);
    assert!(!store.video(&vid("va1")).unwrap().unwrap().deleted);
    let mut indexed = Vec::new();
    store
        .for_each_embedding(|id, _, _| {
            indexed.push(id.to_string());
            Ok(())
        })
        .unwrap();
    assert_eq!(indexed, ["va1", "va3", "vb1"]);
    let newest = store.newest(at(0), 10).unwrap();
    assert!(newest.iter().all(|v| v.id != vid("va2")), "{newest:?}");
    assert_eq!(newest.len(), 3);

    // The revocation: every video featuring c reads as revoked, whoever made it; d's
    // likeness (unreadable consent) is nobody's to use; a, with no damaged record, is fine.
    assert!(revoked(&store, "c", "a", "va1"));
    assert!(revoked(&store, "c", "b", "vb1"));
    let d = store
        .cameo_consent(&uid("d"), &uid("a"), &vid("va1"))
        .unwrap()
        .unwrap();
    assert_eq!(d.scope, ConsentScope::Nobody);
    assert!(!d.revoked);
    store
        .set_consent(&uid("a"), ConsentScope::Everyone, &[])
        .unwrap();
    assert!(!revoked(&store, "a", "b", "vb1"));

    // The block: a's feed is restricted; b's (readable block) and c's are not.
    assert!(
        store
            .load_viewer(&uid("a"), at(0))
            .unwrap()
            .relations_unreadable
    );
    let b = store.load_viewer(&uid("b"), at(0)).unwrap();
    assert!(!b.relations_unreadable);
    assert!(b.blocked.contains(&uid("c")));
    assert!(
        !store
            .load_viewer(&uid("c"), at(0))
            .unwrap()
            .relations_unreadable
    );

    let damage = store.damage();
    let mut rules: Vec<(&str, DamageRule)> =
        damage.records.iter().map(|r| (r.tree, r.rule)).collect();
    rules.sort_by_key(|r| r.0);
    assert_eq!(
        rules,
        [
            ("blocks", DamageRule::ViewerRestricted),
            ("consent", DamageRule::LikenessWithheld),
            ("embeddings", DamageRule::VideoWithheld),
            ("follows", DamageRule::Dropped),
            ("revocations", DamageRule::LikenessWithheld),
        ]
    );
    assert_eq!(damage.total, 5);

    // Re-upserting the video with a good embedding serves it again.
    store.upsert_videos(&[video("va2", "a", 100)]).unwrap();
    assert!(!store.video(&vid("va2")).unwrap().unwrap().deleted);
    drop(store);

    // Records whose owner cannot be read: nobody knows whom they protect, so they hold
    // for everyone.
    write_raw(
        dir.path(),
        &[
            ("revocations", b"\xc3\x28\0vva1", b""),
            ("mutes", b"\xc3\x28\0a", b""),
        ],
    );
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(revoked(&store, "a", "b", "vb1"));
    for u in ["a", "b", "c", "d"] {
        assert!(
            store
                .load_viewer(&uid(u), at(0))
                .unwrap()
                .relations_unreadable,
            "{u}"
        );
    }
    let rules: Vec<DamageRule> = store.damage().records.iter().map(|r| r.rule).collect();
    assert!(rules.contains(&DamageRule::AllCameosWithheld));
    assert!(rules.contains(&DamageRule::AllViewersRestricted));
}

/// An unreadable video record is withheld (read as absent, out of the index and every
/// list) and can still be deleted or replaced; an unreadable counter only leaves its
/// video out of the popularity lists. Both are reported, and the store opens.
#[test]
fn an_unreadable_video_or_counter_is_withheld_and_can_be_replaced() {
    use steerfeed_store::DamageRule;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), opts()).unwrap();
        seeded(&store);
    }
    write_raw(
        dir.path(),
        &[
            ("videos", b"vb1", b"\x07garbage"),
            ("counters", b"va1", b"\x01"),
        ],
    );
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(store.video(&vid("vb1")).unwrap().is_none());
    assert!(store.video(&vid("va1")).unwrap().is_some());
    let mut indexed = Vec::new();
    store
        .for_each_embedding(|id, _, _| {
            indexed.push(id.to_string());
            Ok(())
        })
        .unwrap();
    assert_eq!(indexed, ["va1", "va2", "va3"]);
    let newest = store.newest(at(0), 10).unwrap();
    assert!(newest.iter().all(|v| v.id != vid("vb1")), "{newest:?}");

    let mut rules: Vec<(&str, DamageRule)> = store
        .damage()
        .records
        .iter()
        .map(|r| (r.tree, r.rule))
        .collect();
    rules.sort_by_key(|r| r.0);
    rules.dedup();
    assert_eq!(
        rules,
        [
            ("counters", DamageRule::Dropped),
            ("videos", DamageRule::VideoWithheld),
        ]
    );

    // Deleting the unreadable video removes it and moves the catalogue on; so does an
    // upsert of the same id, which serves it again.
    let before = store.catalog_version();
    store.delete_video(&vid("vb1")).unwrap();
    assert!(store.catalog_version() > before);
    assert!(matches!(
        store.delete_video(&vid("vb1")),
        Err(steerfeed_core::Error::NotFound { .. })
    ));
    store.upsert_videos(&[video("vb1", "b", 60)]).unwrap();
    let back = store.video(&vid("vb1")).unwrap().unwrap();
    assert!(!back.deleted && back.embedding.is_some());
}

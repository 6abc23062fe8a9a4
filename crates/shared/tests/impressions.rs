//! The impression log on the shared backend, through two stores of one deployment (two
//! replicas): a page's impressions are logged once, in a stream of their own, one subject
//! per viewer; every replica reads them all and no mirror holds them; a person's export
//! holds theirs; an erasure leaves nothing of theirs readable and purges their subject;
//! pages an older build logged in the page's own message are still read, first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use steerfeed_core::storage::{ServedPage, Storage};
use steerfeed_core::{
    HeadInputs, ImpressionItem, ImpressionPage, LoggedPage, OwnVideos, Record, ScoreBreakdown,
    Timestamp, User, UserId, VideoId,
};
use steerfeed_shared::servers::Servers;
use steerfeed_shared::{SharedOptions, SharedStore};
use steerfeed_store::StoreOptions;

fn store(servers: &Servers, ns: &str, retention_h: u64) -> SharedStore {
    SharedStore::open(SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &servers.redis_url,
        ns,
        StoreOptions {
            impression_retention_h: retention_h,
            ..StoreOptions::with_dim(8)
        },
    ))
    .unwrap()
}

fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_790_000_000 + s).unwrap()
}

/// A page of `n` items whose every number depends on `k`, so two pages never match.
fn page(request: &str, k: usize, n: usize) -> ImpressionPage {
    ImpressionPage {
        request: request.to_owned(),
        profile: "default".to_owned(),
        model: "hand-set".to_owned(),
        items: (0..n)
            .map(|i| ImpressionItem {
                video: VideoId::new(format!("v{k}-{i}")).unwrap(),
                position: i as u32,
                source: "popular".to_owned(),
                propensity: 1.0 / (k + i + 1) as f32,
                inputs: HeadInputs {
                    prior: std::array::from_fn(|h| (k * 10 + h) as f32 * 0.125),
                    creator: [0.25 * k as f32; 8],
                    interest: 0.5 * i as f32,
                    ..HeadInputs::default()
                },
                breakdown: ScoreBreakdown {
                    total: (k * 100 + i) as f32,
                    ..ScoreBreakdown::default()
                },
                draw: None,
            })
            .collect(),
        shadow: None,
    }
}

fn record(s: &SharedStore, user: &str, p: &ImpressionPage, when: Timestamp) {
    record_with(s, user, p, when, false);
}

/// [`record`], as a build before the impression stream did: the impressions in the
/// page's own message.
fn record_as_an_older_build(s: &SharedStore, user: &str, p: &ImpressionPage, when: Timestamp) {
    record_with(s, user, p, when, true);
}

fn record_with(s: &SharedStore, user: &str, p: &ImpressionPage, when: Timestamp, older: bool) {
    let videos: Vec<VideoId> = p.items.iter().map(|i| i.video.clone()).collect();
    let page = ServedPage {
        videos: &videos,
        impressions: Some(p),
        ..ServedPage::default()
    };
    if older {
        s.record_page_as_an_older_build(&uid(user), &page, when)
    } else {
        s.record_page(&uid(user), &page, when)
    }
    .unwrap();
}

fn logged(s: &dyn Storage) -> Vec<LoggedPage> {
    let mut out = Vec::new();
    s.for_each_impression(Timestamp::UNIX_EPOCH, &mut |p| {
        out.push(p);
        Ok(())
    })
    .unwrap();
    out
}

/// (viewer, time, page) of each logged page, in log order.
fn summary(pages: &[LoggedPage]) -> Vec<(String, Timestamp, ImpressionPage)> {
    pages
        .iter()
        .map(|p| (p.user.as_str().to_owned(), p.at, p.page.clone()))
        .collect()
}

/// Messages per subject of the deployment's impression stream.
fn subjects(servers: &Servers, ns: &str) -> std::collections::HashMap<String, usize> {
    with_stream(servers, ns, async |_, stream| {
        use futures_util::StreamExt;
        let info = stream
            .info_with_subjects(format!("steerfeed.{ns}.imp.*"))
            .await
            .unwrap();
        let mut info = std::pin::pin!(info);
        let mut out = std::collections::HashMap::new();
        while let Some(s) = info.next().await {
            let (subject, n) = s.unwrap();
            out.insert(subject, n);
        }
        out
    })
}

#[test]
fn impressions_are_logged_once_read_by_every_replica_exported_and_erased() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("im");
    let (a, b) = (store(servers, &ns, 720), store(servers, &ns, 720));
    for u in ["u1", "u2", "u3"] {
        a.upsert_user(&User::new(uid(u))).unwrap();
    }
    let pages = [page("r0", 0, 3), page("r1", 1, 20), page("r2", 2, 1)];
    record(&a, "u1", &pages[0], at(10));
    record(&a, "u2", &pages[1], at(20));
    a.flush().unwrap();
    record(&b, "u1", &pages[2], at(30));
    // A page without impressions, or with no items, logs nothing.
    b.record_page(
        &uid("u3"),
        &ServedPage {
            videos: &[VideoId::new("v9").unwrap()],
            ..ServedPage::default()
        },
        at(40),
    )
    .unwrap();
    record(&b, "u3", &page("empty", 3, 0), at(50));
    b.flush().unwrap();

    let expected = vec![
        ("u1".to_owned(), at(10), pages[0].clone()),
        ("u2".to_owned(), at(20), pages[1].clone()),
        ("u1".to_owned(), at(30), pages[2].clone()),
    ];
    for (name, s) in [("a", &a), ("b", &b)] {
        let got = logged(s);
        assert_eq!(summary(&got), expected, "replica {name}");
        assert!(got.windows(2).all(|w| w[0].seq < w[1].seq), "{got:?}");
        assert!(
            logged(s.mirror()).is_empty(),
            "replica {name}'s mirror logs no impressions"
        );
    }
    // The pages' serving state still reaches every mirror (a catch-up applies the others'
    // pages its consumer holds, without waiting for them).
    common::catch_up_until_seen(&a, &uid("u3"), &[VideoId::new("v9").unwrap()]);
    let counts = subjects(servers, &ns);
    let mut per_subject: Vec<usize> = counts.values().copied().collect();
    per_subject.sort_unstable();
    assert_eq!(per_subject, [1, 2], "one subject per viewer: {counts:?}");

    // A person's export holds their pages, and only theirs.
    let exported = |s: &SharedStore, u: &str| -> Vec<(String, Timestamp, ImpressionPage)> {
        s.export_user(&uid(u), at(60))
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Record::Impression { user, at, page } => Some((user.as_str().to_owned(), at, page)),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        exported(&b, "u1"),
        [expected[0].clone(), expected[2].clone()]
    );
    assert_eq!(exported(&a, "u2"), [expected[1].clone()]);
    assert!(exported(&a, "u3").is_empty());

    // Erased on one replica: nothing of theirs reads on either, and their subject is gone.
    b.erase_user(&uid("u1"), OwnVideos::Keep).unwrap();
    for s in [&a, &b] {
        assert_eq!(summary(&logged(s)), [expected[1].clone()]);
    }
    assert_eq!(
        subjects(servers, &ns).values().copied().collect::<Vec<_>>(),
        [1],
        "only u2's subject is left"
    );
}

#[test]
fn pages_an_older_build_logged_in_the_page_message_are_read_first() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("io");
    let (a, b) = (store(servers, &ns, 720), store(servers, &ns, 720));
    a.upsert_user(&User::new(uid("u1"))).unwrap();
    let (old, new) = (page("old", 0, 2), page("new", 1, 2));
    record_as_an_older_build(&a, "u1", &old, at(10));
    record(&a, "u1", &new, at(20));
    a.flush().unwrap();
    let got = logged(&b);
    assert_eq!(
        summary(&got),
        [
            ("u1".to_owned(), at(10), old.clone()),
            ("u1".to_owned(), at(20), new.clone())
        ]
    );
    assert!(got[0].seq < got[1].seq);
    assert_eq!(
        logged(b.mirror()).len(),
        1,
        "the older page's, in the mirror"
    );
}

#[test]
fn the_retention_leaves_out_pages_served_too_long_before_the_newest_and_0_keeps_none() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("ir");
    let a = store(servers, &ns, 2);
    a.upsert_user(&User::new(uid("u1"))).unwrap();
    record(&a, "u1", &page("early", 0, 1), at(0));
    record(&a, "u1", &page("within", 1, 1), at(3_600));
    record(&a, "u1", &page("newest", 2, 1), at(2 * 3_600 + 1));
    let kept: Vec<String> = logged(&a).into_iter().map(|p| p.page.request).collect();
    assert_eq!(kept, ["within", "newest"]);
    let mut since = Vec::new();
    a.for_each_impression(at(2 * 3_600), &mut |p| {
        since.push(p.page.request);
        Ok(())
    })
    .unwrap();
    assert_eq!(
        since,
        ["newest"],
        "`since` is inclusive of later pages only"
    );

    // A deployment set to keep none logs none, and empties what was kept.
    drop(a);
    let z = store(servers, &ns, 0);
    assert!(logged(&z).is_empty());
    record(&z, "u1", &page("ignored", 3, 1), at(3 * 3_600));
    z.flush().unwrap();
    assert!(logged(&z).is_empty());
    assert!(subjects(servers, &ns).is_empty());
}

/// The deployment's impression stream, through a client of the test's own.
fn with_stream<T>(
    servers: &Servers,
    ns: &str,
    f: impl AsyncFnOnce(async_nats::jetstream::Context, async_nats::jetstream::stream::Stream) -> T,
) -> T {
    let name = format!("STEERFEED-IMPRESSIONS-{}", ns.to_ascii_uppercase());
    common::with_stream(servers, &name, f)
}

#[test]
fn a_read_starts_at_the_pages_the_stream_took_from_a_margin_before_its_cutoff() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("is");
    let a = store(servers, &ns, 720);
    a.upsert_user(&User::new(uid("u1"))).unwrap();
    // A day by default; none here, so that the stream's arrival times decide.
    a.set_impression_read_margin(std::time::Duration::ZERO);
    // Pages timed two days ahead (an app that sets the serving clock), taken by the
    // stream before and after `mark`.
    let ahead = Timestamp::now().as_second() + 2 * 86_400;
    let when = |i: i64| Timestamp::from_second(ahead + i).unwrap();
    for i in 0..5 {
        record(
            &a,
            "u1",
            &page(&format!("before{i}"), i as usize, 1),
            when(i),
        );
        a.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mark = Timestamp::now();
    std::thread::sleep(std::time::Duration::from_millis(300));
    for i in 0..3 {
        record(
            &a,
            "u1",
            &page(&format!("after{i}"), 10 + i as usize, 1),
            when(10 + i),
        );
        a.flush().unwrap();
    }
    let since = |t: Timestamp| {
        let mut got = Vec::new();
        a.for_each_impression(t, &mut |p| {
            got.push(p.page.request);
            Ok(())
        })
        .unwrap();
        got
    };
    // From `mark`: only what the stream took after it (every page is timed later), found
    // without reading the earlier ones.
    assert_eq!(since(mark), ["after0", "after1", "after2"]);
    assert_eq!(since(Timestamp::UNIX_EPOCH).len(), 8);
    // From later than now, without a margin: read from now, and nothing arrived since.
    let tomorrow = Timestamp::from_second(mark.as_second() + 86_400).unwrap();
    assert_eq!(since(tomorrow), Vec::<String>::new());
    // With the default margin, a read from `mark` or from tomorrow reads what the stream
    // took in the last day: every page, each timed after both.
    a.set_impression_read_margin(std::time::Duration::from_secs(86_400));
    assert_eq!(since(mark).len(), 8);
    assert_eq!(since(tomorrow).len(), 8);
    // The person's export reads their subject the same way.
    let theirs = a
        .export_user(&uid("u1"), Timestamp::now())
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r, Record::Impression { .. }))
        .count();
    assert_eq!(theirs, 8);
}

#[test]
fn opening_sets_the_retention_and_leaves_the_operators_other_stream_settings() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("ic");
    drop(store(servers, &ns, 720));
    with_stream(servers, &ns, async |js, mut stream| {
        let mut config = stream.info().await.unwrap().config.clone();
        assert_eq!(config.max_age.as_secs(), 720 * 3_600);
        config.description = Some("set by the operator".into());
        config.max_messages_per_subject = 10_000;
        js.update_stream(config).await.unwrap();
    });
    drop(store(servers, &ns, 48));
    with_stream(servers, &ns, async |_, mut stream| {
        let config = stream.info().await.unwrap().config.clone();
        assert_eq!(config.max_age.as_secs(), 48 * 3_600);
        assert_eq!(config.description.as_deref(), Some("set by the operator"));
        assert_eq!(config.max_messages_per_subject, 10_000);
    });
}

#[test]
fn an_older_builds_pages_in_the_mirror_keep_to_the_retention_too() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("iq");
    let a = store(servers, &ns, 1);
    a.upsert_user(&User::new(uid("u1"))).unwrap();
    let old = page("old", 0, 2);
    record_as_an_older_build(&a, "u1", &old, at(0));
    record(&a, "u1", &page("new", 1, 2), at(2 * 3_600));
    a.flush().unwrap();
    let kept: Vec<String> = logged(&a).into_iter().map(|p| p.page.request).collect();
    assert_eq!(kept, ["new"], "the older page is past the retention");
    let exported: Vec<String> = a
        .export_user(&uid("u1"), at(2 * 3_600))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Impression { page, .. } => Some(page.request),
            _ => None,
        })
        .collect();
    assert_eq!(exported, ["new"]);
}

#[test]
fn a_page_whose_impressions_cannot_be_logged_is_recorded_all_the_same() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("ix");
    let a = store(servers, &ns, 720);
    a.upsert_user(&User::new(uid("u1"))).unwrap();
    // The impression stream deleted under the running store (an operator's mistake).
    with_stream(servers, &ns, async |js, stream| {
        js.delete_stream(&stream.cached_info().config.name)
            .await
            .unwrap();
    });
    let p = page("lost", 0, 2);
    record(&a, "u1", &p, at(10));
    a.flush().unwrap();
    let seen: Vec<VideoId> = a
        .seen(&uid("u1"))
        .unwrap()
        .into_iter()
        .map(|s| s.0)
        .collect();
    let mut served: Vec<VideoId> = p.items.iter().map(|i| i.video.clone()).collect();
    served.reverse();
    assert_eq!(seen, served, "the page's serving state is recorded");
}

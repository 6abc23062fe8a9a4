//! Three `steerfeed serve` processes sharing one deployment (throwaway PostgreSQL, NATS
//! JetStream and Redis servers, one namespace per test), driven over real HTTP: a revocation
//! or a deletion acknowledged by one replica is in force for the next feed on every
//! other, even from a page pool, and a session's page 2 on any replica comes from the
//! pool its page 1 left on another; a replica killed with SIGKILL comes back ready only
//! once it has caught up with what the others acknowledged meanwhile; three replicas
//! racing a teen's daily item cap serve exactly the cap between them; a replica the logs
//! were trimmed past exits for its supervisor and comes back from the newest mirror
//! snapshot.
//!
//! Built only with the `shared` feature (`make test` turns it on).

#![cfg(feature = "shared")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use steerfeed_shared::servers::Servers;
use support::{free_port, http_as};

mod support;

const KEY: &str = "cluster-test-key-0123456789";
const CREATORS: usize = 6;
/// Captions of different topics: a page holds at most a few videos of one topic.
const CAPTIONS: [&str; 10] = [
    "a cat plays the piano",
    "mountain biking down a rocky ridge",
    "a chef makes ramen from scratch",
    "a city skyline timelapse at night",
    "a robot dances hip hop",
    "knitting a winter scarf",
    "football trick shots in the park",
    "a violin solo at sunset",
    "painting a giant mural",
    "a dog learns to surf",
];

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    http_as(port, KEY, method, path, body)
}

fn ok(port: u16, method: &str, path: &str, body: Option<&Value>) {
    let (status, body) = http(port, method, path, body);
    assert!(
        (200..300).contains(&status),
        "{method} {path} on {port}: {status} {body}"
    );
}

/// A page: its videos and the cursor of the next.
fn page(port: u16, user: &str, limit: u32, cursor: Option<&str>) -> (Vec<String>, Option<String>) {
    page_in(port, user, &format!("s-{user}"), limit, cursor)
}

/// A page of a given session.
fn page_in(
    port: u16,
    user: &str,
    session: &str,
    limit: u32,
    cursor: Option<&str>,
) -> (Vec<String>, Option<String>) {
    let mut req = json!({"user": user, "limit": limit, "session": session});
    if let Some(c) = cursor {
        req["cursor"] = json!(c);
    }
    let (status, body) = http(port, "POST", "/v1/feed", Some(&req));
    assert_eq!(status, 200, "feed on {port}: {body}");
    let items = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["video"].as_str().unwrap().to_owned())
        .collect();
    (items, body["next_cursor"].as_str().map(str::to_owned))
}

struct Replica {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
    namespace: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `steerfeed` binary set for the deployment `namespace` on the test's servers, with
/// its store (for the shared backend, its index) in `dir`.
fn of_deployment(namespace: &str, dir: &std::path::Path) -> Command {
    let servers = Servers::shared().expect("test servers");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steerfeed"));
    cmd.env("STEERFEED__STORE__PATH", dir)
        .env("STEERFEED__SHARED__POSTGRES_URL", &servers.postgres_url)
        .env("STEERFEED__SHARED__NATS_URL", &servers.nats_url)
        .env("STEERFEED__SHARED__REDIS_URL", &servers.redis_url)
        .env("STEERFEED__SHARED__NAMESPACE", namespace)
        .env("RUST_LOG", "warn");
    cmd
}

/// Starts a replica of `namespace` with its index in `dir`, and waits until `/readyz`.
fn replica(namespace: &str, dir: &std::path::Path) -> Replica {
    replica_with(namespace, dir, &[], Stdio::inherit())
}

/// [`replica`] with `env` on top of the test's settings and `stderr` for its logs.
fn replica_with(
    namespace: &str,
    dir: &std::path::Path,
    env: &[(&str, &str)],
    stderr: Stdio,
) -> Replica {
    let port = free_port();
    let mut cmd = of_deployment(namespace, dir);
    cmd.arg("serve")
        .env("STEERFEED__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("STEERFEED__SERVER__API_KEYS", KEY)
        .stdout(Stdio::null())
        .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let mut r = Replica {
        child,
        port,
        dir: dir.to_path_buf(),
        namespace: namespace.to_owned(),
    };
    wait_ready(&mut r);
    r
}

/// [`replica_with`] with `RUST_LOG` at `filter` (unless `None`) and its logs in `log`.
fn replica_logging(
    namespace: &str,
    dir: &std::path::Path,
    env: &[(&str, &str)],
    filter: Option<&str>,
    log: &std::path::Path,
) -> Replica {
    let mut env = env.to_vec();
    if let Some(filter) = filter {
        env.push(("RUST_LOG", filter));
    }
    let file = std::fs::File::create(log).unwrap();
    replica_with(namespace, dir, &env, Stdio::from(file))
}

/// The line in which a replica logging to `log` says which mirror snapshot it opened.
fn opened_from_snapshot(log: &std::path::Path) -> String {
    wait_for_line(log, |l| l.contains("mirror opened from a snapshot"))
}

fn wait_ready(r: &mut Replica) {
    loop {
        if let Some(status) = r.child.try_wait().unwrap() {
            panic!("replica on {} exited early: {status}", r.port);
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", r.port)) {
            let _ = write!(
                s,
                "GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn three(dir: &std::path::Path) -> Vec<Replica> {
    let ns = Servers::namespace("cl");
    (0..3)
        .map(|i| replica(&ns, &dir.join(format!("replica{i}"))))
        .collect()
}

/// Creators `cr0..cr5` with `n` videos in all (`c{i}` by `cr{i % 6}`) featuring `pe`
/// (who consents to everyone), and viewers `f0..f{viewers}` following every creator;
/// all written through `port`.
fn world(port: u16, n: usize, viewers: usize) {
    let mut users = vec![json!({"id": "pe"})];
    users.extend((0..CREATORS).map(|i| json!({"id": format!("cr{i}")})));
    users.extend((0..viewers).map(|i| json!({"id": format!("f{i}")})));
    ok(port, "POST", "/v1/users", Some(&json!({"users": users})));
    ok(
        port,
        "PUT",
        "/v1/users/pe/consent",
        Some(&json!({"scope": "everyone"})),
    );
    let now = steerfeed::Timestamp::now().to_string();
    let videos: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("c{i}"), "creator": format!("cr{}", i % CREATORS), "created_at": now,
                "duration_s": 12.0, "cameos": ["pe"],
                "caption": format!("{} with pe, take {i}", CAPTIONS[i % CAPTIONS.len()])})
        })
        .collect();
    ok(port, "PUT", "/v1/videos", Some(&json!({"videos": videos})));
    for i in 0..viewers {
        for c in 0..CREATORS {
            ok(port, "PUT", &format!("/v1/users/f{i}/follows/cr{c}"), None);
        }
    }
}

#[test]
fn revocations_written_on_one_replica_are_in_force_on_the_others_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let rs = three(dir.path());
    let rounds = 60;
    world(rs[0].port, 120, rounds);
    let mut revoked = HashSet::new();
    let mut served_unrevoked = 0;
    let mut violations = Vec::new();
    for round in 0..rounds {
        let writer = round % 3;
        // Revoke two videos through the writer.
        for k in 0..2 {
            let v = format!("c{}", round * 2 + k);
            ok(
                rs[writer].port,
                "POST",
                "/v1/users/pe/consent/revocations",
                Some(&json!({"video": v})),
            );
            revoked.insert(v);
        }
        // The other two serve a new viewer at once.
        let user = format!("f{round}");
        let pages: Vec<Vec<String>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..3)
                .filter(|r| *r != writer)
                .map(|r| {
                    let port = rs[r].port;
                    let user = &user;
                    s.spawn(move || page(port, user, 40, None).0)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for items in pages {
            for v in items {
                if revoked.contains(&v) {
                    violations.push((round, v));
                } else if v.starts_with('c') {
                    served_unrevoked += 1;
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "revoked videos served: {violations:?}"
    );
    assert!(
        served_unrevoked > rounds,
        "the followed creator's other cameo videos are served: {served_unrevoked}"
    );
}

#[test]
fn a_deletion_on_one_replica_reaches_the_next_page_of_a_pool_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let rs = three(dir.path());
    world(rs[0].port, 60, 2);
    // Before the deletions, another viewer's page 2 comes from their pool.
    let (control_first, control_cursor) = page(rs[2].port, "f1", 5, None);
    let (control_second, _) = page(rs[2].port, "f1", 5, control_cursor.as_deref());
    assert!(
        !control_first.is_empty() && !control_second.is_empty(),
        "a second page exists when nothing is deleted"
    );
    let (first, cursor) = page(rs[2].port, "f0", 5, None);
    assert!(!first.is_empty());
    let cursor = cursor.expect("a next page");
    // Half the videos page 1 did not show go, through another replica.
    let shown: HashSet<&String> = first.iter().collect();
    let mut deleted = HashSet::new();
    for i in (0..60).step_by(2) {
        let v = format!("c{i}");
        if !shown.contains(&v) {
            ok(rs[1].port, "DELETE", &format!("/v1/videos/{v}"), None);
            deleted.insert(v);
        }
    }
    let (second, _) = page(rs[2].port, "f0", 5, Some(&cursor));
    assert!(!second.is_empty(), "the other half still fills page 2");
    let served: Vec<&String> = second.iter().filter(|v| deleted.contains(*v)).collect();
    assert!(served.is_empty(), "deleted videos on page 2: {served:?}");
}

/// The value of the first sample in a replica's `/metrics` that starts with `series`
/// and holds `label` (0 when none does).
fn metric(port: u16, series: &str, label: &str) -> u64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let text = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        support::dechunk(text.split_once("\r\n\r\n").unwrap().1)
    } else {
        text
    };
    text.lines()
        .find(|l| l.starts_with(series) && l.contains(label))
        .map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

/// Pages a replica served from a page pool: its `pool` stage count in `/metrics`.
fn pooled_pages(port: u16) -> u64 {
    metric(
        port,
        "steerfeed_stage_duration_seconds_count{",
        "stage=\"pool\"",
    )
}

/// Pools a replica's pages left that Redis kept.
fn kept_pools(port: u16) -> u64 {
    metric(port, "steerfeed_page_pools_total{", "outcome=\"kept\"")
}

#[test]
fn page_two_asked_at_once_of_the_same_replica_comes_from_the_pool_page_one_left() {
    let dir = tempfile::tempdir().unwrap();
    let rs = three(dir.path());
    world(rs[0].port, 60, 10);
    // Page 2 is asked the moment page 1 arrives. Each round is a new session of a
    // viewer who has seen nothing yet, so page 1 is ranked afresh.
    for round in 0..10 {
        let viewer = format!("f{round}");
        let on = rs[round % 3].port;
        let before = pooled_pages(on);
        let session = format!("r{round}");
        let (first, cursor) = page_in(on, &viewer, &session, 5, None);
        let (second, _) = page_in(on, &viewer, &session, 5, cursor.as_deref());
        assert_eq!((first.len(), second.len()), (5, 5), "round {round}");
        assert_eq!(
            pooled_pages(on),
            before + 1,
            "round {round}: page 2 from the pool"
        );
        assert!(second.iter().all(|v| !first.contains(v)), "round {round}");
    }
}

#[test]
fn page_two_on_a_third_replica_comes_from_the_pool_page_one_left_minus_a_deletion_on_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let rs = three(dir.path());
    world(rs[0].port, 60, 2);
    // Page 1 on one replica, deletions on another, page 2 on the third.
    for (viewer, first_on, delete_on, second_on, third) in [("f0", 0, 1, 2, 0), ("f1", 2, 0, 1, 1)]
    {
        let kept = kept_pools(rs[first_on].port);
        let (first, cursor) = page(rs[first_on].port, viewer, 5, None);
        assert_eq!(first.len(), 5, "{viewer}");
        // Page 1's pool reaches Redis, counted in `/metrics` once Redis answers the keep
        // (which page 1 did not wait for; an earlier page's keep may be counted
        // meanwhile, so at least one more). Page 2 below comes from it.
        let start = std::time::Instant::now();
        while kept_pools(rs[first_on].port) <= kept {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "{viewer}: page 1's pool never counted as kept"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let cursor = cursor.expect("a next page");
        // A third of the videos page 1 did not show go (each viewer's own third).
        let shown: HashSet<&String> = first.iter().collect();
        let mut deleted = HashSet::new();
        for i in (0..60).filter(|i| i % 3 == third) {
            let v = format!("c{i}");
            if !shown.contains(&v) {
                ok(
                    rs[delete_on].port,
                    "DELETE",
                    &format!("/v1/videos/{v}"),
                    None,
                );
                deleted.insert(v);
            }
        }
        let before = pooled_pages(rs[second_on].port);
        let (second, _) = page(rs[second_on].port, viewer, 5, Some(&cursor));
        assert_eq!(
            second.len(),
            5,
            "{viewer}: the rest of the pool fills page 2"
        );
        assert_eq!(
            pooled_pages(rs[second_on].port),
            before + 1,
            "{viewer}: page 2 came from the pool page 1 left on another replica"
        );
        let again: Vec<&String> = second.iter().filter(|v| shown.contains(v)).collect();
        assert!(
            again.is_empty(),
            "{viewer}: page 1's videos again: {again:?}"
        );
        let served: Vec<&String> = second.iter().filter(|v| deleted.contains(*v)).collect();
        assert!(
            served.is_empty(),
            "{viewer}: deleted videos on page 2: {served:?}"
        );
    }
}

#[test]
fn a_replica_killed_and_restarted_is_ready_only_once_it_has_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut rs = three(dir.path());
    world(rs[0].port, 40, 2);
    assert!(page(rs[1].port, "f0", 20, None).0.iter().any(|v| v == "c0"));
    Command::new("kill")
        .args(["-KILL", &rs[1].child.id().to_string()])
        .status()
        .unwrap();
    let _ = rs[1].child.wait();
    // While it is down: a revocation, a deletion and new videos through the others.
    ok(
        rs[0].port,
        "POST",
        "/v1/users/pe/consent/revocations",
        Some(&json!({"video": "c0"})),
    );
    ok(rs[2].port, "DELETE", "/v1/videos/c1", None);
    let now = steerfeed::Timestamp::now().to_string();
    ok(
        rs[2].port,
        "PUT",
        "/v1/videos",
        Some(
            &json!({"videos": [{"id": "late", "creator": "cr0", "created_at": now,
            "duration_s": 9.0, "caption": "cr0 bakes bread at dawn"}]}),
        ),
    );
    let (ns, dir1) = (rs[1].namespace.clone(), rs[1].dir.clone());
    rs[1] = replica(&ns, &dir1);
    // Ready means caught up: before any feed (which would catch up by itself), its
    // counts include what happened while it was down (c1 deleted, "late" uploaded).
    let (status, stats) = http(rs[1].port, "GET", "/v1/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        (&stats["videos"], &stats["indexed"]),
        (&json!(40), &json!(40)),
        "{stats}"
    );
    let (items, _) = page(rs[1].port, "f1", 40, None);
    assert!(
        !items.contains(&"c0".to_owned()),
        "revoked while down: {items:?}"
    );
    assert!(
        !items.contains(&"c1".to_owned()),
        "deleted while down: {items:?}"
    );
    assert!(
        items.contains(&"late".to_owned()),
        "uploaded while down: {items:?}"
    );
}

#[test]
fn a_replica_started_later_takes_the_newest_index_snapshot_and_replays_uploads_since() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let env = [
        (
            "STEERFEED__SHARED__SNAPSHOT_DIR",
            snapshots.to_str().unwrap(),
        ),
        ("STEERFEED__SHARED__SNAPSHOT_INTERVAL_S", "1"),
    ];
    let ns = Servers::namespace("sn");
    let a = replica_with(&ns, &dir.path().join("a"), &env, Stdio::inherit());
    let b = replica_with(&ns, &dir.path().join("b"), &env, Stdio::inherit());
    world(a.port, 40, 1);
    // The leader (one of the two) snapshots catalogue version 1, the world's videos.
    wait_for_snapshot(&snapshots, &ns, |(v, _)| v == 1);
    // No more snapshots: the upload below comes after the newest one.
    drop((a, b));
    let d = replica(&ns, &dir.path().join("d"));
    upload_late(d.port);
    let log = dir.path().join("c.log");
    let c = replica_logging(&ns, &dir.path().join("c"), &env, Some("info"), &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("index snapshot taken"), "{text}");
    assert!(text.contains("vector index loaded"), "{text}");
    assert!(!text.contains("building the vector index"), "{text}");
    // Its index holds the 40 videos of the snapshot and the upload made after it.
    let (status, stats) = http(c.port, "GET", "/v1/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["indexed"], 41, "{stats}");
    let newest = snapshot_stamps(&snapshots, &ns).into_iter().max().unwrap();
    assert_eq!(newest.0, 1, "no snapshot holds the upload");
    drop(d);
}

/// Uploads the video `late` by `cr0` through `port`.
fn upload_late(port: u16) {
    upload(port, "late");
}

/// Uploads video `id` by `cr0` through `port`.
fn upload(port: u16, id: &str) {
    let now = steerfeed::Timestamp::now().to_string();
    let video = json!({"id": id, "creator": "cr0", "created_at": now,
        "duration_s": 9.0, "caption": "a lighthouse in a storm"});
    ok(port, "PUT", "/v1/videos", Some(&json!({"videos": [video]})));
}

/// The number a log line gives field `name` (` name=123`).
fn log_field(line: &str, name: &str) -> usize {
    let at = line.find(&format!(" {name}=")).unwrap() + name.len() + 2;
    line[at..].split(' ').next().unwrap().parse().unwrap()
}

/// A time zone where it is about noon now (`Etc/GMT±N`, whose sign is inverted): a teen
/// there is far from bedtime whenever the test runs.
fn noon_zone() -> String {
    let hour = steerfeed::Timestamp::now().as_second().rem_euclid(86_400) / 3_600;
    let ahead = 12 - hour;
    if ahead >= 0 {
        format!("Etc/GMT-{ahead}")
    } else {
        format!("Etc/GMT+{}", -ahead)
    }
}

#[test]
fn three_replicas_racing_a_teens_daily_item_cap_serve_exactly_the_cap() {
    const CAP: usize = 45;
    let dir = tempfile::tempdir().unwrap();
    let ns = Servers::namespace("cap");
    let cap = CAP.to_string();
    let env = [("STEERFEED__RANK__WELLBEING__TEEN_DAILY_ITEMS", cap.as_str())];
    let rs: Vec<Replica> = (0..3)
        .map(|i| {
            replica_with(
                &ns,
                &dir.path().join(format!("r{i}")),
                &env,
                Stdio::inherit(),
            )
        })
        .collect();
    world(rs[0].port, 400, 0);
    let teen = json!({"users": [{"id": "t", "age_band": "teen", "time_zone": noon_zone()}]});
    ok(rs[0].port, "POST", "/v1/users", Some(&teen));
    // Every replica has applied the world before the race (an adult's page each).
    for r in &rs {
        page(r.port, "pe", 1, None);
    }
    for c in 0..CREATORS {
        ok(
            rs[1].port,
            "PUT",
            &format!("/v1/users/t/follows/cr{c}"),
            None,
        );
    }
    // Each replica's thread asks for pages of 10 in sessions of its own until it is told
    // the day's limit is reached; all three at once.
    let served: Vec<(Vec<String>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = rs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let port = r.port;
                scope.spawn(move || {
                    let mut items = Vec::new();
                    let mut pages = 0;
                    loop {
                        pages += 1;
                        assert!(
                            pages < 40,
                            "replica {i} was never told the limit is reached"
                        );
                        let req =
                            json!({"user": "t", "limit": 10, "session": format!("s{i}-{pages}")});
                        let (status, body) = http(port, "POST", "/v1/feed", Some(&req));
                        assert_eq!(status, 200, "{body}");
                        let page = body["items"].as_array().unwrap();
                        items.extend(page.iter().map(|v| v["video"].as_str().unwrap().to_owned()));
                        let limit = body["cards"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|c| c["kind"] == "limit_reached");
                        if limit {
                            assert!(page.is_empty(), "a limit card comes alone: {body}");
                            return (items, pages);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total: usize = served.iter().map(|(items, _)| items.len()).sum();
    let per_replica: Vec<usize> = served.iter().map(|(items, _)| items.len()).collect();
    assert_eq!(
        total, CAP,
        "items served by the three replicas together: {per_replica:?}"
    );
    // Every replica now stops the teen's feed, in a new session too.
    for r in &rs {
        let req = json!({"user": "t", "limit": 10, "session": "later"});
        let (status, body) = http(r.port, "POST", "/v1/feed", Some(&req));
        assert_eq!(status, 200);
        assert!(body["items"].as_array().unwrap().is_empty(), "{body}");
    }
}

/// The (catalogue version, graph changes) of the snapshots of namespace `ns` under
/// `root`.
fn snapshot_stamps(root: &std::path::Path, ns: &str) -> Vec<(u64, u64)> {
    steerfeed_shared::snapshots::Snapshots::open(root, ns)
        .and_then(|s| s.list())
        .unwrap()
        .into_iter()
        .map(|(s, _)| (s.version, s.changes))
        .collect()
}

/// Waits (up to a minute) until a snapshot of `ns` under `root` satisfies `wanted`;
/// answers it.
fn wait_for_snapshot(
    root: &std::path::Path,
    ns: &str,
    wanted: impl Fn((u64, u64)) -> bool,
) -> (u64, u64) {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = snapshot_stamps(root, ns).into_iter().find(|s| wanted(*s)) {
            return s;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no such snapshot under {}: {:?}",
            root.display(),
            snapshot_stamps(root, ns)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Waits (up to a minute) until `log` holds a line `wanted` accepts; answers it.
fn wait_for_line(log: &std::path::Path, wanted: impl Fn(&str) -> bool) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| wanted(l)) {
            return line.to_owned();
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no such line in {}:\n{text}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_serving_replica_swaps_in_the_leaders_newer_snapshot_and_keeps_later_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let ns = Servers::namespace("sw");
    let snap_dir = snapshots.to_str().unwrap();
    // Both fold their live segment at 10 videos, but the follower leaves that work to
    // the leader while it leads (its own threshold rises to 80): a folded graph in it
    // can only be the leader's, and its log shows no fold or rebuild of its own.
    let leader_env = [
        ("STEERFEED__SHARED__SNAPSHOT_DIR", snap_dir),
        ("STEERFEED__SHARED__SNAPSHOT_INTERVAL_S", "1"),
        ("STEERFEED__INDEX__BUILD__MAX_LIVE", "10"),
    ];
    let a = replica_with(&ns, &dir.path().join("a"), &leader_env, Stdio::inherit());
    // The first snapshot (of the empty catalogue) shows that `a` leads.
    wait_for_snapshot(&snapshots, &ns, |(v, _)| v == 0);
    let log = dir.path().join("b.log");
    let b = replica_with(
        &ns,
        &dir.path().join("b"),
        &[
            ("STEERFEED__SHARED__SNAPSHOT_DIR", snap_dir),
            ("STEERFEED__SHARED__SNAPSHOT_INTERVAL_S", "1"),
            ("STEERFEED__INDEX__BUILD__MAX_LIVE", "10"),
            ("RUST_LOG", "info"),
        ],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    world(a.port, 40, 1);
    // The leader's graph holds the 40 videos once rebuilt, and it publishes that (a
    // snapshot taken before the rebuild may come first, and be swapped in first).
    wait_for_snapshot(&snapshots, &ns, |(v, c)| v == 1 && c > 0);
    // A graph the follower would not have built (a snapshot taken before the leader's
    // rebuild may be swapped in first), holding what its live segment lacks.
    let field = log_field;
    let line = wait_for_line(&log, |l| {
        l.contains("index snapshot swapped in catalog_version=1") && field(l, "graph_nodes") > 0
    });
    assert_eq!(
        field(&line, "graph_nodes") + field(&line, "live_segment"),
        40,
        "{line}"
    );
    // The follower serves on the swapped index: an upload made through it afterwards is
    // in its index at once, and its feeds answer.
    upload_late(b.port);
    let (status, stats) = http(b.port, "GET", "/v1/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["indexed"], 41, "{stats}");
    let (items, _) = page(b.port, "f0", 10, None);
    assert!(!items.is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("not swapped in"), "{text}");
    for own in ["live segment folded", "index compacted"] {
        assert!(
            !text.contains(own),
            "the follower worked on its graph: {text}"
        );
    }
    drop(a);
}

#[test]
fn a_follower_taking_uploads_between_snapshots_still_swaps_them_in() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let ns = Servers::namespace("sv");
    let snap_dir = snapshots.to_str().unwrap();
    let env = [
        ("STEERFEED__SHARED__SNAPSHOT_DIR", snap_dir),
        ("STEERFEED__SHARED__SNAPSHOT_INTERVAL_S", "1"),
        ("STEERFEED__INDEX__BUILD__MAX_LIVE", "10"),
    ];
    let a = replica_with(&ns, &dir.path().join("a"), &env, Stdio::inherit());
    wait_for_snapshot(&snapshots, &ns, |(v, _)| v == 0);
    let log = dir.path().join("b.log");
    let b = replica_logging(&ns, &dir.path().join("b"), &env, Some("info"), &log);
    world(a.port, 20, 1);
    // Uploads through the follower, one after another: its index is nearly always ahead
    // of the leader's last snapshot, which it must still take rather than wait for a
    // moment without writes. Its uploads outrun the snapshots, so it folds them itself
    // and saves its index, which trims its catalogue log; the log must still reach back
    // to the snapshots to come. Wanted: a swap of a snapshot older than an index this
    // follower had saved before it.
    let swapped_below_a_save = |log: &str| {
        let mut saved = None;
        log.lines().any(|l| {
            if l.contains("vector index saved") {
                saved = saved.max(Some(log_field(l, "catalog_version")));
            }
            l.contains("index snapshot swapped in")
                && saved.is_some_and(|s| log_field(l, "catalog_version") < s)
        })
    };
    let mut uploaded = 0;
    while !swapped_below_a_save(&std::fs::read_to_string(&log).unwrap_or_default()) {
        assert!(
            uploaded < 1_000,
            "no snapshot older than an index the follower saved was swapped in:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        upload(b.port, &format!("up{uploaded}"));
        uploaded += 1;
    }
    // Swapped in and replayed, its index holds every video, and it serves.
    let (status, stats) = http(b.port, "GET", "/v1/stats", None);
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["indexed"], 20 + uploaded, "{stats}");
    assert!(!page(b.port, "f0", 10, None).0.is_empty());
    drop(a);
}

/// Where both logs of `ns` stand now: (change version, stream sequence).
fn heads(ns: &str, snapshots: &std::path::Path) -> (u64, u64) {
    open_store(ns, Some(snapshots)).unwrap().applied()
}

/// A process's store on the namespace, its mirror from `snapshots` when given.
fn open_store(
    ns: &str,
    snapshots: Option<&std::path::Path>,
) -> steerfeed::Result<steerfeed_shared::SharedStore> {
    let servers = Servers::shared().unwrap();
    steerfeed_shared::SharedStore::open(steerfeed_shared::SharedOptions {
        mirror_snapshots: snapshots.map(std::path::Path::to_path_buf),
        ..steerfeed_shared::SharedOptions::new(
            &servers.postgres_url,
            &servers.nats_url,
            &servers.redis_url,
            ns,
            steerfeed::store::StoreOptions::with_dim(384),
        )
    })
}

/// Views by `user` of `c0..c4` through `port`, keyed `tag-0..4`.
fn views(port: u16, user: &str, tag: &str) {
    let now = steerfeed::Timestamp::now();
    let events: Vec<Value> = (0..5)
        .map(|i| {
            json!({"key": format!("{tag}-{i}"), "user": user, "at": now,
                   "kind": "view", "video": format!("c{i}"), "watch_ms": 4000})
        })
        .collect();
    ok(port, "POST", "/v1/events", Some(&json!({"events": events})));
}

/// Every record of `users` as `port` exports them.
/// Asserts that two replicas export the same records of `users`. Affinities decay with
/// the time of the export: exported a few milliseconds apart, they agree to within a
/// part in ten thousand, every other field exactly.
fn same_exports(a: u16, b: u16, users: &[&str]) -> Vec<Value> {
    fn close(x: &Value, y: &Value) -> bool {
        match (x, y) {
            (Value::Number(p), Value::Number(q)) => match (p.as_f64(), q.as_f64()) {
                (Some(p), Some(q)) if p.fract() != 0.0 || q.fract() != 0.0 => {
                    (p - q).abs() <= 1e-4 * p.abs().max(q.abs())
                }
                _ => p == q,
            },
            (Value::Array(p), Value::Array(q)) => {
                p.len() == q.len() && p.iter().zip(q).all(|(p, q)| close(p, q))
            }
            (Value::Object(p), Value::Object(q)) => {
                p.len() == q.len() && p.iter().all(|(k, v)| q.get(k).is_some_and(|w| close(v, w)))
            }
            _ => x == y,
        }
    }
    let (ea, eb) = (exports(a, users), exports(b, users));
    assert!(
        close(&Value::Array(ea.clone()), &Value::Array(eb.clone())),
        "{ea:?}\n{eb:?}"
    );
    ea
}

fn exports(port: u16, users: &[&str]) -> Vec<Value> {
    users
        .iter()
        .map(|u| {
            let (status, body) = http(port, "GET", &format!("/v1/users/{u}/export"), None);
            assert_eq!(status, 200, "{u}: {body}");
            body
        })
        .collect()
}

#[test]
fn a_replica_started_later_opens_its_mirror_from_the_leaders_snapshot_and_replays_only_what_came_after()
 {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let env = [
        (
            "STEERFEED__SHARED__SNAPSHOT_DIR",
            snapshots.to_str().unwrap(),
        ),
        ("STEERFEED__SHARED__SNAPSHOT_INTERVAL_S", "1"),
        ("STEERFEED__SHARED__MIRROR_SNAPSHOT_INTERVAL_S", "1"),
        ("STEERFEED__SHARED__TRIM_LOGS", "both"),
    ];
    let ns = Servers::namespace("ms");
    let a = replica_with(&ns, &dir.path().join("a"), &env, Stdio::inherit());
    world(a.port, 20, 2);
    page(a.port, "f0", 5, None);
    views(a.port, "f0", "before");
    // The leader's snapshot of everything so far.
    let held = heads(&ns, &snapshots);
    let position = wait_for_mirror_snapshot(&snapshots, &ns, |p| (p.version, p.seq) == held);
    let start = std::time::Instant::now();
    // The leader then trims both logs up to it: a process without snapshots can no
    // longer start.
    let refused = loop {
        match open_store(&ns, None) {
            Err(e) => break e,
            Ok(_) => {
                assert!(
                    start.elapsed() < std::time::Duration::from_secs(60),
                    "the logs were not trimmed"
                );
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    };
    assert!(
        refused
            .to_string()
            .contains("start from a newer mirror snapshot"),
        "{refused}"
    );
    // Logged after it, through a replica that starts from it too but writes no
    // snapshot within the test (it looks once an hour): a follow, a page and views
    // (stream messages), an upload.
    drop(a);
    let env_d = [
        env[0],
        env[3],
        ("STEERFEED__SHARED__SNAPSHOT_INTERVAL_S", "3600"),
        ("STEERFEED__SHARED__MIRROR_SNAPSHOT_INTERVAL_S", "3600"),
    ];
    let d = replica_with(&ns, &dir.path().join("d"), &env_d, Stdio::inherit());
    ok(d.port, "PUT", "/v1/users/pe/follows/cr1", None);
    page(d.port, "f1", 5, None);
    upload(d.port, "after");
    views(d.port, "f1", "after");
    assert_ne!(heads(&ns, &snapshots), held);
    let log = dir.path().join("c.log");
    let c = replica_logging(&ns, &dir.path().join("c"), &env, Some("info"), &log);
    let line = opened_from_snapshot(&log);
    assert_eq!(
        log_field(&line, "version") as u64,
        position.version,
        "{line}"
    );
    assert_eq!(log_field(&line, "seq") as u64, position.seq, "{line}");
    let users = ["pe", "f0", "f1", "cr0", "cr1"];
    same_exports(c.port, d.port, &users);
    let stats_c = same_counts(&c, &d);
    assert_eq!(stats_c["indexed"], 21, "{stats_c}");
}

/// Asserts that `c` counts as many videos, people and events as `d` (some of each);
/// answers `c`'s stats.
fn same_counts(c: &Replica, d: &Replica) -> Value {
    let (_, stats_d) = http(d.port, "GET", "/v1/stats", None);
    let (status, stats_c) = http(c.port, "GET", "/v1/stats", None);
    assert_eq!(status, 200, "{stats_c}");
    for count in ["videos", "people", "events"] {
        assert!(stats_c[count].as_u64().unwrap() > 0, "{stats_c}");
        assert_eq!(stats_c[count], stats_d[count], "{stats_c} {stats_d}");
    }
    stats_c
}

/// Waits (up to a minute) until a mirror snapshot of `ns` under `root` satisfies
/// `wanted`; answers its position.
fn wait_for_mirror_snapshot(
    root: &std::path::Path,
    ns: &str,
    wanted: impl Fn(&steerfeed_shared::mirrors::Position) -> bool,
) -> steerfeed_shared::mirrors::Position {
    let mirrors = steerfeed_shared::mirrors::MirrorSnapshots::open(root, ns).unwrap();
    let start = std::time::Instant::now();
    loop {
        let listed = mirrors.list().unwrap();
        if let Some((p, _)) = listed.iter().find(|(p, _)| wanted(p)) {
            return *p;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "no such mirror snapshot: {listed:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Sends `signal` (`STOP`, `CONT`) to the replica's process.
fn signal(r: &Replica, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(r.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_replica_the_logs_were_trimmed_past_exits_75_and_comes_back_from_the_newest_mirror_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    let snapshot_dir = (
        "STEERFEED__SHARED__SNAPSHOT_DIR",
        snapshots.to_str().unwrap(),
    );
    let trim = ("STEERFEED__SHARED__TRIM_LOGS", "both");
    let leader_env = [
        snapshot_dir,
        trim,
        ("STEERFEED__SHARED__SNAPSHOT_INTERVAL_S", "1"),
        ("STEERFEED__SHARED__MIRROR_SNAPSHOT_INTERVAL_S", "1"),
    ];
    // Never leads and writes no snapshot in the test; it catches up every 10 s.
    let follower_env = [
        snapshot_dir,
        trim,
        ("STEERFEED__SHARED__SNAPSHOT_INTERVAL_S", "3600"),
        ("STEERFEED__SHARED__MIRROR_SNAPSHOT_INTERVAL_S", "3600"),
        ("RUST_LOG", "warn,steerfeed=info,steerfeed_shared=info"),
    ];
    let ns = Servers::namespace("cut");
    let a = replica_with(&ns, &dir.path().join("a"), &leader_env, Stdio::inherit());
    world(a.port, 20, 2);
    views(a.port, "f0", "before");
    // The follower starts from the leader's first mirror snapshot, not from logs the
    // leader may be trimming to that snapshot meanwhile.
    wait_for_mirror_snapshot(&snapshots, &ns, |_| true);
    let log = dir.path().join("c.log");
    let mut c = replica_logging(&ns, &dir.path().join("c"), &follower_env, None, &log);
    let (version, _) = heads(&ns, &snapshots);

    // Stopped, and its last report aged past what the trim waits for (five minutes).
    signal(&c, "STOP");
    let servers = Servers::shared().unwrap();
    let aged = servers
        .sql(&format!(
            "UPDATE sf_{ns}.replicas SET seen_at = now() - interval '1 hour'"
        ))
        .unwrap();
    // The leader's, the follower's and the one `heads` opened.
    assert_eq!(aged, 3, "a report per process");
    // The leader goes on taking writes, writing mirror snapshots and trimming the logs,
    // until the change log no longer holds the next change the stopped one needs.
    let start = std::time::Instant::now();
    for round in 0.. {
        upload(a.port, &format!("after-{round}"));
        views(a.port, "f1", &format!("after-{round}"));
        ok(
            a.port,
            "PUT",
            &format!("/v1/users/f1/follows/cr{}", round % CREATORS),
            None,
        );
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let kept = servers
            .sql(&format!(
                "SELECT 1 FROM sf_{ns}.changes WHERE version <= {}",
                version + 1
            ))
            .unwrap();
        if kept == 0 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(90),
            "the change log still holds {kept} versions up to {}",
            version + 1
        );
    }

    // Woken, it meets the gap and exits for its supervisor to start it again.
    signal(&c, "CONT");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = c.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the cut-off replica is still running:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(75), "{status}");
    wait_for_line(&log, |l| l.contains("can no longer follow the logs"));
    let gap = wait_for_line(&log, |l| l.contains("needs log entries that are gone"));
    assert!(gap.contains("lacks"), "names the gap: {gap}");

    // Started again, it opens from the newest mirror snapshot and holds what the leader
    // does.
    let newest = wait_for_mirror_snapshot(&snapshots, &ns, |p| p.version > version);
    let log = dir.path().join("c-again.log");
    let c = replica_logging(&ns, &dir.path().join("c"), &follower_env, None, &log);
    let line = opened_from_snapshot(&log);
    assert!(
        log_field(&line, "version") as u64 >= newest.version,
        "{line}"
    );
    let users = ["pe", "f0", "f1", "cr0", "cr1"];
    same_exports(c.port, a.port, &users);
    same_counts(&c, &a);
}

#[test]
fn after_an_erasure_the_leader_writes_a_mirror_snapshot_at_once_not_at_its_next_look() {
    let dir = tempfile::tempdir().unwrap();
    let snapshots = dir.path().join("snapshots");
    // The leader's first look, and its first scheduled mirror snapshot, are an hour
    // away: every mirror snapshot of this test is one it writes between its looks,
    // because there is none (its first) or none newer than the last erasure.
    let env = [
        (
            "STEERFEED__SHARED__SNAPSHOT_DIR",
            snapshots.to_str().unwrap(),
        ),
        ("STEERFEED__SHARED__SNAPSHOT_INTERVAL_S", "3600"),
        ("STEERFEED__SHARED__MIRROR_SNAPSHOT_INTERVAL_S", "3600"),
    ];
    let ns = Servers::namespace("er");
    let a = replica_with(&ns, &dir.path().join("a"), &env, Stdio::inherit());
    world(a.port, 20, 2);
    views(a.port, "f0", "before");
    let first = wait_for_mirror_snapshot(&snapshots, &ns, |_| true);
    ok(a.port, "DELETE", "/v1/users/f0?videos=keep", None);
    let after = wait_for_mirror_snapshot(&snapshots, &ns, |p| p.version > first.version);
    let mirrors = steerfeed_shared::mirrors::MirrorSnapshots::open(&snapshots, &ns).unwrap();
    let listed = mirrors.list().unwrap();
    assert!(
        listed.iter().all(|(p, _)| p.version > first.version),
        "the erasure removed the older one: {listed:?}"
    );
    // A replica starting now opens from it, and holds nothing of the person.
    let log = dir.path().join("c.log");
    let c = replica_logging(
        &ns,
        &dir.path().join("c"),
        &env,
        Some("warn,steerfeed_shared=info"),
        &log,
    );
    let line = opened_from_snapshot(&log);
    assert!(
        log_field(&line, "version") as u64 >= after.version,
        "{line}"
    );
    let users = ["f0", "f1", "pe"];
    let exported = same_exports(c.port, a.port, &users);
    assert_eq!(exported[0]["records"], json!([]), "{}", exported[0]);
}

/// Runs `steerfeed <args>` as a command of the deployment `namespace` (its own process,
/// on the test's servers) and returns what it printed.
fn tool(namespace: &str, dir: &std::path::Path, args: &[&str]) -> String {
    let out = of_deployment(namespace, dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "steerfeed {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// (request id, viewer, video) of every served item `logs export` finds.
fn exported_items(namespace: &str, dir: &std::path::Path) -> HashSet<(String, String, String)> {
    let file = dir.join("served.jsonl");
    tool(
        namespace,
        &dir.join("tool"),
        &[
            "logs",
            "export",
            "--since",
            "1d",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_owned();
            (s("request"), s("user"), s("video"))
        })
        .collect()
}

#[test]
fn logs_export_and_a_persons_export_read_every_replicas_pages_from_the_impression_stream() {
    let dir = tempfile::tempdir().unwrap();
    let r = three(dir.path());
    let ns = r[0].namespace.clone();
    world(r[0].port, 30, 3);
    // Pages served on every replica: (request id, viewer, videos).
    let mut served = Vec::new();
    for (i, user) in ["f0", "f1", "f2", "f0", "f1"].iter().enumerate() {
        let (status, body) = http(
            r[i % 3].port,
            "POST",
            "/v1/feed",
            Some(&json!({"user": user, "limit": 4})),
        );
        assert_eq!(status, 200, "{body}");
        let videos: Vec<String> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["video"].as_str().unwrap().to_owned())
            .collect();
        assert!(!videos.is_empty(), "{body}");
        served.push((
            body["request_id"].as_str().unwrap().to_owned(),
            (*user).to_owned(),
            videos,
        ));
    }
    let items = |skip: &str| -> HashSet<(String, String, String)> {
        served
            .iter()
            .filter(|(_, u, _)| u != skip)
            .flat_map(|(req, u, vs)| vs.iter().map(move |v| (req.clone(), u.clone(), v.clone())))
            .collect()
    };
    assert_eq!(exported_items(&ns, dir.path()), items(""));

    // A person's export, from a command of its own, holds their pages and no one else's.
    let records = tool(&ns, &dir.path().join("tool"), &["users", "export", "f0"]);
    let mut requests: Vec<String> = records
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["record"] == "impression")
        .map(|v| {
            assert_eq!(v["user"], "f0");
            v["page"]["request"].as_str().unwrap().to_owned()
        })
        .collect();
    requests.sort();
    let mut expected: Vec<String> = served
        .iter()
        .filter(|(_, u, _)| u == "f0")
        .map(|(req, ..)| req.clone())
        .collect();
    expected.sort();
    assert_eq!(requests, expected);

    // Erased through one replica: the export no longer holds any of their pages.
    ok(r[1].port, "DELETE", "/v1/users/f1?videos=keep", None);
    assert_eq!(exported_items(&ns, dir.path()), items("f1"));
}

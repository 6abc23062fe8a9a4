//! The real `steerfeed` binary over real HTTP: started on a free loopback port with a
//! temporary store and an API key, driven through the `/v1` API (users, consent, videos
//! embedded from their captions, follows, events, a preference in words, feeds, a
//! consent revocation), then stopped with SIGTERM: it must exit cleanly. SIGHUP reloads
//! the key file without a restart or a dropped request; keys have scopes; a person erased
//! over HTTP leaves every feed and their export empty, through a kill -9 and a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use support::{free_port, http_as};

mod support;

const KEY: &str = "binary-test-key-0123456789";

/// One HTTP/1.1 request with `Connection: close` and the test's key; answers the status
/// and the JSON body (`Null` when empty).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    http_as(port, KEY, method, path, body)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn feed(port: u16, user: &str) -> Vec<String> {
    let (status, body) = http(
        port,
        "POST",
        "/v1/feed",
        Some(&json!({"user": user, "limit": 20})),
    );
    assert_eq!(status, 200, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert!(!i["explanation"]["text"].as_str().unwrap().is_empty());
            i["video"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Starts `steerfeed serve` on the store in `dir` with `env` on top of the test's
/// settings and `stderr` as its standard error, and waits until it is ready (the engine
/// loaded).
fn start(dir: &std::path::Path, env: &[(&str, &str)], stderr: Stdio) -> (Server, u16) {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steerfeed"));
    cmd.arg("serve")
        .env("STEERFEED__STORE__PATH", dir)
        .env("STEERFEED__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("STEERFEED__SERVER__API_KEYS", KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(stderr);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut server = Server(cmd.spawn().unwrap());
    // Ready once the engine (model, store, index) is loaded.
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("the server exited early: {status}");
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            );
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if r.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (server, port)
}

#[test]
fn the_binary_serves_the_api_over_http_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = start(dir.path(), &[], Stdio::null());

    let users: Vec<Value> = ["ana", "pia", "fan1", "fan2"]
        .iter()
        .map(|u| json!({"id": u}))
        .collect();
    assert_eq!(
        http(port, "POST", "/v1/users", Some(&json!({"users": users}))).0,
        200
    );
    assert_eq!(
        http(
            port,
            "PUT",
            "/v1/users/pia/consent",
            Some(&json!({"scope": "everyone"}))
        )
        .0,
        204
    );
    // The server keeps the clock: events are dated now.
    let now = steerfeed::Timestamp::now().to_string();
    let videos = json!({"videos": [
        {"id": "cats1", "creator": "ana", "created_at": now, "duration_s": 12.0,
         "caption": "a tabby kitten chases a laser pointer around the kitchen", "cameos": ["pia"]},
        {"id": "cats2", "creator": "ana", "created_at": now, "duration_s": 20.0,
         "caption": "two cats nap in a sunny window"},
        {"id": "soup", "creator": "ana", "created_at": now, "duration_s": 30.0,
         "caption": "easy tomato soup recipe for a rainy day"},
    ]});
    assert_eq!(http(port, "PUT", "/v1/videos", Some(&videos)).0, 200);
    for fan in ["fan1", "fan2"] {
        assert_eq!(
            http(port, "PUT", &format!("/v1/users/{fan}/follows/ana"), None).0,
            204
        );
    }
    let events = json!({"events": [
        {"key": "e1", "user": "fan1", "at": now, "kind": "view", "video": "soup",
         "watch_ms": 30000, "completed": true},
        {"key": "e2", "user": "fan2", "at": now, "kind": "like", "video": "cats2"},
    ]});
    let (status, body) = http(port, "POST", "/v1/events", Some(&events));
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(2)));
    let (status, again) = http(port, "POST", "/v1/events", Some(&events));
    assert_eq!(
        (status, again["accepted"].as_u64()),
        (200, Some(0)),
        "a retry counts once"
    );

    let (status, constraints) = http(
        port,
        "PUT",
        "/v1/users/fan1/preferences",
        Some(&json!({"text": "more cats please"})),
    );
    assert_eq!(status, 200, "{constraints}");
    assert_eq!(constraints["boost"][0]["topic"], "pets");

    let page = feed(port, "fan1");
    assert!(page.contains(&"cats1".to_owned()), "{page:?}");

    assert_eq!(
        http(
            port,
            "POST",
            "/v1/users/pia/consent/revocations",
            Some(&json!({"video": "cats1"}))
        )
        .0,
        204
    );
    let page = feed(port, "fan2");
    assert!(!page.is_empty());
    assert!(
        !page.contains(&"cats1".to_owned()),
        "revoked video served: {page:?}"
    );

    // Graceful shutdown on SIGTERM: in-flight work finishes, the index is saved, the
    // store flushed, and the process exits with success.
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = server.0.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    // The index file reflects every catalog write: the next open loads it and has
    // nothing to replay.
    let mut config = steerfeed::Config::default();
    config.store.path = dir.path().to_path_buf();
    let engine = steerfeed::Engine::open(config).unwrap();
    let open = engine.index_open();
    assert!(
        !open.rebuilt && open.replayed == 0 && open.loaded > 0,
        "the index was not checkpointed: {open:?}"
    );
}

fn put_users(port: u16, ids: &[&str]) {
    let users: Vec<Value> = ids.iter().map(|u| json!({"id": u})).collect();
    let (status, body) = http(port, "POST", "/v1/users", Some(&json!({"users": users})));
    assert_eq!(status, 200, "{body}");
}

fn axis_with(first: f32) -> Vec<f32> {
    let mut e = vec![0.0f32; 384];
    e[0] = first;
    e
}

#[test]
fn a_tiny_embedding_serves_and_survives_a_kill_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = start(dir.path(), &[], Stdio::null());
    put_users(port, &["tiny_maker", "tiny_fan"]);
    let now = steerfeed::Timestamp::now().to_string();
    let video = |id: &str, e: Vec<f32>| {
        json!({"videos": [{"id": id, "creator": "tiny_maker", "created_at": now,
            "duration_s": 10.0, "caption": "a very small vector", "embedding": e}]})
    };
    // The smallest normal value is a direction like any other; a vector of sub-normal
    // values only, a zero or a non-finite vector is 422.
    assert_eq!(
        http(
            port,
            "PUT",
            "/v1/videos",
            Some(&video("tiny", axis_with(f32::MIN_POSITIVE)))
        )
        .0,
        200
    );
    let (status, body) = http(
        port,
        "PUT",
        "/v1/videos",
        Some(&video("subnormal", axis_with(1e-39))),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_input")),
        "{body}"
    );
    let (status, body) = http(
        port,
        "PUT",
        "/v1/videos",
        Some(&video("zero", axis_with(0.0))),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_input")),
        "{body}"
    );
    // 1e39 does not fit an f32: it reads as infinity.
    let huge = r#"{"videos": [{"id": "huge", "creator": "tiny_maker", "created_at": "2026-01-01T00:00:00Z", "duration_s": 10.0, "embedding": [1e39]}]}"#;
    let (status, _) = raw(port, "PUT", "/v1/videos", huge);
    assert_eq!(status, 422);
    assert_eq!(
        http(port, "PUT", "/v1/users/tiny_fan/follows/tiny_maker", None).0,
        204
    );
    assert!(feed(port, "tiny_fan").contains(&"tiny".to_owned()));

    // Killed without a chance to save anything, it opens again and serves.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let (_server, port) = start(dir.path(), &[], Stdio::null());
    feed(port, "tiny_fan");
    let (status, _) = http(
        port,
        "POST",
        "/v1/feed",
        Some(&json!({"user": "tiny_maker"})),
    );
    assert_eq!(status, 200);
}

/// One request with a raw body.
fn raw(port: u16, method: &str, path: &str, body: &str) -> (u16, Value) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if !v.is_null() {
        return http(port, method, path, Some(&v));
    }
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    (status, Value::Null)
}

#[test]
fn over_http_the_server_keeps_the_clock_and_personalization_off_means_no_steering() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start(dir.path(), &[], Stdio::null());
    put_users(port, &["clock_teen", "clock_maker"]);
    let (status, body) = http(
        port,
        "POST",
        "/v1/feed",
        Some(&json!({"user": "clock_teen", "now": "2026-06-01T03:00:00Z"})),
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("now")),
        "{body}"
    );
    let (status, body) = http(
        port,
        "PUT",
        "/v1/users/clock_teen/preferences",
        Some(&json!({"text": "more cooking", "now": "9999-12-30T21:59:59Z"})),
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("now")),
        "{body}"
    );
    let (status, _) = http(port, "GET", "/v1/users/clock_teen/preferences", None);
    assert_eq!(status, 404, "nothing was stored");

    let now = steerfeed::Timestamp::now();
    let caption = [
        "easy pasta dinner recipe",
        "slow cooked beef stew",
        "street food tacos",
    ];
    let videos: Vec<Value> = caption
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"id": format!("clock_v{i}"), "creator": "clock_maker",
            "created_at": now.to_string(), "duration_s": 20.0, "caption": c})
        })
        .collect();
    assert_eq!(
        http(port, "PUT", "/v1/videos", Some(&json!({"videos": videos}))).0,
        200
    );
    let event = |key: &str, at: String| json!({"events": [{"key": key, "user": "clock_teen", "at": at, "kind": "like", "video": "clock_v0"}]});
    let far = "9999-12-30T21:59:59Z".to_owned();
    let (status, body) = http(port, "POST", "/v1/events", Some(&event("far", far)));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "events[0].at");
    let old = steerfeed::Timestamp::from_second(now.as_second() - 30 * 86_400)
        .unwrap()
        .to_string();
    assert_eq!(
        http(port, "POST", "/v1/events", Some(&event("old", old))).0,
        422
    );
    let (status, body) = http(
        port,
        "POST",
        "/v1/events",
        Some(&event("fine", now.to_string())),
    );
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (200, Some(1)),
        "{body}"
    );

    // Personalization off: the preference is kept but nothing steers the page.
    let (status, _) = http(
        port,
        "PUT",
        "/v1/users/clock_teen/preferences",
        Some(&json!({"text": "way more cooking please"})),
    );
    assert_eq!(status, 200);
    let (status, _) = http(
        port,
        "PUT",
        "/v1/users/clock_teen/parental",
        Some(&json!({"personalization": false})),
    );
    assert_eq!(status, 204);
    assert_eq!(
        http(
            port,
            "PUT",
            "/v1/users/clock_teen/follows/clock_maker",
            None
        )
        .0,
        204
    );
    let (status, page) = http(
        port,
        "POST",
        "/v1/feed",
        Some(&json!({"user": "clock_teen"})),
    );
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{page}");
    for item in items {
        assert_eq!(item["breakdown"]["steering"].as_f64(), Some(0.0), "{item}");
        let text = item["explanation"]["text"].as_str().unwrap();
        assert!(!text.contains("asked"), "{text}");
    }
    assert!(
        page["applied"]["boost"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{page}"
    );
}

#[test]
fn logs_carry_no_colour_codes_into_a_pipe_and_json_logs_are_one_object_a_line() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let file = std::fs::File::create(&log).unwrap();
        let store = dir.path().join("store");
        let (mut server, port) = start(
            &store,
            &[("STEERFEED__LOG__FORMAT", format), ("RUST_LOG", "info")],
            Stdio::from(file),
        );
        assert_eq!(http(port, "GET", "/healthz", None).0, 200);
        let pid = server.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        server.0.wait().unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.lines().count() >= 2, "{format}: {text}");
        assert!(
            !text.contains('\u{1b}'),
            "{format}: colour codes in a file: {text}"
        );
        if format == "json" {
            for line in text.lines() {
                let v: Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(
                    v["level"].is_string() && v["timestamp"].is_string(),
                    "{line}"
                );
            }
        }
    }
}

/// Waits until the file at `path` holds `needle` (the server logged an event), up to a
/// cap far above the time it takes; answers the file's text.
fn wait_for_log(path: &std::path::Path, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Sends SIGHUP to the server (it reads its key file again).
fn hup(server: &Server) {
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn sighup_reloads_the_key_file_and_a_broken_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let (first, second) = ("first-key-0123456789", "second-key-0123456789");
    std::fs::write(&keys, format!("feed {first} first-app\n")).unwrap();
    let log = dir.path().join("stderr.log");
    let (mut server, port) = start(
        &dir.path().join("store"),
        &[
            ("STEERFEED__SERVER__API_KEYS_FILE", keys.to_str().unwrap()),
            ("RUST_LOG", "info"),
        ],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    // The test's key (server.api_keys) is admin; the file's first key reads only.
    put_users(port, &["hup_u"]);
    let profile = "/v1/users/hup_u/profile";
    let users = json!({"users": [{"id": "hup_v"}]});
    assert_eq!(http_as(port, first, "GET", profile, None).0, 200);
    assert_eq!(
        http_as(port, first, "POST", "/v1/users", Some(&users)).0,
        403
    );
    assert_eq!(http_as(port, second, "GET", profile, None).0, 401);

    // Rotated: the second key in, with more scope; the first out.
    std::fs::write(&keys, format!("write {second}\n")).unwrap();
    hup(&server);
    wait_for_log(&log, "API keys reloaded");
    assert_eq!(
        http_as(port, second, "POST", "/v1/users", Some(&users)).0,
        200
    );
    assert_eq!(http_as(port, first, "GET", profile, None).0, 401);

    // A broken file is refused and the keys in force stay.
    std::fs::write(&keys, format!("admin {first}\nwrite\n")).unwrap();
    hup(&server);
    let text = wait_for_log(&log, "API keys not reloaded");
    assert!(text.contains("line 2"), "{text}");
    assert_eq!(http_as(port, second, "GET", profile, None).0, 200);
    assert_eq!(http_as(port, first, "GET", profile, None).0, 401);

    // The process lived through both, and the log never shows a key.
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "SIGHUP ended the server"
    );
    let pid = server.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.0.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    for key in [first, second, KEY] {
        assert!(!text.contains(key), "a key in the log:\n{text}");
    }
}

#[test]
fn a_key_file_that_does_not_parse_stops_the_server_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "# keys\nreader some-key-0123456789\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_steerfeed"))
        .arg("serve")
        .env("STEERFEED__STORE__PATH", dir.path().join("store"))
        .env(
            "STEERFEED__SERVER__BIND",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("STEERFEED__SERVER__API_KEYS_FILE", &keys)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && !err.contains("some-key"), "{err}");
}

/// Reads until the server closes the connection (EOF or a reset); panics if it is
/// still open after `cap`, a bound far above the timeouts under test.
fn closed_by_server(s: &mut TcpStream, cap: std::time::Duration) -> Vec<u8> {
    s.set_read_timeout(Some(cap)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("the server kept the connection open ({e}); read so far: {got:?}"),
        }
    }
}

#[test]
fn slow_and_idle_clients_are_cut_off_and_connections_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start(
        dir.path(),
        &[
            ("STEERFEED__SERVER__HEADER_READ_TIMEOUT_MS", "800"),
            ("STEERFEED__SERVER__IDLE_TIMEOUT_S", "2"),
            // An idle connection may not be closed while a request may still run.
            ("STEERFEED__SERVER__REQUEST_TIMEOUT_MS", "1500"),
            ("STEERFEED__SERVER__MAX_CONNECTIONS", "2"),
        ],
        Stdio::null(),
    );
    let cap = std::time::Duration::from_secs(60);

    // A request head trickled a byte at a time never completes: the server hangs up
    // long before the 300 bytes are sent, although each byte keeps the line busy.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ")
        .unwrap();
    let mut sent = 0;
    let cut = loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if slow.write_all(b"a").is_err() || sent == 300 {
            break sent;
        }
        sent += 1;
        slow.set_nonblocking(true).unwrap();
        let mut b = [0u8; 64];
        let gone = matches!(slow.read(&mut b), Ok(0));
        slow.set_nonblocking(false).unwrap();
        if gone {
            break sent;
        }
    };
    assert!(cut < 300, "the trickled head was never cut off");
    drop(slow);

    // A connection that sends nothing, and one idle after its request, are closed.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(closed_by_server(&mut silent, cap).is_empty());
    let mut kept = TcpStream::connect(("127.0.0.1", port)).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let answer = String::from_utf8(closed_by_server(&mut kept, cap)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Two connections at most: a third is answered only once one of them is closed.
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.set_nonblocking(true).unwrap();
    let mut peek = [0u8; 16];
    assert!(
        matches!(c.read(&mut peek), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a third connection was served while two were open"
    );
    c.set_nonblocking(false).unwrap();
    assert!(closed_by_server(&mut a, cap).is_empty());
    let answer = String::from_utf8(closed_by_server(&mut c, cap)).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(b);
}

#[test]
fn an_erased_cameo_leaves_every_feed_for_good_and_only_an_admin_key_may_erase() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let keys = dir.path().join("keys");
    let (feed_key, write_key, admin_key) = (
        "feed-key-0123456789abc",
        "write-key-0123456789abc",
        "admin-key-0123456789abc",
    );
    std::fs::write(
        &keys,
        format!("feed {feed_key} app\nwrite {write_key} ingest\nadmin {admin_key} ops\n"),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let env = [
        ("STEERFEED__SERVER__API_KEYS_FILE", keys.to_str().unwrap()),
        ("RUST_LOG", "info"),
    ];
    let (mut server, port) = start(
        &store,
        &env,
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let w = |method: &str, path: &str, body: Option<&Value>| {
        let (status, body) = http_as(port, write_key, method, path, body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {body}"
        );
    };
    let users: Vec<Value> = ["cr", "pe", "fo", "fo2"]
        .iter()
        .map(|u| json!({"id": u}))
        .collect();
    w("POST", "/v1/users", Some(&json!({"users": users})));
    w(
        "PUT",
        "/v1/users/pe/consent",
        Some(&json!({"scope": "everyone"})),
    );
    let now = steerfeed::Timestamp::now().to_string();
    let video = |id: &str, creator: &str, cameos: &[&str], caption: &str| {
        json!({"id": id, "creator": creator, "created_at": now, "duration_s": 12.0,
            "caption": caption, "cameos": cameos})
    };
    w(
        "PUT",
        "/v1/videos",
        Some(&json!({"videos": [
            video("cameo_v", "cr", &["pe"], "two friends cook pasta together"),
            video("plain_v", "cr", &[], "a cat plays the piano"),
            video("own_v", "pe", &[], "a sunset over the sea"),
        ]})),
    );
    for f in ["fo", "fo2"] {
        w("PUT", &format!("/v1/users/{f}/follows/cr"), None);
    }
    w(
        "POST",
        "/v1/events",
        Some(
            &json!({"events": [{"key": "pe-like", "user": "pe", "at": now,
            "kind": "like", "video": "plain_v"}]}),
        ),
    );
    assert!(feed(port, "fo").contains(&"cameo_v".to_owned()));

    // Scopes: a feed key cannot write or erase, a write key cannot erase or export.
    let forbidden = |key: &str, method: &str, path: &str, body: Option<&Value>| {
        let (status, body) = http_as(port, key, method, path, body);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {body}"
        );
    };
    let event = json!({"events": [{"key": "f1", "user": "fo", "at": now,
        "kind": "like", "video": "plain_v"}]});
    forbidden(feed_key, "POST", "/v1/events", Some(&event));
    forbidden(feed_key, "DELETE", "/v1/users/pe?videos=keep", None);
    forbidden(write_key, "DELETE", "/v1/users/pe?videos=keep", None);
    forbidden(write_key, "GET", "/v1/users/pe/export", None);
    assert_eq!(
        http_as(port, feed_key, "GET", "/v1/users/fo/profile", None).0,
        200
    );

    // The export before: their account, their event, the video they appear in.
    let (status, before) = http_as(port, admin_key, "GET", "/v1/users/pe/export", None);
    assert_eq!(status, 200, "{before}");
    let records = before["records"].as_array().unwrap();
    let has = |kind: &str, f: &dyn Fn(&Value) -> bool| {
        records.iter().any(|r| r["record"] == kind && f(r))
    };
    assert!(has("user", &|r| r["user"]["id"] == "pe"));
    assert!(has("event", &|r| r["event"]["key"] == "pe-like"));
    assert!(has("cameo", &|r| r["video"] == "cameo_v"));
    assert!(has("video", &|r| r["video"]["id"] == "own_v"));
    assert!(has("consent", &|r| r["scope"] == "everyone"));

    let (status, report) = http_as(port, admin_key, "DELETE", "/v1/users/pe?videos=keep", None);
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["already_erased"], false);
    assert_eq!(report["events"], 1);
    assert_eq!(report["cameo_videos_deleted"], 1);
    assert_eq!(report["own_videos_deleted"], 0);
    // In force for the next request, on every feed.
    assert!(!feed(port, "fo2").contains(&"cameo_v".to_owned()));
    let (status, after) = http_as(port, admin_key, "GET", "/v1/users/pe/export", None);
    assert_eq!(
        (status, after["records"].as_array().unwrap().len()),
        (200, 0)
    );
    assert_eq!(http(port, "GET", "/v1/users/pe/profile", None).0, 404);

    // Killed without a chance to save anything, it opens with the person still gone.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let (_server, port) = start(&store, &env, Stdio::null());
    let (status, after) = http_as(port, admin_key, "GET", "/v1/users/pe/export", None);
    assert_eq!(
        (status, after["records"].as_array().unwrap().len()),
        (200, 0)
    );
    let (status, _) = http(
        port,
        "POST",
        "/v1/users",
        Some(&json!({"users": [{"id": "fo3"}]})),
    );
    assert_eq!(status, 200);
    assert_eq!(http(port, "PUT", "/v1/users/fo3/follows/cr", None).0, 204);
    let page = feed(port, "fo3");
    assert!(page.contains(&"plain_v".to_owned()), "{page:?}");
    assert!(!page.contains(&"cameo_v".to_owned()), "{page:?}");
    // Idempotent; an id never stored is 404; the request must say what to do with videos.
    let (status, again) = http_as(port, admin_key, "DELETE", "/v1/users/pe?videos=keep", None);
    assert_eq!((status, &again["already_erased"]), (200, &json!(true)));
    let (status, _) = http_as(
        port,
        admin_key,
        "DELETE",
        "/v1/users/nobody?videos=keep",
        None,
    );
    assert_eq!(status, 404);
    let (status, body) = http_as(port, admin_key, "DELETE", "/v1/users/fo3", None);
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("videos"))
    );
}

#[test]
fn a_reloaded_key_file_takes_effect_without_dropping_requests() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let (kept, added) = ("kept-key-0123456789abc", "added-key-0123456789abc");
    std::fs::write(&keys, format!("feed {kept}\n")).unwrap();
    let log = dir.path().join("stderr.log");
    let (server, port) = start(
        &dir.path().join("store"),
        &[
            ("STEERFEED__SERVER__API_KEYS_FILE", keys.to_str().unwrap()),
            ("RUST_LOG", "info"),
        ],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    put_users(port, &["steady"]);
    assert_eq!(
        http_as(port, added, "GET", "/v1/users/steady/profile", None).0,
        401
    );
    // A client keeps reading with the key that stays while the file is rotated.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                statuses.push(http_as(port, kept, "GET", "/v1/users/steady/profile", None).0);
            }
            statuses
        })
    };
    std::fs::write(&keys, format!("feed {kept}\nwrite {added}\n")).unwrap();
    hup(&server);
    wait_for_log(&log, "API keys reloaded");
    // The new key works at once, with its scope.
    assert_eq!(
        http_as(port, added, "GET", "/v1/users/steady/profile", None).0,
        200
    );
    let users = json!({"users": [{"id": "late"}]});
    assert_eq!(
        http_as(port, added, "POST", "/v1/users", Some(&users)).0,
        200
    );
    stop.store(true, std::sync::atomic::Ordering::Release);
    let statuses = client.join().unwrap();
    assert!(!statuses.is_empty());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[test]
fn the_users_commands_export_and_erase_on_a_stopped_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (mut server, port) = start(&store, &[], Stdio::null());
    put_users(port, &["cli_a", "cli_b"]);
    assert_eq!(
        http(port, "PUT", "/v1/users/cli_a/follows/cli_b", None).0,
        204
    );
    let pid = server.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.0.wait().unwrap().success());
    let users = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_steerfeed"))
            .arg("users")
            .args(args)
            .env("STEERFEED__STORE__PATH", &store)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // One JSON record a line, the export format.
    let lines: Vec<Value> = users(&["export", "cli_a"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.contains(&json!({"record": "follow", "user": "cli_a", "creator": "cli_b"})));
    assert!(lines.iter().any(|r| r["record"] == "user"));
    let report: Value =
        serde_json::from_str(&users(&["erase", "cli_a", "--videos", "keep"])).unwrap();
    assert_eq!(report["already_erased"], false);
    assert!(report["records"].as_u64().unwrap() >= 3, "{report}");
    assert!(users(&["export", "cli_a"]).trim().is_empty());
    // The erasure log sits beside the store's directory.
    assert!(dir.path().join("store.erasures.jsonl").exists());
}

/// Runs `steerfeed ARGS` on the store at `store` (`env` on top); answers its status,
/// standard output and standard error.
/// Runs the binary on `store`, reads the first line it prints, closes the pipe (as
/// `head -1` does) and waits: the line, the exit status and standard error.
fn first_line_then_close(
    store: &std::path::Path,
    args: &[&str],
) -> (String, std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steerfeed"))
        .args(args)
        .env("STEERFEED__STORE__PATH", store)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        first,
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn steerfeed(
    store: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steerfeed"));
    cmd.args(args)
        .env("STEERFEED__STORE__PATH", store)
        .env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A small world through the API: users, videos from captions, follows, consent, a
/// revocation and events.
fn populate(port: u16, events: usize) {
    put_users(port, &["ia", "ib", "ic"]);
    let videos: Vec<Value> = (0..12)
        .map(|i| {
            json!({"id": format!("iv{i}"), "creator": (["ia", "ib"][i % 2]),
                   "created_at": "2026-01-01T00:00:00Z", "duration_s": 20.0,
                   "caption": format!("a kitten plays with yarn, take {i}"),
                   "cameos": if i == 3 { json!(["ic"]) } else { json!([]) }})
        })
        .collect();
    assert_eq!(
        http(port, "PUT", "/v1/videos", Some(&json!({"videos": videos}))).0,
        200
    );
    assert_eq!(http(port, "PUT", "/v1/users/ic/follows/ia", None).0, 204);
    let consent = json!({"scope": "approved", "approved": ["ib"]});
    assert_eq!(
        http(port, "PUT", "/v1/users/ic/consent", Some(&consent)).0,
        204
    );
    assert_eq!(
        http(
            port,
            "POST",
            "/v1/users/ic/consent/revocations",
            Some(&json!({"video": "iv5"}))
        )
        .0,
        204
    );
    let now = steerfeed::Timestamp::now();
    for chunk in (0..events).collect::<Vec<_>>().chunks(2_000) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"key": format!("ik{i}"), "user": (["ia", "ib", "ic"][i % 3]), "at": now,
                       "kind": "view", "video": format!("iv{}", i % 12), "watch_ms": 3000})
            })
            .collect();
        assert_eq!(
            http(port, "POST", "/v1/events", Some(&json!({"events": batch}))).0,
            200
        );
    }
}

#[test]
fn import_and_export_round_trip_offline_and_through_the_sidecar_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let (server, port) = start(&source, &[], Stdio::null());
    populate(port, 3_000);
    let url = format!("http://127.0.0.1:{port}");
    let key = [("STEERFEED_API_KEY", KEY)];

    // Through the sidecar: JSON Lines, and CSV (one file per kind).
    let all = dir.path().join("all.jsonl");
    let (ok, _, err) = steerfeed(
        &source,
        &["export", "--url", &url, "--out", all.to_str().unwrap()],
        &key,
    );
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&all).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["record"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for k in ["user", "video", "follow", "consent", "revocation", "event"] {
        assert!(kinds.iter().any(|x| x == k), "no {k}");
    }
    assert_eq!(kinds.iter().filter(|k| *k == "event").count(), 3_000);
    let csv = dir.path().join("csv");
    let (ok, _, err) = steerfeed(
        &source,
        &[
            "export",
            "--url",
            &url,
            "--format",
            "csv",
            "--out",
            csv.to_str().unwrap(),
        ],
        &key,
    );
    assert!(ok, "{err}");
    assert!(
        std::fs::read_to_string(csv.join("consent.csv"))
            .unwrap()
            .contains("ic,approved,ib")
    );
    // A key of too narrow a scope is refused with the sidecar's own message.
    let (ok, _, err) = steerfeed(
        &source,
        &["export", "--url", &url],
        &[("STEERFEED_API_KEY", "wrong-key")],
    );
    assert!(!ok && err.contains("401"), "{err}");
    drop(server);

    // A reader that stops early (`steerfeed export | head -1`): the export, and a
    // person's export (about a thousand events each), end quietly and successfully, not
    // with a broken-pipe error or a panic.
    for args in [&["export"][..], &["users", "export", "ia"][..]] {
        let (first, status, err) = first_line_then_close(&source, args);
        assert!(first.starts_with('{'), "{args:?}: {first}");
        assert!(
            status.success() && err.trim().is_empty(),
            "{args:?}: {status:?}: {err}"
        );
    }

    // Offline into a new store, in a batch size that cuts the events in pieces; then the
    // same file again changes nothing.
    let copy = dir.path().join("copy");
    let (ok, out, err) = steerfeed(
        &copy,
        &["import", all.to_str().unwrap(), "--batch", "700"],
        &[],
    );
    assert!(ok, "{err}");
    let first: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(first["rejected"], 0, "{first}");
    assert_eq!(first["records"].as_u64().unwrap(), kinds.len() as u64);
    let (ok, out, _) = steerfeed(&copy, &["import", all.to_str().unwrap()], &[]);
    assert!(ok);
    let again: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["duplicate"], 3_000, "{again}");
    assert_eq!(again["unchanged"], 15, "{again}");
    let (ok, exported, _) = steerfeed(&copy, &["export"], &[]);
    assert!(ok);
    let without_embeddings = |t: &str| -> Vec<Value> {
        t.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert_eq!(without_embeddings(&exported), without_embeddings(&text));

    // CSV, kind by kind, into a third store: the same records again.
    let third = dir.path().join("third");
    for kind in [
        "users",
        "videos",
        "follows",
        "consent",
        "revocations",
        "events",
    ] {
        let file = csv.join(format!("{kind}.csv"));
        let (ok, out, err) = steerfeed(&third, &["import", file.to_str().unwrap()], &[]);
        assert!(ok, "{kind}: {err}");
        let tally: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(tally["rejected"], 0, "{kind}: {tally}");
    }
    let (_, exported, _) = steerfeed(&third, &["export"], &[]);
    assert_eq!(without_embeddings(&exported), without_embeddings(&text));
    // A header naming a column twice is refused before any row is read.
    let dup = dir.path().join("dup");
    std::fs::create_dir_all(&dup).unwrap();
    let file = dup.join("follows.csv");
    std::fs::write(&file, "user,creator,creator\nia,ib,ic\n").unwrap();
    let (ok, _, err) = steerfeed(&third, &["import", file.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("twice"), "{err}");

    // Bad lines: each reported with its number, kept in the rejected file, the rest in.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"record\":\"user\",\"user\":{\"id\":\"fresh\"}}\n\
         not json\n\
         \n\
         {\"record\":\"follow\",\"user\":\"fresh\",\"creator\":\"nobody\"}\n\
         {\"record\":\"user\",\"user\":{\"id\":\"x\",\"typo\":1}}\n\
         {\"record\":\"follow\",\"user\":\"fresh\",\"creator\":\"ia\"}\n",
    )
    .unwrap();
    let (ok, out, err) = steerfeed(&copy, &["import", bad.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let tally: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (tally["written"].as_u64(), tally["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    for line in ["line 2:", "line 4:", "line 5:"] {
        assert!(err.contains(line), "{line} in {err}");
    }
    assert!(err.contains("nobody"), "{err}");
    let rejected = std::fs::read_to_string(dir.path().join("bad.jsonl.rejected")).unwrap();
    assert_eq!(rejected.lines().count(), 3);
    assert!(rejected.contains("typo") && rejected.contains("not json"));

    // Resumable: an import killed midway goes on from its state file, and the store ends
    // as a whole import leaves it.
    let events: String = text
        .lines()
        .filter(|l| l.contains("\"record\":\"event\""))
        .collect::<Vec<_>>()
        .join("\n");
    let catalog: String = text
        .lines()
        .filter(|l| !l.contains("\"record\":\"event\""))
        .collect::<Vec<_>>()
        .join("\n");
    let (cat, evs) = (
        dir.path().join("catalog.jsonl"),
        dir.path().join("events.jsonl"),
    );
    std::fs::write(&cat, catalog + "\n").unwrap();
    std::fs::write(&evs, events + "\n").unwrap();
    let resumed = dir.path().join("resumed");
    assert!(steerfeed(&resumed, &["import", cat.to_str().unwrap()], &[]).0);
    let state = dir.path().join("events.jsonl.import-state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_steerfeed"))
        .args(["import", evs.to_str().unwrap(), "--batch", "10"])
        .env("STEERFEED__STORE__PATH", &resumed)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !state.exists()
        && child.try_wait().unwrap().is_none()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    // 300 batches, each synced: the kill lands long before the last one.
    assert!(
        killed && state.exists(),
        "the import ended before it was killed"
    );
    let (ok, out, err) = steerfeed(&resumed, &["import", evs.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let tally: Value = serde_json::from_str(&out).unwrap();
    assert!(tally["resumed_at_line"].as_u64().unwrap() > 1, "{tally}");
    assert!(!state.exists());
    assert_eq!(tally["records"], 3_000, "{tally}");
    let (_, exported, _) = steerfeed(&resumed, &["export"], &[]);
    assert_eq!(without_embeddings(&exported), without_embeddings(&text));
}

#[test]
fn a_backup_over_http_survives_a_kill_and_restores_into_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (mut server, port) = start(&store, &[], Stdio::null());
    populate(port, 20_000);
    let url = format!("http://127.0.0.1:{port}");
    let key = [("STEERFEED_API_KEY", KEY)];
    let first = dir.path().join("backups/first");
    let (ok, out, err) = steerfeed(
        &store,
        &["backup", first.to_str().unwrap(), "--url", &url],
        &key,
    );
    assert!(ok, "{err}");
    let manifest: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(manifest["events"], 20_000, "{manifest}");
    let exported = |url: &str| {
        let (ok, out, err) = steerfeed(&store, &["export", "--url", url], &key);
        assert!(ok, "{err}");
        out
    };
    let before = exported(&url);

    // Only admin keys may back up, and only into a new absolute directory.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, b"x").unwrap();
    let under_file = plain.join("x");
    for bad in [
        "relative/x".to_owned(),
        "/tmp/nul\u{0}here".to_owned(),
        format!("{}/inside/x", store.display()),
        under_file.display().to_string(),
    ] {
        let (status, body) = http(port, "POST", "/v1/backups", Some(&json!({ "dir": bad })));
        assert_eq!(status, 422, "{bad:?}: {body}");
    }
    let (status, _) = http(
        port,
        "POST",
        "/v1/backups",
        Some(&json!({"dir": first.to_str().unwrap()})),
    );
    assert_eq!(status, 422);

    // A second backup killed midway (the sidecar itself is killed): the store reopens
    // whole, the first backup is untouched, and the second is either complete or absent.
    let second = dir.path().join("backups/second");
    let body = json!({"dir": second.to_str().unwrap()}).to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /v1/backups HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let pid = server.0.id().to_string();
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    let _ = server.0.wait();
    drop(server);
    assert!(
        !second.exists() || second.join("manifest.json").exists(),
        "a partial backup under the backup's own name"
    );
    let (server, port) = start(&store, &[], Stdio::null());
    assert_eq!(exported(&format!("http://127.0.0.1:{port}")), before);
    assert!(!feed(port, "ia").is_empty());
    drop(server);

    // Restored into a new directory: the same records, and the first backup still whole.
    let restored = dir.path().join("restored");
    let (ok, out, err) = steerfeed(&restored, &["restore", first.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["index_loaded"], true, "{report}");
    let (_, a, _) = steerfeed(&store, &["export"], &[]);
    let (_, b, _) = steerfeed(&restored, &["export"], &[]);
    assert_eq!(a, b);
    // A restore never writes over a store.
    let (ok, _, err) = steerfeed(&restored, &["restore", first.to_str().unwrap()], &[]);
    assert!(!ok && err.contains("not empty"), "{err}");
}

/// The learning loop through the binary: pages served over HTTP are in the impression
/// log, `steerfeed logs export` joins them to the likes that followed, `steerfeed train`
/// writes a model from the export, and a running sidecar puts it in force, refuses a
/// damaged copy while it keeps serving, and rolls back to the hand-set heads.
#[cfg(feature = "learn")]
#[test]
fn served_pages_train_a_model_that_a_running_sidecar_swaps_refuses_damaged_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (mut server, port) = start(&store, &[], Stdio::null());
    let people: Vec<String> = (0..6).map(|i| format!("lp{i}")).collect();
    let ids: Vec<&str> = people.iter().map(String::as_str).collect();
    put_users(port, &ids);
    let topics = [
        "a kitten plays with yarn",
        "a chef folds dumplings",
        "a skater lands a trick",
        "rain on a city street",
    ];
    let videos: Vec<Value> = (0..40)
        .map(|i| {
            json!({"id": format!("lv{i}"), "creator": ids[i % 3], "created_at": steerfeed::Timestamp::now(),
                   "duration_s": 20.0, "caption": format!("{}, take {i}", topics[i % 4])})
        })
        .collect();
    assert_eq!(
        http(port, "PUT", "/v1/videos", Some(&json!({"videos": videos}))).0,
        200
    );
    for p in &ids[3..] {
        assert_eq!(
            http(port, "PUT", &format!("/v1/users/{p}/follows/lp0"), None).0,
            204
        );
    }
    // Pages, and a like for every third item served.
    let mut served = 0;
    let mut liked = std::collections::HashSet::new();
    for round in 0..3 {
        for p in &ids {
            let (status, body) = http(
                port,
                "POST",
                "/v1/feed",
                Some(&json!({"user": p, "limit": 5})),
            );
            assert_eq!(status, 200, "{body}");
            assert!(!body["request_id"].as_str().unwrap().is_empty());
            let mut likes = Vec::new();
            for (i, it) in body["items"].as_array().unwrap().iter().enumerate() {
                served += 1;
                let video = it["video"].as_str().unwrap().to_owned();
                if (served + i) % 3 == 0 {
                    likes.push(json!({"key": format!("ll-{round}-{p}-{video}"), "user": p,
                                      "at": steerfeed::Timestamp::now(), "kind": "like", "video": video}));
                    liked.insert((p.to_string(), video));
                }
            }
            if !likes.is_empty() {
                assert_eq!(
                    http(port, "POST", "/v1/events", Some(&json!({"events": likes}))).0,
                    200
                );
            }
        }
    }
    assert!(served >= 40 && !liked.is_empty(), "{served} served");
    // With a one-second outcome window, an event a moment later closes every window.
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let last = json!({"events": [{"key": "ll-last", "user": "lp0", "at": steerfeed::Timestamp::now(),
                                  "kind": "view", "video": "lv1", "watch_ms": 1000}]});
    assert_eq!(http(port, "POST", "/v1/events", Some(&last)).0, 200);
    let pid = server.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(server.0.wait().unwrap().success());

    let rows_file = dir.path().join("rows.jsonl");
    let rows_arg = rows_file.to_str().unwrap();
    let window = [("STEERFEED__LEARNING__OUTCOME_WINDOW_S", "1")];
    let (ok, _, err) = steerfeed(
        &store,
        &["logs", "export", "--since", "1h", "--out", rows_arg],
        &window,
    );
    assert!(ok, "{err}");
    let rows: Vec<Value> = std::fs::read_to_string(&rows_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), served, "one line per served item");
    for r in &rows {
        let key = (
            r["user"].as_str().unwrap().to_owned(),
            r["video"].as_str().unwrap().to_owned(),
        );
        assert_eq!(
            r["outcomes"]["like"].as_bool().unwrap(),
            liked.contains(&key),
            "{r}"
        );
        assert_eq!(r["propensity"], 1.0);
        assert_eq!(r["complete"], true, "{r}");
        assert_eq!(r["model"], "hand-set");
        assert_eq!(r["inputs"]["prior"].as_array().unwrap().len(), 8);
    }

    // The off-policy estimate needs slots that could explore: this sidecar never did.
    let (ok, _, err) = steerfeed(
        &store,
        &["eval", "offpolicy", "--input", rows_arg, "--explore", "0.5"],
        &[],
    );
    assert!(!ok && err.contains("could explore"), "{err}");
    // The same rows as a sidecar exploring at 0.25 among 4 items would log them: every
    // third one drawn, the others its greedy pick. At the logged rate every weight is 1,
    // so the estimate is the plain mean of the rows' likes.
    let explored: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = r.clone();
            let greedy = i % 3 != 0;
            r["propensity"] = json!(if greedy { 0.75 } else { 0.0625 });
            r["draw"] = json!({"greedy": greedy, "drawable": 4, "in_draw": !greedy});
            r
        })
        .collect();
    let explored_file = dir.path().join("explored.jsonl");
    let text: Vec<String> = explored.iter().map(Value::to_string).collect();
    std::fs::write(&explored_file, text.join("\n")).unwrap();
    let explored_arg = explored_file.to_str().unwrap();
    let offpolicy = |more: &[&str]| {
        let mut args = vec!["eval", "offpolicy", "--input", explored_arg];
        args.extend_from_slice(more);
        let (ok, out, err) = steerfeed(&store, &args, &[]);
        assert!(ok, "{err}");
        out
    };
    let json = |out: String| serde_json::from_str::<Value>(&out).unwrap();
    let est = json(offpolicy(&[
        "--explore",
        "0.25",
        "--reward",
        "like",
        "--json",
    ]));
    let mean = liked.len() as f64 / served as f64;
    for which in ["logged", "estimate"] {
        assert!(
            (est[which]["value"].as_f64().unwrap() - mean).abs() < 1e-9,
            "{est}"
        );
        assert_eq!(est[which]["units"], served);
    }
    let out = offpolicy(&["--explore", "1", "--reward", "like"]);
    assert!(out.contains("per explorable slot"), "{out}");
    // Page by page at the logged rate, too: every page weighs 1.
    let est = json(offpolicy(&[
        "--explore",
        "0.25",
        "--unit",
        "page",
        "--json",
    ]));
    assert_eq!(est["unit"], "page");
    assert_eq!(est["estimate"]["value"], est["logged"]["value"]);
    assert_eq!(est["estimate"]["max_weight"], 1.0);

    let model = dir.path().join("heads.model");
    let report = dir.path().join("report.json");
    let (ok, _, err) = steerfeed(
        &store,
        &[
            "train",
            "--input",
            rows_arg,
            "--out",
            model.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["rows"], served);
    assert_eq!(report["heads"].as_array().unwrap().len(), 8);
    // By default no second stage is fitted, and the file has none.
    let text = std::fs::read_to_string(&model).unwrap();
    assert_eq!(report["ranker_trees"], 0, "{report}");
    assert_eq!(report["ranker_kept"], false, "{report}");
    assert!(!text.contains("\"ranker\""));
    // A fitted head keeps the weight the hand-set heads had (its value scale); weighed
    // as calibrated, without maps, the file holds neither.
    let fitted = report["heads"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["fitted"].as_bool().unwrap());
    let body =
        |text: &str| -> Value { serde_json::from_str(text.split_once('\n').unwrap().1).unwrap() };
    assert_eq!(body(&text).get("value_scale").is_some(), fitted, "{report}");
    let plain = dir.path().join("plain.model");
    let train_plain = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--input",
            rows_arg,
            "--out",
            plain.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        steerfeed(&store, &args, &[])
    };
    let (ok, _, err) = train_plain(&["--balance", "calibrated", "--no-calibration"]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&plain).unwrap();
    let written = body(&text);
    assert!(written.get("value_scale").is_none() && written.get("calibration").is_none());
    let (ok, _, err) = train_plain(&["--balance", "even"]);
    assert!(!ok && err.contains("kept or calibrated"), "{err}");
    let (ok, id, err) = steerfeed(&store, &["model", "check", model.to_str().unwrap()], &[]);
    assert!(ok, "{err}");
    let id = id.trim().to_owned();
    assert!(id.starts_with("m-"), "{id}");

    let (_server, port) = start(&store, &[], Stdio::null());
    let url = format!("http://127.0.0.1:{port}");
    let cli = |args: &[&str]| steerfeed(&store, args, &[("STEERFEED_API_KEY", KEY)]);
    let shown = |out: &str| serde_json::from_str::<Value>(out).unwrap();
    let (ok, out, err) = cli(&["model", "show", "--url", &url]);
    assert!(ok, "{err}");
    assert_eq!(shown(&out)["id"], "hand-set");
    let (ok, out, err) = cli(&["model", "set", model.to_str().unwrap(), "--url", &url]);
    assert!(ok, "{err}");
    assert_eq!(shown(&out)["id"], id.as_str());
    assert_eq!(shown(&out)["previous"], "hand-set");
    // A damaged copy: refused by the command, and by the sidecar, which keeps serving.
    let text = std::fs::read_to_string(&model).unwrap();
    let at = text.find("\"prior\": ").unwrap() + 9;
    let mut damaged = text.clone();
    damaged.replace_range(at..at + 1, if &text[at..at + 1] == "9" { "8" } else { "9" });
    let bad = dir.path().join("damaged.model");
    std::fs::write(&bad, &damaged).unwrap();
    let (ok, _, err) = cli(&["model", "set", bad.to_str().unwrap(), "--url", &url]);
    assert!(!ok && err.contains("damaged"), "{err}");
    let (status, body) = http(port, "PUT", "/v1/model", Some(&json!({"file": damaged})));
    assert_eq!(status, 422, "{body}");
    let (status, body) = http(port, "GET", "/v1/model", None);
    assert_eq!((status, body["id"].as_str()), (200, Some(id.as_str())));
    assert!(!feed(port, "lp4").is_empty(), "it keeps serving");
    let (ok, out, err) = cli(&["model", "rollback", "--url", &url]);
    assert!(ok, "{err}");
    assert_eq!(shown(&out)["id"], "hand-set");
}

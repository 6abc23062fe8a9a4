//! The real `steerfeed` binary over real HTTP: started on a free loopback port with a
//! temporary store and an API key, driven through the `/v1` API (users, consent, videos
//! embedded from their captions, follows, events, a preference in words, feeds, a
//! consent revocation), then stopped with SIGTERM: it must exit cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

const KEY: &str = "binary-test-key-0123456789";

/// One HTTP/1.1 request with `Connection: close`; answers the status and the JSON body
/// (`Null` when empty).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let payload = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

#[test]
fn the_binary_serves_the_api_over_http_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_steerfeed"))
            .arg("serve")
            .env("STEERFEED__STORE__PATH", dir.path())
            .env("STEERFEED__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("STEERFEED__SERVER__API_KEYS", KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
    let now = "2026-11-20T12:00:00Z";
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

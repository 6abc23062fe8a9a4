//! Route tests of the sidecar, driven with `oneshot` (no socket), on one engine opened
//! on a temporary store and loaded with a small seeded world (40 users, 300 videos).
//!
//! 1. `/healthz` answers 200 at once.
//! 2. `/readyz` answers 503 in the error shape until the engine is loaded, then 200.
//! 3. Unknown routes are 404 in the error shape.
//! 4. `/v1` routes answer 503 `not_ready` before the engine loads.
//! 5. With API keys set, a missing or wrong bearer token is 401 and the right one passes.
//!    A key reaches the routes of its scope (`feed` < `write` < `admin`, the table's) and
//!    is 403 `forbidden` beyond; keys of `server.api_keys` are `admin`. The key file must
//!    parse at startup; reloaded, it replaces the keys at once, a broken one leaves them
//!    as they were, and a key keeps its rate-limit bucket.
//! 6. Every route's happy path, each on ids no other test touches.
//! 7. Error statuses: 400 malformed JSON, invalid UTF-8 and bad path ids; 404 unknown user
//!    and video; 413 oversized body and oversized batches (nothing of the batch is
//!    stored); 422 wrong embedding dimension, a non-finite embedding, limit 0 and 101,
//!    an unknown consent scope.
//! 8. Rate limiting: a key over its bucket is 429 `rate_limited` with `retry-after`,
//!    its request stores nothing, other keys keep their own buckets, and the bucket
//!    refills as an injected clock moves on (no sleeping).
//! 9. End to end: ingest events, steer in words, get an explained feed with the
//!    constraints applied (no politics served); revoke a cameo consent for a served video
//!    and it is gone from the next feed of another follower.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use steerfeed::demo::load_world;
use steerfeed::world::{World, WorldConfig};
use steerfeed::{AgeBand, Config, Engine, Timestamp, UserId, VideoId};
use steerfeed_server::keys::Scope;
use steerfeed_server::{AppState, SidecarConfig, api, app};
use tower::ServiceExt;

const KEY_CHAR: &str = "k";

struct Shared {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
    world: World,
}

/// One engine for the whole file: sled locks its directory, and loading the world once
/// keeps the file fast. Tests use disjoint ids for what they write.
static SHARED: LazyLock<Shared> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let mut wc = WorldConfig::new(7, 40, 300);
    wc.events_per_user = 5;
    let world = World::generate(wc);
    let engine = Engine::open(config(dir.path(), false).engine).unwrap_or_else(|e| panic!("{e}"));
    load_world(&engine, &world, 500).unwrap_or_else(|e| panic!("{e}"));
    Shared {
        _dir: dir,
        engine: Arc::new(engine),
        world,
    }
});

fn config(dir: &std::path::Path, keyed: bool) -> SidecarConfig {
    let mut c = SidecarConfig::default();
    c.engine.store.path = dir.to_path_buf();
    // The timeout middleware is not under test here: two shared cores and a debug build
    // must not turn a slow request into a 503.
    c.server.request_timeout_ms = 600_000;
    c.server.idle_timeout_s = 601;
    // The seeded world lives on its own clock; the tests of the server's clock turn
    // this off.
    c.server.allow_client_clock = true;
    if keyed {
        c.server.api_keys = vec![KEY_CHAR.repeat(16)];
    }
    c
}

/// A state on the shared engine; `keyed` turns on bearer-token auth.
async fn state(keyed: bool) -> AppState {
    let shared = tokio::task::spawn_blocking(|| &*SHARED).await.unwrap();
    let state = AppState::new(config(shared._dir.path(), keyed));
    state.set_engine(shared.engine.clone());
    state
}

fn shared() -> &'static Shared {
    &SHARED
}

/// Sends one request; the body is JSON text or raw bytes. Answers the status and the
/// body as JSON (`Null` when empty or not JSON).
async fn send(
    state: &AppState,
    method: Method,
    uri: &str,
    body: impl Into<Body>,
    auth: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = auth {
        req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let resp = app(state.clone())
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, json)
}

async fn call(state: &AppState, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    send(state, method, uri, body, None).await
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, Value) {
    call(state, Method::GET, uri, Value::Null).await
}

/// Asserts the one error shape and answers its code.
fn error_code(body: &Value) -> &str {
    let e = &body["error"];
    assert!(e["message"].is_string(), "{body}");
    assert!(e.get("field").is_none_or(Value::is_string), "{body}");
    e["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

fn world_now() -> Timestamp {
    shared().world.config.now
}

fn adults() -> Vec<UserId> {
    shared()
        .world
        .users
        .iter()
        .filter(|s| s.user.age_band == AgeBand::Adult)
        .map(|s| s.user.id.clone())
        .collect()
}

/// A unit embedding of the engine's dimension along axis `axis`.
fn axis(axis: usize) -> Vec<f32> {
    let mut e = vec![0.0f32; 384];
    e[axis] = 1.0;
    e
}

fn feed_ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {body}"))
        .iter()
        .map(|i| i["video"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Health, readiness, routing.

#[tokio::test]
async fn healthz_is_ok_before_the_engine_loads() {
    let state = AppState::new(SidecarConfig::default());
    let (status, body) = get(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_waits_for_the_engine() {
    let state = AppState::new(SidecarConfig::default());
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["message"].is_string());

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.path = dir.path().to_path_buf();
    let engine = tokio::task::spawn_blocking(move || Engine::open(config))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    state.set_engine(engine);
    let (status, body) = get(&state, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn unknown_routes_are_not_found() {
    let state = AppState::new(SidecarConfig::default());
    let (status, body) = get(&state, "/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    let (status, body) = get(&state, "/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn a_known_path_with_another_method_is_405_in_the_error_shape() {
    let state = AppState::new(SidecarConfig::default());
    let (status, body) = get(&state, "/v1/feed").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&body), "method_not_allowed");
    // The routes outside /v1 too.
    for (method, uri) in [
        (Method::POST, "/healthz"),
        (Method::PUT, "/readyz"),
        (Method::DELETE, "/metrics"),
        (Method::POST, "/openapi.json"),
    ] {
        let (status, body) = call(&state, method.clone(), uri, Value::Null).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}: {body}"
        );
        assert_eq!(error_code(&body), "method_not_allowed", "{method} {uri}");
    }
}

#[tokio::test]
async fn v1_routes_answer_503_before_the_engine_loads() {
    let state = AppState::new(SidecarConfig::default());
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/feed",
        json!({"user": "u0", "limit": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "not_ready");
    let (status, body) = get(&state, "/v1/users/u0/profile").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "not_ready");
}

// ---------------------------------------------------------------------------------------
// Auth.

#[tokio::test]
async fn a_missing_or_wrong_key_is_401_and_the_right_key_passes() {
    let state = state(true).await;
    let user = adults()[0].clone();
    let uri = format!("/v1/users/{user}/profile");
    let right = KEY_CHAR.repeat(16);

    let (status, body) = send(&state, Method::GET, &uri, Body::empty(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthorized");

    for wrong in [
        "x".repeat(16),
        KEY_CHAR.repeat(15),
        KEY_CHAR.repeat(17),
        String::new(),
    ] {
        let (status, body) = send(&state, Method::GET, &uri, Body::empty(), Some(&wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "key {wrong:?}");
        assert_eq!(error_code(&body), "unauthorized");
    }

    // Another scheme is not a bearer token.
    let resp = app(state.clone())
        .oneshot(
            Request::get(&uri)
                .header(header::AUTHORIZATION, format!("Basic {right}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers().get(header::WWW_AUTHENTICATE).unwrap(),
        "Bearer"
    );

    // A write with a wrong key changes nothing.
    let (status, _) = send(
        &state,
        Method::DELETE,
        "/v1/videos/v0",
        Body::empty(),
        Some("y".repeat(16).as_str()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let v0 = VideoId::new("v0").unwrap();
    let stored = shared().engine.video(&v0).unwrap();
    assert!(stored.is_some_and(|v| !v.deleted));

    let (status, body) = send(&state, Method::GET, &uri, Body::empty(), Some(&right)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], user.as_str());

    // Health and readiness stay open.
    let (status, _) = send(&state, Method::GET, "/readyz", Body::empty(), None).await;
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// Scopes and the key file.

const FEED_KEY: &str = "feed_key_0123456789";
const WRITE_KEY: &str = "write_key_0123456789";
const ADMIN_KEY: &str = "admin_key_0123456789";

/// Writes `text` as the key file `dir/keys`; answers its path.
fn key_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("keys");
    std::fs::write(&path, text).unwrap();
    path
}

/// The configuration of a state on the shared engine whose keys are those of `file`
/// beside `config_keys` (each `admin`).
async fn key_file_config(file: std::path::PathBuf, config_keys: &[&str]) -> SidecarConfig {
    let shared = tokio::task::spawn_blocking(|| &*SHARED).await.unwrap();
    let mut c = config(shared._dir.path(), false);
    c.server.api_keys = config_keys.iter().map(|k| (*k).to_owned()).collect();
    c.server.api_keys_file = Some(file);
    c.server.validate().unwrap();
    c
}

/// A state on the shared engine with the keys of `file` beside `config_keys`.
async fn state_with_key_file(file: std::path::PathBuf, config_keys: &[&str]) -> AppState {
    let state = AppState::try_new(key_file_config(file, config_keys).await)
        .unwrap_or_else(|e| panic!("{e}"));
    state.set_engine(shared().engine.clone());
    state
}

/// Sends `body` (JSON, or nothing for `Null`) with `key`.
async fn with_key(
    state: &AppState,
    method: Method,
    uri: &str,
    body: &Value,
    key: &str,
) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    send(state, method, uri, body, Some(key)).await
}

/// Asserts a 403 in the error shape naming the scope needed and the key's.
fn assert_forbidden(status: StatusCode, body: &Value, needed: &str, held: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(error_code(body), "forbidden");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("scope {needed}")) && message.contains(&format!("is {held}")),
        "{message}"
    );
}

#[tokio::test]
async fn each_key_reaches_the_routes_of_its_scope_and_is_403_beyond() {
    let dir = tempfile::tempdir().unwrap();
    let env_key = KEY_CHAR.repeat(16);
    let file = key_file(
        dir.path(),
        &format!(
            "# the test's keys\nfeed {FEED_KEY} app\nwrite {WRITE_KEY} worker\nadmin {ADMIN_KEY}\n"
        ),
    );
    let state = state_with_key_file(file, &[&env_key]).await;
    let user = adults()[5].clone();
    let now = world_now();
    let feed = json!({"user": user.as_str(), "limit": 3});
    let profile = format!("/v1/users/{user}/profile");
    let preferences = format!("/v1/users/{user}/preferences");
    let video = |id: &str| {
        json!({"videos": [{"id": id, "creator": "u0", "created_at": now,
                           "duration_s": 10.0, "embedding": axis(7)}]})
    };
    let event = |k: &str| {
        json!({"events": [{"key": k, "user": user.as_str(), "at": now, "kind": "view",
                           "video": "v1", "watch_ms": 1000, "completed": false}]})
    };
    let stored = |id: &str| {
        shared()
            .engine
            .video(&VideoId::new(id).unwrap())
            .unwrap()
            .is_some()
    };

    // feed: the feed, the profile and the preferences; nothing else.
    let (status, body) = with_key(&state, Method::POST, "/v1/feed", &feed, FEED_KEY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["items"].is_array(), "{body}");
    let (status, body) = with_key(&state, Method::GET, &profile, &Value::Null, FEED_KEY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = with_key(&state, Method::GET, &preferences, &Value::Null, FEED_KEY).await;
    assert!(
        status == StatusCode::OK || status == StatusCode::NOT_FOUND,
        "{status} {body}"
    );
    let (status, body) = with_key(
        &state,
        Method::POST,
        "/v1/events",
        &event("scope_feed_e"),
        FEED_KEY,
    )
    .await;
    assert_forbidden(status, &body, "write", "feed");
    let (status, body) = with_key(
        &state,
        Method::PUT,
        "/v1/videos",
        &video("scope_feed_v"),
        FEED_KEY,
    )
    .await;
    assert_forbidden(status, &body, "write", "feed");
    assert!(!stored("scope_feed_v"), "a 403 stored its video");
    let (status, body) = with_key(
        &state,
        Method::PUT,
        &preferences,
        &json!({"text": "x"}),
        FEED_KEY,
    )
    .await;
    assert_forbidden(status, &body, "write", "feed");
    let (status, body) = with_key(&state, Method::GET, "/metrics", &Value::Null, FEED_KEY).await;
    assert_forbidden(status, &body, "admin", "feed");

    // write: what feed may, and ingest and the catalogue; not the metrics.
    let (status, body) = with_key(&state, Method::POST, "/v1/feed", &feed, WRITE_KEY).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = with_key(
        &state,
        Method::POST,
        "/v1/events",
        &event("scope_write_e"),
        WRITE_KEY,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    let (status, body) = with_key(
        &state,
        Method::PUT,
        "/v1/videos",
        &video("scope_write_v"),
        WRITE_KEY,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(stored("scope_write_v"));
    let (status, body) = with_key(&state, Method::GET, "/metrics", &Value::Null, WRITE_KEY).await;
    assert_forbidden(status, &body, "admin", "write");

    // admin, from the file or from server.api_keys: everything.
    for (i, key) in [ADMIN_KEY, env_key.as_str()].into_iter().enumerate() {
        let (status, body) = with_key(&state, Method::POST, "/v1/feed", &feed, key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let k = format!("scope_admin_e{i}");
        let (status, body) = with_key(&state, Method::POST, "/v1/events", &event(&k), key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v = format!("scope_admin_v{i}");
        let (status, body) = with_key(&state, Method::PUT, "/v1/videos", &video(&v), key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = with_key(&state, Method::GET, "/metrics", &Value::Null, key).await;
        assert_eq!(status, StatusCode::OK);
    }

    // A wrong key or none is still 401, whatever the route.
    for uri in ["/v1/feed", "/metrics"] {
        let (status, body) =
            with_key(&state, Method::POST, uri, &feed, "not_a_key_0123456789").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
        assert_eq!(error_code(&body), "unauthorized");
    }
    let (status, _) = send(&state, Method::GET, &profile, Body::empty(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_route_needs_the_scope_its_row_gives_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(
        dir.path(),
        &format!("feed {FEED_KEY}\nwrite {WRITE_KEY}\nadmin {ADMIN_KEY}\n"),
    );
    let state = state_with_key_file(file, &[]).await;
    let keys = [
        (Scope::Feed, FEED_KEY),
        (Scope::Write, WRITE_KEY),
        (Scope::Admin, ADMIN_KEY),
    ];
    // Ids no user or video has and no body: a request let through is refused further on
    // (400, 404) and changes nothing.
    for (method, path, needed) in api::ROUTES.iter().chain(api::ROUTES_OUTSIDE_V1) {
        let uri = path.replace('{', "scope_nobody_").replace('}', "");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        for (held, key) in keys {
            let (status, body) = send(&state, method.clone(), &uri, Body::empty(), Some(key)).await;
            if held < *needed {
                assert_forbidden(status, &body, needed.as_str(), held.as_str());
            } else {
                assert!(
                    status != StatusCode::FORBIDDEN && status != StatusCode::UNAUTHORIZED,
                    "{method} {uri} with a {held} key: {status} {body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_reloaded_key_file_replaces_the_keys_and_a_broken_one_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new, secret) = (
        "old_key_0123456789",
        "new_key_0123456789",
        "s3cret_0123456789",
    );
    let file = key_file(dir.path(), &format!("write {old}\n"));
    let state = state_with_key_file(file.clone(), &[]).await;
    let uri = format!("/v1/users/{}/profile", adults()[6]);
    let status = |key: &'static str| {
        let state = state.clone();
        let uri = uri.clone();
        async move {
            with_key(&state, Method::GET, &uri, &Value::Null, key)
                .await
                .0
        }
    };
    assert_eq!(status(old).await, StatusCode::OK);
    assert_eq!(status(new).await, StatusCode::UNAUTHORIZED);

    // A new file: the old key is gone, the new one works with its scope.
    key_file(dir.path(), &format!("# rotated\nadmin {new} ops\n"));
    assert_eq!(state.reload_keys().unwrap(), 1);
    assert_eq!(status(old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(new).await, StatusCode::OK);
    let (code, _) = with_key(&state, Method::GET, "/metrics", &Value::Null, new).await;
    assert_eq!(code, StatusCode::OK);

    // A broken file (the old key back, then a bad line) changes nothing: the error names
    // the line, never a key.
    key_file(
        dir.path(),
        &format!("admin {new}\nwrite {old}\nreed {secret}\n"),
    );
    let err = state.reload_keys().unwrap_err().to_string();
    assert!(err.contains("line 3") && err.contains("keys"), "{err}");
    for key in [old, new, secret] {
        assert!(!err.contains(key), "{err}");
    }
    assert_eq!(status(new).await, StatusCode::OK);
    assert_eq!(status(old).await, StatusCode::UNAUTHORIZED);

    // So does a file that is gone.
    std::fs::remove_file(&file).unwrap();
    let err = state.reload_keys().unwrap_err().to_string();
    assert!(err.contains("cannot read"), "{err}");
    assert_eq!(status(new).await, StatusCode::OK);

    // A file without keys leaves auth on: every request is 401.
    key_file(dir.path(), "# nobody for now\n");
    assert_eq!(state.reload_keys().unwrap(), 0);
    assert_eq!(status(new).await, StatusCode::UNAUTHORIZED);
    let (code, _) = send(&state, Method::GET, &uri, Body::empty(), None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_key_keeps_its_rate_limit_bucket_when_the_file_is_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = ("key_a_0123456789ab", "key_b_0123456789ab");
    let file = key_file(dir.path(), &format!("feed {a}\n"));
    let mut c = key_file_config(file, &[]).await;
    // One request, then none until the clock moves.
    c.server.rate_limit_per_second = 0.5;
    c.server.rate_limit_burst = 1;
    let clock = Arc::new(ManualClock::default());
    let state = AppState::with_clock(c, clock.clone());
    state.set_engine(shared().engine.clone());
    let uri = format!("/v1/users/{}/profile", adults()[7]);
    let get = |key: &'static str| {
        let state = state.clone();
        let uri = uri.clone();
        async move {
            with_key(&state, Method::GET, &uri, &Value::Null, key)
                .await
                .0
        }
    };
    assert_eq!(get(a).await, StatusCode::OK);
    assert_eq!(get(a).await, StatusCode::TOO_MANY_REQUESTS);

    // A key added before it moves it down the file; its bucket stays empty.
    key_file(dir.path(), &format!("feed {b}\nfeed {a}\n"));
    assert_eq!(state.reload_keys().unwrap(), 2);
    assert_eq!(get(a).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(get(b).await, StatusCode::OK);
    clock.advance(std::time::Duration::from_secs(2));
    assert_eq!(get(a).await, StatusCode::OK);
}

#[tokio::test]
async fn the_key_file_must_be_there_and_parse_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-file");
    let err = AppState::try_new(key_file_config(missing.clone(), &[]).await).unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );

    let bad = key_file(
        dir.path(),
        &format!("feed {FEED_KEY}\nadmin {ADMIN_KEY} a b\n"),
    );
    let err = AppState::try_new(key_file_config(bad.clone(), &[]).await)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2") && !err.contains(ADMIN_KEY), "{err}");

    // A state built regardless fails closed: no key passes, not even a configured one.
    let env_key = KEY_CHAR.repeat(16);
    let state = AppState::new(key_file_config(bad, &[&env_key]).await);
    state.set_engine(shared().engine.clone());
    for key in [FEED_KEY, env_key.as_str()] {
        let (status, _) = with_key(&state, Method::POST, "/v1/feed", &json!({}), key).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key}");
    }

    // An empty file turns auth on, even on loopback.
    let empty = key_file(dir.path(), "");
    let state = state_with_key_file(empty, &[]).await;
    let uri = format!("/v1/users/{}/profile", adults()[8]);
    let (status, body) = send(&state, Method::GET, &uri, Body::empty(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

// ---------------------------------------------------------------------------------------
// Happy paths.

#[tokio::test]
async fn every_route_answers_its_happy_path() {
    let state = state(false).await;
    let now = world_now();

    // Users.
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/users",
        json!({"users": [
            {"id": "hp_viewer"},
            {"id": "hp_creator", "time_zone": "Europe/Paris"},
            {"id": "hp_teen", "age_band": "teen"},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 3);
    let teen = shared()
        .engine
        .user(&UserId::new("hp_teen").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(teen.age_band, AgeBand::Teen);

    // Videos: one with an embedding, one with only a caption (embedded by the engine).
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [
            {"id": "hp_v1", "creator": "hp_creator", "created_at": now, "duration_s": 12.0,
             "topics": ["comedy"], "embedding": axis(3)},
            {"id": "hp_v2", "creator": "hp_creator", "created_at": now, "duration_s": 30.0,
             "caption": "a quick pasta recipe in a tiny kitchen"},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["upserted"], 2);
    let v2 = shared()
        .engine
        .video(&VideoId::new("hp_v2").unwrap())
        .unwrap()
        .unwrap();
    assert!(v2.embedding.is_some());

    // The graph, each edge both ways.
    for kind in ["follows", "blocks", "mutes"] {
        let uri = format!("/v1/users/hp_viewer/{kind}/hp_creator");
        let (status, body) = call(&state, Method::PUT, &uri, Value::Null).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "PUT {kind}: {body}");
        let (status, body) = call(&state, Method::DELETE, &uri, Value::Null).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "DELETE {kind}: {body}");
    }
    let (status, _) = call(
        &state,
        Method::PUT,
        "/v1/users/hp_viewer/follows/hp_creator",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Parental controls, consent, a revocation.
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/users/hp_teen/parental",
        json!({"personalization": false, "scroll_cap": 30}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/users/hp_viewer/consent",
        json!({"scope": "approved", "approved": ["hp_creator"]}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for rev in [json!({"video": "hp_v1"}), json!({"creator": "hp_creator"})] {
        let (status, body) = call(
            &state,
            Method::POST,
            "/v1/users/hp_viewer/consent/revocations",
            rev,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }

    // Preferences: put, get, delete, then none.
    let uri = "/v1/users/hp_viewer/preferences";
    let (status, put_body) = call(
        &state,
        Method::PUT,
        uri,
        json!({"text": "more cooking please"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{put_body}");
    assert_eq!(put_body["boost"][0]["topic"], "cooking", "{put_body}");
    let (status, body) = get(&state, uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["text"], "more cooking please");
    assert_eq!(body["constraints"], put_body);
    let (status, _) = call(&state, Method::DELETE, uri, Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = get(&state, uri).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");

    // Events: accepted once, then reported as duplicates.
    let events = json!({"events": [
        {"key": "hp_e1", "user": "hp_viewer", "at": now, "kind": "view", "video": "hp_v1",
         "watch_ms": 5000, "completed": true},
        {"key": "hp_e2", "user": "hp_viewer", "at": now, "kind": "like", "video": "hp_v1"},
    ]});
    let (status, body) = call(&state, Method::POST, "/v1/events", events.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["duplicates"], json!([]));
    let (status, body) = call(&state, Method::POST, "/v1/events", events).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["duplicates"], json!(["hp_e1", "hp_e2"]));

    // The feed, and its next page through the cursor.
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/feed",
        json!({"user": "hp_viewer", "limit": 5, "session": "s1", "now": now}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = feed_ids(&body);
    assert!(!first.is_empty() && first.len() <= 5, "{body}");
    let cursor = body["next_cursor"].as_str().unwrap().to_owned();
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/feed",
        json!({"user": "hp_viewer", "limit": 5, "session": "s1", "now": now, "cursor": cursor}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = feed_ids(&body);
    assert!(
        second.iter().all(|id| !first.contains(id)),
        "{first:?} {second:?}"
    );

    // The profile counts what was served.
    let (status, body) = get(&state, "/v1/users/hp_viewer/profile").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"], "hp_viewer");
    assert!(
        body["recent_items"].as_u64().unwrap() >= first.len() as u64,
        "{body}"
    );

    // Deleting a video: gone from the store, and deleting again is harmless.
    let (status, _) = call(&state, Method::DELETE, "/v1/videos/hp_v2", Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let v2 = shared()
        .engine
        .video(&VideoId::new("hp_v2").unwrap())
        .unwrap()
        .unwrap();
    assert!(v2.deleted);
}

// ---------------------------------------------------------------------------------------
// Error statuses.

#[tokio::test]
async fn malformed_json_invalid_utf8_and_bad_path_ids_are_400() {
    let state = state(false).await;
    for raw in [
        b"{\"user\": ".to_vec(),
        b"not json".to_vec(),
        b"{\"user\": \"u0\"} trailing".to_vec(),
        b"{\"user\": \"u\xff0\"}".to_vec(),
        Vec::new(),
    ] {
        let (status, body) = send(&state, Method::POST, "/v1/feed", raw.clone(), None).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&raw)
        );
        assert_eq!(error_code(&body), "malformed_json");
    }
    // A control character is not a valid id.
    let (status, body) = get(&state, "/v1/users/a%01b/profile").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad_path");
    assert_eq!(body["error"]["field"], "user_id");
    // Nor is an id longer than 128 bytes.
    let uri = format!("/v1/videos/{}", "v".repeat(200));
    let (status, body) = call(&state, Method::DELETE, &uri, Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad_path");
    // Invalid UTF-8 and control characters in any id of a path, in the API's error shape.
    for uri in [
        "/v1/users/%FF/profile",
        "/v1/videos/%FF",
        "/v1/users/%FF/explain/v0",
        "/v1/users/u0/explain/%FF",
        "/v1/users/u0/explain/a%01b",
    ] {
        let (status, body) = get(&state, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(error_code(&body), "bad_path", "{uri}: {body}");
    }
}

#[tokio::test]
async fn unknown_users_and_videos_are_404() {
    let state = state(false).await;
    let (status, body) = get(&state, "/v1/users/nobody_here/profile").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    assert!(body["error"].get("field").is_none(), "no field: {body}");
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/feed",
        json!({"user": "nobody_here"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/users/nobody_here/preferences",
        json!({"text": "more cooking"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    let (status, body) = call(
        &state,
        Method::DELETE,
        "/v1/videos/no_such_video",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn oversized_bodies_and_batches_are_413_and_store_nothing() {
    let state = state(false).await;
    let limit = state.config().server.max_body_bytes;

    // A body over server.max_body_bytes.
    let text = "x".repeat(limit + 1);
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/users/u0/preferences",
        json!({ "text": text }),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "too_large");

    // A 100 KB preference text fits in the body but not in steering.max_text_bytes.
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/users/u0/preferences",
        json!({ "text": "more cooking ".repeat(100_000 / 13 + 1) }),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["field"], "text");
    let (status, _) = get(&state, "/v1/users/u0/preferences").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");

    // A batch of one video too many, small enough to fit in the body.
    let now = world_now();
    let videos: Vec<Value> = (0..=steerfeed_server::api::MAX_VIDEO_BATCH)
        .map(|i| {
            json!({"id": format!("big{i}"), "creator": "u0", "created_at": now,
                        "duration_s": 10.0, "caption": "x"})
        })
        .collect();
    let raw = json!({ "videos": videos }).to_string();
    assert!(raw.len() < limit);
    let (status, body) = send(&state, Method::PUT, "/v1/videos", raw, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "too_large");
    assert_eq!(body["error"]["field"], "videos");
    let big0 = VideoId::new("big0").unwrap();
    assert!(shared().engine.video(&big0).unwrap().is_none());

    // A batch of one event too many.
    let events: Vec<Value> = (0..=steerfeed_server::api::MAX_EVENT_BATCH)
        .map(|i| json!({"key": format!("b{i}"), "user": "u0", "at": now, "kind": "like", "video": "v0"}))
        .collect();
    let raw = json!({ "events": events }).to_string();
    assert!(raw.len() < limit);
    let (status, body) = send(&state, Method::POST, "/v1/events", raw, None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["field"], "events");
    // Nothing was logged: the same keys are accepted as new.
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/events",
        json!({"events": [{"key": "b0", "user": "u0", "at": now, "kind": "like", "video": "v0"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
}

/// A state on the shared engine that keeps the server's clock, and its
/// `server.event_max_ahead_s`.
fn server_clock_state() -> (AppState, u64) {
    let mut c = config(shared().engine.config().store.path.as_path(), false);
    c.server.allow_client_clock = false;
    let ahead = c.server.event_max_ahead_s;
    let strict = AppState::new(c);
    strict.set_engine(shared().engine.clone());
    (strict, ahead)
}

/// The server keeps the clock for videos too: a `created_at` beyond
/// `server.event_max_ahead_s` of the server's clock is refused for the whole batch, one
/// within it or from long ago is kept, and `allow_client_clock` lifts the rule.
#[tokio::test]
async fn a_video_dated_in_the_future_is_refused_unless_the_client_keeps_the_clock() {
    let shared_state = state(false).await;
    let (strict, ahead) = server_clock_state();
    let now = Timestamp::now();
    let at = |secs: i64| Timestamp::from_millisecond(now.as_millisecond() + secs * 1000).unwrap();
    let future = at(i64::try_from(ahead).unwrap() + 3_600);
    let video = |id: &str, created: Timestamp, axis_no: usize| {
        json!({"id": id, "creator": "u0", "created_at": created, "duration_s": 5.0,
               "embedding": axis(axis_no)})
    };

    let (status, body) = call(
        &strict,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [video("clock_ok", now, 7), video("clock_future", future, 8)]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_input");
    assert_eq!(body["error"]["field"], "videos[1].created_at");
    for id in ["clock_ok", "clock_future"] {
        let id = VideoId::new(id).unwrap();
        assert!(shared().engine.video(&id).unwrap().is_none(), "{id} kept");
    }

    // Within the allowance, and a year old: both kept.
    let year_ago = at(-365 * 86_400);
    let soon = at(i64::try_from(ahead / 2).unwrap());
    let (status, body) = call(
        &strict,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [video("clock_soon", soon, 9), video("clock_old", year_ago, 10)]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (id, when) in [("clock_soon", soon), ("clock_old", year_ago)] {
        let v = shared()
            .engine
            .video(&VideoId::new(id).unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(v.created_at, when);
    }

    // A server that lets clients keep the clock takes the future date.
    let (status, body) = call(
        &shared_state,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [video("clock_future", future, 8)]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A bad event is named by its place in the batch, and nothing of the batch is logged.
#[tokio::test]
async fn a_bad_event_is_422_naming_its_place_in_the_batch() {
    let state = state(false).await;
    let now = Timestamp::now();
    let view = |key: &str, watch_ms: u64| {
        json!({"key": key, "user": "u0", "at": now, "kind": "view", "video": "v0",
               "watch_ms": watch_ms})
    };
    let events = json!([
        view("place_a", 1_000),
        view("place_b", 2_000),
        view("place_c", 86_400_001)
    ]);
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/events",
        json!({ "events": events }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "events[2].watch_ms", "{body}");
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/events",
        json!({"events": [view("place_a", 1_000)]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["accepted"], 1,
        "nothing of the refused batch was logged: {body}"
    );
}

/// An event key names one event: sent again with another event it is 409, and nothing
/// of that batch is logged.
#[tokio::test]
async fn an_event_key_reused_for_another_event_is_409_and_logs_nothing() {
    let state = state(false).await;
    let now = Timestamp::now();
    let like = |key: &str, video: &str| json!({"key": key, "user": "u0", "at": now, "kind": "like", "video": video});
    let post = |events: Value| {
        let state = state.clone();
        async move {
            call(
                &state,
                Method::POST,
                "/v1/events",
                json!({ "events": events }),
            )
            .await
        }
    };
    let (status, body) = post(json!([like("reuse_k", "v0")])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = post(json!([like("reuse_new", "v0"), like("reuse_k", "v1")])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "conflict");
    // Nothing of the refused batch was logged: its new event is new still.
    let (status, body) = post(json!([like("reuse_new", "v0"), like("reuse_k", "v0")])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["duplicates"], json!(["reuse_k"]), "{body}");
}

/// A NUL character is refused in every text a client writes (a caption, preference text,
/// text added by an edit), and nothing is stored.
#[tokio::test]
async fn a_nul_character_in_text_is_422_and_changes_nothing() {
    let state = state(false).await;
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [{"id": "nul_caption", "creator": "u0", "created_at": world_now(),
                           "duration_s": 5.0, "caption": "a cat\u{0} video"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let id = VideoId::new("nul_caption").unwrap();
    assert!(shared().engine.video(&id).unwrap().is_none());
    let user = adults()[4].clone();
    let uri = format!("/v1/users/{user}/preferences");
    let (status, body) = call(&state, Method::PUT, &uri, json!({"text": "more cooking"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, before) = get(&state, &uri).await;
    let (status, body) = call(&state, Method::PUT, &uri, json!({"text": "more cats\u{0}"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "text", "{body}");
    let (status, body) = call(
        &state,
        Method::PATCH,
        &uri,
        json!({"add": "less dogs\u{0}"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(get(&state, &uri).await.1, before);
}

/// A query string on a route that reads none is refused before the route runs: a
/// parameter the route does not have is never silently ignored.
#[tokio::test]
async fn a_query_the_route_does_not_read_is_422_and_changes_nothing() {
    let state = state(false).await;
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [{"id": "query_kept", "creator": "u0", "created_at": world_now(),
                           "duration_s": 5.0, "embedding": axis(13)}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &state,
        Method::DELETE,
        "/v1/videos/query_kept?dry_run=true",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_input");
    assert_eq!(body["error"]["field"], "query");
    let kept = shared()
        .engine
        .video(&VideoId::new("query_kept").unwrap())
        .unwrap()
        .unwrap();
    assert!(!kept.deleted);
    let user = adults()[3].clone();
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/feed?limit=5",
        json!({ "user": user }),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // An empty query is no parameter; a route that reads its query still takes one.
    let (status, body) = call(&state, Method::POST, "/v1/feed?", json!({ "user": user })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(&state, "/v1/stats?points=5").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A method the route does not serve is 405, query or not.
    let (status, body) = call(&state, Method::TRACE, "/v1/export?kinds=user", Value::Null).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
}

/// A batch of users is checked whole before any is written: a reserved id or an unknown
/// time zone anywhere refuses the batch, naming the user's place in it.
#[tokio::test]
async fn a_users_batch_with_one_bad_user_writes_none() {
    let state = state(false).await;
    for (bad, field) in [
        (json!({"id": "(erased)"}), "users[1].id"),
        (
            json!({"id": "batch_tz", "time_zone": "Mars/Olympus"}),
            "users[1].time_zone",
        ),
    ] {
        let (status, body) = call(
            &state,
            Method::POST,
            "/v1/users",
            json!({"users": [{"id": "batch_first"}, bad, {"id": "batch_last"}]}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
        for id in ["batch_first", "batch_tz", "batch_last"] {
            let id = UserId::new(id).unwrap();
            assert!(shared().engine.user(&id).unwrap().is_none(), "{id} written");
        }
    }
}

/// An import keeps the server's clock as the routes of its records do: an event or a
/// video dated beyond `server.event_max_ahead_s` is rejected on its own, and records from
/// long ago (history moved from elsewhere) are kept.
#[tokio::test]
async fn an_import_rejects_each_record_dated_in_the_future_and_keeps_history() {
    let _ = state(false).await;
    let (strict, ahead) = server_clock_state();
    let now = Timestamp::now();
    let at = |secs: i64| Timestamp::from_millisecond(now.as_millisecond() + secs * 1000).unwrap();
    let future = at(i64::try_from(ahead).unwrap() + 3_600);
    let long_ago = at(-400 * 86_400);
    let video = |id: &str, created: Timestamp, axis_no: usize| {
        json!({"record": "video", "video": {"id": id, "creator": "u0", "created_at": created,
               "duration_s": 5.0, "embedding": axis(axis_no)}})
    };
    let event = |key: &str, when: Timestamp| {
        json!({"record": "event", "event": {"key": key, "user": "u0", "at": when,
               "kind": "like", "video": "v0"}})
    };
    let (status, body) = call(
        &strict,
        Method::POST,
        "/v1/import",
        json!({"records": [
            video("import_ahead", future, 11),
            video("import_old", long_ago, 12),
            event("import_e_ahead", future),
            event("import_e_old", at(-30 * 86_400)),
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["rejected", "written", "rejected", "written"],
        "{body}"
    );
    assert_eq!(results[0]["error"]["field"], "video.created_at");
    assert_eq!(results[2]["error"]["field"], "event.at");
    let stored = |id: &str| {
        shared()
            .engine
            .video(&VideoId::new(id).unwrap())
            .unwrap()
            .is_some()
    };
    assert!(!stored("import_ahead") && stored("import_old"));
    // The old event was logged (a second import finds it a duplicate); the one from the
    // future was not, and is rejected again.
    let (status, body) = call(
        &strict,
        Method::POST,
        "/v1/import",
        json!({"records": [event("import_e_ahead", future), event("import_e_old", at(-30 * 86_400))]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["status"], "rejected", "{body}");
    assert_eq!(body["results"][1]["status"], "duplicate", "{body}");
}

#[tokio::test]
async fn values_that_parse_but_fail_validation_are_422() {
    let state = state(false).await;
    let now = world_now();

    // Wrong embedding dimension: nothing of the batch is stored.
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [
            {"id": "bad_ok", "creator": "u0", "created_at": now, "duration_s": 5.0, "embedding": axis(1)},
            {"id": "bad_dim", "creator": "u0", "created_at": now, "duration_s": 5.0, "embedding": [1.0, 0.0, 0.0]},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_code(&body), "invalid_input");
    assert_eq!(body["error"]["field"], "embedding");
    for id in ["bad_ok", "bad_dim"] {
        let id = VideoId::new(id).unwrap();
        assert!(shared().engine.video(&id).unwrap().is_none());
    }

    // A value that overflows f32 is refused: as infinite by the embedding's deserialiser,
    // or as out of range by serde_json.
    let mut e: Vec<Value> = axis(2).into_iter().map(Value::from).collect();
    e[5] = serde_json::from_str("1e39").unwrap();
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [
            {"id": "bad_inf", "creator": "u0", "created_at": now, "duration_s": 5.0, "embedding": e},
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // The embedding, or its element when serde_json parses f32 exactly (its
    // `float_roundtrip` feature) and refuses the number itself.
    let field = body["error"]["field"].as_str().unwrap_or_default();
    assert!(
        field == "videos[0].embedding" || field == "videos[0].embedding[5]",
        "{body}"
    );

    // Limit out of range.
    let user = adults()[1].clone();
    for limit in [0, 101] {
        let (status, body) = call(
            &state,
            Method::POST,
            "/v1/feed",
            json!({"user": user, "limit": limit}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "limit {limit}");
        assert_eq!(error_code(&body), "invalid_input");
        assert_eq!(body["error"]["field"], "limit");
    }

    // An unknown consent scope, and an unknown field.
    let uri = format!("/v1/users/{user}/consent");
    let (status, body) = call(&state, Method::PUT, &uri, json!({"scope": "strangers"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "scope");
    let (status, _) = call(
        &state,
        Method::PUT,
        &uri,
        json!({"scope": "everyone", "extra": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // A revocation must name exactly one of video and creator.
    let uri = format!("/v1/users/{user}/consent/revocations");
    let (status, _) = call(&state, Method::POST, &uri, json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Parental controls out of range.
    let uri = format!("/v1/users/{user}/parental");
    let (status, body) = call(&state, Method::PUT, &uri, json!({"scroll_cap": 0})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "scroll_cap");
}

// ---------------------------------------------------------------------------------------
// End to end.

#[tokio::test]
async fn steer_in_words_then_a_revoked_cameo_is_gone_from_the_next_feed() {
    let state = state(false).await;
    let now = world_now();
    let me = adults()[2].clone();

    // Ingest some events of `me` on world videos.
    let videos = &shared().world.videos;
    let events: Vec<Value> = videos
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, v)| {
            json!({"key": format!("e2e_{i}"), "user": me, "at": now,
                             "kind": "view", "video": v.id, "watch_ms": 8000, "completed": true})
        })
        .collect();
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/events",
        json!({ "events": events }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 5);

    // Steer in words.
    let (status, constraints) = call(
        &state,
        Method::PUT,
        &format!("/v1/users/{me}/preferences"),
        json!({"text": "more cooking, no politics", "now": now}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{constraints}");
    assert_eq!(constraints["boost"][0]["topic"], "cooking", "{constraints}");
    assert_eq!(
        constraints["exclude"][0]["topic"], "politics",
        "{constraints}"
    );

    // An explained feed with the constraints applied.
    let (status, page) = call(
        &state,
        Method::POST,
        "/v1/feed",
        json!({"user": me, "limit": 20, "now": now}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // The feed reports the constraints it applied (without the descriptions a
    // preferences answer carries).
    let mut undescribed = constraints.clone();
    for list in ["boost", "exclude"] {
        for x in undescribed[list].as_array_mut().unwrap() {
            x.as_object_mut().unwrap().remove("description");
        }
    }
    assert_eq!(page["applied"], undescribed);
    let ids = feed_ids(&page);
    assert!(!ids.is_empty(), "{page}");
    for item in page["items"].as_array().unwrap() {
        let text = item["explanation"]["text"].as_str().unwrap();
        assert!(!text.is_empty(), "{item}");
        let v = shared()
            .engine
            .video(&VideoId::new(item["video"].as_str().unwrap()).unwrap())
            .unwrap()
            .unwrap();
        assert!(
            v.topics.iter().all(|t| t.as_str() != "politics"),
            "politics served: {item}"
        );
    }

    // A fresh video by a followed creator, featuring someone who consents to everyone.
    let (status, _) = call(
        &state,
        Method::POST,
        "/v1/users",
        json!({"users": [{"id": "e2e_c"}, {"id": "e2e_p"}, {"id": "e2e_f0"}, {"id": "e2e_f1"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &state,
        Method::PUT,
        "/v1/users/e2e_p/consent",
        json!({"scope": "everyone"}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [{"id": "e2e_v", "creator": "e2e_c", "created_at": now,
                           "duration_s": 15.0, "topics": ["comedy"], "embedding": axis(7),
                           "cameos": ["e2e_p"]}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for f in ["e2e_f0", "e2e_f1"] {
        let (status, _) = call(
            &state,
            Method::PUT,
            &format!("/v1/users/{f}/follows/e2e_c"),
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (status, page) = call(
        &state,
        Method::POST,
        "/v1/feed",
        json!({"user": "e2e_f0", "limit": 10, "now": now}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        feed_ids(&page).contains(&"e2e_v".to_owned()),
        "the followed video is served: {page}"
    );

    // The person in the cameo revokes their consent for that video.
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/users/e2e_p/consent/revocations",
        json!({"video": "e2e_v"}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, page) = call(
        &state,
        Method::POST,
        "/v1/feed",
        json!({"user": "e2e_f1", "limit": 10, "now": now}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        !feed_ids(&page).contains(&"e2e_v".to_owned()),
        "a revoked cameo is served: {page}"
    );
}

#[tokio::test]
async fn metrics_count_requests_stages_sources_and_filters() {
    let state = state(false).await;
    let user = adults()[3].clone();
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/feed",
        serde_json::json!({"user": user.as_str(), "limit": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let resp = app(state.clone())
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    // Every series names the replica (the bind address when no name is set).
    let replica = format!("replica=\"{}\"", state.config().server.bind);
    for needle in [
        "steerfeed_http_request_duration_seconds_count{R,route=\"/v1/feed\",status=\"200\"} 1",
        "steerfeed_stage_duration_seconds_count{R,stage=\"objective\"} 1",
        "steerfeed_stage_duration_seconds_count{R,stage=\"context\"} 1",
        "steerfeed_source_candidates_total{R,source=\"interest_ann\"}",
        "steerfeed_filter_removed_total{R,filter=\"consent\"}",
        "steerfeed_feed_stopped_total{R}",
    ] {
        let needle = needle.replace('R', &replica);
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    // Behind the key when keys are set.
    let keyed = state_keyed_like(&state);
    let resp = app(keyed)
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

fn state_keyed_like(state: &AppState) -> AppState {
    let mut c = state.config().clone();
    c.server.api_keys = vec![KEY_CHAR.repeat(16)];
    let keyed = AppState::new(c);
    keyed.set_engine(state.engine().unwrap().clone());
    keyed
}

/// A clock the rate-limit test moves by hand.
#[derive(Debug, Default)]
struct ManualClock(std::sync::Mutex<std::time::Duration>);

impl steerfeed_server::ratelimit::Clock for ManualClock {
    fn now(&self) -> std::time::Duration {
        *self.0.lock().unwrap()
    }
}

impl ManualClock {
    fn advance(&self, d: std::time::Duration) {
        *self.0.lock().unwrap() += d;
    }
}

/// Sends one authorized request; answers the status, the `retry-after` header and the
/// body as JSON.
async fn send_keyed(
    state: &AppState,
    method: Method,
    uri: &str,
    body: Value,
    key: &str,
) -> (StatusCode, Option<String>, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let retry = resp
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after_and_stores_nothing() {
    let shared = tokio::task::spawn_blocking(|| &*SHARED).await.unwrap();
    let (key_a, key_b) = (KEY_CHAR.repeat(16), "m".repeat(16));
    let mut c = config(shared._dir.path(), false);
    c.server.api_keys = vec![key_a.clone(), key_b.clone()];
    // One request every two seconds, two at once.
    c.server.rate_limit_per_second = 0.5;
    c.server.rate_limit_burst = 2;
    c.server.validate().unwrap();
    let clock = Arc::new(ManualClock::default());
    let state = AppState::with_clock(c, clock.clone());
    state.set_engine(shared.engine.clone());

    let now = world_now();
    let video = |id: &str| {
        json!({"videos": [{"id": id, "creator": "u0", "created_at": now,
                           "duration_s": 10.0, "caption": "rate limit"}]})
    };
    let stored = |id: &str| {
        shared
            .engine
            .video(&VideoId::new(id).unwrap())
            .unwrap()
            .is_some()
    };

    for id in ["rl0", "rl1"] {
        let (status, retry, body) =
            send_keyed(&state, Method::PUT, "/v1/videos", video(id), &key_a).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(retry.is_none());
    }
    let (status, retry, body) =
        send_keyed(&state, Method::PUT, "/v1/videos", video("rl2"), &key_a).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), "rate_limited");
    // An empty bucket at half a token a second: a token in two seconds.
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(stored("rl0") && stored("rl1"));
    assert!(!stored("rl2"), "a 429 stored its video");

    // A wrong key is still 401 (the key is checked first); another key has its own bucket.
    let (status, _, _) = send_keyed(&state, Method::PUT, "/v1/videos", video("rl3"), "x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) =
        send_keyed(&state, Method::PUT, "/v1/videos", video("rl3"), &key_b).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // One second gives half a token: still limited, one second left to wait.
    clock.advance(std::time::Duration::from_secs(1));
    let (status, retry, _) =
        send_keyed(&state, Method::PUT, "/v1/videos", video("rl2"), &key_a).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry.as_deref(), Some("1"));
    assert!(!stored("rl2"));

    // Another second makes a whole token: the request goes through, and only that one.
    clock.advance(std::time::Duration::from_secs(1));
    let (status, _, body) =
        send_keyed(&state, Method::PUT, "/v1/videos", video("rl2"), &key_a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(stored("rl2"));
    let (status, _, _) = send_keyed(
        &state,
        Method::GET,
        "/v1/users/u0/profile",
        Value::Null,
        &key_a,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

// ---------------------------------------------------------------------------------------
// One rule for every input: unknown fields refused, unknown references 404, limits that
// fit each other.

#[tokio::test]
async fn unknown_fields_and_references_get_one_answer_everywhere() {
    let state = state(false).await;
    let now = world_now();
    let (status, _) = call(
        &state,
        Method::POST,
        "/v1/users",
        json!({"users": [{"id": "one_rule"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let event = |extra: Value| {
        let mut e = json!({"key": "one_rule_e", "user": "one_rule", "at": now, "kind": "view",
            "video": "v0", "watch_ms": 5000});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        json!({"events": [e]})
    };
    // A typo in an event field is refused, not dropped.
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/events",
        event(json!({"complete": true})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("complete"),
        "{body}"
    );
    // Unknown users and videos in events are 404, like everywhere else.
    for (extra, what) in [
        (json!({"user": "nobody_here"}), "nobody_here"),
        (json!({"video": "no_such_video"}), "no_such_video"),
    ] {
        let (status, body) = call(&state, Method::POST, "/v1/events", event(extra)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(error_code(&body), "not_found");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(what),
            "{body}"
        );
    }
    // Revoking something that does not exist.
    for target in [
        json!({"video": "no_such_video"}),
        json!({"creator": "nobody_here"}),
    ] {
        let (status, body) = call(
            &state,
            Method::POST,
            "/v1/users/one_rule/consent/revocations",
            target,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    // A video by an unknown creator, or with an unknown person in a cameo.
    for (creator, cameos) in [
        ("nobody_here", json!([])),
        ("one_rule", json!(["nobody_here"])),
    ] {
        let video = json!({"videos": [{"id": "one_rule_v", "creator": creator, "created_at": now,
            "duration_s": 5.0, "embedding": axis(3), "cameos": cameos}]});
        let (status, body) = call(&state, Method::PUT, "/v1/videos", video).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    assert!(
        shared()
            .engine
            .video(&VideoId::new("one_rule_v").unwrap())
            .unwrap()
            .is_none()
    );
    // Empty preference text is not "no preferences": that is DELETE.
    for text in ["", "   \n\t "] {
        let (status, body) = call(
            &state,
            Method::PUT,
            "/v1/users/one_rule/preferences",
            json!({"text": text}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "text");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("DELETE"),
            "{body}"
        );
    }
    // Truncated JSON is malformed (400), whatever its first values are.
    for text in [
        "[1, 2,",
        r#"{"videos": [1, 2,"#,
        r#"{"events": [{"key": "k"}"#,
    ] {
        let (status, body) = send(&state, Method::PUT, "/v1/videos", text.to_owned(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}: {body}");
        assert_eq!(error_code(&body), "malformed_json");
    }
    // A cursor past any page this engine issues.
    for cursor in [
        "p18446744073709551615",
        "p18446744073709551616",
        "p99999999999",
    ] {
        let (status, body) = call(
            &state,
            Method::POST,
            "/v1/feed",
            json!({"user": "one_rule", "cursor": cursor}),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{cursor}: {body}");
        assert_eq!(body["error"]["field"], "cursor");
    }
}

/// The longest id the API takes.
fn long_id(prefix: &str, i: usize) -> String {
    let head = format!("{prefix}{i}_");
    format!(
        "{head}{}",
        "x".repeat(steerfeed::ids::MAX_ID_LEN - head.len())
    )
}

#[tokio::test]
async fn a_full_batch_with_the_longest_ids_fits_the_default_body_limit() {
    let state = state(false).await;
    let limit = SidecarConfig::default().server.max_body_bytes;
    assert_eq!(state.config().server.max_body_bytes, limit);
    let now = world_now();
    let (user, video) = (long_id("fit_user", 0), long_id("fit_video", 0));
    let (status, _) = call(
        &state,
        Method::POST,
        "/v1/users",
        json!({"users": [{"id": user}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [{"id": video,
        "creator": user, "created_at": now, "duration_s": 5.0, "embedding": axis(5)}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A full event batch, every id at its longest, is accepted.
    let events: Vec<Value> = (0..steerfeed_server::api::MAX_EVENT_BATCH)
        .map(|i| {
            json!({"key": long_id("fit_key", i), "user": user, "at": now, "kind": "view",
            "video": video, "watch_ms": 86_400_000u64, "completed": true})
        })
        .collect();
    let raw = json!({ "events": events }).to_string();
    assert!(
        raw.len() > 1 << 20,
        "the batch is bigger than the old 1 MiB limit"
    );
    let (status, body) = send(&state, Method::POST, "/v1/events", raw, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], steerfeed_server::api::MAX_EVENT_BATCH);

    // A full video batch at its largest (longest ids, most cameos and topics, the longest
    // caption, a full embedding of long decimals) fits too.
    let embedding: Vec<f32> = (0..384).map(|i| -0.012_345_678 - i as f32 * 1e-7).collect();
    let videos: Vec<Value> = (0..steerfeed_server::api::MAX_VIDEO_BATCH)
        .map(|i| json!({"id": long_id("fit_v", i), "creator": long_id("fit_c", i),
            "created_at": now, "duration_s": 3599.5, "caption": "é".repeat(1000),
            "topics": (0..steerfeed::video::MAX_TOPICS).map(|t| format!("topic_{t}_{}", "x".repeat(50))).collect::<Vec<_>>(),
            "cameos": (0..steerfeed::video::MAX_CAMEOS).map(|c| long_id("fit_p", c)).collect::<Vec<_>>(),
            "remix_of": long_id("fit_r", i), "embedding": embedding,
            "safety": ["mature", "violence", "sensitive", "weight_loss", "sad"], "audience": "followers"}))
        .collect();
    let raw = json!({ "videos": videos }).to_string();
    assert!(
        raw.len() <= limit,
        "{} bytes over the {limit}-byte limit",
        raw.len()
    );
}

// ---------------------------------------------------------------------------------------
// What the schema fuzz (scripts/fuzz_api.sh) found.

/// JSON Schema's `integer` takes `82.0` as well as `82`, and so does every integer field
/// of a request; a fraction is still refused.
#[tokio::test]
async fn integers_written_with_a_point_are_integers() {
    let state = state(false).await;
    let now = world_now();
    let user = adults()[3].clone();
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/feed",
        json!({"user": user, "limit": 5.0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(feed_ids(&body).len() <= 5);
    let uri = format!("/v1/users/{user}/parental");
    let (status, body) = call(
        &state,
        Method::PUT,
        &uri,
        json!({"scroll_cap": 290.0, "daily_limit_minutes": 1.44e3}),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/events",
        json!({"events": [{"key": "point_e", "user": user, "at": now, "kind": "view",
            "video": "v0", "watch_ms": 1811369.0}]}),
    )
    .await;
    assert_eq!(
        (status, &body["accepted"]),
        (StatusCode::OK, &json!(1)),
        "{body}"
    );
    for (uri, body, field) in [
        (
            "/v1/feed".to_owned(),
            json!({"user": user, "limit": 5.5}),
            "limit",
        ),
        (uri.clone(), json!({"scroll_cap": 2.5}), "scroll_cap"),
        (uri.clone(), json!({"scroll_cap": -1.0}), "scroll_cap"),
    ] {
        let method = if uri == "/v1/feed" {
            Method::POST
        } else {
            Method::PUT
        };
        let (status, answer) = call(&state, method, &uri, body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["field"], field);
    }
}

/// A user acting on themselves (follow, block, mute, and undoing them) is 422 naming the
/// relation, never a 5xx: the schema cannot say that two path ids differ, so the
/// operations' descriptions do. So are a video remixing itself and a remix event whose
/// new video is the remixed one.
#[tokio::test]
async fn a_user_acting_on_themselves_is_422_naming_the_relation() {
    let state = state(false).await;
    let now = world_now();
    let me = adults()[4].clone();
    for (relation, field) in [
        ("follows", "follow"),
        ("blocks", "block"),
        ("mutes", "mute"),
    ] {
        for method in [Method::PUT, Method::DELETE] {
            let uri = format!("/v1/users/{me}/{relation}/{me}");
            let (status, body) = call(&state, method.clone(), &uri, Value::Null).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{method} {uri}: {body}"
            );
            assert_eq!(error_code(&body), "invalid_input");
            assert_eq!(body["error"]["field"], field, "{method} {uri}");
        }
    }
    let (status, body) = call(
        &state,
        Method::PUT,
        "/v1/videos",
        json!({"videos": [{"id": "self_remix", "creator": me, "created_at": now,
            "duration_s": 5.0, "embedding": axis(4), "remix_of": "self_remix"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "remix_of");
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/events",
        json!({"events": [{"key": "self_remix_e", "user": me, "at": now, "kind": "remix",
            "video": "v0", "new_video": "v0"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "events[0].new_video");
    // An id that ends in a newline is not an id (the schema's pattern says so too).
    let (status, body) = call(
        &state,
        Method::PUT,
        &format!("/v1/users/{me}/blocks/x%0A"),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "bad_path");
}

/// The constraint lists as (list, topic) pairs, for comparing edits.
fn items(constraints: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for list in ["boost", "reduce", "exclude", "only"] {
        for x in constraints[list].as_array().into_iter().flatten() {
            out.push((
                list.to_owned(),
                x["topic"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn one_constraint_is_edited_without_retyping_the_rest() {
    let state = state(false).await;
    let (status, body) = call(
        &state,
        Method::POST,
        "/v1/users",
        json!({"users": [{"id": "pe_adult"}, {"id": "pe_teen", "age_band": "teen"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let uri = "/v1/users/pe_adult/preferences";
    let patch = |body: Value| call(&state, Method::PATCH, uri, body);

    let (status, body) = call(
        &state,
        Method::PUT,
        uri,
        json!({"text": "more cooking, no politics, less horror, newest first"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, before) = get(&state, uri).await;
    assert_eq!(status, StatusCode::OK);
    let pairs = |l: &str, t: &str| (l.to_owned(), t.to_owned());
    assert_eq!(
        items(&before["constraints"]),
        vec![
            pairs("boost", "cooking"),
            pairs("exclude", "politics"),
            pairs("reduce", "horror")
        ]
    );
    // Every item reads in plain words, and so does the whole.
    for list in ["boost", "reduce", "exclude"] {
        let d = before["constraints"][list][0]["description"]
            .as_str()
            .unwrap();
        assert!(d.contains(" until "), "{d}");
    }
    let summary: Vec<&str> = before["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        summary.iter().any(|s| s.starts_with("No politics")),
        "{summary:?}"
    );
    assert!(summary.contains(&"Newer videos first"), "{summary:?}");

    // Remove one item: the others stay.
    let (status, body) = patch(json!({"remove": [{"list": "exclude", "topic": "politics"}]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        items(&body["constraints"]),
        vec![pairs("boost", "cooking"), pairs("reduce", "horror")]
    );
    assert_eq!(body["constraints"]["freshness"], "newer");

    // Change one item's strength and give it an expiry of its own.
    let until = Timestamp::from_second(Timestamp::now().as_second() + 48 * 3600)
        .unwrap()
        .to_string();
    let (status, body) = patch(json!({"change": [
        {"list": "boost", "topic": "cooking", "strength": 2.0, "expires_at": until}
    ]}))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cooking = &body["constraints"]["boost"][0];
    assert_eq!(cooking["strength"], 2.0);
    assert_eq!(cooking["expires_at"].as_str().unwrap(), until);
    assert!(
        cooking["description"]
            .as_str()
            .unwrap()
            .starts_with("More cooking (strongly) until"),
        "{cooking}"
    );

    // Add from text: a newer statement about a topic replaces the opposite one.
    let (status, body) = patch(json!({"add": "no cooking, more jazz piano"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let now_items = items(&body["constraints"]);
    assert!(
        now_items.contains(&pairs("exclude", "cooking")),
        "{now_items:?}"
    );
    assert!(
        !now_items.contains(&pairs("boost", "cooking")),
        "{now_items:?}"
    );
    assert!(
        now_items.contains(&pairs("reduce", "horror")),
        "{now_items:?}"
    );
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .ends_with("/ no cooking, more jazz piano")
    );

    // Bad edits change nothing: an address naming no item, a past expiry, a slot that is
    // not set, an empty edit, an unknown field.
    let (_, kept) = get(&state, uri).await;
    // Addresses that name no item are 404, whatever else the edit holds.
    for missing in [
        json!({"remove": [{"list": "boost", "topic": "gaming"}]}),
        json!({"remove": [{"list": "boost"}]}),
        json!({"remove": [{"list": "reduce", "topic": "horror"}, {"list": "only", "topic": "pets"}]}),
        json!({"remove": [{"list": "max_duration_s"}]}),
        json!({"change": [{"list": "boost", "topic": "gaming", "strength": 2.0}]}),
    ] {
        let (status, body) = patch(missing.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
        error_code(&body);
        let (_, now) = get(&state, uri).await;
        assert_eq!(now, kept, "{missing} changed the preferences");
    }
    // An empty edit answers the preferences as they are.
    let (status, body) = patch(json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, kept);
    for bad in [
        json!({"change": [{"list": "reduce", "topic": "horror", "expires_at": "2020-01-01T00:00:00Z"}]}),
        json!({"change": [{"list": "reduce", "topic": "horror", "strength": 9.0}]}),
        json!({"change": [{"list": "exclude", "topic": "cooking", "strength": 2.0}]}),
        json!({"add": "   "}),
        json!({"remove": [], "colour": "red"}),
        json!({"change": [{"list": "reduce", "topic": "horror", "strength": 1.5, "colour": 1}]}),
        json!({"remove": [{"list": "sideways", "topic": "horror"}]}),
    ] {
        let (status, body) = patch(bad.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        error_code(&body);
        let (_, now) = get(&state, uri).await;
        assert_eq!(now, kept, "{bad} changed the preferences");
    }

    // Two items on one topic: the topic alone is ambiguous, the phrase names one.
    let (status, body) = patch(json!({"add": "more dogs, more cats"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = patch(json!({"remove": [{"list": "boost", "topic": "pets"}]})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("phrase")
    );
    let (status, body) =
        patch(json!({"remove": [{"list": "boost", "topic": "pets", "phrase": "Dogs"}]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let boosts: Vec<&str> = body["constraints"]["boost"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["phrase"].as_str())
        .collect();
    assert!(
        boosts.contains(&"cats") && !boosts.contains(&"dogs"),
        "{boosts:?}"
    );

    // A slot is removed by its name.
    let (status, body) = patch(json!({"remove": [{"list": "freshness"}]})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["constraints"].get("freshness").is_none());

    // An edit of a teen's constraints goes through the teen policy and the safety net.
    let (status, body) = call(
        &state,
        Method::PATCH,
        "/v1/users/pe_teen/preferences",
        json!({"add": "more cooking and some betting tips"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(items(&body["constraints"]), vec![pairs("boost", "cooking")]);
    assert_eq!(body["constraints"]["rejected"][0]["label"], "gambling");

    // Unknown user.
    let (status, _) = call(
        &state,
        Method::PATCH,
        "/v1/users/nobody_at_all/preferences",
        json!({"add": "more cooking"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A raw request with any headers; answers the status, the headers and the body as JSON
/// (`Null` when it is not JSON).
async fn raw(
    state: &AppState,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app(state.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_console_session_signs_in_with_an_admin_key_and_writes_only_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, feed) = ("console_admin_0123456789", "console_feed_0123456789");
    let file = key_file(dir.path(), &format!("admin {admin}\nfeed {feed}\n"));
    let state = state_with_key_file(file.clone(), &[]).await;

    // The page and its assets, with a policy that loads nothing from elsewhere.
    for (path, kind) in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
    ] {
        let (status, headers, _) = raw(&state, Method::GET, path, &[], None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    }

    let sign_in = |key: &str| {
        let state = state.clone();
        let body = json!({ "key": key });
        async move { raw(&state, Method::POST, "/console/session", &[], Some(body)).await }
    };
    let (status, _, body) = sign_in("wrong_key_0123456789").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let (status, _, body) = sign_in(feed).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let (status, headers, body) = sign_in(admin).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains(admin), "the key is never in the cookie");
    let session = cookie.split(';').next().unwrap().to_owned();
    let csrf = body["csrf"].as_str().unwrap().to_owned();
    assert_eq!(csrf.len(), 64);
    assert!(!session.contains(&csrf));

    // The cookie alone reads; a write needs the token too, and a wrong one changes nothing.
    let user = adults()[7].to_string();
    let prefs = format!("/v1/users/{user}/preferences");
    let c = [("cookie", session.as_str())];
    let (status, _, body) = raw(&state, Method::GET, "/v1/stats", &c, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = raw(&state, Method::GET, "/console/session", &c, None).await;
    assert_eq!(
        (status, body["csrf"].as_str()),
        (StatusCode::OK, Some(csrf.as_str()))
    );
    let text = json!({"text": "more cooking"});
    for token in [None, Some("0".repeat(64)), Some(csrf[..63].to_owned())] {
        let mut h = c.to_vec();
        if let Some(t) = token.as_deref() {
            h.push(("x-csrf-token", t));
        }
        let (status, _, body) = raw(&state, Method::PUT, &prefs, &h, Some(text.clone())).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::FORBIDDEN, "csrf"),
            "{token:?}"
        );
    }
    let (status, _) = get(&state, &prefs).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "keyed state, no key");
    let (status, _) = with_key(&state, Method::GET, &prefs, &Value::Null, admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    let h = [
        ("cookie", session.as_str()),
        ("x-csrf-token", csrf.as_str()),
    ];
    let (status, _, body) = raw(&state, Method::PUT, &prefs, &h, Some(text)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Another session's token does not do for this one.
    let (_, headers2, body2) = sign_in(admin).await;
    let other = body2["csrf"].as_str().unwrap().to_owned();
    assert_ne!(other, csrf);
    let h = [
        ("cookie", session.as_str()),
        ("x-csrf-token", other.as_str()),
    ];
    let (status, _, _) = raw(&state, Method::DELETE, &prefs, &h, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Signing out ends this session and not the other.
    let h = [
        ("cookie", session.as_str()),
        ("x-csrf-token", csrf.as_str()),
    ];
    let (status, _, _) = raw(&state, Method::DELETE, "/console/session", &h, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = raw(&state, Method::GET, "/v1/stats", &c, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let second = headers2[header::SET_COOKIE].to_str().unwrap();
    let second = second.split(';').next().unwrap();
    let (status, _, _) = raw(
        &state,
        Method::GET,
        "/v1/stats",
        &[("cookie", second)],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // A key no longer in force ends its sessions, for good: putting it back does not
    // bring them back.
    key_file(dir.path(), &format!("feed {feed}\n"));
    state.reload_keys().unwrap();
    let stats = |cookie: &str| {
        let state = state.clone();
        let cookie = cookie.to_owned();
        async move {
            raw(
                &state,
                Method::GET,
                "/v1/stats",
                &[("cookie", cookie.as_str())],
                None,
            )
            .await
            .0
        }
    };
    assert_eq!(stats(second).await, StatusCode::UNAUTHORIZED);
    key_file(dir.path(), &format!("admin {admin}\nfeed {feed}\n"));
    state.reload_keys().unwrap();
    assert_eq!(stats(second).await, StatusCode::UNAUTHORIZED);
    let (status, _) = with_key(&state, Method::GET, "/v1/stats", &Value::Null, admin).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn what_another_sites_page_sends_is_refused() {
    let keyed = state(true).await;
    let key = format!("Bearer {}", KEY_CHAR.repeat(16));
    let stats = |state: AppState, headers: Vec<(&'static str, String)>| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, body) = raw(&state, Method::GET, "/v1/stats", &h, None).await;
        let code = if status.is_success() {
            String::new()
        } else {
            error_code(&body).to_owned()
        };
        (status, code)
    };
    let auth = ("authorization", key.clone());
    let host = ("host", "127.0.0.1:8080".to_owned());
    // A key and no browser headers, or the server's own origin: served.
    assert_eq!(
        stats(keyed.clone(), vec![auth.clone()]).await.0,
        StatusCode::OK
    );
    let same = vec![
        auth.clone(),
        host.clone(),
        ("origin", "http://127.0.0.1:8080".to_owned()),
        ("sec-fetch-site", "same-origin".to_owned()),
    ];
    assert_eq!(stats(keyed.clone(), same).await.0, StatusCode::OK);
    // Another origin (another port of the same host too), an opaque one, or a browser
    // saying the request is cross-site: refused, key or not.
    for bad in [
        vec![("origin", "http://evil.example".to_owned())],
        vec![("origin", "http://127.0.0.1:9999".to_owned())],
        vec![("origin", "null".to_owned())],
        vec![("sec-fetch-site", "cross-site".to_owned())],
        vec![("sec-fetch-site", "same-site".to_owned())],
    ] {
        let mut h = vec![auth.clone(), host.clone()];
        h.extend(bad.clone());
        assert_eq!(
            stats(keyed.clone(), h).await,
            (StatusCode::FORBIDDEN, "cross_origin".to_owned()),
            "{bad:?}"
        );
    }
    // Without keys, the host must be a loopback name: a rebound DNS name is refused.
    let open = state(false).await;
    for (h, want) in [
        ("127.0.0.1:8080", StatusCode::OK),
        ("localhost:8080", StatusCode::OK),
        ("[::1]:8080", StatusCode::OK),
        ("evil.example:8080", StatusCode::FORBIDDEN),
    ] {
        assert_eq!(
            stats(open.clone(), vec![("host", h.to_owned())]).await.0,
            want,
            "{h}"
        );
    }
    assert_eq!(
        stats(
            keyed,
            vec![auth, ("host", "steerfeed.internal:8080".to_owned())]
        )
        .await
        .0,
        StatusCode::OK,
        "with keys, any host name"
    );
}

#[tokio::test]
async fn the_operator_routes_answer_and_a_preview_writes_nothing() {
    let state = state(false).await;
    let now = world_now();
    let user = adults()[9].to_string();
    let before = get(&state, &format!("/v1/users/{user}")).await;
    assert_eq!(before.0, StatusCode::OK, "{}", before.1);
    assert_eq!(before.1["user"]["id"], user.as_str());

    let body = json!({"limit": 10});
    let (status, p1) = call(
        &state,
        Method::POST,
        &format!("/v1/users/{user}/preview"),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{p1}");
    let (_, p2) = call(
        &state,
        Method::POST,
        &format!("/v1/users/{user}/preview"),
        body,
    )
    .await;
    assert_eq!(feed_ids(&p1["page"]), feed_ids(&p2["page"]));
    assert!(!feed_ids(&p1["page"]).is_empty());
    assert_eq!(
        get(&state, &format!("/v1/users/{user}")).await.1,
        before.1,
        "a preview wrote"
    );
    // Served, an item is seen: its verdict says so.
    let (status, served) = call(
        &state,
        Method::POST,
        "/v1/feed",
        json!({"user": user, "limit": 10, "now": now.to_string()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let first = feed_ids(&served)[0].clone();
    let (status, v) = get(
        &state,
        &format!("/v1/users/{user}/explain/{first}?limit=10"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["servable"], false, "{v}");
    assert!(
        v["removed_by"].as_array().unwrap().contains(&json!("seen")),
        "{v}"
    );
    let (status, v) = get(&state, &format!("/v1/videos/{first}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["video"].get("embedding").is_none());
    let (status, v) = call(
        &state,
        Method::POST,
        "/v1/steering/parse",
        json!({"text": "show me sexy videos", "age_band": "teen"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        !v["constraints"]["rejected"].as_array().unwrap().is_empty(),
        "{v}"
    );
    let (status, v) = get(&state, "/v1/stats?window_s=600&points=5").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["videos"].as_u64().unwrap() > 0 && v["people"].as_u64().unwrap() > 0);

    // Bad queries and unknown ids.
    for uri in [
        "/v1/stats?points=0".to_owned(),
        "/v1/stats?points=361".to_owned(),
        "/v1/stats?window_s=60&window_s=60".to_owned(),
        "/v1/stats?since=1".to_owned(),
        format!("/v1/users/{user}/explain/{first}?limit=101"),
    ] {
        let (status, body) = get(&state, &uri).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {body}");
    }
    for uri in [
        "/v1/users/nobody_here".to_owned(),
        format!("/v1/users/{user}/explain/no_such_video"),
        "/v1/videos/no_such_video".to_owned(),
    ] {
        assert_eq!(get(&state, &uri).await.0, StatusCode::NOT_FOUND, "{uri}");
    }
    let (status, _) = call(
        &state,
        Method::POST,
        &format!("/v1/users/{user}/preview"),
        json!({"text": "   "}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn too_many_wrong_keys_lock_the_console_sign_in_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let (admin, feed) = ("lockout_admin_0123456789", "lockout_feed_0123456789");
    let file = key_file(dir.path(), &format!("admin {admin}\nfeed {feed}\n"));
    let state = state_with_key_file(file, &[]).await;
    let sign_in = |key: &str| {
        let state = state.clone();
        let body = json!({ "key": key });
        async move { raw(&state, Method::POST, "/console/session", &[], Some(body)).await }
    };
    // A right key resets the count: nine wrong, one right, nine wrong again, and the
    // right key still signs in.
    for round in 0..2 {
        for _ in 0..steerfeed_server::console::SIGN_IN_FAILURES - 1 {
            assert_eq!(
                sign_in("wrong_key_0123456789").await.0,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(sign_in(admin).await.0, StatusCode::OK, "round {round}");
    }
    // A narrower key counts as a failure too; the tenth locks sign-in out, the right
    // key included, with a retry-after within the window.
    for _ in 0..steerfeed_server::console::SIGN_IN_FAILURES - 1 {
        sign_in("wrong_key_0123456789").await;
    }
    assert_eq!(sign_in(feed).await.0, StatusCode::FORBIDDEN);
    let (status, headers, body) = sign_in(admin).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    let wait: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // The API itself is not locked: a bearer key still works.
    let (status, _) = with_key(&state, Method::GET, "/v1/stats", &Value::Null, admin).await;
    assert_eq!(status, StatusCode::OK);
}

/// A model file of `trees` full trees of depth 6 over the ranker's schema, beside the
/// hand-set heads with value scales and a calibration map on complete_view.
fn ranker_model(trees: usize) -> String {
    String::from_utf8(ranker_model_file(trees).to_bytes().unwrap()).unwrap()
}

fn ranker_model_file(trees: usize) -> steerfeed::model::RankModel {
    use steerfeed::model::RankModel;
    use steerfeed::rank::scorers::blend::BlendTree;
    use steerfeed::rank::scorers::{
        BLEND_FEATURES, BlendRankerFile, Calibration, HeadModels, ScorerConfig,
    };
    // Node i splits to 2i+1 and 2i+2 down to the leaves at 63..127.
    let n = 127usize;
    let tree = BlendTree {
        feature: (0..n)
            .map(|i| if i < 63 { (i % 32) as i32 } else { -1 })
            .collect(),
        threshold: (0..n)
            .map(|i| if i < 63 { 0.123_456_79 * i as f32 } else { 0.0 })
            .collect(),
        left: (0..n)
            .map(|i| if i < 63 { 2 * i as u32 + 1 } else { 0 })
            .collect(),
        right: (0..n)
            .map(|i| if i < 63 { 2 * i as u32 + 2 } else { 0 })
            .collect(),
        value: (0..n)
            .map(|i| {
                if i < 63 {
                    0.0
                } else {
                    -0.012_345_678 * i as f32
                }
            })
            .collect(),
    };
    let ranker = BlendRankerFile {
        features: BLEND_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
        depth: 100,
        base_score: 0.5,
        shift: 0.1,
        scale: 0.9,
        trees: vec![tree; trees],
    };
    let mut heads = HeadModels::from_config(&ScorerConfig::default());
    heads.value_scale = [20.0, 35.0, 1.0, 11.0, 13.0, 7.0, 6.0, 3.3];
    heads.calibration[7] =
        Some(Calibration::new(&[(-4.0, 0.01), (-1.0, 0.1), (1.0, 0.6), (3.0, 0.9)]).unwrap());
    RankModel::from_heads(format!("m-{trees}"), &heads, Value::Null).with_ranker(ranker)
}

#[tokio::test]
async fn a_model_with_hundreds_of_trees_goes_in_force_and_an_oversized_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), false);
    let engine = tokio::task::spawn_blocking({
        let c = cfg.engine.clone();
        move || Engine::open(c).unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap();
    let state = AppState::new(cfg);
    state.set_engine(Arc::new(engine));
    // 300 full trees: three times what `steerfeed train --ranker-rounds 100` writes.
    let big = ranker_model(300);
    assert!(big.len() > 2 << 20, "{} bytes", big.len());
    let (status, body) = call(&state, Method::PUT, "/v1/model", json!({"file": big})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], "m-300");
    let (_, body) = get(&state, "/v1/model").await;
    assert_eq!(body["id"], "m-300");
    // Over the limit: refused with the reason, and the model in force stays.
    let huge = ranker_model(1_200);
    assert!(huge.len() > 8 << 20);
    let (status, body) = call(&state, Method::PUT, "/v1/model", json!({"file": huge})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most")),
        "{body}"
    );
    let (_, body) = get(&state, "/v1/model").await;
    assert_eq!(body["id"], "m-300");
    // A calibration map that falls, in a well-formed file: refused with the field.
    let mut falling = ranker_model_file(1);
    falling
        .calibration
        .insert("like".into(), vec![[0.0, 0.5], [1.0, 0.4]]);
    let file = String::from_utf8(falling.to_bytes().unwrap()).unwrap();
    let (status, body) = call(&state, Method::PUT, "/v1/model", json!({"file": file})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("model.calibration"), "{body}");
    let (_, body) = get(&state, "/v1/model").await;
    assert_eq!(body["id"], "m-300");
}

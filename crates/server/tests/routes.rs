//! Route tests of the sidecar, driven with `oneshot` (no socket).
//!
//! 1. `/healthz` answers 200 at once.
//! 2. `/readyz` answers 503 in the error shape until the engine is loaded, then 200.
//! 3. Unknown routes are 404.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use steerfeed::{Config, Engine};
use steerfeed_server::{AppState, app};
use tower::ServiceExt;

async fn get(state: &AppState, uri: &str) -> (StatusCode, serde_json::Value) {
    let resp = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[tokio::test]
async fn healthz_is_ok_before_the_engine_loads() {
    let state = AppState::new(Config::default());
    let (status, body) = get(&state, "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_waits_for_the_engine() {
    let state = AppState::new(Config::default());
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
    let state = AppState::new(Config::default());
    let (status, _) = get(&state, "/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

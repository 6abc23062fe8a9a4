#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `GET /openapi.json`: the document is served without a key, parses as OpenAPI 3, and
//! describes exactly the `/v1` routes the router serves (checked three ways: against
//! [`api::ROUTES`], by sending each documented operation to the router, and against the
//! `.route(...)` calls in `api.rs`), with request and response schemas, the error shape
//! and the bearer scheme. No engine is needed: unloaded, every `/v1` route answers.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use steerfeed::Config;
use steerfeed_server::{AppState, api, app};
use tower::ServiceExt;

const KEY: &str = "kkkkkkkkkkkkkkkk";

async fn fetch(state: &AppState, method: Method, uri: &str, key: bool) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    }
    let req = req.body(Body::empty()).unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A keyed server without an engine: `/v1` answers 401 without a key, so the document
/// being served proves it needs none.
fn keyed_state() -> AppState {
    let mut c = Config::default();
    c.server.api_keys = vec![KEY.to_owned()];
    AppState::new(c)
}

async fn document() -> Value {
    let (status, doc) = fetch(&keyed_state(), Method::GET, "/openapi.json", false).await;
    assert_eq!(status, StatusCode::OK);
    doc
}

/// `(method, path)` of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            if item.get(method).is_some() {
                ops.insert((method.to_owned(), path.clone()));
            }
        }
    }
    ops
}

fn routes() -> BTreeSet<(String, String)> {
    api::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect()
}

/// Follows a `$ref` into `components.schemas`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

#[tokio::test]
async fn the_document_is_openapi_3_and_lists_every_v1_route() {
    let doc = document().await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(operations(&doc), routes());
    assert!(
        !api::ROUTES.is_empty() && api::ROUTES.iter().all(|(_, p)| p.starts_with("/v1/")),
        "ROUTES lists the /v1 routes with their full paths"
    );
}

#[tokio::test]
async fn every_documented_operation_is_served_and_every_other_method_is_not() {
    let doc = document().await;
    let ops = operations(&doc);
    let state = keyed_state();
    let paths: BTreeSet<&String> = ops.iter().map(|(_, p)| p).collect();
    for path in paths {
        let uri = path.replace('{', "x").replace('}', "");
        for method in [Method::GET, Method::PUT, Method::POST, Method::DELETE] {
            let documented = ops.contains(&(method.as_str().to_lowercase(), path.clone()));
            let (status, body) = fetch(&state, method.clone(), &uri, true).await;
            if documented {
                // A served route gets past routing: its body check (400) or the engine
                // not being loaded (503), never the fallback's 404 or a 405.
                assert!(
                    status == StatusCode::BAD_REQUEST || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{method} {uri}: {status} {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri} is served but not documented: {body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_router_source_declares_the_same_routes() {
    // Every `.route("path", ...)` in `api::routes`, with the methods chained on it.
    let src = include_str!("../src/api.rs");
    let start = src.find("pub fn routes(").unwrap();
    let end = start + src[start..].find("\n}\n").unwrap();
    let body = &src[start..end];
    let mut declared = BTreeSet::new();
    for chunk in body.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).unwrap();
        // The method router is everything up to the call's closing parenthesis.
        let mut depth = 1;
        let mut close = chunk.len();
        for (i, ch) in chunk.char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let methods = &chunk[..close];
        for m in ["get", "put", "post", "delete", "patch"] {
            let leading = methods
                .split_once(',')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{m}(")));
            if leading || methods.contains(&format!(".{m}(")) {
                declared.insert((m.to_owned(), format!("/v1{path}")));
            }
        }
    }
    assert!(declared.len() >= 10, "parsed {declared:?}");
    assert_eq!(declared, routes());
}

#[tokio::test]
async fn schemas_error_shape_and_bearer_scheme_are_described() {
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];

    // The feed request requires the user; limit and cursor are optional.
    let feed = &doc["paths"]["/v1/feed"]["post"];
    let req = resolve(
        &doc,
        &feed["requestBody"]["content"]["application/json"]["schema"],
    );
    let required: Vec<&str> = req["required"]
        .as_array()
        .expect("FeedRequest.required")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"user"), "{req}");
    assert!(!required.contains(&"limit") && !required.contains(&"cursor"));
    assert!(schemas["FeedRequest"].is_object(), "named FeedRequest");
    let ok = resolve(
        &doc,
        &feed["responses"]["200"]["content"]["application/json"]["schema"],
    );
    assert!(ok["properties"]["items"].is_object(), "FeedResponse: {ok}");

    // Every operation with a body names its schema, and every operation lists the
    // error statuses in the one error shape, 429 among them, behind the bearer scheme.
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        if let Some(content) = op.get("requestBody") {
            let s = &content["content"]["application/json"]["schema"];
            assert!(resolve(&doc, s).is_object(), "{method} {path}: {s}");
        }
        for status in ["400", "401", "404", "413", "422", "429", "500", "503"] {
            let r = &op["responses"][status]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(
                r.as_str(),
                Some("#/components/schemas/ErrorBody"),
                "{method} {path} {status}"
            );
        }
        assert!(
            op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.starts_with('2')),
            "{method} {path} has a success answer"
        );
        assert_eq!(op["security"][0]["bearer"], Value::Array(vec![]));
    }
    let error = &schemas["ErrorBody"];
    assert_eq!(error["required"][0], "error");
    let detail = resolve(&doc, &error["properties"]["error"]);
    let required = detail["required"].as_array().unwrap();
    assert!(required.contains(&Value::from("code")) && required.contains(&Value::from("message")));
    assert!(detail["properties"]["field"].is_object());

    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");

    // Types from the core crate come with their own schemas (an event's kind is a tag).
    assert!(schemas["Video"]["properties"]["created_at"].is_object());
    assert!(schemas["Event"].is_object() && schemas["EventKind"].is_object());
}

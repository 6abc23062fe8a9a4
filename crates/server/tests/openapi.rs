#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `GET /openapi.json`: the document is served without a key, parses as OpenAPI 3, and
//! describes exactly the `/v1` routes the router serves (checked three ways: against
//! [`api::ROUTES`], by sending each documented operation to the router, and against the
//! `.route(...)` calls in `api.rs`), with request and response schemas, the error shape,
//! the bearer scheme and each operation's scope (the table's). No engine is needed:
//! unloaded, every `/v1` route answers.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use steerfeed_server::{AppState, SidecarConfig, api, app};
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
    let mut c = SidecarConfig::default();
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
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
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
        !api::ROUTES.is_empty() && api::ROUTES.iter().all(|(_, p, _)| p.starts_with("/v1/")),
        "ROUTES lists the /v1 routes with their full paths"
    );
}

/// The routes that take a query string are exactly those whose operation declares a
/// query parameter: every other route refuses a query (`api::QUERY_ROUTES`).
#[tokio::test]
async fn the_routes_that_read_a_query_are_those_that_document_one() {
    let doc = document().await;
    let mut documented = BTreeSet::new();
    for (method, path) in operations(&doc) {
        let params = &doc["paths"][&path][&method]["parameters"];
        if params
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"))
        {
            documented.insert((method, path));
        }
    }
    let listed: BTreeSet<(String, String)> = api::QUERY_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed, documented);
}

/// Every `$ref` string anywhere under `v`.
fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => {
                        out.insert(r.clone());
                    }
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_reference_in_the_document_resolves() {
    let doc = document().await;
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    assert!(all.len() > 10, "{all:?}");
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("a reference outside the schemas: {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} does not resolve"
        );
    }
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
                // A served route gets past routing: its body check (400), its query
                // check (422: an erasure without `videos`) or the engine not being loaded
                // (503), never the fallback's 404 or a 405.
                assert!(
                    status == StatusCode::BAD_REQUEST
                        || status == StatusCode::UNPROCESSABLE_ENTITY
                        || status == StatusCode::SERVICE_UNAVAILABLE,
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
        for status in [
            "400", "401", "403", "404", "413", "422", "429", "500", "503",
        ] {
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
        assert_eq!(op["security"].as_array().map(Vec::len), Some(1));
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
    let says = bearer["description"].as_str().unwrap();
    assert!(
        says.contains("api_keys_file") && says.contains("403"),
        "{says}"
    );

    // Types from the core crate come with their own schemas (an event is one object per
    // kind).
    assert!(schemas["Video"]["allOf"][0]["properties"]["created_at"].is_object());
    assert!(schemas["Event"]["oneOf"].is_array());
}

#[tokio::test]
async fn every_operation_needs_the_scope_the_table_gives_it() {
    let doc = document().await;
    let mut checked = 0;
    for (method, path, scope) in api::ROUTES {
        let op = &doc["paths"][*path][*method];
        assert_eq!(
            op["security"],
            json!([{ "bearer": [scope.as_str()] }]),
            "{method} {path}"
        );
        checked += 1;
    }
    assert_eq!(checked, operations(&doc).len());
    // The three feed operations say so, so do the writes and the two admin ones, and the
    // description names every scope.
    let feed = |m: &str, p: &str| doc["paths"][p][m]["security"][0]["bearer"][0].clone();
    assert_eq!(feed("post", "/v1/feed"), "feed");
    assert_eq!(feed("get", "/v1/users/{id}/profile"), "feed");
    assert_eq!(feed("get", "/v1/users/{id}/preferences"), "feed");
    assert_eq!(feed("post", "/v1/events"), "write");
    assert_eq!(feed("delete", "/v1/users/{id}"), "admin");
    assert_eq!(feed("get", "/v1/users/{id}/export"), "admin");
    let info = doc["info"]["description"].as_str().unwrap();
    for s in steerfeed_server::keys::Scope::ALL {
        assert!(info.contains(&format!("`{s}`")), "{info}");
    }
    assert!(info.contains("403"), "{info}");
}

/// The request body schema of an operation, resolved.
fn body<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    resolve(
        doc,
        &doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"],
    )
}

/// Every object schema reachable from `schema` (through `$ref`, `allOf`, `anyOf`,
/// `oneOf`, `items` and `properties`), each once.
fn objects<'a>(doc: &'a Value, schema: &'a Value, seen: &mut Vec<&'a Value>) {
    let schema = resolve(doc, schema);
    if seen.iter().any(|s| std::ptr::eq(*s, schema)) {
        return;
    }
    seen.push(schema);
    for key in ["allOf", "anyOf", "oneOf"] {
        for s in schema[key].as_array().into_iter().flatten() {
            objects(doc, s, seen);
        }
    }
    if schema["items"].is_object() {
        objects(doc, &schema["items"], seen);
    }
    for s in schema["properties"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        objects(doc, s, seen);
    }
}

#[tokio::test]
async fn ids_and_path_ids_state_the_servers_rules() {
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];
    let pattern = steerfeed::openapi::id_pattern();
    for id in ["UserId", "VideoId", "SessionId", "EventKey"] {
        let s = &schemas[id];
        assert_eq!(s["type"], "string", "{id}");
        assert_eq!(s["minLength"], 1, "{id}");
        assert_eq!(s["maxLength"], steerfeed::ids::MAX_ID_LEN, "{id}");
        assert_eq!(s["pattern"], pattern.as_str(), "{id}");
    }
    let topic = &schemas["TopicId"];
    assert_eq!(
        (&topic["maxLength"], &topic["pattern"]),
        (
            &Value::from(64),
            &Value::from(r"^[a-z][a-z0-9_]*(?![\s\S])")
        )
    );
    // Every path parameter is a path id: the id's rules, and not `.` or `..`.
    let path_id = &schemas["PathId"];
    assert_eq!(path_id["maxLength"], steerfeed::ids::MAX_ID_LEN);
    assert!(
        path_id["pattern"]
            .as_str()
            .unwrap()
            .starts_with(r"^(?!\.\.?(?![\s\S]))")
    );
    let mut params = 0;
    for (method, path) in operations(&doc) {
        for p in doc["paths"][&path][&method]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if p["in"] == "query" && path == "/v1/export" {
                // What a bulk export lists: optional, and checked by the server.
                assert!(["kinds", "embeddings"].contains(&p["name"].as_str().unwrap()));
                assert_ne!(p["required"], true);
                continue;
            }
            if p["in"] == "query"
                && ["/v1/stats", "/v1/users/{id}/explain/{video}"].contains(&path.as_str())
            {
                // The operator's reads: optional bounded integers, checked by the server.
                let name = p["name"].as_str().unwrap();
                assert!(
                    ["window_s", "points", "limit"].contains(&name),
                    "{path} {name}"
                );
                assert_ne!(p["required"], true);
                assert_eq!(p["schema"]["minimum"], 1, "{path} {name}");
                assert!(p["schema"]["maximum"].is_number(), "{path} {name}");
                continue;
            }
            if p["in"] == "query" && path.starts_with("/v1/model") {
                // Which rank profile's model: optional, its name checked by the server.
                assert_eq!(p["name"], "profile", "{method} {path}");
                assert_ne!(p["required"], true);
                assert_eq!(p["schema"]["type"], "string", "{method} {path}");
                continue;
            }
            if p["in"] == "query" {
                // The other query parameter: an erasure's choice for the person's videos.
                assert_eq!(
                    (method.as_str(), path.as_str()),
                    ("delete", "/v1/users/{id}")
                );
                assert_eq!(p["name"], "videos");
                assert_eq!(p["required"], true);
                assert_eq!(
                    p["schema"]["$ref"], "#/components/schemas/OwnVideos",
                    "{method} {path}"
                );
                continue;
            }
            assert_eq!(p["in"], "path", "{method} {path}");
            assert_eq!(
                p["schema"]["$ref"], "#/components/schemas/PathId",
                "{method} {path}"
            );
            params += 1;
        }
    }
    assert!(params >= 20, "{params} path parameters");
}

#[tokio::test]
async fn bodies_state_limits_batches_and_closed_objects() {
    let doc = document().await;
    let schemas = &doc["components"]["schemas"];

    // Every object a request body can hold refuses unknown properties.
    for (method, path) in operations(&doc) {
        if doc["paths"][&path][&method]["requestBody"].is_null() {
            continue;
        }
        let mut seen = Vec::new();
        objects(&doc, body(&doc, &method, &path), &mut seen);
        for s in seen {
            if s["properties"].is_object() && s["type"] == "object" {
                assert_eq!(
                    s["additionalProperties"],
                    Value::Bool(false),
                    "{method} {path}: {s}"
                );
            }
        }
    }

    // Batch limits.
    for (method, path, field, limit) in [
        ("post", "/v1/users", "users", api::MAX_USER_BATCH),
        ("put", "/v1/videos", "videos", api::MAX_VIDEO_BATCH),
        ("post", "/v1/events", "events", api::MAX_EVENT_BATCH),
        (
            "post",
            "/v1/import",
            "records",
            steerfeed_server::bulk::MAX_IMPORT_BATCH,
        ),
        (
            "put",
            "/v1/users/{id}/consent",
            "approved",
            api::MAX_APPROVED,
        ),
    ] {
        let b = body(&doc, method, path);
        assert_eq!(b["properties"][field]["maxItems"], limit, "{path} {field}");
    }
    assert_eq!(
        api::MAX_APPROVED,
        steerfeed::store::StoreOptions::default().max_approved
    );

    // The feed: limit 1..=100 (default 20), the cursor's bounds.
    let feed = body(&doc, "post", "/v1/feed");
    let limit = &feed["properties"]["limit"];
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&Value::from(1), &Value::from(100))
    );
    assert_eq!(limit["default"], 20);
    let cursor = &schemas["Cursor"];
    assert_eq!(cursor["maxLength"], steerfeed::feed::MAX_CURSOR_LEN);
    assert_eq!(cursor["minLength"], 1);

    // A revocation is exactly one of video and creator.
    let revocation = body(&doc, "post", "/v1/users/{id}/consent/revocations");
    let one_of = revocation["oneOf"].as_array().expect("oneOf");
    let required: Vec<&Value> = one_of.iter().map(|o| &o["required"]).collect();
    assert_eq!(required, [&json!(["video"]), &json!(["creator"])]);
    assert!(one_of.iter().all(|o| o["additionalProperties"] == false));

    // Parental limits start at 1.
    let parental = body(&doc, "put", "/v1/users/{id}/parental");
    for (field, max) in [
        ("scroll_cap", steerfeed::ParentalControls::MAX_SCROLL_CAP),
        (
            "daily_limit_minutes",
            steerfeed::ParentalControls::MAX_DAILY_LIMIT_MINUTES,
        ),
    ] {
        let f = &parental["properties"][field];
        assert_eq!(
            (&f["minimum"], &f["maximum"]),
            (&json!(1), &json!(max)),
            "{field}"
        );
    }

    // Videos: the duration's range, the caption's and the lists' bounds, and an
    // embedding or a caption.
    let video = &schemas["Video"];
    let props = &video["allOf"][0]["properties"];
    assert_eq!(props["duration_s"]["maximum"], 3600.0);
    assert!(props["duration_s"]["minimum"].as_f64().unwrap() > 0.0);
    assert_eq!(
        props["caption"]["maxLength"],
        steerfeed::video::MAX_CAPTION_LEN
    );
    assert_eq!(props["topics"]["maxItems"], steerfeed::video::MAX_TOPICS);
    assert_eq!(props["cameos"]["maxItems"], steerfeed::video::MAX_CAMEOS);
    let either: Vec<&Value> = video["allOf"][1]["anyOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["required"])
        .collect();
    assert_eq!(either, [&json!(["embedding"]), &json!(["caption"])]);

    // Embeddings: the engine's dimension, f32 range, not all zero.
    let embedding = &schemas["Embedding"];
    assert_eq!(embedding["minItems"], steerfeed::steer::MINILM_DIM);
    assert_eq!(embedding["maxItems"], steerfeed::steer::MINILM_DIM);
    // (serde_json reads floats to within an ulp.)
    let max = embedding["items"]["maximum"].as_f64().unwrap();
    assert!((max / f64::from(f32::MAX) - 1.0).abs() < 1e-12, "{max}");
    assert!(embedding["contains"].is_object());

    // Preferences: not blank, bounded by the default steering.max_text_bytes; `now` is
    // said to be refused without allow_client_clock.
    let prefs = body(&doc, "put", "/v1/users/{id}/preferences");
    let text = &prefs["properties"]["text"];
    assert_eq!(text["minLength"], 1);
    assert_eq!(
        text["maxLength"],
        steerfeed::Config::default().steering.max_text_bytes
    );
    assert!(text["pattern"].as_str().unwrap().starts_with("^(?="));
    for b in [prefs, feed] {
        let now = b["properties"]["now"].to_string();
        assert!(now.contains("allow_client_clock"), "{now}");
    }
}

#[tokio::test]
async fn events_are_one_closed_object_per_kind() {
    let doc = document().await;
    let event = &doc["components"]["schemas"]["Event"];
    let kinds = event["oneOf"].as_array().expect("oneOf");
    let names: BTreeSet<&str> = kinds
        .iter()
        .map(|k| k["properties"]["kind"]["enum"][0].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 14);
    for k in kinds {
        assert_eq!(k["additionalProperties"], false, "{k}");
        let required = k["required"].as_array().unwrap();
        for f in ["key", "user", "at", "kind"] {
            assert!(required.contains(&Value::from(f)), "{k}");
        }
    }
    // Each kind's properties are exactly the fields an event of that kind serialises.
    let view = kinds
        .iter()
        .find(|k| k["properties"]["kind"]["enum"][0] == "view")
        .unwrap();
    let fields: BTreeSet<&String> = view["properties"].as_object().unwrap().keys().collect();
    let sample: Value = serde_json::from_str(
        r#"{"key":"k","user":"u","at":"2026-01-01T00:00:00Z","kind":"view","video":"v",
            "watch_ms":5,"completed":true}"#,
    )
    .unwrap();
    let sample: steerfeed::Event = serde_json::from_value(sample).unwrap();
    let sample = serde_json::to_value(&sample).unwrap();
    assert_eq!(fields, sample.as_object().unwrap().keys().collect());
    assert_eq!(
        view["properties"]["watch_ms"]["maximum"],
        steerfeed::event::MAX_WATCH_MS
    );
    assert!(
        view["properties"]["at"]["description"]
            .as_str()
            .unwrap()
            .contains("event_max_age_s")
    );
}

#[tokio::test]
async fn what_no_schema_can_say_is_in_the_descriptions() {
    let doc = document().await;
    for (path, field) in [
        ("/v1/users/{id}/follows/{creator}", "follow"),
        ("/v1/users/{id}/blocks/{other}", "block"),
        ("/v1/users/{id}/mutes/{other}", "mute"),
    ] {
        for method in ["put", "delete"] {
            let d = doc["paths"][path][method]["description"].as_str().unwrap();
            assert!(
                d.contains("422") && d.contains(field),
                "{method} {path}: {d}"
            );
        }
    }
    let events = doc["paths"]["/v1/events"]["post"]["description"]
        .as_str()
        .unwrap();
    assert!(events.contains("event_max_age_s") && events.contains("404"));
}

//! The JSON API under `/v1` (docs/design.md §7): one handler per route, bearer-token auth
//! with scopes ([`crate::keys`]), the per-key rate limit ([`crate::ratelimit`]), the batch
//! limits, and the OpenAPI document of it all ([`ApiDoc`], served at `GET /openapi.json`
//! without a key; the routes and the scope each needs are listed in [`ROUTES`], which the
//! tests hold the document and the router to).
//!
//! | method | path | scope | body | answer |
//! |---|---|---|---|---|
//! | `POST` | `/v1/users` | `write` | `{"users": [User]}` (≤ [`MAX_USER_BATCH`]) | 200 `{"upserted"}` |
//! | `PUT` | `/v1/videos` | `write` | `{"videos": [Video]}` (≤ [`MAX_VIDEO_BATCH`]) | 200 `{"upserted"}` |
//! | `DELETE` | `/v1/videos/{id}` | `write` | | 204 |
//! | `POST` | `/v1/events` | `write` | `{"events": [Event]}` (≤ [`MAX_EVENT_BATCH`]) | 200 `{"accepted", "duplicates"}` |
//! | `PUT`, `DELETE` | `/v1/users/{id}/follows/{creator}` | `write` | | 204 |
//! | `PUT`, `DELETE` | `/v1/users/{id}/blocks/{other}` | `write` | | 204 |
//! | `PUT`, `DELETE` | `/v1/users/{id}/mutes/{other}` | `write` | | 204 |
//! | `PUT` | `/v1/users/{id}/parental` | `write` | `ParentalControls` | 204 |
//! | `PUT` | `/v1/users/{id}/consent` | `write` | `{"scope", "approved": [UserId]}` | 204 |
//! | `POST` | `/v1/users/{id}/consent/revocations` | `write` | `{"video"}` or `{"creator"}` | 204 |
//! | `PUT` | `/v1/users/{id}/preferences` | `write` | `{"text", "now"?}` | 200 `Constraints` |
//! | `GET` | `/v1/users/{id}/preferences` | `feed` | | 200 `{"text", "constraints", "summary"}`, 404 when none |
//! | `PATCH` | `/v1/users/{id}/preferences` | `write` | `{"remove"?, "change"?, "add"?, "now"?}` | 200 `{"text", "constraints", "summary"}` |
//! | `DELETE` | `/v1/users/{id}/preferences` | `write` | | 204 |
//! | `POST` | `/v1/feed` | `feed` | `{"user", "limit"?, "cursor"?, "session"?, "now"?, "profile"?}` | 200 `FeedResponse` |
//! | `GET` | `/v1/users/{id}/profile` | `feed` | | 200 `ProfileSummary` |
//! | `DELETE` | `/v1/users/{id}?videos=delete\|keep` | `admin` | | 200 `ErasureReport` |
//! | `GET` | `/v1/users/{id}/export` | `admin` | | 200 `{"user", "records": [Record]}` |
//! | `POST` | `/v1/import` | `admin` | `{"records": [Record]}` (≤ [`crate::bulk::MAX_IMPORT_BATCH`]) | 200 `{"results": [{"status", "error"?}]}` |
//! | `GET` | `/v1/export?kinds=…&embeddings=…` | `admin` | | 200 JSON lines of `Record` |
//! | `POST` | `/v1/backups` | `admin` | `{"dir"}` | 200 the backup's manifest |
//! | `GET` | `/v1/model` | `admin` | | 200 `ModelInfo` |
//! | `PUT` | `/v1/model` | `admin` | `{"file"}` (a model file's text) | 200 `ModelInfo` |
//! | `POST` | `/v1/model/rollback` | `admin` | | 200 `ModelInfo` |
//! | `GET` | `/metrics` (outside `/v1`) | `admin` | | 200 Prometheus text |
//!
//! A key of a narrower scope than the route's is answered 403 `forbidden`; scopes nest
//! (`feed` < `write` < `admin`). A method and path missing from the table need `admin`,
//! so a route added without its row is closed to every other key.
//!
//! Engine calls block (sled, ONNX, HNSW), so each runs on `spawn_blocking`. A request
//! that times out is answered 503 by the timeout middleware; its engine call still runs
//! to the end, so an acknowledged-or-not write is never half done.

use axum::Router;
use axum::extract::{MatchedPath, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use steerfeed::{
    ConsentScope, Constraints, Cursor, ErasureReport, Event, EventKey, FeedRequest, FeedResponse,
    OwnVideos, ParentalControls, Preferences, ProfileSummary, Record, Revocation, SessionId,
    Timestamp, User, UserId, Video, VideoId,
};
use tracing::Instrument;

use crate::AppState;
use crate::call::{check_batch, run};
use crate::config::ServerConfig;
use crate::error::{ApiError, ErrorBody, ErrorResponses};
use crate::extract::{ApiJson, UserPair, UserPath, VideoPath};
use crate::keys::Scope;
use crate::ratelimit::KeyId;

/// Most users in one `POST /v1/users`.
pub const MAX_USER_BATCH: usize = 1_000;
/// Most videos in one `PUT /v1/videos`.
pub const MAX_VIDEO_BATCH: usize = 1_000;
/// Most events in one `POST /v1/events`.
pub const MAX_EVENT_BATCH: usize = 10_000;
/// Most approved users in one `PUT /v1/users/{id}/consent` (the store's `max_approved`).
pub const MAX_APPROVED: usize = 10_000;

/// The `/v1` routes, behind the bearer-token check.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/users", post(upsert_users))
        .route("/videos", put(upsert_videos))
        .route("/events", post(ingest_events))
        .route(
            "/users/{id}/follows/{creator}",
            put(follow).delete(unfollow),
        )
        .route("/users/{id}/blocks/{other}", put(block).delete(unblock))
        .route("/users/{id}/mutes/{other}", put(mute).delete(unmute))
        .route("/users/{id}/parental", put(set_parental_controls))
        .route("/users/{id}/consent", put(set_consent))
        .route("/users/{id}/consent/revocations", post(revoke_consent))
        .route(
            "/users/{id}/preferences",
            put(set_preferences)
                .get(get_preferences)
                .patch(edit_preferences)
                .delete(clear_preferences),
        )
        .route("/feed", post(feed))
        .route("/users/{id}/profile", get(profile))
        .route(
            "/users/{id}",
            get(crate::inspect::person).delete(erase_user),
        )
        .route("/users/{id}/preview", post(crate::inspect::preview))
        .route("/users/{id}/explain/{video}", get(crate::inspect::explain))
        .route(
            "/videos/{id}",
            get(crate::inspect::video).delete(delete_video),
        )
        .route("/steering/parse", post(crate::inspect::parse))
        .route("/stats", get(crate::inspect::stats))
        .route("/users/{id}/export", get(export_user))
        .route("/import", post(crate::bulk::import_records))
        .route("/export", get(crate::bulk::export_records))
        .route("/backups", post(crate::bulk::backup))
        .route("/model", get(crate::model::show).put(crate::model::set))
        .route("/model/rollback", post(crate::model::rollback))
        .method_not_allowed_fallback(method_not_allowed)
        // Layers run outermost last: trace, then the key check, then the rate limit, then
        // the query check.
        .route_layer(axum::middleware::from_fn(refuse_unread_query))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(state, trace))
}

/// The `/v1` routes that read a query string (each declares its parameters in the
/// OpenAPI document). Any other route answers a query with 422: a parameter a route does
/// not have (`?dry_run=true` on a delete, `?limit=5` on the feed) is refused, never
/// silently ignored.
pub const QUERY_ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/users/{id}/explain/{video}"),
    ("get", "/v1/stats"),
    ("delete", "/v1/users/{id}"),
    ("get", "/v1/export"),
    ("get", "/v1/model"),
    ("put", "/v1/model"),
    ("post", "/v1/model/rollback"),
];

/// Answers 422 `invalid_input` (field `query`) for a query string on a route that is
/// not in [`QUERY_ROUTES`] (a method the path does not serve stays a 405).
async fn refuse_unread_query(req: Request, next: Next) -> Response {
    if req.uri().query().is_some_and(|q| !q.is_empty()) {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or_default();
        let method = routed_method(req.method().as_str());
        let is = |(m, p): (&str, &str)| m.eq_ignore_ascii_case(method) && p == route;
        // A method the route does not serve is left to the 405 fallback.
        let served = ROUTES.iter().any(|&(m, p, _)| is((m, p)));
        if served && !QUERY_ROUTES.iter().any(|&(m, p)| is((m, p))) {
            return ApiError::invalid(format!(
                "{} {route} takes no query parameters",
                req.method()
            ))
            .with_field("query")
            .into_response();
        }
    }
    next.run(req).await
}

/// The method a request is routed as: `HEAD` as `GET`, as axum routes it.
fn routed_method(method: &str) -> &str {
    if method.eq_ignore_ascii_case("head") {
        "get"
    } else {
        method
    }
}

/// Checks each item of a batch with `check` before anything is written, naming the first
/// bad one by its place (`users[1].time_zone`).
fn check_each<T>(
    list: &str,
    items: &[T],
    check: impl Fn(&T) -> steerfeed::Result<()>,
) -> Result<(), ApiError> {
    for (i, item) in items.iter().enumerate() {
        if let Err(err) = check(item) {
            let field = format!("{list}[{i}].{}", err.field().unwrap_or("value"));
            return Err(ApiError::from(err).with_field(field));
        }
    }
    Ok(())
}

/// Every `(method, path, scope)` the `/v1` router serves, in the order of [`routes`]: the
/// scope is the narrowest a key needs to call the route (the key check). The OpenAPI
/// document must describe exactly these routes, each with its scope as the role of its
/// security requirement (the tests hold both to this list). A new route is one row here.
pub const ROUTES: &[(&str, &str, Scope)] = &[
    ("post", "/v1/users", Scope::Write),
    ("put", "/v1/videos", Scope::Write),
    ("delete", "/v1/videos/{id}", Scope::Write),
    ("post", "/v1/events", Scope::Write),
    ("put", "/v1/users/{id}/follows/{creator}", Scope::Write),
    ("delete", "/v1/users/{id}/follows/{creator}", Scope::Write),
    ("put", "/v1/users/{id}/blocks/{other}", Scope::Write),
    ("delete", "/v1/users/{id}/blocks/{other}", Scope::Write),
    ("put", "/v1/users/{id}/mutes/{other}", Scope::Write),
    ("delete", "/v1/users/{id}/mutes/{other}", Scope::Write),
    ("put", "/v1/users/{id}/parental", Scope::Write),
    ("put", "/v1/users/{id}/consent", Scope::Write),
    ("post", "/v1/users/{id}/consent/revocations", Scope::Write),
    ("put", "/v1/users/{id}/preferences", Scope::Write),
    ("get", "/v1/users/{id}/preferences", Scope::Feed),
    ("patch", "/v1/users/{id}/preferences", Scope::Write),
    ("delete", "/v1/users/{id}/preferences", Scope::Write),
    ("post", "/v1/feed", Scope::Feed),
    ("get", "/v1/users/{id}/profile", Scope::Feed),
    ("delete", "/v1/users/{id}", Scope::Admin),
    ("get", "/v1/users/{id}/export", Scope::Admin),
    ("post", "/v1/import", Scope::Admin),
    ("get", "/v1/export", Scope::Admin),
    ("post", "/v1/backups", Scope::Admin),
    ("get", "/v1/users/{id}", Scope::Admin),
    ("post", "/v1/users/{id}/preview", Scope::Admin),
    ("get", "/v1/users/{id}/explain/{video}", Scope::Admin),
    ("get", "/v1/videos/{id}", Scope::Admin),
    ("post", "/v1/steering/parse", Scope::Feed),
    ("get", "/v1/stats", Scope::Admin),
    ("get", "/v1/model", Scope::Admin),
    ("put", "/v1/model", Scope::Admin),
    ("post", "/v1/model/rollback", Scope::Admin),
];

/// The keyed routes outside `/v1` (not in the OpenAPI document), with their scopes.
pub const ROUTES_OUTSIDE_V1: &[(&str, &str, Scope)] = &[("get", "/metrics", Scope::Admin)];

/// The scope a key needs to call `method` on the route `path` (as matched: `/v1/feed`,
/// `/v1/users/{id}/profile`): its row of [`ROUTES`] or [`ROUTES_OUTSIDE_V1`], else
/// `admin`, so that a route nobody gave a scope is closed to every other key. `HEAD` is
/// `GET` (the router answers it with the `GET` handler).
pub fn required_scope(method: &str, path: &str) -> Scope {
    let method = routed_method(method);
    ROUTES
        .iter()
        .chain(ROUTES_OUTSIDE_V1)
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map_or(Scope::Admin, |&(_, _, scope)| scope)
}

/// The OpenAPI 3.1 document of the `/v1` API, generated from the request and response
/// types and the handlers' annotations; served at `GET /openapi.json`.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "steerfeed",
        description = "Feed ranking sidecar. Every /v1 route takes `Authorization: Bearer <key>` \
                       when keys are configured (server.api_keys_file, server.api_keys), and may \
                       answer any of the listed errors in the one error shape. Each key has a \
                       scope, `feed` < `write` < `admin`, and each operation needs one, listed \
                       as the role of its `bearer` security requirement: `feed` reads feeds, \
                       profiles and preferences and compiles preferences without storing \
                       them; `write` also the other writes; `admin` everything (a person's \
                       erasure and export, bulk import and export, backups, the operator's \
                       reads). A key whose scope is too narrow is answered 403 `forbidden`. \
                       A request a browser marks as sent by another site's page (`Origin`, \
                       `Sec-Fetch-Site`) is answered 403 `cross_origin`."
    ),
    paths(upsert_users, upsert_videos, delete_video, ingest_events, follow, unfollow, block, unblock, mute, unmute, set_parental_controls, set_consent, revoke_consent, set_preferences, get_preferences, edit_preferences, clear_preferences, feed, profile, erase_user, export_user, crate::bulk::import_records, crate::bulk::export_records, crate::bulk::backup, crate::inspect::person, crate::inspect::preview, crate::inspect::explain, crate::inspect::video, crate::inspect::parse, crate::inspect::stats, crate::model::show, crate::model::set, crate::model::rollback),
    components(schemas(ErrorBody, OwnVideos)),
    modifiers(&BearerSecurity, &EngineRules, &RouteScopes),
    security(("bearer" = []))
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the operations refer to.
struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "An API key: one of server.api_keys_file, with its scope, or of \
                             server.api_keys (scope admin). Scopes nest, feed < write < admin; \
                             each operation's security requirement names the scope it needs \
                             as its role, and a narrower key is answered 403.",
                        ))
                        .build(),
                ),
            );
    }
}

/// What the document can only say once the types are gathered: the engine's embedding
/// dimension on `Embedding`, and the rules of path ids on every path parameter.
struct EngineRules;

impl utoipa::Modify for EngineRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::Schema;
        use utoipa::openapi::{RefOr, path::ParameterIn};
        let components = openapi.components.get_or_insert_with(Default::default);
        if let Some(RefOr::T(Schema::Array(a))) = components.schemas.get_mut("Embedding") {
            a.min_items = Some(steerfeed::steer::MINILM_DIM);
            a.max_items = Some(steerfeed::steer::MINILM_DIM);
        }
        // Records refuse unknown fields (serde's `deny_unknown_fields`), variant by variant.
        if let Some(RefOr::T(Schema::OneOf(records))) = components.schemas.get_mut("Record") {
            for variant in &mut records.items {
                if let RefOr::T(Schema::Object(o)) = variant {
                    o.additional_properties = Some(Box::new(
                        utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                    ));
                }
            }
        }
        // An import takes the kinds of record an app writes; the derived ones (which an
        // import would only skip) are left out of its body's schema.
        if let Some(RefOr::T(Schema::OneOf(records))) = components.schemas.get("Record") {
            let mut importable = records.clone();
            importable.items.retain(|variant| {
                let RefOr::T(Schema::Object(o)) = variant else {
                    return false;
                };
                let Some(RefOr::T(Schema::Object(tag))) = o.properties.get("record") else {
                    return false;
                };
                tag.enum_values.iter().flatten().any(|v| {
                    v.as_str()
                        .is_some_and(|name| steerfeed::RecordKind::parse(name).is_some())
                })
            });
            components
                .schemas
                .insert("ImportRecord".to_owned(), Schema::OneOf(importable).into());
        }
        if let Some(RefOr::T(Schema::Object(body))) = components.schemas.get_mut("ImportBody")
            && let Some(RefOr::T(Schema::Array(records))) = body.properties.get_mut("records")
        {
            records.items = utoipa::openapi::schema::ArrayItems::RefOrSchema(Box::new(RefOr::Ref(
                utoipa::openapi::Ref::from_schema_name("ImportRecord"),
            )));
        }
        components
            .schemas
            .insert("PathId".to_owned(), crate::extract::path_id_schema().into());
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                for p in op.parameters.iter_mut().flatten() {
                    if p.parameter_in == ParameterIn::Path {
                        p.schema =
                            Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("PathId")));
                    }
                }
            }
        }
    }
}

/// Sets each operation's security requirement to `bearer` with the scope [`ROUTES`]
/// gives it as the role (OpenAPI 3.1 allows roles on http schemes), so that the table
/// is the one source of the scopes.
struct RouteScopes;

impl utoipa::Modify for RouteScopes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::SecurityRequirement;
        for (path, item) in &mut openapi.paths.paths {
            let ops = [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("patch", &mut item.patch),
                ("delete", &mut item.delete),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    let scope = required_scope(method, path);
                    op.security = Some(vec![SecurityRequirement::new("bearer", [scope.as_str()])]);
                }
            }
        }
    }
}

/// The document as JSON text, built once.
pub fn openapi_json() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        use utoipa::OpenApi;
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the document: {e}\"}}"))
    })
}

/// `GET /openapi.json`: the document, without a key (it describes the API, no data).
pub fn openapi_route() -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], openapi_json()) })
            .fallback(method_not_allowed),
    )
}

/// `GET /metrics`: Prometheus text, behind the same key check as `/v1` when keys are set,
/// for `admin` keys ([`ROUTES_OUTSIDE_V1`]).
pub fn metrics_route(state: AppState) -> Router<AppState> {
    Router::new()
        // A wrong method is answered after the key check, as on /v1.
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route_layer(axum::middleware::from_fn_with_state(state, authorize))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let replica = state.config().server.replica_name();
    let mut text = state.metrics().render();
    if let Some(engine) = state.engine() {
        crate::metrics::render_pools(&mut text, engine.page_pool_counts());
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::with_label(&text, "replica", &replica),
    )
        .into_response()
}

/// One span per request carrying the method and the matched route (not the raw path,
/// whose ids would make every span unique), and the key's name from the key file when it
/// has one (never the key); the status is logged at debug level.
async fn trace(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route,
        key_name = tracing::field::Empty
    );
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    span.in_scope(|| tracing::debug!(status, "answered"));
    state
        .metrics()
        .request(&route, status, started.elapsed().as_secs_f64());
    resp
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take this method",
    )
}

// ---------------------------------------------------------------------------------------
// Auth.

/// Checks `Authorization: Bearer <key>` against the keys in force ([`crate::keys`]; auth
/// is off when none are configured, which the configuration allows only on a loopback
/// bind): 401 without a key or with a wrong one, 403 when the key's scope is narrower
/// than the route's ([`required_scope`]). Tells the rate limit which key it was
/// ([`KeyId`]).
async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // This request's set: a reload from now on does not change it.
    let keys = state.keys();
    if !keys.required() {
        req.extensions_mut().insert(KeyId::SHARED);
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let key = match token {
        Some(token) => keys.find(token.as_bytes()),
        // No key: a console session, if the request names one.
        None => match crate::console::authorize_session(&state, &req) {
            Ok(Some(id)) => keys.by_id(id),
            Ok(None) => {
                return ApiError::unauthorized("missing API key: send Authorization: Bearer <key>")
                    .into_response();
            }
            Err(e) => return e.into_response(),
        },
    };
    let Some(key) = key else {
        return ApiError::unauthorized("wrong API key").into_response();
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or_default();
    let needed = required_scope(req.method().as_str(), route);
    if !key.scope().allows(needed) {
        return ApiError::forbidden(needed, key.scope()).into_response();
    }
    if let Some(name) = key.name() {
        tracing::Span::current().record("key_name", name);
    }
    req.extensions_mut().insert(key.id());
    next.run(req).await
}

/// Takes a token from the key's bucket ([`crate::ratelimit`]); without one the request
/// is answered 429 `rate_limited` with `retry-after` and goes no further.
async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let key = req
        .extensions()
        .get::<KeyId>()
        .copied()
        .unwrap_or(KeyId::SHARED);
    match state.limiter().check(key) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            // Whole seconds, rounded up, at least 1 (the header takes no fractions).
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let secs = secs.max(1);
            let mut resp = ApiError::rate_limited(format!(
                "too many requests for this API key: retry in {secs} s \
                 (server.rate_limit_per_second, server.rate_limit_burst)"
            ))
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            resp
        }
    }
}

// ---------------------------------------------------------------------------------------
// Running engine calls.

/// The clock a request runs at: `None` (the engine reads the server's clock) unless
/// `server.allow_client_clock` lets a client pin it; a `now` sent otherwise is refused,
/// so that no key holder can step a viewer past bedtime or a daily rollover, or store
/// constraints that never expire.
fn client_clock(state: &AppState, now: Option<Timestamp>) -> Result<Option<Timestamp>, ApiError> {
    match now {
        Some(_) if !state.config().server.allow_client_clock => Err(ApiError::invalid(
            "the server keeps the clock: \"now\" is accepted only with \
             server.allow_client_clock = true (for simulations and tests)",
        )
        .with_field("now")),
        now => Ok(now),
    }
}

/// Refuses a batch with an event dated outside `[server time - server.event_max_age_s,
/// server time + server.event_max_ahead_s]` (unless `server.allow_client_clock`): one
/// event dated far ahead would otherwise roll a viewer's wellbeing day past every real
/// one and freeze their daily counts.
fn check_event_times(state: &AppState, events: &[Event]) -> Result<(), ApiError> {
    let s = &state.config().server;
    let Some((oldest, newest)) = clock_window(s) else {
        return Ok(());
    };
    for (i, e) in events.iter().enumerate() {
        let at = e.at.as_millisecond();
        let why = if at < oldest {
            format!(
                "more than {} s before the server's clock (server.event_max_age_s)",
                s.event_max_age_s
            )
        } else if at > newest {
            format!(
                "more than {} s after the server's clock (server.event_max_ahead_s)",
                s.event_max_ahead_s
            )
        } else {
            continue;
        };
        return Err(ApiError::invalid(format!(
            "event {i} (key {:?}): at {} is {why}; nothing of the batch was kept",
            e.key.as_str(),
            e.at
        ))
        .with_field(format!("events[{i}].at")));
    }
    Ok(())
}

/// The times a client may set, in milliseconds (`server.event_max_age_s` before the
/// server's clock to `server.event_max_ahead_s` after it); `None` when the server lets
/// clients keep the clock.
fn clock_window(s: &ServerConfig) -> Option<(i64, i64)> {
    if s.allow_client_clock {
        return None;
    }
    let ms = |secs: u64| i64::try_from(secs).unwrap_or(i64::MAX / 1000) * 1000;
    let now = Timestamp::now().as_millisecond();
    Some((
        now.saturating_sub(ms(s.event_max_age_s)),
        now.saturating_add(ms(s.event_max_ahead_s)),
    ))
}

/// Refuses a video dated more than `server.event_max_ahead_s` after the server's clock
/// (unless `server.allow_client_clock`): a video from the future would sit at the top
/// of the fresh source at full freshness for as long as it pleases. Old dates are fine (a
/// catalogue moved from elsewhere keeps its history).
fn check_video_times(state: &AppState, videos: &[Video]) -> Result<(), ApiError> {
    let s = &state.config().server;
    let Some((_, newest)) = clock_window(s) else {
        return Ok(());
    };
    match videos
        .iter()
        .position(|v| v.created_at.as_millisecond() > newest)
    {
        None => Ok(()),
        Some(i) => Err(ApiError::invalid(format!(
            "video {i} ({:?}): created_at {} is more than {} s after the server's clock \
             (server.event_max_ahead_s); nothing of the batch was kept",
            videos[i].id.as_str(),
            videos[i].created_at,
            s.event_max_ahead_s
        ))
        .with_field(format!("videos[{i}].created_at"))),
    }
}

// ---------------------------------------------------------------------------------------
// Catalog and users.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct UsersBody {
    /// At most 1,000 users.
    #[schema(max_items = 1000)]
    users: Vec<User>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct VideosBody {
    /// At most 1,000 videos; the whole batch is checked before anything is written.
    #[schema(max_items = 1000)]
    videos: Vec<Video>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Upserted {
    upserted: usize,
}

#[utoipa::path(
    post,
    path = "/v1/users",
    tag = "catalog",
    description = "Adds or replaces users. The whole batch is checked before anything is written.",
    request_body = UsersBody,
    responses((status = 200, description = "done", body = Upserted), ErrorResponses)
)]
async fn upsert_users(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<UsersBody>,
) -> Result<axum::Json<Upserted>, ApiError> {
    check_batch("users", body.users.len(), MAX_USER_BATCH)?;
    check_each("users", &body.users, User::validate)?;
    let upserted = run(&state, move |e| {
        for u in &body.users {
            e.upsert_user(u)?;
        }
        Ok(body.users.len())
    })
    .await?;
    Ok(axum::Json(Upserted { upserted }))
}

#[utoipa::path(
    put,
    path = "/v1/videos",
    tag = "catalog",
    description = "Adds or replaces videos, embedding captions where no embedding is given. The whole batch is checked before anything is written. The creator and every cameo person must be known users (else 404); a video cannot remix itself (422, `field: remix_of`); unless the server runs with `server.allow_client_clock = true`, no `created_at` may lie more than `server.event_max_ahead_s` (300 s by default) after the server's clock (422, `field: videos[i].created_at`).",
    request_body = VideosBody,
    responses((status = 200, description = "done", body = Upserted), ErrorResponses)
)]
async fn upsert_videos(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VideosBody>,
) -> Result<axum::Json<Upserted>, ApiError> {
    check_batch("videos", body.videos.len(), MAX_VIDEO_BATCH)?;
    check_video_times(&state, &body.videos)?;
    let upserted = run(&state, move |e| {
        e.upsert_videos(&body.videos)?;
        Ok(body.videos.len())
    })
    .await?;
    Ok(axum::Json(Upserted { upserted }))
}

#[utoipa::path(
    delete,
    path = "/v1/videos/{id}",
    tag = "catalog",
    description = "Deletes a video: never served again once this answers. An unknown video is 404.",
    params(("id" = String, Path, description = "the video")),
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn delete_video(
    State(state): State<AppState>,
    VideoPath(id): VideoPath,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| e.delete_video(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Events.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct EventsBody {
    /// At most 10,000 events; the whole batch is checked before anything is written.
    #[schema(max_items = 10000)]
    events: Vec<Event>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Ingested {
    accepted: usize,
    duplicates: Vec<EventKey>,
}

#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    description = "Logs and counts events; a batch sent again is counted once (its keys come back as `duplicates`); a key sent with another event than the one logged under it, or twice in the batch with different content, is 409 and nothing of the batch is logged. The whole batch is checked before anything is written: every user and video an event names must be known (else 404); unless the server runs with `server.allow_client_clock = true`, every `at` must lie within [server time - `server.event_max_age_s`, server time + `server.event_max_ahead_s`] (7 days and 300 s by default; else 422, `field: events[i].at`); a remix cannot name the remixed video as its new video (422, `field: events[i].new_video`).",
    request_body = EventsBody,
    responses((status = 200, description = "done", body = Ingested), ErrorResponses)
)]
async fn ingest_events(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EventsBody>,
) -> Result<axum::Json<Ingested>, ApiError> {
    check_batch("events", body.events.len(), MAX_EVENT_BATCH)?;
    check_each("events", &body.events, Event::validate)?;
    check_event_times(&state, &body.events)?;
    let report = run(&state, move |e| e.ingest_events(&body.events)).await?;
    Ok(axum::Json(Ingested {
        accepted: report.accepted,
        duplicates: report.duplicates,
    }))
}

// ---------------------------------------------------------------------------------------
// The graph.

#[utoipa::path(
    put,
    path = "/v1/users/{id}/follows/{creator}",
    tag = "graph",
    description = "`id` follows `creator`. Both must be known users (else 404), and a user cannot follow themselves: `id` equal to `creator` is 422 (`field: follow`).",
    params(("id" = String, Path, description = "the follower"), ("creator" = String, Path, description = "the creator followed")),
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn follow(
    State(state): State<AppState>,
    UserPair(user, other): UserPair,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| e.follow(&user, &other)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/v1/users/{id}/follows/{creator}",
    tag = "graph",
    description = "`id` stops following `creator`. Both must be known users (else 404); `id` equal to `creator` is 422 (`field: follow`).",
    params(("id" = String, Path, description = "the follower"), ("creator" = String, Path, description = "the creator unfollowed")),
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn unfollow(
    State(state): State<AppState>,
    UserPair(user, other): UserPair,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| e.unfollow(&user, &other)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/v1/users/{id}/blocks/{other}",
    tag = "graph",
    description = "`id` blocks `other`: nothing by or featuring them is served to `id` again once this answers. Both must be known users (else 404), and a user cannot block themselves: `id` equal to `other` is 422 (`field: block`).",
    params(("id" = String, Path, description = "the user"), ("other" = String, Path, description = "the user blocked")),
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn block(
    State(state): State<AppState>,
    UserPair(user, other): UserPair,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| e.block(&user, &other)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/v1/users/{id}/blocks/{other}",
    tag = "graph",
    description = "`id` unblocks `other`. Both must be known users (else 404); `id` equal to `other` is 422 (`field: block`).",
    params(("id" = String, Path, description = "the user"), ("other" = String, Path, description = "the user unblocked")),
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn unblock(
    State(state): State<AppState>,
    UserPair(user, other): UserPair,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| e.unblock(&user, &other)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    put,
    path = "/v1/users/{id}/mutes/{other}",
    tag = "graph",
    description = "`id` mutes `other`. Both must be known users (else 404), and a user cannot mute themselves: `id` equal to `other` is 422 (`field: mute`).",
    params(("id" = String, Path, description = "the user"), ("other" = String, Path, description = "the user muted")),
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn mute(
    State(state): State<AppState>,
    UserPair(user, other): UserPair,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| e.mute(&user, &other)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/v1/users/{id}/mutes/{other}",
    tag = "graph",
    description = "`id` unmutes `other`. Both must be known users (else 404); `id` equal to `other` is 422 (`field: mute`).",
    params(("id" = String, Path, description = "the user"), ("other" = String, Path, description = "the user unmuted")),
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn unmute(
    State(state): State<AppState>,
    UserPair(user, other): UserPair,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| e.unmute(&user, &other)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Parental controls and consent.

#[utoipa::path(
    put,
    path = "/v1/users/{id}/parental",
    tag = "safety",
    description = "Sets a user's parental controls. An unknown user is 404.",
    params(("id" = String, Path, description = "the user")),
    request_body = ParentalControls,
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn set_parental_controls(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    ApiJson(controls): ApiJson<ParentalControls>,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| e.set_parental_controls(&user, &controls)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct ConsentBody {
    scope: ConsentScope,
    /// The users approved one by one (for `approved`), at most 10,000; replaces the list.
    #[serde(default)]
    #[schema(max_items = 10000)]
    approved: Vec<UserId>,
}

#[utoipa::path(
    put,
    path = "/v1/users/{id}/consent",
    tag = "safety",
    description = "Sets who may use the user's likeness in cameos, and the approved list. An unknown user, or an unknown user in `approved`, is 404 and changes nothing.",
    params(("id" = String, Path, description = "the user")),
    request_body = ConsentBody,
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn set_consent(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    ApiJson(body): ApiJson<ConsentBody>,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| {
        e.set_consent(&user, body.scope, &body.approved)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationBody {
    #[serde(default, deserialize_with = "steerfeed::wire::present")]
    video: Option<VideoId>,
    #[serde(default, deserialize_with = "steerfeed::wire::present")]
    creator: Option<UserId>,
}

// Exactly one of `video` and `creator`: two closed objects, one requiring each.
impl utoipa::PartialSchema for RevocationBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOf, Type};
        use utoipa::openapi::{Ref, RefOr};
        let one = |field: &str, id: &str, description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .title(Some(field))
                .property(field, {
                    let mut r = Ref::from_schema_name(id);
                    r.description = description.to_owned();
                    RefOr::Ref(r)
                })
                .required(field)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOf::builder()
            .item(one(
                "video",
                "VideoId",
                "One video the person appears in; a known video (else 404), deleted or not.",
            ))
            .item(one(
                "creator",
                "UserId",
                "Every video of one creator; a known user (else 404).",
            ))
            .description(Some(
                "What the person withdraws consent for: exactly one of `video` and `creator`.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for RevocationBody {
    fn schemas(
        out: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        out.push(("VideoId".to_owned(), VideoId::schema()));
        out.push(("UserId".to_owned(), UserId::schema()));
    }
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/consent/revocations",
    tag = "safety",
    description = "The user withdraws consent for one video or every video of one creator; in force once this answers. The user and what is revoked must be known (else 404).",
    params(("id" = String, Path, description = "the user")),
    request_body = RevocationBody,
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn revoke_consent(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    ApiJson(body): ApiJson<RevocationBody>,
) -> Result<StatusCode, ApiError> {
    let revocation = match (body.video, body.creator) {
        (Some(v), None) => Revocation::Video(v),
        (None, Some(c)) => Revocation::Creator(c),
        _ => {
            return Err(
                ApiError::invalid("give exactly one of \"video\" and \"creator\"")
                    .with_field("video"),
            );
        }
    };
    run(&state, move |e| e.revoke_consent(&user, &revocation)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// Preferences.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct PreferencesBody {
    #[schema(schema_with = crate::extract::preference_text_schema)]
    text: String,
    /// Pins the clock the expiry counts from; refused (422, `field: now`) unless the server
    /// runs with `server.allow_client_clock = true` (simulations and tests). Else the
    /// server's clock.
    #[serde(default)]
    #[schema(value_type = Option<steerfeed::openapi::DateTime>)]
    now: Option<Timestamp>,
}

#[utoipa::path(
    put,
    path = "/v1/users/{id}/preferences",
    tag = "steering",
    description = "Compiles the user's preferences in words into constraints and stores both; answers the constraints. An unknown user is 404. `now` is refused (422) unless the server runs with `server.allow_client_clock = true`.",
    params(("id" = String, Path, description = "the user")),
    request_body = PreferencesBody,
    responses((status = 200, description = "done", body = Constraints), ErrorResponses)
)]
async fn set_preferences(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    ApiJson(body): ApiJson<PreferencesBody>,
) -> Result<axum::Json<Constraints>, ApiError> {
    let now = client_clock(&state, body.now)?.unwrap_or_else(Timestamp::now);
    let constraints = run(&state, move |e| e.set_preferences(&user, &body.text, now)).await?;
    Ok(axum::Json(constraints))
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}/preferences",
    tag = "steering",
    description = "The user's preference text and constraints; 404 for an unknown user or one without preferences.",
    params(("id" = String, Path, description = "the user")),
    responses((status = 200, description = "done", body = Preferences), ErrorResponses)
)]
async fn get_preferences(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<axum::Json<Preferences>, ApiError> {
    let id = user.clone();
    match run(&state, move |e| e.preferences(&user, Timestamp::now())).await? {
        Some(p) => Ok(axum::Json(p)),
        None => Err(ApiError::not_found(format!(
            "user {id} has no preferences set"
        ))),
    }
}

/// An edit of a user's constraints (`Engine::edit_preferences`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct PreferencesEditBody {
    /// Items to take out, each by its list and its topic and/or phrase
    /// (`{"list": "exclude", "topic": "politics"}`), a slot by its name alone
    /// (`{"list": "following"}`).
    #[serde(default)]
    remove: Vec<steerfeed::ItemAddress>,
    /// Items to change: the address, and a new `strength` (`boost`, `reduce`) and/or an
    /// `expires_at` of the item's own, in the future.
    #[serde(default)]
    change: Vec<steerfeed::ItemChange>,
    /// New preferences in words, compiled with the user's policy and merged in: an item
    /// about a topic already there replaces it, and one that pulls the other way.
    #[serde(default)]
    #[schema(schema_with = crate::extract::preference_text_schema)]
    add: Option<String>,
    /// Pins the clock (see `PUT`); refused unless `server.allow_client_clock = true`.
    #[serde(default)]
    #[schema(value_type = Option<steerfeed::openapi::DateTime>)]
    now: Option<Timestamp>,
}

#[utoipa::path(
    patch,
    path = "/v1/users/{id}/preferences",
    tag = "steering",
    description = "Edits the user's constraints without retyping the rest: removes items, changes an item's strength or expiry, then adds new text. Applied whole or not at all: an address that names no item is 404, one that names several is 409 (name the phrase too), a bad strength, an expiry not in the future (or after the constraints' own) or bad text is 422, and nothing changes. An empty edit answers the preferences as they are. Answers the preferences with each item's description and the summary. An unknown user is 404.",
    params(("id" = String, Path, description = "the user")),
    request_body = PreferencesEditBody,
    responses((status = 200, description = "done", body = Preferences), ErrorResponses)
)]
async fn edit_preferences(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    ApiJson(body): ApiJson<PreferencesEditBody>,
) -> Result<axum::Json<Preferences>, ApiError> {
    let now = client_clock(&state, body.now)?.unwrap_or_else(Timestamp::now);
    let edit = steerfeed::PreferenceEdit {
        remove: body.remove,
        change: body.change,
        add: body.add,
    };
    let p = run(&state, move |e| e.edit_preferences(&user, &edit, now)).await?;
    Ok(axum::Json(p))
}

#[utoipa::path(
    delete,
    path = "/v1/users/{id}/preferences",
    tag = "steering",
    description = "Forgets the user's preferences. An unknown user is 404.",
    params(("id" = String, Path, description = "the user")),
    responses((status = 204, description = "done"), ErrorResponses)
)]
async fn clear_preferences(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<StatusCode, ApiError> {
    run(&state, move |e| e.clear_preferences(&user)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// The feed and the profile.

/// The wire form of a feed request, built into a [`FeedRequest`] through its checked
/// constructors so that a bad value comes back with its field (`limit`, `cursor`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
#[schema(as = FeedRequest)]
struct FeedBody {
    user: UserId,
    #[serde(default)]
    session: Option<SessionId>,
    #[serde(
        default = "default_limit",
        deserialize_with = "steerfeed::wire::integral"
    )]
    #[schema(default = 20, minimum = 1, maximum = 100)]
    limit: u32,
    #[serde(default)]
    #[schema(value_type = Option<Cursor>)]
    cursor: Option<String>,
    /// Pins the clock the page is ranked at (bedtime, daily limits, constraint expiry);
    /// refused (422, `field: now`) unless the server runs with
    /// `server.allow_client_clock = true` (simulations and tests). Else the server's clock.
    #[serde(default)]
    #[schema(value_type = Option<steerfeed::openapi::DateTime>)]
    now: Option<Timestamp>,
    /// A rank profile (`[profiles.NAME]`, or `default`) to serve with instead of the
    /// user's experiment assignment, for internal testing; an unknown one is 422
    /// (`field: profile`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]+$")]
    profile: Option<String>,
}

fn default_limit() -> u32 {
    20
}

impl FeedBody {
    fn into_request(self) -> steerfeed::Result<FeedRequest> {
        let mut req = FeedRequest::new(self.user, self.limit)?;
        if let Some(s) = self.session {
            req = req.with_session(s);
        }
        if let Some(c) = self.cursor {
            req = req.with_cursor(Cursor::new(c)?);
        }
        if let Some(now) = self.now {
            req = req.at(now);
        }
        if let Some(p) = self.profile {
            req = req.with_profile(p)?;
        }
        Ok(req)
    }
}

#[utoipa::path(
    post,
    path = "/v1/feed",
    tag = "feed",
    description = "Ranks a page of feed for `user`, each item with its explanation. An unknown user is 404. `cursor` must be a `next_cursor` this server issued (else 422, `field: cursor`); `now` is refused (422) unless the server runs with `server.allow_client_clock = true`.",
    request_body = FeedBody,
    responses((status = 200, description = "done", body = FeedResponse), ErrorResponses)
)]
async fn feed(
    State(state): State<AppState>,
    ApiJson(mut body): ApiJson<FeedBody>,
) -> Result<axum::Json<FeedResponse>, ApiError> {
    body.now = client_clock(&state, body.now)?;
    let request = body.into_request()?;
    let (response, trace) = run(&state, move |e| e.feed_traced(&request)).await?;
    state.metrics().trace(&trace, response.items.len());
    state
        .metrics()
        .profile(&response.profile, response.items.len());
    Ok(axum::Json(response))
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}/profile",
    tag = "feed",
    description = "What the user is seeing most, and their active constraints in words. An unknown user is 404.",
    params(("id" = String, Path, description = "the user")),
    responses((status = 200, description = "done", body = ProfileSummary), ErrorResponses)
)]
async fn profile(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<axum::Json<ProfileSummary>, ApiError> {
    let summary = run(&state, move |e| e.profile_summary(&user)).await?;
    Ok(axum::Json(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_must_say_what_happens_to_the_videos_and_nothing_else() {
        assert_eq!(erasure_videos(Some("videos=delete")), Ok(OwnVideos::Delete));
        assert_eq!(erasure_videos(Some("videos=keep")), Ok(OwnVideos::Keep));
        for (query, field) in [
            (None, "videos"),
            (Some(""), "videos"),
            (Some("videos"), "videos"),
            (Some("videos=Delete"), "videos"),
            (Some("videos=keep&force=1"), "force"),
            (Some("videos=keep&videos=delete"), "videos"),
            (Some("user=a"), "user"),
        ] {
            let e = erasure_videos(query).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{query:?}");
            assert_eq!(e.field.as_deref(), Some(field), "{query:?}");
        }
    }

    #[test]
    fn feed_keys_read_write_keys_write_and_the_rest_needs_admin() {
        let feed: Vec<(&str, &str)> = ROUTES
            .iter()
            .filter(|r| r.2 == Scope::Feed)
            .map(|&(m, p, _)| (m, p))
            .collect();
        assert_eq!(
            feed,
            [
                ("get", "/v1/users/{id}/preferences"),
                ("post", "/v1/feed"),
                ("get", "/v1/users/{id}/profile"),
                ("post", "/v1/steering/parse"),
            ]
        );
        let admin: Vec<(&str, &str)> = ROUTES
            .iter()
            .filter(|r| r.2 == Scope::Admin)
            .map(|&(m, p, _)| (m, p))
            .collect();
        assert_eq!(
            admin,
            [
                ("delete", "/v1/users/{id}"),
                ("get", "/v1/users/{id}/export"),
                ("post", "/v1/import"),
                ("get", "/v1/export"),
                ("post", "/v1/backups"),
                ("get", "/v1/users/{id}"),
                ("post", "/v1/users/{id}/preview"),
                ("get", "/v1/users/{id}/explain/{video}"),
                ("get", "/v1/videos/{id}"),
                ("get", "/v1/stats"),
                ("get", "/v1/model"),
                ("put", "/v1/model"),
                ("post", "/v1/model/rollback"),
            ]
        );
        assert!(ROUTES.iter().all(|r| r.2 == Scope::Write
            || feed.contains(&(r.0, r.1))
            || admin.contains(&(r.0, r.1))));
        assert_eq!(required_scope("GET", "/metrics"), Scope::Admin);
        assert_eq!(required_scope("POST", "/v1/feed"), Scope::Feed);
        assert_eq!(required_scope("post", "/v1/events"), Scope::Write);
        assert_eq!(
            required_scope("HEAD", "/v1/users/{id}/profile"),
            Scope::Feed
        );
        // What the table does not list fails closed: another method of a listed path, a
        // path nobody listed, no matched path at all.
        assert_eq!(
            required_scope("delete", "/v1/users/{id}/profile"),
            Scope::Admin
        );
        assert_eq!(required_scope("delete", "/v1/users/{id}"), Scope::Admin);
        assert_eq!(required_scope("get", ""), Scope::Admin);
        // One row per route.
        let mut rows: Vec<(&str, &str)> = ROUTES.iter().map(|&(m, p, _)| (m, p)).collect();
        rows.sort_unstable();
        rows.dedup();
        assert_eq!(rows.len(), ROUTES.len());
    }
}

// ---------------------------------------------------------------------------------------
// A person's data.

/// What `DELETE /v1/users/{id}` does with the person's own videos: `?videos=delete` or
/// `?videos=keep`, required (the caller says which), and nothing else.
fn erasure_videos(query: Option<&str>) -> Result<OwnVideos, ApiError> {
    let mut videos = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("videos", _)) if videos.is_some() => {
                return Err(
                    ApiError::invalid("videos is given more than once").with_field("videos")
                );
            }
            Some(("videos", "delete")) => videos = Some(OwnVideos::Delete),
            Some(("videos", "keep")) => videos = Some(OwnVideos::Keep),
            Some(("videos", _)) | None if pair.starts_with("videos") => {
                return Err(
                    ApiError::invalid("videos must be \"delete\" or \"keep\"").with_field("videos")
                );
            }
            _ => {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                return Err(ApiError::invalid(format!(
                    "unknown query parameter {name:?}: only \"videos\" is taken"
                ))
                .with_field(name.to_owned()));
            }
        }
    }
    videos.ok_or_else(|| {
        ApiError::invalid(
            "say what happens to the person's own videos: ?videos=delete or ?videos=keep",
        )
        .with_field("videos")
    })
}

#[utoipa::path(
    delete,
    path = "/v1/users/{id}",
    tag = "people",
    description = "Erases a person (`admin` scope): their account, relations both ways, consent grants and revocations, parental controls, preferences, wellbeing, history and seen rings, interest, affinity, page pool, the pages served to them in the impression log, and their events in the event log (made unreadable in place, with their idempotency keys); every video featuring them stops being served at once (deleted); their own videos are deleted or kept as `videos` says (required). Durable and in force for the next request when it answers; a store restored from an older copy forgets them again at open (the erasure log). Anonymous aggregates (video counters, popularity, co-engagement) keep what their events added. Erasing someone erased before answers 200 with `already_erased`; an id never stored is 404.",
    params(
        ("id" = String, Path, description = "the person"),
        ("videos" = OwnVideos, Query, description = "what happens to the videos they made: `delete` or `keep`")
    ),
    responses((status = 200, description = "erased", body = ErasureReport), ErrorResponses)
)]
async fn erase_user(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<ErasureReport>, ApiError> {
    let own = erasure_videos(query.as_deref())?;
    let report = run(&state, move |e| e.erase_user(&user, own)).await?;
    Ok(axum::Json(report))
}

/// Everything stored about a person.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Export {
    /// The person.
    user: UserId,
    /// The records, in the format bulk exports use (JSON tagged by `record`).
    records: Vec<Record>,
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}/export",
    tag = "people",
    description = "Everything stored about a person (`admin` scope), as records tagged by `record` (the format of bulk exports): the account, follows both ways, the blocks and mutes they set, consent, revocations, parental controls, preferences, wellbeing, seen and history, interest, affinity, their events in the log, the pages served to them that the impression log keeps, their videos and the videos they appear in. Empty `records` for a person never stored or erased. Reads the whole event log, impression log and catalogue.",
    params(("id" = String, Path, description = "the person")),
    responses((status = 200, description = "done", body = Export), ErrorResponses)
)]
async fn export_user(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<axum::Json<Export>, ApiError> {
    let who = user.clone();
    let records = run(&state, move |e| e.export_user(&who)).await?;
    Ok(axum::Json(Export { user, records }))
}

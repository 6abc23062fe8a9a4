//! # steerfeed-server
//!
//! The HTTP ranking sidecar behind `steerfeed serve` (the binary is `crates/cli`): the
//! routes in [`app`], which tests drive without a socket, and the accept loop in
//! [`listen`].
//!
//! The server starts listening at once and loads the engine (the model, the store and
//! the index) on a blocking thread; `/readyz` and every `/v1` route answer 503 until it
//! is loaded. The JSON API is in [`api`] (route table there), the error shape and the
//! status of each error class in [`error`], the extractors that keep bad input in that
//! shape in [`extract`].

#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod error;
pub mod extract;
pub mod listen;
pub mod metrics;
pub mod ratelimit;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use steerfeed::Engine;

pub use crate::config::SidecarConfig;

pub use crate::error::ApiError;

/// Shared state of the sidecar.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SidecarConfig,
    engine: OnceLock<Arc<Engine>>,
    metrics: metrics::Metrics,
    /// Engine calls allowed to run at once (one per core).
    engine_slots: tokio::sync::Semaphore,
    /// The token buckets of the API keys.
    limiter: ratelimit::RateLimiter,
}

impl AppState {
    /// State whose engine is not loaded yet.
    pub fn new(config: SidecarConfig) -> Self {
        Self::with_clock(config, Arc::new(ratelimit::MonotonicClock::default()))
    }

    /// State whose rate limiting reads time from `clock` (tests move it by hand).
    pub fn with_clock(config: SidecarConfig, clock: Arc<dyn ratelimit::Clock>) -> Self {
        let limiter = ratelimit::RateLimiter::new(
            config.server.rate_limit_per_second,
            config.server.rate_limit_burst,
            clock,
        );
        Self {
            inner: Arc::new(Inner {
                config,
                limiter,
                engine: OnceLock::new(),
                metrics: metrics::Metrics::default(),
                engine_slots: tokio::sync::Semaphore::new(
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                ),
            }),
        }
    }

    /// State with an engine already loaded.
    pub fn with_engine(engine: Engine) -> Self {
        let state = Self::new(SidecarConfig::for_engine(engine.config().clone()));
        state.set_engine(engine);
        state
    }

    /// Installs the loaded engine (owned, or shared with other states); from then on the
    /// server is ready.
    pub fn set_engine(&self, engine: impl Into<Arc<Engine>>) {
        if self.inner.engine.set(engine.into()).is_err() {
            tracing::warn!("engine already loaded; ignoring the second one");
        }
    }

    /// The engine, once loaded.
    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.inner.engine.get()
    }

    /// The configuration.
    pub fn config(&self) -> &SidecarConfig {
        &self.inner.config
    }

    /// Permits for engine calls: one per core.
    pub fn engine_slots(&self) -> &tokio::sync::Semaphore {
        &self.inner.engine_slots
    }

    /// The rate limiter of the `/v1` routes.
    pub fn limiter(&self) -> &ratelimit::RateLimiter {
        &self.inner.limiter
    }

    /// The metrics registry behind `GET /metrics`.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }
}

/// The sidecar's routes: `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and the JSON
/// API under `/v1`
/// ([`api`]), with the body-size limit and the request timeout on all of them.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config().server.max_body_bytes;
    let timeout = Duration::from_millis(state.config().server.request_timeout_ms);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(api::metrics_route(state.clone()))
        .merge(api::openapi_route())
        .nest("/v1", api::routes(state.clone()))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| async move {
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(resp) => resp,
                    Err(_) => error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "timeout",
                        "the request took too long",
                    ),
                }
            },
        ))
        .with_state(state)
}

/// An answer in the API's one error shape, without a field (see [`ApiError`]).
pub fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.engine() {
        Some(_) => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        None => ApiError::not_ready().into_response(),
    }
}

//! # steerfeed-server
//!
//! The HTTP ranking sidecar behind `steerfeed serve` (the binary is `crates/cli`): the
//! routes in [`app`], which tests drive without a socket, and the accept loop in
//! [`listen`].
//!
//! The server starts listening at once and loads the engine (the model, the store and
//! the index) on a blocking thread; `/readyz` and every `/v1` route answer 503 until it
//! is loaded. The JSON API is in [`api`] (route table there), the API keys and their
//! scopes in [`keys`], the error shape and the status of each error class in
//! [`mod@error`], the extractors that keep bad input in that shape in [`extract`].

#![warn(missing_docs)]

pub mod api;
pub mod bulk;
mod call;
pub mod config;
pub mod console;
pub mod error;
pub mod extract;
pub mod history;
mod inspect;
pub mod keys;
pub mod listen;
pub mod metrics;
pub mod model;
pub mod ratelimit;

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
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
    /// The API keys in force. Each request clones the `Arc` under the read lock and lets
    /// go; a reload swaps in a whole new set under the write lock, so a request sees the
    /// old set or the new one, never a mix, and one in flight keeps the set it started
    /// with.
    keys: RwLock<Arc<keys::KeySet>>,
    /// Held through a reload, so that two reloads cannot finish in the other order than
    /// they read the file.
    reloading: Mutex<()>,
    /// The console's signed-in sessions.
    sessions: console::Sessions,
    /// The metrics' recent history, for the console.
    history: history::History,
    /// When the state was made: the history's monotonic clock starts here.
    started: std::time::Instant,
    /// The people counted last and when (a count scans the accounts).
    people: Mutex<Option<(std::time::Instant, u64)>>,
}

impl AppState {
    /// State whose engine is not loaded yet, with the API keys of `config` (its key file
    /// read now); an error when the key file cannot be read or does not parse. What the
    /// server starts with.
    pub fn try_new(config: SidecarConfig) -> Result<Self, keys::KeyFileError> {
        let keys = keys::KeySet::load(&config.server)?;
        Ok(Self::build(
            config,
            Arc::new(ratelimit::MonotonicClock::default()),
            keys,
        ))
    }

    /// State whose engine is not loaded yet. A key file that cannot be read or does not
    /// parse is logged, and the state refuses every keyed request (401) until
    /// [`AppState::reload_keys`] succeeds: it never falls back to no auth.
    pub fn new(config: SidecarConfig) -> Self {
        Self::with_clock(config, Arc::new(ratelimit::MonotonicClock::default()))
    }

    /// [`AppState::new`] with rate limiting reading time from `clock` (tests move it by
    /// hand).
    pub fn with_clock(config: SidecarConfig, clock: Arc<dyn ratelimit::Clock>) -> Self {
        let keys = keys::KeySet::load(&config.server).unwrap_or_else(|e| {
            tracing::error!(
                error = %e,
                "API keys not loaded: every keyed request is refused until a reload succeeds"
            );
            keys::KeySet::deny_all()
        });
        Self::build(config, clock, keys)
    }

    fn build(config: SidecarConfig, clock: Arc<dyn ratelimit::Clock>, keys: keys::KeySet) -> Self {
        let limiter = ratelimit::RateLimiter::new(
            config.server.rate_limit_per_second,
            config.server.rate_limit_burst,
            clock,
        );
        let s = &config.server;
        let samples = (s.metrics_history_s / s.metrics_sample_s.max(1)) as usize + 1;
        Self {
            inner: Arc::new(Inner {
                sessions: console::Sessions::default(),
                history: history::History::new(samples),
                started: std::time::Instant::now(),
                people: Mutex::new(None),
                config,
                limiter,
                keys: RwLock::new(Arc::new(keys)),
                reloading: Mutex::new(()),
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

    /// The console's sessions.
    pub fn sessions(&self) -> &console::Sessions {
        &self.inner.sessions
    }

    /// The metrics' recent history.
    pub fn history(&self) -> &history::History {
        &self.inner.history
    }

    /// Seconds since the state was made, on a monotonic clock.
    pub fn uptime_s(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64()
    }

    /// The people counted within the last minute, if any (a count scans the accounts).
    pub fn recent_people_count(&self) -> Option<u64> {
        let cached = *self
            .inner
            .people
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cached
            .filter(|(at, _)| at.elapsed() < Duration::from_secs(60))
            .map(|(_, n)| n)
    }

    /// Keeps `n` as the people counted now.
    pub fn set_people_count(&self, n: u64) {
        *self
            .inner
            .people
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((std::time::Instant::now(), n));
    }

    /// Takes one sample of the metrics, the events logged and the catalogue's size into
    /// the history (nothing while the engine loads).
    pub fn sample_metrics(&self) {
        let Some(engine) = self.engine() else {
            return;
        };
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.history().push(history::Sample {
            at,
            t: self.uptime_s(),
            events: engine.store().event_count(),
            videos: engine.store().video_count(),
            reading: self.metrics().reading(),
        });
    }

    /// The API keys in force now.
    pub fn keys(&self) -> Arc<keys::KeySet> {
        // The lock guards one pointer swap: poisoned, the pointer is still whole.
        self.inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the keys again (`server.api_keys` and the key file, [`keys`]) and puts them
    /// in force at once, for the requests that start from then on; answers how many keys
    /// are in force. When the file cannot be read or does not parse, the keys in force
    /// stay as they were and the error is logged and answered. Logs the outcome (counts,
    /// never keys). Blocks on the file: call it off the async threads.
    pub fn reload_keys(&self) -> Result<usize, keys::KeyFileError> {
        let _one_at_a_time = self
            .inner
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let set = match keys::KeySet::load(&self.config().server) {
            Ok(set) => Arc::new(set),
            Err(e) => {
                tracing::error!(
                    error = %e,
                    keys_in_force = self.keys().len(),
                    "API keys not reloaded; the keys in force stay as they were"
                );
                return Err(e);
            }
        };
        *self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&set);
        // After the swap: a removed key is refused from now on, so its bucket stays gone,
        // and the console sessions of a key that is no longer an admin key end.
        self.limiter().retain(|id| set.has_bucket(id));
        self.sessions().retain_keys(&set);
        tracing::info!(
            keys = set.len(),
            feed = set.count(keys::Scope::Feed),
            write = set.count(keys::Scope::Write),
            admin = set.count(keys::Scope::Admin),
            "API keys reloaded"
        );
        Ok(set.len())
    }
}

/// The sidecar's routes: `/healthz`, `/readyz`, `/metrics`, `/openapi.json` and the JSON
/// API under `/v1`
/// ([`api`]), with the body-size limit and the request timeout on all of them.
pub fn app(state: AppState) -> Router {
    let body_limit = state.config().server.max_body_bytes;
    let timeout = Duration::from_millis(state.config().server.request_timeout_ms);
    Router::new()
        .route("/healthz", get(healthz).fallback(api::method_not_allowed))
        .route("/readyz", get(readyz).fallback(api::method_not_allowed))
        .merge(api::metrics_route(state.clone()))
        .merge(api::openapi_route())
        .merge(console::routes())
        .nest("/v1", api::routes(state.clone()))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            console::same_origin,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                if bulk::UNTIMED_ROUTES.contains(&req.uri().path()) {
                    return next.run(req).await;
                }
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

/// Samples the metrics into the history every `server.metrics_sample_s`, for as long as
/// the future runs.
pub async fn sample_metrics_every(state: AppState) {
    let every = Duration::from_secs(state.config().server.metrics_sample_s.max(1));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.sample_metrics();
    }
}

/// An answer in the API's one error shape, without a field (see [`ApiError`]).
pub fn error(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    let Some(engine) = state.engine().cloned() else {
        return ApiError::not_ready().into_response();
    };
    // A shared store asks its servers, which blocks: off the async threads.
    match tokio::task::spawn_blocking(move || engine.store().health()).await {
        Ok(Ok(())) => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        // A store that must stop serving (a shared backend's mirror that diverged, or a
        // server it cannot reach).
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::from(steerfeed::Error::internal("readiness", e)).into_response(),
    }
}

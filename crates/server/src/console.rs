//! The operator console at `/console`: a page, its script and its style sheet, built into
//! the binary (plain JavaScript, no build step and no CDN), and the session that signs an
//! operator in.
//!
//! Signing in sends an `admin` key once (`POST /console/session`); the answer sets an
//! `HttpOnly`, `SameSite=Strict` cookie naming a random session and returns the session's
//! CSRF token. From then on the console calls the ordinary `/v1` routes with the cookie
//! instead of the key ([`Session`], checked by the key check in [`crate::api`]); every
//! request that may write (any method but `GET` and `HEAD`) must also carry the token in
//! `x-csrf-token`, which a page of another origin cannot read. A session ends at
//! `server.console_session_s`, at sign-out, or as soon as its key is no longer in force
//! as an `admin` key (a key-file reload).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::keys::{KeySet, Scope, constant_time_eq};
use crate::ratelimit::KeyId;

/// The session cookie's name.
pub const COOKIE: &str = "steerfeed_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions kept at once; signing in past it ends the session closest to its end.
const MAX_SESSIONS: usize = 1_024;

const INDEX_HTML: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

/// Where the console's pages may load from and send to: this server only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// One signed-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    csrf: String,
    key: KeyId,
    expires: Instant,
}

impl Session {
    /// The bucket of the key the session was made with.
    pub fn key(&self) -> KeyId {
        self.key
    }

    /// True when `token` is this session's CSRF token (compared over every byte).
    pub fn csrf_matches(&self, token: &[u8]) -> bool {
        constant_time_eq(self.csrf.as_bytes(), token)
    }
}

/// Wrong keys one client may try in [`SIGN_IN_WINDOW`] before its sign-ins are refused
/// (429) until the window ends.
pub const SIGN_IN_FAILURES: u32 = 10;
/// The window the failed sign-ins of a client are counted over.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);
/// Clients whose failures are remembered at once; past it the oldest are forgotten.
const MAX_CLIENTS: usize = 10_000;

/// The sessions in force, and the failed sign-ins per client.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// Client address (none: the request did not come through the accept loop) -> when
    /// its window started and the wrong keys it tried in it.
    failures: Mutex<HashMap<Option<IpAddr>, (Instant, u32)>>,
}

fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ApiError::internal(format!("no randomness for a session: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session for `key` lasting `ttl`: its cookie value and the session.
    fn create(&self, key: KeyId, ttl: Duration) -> Result<(String, Session), ApiError> {
        let token = random_token()?;
        let session = Session {
            csrf: random_token()?,
            key,
            expires: Instant::now() + ttl,
        };
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        while map.len() >= MAX_SESSIONS {
            let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(t, _)| t.clone())
            else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(token.clone(), session.clone());
        Ok((token, session))
    }

    /// The session named by `token`, while it lasts.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut map = self.lock();
        match map.get(token) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(token);
                None
            }
            None => None,
        }
    }

    fn remove(&self, token: &str) {
        self.lock().remove(token);
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<Option<IpAddr>, (Instant, u32)>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `client` must wait before it may sign in again, when it tried too many
    /// wrong keys lately.
    fn locked_out(&self, client: Option<IpAddr>) -> Option<Duration> {
        let (start, count) = *self.failures().get(&client)?;
        let left = SIGN_IN_WINDOW.checked_sub(start.elapsed())?;
        (count >= SIGN_IN_FAILURES).then_some(left)
    }

    /// Counts a wrong key from `client`.
    fn failed(&self, client: Option<IpAddr>) {
        let mut f = self.failures();
        let now = Instant::now();
        if f.len() >= MAX_CLIENTS {
            f.retain(|_, (start, _)| now.duration_since(*start) < SIGN_IN_WINDOW);
            while f.len() >= MAX_CLIENTS {
                let Some(oldest) = f.iter().min_by_key(|(_, (s, _))| *s).map(|(k, _)| *k) else {
                    break;
                };
                f.remove(&oldest);
            }
        }
        let entry = f.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= SIGN_IN_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// Forgets `client`'s failures (it signed in).
    fn succeeded(&self, client: Option<IpAddr>) {
        self.failures().remove(&client);
    }

    /// Ends the sessions whose key is not an `admin` key of `keys` (after a reload).
    pub fn retain_keys(&self, keys: &KeySet) {
        self.lock().retain(|_, s| still_admin(keys, s));
    }
}

/// True while the key `session` was made with is an `admin` key in force (without keys,
/// a session made without one).
fn still_admin(keys: &KeySet, session: &Session) -> bool {
    if keys.required() {
        keys.by_id(session.key)
            .is_some_and(|k| k.scope().allows(Scope::Admin))
    } else {
        session.key == KeyId::SHARED
    }
}

/// The session cookie's value in a request's `Cookie` headers.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// True for the methods that never write (the only ones a session may use without its
/// CSRF token).
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// The console's routes: the page and its assets, and the session.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
        .route(
            "/console/session",
            get(current).post(sign_in).delete(sign_out),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    /// An `admin` API key (ignored when the server runs without keys).
    #[serde(default)]
    key: String,
}

#[derive(Debug, serde::Serialize)]
struct Signed {
    /// The token every writing request of this session carries in `x-csrf-token`.
    csrf: String,
    /// Seconds the session has left.
    expires_in_s: u64,
    /// False when the server runs without keys (loopback only).
    auth: bool,
}

fn signed(session: &Session, auth: bool) -> Signed {
    Signed {
        csrf: session.csrf.clone(),
        expires_in_s: session
            .expires
            .saturating_duration_since(Instant::now())
            .as_secs(),
        auth,
    }
}

/// `POST /console/session {"key": ...}`: signs in with an `admin` key (401 for a wrong
/// key, 403 for a narrower one) and sets the session cookie. A client that tried
/// [`SIGN_IN_FAILURES`] wrong or narrower keys within [`SIGN_IN_WINDOW`] is answered 429
/// `rate_limited`, right key or not, until the window ends.
async fn sign_in(
    State(state): State<AppState>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let client = peer.map(|p| p.0.0.ip());
    if let Some(wait) = state.sessions().locked_out(client) {
        let secs = wait.as_secs().max(1);
        let mut resp = ApiError::rate_limited(format!(
            "too many wrong keys from this address: try again in {secs} s"
        ))
        .into_response();
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(resp);
    }
    let keys = state.keys();
    let id = if keys.required() {
        let Some(key) = keys.find(body.key.trim().as_bytes()) else {
            state.sessions().failed(client);
            return Err(ApiError::unauthorized("wrong API key"));
        };
        if !key.scope().allows(Scope::Admin) {
            state.sessions().failed(client);
            return Err(ApiError::forbidden(Scope::Admin, key.scope()));
        }
        key.id()
    } else {
        KeyId::SHARED
    };
    state.sessions().succeeded(client);
    let ttl = Duration::from_secs(state.config().server.console_session_s);
    let (token, session) = state.sessions().create(id, ttl)?;
    // Behind a proxy that ends TLS, the cookie is only ever sent back over TLS.
    let secure = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let cookie = HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::internal(format!("session cookie: {e}")))?;
    let mut resp = axum::Json(signed(&session, keys.required())).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The request's session, if its cookie names one in force whose key is still an
/// `admin` key.
fn session_of(state: &AppState, headers: &HeaderMap) -> Option<(String, Session)> {
    let token = session_cookie(headers)?;
    let session = state.sessions().get(token)?;
    if !still_admin(&state.keys(), &session) {
        // Ended for good: the same key put back later does not bring it back.
        state.sessions().remove(token);
        return None;
    }
    Some((token.to_owned(), session))
}

/// `GET /console/session`: the session the cookie names (with its CSRF token), so that a
/// reloaded page stays signed in; 401 without one.
async fn current(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session_of(&state, &headers) {
        Some((_, s)) => {
            let mut resp = axum::Json(signed(&s, state.keys().required())).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        None => ApiError::unauthorized("not signed in").into_response(),
    }
}

/// `DELETE /console/session`: signs out (the CSRF token required, as for every write).
async fn sign_out(State(state): State<AppState>, req: Request) -> Response {
    let Some((token, session)) = session_of(&state, req.headers()) else {
        return ApiError::unauthorized("not signed in").into_response();
    };
    if !carries_token(&session, req.headers()) {
        return csrf_refused().into_response();
    }
    state.sessions().remove(&token);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "steerfeed_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    resp
}

/// True when `headers` carry `session`'s CSRF token.
fn carries_token(session: &Session, headers: &HeaderMap) -> bool {
    let token = headers
        .get(CSRF_HEADER)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    session.csrf_matches(token)
}

/// Refuses what another site's page sent through a browser, on every route: a request
/// whose `Origin` is not this server (the `Host` it was sent to) or whose
/// `Sec-Fetch-Site` is not `same-origin` or `none` (a page of another port of the same
/// host counts as another site). Browsers set both headers and pages cannot; other
/// clients send neither and are not affected. Without keys (a loopback server), the
/// `Host` must name a loopback address too, so that a DNS name rebound to 127.0.0.1
/// cannot reach the API either. 403 `cross_origin`.
pub async fn same_origin(
    State(state): State<AppState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = req.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text(header::HOST.as_str());
    let foreign_origin = text(header::ORIGIN.as_str()).is_some_and(|origin| {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        authority.is_none() || authority != host
    });
    let cross_site = text("sec-fetch-site")
        .is_some_and(|v| !v.eq_ignore_ascii_case("same-origin") && !v.eq_ignore_ascii_case("none"));
    let rebound = !state.keys().required() && host.is_some_and(|h| !is_loopback_host(h));
    if foreign_origin || cross_site || rebound {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "refused: sent by a page of another site, or to a host name that is not this \
             server's",
        )
        .into_response();
    }
    next.run(req).await
}

/// True for `localhost`, `127.x.y.z` and `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// 403 `csrf`: a session's write without its token.
pub fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "csrf",
        "a console session's write must carry its CSRF token in x-csrf-token",
    )
}

/// The session a keyless request signs in with, for the key check: `Ok(None)` when the
/// request names no session in force, an error when it names one but writes without the
/// token.
pub fn authorize_session(state: &AppState, req: &Request) -> Result<Option<KeyId>, ApiError> {
    let Some((_, session)) = session_of(state, req.headers()) else {
        return Ok(None);
    };
    if !is_safe(req.method()) && !carries_token(&session, req.headers()) {
        return Err(csrf_refused());
    }
    Ok(Some(session.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        assert_eq!(session_cookie(&h), None);
        h.append(
            header::COOKIE,
            HeaderValue::from_static("x=y;steerfeed_session=abc ; z=1"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
    }

    #[test]
    fn loopback_hosts_are_told_from_other_names() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:9",
            "127.8.0.1",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:80",
            "[::2]:80",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn wrong_keys_lock_out_their_client_only() {
        let s = Sessions::default();
        let (a, b) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        for _ in 0..SIGN_IN_FAILURES - 1 {
            s.failed(a);
        }
        assert_eq!(s.locked_out(a), None);
        s.failed(a);
        let wait = s.locked_out(a).unwrap();
        assert!(wait <= SIGN_IN_WINDOW && wait > SIGN_IN_WINDOW / 2);
        assert_eq!(s.locked_out(b), None);
        assert_eq!(s.locked_out(None), None);
        s.succeeded(a);
        assert_eq!(s.locked_out(a), None);
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let s = Sessions::default();
        let (t, session) = s.create(KeyId(1), Duration::from_secs(60)).unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(session.csrf, t);
        assert!(s.get(&t).is_some());
        assert!(s.get("nope").is_none());
        let (gone, _) = s.create(KeyId(1), Duration::ZERO).unwrap();
        assert!(s.get(&gone).is_none(), "an expired session");
        for _ in 0..MAX_SESSIONS + 5 {
            s.create(KeyId(2), Duration::from_secs(600)).unwrap();
        }
        assert!(s.lock().len() <= MAX_SESSIONS);
        // The session closest to its end went first.
        assert!(s.get(&t).is_none());
        assert!(session.csrf_matches(session.csrf.as_bytes()));
        assert!(!session.csrf_matches(b""));
    }
}

//! The operator's read-only routes, which the console is built on: the sidecar's numbers
//! and their recent history, a person, a preview of their next page, one video's verdict
//! for one person, a video, and the steering parser on its own. None of them writes.

use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use steerfeed::{
    AgeBand, Constraints, FeedRequest, PersonView, Preview, Timestamp, VideoVerdict, VideoView,
};

use crate::AppState;
use crate::call::run;
use crate::error::{ApiError, ErrorResponses};
use crate::extract::{ApiJson, UserPath, UserVideoPath, VideoPath};
use crate::history::{MAX_POINTS, Point};

/// The query parameters in `query`, each at most once and each among `allowed`.
fn query_params<'a>(
    query: Option<&str>,
    allowed: &[&'a str],
) -> Result<Vec<(&'a str, String)>, ApiError> {
    let mut out: Vec<(&'a str, String)> = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let Some(&known) = allowed.iter().find(|a| **a == name.as_ref()) else {
            return Err(ApiError::invalid(format!(
                "unknown query parameter {name:?}: this route takes {}",
                allowed.join(", ")
            ))
            .with_field(name.into_owned()));
        };
        if out.iter().any(|(n, _)| *n == known) {
            return Err(
                ApiError::invalid(format!("{known} is given more than once")).with_field(known),
            );
        }
        out.push((known, value.into_owned()));
    }
    Ok(out)
}

/// An integer query parameter within `min..=max`.
fn integer(name: &'static str, value: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(format!("{name} must be a whole number from {min} to {max}"))
                .with_field(name)
        })
}

/// The sidecar's numbers now and over the last `window_s` seconds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Videos in the catalogue (not deleted).
    pub videos: u64,
    /// Accounts (counted at most once a minute: a count scans them).
    pub people: u64,
    /// Events logged.
    pub events: u64,
    /// Videos in the vector index.
    pub indexed: usize,
    /// Seconds between samples (`server.metrics_sample_s`).
    pub sample_s: u64,
    /// The window's points, oldest first (empty until two samples were taken).
    pub points: Vec<Point>,
}

#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "operators",
    description = "The catalogue's size, the people, the events logged, and over the last `window_s` seconds (default 3600, at most `server.metrics_history_s`) up to `points` points (default 60, at most 360) of events per second, feed requests per second and latency (mean, p50, p99) of the feed and of each pipeline stage, and candidates per feed from each source, from the samples the sidecar takes every `server.metrics_sample_s`.",
    params(
        ("window_s" = Option<u64>, Query, minimum = 1, maximum = 604800, description = "seconds of history"),
        ("points" = Option<u64>, Query, minimum = 1, maximum = 360, description = "most points")
    ),
    responses((status = 200, description = "done", body = Stats), ErrorResponses)
)]
pub(crate) async fn stats(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Stats>, ApiError> {
    let (mut window, mut points) = (3_600, 60);
    let history = state.config().server.metrics_history_s;
    for (name, value) in query_params(query.as_deref(), &["window_s", "points"])? {
        match name {
            "window_s" => window = integer("window_s", &value, 1, 7 * 86_400)?,
            _ => points = integer("points", &value, 1, MAX_POINTS as u64)?,
        }
    }
    let window = window.min(history);
    let people = match state.recent_people_count() {
        Some(n) => n,
        None => {
            let n = run(&state, |e| e.store().user_count()).await?;
            state.set_people_count(n);
            n
        }
    };
    let engine = state.engine().ok_or_else(ApiError::not_ready)?;
    let (videos, events, indexed) = (
        engine.store().video_count(),
        engine.store().event_count(),
        engine.indexed_videos(),
    );
    let now = state.uptime_s();
    Ok(axum::Json(Stats {
        videos,
        people,
        events,
        indexed,
        sample_s: state.config().server.metrics_sample_s,
        points: state.history().series(now, window as f64, points as usize),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    tag = "operators",
    description = "A person's state: their account, follows, blocks and mutes, who may use their likeness and what they revoked, parental controls, preferences in force (in words), wellbeing today and the limits that apply. An unknown user is 404.",
    params(("id" = String, Path, description = "the user")),
    responses((status = 200, description = "done", body = PersonView), ErrorResponses)
)]
pub(crate) async fn person(
    State(state): State<AppState>,
    UserPath(user): UserPath,
) -> Result<axum::Json<PersonView>, ApiError> {
    let view = run(&state, move |e| e.person(&user, Timestamp::now())).await?;
    Ok(axum::Json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PreviewBody {
    /// Items on the page.
    #[serde(
        default = "default_limit",
        deserialize_with = "steerfeed::wire::integral"
    )]
    #[schema(default = 20, minimum = 1, maximum = 100)]
    limit: u32,
    /// Preferences in words to rank with instead of the stored ones (compiled with the
    /// person's policy; nothing is stored).
    #[serde(default)]
    #[schema(schema_with = crate::extract::preference_text_schema)]
    text: Option<String>,
}

fn default_limit() -> u32 {
    20
}

#[utoipa::path(
    post,
    path = "/v1/users/{id}/preview",
    tag = "operators",
    description = "The page the person would get if they asked now, ranked from scratch, each item with its explanation and its score by term, with the constraints applied in words and what each stage did; with `text`, ranked with those preferences in place of the stored ones. Nothing is written: no item marked seen, no teen item or minute counted, no page pool kept, no preference stored. An unknown user is 404.",
    params(("id" = String, Path, description = "the user")),
    request_body = PreviewBody,
    responses((status = 200, description = "done", body = Preview), ErrorResponses)
)]
pub(crate) async fn preview(
    State(state): State<AppState>,
    UserPath(user): UserPath,
    ApiJson(body): ApiJson<PreviewBody>,
) -> Result<axum::Json<Preview>, ApiError> {
    let limit = body.limit;
    let text = body.text;
    let p = run(&state, move |e| {
        e.preview(&FeedRequest::new(user, limit)?, text.as_deref())
    })
    .await?;
    Ok(axum::Json(p))
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}/explain/{video}",
    tag = "operators",
    description = "Whether the person could be served the video now and, if not, what stops it: a gate (bedtime, daily limit, scroll cap), the filters that remove it (consent, blocked, seen, deleted, steering, safety, audience, duration) or no source proposing it; with its score by term and its place on the person's next page of `limit` items (default 20). Nothing is written. An unknown user or video is 404.",
    params(
        ("id" = String, Path, description = "the user"),
        ("video" = String, Path, description = "the video"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "the page's size")
    ),
    responses((status = 200, description = "done", body = VideoVerdict), ErrorResponses)
)]
pub(crate) async fn explain(
    State(state): State<AppState>,
    UserVideoPath(user, video): UserVideoPath,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<VideoVerdict>, ApiError> {
    let mut limit = 20;
    for (_, value) in query_params(query.as_deref(), &["limit"])? {
        limit = integer("limit", &value, 1, 100)? as u32;
    }
    let v = run(&state, move |e| {
        e.explain_video(&FeedRequest::new(user, limit)?, &video)
    })
    .await?;
    Ok(axum::Json(v))
}

#[utoipa::path(
    get,
    path = "/v1/videos/{id}",
    tag = "operators",
    description = "A video (without its embedding), its time-decayed action counts, and each person in its cameos with whether their consent covers it now. An unknown video is 404.",
    params(("id" = String, Path, description = "the video")),
    responses((status = 200, description = "done", body = VideoView), ErrorResponses)
)]
pub(crate) async fn video(
    State(state): State<AppState>,
    VideoPath(id): VideoPath,
) -> Result<axum::Json<VideoView>, ApiError> {
    let view = run(&state, move |e| e.video_view(&id, Timestamp::now())).await?;
    Ok(axum::Json(view))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParseBody {
    /// Preferences in words.
    #[schema(schema_with = crate::extract::preference_text_schema)]
    text: String,
    /// The policy to compile with (teens: the teen policy).
    #[serde(default)]
    age_band: Option<AgeBand>,
}

/// Preferences compiled, not stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Parsed {
    /// The constraints, with what policy rejected and what was unclear.
    constraints: Constraints,
    /// The constraints in words.
    summary: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/v1/steering/parse",
    tag = "preferences",
    description = "Compiles preferences in words into constraints for a viewer of `age_band` (default adult), with what policy rejected and what was unclear, and says them back in words. Nothing is stored.",
    request_body = ParseBody,
    responses((status = 200, description = "done", body = Parsed), ErrorResponses)
)]
pub(crate) async fn parse(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ParseBody>,
) -> Result<axum::Json<Parsed>, ApiError> {
    if body.text.trim().is_empty() {
        return Err(ApiError::invalid("text is empty").with_field("text"));
    }
    let band = body.age_band.unwrap_or(AgeBand::Adult);
    let mut constraints = run(&state, move |e| {
        e.parse_preferences(&body.text, band, Timestamp::now())
    })
    .await?;
    let summary = constraints.describe();
    Ok(axum::Json(Parsed {
        constraints,
        summary,
    }))
}

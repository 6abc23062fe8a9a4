//! The model of the action heads in force: `GET /v1/model` says which it is, `PUT
//! /v1/model` puts a model file in force, `POST /v1/model/rollback` returns to the one
//! before; each of the `default` rank profile, or of the one `?profile=NAME` names.
//! `steerfeed model` with `--url` is their client. Each replica of a shared deployment
//! holds its own: call each, or name the file in `[learning] model`.

use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use steerfeed::model::{ModelInfo, RankModel};

use crate::AppState;
use crate::error::{ApiError, ErrorResponses};
use crate::extract::ApiJson;

/// The largest model file taken. Heads and report are a few KiB; the ranker's trees
/// take about 8 KiB each at depth 6 (`steerfeed train --ranker-rounds 100` writes
/// under 1 MiB), so this holds rankers of several hundred trees.
const MAX_MODEL_BYTES: usize = 8 << 20;

/// A model file, as `steerfeed train` wrote it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    /// The file's whole text: the `steerfeed-model` header line, then the JSON body.
    #[schema(max_length = 8388608)]
    pub file: String,
}

/// The profile `?profile=NAME` names (`default` without a query); any other
/// parameter is refused.
fn profile_of(query: Option<&str>) -> Result<String, ApiError> {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return Ok(steerfeed::DEFAULT_PROFILE.to_owned());
    };
    match q.split_once('=') {
        Some(("profile", name)) if !name.is_empty() && !name.contains('&') => Ok(name.to_owned()),
        _ => Err(ApiError::invalid("the only parameter is profile=NAME").with_field("profile")),
    }
}

#[utoipa::path(
    get,
    path = "/v1/model",
    tag = "operation",
    description = "The model of the action heads in force (`admin` scope): its id (`hand-set` when no trained model is), its training metadata, and the id a rollback would return to.",
    params(("profile" = Option<String>, Query, description = "A rank profile (default: `default`); an unknown one is 404", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]+$")),
    responses((status = 200, description = "the model in force", body = Object), ErrorResponses)
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<ModelInfo>, ApiError> {
    let profile = profile_of(query.as_deref())?;
    Ok(axum::Json(
        crate::call::run(&state, move |e| e.model_info_for(&profile)).await?,
    ))
}

#[utoipa::path(
    put,
    path = "/v1/model",
    tag = "operation",
    description = "Puts a trained model in force for every request that starts scoring afterwards (`admin` scope). The file's checksum, format and feature schema are checked first: a damaged file or another schema is answered 422 with the reason, and the model in force keeps serving. The model it replaces is kept for `POST /v1/model/rollback`.",
    request_body = ModelBody,
    params(("profile" = Option<String>, Query, description = "A rank profile (default: `default`); an unknown one is 404", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]+$")),
    responses((status = 200, description = "the model now in force", body = Object), ErrorResponses)
)]
pub(crate) async fn set(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    ApiJson(body): ApiJson<ModelBody>,
) -> Result<axum::Json<ModelInfo>, ApiError> {
    let profile = profile_of(query.as_deref())?;
    if body.file.len() > MAX_MODEL_BYTES {
        return Err(
            ApiError::invalid(format!("a model file is at most {MAX_MODEL_BYTES} bytes"))
                .with_field("file"),
        );
    }
    let model = RankModel::from_bytes(body.file.as_bytes())?;
    Ok(axum::Json(
        crate::call::run(&state, move |e| e.set_model_for(&profile, model)).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/model/rollback",
    tag = "operation",
    description = "Puts the model before the one in force back in force (`admin` scope); the hand-set heads when that was none. 422 when there is nothing to return to.",
    params(("profile" = Option<String>, Query, description = "A rank profile (default: `default`); an unknown one is 404", min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_-]+$")),
    responses((status = 200, description = "the model now in force", body = Object), ErrorResponses)
)]
pub(crate) async fn rollback(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<ModelInfo>, ApiError> {
    let profile = profile_of(query.as_deref())?;
    Ok(axum::Json(
        crate::call::run(&state, move |e| e.rollback_model_for(&profile)).await?,
    ))
}

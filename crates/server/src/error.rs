//! The one error shape of the API, `{"error": {"code", "message", "field"}}`, and the
//! one exhaustive map from the engine's error classes to HTTP statuses.
//!
//! | status | code | when |
//! |---|---|---|
//! | 400 | `malformed_json`, `bad_path`, `bad_request` | the body is not JSON (or not UTF-8), a path id is not a valid id |
//! | 401 | `unauthorized` | the bearer token is missing or wrong |
//! | 403 | `forbidden` | the key's scope is narrower than the route's ([`crate::keys`]) |
//! | 404 | `not_found` | an unknown user, video or route |
//! | 405 | `method_not_allowed` | a known path with another method |
//! | 409 | `conflict` | the request conflicts with the stored state |
//! | 413 | `too_large` | the body or a batch is over its limit |
//! | 422 | `invalid_input` | JSON that parses but fails validation |
//! | 429 | `rate_limited` | the API key is over `server.rate_limit_per_second` (with `retry-after`) |
//! | 500 | `internal` | a bug or a failed dependency: logged, never described |
//! | 503 | `not_ready`, `unavailable`, `timeout` | the engine is loading, a dependency is unavailable, the request took too long |

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use steerfeed::ErrorClass;

use crate::keys::Scope;

/// The error shape on the wire, for the OpenAPI document (`ApiError` is what handlers
/// return; its `IntoResponse` writes exactly this).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`invalid_input`, `not_found`, `rate_limited`, ...).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field the error is about, when there is one (`videos[3].embedding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The error answers every `/v1` route may give, each in the [`ErrorBody`] shape, for
/// the OpenAPI document.
#[derive(Debug)]
pub struct ErrorResponses;

impl utoipa::IntoResponses for ErrorResponses {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, ResponsesBuilder};
        let cases = [
            ("400", "malformed JSON or a bad id in the path"),
            ("401", "a missing or wrong bearer token"),
            (
                "403",
                "the key's scope is narrower than the one the operation needs",
            ),
            ("404", "an unknown user, video or route"),
            ("409", "the request conflicts with the stored state"),
            ("413", "the body or a batch is over its limit"),
            (
                "422",
                "JSON that parses but fails validation (`field` says where)",
            ),
            (
                "429",
                "the API key is over its rate limit (see `retry-after`)",
            ),
            ("500", "an internal error (details in the server log)"),
            (
                "503",
                "the engine is loading or unavailable, or the request timed out",
            ),
        ];
        let mut b = ResponsesBuilder::new();
        for (status, description) in cases {
            b = b.response(
                status,
                ResponseBuilder::new().description(description).content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                ),
            );
        }
        b.build().into()
    }
}

/// An error answered to a client, in the API's one error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`invalid_input`, `not_found`, ...).
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field the error is about, when there is one.
    pub field: Option<String>,
}

impl ApiError {
    /// An error without a field.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the field the error is about.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the body is not well-formed JSON.
    pub fn malformed_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    /// 422: the body parses but a value is not acceptable.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
    }

    /// 413: the body or a batch is over its limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }

    /// 404: an unknown entity or route.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401: a missing or wrong bearer token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: the key is right but its scope, `held`, is narrower than the route's, `needed`.
    pub fn forbidden(needed: Scope, held: Scope) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this route needs an API key of scope {needed}; this key's scope is {held} \
                 (scopes: feed < write < admin)"
            ),
        )
    }

    /// 429: the API key is over its rate limit (the caller adds `retry-after`).
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    /// 503: the engine is still loading.
    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the engine is still loading",
        )
    }

    /// 500: logs `detail` with `tracing::error!` and answers without it.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the details are in the server log",
        )
    }
}

impl ApiError {
    /// The error as the inside of the error shape (for answers that carry an error per
    /// item, such as an import's outcomes).
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_owned(),
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }
}

impl From<steerfeed::Error> for ApiError {
    fn from(e: steerfeed::Error) -> Self {
        let (status, code) = match e.class() {
            ErrorClass::InvalidInput => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            ErrorClass::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ErrorClass::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorClass::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorClass::Unavailable => {
                tracing::warn!(error = %e, "engine unavailable");
                return Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the engine cannot serve this request right now; retry later",
                );
            }
            ErrorClass::Internal => return Self::internal(&e),
        };
        Self {
            status,
            code,
            message: e.to_string(),
            field: e.field().map(str::to_owned),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("code".into(), self.code.into());
        body.insert("message".into(), self.message.into());
        if let Some(field) = self.field {
            body.insert("field".into(), field.into());
        }
        let mut resp = (
            self.status,
            Json(serde_json::json!({ "error": serde_json::Value::Object(body) })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_status_and_internal_details_stay_out() {
        let cases = [
            (
                steerfeed::Error::invalid("limit", "bad"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                steerfeed::Error::TooLarge {
                    field: "text",
                    limit: 1,
                    got: 2,
                },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                steerfeed::Error::not_found(steerfeed::Entity::User, "u"),
                StatusCode::NOT_FOUND,
            ),
            (
                steerfeed::Error::Conflict {
                    entity: steerfeed::Entity::Event,
                    id: "k".into(),
                    reason: "r".into(),
                },
                StatusCode::CONFLICT,
            ),
            (
                steerfeed::Error::Unavailable {
                    what: "/secret/path".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                steerfeed::Error::internal("store", "/secret/path"),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in cases {
            let api = ApiError::from(e);
            assert_eq!(api.status, status);
            assert!(!api.message.contains("/secret/path"), "{api:?}");
        }
        let api = ApiError::from(steerfeed::Error::invalid("limit", "bad"));
        assert_eq!(api.field.as_deref(), Some("limit"));
    }
}

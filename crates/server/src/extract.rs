//! Extractors whose rejections are [`ApiError`]s, so that every bad request gets the
//! API's one error shape: JSON bodies and the ids in paths.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use steerfeed::{UserId, VideoId};

use crate::error::ApiError;

/// A JSON body. The body is read under the configured size limit (413 beyond it) and
/// parsed with `serde_json`: text that is not JSON, or not UTF-8, is a 400
/// `malformed_json`; JSON that does not fit the type (a missing field, a wrong type, an
/// unknown variant, a value the type's own checks refuse such as a NaN embedding) is a
/// 422 `invalid_input` whose `field` is the path to the offending value
/// (`videos[3].embedding`). The `Content-Type` is not checked.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large("the request body is larger than server.max_body_bytes")
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("cannot read the request body: {}", r.body_text()),
                )
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON body into `T` with the statuses described on [`ApiJson`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Syntax first, over the whole text: a typed parse stops at the first value that
    // does not fit, so truncated text such as `[1, 2,` would read as a 422 about its
    // first element rather than the 400 it is.
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| json_error(&e, None))?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&inner, (path != ".").then_some(path))
    })?;
    de.end().map_err(|e| json_error(&e, None))?;
    Ok(value)
}

fn json_error(e: &serde_json::Error, field: Option<String>) -> ApiError {
    use serde_json::error::Category;
    // A number the grammar allows but the target type cannot hold (1e39 for an f32,
    // 1e400 for anything) is a value out of range, however serde_json's features class
    // it (with `float_roundtrip`, which a dependency may turn on, it is a syntax error).
    let out_of_range = e.to_string().starts_with("number out of range");
    let err = match e.classify() {
        Category::Data => ApiError::invalid(e.to_string()),
        Category::Syntax if out_of_range => ApiError::invalid(e.to_string()),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::malformed_json(format!("the body is not valid JSON: {e}"))
        }
    };
    match field {
        Some(f) => err.with_field(f),
        None => err,
    }
}

/// The schema of an id in a path: an id (`steerfeed::openapi::id_pattern`) other than
/// `.` and `..`, which URL clients resolve as path segments (RFC 3986 §5.2.4) before the
/// request is sent, so they cannot name a user or a video in a path.
pub fn path_id_schema() -> utoipa::openapi::schema::Object {
    use steerfeed::ids::MAX_ID_LEN;
    use steerfeed::openapi::END;
    let id = steerfeed::openapi::id_pattern();
    let rest = id.strip_prefix('^').unwrap_or(&id);
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID_LEN))
        .pattern(Some(format!(r"^(?!\.\.?{END}){rest}")))
        .description(Some(format!(
            "A user or video id, percent-encoded in the path: 1 to {MAX_ID_LEN} bytes of UTF-8 \
             without control characters, and not `.` or `..`. (JSON Schema counts \
             characters: the pattern admits printable ASCII up to {MAX_ID_LEN} characters and \
             any other id up to {} characters.) An invalid id is 400 `bad_path`.",
            MAX_ID_LEN / 4
        )))
        .build()
}

fn path_rejection(r: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_path", r.body_text())
}

fn bad_id(e: steerfeed::Error) -> ApiError {
    let err = ApiError::new(StatusCode::BAD_REQUEST, "bad_path", e.to_string());
    match e.field() {
        Some(f) => err.with_field(f),
        None => err,
    }
}

fn user_id(s: &str) -> Result<UserId, ApiError> {
    UserId::new(s).map_err(bad_id)
}

/// A user id from the path (`/v1/users/{id}/...`); an invalid id is a 400 `bad_path`.
#[derive(Debug, Clone)]
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(path_rejection)?;
        Ok(Self(user_id(&id)?))
    }
}

/// A user id and the id of another user from the path
/// (`/v1/users/{id}/follows/{creator}`); an invalid id is a 400 `bad_path`.
#[derive(Debug, Clone)]
pub struct UserPair(pub UserId, pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPair {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((a, b)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(path_rejection)?;
        Ok(Self(user_id(&a)?, user_id(&b)?))
    }
}

/// A video id from the path (`/v1/videos/{id}`); an invalid id is a 400 `bad_path`.
#[derive(Debug, Clone)]
pub struct VideoPath(pub VideoId);

impl<S: Send + Sync> FromRequestParts<S> for VideoPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(path_rejection)?;
        Ok(Self(VideoId::new(&id).map_err(bad_id)?))
    }
}

/// A user id and a video id from the path (`/v1/users/{id}/explain/{video}`); an
/// invalid id is a 400 `bad_path`.
#[derive(Debug, Clone)]
pub struct UserVideoPath(pub UserId, pub VideoId);

impl<S: Send + Sync> FromRequestParts<S> for UserVideoPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((user, video)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(path_rejection)?;
        Ok(Self(user_id(&user)?, VideoId::new(&video).map_err(bad_id)?))
    }
}

/// The preference text: `steering.max_text_bytes` (the default's, as the document is
/// one for every configuration), and not blank (`Engine::set_preferences`).
pub fn preference_text_schema() -> utoipa::openapi::schema::Object {
    let max = steerfeed::Config::default().steering.max_text_bytes;
    steerfeed::openapi::text_schema(
        max,
        true,
        &format!(
            "The preferences in plain words. At most `steering.max_text_bytes` bytes of UTF-8 \
             ({max} by default; longer is 413), not empty or only white space (422: to drop \
             a user's preferences, DELETE them)."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        items: Vec<Item>,
        #[serde(default)]
        s: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Item {
        n: u8,
    }

    #[test]
    fn syntax_is_400_and_data_is_422_with_the_path() {
        let e = parse_json::<Body>(b"{\"items\": [").err();
        assert_eq!(e.map(|e| e.status), Some(StatusCode::BAD_REQUEST));
        let e = parse_json::<Body>(b"{\"items\": [{\"n\": 1}, {\"n\": 300}]}").err();
        assert_eq!(
            e.as_ref().map(|e| (e.status, e.field.as_deref())),
            Some((StatusCode::UNPROCESSABLE_ENTITY, Some("items[1].n")))
        );
        let e = parse_json::<Body>(b"{\"items\": []} trailing").err();
        assert_eq!(e.map(|e| e.status), Some(StatusCode::BAD_REQUEST));
        let e = parse_json::<Body>(b"{\"items\": [], \"s\": \"\xff\"}").err();
        assert_eq!(e.map(|e| e.status), Some(StatusCode::BAD_REQUEST));
        assert!(parse_json::<Body>(b"{\"items\": [{\"n\": 1}]}").is_ok());
    }

    #[test]
    fn a_number_too_large_for_its_type_is_422_not_malformed() {
        for body in [&b"[0.5, 1e400]"[..], b"[-1e400]"] {
            let e = parse_json::<Vec<f64>>(body).err();
            assert_eq!(
                e.as_ref().map(|e| (e.status, e.code)),
                Some((StatusCode::UNPROCESSABLE_ENTITY, "invalid_input")),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // 1e39 does not fit an f32: read as infinity (which the caller refuses), or
        // refused here when serde_json parses f32 exactly; never a malformed body.
        match parse_json::<Vec<f32>>(b"[1e39]") {
            Ok(v) => assert_eq!(v, vec![f32::INFINITY]),
            Err(e) => assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY),
        }
        let e = parse_json::<Vec<f64>>(b"[1e400").err();
        assert_eq!(e.map(|e| e.status), Some(StatusCode::BAD_REQUEST));
        assert_eq!(parse_json::<Vec<f32>>(b"[3e38]").unwrap(), vec![3e38]);
    }
}

//! Bulk operations over HTTP (`admin` scope): `POST /v1/import` applies a batch of
//! records and answers one outcome per record; `GET /v1/export` streams every record of
//! the kinds asked for as JSON lines; `POST /v1/backups` writes a backup on the sidecar's
//! machine. `steerfeed import`, `export` and `backup` with `--url` are their clients.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use steerfeed::{Imported, Record, RecordKind};

use crate::AppState;
use crate::error::{ApiError, ErrorDetail, ErrorResponses};
use crate::extract::ApiJson;

/// Most records in one `POST /v1/import`.
pub const MAX_IMPORT_BATCH: usize = 10_000;

/// Bytes of JSON lines an export hands to the connection at a time.
const EXPORT_CHUNK: usize = 64 << 10;

/// A batch of records to import.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    /// At most 10,000 records, in the export record format, applied in order.
    #[schema(max_items = 10000)]
    pub records: Vec<Record>,
}

/// What became of one imported record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Written (a relation, consent or revocation may have been held already).
    Written,
    /// A user or video already stored exactly so: not written again.
    Unchanged,
    /// An event whose key was logged before: not counted again.
    Duplicate,
    /// Derived from events (wellbeing, seen, engagement, interest, affinity, cameo):
    /// not imported; replaying the events rebuilds it.
    Derived,
    /// Refused: `error` says why; nothing of it was written.
    Rejected,
}

impl From<Imported> for ImportStatus {
    fn from(i: Imported) -> Self {
        match i {
            Imported::Written => ImportStatus::Written,
            Imported::Unchanged => ImportStatus::Unchanged,
            Imported::Duplicate => ImportStatus::Duplicate,
            Imported::Derived => ImportStatus::Derived,
        }
    }
}

/// The outcome of one record.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportOutcome {
    /// What became of it.
    pub status: ImportStatus,
    /// Why it was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// One outcome per record, in order.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportAnswer {
    /// The outcomes.
    pub results: Vec<ImportOutcome>,
}

#[utoipa::path(
    post,
    path = "/v1/import",
    tag = "operation",
    description = "Imports records in the export record format (`admin` scope), in order, as their own routes would write them: users, videos (embedded and topic-inferred when they carry none), follows, blocks, mutes, consent, revocations, parental controls, preferences (stored as given) and events (counted once per key). Each record gets its own outcome; a rejected one changes nothing and the others still apply. An event or a video dated more than `server.event_max_ahead_s` after the server's clock is rejected (unless `server.allow_client_clock`); older dates are history and are kept. Idempotent: importing the same records again finds users and videos `unchanged` and events `duplicate`. A failure of the store itself answers the whole request with its error.",
    request_body = ImportBody,
    responses((status = 200, description = "one outcome per record", body = ImportAnswer), ErrorResponses)
)]
pub(crate) async fn import_records(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ImportBody>,
) -> Result<axum::Json<ImportAnswer>, ApiError> {
    crate::call::check_batch("records", body.records.len(), MAX_IMPORT_BATCH)?;
    let latest = state.config().server.latest_client_time();
    let outcomes = crate::call::run(&state, move |e| Ok(e.import(&body.records, latest))).await?;
    let mut results = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        results.push(match outcome {
            Ok(i) => ImportOutcome {
                status: i.into(),
                error: None,
            },
            Err(e) if e.is_user_error() => ImportOutcome {
                status: ImportStatus::Rejected,
                error: Some(ApiError::from(e).detail()),
            },
            // The store failed, not the record: the client stops and may run again.
            Err(e) => return Err(e.into()),
        });
    }
    Ok(axum::Json(ImportAnswer { results }))
}

/// What `GET /v1/export` lists.
struct ExportQuery {
    kinds: Vec<RecordKind>,
    embeddings: bool,
}

fn export_query(query: Option<&str>) -> Result<ExportQuery, ApiError> {
    let mut kinds: Option<Vec<RecordKind>> = None;
    let mut embeddings = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let (name, value) = (name.as_ref(), value.as_ref());
        match name {
            "kinds" if kinds.is_none() => {
                let mut list = Vec::new();
                for k in value.split(',') {
                    list.push(RecordKind::parse(k).ok_or_else(|| {
                        ApiError::invalid(format!(
                            "unknown record kind {k:?}: the kinds are {}",
                            kind_names()
                        ))
                        .with_field("kinds")
                    })?);
                }
                kinds = Some(list);
            }
            "embeddings" if embeddings.is_none() => {
                embeddings = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::invalid("embeddings must be true or false")
                            .with_field("embeddings"));
                    }
                });
            }
            "kinds" | "embeddings" => {
                return Err(ApiError::invalid(format!("{name} is given more than once"))
                    .with_field(name.to_owned()));
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter {name:?}: only \"kinds\" and \"embeddings\" are taken"
                ))
                .with_field(name.to_owned()));
            }
        }
    }
    Ok(ExportQuery {
        kinds: kinds.unwrap_or_else(|| RecordKind::ALL.to_vec()),
        embeddings: embeddings.unwrap_or(false),
    })
}

/// The record kinds' names, for error messages.
pub fn kind_names() -> String {
    RecordKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[utoipa::path(
    get,
    path = "/v1/export",
    tag = "operation",
    description = "Every record of the kinds asked for (`admin` scope), as JSON lines (`application/x-ndjson`) in the export record format, kind by kind in an order that imports (users, videos, follows, blocks, mutes, consent, revocations, parental controls, preferences, events). Streamed: memory stays constant whatever the store's size. Not a snapshot: a write made during the export may or may not be in it. A store failure mid-stream ends the body without its last chunk, so a client sees an incomplete answer, never a short one.",
    params(
        ("kinds" = Option<String>, Query, pattern = r"^(user|video|follow|block|mute|consent|revocation|parental_controls|preferences|event)s?(,(user|video|follow|block|mute|consent|revocation|parental_controls|preferences|event)s?)*(?![\s\S])", description = "comma-separated record kinds (`user,video,event`; plurals accepted); all when left out"),
        ("embeddings" = Option<bool>, Query, description = "videos carry their embeddings (default false)")
    ),
    responses((status = 200, description = "JSON lines", body = String, content_type = "application/x-ndjson"), ErrorResponses)
)]
pub(crate) async fn export_records(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = export_query(query.as_deref())?;
    let engine = state.engine().cloned().ok_or_else(ApiError::not_ready)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    // The export runs at the pace the client reads (the channel is bounded) and takes
    // no engine slot: it would hold one for as long as the transfer lasts.
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(EXPORT_CHUNK + 4096);
        let sent = engine.export(&query.kinds, query.embeddings, &mut |record| {
            serde_json::to_writer(&mut buf, &record)
                .map_err(|e| steerfeed::Error::internal("export", e))?;
            buf.push(b'\n');
            if buf.len() >= EXPORT_CHUNK {
                let chunk = Bytes::from(std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(EXPORT_CHUNK + 4096),
                ));
                tx.blocking_send(Ok(chunk))
                    .map_err(|_| steerfeed::Error::internal("export", "the client left"))?;
            }
            Ok(())
        });
        let last = match sent {
            Ok(()) => Ok(Bytes::from(buf)),
            // A client that left is no failure of the store's.
            Err(_) if tx.is_closed() => return,
            Err(e) => {
                tracing::error!(error = %e, "export failed; the answer ends incomplete");
                Err(std::io::Error::other(e.to_string()))
            }
        };
        let _ = tx.blocking_send(last);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Where to write a backup.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupBody {
    /// A new directory on the sidecar's machine, as an absolute path without `..`.
    #[schema(min_length = 2, max_length = 4096, pattern = r"^/")]
    pub dir: String,
}

#[utoipa::path(
    post,
    path = "/v1/backups",
    tag = "operation",
    description = "Writes a backup of the store, the vector index and the erasure log into a new directory on the sidecar's machine (`admin` scope) while the sidecar serves: the files are copied while it serves, then writes wait while the copy catches up with what changed meanwhile (`writes_held_ms` in the manifest); reads never wait. The backup is written beside `dir` and renamed to it once complete, with a manifest of every file's length and CRC-32; `steerfeed restore` puts it back. Exempt from the request timeout: it takes as long as its copy.",
    request_body = BackupBody,
    responses((status = 200, description = "the backup's manifest", body = Object), ErrorResponses)
)]
pub(crate) async fn backup(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BackupBody>,
) -> Result<axum::Json<steerfeed::BackupManifest>, ApiError> {
    let chars = body.dir.chars().count();
    if !(2..=4096).contains(&chars) {
        return Err(ApiError::invalid("dir must be 2 to 4,096 characters").with_field("dir"));
    }
    if body.dir.chars().any(char::is_control) {
        return Err(
            ApiError::invalid("dir must not hold control characters (NUL among them)")
                .with_field("dir"),
        );
    }
    let dir = std::path::PathBuf::from(&body.dir);
    if !dir.is_absolute()
        || dir
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(
            ApiError::invalid("dir must be an absolute path without \"..\"").with_field("dir"),
        );
    }
    let manifest = crate::call::run(&state, move |e| e.backup(&dir)).await?;
    Ok(axum::Json(manifest))
}

/// The routes exempt from the request timeout: they take as long as their data
/// (an import batch of videos to embed, a backup's copy).
pub const UNTIMED_ROUTES: &[&str] = &["/v1/import", "/v1/backups"];

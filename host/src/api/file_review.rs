//! The review of quarantined files, for server admins and compliance reviewers: list what
//! plugins put aside, look at a file, release it to the room or delete it (each on the
//! audit record), and the storage the files use.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppJson, AppPath, AppState, FileReviewer};
use crate::audit::{self, Action, Actor, Subject};
use crate::error::{ApiError, Result};
use crate::store::{FileRecord, FileUsage};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(quarantined))
        .routes(routes!(usage))
        .routes(routes!(content))
        .routes(routes!(release))
        .routes(routes!(discard))
}

#[derive(Debug, Serialize, ToSchema)]
struct Quarantined {
    files: Vec<FileRecord>,
}

/// Every quarantined file, oldest first.
///
/// Each comes with the plugin that put it there and why.
#[utoipa::path(get, path = "/api/v1/admin/files/quarantine", tag = "admin",
    operation_id = "list_quarantined_files",
    responses((status = 200, description = "The quarantined files, oldest first", body = Quarantined)))]
async fn quarantined(
    State(state): State<AppState>,
    FileReviewer(_): FileReviewer,
) -> Result<AppJson<Quarantined>> {
    Ok(AppJson(Quarantined {
        files: state.store.files_in_state("quarantined").await?,
    }))
}

// Named apart from the language model's `Usage` in the description.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FileStorageUsage)]
struct Usage {
    /// `local` or `s3`.
    backend: &'static str,
    max_upload_bytes: u64,
    /// Files and bytes per state (`ready`, `quarantined`, `kept`, `deleted`, `uploading`).
    states: Vec<FileUsage>,
    total_files: i64,
    total_bytes: i64,
}

/// What the files take in storage, per state.
#[utoipa::path(get, path = "/api/v1/admin/files/usage", tag = "admin",
    operation_id = "file_storage_usage",
    responses((status = 200, description = "Files and bytes per state, and in all", body = Usage)))]
async fn usage(
    State(state): State<AppState>,
    FileReviewer(_): FileReviewer,
) -> Result<AppJson<Usage>> {
    let states = state.store.files_usage().await?;
    Ok(AppJson(Usage {
        backend: state.files.backend,
        max_upload_bytes: state.files.max_upload_bytes,
        total_files: states.iter().map(|s| s.files).sum(),
        total_bytes: states.iter().map(|s| s.bytes).sum(),
        states,
    }))
}

async fn quarantined_file(state: &AppState, id: i64) -> Result<FileRecord> {
    state
        .store
        .file(id)
        .await?
        .filter(|f| f.state == "quarantined")
        .ok_or_else(|| ApiError::not_found("file_not_found", "no such file in quarantine"))
}

/// A quarantined file's bytes, for its review.
///
/// Served as a download is (whole or one `Range`, always as an attachment), with the file's
/// stored type as `Content-Type`. The look is recorded.
#[utoipa::path(get, path = "/api/v1/admin/files/{id}/content", tag = "admin",
    operation_id = "quarantined_file_content",
    params(("id" = i64, Path, description = "The quarantined file"),
        ("range" = Option<String>, Header,
            description = "One byte range (`bytes=0-99`, `bytes=100-`, `bytes=-100`); anything else is served whole")),
    responses(super::files::DownloadAnswers))]
async fn content(
    State(state): State<AppState>,
    FileReviewer(admin): FileReviewer,
    AppPath(id): AppPath<i64>,
    headers: HeaderMap,
) -> Result<Response> {
    let file = quarantined_file(&state, id).await?;
    audit::record(
        state.store.as_ref(),
        Actor::User(admin.user.id),
        Action::FileReviewed,
        Subject::File(file.id),
        serde_json::json!({ "room": file.room_id, "name": file.name }),
    )
    .await;
    super::files::serve(&state, &file, &headers).await
}

/// Release a quarantined file: it becomes available to its room.
///
/// The release is recorded.
#[utoipa::path(post, path = "/api/v1/admin/files/{id}/release", tag = "admin",
    operation_id = "release_quarantined_file",
    params(("id" = i64, Path, description = "The quarantined file")),
    responses((status = 200, description = "The file as it is now", body = FileRecord)))]
async fn release(
    State(state): State<AppState>,
    FileReviewer(admin): FileReviewer,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<FileRecord>> {
    let file = quarantined_file(&state, id).await?;
    if !state.store.release_file(id).await? {
        return Err(ApiError::conflict(
            "file_not_quarantined",
            "the file left quarantine meanwhile",
        ));
    }
    audit::record(
        state.store.as_ref(),
        Actor::User(admin.user.id),
        Action::FileReleased,
        Subject::File(file.id),
        serde_json::json!({
            "room": file.room_id, "name": file.name,
            "plugin": file.quarantined_by, "reason": file.quarantine_reason,
        }),
    )
    .await;
    let released = state
        .store
        .file(id)
        .await?
        .ok_or_else(|| ApiError::not_found("file_not_found", "no such file"))?;
    Ok(AppJson(released))
}

/// Discard a quarantined file: it is deleted, and its room never sees it.
///
/// Its bytes are purged by the next purge run. The discard is recorded.
#[utoipa::path(post, path = "/api/v1/admin/files/{id}/discard", tag = "admin",
    operation_id = "discard_quarantined_file",
    params(("id" = i64, Path, description = "The quarantined file")),
    responses((status = 204, description = "The file is deleted")))]
async fn discard(
    State(state): State<AppState>,
    FileReviewer(admin): FileReviewer,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode> {
    let file = quarantined_file(&state, id).await?;
    if !state.store.discard_quarantined_file(id).await? {
        return Err(ApiError::conflict(
            "file_not_quarantined",
            "the file left quarantine meanwhile",
        ));
    }
    audit::record(
        state.store.as_ref(),
        Actor::User(admin.user.id),
        Action::FileDiscarded,
        Subject::File(file.id),
        serde_json::json!({
            "room": file.room_id, "name": file.name, "sha256": file.sha256,
            "plugin": file.quarantined_by, "reason": file.quarantine_reason,
        }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

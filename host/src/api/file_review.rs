//! The review of quarantined files, for server admins and compliance reviewers: list what
//! plugins put aside, look at a file, release it to the room or delete it (each on the
//! audit record), and the storage the files use.

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Serialize;

use super::{AppJson, AppPath, AppState, FileReviewer};
use crate::audit::{self, Action, Actor, Subject};
use crate::error::{ApiError, Result};
use crate::store::{FileRecord, FileUsage};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/v1/admin/files/quarantine", get(quarantined))
        .route("/api/v1/admin/files/usage", get(usage))
        .route("/api/v1/admin/files/{id}/content", get(content))
        .route("/api/v1/admin/files/{id}/release", post(release))
        .route("/api/v1/admin/files/{id}/discard", post(discard))
}

#[derive(Debug, Serialize)]
struct Quarantined {
    files: Vec<FileRecord>,
}

/// `GET /api/v1/admin/files/quarantine`: every quarantined file, oldest first, with the
/// plugin that put it there and why.
async fn quarantined(
    State(state): State<AppState>,
    FileReviewer(_): FileReviewer,
) -> Result<AppJson<Quarantined>> {
    Ok(AppJson(Quarantined {
        files: state.store.files_in_state("quarantined").await?,
    }))
}

#[derive(Debug, Serialize)]
struct Usage {
    /// `local` or `s3`.
    backend: &'static str,
    max_upload_bytes: u64,
    /// Files and bytes per state (`ready`, `quarantined`, `kept`, `deleted`, `uploading`).
    states: Vec<FileUsage>,
    total_files: i64,
    total_bytes: i64,
}

/// `GET /api/v1/admin/files/usage`: what the files take, per state.
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

/// `GET /api/v1/admin/files/{id}/content`: a quarantined file's bytes, for its review.
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

/// `POST /api/v1/admin/files/{id}/release`: the file becomes available to its room.
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

/// `POST /api/v1/admin/files/{id}/discard`: the file is deleted (its bytes are purged by the
/// next purge run); the uploader's room never sees it.
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

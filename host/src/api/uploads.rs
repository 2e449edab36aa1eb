//! Resumable uploads over HTTP: open one with the file's name and size, send it in chunks
//! (`PUT` with the offset each chunk starts at), ask where it stands after a broken
//! connection, and give it up. The last chunk's answer is the file, after the same checks
//! as a one-request upload (virus scanner, images, the `file-pre-upload` plugins). Only the
//! uploader reaches their upload; anyone else gets `404 upload_not_found`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::files::{audit_infected, body_of, check_and_finish};
use super::{AppJson, AppPath, AppQuery, AppState, AuthUser};
use crate::error::{ApiError, Result};
use crate::files::ResumableStatus;
use crate::store::{FileRecord, RoomId};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(begin))
        .routes(routes!(status, chunk, abandon))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Begin {
    /// The file's name as the user knows it (made safe by the server).
    name: String,
    /// The file's size in bytes.
    size: u64,
}

/// Open a resumable upload of a file into a room.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/uploads", tag = "files",
    operation_id = "begin_upload",
    params(("id" = i64, Path, description = "The room")),
    request_body = Begin,
    responses((status = 201, description = "The upload, with where it stands", body = ResumableStatus)))]
async fn begin(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(room): AppPath<RoomId>,
    AppJson(begin): AppJson<Begin>,
) -> Result<(StatusCode, AppJson<ResumableStatus>)> {
    state.router.require_member(caller.user.id, room).await?;
    let status = state
        .files
        .begin_resumable(
            state.store.as_ref(),
            room,
            caller.user.id,
            &begin.name,
            begin.size,
        )
        .await?;
    Ok((StatusCode::CREATED, AppJson(status)))
}

/// The caller's own upload in progress, still in a room of theirs.
async fn own_upload(state: &AppState, caller: &crate::auth::Caller, id: i64) -> Result<FileRecord> {
    let missing = || ApiError::not_found("upload_not_found", "no such upload of yours");
    let file = state
        .store
        .file(id)
        .await?
        .filter(|f| f.state == "receiving" && f.uploader_id == caller.user.id)
        .ok_or_else(missing)?;
    state
        .router
        .require_member(caller.user.id, file.room_id)
        .await
        .map_err(|_| missing())?;
    Ok(file)
}

/// Where one of the caller's uploads stands: the next chunk starts at `offset`.
#[utoipa::path(get, path = "/api/v1/uploads/{id}", tag = "files",
    operation_id = "upload_status",
    params(("id" = i64, Path, description = "The upload (the id of the file it becomes)")),
    responses((status = 200, description = "Where the upload stands", body = ResumableStatus)))]
async fn status(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<ResumableStatus>> {
    let file = own_upload(&state, &caller, id).await?;
    Ok(AppJson(state.files.status(&file)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ChunkQuery {
    /// The byte this chunk starts at: where the upload stands.
    offset: u64,
}

/// Send the next chunk of an upload: the request body is the chunk.
///
/// Answers `200` with where the upload stands; after the last byte, the file, checked as a
/// one-request upload is (`201`, or `202` when a plugin quarantined it).
#[utoipa::path(put, path = "/api/v1/uploads/{id}", tag = "files",
    operation_id = "upload_chunk",
    params(("id" = i64, Path, description = "The upload (the id of the file it becomes)"), ChunkQuery),
    request_body(content = [u8], content_type = "application/octet-stream",
        description = "The chunk's bytes, starting at `offset`"),
    responses(
        (status = 200, description = "The chunk is stored; where the upload stands now", body = ResumableStatus),
        (status = 201, description = "The last chunk: the file, ready to attach to a message", body = FileRecord),
        (status = 202, description = "The last chunk: the file, quarantined by a plugin until an admin reviews it", body = FileRecord),
    ))]
async fn chunk(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
    AppQuery(query): AppQuery<ChunkQuery>,
    request: Request,
) -> Result<Response> {
    let mut file = own_upload(&state, &caller, id).await?;
    let (declared, body) = body_of(request);
    let offset = state
        .files
        .append_chunk(state.store.as_ref(), &file, query.offset, declared, body)
        .await?;
    // What the store now holds for the row (the compare-and-set succeeded): no re-read.
    file.received = i64::try_from(offset).unwrap_or(i64::MAX);
    if offset < u64::try_from(file.size).unwrap_or(0) {
        return Ok(AppJson(state.files.status(&file)).into_response());
    }
    let room = file.room_id;
    let name = file.name.clone();
    let staged = state.files.assemble(state.store.as_ref(), file).await;
    let staged = audit_infected(&state, &caller, room, &name, staged).await?;
    Ok(check_and_finish(&state, &caller, room, staged)
        .await?
        .into_response())
}

/// Give an upload up; its chunks are removed.
#[utoipa::path(delete, path = "/api/v1/uploads/{id}", tag = "files",
    operation_id = "abandon_upload",
    params(("id" = i64, Path, description = "The upload (the id of the file it becomes)")),
    responses((status = 204, description = "The upload is given up")))]
async fn abandon(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode> {
    let file = own_upload(&state, &caller, id).await?;
    state.files.delete(state.store.as_ref(), &file).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Resumable uploads over HTTP: open one with the file's name and size, send it in chunks
//! (`PUT` with the offset each chunk starts at), ask where it stands after a broken
//! connection, and give it up. The last chunk's answer is the file, after the same checks
//! as a one-request upload (virus scanner, images, the `file-pre-upload` plugins). Only the
//! uploader reaches their upload; anyone else gets `404 upload_not_found`.

use axum::Router as HttpRouter;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::post;
use serde::Deserialize;

use super::files::{audit_infected, body_of, check_and_finish};
use super::{AppJson, AppPath, AppQuery, AppState, AuthUser};
use crate::error::{ApiError, Result};
use crate::files::ResumableStatus;
use crate::store::{FileRecord, RoomId};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/v1/rooms/{id}/uploads", post(begin))
        .route(
            "/api/v1/uploads/{id}",
            axum::routing::get(status).put(chunk).delete(abandon),
        )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Begin {
    name: String,
    size: u64,
}

/// `POST /api/v1/rooms/{id}/uploads` `{ "name", "size" }` → `201` with where it stands.
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

/// `GET /api/v1/uploads/{id}`: where the upload stands (the next chunk starts at `offset`).
async fn status(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<ResumableStatus>> {
    let file = own_upload(&state, &caller, id).await?;
    Ok(AppJson(state.files.status(&file)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkQuery {
    /// The byte this chunk starts at: where the upload stands.
    offset: u64,
}

/// `PUT /api/v1/uploads/{id}?offset=N`: the body is the next chunk. `200` with where the
/// upload stands; after the last byte, the file (`201`, or `202` when quarantined).
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

/// `DELETE /api/v1/uploads/{id}`: give the upload up; its chunks are removed.
async fn abandon(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode> {
    let file = own_upload(&state, &caller, id).await?;
    state.files.delete(state.store.as_ref(), &file).await?;
    Ok(StatusCode::NO_CONTENT)
}

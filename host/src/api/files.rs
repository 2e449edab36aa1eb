//! Files over HTTP: upload into a room (the body is the file, streamed to storage, then
//! checked by the `file-pre-upload` plugins), read a file's description, download it (whole
//! or a byte range, after the `file-pre-download` plugins). Only a room's members reach its
//! files; anyone else gets `404 file_not_found`, the same as for a file that does not exist.
//! Quarantined files are reviewed by admins (`file_review`).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use futures_util::TryStreamExt as _;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use std::sync::Arc;

use super::{AppJson, AppPath, AppQuery, AppState, AuthUser};
use crate::audit::Action;
use crate::error::{ApiError, Result};
use crate::files::{BodyError, FileError};
use crate::router::hooks::{Decision, FileCheck, FileContent, FileUploadOutcome, HookKind};
use crate::store::{FileRecord, RoomId};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload))
        .routes(routes!(download, delete_unattached))
        .routes(routes!(info))
        .routes(routes!(thumbnail))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    /// The file's name as the user knows it (made safe by the server).
    name: String,
}

impl From<FileError> for ApiError {
    fn from(err: FileError) -> Self {
        match err {
            FileError::TooLarge { limit } => ApiError::too_large(
                "file_too_large",
                format!("a file may have at most {limit} bytes (files.max_upload_bytes)"),
            ),
            FileError::Interrupted(why) => ApiError::bad_request(
                "upload_incomplete",
                format!("the upload was cut off: {why}"),
            ),
            FileError::TimedOut => ApiError::request_timeout(
                "body_timeout",
                "the upload arrived too slowly (http.body_min_bytes_per_sec)",
            ),
            FileError::Infected(signature) => ApiError::unprocessable(
                "file_infected",
                format!("the virus scanner found {signature}; the file was not stored"),
            ),
            FileError::Scan(crate::files::scan::ScanError::Failed(reason)) => {
                ApiError::unprocessable(
                    "scan_failed",
                    format!(
                        "the virus scanner could not check this file ({reason}); it was not stored"
                    ),
                )
            }
            FileError::Scan(crate::files::scan::ScanError::Unavailable(reason)) => {
                tracing::error!(%reason, "the virus scanner cannot be reached; uploads are refused");
                ApiError::unavailable(
                    "scanner_unavailable",
                    "the virus scanner is unavailable, so uploads are refused; try again later",
                )
            }
            FileError::Image(err @ crate::files::images::ImageError::TooLarge { .. }) => {
                ApiError::too_large("image_too_large", err.to_string())
            }
            FileError::Image(err @ crate::files::images::ImageError::TooManyPixels { .. }) => {
                ApiError::unprocessable("image_too_large", err.to_string())
            }
            FileError::Image(err @ crate::files::images::ImageError::Unreadable(_)) => {
                ApiError::unprocessable("image_unreadable", err.to_string())
            }
            FileError::OffsetMismatch { expected } => ApiError::conflict(
                "offset_mismatch",
                format!(
                    "the upload stands at byte {expected}: send the chunk that starts there \
                     (GET the upload to see where it stands)"
                ),
            ),
            FileError::ChunkTooLarge { limit } => ApiError::too_large(
                "chunk_too_large",
                format!(
                    "a chunk may have at most {limit} bytes here (files.resumable.max_chunk_bytes, \
                     or what is left of the file)"
                ),
            ),
            FileError::Storage(err) => {
                tracing::error!(error = %err, "file storage failed");
                ApiError::unavailable(
                    "storage_unavailable",
                    "file storage is unavailable; try again",
                )
            }
            FileError::Store(err) => err.into(),
        }
    }
}

/// Upload a file into a room: the request body is the file.
///
/// Its type is sniffed from its bytes, whatever the client's `Content-Type` says. Once the
/// bytes are stored, the `file-pre-upload` plugins check them: a rejection answers
/// `422 file_rejected` with the plugin's reason (nothing is kept); a quarantine answers
/// `202` with the file in state `quarantined`; otherwise `201` with the file (as a plugin
/// may have replaced it).
#[utoipa::path(post, path = "/api/v1/rooms/{id}/files", tag = "files",
    operation_id = "upload_file",
    params(("id" = i64, Path, description = "The room"), UploadQuery),
    request_body(content = [u8], content_type = "application/octet-stream",
        description = "The file's bytes, as they are (not multipart); any `Content-Type` is accepted"),
    responses(
        (status = 201, description = "The file, ready to attach to a message", body = FileRecord),
        (status = 202, description = "The file, quarantined by a plugin until an admin reviews it", body = FileRecord),
    ))]
async fn upload(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(room): AppPath<RoomId>,
    AppQuery(query): AppQuery<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, AppJson<FileRecord>)> {
    state.router.require_member(caller.user.id, room).await?;
    let (declared, body) = body_of(request);
    let staged = state
        .files
        .receive(
            state.store.as_ref(),
            room,
            caller.user.id,
            &query.name,
            declared,
            body,
        )
        .await;
    let staged = audit_infected(&state, &caller, room, &query.name, staged).await?;
    check_and_finish(&state, &caller, room, staged).await
}

/// A request's body as the file pipeline takes it, with its announced length.
pub(super) fn body_of(
    request: Request,
) -> (
    Option<u64>,
    impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, BodyError>> + Send,
) {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = request.into_body().into_data_stream().map_err(|err| {
        if super::listener::is_body_timeout(&err) {
            BodyError::TimedOut
        } else {
            BodyError::Broken(err.to_string())
        }
    });
    (declared, body)
}

fn audit_upload<'a>(
    state: &'a AppState,
    caller: &'a crate::auth::Caller,
    room: RoomId,
    action: Action,
    detail: serde_json::Value,
) -> impl std::future::Future<Output = ()> + 'a {
    crate::audit::record(
        state.store.as_ref(),
        crate::audit::Actor::User(caller.user.id),
        action,
        crate::audit::Subject::Room(room),
        detail,
    )
}

/// A virus scanner's finding is put on the record (who, where, which signature — never the
/// content) before it is answered.
pub(super) async fn audit_infected(
    state: &AppState,
    caller: &crate::auth::Caller,
    room: RoomId,
    name: &str,
    staged: std::result::Result<crate::files::Staged, FileError>,
) -> Result<crate::files::Staged> {
    match staged {
        Ok(staged) => Ok(staged),
        Err(FileError::Infected(signature)) => {
            audit_upload(
                state,
                caller,
                room,
                Action::FileRejected,
                serde_json::json!({
                    "name": crate::files::safe_name(name), "scanner": "clamav",
                    "signature": signature,
                }),
            )
            .await;
            Err(FileError::Infected(signature).into())
        }
        Err(err) => Err(err.into()),
    }
}

/// The `file-pre-upload` plugins' checks of a received upload, then the file made
/// available (`201`), quarantined (`202`) or refused (`422 file_rejected`, nothing kept);
/// every decision on the record.
pub(super) async fn check_and_finish(
    state: &AppState,
    caller: &crate::auth::Caller,
    room: RoomId,
    staged: crate::files::Staged,
) -> Result<(StatusCode, AppJson<FileRecord>)> {
    let audit = |action, detail| audit_upload(state, caller, room, action, detail);
    let (mut replacement, mut quarantine) = (None, None);
    let hooks = state.router.hooks();
    if hooks.implements(HookKind::FilePreUpload) {
        let check = FileCheck {
            id: staged.record.id,
            room_id: room,
            uploader: caller.user.clone(),
            name: staged.record.name.clone(),
            content_type: staged.content_type.clone(),
            size: staged.size,
            sha256: staged.sha256.clone(),
            max_bytes: state.files.max_upload_bytes,
        };
        let content = Arc::new(StoredContent {
            files: state.files.clone(),
            key: staged.record.storage_key.clone(),
            size: staged.size,
        });
        match hooks.file_pre_upload(check, content).await {
            FileUploadOutcome::Reject {
                plugin,
                code,
                reason,
            } => {
                audit(
                    Action::FileRejected,
                    serde_json::json!({
                        "name": staged.record.name, "sha256": staged.sha256,
                        "plugin": plugin, "code": code,
                    }),
                )
                .await;
                state.files.discard(state.store.as_ref(), staged).await;
                return Err(ApiError::FileRejected {
                    plugin,
                    code,
                    reason,
                });
            }
            FileUploadOutcome::Accept {
                replacement: replaced,
                quarantine: quarantined,
            } => {
                replacement = replaced;
                quarantine = quarantined;
            }
        }
    }
    let original = (staged.record.name.clone(), staged.sha256.clone());
    let replaced_by = replacement.as_ref().map(|r| r.plugins.clone());
    let file = state
        .files
        .finish(
            state.store.as_ref(),
            staged,
            replacement.map(|r| (r.content, r.name)),
            quarantine.clone(),
        )
        .await?;
    if let Some(plugins) = replaced_by {
        // Which plugins changed it and the digests before and after: never the content.
        audit(
            Action::FileReplaced,
            serde_json::json!({
                "file": file.id, "name": original.0, "plugins": plugins,
                "sha256_before": original.1, "sha256_after": file.sha256,
            }),
        )
        .await;
    }
    let status = match &quarantine {
        Some((plugin, reason)) => {
            audit(
                Action::FileQuarantined,
                serde_json::json!({
                    "file": file.id, "name": file.name, "sha256": file.sha256,
                    "plugin": plugin, "reason": reason,
                }),
            )
            .await;
            StatusCode::ACCEPTED
        }
        None => StatusCode::CREATED,
    };
    tracing::info!(
        file = file.id,
        room,
        bytes = file.size,
        content_type = %file.content_type,
        state = %file.state,
        "file uploaded"
    );
    Ok((status, AppJson(file)))
}

/// A staged upload's bytes, read back from storage for the plugins.
struct StoredContent {
    files: Arc<crate::files::Files>,
    key: String,
    size: u64,
}

#[async_trait::async_trait]
impl FileContent for StoredContent {
    async fn read(&self, offset: u64, len: u32) -> std::result::Result<bytes::Bytes, String> {
        self.files
            .read_range(&self.key, self.size, offset, len)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "reading an upload back for a plugin failed");
                "file storage failed".to_string()
            })
    }
}

/// Take back a file no message carries yet (its uploader, or an admin).
///
/// Its bytes are purged within `files.purge_interval_secs`. A file a message carries goes
/// with its message (`409 file_attached`).
#[utoipa::path(delete, path = "/api/v1/files/{id}", tag = "files",
    operation_id = "delete_unattached_file",
    params(("id" = i64, Path, description = "The file")),
    responses((status = 204, description = "The file is deleted")))]
async fn delete_unattached(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<StatusCode> {
    let file = readable_file(&state, &caller, id).await?;
    if file.uploader_id != caller.user.id && !caller.user.is_admin {
        return Err(ApiError::forbidden(
            "not_uploader",
            "only its uploader (or an admin) may delete a file",
        ));
    }
    if file.message_id.is_some() {
        return Err(ApiError::conflict(
            "file_attached",
            "the file belongs to a message: delete the message instead",
        ));
    }
    if !state.store.discard_unattached_file(id).await? {
        return Err(ApiError::conflict(
            "file_attached",
            "the file was attached to a message meanwhile",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The file as plugins see it.
fn file_check(file: &FileRecord, uploader: crate::store::User, max_bytes: u64) -> FileCheck {
    FileCheck {
        id: file.id,
        room_id: file.room_id,
        uploader,
        name: file.name.clone(),
        content_type: file.content_type.clone(),
        size: file.size as u64,
        sha256: file.sha256.clone(),
        max_bytes,
    }
}

/// The file, if it is finished and the caller is a member of its room.
async fn readable_file(
    state: &AppState,
    caller: &crate::auth::Caller,
    id: i64,
) -> Result<FileRecord> {
    let missing =
        || ApiError::not_found("file_not_found", "no such file, or not in a room of yours");
    let file = state
        .store
        .file(id)
        .await?
        .filter(|f| f.state == "ready" || f.state == "quarantined")
        .ok_or_else(missing)?;
    state
        .router
        .require_member(caller.user.id, file.room_id)
        .await
        .map_err(|_| missing())?;
    if file.state == "quarantined" {
        return Err(ApiError::forbidden(
            "file_quarantined",
            "this file is held for review by an administrator",
        ));
    }
    Ok(file)
}

/// A file's description: name, size, type, digest and state.
#[utoipa::path(get, path = "/api/v1/files/{id}/info", tag = "files",
    operation_id = "file_info",
    params(("id" = i64, Path, description = "The file")),
    responses((status = 200, description = "The file's description", body = FileRecord)))]
async fn info(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<FileRecord>> {
    Ok(AppJson(readable_file(&state, &caller, id).await?))
}

/// An image's thumbnail: a PNG of at most `files.images.thumbnail_px` a side.
///
/// Only images have one (`has_thumbnail`); other files answer `404 no_thumbnail`. The same
/// checks as a download, the `file-pre-download` plugins included: a preview is the picture.
#[utoipa::path(get, path = "/api/v1/files/{id}/thumbnail", tag = "files",
    operation_id = "file_thumbnail",
    params(("id" = i64, Path, description = "The file")),
    responses((status = 200, description = "The thumbnail", body = [u8], content_type = "image/png")))]
async fn thumbnail(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<Response> {
    let file = downloadable_file(&state, &caller, id).await?;
    if !file.has_thumbnail {
        return Err(ApiError::not_found(
            "no_thumbnail",
            "this file has no thumbnail",
        ));
    }
    let bytes = state.files.thumbnail(&file).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'",
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The byte range a `Range` header asks for, against a file of `size` bytes: `None` for the
/// whole file (no header, or one this server does not serve: several ranges, other units,
/// bad syntax — a server may ignore those), `Err` when it cannot be satisfied.
fn requested_range(
    headers: &HeaderMap,
    size: u64,
) -> std::result::Result<Option<std::ops::Range<u64>>, ()> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = (start.trim(), end.trim());
    let range = match (start.parse::<u64>(), end.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end => start..end.saturating_add(1).min(size),
        (Ok(start), Err(_)) if end.is_empty() => start..size,
        (Err(_), Ok(suffix)) if start.is_empty() => size.saturating_sub(suffix)..size,
        _ => return Ok(None),
    };
    if range.start >= size || range.is_empty() {
        return Err(());
    }
    Ok(Some(range))
}

/// What [`serve`] answers, described once for both downloads (a file, and a held file's
/// content for its review). Never built: `serve` writes its response itself.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub(super) enum DownloadAnswers {
    /// The whole file; `Content-Type` is the file's stored type
    #[response(status = 200, content_type = "*/*", headers(
        ("content-disposition" = String, description = "`attachment` with the file's name"),
        ("etag" = String, description = "The file's SHA-256, quoted"),
        ("accept-ranges" = String, description = "`bytes`")))]
    Whole(Vec<u8>),
    /// The byte range asked for; `Content-Type` is the file's stored type
    #[response(status = 206, content_type = "*/*", headers(
        ("content-range" = String, description = "`bytes <first>-<last>/<size>`"),
        ("content-disposition" = String, description = "`attachment` with the file's name"),
        ("etag" = String, description = "The file's SHA-256, quoted")))]
    Part(Vec<u8>),
    /// The range lies outside the file; no body
    #[response(status = 416, headers(
        ("content-range" = String, description = "`bytes */<size>`")))]
    OutOfRange,
}

/// Download a file: its bytes, whole or one byte range, always as an attachment.
///
/// Never rendered by the browser as a page of this origin. `Content-Type` is the file's
/// stored (sniffed) type. The `file-pre-download` plugins may refuse the download
/// (`403 download_denied`, with their reason).
#[utoipa::path(get, path = "/api/v1/files/{id}", tag = "files",
    operation_id = "download_file",
    params(("id" = i64, Path, description = "The file"),
        ("range" = Option<String>, Header,
            description = "One byte range (`bytes=0-99`, `bytes=100-`, `bytes=-100`); anything else is served whole")),
    responses(DownloadAnswers))]
async fn download(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
    headers: HeaderMap,
) -> Result<Response> {
    let file = downloadable_file(&state, &caller, id).await?;
    serve(&state, &file, &headers).await
}

/// A file the caller may download: a member's, ready, and allowed by the
/// `file-pre-download` plugins (a refusal is audited and answered with their reason).
async fn downloadable_file(
    state: &AppState,
    caller: &crate::auth::Caller,
    id: i64,
) -> Result<FileRecord> {
    let file = readable_file(state, caller, id).await?;
    let hooks = state.router.hooks();
    if hooks.implements(HookKind::FilePreDownload) {
        let uploader = state
            .store
            .user_by_id(file.uploader_id)
            .await?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("file without uploader")))?;
        let check = file_check(&file, uploader, state.files.max_upload_bytes);
        if let Decision::Deny { plugin, reason } =
            hooks.file_pre_download(check, &caller.user).await
        {
            crate::audit::record(
                state.store.as_ref(),
                crate::audit::Actor::User(caller.user.id),
                Action::FileDownloadDenied,
                crate::audit::Subject::File(file.id),
                serde_json::json!({ "room": file.room_id, "plugin": plugin }),
            )
            .await;
            return Err(ApiError::DownloadDenied { plugin, reason });
        }
    }
    Ok(file)
}

/// The bytes of `file`, whole or the range `headers` ask for, as an attachment.
pub(super) async fn serve(
    state: &AppState,
    file: &FileRecord,
    headers: &HeaderMap,
) -> Result<Response> {
    let size = file.size as u64;
    let (status, range) = match requested_range(headers, size) {
        Ok(Some(range)) => (StatusCode::PARTIAL_CONTENT, range),
        Ok(None) => (StatusCode::OK, 0..size),
        Err(()) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response());
        }
    };
    let download = state.files.download(file, range.clone()).await?;
    let body = Body::from_stream(download.stream.map_err(|e| {
        tracing::error!(error = %e, "reading a file from storage failed mid-download");
        e
    }));
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(headers, header::CONTENT_TYPE, file.content_type.clone());
    set(
        headers,
        header::CONTENT_LENGTH,
        (range.end - range.start).to_string(),
    );
    set(headers, header::ACCEPT_RANGES, "bytes".into());
    set(headers, header::ETAG, format!("\"{}\"", file.sha256));
    set(headers, header::CACHE_CONTROL, "private, no-store".into());
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff".into());
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "sandbox; default-src 'none'".into(),
    );
    set(
        headers,
        header::CONTENT_DISPOSITION,
        content_disposition(&file.name),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            headers,
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{size}", range.start, range.end - 1),
        );
    }
    Ok(response)
}

/// `attachment` with the name twice: an ASCII fallback, and the exact name per RFC 6266/8187.
fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> std::result::Result<Option<std::ops::Range<u64>>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, HeaderValue::from_str(value).expect("header"));
        requested_range(&headers, size)
    }

    #[test]
    fn ranges_are_read_as_http_defines_them() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(range("bytes=90-", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=-5", 100), Ok(Some(95..100)));
        assert_eq!(range("bytes=50-1000", 100), Ok(Some(50..100)));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=-0", 100), Err(()));
        // Served whole: several ranges, other units, nonsense.
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=9-3", 100), Ok(None));
        assert_eq!(range("bytes=x-y", 100), Ok(None));
    }

    #[test]
    fn download_names_survive_any_characters() {
        assert_eq!(
            content_disposition("q3 report.pdf"),
            "attachment; filename=\"q3 report.pdf\"; filename*=UTF-8''q3%20report.pdf"
        );
        let odd = content_disposition("naïve \"x\".csv");
        assert!(
            odd.starts_with("attachment; filename=\"na_ve _x_.csv\""),
            "{odd}"
        );
        assert!(odd.ends_with("na%C3%AFve%20%22x%22.csv"), "{odd}");
    }
}

//! Files over HTTP: upload into a room (the body is the file, streamed to storage), read a
//! file's description, download it (whole or a byte range). Only a room's members reach its
//! files; anyone else gets `404 file_not_found`, the same as for a file that does not exist.

use axum::Router as HttpRouter;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, post};
use futures_util::TryStreamExt as _;
use serde::Deserialize;

use super::{AppJson, AppPath, AppQuery, AppState, AuthUser};
use crate::error::{ApiError, Result};
use crate::files::{BodyError, FileError};
use crate::store::{FileRecord, RoomId};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/v1/rooms/{id}/files", post(upload))
        .route("/api/v1/files/{id}", get(download))
        .route("/api/v1/files/{id}/info", get(info))
}

#[derive(Debug, Deserialize)]
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

/// `POST /api/v1/rooms/{id}/files?name=…`: the request body is the file. Its type is sniffed
/// from its bytes, whatever the client's `Content-Type` says.
async fn upload(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(room): AppPath<RoomId>,
    AppQuery(query): AppQuery<UploadQuery>,
    request: Request,
) -> Result<(StatusCode, AppJson<FileRecord>)> {
    state.router.require_member(caller.user.id, room).await?;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let name = query.name.clone();
    let body = request.into_body().into_data_stream().map_err(|err| {
        if super::listener::is_body_timeout(&err) {
            BodyError::TimedOut
        } else {
            BodyError::Broken(err.to_string())
        }
    });
    let uploaded = match state
        .files
        .upload(
            state.store.as_ref(),
            room,
            caller.user.id,
            &query.name,
            declared,
            body,
        )
        .await
    {
        Ok(uploaded) => uploaded,
        Err(FileError::Infected(signature)) => {
            // On the record: who, where, which signature — never the content.
            crate::audit::record(
                state.store.as_ref(),
                crate::audit::Actor::User(caller.user.id),
                crate::audit::Action::FileRejected,
                crate::audit::Subject::Room(room),
                serde_json::json!({
                    "name": crate::files::safe_name(&name), "scanner": "clamav",
                    "signature": signature,
                }),
            )
            .await;
            return Err(FileError::Infected(signature).into());
        }
        Err(err) => return Err(err.into()),
    };
    tracing::info!(
        file = uploaded.file.id,
        room,
        bytes = uploaded.file.size,
        content_type = %uploaded.file.content_type,
        "file uploaded"
    );
    Ok((StatusCode::CREATED, AppJson(uploaded.file)))
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
        .filter(|f| f.state == "ready")
        .ok_or_else(missing)?;
    state
        .router
        .require_member(caller.user.id, file.room_id)
        .await
        .map_err(|_| missing())?;
    Ok(file)
}

async fn info(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<FileRecord>> {
    Ok(AppJson(readable_file(&state, &caller, id).await?))
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

/// `GET /api/v1/files/{id}`: the bytes, always as an attachment (never rendered by the
/// browser as a page of this origin), with `Range` support.
async fn download(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<i64>,
    headers: HeaderMap,
) -> Result<Response> {
    let file = readable_file(&state, &caller, id).await?;
    let size = file.size as u64;
    let (status, range) = match requested_range(&headers, size) {
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
    let download = state.files.download(&file, range.clone()).await?;
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

//! The compliance role's endpoints: the audit log in chain order and its verification,
//! legal holds, and the kept earlier texts of messages.
//! Every read is itself an audit record (who read how much), so reviewing the record
//! leaves a trace in it.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppJson, AppPath, AppQuery, AppState, ComplianceUser};
use crate::audit::{self, Action, Actor, Subject, VerifyReport};
use crate::error::{ApiError, Result};
use crate::holds::{self, HoldRequest};
use crate::retention::{self, Preview};
use crate::store::AuditRecord;
use crate::store::{EventVersion, LegalHold, RoomId, UserId};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(read_chain))
        .routes(routes!(verify))
        .routes(routes!(list_holds, create_hold))
        .routes(routes!(release_hold))
        .routes(routes!(versions))
        .routes(routes!(retention_policies))
        .routes(routes!(set_room_retention))
        .routes(routes!(retention_preview))
        .routes(routes!(retention_run))
        .routes(routes!(list_exports, run_export))
        .routes(routes!(download_export))
}

/// Most records one page returns.
const PAGE_MAX: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ChainQuery {
    /// Records after this `seq` (0: from the start).
    #[serde(default)]
    after: i64,
    /// At most this many records (default 200, at most 1000).
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ChainPage {
    records: Vec<AuditRecord>,
    /// The `after` of the next page, when there may be one.
    next_after: Option<i64>,
}

/// Read the audit log in chain order.
///
/// Each record comes with its `seq`, `prev_hash` and `hash`, so a reviewer can check the
/// links themselves. The read is itself recorded.
#[utoipa::path(get, path = "/api/v1/compliance/audit", tag = "compliance",
    operation_id = "read_audit_chain",
    params(ChainQuery),
    responses((status = 200, description = "A page of the audit log in chain order", body = ChainPage)))]
async fn read_chain(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
    AppQuery(query): AppQuery<ChainQuery>,
) -> Result<AppJson<ChainPage>> {
    if query.after < 0 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "`after` is a seq: 0 or more",
        ));
    }
    let limit = query.limit.unwrap_or(200).clamp(1, PAGE_MAX);
    let records = state.store.audit_chain(query.after, limit).await?;
    audit::record(
        state.store.as_ref(),
        Actor::User(caller.user.id),
        Action::AuditRead,
        Subject::AuditLog,
        serde_json::json!({ "after": query.after, "returned": records.len() }),
    )
    .await;
    let next_after = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.seq))
        .flatten();
    Ok(AppJson(ChainPage {
        records,
        next_after,
    }))
}

/// Verify the audit chain against the database's checkpoints.
///
/// Walks the chain as `switchboard audit verify` does (which can also read the external
/// checkpoint file). The verification is itself recorded.
#[utoipa::path(get, path = "/api/v1/compliance/audit/verify", tag = "compliance",
    operation_id = "verify_audit_chain",
    responses((status = 200, description = "What the verification found", body = VerifyReport)))]
async fn verify(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
) -> Result<AppJson<VerifyReport>> {
    let key = audit::load_or_create_key(&state.config.compliance, &state.config.data_dir)
        .map_err(ApiError::internal)?;
    let report = audit::verify(state.store.as_ref(), &key.public(), Vec::new())
        .await
        .map_err(ApiError::internal)?;
    audit::record(
        state.store.as_ref(),
        Actor::User(caller.user.id),
        Action::AuditVerify,
        Subject::AuditLog,
        serde_json::json!({ "records": report.records, "intact": report.is_intact() }),
    )
    .await;
    Ok(AppJson(report))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateHold {
    name: String,
    #[serde(default)]
    users: Vec<UserId>,
    #[serde(default)]
    rooms: Vec<RoomId>,
    /// Messages created at or after this time (milliseconds since the epoch).
    #[serde(default)]
    from: Option<i64>,
    /// ... and before this one.
    #[serde(default)]
    until: Option<i64>,
}

/// Place a legal hold on users' and rooms' messages.
///
/// The hold is in force the moment this returns.
#[utoipa::path(post, path = "/api/v1/compliance/holds", tag = "compliance",
    request_body = CreateHold,
    responses((status = 201, description = "The hold, in force", body = LegalHold)))]
async fn create_hold(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
    AppJson(req): AppJson<CreateHold>,
) -> Result<(StatusCode, AppJson<LegalHold>)> {
    let request = HoldRequest {
        name: req.name,
        users: req.users,
        rooms: req.rooms,
        from_at: req.from,
        until_at: req.until,
    };
    let hold = holds::create(state.store.as_ref(), request, caller.user.id).await?;
    Ok((StatusCode::CREATED, AppJson(hold)))
}

/// Every legal hold, released ones included.
#[utoipa::path(get, path = "/api/v1/compliance/holds", tag = "compliance",
    responses((status = 200, description = "The legal holds", body = Vec<LegalHold>)))]
async fn list_holds(
    State(state): State<AppState>,
    ComplianceUser(_): ComplianceUser,
) -> Result<AppJson<Vec<LegalHold>>> {
    Ok(AppJson(state.store.holds().await?))
}

/// Ask for a legal hold's release, or confirm another compliance user's request.
///
/// A request takes effect after `compliance.hold_release_delay_secs`; a confirmation by
/// another compliance user takes effect at once.
#[utoipa::path(post, path = "/api/v1/compliance/holds/{id}/release", tag = "compliance",
    params(("id" = i64, Path, description = "The legal hold")),
    responses((status = 200, description = "The hold with its release as it stands", body = LegalHold)))]
async fn release_hold(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<LegalHold>> {
    let delay_ms = i64::try_from(
        state
            .config
            .compliance
            .hold_release_delay_secs
            .saturating_mul(1000),
    )
    .unwrap_or(i64::MAX / 2);
    let hold = holds::release(state.store.as_ref(), id, caller.user.id, delay_ms).await?;
    Ok(AppJson(hold))
}

/// The kept earlier texts of a message and its edits, oldest first.
///
/// Texts are kept under a legal hold, or with `compliance.preserve_deleted`. The read is
/// recorded.
#[utoipa::path(get, path = "/api/v1/compliance/messages/{id}/versions", tag = "compliance",
    operation_id = "message_versions",
    params(("id" = i64, Path, description = "The message")),
    responses((status = 200, description = "The kept earlier texts, oldest first", body = Vec<EventVersion>)))]
async fn versions(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
    AppPath(id): AppPath<i64>,
) -> Result<AppJson<Vec<EventVersion>>> {
    let versions = state.store.message_versions(id).await?;
    audit::record(
        state.store.as_ref(),
        Actor::User(caller.user.id),
        Action::VersionsRead,
        Subject::Message(id),
        serde_json::json!({ "versions": versions.len() }),
    )
    .await;
    Ok(AppJson(versions))
}

#[derive(Debug, Serialize, ToSchema)]
struct RetentionPolicies {
    /// `compliance.retention_days` (0: keep forever).
    global_days: u32,
    /// `compliance.retention_min_days`.
    min_days: u32,
    rooms: Vec<RoomRetention>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct RoomRetention {
    room: RoomId,
    days: i64,
}

/// The retention settings: the global ones and every room's own.
#[utoipa::path(get, path = "/api/v1/compliance/retention", tag = "compliance",
    responses((status = 200, description = "The retention settings", body = RetentionPolicies)))]
async fn retention_policies(
    State(state): State<AppState>,
    ComplianceUser(_): ComplianceUser,
) -> Result<AppJson<RetentionPolicies>> {
    let rooms = state
        .store
        .room_retentions()
        .await?
        .into_iter()
        .map(|(room, days)| RoomRetention { room, days })
        .collect();
    Ok(AppJson(RetentionPolicies {
        global_days: state.config.compliance.retention_days,
        min_days: state.config.compliance.retention_min_days,
        rooms,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetRetention {
    /// Days to keep this room's messages; `null` follows the global setting again.
    days: Option<i64>,
}

/// Set how long one room's messages are kept, or let it follow the global setting again.
#[utoipa::path(put, path = "/api/v1/compliance/retention/rooms/{id}", tag = "compliance",
    params(("id" = i64, Path, description = "The room")),
    request_body = SetRetention,
    responses((status = 204, description = "The room's retention is set")))]
async fn set_room_retention(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
    AppPath(room): AppPath<RoomId>,
    AppJson(req): AppJson<SetRetention>,
) -> Result<StatusCode> {
    retention::set_room(
        state.store.as_ref(),
        &state.config.compliance,
        room,
        req.days,
        Actor::User(caller.user.id),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Exactly what a retention run now would erase, and how much a hold keeps.
///
/// Nothing changes.
#[utoipa::path(get, path = "/api/v1/compliance/retention/preview", tag = "compliance",
    responses((status = 200, description = "What a run now would erase", body = Preview)))]
async fn retention_preview(
    State(state): State<AppState>,
    ComplianceUser(_): ComplianceUser,
) -> Result<AppJson<Preview>> {
    Ok(AppJson(
        retention::preview(state.store.as_ref(), &state.config.compliance).await?,
    ))
}

/// Run retention now.
///
/// It also runs every `compliance.retention_interval_secs`.
#[utoipa::path(post, path = "/api/v1/compliance/retention/run", tag = "compliance",
    responses((status = 200, description = "What the run erased, and how much a hold kept", body = Preview)))]
async fn retention_run(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
) -> Result<AppJson<Preview>> {
    Ok(AppJson(
        retention::run(
            state.store.as_ref(),
            &state.config.compliance,
            Actor::User(caller.user.id),
        )
        .await?,
    ))
}

/// The two export series on the server: the scheduled one (`compliance.export_dir`,
/// resuming from its cursor) and the batches reviewers ask for through the API, kept apart
/// so that a reviewer's range never moves the schedule's cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
enum Series {
    Scheduled,
    OnDemand,
}

impl Series {
    fn dir(self, state: &AppState) -> Result<std::path::PathBuf> {
        let root = state.config.compliance.export_dir.clone().ok_or_else(|| {
            ApiError::conflict(
                "export_not_configured",
                "set compliance.export_dir to keep export batches on the server",
            )
        })?;
        Ok(match self {
            Self::Scheduled => root,
            Self::OnDemand => root.join("on-demand"),
        })
    }
}

/// What an on-demand export covers (empty lists: every room, every sender).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RunExport {
    #[serde(default)]
    rooms: Vec<RoomId>,
    #[serde(default)]
    users: Vec<UserId>,
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    until: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct ExportBatch {
    series: Series,
    batch: String,
    manifest: crate::export::Manifest,
}

/// Write an on-demand export batch now.
///
/// The batch goes to the `on-demand` series under `compliance.export_dir`, apart from the
/// scheduled series, so a reviewer's range never moves the schedule's cursor.
#[utoipa::path(post, path = "/api/v1/compliance/exports", tag = "compliance",
    request_body = RunExport,
    responses((status = 201, description = "The batch written", body = ExportBatch)))]
async fn run_export(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
    AppJson(req): AppJson<RunExport>,
) -> Result<(StatusCode, AppJson<ExportBatch>)> {
    let dir = Series::OnDemand.dir(&state)?;
    if let (Some(from), Some(until)) = (req.from, req.until)
        && from >= until
    {
        return Err(ApiError::bad_request(
            "invalid_range",
            "`from` must be before `until`",
        ));
    }
    for &room in &req.rooms {
        if state.store.room(room).await?.is_none() {
            return Err(ApiError::not_found(
                "room_not_found",
                format!("no room {room}"),
            ));
        }
    }
    for &user in &req.users {
        if state.store.user_by_id(user).await?.is_none() {
            return Err(ApiError::not_found(
                "user_not_found",
                format!("no user {user}"),
            ));
        }
    }
    let key = audit::load_or_create_key(&state.config.compliance, &state.config.data_dir)
        .map_err(ApiError::internal)?;
    let request = crate::export::ExportRequest {
        rooms: req.rooms,
        users: req.users,
        from_at: req.from,
        until_at: req.until,
    };
    let (batch, manifest) = crate::export::export(
        state.store.as_ref(),
        &state.files,
        &key,
        &request,
        &dir,
        &crate::export::ArchiveSettings::from_config(&state.config.compliance),
    )
    .await
    .map_err(ApiError::internal)?;
    let batch = batch
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    audit::record(
        state.store.as_ref(),
        Actor::User(caller.user.id),
        Action::ExportRun,
        Subject::Export,
        serde_json::json!({ "series": Series::OnDemand, "batch": batch, "events": manifest.events, "request": manifest.request }),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        AppJson(ExportBatch {
            series: Series::OnDemand,
            batch,
            manifest,
        }),
    ))
}

/// Every export batch of both series, scheduled first.
#[utoipa::path(get, path = "/api/v1/compliance/exports", tag = "compliance",
    responses((status = 200, description = "The export batches", body = Vec<ExportBatch>)))]
async fn list_exports(
    State(state): State<AppState>,
    ComplianceUser(_): ComplianceUser,
) -> Result<AppJson<Vec<ExportBatch>>> {
    let mut all = Vec::new();
    for series in [Series::Scheduled, Series::OnDemand] {
        let batches = crate::export::list(&series.dir(&state)?).map_err(ApiError::internal)?;
        all.extend(batches.into_iter().map(|(batch, manifest)| ExportBatch {
            series,
            batch,
            manifest,
        }));
    }
    Ok(AppJson(all))
}

/// Download one file of an export batch, as an attachment.
///
/// Only the series' batch names and the files a batch holds are served: nothing else of
/// the disk is reachable through this. The content type follows the file's extension
/// (`.csv`, `.json`, `.jsonl`, `.xml`, `.eml`, attachments' names included); any other file
/// (the manifest's signature, most attachments) is sent as `text/plain`. Both text types
/// carry `charset=utf-8`. The download is recorded.
#[utoipa::path(get, path = "/api/v1/compliance/exports/{series}/{batch}/{file}", tag = "compliance",
    params(("series" = Series, Path, description = "The series: `scheduled` or `on-demand`"),
        ("batch" = String, Path, description = "The batch's name"),
        ("file" = String, Path, description = "A file the batch's manifest lists, `manifest.json` or `manifest.sig`")),
    responses((status = 200, description = "The file's bytes",
        content(
            (String = "text/csv"),
            (serde_json::Value = "application/json"),
            (String = "application/x-ndjson"),
            (String = "application/xml"),
            (String = "message/rfc822"),
            ([u8] = "text/plain"),
        ),
        headers(("content-disposition" = String,
            description = "`attachment; filename=\"<batch>-<file>\"`")))))]
async fn download_export(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
    AppPath((series, batch, file)): AppPath<(Series, String, String)>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let dir = series.dir(&state)?;
    let known = crate::export::list(&dir).map_err(ApiError::internal)?;
    if !known
        .iter()
        .any(|(name, manifest)| *name == batch && crate::export::holds_file(manifest, &file))
    {
        return Err(ApiError::not_found(
            "export_not_found",
            "no such export file",
        ));
    }
    let bytes = tokio::fs::read(dir.join(&batch).join(&file))
        .await
        .map_err(|_| ApiError::not_found("export_not_found", "no such export file"))?;
    audit::record(
        state.store.as_ref(),
        Actor::User(caller.user.id),
        Action::ExportDownload,
        Subject::Export,
        serde_json::json!({ "series": series, "batch": batch, "file": file, "bytes": bytes.len() }),
    )
    .await;
    let content_type = match file.rsplit('.').next() {
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        Some("jsonl") => "application/x-ndjson",
        Some("xml") => "application/xml",
        Some("eml") => "message/rfc822",
        _ => "text/plain; charset=utf-8",
    };
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_string()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{batch}-{file}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

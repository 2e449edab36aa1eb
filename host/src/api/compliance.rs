//! The compliance role's endpoints: the audit log in chain order and its verification,
//! legal holds, and the kept earlier texts of messages.
//! Every read is itself an audit record (who read how much), so reviewing the record
//! leaves a trace in it.

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::{AppJson, AppPath, AppQuery, AppState, ComplianceUser};
use crate::audit::{self, Action, Actor, Subject, VerifyReport};
use crate::error::{ApiError, Result};
use crate::holds::{self, HoldRequest};
use crate::retention::{self, Preview};
use crate::store::AuditRecord;
use crate::store::{EventVersion, LegalHold, RoomId, UserId};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/v1/compliance/audit", get(read_chain))
        .route("/api/v1/compliance/audit/verify", get(verify))
        .route(
            "/api/v1/compliance/holds",
            get(list_holds).post(create_hold),
        )
        .route("/api/v1/compliance/holds/{id}/release", post(release_hold))
        .route("/api/v1/compliance/messages/{id}/versions", get(versions))
        .route("/api/v1/compliance/retention", get(retention_policies))
        .route(
            "/api/v1/compliance/retention/rooms/{id}",
            axum::routing::put(set_room_retention),
        )
        .route(
            "/api/v1/compliance/retention/preview",
            get(retention_preview),
        )
        .route("/api/v1/compliance/retention/run", post(retention_run))
}

/// Most records one page returns.
const PAGE_MAX: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainQuery {
    /// Records after this `seq` (0: from the start).
    #[serde(default)]
    after: i64,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct ChainPage {
    records: Vec<AuditRecord>,
    /// The `after` of the next page, when there may be one.
    next_after: Option<i64>,
}

/// The audit log in chain order, with each record's `seq`, `prev_hash` and `hash`, so a
/// reviewer can check the links themselves.
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

/// Walk the chain and check it against the database's checkpoints, as
/// `switchboard audit verify` does (which can also read the external checkpoint file).
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

#[derive(Debug, Deserialize)]
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

/// A hold is in force the moment this returns.
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

async fn list_holds(
    State(state): State<AppState>,
    ComplianceUser(_): ComplianceUser,
) -> Result<AppJson<Vec<LegalHold>>> {
    Ok(AppJson(state.store.holds().await?))
}

/// Ask for a release (it takes effect after `compliance.hold_release_delay_secs`), or
/// confirm another compliance user's request (it takes effect at once).
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

/// The kept earlier texts of a message and its edits (under a hold, or with
/// `compliance.preserve_deleted`), oldest first. The read is recorded.
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

#[derive(Debug, Serialize)]
struct RetentionPolicies {
    /// `compliance.retention_days` (0: keep forever).
    global_days: u32,
    /// `compliance.retention_min_days`.
    min_days: u32,
    rooms: Vec<RoomRetention>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RoomRetention {
    room: RoomId,
    days: i64,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRetention {
    /// Days to keep this room's messages; `null` follows the global setting again.
    days: Option<i64>,
}

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

/// Exactly what a run now would erase, and how much a hold keeps; nothing changes.
async fn retention_preview(
    State(state): State<AppState>,
    ComplianceUser(_): ComplianceUser,
) -> Result<AppJson<Preview>> {
    Ok(AppJson(
        retention::preview(state.store.as_ref(), &state.config.compliance).await?,
    ))
}

/// Run retention now (it also runs every `compliance.retention_interval_secs`).
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

//! The compliance role's endpoints: the audit log in chain order and its verification.
//! Every read is itself an audit record (who read how much), so reviewing the record
//! leaves a trace in it.

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{AppJson, AppQuery, AppState, ComplianceUser};
use crate::audit::{self, Action, Actor, Subject, VerifyReport};
use crate::error::{ApiError, Result};
use crate::store::AuditRecord;

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/v1/compliance/audit", get(read_chain))
        .route("/api/v1/compliance/audit/verify", get(verify))
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

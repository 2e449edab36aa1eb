//! The language model's settings and usage: what the admin console's Assistant section
//! shows operators (never the API key) and the governance they may change while the server
//! runs (budgets, DLP actions, tool policy, what the audit keeps), and a person's own use of
//! their daily budget.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AdminUser, AppJson, AppState, AuthUser};
use crate::audit::{self, Action, Actor, Subject};
use crate::error::{ApiError, Result};
use crate::llm::{Governance, LlmError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(settings))
        .routes(routes!(set_governance, reset_governance))
        .routes(routes!(my_usage))
}

#[derive(Debug, Serialize, ToSchema)]
struct Settings {
    configured: bool,
    base_url: String,
    model: String,
    /// Whether an API key is set (the key itself is never shown).
    api_key_set: bool,
    stream: bool,
    stream_usage: bool,
    /// `max_tokens` or `max_completion_tokens`.
    max_tokens_field: &'static str,
    timeout_secs: u64,
    idle_timeout_secs: u64,
    max_output_tokens: u32,
    max_prompt_bytes: usize,
    max_reply_bytes: usize,
    max_concurrent_calls: usize,
    /// The governance in force (an operator's change, else `[llm]`'s).
    governance: Governance,
    /// Whether an operator changed it from `[llm]`'s values.
    governance_changed: bool,
    /// Today's use (UTC), heaviest first.
    usage_today: Vec<Usage>,
}

// `LlmUsage` in the API description: another module has a `Usage` of its own.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LlmUsage)]
struct Usage {
    /// `user` or `room`.
    scope: String,
    id: i64,
    tokens: u64,
}

/// The language model's settings, the governance in force, and today's use.
#[utoipa::path(get, path = "/api/v1/admin/llm", tag = "llm", operation_id = "llm_settings",
    responses((status = 200, description = "The settings (never the API key)", body = Settings)))]
async fn settings(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<AppJson<Settings>> {
    let llm = &state.llm;
    let c = llm.config();
    let governance = llm.governance().await.map_err(llm_error)?;
    let governance_changed = governance != llm.configured_governance();
    let usage_today = llm
        .usage_of_today()
        .await
        .map_err(llm_error)?
        .into_iter()
        .map(|(scope, id, tokens)| Usage { scope, id, tokens })
        .collect();
    Ok(AppJson(Settings {
        configured: llm.configured(),
        base_url: c.base_url.clone(),
        model: c.model.clone(),
        api_key_set: c.api_key.is_some(),
        stream: c.stream,
        stream_usage: c.stream_usage,
        max_tokens_field: c.max_tokens_field.as_str(),
        timeout_secs: c.timeout_secs,
        idle_timeout_secs: c.idle_timeout_secs,
        max_output_tokens: c.max_output_tokens,
        max_prompt_bytes: c.max_prompt_bytes,
        max_reply_bytes: c.max_reply_bytes,
        max_concurrent_calls: c.max_concurrent_calls,
        governance,
        governance_changed,
        usage_today,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
struct MyUsage {
    /// Tokens used today (UTC).
    used_today: u64,
    /// The daily budget; 0: none.
    daily_limit: u64,
}

/// The caller's own use of their daily token budget.
#[utoipa::path(get, path = "/api/v1/llm/usage", tag = "llm", operation_id = "my_llm_usage",
    responses((status = 200, description = "Today's use and the daily budget", body = MyUsage)))]
async fn my_usage(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<AppJson<MyUsage>> {
    let (used, _) = state
        .llm
        .usage_today(caller.user.id, None)
        .await
        .map_err(llm_error)?;
    let governance = state.llm.governance().await.map_err(llm_error)?;
    Ok(AppJson(MyUsage {
        used_today: used,
        daily_limit: governance.user_daily_tokens,
    }))
}

fn llm_error(err: LlmError) -> ApiError {
    match err {
        LlmError::InvalidRequest(why) => ApiError::bad_request("invalid_governance", why),
        other => ApiError::internal(anyhow::anyhow!(other.to_string())),
    }
}

/// Replace the governance (every field; the console sends what it showed, changed).
#[utoipa::path(put, path = "/api/v1/admin/llm/governance", tag = "llm",
    request_body = Governance,
    responses((status = 200, description = "The governance now in force", body = Governance)))]
async fn set_governance(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppJson(governance): AppJson<Governance>,
) -> Result<AppJson<Governance>> {
    let before = state.llm.governance().await.map_err(llm_error)?;
    state
        .llm
        .set_governance(&governance)
        .await
        .map_err(llm_error)?;
    audit::record(
        state.store.as_ref(),
        Actor::User(admin.user.id),
        Action::LlmSettings,
        Subject::Llm,
        serde_json::json!({ "before": before, "after": governance }),
    )
    .await;
    Ok(AppJson(governance))
}

/// Drop the operators' changes to the governance.
///
/// Back to `[llm]`'s values.
#[utoipa::path(delete, path = "/api/v1/admin/llm/governance", tag = "llm",
    responses((status = 204, description = "`[llm]`'s governance is in force again")))]
async fn reset_governance(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
) -> Result<StatusCode> {
    state.llm.reset_governance().await.map_err(llm_error)?;
    audit::record(
        state.store.as_ref(),
        Actor::User(admin.user.id),
        Action::LlmSettings,
        Subject::Llm,
        serde_json::json!({ "reset": true }),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

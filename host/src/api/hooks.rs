//! Incoming webhooks over HTTP: `POST /hooks/{key}` takes Slack's payload and answers `ok`
//! as Slack does; a room's owner (or a server admin) makes, lists and revokes the room's
//! hooks under `/api/v1/rooms/{id}/webhooks`. See [`crate::webhooks`].

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;

use super::{AdminUser, AppJson, AppPath, AppState, AuthUser, parse_json, read_body};
use crate::error::{ApiError, Result};
use crate::store::{IncomingWebhook, RoomId, User};
use crate::webhooks::slack::Payload;

/// The webhooks' routes; posts may be as large as `max_payload_bytes`.
pub fn routes(max_payload_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post).layer(DefaultBodyLimit::max(max_payload_bytes)))
        .routes(routes!(list, create))
        .routes(routes!(revoke))
        .routes(routes!(list_all))
}

/// Post a message through an incoming webhook, in Slack's format.
///
/// The body is Slack's payload (`text`, `username`, `icon_url`, `icon_emoji`, `attachments`,
/// `blocks`) as JSON, or form-encoded as `payload=<json>`. The post passes the plugin chain
/// like any message; a plugin's rejection is answered `403 message_rejected` with its reason.
/// Errors use Slack's codes where Slack has one (`invalid_payload`, `no_text`, `no_service`).
#[utoipa::path(post, path = "/hooks/{key}", tag = "webhooks", operation_id = "post_to_webhook",
    params(("key" = String, Path, description = "The hook's secret key (from its URL)")),
    request_body(content = serde_json::Value, description = "Slack's payload",
        content_type = "application/json"),
    security(()),
    responses((status = 200, description = "Posted", body = String, content_type = "text/plain")))]
async fn post(
    State(state): State<AppState>,
    AppPath(key): AppPath<String>,
    request: Request,
) -> Result<(
    StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    &'static str,
)> {
    require_enabled(&state)?;
    let headers = request.headers().clone();
    let body = read_body(request, &state).await?;
    let payload = payload_of(&headers, &body)?;
    state.webhooks.post(&key, payload).await?;
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok",
    ))
}

/// The payload from a JSON body or a `payload=` form field (what Slack accepts). A form body
/// without that field, or a body sent with another content type, is read as JSON: tools
/// such as `curl -d` send JSON labelled as a form.
fn payload_of(headers: &HeaderMap, body: &[u8]) -> Result<Payload> {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form_payload = if is_form {
        form_urlencoded::parse(body)
            .find(|(name, _)| name == "payload")
            .map(|(_, value)| value.into_owned())
    } else {
        None
    };
    let json = form_payload.as_deref().map_or(body, str::as_bytes);
    if json.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "invalid_payload",
            "the body is empty: send Slack's payload as JSON or as `payload=<json>`",
        ));
    }
    parse_json::<Payload>(json).map_err(|err| match err {
        // Slack's code for what is not its payload; text rules keep their own codes.
        ApiError::BadRequest {
            code: "malformed_json" | "invalid_body" | "invalid_utf8",
            message,
        } => ApiError::bad_request("invalid_payload", format!("not a Slack payload: {message}")),
        other => other,
    })
}

fn require_enabled(state: &AppState) -> Result<()> {
    if state.webhooks.config().enabled {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "webhooks_disabled",
            "incoming webhooks are turned off on this server",
        ))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateWebhook {
    /// What the hook is for (`Alertmanager`, `CI`): the display name its posts show.
    name: String,
}

/// A hook just made. `url_path` (and `url`, when `identity.public_url` is set) hold its
/// secret key: they are shown this once.
#[derive(Debug, Serialize, ToSchema)]
struct CreatedWebhook {
    webhook: IncomingWebhook,
    /// The bot account the hook posts as.
    bot: User,
    /// `/hooks/<key>`: post here.
    url_path: String,
    /// The full URL, from `identity.public_url`; absent when that is not set.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// Make an incoming webhook for a room (its owner, or a server admin).
#[utoipa::path(post, path = "/api/v1/rooms/{id}/webhooks", tag = "webhooks", operation_id = "create_webhook",
    params(("id" = i64, Path, description = "The room")),
    request_body = CreateWebhook,
    responses((status = 201, description = "The new hook; its URL is shown only now",
        body = CreatedWebhook)))]
async fn create(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
    AppJson(req): AppJson<CreateWebhook>,
) -> Result<(StatusCode, AppJson<CreatedWebhook>)> {
    require_enabled(&state)?;
    let created = state.webhooks.create(&caller.user, id, &req.name).await?;
    let url_path = format!("/hooks/{}", created.key);
    let public = state.config.identity.public_url.trim_end_matches('/');
    let url = (!public.is_empty()).then(|| format!("{public}{url_path}"));
    Ok((
        StatusCode::CREATED,
        AppJson(CreatedWebhook {
            webhook: created.hook,
            bot: created.bot,
            url_path,
            url,
        }),
    ))
}

/// A room's incoming webhooks, revoked ones too, newest first (its owner, or a server
/// admin). Their keys are never shown again.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    params(("id" = i64, Path, description = "The room")),
    responses((status = 200, description = "The room's hooks", body = Vec<IncomingWebhook>)))]
async fn list(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
) -> Result<AppJson<Vec<IncomingWebhook>>> {
    Ok(AppJson(state.webhooks.list(&caller.user, id).await?))
}

/// Revoke a room's incoming webhook: its URL stops working at once and its bot leaves.
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/webhooks/{hook}", tag = "webhooks", operation_id = "revoke_webhook",
    params(("id" = i64, Path, description = "The room"),
        ("hook" = i64, Path, description = "The hook")),
    responses((status = 204, description = "Revoked")))]
async fn revoke(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, hook)): AppPath<(RoomId, i64)>,
) -> Result<StatusCode> {
    state.webhooks.revoke(&caller.user, id, hook).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every room's incoming webhooks, revoked ones too, newest first (server admins).
#[utoipa::path(get, path = "/api/v1/admin/webhooks", tag = "webhooks",
    operation_id = "list_all_webhooks",
    responses((status = 200, description = "All hooks", body = Vec<IncomingWebhook>)))]
async fn list_all(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<AppJson<Vec<IncomingWebhook>>> {
    Ok(AppJson(state.store.incoming_webhooks(None).await?))
}

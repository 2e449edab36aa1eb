//! The Matrix client–server subset over HTTP (`/_matrix/client/…`): what an unmodified
//! Matrix bot (matrix-nio, …) needs to log in, sync, join, read history, send, edit and
//! redact. The translation lives in [`crate::matrix`]; this module speaks Matrix's wire
//! format: its access tokens, its query parameters, and its errors — `{"errcode": "M_…",
//! "error": "…"}`, with `retry_after_ms` for `M_LIMIT_EXCEEDED` and Switchboard's own code as
//! `switchboard_code`.

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppPath, AppQuery, AppState, bearer_token, parse_json, read_body};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::matrix::{Direction, Matrix};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(versions))
        .routes(routes!(login_flows, login))
        .routes(routes!(whoami))
        .routes(routes!(sync))
        .routes(routes!(join))
        .routes(routes!(join_room))
        .routes(routes!(send))
        .routes(routes!(redact))
        .routes(routes!(messages))
        .routes(routes!(logout))
}

/// Prefix of the access tokens this surface hands out (a session's own secret follows).
const TOKEN_PREFIX: &str = "mx_";

/// A Matrix error answer.
#[derive(Debug)]
pub struct MatrixError(pub ApiError);

impl From<ApiError> for MatrixError {
    fn from(err: ApiError) -> Self {
        Self(err)
    }
}

impl From<crate::store::StoreError> for MatrixError {
    fn from(err: crate::store::StoreError) -> Self {
        Self(err.into())
    }
}

/// `{"errcode", "error"}` as the Matrix spec describes errors.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct MatrixErrorBody {
    /// `M_FORBIDDEN`, `M_UNKNOWN_TOKEN`, `M_LIMIT_EXCEEDED`, …
    pub errcode: String,
    pub error: String,
    /// Switchboard's own code for the same error (docs/protocol.md).
    pub switchboard_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// The Matrix `errcode` for one of our errors.
pub fn errcode(err: &ApiError) -> &'static str {
    match err {
        ApiError::Unauthenticated { code, .. } if *code == "missing_token" => "M_MISSING_TOKEN",
        ApiError::Unauthenticated { .. } => "M_UNKNOWN_TOKEN",
        ApiError::Forbidden { .. }
        | ApiError::Rejected { .. }
        | ApiError::FileRejected { .. }
        | ApiError::DownloadDenied { .. } => "M_FORBIDDEN",
        ApiError::NotFound { code, .. } if *code == "no_route" => "M_UNRECOGNIZED",
        ApiError::NotFound { .. } | ApiError::Gone { .. } => "M_NOT_FOUND",
        ApiError::BadRequest { code, .. } => match *code {
            "malformed_json" | "invalid_utf8" => "M_NOT_JSON",
            "invalid_body" | "invalid_text" | "unsupported_msgtype" | "unsupported_event_type" => {
                "M_BAD_JSON"
            }
            _ => "M_INVALID_PARAM",
        },
        ApiError::PayloadTooLarge { .. } => "M_TOO_LARGE",
        ApiError::TooManyRequests { .. } => "M_LIMIT_EXCEEDED",
        ApiError::Conflict { .. } => "M_BAD_STATE",
        _ => "M_UNKNOWN",
    }
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        let err = self.0;
        err.log();
        let body = err.body();
        let answer = MatrixErrorBody {
            errcode: errcode(&err).to_string(),
            error: body.message,
            switchboard_code: body.code,
            retry_after_ms: body.retry_after_ms,
        };
        (err.status(), axum::Json(answer)).into_response()
    }
}

type Answer = Result<axum::Json<Value>, MatrixError>;

fn matrix(state: &AppState) -> Result<&Matrix, MatrixError> {
    if state.matrix.config().enabled {
        Ok(&state.matrix)
    } else {
        Err(ApiError::not_found("no_route", "the Matrix API is turned off on this server").into())
    }
}

/// The caller, from `Authorization: Bearer mx_…` (or the deprecated `?access_token=`).
#[derive(Debug, Clone)]
pub struct MatrixUser(pub Caller);

impl axum::extract::FromRequestParts<AppState> for MatrixUser {
    type Rejection = MatrixError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, MatrixError> {
        matrix(state)?;
        let from_query = parts.uri.query().and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "access_token")
                .map(|(_, value)| value.into_owned())
        });
        let token = bearer_token(parts)
            .map(str::to_string)
            .or(from_query)
            .ok_or_else(|| {
                ApiError::unauthenticated("missing_token", "send the access token login gave you")
            })?;
        let secret = token.strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
            ApiError::unauthenticated(
                "invalid_token",
                "not an access token of this server's Matrix API",
            )
        })?;
        Ok(Self(state.auth.authenticate_session_secret(secret).await?))
    }
}

/// The Matrix spec versions this subset follows.
#[utoipa::path(get, path = "/_matrix/client/versions", tag = "matrix", operation_id = "matrix_versions", security(()),
    responses((status = 200, description = "Supported versions", body = Value)))]
async fn versions(State(state): State<AppState>) -> Answer {
    matrix(&state)?;
    Ok(axum::Json(json!({
        "versions": ["v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6"],
        "unstable_features": {},
    })))
}

/// How to log in: with a password.
#[utoipa::path(get, path = "/_matrix/client/v3/login", tag = "matrix", operation_id = "matrix_login_flows", security(()),
    responses((status = 200, description = "The login flows", body = Value)))]
async fn login_flows(State(state): State<AppState>) -> Answer {
    matrix(&state)?;
    Ok(axum::Json(
        json!({ "flows": [{ "type": "m.login.password" }] }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
struct LoginRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    identifier: Option<Identifier>,
    /// The older spelling of the user, without `identifier`.
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
struct Identifier {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    user: Option<String>,
}

/// Log in with `m.login.password` (the same checks, lockouts and audit as the server's own
/// login). The access token lasts as long as the session; the device id is the session's.
#[utoipa::path(post, path = "/_matrix/client/v3/login", tag = "matrix", operation_id = "matrix_login", security(()),
    request_body = LoginRequest,
    responses((status = 200, description = "The new session", body = Value)))]
async fn login(State(state): State<AppState>, parts: Parts, request: Request) -> Answer {
    let matrix = matrix(&state)?;
    let client = super::account::client_of(&state, &parts);
    let body = read_body(request, &state).await?;
    let req: LoginRequest = parse_json(&body)?;
    if req.kind != "m.login.password" {
        return Err(ApiError::bad_request(
            "unsupported_login",
            "this server takes `m.login.password` only",
        )
        .into());
    }
    let user = match (&req.identifier, &req.user) {
        (Some(id), _) if id.kind == "m.id.user" => id.user.clone(),
        (Some(_), _) => None,
        (None, user) => user.clone(),
    }
    .ok_or_else(|| {
        ApiError::bad_request("invalid_body", "log in with an `m.id.user` identifier")
    })?;
    let username = matrix.local_name(&user)?;
    let password = req.password.unwrap_or_default();
    let pair = super::account::password_login(&state, username, password, client)
        .await
        .map_err(|err| match err {
            // Matrix answers a wrong password with 403 M_FORBIDDEN.
            ApiError::Unauthenticated { code, message } => ApiError::Forbidden { code, message },
            other => other,
        })?;
    let device = pair
        .refresh_token
        .split_once('.')
        .map_or_else(String::new, |(session, _)| session.to_string());
    Ok(axum::Json(json!({
        "user_id": matrix.user_id(&pair.user.name),
        "access_token": format!("{TOKEN_PREFIX}{}", pair.refresh_token),
        "device_id": device,
        "home_server": matrix.config().server_name,
    })))
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/_matrix/client/v3/account/whoami", tag = "matrix", operation_id = "matrix_whoami",
    responses((status = 200, description = "The caller", body = Value)))]
async fn whoami(State(state): State<AppState>, MatrixUser(caller): MatrixUser) -> Answer {
    Ok(axum::Json(json!({
        "user_id": state.matrix.user_id(&caller.user.name),
        "device_id": caller.session_id,
        "is_guest": false,
    })))
}

/// End the session: the token stops working everywhere.
#[utoipa::path(post, path = "/_matrix/client/v3/logout", tag = "matrix", operation_id = "matrix_logout",
    responses((status = 200, description = "Logged out (an empty object)", body = Value)))]
async fn logout(State(state): State<AppState>, MatrixUser(caller): MatrixUser) -> Answer {
    state
        .accounts
        .logout(caller.user.id, &caller.session_id)
        .await?;
    Ok(axum::Json(json!({})))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SyncQuery {
    /// The `next_batch` of the previous sync.
    #[serde(default)]
    since: Option<String>,
    /// How long to wait for something new, in milliseconds (0 or absent: answer at once).
    #[serde(default)]
    timeout: Option<u64>,
    /// Accepted and ignored (everything the caller may see is returned).
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    full_state: Option<bool>,
    #[serde(default)]
    set_presence: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// What is new in the caller's rooms since `since`, waiting up to `timeout` for it.
#[utoipa::path(get, path = "/_matrix/client/v3/sync", tag = "matrix", operation_id = "matrix_sync", params(SyncQuery),
    responses((status = 200, description = "The sync response", body = Value)))]
async fn sync(
    State(state): State<AppState>,
    MatrixUser(caller): MatrixUser,
    AppQuery(query): AppQuery<SyncQuery>,
) -> Answer {
    let _ = (
        &query.filter,
        query.full_state,
        &query.set_presence,
        &query.access_token,
    );
    Ok(axum::Json(
        state
            .matrix
            .sync(
                &caller.user,
                &caller.session_id,
                query.since.as_deref(),
                query.timeout.unwrap_or(0),
            )
            .await?,
    ))
}

/// Join a room by id: the rooms one was added to (Switchboard has no open rooms).
#[utoipa::path(post, path = "/_matrix/client/v3/join/{room}", tag = "matrix", operation_id = "matrix_join",
    params(("room" = String, Path, description = "`!<id>:<server>`")),
    responses((status = 200, description = "Joined", body = Value)))]
async fn join(
    State(state): State<AppState>,
    MatrixUser(caller): MatrixUser,
    AppPath(room): AppPath<String>,
) -> Answer {
    joined(&state, &caller, &room).await
}

/// Join a room by id (the other spelling).
#[utoipa::path(post, path = "/_matrix/client/v3/rooms/{room}/join", tag = "matrix", operation_id = "matrix_join_room",
    params(("room" = String, Path, description = "`!<id>:<server>`")),
    responses((status = 200, description = "Joined", body = Value)))]
async fn join_room(
    State(state): State<AppState>,
    MatrixUser(caller): MatrixUser,
    AppPath(room): AppPath<String>,
) -> Answer {
    joined(&state, &caller, &room).await
}

/// What both join spellings do (utoipa needs one annotated handler per path).
async fn joined(state: &AppState, caller: &Caller, room: &str) -> Answer {
    let room_id = state.matrix.join(&caller.user, room).await?;
    Ok(axum::Json(json!({ "room_id": room_id })))
}

/// Send an event: `m.room.message` (a text, an edit with `m.replace`, a thread reply with
/// `m.thread`) or `m.reaction`. A retry with the same transaction id answers the first
/// event and stores nothing new.
#[utoipa::path(put, path = "/_matrix/client/v3/rooms/{room}/send/{event_type}/{txn}",
    tag = "matrix", operation_id = "matrix_send",
    params(("room" = String, Path, description = "`!<id>:<server>`"),
        ("event_type" = String, Path, description = "`m.room.message` or `m.reaction`"),
        ("txn" = String, Path, description = "The client's transaction id")),
    request_body(content = Value, description = "The event's content"),
    responses((status = 200, description = "The event's id", body = Value)))]
async fn send(
    State(state): State<AppState>,
    MatrixUser(caller): MatrixUser,
    AppPath((room, event_type, txn)): AppPath<(String, String, String)>,
    request: Request,
) -> Answer {
    let body = read_body(request, &state).await?;
    let content: Value = parse_json(&body)?;
    if !content.is_object() {
        return Err(ApiError::bad_request("invalid_body", "the content is a JSON object").into());
    }
    let event_id = state
        .matrix
        .send(
            &caller.user,
            &caller.session_id,
            &room,
            &event_type,
            &txn,
            &content,
        )
        .await?;
    Ok(axum::Json(json!({ "event_id": event_id })))
}

/// Redact (delete) a message: its author, or a room admin.
#[utoipa::path(put, path = "/_matrix/client/v3/rooms/{room}/redact/{event}/{txn}",
    tag = "matrix", operation_id = "matrix_redact",
    params(("room" = String, Path, description = "`!<id>:<server>`"),
        ("event" = String, Path, description = "`$<id>`"),
        ("txn" = String, Path, description = "The client's transaction id")),
    request_body(content = Value, description = "`{\"reason\": …}`, optional"),
    responses((status = 200, description = "The redaction's id", body = Value)))]
async fn redact(
    State(state): State<AppState>,
    MatrixUser(caller): MatrixUser,
    AppPath((room, event, txn)): AppPath<(String, String, String)>,
) -> Answer {
    let event_id = state
        .matrix
        .redact(&caller.user, &caller.session_id, &room, &event, &txn)
        .await?;
    Ok(axum::Json(json!({ "event_id": event_id })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct MessagesQuery {
    /// Where to start: a `prev_batch`, `start`/`end`, or a sync's `next_batch`; absent: the
    /// newest event (`dir=b`) or the oldest (`dir=f`).
    #[serde(default)]
    from: Option<String>,
    /// Accepted and ignored: pages stop at `limit`.
    #[serde(default)]
    to: Option<String>,
    /// `b` (newest first) or `f`.
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    /// Accepted and ignored.
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// A page of a room's history.
#[utoipa::path(get, path = "/_matrix/client/v3/rooms/{room}/messages", tag = "matrix", operation_id = "matrix_messages",
    params(("room" = String, Path, description = "`!<id>:<server>`"), MessagesQuery),
    responses((status = 200, description = "`chunk`, `start` and (when there is more) `end`",
        body = Value)))]
async fn messages(
    State(state): State<AppState>,
    MatrixUser(caller): MatrixUser,
    AppPath(room): AppPath<String>,
    AppQuery(query): AppQuery<MessagesQuery>,
) -> Answer {
    let _ = (&query.to, &query.filter, &query.access_token);
    let dir = match query.dir.as_deref() {
        Some("b") | None => Direction::Back,
        Some("f") => Direction::Forward,
        Some(_) => {
            return Err(ApiError::bad_request("invalid_query", "`dir` is `b` or `f`").into());
        }
    };
    let page = state
        .matrix
        .messages(&caller.user, &room, query.from.as_deref(), dir, query.limit)
        .await?;
    let mut body = json!({ "chunk": page.chunk, "start": page.start });
    if let Some(end) = page.end {
        body["end"] = json!(end);
    }
    Ok(axum::Json(body))
}

/// The answer to a path under `/_matrix/` that this server does not serve.
pub fn unrecognized() -> Response {
    MatrixError(ApiError::not_found(
        "no_route",
        "this server does not serve that Matrix endpoint",
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_matrix_codes() {
        assert_eq!(
            errcode(&ApiError::unauthenticated("missing_token", "x")),
            "M_MISSING_TOKEN"
        );
        assert_eq!(
            errcode(&ApiError::unauthenticated("token_revoked", "x")),
            "M_UNKNOWN_TOKEN"
        );
        assert_eq!(
            errcode(&ApiError::bad_request("malformed_json", "x")),
            "M_NOT_JSON"
        );
        assert_eq!(
            errcode(&ApiError::bad_request("invalid_token_param", "x")),
            "M_INVALID_PARAM"
        );
        assert_eq!(
            errcode(&ApiError::not_found("no_route", "x")),
            "M_UNRECOGNIZED"
        );
        let limited = ApiError::TooManyRequests {
            code: "rate_limited",
            message: "x".into(),
            retry_after_ms: 5,
        };
        assert_eq!(errcode(&limited), "M_LIMIT_EXCEEDED");
        let rejected = ApiError::Rejected {
            plugin: "dlp".into(),
            code: "card".into(),
            reason: "no".into(),
        };
        assert_eq!(errcode(&rejected), "M_FORBIDDEN");
    }
}

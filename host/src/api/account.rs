//! Login, token refresh, logout, the caller's profile, and user administration.

use std::net::IpAddr;

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};

use super::listener::{PeerAddr, client_ip};
use super::{AdminUser, AppJson, AppPath, AppState, AuthUser, bearer_token};
use crate::auth::{TokenPair, check_password_policy, hash_password, verify_password};
use crate::config::AuthConfig;
use crate::error::{ApiError, Result};
use crate::router::hooks::{AuthOutcome, AuthRequest, Decision, HookKind};
use crate::store::{NewUser, User, UserId};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/password", post(change_password))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{id}", patch(update_user))
}

/// `{"username","password"}` (the server checks it), or `{"method","credential"}` with an
/// optional `username` for a method a plugin's `authenticate` hook checks (`api-key`, ...).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    credential: Option<String>,
}

/// Longest method name and plugin credential accepted.
const MAX_METHOD: usize = 32;
const MAX_CREDENTIAL: usize = 4096;

/// A token pair, never stored by a browser or a proxy cache.
struct Tokens(TokenPair);

impl IntoResponse for Tokens {
    fn into_response(self) -> Response {
        let mut response = AppJson(self.0).into_response();
        no_store(response.headers_mut());
        response
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The client's address as the login budgets see it (see `listener::client_ip`).
fn client_of(state: &AppState, parts: &axum::http::request::Parts) -> IpAddr {
    client_ip(
        parts.extensions.get::<PeerAddr>().copied(),
        &parts.headers,
        &state.config.http,
    )
}

async fn login(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<Tokens> {
    let client = client_of(&state, &parts);
    let pair = match req.method.as_deref() {
        None | Some("password") => {
            let (Some(username), Some(password), None) =
                (req.username, req.password, req.credential)
            else {
                return Err(ApiError::bad_request(
                    "invalid_login_request",
                    "a password login needs `username` and `password` (and no `credential`)",
                ));
            };
            if username.len() > 64 || password.len() > 1024 {
                return Err(ApiError::unauthenticated(
                    "invalid_credentials",
                    "wrong user name or password",
                ));
            }
            state.auth.login(&username, &password, client).await?
        }
        Some(method) => {
            let method = method.to_string();
            let request = PluginLogin {
                method,
                username: req.username,
                password: req.password,
                credential: req.credential,
            };
            plugin_login(&state, request, client).await?
        }
    };
    let hooks = state.router.hooks();
    if hooks.implements(HookKind::OnLogin)
        && let Decision::Deny { plugin, reason } = hooks.on_login(&pair.user).await
    {
        // The session was opened before the policy ran; close it again.
        if let Some((session_id, _)) = pair.refresh_token.split_once('.') {
            state.auth.logout(session_id).await?;
        }
        return Err(ApiError::Rejected {
            plugin,
            code: "login_denied".into(),
            reason,
        });
    }
    Ok(Tokens(pair))
}

struct PluginLogin {
    method: String,
    username: Option<String>,
    password: Option<String>,
    credential: Option<String>,
}

/// A login whose credentials a plugin checks (`authenticate` hook). The plugin maps them to
/// an existing user; the session is an ordinary one. Failures count against the same
/// login budgets as passwords (keyed by method and user name, and by client address).
async fn plugin_login(state: &AppState, request: PluginLogin, client: IpAddr) -> Result<TokenPair> {
    let PluginLogin {
        method,
        username,
        password,
        credential,
    } = request;
    let valid_method = (1..=MAX_METHOD).contains(&method.len())
        && method
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    let credential = match (password, credential) {
        (None, Some(c)) if valid_method && !c.is_empty() && c.len() <= MAX_CREDENTIAL => c,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_login_request",
                format!(
                    "a `method` login needs a `credential` of 1 to {MAX_CREDENTIAL} bytes (no \
                     `password`), and the method 1 to {MAX_METHOD} characters of [a-z0-9_-]"
                ),
            ));
        }
    };
    if username.as_ref().is_some_and(|u| u.len() > 64) {
        return Err(ApiError::bad_request(
            "invalid_login_request",
            "a user name has at most 64 bytes",
        ));
    }
    let budget_key = format!("{method}:{}", username.as_deref().unwrap_or(""));
    let attempt = state.auth.take_login_attempt(&budget_key, client).await?;
    let hooks = state.router.hooks();
    let outcome = if hooks.implements(HookKind::Authenticate) {
        hooks
            .authenticate(AuthRequest {
                method: method.clone(),
                username,
                credential,
            })
            .await
    } else {
        AuthOutcome::Unhandled
    };
    match outcome {
        AuthOutcome::Accept { plugin, user_name } => {
            let user = match state.store.user_by_name(&user_name).await? {
                Some((user, _)) => user,
                None => {
                    tracing::warn!(%plugin, user = %user_name, "authenticate accepted an unknown user");
                    attempt.failed("unknown_account").await;
                    return Err(ApiError::unauthenticated(
                        "invalid_credentials",
                        "the credentials do not belong to an account",
                    ));
                }
            };
            attempt.succeeded();
            state.auth.login_as(user).await
        }
        AuthOutcome::Reject { plugin, reason } => {
            attempt.failed("credentials_rejected").await;
            Err(ApiError::Rejected {
                plugin,
                code: "credentials_rejected".into(),
                reason,
            })
        }
        AuthOutcome::Unhandled => {
            attempt.failed("unsupported_method").await;
            Err(ApiError::unauthenticated(
                "unsupported_login_method",
                format!("no login method `{method}` is configured"),
            ))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

async fn refresh(
    State(state): State<AppState>,
    AppJson(req): AppJson<RefreshRequest>,
) -> Result<Tokens> {
    Ok(Tokens(state.auth.refresh(&req.refresh_token).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// A user changes their own password, proving the current one. Every session of the
/// account ends, this one included, and their sockets close on every node; the answer is a
/// fresh token pair for the caller, so whoever holds a stolen token is out and the user is
/// not. Wrong current passwords count against the login budgets.
async fn change_password(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    parts: axum::http::request::Parts,
    AppJson(req): AppJson<ChangePasswordRequest>,
) -> Result<Tokens> {
    let client = client_of(&state, &parts);
    let user = caller.user;
    let attempt = state.auth.take_login_attempt(&user.name, client).await?;
    let current_hash = match state.store.user_by_name(&user.name).await? {
        Some((_, Some(hash))) if req.current_password.len() <= 1024 => hash,
        _ => {
            attempt.failed("wrong_password").await;
            return Err(wrong_current_password());
        }
    };
    if !verify_password(req.current_password.clone(), current_hash).await? {
        attempt.failed("wrong_password").await;
        return Err(wrong_current_password());
    }
    attempt.succeeded();
    state.auth.check_password(&user.name, &req.new_password)?;
    if req.new_password == req.current_password {
        return Err(ApiError::bad_request(
            "same_password",
            "the new password is the current one",
        ));
    }
    state
        .store
        .set_password_hash(user.id, &hash_password(req.new_password).await?)
        .await?;
    let ended = state.auth.end_all_sessions(user.id).await?;
    state.hub.end_sessions(user.id, &ended);
    state
        .auth
        .audit(
            &format!("user:{}", user.id),
            "user.password_change",
            &format!("user:{}", user.id),
            serde_json::json!({ "sessions_ended": ended.len() }),
        )
        .await;
    Ok(Tokens(state.auth.open_session(user).await?))
}

fn wrong_current_password() -> ApiError {
    ApiError::forbidden("wrong_password", "the current password is wrong")
}

/// End the caller's session: its refresh token and access tokens stop working, and its
/// WebSocket connections are closed.
async fn logout(State(state): State<AppState>, AuthUser(caller): AuthUser) -> Result<StatusCode> {
    state.auth.logout(&caller.session_id).await?;
    state.hub.close_session(&caller.session_id);
    Ok(StatusCode::NO_CONTENT)
}

async fn me(AuthUser(caller): AuthUser) -> AppJson<User> {
    AppJson(caller.user)
}

/// What other users may see of an account.
#[derive(Debug, Serialize)]
struct UserCard {
    id: UserId,
    name: String,
    display_name: String,
    is_bot: bool,
    active: bool,
}

async fn list_users(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<AppJson<Vec<UserCard>>> {
    let users = state.store.list_users().await?;
    Ok(AppJson(
        users
            .into_iter()
            .filter(|u| u.active || caller.user.is_admin)
            .map(|u| UserCard {
                id: u.id,
                name: u.name,
                display_name: u.display_name,
                is_bot: u.is_bot,
                active: u.active,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUserRequest {
    name: String,
    password: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    admin: bool,
}

/// Admins create accounts; with `open_registration` anyone may create a non-admin one.
async fn create_user(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(req): AppJson<CreateUserRequest>,
) -> Result<(StatusCode, AppJson<User>)> {
    let caller = match bearer_token(&parts) {
        Some(token) => Some(state.auth.authenticate(token).await?),
        None => None,
    };
    let caller_is_admin = caller.as_ref().is_some_and(|c| c.user.is_admin);
    if !caller_is_admin {
        if caller.is_none() && !state.config.auth.open_registration {
            return Err(ApiError::unauthenticated(
                "missing_token",
                "creating users needs an admin token",
            ));
        }
        if !state.config.auth.open_registration {
            return Err(ApiError::forbidden(
                "admin_only",
                "only admins may create users",
            ));
        }
        if req.admin {
            return Err(ApiError::forbidden(
                "admin_only",
                "only admins may create admins",
            ));
        }
    }
    let user = new_account(
        state.store.as_ref(),
        &state.config.auth,
        req.name,
        req.password,
        req.display_name,
        req.admin,
    )
    .await?;
    let actor = caller.map_or_else(
        || format!("address:{}", client_of(&state, &parts)),
        |c| format!("user:{}", c.user.id),
    );
    state
        .auth
        .audit(
            &actor,
            "user.create",
            &format!("user:{}", user.id),
            serde_json::json!({ "name": user.name, "admin": user.is_admin }),
        )
        .await;
    Ok((StatusCode::CREATED, AppJson(user)))
}

/// Validate and create an account (shared by the API, the CLI and first start).
pub async fn new_account(
    store: &dyn crate::store::Store,
    policy: &AuthConfig,
    name: String,
    password: String,
    display_name: Option<String>,
    admin: bool,
) -> Result<User> {
    check_user_name(&name)?;
    check_password_policy(policy, &name, &password)?;
    let display_name = display_name.unwrap_or_else(|| name.clone());
    check_display_name(&display_name)?;
    let hash = hash_password(password).await?;
    Ok(store
        .create_user(NewUser {
            name,
            display_name,
            password_hash: Some(hash),
            is_admin: admin,
            is_bot: false,
        })
        .await?)
}

/// 1 to 100 characters, something visible, and no control, bidi-override or zero-width
/// characters: those let one user's name render as another's (or reverse the text after
/// it). Look-alike letters stay allowed (names are written in every script), which is why
/// clients show the unique user name beside the display name.
pub fn check_display_name(display_name: &str) -> Result<()> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{061C}'
                    | '\u{115F}'
                    | '\u{1160}'
                    | '\u{180E}'
                    | '\u{200B}'..='\u{200F}'
                    | '\u{202A}'..='\u{202E}'
                    | '\u{2060}'..='\u{206F}'
                    | '\u{3164}'
                    | '\u{FEFF}'
                    | '\u{FFA0}'
                    | '\u{FFF9}'..='\u{FFFB}'
                    | '\u{E0000}'..='\u{E007F}'
            )
    };
    if display_name.trim().is_empty() || display_name.chars().count() > 100 {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "a display name has 1 to 100 characters, not all blank",
        ));
    }
    if display_name.chars().any(hidden) {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "a display name may not contain control, bidirectional-override or zero-width \
             characters",
        ));
    }
    Ok(())
}

/// 1–32 characters of lowercase ASCII letters, digits, `.`, `_` and `-`, starting with a
/// letter or digit: names appear in mentions and logs, so keep them unambiguous.
pub fn check_user_name(name: &str) -> Result<()> {
    let valid = (1..=32).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_user_name",
            "a user name has 1 to 32 characters: a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserRequest {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    password: Option<String>,
}

/// Admins deactivate/reactivate accounts and reset passwords. Deactivating revokes every
/// session of the user and closes their connections at once.
async fn update_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppPath(id): AppPath<UserId>,
    AppJson(req): AppJson<UpdateUserRequest>,
) -> Result<AppJson<User>> {
    let user = state
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user_not_found", "no such user"))?;
    if let Some(password) = req.password {
        state.auth.check_password(&user.name, &password)?;
        state
            .store
            .set_password_hash(id, &hash_password(password).await?)
            .await?;
        // Whoever knew the old password may hold a session: end them all, everywhere.
        let ended = state.auth.end_all_sessions(id).await?;
        state.hub.end_sessions(id, &ended);
        state
            .auth
            .audit(
                &format!("user:{}", admin.user.id),
                "user.password_reset",
                &format!("user:{id}"),
                serde_json::json!({ "sessions_ended": ended.len() }),
            )
            .await;
    }
    if let Some(active) = req.active {
        if !active && id == admin.user.id {
            return Err(ApiError::bad_request(
                "cannot_deactivate_self",
                "an admin cannot deactivate their own account",
            ));
        }
        state.store.set_user_active(id, active).await?;
        if !active {
            let ended = state.auth.end_all_sessions(id).await?;
            state.hub.end_sessions(id, &ended);
            state.hub.close_user(id);
        }
        let action = if active {
            "user.activate"
        } else {
            "user.deactivate"
        };
        state
            .store
            .append_audit(
                &format!("user:{}", admin.user.id),
                action,
                &format!("user:{id}"),
                &serde_json::json!({}),
            )
            .await?;
    }
    let user = state.store.user_by_id(id).await?.unwrap_or(user);
    Ok(AppJson(user))
}

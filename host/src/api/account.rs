//! Login, token refresh, logout, the caller's profile, and user administration.

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};

use super::{AdminUser, AppJson, AppPath, AppState, AuthUser, bearer_token};
use crate::auth::{TokenPair, check_password_strength, hash_password};
use crate::error::{ApiError, Result};
use crate::router::hooks::{AuthOutcome, AuthRequest, Decision, HookKind};
use crate::store::{NewUser, User, UserId};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/me", get(me))
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

async fn login(
    State(state): State<AppState>,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<AppJson<TokenPair>> {
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
            state.auth.login(&username, &password).await?
        }
        Some(method) => {
            let method = method.to_string();
            plugin_login(&state, method, req.username, req.password, req.credential).await?
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
    Ok(AppJson(pair))
}

/// A login whose credentials a plugin checks (`authenticate` hook). The plugin maps them to
/// an existing user; the session is an ordinary one. Failures count against the same
/// per-key login budget as passwords (keyed by method and user name).
async fn plugin_login(
    state: &AppState,
    method: String,
    username: Option<String>,
    password: Option<String>,
    credential: Option<String>,
) -> Result<TokenPair> {
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
    state.auth.check_login_budget(&budget_key)?;
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
                    state.auth.login_failed(&budget_key);
                    return Err(ApiError::unauthenticated(
                        "invalid_credentials",
                        "the credentials do not belong to an account",
                    ));
                }
            };
            state.auth.login_as(user).await
        }
        AuthOutcome::Reject { plugin, reason } => {
            state.auth.login_failed(&budget_key);
            Err(ApiError::Rejected {
                plugin,
                code: "credentials_rejected".into(),
                reason,
            })
        }
        AuthOutcome::Unhandled => {
            state.auth.login_failed(&budget_key);
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
) -> Result<AppJson<TokenPair>> {
    Ok(AppJson(state.auth.refresh(&req.refresh_token).await?))
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
        req.name,
        req.password,
        req.display_name,
        req.admin,
    )
    .await?;
    Ok((StatusCode::CREATED, AppJson(user)))
}

/// Validate and create an account (shared by the API, the CLI and first start).
pub async fn new_account(
    store: &dyn crate::store::Store,
    name: String,
    password: String,
    display_name: Option<String>,
    admin: bool,
) -> Result<User> {
    check_user_name(&name)?;
    check_password_strength(&password)?;
    let display_name = display_name.unwrap_or_else(|| name.clone());
    if display_name.trim().is_empty()
        || display_name.chars().count() > 100
        || display_name.contains('\0')
    {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "a display name has 1 to 100 characters",
        ));
    }
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
        check_password_strength(&password)?;
        state
            .store
            .set_password_hash(id, &hash_password(password).await?)
            .await?;
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
            state.store.revoke_user_sessions(id).await?;
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

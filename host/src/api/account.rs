//! Login, token refresh, logout, the caller's profile, and user administration: parsing
//! and answering. The rules and the work live in [`crate::accounts`].

use std::net::IpAddr;

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};

use super::listener::{PeerAddr, client_ip};
use super::{AdminUser, AppJson, AppPath, AppState, AuthUser, bearer_token};
use crate::accounts::{Credentials, NewAccount};
use crate::audit::Actor;
use crate::auth::TokenPair;
use crate::error::{ApiError, Result};
use crate::store::{User, UserId};

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

impl LoginRequest {
    fn credentials(self) -> Result<Credentials> {
        match self.method.as_deref() {
            None | Some("password") => self.password_credentials(),
            Some(_) => match (self.method, self.password, self.credential) {
                (Some(method), None, Some(credential)) => Ok(Credentials::Plugin {
                    method,
                    username: self.username,
                    credential,
                }),
                _ => Err(ApiError::bad_request(
                    "invalid_login_request",
                    "a `method` login needs a `credential` (and no `password`)",
                )),
            },
        }
    }

    fn password_credentials(self) -> Result<Credentials> {
        match (self.username, self.password, self.credential) {
            (Some(username), Some(password), None) => {
                Ok(Credentials::Password { username, password })
            }
            _ => Err(ApiError::bad_request(
                "invalid_login_request",
                "a password login needs `username` and `password` (and no `credential`)",
            )),
        }
    }
}

/// A token pair, never stored by a browser or a proxy cache.
pub(super) struct Tokens(pub(super) TokenPair);

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
pub(super) fn client_of(state: &AppState, parts: &axum::http::request::Parts) -> IpAddr {
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
    let credentials = req.credentials()?;
    // Names the directory owns sign in there; local accounts keep their own password.
    if let (Some(ldap), Credentials::Password { username, password }) = (&state.ldap, &credentials)
        && username.len() <= crate::names::MAX_USER_NAME * 2
        && ldap.handles(username).await?
    {
        return Ok(Tokens(ldap.login(username, password, client).await?));
    }
    Ok(Tokens(state.accounts.login(credentials, client).await?))
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

/// The caller changes their own password; see [`crate::accounts::Accounts::change_password`].
async fn change_password(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    parts: axum::http::request::Parts,
    AppJson(req): AppJson<ChangePasswordRequest>,
) -> Result<Tokens> {
    let client = client_of(&state, &parts);
    let pair = state
        .accounts
        .change_password(caller.user, &req.current_password, req.new_password, client)
        .await?;
    Ok(Tokens(pair))
}

/// End the caller's session: its refresh token and access tokens stop working, and its
/// WebSocket connections close, on every node.
async fn logout(State(state): State<AppState>, AuthUser(caller): AuthUser) -> Result<StatusCode> {
    state
        .accounts
        .logout(caller.user.id, &caller.session_id)
        .await?;
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
    let actor = caller.map_or_else(
        || Actor::Address(client_of(&state, &parts)),
        |c| Actor::User(c.user.id),
    );
    let account = NewAccount {
        name: req.name,
        password: req.password,
        display_name: req.display_name,
        admin: req.admin,
    };
    let user = state.accounts.create(account, actor).await?;
    Ok((StatusCode::CREATED, AppJson(user)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateUserRequest {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    compliance: Option<bool>,
    #[serde(default)]
    password: Option<String>,
}

/// Admins deactivate/reactivate accounts and reset passwords. Both end every session of
/// the user and close their connections at once, on every node.
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
        state
            .accounts
            .reset_password(&user, password, admin.user.id)
            .await?;
    }
    if let Some(active) = req.active {
        state.accounts.set_active(id, active, admin.user.id).await?;
    }
    if let Some(compliance) = req.compliance {
        state
            .accounts
            .set_compliance(id, compliance, admin.user.id)
            .await?;
    }
    let user = state.store.user_by_id(id).await?.unwrap_or(user);
    Ok(AppJson(user))
}

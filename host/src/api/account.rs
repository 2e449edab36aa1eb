//! Login, token refresh, logout, the caller's profile, and user administration: parsing
//! and answering. The rules and the work live in [`crate::accounts`].

use std::net::IpAddr;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::listener::{PeerAddr, client_ip};
use super::{AdminUser, AppJson, AppPath, AppState, AuthUser, bearer_token};
use crate::accounts::{Credentials, NewAccount};
use crate::audit::Actor;
use crate::auth::TokenPair;
use crate::error::{ApiError, Result};
use crate::store::{User, UserId};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(list_users, create_user))
        .routes(routes!(update_user))
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

/// The two shapes of a login body, for the API description. `LoginRequest` parses both as
/// one struct, so that a body mixing them gets our own `invalid_login_request` answer.
mod login_shapes {
    // Never built: these types only describe what `LoginRequest` accepts.
    #![allow(dead_code)]

    use utoipa::ToSchema;

    /// A password login, or a login with a credential a plugin checks.
    #[derive(ToSchema)]
    #[serde(untagged)]
    pub(super) enum LoginBody {
        Password(PasswordLogin),
        Plugin(PluginLogin),
    }

    /// A name and password the server checks (or the LDAP directory, for names it owns).
    #[derive(ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct PasswordLogin {
        /// `password`, or left out.
        method: Option<PasswordMethod>,
        username: String,
        password: String,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub(super) enum PasswordMethod {
        Password,
    }

    /// A credential checked by the `authenticate` hook of the plugin that offers the method.
    #[derive(ToSchema)]
    #[serde(deny_unknown_fields)]
    pub(super) struct PluginLogin {
        /// The plugin's sign-in method (`api-key`, ...); anything but `password`.
        method: String,
        /// The account, when the method needs one named.
        username: Option<String>,
        credential: String,
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

/// Sign in; answers with an access token and a refresh token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = login_shapes::LoginBody,
    security(()),
    responses((status = 200, description = "The new session's tokens", body = TokenPair,
        headers(("cache-control" = String, description = "`no-store`"),
            ("pragma" = String, description = "`no-cache`")))))]
async fn login(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(req): AppJson<LoginRequest>,
) -> Result<Tokens> {
    let client = client_of(&state, &parts);
    let credentials = req.credentials()?;
    if let Credentials::Password { username, password } = credentials {
        return Ok(Tokens(
            password_login(&state, username, password, client).await?,
        ));
    }
    Ok(Tokens(state.accounts.login(credentials, client).await?))
}

/// Sign in with a name and password (also the Matrix login's): names the directory owns
/// sign in there; local accounts keep their own password.
pub(super) async fn password_login(
    state: &AppState,
    username: String,
    password: String,
    client: IpAddr,
) -> Result<crate::auth::TokenPair> {
    if let Some(ldap) = &state.ldap
        && username.len() <= crate::names::MAX_USER_NAME * 2
        && ldap.handles(&username).await?
    {
        return ldap.login(&username, &password, client).await;
    }
    state
        .accounts
        .login(Credentials::Password { username, password }, client)
        .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Trade a refresh token for a new token pair (the old refresh token stops working).
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    security(()),
    responses((status = 200, description = "The session's new tokens", body = TokenPair,
        headers(("cache-control" = String, description = "`no-store`"),
            ("pragma" = String, description = "`no-cache`")))))]
async fn refresh(
    State(state): State<AppState>,
    AppJson(req): AppJson<RefreshRequest>,
) -> Result<Tokens> {
    Ok(Tokens(state.auth.refresh(&req.refresh_token).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    current_password: String,
    new_password: String,
}

/// The caller changes their own password; see [`crate::accounts::Accounts::change_password`].
#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth",
    request_body = ChangePasswordRequest,
    responses((status = 200, description = "Tokens of a new session for the caller",
        body = TokenPair,
        headers(("cache-control" = String, description = "`no-store`"),
            ("pragma" = String, description = "`no-cache`")))))]
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

/// Sign out: end the caller's session.
///
/// End the caller's session: its refresh token and access tokens stop working, and its
/// WebSocket connections close, on every node.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "The session is over")))]
async fn logout(State(state): State<AppState>, AuthUser(caller): AuthUser) -> Result<StatusCode> {
    state
        .accounts
        .logout(caller.user.id, &caller.session_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own account.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth",
    responses((status = 200, description = "The caller's account", body = User)))]
async fn me(AuthUser(caller): AuthUser) -> AppJson<User> {
    AppJson(caller.user)
}

/// What other users may see of an account.
#[derive(Debug, Serialize, ToSchema)]
struct UserCard {
    id: UserId,
    name: String,
    display_name: String,
    is_bot: bool,
    active: bool,
}

/// Every active account (admins also see inactive ones), as others may see them.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "list_users",
    responses((status = 200, description = "The accounts", body = Vec<UserCard>)))]
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

#[derive(Debug, Deserialize, ToSchema)]
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
#[utoipa::path(post, path = "/api/v1/users", tag = "users", operation_id = "create_user",
    request_body = CreateUserRequest,
    // An admin's token, or none at all when the server allows open registration.
    security((), ("bearer" = [])),
    responses((status = 201, description = "The new account", body = User)))]
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUserRequest {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    compliance: Option<bool>,
    #[serde(default)]
    password: Option<String>,
}

/// Admins (de)activate an account, reset its password, or grant or revoke compliance.
///
/// Admins deactivate/reactivate accounts and reset passwords. Both end every session of
/// the user and close their connections at once, on every node.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    params(("id" = i64, Path, description = "The account")),
    request_body = UpdateUserRequest,
    responses((status = 200, description = "The account as it is now", body = User)))]
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

//! The HTTP and WebSocket surface. Each resource module exposes `fn routes() -> Router<AppState>`;
//! they are merged here with the body limit and tracing layers.
//!
//! Handlers stay thin: parse and authenticate, call the router or the store, map the result.

pub mod account;
pub mod admin;
pub mod compliance;
pub mod file_review;
pub mod files;
pub mod hooks;
pub mod listener;
pub mod llm;
pub mod matrix;
pub mod mentions;
pub mod oidc;
pub mod openapi;
pub mod ops;
pub mod plugins;
pub mod presence;
pub mod reactions;
pub mod request_id;
pub mod rooms;
pub mod scim;
pub mod search;
pub mod uploads;
pub mod web;
pub mod ws;

#[cfg(test)]
mod input_fuzz;

use std::sync::Arc;

use axum::Router as HttpRouter;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use prometheus_client::registry::Registry;
use serde::de::DeserializeOwned;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{Auth, Caller};
use crate::config::Config;
use crate::error::{ApiError, Result};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Account operations (sign-in, passwords, deactivation) that end sessions everywhere.
    pub accounts: Arc<crate::accounts::Accounts>,
    pub store: Arc<dyn Store>,
    pub auth: Arc<Auth>,
    pub router: Arc<Router>,
    pub hub: Arc<Hub>,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    /// Where uploaded files are kept.
    pub files: Arc<crate::files::Files>,
    /// Accounts and groups an identity provider manages.
    pub directory: Arc<crate::directory::Directory>,
    /// Sign-in with OpenID Connect providers.
    pub oidc: Arc<crate::oidc::Oidc>,
    /// The LDAP directory, when one is configured.
    pub ldap: Option<Arc<crate::ldap::Ldap>>,
    /// The plugin runtime, when a plugins directory is configured.
    pub plugins: Option<Arc<crate::plugins::PluginHost>>,
    /// The governed language model behind plugins' `llm` capability.
    pub llm: Arc<crate::llm::Llm>,
    /// Incoming webhooks (`POST /hooks/{key}`).
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The Matrix client–server subset (`/_matrix/client`).
    pub matrix: Arc<crate::matrix::Matrix>,
}

/// Every route with its OpenAPI description ([`openapi`]); the plugin upload's and the
/// webhooks' own body limits (from `config`) are part of their routes.
pub fn described_routes(config: &Config) -> OpenApiRouter<AppState> {
    openapi::routes()
        .merge(account::routes())
        .merge(rooms::routes())
        .merge(search::routes())
        .merge(mentions::routes())
        .merge(reactions::routes())
        .merge(presence::routes())
        .merge(ws::routes())
        .merge(ops::routes())
        .merge(admin::routes())
        .merge(llm::routes())
        .merge(compliance::routes())
        .merge(files::routes())
        .merge(file_review::routes())
        .merge(uploads::routes())
        .merge(plugins::routes(config.plugins.max_component_bytes))
        .merge(web::routes())
        .merge(scim::routes())
        .merge(oidc::routes())
        .merge(hooks::routes(config.webhooks.max_payload_bytes))
        .merge(matrix::routes())
}

/// All routes, with limits and request tracing applied.
pub fn app(state: AppState) -> HttpRouter {
    let body_limit = state.config.limits.max_body_bytes;
    let (routes, _) = described_routes(&state.config).split_for_parts();
    routes
        .fallback(|uri: axum::http::Uri| async move {
            // Matrix clients expect Matrix's own error shape (`M_UNRECOGNIZED`).
            if uri.path().starts_with("/_matrix/") {
                return matrix::unrecognized();
            }
            ApiError::not_found("no_route", "no such endpoint").into_response()
        })
        .layer(axum::middleware::from_fn(refuse_nul_in_uri))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        // The request's own span comes from `request_id` (outermost), so the trace layer
        // adds its timing events to that span instead of opening another.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|_: &axum::http::Request<_>| tracing::Span::current()),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            request_id::with_request_ids,
        ))
        .with_state(state)
}

/// The authenticated caller, from `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Caller);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = bearer_token(parts).ok_or_else(|| {
            ApiError::unauthenticated(
                "missing_token",
                "send an access token as `Authorization: Bearer …`",
            )
        })?;
        Ok(Self(state.auth.authenticate(token).await?))
    }
}

/// The caller, who must be a server admin.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Caller);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let AuthUser(caller) = AuthUser::from_request_parts(parts, state).await?;
        if !caller.user.is_admin {
            return Err(ApiError::forbidden(
                "admin_only",
                "this needs a server admin",
            ));
        }
        Ok(Self(caller))
    }
}

/// The caller, who must hold the compliance role.
#[derive(Debug, Clone)]
pub struct ComplianceUser(pub Caller);

impl FromRequestParts<AppState> for ComplianceUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let AuthUser(caller) = AuthUser::from_request_parts(parts, state).await?;
        if !caller.user.is_compliance {
            return Err(ApiError::forbidden(
                "compliance_only",
                "this needs the compliance role",
            ));
        }
        Ok(Self(caller))
    }
}

/// The caller, who reviews held files: a server admin or a holder of the compliance role.
#[derive(Debug, Clone)]
pub struct FileReviewer(pub Caller);

impl FromRequestParts<AppState> for FileReviewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let AuthUser(caller) = AuthUser::from_request_parts(parts, state).await?;
        if !caller.user.is_admin && !caller.user.is_compliance {
            return Err(ApiError::forbidden(
                "reviewers_only",
                "this needs a server admin or the compliance role",
            ));
        }
        Ok(Self(caller))
    }
}

pub use crate::ids::constant_time_eq;

pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Path parameters whose parse failure is our own error shape (`invalid_path`).
#[derive(Debug, Clone, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request("invalid_path", rejection.body_text())
    }
}

/// Query parameters whose parse failure is our own error shape (`invalid_query`).
#[derive(Debug, Clone, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}

/// A JSON body whose every failure is our own error shape: `body_too_large` (413),
/// `invalid_utf8`, `malformed_json` and `invalid_body` (unknown field, wrong type, missing
/// field), each with a human message.
#[derive(Debug, Clone)]
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::bad_request(
                "unsupported_media_type",
                "send the body as `Content-Type: application/json`",
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(AppJson)
    }
}

/// A request's whole body, with the error codes of [`AppJson`]: `body_too_large` (413),
/// `body_timeout`, `unreadable_body`.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "body_too_large",
                "the request body is larger than the server accepts",
            )
        } else if listener::is_body_timeout(&rejection) {
            ApiError::request_timeout("body_timeout", "the request body did not arrive in time")
        } else {
            ApiError::bad_request("unreadable_body", "the request body could not be read")
        }
    })
}

/// Parse JSON with the error codes of [`AppJson`]; shared with the WebSocket frame parser.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::bad_request(
            "invalid_utf8",
            "the body is not valid UTF-8",
        ));
    }
    if has_escaped_nul(bytes) {
        return Err(nul_refused());
    }
    serde_json::from_slice(bytes).map_err(|err| {
        use serde_json::error::Category;
        match err.classify() {
            Category::Data => ApiError::bad_request("invalid_body", err.to_string()),
            Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
                "malformed_json",
                format!("the body is not valid JSON: {err}"),
            ),
        }
    })
}

/// Whether a JSON text holds a `\u0000` escape inside a string. JSON cannot carry a raw
/// NUL (control characters must be escaped), so this finds every NUL a client can send.
/// Refusing it here, for every body and WebSocket frame alike, keeps NUL away from both
/// stores: PostgreSQL cannot hold it in `text` or `jsonb` while SQLite can, and what one
/// backend accepts the other must too.
pub fn has_escaped_nul(json: &[u8]) -> bool {
    let mut rest = json;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        let escape = &rest[at + 1..];
        if escape.starts_with(b"u0000") {
            return true;
        }
        // Skip the escaped character, so `\\u0000` (a backslash, then text) is not a NUL.
        rest = escape.get(1..).unwrap_or_default();
    }
    false
}

fn nul_refused() -> ApiError {
    ApiError::bad_request(
        "invalid_text",
        "text may not contain the NUL character (U+0000)",
    )
}

/// Refuse a request whose path or query holds an encoded NUL (`%00`) before any handler
/// sees it: the same rule as for JSON text, for the text that arrives in the URL.
async fn refuse_nul_in_uri(
    request: Request,
    next: axum::middleware::Next,
) -> std::result::Result<Response, ApiError> {
    let uri = request.uri();
    let encoded_nul = |text: &str| text.as_bytes().windows(3).any(|w| w == b"%00");
    if encoded_nul(uri.path()) || uri.query().is_some_and(encoded_nul) {
        return Err(nul_refused());
    }
    Ok(next.run(request).await)
}

impl<T: serde::Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

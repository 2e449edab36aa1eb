//! Sign-in with OpenID Connect, as the browser sees it: the providers to offer, the start
//! (a redirect to the provider), the provider's redirect back, and the ticket the web client
//! trades for a session. The flow and its checks live in [`crate::oidc`].
//!
//! The two browser steps answer with redirects to the web client, never with tokens or a
//! JSON page: `/#oidc_ticket=…` on success, `/#oidc_error=<code>` on failure (the fragment
//! reaches no server log and no `Referer`).

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::account::{Tokens, client_of};
use super::{AppJson, AppPath, AppQuery, AppState};
use crate::error::{ApiError, Result};
use crate::oidc::ProviderInfo;

/// Longest code or state accepted from the provider's redirect.
const MAX_PARAM: usize = 4096;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(providers))
        .routes(routes!(redeem))
        .routes(routes!(start))
        .routes(routes!(callback))
}

/// The OpenID Connect providers to offer a "Sign in with …" button for.
#[utoipa::path(get, path = "/api/v1/auth/oidc", tag = "oidc", operation_id = "oidc_providers",
    security(()),
    responses((status = 200, description = "The configured providers (none when OpenID \
        Connect is not configured)", body = Vec<ProviderInfo>)))]
async fn providers(State(state): State<AppState>) -> AppJson<Vec<ProviderInfo>> {
    AppJson(state.oidc.providers())
}

/// A `303` to `location`, not cached.
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn back_with_error(err: &ApiError) -> Response {
    see_other(&format!("/#oidc_error={}", err.code()))
}

/// Begin a sign-in: a redirect to the provider's authorization endpoint.
///
/// A browser step: a failure (unknown provider, too many sign-ins from this address, the
/// provider unreachable) is also a `303`, to the web client at `/#oidc_error=<code>`.
#[utoipa::path(get, path = "/api/v1/auth/oidc/{id}/start", tag = "oidc",
    operation_id = "oidc_start", security(()),
    params(("id" = String, Path, description = "The provider's configured id")),
    responses((status = 303,
        description = "To the provider's sign-in page, or back to `/#oidc_error=<code>`; \
            not cached",
        headers(
            ("location" = String, description = "The provider's authorization URL, or \
                `/#oidc_error=<code>`"),
            ("cache-control" = String, description = "`no-store`")
        ))))]
async fn start(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    parts: Parts,
) -> Response {
    let client = client_of(&state, &parts);
    match state.oidc.start(&id, client).await {
        Ok(url) => see_other(&url),
        Err(err) => {
            err.log();
            back_with_error(&err)
        }
    }
}

/// What a provider sends back: a code and the state, or an error (RFC 6749 §4.1.2). Other
/// parameters (`iss`, `session_state`, …) are ignored.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CallbackQuery {
    /// The authorization code (at most 4096 bytes).
    code: Option<String>,
    /// The state the sign-in started with (at most 4096 bytes).
    state: Option<String>,
    /// The provider's error code, when it refused the sign-in (at most 4096 bytes).
    error: Option<String>,
}

/// The provider's redirect back: finish the sign-in.
///
/// Sends the browser to the web client with a one-time ticket.
///
/// A browser step: a failure (a refused, tampered, replayed or expired sign-in) is also a
/// `303`, to `/#oidc_error=<code>`.
#[utoipa::path(get, path = "/api/v1/auth/oidc/{id}/callback", tag = "oidc",
    operation_id = "oidc_callback", security(()),
    params(("id" = String, Path, description = "The provider's configured id"), CallbackQuery),
    responses((status = 303,
        description = "To the web client: `/#oidc_ticket=<ticket>` on success (trade it with \
            `POST /api/v1/auth/oidc/redeem`), `/#oidc_error=<code>` on failure; not cached",
        headers(
            ("location" = String, description = "`/#oidc_ticket=<ticket>` or \
                `/#oidc_error=<code>`"),
            ("cache-control" = String, description = "`no-store`")
        ))))]
async fn callback(
    State(state): State<AppState>,
    AppPath(id): AppPath<String>,
    parts: Parts,
    AppQuery(query): AppQuery<CallbackQuery>,
) -> Response {
    let client = client_of(&state, &parts);
    let too_long = |v: &Option<String>| v.as_ref().is_some_and(|v| v.len() > MAX_PARAM);
    if too_long(&query.code) || too_long(&query.state) || too_long(&query.error) {
        return back_with_error(&ApiError::bad_request(
            "invalid_callback",
            "the sign-in response is malformed",
        ));
    }
    let outcome = match (query.error, query.code, query.state) {
        (Some(error), _, state_param) => Err(state
            .oidc
            .refused(&id, state_param.as_deref(), &error, client)
            .await),
        (None, Some(code), Some(state_param)) => {
            state.oidc.finish(&id, &code, &state_param, client).await
        }
        _ => Err(ApiError::bad_request(
            "invalid_callback",
            "the sign-in response has no code and state",
        )),
    };
    match outcome {
        Ok(ticket) => see_other(&format!("/#oidc_ticket={ticket}")),
        Err(err) => {
            err.log();
            back_with_error(&err)
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RedeemRequest {
    /// The ticket from `/#oidc_ticket=…` (one use, valid for a minute).
    ticket: String,
}

/// Trade a sign-in ticket for a token pair, as a password login answers.
#[utoipa::path(post, path = "/api/v1/auth/oidc/redeem", tag = "oidc",
    operation_id = "oidc_redeem", security(()), request_body = RedeemRequest,
    responses((status = 200, description = "A new session's tokens; never cached",
        body = crate::auth::TokenPair,
        headers(
            ("cache-control" = String, description = "`no-store`"),
            ("pragma" = String, description = "`no-cache`")
        ))))]
async fn redeem(
    State(state): State<AppState>,
    parts: Parts,
    AppJson(request): AppJson<RedeemRequest>,
) -> Result<Tokens> {
    if request.ticket.len() > MAX_PARAM {
        return Err(crate::oidc::OidcError::InvalidTicket.into());
    }
    let client = client_of(&state, &parts);
    Ok(Tokens(state.oidc.redeem(&request.ticket, client).await?))
}

//! Sign-in with OpenID Connect, as the browser sees it: the providers to offer, the start
//! (a redirect to the provider), the provider's redirect back, and the ticket the web client
//! trades for a session. The flow and its checks live in [`crate::oidc`].
//!
//! The two browser steps answer with redirects to the web client, never with tokens or a
//! JSON page: `/#oidc_ticket=…` on success, `/#oidc_error=<code>` on failure (the fragment
//! reaches no server log and no `Referer`).

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::account::{Tokens, client_of};
use super::{AppJson, AppPath, AppQuery, AppState};
use crate::error::{ApiError, Result};
use crate::oidc::ProviderInfo;

/// Longest code or state accepted from the provider's redirect.
const MAX_PARAM: usize = 4096;

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/v1/auth/oidc", get(providers))
        .route("/api/v1/auth/oidc/redeem", post(redeem))
        .route("/api/v1/auth/oidc/{id}/start", get(start))
        .route("/api/v1/auth/oidc/{id}/callback", get(callback))
}

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
#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemRequest {
    ticket: String,
}

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

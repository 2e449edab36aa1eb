//! Message search over HTTP: `GET /api/v1/search` for members (the rooms they are in) and
//! `GET /api/v1/compliance/search` for the compliance role (every room, audited). The query
//! language and what a result holds are in [`crate::search`].

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppJson, AppQuery, AppState, AuthUser, ComplianceUser};
use crate::error::{ApiError, Result};
use crate::search::{self, SearchPage, SearchRequest, Searcher};
use crate::store::{EventId, Millis, RoomId, UserId};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(member_search))
        .routes(routes!(compliance_search))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    /// What the user typed (see `docs/protocol.md` for the syntax).
    q: String,
    /// Only this room.
    room: Option<RoomId>,
    /// Only messages from this user.
    sender: Option<UserId>,
    /// Created at or after, in milliseconds since the epoch.
    after: Option<Millis>,
    /// Created before.
    before: Option<Millis>,
    /// The `next_cursor` of the previous page.
    cursor: Option<EventId>,
    /// At most this many results (default 20; the server caps it).
    limit: Option<u32>,
}

impl From<SearchParams> for SearchRequest {
    fn from(p: SearchParams) -> Self {
        Self {
            q: p.q,
            room: p.room,
            sender: p.sender,
            after: p.after,
            before: p.before,
            cursor: p.cursor,
            limit: p.limit,
        }
    }
}

/// `store.search_index = false`: nothing is indexed, so nothing is searched.
fn require_index(state: &AppState) -> Result<()> {
    if state.config.store.search_index {
        Ok(())
    } else {
        Err(ApiError::unavailable(
            "search_disabled",
            "search is turned off on this server (store.search_index = false)",
        ))
    }
}

/// Search the messages of the rooms the caller is a member of.
#[utoipa::path(get, path = "/api/v1/search", tag = "search",
    params(SearchParams),
    responses((status = 200, description = "A page of results, newest first", body = SearchPage)))]
async fn member_search(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppQuery(params): AppQuery<SearchParams>,
) -> Result<AppJson<SearchPage>> {
    run(&state, Searcher::Member(&caller.user), params).await
}

/// Search every room's messages (the compliance role; each search is audited).
#[utoipa::path(get, path = "/api/v1/compliance/search", tag = "compliance",
    params(SearchParams),
    responses((status = 200, description = "A page of results, newest first", body = SearchPage)))]
async fn compliance_search(
    State(state): State<AppState>,
    ComplianceUser(caller): ComplianceUser,
    AppQuery(params): AppQuery<SearchParams>,
) -> Result<AppJson<SearchPage>> {
    run(&state, Searcher::Compliance(&caller.user), params).await
}

async fn run(
    state: &AppState,
    searcher: Searcher<'_>,
    params: SearchParams,
) -> Result<AppJson<SearchPage>> {
    require_index(state)?;
    let page = search::search(
        state.store.as_ref(),
        &state.config.limits,
        searcher,
        params.into(),
    )
    .await?;
    Ok(AppJson(page))
}

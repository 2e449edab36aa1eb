//! `GET /api/v1/mentions`: the messages that mention the caller, newest first, across the
//! rooms the caller is a member of now (see [`crate::mentions`] for what a mention is).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppJson, AppQuery, AppState, AuthUser};
use crate::error::Result;
use crate::store::{Event, EventId};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_mentions))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct MentionsQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<EventId>,
    /// At most this many messages (default 50; the server caps it).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct MentionsPage {
    messages: Vec<Event>,
    /// Give as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<EventId>,
}

/// The messages that mention the caller, newest first, in the rooms the caller is in now.
#[utoipa::path(get, path = "/api/v1/mentions", tag = "mentions",
    params(MentionsQuery),
    responses((status = 200, description = "A page of messages that mention the caller",
        body = MentionsPage)))]
async fn list_mentions(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppQuery(query): AppQuery<MentionsQuery>,
) -> Result<AppJson<MentionsPage>> {
    let (messages, more) = state
        .router
        .mentions_of(&caller.user, query.cursor, query.limit)
        .await?;
    let next_cursor = more.then(|| messages.last().map(|m| m.id)).flatten();
    Ok(AppJson(MentionsPage {
        messages,
        next_cursor,
    }))
}

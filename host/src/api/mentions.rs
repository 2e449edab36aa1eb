//! `GET /api/v1/mentions`: the messages that mention the caller, newest first, across the
//! rooms the caller is a member of now (see [`crate::mentions`] for what a mention is).

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{AppJson, AppQuery, AppState, AuthUser};
use crate::error::Result;
use crate::store::{Event, EventId};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new().route("/api/v1/mentions", get(list_mentions))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MentionsQuery {
    /// The `next_cursor` of the previous page.
    cursor: Option<EventId>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
struct MentionsPage {
    messages: Vec<Event>,
    /// Give as `cursor` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<EventId>,
}

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

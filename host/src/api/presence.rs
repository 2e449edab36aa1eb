//! Presence over HTTP: who, of the people the caller shares a room with, is online or away
//! (the live changes come over the WebSocket as `presence` frames), and hiding one's own.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppJson, AppState, AuthUser};
use crate::error::Result;
use crate::protocol::PresenceStatus;
use crate::store::UserId;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_presence))
        .routes(routes!(set_own_presence))
}

#[derive(Debug, Serialize, ToSchema)]
struct OwnPresence {
    /// As the caller's own sessions make it (what others would see, were it not hidden).
    status: PresenceStatus,
    hidden: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct UserPresence {
    user: UserId,
    status: PresenceStatus,
}

#[derive(Debug, Serialize, ToSchema)]
struct PresenceList {
    /// Off when the operator turned presence off (`presence.enabled`).
    enabled: bool,
    me: OwnPresence,
    /// Everyone who shares a room with the caller and is not offline.
    users: Vec<UserPresence>,
}

/// Who of the people the caller shares a room with is online or away.
///
/// With the caller's own presence, as their sessions make it and whether it is hidden.
#[utoipa::path(get, path = "/api/v1/presence", tag = "presence",
    responses((status = 200,
        description = "The caller's presence and everyone visible who is not offline",
        body = PresenceList)))]
async fn list_presence(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<AppJson<PresenceList>> {
    let (status, hidden) = state.hub.own_presence(caller.user.id);
    let users = state
        .hub
        .visible_presence(caller.user.id)
        .await?
        .into_iter()
        .filter(|(user, _)| *user != caller.user.id)
        .map(|(user, status)| UserPresence { user, status })
        .collect();
    Ok(AppJson(PresenceList {
        enabled: state.config.presence.enabled,
        me: OwnPresence { status, hidden },
        users,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SetPresence {
    hidden: bool,
}

/// Hide the caller's presence or show it again.
///
/// Hide one's presence (others see `offline`) or show it again; kept across restarts and
/// applied on every node.
#[utoipa::path(put, path = "/api/v1/me/presence", tag = "presence",
    request_body = SetPresence,
    responses((status = 200, description = "The caller's presence as it is now",
        body = OwnPresence)))]
async fn set_own_presence(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppJson(req): AppJson<SetPresence>,
) -> Result<AppJson<OwnPresence>> {
    let user = caller.user.id;
    state.store.set_presence_hidden(user, req.hidden).await?;
    state.hub.set_presence_hidden(user, req.hidden, true).await;
    let (status, hidden) = state.hub.own_presence(user);
    Ok(AppJson(OwnPresence { status, hidden }))
}

//! Reactions and pins over HTTP (the WebSocket has the same writes as `react`, `unreact`,
//! `pin` and `unpin` frames). Members only; the router decides who may pin.

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};

use super::{AppJson, AppPath, AppState, AuthUser};
use crate::error::Result;
use crate::protocol::Ack;
use crate::store::{EventId, Pin, Reactors, RoomId};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route(
            "/api/v1/rooms/{id}/messages/{msg}/reactions",
            get(list_reactors),
        )
        .route(
            "/api/v1/rooms/{id}/messages/{msg}/reactions/{emoji}",
            put(react).delete(unreact),
        )
        .route("/api/v1/rooms/{id}/pins", get(list_pins))
        .route("/api/v1/rooms/{id}/pins/{msg}", put(pin).delete(unpin))
}

/// `201` with the ack of the new `reaction` event; `200` and the first one's ack when the
/// caller had already reacted so.
fn created_or_ok(ack: Ack) -> (StatusCode, AppJson<Ack>) {
    let status = if ack.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, AppJson(ack))
}

/// The emoji is the last path segment, percent-encoded (`%F0%9F%91%8D` for 👍).
async fn react(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg, emoji)): AppPath<(RoomId, EventId, String)>,
) -> Result<(StatusCode, AppJson<Ack>)> {
    let ack = state.router.react(&caller.user, id, msg, emoji).await?;
    Ok(created_or_ok(ack))
}

async fn unreact(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg, emoji)): AppPath<(RoomId, EventId, String)>,
) -> Result<AppJson<Ack>> {
    Ok(AppJson(
        state.router.unreact(&caller.user, id, msg, emoji).await?,
    ))
}

async fn list_reactors(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg)): AppPath<(RoomId, EventId)>,
) -> Result<AppJson<Vec<Reactors>>> {
    Ok(AppJson(state.router.reactors(&caller.user, id, msg).await?))
}

async fn list_pins(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
) -> Result<AppJson<Vec<Pin>>> {
    Ok(AppJson(state.router.pins(&caller.user, id).await?))
}

async fn pin(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg)): AppPath<(RoomId, EventId)>,
) -> Result<(StatusCode, AppJson<Ack>)> {
    let ack = state.router.pin(&caller.user, id, msg).await?;
    Ok(created_or_ok(ack))
}

async fn unpin(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg)): AppPath<(RoomId, EventId)>,
) -> Result<AppJson<Ack>> {
    Ok(AppJson(state.router.unpin(&caller.user, id, msg).await?))
}

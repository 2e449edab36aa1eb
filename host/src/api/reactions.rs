//! Reactions and pins over HTTP (the WebSocket has the same writes as `react`, `unreact`,
//! `pin` and `unpin` frames). Members only; the router decides who may pin.

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppJson, AppPath, AppState, AuthUser};
use crate::error::Result;
use crate::protocol::Ack;
use crate::store::{EventId, Pin, Reactors, RoomId};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_reactors))
        .routes(routes!(react, unreact))
        .routes(routes!(list_pins))
        .routes(routes!(pin, unpin))
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

/// React to a message with an emoji.
///
/// The emoji is the last path segment, percent-encoded (`%F0%9F%91%8D` for 👍).
#[utoipa::path(put, path = "/api/v1/rooms/{id}/messages/{msg}/reactions/{emoji}",
    tag = "reactions",
    params(("id" = i64, Path, description = "The room"),
        ("msg" = i64, Path, description = "The message"),
        ("emoji" = String, Path, description = "One emoji, percent-encoded")),
    responses(
        (status = 201, description = "The new `reaction` event committed", body = Ack),
        (status = 200, description = "The caller had already reacted so: the first one's ack",
            body = Ack),
    ))]
async fn react(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg, emoji)): AppPath<(RoomId, EventId, String)>,
) -> Result<(StatusCode, AppJson<Ack>)> {
    let ack = state.router.react(&caller.user, id, msg, emoji).await?;
    Ok(created_or_ok(ack))
}

/// Take back the caller's reaction with an emoji.
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/messages/{msg}/reactions/{emoji}",
    tag = "reactions",
    params(("id" = i64, Path, description = "The room"),
        ("msg" = i64, Path, description = "The message"),
        ("emoji" = String, Path, description = "One emoji, percent-encoded")),
    responses((status = 200, description = "The `reaction_removed` event committed",
        body = Ack)))]
async fn unreact(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg, emoji)): AppPath<(RoomId, EventId, String)>,
) -> Result<AppJson<Ack>> {
    Ok(AppJson(
        state.router.unreact(&caller.user, id, msg, emoji).await?,
    ))
}

/// Who reacted to a message, per emoji.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/messages/{msg}/reactions", tag = "reactions",
    params(("id" = i64, Path, description = "The room"),
        ("msg" = i64, Path, description = "The message")),
    responses((status = 200, description = "Per emoji, who reacted (earliest first)",
        body = Vec<Reactors>)))]
async fn list_reactors(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg)): AppPath<(RoomId, EventId)>,
) -> Result<AppJson<Vec<Reactors>>> {
    Ok(AppJson(state.router.reactors(&caller.user, id, msg).await?))
}

/// The messages pinned to a room.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/pins", tag = "reactions",
    params(("id" = i64, Path, description = "The room")),
    responses((status = 200, description = "The room's pinned messages, the latest pinned first",
        body = Vec<Pin>)))]
async fn list_pins(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
) -> Result<AppJson<Vec<Pin>>> {
    Ok(AppJson(state.router.pins(&caller.user, id).await?))
}

/// Pin a message to its room.
#[utoipa::path(put, path = "/api/v1/rooms/{id}/pins/{msg}", tag = "reactions",
    params(("id" = i64, Path, description = "The room"),
        ("msg" = i64, Path, description = "The message")),
    responses(
        (status = 201, description = "The new `pinned` event committed", body = Ack),
        (status = 200, description = "The message was already pinned: the first pin's ack",
            body = Ack),
    ))]
async fn pin(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg)): AppPath<(RoomId, EventId)>,
) -> Result<(StatusCode, AppJson<Ack>)> {
    let ack = state.router.pin(&caller.user, id, msg).await?;
    Ok(created_or_ok(ack))
}

/// Unpin a message.
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/pins/{msg}", tag = "reactions",
    params(("id" = i64, Path, description = "The room"),
        ("msg" = i64, Path, description = "The message")),
    responses((status = 200, description = "The `unpinned` event committed",
        body = Ack)))]
async fn unpin(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg)): AppPath<(RoomId, EventId)>,
) -> Result<AppJson<Ack>> {
    Ok(AppJson(state.router.unpin(&caller.user, id, msg).await?))
}

//! Rooms, members, messages and read cursors over HTTP. Every route checks membership in
//! the router; a non-member gets `room_not_found` whether or not the room exists.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppJson, AppPath, AppQuery, AppState, AuthUser};
use crate::error::{ApiError, Result};
use crate::protocol::Ack;
use crate::store::{
    Event, EventId, Member, Metadata, Page, Role, Room, RoomId, RoomSummary, UserId,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rooms, create_room))
        .routes(routes!(get_room, update_room))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(list_messages, send_message))
        .routes(routes!(edit_message, delete_message))
        .routes(routes!(mark_read))
        .routes(routes!(get_thread))
        .routes(routes!(mark_thread_read))
}

/// The rooms the caller is a member of, with unread counts.
#[utoipa::path(get, path = "/api/v1/rooms", tag = "rooms",
    responses((status = 200, description = "The caller's rooms", body = Vec<RoomSummary>)))]
async fn list_rooms(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<AppJson<Vec<RoomSummary>>> {
    Ok(AppJson(state.store.rooms_for_user(caller.user.id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum CreateRoomRequest {
    Group {
        name: String,
        #[serde(default)]
        topic: Option<String>,
        #[serde(default)]
        members: Vec<UserId>,
    },
    Direct {
        user: UserId,
    },
}

/// Create a group room, or open the direct room with one person.
///
/// `201` with the new room; for a direct room that already exists, `200` with it.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "rooms", request_body = CreateRoomRequest,
    responses(
        (status = 201, description = "The new room", body = Room),
        (status = 200, description = "The direct room that already existed", body = Room),
    ))]
async fn create_room(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppJson(req): AppJson<CreateRoomRequest>,
) -> Result<(StatusCode, AppJson<Room>)> {
    match req {
        CreateRoomRequest::Group {
            name,
            topic,
            members,
        } => {
            let room = state
                .router
                .create_group_room(&caller.user, name, topic, members)
                .await?;
            Ok((StatusCode::CREATED, AppJson(room)))
        }
        CreateRoomRequest::Direct { user } => {
            let (room, created) = state.router.direct_room(&caller.user, user).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, AppJson(room)))
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct RoomDetail {
    #[serde(flatten)]
    room: Room,
    members: Vec<Member>,
}

/// A room the caller is a member of, with its members.
#[utoipa::path(get, path = "/api/v1/rooms/{id}", tag = "rooms",
    params(("id" = i64, Path, description = "The room")),
    responses((status = 200, description = "The room and its members", body = RoomDetail)))]
async fn get_room(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
) -> Result<AppJson<RoomDetail>> {
    let (room, members) = state.router.room_detail(&caller.user, id).await?;
    Ok(AppJson(RoomDetail { room, members }))
}

/// Room settings an owner or admin changes; fields left out stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateRoomRequest {
    /// Every member may pin messages (owners and admins always may).
    #[serde(default)]
    members_may_pin: Option<bool>,
}

/// Change a group room's settings; answers with the room as it is now.
#[utoipa::path(patch, path = "/api/v1/rooms/{id}", tag = "rooms",
    params(("id" = i64, Path, description = "The room")),
    request_body = UpdateRoomRequest,
    responses((status = 200, description = "The room as it is now", body = RoomDetail)))]
async fn update_room(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
    AppJson(req): AppJson<UpdateRoomRequest>,
) -> Result<AppJson<RoomDetail>> {
    if let Some(allowed) = req.members_may_pin {
        state
            .router
            .set_members_may_pin(&caller.user, id, allowed)
            .await?;
    }
    let (room, members) = state.router.room_detail(&caller.user, id).await?;
    Ok(AppJson(RoomDetail { room, members }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AddMemberRequest {
    user: UserId,
    #[serde(default = "member_role")]
    role: Role,
}

fn member_role() -> Role {
    Role::Member
}

/// Add a member (owners and admins); answers with the `member_joined` event.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/members", tag = "rooms",
    params(("id" = i64, Path, description = "The room")),
    request_body = AddMemberRequest,
    responses((status = 201, description = "The `member_joined` event", body = Event)))]
async fn add_member(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
    AppJson(req): AppJson<AddMemberRequest>,
) -> Result<(StatusCode, AppJson<Event>)> {
    let event = state
        .router
        .add_member(&caller.user, id, req.user, req.role)
        .await?;
    Ok((StatusCode::CREATED, AppJson(event)))
}

/// Remove a member (owners and admins; anyone may remove themselves).
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/members/{user}", tag = "rooms",
    params(("id" = i64, Path, description = "The room"),
        ("user" = i64, Path, description = "The member to remove")),
    responses((status = 200, description = "The `member_left` event", body = Event)))]
async fn remove_member(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, user)): AppPath<(RoomId, UserId)>,
) -> Result<AppJson<Event>> {
    Ok(AppJson(
        state.router.remove_member(&caller.user, id, user).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    /// Events with a `seq` below this one (default: the newest).
    before: Option<i64>,
    /// Events with a `seq` above this one.
    after: Option<i64>,
    /// At most this many events (the server caps it).
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct HistoryPage {
    events: Vec<Event>,
    /// More events exist beyond this page in the direction asked.
    has_more: bool,
}

fn history_page(query: &HistoryQuery) -> Result<Page> {
    Ok(match (query.before, query.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "give `before` or `after`, not both",
            ));
        }
        (Some(before), None) => Page::Before(before),
        (None, Some(after)) => Page::After(after),
        (None, None) => Page::Before(i64::MAX),
    })
}

/// A page of a room's history.
///
/// `?after=SEQ` pages forward; `?before=SEQ` (default: the latest) pages backward. Either
/// way the events come oldest first.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/messages", tag = "rooms",
    params(("id" = i64, Path, description = "The room"), HistoryQuery),
    responses((status = 200, description = "A page of the room's history", body = HistoryPage)))]
async fn list_messages(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
    AppQuery(query): AppQuery<HistoryQuery>,
) -> Result<AppJson<HistoryPage>> {
    let page = history_page(&query)?;
    let (events, has_more) = state
        .router
        .history(&caller.user, id, page, query.limit)
        .await?;
    Ok(AppJson(HistoryPage { events, has_more }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    client_msg_id: String,
    body: String,
    #[serde(default)]
    metadata: Metadata,
    /// Files uploaded to this room by the sender, to attach.
    #[serde(default)]
    files: Vec<i64>,
    /// A reply in the thread of this top-level message of the room.
    #[serde(default)]
    thread_root: Option<EventId>,
    /// A reply that clients should show in the room's timeline too.
    #[serde(default)]
    also_to_room: bool,
}

/// Send a message (through the plugin chain), acknowledged once committed.
///
/// `201` with the ack once committed; a retried `client_msg_id` gets `200` and the original.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/messages", tag = "rooms",
    params(("id" = i64, Path, description = "The room")),
    request_body = SendRequest,
    responses(
        (status = 201, description = "Committed", body = Ack),
        (status = 200, description = "A retry of a `client_msg_id` already committed", body = Ack),
    ))]
async fn send_message(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
    AppJson(req): AppJson<SendRequest>,
) -> Result<(StatusCode, AppJson<Ack>)> {
    let thread = crate::router::thread_reply(req.thread_root, req.also_to_room)?;
    let ack = state
        .router
        .send_message_with_files(
            &caller.user,
            id,
            req.client_msg_id,
            req.body,
            req.metadata,
            req.files,
            thread,
            0,
        )
        .await?;
    let status = if ack.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, AppJson(ack)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EditRequest {
    body: String,
}

/// Edit one's own message; answers with the ack of the `edit` event.
#[utoipa::path(patch, path = "/api/v1/rooms/{id}/messages/{msg}", tag = "rooms",
    params(("id" = i64, Path, description = "The room"),
        ("msg" = i64, Path, description = "The message")),
    request_body = EditRequest,
    responses((status = 200, description = "The `edit` event committed", body = Ack)))]
async fn edit_message(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg)): AppPath<(RoomId, EventId)>,
    AppJson(req): AppJson<EditRequest>,
) -> Result<AppJson<Ack>> {
    Ok(AppJson(
        state
            .router
            .edit_message(&caller.user, id, msg, req.body)
            .await?,
    ))
}

/// Delete a message (its sender, or an owner or admin of the room).
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/messages/{msg}", tag = "rooms",
    params(("id" = i64, Path, description = "The room"),
        ("msg" = i64, Path, description = "The message")),
    responses((status = 200, description = "The `delete` event committed", body = Ack)))]
async fn delete_message(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg)): AppPath<(RoomId, EventId)>,
) -> Result<AppJson<Ack>> {
    Ok(AppJson(
        state.router.delete_message(&caller.user, id, msg).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ReadRequest {
    seq: i64,
}

#[derive(Debug, Serialize, ToSchema)]
struct ReadCursor {
    room: RoomId,
    seq: i64,
}

/// Move the caller's read cursor forward (never back).
#[utoipa::path(post, path = "/api/v1/rooms/{id}/read", tag = "rooms",
    params(("id" = i64, Path, description = "The room")),
    request_body = ReadRequest,
    responses((status = 200, description = "The cursor as it is now", body = ReadCursor)))]
async fn mark_read(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
    AppJson(req): AppJson<ReadRequest>,
) -> Result<AppJson<ReadCursor>> {
    let seq = state.router.mark_read(&caller.user, id, req.seq).await?;
    Ok(AppJson(ReadCursor { room: id, seq }))
}

/// A thread: its top-level message and a page of its replies.
///
/// `?before=SEQ` (default: the newest) or `?after=SEQ` pages through a thread's replies;
/// either way they come oldest first.
#[utoipa::path(get, path = "/api/v1/rooms/{id}/threads/{root}", tag = "rooms",
    params(("id" = i64, Path, description = "The room"),
        ("root" = i64, Path, description = "The thread's top-level message"), HistoryQuery),
    responses((status = 200, description = "The thread and a page of its replies",
        body = crate::router::ThreadView)))]
async fn get_thread(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, root)): AppPath<(RoomId, EventId)>,
    AppQuery(query): AppQuery<HistoryQuery>,
) -> Result<AppJson<crate::router::ThreadView>> {
    let page = history_page(&query)?;
    Ok(AppJson(
        state
            .router
            .thread(&caller.user, id, root, page, query.limit)
            .await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
struct ThreadReadCursor {
    room: RoomId,
    root: EventId,
    seq: i64,
}

/// Move the caller's read cursor in a thread forward.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/threads/{root}/read", tag = "rooms",
    params(("id" = i64, Path, description = "The room"),
        ("root" = i64, Path, description = "The thread's top-level message")),
    request_body = ReadRequest,
    responses((status = 200, description = "The thread cursor as it is now", body = ThreadReadCursor)))]
async fn mark_thread_read(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, root)): AppPath<(RoomId, EventId)>,
    AppJson(req): AppJson<ReadRequest>,
) -> Result<AppJson<ThreadReadCursor>> {
    let seq = state
        .router
        .mark_thread_read(&caller.user, id, root, req.seq)
        .await?;
    Ok(AppJson(ThreadReadCursor {
        room: id,
        root,
        seq,
    }))
}

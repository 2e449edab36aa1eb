//! Rooms, members, messages and read cursors over HTTP. Every route checks membership in
//! the router; a non-member gets `room_not_found` whether or not the room exists.

use axum::Router as HttpRouter;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};
use serde::{Deserialize, Serialize};

use super::{AppJson, AppPath, AppQuery, AppState, AuthUser};
use crate::error::{ApiError, Result};
use crate::protocol::Ack;
use crate::store::{
    Event, EventId, Member, Metadata, Page, Role, Room, RoomId, RoomSummary, UserId,
};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/v1/rooms", get(list_rooms).post(create_room))
        .route("/api/v1/rooms/{id}", get(get_room).patch(update_room))
        .route("/api/v1/rooms/{id}/members", post(add_member))
        .route("/api/v1/rooms/{id}/members/{user}", delete(remove_member))
        .route(
            "/api/v1/rooms/{id}/messages",
            get(list_messages).post(send_message),
        )
        .route(
            "/api/v1/rooms/{id}/messages/{msg}",
            patch(edit_message).delete(delete_message),
        )
        .route("/api/v1/rooms/{id}/read", post(mark_read))
        .route("/api/v1/rooms/{id}/threads/{root}", get(get_thread))
        .route(
            "/api/v1/rooms/{id}/threads/{root}/read",
            post(mark_thread_read),
        )
}

async fn list_rooms(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<AppJson<Vec<RoomSummary>>> {
    Ok(AppJson(state.store.rooms_for_user(caller.user.id).await?))
}

#[derive(Debug, Deserialize)]
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

/// `201` with the new room; for a direct room that already exists, `200` with it.
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

#[derive(Debug, Serialize)]
struct RoomDetail {
    #[serde(flatten)]
    room: Room,
    members: Vec<Member>,
}

async fn get_room(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
) -> Result<AppJson<RoomDetail>> {
    let (room, members) = state.router.room_detail(&caller.user, id).await?;
    Ok(AppJson(RoomDetail { room, members }))
}

/// Room settings an owner or admin changes; fields left out stay as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRoomRequest {
    /// Every member may pin messages (owners and admins always may).
    #[serde(default)]
    members_may_pin: Option<bool>,
}

/// Change a group room's settings; answers with the room as it is now.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddMemberRequest {
    user: UserId,
    #[serde(default = "member_role")]
    role: Role,
}

fn member_role() -> Role {
    Role::Member
}

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

async fn remove_member(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, user)): AppPath<(RoomId, UserId)>,
) -> Result<AppJson<Event>> {
    Ok(AppJson(
        state.router.remove_member(&caller.user, id, user).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<u32>,
}

#[derive(Debug, Serialize)]
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

/// `?after=SEQ` pages forward; `?before=SEQ` (default: the latest) pages backward. Either
/// way the events come oldest first.
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

#[derive(Debug, Deserialize)]
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

/// `201` with the ack once committed; a retried `client_msg_id` gets `200` and the original.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditRequest {
    body: String,
}

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

async fn delete_message(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath((id, msg)): AppPath<(RoomId, EventId)>,
) -> Result<AppJson<Ack>> {
    Ok(AppJson(
        state.router.delete_message(&caller.user, id, msg).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadRequest {
    seq: i64,
}

#[derive(Debug, Serialize)]
struct ReadCursor {
    room: RoomId,
    seq: i64,
}

async fn mark_read(
    State(state): State<AppState>,
    AuthUser(caller): AuthUser,
    AppPath(id): AppPath<RoomId>,
    AppJson(req): AppJson<ReadRequest>,
) -> Result<AppJson<ReadCursor>> {
    let seq = state.router.mark_read(&caller.user, id, req.seq).await?;
    Ok(AppJson(ReadCursor { room: id, seq }))
}

/// `?before=SEQ` (default: the newest) or `?after=SEQ` pages through a thread's replies;
/// either way they come oldest first.
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

#[derive(Debug, Serialize)]
struct ThreadReadCursor {
    room: RoomId,
    root: EventId,
    seq: i64,
}

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

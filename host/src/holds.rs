//! Legal holds: created by the compliance role, in force the moment they are created. While
//! a hold covers a message (its room, its sender, its creation time), an edit or a delete
//! keeps the earlier text (`event_versions`) — users still see the message edited or
//! deleted, the record keeps the original. Releasing is deliberately slow: it takes effect
//! `compliance.hold_release_delay_secs` after it was asked for, or at once when a second
//! compliance user confirms it. Every step is an audit record.

use crate::audit::{self, Action, Actor, Subject};
use crate::error::{ApiError, Result};
use crate::store::{LegalHold, Millis, NewHold, RoomId, Store, UserId, now_millis};

/// Longest hold name, and most users or rooms one hold may list.
const MAX_NAME: usize = 100;
const MAX_LISTED: usize = 1000;

/// What a compliance user asks to hold.
#[derive(Debug, Clone, Default)]
pub struct HoldRequest {
    pub name: String,
    pub users: Vec<UserId>,
    pub rooms: Vec<RoomId>,
    pub from_at: Option<Millis>,
    pub until_at: Option<Millis>,
}

/// Create a hold, after checking it names something that exists and is not a duplicate of
/// an active one.
pub async fn create(store: &dyn Store, request: HoldRequest, by: UserId) -> Result<LegalHold> {
    let name = request.name.trim().to_string();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(ApiError::bad_request(
            "invalid_hold",
            format!("a hold needs a name of 1 to {MAX_NAME} characters"),
        ));
    }
    if request.users.is_empty()
        && request.rooms.is_empty()
        && request.from_at.is_none()
        && request.until_at.is_none()
    {
        return Err(ApiError::bad_request(
            "invalid_hold",
            "a hold names users, rooms or a time range (set `rooms`, `users`, `from` or \
             `until`)",
        ));
    }
    if request.users.len() > MAX_LISTED || request.rooms.len() > MAX_LISTED {
        return Err(ApiError::bad_request(
            "invalid_hold",
            format!("a hold lists at most {MAX_LISTED} users and {MAX_LISTED} rooms"),
        ));
    }
    if let (Some(from), Some(until)) = (request.from_at, request.until_at)
        && from >= until
    {
        return Err(ApiError::bad_request(
            "invalid_range",
            "`from` must be before `until`",
        ));
    }
    for &room in &request.rooms {
        if store.room(room).await?.is_none() {
            return Err(ApiError::not_found(
                "room_not_found",
                format!("no room {room}"),
            ));
        }
    }
    for &user in &request.users {
        if store.user_by_id(user).await?.is_none() {
            return Err(ApiError::not_found(
                "user_not_found",
                format!("no user {user}"),
            ));
        }
    }
    let now = now_millis();
    if store
        .holds()
        .await?
        .iter()
        .any(|h| h.active(now) && h.name == name)
    {
        return Err(ApiError::conflict(
            "hold_exists",
            "an active hold already has this name",
        ));
    }
    let mut users = request.users;
    users.sort_unstable();
    users.dedup();
    let mut rooms = request.rooms;
    rooms.sort_unstable();
    rooms.dedup();
    let hold = store
        .create_hold(&NewHold {
            name,
            users,
            rooms,
            from_at: request.from_at,
            until_at: request.until_at,
            created_by: by,
        })
        .await?;
    audit::record(
        store,
        Actor::User(by),
        Action::HoldCreate,
        Subject::Hold(hold.id),
        serde_json::json!({
            "name": hold.name, "users": hold.users, "rooms": hold.rooms,
            "from": hold.from_at, "until": hold.until_at,
        }),
    )
    .await;
    Ok(hold)
}

/// Ask to release a hold, or confirm someone else's request. The first request sets the
/// release `delay_ms` ahead; a second, different compliance user makes it take effect now;
/// the same user asking again changes nothing.
pub async fn release(store: &dyn Store, id: i64, by: UserId, delay_ms: i64) -> Result<LegalHold> {
    let now = now_millis();
    let hold = store
        .holds()
        .await?
        .into_iter()
        .find(|h| h.id == id)
        .ok_or_else(|| ApiError::not_found("hold_not_found", "no such hold"))?;
    if !hold.active(now) {
        return Err(ApiError::conflict(
            "hold_released",
            "the hold is already released",
        ));
    }
    let (requested_by, requested_at, released_at, action) = match hold.release_requested_by {
        None => (
            by,
            now,
            now.saturating_add(delay_ms),
            Action::HoldReleaseRequest,
        ),
        Some(first) if first != by => (
            first,
            hold.release_requested_at.unwrap_or(now),
            now,
            Action::HoldRelease,
        ),
        Some(_) => {
            return Err(ApiError::conflict(
                "release_pending",
                "you asked for this release already: it takes effect after the delay, or \
                 when another compliance user confirms it",
            ));
        }
    };
    store
        .set_hold_release(id, requested_by, requested_at, released_at)
        .await?;
    audit::record(
        store,
        Actor::User(by),
        action,
        Subject::Hold(id),
        serde_json::json!({ "effective_at": released_at }),
    )
    .await;
    let hold = store.holds().await?.into_iter().find(|h| h.id == id);
    hold.ok_or_else(|| ApiError::not_found("hold_not_found", "no such hold"))
}

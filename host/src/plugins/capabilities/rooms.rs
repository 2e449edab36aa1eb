//! The `rooms` capability: read-only lookups of rooms, their members and users' display
//! names, within the plugin's scope: the rooms its bot is a member of (the default, which
//! needs `bot`), or every room when the operator grants `[rooms] scope = "all"`.
//!
//! Lookups read the store, so the imports are async (the guest's fiber waits; the time is
//! not counted against the hook's CPU deadline). A room outside the scope and a room that
//! does not exist answer the same `denied`, so a plugin learns nothing about rooms it may
//! not see.

use std::sync::Arc;

use super::CapError;
use crate::plugins::manifest::RoomsScope;
use crate::store::{Member, Room, RoomId, Store, User, UserId};

/// Most members one `members` call returns.
const MAX_MEMBERS: usize = 10_000;

pub(crate) struct RoomsCtx {
    store: Arc<dyn Store>,
    scope: RoomsScope,
    /// The plugin's bot, whose rooms bound the `member` scope.
    bot: Option<UserId>,
}

impl RoomsCtx {
    pub(crate) fn new(store: Arc<dyn Store>, scope: RoomsScope, bot: Option<UserId>) -> Self {
        Self { store, scope, bot }
    }

    fn unavailable(e: &crate::store::StoreError) -> CapError {
        tracing::warn!(error = %e, "rooms capability: store lookup failed");
        CapError::Unavailable("the room directory is unavailable".into())
    }

    fn out_of_scope(room: RoomId) -> CapError {
        CapError::Denied(format!(
            "room {room} does not exist or is outside this plugin's rooms scope"
        ))
    }

    /// The room and its members, if the room is in scope.
    async fn visible(&self, room_id: RoomId) -> Result<(Room, Vec<Member>), CapError> {
        let room = self
            .store
            .room(room_id)
            .await
            .map_err(|e| Self::unavailable(&e))?
            .ok_or_else(|| Self::out_of_scope(room_id))?;
        let members = self
            .store
            .room_members(room_id)
            .await
            .map_err(|e| Self::unavailable(&e))?;
        match self.scope {
            RoomsScope::All => Ok((room, members)),
            RoomsScope::Member => {
                let bot = self.bot.ok_or_else(|| Self::out_of_scope(room_id))?;
                if members.iter().any(|m| m.user_id == bot) {
                    Ok((room, members))
                } else {
                    Err(Self::out_of_scope(room_id))
                }
            }
        }
    }

    pub(crate) async fn info(&self, room_id: RoomId) -> Result<(Room, u32), CapError> {
        let (room, members) = self.visible(room_id).await?;
        Ok((room, u32::try_from(members.len()).unwrap_or(u32::MAX)))
    }

    pub(crate) async fn members(&self, room_id: RoomId) -> Result<Vec<(User, Member)>, CapError> {
        let (_, members) = self.visible(room_id).await?;
        let mut out = Vec::new();
        for member in members.into_iter().take(MAX_MEMBERS) {
            if let Some(user) = self
                .store
                .user_by_id(member.user_id)
                .await
                .map_err(|e| Self::unavailable(&e))?
            {
                out.push((user, member));
            }
        }
        Ok(out)
    }

    pub(crate) async fn display_name(&self, user_id: UserId) -> Result<String, CapError> {
        let denied = || {
            CapError::Denied(format!(
                "user {user_id} does not exist or shares no room with this plugin's bot"
            ))
        };
        let user = self
            .store
            .user_by_id(user_id)
            .await
            .map_err(|e| Self::unavailable(&e))?
            .ok_or_else(denied)?;
        if self.scope == RoomsScope::Member {
            let bot = self.bot.ok_or_else(denied)?;
            let rooms = self
                .store
                .rooms_for_user(bot)
                .await
                .map_err(|e| Self::unavailable(&e))?;
            let mut shared = user_id == bot;
            for summary in rooms {
                if shared {
                    break;
                }
                let members = self
                    .store
                    .room_members(summary.room.id)
                    .await
                    .map_err(|e| Self::unavailable(&e))?;
                shared = members.iter().any(|m| m.user_id == user_id);
            }
            if !shared {
                return Err(denied());
            }
        }
        Ok(user.display_name)
    }
}

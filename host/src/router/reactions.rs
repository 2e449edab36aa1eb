//! Reactions and pins: small writes about a message, each an event of the room's log
//! (`reaction`, `reaction_removed`, `pinned`, `unpinned`) committed, fanned out and synced
//! like any other, with the current state (counts per emoji, the pins list) kept beside the
//! log by the store.
//!
//! Who may: any member reacts (one reaction per emoji, at most
//! `limits.reactions_per_message_max` different emoji per message); owners and admins pin,
//! and every member does when the room allows it (`members_may_pin`), as do both people of
//! a direct room. Reactions and pins take the sender's message rate limit: they are cheap
//! writes, but writes. A reaction's value is checked by [`crate::reactions::check`], so
//! no text rides along that the message plugins did not see.

use super::RouterCore;
use crate::error::{ApiError, Result};
use crate::protocol::Ack;
use crate::store::{Event, EventId, NewEvent, Pin, Reactors, Role, RoomId, RoomKind, User};

impl RouterCore {
    /// React to a message with `emoji`. Reacting again with the same emoji changes nothing
    /// and is answered with the first reaction (`duplicate`).
    pub async fn react(
        &self,
        sender: &User,
        room_id: RoomId,
        message: EventId,
        emoji: String,
    ) -> Result<Ack> {
        check_emoji(&emoji)?;
        self.require_member(sender.id, room_id).await?;
        self.live_message_in_room(room_id, message).await?;
        let event = NewEvent::React {
            room_id,
            sender_id: sender.id,
            target: message,
            emoji,
            distinct_max: self.limits.reactions_per_message_max,
        };
        self.write_about(sender, room_id, message, event, None)
            .await
    }

    /// Take back one's own `emoji` reaction to a message.
    pub async fn unreact(
        &self,
        sender: &User,
        room_id: RoomId,
        message: EventId,
        emoji: String,
    ) -> Result<Ack> {
        check_emoji(&emoji)?;
        self.require_member(sender.id, room_id).await?;
        self.live_message_in_room(room_id, message).await?;
        let event = NewEvent::Unreact {
            room_id,
            sender_id: sender.id,
            target: message,
            emoji,
        };
        let missing = ("reaction_not_found", "you have not reacted with that emoji");
        self.write_about(sender, room_id, message, event, Some(missing))
            .await
    }

    /// Who reacted to a message with what (members only).
    pub async fn reactors(
        &self,
        caller: &User,
        room_id: RoomId,
        message: EventId,
    ) -> Result<Vec<Reactors>> {
        self.require_member(caller.id, room_id).await?;
        self.live_message_in_room(room_id, message).await?;
        Ok(self.store.reactors(message).await?)
    }

    /// Pin a message to its room. Pinning it again is answered with the first pin
    /// (`duplicate`).
    pub async fn pin(&self, actor: &User, room_id: RoomId, message: EventId) -> Result<Ack> {
        self.require_pinner(actor, room_id).await?;
        self.live_message_in_room(room_id, message).await?;
        let event = NewEvent::Pin {
            room_id,
            actor_id: actor.id,
            target: message,
            pins_max: self.limits.pins_per_room_max,
        };
        self.write_about(actor, room_id, message, event, None).await
    }

    /// Unpin a message (whoever pinned it; the same people may unpin as may pin).
    pub async fn unpin(&self, actor: &User, room_id: RoomId, message: EventId) -> Result<Ack> {
        self.require_pinner(actor, room_id).await?;
        let event = NewEvent::Unpin {
            room_id,
            actor_id: actor.id,
            target: message,
        };
        let missing = ("not_pinned", "that message is not pinned in this room");
        self.write_about(actor, room_id, message, event, Some(missing))
            .await
    }

    /// The room's pinned messages, the latest pinned first, each with its reactions as the
    /// caller sees them (members only).
    pub async fn pins(&self, caller: &User, room_id: RoomId) -> Result<Vec<Pin>> {
        self.require_member(caller.id, room_id).await?;
        let mut pins = self.store.pins(room_id).await?;
        let mut messages: Vec<Event> = pins.iter().map(|p| p.message.clone()).collect();
        self.annotate(caller, room_id, &mut messages, super::Roots::Live)
            .await?;
        for (pin, message) in pins.iter_mut().zip(messages) {
            pin.message = message;
        }
        Ok(pins)
    }

    /// Let every member pin, or only owners and admins (owners and admins of group rooms
    /// decide).
    pub async fn set_members_may_pin(
        &self,
        actor: &User,
        room_id: RoomId,
        allowed: bool,
    ) -> Result<()> {
        let member = self.group_member(actor.id, room_id).await?;
        if member.role < Role::Admin {
            return Err(ApiError::forbidden(
                "not_allowed",
                "only a room's owners and admins change its settings",
            ));
        }
        Ok(self.store.set_members_may_pin(room_id, allowed).await?)
    }

    /// Commit a reaction or pin write about `message`, its checks done, under the actor's
    /// message rate limit, and ack it. `missing`: the code and words for the store's
    /// `NotFound` (the reaction or pin to take back is not there).
    async fn write_about(
        &self,
        actor: &User,
        room_id: RoomId,
        message: EventId,
        event: NewEvent,
        missing: Option<(&'static str, &'static str)>,
    ) -> Result<Ack> {
        self.rate_limit(actor.id)?;
        let appended = self
            .committer
            .commit(event)
            .await
            .map_err(|err| match missing {
                Some((code, words)) if err.code() == "not_found" => {
                    ApiError::not_found(code, words)
                }
                _ => err,
            })?;
        Ok(Ack {
            duplicate: appended.duplicate,
            ..Ack::about(room_id, message, appended.event.seq)
        })
    }

    /// Owners and admins may pin; every member may in a direct room or a room that allows it.
    async fn require_pinner(&self, actor: &User, room_id: RoomId) -> Result<()> {
        let member = self.require_member(actor.id, room_id).await?;
        if member.role >= Role::Admin {
            return Ok(());
        }
        let room = self.room(room_id).await?;
        if room.kind == RoomKind::Direct || room.members_may_pin {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "not_allowed",
                "only the room's owners and admins may pin here",
            ))
        }
    }
}

fn check_emoji(emoji: &str) -> Result<()> {
    crate::reactions::check(emoji)
        .map_err(|why| ApiError::bad_request("invalid_reaction", why.to_string()))
}

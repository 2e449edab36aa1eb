//! The context of a call: messages of the rooms (or threads) a plugin asked for, read with
//! the invoking user's permissions — a room they are not a member of is refused, whatever
//! the plugin asked — as lines of text for the prompt.

use std::collections::HashMap;

use super::{Call, Llm, LlmError, STREAMING_KEY};
use crate::store::{EventKind, Page, RoomId, User, UserId};

impl Llm {
    /// The context the call asked for, read as the invoking user: one block of lines.
    pub(super) async fn context(&self, call: &Call) -> Result<String, LlmError> {
        let mut out = String::new();
        let mut names: HashMap<UserId, String> = HashMap::new();
        for source in &call.context {
            let Some(room) = self.readable_room(&call.user, source.room).await? else {
                return Err(LlmError::Denied(format!(
                    "context: {} is not a member of room {}",
                    call.user.name, source.room
                )));
            };
            let limit = source.limit.min(self.config.max_context_messages);
            if limit == 0 {
                continue;
            }
            let mut events = match source.thread_root {
                Some(root) => {
                    let root_event = self.store.event(root).await?;
                    let Some(root_event) = root_event.filter(|e| e.room_id == source.room) else {
                        return Err(LlmError::InvalidRequest(format!(
                            "context: message {root} is not in room {}",
                            source.room
                        )));
                    };
                    let mut replies = self
                        .store
                        .thread_replies(source.room, root, Page::Before(i64::MAX), limit)
                        .await?;
                    // The root always leads; the newest replies follow.
                    replies
                        .retain(|e| e.kind == EventKind::Message && !e.deleted && e.body.is_some());
                    let skip = replies
                        .len()
                        .saturating_sub(limit.saturating_sub(1) as usize);
                    let mut thread = vec![root_event];
                    thread.extend(replies.into_iter().skip(skip));
                    thread
                }
                // Edits and reactions are events too: read more than asked, keep messages.
                None => {
                    self.store
                        .events(source.room, Page::Before(i64::MAX), limit.saturating_mul(4))
                        .await?
                }
            };
            // An answer still being written (this call's own, say) is not conversation.
            events.retain(|e| {
                e.kind == EventKind::Message
                    && !e.deleted
                    && e.body.is_some()
                    && !e.metadata.contains_key(STREAMING_KEY)
                    && source.since.is_none_or(|since| e.created_at >= since)
            });
            let skip = events.len().saturating_sub(limit as usize);
            let label = room
                .name
                .clone()
                .unwrap_or_else(|| format!("room {}", room.id));
            out.push_str(&match source.thread_root {
                Some(_) => format!("A thread of {label}, oldest first:\n"),
                None => format!("Recent messages of {label}, oldest first:\n"),
            });
            for event in events.into_iter().skip(skip) {
                let name = match names.get(&event.sender_id) {
                    Some(name) => name.clone(),
                    None => {
                        let name = self.store.user_by_id(event.sender_id).await?.map_or_else(
                            || format!("user {}", event.sender_id),
                            |u| u.display_name,
                        );
                        names.insert(event.sender_id, name.clone());
                        name
                    }
                };
                out.push_str(&format!(
                    "[{}] {name}: {}\n",
                    format_time(event.created_at),
                    event.body.unwrap_or_default()
                ));
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// `room` when `user` is a member of it (and it exists).
    async fn readable_room(
        &self,
        user: &User,
        room: RoomId,
    ) -> Result<Option<crate::store::Room>, LlmError> {
        if self.store.member(room, user.id).await?.is_none() {
            return Ok(None);
        }
        Ok(self.store.room(room).await?)
    }
}

/// `2026-12-03 10:04` (UTC): a prompt needs no seconds.
pub(super) fn format_time(ms: i64) -> String {
    let mut at = crate::store::rfc3339(ms);
    at.truncate(16);
    at.replace('T', " ")
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn times_are_utc_civil() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(1_796_292_000_000), "2026-12-03 10:00");
        assert_eq!(format_time(951_782_400_000 + 61_000), "2000-02-29 00:01");
        assert_eq!(
            crate::store::rfc3339(1_796_165_626_000),
            "2026-12-01T22:53:46Z"
        );
    }
}

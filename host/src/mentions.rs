//! Mentions: who a message names with `@name`, and `@room`.
//!
//! The server reads mentions from the text it stores (after the plugin chain, so a plugin's
//! rewrite obeys the same rules as what a user typed), resolves them to the room's members,
//! and keeps them with the message: the event carries them (clients highlight and notify),
//! the store indexes them (per-room mention counts, the mentions list). A name that is a
//! user but not a member of the room is not a mention; the sender is told in the ack
//! (`mentions_not_in_room`) rather than left to wonder why nobody came. A name nobody has is
//! plain text (`@home`, `@2x`).
//!
//! What is code is not a mention: text between backticks (inline code or a fenced block)
//! is skipped, as a chat user expects of a pasted log line full of `@`s.

use std::collections::BTreeSet;

use crate::error::{ApiError, Result};
use crate::store::{Mentions, Role, RoomId, Store, UserId};

/// The name that mentions everyone in the room.
pub const ROOM: &str = "room";

/// What a text mentions, before names are resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Distinct lower-cased names, in order of first appearance (`room` excluded).
    pub names: Vec<String>,
    /// `@room` appears.
    pub room: bool,
}

/// Whether `c` can be part of a user name (`names::user_name`'s alphabet).
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Whether `c` before an `@` makes it part of a word (an address), in any script.
fn word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The `@name`s and `@room` of `text`. A mention starts at an `@` that does not follow a
/// letter or digit of any script, `.`, `_`, `-` or another `@` (so `jane@example.com` and
/// `josé@example.com` are not ones) and takes the longest
/// run of name characters after it, less trailing dots (the end of a sentence); outside
/// backticks only.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut seen = BTreeSet::new();
    let mut in_code = false;
    let mut previous: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '`' {
            in_code = !in_code;
        } else if c == '@' && !in_code && !previous.is_some_and(|p| word_char(p) || p == '@') {
            let start = at + 1;
            let mut end = start;
            while let Some(&(i, n)) = chars.peek() {
                if !name_char(n) {
                    break;
                }
                end = i + n.len_utf8();
                chars.next();
            }
            let name = text[start..end].trim_end_matches('.').to_ascii_lowercase();
            previous = text[..end].chars().next_back();
            if name.is_empty() || name.len() > 64 {
                continue;
            }
            if name == ROOM {
                parsed.room = true;
            } else if seen.insert(name.clone()) {
                parsed.names.push(name);
            }
            continue;
        }
        previous = Some(c);
    }
    parsed
}

/// A message's mentions, resolved against its room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Members named with `@name` (the sender included, if they named themselves).
    pub users: Vec<UserId>,
    /// `@room`: every member.
    pub room: bool,
    /// Names of users who exist but are not members of the room: not mentioned, and said
    /// so in the ack.
    pub not_in_room: Vec<String>,
}

impl Resolved {
    /// What the store keeps with the message.
    pub fn mentions(&self) -> Mentions {
        Mentions {
            users: self.users.clone(),
            room: self.room,
        }
    }
}

/// The limits that apply to a message's mentions.
#[derive(Debug, Clone, Copy)]
pub struct MentionLimits {
    /// Most distinct `@name`s in one message.
    pub names_max: usize,
    /// Rooms with more members than this take `@room` from owners and admins only.
    pub room_mention_members_max: usize,
}

/// Resolve `text`'s mentions for a message `sender` posts in `room`, whose members are
/// `members`. `400 too_many_mentions` beyond the limit; `403 room_mention_not_allowed` for
/// `@room` in a large room from someone who is not an owner or admin.
pub async fn resolve(
    store: &dyn Store,
    room: RoomId,
    sender: UserId,
    members: &[UserId],
    text: &str,
    limits: MentionLimits,
) -> Result<Resolved> {
    let parsed = parse(text);
    if parsed.names.is_empty() && !parsed.room {
        return Ok(Resolved::default());
    }
    if parsed.names.len() > limits.names_max {
        return Err(ApiError::bad_request(
            "too_many_mentions",
            format!(
                "a message may mention at most {} people by name (this one names {}); use @room to reach everyone",
                limits.names_max,
                parsed.names.len()
            ),
        ));
    }
    let mut resolved = Resolved {
        room: parsed.room,
        ..Resolved::default()
    };
    if parsed.room && members.len() > limits.room_mention_members_max {
        let role = store.member(room, sender).await?.map(|m| m.role);
        if role.is_none_or(|role| role < Role::Admin) {
            return Err(ApiError::forbidden(
                "room_mention_not_allowed",
                format!(
                    "@room in a room of more than {} members is for its owners and admins",
                    limits.room_mention_members_max
                ),
            ));
        }
    }
    for name in parsed.names {
        let Some((user, _)) = store.user_by_name(&name).await? else {
            continue; // nobody by that name: plain text
        };
        if !user.active {
            continue;
        }
        if members.contains(&user.id) {
            resolved.users.push(user.id);
        } else {
            resolved.not_in_room.push(name);
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn names(text: &str) -> (Vec<String>, bool) {
        let p = parse(text);
        (p.names, p.room)
    }

    #[test]
    fn names_room_and_what_is_not_a_mention() {
        assert_eq!(
            names("hi @Bob and @alice."),
            (vec!["bob".into(), "alice".into()], false)
        );
        assert_eq!(names("@room lunch?"), (vec![], true));
        assert_eq!(names("@bob @BOB @bob"), (vec!["bob".into()], false));
        assert_eq!(names("mail jane@example.com"), (vec![], false));
        assert_eq!(names("@@bob @ bob @"), (vec![], false));
        assert_eq!(
            names("(@carol) @dave, @e.f-g_h"),
            (vec!["carol".into(), "dave".into(), "e.f-g_h".into()], false)
        );
        assert_eq!(
            names("`@bob` and ```\n@room\n``` but @carol"),
            (vec!["carol".into()], false)
        );
        assert_eq!(names("ünïcode@bob é@carol"), (vec![], false));
        assert_eq!(names("🙂@bob"), (vec!["bob".into()], false));
    }

    proptest! {
        /// Any text: no panic; every name is non-empty, lower case, of name characters,
        /// and appears in the text after an `@`.
        #[test]
        fn parse_is_total_and_names_come_from_the_text(text in any::<String>()) {
            let parsed = parse(&text);
            let lower = text.to_ascii_lowercase();
            for name in &parsed.names {
                prop_assert!(!name.is_empty());
                prop_assert!(name.chars().all(name_char));
                prop_assert!(name.chars().all(|c| !c.is_ascii_uppercase()));
                let token = format!("@{}", name);
                prop_assert!(lower.contains(&token));
                prop_assert_ne!(name.as_str(), ROOM);
            }
            let distinct: BTreeSet<&String> = parsed.names.iter().collect();
            prop_assert_eq!(distinct.len(), parsed.names.len());
        }
    }
}

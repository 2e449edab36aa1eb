//! `/name args` commands: a message whose first word is `/` plus a name some plugin
//! registered goes to that plugin's `command` hook instead of the room.
//!
//! The command message itself is **not stored**: it is addressed to the plugin, may carry
//! arguments meant for it alone, and a private reply would make no sense next to a stored
//! question. The sender gets an ack with `command` set (`id`/`seq` 0); the plugin's room
//! reply arrives as its bot's message, through the ordinary send path (so the
//! `message-pre-send` chain sees it); a private reply arrives as a `notice` frame on the
//! sender's live sessions. A `/word` nobody registered is an ordinary message, so text that
//! merely starts with a slash (`/etc/hosts`) is unaffected.

use crate::error::{ApiError, Result};
use crate::protocol::{Ack, ServerFrame};
use crate::store::{RoomId, User};

use super::RouterCore;
use super::hooks::{CommandCall, CommandOutcome};

/// `(name, args)` when `body` has the shape of a command.
pub(super) fn parse(body: &str) -> Option<(&str, &str)> {
    let rest = body.strip_prefix('/')?;
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (name, args) = rest.split_at(end);
    crate::names::is_identifier(name, crate::names::MAX_COMMAND).then(|| (name, args.trim()))
}

impl RouterCore {
    /// Run `body` as a command if it is one a plugin registered; `None`: an ordinary
    /// message. Commands count against the sender's rate limit like messages.
    pub(super) async fn try_command(
        &self,
        sender: &User,
        room_id: RoomId,
        client_msg_id: &str,
        body: &str,
    ) -> Result<Option<Ack>> {
        let Some((name, args)) = parse(body) else {
            return Ok(None);
        };
        if !self.hooks.has_command(name) {
            return Ok(None);
        }
        self.rate_limit(sender.id)?;
        let call = CommandCall {
            name: name.to_string(),
            args: args.to_string(),
            room_id,
            sender: sender.clone(),
            depth: 0,
        };
        match self.hooks.command(call).await {
            CommandOutcome::Unknown => Ok(None),
            CommandOutcome::Handled { plugin, private } => {
                if let Some(text) = private {
                    let frame = ServerFrame::Notice {
                        room: room_id,
                        plugin: &plugin,
                        body: &text,
                    }
                    .to_json();
                    self.hub.deliver_to_user(sender.id, frame.into());
                }
                Ok(Some(Ack {
                    room: room_id,
                    id: 0,
                    seq: 0,
                    client_msg_id: Some(client_msg_id.to_string()),
                    modified: false,
                    body: None,
                    duplicate: false,
                    command: Some(name.to_string()),
                    mentions_not_in_room: Vec::new(),
                }))
            }
            CommandOutcome::Failed { plugin, reason } => Err(ApiError::Rejected {
                plugin,
                code: "command_failed".into(),
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn commands_are_a_slash_and_a_name() {
        assert_eq!(parse("/echo hello  world "), Some(("echo", "hello  world")));
        assert_eq!(parse("/echo"), Some(("echo", "")));
        assert_eq!(parse("/echo\nline"), Some(("echo", "line")));
        assert_eq!(parse("/etc/hosts"), None);
        assert_eq!(parse("echo hi"), None);
        assert_eq!(parse("/ echo"), None);
        assert_eq!(parse("/Echo"), None);
    }

    proptest::proptest! {
        /// For any text: a command is exactly a slash, a valid name up to the first white
        /// space, and the rest trimmed; putting the parts back gives the text again (up to
        /// the white space around the arguments); anything else is an ordinary message.
        #[test]
        fn parse_is_exact(body in "(/)?[a-zA-Z0-9_./ -]{0,40}( [^\\x00]{0,40})?") {
            match parse(&body) {
                Some((name, args)) => {
                    proptest::prop_assert!(crate::names::is_identifier(name, crate::names::MAX_COMMAND));
                    let rest = body.strip_prefix('/').unwrap_or_default();
                    proptest::prop_assert!(rest.starts_with(name));
                    let after = &rest[name.len()..];
                    proptest::prop_assert!(after.is_empty() || after.starts_with(char::is_whitespace));
                    proptest::prop_assert_eq!(args, after.trim());
                }
                None => {
                    let looks_like = body.strip_prefix('/').is_some_and(|rest| {
                        let name = rest.split(char::is_whitespace).next().unwrap_or_default();
                        crate::names::is_identifier(name, crate::names::MAX_COMMAND)
                    });
                    proptest::prop_assert!(!looks_like, "{body:?} should be a command");
                }
            }
        }
    }
}

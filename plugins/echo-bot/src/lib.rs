//! The smallest bot: answers commands and keywords as its own bot user.
//!
//! - `/echo <text>` posts `<text>` in the room, as the bot;
//! - `/whisper <text>` shows `<text>` to the sender only;
//! - settings `"answer.<keyword>" = "<text>"`: a delivered message containing `<keyword>`
//!   (a whole word, any case) gets `<text>` as a reply in its room (in its thread, when
//!   the message is a reply in a thread).
//! - settings `"react.<keyword>" = "<emoji>"`: such a message gets the bot's `<emoji>`
//!   reaction.
//!
//! Grant it `bot` and `config`, and register the commands in its manifest:
//! `commands = ["echo", "whisper"]`.

use switchboard_plugin_api::{
    CommandCall, CommandOutcome, Event, EventKind, HookSet, HostError, Plugin, Room, bot, config,
    export_plugin,
};

pub struct EchoBot {
    /// `(keyword, answer)`, keywords lower-cased.
    answers: Vec<(String, String)>,
    /// `(keyword, emoji)`, keywords lower-cased.
    reactions: Vec<(String, String)>,
}

/// The `(keyword, value)` pairs of settings named `<prefix><keyword>`.
fn keyed(settings: &[(String, String)], prefix: &str) -> Vec<(String, String)> {
    settings
        .iter()
        .filter_map(|(key, value)| {
            let word = key.strip_prefix(prefix)?.trim().to_lowercase();
            (!word.is_empty()).then(|| (word, value.clone()))
        })
        .collect()
}

/// The value of the first keyword `body` contains as a whole word, in any case.
fn first_match<'a>(keyed: &'a [(String, String)], body: &str) -> Option<&'a str> {
    let words: Vec<String> = body
        .split(|c: char| !c.is_alphanumeric() && c != '_' && c != '-')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    keyed
        .iter()
        .find(|(keyword, _)| words.iter().any(|w| w == keyword))
        .map(|(_, value)| value.as_str())
}

impl EchoBot {
    /// Build from `(key, value)` settings.
    pub fn from_settings(settings: &[(String, String)]) -> Self {
        Self {
            answers: keyed(settings, "answer."),
            reactions: keyed(settings, "react."),
        }
    }

    /// What to say to a message, if anything: the answer of the first keyword it contains.
    pub fn answer(&self, body: &str) -> Option<&str> {
        first_match(&self.answers, body)
    }

    /// How to react to a message, if at all: the emoji of the first keyword it contains.
    pub fn reaction(&self, body: &str) -> Option<&str> {
        first_match(&self.reactions, body)
    }

    /// The answer to a command.
    pub fn run(name: &str, args: &str) -> CommandOutcome {
        match (name, args.trim()) {
            (_, "") => CommandOutcome::PrivateReply(format!("usage: /{name} <text>")),
            ("echo", text) => CommandOutcome::Reply(text.to_string()),
            ("whisper", text) => CommandOutcome::PrivateReply(text.to_string()),
            (other, _) => CommandOutcome::PrivateReply(format!("echo-bot does not know /{other}")),
        }
    }
}

impl Plugin for EchoBot {
    const HOOKS: HookSet = HookSet::COMMAND.union(HookSet::MESSAGE_DELIVERED);

    fn new() -> Self {
        Self::from_settings(&config::all().unwrap_or_default())
    }

    fn command(&self, call: CommandCall) -> CommandOutcome {
        Self::run(&call.name, &call.args)
    }

    fn message_delivered(&self, _room: Room, event: Event) {
        if event.kind != EventKind::Message {
            return;
        }
        if let Some(emoji) = event.body.as_deref().and_then(|body| self.reaction(body)) {
            match bot::react(event.room_id, event.id, emoji) {
                Ok(()) | Err(HostError::Denied(_)) => {}
                Err(err) => {
                    switchboard_plugin_api::warn!("reaction failed: {err:?}");
                }
            }
        }
        if let Some(answer) = event.body.as_deref().and_then(|body| self.answer(body)) {
            // A keyword in a thread is answered in that thread.
            let sent = match event.thread_root {
                Some(root) => bot::reply_in_thread(event.room_id, root, answer),
                None => bot::reply(answer),
            };
            match sent {
                // Observers see every room; the bot answers only in those it was added to.
                Ok(()) | Err(HostError::Denied(_)) => {}
                // Anything else (say, `bot` not granted) has nowhere better to go than the log.
                Err(err) => {
                    switchboard_plugin_api::warn!("reply failed: {err:?}");
                }
            }
        }
    }
}

export_plugin!(EchoBot);

#[cfg(test)]
mod tests {
    use super::*;

    fn bot() -> EchoBot {
        EchoBot::from_settings(&[
            ("answer.ping".into(), "pong".into()),
            ("answer.Help".into(), "try /echo".into()),
            ("react.ship".into(), "🚀".into()),
            ("other".into(), "x".into()),
        ])
    }

    #[test]
    fn keywords_are_whole_words_in_any_case() {
        let b = bot();
        assert_eq!(b.answer("PING?"), Some("pong"));
        assert_eq!(b.answer("I need help"), Some("try /echo"));
        assert_eq!(b.answer("pinging"), None);
        assert_eq!(b.answer("nothing here"), None);
        assert_eq!(b.reaction("Ship it!"), Some("🚀"));
        assert_eq!(b.reaction("shipping"), None);
        assert_eq!(b.answer("ship it"), None);
    }

    #[test]
    fn commands_echo_whisper_and_explain() {
        assert!(matches!(EchoBot::run("echo", " hi "), CommandOutcome::Reply(t) if t == "hi"));
        assert!(
            matches!(EchoBot::run("whisper", "psst"), CommandOutcome::PrivateReply(t) if t == "psst")
        );
        assert!(
            matches!(EchoBot::run("echo", ""), CommandOutcome::PrivateReply(t) if t.contains("usage"))
        );
    }
}

//! A small plugin that blocks or rewrites operator-configured keywords (whole words, any
//! case). With `dlp` it shows how a chain passes modifications along: keyword-guard can
//! rewrite a message before the DLP filter sees it.
//!
//! Settings:
//! - `block`: words that make a message be rejected (`keyword_blocked`), one per line or
//!   as a TOML array;
//! - `rewrite.<word> = "<replacement>"`: words replaced before the message goes on;
//! - `deny_users`: user names refused at login (shows the `on-login` hook).

use switchboard_plugin_api::{
    Decision, HookSet, Message, Plugin, PreSendOutcome, User, config, export_plugin, meta_set,
};

/// The parsed settings.
pub struct KeywordGuard {
    block: Vec<String>,
    rewrite: Vec<(String, String)>,
    deny_users: Vec<String>,
}

fn lines(value: &str) -> Vec<String> {
    value
        .lines()
        .map(|l| l.trim().to_lowercase())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Byte ranges where `word` occurs in `text` as a whole word, ignoring ASCII case.
fn whole_words(text: &str, word: &str) -> Vec<(usize, usize)> {
    let hay = text.to_ascii_lowercase();
    let bytes = hay.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    hay.match_indices(word)
        .map(|(i, _)| (i, i + word.len()))
        .filter(|&(s, e)| {
            (s == 0 || !is_word(bytes[s - 1])) && (e >= bytes.len() || !is_word(bytes[e]))
        })
        .collect()
}

impl KeywordGuard {
    /// Build from `(key, value)` settings.
    pub fn from_settings(settings: &[(String, String)]) -> Self {
        let mut guard = Self {
            block: Vec::new(),
            rewrite: Vec::new(),
            deny_users: Vec::new(),
        };
        for (key, value) in settings {
            if key == "block" {
                guard.block = lines(value);
            } else if key == "deny_users" {
                guard.deny_users = lines(value);
            } else if let Some(word) = key.strip_prefix("rewrite.") {
                guard.rewrite.push((word.to_lowercase(), value.clone()));
            }
        }
        guard
    }

    /// The pre-send decision for one message.
    pub fn check(&self, msg: Message) -> PreSendOutcome {
        for word in &self.block {
            if !whole_words(&msg.body, word).is_empty() {
                return PreSendOutcome::reject(
                    "keyword_blocked",
                    format!("the word {word:?} is not allowed here"),
                );
            }
        }
        let mut body = msg.body;
        let mut rewrites = 0;
        for (word, replacement) in &self.rewrite {
            // Replace from the end so earlier ranges stay valid.
            for (s, e) in whole_words(&body, word).into_iter().rev() {
                body.replace_range(s..e, replacement);
                rewrites += 1;
            }
        }
        if rewrites == 0 {
            return PreSendOutcome::Continue;
        }
        let mut metadata = msg.metadata;
        meta_set(
            &mut metadata,
            "keyword-guard.rewrites",
            rewrites.to_string(),
        );
        PreSendOutcome::modify(body, metadata)
    }
}

impl Plugin for KeywordGuard {
    const HOOKS: HookSet = HookSet::MESSAGE_PRE_SEND.union(HookSet::ON_LOGIN);

    fn new() -> Self {
        Self::from_settings(&config::all().unwrap_or_default())
    }

    fn message_pre_send(&self, msg: Message) -> PreSendOutcome {
        self.check(msg)
    }

    fn on_login(&self, user: User) -> Decision {
        if self.deny_users.contains(&user.name.to_lowercase()) {
            return Decision::deny("this account may not log in");
        }
        Decision::Allow
    }
}

export_plugin!(KeywordGuard);

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> KeywordGuard {
        KeywordGuard::from_settings(&[
            ("block".into(), "Forbidden\nsecret-sauce".into()),
            ("rewrite.darn".into(), "d**n".into()),
        ])
    }

    fn msg(body: &str) -> Message {
        Message {
            room_id: 1,
            sender_id: 2,
            sender_name: "a".into(),
            client_msg_id: "c".into(),
            editing: None,
            body: body.into(),
            metadata: Vec::new(),
            thread_root: None,
        }
    }

    #[test]
    fn blocks_whole_words_in_any_case() {
        assert!(matches!(
            guard().check(msg("this is FORBIDDEN")),
            PreSendOutcome::Reject(_)
        ));
        assert!(matches!(
            guard().check(msg("unforbiddenly fine")),
            PreSendOutcome::Continue
        ));
    }

    #[test]
    fn rewrites_and_counts() {
        match guard().check(msg("Darn it, darn")) {
            PreSendOutcome::Modify(m) => {
                assert_eq!(m.body, "d**n it, d**n");
                assert_eq!(
                    m.metadata,
                    vec![("keyword-guard.rewrites".to_string(), "2".to_string())]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

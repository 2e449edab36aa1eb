//! An assistant bot on the operator's language model (capability `llm`).
//!
//! - `/ask [-p|--private] <question>`: the model answers from the room's latest messages
//!   (and its tools), as the bot in the room, or privately with `-p`;
//! - `/summarize [-p] [N | since:YYYY-MM-DD]`: a summary of the room's last `N` messages,
//!   or of those since that day (UTC);
//! - `/approve <code>`, `/deny <code>`: decide on a tool call the host asked you about;
//! - `@<name>` in a message: the answer is posted in that message's thread.
//!
//! The plugin only builds requests: the server owns what reaches the model (DLP, room
//! membership of the person asking, tool policy, budgets, audit), so nothing here needs to
//! be trusted. Settings: `name` (the mention, default `assistant`; keep it equal to
//! `[bot] name`), `system_prompt`, `context_messages` (20, 0–200; 0 sends no context),
//! `summary_messages` (50, 1–500), `tools` (`true`). Grant it `llm`, `bot`, `config` and
//! `log`; register `commands = ["ask", "summarize", "approve", "deny"]`.

use switchboard_plugin_api::llm::{self, ChatMessage, ContextSource, Delivery, Request};
use switchboard_plugin_api::{
    CommandCall, CommandOutcome, Event, EventKind, HookSet, HostError, Plugin, Room, bot, config,
    export_plugin,
};

const DEFAULT_SYSTEM_PROMPT: &str = "You are Switchboard's assistant, a bot in a team chat. \
    Answer concisely. Use only the conversation provided and your tools; say when you do not \
    know.";
const SUMMARY_PROMPT: &str = "You summarize team chat conversations for the people in them. \
    Be accurate and brief, name people as they appear, and invent nothing.";
const SUMMARY_QUESTION: &str = "Summarize the conversation above in a few bullet points: \
    decisions, open questions, who owns what.";
/// What a bare mention asks.
const MENTION_QUESTION: &str = "Help with the conversation above: answer its open question, \
    or add what is useful.";
/// The most messages `/summarize` asks for (also the limit of `since:`).
const MAX_SUMMARY: u32 = 500;
const ASK_USAGE: &str = "usage: /ask [-p] <question>";
const SUMMARIZE_USAGE: &str = "usage: /summarize [-p] [N (1-500) | since:YYYY-MM-DD]";

/// The plugin is its settings, read once per instance (a missing or malformed value takes
/// its default): every request is built from them and the hook's arguments.
pub struct Assistant {
    /// The mention, lower-cased, without `@`.
    name: String,
    system_prompt: String,
    context_messages: u32,
    summary_messages: u32,
    tools: bool,
}

impl Assistant {
    fn from_settings(settings: &[(String, String)]) -> Self {
        let get = |key: &str| {
            let value = settings
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim());
            value.filter(|v| !v.is_empty())
        };
        let number = |key, default, max: u32| {
            let value = get(key).and_then(|v| v.parse::<u32>().ok());
            value.unwrap_or(default).min(max)
        };
        let name = get("name").unwrap_or("assistant").trim_start_matches('@');
        Self {
            name: name.to_lowercase(),
            system_prompt: get("system_prompt").unwrap_or(DEFAULT_SYSTEM_PROMPT).into(),
            context_messages: number("context_messages", 20, 200),
            summary_messages: number("summary_messages", 50, MAX_SUMMARY).max(1),
            tools: !get("tools").is_some_and(|v| v.eq_ignore_ascii_case("false")),
        }
    }
}

/// `-p` / `--private` as the first word: `(private, the rest)`.
fn split_private(args: &str) -> (bool, &str) {
    let args = args.trim();
    match args.split_once(char::is_whitespace).unwrap_or((args, "")) {
        ("-p" | "--private", rest) => (true, rest.trim()),
        _ => (false, args),
    }
}

/// A host error, said to a person.
fn explain(err: &HostError) -> String {
    match err {
        HostError::QuotaExceeded => "too many answers are on their way; try again".into(),
        HostError::NotGranted => {
            "the assistant is not allowed to use the model: ask the operator to grant llm".into()
        }
        HostError::TooLarge => "that request is too large for the assistant".into(),
        HostError::Denied(why) | HostError::Unavailable(why) | HostError::InvalidArgument(why) => {
            why.clone()
        }
    }
}

/// `YYYY-MM-DD` as milliseconds since the Unix epoch at that day's UTC midnight.
fn parse_date_ms(text: &str) -> Option<i64> {
    let field = |part: Option<&str>, len| {
        let part = part.filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))?;
        part.parse::<i64>().ok()
    };
    let mut parts = text.split('-');
    let (year, month, day) = (
        field(parts.next(), 4)?,
        field(parts.next(), 2)?,
        field(parts.next(), 2)?,
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => 28 + i64::from(leap),
        _ => return None,
    };
    if parts.next().is_some() || !(1..=month_days).contains(&day) {
        return None;
    }
    // Days from the civil date (H. Hinnant): years start in March, so a leap day ends one.
    let y = if month <= 2 { year - 1 } else { year };
    let (era, year_of_era) = (y.div_euclid(400), y.rem_euclid(400));
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some((era * 146_097 + day_of_era - 719_468) * 86_400_000)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// If `body` mentions `@name` as a word (any case; not `x@name.org` nor `@names`), the body
/// without the mention(s): the question.
fn strip_mention(body: &str, name: &str) -> Option<String> {
    let (mut rest, mut from, mut search) = (String::new(), 0, 0);
    while let Some(at) = body[search..].find('@').map(|i| i + search) {
        search = at + 1;
        if body[..at].chars().next_back().is_some_and(is_word_char) {
            continue;
        }
        // `name` at `at + 1`, in any case, then no word character.
        let mut chars = body[at + 1..].char_indices();
        let same = name.chars().all(|n| {
            let c = chars.next().map(|(_, c)| c);
            c.is_some_and(|c| c.to_lowercase().eq(n.to_lowercase()))
        });
        let end = at + 1 + chars.next().map_or(body.len() - at - 1, |(i, _)| i);
        if !same || name.is_empty() || body[end..].chars().next().is_some_and(is_word_char) {
            continue;
        }
        rest.push_str(&body[from..at]);
        // `@assistant, what ...`: the comma belonged to the mention.
        from = end + usize::from(body[end..].starts_with([',', ':']));
        search = from;
    }
    if from == 0 {
        return None;
    }
    rest.push_str(&body[from..]);
    // Without the mention, a sentence has a double space.
    Some(
        rest.trim()
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

impl Assistant {
    /// `system` and `question`, with the latest messages of the room or thread (if any).
    fn request(&self, system: &str, question: &str, room: i64, thread: Option<i64>) -> Request {
        let context = match (self.context_messages, thread) {
            (0, _) => Vec::new(),
            (limit, None) => vec![ContextSource::room(room, limit)],
            (limit, Some(root)) => vec![ContextSource::thread(room, root, limit)],
        };
        Request {
            messages: vec![ChatMessage::system(system), ChatMessage::user(question)],
            context,
            max_tokens: None,
            tools: self.tools,
        }
    }

    fn ask(&self, call: &CommandCall) -> CommandOutcome {
        let (private, question) = split_private(&call.args);
        if question.is_empty() {
            return CommandOutcome::PrivateReply(ASK_USAGE.into());
        }
        let request = self.request(&self.system_prompt, question, call.room_id, None);
        answer_command(
            &request,
            private,
            format!("**{} asked:** {question}", invoker(call)),
        )
    }

    fn summarize(&self, call: &CommandCall) -> CommandOutcome {
        let (private, arg) = split_private(&call.args);
        let span = match arg.strip_prefix("since:") {
            Some(date) => parse_date_ms(date.trim()).map(|since| (MAX_SUMMARY, Some(since))),
            None if arg.is_empty() => Some((self.summary_messages, None)),
            None => arg
                .parse()
                .ok()
                .filter(|n| (1..=MAX_SUMMARY).contains(n))
                .map(|n| (n, None)),
        };
        let Some((limit, since_ms)) = span else {
            return CommandOutcome::PrivateReply(SUMMARIZE_USAGE.into());
        };
        let mut request = self.request(SUMMARY_PROMPT, SUMMARY_QUESTION, call.room_id, None);
        let room = ContextSource::room(call.room_id, limit);
        request.context = vec![ContextSource { since_ms, ..room }];
        // A summary is of the conversation given, not of what tools could find.
        request.tools = false;
        answer_command(
            &request,
            private,
            format!("**Summary** requested by {}", invoker(call)),
        )
    }

    /// The request and where its answer goes, if `event` is a message mentioning the bot
    /// and not the bot's own (`bot_id` is asked only then: most messages mention nobody).
    fn mention(
        &self,
        event: &Event,
        bot_id: impl FnOnce() -> Option<i64>,
    ) -> Option<(Request, Delivery)> {
        if event.kind != EventKind::Message {
            return None;
        }
        let question = strip_mention(event.body.as_deref()?, &self.name)?;
        if bot_id() == Some(event.sender_id) {
            return None;
        }
        let question = if question.is_empty() {
            MENTION_QUESTION
        } else {
            question.as_str()
        };
        let prompt = &self.system_prompt;
        let request = self.request(prompt, question, event.room_id, event.thread_root);
        // Answer in the thread the mention is in, or start one on it.
        Some((
            request,
            Delivery::Thread(event.thread_root.unwrap_or(event.id)),
        ))
    }
}

/// What the invoker is called in a posted preface.
fn invoker(call: &CommandCall) -> &str {
    let display = call.sender.display_name.trim();
    if display.is_empty() {
        &call.sender.name
    } else {
        display
    }
}

/// Have the host answer in the room after `preface` (a command is not stored: readers would
/// not see what was asked otherwise), or privately; a refusal is told to the invoker only.
fn answer_command(request: &Request, private: bool, preface: String) -> CommandOutcome {
    let (delivery, preface) = match private {
        true => (Delivery::Private, None),
        false => (Delivery::Room, Some(preface)),
    };
    match llm::answer(request, &delivery, preface.as_deref()) {
        Ok(()) => CommandOutcome::Done,
        Err(err) => CommandOutcome::PrivateReply(explain(&err)),
    }
}

/// `/approve <code>` and `/deny <code>`.
fn decide(args: &str, approve: bool) -> CommandOutcome {
    let mut words = args.split_whitespace();
    let (Some(code), None) = (words.next(), words.next()) else {
        let name = if approve { "approve" } else { "deny" };
        return CommandOutcome::PrivateReply(format!("usage: /{name} <code>"));
    };
    let done = if approve { "Approved." } else { "Denied." };
    CommandOutcome::PrivateReply(
        llm::decide(code, approve).map_or_else(|e| explain(&e), |()| done.into()),
    )
}

impl Plugin for Assistant {
    const HOOKS: HookSet = HookSet::COMMAND.union(HookSet::MESSAGE_DELIVERED);

    fn new() -> Self {
        Self::from_settings(&config::all().unwrap_or_default())
    }

    fn command(&self, call: CommandCall) -> CommandOutcome {
        match call.name.as_str() {
            "ask" => self.ask(&call),
            "summarize" => self.summarize(&call),
            "approve" => decide(&call.args, true),
            "deny" => decide(&call.args, false),
            other => CommandOutcome::PrivateReply(format!("assistant does not know /{other}")),
        }
    }

    fn message_delivered(&self, _room: Room, event: Event) {
        let Some((request, delivery)) = self.mention(&event, || bot::user_id().ok()) else {
            return;
        };
        // An observer cannot reply privately: a refusal has nowhere to go but the log.
        if let Err(err) = llm::answer(&request, &delivery, None) {
            switchboard_plugin_api::warn!(
                "mention in room {} not answered: {err:?}",
                event.room_id
            );
        }
    }
}

export_plugin!(Assistant);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use switchboard_plugin_api::{RoomKind, testing};

    fn assistant(settings: &[(&str, &str)]) -> Assistant {
        let settings = settings.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Assistant::from_settings(&settings.collect::<Vec<_>>())
    }

    /// The private reply to `/name args` ("" for none).
    fn run(a: &Assistant, name: &str, args: &str) -> String {
        let mut sender = testing::user(2, "alice");
        sender.display_name = "Alice".into();
        let (name, args, room_id) = (name.into(), args.into(), 7);
        match a.command(CommandCall {
            name,
            args,
            room_id,
            sender,
        }) {
            CommandOutcome::Done => String::new(),
            CommandOutcome::PrivateReply(text) => text,
            CommandOutcome::Reply(text) => panic!("posted {text}"),
        }
    }

    fn mention(a: &Assistant, body: &str, thread_root: Option<i64>) {
        let event = Event {
            id: 40,
            room_id: 7,
            seq: 3,
            kind: EventKind::Message,
            sender_id: 2,
            target: None,
            body: Some(body.into()),
            metadata: Vec::new(),
            created_at: 0,
            thread_root,
        };
        let (kind, name) = (RoomKind::Group, None);
        a.message_delivered(Room { id: 7, kind, name }, event);
    }

    #[test]
    fn ask_answers_in_the_room_or_privately() {
        testing::reset();
        assert_eq!(run(&assistant(&[]), "ask", " what did we decide? "), "");
        let (request, delivery, preface) = testing::answers().remove(0);
        assert!(matches!(delivery, Delivery::Room) && request.tools);
        assert_eq!(preface.unwrap(), "**Alice asked:** what did we decide?");
        assert_eq!(request.messages[0].content, DEFAULT_SYSTEM_PROMPT);
        assert_eq!(request.messages[1].content, "what did we decide?");
        let ctx = &request.context[0];
        assert_eq!((ctx.room_id, ctx.thread_root, ctx.limit), (7, None, 20));

        let quiet = assistant(&[("context_messages", "0"), ("tools", "false")]);
        assert_eq!(run(&quiet, "ask", "-p why?"), "");
        let (request, delivery, preface) = testing::answers().remove(1);
        assert!(matches!(delivery, Delivery::Private) && preface.is_none());
        assert!(request.context.is_empty() && !request.tools);
        assert_eq!(run(&quiet, "ask", "--private "), ASK_USAGE);
    }

    #[test]
    fn refusals_are_explained_to_the_invoker() {
        testing::reset();
        testing::fail_llm(HostError::Denied(
            "the daily personal token budget of 10 is used up".into(),
        ));
        assert!(run(&assistant(&[]), "ask", "hi").contains("budget"));
        testing::fail_llm(HostError::QuotaExceeded);
        assert!(run(&assistant(&[]), "ask", "hi").contains("try again"));
        testing::fail_llm(HostError::Denied("the prompt holds a secret".into()));
        assert_eq!(
            run(&assistant(&[]), "summarize", ""),
            "the prompt holds a secret"
        );
        testing::reset();
        testing::deny("llm");
        assert!(run(&assistant(&[]), "ask", "hi").contains("grant llm"));
    }

    #[test]
    fn summarize_takes_a_count_or_a_day() {
        testing::reset();
        let a = assistant(&[]);
        for args in ["", "-p 10", "since:2024-03-01"] {
            assert_eq!(run(&a, "summarize", args), "", "{args}");
        }
        let answers = testing::answers();
        let span = |i: usize| {
            (
                answers[i].0.context[0].limit,
                answers[i].0.context[0].since_ms,
            )
        };
        assert_eq!([span(0), span(1)], [(50, None), (10, None)]);
        assert_eq!(span(2), (500, Some(1_709_251_200_000)));
        assert_eq!(
            answers[0].2.as_deref(),
            Some("**Summary** requested by Alice")
        );
        assert!(matches!(answers[1].1, Delivery::Private) && answers[1].2.is_none());
        assert!(answers.iter().all(|(r, _, _)| !r.tools));
        assert_eq!(answers[0].0.messages[1].content, SUMMARY_QUESTION);
        for bad in ["0", "501", "ten", "since:2023-02-29", "since:24-01-01"] {
            assert_eq!(run(&a, "summarize", bad), SUMMARIZE_USAGE, "{bad}");
        }
    }

    #[test]
    fn dates_are_utc_midnights() {
        assert_eq!(parse_date_ms("1970-01-01"), Some(0));
        assert_eq!(parse_date_ms("1969-12-31"), Some(-86_400_000));
        assert_eq!(parse_date_ms("2000-02-29"), Some(951_782_400_000));
        for bad in [
            "1900-02-29",
            "2024-04-31",
            "2024-1-01",
            "2024-01-01-01",
            "2024-13-01",
        ] {
            assert_eq!(parse_date_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn approve_and_deny_pass_the_code_on() {
        testing::reset();
        let a = assistant(&[]);
        assert_eq!(run(&a, "approve", "ab12"), "Approved.");
        assert_eq!(run(&a, "deny", " cd34 "), "Denied.");
        assert_eq!(
            testing::decisions(),
            [("ab12".into(), true), ("cd34".into(), false)]
        );
        assert_eq!(run(&a, "deny", ""), "usage: /deny <code>");
    }

    #[test]
    fn mentions_are_whole_words_in_any_case() {
        let m = |body| strip_mention(body, "assistant");
        assert_eq!(m("hey @Assistant, what next?").unwrap(), "hey what next?");
        assert_eq!(m("@assistant").unwrap(), "");
        assert_eq!(m("mail x@assistant.org, @assistants or @assistant_2"), None);
    }

    #[test]
    fn a_mention_is_answered_in_its_thread() {
        testing::reset();
        testing::with_host(|host| host.bot_user_id = 99);
        let a = assistant(&[("name", "@Assistant")]);
        mention(&a, "@assistant what now?", None);
        mention(&a, "ok @ASSISTANT", Some(30));
        mention(&a, "no mention here", None);
        let answers = testing::answers();
        assert_eq!(answers.len(), 2);
        let (request, delivery, preface) = &answers[0];
        assert!(matches!(delivery, Delivery::Thread(40)) && preface.is_none());
        assert_eq!(request.messages[1].content, "what now?");
        assert_eq!(request.context[0].thread_root, None);
        let (request, delivery, _) = &answers[1];
        assert!(matches!(delivery, Delivery::Thread(30)));
        assert_eq!(request.messages[1].content, "ok");
        assert_eq!(request.context[0].thread_root, Some(30));

        testing::with_host(|host| host.bot_user_id = 2);
        mention(&a, "@assistant the bot's own message", None);
        testing::with_host(|host| host.bot_user_id = 99);
        testing::fail_llm(HostError::Denied("card number".into()));
        mention(&a, "@assistant x", None);
        assert_eq!(testing::answers().len(), 2);
        assert!(testing::logs()[0].1.contains("card number"));
    }
}

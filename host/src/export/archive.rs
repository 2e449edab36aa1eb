//! The two formats compliance archives ingest from chat systems, written from one model of a
//! room's conversation: **Actiance XML** (Smarsh's `FileDump` of `Conversation` elements)
//! and **Global Relay EML** (one MIME e-mail per conversation, summary and transcript as
//! text and HTML, the `X-GlobalRelay-MsgType` header). Element names, headers and the
//! 250 MiB per-e-mail limit follow what those archives already take from Mattermost's
//! compliance export, so an archive configured for it needs no new mapping.
//!
//! A room's part of a batch is a [`Conversation`]: who was present, and the messages in
//! log order with every kept earlier text (`EditedOriginalMsg`), the edited text
//! (`EditedNewMsg`) and deletions (`Deleted`). A conversation larger than the e-mail limit
//! is cut into several, each complete in itself.

use std::collections::BTreeMap;
use std::io::Write;

use crate::store::{
    Event, EventKind, EventVersion, Millis, RoomId, RoomKind, User, UserId, rfc3339,
};

/// Global Relay refuses e-mails above 250 MiB.
pub const EML_MAX_BYTES: usize = 250 << 20;

/// The archives' name for how a message's record came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatedType {
    /// An earlier text of an edited message (kept under a hold or `preserve_deleted`).
    EditedOriginalMsg,
    /// The current text of a message that was edited.
    EditedNewMsg,
    /// The message was deleted.
    Deleted,
}

impl UpdatedType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EditedOriginalMsg => "EditedOriginalMsg",
            Self::EditedNewMsg => "EditedNewMsg",
            Self::Deleted => "Deleted",
        }
    }
}

/// One record of a message in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Post {
    pub message_id: String,
    pub sender: UserId,
    pub at: Millis,
    pub updated: Option<(UpdatedType, Option<Millis>)>,
    /// For an earlier text: the message that now holds the edited text.
    pub edited_new_msg_id: Option<String>,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Entered(UserId, Millis),
    Left(UserId, Millis),
    Post(Post),
}

/// The records of one message: its kept earlier texts, then its current state.
pub fn message_posts(event: &Event, versions: &[EventVersion]) -> Vec<Post> {
    let id = event.id.to_string();
    let mut posts = Vec::new();
    let mut deleted_at = None;
    let mut last_text = None;
    for (n, version) in versions.iter().enumerate() {
        if version.cause == "delete" {
            deleted_at = Some(version.replaced_at);
            last_text = version.body.clone();
            continue;
        }
        let written_at = match n {
            0 => event.created_at,
            _ => versions[n - 1].replaced_at,
        };
        posts.push(Post {
            message_id: format!("{id}.{}", n + 1),
            sender: event.sender_id,
            at: written_at,
            updated: Some((UpdatedType::EditedOriginalMsg, Some(version.replaced_at))),
            edited_new_msg_id: Some(id.clone()),
            content: version.body.clone().unwrap_or_default(),
        });
    }
    if event.deleted {
        posts.push(Post {
            message_id: id,
            sender: event.sender_id,
            at: event.created_at,
            updated: Some((UpdatedType::Deleted, deleted_at)),
            edited_new_msg_id: None,
            // As the archives expect it: the text that was deleted, marked.
            content: format!("delete {}", last_text.unwrap_or_default()),
        });
    } else {
        posts.push(Post {
            message_id: id,
            sender: event.sender_id,
            at: event.created_at,
            updated: event
                .edited_at
                .map(|at| (UpdatedType::EditedNewMsg, Some(at))),
            edited_new_msg_id: None,
            content: event.body.clone().unwrap_or_default(),
        });
    }
    posts
}

/// Who a person is to an archive: a login and a corporate e-mail address.
#[derive(Debug, Clone)]
struct Person {
    name: String,
    email: String,
    bot: bool,
}

/// One room's part of a batch, as archives see it.
#[derive(Debug)]
pub struct Conversation {
    room_id: RoomId,
    room_name: String,
    kind: RoomKind,
    /// The start of the window asked for, if any (else the first record's time).
    window_start: Option<Millis>,
    entries: Vec<Entry>,
    people: BTreeMap<UserId, Person>,
    bytes: usize,
}

impl Conversation {
    pub fn new(
        room_id: RoomId,
        room_name: String,
        kind: RoomKind,
        window_start: Option<Millis>,
    ) -> Self {
        Self {
            room_id,
            room_name,
            kind,
            window_start,
            entries: Vec::new(),
            people: BTreeMap::new(),
            bytes: 0,
        }
    }

    pub fn room_id(&self) -> RoomId {
        self.room_id
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Text bytes so far (what the e-mail limit counts).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The room's display name in archives.
    pub fn title(&self) -> String {
        match self.kind {
            RoomKind::Direct => format!("direct {}", self.room_id),
            RoomKind::Group => self.room_name.clone(),
        }
    }

    fn know(&mut self, user: UserId, users: &BTreeMap<UserId, User>, email_domain: &str) {
        self.people.entry(user).or_insert_with(|| {
            let (name, bot) = users
                .get(&user)
                .map(|u| (u.name.clone(), u.is_bot))
                .unwrap_or_else(|| (format!("user-{user}"), false));
            Person {
                email: format!("{name}@{email_domain}"),
                name,
                bot,
            }
        });
    }

    /// Add one event of the room's log (with a message's kept versions).
    pub fn push(
        &mut self,
        event: &Event,
        versions: &[EventVersion],
        users: &BTreeMap<UserId, User>,
        email_domain: &str,
    ) {
        match event.kind {
            EventKind::Message => {
                self.know(event.sender_id, users, email_domain);
                for post in message_posts(event, versions) {
                    self.bytes += post.content.len() + 200;
                    self.entries.push(Entry::Post(post));
                }
            }
            EventKind::MemberJoined | EventKind::MemberLeft => {
                let who = event.target.unwrap_or(event.sender_id);
                self.know(who, users, email_domain);
                self.bytes += 200;
                self.entries.push(if event.kind == EventKind::MemberJoined {
                    Entry::Entered(who, event.created_at)
                } else {
                    Entry::Left(who, event.created_at)
                });
            }
            // Edits and deletes are already in their message's records. Reactions and pins
            // have no element in these formats: `events.jsonl` and `posts.csv` hold them.
            EventKind::Edit
            | EventKind::Delete
            | EventKind::Reaction
            | EventKind::ReactionRemoved
            | EventKind::Pinned
            | EventKind::Unpinned => {}
        }
    }

    fn entry_at(entry: &Entry) -> Millis {
        match entry {
            Entry::Entered(_, at) | Entry::Left(_, at) => *at,
            Entry::Post(post) => post.updated.and_then(|(_, at)| at).unwrap_or(post.at),
        }
    }

    fn start(&self) -> Millis {
        let first = self.entries.iter().map(Self::entry_at).min().unwrap_or(0);
        self.window_start.map_or(first, |start| start.min(first))
    }

    fn end(&self, window_end: Option<Millis>) -> Millis {
        let last = self.entries.iter().map(Self::entry_at).max().unwrap_or(0);
        window_end.map_or(last, |end| end.max(last))
    }

    /// Everyone present: who was there before the conversation's first record (entered at
    /// its start), and who joined in it; with when each entered and left.
    fn presence(&self, end: Millis) -> Vec<(UserId, Millis, Millis)> {
        let start = self.start();
        let mut spans: BTreeMap<UserId, (Millis, Option<Millis>)> = BTreeMap::new();
        for entry in &self.entries {
            match entry {
                Entry::Entered(who, at) => {
                    spans.entry(*who).or_insert((*at, None)).1 = None;
                }
                Entry::Left(who, at) => {
                    spans.entry(*who).or_insert((start, None)).1 = Some(*at);
                }
                Entry::Post(post) => {
                    spans.entry(post.sender).or_insert((start, None));
                }
            }
        }
        spans
            .into_iter()
            .map(|(who, (entered, left))| (who, entered, left.unwrap_or(end)))
            .collect()
    }

    fn person(&self, user: UserId) -> Person {
        self.people.get(&user).cloned().unwrap_or_else(|| Person {
            name: format!("user-{user}"),
            email: format!("user-{user}@invalid"),
            bot: false,
        })
    }

    fn channel_type(&self) -> &'static str {
        match self.kind {
            RoomKind::Direct => "direct",
            RoomKind::Group => "private",
        }
    }

    /// This conversation as one Actiance `<Conversation>` element (times in UTC seconds, as
    /// the Actiance schema has them).
    pub fn write_actiance(
        &self,
        out: &mut impl Write,
        window_end: Option<Millis>,
    ) -> std::io::Result<()> {
        let secs = |at: Millis| at.div_euclid(1000);
        let start = self.start();
        let end = self.end(window_end);
        let presence = self.presence(end);
        let participant = |out: &mut dyn Write, tag: &str, who: UserId, at: Millis| {
            let p = self.person(who);
            write!(
                out,
                "    <{tag}>\n      <LoginName>{}</LoginName>\n      <UserType>{}</UserType>\n      <DateTimeUTC>{}</DateTimeUTC>\n      <CorporateEmailID>{}</CorporateEmailID>\n    </{tag}>\n",
                xml_text(&p.email),
                if p.bot { "bot" } else { "user" },
                secs(at),
                xml_text(&p.email),
            )
        };
        write!(
            out,
            "  <Conversation Perspective=\"{}\">\n    <RoomID>{} - {} - {}</RoomID>\n    <StartTimeUTC>{}</StartTimeUTC>\n",
            xml_text(&self.title()),
            self.channel_type(),
            xml_text(&self.title()),
            self.room_id,
            secs(start),
        )?;
        // Present from the start: everyone whose first record is not a join.
        let joined: std::collections::BTreeSet<UserId> = self
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Entered(who, _) => Some(*who),
                _ => None,
            })
            .collect();
        for (who, entered, _) in &presence {
            if !joined.contains(who) {
                participant(out, "ParticipantEntered", *who, *entered)?;
            }
        }
        let mut left = std::collections::BTreeSet::new();
        for entry in &self.entries {
            match entry {
                Entry::Entered(who, at) => {
                    left.remove(who);
                    participant(out, "ParticipantEntered", *who, *at)?;
                }
                Entry::Left(who, at) => {
                    left.insert(*who);
                    participant(out, "ParticipantLeft", *who, *at)?;
                }
                Entry::Post(post) => {
                    let p = self.person(post.sender);
                    write!(
                        out,
                        "    <Message>\n      <MessageId>{}</MessageId>\n      <LoginName>{}</LoginName>\n      <UserType>{}</UserType>\n      <DateTimeUTC>{}</DateTimeUTC>\n",
                        post.message_id,
                        xml_text(&p.email),
                        if p.bot { "bot" } else { "user" },
                        secs(post.at),
                    )?;
                    if let Some((kind, at)) = post.updated {
                        writeln!(out, "      <UpdatedType>{}</UpdatedType>", kind.as_str())?;
                        if let Some(at) = at {
                            writeln!(
                                out,
                                "      <UpdatedDateTimeUTC>{}</UpdatedDateTimeUTC>",
                                secs(at)
                            )?;
                        }
                    }
                    if let Some(id) = &post.edited_new_msg_id {
                        writeln!(out, "      <EditedNewMsgId>{id}</EditedNewMsgId>")?;
                    }
                    write!(
                        out,
                        "      <Content>{}</Content>\n    </Message>\n",
                        xml_text(&post.content)
                    )?;
                }
            }
        }
        // Present at the end: everyone who did not leave.
        for (who, _, until) in &presence {
            if !left.contains(who) {
                participant(out, "ParticipantLeft", *who, *until)?;
            }
        }
        write!(
            out,
            "    <EndTimeUTC>{}</EndTimeUTC>\n  </Conversation>\n",
            secs(end)
        )
    }

    /// This conversation as one Global Relay e-mail: from the first participant, to all of
    /// them, a summary and the transcript in text and HTML.
    pub fn write_eml(
        &self,
        out: &mut impl Write,
        window_end: Option<Millis>,
        exported_at: Millis,
        part: usize,
    ) -> std::io::Result<()> {
        let start = self.start();
        let end = self.end(window_end);
        let presence = self.presence(end);
        let mut sent: BTreeMap<UserId, usize> = BTreeMap::new();
        for entry in &self.entries {
            if let Entry::Post(post) = entry {
                *sent.entry(post.sender).or_default() += 1;
            }
        }
        let title = self.title();
        let mut text = format!(
            "Switchboard Compliance Export\n\nConversation Summary\nChannelId: {}\nChannelName: {}\nChannelType: {}\nStarted: {}\nEnded: {}\n\nParticipants\n",
            self.room_id,
            title,
            self.channel_type(),
            rfc3339(start),
            rfc3339(end)
        );
        let mut html = format!(
            "<html><body><h1>Switchboard Compliance Export</h1>\n<h2>Conversation Summary</h2>\n<ul>\n<li><b>ChannelId:</b> {}</li>\n<li><b>ChannelName:</b> {}</li>\n<li><b>ChannelType:</b> {}</li>\n<li><b>Started:</b> {}</li>\n<li><b>Ended:</b> {}</li>\n</ul>\n<table class=\"participants\">\n<tr><th>UserId</th><th>Username</th><th>UserType</th><th>Email</th><th>Joined</th><th>Left</th><th>Messages</th></tr>\n",
            self.room_id,
            xml_text(&title),
            self.channel_type(),
            rfc3339(start),
            rfc3339(end)
        );
        for (who, entered, left) in &presence {
            let p = self.person(*who);
            let kind = if p.bot { "bot" } else { "user" };
            let count = sent.get(who).copied().unwrap_or(0);
            text.push_str(&format!(
                "{who} @{} {kind} {} joined {} left {} messages {count}\n",
                p.name,
                p.email,
                rfc3339(*entered),
                rfc3339(*left)
            ));
            html.push_str(&format!(
                "<tr><td>{who}</td><td>@{}</td><td>{kind}</td><td>{}</td><td>{}</td><td>{}</td><td>{count}</td></tr>\n",
                xml_text(&p.name),
                xml_text(&p.email),
                rfc3339(*entered),
                rfc3339(*left)
            ));
        }
        text.push_str("\nMessages\n");
        html.push_str("</table>\n<h2>Messages</h2>\n<ul class=\"message-list\">\n");
        for entry in &self.entries {
            match entry {
                Entry::Entered(who, at) | Entry::Left(who, at) => {
                    let verb = if matches!(entry, Entry::Entered(..)) {
                        "joined"
                    } else {
                        "left"
                    };
                    let p = self.person(*who);
                    text.push_str(&format!(
                        "{} @{} {verb} the conversation\n",
                        rfc3339(*at),
                        p.name
                    ));
                    html.push_str(&format!(
                        "<li class=\"event\">{} @{} {verb} the conversation</li>\n",
                        rfc3339(*at),
                        xml_text(&p.name)
                    ));
                }
                Entry::Post(post) => {
                    let p = self.person(post.sender);
                    let note = post
                        .updated
                        .map(|(kind, _)| format!(" [{}]", kind.as_str()))
                        .unwrap_or_default();
                    text.push_str(&format!(
                        "{} {} @{} ({}){note}: {}\n",
                        rfc3339(post.at),
                        post.message_id,
                        p.name,
                        p.email,
                        post.content
                    ));
                    html.push_str(&format!(
                        "<li class=\"message\"><span class=\"post_id\">{}</span> <span class=\"sent_time\">{}</span> <span class=\"username\">@{}</span> <span class=\"email\">({})</span>{} <span class=\"message\">{}</span></li>\n",
                        post.message_id,
                        rfc3339(post.at),
                        xml_text(&p.name),
                        xml_text(&p.email),
                        xml_text(&note),
                        xml_text(&post.content)
                    ));
                }
            }
        }
        text.push_str(&format!("\nExported on {}\n", rfc3339(exported_at)));
        html.push_str(&format!(
            "</ul>\n<p>Exported on {}</p></body></html>\n",
            rfc3339(exported_at)
        ));
        let addresses: Vec<String> = presence
            .iter()
            .map(|(who, _, _)| self.person(*who).email)
            .collect();
        let from = addresses
            .first()
            .cloned()
            .unwrap_or_else(|| "compliance@invalid".into());
        mail_builder::MessageBuilder::new()
            .message_id(format!("{}.{part}.{exported_at}@switchboard", self.room_id))
            .from(from)
            .to(addresses)
            .subject(format!("Switchboard Compliance Export: {title}"))
            .date(end.div_euclid(1000))
            .header(
                "Auto-Submitted",
                mail_builder::headers::raw::Raw::new("auto-generated"),
            )
            .header("Precedence", mail_builder::headers::raw::Raw::new("bulk"))
            .header(
                "X-GlobalRelay-MsgType",
                mail_builder::headers::raw::Raw::new("Switchboard"),
            )
            .header(
                "X-Switchboard-ChannelID",
                mail_builder::headers::raw::Raw::new(self.room_id.to_string()),
            )
            .header(
                "X-Switchboard-ChannelName",
                mail_builder::headers::text::Text::new(title),
            )
            .header(
                "X-Switchboard-ChannelType",
                mail_builder::headers::raw::Raw::new(self.channel_type()),
            )
            .text_body(text)
            .html_body(html)
            .write_to(out)
    }
}

/// `s` as XML character data or attribute text: markup escaped, and the characters XML 1.0
/// cannot hold at all (controls other than tab and line ends, lone surrogates cannot occur
/// in a `str`, U+FFFE/U+FFFF) replaced by U+FFFD, so any message text yields a document an
/// archive's parser accepts.
pub fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn xml_text_escapes_markup_and_replaces_what_xml_cannot_hold() {
        assert_eq!(xml_text("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(xml_text("bell\u{7}tab\tline\n"), "bell\u{FFFD}tab\tline\n");
        assert_eq!(xml_text("\u{FFFF}"), "\u{FFFD}");
    }

    fn event(id: i64, kind: EventKind, sender: UserId, body: &str, at: Millis) -> Event {
        Event {
            id,
            room_id: 7,
            seq: id,
            kind,
            sender_id: sender,
            target: matches!(kind, EventKind::MemberJoined | EventKind::MemberLeft)
                .then_some(sender),
            body: Some(body.to_string()),
            metadata: Default::default(),
            client_msg_id: None,
            created_at: at,
            edited_at: None,
            deleted: false,
            thread_root: None,
            also_to_room: false,
            mentions: Vec::new(),
            mentions_room: false,
            thread: None,
            reactions: Vec::new(),
        }
    }

    #[test]
    fn presence_and_messages_come_out_in_order_in_both_formats() {
        let users: BTreeMap<UserId, User> = BTreeMap::new();
        let mut conversation = Conversation::new(7, "ops".into(), RoomKind::Group, Some(1_000));
        conversation.push(
            &event(1, EventKind::Message, 1, "hello", 2_000),
            &[],
            &users,
            "corp.example",
        );
        conversation.push(
            &event(2, EventKind::MemberJoined, 2, "", 3_000),
            &[],
            &users,
            "corp.example",
        );
        conversation.push(
            &event(3, EventKind::Message, 2, "hi ünïcode", 4_000),
            &[],
            &users,
            "corp.example",
        );
        conversation.push(
            &event(4, EventKind::MemberLeft, 2, "", 5_000),
            &[],
            &users,
            "corp.example",
        );
        let mut xml = Vec::new();
        conversation.write_actiance(&mut xml, Some(9_000)).unwrap();
        let xml = String::from_utf8(xml).unwrap();
        let tags: Vec<&str> = xml
            .lines()
            .map(str::trim)
            .filter(|l| {
                l.starts_with('<') && !l.starts_with("</") && l.ends_with('>') && !l.contains("</")
            })
            .collect();
        assert_eq!(
            tags,
            [
                "<Conversation Perspective=\"ops\">",
                "<ParticipantEntered>",
                "<Message>",
                "<ParticipantEntered>",
                "<Message>",
                "<ParticipantLeft>",
                "<ParticipantLeft>",
            ],
            "{xml}"
        );
        assert!(xml.contains("<StartTimeUTC>1</StartTimeUTC>"), "{xml}");
        assert!(xml.contains("<EndTimeUTC>9</EndTimeUTC>"), "{xml}");
        assert!(
            xml.contains("<LoginName>user-1@corp.example</LoginName>"),
            "{xml}"
        );

        let mut eml = Vec::new();
        conversation
            .write_eml(&mut eml, Some(9_000), 10_000, 1)
            .unwrap();
        let mail = mail_parser::MessageParser::default().parse(&eml).unwrap();
        assert_eq!(mail.subject(), Some("Switchboard Compliance Export: ops"));
        assert_eq!(
            mail.from().unwrap().first().unwrap().address(),
            Some("user-1@corp.example")
        );
        let text = mail.body_text(0).unwrap();
        assert!(text.contains("hi ünïcode"), "{text}");
        assert!(text.contains("@user-2 left the conversation"), "{text}");
        assert_eq!(mail.date().map(|d| d.to_timestamp()), Some(9));
    }
}

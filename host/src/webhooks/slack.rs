//! Slack's incoming-webhook payload, read the way Slack reads it, and written out as the
//! plain text a Switchboard message carries.
//!
//! Tools that post to Slack (Alertmanager, Grafana, CI systems, scripts) send `text`, and
//! often `attachments` (the older rich format) or `blocks` (Block Kit). Switchboard messages
//! are text, so attachments and blocks become their text fallback: titles, texts, fields and
//! footers, one per line, in the order Slack shows them. Slack's markup inside text is
//! translated: `<url|label>` links become `label (url)`, `<!here>`/`<!channel>`/
//! `<!everyone>` become `@room` (they notify everyone in Slack; here `@room` does), `<@name>`
//! becomes `@name`, and `&amp;`, `&lt;`, `&gt;` are unescaped. Fields Slack ignores for
//! webhooks (`channel`, `mrkdwn`, colours, buttons) are accepted and ignored, so a payload
//! that works with Slack works here.

use serde::Deserialize;
use serde_json::Value;

/// The payload of one post. Unknown fields are ignored, as Slack does.
#[derive(Debug, Default, Deserialize)]
pub struct Payload {
    #[serde(default)]
    pub text: Option<String>,
    /// Shown as the post's author instead of the hook's name.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub icon_url: Option<String>,
    #[serde(default)]
    pub icon_emoji: Option<String>,
    #[serde(default)]
    pub attachments: Option<Vec<Attachment>>,
    /// Block Kit blocks: read loosely (many kinds, nested), only their text is kept.
    #[serde(default)]
    pub blocks: Option<Vec<Value>>,
}

/// One legacy attachment.
#[derive(Debug, Default, Deserialize)]
pub struct Attachment {
    #[serde(default)]
    pub fallback: Option<String>,
    #[serde(default)]
    pub pretext: Option<String>,
    #[serde(default)]
    pub author_name: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub title_link: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub fields: Option<Vec<Field>>,
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub footer: Option<String>,
    /// Attachments may carry blocks too.
    #[serde(default)]
    pub blocks: Option<Vec<Value>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Field {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

impl Payload {
    /// The message text as Slack shows it: the blocks, or `text` when there are none (with
    /// blocks, Slack shows `text` only in notifications), then each attachment, separated by
    /// blank lines. Empty when the payload says nothing (Slack's `no_text`).
    pub fn render(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let blocks = render_blocks(self.blocks.iter().flatten());
        if !blocks.is_empty() {
            parts.push(blocks);
        } else if let Some(text) = self
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            parts.push(from_markup(text));
        }
        for attachment in self.attachments.iter().flatten() {
            let text = attachment.render();
            if !text.is_empty() {
                parts.push(text);
            }
        }
        parts.join("\n\n").trim().to_string()
    }
}

impl Attachment {
    fn render(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        push(&mut lines, self.pretext.as_deref());
        push(&mut lines, self.author_name.as_deref());
        match (self.title.as_deref(), self.title_link.as_deref()) {
            (Some(title), Some(link)) if !link.trim().is_empty() => {
                push(
                    &mut lines,
                    Some(&format!("{} ({})", title.trim(), link.trim())),
                );
            }
            (title, _) => push(&mut lines, title),
        }
        push(&mut lines, self.text.as_deref());
        for field in self.fields.iter().flatten() {
            match (field.title.as_deref(), field.value.as_deref()) {
                (Some(title), Some(value)) if !title.trim().is_empty() => {
                    push(
                        &mut lines,
                        Some(&format!("{}: {}", title.trim(), value.trim())),
                    );
                }
                (Some(title), None) => push(&mut lines, Some(title)),
                (_, value) => push(&mut lines, value),
            }
        }
        let blocks = render_blocks(self.blocks.iter().flatten());
        if !blocks.is_empty() {
            lines.push(blocks);
        }
        push(&mut lines, self.image_url.as_deref());
        push(&mut lines, self.footer.as_deref());
        if lines.is_empty() {
            // Nothing richer: the plain-text summary Slack shows where attachments cannot be.
            push(&mut lines, self.fallback.as_deref());
        }
        lines.join("\n")
    }
}

/// Add a text's plain form to `lines`, unless it is empty.
fn push(lines: &mut Vec<String>, text: Option<&str>) {
    if let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) {
        lines.push(from_markup(text));
    }
}

/// The text of Block Kit blocks, one block per line.
fn render_blocks<'a>(blocks: impl Iterator<Item = &'a Value>) -> String {
    let mut lines = Vec::new();
    for block in blocks {
        let mut texts = Vec::new();
        block_text(block, &mut texts, 0);
        let line = texts.join(" ").trim().to_string();
        if !line.is_empty() {
            lines.push(from_markup(&line));
        }
    }
    lines.join("\n")
}

/// Blocks nest (sections hold fields, rich text holds elements); deeper than this is not a
/// real message, and the walk stops instead of recursing without bound.
const MAX_BLOCK_DEPTH: usize = 16;

/// Collect the texts of one block: `text` objects (`{"type": "mrkdwn", "text": …}`), the
/// `text` of rich-text elements, links' `url`, images' `alt_text`, and the same inside
/// `fields` and `elements`.
fn block_text(value: &Value, out: &mut Vec<String>, depth: usize) {
    if depth > MAX_BLOCK_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            let kind = map.get("type").and_then(Value::as_str).unwrap_or_default();
            // Buttons and menus are things to click, not text of the message.
            if matches!(kind, "actions" | "button" | "static_select" | "overflow") {
                return;
            }
            if kind == "divider" {
                out.push("—".to_string());
                return;
            }
            match map.get("text") {
                Some(Value::String(text)) => out.push(text.clone()),
                Some(nested @ Value::Object(_)) => block_text(nested, out, depth + 1),
                _ => {}
            }
            if kind == "link"
                && let Some(url) = map.get("url").and_then(Value::as_str)
                && map.get("text").is_none()
            {
                out.push(url.to_string());
            }
            if kind == "image"
                && let Some(alt) = map.get("alt_text").and_then(Value::as_str)
            {
                out.push(alt.to_string());
            }
            for key in ["fields", "elements"] {
                if let Some(Value::Array(items)) = map.get(key) {
                    for item in items {
                        block_text(item, out, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                block_text(item, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// Slack's markup inside a text, as plain text (see the module header).
pub fn from_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        out.push_str(&special(&after[..close]));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    unescape(&out)
}

/// One `<…>` of Slack's markup.
fn special(inner: &str) -> String {
    let (target, label) = match inner.split_once('|') {
        Some((target, label)) => (target, Some(label)),
        None => (inner, None),
    };
    if let Some(command) = target.strip_prefix('!') {
        return match command {
            "here" | "channel" | "everyone" => "@room".to_string(),
            // `<!subteam^ID|@team>`, `<!date^…|fallback>`: the label is the readable part.
            _ => label.unwrap_or(command).to_string(),
        };
    }
    if let Some(user) = target.strip_prefix('@') {
        return format!("@{}", label.unwrap_or(user).trim_start_matches('@'));
    }
    if let Some(channel) = target.strip_prefix('#') {
        return format!("#{}", label.unwrap_or(channel).trim_start_matches('#'));
    }
    match label {
        Some(label) if !label.is_empty() && label != target => format!("{label} ({target})"),
        _ => target.to_string(),
    }
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(json: &str) -> String {
        serde_json::from_str::<Payload>(json)
            .expect("payload")
            .render()
    }

    #[test]
    fn markup_becomes_plain_text() {
        assert_eq!(
            from_markup("<!channel> see <https://ci.example/1|build 1> &amp; <https://x.example>"),
            "@room see build 1 (https://ci.example/1) & https://x.example"
        );
        assert_eq!(from_markup("<@alice> in <#C1|ops>"), "@alice in #ops");
        assert_eq!(from_markup("a < b &lt;tag&gt;"), "a < b <tag>");
        assert_eq!(from_markup("<!date^1392734382^{date}|Feb 18>"), "Feb 18");
    }

    #[test]
    fn attachments_render_as_their_text() {
        // Alertmanager's default Slack notification (slack_configs defaults).
        let text = render(
            r##"{"channel":"#alerts","username":"Alertmanager","attachments":[{
                "title":"[FIRING:1] InstanceDown (prod)","title_link":"https://am.example/#/alerts",
                "pretext":"","text":"Instance web-1 is down","fallback":"[FIRING:1] InstanceDown",
                "callback_id":"","footer":"","color":"danger","mrkdwn_in":["fallback","pretext","text"]}]}"##,
        );
        assert_eq!(
            text,
            "[FIRING:1] InstanceDown (prod) (https://am.example/#/alerts)\nInstance web-1 is down"
        );
        // Only a fallback: that is the text.
        assert_eq!(render(r#"{"attachments":[{"fallback":"f"}]}"#), "f");
        assert_eq!(
            render(
                r#"{"text":"t","attachments":[{"fields":[{"title":"env","value":"prod","short":true}]}]}"#
            ),
            "t\n\nenv: prod"
        );
    }

    #[test]
    fn blocks_render_as_their_text() {
        let text = render(
            r#"{"blocks":[
                {"type":"header","text":{"type":"plain_text","text":"Deploy done"}},
                {"type":"section","text":{"type":"mrkdwn","text":"*api* v2 by <@bob>"},
                 "fields":[{"type":"mrkdwn","text":"env: prod"}]},
                {"type":"divider"},
                {"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"Roll back"}}]},
                {"type":"rich_text","elements":[{"type":"rich_text_section","elements":[
                    {"type":"text","text":"see "},{"type":"link","url":"https://d.example"}]}]}
            ]}"#,
        );
        assert_eq!(
            text,
            "Deploy done\n*api* v2 by @bob env: prod\n—\nsee  https://d.example"
        );
    }

    #[test]
    fn with_blocks_text_is_only_the_notification() {
        // slackapi/slack-github-action's documented payload.
        let text = render(
            r#"{"text":"GitHub Action build result: success","blocks":[{"type":"section",
                "text":{"type":"mrkdwn","text":"GitHub Action build result: success\n<https://github.com/o/r/pull/1|PR #1>"}}]}"#,
        );
        assert_eq!(
            text,
            "GitHub Action build result: success\nPR #1 (https://github.com/o/r/pull/1)"
        );
    }

    #[test]
    fn nothing_to_say_is_empty() {
        assert_eq!(render("{}"), "");
        assert_eq!(
            render(r#"{"text":"  ","attachments":[{}],"blocks":[]}"#),
            ""
        );
    }

    #[test]
    fn deep_blocks_stop() {
        let mut block = serde_json::json!({"type": "text", "text": "deep"});
        for _ in 0..100 {
            block = serde_json::json!({"type": "rich_text_section", "elements": [block]});
        }
        let payload = Payload {
            blocks: Some(vec![block]),
            ..Payload::default()
        };
        assert_eq!(payload.render(), "");
    }
}

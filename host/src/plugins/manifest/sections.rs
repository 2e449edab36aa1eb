//! The manifest's capability sections — `[bot]`, `[http]`, `[rooms]` — and `commands`:
//! each parsed and checked against the granted capabilities, so a section without its
//! capability (or a capability without what it needs) is a load error, never ignored.

use serde::{Deserialize, Serialize};

use super::Capability;

/// `[bot]`: the plugin's bot user (capability `bot`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BotSection {
    name: Option<String>,
    display_name: Option<String>,
    max_depth: Option<u32>,
}

/// `[rooms]`: which rooms the `rooms` capability may look at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoomsSection {
    #[serde(default)]
    scope: RoomsScope,
}

/// The rooms a plugin with capability `rooms` may look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoomsScope {
    /// Rooms the plugin's bot is a member of (needs `bot`). Default.
    #[default]
    Member,
    /// Every room: the operator trusts the plugin with the whole directory.
    All,
}

pub(super) fn rooms_scope(
    capabilities: &[Capability],
    section: Option<RoomsSection>,
) -> Result<Option<RoomsScope>, String> {
    if !capabilities.contains(&Capability::Rooms) {
        return match section {
            Some(_) => Err("a [rooms] section needs the \"rooms\" capability".into()),
            None => Ok(None),
        };
    }
    let scope = section.map(|s| s.scope).unwrap_or_default();
    if scope == RoomsScope::Member && !capabilities.contains(&Capability::Bot) {
        return Err(
            "capability \"rooms\" is limited to the rooms of the plugin's bot: grant \"bot\" \
             too, or set [rooms] scope = \"all\""
                .into(),
        );
    }
    Ok(Some(scope))
}

/// `[http]`: what the plugin may reach (capability `http`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpSection {
    #[serde(default)]
    allow: Vec<String>,
    timeout_ms: Option<u64>,
    max_response_bytes: Option<usize>,
    requests_per_minute: Option<u32>,
    #[serde(default)]
    allow_private: bool,
}

/// One allow-list entry: exactly this scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOrigin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// The operator's HTTP policy for one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    pub allow: Vec<HttpOrigin>,
    pub timeout: std::time::Duration,
    pub max_response_bytes: usize,
    pub requests_per_minute: u32,
    /// Loopback, private and link-local targets are refused unless this is set.
    pub allow_private: bool,
}

impl HttpSettings {
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allow
            .iter()
            .any(|o| o.scheme == scheme && o.host == host && o.port == port)
    }
}

pub(super) fn http_settings(
    capabilities: &[Capability],
    section: Option<HttpSection>,
) -> Result<Option<HttpSettings>, String> {
    if !capabilities.contains(&Capability::Http) {
        return match section {
            Some(_) => Err("an [http] section needs the \"http\" capability".into()),
            None => Ok(None),
        };
    }
    let section = section.ok_or("capability \"http\" needs an [http] section with `allow`")?;
    if section.allow.is_empty() {
        return Err("[http] allow is empty: list the origins the plugin may reach".into());
    }
    let mut allow = Vec::new();
    for entry in &section.allow {
        let url = reqwest::Url::parse(entry).map_err(|e| format!("[http] allow {entry:?}: {e}"))?;
        let scheme = url.scheme().to_string();
        let host = url.host_str().map(str::to_ascii_lowercase);
        let port = url.port_or_known_default();
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        match (scheme.as_str(), host, port, bare) {
            ("http" | "https", Some(host), Some(port), true) => {
                allow.push(HttpOrigin { scheme, host, port });
            }
            _ => {
                return Err(format!(
                    "[http] allow {entry:?}: use scheme://host[:port] (http or https, no path)"
                ));
            }
        }
    }
    let timeout_ms = section
        .timeout_ms
        .unwrap_or(crate::plugins::capabilities::http::DEFAULT_TIMEOUT.as_millis() as u64);
    if timeout_ms == 0 || timeout_ms > 60_000 {
        return Err("[http] timeout_ms must be between 1 and 60000".into());
    }
    let max_response_bytes = section
        .max_response_bytes
        .unwrap_or(crate::plugins::capabilities::http::DEFAULT_MAX_RESPONSE_BYTES);
    let requests_per_minute = section
        .requests_per_minute
        .unwrap_or(crate::plugins::capabilities::http::DEFAULT_REQUESTS_PER_MINUTE);
    if max_response_bytes == 0 || requests_per_minute == 0 {
        return Err("[http] max_response_bytes and requests_per_minute must be positive".into());
    }
    Ok(Some(HttpSettings {
        allow,
        timeout: std::time::Duration::from_millis(timeout_ms),
        max_response_bytes,
        requests_per_minute,
        allow_private: section.allow_private,
    }))
}

/// How a plugin with capability `bot` appears and how far its posts may cascade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotSettings {
    /// The bot's user name (default: the plugin's name).
    pub name: String,
    pub display_name: String,
    /// A post produced by a hook that an event of bot depth `d` triggered has depth `d + 1`
    /// (a person's message has depth 0); posts deeper than this are dropped, so two bots
    /// answering each other stop after a few rounds.
    pub max_depth: u32,
}

/// Default for `[bot] max_depth`: a bot may answer a person, and another bot may react
/// to that answer, but not on and on.
pub const DEFAULT_BOT_MAX_DEPTH: u32 = 2;
/// Most commands one plugin may register.
const MAX_COMMANDS: usize = 32;

pub(super) fn bot_settings(
    plugin: &str,
    capabilities: &[Capability],
    section: Option<BotSection>,
) -> Result<Option<BotSettings>, String> {
    if !capabilities.contains(&Capability::Bot) {
        return match section {
            Some(_) => Err("a [bot] section needs the \"bot\" capability".into()),
            None => Ok(None),
        };
    }
    let section = section.unwrap_or(BotSection {
        name: None,
        display_name: None,
        max_depth: None,
    });
    let name = section.name.unwrap_or_else(|| plugin.to_string());
    // The same rule as for people's accounts: bots and people share one namespace.
    if !crate::names::is_user_name(&name) {
        return Err(format!(
            "bot name {name:?}: use 1-32 characters of [a-z0-9._-], starting with a letter or digit \
             (set [bot] name when the plugin's name does not fit)"
        ));
    }
    let display_name = section.display_name.unwrap_or_else(|| name.clone());
    if display_name.trim().is_empty() || display_name.chars().count() > 100 {
        return Err("[bot] display_name must have 1 to 100 characters".into());
    }
    let max_depth = section.max_depth.unwrap_or(DEFAULT_BOT_MAX_DEPTH);
    if max_depth == 0 || max_depth > 16 {
        return Err("[bot] max_depth must be between 1 and 16".into());
    }
    Ok(Some(BotSettings {
        name,
        display_name,
        max_depth,
    }))
}

pub(super) fn check_commands(mut commands: Vec<String>, bot: bool) -> Result<Vec<String>, String> {
    if commands.is_empty() {
        return Ok(commands);
    }
    if !bot {
        return Err(
            "commands are answered by the plugin's bot: grant the \"bot\" capability".into(),
        );
    }
    if commands.len() > MAX_COMMANDS {
        return Err(format!("at most {MAX_COMMANDS} commands per plugin"));
    }
    for name in &commands {
        if !crate::names::is_identifier(name, crate::names::MAX_COMMAND) {
            return Err(format!(
                "command {name:?}: use 1-32 characters of [a-z0-9_-], without the slash"
            ));
        }
    }
    commands.sort();
    let before = commands.len();
    commands.dedup();
    if commands.len() != before {
        return Err("a command is listed twice".into());
    }
    Ok(commands)
}

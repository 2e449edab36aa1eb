//! The operator's description of one plugin: `plugin.toml` in the plugin's directory.
//!
//! ```toml
//! name = "dlp"
//! version = "0.1.0"
//! component = "dlp.wasm"          # relative to this file
//! priority = 10                   # lower runs first
//! failure_policy = "fail-closed"  # or "fail-open"
//! hooks = ["message-pre-send"]    # optional: default = every hook the plugin implements
//! capabilities = ["log", "config", "kv"]
//! commands = ["echo"]             # `/echo ...` is routed to this plugin (needs `bot`)
//!
//! [bot]                           # with capability "bot": the plugin's bot user
//! name = "echo"                   # default: the plugin's name
//! display_name = "Echo bot"
//! max_depth = 2                   # bot-on-bot chains stop after this many posts
//!
//! [limits]                        # optional; defaults from [plugins.limits] in the config
//! timeout_ms = 50
//! memory_mib = 32
//!
//! [settings]                      # read by the plugin through the `config` capability
//! "action.card" = "redact"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PluginError;
use crate::config::LimitsConfig;
use crate::router::hooks::HookKind;

mod sections;

use sections::{
    BotSection, HttpSection, RoomsSection, bot_settings, check_commands, http_settings, rooms_scope,
};
pub use sections::{BotSettings, DEFAULT_BOT_MAX_DEPTH, HttpOrigin, HttpSettings, RoomsScope};

/// What happens to the message when a plugin traps, times out, exceeds a limit or returns
/// something invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Reject the message (code `plugin_failed`): nothing unchecked gets through. Default.
    #[default]
    FailClosed,
    /// Skip the plugin: the message goes on as if the plugin were not there.
    FailOpen,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailClosed => "fail-closed",
            Self::FailOpen => "fail-open",
        }
    }
}

/// A host capability the operator may grant to a plugin.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Log,
    Config,
    Kv,
    /// Since 0.2: the plugin's own bot user posts and replies in rooms.
    Bot,
    /// Since 0.2: outbound HTTP to the hosts in `[http] allow`.
    Http,
    /// Since 0.2: read-only room and user lookups, scoped by `[rooms] scope`.
    Rooms,
    /// Since 0.3: the server's governed language model (`[llm]` in the server's config).
    Llm,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Config => "config",
            Self::Kv => "kv",
            Self::Bot => "bot",
            Self::Http => "http",
            Self::Rooms => "rooms",
            Self::Llm => "llm",
        }
    }
}

/// Per-plugin limit overrides; an absent field takes the server-wide default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsOverride {
    pub timeout_ms: Option<u64>,
    pub wall_timeout_ms: Option<u64>,
    pub observer_timeout_ms: Option<u64>,
    pub max_concurrent_calls: Option<u32>,
    pub max_concurrent_calls_per_sender: Option<u32>,
    pub sender_time_ms_per_second: Option<u32>,
    pub log_lines_per_second: Option<u32>,
    pub log_bytes_per_second: Option<usize>,
    pub kv_max_bytes: Option<usize>,
    pub max_random_bytes: Option<u64>,
    pub memory_mib: Option<u64>,
    pub max_output_bytes: Option<usize>,
    pub kv_max_keys: Option<usize>,
    pub kv_max_key_bytes: Option<usize>,
    pub kv_max_value_bytes: Option<usize>,
}

impl LimitsOverride {
    pub fn apply(&self, defaults: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
            wall_timeout_ms: self.wall_timeout_ms.unwrap_or(defaults.wall_timeout_ms),
            observer_timeout_ms: self
                .observer_timeout_ms
                .unwrap_or(defaults.observer_timeout_ms),
            max_concurrent_calls: self
                .max_concurrent_calls
                .unwrap_or(defaults.max_concurrent_calls),
            max_concurrent_calls_per_sender: self
                .max_concurrent_calls_per_sender
                .unwrap_or(defaults.max_concurrent_calls_per_sender),
            sender_time_ms_per_second: self
                .sender_time_ms_per_second
                .unwrap_or(defaults.sender_time_ms_per_second),
            log_lines_per_second: self
                .log_lines_per_second
                .unwrap_or(defaults.log_lines_per_second),
            log_bytes_per_second: self
                .log_bytes_per_second
                .unwrap_or(defaults.log_bytes_per_second),
            kv_max_bytes: self.kv_max_bytes.unwrap_or(defaults.kv_max_bytes),
            max_random_bytes: self.max_random_bytes.unwrap_or(defaults.max_random_bytes),
            memory_mib: self.memory_mib.unwrap_or(defaults.memory_mib),
            max_output_bytes: self.max_output_bytes.unwrap_or(defaults.max_output_bytes),
            kv_max_keys: self.kv_max_keys.unwrap_or(defaults.kv_max_keys),
            kv_max_key_bytes: self.kv_max_key_bytes.unwrap_or(defaults.kv_max_key_bytes),
            kv_max_value_bytes: self
                .kv_max_value_bytes
                .unwrap_or(defaults.kv_max_value_bytes),
        }
    }
}

/// `plugin.toml` as written by the operator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    version: String,
    component: PathBuf,
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    failure_policy: FailurePolicy,
    hooks: Option<Vec<HookKind>>,
    #[serde(default)]
    capabilities: Vec<Capability>,
    #[serde(default)]
    commands: Vec<String>,
    bot: Option<BotSection>,
    http: Option<HttpSection>,
    rooms: Option<RoomsSection>,
    #[serde(default)]
    limits: LimitsOverride,
    #[serde(default)]
    settings: BTreeMap<String, toml::Value>,
}

fn default_true() -> bool {
    true
}

/// A validated manifest, with the component path resolved and settings flattened to strings.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub component: PathBuf,
    pub enabled: bool,
    pub priority: i32,
    pub failure_policy: FailurePolicy,
    /// `None`: every hook the component implements.
    pub hooks: Option<Vec<HookKind>>,
    pub capabilities: Vec<Capability>,
    /// Command names (without the slash) routed to this plugin's `command` hook.
    pub commands: Vec<String>,
    /// `Some` exactly when `bot` is granted.
    pub bot: Option<BotSettings>,
    /// `Some` exactly when `http` is granted.
    pub http: Option<HttpSettings>,
    /// `Some` exactly when `rooms` is granted.
    pub rooms: Option<RoomsScope>,
    pub limits: LimitsConfig,
    pub settings: BTreeMap<String, String>,
}

impl Manifest {
    /// Read and validate `path` (a `plugin.toml`).
    pub fn load(path: &Path, defaults: &LimitsConfig) -> Result<Self, PluginError> {
        let text = std::fs::read_to_string(path).map_err(|e| PluginError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, dir, defaults).map_err(|message| PluginError::Manifest {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse manifest text; `dir` is where relative component paths start.
    pub fn parse(text: &str, dir: &Path, defaults: &LimitsConfig) -> Result<Self, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| e.to_string())?;
        if !valid_name(&raw.name) {
            return Err(format!(
                "invalid plugin name {:?}: use 1-64 characters of [a-z0-9_-]",
                raw.name
            ));
        }
        let limits = raw.limits.apply(defaults);
        limits.validate()?;
        let mut settings = BTreeMap::new();
        for (key, value) in raw.settings {
            let flat = flatten_setting(&value).ok_or_else(|| {
                format!("setting {key:?}: use a string, number, bool or array of strings")
            })?;
            settings.insert(key, flat);
        }
        let mut capabilities = raw.capabilities;
        capabilities.sort();
        capabilities.dedup();
        let bot = bot_settings(&raw.name, &capabilities, raw.bot)?;
        let commands = check_commands(raw.commands, bot.is_some())?;
        let http = http_settings(&capabilities, raw.http)?;
        let rooms = rooms_scope(&capabilities, raw.rooms)?;
        let hooks = raw.hooks.map(|mut hooks| {
            hooks.sort();
            hooks.dedup();
            hooks
        });
        Ok(Self {
            name: raw.name,
            version: raw.version,
            component: dir.join(raw.component),
            enabled: raw.enabled,
            priority: raw.priority,
            failure_policy: raw.failure_policy,
            hooks,
            capabilities,
            commands,
            bot,
            http,
            rooms,
            limits,
            settings,
        })
    }

    pub fn grants(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

fn valid_name(name: &str) -> bool {
    crate::names::is_identifier(name, crate::names::MAX_PLUGIN_NAME)
}

/// Settings reach the plugin as strings: scalars as written, arrays of strings one per line.
fn flatten_setting(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => {
            let parts: Option<Vec<&str>> = items.iter().map(toml::Value::as_str).collect();
            parts.map(|p| p.join("\n"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_manifest() {
        let text = r#"
            name = "dlp"
            version = "1.2.3"
            component = "dlp.wasm"
            priority = -5
            failure_policy = "fail-open"
            hooks = ["message-pre-send", "on-login"]
            capabilities = ["kv", "log", "kv"]
            [limits]
            timeout_ms = 20
            [settings]
            "action.card" = "redact"
            max = 3
            words = ["a", "b"]
        "#;
        let m = Manifest::parse(text, Path::new("/p"), &LimitsConfig::default()).expect("parses");
        assert_eq!(m.component, Path::new("/p/dlp.wasm"));
        assert_eq!(m.failure_policy, FailurePolicy::FailOpen);
        assert_eq!(m.capabilities, vec![Capability::Log, Capability::Kv]);
        assert_eq!(m.limits.timeout_ms, 20);
        assert_eq!(m.limits.memory_mib, LimitsConfig::default().memory_mib);
        assert_eq!(m.settings["max"], "3");
        assert_eq!(m.settings["words"], "a\nb");
        assert!(m.enabled);
    }

    #[test]
    fn http_needs_an_allow_list_of_bare_origins() {
        let d = LimitsConfig::default();
        let base = "name = \"x\"\nversion = \"0.1.0\"\ncomponent = \"x.wasm\"\n\
                    capabilities = [\"http\"]\n";
        let ok = format!(
            "{base}[http]\nallow = [\"https://Hooks.Example.com\", \"http://127.0.0.1:8080\"]\n"
        );
        let m = Manifest::parse(&ok, Path::new("."), &d).expect("parses");
        let http = m.http.expect("http settings");
        assert!(http.allows("https", "hooks.example.com", 443));
        assert!(http.allows("http", "127.0.0.1", 8080));
        assert!(!http.allows("http", "hooks.example.com", 80));
        assert!(!http.allow_private);
        for bad in [
            String::new(),
            "[http]\nallow = []\n".to_string(),
            "[http]\nallow = [\"https://a.example/path\"]\n".to_string(),
            "[http]\nallow = [\"ftp://a.example\"]\n".to_string(),
            "[http]\nallow = [\"https://a.example\"]\ntimeout_ms = 0\n".to_string(),
        ] {
            assert!(
                Manifest::parse(&format!("{base}{bad}"), Path::new("."), &d).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_bot_gets_its_name_and_depth() {
        let text = "name = \"echo-bot\"\nversion = \"0.1.0\"\ncomponent = \"x.wasm\"\n\
                    capabilities = [\"bot\"]\ncommands = [\"echo\", \"ask\"]\n";
        let m = Manifest::parse(text, Path::new("."), &LimitsConfig::default()).expect("parses");
        let bot = m.bot.expect("bot settings");
        assert_eq!(
            (bot.name.as_str(), bot.max_depth),
            ("echo-bot", DEFAULT_BOT_MAX_DEPTH)
        );
        assert_eq!(m.commands, vec!["ask".to_string(), "echo".to_string()]);
    }

    #[test]
    fn defaults_are_fail_closed_with_no_capabilities() {
        let text = "name = \"x\"\nversion = \"0.1.0\"\ncomponent = \"x.wasm\"\n";
        let m = Manifest::parse(text, Path::new("."), &LimitsConfig::default()).expect("parses");
        assert_eq!(m.failure_policy, FailurePolicy::FailClosed);
        assert!(m.capabilities.is_empty());
        assert!(m.hooks.is_none());
    }

    #[test]
    fn rejects_unknown_fields_bad_names_and_zero_limits() {
        let d = LimitsConfig::default();
        let base = "version = \"0.1.0\"\ncomponent = \"x.wasm\"\n";
        assert!(
            Manifest::parse(
                &format!("name = \"x\"\n{base}color = 1\n"),
                Path::new("."),
                &d
            )
            .is_err()
        );
        assert!(Manifest::parse(&format!("name = \"../x\"\n{base}"), Path::new("."), &d).is_err());
        assert!(
            Manifest::parse(
                &format!("name = \"x\"\n{base}capabilities = [\"telepathy\"]\n"),
                Path::new("."),
                &d
            )
            .is_err()
        );
        // Commands need a bot; a [bot] section needs the capability; bad command names.
        for extra in [
            "commands = [\"echo\"]\n",
            "[bot]\nname = \"b\"\n",
            "capabilities = [\"bot\"]\ncommands = [\"/echo\"]\n",
            "capabilities = [\"bot\"]\ncommands = [\"e\", \"e\"]\n",
            "capabilities = [\"bot\"]\n[bot]\nmax_depth = 0\n",
        ] {
            let text = format!("name = \"x\"\n{base}{extra}");
            assert!(
                Manifest::parse(&text, Path::new("."), &d).is_err(),
                "{extra}"
            );
        }
        let zero = format!("name = \"x\"\n{base}[limits]\ntimeout_ms = 0\n");
        assert!(Manifest::parse(&zero, Path::new("."), &d).is_err());
    }
}

//! `switchboard plugin test`: run one hook of one component, without a server, through the
//! real runtime, and report the outcome and the time taken. The fast loop for plugin authors,
//! and a way for compliance teams to check a DLP rule set in CI.
//!
//! Nothing here imitates the server: the component is installed into a temporary plugins
//! directory with a manifest, loaded by [`PluginHost::load`] over a temporary SQLite store,
//! and called through the router's [`Hooks`] trait, so limits, failure policies and the
//! checks on what a plugin returns are the server's own.
//!
//! Input, one JSON object per hook (every field optional unless noted):
//!
//! | hook | fields (defaults) |
//! |---|---|
//! | `message-pre-send` | `body` (required), `room_id` (1), `sender_id` (1), `sender_name` ("alice"), `client_msg_id` ("test-1"), `editing` (null), `metadata` ({}) |
//! | `message-delivered` | `room`: {`id` (1), `kind` ("group"), `name` ("general")}, `event`: {`id` (1), `seq` (1), `kind` ("message"), `sender_id` (1), `target` (null), `body` (null), `metadata` ({}), `created_at` (0)} |
//! | `on-login` | `id` (1), `name` ("alice"), `display_name` (the name), `is_admin` (false), `is_bot` (false) |
//! | `on-connect` | as `on-login`, plus `session_id` ("session-1") |
//!
//! [`Hooks`]: switchboard::router::hooks::Hooks

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::instrument::WithSubscriber as _;

use switchboard::config::PluginsConfig;
use switchboard::plugins::{PluginCounters, PluginError, PluginHost};
use switchboard::router::hooks::HookKind;
use switchboard::router::hooks::{
    AuthOutcome, AuthRequest, BotPost, CommandCall, CommandOutcome, Decision, Hooks as _, PreSend,
    PreSendOutcome,
};
use switchboard::store::{Event, EventKind, Metadata, Room, RoomKind, User};

/// The most calls `--repeat` may ask for.
pub const MAX_REPEAT: u32 = 1_000_000;
/// The largest input file read.
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct TestOptions {
    pub component: PathBuf,
    pub hook: HookKind,
    pub input: PathBuf,
    /// `[settings]` for the plugin; a key given twice becomes lines of one value (as a TOML
    /// array of strings would).
    pub settings: Vec<(String, String)>,
    /// The operator's manifest to use (capabilities, limits, settings); its `component` is
    /// replaced by [`TestOptions::component`]. Without one, `log`, `config` and `kv` are
    /// granted.
    pub manifest: Option<PathBuf>,
    /// Calls to make; the outcome reported is the first one's.
    pub repeat: u32,
    /// Where compiled components are kept between runs (the [`CACHE_ENTRIES`] most recently
    /// used); `None` compiles from scratch every time.
    pub cache_dir: Option<PathBuf>,
}

/// Compiled components `plugin test` keeps in its cache.
pub const CACHE_ENTRIES: usize = 16;

/// `plugin test`'s default cache: `$XDG_CACHE_HOME/switchboard/plugin-test`, or
/// `~/.cache/switchboard/plugin-test`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("switchboard").join("plugin-test"))
}

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a valid {hook} input: {message}", path.display())]
    Input {
        path: PathBuf,
        hook: HookKind,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("--repeat must be between 1 and {MAX_REPEAT}")]
    Repeat,
    #[error("plugin {plugin} does not implement {hook} (it is called for: {implemented})")]
    NotImplemented {
        plugin: String,
        hook: HookKind,
        /// The hooks it is called for, comma-separated.
        implemented: String,
    },
    #[error("loading the plugin: {0}")]
    Load(PluginError),
    #[error("the temporary store: {0}")]
    Store(String),
}

/// What one hook call decided, as the server would see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// `message-pre-send`: stored as sent.
    Continue,
    /// `message-pre-send`: stored with this body and metadata.
    Modify {
        body: String,
        metadata: Metadata,
    },
    /// `message-pre-send`: refused.
    Reject {
        code: String,
        reason: String,
    },
    Allow,
    Deny {
        reason: String,
    },
    /// `message-delivered`: the plugin ran (observers return nothing).
    Observed,
    /// `authenticate`: the plugin vouches for this user.
    Accept {
        user_name: String,
    },
    /// `authenticate`: the plugin refused the credential (`reject` above is pre-send's).
    Refuse {
        reason: String,
    },
    /// `authenticate`: the plugin does not handle this method; the next one would be asked.
    Defer,
    /// `command`: what the plugin's bot posted in the room, and what only the sender sees.
    Command {
        posts: Vec<String>,
        private: Option<String>,
    },
    /// `command`: the plugin failed; the sender would see this reason.
    CommandFailed {
        reason: String,
    },
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub plugin: String,
    pub hook: HookKind,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The first call failed (`trap`, `timeout` or `limit`); the outcome is then what the
    /// plugin's failure policy made of it.
    pub failure: Option<String>,
    /// The failed call's detail: the runtime's error and what the guest wrote before it
    /// (a panic message, a traceback).
    pub failure_detail: Option<String>,
    /// Compiling the component and creating its first instance.
    pub load_ms: f64,
    /// The first hook call, including the plugin's own set-up (`Plugin::new`).
    pub first_call_ms: f64,
    /// Calls after the first one, and their average.
    pub warm_calls: u32,
    pub warm_average_ms: Option<f64>,
    /// Of the warm calls, how many failed.
    pub warm_failures: u64,
    /// Of the warm calls, how many decided differently from the first.
    pub warm_different: u32,
}

/// `KEY=VALUE`, for `--config`.
pub fn parse_setting(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got {arg:?}")),
    }
}

/// A hook's name as written in manifests and WIT, for `--hook`.
pub fn parse_hook(arg: &str) -> Result<HookKind, String> {
    SUPPORTED
        .into_iter()
        .find(|h| h.as_str() == arg)
        .ok_or_else(|| {
            let names: Vec<_> = SUPPORTED.iter().map(|h| h.as_str()).collect();
            format!("unknown hook {arg:?}: use one of {}", names.join(", "))
        })
}

/// The hooks `plugin test` can run on its own.
const SUPPORTED: [HookKind; 6] = [
    HookKind::MessagePreSend,
    HookKind::MessageDelivered,
    HookKind::OnLogin,
    HookKind::OnConnect,
    HookKind::Command,
    HookKind::Authenticate,
];

/// Run the hook as `options` say. Must be called inside a tokio runtime.
pub async fn run(options: &TestOptions) -> Result<Report, StandaloneError> {
    if options.repeat == 0 || options.repeat > MAX_REPEAT {
        return Err(StandaloneError::Repeat);
    }
    // Bad input fails before anything is compiled.
    let input = Input::read(&options.input, options.hook)?;
    let component =
        std::path::absolute(&options.component).map_err(|source| StandaloneError::Io {
            path: options.component.clone(),
            source,
        })?;
    if let Err(source) = std::fs::metadata(&component) {
        return Err(StandaloneError::Io {
            path: component,
            source,
        });
    }
    let temp = tempfile::tempdir().map_err(|source| StandaloneError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let plugin_dir = temp.path().join("plugins").join("plugin");
    std::fs::create_dir_all(&plugin_dir).map_err(|source| StandaloneError::Io {
        path: plugin_dir.clone(),
        source,
    })?;
    let command = match &input {
        Input::Command(c) => Some(c.command.as_str()),
        _ => None,
    };
    let manifest = manifest_text(&component, options, command)?;
    let manifest_path = plugin_dir.join("plugin.toml");
    std::fs::write(&manifest_path, manifest).map_err(|source| StandaloneError::Io {
        path: manifest_path.clone(),
        source,
    })?;

    let server_config = switchboard::config::Config {
        data_dir: temp.path().join("data"),
        ..switchboard::config::Config::default()
    };
    let store = switchboard::open_store(&server_config)
        .await
        .map_err(|e| StandaloneError::Store(format!("{e:#}")))?;
    let config = PluginsConfig {
        dir: Some(temp.path().join("plugins")),
        // One plugin, called from one task: a small pool. The compiled component is kept
        // between runs (a Python or JavaScript one takes seconds to compile).
        pool_instances: 4,
        compile_cache: options.cache_dir.is_some(),
        compile_cache_dir: options.cache_dir.clone(),
        ..PluginsConfig::default()
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let started = Instant::now();
    let host = PluginHost::load(
        &config,
        &server_config.data_dir,
        store.clone(),
        &mut registry,
        None,
    )
    .await
    .map_err(StandaloneError::Load)?;
    let load = started.elapsed();
    let command = match &input {
        Input::Command(c) => Some(prepare_command(&host, store.as_ref(), c).await?),
        _ => None,
    };
    let result = call_all(&host, options, &input, command.as_ref(), load).await;
    host.shutdown().await;
    if let Some(dir) = &options.cache_dir {
        let _ = switchboard::plugins::prune_cache_to_recent(dir, CACHE_ENTRIES);
    }
    result
}

/// A `command` call ready to make: the sender and the plugin's bot share a room (the bot
/// answers there), and the bot's posts are read from the outbox the router would drain.
struct PreparedCommand {
    call: CommandCall,
    posts: std::sync::Mutex<tokio::sync::mpsc::Receiver<BotPost>>,
}

async fn prepare_command(
    host: &Arc<PluginHost>,
    store: &dyn switchboard::store::Store,
    input: &CommandInput,
) -> Result<PreparedCommand, StandaloneError> {
    let failed = |e: switchboard::store::StoreError| StandaloneError::Store(e.to_string());
    let bot = host
        .statuses()
        .into_iter()
        .find_map(|s| s.bot_user)
        .ok_or_else(|| StandaloneError::Store("the plugin has no bot user (grant `bot`)".into()))?;
    let sender = store
        .create_user(switchboard::store::NewUser {
            name: input.sender_name.clone(),
            display_name: input.sender_name.clone(),
            password_hash: None,
            is_admin: false,
            is_bot: false,
        })
        .await
        .map_err(failed)?;
    let room = store
        .create_room(
            switchboard::store::NewRoom {
                kind: switchboard::store::RoomKind::Group,
                name: Some("plugin-test".into()),
                topic: None,
                created_by: sender.id,
            },
            &[
                (sender.id, switchboard::store::Role::Owner),
                (bot, switchboard::store::Role::Member),
            ],
        )
        .await
        .map_err(failed)?;
    let posts = host
        .take_bot_outbox()
        .ok_or_else(|| StandaloneError::Store("the bot outbox is already taken".into()))?;
    Ok(PreparedCommand {
        call: CommandCall {
            name: input.command.clone(),
            args: input.args.clone(),
            room_id: room.id,
            sender,
            depth: 0,
        },
        posts: std::sync::Mutex::new(posts),
    })
}

async fn call_all(
    host: &Arc<PluginHost>,
    options: &TestOptions,
    input: &Input,
    command: Option<&PreparedCommand>,
    load: Duration,
) -> Result<Report, StandaloneError> {
    let status = host.statuses().into_iter().next();
    let plugin = status.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    if !host.implements(options.hook) {
        return Err(StandaloneError::NotImplemented {
            plugin,
            hook: options.hook,
            implemented: match status {
                Some(s) if !s.hooks.is_empty() => s
                    .hooks
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "no hook".into(),
            },
        });
    }
    let counters = || {
        host.statuses()
            .into_iter()
            .next()
            .map(|s| s.counters)
            .unwrap_or_default()
    };

    let before = counters();
    let started = Instant::now();
    let outcome = call_once(host, input, command).await;
    let first_call = started.elapsed();
    let failure = failure_kind(&before, &counters());
    let failure_detail = failure
        .as_ref()
        .and_then(|_| host.statuses().into_iter().next())
        .and_then(|s| s.last_failure)
        .map(|f| f.detail);

    let warm_calls = options.repeat - 1;
    let before = counters();
    let started = Instant::now();
    // Warm calls run without a log subscriber: the first call showed what the plugin logs,
    // and a thousand repeats of it would bury the report (failures are still counted).
    let warm_different = async {
        let mut different = 0;
        for _ in 0..warm_calls {
            if call_once(host, input, command).await != outcome {
                different += 1;
            }
        }
        different
    }
    .with_subscriber(tracing::subscriber::NoSubscriber::default())
    .await;
    let warm = started.elapsed();
    let warm_failures = counters().failures - before.failures;
    Ok(Report {
        plugin,
        hook: options.hook,
        outcome,
        failure,
        failure_detail,
        load_ms: millis(load),
        first_call_ms: millis(first_call),
        warm_calls,
        warm_average_ms: (warm_calls > 0).then(|| millis(warm / warm_calls)),
        warm_failures,
        warm_different,
    })
}

async fn call_once(
    host: &Arc<PluginHost>,
    input: &Input,
    command: Option<&PreparedCommand>,
) -> Outcome {
    match input {
        Input::Command(_) => {
            let Some(prepared) = command else {
                return Outcome::CommandFailed {
                    reason: "the command was not prepared".into(),
                };
            };
            let outcome = host.command(prepared.call.clone()).await;
            // The plugin's posts are in the outbox as soon as its call returned.
            let mut posts = Vec::new();
            let mut queue = prepared
                .posts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            while let Ok(post) = queue.try_recv() {
                posts.push(match post.write {
                    switchboard::router::hooks::BotWrite::Message { body, .. } => body,
                    switchboard::router::hooks::BotWrite::Reaction { message, emoji } => {
                        format!("[reacts {emoji} to message {message}]")
                    }
                    // No model here: show what the plugin asked for.
                    switchboard::router::hooks::BotWrite::Assistant(job) => {
                        format!("[asks the language model, answer to {:?}]", job.delivery)
                    }
                });
            }
            match outcome {
                CommandOutcome::Handled { private, .. } => Outcome::Command { posts, private },
                CommandOutcome::Failed { reason, .. } => Outcome::CommandFailed { reason },
                CommandOutcome::Unknown => Outcome::CommandFailed {
                    reason: "no plugin registered this command".into(),
                },
            }
        }
        Input::PreSend(msg) => match host.message_pre_send(msg.clone()).await {
            PreSendOutcome::Continue {
                modified: false, ..
            } => Outcome::Continue,
            PreSendOutcome::Continue { body, metadata, .. } => Outcome::Modify { body, metadata },
            PreSendOutcome::Reject { code, reason, .. } => Outcome::Reject { code, reason },
        },
        Input::Delivered(room, event) => {
            // `Hooks::message_delivered` only queues the event for the observer task; call
            // the plugin the way that task does, so the call is timed and awaited here.
            host.observe_now(room, event).await;
            Outcome::Observed
        }
        Input::Authenticate(request) => match host.authenticate(request.clone()).await {
            AuthOutcome::Accept { user_name, .. } => Outcome::Accept { user_name },
            AuthOutcome::Reject { reason, .. } => Outcome::Refuse { reason },
            AuthOutcome::Unhandled => Outcome::Defer,
        },
        Input::Login(user) => decision(host.on_login(user).await),
        Input::Connect(user, session) => decision(host.on_connect(user, session).await),
    }
}

fn decision(decision: Decision) -> Outcome {
    match decision {
        Decision::Allow => Outcome::Allow,
        Decision::Deny { reason, .. } => Outcome::Deny { reason },
    }
}

fn failure_kind(before: &PluginCounters, after: &PluginCounters) -> Option<String> {
    if after.failures == before.failures {
        return None;
    }
    Some(
        if after.timeouts > before.timeouts {
            "timeout"
        } else if after.limit_exceeded > before.limit_exceeded {
            "limit"
        } else {
            "trap"
        }
        .to_string(),
    )
}

/// Milliseconds, to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// The manifest the component is loaded with: the operator's (component replaced, forced
/// enabled, `--config` settings merged in), or a generated one granting every capability.
/// `command`: the command the plugin must register (the generated manifest grants `bot`
/// and registers it; an operator's `--manifest` must do so itself).
fn manifest_text(
    component: &Path,
    options: &TestOptions,
    command: Option<&str>,
) -> Result<String, StandaloneError> {
    let mut table = match &options.manifest {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| StandaloneError::Io {
                path: path.clone(),
                source,
            })?;
            let mut table: toml::Table =
                toml::from_str(&text).map_err(|e| StandaloneError::Manifest {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            table.remove("enabled");
            table
        }
        None => {
            let mut table = toml::Table::new();
            table.insert("name".into(), name_from(component).into());
            table.insert("version".into(), "0.0.0".into());
            let mut caps: Vec<toml::Value> =
                ["log", "config", "kv"].map(toml::Value::from).to_vec();
            if let Some(command) = command {
                caps.push("bot".into());
                table.insert("commands".into(), toml::Value::Array(vec![command.into()]));
            }
            table.insert("capabilities".into(), toml::Value::Array(caps));
            table
        }
    };
    table.insert("component".into(), component.display().to_string().into());
    let mut given: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, value) in &options.settings {
        given.entry(key).or_default().push(value);
    }
    if !given.is_empty() {
        let settings = table
            .entry("settings")
            .or_insert_with(|| toml::Table::new().into());
        let Some(settings) = settings.as_table_mut() else {
            return Err(StandaloneError::Manifest {
                path: options.manifest.clone().unwrap_or_default(),
                message: "`settings` must be a table".into(),
            });
        };
        for (key, values) in given {
            settings.insert(key.to_string(), values.join("\n").into());
        }
    }
    toml::to_string(&table).map_err(|e| StandaloneError::Manifest {
        path: options.manifest.clone().unwrap_or_default(),
        message: e.to_string(),
    })
}

/// A valid plugin name from the component's file name (`my_filter.wasm` -> `my_filter`).
fn name_from(component: &Path) -> String {
    let stem = component
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => c,
            _ => '-',
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "plugin".into()
    } else {
        name
    }
}

/// A parsed input file.
enum Input {
    PreSend(PreSend),
    Delivered(Room, Event),
    Login(User),
    Connect(User, String),
    Authenticate(AuthRequest),
    /// Made into a [`CommandCall`] once the bot and the sender exist (see `prepare`).
    Command(CommandInput),
}

/// `command` input: `/NAME ARGS` typed by `sender_name`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandInput {
    command: String,
    #[serde(default)]
    args: String,
    #[serde(default = "alice")]
    sender_name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthInput {
    method: String,
    credential: String,
    #[serde(default)]
    username: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreSendInput {
    body: String,
    #[serde(default = "one")]
    room_id: i64,
    #[serde(default = "one")]
    sender_id: i64,
    #[serde(default = "alice")]
    sender_name: String,
    #[serde(default = "client_msg_id")]
    client_msg_id: String,
    #[serde(default)]
    editing: Option<i64>,
    #[serde(default)]
    thread_root: Option<i64>,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct DeliveredInput {
    room: RoomInput,
    event: EventInput,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RoomInput {
    id: i64,
    kind: RoomKind,
    name: Option<String>,
}

impl Default for RoomInput {
    fn default() -> Self {
        Self {
            id: 1,
            kind: RoomKind::Group,
            name: Some("general".into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct EventInput {
    id: i64,
    seq: i64,
    kind: EventKind,
    sender_id: i64,
    target: Option<i64>,
    body: Option<String>,
    metadata: Metadata,
    created_at: i64,
}

impl Default for EventInput {
    fn default() -> Self {
        Self {
            id: 1,
            seq: 1,
            kind: EventKind::Message,
            sender_id: 1,
            target: None,
            body: None,
            metadata: Metadata::new(),
            created_at: 0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct UserInput {
    id: i64,
    name: String,
    display_name: Option<String>,
    is_admin: bool,
    is_bot: bool,
    /// `on-connect` only.
    session_id: Option<String>,
}

impl Default for UserInput {
    fn default() -> Self {
        Self {
            id: 1,
            name: alice(),
            display_name: None,
            is_admin: false,
            is_bot: false,
            session_id: None,
        }
    }
}

fn one() -> i64 {
    1
}
fn alice() -> String {
    "alice".into()
}
fn client_msg_id() -> String {
    "test-1".into()
}

impl Input {
    fn read(path: &Path, hook: HookKind) -> Result<Self, StandaloneError> {
        use std::io::Read as _;
        let io = |source| StandaloneError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_INPUT_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        let bad = |message: String| StandaloneError::Input {
            path: path.to_path_buf(),
            hook,
            message,
        };
        if text.len() as u64 > MAX_INPUT_BYTES {
            return Err(bad(format!("larger than {MAX_INPUT_BYTES} bytes")));
        }
        let json = |e: serde_json::Error| bad(e.to_string());
        Ok(match hook {
            // `parse_hook` does not offer them: a file hook needs a file's bytes served
            // while it runs, which only a server does (tests/e2e/file_plugins.rs).
            HookKind::FilePreUpload | HookKind::FilePreDownload => {
                return Err(bad("file hooks are tested through a running server".into()));
            }
            HookKind::Command => {
                let c: CommandInput = serde_json::from_str(&text).map_err(json)?;
                if !switchboard::names::is_identifier(&c.command, switchboard::names::MAX_COMMAND) {
                    return Err(bad(
                        "`command` must be 1-32 characters of [a-z0-9_-], without the slash".into(),
                    ));
                }
                Input::Command(c)
            }
            HookKind::Authenticate => {
                let a: AuthInput = serde_json::from_str(&text).map_err(json)?;
                Input::Authenticate(AuthRequest {
                    method: a.method,
                    username: a.username,
                    credential: a.credential,
                })
            }
            HookKind::MessagePreSend => {
                let m: PreSendInput = serde_json::from_str(&text).map_err(json)?;
                if m.body.is_empty() {
                    return Err(bad("`body` must not be empty".into()));
                }
                Input::PreSend(PreSend {
                    room_id: m.room_id,
                    sender_id: m.sender_id,
                    sender_name: m.sender_name,
                    client_msg_id: m.client_msg_id,
                    editing: m.editing,
                    thread_root: m.thread_root,
                    body: m.body,
                    metadata: m.metadata,
                    // What a server with the default configuration stores.
                    max_body_bytes: switchboard::config::Limits::default().max_message_bytes,
                    depth: 0,
                })
            }
            HookKind::MessageDelivered => {
                let d: DeliveredInput = serde_json::from_str(&text).map_err(json)?;
                let room = Room {
                    id: d.room.id,
                    kind: d.room.kind,
                    name: d.room.name,
                    topic: None,
                    created_by: d.event.sender_id,
                    created_at: d.event.created_at,
                    last_seq: d.event.seq,
                    members_may_pin: false,
                };
                let e = d.event;
                let event = Event {
                    id: e.id,
                    room_id: room.id,
                    seq: e.seq,
                    kind: e.kind,
                    sender_id: e.sender_id,
                    target: e.target,
                    body: e.body,
                    metadata: e.metadata,
                    client_msg_id: None,
                    created_at: e.created_at,
                    edited_at: None,
                    deleted: false,
                    thread_root: None,
                    also_to_room: false,
                    mentions: Vec::new(),
                    mentions_room: false,
                    thread: None,
                    reactions: Vec::new(),
                };
                Input::Delivered(room, event)
            }
            HookKind::OnLogin | HookKind::OnConnect => {
                let u: UserInput = serde_json::from_str(&text).map_err(json)?;
                let user = User {
                    id: u.id,
                    display_name: u.display_name.unwrap_or_else(|| u.name.clone()),
                    name: u.name,
                    is_admin: u.is_admin,
                    is_compliance: false,
                    is_bot: u.is_bot,
                    active: true,
                    created_at: 0,
                };
                match (hook, u.session_id) {
                    (HookKind::OnConnect, session) => {
                        Input::Connect(user, session.unwrap_or_else(|| "session-1".into()))
                    }
                    (_, Some(_)) => {
                        return Err(bad("`session_id` belongs to on-connect input".into()));
                    }
                    (_, None) => Input::Login(user),
                }
            }
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plugin   {}", self.plugin)?;
        writeln!(f, "hook     {}", self.hook)?;
        if let Some(kind) = &self.failure {
            writeln!(f, "FAILED   {kind}")?;
            for line in self.failure_detail.iter().flat_map(|d| d.lines()) {
                writeln!(f, "  | {line}")?;
            }
            writeln!(f, "under its failure policy the server would do this:")?;
        }
        match &self.outcome {
            Outcome::Continue => writeln!(f, "outcome  continue (unchanged)")?,
            Outcome::Modify { body, metadata } => {
                writeln!(f, "outcome  modify")?;
                writeln!(f, "  body     {body:?}")?;
                for (key, value) in metadata {
                    writeln!(f, "  metadata {key} = {value:?}")?;
                }
            }
            Outcome::Reject { code, reason } => {
                writeln!(f, "outcome  reject")?;
                writeln!(f, "  code     {code}")?;
                writeln!(f, "  reason   {reason}")?;
            }
            Outcome::Allow => writeln!(f, "outcome  allow")?,
            Outcome::Deny { reason } => {
                writeln!(f, "outcome  deny")?;
                writeln!(f, "  reason   {reason}")?;
            }
            Outcome::Observed => writeln!(f, "outcome  observed")?,
            Outcome::Accept { user_name } => {
                writeln!(f, "outcome  accept")?;
                writeln!(f, "  user     {user_name}")?;
            }
            Outcome::Refuse { reason } => {
                writeln!(f, "outcome  refuse")?;
                writeln!(f, "  reason   {reason}")?;
            }
            Outcome::Defer => writeln!(f, "outcome  defer (the method is not this plugin's)")?,
            Outcome::Command { posts, private } => {
                writeln!(f, "outcome  command handled")?;
                for post in posts {
                    writeln!(f, "  posted   {post:?}")?;
                }
                if let Some(private) = private {
                    writeln!(f, "  private  {private:?}")?;
                }
            }
            Outcome::CommandFailed { reason } => {
                writeln!(f, "outcome  command failed")?;
                writeln!(f, "  reason   {reason}")?;
            }
        }
        write!(
            f,
            "time     load {:.1} ms (compile + first instance); first call {:.3} ms",
            self.load_ms, self.first_call_ms
        )?;
        if let Some(avg) = self.warm_average_ms {
            write!(f, "; {} warm calls: {avg:.3} ms average", self.warm_calls)?;
        }
        writeln!(f)?;
        if self.warm_failures > 0 || self.warm_different > 0 {
            writeln!(
                f,
                "note     of the warm calls, {} failed and {} decided differently from the first",
                self.warm_failures, self.warm_different
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(hook: HookKind, json: &str) -> Result<Input, StandaloneError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.json");
        std::fs::write(&path, json).unwrap();
        Input::read(&path, hook)
    }

    #[test]
    fn inputs_take_defaults_and_refuse_typos() {
        match read(HookKind::MessagePreSend, r#"{"body": "hi"}"#).unwrap() {
            Input::PreSend(m) => {
                assert_eq!((m.room_id, m.sender_name.as_str()), (1, "alice"));
                assert_eq!(m.body, "hi");
            }
            _ => panic!("pre-send input"),
        }
        for bad in [
            "",
            "{",
            r#"{"bdy": "hi"}"#,
            r#"{"body": ""}"#,
            r#"{"body": "hi", "room": 1}"#,
        ] {
            let err = read(HookKind::MessagePreSend, bad).err().unwrap();
            assert!(matches!(err, StandaloneError::Input { .. }), "{bad}: {err}");
        }
        assert!(matches!(
            read(HookKind::OnConnect, "{}").unwrap(),
            Input::Connect(_, s) if s == "session-1"
        ));
        assert!(read(HookKind::OnLogin, r#"{"session_id": "x"}"#).is_err());
        assert!(matches!(
            read(HookKind::MessageDelivered, r#"{"room": {"kind": "direct"}}"#).unwrap(),
            Input::Delivered(r, _) if r.kind == RoomKind::Direct
        ));
        assert!(read(HookKind::MessageDelivered, r#"{"room": {"kind": "x"}}"#).is_err());
    }

    #[test]
    fn settings_and_hooks_parse() {
        assert_eq!(
            parse_setting("action.card=redact").unwrap(),
            ("action.card".to_string(), "redact".to_string())
        );
        assert_eq!(parse_setting("k=a=b").unwrap().1, "a=b");
        assert!(parse_setting("novalue").is_err());
        assert!(parse_setting("=x").is_err());
        assert_eq!(parse_hook("on-login").unwrap(), HookKind::OnLogin);
        assert!(
            parse_hook("on_login")
                .unwrap_err()
                .contains("message-pre-send")
        );
    }

    #[test]
    fn generated_manifests_are_valid_and_merge_settings() {
        let options = |manifest: Option<PathBuf>| TestOptions {
            component: PathBuf::from("/x/My Filter.wasm"),
            hook: HookKind::MessagePreSend,
            input: PathBuf::new(),
            settings: vec![
                ("block".into(), "a".into()),
                ("block".into(), "b".into()),
                ("mode".into(), "strict".into()),
            ],
            manifest,
            repeat: 1,
            cache_dir: None,
        };
        let limits = switchboard::config::LimitsConfig::default();
        let component = Path::new("/x/My Filter.wasm");
        let text = manifest_text(component, &options(None), None).unwrap();
        let m = switchboard::plugins::Manifest::parse(&text, Path::new("/"), &limits).unwrap();
        assert_eq!(m.name, "my-filter");
        assert_eq!(m.component, component);
        assert_eq!(m.capabilities.len(), 3);
        assert_eq!(m.settings["block"], "a\nb");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plugin.toml");
        std::fs::write(
            &path,
            "name = \"dlp\"\nversion = \"1\"\ncomponent = \"elsewhere.wasm\"\nenabled = false\n\
             capabilities = [\"config\"]\n[settings]\nmode = \"lax\"\nother = \"kept\"\n",
        )
        .unwrap();
        let text = manifest_text(component, &options(Some(path)), None).unwrap();
        let m = switchboard::plugins::Manifest::parse(&text, Path::new("/"), &limits).unwrap();
        assert_eq!((m.name.as_str(), m.enabled), ("dlp", true));
        assert_eq!(m.component, component);
        assert_eq!(m.capabilities.len(), 1);
        assert_eq!(
            (m.settings["mode"].as_str(), m.settings["other"].as_str()),
            ("strict", "kept")
        );
    }
}

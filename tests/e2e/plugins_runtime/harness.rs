//! Building plugin directories and loading a real `PluginHost` over them.

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use switchboard::config::PluginsConfig;
use switchboard::plugins::PluginHost;
use switchboard::router::hooks::{PreSend, PreSendOutcome};
use switchboard::store::{Metadata, Store};

use super::memory_store::memory_store;
use crate::support::TestServer;
use crate::wasm_build::{plugin_wasm, workspace_root};

/// One plugin to install: its manifest, written out as TOML.
pub struct Spec {
    pub name: String,
    pub krate: &'static str,
    pub priority: i32,
    pub policy: &'static str,
    pub capabilities: &'static [&'static str],
    pub hooks: Option<&'static [&'static str]>,
    /// Extra TOML lines for `[limits]`.
    pub limits: String,
    /// Extra TOML lines for `[settings]`.
    pub settings: String,
    /// Extra top-level TOML lines (e.g. `commands = [...]`).
    pub top: String,
    /// TOML lines for a `[bot]` section (written only when not empty).
    pub bot: String,
    /// Whole extra tables (e.g. `[http]` and its keys).
    pub tables: String,
}

impl Spec {
    pub fn new(name: &str, krate: &'static str) -> Self {
        Self {
            name: name.to_string(),
            krate,
            priority: 0,
            policy: "fail-closed",
            capabilities: &[],
            hooks: None,
            limits: String::new(),
            settings: String::new(),
            top: String::new(),
            bot: String::new(),
            tables: String::new(),
        }
    }
    pub fn tables(mut self, t: &str) -> Self {
        self.tables = t.to_string();
        self
    }
    pub fn top(mut self, t: &str) -> Self {
        self.top = t.to_string();
        self
    }
    pub fn bot(mut self, b: &str) -> Self {
        self.bot = b.to_string();
        self
    }
    pub fn priority(mut self, p: i32) -> Self {
        self.priority = p;
        self
    }
    pub fn policy(mut self, p: &'static str) -> Self {
        self.policy = p;
        self
    }
    pub fn caps(mut self, c: &'static [&'static str]) -> Self {
        self.capabilities = c;
        self
    }
    pub fn hooks(mut self, h: &'static [&'static str]) -> Self {
        self.hooks = Some(h);
        self
    }
    pub fn limits(mut self, l: &str) -> Self {
        self.limits = l.to_string();
        self
    }
    pub fn settings(mut self, s: &str) -> Self {
        self.settings = s.to_string();
        self
    }

    pub fn manifest(&self) -> String {
        let list = |items: &[&str]| {
            items
                .iter()
                .map(|i| format!("{i:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = format!(
            "name = {:?}\nversion = \"0.1.0\"\ncomponent = {:?}\npriority = {}\n\
             failure_policy = {:?}\ncapabilities = [{}]\n",
            self.name,
            plugin_wasm(self.krate),
            self.priority,
            self.policy,
            list(self.capabilities),
        );
        if let Some(hooks) = self.hooks {
            text.push_str(&format!("hooks = [{}]\n", list(hooks)));
        }
        text.push_str(&self.top);
        text.push('\n');
        if !self.bot.is_empty() {
            text.push_str(&format!("[bot]\n{}\n", self.bot));
        }
        text.push_str(&self.tables);
        text.push('\n');
        text.push_str(&format!(
            "[limits]\n{}\n[settings]\n{}\n",
            self.limits, self.settings
        ));
        text
    }
}

/// A loaded host and what it was loaded from.
pub struct Loaded {
    pub host: Arc<PluginHost>,
    pub store: Arc<dyn Store>,
    pub registry: Registry,
    _dir: tempfile::TempDir,
}

/// Where compiled components are cached: shared by all tests, so each component is compiled
/// by cranelift once per machine rather than once per test.
pub fn cache_dir() -> PathBuf {
    workspace_root()
        .join("target")
        .join("wasm")
        .join("test-data")
}

pub async fn load(specs: Vec<Spec>) -> Loaded {
    load_with(specs, PluginsConfig::default(), memory_store().await).await
}

pub async fn load_with(
    specs: Vec<Spec>,
    mut config: PluginsConfig,
    store: Arc<dyn Store>,
) -> Loaded {
    let dir = tempfile::tempdir().expect("tempdir");
    for spec in &specs {
        let plugin_dir = dir.path().join(&spec.name);
        std::fs::create_dir_all(&plugin_dir).expect("mkdir");
        std::fs::write(plugin_dir.join("plugin.toml"), spec.manifest()).expect("write manifest");
    }
    config.dir = Some(dir.path().to_path_buf());
    let mut registry = Registry::default();
    let dyn_store: Arc<dyn Store> = store.clone();
    let host = PluginHost::load(&config, &cache_dir(), dyn_store, &mut registry, None)
        .await
        .unwrap_or_else(|e| panic!("loading plugins: {e}"));
    Loaded {
        host,
        store,
        registry,
        _dir: dir,
    }
}

pub fn msg(body: &str) -> PreSend {
    PreSend {
        room_id: 7,
        sender_id: 42,
        sender_name: "alice".into(),
        client_msg_id: "c1".into(),
        editing: None,
        thread_root: None,
        body: body.into(),
        metadata: Metadata::new(),
        max_body_bytes: 64 * 1024,
        depth: 0,
    }
}

/// The body and metadata of a `Continue`, or a panic naming the reject.
pub fn continued(outcome: PreSendOutcome) -> (String, Metadata, bool) {
    match outcome {
        PreSendOutcome::Continue {
            body,
            metadata,
            modified,
            ..
        } => (body, metadata, modified),
        other => panic!("expected the message to continue, got {other:?}"),
    }
}

/// The plugin, code and reason of a `Reject`.
pub fn rejected(outcome: PreSendOutcome) -> (String, String, String) {
    match outcome {
        PreSendOutcome::Reject {
            plugin,
            code,
            reason,
        } => (plugin, code, reason),
        other => panic!("expected a reject, got {other:?}"),
    }
}

pub fn metrics_text(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("encode metrics");
    out
}

pub fn status<'a>(
    statuses: &'a [switchboard::plugins::PluginStatus],
    name: &str,
) -> &'a switchboard::plugins::PluginStatus {
    statuses
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no plugin {name}"))
}

/// A temporary plugins directory holding one sub-directory with a `plugin.toml` per spec.
pub fn write_plugins(specs: &[Spec]) -> tempfile::TempDir {
    let plugins = tempfile::tempdir().unwrap();
    for spec in specs {
        let dir = plugins.path().join(&spec.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("plugin.toml"), spec.manifest()).unwrap();
    }
    plugins
}

/// A real server whose plugins directory holds `specs`.
pub async fn server_with(specs: Vec<Spec>) -> (TestServer, tempfile::TempDir) {
    server_tweaked(specs, |_| {}).await
}

/// The same, with more configuration.
pub async fn server_tweaked(
    specs: Vec<Spec>,
    tweak: impl FnOnce(&mut switchboard::config::Config),
) -> (TestServer, tempfile::TempDir) {
    let plugins = write_plugins(&specs);
    let path = plugins.path().to_path_buf();
    let server = TestServer::start_with(move |c| {
        c.plugins.dir = Some(path);
        tweak(c);
    })
    .await;
    (server, plugins)
}

//! Managing plugins while the server runs: the operations behind the admin API and the
//! `switchboard plugin` CLI — list, install, enable, disable, reload, change settings,
//! uninstall.
//!
//! The plugins directory stays the one source of truth: every change is written to the
//! plugin's `plugin.toml` (through `toml_edit`, so the operator's comments and layout
//! survive) and a restart comes back to the same state. A change that needs new code
//! compiles and warms the new version off the hot path first; only then is a new chain
//! snapshot swapped in. Messages already in the chain finish on the snapshot they started
//! with — the old version filters them — and every message after the swap meets the new
//! version, so a reload neither loses, duplicates nor lets through a message unfiltered.
//! The old version is dropped once the last call on it is done ("drained").
//!
//! A change that fails (bad manifest, component that does not compile or link, bad
//! signature) leaves both the directory and the running chain as they were.
//!
//! Every operation, done or failed, is written to the audit log with the acting operator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::{Chain, PluginStatus};
use super::instance::LoadedPlugin;
use super::manifest::{Capability, FailurePolicy, Manifest, RoomsScope};
use super::{PluginError, PluginHost, lock};
use crate::audit::{self, Action, Actor, Subject};
use crate::config::LimitsConfig;
use crate::router::hooks::HookKind;

/// Settings one change may set, and how large a key or value may be.
const MAX_SETTINGS: usize = 256;
const MAX_SETTING_KEY: usize = 128;
const MAX_SETTING_VALUE: usize = 64 * 1024;
/// Largest `plugin.toml` an install accepts.
const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// Why a management operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("no plugins directory is configured (set [plugins] dir); plugins cannot be managed")]
    NoPluginsDir,
    #[error("no plugin named {0:?} is installed")]
    NotFound(String),
    #[error("a plugin named {0:?} is already installed; install it with replace to upgrade it")]
    Exists(String),
    /// The request itself is malformed (manifest, setting, component file name...).
    #[error("{0}")]
    Invalid(String),
    /// The plugin could not be loaded (compile, link, signature, kv); nothing changed.
    #[error(transparent)]
    Load(#[from] PluginError),
    /// The plugins directory could not be read or written.
    #[error("plugins directory: {0}")]
    Io(String),
}

/// One installed plugin: what its manifest says, and how it is doing if it is loaded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginView {
    pub name: String,
    pub version: String,
    /// The manifest's `enabled`: whether the plugin is loaded at start and after changes.
    pub enabled: bool,
    /// Whether a version of it is in the running chain right now.
    pub loaded: bool,
    pub priority: i32,
    pub failure_policy: FailurePolicy,
    /// The manifest's hook restriction (`None`: every hook the component implements).
    pub declared_hooks: Option<Vec<HookKind>>,
    pub capabilities: Vec<Capability>,
    /// What the capabilities are limited to, so a security team sees exactly what the
    /// plugin may reach.
    pub grants: GrantDetails,
    pub settings: BTreeMap<String, String>,
    pub limits: LimitsConfig,
    /// The component's file name inside the plugin's directory.
    pub component: String,
    /// Runtime status and counters (totals across reloads) while loaded.
    pub status: Option<PluginStatus>,
}

/// The manifest's scoping of its capabilities.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct GrantDetails {
    /// `http`: the allowed origins (`scheme://host:port`).
    pub http_allow: Vec<String>,
    /// `http`: loopback and private ranges allowed too.
    pub http_allow_private: bool,
    pub http_requests_per_minute: Option<u32>,
    /// `rooms`: `member` (the bot's rooms) or `all`.
    pub rooms_scope: Option<RoomsScope>,
    /// `bot`: the bot's user name.
    pub bot: Option<String>,
    /// Commands routed to the plugin (without the slash).
    pub commands: Vec<String>,
}

impl GrantDetails {
    fn of(manifest: &Manifest) -> Self {
        let http = manifest.http.as_ref();
        Self {
            http_allow: http
                .map(|h| {
                    h.allow
                        .iter()
                        .map(|o| format!("{}://{}:{}", o.scheme, o.host, o.port))
                        .collect()
                })
                .unwrap_or_default(),
            http_allow_private: http.is_some_and(|h| h.allow_private),
            http_requests_per_minute: http.map(|h| h.requests_per_minute),
            rooms_scope: manifest.rooms,
            bot: manifest.bot.as_ref().map(|b| b.name.clone()),
            commands: manifest.commands.clone(),
        }
    }
}

/// Every installed plugin, plus directories whose manifest could not be read (shown rather
/// than hidden, so an operator sees a hand-edit that broke a plugin).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginView>,
    pub problems: Vec<ManifestProblem>,
    /// Whether instances come from wasmtime's pooling allocator.
    pub pooling_allocator: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ManifestProblem {
    pub directory: String,
    pub error: String,
}

/// What an operation did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    pub plugin: PluginView,
    /// The version that was running before (`None`: it was not loaded).
    pub previous_version: Option<String>,
    /// Time spent compiling and warming the new version (off the hot path).
    pub load_ms: u64,
    /// Whether every call on the old version finished within `drain_timeout_ms` (if not,
    /// they still finish on it; the report just does not wait longer).
    pub drained: bool,
}

/// A change to an installed plugin's manifest; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginChange {
    pub enabled: Option<bool>,
    pub priority: Option<i32>,
    pub failure_policy: Option<FailurePolicy>,
    /// Settings to set (a string, number, bool or list of strings) or remove (`null`).
    pub settings: Option<BTreeMap<String, Option<serde_json::Value>>>,
}

/// A plugin upload.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// The `plugin.toml` text; its `component` must be a plain file name.
    pub manifest: String,
    pub component: Vec<u8>,
    /// A detached signature, stored as `<component>.sig` next to the component.
    pub signature: Option<Vec<u8>>,
    /// Upgrade the plugin if one of that name is installed (otherwise that is an error).
    pub replace: bool,
}

impl PluginHost {
    /// Every installed plugin (loaded or not), in chain order, then disabled ones by name.
    pub async fn list_plugins(&self) -> Result<PluginList, ManageError> {
        let (found, problems) = scan(self.plugins_dir()?, &self.config.limits)?;
        let statuses = self.statuses();
        let mut plugins: Vec<PluginView> = found
            .into_iter()
            .map(|(_, manifest)| view(manifest, &statuses))
            .collect();
        plugins.sort_by(|a, b| {
            (!a.loaded, a.priority, &a.name).cmp(&(!b.loaded, b.priority, &b.name))
        });
        Ok(PluginList {
            plugins,
            problems,
            pooling_allocator: self.pooling_allocator(),
        })
    }

    pub async fn plugin(&self, name: &str) -> Result<PluginView, ManageError> {
        let (_, manifest) = self.find(name)?;
        Ok(view(manifest, &self.statuses()))
    }

    /// Load the plugin's current files again (new component, edited manifest) and swap
    /// the new version in. Also the way to close an open circuit breaker.
    pub async fn reload_plugin(
        &self,
        name: &str,
        actor: Actor<'_>,
    ) -> Result<ReloadReport, ManageError> {
        let _guard = self.admin.lock().await;
        let result = self.reload_locked(name).await;
        self.audit_result(actor, Action::PluginReload, name, &result)
            .await;
        result
    }

    pub async fn set_plugin_enabled(
        &self,
        name: &str,
        enabled: bool,
        actor: Actor<'_>,
    ) -> Result<ReloadReport, ManageError> {
        let change = PluginChange {
            enabled: Some(enabled),
            ..PluginChange::default()
        };
        let action = if enabled {
            Action::PluginEnable
        } else {
            Action::PluginDisable
        };
        let _guard = self.admin.lock().await;
        let result = self.change_locked(name, &change).await;
        self.audit_result(actor, action, name, &result).await;
        result
    }

    /// Change priority, failure policy, `enabled` or settings: written to `plugin.toml`,
    /// then the plugin is reloaded with it. If the reload fails the file is put back.
    pub async fn change_plugin(
        &self,
        name: &str,
        change: &PluginChange,
        actor: Actor<'_>,
    ) -> Result<ReloadReport, ManageError> {
        let _guard = self.admin.lock().await;
        let result = self.change_locked(name, change).await;
        let mut detail = serde_json::json!({});
        // Setting values can be secrets (a webhook's HMAC key): the audit names keys only.
        if let Some(settings) = &change.settings {
            detail["settings_changed"] = settings.keys().cloned().collect::<Vec<_>>().into();
        }
        if let Some(priority) = change.priority {
            detail["priority"] = priority.into();
        }
        if let Some(policy) = change.failure_policy {
            detail["failure_policy"] = policy.as_str().into();
        }
        if let Some(enabled) = change.enabled {
            detail["enabled"] = enabled.into();
        }
        self.audit(actor, Action::PluginChange, name, &result, detail)
            .await;
        result
    }

    /// Install a new plugin (or upgrade one, with `replace`): the files are staged, moved
    /// into place, loaded and only then swapped in; if loading fails the previous files
    /// come back and the running chain never changed.
    pub async fn install_plugin(
        &self,
        request: InstallRequest,
        actor: Actor<'_>,
    ) -> Result<ReloadReport, ManageError> {
        let _guard = self.admin.lock().await;
        let digest = hex::encode(Sha256::digest(&request.component));
        // The plugin's name, once the upload's manifest parsed: what the audit record is
        // about, even when the install fails later.
        let mut name = String::new();
        let result = self.install_locked(request, &mut name).await;
        if result.is_ok() {
            self.prune_compile_cache().await;
        }
        let detail = serde_json::json!({ "sha256": digest });
        self.audit(actor, Action::PluginInstall, &name, &result, detail)
            .await;
        result
    }

    /// Take the plugin out of the chain and delete its directory. Its `kv` data stays in
    /// the store: installing a plugin of the same name again finds it.
    pub async fn uninstall_plugin(
        &self,
        name: &str,
        actor: Actor<'_>,
    ) -> Result<ReloadReport, ManageError> {
        let _guard = self.admin.lock().await;
        let result = self.uninstall_locked(name).await;
        if result.is_ok() {
            self.prune_compile_cache().await;
        }
        self.audit_result(actor, Action::PluginUninstall, name, &result)
            .await;
        result
    }

    // ------------------------------------------------------------------ internals

    fn plugins_dir(&self) -> Result<&Path, ManageError> {
        self.config.dir.as_deref().ok_or(ManageError::NoPluginsDir)
    }

    /// The plugin's manifest file and its parsed contents.
    fn find(&self, name: &str) -> Result<(PathBuf, Manifest), ManageError> {
        let (found, problems) = scan(self.plugins_dir()?, &self.config.limits)?;
        if let Some(hit) = found.into_iter().find(|(_, m)| m.name == name) {
            return Ok(hit);
        }
        // A plugin whose manifest no longer parses is still "there": say why it cannot
        // be managed rather than that it does not exist.
        if let Some(problem) = problems.iter().find(|p| p.directory == name) {
            return Err(ManageError::Invalid(problem.error.clone()));
        }
        Err(ManageError::NotFound(name.to_string()))
    }

    async fn reload_locked(&self, name: &str) -> Result<ReloadReport, ManageError> {
        let (_, manifest) = self.find(name)?;
        self.activate(manifest).await
    }

    async fn change_locked(
        &self,
        name: &str,
        change: &PluginChange,
    ) -> Result<ReloadReport, ManageError> {
        let (path, _) = self.find(name)?;
        let before = read_text(&path)?;
        let after = edit_manifest(&before, change)?;
        // Validate the edited manifest exactly as a restart would read it, before it
        // reaches the disk.
        let dir = path.parent().unwrap_or(Path::new("."));
        let manifest = Manifest::parse(&after, dir, &self.config.limits).map_err(|e| {
            ManageError::Invalid(format!("the change makes plugin.toml invalid: {e}"))
        })?;
        write_atomically(&path, after.as_bytes())?;
        match self.activate(manifest).await {
            Ok(report) => Ok(report),
            Err(e) => {
                write_atomically(&path, before.as_bytes())?;
                Err(e)
            }
        }
    }

    async fn install_locked(
        &self,
        request: InstallRequest,
        name_out: &mut String,
    ) -> Result<ReloadReport, ManageError> {
        let dir = self.plugins_dir()?.to_path_buf();
        if request.manifest.len() > MAX_MANIFEST_BYTES {
            return Err(ManageError::Invalid(format!(
                "plugin.toml is larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        if request.component.len() > self.config.max_component_bytes {
            return Err(ManageError::Invalid(format!(
                "the component is larger than plugins.max_component_bytes ({})",
                self.config.max_component_bytes
            )));
        }
        let parsed = Manifest::parse(&request.manifest, Path::new(""), &self.config.limits)
            .map_err(|e| ManageError::Invalid(format!("plugin.toml: {e}")))?;
        let file_name = plain_file_name(&parsed.component).ok_or_else(|| {
            ManageError::Invalid(
                "plugin.toml: `component` must be a plain file name for an upload".into(),
            )
        })?;
        let name = parsed.name.clone();
        name_out.clone_from(&name);
        let existing = match self.find(&name) {
            Ok((path, _)) => Some(path),
            Err(ManageError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        if existing.is_some() && !request.replace {
            return Err(ManageError::Exists(name));
        }
        let target = match &existing {
            Some(path) => path.parent().unwrap_or(&dir).to_path_buf(),
            None => {
                let target = dir.join(&name);
                if target.exists() {
                    return Err(ManageError::Invalid(format!(
                        "{} exists but holds no plugin.toml for {name:?}; remove it first",
                        target.display()
                    )));
                }
                target
            }
        };
        // Dot-directories are never read as plugins (see `scan`), so a crash half-way
        // leaves nothing a restart would load.
        let staging = dir.join(format!(".staging-{name}"));
        let backup = dir.join(format!(".previous-{name}"));
        remove_dir_if_present(&staging)?;
        remove_dir_if_present(&backup)?;
        std::fs::create_dir_all(&staging).map_err(io)?;
        std::fs::write(staging.join("plugin.toml"), &request.manifest).map_err(io)?;
        std::fs::write(staging.join(&file_name), &request.component).map_err(io)?;
        if let Some(signature) = &request.signature {
            std::fs::write(staging.join(format!("{file_name}.sig")), signature).map_err(io)?;
        }
        if existing.is_some() {
            std::fs::rename(&target, &backup).map_err(io)?;
        }
        std::fs::rename(&staging, &target).map_err(io)?;
        let restore = || -> Result<(), ManageError> {
            remove_dir_if_present(&target)?;
            if backup.exists() {
                std::fs::rename(&backup, &target).map_err(io)?;
            }
            Ok(())
        };
        let manifest = match Manifest::load(&target.join("plugin.toml"), &self.config.limits) {
            Ok(m) => m,
            Err(e) => {
                restore()?;
                return Err(e.into());
            }
        };
        match self.activate(manifest).await {
            Ok(report) => {
                remove_dir_if_present(&backup)?;
                Ok(report)
            }
            Err(e) => {
                restore()?;
                Err(e)
            }
        }
    }

    async fn uninstall_locked(&self, name: &str) -> Result<ReloadReport, ManageError> {
        let (path, manifest) = self.find(name)?;
        let (old, drained) = self.swap(name, None).await?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        remove_dir_if_present(&dir)?;
        let mut plugin = view(manifest, &[]);
        plugin.enabled = false;
        Ok(ReloadReport {
            plugin,
            previous_version: old.map(|p| p.manifest.version.clone()),
            load_ms: 0,
            drained,
        })
    }

    /// Bring the running chain in line with `manifest`: load and swap in a new version if
    /// it is enabled, take the plugin out if not.
    async fn activate(&self, manifest: Manifest) -> Result<ReloadReport, ManageError> {
        let name = manifest.name.clone();
        let started = Instant::now();
        let new = if manifest.enabled {
            Some(self.load_plugin(manifest.clone()).await?)
        } else {
            None
        };
        let load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (old, drained) = self.swap(&name, new).await?;
        if let Some(old) = &old {
            tracing::info!(
                plugin = %name,
                from = %old.manifest.version,
                to = %manifest.version,
                enabled = manifest.enabled,
                load_ms,
                drained,
                "plugin swapped"
            );
        }
        Ok(ReloadReport {
            plugin: view(manifest, &self.statuses()),
            previous_version: old.map(|p| p.manifest.version.clone()),
            load_ms,
            drained,
        })
    }

    /// Replace (or remove) the plugin called `name` in the chain, then wait for calls on
    /// the old version to finish and fold its counters into the plugin's totals. A chain the
    /// new version cannot join (a command another plugin registered) is refused before
    /// anything is swapped.
    async fn swap(
        &self,
        name: &str,
        new: Option<Arc<LoadedPlugin>>,
    ) -> Result<(Option<Arc<LoadedPlugin>>, bool), ManageError> {
        let current = self.chain.snapshot();
        let old = current.plugins().iter().find(|p| p.name() == name).cloned();
        let mut plugins: Vec<_> = current
            .plugins()
            .iter()
            .filter(|p| p.name() != name)
            .cloned()
            .collect();
        plugins.extend(new);
        drop(current);
        let chain = Chain::new(plugins)?;
        // Only management operations replace the chain, and they hold `admin`: nothing
        // else can swap between the snapshot above and this.
        drop(self.chain.replace(chain));
        let Some(old) = old else {
            return Ok((None, true));
        };
        let drained = drain(&old, Duration::from_millis(self.config.drain_timeout_ms)).await;
        let counters = PluginStatus::of(&old).counters;
        lock(&self.retired)
            .entry(name.to_string())
            .or_default()
            .add(&counters);
        Ok((Some(old), drained))
    }

    async fn audit_result(
        &self,
        actor: Actor<'_>,
        action: Action,
        name: &str,
        result: &Result<ReloadReport, ManageError>,
    ) {
        self.audit(actor, action, name, result, serde_json::json!({}))
            .await;
    }

    async fn audit(
        &self,
        actor: Actor<'_>,
        action: Action,
        name: &str,
        result: &Result<ReloadReport, ManageError>,
        mut detail: serde_json::Value,
    ) {
        let action = match result {
            Ok(report) => {
                detail["version"] = report.plugin.version.clone().into();
                if let Some(previous) = &report.previous_version {
                    detail["previous_version"] = previous.clone().into();
                }
                detail["loaded"] = report.plugin.loaded.into();
                action.as_str().to_string()
            }
            Err(e) => {
                detail["error"] = e.to_string().into();
                action.failed()
            }
        };
        audit::record_as(
            self.store.as_ref(),
            actor,
            &action,
            Subject::Plugin(name),
            detail,
        )
        .await;
    }
}

/// Wait until no chain snapshot holds `old` any more (every call on it has returned).
async fn drain(old: &Arc<LoadedPlugin>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if Arc::strong_count(old) == 1 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn view(manifest: Manifest, statuses: &[PluginStatus]) -> PluginView {
    let grants = GrantDetails::of(&manifest);
    let status = statuses.iter().find(|s| s.name == manifest.name).cloned();
    let component = manifest
        .component
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    PluginView {
        loaded: status.is_some(),
        // A loaded plugin reports the version that is actually running.
        version: status
            .as_ref()
            .map_or(manifest.version.clone(), |s| s.version.clone()),
        name: manifest.name,
        enabled: manifest.enabled,
        priority: manifest.priority,
        failure_policy: manifest.failure_policy,
        grants,
        declared_hooks: manifest.hooks,
        capabilities: manifest.capabilities,
        settings: manifest.settings,
        limits: manifest.limits,
        component,
        status,
    }
}

/// The manifests found (with their paths), and the directories whose manifest is broken.
pub(crate) type Scan = (Vec<(PathBuf, Manifest)>, Vec<ManifestProblem>);

/// Every plugin directory under `dir` (dot-directories are staging areas and skipped):
/// the ones that parse, and the ones that do not.
pub(crate) fn scan(dir: &Path, defaults: &LimitsConfig) -> Result<Scan, ManageError> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let manifest = entry.path().join("plugin.toml");
        if !hidden && manifest.is_file() {
            paths.push(manifest);
        }
    }
    paths.sort();
    let mut found: Vec<(PathBuf, Manifest)> = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        let directory = path
            .parent()
            .and_then(Path::file_name)
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        match Manifest::load(&path, defaults) {
            Ok(m) if found.iter().any(|(_, f)| f.name == m.name) => {
                problems.push(ManifestProblem {
                    directory,
                    error: format!("a second plugin named {:?}", m.name),
                })
            }
            Ok(m) => found.push((path, m)),
            Err(e) => problems.push(ManifestProblem {
                directory,
                error: e.to_string(),
            }),
        }
    }
    Ok((found, problems))
}

/// Apply `change` to manifest text, keeping everything else as the operator wrote it.
fn edit_manifest(text: &str, change: &PluginChange) -> Result<String, ManageError> {
    use toml_edit::{DocumentMut, Item, value};
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| ManageError::Invalid(format!("plugin.toml does not parse: {e}")))?;
    if let Some(enabled) = change.enabled {
        doc["enabled"] = value(enabled);
    }
    if let Some(priority) = change.priority {
        doc["priority"] = value(i64::from(priority));
    }
    if let Some(policy) = change.failure_policy {
        doc["failure_policy"] = value(policy.as_str());
    }
    if let Some(settings) = &change.settings {
        if settings.len() > MAX_SETTINGS {
            return Err(ManageError::Invalid(format!(
                "at most {MAX_SETTINGS} settings per change"
            )));
        }
        let table = doc
            .entry("settings")
            .or_insert(toml_edit::table())
            .as_table_like_mut()
            .ok_or_else(|| ManageError::Invalid("plugin.toml: `settings` is not a table".into()))?;
        for (key, new) in settings {
            if key.is_empty() || key.len() > MAX_SETTING_KEY {
                return Err(ManageError::Invalid(format!(
                    "setting keys are 1-{MAX_SETTING_KEY} bytes"
                )));
            }
            match new {
                None => {
                    table.remove(key);
                }
                Some(json) => {
                    let value = Item::Value(setting_value(key, json)?);
                    // Replace only the value of an existing key, so the comment above it
                    // (part of the key's decoration) stays.
                    match table.get_mut(key) {
                        Some(item) => *item = value,
                        None => {
                            table.insert(key, value);
                        }
                    }
                }
            }
        }
    }
    Ok(doc.to_string())
}

/// A JSON setting as TOML: the same shapes a hand-written manifest may use.
fn setting_value(key: &str, json: &serde_json::Value) -> Result<toml_edit::Value, ManageError> {
    use serde_json::Value as J;
    let invalid = || {
        ManageError::Invalid(format!(
            "setting {key:?}: use a string, number, bool or list of strings of at most \
             {MAX_SETTING_VALUE} bytes"
        ))
    };
    if json.to_string().len() > MAX_SETTING_VALUE {
        return Err(invalid());
    }
    Ok(match json {
        J::String(s) => s.as_str().into(),
        J::Bool(b) => (*b).into(),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            _ => return Err(invalid()),
        },
        J::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push(item.as_str().ok_or_else(invalid)?);
            }
            array.into()
        }
        J::Null | J::Object(_) => return Err(invalid()),
    })
}

/// `Some(name)` if `path` is a single plain file name (no directories, no `..`).
fn plain_file_name(path: &Path) -> Option<String> {
    let mut components = path.components();
    match (components.next(), components.next()) {
        (Some(std::path::Component::Normal(name)), None) => {
            let name = name.to_str()?;
            (!name.starts_with('.')).then(|| name.to_string())
        }
        _ => None,
    }
}

fn read_text(path: &Path) -> Result<String, ManageError> {
    std::fs::read_to_string(path).map_err(|e| ManageError::Io(format!("{}: {e}", path.display())))
}

/// Write via a temporary file and a rename, so a crash never leaves half a manifest.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ManageError> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn remove_dir_if_present(dir: &Path) -> Result<(), ManageError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ManageError::Io(format!("{}: {e}", dir.display()))),
    }
}

fn io(e: std::io::Error) -> ManageError {
    ManageError::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "# the operator's comment\nname = \"dlp\"\nversion = \"1.0.0\"\n\
        component = \"dlp.wasm\"\n\n[settings]\n# keep cards out\n\"action.card\" = \"block\"\n";

    #[test]
    fn edits_keep_comments_and_validate() {
        let change = PluginChange {
            enabled: Some(false),
            priority: Some(-3),
            failure_policy: Some(FailurePolicy::FailOpen),
            settings: Some(BTreeMap::from([
                ("action.card".to_string(), Some(serde_json::json!("redact"))),
                ("words".to_string(), Some(serde_json::json!(["a", "b"]))),
                ("max".to_string(), Some(serde_json::json!(3))),
            ])),
        };
        let edited = edit_manifest(MANIFEST, &change).expect("edits");
        assert!(edited.contains("# the operator's comment"));
        assert!(edited.contains("# keep cards out"));
        let m = Manifest::parse(&edited, Path::new("/p"), &LimitsConfig::default()).expect("valid");
        assert!(!m.enabled);
        assert_eq!(m.priority, -3);
        assert_eq!(m.failure_policy, FailurePolicy::FailOpen);
        assert_eq!(m.settings["action.card"], "redact");
        assert_eq!(m.settings["words"], "a\nb");
        assert_eq!(m.settings["max"], "3");

        let removal = PluginChange {
            settings: Some(BTreeMap::from([("action.card".to_string(), None)])),
            ..PluginChange::default()
        };
        let m = Manifest::parse(
            &edit_manifest(&edited, &removal).expect("edits"),
            Path::new("/p"),
            &LimitsConfig::default(),
        )
        .expect("valid");
        assert!(!m.settings.contains_key("action.card"));
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [serde_json::json!({"a": 1}), serde_json::json!([1, 2])] {
            let change = PluginChange {
                settings: Some(BTreeMap::from([("k".to_string(), Some(bad))])),
                ..PluginChange::default()
            };
            assert!(matches!(
                edit_manifest(MANIFEST, &change),
                Err(ManageError::Invalid(_))
            ));
        }
        let change = PluginChange {
            settings: Some(BTreeMap::from([(
                String::new(),
                Some(serde_json::json!("v")),
            )])),
            ..PluginChange::default()
        };
        assert!(edit_manifest(MANIFEST, &change).is_err());
    }

    #[test]
    fn uploads_name_plain_files_only() {
        assert_eq!(
            plain_file_name(Path::new("x.wasm")).as_deref(),
            Some("x.wasm")
        );
        for bad in ["../x.wasm", "a/x.wasm", "/x.wasm", ".hidden", ""] {
            assert_eq!(plain_file_name(Path::new(bad)), None, "{bad}");
        }
    }
}

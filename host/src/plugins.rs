//! The WebAssembly plugin runtime: loads the operator's plugins, runs them at the router's
//! hook points inside wasmtime sandboxes, and keeps a misbehaving plugin from hurting
//! anything but the message it was asked about.
//!
//! The pieces, one concept per module:
//! - [`manifest`]: the operator's `plugin.toml` (hooks, priority, policy, limits, grants);
//! - `engine`: the one wasmtime `Engine`, its epoch ticker and the compiled-component cache;
//! - `bindings_v0_1`, `bindings_v0_2`: the host side of WIT `switchboard:plugin@0.1.0` and
//!   `@0.2.0` (one module per WIT version, so a plugin built against 0.1 keeps loading);
//!   `call` is the version-neutral shape of a hook call they both adapt;
//! - `capabilities` (with `kv`, `bot`, `http` and `rooms` inside it): what a plugin may
//!   call back into, gated by its grants;
//! - `instance`: warm instances per plugin, each call under a CPU deadline, a wall-clock
//!   budget and a memory limit;
//! - `slots` and `sender_time`: a plugin's call slots (with each sender's share) and each
//!   sender's running time per second, so one plugin's or one member's load stays theirs;
//! - `observer`: a `message-delivered` queue and task per observing plugin;
//! - `chain`: the priority-ordered hook chains and the [`Hooks`] implementation, with the
//!   checks of what plugins return;
//! - `breaker` (scoped per sender and room) and `metrics`: failure accounting.
//!
//! The set of loaded plugins is an immutable snapshot behind a lock that is only held long
//! enough to clone an `Arc`, so enabling, disabling or reloading a plugin later is a matter
//! of building a new snapshot off the hot path and swapping it in.
//!
//! [`Hooks`]: crate::router::hooks::Hooks

mod bindings_common;
mod bindings_v0_1;
mod bindings_v0_2;
mod breaker;
mod call;
mod capabilities;
mod chain;
mod engine;
mod instance;
mod manage;
pub mod manifest;
mod metrics;
mod observer;
pub mod scaffold;
mod sender_time;
pub mod signing;
mod slots;
pub mod standalone;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::store::Store;

pub use breaker::OpenCircuit;
pub use chain::{PluginCounters, PluginStatus};
pub use manage::{
    InstallRequest, ManageError, ManifestProblem, PluginChange, PluginList, PluginView,
    ReloadReport,
};
pub use manifest::{Capability, FailurePolicy, Manifest};

/// Operator configuration of the plugin layer (`[plugins]` in `switchboard.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory with one sub-directory per plugin (`plugin.toml` + component `.wasm`).
    /// `None`: no plugins.
    pub dir: Option<PathBuf>,
    /// Limits for plugins whose manifest does not set its own.
    pub limits: LimitsConfig,
    /// Granularity of the CPU deadline: the ticker thread advances the engine's epoch this
    /// often. A runaway call is stopped within its deadline (rounded up to a tick).
    pub epoch_tick_ms: u64,
    /// Use wasmtime's pooling allocator (falls back to on-demand allocation when the
    /// address space for the pool cannot be reserved).
    pub pooling: bool,
    /// Instances the pool can hold at once, across all plugins.
    pub pool_instances: u32,
    /// Idle warm instances kept per plugin.
    pub max_idle_instances: usize,
    /// Replace an instance after this many calls, so slow leaks in a guest stay bounded.
    pub recycle_after_calls: u64,
    /// Events waiting for one observer plugin's `message-delivered` calls (each observer
    /// has its own queue); beyond this its events are dropped and counted against it.
    pub observer_queue: usize,
    /// Circuit breaker: this many failures ...
    pub breaker_failures: u32,
    /// ... within this many seconds open a circuit (the plugin is no longer called there) ...
    pub breaker_window_secs: u64,
    /// ... for this many seconds, after which one trial call decides (0 = until restart).
    pub breaker_cooldown_secs: u64,
    /// Failures are counted per room and per sender first: a room's or sender's circuit
    /// opens on this many of its own failures, and only that room or sender is cut off.
    pub breaker_scope_failures: u32,
    /// The whole plugin's circuit opens only when `breaker_failures` failures came from at
    /// least this many different rooms and senders, so one room or one member cannot take
    /// a plugin offline for everyone.
    pub breaker_min_scopes: u32,
    /// The largest wall-clock budget (`limits.wall_timeout_ms`,
    /// `limits.observer_timeout_ms`) a plugin's manifest may ask for.
    pub max_wall_timeout_ms: u64,
    /// How long shutdown waits for observers to finish their queues before it abandons
    /// what is left (whatever the plugins do, shutdown ends within this).
    pub shutdown_timeout_ms: u64,
    /// Cache compiled components under `<data_dir>/plugin-cache`.
    pub compile_cache: bool,
    /// Largest component the admin API accepts for an install.
    pub max_component_bytes: usize,
    /// How long a reload, disable or uninstall waits for calls still running on the old
    /// version to finish before it reports back (the old version finishes them either way).
    pub drain_timeout_ms: u64,
    /// Public keys (`ed25519:<base64>`) whose signatures are trusted. Empty: signatures are
    /// not checked. Otherwise only components with a valid `<component>.sig` by one of them
    /// load (see [`signing`]).
    pub trusted_keys: signing::TrustedKeys,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            limits: LimitsConfig::default(),
            epoch_tick_ms: 2,
            pooling: true,
            pool_instances: 128,
            max_idle_instances: 4,
            recycle_after_calls: 100_000,
            observer_queue: 1024,
            breaker_failures: 10,
            breaker_window_secs: 60,
            breaker_cooldown_secs: 300,
            breaker_scope_failures: 3,
            breaker_min_scopes: 3,
            max_wall_timeout_ms: 30_000,
            shutdown_timeout_ms: 5_000,
            compile_cache: true,
            max_component_bytes: 32 * 1024 * 1024,
            drain_timeout_ms: 10_000,
            trusted_keys: signing::TrustedKeys::default(),
        }
    }
}

/// Resource limits of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time one hook call may spend running its own code (waits in host imports such as
    /// `http` do not count here; they count against `wall_timeout_ms`).
    pub timeout_ms: u64,
    /// Wall-clock budget of one call of a hook someone waits for (`message-pre-send`,
    /// `command`, `on-login`, `on-connect`, `authenticate`): computing, WASI waits (clocks,
    /// polls) and host-import waits (`http`, `rooms`, `bot`) all count. When it runs out the
    /// call ends, its instance is discarded and the failure policy decides. Never shorter
    /// than `timeout_ms` (a manifest that raises only `timeout_ms` keeps working).
    pub wall_timeout_ms: u64,
    /// The same budget for one `message-delivered` call, which nobody waits for (it runs
    /// from the plugin's own queue).
    pub observer_timeout_ms: u64,
    /// Calls of this plugin running at once (each holds an instance); further calls wait
    /// for a slot within their wall-clock budget, so one plugin cannot take another's.
    pub max_concurrent_calls: u32,
    /// Of those, how many one sender's calls may hold; a call over this share fails at
    /// once (`overloaded`, its failure policy decides) instead of queueing, so a member
    /// cannot occupy a plugin's slots with stuck calls until their circuit opens.
    pub max_concurrent_calls_per_sender: u32,
    /// Plugin time one sender's calls may use per second (the plugin's own running time,
    /// not its waits in host imports); over it, that sender's further calls fail at once
    /// (`overloaded`) until the second is over. Bounds what a flood of expensive messages
    /// costs everyone else. `message-delivered` is not counted (nobody waits for it).
    pub sender_time_ms_per_second: u32,
    /// Log lines, and bytes, the plugin may write per second; the rest is dropped and
    /// counted.
    pub log_lines_per_second: u32,
    pub log_bytes_per_second: usize,
    /// Linear memory one instance may grow to.
    pub memory_mib: u64,
    /// Largest answer a hook may return (body plus metadata of a modification, reason of a
    /// rejection or denial).
    pub max_output_bytes: usize,
    /// Keys the plugin's `kv` namespace may hold.
    pub kv_max_keys: usize,
    pub kv_max_key_bytes: usize,
    pub kv_max_value_bytes: usize,
    /// Bytes (keys plus values) the plugin's `kv` namespace may hold in all: what bounds
    /// the memory it takes.
    pub kv_max_bytes: usize,
    /// Largest single `wasi:random` request (`get-random-bytes`); a larger one traps the
    /// call instead of making the host generate it.
    pub max_random_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 50,
            wall_timeout_ms: 1_000,
            observer_timeout_ms: 5_000,
            max_concurrent_calls: 16,
            max_concurrent_calls_per_sender: 4,
            sender_time_ms_per_second: 200,
            log_lines_per_second: 100,
            log_bytes_per_second: 64 * 1024,
            memory_mib: 32,
            max_output_bytes: 256 * 1024,
            kv_max_keys: 10_000,
            kv_max_key_bytes: 256,
            kv_max_value_bytes: 64 * 1024,
            kv_max_bytes: 4 * 1024 * 1024,
            max_random_bytes: 64 * 1024,
        }
    }
}

impl LimitsConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err("limits.timeout_ms must be between 1 and 60000".into());
        }
        if self.memory_mib == 0 || self.memory_mib > 4096 {
            return Err("limits.memory_mib must be between 1 and 4096".into());
        }
        if self.max_output_bytes == 0 {
            return Err("limits.max_output_bytes must be positive".into());
        }
        if self.kv_max_key_bytes == 0 || self.kv_max_value_bytes == 0 || self.kv_max_bytes == 0 {
            return Err(
                "limits.kv_max_key_bytes, kv_max_value_bytes and kv_max_bytes must be positive"
                    .into(),
            );
        }
        if self.wall_timeout_ms == 0 || self.observer_timeout_ms == 0 {
            return Err("limits.wall_timeout_ms and observer_timeout_ms must be positive".into());
        }
        if self.max_concurrent_calls == 0 || self.max_concurrent_calls > 1024 {
            return Err("limits.max_concurrent_calls must be between 1 and 1024".into());
        }
        if self.max_concurrent_calls_per_sender == 0
            || self.max_concurrent_calls_per_sender > self.max_concurrent_calls
        {
            return Err(
                "limits.max_concurrent_calls_per_sender must be between 1 and \
                 max_concurrent_calls"
                    .into(),
            );
        }
        if self.sender_time_ms_per_second == 0 {
            return Err("limits.sender_time_ms_per_second must be positive".into());
        }
        if self.log_lines_per_second == 0 || self.log_bytes_per_second == 0 {
            return Err(
                "limits.log_lines_per_second and log_bytes_per_second must be positive".into(),
            );
        }
        if self.max_random_bytes == 0 {
            return Err("limits.max_random_bytes must be positive".into());
        }
        Ok(())
    }

    /// The wall-clock budgets in force: never shorter than the CPU deadline.
    pub(crate) fn wall_budgets(&self) -> (u64, u64) {
        (
            self.wall_timeout_ms.max(self.timeout_ms),
            self.observer_timeout_ms.max(self.timeout_ms),
        )
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }
}

/// Why the plugin layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("plugin {name}: two plugins have this name")]
    Duplicate { name: String },
    #[error("plugin {name}: {message}")]
    Compile { name: String, message: String },
    #[error("plugin {name}: {message}")]
    Incompatible { name: String, message: String },
    #[error("plugin {name}: signature check failed: {reason}")]
    Signature {
        name: String,
        reason: signing::SignatureError,
    },
    #[error("plugin {name}: loading its kv namespace: {message}")]
    Kv { name: String, message: String },
    /// A capability or command registration cannot be honoured (bot user, conflicts).
    #[error("plugin {name}: {message}")]
    Capability { name: String, message: String },
    #[error("plugin engine: {0}")]
    Engine(String),
    #[error("configuration: {0}")]
    Config(String),
}

/// The loaded plugins and everything that runs them. Implements
/// [`Hooks`](crate::router::hooks::Hooks) for the router.
pub struct PluginHost {
    config: PluginsConfig,
    engine: engine::EngineHandle,
    cache_dir: Option<PathBuf>,
    /// The largest linear memory an instance may have: fixed when the engine is built (it
    /// sizes the pooling allocator's slots), so a plugin installed later must fit.
    memory_ceiling: usize,
    store: Arc<dyn Store>,
    chain: Arc<chain::ChainCell>,
    observer: observer::Observer,
    /// Each plugin's `kv` namespace by name, kept across reloads so a new version sees
    /// (and no write is lost between) the old version's data.
    kv_spaces: Mutex<HashMap<String, Arc<capabilities::kv::KvSpace>>>,
    kv_writers: Mutex<Vec<capabilities::kv::KvWriter>>,
    /// Counters of versions that were reloaded away, so a plugin's totals survive reloads.
    retired: Mutex<HashMap<String, PluginCounters>>,
    /// Serialises management operations (two reloads of one plugin must not interleave).
    admin: tokio::sync::Mutex<()>,
    metrics: Arc<metrics::Metrics>,
    /// What the capabilities share across plugins (the bot outbox).
    shared: capabilities::Shared,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.statuses().len())
            .finish()
    }
}

impl PluginHost {
    /// Load every plugin under `config.dir` (one sub-directory with a `plugin.toml` each),
    /// compile them (through the on-disk cache under `data_dir`), load their `kv`
    /// namespaces from `store`, register their metrics in `registry` and start the epoch
    /// ticker. Must be called inside a tokio runtime.
    ///
    /// A plugin that fails to load fails the whole start: an operator who configured a DLP
    /// filter must not get a server that silently runs without it.
    pub async fn load(
        config: &PluginsConfig,
        data_dir: &Path,
        store: Arc<dyn Store>,
        registry: &mut Registry,
    ) -> Result<Arc<PluginHost>, PluginError> {
        config.limits.validate().map_err(PluginError::Config)?;
        if config.max_wall_timeout_ms == 0 || config.max_wall_timeout_ms > 600_000 {
            return Err(PluginError::Config(
                "plugins.max_wall_timeout_ms must be between 1 and 600000".into(),
            ));
        }
        if config.epoch_tick_ms == 0 {
            return Err(PluginError::Config(
                "plugins.epoch_tick_ms must be positive".into(),
            ));
        }
        let manifests = match &config.dir {
            Some(dir) => read_manifests(dir, &config.limits)?,
            None => Vec::new(),
        };
        let metrics = Arc::new(metrics::Metrics::new(registry));
        // Leave room for plugins installed later with the server-wide default limit.
        let memory_ceiling = manifests
            .iter()
            .map(|m| m.limits.memory_bytes())
            .chain([config.limits.memory_bytes()])
            .max()
            .unwrap_or(0);
        let engine = engine::EngineHandle::new(config, Some(memory_ceiling))?;
        let chain = Arc::new(chain::ChainCell::new(chain::Chain::new(Vec::new())?));
        let observer = observer::Observer::new(
            chain.clone(),
            store.clone(),
            config.observer_queue,
            &metrics,
        );
        let shared = capabilities::Shared::new(registry);
        let host = Arc::new(PluginHost {
            config: config.clone(),
            engine,
            cache_dir: config.compile_cache.then(|| data_dir.join("plugin-cache")),
            memory_ceiling,
            store,
            chain,
            observer,
            kv_spaces: Mutex::new(HashMap::new()),
            kv_writers: Mutex::new(Vec::new()),
            retired: Mutex::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
            metrics,
            shared,
        });

        let mut plugins = Vec::new();
        for manifest in manifests.into_iter().filter(|m| m.enabled) {
            plugins.push(host.load_plugin(manifest).await?);
        }
        host.chain.replace(chain::Chain::new(plugins)?);
        host.warn_if_the_pool_is_oversubscribed();
        for status in host.chain.snapshot().statuses() {
            tracing::info!(
                plugin = %status.name,
                version = %status.version,
                priority = status.priority,
                policy = status.failure_policy.as_str(),
                hooks = ?status.hooks,
                capabilities = ?status.capabilities,
                "plugin loaded"
            );
        }
        tracing::info!(
            plugins = host.chain.snapshot().statuses().len(),
            pooling = host.engine.pooled(),
            "plugin runtime started"
        );
        Ok(host)
    }

    /// Compile and warm one plugin (its `kv` namespace loaded or reused), off the hot path.
    async fn load_plugin(
        &self,
        manifest: Manifest,
    ) -> Result<Arc<instance::LoadedPlugin>, PluginError> {
        if manifest.limits.memory_bytes() > self.memory_ceiling {
            return Err(PluginError::Config(format!(
                "plugin {}: limits.memory_mib exceeds the {} MiB the plugin engine was started \
                 with; restart the server to raise it",
                manifest.name,
                self.memory_ceiling / (1024 * 1024)
            )));
        }
        let (wall, observer_wall) = manifest.limits.wall_budgets();
        let wall = wall.max(observer_wall);
        if wall > self.config.max_wall_timeout_ms {
            return Err(PluginError::Config(format!(
                "plugin {}: limits.wall_timeout_ms / observer_timeout_ms of {wall} ms exceed the \
                 operator's ceiling plugins.max_wall_timeout_ms = {} ms",
                manifest.name, self.config.max_wall_timeout_ms
            )));
        }
        // The kv namespace outlives versions: a reload reuses it, so nothing written by the
        // old version is lost or read back stale.
        let space = if manifest.grants(Capability::Kv) {
            let existing = lock(&self.kv_spaces).get(&manifest.name).cloned();
            match existing {
                Some(space) => Some(space),
                None => {
                    let (space, writer) =
                        capabilities::kv::KvSpace::load(&manifest, self.store.clone()).await?;
                    lock(&self.kv_writers).push(writer);
                    lock(&self.kv_spaces).insert(manifest.name.clone(), space.clone());
                    Some(space)
                }
            }
        } else {
            None
        };
        let grants =
            capabilities::Grants::load(&manifest, self.store.clone(), &self.shared, space).await?;
        let compiled = {
            let engine = self.engine.engine().clone();
            let cache_dir = self.cache_dir.clone();
            let path = manifest.component.clone();
            let name = manifest.name.clone();
            let trusted = self.config.trusted_keys.clone();
            tokio::task::spawn_blocking(move || {
                engine::compile(&engine, &path, cache_dir.as_deref(), &name, &trusted)
            })
            .await
            .map_err(|e| PluginError::Engine(format!("compile task: {e}")))??
        };
        let plugin = instance::LoadedPlugin::new(
            &self.engine,
            compiled,
            manifest,
            grants,
            &self.config,
            &self.metrics,
        )
        .await?;
        Ok(Arc::new(plugin))
    }

    /// Stop cleanly: let queued `message-delivered` events be observed (for at most
    /// `shutdown_timeout_ms`), write every pending `kv` change to the store, and stop the
    /// epoch ticker. Idempotent, and bounded in time whatever plugins do. Call it after the
    /// router stopped sending: from then on no plugin code runs, and each plugin's failure
    /// policy decides (fail-closed rejects with `plugin_unavailable`).
    pub async fn shutdown(&self) {
        self.observer
            .shutdown(std::time::Duration::from_millis(
                self.config.shutdown_timeout_ms,
            ))
            .await;
        let writers = std::mem::take(&mut *lock(&self.kv_writers));
        for writer in writers {
            writer.flush_and_stop().await;
        }
        self.engine.stop_ticker();
    }

    /// Each plugin holds at most `max_concurrent_calls` instances in calls plus
    /// `max_idle_instances` warm ones; when those add up to more than the engine-wide pool,
    /// a burst can still find the pool full (`pool_exhausted`: counted, never blamed on the
    /// plugin that could not instantiate). Say so at start, with the numbers to change.
    fn warn_if_the_pool_is_oversubscribed(&self) {
        if !self.engine.pooled() {
            return;
        }
        let idle = u64::try_from(self.config.max_idle_instances).unwrap_or(u64::MAX);
        let wanted: u64 = self
            .chain
            .snapshot()
            .plugins()
            .iter()
            .map(|p| u64::from(p.manifest.limits.max_concurrent_calls) + idle)
            .sum();
        let pool = u64::from(self.config.pool_instances);
        if wanted > pool {
            tracing::warn!(
                wanted,
                pool_instances = pool,
                "the plugins' call slots and idle instances add up to more than the instance \
                 pool: raise plugins.pool_instances or lower limits.max_concurrent_calls"
            );
        }
    }

    /// What is loaded, in chain order, with each plugin's counters (for the admin API).
    pub fn statuses(&self) -> Vec<PluginStatus> {
        let retired = lock(&self.retired);
        let mut statuses = self.chain.snapshot().statuses();
        for status in &mut statuses {
            if let Some(before) = retired.get(&status.name) {
                status.counters.add(before);
            }
        }
        statuses
    }

    /// Whether instances come from wasmtime's pooling allocator (false: on-demand, either
    /// by configuration or because the pool's address space could not be reserved).
    pub fn pooling_allocator(&self) -> bool {
        self.engine.pooled()
    }

    /// Events dropped because an observer's `message-delivered` queue was full (all
    /// plugins together).
    pub fn observer_dropped(&self) -> u64 {
        self.metrics.observer_dropped()
    }
}

/// One manifest per sub-directory of `dir`, in name order.
fn read_manifests(dir: &Path, defaults: &LimitsConfig) -> Result<Vec<Manifest>, PluginError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PluginError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PluginError::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        // Dot-directories are the admin API's staging and backup areas, never plugins.
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let manifest = entry.path().join("plugin.toml");
        if !hidden && manifest.is_file() {
            paths.push(manifest);
        }
    }
    paths.sort();
    let mut manifests: Vec<Manifest> = Vec::new();
    for path in paths {
        let manifest = Manifest::load(&path, defaults)?;
        if manifests.iter().any(|m| m.name == manifest.name) {
            return Err(PluginError::Duplicate {
                name: manifest.name,
            });
        }
        manifests.push(manifest);
    }
    Ok(manifests)
}

/// Keep `RwLock` poisoning from turning one panic into a dead plugin layer: the data behind
/// these locks is always a whole value, never half-written.
pub(crate) fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

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
mod bindings_v0_3;
mod breaker;
mod call;
mod capabilities;
mod chain;
mod engine;
mod guest_output;
mod instance;
mod manage;
pub mod manifest;
mod metrics;
mod observer;
mod sender_time;
mod slots;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::registry::Registry;

use crate::config::{LimitsConfig, PluginsConfig};
use crate::router::hooks::HookKind;
use crate::store::{Event, Room, Store};

pub use breaker::OpenCircuit;
pub use chain::{PluginCounters, PluginStatus};
pub use engine::prune_cache_to_recent;
pub use instance::LastFailure;
pub use manage::{
    InstallRequest, ManageError, ManifestProblem, PluginChange, PluginList, PluginView,
    ReloadReport,
};
pub use manifest::{Capability, FailurePolicy, Manifest};

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
        reason: crate::signing::SignatureError,
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
        llm: Option<Arc<crate::llm::Llm>>,
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
        let shared = capabilities::Shared::new(registry, llm);
        let host = Arc::new(PluginHost {
            config: config.clone(),
            engine,
            cache_dir: config.compile_cache.then(|| {
                config
                    .compile_cache_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("plugin-cache"))
            }),
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
        host.prune_compile_cache().await;
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

    /// Remove the compiled artifacts of component versions no longer installed (enabled or
    /// not) from the compile cache. Runs at start and after each install, upgrade or
    /// uninstall, under the management lock, so no compile of an install races it.
    pub(crate) async fn prune_compile_cache(&self) {
        let (Some(cache_dir), Some(plugins_dir)) =
            (self.cache_dir.clone(), self.config.dir.clone())
        else {
            return;
        };
        let engine = self.engine.engine().clone();
        let limits = self.config.limits.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            let (found, _) = manage::scan(&plugins_dir, &limits)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let components: Vec<PathBuf> = found.into_iter().map(|(_, m)| m.component).collect();
            engine::prune_cache(&engine, &cache_dir, &components)
        })
        .await;
        match pruned {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => {
                tracing::info!(
                    removed,
                    "pruned compiled components of versions no longer installed"
                )
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not prune the compile cache"),
            Err(e) => tracing::warn!(error = %e, "compile-cache pruning task failed"),
        }
    }

    /// Call every observing plugin's `message-delivered` with `event` now and wait for the
    /// calls, as each plugin's observer task would (for tools that time a call, such as
    /// `plugin test`; the server itself goes through the queues).
    pub async fn observe_now(&self, room: &Room, event: &Event) {
        for plugin in self.chain.snapshot().hook(HookKind::MessageDelivered) {
            let _ = plugin
                .call(instance::Request::Delivered(room, event), 0)
                .await;
        }
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

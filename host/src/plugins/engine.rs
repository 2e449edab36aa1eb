//! The one wasmtime `Engine`, the epoch ticker that enforces CPU deadlines, and the on-disk
//! cache of compiled components.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::{PluginError, lock};
use crate::config::PluginsConfig;
use crate::signing::{self, TrustedKeys};

/// The engine plus the thread that ticks its epoch.
pub(crate) struct EngineHandle {
    engine: Engine,
    pooled: bool,
    stop: Arc<AtomicBool>,
    ticker: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl EngineHandle {
    /// Build the engine (pooling allocator when possible) and start the ticker.
    /// `max_memory` is the largest memory limit of any plugin, which bounds each pool slot.
    pub(crate) fn new(
        config: &PluginsConfig,
        max_memory: Option<usize>,
    ) -> Result<Self, PluginError> {
        let max_memory = max_memory.unwrap_or(config.limits.memory_bytes());
        let mut engine = None;
        if config.pooling {
            match Engine::new(&engine_config(config, Some(max_memory))) {
                Ok(e) => engine = Some(e),
                Err(e) => tracing::warn!(
                    error = %e,
                    "plugin engine: pooling allocator unavailable, using on-demand allocation"
                ),
            }
        }
        let pooled = engine.is_some();
        let engine = match engine {
            Some(e) => e,
            None => Engine::new(&engine_config(config, None))
                .map_err(|e| PluginError::Engine(format!("{e:#}")))?,
        };
        let tick = Duration::from_millis(config.epoch_tick_ms);
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            // A plain OS thread, not a tokio task: it must keep ticking while every tokio
            // worker is busy running (possibly runaway) plugin code.
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| PluginError::Engine(format!("starting the epoch ticker: {e}")))?
        };
        Ok(Self {
            engine,
            pooled,
            stop,
            ticker: std::sync::Mutex::new(Some(ticker)),
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Whether instances come from the pooling allocator.
    pub(crate) fn pooled(&self) -> bool {
        self.pooled
    }

    /// Set once shutdown begins; plugins refuse calls from then on (the ticker that
    /// enforces their deadlines is about to stop).
    pub(crate) fn stopped_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub(crate) fn stop_ticker(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = lock(&self.ticker).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn engine_config(config: &PluginsConfig, pool_memory: Option<usize>) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    // The guest's stack is bounded separately from the host's: a recursing plugin traps with
    // a stack overflow long before it could endanger the tokio worker running it.
    c.max_wasm_stack(512 * 1024);
    c.wasm_backtrace_details(wasmtime::WasmBacktraceDetails::Disable);
    if let Some(max_memory) = pool_memory {
        let mut pool = PoolingAllocationConfig::default();
        let instances = config.pool_instances.max(1);
        // A Rust component has one linear memory and a handful of core instances and
        // tables; a componentize-py one has 14 core instances (the interpreter, libc, the
        // WASI adapter, shims), the most of the runtimes we test. The budget per
        // component instance covers those, so every plugin gets its warm instances from
        // the pool; bounding the counts bounds the address space the pool reserves.
        const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
            .total_stacks(instances)
            .max_memory_size(max_memory)
            .max_unused_warm_slots(instances.min(16));
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // Each memory keeps wasmtime's default reservation (4 GiB plus guard pages), which
        // lets compiled code skip explicit bounds checks on every load and store (DLP-style
        // byte scanning is much faster; see docs/benchmarks.md). The pool's address space is bounded by
        // `total_memories` instead; if it cannot be reserved, `EngineHandle::new` falls back
        // to on-demand allocation.
    }
    c
}

/// Compile the component at `path`, through the cache when `cache_dir` is given. The cache
/// key is the SHA-256 of the component's bytes plus wasmtime's own compatibility hash of the
/// engine (version, target, settings), so a stale artifact is never loaded.
///
/// With `trusted` keys, the component must carry a valid signature by one of them
/// (`<component>.sig`, see [`signing`]). The check runs on the bytes read here, the same
/// ones that are compiled (and that key the cache), before anything else looks at them.
pub(crate) fn compile(
    engine: &Engine,
    path: &Path,
    cache_dir: Option<&Path>,
    name: &str,
    trusted: &TrustedKeys,
) -> Result<Component, PluginError> {
    let bytes = std::fs::read(path).map_err(|e| PluginError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    if !trusted.is_empty() {
        let signature = signing::read_signature(path).map_err(|e| PluginError::Io {
            path: signing::signature_path(path),
            source: e,
        })?;
        let signer =
            signing::verify_component(&bytes, signature.as_deref(), trusted).map_err(|reason| {
                PluginError::Signature {
                    name: name.to_string(),
                    reason,
                }
            })?;
        tracing::info!(plugin = name, key = %signer, "plugin signature verified");
    }
    let compile_err = |e: wasmtime::Error| PluginError::Compile {
        name: name.to_string(),
        message: format!("{e:#}"),
    };
    let Some(cache_dir) = cache_dir else {
        return Component::new(engine, &bytes).map_err(compile_err);
    };
    let artifact = cache_dir.join(cache_key(engine, &bytes));
    if artifact.is_file() {
        // Marks the entry as used, for pruning by age (`prune_cache_to_recent`).
        let _ = std::fs::File::options()
            .write(true)
            .open(&artifact)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        // SAFETY: `deserialize_file` trusts the file to be an artifact this engine produced.
        // It is: the cache directory is private to the server (under its data dir), the name
        // binds the exact source bytes and engine compatibility, and wasmtime itself still
        // checks the artifact's header against the engine before using it.
        #[allow(unsafe_code)]
        let cached = unsafe { Component::deserialize_file(engine, &artifact) };
        match cached {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(plugin = name, error = %e, "ignoring unusable cached component")
            }
        }
    }
    let serialized = engine.precompile_component(&bytes).map_err(compile_err)?;
    if let Err(e) = write_atomically(cache_dir, &artifact, &serialized) {
        tracing::warn!(plugin = name, error = %e, "could not write the compiled-component cache");
    }
    // SAFETY: these bytes were produced by `precompile_component` on this very engine a line
    // above; nothing else could have touched them.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &serialized) };
    component.map_err(compile_err)
}

/// The cache file name of a component: the SHA-256 of its bytes plus wasmtime's own
/// compatibility hash of the engine (version, target, settings).
fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    format!(
        "{}-{:016x}.{ARTIFACT_EXTENSION}",
        hex::encode(Sha256::digest(bytes)),
        compat.finish()
    )
}

const ARTIFACT_EXTENSION: &str = "cwasm";
/// A temporary file older than this is left over from an interrupted write.
const STALE_TEMPORARY: Duration = Duration::from_secs(600);

/// Remove the artifacts in `dir` that none of `components` compiles to with `engine`: the
/// versions uninstalled or replaced, and everything an older wasmtime compiled. Also the
/// temporary files of writes that never finished. Returns how many files went.
pub(crate) fn prune_cache(
    engine: &Engine,
    dir: &Path,
    components: &[std::path::PathBuf],
) -> std::io::Result<usize> {
    let keep: std::collections::HashSet<String> = components
        .iter()
        // An unreadable component has no artifact worth keeping either.
        .filter_map(|path| std::fs::read(path).ok())
        .map(|bytes| cache_key(engine, &bytes))
        .collect();
    remove_cache_files(dir, |name| !keep.contains(name))
}

/// Keep the `keep` most recently used artifacts in `dir` and remove the others (for a cache
/// that is not tied to installed plugins, such as `plugin test`'s).
pub fn prune_cache_to_recent(dir: &Path, keep: usize) -> std::io::Result<usize> {
    let mut used: Vec<(std::time::SystemTime, String)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(&format!(".{ARTIFACT_EXTENSION}")) {
            let modified = entry.metadata()?.modified()?;
            used.push((modified, name));
        }
    }
    used.sort_by(|a, b| b.cmp(a));
    let recent: std::collections::HashSet<String> =
        used.into_iter().take(keep).map(|(_, name)| name).collect();
    remove_cache_files(dir, |name| !recent.contains(name))
}

/// Remove the artifacts `doomed(name)` picks, and stale temporary files.
fn remove_cache_files(dir: &Path, doomed: impl Fn(&str) -> bool) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        let remove = if name.ends_with(&format!(".{ARTIFACT_EXTENSION}")) {
            doomed(&name)
        } else {
            // `<key>.tmp<pid>` from `write_atomically`; a young one may be a write in flight.
            name.contains(".tmp") && modified.elapsed().unwrap_or_default() > STALE_TEMPORARY
        };
        if remove && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = target.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, target)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn touch(path: &Path, age: Duration) {
        std::fs::write(path, b"x").unwrap();
        let when = std::time::SystemTime::now() - age;
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(when)
            .unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn pruning_keeps_the_artifacts_of_installed_components_only() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let installed = dir.path().join("installed.wasm");
        std::fs::write(&installed, b"installed component").unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let kept = cache_key(&engine, b"installed component");
        let gone = cache_key(&engine, b"an older version");
        touch(&cache.join(&kept), Duration::ZERO);
        touch(&cache.join(&gone), Duration::ZERO);
        // Another wasmtime's artifact of the installed bytes is useless to this one.
        let other_engine = kept
            .replace(".cwasm", "")
            .rsplit_once('-')
            .unwrap()
            .0
            .to_string()
            + "-0000000000000000.cwasm";
        touch(&cache.join(&other_engine), Duration::ZERO);
        touch(&cache.join("x.tmp1"), Duration::from_secs(3600));
        touch(&cache.join("y.tmp2"), Duration::ZERO);
        touch(&cache.join("README"), Duration::from_secs(3600));

        let removed = prune_cache(&engine, &cache, &[installed, dir.path().join("gone.wasm")]);
        assert_eq!(removed.unwrap(), 3);
        let mut expected = vec!["README".to_string(), kept, "y.tmp2".to_string()];
        expected.sort();
        assert_eq!(names(&cache), expected);
        assert_eq!(
            prune_cache(&engine, &dir.path().join("none"), &[]).unwrap(),
            0
        );
    }

    #[test]
    fn pruning_to_recent_keeps_the_most_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5u64 {
            touch(
                &dir.path().join(format!("{i}.cwasm")),
                Duration::from_secs(60 * i),
            );
        }
        assert_eq!(prune_cache_to_recent(dir.path(), 2).unwrap(), 3);
        assert_eq!(names(dir.path()), ["0.cwasm", "1.cwasm"]);
    }
}

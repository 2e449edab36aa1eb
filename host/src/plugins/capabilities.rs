//! What a plugin instance's store holds: its locked-down WASI context, its memory limiter,
//! and the capabilities the operator granted it (each host import checks its grant first).

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::kv::KvSpace;
use super::manifest::{Capability, Manifest};

/// Per-plugin facts every instance of the plugin shares.
pub(crate) struct PluginCtx {
    pub(crate) name: Arc<str>,
    log: bool,
    config: bool,
    pub(crate) settings: BTreeMap<String, String>,
    /// `Some` exactly when `kv` is granted.
    pub(crate) kv: Option<Arc<KvSpace>>,
}

impl PluginCtx {
    pub(crate) fn new(manifest: &Manifest, kv: Option<Arc<KvSpace>>) -> Self {
        Self {
            name: Arc::from(manifest.name.as_str()),
            log: manifest.grants(Capability::Log),
            config: manifest.grants(Capability::Config),
            settings: manifest.settings.clone(),
            kv,
        }
    }

    pub(crate) fn granted(&self, capability: Capability) -> bool {
        match capability {
            Capability::Log => self.log,
            Capability::Config => self.config,
            Capability::Kv => self.kv.is_some(),
        }
    }
}

/// The data of one plugin instance's `Store`.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) ctx: Arc<PluginCtx>,
    /// When the running call must end; checked on every epoch tick.
    pub(crate) deadline: std::time::Instant,
}

impl HostState {
    pub(crate) fn new(ctx: Arc<PluginCtx>, memory_bytes: usize) -> Self {
        // Nothing is inherited from the server: no arguments, no environment, no stdio, no
        // preopened directories; sockets and name lookups are switched off explicitly.
        // Clocks and randomness stay (Rust's std needs them for hash seeds and timing).
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(memory_bytes),
            ctx,
            deadline: std::time::Instant::now(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Memory and table limits of one instance. Like wasmtime's `StoreLimits`, but it remembers
/// that it refused a growth, so a trap that follows is reported as "memory limit" rather
/// than as a generic trap.
pub(crate) struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    pub(crate) refused: bool,
    /// The size the instance's linear memory last grew to.
    pub(crate) memory_in_use: usize,
}

impl Limiter {
    fn new(memory_bytes: usize) -> Self {
        Self {
            memory_bytes,
            table_elements: 100_000,
            refused: false,
            memory_in_use: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.refused = true;
            // Trap instead of returning -1 from `memory.grow`: a guest that cannot allocate
            // would abort anyway, and the trap carries the reason.
            wasmtime::bail!(
                "plugin memory limit of {} bytes exceeded",
                self.memory_bytes
            );
        }
        self.memory_in_use = self.memory_in_use.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.refused = true;
            wasmtime::bail!(
                "plugin table limit of {} elements exceeded",
                self.table_elements
            );
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        8
    }
}

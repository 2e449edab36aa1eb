//! What a plugin instance's store holds: its locked-down WASI context, its memory limiter,
//! and the capabilities the operator granted it. The capabilities' logic lives here (and in
//! `kv`, `bot`), behind version-neutral signatures; each `bindings_v0_*` module only
//! adapts it to its WIT version's types. Every import checks its grant first.

pub(super) mod bot;
pub(super) mod http;
pub(super) mod kv;
pub(super) mod llm;
pub(super) mod rooms;

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use self::bot::{BotCtx, Outbox};
use self::http::{HttpCtx, HttpRequest, HttpResponse};
use self::kv::{KvSpace, KvTxn};
use self::rooms::RoomsCtx;
use super::PluginError;
use super::manifest::{Capability, Manifest};
use crate::store::{RoomId, Store};

/// Why a host import failed, in host terms; each bindings module maps it to its WIT
/// `host-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CapError {
    NotGranted,
    TooLarge,
    QuotaExceeded,
    InvalidArgument(String),
    Unavailable(String),
    /// The operator's policy refuses the request (0.2; a 0.1 plugin sees `unavailable`).
    Denied(String),
}

/// Longest log line a plugin may write; longer ones are cut.
const MAX_LOG_LINE: usize = 4096;
/// Most bot posts one hook call may queue.
pub(crate) const MAX_POSTS_PER_CALL: usize = 8;
/// Longest bot post the import accepts (the router's own message limit applies as well).
const MAX_POST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy)]
pub(crate) enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// What every plugin shares, created once per `PluginHost`.
pub(crate) struct Shared {
    pub(crate) outbox: Arc<Outbox>,
    /// The server's governed language model, for plugins granted `llm`.
    pub(crate) llm: Option<Arc<crate::llm::Llm>>,
}

impl Shared {
    pub(crate) fn new(registry: &mut Registry, llm: Option<Arc<crate::llm::Llm>>) -> Self {
        Self {
            outbox: Arc::new(Outbox::new(registry)),
            llm,
        }
    }
}

/// The capabilities that need more than a flag: state loaded when the plugin loads.
#[derive(Default)]
pub(crate) struct Grants {
    /// `Some` exactly when `kv` is granted.
    pub(crate) kv: Option<Arc<KvSpace>>,
    /// `Some` exactly when `bot` is granted.
    pub(crate) bot: Option<Arc<BotCtx>>,
    /// `Some` exactly when `http` is granted.
    pub(crate) http: Option<Arc<HttpCtx>>,
    /// `Some` exactly when `rooms` is granted.
    pub(crate) rooms: Option<Arc<RoomsCtx>>,
    /// `Some` exactly when `llm` is granted (and the server has the service).
    pub(crate) llm: Option<Arc<crate::llm::Llm>>,
}

impl Grants {
    /// Load what `manifest` grants: the bot user (created if missing), the http and rooms
    /// contexts. The kv namespace is the caller's (`PluginHost` keeps one per plugin across
    /// reloads): pass it in when `kv` is granted.
    pub(crate) async fn load(
        manifest: &Manifest,
        store: Arc<dyn Store>,
        shared: &Shared,
        kv: Option<Arc<KvSpace>>,
    ) -> Result<Grants, PluginError> {
        let mut grants = Grants {
            kv,
            ..Grants::default()
        };
        if let Some(settings) = &manifest.bot {
            let bot =
                BotCtx::provision(&manifest.name, settings, store.clone(), &shared.outbox).await?;
            grants.bot = Some(Arc::new(bot));
        }
        if let Some(settings) = &manifest.http {
            grants.http = Some(Arc::new(HttpCtx::new(&manifest.name, settings.clone())));
        }
        if let Some(scope) = manifest.rooms {
            let bot = grants.bot.as_ref().map(|b| b.user.id);
            grants.rooms = Some(Arc::new(RoomsCtx::new(store.clone(), scope, bot)));
        }
        if manifest.grants(Capability::Llm) {
            grants.llm = shared.llm.clone();
        }
        Ok(grants)
    }
}

/// Per-plugin facts every instance of the plugin shares.
pub(crate) struct PluginCtx {
    pub(crate) name: Arc<str>,
    log: bool,
    /// The plugin's log budget per second, shared by all its instances.
    log_budget: std::sync::Mutex<LogBudget>,
    log_lines_per_second: u32,
    log_bytes_per_second: usize,
    /// Log lines dropped over the budget, in all (also rendered at `/metrics`).
    pub(crate) log_dropped: prometheus_client::metrics::counter::Counter,
    config: bool,
    pub(crate) settings: BTreeMap<String, String>,
    pub(crate) kv: Option<Arc<KvSpace>>,
    pub(crate) bot: Option<Arc<BotCtx>>,
    pub(crate) http: Option<Arc<HttpCtx>>,
    pub(crate) rooms: Option<Arc<RoomsCtx>>,
    pub(crate) llm: Option<Arc<crate::llm::Llm>>,
}

impl PluginCtx {
    pub(crate) fn new(
        manifest: &Manifest,
        grants: Grants,
        log_dropped: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Self {
            name: Arc::from(manifest.name.as_str()),
            log: manifest.grants(Capability::Log),
            log_budget: std::sync::Mutex::new(LogBudget::default()),
            log_lines_per_second: manifest.limits.log_lines_per_second,
            log_bytes_per_second: manifest.limits.log_bytes_per_second,
            log_dropped,
            config: manifest.grants(Capability::Config),
            settings: manifest.settings.clone(),
            kv: grants.kv,
            bot: grants.bot,
            http: grants.http,
            rooms: grants.rooms,
            llm: grants.llm,
        }
    }

    pub(crate) fn granted(&self, capability: Capability) -> bool {
        match capability {
            Capability::Log => self.log,
            Capability::Config => self.config,
            Capability::Kv => self.kv.is_some(),
            Capability::Bot => self.bot.is_some(),
            Capability::Http => self.http.is_some(),
            Capability::Rooms => self.rooms.is_some(),
            Capability::Llm => self.llm.is_some(),
        }
    }
}

/// One second's worth of a plugin's log lines and bytes.
#[derive(Default)]
struct LogBudget {
    second: Option<std::time::Instant>,
    lines: u32,
    bytes: usize,
    /// Lines dropped in the current second (reported once when it ends).
    dropped: u64,
}

impl PluginCtx {
    /// Take `bytes` from the plugin's log budget; false when the line must be dropped. The
    /// first line of a new second reports how many were dropped in the one before.
    pub(crate) fn take_log_budget(&self, bytes: usize) -> bool {
        let now = std::time::Instant::now();
        let mut budget = super::lock(&self.log_budget);
        let fresh = budget
            .second
            .is_none_or(|start| now.duration_since(start) >= std::time::Duration::from_secs(1));
        if fresh {
            if budget.dropped > 0 {
                tracing::warn!(
                    target: "plugin",
                    plugin = &*self.name,
                    dropped = budget.dropped,
                    lines_per_second = self.log_lines_per_second,
                    bytes_per_second = self.log_bytes_per_second,
                    "plugin log over its limit: lines dropped"
                );
            }
            *budget = LogBudget {
                second: Some(now),
                ..LogBudget::default()
            };
        }
        if budget.lines >= self.log_lines_per_second
            || budget.bytes.saturating_add(bytes) > self.log_bytes_per_second
        {
            budget.dropped += 1;
            self.log_dropped.inc();
            return false;
        }
        budget.lines += 1;
        budget.bytes += bytes;
        true
    }
}

/// A bot post (or reaction) queued during a hook call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueuedPost {
    pub(crate) room_id: RoomId,
    pub(crate) write: crate::router::hooks::BotWrite,
}

/// What the running hook call has going: where it fired, the posts it queued and the `kv`
/// writes it made (both applied only if the call succeeds).
#[derive(Default)]
pub(crate) struct CallScope {
    /// The room the hook fired in (`bot.reply` posts there).
    pub(crate) room: Option<RoomId>,
    /// The person whose action caused the hook (`llm` calls are theirs).
    pub(crate) invoker: Option<crate::store::UserId>,
    /// Posts queued by `bot.post` / `bot.reply` / `bot.reply-in-thread` and reactions by
    /// `bot.react`, sent after the call returns.
    pub(crate) posts: Vec<QueuedPost>,
    /// This call's `kv` writes.
    pub(crate) kv: KvTxn,
    /// During `file-pre-upload`: the file's bytes (`upload.read`).
    pub(crate) upload: Option<Arc<dyn crate::router::hooks::FileContent>>,
}

/// The most bytes one `upload.read` returns.
pub(crate) const MAX_UPLOAD_READ: u32 = 1024 * 1024;

impl HostState {
    /// `upload.read`: a range of the file the running `file-pre-upload` call is about. The
    /// wait for storage is not guest CPU time (`settle`), but it counts against the call's
    /// wall-clock budget like any wait.
    pub(crate) async fn upload_read(&mut self, offset: u64, len: u32) -> Result<Vec<u8>, CapError> {
        let Some(content) = self.call.upload.clone() else {
            return Err(CapError::InvalidArgument(
                "upload.read is only available during file-pre-upload".into(),
            ));
        };
        if len > MAX_UPLOAD_READ {
            return Err(CapError::TooLarge);
        }
        let started = std::time::Instant::now();
        let result = content.read(offset, len).await;
        self.settle(started);
        result
            .map(|bytes| bytes.to_vec())
            .map_err(CapError::Unavailable)
    }

    fn require(&self, capability: Capability) -> Result<(), CapError> {
        if self.ctx.granted(capability) {
            Ok(())
        } else {
            Err(CapError::NotGranted)
        }
    }

    pub(crate) fn log_write(&self, level: LogLevel, mut message: String) -> Result<(), CapError> {
        self.require(Capability::Log)?;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if !self.ctx.take_log_budget(message.len()) {
            return Err(CapError::QuotaExceeded);
        }
        let plugin = &*self.ctx.name;
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
        Ok(())
    }

    pub(crate) fn config_get(&self, key: &str) -> Result<Option<String>, CapError> {
        self.require(Capability::Config)?;
        Ok(self.ctx.settings.get(key).cloned())
    }

    pub(crate) fn config_keys(&self) -> Result<Vec<String>, CapError> {
        self.require(Capability::Config)?;
        Ok(self.ctx.settings.keys().cloned().collect())
    }

    fn kv(&self) -> Result<Arc<KvSpace>, CapError> {
        self.ctx.kv.clone().ok_or(CapError::NotGranted)
    }

    pub(crate) fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, CapError> {
        self.call.kv.get(&*self.kv()?, key)
    }

    pub(crate) fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), CapError> {
        let space = self.kv()?;
        self.call.kv.set(&space, key, value)
    }

    pub(crate) fn kv_delete(&mut self, key: &str) -> Result<bool, CapError> {
        let space = self.kv()?;
        self.call.kv.delete(&space, key)
    }

    pub(crate) fn kv_keys(&self, prefix: &str, limit: u32) -> Result<Vec<String>, CapError> {
        self.call.kv.keys(&*self.kv()?, prefix, limit)
    }

    pub(crate) fn kv_increment(&mut self, key: String, delta: i64) -> Result<i64, CapError> {
        let space = self.kv()?;
        self.call.kv.increment(&space, key, delta)
    }

    /// Queue a post; the host sends it when the hook returns (see `bot`). The bot must be
    /// a member of the room: checked here (a store read, not counted against the deadline)
    /// so the plugin gets a clear error, and again when the post is sent.
    pub(crate) async fn bot_post(
        &mut self,
        room: Option<RoomId>,
        thread_root: Option<crate::store::EventId>,
        body: String,
    ) -> Result<(), CapError> {
        let bot = self.ctx.bot.clone().ok_or(CapError::NotGranted)?;
        let room = room.ok_or_else(|| {
            CapError::InvalidArgument("this hook did not fire in a room: use post".into())
        })?;
        if body.trim().is_empty() {
            return Err(CapError::InvalidArgument("a post needs a body".into()));
        }
        if body.len() > MAX_POST_BYTES {
            return Err(CapError::TooLarge);
        }
        self.queue_bot_write(
            &bot,
            room,
            crate::router::hooks::BotWrite::Message { thread_root, body },
        )
        .await
    }

    /// Queue a reaction of the bot to `message` in `room` (`bot.react`); sent, like posts,
    /// when the hook returns. The emoji is checked here so the plugin learns of a bad one.
    pub(crate) async fn bot_react(
        &mut self,
        room: RoomId,
        message: crate::store::EventId,
        emoji: String,
    ) -> Result<(), CapError> {
        let bot = self.ctx.bot.clone().ok_or(CapError::NotGranted)?;
        crate::reactions::check(&emoji)
            .map_err(|why| CapError::InvalidArgument(why.to_string()))?;
        self.queue_bot_write(
            &bot,
            room,
            crate::router::hooks::BotWrite::Reaction { message, emoji },
        )
        .await
    }

    /// The per-call quota and the membership check every bot write passes.
    async fn queue_bot_write(
        &mut self,
        bot: &BotCtx,
        room: RoomId,
        write: crate::router::hooks::BotWrite,
    ) -> Result<(), CapError> {
        if self.call.posts.len() >= MAX_POSTS_PER_CALL {
            return Err(CapError::QuotaExceeded);
        }
        let started = std::time::Instant::now();
        let member = bot.is_member(room).await;
        self.settle(started);
        if !member? {
            return Err(CapError::Denied(format!(
                "the bot is not a member of room {room}"
            )));
        }
        self.call.posts.push(QueuedPost {
            room_id: room,
            write,
        });
        Ok(())
    }

    /// Send an HTTP request under the plugin's policy. Waiting for the network is not the
    /// plugin's CPU time: the call's deadline moves by the time spent here.
    pub(crate) async fn http_send(
        &mut self,
        request: HttpRequest,
    ) -> Result<HttpResponse, CapError> {
        let http = self.ctx.http.clone().ok_or(CapError::NotGranted)?;
        let started = std::time::Instant::now();
        let result = http.send(request).await;
        self.deadline += started.elapsed();
        result
    }

    /// The `rooms` context, and the time the lookup starts (see `settle`).
    pub(crate) fn rooms(&self) -> Result<(Arc<RoomsCtx>, std::time::Instant), CapError> {
        let rooms = self.ctx.rooms.clone().ok_or(CapError::NotGranted)?;
        Ok((rooms, std::time::Instant::now()))
    }

    /// After an async lookup that started at `started`: its wait is not the plugin's CPU
    /// time, so the call's deadline moves by it.
    pub(crate) fn settle(&mut self, started: std::time::Instant) {
        self.deadline += started.elapsed();
    }

    pub(crate) fn bot_user_id(&self) -> Result<i64, CapError> {
        self.ctx
            .bot
            .as_ref()
            .map(|bot| bot.user.id)
            .ok_or(CapError::NotGranted)
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
    /// Epoch ticks seen while guest code ran (a guest suspended in a wait sees none): the
    /// call's running time, in ticks.
    pub(crate) ticks: u32,
    pub(crate) call: CallScope,
    /// What the guest wrote to stdout and stderr (taken after each call).
    pub(crate) output: super::guest_output::GuestOutput,
}

impl HostState {
    pub(crate) fn new(ctx: Arc<PluginCtx>, memory_bytes: usize, max_random_bytes: u64) -> Self {
        // Nothing is inherited from the server: no arguments, no environment, no stdin, no
        // preopened directories; sockets and name lookups are switched off explicitly.
        // stdout and stderr go to a bounded buffer the runtime logs after each call.
        // Clocks and randomness stay (Rust's std needs them for hash seeds and timing), but
        // one random request is bounded: the host generates it synchronously, outside the
        // guest's CPU deadline, so 64 MiB would hold a runtime thread for half a second.
        let output = super::guest_output::GuestOutput::default();
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(max_random_bytes)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(memory_bytes),
            ctx,
            deadline: std::time::Instant::now(),
            ticks: 0,
            call: CallScope::default(),
            output,
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

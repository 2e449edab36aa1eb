//! One loaded plugin: its compiled component, its warm instances, and the single place
//! where plugin code runs (`LoadedPlugin::call`), under a CPU deadline, a wall-clock budget,
//! a memory limit and the plugin's own concurrency cap, with every failure classified,
//! logged, counted and fed to the (scoped) circuit breaker.
//!
//! Two clocks bound a call. The **CPU deadline** (`timeout_ms`) is checked on every epoch
//! tick while guest code runs, so a busy loop stops within a tick of it; time spent waiting
//! in host imports moves it on. The **wall-clock budget** (`wall_timeout_ms`, or
//! `observer_timeout_ms` for `message-delivered`) covers everything — computing, WASI
//! waits on clocks and pollables, and host-import waits — because it wraps the whole call
//! future: when it runs out the future is dropped, which unwinds the guest's fiber wherever
//! it is suspended, and the instance (with its pool slot) is discarded.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

use super::breaker::{Admit, Breaker, BreakerConfig, Circuit, Scope};
pub(crate) use super::call::{Request, Response};
use super::capabilities::{Grants, HostState, PluginCtx};
use super::engine::EngineHandle;
use super::manifest::Manifest;
use super::metrics::{Counters, FailureKind, FailureLabels, HookMetrics, Metrics, PluginLabels};
use super::sender_time::SenderTime;
use super::slots::Slots;
use super::{PluginError, lock};
use super::{bindings_v0_1 as v0_1, bindings_v0_2 as v0_2, bindings_v0_3 as v0_3};
use crate::config::PluginsConfig;
use crate::router::hooks::HookKind;
use crate::store::UserId;

/// The WIT version a component was built against, with its linked-once pre-instance.
enum Pre {
    V0_1(v0_1::PluginPre<HostState>),
    V0_2(v0_2::PluginPre<HostState>),
    V0_3(v0_3::PluginPre<HostState>),
}

/// An instance's generated bindings, of the component's WIT version.
enum Bindings {
    V0_1(v0_1::Plugin),
    V0_2(v0_2::Plugin),
    V0_3(v0_3::Plugin),
}

impl Bindings {
    async fn implemented_hooks(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Vec<HookKind>> {
        match self {
            Self::V0_1(b) => v0_1::implemented_hooks(b, store).await,
            Self::V0_2(b) => v0_2::implemented_hooks(b, store).await,
            Self::V0_3(b) => v0_3::implemented_hooks(b, store).await,
        }
    }

    async fn call(
        &self,
        store: &mut Store<HostState>,
        request: Request<'_>,
    ) -> wasmtime::Result<Response> {
        match self {
            Self::V0_1(b) => v0_1::call(b, store, request).await,
            Self::V0_2(b) => v0_2::call(b, store, request).await,
            Self::V0_3(b) => v0_3::call(b, store, request).await,
        }
    }
}

/// A live instance, ready for the next call.
struct Warm {
    store: Store<HostState>,
    bindings: Bindings,
    calls: u64,
}

pub(crate) struct LoadedPlugin {
    pub(crate) manifest: Manifest,
    /// The hooks that are both implemented by the component and allowed by the manifest.
    pub(crate) hooks: Vec<HookKind>,
    pub(crate) counters: Counters,
    pub(crate) breaker: Breaker,
    engine: Engine,
    pre: Pre,
    /// `switchboard:plugin@0.1.0`, `@0.2.0` or `@0.3.0`, for logs and the admin API.
    pub(crate) interface: &'static str,
    ctx: Arc<PluginCtx>,
    pool: std::sync::Mutex<Vec<Warm>>,
    max_idle: usize,
    recycle_after: u64,
    timeout: Duration,
    /// Wall-clock budgets: for hooks someone waits for, and for `message-delivered`.
    wall_timeout: Duration,
    observer_timeout: Duration,
    /// The plugin's call slots: how many of its calls (and so instances) run at once, and
    /// one sender's share of them.
    slots: Slots,
    /// Plugin time per sender per second.
    sender_time: SenderTime,
    /// One epoch tick: the unit in which a call's running time is measured.
    tick: Duration,
    /// The runtime is shutting down: no guest code may start.
    stopped: Arc<std::sync::atomic::AtomicBool>,
    metrics: Arc<Metrics>,
    /// Per hook, in `HookKind::ALL` order.
    hook_metrics: [HookMetrics; 8],
    /// The newest failed call, for the admin API and console.
    last_failure: std::sync::Mutex<Option<LastFailure>>,
}

/// A failed call as admins see it: when, which hook, what kind, and the detail — the
/// runtime's error and what the guest wrote before it (a panic message, a traceback).
/// Never shown to the sender, who gets only the kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LastFailure {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub hook: HookKind,
    pub kind: &'static str,
    pub detail: String,
}

/// The last `max` bytes of `text`, cut on a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The deadline for a plugin's first instance and its `implemented-hooks` call at load.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed call. Only the kind leaves this module: the guest's error text is logged here
/// and never reaches clients.
#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) kind: FailureKind,
}

impl LoadedPlugin {
    /// Link the component, create its first instance (which also tells us the hooks it
    /// implements) and keep that instance warm.
    pub(crate) async fn new(
        engine: &EngineHandle,
        component: Component,
        manifest: Manifest,
        grants: Grants,
        config: &PluginsConfig,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, PluginError> {
        let name = manifest.name.clone();
        let incompatible = |message: String| PluginError::Incompatible {
            name: name.clone(),
            message,
        };
        // The version of the `hooks` interface the component exports picks the bindings.
        let engine_err = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let mut linker = Linker::new(engine.engine());
        let (pre, interface) = if component
            .get_export_index(None, v0_3::HOOKS_EXPORT)
            .is_some()
        {
            v0_3::add_to_linker(&mut linker).map_err(engine_err)?;
            let instance_pre = linker
                .instantiate_pre(&component)
                .map_err(|e| incompatible(format!("cannot link: {e:#}")))?;
            let pre =
                v0_3::PluginPre::new(instance_pre).map_err(|e| incompatible(format!("{e:#}")))?;
            (Pre::V0_3(pre), "switchboard:plugin@0.3.0")
        } else if component
            .get_export_index(None, v0_2::HOOKS_EXPORT)
            .is_some()
        {
            v0_2::add_to_linker(&mut linker).map_err(engine_err)?;
            let instance_pre = linker
                .instantiate_pre(&component)
                .map_err(|e| incompatible(format!("cannot link: {e:#}")))?;
            let pre =
                v0_2::PluginPre::new(instance_pre).map_err(|e| incompatible(format!("{e:#}")))?;
            (Pre::V0_2(pre), "switchboard:plugin@0.2.0")
        } else if component
            .get_export_index(None, v0_1::HOOKS_EXPORT)
            .is_some()
        {
            v0_1::add_to_linker(&mut linker).map_err(engine_err)?;
            let instance_pre = linker
                .instantiate_pre(&component)
                .map_err(|e| incompatible(format!("cannot link: {e:#}")))?;
            let pre =
                v0_1::PluginPre::new(instance_pre).map_err(|e| incompatible(format!("{e:#}")))?;
            (Pre::V0_1(pre), "switchboard:plugin@0.1.0")
        } else {
            return Err(incompatible(format!(
                "the component exports none of `{}`, `{}` or `{}`; this server supports WIT \
                 switchboard:plugin@0.1.0, @0.2.0 and @0.3.0",
                v0_3::HOOKS_EXPORT,
                v0_2::HOOKS_EXPORT,
                v0_1::HOOKS_EXPORT
            )));
        };
        let cooldown = (config.breaker_cooldown_secs > 0)
            .then(|| Duration::from_secs(config.breaker_cooldown_secs));
        let limits = &manifest.limits;
        let (wall_timeout_ms, observer_timeout_ms) = limits.wall_budgets();
        let mut plugin = Self {
            hooks: Vec::new(),
            counters: Counters::default(),
            breaker: Breaker::new(BreakerConfig {
                threshold: config.breaker_failures,
                scope_threshold: config.breaker_scope_failures,
                min_scopes: config.breaker_min_scopes,
                window: Duration::from_secs(config.breaker_window_secs),
                cooldown,
            }),
            engine: engine.engine().clone(),
            pre,
            interface,
            ctx: Arc::new(PluginCtx::new(
                &manifest,
                grants,
                metrics
                    .log_dropped
                    .get_or_create(&PluginLabels {
                        plugin: manifest.name.clone(),
                    })
                    .clone(),
            )),
            pool: std::sync::Mutex::new(Vec::new()),
            max_idle: config.max_idle_instances.max(1),
            recycle_after: config.recycle_after_calls.max(1),
            timeout: Duration::from_millis(limits.timeout_ms),
            wall_timeout: Duration::from_millis(wall_timeout_ms),
            observer_timeout: Duration::from_millis(observer_timeout_ms),
            slots: Slots::new(
                limits.max_concurrent_calls,
                limits.max_concurrent_calls_per_sender,
            ),
            sender_time: SenderTime::new(limits.sender_time_ms_per_second),
            tick: Duration::from_millis(config.epoch_tick_ms.max(1)),
            stopped: engine.stopped_flag(),
            metrics: metrics.clone(),
            hook_metrics: HookKind::ALL.map(|hook| metrics.for_hook(&manifest.name, hook.as_str())),
            last_failure: std::sync::Mutex::new(None),
            manifest,
        };
        // A new version (a reload) starts with its circuit closed: so does its gauge.
        plugin.set_circuit_gauge(false);
        // Loading is off the hot path, and a busy machine at start-up must not make a plugin
        // fail to load: the first instance gets a generous deadline.
        let load_deadline = Instant::now() + plugin.timeout.max(LOAD_TIMEOUT);
        let mut warm = plugin
            .instantiate(load_deadline)
            .await
            .map_err(|e| incompatible(format!("{e:#}")))?;
        let implemented = warm.bindings.implemented_hooks(&mut warm.store).await;
        // What the guest wrote while it set itself up: with a failure, its own words (an
        // exception's traceback, a panic message) are the useful part of the error.
        let said = warm.store.data().output.take();
        let implemented = implemented.map_err(|e| {
            let said = said
                .map(|w| format!("\nguest output (last lines):\n{}", tail(&w.text, 2048)))
                .unwrap_or_default();
            incompatible(format!("implemented-hooks failed: {e:#}{said}"))
        })?;
        plugin.hooks = effective_hooks(&plugin.manifest, &implemented);
        if !plugin.manifest.commands.is_empty() && !plugin.hooks.contains(&HookKind::Command) {
            return Err(incompatible(
                "the manifest registers commands but the plugin does not implement the command \
                 hook"
                    .into(),
            ));
        }
        lock(&plugin.pool).push(warm);
        Ok(plugin)
    }

    pub(crate) fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Log lines dropped over the plugin's log rate limit (this version's and, since the
    /// metric is per plugin name, every earlier version's).
    pub(crate) fn log_dropped(&self) -> u64 {
        self.ctx.log_dropped.get()
    }

    pub(crate) fn implements(&self, hook: HookKind) -> bool {
        self.hooks.contains(&hook)
    }

    /// The plugin's bot user, if it was granted `bot`.
    pub(crate) fn bot_user(&self) -> Option<UserId> {
        self.ctx.bot.as_ref().map(|bot| bot.user.id)
    }

    /// Hand bot posts to the router (a no-op without `bot`, where nothing can be queued).
    pub(crate) fn dispatch_posts(&self, posts: Vec<super::capabilities::QueuedPost>, depth: u32) {
        if let Some(bot) = &self.ctx.bot
            && !posts.is_empty()
        {
            bot.dispatch(posts, depth);
        }
    }

    /// Whether `request` is about something this plugin's own bot did: such calls are
    /// skipped, so a bot never triggers itself.
    pub(crate) fn is_own(&self, request: &Request<'_>) -> bool {
        self.bot_user()
            .is_some_and(|bot| request.actor() == Some(bot))
    }

    /// A fresh instance. Instantiation runs guest start-up code too, so it is bounded by
    /// `deadline` like a call.
    async fn instantiate(&self, deadline: Instant) -> wasmtime::Result<Warm> {
        let mut state = HostState::new(
            self.ctx.clone(),
            self.manifest.limits.memory_bytes(),
            self.manifest.limits.max_random_bytes,
        );
        state.deadline = deadline;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // On every epoch tick that passes while guest code runs: stop the call if its
        // deadline is over, otherwise yield to the tokio scheduler. So a runaway plugin is
        // stopped within one tick of its deadline, and even while it runs it never holds a
        // tokio worker for longer than a tick.
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            state.ticks = state.ticks.saturating_add(1);
            if Instant::now() >= state.deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        let bindings = match &self.pre {
            Pre::V0_1(pre) => Bindings::V0_1(pre.instantiate_async(&mut store).await?),
            Pre::V0_2(pre) => Bindings::V0_2(pre.instantiate_async(&mut store).await?),
            Pre::V0_3(pre) => Bindings::V0_3(pre.instantiate_async(&mut store).await?),
        };
        Counters::bump(&self.counters.instances_created);
        Ok(Warm {
            store,
            bindings,
            calls: 0,
        })
    }

    /// Make one hook call on a warm instance of this plugin, under its deadline, wall-clock
    /// budget and limits. `depth` is the bot depth of what triggered the call (0: a
    /// person); bot posts and `kv` writes the call made are applied when it succeeds, and
    /// dropped when it fails.
    ///
    /// An instance whose call failed is dropped, never reused: a trapped store is dead, and
    /// one that hit a limit may be half-way through changing its own state.
    pub(crate) async fn call(
        &self,
        request: Request<'_>,
        depth: u32,
    ) -> Result<Response, CallError> {
        let hook = request.hook();
        let scope = request.scope();
        if self.stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(CallError {
                kind: FailureKind::stopped,
            });
        }
        let admit = self.breaker.admit(scope);
        if let Admit::No(_) = admit {
            self.metrics
                .failures
                .get_or_create(&self.failure_labels(hook, FailureKind::circuit_open))
                .inc();
            return Err(CallError {
                kind: FailureKind::circuit_open,
            });
        }
        let metrics = self.hook_metrics(hook);
        metrics.calls.inc();
        Counters::bump(&self.counters.calls);
        // Whose plugin time this call spends (nobody's for observers: nobody waits there).
        let spender = scope.sender.filter(|_| hook != HookKind::MessageDelivered);
        if let Some(sender) = spender
            && self.sender_time.exhausted(sender)
        {
            return Err(self.failed(
                hook,
                admit,
                scope,
                FailureKind::overloaded,
                format!(
                    "the sender used this plugin's {} ms per second",
                    self.manifest.limits.sender_time_ms_per_second
                ),
            ));
        }

        let started = Instant::now();
        let budget = if hook == HookKind::MessageDelivered {
            self.observer_timeout
        } else {
            self.wall_timeout
        };
        // Set once the call holds a slot: a budget that runs out before that was spent
        // waiting behind the plugin's own other calls (`overloaded`), not in this one.
        let progress = Progress::default();
        // Most hook calls finish on their first poll (no wait, no epoch yield), so the
        // timer is armed only for a call still pending after it: the common path pays
        // nothing for the wall-clock budget. The future is pinned where it is built, so it
        // is not copied on the way.
        let mut run = std::pin::pin!(self.run(request, depth, scope, started, &progress));
        let outcome = match std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await {
            Poll::Ready(value) => Ok(value),
            Poll::Pending => {
                tokio::time::timeout_at(tokio::time::Instant::from_std(started + budget), run).await
            }
        };
        let elapsed = started.elapsed();
        metrics.latency.observe(elapsed.as_secs_f64());
        // A call that ran through no tick (nearly every call of a healthy plugin) spent no
        // measurable time: nothing to record.
        let ticks = progress.ticks.load(Ordering::Acquire);
        if ticks > 0
            && let Some(sender) = spender
        {
            self.sender_time.record(sender, self.tick * ticks);
        }
        Counters::add(
            &self.counters.call_micros,
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        );
        match outcome {
            Ok(Ok(value)) => {
                self.breaker.record_success(admit);
                if admit == Admit::Trial(Circuit::Plugin) {
                    // The trial closed the plugin-wide circuit: the gauge must say so now,
                    // not at the next failure.
                    self.set_circuit_gauge(false);
                }
                Ok(value)
            }
            Ok(Err((kind, detail))) => Err(self.failed(hook, admit, scope, kind, detail)),
            Err(_elapsed) if progress.running.load(Ordering::Acquire) => Err(self.failed(
                hook,
                admit,
                scope,
                FailureKind::wall_timeout,
                format!("the call ran past its wall-clock budget of {budget:?}"),
            )),
            Err(_elapsed) => Err(self.failed(
                hook,
                admit,
                scope,
                FailureKind::overloaded,
                format!(
                    "all {} call slots stayed busy for the whole budget of {budget:?}",
                    self.manifest.limits.max_concurrent_calls
                ),
            )),
        }
    }

    /// The call itself: take a slot, an instance, run the guest, apply what it queued.
    /// Dropped half-way when the wall-clock budget runs out, which releases the slot and
    /// discards the instance wherever the guest was.
    async fn run(
        &self,
        request: Request<'_>,
        depth: u32,
        scope: Scope,
        started: Instant,
        progress: &Progress,
    ) -> Result<Response, (FailureKind, String)> {
        let taken = match self.slots.try_take(scope.sender) {
            Ok(Some(slot)) => Ok((slot, false)),
            Ok(None) => self.slots.take(scope.sender).await,
            Err(refused) => Err(refused),
        };
        let (_slot, waited) = taken.map_err(|_| {
            (
                FailureKind::overloaded,
                format!(
                    "the sender already holds {} of this plugin's call slots",
                    self.manifest.limits.max_concurrent_calls_per_sender
                ),
            )
        })?;
        progress.running.store(true, Ordering::Release);
        // The CPU deadline counts from when the call got its slot (almost always at once,
        // and then no second clock read is spent on it).
        let begun = if waited { Instant::now() } else { started };
        let pooled = lock(&self.pool).pop();
        let mut warm = match pooled {
            Some(warm) => warm,
            None => self
                .instantiate(begun + self.timeout)
                .await
                .map_err(|e| (classify_instantiate(&e), format!("{e:#}")))?,
        };
        {
            let state = warm.store.data_mut();
            state.deadline = begun + self.timeout;
            // Whatever a failed call left here went with its instance; a reused instance's
            // scope was emptied when its last call succeeded.
            state.call.room = request.room();
            state.call.invoker = request.invoker();
            state.call.upload = request.upload_content();
        }
        warm.store.set_epoch_deadline(1);
        let result = warm.bindings.call(&mut warm.store, request).await;
        let state = warm.store.data_mut();
        let output = state.output.take();
        if let Some(written) = &output {
            self.log_guest_output(request.hook(), written);
        }
        progress
            .ticks
            .store(std::mem::take(&mut state.ticks), Ordering::Release);
        let call = &mut state.call;
        // The file's reader must not outlive its call in a pooled instance.
        call.upload = None;
        let (posts, kv) = (
            std::mem::take(&mut call.posts),
            std::mem::take(&mut call.kv),
        );
        let value = match result {
            Ok(value) => value,
            Err(e) => {
                let kind = classify(&e, warm.store.data().limiter.refused);
                // What the guest said before it failed (a panic message, a traceback) is
                // the most useful part of the record.
                let said = output
                    .map(|w| format!("\nguest output (last lines):\n{}", tail(&w.text, 2048)))
                    .unwrap_or_default();
                return Err((kind, format!("{e:#}{said}")));
            }
        };
        if let Some(space) = &self.ctx.kv {
            space.commit(kv).map_err(|_| {
                (
                    FailureKind::kv_quota,
                    "the call's kv writes together exceed the namespace's quota".to_string(),
                )
            })?;
        }
        self.dispatch_posts(posts, depth);
        warm.calls += 1;
        if warm.calls < self.recycle_after {
            let mut pool = lock(&self.pool);
            if pool.len() < self.max_idle {
                pool.push(warm);
            }
        }
        Ok(value)
    }

    /// A call's stdout/stderr into the server's log, a line per line, tagged with the plugin
    /// and hook, within the plugin's log budget (what is over it is counted as dropped).
    fn log_guest_output(&self, hook: HookKind, written: &super::guest_output::Written) {
        for line in written.text.lines().filter(|l| !l.trim().is_empty()) {
            if !self.ctx.take_log_budget(line.len()) {
                break;
            }
            tracing::info!(
                plugin = %self.manifest.name,
                hook = hook.as_str(),
                "guest output: {line}"
            );
        }
        if written.dropped > 0 {
            tracing::warn!(
                plugin = %self.manifest.name,
                hook = hook.as_str(),
                dropped_bytes = written.dropped,
                "guest output over {} bytes in one call was dropped",
                super::guest_output::MAX_PER_CALL
            );
        }
    }

    /// The newest failed call, if any.
    pub(crate) fn last_failure(&self) -> Option<LastFailure> {
        lock(&self.last_failure).clone()
    }

    /// Idle warm instances, and the largest linear memory among them.
    pub(crate) fn pool_stats(&self) -> (usize, usize) {
        let pool = lock(&self.pool);
        let memory = pool
            .iter()
            .map(|w| w.store.data().limiter.memory_in_use)
            .max()
            .unwrap_or(0);
        (pool.len(), memory)
    }

    /// `switchboard_plugin_circuit_open{plugin}`: 1 while the plugin-wide circuit is open.
    fn set_circuit_gauge(&self, open: bool) {
        self.metrics
            .circuit_open
            .get_or_create(&PluginLabels {
                plugin: self.manifest.name.clone(),
            })
            .set(i64::from(open));
    }

    pub(crate) fn hook_metrics(&self, hook: HookKind) -> &HookMetrics {
        let i = HookKind::ALL.iter().position(|h| *h == hook).unwrap_or(0);
        &self.hook_metrics[i]
    }

    /// Account for a failure the chain found in a returned value (size, shape).
    pub(crate) fn output_failed(
        &self,
        hook: HookKind,
        scope: Scope,
        kind: FailureKind,
        detail: String,
    ) -> CallError {
        self.failed(hook, Admit::Yes, scope, kind, detail)
    }

    fn failure_labels(&self, hook: HookKind, kind: FailureKind) -> FailureLabels {
        FailureLabels {
            plugin: self.manifest.name.clone(),
            hook: hook.as_str(),
            kind,
        }
    }

    fn failed(
        &self,
        hook: HookKind,
        admit: Admit,
        scope: Scope,
        kind: FailureKind,
        detail: String,
    ) -> CallError {
        self.metrics
            .failures
            .get_or_create(&self.failure_labels(hook, kind))
            .inc();
        Counters::bump(&self.counters.failures);
        match kind {
            FailureKind::timeout | FailureKind::wall_timeout => {
                Counters::bump(&self.counters.timeouts)
            }
            FailureKind::memory
            | FailureKind::stack_overflow
            | FailureKind::output_too_large
            | FailureKind::kv_quota => Counters::bump(&self.counters.limit_exceeded),
            FailureKind::overloaded | FailureKind::pool_exhausted => {
                Counters::bump(&self.counters.overloaded)
            }
            _ => Counters::bump(&self.counters.traps),
        }
        if kind == FailureKind::overloaded {
            // Refused for load (a sender over their share or time budget, all slots busy):
            // counted, but not a line per refusal, or a flooding sender would flood the
            // server's log instead.
            tracing::debug!(
                plugin = %self.manifest.name,
                hook = hook.as_str(),
                detail = %detail,
                "plugin call refused for load"
            );
        } else {
            tracing::warn!(
                plugin = %self.manifest.name,
                hook = hook.as_str(),
                kind = kind.as_str(),
                policy = self.manifest.failure_policy.as_str(),
                detail = %detail,
                "plugin call failed"
            );
            *lock(&self.last_failure) = Some(LastFailure {
                at: crate::store::now_millis(),
                hook,
                kind: kind.as_str(),
                detail: tail(&detail, 4096).to_string(),
            });
        }
        // Waiting for a slot, or for a pool slot the whole engine ran out of, is load, not
        // a fault of this call: it is counted, but never opens a circuit.
        let opened = if kind.blames_the_call() {
            self.breaker.record_failure(admit, scope)
        } else {
            None
        };
        match opened {
            Some(Circuit::Plugin) => {
                self.set_circuit_gauge(true);
                tracing::error!(
                    plugin = %self.manifest.name,
                    policy = self.manifest.failure_policy.as_str(),
                    "PLUGIN DISABLED: circuit breaker opened after repeated failures from \
                     several rooms and senders; its failure policy now decides every message \
                     it would have seen"
                );
            }
            Some(circuit) => {
                self.metrics
                    .scope_circuits_opened
                    .get_or_create(&PluginLabels {
                        plugin: self.manifest.name.clone(),
                    })
                    .inc();
                tracing::warn!(
                    plugin = %self.manifest.name,
                    scope = ?circuit,
                    policy = self.manifest.failure_policy.as_str(),
                    "plugin circuit opened for one scope after its repeated failures; the \
                     plugin still serves everyone else"
                );
            }
            None if matches!(admit, Admit::Trial(_)) => {
                tracing::error!(plugin = %self.manifest.name, "plugin failed its trial call; circuit stays open");
            }
            None => {}
        }
        if !self.breaker.is_open() {
            self.set_circuit_gauge(false);
        }
        CallError { kind }
    }
}

/// What the caller of `run` learns even when the call is abandoned half-way.
#[derive(Default)]
struct Progress {
    /// The call got a slot (so a budget that ran out was spent running, not queueing).
    running: AtomicBool,
    /// Epoch ticks the guest ran through (its running time, not its waits); an abandoned
    /// call reports none (it was waiting: running past the CPU deadline ends it first).
    ticks: AtomicU32,
}

/// An instantiation that failed because the engine-wide pool is full is load, not the
/// plugin's fault.
fn classify_instantiate(error: &wasmtime::Error) -> FailureKind {
    if error
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        FailureKind::pool_exhausted
    } else {
        FailureKind::instantiate
    }
}

fn classify(error: &wasmtime::Error, memory_refused: bool) -> FailureKind {
    if memory_refused {
        return FailureKind::memory;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => FailureKind::timeout,
        Some(Trap::StackOverflow) => FailureKind::stack_overflow,
        _ => FailureKind::trap,
    }
}

/// Hooks the component implements, narrowed to those the manifest lists (if it lists any).
fn effective_hooks(manifest: &Manifest, implemented: &[HookKind]) -> Vec<HookKind> {
    HookKind::ALL
        .into_iter()
        .filter(|hook| {
            let implements = implemented.contains(hook);
            let allowed = manifest
                .hooks
                .as_ref()
                .is_none_or(|hooks| hooks.contains(hook));
            if allowed && !implements && manifest.hooks.is_some() {
                tracing::warn!(
                    plugin = %manifest.name,
                    hook = hook.as_str(),
                    "the manifest lists a hook the plugin does not implement; it will not be called"
                );
            }
            implements && allowed
        })
        .collect()
}

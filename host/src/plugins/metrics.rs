//! Per-plugin metrics in the server's prometheus registry (rendered at `/metrics`), plus the
//! same counters as plain atomics for the admin API's status view.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Why a plugin call failed. Each is logged and counted; the plugin's failure policy
/// decides what happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FailureKind {
    /// The guest trapped (a panic, `unreachable`, a bad memory access...).
    trap,
    /// The call ran past its CPU deadline.
    timeout,
    /// The call ran past its wall-clock budget (waiting included) and was abandoned.
    wall_timeout,
    /// The plugin's call slots stayed busy for the whole budget: the call never started.
    overloaded,
    /// The engine-wide instance pool was full: the call never started.
    pool_exhausted,
    /// The call's `kv` writes, together, would exceed the namespace's quota.
    kv_quota,
    /// The guest tried to grow its memory past its limit.
    memory,
    /// The guest exhausted its stack.
    stack_overflow,
    /// The answer was larger than the plugin's `max_output_bytes`.
    output_too_large,
    /// The answer was malformed (e.g. an invalid reject code).
    invalid_output,
    /// A fresh instance could not be created.
    instantiate,
    /// The plugin's circuit breaker is open; it was not called.
    circuit_open,
    /// The plugin runtime was shut down; it was not called.
    stopped,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::trap => "trap",
            Self::timeout => "timeout",
            Self::wall_timeout => "wall_timeout",
            Self::overloaded => "overloaded",
            Self::pool_exhausted => "pool_exhausted",
            Self::kv_quota => "kv_quota",
            Self::memory => "memory",
            Self::stack_overflow => "stack_overflow",
            Self::output_too_large => "output_too_large",
            Self::invalid_output => "invalid_output",
            Self::instantiate => "instantiate",
            Self::circuit_open => "circuit_open",
            Self::stopped => "stopped",
        }
    }
}

impl FailureKind {
    /// Whether the failure says something about the call that was made (and so counts
    /// towards a circuit breaker). A call that never ran because of load, an open circuit
    /// or shutdown says nothing about the plugin's behaviour.
    pub(crate) fn blames_the_call(self) -> bool {
        !matches!(
            self,
            Self::overloaded | Self::pool_exhausted | Self::circuit_open | Self::stopped
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct HookLabels {
    pub(crate) plugin: String,
    pub(crate) hook: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct FailureLabels {
    pub(crate) plugin: String,
    pub(crate) hook: &'static str,
    pub(crate) kind: FailureKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct PluginLabels {
    pub(crate) plugin: String,
}

fn latency_histogram() -> Histogram {
    // 1 µs .. ~4 s: a warm no-op call is around a microsecond, a runaway one is stopped at
    // its deadline.
    Histogram::new(exponential_buckets(1e-6, 4.0, 12))
}

/// The prometheus side; cheap to clone (every family is an `Arc` inside).
pub(crate) struct Metrics {
    pub(crate) calls: Family<HookLabels, Counter>,
    pub(crate) rejects: Family<HookLabels, Counter>,
    pub(crate) modifications: Family<HookLabels, Counter>,
    pub(crate) failures: Family<FailureLabels, Counter>,
    pub(crate) latency: Family<HookLabels, Histogram, fn() -> Histogram>,
    pub(crate) circuit_open: Family<PluginLabels, Gauge>,
    pub(crate) scope_circuits_opened: Family<PluginLabels, Counter>,
    observer_dropped: Counter,
    pub(crate) observer_dropped_by_plugin: Family<PluginLabels, Counter>,
    pub(crate) log_dropped: Family<PluginLabels, Counter>,
}

impl Metrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let m = Self {
            calls: Family::default(),
            rejects: Family::default(),
            modifications: Family::default(),
            failures: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            circuit_open: Family::default(),
            scope_circuits_opened: Family::default(),
            observer_dropped: Counter::default(),
            observer_dropped_by_plugin: Family::default(),
            log_dropped: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("switchboard_plugin");
        r.register("calls", "Hook calls made to a plugin", m.calls.clone());
        r.register(
            "rejects",
            "Messages or sessions a plugin refused",
            m.rejects.clone(),
        );
        r.register(
            "modifications",
            "Messages a plugin modified",
            m.modifications.clone(),
        );
        r.register(
            "failures",
            "Plugin calls that failed (trap, timeout, limit, bad output), by kind",
            m.failures.clone(),
        );
        r.register(
            "call_duration_seconds",
            "Wall time of one hook call",
            m.latency.clone(),
        );
        r.register(
            "circuit_open",
            "1 while a plugin's circuit breaker keeps it from being called",
            m.circuit_open.clone(),
        );
        r.register(
            "observer_dropped",
            "message-delivered events dropped because an observer's queue was full",
            m.observer_dropped.clone(),
        );
        r.register(
            "observer_dropped_by_plugin",
            "message-delivered events dropped because this plugin's own queue was full",
            m.observer_dropped_by_plugin.clone(),
        );
        r.register(
            "scope_circuits_opened",
            "Circuits opened for one room or one sender (the plugin kept serving the rest)",
            m.scope_circuits_opened.clone(),
        );
        r.register(
            "log_dropped",
            "Plugin log lines dropped over the plugin's log rate limit",
            m.log_dropped.clone(),
        );
        m
    }

    pub(crate) fn dropped_one(&self, plugin: &str) {
        self.observer_dropped.inc();
        self.observer_dropped_by_plugin
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
            })
            .inc();
    }

    pub(crate) fn observer_dropped(&self) -> u64 {
        self.observer_dropped.get()
    }
}

/// The metrics of one plugin's hook, resolved once at load so a call does not look up
/// (and allocate) label sets.
#[derive(Clone)]
pub(crate) struct HookMetrics {
    pub(crate) calls: Counter,
    pub(crate) rejects: Counter,
    pub(crate) modifications: Counter,
    pub(crate) latency: Histogram,
}

impl Metrics {
    pub(crate) fn for_hook(&self, plugin: &str, hook: &'static str) -> HookMetrics {
        let labels = HookLabels {
            plugin: plugin.to_string(),
            hook,
        };
        HookMetrics {
            calls: self.calls.get_or_create(&labels).clone(),
            rejects: self.rejects.get_or_create(&labels).clone(),
            modifications: self.modifications.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
        }
    }
}

/// The counters of one plugin, for [`PluginStatus`](super::PluginStatus).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) rejects: AtomicU64,
    pub(crate) modifications: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) traps: AtomicU64,
    pub(crate) limit_exceeded: AtomicU64,
    pub(crate) instances_created: AtomicU64,
    pub(crate) call_micros: AtomicU64,
    /// Calls that never ran for load (`overloaded`, `pool_exhausted`).
    pub(crate) overloaded: AtomicU64,
    /// `message-delivered` events dropped because this plugin's queue was full.
    pub(crate) observer_dropped: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

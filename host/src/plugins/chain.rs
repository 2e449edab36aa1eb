//! The hook chains: plugins in the operator's priority order, each hook's chain precomputed,
//! held as an immutable snapshot that a reload can replace atomically. Also the
//! implementation of the router's [`Hooks`] trait, with the failure policies and the
//! validation of everything a plugin returns.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::Serialize;

use super::bindings_v0_1::{self as v0_1, Decision as WitDecision, PreSendOutcome as WitOutcome};
use super::instance::{CallError, LoadedPlugin, Request, Response};
use super::manifest::{Capability, FailurePolicy, HookName};
use super::metrics::{Counters, FailureKind};
use super::{PluginHost, read_lock};
use crate::router::hooks::{Decision, HookKind, Hooks, PreSend, PreSendOutcome};
use crate::store::{Event, Metadata, Room, User};

/// Metadata a plugin may set on a message: this many entries, keys this long.
const MAX_METADATA_ENTRIES: usize = 64;
const MAX_METADATA_KEY: usize = 128;
/// Longest reject or deny reason.
const MAX_REASON: usize = 1024;
/// Longest reject code.
const MAX_CODE: usize = 64;

/// The current snapshot, swapped whole on reload.
pub(crate) struct ChainCell(RwLock<Arc<Chain>>);

impl ChainCell {
    pub(crate) fn new(chain: Chain) -> Self {
        Self(RwLock::new(Arc::new(chain)))
    }

    pub(crate) fn snapshot(&self) -> Arc<Chain> {
        read_lock(&self.0).clone()
    }

    /// Swap in a new snapshot; calls already running keep the one they started with.
    pub(crate) fn replace(&self, chain: Chain) -> Arc<Chain> {
        let mut current = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *current, Arc::new(chain))
    }
}

/// The loaded plugins in chain order (lower priority first, then name), and per hook the
/// ones that implement it.
pub(crate) struct Chain {
    plugins: Vec<Arc<LoadedPlugin>>,
    by_hook: [Vec<Arc<LoadedPlugin>>; 4],
}

fn hook_index(hook: HookName) -> usize {
    match hook {
        HookName::MessagePreSend => 0,
        HookName::MessageDelivered => 1,
        HookName::OnLogin => 2,
        HookName::OnConnect => 3,
    }
}

impl Chain {
    pub(crate) fn new(mut plugins: Vec<Arc<LoadedPlugin>>) -> Self {
        plugins
            .sort_by(|a, b| (a.manifest.priority, a.name()).cmp(&(b.manifest.priority, b.name())));
        let by_hook = HookName::ALL.map(|hook| {
            plugins
                .iter()
                .filter(|p| p.implements(hook))
                .cloned()
                .collect::<Vec<_>>()
        });
        Self { plugins, by_hook }
    }

    pub(crate) fn hook(&self, hook: HookName) -> &[Arc<LoadedPlugin>] {
        &self.by_hook[hook_index(hook)]
    }

    pub(crate) fn statuses(&self) -> Vec<PluginStatus> {
        self.plugins.iter().map(|p| PluginStatus::of(p)).collect()
    }

    /// Every loaded plugin, in chain order.
    pub(crate) fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }
}

/// One plugin as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub version: String,
    pub enabled: bool,
    pub priority: i32,
    pub failure_policy: FailurePolicy,
    /// Hooks the plugin is called for.
    pub hooks: Vec<HookName>,
    pub capabilities: Vec<Capability>,
    /// The circuit breaker currently keeps the plugin from being called.
    pub circuit_open: bool,
    /// Warm instances waiting for calls.
    pub idle_instances: usize,
    /// The largest linear memory of those instances, in bytes.
    pub instance_memory_bytes: usize,
    pub counters: PluginCounters,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PluginCounters {
    pub calls: u64,
    pub rejects: u64,
    pub modifications: u64,
    /// All failures, of which:
    pub failures: u64,
    pub timeouts: u64,
    /// Traps, failed instantiations, malformed output, calls refused by an open circuit.
    pub traps: u64,
    /// Memory, stack or output size limits.
    pub limit_exceeded: u64,
    pub instances_created: u64,
    pub breaker_trips: u64,
    /// Wall time spent in calls, in microseconds (mean latency = this / calls).
    pub call_micros: u64,
}

impl PluginCounters {
    /// Add `other` (the totals of a version that was reloaded away) to these.
    pub(crate) fn add(&mut self, other: &PluginCounters) {
        self.calls += other.calls;
        self.rejects += other.rejects;
        self.modifications += other.modifications;
        self.failures += other.failures;
        self.timeouts += other.timeouts;
        self.traps += other.traps;
        self.limit_exceeded += other.limit_exceeded;
        self.instances_created += other.instances_created;
        self.breaker_trips += other.breaker_trips;
        self.call_micros += other.call_micros;
    }
}

impl PluginStatus {
    pub(crate) fn of(p: &LoadedPlugin) -> Self {
        let c = &p.counters;
        let (idle_instances, instance_memory_bytes) = p.pool_stats();
        Self {
            name: p.manifest.name.clone(),
            version: p.manifest.version.clone(),
            enabled: p.manifest.enabled,
            priority: p.manifest.priority,
            failure_policy: p.manifest.failure_policy,
            hooks: p.hooks.clone(),
            capabilities: p.manifest.capabilities.clone(),
            circuit_open: p.breaker.is_open(),
            idle_instances,
            instance_memory_bytes,
            counters: PluginCounters {
                calls: Counters::get(&c.calls),
                rejects: Counters::get(&c.rejects),
                modifications: Counters::get(&c.modifications),
                failures: Counters::get(&c.failures),
                timeouts: Counters::get(&c.timeouts),
                traps: Counters::get(&c.traps),
                limit_exceeded: Counters::get(&c.limit_exceeded),
                instances_created: Counters::get(&c.instances_created),
                breaker_trips: p.breaker.trips(),
                call_micros: Counters::get(&c.call_micros),
            },
        }
    }
}

impl PluginHost {
    fn count(&self, plugin: &LoadedPlugin, hook: HookName, reject: bool) {
        let metrics = plugin.hook_metrics(hook);
        if reject {
            Counters::bump(&plugin.counters.rejects);
            metrics.rejects.inc();
        } else {
            Counters::bump(&plugin.counters.modifications);
            metrics.modifications.inc();
        }
    }

    /// The pre-send chain: every call is bounded by its plugin's deadline.
    async fn pre_send(&self, msg: PreSend) -> PreSendOutcome {
        let chain = self.chain.snapshot();
        let mut body = msg.body.clone();
        let mut metadata = msg.metadata.clone();
        let mut modified = false;
        for plugin in chain.hook(HookName::MessagePreSend) {
            let input = v0_1::message(&msg, &body, &metadata);
            let result = match plugin.call(Request::PreSend(&input)).await {
                Ok(Response::PreSend(outcome)) => Ok(outcome),
                Ok(_) => Ok(WitOutcome::Continue),
                Err(e) => Err(e),
            };
            let failure = match result {
                Ok(WitOutcome::Continue) => continue,
                Ok(WitOutcome::Modify(m)) => match check_modification(plugin, m.body, m.metadata) {
                    Ok((new_body, new_metadata)) => {
                        if new_body != body || new_metadata != metadata {
                            self.count(plugin, HookName::MessagePreSend, false);
                            body = new_body;
                            metadata = new_metadata;
                            modified = true;
                        }
                        continue;
                    }
                    Err((kind, detail)) => {
                        plugin.output_failed(HookName::MessagePreSend, kind, detail)
                    }
                },
                Ok(WitOutcome::Reject(r)) => match check_rejection(&r.code, &r.reason) {
                    Ok(()) => {
                        self.count(plugin, HookName::MessagePreSend, true);
                        tracing::info!(
                            plugin = plugin.name(),
                            room = msg.room_id,
                            sender = msg.sender_id,
                            code = %r.code,
                            "message rejected by plugin"
                        );
                        return PreSendOutcome::Reject {
                            plugin: plugin.name().to_string(),
                            code: r.code,
                            reason: r.reason,
                        };
                    }
                    Err((kind, detail)) => {
                        plugin.output_failed(HookName::MessagePreSend, kind, detail)
                    }
                },
                Err(e) => e,
            };
            if let Some(reject) = policy_reject(plugin, &failure) {
                return reject;
            }
        }
        PreSendOutcome::Continue {
            body,
            metadata,
            modified,
        }
    }

    async fn decide(&self, request: Request<'_>) -> Decision {
        let hook = request.hook();
        let chain = self.chain.snapshot();
        for plugin in chain.hook(hook) {
            let result = match plugin.call(request).await {
                Ok(Response::Decision(decision)) => Ok(decision),
                Ok(_) => Ok(WitDecision::Allow),
                Err(e) => Err(e),
            };
            let failure = match result {
                Ok(WitDecision::Allow) => continue,
                Ok(WitDecision::Deny(reason)) if reason.len() <= MAX_REASON => {
                    self.count(plugin, hook, true);
                    return Decision::Deny {
                        plugin: plugin.name().to_string(),
                        reason,
                    };
                }
                Ok(WitDecision::Deny(reason)) => plugin.output_failed(
                    hook,
                    FailureKind::output_too_large,
                    format!("deny reason of {} bytes", reason.len()),
                ),
                Err(e) => e,
            };
            if plugin.manifest.failure_policy == FailurePolicy::FailClosed {
                return Decision::Deny {
                    plugin: plugin.name().to_string(),
                    reason: failure_reason(plugin, &failure),
                };
            }
        }
        Decision::Allow
    }
}

/// What a failed plugin means for the message under its policy: fail-closed rejects,
/// fail-open lets the chain go on.
fn policy_reject(plugin: &LoadedPlugin, failure: &CallError) -> Option<PreSendOutcome> {
    match plugin.manifest.failure_policy {
        FailurePolicy::FailOpen => None,
        FailurePolicy::FailClosed => Some(PreSendOutcome::Reject {
            plugin: plugin.name().to_string(),
            code: if matches!(
                failure.kind,
                FailureKind::circuit_open | FailureKind::stopped
            ) {
                "plugin_unavailable".to_string()
            } else {
                "plugin_failed".to_string()
            },
            reason: failure_reason(plugin, failure),
        }),
    }
}

/// The sender-facing reason: names the plugin and the kind, never the guest's error text.
fn failure_reason(plugin: &LoadedPlugin, failure: &CallError) -> String {
    if failure.kind == FailureKind::circuit_open {
        format!(
            "plugin {} is unavailable after repeated failures",
            plugin.name()
        )
    } else {
        format!(
            "plugin {} failed ({}) and its policy is fail-closed",
            plugin.name(),
            failure.kind.as_str()
        )
    }
}

type Invalid = (FailureKind, String);

fn check_modification(
    plugin: &LoadedPlugin,
    body: String,
    pairs: Vec<(String, String)>,
) -> Result<(String, Metadata), Invalid> {
    let max = plugin.manifest.limits.max_output_bytes;
    let size = body.len() + pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if size > max {
        return Err((
            FailureKind::output_too_large,
            format!("modification of {size} bytes exceeds the limit of {max}"),
        ));
    }
    if pairs.len() > MAX_METADATA_ENTRIES {
        return Err((
            FailureKind::invalid_output,
            format!("{} metadata entries", pairs.len()),
        ));
    }
    let mut metadata = BTreeMap::new();
    for (key, value) in pairs {
        if key.is_empty() || key.len() > MAX_METADATA_KEY {
            return Err((
                FailureKind::invalid_output,
                "metadata key empty or too long".into(),
            ));
        }
        if metadata.insert(key, value).is_some() {
            return Err((FailureKind::invalid_output, "duplicate metadata key".into()));
        }
    }
    Ok((body, metadata))
}

fn check_rejection(code: &str, reason: &str) -> Result<(), Invalid> {
    let code_ok = !code.is_empty()
        && code.len() <= MAX_CODE
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !code_ok {
        return Err((
            FailureKind::invalid_output,
            "reject code must be 1-64 bytes of [a-z0-9_.-]".into(),
        ));
    }
    if reason.len() > MAX_REASON {
        return Err((
            FailureKind::output_too_large,
            format!("reject reason of {} bytes", reason.len()),
        ));
    }
    Ok(())
}

#[async_trait]
impl Hooks for PluginHost {
    fn implements(&self, hook: HookKind) -> bool {
        !self
            .chain
            .snapshot()
            .hook(HookName::from_kind(hook))
            .is_empty()
    }

    async fn message_pre_send(&self, msg: PreSend) -> PreSendOutcome {
        self.pre_send(msg).await
    }

    fn message_delivered(&self, room: &Room, event: &Event) {
        if self.implements(HookKind::MessageDelivered) {
            self.observer.submit(v0_1::room(room), v0_1::event(event));
        }
    }

    async fn on_login(&self, user: &User) -> Decision {
        let user = v0_1::user(user);
        self.decide(Request::Login(&user)).await
    }

    async fn on_connect(&self, user: &User, session_id: &str) -> Decision {
        let user = v0_1::user(user);
        self.decide(Request::Connect(&user, session_id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_codes_are_tokens() {
        assert!(check_rejection("dlp_blocked", "card").is_ok());
        assert!(check_rejection("a.b-c_9", "").is_ok());
        assert!(check_rejection("", "x").is_err());
        assert!(check_rejection("Has Space", "x").is_err());
        assert!(check_rejection(&"a".repeat(65), "x").is_err());
        assert!(check_rejection("ok", &"r".repeat(MAX_REASON + 1)).is_err());
    }
}

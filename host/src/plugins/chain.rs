//! The hook chains: plugins in the operator's priority order, each hook's chain precomputed,
//! held as an immutable snapshot that a reload can replace atomically. Also the
//! implementation of the router's [`Hooks`] trait, with the failure policies and the
//! validation of everything a plugin returns.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde::Serialize;

use super::breaker::OpenCircuit;
use super::call::{
    AuthAnswer, CommandAnswer, DecisionAnswer, FileUploadAnswer, PreSendAnswer as WitOutcome,
};
use super::instance::{CallError, LoadedPlugin, Request, Response};
use super::manifest::{Capability, FailurePolicy};
use super::metrics::{Counters, FailureKind};
use super::{PluginError, PluginHost, read_lock};
use crate::audit::{self, Action, Actor, Subject};
use crate::router::hooks::{
    AuthOutcome, AuthRequest, BotPost, CommandCall, CommandOutcome, Decision, FileCheck,
    FileContent, FileReplacement, FileUploadOutcome, HookKind, Hooks, PreSend, PreSendOutcome,
};
use crate::router::rules;
use crate::store::{Event, Metadata, User};

/// Most metadata entries a message may carry after the chain (users' and every plugin's).
const MAX_METADATA_TOTAL: usize = 64;
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
    by_hook: [Vec<Arc<LoadedPlugin>>; 8],
    /// Command name (without the slash) → the one plugin that registered it.
    commands: BTreeMap<String, Arc<LoadedPlugin>>,
}

fn hook_index(hook: HookKind) -> usize {
    match hook {
        HookKind::MessagePreSend => 0,
        HookKind::MessageDelivered => 1,
        HookKind::OnLogin => 2,
        HookKind::OnConnect => 3,
        HookKind::Command => 4,
        HookKind::Authenticate => 5,
        HookKind::FilePreUpload => 6,
        HookKind::FilePreDownload => 7,
    }
}

impl Chain {
    /// Order the plugins and index their hooks and commands. Two plugins registering the
    /// same command is an error: which one answers must never depend on load order.
    pub(crate) fn new(mut plugins: Vec<Arc<LoadedPlugin>>) -> Result<Self, PluginError> {
        plugins
            .sort_by(|a, b| (a.manifest.priority, a.name()).cmp(&(b.manifest.priority, b.name())));
        let by_hook = HookKind::ALL.map(|hook| {
            plugins
                .iter()
                .filter(|p| p.implements(hook))
                .cloned()
                .collect::<Vec<_>>()
        });
        let mut commands = BTreeMap::new();
        for plugin in &plugins {
            for name in &plugin.manifest.commands {
                if let Some(other) = commands.insert(name.clone(), plugin.clone()) {
                    return Err(PluginError::Capability {
                        name: plugin.name().to_string(),
                        message: format!(
                            "command /{name} is already registered by plugin {}",
                            other.name()
                        ),
                    });
                }
            }
        }
        Ok(Self {
            plugins,
            by_hook,
            commands,
        })
    }

    pub(crate) fn command(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.commands.get(name)
    }

    pub(crate) fn hook(&self, hook: HookKind) -> &[Arc<LoadedPlugin>] {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PluginStatus {
    pub name: String,
    pub version: String,
    pub enabled: bool,
    pub priority: i32,
    pub failure_policy: FailurePolicy,
    /// Hooks the plugin is called for.
    pub hooks: Vec<HookKind>,
    pub capabilities: Vec<Capability>,
    /// The WIT interface the component was built against (`switchboard:plugin@0.2.0`).
    pub interface: &'static str,
    /// Commands routed to the plugin, without the slash.
    pub commands: Vec<String>,
    /// The plugin's bot user, with capability `bot`.
    pub bot_user: Option<i64>,
    /// The circuit breaker currently keeps the plugin from being called at all.
    pub circuit_open: bool,
    /// Every open circuit: the plugin's own, and rooms' or senders' (at most 50), where
    /// the plugin is not called until a trial call succeeds.
    pub open_circuits: Vec<OpenCircuit>,
    /// Warm instances waiting for calls.
    pub idle_instances: usize,
    /// The largest linear memory of those instances, in bytes.
    pub instance_memory_bytes: usize,
    pub counters: PluginCounters,
    /// The newest failed call, with what the guest wrote before it.
    pub last_failure: Option<super::instance::LastFailure>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// Calls that never ran because the plugin's slots (or the engine's pool) stayed busy.
    pub overloaded: u64,
    /// `message-delivered` events dropped because this plugin's queue was full.
    pub observer_dropped: u64,
    /// Log lines dropped over the plugin's log rate limit.
    pub log_dropped: u64,
    /// Circuits opened, the plugin's own and rooms' or senders'.
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
        self.overloaded += other.overloaded;
        self.observer_dropped += other.observer_dropped;
        self.log_dropped += other.log_dropped;
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
            interface: p.interface,
            commands: p.manifest.commands.clone(),
            bot_user: p.bot_user(),
            circuit_open: p.breaker.is_open(),
            open_circuits: p.breaker.open_circuits(50),
            idle_instances,
            instance_memory_bytes,
            last_failure: p.last_failure(),
            counters: PluginCounters {
                calls: Counters::get(&c.calls),
                rejects: Counters::get(&c.rejects),
                modifications: Counters::get(&c.modifications),
                failures: Counters::get(&c.failures),
                timeouts: Counters::get(&c.timeouts),
                traps: Counters::get(&c.traps),
                limit_exceeded: Counters::get(&c.limit_exceeded),
                instances_created: Counters::get(&c.instances_created),
                overloaded: Counters::get(&c.overloaded),
                observer_dropped: Counters::get(&c.observer_dropped),
                log_dropped: p.log_dropped(),
                breaker_trips: p.breaker.trips(),
                call_micros: Counters::get(&c.call_micros),
            },
        }
    }
}

impl PluginHost {
    fn count(&self, plugin: &LoadedPlugin, hook: HookKind, reject: bool) {
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
    async fn pre_send(&self, msg: PreSend, depth: u32) -> PreSendOutcome {
        let chain = self.chain.snapshot();
        let mut body = msg.body.clone();
        let mut metadata = msg.metadata.clone();
        let mut authors = BTreeMap::new();
        let mut modified = false;
        for plugin in chain.hook(HookKind::MessagePreSend) {
            let request = Request::PreSend {
                msg: &msg,
                body: &body,
                metadata: &metadata,
            };
            if plugin.is_own(&request) {
                continue;
            }
            let scope = request.scope();
            let result = match plugin.call(request, depth).await {
                Ok(Response::PreSend(outcome)) => Ok(outcome),
                Ok(_) => Ok(WitOutcome::Continue),
                Err(e) => Err(e),
            };
            let failure = match result {
                Ok(WitOutcome::Continue) => continue,
                Ok(WitOutcome::Modify {
                    body: new_body,
                    metadata: pairs,
                }) => match check_modification(plugin, &msg, new_body, pairs, &metadata) {
                    Ok((new_body, new_metadata)) => {
                        if new_body != body || new_metadata != metadata {
                            self.count(plugin, HookKind::MessagePreSend, false);
                            for (key, value) in &new_metadata {
                                if metadata.get(key) != Some(value) {
                                    authors.insert(key.clone(), plugin.name().to_string());
                                }
                            }
                            body = new_body;
                            metadata = new_metadata;
                            modified = true;
                        }
                        continue;
                    }
                    Err((kind, detail)) => {
                        self.audit_refused_output(plugin, &msg, kind, &detail).await;
                        plugin.output_failed(HookKind::MessagePreSend, scope, kind, detail)
                    }
                },
                Ok(WitOutcome::Reject { code, reason }) => match check_rejection(&code, &reason) {
                    Ok(()) => {
                        self.count(plugin, HookKind::MessagePreSend, true);
                        tracing::info!(
                            plugin = plugin.name(),
                            room = msg.room_id,
                            sender = msg.sender_id,
                            code = %code,
                            "message rejected by plugin"
                        );
                        return PreSendOutcome::Reject {
                            plugin: plugin.name().to_string(),
                            code,
                            reason,
                        };
                    }
                    Err((kind, detail)) => {
                        self.audit_refused_output(plugin, &msg, kind, &detail).await;
                        plugin.output_failed(HookKind::MessagePreSend, scope, kind, detail)
                    }
                },
                Err(e) => e,
            };
            if let Some(reject) = policy_reject(plugin, &failure) {
                return reject;
            }
        }
        authors.retain(|key, _| metadata.contains_key(key));
        PreSendOutcome::Continue {
            body,
            metadata,
            modified,
            authors,
        }
    }

    /// A plugin's answer broke the rules: on record under the plugin's name (what was wrong
    /// with it, never the content), whatever its failure policy then decides.
    async fn audit_refused_output(
        &self,
        plugin: &LoadedPlugin,
        msg: &PreSend,
        kind: FailureKind,
        problem: &str,
    ) {
        let detail = serde_json::json!({
            "hook": HookKind::MessagePreSend.as_str(),
            "kind": kind.as_str(),
            "problem": problem,
            "sender": msg.sender_id,
            "edit_of": msg.editing,
        });
        audit::record(
            self.store.as_ref(),
            Actor::Plugin(plugin.name()),
            Action::PluginInvalidOutput,
            Subject::Room(msg.room_id),
            detail,
        )
        .await;
    }

    /// The `file-pre-upload` chain. A replacement is what later plugins see (and read); a
    /// quarantine is remembered while later plugins still run (one of them may reject);
    /// a rejection stops the chain. A failing plugin follows its failure policy: with the
    /// default, fail-closed, the file is refused with a reason naming the plugin.
    async fn file_upload_chain(
        &self,
        mut file: FileCheck,
        mut content: Arc<dyn FileContent>,
    ) -> FileUploadOutcome {
        let chain = self.chain.snapshot();
        let mut replacement: Option<FileReplacement> = None;
        let mut quarantine: Option<(String, String)> = None;
        for plugin in chain.hook(HookKind::FilePreUpload) {
            let request = Request::FileUpload {
                file: &file,
                content: &content,
            };
            if plugin.is_own(&request) {
                continue;
            }
            let scope = request.scope();
            let result = match plugin.call(request, 0).await {
                Ok(Response::FileUpload(answer)) => Ok(answer),
                Ok(_) => Ok(FileUploadAnswer::Allow),
                Err(e) => Err(e),
            };
            let failure = match result {
                Ok(FileUploadAnswer::Allow) => continue,
                Ok(FileUploadAnswer::Reject { code, reason }) => {
                    match check_rejection(&code, &reason) {
                        Ok(()) => {
                            self.count(plugin, HookKind::FilePreUpload, true);
                            tracing::info!(
                                plugin = plugin.name(),
                                room = file.room_id,
                                uploader = file.uploader.id,
                                code = %code,
                                "file rejected by plugin"
                            );
                            return FileUploadOutcome::Reject {
                                plugin: plugin.name().to_string(),
                                code,
                                reason,
                            };
                        }
                        Err((kind, detail)) => {
                            plugin.output_failed(HookKind::FilePreUpload, scope, kind, detail)
                        }
                    }
                }
                Ok(FileUploadAnswer::Replace {
                    content: bytes,
                    name,
                }) if bytes.len() as u64 <= file.max_bytes => {
                    self.count(plugin, HookKind::FilePreUpload, false);
                    let bytes = bytes::Bytes::from(bytes);
                    file.size = bytes.len() as u64;
                    file.sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
                    file.content_type = crate::files::sniff(&bytes).to_string();
                    if let Some(name) = &name {
                        file.name = crate::files::safe_name(name);
                    }
                    let mut plugins = replacement.map(|r| r.plugins).unwrap_or_default();
                    plugins.push(plugin.name().to_string());
                    replacement = Some(FileReplacement {
                        plugins,
                        content: bytes.clone(),
                        name: name.map(|_| file.name.clone()),
                    });
                    content = Arc::new(InMemoryContent(bytes));
                    continue;
                }
                Ok(FileUploadAnswer::Replace { content: bytes, .. }) => plugin.output_failed(
                    HookKind::FilePreUpload,
                    scope,
                    FailureKind::output_too_large,
                    format!(
                        "replacement of {} bytes exceeds the upload limit of {}",
                        bytes.len(),
                        file.max_bytes
                    ),
                ),
                Ok(FileUploadAnswer::Quarantine(reason)) if reason.len() <= MAX_REASON => {
                    self.count(plugin, HookKind::FilePreUpload, true);
                    quarantine.get_or_insert((plugin.name().to_string(), reason));
                    continue;
                }
                Ok(FileUploadAnswer::Quarantine(reason)) => plugin.output_failed(
                    HookKind::FilePreUpload,
                    scope,
                    FailureKind::output_too_large,
                    format!("quarantine reason of {} bytes", reason.len()),
                ),
                Err(e) => e,
            };
            if let Some(PreSendOutcome::Reject {
                plugin,
                code,
                reason,
            }) = policy_reject(plugin, &failure)
            {
                return FileUploadOutcome::Reject {
                    plugin,
                    code,
                    reason,
                };
            }
        }
        FileUploadOutcome::Accept {
            replacement,
            quarantine,
        }
    }

    async fn decide(&self, request: Request<'_>) -> Decision {
        let hook = request.hook();
        let chain = self.chain.snapshot();
        let scope = request.scope();
        for plugin in chain.hook(hook) {
            let result = match plugin.call(request, 0).await {
                Ok(Response::Decision(decision)) => Ok(decision),
                Ok(_) => Ok(DecisionAnswer::Allow),
                Err(e) => Err(e),
            };
            let failure = match result {
                Ok(DecisionAnswer::Allow) => continue,
                Ok(DecisionAnswer::Deny(reason)) if reason.len() <= MAX_REASON => {
                    self.count(plugin, hook, true);
                    return Decision::Deny {
                        plugin: plugin.name().to_string(),
                        reason,
                    };
                }
                Ok(DecisionAnswer::Deny(reason)) => plugin.output_failed(
                    hook,
                    scope,
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

/// A plugin's replacement of an upload, served to the plugins after it.
struct InMemoryContent(bytes::Bytes);

#[async_trait]
impl FileContent for InMemoryContent {
    async fn read(&self, offset: u64, len: u32) -> Result<bytes::Bytes, String> {
        let size = self.0.len() as u64;
        let start = offset.min(size) as usize;
        let end = offset.saturating_add(u64::from(len)).min(size) as usize;
        Ok(self.0.slice(start..end))
    }
}

/// A plugin's modification obeys the rules a user's message does (`router::rules`): a body
/// that is not empty, within the server's size and without NUL; metadata entries it adds
/// or changes within the user limits (at most 16 of them, keys of 1–64 bytes, values up to
/// 1 KiB, no NUL). Its whole answer stays within its `max_output_bytes`.
fn check_modification(
    plugin: &LoadedPlugin,
    msg: &PreSend,
    body: String,
    pairs: Vec<(String, String)>,
    before: &Metadata,
) -> Result<(String, Metadata), Invalid> {
    let max = plugin.manifest.limits.max_output_bytes;
    let size = body.len() + pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if size > max {
        return Err((
            FailureKind::output_too_large,
            format!("modification of {size} bytes exceeds the limit of {max}"),
        ));
    }
    rules::check_body(&body, msg.max_body_bytes).map_err(|broken| {
        (
            FailureKind::invalid_output,
            format!("body: {}", broken.message),
        )
    })?;
    if pairs.len() > MAX_METADATA_TOTAL {
        return Err((
            FailureKind::invalid_output,
            format!(
                "{} metadata entries (a message carries at most {MAX_METADATA_TOTAL})",
                pairs.len()
            ),
        ));
    }
    let mut metadata = BTreeMap::new();
    let mut changed = 0;
    for (key, value) in pairs {
        if before.get(&key) != Some(&value) {
            rules::check_metadata_entry(&key, &value).map_err(|broken| {
                (
                    FailureKind::invalid_output,
                    format!("metadata: {}", broken.message),
                )
            })?;
            changed += 1;
        }
        if metadata.insert(key, value).is_some() {
            return Err((FailureKind::invalid_output, "duplicate metadata key".into()));
        }
    }
    if changed > rules::MAX_METADATA_ENTRIES {
        return Err((
            FailureKind::invalid_output,
            format!(
                "{changed} metadata entries added or changed (at most {})",
                rules::MAX_METADATA_ENTRIES
            ),
        ));
    }
    Ok((body, metadata))
}

fn check_rejection(code: &str, reason: &str) -> Result<(), Invalid> {
    if !crate::names::is_code(code, MAX_CODE) {
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
        !self.chain.snapshot().hook(hook).is_empty()
    }

    async fn message_pre_send(&self, msg: PreSend) -> PreSendOutcome {
        let depth = msg.depth;
        self.pre_send(msg, depth).await
    }

    fn message_delivered(&self, event: &Event, depth: u32) {
        if self.implements(HookKind::MessageDelivered) {
            self.observer.submit(event.clone(), depth);
        }
    }

    async fn on_login(&self, user: &User) -> Decision {
        self.decide(Request::Login(user)).await
    }

    async fn on_connect(&self, user: &User, session_id: &str) -> Decision {
        self.decide(Request::Connect(user, session_id)).await
    }

    fn has_command(&self, name: &str) -> bool {
        self.chain.snapshot().command(name).is_some()
    }

    async fn command(&self, call: CommandCall) -> CommandOutcome {
        self.run_command(call).await
    }

    async fn authenticate(&self, request: AuthRequest) -> AuthOutcome {
        self.run_authenticate(request).await
    }

    async fn file_pre_upload(
        &self,
        file: FileCheck,
        content: Arc<dyn FileContent>,
    ) -> FileUploadOutcome {
        self.file_upload_chain(file, content).await
    }

    async fn file_pre_download(&self, file: FileCheck, user: &User) -> Decision {
        self.decide(Request::FileDownload(&file, user)).await
    }

    fn take_bot_outbox(&self) -> Option<tokio::sync::mpsc::Receiver<BotPost>> {
        self.shared.outbox.take_receiver()
    }
}

impl PluginHost {
    /// The `authenticate` chain: in priority order, the first plugin that accepts or
    /// rejects decides; a failing plugin rejects under fail-closed and is skipped under
    /// fail-open. Answers are bounded like reasons.
    async fn run_authenticate(&self, request: AuthRequest) -> AuthOutcome {
        let chain = self.chain.snapshot();
        for plugin in chain.hook(HookKind::Authenticate) {
            let failure = match plugin.call(Request::Authenticate(&request), 0).await {
                Ok(Response::Auth(AuthAnswer::Defer)) => continue,
                Ok(Response::Auth(AuthAnswer::Accept(user_name)))
                    if !user_name.is_empty() && user_name.len() <= 64 =>
                {
                    return AuthOutcome::Accept {
                        plugin: plugin.name().to_string(),
                        user_name,
                    };
                }
                Ok(Response::Auth(AuthAnswer::Reject(reason))) if reason.len() <= MAX_REASON => {
                    self.count(plugin, HookKind::Authenticate, true);
                    return AuthOutcome::Reject {
                        plugin: plugin.name().to_string(),
                        reason,
                    };
                }
                Ok(_) => plugin.output_failed(
                    HookKind::Authenticate,
                    Default::default(),
                    FailureKind::invalid_output,
                    "user name or reason out of bounds".into(),
                ),
                Err(e) => e,
            };
            if plugin.manifest.failure_policy == FailurePolicy::FailClosed {
                return AuthOutcome::Reject {
                    plugin: plugin.name().to_string(),
                    reason: failure_reason(plugin, &failure),
                };
            }
        }
        AuthOutcome::Unhandled
    }

    /// Run the plugin that registered `call.name`. A room reply is queued like a bot post
    /// (so it passes the pre-send chain); a private reply goes back to the router, which
    /// shows it to the sender only.
    async fn run_command(&self, call: CommandCall) -> CommandOutcome {
        let chain = self.chain.snapshot();
        let Some(plugin) = chain.command(&call.name) else {
            return CommandOutcome::Unknown;
        };
        let request = Request::Command(&call);
        if plugin.is_own(&request) {
            return CommandOutcome::Unknown;
        }
        let failure = match plugin.call(request, call.depth).await {
            Ok(Response::Command(answer)) => {
                let max = plugin.manifest.limits.max_output_bytes;
                let (text, private) = match answer {
                    CommandAnswer::Done => {
                        return CommandOutcome::Handled {
                            plugin: plugin.name().to_string(),
                            private: None,
                        };
                    }
                    CommandAnswer::Reply(text) => (text, false),
                    CommandAnswer::PrivateReply(text) => (text, true),
                };
                if text.len() > max || text.trim().is_empty() || text.contains('\0') {
                    plugin.output_failed(
                        HookKind::Command,
                        request.scope(),
                        FailureKind::invalid_output,
                        format!(
                            "command reply of {} bytes (limit {max}, not empty)",
                            text.len()
                        ),
                    )
                } else if private {
                    return CommandOutcome::Handled {
                        plugin: plugin.name().to_string(),
                        private: Some(text),
                    };
                } else {
                    plugin.dispatch_posts(
                        vec![super::capabilities::QueuedPost {
                            room_id: call.room_id,
                            write: crate::router::hooks::BotWrite::Message {
                                thread_root: None,
                                body: text,
                            },
                        }],
                        call.depth,
                    );
                    return CommandOutcome::Handled {
                        plugin: plugin.name().to_string(),
                        private: None,
                    };
                }
            }
            Ok(_) => plugin.output_failed(
                HookKind::Command,
                request.scope(),
                FailureKind::invalid_output,
                "not a command outcome".into(),
            ),
            Err(e) => e,
        };
        CommandOutcome::Failed {
            plugin: plugin.name().to_string(),
            reason: failure_reason(plugin, &failure),
        }
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

//! The governed language model behind plugins' `llm` capability.
//!
//! A plugin composes a request (its messages, which rooms to take context from, whether
//! the model may use tools); everything that leaves for the model and everything that
//! comes back goes through [`Llm::chat`], which owns the governance:
//!
//! - **Budgets** first: the person's and the room's tokens of the UTC day (`llm_usage`).
//! - **Context** ([`context`]) is read with the *invoking user's* permissions: a room
//!   they are not a member of is refused, whatever the plugin asked.
//! - **Egress DLP** ([`egress`]): every text that leaves (messages, context, tool results)
//!   passes the operator's detectors; a finding leaves as a token (`[CARD_1]`) or refuses
//!   the call. The model never sees the value.
//! - **Tools** ([`tools`]: `read_room`, `search`, `post`) run as the invoking user, each
//!   under the operator's policy (allow / ask the person in chat / deny), in a bounded
//!   loop; a call with bad arguments is answered with an error, not run.
//! - **The reply** is read under byte, idle and total time limits ([`client`]); the same
//!   detectors mask it before anyone sees it, also while it streams. A reply posted in a
//!   room passes the `message-pre-send` chain as well (the router posts it).
//! - **Audit**: one `llm.call` record per call with the prompt's SHA-256 (the text only if
//!   `prompt_log` says so), redaction counts, tool decisions, tokens, latency and outcome;
//!   Prometheus counters. Prompt text is never written to the server's log.
//!
//! The model is any OpenAI-compatible chat-completions endpoint (`[llm]`).

mod client;
mod context;
mod egress;
mod tools;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use self::client::ModelError;
use self::client::{Finish, ModelClient};
use self::egress::{EgressPolicy, Redactions};
use self::tools::{MAX_TOOL_RESULT_BYTES, Pending, check_tools, tool_definitions, tool_label};
use crate::audit::{self, Action, Actor, Subject};
use crate::config::{Limits, LlmConfig, PromptLog};
use crate::metrics::Metrics;
use crate::store::{EventId, RoomId, Store, User, UserId, now_millis};

/// Metadata key on an answer's message while it is still streaming (clients may show it
/// as being written); the final edit leaves it out.
pub const STREAMING_KEY: &str = "assistant.streaming";
const DAY_MS: i64 = 86_400_000;

/// Why a call to the model did not happen or failed; each has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("no language model is configured on this server")]
    NotConfigured,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Denied(String),
    #[error("the prompt holds data that may not leave for the model ({0})")]
    PromptBlocked(String),
    #[error("the daily {scope} token budget of {limit} is used up; it renews at midnight UTC")]
    Budget { scope: &'static str, limit: u64 },
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("the server could not read what it needed: {0}")]
    Store(#[from] crate::store::StoreError),
}

impl LlmError {
    /// The stable code (audit outcome, metrics label, notices).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "llm_not_configured",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Denied(_) => "denied",
            Self::PromptBlocked(_) => "prompt_blocked",
            Self::Budget { .. } => "budget_exceeded",
            Self::Model(ModelError::Unreachable) => "model_unreachable",
            Self::Model(ModelError::Timeout) => "model_timeout",
            Self::Model(ModelError::Status(_)) => "model_error",
            Self::Model(ModelError::BadResponse(_)) => "model_bad_response",
            Self::Store(_) => "store_unavailable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

/// Messages of a room (or one of its threads) to add to the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextSource {
    pub room: RoomId,
    pub thread_root: Option<EventId>,
    pub limit: u32,
    pub since: Option<i64>,
}

/// One call, as a plugin asked for it, on behalf of `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub plugin: String,
    /// The person whose action caused the hook: context, tools and budget are theirs.
    pub user: User,
    /// The room the hook fired in (budget, audit).
    pub room: Option<RoomId>,
    pub messages: Vec<ChatMessage>,
    pub context: Vec<ContextSource>,
    pub max_tokens: Option<u32>,
    pub tools: bool,
    /// Whether a tool under an `ask` policy may wait for the person's approval.
    pub interactive: bool,
}

/// Where an answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Room,
    Thread(EventId),
    Private,
}

/// A call whose answer the router delivers (`llm.answer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssistantJob {
    pub call: Call,
    pub delivery: Delivery,
    pub preface: Option<String>,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The reply, masked (and marked when cut short): what a room may see.
    pub text: String,
    /// The same with the person's own redacted values restored, where the operator allows:
    /// for their eyes only.
    pub private_text: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// `ok`, or why the reply is partial (`truncated`, `too_large`, `timeout`,
    /// `tool_rounds`).
    pub outcome: &'static str,
}

/// What the model may do in chat through its tools, provided by the router (the layer
/// that can post as a person).
#[async_trait::async_trait]
pub trait ChatActions: Send + Sync {
    /// Post `text` in `room` as `user`, through the ordinary send path.
    async fn post_as(&self, user: &User, room: RoomId, text: String) -> Result<EventId, String>;
    /// Show `text` to `user` alone.
    fn notify(&self, user: UserId, room: Option<RoomId>, text: &str);
}

/// What became of one tool call (for the audit record).
#[derive(Debug, Clone, serde::Serialize)]
struct ToolRecord {
    tool: String,
    decision: &'static str,
}

/// What operators may change while the server runs (the admin console), over the values
/// of `[llm]`. Kept in the database, read at each call, so every node applies a change at
/// once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Governance {
    pub user_daily_tokens: u64,
    pub room_daily_tokens: u64,
    pub max_tool_rounds: u32,
    pub prompt_log: PromptLog,
    pub restore_redacted: bool,
    pub dlp: BTreeMap<String, String>,
    pub tools: BTreeMap<String, String>,
}

/// Where the operators' changes are kept: a key/value namespace no plugin can have (a
/// plugin's name is an identifier, never `@…`).
const GOVERNANCE_SPACE: &str = "@server";
const GOVERNANCE_KEY: &str = "llm.governance";

/// One call's rules: the governance in force when it started, and its compiled detectors.
struct Rules {
    gov: Governance,
    egress: Arc<EgressPolicy>,
}

/// The server's governed model: one per server.
pub struct Llm {
    config: LlmConfig,
    client: Option<ModelClient>,
    /// The detectors last compiled, with the settings they were compiled from.
    egress: Mutex<(BTreeMap<String, String>, Arc<EgressPolicy>)>,
    store: Arc<dyn Store>,
    limits: Limits,
    metrics: Metrics,
    permits: tokio::sync::Semaphore,
    approvals: Mutex<HashMap<String, Pending>>,
    actions: OnceLock<Arc<dyn ChatActions>>,
    /// The UTC day old token counts were last pruned on (this node).
    pruned_day: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("model", &self.config.model)
            .finish_non_exhaustive()
    }
}

impl Llm {
    /// Check `[llm]` and build the service (no connection is made until a call).
    pub fn new(
        config: LlmConfig,
        store: Arc<dyn Store>,
        limits: Limits,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let egress = Arc::new(EgressPolicy::from_config(&config.dlp)?);
        let dlp = config.dlp.clone();
        check_tools(&config.tools)?;
        let client = if config.base_url.trim().is_empty() {
            None
        } else {
            if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://"))
            {
                return Err("llm.base_url: expected an http:// or https:// URL".into());
            }
            if config.model.trim().is_empty() {
                return Err("llm.model: name the model to use".into());
            }
            Some(ModelClient::new(&config)?)
        };
        Ok(Self {
            permits: tokio::sync::Semaphore::new(config.max_concurrent_calls.max(1)),
            config,
            client,
            egress: Mutex::new((dlp, egress)),
            store,
            limits,
            metrics,
            approvals: Mutex::new(HashMap::new()),
            actions: OnceLock::new(),
            pruned_day: std::sync::atomic::AtomicI64::new(i64::MIN),
        })
    }

    /// `[llm]`'s governance values.
    pub fn configured_governance(&self) -> Governance {
        let c = &self.config;
        Governance {
            user_daily_tokens: c.user_daily_tokens,
            room_daily_tokens: c.room_daily_tokens,
            max_tool_rounds: c.max_tool_rounds,
            prompt_log: c.prompt_log,
            restore_redacted: c.restore_redacted,
            dlp: c.dlp.clone(),
            tools: c.tools.clone(),
        }
    }

    /// The governance in force: the operators' last change, else `[llm]`'s.
    pub async fn governance(&self) -> Result<Governance, LlmError> {
        let stored = self.store.kv_get(GOVERNANCE_SPACE, GOVERNANCE_KEY).await?;
        Ok(stored
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_else(|| self.configured_governance()))
    }

    /// Check and keep new governance (it applies from the next call, on every node).
    pub async fn set_governance(&self, gov: &Governance) -> Result<(), LlmError> {
        EgressPolicy::from_config(&gov.dlp).map_err(LlmError::InvalidRequest)?;
        check_tools(&gov.tools).map_err(LlmError::InvalidRequest)?;
        if gov.max_tool_rounds > 16 {
            return Err(LlmError::InvalidRequest(
                "max_tool_rounds is at most 16".into(),
            ));
        }
        let bytes = serde_json::to_vec(gov).map_err(|e| LlmError::InvalidRequest(e.to_string()))?;
        self.store
            .kv_put(GOVERNANCE_SPACE, GOVERNANCE_KEY, &bytes)
            .await?;
        Ok(())
    }

    /// Go back to `[llm]`'s governance.
    pub async fn reset_governance(&self) -> Result<(), LlmError> {
        self.store
            .kv_delete(GOVERNANCE_SPACE, GOVERNANCE_KEY)
            .await?;
        Ok(())
    }

    /// The rules for a call starting now.
    async fn rules(&self) -> Result<Rules, LlmError> {
        let gov = self.governance().await?;
        let mut cached = super_lock(&self.egress);
        if cached.0 != gov.dlp {
            let policy = EgressPolicy::from_config(&gov.dlp).map_err(LlmError::InvalidRequest)?;
            *cached = (gov.dlp.clone(), Arc::new(policy));
        }
        let egress = cached.1.clone();
        drop(cached);
        Ok(Rules { gov, egress })
    }

    /// The active user `id`, for whom a plugin calls.
    pub async fn user(&self, id: UserId) -> Result<Option<User>, LlmError> {
        Ok(self.store.user_by_id(id).await?.filter(|u| u.active))
    }

    /// Whether a model is configured.
    pub fn configured(&self) -> bool {
        self.client.is_some()
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// Give the model its chat actions (the router, once it exists).
    pub fn attach(&self, actions: Arc<dyn ChatActions>) {
        let _ = self.actions.set(actions);
    }

    /// Budgets look at one day; a year of counts is kept for the operators. Pruned once a
    /// day per node, not on every call.
    async fn prune_usage(&self, day: i64) {
        let last = self
            .pruned_day
            .swap(day, std::sync::atomic::Ordering::Relaxed);
        if last == day {
            return;
        }
        if let Err(err) = self.store.prune_llm_usage(day - 366).await {
            tracing::warn!(error = %err, "could not forget old model token counts");
        }
    }

    /// Today's UTC day number (budgets renew at midnight UTC).
    fn day() -> i64 {
        now_millis().div_euclid(DAY_MS)
    }

    /// Today's counts, heaviest first: `(scope, id, tokens)`.
    pub async fn usage_of_today(&self) -> Result<Vec<(String, i64, u64)>, LlmError> {
        Ok(self.store.llm_usage_of_day(Self::day()).await?)
    }

    /// Tokens used today: `(by the person, in the room)`.
    pub async fn usage_today(
        &self,
        user: UserId,
        room: Option<RoomId>,
    ) -> Result<(u64, u64), LlmError> {
        let day = Self::day();
        let by_user = self.store.llm_usage(day, "user", user).await?;
        let in_room = match room {
            Some(room) => self.store.llm_usage(day, "room", room).await?,
            None => 0,
        };
        Ok((by_user, in_room))
    }

    fn check_budget(gov: &Governance, used: (u64, u64)) -> Result<(), LlmError> {
        let (user_limit, room_limit) = (gov.user_daily_tokens, gov.room_daily_tokens);
        if user_limit > 0 && used.0 >= user_limit {
            return Err(LlmError::Budget {
                scope: "personal",
                limit: user_limit,
            });
        }
        if room_limit > 0 && used.1 >= room_limit {
            return Err(LlmError::Budget {
                scope: "room",
                limit: room_limit,
            });
        }
        Ok(())
    }

    /// Check what can be checked before a call is queued: a model exists, the messages are
    /// sane, the budget is not spent. The call itself checks again.
    pub async fn precheck(&self, call: &Call) -> Result<(), LlmError> {
        let checked = self.precheck_inner(call).await;
        if let Err(err) = &checked {
            self.refused(call, err).await;
        }
        checked
    }

    async fn precheck_inner(&self, call: &Call) -> Result<(), LlmError> {
        if self.client.is_none() {
            return Err(LlmError::NotConfigured);
        }
        validate(call)?;
        let rules = self.rules().await?;
        Self::check_budget(&rules.gov, self.usage_today(call.user.id, call.room).await?)
    }

    /// A call refused before it was made: on the record and counted like one that was.
    async fn refused(&self, call: &Call, err: &LlmError) {
        Metrics::add(
            &self.metrics.llm_calls,
            &[("plugin", &call.plugin), ("outcome", err.code())],
            1,
        );
        let detail = json!({
            "plugin": call.plugin,
            "room": call.room,
            "model": self.client.as_ref().map(ModelClient::model),
            "tokens_in": 0,
            "tokens_out": 0,
            "outcome": err.code(),
            "error": err.to_string(),
        });
        self.audit(call, detail).await;
    }

    /// The call's `llm.call` record: by the person, about the room (or them).
    async fn audit(&self, call: &Call, detail: Value) {
        let subject = call.room.map_or(Subject::User(call.user.id), Subject::Room);
        audit::record(
            &*self.store,
            Actor::User(call.user.id),
            Action::LlmCall,
            subject,
            detail,
        )
        .await;
    }

    /// Make the call: see the module header for everything it governs. `progress`, when
    /// given, sees the reply's visible (masked) text as it streams.
    pub async fn chat(
        &self,
        call: &Call,
        progress: Option<&tokio::sync::watch::Sender<String>>,
    ) -> Result<Answer, LlmError> {
        let started = Instant::now();
        let mut record = CallRecord::default();
        let result = self.chat_inner(call, progress, &mut record).await;
        let latency = started.elapsed();
        self.metrics
            .llm_call_duration
            .observe(latency.as_secs_f64());
        let outcome = match &result {
            Ok(answer) => answer.outcome,
            Err(err) => err.code(),
        };
        Metrics::add(
            &self.metrics.llm_calls,
            &[("plugin", &call.plugin), ("outcome", outcome)],
            1,
        );
        // Counted as the rounds went: also what a call that failed midway used.
        let (tokens_in, tokens_out) = record.tokens;
        Metrics::add(&self.metrics.llm_tokens, &[("direction", "in")], tokens_in);
        Metrics::add(
            &self.metrics.llm_tokens,
            &[("direction", "out")],
            tokens_out,
        );
        if tokens_in + tokens_out > 0 {
            let day = Self::day();
            self.prune_usage(day).await;
            let total = tokens_in + tokens_out;
            if let Err(err) = self
                .store
                .add_llm_usage(day, "user", call.user.id, total)
                .await
            {
                tracing::warn!(error = %err, "could not count a model call's tokens");
            }
            if let Some(room) = call.room
                && let Err(err) = self.store.add_llm_usage(day, "room", room, total).await
            {
                tracing::warn!(error = %err, "could not count a model call's tokens");
            }
        }
        let mut detail = json!({
            "plugin": call.plugin,
            "room": call.room,
            "model": self.client.as_ref().map(ModelClient::model),
            "prompt_sha256": record.prompt_sha256,
            "redactions": record.redactions,
            "reply_redactions": record.reply_redactions,
            "tools": record.tools,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "latency_ms": latency.as_millis() as u64,
            "outcome": outcome,
        });
        match record.prompt_log {
            PromptLog::None => {}
            PromptLog::Redacted => detail["prompt"] = json!(record.prompt_sent),
            PromptLog::Full => detail["prompt"] = json!(record.prompt_full),
        }
        if let Err(err) = &result {
            detail["error"] = json!(err.to_string());
        }
        self.audit(call, detail).await;
        // Never the prompt: only what happened, for operators.
        tracing::info!(
            plugin = %call.plugin,
            user = call.user.id,
            room = ?call.room,
            outcome,
            tokens_in,
            tokens_out,
            latency_ms = latency.as_millis() as u64,
            "model call"
        );
        result
    }

    async fn chat_inner(
        &self,
        call: &Call,
        progress: Option<&tokio::sync::watch::Sender<String>>,
        record: &mut CallRecord,
    ) -> Result<Answer, LlmError> {
        let client = self.client.as_ref().ok_or(LlmError::NotConfigured)?;
        validate(call)?;
        let rules = self.rules().await?;
        record.prompt_log = rules.gov.prompt_log;
        Self::check_budget(&rules.gov, self.usage_today(call.user.id, call.room).await?)?;
        let mut deadline = Instant::now() + Duration::from_secs(self.config.timeout_secs.max(1));
        let _permit = tokio::time::timeout_at(deadline.into(), self.permits.acquire())
            .await
            .map_err(|_| LlmError::Model(ModelError::Timeout))?
            .map_err(|_| LlmError::NotConfigured)?;

        // What the person may read, as lines of text; then everything through egress.
        let context = self.context(call).await?;
        let mut redactions = Redactions::default();
        let mut messages: Vec<Value> = Vec::new();
        let mut full: Vec<Value> = Vec::new();
        let first_other = call
            .messages
            .iter()
            .position(|m| m.role != Role::System)
            .unwrap_or(call.messages.len());
        let mut texts: Vec<(&'static str, String)> = call
            .messages
            .iter()
            .map(|m| (role_name(m.role), m.content.clone()))
            .collect();
        if !context.is_empty() {
            texts.insert(first_other, ("system", context));
        }
        let mut size = 0;
        for (role, text) in texts {
            let sent = redactions
                .scrub(&rules.egress, &text)
                .map_err(|blocked| LlmError::PromptBlocked(blocked.0))?;
            size += sent.len();
            full.push(json!({ "role": role, "content": text }));
            messages.push(json!({ "role": role, "content": sent }));
        }
        if size > self.config.max_prompt_bytes {
            return Err(LlmError::InvalidRequest(format!(
                "the prompt is {size} bytes, more than the {} this server sends",
                self.config.max_prompt_bytes
            )));
        }
        record.prompt_sha256 = crate::ids::sha256_hex(&Value::Array(messages.clone()).to_string());
        record.prompt_sent = Value::Array(messages.clone());
        record.prompt_full = Value::Array(full);

        let tools = call.tools.then(tool_definitions);
        let max_tokens = call
            .max_tokens
            .unwrap_or(self.config.max_output_tokens)
            .clamp(1, self.config.max_output_tokens.max(1));
        let holdback = self.config.stream_holdback_chars;
        let interval = Duration::from_millis(self.config.stream_edit_interval_ms);
        let (mut tokens_in, mut tokens_out) = (0u64, 0u64);
        let mut rounds = 0;
        let turn = loop {
            let mut shown = Instant::now() - interval;
            let egress = &rules.egress;
            let mut on_text = |text: &str| {
                if let Some(progress) = progress
                    && shown.elapsed() >= interval
                {
                    shown = Instant::now();
                    let visible = egress.visible_prefix(text, holdback);
                    progress.send_if_modified(|old| {
                        let changed = *old != visible;
                        if changed {
                            old.clone_from(&visible);
                        }
                        changed
                    });
                }
            };
            let sent_bytes: usize = messages.iter().map(|m| m.to_string().len()).sum();
            let turn = client
                .send(
                    &messages,
                    tools.as_ref(),
                    max_tokens,
                    deadline,
                    &mut on_text,
                )
                .await;
            let turn = match turn {
                Ok(turn) => turn,
                Err(err) => {
                    record.tokens = (tokens_in, tokens_out);
                    return Err(err.into());
                }
            };
            let (used_in, used_out) = turn
                .usage
                .unwrap_or((estimate(sent_bytes), estimate(turn.text.len())));
            tokens_in += used_in;
            tokens_out += used_out;
            record.tokens = (tokens_in, tokens_out);
            // Tool calls the request did not offer are not run: the answer is what came.
            if turn.finish != Finish::ToolCalls || turn.tool_calls.is_empty() || !call.tools {
                break turn;
            }
            rounds += 1;
            if rounds > rules.gov.max_tool_rounds {
                break turn;
            }
            messages.push(json!({
                "role": "assistant",
                "content": Value::Null,
                "tool_calls": turn.tool_calls.iter().map(|c| json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments },
                })).collect::<Vec<_>>(),
            }));
            for tool_call in &turn.tool_calls {
                let asked = Instant::now();
                let (decision, result) = self
                    .run_tool(&rules, call, &tool_call.name, &tool_call.arguments)
                    .await;
                // Waiting for a person is not the model's time.
                if matches!(decision, "approved" | "denied" | "expired") {
                    deadline += asked.elapsed();
                }
                Metrics::add(
                    &self.metrics.llm_tool_calls,
                    &[
                        ("tool", tool_label(&tool_call.name)),
                        ("decision", decision),
                    ],
                    1,
                );
                record.tools.push(ToolRecord {
                    tool: tool_label(&tool_call.name).to_string(),
                    decision,
                });
                let result = cut(&result, MAX_TOOL_RESULT_BYTES);
                // Tool results leave for the model too: same egress as the prompt.
                let result = match redactions.scrub(&rules.egress, &result) {
                    Ok(sent) => sent,
                    Err(blocked) => format!(
                        "withheld: the result holds data that may not leave for the model ({})",
                        blocked.0
                    ),
                };
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": tool_call.id,
                    "content": result,
                }));
            }
        };
        for (detector, n) in &redactions.counts {
            Metrics::add(
                &self.metrics.llm_redactions,
                &[("detector", detector), ("direction", "prompt")],
                u64::from(*n),
            );
        }
        record.redactions = redactions.counts.clone();

        let (mut text, outcome, note) = match turn.finish {
            Finish::Done => (turn.text, "ok", None),
            // Tools it was not offered: what it wrote besides is the answer.
            Finish::ToolCalls if !call.tools => (turn.text, "ok", None),
            Finish::ToolCalls => (
                turn.text,
                "tool_rounds",
                Some("the assistant stopped: it asked for tools too many times"),
            ),
            Finish::Truncated => (
                turn.text,
                "truncated",
                Some("the answer is incomplete: the model's stream ended early"),
            ),
            Finish::TooLarge => (
                turn.text,
                "too_large",
                Some("the answer was cut: it is longer than this server allows"),
            ),
            Finish::OutOfTime => (
                turn.text,
                "timeout",
                Some("the answer was cut: the model took too long"),
            ),
        };
        if text.trim().is_empty() && !matches!(outcome, "ok" | "tool_rounds") {
            return Err(LlmError::Model(ModelError::BadResponse(
                note.unwrap_or("empty answer").to_string(),
            )));
        }
        // What a model writes is text for people: no control characters but line breaks
        // and tabs (the message rules refuse the rest).
        text.retain(|c| !c.is_control() || c == '\n' || c == '\t');
        let (masked, reply_counts) = rules.egress.mask_reply(&text);
        for (detector, n) in &reply_counts {
            Metrics::add(
                &self.metrics.llm_redactions,
                &[("detector", detector), ("direction", "reply")],
                u64::from(*n),
            );
        }
        record.reply_redactions = reply_counts;
        text = masked;
        if let Some(note) = note {
            text = format!("{}\n\n[{note}]", text.trim_end());
        }
        if text.trim().is_empty() {
            text = "(the model gave an empty answer)".to_string();
        }
        let private_text = if rules.gov.restore_redacted {
            redactions.restore(&text)
        } else {
            text.clone()
        };
        Ok(Answer {
            text,
            private_text,
            tokens_in,
            tokens_out,
            outcome,
        })
    }
}

struct CallRecord {
    prompt_log: PromptLog,
    prompt_sha256: String,
    prompt_sent: Value,
    prompt_full: Value,
    redactions: BTreeMap<String, u32>,
    reply_redactions: BTreeMap<String, u32>,
    tools: Vec<ToolRecord>,
    tokens: (u64, u64),
}

fn super_lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn validate(call: &Call) -> Result<(), LlmError> {
    if call.messages.is_empty() {
        return Err(LlmError::InvalidRequest(
            "a request needs at least one message".into(),
        ));
    }
    if call.messages.len() > 64 {
        return Err(LlmError::InvalidRequest(
            "a request has at most 64 messages".into(),
        ));
    }
    if call.context.len() > 8 {
        return Err(LlmError::InvalidRequest(
            "a request takes context from at most 8 rooms".into(),
        ));
    }
    if call.messages.iter().any(|m| m.content.contains('\0')) {
        return Err(LlmError::InvalidRequest(
            "a message holds a NUL character".into(),
        ));
    }
    Ok(())
}

impl Default for CallRecord {
    fn default() -> Self {
        Self {
            prompt_log: PromptLog::None,
            prompt_sha256: String::new(),
            prompt_sent: Value::Null,
            prompt_full: Value::Null,
            redactions: BTreeMap::new(),
            reply_redactions: BTreeMap::new(),
            tools: Vec::new(),
            tokens: (0, 0),
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// About four bytes a token: the estimate when a back-end does not count.
fn estimate(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    format!("{}\n[cut]", &text[..client::floor_char_boundary(text, max)])
}

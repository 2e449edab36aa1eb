//! The OpenAI-compatible chat-completions client: one request, its reply read as a stream
//! of server-sent events (or whole), under the operator's limits. It knows the wire format
//! and nothing of policy: what it sends was already scrubbed, what it returns is masked by
//! the caller.
//!
//! Streams are parsed here rather than by an SSE crate because the limits must apply while
//! reading: a line, a reply and the wait for the next piece are all bounded, so an endless
//! or stalled stream ends the call instead of holding it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

/// The longest single line of an event stream (one chunk's JSON).
const MAX_LINE_BYTES: usize = 256 * 1024;
/// The longest non-streamed answer body.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Why a request to the model failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model is unreachable")]
    Unreachable,
    #[error("the model did not answer in time")]
    Timeout,
    #[error("the model answered with HTTP status {0}")]
    Status(u16),
    #[error("the model's answer could not be read: {0}")]
    BadResponse(String),
}

/// A tool call the model asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct ToolCall {
    pub(crate) id: String,
    pub(crate) name: String,
    /// JSON text, as the model wrote it (maybe invalid).
    pub(crate) arguments: String,
}

/// How a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The model finished (`stop`, or `length` at the token cap).
    Done,
    /// The model asks for tool calls.
    ToolCalls,
    /// The stream ended without saying it was done (the connection closed early).
    Truncated,
    /// Longer than `max_reply_bytes`: reading stopped there.
    TooLarge,
    /// The call's time ran out while text was still arriving.
    OutOfTime,
}

/// One answer of the model.
#[derive(Debug)]
pub(crate) struct Turn {
    pub(crate) text: String,
    pub(crate) tool_calls: Vec<ToolCall>,
    /// `(prompt, completion)` tokens, when the back-end said.
    pub(crate) usage: Option<(u64, u64)>,
    pub(crate) finish: Finish,
}

pub(crate) struct ModelClient {
    http: reqwest::Client,
    url: String,
    key: Option<String>,
    model: String,
    stream: bool,
    stream_usage: bool,
    max_tokens_field: &'static str,
    idle: Duration,
    max_reply_bytes: usize,
}

impl ModelClient {
    pub(crate) fn new(config: &crate::config::LlmConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            // The model is wherever the operator said: no redirects to elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("llm: HTTP client: {e}"))?;
        Ok(Self {
            http,
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            key: config.api_key.as_ref().map(|k| k.expose().to_string()),
            model: config.model.clone(),
            stream: config.stream,
            stream_usage: config.stream_usage,
            max_tokens_field: config.max_tokens_field.as_str(),
            idle: Duration::from_secs(config.idle_timeout_secs.max(1)),
            max_reply_bytes: config.max_reply_bytes,
        })
    }

    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    /// Send `messages` (OpenAI's shape) and read the answer until `deadline`; `progress`
    /// sees the reply's text so far each time more arrives.
    pub(crate) async fn send(
        &self,
        messages: &[Value],
        tools: Option<&Value>,
        max_tokens: u32,
        deadline: Instant,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Turn, ModelError> {
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "stream": self.stream,
        });
        body[self.max_tokens_field] = json!(max_tokens);
        if self.stream && self.stream_usage {
            body["stream_options"] = json!({ "include_usage": true });
        }
        if let Some(tools) = tools {
            body["tools"] = tools.clone();
        }
        let mut request = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let response = tokio::time::timeout(left, request.send())
            .await
            .map_err(|_| ModelError::Timeout)?
            .map_err(|e| {
                if e.is_timeout() {
                    ModelError::Timeout
                } else {
                    ModelError::Unreachable
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(ModelError::Status(status.as_u16()));
        }
        let event_stream = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if event_stream {
            self.read_stream(response, deadline, progress).await
        } else {
            self.read_whole(response, deadline, progress).await
        }
    }

    async fn read_whole(
        &self,
        response: reqwest::Response,
        deadline: Instant,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Turn, ModelError> {
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left.min(self.idle), chunks.next())
                .await
                .map_err(|_| ModelError::Timeout)?;
            match next {
                None => break,
                Some(Ok(bytes)) => {
                    if body.len() + bytes.len() > MAX_BODY_BYTES {
                        return Err(ModelError::BadResponse("the answer is too large".into()));
                    }
                    body.extend_from_slice(&bytes);
                }
                Some(Err(_)) => {
                    return Err(ModelError::BadResponse("the connection broke".into()));
                }
            }
        }
        let value: Value = serde_json::from_slice(&body)
            .map_err(|_| ModelError::BadResponse("the answer is not JSON".into()))?;
        let choice = value
            .pointer("/choices/0")
            .ok_or_else(|| ModelError::BadResponse("the answer has no choices".into()))?;
        let message = choice.get("message").cloned().unwrap_or(Value::Null);
        let mut text = message
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut finish = finish_of(choice.get("finish_reason"));
        if text.len() > self.max_reply_bytes {
            text.truncate(floor_char_boundary(&text, self.max_reply_bytes));
            finish = Finish::TooLarge;
        }
        let mut tool_calls = Vec::new();
        for call in message
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            tool_calls.push(ToolCall {
                id: str_at(call, "/id"),
                name: str_at(call, "/function/name"),
                arguments: str_at(call, "/function/arguments"),
            });
        }
        if !tool_calls.is_empty() {
            finish = Finish::ToolCalls;
        }
        progress(&text);
        Ok(Turn {
            text,
            tool_calls,
            usage: usage_of(&value),
            finish,
        })
    }

    async fn read_stream(
        &self,
        response: reqwest::Response,
        deadline: Instant,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Turn, ModelError> {
        let mut chunks = response.bytes_stream();
        let mut line: Vec<u8> = Vec::new();
        let mut turn = Turn {
            text: String::new(),
            tool_calls: Vec::new(),
            usage: None,
            finish: Finish::Truncated,
        };
        let mut finished = false;
        'read: loop {
            let now = Instant::now();
            if now >= deadline {
                turn.finish = Finish::OutOfTime;
                break;
            }
            let wait = (deadline - now).min(self.idle);
            let next = match tokio::time::timeout(wait, chunks.next()).await {
                Ok(next) => next,
                // Said it was done, then went quiet without `[DONE]`: done.
                Err(_) if finished => break,
                // Out of time with text: keep it (marked); silent throughout: a timeout.
                Err(_) if Instant::now() >= deadline && !turn.text.is_empty() => {
                    turn.finish = Finish::OutOfTime;
                    break;
                }
                // Went quiet after some text: keep it, marked incomplete.
                Err(_) if !turn.text.is_empty() => break,
                Err(_) => return Err(ModelError::Timeout),
            };
            let bytes = match next {
                None | Some(Err(_)) => break,
                Some(Ok(bytes)) => bytes,
            };
            for &byte in bytes.iter() {
                if byte != b'\n' {
                    if line.len() >= MAX_LINE_BYTES {
                        return Err(ModelError::BadResponse("a stream line is too long".into()));
                    }
                    line.push(byte);
                    continue;
                }
                let data = std::mem::take(&mut line);
                let data = data.strip_suffix(b"\r").unwrap_or(&data);
                let Some(payload) = data.strip_prefix(b"data:") else {
                    continue; // comments, `event:`, blank separators
                };
                let payload = payload.trim_ascii();
                if payload == b"[DONE]" {
                    finished = true;
                    break 'read;
                }
                let chunk: Value = serde_json::from_slice(payload)
                    .map_err(|_| ModelError::BadResponse("a stream event is not JSON".into()))?;
                if let Some(usage) = usage_of(&chunk) {
                    turn.usage = Some(usage);
                }
                let Some(choice) = chunk.pointer("/choices/0") else {
                    continue;
                };
                if let Some(piece) = choice.pointer("/delta/content").and_then(Value::as_str) {
                    if turn.text.len() + piece.len() > self.max_reply_bytes {
                        let room = self.max_reply_bytes - turn.text.len();
                        turn.text
                            .push_str(&piece[..floor_char_boundary(piece, room)]);
                        turn.finish = Finish::TooLarge;
                        progress(&turn.text);
                        return Ok(turn);
                    }
                    turn.text.push_str(piece);
                    progress(&turn.text);
                }
                for call in choice
                    .pointer("/delta/tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let index = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                    if index >= 16 {
                        return Err(ModelError::BadResponse("too many tool calls".into()));
                    }
                    while turn.tool_calls.len() <= index {
                        turn.tool_calls.push(ToolCall::default());
                    }
                    let slot = &mut turn.tool_calls[index];
                    if let Some(id) = call.get("id").and_then(Value::as_str) {
                        slot.id = id.to_string();
                    }
                    if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                        slot.name.push_str(name);
                    }
                    if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str)
                    {
                        if slot.arguments.len() + args.len() > self.max_reply_bytes {
                            return Err(ModelError::BadResponse("tool arguments too long".into()));
                        }
                        slot.arguments.push_str(args);
                    }
                }
                if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
                    turn.finish = finish_of(Some(reason));
                    finished = true;
                    // Keep reading: the usage chunk and `[DONE]` may follow.
                }
            }
        }
        if !finished && turn.finish != Finish::OutOfTime {
            turn.finish = Finish::Truncated;
        }
        if !turn.tool_calls.is_empty() && finished {
            turn.finish = Finish::ToolCalls;
        }
        Ok(turn)
    }
}

fn finish_of(reason: Option<&Value>) -> Finish {
    match reason.and_then(Value::as_str) {
        Some("tool_calls") | Some("function_call") => Finish::ToolCalls,
        _ => Finish::Done,
    }
}

fn usage_of(value: &Value) -> Option<(u64, u64)> {
    let usage = value.get("usage")?;
    Some((
        usage.get("prompt_tokens")?.as_u64()?,
        usage.get("completion_tokens")?.as_u64()?,
    ))
}

fn str_at(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The largest index `<= at` on a character boundary of `text`.
pub(crate) fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

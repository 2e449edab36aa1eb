//! A scripted stand-in for a language model. Tests have no internet and no model weights, so
//! the server's `[llm] base_url` points here instead: a small OpenAI-compatible server on
//! `127.0.0.1:0` that serves `POST /v1/chat/completions` (streamed as server-sent events when
//! the request says `"stream": true`, else one JSON completion) and `GET /v1/models`.
//!
//! Tests script it with [`ModelServer::script`]: each request consumes the next [`Reply`] —
//! text, a tool call, or one of the ways a real provider misbehaves (errors, broken JSON, cut
//! or endless streams, stalls). With nothing scripted it echoes the last user message, so a
//! test can see what reached the model. Every request is recorded (body and `Authorization`
//! header) before it is answered, for tests to inspect what the server sent.

#![allow(dead_code)] // each test uses a different part of the stand-in

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::sleep;

/// The completion id of every answer; tests have no use for unique ones.
const ID: &str = "chatcmpl-test";
/// Characters per streamed piece of text, small enough that a short reply arrives in several.
const PIECE: usize = 6;
/// Characters per streamed piece of [`Reply::Huge`], large enough to be quick.
const HUGE_PIECE: usize = 1024;

/// One scripted answer of the model.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A normal answer. Streamed as SSE chunks (pieces of ~6 characters, on char boundaries)
    /// when the request has `"stream": true`, else one JSON completion.
    Text(String),
    /// Same, but with `delay` before each streamed piece (non-stream: before answering).
    Slow { text: String, delay: Duration },
    /// One tool call: `name` with `arguments` (a JSON text, sent verbatim even if invalid),
    /// finish_reason `tool_calls`. The call's id is `call_<n>`, n the request's number (from 1).
    ToolCall { name: String, arguments: String },
    /// An HTTP error status with an OpenAI-style error body.
    Error { status: u16, message: String },
    /// HTTP 200 whose body is not valid JSON (stream: `data: {not json` then `data: [DONE]`).
    InvalidJson,
    /// Streams the text, then cuts the connection: no finish_reason chunk, no `data: [DONE]`
    /// (non-stream: half the JSON completion, then the cut).
    Truncated(String),
    /// Streams `"la "` every 5 ms until the client goes away.
    Endless,
    /// Streams this many bytes of text (`x x x …`) as fast as possible, then finishes normally.
    Huge(usize),
    /// Sends the response headers, then nothing, keeping the connection open until the client
    /// goes away.
    Stall,
}

/// What the model has been told and has yet to say; shared with the handler.
#[derive(Default)]
struct Log {
    script: VecDeque<Reply>,
    requests: Vec<Value>,
    authorizations: Vec<Option<String>>,
}

type Shared = Arc<Mutex<Log>>;

/// A running stand-in model; stops when dropped.
pub struct ModelServer {
    addr: SocketAddr,
    log: Shared,
    task: JoinHandle<()>,
}

impl ModelServer {
    /// Start on `127.0.0.1:0`; serves `POST /v1/chat/completions` and `GET /v1/models`
    /// (listing one model, `test-model`).
    pub async fn start() -> ModelServer {
        let log = Shared::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route("/v1/models", get(models))
            // Long conversations must reach the model whole; a real provider takes them.
            .layer(DefaultBodyLimit::disable())
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the model server");
        let addr = listener.local_addr().expect("model server address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ModelServer { addr, log, task }
    }

    /// `http://127.0.0.1:PORT/v1`: what the server's `[llm] base_url` is set to.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queue scripted replies; each request consumes the next one, and when none is left the
    /// default reply (`echo: <last user message>`) is used.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Every request body received so far, in order. A body that was not JSON is recorded as
    /// a JSON string of its text, so indexes match [`Self::authorizations`].
    pub fn requests(&self) -> Vec<Value> {
        self.lock().requests.clone()
    }

    /// The `Authorization` header of every request, in order (`None` when absent).
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.lock().authorizations.clone()
    }

    /// Wait until at least `n` requests arrived (polling every 20 ms, panicking after 20 s);
    /// returns all of them.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the model server got {} of {n} expected requests within 20 s: {requests:#?}",
                    requests.len()
                );
            }
            sleep(Duration::from_millis(20)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().expect("model server state")
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn models() -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": "test-model", "object": "model", "created": 0, "owned_by": "tests"}],
    }))
}

async fn completions(State(log): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let request = serde_json::from_slice::<Value>(&body);
    // Record before answering, so a test that waits for the request sees it even when the
    // answer never comes (Stall, Endless).
    let (scripted, number) = {
        let mut log = log.lock().expect("model server state");
        log.authorizations.push(authorization);
        log.requests.push(match &request {
            Ok(value) => value.clone(),
            Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        });
        let number = log.requests.len();
        // A malformed request is refused without using up the script.
        let scripted = if request.is_ok() {
            log.script.pop_front()
        } else {
            None
        };
        (scripted, number)
    };
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            let message = format!("request body is not JSON: {e}");
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", &message);
        }
    };
    let reply = scripted.unwrap_or_else(|| Reply::Text(format!("echo: {}", last_user(&request))));
    if let Reply::Error { status, message } = &reply {
        let status = StatusCode::from_u16(*status).expect("Reply::Error has a valid HTTP status");
        return error(status, "server_error", message);
    }
    let messages = request["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let ctx = Ctx {
        model: request["model"]
            .as_str()
            .unwrap_or("test-model")
            .to_string(),
        call_id: format!("call_{number}"),
        prompt_tokens: tokens(messages.iter().map(|m| text_of(&m["content"]).len()).sum()),
        include_usage: request["stream_options"]["include_usage"].as_bool() == Some(true),
    };
    if request["stream"].as_bool() == Some(true) {
        streamed("text/event-stream", move |out| stream(reply, ctx, out))
    } else {
        whole(reply, ctx).await
    }
}

/// The answer to a request without `"stream": true`.
async fn whole(reply: Reply, ctx: Ctx) -> Response {
    let text =
        |text: &str| ctx.completion(json!({"role": "assistant", "content": text}), "stop", text);
    match reply {
        Reply::Text(t) => Json(text(&t)).into_response(),
        Reply::Slow { text: t, delay } => {
            sleep(delay).await;
            Json(text(&t)).into_response()
        }
        Reply::Huge(bytes) => Json(text(&huge_text(bytes))).into_response(),
        Reply::ToolCall { name, arguments } => {
            let call = json!({
                "id": ctx.call_id, "type": "function",
                "function": {"name": name, "arguments": arguments},
            });
            let message = json!({"role": "assistant", "content": null, "tool_calls": [call]});
            Json(ctx.completion(message, "tool_calls", &arguments)).into_response()
        }
        Reply::InvalidJson => {
            ([(header::CONTENT_TYPE, "application/json")], "{not json").into_response()
        }
        Reply::Truncated(t) => {
            let full = text(&t).to_string();
            let mut half = full.len() / 2;
            while !full.is_char_boundary(half) {
                half -= 1;
            }
            let start = full[..half].to_string();
            streamed("application/json", move |out| async move {
                if out.raw(start).await {
                    out.cut().await;
                }
            })
        }
        Reply::Endless => streamed("application/json", move |out| async move {
            // A completion whose content never ends.
            let start = r#"{"id":"chatcmpl-test","choices":[{"message":{"content":""#;
            if !out.raw(start).await {
                return;
            }
            loop {
                sleep(Duration::from_millis(5)).await;
                if !out.raw("la ").await {
                    return;
                }
            }
        }),
        Reply::Stall => streamed("application/json", |out| out.stall()),
        Reply::Error { .. } => unreachable!("errors are answered before the body is chosen"),
    }
}

/// Write the SSE answer to a request with `"stream": true`.
async fn stream(reply: Reply, ctx: Ctx, out: Sink) {
    match reply {
        Reply::Text(text) => ctx.say(&out, &text, PIECE, Duration::ZERO).await,
        Reply::Slow { text, delay } => ctx.say(&out, &text, PIECE, delay).await,
        Reply::Huge(bytes) => {
            ctx.say(&out, &huge_text(bytes), HUGE_PIECE, Duration::ZERO)
                .await
        }
        Reply::ToolCall { name, arguments } => {
            // As OpenAI does: the first chunk names the call, later ones carry the arguments.
            let call = json!({
                "index": 0, "id": ctx.call_id, "type": "function",
                "function": {"name": name, "arguments": ""},
            });
            let first = json!({"role": "assistant", "content": null, "tool_calls": [call]});
            if !out.data(&ctx.chunk(first, None)).await {
                return;
            }
            for piece in pieces(&arguments, PIECE) {
                let delta = json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]});
                if !out.data(&ctx.chunk(delta, None)).await {
                    return;
                }
            }
            ctx.finish(&out, "tool_calls", &arguments).await;
        }
        Reply::InvalidJson => {
            if out.raw("data: {not json\n\n").await {
                out.raw("data: [DONE]\n\n").await;
            }
        }
        Reply::Truncated(text) => {
            if ctx.content(&out, &text, PIECE, Duration::ZERO).await {
                out.cut().await;
            }
        }
        Reply::Endless => {
            if !ctx.content(&out, "", PIECE, Duration::ZERO).await {
                return;
            }
            loop {
                sleep(Duration::from_millis(5)).await;
                if !out.data(&ctx.chunk(json!({"content": "la "}), None)).await {
                    return;
                }
            }
        }
        Reply::Stall => out.stall().await,
        Reply::Error { .. } => unreachable!("errors are answered before streaming"),
    }
}

/// What every chunk and completion of one answer shares.
struct Ctx {
    model: String,
    call_id: String,
    prompt_tokens: u64,
    include_usage: bool,
}

impl Ctx {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": ID, "object": "chat.completion.chunk", "created": 0, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        })
    }

    fn completion(&self, message: Value, finish_reason: &str, said: &str) -> Value {
        json!({
            "id": ID, "object": "chat.completion", "created": 0, "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": self.usage(said),
        })
    }

    fn usage(&self, said: &str) -> Value {
        let completion = tokens(said.len());
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
    }

    /// The role chunk, then `text` in pieces of `chars` characters, each after `delay`.
    /// False once the client has gone.
    async fn content(&self, out: &Sink, text: &str, chars: usize, delay: Duration) -> bool {
        if !out
            .data(&self.chunk(json!({"role": "assistant", "content": ""}), None))
            .await
        {
            return false;
        }
        for piece in pieces(text, chars) {
            if !delay.is_zero() {
                sleep(delay).await;
            }
            if !out.data(&self.chunk(json!({"content": piece}), None)).await {
                return false;
            }
        }
        true
    }

    /// A whole streamed text answer.
    async fn say(&self, out: &Sink, text: &str, chars: usize, delay: Duration) {
        if self.content(out, text, chars, delay).await {
            self.finish(out, "stop", text).await;
        }
    }

    /// The end of a proper stream: the finish_reason chunk, usage if asked for, `[DONE]`.
    async fn finish(&self, out: &Sink, finish_reason: &str, said: &str) {
        if !out.data(&self.chunk(json!({}), Some(finish_reason))).await {
            return;
        }
        if self.include_usage {
            let usage = json!({
                "id": ID, "object": "chat.completion.chunk", "created": 0, "model": self.model,
                "choices": [], "usage": self.usage(said),
            });
            if !out.data(&usage).await {
                return;
            }
        }
        out.raw("data: [DONE]\n\n").await;
    }
}

/// The writing end of a streamed response body.
struct Sink(mpsc::Sender<Result<Bytes, io::Error>>);

impl Sink {
    /// False once the client has gone (the body, and so the receiver, was dropped).
    async fn raw(&self, bytes: impl Into<Bytes>) -> bool {
        self.0.send(Ok(bytes.into())).await.is_ok()
    }

    async fn data(&self, json: &Value) -> bool {
        self.raw(format!("data: {json}\n\n")).await
    }

    /// End the body with an error: hyper then drops the connection without the final empty
    /// chunk, so the client sees a cut rather than a complete response.
    async fn cut(self) {
        let _ = self
            .0
            .send(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "cut by the test model",
            )))
            .await;
    }

    /// Hold the body open, sending nothing, until the client goes away.
    async fn stall(self) {
        self.0.closed().await;
    }
}

/// A response whose body is what `produce`, run as its own task, writes into a [`Sink`]; the
/// body ends when `produce` returns (channels let delays and endless streams be plain loops).
fn streamed<F>(content_type: &'static str, produce: impl FnOnce(Sink) -> F) -> Response
where
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(produce(Sink(tx)));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    (status, Json(body)).into_response()
}

/// The text of the last user message: what the default reply echoes.
fn last_user(request: &Value) -> String {
    request["messages"]
        .as_array()
        .and_then(|messages| messages.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| text_of(&m["content"]))
        .unwrap_or_default()
}

/// A message's content as text: a string, or the text parts of a list of parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
        _ => String::new(),
    }
}

/// A rough token count, as providers report one: a token per four bytes.
fn tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

/// `text` in pieces of `chars` characters, never splitting one.
fn pieces(text: &str, chars: usize) -> Vec<String> {
    let all: Vec<char> = text.chars().collect();
    all.chunks(chars)
        .map(|piece| piece.iter().collect())
        .collect()
}

fn huge_text(bytes: usize) -> String {
    let mut text = "x ".repeat(bytes.div_ceil(2));
    text.truncate(bytes);
    text
}

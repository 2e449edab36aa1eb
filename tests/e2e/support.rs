//! The test harness: start a server, make users, speak HTTP and WebSocket to it.

#![allow(dead_code)] // each test module uses a different part of the harness

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard::config::{Config, Secret};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const PASSWORD: &str = "correct horse battery";

/// The path of `emoji`'s reaction to `message`, the emoji percent-encoded as the web client's
/// `encodeURIComponent` does for emoji (every byte that is not a letter, digit, `_` or `-`).
pub fn reaction_path(room: i64, message: i64, emoji: &str) -> String {
    let segment: String = emoji
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/api/v1/rooms/{room}/messages/{message}/reactions/{segment}")
}

fn init_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("TEST_LOG_FILTER")
                    .unwrap_or_else(|_| "debug,sqlx=warn,hyper=info".into()),
            ))
            .with_test_writer()
            .try_init();
    }
}

/// A running server with its own data directory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub dir: TempDir,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir, tweak).await
    }

    /// Start on an existing data directory (a restart).
    pub async fn start_in(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_at(dir, any_port, tweak).await
    }

    /// Start on an existing data directory *and* a given address: a restart that clients
    /// (a browser tab, say) must find again at the URL they already have. Binding retries
    /// briefly, since the previous server's socket may take a moment to go.
    pub async fn start_at(dir: TempDir, addr: SocketAddr, tweak: impl FnOnce(&mut Config)) -> Self {
        init_logging();
        let mut config = Config::default();
        config.data_dir = dir.path().to_path_buf();
        config.initial_admin_password = Some(Secret(ADMIN_PASSWORD.into()));
        // Fast argon2 is not configurable; keep login counts low in tests instead.
        config.limits.ws_sync_grace_ms = 300;
        // Presence frames would interleave with what the other tests read off sockets;
        // the presence tests turn it on.
        config.presence.enabled = false;
        tweak(&mut config);
        let listener = bind(addr).await;
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(switchboard::serve(config, listener, async {
            let _ = rx.await;
        }));
        let server = Self {
            addr,
            base: format!("http://{addr}"),
            dir,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        };
        server.wait_ready().await;
        server
    }

    /// Stop, then start again on the same data directory and address.
    pub async fn restart(self, tweak: impl FnOnce(&mut Config)) -> Self {
        let addr = self.addr;
        let dir = self.stop().await;
        Self::start_at(dir, addr, tweak).await
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(resp) = self.http.get(format!("{}/healthz", self.base)).send().await
                && resp.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not become ready");
    }

    /// Graceful stop; returns the data directory for a restart.
    pub async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server result");
        }
        let dir = tempfile::tempdir().expect("placeholder");
        std::mem::replace(&mut self.dir, dir)
    }

    pub async fn login(&self, name: &str, password: &str) -> Client {
        Client::login(&self.http, &self.base, name, password).await
    }

    pub async fn admin(&self) -> Client {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Create a user (as admin) and log in as them.
    pub async fn user(&self, name: &str) -> Client {
        self.admin().await.create_user(name).await
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/api/v1/ws?token={token}", self.addr)
    }
}

async fn bind(addr: SocketAddr) -> tokio::net::TcpListener {
    let mut tries = 0;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(err) if addr.port() != 0 && tries < 50 => {
                tries += 1;
                tracing::debug!(%addr, error = %err, "address busy, retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("bind {addr}: {err}"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A logged-in user speaking HTTP.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
    pub refresh: String,
    pub id: i64,
    pub name: String,
}

impl Client {
    /// Log in on the server at `base`.
    pub async fn login(http: &reqwest::Client, base: &str, name: &str, password: &str) -> Self {
        let resp = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({ "username": name, "password": password }))
            .send()
            .await
            .expect("login request");
        assert_eq!(resp.status(), StatusCode::OK, "login as {name}");
        let body: Value = resp.json().await.expect("login body");
        Client {
            base: base.to_string(),
            http: http.clone(),
            token: body["access_token"].as_str().expect("token").to_string(),
            refresh: body["refresh_token"].as_str().expect("refresh").to_string(),
            id: body["user"]["id"].as_i64().expect("id"),
            name: name.to_string(),
        }
    }

    /// As an admin: create the user `name` (password [`PASSWORD`]) and log in as them on the
    /// same server.
    pub async fn create_user(&self, name: &str) -> Client {
        let (status, body) = self
            .post(
                "/api/v1/users",
                json!({ "name": name, "password": PASSWORD }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "create {name}: {body}");
        Client::login(&self.http, &self.base, name, PASSWORD).await
    }

    /// Send with this user's token; the answer must fit the OpenAPI description
    /// ([`crate::api_contract::check`]).
    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let request = req.bearer_auth(&self.token).build().expect("request");
        let (method, path) = (request.method().clone(), request.url().path().to_string());
        let resp = self.http.execute(request).await.expect("request");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.expect("body");
        crate::api_contract::check(
            method.as_str(),
            &path,
            status.as_u16(),
            content_type.as_deref(),
            &text,
        );
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }
    /// POST raw bytes with this content type (for bodies no JSON value can express).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        self.send(request).await
    }
    pub async fn put_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.put(format!("{}{path}", self.base)).json(&body))
            .await
    }
    /// PUT without a body (the path says it all: a reaction, a pin).
    pub async fn put(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.put(format!("{}{path}", self.base)))
            .await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(&body))
            .await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// Create a group room with these members; returns its id.
    pub async fn group(&self, name: &str, members: &[i64]) -> i64 {
        let (status, body) = self
            .post(
                "/api/v1/rooms",
                json!({ "kind": "group", "name": name, "members": members }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().expect("room id")
    }

    pub async fn direct(&self, peer: i64) -> i64 {
        let (status, body) = self
            .post("/api/v1/rooms", json!({ "kind": "direct", "user": peer }))
            .await;
        assert!(
            status == StatusCode::CREATED || status == StatusCode::OK,
            "{status} {body}"
        );
        body["id"].as_i64().expect("room id")
    }

    pub async fn send_http(
        &self,
        room: i64,
        client_msg_id: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/api/v1/rooms/{room}/messages"),
            json!({ "client_msg_id": client_msg_id, "body": body }),
        )
        .await
    }

    pub async fn history(&self, room: i64, query: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/api/v1/rooms/{room}/messages{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().expect("events").clone()
    }

    pub async fn ws(&self, server: &TestServer) -> Ws {
        Ws::connect(&server.ws_url(&self.token)).await
    }
}

/// A real WebSocket client.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read past while waiting for an ack, handed out by `recv` first.
    pending: std::collections::VecDeque<Value>,
}

impl Ws {
    pub async fn connect(url: &str) -> Self {
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        let mut ws = Self {
            stream,
            pending: std::collections::VecDeque::new(),
        };
        let hello = ws.recv().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        ws
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("ws send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.expect("ws send");
    }

    /// The next JSON frame (pings are answered by tungstenite and skipped here).
    pub async fn recv(&mut self) -> Value {
        self.try_recv(Duration::from_secs(10))
            .await
            .expect("a frame within 10 s")
    }

    pub async fn try_recv(&mut self, wait: Duration) -> Option<Value> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        self.read_stream(wait).await
    }

    async fn read_stream(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match next.expect("ws read") {
                Message::Text(text) => {
                    return Some(serde_json::from_str(&text).expect("json frame"));
                }
                Message::Close(frame) => panic!("unexpected close: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next JSON frame, or `None` once the connection ends (closed, reset) or `wait`
    /// passes — for tests that expect the server to go away.
    pub async fn recv_or_end(&mut self, wait: Duration) -> Option<Value> {
        if let Some(frame) = self.pending.pop_front() {
            return Some(frame);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??
            {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next frame of `kind`, skipping others (typing, read receipts…).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Frames until the server closes; returns the close code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("close within 15 s")
            {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code.into(), frame.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(err)) => return (1006, err.to_string()),
            }
        }
    }

    pub async fn send_msg(&mut self, room: i64, client_msg_id: &str, body: &str) -> Value {
        self.send(
            json!({ "type": "send", "room": room, "client_msg_id": client_msg_id, "body": body }),
        )
        .await;
        loop {
            let frame = self
                .read_stream(Duration::from_secs(10))
                .await
                .expect("an ack within 10 s");
            let done = (frame["type"] == "ack" && frame["client_msg_id"] == client_msg_id)
                || frame["type"] == "error";
            if done {
                return frame;
            }
            // Keep what arrived first (e.g. the sender's own copy of the event) for `recv`.
            self.pending.push_back(frame);
        }
    }
}

/// Audit records (one, or a list) as text, without what the server derives from the clock
/// and the hash chain: `at`, `hash`, `prev_hash` and `detail.prompt_sha256`. Their digits
/// and hex may hold any short run of digits by chance (a record stamped 1796441118153 held
/// "4111"), so a check that no part of a message reached the audit log reads this.
pub fn audit_words(records: &Value) -> String {
    fn strip(record: &mut Value) {
        if let Some(fields) = record.as_object_mut() {
            for derived in ["at", "hash", "prev_hash"] {
                fields.remove(derived);
            }
            if let Some(detail) = fields.get_mut("detail").and_then(Value::as_object_mut) {
                detail.remove("prompt_sha256");
            }
        }
    }
    let mut words = records.clone();
    match words.as_array_mut() {
        Some(list) => list.iter_mut().for_each(strip),
        None => strip(&mut words),
    }
    words.to_string()
}

//! Setting up a run through the public API (users, logins, rooms) and the WebSocket client
//! the scenarios drive.

use std::sync::Arc;

use anyhow::{Context, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::server::{ADMIN_PASSWORD, Server};

pub type WsSink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
pub type WsStream = SplitStream<WebSocketStream<MaybeTlsStream<TcpStream>>>;

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub token: String,
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    admin: String,
}

const PASSWORD: &str = "bench-user-password";
/// Password hashing dominates setup; this many at once keeps both cores busy.
const SETUP_CONCURRENCY: usize = 8;

impl Api {
    pub async fn new(server: &Server) -> anyhow::Result<Self> {
        let http = reqwest::Client::new();
        let admin = login(&http, &server.base, "admin", ADMIN_PASSWORD)
            .await?
            .token;
        Ok(Self {
            http,
            base: server.base.clone(),
            admin,
        })
    }

    /// Create `count` users named `<prefix>-<i>` and log each in.
    pub async fn users(&self, prefix: &str, count: usize) -> anyhow::Result<Vec<User>> {
        let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
        let results: Vec<anyhow::Result<User>> = stream::iter(names)
            .map(|name| async move {
                let resp = self
                    .http
                    .post(format!("{}/api/v1/users", self.base))
                    .bearer_auth(&self.admin)
                    .json(&json!({ "name": name, "password": PASSWORD }))
                    .send()
                    .await?;
                if !resp.status().is_success() && resp.status().as_u16() != 409 {
                    bail!("creating {name}: {}", resp.text().await.unwrap_or_default());
                }
                login(&self.http, &self.base, &name, PASSWORD).await
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Log `name` in again (a long run outlives an access token).
    pub async fn login(&self, name: &str) -> anyhow::Result<User> {
        login(&self.http, &self.base, name, PASSWORD).await
    }

    /// The database's size in bytes, as the admin health page reports it.
    pub async fn store_size(&self) -> anyhow::Result<Option<u64>> {
        // A fresh login: a long run outlives the first access token.
        let admin = login(&self.http, &self.base, "admin", ADMIN_PASSWORD).await?;
        let health: Value = self
            .http
            .get(format!("{}/api/v1/admin/health", self.base))
            .bearer_auth(&admin.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(health["store"]["size_bytes"].as_u64())
    }

    /// A group room owned by `owner` with `members`.
    pub async fn group(&self, owner: &User, name: &str, members: &[i64]) -> anyhow::Result<i64> {
        let mut added: Vec<i64> = members.iter().copied().filter(|&m| m != owner.id).collect();
        // Create with the first chunk, then add the rest (keeps each request small).
        let first: Vec<i64> = added.drain(..added.len().min(500)).collect();
        let room: Value = self
            .http
            .post(format!("{}/api/v1/rooms", self.base))
            .bearer_auth(&owner.token)
            .json(&json!({ "kind": "group", "name": name, "members": first }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = room["id"].as_i64().context("room id")?;
        let owner_token = Arc::new(owner.token.clone());
        let results: Vec<anyhow::Result<()>> = stream::iter(added)
            .map(|user| {
                let token = owner_token.clone();
                async move {
                    self.http
                        .post(format!("{}/api/v1/rooms/{id}/members", self.base))
                        .bearer_auth(token.as_str())
                        .json(&json!({ "user": user }))
                        .send()
                        .await?
                        .error_for_status()?;
                    Ok(())
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<()>>()?;
        Ok(id)
    }
}

async fn login(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    password: &str,
) -> anyhow::Result<User> {
    let body: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "username": name, "password": password }))
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("login as {name}"))?
        .json()
        .await?;
    Ok(User {
        id: body["user"]["id"].as_i64().context("user id")?,
        token: body["access_token"].as_str().context("token")?.to_string(),
    })
}

/// Open a WebSocket for `user` on their node, split, nothing read yet.
pub async fn open(server: &Server, user: &User) -> anyhow::Result<(WsSink, WsStream)> {
    Ok(open_url(&server.ws_url(user.id, &user.token))
        .await?
        .split())
}

/// Open a WebSocket the way every client of the load tool does.
///
/// TCP_NODELAY on the client too, so measured latency is the server's, not Nagle's. A 4 KiB
/// read buffer instead of tungstenite's 128 KiB: tungstenite zero-fills the free part of its
/// buffer before every read, and with the default that memset was a fifth of the load
/// tool's CPU, taken from the cores it shares with the server (the buffer still grows for a
/// larger frame).
pub async fn open_url(url: &str) -> anyhow::Result<WebSocketStream<MaybeTlsStream<TcpStream>>> {
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    Ok(ws)
}

/// Open a WebSocket and read past `hello`.
pub async fn connect(server: &Server, user: &User) -> anyhow::Result<(WsSink, WsStream)> {
    let (mut sink, mut stream) = open(server, user).await?;
    // Start live delivery at once (the server waits briefly for a `sync` otherwise).
    sink.send(Message::Text(json!({ "type": "ping" }).to_string().into()))
        .await?;
    let mut seen_hello = false;
    while let Some(frame) = stream.next().await {
        if let Message::Text(text) = frame? {
            let value: Value = serde_json::from_str(&text)?;
            match value["type"].as_str() {
                Some("hello") => seen_hello = true,
                Some("pong") if seen_hello => return Ok((sink, stream)),
                _ => {}
            }
        }
    }
    bail!("connection closed during handshake")
}

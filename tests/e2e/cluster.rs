//! Several real `switchboard` processes sharing one PostgreSQL and one NATS, plus
//! `switchboard migrate-store`. Everything here runs the release-shaped binary
//! (`CARGO_BIN_EXE_switchboard`) as separate processes, so a node can be killed with
//! SIGKILL exactly as in production.
//!
//! Each test gets a fresh PostgreSQL database (dropped afterwards, even on failure), its own
//! NATS subject prefix, and free loopback ports; a test that kills NATS starts its own
//! `nats-server`. Processes are killed when their handle drops. On failure, the tail of each
//! node's log is printed; `TEST_LOG=1` makes the nodes log at debug level.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection as _;
use tempfile::TempDir;

use crate::support::{ADMIN_PASSWORD, Client, Ws};

mod concurrent_writers;
mod migrate_store;
mod two_nodes;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
const NATS_SERVER: &str = "/usr/sbin/nats-server";
/// Shared by every node of a test, so a token issued by one is valid on the others.
const JWT_SECRET: &str = "cluster-test-secret-0123456789abcdef0123456789abcdef";

fn pg_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into())
}

pub fn system_nats_url() -> String {
    std::env::var("TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// A free loopback port (the kernel's pick, released for the child to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind :0")
        .local_addr()
        .expect("addr")
        .port()
}

/// A free loopback port *below* the kernel's ephemeral range, for a server the test stops
/// and starts again on the same port. A port from the ephemeral range (what `free_port`
/// returns) can be taken while the server is down by any outgoing connection on the machine
/// — the kernel picks their local ports from that range, and the parallel tests make
/// thousands — and the restart then fails to bind (seen in CI). A port below the range is
/// only ever taken by an explicit bind.
fn restartable_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = ephemeral_low.saturating_sub(12_000).max(1024);
    if ephemeral_low <= low + 100 {
        return free_port();
    }
    for _ in 0..500 {
        let port = low + rand::random::<u16>() % (ephemeral_low - low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    free_port()
}

async fn port_open(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

// ---------------------------------------------------------------------------------------
// PostgreSQL: one database per test
// ---------------------------------------------------------------------------------------

/// A fresh database, dropped (WITH FORCE, so leftover connections don't block it) on drop.
pub struct PgDb {
    pub url: String,
    name: String,
}

impl PgDb {
    pub async fn create() -> Self {
        let admin_url = pg_admin_url();
        let name = unique("sb_test_");
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("connect to PostgreSQL (TEST_POSTGRES_URL)");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create db");
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Self { url, name }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime; do the async cleanup on a thread of its own.
        let name = self.name.clone();
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// `postgres://user@host:port/db?params` with `db` replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{query}", &base[..path_start])
}

// ---------------------------------------------------------------------------------------
// NATS: our own server, for tests that take it down
// ---------------------------------------------------------------------------------------

pub struct Nats {
    pub port: u16,
    child: Option<Child>,
}

impl Nats {
    pub async fn start() -> Self {
        let mut nats = Self {
            port: restartable_port(),
            child: None,
        };
        nats.restart().await;
        nats
    }

    /// A port reserved for a NATS that is not running yet.
    pub fn not_started() -> Self {
        Self {
            port: restartable_port(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "NATS already running");
        let child = Command::new(NATS_SERVER)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        for _ in 0..100 {
            // A nats-server that could not bind exits: say so instead of waiting, and never
            // mistake another process on the port for it.
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "nats-server exited ({status}) instead of listening on {}",
                    self.port
                );
            }
            if port_open(self.port).await {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(child) = self.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    panic!(
                        "port {} is open but nats-server exited ({status})",
                        self.port
                    );
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nats-server did not open port {}", self.port);
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------
// Nodes: the real binary
// ---------------------------------------------------------------------------------------

pub struct NodeConfig {
    pub database_url: String,
    pub nats_url: String,
    pub subject_prefix: String,
    /// More settings for every node, as `SWITCHBOARD_…` variables.
    pub env: Vec<(String, String)>,
    /// A `switchboard.toml` for every node (for settings that are lists of tables).
    pub toml: Option<String>,
}

impl NodeConfig {
    pub fn new(db: &PgDb, nats_url: String) -> Self {
        Self {
            database_url: db.url.clone(),
            nats_url,
            subject_prefix: unique("sbtest"),
            env: Vec::new(),
            toml: None,
        }
    }
}

pub struct Node {
    pub name: String,
    pub base: String,
    pub http: reqwest::Client,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    _dir: TempDir,
}

impl Node {
    pub async fn start(name: &str, config: &NodeConfig) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        if let Some(toml) = &config.toml {
            // The node starts in `dir`, where `switchboard.toml` is read.
            std::fs::write(dir.path().join("switchboard.toml"), toml).expect("config file");
        }
        let log = dir.path().join("node.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let filter = if std::env::var_os("TEST_LOG").is_some() {
            "debug,sqlx=warn,hyper=info,async_nats=info"
        } else {
            "info,sqlx=warn"
        };
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            // Nothing from the developer's environment or a stray switchboard.toml.
            .env_clear()
            .current_dir(dir.path())
            .env("RUST_LOG", filter)
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_DATA_DIR", dir.path().join("data"))
            .env("SWITCHBOARD_DATABASE_URL", &config.database_url)
            .env("SWITCHBOARD_INITIAL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("SWITCHBOARD_AUTH__JWT_SECRET", JWT_SECRET)
            .env("SWITCHBOARD_AUTH__LOGIN_ATTEMPTS_PER_MINUTE", "1000")
            .env("SWITCHBOARD_CLUSTER__NATS_URL", &config.nats_url)
            .env("SWITCHBOARD_CLUSTER__NODE_ID", name)
            .env(
                "SWITCHBOARD_CLUSTER__SUBJECT_PREFIX",
                &config.subject_prefix,
            )
            .env("SWITCHBOARD_STORE__MAX_CONNECTIONS", "4")
            .env("SWITCHBOARD_LIMITS__WS_SYNC_GRACE_MS", "300")
            .env("SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND", "10000")
            .env("SWITCHBOARD_LIMITS__MESSAGE_BURST", "10000")
            .env("SWITCHBOARD_LIMITS__WS_FRAMES_PER_SECOND", "100000")
            // Presence heartbeats every second, so a dead node's users go offline in ~3 s.
            .env("SWITCHBOARD_PRESENCE__HEARTBEAT_SECS", "1")
            .env("SWITCHBOARD_PRESENCE__OFFLINE_GRACE_MS", "300")
            .env("SWITCHBOARD_PRESENCE__TICK_MS", "100")
            .envs(config.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn switchboard");
        let mut node = Self {
            name: name.to_string(),
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("http client"),
            port,
            child: Some(child),
            log,
            _dir: dir,
        };
        node.wait_healthy().await;
        node
    }

    async fn wait_healthy(&mut self) {
        for _ in 0..300 {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "node {} exited during start ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if let Ok(resp) = self.http.get(format!("{}/healthz", self.base)).send().await
                && resp.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "node {} not healthy in 15 s:\n{}",
            self.name,
            self.log_tail()
        );
    }

    /// SIGKILL: no graceful shutdown, exactly like a crashed machine (minus the disk).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/api/v1/ws?token={token}", self.port)
    }

    pub async fn ws(&self, client: &Client) -> Ws {
        Ws::connect(&self.ws_url(&client.token)).await
    }

    pub async fn readyz(&self) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .expect("readyz");
        let status = resp.status();
        (status, resp.json().await.expect("readyz body"))
    }

    /// Poll `/readyz` until it reports `status` and `bus` (bounded).
    pub async fn wait_ready_state(&self, status: &str, bus: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            let (code, body) = self.readyz().await;
            assert_eq!(code, StatusCode::OK, "{body}");
            if body["status"] == status && body["bus"] == bus {
                return;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "node {}: /readyz never said status={status} bus={bus}; last {last}\n{}",
            self.name,
            self.log_tail()
        );
    }

    pub async fn login(&self, name: &str, password: &str) -> Client {
        Client::login(&self.http, &self.base, name, password).await
    }

    /// Create a user (as admin, through this node) and log in as them here.
    pub async fn user(&self, name: &str) -> Client {
        self.login("admin", ADMIN_PASSWORD)
            .await
            .create_user(name)
            .await
    }

    /// Whether the node's log (standard output and error) contains `needle`.
    pub fn log_contains(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(needle)
    }

    /// Whether the node's log comes to contain `needle` within `within` (its output reaches
    /// the file through a pipe, a moment after the node acted on it).
    pub async fn log_shows(&self, needle: &str, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if self.log_contains(needle) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- log of node {} ----\n{}", self.name, self.log_tail());
        }
    }
}

/// Two nodes on one database and one NATS, started at the same moment: both migrate and
/// both find the database without `admin`, as in a real rollout.
pub async fn two_nodes(config: &NodeConfig) -> (Node, Node) {
    tokio::join!(Node::start("node-a", config), Node::start("node-b", config))
}

/// A client of `node` with the same account as `client` (tokens are valid cluster-wide).
pub fn on(node: &Node, client: &Client) -> Client {
    Client {
        base: node.base.clone(),
        http: node.http.clone(),
        ..client.clone()
    }
}

/// A room's whole log, paging with `after`.
pub async fn full_history(client: &Client, room: i64) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .history(room, &format!("?after={after}&limit=200"))
            .await;
        let Some(last) = page.last() else {
            return all;
        };
        after = last["seq"].as_i64().expect("seq");
        all.extend(page);
    }
}

/// Assert `seqs` is exactly 1..=n.
pub fn assert_one_to_n(seqs: &[i64], what: &str) {
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected.as_slice(), "{what}: not exactly 1..=n");
}

/// The set of `client_msg_id`s of message events, asserting none appears twice.
pub fn message_ids_once(history: &[Value]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for event in history.iter().filter(|e| e["kind"] == "message") {
        let id = event["client_msg_id"].as_str().expect("cmid").to_string();
        assert!(seen.insert(id.clone()), "{id} stored twice");
    }
    seen
}

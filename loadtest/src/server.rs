//! The server under test: either one the tool starts itself (`--spawn`, a fresh data
//! directory, limits opened up for load; `--nodes N` starts a cluster) or one already
//! running (`--server`).
//!
//! A spawned server is watched through `/proc` for CPU time and resident memory, so a run
//! reports what the server cost, not only what the clients saw.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub const ADMIN_PASSWORD: &str = "bench-admin-password";

pub struct Server {
    /// The first node's base URL: setup (users, rooms) goes through it.
    pub base: String,
    nodes: Vec<Node>,
}

/// One server process (or, with `--server`, one address).
struct Node {
    addr: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Start `nodes` processes of `binary serve`, each on a free loopback port with its own
    /// temporary data directory, one after the other (the first creates the admin). More
    /// than one node is a cluster: `extra_env` must then give them a shared PostgreSQL
    /// database and a NATS URL.
    pub async fn spawn(
        binary: &Path,
        plugins_dir: Option<&PathBuf>,
        extra_env: &[(String, String)],
        nodes: usize,
    ) -> anyhow::Result<Self> {
        if nodes > 1 {
            let has = |key: &str| extra_env.iter().any(|(k, v)| k == key && !v.is_empty());
            if !has("SWITCHBOARD_DATABASE_URL") || !has("SWITCHBOARD_CLUSTER__NATS_URL") {
                bail!(
                    "--nodes {nodes} needs --server-env SWITCHBOARD_DATABASE_URL=postgres://… \
                     and --server-env SWITCHBOARD_CLUSTER__NATS_URL=nats://127.0.0.1:4222"
                );
            }
        }
        let mut env = extra_env.to_vec();
        if nodes > 1 && !env.iter().any(|(k, _)| k == "SWITCHBOARD_AUTH__JWT_SECRET") {
            // Every node must accept the tokens any node signs.
            let secret: [u8; 32] = rand::random();
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            env.push(("SWITCHBOARD_AUTH__JWT_SECRET".into(), hex));
        }
        let mut started = Vec::new();
        for _ in 0..nodes.max(1) {
            let node = Node::spawn(binary, plugins_dir, &env)?;
            wait_ready(&format!("http://{}", node.addr)).await?;
            started.push(node);
        }
        Ok(Self {
            base: format!("http://{}", started[0].addr),
            nodes: started,
        })
    }

    pub async fn existing(base: &str) -> anyhow::Result<Self> {
        let addr = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        if !(addr.starts_with("127.") || addr.starts_with("localhost") || addr.starts_with("[::1]"))
        {
            bail!("the load tool only targets loopback addresses, not {addr}");
        }
        let base = format!("http://{addr}");
        wait_ready(&base).await?;
        Ok(Self {
            base,
            nodes: vec![Node {
                addr,
                child: None,
                _dir: None,
            }],
        })
    }

    /// CPU time and memory of every node the tool started, added up.
    pub fn sample(&self) -> Option<ProcSample> {
        let mut total = ProcSample::default();
        for node in &self.nodes {
            let one = sample(node.child.as_ref()?.id())?;
            total.cpu_secs += one.cpu_secs;
            total.sys_secs += one.sys_secs;
            total.rss_bytes += one.rss_bytes;
            total.peak_rss_bytes += one.peak_rss_bytes;
        }
        Some(total)
    }

    /// The WebSocket URL for a user: users are spread over the nodes by id, so in a
    /// cluster the two members of a one-to-one room sit on different nodes.
    pub fn ws_url(&self, user_id: i64, token: &str) -> String {
        let count = i64::try_from(self.nodes.len()).unwrap_or(1).max(1);
        let index = usize::try_from(user_id.rem_euclid(count)).unwrap_or(0);
        format!("ws://{}/api/v1/ws?token={token}", self.nodes[index].addr)
    }
}

impl Node {
    fn spawn(
        binary: &Path,
        plugins_dir: Option<&PathBuf>,
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir()?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env("SWITCHBOARD_LISTEN", &addr)
            .env("SWITCHBOARD_DATA_DIR", dir.path())
            .env("SWITCHBOARD_INITIAL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // The load is the point: lift the per-user and per-connection rate limits.
            .env("SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND", "1000000")
            .env("SWITCHBOARD_LIMITS__MESSAGE_BURST", "1000000")
            .env("SWITCHBOARD_LIMITS__WS_FRAMES_PER_SECOND", "1000000")
            .env("SWITCHBOARD_LIMITS__WS_SEND_QUEUE", "65536")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(plugins) = plugins_dir {
            command.env("SWITCHBOARD_PLUGINS__DIR", plugins);
        }
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            addr,
            child: Some(child),
            _dir: Some(dir),
        })
    }
}

async fn wait_ready(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(resp) = http.get(format!("{base}/healthz")).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("server at {base} did not become ready")
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU seconds (user + system) and memory of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub cpu_secs: f64,
    /// The part of `cpu_secs` spent in the kernel (for a chat server: mostly sockets).
    pub sys_secs: f64,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user_ticks: f64 = fields.get(11)?.parse().ok()?;
    let sys_ticks: f64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    // USER_HZ is 100 on Linux.
    Some(ProcSample {
        cpu_secs: (user_ticks + sys_ticks) / 100.0,
        sys_secs: sys_ticks / 100.0,
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
    })
}

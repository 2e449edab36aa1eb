//! The server under test: either one the tool starts itself (`--spawn`, a fresh data
//! directory, limits opened up for load) or one already running (`--server`).
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
    pub base: String,
    pub addr: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Start `binary serve` on a free loopback port with its own temporary data directory.
    pub async fn spawn(
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
        let server = Self {
            base: format!("http://{addr}"),
            addr,
            child: Some(child),
            _dir: Some(dir),
        };
        server.wait_ready().await?;
        Ok(server)
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
        let server = Self {
            base: format!("http://{addr}"),
            addr,
            child: None,
            _dir: None,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(resp) = http.get(format!("{}/healthz", self.base)).send().await
                && resp.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("server at {} did not become ready", self.base)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/api/v1/ws?token={token}", self.addr)
    }
}

impl Drop for Server {
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
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
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
        cpu_secs: ticks / 100.0,
        rss_bytes: kib("VmRSS:"),
        peak_rss_bytes: kib("VmHWM:"),
    })
}

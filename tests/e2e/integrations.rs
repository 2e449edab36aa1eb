//! Integrations that already exist keep working (issue 23), each driven by the real
//! third-party client or library from PyPI (`make lang-tools` installs them into
//! `target/lang-tools/integrations`): Slack's SDK posts to incoming webhooks, Standard
//! Webhooks' reference library verifies the webhook plugin's deliveries, and a matrix-nio
//! bot talks to the Matrix client–server subset.

mod incoming;
mod matrix;
mod standard;

use std::path::PathBuf;

use crate::cluster::PgDb;
use crate::hardening::{Backend, start_on};
use crate::plugins_runtime::harness::{Spec, write_plugins};
use crate::support::TestServer;

/// What a test server started by [`start_with_card_dlp`] needs kept: its plugins'
/// directory and, on PostgreSQL, its database.
pub struct DlpGuard {
    _plugins: tempfile::TempDir,
    _db: Option<PgDb>,
}

/// A server on `backend` whose DLP plugin blocks card numbers: every integration's posts
/// must meet it like people's messages do.
pub async fn start_with_card_dlp(backend: Backend) -> (TestServer, DlpGuard) {
    let dlp = Spec::new("dlp", "dlp")
        .caps(&["log", "config", "kv"])
        .settings("\"action.card\" = \"block\"\n");
    let plugins = write_plugins(&[dlp]);
    let dir = plugins.path().to_path_buf();
    let (server, db) = start_on(backend, move |c| c.plugins.dir = Some(dir)).await;
    let guard = DlpGuard {
        _plugins: plugins,
        _db: db,
    };
    (server, guard)
}

/// The Python of the integrations' virtual environment.
pub fn python() -> PathBuf {
    let python =
        crate::wasm_build::workspace_root().join("target/lang-tools/integrations/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make lang-tools` (`make test` does it first)",
        python.display()
    );
    python
}

/// Run a Python script with arguments in the integrations' environment; its stdout, after
/// asserting that it succeeded.
pub async fn run_python(script: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run python");
    assert!(
        output.status.success(),
        "python failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

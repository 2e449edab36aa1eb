//! Integrations that already exist keep working (issue 23), each driven by the real
//! third-party client or library from PyPI (`make lang-tools` installs them into
//! `target/lang-tools/integrations`): Slack's SDK posts to incoming webhooks, Standard
//! Webhooks' reference library verifies the webhook plugin's deliveries, and a matrix-nio
//! bot talks to the Matrix client–server subset.

mod incoming;
mod matrix;
mod standard;

use std::path::PathBuf;

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

//! Builds the plugin crates for `wasm32-wasip2` (release) once per test process and hands
//! out the paths of the resulting components.
//!
//! The build goes to its own target dir (`<workspace>/target/wasm`, shared with `make
//! plugins`) so the nested cargo never waits on the lock of the outer `cargo test`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Every plugin crate the tests and benchmarks may ask for.
const CRATES: &[&str] = &[
    "assistant",
    "dlp",
    "keyword-guard",
    "fixture-trap",
    "fixture-infinite-loop",
    "fixture-memory-hog",
    "fixture-stack-overflow",
    "fixture-huge-output",
    "fixture-probe",
    "fixture-legacy-v01",
    "fixture-legacy-v02",
    "fixture-hostile",
    "echo-bot",
    "webhook",
    "auth-policy",
];

pub fn workspace_root() -> PathBuf {
    // host/ is one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The compiled component of plugin crate `name` (e.g. `dlp`, `fixture-trap`).
pub fn plugin_wasm(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let out = match BUILT.get_or_init(build_all) {
        Ok(out) => out,
        Err(e) => panic!("building the wasm plugins failed:\n{e}"),
    };
    assert!(CRATES.contains(&name), "unknown plugin crate {name}");
    let path = out.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

fn build_all() -> Result<PathBuf, String> {
    let root = workspace_root();
    let target_dir = root.join("target").join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        // Same settings as `make plugins`, so the two share build artifacts.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        // Flags meant for the outer (native) build must not leak into the wasm one.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    for krate in CRATES {
        cmd.args(["-p", krate]);
    }
    let output = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(target_dir.join("wasm32-wasip2").join("release"))
}

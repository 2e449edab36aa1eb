//! Operating a private deployment: online backup and restore, and safe upgrades.
//!
//! Everything runs the real binary's commands (`backup`, `backup verify`, `restore`,
//! `migrate`, `audit verify`, `serve`) as separate processes against real servers on SQLite
//! and PostgreSQL.

mod backups;
mod monitoring;
mod package;
mod upgrades;

use std::path::Path;
use std::process::{Command, Output};

/// Run `switchboard ARGS` with the environment `env` (the configuration, as env vars).
pub fn switchboard(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("SWITCHBOARD_CONFIG")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .expect("run switchboard")
}

/// Standard output and error together, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The configuration of an installation in `data_dir`, on PostgreSQL when `pg` is given.
pub fn install_env(data_dir: &Path, pg: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![("SWITCHBOARD_DATA_DIR", data_dir.display().to_string())];
    if let Some(url) = pg {
        env.push(("SWITCHBOARD_DATABASE_URL", url.to_string()));
    }
    env
}

/// SHA-256 of a file, to show a command changed nothing.
pub fn file_hash(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(
        std::fs::read(path).expect("read file"),
    ))
}

/// Copy a directory tree (a backup, a fixture) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

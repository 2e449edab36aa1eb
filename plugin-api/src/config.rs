//! The plugin's operator-set settings (capability `config`): the `[settings]` table of its
//! manifest, every value as a string (arrays of strings are joined with newlines).

#[cfg(target_arch = "wasm32")]
use crate::__wit::switchboard::plugin::config as wit;
// Natively, the fake host of `testing` answers (so hooks run in `cargo test`).
use crate::HostError;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::config as wit;

/// One setting, or `None` if the operator did not set it.
pub fn get(key: &str) -> Result<Option<String>, HostError> {
    wit::get(key)
}

/// One setting, or `default` if it is not set (or `config` was not granted).
pub fn get_or(key: &str, default: &str) -> String {
    match wit::get(key) {
        Ok(Some(value)) => value,
        _ => default.to_string(),
    }
}

/// Every setting's key, sorted.
pub fn keys() -> Result<Vec<String>, HostError> {
    wit::keys()
}

/// Every setting as `(key, value)`, sorted by key: what a plugin parses its policy from.
pub fn all() -> Result<Vec<(String, String)>, HostError> {
    let mut settings = Vec::new();
    for key in wit::keys()? {
        if let Some(value) = wit::get(&key)? {
            settings.push((key, value));
        }
    }
    Ok(settings)
}

/// A list setting (a TOML array in the manifest): its entries, trimmed, empty ones left
/// out; empty if it is not set (or `config` was not granted).
pub fn list(key: &str) -> Vec<String> {
    get_or(key, "")
        .lines()
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_string)
        .collect()
}

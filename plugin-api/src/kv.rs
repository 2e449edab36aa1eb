//! A persistent key/value store private to this plugin (capability `kv`).
//!
//! Reads come from the host's memory and cost no I/O; writes become durable shortly after
//! the call (written behind by the host, flushed on shutdown). Keys and values are bounded
//! by the operator's limits: exceeding one returns [`HostError::TooLarge`] or
//! [`HostError::QuotaExceeded`].

#[cfg(target_arch = "wasm32")]
use crate::__wit::switchboard::plugin::kv as wit;
// Natively, the fake host of `testing` answers (so hooks run in `cargo test`).
use crate::HostError;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::kv as wit;

/// The value stored under `key`.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, HostError> {
    wit::get(key)
}

/// The value stored under `key`, as UTF-8 text (`None` if absent or not UTF-8).
pub fn get_string(key: &str) -> Result<Option<String>, HostError> {
    Ok(wit::get(key)?.and_then(|bytes| String::from_utf8(bytes).ok()))
}

/// Store `value` under `key`.
pub fn set(key: &str, value: &[u8]) -> Result<(), HostError> {
    wit::set(key, value)
}

/// Remove `key`; returns whether it existed.
pub fn delete(key: &str) -> Result<bool, HostError> {
    wit::delete(key)
}

/// Keys starting with `prefix`, sorted, at most `limit`.
pub fn keys(prefix: &str, limit: u32) -> Result<Vec<String>, HostError> {
    wit::keys(prefix, limit)
}

/// Add `delta` to the counter under `key` (absent counts as 0); returns the new value.
pub fn increment(key: &str, delta: i64) -> Result<i64, HostError> {
    wit::increment(key, delta)
}

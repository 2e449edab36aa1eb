//! The WebAssembly plugin runtime (placeholder until implemented).

use serde::{Deserialize, Serialize};

/// Operator configuration of the plugin layer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory with one sub-directory per plugin (`plugin.toml` + component `.wasm`).
    pub dir: Option<std::path::PathBuf>,
}

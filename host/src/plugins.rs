//! The WebAssembly plugin runtime (placeholder until implemented).

use serde::{Deserialize, Serialize};

/// Operator configuration of the plugin layer.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory with one sub-directory per plugin (`plugin.toml` + component `.wasm`).
    pub dir: Option<std::path::PathBuf>,
}

/// The plugin layer (placeholder: loads nothing yet).
#[derive(Debug)]
pub struct PluginHost;

impl PluginHost {
    /// Load the configured plugins; `None` when no plugin directory is configured.
    pub async fn load(
        _config: &PluginsConfig,
        _data_dir: &std::path::Path,
        _store: std::sync::Arc<dyn crate::store::Store>,
        _registry: &mut prometheus_client::registry::Registry,
    ) -> anyhow::Result<Option<std::sync::Arc<PluginHost>>> {
        Ok(None)
    }

    pub async fn shutdown(&self) {}
}

#[async_trait::async_trait]
impl crate::router::hooks::Hooks for PluginHost {
    fn implements(&self, _hook: crate::router::hooks::HookKind) -> bool {
        false
    }
    async fn message_pre_send(
        &self,
        msg: crate::router::hooks::PreSend,
    ) -> crate::router::hooks::PreSendOutcome {
        crate::router::hooks::NoHooks.message_pre_send(msg).await
    }
    fn message_delivered(&self, _room: &crate::store::Room, _event: &crate::store::Event) {}
    async fn on_login(&self, _user: &crate::store::User) -> crate::router::hooks::Decision {
        crate::router::hooks::Decision::Allow
    }
    async fn on_connect(
        &self,
        _user: &crate::store::User,
        _session_id: &str,
    ) -> crate::router::hooks::Decision {
        crate::router::hooks::Decision::Allow
    }
}

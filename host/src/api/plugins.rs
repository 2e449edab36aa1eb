//! Admin API for plugins while the server runs (used by the admin console and by the
//! `switchboard plugin` CLI): list with status and counters, install (multipart upload of
//! manifest + component [+ signature]), enable, disable, reload, change settings,
//! uninstall. The work itself is in [`crate::plugins::manage`]; this maps HTTP to it.
//!
//! Every route takes [`AdminUser`]; every operation is audited with the admin as actor.

use axum::Router as HttpRouter;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;

use super::{AdminUser, AppJson, AppPath, AppQuery, AppState};
use crate::audit::Actor;
use crate::error::{ApiError, Result};
use crate::plugins::{
    InstallRequest, ManageError, PluginChange, PluginError, PluginHost, PluginList, PluginView,
    ReloadReport,
};

pub fn routes(max_component_bytes: usize) -> HttpRouter<AppState> {
    // The upload carries the component: room for it plus the manifest and signature.
    let upload_limit = max_component_bytes.saturating_add(512 * 1024);
    HttpRouter::new()
        .route(
            "/api/v1/admin/plugins",
            get(list)
                .post(install)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/v1/admin/plugins/{name}",
            get(show).patch(change).delete(uninstall),
        )
        .route("/api/v1/admin/plugins/{name}/reload", post(reload))
        .route("/api/v1/admin/plugins/{name}/enable", post(enable))
        .route("/api/v1/admin/plugins/{name}/disable", post(disable))
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        let message = e.to_string();
        match e {
            ManageError::NoPluginsDir => ApiError::conflict("plugins_not_configured", message),
            ManageError::NotFound(_) => ApiError::not_found("plugin_not_found", message),
            ManageError::Exists(_) => ApiError::conflict("plugin_exists", message),
            ManageError::Invalid(_) => ApiError::bad_request("invalid_plugin", message),
            // The operator needs the loader's own words (which line of the manifest, which
            // import is missing); this is an admin-only route.
            ManageError::Load(PluginError::Io { .. } | PluginError::Engine(_)) => {
                ApiError::internal(anyhow::anyhow!(message))
            }
            ManageError::Load(PluginError::Signature { .. }) => {
                ApiError::bad_request("plugin_signature_invalid", message)
            }
            ManageError::Load(_) => ApiError::bad_request("plugin_load_failed", message),
            ManageError::Io(_) => ApiError::internal(anyhow::anyhow!(message)),
        }
    }
}

fn host(state: &AppState) -> Result<&PluginHost> {
    state
        .plugins
        .as_deref()
        .ok_or_else(|| ManageError::NoPluginsDir.into())
}

fn actor(admin: &AdminUser) -> Actor<'static> {
    Actor::User(admin.0.user.id)
}

async fn list(State(state): State<AppState>, _admin: AdminUser) -> Result<AppJson<PluginList>> {
    Ok(AppJson(host(&state)?.list_plugins().await?))
}

async fn show(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<PluginView>> {
    Ok(AppJson(host(&state)?.plugin(&name).await?))
}

async fn reload(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<ReloadReport>> {
    Ok(AppJson(
        host(&state)?.reload_plugin(&name, actor(&admin)).await?,
    ))
}

async fn enable(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<ReloadReport>> {
    Ok(AppJson(
        host(&state)?
            .set_plugin_enabled(&name, true, actor(&admin))
            .await?,
    ))
}

async fn disable(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<ReloadReport>> {
    Ok(AppJson(
        host(&state)?
            .set_plugin_enabled(&name, false, actor(&admin))
            .await?,
    ))
}

async fn change(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(name): AppPath<String>,
    AppJson(change): AppJson<PluginChange>,
) -> Result<AppJson<ReloadReport>> {
    Ok(AppJson(
        host(&state)?
            .change_plugin(&name, &change, actor(&admin))
            .await?,
    ))
}

async fn uninstall(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<ReloadReport>> {
    Ok(AppJson(
        host(&state)?.uninstall_plugin(&name, actor(&admin)).await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstallQuery {
    #[serde(default)]
    replace: bool,
}

/// `multipart/form-data` with the parts `manifest` (the `plugin.toml` text), `component`
/// (the `.wasm` bytes) and optionally `signature` (the detached `.sig` file).
async fn install(
    State(state): State<AppState>,
    admin: AdminUser,
    AppQuery(query): AppQuery<InstallQuery>,
    mut form: Multipart,
) -> Result<(StatusCode, AppJson<ReloadReport>)> {
    let host = host(&state)?;
    let bad = |message: String| ApiError::bad_request("invalid_upload", message);
    let mut manifest = None;
    let mut component = None;
    let mut signature = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("malformed multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(
                    "component_too_large",
                    "the upload is larger than plugins.max_component_bytes allows",
                )
            } else {
                bad(format!("reading part {name:?}: {e}"))
            }
        })?;
        let slot = match name.as_str() {
            "manifest" => &mut manifest,
            "component" => &mut component,
            "signature" => &mut signature,
            other => {
                return Err(bad(format!(
                    "unknown part {other:?}: expected manifest, component and optionally signature"
                )));
            }
        };
        if slot.replace(bytes.to_vec()).is_some() {
            return Err(bad(format!("part {name:?} given twice")));
        }
    }
    let manifest =
        String::from_utf8(manifest.ok_or_else(|| bad("the manifest part is missing".into()))?)
            .map_err(|_| bad("the manifest is not UTF-8 text".into()))?;
    let component = component.ok_or_else(|| bad("the component part is missing".into()))?;
    let report = host
        .install_plugin(
            InstallRequest {
                manifest,
                component,
                signature,
                replace: query.replace,
            },
            actor(&admin),
        )
        .await?;
    let status = if report.previous_version.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, AppJson(report)))
}

//! Admin API for plugins while the server runs (used by the admin console and by the
//! `switchboard plugin` CLI): list with status and counters, install (multipart upload of
//! manifest + component [+ signature]), enable, disable, reload, change settings,
//! uninstall. The work itself is in [`crate::plugins::manage`]; this maps HTTP to it.
//!
//! Every route takes [`AdminUser`]; every operation is audited with the admin as actor.

use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;

use super::{AdminUser, AppJson, AppPath, AppQuery, AppState};
use crate::audit::Actor;
use crate::error::{ApiError, Result};
use crate::plugins::{
    InstallRequest, ManageError, PluginChange, PluginError, PluginHost, PluginList, PluginView,
    ReloadReport,
};

pub fn routes(max_component_bytes: usize) -> OpenApiRouter<AppState> {
    // The upload carries the component: room for it plus the manifest and signature.
    let upload_limit = max_component_bytes.saturating_add(512 * 1024);
    OpenApiRouter::new()
        // The larger body limit is a layer on this path's method router only (GET and POST
        // of /api/v1/admin/plugins), as it was before the routes carried descriptions.
        .routes(routes!(list, install).layer(DefaultBodyLimit::max(upload_limit)))
        .routes(routes!(show, change, uninstall))
        .routes(routes!(reload))
        .routes(routes!(enable))
        .routes(routes!(disable))
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

/// Every installed plugin with its status and counters, and manifests that could not be read.
#[utoipa::path(get, path = "/api/v1/admin/plugins", tag = "plugins",
    operation_id = "list_plugins",
    responses((status = 200, description = "The installed plugins", body = PluginList)))]
async fn list(State(state): State<AppState>, _admin: AdminUser) -> Result<AppJson<PluginList>> {
    Ok(AppJson(host(&state)?.list_plugins().await?))
}

/// One installed plugin: its manifest, grants and, while loaded, its status.
#[utoipa::path(get, path = "/api/v1/admin/plugins/{name}", tag = "plugins",
    operation_id = "show_plugin",
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "The plugin", body = PluginView)))]
async fn show(
    State(state): State<AppState>,
    _admin: AdminUser,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<PluginView>> {
    Ok(AppJson(host(&state)?.plugin(&name).await?))
}

/// Load a plugin's files again (new component, edited manifest) and swap the new version in.
///
/// Messages already in the chain finish on the old version; every later one meets the new.
/// Also the way to close an open circuit breaker.
#[utoipa::path(post, path = "/api/v1/admin/plugins/{name}/reload", tag = "plugins",
    operation_id = "reload_plugin",
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "What the reload did", body = ReloadReport)))]
async fn reload(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<ReloadReport>> {
    Ok(AppJson(
        host(&state)?.reload_plugin(&name, actor(&admin)).await?,
    ))
}

/// Enable a plugin: it is loaded now and at every start.
#[utoipa::path(post, path = "/api/v1/admin/plugins/{name}/enable", tag = "plugins",
    operation_id = "enable_plugin",
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "What enabling it did", body = ReloadReport)))]
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

/// Disable a plugin: it leaves the running chain and is not loaded at start.
#[utoipa::path(post, path = "/api/v1/admin/plugins/{name}/disable", tag = "plugins",
    operation_id = "disable_plugin",
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "What disabling it did", body = ReloadReport)))]
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

/// Change a plugin's manifest (enabled, priority, failure policy, settings).
///
/// Fields left out stay as they are; the change is written to the plugin's `plugin.toml`.
#[utoipa::path(patch, path = "/api/v1/admin/plugins/{name}", tag = "plugins",
    operation_id = "change_plugin",
    params(("name" = String, Path, description = "The plugin's name")),
    request_body = PluginChange,
    responses((status = 200, description = "What the change did", body = ReloadReport)))]
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

/// Uninstall a plugin: it leaves the running chain and its directory is deleted.
///
/// Its `kv` data stays in the store: installing a plugin of the same name again finds it.
#[utoipa::path(delete, path = "/api/v1/admin/plugins/{name}", tag = "plugins",
    operation_id = "uninstall_plugin",
    params(("name" = String, Path, description = "The plugin's name")),
    responses((status = 200, description = "What the uninstall did", body = ReloadReport)))]
async fn uninstall(
    State(state): State<AppState>,
    admin: AdminUser,
    AppPath(name): AppPath<String>,
) -> Result<AppJson<ReloadReport>> {
    Ok(AppJson(
        host(&state)?.uninstall_plugin(&name, actor(&admin)).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct InstallQuery {
    /// Upgrade the plugin if one of that name is installed (otherwise that is an error).
    #[serde(default)]
    replace: bool,
}

/// Install (or, with `replace`, upgrade) a plugin from an upload.
///
/// The body is `multipart/form-data` with the parts `manifest` (the `plugin.toml` text),
/// `component` (the `.wasm` bytes) and optionally `signature` (the detached `.sig` file).
/// `201` for a new plugin; `200` when it replaced a loaded version.
#[utoipa::path(post, path = "/api/v1/admin/plugins", tag = "plugins",
    operation_id = "install_plugin",
    params(InstallQuery),
    request_body(content_type = "multipart/form-data",
        description = "The parts `manifest` (the `plugin.toml` text), `component` (the `.wasm` \
                       bytes) and optionally `signature` (the detached `.sig` file)"),
    responses(
        (status = 201, description = "The plugin is installed", body = ReloadReport),
        (status = 200, description = "The plugin replaced a loaded version of itself", body = ReloadReport),
    ))]
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

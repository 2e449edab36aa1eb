//! The web chat client (`/`) and admin console (`/admin`), served from files compiled into
//! the binary: no separate web server, nothing fetched from elsewhere at runtime.
//!
//! The sources live in `host/web/` and are plain HTML, CSS and JavaScript modules (no build
//! step). Every file must be listed in [`ASSETS`]; a unit test checks the list against the
//! directory, so a new module cannot be forgotten.
//!
//! Responses carry a strict `Content-Security-Policy` (scripts and styles only from this
//! origin, no inline script, connections only back to this server) so that even a bug that
//! let a message body reach the DOM as markup could not run code.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppPath, AppState};
use crate::error::ApiError;

/// One embedded file: its path under `host/web/`, its media type and its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset {
            path: $path,
            content_type: $content_type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("admin.html", HTML),
    asset!("favicon.svg", SVG),
    asset!("css/app.css", CSS),
    asset!("js/dom.js", JS),
    asset!("js/api.js", JS),
    asset!("js/socket.js", JS),
    asset!("js/state.js", JS),
    asset!("js/views.js", JS),
    asset!("js/dialogs.js", JS),
    asset!("js/outbox.js", JS),
    asset!("js/files.js", JS),
    asset!("js/search.js", JS),
    asset!("js/mentions.js", JS),
    asset!("js/markdown.js", JS),
    asset!("js/thread.js", JS),
    asset!("js/reactions.js", JS),
    asset!("js/pins.js", JS),
    asset!("js/presence.js", JS),
    asset!("js/chat.js", JS),
    asset!("js/admin.js", JS),
    asset!("js/admin/util.js", JS),
    asset!("js/admin/users.js", JS),
    asset!("js/admin/rooms.js", JS),
    asset!("js/admin/webhooks.js", JS),
    asset!("js/admin/audit.js", JS),
    asset!("js/admin/health.js", JS),
    asset!("js/admin/plugins.js", JS),
    asset!("js/admin/compliance.js", JS),
    asset!("js/admin/files.js", JS),
    asset!("js/admin/assistant.js", JS),
    asset!("js/admin/api-reference.js", JS),
];

/// Strong validators, computed once: the files cannot change while the binary runs.
static ETAGS: LazyLock<HashMap<&'static str, String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = crate::ids::sha256_hex(&String::from_utf8_lossy(a.bytes));
            (a.path, format!("\"{}\"", &digest[..20]))
        })
        .collect()
});

pub fn routes() -> OpenApiRouter<AppState> {
    let mut router = OpenApiRouter::new()
        .routes(routes!(chat_page))
        .routes(routes!(admin_page))
        .routes(routes!(asset));
    // An asset's path has slashes (`js/admin/users.js`), so the route is axum's catch-all
    // `{*path}`, which is not OpenAPI's template syntax: the description names the same
    // parameter `{path}`.
    let paths = &mut router.get_openapi_mut().paths.paths;
    if let Some(item) = paths.shift_remove("/assets/{*path}") {
        paths.insert("/assets/{path}".to_string(), item);
    }
    router
}

/// The web chat client.
#[utoipa::path(get, path = "/", tag = "web", operation_id = "web_client", security(()),
    responses(
        (status = 200, description = "The web client's page", body = String,
            content_type = "text/html",
            headers(("etag" = String, description = "Revalidate with `If-None-Match`"))),
        (status = 304, description = "Not Modified: the `If-None-Match` tag is current"),
    ))]
async fn chat_page(headers: HeaderMap) -> Response {
    page("index.html", headers).await
}

/// The admin console.
#[utoipa::path(get, path = "/admin", tag = "web", operation_id = "web_admin", security(()),
    responses(
        (status = 200, description = "The admin console's page (its data needs an admin's \
            access token)", body = String, content_type = "text/html",
            headers(("etag" = String, description = "Revalidate with `If-None-Match`"))),
        (status = 304, description = "Not Modified: the `If-None-Match` tag is current"),
    ))]
async fn admin_page(headers: HeaderMap) -> Response {
    page("admin.html", headers).await
}

async fn page(path: &'static str, headers: HeaderMap) -> Response {
    serve(path, &headers).unwrap_or_else(|| not_found().into_response())
}

/// A script, style sheet or image of the web client and admin console.
#[utoipa::path(get, path = "/assets/{*path}", tag = "web", operation_id = "web_asset",
    security(()),
    params(("path" = String, Path,
        description = "The file's path, slashes included (`js/admin/users.js`); the pages \
            themselves are served only at `/` and `/admin`")),
    responses(
        (status = 200, description = "The file, typed by its extension",
            content(
                (String = "text/javascript"),
                (String = "text/css"),
                (String = "image/svg+xml")
            ),
            headers(("etag" = String, description = "Revalidate with `If-None-Match`"))),
        (status = 304, description = "Not Modified: the `If-None-Match` tag is current"),
    ))]
async fn asset(AppPath(path): AppPath<String>, headers: HeaderMap) -> Response {
    // Pages have one address each (`/`, `/admin`); only their parts live under `/assets`.
    if path.ends_with(".html") {
        return not_found().into_response();
    }
    serve(&path, &headers).unwrap_or_else(|| not_found().into_response())
}

fn not_found() -> ApiError {
    ApiError::not_found("asset_not_found", "no such file")
}

fn serve(path: &str, headers: &HeaderMap) -> Option<Response> {
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    let etag = ETAGS.get(asset.path)?;
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.bytes.into_response()
    };
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // Names carry no content hash, so a browser must revalidate; the ETag makes that a
    // cheap 304 and guarantees an upgraded server's files are picked up at once.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&content_security_policy(headers)) {
        h.insert(CONTENT_SECURITY_POLICY, value);
    }
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Some(response)
}

/// The policy for a page served to `Host`. `connect-src 'self'` covers `ws:` to the same
/// host only in newer browsers, so the WebSocket origin is named explicitly, taken from the
/// request's `Host` (validated: it ends up inside a header).
fn content_security_policy(headers: &HeaderMap) -> String {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok()).filter(|h| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    });
    let sockets = host.map_or(String::new(), |h| format!(" ws://{h} wss://{h}"));
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         connect-src 'self'{sockets}; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `host/web/` is embedded, and every embedded file exists.
    #[test]
    fn asset_list_matches_the_directory() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("read web dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path.strip_prefix(&root).expect("under root");
                    on_disk.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk, "host/web/ and ASSETS in api/web.rs differ");
    }

    #[test]
    fn content_types_follow_extensions() {
        for asset in ASSETS {
            let expected = match asset.path.rsplit('.').next() {
                Some("html") => HTML,
                Some("js") => JS,
                Some("css") => CSS,
                Some("svg") => SVG,
                other => panic!("no content type rule for {other:?}"),
            };
            assert_eq!(asset.content_type, expected, "{}", asset.path);
        }
    }

    #[test]
    fn csp_names_the_websocket_origin_only_for_a_sane_host() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let csp = content_security_policy(&headers);
        assert!(csp.contains("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080;"));
        assert!(csp.contains("script-src 'self';"));
        headers.insert(HOST, HeaderValue::from_static("evil; script-src *"));
        let csp = content_security_policy(&headers);
        assert!(csp.contains("connect-src 'self';"), "{csp}");
    }
}

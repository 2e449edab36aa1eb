//! Admin-only read endpoints behind the admin console: every room on the server, recent audit
//! records, and a health summary. User management lives with the user routes in `account`.
//!
//! Everything here takes [`AdminUser`], so the console page itself can be public while its
//! data is not.

use std::time::Instant;

use axum::Extension;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AdminUser, AppJson, AppQuery, AppState};
use crate::error::Result;
use crate::store::{AuditRecord, Room};

/// Audit records returned when `limit` is absent, and the most one request may ask for.
const AUDIT_DEFAULT: u32 = 50;
const AUDIT_MAX: u32 = 500;

pub fn routes() -> OpenApiRouter<AppState> {
    // Captured when the app is built, i.e. at server start: each server in a process (the
    // tests run several) reports its own uptime.
    let started = Instant::now();
    OpenApiRouter::new()
        .routes(routes!(list_rooms))
        .routes(routes!(recent_audit))
        .routes(routes!(health))
        // `health` reads the start time from here; a layer covers the routes added before it.
        .layer(Extension(started))
}

/// Every room, members or not: operators need to see rooms they are not in.
#[utoipa::path(get, path = "/api/v1/admin/rooms", tag = "admin",
    operation_id = "admin_list_rooms",
    responses((status = 200, description = "Every room on the server", body = Vec<Room>)))]
async fn list_rooms(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
) -> Result<AppJson<Vec<Room>>> {
    Ok(AppJson(state.store.list_rooms().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// At most this many records (default 50, clamped to 1..=500).
    limit: Option<u32>,
}

/// The most recent audit records (reading them is itself audited).
///
/// Newest first; `limit` is clamped to 1..=500.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin",
    params(AuditQuery),
    responses((status = 200, description = "The newest audit records, newest first",
        body = Vec<AuditRecord>)))]
async fn recent_audit(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    AppQuery(query): AppQuery<AuditQuery>,
) -> Result<AppJson<Vec<AuditRecord>>> {
    let limit = query.limit.unwrap_or(AUDIT_DEFAULT).clamp(1, AUDIT_MAX);
    let records = state.store.recent_audit(limit).await?;
    // Reading the record is on the record, whoever reads it.
    crate::audit::record(
        state.store.as_ref(),
        crate::audit::Actor::User(admin.user.id),
        crate::audit::Action::AuditRead,
        crate::audit::Subject::AuditLog,
        serde_json::json!({ "newest": records.len() }),
    )
    .await;
    Ok(AppJson(records))
}

#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// Open WebSocket connections on this node.
    connections: usize,
    /// Message events committed since this server started (the console derives messages/s
    /// from two `/metrics` samples; this is the same counter).
    messages_stored: u64,
    /// Events pushed to live sessions since start.
    deliveries: u64,
    uptime_secs: u64,
    version: &'static str,
    store: StoreHealth,
}

#[derive(Debug, Serialize, ToSchema)]
struct StoreHealth {
    backend: &'static str,
    /// Whether the store answered a ping just now.
    ok: bool,
    /// Bytes on disk, when the backend can tell.
    size_bytes: Option<u64>,
}

/// This node's connections, deliveries, uptime and store.
#[utoipa::path(get, path = "/api/v1/admin/health", tag = "admin",
    operation_id = "admin_health",
    responses((status = 200, description = "A health summary of this node", body = Health)))]
async fn health(
    State(state): State<AppState>,
    AdminUser(_): AdminUser,
    Extension(started): Extension<Instant>,
) -> Result<AppJson<Health>> {
    let ok = state.store.ping().await.is_ok();
    // A store that cannot report its size is not an error for a health page.
    let size_bytes = if ok {
        state.store.size_bytes().await.ok().flatten()
    } else {
        None
    };
    let messages_stored = state
        .metrics
        .events_stored
        .get_or_create(&vec![("kind".to_string(), "message".to_string())])
        .get();
    Ok(AppJson(Health {
        connections: state.hub.connection_count(),
        messages_stored,
        deliveries: state.metrics.deliveries.get(),
        uptime_secs: started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        store: StoreHealth {
            backend: state.store.backend(),
            ok,
            size_bytes,
        },
    }))
}

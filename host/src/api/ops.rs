//! Operations endpoints: liveness and Prometheus metrics.

use axum::Router as HttpRouter;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::{AdminUser, AppState, bearer_token, constant_time_eq};
use crate::error::Result;

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Liveness and store reachability; unauthenticated so load balancers can probe it, and it
/// reveals nothing but "ok".
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({ "status": "ok" }))),
        Err(err) => {
            tracing::warn!(error = %err, "health check: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "status": "store_unavailable" })),
            )
        }
    }
}

/// Readiness for a load balancer: `503` only when the store is unreachable. A lost cluster
/// bus is reported (`degraded`, `bus: disconnected`) but keeps the node in rotation, because
/// every node would see the same outage and clients still get everything from the store.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let bus = state.hub.bus_status();
    match state.store.ping().await {
        Ok(()) => {
            let status = if bus == "disconnected" {
                "degraded"
            } else {
                "ready"
            };
            (
                StatusCode::OK,
                axum::Json(json!({ "status": status, "store": "ok", "bus": bus })),
            )
        }
        Err(err) => {
            tracing::warn!(error = %err, "readiness: store unreachable");
            let body = json!({ "status": "unavailable", "store": "unreachable", "bus": bus });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body))
        }
    }
}

/// How long a scrape waits for the database before reporting it down.
const STORE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus text format. Needs the configured `metrics_token` as a bearer token (what a
/// scraper sends) or an admin's access token.
async fn metrics(State(state): State<AppState>, mut parts: Parts) -> Result<impl IntoResponse> {
    let scraper_ok = match (&state.config.metrics_token, bearer_token(&parts)) {
        (Some(expected), Some(given)) => {
            constant_time_eq(expected.expose().as_bytes(), given.as_bytes())
        }
        _ => false,
    };
    if !scraper_ok {
        AdminUser::from_request_parts(&mut parts, &state).await?;
    }
    let mut body = crate::metrics::render(&state.registry);
    // The store's health, measured at scrape time with a bound: a database that hangs
    // must show as down, not make the scrape itself time out.
    let size = tokio::time::timeout(STORE_PROBE_TIMEOUT, state.store.size_bytes()).await;
    let (up, size) = match size {
        Ok(Ok(size)) => (1, size),
        Ok(Err(_)) | Err(_) => (0, None),
    };
    // Appended before the OpenMetrics terminator, which must stay last.
    let had_eof = body.ends_with("# EOF\n");
    if had_eof {
        body.truncate(body.len() - "# EOF\n".len());
    }
    body.push_str(
        "# HELP switchboard_store_up 1 when the database answered this scrape within 2 s.\n",
    );
    body.push_str("# TYPE switchboard_store_up gauge\n");
    body.push_str(&format!("switchboard_store_up {up}\n"));
    if let Some(bytes) = size {
        body.push_str("# HELP switchboard_store_size_bytes Bytes the database occupies.\n");
        body.push_str("# TYPE switchboard_store_size_bytes gauge\n");
        body.push_str(&format!("switchboard_store_size_bytes {bytes}\n"));
    }
    if had_eof {
        body.push_str("# EOF\n");
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            // What prometheus-client writes: OpenMetrics (counters keep their type only when
            // the scraper is told so).
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}

//! Operations endpoints: liveness and Prometheus metrics.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AdminUser, AppState, bearer_token, constant_time_eq};
use crate::error::Result;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The liveness answer.
#[derive(Debug, Serialize, ToSchema)]
struct Liveness {
    status: LivenessStatus,
}

/// `ok`, or `store_unavailable` (answered with `503`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum LivenessStatus {
    Ok,
    StoreUnavailable,
}

/// Liveness and store reachability.
///
/// Unauthenticated so load balancers can probe it, and it reveals nothing but "ok".
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Alive, and the store answers: `{\"status\": \"ok\"}`",
            body = Liveness),
        (status = 503, description = "The store does not answer: \
            `{\"status\": \"store_unavailable\"}`", body = Liveness),
    ))]
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(Liveness {
                status: LivenessStatus::Ok,
            }),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "health check: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(Liveness {
                    status: LivenessStatus::StoreUnavailable,
                }),
            )
        }
    }
}

// Fields in alphabetical order: the order the answer had when it was built as a JSON map.
/// The readiness answer.
#[derive(Debug, Serialize, ToSchema)]
struct Readiness {
    /// The cluster bus: `local` (no cluster), `connected` or `disconnected`.
    #[schema(value_type = String)]
    bus: &'static str,
    status: ReadinessStatus,
    store: ReadinessStore,
}

/// `ready`; `degraded` when the cluster bus is disconnected (still `200`); `unavailable`
/// when the store does not answer (`503`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadinessStatus {
    Ready,
    Degraded,
    Unavailable,
}

/// Whether the store answered: `ok` or `unreachable`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ReadinessStore {
    Ok,
    Unreachable,
}

/// Readiness for a load balancer: `503` only when the store is unreachable.
///
/// A lost cluster bus is reported (`degraded`, `bus: disconnected`) but keeps the node in
/// rotation, because every node would see the same outage and clients still get everything
/// from the store.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "In rotation: `ready`, or `degraded` when the cluster bus \
            is disconnected", body = Readiness),
        (status = 503, description = "The store does not answer: `unavailable`", body = Readiness),
    ))]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let bus = state.hub.bus_status();
    match state.store.ping().await {
        Ok(()) => {
            let status = if bus == "disconnected" {
                ReadinessStatus::Degraded
            } else {
                ReadinessStatus::Ready
            };
            (
                StatusCode::OK,
                axum::Json(Readiness {
                    bus,
                    status,
                    store: ReadinessStore::Ok,
                }),
            )
        }
        Err(err) => {
            tracing::warn!(error = %err, "readiness: store unreachable");
            let body = Readiness {
                bus,
                status: ReadinessStatus::Unavailable,
                store: ReadinessStore::Unreachable,
            };
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body))
        }
    }
}

/// How long a scrape waits for the database before reporting it down.
const STORE_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Prometheus metrics, in the OpenMetrics text format.
///
/// Needs the configured `metrics_token` as a bearer token (what a scraper sends) or an
/// admin's access token.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200,
        description = "The metrics in the OpenMetrics text format \
            (`application/openmetrics-text; version=1.0.0; charset=utf-8`), ending in `# EOF`. \
            The bearer token is the configured `metrics_token` (what a scraper sends) or an \
            admin's access token.",
        body = String, content_type = "application/openmetrics-text")))]
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

//! Server metrics in the Prometheus text format, served at `/metrics`.
//!
//! One `Registry` per server instance (no global recorder), so several servers in one test
//! process keep separate counts. Handles are cheap clones shared with the parts that count.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels for counters keyed by a single `kind` (event kind, error code, close reason).
pub type ByKind = Family<Vec<(String, String)>, Counter>;

/// HTTP request durations by route, method and status class.
pub type HttpDurations = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

fn http_duration_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Open WebSocket sessions on this node.
    pub ws_connections: Gauge,
    /// Matrix `/sync` long polls waiting on this node.
    pub long_polls: Gauge,
    /// WebSocket sessions closed, by reason (`client`, `slow_consumer`, `idle`, …).
    pub ws_closed: ByKind,
    /// Events committed to the store, by kind (`message`, `edit`, …).
    pub events_stored: ByKind,
    /// Events pushed to live sessions (one per recipient session).
    pub deliveries: Counter,
    /// Requests refused, by error code.
    pub errors: ByKind,
    /// From a write entering the group commit's queue to its commit and fan-out (seconds).
    pub send_latency: Histogram,
    /// Writes per group-commit transaction.
    pub commit_batch_size: Histogram,
    /// Duration of one group-commit transaction (seconds).
    pub commit_duration: Histogram,
    /// Duration of one step merging the search index between group commits (seconds;
    /// SQLite only, `store::sqlite_index_merge`).
    pub search_merge_duration: Histogram,
    /// LDAP directory syncs, by outcome (`ok`, `failed`).
    pub ldap_syncs: ByKind,
    /// When the last LDAP sync finished well (Unix seconds; 0: never). Alert when it lags
    /// `identity.ldap.sync_interval_secs` by much: leavers are not being deactivated.
    pub ldap_last_sync: Gauge,
    /// Calls to the language model (`llm`), by plugin and outcome (`ok`, `truncated`,
    /// `timeout`, or the refusal's code: `prompt_blocked`, `budget_exceeded`,
    /// `model_timeout`, …).
    pub llm_calls: ByKind,
    /// Tokens sent to and received from the model, by direction (`in`, `out`).
    pub llm_tokens: ByKind,
    /// Values the DLP detectors redacted on the way to the model or masked in its reply,
    /// by detector and direction.
    pub llm_redactions: ByKind,
    /// Tool calls the model asked for, by tool and decision (`allowed`, `approved`,
    /// `denied`, `refused`, `expired`, `invalid`).
    pub llm_tool_calls: ByKind,
    /// Duration of one call to the model, tool rounds included (seconds).
    pub llm_call_duration: Histogram,
    /// HTTP requests answered, by `route` (the matched path template, `unmatched` for none),
    /// `method` and status `class` (`2xx`, `4xx`, `5xx`, …), with their duration (seconds).
    /// WebSocket sessions count once, at the upgrade.
    pub http_requests: HttpDurations,
}

impl Metrics {
    /// Create the server's metrics and register them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            ws_connections: Gauge::default(),
            long_polls: Gauge::default(),
            ws_closed: ByKind::default(),
            events_stored: ByKind::default(),
            deliveries: Counter::default(),
            errors: ByKind::default(),
            send_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            commit_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            search_merge_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            ldap_syncs: ByKind::default(),
            ldap_last_sync: Gauge::default(),
            llm_calls: ByKind::default(),
            llm_tokens: ByKind::default(),
            llm_redactions: ByKind::default(),
            llm_tool_calls: ByKind::default(),
            llm_call_duration: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            http_requests: HttpDurations::new_with_constructor(http_duration_histogram),
        };
        let sb = registry.sub_registry_with_prefix("switchboard");
        sb.register(
            "ldap_syncs",
            "LDAP directory syncs, by outcome",
            metrics.ldap_syncs.clone(),
        );
        sb.register(
            "ldap_last_sync_seconds",
            "When the last LDAP sync finished well (Unix seconds)",
            metrics.ldap_last_sync.clone(),
        );
        sb.register(
            "llm_calls",
            "Calls to the language model, by plugin and outcome",
            metrics.llm_calls.clone(),
        );
        sb.register(
            "llm_tokens",
            "Tokens sent to and received from the language model, by direction",
            metrics.llm_tokens.clone(),
        );
        sb.register(
            "llm_redactions",
            "Values redacted on the way to the model or masked in its reply",
            metrics.llm_redactions.clone(),
        );
        sb.register(
            "llm_tool_calls",
            "Tool calls the model asked for, by tool and decision",
            metrics.llm_tool_calls.clone(),
        );
        sb.register(
            "llm_call_duration_seconds",
            "Duration of one call to the language model, tool rounds included",
            metrics.llm_call_duration.clone(),
        );
        sb.register(
            "http_request_duration_seconds",
            "HTTP requests answered, by route, method and status class, and how long they took",
            metrics.http_requests.clone(),
        );
        sb.register(
            "ws_connections",
            "Open WebSocket sessions",
            metrics.ws_connections.clone(),
        );
        sb.register(
            "long_polls",
            "Matrix /sync long polls waiting",
            metrics.long_polls.clone(),
        );
        sb.register(
            "ws_closed",
            "WebSocket sessions closed, by reason",
            metrics.ws_closed.clone(),
        );
        sb.register(
            "events_stored",
            "Events committed, by kind",
            metrics.events_stored.clone(),
        );
        sb.register(
            "deliveries",
            "Events pushed to live sessions",
            metrics.deliveries.clone(),
        );
        sb.register(
            "errors",
            "Requests refused, by error code",
            metrics.errors.clone(),
        );
        sb.register(
            "send_latency_seconds",
            "Time from a write entering the group commit's queue to its commit and fan-out",
            metrics.send_latency.clone(),
        );
        sb.register(
            "commit_batch_size",
            "Writes per group-commit transaction",
            metrics.commit_batch_size.clone(),
        );
        sb.register(
            "commit_duration_seconds",
            "Duration of one group-commit transaction",
            metrics.commit_duration.clone(),
        );
        sb.register(
            "search_merge_duration_seconds",
            "Duration of one step merging the search index between group commits (SQLite)",
            metrics.search_merge_duration.clone(),
        );
        metrics
    }

    /// Add `n` to the counter of `family` with these labels.
    pub fn add(family: &ByKind, labels: &[(&str, &str)], n: u64) {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        family.get_or_create(&labels).inc_by(n);
    }

    pub fn count(family: &ByKind, kind: &str) {
        family
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc();
    }
}

/// Render a registry in the Prometheus text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

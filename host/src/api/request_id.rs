//! Request and trace ids: every HTTP request gets an id (the caller's `x-request-id` when it
//! sent a sane one, else a new one), echoed in the response's `x-request-id`, and runs in a
//! tracing span carrying it, its method and path, and the W3C trace id of a `traceparent`
//! header when a proxy or client sent one. Every log line written while the request is
//! handled carries these fields (the JSON log puts them under `span`), so an operator goes
//! from a user's complaint ("request id …") or a distributed trace to the server's lines.
//! The same middleware times each request into `switchboard_http_request_duration_seconds`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

pub const REQUEST_ID: &str = "x-request-id";
const TRACEPARENT: &str = "traceparent";
/// A caller-chosen request id longer than this is replaced (ids end up in every log line).
const MAX_REQUEST_ID: usize = 128;

/// The ids of the request being handled (a request extension).
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub trace_id: Option<String>,
}

/// The middleware: ids in, span around, id out, duration counted.
pub async fn with_request_ids(
    State(metrics): State<crate::metrics::Metrics>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    // The route template, not the path: ids in paths would make every request a series.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map(str::to_string)
        .unwrap_or_else(|| crate::ids::random_token(12));
    let trace_id = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id_of);
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        trace_id = trace_id.as_deref().unwrap_or(""),
    );
    request.extensions_mut().insert(RequestIds {
        request_id: request_id.clone(),
        trace_id,
    });
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let class = format!("{}xx", response.status().as_u16() / 100);
    metrics
        .http_requests
        .get_or_create(&vec![
            ("route".to_string(), route),
            ("method".to_string(), method),
            ("class".to_string(), class),
        ])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Letters, digits and `-._:` only, 1 to 128 of them: safe to log and to echo.
fn is_sane_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` when the
/// header is malformed or the id is the invalid all-zero one.
fn trace_id_of(header: &str) -> Option<String> {
    let mut parts = header.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0')
        // Version 00 has exactly four fields; later versions may append more.
        && (version != "00" || parts.next().is_none());
    valid.then(|| trace.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_headers_are_read_strictly() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id_of(good).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad:?}");
        }
        // A later version may carry more fields.
        assert!(trace_id_of("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
    }

    #[test]
    fn only_plain_request_ids_are_taken_from_callers() {
        assert!(is_sane_request_id("abc-123_x.y:z"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("a b"));
        assert!(!is_sane_request_id("line\nbreak"));
        assert!(!is_sane_request_id(&"x".repeat(129)));
    }
}

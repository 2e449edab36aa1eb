//! The `http` capability: outbound requests limited by the operator's policy.
//!
//! For every request, in this order: the URL's scheme, host and port must be on the
//! plugin's allow-list (`[http] allow`); the plugin's rate limit must have room; the host is
//! resolved **here**, and every address it resolves to must be public unless the manifest
//! says `allow_private = true` (`address` classifies it: loopback, private, link-local,
//! unique-local, site-local, shared, benchmarking, documentation, multicast, reserved,
//! Teredo, and IPv6 spellings of any of those IPv4 ranges are refused); then the connection goes to exactly those checked
//! addresses (the client's resolver is overridden for the host), so a second DNS answer
//! cannot send it elsewhere (no DNS-rebinding bypass). Redirects are not followed, proxies
//! from the environment are ignored, the whole request has a timeout, and the response body
//! is read up to a size cap.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::Url;

use super::CapError;
use crate::plugins::manifest::HttpSettings;

mod address;

/// A request as a plugin asked for it.
pub(crate) struct HttpRequest {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// One plugin's HTTP policy and rate limiter.
pub(crate) struct HttpCtx {
    plugin: String,
    settings: HttpSettings,
    limiter: DefaultDirectRateLimiter,
}

/// Request headers a plugin may not set: they belong to the connection the host makes.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "proxy-authorization",
    "upgrade",
];
/// Most request headers and request body bytes.
const MAX_HEADERS: usize = 64;
const MAX_REQUEST_BODY: usize = 1024 * 1024;

impl HttpCtx {
    pub(crate) fn new(plugin: &str, settings: HttpSettings) -> Self {
        let per_minute = NonZeroU32::new(settings.requests_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            plugin: plugin.to_string(),
            limiter: RateLimiter::direct(Quota::per_minute(per_minute)),
            settings,
        }
    }

    /// Check `request` against the policy and send it.
    pub(crate) async fn send(&self, request: HttpRequest) -> Result<HttpResponse, CapError> {
        let url = Url::parse(&request.url)
            .map_err(|e| CapError::InvalidArgument(format!("invalid URL: {e}")))?;
        let scheme = url.scheme().to_string();
        let host = url
            .host_str()
            .ok_or_else(|| CapError::InvalidArgument("the URL has no host".into()))?
            .to_ascii_lowercase();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| CapError::InvalidArgument("the URL has no port".into()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(CapError::InvalidArgument(
                "credentials in the URL are not allowed; use a header".into(),
            ));
        }
        let origin = format!("{scheme}://{host}:{port}");
        if !self.settings.allows(&scheme, &host, port) {
            return Err(CapError::Denied(format!(
                "{origin} is not on this plugin's [http] allow list"
            )));
        }
        let method = match request.method.to_ascii_uppercase().as_str() {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            "DELETE" => reqwest::Method::DELETE,
            "HEAD" => reqwest::Method::HEAD,
            other => {
                return Err(CapError::InvalidArgument(format!(
                    "method {other:?} is not supported"
                )));
            }
        };
        if request.headers.len() > MAX_HEADERS || request.body.len() > MAX_REQUEST_BODY {
            return Err(CapError::TooLarge);
        }
        if self.limiter.check().is_err() {
            return Err(CapError::Denied(format!(
                "rate limit of {} requests per minute reached",
                self.settings.requests_per_minute
            )));
        }

        let addrs = self.resolve(&host, port).await?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.settings.timeout)
            .connect_timeout(self.settings.timeout);
        if literal_ip(&host).is_none() {
            // Connect to the addresses just checked, never to a fresh lookup's answer.
            builder = builder.resolve_to_addrs(&host, &addrs);
        }
        let client = builder
            .build()
            .map_err(|e| CapError::Unavailable(format!("HTTP client: {e}")))?;
        let mut outgoing = client.request(method, url);
        for (name, value) in request.headers {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(CapError::InvalidArgument(format!(
                    "header {name:?} is set by the host"
                )));
            }
            outgoing = outgoing.header(name, value);
        }
        let mut response = outgoing
            .body(request.body)
            .send()
            .await
            .map_err(|e| self.network_error(&origin, &e))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.network_error(&origin, &e))?
        {
            if body.len() + chunk.len() > self.settings.max_response_bytes {
                tracing::info!(plugin = %self.plugin, %origin, "HTTP response over the size cap");
                return Err(CapError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// Every address of the URL's host, each checked against the private-range rule.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, CapError> {
        let addrs: Vec<SocketAddr> = match literal_ip(host) {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => {
                tokio::time::timeout(self.settings.timeout, tokio::net::lookup_host((host, port)))
                    .await
                    .map_err(|_| CapError::Unavailable(format!("resolving {host} timed out")))?
                    .map_err(|e| CapError::Unavailable(format!("cannot resolve {host}: {e}")))?
                    .collect()
            }
        };
        if addrs.is_empty() {
            return Err(CapError::Unavailable(format!("{host} has no address")));
        }
        if !self.settings.allow_private
            && let Some((bad, class)) = addrs
                .iter()
                .map(|a| (a.ip(), address::classify(a.ip())))
                .find(|(_, class)| !class.is_public())
        {
            return Err(CapError::Denied(format!(
                "{host} resolves to {bad}, a {class} address; the manifest must set [http] \
                 allow_private = true to reach it"
            )));
        }
        Ok(addrs)
    }

    fn network_error(&self, origin: &str, e: &reqwest::Error) -> CapError {
        tracing::info!(plugin = %self.plugin, %origin, error = %e, "plugin HTTP request failed");
        if e.is_timeout() {
            CapError::Unavailable(format!(
                "{origin}: no answer within {} ms",
                self.settings.timeout.as_millis()
            ))
        } else if e.is_connect() {
            CapError::Unavailable(format!("{origin}: cannot connect"))
        } else {
            CapError::Unavailable(format!("{origin}: request failed"))
        }
    }
}

/// The address of a host that is an IP literal (`127.0.0.1`, `[::1]`).
fn literal_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Defaults of `[http]`.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
pub(crate) const DEFAULT_REQUESTS_PER_MINUTE: u32 = 60;

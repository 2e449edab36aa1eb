//! Outbound HTTP (capability `http`), limited to the origins the operator allow-listed in
//! the manifest's `[http] allow`. A refused request (origin not listed, private address,
//! rate limit) is [`HostError::Denied`] with the rule; a network failure is
//! [`HostError::Unavailable`]; a response over the size cap is [`HostError::TooLarge`].
//! Redirects are returned, not followed.

#[cfg(target_arch = "wasm32")]
use crate::__wit::switchboard::plugin::http as wit;
// Natively, the fake host of `testing` answers (so hooks run in `cargo test`).
use crate::HostError;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::fake::http as wit;

pub use crate::__wit::switchboard::plugin::http::{Request, Response};

/// Send `request`.
pub fn send(request: &Request) -> Result<Response, HostError> {
    wit::send(request)
}

/// `POST` `body` to `url` with these headers.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, HostError> {
    send(&Request {
        method: "POST".into(),
        url: url.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    })
}

/// `GET` `url`.
pub fn get(url: &str) -> Result<Response, HostError> {
    send(&Request {
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        body: Vec::new(),
    })
}

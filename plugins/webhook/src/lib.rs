//! Forwards delivered messages from chosen rooms to a URL as JSON, signed the Standard
//! Webhooks way (<https://www.standardwebhooks.com>, version 1), retrying with exponential
//! backoff.
//!
//! Every delivery carries `webhook-id` (`msg_<message id>`: the same on every retry, so a
//! receiver can drop duplicates) and `webhook-timestamp` (seconds since 1970, of this
//! attempt). Settings:
//! - `url`: where to `POST` (its origin must be on the manifest's `[http] allow` list);
//! - `rooms`: room ids to forward, one per line (or a TOML array), or `*` for every room;
//! - `signing_secrets`: one or more `whsec_<base64>` secrets, separated by spaces or lines.
//!   Each signs `<webhook-id>.<webhook-timestamp>.<body>` with HMAC-SHA256, and header
//!   `webhook-signature` lists them all (`v1,<base64> v1,<base64>`): to rotate, add the new
//!   secret, move receivers over, then remove the old one. A secret that is not `whsec_`
//!   and base64 is left out and logged;
//! - `secret` (older receivers): an HMAC key whose signature of the exact body bytes goes in
//!   header `X-Switchboard-Signature: sha256=<hex>`;
//! - `retries` (default 3) and `backoff_ms` (default 200, doubled per retry): a network
//!   failure, a 429 or a 5xx answer is retried; other answers are final.
//!
//! Outcomes are counted in kv (`delivered`, `failed`, `refused`). Grant it `http`,
//! `config`, `kv`, `log`, and give it a `[limits] timeout_ms` that covers its backoff: the
//! sleeps between retries count against the hook's deadline (network waits do not).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchboard_plugin_api::{
    Event, EventKind, HookSet, HostError, Plugin, Room, config, export_plugin, http, kv, log,
};

/// Header carrying `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";

/// Standard Webhooks' headers.
pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const STANDARD_SIGNATURE_HEADER: &str = "webhook-signature";
/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

pub struct Webhook {
    url: Option<String>,
    rooms: Rooms,
    secret: String,
    /// Decoded `signing_secrets`, in the order given.
    signing_keys: Vec<Vec<u8>>,
    retries: u32,
    backoff_ms: u64,
}

pub enum Rooms {
    All,
    Only(Vec<i64>),
}

impl Rooms {
    pub fn parse(value: &str) -> Self {
        if value.trim() == "*" {
            return Rooms::All;
        }
        Rooms::Only(
            value
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect(),
        )
    }

    pub fn contains(&self, room: i64) -> bool {
        match self {
            Rooms::All => true,
            Rooms::Only(ids) => ids.contains(&room),
        }
    }
}

/// The key bytes of one `whsec_<base64>` secret; `None` when it is not one.
pub fn signing_key(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX)?;
    BASE64.decode(encoded).ok().filter(|key| !key.is_empty())
}

/// The keys of a `signing_secrets` setting, and the entries that are not secrets.
pub fn signing_keys(setting: &str) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut keys = Vec::new();
    let mut bad = Vec::new();
    for entry in setting.split(|c: char| c.is_whitespace() || c == ',') {
        let entry = entry.trim_matches(|c: char| c == '"' || c == '[' || c == ']');
        if entry.is_empty() {
            continue;
        }
        match signing_key(entry) {
            Some(key) => keys.push(key),
            None => bad.push(entry.chars().take(10).collect::<String>() + "…"),
        }
    }
    (keys, bad)
}

/// Header `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` per
/// key, space-separated.
pub fn standard_signature(keys: &[Vec<u8>], id: &str, timestamp: u64, body: &[u8]) -> String {
    keys.iter()
        .filter_map(|key| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seconds since 1970 now (WASI's wall clock).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The JSON document sent for one message.
pub fn payload(room: &Room, event: &Event) -> Vec<u8> {
    let metadata: serde_json::Map<String, serde_json::Value> = event
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "event": "message",
        "id": event.id,
        "room": { "id": room.id, "name": room.name },
        "seq": event.seq,
        "sender_id": event.sender_id,
        "body": event.body,
        "metadata": metadata,
        "created_at": event.created_at,
    })
    .to_string()
    .into_bytes()
}

/// Whether an attempt's result is worth retrying.
pub fn retryable(result: &Result<u16, HostError>) -> bool {
    match result {
        Ok(status) => *status == 429 || *status >= 500,
        Err(HostError::Unavailable(_)) => true,
        Err(_) => false,
    }
}

impl Plugin for Webhook {
    const HOOKS: HookSet = HookSet::MESSAGE_DELIVERED;

    fn new() -> Self {
        let (signing_keys, bad) = signing_keys(&config::get_or("signing_secrets", ""));
        if !bad.is_empty() {
            let _ = log::error(&format!(
                "`signing_secrets`: {} entr(ies) are not `whsec_<base64>` secrets and sign \
                 nothing: {}",
                bad.len(),
                bad.join(", ")
            ));
        }
        Webhook {
            url: config::get("url").ok().flatten(),
            rooms: Rooms::parse(&config::get_or("rooms", "")),
            secret: config::get_or("secret", ""),
            signing_keys,
            retries: config::get_or("retries", "3").parse().unwrap_or(3),
            backoff_ms: config::get_or("backoff_ms", "200").parse().unwrap_or(200),
        }
    }

    fn message_delivered(&self, room: Room, event: Event) {
        if event.kind != EventKind::Message || !self.rooms.contains(room.id) {
            return;
        }
        let Some(url) = &self.url else {
            let _ = log::warn("no `url` setting: nothing forwarded");
            return;
        };
        let body = payload(&room, &event);
        let legacy = (!self.secret.is_empty()).then(|| signature(&self.secret, &body));
        let id = format!("msg_{}", event.id);
        let mut delay = self.backoff_ms;
        let mut attempt = 0;
        let outcome = loop {
            // Signed again per attempt: the timestamp is the attempt's, so a receiver's
            // replay window (often five minutes) holds for retries too.
            let timestamp = unix_seconds();
            let timestamp_text = timestamp.to_string();
            let standard = standard_signature(&self.signing_keys, &id, timestamp, &body);
            let mut headers = vec![
                ("content-type", "application/json"),
                (ID_HEADER, id.as_str()),
                (TIMESTAMP_HEADER, timestamp_text.as_str()),
            ];
            if !standard.is_empty() {
                headers.push((STANDARD_SIGNATURE_HEADER, standard.as_str()));
            }
            if let Some(legacy) = &legacy {
                headers.push((SIGNATURE_HEADER, legacy.as_str()));
            }
            let result = http::post(url, &headers, &body).map(|r| r.status);
            if attempt >= self.retries || !retryable(&result) {
                break result;
            }
            attempt += 1;
            std::thread::sleep(std::time::Duration::from_millis(delay));
            delay = delay.saturating_mul(2);
        };
        let counter = match &outcome {
            Ok(status) if (200..300).contains(status) => "delivered",
            Err(HostError::Denied(_) | HostError::NotGranted) => "refused",
            _ => "failed",
        };
        let _ = kv::increment(counter, 1);
        if counter != "delivered" {
            let _ = log::warn(&format!(
                "message {} not delivered after {} attempt(s): {outcome:?}",
                event.id,
                attempt + 1
            ));
        }
    }
}

export_plugin!(Webhook);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_signature_matches_the_specs_example() {
        // The example of the Standard Webhooks reference libraries' tests.
        let keys = vec![signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a secret")];
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(&keys, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let (keys, bad) = signing_keys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n whsec_AAAA nope");
        assert_eq!(keys.len(), 2);
        assert_eq!(bad, vec!["nope…".to_string()]);
        assert!(signing_key("whsec_!!").is_none() && signing_key("MfKQ9r8G").is_none());
        assert_eq!(
            standard_signature(&keys, "i", 1, b"x").split(' ').count(),
            2
        );
    }

    #[test]
    fn rooms_and_retries() {
        assert!(Rooms::parse("*").contains(9));
        let some = Rooms::parse("1\n 2 \nx");
        assert!(some.contains(2) && !some.contains(3));
        assert!(retryable(&Ok(503)) && retryable(&Ok(429)));
        assert!(!retryable(&Ok(404)) && !retryable(&Ok(200)));
        assert!(!retryable(&Err(HostError::Denied("no".into()))));
        assert!(retryable(&Err(HostError::Unavailable("down".into()))));
    }
}

//! Forwards delivered messages from chosen rooms to a URL as JSON, signed with
//! HMAC-SHA256, retrying with exponential backoff.
//!
//! Settings:
//! - `url`: where to `POST` (its origin must be on the manifest's `[http] allow` list);
//! - `rooms`: room ids to forward, one per line (or a TOML array), or `*` for every room;
//! - `secret`: the HMAC key; the signature of the exact body bytes goes in header
//!   `X-Switchboard-Signature: sha256=<hex>`;
//! - `retries` (default 3) and `backoff_ms` (default 200, doubled per retry): a network
//!   failure, a 429 or a 5xx answer is retried; other answers are final.
//!
//! Outcomes are counted in kv (`delivered`, `failed`, `refused`). Grant it `http`,
//! `config`, `kv`, `log`, and give it a `[limits] timeout_ms` that covers its backoff: the
//! sleeps between retries count against the hook's deadline (network waits do not).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchboard_plugin_api::{
    Event, EventKind, HookSet, HostError, Plugin, Room, config, export_plugin, http, kv, log,
};

/// Header carrying `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";

pub struct Webhook {
    url: Option<String>,
    rooms: Rooms,
    secret: String,
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
        Webhook {
            url: config::get("url").ok().flatten(),
            rooms: Rooms::parse(&config::get_or("rooms", "")),
            secret: config::get_or("secret", ""),
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
        let signature = signature(&self.secret, &body);
        let headers = [
            ("content-type", "application/json"),
            (SIGNATURE_HEADER, signature.as_str()),
        ];
        let mut delay = self.backoff_ms;
        let mut attempt = 0;
        let outcome = loop {
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

//! The shipped `webhook` plugin signs its deliveries the Standard Webhooks way, and Standard
//! Webhooks' reference Python library (PyPI `standardwebhooks`) verifies them: with each of
//! two secrets during a rotation, not with a wrong one, not for a changed body; a retry
//! keeps its `webhook-id` and is signed again.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::plugins_runtime::harness::Spec;
use crate::support::TestServer;

const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const WRONG_SECRET: &str = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// Verify one delivery with the reference library: prints `ok` or the library's error.
const VERIFY: &str = r#"
import json, sys
from standardwebhooks import Webhook
secret, headers, body = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
try:
    Webhook(secret).verify(body, headers)
    print("ok")
except Exception as e:
    print(type(e).__name__)
"#;

async fn verify(secret: &str, headers: &HeaderMap, body: &str) -> String {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
        .collect();
    super::run_python(VERIFY, &[secret, &Value::Object(headers).to_string(), body])
        .await
        .trim()
        .to_string()
}

#[tokio::test]
async fn deliveries_verify_with_the_reference_library() {
    // The receiver: answers 503 once (the plugin retries), then 204.
    let (tx, mut seen) = mpsc::unbounded_channel::<(HeaderMap, String)>();
    let script = Arc::new(Mutex::new(vec![503u16, 204]));
    let app = axum::Router::new().route(
        "/in",
        post(move |headers: HeaderMap, body: String| {
            let script = script.clone();
            let tx = tx.clone();
            async move {
                let status = {
                    let mut script = script.lock().unwrap();
                    if script.len() > 1 {
                        script.remove(0)
                    } else {
                        script[0]
                    }
                };
                let _ = tx.send((headers, body));
                AxumStatus::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = alice.group("forwarded", &[]).await;
    // Two secrets (a rotation in progress) and one entry that is not a secret at all: it
    // signs nothing (and is logged), the others still sign.
    let webhook = Spec::new("webhook", "webhook")
        .caps(&["http", "config", "kv", "log"])
        .limits("timeout_ms = 5000\n")
        .settings(&format!(
            "url = \"http://127.0.0.1:{port}/in\"\nrooms = \"{room}\"\n\
             signing_secrets = \"{OLD_SECRET} {NEW_SECRET} not-a-secret\"\nbackoff_ms = 10\n"
        ))
        .tables(&format!(
            "[http]\nallow = [\"http://127.0.0.1:{port}\"]\nallow_private = true\n"
        ));
    let plugins = crate::plugins_runtime::harness::write_plugins(&[webhook]);
    let path = plugins.path().to_path_buf();
    let server = server.restart(move |c| c.plugins.dir = Some(path)).await;
    let alice = server.login("alice", crate::support::PASSWORD).await;
    alice.send_http(room, "s1", "first").await;
    alice.send_http(room, "s2", "second").await;

    let mut deliveries = Vec::new();
    for _ in 0..3 {
        let got = tokio::time::timeout(std::time::Duration::from_secs(20), seen.recv())
            .await
            .expect("a delivery")
            .expect("receiver running");
        deliveries.push(got);
    }
    let ids: Vec<&str> = deliveries
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap())
        .collect();
    assert_eq!(ids[0], ids[1], "a retry keeps its webhook-id");
    assert_ne!(ids[1], ids[2], "each message has its own");
    for (headers, body) in &deliveries {
        let doc: Value = serde_json::from_str(body).unwrap();
        assert!(doc["body"] == "first" || doc["body"] == "second", "{doc}");
        let signatures = headers["webhook-signature"].to_str().unwrap();
        assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
        assert!(signatures.split(' ').all(|s| s.starts_with("v1,")));
        assert!(
            headers.get("x-switchboard-signature").is_none(),
            "no legacy secret set"
        );
        assert_eq!(verify(OLD_SECRET, headers, body).await, "ok");
        assert_eq!(verify(NEW_SECRET, headers, body).await, "ok");
        assert_eq!(
            verify(WRONG_SECRET, headers, body).await,
            "WebhookVerificationError"
        );
        let tampered = body.replace("first", "frist").replace("second", "secnod");
        assert_eq!(
            verify(OLD_SECRET, headers, &tampered).await,
            "WebhookVerificationError"
        );
    }
}

//! Plugins in the real message path: a server with compiled plugins loaded from its plugins
//! directory, driven by real clients. DLP blocks, redacts and flags before anything is stored
//! or delivered; the chain order holds; misbehaving plugins are contained by their policy.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use switchboard::store::StoreOptions;

use crate::plugins_runtime::harness::{Spec, server_with};

const CARD: &str = "4111 1111 1111 1111";
const SSN: &str = "078-05-1120";

fn dlp(settings: &str) -> Spec {
    Spec::new("dlp", "dlp")
        .caps(&["log", "config", "kv"])
        .priority(20)
        .settings(settings)
}

#[tokio::test]
async fn dlp_blocks_redacts_and_flags_before_storage_and_delivery() {
    let (server, _plugins) = server_with(vec![dlp(
        "\"action.ssn\" = \"redact\"\n\"action.email\" = \"flag\"\n",
    )])
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("finance", &[bob.id]).await;
    let mut alice_ws = alice.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;

    // Blocked: the sender sees the plugin's reason; nobody receives anything; nothing stored.
    let err = alice_ws
        .send_msg(room, "card-1", &format!("my card is {CARD}"))
        .await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("message_rejected")),
        "{err}"
    );
    assert_eq!(err["rejection"]["plugin"], "dlp");
    assert_eq!(err["rejection"]["code"], "dlp_blocked");
    assert!(
        err["message"].as_str().unwrap().contains("payment card"),
        "{err}"
    );
    assert!(
        !err["message"].as_str().unwrap().contains("1111"),
        "the reason never echoes the value"
    );
    let (status, http_err) = alice
        .send_http(room, "card-2", &format!("again {CARD}"))
        .await;
    assert_eq!(
        (status, http_err["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("message_rejected"))
    );

    // Redacted: stored and delivered masked, and the ack says so.
    let ack = alice_ws
        .send_msg(room, "ssn-1", &format!("ssn {SSN} for payroll"))
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(
        (ack["modified"].as_bool(), ack["body"].as_str()),
        (Some(true), Some("ssn ***-**-1120 for payroll"))
    );
    let event = bob_ws.recv_type("event").await;
    assert_eq!(event["body"], "ssn ***-**-1120 for payroll");
    assert_eq!(event["metadata"]["dlp.redacted"], "ssn");

    // Flagged: delivered as written, marked, and recorded.
    let ack = alice_ws
        .send_msg(room, "mail-1", "write to ops@example.com")
        .await;
    // The body is unchanged; only metadata was added (which counts as a modification).
    assert_eq!(ack["body"], "write to ops@example.com", "{ack}");
    let event = bob_ws.recv_type("event").await;
    assert_eq!(
        (
            event["body"].as_str(),
            event["metadata"]["dlp.flagged"].as_str()
        ),
        (Some("write to ops@example.com"), Some("email"))
    );

    // An edit cannot smuggle a card past the filter.
    let msg = ack["id"].as_i64().unwrap();
    let (status, err) = alice
        .patch(
            &format!("/api/v1/rooms/{room}/messages/{msg}"),
            json!({ "body": format!("now {CARD}") }),
        )
        .await;
    assert_eq!(
        (status, err["rejection"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("dlp_blocked"))
    );

    let history = bob.history(room, "").await;
    assert_eq!(
        history.len(),
        2,
        "blocked messages were never stored: {history:?}"
    );

    // Each rejection is on the audit record, without the message.
    let (status, audit) = server.admin().await.get("/api/v1/admin/audit").await;
    assert_eq!(status, StatusCode::OK);
    let rejects: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "plugin.reject")
        .collect();
    assert_eq!(rejects.len(), 3, "{audit}");
    assert!(
        rejects
            .iter()
            .all(|r| r["actor"] == "plugin:dlp" && r["subject"] == format!("room:{room}"))
    );
    assert!(rejects.iter().all(|r| r["detail"]["code"] == "dlp_blocked"));
    assert!(
        !crate::support::audit_words(&audit).contains("1111"),
        "no message content in the audit log"
    );
    drop((alice_ws, bob_ws));
    let dir = server.stop().await;
    let raw = std::fs::read(dir.path().join("switchboard.db")).unwrap();
    let wal = std::fs::read(dir.path().join("switchboard.db-wal")).unwrap_or_default();
    for bytes in [&raw, &wal] {
        for secret in [CARD.as_bytes(), SSN.as_bytes()] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "raw value on disk"
            );
        }
    }
    // Findings were recorded in the plugin's kv, counted without the values.
    let url = format!("sqlite://{}", dir.path().join("switchboard.db").display());
    let store = switchboard::store::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    let count = |key: &'static str| {
        let store = store.clone();
        async move {
            store
                .kv_get("dlp", key)
                .await
                .unwrap()
                .map(|v| String::from_utf8(v).unwrap())
        }
    };
    assert_eq!(count("findings/card/block").await.as_deref(), Some("3"));
    assert_eq!(count("findings/ssn/redact").await.as_deref(), Some("1"));
    assert_eq!(count("findings/email/flag").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn the_chain_runs_in_priority_order_through_the_server() {
    let guard = Spec::new("keyword-guard", "keyword-guard")
        .caps(&["config"])
        .priority(10)
        .settings(&format!(
            "\"rewrite.paycard\" = {CARD:?}\nblock = [\"forbidden\"]\n"
        ));
    let (server, _plugins) = server_with(vec![dlp("\"action.card\" = \"redact\"\n"), guard]).await;
    let alice = server.user("alice").await;
    let room = alice.group("chain", &[]).await;
    // keyword-guard (10) rewrites a word into a card number; DLP (20) then redacts it.
    let (status, ack) = alice.send_http(room, "c1", "use paycard now").await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["body"], "use **** **** **** 1111 now");
    let (status, err) = alice.send_http(room, "c2", "this is forbidden").await;
    assert_eq!(
        (status, err["rejection"]["plugin"].as_str()),
        (StatusCode::FORBIDDEN, Some("keyword-guard"))
    );
    let history = alice.history(room, "").await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["body"], "use **** **** **** 1111 now");
}

#[tokio::test]
async fn a_runaway_plugin_is_stopped_on_time_and_its_policy_decides() {
    let runaway = |policy| {
        Spec::new("runaway", "fixture-infinite-loop")
            .policy(policy)
            .limits("timeout_ms = 50\n")
    };
    // fail-closed: the message is rejected, promptly, and counted; the server keeps serving.
    let (server, _plugins) = server_with(vec![runaway("fail-closed")]).await;
    let alice = server.user("alice").await;
    let room = alice.group("loop", &[]).await;
    let started = Instant::now();
    let (status, err) = alice.send_http(room, "l1", "hello").await;
    assert_eq!(
        (status, err["rejection"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("plugin_failed")),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "stopped near its 50 ms deadline: {:?}",
        started.elapsed()
    );
    let (status, _) = alice.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::OK);
    let (_, metrics) = server.admin().await.get("/metrics").await;
    assert!(
        metrics.as_str().unwrap().contains("kind=\"timeout\""),
        "the failure is counted"
    );
    assert!(alice.history(room, "").await.is_empty());

    // fail-open: the message goes through unchecked, and still counted.
    let (server, _plugins) = server_with(vec![runaway("fail-open")]).await;
    let alice = server.user("alice").await;
    let room = alice.group("loop", &[]).await;
    let (status, ack) = alice.send_http(room, "l1", "hello").await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(alice.history(room, "").await.len(), 1);
}

/// A trapping plugin's own words (its panic message, written to stderr before the trap)
/// reach the admin API with the failure, never the sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_failing_plugin_said_reaches_the_admin_not_the_sender() {
    // Only messages: it would refuse every login too.
    let trap = Spec::new("trap", "fixture-trap").hooks(&["message-pre-send"]);
    let (server, _plugins) = server_with(vec![trap]).await;
    let alice = server.user("alice").await;
    let room = alice.group("traps", &[]).await;
    let (status, err) = alice.send_http(room, "m1", "boom").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["rejection"]["code"], "plugin_failed", "{err}");
    assert!(
        !err.to_string().contains("deliberate"),
        "the guest's words stay with the admin: {err}"
    );
    let admin = server.admin().await;
    let (status, view) = admin.get("/api/v1/admin/plugins/trap").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let failure = &view["status"]["last_failure"];
    assert_eq!(failure["hook"], "message-pre-send", "{view}");
    assert_eq!(failure["kind"], "trap", "{view}");
    let detail = failure["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("fixture-trap: deliberate trap"),
        "the panic message is kept: {detail}"
    );
    assert!(failure["at"].as_i64().unwrap_or(0) > 0, "{view}");
}

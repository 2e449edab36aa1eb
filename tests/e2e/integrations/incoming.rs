//! Incoming webhooks: Slack's SDK and the payloads of tools that post to Slack
//! (Alertmanager, Grafana, GitHub's Slack action) land in the room as the hook's bot; bad
//! input gets Slack's error codes and stores nothing; revoking, rate limits, audit; DLP
//! applies to what comes in, on SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::hardening::BACKENDS;
use crate::support::{Client, TestServer};

/// Alertmanager's Slack notification with its default templates (`slack_configs`).
const ALERTMANAGER: &str = r##"{"channel":"#alerts","username":"Alertmanager","icon_emoji":":fire:",
 "attachments":[{"title":"[FIRING:1] InstanceDown (web-1 prod)",
  "title_link":"http://alertmanager.example:9093/#/alerts?receiver=slack",
  "text":"*Alert:* Instance web-1 down - `critical`\n*Description:* web-1 has been down for more than 5 minutes.",
  "fallback":"[FIRING:1] InstanceDown | http://alertmanager.example:9093/#/alerts?receiver=slack",
  "callback_id":"","footer":"","color":"danger","mrkdwn_in":["fallback","pretext","text"]}]}"##;

/// Grafana's Slack contact point (webhook URL mode).
const GRAFANA: &str = r##"{"channel":"","username":"Grafana","icon_emoji":"",
 "icon_url":"https://grafana.com/static/assets/img/fav32.png",
 "attachments":[{"color":"#D63232","title":"[FIRING:1] HighCPU (cpu-node-3)",
  "title_link":"http://grafana.example/alerting/list","text":"**Firing**\n\nValue: B=97.2\nLabels:\n - alertname = HighCPU\n",
  "fallback":"[FIRING:1] HighCPU (cpu-node-3)","footer":"Grafana v10.4.1",
  "footer_icon":"https://grafana.com/static/assets/img/fav32.png","ts":1712345678}],"blocks":null}"##;

/// A room owned by `owner` with one hook; returns (room, hook id, bot id, url path).
async fn room_with_hook(owner: &Client, name: &str) -> (i64, i64, i64, String) {
    let room = owner.group(name, &[]).await;
    let (status, created) = owner
        .post(
            &format!("/api/v1/rooms/{room}/webhooks"),
            json!({ "name": "Alerts" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let path = created["url_path"].as_str().expect("url_path").to_string();
    assert!(path.starts_with("/hooks/") && path.len() > 40, "{path}");
    assert_eq!(created["bot"]["is_bot"], true);
    assert_eq!(created["bot"]["display_name"], "Alerts");
    (
        room,
        created["webhook"]["id"].as_i64().expect("id"),
        created["bot"]["id"].as_i64().expect("bot id"),
        path,
    )
}

/// POST to a hook as an integration does (no token); the answer must fit the description.
async fn post_hook(
    base: &str,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, String) {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("hook request");
    let status = resp.status();
    let content = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().await.expect("body");
    crate::api_contract::check("POST", path, status.as_u16(), content.as_deref(), &text);
    (status, text)
}

/// Revoke a hook as its room's owner; its URL then answers 410 `hook_revoked`.
async fn revoke_and_see_it_gone(owner: &Client, base: &str, room: i64, hook: i64, path: &str) {
    let (status, body) = owner
        .delete(&format!("/api/v1/rooms/{room}/webhooks/{hook}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, text) = post_hook(base, path, "application/json", r#"{"text":"late"}"#).await;
    assert_eq!(
        (status, code(&text).as_str()),
        (StatusCode::GONE, "hook_revoked")
    );
}

fn code(text: &str) -> String {
    serde_json::from_str::<Value>(text).expect("json error")["code"]
        .as_str()
        .expect("code")
        .to_string()
}

/// The room's messages (not joins), oldest first.
async fn messages(client: &Client, room: i64) -> Vec<Value> {
    client
        .history(room, "?limit=200")
        .await
        .into_iter()
        .filter(|e| e["kind"] == "message")
        .collect()
}

#[tokio::test]
async fn slack_payloads_post_as_the_hooks_bot() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let (room, hook, bot, path) = room_with_hook(&alice, "ops").await;
    let (status, _) = alice
        .post(
            &format!("/api/v1/rooms/{room}/members"),
            json!({ "user": bob.id }),
        )
        .await;
    assert!(status.is_success(), "{status}");
    let url = format!("{}{path}", server.base);

    // Slack's own SDK: text with Slack markup, then the tools' payloads as they send them.
    let script = r#"
import json, sys
from slack_sdk.webhook import WebhookClient
client = WebhookClient(sys.argv[1])
answers = []
r = client.send(text="Deploy <https://ci.example/42|#42> finished &amp; green <!here>")
answers.append([r.status_code, r.body])
for payload in sys.argv[2:]:
    r = client.send_dict(json.loads(payload))
    answers.append([r.status_code, r.body])
r = client.send(text="with blocks", blocks=[{"type": "header", "text": {"type": "plain_text", "text": "Release 2.1"}}])
answers.append([r.status_code, r.body])
r = WebhookClient(sys.argv[1] + "x").send(text="wrong url")
answers.append([r.status_code, json.loads(r.body)["code"]])
print(json.dumps(answers))
"#;
    let out = super::run_python(script, &[&url, ALERTMANAGER, GRAFANA]).await;
    let answers: Value = serde_json::from_str(out.trim()).expect("answers");
    assert_eq!(
        answers,
        json!([
            [200, "ok"],
            [200, "ok"],
            [200, "ok"],
            [200, "ok"],
            [404, "no_service"]
        ])
    );

    // A form-encoded `payload=` (curl's --data-urlencode), and JSON sent as a form (curl -d).
    let form = format!(
        "payload={}",
        form_urlencoded::byte_serialize(br#"{"text":"from a form","username":"cron"}"#)
            .collect::<String>()
    );
    let (status, text) = post_hook(
        &server.base,
        &path,
        "application/x-www-form-urlencoded",
        form,
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "ok"));
    let (status, _) = post_hook(
        &server.base,
        &path,
        "application/x-www-form-urlencoded",
        r#"{"text":"json labelled as a form"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let got = messages(&bob, room).await;
    let bodies: Vec<&str> = got.iter().map(|e| e["body"].as_str().unwrap()).collect();
    assert_eq!(
        bodies,
        vec![
            "Deploy #42 (https://ci.example/42) finished & green @room",
            "[FIRING:1] InstanceDown (web-1 prod) (http://alertmanager.example:9093/#/alerts?receiver=slack)\n\
             *Alert:* Instance web-1 down - `critical`\n\
             *Description:* web-1 has been down for more than 5 minutes.",
            "[FIRING:1] HighCPU (cpu-node-3) (http://grafana.example/alerting/list)\n\
             **Firing**\n\nValue: B=97.2\nLabels:\n - alertname = HighCPU\nGrafana v10.4.1",
            "Release 2.1",
            "from a form",
            "json labelled as a form",
        ]
    );
    for event in &got {
        assert_eq!(event["sender_id"], bot, "{event}");
        assert_eq!(event["metadata"]["bot.hook"], hook.to_string(), "{event}");
    }
    assert_eq!(got[1]["metadata"]["hook.username"], "Alertmanager");
    assert_eq!(got[1]["metadata"]["hook.icon_emoji"], ":fire:");
    assert_eq!(
        got[2]["metadata"]["hook.icon_url"],
        "https://grafana.com/static/assets/img/fav32.png"
    );
    assert_eq!(got[4]["metadata"]["hook.username"], "cron");
    // `<!here>` became `@room`: the room's members were mentioned.
    assert_eq!(got[0]["mentions_room"], true, "{}", got[0]);

    // Only the owner (or a server admin) manages hooks; keys are never listed.
    let (status, body) = bob.get(&format!("/api/v1/rooms/{room}/webhooks")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = bob
        .post(
            &format!("/api/v1/rooms/{room}/webhooks"),
            json!({ "name": "mine" }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_allowed"))
    );
    let (status, listed) = alice.get(&format!("/api/v1/rooms/{room}/webhooks")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&path["/hooks/".len()..]));
    let admin = server.admin().await;
    let (status, _) = admin.get(&format!("/api/v1/rooms/{room}/webhooks")).await;
    assert_eq!(status, StatusCode::OK);

    // Bad input: each with its code, and nothing stored.
    let before = messages(&bob, room).await.len();
    for (content_type, body, want_status, want_code) in [
        (
            "application/json",
            "{\"text\": ",
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            "application/json",
            "{\"text\": 5}",
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            "application/json",
            "",
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        ("application/json", "{}", StatusCode::BAD_REQUEST, "no_text"),
        (
            "application/json",
            "{\"text\":\"  \",\"attachments\":[]}",
            StatusCode::BAD_REQUEST,
            "no_text",
        ),
        (
            "application/json",
            "{\"text\":\"a\\u0000b\"}",
            StatusCode::BAD_REQUEST,
            "invalid_text",
        ),
        (
            "application/json",
            "{\"text\":\"hi\",\"icon_url\":\"javascript:alert(1)\"}",
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            "application/x-www-form-urlencoded",
            "payload=%7Bnope",
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
    ] {
        let (status, text) = post_hook(&server.base, &path, content_type, body).await;
        assert_eq!(
            (status, code(&text).as_str()),
            (want_status, want_code),
            "{body}: {text}"
        );
    }
    let long = json!({ "text": "x".repeat(17 * 1024) }).to_string();
    let (status, text) = post_hook(&server.base, &path, "application/json", long).await;
    assert_eq!(
        (status, code(&text).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "message_too_large"),
        "{text}"
    );
    let huge = json!({ "text": "x".repeat(70 * 1024) }).to_string();
    let (status, text) = post_hook(&server.base, &path, "application/json", huge).await;
    assert_eq!(
        (status, code(&text).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    for unknown in [
        "/hooks/nope",
        "/hooks/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (status, text) = post_hook(
            &server.base,
            unknown,
            "application/json",
            r#"{"text":"hi"}"#,
        )
        .await;
        assert_eq!(
            (status, code(&text).as_str()),
            (StatusCode::NOT_FOUND, "no_service")
        );
    }
    assert_eq!(
        messages(&bob, room).await.len(),
        before,
        "bad input stored nothing"
    );

    // Revoked: the URL stops working at once and the bot leaves the room.
    revoke_and_see_it_gone(&alice, &server.base, room, hook, &path).await;
    let (status, body) = alice
        .delete(&format!("/api/v1/rooms/{room}/webhooks/{hook}"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("webhook_revoked"))
    );
    let (_, detail) = alice.get(&format!("/api/v1/rooms/{room}")).await;
    assert!(
        !detail["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user_id"] == bot),
        "{detail}"
    );
    let (_, listed) = alice.get(&format!("/api/v1/rooms/{room}/webhooks")).await;
    assert!(listed[0]["revoked_at"].is_i64(), "{listed}");
    assert_eq!(messages(&bob, room).await.len(), before);

    // Made and revoked on the record.
    let (status, audit) = admin.get("/api/v1/admin/audit?limit=100").await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["subject"] == format!("room:{room}"))
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"webhook.create") && actions.contains(&"webhook.revoke"),
        "{actions:?}"
    );

    // No hooks in direct rooms.
    let direct = alice.direct(bob.id).await;
    let (status, body) = alice
        .post(
            &format!("/api/v1/rooms/{direct}/webhooks"),
            json!({ "name": "x" }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("direct_room"))
    );
}

#[tokio::test]
async fn a_hook_is_rate_limited_on_its_own() {
    let server = TestServer::start_with(|c| {
        c.webhooks.messages_per_minute = 1;
        c.webhooks.burst = 2;
    })
    .await;
    let alice = server.user("alice").await;
    let (room, _, _, path) = room_with_hook(&alice, "noisy").await;
    for n in 0..2 {
        let (status, _) = post_hook(
            &server.base,
            &path,
            "application/json",
            json!({ "text": format!("n{n}") }).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .json(&json!({ "text": "one too many" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(messages(&alice, room).await.len(), 2);
    // People in the room are not limited by the hook's budget.
    let (status, _) = alice.send_http(room, "a1", "still here").await;
    assert_eq!(status, StatusCode::CREATED);
}

/// A card number posted through a webhook is refused by the DLP plugin like any other, with
/// the plugin's reason, and nothing is stored; the hook is listed and revoked: on both
/// stores.
#[tokio::test]
async fn dlp_blocks_a_card_number_posted_through_a_webhook() {
    for backend in BACKENDS {
        let (server, _guard) = super::start_with_card_dlp(backend).await;
        let alice = server.user("alice").await;
        let (room, hook, _, path) = room_with_hook(&alice, "pay").await;
        let (status, text) = post_hook(
            &server.base,
            &path,
            "application/json",
            r#"{"text":"customer card 4111 1111 1111 1111, please charge"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{backend:?}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(error["code"], "message_rejected", "{backend:?}: {text}");
        assert_eq!(error["rejection"]["plugin"], "dlp", "{backend:?}: {text}");
        assert_eq!(
            error["rejection"]["code"], "dlp_blocked",
            "{backend:?}: {text}"
        );
        assert!(!error["message"].as_str().unwrap().is_empty());
        let (status, text) = post_hook(
            &server.base,
            &path,
            "application/json",
            r#"{"text":"nothing sensitive"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: {text}");
        let stored: Vec<String> = messages(&alice, room)
            .await
            .iter()
            .map(|e| e["body"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(stored, vec!["nothing sensitive".to_string()], "{backend:?}");

        // Listed in the room and server-wide, then revoked.
        let (_, listed) = alice.get(&format!("/api/v1/rooms/{room}/webhooks")).await;
        assert_eq!(
            (listed[0]["id"].as_i64(), listed[0]["revoked_at"].is_null()),
            (Some(hook), true),
            "{backend:?}: {listed}"
        );
        let (_, all) = server.admin().await.get("/api/v1/admin/webhooks").await;
        assert!(
            all.as_array().unwrap().iter().any(|h| h["id"] == hook),
            "{backend:?}: {all}"
        );
        revoke_and_see_it_gone(&alice, &server.base, room, hook, &path).await;
        let (_, listed) = alice.get(&format!("/api/v1/rooms/{room}/webhooks")).await;
        assert!(listed[0]["revoked_at"].is_i64(), "{backend:?}: {listed}");
    }
}

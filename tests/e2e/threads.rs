//! Threads through the real server, on SQLite and PostgreSQL: a reply is a message of the
//! room's log that names its root, delivered live and in history like any other; the root
//! carries its reply count; the thread view pages on its own and keeps its own read cursor;
//! bad roots (another room's, a reply, a deleted or unknown message) get a clear error and
//! store nothing; and replies pass the plugin chain.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::hardening::{BACKENDS, start_on};
use crate::support::Client;

async fn reply(
    client: &Client,
    room: i64,
    root: i64,
    cmid: &str,
    body: &str,
    also_to_room: bool,
) -> (StatusCode, Value) {
    client
        .post(
            &format!("/api/v1/rooms/{room}/messages"),
            json!({ "client_msg_id": cmid, "body": body, "thread_root": root,
                    "also_to_room": also_to_room }),
        )
        .await
}

fn bodies(events: &Value) -> Vec<&str> {
    events
        .as_array()
        .expect("an array")
        .iter()
        .map(|e| e["body"].as_str().unwrap_or("<deleted>"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_form_a_thread_seen_live_in_history_and_in_the_thread_view() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| c.limits.message_burst = 1000).await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let room = alice.group("team", &[bob.id]).await;
        let (_, root) = alice.send_http(room, "root", "Release on Friday?").await;
        let root = root["id"].as_i64().unwrap();
        let mut bob_ws = bob.ws(&server).await;

        // A reply is acked like a message and arrives live with its root.
        let (s, ack) = reply(&bob, room, root, "r1", "Friday works for me", false).await;
        assert_eq!(s, StatusCode::CREATED, "{backend:?}: {ack}");
        let live = bob_ws.recv_type("event").await;
        assert_eq!(live["body"], "Friday works for me", "{live}");
        assert_eq!(live["thread_root"], root);
        assert_eq!(live.get("also_to_room"), None);
        // Over the socket too, with "also send to room".
        bob_ws
            .send(json!({ "type": "send", "room": room, "client_msg_id": "r2",
                          "body": "and I told the customer", "thread_root": root,
                          "also_to_room": true }))
            .await;
        let ack = bob_ws.recv_type("ack").await;
        assert_eq!(ack["client_msg_id"], "r2", "{ack}");
        for i in 3..=7 {
            reply(
                &alice,
                room,
                root,
                &format!("r{i}"),
                &format!("note {i}"),
                false,
            )
            .await;
        }

        // The room's unread counts what the timeline shows: replies that stay in their
        // thread count in the thread only.
        for (client, expected) in [(&alice, 1), (&bob, 1)] {
            let (_, rooms) = client.get("/api/v1/rooms").await;
            let listed = rooms
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["id"] == room)
                .unwrap();
            assert_eq!(listed["unread"], expected, "{backend:?}: {listed}");
        }

        // History has every event; the root carries its count.
        let history = alice.history(room, "").await;
        let root_event = history.iter().find(|e| e["id"] == root).unwrap();
        assert_eq!(
            root_event["thread"]["replies"], 7,
            "{backend:?}: {root_event}"
        );
        let also = history.iter().find(|e| e["client_msg_id"] == "r2").unwrap();
        assert_eq!(also["also_to_room"], true);
        assert_eq!(also["thread_root"], root);

        // The thread view pages on its own, oldest first.
        let (s, page) = alice
            .get(&format!("/api/v1/rooms/{room}/threads/{root}?limit=3"))
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["root"]["body"], "Release on Friday?");
        assert_eq!(page["root"]["thread"]["replies"], 7);
        assert_eq!(bodies(&page["replies"]), ["note 5", "note 6", "note 7"]);
        assert_eq!(page["has_more"], true);
        let oldest = page["replies"][0]["seq"].as_i64().unwrap();
        let (_, older) = alice
            .get(&format!(
                "/api/v1/rooms/{room}/threads/{root}?limit=10&before={oldest}"
            ))
            .await;
        assert_eq!(
            bodies(&older["replies"]),
            [
                "Friday works for me",
                "and I told the customer",
                "note 3",
                "note 4"
            ]
        );
        assert_eq!(older["has_more"], false);

        // Unread: replies from others after the thread cursor. Alice sent five of seven.
        assert_eq!(page["unread"], 2, "{backend:?}: {page}");
        assert_eq!(page["read_seq"], 0);
        let last = page["replies"][2]["seq"].as_i64().unwrap();
        let (s, read) = alice
            .post(
                &format!("/api/v1/rooms/{room}/threads/{root}/read"),
                json!({ "seq": last }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{read}");
        assert_eq!(read["seq"], last);
        // Never backwards, never past the last reply.
        let (_, back) = alice
            .post(
                &format!("/api/v1/rooms/{room}/threads/{root}/read"),
                json!({ "seq": 1 }),
            )
            .await;
        assert_eq!(back["seq"], last);
        let (_, page) = alice
            .get(&format!("/api/v1/rooms/{room}/threads/{root}"))
            .await;
        assert_eq!(page["unread"], 0);
        assert_eq!(page["read_seq"], last);
        let (_, bob_view) = bob
            .get(&format!("/api/v1/rooms/{room}/threads/{root}"))
            .await;
        assert_eq!(bob_view["unread"], 5, "bob has not read alice's five notes");
        let (_, far) = bob
            .post(
                &format!("/api/v1/rooms/{room}/threads/{root}/read"),
                json!({ "seq": 1_000_000 }),
            )
            .await;
        assert_eq!(far["seq"], last, "clamped to the thread's last reply");

        // A deleted reply leaves the count; an edit stays in the thread.
        let note3 = older["replies"][2]["id"].as_i64().unwrap();
        let (s, _) = alice
            .delete(&format!("/api/v1/rooms/{room}/messages/{note3}"))
            .await;
        assert!(s.is_success());
        let (_, page) = alice
            .get(&format!("/api/v1/rooms/{room}/threads/{root}?limit=100"))
            .await;
        assert_eq!(page["root"]["thread"]["replies"], 6);
        assert_eq!(
            page["replies"].as_array().unwrap().len(),
            7,
            "shown as deleted"
        );

        // Resume after a reconnect carries the thread fields too.
        let mut resumed = bob.ws(&server).await;
        resumed
            .send(json!({ "type": "sync", "rooms": { room.to_string(): 0 } }))
            .await;
        let mut replies_seen = 0;
        loop {
            let frame = resumed.recv().await;
            if frame["type"] == "synced" {
                break;
            }
            if frame["type"] == "event" && frame["thread_root"] == root {
                replies_seen += 1;
            }
        }
        assert_eq!(replies_seen, 7, "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_thread_roots_get_a_clear_error_and_store_nothing() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let carol = admin.create_user("carol").await;
        let room = alice.group("team", &[]).await;
        let other = carol.group("other", &[]).await;
        let (_, root) = alice.send_http(room, "root", "root").await;
        let root = root["id"].as_i64().unwrap();
        let (_, elsewhere) = carol.send_http(other, "x", "elsewhere").await;
        let elsewhere = elsewhere["id"].as_i64().unwrap();
        let (_, first) = reply(&alice, room, root, "r1", "first reply", false).await;
        let first = first["id"].as_i64().unwrap();
        let (_, gone) = alice.send_http(room, "gone", "to be deleted").await;
        let gone = gone["id"].as_i64().unwrap();
        alice
            .delete(&format!("/api/v1/rooms/{room}/messages/{gone}"))
            .await;
        let before = alice.history(room, "").await.len();

        for (root, status, code) in [
            (elsewhere, StatusCode::NOT_FOUND, "message_not_found"),
            (first, StatusCode::CONFLICT, "nested_thread"),
            (gone, StatusCode::CONFLICT, "message_deleted"),
            (999_999, StatusCode::NOT_FOUND, "message_not_found"),
        ] {
            let (s, body) = reply(&alice, room, root, "bad", "bad reply", false).await;
            assert_eq!(
                (s, body["code"].as_str()),
                (status, Some(code)),
                "{backend:?}: {body}"
            );
            assert!(!body["message"].as_str().unwrap_or_default().is_empty());
        }
        // `also_to_room` alone is not a reply.
        let (s, body) = alice
            .post(
                &format!("/api/v1/rooms/{room}/messages"),
                json!({ "client_msg_id": "bad", "body": "x", "also_to_room": true }),
            )
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request"))
        );
        // The thread view of a reply, another room's message, or as a non-member.
        let (s, body) = alice
            .get(&format!("/api/v1/rooms/{room}/threads/{first}"))
            .await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::CONFLICT, Some("nested_thread"))
        );
        let (s, _) = alice
            .get(&format!("/api/v1/rooms/{room}/threads/{elsewhere}"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = carol
            .get(&format!("/api/v1/rooms/{room}/threads/{root}"))
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "not a member");
        let (s, _) = carol
            .post(
                &format!("/api/v1/rooms/{room}/threads/{root}/read"),
                json!({ "seq": 1 }),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        // Nothing was stored, no seq was taken.
        assert_eq!(alice.history(room, "").await.len(), before, "{backend:?}");
        let (s, ok) = alice.send_http(room, "after", "still fine").await;
        assert_eq!(s, StatusCode::CREATED, "{ok}");
        let seqs: Vec<i64> = alice
            .history(room, "")
            .await
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "gap-free"
        );
    }
}

/// A DLP filter sees thread replies like any message: the card number in a reply is
/// redacted before it is stored, and the reply stays in its thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_pass_the_dlp_plugin_like_any_message() {
    use crate::plugins_runtime::harness::{Spec, server_with};
    let spec = Spec::new("dlp", "dlp")
        .caps(&["log", "config", "kv"])
        .settings("\"action.card\" = \"redact\"\n");
    let (server, _dir) = server_with(vec![spec]).await;
    let alice = server.user("alice").await;
    let room = alice.group("payments", &[]).await;
    let (_, root) = alice
        .send_http(room, "root", "refund for the customer")
        .await;
    let root = root["id"].as_i64().unwrap();
    let (s, ack) = reply(
        &alice,
        room,
        root,
        "r1",
        "card 4111 1111 1111 1111 please",
        false,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["modified"], true, "{ack}");
    let (_, page) = alice
        .get(&format!("/api/v1/rooms/{room}/threads/{root}"))
        .await;
    let stored = page["replies"][0]["body"].as_str().unwrap();
    assert!(!stored.contains("4111 1111 1111 1111"), "{stored}");
    assert_eq!(page["replies"][0]["thread_root"], root);
    assert_eq!(page["root"]["thread"]["replies"], 1);
}

//! Mentions through the real server, on SQLite and PostgreSQL: `@name` and `@room` read by
//! the server from the stored text, carried by the event, counted per room for the person
//! mentioned and listed for them; a name of someone outside the room is answered with a
//! hint; floods and `@room` in large rooms meet a clear limit.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::hardening::{BACKENDS, start_on};
use crate::support::Client;

/// The caller's mention count in `room` from the room list.
async fn mention_count(client: &Client, room: i64) -> i64 {
    let (status, rooms) = client.get("/api/v1/rooms").await;
    assert_eq!(status, StatusCode::OK, "{rooms}");
    rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == room)
        .map(|r| r["mentions"].as_i64().unwrap())
        .unwrap()
}

/// The bodies of the caller's mentions list, newest first.
async fn mentioned_in(client: &Client) -> Vec<String> {
    let (status, page) = client.get("/api/v1/mentions").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

fn ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .map(|a| a.iter().map(|v| v.as_i64().unwrap()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_are_delivered_counted_listed_and_follow_edits() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let carol = admin.create_user("carol").await;
        let dave = admin.create_user("dave").await;
        let room = alice.group("team", &[bob.id, carol.id]).await;
        let mut bob_ws = bob.ws(&server).await;

        let text = "hi @Bob and @carol. cc @dave, jane@example.com, @nobody and `@bob`";
        let (status, ack) = alice.send_http(room, "m1", text).await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?}: {ack}");
        assert_eq!(ack["mentions_not_in_room"], json!(["dave"]), "{ack}");
        let event = bob_ws.recv_type("event").await;
        assert_eq!(ids(&event["mentions"]), [bob.id, carol.id], "{event}");
        assert_eq!(event.get("mentions_room"), None);

        assert_eq!(mention_count(&bob, room).await, 1);
        assert_eq!(mention_count(&carol, room).await, 1);
        assert_eq!(mention_count(&alice, room).await, 0, "one's own message");
        assert_eq!(mentioned_in(&dave).await, Vec::<String>::new());

        // @room mentions everyone else; a reply in a thread counts too.
        let (_, ack) = bob.send_http(room, "m2", "@room standup in 5").await;
        assert!(ack["mentions_not_in_room"].is_null(), "{ack}");
        let root = ack["id"].as_i64().unwrap();
        assert_eq!(mention_count(&alice, room).await, 1);
        assert_eq!(mention_count(&carol, room).await, 2);
        assert_eq!(mention_count(&bob, room).await, 1, "not by one's own @room");
        let (s, _) = alice
            .post(
                &format!("/api/v1/rooms/{room}/messages"),
                json!({ "client_msg_id": "m3", "body": "@carol can you?", "thread_root": root }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(mention_count(&carol, room).await, 3);
        assert_eq!(
            mentioned_in(&carol).await,
            ["@carol can you?", "@room standup in 5", text]
        );
        // Paging.
        let (_, first) = carol.get("/api/v1/mentions?limit=2").await;
        assert_eq!(first["messages"].as_array().unwrap().len(), 2);
        let cursor = first["next_cursor"].as_i64().expect("a next page");
        let (_, rest) = carol
            .get(&format!("/api/v1/mentions?limit=2&cursor={cursor}"))
            .await;
        assert_eq!(rest["messages"][0]["body"], text);
        assert_eq!(rest.get("next_cursor"), None);

        // Reading the room clears its count.
        let last = alice.history(room, "").await.last().unwrap()["seq"].clone();
        carol
            .post(
                &format!("/api/v1/rooms/{room}/read"),
                json!({ "seq": last }),
            )
            .await;
        assert_eq!(mention_count(&carol, room).await, 0);

        // An edit replaces the mentions; a delete removes them.
        let m1 = ack_id(&alice, room, "m1").await;
        let (s, edited) = alice
            .patch(
                &format!("/api/v1/rooms/{room}/messages/{m1}"),
                json!({ "body": "hi @bob only, and @dave" }),
            )
            .await;
        assert!(s.is_success(), "{edited}");
        assert_eq!(edited["mentions_not_in_room"], json!(["dave"]));
        assert_eq!(
            mentioned_in(&carol).await,
            ["@carol can you?", "@room standup in 5"]
        );
        let history = alice.history(room, "").await;
        let m1_now = history.iter().find(|e| e["id"] == m1).unwrap();
        assert_eq!(ids(&m1_now["mentions"]), [bob.id]);
        assert_eq!(mentioned_in(&bob).await, ["hi @bob only, and @dave"]);
        alice
            .delete(&format!("/api/v1/rooms/{room}/messages/{m1}"))
            .await;
        assert_eq!(mentioned_in(&bob).await, Vec::<String>::new());

        // Someone who leaves no longer finds the room's mentions.
        carol
            .delete(&format!("/api/v1/rooms/{room}/members/{}", carol.id))
            .await;
        assert_eq!(mentioned_in(&carol).await, Vec::<String>::new());
    }
}

async fn ack_id(client: &Client, room: i64, client_msg_id: &str) -> i64 {
    client
        .history(room, "")
        .await
        .iter()
        .find(|e| e["client_msg_id"] == client_msg_id)
        .unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mention_floods_and_room_mentions_in_large_rooms_meet_a_limit() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| {
            c.limits.mentions_per_message_max = 5;
            c.limits.room_mention_members_max = 2;
        })
        .await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let carol = admin.create_user("carol").await;
        let room = alice.group("big", &[bob.id, carol.id]).await;
        let before = alice.history(room, "").await.len();

        let flood: String = (0..6).map(|i| format!("@user{i} ")).collect();
        let (s, body) = alice.send_http(room, "f1", &flood).await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("too_many_mentions")),
            "{backend:?}: {body}"
        );
        // The same name many times is one mention.
        let repeated = "@bob ".repeat(500);
        let (s, ack) = alice.send_http(room, "f2", &repeated).await;
        assert_eq!(s, StatusCode::CREATED, "{ack}");

        // @room in a room over the limit: owners and admins only.
        let (s, body) = bob.send_http(room, "r1", "@room look").await;
        assert_eq!(
            (s, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("room_mention_not_allowed")),
            "{body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
        let (s, _) = alice.send_http(room, "r2", "@room look").await;
        assert_eq!(s, StatusCode::CREATED);
        // Nothing of the refused ones was stored.
        assert_eq!(alice.history(room, "").await.len(), before + 2);
        assert_eq!(mention_count(&carol, room).await, 1);
    }
}

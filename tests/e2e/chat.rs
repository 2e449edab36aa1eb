//! Two or more users chatting: direct and group rooms, live delivery, idempotent retry,
//! edit and delete, typing and read state, membership and access control.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn two_users_chat_in_a_direct_room() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;

    let room = alice.direct(bob.id).await;
    // Exactly one direct room per pair, whoever asks.
    assert_eq!(bob.direct(alice.id).await, room);

    let mut alice_ws = alice.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;

    let ack = alice_ws.send_msg(room, "a-1", "hi bob").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["seq"], 1);
    let event = bob_ws.recv_type("event").await;
    assert_eq!(event["body"], "hi bob");
    assert_eq!(event["sender_id"], alice.id);
    assert_eq!(event["seq"], 1);
    assert_eq!(event["kind"], "message");
    assert_eq!(event["id"], ack["id"]);

    // Alice's own connection gets her message as an event too.
    assert_eq!(alice_ws.recv_type("event").await["seq"], 1);

    // A reply over HTTP reaches the other side live too.
    let (status, ack) = bob.send_http(room, "b-1", "hello alice").await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["seq"], 2);
    let event = alice_ws.recv_type("event").await;
    assert_eq!(
        (event["body"].as_str(), event["seq"].as_i64()),
        (Some("hello alice"), Some(2))
    );

    let history = alice.history(room, "").await;
    let bodies: Vec<_> = history
        .iter()
        .map(|e| e["body"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(bodies, ["hi bob", "hello alice"]);

    // Room list: bob has read nothing yet, so one unread (alice's; his own don't count).
    let (_, rooms) = bob.get("/api/v1/rooms").await;
    let listed = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == room)
        .cloned()
        .unwrap();
    assert_eq!(listed["kind"], "direct");
    assert_eq!(listed["unread"], 1);
    assert_eq!(listed["peer"], alice.id);
    let (status, cursor) = bob
        .post(&format!("/api/v1/rooms/{room}/read"), json!({ "seq": 2 }))
        .await;
    assert_eq!((status, cursor["seq"].as_i64()), (StatusCode::OK, Some(2)));
    let (_, rooms) = bob.get("/api/v1/rooms").await;
    let listed = rooms
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == room)
        .cloned()
        .unwrap();
    assert_eq!(
        (listed["unread"].as_i64(), listed["read_seq"].as_i64()),
        (Some(0), Some(2))
    );
    // Alice sees bob's read receipt live.
    let read = alice_ws.recv_type("read").await;
    assert_eq!(
        (read["user"].as_i64(), read["seq"].as_i64()),
        (Some(bob.id), Some(2))
    );
}

#[tokio::test]
async fn group_room_fans_out_to_every_session_of_every_member() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.group("team", &[bob.id, carol.id]).await;

    let mut alice_phone = alice.ws(&server).await;
    let mut alice_laptop = alice.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;
    let mut carol_ws = carol.ws(&server).await;

    let ack = alice_phone.send_msg(room, "m1", "standup in 5").await;
    assert_eq!(ack["seq"], 1, "{ack}");
    for ws in [&mut alice_laptop, &mut bob_ws, &mut carol_ws] {
        let event = ws.recv_type("event").await;
        assert_eq!(
            (event["body"].as_str(), event["seq"].as_i64()),
            (Some("standup in 5"), Some(1))
        );
    }
    // The sending connection gets the event as well as the ack.
    assert_eq!(alice_phone.recv_type("event").await["seq"], 1);

    // Typing reaches the others, not the typing connection itself.
    bob_ws.send(json!({ "type": "typing", "room": room })).await;
    let typing = carol_ws.recv_type("typing").await;
    assert_eq!(
        (typing["user"].as_i64(), typing["active"].as_bool()),
        (Some(bob.id), Some(true))
    );
    assert_eq!(alice_laptop.recv_type("typing").await["user"], bob.id);
    bob_ws.send(json!({ "type": "ping", "req": "p1" })).await;
    let pong = bob_ws.recv().await;
    assert_eq!(
        (pong["type"].as_str(), pong["req"].as_str()),
        (Some("pong"), Some("p1")),
        "no typing echo to self"
    );
}

#[tokio::test]
async fn a_retried_send_returns_the_original_ack_and_stores_once() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("retry", &[bob.id]).await;
    let mut ws = alice.ws(&server).await;

    let first = ws.send_msg(room, "same-id", "once").await;
    let again = ws.send_msg(room, "same-id", "once").await;
    assert_eq!(
        (again["id"].clone(), again["seq"].clone()),
        (first["id"].clone(), first["seq"].clone())
    );
    assert_eq!(again["duplicate"], true);
    assert!(first.get("duplicate").is_none());
    // The same id over HTTP is the same message too.
    let (status, http_again) = alice.send_http(room, "same-id", "once").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(http_again["id"], first["id"]);
    // Reusing the id in another room is a conflict, not a silent duplicate.
    let other = alice.group("other", &[]).await;
    let (status, err) = alice.send_http(other, "same-id", "elsewhere").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("client_msg_id_reused"))
    );

    let history = alice.history(room, "").await;
    assert_eq!(history.len(), 1, "{history:?}");
}

#[tokio::test]
async fn edit_and_delete_are_seen_live_and_in_history() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("edits", &[bob.id]).await;
    let mut bob_ws = bob.ws(&server).await;

    let (_, ack) = alice.send_http(room, "e1", "teh typo").await;
    let msg = ack["id"].as_i64().unwrap();
    bob_ws.recv_type("event").await;

    // Only the author edits.
    let (status, err) = bob
        .patch(
            &format!("/api/v1/rooms/{room}/messages/{msg}"),
            json!({ "body": "hijack" }),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_author"))
    );

    let (status, edit_ack) = alice
        .patch(
            &format!("/api/v1/rooms/{room}/messages/{msg}"),
            json!({ "body": "the typo" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{edit_ack}");
    assert_eq!(
        (edit_ack["id"].as_i64(), edit_ack["seq"].as_i64()),
        (Some(msg), Some(2))
    );
    let edit = bob_ws.recv_type("event").await;
    assert_eq!(
        (
            edit["kind"].as_str(),
            edit["target"].as_i64(),
            edit["body"].as_str()
        ),
        (Some("edit"), Some(msg), Some("the typo"))
    );

    let history = bob.history(room, "").await;
    assert_eq!(history[0]["body"], "the typo");
    assert!(history[0]["edited_at"].is_i64());

    // A plain member cannot delete someone else's message; the author can.
    let (status, _) = bob
        .delete(&format!("/api/v1/rooms/{room}/messages/{msg}"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, del_ack) = alice
        .delete(&format!("/api/v1/rooms/{room}/messages/{msg}"))
        .await;
    assert_eq!((status, del_ack["seq"].as_i64()), (StatusCode::OK, Some(3)));
    let deleted = bob_ws.recv_type("event").await;
    assert_eq!(
        (deleted["kind"].as_str(), deleted["target"].as_i64()),
        (Some("delete"), Some(msg))
    );

    let history = bob.history(room, "").await;
    assert_eq!(history.len(), 3);
    for event in &history {
        assert!(
            event.get("body").is_none(),
            "content gone everywhere: {event}"
        );
    }
    assert_eq!(history[0]["deleted"], true);
    let (status, err) = alice
        .patch(
            &format!("/api/v1/rooms/{room}/messages/{msg}"),
            json!({ "body": "revive" }),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("message_deleted"))
    );

    // Deleted content is gone from the database file itself, not just hidden.
    drop(bob_ws);
    let dir = server.stop().await;
    let raw = std::fs::read(dir.path().join("switchboard.db")).unwrap();
    let wal = std::fs::read(dir.path().join("switchboard.db-wal")).unwrap_or_default();
    for bytes in [raw, wal] {
        assert!(
            !bytes.windows(8).any(|w| w == b"the typo"),
            "edited text left on disk"
        );
    }
}

#[tokio::test]
async fn non_members_can_neither_read_nor_post() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mallory = server.user("mallory").await;
    let room = alice.group("private", &[]).await;
    alice.send_http(room, "s1", "secret plans").await;

    let (status, err) = mallory.get(&format!("/api/v1/rooms/{room}/messages")).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("room_not_found"))
    );
    let (status, _) = mallory.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, err) = mallory.send_http(room, "x", "let me in").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("room_not_found"))
    );
    let (status, _) = mallory
        .post(
            &format!("/api/v1/rooms/{room}/members"),
            json!({ "user": mallory.id }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let mut ws = mallory.ws(&server).await;
    let err = ws.send_msg(room, "x2", "let me in").await;
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str()),
        (Some("error"), Some("room_not_found"))
    );
    // Nor does a sync leak the room's events.
    ws.send(json!({ "type": "sync", "rooms": { room.to_string(): 0 } }))
        .await;
    let err = ws.recv().await;
    assert_eq!(err["code"], "room_not_found", "{err}");
    assert_eq!(ws.recv().await["type"], "synced");

    assert_eq!(alice.history(room, "").await.len(), 1);
}

#[tokio::test]
async fn members_are_added_removed_and_leave() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.group("club", &[bob.id]).await;
    let mut carol_ws = carol.ws(&server).await;

    // A plain member may not add people; the owner may.
    let (status, _) = bob
        .post(
            &format!("/api/v1/rooms/{room}/members"),
            json!({ "user": carol.id }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, joined) = alice
        .post(
            &format!("/api/v1/rooms/{room}/members"),
            json!({ "user": carol.id }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    assert_eq!(joined["kind"], "member_joined");
    let live = carol_ws.recv_type("event").await;
    assert_eq!(
        (live["kind"].as_str(), live["target"].as_i64()),
        (Some("member_joined"), Some(carol.id))
    );
    let (status, _) = alice
        .post(
            &format!("/api/v1/rooms/{room}/members"),
            json!({ "user": carol.id }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Carol now receives messages; after leaving she no longer does.
    alice.send_http(room, "c1", "welcome carol").await;
    assert_eq!(carol_ws.recv_type("event").await["body"], "welcome carol");
    let (status, left) = carol
        .delete(&format!("/api/v1/rooms/{room}/members/{}", carol.id))
        .await;
    assert_eq!(
        (status, left["kind"].as_str()),
        (StatusCode::OK, Some("member_left"))
    );
    assert_eq!(carol_ws.recv_type("event").await["kind"], "member_left");
    alice.send_http(room, "c2", "she is gone").await;
    // Absence, proven by a sentinel: a message committed after it, in a room carol is in,
    // is the next event she gets (one writer publishes in commit order).
    let direct = alice.direct(carol.id).await;
    alice.send_http(direct, "c3", "sentinel").await;
    let next = carol_ws.recv_type("event").await;
    assert_eq!(next["body"], "sentinel", "carol got {next}");
    let (status, _) = carol.get(&format!("/api/v1/rooms/{room}/messages")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The owner removes bob; bob cannot remove the owner.
    let (status, _) = bob
        .delete(&format!("/api/v1/rooms/{room}/members/{}", alice.id))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = alice
        .delete(&format!("/api/v1/rooms/{room}/members/{}", bob.id))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, detail) = alice.get(&format!("/api/v1/rooms/{room}")).await;
    let members: Vec<_> = detail["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_i64().unwrap())
        .collect();
    assert_eq!(members, [alice.id]);
    // Seq kept counting every event: 2 joins/leaves + 2 messages + 1 removal = 5.
    let (_, detail) = alice.get(&format!("/api/v1/rooms/{room}")).await;
    assert_eq!(detail["last_seq"], 5);
}

/// With a `message-pre-send` plugin in the path, retries are looked up before the plugins
/// run, many senders' lookups in one query (`router/retries.rs`): each concurrent retry is
/// answered with its own original and the plugin runs once per message, on both stores,
/// before and after SQLite's filter of stored keys can answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_a_plugin_in_the_path_are_answered_from_the_store() {
    retries_with_a_plugin(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_with_a_plugin_in_the_path_on_postgres() {
    retries_with_a_plugin(true).await;
}

async fn retries_with_a_plugin(postgres: bool) {
    use crate::plugins_runtime::harness::{Spec, server_tweaked};
    use futures_util::future::join_all;

    const SENDS: usize = 30;
    let db = if postgres {
        Some(crate::cluster::PgDb::create().await)
    } else {
        None
    };
    let url = db.as_ref().map(|db| db.url.clone());
    let guard = Spec::new("guard", "keyword-guard")
        .caps(&["config"])
        .settings("\"block.forbidden\" = \"no\"\n");
    let (server, _plugins) = server_tweaked(vec![guard], move |c| {
        c.limits.messages_per_second = 10_000;
        c.limits.message_burst = 10_000;
        if let Some(url) = url {
            c.database_url = Some(switchboard::config::Secret(url));
        }
    })
    .await;
    let admin = server.admin().await;
    let calls = || async {
        let (status, view) = admin.get("/api/v1/admin/plugins/guard").await;
        assert_eq!(status, StatusCode::OK, "{view}");
        view["status"]["counters"]["calls"].as_u64().expect("calls")
    };
    let alice = server.user("alice").await;
    let room = alice.group("retries", &[]).await;
    let before = calls().await;

    // Two rounds: on SQLite the first question starts filling the store's filter of stored
    // keys (`store::sqlite_sent_keys`), so the first round's sends are looked up in the
    // database and, that file being small, the second round's new sends are known new from
    // the filter; their retries must be found all the same.
    for (round, prefix) in ["m", "n"].into_iter().enumerate() {
        let sent_before = (round * SENDS) as u64;
        let send = |i: usize| {
            let alice = alice.clone();
            async move {
                alice
                    .send_http(room, &format!("{prefix}{i}"), &format!("text {i}"))
                    .await
            }
        };
        let firsts = join_all((0..SENDS).map(send)).await;
        assert_eq!(
            calls().await - before - sent_before,
            SENDS as u64,
            "one call per new message (round {round})"
        );
        // The retries at once, in the opposite order, so they share lookups.
        let retries = join_all((0..SENDS).rev().map(send)).await;
        for (i, (status, again)) in retries.iter().rev().enumerate() {
            let (first_status, first) = &firsts[i];
            assert_eq!(*first_status, StatusCode::CREATED, "{first}");
            assert_eq!(*status, StatusCode::OK, "{again}");
            assert_eq!(again["duplicate"], true, "{again}");
            assert_eq!((&again["id"], &again["seq"]), (&first["id"], &first["seq"]));
        }
        assert_eq!(
            calls().await - before - sent_before,
            SENDS as u64,
            "the plugin did not run for a retry (round {round})"
        );
    }
    assert_eq!(alice.history(room, "?limit=100").await.len(), 2 * SENDS);
}

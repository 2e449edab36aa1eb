//! Presence through the real server: online when a socket opens, away when the client says
//! so or its sockets stay idle, online again on activity, offline once the last socket has
//! been gone for the grace (and not on a quick reconnect), visible only to people who share
//! a room, and hidden on request (kept across a restart). Across nodes: `cluster::two_nodes`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Client, TestServer, Ws};

/// The next `presence` frame about `user`.
async fn presence_of(ws: &mut Ws, user: i64) -> String {
    loop {
        let frame = ws.recv_type("presence").await;
        if frame["user"] == user {
            return frame["status"].as_str().unwrap().to_string();
        }
    }
}

/// `user`'s status in `client`'s `GET /api/v1/presence` (`None`: not listed = offline or not
/// visible).
async fn listed(client: &Client, user: i64) -> Option<String> {
    let (status, list) = client.get("/api/v1/presence").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user"] == user)
        .map(|u| u["status"].as_str().unwrap().to_string())
}

/// Every frame `ws` gets before the event whose body is `sentinel`.
async fn frames_before(ws: &mut Ws, sentinel: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = ws.recv().await;
        if frame["type"] == "event" && frame["body"] == sentinel {
            return frames;
        }
        frames.push(frame);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_sockets_and_activity_and_only_room_peers_see_it() {
    let server = TestServer::start_with(|c| {
        c.presence.enabled = true;
        c.presence.away_after_secs = 1;
        c.presence.offline_grace_ms = 400;
        c.presence.tick_ms = 100;
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let team = alice.group("team", &[bob.id]).await;
    let elsewhere = bob.group("elsewhere", &[carol.id]).await;
    let mut bob_ws = bob.ws(&server).await;
    let mut carol_ws = carol.ws(&server).await;

    // Alice connects: bob (who shares a room) learns it; carol (who does not) never does.
    let mut alice_ws = alice.ws(&server).await;
    assert_eq!(presence_of(&mut bob_ws, alice.id).await, "online");
    assert_eq!(listed(&bob, alice.id).await.as_deref(), Some("online"));
    assert_eq!(listed(&carol, alice.id).await, None);
    bob.send_http(elsewhere, "s1", "sentinel 1").await;
    let before = frames_before(&mut carol_ws, "sentinel 1").await;
    assert!(
        !before
            .iter()
            .any(|f| f["type"] == "presence" && f["user"] == alice.id),
        "carol shares no room with alice: {before:?}"
    );

    // The client says its window is hidden: away; any real frame: online again.
    alice_ws
        .send(json!({ "type": "presence", "status": "away" }))
        .await;
    assert_eq!(presence_of(&mut bob_ws, alice.id).await, "away");
    alice_ws
        .send(json!({ "type": "typing", "room": team, "active": true }))
        .await;
    assert_eq!(presence_of(&mut bob_ws, alice.id).await, "online");
    // Idle for `away_after_secs`: away by itself; a message: online.
    assert_eq!(presence_of(&mut bob_ws, alice.id).await, "away");
    alice_ws.send_msg(team, "m1", "back").await;
    assert_eq!(presence_of(&mut bob_ws, alice.id).await, "online");

    // Hidden: others see offline, the user still sees their own and the flag.
    let (s, own) = alice
        .put_json("/api/v1/me/presence", json!({ "hidden": true }))
        .await;
    assert_eq!(s, StatusCode::OK, "{own}");
    assert_eq!(own["hidden"], true, "{own}");
    assert_ne!(own["status"], "offline", "alice still sees her own: {own}");
    assert_eq!(presence_of(&mut bob_ws, alice.id).await, "offline");
    assert_eq!(listed(&bob, alice.id).await, None);
    let (s, err) = alice
        .put_json("/api/v1/me/presence", json!({ "hidden": "yes" }))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    let (_, me) = alice.get("/api/v1/presence").await;
    assert_eq!(me["me"]["hidden"], true, "{me}");
    let (s, _) = alice
        .put_json("/api/v1/me/presence", json!({ "hidden": false }))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(presence_of(&mut bob_ws, alice.id).await, "offline");

    // A quick reconnect (a page reload) is not a trip offline: bob hears no `offline` before
    // the `away` she says on the new socket (the sentinel).
    drop(alice_ws);
    let mut alice_ws = alice.ws(&server).await;
    alice_ws
        .send(json!({ "type": "presence", "status": "away" }))
        .await;
    loop {
        let status = presence_of(&mut bob_ws, alice.id).await;
        assert_ne!(
            status, "offline",
            "a reconnect within the grace is no trip offline"
        );
        if status == "away" {
            break;
        }
    }
    // Gone for longer than the grace: offline.
    drop(alice_ws);
    while presence_of(&mut bob_ws, alice.id).await != "offline" {}
    assert_eq!(listed(&bob, alice.id).await, None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hiding_presence_outlives_a_restart_and_presence_can_be_turned_off() {
    let server = TestServer::start_with(|c| c.presence.enabled = true).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    alice.group("team", &[bob.id]).await;
    let (s, _) = alice
        .put_json("/api/v1/me/presence", json!({ "hidden": true }))
        .await;
    assert_eq!(s, StatusCode::OK);
    let server = server.restart(|c| c.presence.enabled = true).await;
    let alice = server.login("alice", crate::support::PASSWORD).await;
    let bob = server.login("bob", crate::support::PASSWORD).await;
    let _alice_ws = alice.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;
    // Bob's own status is the sentinel: alice, hidden since before the restart, is not
    // announced before it nor listed.
    let own = bob_ws.recv_type("presence").await;
    assert_eq!(own["user"], bob.id, "{own}");
    assert_eq!(listed(&bob, alice.id).await, None);
    let (_, me) = alice.get("/api/v1/presence").await;
    assert_eq!(
        (me["me"]["hidden"].as_bool(), me["me"]["status"].as_str()),
        (Some(true), Some("online")),
        "{me}"
    );

    // Turned off by the operator: nobody is listed, the list says so.
    let server = server.restart(|c| c.presence.enabled = false).await;
    let bob = server.login("bob", crate::support::PASSWORD).await;
    let _bob_ws = bob.ws(&server).await;
    let (_, list) = bob.get("/api/v1/presence").await;
    assert_eq!(
        (
            list["enabled"].as_bool(),
            list["users"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0)),
        "{list}"
    );
    server.stop().await;
}

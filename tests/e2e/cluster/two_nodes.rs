//! Two nodes, one PostgreSQL, one NATS: live chat across nodes, a node killed under traffic,
//! and a NATS outage with recovery.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sqlx::{Connection as _, Row as _};
use tokio_tungstenite::tungstenite::Message;

use super::{
    Nats, NodeConfig, PgDb, assert_one_to_n, full_history, message_ids_once, on, system_nats_url,
    two_nodes,
};
use crate::support::Ws;

/// The next frame of `kind` matching `want`, within `wait`; `None` on timeout.
async fn next_matching(
    ws: &mut Ws,
    kind: &str,
    wait: Duration,
    want: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = ws.try_recv(left).await?;
        if frame["type"] == kind && want(&frame) {
            return Some(frame);
        }
    }
}

/// Like [`next_matching`] for events, but records the seq of every event read on the way.
async fn next_event_recording(
    ws: &mut Ws,
    wait: Duration,
    want: impl Fn(&Value) -> bool,
    seen: &mut Vec<i64>,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = ws.try_recv(left).await?;
        if frame["type"] == "event" {
            seen.push(frame["seq"].as_i64().expect("seq"));
            if want(&frame) {
                return Some(frame);
            }
        }
    }
}

async fn expect_event_with_body(ws: &mut Ws, body: &str) -> Value {
    next_matching(ws, "event", Duration::from_secs(10), |f| f["body"] == body)
        .await
        .unwrap_or_else(|| panic!("event {body:?} not delivered within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_chat_live_with_typing_and_read_receipts() {
    let db = PgDb::create().await;
    let config = NodeConfig::new(&db, system_nats_url());
    let (a, b) = two_nodes(&config).await;
    let alice = a.user("alice").await;
    let bob = b.user("bob").await; // created through the other node: shared store
    let room = alice.group("across", &[bob.id]).await;
    let mut alice_ws = a.ws(&alice).await;
    let mut bob_ws = b.ws(&bob).await;

    // A → B
    let ack = alice_ws.send_msg(room, "a1", "hello from A").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = expect_event_with_body(&mut bob_ws, "hello from A").await;
    assert_eq!(seen["seq"], ack["seq"]);
    assert_eq!(seen["sender_id"], alice.id);

    // B → A
    let ack = bob_ws.send_msg(room, "b1", "hello from B").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seen = expect_event_with_body(&mut alice_ws, "hello from B").await;
    assert_eq!(seen["seq"], ack["seq"]);

    // Typing, B → A.
    bob_ws
        .send(json!({ "type": "typing", "room": room, "active": true }))
        .await;
    let typing = next_matching(&mut alice_ws, "typing", Duration::from_secs(10), |f| {
        f["user"] == bob.id
    })
    .await
    .expect("typing crosses nodes");
    assert_eq!(typing["room"], room);
    assert_eq!(typing["active"], true);

    // Read receipt, A → B.
    let last_seq = ack["seq"].as_i64().unwrap();
    alice_ws
        .send(json!({ "type": "read", "room": room, "seq": last_seq }))
        .await;
    let read = next_matching(&mut bob_ws, "read", Duration::from_secs(10), |f| {
        f["user"] == alice.id
    })
    .await
    .expect("read receipt crosses nodes");
    assert_eq!(read["seq"], last_seq);

    // Nothing arrives twice on either side: everything before a sentinel sent now is read,
    // and none of it is a repeat (a room's events reach a session in seq order).
    let sentinel = alice_ws.send_msg(room, "sentinel", "sentinel").await;
    assert_eq!(sentinel["type"], "ack", "{sentinel}");
    for ws in [&mut alice_ws, &mut bob_ws] {
        loop {
            let frame = ws.recv_type("event").await;
            assert!(
                frame["client_msg_id"] != "a1" && frame["client_msg_id"] != "b1",
                "delivered twice: {frame}"
            );
            if frame["body"] == "sentinel" {
                break;
            }
        }
    }

    // Each message is stored once, and both nodes serve the same history.
    let from_a = full_history(&alice, room).await;
    let from_b = full_history(&bob, room).await;
    assert_eq!(from_a, from_b);
    let ids = message_ids_once(&from_a);
    assert_eq!(
        ids,
        BTreeSet::from(["a1", "b1", "sentinel"].map(String::from))
    );
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let stored: i64 =
        sqlx::query("SELECT COUNT(*) FROM events WHERE room_id = $1 AND kind = 'message'")
            .bind(room)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
    assert_eq!(stored, 3);
    let _ = conn.close().await;
}

/// Send messages over a raw WebSocket until the connection breaks; returns `(cmid, seq)` of
/// each ack and the `client_msg_id` that was in flight when it broke, if any.
async fn send_until_broken(
    mut ws: Ws,
    room: i64,
    acked: Arc<AtomicUsize>,
) -> (Vec<(String, i64)>, Option<String>) {
    let mut acks = Vec::new();
    for i in 0..10_000 {
        let cmid = format!("k{i}");
        let frame = json!({ "type": "send", "room": room, "client_msg_id": cmid, "body": format!("kill test {i}") });
        if ws
            .stream
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_err()
        {
            return (acks, Some(cmid));
        }
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), ws.stream.next()).await;
            match next {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    if frame["type"] == "ack" && frame["client_msg_id"] == cmid.as_str() {
                        acks.push((cmid.clone(), frame["seq"].as_i64().unwrap()));
                        acked.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    assert_ne!(frame["type"], "error", "{frame}");
                }
                Ok(Some(Ok(_))) => {}
                // Closed, reset, or silent for 10 s: the node is gone.
                _ => return (acks, Some(cmid)),
            }
        }
    }
    (acks, None)
}

/// Read events until the connection breaks; returns their seqs.
async fn receive_until_broken(mut ws: Ws) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.stream.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "event" {
                    seqs.push(frame["seq"].as_i64().unwrap());
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => return seqs,
        }
    }
}

/// Resume on `ws` from `from` (a `sync`), then read live events until `last` arrived.
async fn resume_until(ws: &mut Ws, room: i64, from: i64, last: i64) -> Vec<i64> {
    ws.send(json!({ "type": "sync", "req": "r", "rooms": { room.to_string(): from } }))
        .await;
    let mut seqs = Vec::new();
    let mut synced = false;
    while !synced || seqs.last().copied().unwrap_or(from) < last {
        let frame = ws
            .try_recv(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("stuck after {seqs:?} (synced {synced}), want up to {last}"));
        match frame["type"].as_str() {
            Some("event") => seqs.push(frame["seq"].as_i64().unwrap()),
            Some("synced") => synced = true,
            _ => {}
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_under_traffic_loses_nothing_and_clients_resume_on_the_other() {
    let db = PgDb::create().await;
    let config = NodeConfig::new(&db, system_nats_url());
    let (mut a, b) = two_nodes(&config).await;
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let carol = b.user("carol").await;
    let room = alice.group("doomed", &[bob.id, carol.id]).await;

    // Bob listens on A; Alice sends on A; Carol keeps sending through B the whole time.
    let bob_task = tokio::spawn(receive_until_broken(a.ws(&bob).await));
    let acked = Arc::new(AtomicUsize::new(0));
    let alice_task = tokio::spawn(send_until_broken(a.ws(&alice).await, room, acked.clone()));
    let carol_b = carol.clone();
    let carol_task = tokio::spawn(async move {
        let mut acks = Vec::new();
        for i in 0..60 {
            let cmid = format!("c{i}");
            let (status, body) = carol_b.send_http(room, &cmid, &format!("carol {i}")).await;
            assert!(status.is_success(), "{status} {body}");
            acks.push((cmid, body["seq"].as_i64().unwrap()));
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        acks
    });

    // Kill A mid-stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.load(Ordering::SeqCst) < 20 {
        assert!(tokio::time::Instant::now() < deadline, "no traffic on A");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.kill9();

    let (alice_acks, in_flight) = tokio::time::timeout(Duration::from_secs(30), alice_task)
        .await
        .expect("alice notices the dead node")
        .unwrap();
    let bob_seen = tokio::time::timeout(Duration::from_secs(40), bob_task)
        .await
        .expect("bob notices the dead node")
        .unwrap();
    let carol_acks = tokio::time::timeout(Duration::from_secs(60), carol_task)
        .await
        .expect("carol finishes")
        .unwrap();
    assert!(alice_acks.len() >= 20);

    // Alice reconnects to B (same token: shared secret and sessions) and retries what was
    // in flight with the same client_msg_id: stored at most once either way.
    let mut alice_ws = b.ws(&alice).await;
    let mut retried = Vec::new();
    if let Some(cmid) = in_flight {
        let ack = alice_ws.send_msg(room, &cmid, "retry").await;
        assert_eq!(ack["type"], "ack", "{ack}");
        retried.push((cmid, ack["seq"].as_i64().unwrap()));
    }
    drop(alice_ws);

    let history = full_history(&on(&b, &bob), room).await;
    let seqs: Vec<i64> = history.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_one_to_n(&seqs, "room log after the kill");
    let last = *seqs.last().unwrap();
    let stored = message_ids_once(&history);
    for (cmid, seq) in alice_acks.iter().chain(&carol_acks).chain(&retried) {
        assert!(stored.contains(cmid), "acknowledged {cmid} lost");
        let event = history
            .iter()
            .find(|e| e["client_msg_id"] == cmid.as_str())
            .unwrap();
        assert_eq!(event["seq"], *seq, "{cmid} stored under another seq");
    }

    // Bob resumes on B from the last seq he saw: the rest, no gap, no duplicate.
    let mut bob_ws = b.ws(&bob).await;
    let from = bob_seen.last().copied().unwrap_or(0);
    let after = resume_until(&mut bob_ws, room, from, last).await;
    let mut all = bob_seen.clone();
    all.extend(&after);
    assert_one_to_n(&all, "what bob saw before and after the kill");
    assert!(
        next_matching(&mut bob_ws, "event", Duration::from_millis(500), |_| true)
            .await
            .is_none(),
        "nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_degrades_live_delivery_and_recovers_by_itself() {
    let db = PgDb::create().await;
    let mut nats = Nats::start().await;
    let config = NodeConfig::new(&db, nats.url());
    let (a, b) = two_nodes(&config).await;
    for node in [&a, &b] {
        node.wait_ready_state("ready", "connected", Duration::from_secs(15))
            .await;
    }
    let alice = a.user("alice").await;
    let bob = b.user("bob").await;
    let room = alice.group("outage", &[bob.id]).await;
    // Every event seq bob's long-lived socket gets, to check the whole stream at the end.
    let mut live_seqs = Vec::new();
    let mut bob_ws = b.ws(&bob).await;
    alice.send_http(room, "before", "before the outage").await;
    next_event_recording(
        &mut bob_ws,
        Duration::from_secs(10),
        |f| f["client_msg_id"] == "before",
        &mut live_seqs,
    )
    .await
    .expect("live delivery before the outage");

    nats.kill();
    for node in [&a, &b] {
        node.wait_ready_state("degraded", "disconnected", Duration::from_secs(20))
            .await;
        assert!(
            node.log_shows("cluster bus lost NATS", Duration::from_secs(5))
                .await,
            "the log says so too:\n{}",
            node.log_tail()
        );
    }

    // Writes still commit; live delivery across nodes stops…
    let (status, body) = alice.send_http(room, "during", "during the outage").await;
    assert!(status.is_success(), "{status} {body}");
    let during_seq = body["seq"].as_i64().unwrap();
    assert!(
        next_event_recording(
            &mut bob_ws,
            Duration::from_millis(1500),
            |_| true,
            &mut live_seqs
        )
        .await
        .is_none(),
        "no live cross-node delivery without NATS"
    );
    // …but history and resume still have everything.
    let history = full_history(&bob, room).await;
    assert!(history.iter().any(|e| e["client_msg_id"] == "during"));
    let mut resumed = b.ws(&bob).await;
    let seqs = resume_until(&mut resumed, room, during_seq - 1, during_seq).await;
    assert_eq!(seqs, [during_seq]);
    drop(resumed);

    // NATS comes back on the same port: the nodes reconnect on their own.
    nats.restart().await;
    for node in [&a, &b] {
        node.wait_ready_state("ready", "connected", Duration::from_secs(30))
            .await;
    }
    // "connected" is logged at the first connect and again at the reconnect.
    for node in [&a, &b] {
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        assert!(
            log.matches("cluster bus connected to NATS").count() >= 2,
            "node {} logs the recovery",
            node.name
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let body = format!("after the outage {attempt}");
        alice
            .send_http(room, &format!("after{attempt}"), &body)
            .await;
        if next_event_recording(
            &mut bob_ws,
            Duration::from_secs(1),
            |f| f["body"] == body.as_str(),
            &mut live_seqs,
        )
        .await
        .is_some()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "live delivery did not recover within 30 s"
        );
    }
    let history = full_history(&bob, room).await;
    let seqs: Vec<i64> = history.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_one_to_n(&seqs, "room log");
    // The socket that lived through the outage filled the hole from the store when live
    // events resumed (and ignored whatever NATS replayed): every seq once, in order.
    assert_one_to_n(
        &live_seqs,
        "events on the socket that lived through the outage",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_start_before_nats_and_join_the_bus_when_it_comes_up() {
    let db = PgDb::create().await;
    let mut nats = Nats::not_started();
    let config = NodeConfig::new(&db, nats.url());
    let (a, b) = two_nodes(&config).await;
    for node in [&a, &b] {
        node.wait_ready_state("degraded", "disconnected", Duration::from_secs(10))
            .await;
    }
    nats.restart().await;
    for node in [&a, &b] {
        node.wait_ready_state("ready", "connected", Duration::from_secs(30))
            .await;
    }
    let alice = a.user("alice").await;
    let bob = b.user("bob").await;
    let room = alice.group("late bus", &[bob.id]).await;
    let mut bob_ws = b.ws(&bob).await;
    alice.send_http(room, "first", "over the late bus").await;
    expect_event_with_body(&mut bob_ws, "over the late bus").await;
}

/// The next `presence` status of `user` that `ws` gets within 15 s.
async fn next_presence(ws: &mut Ws, user: i64) -> String {
    let frame = next_matching(ws, "presence", Duration::from_secs(15), |f| {
        f["user"] == user
    })
    .await
    .unwrap_or_else(|| panic!("no presence of user {user} within 15 s"));
    frame["status"].as_str().unwrap().to_string()
}

/// Presence crosses nodes through the bus: a user online on one node is online for a room
/// peer on the other; hiding it through either node hides it everywhere; and when the
/// user's node dies, the other node stops vouching for them after three heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_crosses_nodes_and_a_dead_node_takes_its_users_offline() {
    let db = PgDb::create().await;
    let config = NodeConfig::new(&db, system_nats_url());
    let (mut a, b) = two_nodes(&config).await;
    let alice = a.user("alice").await;
    let bob = b.user("bob").await;
    alice.group("across", &[bob.id]).await;
    let mut bob_ws = b.ws(&bob).await;
    let _alice_ws = a.ws(&alice).await;
    assert_eq!(next_presence(&mut bob_ws, alice.id).await, "online");
    let (_, list) = on(&b, &bob).get("/api/v1/presence").await;
    assert!(
        list["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["user"] == alice.id && u["status"] == "online"),
        "{list}"
    );

    // Hidden through node B (alice's sockets are on A): B's sessions see her offline.
    let (status, _) = on(&b, &alice)
        .put_json("/api/v1/me/presence", json!({ "hidden": true }))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(next_presence(&mut bob_ws, alice.id).await, "offline");
    let (status, _) = on(&b, &alice)
        .put_json("/api/v1/me/presence", json!({ "hidden": false }))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(next_presence(&mut bob_ws, alice.id).await, "online");

    // Node A dies without a word: B forgets what A said about alice.
    a.kill9();
    assert_eq!(next_presence(&mut bob_ws, alice.id).await, "offline");
}

/// A leaver leaves everywhere at once: the identity provider deactivates the account through
/// one node, and the user's sockets on both nodes close, their tokens stop working on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scim_deactivation_through_one_node_ends_the_users_sessions_on_every_node() {
    const TOKEN: &str = "scim-token-for-the-cluster-0123456789";
    let db = PgDb::create().await;
    let mut config = NodeConfig::new(&db, system_nats_url());
    config.env = vec![
        ("SWITCHBOARD_IDENTITY__SCIM__ENABLED".into(), "true".into()),
        ("SWITCHBOARD_IDENTITY__SCIM__TOKEN".into(), TOKEN.into()),
    ];
    let (a, b) = two_nodes(&config).await;
    let bob = a.user("bob").await;
    let bob_on_b = b.login("bob", crate::support::PASSWORD).await;
    let mut ws_a = a.ws(&bob).await;
    let mut ws_b = b.ws(&bob_on_b).await;

    let scim = crate::identity::Scim::new(&b.base, TOKEN);
    let (status, _) = scim
        .patch(
            &format!("/Users/{}", bob.id),
            json!([{ "op": "replace", "path": "active", "value": false }]),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let started = std::time::Instant::now();
    assert_eq!(ws_a.expect_close().await.0, 4001, "the other node's socket");
    assert_eq!(ws_b.expect_close().await.0, 4001, "this node's socket");
    assert!(
        // Well inside the 60 s session re-check: the bus carried it.
        started.elapsed() < Duration::from_secs(10),
        "closed in {:?}",
        started.elapsed()
    );
    for client in [on(&a, &bob), on(&b, &bob_on_b)] {
        let (status, _) = client.get("/api/v1/me").await;
        assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    }
}

/// Behind a load balancer the provider's redirect may reach any node: a sign-in started on
/// one node finishes on the other, and the ticket works on either (state, nonce, PKCE
/// verifier and ticket live in the shared database, each used once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_sign_in_started_on_one_node_finishes_on_the_other() {
    use crate::identity::{Browser, CLIENT_SECRET, OpenIdProvider};

    // The address browsers use (a load balancer's); never contacted: the test's browser
    // sends the provider's redirect to the node it chooses.
    const PUBLIC_URL: &str = "http://127.0.0.1:9";
    let provider = OpenIdProvider::start(json!({
        "clients": [{
            "client_id": "switchboard",
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{PUBLIC_URL}/api/v1/auth/oidc/corp/callback")],
        }],
        "accounts": { "sub-dana": { "preferred_username": "dana", "name": "Dana" } },
    }))
    .await;
    let db = PgDb::create().await;
    let mut config = NodeConfig::new(&db, system_nats_url());
    config.toml = Some(format!(
        "[identity]\npublic_url = \"{PUBLIC_URL}\"\n\n[[identity.oidc]]\nid = \"corp\"\n\
         display_name = \"Corp\"\nissuer = \"{}\"\nclient_id = \"switchboard\"\n\
         client_secret = \"{CLIENT_SECRET}\"\n",
        provider.base
    ));
    let (a, b) = two_nodes(&config).await;

    let mut browser = Browser::new();
    let callback = browser
        .through_provider(
            &format!("{}/api/v1/auth/oidc/corp/start", a.base),
            PUBLIC_URL,
            "sub-dana",
        )
        .await;
    let on_b = callback.replacen(PUBLIC_URL, &b.base, 1);
    let fragment = browser.back_at(&on_b).await;
    let ticket = fragment
        .strip_prefix("oidc_ticket=")
        .unwrap_or_else(|| panic!("signed in on the other node, not {fragment}"));
    // The same redirect again, now at the first node: used up.
    let on_a = callback.replacen(PUBLIC_URL, &a.base, 1);
    assert_eq!(browser.back_at(&on_a).await, "oidc_error=invalid_state");

    let redeem = |base: String| {
        let http = a.http.clone();
        let ticket = ticket.to_string();
        async move {
            let response = http
                .post(format!("{base}/api/v1/auth/oidc/redeem"))
                .json(&json!({ "ticket": ticket }))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, tokens) = redeem(a.base.clone()).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{tokens}");
    assert_eq!(tokens["user"]["name"], "dana");
    let (status, _) = redeem(b.base.clone()).await;
    assert_eq!(
        status,
        reqwest::StatusCode::UNAUTHORIZED,
        "a ticket works once, anywhere"
    );
}

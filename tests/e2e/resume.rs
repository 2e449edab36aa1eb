//! Reconnect and resume: no gap, no duplicate, in order; durability across a restart;
//! slow consumers are cut off instead of growing the server's memory.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::support::{TestServer, Ws};

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed_then_live_events() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("resume", &[bob.id]).await;

    let mut bob_ws = bob.ws(&server).await;
    alice.send_http(room, "m1", "one").await;
    let seen = bob_ws.recv_type("event").await;
    assert_eq!(seen["seq"], 1);
    drop(bob_ws); // network blip

    for i in 2..=6 {
        alice
            .send_http(room, &format!("m{i}"), &format!("msg {i}"))
            .await;
    }
    let mut bob_ws = bob.ws(&server).await;
    bob_ws
        .send(json!({ "type": "sync", "req": "s1", "rooms": { room.to_string(): 1 } }))
        .await;
    // Meanwhile more arrive live; they must come after the catch-up, once each.
    alice.send_http(room, "m7", "msg 7").await;

    let mut seqs = Vec::new();
    loop {
        let frame = bob_ws.recv().await;
        match frame["type"].as_str() {
            Some("event") => seqs.push(frame["seq"].as_i64().unwrap()),
            Some("synced") => {
                assert_eq!(frame["req"], "s1");
                break;
            }
            _ => {}
        }
    }
    while seqs.last() != Some(&7) {
        let frame = bob_ws.recv_type("event").await;
        seqs.push(frame["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, [2, 3, 4, 5, 6, 7], "no gap, no duplicate, in order");
    alice.send_http(room, "m8", "msg 8").await;
    assert_eq!(bob_ws.recv_type("event").await["seq"], 8);
    // Nothing twice: a sentinel sent after it is the very next event (a room's events reach
    // a session in seq order, so a repeat of 8 would come first).
    alice.send_http(room, "m9", "sentinel").await;
    let next = bob_ws.recv_type("event").await;
    assert_eq!(
        (next["seq"].as_i64(), next["body"].as_str()),
        (Some(9), Some("sentinel"))
    );
}

#[tokio::test]
async fn acknowledged_messages_survive_a_restart_and_clients_resume() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("durable", &[bob.id]).await;
    let mut ws = alice.ws(&server).await;
    let mut acked = Vec::new();
    for i in 0..20 {
        let ack = ws
            .send_msg(room, &format!("d{i}"), &format!("durable {i}"))
            .await;
        acked.push(ack["seq"].as_i64().unwrap());
    }
    drop(ws);
    let dir = server.stop().await;

    let server = TestServer::start_in(dir, |_| {}).await;
    let bob = server.login("bob", crate::support::PASSWORD).await;
    let mut ws = bob.ws(&server).await;
    ws.send(json!({ "type": "sync", "rooms": { room.to_string(): 0 } }))
        .await;
    let mut got = Vec::new();
    loop {
        let frame = ws.recv().await;
        if frame["type"] == "synced" {
            assert_eq!(frame["rooms"][room.to_string()], 20);
            break;
        }
        if frame["type"] == "event" {
            got.push(frame["seq"].as_i64().unwrap());
        }
    }
    assert_eq!(got, acked);
}

#[tokio::test]
async fn many_concurrent_senders_get_gap_free_sequence_numbers() {
    // Lift the per-user rate limit: this test is about ordering under contention.
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("busy", &[bob.id]).await;
    let mut watcher = bob.ws(&server).await;

    let mut tasks = Vec::new();
    for sender in [alice.clone(), bob.clone()] {
        for conn in 0..4 {
            let url = server.ws_url(&sender.token);
            let name = sender.name.clone();
            tasks.push(tokio::spawn(async move {
                let mut ws = Ws::connect(&url).await;
                let mut seqs = Vec::new();
                for i in 0..25 {
                    let ack = ws.send_msg(room, &format!("{name}-{conn}-{i}"), "x").await;
                    assert_eq!(ack["type"], "ack", "{ack}");
                    seqs.push(ack["seq"].as_i64().unwrap());
                }
                seqs
            }));
        }
    }
    let mut all = BTreeSet::new();
    for task in tasks {
        for seq in task.await.unwrap() {
            assert!(all.insert(seq), "seq {seq} assigned twice");
        }
    }
    assert_eq!(all, (1..=200).collect::<BTreeSet<_>>());
    // A live watcher sees all 200 in order.
    let mut last = 0;
    while last < 200 {
        let event = watcher.recv_type("event").await;
        let seq = event["seq"].as_i64().unwrap();
        assert_eq!(seq, last + 1, "in order, no gap");
        last = seq;
    }
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_and_others_keep_going() {
    let server = TestServer::start_with(|c| {
        c.limits.ws_send_queue = 8;
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        c.limits.ws_frames_per_second = 100_000;
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("firehose", &[bob.id]).await;
    // Bob connects and then never reads.
    let slow = bob.ws(&server).await;
    let mut fast = alice.ws(&server).await;
    let big = "x".repeat(15_000);
    let mut disconnected = false;
    for i in 0..2000 {
        let ack = fast.send_msg(room, &format!("f{i}"), &big).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        if i % 50 == 49 {
            let (_, metrics) = server.admin().await.get("/metrics").await;
            if metrics
                .as_str()
                .unwrap_or_default()
                .contains("kind=\"slow_consumer\"")
            {
                disconnected = true;
                break;
            }
        }
    }
    assert!(disconnected, "the slow consumer was cut off");
    drop(slow);
    // The fast client is unaffected.
    let ack = fast.send_msg(room, "after", "still here").await;
    assert_eq!(ack["type"], "ack");
}

#[tokio::test]
async fn a_silent_peer_is_closed_by_the_idle_timeout() {
    let server = TestServer::start_with(|c| {
        c.limits.ws_heartbeat_secs = 1;
        c.limits.ws_idle_timeout_secs = 2;
    })
    .await;
    let alice = server.user("alice").await;
    let mut live = alice.ws(&server).await;
    let mut silent = alice.ws(&server).await;
    // `live` answers pings (tungstenite does while reading); `silent` never reads, so it
    // never answers and the server gives up on it.
    let keep_reading = tokio::spawn(async move {
        let frame = live.try_recv(Duration::from_millis(3500)).await;
        (live, frame)
    });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (code, reason) = silent.expect_close().await;
    assert_eq!((code, reason.as_str()), (4002, "idle_timeout"));
    let (mut live, _) = keep_reading.await.unwrap();
    live.send(json!({ "type": "ping", "req": "still-there" }))
        .await;
    assert_eq!(live.recv_type("pong").await["req"], "still-there");
}

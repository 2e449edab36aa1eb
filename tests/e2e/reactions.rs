//! Reactions and pins through the real server, on SQLite and PostgreSQL: each is an event
//! of the room's log, delivered live and in history; history shows a message's reactions
//! counted per emoji (with the reader's own marked); one reaction per user per emoji; the
//! limits on distinct emoji and on pins; who may pin; and the clear errors for bad input
//! (not an emoji, a non-member, an unknown or deleted message, a reaction to a reaction).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::hardening::{BACKENDS, start_on};
use crate::support::{Client, reaction_path};

/// `(emoji, count, me)` of a message as `client` reads it in history.
async fn reactions_seen_by(client: &Client, room: i64, message: i64) -> Vec<(String, u64, bool)> {
    let history = client.history(room, "").await;
    let event = history
        .iter()
        .find(|e| e["id"] == message && e["kind"] == "message")
        .unwrap_or_else(|| panic!("message {message} not in history"));
    event
        .get("reactions")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|r| {
                    (
                        r["emoji"].as_str().unwrap().to_string(),
                        r["count"].as_u64().unwrap(),
                        r["me"].as_bool().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn r(emoji: &str, count: u64, me: bool) -> (String, u64, bool) {
    (emoji.to_string(), count, me)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_are_log_events_counted_per_emoji_one_per_user() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| {
            c.limits.message_burst = 1000;
            c.limits.reactions_per_message_max = 3;
        })
        .await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let carol = admin.create_user("carol").await;
        let room = alice.group("team", &[bob.id]).await;
        let (_, sent) = alice.send_http(room, "m1", "Ship it?").await;
        let message = sent["id"].as_i64().unwrap();
        let mut alice_ws = alice.ws(&server).await;

        // A reaction is acked with its event's seq and arrives live as a `reaction` event.
        let (s, ack) = bob.put(&reaction_path(room, message, "👍")).await;
        assert_eq!(s, StatusCode::CREATED, "{backend:?}: {ack}");
        assert_eq!(
            (ack["id"].as_i64(), ack["room"].as_i64()),
            (Some(message), Some(room))
        );
        let live = alice_ws.recv_type("event").await;
        assert_eq!(
            (
                live["kind"].as_str(),
                live["target"].as_i64(),
                live["body"].as_str(),
                live["sender_id"].as_i64(),
                live["seq"].as_i64()
            ),
            (
                Some("reaction"),
                Some(message),
                Some("👍"),
                Some(bob.id),
                ack["seq"].as_i64()
            ),
            "{live}"
        );
        // Once per user per emoji: again is the same reaction, not a second one.
        let (s, again) = bob.put(&reaction_path(room, message, "👍")).await;
        assert_eq!(s, StatusCode::OK, "{again}");
        assert_eq!(
            (again["duplicate"].as_bool(), again["seq"].as_i64()),
            (Some(true), ack["seq"].as_i64())
        );
        // Over the socket too, and a shortcode.
        alice_ws
            .send(
                json!({ "type": "react", "req": "r1", "room": room, "message": message,
                          "emoji": "👍" }),
            )
            .await;
        let ack = alice_ws.recv_type("ack").await;
        assert_eq!(
            (ack["req"].as_str(), ack["id"].as_i64()),
            (Some("r1"), Some(message)),
            "{ack}"
        );
        let (s, _) = alice.put(&reaction_path(room, message, ":tada:")).await;
        assert_eq!(s, StatusCode::CREATED);

        // History counts per emoji, in the order first given, and marks the reader's own.
        assert_eq!(
            reactions_seen_by(&alice, room, message).await,
            vec![r("👍", 2, true), r(":tada:", 1, true)]
        );
        assert_eq!(
            reactions_seen_by(&bob, room, message).await,
            vec![r("👍", 2, true), r(":tada:", 1, false)]
        );
        let (s, who) = bob
            .get(&format!(
                "/api/v1/rooms/{room}/messages/{message}/reactions"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{who}");
        assert_eq!(
            who,
            json!([{ "emoji": "👍", "users": [bob.id, alice.id] },
                   { "emoji": ":tada:", "users": [alice.id] }])
        );
        // Reactions are not messages: nobody has anything unread because of them.
        let (_, rooms) = alice.get("/api/v1/rooms").await;
        assert_eq!(rooms[0]["unread"], 0, "{rooms}");

        // Taking a reaction back is an event too; taking back one never given is a 404.
        let (s, ack) = bob.delete(&reaction_path(room, message, "👍")).await;
        assert_eq!(s, StatusCode::OK, "{ack}");
        // (alice's own 👍 and :tada: arrive before it.)
        let mut removed = alice_ws.recv_type("event").await;
        while removed["kind"] == "reaction" {
            removed = alice_ws.recv_type("event").await;
        }
        assert_eq!(
            (
                removed["kind"].as_str(),
                removed["body"].as_str(),
                removed["sender_id"].as_i64()
            ),
            (Some("reaction_removed"), Some("👍"), Some(bob.id))
        );
        let (s, err) = bob.delete(&reaction_path(room, message, "👍")).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("reaction_not_found")),
            "{err}"
        );
        assert_eq!(
            reactions_seen_by(&bob, room, message).await,
            vec![r("👍", 1, false), r(":tada:", 1, false)]
        );

        // At most `reactions_per_message_max` (3) different emoji; joining one is fine.
        let (s, _) = bob.put(&reaction_path(room, message, "🎉")).await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, err) = bob.put(&reaction_path(room, message, "🚀")).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::CONFLICT, Some("too_many_reactions")),
            "{err}"
        );
        let (s, _) = bob.put(&reaction_path(room, message, ":tada:")).await;
        assert_eq!(s, StatusCode::CREATED);

        // Bad input: each refused with its code, nothing stored.
        let last_seq = |rooms: &Value| rooms[0]["last_seq"].as_i64().unwrap();
        let (_, before) = alice.get("/api/v1/rooms").await;
        for (emoji, code) in [
            ("ok", "invalid_reaction"),
            ("👍👍", "invalid_reaction"),
            (":No Way:", "invalid_reaction"),
        ] {
            let (s, err) = bob.put(&reaction_path(room, message, emoji)).await;
            assert_eq!(
                (s, err["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some(code)),
                "{emoji}: {err}"
            );
        }
        let (s, err) = carol.put(&reaction_path(room, message, "👍")).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("room_not_found")),
            "{err}"
        );
        let (s, err) = bob.put(&reaction_path(room, 999_999, "👍")).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("message_not_found")),
            "{err}"
        );
        let reaction_event = removed["id"].as_i64().unwrap();
        let (s, err) = bob.put(&reaction_path(room, reaction_event, "👍")).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("message_not_found")),
            "{err}"
        );
        let (_, after) = alice.get("/api/v1/rooms").await;
        assert_eq!(
            last_seq(&before),
            last_seq(&after),
            "a refused reaction took no seq"
        );

        // The log holds every reaction event in order, for history and sync alike.
        let kinds: Vec<String> = alice
            .history(room, "")
            .await
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .filter(|k| k.starts_with("reaction"))
            .collect();
        assert_eq!(
            kinds,
            [
                "reaction",
                "reaction",
                "reaction",
                "reaction_removed",
                "reaction",
                "reaction"
            ]
        );

        // A deleted message keeps no reactions, and takes none.
        let (s, _) = alice
            .delete(&format!("/api/v1/rooms/{room}/messages/{message}"))
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(reactions_seen_by(&alice, room, message).await, vec![]);
        let (s, err) = bob.put(&reaction_path(room, message, "👍")).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::CONFLICT, Some("message_deleted")),
            "{err}"
        );
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_are_for_owners_and_admins_unless_the_room_allows_everyone() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| {
            c.limits.message_burst = 1000;
            c.limits.pins_per_room_max = 3;
        })
        .await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let room = alice.group("team", &[bob.id]).await;
        let mut ids = Vec::new();
        for i in 1..=5 {
            let (_, sent) = alice
                .send_http(room, &format!("m{i}"), &format!("note {i}"))
                .await;
            ids.push(sent["id"].as_i64().unwrap());
        }
        let pin = |m: i64| format!("/api/v1/rooms/{room}/pins/{m}");
        let mut bob_ws = bob.ws(&server).await;

        // A member may not pin by default; the owner may, and everyone sees it live.
        let (s, err) = bob.put(&pin(ids[0])).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("not_allowed")),
            "{backend:?}: {err}"
        );
        let (s, ack) = alice.put(&pin(ids[0])).await;
        assert_eq!(s, StatusCode::CREATED, "{ack}");
        let live = bob_ws.recv_type("event").await;
        assert_eq!(
            (
                live["kind"].as_str(),
                live["target"].as_i64(),
                live["sender_id"].as_i64()
            ),
            (Some("pinned"), Some(ids[0]), Some(alice.id)),
            "{live}"
        );
        let (s, again) = alice.put(&pin(ids[0])).await;
        assert_eq!(
            (s, again["duplicate"].as_bool()),
            (StatusCode::OK, Some(true)),
            "{again}"
        );
        let (s, _) = alice.put(&pin(ids[1])).await;
        assert_eq!(s, StatusCode::CREATED);

        // Listed for members, the latest pinned first, with who pinned it.
        let (s, pins) = bob.get(&format!("/api/v1/rooms/{room}/pins")).await;
        assert_eq!(s, StatusCode::OK, "{pins}");
        let listed: Vec<(i64, i64, &str)> = pins
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["message"]["id"].as_i64().unwrap(),
                    p["pinned_by"].as_i64().unwrap(),
                    p["message"]["body"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            vec![(ids[1], alice.id, "note 2"), (ids[0], alice.id, "note 1")]
        );

        // The owner lets everyone pin; a member may not change that.
        let (s, err) = bob
            .patch(
                &format!("/api/v1/rooms/{room}"),
                json!({ "members_may_pin": true }),
            )
            .await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("not_allowed")),
            "{err}"
        );
        let (s, detail) = alice
            .patch(
                &format!("/api/v1/rooms/{room}"),
                json!({ "members_may_pin": true }),
            )
            .await;
        assert_eq!(
            (s, detail["members_may_pin"].as_bool()),
            (StatusCode::OK, Some(true)),
            "{detail}"
        );
        let (s, err) = alice
            .patch(&format!("/api/v1/rooms/{room}"), json!({ "pins": true }))
            .await;
        assert_eq!(
            s,
            StatusCode::BAD_REQUEST,
            "unknown settings are refused: {err}"
        );
        let (s, ack) = bob.put(&pin(ids[2])).await;
        assert_eq!(s, StatusCode::CREATED, "{ack}");

        // At most `pins_per_room_max` (3).
        let (s, err) = bob.put(&pin(ids[3])).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::CONFLICT, Some("too_many_pins")),
            "{err}"
        );

        // Unpinning frees a place; unpinning what is not pinned is a 404.
        let (s, ack) = bob.delete(&pin(ids[0])).await;
        assert_eq!(s, StatusCode::OK, "{ack}");
        let (s, err) = bob.delete(&pin(ids[0])).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_pinned")),
            "{err}"
        );
        bob_ws
            .send(json!({ "type": "pin", "req": "p", "room": room, "message": ids[3] }))
            .await;
        let ack = bob_ws.recv_type("ack").await;
        assert_eq!(
            (ack["req"].as_str(), ack["id"].as_i64()),
            (Some("p"), Some(ids[3])),
            "{ack}"
        );

        // A deleted message leaves the list.
        let (s, _) = alice
            .delete(&format!("/api/v1/rooms/{room}/messages/{}", ids[2]))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (_, pins) = alice.get(&format!("/api/v1/rooms/{room}/pins")).await;
        let listed: Vec<i64> = pins
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["message"]["id"].as_i64().unwrap())
            .collect();
        assert_eq!(listed, vec![ids[3], ids[1]]);
        let (s, err) = alice.put(&pin(ids[2])).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::CONFLICT, Some("message_deleted")),
            "{err}"
        );
        let (s, err) = alice.put(&pin(999_999)).await;
        assert_eq!(
            (s, err["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("message_not_found")),
            "{err}"
        );

        // Both people of a direct room may pin.
        let direct = bob.direct(alice.id).await;
        let (_, sent) = alice.send_http(direct, "d1", "the address").await;
        let (s, ack) = bob
            .put(&format!("/api/v1/rooms/{direct}/pins/{}", sent["id"]))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{ack}");
        server.stop().await;
    }
}

/// Many identical reactions or pins at once (a double click, two tabs, a retrying client)
/// are one event and duplicates, and different emoji racing for the last places stop exactly
/// at the limit, on both stores. (One node commits through its batching writer; the same
/// race through two nodes is `cluster::concurrent_writers`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_reactions_and_pins_are_one_event_each_and_the_limit_is_exact() {
    use futures_util::future::join_all;

    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| {
            c.limits.message_burst = 1000;
            c.limits.reactions_per_message_max = 3;
        })
        .await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let room = alice.group("race", &[bob.id]).await;
        let (_, sent) = alice.send_http(room, "m1", "Race me").await;
        let message = sent["id"].as_i64().unwrap();

        let path = reaction_path(room, message, "👍");
        let answers = join_all((0..12).map(|_| bob.put(&path))).await;
        let statuses: Vec<StatusCode> = answers.iter().map(|(s, _)| *s).collect();
        assert_eq!(
            statuses
                .iter()
                .filter(|s| **s == StatusCode::CREATED)
                .count(),
            1,
            "{backend:?}: one reaction is made: {answers:?}"
        );
        assert!(
            answers.iter().all(|(s, a)| *s == StatusCode::CREATED
                || (*s == StatusCode::OK && a["duplicate"] == true)),
            "{backend:?}: the rest are duplicates: {answers:?}"
        );

        // Two places left (👍 holds one of three): five new emoji race for them.
        let emoji = ["🎉", "🚀", "👀", "❤️", "✅"];
        let paths: Vec<String> = emoji
            .iter()
            .map(|e| reaction_path(room, message, e))
            .collect();
        let answers = join_all(paths.iter().map(|path| alice.put(path))).await;
        let made = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count();
        assert_eq!(made, 2, "{backend:?}: {answers:?}");
        assert!(
            answers.iter().all(|(s, a)| *s == StatusCode::CREATED
                || (*s == StatusCode::CONFLICT && a["code"] == "too_many_reactions")),
            "{backend:?}: the rest meet the limit: {answers:?}"
        );
        let seen = reactions_seen_by(&alice, room, message).await;
        assert_eq!(seen.len(), 3, "{backend:?}: {seen:?}");
        assert_eq!(seen[0], r("👍", 1, false), "{backend:?}");

        // One pin, however many ask at once.
        let pin = format!("/api/v1/rooms/{room}/pins/{message}");
        let answers = join_all((0..8).map(|_| alice.put(&pin))).await;
        assert_eq!(
            answers
                .iter()
                .filter(|(s, _)| *s == StatusCode::CREATED)
                .count(),
            1,
            "{backend:?}: {answers:?}"
        );
        assert!(
            answers
                .iter()
                .all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::OK),
            "{backend:?}: {answers:?}"
        );
        let (s, pins) = alice.get(&format!("/api/v1/rooms/{room}/pins")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            pins.as_array().map(Vec::len),
            Some(1),
            "{backend:?}: {pins}"
        );

        // Every event of the race is in the log once, with gap-free seqs.
        let history = alice.history(room, "").await;
        let seqs: Vec<i64> = history.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        let expected: Vec<i64> = (seqs[0]..seqs[0] + seqs.len() as i64).collect();
        assert_eq!(seqs, expected, "{backend:?}: seqs without gaps");
        let count = |kind: &str| history.iter().filter(|e| e["kind"] == kind).count();
        assert_eq!((count("reaction"), count("pinned")), (3, 1), "{backend:?}");
    }
}

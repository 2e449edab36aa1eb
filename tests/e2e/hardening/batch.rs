//! One row the database refuses fails only its own sender: the group-commit batch it shared
//! with other users' messages still commits. And NUL, the text one store can hold and the
//! other cannot, is refused up front with the same 400 on both.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection as _;

use super::{BACKENDS, start_on};
use crate::support::TestServer;

/// Make the database itself refuse any message whose body is `POISON`, the way an
/// operator's constraint, a full column or an unforeseen encoding rule would: the router
/// cannot know in advance, so only the store's own isolation can keep the batch alive.
async fn poison_the_store(server: &TestServer, pg_url: Option<&str>) {
    match pg_url {
        None => {
            let path = server.dir.path().join("switchboard.db");
            let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(
                "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.body = 'POISON'
                 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
            )
            .execute(&mut db)
            .await
            .unwrap();
            db.close().await.unwrap();
        }
        Some(url) => {
            let mut db = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   IF NEW.body = 'POISON' THEN RAISE EXCEPTION 'poisoned row'; END IF;
                   RETURN NEW;
                 END $$",
            )
            .execute(&mut db)
            .await
            .unwrap();
            sqlx::query(
                "CREATE TRIGGER poison BEFORE INSERT ON events
                 FOR EACH ROW EXECUTE FUNCTION poison()",
            )
            .execute(&mut db)
            .await
            .unwrap();
            db.close().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_refused_row_fails_only_its_own_sender_on_both_stores() {
    for backend in BACKENDS {
        let (server, db) = start_on(backend, |c| {
            c.limits.messages_per_second = 10_000;
            c.limits.message_burst = 10_000;
        })
        .await;
        let admin = server.admin().await;
        let mallory = admin.create_user("mallory").await;
        let mut senders = Vec::new();
        for i in 0..8 {
            let user = admin.create_user(&format!("clean{i}")).await;
            let room = user.group(&format!("room{i}"), &[mallory.id]).await;
            senders.push((user, room));
        }
        poison_the_store(&server, db.as_ref().map(|d| d.url.as_str())).await;

        // Eight clean senders and one poisoner, all at once, so that the poisoned rows
        // share group-commit batches with clean ones.
        let mut tasks = Vec::new();
        for (user, room) in senders.clone() {
            tasks.push(tokio::spawn(async move {
                let mut failures = Vec::new();
                for n in 0..25 {
                    let (status, body) = user.send_http(room, &format!("c{n}"), "clean").await;
                    if status != StatusCode::CREATED && status != StatusCode::OK {
                        failures.push(format!("{status} {body}"));
                    }
                }
                failures
            }));
        }
        let poisoner = {
            let mallory = mallory.clone();
            let room = senders[0].1;
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for n in 0..25 {
                    answers.push(mallory.send_http(room, &format!("p{n}"), "POISON").await);
                }
                answers
            })
        };
        for task in tasks {
            let failures = task.await.unwrap();
            assert!(
                failures.is_empty(),
                "{backend:?}: clean sends failed: {failures:?}"
            );
        }
        for (status, body) in poisoner.await.unwrap() {
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("value_refused")),
                "{backend:?}: {body}"
            );
        }
        for (user, room) in &senders {
            let history = user.history(*room, "?limit=100").await;
            let bodies: Vec<&str> = history.iter().filter_map(|e| e["body"].as_str()).collect();
            assert_eq!(
                bodies.iter().filter(|b| **b == "clean").count(),
                25,
                "{backend:?}: every clean message is stored"
            );
            assert!(!bodies.contains(&"POISON"), "{backend:?}");
            // The refused rows took no seq: the log has no holes.
            let seqs: Vec<i64> = history.iter().filter_map(|e| e["seq"].as_i64()).collect();
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "{backend:?}: {seqs:?}"
            );
        }
    }
}

#[tokio::test]
async fn nul_is_refused_with_the_same_400_on_both_stores() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let alice = server.user("alice").await;
        let room = alice.group("nul", &[]).await;
        let messages = format!("/api/v1/rooms/{room}/messages");
        let messages: &'static str = Box::leak(messages.into_boxed_str());
        let cases: [(&str, &'static str, &'static str); 6] = [
            (
                "login name",
                "/api/v1/auth/login",
                r#"{"username":"ali\u0000ce","password":"whatever-password"}"#,
            ),
            (
                "refresh token",
                "/api/v1/auth/refresh",
                r#"{"refresh_token":"abc\u0000.def"}"#,
            ),
            (
                "metadata value",
                messages,
                r#"{"client_msg_id":"m1","body":"hi","metadata":{"k":"v\u0000"}}"#,
            ),
            (
                "metadata key",
                messages,
                r#"{"client_msg_id":"m2","body":"hi","metadata":{"k\u0000":"v"}}"#,
            ),
            (
                "client_msg_id",
                messages,
                r#"{"client_msg_id":"m\u0000","body":"hi"}"#,
            ),
            (
                "room name",
                "/api/v1/rooms",
                r#"{"kind":"group","name":"r\u0000"}"#,
            ),
        ];
        for (what, path, body) in cases {
            let (status, answer) = alice.post_raw(path, "application/json", body).await;
            assert_eq!(
                (status, answer["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_text")),
                "{backend:?} {what}: {answer}"
            );
        }
        // An escaped backslash before `u0000` is text, not NUL.
        let (status, _) = alice
            .post_raw(
                messages,
                "application/json",
                r#"{"client_msg_id":"m3","body":"a path: C:\\u0000"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?}");
        // NUL in the URL.
        let (status, answer) = alice
            .get(&format!("/api/v1/rooms/{room}/messages?before=1%00"))
            .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_text")),
            "{backend:?}"
        );
        // The same rule in a WebSocket frame.
        let mut ws = alice.ws(&server).await;
        ws.send_raw(tokio_tungstenite::tungstenite::Message::text(format!(
            r#"{{"type":"send","req":"r1","room":{room},"client_msg_id":"w1","body":"a\u0000"}}"#
        )))
        .await;
        let frame = ws.recv_type("error").await;
        assert_eq!(frame["code"], json!("invalid_text"), "{backend:?}: {frame}");
        let history = alice.history(room, "").await;
        assert_eq!(
            history.len(),
            1,
            "{backend:?}: only the clean message is stored"
        );
    }
}

//! Legal holds and kept versions through the real server, on SQLite and PostgreSQL: a hold
//! is in force the moment it is created; under it an edit or a delete keeps the earlier
//! text for compliance while users see the message edited or deleted; outside it, a delete
//! still erases; a release waits for its delay or a second compliance user, and every step
//! is on record. Plus a property test over random histories.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::hardening::{BACKENDS, start_on};
use crate::support::Client;

pub(crate) async fn compliance_user(admin: &Client, name: &str) -> Client {
    let user = admin.create_user(name).await;
    let (status, _) = admin
        .patch(
            &format!("/api/v1/users/{}", user.id),
            json!({ "compliance": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    user
}

/// Post, edit, delete; returns the message id.
async fn post_edit_delete(author: &Client, room: i64, tag: &str) -> i64 {
    let (status, ack) = author
        .send_http(room, &format!("{tag}-1"), &format!("{tag} original"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let id = ack["id"].as_i64().unwrap();
    let path = format!("/api/v1/rooms/{room}/messages/{id}");
    let (status, body) = author
        .patch(&path, json!({ "body": format!("{tag} edited") }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = author.delete(&path).await;
    assert!(status.is_success(), "{body}");
    id
}

async fn kept_bodies(reviewer: &Client, message: i64) -> Vec<String> {
    let (status, versions) = reviewer
        .get(&format!("/api/v1/compliance/messages/{message}/versions"))
        .await;
    assert_eq!(status, StatusCode::OK, "{versions}");
    versions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["body"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_keeps_what_users_edit_and_delete_until_it_is_released() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| {
            c.compliance.hold_release_delay_secs = 3600;
        })
        .await;
        let admin = server.admin().await;
        let carol = compliance_user(&admin, "carol").await;
        let dave = compliance_user(&admin, "dave").await;
        let alice = admin.create_user("alice").await;
        let held_room = alice.group("deal-room", &[]).await;
        let other_room = alice.group("lunch", &[]).await;

        // Bad requests change nothing.
        for (body, code) in [
            (json!({ "name": "x" }), "invalid_hold"),
            (json!({ "name": "", "rooms": [held_room] }), "invalid_hold"),
            (
                json!({ "name": "x", "from": 10, "until": 5 }),
                "invalid_range",
            ),
            (json!({ "name": "x", "rooms": [999_999] }), "room_not_found"),
            (json!({ "name": "x", "users": [999_999] }), "user_not_found"),
        ] {
            let (status, answer) = carol.post("/api/v1/compliance/holds", body).await;
            assert!(status.is_client_error(), "{backend:?}: {answer}");
            assert_eq!(answer["code"], code, "{backend:?}");
        }
        let (status, _) = alice
            .post(
                "/api/v1/compliance/holds",
                json!({ "name": "mine", "rooms": [held_room] }),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "only the compliance role holds"
        );

        let (status, hold) = carol
            .post(
                "/api/v1/compliance/holds",
                json!({ "name": "Acme litigation", "rooms": [held_room] }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?}: {hold}");
        let hold_id = hold["id"].as_i64().unwrap();
        let (status, dup) = carol
            .post(
                "/api/v1/compliance/holds",
                json!({ "name": "Acme litigation", "users": [alice.id] }),
            )
            .await;
        assert_eq!(
            (status, dup["code"].as_str()),
            (StatusCode::CONFLICT, Some("hold_exists"))
        );

        // Under the hold: users see an edit and a delete; the record keeps both texts.
        let held = post_edit_delete(&alice, held_room, "held").await;
        let history = alice.history(held_room, "").await;
        let message = history.iter().find(|e| e["id"] == held).unwrap();
        assert_eq!(message["deleted"], true);
        assert!(message["body"].is_null(), "{message}");
        let kept = kept_bodies(&carol, held).await;
        assert!(
            kept.contains(&"held original".to_string()),
            "{backend:?}: {kept:?}"
        );
        assert!(
            kept.contains(&"held edited".to_string()),
            "{backend:?}: {kept:?}"
        );
        // Deactivating the author erases nothing either.
        let (status, _) = admin
            .patch(
                &format!("/api/v1/users/{}", alice.id),
                json!({ "active": false }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(kept_bodies(&carol, held).await, kept);
        let (status, _) = admin
            .patch(
                &format!("/api/v1/users/{}", alice.id),
                json!({ "active": true }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let alice = server.login("alice", crate::support::PASSWORD).await;

        // Outside the hold, a delete still erases.
        let free = post_edit_delete(&alice, other_room, "free").await;
        assert!(kept_bodies(&carol, free).await.is_empty(), "{backend:?}");

        // A release asked for waits out its delay: the hold still covers.
        let release = format!("/api/v1/compliance/holds/{hold_id}/release");
        let (status, asked) = carol.post(&release, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{asked}");
        assert!(
            asked["released_at"].as_i64().unwrap()
                > asked["release_requested_at"].as_i64().unwrap()
        );
        let (status, again) = carol.post(&release, json!({})).await;
        assert_eq!(
            (status, again["code"].as_str()),
            (StatusCode::CONFLICT, Some("release_pending"))
        );
        let during = post_edit_delete(&alice, held_room, "during").await;
        assert!(
            kept_bodies(&carol, during)
                .await
                .contains(&"during original".to_string())
        );

        // A second compliance user confirms: released at once; deletes erase again.
        let (status, released) = dave.post(&release, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{released}");
        let after = post_edit_delete(&alice, held_room, "after").await;
        assert!(kept_bodies(&carol, after).await.is_empty(), "{backend:?}");
        let (status, _) = dave.post(&release, json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT);

        // Each step is on record.
        let (_, all) = carol.get("/api/v1/compliance/audit?limit=1000").await;
        let actions: Vec<&str> = all["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["subject"] == format!("hold:{hold_id}"))
            .filter_map(|r| r["action"].as_str())
            .collect();
        assert_eq!(
            actions,
            ["hold.create", "hold.release_request", "hold.release"],
            "{backend:?}"
        );
    }
}

#[tokio::test]
async fn preserve_deleted_keeps_every_original() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| c.compliance.preserve_deleted = true).await;
        let admin = server.admin().await;
        let carol = compliance_user(&admin, "carol").await;
        let alice = admin.create_user("alice").await;
        let room = alice.group("any", &[]).await;
        let id = post_edit_delete(&alice, room, "kept").await;
        let kept = kept_bodies(&carol, id).await;
        assert!(
            kept.contains(&"kept original".to_string()),
            "{backend:?}: {kept:?}"
        );
        let message: Value = alice
            .history(room, "")
            .await
            .into_iter()
            .find(|e| e["id"] == id)
            .unwrap();
        assert_eq!(message["deleted"], true);
    }
}

/// Run raw SQL on the server's database, as an operator or a test that needs old data.
async fn raw_exec(dir: &std::path::Path, pg: Option<&str>, sql: &str) {
    use sqlx::Connection as _;
    match pg {
        None => {
            let url = format!("sqlite://{}", dir.join("switchboard.db").display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
        Some(url) => {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(sql).execute(&mut c).await.unwrap();
            c.close().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_erases_exactly_what_the_preview_said_and_never_held_messages() {
    for backend in BACKENDS {
        let (server, db) = start_on(backend, |c| {
            c.compliance.retention_days = 30;
            c.compliance.retention_min_days = 7;
        })
        .await;
        let pg = db.as_ref().map(|d| d.url.clone());
        let admin = server.admin().await;
        let carol = compliance_user(&admin, "carol").await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let room_a = alice.group("a", &[bob.id]).await;
        let room_b = alice.group("b", &[]).await;
        let id = |ack: Value| ack["id"].as_i64().unwrap();
        let old = id(alice.send_http(room_a, "a1", "old secret alpha").await.1);
        let held = id(bob.send_http(room_a, "a2", "old held beta").await.1);
        let fresh = id(alice.send_http(room_a, "a3", "fresh gamma").await.1);
        let longer = id(alice.send_http(room_b, "b1", "old bravo").await.1);
        // Forty days ago, as far as the database knows (a conversation that began before
        // the cut-off: only its old messages go).
        let forty_days = 40 * 86_400_000_i64;
        raw_exec(
            server.dir.path(),
            pg.as_deref(),
            &format!(
                "UPDATE events SET created_at = created_at - {forty_days} \
                 WHERE id IN ({old}, {held}, {longer})"
            ),
        )
        .await;

        // Bad policies change nothing.
        let put = |room: i64| format!("/api/v1/compliance/retention/rooms/{room}");
        let (status, answer) = carol.patch(&put(room_b), json!({ "days": 60 })).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{answer}");
        let put_json = |client: &Client, path: String, body: Value| {
            let request = client
                .http
                .put(format!("{}{path}", client.base))
                .bearer_auth(&client.token)
                .json(&body);
            async move {
                let resp = request.send().await.unwrap();
                let status = resp.status();
                (status, resp.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let (status, answer) = put_json(&carol, put(room_b), json!({ "days": 3 })).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("retention_too_short"))
        );
        let (status, answer) = put_json(&carol, put(999_999), json!({ "days": 60 })).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("room_not_found"))
        );
        let (status, _) = put_json(&alice, put(room_b), json!({ "days": 60 })).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Room b keeps 60 days; room a follows the global 30.
        let (status, _) = put_json(&carol, put(room_b), json!({ "days": 60 })).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        // Bob is under a hold.
        let (status, _) = carol
            .post(
                "/api/v1/compliance/holds",
                json!({ "name": "bob", "users": [bob.id] }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);

        let (status, preview) = carol.get("/api/v1/compliance/retention/preview").await;
        assert_eq!(status, StatusCode::OK, "{preview}");
        assert_eq!(
            (&preview["messages"], &preview["rooms"], &preview["held"]),
            (&json!(1), &json!(1), &json!(1)),
            "{backend:?}: {preview}"
        );
        let (status, ran) = carol
            .post("/api/v1/compliance/retention/run", json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{ran}");
        assert_eq!(
            ran["messages"], preview["messages"],
            "a run erases what the preview said"
        );

        let history = alice.history(room_a, "").await;
        let find = |id: i64| history.iter().find(|e| e["id"] == id).unwrap().clone();
        assert_eq!(find(old)["deleted"], true, "{backend:?}");
        assert!(find(old)["body"].is_null());
        assert_eq!(find(held)["body"], "old held beta", "a hold keeps it");
        assert_eq!(find(fresh)["body"], "fresh gamma");
        let in_b = alice.history(room_b, "").await;
        assert_eq!(
            in_b.iter().find(|e| e["id"] == longer).unwrap()["body"],
            "old bravo"
        );
        // Gone from storage, not only hidden.
        if pg.is_none() {
            let dir = server.dir.path();
            for file in ["switchboard.db", "switchboard.db-wal"] {
                let bytes = std::fs::read(dir.join(file)).unwrap_or_default();
                let needle = b"old secret alpha";
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{file} still holds the erased text"
                );
            }
        }
        let (_, preview) = carol.get("/api/v1/compliance/retention/preview").await;
        assert_eq!(
            (&preview["messages"], &preview["held"]),
            (&json!(0), &json!(1))
        );
        let (_, all) = carol.get("/api/v1/compliance/audit?limit=1000").await;
        let runs: Vec<&Value> = all["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "retention.run")
            .collect();
        assert_eq!(runs.len(), 1, "{backend:?}");
        assert_eq!(
            (&runs[0]["detail"]["erased"], &runs[0]["detail"]["held"]),
            (&json!(1), &json!(1))
        );
    }
}

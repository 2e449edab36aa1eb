//! A password reset by an admin, or a user's own password change, ends every session of
//! the account: its access and refresh tokens stop working and its sockets close, on every
//! node of a cluster.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{BACKENDS, start_on};
use crate::cluster::{NodeConfig, PgDb, on, system_nats_url, two_nodes};
use crate::support::{Client, PASSWORD};

async fn refresh(client: &Client) -> (StatusCode, Value) {
    client
        .post(
            "/api/v1/auth/refresh",
            json!({ "refresh_token": client.refresh }),
        )
        .await
}

#[tokio::test]
async fn an_admin_reset_ends_every_session_and_socket_on_both_stores() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let laptop = server.login("alice", PASSWORD).await;
        let mut socket = alice.ws(&server).await;

        let (status, body) = admin
            .patch(
                &format!("/api/v1/users/{}", alice.id),
                json!({ "password": "a new password for alice" }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: {body}");

        assert_eq!(socket.expect_close().await.0, 4001, "{backend:?}");
        for old in [&alice, &laptop] {
            let (status, body) = old.get("/api/v1/me").await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("token_revoked")),
                "{backend:?}"
            );
            assert_eq!(
                refresh(old).await.0,
                StatusCode::UNAUTHORIZED,
                "{backend:?}"
            );
        }
        server.login("alice", "a new password for alice").await;
        let (_, audit) = admin.get("/api/v1/admin/audit").await;
        assert!(
            audit
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["action"] == "user.password_reset"
                    && r["subject"] == format!("user:{}", alice.id)
                    && r["detail"]["sessions_ended"] == 2),
            "{backend:?}: {audit}"
        );
    }
}

#[tokio::test]
async fn changing_ones_own_password_ends_the_other_sessions_on_both_stores() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let alice = server.user("alice").await;
        let stolen = server.login("alice", PASSWORD).await;
        let mut thief_socket = stolen.ws(&server).await;
        let change =
            |current: &str, new: &str| json!({ "current_password": current, "new_password": new });

        // Proving the current password is required, and the new one must pass the policy.
        let (status, body) = alice
            .post(
                "/api/v1/me/password",
                change("not it at all", "a brand new secret"),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("wrong_password")),
            "{backend:?}"
        );
        let (status, body) = alice
            .post("/api/v1/me/password", change(PASSWORD, "password123"))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("weak_password")),
            "{backend:?}"
        );

        let resp = alice
            .http
            .post(format!("{}/api/v1/me/password", alice.base))
            .bearer_auth(&alice.token)
            .json(&change(PASSWORD, "a brand new secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{backend:?}");
        assert_eq!(
            resp.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        let fresh: Value = resp.json().await.unwrap();
        let fresh = Client {
            token: fresh["access_token"].as_str().unwrap().to_string(),
            refresh: fresh["refresh_token"].as_str().unwrap().to_string(),
            ..alice.clone()
        };

        // The thief's session is over, socket included; the changer carries on.
        assert_eq!(thief_socket.expect_close().await.0, 4001, "{backend:?}");
        assert_eq!(stolen.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(refresh(&stolen).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(alice.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            fresh.get("/api/v1/me").await.0,
            StatusCode::OK,
            "{backend:?}"
        );
        assert_eq!(refresh(&fresh).await.0, StatusCode::OK, "{backend:?}");
        server.login("alice", "a brand new secret").await;
        let resp = server
            .http
            .post(format!("{}/api/v1/auth/login", server.base))
            .json(&json!({ "username": "alice", "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "the old password is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_on_one_node_closes_the_socket_on_the_other() {
    let db = PgDb::create().await;
    let config = NodeConfig::new(&db, system_nats_url());
    let (a, b) = two_nodes(&config).await;
    let admin = a.login("admin", crate::support::ADMIN_PASSWORD).await;
    let alice = admin.create_user("alice").await;
    let mut socket_on_b = b.ws(&on(&b, &alice)).await;
    // Deactivation and reset both end sessions cluster-wide; the reset is the new path.
    let (status, body) = admin
        .patch(
            &format!("/api/v1/users/{}", alice.id),
            json!({ "password": "reset by the admin on node a" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let closed = tokio::time::timeout(Duration::from_secs(10), socket_on_b.expect_close())
        .await
        .expect("the socket on node b closes");
    assert_eq!(closed.0, 4001);

    // Logging out on node a ends the same session's socket on node b.
    let bob = admin.create_user("bob").await;
    let mut bob_on_b = b.ws(&on(&b, &bob)).await;
    let (status, _) = bob.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let closed = tokio::time::timeout(Duration::from_secs(10), bob_on_b.expect_close())
        .await
        .expect("the socket on node b closes after a logout on node a");
    assert_eq!(closed.0, 4001);
}

#[tokio::test]
async fn a_socket_whose_session_ended_unannounced_closes_at_the_next_recheck() {
    use sqlx::Connection as _;
    let server = crate::support::TestServer::start_with(|c| {
        c.limits.ws_session_recheck_secs = 1;
    })
    .await;
    let alice = server.user("alice").await;
    let mut socket = alice.ws(&server).await;
    // End the session behind the server's back, as when another node's bus message is lost.
    let path = server.dir.path().join("switchboard.db");
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE sessions SET revoked = TRUE WHERE user_id = $1")
        .bind(alice.id)
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), socket.expect_close())
        .await
        .expect("closed at a recheck");
    assert_eq!(closed.0, 4001);
}

//! Accounts and tokens: login, refresh rotation and replay, logout, deactivation, forged and
//! expired tokens, admin-only routes.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{PASSWORD, TestServer};

#[tokio::test]
async fn login_refresh_logout_and_replay() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;

    let (status, me) = alice.get("/api/v1/me").await;
    assert_eq!(
        (status, me["name"].as_str()),
        (StatusCode::OK, Some("alice"))
    );
    assert!(me.get("password_hash").is_none());

    let wrong = server
        .http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({ "username": "alice", "password": "not the password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.json::<serde_json::Value>().await.unwrap()["code"],
        "invalid_credentials"
    );

    // Refresh rotates: the new pair works, the old refresh token is spent.
    let refresh = |token: String| {
        let http = server.http.clone();
        let url = format!("{}/api/v1/auth/refresh", server.base);
        async move {
            http.post(url)
                .json(&json!({ "refresh_token": token }))
                .send()
                .await
                .unwrap()
        }
    };
    let resp = refresh(alice.refresh.clone()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let pair: serde_json::Value = resp.json().await.unwrap();
    let new_refresh = pair["refresh_token"].as_str().unwrap().to_string();
    let replay = refresh(alice.refresh.clone()).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    // Replaying a spent token ends the whole session: the new one stops working too.
    assert_eq!(
        refresh(new_refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, err) = alice.get("/api/v1/me").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked"))
    );

    // Logout ends the session and closes its sockets.
    let alice = server.login("alice", PASSWORD).await;
    let mut ws = alice.ws(&server).await;
    let (status, _) = alice.post("/api/v1/auth/logout", json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (code, reason) = ws.expect_close().await;
    assert_eq!((code, reason.as_str()), (4001, "session_ended"));
    let (status, err) = alice.get("/api/v1/me").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("token_revoked"))
    );
    assert_eq!(
        refresh(alice.refresh.clone()).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn forged_expired_and_missing_tokens_are_refused() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;

    let get_me = |token: Option<String>| {
        let http = server.http.clone();
        let url = format!("{}/api/v1/me", server.base);
        async move {
            let mut req = http.get(url);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await.unwrap();
            (
                resp.status(),
                resp.json::<serde_json::Value>().await.unwrap()["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        }
    };
    assert_eq!(
        get_me(None).await,
        (StatusCode::UNAUTHORIZED, "missing_token".into())
    );
    assert_eq!(
        get_me(Some("garbage".into())).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );

    // Signed with another key.
    let claims = |exp: i64| json!({ "sub": alice.id, "sid": alice.refresh.split('.').next().unwrap(), "iat": 0, "exp": exp });
    let future = 4_000_000_000i64;
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims(future),
        &jsonwebtoken::EncodingKey::from_secret(b"not the server's secret"),
    )
    .unwrap();
    assert_eq!(
        get_me(Some(forged)).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );

    // Signed with the server's own key but expired.
    let secret = std::fs::read(server.dir.path().join("jwt.secret")).unwrap();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims(1_000_000),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert_eq!(
        get_me(Some(expired)).await,
        (StatusCode::UNAUTHORIZED, "token_expired".into())
    );

    // The WebSocket refuses the same way, before upgrading.
    let resp = server
        .http
        .get(format!("{}/api/v1/ws?token=garbage", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn deactivating_a_user_ends_their_sessions_at_once() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let bob = server.user("bob").await;
    let mut ws = bob.ws(&server).await;

    let (status, _) = bob
        .patch(
            &format!("/api/v1/users/{}", bob.id),
            json!({ "active": false }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins");
    let (status, user) = admin
        .patch(
            &format!("/api/v1/users/{}", bob.id),
            json!({ "active": false }),
        )
        .await;
    assert_eq!(
        (status, user["active"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    assert_eq!(ws.expect_close().await.0, 4001);
    let (status, _) = bob.get("/api/v1/me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let login = server
        .http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({ "username": "bob", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn only_admins_create_users_unless_registration_is_open() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let (status, err) = alice
        .post(
            "/api/v1/users",
            json!({ "name": "eve", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin_only"))
    );
    let anon = server
        .http
        .post(format!("{}/api/v1/users", server.base))
        .json(&json!({ "name": "eve", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    let admin = server.admin().await;
    let (status, err) = admin
        .post(
            "/api/v1/users",
            json!({ "name": "alice", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("user_exists"))
    );
    let (status, err) = admin
        .post(
            "/api/v1/users",
            json!({ "name": "Bad Name!", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_user_name"))
    );
    let (status, err) = admin
        .post(
            "/api/v1/users",
            json!({ "name": "shorty", "password": "short" }),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("weak_password"))
    );

    let open = TestServer::start_with(|c| c.auth.open_registration = true).await;
    let resp = open
        .http
        .post(format!("{}/api/v1/users", open.base))
        .json(&json!({ "name": "eve", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = open
        .http
        .post(format!("{}/api/v1/users", open.base))
        .json(&json!({ "name": "eve2", "password": PASSWORD, "admin": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "no self-made admins");
}

#[tokio::test]
async fn metrics_need_an_admin_or_the_scrape_token() {
    let server = TestServer::start_with(|c| {
        c.metrics_token = Some(switchboard::config::Secret("scrape-me".into()))
    })
    .await;
    let alice = server.user("alice").await;
    let (status, _) = alice.get("/metrics").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = server.admin().await.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str()
            .unwrap()
            .contains("switchboard_ws_connections"),
        "{body}"
    );
    let scraped = server
        .http
        .get(format!("{}/metrics", server.base))
        .bearer_auth("scrape-me")
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    let health = server
        .http
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

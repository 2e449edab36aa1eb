//! The `authenticate` hook and the shipped `auth-policy` plugin through the real login
//! endpoint: API-key logins map to existing users and get ordinary sessions; wrong keys,
//! unknown methods and malformed requests are refused with clear errors; `on-login` policy
//! (e-mail domains, groups, login hours) applies to every login, exemptions included.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::plugins_runtime::harness::Spec;
use crate::plugins_runtime::harness::server_with;
use crate::support::{PASSWORD, TestServer};

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn policy(settings: &str) -> Spec {
    Spec::new("auth-policy", "auth-policy")
        .caps(&["config", "log"])
        .settings(&format!("exempt = [\"admin\"]\n{settings}"))
}

async fn login(server: &TestServer, body: Value) -> (StatusCode, Value) {
    let resp = server
        .http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn create(server: &TestServer, name: &str) {
    let (status, body) = server
        .admin()
        .await
        .post(
            "/api/v1/users",
            json!({ "name": name, "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn api_keys_log_in_through_the_authenticate_hook() {
    let settings = format!(
        "\"api_key.{}\" = \"alice\"\n\"api_key.{}\" = \"ghost\"\n",
        sha256_hex("sk-alice"),
        sha256_hex("sk-ghost")
    );
    let (server, _plugins) = server_with(vec![policy(&settings)]).await;
    create(&server, "alice").await;

    // Accepted: an ordinary session for alice, whose token works like any other.
    let (status, pair) = login(
        &server,
        json!({ "method": "api-key", "credential": "sk-alice" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    assert_eq!(pair["user"]["name"], "alice");
    let me = server
        .http
        .get(format!("{}/api/v1/me", server.base))
        .bearer_auth(pair["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let (status, _) = login(
        &server,
        json!({ "method": "api-key", "username": "alice", "credential": "sk-alice" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Refusals, each with its own clear error.
    let (status, err) = login(
        &server,
        json!({ "method": "api-key", "credential": "sk-wrong" }),
    )
    .await;
    assert_eq!(
        (
            status,
            err["rejection"]["code"].as_str(),
            err["rejection"]["plugin"].as_str()
        ),
        (
            StatusCode::FORBIDDEN,
            Some("credentials_rejected"),
            Some("auth-policy")
        ),
        "{err}"
    );
    let (status, err) = login(
        &server,
        json!({ "method": "api-key", "username": "bob", "credential": "sk-alice" }),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a key is bound to its user: {err}"
    );
    let (status, err) = login(
        &server,
        json!({ "method": "api-key", "credential": "sk-ghost" }),
    )
    .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials")),
        "accepted for a user that does not exist: {err}"
    );
    let (status, err) = login(&server, json!({ "method": "sso-token", "credential": "x" })).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unsupported_login_method")),
        "every plugin deferred: {err}"
    );
    for bad in [
        json!({ "method": "api-key", "password": "x" }),
        json!({ "method": "API KEY", "credential": "x" }),
        json!({ "username": "alice" }),
        json!({ "username": "alice", "password": PASSWORD, "credential": "x" }),
    ] {
        let (status, err) = login(&server, bad.clone()).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_login_request")),
            "{bad}: {err}"
        );
    }
    // Passwords still work as before.
    server.login("alice", PASSWORD).await;
}

#[tokio::test]
async fn without_an_authenticate_plugin_other_methods_are_unsupported() {
    let server = TestServer::start().await;
    let (status, err) = login(&server, json!({ "method": "api-key", "credential": "k" })).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unsupported_login_method"))
    );
}

#[tokio::test]
async fn auth_policy_limits_domains_and_groups() {
    let settings = "allowed_domains = [\"example.com\"]\ndefault_domain = \"example.com\"\n\
                    \"email.eve\" = \"eve@evil.test\"\nallowed_groups = [\"staff\"]\n\
                    \"group.staff\" = [\"alice\", \"eve\"]\n";
    let (server, _plugins) = server_with(vec![policy(settings)]).await;
    for name in ["alice", "eve", "bob"] {
        create(&server, name).await;
    }
    server.login("alice", PASSWORD).await;
    for (name, why) in [("eve", "evil.test"), ("bob", "groups")] {
        let (status, err) = login(&server, json!({ "username": name, "password": PASSWORD })).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {err}");
        assert_eq!(err["rejection"]["code"], "login_denied");
        assert!(err["message"].as_str().unwrap().contains(why), "{err}");
    }
}

#[tokio::test]
async fn auth_policy_enforces_login_hours() {
    // A one-hour window starting two hours from now cannot contain the present.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hour = (now / 3600 + 2) % 24;
    let settings = format!("login_hours = \"{hour:02}:00-{:02}:00\"\n", (hour + 1) % 24);
    let (server, _plugins) = server_with(vec![policy(&settings)]).await;
    create(&server, "alice").await;
    let (status, err) = login(
        &server,
        json!({ "username": "alice", "password": PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(err["message"].as_str().unwrap().contains("hour"), "{err}");
    // The exempt administrator still gets in (`create` logged in as admin already).
    server.admin().await;
}

//! Login budgets that hold: taken before the password is checked (so concurrency cannot
//! multiply them), keyed by client address (so an attacker cannot lock the real user out
//! from elsewhere), believed from a proxy header only when the peer is a trusted proxy, and
//! audited.

use std::net::IpAddr;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, PASSWORD, TestServer};

async fn login_from(
    server: &TestServer,
    forwarded_for: Option<&str>,
    name: &str,
    password: &str,
) -> (StatusCode, Value) {
    let mut request = server
        .http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({ "username": name, "password": password }));
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_get_only_the_budget_and_the_real_user_still_gets_in() {
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let server = TestServer::start_with(|c| {
        // The test client plays a reverse proxy that names the client in X-Forwarded-For.
        c.http.trusted_proxies = vec![loopback];
        c.auth.login_attempts_per_minute = 10;
        c.auth.login_attempts_per_address_per_minute = 15;
    })
    .await;
    let admin = server.admin().await;
    admin.create_user("alice").await;
    admin.create_user("bob").await;
    let attacker = "203.0.113.66";

    // A hundred wrong passwords at once: only the budget's worth are even checked.
    let guesses = (0..100).map(|i| {
        let server = &server;
        async move { login_from(server, Some(attacker), "alice", &format!("guess-{i}-wrong")).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::UNAUTHORIZED)
        .count();
    let refused = answers
        .iter()
        .filter(|(status, body)| {
            *status == StatusCode::TOO_MANY_REQUESTS && body["code"] == "too_many_login_attempts"
        })
        .count();
    assert_eq!(checked, 10, "exactly the budget was checked: {answers:?}");
    assert_eq!(refused, 90);

    // The attacker cannot lock alice out: from her own address she logs in at once.
    let (status, body) = login_from(&server, Some("198.51.100.7"), "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Even the right password is refused from the attacker's address for now.
    let (status, _) = login_from(&server, Some(attacker), "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    // Spraying other accounts from the same address runs into the address budget (15
    // failures a minute across all accounts; 10 are spent).
    let mut sprayed = Vec::new();
    for name in ["bob", "carol", "dave", "erin", "frank", "grace", "heidi"] {
        sprayed.push(
            login_from(&server, Some(attacker), name, "Spray-password-1")
                .await
                .0,
        );
    }
    assert_eq!(
        sprayed,
        [
            vec![StatusCode::UNAUTHORIZED; 5],
            vec![StatusCode::TOO_MANY_REQUESTS; 2]
        ]
        .concat()
    );
    // Bob, elsewhere, is untouched.
    let (status, _) = login_from(&server, Some("198.51.100.8"), "bob", PASSWORD).await;
    assert_eq!(status, StatusCode::OK);

    // Failed logins and lockouts are audit records naming the address.
    let (_, audit) = admin.get("/api/v1/admin/audit?limit=500").await;
    let records = audit.as_array().unwrap();
    let count = |action: &str| {
        records
            .iter()
            .filter(|r| r["action"] == action && r["actor"] == format!("address:{attacker}"))
            .count()
    };
    assert_eq!(count("auth.login_failed"), 15, "{audit}");
    assert!(
        count("auth.lockout") >= 2,
        "one per budget that ran out: {audit}"
    );
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "user.create" && r["detail"]["name"] == "alice"),
        "{audit}"
    );
}

#[tokio::test]
async fn a_client_cannot_escape_its_budget_by_naming_another_address() {
    // Not behind a trusted proxy: X-Forwarded-For is the client's own claim, ignored.
    let server = TestServer::start_with(|c| c.auth.login_attempts_per_minute = 5).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let fake = format!("192.0.2.{i}");
        statuses.push(
            login_from(&server, Some(&fake), "admin", "wrong-password-x")
                .await
                .0,
        );
    }
    assert_eq!(
        statuses,
        [
            vec![StatusCode::UNAUTHORIZED; 5],
            vec![StatusCode::TOO_MANY_REQUESTS; 3]
        ]
        .concat()
    );
    // A success from the same address is refused too until the minute ends...
    let (status, body) = login_from(&server, None, "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["retry_after_ms"]
            .as_u64()
            .is_some_and(|ms| ms <= 60_000)
    );
}

#[tokio::test]
async fn a_success_gives_the_attempt_back() {
    let server = TestServer::start_with(|c| c.auth.login_attempts_per_minute = 3).await;
    // Typos followed by the right password, again and again: never locked out.
    for _ in 0..4 {
        for _ in 0..2 {
            let (status, _) = login_from(&server, None, "admin", "typo-password-1").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, body) = login_from(&server, None, "admin", ADMIN_PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

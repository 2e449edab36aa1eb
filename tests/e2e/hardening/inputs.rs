//! The weaker points closed in the same pass: private files, display names that cannot
//! impersonate, bounded and clamped `sync` frames, a metadata namespace users cannot
//! write, a minimum signing secret and password policy, uncacheable tokens, and the
//! one-time admin password kept off the log stream.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, PASSWORD, TestServer};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_directory_and_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = alice.group("files", &[]).await;
    alice.send_http(room, "m1", "hello").await;
    let dir = server.dir.path().to_path_buf();
    let db = dir.join("switchboard.db");
    let files = [
        db.clone(),
        dir.join("switchboard.db-wal"),
        dir.join("switchboard.db-shm"),
    ];
    assert_eq!(mode(&dir), 0o700);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }

    // An install that left them open to everyone is tightened at the next start.
    let dir_handle = server.stop().await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = TestServer::start_in(dir_handle, |_| {}).await;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&db), 0o600);
    drop(server);
}

#[tokio::test]
async fn display_names_cannot_hide_or_reverse_text() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let create = |name: &str, display: &str| json!({ "name": name, "password": PASSWORD, "display_name": display });
    for (i, display) in [
        "bob\u{202e}", // right-to-left override
        "b\u{200b}ob", // zero-width space
        "bo\u{2066}b", // bidi isolate
        "bob\u{7}",    // a control character
        "\u{feff}",    // nothing visible
        "   ",
    ]
    .iter()
    .enumerate()
    {
        let (status, body) = admin
            .post("/api/v1/users", create(&format!("m{i}"), display))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_display_name")),
            "{display:?}: {body}"
        );
    }
    // Look-alike letters are real names in other scripts: allowed, and told apart by the
    // unique user name clients show beside them.
    let (status, body) = admin
        .post("/api/v1/users", create("mallory", "b\u{043e}b"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "mallory");
}

#[tokio::test]
async fn sync_frames_are_bounded_and_cursors_past_the_end_are_clamped() {
    let server = TestServer::start_with(|c| c.limits.max_sync_rooms = 3).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("sync", &[bob.id]).await;
    alice.send_http(room, "m1", "one").await;
    alice.send_http(room, "m2", "two").await;

    let mut ws = alice.ws(&server).await;
    ws.send(json!({ "type": "sync", "req": "big", "rooms": { "1": 0, "2": 0, "3": 0, "4": 0 } }))
        .await;
    let err = ws.recv_type("error").await;
    assert_eq!(
        (err["code"].as_str(), err["req"].as_str()),
        (Some("too_many_rooms"), Some("big"))
    );

    // A cursor far past the end: clamped to the room's last seq, and live delivery goes on.
    ws.send(json!({ "type": "sync", "req": "s", "rooms": { room.to_string(): 1_000_000 } }))
        .await;
    let synced = ws.recv_type("synced").await;
    let last = synced["rooms"][room.to_string()].as_i64().unwrap();
    assert!((2..1_000_000).contains(&last), "{synced}");
    let (status, _) = bob.send_http(room, "b1", "after the clamp").await;
    assert_eq!(status, StatusCode::CREATED);
    let event = ws.recv_type("event").await;
    assert_eq!(event["body"], "after the clamp", "{event}");
    assert_eq!(event["seq"].as_i64(), Some(last + 1));
}

#[tokio::test]
async fn users_cannot_write_the_metadata_that_marks_a_plugin_change() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = alice.group("meta", &[]).await;
    for key in [
        "dlp.redacted",
        "modified",
        "redacted",
        "keyword-guard.rewrites",
        "bot.plugin",
    ] {
        let (status, body) = alice
            .post(
                &format!("/api/v1/rooms/{room}/messages"),
                json!({ "client_msg_id": format!("c-{key}"), "body": "hi", "metadata": { key: "1" } }),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("reserved_metadata")),
            "{key}"
        );
    }
    let (status, _) = alice
        .post(
            &format!("/api/v1/rooms/{room}/messages"),
            json!({ "client_msg_id": "ok", "body": "hi", "metadata": { "lang": "en" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_short_signing_secret_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = switchboard::config::Config::default();
    config.data_dir = dir.path().to_path_buf();
    config.auth.jwt_secret = Some(switchboard::config::Secret("x".into()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        switchboard::serve(config, listener, std::future::pending()),
    )
    .await
    .expect("start fails at once");
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("jwt_secret") && err.contains("32"), "{err}");
}

#[tokio::test]
async fn trivial_passwords_are_refused() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    for (name, password) in [
        ("u1", "short"),
        ("u2", "password123"),
        ("u3", "12345678"),
        ("u4", "aaaaaaaaaaaa"),
        ("u5", "qwertyuiop"),
        ("longname", "longname"),
    ] {
        let (status, body) = admin
            .post(
                "/api/v1/users",
                json!({ "name": name, "password": password }),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("weak_password")),
            "{password}"
        );
    }
    // The policy is the operator's to set.
    let lenient = TestServer::start_with(|c| {
        c.auth.password_reject_common = false;
        c.auth.password_min_chars = 4;
    })
    .await;
    let (status, body) = lenient
        .admin()
        .await
        .post(
            "/api/v1/users",
            json!({ "name": "u2", "password": "password123" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn token_responses_are_never_cached() {
    let server = TestServer::start().await;
    let login = server
        .http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.headers()["cache-control"], "no-store");
    let body: Value = login.json().await.unwrap();
    let refreshed = server
        .http
        .post(format!("{}/api/v1/auth/refresh", server.base))
        .json(&json!({ "refresh_token": body["refresh_token"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(refreshed.headers()["cache-control"], "no-store");
}

/// The real binary: the log goes to stderr; the one-time password, with no terminal to print
/// it on (a service, a container, this pipe), goes to a file only the server's user reads —
/// never to the log or the output a service manager collects.
#[tokio::test]
async fn the_one_time_admin_password_is_not_on_the_log_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env_clear()
        .current_dir(dir.path())
        .env("RUST_LOG", "debug,sqlx=warn")
        .env("SWITCHBOARD_LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD_DATA_DIR", dir.path().join("data"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read_all = |mut pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut text).await;
            text
        })
    };
    let out = read_all(Box::new(stdout));
    let err = read_all(Box::new(stderr));
    // Wait for the start to finish (the database exists, the password was printed), then
    // stop the server so both pipes end.
    let db = dir.path().join("data").join("switchboard.db");
    for _ in 0..200 {
        if db.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    #[cfg(unix)]
    {
        let pid = child.id().unwrap();
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let (out, err) = (out.await.unwrap(), err.await.unwrap());
    let file = dir.path().join("data").join("initial-admin-password");
    let password = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("the password in {}: {e} / {err}", file.display()));
    let password = password.trim_end();
    assert!(password.len() >= 16);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "only the server's user reads it");
    }
    assert!(
        !err.contains(password),
        "the log holds the password:\n{err}"
    );
    assert!(!out.contains(password), "stdout holds the password:\n{out}");
    assert!(
        err.contains("initial-admin-password"),
        "the log says where the password is:\n{err}"
    );
    assert!(
        err.contains("switchboard listening"),
        "the log is on stderr:\n{err}"
    );
    assert!(!out.contains("listening"), "no log lines on stdout:\n{out}");
}

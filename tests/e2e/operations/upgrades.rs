//! Safe upgrades: today's binary starts on a database the previous release wrote (kept as a
//! fixture per release, `tests/fixtures/releases/`), `migrate --status` and `--dry-run`
//! change nothing, and a database a newer binary upgraded is refused before anything runs.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{copy_dir, file_hash, install_env, switchboard, text};
use crate::cluster::PgDb;
use crate::support::TestServer;

/// The release whose data today's binary must keep working on.
const PREVIOUS_RELEASE: &str = "0.2.0";

fn fixture(part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/releases")
        .join(PREVIOUS_RELEASE)
        .join(part)
}

/// Load the PostgreSQL fixture's dump into a fresh database.
async fn load_dump(db: &PgDb, dump: &Path) {
    let out = tokio::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(dump)
        .arg(&db.url)
        .output()
        .await
        .expect("run psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start today's binary on the previous release's data, and find everything there.
async fn the_previous_release_upgrades(pg: Option<PgDb>) {
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let url = pg.as_ref().map(|db| db.url.clone());
    match &pg {
        None => copy_dir(&fixture("sqlite"), data.path()),
        Some(db) => {
            copy_dir(&fixture("postgres"), data.path());
            let dump = data.path().join("postgres.sql");
            load_dump(db, &dump).await;
            std::fs::remove_file(dump).unwrap();
        }
    }
    let env = install_env(data.path(), url.as_deref());

    // `--status` and `--dry-run` list what is pending and change nothing.
    let sqlite_file = data.path().join("switchboard.db");
    let before = pg.is_none().then(|| file_hash(&sqlite_file));
    let status = switchboard(&["migrate", "--status"], &env);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("pending"), "{}", text(&status));
    let dry = switchboard(&["migrate", "--dry-run"], &env);
    assert!(dry.status.success(), "{}", text(&dry));
    if pg.is_none() {
        assert!(text(&dry).contains("scratch copy"), "{}", text(&dry));
        assert_eq!(
            before,
            Some(file_hash(&sqlite_file)),
            "the dry run changed nothing"
        );
    }
    let again = switchboard(&["migrate", "--status", "--json"], &env);
    let pending = serde_json::from_slice::<Value>(&again.stdout).unwrap()["pending"]
        .as_array()
        .map(Vec::len);
    assert!(
        pending.is_some_and(|n| n > 0),
        "still pending: {}",
        text(&again)
    );

    // `migrate` applies them; then nothing is pending.
    let applied = switchboard(&["migrate"], &env);
    assert!(applied.status.success(), "{}", text(&applied));
    let after = switchboard(&["migrate", "--status", "--json"], &env);
    let after: Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(after["pending"], serde_json::json!([]), "{after}");
    assert_eq!(after["database_version"], after["binary_version"]);

    // The audit chain the release wrote (and signed) verifies under today's binary.
    let audit = switchboard(&["audit", "verify"], &env);
    assert!(audit.status.success(), "{}", text(&audit));

    let server = TestServer::start_in(data, |c| {
        if let Some(url) = &url {
            c.database_url = Some(switchboard::config::Secret(url.clone()));
        }
    })
    .await;
    let mut clients = Vec::new();
    for (name, password) in expected["passwords"].as_object().unwrap() {
        clients.push(server.login(name, password.as_str().unwrap()).await);
    }
    let alice = &clients[0];
    for (room, messages) in expected["rooms"].as_object().unwrap() {
        let room: i64 = room.parse().unwrap();
        let history = alice.history(room, "?limit=200").await;
        for message in messages.as_array().unwrap() {
            let found = history
                .iter()
                .find(|e| e["seq"] == message["seq"])
                .unwrap_or_else(|| panic!("room {room}: {message} is missing"));
            assert_eq!(
                found["kind"], message["kind"],
                "room {room} seq {}",
                message["seq"]
            );
            assert_eq!(
                found["body"], message["body"],
                "room {room} seq {}",
                message["seq"]
            );
        }
    }
    for file in expected["files"].as_array().unwrap() {
        let response = alice
            .http
            .get(format!("{}/api/v1/files/{}", alice.base, file["id"]))
            .bearer_auth(&alice.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        use sha2::Digest as _;
        let bytes = response.bytes().await.unwrap();
        assert_eq!(
            Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str()),
            file["sha256"].as_str()
        );
    }
    // And it takes new messages where the release left off.
    let room: i64 = expected["rooms"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (status, ack) = alice
        .send_http(room, "after-upgrade", "written by today's binary")
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{ack}");
    server.stop().await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_binary_upgrades_the_previous_releases_sqlite_database() {
    the_previous_release_upgrades(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_binary_upgrades_the_previous_releases_postgres_database() {
    the_previous_release_upgrades(Some(PgDb::create().await)).await;
}

/// A database a newer binary upgraded: `serve`, `migrate` and `backup` refuse it, saying so,
/// and it is left as it was.
async fn a_newer_database_is_refused(pg: Option<PgDb>) {
    let url = pg.as_ref().map(|db| db.url.clone());
    let server = TestServer::start_with(|c| {
        if let Some(url) = &url {
            c.database_url = Some(switchboard::config::Secret(url.clone()));
        }
    })
    .await;
    let data = server.stop().await;
    // What a future release's migration would leave behind.
    let future = "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                  execution_time) VALUES (999999, 'from the future', TRUE, X'00', 1)";
    let future_pg = future.replace("X'00'", "'\\x00'::bytea");
    let sqlite_file = data.path().join("switchboard.db");
    match &url {
        None => {
            use sqlx::Connection as _;
            let mut conn =
                sqlx::SqliteConnection::connect(&format!("sqlite://{}", sqlite_file.display()))
                    .await
                    .unwrap();
            sqlx::query(future).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        Some(url) => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(&future_pg).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
    let before = url.is_none().then(|| file_hash(&sqlite_file));
    let env = install_env(data.path(), url.as_deref());
    let mut serve_env = env.clone();
    serve_env.push(("SWITCHBOARD_LISTEN", "127.0.0.1:0".into()));
    for args in [&["serve"][..], &["migrate"], &["migrate", "--status"]] {
        let out = switchboard(args, &serve_env);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("newer than this binary's") && said.contains("999999"),
            "{args:?} says why: {said}"
        );
    }
    let backups = tempfile::tempdir().unwrap();
    let out = switchboard(
        &["backup", backups.path().join("b").to_str().unwrap()],
        &env,
    );
    assert!(
        text(&out).contains("newer than this binary's"),
        "{}",
        text(&out)
    );
    assert!(!backups.path().join("b").exists());
    if let Some(before) = before {
        assert_eq!(file_hash(&sqlite_file), before, "the database is unchanged");
    } else {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url.as_deref().unwrap())
            .await
            .unwrap();
        let newest: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(newest, 999_999);
        conn.close().await.unwrap();
    }
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_upgraded_by_a_newer_binary_is_refused_on_sqlite() {
    a_newer_database_is_refused(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_upgraded_by_a_newer_binary_is_refused_on_postgres() {
    a_newer_database_is_refused(Some(PgDb::create().await)).await;
}

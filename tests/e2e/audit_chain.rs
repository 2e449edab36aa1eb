//! The tamper-evident audit log through the real server and the real `switchboard audit
//! verify`, on SQLite and PostgreSQL: an intact chain verifies; a changed, an inserted and a
//! deleted record are each reported as such; an end cut off after a checkpoint is reported,
//! even when the database's own checkpoints were wiped too, from the external checkpoint
//! file. Appends from several stores on one PostgreSQL database form one chain.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use sqlx::{Connection as _, Row as _};
use switchboard::store::chain;

use crate::hardening::{BACKENDS, Backend, start_on};
use crate::support::PASSWORD;

/// What happens to the chain before it is verified.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    Nothing,
    Modify,
    Insert,
    Delete,
    Truncate,
}

/// A raw connection to the server's database, for tampering as a database admin would.
enum Raw {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Raw {
    async fn open(dir: &Path, pg: Option<&str>) -> Self {
        match pg {
            None => Raw::Sqlite(
                sqlx::SqliteConnection::connect(&format!(
                    "sqlite://{}",
                    dir.join("switchboard.db").display()
                ))
                .await
                .unwrap(),
            ),
            Some(url) => Raw::Postgres(sqlx::PgConnection::connect(url).await.unwrap()),
        }
    }

    async fn exec(&mut self, sql: &str) {
        match self {
            Raw::Sqlite(c) => {
                sqlx::query(sql).execute(c).await.unwrap();
            }
            Raw::Postgres(c) => {
                sqlx::query(sql).execute(c).await.unwrap();
            }
        }
    }

    async fn hash_at(&mut self, seq: i64) -> String {
        let sql = format!("SELECT hash FROM audit WHERE seq = {seq}");
        match self {
            Raw::Sqlite(c) => sqlx::query(&sql).fetch_one(c).await.unwrap().get(0),
            Raw::Postgres(c) => sqlx::query(&sql).fetch_one(c).await.unwrap().get(0),
        }
    }

    async fn head(&mut self) -> i64 {
        let sql = "SELECT seq FROM audit_head WHERE id = 1";
        match self {
            Raw::Sqlite(c) => sqlx::query(sql).fetch_one(c).await.unwrap().get(0),
            Raw::Postgres(c) => sqlx::query(sql).fetch_one(c).await.unwrap().get(0),
        }
    }
}

fn verify(data: &Path, pg: Option<&str>, checkpoints: Option<&Path>) -> (bool, Value, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .env_clear()
        .env("SWITCHBOARD_DATA_DIR", data)
        .arg("audit")
        .arg("verify")
        .arg("--json");
    if let Some(url) = pg {
        command.env("SWITCHBOARD_DATABASE_URL", url);
    }
    if let Some(file) = checkpoints {
        command.arg("--checkpoints").arg(file);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    let text = String::from_utf8_lossy(&stdout).into_owned();
    let report = serde_json::from_str(&text).unwrap_or(Value::Null);
    (
        status.success(),
        report,
        format!("{text}{}", String::from_utf8_lossy(&stderr)),
    )
}

async fn scenario(backend: Backend, tamper: Tamper) {
    let sink_dir = tempfile::tempdir().unwrap();
    let sink = sink_dir.path().join("checkpoints.jsonl");
    let sink_for_config = sink.clone();
    let (server, db) = start_on(backend, move |c| {
        c.compliance.checkpoint_file = Some(sink_for_config);
        c.compliance.audit_key = None;
    })
    .await;
    // Records of several kinds: accounts created, failed logins, a password reset.
    let admin = server.admin().await;
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(admin.create_user(&format!("u{i}")).await);
    }
    for _ in 0..3 {
        let _ = server
            .http
            .post(format!("{}/api/v1/auth/login", server.base))
            .json(&serde_json::json!({ "username": "u0", "password": "wrong-password-1" }))
            .send()
            .await
            .unwrap();
    }
    let _ = admin
        .patch(
            &format!("/api/v1/users/{}", users[1].id),
            serde_json::json!({ "password": format!("{PASSWORD} again") }),
        )
        .await;
    // A clean stop signs a checkpoint of the head (and appends it to the file).
    let dir = server.stop().await;
    let pg = db.as_ref().map(|d| d.url.clone());
    let pg = pg.as_deref();
    let mut raw = Raw::open(dir.path(), pg).await;
    let head = raw.head().await;
    assert!(head >= 8, "{backend:?}: {head} records");
    let (ok, report, out) = verify(dir.path(), pg, None);
    assert!(ok, "{backend:?}: an untouched chain verifies: {out}");
    assert_eq!(report["records"], head, "{out}");

    let expect = |ok: bool, report: &Value, out: &str, key: &str, want: Value| {
        assert!(!ok, "{backend:?} {tamper:?}: verify must fail: {out}");
        assert_eq!(report[key], want, "{backend:?} {tamper:?}: {out}");
    };
    match tamper {
        Tamper::Nothing => {}
        Tamper::Modify => {
            raw.exec("UPDATE audit SET actor = 'user:999' WHERE seq = 3")
                .await;
            let (ok, report, out) = verify(dir.path(), pg, None);
            expect(ok, &report, &out, "modified", serde_json::json!([3]));
            assert_eq!(report["inserted"], serde_json::json!([]), "{out}");
            assert_eq!(report["deleted"], serde_json::json!([]), "{out}");
        }
        Tamper::Delete => {
            raw.exec("DELETE FROM audit WHERE seq = 4").await;
            let (ok, report, out) = verify(dir.path(), pg, None);
            expect(ok, &report, &out, "deleted", serde_json::json!([[3, 5]]));
            assert_eq!(report["modified"], serde_json::json!([]), "{out}");
        }
        Tamper::Insert => {
            // A forger who knows the hash rule: make room at 4 and link a record there.
            raw.exec("UPDATE audit SET seq = -seq WHERE seq >= 4").await;
            raw.exec("UPDATE audit SET seq = 1 - seq WHERE seq < 0")
                .await;
            let prev = raw.hash_at(3).await;
            let detail = serde_json::json!({ "name": "ghost", "admin": true });
            let hash = chain::record_hash(&prev, 1, "system", "user.create", "user:77", &detail);
            let detail_sql = match backend {
                Backend::Sqlite => format!("'{detail}'"),
                Backend::Postgres => format!("'{detail}'::jsonb"),
            };
            raw.exec(&format!(
                "INSERT INTO audit (seq, at, actor, action, subject, detail, prev_hash, hash)
                 VALUES (4, 1, 'system', 'user.create', 'user:77', {detail_sql}, '{prev}', '{hash}')"
            ))
            .await;
            let (ok, report, out) = verify(dir.path(), pg, None);
            expect(ok, &report, &out, "inserted", serde_json::json!([4]));
            assert_eq!(report["modified"], serde_json::json!([]), "{out}");
            assert_eq!(report["deleted"], serde_json::json!([]), "{out}");
        }
        Tamper::Truncate => {
            // Cut the last three records off and move the head back, so the chain itself
            // is consistent: only the signed checkpoint can tell.
            let keep = head - 3;
            let keep_hash = raw.hash_at(keep).await;
            raw.exec(&format!("DELETE FROM audit WHERE seq > {keep}"))
                .await;
            raw.exec(&format!(
                "UPDATE audit_head SET seq = {keep}, hash = '{keep_hash}' WHERE id = 1"
            ))
            .await;
            let (ok, report, out) = verify(dir.path(), pg, None);
            expect(
                ok,
                &report,
                &out,
                "truncated",
                serde_json::json!({ "chain_ends_at": keep, "checkpoint_seq": head }),
            );
            // The admin also wipes the checkpoints in the database: the external file keeps
            // the truth.
            raw.exec("DELETE FROM audit_checkpoints").await;
            let (ok, _, out) = verify(dir.path(), pg, None);
            assert!(
                ok,
                "{backend:?}: without checkpoints the cut is invisible: {out}"
            );
            let (ok, report, out) = verify(dir.path(), pg, Some(&sink));
            expect(
                ok,
                &report,
                &out,
                "truncated",
                serde_json::json!({ "chain_ends_at": keep, "checkpoint_seq": head }),
            );
            // A forged checkpoint (not signed by the audit key) is reported as such.
            let forged = std::fs::read_to_string(&sink)
                .unwrap()
                .replace(&format!("\"seq\":{head}"), &format!("\"seq\":{}", head + 5));
            let forged_file = sink_dir.path().join("forged.jsonl");
            std::fs::write(&forged_file, forged).unwrap();
            let (ok, report, out) = verify(dir.path(), pg, Some(&forged_file));
            expect(
                ok,
                &report,
                &out,
                "bad_signatures",
                serde_json::json!([head + 5]),
            );
        }
    }
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_the_audit_log_is_detected_and_told_apart_on_both_stores() {
    for backend in BACKENDS {
        for tamper in [
            Tamper::Nothing,
            Tamper::Modify,
            Tamper::Insert,
            Tamper::Delete,
            Tamper::Truncate,
        ] {
            scenario(backend, tamper).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_from_several_writers_form_one_chain() {
    for backend in BACKENDS {
        let (server, db) = start_on(backend, |_| {}).await;
        let dir = server.stop().await;
        let url = match &db {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", dir.path().join("switchboard.db").display()),
        };
        // Two store handles on one database: two "nodes" (on SQLite, two processes' worth
        // of connections to one file).
        let options = switchboard::store::StoreOptions::default();
        let a = switchboard::store::open(&url, &options).await.unwrap();
        let b = switchboard::store::open(&url, &options).await.unwrap();
        let mut tasks = Vec::new();
        for (i, store) in [a.clone(), b.clone(), a.clone(), b.clone()]
            .into_iter()
            .enumerate()
        {
            tasks.push(tokio::spawn(async move {
                for n in 0..25 {
                    store
                        .append_audit(
                            &format!("user:{i}"),
                            "test.append",
                            "room:1",
                            &serde_json::json!({ "n": n }),
                        )
                        .await
                        .unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut walker = chain::Walker::default();
        let mut after = 0;
        loop {
            let page = a.audit_chain(after, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            for record in &page {
                walker.next(record);
            }
        }
        walker.finish();
        assert!(walker.breaks.is_empty(), "{backend:?}: {:?}", walker.breaks);
        let (head, _) = a.audit_head().await.unwrap();
        assert_eq!(walker.head().0, head);
        assert!(walker.records >= 100, "{backend:?}");
        drop(db);
    }
}

#[tokio::test]
async fn the_compliance_role_reads_and_verifies_the_log_and_every_read_is_on_record() {
    use reqwest::StatusCode;
    use serde_json::json;
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let admin = server.admin().await;
        let carol = admin.create_user("carol").await;
        let bob = admin.create_user("bob").await;
        // Without the role, refused: an admin is not a compliance reviewer.
        for who in [&bob, &admin] {
            let (status, body) = who.get("/api/v1/compliance/audit").await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("compliance_only")),
                "{backend:?}"
            );
        }
        // Only an admin grants it; it takes effect at once.
        let grant = json!({ "compliance": true });
        let (status, _) = bob
            .patch(&format!("/api/v1/users/{}", carol.id), grant.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, user) = admin
            .patch(&format!("/api/v1/users/{}", carol.id), grant)
            .await;
        assert_eq!(
            (status, &user["is_compliance"]),
            (StatusCode::OK, &json!(true))
        );

        let (status, page) = carol.get("/api/v1/compliance/audit?after=0&limit=2").await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: {page}");
        let records = page["records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["seq"], 1);
        assert_eq!(
            records[1]["prev_hash"], records[0]["hash"],
            "the links are shown"
        );
        assert_eq!(page["next_after"], 2);
        let (status, body) = carol.get("/api/v1/compliance/audit?after=-1").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_query"))
        );

        let (status, report) = carol.get("/api/v1/compliance/audit/verify").await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["modified"], json!([]));
        assert_eq!(report["deleted"], json!([]));
        assert!(report["records"].as_u64().unwrap() >= 3);

        // Every read, by the reviewer or an admin, is itself a record.
        let (status, _) = admin.get("/api/v1/admin/audit?limit=5").await;
        assert_eq!(status, StatusCode::OK);
        let (_, all) = carol
            .get("/api/v1/compliance/audit?after=0&limit=1000")
            .await;
        let all = all["records"].as_array().unwrap();
        let has = |action: &str, actor: String| {
            all.iter()
                .any(|r| r["action"] == action && r["actor"] == actor)
        };
        assert!(
            has("user.compliance_grant", format!("user:{}", admin.id)),
            "{all:?}"
        );
        assert!(
            has("audit.read", format!("user:{}", carol.id)),
            "{backend:?}"
        );
        assert!(
            has("audit.verify", format!("user:{}", carol.id)),
            "{backend:?}"
        );
        assert!(
            has("audit.read", format!("user:{}", admin.id)),
            "{backend:?}"
        );
    }
}

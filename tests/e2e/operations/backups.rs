//! `switchboard backup DEST` while messages flow, `backup verify`, `restore` into a fresh
//! installation; and every bad input (an unwritable or full destination, a corrupt or partial
//! backup, an occupied target) refused with a clear error and nothing changed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::Mutex;

use super::{copy_dir, file_hash, install_env, switchboard, text};
use crate::cluster::PgDb;
use crate::support::{Client, PASSWORD, TestServer};

/// A message the server acknowledged: its seq and body.
type Acked = (i64, String);

struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
    task: tokio::task::JoinHandle<()>,
}

/// One sender posting messages back to back, keeping every acknowledgement.
fn start_load(client: Client, room: i64) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let task = tokio::spawn({
        let (stop, acked) = (stop.clone(), acked.clone());
        async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = format!("load message {n}");
                let (status, reply) = client.send_http(room, &format!("load-{n}"), &body).await;
                assert_eq!(status, StatusCode::CREATED, "{reply}");
                let seq = reply["seq"].as_i64().expect("seq in the ack");
                acked.lock().await.push((seq, body));
            }
        }
    });
    Load { stop, acked, task }
}

async fn wait_for_acks(load: &Load, at_least: usize) {
    for _ in 0..2000 {
        if load.acked.lock().await.len() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the load did not reach {at_least} acknowledged messages");
}

/// Every message of `room`, oldest first, through the history API.
async fn all_messages(client: &Client, room: i64) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .history(room, &format!("?after={after}&limit=200"))
            .await;
        let Some(last) = page.last() else { break };
        after = last["seq"].as_i64().expect("seq");
        events.extend(page);
    }
    events
}

async fn upload_text(client: &Client, room: i64, name: &str, bytes: &[u8]) -> i64 {
    let response = client
        .http
        .post(format!("{}/api/v1/rooms/{room}/files", client.base))
        .query(&[("name", name)])
        .bearer_auth(&client.token)
        .header("content-type", "text/plain")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().expect("file id")
}

async fn download(client: &Client, id: i64) -> Vec<u8> {
    let response = client
        .http
        .get(format!("{}/api/v1/files/{id}", client.base))
        .bearer_auth(&client.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap().to_vec()
}

/// Back up a busy server, restore into a fresh installation, and find there every message
/// acknowledged before the backup started, the stored file, and an intact audit chain.
async fn backup_under_load_and_restore(pg: Option<(PgDb, PgDb)>) {
    let (source_db, target_db) = match &pg {
        Some((a, b)) => (Some(a.url.clone()), Some(b.url.clone())),
        None => (None, None),
    };
    let server = TestServer::start_with(|c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
        if let Some(url) = &source_db {
            c.database_url = Some(switchboard::config::Secret(url.clone()));
        }
    })
    .await;
    let admin = server.admin().await;
    let alice = admin.create_user("alice").await;
    let room = alice.group("backed-up", &[]).await;
    let file_bytes = b"quarterly figures, kept".repeat(100);
    let file = upload_text(&alice, room, "figures.txt", &file_bytes).await;

    let load = start_load(alice.clone(), room);
    wait_for_acks(&load, 50).await;
    let acked_before: Vec<Acked> = load.acked.lock().await.clone();

    let backups = tempfile::tempdir().unwrap();
    let dest = backups.path().join("monday");
    let env = install_env(server.dir.path(), source_db.as_deref());
    let out = tokio::task::spawn_blocking({
        let (dest, env) = (dest.clone(), env.clone());
        move || switchboard(&["backup", dest.to_str().unwrap()], &env)
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The load went on during and after the backup: it was taken while messages flowed.
    let during = load.acked.lock().await.len();
    wait_for_acks(&load, during + 20).await;
    load.stop.store(true, Ordering::Relaxed);
    load.task.await.unwrap();
    assert!(
        load.acked.lock().await.len() > acked_before.len(),
        "messages were acknowledged while the backup ran"
    );

    let verified = switchboard(&["backup", "verify", dest.to_str().unwrap()], &env);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("sound"), "{}", text(&verified));

    // Restore into a fresh installation: a new data directory (and an empty database).
    let restored_dir = tempfile::tempdir().unwrap();
    let restore_env = install_env(restored_dir.path(), target_db.as_deref());
    let restored = switchboard(&["restore", dest.to_str().unwrap()], &restore_env);
    assert!(restored.status.success(), "{}", text(&restored));
    if let Some(url) = &target_db {
        // The restore analyzed what it loaded: the planner's statistics know the room log
        // is not empty (before autovacuum would get to it).
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let analyzed: bool = sqlx::query_scalar(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'events'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(analyzed, "the restore ran ANALYZE on the restored tables");
    }

    // The restored installation's audit chain verifies with its restored key.
    let audit = switchboard(&["audit", "verify"], &restore_env);
    assert!(audit.status.success(), "{}", text(&audit));
    assert!(text(&audit).contains("intact"), "{}", text(&audit));

    drop(admin);
    server.stop().await;
    let server = TestServer::start_in(restored_dir, |c| {
        if let Some(url) = &target_db {
            c.database_url = Some(switchboard::config::Secret(url.clone()));
        }
    })
    .await;
    let alice = server.login("alice", PASSWORD).await;
    let messages = all_messages(&alice, room).await;
    for (seq, body) in &acked_before {
        let found = messages.iter().find(|e| e["seq"].as_i64() == Some(*seq));
        assert_eq!(
            found.and_then(|e| e["body"].as_str()),
            Some(body.as_str()),
            "acknowledged message {seq} is in the restored installation"
        );
    }
    assert_eq!(
        download(&alice, file).await,
        file_bytes,
        "the stored file came back"
    );
    server.stop().await;
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_every_acknowledged_message_on_sqlite() {
    backup_under_load_and_restore(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_under_load_restores_every_acknowledged_message_on_postgres() {
    let pair = (PgDb::create().await, PgDb::create().await);
    backup_under_load_and_restore(Some(pair)).await;
}

/// Every file under `dir`, relative, sorted: to show a command left a directory as it was.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_destinations_and_bad_backups_get_clear_errors_and_change_nothing() {
    let plugins = tempfile::tempdir().unwrap();
    let plugins_dir = plugins.path().to_path_buf();
    let server = TestServer::start_with(move |c| c.plugins.dir = Some(plugins_dir)).await;
    // What an operator keeps beside the installed plugins comes along too.
    std::fs::write(
        plugins.path().join("NOTES.txt"),
        b"dlp settings agreed with legal",
    )
    .unwrap();
    let admin = server.admin().await;
    let alice = admin.create_user("alice").await;
    let room = alice.group("kept", &[]).await;
    upload_text(&alice, room, "notes.txt", &b"notes ".repeat(50_000)).await;
    for n in 0..5 {
        alice.send_http(room, &format!("m{n}"), "kept safe").await;
    }
    let mut env = install_env(server.dir.path(), None);
    env.push((
        "SWITCHBOARD_PLUGINS__DIR",
        plugins.path().display().to_string(),
    ));
    let scratch = tempfile::tempdir().unwrap();

    // An unwritable destination: its parent is a regular file.
    let file = scratch.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = switchboard(&["backup", file.join("backup").to_str().unwrap()], &env);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("a-file"),
        "names the path: {}",
        text(&out)
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // An existing destination is never overwritten.
    let existing = scratch.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep"), b"mine").unwrap();
    let out = switchboard(&["backup", existing.to_str().unwrap()], &env);
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    assert_eq!(listing(&existing), vec![PathBuf::from("keep")]);

    // A full disk: a 256 KiB filesystem cannot hold the ~300 KB file. Mounting needs root,
    // which CI has; elsewhere this part says so and is skipped.
    let small = scratch.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let out = switchboard(&["backup", small.join("full").to_str().unwrap()], &env);
        let listed = listing(&small);
        let _ = std::process::Command::new("umount").arg(&small).status();
        assert!(!out.status.success(), "{}", text(&out));
        let said = text(&out).to_lowercase();
        assert!(
            said.contains("no space") || said.contains("full"),
            "says the disk is full: {said}"
        );
        assert!(listed.is_empty(), "nothing left behind: {listed:?}");
    } else {
        eprintln!("SKIPPED the full-disk case: mounting a tmpfs needs root");
    }

    // A good backup, then damaged copies of it.
    let good = scratch.path().join("good");
    let out = switchboard(&["backup", good.to_str().unwrap()], &env);
    assert!(out.status.success(), "{}", text(&out));

    let restore_into = tempfile::tempdir().unwrap();
    let mut restore_env = install_env(restore_into.path(), None);
    let restored_plugins = restore_into.path().join("plugins");
    restore_env.push((
        "SWITCHBOARD_PLUGINS__DIR",
        restored_plugins.display().to_string(),
    ));
    let assert_refused = |backup: &Path, expected: &str| {
        let verify = switchboard(&["backup", "verify", backup.to_str().unwrap()], &env);
        assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
        assert!(
            text(&verify).contains(expected),
            "{expected}: {}",
            text(&verify)
        );
        let restore = switchboard(&["restore", backup.to_str().unwrap()], &restore_env);
        assert!(!restore.status.success(), "{}", text(&restore));
        assert!(
            text(&restore).contains(expected),
            "{expected}: {}",
            text(&restore)
        );
        assert!(
            listing(restore_into.path()).is_empty(),
            "restore wrote nothing"
        );
    };

    let corrupt = scratch.path().join("corrupt");
    copy_dir(&good, &corrupt);
    let db = corrupt.join("switchboard.db");
    let mut bytes = std::fs::read(&db).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&db, bytes).unwrap();
    assert_refused(&corrupt, "SHA-256 does not match");

    let truncated = scratch.path().join("truncated");
    copy_dir(&good, &truncated);
    let stored = listing(&truncated.join("files"))
        .into_iter()
        .find(|p| truncated.join("files").join(p).is_file())
        .expect("a stored file in the backup");
    let stored = truncated.join("files").join(stored);
    let len = std::fs::metadata(&stored).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&stored)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_refused(&truncated, "truncated or replaced");

    let partial = scratch.path().join("partial");
    copy_dir(&good, &partial);
    std::fs::remove_file(partial.join("manifest.json")).unwrap();
    assert_refused(&partial, "partial");

    let foreign = scratch.path().join("foreign");
    copy_dir(&good, &foreign);
    std::fs::write(foreign.join("extra.sql"), b"DROP TABLE events;").unwrap();
    assert_refused(&foreign, "not in the manifest");

    // Restoring over the running installation is refused, and its database is untouched.
    let live_db = server.dir.path().join("switchboard.db");
    let before = file_hash(&live_db);
    let out = switchboard(&["restore", good.to_str().unwrap()], &env);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("already holds an installation"),
        "{}",
        text(&out)
    );
    assert_eq!(file_hash(&live_db), before);

    // And the good one restores, the plugins directory with it.
    let out = switchboard(&["restore", good.to_str().unwrap()], &restore_env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(restore_into.path().join("switchboard.db").exists());
    assert_eq!(
        std::fs::read(restored_plugins.join("NOTES.txt")).unwrap(),
        b"dlp settings agreed with legal"
    );
    server.stop().await;
}

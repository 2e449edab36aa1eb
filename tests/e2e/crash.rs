//! `kill -9` under load, then restart: every acknowledged message is there exactly once, in
//! order, and a client resumes from its last seq with no gap and no duplicate. Runs the real
//! binary as a separate process so the kill is real.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{ADMIN_PASSWORD, PASSWORD, Ws};

struct Node {
    child: Child,
    base: String,
    addr: String,
}

impl Node {
    async fn start_with(dir: &std::path::Path, env: &[(String, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .env("SWITCHBOARD_LISTEN", &addr)
            .env("SWITCHBOARD_DATA_DIR", dir)
            .env("SWITCHBOARD_INITIAL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("SWITCHBOARD_LIMITS__MESSAGES_PER_SECOND", "100000")
            .env("SWITCHBOARD_LIMITS__MESSAGE_BURST", "100000")
            .env("SWITCHBOARD_LIMITS__WS_FRAMES_PER_SECOND", "100000")
            // The check below reads everything back in one `sync`.
            .env("SWITCHBOARD_LIMITS__RESUME_MAX_EVENTS", "1000000")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .spawn()
            .expect("start switchboard");
        let node = Self {
            child,
            base: format!("http://{addr}"),
            addr,
        };
        let http = reqwest::Client::new();
        for _ in 0..400 {
            if http
                .get(format!("{}/healthz", node.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("node did not start");
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn token(base: &str, name: &str, password: &str) -> String {
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "username": name, "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().expect("token").to_string()
}

/// A group room created by the holder of `token`, with `members`.
async fn group_room(base: &str, token: &str, name: &str, members: &[i64]) -> i64 {
    let room: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/rooms"))
        .bearer_auth(token)
        .json(&json!({ "kind": "group", "name": name, "members": members }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    room["id"].as_i64().unwrap()
}

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    kill_9_under_load(&[]).await;
}

/// The same on PostgreSQL, whose runs of messages take its one-statement path.
#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_message_on_postgres() {
    let db = crate::cluster::PgDb::create().await;
    kill_9_under_load(&[("SWITCHBOARD_DATABASE_URL".to_string(), db.url.clone())]).await;
}

async fn kill_9_under_load(env: &[(String, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_with(dir.path(), env).await;
    let http = reqwest::Client::new();
    let admin = token(&node.base, "admin", ADMIN_PASSWORD).await;
    for name in ["writer", "reader"] {
        let resp = http
            .post(format!("{}/api/v1/users", node.base))
            .bearer_auth(&admin)
            .json(&json!({ "name": name, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    let writer = token(&node.base, "writer", PASSWORD).await;
    let reader_id = 3; // admin = 1, writer = 2, reader = 3
    let room = group_room(&node.base, &writer, "crash", &[reader_id]).await;

    // Sixteen connections keep eight sends each in flight, so group-commit batches hold
    // long runs of messages (the stores' multi-message fast paths, several commands per
    // batch on SQLite); the node is killed mid-stream.
    const CONNECTIONS: usize = 16;
    const IN_FLIGHT: usize = 8;
    let url = format!("ws://{}/api/v1/ws?token={writer}", node.addr);
    let mut senders = Vec::new();
    for conn in 0..CONNECTIONS {
        let url = url.clone();
        senders.push(tokio::spawn(async move {
            let mut ws = Ws::connect(&url).await;
            let mut acked = Vec::new();
            'sending: for round in 0.. {
                let mut waiting = std::collections::HashMap::new();
                for i in 0..IN_FLIGHT {
                    let cmid = format!("k{conn}-{round}-{i}");
                    let body = format!("{conn}/{round}/{i}");
                    ws.send(json!({ "type": "send", "room": room, "client_msg_id": cmid, "body": body })).await;
                    waiting.insert(cmid, body);
                }
                // Events from the other connections interleave; wait for our acks.
                while !waiting.is_empty() {
                    match ws.recv_or_end(Duration::from_secs(5)).await {
                        Some(frame) if frame["type"] == "ack" => {
                            let cmid = frame["client_msg_id"].as_str().unwrap_or_default();
                            if let Some(body) = waiting.remove(cmid) {
                                acked.push((frame["seq"].as_i64().unwrap(), body));
                            }
                        }
                        Some(_) => {}
                        None => break 'sending,
                    }
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill9();
    let mut acked = Vec::new();
    for sender in senders {
        acked.extend(
            tokio::time::timeout(Duration::from_secs(30), sender)
                .await
                .expect("senders stop")
                .unwrap_or_default(),
        );
    }
    assert!(
        acked.len() > 20,
        "traffic was flowing when the node died ({} acks)",
        acked.len()
    );

    // Restart on the same data directory (and database): every acked message is there,
    // once, in seq order.
    let node = Node::start_with(dir.path(), env).await;
    let reader = token(&node.base, "reader", PASSWORD).await;
    let mut ws = Ws::connect(&format!("ws://{}/api/v1/ws?token={reader}", node.addr)).await;
    ws.send(json!({ "type": "sync", "rooms": { room.to_string(): 0 } }))
        .await;
    let mut stored = Vec::new();
    loop {
        let frame = ws.recv().await;
        if frame["type"] == "synced" {
            assert!(
                frame.get("truncated").is_none(),
                "the whole log came back: {frame}"
            );
            break;
        }
        if frame["type"] == "event" {
            stored.push((
                frame["seq"].as_i64().unwrap(),
                frame["body"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    let seqs: Vec<i64> = stored.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    for (seq, body) in &acked {
        let found: Vec<_> = stored.iter().filter(|(_, b)| b == body).collect();
        assert_eq!(found.len(), 1, "acked message {body} stored exactly once");
        assert_eq!(found[0].0, *seq, "at the seq its ack named");
    }
}

/// Every file under `dir`, recursively (what a crash could have left on disk).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// `kill -9` in the middle of an upload, on local and on S3 storage: after the restart there
/// is no trace of it — no row, no object, nothing staged on disk — and uploads work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_an_upload_leaves_no_orphan() {
    use tokio::io::AsyncWriteExt as _;
    for storage in crate::files::STORAGES {
        let dir = tempfile::tempdir().unwrap();
        let s3 = match storage {
            crate::files::Storage::S3 => Some(crate::files::S3Server::start().await),
            crate::files::Storage::Local => None,
        };
        let env: Vec<(String, String)> = match &s3 {
            Some(s3) => {
                let c = s3.config();
                vec![
                    ("SWITCHBOARD_FILES__S3__BUCKET".into(), c.bucket),
                    (
                        "SWITCHBOARD_FILES__S3__ENDPOINT".into(),
                        c.endpoint.unwrap(),
                    ),
                    (
                        "SWITCHBOARD_FILES__S3__ACCESS_KEY_ID".into(),
                        c.access_key_id.0,
                    ),
                    (
                        "SWITCHBOARD_FILES__S3__SECRET_ACCESS_KEY".into(),
                        c.secret_access_key.0,
                    ),
                    ("SWITCHBOARD_FILES__S3__ALLOW_HTTP".into(), "true".into()),
                ]
            }
            None => Vec::new(),
        };
        let node = Node::start_with(dir.path(), &env).await;
        let http = reqwest::Client::new();
        let admin = token(&node.base, "admin", ADMIN_PASSWORD).await;
        let room = group_room(&node.base, &admin, "uploads", &[]).await;

        // 12 MiB of a 40 MiB upload: two parts are in storage when the process dies.
        let mut socket = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
        let head = format!(
            "POST /api/v1/rooms/{room}/files?name=half.bin HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {admin}\r\nContent-Length: 41943040\r\n\r\n"
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![7u8; 1024 * 1024];
        for _ in 0..12 {
            socket.write_all(&chunk).await.unwrap();
        }
        socket.flush().await.unwrap();
        // Staged bytes show up on the local disk (a sentinel that the upload is under way).
        if s3.is_none() {
            for _ in 0..200 {
                if !files_under(&dir.path().join("files")).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            assert!(
                !files_under(&dir.path().join("files")).is_empty(),
                "the upload was under way"
            );
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        node.kill9();
        drop(socket);

        let node = Node::start_with(dir.path(), &env).await;
        let mut config = switchboard::config::Config::default();
        config.data_dir = dir.path().to_path_buf();
        config.files.s3 = s3.as_ref().map(|s| s.config());
        let files = switchboard::files::Files::open(&config).unwrap();
        assert_eq!(files.object_count().await.unwrap(), 0, "{storage:?}");
        if s3.is_none() {
            assert_eq!(
                files_under(&dir.path().join("files")),
                Vec::<std::path::PathBuf>::new()
            );
        }
        let store = switchboard::store::open(
            &format!("sqlite://{}", dir.path().join("switchboard.db").display()),
            &Default::default(),
        )
        .await
        .unwrap();
        assert!(
            store.files_in_state("uploading").await.unwrap().is_empty(),
            "{storage:?}"
        );
        drop(store);
        // And the next upload works.
        let admin = token(&node.base, "admin", ADMIN_PASSWORD).await;
        let response = http
            .post(format!(
                "{}/api/v1/rooms/{room}/files?name=whole.txt",
                node.base
            ))
            .bearer_auth(&admin)
            .body("after the crash")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            reqwest::StatusCode::CREATED,
            "{storage:?}"
        );
        assert_eq!(files.object_count().await.unwrap(), 1, "{storage:?}");
        drop(node);
    }
}

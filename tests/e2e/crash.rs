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
    async fn start(dir: &std::path::Path) -> Self {
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

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
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
    let room: serde_json::Value = http
        .post(format!("{}/api/v1/rooms", node.base))
        .bearer_auth(&writer)
        .json(&json!({ "kind": "group", "name": "crash", "members": [reader_id] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let room = room["id"].as_i64().unwrap();

    // Four connections send as fast as acks come back; the node is killed mid-stream.
    let url = format!("ws://{}/api/v1/ws?token={writer}", node.addr);
    let mut senders = Vec::new();
    for conn in 0..4 {
        let url = url.clone();
        senders.push(tokio::spawn(async move {
            let mut ws = Ws::connect(&url).await;
            let mut acked = Vec::new();
            'sending: for i in 0.. {
                let cmid = format!("k{conn}-{i}");
                ws.send(json!({ "type": "send", "room": room, "client_msg_id": cmid, "body": format!("{conn}/{i}") })).await;
                // Events from the other connections interleave; wait for our ack.
                loop {
                    match ws.recv_or_end(Duration::from_secs(5)).await {
                        Some(frame) if frame["type"] == "ack" && frame["client_msg_id"] == cmid.as_str() => {
                            acked.push((frame["seq"].as_i64().unwrap(), format!("{conn}/{i}")));
                            break;
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

    // Restart on the same data directory: every acked message is there, once, in seq order.
    let node = Node::start(dir.path()).await;
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

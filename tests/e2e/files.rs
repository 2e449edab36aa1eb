//! Files through the real server, on SQLite and PostgreSQL, with the local directory and with
//! a real S3-protocol server (`s3s-fs`, started here on loopback): byte-exact round trips,
//! ranges, membership, sniffed types, safe names, and bad uploads that leave nothing behind.

use std::process::{Child, Command, Stdio};

use rand::RngCore as _;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use switchboard::config::{Config, S3Config, Secret};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::hardening::{BACKENDS, start_on};
use crate::support::Client;

/// A real S3-protocol server over a temporary directory, for as long as this lives.
pub struct S3Server {
    child: Child,
    pub port: u16,
    /// Kept for as long as the server runs (it stores the bucket's objects here).
    _root: tempfile::TempDir,
}

pub const S3_BUCKET: &str = "switchboard-files";

impl S3Server {
    pub async fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(S3_BUCKET)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = std::env::var("SWITCHBOARD_S3S_FS").unwrap_or_else(|_| "s3s-fs".into());
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                "test-access",
                "--secret-key",
                "test-secret-key",
            ])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary} (installed by .ci/run): {e}"));
        // Owned from here on: dropped (killed and reaped) on every path, a failed start too.
        let server = Self {
            child,
            port,
            _root: root,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("s3s-fs did not start");
    }

    pub fn config(&self) -> S3Config {
        S3Config {
            bucket: S3_BUCKET.into(),
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            region: "us-east-1".into(),
            access_key_id: Secret("test-access".into()),
            secret_access_key: Secret("test-secret-key".into()),
            allow_http: true,
            prefix: String::new(),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Local,
    S3,
}

pub const STORAGES: [Storage; 2] = [Storage::Local, Storage::S3];

/// How many objects the server's storage holds, counted through the same storage layer.
pub async fn objects(config: &Config) -> usize {
    switchboard::files::Files::open(config)
        .unwrap()
        .object_count()
        .await
        .unwrap()
}

pub async fn upload(client: &Client, room: i64, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let response = client
        .http
        .post(format!("{}/api/v1/rooms/{room}/files", client.base))
        .query(&[("name", name)])
        .bearer_auth(&client.token)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn download(client: &Client, id: i64, range: Option<&str>) -> reqwest::Response {
    let mut request = client
        .http
        .get(format!("{}/api/v1/files/{id}", client.base))
        .bearer_auth(&client.token);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.unwrap()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_round_trip_byte_exact_only_for_members_on_every_store_and_storage() {
    for backend in BACKENDS {
        for storage in STORAGES {
            let s3 = match storage {
                Storage::S3 => Some(S3Server::start().await),
                Storage::Local => None,
            };
            let s3_config = s3.as_ref().map(S3Server::config);
            let (server, _db) = start_on(backend, move |c| {
                c.files.s3 = s3_config;
                c.files.max_upload_bytes = 4 * 1024 * 1024;
            })
            .await;
            let mut config = Config::default();
            config.data_dir = server.dir.path().to_path_buf();
            config.files.s3 = s3.as_ref().map(S3Server::config);
            let case = format!("{backend:?}/{storage:?}");
            let alice = server.user("alice").await;
            let mallory = server.user("mallory").await;
            let room = alice.group("files", &[]).await;

            // Byte-exact, over several multipart parts; the client's type and path ignored.
            let bytes = random_bytes(3 * 1024 * 1024 + 17);
            let (status, file) =
                upload(&alice, room, "../../etc/q3\u{202e}vsc.exe", bytes.clone()).await;
            assert_eq!(status, StatusCode::CREATED, "{case}: {file}");
            assert_eq!(file["name"], "q3vsc.exe", "{case}");
            assert_eq!(file["content_type"], "application/octet-stream", "{case}");
            assert_eq!(file["size"], bytes.len() as u64, "{case}");
            assert_eq!(
                file["sha256"],
                hex::encode(Sha256::digest(&bytes)),
                "{case}"
            );
            let id = file["id"].as_i64().unwrap();
            let whole = download(&alice, id, None).await;
            assert_eq!(whole.status(), StatusCode::OK, "{case}");
            assert_eq!(whole.headers()["accept-ranges"], "bytes");
            assert!(
                whole.headers()["content-disposition"]
                    .to_str()
                    .unwrap()
                    .starts_with("attachment;")
            );
            assert_eq!(
                whole.bytes().await.unwrap().as_ref(),
                bytes.as_slice(),
                "{case}"
            );

            // Ranges.
            let part = download(&alice, id, Some("bytes=100-199")).await;
            assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT, "{case}");
            assert_eq!(
                part.headers()["content-range"],
                format!("bytes 100-199/{}", bytes.len()).as_str()
            );
            assert_eq!(part.bytes().await.unwrap().as_ref(), &bytes[100..200]);
            let tail = download(&alice, id, Some("bytes=-10")).await;
            assert_eq!(
                tail.bytes().await.unwrap().as_ref(),
                &bytes[bytes.len() - 10..]
            );
            let beyond = download(&alice, id, Some(&format!("bytes={}-", bytes.len()))).await;
            assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{case}");

            // A non-member cannot tell the file from one that does not exist.
            let denied = download(&mallory, id, None).await;
            assert_eq!(denied.status(), StatusCode::NOT_FOUND, "{case}");
            let denied: Value = denied.json().await.unwrap();
            let missing = download(&alice, id + 1000, None).await;
            assert_eq!(missing.status(), StatusCode::NOT_FOUND);
            let missing: Value = missing.json().await.unwrap();
            assert_eq!(denied, missing, "{case}");
            let (status, _) = mallory.get(&format!("/api/v1/files/{id}/info")).await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let (status, _) = upload(&mallory, room, "x.txt", b"hi".to_vec()).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{case}: upload into a room not hers"
            );

            // The type comes from the bytes.
            let (status, csv) =
                upload(&alice, room, "cards.csv", b"name,card\nbob,4111\n".to_vec()).await;
            assert_eq!(status, StatusCode::CREATED);
            assert_eq!(csv["content_type"], "text/plain", "{case}");
            let (_, info) = alice
                .get(&format!("/api/v1/files/{}/info", csv["id"]))
                .await;
            assert_eq!(info["name"], "cards.csv");
            assert!(info.get("storage_key").is_none(), "{info}");

            // Too large: refused as it streams (and up front when announced); nothing kept.
            let before = objects(&config).await;
            assert_eq!(before, 2, "{case}: the two files uploaded so far");
            let (status, body) =
                upload(&alice, room, "big.bin", random_bytes(5 * 1024 * 1024)).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{case}: {body}");
            assert_eq!(body["code"], "file_too_large");
            let chunks = futures_util::stream::iter(
                (0..5).map(|_| Ok::<_, std::io::Error>(random_bytes(1024 * 1024))),
            );
            let streamed = alice
                .http
                .post(format!(
                    "{}/api/v1/rooms/{room}/files?name=big.bin",
                    alice.base
                ))
                .bearer_auth(&alice.token)
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await;
            if let Ok(streamed) = streamed {
                assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE, "{case}");
            }

            // Cut off: the announced length never arrives.
            let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            let head = format!(
                "POST /api/v1/rooms/{room}/files?name=cut.bin HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {}\r\nContent-Length: 2000000\r\n\r\n",
                alice.token
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(&random_bytes(700_000)).await.unwrap();
            socket.shutdown().await.unwrap();
            let mut answer = Vec::new();
            let _ = socket.read_to_end(&mut answer).await;
            drop(socket);
            let answer = String::from_utf8_lossy(&answer);
            assert!(
                answer.starts_with("HTTP/1.1 400") && answer.contains("upload_incomplete"),
                "{case}: {answer}"
            );
            // Wait until the server has cleaned up (it answers the next request after).
            for _ in 0..100 {
                if objects(&config).await == before {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert_eq!(
                objects(&config).await,
                before,
                "{case}: nothing left behind"
            );
            server.stop().await;
        }
    }
}

/// Send a message carrying `files` over HTTP.
async fn send_with(client: &Client, room: i64, id: &str, files: Value) -> (StatusCode, Value) {
    client
        .post(
            &format!("/api/v1/rooms/{room}/messages"),
            serde_json::json!({ "client_msg_id": id, "body": "see attached", "files": files }),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_carries_files_its_sender_uploaded_once_and_only_once() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let alice = server.user("alice").await;
        let bob = server.user("bob").await;
        let room = alice.group("deal", &[bob.id]).await;
        let other = alice.group("other", &[]).await;
        let mut ids = Vec::new();
        for n in 0..4 {
            let (status, file) = upload(&alice, room, &format!("f{n}.txt"), b"text".to_vec()).await;
            assert_eq!(status, StatusCode::CREATED);
            ids.push(file["id"].as_i64().unwrap());
        }
        let (_, bobs) = upload(&bob, room, "bob.txt", b"his".to_vec()).await;
        let bobs = bobs["id"].as_i64().unwrap();
        let (_, elsewhere) = upload(&alice, other, "else.txt", b"there".to_vec()).await;
        let elsewhere = elsewhere["id"].as_i64().unwrap();

        // Attached: listed in the message, and the file knows its message.
        let (status, ack) =
            send_with(&alice, room, "m1", serde_json::json!([ids[0], ids[1]])).await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?}: {ack}");
        let message = ack["id"].as_i64().unwrap();
        let history = alice.history(room, "").await;
        let sent = history.iter().find(|e| e["id"] == message).unwrap();
        assert_eq!(sent["metadata"]["files"], format!("{},{}", ids[0], ids[1]));
        let (_, info) = bob.get(&format!("/api/v1/files/{}/info", ids[0])).await;
        assert_eq!(info["message_id"], message, "{backend:?}");
        // A retry is the same message, not a refusal.
        let (status, again) =
            send_with(&alice, room, "m1", serde_json::json!([ids[0], ids[1]])).await;
        assert_eq!(
            (status, again["id"].as_i64()),
            (StatusCode::OK, Some(message))
        );

        // Refused, with nothing stored: attached already, someone else's, another room's,
        // listed twice, too many, or the key written by hand.
        let before = alice.history(room, "").await.len();
        for (files, status, code) in [
            (
                serde_json::json!([ids[0]]),
                StatusCode::CONFLICT,
                "file_unavailable",
            ),
            (
                serde_json::json!([bobs]),
                StatusCode::NOT_FOUND,
                "file_not_found",
            ),
            (
                serde_json::json!([elsewhere]),
                StatusCode::NOT_FOUND,
                "file_not_found",
            ),
            (
                serde_json::json!([999_999]),
                StatusCode::NOT_FOUND,
                "file_not_found",
            ),
            (
                serde_json::json!([ids[2], ids[2]]),
                StatusCode::BAD_REQUEST,
                "invalid_files",
            ),
            (
                serde_json::json!((0..11).collect::<Vec<i64>>()),
                StatusCode::BAD_REQUEST,
                "too_many_files",
            ),
        ] {
            let (got, body) = send_with(&alice, room, &format!("bad-{files}"), files.clone()).await;
            assert_eq!(
                (got, body["code"].as_str()),
                (status, Some(code)),
                "{backend:?}: {files}"
            );
        }
        let (status, body) = alice
            .post(
                &format!("/api/v1/rooms/{room}/messages"),
                serde_json::json!({ "client_msg_id": "forged", "body": "x", "metadata": { "files": "1" } }),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("reserved_metadata"))
        );
        assert_eq!(alice.history(room, "").await.len(), before, "{backend:?}");

        // Two sends racing for one file: exactly one gets it.
        let (a, b) = tokio::join!(
            send_with(&alice, room, "race-a", serde_json::json!([ids[2]])),
            send_with(&alice, room, "race-b", serde_json::json!([ids[2]])),
        );
        let won = [&a, &b]
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count();
        let lost = [&a, &b]
            .iter()
            .filter(|(s, body)| *s == StatusCode::CONFLICT && body["code"] == "file_unavailable")
            .count();
        assert_eq!((won, lost), (1, 1), "{backend:?}: {a:?} {b:?}");

        // Over the socket too.
        let mut ws = alice.ws(&server).await;
        ws.send(serde_json::json!({
            "type": "send", "room": room, "client_msg_id": "w1", "body": "by socket", "files": [ids[3]]
        }))
        .await;
        let mut acked = None;
        for _ in 0..10 {
            let frame = ws.recv().await;
            if frame["type"] == "ack" {
                acked = Some(frame);
                break;
            }
        }
        let acked = acked.expect("an ack");
        let (_, info) = alice.get(&format!("/api/v1/files/{}/info", ids[3])).await;
        assert_eq!(info["message_id"], acked["id"], "{backend:?}: {acked}");
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_message_takes_its_files_unless_a_hold_keeps_them() {
    for backend in BACKENDS {
        let exports = tempfile::tempdir().unwrap();
        let export_dir = exports.path().to_path_buf();
        let (server, _db) = start_on(backend, move |c| {
            c.files.purge_interval_secs = 1;
            c.compliance.export_dir = Some(export_dir);
        })
        .await;
        let mut config = Config::default();
        config.data_dir = server.dir.path().to_path_buf();
        let admin = server.admin().await;
        let reviewer = crate::holds::compliance_user(&admin, "rita").await;
        let alice = server.user("alice").await;
        let room = alice.group("deal", &[]).await;
        let held_room = alice.group("held", &[]).await;
        let (status, _) = reviewer
            .post(
                "/api/v1/compliance/holds",
                serde_json::json!({ "name": "case", "rooms": [held_room] }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);

        let post = |room: i64, tag: &'static str| {
            let alice = &alice;
            async move {
                let (_, file) =
                    upload(alice, room, &format!("{tag}.txt"), tag.as_bytes().to_vec()).await;
                let file = file["id"].as_i64().unwrap();
                let (status, ack) = send_with(alice, room, tag, serde_json::json!([file])).await;
                assert_eq!(status, StatusCode::CREATED, "{ack}");
                (file, ack["id"].as_i64().unwrap())
            }
        };
        let (kept_file, kept_message) = post(held_room, "kept").await;
        let (gone_file, gone_message) = post(room, "gone").await;
        assert_eq!(objects(&config).await, 2);

        for (room, message) in [(held_room, kept_message), (room, gone_message)] {
            let (status, _) = alice
                .delete(&format!("/api/v1/rooms/{room}/messages/{message}"))
                .await;
            assert!(status.is_success());
        }
        // Out of users' reach at once, held or not.
        for file in [kept_file, gone_file] {
            assert_eq!(
                download(&alice, file, None).await.status(),
                StatusCode::NOT_FOUND
            );
        }
        // The unheld file's bytes are purged; the held one's stay (checked after the purge,
        // which is the sentinel that a purge ran).
        let mut left = objects(&config).await;
        for _ in 0..200 {
            if left == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            left = objects(&config).await;
        }
        assert_eq!(
            left, 1,
            "{backend:?}: the held file's bytes stay, the other's go"
        );
        let in_room = |room: i64| {
            std::fs::read_dir(server.dir.path().join(format!("files/rooms/{room}")))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        assert_eq!((in_room(held_room), in_room(room)), (1, 0), "{backend:?}");
        let (status, _) = alice.get(&format!("/api/v1/files/{kept_file}/info")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // The compliance export carries the held file's bytes with its deleted message.
        let (status, made) = reviewer
            .post(
                "/api/v1/compliance/exports",
                serde_json::json!({ "rooms": [held_room, room] }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?}: {made}");
        let batch = made["batch"].as_str().unwrap().to_string();
        let fetch = |file: String| {
            let reviewer = &reviewer;
            let batch = batch.clone();
            async move {
                let response = reviewer
                    .http
                    .get(format!(
                        "{}/api/v1/compliance/exports/on-demand/{batch}/{file}",
                        reviewer.base
                    ))
                    .bearer_auth(&reviewer.token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{file}");
                response.bytes().await.unwrap()
            }
        };
        let events = fetch("events.jsonl".into()).await;
        let lines: Vec<switchboard::export::ExportLine> = String::from_utf8_lossy(&events)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kept = lines
            .iter()
            .find(|l| l.event.id == kept_message)
            .expect("the held message");
        assert_eq!(kept.attachments.len(), 1, "{backend:?}");
        let attachment = &kept.attachments[0];
        assert_eq!(
            (
                attachment.id,
                attachment.state.as_str(),
                attachment.name.as_str()
            ),
            (kept_file, "kept", "kept.txt"),
            "{backend:?}"
        );
        let name = attachment.file.clone().expect("its bytes are in the batch");
        assert_eq!(fetch(name.clone()).await.as_ref(), b"kept", "{backend:?}");
        assert!(
            made["manifest"]["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["name"] == name.as_str()),
            "{backend:?}: the manifest lists it: {made}"
        );
        let gone = lines.iter().find(|l| l.event.id == gone_message).unwrap();
        assert!(
            gone.attachments.is_empty(),
            "{backend:?}: purged with its row"
        );
        server.stop().await;
    }
}

/// The EICAR test file: every virus scanner flags it, and it harms nothing.
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A real `clamd` (Debian's clamav-daemon, installed by .ci/run) on a free loopback port,
/// with a signature database written here: no signature download is possible, so it knows
/// EICAR (by its MD5) and nothing else.
pub struct Clamd {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Clamd {
    pub async fn start(stream_max: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let md5 = {
            use std::fmt::Write as _;
            let digest = md5_of(EICAR);
            digest.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        };
        std::fs::write(
            dir.path().join("eicar.hdb"),
            format!("{md5}:{}:Eicar-Test-Signature\n", EICAR.len()),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n\
                 StreamMaxLength {stream_max}\nLogFile {}\n",
                dir.path().display(),
                dir.path().join("clamd.log").display()
            ),
        )
        .unwrap();
        let binary =
            std::env::var("SWITCHBOARD_CLAMD").unwrap_or_else(|_| "/usr/sbin/clamd".into());
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {binary} (clamav-daemon, installed by .ci/run): {e}")
            });
        let clamd = Self {
            child,
            port,
            _dir: dir,
        };
        let config = clamd.config();
        for _ in 0..400 {
            if switchboard::files::scan::ping(&config).await.is_ok() {
                return clamd;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("clamd did not start");
    }

    pub fn config(&self) -> switchboard::config::ClamavConfig {
        switchboard::config::ClamavConfig {
            address: format!("127.0.0.1:{}", self.port),
            ..Default::default()
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// MD5 for the signature database (clamd's `.hdb` format names files by it).
fn md5_of(data: &[u8]) -> [u8; 16] {
    // A test helper, not a security use: MD5 is what the `.hdb` format is keyed by.
    let output = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(data)?;
            child.wait_with_output()
        })
        .unwrap();
    let hex = String::from_utf8_lossy(&output.stdout);
    let mut digest = [0u8; 16];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).unwrap();
    }
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_clamd_refuses_eicar_with_a_reason_and_nothing_is_kept() {
    for backend in BACKENDS {
        let mut clamd = Clamd::start("2M").await;
        let mut clamav = clamd.config();
        // clamd takes 2 MiB streams; uploads may be 4 MiB: refused at upload, not at start.
        clamav.stream_max_bytes = 4 * 1024 * 1024;
        clamav.on_limit_mismatch = switchboard::config::LimitMismatch::Warn;
        let (server, _db) = start_on(backend, move |c| {
            c.files.max_upload_bytes = 4 * 1024 * 1024;
            c.files.clamav = Some(clamav);
        })
        .await;
        let mut config = Config::default();
        config.data_dir = server.dir.path().to_path_buf();
        let admin = server.admin().await;
        let reviewer = crate::holds::compliance_user(&admin, "rita").await;
        let alice = server.user("alice").await;
        let room = alice.group("inbox", &[]).await;

        let (status, file) = upload(&alice, room, "notes.txt", b"quarterly notes".to_vec()).await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?}: {file}");
        let (status, body) = upload(&alice, room, "invoice.pdf", EICAR.to_vec()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{backend:?}: {body}"
        );
        assert_eq!(body["code"], "file_infected");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("Eicar-Test-Signature"),
            "{body}"
        );
        // Beyond clamd's own limit: it cannot judge, so the upload is refused (fail closed).
        let (status, body) = upload(&alice, room, "big.bin", random_bytes(3 * 1024 * 1024)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("scan_failed")),
            "{backend:?}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains("size limit"),
            "{body}"
        );
        assert_eq!(
            objects(&config).await,
            1,
            "{backend:?}: only the clean file is kept"
        );

        // The refusal is on the record: the signature, never the content.
        let (_, chain) = reviewer.get("/api/v1/compliance/audit?limit=1000").await;
        let rejected: Vec<&Value> = chain["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "file.rejected")
            .collect();
        assert_eq!(rejected.len(), 1, "{backend:?}: {chain}");
        let detail = rejected[0].to_string();
        assert!(detail.contains("Eicar-Test-Signature") && detail.contains("invoice.pdf"));
        assert!(!detail.contains("EICAR-STANDARD"), "{detail}");

        // Scanner gone: uploads are refused, not let through.
        clamd.stop();
        let (status, body) = upload(&alice, room, "later.txt", b"hello".to_vec()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("scanner_unavailable")),
            "{backend:?}: {body}"
        );
        assert_eq!(objects(&config).await, 1);
        server.stop().await;
    }
}

#[test]
fn a_scanner_limit_below_the_upload_limit_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.data_dir = dir.path().to_path_buf();
    config.files.max_upload_bytes = 100 * 1024 * 1024;
    config.files.clamav = Some(switchboard::config::ClamavConfig::default());
    let err = switchboard::files::Files::open(&config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("StreamMaxLength") && err.contains("on_limit_mismatch"),
        "{err}"
    );
    config.files.clamav.as_mut().unwrap().on_limit_mismatch =
        switchboard::config::LimitMismatch::Warn;
    assert!(switchboard::files::Files::open(&config).is_ok());
}

/// A PNG whose header declares `side` × `side` pixels: a few dozen bytes that would need
/// `4 × side²` bytes decoded.
fn png_declaring(side: u32) -> Vec<u8> {
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(1, 1, image::Rgb([1, 2, 3]))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let mut png = png.into_inner();
    png[16..20].copy_from_slice(&side.to_be_bytes());
    png[20..24].copy_from_slice(&side.to_be_bytes());
    let mut crc = !0u32;
    for &byte in &png[12..29] {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    png[29..33].copy_from_slice(&(!crc).to_be_bytes());
    png
}

/// A JPEG photo as a phone writes it: EXIF with an orientation (turned 90°) and a GPS
/// position (latitude 48° N).
fn photo_with_location() -> Vec<u8> {
    use img_parts::ImageEXIF as _;
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(400, 200, image::Rgb([0, 90, 200]))
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let mut photo =
        img_parts::jpeg::Jpeg::from_bytes(bytes::Bytes::from(jpeg.into_inner())).unwrap();
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08");
    tiff.extend_from_slice(&2u16.to_be_bytes());
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]); // Orientation 6
    tiff.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38]); // GPS IFD at 38
    tiff.extend_from_slice(&0u32.to_be_bytes());
    tiff.extend_from_slice(&1u16.to_be_bytes());
    tiff.extend_from_slice(&[0x00, 0x01, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]); // GPSLatitudeRef
    tiff.extend_from_slice(&0u32.to_be_bytes());
    photo.set_exif(Some(bytes::Bytes::from(tiff)));
    photo.encoder().bytes().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_lose_their_location_get_a_thumbnail_and_bombs_are_refused() {
    use img_parts::ImageEXIF as _;
    for backend in BACKENDS {
        for storage in STORAGES {
            let case = format!("{backend:?}/{storage:?}");
            let s3 = match storage {
                Storage::S3 => Some(S3Server::start().await),
                Storage::Local => None,
            };
            let s3_config = s3.as_ref().map(S3Server::config);
            let (server, _db) = start_on(backend, move |c| c.files.s3 = s3_config).await;
            let mut config = Config::default();
            config.data_dir = server.dir.path().to_path_buf();
            config.files.s3 = s3.as_ref().map(S3Server::config);
            let alice = server.user("alice").await;
            let room = alice.group("photos", &[]).await;
            let before = objects(&config).await;

            // A decompression bomb: refused from its header, nothing kept.
            let (status, err) = upload(&alice, room, "bomb.png", png_declaring(100_000)).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {err}");
            assert_eq!(err["code"], "image_too_large", "{case}: {err}");
            assert!(
                err["message"].as_str().unwrap().contains("100000×100000"),
                "{case}: {err}"
            );
            // Not an image after all: refused with why.
            let mut broken = png_declaring(10);
            broken.truncate(40);
            let (status, err) = upload(&alice, room, "broken.png", broken).await;
            assert_eq!(
                (status, err["code"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some("image_unreadable")),
                "{case}: {err}"
            );
            assert_eq!(objects(&config).await, before, "{case}: nothing kept");

            // A phone photo: stored without its location, still turned the right way.
            let photo = photo_with_location();
            let (status, file) = upload(&alice, room, "IMG_0001.jpg", photo.clone()).await;
            assert_eq!(status, StatusCode::CREATED, "{case}: {file}");
            assert_eq!(file["content_type"], "image/jpeg", "{case}");
            assert_eq!(file["has_thumbnail"], true, "{case}");
            let id = file["id"].as_i64().unwrap();
            let stored = download(&alice, id, None).await.bytes().await.unwrap();
            assert_ne!(stored.as_ref(), photo.as_slice(), "{case}: rewritten");
            assert_eq!(
                file["sha256"],
                hex::encode(Sha256::digest(&stored)),
                "{case}"
            );
            let exif = img_parts::jpeg::Jpeg::from_bytes(stored)
                .unwrap()
                .exif()
                .expect("the orientation stays");
            assert!(
                !exif.windows(2).any(|w| w == [0x88, 0x25]),
                "{case}: no GPS IFD left"
            );
            assert_eq!(
                image::metadata::Orientation::from_exif_chunk(&exif),
                Some(image::metadata::Orientation::Rotate90),
                "{case}"
            );

            // Its thumbnail: a PNG, turned, at most 320 px a side; a CSV has none.
            let response = alice
                .http
                .get(format!("{}/api/v1/files/{id}/thumbnail", alice.base))
                .bearer_auth(&alice.token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{case}");
            assert_eq!(response.headers()["content-type"], "image/png");
            let thumb = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
            assert_eq!((thumb.width(), thumb.height()), (160, 320), "{case}");
            let (_, csv) = upload(&alice, room, "a.csv", b"a,b\n".to_vec()).await;
            let (status, err) = alice
                .get(&format!("/api/v1/files/{}/thumbnail", csv["id"]))
                .await;
            assert_eq!(
                (status, err["code"].as_str()),
                (StatusCode::NOT_FOUND, Some("no_thumbnail")),
                "{case}"
            );
            // Photo, its thumbnail and the CSV.
            assert_eq!(objects(&config).await, before + 3, "{case}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unattached_uploads_are_taken_back_or_expire() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| {
            c.files.purge_interval_secs = 1;
            c.files.unattached_ttl_secs = 3;
        })
        .await;
        let mut config = Config::default();
        config.data_dir = server.dir.path().to_path_buf();
        let alice = server.user("alice").await;
        let bob = server.user("bob").await;
        let room = alice.group("drafts", &[bob.id]).await;

        // Sent at once: it stays whatever the time-to-live.
        let (_, sent) = upload(&alice, room, "sent.txt", b"sent".to_vec()).await;
        let sent = sent["id"].as_i64().unwrap();
        let (status, ack) = send_with(&alice, room, "s1", serde_json::json!([sent])).await;
        assert_eq!(status, StatusCode::CREATED, "{ack}");
        let (status, err) = alice.delete(&format!("/api/v1/files/{sent}")).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::CONFLICT, Some("file_attached")),
            "{backend:?}"
        );

        // Taken back by its uploader, not by another member.
        let (_, draft) = upload(&alice, room, "draft.txt", b"draft".to_vec()).await;
        let draft = draft["id"].as_i64().unwrap();
        let (status, err) = bob.delete(&format!("/api/v1/files/{draft}")).await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("not_uploader")),
            "{backend:?}"
        );
        let (status, _) = alice.delete(&format!("/api/v1/files/{draft}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{backend:?}");
        let (status, _) = alice.get(&format!("/api/v1/files/{draft}/info")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{backend:?}");

        // Left unattached: gone after the time-to-live, bytes and all.
        let (_, left) = upload(&alice, room, "left.txt", b"left".to_vec()).await;
        let left = left["id"].as_i64().unwrap();
        let mut remaining = objects(&config).await;
        for _ in 0..300 {
            if remaining == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            remaining = objects(&config).await;
        }
        assert_eq!(remaining, 1, "{backend:?}: only the sent file's bytes stay");
        let (status, _) = alice.get(&format!("/api/v1/files/{left}/info")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{backend:?}");
        let (status, _) = bob.get(&format!("/api/v1/files/{sent}/info")).await;
        assert_eq!(status, StatusCode::OK, "{backend:?}");
    }
}

async fn put_chunk(client: &Client, id: i64, offset: u64, bytes: &[u8]) -> (StatusCode, Value) {
    let response = client
        .http
        .put(format!("{}/api/v1/uploads/{id}", client.base))
        .query(&[("offset", offset)])
        .bearer_auth(&client.token)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_upload_survives_broken_chunks_and_a_restart() {
    const CHUNK: u64 = 2 * 1024 * 1024;
    for backend in BACKENDS {
        for storage in STORAGES {
            let case = format!("{backend:?}/{storage:?}");
            let s3 = match storage {
                Storage::S3 => Some(S3Server::start().await),
                Storage::Local => None,
            };
            let s3_config = s3.as_ref().map(S3Server::config);
            let db = match backend {
                crate::hardening::Backend::Postgres => Some(crate::cluster::PgDb::create().await),
                crate::hardening::Backend::Sqlite => None,
            };
            let db_url = db.as_ref().map(|db| db.url.clone());
            let tweak = move |c: &mut Config| {
                c.files.s3 = s3_config.clone();
                c.files.resumable.max_chunk_bytes = CHUNK;
                if let Some(url) = &db_url {
                    c.database_url = Some(Secret(url.clone()));
                }
            };
            let server = crate::support::TestServer::start_with(tweak.clone()).await;
            let mut config = Config::default();
            config.data_dir = server.dir.path().to_path_buf();
            config.files.s3 = s3.as_ref().map(S3Server::config);
            let alice = server.user("alice").await;
            let bob = server.user("bob").await;
            let room = alice.group("big", &[bob.id]).await;
            let bytes = random_bytes(2 * CHUNK as usize + 1000);

            let (status, opened) = alice
                .post(
                    &format!("/api/v1/rooms/{room}/uploads"),
                    serde_json::json!({ "name": "../video.bin", "size": bytes.len() }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{case}: {opened}");
            assert_eq!(opened["offset"], 0, "{case}");
            assert_eq!(opened["name"], "video.bin", "{case}");
            let id = opened["file_id"].as_i64().unwrap();

            // A chunk at the wrong offset; someone else's upload.
            let (status, at) = put_chunk(&alice, id, 0, &bytes[..CHUNK as usize]).await;
            assert_eq!(
                (status, at["offset"].as_u64()),
                (StatusCode::OK, Some(CHUNK)),
                "{case}"
            );
            let (status, err) = put_chunk(&alice, id, 0, &bytes[..10]).await;
            assert_eq!(
                (status, err["code"].as_str()),
                (StatusCode::CONFLICT, Some("offset_mismatch")),
                "{case}: {err}"
            );
            let (status, _) = bob.get(&format!("/api/v1/uploads/{id}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{case}");

            // A chunk cut off mid-way changes nothing.
            let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            let head = format!(
                "PUT /api/v1/uploads/{id}?offset={CHUNK} HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {}\r\nContent-Length: {CHUNK}\r\n\r\n",
                alice.token
            );
            socket.write_all(head.as_bytes()).await.unwrap();
            socket
                .write_all(&bytes[CHUNK as usize..CHUNK as usize + 700_000])
                .await
                .unwrap();
            socket.shutdown().await.unwrap();
            let mut answer = Vec::new();
            let _ = socket.read_to_end(&mut answer).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 400"), "{case}: {answer}");
            let (_, at) = alice.get(&format!("/api/v1/uploads/{id}")).await;
            assert_eq!(at["offset"], CHUNK, "{case}: {at}");

            // The server restarts; the upload goes on where it stood.
            let server = server.restart(tweak).await;
            let (_, at) = alice.get(&format!("/api/v1/uploads/{id}")).await;
            assert_eq!(at["offset"], CHUNK, "{case}: {at}");
            let (status, at) = put_chunk(
                &alice,
                id,
                CHUNK,
                &bytes[CHUNK as usize..2 * CHUNK as usize],
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{case}: {at}");
            // More than the file has left.
            let mut over = bytes[2 * CHUNK as usize..].to_vec();
            over.push(0);
            let (status, err) = put_chunk(&alice, id, 2 * CHUNK, &over).await;
            assert_eq!(
                (status, err["code"].as_str()),
                (StatusCode::PAYLOAD_TOO_LARGE, Some("chunk_too_large")),
                "{case}: {err}"
            );
            let (status, file) =
                put_chunk(&alice, id, 2 * CHUNK, &bytes[2 * CHUNK as usize..]).await;
            assert_eq!(status, StatusCode::CREATED, "{case}: {file}");
            assert_eq!(file["id"], id, "{case}");
            assert_eq!(file["size"], bytes.len() as u64, "{case}");
            assert_eq!(
                file["sha256"],
                hex::encode(Sha256::digest(&bytes)),
                "{case}"
            );
            let whole = download(&bob, id, None).await.bytes().await.unwrap();
            assert!(whole.as_ref() == bytes.as_slice(), "{case}: byte-exact");
            assert_eq!(objects(&config).await, 1, "{case}: the parts are gone");
            let (status, _) = alice.get(&format!("/api/v1/uploads/{id}")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{case}: finished");

            // Given up: its chunks go.
            let (_, opened) = alice
                .post(
                    &format!("/api/v1/rooms/{room}/uploads"),
                    serde_json::json!({ "name": "later.bin", "size": 5000 }),
                )
                .await;
            let later = opened["file_id"].as_i64().unwrap();
            let (status, _) = put_chunk(&alice, later, 0, &bytes[..1000]).await;
            assert_eq!(status, StatusCode::OK, "{case}");
            assert_eq!(objects(&config).await, 2, "{case}");
            let (status, _) = alice.delete(&format!("/api/v1/uploads/{later}")).await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{case}");
            assert_eq!(objects(&config).await, 1, "{case}");
            server.stop().await;
            drop(db);
        }
    }
}

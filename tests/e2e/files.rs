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
async fn objects(config: &Config) -> usize {
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

//! Plugins on files through the real server (interface 0.3): the shipped DLP plugin blocks,
//! redacts or quarantines uploads per its settings, on SQLite and PostgreSQL, local and S3
//! storage; a probe plugin replaces content read through `upload.read` in small chunks,
//! quarantines, rejects, is cut off by its deadline (fail-closed: a visible reason, never
//! silence) and denies a download; admins review the quarantine; older plugins keep
//! loading next to it.

use std::io::Write as _;

use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use switchboard::config::Config;

use crate::files::{S3Server, STORAGES, Storage, objects, upload};
use crate::hardening::{BACKENDS, Backend, start_on};
use crate::plugins_runtime::harness::{Spec, write_plugins};
use crate::support::{Client, TestServer};

/// A server on `backend` and `storage` with these plugins, purging deleted files each second.
async fn start(
    backend: Backend,
    storage: Storage,
    specs: Vec<Spec>,
) -> (
    TestServer,
    Option<crate::cluster::PgDb>,
    Option<S3Server>,
    tempfile::TempDir,
    Config,
) {
    let s3 = match storage {
        Storage::S3 => Some(S3Server::start().await),
        Storage::Local => None,
    };
    let plugins = write_plugins(&specs);
    let dir = plugins.path().to_path_buf();
    let s3_config = s3.as_ref().map(S3Server::config);
    let (server, db) = start_on(backend, move |c| {
        c.plugins.dir = Some(dir);
        c.files.s3 = s3_config;
        c.files.purge_interval_secs = 1;
    })
    .await;
    let mut config = Config::default();
    config.data_dir = server.dir.path().to_path_buf();
    config.files.s3 = s3.as_ref().map(S3Server::config);
    (server, db, s3, plugins, config)
}

async fn fetch(client: &Client, path: &str) -> (StatusCode, Vec<u8>) {
    let response = client
        .http
        .get(format!("{}{path}", client.base))
        .bearer_auth(&client.token)
        .send()
        .await
        .unwrap();
    (response.status(), response.bytes().await.unwrap().to_vec())
}

async fn audit_actions(admin: &Client) -> Vec<Value> {
    let (_, audit) = admin.get("/api/v1/admin/audit?limit=200").await;
    audit.as_array().cloned().unwrap_or_default()
}

fn docx(text_xml: &str) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("[Content_Types].xml", options).unwrap();
    zip.write_all(b"<Types/>").unwrap();
    zip.start_file("word/document.xml", options).unwrap();
    zip.write_all(text_xml.as_bytes()).unwrap();
    zip.finish().unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_blocks_redacts_and_quarantines_files_on_every_store_and_storage() {
    for backend in BACKENDS {
        for storage in STORAGES {
            let case = format!("{backend:?}/{storage:?}");
            // Cards are redacted, SSNs blocked (the default), e-mail flagged (the default:
            // the file is held for review).
            let dlp = Spec::new("dlp", "dlp")
                .caps(&["log", "config", "kv"])
                .settings("\"action.card\" = \"redact\"\n");
            let (server, _db, _s3, _plugins, config) = start(backend, storage, vec![dlp]).await;
            let alice = server.user("alice").await;
            let bob = server.user("bob").await;
            let admin = server.admin().await;
            let room = alice.group("files", &[bob.id]).await;
            let before = objects(&config).await;

            // Blocked: a CSV of social security numbers. The reason names the detector,
            // never the value; nothing is kept.
            let ssns = b"name,ssn\nalice,536-22-8705\nbob,219-09-9991\n".to_vec();
            let (status, err) = upload(&alice, room, "staff.csv", ssns).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {err}");
            assert_eq!(err["code"], "file_rejected", "{case}: {err}");
            assert_eq!(err["rejection"]["plugin"], "dlp", "{case}");
            assert_eq!(err["rejection"]["code"], "dlp_blocked", "{case}");
            let reason = err["message"].as_str().unwrap();
            assert!(
                reason.contains("social security number"),
                "{case}: {reason}"
            );
            assert!(!reason.contains("536"), "{case}: {reason}");
            assert_eq!(objects(&config).await, before, "{case}: nothing kept");

            // Redacted: a CSV of card numbers is stored with the numbers masked; the
            // file's size and digest are the stored bytes'.
            let cards = b"name,card\nalice,4111 1111 1111 1111\nbob,5500005555555559\n".to_vec();
            let (status, file) = upload(&alice, room, "cards.csv", cards).await;
            assert_eq!(status, StatusCode::CREATED, "{case}: {file}");
            let expected = b"name,card\nalice,**** **** **** 1111\nbob,************5559\n";
            let id = file["id"].as_i64().unwrap();
            let (status, stored) = fetch(&bob, &format!("/api/v1/files/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{case}");
            assert_eq!(
                String::from_utf8_lossy(&stored),
                String::from_utf8_lossy(expected),
                "{case}"
            );
            assert_eq!(file["size"], expected.len() as u64, "{case}");
            assert_eq!(
                file["sha256"],
                hex::encode(Sha256::digest(expected)),
                "{case}"
            );

            // A clean file passes untouched.
            let clean = b"name,team\nalice,red\n".to_vec();
            let (status, file) = upload(&alice, room, "teams.csv", clean.clone()).await;
            assert_eq!(status, StatusCode::CREATED, "{case}: {file}");
            assert_eq!(
                file["sha256"],
                hex::encode(Sha256::digest(&clean)),
                "{case}"
            );

            // An Office document: its text is read (a number split across runs too); a
            // card in it cannot be redacted in place, so the file is refused with why.
            let memo = docx(
                "<w:document><w:body><w:p><w:r><w:t>pay 4111 1111</w:t></w:r>\
                 <w:r><w:t> 1111 1111</w:t></w:r></w:p></w:body></w:document>",
            );
            let (status, err) = upload(&alice, room, "memo.docx", memo).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {err}");
            assert!(
                err["message"].as_str().unwrap().contains("payment card"),
                "{case}: {err}"
            );

            // Flagged: held for review. Members cannot fetch it; an admin sees it, reads
            // it, and releases it; then it is an ordinary file.
            let contacts = b"name,mail\nalice,alice@example.com\n".to_vec();
            let (status, held) = upload(&alice, room, "contacts.csv", contacts.clone()).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{case}: {held}");
            assert_eq!(held["state"], "quarantined", "{case}");
            assert_eq!(held["quarantined_by"], "dlp", "{case}");
            assert!(
                held["quarantine_reason"]
                    .as_str()
                    .unwrap()
                    .contains("e-mail address"),
                "{case}: {held}"
            );
            let held_id = held["id"].as_i64().unwrap();
            let (status, err) = bob.get(&format!("/api/v1/files/{held_id}")).await;
            assert_eq!(
                (status, err["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("file_quarantined")),
                "{case}"
            );
            let (status, err) = bob
                .post(
                    &format!("/api/v1/admin/files/{held_id}/release"),
                    Value::Null,
                )
                .await;
            assert_eq!(
                (status, err["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("reviewers_only")),
                "{case}: not a reviewer: {err}"
            );
            // A compliance reviewer (not an admin) sees the queue too.
            let rita = crate::holds::compliance_user(&admin, "rita").await;
            let (status, queue) = rita.get("/api/v1/admin/files/quarantine").await;
            assert_eq!(status, StatusCode::OK, "{case}: {queue}");
            assert_eq!(queue["files"].as_array().map(Vec::len), Some(1), "{case}");
            let (_, queue) = admin.get("/api/v1/admin/files/quarantine").await;
            let queued: Vec<i64> = queue["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|f| f["id"].as_i64())
                .collect();
            assert_eq!(queued, vec![held_id], "{case}: {queue}");
            let (status, bytes) =
                fetch(&admin, &format!("/api/v1/admin/files/{held_id}/content")).await;
            assert_eq!(
                (status, bytes),
                (StatusCode::OK, contacts.clone()),
                "{case}"
            );
            let (status, released) = admin
                .post(
                    &format!("/api/v1/admin/files/{held_id}/release"),
                    Value::Null,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{case}: {released}");
            assert_eq!(released["state"], "ready", "{case}");
            let (status, bytes) = fetch(&bob, &format!("/api/v1/files/{held_id}")).await;
            assert_eq!((status, bytes), (StatusCode::OK, contacts), "{case}");

            // Another one is discarded: gone for everyone, its bytes purged.
            let (status, held) =
                upload(&alice, room, "more.csv", b"x,bob@example.com\n".to_vec()).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{case}: {held}");
            let held_id = held["id"].as_i64().unwrap();
            let with_held = objects(&config).await;
            let (status, _) = admin
                .post(
                    &format!("/api/v1/admin/files/{held_id}/discard"),
                    Value::Null,
                )
                .await;
            assert_eq!(status, StatusCode::NO_CONTENT, "{case}");
            let (status, _) = admin
                .post(
                    &format!("/api/v1/admin/files/{held_id}/release"),
                    Value::Null,
                )
                .await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{case}: no longer in quarantine"
            );
            let mut purged = false;
            for _ in 0..200 {
                if objects(&config).await == with_held - 1 {
                    purged = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(purged, "{case}: the discarded file's bytes were purged");

            // Storage usage counts what is kept.
            let (_, usage) = admin.get("/api/v1/admin/files/usage").await;
            let ready = usage["states"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["state"] == "ready")
                .cloned()
                .unwrap_or(Value::Null);
            assert_eq!(ready["files"], 3, "{case}: {usage}");

            // All on the record, by detector and plugin, never content.
            let audit = audit_actions(&admin).await;
            let actions: Vec<&str> = audit.iter().filter_map(|r| r["action"].as_str()).collect();
            for action in [
                "file.rejected",
                "file.replaced",
                "file.quarantined",
                "file.reviewed",
                "file.released",
                "file.discarded",
            ] {
                assert!(actions.contains(&action), "{case}: {action} in {actions:?}");
            }
            let text = serde_json::to_string(&audit).unwrap();
            assert!(
                !text.contains("536-22-8705") && !text.contains("4111 1111"),
                "{case}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_replace_read_in_chunks_reject_deny_and_fail_closed_with_a_reason() {
    for backend in BACKENDS {
        let case = format!("{backend:?}");
        let probe = Spec::new("probe", "fixture-probe")
            .caps(&["config", "kv", "log"])
            .limits("timeout_ms = 100\n");
        let (server, _db, _s3, _plugins, config) =
            start(backend, Storage::Local, vec![probe]).await;
        let alice = server.user("alice").await;
        let room = alice.group("probe", &[]).await;
        let before = objects(&config).await;

        // Replaced: the plugin read the upload 7 bytes at a time and stored it in capitals,
        // under a new (safe) name.
        let text = "hello, files! ".repeat(100);
        let (status, file) =
            upload(&alice, room, "probe-upper.txt", text.clone().into_bytes()).await;
        assert_eq!(status, StatusCode::CREATED, "{case}: {file}");
        assert_eq!(file["name"], "probe-upper.txt.upper.txt", "{case}");
        let id = file["id"].as_i64().unwrap();
        let (_, stored) = fetch(&alice, &format!("/api/v1/files/{id}")).await;
        assert_eq!(
            String::from_utf8(stored).unwrap(),
            text.to_uppercase(),
            "{case}"
        );

        // Rejected with the plugin's own code and reason.
        let (status, err) = upload(&alice, room, "probe-reject.bin", vec![1, 2, 3]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {err}");
        assert_eq!(err["rejection"]["code"], "probe_file", "{case}");
        assert_eq!(
            err["message"], "the probe refuses probe-reject.bin",
            "{case}"
        );

        // A plugin that never answers is cut off; fail-closed refuses the file, and says so.
        let (status, err) = upload(&alice, room, "probe-spin.bin", vec![0; 10]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {err}");
        assert_eq!(err["rejection"]["code"], "plugin_failed", "{case}: {err}");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("probe failed (timeout)"),
            "{case}: {err}"
        );
        assert_eq!(
            objects(&config).await,
            before + 1,
            "{case}: only the replaced file"
        );

        // A download the plugin denies: the reason reaches the member.
        let (status, kept) = upload(&alice, room, "probe-keep.txt", b"secret".to_vec()).await;
        assert_eq!(status, StatusCode::CREATED, "{case}: {kept}");
        let (status, err) = alice
            .get(&format!("/api/v1/files/{}", kept["id"].as_i64().unwrap()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}: {err}");
        assert_eq!(err["code"], "download_denied", "{case}");
        assert_eq!(
            err["message"], "the probe keeps this file to itself",
            "{case}"
        );

        // Quarantined files cannot be attached to a message until released.
        let (status, held) = upload(&alice, room, "probe-quarantine.txt", b"x".to_vec()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{case}: {held}");
        let (status, err) = alice
            .post(
                &format!("/api/v1/rooms/{room}/messages"),
                serde_json::json!({
                    "client_msg_id": "q1", "body": "see attached",
                    "files": [held["id"]],
                }),
            )
            .await;
        assert_eq!(
            (status, err["code"].as_str()),
            (StatusCode::CONFLICT, Some("file_quarantined")),
            "{case}: {err}"
        );
    }
}

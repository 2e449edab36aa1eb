//! The compliance export through the real binary, on SQLite and PostgreSQL: an exported
//! room reproduces its history exactly (edits, deletes, membership, kept originals), a
//! series of batches verifies, and a changed file or manifest is caught.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::json;
use switchboard::export::ExportLine;
use switchboard::store::Page;

use crate::hardening::{BACKENDS, start_on};

fn switchboard(data: &Path, pg: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .env_clear()
        .env("SWITCHBOARD_DATA_DIR", data)
        .args(args);
    if let Some(url) = pg {
        command.env("SWITCHBOARD_DATABASE_URL", url);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_room_reproduces_its_history_and_the_series_verifies() {
    for backend in BACKENDS {
        let (server, db) = start_on(backend, |c| c.compliance.preserve_deleted = true).await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let room = alice.group("deal", &[bob.id]).await;
        let other = alice.group("other", &[]).await;
        let (_, first) = alice.send_http(room, "m1", "the first draft").await;
        let first = first["id"].as_i64().unwrap();
        alice.send_http(room, "m2", "a second thought").await;
        let (_, third) = bob.send_http(room, "m3", "to be withdrawn").await;
        let third = third["id"].as_i64().unwrap();
        alice.send_http(other, "o1", "not in this export").await;
        // Text no XML document may hold as it is: markup and a control character.
        alice
            .send_http(room, "m4", "a <b>bold</b> & \u{7}bell")
            .await;
        let path = format!("/api/v1/rooms/{room}/messages/{first}");
        let (status, _) = alice
            .patch(&path, json!({ "body": "the final draft" }))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = bob
            .delete(&format!("/api/v1/rooms/{room}/messages/{third}"))
            .await;
        assert!(status.is_success());
        let (status, _) = bob
            .delete(&format!("/api/v1/rooms/{room}/members/{}", bob.id))
            .await;
        assert!(status.is_success());
        let data = server.stop().await;
        let pg = db.as_ref().map(|d| d.url.clone());
        let pg = pg.as_deref();
        let out = tempfile::tempdir().unwrap();
        let out_dir = out.path().to_str().unwrap().to_string();
        let room_arg = room.to_string();

        let (ok, text) = switchboard(
            data.path(),
            pg,
            &["export", "run", "--out", &out_dir, "--room", &room_arg],
        );
        assert!(ok, "{backend:?}: {text}");
        let lines: Vec<ExportLine> =
            std::fs::read_to_string(out.path().join("batch-000001/events.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();

        // The export is the room's log, event for event.
        let url = match pg {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}", data.path().join("switchboard.db").display()),
        };
        let store = switchboard::store::open(&url, &Default::default())
            .await
            .unwrap();
        let history = store.events(room, Page::After(0), 1000).await.unwrap();
        let exported: Vec<_> = lines.iter().map(|l| l.event.clone()).collect();
        assert_eq!(exported, history, "{backend:?}");
        assert!(exported.iter().all(|e| e.room_id == room));
        // Edits, deletes and membership are in it, and so are the originals.
        let kinds: Vec<&str> = exported.iter().map(|e| e.kind.as_str()).collect();
        for kind in ["message", "edit", "delete", "member_left"] {
            assert!(kinds.contains(&kind), "{backend:?}: {kinds:?}");
        }
        let line = |id: i64| lines.iter().find(|l| l.event.id == id).unwrap();
        let kept = |id: i64| -> Vec<String> {
            line(id)
                .versions
                .iter()
                .filter_map(|v| v.body.clone())
                .collect()
        };
        assert!(
            kept(first).contains(&"the first draft".to_string()),
            "{backend:?}"
        );
        assert!(
            kept(third).contains(&"to be withdrawn".to_string()),
            "{backend:?}"
        );
        assert!(line(third).event.deleted);

        // The same messages, and their earlier texts, in the archive vendors' CSV columns.
        let csv = std::fs::read_to_string(out.path().join("batch-000001/posts.csv")).unwrap();
        let mut rows = csv.split("\r\n").filter(|r| !r.is_empty());
        assert_eq!(
            rows.next().unwrap(),
            switchboard::export::CSV_HEADER.join(",")
        );
        let rows: Vec<&str> = rows.collect();
        assert!(
            rows.iter()
                .any(|r| r.contains("the final draft") && r.contains(",message,")),
            "{backend:?}: {csv}"
        );
        assert!(
            rows.iter()
                .any(|r| r.contains("the first draft") && r.contains(",previous_version,")),
            "{backend:?}: {csv}"
        );
        assert!(rows.iter().any(|r| r.contains(",deleted,")), "{csv}");
        assert!(rows.iter().all(|r| r.contains(",deal,deal,P,")), "{csv}");
        assert!(csv.contains("alice@switchboard.invalid"), "{csv}");

        // Actiance XML: the same record, as Smarsh's archive takes it.
        let xml = std::fs::read_to_string(out.path().join("batch-000001/actiance.xml")).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
        assert_eq!(doc.root_element().tag_name().name(), "FileDump");
        let conversations: Vec<_> = doc
            .root_element()
            .children()
            .filter(|n| n.has_tag_name("Conversation"))
            .collect();
        assert_eq!(conversations.len(), 1, "{xml}");
        let conversation = conversations[0];
        let child = |n: roxmltree::Node, tag: &str| {
            n.children()
                .find(|c| c.has_tag_name(tag))
                .and_then(|c| c.text())
                .map(str::to_string)
        };
        assert!(
            child(conversation, "RoomID")
                .unwrap()
                .ends_with(&format!(" - {room}"))
        );
        let messages: Vec<(String, Option<String>, String)> = conversation
            .children()
            .filter(|n| n.has_tag_name("Message"))
            .map(|n| {
                (
                    child(n, "MessageId").unwrap(),
                    child(n, "UpdatedType"),
                    child(n, "Content").unwrap_or_default(),
                )
            })
            .collect();
        // Every message's current text under its id, edited ones marked so...
        for event in history
            .iter()
            .filter(|e| e.kind == switchboard::store::EventKind::Message && !e.deleted)
        {
            let found = messages
                .iter()
                .find(|(id, _, _)| *id == event.id.to_string())
                .unwrap_or_else(|| panic!("{backend:?}: {} missing: {xml}", event.id));
            let expected = event.body.clone().unwrap().replace('\u{7}', "\u{FFFD}");
            assert_eq!(found.2, expected, "{backend:?}");
            assert_eq!(
                found.1.as_deref(),
                event.edited_at.map(|_| "EditedNewMsg"),
                "{backend:?}"
            );
        }
        // ...the earlier text pointing at it, and the deleted one with what it said.
        assert!(messages.contains(&(
            format!("{first}.1"),
            Some("EditedOriginalMsg".into()),
            "the first draft".into()
        )));
        assert!(messages.contains(&(
            third.to_string(),
            Some("Deleted".into()),
            "delete to be withdrawn".into()
        )));
        let left: Vec<String> = conversation
            .children()
            .filter(|n| n.has_tag_name("ParticipantLeft"))
            .filter_map(|n| child(n, "LoginName"))
            .collect();
        assert!(
            left.contains(&"bob@switchboard.invalid".to_string()),
            "{xml}"
        );

        // Global Relay: one e-mail for the room, from and to its participants.
        let eml = std::fs::read(
            out.path()
                .join(format!("batch-000001/globalrelay-{room}-001.eml")),
        )
        .unwrap();
        let mail = mail_parser::MessageParser::default().parse(&eml).unwrap();
        assert_eq!(mail.subject(), Some("Switchboard Compliance Export: deal"));
        assert_eq!(
            mail.header_raw("X-GlobalRelay-MsgType").map(str::trim),
            Some("Switchboard")
        );
        let to: Vec<String> = mail
            .to()
            .unwrap()
            .iter()
            .filter_map(|a| a.address().map(str::to_string))
            .collect();
        assert_eq!(
            to,
            ["alice@switchboard.invalid", "bob@switchboard.invalid"],
            "{backend:?}"
        );
        let text = mail.body_text(0).unwrap();
        for said in ["the final draft", "the first draft", "a second thought"] {
            assert!(text.contains(said), "{backend:?}: {text}");
        }
        assert!(mail.body_html(0).unwrap().contains("&lt;b&gt;bold"));

        // A second batch links to the first; the series verifies.
        let (ok, text) = switchboard(data.path(), pg, &["export", "run", "--out", &out_dir]);
        assert!(ok, "{text}");
        let (ok, text) = switchboard(data.path(), pg, &["export", "verify", &out_dir]);
        assert!(
            ok && text.contains("2 batches") && text.contains("intact"),
            "{backend:?}: {text}"
        );

        // A file slipped into a batch, a changed file, and a changed manifest are each caught.
        let slipped = out.path().join("batch-000002/extra.xml");
        std::fs::write(&slipped, "<x/>").unwrap();
        let (ok, text) = switchboard(data.path(), pg, &["export", "verify", &out_dir]);
        assert!(
            !ok && text.contains("extra.xml is not in the manifest"),
            "{backend:?}: {text}"
        );
        std::fs::remove_file(&slipped).unwrap();
        let events = out.path().join("batch-000001/events.jsonl");
        let mut bytes = std::fs::read(&events).unwrap();
        bytes.extend_from_slice(b"{}\n");
        std::fs::write(&events, bytes).unwrap();
        let (ok, text) = switchboard(data.path(), pg, &["export", "verify", &out_dir]);
        assert!(
            !ok && text.contains("events.jsonl was changed"),
            "{backend:?}: {text}"
        );
        let manifest = out.path().join("batch-000002/manifest.json");
        let changed = std::fs::read_to_string(&manifest)
            .unwrap()
            .replace("\"events\": ", "\"events\": 1");
        std::fs::write(&manifest, changed).unwrap();
        let (ok, text) = switchboard(data.path(), pg, &["export", "verify", &out_dir]);
        assert!(
            !ok && text.contains("not signed by the audit key"),
            "{backend:?}: {text}"
        );
        drop(store);
        drop(db);
    }
}

#[test]
fn dlp_decisions_come_from_the_marks_plugins_leave() {
    let mut event: switchboard::store::Event = serde_json::from_value(json!({
        "id": 1, "room_id": 1, "seq": 1, "kind": "message", "sender_id": 1,
        "body": "x", "created_at": 0, "deleted": false,
        "metadata": { "dlp.flagged": "email", "dlp.redacted": "card,iban", "lang": "en" }
    }))
    .unwrap();
    let decisions = switchboard::export::dlp_decisions(&event);
    assert_eq!(decisions.len(), 2);
    assert!(
        decisions
            .iter()
            .any(|d| d.plugin == "dlp" && d.action == "redact" && d.detectors == "card,iban")
    );
    event.metadata.clear();
    assert!(switchboard::export::dlp_decisions(&event).is_empty());
}

fn exported_lines(dir: &Path) -> Vec<ExportLine> {
    let mut batches: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    batches.sort();
    batches
        .iter()
        .filter_map(|b| std::fs::read_to_string(b.join("events.jsonl")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<ExportLine>(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_export_resumes_where_the_last_batch_stopped() {
    for backend in BACKENDS {
        let out = tempfile::tempdir().unwrap();
        let out_path = out.path().to_path_buf();
        let (server, db) = start_on(backend, move |c| {
            c.compliance.export_dir = Some(out_path);
            c.compliance.export_every_secs = 1;
        })
        .await;
        let alice = server.user("alice").await;
        let room = alice.group("daily", &[]).await;
        let wait_for = |body: &'static str| {
            let dir = out.path().to_path_buf();
            async move {
                for _ in 0..400 {
                    if exported_lines(&dir)
                        .iter()
                        .any(|l| l.event.body.as_deref() == Some(body))
                    {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                panic!("{body:?} was never exported");
            }
        };
        for n in 1..=3 {
            alice
                .send_http(room, &format!("m{n}"), &format!("message {n}"))
                .await;
        }
        wait_for("message 3").await;
        for n in 4..=5 {
            alice
                .send_http(room, &format!("m{n}"), &format!("message {n}"))
                .await;
        }
        wait_for("message 5").await;
        let data = server.stop().await;

        // Every message exactly once across the batches: each batch starts where the one
        // before it ended.
        let lines = exported_lines(out.path());
        let mut bodies: Vec<String> = lines
            .iter()
            .filter(|l| l.event.kind == switchboard::store::EventKind::Message)
            .filter_map(|l| l.event.body.clone())
            .collect();
        bodies.sort();
        assert_eq!(
            bodies,
            (1..=5).map(|n| format!("message {n}")).collect::<Vec<_>>(),
            "{backend:?}"
        );
        let pg = db.as_ref().map(|d| d.url.clone());
        let (ok, text) = switchboard(
            data.path(),
            pg.as_deref(),
            &["export", "verify", out.path().to_str().unwrap()],
        );
        assert!(ok && text.contains("intact"), "{backend:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_exports_and_downloads_through_the_api() {
    for backend in BACKENDS {
        let out = tempfile::tempdir().unwrap();
        let out_path = out.path().to_path_buf();
        let (server, _db) = start_on(backend, move |c| {
            c.compliance.export_dir = Some(out_path);
        })
        .await;
        let admin = server.admin().await;
        let reviewer = crate::holds::compliance_user(&admin, "rita").await;
        let alice = admin.create_user("alice").await;
        let room = alice.group("desk", &[]).await;
        alice.send_http(room, "m1", "quarterly numbers").await;

        // Only the compliance role may; bad requests change nothing.
        let (status, _) = admin
            .post("/api/v1/compliance/exports", json!({ "rooms": [room] }))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{backend:?}");
        let (status, body) = reviewer
            .post("/api/v1/compliance/exports", json!({ "rooms": [999_999] }))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{backend:?}: {body}");
        let (status, body) = reviewer
            .post(
                "/api/v1/compliance/exports",
                json!({ "from": 10, "until": 5 }),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{backend:?}: {body}");
        assert_eq!(body["code"], "invalid_range");
        let (_, listed) = reviewer.get("/api/v1/compliance/exports").await;
        assert_eq!(listed, json!([]), "{backend:?}");

        let (status, made) = reviewer
            .post("/api/v1/compliance/exports", json!({ "rooms": [room] }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{backend:?}: {made}");
        assert_eq!(made["series"], "on-demand");
        let batch = made["batch"].as_str().unwrap().to_string();
        let (_, listed) = reviewer.get("/api/v1/compliance/exports").await;
        assert_eq!(listed.as_array().unwrap().len(), 1, "{backend:?}: {listed}");
        // The reviewer's batch is not part of the scheduled series (its cursor stays).
        assert!(!out.path().join(&batch).exists());

        let download = |file: String| {
            let reviewer = &reviewer;
            let batch = batch.clone();
            async move {
                reviewer
                    .http
                    .get(format!(
                        "{}/api/v1/compliance/exports/on-demand/{batch}/{file}",
                        reviewer.base
                    ))
                    .bearer_auth(&reviewer.token)
                    .send()
                    .await
                    .unwrap()
            }
        };
        let csv = download("posts.csv".into()).await;
        assert_eq!(csv.status(), StatusCode::OK);
        assert!(
            csv.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        assert!(csv.text().await.unwrap().contains("quarterly numbers"));
        let eml = download(format!("globalrelay-{room}-001.eml")).await;
        assert_eq!(eml.status(), StatusCode::OK, "{backend:?}");
        // Nothing outside the batch's own files is reachable.
        for file in ["..%2F..%2Fswitchboard.db", "audit.key", "nothing.csv"] {
            let answer = download(file.into()).await;
            assert_eq!(
                answer.status(),
                StatusCode::NOT_FOUND,
                "{backend:?}: {file}"
            );
        }
        // Downloads are on the record.
        let (_, chain) = reviewer.get("/api/v1/compliance/audit?limit=1000").await;
        let actions: Vec<&str> = chain["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["action"].as_str())
            .collect();
        assert!(actions.contains(&"export.run"), "{actions:?}");
        assert!(actions.contains(&"export.download"), "{actions:?}");
        server.stop().await;
    }
}

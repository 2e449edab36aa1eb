//! Search through the real server, on SQLite and PostgreSQL: the query language, snippets and
//! links, who may find what (members, non-members, people who left, the compliance role and
//! its audit record), edits and deletes counted at once, files, clear errors for bad queries,
//! and text a DLP plugin redacted never being findable.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::hardening::{BACKENDS, start_on};
use crate::holds::compliance_user;
use crate::support::Client;

fn encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

async fn search(client: &Client, q: &str, extra: &str) -> (StatusCode, Value) {
    client
        .get(&format!("/api/v1/search?q={}{extra}", encode(q)))
        .await
}

/// The bodies of a search's results, newest first.
async fn bodies(client: &Client, q: &str) -> Vec<String> {
    let (status, page) = search(client, q, "").await;
    assert_eq!(status, StatusCode::OK, "{q}: {page}");
    page["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            r["message"]["body"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn error_code(page: &Value) -> &str {
    page["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_find_their_rooms_messages_and_nothing_else() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let carol = admin.create_user("carol").await;
        let team = alice.group("Team Room", &[bob.id]).await;
        let secret = carol.group("secret", &[]).await;
        let (s, _) = alice
            .send_http(team, "a1", "The Q3 budget-review is on Friday")
            .await;
        assert_eq!(s, StatusCode::CREATED);
        bob.send_http(team, "b1", "I will bring the budget numbers")
            .await;
        carol
            .send_http(secret, "c1", "budget cuts nobody may know about")
            .await;

        // A result: the room, the message, a snippet with the match marked, a link.
        let (status, page) = search(&alice, "review", "").await;
        assert_eq!(status, StatusCode::OK, "{backend:?}: {page}");
        let hit = &page["results"][0];
        assert_eq!(hit["room"]["id"], team);
        assert_eq!(hit["room"]["name"], "Team Room");
        assert_eq!(hit["message"]["body"], "The Q3 budget-review is on Friday");
        let seq = hit["message"]["seq"].as_i64().unwrap();
        assert_eq!(hit["link"], format!("/#room-{team}-seq-{seq}"));
        let parts = hit["snippet"]["parts"].as_array().unwrap();
        assert_eq!(
            parts[1],
            json!({ "text": "review", "hit": true }),
            "{parts:?}"
        );
        assert_eq!(page["next_cursor"], Value::Null);

        // Only rooms the searcher is in.
        assert_eq!(
            bodies(&alice, "budget").await,
            [
                "I will bring the budget numbers",
                "The Q3 budget-review is on Friday"
            ]
        );
        assert_eq!(
            bodies(&carol, "budget").await,
            ["budget cuts nobody may know about"]
        );
        // Filters.
        assert_eq!(
            bodies(&alice, "budget from:bob").await,
            ["I will bring the budget numbers"]
        );
        assert_eq!(bodies(&alice, "from:@Bob").await.len(), 1);
        assert_eq!(bodies(&alice, "budget in:\"team room\"").await.len(), 2);
        assert_eq!(bodies(&alice, "budget -numbers").await.len(), 1);
        assert_eq!(bodies(&alice, "\"budget numbers\"").await.len(), 1);
        assert_eq!(bodies(&alice, "budget before:2000-01-01").await.len(), 0);
        assert_eq!(bodies(&alice, "budget after:2000-01-01").await.len(), 2);
        let (_, page) = search(&alice, "budget", &format!("&sender={}", bob.id)).await;
        assert_eq!(page["results"].as_array().unwrap().len(), 1);
        // `from:` and `sender=` both apply: naming two people finds nothing.
        let (_, page) = search(&alice, "budget from:alice", &format!("&sender={}", bob.id)).await;
        assert_eq!(page["results"], json!([]), "{backend:?}");
        let (_, page) = search(&alice, "budget from:bob", &format!("&sender={}", bob.id)).await;
        assert_eq!(page["results"].as_array().unwrap().len(), 1);

        // Someone who leaves no longer finds the room's messages.
        let (s, _) = alice
            .delete(&format!("/api/v1/rooms/{team}/members/{}", bob.id))
            .await;
        assert!(s.is_success(), "{s}");
        assert!(bodies(&bob, "budget").await.is_empty());
        // A room one is not in is not searchable by id either (and not revealed by name).
        let (s, page) = search(&alice, "budget", &format!("&room={secret}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{page}");
        let (s, page) = search(&alice, "budget in:secret", "").await;
        assert_eq!(
            (s, error_code(&page)),
            (StatusCode::BAD_REQUEST, "unknown_room")
        );

        // An edit replaces what is found, a delete removes it, as soon as each is acked.
        let mine = alice.send_http(team, "a2", "draft for marketing").await.1["id"]
            .as_i64()
            .unwrap();
        assert_eq!(bodies(&alice, "marketing").await.len(), 1);
        let (s, _) = alice
            .patch(
                &format!("/api/v1/rooms/{team}/messages/{mine}"),
                json!({ "body": "final for sales" }),
            )
            .await;
        assert!(s.is_success());
        assert!(bodies(&alice, "marketing").await.is_empty());
        assert_eq!(bodies(&alice, "sales").await, ["final for sales"]);
        let (s, _) = alice
            .delete(&format!("/api/v1/rooms/{team}/messages/{mine}"))
            .await;
        assert!(s.is_success());
        assert!(bodies(&alice, "sales").await.is_empty());

        // Bad queries get a reason.
        for (q, code) in [
            ("", "invalid_query"),
            ("-spam", "invalid_query"),
            ("before:tomorrow", "invalid_query"),
            ("has:link", "invalid_query"),
            ("from:nobody-here", "unknown_user"),
        ] {
            let (s, page) = search(&alice, q, "").await;
            assert_eq!(
                (s, error_code(&page)),
                (StatusCode::BAD_REQUEST, code),
                "{q}"
            );
            assert!(!page["message"].as_str().unwrap_or_default().is_empty());
        }
        let long = "x".repeat(501);
        let (s, page) = search(&alice, &long, "").await;
        assert_eq!(
            (s, error_code(&page)),
            (StatusCode::BAD_REQUEST, "invalid_query")
        );
        // No token, no search.
        let anonymous = alice
            .http
            .get(format!("{}/api/v1/search?q=budget", alice.base))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_page_newest_first_without_repeats() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| c.limits.message_burst = 1000).await;
        let alice = server.user("alice").await;
        let room = alice.group("log", &[]).await;
        for i in 0..45 {
            let (status, ack) = alice
                .send_http(room, &format!("m{i}"), &format!("deploy {i} done"))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{ack}");
        }
        let mut seen = Vec::new();
        let mut cursor = String::new();
        loop {
            let (s, page) = search(&alice, "deploy", &format!("&limit=20{cursor}")).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            for hit in page["results"].as_array().unwrap() {
                seen.push(hit["message"]["body"].as_str().unwrap().to_string());
            }
            match page["next_cursor"].as_i64() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        let expected: Vec<String> = (0..45).rev().map(|i| format!("deploy {i} done")).collect();
        assert_eq!(seen, expected, "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_searches_every_room_and_each_search_is_audited() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bob = admin.create_user("bob").await;
        let reviewer = compliance_user(&admin, "reviewer").await;
        let one = alice.group("one", &[]).await;
        let two = bob.group("two", &[]).await;
        alice.send_http(one, "a", "wire the money offshore").await;
        bob.send_http(two, "b", "offshore account details").await;

        // Users reach only their own rooms; the compliance endpoint is not theirs.
        assert_eq!(bodies(&alice, "offshore").await.len(), 1);
        let (s, _) = alice
            .get(&format!(
                "/api/v1/compliance/search?q={}",
                encode("offshore")
            ))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);

        let (s, page) = reviewer
            .get(&format!(
                "/api/v1/compliance/search?q={}",
                encode("offshore from:alice")
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let results = page["results"].as_array().unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0]["room"]["id"], one);
        let (_, page) = reviewer
            .get(&format!(
                "/api/v1/compliance/search?q={}",
                encode("offshore")
            ))
            .await;
        assert_eq!(page["results"].as_array().unwrap().len(), 2);
        // `in:` resolves against every room for the compliance role.
        let (_, page) = reviewer
            .get(&format!(
                "/api/v1/compliance/search?q={}",
                encode("offshore in:two")
            ))
            .await;
        assert_eq!(page["results"][0]["room"]["id"], two);

        // Each search is on the record, with its query.
        let (s, chain) = reviewer.get("/api/v1/compliance/audit?limit=1000").await;
        assert_eq!(s, StatusCode::OK);
        let searches: Vec<&Value> = chain["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "compliance.search")
            .collect();
        assert_eq!(searches.len(), 3, "{backend:?}");
        assert_eq!(searches[0]["actor"], format!("user:{}", reviewer.id));
        assert_eq!(searches[0]["subject"], "messages");
        assert_eq!(searches[0]["detail"]["q"], "offshore from:alice");
        assert_eq!(searches[0]["detail"]["returned"], 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn has_file_finds_messages_with_an_attachment() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |_| {}).await;
        let alice = server.user("alice").await;
        let room = alice.group("files", &[]).await;
        let upload: Value = alice
            .http
            .post(format!("{}/api/v1/rooms/{room}/files", alice.base))
            .query(&[("name", "notes.txt")])
            .bearer_auth(&alice.token)
            .header("content-type", "text/plain")
            .body("meeting notes")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let file = upload["id"].as_i64().expect("file id");
        let (s, ack) = alice
            .post(
                &format!("/api/v1/rooms/{room}/messages"),
                json!({ "client_msg_id": "f1", "body": "notes attached", "files": [file] }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{ack}");
        alice.send_http(room, "f2", "notes to follow").await;
        assert_eq!(bodies(&alice, "notes").await.len(), 2);
        assert_eq!(
            bodies(&alice, "notes has:file").await,
            ["notes attached"],
            "{backend:?}"
        );
        let (_, page) = search(&alice, "has:file", "").await;
        assert_eq!(page["results"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            page.get("recent_only"),
            None,
            "the files index serves has:file"
        );
    }
}

/// What no index serves — only words shorter than three characters, or only filters —
/// looks at the newest `limits.search_short_scan_events` events and says so; a longer word
/// searches everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_no_index_serves_look_only_at_recent_events_and_say_so() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| c.limits.search_short_scan_events = 4).await;
        let alice = server.user("alice").await;
        let room = alice.group("log", &[]).await;
        for i in 0..8 {
            alice
                .send_http(room, &format!("m{i}"), &format!("ok deploy {i}"))
                .await;
        }
        let (s, page) = search(&alice, "deploy", "").await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["results"].as_array().map(Vec::len), Some(8));
        assert_eq!(page.get("recent_only"), None);
        for q in ["ok", "from:alice", "in:log", "from:alice after:2000-01-01"] {
            let (s, page) = search(&alice, q, "").await;
            assert_eq!(s, StatusCode::OK, "{q}: {page}");
            assert_eq!(page["recent_only"], true, "{backend:?} {q}: {page}");
            let found: Vec<&str> = page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|hit| hit["message"]["body"].as_str().unwrap())
                .collect();
            assert_eq!(
                found,
                ["ok deploy 7", "ok deploy 6", "ok deploy 5", "ok deploy 4"],
                "{backend:?} {q}: the newest four events are these messages"
            );
        }
    }
}

/// What the DLP plugin redacted was never stored, so it cannot be found; the redacted
/// message itself is found by its other words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_the_dlp_plugin_redacted_is_not_findable() {
    use crate::plugins_runtime::harness::{Spec, server_with};
    let spec = Spec::new("dlp", "dlp")
        .caps(&["log", "config", "kv"])
        .settings("\"action.card\" = \"redact\"\n");
    let (server, _plugins) = server_with(vec![spec]).await;
    let alice = server.user("alice").await;
    let room = alice.group("pay", &[]).await;
    let (s, ack) = alice
        .send_http(room, "d1", "card 4111 1111 1111 1111 for the invoice")
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["body"], "card **** **** **** 1111 for the invoice");
    assert_eq!(bodies(&alice, "invoice").await.len(), 1, "{ack}");
    // What was stored is findable (the last four digits the plugin kept)…
    assert_eq!(bodies(&alice, "1111").await.len(), 1);
    // …what it took out is not.
    for fragment in [
        "4111",
        "\"1111 1111\"",
        "\"4111 1111 1111 1111\"",
        "41111111",
    ] {
        assert!(bodies(&alice, fragment).await.is_empty(), "{fragment}");
    }
}

/// `switchboard search reindex` gives messages stored before search existed their search
/// text, with progress, while the server runs; a search finds them afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reindex_command_indexes_older_messages_while_the_server_runs() {
    use sqlx::Connection as _;
    for backend in BACKENDS {
        let (server, db) = start_on(backend, |c| c.limits.message_burst = 1000).await;
        let alice = server.user("alice").await;
        let room = alice.group("old", &[]).await;
        for i in 0..30 {
            alice
                .send_http(room, &format!("o{i}"), &format!("legacy note {i}"))
                .await;
        }
        // As after upgrading from a version without search.
        let clear = "UPDATE events SET search_text = NULL";
        match &db {
            None => {
                let path = server.dir.path().join("switchboard.db");
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                        .await
                        .unwrap();
                sqlx::query(clear).execute(&mut conn).await.unwrap();
            }
            Some(db) => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query(clear).execute(&mut conn).await.unwrap();
            }
        }
        assert!(bodies(&alice, "legacy").await.is_empty());

        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .env_clear()
            .env("SWITCHBOARD_DATA_DIR", server.dir.path())
            .args(["search", "reindex"]);
        if let Some(db) = &db {
            command.env("SWITCHBOARD_DATABASE_URL", &db.url);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{backend:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("indexed 30/30 messages (100%)"), "{stdout}");
        assert!(stdout.contains("30 updated"), "{stdout}");
        assert_eq!(
            bodies(&alice, "legacy").await.len(),
            20,
            "a full first page"
        );
    }
}

/// With `store.search_index = false` nothing is indexed and search says it is off; turned on
/// again, the server indexes what it missed by itself, in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_can_be_turned_off_and_catches_up_when_turned_on() {
    let server = crate::support::TestServer::start_with(|c| c.store.search_index = false).await;
    let alice = server.user("alice").await;
    let room = alice.group("quiet", &[]).await;
    for i in 0..5 {
        alice
            .send_http(room, &format!("q{i}"), &format!("unindexed memo {i}"))
            .await;
    }
    let (status, page) = search(&alice, "memo", "").await;
    assert_eq!(
        (status, error_code(&page)),
        (StatusCode::SERVICE_UNAVAILABLE, "search_disabled")
    );

    let server = server.restart(|c| c.store.search_index = true).await;
    let alice = server.login("alice", crate::support::PASSWORD).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let found = bodies(&alice, "memo").await.len();
        if found == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background indexing found {found} of 5"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The server's own group-commit writer merges SQLite's search index between commits (its
/// steps show in `switchboard_search_merge_duration_seconds`), and what it merged is found
/// as before. PostgreSQL's index has no such steps and finds the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_merges_its_search_index_between_commits() {
    for backend in BACKENDS {
        let (server, _db) = start_on(backend, |c| c.limits.message_burst = 1000).await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let room = alice.group("tusks", &[]).await;
        // One commit each (every send waits for its ack): a step is due after 8 commits,
        // and each commit leaves an index segment of its own to merge.
        for i in 0..24 {
            let (status, ack) = alice
                .send_http(room, &format!("w{i}"), &format!("walrus tusk {i}"))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{ack}");
        }
        let steps = crate::plugins_bots::metric_sample(
            &server,
            "switchboard_search_merge_duration_seconds_count ",
        )
        .await
        .unwrap_or_else(|| panic!("{backend:?}: /metrics shows no merge step count"));
        match backend {
            crate::hardening::Backend::Sqlite => {
                assert!(steps > 0, "no step merged the index after 24 commits")
            }
            crate::hardening::Backend::Postgres => assert_eq!(steps, 0),
        }
        assert_eq!(bodies(&alice, "walrus tusk").await.len(), 20, "{backend:?}");
        assert_eq!(bodies(&alice, "tusk 17").await, vec!["walrus tusk 17"]);
    }
}

//! The Matrix client–server subset: a real matrix-nio echo bot (PyPI `matrix-nio`, run
//! unmodified through its public API) logs in, joins, reads history, long-polls, answers,
//! sees edits and redactions, and logs out; the wire details a client relies on (errors,
//! tokens, idempotent sends) are checked from Rust; DLP applies to what a bot sends, on
//! SQLite and PostgreSQL.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::hardening::BACKENDS;
use crate::support::{Client, TestServer};

/// One Matrix request; the answer must fit the OpenAPI description.
async fn mx(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request =
        reqwest::Client::new().request(method.clone(), format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("matrix request");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let url_path = resp.url().path().to_string();
    let text = resp.text().await.expect("body");
    crate::api_contract::check(
        method.as_str(),
        &url_path,
        status.as_u16(),
        content_type.as_deref(),
        &text,
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Matrix requests to one server as one caller (or none).
#[derive(Clone, Copy)]
struct Mx<'a> {
    server: &'a TestServer,
    token: Option<&'a str>,
}

impl<'a> Mx<'a> {
    fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            token: None,
        }
    }

    fn with(self, token: Option<&'a str>) -> Self {
        Self { token, ..self }
    }

    async fn get(self, path: &str) -> (StatusCode, Value) {
        mx(self.server, reqwest::Method::GET, path, self.token, None).await
    }

    async fn post(self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        mx(self.server, reqwest::Method::POST, path, self.token, body).await
    }

    async fn put(self, path: &str, body: Value) -> (StatusCode, Value) {
        mx(
            self.server,
            reqwest::Method::PUT,
            path,
            self.token,
            Some(body),
        )
        .await
    }
}

async fn matrix_login(server: &TestServer, user: &str) -> String {
    let (status, body) = Mx::new(server)
        .post(
            "/_matrix/client/v3/login",
            Some(json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": user },
                "password": crate::support::PASSWORD,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

/// A room `owner` made with `bot` in it.
async fn room_with(owner: &Client, bot: &Client, name: &str) -> i64 {
    owner.group(name, &[bot.id]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_nio_echo_bot_runs_unmodified() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let alice = admin.create_user("alice").await;
    let bot = admin.create_user("echobot").await;
    let room = room_with(&alice, &bot, "bots").await;
    let (s, _) = alice.send_http(room, "h1", "from before the bot").await;
    assert_eq!(s, StatusCode::CREATED);
    let matrix_room = format!("!{room}:localhost");

    let script =
        crate::wasm_build::workspace_root().join("tests/e2e/integrations/matrix_echo_bot.py");
    let mut child = tokio::process::Command::new(super::python())
        .arg(script)
        .args([
            &server.base,
            "echobot",
            crate::support::PASSWORD,
            &matrix_room,
            "!stop",
        ])
        .env("MATRIX_SYNC_TIMEOUT_MS", "10000")
        .env("MATRIX_MAX_SECONDS", "90")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the bot");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen: Vec<Value> = Vec::new();
    // Read the bot's lines until one satisfies `want`.
    macro_rules! until {
        ($what:expr, $want:expr) => {{
            loop {
                let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                    .await
                    .unwrap_or_else(|_| {
                        panic!(
                            "the bot said nothing for a minute; waiting for {}; saw {seen:#?}",
                            $what
                        )
                    })
                    .expect("read the bot")
                    .unwrap_or_else(|| {
                        panic!("the bot ended; waiting for {}; saw {seen:#?}", $what)
                    });
                let line: Value = serde_json::from_str(&line).expect("a JSON line");
                assert_ne!(line["kind"], "error", "{line}; saw {seen:#?}");
                assert_ne!(line["kind"], "bad_event", "{line}");
                seen.push(line.clone());
                if $want(&line) {
                    break line;
                }
            }
        }};
    }

    let login = until!("login", |l: &Value| l["kind"] == "login");
    assert_eq!(login["user_id"], "@echobot:localhost");
    let whoami = until!("whoami", |l: &Value| l["kind"] == "whoami");
    assert_eq!(whoami["device_id"], login["device_id"]);
    let joined = until!("joined", |l: &Value| l["kind"] == "joined");
    assert_eq!(joined["room_id"], matrix_room);
    until!("ready", |l: &Value| l["kind"] == "ready");
    // The first sync and the history read showed what was there before.
    assert!(
        seen.iter()
            .any(|l| l["phase"] == "backlog" && l["body"] == "from before the bot"),
        "{seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l["phase"] == "history" && l["body"] == "from before the bot"),
        "{seen:#?}"
    );

    // A live message is answered through the long poll.
    let (s, ack) = alice.send_http(room, "l1", "hello bot").await;
    assert_eq!(s, StatusCode::CREATED);
    let hello = format!("${}", ack["id"]);
    let sent = until!("the echo", |l: &Value| l["kind"] == "sent");
    assert_eq!(sent["in_reply_to"], hello);
    assert_eq!(sent["body"], "echo: hello bot");
    let history = alice.history(room, "").await;
    let echo = history
        .iter()
        .find(|e| e["body"] == "echo: hello bot")
        .expect("the echo is stored");
    assert_eq!(echo["sender_id"], bot.id);

    // An edit arrives as `m.replace`, a deletion as a redaction.
    let (s, _) = alice
        .patch(
            &format!("/api/v1/rooms/{room}/messages/{}", ack["id"]),
            json!({ "body": "hello bot (edited)" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let edit = until!("the edit", |l: &Value| l["relates_to"]["rel_type"]
        == "m.replace");
    assert_eq!(edit["relates_to"]["event_id"], hello);
    assert_eq!(edit["new_content"]["body"], "hello bot (edited)");
    let (s, _) = alice
        .delete(&format!("/api/v1/rooms/{room}/messages/{}", ack["id"]))
        .await;
    assert_eq!(s, StatusCode::OK);
    let redaction = until!("the redaction", |l: &Value| l["type"] == "m.room.redaction");
    assert_eq!(redaction["redacts"], hello);
    assert_eq!(redaction["sender"], "@alice:localhost");
    assert!(
        !seen
            .iter()
            .any(|l| l["kind"] == "sent" && l["body"] != "echo: hello bot"),
        "edits are not answered: {seen:#?}"
    );

    // The stop word: the bot logs out (its answer must be exactly `{}`) and exits 0.
    alice.send_http(room, "l2", "!stop").await;
    let logout = until!("logout", |l: &Value| l["kind"] == "logout");
    assert_eq!(logout["ok"], true, "{logout}");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the bot exits")
        .expect("wait");
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_matrix_wire_details_a_client_relies_on() {
    let server = TestServer::start().await;
    let admin = server.admin().await;
    let alice = admin.create_user("alice").await;
    let bot = admin.create_user("nio").await;
    let room = room_with(&alice, &bot, "wire").await;
    let other = alice.group("elsewhere", &[]).await;
    let anon = Mx::new(&server);

    let (s, versions) = anon.get("/_matrix/client/versions").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        versions["versions"]
            .as_array()
            .unwrap()
            .contains(&json!("v1.1"))
    );
    let (s, flows) = anon.get("/_matrix/client/v3/login").await;
    assert_eq!(
        (s, flows["flows"][0]["type"].as_str()),
        (StatusCode::OK, Some("m.login.password"))
    );

    // Login: a wrong password is M_FORBIDDEN; another server's id too.
    for user in ["nio", "@nio:elsewhere.example"] {
        let (s, body) = anon.post("/_matrix/client/v3/login", Some(json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user }, "password": "wrong-password-123" })))
        .await;
        assert_eq!(
            (s, body["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
            "{body}"
        );
    }
    let token = matrix_login(&server, "@nio:localhost").await;
    let nio = anon.with(Some(&token));

    // Tokens: none, and one that is not ours.
    let (s, body) = anon.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (s, body["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_MISSING_TOKEN"))
    );
    let (s, body) = anon
        .with(Some("mx_nope.nope"))
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(
        (s, body["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN"))
    );
    // Our own API's access token is not a Matrix token.
    let (s, body) = anon
        .with(Some(&bot.token))
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(
        (s, body["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN"))
    );
    let (s, who) = nio.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (s, who["user_id"].as_str()),
        (StatusCode::OK, Some("@nio:localhost"))
    );

    // Join: a room one was added to; not another.
    let (s, body) = nio
        .post(&format!("/_matrix/client/v3/join/!{room}:localhost"), None)
        .await;
    assert_eq!(
        (s, body["room_id"].clone()),
        (StatusCode::OK, json!(format!("!{room}:localhost")))
    );
    let (s, body) = nio
        .post(
            &format!("/_matrix/client/v3/rooms/!{other}:localhost/join"),
            None,
        )
        .await;
    assert_eq!(
        (s, body["errcode"].as_str()),
        (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (s, body) = nio
        .post("/_matrix/client/v3/join/%23general:localhost", None)
        .await;
    assert_eq!(
        (s, body["errcode"].as_str()),
        (StatusCode::NOT_FOUND, Some("M_NOT_FOUND")),
        "{body}"
    );

    // Send: idempotent by transaction id, stored once.
    let send_path =
        |txn: &str| format!("/_matrix/client/v3/rooms/!{room}:localhost/send/m.room.message/{txn}");
    let content = json!({ "msgtype": "m.text", "body": "once only" });
    let (s, first) = nio.put(&send_path("txn-1"), content.clone()).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let (s, again) = nio.put(&send_path("txn-1"), content).await;
    assert_eq!((s, &again), (StatusCode::OK, &first));
    let stored = alice.history(room, "").await;
    assert_eq!(
        stored.iter().filter(|e| e["body"] == "once only").count(),
        1
    );
    // An edit and a reaction through Matrix, retried too.
    let target = first["event_id"].as_str().unwrap().to_string();
    let edit = json!({ "msgtype": "m.text", "body": "* once, edited",
        "m.new_content": { "msgtype": "m.text", "body": "once, edited" },
        "m.relates_to": { "rel_type": "m.replace", "event_id": target } });
    let (s, e1) = nio.put(&send_path("txn-2"), edit.clone()).await;
    assert_eq!(s, StatusCode::OK, "{e1}");
    let (_, e2) = nio.put(&send_path("txn-2"), edit).await;
    assert_eq!(e1, e2);
    assert_ne!(e1["event_id"], first["event_id"]);
    let stored = alice.history(room, "").await;
    assert!(
        stored.iter().any(|e| e["body"] == "once, edited"),
        "{stored:?}"
    );
    assert_eq!(
        stored.iter().filter(|e| e["kind"] == "edit").count(),
        1,
        "a retried edit is one edit"
    );
    let reaction =
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": "👍" } });
    let (s, body) = nio
        .put(
            &format!("/_matrix/client/v3/rooms/!{room}:localhost/send/m.reaction/txn-3"),
            reaction,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Bad sends: not JSON, no body, an event type we do not keep, a room we are not in.
    let (s, body) = nio
        .put(&send_path("txn-4"), json!({ "msgtype": "m.text" }))
        .await;
    assert_eq!(
        (s, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")),
        "{body}"
    );
    let (s, body) = nio
        .put(
            &format!("/_matrix/client/v3/rooms/!{room}:localhost/send/m.room.encrypted/txn-5"),
            json!({}),
        )
        .await;
    assert_eq!(
        (s, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_BAD_JSON")),
        "{body}"
    );
    let (s, body) = nio
        .put(
            &format!("/_matrix/client/v3/rooms/!{other}:localhost/send/m.room.message/txn-6"),
            json!({ "msgtype": "m.text", "body": "sneaky" }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    let resp = reqwest::Client::new()
        .put(format!("{}{}", server.base, send_path("txn-7")))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["errcode"], "M_NOT_JSON");

    // Sync: a first sync answers at once; a bogus token is refused, not guessed at.
    let (s, first_sync) = nio.get("/_matrix/client/v3/sync?timeout=20000").await;
    assert_eq!(s, StatusCode::OK);
    let next = first_sync["next_batch"].as_str().unwrap().to_string();
    let timeline = &first_sync["rooms"]["join"][format!("!{room}:localhost")]["timeline"]["events"];
    assert!(
        timeline
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.reaction"),
        "{timeline}"
    );
    for bogus in [
        "garbage",
        "t5",
        &format!("s{room}.999999"),
        &format!("s{room}.1_{room}.2"),
    ] {
        let (s, body) = nio
            .get(&format!("/_matrix/client/v3/sync?since={bogus}"))
            .await;
        assert_eq!(
            (s, body["errcode"].as_str()),
            (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM")),
            "{bogus}: {body}"
        );
    }
    // A long poll returns as soon as something arrives, with only what is new.
    let poll = {
        let server_base = server.base.clone();
        let token = token.clone();
        let next = next.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!(
                    "{server_base}/_matrix/client/v3/sync?since={next}&timeout=20000"
                ))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    // The waiting poll is a hub session of its own kind: counted, but not as a socket.
    crate::plugins_bots::wait_metric(&server, "switchboard_long_polls", 1).await;
    assert_eq!(
        crate::plugins_bots::metric(&server, "switchboard_ws_connections").await,
        0
    );
    alice.send_http(room, "p1", "wake up").await;
    let woke = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("woken")
        .unwrap();
    let events = woke["rooms"]["join"][format!("!{room}:localhost")]["timeline"]["events"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(events.len(), 1, "{woke}");
    assert_eq!(events[0]["content"]["body"], "wake up");
    assert_ne!(woke["next_batch"], json!(next));

    // History pages back with `end`, and `end` is left out at the beginning.
    let (s, page) = nio
        .get(&format!(
            "/_matrix/client/v3/rooms/!{room}:localhost/messages?dir=b&limit=2"
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["chunk"][0]["content"]["body"], "wake up", "{page}");
    let mut from = page["end"].as_str().expect("more to read").to_string();
    let mut pages = 1;
    loop {
        let (_, page) = nio
            .get(&format!(
                "/_matrix/client/v3/rooms/!{room}:localhost/messages?dir=b&limit=2&from={from}"
            ))
            .await;
        pages += 1;
        match page["end"].as_str() {
            Some(end) => from = end.to_string(),
            None => break,
        }
        assert!(pages < 20, "paging never ends");
    }
    let (s, body) = nio
        .get(&format!(
            "/_matrix/client/v3/rooms/!{room}:localhost/messages?from=bogus"
        ))
        .await;
    assert_eq!(
        (s, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );

    // Redact, retried: one deletion.
    let redact = format!("/_matrix/client/v3/rooms/!{room}:localhost/redact/{target}/txn-8");
    let (s, r1) = nio.put(&redact, json!({})).await;
    assert_eq!(s, StatusCode::OK, "{r1}");
    let (_, r2) = nio.put(&redact, json!({})).await;
    assert_eq!(r1, r2);

    // An endpoint this server does not serve: Matrix's own answer.
    let resp = reqwest::get(format!("{}/_matrix/client/v3/pushrules/", server.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["errcode"],
        "M_UNRECOGNIZED"
    );

    // Logout answers exactly `{}` and ends the token.
    let (s, body) = nio.post("/_matrix/client/v3/logout", None).await;
    assert_eq!((s, body), (StatusCode::OK, json!({})));
    let (s, body) = nio.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (s, body["errcode"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("M_UNKNOWN_TOKEN"))
    );
}

/// A card number a Matrix bot sends is refused by the DLP plugin like any other, and
/// nothing is stored: on both stores.
#[tokio::test]
async fn dlp_blocks_a_card_number_a_matrix_bot_sends() {
    for backend in BACKENDS {
        let (server, _guard) = super::start_with_card_dlp(backend).await;
        let admin = server.admin().await;
        let alice = admin.create_user("alice").await;
        let bot = admin.create_user("nio").await;
        let room = room_with(&alice, &bot, "pay").await;
        let token = matrix_login(&server, "nio").await;
        let nio = Mx::new(&server).with(Some(&token));
        let send = |txn: &str| {
            format!("/_matrix/client/v3/rooms/!{room}:localhost/send/m.room.message/{txn}")
        };
        let (s, body) = nio
            .put(
                &send("t1"),
                json!({ "msgtype": "m.text", "body": "card 4111 1111 1111 1111 thanks" }),
            )
            .await;
        assert_eq!(
            (s, body["errcode"].as_str()),
            (StatusCode::FORBIDDEN, Some("M_FORBIDDEN")),
            "{backend:?}: {body}"
        );
        assert_eq!(
            body["switchboard_code"], "message_rejected",
            "{backend:?}: {body}"
        );
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("data-loss-prevention"),
            "{body}"
        );
        // The plugin is working, not refusing everything: a clean message passes.
        let (s, body) = nio
            .put(
                &send("t2"),
                json!({ "msgtype": "m.text", "body": "nothing sensitive" }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{backend:?}: {body}");
        let stored = alice.history(room, "").await;
        assert!(
            !stored
                .iter()
                .any(|e| e["body"].as_str().is_some_and(|b| b.contains("4111"))),
            "{backend:?}: {stored:?}"
        );
        assert!(
            stored.iter().any(|e| e["body"] == "nothing sensitive"),
            "{backend:?}"
        );
    }
}

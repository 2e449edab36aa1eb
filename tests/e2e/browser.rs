//! The web client and admin console in a real browser: Debian's `chromium` (every scenario)
//! and Firefox ESR (the chat, reconnect and plugin-page scenarios), headless, driven over WebDriver by
//! `chromedriver` / `geckodriver` started here on loopback (see `driver`). Nothing is
//! downloaded.
//!
//! Without the browsers and drivers these tests fail (they do not skip): CI installs them
//! (`apt-get install chromium chromium-driver firefox-esr`, `cargo install geckodriver`).
//!
//! Run with `cargo test --test e2e browser`; `cargo test --test e2e browser::screenshots --
//! --ignored` refreshes `docs/screenshots/`.

mod driver;

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client as Browser, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use self::driver::{Engine, with_browsers, with_browsers_in};
use crate::support::{ADMIN_PASSWORD, PASSWORD, TestServer, reaction_path};

const WAIT: Duration = Duration::from_secs(20);
const ENTER: &str = "\u{E007}";

/// Poll `script` (a JS function body returning a value) until `ok` accepts the result.
async fn eventually(b: &Browser, what: &str, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        match b.execute(script, vec![]).await {
            Ok(value) if ok(&value) => return value,
            Ok(value) => last = value,
            Err(err) => last = Value::String(err.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}; last seen: {last}");
}

/// The first element matching `css` once it is displayed (pages keep hidden views in the
/// DOM, and typing into one of those fails).
async fn wait_css(b: &Browser, css: &str) -> fantoccini::elements::Element {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(el) = b.find(Locator::Css(css)).await
            && el.is_displayed().await.unwrap_or(false)
        {
            return el;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "element `{css}` did not appear"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn type_into(b: &Browser, css: &str, text: &str) {
    wait_css(b, css)
        .await
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("typing into `{css}`: {e}"));
}

/// Click `css`, finding it again if a re-render replaced it in between (the room list is
/// rebuilt on every live event).
async fn click(b: &Browser, css: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match wait_css(b, css).await.click().await {
            Ok(()) => return,
            Err(e) if tokio::time::Instant::now() >= deadline => panic!("clicking `{css}`: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Move the pointer over the first element matching `css` (its `:hover` styles apply).
async fn hover(b: &Browser, css: &str) {
    use fantoccini::actions::{InputSource, MouseActions, PointerAction};
    let element = wait_css(b, css).await;
    let mouse = MouseActions::new("mouse".into()).then(PointerAction::MoveToElement {
        element,
        duration: None,
        x: 0.0,
        y: 0.0,
    });
    b.perform_actions(mouse)
        .await
        .unwrap_or_else(|e| panic!("hovering `{css}`: {e}"));
}

async fn login(b: &Browser, server: &TestServer, page: &str, name: &str, password: &str) {
    b.goto(&format!("{}{page}", server.base))
        .await
        .expect("open page");
    type_into(b, "#username", name).await;
    type_into(b, "#password", password).await;
    click(b, "#login-form button[type=submit]").await;
}

/// The bodies of the messages shown in the open room, in order.
const BODIES: &str =
    "return [...document.querySelectorAll('#timeline .msg .msg-body')].map(e => e.textContent)";

async fn wait_for_body(b: &Browser, body: &str) {
    let wanted = body.to_string();
    eventually(b, &format!("message {body:?}"), BODIES, |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(wanted.as_str())))
    })
    .await;
}

/// Wait until the client's socket is connected and caught up.
async fn wait_online(b: &Browser) {
    eventually(
        b,
        "the connection status to be online",
        "const s = document.querySelector('#conn-status'); \
         return [s?.dataset.state, s?.textContent]",
        |v| v[0] == "online",
    )
    .await;
}

/// Type `text` and press Enter; returns once the server has acknowledged it (the
/// optimistic local copy has become the stored message).
async fn send(b: &Browser, text: &str) {
    type_into(b, "#composer-input", &format!("{text}{ENTER}")).await;
    let wanted = text.to_string();
    eventually(
        b,
        &format!("{text:?} to be acknowledged"),
        "return [...document.querySelectorAll('#timeline .msg:not(.local) .msg-body')]\
         .map(e => e.textContent)",
        |v| {
            v.as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(wanted.as_str())))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_real_time() {
    two_users_chat(Engine::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_real_time_in_firefox() {
    two_users_chat(Engine::Firefox).await;
}

async fn two_users_chat(engine: Engine) {
    let server = TestServer::start().await;
    server.user("alice").await;
    server.user("bob").await;
    let server = &server;
    with_browsers_in(engine, 2, |browsers| async move {
        let (alice, bob) = (&browsers[0], &browsers[1]);
        login(alice, server, "/", "alice", PASSWORD).await;
        login(bob, server, "/", "bob", PASSWORD).await;
        for b in [alice, bob] {
            wait_online(b).await;
        }

        // Alice starts a direct chat with Bob from the UI.
        click(alice, "#new-direct").await;
        click(alice, "#dialog button[data-user-name=bob]").await;
        wait_css(alice, "#room:not([hidden])").await;
        let title = wait_css(alice, "#room-title")
            .await
            .text()
            .await
            .expect("title");
        assert_eq!(title, "bob", "a direct room is named after the peer");
        send(alice, "hello bob").await;

        // Bob learns of the room from the live event, with an unread count, and opens it.
        let unread = wait_css(bob, ".room-item.has-unread .badge").await;
        assert_eq!(unread.text().await.expect("badge"), "1");
        click(bob, ".room-item.has-unread").await;
        wait_for_body(bob, "hello bob").await;
        assert_eq!(
            wait_css(bob, "#room-title")
                .await
                .text()
                .await
                .expect("title"),
            "alice"
        );

        // Typing shows on the other side; Enter sends, Shift+Enter would not.
        type_into(bob, "#composer-input", "hi alice").await;
        eventually(
            alice,
            "typing indicator",
            "return document.querySelector('#typing').textContent",
            |v| v.as_str().is_some_and(|t| t.contains("bob is typing")),
        )
        .await;
        type_into(bob, "#composer-input", ENTER).await;
        wait_for_body(alice, "hi alice").await;

        // Both ways, several times, in order on both screens.
        for i in 0..3 {
            send(alice, &format!("ping {i}")).await;
            wait_for_body(bob, &format!("ping {i}")).await;
            send(bob, &format!("pong {i}")).await;
            wait_for_body(alice, &format!("pong {i}")).await;
        }
        let expected = json!([
            "hello bob",
            "hi alice",
            "ping 0",
            "pong 0",
            "ping 1",
            "pong 1",
            "ping 2",
            "pong 2"
        ]);
        for b in [alice, bob] {
            let bodies = eventually(b, "the whole conversation", BODIES, |v| v == &expected).await;
            assert_eq!(bodies, expected);
        }
        // Bob read everything while looking at the room: no unread badge anywhere.
        let badges = alice
            .execute("return document.querySelectorAll('.badge').length", vec![])
            .await
            .expect("badges");
        assert_eq!(badges, json!(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_resumes_after_a_server_restart_without_gap_or_duplicate() {
    resumes_after_restart(Engine::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_resumes_after_a_server_restart_in_firefox() {
    resumes_after_restart(Engine::Firefox).await;
}

async fn resumes_after_restart(engine: Engine) {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("ops", &[bob.id]).await;
    for i in 0..3 {
        let (status, _) = bob
            .send_http(room, &format!("before-{i}"), &format!("before {i}"))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }

    let server = std::sync::Arc::new(tokio::sync::Mutex::new(Some(server)));
    let server_ref = server.clone();
    with_browsers_in(engine, 1, |browsers| async move {
        let b = &browsers[0];
        let base = server_ref
            .lock()
            .await
            .as_ref()
            .expect("server")
            .base
            .clone();
        b.goto(&format!("{base}/")).await.expect("open");
        type_into(b, "#username", "alice").await;
        type_into(b, "#password", PASSWORD).await;
        click(b, "#login-form button[type=submit]").await;
        click(b, &format!(".room-item[data-room-id='{room}']")).await;
        wait_for_body(b, "before 2").await;
        wait_online(b).await;
        // Proves below that the page was never reloaded: the same tab resumed.
        b.execute("window.__sameTab = true", vec![])
            .await
            .expect("mark tab");

        let old = server_ref.lock().await.take().expect("server");
        let restarted = old.restart(|_| {}).await;
        // Sent while the client is still backing off: they reach it through `sync`.
        for i in 0..3 {
            let (status, body) = bob
                .send_http(room, &format!("during-{i}"), &format!("during {i}"))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        wait_online(b).await;
        wait_for_body(b, "during 2").await;
        // And live delivery works again on the new connection.
        let (status, _) = bob.send_http(room, "after-0", "after 0").await;
        assert_eq!(status, StatusCode::CREATED);
        wait_for_body(b, "after 0").await;
        send(b, "alice is back").await;

        let expected = json!([
            "before 0",
            "before 1",
            "before 2",
            "during 0",
            "during 1",
            "during 2",
            "after 0",
            "alice is back"
        ]);
        let bodies = eventually(b, "every message exactly once", BODIES, |v| v == &expected).await;
        assert_eq!(bodies, expected, "no gap, no duplicate");
        let same = b
            .execute("return window.__sameTab === true", vec![])
            .await
            .expect("tab");
        assert_eq!(same, json!(true), "the client resumed without a reload");

        // The browser's own message was committed once, on the restarted server.
        let history = bob.history(room, "").await;
        let from_alice: Vec<_> = history
            .iter()
            .filter(|e| e["body"] == "alice is back")
            .collect();
        assert_eq!(from_alice.len(), 1, "{history:?}");
        *server_ref.lock().await = Some(restarted);
    })
    .await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_and_deactivates_users() {
    let server = TestServer::start().await;
    let carol = server.user("carol").await;
    server.user("erin").await;
    let server = &server;
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];

        // A non-admin gets the page but none of the data.
        login(b, server, "/admin", "erin", PASSWORD).await;
        let denied = wait_css(b, "#denied-view:not([hidden])").await;
        assert!(denied.text().await.expect("text").contains("Admins only"));
        click(b, "#denied-logout").await;

        type_into(b, "#username", "admin").await;
        type_into(b, "#password", ADMIN_PASSWORD).await;
        click(b, "#login-form button[type=submit]").await;
        wait_css(b, "#users-table tr[data-user-name='carol']").await;

        // Create a user through the form.
        type_into(b, "#create-user input[name=name]", "dave").await;
        type_into(b, "#create-user input[name=display_name]", "Dave").await;
        type_into(b, "#create-user input[name=password]", "dave-password-1").await;
        click(b, "#create-user button[type=submit]").await;
        wait_css(b, "#users-table tr[data-user-name='dave']").await;
        let dave = server.login("dave", "dave-password-1").await;
        assert_eq!(dave.name, "dave");

        // Deactivate carol (the page asks for confirmation).
        click(
            b,
            "#users-table tr[data-user-name='carol'] button.toggle-active",
        )
        .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if b.accept_alert().await.is_ok() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no confirmation dialog"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let row = "#users-table tr[data-user-name='carol']";
        eventually(
            b,
            "carol shown as deactivated",
            &format!("return document.querySelector(\"{row}\")?.textContent"),
            |v| v.as_str().is_some_and(|t| t.contains("deactivated")),
        )
        .await;
        let (status, body) = carol.get("/api/v1/me").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "carol's session ended: {body}"
        );
        let resp = server
            .http
            .post(format!("{}/api/v1/auth/login", server.base))
            .json(&json!({ "username": "carol", "password": PASSWORD }))
            .send()
            .await
            .expect("login");
        assert_ne!(
            resp.status(),
            StatusCode::OK,
            "a deactivated user cannot log in"
        );

        // The other sections render from the admin endpoints.
        click(b, "#tab-rooms").await;
        wait_css(b, "#section[data-section=rooms] table").await;
        click(b, "#tab-audit").await;
        eventually(
            b,
            "the deactivation in the audit log",
            "return document.querySelector('#section')?.textContent",
            |v| v.as_str().is_some_and(|t| t.contains("user.deactivate")),
        )
        .await;
        click(b, "#tab-health").await;
        wait_css(b, "#health-connections").await;
        // This server has no plugins directory: the page says so instead of failing.
        click(b, "#tab-plugins").await;
        eventually(
            b,
            "the plugins page to explain that plugins are not configured",
            "return document.querySelector('#section[data-section=plugins]')?.textContent",
            |v| v.as_str().is_some_and(|t| t.contains("not configured")),
        )
        .await;
    })
    .await;
}

/// A compliance reviewer who is not an admin gets the Compliance page only: the chain's
/// status, a hold placed through the form, its release asked for, a room's retention set,
/// and an export run whose file downloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compliance_reviewer_places_and_releases_a_hold_in_the_console() {
    let exports = tempfile::tempdir().expect("tempdir");
    let export_dir = exports.path().to_path_buf();
    let server = TestServer::start_with(move |c| {
        c.compliance.export_dir = Some(export_dir);
        c.compliance.retention_min_days = 7;
    })
    .await;
    let admin = server.admin().await;
    let rita = server.user("rita").await;
    let alice = server.user("alice").await;
    let room = alice.group("deal", &[]).await;
    let (status, _) = admin
        .patch(
            &format!("/api/v1/users/{}", rita.id),
            json!({ "compliance": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let server = &server;
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/admin", "rita", PASSWORD).await;
        let status = wait_css(b, "#chain-status").await;
        assert!(
            status.text().await.expect("text").contains("intact"),
            "the chain is reported intact"
        );
        let tabs = b
            .execute(
                "return [...document.querySelectorAll('#sections-nav a')].map((a) => a.dataset.section)",
                vec![],
            )
            .await
            .expect("tabs");
        assert_eq!(
            tabs,
            json!(["compliance", "files", "api"]),
            "a reviewer sees only the compliance page, the file quarantine and the API reference"
        );

        type_into(b, "#create-hold input[name=name]", "Case 1").await;
        type_into(b, "#create-hold input[name=rooms]", &room.to_string()).await;
        click(b, "#create-hold button[type=submit]").await;
        wait_css(b, "#holds-table tr[data-hold-name='Case 1']").await;
        let holds = rita.get("/api/v1/compliance/holds").await.1;
        assert_eq!(holds[0]["rooms"], json!([room]), "{holds}");

        click(b, "#holds-table tr[data-hold-name='Case 1'] button.release-hold").await;
        eventually(
            b,
            "the release to be pending",
            "return document.querySelector(\"#holds-table tr[data-hold-name='Case 1']\").textContent",
            |v| v.as_str().is_some_and(|t| t.contains("releasing")),
        )
        .await;

        // A policy shorter than the minimum is refused with the server's reason; a valid
        // one shows in the table.
        type_into(b, "#set-retention input[name=room]", &room.to_string()).await;
        type_into(b, "#set-retention input[name=days]", "3").await;
        b.execute(
            "document.querySelector('#set-retention input[name=days]').removeAttribute('min')",
            vec![],
        )
        .await
        .expect("drop the form's own check");
        click(b, "#set-retention button[type=submit]").await;
        eventually(
            b,
            "the refusal to be shown",
            "return document.querySelector('#toast').textContent",
            |v| v.as_str().is_some_and(|t| t.contains("at least 7 day")),
        )
        .await;
        assert_eq!(
            rita.get("/api/v1/compliance/retention").await.1["rooms"],
            json!([])
        );
        b.execute(
            "document.querySelector('#set-retention input[name=days]').value = '30'",
            vec![],
        )
        .await
        .expect("set days");
        click(b, "#set-retention button[type=submit]").await;
        wait_css(b, &format!("#retention-table tr[data-room='{room}']")).await;
        assert_eq!(
            rita.get("/api/v1/compliance/retention").await.1["rooms"],
            json!([{ "room": room, "days": 30 }])
        );

        // An export run from the page lists its batch; a file of it downloads.
        alice.send_http(room, "m1", "for the archive").await;
        type_into(b, "#run-export input[name=rooms]", &room.to_string()).await;
        click(b, "#run-export button[type=submit]").await;
        wait_css(b, "#exports-table tr[data-batch='on-demand/batch-000001']").await;
        let fetched = b
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const button = [...document.querySelectorAll('#exports-table button.download')]
                   .find((el) => el.textContent === 'posts.csv');
                 const original = URL.createObjectURL;
                 URL.createObjectURL = (blob) => { blob.text().then(done); URL.createObjectURL = original; return original(blob); };
                 button.click();",
                vec![],
            )
            .await
            .expect("download");
        assert!(
            fetched.as_str().is_some_and(|t| t.contains("for the archive")),
            "{fetched}"
        );
    })
    .await;
}

/// Files in the chat client: two dropped on the room upload with progress, the message shows
/// their cards (the image previewed), a file downloads byte for byte, and a file the server
/// refuses shows the server's reason: too large, or blocked by the DLP plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_dropped_on_a_room_are_sent_previewed_and_downloaded() {
    use crate::plugins_runtime::harness::{Spec, server_tweaked};
    let dlp = Spec::new("dlp", "dlp").caps(&["log", "config", "kv"]);
    let (server, _plugins) =
        server_tweaked(vec![dlp], |c| c.files.max_upload_bytes = 32 * 1024 * 1024).await;
    let alice = server.user("alice").await;
    let room = alice.group("files", &[]).await;
    let server = &server;
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/", "alice", PASSWORD).await;
        wait_online(b).await;
        click(b, &format!(".room-item[data-room-id='{room}']")).await;
        // A 1x1 PNG and a CSV, dropped as a user would drag them from the desktop.
        let drop = |files_js: &str| {
            format!(
                "const dt = new DataTransfer();
                 {files_js}
                 document.querySelector('#room').dispatchEvent(
                   new DragEvent('drop', {{ dataTransfer: dt, bubbles: true, cancelable: true }}));"
            )
        };
        b.execute(
            &drop(
                "const png = Uint8Array.from(atob('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='), (c) => c.charCodeAt(0));
                 dt.items.add(new File([png], 'dot.png'));
                 dt.items.add(new File(['name,amount\\nbob,12\\n'], 'ledger.csv'));",
            ),
            vec![],
        )
        .await
        .expect("drop");
        eventually(
            b,
            "both uploads to finish",
            "return document.querySelectorAll('#pending-files li[data-state=ready]').length",
            |v| v.as_u64() == Some(2),
        )
        .await;
        type_into(b, "#composer-input", &format!("the numbers{ENTER}")).await;
        wait_css(b, ".msg .file-card[data-file-id] .file-download").await;
        eventually(
            b,
            "the image preview to load",
            "const img = document.querySelector('.msg .file-card img.file-preview'); return img ? img.naturalWidth : 0",
            |v| v.as_u64() == Some(1),
        )
        .await;
        assert_eq!(
            b.execute(
                "return document.querySelectorAll('#pending-files li').length",
                vec![]
            )
            .await
            .expect("pending"),
            json!(0),
            "the composer's files went with the message"
        );
        let fetched = b
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 const card = [...document.querySelectorAll('.msg .file-card')]
                   .find((c) => c.textContent.includes('ledger.csv'));
                 const original = URL.createObjectURL;
                 URL.createObjectURL = (blob) => { blob.text().then(done); URL.createObjectURL = original; return original(blob); };
                 card.querySelector('.file-download').click();",
                vec![],
            )
            .await
            .expect("download");
        assert_eq!(fetched, json!("name,amount\nbob,12\n"));

        // Refused by the server: the reason is shown where the file was.
        b.execute(
            &drop("dt.items.add(new File([new Uint8Array(40 * 1024 * 1024)], 'huge.bin'));"),
            vec![],
        )
        .await
        .expect("drop");
        let reason = eventually(
            b,
            "the refusal",
            "const li = document.querySelector('#pending-files li[data-state=rejected]'); return li ? li.textContent : ''",
            |v| v.as_str().is_some_and(|t| !t.is_empty()),
        )
        .await;
        assert!(
            reason.as_str().unwrap_or_default().contains("at most 33554432 bytes"),
            "{reason}"
        );

        // A large file goes in chunks (resumable), with the same outcome as any upload.
        b.execute(
            &drop("dt.items.add(new File([new Uint8Array(17 * 1024 * 1024)], 'big.bin'));"),
            vec![],
        )
        .await
        .expect("drop");
        let shown = eventually(
            b,
            "the chunked upload to finish",
            "const li = document.querySelector(\"#pending-files li[data-name='big.bin'][data-state=ready]\"); return li ? li.textContent : ''",
            |v| v.as_str().is_some_and(|t| !t.is_empty()),
        )
        .await;
        assert!(shown.as_str().unwrap_or_default().contains("17 MB"), "{shown}");

        // Blocked by the DLP plugin: its reason, naming what it found, not the number.
        b.execute(
            &drop(&format!(
                "dt.items.add(new File(['name,card\\nbob,{CARD}\\n'], 'cards.csv'));"
            )),
            vec![],
        )
        .await
        .expect("drop");
        let reason = eventually(
            b,
            "the DLP refusal",
            "const li = [...document.querySelectorAll('#pending-files li[data-state=rejected]')].find((l) => l.dataset.name === 'cards.csv'); return li ? li.textContent : ''",
            |v| v.as_str().is_some_and(|t| !t.is_empty()),
        )
        .await;
        let reason = reason.as_str().unwrap_or_default();
        assert!(reason.contains("payment card number"), "{reason}");
        assert!(!reason.contains("1111"), "{reason}");
    })
    .await;
}

/// An admin reviews the quarantine in the console: the file the DLP plugin held shows with
/// the plugin's reason, one is released to its room, another deleted, and the storage page
/// counts what is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_releases_and_deletes_quarantined_files_in_the_console() {
    use crate::plugins_runtime::harness::{Spec, server_with};
    let dlp = Spec::new("dlp", "dlp").caps(&["log", "config", "kv"]);
    let (server, _plugins) = server_with(vec![dlp]).await;
    let alice = server.user("alice").await;
    let room = alice.group("contacts", &[]).await;
    let mut held = Vec::new();
    for name in ["keep.csv", "drop.csv"] {
        let (status, file) =
            crate::files::upload(&alice, room, name, b"bob,bob@example.com\n".to_vec()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{file}");
        held.push(file["id"].as_i64().expect("id"));
    }
    let server = &server;
    let alice = &alice;
    let held = &held;
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/admin#files", "admin", ADMIN_PASSWORD).await;
        let row = |id: i64| format!("#quarantine tr[data-file-id='{id}']");
        let reason = wait_css(b, &format!("{} .quarantine-reason", row(held[0])))
            .await
            .text()
            .await
            .expect("reason");
        assert!(reason.contains("dlp: held for review"), "{reason}");
        assert!(reason.contains("e-mail address"), "{reason}");
        click(b, &format!("{} button.release-file", row(held[0]))).await;
        click_and_confirm(b, &format!("{} button.discard-file", row(held[1]))).await;
        eventually(
            b,
            "the quarantine to empty",
            "return document.querySelectorAll('#quarantine tr[data-file-id]').length",
            |v| v.as_u64() == Some(0),
        )
        .await;
        let total = wait_css(b, "#storage-total")
            .await
            .text()
            .await
            .expect("total");
        assert!(total.contains("local storage"), "{total}");
    })
    .await;
    let (status, _) = alice.get(&format!("/api/v1/files/{}", held[0])).await;
    assert_eq!(status, StatusCode::OK, "released to the room");
    let (status, _) = alice.get(&format!("/api/v1/files/{}", held[1])).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted for good");
}

/// Click `css`, then accept the `confirm()` it opens.
async fn click_and_confirm(b: &Browser, css: &str) {
    click(b, css).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while b.accept_alert().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no confirmation dialog after clicking `{css}`"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server with the DLP plugin redacting card numbers, loaded from a plugins directory.
async fn server_with_dlp() -> (TestServer, TempDir) {
    use crate::plugins_runtime::harness::{Spec, server_with};
    let spec = Spec::new("dlp", "dlp")
        .caps(&["log", "config", "kv"])
        .settings("\"action.card\" = \"redact\"\n");
    server_with(vec![spec]).await
}

const CARD: &str = "4111 1111 1111 1111";

/// The admin console's plugin page drives the live chain: a settings change made in its form
/// and a click on Disable decide what happens to the very next message in another browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_disables_a_plugin_and_the_next_message_is_not_filtered() {
    plugin_page_drives_the_chain(Engine::Chromium).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_disables_a_plugin_in_firefox() {
    plugin_page_drives_the_chain(Engine::Firefox).await;
}

async fn plugin_page_drives_the_chain(engine: Engine) {
    let (server, _plugins) = server_with_dlp().await;
    let alice = server.user("alice").await;
    let room = alice.group("payments", &[]).await;
    let server = &server;
    with_browsers_in(engine, 2, |browsers| async move {
        let (admin, chat) = (&browsers[0], &browsers[1]);
        login(chat, server, "/", "alice", PASSWORD).await;
        wait_online(chat).await;
        click(chat, &format!(".room-item[data-room-id='{room}']")).await;
        // Redacted: the stored message replaces the typed one.
        type_into(chat, "#composer-input", &format!("one {CARD}{ENTER}")).await;
        wait_for_body(chat, "one **** **** **** 1111").await;

        login(admin, server, "/admin#plugins", "admin", ADMIN_PASSWORD).await;
        let card = "#plugin-dlp";
        wait_css(admin, &format!("{card} .plugin-state")).await;
        assert_eq!(
            wait_css(admin, &format!("{card} .plugin-state"))
                .await
                .text()
                .await
                .expect("state"),
            "enabled"
        );
        let capabilities = wait_css(admin, &format!("{card} .plugin-capabilities"))
            .await
            .text()
            .await
            .expect("caps");
        assert_eq!(capabilities, "log, config, kv");
        // The counters become a chart once two samples exist.
        wait_css(admin, &format!("{card} svg.line-chart")).await;

        // Change a setting in the form: cards are now blocked, with the reason shown.
        let value = format!("{card} .setting-value[aria-label='Value of action.card']");
        wait_css(admin, &value).await.clear().await.expect("clear");
        type_into(admin, &value, "block").await;
        click(admin, "#plugin-settings-dlp button[type=submit]").await;
        eventually(
            admin,
            "the saved setting",
            &format!("return document.querySelector(\"{value}\")?.value"),
            |v| v == "block",
        )
        .await;
        type_into(chat, "#composer-input", &format!("two {CARD}{ENTER}")).await;
        eventually(
            chat,
            "the rejection reason next to the message",
            "return document.querySelector('#timeline .msg.rejected .msg-note')?.textContent",
            |v| v.as_str().is_some_and(|t| t.starts_with("Rejected by dlp")),
        )
        .await;

        // Disable: the very next message goes through as written.
        click_and_confirm(admin, &format!("{card} .plugin-toggle")).await;
        eventually(
            admin,
            "dlp shown as disabled",
            &format!("return document.querySelector('{card} .plugin-state')?.textContent"),
            |v| v == "disabled",
        )
        .await;
        send(chat, &format!("three {CARD}")).await;
        wait_for_body(chat, &format!("three {CARD}")).await;

        // And back on: filtered again.
        click(admin, &format!("{card} .plugin-toggle")).await;
        eventually(
            admin,
            "dlp shown as enabled",
            &format!("return document.querySelector('{card} .plugin-state')?.textContent"),
            |v| v == "enabled",
        )
        .await;
        type_into(chat, "#composer-input", &format!("four {CARD}{ENTER}")).await;
        eventually(
            chat,
            "the second rejection",
            "return document.querySelectorAll('#timeline .msg.rejected').length",
            |v| v == 2,
        )
        .await;
    })
    .await;
    let admin = server.admin().await;
    let (_, audit) = admin.get("/api/v1/admin/audit?limit=50").await;
    let actions: Vec<&str> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in [
        "plugin.change",
        "plugin.disable",
        "plugin.enable",
        "plugin.reject",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
}

/// The plugin page shows a circuit opened for one sender (the plugin still serves everyone
/// else): which scope, and that the plugin is only partly cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sees_a_circuit_opened_for_one_sender() {
    use crate::plugins_runtime::harness::{Spec, server_with};
    let spec = Spec::new("hostile", "fixture-hostile").hooks(&["message-pre-send"]);
    let (server, _plugins) = server_with(vec![spec]).await;
    let mallory = server.user("mallory").await;
    let room = mallory.group("traps", &[]).await;
    for i in 0..3 {
        let (status, _) = mallory
            .send_http(room, &format!("t{i}"), "hostile:trap")
            .await;
        assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    }
    let server = &server;
    let scope = format!("sender:{}", mallory.id);
    let scope = &scope;
    with_browsers_in(Engine::Chromium, 1, |browsers| async move {
        let admin = &browsers[0];
        login(admin, server, "/admin#plugins", "admin", ADMIN_PASSWORD).await;
        let card = "#plugin-hostile";
        eventually(
            admin,
            "the open circuit of one sender",
            &format!("return document.querySelector('{card} .plugin-circuits')?.textContent"),
            |v| v.as_str().is_some_and(|t| t.starts_with(scope.as_str())),
        )
        .await;
        let state = wait_css(admin, &format!("{card} .plugin-state"))
            .await
            .text()
            .await
            .expect("state");
        assert_eq!(state, "enabled, partly cut off");
        // The newest failure, with the runtime's words, is on the card for the admin.
        let failure = wait_css(admin, &format!("{card} .plugin-last-failure summary"))
            .await
            .text()
            .await
            .expect("failure");
        assert!(failure.starts_with("trap in message-pre-send"), "{failure}");
    })
    .await;
}

/// Search in the web client: results with the match marked (a hostile body stays text),
/// only the user's rooms, a click that opens the room at a message three pages back; and the
/// compliance page's search across every room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_jumps_to_the_message_and_renders_snippets_as_text() {
    let server = TestServer::start_with(|c| c.limits.message_burst = 1000).await;
    let admin = server.admin().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let rita = server.user("rita").await;
    let (status, _) = admin
        .patch(
            &format!("/api/v1/users/{}", rita.id),
            json!({ "compliance": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let room = alice.group("archive", &[]).await;
    let (status, ack) = alice
        .send_http(
            room,
            "needle",
            "<img src=x onerror=\"window.pwned=1\"> the needle is here",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let needle_seq = ack["seq"].as_i64().unwrap();
    for i in 0..130 {
        alice
            .send_http(room, &format!("h{i}"), &format!("filler {i}"))
            .await;
    }
    let elsewhere = bob.group("bobs", &[]).await;
    bob.send_http(elsewhere, "b", "another needle, not alice's")
        .await;
    let server = &server;
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/", "alice", PASSWORD).await;
        wait_online(b).await;
        type_into(b, "#search-input", &format!("NEEDLE{ENTER}")).await;
        let hits = eventually(
            b,
            "search results",
            "return [...document.querySelectorAll('#search-list .search-hit')].map(e => \
             [e.dataset.seq, e.querySelector('.search-snippet').textContent, \
              [...e.querySelectorAll('mark')].map(m => m.textContent), \
              e.querySelectorAll('img').length])",
            |v| v.as_array().is_some_and(|a| !a.is_empty()),
        )
        .await;
        assert_eq!(
            hits,
            json!([[
                needle_seq.to_string(),
                "<img src=x onerror=\"window.pwned=1\"> the needle is here",
                ["needle"],
                0
            ]]),
            "only alice's room, the match marked, the markup shown as text"
        );
        assert_eq!(
            b.execute("return window.pwned ?? null", vec![])
                .await
                .unwrap(),
            Value::Null
        );
        // A click opens the room and pages back to the message.
        click(b, ".search-hit").await;
        let found = eventually(
            b,
            "the found message to be highlighted",
            "const el = document.querySelector('#timeline .found'); \
             return el ? [el.dataset.seq, el.querySelector('.msg-body').textContent] : null",
            |v| !v.is_null(),
        )
        .await;
        assert_eq!(found[0], needle_seq.to_string());
        // A bad query says what is wrong.
        click(b, "#search-close").await;
        type_into(b, "#search-input", &format!("before:someday{ENTER}")).await;
        eventually(
            b,
            "the query's error",
            "return document.querySelector('#search-status').textContent",
            |v| v.as_str().is_some_and(|t| t.contains("YYYY-MM-DD")),
        )
        .await;

        // The compliance page searches every room.
        b.execute("localStorage.clear(); sessionStorage.clear()", vec![])
            .await
            .unwrap();
        login(b, server, "/admin", "rita", PASSWORD).await;
        click(b, "#sections-nav [data-section='compliance']").await;
        type_into(
            b,
            "#compliance-search input[name=q]",
            &format!("needle{ENTER}"),
        )
        .await;
        let rooms = eventually(
            b,
            "compliance search results",
            "return [...document.querySelectorAll('#compliance-search-results .search-hit \
              .search-where strong')].map(e => e.textContent)",
            |v| v.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
        assert_eq!(rooms, json!(["bobs", "archive"]));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_history_paging_edit_and_delete() {
    // Seeding history quickly would trip the per-user message rate limit.
    let server = TestServer::start_with(|c| c.limits.message_burst = 1000).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    // An impersonator: a display name that looks like "bob" (Cyrillic о).
    let (status, body) = server
        .admin()
        .await
        .post(
            "/api/v1/users",
            json!({ "name": "mallory", "password": PASSWORD, "display_name": "b\u{43e}b" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mallory = server.login("mallory", PASSWORD).await;
    let history = alice.group("archive", &[bob.id, mallory.id]).await;
    // More than two pages (50 each), so the client must page upwards twice.
    for i in 0..120 {
        let (status, _) = bob
            .send_http(history, &format!("h{i}"), &format!("old {i}"))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let server = &server;
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/", "alice", PASSWORD).await;
        wait_online(b).await;

        // Scrolling to the top loads older pages until the beginning, each message once.
        click(b, &format!(".room-item[data-room-id='{history}']")).await;
        wait_for_body(b, "old 119").await;
        let all: Vec<Value> = (0..120).map(|i| json!(format!("old {i}"))).collect();
        let all = Value::Array(all);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            b.execute("document.querySelector('#timeline').scrollTop = 0", vec![])
                .await
                .expect("scroll");
            let bodies = b.execute(BODIES, vec![]).await.expect("bodies");
            if bodies == all {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "history did not page back to the beginning: {bodies}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        wait_css(b, ".timeline-top").await;

        // The look-alike shows with the unique user name beside it; the real bob without.
        let (status, _) = mallory.send_http(history, "m1", "it is me, bob").await;
        assert_eq!(status, StatusCode::CREATED);
        wait_for_body(b, "it is me, bob").await;
        let senders = "return [...document.querySelectorAll('#timeline .msg')]
            .filter((m) => ['it is me, bob', 'old 0'].includes(m.querySelector('.msg-body')?.textContent))
            .map((m) => m.querySelector('.msg-sender').textContent)";
        eventually(b, "senders told apart", senders, |v| {
            *v == json!(["bob", "b\u{43e}b (@mallory)"])
        })
        .await;

        // A group created from the UI, with a member picked in the dialog.
        click(b, "#new-group").await;
        type_into(b, "#dialog input[name=name]", "launch").await;
        click(
            b,
            &format!("#dialog input[name=member][value='{}']", bob.id),
        )
        .await;
        click(b, "#dialog button[type=submit]").await;
        eventually(
            b,
            "the new group to open",
            "return document.querySelector('#room-title').textContent",
            |v| v == "launch",
        )
        .await;
        let rooms = bob.get("/api/v1/rooms").await.1;
        let launch = rooms
            .as_array()
            .expect("rooms")
            .iter()
            .find(|r| r["name"] == "launch")
            .unwrap_or_else(|| panic!("bob is a member of the new group: {rooms}"))["id"]
            .as_i64()
            .expect("id");

        // Edit (Enter saves) and delete (after confirming) our own message.
        send(b, "typo hre").await;
        let own = "#timeline .msg.own[data-id]:not([data-id=''])";
        wait_css(b, own).await;
        b.execute(
            &format!("document.querySelector(\"{own} .msg-actions button\").click()"),
            vec![],
        )
        .await
        .expect("edit button");
        let input = wait_css(b, ".edit-input").await;
        input.clear().await.expect("clear");
        input
            .send_keys(&format!("typo here{ENTER}"))
            .await
            .expect("type");
        wait_for_body(b, "typo here").await;
        let events = bob.history(launch, "").await;
        let message = events
            .iter()
            .find(|e| e["kind"] == "message")
            .unwrap_or_else(|| panic!("the message: {events:?}"));
        assert_eq!(message["body"], "typo here");
        assert!(message["edited_at"].is_i64(), "{message}");

        b.execute(
            &format!("document.querySelectorAll(\"{own} .msg-actions button\")[1].click()"),
            vec![],
        )
        .await
        .expect("delete button");
        let deadline = tokio::time::Instant::now() + WAIT;
        while b.accept_alert().await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no confirmation dialog"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_css(b, "#timeline .msg.deleted").await;
        let events = bob.history(launch, "").await;
        let message = events
            .iter()
            .find(|e| e["kind"] == "message")
            .expect("the message");
        assert_eq!(message["deleted"], true, "{message}");
    })
    .await;
}

/// Refreshes `docs/screenshots/*.png`. Ignored by default: run it on purpose with
/// `cargo test --test e2e browser::screenshots -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/screenshots; run on purpose"]
async fn screenshots() {
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&out).expect("screenshot dir");
    let (server, _plugins) = server_with_dlp().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("design-review", &[bob.id]).await;
    let script = [
        (&bob, "Morning! The new login page is up on staging."),
        (&alice, "Looks great. Does it work on a phone?"),
        (&bob, "Yes, the layout switches to one column below 700 px."),
        (&alice, "Perfect. Shipping it after lunch."),
    ];
    for (i, (who, text)) in script.iter().enumerate() {
        who.send_http(room, &format!("s{i}"), text).await;
    }
    let direct = alice.direct(bob.id).await;
    alice.send_http(direct, "d0", "Lunch at 12:30?").await;
    let carol = server.user("carol").await;
    let admin = server.admin().await;
    admin
        .patch(
            &format!("/api/v1/users/{}", carol.id),
            json!({ "active": false }),
        )
        .await;
    let (server, out) = (&server, &out);
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];
        let save = |name: &'static str, png: Vec<u8>| {
            std::fs::write(out.join(name), png).expect("write screenshot");
        };
        b.goto(&format!("{}/", server.base)).await.expect("open");
        wait_css(b, "#login-form").await;
        save("login.png", b.screenshot().await.expect("shot"));

        type_into(b, "#username", "bob").await;
        type_into(b, "#password", PASSWORD).await;
        click(b, "#login-form button[type=submit]").await;
        click(b, &format!(".room-item[data-room-id='{room}']")).await;
        wait_for_body(b, "Perfect. Shipping it after lunch.").await;
        send(b, "On it.").await;
        save("chat.png", b.screenshot().await.expect("shot"));

        b.set_window_size(400, 760).await.expect("narrow");
        tokio::time::sleep(Duration::from_millis(300)).await;
        save("chat-narrow.png", b.screenshot().await.expect("shot"));
        b.set_window_size(1100, 760).await.expect("wide");

        b.execute("sessionStorage.clear()", vec![])
            .await
            .expect("clear");
        login(b, server, "/admin", "admin", ADMIN_PASSWORD).await;
        wait_css(b, "#users-table tr[data-user-name='alice']").await;
        save("admin-users.png", b.screenshot().await.expect("shot"));
        click(b, "#tab-health").await;
        wait_css(b, "#health-connections").await;
        // Some traffic, so the chart has something to show.
        for i in 0..16 {
            alice
                .send_http(room, &format!("load{i}"), &format!("load {i}"))
                .await;
            tokio::time::sleep(Duration::from_millis(100 * (i % 5))).await;
        }
        tokio::time::sleep(Duration::from_millis(11_000)).await;
        save("admin-health.png", b.screenshot().await.expect("shot"));

        click(b, "#tab-plugins").await;
        wait_css(b, "#plugin-dlp").await;
        // Steady traffic for a few samples, so the charts show it while the shot is taken.
        for i in 0..150 {
            let body = if i % 4 == 0 {
                format!("card {CARD}")
            } else {
                format!("plain {i}")
            };
            alice.send_http(room, &format!("plug{i}"), &body).await;
            tokio::time::sleep(Duration::from_millis(50 + 40 * (i % 5))).await;
        }
        save("admin-plugins.png", b.screenshot().await.expect("shot"));
    })
    .await;
}

/// Not a browser test, but the contract the browser relies on: pages and assets with the
/// right types and a strict policy, JSON 404s, and admin data only for admins.
#[tokio::test]
async fn pages_assets_and_admin_endpoints() {
    let server = TestServer::start().await;
    let get = |path: &str| server.http.get(format!("{}{path}", server.base)).send();

    for (path, kind) in [
        ("/", "text/html"),
        ("/admin", "text/html"),
        ("/assets/js/chat.js", "text/javascript"),
        ("/assets/css/app.css", "text/css"),
    ] {
        let resp = get(path).await.expect("request");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        let csp = header("content-security-policy");
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(
            csp.contains(&format!("ws://{}", server.addr)),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        let etag = header("etag");
        let again = server
            .http
            .get(format!("{}{path}", server.base))
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("revalidate");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let html = get("/").await.expect("page").text().await.expect("body");
    assert!(!html.contains("<script>"), "no inline script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    for path in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/../Cargo.toml",
    ] {
        let resp = get(path).await.expect("request");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = resp.json().await.expect("json error");
        assert!(body["code"].is_string(), "{path}: {body}");
    }

    let user = server.user("mallory").await;
    let admin = server.admin().await;
    for path in [
        "/api/v1/admin/rooms",
        "/api/v1/admin/audit",
        "/api/v1/admin/health",
    ] {
        let (status, body) = user.get(path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body["code"], "admin_only");
        let (status, body) = admin.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    user.group("lobby", &[]).await;
    let (_, rooms) = admin.get("/api/v1/admin/rooms").await;
    assert!(
        rooms
            .as_array()
            .expect("rooms")
            .iter()
            .any(|r| r["name"] == "lobby"),
        "admins see rooms they are not in: {rooms}"
    );
    let (_, health) = admin.get("/api/v1/admin/health").await;
    assert!(health["connections"].is_u64(), "{health}");
    assert!(health["store"]["ok"] == true, "{health}");
    let (status, body) = admin.get("/api/v1/admin/audit?limit=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_query");
}

/// Reply in the thread of message `root` over HTTP; returns the ack.
async fn reply_in_thread(
    client: &crate::support::Client,
    room: i64,
    root: i64,
    client_msg_id: &str,
    body: &str,
) -> Value {
    let (status, ack) = client
        .post(
            &format!("/api/v1/rooms/{room}/messages"),
            json!({ "client_msg_id": client_msg_id, "body": body, "thread_root": root }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    ack
}

/// Threads in the web client: a reply shows as a count under its root and not in the room's
/// timeline; the thread panel shows the replies (a hostile one as text), marks the thread
/// read, and sends a reply that is also sent to the room, stored as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_reply_count_and_also_send_to_room() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("threads", &[bob.id]).await;
    let (server, alice, bob) = (&server, &alice, &bob);
    with_browsers_in(Engine::Chromium, 1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/", "alice", PASSWORD).await;
        wait_online(b).await;
        click(b, &format!(".room-item[data-room-id='{room}']")).await;
        send(b, "where do we meet?").await;
        let events = bob.history(room, "").await;
        let root = events
            .iter()
            .find(|e| e["body"] == "where do we meet?")
            .unwrap_or_else(|| panic!("the root message: {events:?}"))["id"]
            .as_i64()
            .expect("root id");

        // The root message, and the reply count under it, in the room's timeline.
        const COUNTS: &str = "return [...document.querySelectorAll('#timeline .msg')]
            .filter((m) => m.querySelector('.thread-replies-link'))
            .map((m) => [m.querySelector('.msg-body').textContent,
                         m.querySelector('.thread-replies-link').textContent])";
        // The replies in the thread panel, as stored (not the optimistic copies).
        const REPLIES: &str = "return [...document.querySelectorAll(\
             '#thread-replies .message:not(.local) .msg-body')].map((e) => e.textContent)";

        // Bob answers in the thread, then says something in the room: once that is shown,
        // the reply would have been too, had it been for the room's timeline.
        reply_in_thread(bob, room, root, "r1", "the usual place").await;
        let (status, _) = bob.send_http(room, "s1", "see you there").await;
        assert_eq!(status, StatusCode::CREATED);
        wait_for_body(b, "see you there").await;
        eventually(b, "the reply count under the root", COUNTS, |v| {
            *v == json!([["where do we meet?", "1 reply"]])
        })
        .await;
        let bodies = b.execute(BODIES, vec![]).await.expect("bodies");
        assert_eq!(
            bodies,
            json!(["where do we meet?", "see you there"]),
            "a reply stays in its thread"
        );

        // A second reply, hostile: counted live.
        let hostile = "<img src=x onerror=\"window.pwned=1\"> mind the step";
        let hostile_ack = reply_in_thread(bob, room, root, "r2", hostile).await;
        eventually(b, "the count to go up", COUNTS, |v| {
            *v == json!([["where do we meet?", "2 replies"]])
        })
        .await;

        // Hovering the message (on the way to its count) moves nothing the pointer is heading
        // for: what opens on hover (the add-reaction button, the actions) opens below it.
        const LINK_TOP: &str = "return document.querySelector('#timeline .thread-replies-link')
            .getBoundingClientRect().top";
        let before = b.execute(LINK_TOP, vec![]).await.expect("link top");
        hover(b, "#timeline .msg .msg-body").await;
        let actions_shown = "return [...document.querySelectorAll('#timeline .msg')]
            .some((m) => m.matches(':hover') && m.querySelector('.reaction-add')?.offsetHeight > 0)";
        eventually(b, "the hovered message's add button", actions_shown, |v| {
            *v == json!(true)
        })
        .await;
        assert_eq!(
            b.execute(LINK_TOP, vec![]).await.expect("link top"),
            before,
            "the reply count stays where it was when the message is hovered"
        );

        // The panel opens from the count: the root, then the replies, markup as text.
        click(b, "#timeline .thread-replies-link").await;
        wait_css(b, "#thread-panel").await;
        eventually(b, "the replies in the panel", REPLIES, |v| {
            *v == json!(["the usual place", hostile])
        })
        .await;
        assert_eq!(
            b.execute(
                "return document.querySelector('#thread-root .msg-body')?.textContent",
                vec![]
            )
            .await
            .expect("root"),
            json!("where do we meet?")
        );
        assert_eq!(
            b.execute(
                "return [document.querySelectorAll('#thread-panel img').length, \
                 window.pwned ?? null]",
                vec![]
            )
            .await
            .expect("no markup"),
            json!([0, null]),
            "the hostile reply is text"
        );
        // Opening it marked the thread read up to its last reply.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, view) = alice
                .get(&format!("/api/v1/rooms/{room}/threads/{root}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{view}");
            if view["read_seq"] == hostile_ack["seq"] && view["unread"] == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "opening the thread did not mark it read: {view}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Alice replies, also to the room: in the panel, and in the timeline marked as a reply.
        click(b, "#thread-also-to-room").await;
        type_into(b, "#thread-input", "at noon").await;
        click(b, "#thread-send").await;
        eventually(b, "alice's reply in the panel", REPLIES, |v| {
            *v == json!(["the usual place", hostile, "at noon"])
        })
        .await;
        eventually(
            b,
            "alice's reply in the room's timeline",
            "return [...document.querySelectorAll('#timeline .msg.reply:not(.local)')]
               .map((m) => [m.querySelector('.msg-body').textContent,
                            m.querySelector('.thread-marker')?.textContent ?? null])",
            |v| *v == json!([["at noon", "replied in thread"]]),
        )
        .await;
        eventually(b, "the whole room's timeline", BODIES, |v| {
            *v == json!(["where do we meet?", "see you there", "at noon"])
        })
        .await;
        eventually(b, "the count to include alice's reply", COUNTS, |v| {
            *v == json!([["where do we meet?", "3 replies"]])
        })
        .await;
        assert_eq!(
            b.execute(
                "return document.querySelector('#thread-also-to-room').checked",
                vec![]
            )
            .await
            .expect("checkbox"),
            json!(false),
            "the box is cleared for the next reply"
        );
        let events = bob.history(room, "").await;
        let sent = events
            .iter()
            .find(|e| e["body"] == "at noon")
            .unwrap_or_else(|| panic!("alice's reply is stored: {events:?}"));
        assert_eq!(sent["thread_root"], root, "{sent}");
        assert_eq!(sent["also_to_room"], true, "{sent}");
        assert_eq!(sent["sender_id"], alice.id, "{sent}");
        let stored_root = events
            .iter()
            .find(|e| e["id"] == root)
            .expect("the root in history");
        assert_eq!(stored_root["thread"]["replies"], 3, "{stored_root}");

        // Close; "Reply in thread" on another message opens its (empty) thread, and the
        // marker on alice's reply opens the first thread again.
        click(b, "#thread-close").await;
        eventually(
            b,
            "the panel to close",
            "return document.querySelector('#thread-panel').hidden",
            |v| *v == json!(true),
        )
        .await;
        b.execute(
            "[...document.querySelectorAll('#timeline .msg')]
               .find((m) => m.querySelector('.msg-body')?.textContent === 'see you there')
               .querySelector('.reply-in-thread').click()",
            vec![],
        )
        .await
        .expect("reply in thread");
        eventually(
            b,
            "the empty thread of the other message",
            "return [document.querySelector('#thread-panel').hidden,
                     document.querySelector('#thread-root .msg-body')?.textContent,
                     document.querySelectorAll('#thread-replies .message').length]",
            |v| *v == json!([false, "see you there", 0]),
        )
        .await;
        click(b, "#timeline .thread-marker").await;
        eventually(
            b,
            "the marker to open the first thread",
            "return [document.querySelector('#thread-root .msg-body')?.textContent,
                     document.querySelectorAll('#thread-replies .message').length]",
            |v| *v == json!(["where do we meet?", 3]),
        )
        .await;
    })
    .await;
}

/// Mentions in the web client: the `@` autocomplete in the composer (keys, completion), the
/// mention the server stores, the hint for a name outside the room, the room list's mention
/// count while another room is open, one's own name highlighted (a hostile message's markup
/// shown as text), and the mentions list opening the message in its room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_autocomplete_highlight_badge_and_list() {
    const ARROW_DOWN: &str = "\u{E015}";
    const ESCAPE: &str = "\u{E00C}";
    /// The suggestions shown (null while the list is hidden), and the chosen one.
    const SUGGESTIONS: &str = "const list = document.querySelector('#mention-suggestions');
        if (!list || list.hidden) return null;
        const items = [...list.querySelectorAll('.mention-suggestion')];
        return [items.map((e) => e.dataset.name),
                items.filter((e) => e.getAttribute('aria-selected') === 'true')
                  .map((e) => e.dataset.name)]";
    /// Per room in the list: its id and its mention badge's text.
    const BADGES: &str = "return [...document.querySelectorAll('#room-list .room-item')]
        .map((e) => [Number(e.dataset.roomId), e.querySelector('.mention-badge')?.textContent ?? null])";

    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    server.user("dave").await;
    let team = alice.group("team", &[bob.id, carol.id]).await;
    let other = alice.group("other", &[bob.id]).await;
    let (server, alice, bob, carol) = (&server, &alice, &bob, &carol);
    with_browsers_in(Engine::Chromium, 1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/", "alice", PASSWORD).await;
        wait_online(b).await;
        click(b, &format!(".room-item[data-room-id='{team}']")).await;
        wait_css(b, "#room:not([hidden])").await;

        // `@` alone offers the room's other members and @room; the arrows move the choice,
        // Escape closes the list and leaves the text.
        type_into(b, "#composer-input", "@").await;
        eventually(b, "every suggestion", SUGGESTIONS, |v| {
            *v == json!([["bob", "carol", "room"], ["bob"]])
        })
        .await;
        type_into(b, "#composer-input", ARROW_DOWN).await;
        eventually(b, "the second suggestion chosen", SUGGESTIONS, |v| {
            *v == json!([["bob", "carol", "room"], ["carol"]])
        })
        .await;
        type_into(b, "#composer-input", ESCAPE).await;
        eventually(
            b,
            "the list to close",
            "return [document.querySelector('#mention-suggestions').hidden, \
             document.querySelector('#composer-input').value, \
             document.querySelector('#room').hidden]",
            |v| *v == json!([true, "@", false]),
        )
        .await;

        // `@ca` narrows it to carol; Enter completes the name instead of sending.
        type_into(b, "#composer-input", "ca").await;
        eventually(b, "the suggestions for @ca", SUGGESTIONS, |v| {
            *v == json!([["carol"], ["carol"]])
        })
        .await;
        type_into(b, "#composer-input", ENTER).await;
        eventually(
            b,
            "the completed mention",
            "return [document.querySelector('#composer-input').value, \
             document.querySelector('#mention-suggestions').hidden]",
            |v| *v == json!(["@carol ", true]),
        )
        .await;
        type_into(b, "#composer-input", &format!("are you there?{ENTER}")).await;
        let sent = "@carol are you there?";
        eventually(
            b,
            "the mention to be acknowledged",
            "return [...document.querySelectorAll('#timeline .msg:not(.local) .msg-body')]\
             .map((e) => e.textContent)",
            |v| {
                v.as_array()
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(sent)))
            },
        )
        .await;
        let events = bob.history(team, "").await;
        let stored = events
            .iter()
            .find(|e| e["body"] == sent)
            .unwrap_or_else(|| panic!("the message is stored: {events:?}"));
        assert_eq!(stored["mentions"], json!([carol.id]), "{stored}");
        assert_eq!(stored["sender_id"], alice.id, "{stored}");
        // Shown highlighted, but not as alice's own mention.
        eventually(
            b,
            "carol's name highlighted",
            "return [...document.querySelectorAll('#timeline .msg .mention')]
               .map((e) => [e.textContent, e.className])",
            |v| *v == json!([["@carol", "mention"]]),
        )
        .await;

        // A name of someone outside the room: they are not mentioned, and alice is told.
        send(b, "hello @dave").await;
        eventually(
            b,
            "the hint that dave is not in the room",
            "const t = document.querySelector('#toast'); return [t.hidden, t.textContent]",
            |v| *v == json!([false, "Not in this room, so not notified: @dave"]),
        )
        .await;

        // Bob mentions alice in the other room: its mention count shows while team is open.
        let (status, look) = bob.send_http(other, "look", "@alice look here").await;
        assert_eq!(status, StatusCode::CREATED, "{look}");
        let look_seq = look["seq"].as_i64().expect("seq");
        eventually(b, "a mention badge on the other room", BADGES, |v| {
            *v == json!([[other, "1"], [team, null]])
        })
        .await;

        // Opening it: alice's name is marked as hers, and the count goes (here and on the
        // server, which the read cursor told).
        click(b, &format!(".room-item[data-room-id='{other}']")).await;
        wait_for_body(b, "@alice look here").await;
        eventually(
            b,
            "alice's own mention highlighted",
            "return [...document.querySelectorAll('#timeline .msg.mentions-me')]
               .map((m) => [m.querySelector('.msg-body').textContent,
                            [...m.querySelectorAll('.mention')].map((s) => [s.textContent, s.className])])",
            |v| *v == json!([["@alice look here", [["@alice", "mention mention-me"]]]]),
        )
        .await;
        eventually(b, "the badge to go", BADGES, |v| {
            *v == json!([[other, null], [team, null]])
        })
        .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, rooms) = alice.get("/api/v1/rooms").await;
            assert_eq!(status, StatusCode::OK, "{rooms}");
            let count = rooms
                .as_array()
                .and_then(|a| a.iter().find(|r| r["id"] == other))
                .map(|r| r["mentions"].clone());
            if count == Some(json!(0)) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "opening the room did not clear its mentions on the server: {rooms}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A hostile message that mentions alice: its markup is text.
        let hostile = "@alice <img src=x onerror=\"window.pwned=1\">";
        let (status, ack) = bob.send_http(other, "hostile", hostile).await;
        assert_eq!(status, StatusCode::CREATED, "{ack}");
        wait_for_body(b, hostile).await;
        assert_eq!(
            b.execute(
                "return [document.querySelectorAll('#timeline img').length, \
                 window.pwned ?? null, \
                 [...document.querySelectorAll('#timeline .mention-me')].map((e) => e.textContent)]",
                vec![]
            )
            .await
            .expect("timeline"),
            json!([0, null, ["@alice", "@alice"]]),
            "the hostile body is text, its mention highlighted"
        );

        // The mentions list, from another room: both of bob's messages, newest first; a
        // click opens the message in its room.
        click(b, &format!(".room-item[data-room-id='{team}']")).await;
        wait_for_body(b, "hello @dave").await;
        click(b, "#mentions-button").await;
        let listed = eventually(
            b,
            "the mentions list",
            "return [...document.querySelectorAll('#mentions-list .mention-item')]
               .map((e) => [e.querySelector('.mention-room').textContent,
                            e.querySelector('.mention-sender').textContent,
                            e.querySelector('.mention-text').textContent,
                            e.querySelectorAll('img').length])",
            |v| v.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
        assert_eq!(
            listed,
            json!([
                ["other", "bob", hostile, 0],
                ["other", "bob", "@alice look here", 0]
            ])
        );
        assert_eq!(
            b.execute("return window.pwned ?? null", vec![])
                .await
                .unwrap(),
            Value::Null
        );
        click(
            b,
            &format!("#mentions-list .mention-item[data-seq='{look_seq}']"),
        )
        .await;
        let found = eventually(
            b,
            "the message shown in its room",
            "const el = document.querySelector('#timeline .found');
             return el ? [document.querySelector('#room-title').textContent, el.dataset.seq,
                          el.querySelector('.msg-body').textContent] : null",
            |v| !v.is_null(),
        )
        .await;
        assert_eq!(
            found,
            json!(["other", look_seq.to_string(), "@alice look here"])
        );
    })
    .await;
}

/// Rich text in the web client (js/markdown.js): a message with every construct of the
/// documented Markdown subset becomes the right elements (a mention inside bold highlighted,
/// none inside code); hostile bodies — a `javascript:` link, raw HTML, a `data:` link, a
/// 20,000-character `**` flood, markup in a code span — stay text and run nothing, the page
/// keeps up, the edit box shows the raw text, and the server stores every body as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markdown_renders_the_subset_and_hostile_input_stays_text() {
    // The flood is over the default 16 KiB body limit.
    let server = TestServer::start_with(|c| c.limits.max_message_bytes = 32 * 1024).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("rich", &[bob.id]).await;
    let (server, bob) = (&server, &bob);
    with_browsers_in(Engine::Chromium, 1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/", "alice", PASSWORD).await;
        wait_online(b).await;
        click(b, &format!(".room-item[data-room-id='{room}']")).await;
        wait_css(b, "#room:not([hidden])").await;

        // Every construct of the subset, from bob over HTTP.
        let rich = concat!(
            "**bold** and __strong__, *italic* and _em_, `inline code` for **@alice** (not `@alice`)\n",
            "```rust\n",
            "fn main() { println!(\"<not html>\"); }\n",
            "```\n",
            "- first item\n",
            "- second item\n",
            "> quoted **text**\n",
            "see [docs](https://example.com/docs) or https://example.org/page.",
        );
        let (status, ack) = bob.send_http(room, "rich", rich).await;
        assert_eq!(status, StatusCode::CREATED, "{ack}");
        let rich_seq = ack["seq"].as_i64().expect("seq");
        const SHAPE: &str = "const m = document.querySelector(`#timeline .msg[data-seq='${arguments[0]}'] .msg-body`);
            if (!m) return null;
            const texts = (css) => [...m.querySelectorAll(css)].map((e) => e.textContent);
            return [
              texts('strong'),
              texts('em'),
              texts(':not(pre) > code'),
              [...m.querySelectorAll('pre')].map((e) => [e.dataset.lang ?? null, e.textContent]),
              texts('ul > li'),
              texts('blockquote'),
              texts('blockquote > strong'),
              [...m.querySelectorAll('a')].map((a) => [a.textContent, a.getAttribute('href'),
                a.getAttribute('target'), (a.getAttribute('rel') || '').split(' ').includes('noopener'),
                a.title]),
              [...m.querySelectorAll('.mention')].map((e) => [e.textContent, e.className, e.parentElement.tagName]),
            ]";
        let shape = json!([
            ["bold", "strong", "@alice", "text"],
            ["italic", "em"],
            ["inline code", "@alice"],
            [["rust", "fn main() { println!(\"<not html>\"); }"]],
            ["first item", "second item"],
            ["quoted text"],
            ["text"],
            [
                ["docs", "https://example.com/docs", "_blank", true, "https://example.com/docs"],
                ["https://example.org/page", "https://example.org/page", "_blank", true, "https://example.org/page"]
            ],
            [["@alice", "mention mention-me", "STRONG"]],
        ]);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = b
                .execute(SHAPE, vec![json!(rich_seq)])
                .await
                .expect("rich message");
            if seen == shape {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the rich message rendered as {seen}, not {shape}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Hostile bodies, then a sentinel: once it shows, the page has rendered them all.
        let flood = "**".repeat(10_000);
        let hostile = [
            "[click](javascript:window.pwned=1)",
            "<img src=x onerror=\"window.pwned=1\">",
            "<script>window.pwned=1</script>",
            "[x](data:text/html,<script>window.pwned=1</script>)",
            flood.as_str(),
            "`<b>not bold</b>`",
        ];
        let mut seqs = Vec::new();
        for (i, body) in hostile.iter().enumerate() {
            let (status, ack) = bob.send_http(room, &format!("h{i}"), body).await;
            assert_eq!(status, StatusCode::CREATED, "{ack}");
            seqs.push(ack["seq"].as_i64().expect("seq"));
        }
        let (status, _) = bob.send_http(room, "sentinel", "sentinel: still here").await;
        assert_eq!(status, StatusCode::CREATED);
        wait_for_body(b, "sentinel: still here").await;

        // Clicking the would-be link does nothing: it is text.
        click(
            b,
            &format!("#timeline .msg[data-seq='{}'] .msg-body", seqs[0]),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let seen = b
            .execute(
                "const bodies = arguments[0].map((s) =>
                   document.querySelector(`#timeline .msg[data-seq='${s}'] .msg-body`));
                 if (bodies.some((e) => !e)) return null;
                 const t = document.querySelector('#timeline');
                 return [
                   bodies.map((e) => e.textContent),
                   bodies.map((e) => e.querySelectorAll('*').length),
                   t.querySelectorAll('img, script, iframe, object, embed, b').length,
                   [...t.querySelectorAll('a')].map((a) => a.getAttribute('href'))
                     .filter((href) => !/^(https?:|mailto:)/i.test(href ?? '')),
                   [...bodies[5].querySelectorAll('code')].map((e) => e.textContent),
                   window.pwned ?? null,
                 ]",
                vec![json!(seqs)],
            )
            .await
            .expect("hostile messages");
        assert_eq!(
            seen,
            json!([
                [hostile[0], hostile[1], hostile[2], hostile[3], flood, "<b>not bold</b>"],
                [0, 0, 0, 0, 0, 1],
                0,
                [],
                ["<b>not bold</b>"],
                null
            ]),
            "hostile bodies are text"
        );

        // Through the composer: rendered, and the edit box shows what was typed.
        let mine = "**mine** and `code`";
        type_into(b, "#composer-input", &format!("{mine}{ENTER}")).await;
        eventually(
            b,
            "alice's message rendered",
            "const m = [...document.querySelectorAll('#timeline .msg.own:not(.local) .msg-body')]
               .find((e) => e.querySelector('strong')?.textContent === 'mine');
             return m ? [m.textContent, m.querySelector('code')?.textContent] : null",
            |v| *v == json!(["mine and code", "code"]),
        )
        .await;
        let edit_box = b
            .execute(
                "const m = [...document.querySelectorAll('#timeline .msg.own:not(.local)')]
                   .find((e) => e.querySelector('.msg-body strong')?.textContent === 'mine');
                 m.querySelector('button[aria-label=\"Edit message\"]').click();
                 return document.querySelector('#timeline .edit-input')?.value",
                vec![],
            )
            .await
            .expect("edit");
        assert_eq!(edit_box, json!(mine), "the edit box holds the raw text");
        type_into(b, "#timeline .edit-input", "\u{E00C}").await;

        // Stored exactly as written.
        let events = bob.history(room, "").await;
        let stored = |seq: i64| {
            events
                .iter()
                .find(|e| e["seq"] == seq)
                .unwrap_or_else(|| panic!("seq {seq} in history: {events:?}"))["body"]
                .clone()
        };
        assert_eq!(stored(rich_seq), json!(rich));
        for (seq, body) in seqs.iter().zip(hostile) {
            assert_eq!(stored(*seq), json!(body));
        }
        assert!(
            events.iter().any(|e| e["body"] == mine),
            "alice's message is stored as typed: {events:?}"
        );
    })
    .await;
}

/// Every entry of the open room's timeline (messages and membership lines), and whether its
/// text speaks of reactions at all (a reaction event drawn as an item would).
const TIMELINE_ENTRIES: &str = "const t = document.querySelector('#timeline');
    return [t.querySelectorAll(':scope > .msg, :scope > .system').length,
            /reaction/i.test(t.textContent)]";

/// A script returning the reaction chips under message `id` in the room's timeline, each as
/// `[text, aria-pressed]` (null while the message is not shown).
fn chips_script(id: i64) -> String {
    format!(
        "const m = document.querySelector(\"#timeline .msg[data-id='{id}']\");
         return m ? [...m.querySelectorAll('.reaction-chip')]
           .map((c) => [c.textContent, c.getAttribute('aria-pressed')]) : null"
    )
}

/// Wait until the chips under message `id` on `who`'s page are `want`.
async fn wait_chips(b: &Browser, who: &str, id: i64, want: Value) {
    let script = chips_script(id);
    eventually(b, &format!("{who}'s chips to be {want}"), &script, |v| {
        *v == want
    })
    .await;
}

/// Reactions in the web client: bob reacts through the picker, alice sees the chip live (not
/// pressed: it is bob's), joins it with a click (pressed for her, counted on both pages), bob
/// takes his back; a third user's reactions over HTTP (an emoji and a shortcode) arrive live
/// too, also while alice looks at another room; the chips name who reacted; the server's
/// history agrees with the chips (and a reloaded page shows them from history); and a
/// reaction is never a timeline item or an unread message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_chips_picker_toggle_and_live_updates() {
    const ESCAPE: &str = "\u{E00C}";
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let room = alice.group("launch", &[bob.id, carol.id]).await;
    let other = alice.group("elsewhere", &[bob.id]).await;
    let (server, alice, carol) = (&server, &alice, &carol);
    with_browsers(2, |browsers| async move {
        let (a, b) = (&browsers[0], &browsers[1]);
        login(a, server, "/", "alice", PASSWORD).await;
        login(b, server, "/", "bob", PASSWORD).await;
        for page in [a, b] {
            wait_online(page).await;
            click(page, &format!(".room-item[data-room-id='{room}']")).await;
            wait_css(page, "#room:not([hidden])").await;
        }
        send(a, "we shipped!").await;
        wait_for_body(b, "we shipped!").await;
        let events = alice.history(room, "").await;
        let message = events
            .iter()
            .find(|e| e["body"] == "we shipped!")
            .unwrap_or_else(|| panic!("the message: {events:?}"))["id"]
            .as_i64()
            .expect("message id");
        let before = a.execute(TIMELINE_ENTRIES, vec![]).await.expect("entries");
        let entries = before[0].as_u64().expect("entry count");
        assert_eq!(before[1], json!(false), "{before}");
        wait_chips(a, "alice", message, json!([])).await;

        // Bob opens the picker from the message's add button (shown on hover or focus) and
        // picks 🎉: the picker closes and his chip is pressed.
        let open_picker = format!(
            "document.querySelector(\"#timeline .msg[data-id='{message}'] .reaction-add\").click()"
        );
        b.execute(&open_picker, vec![])
            .await
            .expect("open bob's picker");
        click(b, "#reaction-picker .reaction-option[data-emoji='🎉']").await;
        eventually(
            b,
            "the picker to close",
            "return document.querySelector('#reaction-picker') === null",
            |v| *v == json!(true),
        )
        .await;
        wait_chips(b, "bob", message, json!([["🎉 1", "true"]])).await;

        // Alice sees it live, not pressed.
        wait_chips(a, "alice", message, json!([["🎉 1", "false"]])).await;
        // Her picker opens and Escape closes it, the focus back on the add button.
        a.execute(&open_picker, vec![])
            .await
            .expect("open alice's picker");
        type_into(a, "#reaction-picker .reaction-option", ESCAPE).await;
        eventually(
            a,
            "Escape to close the picker",
            "return [document.querySelector('#reaction-picker') === null,
                     document.activeElement?.classList.contains('reaction-add') ?? false]",
            |v| *v == json!([true, true]),
        )
        .await;

        // Alice joins bob's reaction with a click on the chip: pressed for her, 2 on both.
        let chip = |emoji: &str| {
            format!("#timeline .msg[data-id='{message}'] .reaction-chip[data-emoji='{emoji}']")
        };
        click(a, &chip("🎉")).await;
        wait_chips(a, "alice", message, json!([["🎉 2", "true"]])).await;
        wait_chips(b, "bob", message, json!([["🎉 2", "true"]])).await;

        // Bob takes his back: 1 on both, alice's.
        click(b, &chip("🎉")).await;
        wait_chips(b, "bob", message, json!([["🎉 1", "false"]])).await;
        wait_chips(a, "alice", message, json!([["🎉 1", "true"]])).await;

        // The chip's title names who reacted (fetched when it is first hovered).
        b.execute(
            &format!(
                "document.querySelector(\"{}\").dispatchEvent(new MouseEvent('mouseenter'))",
                chip("🎉")
            ),
            vec![],
        )
        .await
        .expect("hover the chip");
        eventually(
            b,
            "the chip's title to name alice",
            &format!(
                "return document.querySelector(\"{}\")?.title ?? null",
                chip("🎉")
            ),
            |v| *v == json!("alice reacted with 🎉"),
        )
        .await;

        // Carol reacts over HTTP, with an emoji and a shortcode: live on both pages, in the
        // order first given.
        let path = |emoji: &str| reaction_path(room, message, emoji);
        for emoji in ["👍", ":rocket:"] {
            let (status, ack) = carol.put(&path(emoji)).await;
            assert_eq!(status, StatusCode::CREATED, "{emoji}: {ack}");
        }
        wait_chips(
            a,
            "alice",
            message,
            json!([["🎉 1", "true"], ["👍 1", "false"], [":rocket: 1", "false"]]),
        )
        .await;
        wait_chips(
            b,
            "bob",
            message,
            json!([
                ["🎉 1", "false"],
                ["👍 1", "false"],
                [":rocket: 1", "false"]
            ]),
        )
        .await;

        // While alice looks at another room, carol reacts, then mentions her (a sentinel:
        // once its mention is counted, the reaction before it was handled): one unread
        // message, not two.
        click(a, &format!(".room-item[data-room-id='{other}']")).await;
        eventually(
            a,
            "the other room to open",
            "return document.querySelector('#room-title').textContent",
            |v| *v == json!("elsewhere"),
        )
        .await;
        let (status, ack) = carol.put(&path("😄")).await;
        assert_eq!(status, StatusCode::CREATED, "{ack}");
        let (status, ack) = carol.send_http(room, "sentinel", "@alice all done").await;
        assert_eq!(status, StatusCode::CREATED, "{ack}");
        let badges = eventually(
            a,
            "the mention to be counted",
            &format!(
                "const e = document.querySelector(\".room-item[data-room-id='{room}']\");
                 return [e?.querySelector('.mention-badge')?.textContent ?? null,
                         e?.querySelector('.badge')?.textContent ?? null]"
            ),
            |v| v[0] == json!("1"),
        )
        .await;
        assert_eq!(
            badges,
            json!(["1", "1"]),
            "a reaction is not an unread message"
        );

        // Back in the room: the reaction given meanwhile is there, and no reaction became a
        // timeline entry (the one new entry is carol's message).
        click(a, &format!(".room-item[data-room-id='{room}']")).await;
        wait_for_body(a, "@alice all done").await;
        wait_chips(
            a,
            "alice",
            message,
            json!([
                ["🎉 1", "true"],
                ["👍 1", "false"],
                [":rocket: 1", "false"],
                ["😄 1", "false"]
            ]),
        )
        .await;
        assert_eq!(
            a.execute(TIMELINE_ENTRIES, vec![]).await.expect("entries"),
            json!([entries + 1, false]),
            "reaction events are not timeline entries"
        );
        assert_eq!(
            a.execute(BODIES, vec![]).await.expect("bodies"),
            json!(["we shipped!", "@alice all done"])
        );

        // The server agrees with what alice sees.
        let events = alice.history(room, "").await;
        let stored = events
            .iter()
            .find(|e| e["id"] == message && e["kind"] == "message")
            .unwrap_or_else(|| panic!("the message in history: {events:?}"));
        assert_eq!(
            stored["reactions"],
            json!([
                { "emoji": "🎉", "count": 1, "me": true },
                { "emoji": "👍", "count": 1, "me": false },
                { "emoji": ":rocket:", "count": 1, "me": false },
                { "emoji": "😄", "count": 1, "me": false }
            ]),
            "{stored}"
        );

        // Bob's page, reloaded, shows the same from history (none of them his).
        b.execute(
            "window.__beforeReload = true; setTimeout(() => location.reload(), 50); return true",
            vec![],
        )
        .await
        .expect("reload");
        eventually(
            b,
            "bob's page to reload into the room",
            &format!(
                "return window.__beforeReload === undefined
                   && document.querySelector(\"#timeline .msg[data-id='{message}']\") !== null"
            ),
            |v| *v == json!(true),
        )
        .await;
        wait_chips(
            b,
            "bob after a reload",
            message,
            json!([
                ["🎉 1", "false"],
                ["👍 1", "false"],
                [":rocket: 1", "false"],
                ["😄 1", "false"]
            ]),
        )
        .await;
        assert_eq!(
            b.execute(TIMELINE_ENTRIES, vec![]).await.expect("entries"),
            json!([entries + 1, false]),
            "history's reaction events are not timeline entries either"
        );
    })
    .await;
}

/// Pins in the web client: a member sees no Pin action while only owners and admins may
/// pin; the owner pins from a message's actions and both pages' pins panels list it live
/// (Markdown rendered, "Pinned by alice") with a marker on the message; the owner ticks
/// "Members may pin" (a setting only she sees) and the member pins another message; the
/// server's list agrees; Jump finds a message in the timeline; Unpin in the panel removes the
/// pin on both pages; and pin events are never timeline entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_panel_permissions_and_live_updates() {
    /// The pins panel's list, latest pinned first: `[message id, body, "Pinned by …"]` each
    /// (null while the panel is closed).
    const PINS: &str = "const panel = document.querySelector('#pins-panel');
        if (panel.hidden) return null;
        return [...panel.querySelectorAll('#pins-list .pin-item')]
          .map((e) => [Number(e.dataset.id), e.querySelector('.pin-body').textContent,
                       e.querySelector('.pin-by').textContent])";
    /// The Pin / Unpin actions in the timeline: `[message id, label]` each.
    const PIN_ACTIONS: &str = "return [...document.querySelectorAll('#timeline .msg .pin-toggle')]
        .map((e) => [Number(e.closest('.msg').dataset.id), e.textContent])";

    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let room = alice.group("plans", &[bob.id]).await;
    let (status, ack) = alice
        .send_http(room, "plan", "the plan: **ship** on friday")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let plan = ack["id"].as_i64().expect("plan id");
    let (status, ack) = bob
        .send_http(room, "venue", "the venue is 12 Main St")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let venue = ack["id"].as_i64().expect("venue id");
    let plan_text = "the plan: ship on friday";
    let venue_text = "the venue is 12 Main St";
    let (server, alice, bob) = (&server, &alice, &bob);
    with_browsers(2, |browsers| async move {
        let (a, b) = (&browsers[0], &browsers[1]);
        login(a, server, "/", "alice", PASSWORD).await;
        login(b, server, "/", "bob", PASSWORD).await;
        for page in [a, b] {
            wait_online(page).await;
            click(page, &format!(".room-item[data-room-id='{room}']")).await;
            wait_for_body(page, venue_text).await;
        }
        let before = a.execute(TIMELINE_ENTRIES, vec![]).await.expect("entries");
        let entries = before[0].as_u64().expect("entry count");

        // The owner may pin any message; bob, a member, may not (yet).
        eventually(a, "alice's Pin actions", PIN_ACTIONS, |v| {
            *v == json!([[plan, "Pin"], [venue, "Pin"]])
        })
        .await;
        assert_eq!(
            b.execute(PIN_ACTIONS, vec![]).await.expect("bob's actions"),
            json!([]),
            "a member may not pin here"
        );

        // Both open the pins panel: empty; only the owner has the setting.
        for page in [a, b] {
            click(page, "#pins-button").await;
            eventually(
                page,
                "an empty pins panel",
                "return [document.querySelector('#pins-panel').hidden,
                         document.querySelector('#pins-status').textContent]",
                |v| *v == json!([false, "No pinned messages yet."]),
            )
            .await;
        }
        let setting = "return document.querySelector('#pins-setting').hidden";
        assert_eq!(
            a.execute(setting, vec![]).await.expect("setting"),
            json!(false)
        );
        assert_eq!(
            b.execute(setting, vec![]).await.expect("setting"),
            json!(true)
        );

        // Alice pins her plan from its actions: both panels list it live, rendered, and the
        // message is marked on both pages.
        a.execute(
            &format!(
                "document.querySelector(\"#timeline .msg[data-id='{plan}'] .pin-toggle\").click()"
            ),
            vec![],
        )
        .await
        .expect("pin");
        let marker = |id: i64| {
            format!(
                "return document.querySelector(\"#timeline .msg[data-id='{id}'] .msg-pin\")\
                 ?.textContent ?? null"
            )
        };
        for (page, who) in [(a, "alice"), (b, "bob")] {
            eventually(page, &format!("{who}'s panel to list the pin"), PINS, |v| {
                *v == json!([[plan, plan_text, "Pinned by alice"]])
            })
            .await;
            eventually(page, &format!("{who}'s marker"), &marker(plan), |v| {
                *v == json!("📌 Pinned by alice")
            })
            .await;
        }
        assert_eq!(
            b.execute(
                "return [document.querySelector('#pins-list .pin-body strong')?.textContent ?? null,
                         document.querySelector('#pins-count').textContent]",
                vec![]
            )
            .await
            .expect("panel"),
            json!(["ship", "1"]),
            "the pinned message is Markdown, the header counts it"
        );
        eventually(a, "alice's action to say Unpin", PIN_ACTIONS, |v| {
            *v == json!([[plan, "Unpin"], [venue, "Pin"]])
        })
        .await;

        // Alice lets members pin (checked on the server).
        click(a, "#pins-members-may-pin").await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, detail) = alice.get(&format!("/api/v1/rooms/{room}")).await;
            assert_eq!(status, StatusCode::OK, "{detail}");
            if detail["members_may_pin"] == true {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "ticking the box did not change the setting: {detail}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // No event says so: bob's page learns it when he opens the panel again (or the
        // room, or comes back to the window); then he may pin, and does.
        click(b, "#pins-close").await;
        click(b, "#pins-button").await;
        eventually(b, "bob's Pin actions", PIN_ACTIONS, |v| {
            *v == json!([[plan, "Unpin"], [venue, "Pin"]])
        })
        .await;
        b.execute(
            &format!(
                "document.querySelector(\"#timeline .msg[data-id='{venue}'] .pin-toggle\").click()"
            ),
            vec![],
        )
        .await
        .expect("bob pins");
        let both = json!([
            [venue, venue_text, "Pinned by bob"],
            [plan, plan_text, "Pinned by alice"]
        ]);
        for (page, who) in [(a, "alice"), (b, "bob")] {
            eventually(page, &format!("{who}'s panel to list both"), PINS, |v| {
                *v == both
            })
            .await;
            eventually(
                page,
                &format!("{who}'s marker on the venue"),
                &marker(venue),
                |v| *v == json!("📌 Pinned by bob"),
            )
            .await;
        }
        let (status, listed) = alice.get(&format!("/api/v1/rooms/{room}/pins")).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let pinned: Vec<(i64, i64)> = listed
            .as_array()
            .expect("pins")
            .iter()
            .map(|p| {
                (
                    p["message"]["id"].as_i64().expect("message id"),
                    p["pinned_by"].as_i64().expect("pinned by"),
                )
            })
            .collect();
        assert_eq!(pinned, vec![(venue, bob.id), (plan, alice.id)], "{listed}");

        // Jump shows the message in the timeline.
        click(
            b,
            &format!("#pins-list .pin-item[data-id='{plan}'] .pin-jump"),
        )
        .await;
        eventually(
            b,
            "the pinned message found in the timeline",
            "const el = document.querySelector('#timeline .found');
             return el ? Number(el.dataset.id) : null",
            |v| *v == json!(plan),
        )
        .await;

        // Alice unpins her plan from the panel: gone from both panels, unmarked on both pages.
        click(
            a,
            &format!("#pins-list .pin-item[data-id='{plan}'] .pin-unpin"),
        )
        .await;
        for (page, who) in [(a, "alice"), (b, "bob")] {
            eventually(
                page,
                &format!("{who}'s panel without the plan"),
                PINS,
                |v| *v == json!([[venue, venue_text, "Pinned by bob"]]),
            )
            .await;
            eventually(
                page,
                &format!("{who}'s plan unmarked"),
                &marker(plan),
                |v| v.is_null(),
            )
            .await;
        }
        let (status, listed) = bob.get(&format!("/api/v1/rooms/{room}/pins")).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let ids: Vec<i64> = listed
            .as_array()
            .expect("pins")
            .iter()
            .map(|p| p["message"]["id"].as_i64().expect("message id"))
            .collect();
        assert_eq!(ids, vec![venue], "{listed}");

        // Three pin events later, the timelines hold the same two messages.
        for page in [a, b] {
            assert_eq!(
                page.execute(BODIES, vec![]).await.expect("bodies"),
                json!([plan_text, venue_text])
            );
            assert_eq!(
                page.execute(TIMELINE_ENTRIES, vec![])
                    .await
                    .expect("entries")[0],
                json!(entries),
                "pin events are not timeline entries"
            );
        }
    })
    .await;
}

/// A script returning every presence dot for user `id` on the page (the room list, a direct
/// room's header, message senders), each as `[aria-label, class]`.
fn dots_script(id: i64) -> String {
    format!(
        "return [...document.querySelectorAll(\".presence-dot[data-user='{id}']\")]
           .map((d) => [d.getAttribute('aria-label'), d.className])"
    )
}

/// Wait until `count` dots for user `id` on `who`'s page all say `status`.
async fn wait_dots(b: &Browser, who: &str, id: i64, status: &str, count: usize) {
    let one = json!([status, format!("presence-dot presence-{status}")]);
    let want = Value::Array(vec![one; count]);
    eventually(
        b,
        &format!("{who}'s {count} dots for user {id} to say {status}"),
        &dots_script(id),
        |v| *v == want,
    )
    .await;
}

/// `user`'s status in `client`'s `GET /api/v1/presence` (`None`: not listed, so offline or
/// not sharing a room).
async fn presence_listed(client: &crate::support::Client, user: i64) -> Option<String> {
    let (status, list) = client.get("/api/v1/presence").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["user"] == user)
        .map(|u| u["status"].as_str().expect("status").to_string())
}

/// Presence in the web client: bob's page shows alice's dot (in the room list, the direct
/// room's header and beside her message) offline until her page opens, then online; her tab
/// hidden makes it away and shown again online; "Hide my presence" makes it offline for bob
/// (and the server no longer lists her for him) while her own dot says hidden; showing it
/// again makes it online; her page going away makes it offline. Carol, who shares a room
/// with bob but none with alice, is never told about alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_dots_follow_peers_hiding_and_leaving() {
    /// A script making the page look hidden (`true`) or shown (`false`) to its scripts.
    fn visibility(hidden: bool) -> String {
        let state = if hidden { "hidden" } else { "visible" };
        format!(
            "Object.defineProperty(document, 'visibilityState', {{ value: '{state}', configurable: true }});
             document.dispatchEvent(new Event('visibilitychange'));
             return true"
        )
    }
    /// Alice's own dot, whether her switch is ticked, and the "hidden" mark.
    const OWN: &str = "const d = document.querySelector('#me-presence .presence-dot');
        return [d?.getAttribute('aria-label') ?? null,
                document.querySelector('#presence-hidden').checked,
                document.querySelector('#me-presence .presence-hidden-mark')?.textContent ?? null]";

    let server = TestServer::start_with(|c| {
        c.presence.enabled = true;
        c.presence.offline_grace_ms = 300;
        c.presence.tick_ms = 100;
    })
    .await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    let direct = alice.direct(bob.id).await;
    bob.group("bob and carol", &[carol.id]).await;
    let (status, ack) = alice.send_http(direct, "hi", "hi bob").await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let (server, alice, bob, carol) = (&server, &alice, &bob, &carol);
    with_browsers(2, |browsers| async move {
        let (a, b) = (&browsers[0], &browsers[1]);
        let me = alice.id;

        // Bob first: alice has no page open, so her dot in his room list is hollow.
        login(b, server, "/", "bob", PASSWORD).await;
        wait_online(b).await;
        wait_dots(b, "bob", me, "offline", 1).await;
        click(b, &format!(".room-item[data-room-id='{direct}']")).await;
        wait_for_body(b, "hi bob").await;
        // The direct room's header and her message have one too.
        wait_dots(b, "bob", me, "offline", 3).await;

        // Alice's page opens: online everywhere on bob's page, and in words in the room
        // list's label; her own dot says so too.
        login(a, server, "/", "alice", PASSWORD).await;
        wait_online(a).await;
        wait_dots(b, "bob", me, "online", 3).await;
        eventually(
            b,
            "the room list's label to say alice is online",
            &format!(
                "return document.querySelector(\".room-item[data-room-id='{direct}']\")\
                 ?.getAttribute('aria-label') ?? null"
            ),
            |v| *v == json!("alice, online"),
        )
        .await;
        eventually(a, "alice's own dot", OWN, |v| {
            *v == json!(["online", false, null])
        })
        .await;
        assert_eq!(presence_listed(bob, me).await.as_deref(), Some("online"));
        // Carol shares a room with bob (and sees him), none with alice.
        assert_eq!(
            presence_listed(carol, bob.id).await.as_deref(),
            Some("online")
        );
        assert_eq!(
            presence_listed(carol, me).await,
            None,
            "carol shares no room with alice"
        );

        // Alice's tab is hidden: away; shown again: online.
        a.execute(&visibility(true), vec![])
            .await
            .expect("hide the tab");
        wait_dots(b, "bob", me, "away", 3).await;
        assert_eq!(presence_listed(bob, me).await.as_deref(), Some("away"));
        a.execute(&visibility(false), vec![])
            .await
            .expect("show the tab");
        wait_dots(b, "bob", me, "online", 3).await;

        // Alice hides her presence: offline for bob, and not listed by the server; her own
        // dot still says online, marked hidden.
        click(a, "#presence-hidden").await;
        wait_dots(b, "bob", me, "offline", 3).await;
        assert_eq!(
            presence_listed(bob, me).await,
            None,
            "hidden: the server lists alice for nobody"
        );
        eventually(a, "alice's own dot to say hidden", OWN, |v| {
            *v == json!(["online, hidden", true, "hidden"])
        })
        .await;

        // Shown again: online.
        click(a, "#presence-hidden").await;
        wait_dots(b, "bob", me, "online", 3).await;
        assert_eq!(presence_listed(bob, me).await.as_deref(), Some("online"));
        eventually(a, "alice's own dot without the mark", OWN, |v| {
            *v == json!(["online", false, null])
        })
        .await;
        assert_eq!(
            presence_listed(carol, me).await,
            None,
            "carol shares no room with alice"
        );

        // Alice logs out (her socket closes): offline once the grace is over. (Navigating
        // away is not used: Chromium may keep the page, and its socket, in its back-forward
        // cache.)
        click(a, "#logout").await;
        wait_dots(b, "bob", me, "offline", 3).await;
        assert_eq!(presence_listed(bob, me).await, None);
    })
    .await;
}

/// Single sign-on as a person does it: the login page offers "Sign in with Corp", the
/// provider's own login and consent pages take the person's word, and the web client comes
/// back signed in (the one-time ticket gone from the address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_through_the_provider_lands_in_the_chat() {
    let (server, _db, _provider, _) =
        crate::identity::oidc_setup(crate::hardening::Backend::Sqlite, |_| {}).await;
    let server = &server;
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];
        b.goto(&server.base).await.expect("open page");
        let button = wait_css(b, "#sso a.button").await;
        assert_eq!(button.text().await.expect("text"), "Sign in with Corp");
        button.click().await.expect("click");

        // The provider's pages (oidc-provider's development interactions).
        type_into(b, "input[name=login]", "sub-carol").await;
        type_into(b, "input[name=password]", "anything").await;
        click(b, "button[type=submit]").await;
        eventually(
            b,
            "the provider's consent page",
            "return document.querySelector('input[name=prompt]')?.value",
            |v| v == "consent",
        )
        .await;
        click(b, "button[type=submit]").await;

        eventually(
            b,
            "the chat, signed in as Carol",
            "return document.querySelector('#me')?.textContent",
            |v| v.as_str().is_some_and(|me| me.contains("Carol Jones")),
        )
        .await;
        let address = b.current_url().await.expect("url");
        assert!(
            !address.as_str().contains("oidc_ticket"),
            "the ticket is gone from the address: {address}"
        );
    })
    .await;
}

/// The assistant in the web client: `/ask` typed in the composer, the answer shown as it
/// streams (marked "writing…", masked throughout) and then whole; and in the admin console,
/// an operator changes the daily budget, which the server applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assistants_answer_streams_into_the_timeline_and_the_console_sets_its_budget() {
    use crate::model_server::{ModelServer, Reply};
    use crate::plugins_runtime::harness::{Spec, server_tweaked};
    let model = ModelServer::start().await;
    model.script([Reply::Slow {
        text: "Here is what I found: the SSN 123-45-6789 belongs to the test account, and the \
               rollout is on Tuesday. The team agreed to freeze changes on Monday evening, run \
               the smoke tests at nine, and keep the old build ready for a quick rollback if \
               the payment checks fail again."
            .into(),
        delay: Duration::from_millis(60),
    }]);
    let spec = Spec::new("assistant", "assistant")
        .caps(&["bot", "config", "log", "llm"])
        .top("commands = [\"ask\", \"summarize\", \"approve\", \"deny\"]\n")
        .bot("name = \"assistant\"");
    let base_url = model.base_url();
    let (server, _plugins) = server_tweaked(vec![spec], move |c| {
        c.llm.base_url = base_url;
        c.llm.model = "test-model".into();
        c.llm.stream_edit_interval_ms = 50;
    })
    .await;
    let alice = server.user("alice").await;
    let bot = crate::plugins_bots::bot_id(&alice, "assistant").await;
    alice.group("rollout", &[bot]).await;
    let server = &server;
    with_browsers(2, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/", "alice", PASSWORD).await;
        wait_online(b).await;
        click(b, ".room-item").await;
        wait_css(b, "#room:not([hidden])").await;
        type_into(
            b,
            "#composer-input",
            &format!("/ask when is the rollout?{ENTER}"),
        )
        .await;
        // While it streams: the partial answer with its mark, never the SSN.
        let partial = eventually(
            b,
            "a streaming answer",
            "const m = document.querySelector('#timeline .msg.streaming'); \
             return m ? [m.querySelector('.msg-streaming')?.textContent, \
                         m.querySelector('.msg-body').textContent] : null",
            |v| v[0] == "writing…" && v[1].as_str().is_some_and(|t| t.contains("found")),
        )
        .await;
        assert!(!partial.to_string().contains("123-45-6789"), "{partial}");
        // Then whole: masked, unmarked.
        let done = eventually(
            b,
            "the whole answer",
            "return [...document.querySelectorAll('#timeline .msg:not(.streaming) .msg-body')]\
             .map(e => e.textContent).find(t => t.includes('Tuesday')) || null",
            |v| v.is_string(),
        )
        .await;
        let done = done.as_str().unwrap_or_default();
        assert!(done.contains("***-**-6789"), "{done}");
        assert!(
            done.contains("when is the rollout?"),
            "the question is shown: {done}"
        );
        assert!(!done.contains("123-45-6789"), "{done}");

        // A private answer shows for her alone, as text, until dismissed.
        type_into(
            b,
            "#composer-input",
            &format!("/ask -p what is <b>2+2</b>?{ENTER}"),
        )
        .await;
        eventually(
            b,
            "the private answer",
            "return [...document.querySelectorAll('#notices .notice-body')]\
             .map(e => [e.textContent, e.querySelector('b') === null])",
            |v| {
                v.as_array().is_some_and(|a| {
                    a.iter().any(|n| {
                        n[0].as_str()
                            .is_some_and(|t| t.contains("echo: what is <b>2+2</b>?"))
                            && n[1] == true
                    })
                })
            },
        )
        .await;
        click(b, "#notices .notice-dismiss").await;
        eventually(
            b,
            "the notice to go",
            "return document.querySelectorAll('#notices .notice').length",
            |v| v.as_u64() == Some(0),
        )
        .await;

        // The operator raises the budget in the console (another browser: its own session).
        let b = &browsers[1];
        login(b, server, "/admin#assistant", "admin", ADMIN_PASSWORD).await;
        let status = wait_css(b, "#llm-status")
            .await
            .text()
            .await
            .expect("status");
        assert!(status.contains("test-model"), "{status}");
        let budget = wait_css(b, "#llm-user_daily_tokens").await;
        budget.clear().await.expect("clear");
        budget.send_keys("12345").await.expect("type");
        click(b, "#llm-save").await;
        wait_css(b, "#llm-reset").await;
    })
    .await;
    let (status, settings) = server.admin().await.get("/api/v1/admin/llm").await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(
        settings["governance"]["user_daily_tokens"], 12345,
        "{settings}"
    );
    assert_eq!(settings["governance_changed"], true);
    assert!(settings.get("api_key").is_none());
}

/// The console's API reference renders the server's own OpenAPI description: every
/// operation, grouped by tag in the document's order; a filter that narrows them as one types;
/// and, once opened, an operation's request body fields and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reads_the_api_reference_in_the_console() {
    let server = TestServer::start().await;
    let (status, doc) = server.admin().await.get("/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    // What the page should show, from the document itself: per operation its id, the tag it
    // is listed under (its first) and what the filter searches.
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "patch", "delete", "head", "options", "trace",
        ] {
            let Some(op) = item.get(method) else {
                continue;
            };
            let tags: Vec<&str> = op["tags"]
                .as_array()
                .map(|t| t.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let id = op["operationId"].as_str().expect("operationId").to_string();
            let searched = [
                method,
                path.as_str(),
                op["summary"].as_str().unwrap_or_default(),
                id.as_str(),
            ]
            .into_iter()
            .chain(tags.iter().copied())
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase();
            let tag = tags.first().copied().unwrap_or("other").to_string();
            operations.push((id, tag, searched));
        }
    }
    let mut groups: Vec<String> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .filter(|name| operations.iter().any(|(_, tag, _)| tag == name))
        .map(str::to_string)
        .collect();
    for (_, tag, _) in &operations {
        if !groups.contains(tag) {
            groups.push(tag.clone());
        }
    }
    let mut matching: Vec<&str> = operations
        .iter()
        .filter(|(_, _, searched)| searched.contains("reactions"))
        .map(|(id, _, _)| id.as_str())
        .collect();
    matching.sort_unstable();
    assert!(
        !matching.is_empty() && !matching.contains(&"send_message"),
        "{matching:?}"
    );
    let total = operations.len();
    let (server, groups, matching) = (&server, &groups, &matching);
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/admin#api", "admin", ADMIN_PASSWORD).await;
        let title = wait_css(b, "#api-title").await.text().await.expect("title");
        assert_eq!(title, "Switchboard HTTP API");
        let download = b
            .execute(
                "const a = document.querySelector('#api-download'); \
                 return [a.href.slice(0, 5), a.getAttribute('download')]",
                vec![],
            )
            .await
            .expect("download link");
        assert_eq!(download, json!(["blob:", "switchboard-openapi.json"]));
        let count = |n: usize| format!("{n} operation{}", if n == 1 { "" } else { "s" });
        assert_eq!(
            wait_css(b, "#api-count")
                .await
                .text()
                .await
                .expect("count"),
            count(total)
        );
        let shown_groups = b
            .execute(
                "return [...document.querySelectorAll('#section .api-tag')].map((s) => s.dataset.tag)",
                vec![],
            )
            .await
            .expect("groups");
        assert_eq!(shown_groups, json!(groups), "grouped in the document's tag order");

        // POST /api/v1/rooms/{id}/messages, under "rooms".
        let send = "#section details[data-operation='send_message']";
        let row = b
            .execute(
                &format!(
                    "const d = document.querySelector(\"{send}\"); \
                     return [d.dataset.method, d.dataset.path, d.closest('.api-tag').dataset.tag, \
                             d.closest('.api-tag').querySelector('h2').textContent, \
                             d.querySelector('summary .api-method').textContent, \
                             d.querySelector('summary .api-path').textContent]"
                ),
                vec![],
            )
            .await
            .expect("send_message row");
        assert_eq!(
            row,
            json!([
                "POST",
                "/api/v1/rooms/{id}/messages",
                "rooms",
                "rooms",
                "POST",
                "/api/v1/rooms/{id}/messages"
            ])
        );

        // The filter narrows the list as one types: exactly the operations that mention
        // reactions in their path, tag, summary or id; send_message is not one of them.
        let shown = "return [...document.querySelectorAll('#section details[data-operation]')]\
                     .filter((d) => d.getClientRects().length > 0)\
                     .map((d) => d.dataset.operation).sort()";
        type_into(b, "#api-filter", "reactions").await;
        eventually(b, "the filter to narrow the list", shown, |v| {
            *v == json!(matching)
        })
        .await;
        assert_eq!(
            wait_css(b, "#api-count")
                .await
                .text()
                .await
                .expect("count"),
            count(matching.len())
        );
        let send_row = b.find(Locator::Css(send)).await.expect("send_message row");
        assert!(
            !send_row.is_displayed().await.expect("displayed"),
            "send_message is filtered out"
        );
        type_into(b, "#api-filter", &"\u{E003}".repeat("reactions".len())).await;
        eventually(
            b,
            "every operation back",
            "return document.querySelector('#api-count').textContent",
            |v| v.as_str() == Some(count(total).as_str()),
        )
        .await;

        // Opened: the request body's fields (SendRequest's) and both success answers.
        click(b, &format!("{send} > summary")).await;
        let field = wait_css(
            b,
            &format!("{send}[open] .api-request tr[data-field='client_msg_id']"),
        )
        .await
        .text()
        .await
        .expect("field");
        assert!(field.contains("string"), "{field}");
        let body_type = wait_css(b, &format!("{send} .api-request .api-media .api-type"))
            .await
            .text()
            .await
            .expect("body type");
        assert_eq!(body_type, "SendRequest");
        let statuses = b
            .execute(
                &format!(
                    "return [...document.querySelectorAll(\"{send} .api-response\")]\
                     .map((r) => r.dataset.status)"
                ),
                vec![],
            )
            .await
            .expect("statuses");
        for status in ["201", "200"] {
            assert!(
                statuses
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == status)),
                "{status} in {statuses}"
            );
        }
    })
    .await;
}

/// The console's Webhooks section: an admin makes a hook for a room and sees its URL once;
/// a Slack payload posted there lands in the room; revoking it in the console ends the URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_makes_and_revokes_a_webhook_in_the_console() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let room = alice.group("alerts", &[]).await;
    let (server, alice) = (&server, &alice);
    with_browsers(1, |browsers| async move {
        let b = &browsers[0];
        login(b, server, "/admin#webhooks", "admin", ADMIN_PASSWORD).await;
        eventually(
            b,
            "the room to be offered",
            &format!(
                "return document.querySelector('#webhook-room option[value=\"{room}\"]') !== null"
            ),
            |v| v.as_bool() == Some(true),
        )
        .await;
        type_into(b, "#webhook-name", "Grafana").await;
        click(b, "#webhook-form button[type=submit]").await;
        let url = eventually(
            b,
            "the new hook's URL",
            "const el = document.querySelector('#webhook-url'); return el ? el.value : ''",
            |v| v.as_str().is_some_and(|s| s.contains("/hooks/")),
        )
        .await;
        let url = url.as_str().expect("url").to_string();
        let posted = reqwest::Client::new()
            .post(&url)
            .json(&json!({ "text": "CPU high on db-1" }))
            .send()
            .await
            .expect("post");
        assert_eq!(posted.status(), StatusCode::OK);
        let history = alice.history(room, "").await;
        assert!(
            history.iter().any(|e| e["body"] == "CPU high on db-1"),
            "{history:?}"
        );
        click_and_confirm(b, "#webhooks button.revoke-webhook").await;
        eventually(
            b,
            "the hook to show as revoked",
            "return document.querySelectorAll('#webhooks button.revoke-webhook').length",
            |v| v.as_u64() == Some(0),
        )
        .await;
        let late = reqwest::Client::new()
            .post(&url)
            .json(&json!({ "text": "after revoking" }))
            .send()
            .await
            .expect("post");
        assert_eq!(late.status(), StatusCode::GONE);
    })
    .await;
}

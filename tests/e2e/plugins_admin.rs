//! Managing plugins while the server runs, through the admin API: list, change settings,
//! disable, enable, reload, install (upload), upgrade, uninstall — each audited with the
//! acting admin, each persisted across a restart, each refusal with a stable code. And the
//! promise a reload makes: with traffic flowing, no message is lost, duplicated or let
//! through unfiltered.

use std::collections::HashSet;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::plugins_runtime::harness::{Spec, server_tweaked, server_with};
use crate::support::{Client, TestServer};
use crate::wasm_build::plugin_wasm;

const CARD: &str = "4111 1111 1111 1111";
const MASKED: &str = "**** **** **** 1111";

fn dlp(settings: &str) -> Spec {
    Spec::new("dlp", "dlp")
        .caps(&["log", "config", "kv"])
        .priority(20)
        .settings(settings)
        // These tests manage plugins; a CI machine busy with other tests must not turn a
        // slow call into a fail-closed rejection (the deadline has tests of its own).
        .limits("timeout_ms = 1000\n")
}

async fn upload(
    admin: &Client,
    manifest: &str,
    component: Vec<u8>,
    query: &str,
) -> (StatusCode, Value) {
    upload_signed(admin, manifest, component, None, query).await
}

async fn upload_signed(
    admin: &Client,
    manifest: &str,
    component: Vec<u8>,
    signature: Option<String>,
    query: &str,
) -> (StatusCode, Value) {
    let mut form = Form::new()
        .part("manifest", Part::text(manifest.to_string()))
        .part("component", Part::bytes(component).file_name("plugin.wasm"));
    if let Some(signature) = signature {
        form = form.part("signature", Part::text(signature));
    }
    let resp = admin
        .http
        .post(format!("{}/api/v1/admin/plugins{query}", admin.base))
        .bearer_auth(&admin.token)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    (status, resp.json().await.expect("json body"))
}

fn plugin<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .find(|p| p["name"] == name)
}

#[tokio::test]
async fn admin_manages_plugins_live_and_every_action_is_audited() {
    let (server, plugins_dir) = server_with(vec![dlp("\"action.card\" = \"block\"\n")]).await;
    let admin = server.admin().await;
    let alice = server.user("alice").await;
    let room = alice.group("ops", &[]).await;

    // Admins only.
    let (status, err) = alice.get("/api/v1/admin/plugins").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin_only"))
    );

    let (status, list) = admin.get("/api/v1/admin/plugins").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let dlp_view = plugin(&list, "dlp").expect("dlp listed");
    assert_eq!(dlp_view["loaded"], true);
    assert_eq!(dlp_view["settings"]["action.card"], "block");
    assert_eq!(
        dlp_view["status"]["hooks"],
        json!(["message-pre-send", "file-pre-upload"])
    );

    let (status, _) = alice.send_http(room, "c1", &format!("card {CARD}")).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "blocked while action.card = block"
    );

    // A settings change takes effect on the next message, and reaches the file.
    let (status, report) = admin
        .patch(
            "/api/v1/admin/plugins/dlp",
            json!({ "settings": { "action.card": "redact" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["drained"], true);
    let (status, ack) = alice.send_http(room, "c2", &format!("card {CARD}")).await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["body"], format!("card {MASKED}"));
    let on_disk = std::fs::read_to_string(plugins_dir.path().join("dlp/plugin.toml")).unwrap();
    assert!(
        on_disk.contains("\"action.card\" = \"redact\""),
        "{on_disk}"
    );

    // Disabled: the next message is no longer filtered. Enabled: filtered again.
    let (status, report) = admin
        .post("/api/v1/admin/plugins/dlp/disable", json!({}))
        .await;
    assert_eq!(
        (status, report["plugin"]["loaded"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let (status, ack) = alice.send_http(room, "c3", &format!("card {CARD}")).await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_ne!(ack["modified"], true, "{ack}");
    let last = alice.history(room, "?limit=1").await;
    assert_eq!(
        last[0]["body"],
        format!("card {CARD}"),
        "not filtered while disabled"
    );
    let (status, report) = admin
        .post("/api/v1/admin/plugins/dlp/enable", json!({}))
        .await;
    assert_eq!(
        (status, report["plugin"]["loaded"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (_, ack) = alice.send_http(room, "c4", &format!("card {CARD}")).await;
    assert_eq!(ack["body"], format!("card {MASKED}"));

    // Reload reports what it replaced; counters are totals across versions.
    let (status, report) = admin
        .post("/api/v1/admin/plugins/dlp/reload", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["previous_version"], "0.1.0");
    let (_, view) = admin.get("/api/v1/admin/plugins/dlp").await;
    assert!(
        view["status"]["counters"]["calls"].as_u64().unwrap() >= 3,
        "{view}"
    );

    // Install from an upload, refuse a second install of the same name, upgrade with replace.
    let guard = Spec::new("guard", "keyword-guard")
        .caps(&["config"])
        .priority(5)
        .settings("block = [\"forbidden\"]\n")
        .manifest()
        .replace(
            &format!("component = \"{}\"", plugin_wasm("keyword-guard").display()),
            "component = \"guard.wasm\"",
        );
    let component = std::fs::read(plugin_wasm("keyword-guard")).unwrap();
    let (status, report) = upload(&admin, &guard, component.clone(), "").await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(report["plugin"]["loaded"], true);
    let (status, ack) = alice.send_http(room, "g1", "this is forbidden").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{ack}");
    let (status, err) = upload(&admin, &guard, component.clone(), "").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::CONFLICT, Some("plugin_exists"))
    );
    let (status, report) = upload(&admin, &guard, component.clone(), "?replace=true").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["previous_version"], "0.1.0");

    // A broken upgrade changes nothing: the old version keeps running from its old files.
    let (status, err) = upload(&admin, &guard, b"not wasm".to_vec(), "?replace=true").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("plugin_load_failed")),
        "{err}"
    );
    assert_eq!(
        std::fs::read(plugins_dir.path().join("guard/guard.wasm")).unwrap(),
        component
    );
    let (status, _) = alice.send_http(room, "g2", "still forbidden").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An upload may not write outside its directory.
    let escaping = guard.replace("component = \"guard.wasm\"", "component = \"../evil.wasm\"");
    let (status, err) = upload(&admin, &escaping, component.clone(), "?replace=true").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_plugin")),
        "{err}"
    );
    assert!(!plugins_dir.path().join("evil.wasm").exists());

    // Bad settings are refused before they reach the file.
    let (status, err) = admin
        .patch(
            "/api/v1/admin/plugins/dlp",
            json!({ "settings": { "action.card": {"x": 1} } }),
        )
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_plugin"))
    );
    let (status, err) = admin
        .patch(
            "/api/v1/admin/plugins/dlp",
            json!({ "failure_policy": "sometimes" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");

    // Uninstall removes it from the chain and the directory, and its compiled artifact
    // from the compile cache: what is left there is DLP's, the one plugin still installed.
    let artifacts = || {
        std::fs::read_dir(server.dir.path().join("plugin-cache"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".cwasm")
            })
            .count()
    };
    assert!(artifacts() >= 2, "DLP's and the guard's");
    let (status, _) = admin.delete("/api/v1/admin/plugins/guard").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!plugins_dir.path().join("guard").exists());
    assert_eq!(artifacts(), 1, "only DLP's artifact is kept");
    let (status, _) = alice.send_http(room, "g3", "forbidden no more").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, err) = admin
        .post("/api/v1/admin/plugins/guard/reload", json!({}))
        .await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("plugin_not_found"))
    );

    // Every operator action is on record, with the admin as actor.
    let (_, audit) = admin.get("/api/v1/admin/audit?limit=100").await;
    let actor = format!("user:{}", admin.id);
    let actions: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == actor.as_str())
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_string(),
                r["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (action, subject) in [
        ("plugin.change", "plugin:dlp"),
        ("plugin.disable", "plugin:dlp"),
        ("plugin.enable", "plugin:dlp"),
        ("plugin.reload", "plugin:dlp"),
        ("plugin.install", "plugin:guard"),
        ("plugin.install.failed", "plugin:guard"),
        ("plugin.uninstall", "plugin:guard"),
    ] {
        assert!(
            actions.iter().any(|(a, s)| a == action && s == subject),
            "{action} on {subject} missing from {actions:?}"
        );
    }
    let change = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "plugin.change")
        .unwrap();
    assert_eq!(change["detail"]["settings_changed"], json!(["action.card"]));
    // DLP's redactions are on record too, naming the detector and never the value.
    let redact = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "plugin.redact")
        .expect("a plugin.redact record");
    assert_eq!(redact["actor"], "plugin:dlp");
    assert_eq!(redact["subject"], format!("room:{room}"));
    assert_eq!(redact["detail"]["detectors"], "card");
    assert!(
        !crate::support::audit_words(redact).contains("1111"),
        "{redact}"
    );

    // A restart comes back to the same state.
    let dir = plugins_dir.path().to_path_buf();
    let server = server.restart(move |c| c.plugins.dir = Some(dir)).await;
    let admin = server.admin().await;
    let (_, list) = admin.get("/api/v1/admin/plugins").await;
    assert_eq!(
        plugin(&list, "dlp").unwrap()["settings"]["action.card"],
        "redact"
    );
    assert!(plugin(&list, "guard").is_none());
}

/// Four clients send card numbers as fast as they get acks while the admin reloads the
/// DLP plugin, changes its settings and uploads a new copy of it. Every message must be
/// acked once, stored once, and stored redacted.
#[tokio::test]
async fn reload_under_load_loses_duplicates_and_leaks_nothing() {
    const SENDERS: usize = 4;
    const PER_SENDER: usize = 150;
    // The senders go as fast as acks come back: lift the per-user message rate limit.
    let (server, plugins_dir) = server_tweaked(vec![dlp("\"action.card\" = \"redact\"\n")], |c| {
        c.limits.messages_per_second = 100_000;
        c.limits.message_burst = 100_000;
    })
    .await;
    let admin = server.admin().await;
    let mut members = Vec::new();
    let mut clients = Vec::new();
    for i in 0..SENDERS {
        let c = server.user(&format!("sender{i}")).await;
        members.push(c.id);
        clients.push(c);
    }
    let room = admin.group("load", &members).await;

    let mut senders = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let mut ws = client.ws(&server).await;
        senders.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for n in 0..PER_SENDER {
                let ack = ws
                    .send_msg(room, &format!("s{i}-{n}"), &format!("#{n} pay with {CARD}"))
                    .await;
                acks.push(ack);
            }
            acks
        }));
    }

    let manifest = std::fs::read_to_string(plugins_dir.path().join("dlp/plugin.toml")).unwrap();
    let upgrade = manifest.replace(
        &format!("component = \"{}\"", plugin_wasm("dlp").display()),
        "component = \"dlp.wasm\"",
    );
    let component = std::fs::read(plugin_wasm("dlp")).unwrap();
    let mut swaps = 0;
    while !senders.iter().all(|s| s.is_finished()) {
        let (status, report) = match swaps % 3 {
            0 => {
                admin
                    .post("/api/v1/admin/plugins/dlp/reload", json!({}))
                    .await
            }
            1 => {
                let flag = if swaps % 2 == 0 { "flag" } else { "off" };
                admin
                    .patch(
                        "/api/v1/admin/plugins/dlp",
                        json!({ "settings": { "action.email": flag } }),
                    )
                    .await
            }
            _ => upload(&admin, &upgrade, component.clone(), "?replace=true").await,
        };
        assert_eq!(status, StatusCode::OK, "swap {swaps}: {report}");
        assert_eq!(report["plugin"]["loaded"], true);
        swaps += 1;
    }
    assert!(
        swaps >= 3,
        "the senders finished before the plugin was swapped ({swaps} swaps)"
    );
    eprintln!("{swaps} swaps under load");

    let mut acked = HashSet::new();
    for sender in senders {
        for ack in sender.await.unwrap() {
            assert_eq!(ack["type"], "ack", "every message accepted: {ack}");
            assert!(
                !ack["body"].as_str().unwrap().contains(CARD),
                "unfiltered ack {ack}"
            );
            assert!(acked.insert(ack["client_msg_id"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(acked.len(), SENDERS * PER_SENDER);

    // Read the whole room back: each message exactly once, each redacted.
    let mut stored = HashSet::new();
    let mut after = 0;
    loop {
        let (status, page) = admin
            .get(&format!(
                "/api/v1/rooms/{room}/messages?after={after}&limit=200"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for event in page["events"].as_array().unwrap() {
            after = event["seq"].as_i64().unwrap();
            if event["kind"] != "message" {
                continue;
            }
            let body = event["body"].as_str().unwrap();
            assert!(
                !body.contains(CARD) && body.contains(MASKED),
                "stored unfiltered: {body}"
            );
            assert_eq!(event["metadata"]["dlp.redacted"], "card");
            let id = event["client_msg_id"].as_str().unwrap().to_string();
            assert!(stored.insert(id.clone()), "{id} stored twice");
        }
        if page["has_more"] != true {
            break;
        }
    }
    assert_eq!(stored, acked);

    let (_, view) = admin.get("/api/v1/admin/plugins/dlp").await;
    assert!(
        view["status"]["counters"]["calls"].as_u64().unwrap() >= (SENDERS * PER_SENDER) as u64,
        "call counts survive reloads: {view}"
    );
}

/// With `trusted_keys` configured, an upload must carry a valid signature by one of them: an
/// unsigned or tampered component is refused with `plugin_signature_invalid` and leaves
/// nothing behind; a signed one installs.
#[tokio::test]
async fn installs_need_a_trusted_signature_when_keys_are_configured() {
    use switchboard::signing::{SecretKey, TrustedKeys};
    let key = SecretKey::generate().unwrap();
    let trusted = TrustedKeys::new(vec![key.public()]);
    let (server, plugins_dir) =
        server_tweaked(vec![], move |c| c.plugins.trusted_keys = trusted).await;
    let admin = server.admin().await;
    let manifest = "name = \"guard\"\nversion = \"1.0.0\"\ncomponent = \"guard.wasm\"\n\
                    capabilities = [\"config\"]\n[settings]\nblock = [\"forbidden\"]\n";
    let component = std::fs::read(plugin_wasm("keyword-guard")).unwrap();

    let (status, err) = upload(&admin, manifest, component.clone(), "").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("plugin_signature_invalid")),
        "{err}"
    );
    let mut tampered = component.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let (status, err) =
        upload_signed(&admin, manifest, tampered, Some(key.sign(&component)), "").await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("plugin_signature_invalid")),
        "{err}"
    );
    assert!(
        !plugins_dir.path().join("guard").exists(),
        "a refused upload leaves nothing"
    );

    let (status, report) = upload_signed(
        &admin,
        manifest,
        component.clone(),
        Some(key.sign(&component)),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{report}");
    assert_eq!(report["plugin"]["loaded"], true);
    assert!(plugins_dir.path().join("guard/guard.wasm.sig").is_file());
    let alice = server.user("alice").await;
    let room = alice.group("signed", &[]).await;
    let (status, _) = alice.send_http(room, "s1", "forbidden words").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Run the real `switchboard plugin …` CLI against the server, as an operator would.
async fn cli(server: &TestServer, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("plugin")
        .args(args)
        .env("SWITCHBOARD_URL", &server.base)
        .env("SWITCHBOARD_TOKEN", token)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("running switchboard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_manages_a_running_servers_plugins() {
    let (server, plugins_dir) = server_with(vec![dlp("\"action.card\" = \"block\"\n")]).await;
    let admin = server.admin().await;
    let alice = server.user("alice").await;
    let room = alice.group("cli", &[]).await;
    alice.send_http(room, "x0", "warm up the counters").await;

    let (ok, out, err) = cli(&server, &admin.token, &["list"]).await;
    assert!(ok, "{err}");
    let row = out.lines().find(|l| l.starts_with("dlp ")).expect(&out);
    assert!(
        row.contains("loaded") && row.contains("fail-closed"),
        "{out}"
    );

    let (ok, out, err) = cli(
        &server,
        &admin.token,
        &["set", "dlp", "action.card=redact", "--priority", "-5"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("changed dlp 0.1.0: loaded"), "{out}");
    let (status, ack) = alice.send_http(room, "x1", &format!("card {CARD}")).await;
    assert_eq!(ack["body"], format!("card {MASKED}"), "{status}: {ack}");

    let (ok, out, err) = cli(&server, &admin.token, &["disable", "dlp"]).await;
    assert!(ok && out.starts_with("disabled dlp"), "{out}{err}");
    let (ok, out, _) = cli(&server, &admin.token, &["list"]).await;
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("dlp ") && l.contains("disabled")),
        "{out}"
    );
    let (ok, _, err) = cli(&server, &admin.token, &["enable", "dlp"]).await;
    assert!(ok, "{err}");

    // Install a directory as an author has it: the manifest names the component by a path
    // of the author's; the CLI uploads it under its file name.
    let src = tempfile::tempdir().unwrap();
    std::fs::copy(plugin_wasm("keyword-guard"), src.path().join("guard.wasm")).unwrap();
    std::fs::write(
        src.path().join("plugin.toml"),
        "name = \"guard\"\nversion = \"2.0.0\"\ncomponent = \"./guard.wasm\"\n\
         capabilities = [\"config\"]\n[settings]\nblock = [\"forbidden\"]\n",
    )
    .unwrap();
    let dir = src.path().to_str().unwrap();
    let (ok, out, err) = cli(&server, &admin.token, &["install", dir]).await;
    assert!(
        ok && out.starts_with("installed guard 2.0.0: loaded"),
        "{out}{err}"
    );
    assert!(plugins_dir.path().join("guard/guard.wasm").is_file());
    let (ok, _, err) = cli(&server, &admin.token, &["install", dir]).await;
    assert!(!ok && err.contains("plugin_exists"), "{err}");
    let (ok, out, err) = cli(&server, &admin.token, &["install", "--replace", dir]).await;
    assert!(ok && out.contains("replaced 2.0.0"), "{out}{err}");
    let (ok, out, err) = cli(&server, &admin.token, &["uninstall", "guard"]).await;
    assert!(ok && out.starts_with("uninstalled guard"), "{out}{err}");

    // Refusals carry the server's code; a non-admin token is refused.
    let (ok, _, err) = cli(&server, &admin.token, &["reload", "nope"]).await;
    assert!(!ok && err.contains("plugin_not_found"), "{err}");
    let (ok, _, err) = cli(&server, &alice.token, &["list"]).await;
    assert!(!ok && err.contains("admin_only"), "{err}");
    let (ok, _, err) = cli(&server, &admin.token, &["set", "dlp"]).await;
    assert!(!ok && err.contains("nothing to change"), "{err}");
}

/// A bot plugin through the admin API: its grants (bot, commands) are shown, and a reload
/// keeps its bot user and its command — the bot answers after the swap as before.
#[tokio::test]
async fn a_reloaded_bot_keeps_its_user_and_commands() {
    let echo = Spec::new("echo-bot", "echo-bot")
        .caps(&["bot", "config", "log"])
        .top("commands = [\"echo\"]\n")
        .bot("display_name = \"Echo\"\n");
    let (server, _plugins) = server_with(vec![echo]).await;
    let admin = server.admin().await;
    let (status, view) = admin.get("/api/v1/admin/plugins/echo-bot").await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["grants"]["commands"], json!(["echo"]));
    assert_eq!(view["grants"]["bot"], "echo-bot");
    assert_eq!(view["status"]["interface"], "switchboard:plugin@0.3.0");
    let bot_user = view["status"]["bot_user"].as_i64().expect("a bot user");

    let (status, report) = admin
        .post("/api/v1/admin/plugins/echo-bot/reload", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["plugin"]["status"]["bot_user"], bot_user);

    let alice = server.user("alice").await;
    let room = alice.group("bots", &[bot_user]).await;
    let mut ws = alice.ws(&server).await;
    let ack = ws.send_msg(room, "c1", "/echo after the reload").await;
    assert_eq!(ack["command"], "echo", "{ack}");
    let event = ws.recv_type("event").await;
    assert_eq!(
        (event["sender_id"].as_i64(), event["body"].as_str()),
        (Some(bot_user), Some("after the reload")),
        "{event}"
    );
}

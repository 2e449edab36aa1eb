//! Interface 0.2 through the real server: a 0.1 component still loads next to 0.2 ones;
//! the `bot` capability and the `command` hook (public and private replies, bot posts
//! through the `message-pre-send` chain, no self-triggering, bot ping-pong cut at
//! `max_depth`); and the refusals (capability not granted, conflicting commands).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::plugins_runtime::harness::{Spec, cache_dir, server_with, write_plugins};
use crate::support::{Client, TestServer};

/// The id of the bot user called `name`, as any user sees it in the user list.
pub async fn bot_id(client: &Client, name: &str) -> i64 {
    let (status, users) = client.get("/api/v1/users").await;
    assert_eq!(status, StatusCode::OK, "{users}");
    let bot = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no user {name}: {users}"));
    assert_eq!(bot["is_bot"], true, "{bot}");
    bot["id"].as_i64().unwrap()
}

/// The value of one Prometheus sample (0 when absent), e.g.
/// `switchboard_plugin_bot_posts_total{plugin="a",outcome="queued"}`.
pub async fn metric(server: &TestServer, sample: &str) -> u64 {
    metric_sample(server, sample).await.unwrap_or(0)
}

/// The value of one Prometheus sample, `None` when `/metrics` does not show it.
pub async fn metric_sample(server: &TestServer, sample: &str) -> Option<u64> {
    let (_, text) = server.admin().await.get("/metrics").await;
    let text = text.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|line| line.strip_prefix(sample))
        .and_then(|rest| rest.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Wait (bounded) until `sample` reaches `at_least`; the wait is not what is tested.
pub async fn wait_metric(server: &TestServer, sample: &str, at_least: u64) {
    for _ in 0..400 {
        if metric(server, sample).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{sample} never reached {at_least}");
}

fn echo_bot(name: &str, settings: &str) -> Spec {
    Spec::new(name, "echo-bot")
        .caps(&["bot", "config", "log"])
        .settings(settings)
}

fn bodies(history: &[Value]) -> Vec<(i64, String)> {
    history
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| {
            (
                e["sender_id"].as_i64().unwrap_or(-1),
                e["body"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn v01_and_v02_components_keep_loading_next_to_v03_plugins() {
    let legacy = Spec::new("legacy", "fixture-legacy-v01")
        .caps(&["config"])
        .priority(1)
        .settings("greeting = \"hello from 0.1\"\n");
    let legacy2 = Spec::new("legacy2", "fixture-legacy-v02")
        .caps(&["bot"])
        .priority(2)
        .top("commands = [\"legacy2\"]\n");
    let probe = Spec::new("probe", "fixture-probe")
        .caps(&["config", "kv", "log"])
        .priority(3);
    let (server, _plugins) = server_with(vec![legacy, legacy2, probe]).await;
    let alice = server.user("alice").await;
    let room = alice.group("legacy", &[]).await;

    // Both run, in order, on the same message: the 0.1 plugin through its own bindings.
    let (status, ack) = alice.send_http(room, "m1", "hi").await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let history = alice.history(room, "").await;
    let meta = &history.last().unwrap()["metadata"];
    assert_eq!(meta["legacy.interface"], "0.1", "{meta}");
    assert_eq!(meta["legacy.greeting"], "hello from 0.1");
    // The 0.2 plugin ran too, through 0.2's bindings and imports.
    assert_eq!(meta["legacy2.interface"], "0.2", "{meta}");
    assert_eq!(meta["legacy2.bot"], "granted", "{meta}");
    assert_eq!(
        meta["probe.kv"], "ok",
        "the 0.2 plugin ran after it: {meta}"
    );
    // Not granted `bot`: the 0.2 import answers with a clear error, not a trap.
    assert_eq!(meta["probe.bot"], "not-granted");

    let admin = server.admin().await;
    let (_, plugins) = admin.get("/api/v1/admin/plugins").await;
    let interfaces: Vec<(String, String)> = plugins
        .as_array()
        .or_else(|| plugins["plugins"].as_array())
        .expect("plugins")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_string(),
                p["status"]["interface"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    for (name, interface) in [
        ("legacy", "switchboard:plugin@0.1.0"),
        ("legacy2", "switchboard:plugin@0.2.0"),
        ("probe", "switchboard:plugin@0.3.0"),
    ] {
        assert!(
            interfaces.contains(&(name.to_string(), interface.to_string())),
            "{name} on {interface}: {interfaces:?}"
        );
    }
    let (status, err) = alice.send_http(room, "m3", "legacy2-reject this").await;
    assert_eq!(
        (status, err["rejection"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("legacy2_rejected")),
        "{err}"
    );

    // A 0.1 rejection and a 0.1 login denial reach the client like any other.
    let (status, err) = alice.send_http(room, "m2", "legacy-reject this").await;
    assert_eq!(
        (status, err["rejection"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("legacy_rejected")),
        "{err}"
    );
    the_legacy_plugin_denies_the_login_of_legacy_denied(&server, &admin).await;
}

/// The 0.1 legacy fixture (installed as `legacy`) still decides logins through its
/// `on-login`: it refuses the user `legacy-denied`, whom this creates.
pub(crate) async fn the_legacy_plugin_denies_the_login_of_legacy_denied(
    server: &crate::support::TestServer,
    admin: &crate::support::Client,
) {
    let (status, _) = admin
        .post(
            "/api/v1/users",
            serde_json::json!({ "name": "legacy-denied", "password": crate::support::PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let resp = server
        .http
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&serde_json::json!({ "username": "legacy-denied", "password": crate::support::PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["rejection"]["plugin"], "legacy", "{body}");
}

#[tokio::test]
async fn echo_bot_answers_commands_in_the_room_and_privately() {
    let bot = echo_bot("echo-bot", "\"answer.ping\" = \"pong\"\n")
        .top("commands = [\"echo\", \"whisper\"]\n")
        .bot("display_name = \"Echo\"\n");
    let (server, _plugins) = server_with(vec![bot]).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bot = bot_id(&alice, "echo-bot").await;
    let room = alice.group("bots", &[bob.id, bot]).await;
    let mut alice_ws = alice.ws(&server).await;
    let mut bob_ws = bob.ws(&server).await;

    // A command is acked as one, and answered by the bot in the room.
    let ack = alice_ws.send_msg(room, "c1", "/echo hello there").await;
    assert_eq!(
        (ack["type"].as_str(), ack["command"].as_str()),
        (Some("ack"), Some("echo")),
        "{ack}"
    );
    let event = bob_ws.recv_type("event").await;
    assert_eq!(
        (event["sender_id"].as_i64(), event["body"].as_str()),
        (Some(bot), Some("hello there")),
        "{event}"
    );
    assert_eq!(event["metadata"]["bot.plugin"], "echo-bot");

    // A private reply reaches the sender's sessions only.
    let ack = alice_ws.send_msg(room, "c2", "/whisper only for you").await;
    assert_eq!(ack["command"], "whisper", "{ack}");
    let notice = alice_ws.recv_type("notice").await;
    assert_eq!(
        (
            notice["body"].as_str(),
            notice["plugin"].as_str(),
            notice["room"].as_i64()
        ),
        (Some("only for you"), Some("echo-bot"), Some(room))
    );

    // Keywords: the bot answers a delivered message as a reply in its room.
    let ack = alice_ws.send_msg(room, "k1", "ping?").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let first = bob_ws.recv_type("event").await;
    assert_eq!(
        first["body"], "ping?",
        "bob saw no whisper before it: {first}"
    );
    let answer = bob_ws.recv_type("event").await;
    assert_eq!(
        (answer["sender_id"].as_i64(), answer["body"].as_str()),
        (Some(bot), Some("pong"))
    );
    assert_eq!(
        answer.get("thread_root"),
        None,
        "a room message gets a room answer"
    );

    // A keyword in a thread: the plugin sees the thread (`thread-root`, interface 0.3) and
    // answers in it through `bot.reply-in-thread`.
    let root = first["id"].as_i64().unwrap();
    let (status, ack) = alice
        .post(
            &format!("/api/v1/rooms/{room}/messages"),
            serde_json::json!({ "client_msg_id": "k2", "body": "ping again", "thread_root": root }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let reply = bob_ws.recv_type("event").await;
    assert_eq!(
        (reply["body"].as_str(), reply["thread_root"].as_i64()),
        (Some("ping again"), Some(root))
    );
    let answer = bob_ws.recv_type("event").await;
    assert_eq!(
        (
            answer["sender_id"].as_i64(),
            answer["body"].as_str(),
            answer["thread_root"].as_i64()
        ),
        (Some(bot), Some("pong"), Some(root)),
        "{answer}"
    );

    // The commands themselves were not stored; the bot's posts were.
    let history = bodies(&alice.history(room, "").await);
    assert_eq!(
        history,
        vec![
            (bot, "hello there".to_string()),
            (alice.id, "ping?".to_string()),
            (bot, "pong".to_string()),
            (alice.id, "ping again".to_string()),
            (bot, "pong".to_string()),
        ]
    );

    // A word with a slash that nobody registered is an ordinary message.
    let (status, ack) = alice.send_http(room, "p1", "/etc/hosts is a file").await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert!(ack["command"].is_null());
}

/// Interface 0.3's `bot.react`: the echo bot reacts to keywords with the emoji its settings
/// name; a setting that is not an emoji is refused to the plugin (`invalid-argument`) and
/// nothing is stored.
#[tokio::test]
async fn a_bot_reacts_through_bot_react() {
    let bot = echo_bot(
        "echo-bot",
        "\"react.ship\" = \"🚀\"\n\"react.bad\" = \"not an emoji\"\n",
    );
    let (server, _plugins) = server_with(vec![bot]).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bot = bot_id(&alice, "echo-bot").await;
    let room = alice.group("bots", &[bob.id, bot]).await;
    let mut bob_ws = bob.ws(&server).await;

    let (status, first) = alice.send_http(room, "k1", "Ship it!").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let message = bob_ws.recv_type("event").await;
    assert_eq!(message["body"], "Ship it!");
    let reaction = bob_ws.recv_type("event").await;
    assert_eq!(
        (
            reaction["kind"].as_str(),
            reaction["sender_id"].as_i64(),
            reaction["target"].as_i64(),
            reaction["body"].as_str()
        ),
        (
            Some("reaction"),
            Some(bot),
            first["id"].as_i64(),
            Some("🚀")
        ),
        "{reaction}"
    );

    // The bad setting: the plugin's `react` call fails, so the next thing bob sees after
    // that message is the next message (the sentinel), then the bot's reaction to it.
    alice.send_http(room, "k2", "a bad idea").await;
    let (_, sentinel) = alice.send_http(room, "k3", "ship again").await;
    let mut seen = Vec::new();
    loop {
        let event = bob_ws.recv_type("event").await;
        let done = event["kind"] == "reaction";
        seen.push((
            event["kind"].as_str().unwrap().to_string(),
            event["target"].as_i64(),
        ));
        if done {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            ("message".to_string(), None),
            ("message".to_string(), None),
            ("reaction".to_string(), sentinel["id"].as_i64()),
        ]
    );
    let (_, reactors) = alice
        .get(&format!(
            "/api/v1/rooms/{room}/messages/{}/reactions",
            first["id"]
        ))
        .await;
    assert_eq!(
        reactors,
        serde_json::json!([{ "emoji": "🚀", "users": [bot] }])
    );
}

#[tokio::test]
async fn bot_posts_pass_the_pre_send_chain() {
    let bot = echo_bot("echo-bot", "").top("commands = [\"echo\"]\n");
    let guard = Spec::new("keyword-guard", "keyword-guard")
        .caps(&["config"])
        .settings("block = [\"forbidden\"]\n");
    let (server, _plugins) = server_with(vec![bot, guard]).await;
    let alice = server.user("alice").await;
    let bot = bot_id(&alice, "echo-bot").await;
    let room = alice.group("filtered", &[bot]).await;

    // The command is accepted, but what the bot would say is refused by the filter.
    let (status, ack) = alice.send_http(room, "c1", "/echo a forbidden word").await;
    assert_eq!(
        (status, ack["command"].as_str()),
        (StatusCode::CREATED, Some("echo"))
    );
    let admin = server.admin().await;
    let reject = 'found: {
        for _ in 0..400 {
            let (_, audit) = admin.get("/api/v1/admin/audit").await;
            if let Some(r) = audit
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["action"] == "plugin.reject")
            {
                break 'found r.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the bot's post was never refused");
    };
    assert_eq!(reject["actor"], "plugin:keyword-guard");
    assert_eq!(reject["detail"]["sender"], bot, "{reject}");

    // A clean one goes through; only it is stored.
    let mut ws = alice.ws(&server).await;
    let (status, _) = alice.send_http(room, "c2", "/echo all fine").await;
    assert_eq!(status, StatusCode::CREATED);
    let event = ws.recv_type("event").await;
    assert_eq!(event["body"], "all fine");
    assert_eq!(
        bodies(&alice.history(room, "").await),
        vec![(bot, "all fine".to_string())]
    );
}

#[tokio::test]
async fn a_bot_never_triggers_itself() {
    // The answer contains its own keyword: seeing its own post would make it answer again.
    let bot = echo_bot("parrot", "\"answer.again\" = \"again and again\"\n")
        .bot("max_depth = 5\n")
        .priority(1);
    // The probe observes every delivered event after the bot (same queue, later in the
    // chain): once it has seen the marker, the bot has had its chance at its own post.
    let probe = Spec::new("probe", "fixture-probe")
        .caps(&["kv"])
        .hooks(&["message-delivered"])
        .priority(2);
    let (server, _plugins) = server_with(vec![bot, probe]).await;
    let alice = server.user("alice").await;
    let bot = bot_id(&alice, "parrot").await;
    let room = alice.group("parrot", &[bot]).await;
    let mut ws = alice.ws(&server).await;
    alice.send_http(room, "m1", "say it again").await;
    ws.recv_type("event").await;
    let answer = ws.recv_type("event").await;
    assert_eq!(answer["body"], "again and again");
    alice.send_http(room, "m2", "marker").await;
    let delivered = "switchboard_plugin_calls_total{plugin=\"probe\",hook=\"message-delivered\"}";
    wait_metric(&server, delivered, 3).await;
    let queued = "switchboard_plugin_bot_posts_total{plugin=\"parrot\",outcome=\"queued\"}";
    assert_eq!(
        metric(&server, queued).await,
        1,
        "one answer, to alice only"
    );
    assert_eq!(
        bodies(&alice.history(room, "").await),
        vec![
            (alice.id, "say it again".to_string()),
            (bot, "again and again".to_string()),
            (alice.id, "marker".to_string()),
        ]
    );
}

#[tokio::test]
async fn bot_ping_pong_stops_at_max_depth() {
    let a = echo_bot("bot-a", "\"answer.ping\" = \"pong\"\n").bot("max_depth = 3\n");
    let b = echo_bot("bot-b", "\"answer.pong\" = \"ping\"\n").bot("max_depth = 3\n");
    let (server, _plugins) = server_with(vec![a, b]).await;
    let alice = server.user("alice").await;
    let a = bot_id(&alice, "bot-a").await;
    let b = bot_id(&alice, "bot-b").await;
    let room = alice.group("pingpong", &[a, b]).await;
    alice.send_http(room, "m1", "ping").await;
    // ping (person, depth 0) → pong (a, 1) → ping (b, 2) → pong (a, 3) → b's answer would
    // be depth 4: dropped.
    let too_deep = "switchboard_plugin_bot_posts_total{plugin=\"bot-b\",outcome=\"too_deep\"}";
    wait_metric(&server, too_deep, 1).await;
    assert_eq!(
        bodies(&alice.history(room, "").await),
        vec![
            (alice.id, "ping".to_string()),
            (a, "pong".to_string()),
            (b, "ping".to_string()),
            (a, "pong".to_string()),
        ]
    );
    let too_deep_a = "switchboard_plugin_bot_posts_total{plugin=\"bot-a\",outcome=\"too_deep\"}";
    assert_eq!(metric(&server, too_deep_a).await, 0);
}

/// Loading fails with a clear error: the plugin layer refuses to start half-configured.
async fn load_error(specs: Vec<Spec>) -> String {
    let plugins = write_plugins(&specs);
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", data.path().join("db.sqlite").display());
    let store = switchboard::store::open(&url, &switchboard::store::StoreOptions::default())
        .await
        .unwrap();
    let config = switchboard::config::PluginsConfig {
        dir: Some(plugins.path().to_path_buf()),
        ..Default::default()
    };
    let mut registry = prometheus_client::registry::Registry::default();
    match switchboard::plugins::PluginHost::load(&config, &cache_dir(), store, &mut registry, None)
        .await
    {
        Ok(_) => panic!("loading should fail"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn conflicting_or_ungranted_commands_are_load_errors() {
    let one = echo_bot("one", "").top("commands = [\"echo\"]\n");
    let two = echo_bot("two", "").top("commands = [\"echo\", \"other\"]\n");
    let err = load_error(vec![one, two]).await;
    assert!(
        err.contains("/echo is already registered by plugin"),
        "{err}"
    );

    let no_bot = Spec::new("nobot", "echo-bot")
        .caps(&["config"])
        .top("commands = [\"echo\"]\n");
    let err = load_error(vec![no_bot]).await;
    assert!(err.contains("grant the \"bot\" capability"), "{err}");

    // A bot never takes over a person's account.
    let bot = echo_bot("taken", "");
    let plugins = write_plugins(&[bot]);
    let path = plugins.path().to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let mut config = switchboard::config::Config::default();
    config.data_dir = dir.path().to_path_buf();
    config.plugins.dir = Some(path);
    let store = switchboard::open_store(&config).await.unwrap();
    switchboard::accounts::create(
        store.as_ref(),
        &config.auth,
        switchboard::accounts::NewAccount {
            name: "taken".into(),
            password: crate::support::PASSWORD.into(),
            display_name: None,
            admin: false,
        },
        switchboard::audit::Actor::System,
    )
    .await
    .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let err = match switchboard::plugins::PluginHost::load(
        &config.plugins,
        &cache_dir(),
        store,
        &mut registry,
        None,
    )
    .await
    {
        Ok(_) => panic!("a person's name must not become a bot"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("belongs to a person's account"), "{err}");
}

/// What the probe's `rooms` lookup of `room` reported, through a message in `via`.
async fn probe_rooms(client: &Client, via: i64, id: &str, room: i64) -> String {
    let (status, ack) = client
        .send_http(via, id, &format!("probe-rooms {room}"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    let history = client.history(via, "").await;
    let event = history
        .iter()
        .find(|e| e["client_msg_id"] == id)
        .unwrap_or_else(|| panic!("message {id} stored"));
    event["metadata"]["probe.rooms"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn rooms_lookups_are_limited_to_the_bots_rooms_unless_all() {
    let scoped = Spec::new("scoped", "fixture-probe")
        .caps(&["bot", "rooms"])
        .hooks(&["message-pre-send"]);
    let (server, _plugins) = server_with(vec![scoped]).await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let bot = bot_id(&alice, "scoped").await;
    let with_bot = alice.group("with-bot", &[bob.id, bot]).await;
    let without = alice.group("without-bot", &[bob.id]).await;
    assert_eq!(
        probe_rooms(&alice, with_bot, "r1", with_bot).await,
        "name:with-bot count:3 members:scoped,alice,bob"
    );
    for (id, room) in [("r2", without), ("r3", 999_999)] {
        let got = probe_rooms(&alice, with_bot, id, room).await;
        assert!(
            got.starts_with("denied:") && got.contains("outside this plugin's rooms scope"),
            "room {room}: {got}"
        );
    }
    drop(server);

    // `scope = "all"`: every room, no bot needed. Without the capability: not granted.
    // (Members come in user id order; the bot was created at start, before alice.)
    let all = Spec::new("all", "fixture-probe")
        .caps(&["rooms"])
        .hooks(&["message-pre-send"])
        .tables("[rooms]\nscope = \"all\"\n");
    let (server, _plugins) = server_with(vec![all]).await;
    let alice = server.user("alice").await;
    let room = alice.group("anywhere", &[]).await;
    assert_eq!(
        probe_rooms(&alice, room, "a1", room).await,
        "name:anywhere count:1 members:alice"
    );
    drop(server);
    let none = Spec::new("none", "fixture-probe")
        .caps(&["config"])
        .hooks(&["message-pre-send"]);
    let (server, _plugins) = server_with(vec![none]).await;
    let alice = server.user("alice").await;
    let room = alice.group("anywhere", &[]).await;
    assert_eq!(probe_rooms(&alice, room, "n1", room).await, "not-granted");
}

#[tokio::test]
async fn a_bot_posts_only_where_it_is_a_member() {
    let probe = Spec::new("prober", "fixture-probe")
        .caps(&["bot"])
        .hooks(&["message-pre-send"]);
    let (server, _plugins) = server_with(vec![probe]).await;
    let alice = server.user("alice").await;
    let bot = bot_id(&alice, "prober").await;
    let outside = alice.group("no-bot", &[]).await;
    let inside = alice.group("with-bot", &[bot]).await;

    // Not a member: the import says so at once, and nothing is posted.
    let (status, _) = alice.send_http(outside, "o1", "probe-bot-reply").await;
    assert_eq!(status, StatusCode::CREATED);
    let history = alice.history(outside, "").await;
    assert_eq!(
        history[0]["metadata"]["probe.bot"],
        format!("denied:the bot is not a member of room {outside}")
    );

    // A member: queued, then posted as the bot after the hook returned.
    let mut ws = alice.ws(&server).await;
    let (status, _) = alice.send_http(inside, "i1", "probe-bot-reply").await;
    assert_eq!(status, StatusCode::CREATED);
    let first = ws.recv_type("event").await;
    assert_eq!(first["metadata"]["probe.bot"], "ok", "{first}");
    let reply = ws.recv_type("event").await;
    assert_eq!(
        (reply["sender_id"].as_i64(), reply["body"].as_str()),
        (Some(bot), Some("probe says hi"))
    );
    assert_eq!(bodies(&alice.history(outside, "").await).len(), 1);
}

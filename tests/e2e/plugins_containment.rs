//! Plugin containment through the real server: a hostile plugin (`fixture-hostile`) that
//! waits, floods, hoards or lies is cut off at its own limits, and everyone else — other
//! rooms, other plugins, other observers — keeps being served.
//!
//! The latency checks compare, in one run and interleaved round by round (so load from
//! other tests hits both alike), a victim's send→ack times in another room while attackers
//! send harmless `hostile:` messages (baseline) and while they send the attack. The victim's
//! p99 under attack must stay within 2× the baseline's (plus a 15 ms allowance for a 2-core
//! machine's scheduling noise; an uncontained attack costs hundreds of milliseconds or
//! never answers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use switchboard::config::{Config, Secret};

use crate::cluster::PgDb;
use crate::plugins_runtime::harness::{Spec, server_tweaked, write_plugins};
use crate::support::{Client, TestServer, Ws};

/// The wall-clock budget the hostile plugin runs under in these tests.
const WALL_MS: u64 = 300;

fn hostile(name: &str) -> Spec {
    Spec::new(name, "fixture-hostile")
        .caps(&["log", "config", "kv"])
        .limits(&format!(
            "timeout_ms = 50\nwall_timeout_ms = {WALL_MS}\nobserver_timeout_ms = {WALL_MS}\n\
             kv_max_bytes = 262144\nlog_lines_per_second = 20\nlog_bytes_per_second = 16384\n"
        ))
}

/// An innocent fail-closed plugin in everyone's path, ahead of the hostile one.
fn innocent() -> Spec {
    Spec::new("guard", "keyword-guard")
        .caps(&["config"])
        .priority(-10)
        .settings("\"block.forbidden\" = \"no\"\n")
}

/// The configuration every server here runs with (and keeps across a restart).
fn containment_config(c: &mut Config) {
    c.limits.messages_per_second = 10_000;
    c.limits.message_burst = 10_000;
    c.plugins.breaker_cooldown_secs = 1;
    c.plugins.observer_queue = 8;
}

async fn server(specs: Vec<Spec>) -> (TestServer, tempfile::TempDir) {
    server_tweaked(specs, containment_config).await
}

/// Where a server keeps its data, for the tests whose plugins' state or output is stored.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A server on `backend`; the PostgreSQL database (dropped with it) and a configuration
/// for restarting the server on the same data are handed back too.
async fn server_on(
    backend: Backend,
    specs: Vec<Spec>,
) -> (
    TestServer,
    tempfile::TempDir,
    Option<PgDb>,
    impl Fn(&mut Config) + Clone,
) {
    let db = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(PgDb::create().await),
    };
    let url = db.as_ref().map(|db| db.url.clone());
    let plugins = write_plugins(&specs);
    let dir = plugins.path().to_path_buf();
    let config = move |c: &mut Config| {
        containment_config(c);
        c.plugins.dir = Some(dir.clone());
        if let Some(url) = &url {
            c.database_url = Some(Secret(url.clone()));
        }
    };
    let server = TestServer::start_with(config.clone()).await;
    (server, plugins, db, config)
}

/// Victim and attackers in separate rooms.
struct Scene {
    server: TestServer,
    _plugins: tempfile::TempDir,
    victim: Client,
    victim_room: i64,
    attackers: Vec<(Client, i64)>,
}

async fn scene(specs: Vec<Spec>, attackers: usize) -> Scene {
    let (server, plugins) = server(specs).await;
    let victim = server.user("victim").await;
    let friend = server.user("friend").await;
    let victim_room = victim.group("quiet", &[friend.id]).await;
    let mut list = Vec::new();
    for i in 0..attackers {
        let attacker = server.user(&format!("attacker{i}")).await;
        let room = attacker.group(&format!("noisy{i}"), &[]).await;
        list.push((attacker, room));
    }
    Scene {
        server,
        _plugins: plugins,
        victim,
        victim_room,
        attackers: list,
    }
}

fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let idx = (samples.len() * 99).div_ceil(100).saturating_sub(1);
    samples[idx]
}

/// The victim's ack latencies for `n` messages sent one after another.
async fn victim_round(ws: &mut Ws, room: i64, tag: &str, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let ack = ws
            .send_msg(room, &format!("{tag}-{i}"), "hello there")
            .await;
        samples.push(started.elapsed());
        assert_eq!(ack["type"], "ack", "the victim is always served: {ack}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    samples
}

/// Attackers send `body` over HTTP (each several requests at once) until `stop`.
fn attack(scene: &Scene, body: &str, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<usize>> {
    let mut tasks = Vec::new();
    for (attacker, room) in &scene.attackers {
        for lane in 0..2 {
            let attacker = attacker.clone();
            let room = *room;
            let body = body.to_string();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("a{lane}-{sent}-{}", rand_id());
                    let (status, answer) = attacker.send_http(room, &id, &body).await;
                    assert!(
                        status == StatusCode::OK
                            || status == StatusCode::CREATED
                            || status == StatusCode::FORBIDDEN,
                        "{status} {answer}"
                    );
                    sent += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                sent
            }));
        }
    }
    tasks
}

fn rand_id() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Interleaved rounds of harmless and hostile traffic; returns (baseline p99, attack p99).
async fn compare(scene: &Scene, attack_body: &str, rounds: usize) -> (Duration, Duration) {
    let mut ws = scene.victim.ws(&scene.server).await;
    // Warm up: instances, caches, the victim's connection.
    victim_round(&mut ws, scene.victim_room, "warm", 10).await;
    let mut base = Vec::new();
    let mut under_attack = Vec::new();
    for round in 0..rounds {
        for (body, samples) in [
            ("hostile:noop", &mut base),
            (attack_body, &mut under_attack),
        ] {
            let stop = Arc::new(AtomicBool::new(false));
            let tasks = attack(scene, body, stop.clone());
            // Let the attack get going before measuring.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let tag = format!("r{round}-{}", samples.len());
            samples.extend(victim_round(&mut ws, scene.victim_room, &tag, 40).await);
            stop.store(true, Ordering::Relaxed);
            for task in tasks {
                // Every attacker request is answered: none is stuck past its budget.
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .expect("attacker requests are answered")
                    .unwrap();
            }
        }
    }
    (p99(&mut base), p99(&mut under_attack))
}

fn assert_contained(what: &str, (base, attacked): (Duration, Duration)) {
    eprintln!("containment {what}: victim p99 {base:?} baseline, {attacked:?} under attack");
    // What is proven is that the victim never waits for an attacker's budget (a victim
    // call held up by a stuck call would take `WALL_MS` or more). CPU the attack spends
    // legitimately, and other tests sharing a 2-core CI machine, slow the victim too;
    // that is not what this test measures, so the margin sits well below `WALL_MS`.
    assert!(
        attacked <= base * 2 + Duration::from_millis(WALL_MS / 3),
        "{what}: victim p99 went from {base:?} to {attacked:?}"
    );
}

async fn plugin_view(server: &TestServer, name: &str) -> Value {
    let (status, view) = server
        .admin()
        .await
        .get(&format!("/api/v1/admin/plugins/{name}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

async fn failures_of_kind(server: &TestServer, plugin: &str, kind: &str) -> u64 {
    let (status, text) = {
        let admin = server.admin().await;
        let response = reqwest::Client::new()
            .get(format!("{}/metrics", server.base))
            .bearer_auth(&admin.token)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK);
    text.lines()
        .filter(|l| {
            l.starts_with("switchboard_plugin_failures_total{")
                && l.contains(&format!("plugin=\"{plugin}\""))
                && l.contains(&format!("kind=\"{kind}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The innocent plugin was never blamed: no failure, no open circuit.
async fn assert_innocent_untouched(server: &TestServer) {
    let view = plugin_view(server, "guard").await;
    let status = &view["status"];
    assert_eq!(status["counters"]["failures"], 0, "{view}");
    assert_eq!(status["circuit_open"], false, "{view}");
    assert_eq!(status["open_circuits"], json!([]), "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_plugins_are_cut_at_their_wall_budget_and_other_rooms_keep_their_latency() {
    let scene = scene(vec![innocent(), hostile("hostile")], 2).await;
    for (what, body) in [
        (
            "wait on a pollable that never fires",
            "hostile:wait-forever",
        ),
        ("sleep past the budget", "hostile:sleep 5000"),
        ("64 MiB of random bytes", "hostile:random 67108864"),
        ("busy loop", "hostile:spin"),
        ("trap", "hostile:trap"),
        ("log flood", "hostile:log 1000 4096"),
        ("kv flood", "hostile:kv-fill 1000 65536"),
    ] {
        assert_contained(what, compare(&scene, body, 3).await);
    }
    // The waits were cut at the budget and charged to the hostile plugin only.
    assert!(failures_of_kind(&scene.server, "hostile", "wall_timeout").await > 0);
    assert!(failures_of_kind(&scene.server, "hostile", "timeout").await > 0);
    assert!(failures_of_kind(&scene.server, "hostile", "trap").await > 0);
    assert_innocent_untouched(&scene.server).await;
    // The attackers' own circuits opened, never the plugin's: it still serves the victim.
    let view = plugin_view(&scene.server, "hostile").await;
    assert_eq!(view["status"]["circuit_open"], false, "{view}");
    assert!(
        view["status"]["counters"]["breaker_trips"]
            .as_u64()
            .unwrap()
            > 0
    );
    // No engine-wide pool slot is left behind: everything still instantiates.
    let mut ws = scene.victim.ws(&scene.server).await;
    let ack = ws.send_msg(scene.victim_room, "after", "still here").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    drop(ws);
    // Shutdown completes even with a call stuck in a wait when it starts.
    let (attacker, room) = &scene.attackers[0];
    let stuck = {
        let attacker = attacker.clone();
        let room = *room;
        tokio::spawn(async move {
            attacker
                .send_http(room, "stuck", "hostile:wait-forever")
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    scene.server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    let _ = stuck.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_is_answered_with_the_policy_at_the_budget_over_http_and_websocket() {
    let (server, _plugins) = server(vec![hostile("hostile")]).await;
    let alice = server.user("alice").await;
    let room = alice.group("r", &[]).await;

    let started = Instant::now();
    let (status, err) = alice.send_http(room, "w1", "hostile:wait-forever").await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["rejection"]["plugin"], "hostile");
    assert_eq!(err["rejection"]["code"], "plugin_failed");
    assert!(
        err["message"].as_str().unwrap().contains("wall_timeout"),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(WALL_MS) && took < Duration::from_millis(WALL_MS + 2000),
        "answered after {took:?}"
    );

    // The WebSocket keeps answering after such a frame.
    let mut ws = alice.ws(&server).await;
    let err = ws.send_msg(room, "w2", "hostile:wait-forever").await;
    assert_eq!(err["type"], "error", "{err}");
    let ack = ws.send_msg(room, "w3", "fine").await;
    assert_eq!(ack["type"], "ack", "{ack}");

    // Nothing of the refused messages was stored.
    let history = alice.history(room, "").await;
    let bodies: Vec<_> = history.iter().map(|e| e["body"].clone()).collect();
    assert_eq!(bodies, vec![json!("fine")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_connect_hook_that_waits_forever_ends_at_its_budget() {
    let (server, _plugins) = server(vec![
        hostile("hostile")
            .hooks(&["on-connect"])
            .settings("\"on-connect\" = \"wait-forever\"\n"),
    ])
    .await;
    let alice = server.user("alice").await;
    let started = Instant::now();
    // Fail-closed: the session is refused once the budget is spent, not left hanging.
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(server.ws_url(&alice.token)),
    )
    .await
    .expect("the handshake ends");
    assert!(started.elapsed() < Duration::from_secs(3));
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        other => panic!("expected a refused handshake, got {other:?}"),
    }
    assert!(failures_of_kind(&server, "hostile", "wall_timeout").await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_host_imports_count_against_the_wall_budget() {
    // A slow but allow-listed HTTP server: every answer takes 2 s.
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            "late"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let spec = Spec::new("hostile", "fixture-hostile")
        .caps(&["http"])
        .hooks(&["message-pre-send"])
        .limits("wall_timeout_ms = 500\n")
        .tables(&format!(
            "[http]\nallow = [\"http://127.0.0.1:{}\"]\nallow_private = true\ntimeout_ms = 5000\n",
            addr.port()
        ));
    let (server, _plugins) = server(vec![spec]).await;
    let alice = server.user("alice").await;
    let room = alice.group("r", &[]).await;
    let started = Instant::now();
    let (status, err) = alice
        .send_http(
            room,
            "h1",
            &format!("hostile:http 10 http://127.0.0.1:{}/slow", addr.port()),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert!(err["message"].as_str().unwrap().contains("wall_timeout"));
    // Ten 2-second requests would have held the message 20 s.
    assert!(took < Duration::from_secs(2), "held {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_observer_drops_only_its_own_events() {
    let stuck = hostile("stuck")
        .hooks(&["message-delivered"])
        .policy("fail-open")
        .settings("observer = \"wait-forever\"\n");
    let healthy = hostile("healthy")
        .hooks(&["message-delivered", "message-pre-send"])
        .policy("fail-open");
    let (server, _plugins) = server(vec![stuck, healthy]).await;
    let alice = server.user("alice").await;
    let room = alice.group("r", &[]).await;
    let mut ws = alice.ws(&server).await;
    const SENT: usize = 40;
    for i in 0..SENT {
        let ack = ws.send_msg(room, &format!("m{i}"), "observe me").await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    // The healthy observer sees every event (its count in kv, read through a message).
    let mut seen = 0;
    for attempt in 0..100 {
        let ack = ws
            .send_msg(room, &format!("read{attempt}"), "hostile:kv-get delivered")
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let history = alice.history(room, "?limit=1").await;
        seen = history[0]["metadata"]["hostile.kv-get"]
            .as_str()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if seen >= SENT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen >= SENT, "the healthy observer saw {seen} of {SENT}");
    let stuck_view = plugin_view(&server, "stuck").await;
    let healthy_view = plugin_view(&server, "healthy").await;
    assert!(
        stuck_view["status"]["counters"]["observer_dropped"]
            .as_u64()
            .unwrap()
            > 0,
        "{stuck_view}"
    );
    assert_eq!(
        healthy_view["status"]["counters"]["observer_dropped"], 0,
        "{healthy_view}"
    );
    // The stuck call itself ends at its budget (and the next one, and so on).
    let mut cut = 0;
    for _ in 0..100 {
        cut = failures_of_kind(&server, "stuck", "wall_timeout").await;
        if cut > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cut > 0, "the stuck observer's call was never cut off");
    drop(ws);
    let started = Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_volume_and_kv_bytes_are_bounded_and_failed_calls_leave_no_writes() {
    log_and_kv_are_bounded(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_volume_and_kv_bytes_are_bounded_on_postgres() {
    log_and_kv_are_bounded(Backend::Postgres).await;
}

fn meta(event: &Value, key: &str) -> Option<String> {
    event["metadata"][key].as_str().map(str::to_string)
}

/// Send `body` as `client` in `room`; the stored event (with the plugin's metadata).
async fn stored(client: &Client, room: i64, id: &str, body: &str) -> Value {
    let (status, ack) = client.send_http(room, id, body).await;
    assert!(status.is_success(), "{status} {ack}");
    let history = client.history(room, "?limit=1").await;
    history[0].clone()
}

async fn log_and_kv_are_bounded(backend: Backend) {
    let (server, _plugins, _db, config) =
        server_on(backend, vec![hostile("hostile").policy("fail-open")]).await;
    let alice = server.user("alice").await;
    let room = alice.group("r", &[]).await;
    let send = |id: &'static str, body: String| {
        let alice = alice.clone();
        async move { stored(&alice, room, id, &body).await }
    };

    // Log: 1000 lines of 4 KiB in one call; 20 lines / 16 KiB per second get through.
    let event = send("log", "hostile:log 1000 4096".into()).await;
    let written: usize = meta(&event, "hostile.log").unwrap().parse().unwrap();
    assert!(
        written <= 4,
        "{written} lines of 4 KiB passed a 16 KiB/s budget"
    );
    let view = plugin_view(&server, "hostile").await;
    assert!(view["status"]["counters"]["log_dropped"].as_u64().unwrap() >= 996);

    // kv: 64 KiB values stop at the 256 KiB byte quota, not at the 10,000-key quota.
    let event = send("fill", "hostile:kv-fill 10000 65536".into()).await;
    let answer = meta(&event, "hostile.kv").unwrap();
    assert!(
        answer.starts_with("err:3:") && answer.contains("QuotaExceeded"),
        "{answer}"
    );

    // Writes of a call that times out or traps are not kept.
    for (id, body) in [
        ("spin", "hostile:kv-set-then-spin left-by-spin"),
        ("trap", "hostile:kv-set-then-trap left-by-trap"),
    ] {
        let _ = send(id, body.into()).await;
    }
    for (id, key) in [("get1", "left-by-spin"), ("get2", "left-by-trap")] {
        let event = send(id, format!("hostile:kv-get {key}")).await;
        assert_eq!(meta(&event, "hostile.kv-get").as_deref(), Some("none"));
    }
    // ...while a successful call's writes are (a small value replacing a 64 KiB one fits
    // the full namespace, since it shrinks it).
    let event = send("fill1", "hostile:kv-fill 1 5".into()).await;
    assert_eq!(meta(&event, "hostile.kv").as_deref(), Some("ok:1"));
    let event = send("get3", "hostile:kv-get fill/0".into()).await;
    assert_eq!(meta(&event, "hostile.kv-get").map(|v| v.len()), Some(5));

    // What was committed reached the store, and what was not never did: both survive a
    // restart as they were.
    let server = server.restart(config).await;
    let alice = server.login("alice", crate::support::PASSWORD).await;
    for (id, key, expected) in [
        ("after1", "fill/0", Some(5)),
        ("after2", "fill/2", Some(65536)),
        ("after3", "left-by-spin", None),
    ] {
        let event = stored(&alice, room, id, &format!("hostile:kv-get {key}")).await;
        let value = meta(&event, "hostile.kv-get");
        match expected {
            Some(len) if len <= 1024 => assert_eq!(value.map(|v| v.len()), Some(len), "{key}"),
            // Too long to come back as metadata (the plugin's answer is refused, fail-open
            // lets the message through without it), but not absent either.
            Some(_) => assert_ne!(value.as_deref(), Some("none"), "{key}"),
            None => assert_eq!(value.as_deref(), Some("none"), "{key}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_cannot_take_a_plugin_offline_for_everyone() {
    let (server, _plugins) = server(vec![hostile("hostile").hooks(&["message-pre-send"])]).await;
    let mallory = server.user("mallory").await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let shared = alice.group("shared", &[mallory.id, bob.id]).await;
    let other = bob.group("other", &[alice.id]).await;
    // Mallory makes the fail-closed plugin trap again and again, in a shared room.
    for i in 0..30 {
        let (status, err) = mallory
            .send_http(shared, &format!("t{i}"), "hostile:trap")
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    }
    // Her own circuit is open; the plugin's and the room's are not.
    let view = plugin_view(&server, "hostile").await;
    assert_eq!(view["status"]["circuit_open"], false, "{view}");
    let open: Vec<String> = view["status"]["open_circuits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["scope"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(open, vec![format!("sender:{}", mallory.id)]);
    // Everyone else is served, in the same room and elsewhere.
    for (i, (client, room)) in [(&alice, shared), (&bob, shared), (&bob, other)]
        .into_iter()
        .enumerate()
    {
        let (status, ack) = client.send_http(room, &format!("ok{i}"), "hello").await;
        assert!(status.is_success(), "{status} {ack}");
    }
    // Mallory herself is refused without the plugin being called.
    let calls_before = view["status"]["counters"]["calls"].as_u64().unwrap();
    let (status, err) = mallory.send_http(shared, "after", "hello").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(err["rejection"]["code"], "plugin_unavailable", "{err}");
    let view = plugin_view(&server, "hostile").await;
    // Three of the calls above (alice, bob twice) reached the plugin; mallory's did not.
    assert_eq!(
        view["status"]["counters"]["calls"].as_u64().unwrap(),
        calls_before + 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_output_obeys_the_rules_of_user_input_and_is_charged_to_the_plugin() {
    output_obeys_the_rules(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_output_obeys_the_rules_on_postgres() {
    output_obeys_the_rules(Backend::Postgres).await;
}

async fn output_obeys_the_rules(backend: Backend) {
    let dlp = Spec::new("dlp", "dlp")
        .caps(&["log", "config", "kv"])
        .priority(20)
        .settings("\"action.email\" = \"flag\"\n");
    let (server, _plugins, _db, _) = server_on(
        backend,
        vec![
            hostile("hostile").priority(10).hooks(&["message-pre-send"]),
            dlp,
        ],
    )
    .await;
    let alice = server.user("alice").await;
    let room = alice.group("r", &[]).await;
    let long_key = format!("hostile:meta-key {} v", "k".repeat(65));
    let cases = [
        ("empty", "hostile:body "),
        ("blank", "hostile:body-ws"),
        ("nul", "hostile:body-nul"),
        ("many", "hostile:meta 17 1"),
        ("big", "hostile:meta 1 1025"),
        ("longkey", long_key.as_str()),
    ];
    for (i, (id, body)) in cases.into_iter().enumerate() {
        // A sender and room each: three failures of one sender would (rightly) open that
        // sender's circuit, and the point here is each rule.
        let user = server.user(&format!("writer{i}")).await;
        let own = user.group(&format!("room{i}"), &[]).await;
        let (status, err) = user.send_http(own, id, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{id}: {err}");
        assert_eq!(err["rejection"]["plugin"], "hostile", "{id}: {err}");
        assert_eq!(err["rejection"]["code"], "plugin_failed", "{id}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains("invalid_output"),
            "{id}: {err}"
        );
    }
    assert_eq!(
        failures_of_kind(&server, "hostile", "invalid_output").await,
        6
    );
    // Within the user limits, a plugin's metadata is stored.
    let (status, ack) = alice.send_http(room, "ok", "hostile:meta 16 1024").await;
    assert!(status.is_success(), "{ack}");

    // A plugin that writes another plugin's mark is recorded under its own name.
    let (status, ack) = alice
        .send_http(room, "forge", "hostile:meta-key dlp.flagged ssn")
        .await;
    assert!(status.is_success(), "{ack}");
    let (status, ack) = alice.send_http(room, "real", "mail ops@example.com").await;
    assert!(status.is_success(), "{ack}");
    let (_, audit) = server.admin().await.get("/api/v1/admin/audit").await;
    let refused = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "plugin.invalid_output" && r["actor"] == "plugin:hostile")
        .count();
    assert_eq!(refused, 6, "each refused output is on record: {audit}");
    let flags: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "plugin.flag")
        .map(|r| {
            (
                r["actor"].as_str().unwrap().to_string(),
                r["detail"]["detectors"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        flags.contains(&("plugin:hostile".into(), "ssn".into())),
        "{flags:?}"
    );
    assert!(
        flags.contains(&("plugin:dlp".into(), "email".into())),
        "{flags:?}"
    );
    assert!(
        !flags.contains(&("plugin:dlp".into(), "ssn".into())),
        "{flags:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_who_spends_the_plugins_time_waits_for_the_next_second() {
    let spec = Spec::new("hostile", "fixture-hostile")
        .caps(&["log"])
        .hooks(&["message-pre-send"])
        .limits("timeout_ms = 50\nsender_time_ms_per_second = 10\n");
    let (server, _plugins) = server(vec![spec]).await;
    let mallory = server.user("mallory").await;
    let alice = server.user("alice").await;
    let noisy = mallory.group("noisy", &[]).await;
    let quiet = alice.group("quiet", &[]).await;
    // Each of these messages makes the plugin work for milliseconds (a thousand 4 KiB log
    // lines, most of them dropped): a few of them use up mallory's 10 ms for this second.
    let mut refused = None;
    for i in 0..50 {
        let (status, answer) = mallory
            .send_http(noisy, &format!("heavy{i}"), "hostile:log 3000 4096")
            .await;
        if status == StatusCode::FORBIDDEN {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("mallory runs out of plugin time");
    assert!(
        refused["message"].as_str().unwrap().contains("overloaded"),
        "{refused}"
    );
    // Alice is not affected, and the refusal opened no circuit.
    let (status, ack) = alice.send_http(quiet, "hi", "hello").await;
    assert!(status.is_success(), "{ack}");
    let view = plugin_view(&server, "hostile").await;
    assert_eq!(view["status"]["open_circuits"], json!([]), "{view}");
    assert!(view["status"]["counters"]["overloaded"].as_u64().unwrap() >= 1);
    // The next second, mallory has a budget again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, ack) = mallory.send_http(noisy, "later", "hello").await;
    assert!(status.is_success(), "{ack}");
}

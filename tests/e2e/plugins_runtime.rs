//! The plugin runtime through its public API, with real compiled plugins: DLP policies,
//! chain order and modification passing, capability grants, containment of misbehaving
//! plugins under both failure policies, deadlines, the circuit breaker, and hook skipping.
//!
//! Run with `cargo test --test e2e plugins_runtime` (builds the wasm plugins on first use).

mod containment;
pub mod harness;
mod memory_store;

use std::time::{Duration, Instant};

use harness::{Spec, continued, load, load_with, msg, rejected, status};
use memory_store::{kv_keys_of, kv_value, memory_store};
use switchboard::config::PluginsConfig;
use switchboard::plugins::PluginHost;

use crate::wasm_build;
use switchboard::router::hooks::{HookKind, Hooks};
use switchboard::store::{Event, EventKind, Metadata, NewRoom, NewUser, RoomKind, User};

const CARD: &str = "4111 1111 1111 1111";

fn dlp(settings: &str) -> Spec {
    Spec::new("dlp", "dlp")
        .caps(&["log", "config", "kv"])
        .settings(settings)
}

fn user(name: &str) -> User {
    User {
        id: 3,
        name: name.into(),
        display_name: name.into(),
        is_admin: false,
        is_compliance: false,
        is_bot: false,
        active: true,
        created_at: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_blocks_cards_without_echoing_them() {
    let l = load(vec![dlp("")]).await;
    let (plugin, code, reason) = rejected(
        l.host
            .message_pre_send(msg(&format!("card {CARD} thanks")))
            .await,
    );
    assert_eq!((plugin.as_str(), code.as_str()), ("dlp", "dlp_blocked"));
    assert!(reason.contains("payment card"), "{reason}");
    assert!(
        !reason.contains("1111"),
        "the reason must not echo the value: {reason}"
    );

    let s = l.host.statuses();
    let dlp = status(&s, "dlp");
    eprintln!(
        "dlp: {} idle instance(s), linear memory {} bytes",
        dlp.idle_instances, dlp.instance_memory_bytes
    );
    assert!(dlp.idle_instances >= 1, "the instance is kept warm");

    // 16 digits that fail Luhn are not a card; nothing else in here is sensitive.
    let (body, _, modified) = continued(
        l.host
            .message_pre_send(msg("order 4111 1111 1111 1112 shipped"))
            .await,
    );
    assert_eq!(body, "order 4111 1111 1111 1112 shipped");
    assert!(!modified);
    l.host.shutdown().await;
    assert_eq!(
        kv_value(l.store.as_ref(), "dlp", "findings/card/block")
            .await
            .as_deref(),
        Some("1")
    );
    for key in kv_keys_of(l.store.as_ref(), "dlp").await {
        assert!(!key.contains("4111"), "kv must not hold the value: {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_redacts_and_flags_per_config() {
    let l = load(vec![dlp(
        "\"action.card\" = \"redact\"\n\"action.email\" = \"flag\"\n\"action.ssn\" = \"redact\"\n",
    )])
    .await;
    let input = format!("pay {CARD} or mail bob@example.com, ssn 078-05-1120");
    let (body, metadata, modified) = continued(l.host.message_pre_send(msg(&input)).await);
    assert_eq!(
        body,
        "pay **** **** **** 1111 or mail bob@example.com, ssn ***-**-1120"
    );
    assert!(modified);
    assert_eq!(
        metadata.get("dlp.redacted").map(String::as_str),
        Some("card,ssn")
    );
    assert_eq!(
        metadata.get("dlp.flagged").map(String::as_str),
        Some("email")
    );

    // Flag only: delivered unchanged, recorded in metadata and kv.
    let (body, metadata, _) = continued(
        l.host
            .message_pre_send(msg("write to ops@example.com"))
            .await,
    );
    assert_eq!(body, "write to ops@example.com");
    assert_eq!(
        metadata.get("dlp.flagged").map(String::as_str),
        Some("email")
    );
    l.host.shutdown().await;
    assert_eq!(
        kv_value(l.store.as_ref(), "dlp", "findings/email/flag")
            .await
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        kv_value(l.store.as_ref(), "dlp", "findings/card/redact")
            .await
            .as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_custom_patterns_and_misconfiguration_fail_closed() {
    let l = load(vec![dlp("\"pattern.falcon\" = \"(?i)project falcon\"\n")]).await;
    let (_, code, _) = rejected(l.host.message_pre_send(msg("news on Project Falcon")).await);
    assert_eq!(code, "dlp_blocked");
    l.host.shutdown().await;

    let l = load(vec![dlp("\"action.cards\" = \"off\"\n")]).await;
    let (_, code, _) = rejected(l.host.message_pre_send(msg("hello")).await);
    assert_eq!(
        code, "dlp_misconfigured",
        "a typo in the policy must not switch DLP off"
    );
    l.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_runs_in_priority_order_and_passes_modifications() {
    let guard = |priority| {
        Spec::new("keyword-guard", "keyword-guard")
            .caps(&["config"])
            .priority(priority)
            .settings(&format!(
                "\"rewrite.paycard\" = {CARD:?}\nblock = [\"forbidden\"]\n"
            ))
    };
    let redacting_dlp = |priority| dlp("\"action.card\" = \"redact\"\n").priority(priority);

    // keyword-guard first: its rewrite produces a card number that DLP then redacts.
    let l = load(vec![redacting_dlp(20), guard(10)]).await;
    let names: Vec<String> = l.host.statuses().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["keyword-guard", "dlp"]);
    let (body, metadata, modified) =
        continued(l.host.message_pre_send(msg("use paycard now")).await);
    assert_eq!(body, "use **** **** **** 1111 now");
    assert!(modified);
    assert_eq!(
        metadata.get("keyword-guard.rewrites").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        metadata.get("dlp.redacted").map(String::as_str),
        Some("card")
    );

    // The first reject ends the chain: DLP is not called.
    let before = status(&l.host.statuses(), "dlp").counters.calls;
    let (plugin, code, _) = rejected(l.host.message_pre_send(msg("this is forbidden")).await);
    assert_eq!(
        (plugin.as_str(), code.as_str()),
        ("keyword-guard", "keyword_blocked")
    );
    assert_eq!(status(&l.host.statuses(), "dlp").counters.calls, before);
    l.host.shutdown().await;

    // DLP first: it sees no card, and the rewrite after it is stored as written.
    let l = load(vec![redacting_dlp(10), guard(20)]).await;
    let (body, metadata, _) = continued(l.host.message_pre_send(msg("use paycard now")).await);
    assert_eq!(body, format!("use {CARD} now"));
    assert!(!metadata.contains_key("dlp.redacted"));
    l.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_capabilities_are_refused_with_a_clear_error() {
    let l = load(vec![
        Spec::new("probe", "fixture-probe").settings("greeting = \"hi\"\n"),
    ])
    .await;
    let (_, metadata, _) = continued(l.host.message_pre_send(msg("x")).await);
    for cap in ["log", "config", "kv"] {
        assert_eq!(
            metadata.get(&format!("probe.{cap}")).map(String::as_str),
            Some("not-granted"),
            "{cap}"
        );
    }
    assert!(!metadata.contains_key("probe.greeting"));
    l.host.shutdown().await;

    let l = load(vec![
        Spec::new("probe", "fixture-probe")
            .caps(&["log", "config", "kv"])
            .settings("greeting = \"hi\"\n"),
    ])
    .await;
    let (_, metadata, _) = continued(l.host.message_pre_send(msg("x")).await);
    for cap in ["log", "config", "kv"] {
        assert_eq!(
            metadata.get(&format!("probe.{cap}")).map(String::as_str),
            Some("ok"),
            "{cap}"
        );
    }
    assert_eq!(
        metadata.get("probe.greeting").map(String::as_str),
        Some("hi")
    );
    l.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_is_loaded_from_the_store_and_written_behind() {
    let store = memory_store().await;
    store.kv_put("probe", "probe/calls", b"41").await.unwrap();
    let l = load_with(
        vec![Spec::new("probe", "fixture-probe").caps(&["kv"])],
        PluginsConfig::default(),
        store.clone(),
    )
    .await;
    let (_, metadata, _) = continued(l.host.message_pre_send(msg("x")).await);
    assert_eq!(metadata.get("probe.calls").map(String::as_str), Some("42"));
    // Written behind: visible in the store soon, and certainly after shutdown.
    l.host.shutdown().await;
    assert_eq!(
        kv_value(store.as_ref(), "probe", "probe/calls")
            .await
            .as_deref(),
        Some("42")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_delivered_is_observed_off_the_message_path() {
    let l = load(vec![Spec::new("probe", "fixture-probe").caps(&["kv"])]).await;
    assert!(l.host.implements(HookKind::MessageDelivered));
    // The observer reads the event's room from the store.
    let author = l
        .store
        .create_user(NewUser {
            name: "author".into(),
            display_name: "Author".into(),
            password_hash: None,
            is_admin: false,
            is_bot: false,
        })
        .await
        .unwrap();
    let room = l
        .store
        .create_room(
            NewRoom {
                kind: RoomKind::Group,
                name: Some("general".into()),
                topic: None,
                created_by: author.id,
            },
            &[],
        )
        .await
        .unwrap();
    let event = Event {
        id: 99,
        room_id: room.id,
        seq: 1,
        kind: EventKind::Message,
        sender_id: author.id,
        target: None,
        body: Some("hello".into()),
        metadata: Metadata::new(),
        client_msg_id: Some("c1".into()),
        created_at: 0,
        edited_at: None,
        deleted: false,
        thread_root: None,
        also_to_room: false,
        mentions: Vec::new(),
        mentions_room: false,
        thread: None,
        reactions: Vec::new(),
    };
    let started = Instant::now();
    l.host.message_delivered(&event, 0);
    l.host.message_delivered(&event, 0);
    assert!(
        started.elapsed() < Duration::from_millis(20),
        "message_delivered must not block"
    );
    l.host.shutdown().await;
    assert_eq!(
        kv_value(l.store.as_ref(), "probe", "probe/delivered")
            .await
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        kv_value(l.store.as_ref(), "probe", "probe/last-delivered")
            .await
            .as_deref(),
        Some("99")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plugins_fail_the_load_with_a_clear_error() {
    let load_dir = |manifest: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("p")).expect("mkdir");
        std::fs::write(dir.path().join("p/plugin.toml"), manifest).expect("write");
        dir
    };
    let try_load = |dir: &std::path::Path| {
        let config = PluginsConfig {
            dir: Some(dir.to_path_buf()),
            ..PluginsConfig::default()
        };
        let cache = harness::cache_dir();
        async move {
            let store = memory_store().await;
            let mut registry = prometheus_client::registry::Registry::default();
            PluginHost::load(&config, &cache, store, &mut registry, None)
                .await
                .map(|_| ())
        }
    };
    let not_wasm = load_dir("name = \"p\"\nversion = \"1\"\ncomponent = \"plugin.toml\"\n");
    let err = try_load(not_wasm.path())
        .await
        .expect_err("not a component");
    assert!(err.to_string().contains("plugin p"), "{err}");

    let typo = load_dir(&format!(
        "name = \"p\"\nversion = \"1\"\ncomponent = {:?}\ncapabilites = [\"kv\"]\n",
        wasm_build::plugin_wasm("dlp")
    ));
    let err = try_load(typo.path()).await.expect_err("unknown key");
    assert!(err.to_string().contains("capabilites"), "{err}");

    // Compiled components are cached on disk, keyed by content and engine. Load a valid
    // plugin here, so this holds whichever test happens to run first.
    let l = load(vec![dlp("")]).await;
    l.host.shutdown().await;
    let cached = std::fs::read_dir(harness::cache_dir().join("plugin-cache"))
        .expect("cache dir")
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "cwasm"));
    assert!(cached);
}

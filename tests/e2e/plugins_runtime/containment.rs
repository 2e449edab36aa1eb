//! Misbehaving plugins: each is contained, its failure policy decides the message, the
//! failure is counted by kind, and a runaway is stopped at its deadline.

use std::time::{Duration, Instant};

use switchboard::config::PluginsConfig;
use switchboard::router::hooks::{Decision, HookKind, Hooks};

use super::harness::{Spec, continued, load, load_with, metrics_text, msg, rejected, status};
use super::memory_store::memory_store;
use super::user;

/// Each fixture crate and the failure kind it must be counted as.
const FIXTURES: [(&str, &str); 5] = [
    ("fixture-trap", "trap"),
    ("fixture-infinite-loop", "timeout"),
    ("fixture-memory-hog", "memory"),
    ("fixture-stack-overflow", "stack_overflow"),
    ("fixture-huge-output", "output_too_large"),
];

fn fixture(krate: &'static str) -> Spec {
    // Only the runaway should meet its deadline: the others get a generous one, so that on
    // a loaded machine the memory hog reaches its memory limit before its time is up.
    let timeout_ms = if krate == "fixture-infinite-loop" {
        50
    } else {
        2000
    };
    Spec::new(krate, krate).limits(&format!(
        "timeout_ms = {timeout_ms}\nmemory_mib = 16\nmax_output_bytes = 65536\n"
    ))
}

fn rewriter() -> Spec {
    Spec::new("keyword-guard", "keyword-guard")
        .caps(&["config"])
        .priority(100)
        .settings("\"rewrite.hello\" = \"hi\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misbehaving_plugin_fails_closed_and_is_counted() {
    for (krate, kind) in FIXTURES {
        let l = load(vec![fixture(krate), rewriter()]).await;
        let (plugin, code, reason) = rejected(l.host.message_pre_send(msg("hello")).await);
        assert_eq!(
            (plugin.as_str(), code.as_str()),
            (krate, "plugin_failed"),
            "{krate}"
        );
        assert!(reason.contains(kind), "{krate}: {reason}");

        let statuses = l.host.statuses();
        let s = status(&statuses, krate);
        assert_eq!(s.counters.failures, 1, "{krate}");
        let metrics = metrics_text(&l.registry);
        let line = format!(
            "switchboard_plugin_failures_total{{plugin=\"{krate}\",hook=\"message-pre-send\",kind=\"{kind}\"}} 1"
        );
        assert!(
            metrics.contains(&line),
            "{krate}: missing {line} in\n{metrics}"
        );

        // A trapped instance is discarded and a fresh one serves the next message (an
        // oversized answer leaves a healthy instance, which is kept).
        let (body, _, _) = continued(l.host.message_pre_send(msg("ok")).await);
        assert_eq!(body, "ok", "{krate}");
        let created = status(&l.host.statuses(), krate).counters.instances_created;
        assert_eq!(
            created,
            if kind == "output_too_large" { 1 } else { 2 },
            "{krate}"
        );
        l.host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_plugins_are_skipped_when_fail_open() {
    let mut specs: Vec<Spec> = FIXTURES
        .iter()
        .map(|(krate, _)| fixture(krate).policy("fail-open"))
        .collect();
    specs.push(rewriter());
    let l = load(specs).await;
    // Every fixture fails; the message goes on and the rest of the chain still runs.
    let (body, metadata, modified) = continued(l.host.message_pre_send(msg("hello world")).await);
    assert_eq!(body, "hi world");
    assert!(modified);
    assert_eq!(
        metadata.get("keyword-guard.rewrites").map(String::as_str),
        Some("1")
    );
    let statuses = l.host.statuses();
    let metrics = metrics_text(&l.registry);
    for (krate, kind) in FIXTURES {
        assert_eq!(status(&statuses, krate).counters.failures, 1, "{krate}");
        assert!(
            metrics.contains(&format!(
                "plugin=\"{krate}\",hook=\"message-pre-send\",kind=\"{kind}\"}} 1"
            )),
            "{krate}"
        );
    }
    l.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_plugin_is_stopped_within_its_deadline() {
    for timeout_ms in [20u64, 50] {
        let spec = Spec::new("spin", "fixture-infinite-loop")
            .limits(&format!("timeout_ms = {timeout_ms}\n"));
        let l = load(vec![spec]).await;
        let started = Instant::now();
        let (_, code, _) = rejected(l.host.message_pre_send(msg("spin")).await);
        let elapsed = started.elapsed();
        assert_eq!(code, "plugin_failed");
        let deadline = Duration::from_millis(timeout_ms);
        eprintln!("runaway with a {timeout_ms} ms deadline stopped after {elapsed:?}");
        assert!(
            elapsed + Duration::from_millis(5) >= deadline,
            "stopped early: {elapsed:?}"
        );
        // The deadline plus scheduling noise on a busy 2-core machine.
        assert!(
            elapsed < deadline + Duration::from_millis(40),
            "stopped late: {elapsed:?}"
        );
        assert_eq!(status(&l.host.statuses(), "spin").counters.timeouts, 1);
        l.host.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_messages_are_served_while_a_plugin_runs_away() {
    let spec = Spec::new("spin", "fixture-infinite-loop")
        .policy("fail-open")
        .limits("timeout_ms = 200\n");
    let l = load(vec![spec]).await;
    let host = l.host.clone();
    let runaway = tokio::spawn(async move { host.message_pre_send(msg("spin")).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    for _ in 0..20 {
        continued(l.host.message_pre_send(msg("ok")).await);
    }
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    continued(runaway.await.expect("join"));
    l.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_breaker_trips_and_the_policy_still_decides() {
    let config = PluginsConfig {
        breaker_failures: 3,
        breaker_cooldown_secs: 0,
        ..PluginsConfig::default()
    };
    let specs = vec![
        Spec::new("closed", "fixture-trap"),
        Spec::new("open", "fixture-trap")
            .policy("fail-open")
            .priority(-1),
    ];
    let l = load_with(specs, config, memory_store().await).await;
    // Failures from three senders in three rooms: the plugin is broken for everyone, so the
    // whole plugin's circuit opens (one sender's failures would open only theirs).
    for i in 0..3 {
        let mut boom = msg("boom");
        boom.room_id = 100 + i;
        boom.sender_id = 200 + i;
        let (plugin, code, _) = rejected(l.host.message_pre_send(boom).await);
        assert_eq!(
            (plugin.as_str(), code.as_str()),
            ("closed", "plugin_failed")
        );
    }
    let statuses = l.host.statuses();
    for name in ["closed", "open"] {
        let s = status(&statuses, name);
        assert!(s.circuit_open, "{name}");
        assert_eq!(
            (s.counters.calls, s.counters.breaker_trips),
            (3, 1),
            "{name}"
        );
    }
    assert!(
        metrics_text(&l.registry).contains("switchboard_plugin_circuit_open{plugin=\"closed\"} 1")
    );

    // Tripped: neither is called any more. The fail-open one is skipped; the fail-closed
    // one keeps rejecting, even a message it would have passed.
    let (plugin, code, _) = rejected(l.host.message_pre_send(msg("ok")).await);
    assert_eq!(
        (plugin.as_str(), code.as_str()),
        ("closed", "plugin_unavailable")
    );
    let statuses = l.host.statuses();
    assert_eq!(status(&statuses, "closed").counters.calls, 3);
    assert_eq!(status(&statuses, "open").counters.calls, 3);
    l.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_a_plugin_does_not_implement_are_never_called() {
    let l = load(vec![super::dlp("")]).await;
    assert_eq!(
        status(&l.host.statuses(), "dlp").hooks,
        [HookKind::MessagePreSend, HookKind::FilePreUpload]
    );
    assert!(l.host.implements(HookKind::MessagePreSend));
    for hook in [
        HookKind::OnLogin,
        HookKind::OnConnect,
        HookKind::MessageDelivered,
        HookKind::FilePreDownload,
    ] {
        assert!(!l.host.implements(hook), "{hook:?}");
    }
    assert_eq!(l.host.on_login(&user("bob")).await, Decision::Allow);
    assert_eq!(l.host.on_connect(&user("bob"), "s1").await, Decision::Allow);
    assert_eq!(status(&l.host.statuses(), "dlp").counters.calls, 0);
    l.host.shutdown().await;

    // keyword-guard implements on-login, but a manifest can narrow the hooks it gets.
    let guard = || {
        Spec::new("keyword-guard", "keyword-guard")
            .caps(&["config"])
            .settings("deny_users = [\"mallory\"]\n")
    };
    let l = load(vec![guard()]).await;
    let denied = l.host.on_login(&user("mallory")).await;
    assert_eq!(
        denied,
        Decision::Deny {
            plugin: "keyword-guard".into(),
            reason: "this account may not log in".into()
        }
    );
    assert_eq!(l.host.on_login(&user("bob")).await, Decision::Allow);
    l.host.shutdown().await;

    let l = load(vec![guard().hooks(&["message-pre-send"])]).await;
    assert!(!l.host.implements(HookKind::OnLogin));
    assert_eq!(l.host.on_login(&user("mallory")).await, Decision::Allow);
    assert_eq!(
        status(&l.host.statuses(), "keyword-guard").counters.calls,
        0
    );
    l.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_login_hook_denies_when_fail_closed_and_allows_when_fail_open() {
    let l = load(vec![Spec::new("trap", "fixture-trap")]).await;
    assert_eq!(l.host.on_login(&user("ok")).await, Decision::Allow);
    match l.host.on_login(&user("eve")).await {
        Decision::Deny { plugin, reason } => {
            assert_eq!(plugin, "trap");
            assert!(reason.contains("trap"), "{reason}");
        }
        Decision::Allow => panic!("a fail-closed plugin that traps must deny"),
    }
    l.host.shutdown().await;

    let l = load(vec![Spec::new("trap", "fixture-trap").policy("fail-open")]).await;
    assert_eq!(l.host.on_login(&user("eve")).await, Decision::Allow);
    assert_eq!(status(&l.host.statuses(), "trap").counters.failures, 1);
    l.host.shutdown().await;
}

//! Benchmarks of the plugin runtime, through `PluginHost`'s public API with real compiled
//! plugins (see `docs/benchmarks.md` for the figures and the targets they answer).
//!
//! - `noop_hook`: `on-login` on a warm instance of a plugin that does nothing;
//! - `pre_send_1k`: `message-pre-send` through `dlp` on a 1 KiB body, next to the same
//!   DLP logic (`dlp-core`) called natively;
//! - `import`: a hook making 0 or 1000 `config.get` calls (the difference / 1000 is the
//!   cost of one guest→host import call);
//! - `trap_recycle`: a call that traps, so every iteration also creates a fresh instance.
//!
//! `cargo bench -p switchboard --bench plugins` (builds the wasm plugins first).

#[path = "../../tests/e2e/plugins_runtime/memory_store.rs"]
#[allow(dead_code)]
mod memory_store;
#[path = "../../tests/e2e/wasm_build.rs"]
mod wasm_build;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::registry::Registry;
use switchboard::config::PluginsConfig;
use switchboard::plugins::PluginHost;
use switchboard::router::hooks::{Hooks, PreSend};
use switchboard::store::{Metadata, Store, User};

/// A 1 KiB chat message with numbers, dates and punctuation but nothing sensitive: the
/// common case a DLP filter sees.
fn body_1k() -> String {
    let line = "Hi team, the release moved to 2024-05-14 at 15:30; build 4.12.7 passed 1,250 \
                tests in 38 s. Ticket OPS-5521 tracks the rollout, call 555-0142 if stuck. ";
    let mut body = String::new();
    while body.len() < 1024 {
        body.push_str(line);
    }
    body.truncate(1024);
    body
}

fn user() -> User {
    User {
        id: 1,
        name: "alice".into(),
        display_name: "Alice".into(),
        is_admin: false,
        is_compliance: false,
        is_bot: false,
        active: true,
        created_at: 0,
    }
}

fn msg(body: &str) -> PreSend {
    PreSend {
        room_id: 1,
        sender_id: 1,
        sender_name: "alice".into(),
        client_msg_id: "c".into(),
        editing: None,
        thread_root: None,
        body: body.into(),
        metadata: Metadata::new(),
        max_body_bytes: 64 * 1024,
        depth: 0,
    }
}

/// Load one plugin from crate `krate` with `capabilities` and `extra` manifest lines.
fn host(
    rt: &tokio::runtime::Runtime,
    krate: &str,
    capabilities: &str,
    extra: &str,
    config: PluginsConfig,
) -> (Arc<PluginHost>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_dir = dir.path().join("p");
    std::fs::create_dir_all(&plugin_dir).expect("mkdir");
    let manifest = format!(
        "name = \"p\"\nversion = \"0.1.0\"\ncomponent = {:?}\nfailure_policy = \"fail-open\"\n\
         capabilities = [{capabilities}]\n{extra}\n",
        wasm_build::plugin_wasm(krate)
    );
    std::fs::write(plugin_dir.join("plugin.toml"), manifest).expect("manifest");
    (load_dir(rt, dir.path(), config), dir)
}

/// Load every plugin under `dir` over an in-memory store, compiling through the cache.
fn load_dir(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    config: PluginsConfig,
) -> Arc<PluginHost> {
    let config = PluginsConfig {
        dir: Some(dir.to_path_buf()),
        ..config
    };
    let store: Arc<dyn Store> = rt.block_on(memory_store::memory_store());
    let cache = wasm_build::workspace_root().join("target/wasm/test-data");
    rt.block_on(PluginHost::load(
        &config,
        &cache,
        store,
        &mut Registry::default(),
        None,
    ))
    .expect("load")
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let user = user();

    let (probe, _d1) = host(
        &rt,
        "fixture-probe",
        "\"config\"",
        "[settings]\ngreeting = \"hi\"",
        PluginsConfig::default(),
    );
    eprintln!("pooling allocator in use: {}", probe.pooling_allocator());
    c.bench_function("noop_hook/on_login_warm", |b| {
        b.iter(|| rt.block_on(probe.on_login(black_box(&user))))
    });
    c.bench_function("noop_hook/block_on_overhead", |b| {
        b.iter(|| rt.block_on(async { black_box(1) }))
    });

    let mut g = c.benchmark_group("import");
    for n in [0u32, 1000] {
        let session = format!("imports:{n}");
        g.bench_function(format!("config_get_x{n}"), |b| {
            b.iter(|| rt.block_on(probe.on_connect(&user, black_box(&session))))
        });
    }
    g.finish();

    let body = body_1k();
    let card = {
        let mut b = body.clone();
        b.replace_range(100..119, "4111 1111 1111 1111");
        b
    };
    let (dlp, _d2) = host(
        &rt,
        "dlp",
        "\"log\", \"config\", \"kv\"",
        "[settings]\n\"action.card\" = \"redact\"",
        PluginsConfig::default(),
    );
    let policy = dlp_core::Policy::from_settings([("action.card", "redact")]).expect("policy");
    let mut g = c.benchmark_group("pre_send_1k");
    g.bench_function("dlp_wasm_clean", |b| {
        b.iter(|| rt.block_on(dlp.message_pre_send(msg(black_box(&body)))))
    });
    g.bench_function("dlp_native_clean", |b| {
        b.iter(|| policy.evaluate(black_box(&body)))
    });
    g.bench_function("dlp_wasm_redact_card", |b| {
        b.iter(|| rt.block_on(dlp.message_pre_send(msg(black_box(&card)))))
    });
    g.bench_function("dlp_native_redact_card", |b| {
        b.iter(|| policy.evaluate(black_box(&card)))
    });
    g.finish();

    // Every iteration fails on purpose: keep the circuit breaker out of the way.
    let no_breaker = PluginsConfig {
        breaker_failures: u32::MAX,
        ..PluginsConfig::default()
    };
    let (trap, _d3) = host(&rt, "fixture-trap", "", "", no_breaker);
    c.bench_function("trap_recycle/trap_then_fresh_instance", |b| {
        b.iter(|| rt.block_on(trap.message_pre_send(msg(black_box("boom")))))
    });
    c.bench_function("trap_recycle/healthy_call", |b| {
        b.iter(|| rt.block_on(trap.message_pre_send(msg(black_box("ok")))))
    });

    // Operations off the hot path. A reload reads the manifest, takes the compiled
    // component from the on-disk cache, creates and warms the first instance, swaps the
    // chain, waits for the old version to drain and writes the audit record.
    c.bench_function("manage/reload_dlp_cached", |b| {
        b.iter(|| {
            rt.block_on(dlp.reload_plugin("p", switchboard::audit::Actor::Cli))
                .expect("reload")
        })
    });
    // Start-up with five plugins (DLP ×3, keyword-guard, probe) and a warm compile cache.
    let five = five_plugins();
    c.bench_function("manage/cold_start_5_plugins_cached", |b| {
        b.iter(|| {
            let host = load_dir(&rt, five.path(), PluginsConfig::default());
            rt.block_on(host.shutdown());
        })
    });

    for h in [probe, dlp, trap] {
        rt.block_on(h.shutdown());
    }
}

/// A plugins directory with five plugins.
fn five_plugins() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = [
        ("dlp-a", "dlp", "\"log\", \"config\", \"kv\""),
        ("dlp-b", "dlp", "\"log\", \"config\", \"kv\""),
        ("dlp-c", "dlp", "\"log\", \"config\", \"kv\""),
        ("guard", "keyword-guard", "\"config\""),
        ("probe", "fixture-probe", "\"config\""),
    ];
    for (name, krate, capabilities) in plugins {
        let plugin_dir = dir.path().join(name);
        std::fs::create_dir_all(&plugin_dir).expect("mkdir");
        let manifest = format!(
            "name = {name:?}\nversion = \"0.1.0\"\ncomponent = {:?}\n\
             capabilities = [{capabilities}]\n",
            wasm_build::plugin_wasm(krate)
        );
        std::fs::write(plugin_dir.join("plugin.toml"), manifest).expect("manifest");
    }
    dir
}

criterion_group! {
    name = plugins;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(plugins);

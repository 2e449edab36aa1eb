//! The plugin author's tools, through the real `switchboard` binary: `plugin test` runs one
//! hook of a real component and reports what it decided; `plugin new` scaffolds a crate that
//! builds for wasm32-wasip2 as it is and behaves as its README says under `plugin test`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::wasm_build::{plugin_wasm, workspace_root};

const CARD: &str = "4111 1111 1111 1111";

pub(crate) fn switchboard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command.env_remove("RUST_LOG");
    // `plugin test` keeps compiled components under $XDG_CACHE_HOME: the tests share one
    // in the build directory rather than the user's home.
    command.env("XDG_CACHE_HOME", test_cache_home());
    command
}

pub(crate) fn test_cache_home() -> PathBuf {
    workspace_root()
        .join("target")
        .join("wasm")
        .join("xdg-cache")
}

/// `switchboard plugin test COMPONENT --hook HOOK --input INPUT`, to add options to.
pub(crate) fn plugin_test(component: &Path, hook: &str, input: &Path) -> Command {
    let mut command = switchboard();
    command
        .args(["plugin", "test"])
        .arg(component)
        .args(["--hook", hook, "--input"])
        .arg(input);
    command
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The output of a command that must succeed.
pub(crate) fn ok(command: &mut Command) -> String {
    let out = command.output().expect("running switchboard");
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// The error output of a command that must fail.
pub(crate) fn fails(command: &mut Command) -> String {
    let out = command.output().expect("running switchboard");
    assert!(
        !out.status.success(),
        "expected a failure\nstdout:\n{}",
        stdout(&out)
    );
    stderr(&out)
}

pub(crate) fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

pub(crate) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn plugin_test_keeps_the_compiled_component_for_the_next_run() {
    let dlp = plugin_wasm("dlp");
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.json", r#"{"body": "hello"}"#);
    let cache_home = dir.path().join("cache");
    let artifacts = || -> Vec<String> {
        match std::fs::read_dir(cache_home.join("switchboard/plugin-test")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".cwasm"))
                .collect(),
            Err(_) => Vec::new(),
        }
    };
    let run = |extra: &[&str]| {
        let report = json(&ok(plugin_test(&dlp, "message-pre-send", &input)
            .env("XDG_CACHE_HOME", &cache_home)
            .arg("--json")
            .args(extra)));
        assert_eq!(report["outcome"], "continue", "{report}");
    };
    run(&["--no-cache"]);
    assert!(artifacts().is_empty(), "--no-cache writes nothing");
    run(&[]);
    let first = artifacts();
    assert_eq!(first.len(), 1, "{first:?}");
    // The second run loads that artifact: nothing new is written, and it still works.
    run(&[]);
    assert_eq!(artifacts(), first);
}

#[test]
fn plugin_test_reports_what_dlp_decides_and_how_long_it_took() {
    let dlp = plugin_wasm("dlp");
    let dir = tempfile::tempdir().unwrap();
    let card = write(
        dir.path(),
        "card.json",
        &format!(r#"{{"body": "my card is {CARD}", "room_id": 7}}"#),
    );
    let pre_send = |input: &Path| plugin_test(&dlp, "message-pre-send", input);

    // Default settings block cards: a reject with DLP's code, never echoing the number.
    let text = ok(&mut pre_send(&card));
    assert!(text.contains("outcome  reject"), "{text}");
    assert!(text.contains("dlp_blocked"), "{text}");
    assert!(text.contains("payment card"), "{text}");
    assert!(
        !text.contains(CARD),
        "the reason never echoes the value:\n{text}"
    );
    assert!(text.contains("first call"), "{text}");

    // A setting turns the block into a redaction; JSON for scripts; warm calls timed too.
    let report = json(&ok(pre_send(&card).args([
        "--config",
        "action.card=redact",
        "--json",
        "--repeat",
        "5",
    ])));
    assert_eq!(report["plugin"], "dlp");
    assert_eq!(report["outcome"], "modify", "{report}");
    assert_eq!(report["body"], "my card is **** **** **** 1111");
    assert_eq!(report["metadata"]["dlp.redacted"], "card");
    assert_eq!(report["failure"], Value::Null);
    assert_eq!(report["warm_calls"], 4);
    assert_eq!(report["warm_different"], 0, "every call decided the same");
    assert!(
        report["warm_average_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(report["first_call_ms"].as_f64().unwrap() > 0.0, "{report}");

    // The operator's manifest decides capabilities and settings: the example deployment
    // redacts SSNs.
    let ssn = write(dir.path(), "ssn.json", r#"{"body": "ssn 078-05-1120 ok"}"#);
    let manifest = workspace_root().join("plugins/deploy-example/dlp/plugin.toml");
    let report = json(&ok(pre_send(&ssn)
        .arg("--manifest")
        .arg(&manifest)
        .arg("--json")));
    assert_eq!(
        (report["outcome"].as_str(), report["body"].as_str()),
        (Some("modify"), Some("ssn ***-**-1120 ok")),
        "{report}"
    );
    assert_eq!(report["metadata"]["dlp.redacted"], "ssn");
    assert_eq!(report["warm_average_ms"], Value::Null);

    // A clean message continues unchanged.
    let clean = write(dir.path(), "clean.json", r#"{"body": "lunch at noon?"}"#);
    let report = json(&ok(pre_send(&clean).arg("--json")));
    assert_eq!(report["outcome"], "continue", "{report}");
}

#[test]
fn plugin_test_refuses_bad_input_with_a_clear_error() {
    let dlp = plugin_wasm("dlp");
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.json", r#"{"body": "hi"}"#);

    let missing = dir.path().join("missing.json");
    let err = fails(&mut plugin_test(&dlp, "message-pre-send", &missing));
    assert!(err.contains("missing.json"), "{err}");

    let broken = write(dir.path(), "broken.json", r#"{"body": "hi""#);
    let err = fails(&mut plugin_test(&dlp, "message-pre-send", &broken));
    assert!(
        err.contains("broken.json") && err.contains("not a valid message-pre-send input"),
        "{err}"
    );
    let typo = write(dir.path(), "typo.json", r#"{"bdy": "hi"}"#);
    let err = fails(&mut plugin_test(&dlp, "message-pre-send", &typo));
    assert!(err.contains("bdy"), "names the unknown field: {err}");

    let err = fails(&mut plugin_test(&dlp, "message-pre-sent", &good));
    assert!(
        err.contains("unknown hook") && err.contains("message-pre-send"),
        "{err}"
    );

    let login = write(dir.path(), "login.json", r#"{"name": "bob"}"#);
    let err = fails(&mut plugin_test(&dlp, "on-login", &login));
    assert!(
        err.contains("does not implement on-login") && err.contains("message-pre-send"),
        "says what it does implement: {err}"
    );

    let err = fails(plugin_test(&dlp, "message-pre-send", &good).args(["--config", "novalue"]));
    assert!(err.contains("KEY=VALUE"), "{err}");
    let err = fails(plugin_test(&dlp, "message-pre-send", &good).args(["--repeat", "0"]));
    assert!(err.contains("--repeat"), "{err}");

    let nothing = dir.path().join("nothing.wasm");
    let err = fails(&mut plugin_test(&nothing, "message-pre-send", &good));
    assert!(err.contains("nothing.wasm"), "{err}");
}

#[test]
fn plugin_new_scaffolds_a_crate_that_builds_and_passes_plugin_test() {
    let dir = tempfile::tempdir().unwrap();
    let name = "scaffold-e2e";
    let new = |name: &str| {
        let mut command = switchboard();
        command
            .args(["plugin", "new", name, "--dir"])
            .arg(dir.path());
        command
    };
    let text = ok(&mut new(name));
    let krate = dir.path().join(name);
    assert!(text.contains(&krate.display().to_string()), "{text}");
    for file in ["Cargo.toml", "src/lib.rs", "plugin.toml", "README.md"] {
        assert!(krate.join(file).is_file(), "{file}");
    }
    let err = fails(&mut new(name));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&mut new("Bad Name"));
    assert!(err.contains("invalid plugin name"), "{err}");

    // Build it exactly as its README says, sharing the target dir (and so the dependency
    // builds) with `wasm_build.rs`. The workspace's lock file pins the same versions.
    let root = workspace_root();
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target_dir = root.join("target").join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let cargo_in_crate = |args: &[&str]| {
        let out = Command::new(&cargo)
            .current_dir(&krate)
            .args(args)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?} failed:\n{}",
            stderr(&out)
        );
    };
    cargo_in_crate(&["build", "--release", "--target", "wasm32-wasip2"]);
    let component = target_dir.join("wasm32-wasip2/release/scaffold_e2e.wasm");
    assert!(component.is_file(), "{}", component.display());

    // Its own manifest (capabilities, settings) and its two behaviours.
    let manifest = krate.join("plugin.toml");
    let with_manifest = |input: &Path| {
        let mut command = plugin_test(&component, "message-pre-send", input);
        command.arg("--manifest").arg(&manifest).arg("--json");
        command
    };
    let blocked = write(
        dir.path(),
        "blocked.json",
        r#"{"body": "this is Forbidden!"}"#,
    );
    let report = json(&ok(&mut with_manifest(&blocked)));
    assert_eq!(
        (report["outcome"].as_str(), report["code"].as_str()),
        (Some("reject"), Some("scaffold-e2e.blocked")),
        "{report}"
    );
    let pass = write(dir.path(), "pass.json", r#"{"body": "hello"}"#);
    let report = json(&ok(&mut with_manifest(&pass)));
    assert_eq!(report["outcome"], "continue", "{report}");
    // `--config` overrides the manifest's settings.
    let report = json(&ok(with_manifest(&pass).args(["--config", "block=hello"])));
    assert_eq!(report["outcome"], "reject", "{report}");

    // And its unit tests pass natively.
    cargo_in_crate(&["test", "--quiet"]);
}

#[test]
fn plugin_test_runs_every_hook_kind_and_reports_a_failed_call() {
    let dir = tempfile::tempdir().unwrap();
    let probe = plugin_wasm("fixture-probe");

    // Without a manifest the plugin gets log, config and kv; `--config` reaches it; a
    // plugin that keeps state in kv decides differently on each call, and the report says so.
    let msg = write(
        dir.path(),
        "msg.json",
        r#"{"body": "hi", "metadata": {"a": "b"}}"#,
    );
    let report = json(&ok(plugin_test(&probe, "message-pre-send", &msg).args([
        "--config",
        "greeting=hello",
        "--repeat",
        "3",
        "--json",
    ])));
    let metadata = &report["metadata"];
    assert_eq!(report["outcome"], "modify", "{report}");
    assert_eq!(
        (
            metadata["probe.log"].as_str(),
            metadata["probe.config"].as_str(),
            metadata["probe.kv"].as_str()
        ),
        (Some("ok"), Some("ok"), Some("ok")),
        "{report}"
    );
    assert_eq!(metadata["probe.greeting"], "hello");
    assert_eq!(metadata["a"], "b", "input metadata reaches the plugin");
    assert_eq!(
        metadata["probe.calls"], "1",
        "the first call's outcome is reported"
    );
    assert_eq!(report["warm_different"], 2, "{report}");

    let event = write(
        dir.path(),
        "event.json",
        r#"{"room": {"kind": "direct"}, "event": {"id": 9, "body": "hi"}}"#,
    );
    let report = json(&ok(
        plugin_test(&probe, "message-delivered", &event).arg("--json")
    ));
    assert_eq!(report["outcome"], "observed", "{report}");
    let user = write(
        dir.path(),
        "user.json",
        r#"{"name": "bob", "session_id": "s-9"}"#,
    );
    let report = json(&ok(plugin_test(&probe, "on-connect", &user).arg("--json")));
    assert_eq!(report["outcome"], "allow", "{report}");

    let guard = plugin_wasm("keyword-guard");
    let bob = write(dir.path(), "bob.json", r#"{"name": "bob"}"#);
    let alice = write(dir.path(), "alice.json", r#"{"name": "alice"}"#);
    let deny_bob = ["--config", "deny_users=bob", "--json"];
    let report = json(&ok(plugin_test(&guard, "on-login", &bob).args(deny_bob)));
    assert_eq!(
        (report["outcome"].as_str(), report["reason"].as_str()),
        (Some("deny"), Some("this account may not log in")),
        "{report}"
    );
    let report = json(&ok(plugin_test(&guard, "on-login", &alice).args(deny_bob)));
    assert_eq!(report["outcome"], "allow", "{report}");

    // A trapping plugin: the report shows the failure and what its policy made of it, and
    // the exit status is non-zero.
    let trap = plugin_wasm("fixture-trap");
    let out = plugin_test(&trap, "message-pre-send", &msg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(text.contains("FAILED   trap"), "{text}");
    // What the guest said before it trapped (its panic message) is in the report.
    assert!(text.contains("fixture-trap: deliberate trap"), "{text}");
    assert!(text.contains("plugin_failed"), "{text}");
    assert!(err.contains("the plugin failed (trap)"), "{err}");
}

/// `--hook authenticate` with the shipped `auth-policy` plugin: a known API key is accepted
/// for its user, an unknown one refused, another method deferred; `command` is refused with
/// a pointer to the server tests.
#[test]
fn plugin_test_runs_the_authenticate_hook() {
    use sha2::{Digest, Sha256};
    let policy = plugin_wasm("auth-policy");
    let dir = tempfile::tempdir().unwrap();
    let key = hex::encode(Sha256::digest(b"sk-alice"));
    let setting = format!("api_key.{key}=alice");
    let run = |input: &str| {
        let path = write(dir.path(), "auth.json", input);
        let mut command = plugin_test(&policy, "authenticate", &path);
        command.args(["--config", &setting, "--json"]);
        json(&ok(&mut command))
    };
    let accepted = run(r#"{"method": "api-key", "credential": "sk-alice"}"#);
    assert_eq!(
        (accepted["outcome"].as_str(), accepted["user_name"].as_str()),
        (Some("accept"), Some("alice")),
        "{accepted}"
    );
    let refused = run(r#"{"method": "api-key", "credential": "sk-wrong"}"#);
    assert_eq!(refused["outcome"], "refuse", "{refused}");
    let deferred = run(r#"{"method": "saml", "credential": "x"}"#);
    assert_eq!(deferred["outcome"], "defer", "{deferred}");
}

/// `--hook command` with the shipped `echo-bot`: the bot's public answer and a private
/// reply are reported; a malformed command name is refused before anything loads.
#[test]
fn plugin_test_runs_the_command_hook() {
    let echo = plugin_wasm("echo-bot");
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "echo.json",
        r#"{"command": "echo", "args": "hello there"}"#,
    );
    let mut command = plugin_test(&echo, "command", &input);
    command.arg("--json");
    let report = json(&ok(&mut command));
    assert_eq!(report["outcome"], "command", "{report}");
    assert_eq!(
        report["posts"],
        serde_json::json!(["hello there"]),
        "{report}"
    );
    assert_eq!(report["private"], Value::Null);

    let input = write(
        dir.path(),
        "whisper.json",
        r#"{"command": "whisper", "args": "psst"}"#,
    );
    let report = json(&ok(plugin_test(&echo, "command", &input).arg("--json")));
    assert_eq!(
        (report["posts"].clone(), report["private"].as_str()),
        (serde_json::json!([]), Some("psst")),
        "{report}"
    );

    let input = write(dir.path(), "bad.json", r#"{"command": "/echo"}"#);
    let err = fails(&mut plugin_test(&echo, "command", &input));
    assert!(err.contains("without the slash"), "{err}");
}

/// `plugin wit` writes the interface the binary speaks, every version, byte for byte what
/// the server was built from, and never overwrites.
#[test]
fn plugin_wit_writes_every_supported_interface_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wit");
    let text = ok(switchboard().args(["plugin", "wit", "--out"]).arg(&out));
    assert!(text.contains("switchboard:plugin@0.3.0"), "{text}");
    let root = workspace_root().join("wit");
    for (version, source) in [
        ("0.3.0", root.clone()),
        ("0.2.0", root.join("v0.2")),
        ("0.1.0", root.join("v0.1")),
    ] {
        for file in ["types.wit", "hooks.wit", "host.wit"] {
            let written =
                std::fs::read_to_string(out.join(format!("switchboard-plugin-{version}/{file}")))
                    .unwrap();
            let expected = std::fs::read_to_string(source.join(file)).unwrap();
            assert_eq!(written, expected, "{version}/{file}");
            assert!(
                written.starts_with(&format!("package switchboard:plugin@{version};")),
                "{version}/{file}"
            );
        }
    }
    let again = switchboard()
        .args(["plugin", "wit", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
}

/// `make wit-packages` (part of `make release`) encodes every interface version the binary
/// speaks as a WIT package; each decodes, with the standard tool, to the same package,
/// interfaces and functions as the binary's own `plugin wit` files.
#[test]
fn the_release_wit_packages_decode_to_the_interface_the_binary_speaks() {
    let dir = tempfile::tempdir().unwrap();
    let packages = dir.path().join("packages");
    let make = Command::new("make")
        .current_dir(workspace_root())
        .arg("wit-packages")
        .arg(format!("WIT_PACKAGES={}", packages.display()))
        .output()
        .unwrap();
    assert!(
        make.status.success(),
        "{}\n{}",
        stdout(&make),
        stderr(&make)
    );
    let wasm_tools = workspace_root().join("target/lang-tools/wasm-tools/bin/wasm-tools");

    let spoken = dir.path().join("wit");
    ok(switchboard().args(["plugin", "wit", "--out"]).arg(&spoken));
    let mut versions = 0;
    for entry in std::fs::read_dir(&spoken).unwrap() {
        let source = entry.unwrap().path();
        let name = source.file_name().unwrap().to_string_lossy().to_string();
        let version = name.trim_start_matches("switchboard-plugin-");
        let package = packages.join(format!("{name}.wasm"));
        assert!(package.is_file(), "{} is built", package.display());
        let decoded = Command::new(&wasm_tools)
            .args(["component", "wit"])
            .arg(&package)
            .output()
            .unwrap();
        assert!(decoded.status.success(), "{}", stderr(&decoded));
        let decoded = stdout(&decoded);
        assert!(
            decoded.starts_with(&format!("package switchboard:plugin@{version};")),
            "{decoded}"
        );
        // Every interface, world and function the source declares is in the package.
        let mut declared = 0;
        for file in ["types.wit", "hooks.wit", "host.wit"] {
            let text = std::fs::read_to_string(source.join(file)).unwrap();
            for line in text.lines().map(str::trim) {
                let item = if line.starts_with("interface ") || line.starts_with("world ") {
                    line.trim_end_matches('{').trim()
                } else if let Some((name, _)) = line.split_once(": func(") {
                    name
                } else {
                    continue;
                };
                declared += 1;
                assert!(
                    decoded.contains(item),
                    "{version}: {item:?} is in the package"
                );
            }
        }
        assert!(
            declared > 10,
            "{version}: the check saw the interface ({declared} items)"
        );
        versions += 1;
    }
    assert_eq!(versions, 3, "one package per version the binary speaks");
}

//! Plugins in Python, JavaScript and C, as their authors make them: `switchboard plugin new
//! --lang python|js|c`, the project's own unit tests, a build with the public tools
//! (componentize-py from PyPI, componentize-js from npm, wit-bindgen and wasm-component-ld
//! from crates.io with Debian's clang and wasi-libc; `make lang-tools` installs the versions
//! the templates pin into `target/lang-tools`, and `make test` runs it first), then
//! `plugin test` and a real server's message path: allow, reject, modify. A second build per
//! language plays a careless author (an exception at load, an exception per call, a loop that
//! never ends, memory beyond the limit) and shows each contained with a clear message.

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::plugin_tools::{fails, json, ok, plugin_test, stderr, stdout, switchboard, write};
use crate::support::TestServer;
use crate::wasm_build::workspace_root;

/// One language's tools and files.
struct Lang {
    /// `--lang` value.
    flag: &'static str,
    /// The file holding the project's decision logic, and a careless replacement for it.
    policy_file: &'static str,
    careless_policy: &'static str,
}

const PYTHON: Lang = Lang {
    flag: "python",
    policy_file: "policy.py",
    careless_policy: r#"
class Reject:
    pass


class Replace:
    pass


_kept = []


class Policy:
    def __init__(self, block="", mask=""):
        if "explode" in block:
            raise RuntimeError("careless settings: explode")

    def check(self, body):
        if body == "raise":
            raise ValueError("careless call: boom")
        if body == "spin":
            while True:
                pass
        if body == "hog":
            _kept.append(bytearray(256 << 20))
        return None
"#,
};

const JS: Lang = Lang {
    flag: "js",
    policy_file: "policy.js",
    careless_policy: r#"
const kept = [];
export class Policy {
  constructor({ block = '' } = {}) {
    if (block.includes('explode')) throw new Error('careless settings: explode');
  }
  check(body) {
    if (body === 'raise') throw new Error('careless call: boom');
    if (body === 'spin') for (;;) {}
    if (body === 'hog') kept.push(new Uint8Array(256 << 20).fill(1));
    return null;
  }
}
"#,
};

const C: Lang = Lang {
    flag: "c",
    policy_file: "policy.c",
    careless_policy: r#"
#include "policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int equals(const char *text, size_t len, const char *word) {
    return len == strlen(word) && memcmp(text, word, len) == 0;
}

int policy_init(policy *p, const char *block, size_t block_len, const char *mask,
                size_t mask_len) {
    (void)mask;
    (void)mask_len;
    memset(p, 0, sizeof *p);
    if (equals(block, block_len, "explode")) {
        fprintf(stderr, "careless settings: explode\n");
        abort();
    }
    return 0;
}

void policy_free(policy *p) { (void)p; }

static char *kept;

policy_decision policy_check(const policy *p, const char *body, size_t len) {
    (void)p;
    policy_decision allow = {POLICY_ALLOW, NULL, 0, NULL, 0};
    if (equals(body, len, "raise")) {
        fprintf(stderr, "careless call: boom\n");
        abort();
    }
    if (equals(body, len, "spin")) {
        for (volatile unsigned i = 0;; i++) {
        }
    }
    if (equals(body, len, "hog")) {
        /* malloc fails at the memory limit and the careless code writes anyway. */
        kept = malloc(256u << 20);
        memset(kept, 1, 256u << 20);
    }
    return allow;
}
"#,
};

/// Where `make lang-tools` installs the pinned tools.
fn lang_tools() -> PathBuf {
    workspace_root().join("target").join("lang-tools")
}

fn require(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `make lang-tools` (`make test` does it first)",
        path.display()
    );
    path
}

/// Run a build or test command of a plugin project; its output on failure.
fn run(dir: &Path, program: &Path, args: &[&str]) -> String {
    run_command(Command::new(program).current_dir(dir).args(args))
}

/// Run `command`, which must succeed; its stdout and stderr.
fn run_command(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    format!("{}{}", stdout(&out), stderr(&out))
}

/// `switchboard plugin new NAME --lang LANG` in `parent`.
fn scaffold(lang: &Lang, parent: &Path, name: &str) -> PathBuf {
    let text = ok(switchboard()
        .args(["plugin", "new", name, "--lang", lang.flag, "--dir"])
        .arg(parent));
    assert!(text.contains("README.md"), "{text}");
    parent.join(name)
}

/// The project's own unit tests, then its build as its README says; the component.
fn test_and_build(lang: &Lang, dir: &Path, name: &str) -> PathBuf {
    let tools = lang_tools();
    match lang.flag {
        "python" => {
            let python = require(tools.join("py/bin/python"));
            let out = run(dir, &python, &["-m", "unittest", "-v"]);
            assert!(out.contains("OK"), "{out}");
            let componentize = require(tools.join("py/bin/componentize-py"));
            let version = run(dir, &componentize, &["--version"]);
            assert!(
                version.contains(switchboard_pin("componentize-py")),
                "the installed tool is the one the template pins: {version}"
            );
            let output = format!("{name}.wasm");
            run(
                dir,
                &componentize,
                &[
                    "-d",
                    "wit",
                    "-w",
                    "plugin",
                    "componentize",
                    "app",
                    "-o",
                    &output,
                ],
            );
        }
        "c" => {
            // `make` with the tools `make lang-tools` installed first on the PATH, as an
            // author's `cargo install` puts them on theirs.
            let bin = require(tools.join("c/bin"));
            let path = std::env::join_paths(std::iter::once(bin.clone()).chain(
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
            ))
            .unwrap();
            let (wit_bindgen, wasm_component_ld) = c_pins();
            for (tool, pin) in [
                ("wit-bindgen", wit_bindgen),
                ("wasm-component-ld", wasm_component_ld),
            ] {
                let version = run(dir, &bin.join(tool), &["--version"]);
                assert!(
                    version.contains(&pin),
                    "{tool} is the version the README pins ({pin}): {version}"
                );
            }
            let make = |args: &[&str]| {
                run_command(
                    Command::new("make")
                        .current_dir(dir)
                        .env("PATH", &path)
                        .args(args),
                )
            };
            if dir.join("test_policy.c").exists() {
                let out = make(&["test"]);
                assert!(out.contains("OK: "), "{out}");
            }
            make(&[]);
        }
        _ => {
            let modules = require(tools.join("js/node_modules"));
            std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();
            let installed: Value = serde_json::from_str(
                &std::fs::read_to_string(
                    modules.join("@bytecodealliance/componentize-js/package.json"),
                )
                .unwrap(),
            )
            .unwrap();
            assert_eq!(
                installed["version"].as_str(),
                Some(switchboard_pin("componentize-js")),
                "the installed tool is the one the template pins"
            );
            let npm = PathBuf::from("npm");
            let out = run(dir, &npm, &["test"]);
            assert!(out.contains("# fail 0"), "{out}");
            run(dir, &npm, &["run", "build"]);
        }
    }
    let component = dir.join(format!("{name}.wasm"));
    assert!(component.is_file(), "{}", component.display());
    component
}

/// The tool version a generated README pins (read back from a scaffolded project, so the
/// test follows the binary rather than a copy of its constants).
fn switchboard_pin(tool: &str) -> &'static str {
    static PINS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (py, js) = PINS.get_or_init(|| {
        let parent = tempfile::tempdir().unwrap();
        let py = scaffold(&PYTHON, parent.path(), "pins-py");
        let readme = std::fs::read_to_string(py.join("README.md")).unwrap();
        let py_pin = readme
            .split("componentize-py==")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the README pins componentize-py")
            .to_string();
        let js = scaffold(&JS, parent.path(), "pins-js");
        let package: Value =
            serde_json::from_str(&std::fs::read_to_string(js.join("package.json")).unwrap())
                .unwrap();
        let js_pin = package["devDependencies"]["@bytecodealliance/componentize-js"]
            .as_str()
            .expect("package.json pins componentize-js")
            .to_string();
        (py_pin, js_pin)
    });
    if tool == "componentize-py" { py } else { js }
}

/// The versions of wit-bindgen and wasm-component-ld a C project's README pins.
fn c_pins() -> (String, String) {
    let parent = tempfile::tempdir().unwrap();
    let project = scaffold(&C, parent.path(), "pins-c");
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let pin = |crate_name: &str| {
        readme
            .split(&format!("{crate_name}@"))
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("the README pins {crate_name}"))
            .to_string()
    };
    (pin("wit-bindgen-cli"), pin("wasm-component-ld"))
}

/// `plugin test` with the project's manifest and extra settings; the JSON report.
fn decide(component: &Path, manifest: &Path, body: &str, settings: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "input.json",
        &serde_json::json!({ "body": body }).to_string(),
    );
    let mut command = plugin_test(component, "message-pre-send", &input);
    command.arg("--manifest").arg(manifest).arg("--json");
    for setting in settings {
        command.args(["--config", setting]);
    }
    json(&ok(&mut command))
}

/// A plugins directory holding the project's manifest (with `mask` set) and component.
fn install(project: &Path, name: &str) -> tempfile::TempDir {
    let plugins = tempfile::tempdir().unwrap();
    let dir = plugins.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = std::fs::read_to_string(project.join("plugin.toml")).unwrap();
    assert!(manifest.contains("mask = []"), "{manifest}");
    std::fs::write(
        dir.join("plugin.toml"),
        manifest.replace("mask = []", "mask = [\"darn\"]"),
    )
    .unwrap();
    let component = format!("{name}.wasm");
    std::fs::copy(project.join(&component), dir.join(&component)).unwrap();
    plugins
}

async fn server_with_plugins(plugins: &Path) -> TestServer {
    let path = plugins.to_path_buf();
    TestServer::start_with(move |c| {
        c.plugins.dir = Some(path);
        // The careless plugin fails on purpose several times for one sender; this test is
        // about each failure's message, not about the circuit breaker (tested elsewhere).
        c.plugins.breaker_scope_failures = 100;
    })
    .await
}

async fn the_template_filters_messages_on_a_real_server(lang: Lang) {
    let work = tempfile::tempdir().unwrap();
    let name = format!("{}-words", lang.flag);
    let project = scaffold(&lang, work.path(), &name);
    let component = test_and_build(&lang, &project, &name);
    let manifest = project.join("plugin.toml");

    // `plugin test`: the three outcomes, with the manifest's own settings.
    let report = decide(&component, &manifest, "this is Forbidden!", &[]);
    assert_eq!(report["outcome"], "reject", "{report}");
    assert_eq!(report["code"], format!("{name}.blocked"), "{report}");
    let report = decide(&component, &manifest, "hello", &[]);
    assert_eq!(report["outcome"], "continue", "{report}");
    let report = decide(&component, &manifest, "darn it", &["mask=darn"]);
    assert_eq!(report["outcome"], "modify", "{report}");
    assert_eq!(report["body"], "**** it", "{report}");

    // A real server's message path.
    let plugins = install(&project, &name);
    let server = server_with_plugins(plugins.path()).await;
    let alice = server.user("alice").await;
    let room = alice.group("words", &[]).await;
    let (status, ack) = alice.send_http(room, "m1", "hello there").await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["body"], Value::Null, "unchanged: {ack}");
    let (status, err) = alice.send_http(room, "m2", "a FORBIDDEN word").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["rejection"]["plugin"], name.as_str(), "{err}");
    assert_eq!(err["rejection"]["code"], format!("{name}.blocked"), "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("forbidden"),
        "{err}"
    );
    let (status, ack) = alice.send_http(room, "m3", "darn, Darn it").await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["body"], "****, **** it", "{ack}");
    let bodies: Vec<String> = alice
        .history(room, "")
        .await
        .iter()
        .filter_map(|e| e["body"].as_str().map(str::to_string))
        .collect();
    assert_eq!(bodies, ["hello there", "****, **** it"]);
    server.stop().await;
}

async fn careless_plugins_are_contained_with_a_clear_message(lang: Lang) {
    let work = tempfile::tempdir().unwrap();
    let name = format!("careless-{}", lang.flag);
    let project = scaffold(&lang, work.path(), &name);
    std::fs::write(project.join(lang.policy_file), lang.careless_policy).unwrap();
    // The careless policy has no unit tests worth running; build it directly.
    std::fs::remove_file(project.join(match lang.flag {
        "python" => "test_policy.py",
        "c" => "test_policy.c",
        _ => "policy.test.js",
    }))
    .unwrap();
    let component = test_and_build(&lang, &project, &name);
    let manifest = project.join("plugin.toml");

    // An exception at load: the plugin does not load, and the author sees why.
    let input = write(work.path(), "hello.json", r#"{"body": "hello"}"#);
    let err = fails(
        plugin_test(&component, "message-pre-send", &input)
            .arg("--manifest")
            .arg(&manifest)
            .args(["--config", "block=explode"]),
    );
    assert!(err.contains("careless settings: explode"), "{err}");

    // On a server: each bad call fails closed for its sender only, with what the guest said
    // kept for the admin; the plugin goes on serving.
    let plugins = install(&project, &name);
    let server = server_with_plugins(plugins.path()).await;
    let alice = server.user("alice").await;
    let admin = server.admin().await;
    let room = alice.group("careless", &[]).await;
    for (i, (body, kind, said)) in [
        ("raise", "trap", Some("careless call: boom")),
        ("spin", "timeout", None),
        // The runtime notices the refused growth itself (a MemoryError, a RangeError)
        // and fails the call; the host records that its memory limit was hit.
        ("hog", "memory", None),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, err) = alice.send_http(room, &format!("bad{i}"), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {err}");
        assert_eq!(err["rejection"]["code"], "plugin_failed", "{body}: {err}");
        let (status, view) = admin.get(&format!("/api/v1/admin/plugins/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{view}");
        let failure = &view["status"]["last_failure"];
        assert_eq!(failure["kind"], kind, "{body}: {view}");
        if let Some(said) = said {
            let detail = failure["detail"].as_str().unwrap_or_default();
            assert!(detail.contains(said), "{body}: the guest's words: {detail}");
            assert!(!err.to_string().contains(said), "never the sender's: {err}");
        }
        let (status, ack) = alice.send_http(room, &format!("ok{i}"), "hello").await;
        assert_eq!(status, StatusCode::CREATED, "after {body}: {ack}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_from_the_template_filters_messages_on_a_real_server() {
    the_template_filters_messages_on_a_real_server(PYTHON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_from_the_template_filters_messages_on_a_real_server() {
    the_template_filters_messages_on_a_real_server(JS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_plugin_from_the_template_filters_messages_on_a_real_server() {
    the_template_filters_messages_on_a_real_server(C).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn careless_c_plugins_are_contained_with_a_clear_message() {
    careless_plugins_are_contained_with_a_clear_message(C).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn careless_python_plugins_are_contained_with_a_clear_message() {
    careless_plugins_are_contained_with_a_clear_message(PYTHON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn careless_javascript_plugins_are_contained_with_a_clear_message() {
    careless_plugins_are_contained_with_a_clear_message(JS).await;
}

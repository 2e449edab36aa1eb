//! The compatibility gate: the frozen components of `tests/compat/` (one per released
//! interface version and language, compiled once and never rebuilt) load into one real
//! server next to each other and decide exactly as they did when they were frozen.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::TestServer;
use crate::wasm_build::workspace_root;

/// One frozen component and the manifest lines it is installed with.
struct Frozen {
    name: &'static str,
    file: &'static str,
    interface: &'static str,
    manifest: &'static str,
}

const FROZEN: &[Frozen] = &[
    Frozen {
        name: "legacy",
        file: "rust-0.1.0.wasm",
        interface: "switchboard:plugin@0.1.0",
        manifest: "priority = 1\ncapabilities = [\"config\"]\n\
                   [settings]\ngreeting = \"hello from 0.1\"\n",
    },
    Frozen {
        name: "legacy2",
        file: "rust-0.2.0.wasm",
        interface: "switchboard:plugin@0.2.0",
        manifest: "priority = 2\ncapabilities = [\"bot\"]\ncommands = [\"legacy2\"]\n",
    },
    Frozen {
        name: "compat-py",
        file: "python-0.2.0.wasm.gz",
        interface: "switchboard:plugin@0.2.0",
        manifest: "priority = 3\ncapabilities = [\"config\", \"log\"]\n\
                   [settings]\nblock = [\"pyblock\"]\nmask = [\"darn\"]\n",
    },
    Frozen {
        name: "compat-js",
        file: "js-0.2.0.wasm.gz",
        interface: "switchboard:plugin@0.2.0",
        manifest: "priority = 4\ncapabilities = [\"config\", \"log\"]\n\
                   [settings]\nblock = [\"jsblock\"]\nmask = [\"heck\"]\n",
    },
    Frozen {
        name: "compat-c",
        file: "c-0.2.0.wasm",
        interface: "switchboard:plugin@0.2.0",
        manifest: "priority = 5\ncapabilities = [\"config\", \"log\"]\n\
                   [settings]\nblock = [\"cblock\"]\nmask = [\"gosh\"]\n",
    },
];

/// The component's bytes, decompressed if it is stored compressed.
fn component_bytes(file: &str) -> Vec<u8> {
    let path: PathBuf = workspace_root().join("tests").join("compat").join(file);
    let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if !file.ends_with(".gz") {
        return stored;
    }
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(stored.as_slice())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn install_all(plugins: &Path) {
    for frozen in FROZEN {
        let dir = plugins.join(frozen.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("plugin.wasm"), component_bytes(frozen.file)).unwrap();
        let (top, tables) = frozen
            .manifest
            .split_once("[settings]")
            .map_or((frozen.manifest, String::new()), |(top, rest)| {
                (top, format!("[settings]{rest}"))
            });
        std::fs::write(
            dir.join("plugin.toml"),
            format!(
                "name = {:?}\nversion = \"1.0.0\"\ncomponent = \"plugin.wasm\"\n\
                 failure_policy = \"fail-closed\"\n{top}\n[limits]\ntimeout_ms = 1000\n{tables}",
                frozen.name
            ),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_components_of_every_released_interface_load_and_behave_as_before() {
    let plugins = tempfile::tempdir().unwrap();
    install_all(plugins.path());
    let path = plugins.path().to_path_buf();
    let server = TestServer::start_with(move |c| c.plugins.dir = Some(path)).await;
    let admin = server.admin().await;
    let (status, list) = admin.get("/api/v1/admin/plugins").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = list
        .as_array()
        .or_else(|| list["plugins"].as_array())
        .cloned()
        .unwrap_or_default();
    for frozen in FROZEN {
        let plugin = listed
            .iter()
            .find(|p| p["name"] == frozen.name)
            .unwrap_or_else(|| panic!("{} is loaded: {list}", frozen.name));
        assert_eq!(plugin["status"]["interface"], frozen.interface, "{plugin}");
    }

    let alice = server.user("alice").await;
    let room = alice.group("compat", &[]).await;
    // Through all five, in priority order: two tag it, three mask a word each.
    let (status, ack) = alice.send_http(room, "m1", "darn, heck, gosh, hello").await;
    assert_eq!(status, StatusCode::CREATED, "{ack}");
    assert_eq!(ack["body"], "****, ****, ****, hello", "{ack}");
    let history = alice.history(room, "").await;
    let stored: &Value = history.last().unwrap();
    assert_eq!(stored["body"], "****, ****, ****, hello", "{stored}");
    let meta = &stored["metadata"];
    assert_eq!(meta["legacy.interface"], "0.1", "{meta}");
    assert_eq!(meta["legacy.greeting"], "hello from 0.1", "{meta}");
    assert_eq!(meta["legacy2.interface"], "0.2", "{meta}");
    assert_eq!(meta["legacy2.bot"], "granted", "{meta}");

    // Each one's own rejection, with its own code.
    for (i, (body, plugin, code)) in [
        ("legacy-reject", "legacy", "legacy_rejected"),
        ("legacy2-reject", "legacy2", "legacy2_rejected"),
        ("a pyblock here", "compat-py", "compat-py.blocked"),
        ("a JSBLOCK here", "compat-js", "compat-js.blocked"),
        ("a CBlock here", "compat-c", "compat-c.blocked"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, err) = alice.send_http(room, &format!("r{i}"), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {err}");
        assert_eq!(err["rejection"]["plugin"], plugin, "{body}: {err}");
        assert_eq!(err["rejection"]["code"], code, "{body}: {err}");
    }

    // The 0.1 component's `on-login` still decides logins.
    crate::plugins_bots::the_legacy_plugin_denies_the_login_of_legacy_denied(&server, &admin).await;
    server.stop().await;
}

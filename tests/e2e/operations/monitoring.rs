//! Monitoring: the Grafana dashboard and the Prometheus alert rules in `ops/monitoring/` name
//! only metrics a real server exposes (and the rules pass `promtool check rules`); requests
//! carry a request id and a W3C trace id into the structured log and back to the caller.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::system_nats_url;
use crate::support::{ADMIN_PASSWORD, TestServer};

fn monitoring(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ops/monitoring")
        .join(file)
}

/// Every sample name the exposition can carry, from its `# TYPE` lines (labelled counters
/// print no sample until first counted, but their family is always declared).
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        for suffix in suffixes {
            names.insert(format!("{name}{suffix}"));
        }
    }
    names
}

/// Every sample name the server's code registers, read from its sources: a labelled family
/// is printed only once it has a series (prometheus-client leaves empty families out), so
/// families of features a test cannot cheaply exercise (LDAP syncs, model calls, plugin
/// failures) are checked against their registration instead. Each file registers under at
/// most one `sub_registry_with_prefix`.
fn registered_names() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut names = BTreeSet::new();
    let mut dirs = vec![src];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let prefix = text
                .split("sub_registry_with_prefix(\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(|p| format!("{p}_"))
                .unwrap_or_default();
            for piece in text.split("register(").skip(1) {
                let Some(literal) = piece.trim_start().strip_prefix('"') else {
                    continue;
                };
                let Some(name) = literal.split('"').next() else {
                    continue;
                };
                let full = format!("{prefix}{name}");
                for suffix in ["", "_total", "_bucket", "_sum", "_count"] {
                    names.insert(format!("{full}{suffix}"));
                }
            }
        }
    }
    names
}

/// The `switchboard_…` metric names a text refers to.
fn referenced_names(text: &str) -> BTreeSet<String> {
    let is_name_byte = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices("switchboard_") {
        if at > 0 && (is_name_byte(bytes[at - 1]) || bytes[at - 1].is_ascii_uppercase()) {
            continue; // inside another word
        }
        let len = bytes[at..].iter().take_while(|b| is_name_byte(**b)).count();
        names.insert(text[at..at + len].to_string());
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_alert_rules_name_only_metrics_the_server_exposes() {
    let plugins = tempfile::tempdir().unwrap();
    let plugins_dir = plugins.path().to_path_buf();
    // Every optional part that registers metrics: plugins, the cluster bus.
    let server = TestServer::start_with(move |c| {
        c.plugins.dir = Some(plugins_dir);
        c.cluster.nats_url = Some(switchboard::config::Secret(system_nats_url()));
        c.auth.jwt_secret = Some(switchboard::config::Secret(
            "monitoring-test-secret-0123456789abcdef".into(),
        ));
    })
    .await;
    let admin = server.admin().await;
    let response = admin
        .http
        .get(format!("{}/metrics", server.base))
        .bearer_auth(&admin.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let exposition = response.text().await.unwrap();
    assert!(
        exposition.contains("\nswitchboard_store_up 1\n"),
        "{exposition}"
    );
    assert!(exposition.ends_with("# EOF\n"), "the terminator stays last");
    // What the server prints, and what its code registers (see `registered_names`).
    let mut exposed = exposed_names(&exposition);
    assert!(
        exposed.contains("switchboard_store_up") && exposed.contains("switchboard_ws_connections"),
        "{exposition}"
    );
    let registered = registered_names();
    assert!(
        registered.contains("switchboard_ws_closed_total"),
        "{registered:?}"
    );
    assert!(
        registered.contains("switchboard_bus_connected"),
        "{registered:?}"
    );
    exposed.extend(registered);

    let dashboard_text = std::fs::read_to_string(monitoring("switchboard-dashboard.json")).unwrap();
    let rules_text = std::fs::read_to_string(monitoring("alerts.yml")).unwrap();
    for (file, text) in [("dashboard", &dashboard_text), ("alert rules", &rules_text)] {
        let unknown: Vec<String> = referenced_names(text)
            .into_iter()
            .filter(|name| !exposed.contains(name))
            .collect();
        assert!(
            unknown.is_empty(),
            "the {file} name metrics the server does not expose: {unknown:?}"
        );
    }
    for needed in [
        "switchboard_store_up",
        "switchboard_bus_connected",
        "switchboard_plugin_circuit_open",
    ] {
        assert!(
            referenced_names(&rules_text).contains(needed),
            "an alert watches {needed}"
        );
    }

    // The dashboard is a Grafana dashboard whose every query goes to the chosen data source.
    let dashboard: Value = serde_json::from_str(&dashboard_text).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for panel in panels {
        assert!(panel["gridPos"].is_object(), "{}", panel["title"]);
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{}",
                panel["title"]
            );
        }
        assert!(
            panel["datasource"].to_string().contains("${datasource}"),
            "{}",
            panel["title"]
        );
    }

    // Prometheus's own checker reads the rules (.ci/run installs it with Debian's prometheus).
    match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(monitoring("alerts.yml"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "promtool check rules: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("SKIPPED promtool check rules: promtool is not installed"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_their_request_and_trace_ids_into_the_log_and_back() {
    let data = tempfile::tempdir().unwrap();
    let log_path = data.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_DATA_DIR", data.path().join("data"))
        .env("SWITCHBOARD_INITIAL_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,tower_http=debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..400 {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the server started");

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = http
        .get(format!("{base}/api/v1/rooms"))
        .header("x-request-id", "support-ticket-4711")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["x-request-id"], "support-ticket-4711");

    // No id, or one not fit for a log line: the server makes one up and says which.
    for sent in [None, Some("two words")] {
        let mut request = http.get(format!("{base}/healthz"));
        if let Some(id) = sent {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.unwrap();
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(!id.is_empty() && Some(id.as_str()) != sent, "{id}");
    }

    // The log line of the first request carries both ids in its span.
    let mut found = None;
    for _ in 0..100 {
        let mut text = String::new();
        std::fs::File::open(&log_path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|line| line["span"]["request_id"] == "support-ticket-4711");
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = found.unwrap_or_else(|| {
        panic!(
            "no log line with the request id: {}",
            std::fs::read_to_string(&log_path).unwrap()
        )
    });
    assert_eq!(line["span"]["trace_id"], trace, "{line}");
    assert_eq!(line["span"]["path"], "/api/v1/rooms", "{line}");
}

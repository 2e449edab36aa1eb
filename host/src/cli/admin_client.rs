//! `switchboard plugin list|show|install|enable|disable|reload|set|uninstall`: the admin
//! API's plugin endpoints from the command line, against a running server. The CLI holds no
//! logic of its own — the server validates, applies and audits — so the console, the CLI and
//! scripts calling the API all behave the same.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

/// Where the server is and who is asking.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Base URL of the running server.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin's access token.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Log in as this admin instead; the password comes from SWITCHBOARD_PASSWORD or the
    /// first line of standard input.
    #[arg(long, conflicts_with = "token")]
    pub admin: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum PluginAdminCommand {
    /// List installed plugins with their state and counters.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one plugin (JSON).
    Show {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Upload a plugin directory (its plugin.toml, the component it names and, if present,
    /// the component's .sig) and load it.
    Install {
        /// Directory holding plugin.toml.
        dir: PathBuf,
        /// Upgrade the plugin if one of that name is installed.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Enable a plugin (persisted in its plugin.toml) and load it.
    Enable {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Disable a plugin (persisted) and take it out of the chain.
    Disable {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Load a plugin's files again and swap the new version in without dropping messages.
    Reload {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Change settings (key=value; repeat), priority or failure policy, then reload.
    Set {
        name: String,
        /// `key=value` settings to set.
        settings: Vec<String>,
        /// Settings to remove.
        #[arg(long = "unset")]
        unset: Vec<String>,
        #[arg(long, allow_hyphen_values = true)]
        priority: Option<i32>,
        /// fail-closed or fail-open.
        #[arg(long)]
        failure_policy: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a plugin from the chain and delete its directory (its kv data stays).
    Uninstall {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Run one command; the server's error code and message become the error.
pub async fn run(command: PluginAdminCommand) -> anyhow::Result<()> {
    use PluginAdminCommand as C;
    match command {
        C::List { server, json } => {
            let api = Api::connect(&server).await?;
            let list = api
                .call(api.http.get(api.url("/api/v1/admin/plugins")))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_table(&list);
            }
        }
        C::Show { name, server } => {
            let api = Api::connect(&server).await?;
            let view = api
                .call(api.http.get(api.url(&plugin_path(&name, ""))))
                .await?;
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
        C::Install {
            dir,
            replace,
            server,
        } => {
            let form = install_form(&dir)?;
            let api = Api::connect(&server).await?;
            let query = if replace { "?replace=true" } else { "" };
            let url = api.url(&format!("/api/v1/admin/plugins{query}"));
            // The server compiles the component before it answers (seconds for a Python or
            // JavaScript one, the first time), while it keeps serving with what it had.
            let report = with_progress(
                "installing: uploading, compiling and loading",
                api.call(api.http.post(url).multipart(form)),
            )
            .await?;
            print_report("installed", &report);
        }
        C::Enable { name, server } => post_action(&server, &name, "enable", "enabled").await?,
        C::Disable { name, server } => post_action(&server, &name, "disable", "disabled").await?,
        C::Reload { name, server } => post_action(&server, &name, "reload", "reloaded").await?,
        C::Set {
            name,
            settings,
            unset,
            priority,
            failure_policy,
            server,
        } => {
            let mut changes: BTreeMap<String, Value> = BTreeMap::new();
            for pair in settings {
                let (key, value) = pair
                    .split_once('=')
                    .with_context(|| format!("{pair:?}: settings are key=value"))?;
                changes.insert(key.to_string(), Value::String(value.to_string()));
            }
            for key in unset {
                changes.insert(key, Value::Null);
            }
            let mut body = json!({});
            if !changes.is_empty() {
                body["settings"] = json!(changes);
            }
            if let Some(priority) = priority {
                body["priority"] = priority.into();
            }
            if let Some(policy) = failure_policy {
                body["failure_policy"] = policy.into();
            }
            if body.as_object().is_some_and(serde_json::Map::is_empty) {
                bail!(
                    "nothing to change: give key=value settings, --unset, --priority or --failure-policy"
                );
            }
            let api = Api::connect(&server).await?;
            let url = api.url(&plugin_path(&name, ""));
            let report = api.call(api.http.patch(url).json(&body)).await?;
            print_report("changed", &report);
        }
        C::Uninstall { name, server } => {
            let api = Api::connect(&server).await?;
            let url = api.url(&plugin_path(&name, ""));
            api.call(api.http.delete(url)).await?;
            println!("uninstalled {name}");
        }
    }
    Ok(())
}

async fn post_action(
    server: &ServerArgs,
    name: &str,
    action: &str,
    done: &str,
) -> anyhow::Result<()> {
    let api = Api::connect(server).await?;
    let url = api.url(&plugin_path(name, &format!("/{action}")));
    let report = api.call(api.http.post(url)).await?;
    print_report(done, &report);
    Ok(())
}

fn plugin_path(name: &str, suffix: &str) -> String {
    // Names are [a-z0-9_-]; anything else is sent as-is and refused by the server.
    format!("/api/v1/admin/plugins/{name}{suffix}")
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn connect(server: &ServerArgs) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .context("building the HTTP client")?;
        let base = server.url.trim_end_matches('/').to_string();
        let token = match (&server.token, &server.admin) {
            (Some(token), _) => token.clone(),
            (None, Some(admin)) => login(&http, &base, admin).await?,
            (None, None) => bail!("give --token (or SWITCHBOARD_TOKEN) or --admin NAME"),
        };
        Ok(Self { http, base, token })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status();
        let text = response.text().await.context("reading the response")?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            bail!(
                "{} ({}): {}",
                body["code"].as_str().unwrap_or("error"),
                status.as_u16(),
                body["message"]
                    .as_str()
                    .unwrap_or("the server refused the request")
            );
        }
        Ok(body)
    }
}

async fn login(http: &reqwest::Client, base: &str, admin: &str) -> anyhow::Result<String> {
    let password = match std::env::var("SWITCHBOARD_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let response = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "username": admin, "password": password }))
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {base}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "login failed: {}",
            body["message"].as_str().unwrap_or("unexpected response")
        );
    }
    body["access_token"]
        .as_str()
        .map(str::to_string)
        .context("login response without an access token")
}

/// The multipart upload for a plugin directory.
fn install_form(dir: &Path) -> anyhow::Result<Form> {
    let manifest_path = dir.join("plugin.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let table: toml::Table = toml::from_str(&manifest)
        .with_context(|| format!("{} does not parse", manifest_path.display()))?;
    let component = table
        .get("component")
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{}: no `component`", manifest_path.display()))?;
    let component_path = dir.join(component);
    let file_name = component_path
        .file_name()
        .and_then(|f| f.to_str())
        .context("the component path has no file name")?
        .to_string();
    let bytes = std::fs::read(&component_path)
        .with_context(|| format!("reading {}", component_path.display()))?;
    // The server stores the component under its file name next to the manifest, so the
    // uploaded manifest names it that way whatever path it used locally.
    let mut doc: toml_edit::DocumentMut = manifest.parse().context("plugin.toml")?;
    doc["component"] = toml_edit::value(file_name.as_str());
    let mut form = Form::new()
        .part("manifest", Part::text(doc.to_string()))
        .part("component", Part::bytes(bytes).file_name(file_name.clone()));
    let signature_path = component_path.with_file_name(format!("{file_name}.sig"));
    if signature_path.is_file() {
        let signature = std::fs::read(&signature_path)
            .with_context(|| format!("reading {}", signature_path.display()))?;
        form = form.part(
            "signature",
            Part::bytes(signature).file_name(format!("{file_name}.sig")),
        );
    }
    Ok(form)
}

fn print_report(done: &str, report: &Value) {
    let plugin = &report["plugin"];
    let name = plugin["name"].as_str().unwrap_or("?");
    let version = plugin["version"].as_str().unwrap_or("?");
    let state = if plugin["loaded"] == true {
        "loaded"
    } else {
        "not loaded"
    };
    let previous = report["previous_version"]
        .as_str()
        .map(|v| format!(", replaced {v}"))
        .unwrap_or_default();
    let drained = if report["drained"] == false {
        " (calls on the old version were still running when the report was made)"
    } else {
        ""
    };
    println!(
        "{done} {name} {version}: {state}{previous}, load {} ms{drained}",
        report["load_ms"].as_u64().unwrap_or(0)
    );
}

fn print_table(list: &Value) {
    println!(
        "{:<24} {:<10} {:<12} {:>8} {:<12} {:>10} {:>8} {:>8} {:>10}",
        "NAME", "VERSION", "STATE", "PRIORITY", "POLICY", "CALLS", "REJECTS", "FAILURES", "MEAN µs"
    );
    for p in list["plugins"].as_array().into_iter().flatten() {
        let c = &p["status"]["counters"];
        let calls = c["calls"].as_u64().unwrap_or(0);
        let mean = c["call_micros"]
            .as_u64()
            .filter(|_| calls > 0)
            .map(|micros| format!("{:.1}", micros as f64 / calls as f64))
            .unwrap_or_else(|| "-".into());
        let state = match (p["loaded"] == true, p["status"]["circuit_open"] == true) {
            (true, true) => "circuit-open",
            (true, false) => "loaded",
            (false, _) if p["enabled"] == true => "not-loaded",
            (false, _) => "disabled",
        };
        println!(
            "{:<24} {:<10} {:<12} {:>8} {:<12} {:>10} {:>8} {:>8} {:>10}",
            p["name"].as_str().unwrap_or("?"),
            p["version"].as_str().unwrap_or("?"),
            state,
            p["priority"],
            p["failure_policy"].as_str().unwrap_or("?"),
            calls,
            c["rejects"].as_u64().unwrap_or(0),
            c["failures"].as_u64().unwrap_or(0),
            mean
        );
    }
    for problem in list["problems"].as_array().into_iter().flatten() {
        println!(
            "! {}: {}",
            problem["directory"].as_str().unwrap_or("?"),
            problem["error"].as_str().unwrap_or("?")
        );
    }
}

/// Await `work`, showing `label` and the seconds elapsed on a terminal's stderr once it takes
/// longer than a second (nothing is printed when stderr is not a terminal: scripts get only
/// the result).
async fn with_progress<T>(label: &str, work: impl std::future::Future<Output = T>) -> T {
    use std::io::{IsTerminal as _, Write as _};
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(1),
    );
    let mut shown = false;
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => {
                if shown {
                    eprintln!();
                }
                return result;
            }
            _ = tick.tick() => {
                shown = true;
                eprint!("\r{label}... {}s", started.elapsed().as_secs());
                let _ = std::io::stderr().flush();
            }
        }
    }
}

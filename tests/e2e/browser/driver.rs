//! Real browsers for the browser tests, driven over WebDriver: Debian's `chromium` through
//! `chromedriver`, and Firefox ESR through `geckodriver`. The drivers are started here on
//! free loopback ports and killed when the test ends; nothing is downloaded.
//!
//! chromedriver serves many sessions; geckodriver serves one, so each Firefox gets its own
//! geckodriver. `CHROMIUM`, `CHROMEDRIVER`, `FIREFOX` and `GECKODRIVER` override the
//! binaries' paths (the drivers are also looked up on `PATH`).

use std::future::Future;
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client as Browser, ClientBuilder};
use futures_util::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Chromium,
    Firefox,
}

/// The driver processes we started, and the profiles of the browsers opened through them.
struct Driver {
    engine: Engine,
    driver: PathBuf,
    browser: PathBuf,
    children: Vec<Child>,
    /// chromedriver's address (one process for every session).
    shared_url: Option<String>,
    profiles: Vec<TempDir>,
}

fn find_binary(env: &str, names: &[&str], candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let home_cargo = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    on_path
        .into_iter()
        .chain(home_cargo)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .chain(candidates.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Driver {
    fn new(engine: Engine) -> Self {
        let (driver, browser) = match engine {
            Engine::Chromium => (
                find_binary(
                    "CHROMEDRIVER",
                    &["chromedriver"],
                    &["/usr/bin/chromedriver"],
                )
                .unwrap_or_else(|| {
                    panic!(
                        "the browser tests need `chromedriver` (Debian: apt-get install \
                             chromium-driver), or CHROMEDRIVER=/path/to/chromedriver"
                    )
                }),
                find_binary("CHROMIUM", &["chromium"], &["/usr/bin/chromium"]).unwrap_or_else(
                    || {
                        panic!(
                            "the browser tests need `chromium` (Debian: apt-get install \
                             chromium), or CHROMIUM=/path/to/chromium"
                        )
                    },
                ),
            ),
            Engine::Firefox => (
                find_binary("GECKODRIVER", &["geckodriver"], &[]).unwrap_or_else(|| {
                    panic!(
                        "the Firefox tests need `geckodriver` (cargo install geckodriver), or \
                         GECKODRIVER=/path/to/geckodriver"
                    )
                }),
                find_binary(
                    "FIREFOX",
                    &["firefox-esr", "firefox"],
                    &["/usr/bin/firefox-esr"],
                )
                .unwrap_or_else(|| {
                    panic!(
                        "the Firefox tests need Firefox (Debian: apt-get install \
                             firefox-esr), or FIREFOX=/path/to/firefox"
                    )
                }),
            ),
        };
        Self {
            engine,
            driver,
            browser,
            children: Vec::new(),
            shared_url: None,
            profiles: Vec::new(),
        }
    }

    /// Start one driver process and wait until it answers `/status` as ready.
    async fn spawn_driver(&mut self) -> String {
        let port = free_port();
        let mut command = Command::new(&self.driver);
        match self.engine {
            Engine::Chromium => command
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1"),
            Engine::Firefox => command
                .arg("--host=127.0.0.1")
                .arg(format!("--port={port}"))
                // Its own Marionette port, so that parallel tests' Firefoxes do not collide.
                .arg(format!("--marionette-port={}", free_port())),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.driver.display()));
        // Owned at once, so that `Drop` reaps it on every path below.
        self.children.push(child);
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(resp) = http.get(format!("{url}/status")).send().await
                && let Ok(status) = resp.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} did not become ready on {url}", self.driver.display());
    }

    /// A new browser with a fresh profile (so sessions share no storage).
    async fn browser(&mut self) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let profile_path = profile.path().display().to_string();
        self.profiles.push(profile);
        let (url, caps) = match self.engine {
            Engine::Chromium => {
                let url = match &self.shared_url {
                    Some(url) => url.clone(),
                    None => {
                        let url = self.spawn_driver().await;
                        self.shared_url = Some(url.clone());
                        url
                    }
                };
                let args = [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1100,760",
                    &format!("--user-data-dir={profile_path}"),
                ];
                let caps = json!({
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": self.browser, "args": args },
                });
                (url, caps)
            }
            Engine::Firefox => {
                let url = self.spawn_driver().await;
                let caps = json!({
                    "browserName": "firefox",
                    "moz:firefoxOptions": {
                        "binary": self.browser,
                        "args": ["-headless", "-profile", profile_path, "--width=1100", "--height=760"],
                        // No update checks, telemetry or remote settings: loopback only.
                        "prefs": {
                            "app.update.enabled": false,
                            "datareporting.policy.dataSubmissionEnabled": false,
                            "toolkit.telemetry.enabled": false,
                            "network.captive-portal-service.enabled": false,
                            "browser.safebrowsing.malware.enabled": false,
                            "browser.safebrowsing.phishing.enabled": false,
                            "services.settings.server": "http://127.0.0.1:9/",
                        },
                    },
                });
                (url, caps)
            }
        };
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "starting {:?} through {}: {e}",
                    self.engine,
                    self.driver.display()
                )
            })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Only the processes we spawned, by their handles.
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Run `test` with `count` Chromium browsers.
pub async fn with_browsers<F, Fut>(count: usize, test: F)
where
    F: FnOnce(Vec<Browser>) -> Fut,
    Fut: Future<Output = ()>,
{
    with_browsers_in(Engine::Chromium, count, test).await;
}

/// Run `test` with browsers, then close every browser even if it failed (a panic would
/// otherwise leave the browser running), and re-raise the failure.
pub async fn with_browsers_in<F, Fut>(engine: Engine, count: usize, test: F)
where
    F: FnOnce(Vec<Browser>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut driver = Driver::new(engine);
    let mut browsers = Vec::new();
    for _ in 0..count {
        browsers.push(driver.browser().await);
    }
    let handles = browsers.clone();
    let outcome = std::panic::AssertUnwindSafe(test(browsers))
        .catch_unwind()
        .await;
    for browser in handles {
        let _ = browser.close().await;
    }
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

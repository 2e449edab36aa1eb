//! The Debian package: built with cargo-deb from this build's binary, installed with
//! `dpkg -i` on this machine, the service started as its systemd unit says and answering
//! `/readyz`, then purged without a trace.
//!
//! This machine runs no systemd as PID 1 (a container): the package's systemd fragments
//! skip `systemctl start` there, as they do in any chroot. So the test checks the unit with
//! `systemd-analyze verify` and then runs its `ExecStart=` as its `User=`/`Group=` in its
//! `WorkingDirectory=`, which is what systemd would do minus the sandboxing. It needs root
//! and dpkg (CI has both).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const UNIT: &str = "/usr/lib/systemd/system/switchboard.service";

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", "switchboard"])
        .stdout
        .starts_with(b"install ok installed")
}

/// `Key=value` of the unit's `[Service]` section.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit sets {key}="))
        .trim()
        .to_string()
}

fn mode_and_owner(path: &str) -> String {
    ok("stat", &["-c", "%a %U:%G", path]).trim().to_string()
}

/// Build the .deb from the binary this test build made (the dev profile; `make deb` makes
/// the release one the same way).
fn build_package(out: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo_deb = root.join("target/lang-tools/deb/bin/cargo-deb");
    assert!(
        cargo_deb.exists(),
        "{} missing: run `make lang-tools` (make test does)",
        cargo_deb.display()
    );
    let status = Command::new(&cargo_deb)
        .current_dir(&root)
        .args([
            "-p",
            "switchboard",
            "--no-build",
            "--profile",
            "dev",
            "--fast",
            "--no-strip",
        ])
        .arg("--output")
        .arg(out)
        .status()
        .expect("run cargo-deb");
    assert!(status.success(), "cargo-deb failed");
    std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb was written")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debian_package_installs_a_hardened_service_that_answers_and_purges_cleanly() {
    if !is_root() || Command::new("dpkg").arg("--version").output().is_err() {
        eprintln!("SKIPPED: installing a package needs root and dpkg (CI has both)");
        return;
    }
    if installed() {
        ok("dpkg", &["--purge", "switchboard"]);
    }
    let out = tempfile::tempdir().unwrap();
    let deb = build_package(out.path());
    let info = ok("dpkg-deb", &["--info", deb.to_str().unwrap()]);
    assert!(info.contains("Package: switchboard"), "{info}");
    assert!(info.contains("adduser"), "depends on adduser: {info}");
    let contents = ok("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
    let unit_in_package = format!(".{UNIT}");
    for path in [
        "./usr/bin/switchboard",
        unit_in_package.as_str(),
        "./etc/switchboard/switchboard.toml",
    ] {
        assert!(contents.contains(path), "{path} in the package: {contents}");
    }

    let install = run("dpkg", &["-i", deb.to_str().unwrap()]);
    if !install.status.success() {
        let _ = run("dpkg", &["--purge", "switchboard"]);
        panic!(
            "dpkg -i: {}{}",
            String::from_utf8_lossy(&install.stdout),
            String::from_utf8_lossy(&install.stderr)
        );
    }
    let outcome =
        futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(check_installed()))
            .await;
    // Purge whatever happened, then report.
    ok("dpkg", &["--purge", "switchboard"]);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    assert!(!installed());
    assert!(!Path::new("/usr/bin/switchboard").exists());
    assert!(!Path::new(UNIT).exists());
    assert!(
        !Path::new("/var/lib/switchboard").exists(),
        "purge removes the data"
    );
    assert!(
        !run("getent", &["passwd", "switchboard"]).status.success(),
        "purge removes the account"
    );
}

async fn check_installed() {
    // The account, the data directory and the configuration's protection.
    assert!(run("getent", &["passwd", "switchboard"]).status.success());
    assert_eq!(
        mode_and_owner("/var/lib/switchboard"),
        "700 switchboard:switchboard"
    );
    assert_eq!(
        mode_and_owner("/etc/switchboard/switchboard.toml"),
        "640 root:switchboard"
    );

    // The unit: valid, hardened, and what it runs.
    let unit = std::fs::read_to_string(UNIT).unwrap();
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let out = run("systemd-analyze", &["verify", UNIT]);
        assert!(
            out.status.success(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for setting in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=switchboard",
        "CapabilityBoundingSet=",
    ] {
        assert!(
            unit.lines().any(|l| l.trim() == setting),
            "the unit sets {setting}"
        );
    }
    let user = unit_value(&unit, "User");
    let group = unit_value(&unit, "Group");
    let workdir = unit_value(&unit, "WorkingDirectory");
    let exec: Vec<String> = unit_value(&unit, "ExecStart")
        .split_whitespace()
        .map(str::to_string)
        .collect();

    // Start it as systemd would, on a free port instead of the configured 8080.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("setpriv")
        .args(["--reuid", &user, "--regid", &group, "--init-groups", "--"])
        .args(&exec)
        .current_dir(&workdir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "SWITCHBOARD_INITIAL_ADMIN_PASSWORD",
            "package-test-password",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the service's command");
    let http = reqwest::Client::new();
    let mut ready = None;
    for _ in 0..400 {
        if let Ok(response) = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
        {
            ready = Some(response.status());
            if response.status().is_success() {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use std::io::Read as _;
            let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
            panic!("the service exited with {status}: {err}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready, Some(reqwest::StatusCode::OK), "/readyz answers");
    // It kept its state where the package said, owned by its own account.
    assert_eq!(
        mode_and_owner("/var/lib/switchboard/switchboard.db"),
        "600 switchboard:switchboard"
    );
}

fn is_root() -> bool {
    run("id", &["-u"]).stdout.starts_with(b"0\n")
}

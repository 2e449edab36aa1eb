//! Signed plugins through the real server: with `plugins.trusted_keys` set, a component
//! signed (by the real `switchboard plugin keygen` / `plugin sign`) with a trusted key loads
//! and filters; one modified byte, a missing or malformed signature, or an untrusted signer
//! stops the server from starting, with an error naming the plugin and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use switchboard::config::{Config, Secret};
use switchboard::plugins::PluginError;
use switchboard::signing::{SecretKey, SignatureError, TrustedKeys};

use crate::support::{ADMIN_PASSWORD, TestServer};
use crate::wasm_build::plugin_wasm;

const CARD: &str = "4111 1111 1111 1111";

fn switchboard(args: &[&str], paths: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .args(paths)
        .env_remove("RUST_LOG")
        .output()
        .expect("running switchboard")
}

/// A plugins directory holding a copy of the DLP component (so its signature can sit next
/// to it) and a manifest for it. Returns the component's path.
fn install_dlp(plugins: &Path) -> PathBuf {
    let dir = plugins.join("dlp");
    std::fs::create_dir_all(&dir).unwrap();
    let component = dir.join("dlp.wasm");
    std::fs::copy(plugin_wasm("dlp"), &component).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        "name = \"dlp\"\nversion = \"0.1.0\"\ncomponent = \"dlp.wasm\"\n\
         capabilities = [\"log\", \"config\", \"kv\"]\n",
    )
    .unwrap();
    component
}

fn trusted(keys: &[String]) -> TrustedKeys {
    TrustedKeys::try_from(keys.to_vec()).unwrap()
}

/// Start a server over `plugins` trusting `keys`, expecting it to refuse: the plugin
/// layer's error.
async fn refused(plugins: &Path, keys: TrustedKeys) -> (SignatureError, String) {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.data_dir = data.path().to_path_buf();
    config.initial_admin_password = Some(Secret(ADMIN_PASSWORD.into()));
    config.plugins.dir = Some(plugins.to_path_buf());
    config.plugins.trusted_keys = keys;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    // The guard only keeps a regression from hanging the suite: loading fails before the
    // server would start listening.
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        switchboard::serve(config, listener, std::future::pending()),
    )
    .await
    .expect("the server gives up instead of running");
    let err = result.expect_err("the server must refuse to start");
    let text = format!("{err:#}");
    match err.downcast_ref::<PluginError>() {
        Some(PluginError::Signature { name, reason }) => {
            assert_eq!(name, "dlp");
            (reason.clone(), text)
        }
        other => panic!("expected a signature error, got {other:?}: {text}"),
    }
}

#[tokio::test]
async fn a_signed_plugin_loads_and_filters_and_a_modified_byte_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let out = keys.path().join("author");

    // keygen: a private secret key, a one-line public key, never an overwrite.
    let made = switchboard(&["plugin", "keygen", "--out"], &[&out]);
    assert!(made.status.success(), "{made:?}");
    let secret = keys.path().join("author.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the secret key is private");
    }
    let public = std::fs::read_to_string(keys.path().join("author.pub")).unwrap();
    let public = public.trim().to_string();
    assert!(public.starts_with("ed25519:"), "{public}");
    assert!(
        String::from_utf8_lossy(&made.stdout).contains(&public),
        "keygen prints the line for the operator"
    );
    let before = std::fs::read(&secret).unwrap();
    let again = switchboard(&["plugin", "keygen", "--out"], &[&out]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        before,
        "the key is untouched"
    );

    // sign, then run a server that trusts the key: the plugin loads and filters.
    let plugins = tempfile::tempdir().unwrap();
    let component = install_dlp(plugins.path());
    let signed = switchboard(&["plugin", "sign", "--key"], &[&secret, &component]);
    assert!(signed.status.success(), "{signed:?}");
    let signature = plugins.path().join("dlp/dlp.wasm.sig");
    assert!(signature.is_file());

    let dir = plugins.path().to_path_buf();
    let keys_in_force = trusted(std::slice::from_ref(&public));
    let server = TestServer::start_with(move |c| {
        c.plugins.dir = Some(dir);
        c.plugins.trusted_keys = keys_in_force;
    })
    .await;
    let alice = server.user("alice").await;
    let room = alice.group("signed", &[]).await;
    let (status, err) = alice.send_http(room, "c1", &format!("card {CARD}")).await;
    assert_eq!(
        (status, err["rejection"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("dlp_blocked")),
        "the signed plugin filters: {err}"
    );
    let (status, _) = alice.send_http(room, "c2", "hello").await;
    assert_eq!(status, StatusCode::CREATED);
    server.stop().await;

    // One modified byte: refused, naming the plugin, the signer and the reason.
    let original = std::fs::read(&component).unwrap();
    let mut modified = original.clone();
    let middle = modified.len() / 2;
    modified[middle] ^= 0x01;
    std::fs::write(&component, &modified).unwrap();
    let (reason, text) = refused(plugins.path(), trusted(std::slice::from_ref(&public))).await;
    assert!(matches!(reason, SignatureError::Invalid(_)), "{reason:?}");
    assert!(
        text.contains("plugin dlp") && text.contains("does not match the component"),
        "{text}"
    );

    // Unsigned: refused.
    std::fs::write(&component, &original).unwrap();
    std::fs::remove_file(&signature).unwrap();
    let (reason, text) = refused(plugins.path(), trusted(&[public])).await;
    assert_eq!(reason, SignatureError::Missing);
    assert!(text.contains("not signed"), "{text}");
}

#[tokio::test]
async fn untrusted_signers_and_malformed_signatures_are_refused() {
    let plugins = tempfile::tempdir().unwrap();
    let component = install_dlp(plugins.path());
    let bytes = std::fs::read(&component).unwrap();
    let (operator, stranger) = (
        SecretKey::generate().unwrap(),
        SecretKey::generate().unwrap(),
    );
    let operator_trusts = || trusted(&[operator.public().to_string()]);
    let signature = plugins.path().join("dlp/dlp.wasm.sig");

    std::fs::write(&signature, stranger.sign(&bytes)).unwrap();
    let (reason, text) = refused(plugins.path(), operator_trusts()).await;
    assert_eq!(reason, SignatureError::UnknownKey(stranger.public().id()));
    assert!(text.contains("not in plugins.trusted_keys"), "{text}");

    std::fs::write(&signature, "not a signature\n").unwrap();
    let (reason, _) = refused(plugins.path(), operator_trusts()).await;
    assert!(matches!(reason, SignatureError::Malformed(_)), "{reason:?}");

    // The operator's own key loads it (the same files, only the signature differs).
    std::fs::write(&signature, operator.sign(&bytes)).unwrap();
    let dir = plugins.path().to_path_buf();
    let server = TestServer::start_with(move |c| {
        c.plugins.dir = Some(dir);
        c.plugins.trusted_keys = operator_trusts();
    })
    .await;
    server.stop().await;
}

#[test]
fn a_malformed_trusted_key_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(
        &path,
        "[plugins]\ntrusted_keys = [\"ed25519:bm90IGEga2V5\"]\n",
    )
    .unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("trusted_keys"), "{err}");

    let key = SecretKey::generate().unwrap().public().to_string();
    std::fs::write(&path, format!("[plugins]\ntrusted_keys = [{key:?}]\n")).unwrap();
    let config = Config::load(Some(&path)).unwrap();
    assert_eq!(config.plugins.trusted_keys, trusted(&[key]));
}

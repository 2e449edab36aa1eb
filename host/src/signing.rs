//! Signed plugins: ed25519 keys for plugin authors, detached signatures next to components,
//! and the check the server makes before compiling a component when the operator lists
//! trusted keys (`[plugins] trusted_keys`).
//!
//! Three small text formats, all base64 (standard alphabet, with padding):
//!
//! - **Public key** (`NAME.pub`, and each entry of `trusted_keys`): one line,
//!   `ed25519:<base64 of the 32-byte public key>`.
//! - **Secret key** (`NAME.key`, mode 0600): a `#` comment line, then
//!   `ed25519-secret:<base64 of the 32-byte seed>`.
//! - **Signature** (`COMPONENT.wasm.sig`, next to the component): two lines,
//!   ```text
//!   switchboard-plugin-signature v1 ed25519 <key id>
//!   <base64 of the 64-byte ed25519 signature>
//!   ```
//!   The signature is plain ed25519 (RFC 8032) over the component file's exact bytes, so
//!   any ed25519 tool can produce or check one. The key id is the first 8 bytes of the
//!   SHA-256 of the public key, in hex: it names the signer in errors and logs and picks the
//!   trusted key to verify with; it proves nothing by itself.
//!
//! The server verifies the very bytes it then compiles (`engine::compile` reads the file
//! once), so a component swapped between the check and the compile is not possible.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of a public key, and of each `trusted_keys` entry.
const PUBLIC_PREFIX: &str = "ed25519:";
/// Prefix of the secret-key line in a `.key` file.
const SECRET_PREFIX: &str = "ed25519-secret:";
/// The signature file's header, before the key id.
const SIGNATURE_HEADER: &str = "switchboard-plugin-signature v1 ed25519";
/// A signature file is two short lines; anything longer is not one of ours.
pub const MAX_SIGNATURE_FILE_BYTES: u64 = 1024;
/// The same for key files (a comment line and one key line).
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Names a public key: the first 8 bytes of its SHA-256, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    fn of(key: &VerifyingKey) -> Self {
        Self(hex::encode(&Sha256::digest(key.as_bytes())[..8]))
    }

    fn parse(text: &str) -> Option<Self> {
        (text.len() == 16
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An ed25519 public key as operators write it: `ed25519:<base64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let encoded = text.strip_prefix(PUBLIC_PREFIX).ok_or_else(|| {
            KeyError::Malformed(format!(
                "a public key starts with {PUBLIC_PREFIX:?} followed by base64"
            ))
        })?;
        let bytes: [u8; 32] = decode_exact(encoded, "public key").map_err(KeyError::Malformed)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| KeyError::Malformed("not a valid ed25519 public key".into()))
    }

    pub fn id(&self) -> KeyId {
        KeyId::of(&self.0)
    }

    /// Whether `signature` (base64, from [`SecretKey::sign_message`]) signs `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(bytes) = decode_exact::<64>(signature, "signature") else {
            return false;
        };
        use ed25519_dalek::Verifier as _;
        self.0
            .verify(message, &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

/// A plugin author's secret signing key.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key itself.
        write!(f, "SecretKey({})", self.public().id())
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        use rand::TryRngCore as _;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// Parse the contents of a `.key` file (comment lines start with `#`).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return Err(KeyError::Malformed(format!(
                "a secret key file holds exactly one line starting with {SECRET_PREFIX:?}"
            )));
        };
        let encoded = line.strip_prefix(SECRET_PREFIX).ok_or_else(|| {
            KeyError::Malformed(format!(
                "not a secret key (expected {SECRET_PREFIX:?}; is this the .pub file?)"
            ))
        })?;
        let seed: [u8; 32] = decode_exact(encoded, "secret key").map_err(KeyError::Malformed)?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// A detached signature of `message`, base64 (for statements other than components,
    /// such as the audit chain's checkpoints).
    pub fn sign_message(&self, message: &[u8]) -> String {
        B64.encode(self.0.sign(message).to_bytes())
    }

    /// The text of a `.key` file.
    pub fn to_file_text(&self) -> String {
        format!(
            "# switchboard plugin signing key {} (secret: never share or commit it)\n\
             {SECRET_PREFIX}{}\n",
            self.public().id(),
            B64.encode(self.0.as_bytes())
        )
    }

    /// The text of the signature file for `component` (its exact bytes).
    pub fn sign(&self, component: &[u8]) -> String {
        let signature = self.0.sign(component);
        format!(
            "{SIGNATURE_HEADER} {}\n{}\n",
            self.public().id(),
            B64.encode(signature.to_bytes())
        )
    }
}

/// The operator's trusted signers (`[plugins] trusted_keys`). Empty: signatures are not
/// checked. Written in configuration as a list of `ed25519:<base64>` strings; a malformed
/// entry is a configuration error, so the server never starts with a key it cannot use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    pub fn new(keys: Vec<PublicKey>) -> Self {
        let mut unique: Vec<PublicKey> = Vec::with_capacity(keys.len());
        for key in keys {
            if !unique.contains(&key) {
                unique.push(key);
            }
        }
        Self(unique)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn by_id(&self, id: &KeyId) -> Option<&PublicKey> {
        self.0.iter().find(|k| &k.id() == id)
    }
}

impl TryFrom<Vec<String>> for TrustedKeys {
    type Error = String;

    fn try_from(entries: Vec<String>) -> Result<Self, String> {
        let keys = entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                PublicKey::parse(entry)
                    .map_err(|e| format!("plugins.trusted_keys[{i}] ({entry:?}): {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(keys))
    }
}

impl From<TrustedKeys> for Vec<String> {
    fn from(keys: TrustedKeys) -> Self {
        keys.0.iter().map(ToString::to_string).collect()
    }
}

/// A key could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("malformed key: {0}")]
    Malformed(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} already exists; refusing to overwrite a key", path.display())]
    Exists { path: PathBuf },
    #[error("no random source: {0}")]
    Random(String),
}

/// Why a component's signature was not accepted. Each names the reason an operator needs to
/// fix it; none leaks key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "the component is not signed (no .sig file next to it), and plugins.trusted_keys \
         requires a signature"
    )]
    Missing,
    #[error("malformed signature file: {0}")]
    Malformed(String),
    #[error("signed by key {0}, which is not in plugins.trusted_keys")]
    UnknownKey(KeyId),
    #[error(
        "the signature by key {0} does not match the component's bytes (the component was \
         modified after signing, or the signature belongs to another file)"
    )]
    Invalid(KeyId),
}

/// Check `component` against its signature file's contents (`None`: there is none) and the
/// trusted keys; on success, the key that signed it. Used by the loader before compiling
/// and by anything else that accepts components (an admin install).
///
/// With no trusted keys there is nothing to check against: callers skip the check then
/// (an empty list means "signatures not required"); calling it anyway reports the signer as
/// unknown.
pub fn verify_component(
    component: &[u8],
    signature_file: Option<&[u8]>,
    trusted: &TrustedKeys,
) -> Result<KeyId, SignatureError> {
    let file = signature_file.ok_or(SignatureError::Missing)?;
    let (id, signature) = parse_signature_file(file)?;
    let key = trusted
        .by_id(&id)
        .ok_or_else(|| SignatureError::UnknownKey(id.clone()))?;
    // Strict verification refuses the malleable and small-order edge cases that plain
    // RFC 8032 verification lets through.
    key.0
        .verify_strict(component, &signature)
        .map_err(|_| SignatureError::Invalid(id.clone()))?;
    Ok(id)
}

fn parse_signature_file(file: &[u8]) -> Result<(KeyId, Signature), SignatureError> {
    let malformed = |m: &str| SignatureError::Malformed(m.to_string());
    if file.len() as u64 > MAX_SIGNATURE_FILE_BYTES {
        return Err(malformed("larger than a signature file can be"));
    }
    let text = std::str::from_utf8(file).map_err(|_| malformed("not UTF-8 text"))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default().trim_end();
    let id = header
        .strip_prefix(SIGNATURE_HEADER)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| {
            SignatureError::Malformed(format!(
                "the first line must be \"{SIGNATURE_HEADER} <key id>\""
            ))
        })?;
    let id = KeyId::parse(id).ok_or_else(|| malformed("the key id must be 16 hex digits"))?;
    let encoded = lines
        .next()
        .map(str::trim_end)
        .ok_or_else(|| malformed("the second line (the signature) is missing"))?;
    if lines.any(|l| !l.trim().is_empty()) {
        return Err(malformed("unexpected text after the signature line"));
    }
    let bytes: [u8; 64] = decode_exact(encoded, "signature").map_err(SignatureError::Malformed)?;
    Ok((id, Signature::from_bytes(&bytes)))
}

fn decode_exact<const N: usize>(encoded: &str, what: &str) -> Result<[u8; N], String> {
    let bytes = B64
        .decode(encoded.trim())
        .map_err(|_| format!("the {what} is not valid base64"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("the {what} is {} bytes, not {N}", b.len()))
}

/// Where the signature of `component` lives: next to it, `.sig` appended to its name.
pub fn signature_path(component: &Path) -> PathBuf {
    let mut name = component.as_os_str().to_os_string();
    name.push(".sig");
    PathBuf::from(name)
}

/// The signature file of `component`, or `None` when there is none. Reads at most one
/// byte past [`MAX_SIGNATURE_FILE_BYTES`], so a huge file is refused as malformed without
/// being read whole.
pub fn read_signature(component: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let path = signature_path(component);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(MAX_SIGNATURE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// What `keygen` wrote.
#[derive(Debug)]
pub struct GeneratedKey {
    pub secret_path: PathBuf,
    pub public_path: PathBuf,
    pub public: PublicKey,
}

/// Generate a key pair into `out.key` (secret, mode 0600) and `out.pub`, creating `out`'s
/// directory if needed. Refuses to overwrite either file.
pub fn keygen(out: &Path) -> Result<GeneratedKey, KeyError> {
    let secret_path = with_suffix(out, ".key");
    let public_path = with_suffix(out, ".pub");
    for path in [&secret_path, &public_path] {
        if path.symlink_metadata().is_ok() {
            return Err(KeyError::Exists { path: path.clone() });
        }
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let key = SecretKey::generate()?;
    let public = key.public();
    write_new(&secret_path, key.to_file_text().as_bytes(), 0o600)?;
    write_new(&public_path, format!("{public}\n").as_bytes(), 0o644)?;
    Ok(GeneratedKey {
        secret_path,
        public_path,
        public,
    })
}

/// Sign the component at `component` with the key in `key_file`; writes (or replaces)
/// `<component>.sig` and returns its path and the signer.
pub fn sign_file(key_file: &Path, component: &Path) -> Result<(PathBuf, KeyId), KeyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyError::Io { path, source }
    };
    let mut text = String::new();
    std::fs::File::open(key_file)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text))
        .map_err(io(key_file))?;
    let key = SecretKey::parse(&text)?;
    let bytes = std::fs::read(component).map_err(io(component))?;
    let sig_path = signature_path(component);
    std::fs::write(&sig_path, key.sign(&bytes)).map_err(io(&sig_path))?;
    Ok((sig_path, key.public().id()))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Create `path` with `mode`, failing if it exists (no window in which a secret key is
/// readable by others, and no silent replacement of an existing key).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            KeyError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = options.open(path).map_err(io)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key() -> SecretKey {
        SecretKey::generate().unwrap()
    }

    fn trusted(keys: &[&SecretKey]) -> TrustedKeys {
        TrustedKeys::new(keys.iter().map(|k| k.public()).collect())
    }

    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0 pretend this is a component";

    #[test]
    fn a_good_signature_verifies_and_names_its_signer() {
        let k = key();
        let sig = k.sign(COMPONENT);
        let id =
            verify_component(COMPONENT, Some(sig.as_bytes()), &trusted(&[&key(), &k])).unwrap();
        assert_eq!(id, k.public().id());
        assert!(sig.starts_with(&format!("{SIGNATURE_HEADER} {id}\n")));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let k = key();
        let sig = k.sign(COMPONENT);
        for i in 0..COMPONENT.len() {
            let mut modified = COMPONENT.to_vec();
            modified[i] ^= 0x01;
            assert_eq!(
                verify_component(&modified, Some(sig.as_bytes()), &trusted(&[&k])),
                Err(SignatureError::Invalid(k.public().id())),
                "byte {i}"
            );
        }
        let mut longer = COMPONENT.to_vec();
        longer.push(0);
        assert!(verify_component(&longer, Some(sig.as_bytes()), &trusted(&[&k])).is_err());
    }

    #[test]
    fn an_untrusted_signer_is_refused() {
        let (signer, other) = (key(), key());
        let sig = signer.sign(COMPONENT);
        assert_eq!(
            verify_component(COMPONENT, Some(sig.as_bytes()), &trusted(&[&other])),
            Err(SignatureError::UnknownKey(signer.public().id()))
        );
        // A header naming a trusted key does not help a signature made by another one.
        let forged = sig.replace(signer.public().id().as_str(), other.public().id().as_str());
        assert_eq!(
            verify_component(COMPONENT, Some(forged.as_bytes()), &trusted(&[&other])),
            Err(SignatureError::Invalid(other.public().id()))
        );
    }

    #[test]
    fn missing_and_malformed_signature_files_are_refused() {
        let k = key();
        let t = trusted(&[&k]);
        assert_eq!(
            verify_component(COMPONENT, None, &t),
            Err(SignatureError::Missing)
        );
        let good = k.sign(COMPONENT);
        let id = k.public().id();
        let sig_line = good.lines().nth(1).unwrap().to_string();
        let cases = [
            String::new(),
            "garbage".to_string(),
            format!("{SIGNATURE_HEADER} {id}\n"),
            format!("{SIGNATURE_HEADER} nothex\n{sig_line}\n"),
            format!("switchboard-plugin-signature v2 ed25519 {id}\n{sig_line}\n"),
            format!("{SIGNATURE_HEADER} {id}\n!!!not base64!!!\n"),
            format!("{SIGNATURE_HEADER} {id}\n{}\n", B64.encode([1u8; 63])),
            format!("{good}trailing text\n"),
            format!("{good}{}", " ".repeat(2000)),
        ];
        for case in &cases {
            assert!(
                matches!(
                    verify_component(COMPONENT, Some(case.as_bytes()), &t),
                    Err(SignatureError::Malformed(_))
                ),
                "{case:?}"
            );
        }
        assert!(matches!(
            verify_component(COMPONENT, Some(&[0xff, 0xfe][..]), &t),
            Err(SignatureError::Malformed(_))
        ));
        // CRLF line ends (a file edited on Windows) still verify.
        let crlf = good.replace('\n', "\r\n");
        assert!(verify_component(COMPONENT, Some(crlf.as_bytes()), &t).is_ok());
    }

    #[test]
    fn malformed_keys_are_refused_with_a_reason() {
        let k = key();
        let public = k.public().to_string();
        assert_eq!(PublicKey::parse(&public).unwrap(), k.public());
        for bad in [
            "",
            "ed25519:",
            "rsa:AAAA",
            "ed25519:not base64!",
            &format!("ed25519:{}", B64.encode([7u8; 31])),
            &public.replace(PUBLIC_PREFIX, SECRET_PREFIX),
        ] {
            assert!(
                matches!(PublicKey::parse(bad), Err(KeyError::Malformed(_))),
                "{bad:?}"
            );
        }
        let err = TrustedKeys::try_from(vec![public.clone(), "ed25519:xyz".into()]).unwrap_err();
        assert!(err.contains("trusted_keys[1]"), "{err}");
        assert!(
            SecretKey::parse(&public).is_err(),
            "a public key is not a secret key"
        );
        assert!(SecretKey::parse("").is_err());
        let text = k.to_file_text();
        assert_eq!(SecretKey::parse(&text).unwrap().public(), k.public());
        assert!(SecretKey::parse(&format!("{text}{text}")).is_err());
    }

    #[test]
    fn trusted_keys_round_trip_through_configuration() {
        let (a, b) = (key(), key());
        let entries = vec![
            a.public().to_string(),
            b.public().to_string(),
            a.public().to_string(),
        ];
        let keys = TrustedKeys::try_from(entries).unwrap();
        assert_eq!(
            Vec::<String>::from(keys.clone()).len(),
            2,
            "duplicates folded"
        );
        let toml =
            toml::to_string(&std::collections::BTreeMap::from([("k", keys.clone())])).unwrap();
        let back: std::collections::BTreeMap<String, TrustedKeys> = toml::from_str(&toml).unwrap();
        assert_eq!(back["k"], keys);
    }

    #[test]
    fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys/author");
        let generated = keygen(&out).unwrap();
        assert_eq!(generated.secret_path, dir.path().join("keys/author.key"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&generated.secret_path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let public = std::fs::read_to_string(&generated.public_path).unwrap();
        assert_eq!(PublicKey::parse(&public).unwrap(), generated.public);
        let before = std::fs::read(&generated.secret_path).unwrap();
        assert!(matches!(keygen(&out), Err(KeyError::Exists { .. })));
        assert_eq!(std::fs::read(&generated.secret_path).unwrap(), before);

        let component = dir.path().join("x.wasm");
        std::fs::write(&component, COMPONENT).unwrap();
        let (sig_path, id) = sign_file(&generated.secret_path, &component).unwrap();
        assert_eq!(sig_path, dir.path().join("x.wasm.sig"));
        assert_eq!(id, generated.public.id());
        let sig = read_signature(&component).unwrap();
        let t = TrustedKeys::new(vec![generated.public]);
        assert_eq!(verify_component(COMPONENT, sig.as_deref(), &t), Ok(id));
        assert_eq!(read_signature(&dir.path().join("none.wasm")).unwrap(), None);
    }
}

//! Accounts and sessions: argon2id password hashes, short-lived JWT access tokens, and
//! refresh tokens stored hashed and rotated on every use.
//!
//! A login creates a *session* row. Every access token names its session (`sid`), and every
//! request checks the session is still live, so logout, refresh-token replay and deactivating
//! a user take effect at once rather than when the access token expires.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;
use crate::error::{ApiError, Result};
use crate::store::{Session, Store, User, UserId, now_millis};

/// Claims carried by an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: UserId,
    /// The session the token was issued under.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

/// What a successful login or refresh returns to the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    /// `<session id>.<secret>`; only its SHA-256 is stored.
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: User,
}

/// An authenticated caller: the user as of this request and the session they act under.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    pub session_id: String,
}

pub struct Auth {
    store: Arc<dyn Store>,
    config: AuthConfig,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Failed logins per account name in the current minute, so passwords can't be guessed
    /// at line rate. Only failures count; a success clears the account's entry.
    failed_logins: Mutex<HashMap<String, (Instant, u32)>>,
    /// A hash of a random password, checked when the account does not exist so that timing
    /// does not reveal which names are taken.
    dummy_hash: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(store: Arc<dyn Store>, config: AuthConfig, secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        // Only `exp` here: jsonwebtoken's `sub` check wants a string, and ours is the numeric
        // user id, so requiring it would reject every token. `Claims` has no default for
        // `sub`, so a token without one still fails to decode.
        validation.set_required_spec_claims(&["exp"]);
        Self {
            store,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            failed_logins: Mutex::new(HashMap::new()),
            dummy_hash: hash_password_blocking(&random_token(16)).unwrap_or_default(),
            config,
        }
    }

    /// Check a password and open a session.
    pub async fn login(&self, name: &str, password: &str) -> Result<TokenPair> {
        let invalid =
            || ApiError::unauthenticated("invalid_credentials", "wrong user name or password");
        if let Some(retry_after_ms) = self.login_blocked(name) {
            return Err(ApiError::TooManyRequests {
                code: "too_many_login_attempts",
                message: "too many failed logins for this account; try again later".into(),
                retry_after_ms,
            });
        }
        let Some((user, hash)) = self.store.user_by_name(name).await? else {
            // Hash anyway so a missing account takes as long as a wrong password.
            let _ = verify_password(password.to_string(), self.dummy_hash.clone()).await;
            self.record_failed_login(name);
            return Err(invalid());
        };
        let verified = match hash {
            Some(hash) => verify_password(password.to_string(), hash).await?,
            None => false,
        };
        if !verified {
            self.record_failed_login(name);
            return Err(invalid());
        }
        self.lock_failures().remove(name);
        if !user.active {
            return Err(ApiError::forbidden(
                "user_deactivated",
                "this account is deactivated",
            ));
        }
        self.open_session(user).await
    }

    /// Refuse a plugin-checked login attempt (see `api::account`) while `key` has used its
    /// failed-login budget, the same budget passwords get.
    pub fn check_login_budget(&self, key: &str) -> Result<()> {
        match self.login_blocked(key) {
            Some(retry_after_ms) => Err(ApiError::TooManyRequests {
                code: "too_many_login_attempts",
                message: "too many failed logins; try again later".into(),
                retry_after_ms,
            }),
            None => Ok(()),
        }
    }

    /// Count a failed plugin-checked login against `key`'s budget.
    pub fn login_failed(&self, key: &str) {
        self.record_failed_login(key);
    }

    /// Open a session for `user` after a plugin vouched for them: the same checks as after
    /// a password (active account; bots never log in).
    pub async fn login_as(&self, user: User) -> Result<TokenPair> {
        if !user.active {
            return Err(ApiError::forbidden(
                "user_deactivated",
                "this account is deactivated",
            ));
        }
        if user.is_bot {
            return Err(ApiError::forbidden(
                "bot_account",
                "bot accounts cannot log in",
            ));
        }
        self.open_session(user).await
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u32)>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.failed_logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Milliseconds to wait if the account has used its failed-login budget this minute.
    fn login_blocked(&self, name: &str) -> Option<u64> {
        let failures = self.lock_failures();
        let (since, count) = failures.get(name)?;
        let elapsed = since.elapsed();
        (elapsed < LOGIN_WINDOW && *count >= self.config.login_attempts_per_minute)
            .then(|| u64::try_from((LOGIN_WINDOW - elapsed).as_millis()).unwrap_or(60_000))
    }

    fn record_failed_login(&self, name: &str) {
        let mut failures = self.lock_failures();
        if failures.len() > 100_000 {
            // Bound memory under a spray of random names: forget expired windows.
            failures.retain(|_, (since, _)| since.elapsed() < LOGIN_WINDOW);
        }
        let entry = failures
            .entry(name.to_string())
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= LOGIN_WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    /// Issue a session for a user whose identity was already established.
    pub async fn open_session(&self, user: User) -> Result<TokenPair> {
        let session_id = random_token(16);
        let secret = random_token(32);
        let now = now_millis();
        let session = Session {
            id: session_id.clone(),
            user_id: user.id,
            refresh_hash: sha256_hex(&secret),
            created_at: now,
            expires_at: now + self.refresh_ttl_ms(),
            revoked: false,
        };
        self.store.create_session(&session).await?;
        self.token_pair(user, &session_id, &secret)
    }

    /// Exchange a refresh token for a new pair; the old refresh token stops working.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        let invalid = || {
            ApiError::unauthenticated(
                "invalid_refresh_token",
                "the refresh token is invalid, expired or revoked",
            )
        };
        let (session_id, secret) = refresh_token.split_once('.').ok_or_else(invalid)?;
        let session = self.store.session(session_id).await?.ok_or_else(invalid)?;
        let now = now_millis();
        if session.revoked || session.expires_at <= now {
            return Err(invalid());
        }
        let old_hash = sha256_hex(secret);
        let new_secret = random_token(32);
        let rotated = self
            .store
            .rotate_refresh(
                session_id,
                &old_hash,
                &sha256_hex(&new_secret),
                now + self.refresh_ttl_ms(),
            )
            .await?;
        if !rotated {
            // A stale refresh token was replayed: someone may hold a stolen copy. End the
            // session so neither copy keeps working.
            if session.refresh_hash != old_hash {
                self.store.revoke_session(session_id).await?;
                tracing::warn!(session = %session_id, user = session.user_id, "refresh token replay; session revoked");
            }
            return Err(invalid());
        }
        let user = self
            .store
            .user_by_id(session.user_id)
            .await?
            .ok_or_else(invalid)?;
        if !user.active {
            return Err(invalid());
        }
        self.token_pair(user, session_id, &new_secret)
    }

    /// Verify an access token and that its session and user are still live.
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::unauthenticated("token_expired", "the access token has expired")
                }
                _ => ApiError::unauthenticated("invalid_token", "the access token is invalid"),
            })?;
        let claims = data.claims;
        let revoked = || ApiError::unauthenticated("token_revoked", "the session has ended");
        let session = self.store.session(&claims.sid).await?.ok_or_else(revoked)?;
        if session.revoked || session.user_id != claims.sub {
            return Err(revoked());
        }
        let user = self
            .store
            .user_by_id(claims.sub)
            .await?
            .ok_or_else(revoked)?;
        if !user.active {
            return Err(revoked());
        }
        Ok(Caller {
            user,
            session_id: claims.sid,
        })
    }

    pub async fn logout(&self, session_id: &str) -> Result<()> {
        self.store.revoke_session(session_id).await?;
        Ok(())
    }

    fn token_pair(&self, user: User, session_id: &str, secret: &str) -> Result<TokenPair> {
        let now_secs = now_millis() / 1000;
        let ttl = self.config.access_token_ttl_secs;
        let claims = Claims {
            sub: user.id,
            sid: session_id.to_string(),
            iat: now_secs,
            exp: now_secs + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
        };
        let access_token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
                .map_err(ApiError::internal)?;
        Ok(TokenPair {
            access_token,
            refresh_token: format!("{session_id}.{secret}"),
            token_type: "Bearer".into(),
            expires_in: ttl,
            user,
        })
    }

    fn refresh_ttl_ms(&self) -> i64 {
        i64::try_from(self.config.refresh_token_ttl_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX / 2)
    }
}

const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Password hashing runs on a few dedicated threads, one per core. Each argon2id run takes
/// ~19 MiB and a core for tens of milliseconds: on the shared blocking pool a burst of logins
/// would start hundreds of threads, and the allocator would keep ~19 MiB per thread long
/// after. A fixed pool bounds both; extra requests queue.
fn run_hashing<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Result<T>> {
    type Job = Box<dyn FnOnce() + Send>;
    static POOL: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        for i in 0..threads {
            let rx = rx.clone();
            let _ = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
        }
        Mutex::new(tx)
    });
    let (done, result) = tokio::sync::oneshot::channel();
    let sent = pool.lock().map_err(|_| ()).and_then(|tx| {
        tx.send(Box::new(move || {
            let _ = done.send(job());
        }))
        .map_err(|_| ())
    });
    async move {
        sent.map_err(|()| ApiError::internal(anyhow::anyhow!("password hashing pool is gone")))?;
        result.await.map_err(ApiError::internal)
    }
}

/// Hash a password with argon2id (default parameters), off the async workers.
pub async fn hash_password(password: String) -> Result<String> {
    run_hashing(move || hash_password_blocking(&password)).await?
}

/// Check a password against a PHC hash string, off the async workers.
pub async fn verify_password(password: String, hash: String) -> Result<bool> {
    run_hashing(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
}

fn hash_password_blocking(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("hashing password: {e}")))
}

/// Password rules, checked before hashing.
pub fn check_password_strength(password: &str) -> Result<()> {
    if password.chars().count() < 8 {
        return Err(ApiError::bad_request(
            "weak_password",
            "a password needs at least 8 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(ApiError::bad_request(
            "invalid_password",
            "a password may have at most 1024 bytes",
        ));
    }
    Ok(())
}

/// `n` random bytes, URL-safe base64 without padding (never contains `.`).
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The JWT signing secret: from config, else `<data_dir>/jwt.secret`, generated on first use
/// (mode 0600 on Unix).
pub fn load_or_create_secret(config: &AuthConfig, data_dir: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.expose().as_bytes().to_vec());
    }
    let path = data_dir.join("jwt.secret");
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().len() >= 32 => {
            return Ok(existing.trim().as_bytes().to_vec());
        }
        Ok(_) | Err(_) if path.exists() => {
            return Err(std::io::Error::other(format!(
                "{} is too short or unreadable",
                path.display()
            )));
        }
        _ => {}
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = random_token(48);
    write_private(&path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

//! Accounts and sessions: argon2id password hashes, short-lived JWT access tokens, and
//! refresh tokens stored hashed and rotated on every use.
//!
//! A login creates a *session* row. Every access token names its session (`sid`), and every
//! request checks the session is still live, so logout, refresh-token replay and deactivating
//! a user take effect at once rather than when the access token expires.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::audit::{self, Action, Actor, Subject};
use crate::config::AuthConfig;
use crate::error::{ApiError, Result};
use crate::ids::{random_token, sha256_hex};
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
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Login attempts per (account, client address) and per client address in the current
    /// minute; see [`LoginAttempt`].
    attempts: Budgets,
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
            attempts: Budgets::default(),
            dummy_hash: hash_password_blocking(&random_token(16)).unwrap_or_default(),
            config,
        }
    }

    /// Take one login attempt from the budgets of `account` (a user name, or a plugin
    /// method and name) at `client`, *before* any credential is checked: a hundred
    /// simultaneous guesses get as many checks as the budget allows, not a hundred.
    ///
    /// Two budgets: per account and client address (`login_attempts_per_minute`), so an
    /// attacker elsewhere cannot lock the real user out, and per client address across all
    /// accounts (`login_attempts_per_address_per_minute`), so one client cannot spray
    /// guesses over every account. A successful attempt is given back to both.
    pub async fn take_login_attempt(
        &self,
        account: &str,
        client: IpAddr,
    ) -> Result<LoginAttempt<'_>> {
        let address_key = client.to_string();
        let account_key = format!("{account}@{client}");
        let refused = |retry_after_ms, first_refusal: bool, scope: &'static str| async move {
            if first_refusal {
                tracing::warn!(account = %account, %client, scope, "login attempts refused for a minute");
                audit::record(
                    self.store.as_ref(),
                    Actor::Address(client),
                    Action::Lockout,
                    Subject::Account(account),
                    serde_json::json!({ "scope": scope }),
                )
                .await;
            }
            Err(ApiError::TooManyRequests {
                code: "too_many_login_attempts",
                message: "too many failed logins from this address; try again later".into(),
                retry_after_ms,
            })
        };
        match self.attempts.take(
            &address_key,
            self.config.login_attempts_per_address_per_minute,
        ) {
            Ok(()) => {}
            Err((retry, first)) => return refused(retry, first, "address").await,
        }
        if let Err((retry, first)) = self
            .attempts
            .take(&account_key, self.config.login_attempts_per_minute)
        {
            self.attempts.give_back(&address_key);
            return refused(retry, first, "account").await;
        }
        Ok(LoginAttempt {
            auth: self,
            account: account.to_string(),
            client,
            address_key,
            account_key,
        })
    }

    /// Check a password and open a session.
    pub async fn login(&self, name: &str, password: &str, client: IpAddr) -> Result<TokenPair> {
        let invalid =
            || ApiError::unauthenticated("invalid_credentials", "wrong user name or password");
        let attempt = self.take_login_attempt(name, client).await?;
        let Some((user, hash)) = self.store.user_by_name(name).await? else {
            // Hash anyway so a missing account takes as long as a wrong password.
            let _ = verify_password(password.to_string(), self.dummy_hash.clone()).await;
            attempt.failed("unknown_account").await;
            return Err(invalid());
        };
        let verified = match hash {
            Some(hash) => verify_password(password.to_string(), hash).await?,
            None => false,
        };
        if !verified {
            attempt.failed("wrong_password").await;
            return Err(invalid());
        }
        attempt.succeeded();
        if !user.active {
            return Err(ApiError::forbidden(
                "user_deactivated",
                "this account is deactivated",
            ));
        }
        self.open_session(user).await
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

    /// Verify a session's own secret, `<session id>.<secret>` (what `refresh_token` holds),
    /// presented as a bearer by clients that never refresh: Matrix clients keep the token
    /// login gave them for as long as the session lives. The secret is not rotated; the
    /// session must be live (not revoked, not expired) and its user active.
    pub async fn authenticate_session_secret(&self, token: &str) -> Result<Caller> {
        let unknown = || ApiError::unauthenticated("token_revoked", "the session has ended");
        let (session_id, secret) = token.split_once('.').ok_or_else(unknown)?;
        let session = self.store.session(session_id).await?.ok_or_else(unknown)?;
        let presented = sha256_hex(secret);
        if session.revoked
            || session.expires_at <= now_millis()
            || !crate::ids::constant_time_eq(presented.as_bytes(), session.refresh_hash.as_bytes())
        {
            return Err(unknown());
        }
        let user = self
            .store
            .user_by_id(session.user_id)
            .await?
            .filter(|u| u.active)
            .ok_or_else(unknown)?;
        Ok(Caller {
            user,
            session_id: session.id,
        })
    }

    /// Whether a session is still live (not revoked, not expired, its user active): what a
    /// long-lived WebSocket re-checks now and then.
    pub async fn session_is_live(&self, session_id: &str) -> Result<bool> {
        let Some(session) = self.store.session(session_id).await? else {
            return Ok(false);
        };
        if session.revoked || session.expires_at <= now_millis() {
            return Ok(false);
        }
        Ok(self
            .store
            .user_by_id(session.user_id)
            .await?
            .is_some_and(|user| user.active))
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

/// One login attempt taken from the budgets. Dropped without [`LoginAttempt::succeeded`],
/// it stays counted: a failure.
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    auth: &'a Auth,
    account: String,
    client: IpAddr,
    address_key: String,
    account_key: String,
}

impl LoginAttempt<'_> {
    /// The credentials were right: give the attempt back, and forget the account's
    /// earlier failures from this address.
    pub fn succeeded(self) {
        self.auth.attempts.give_back(&self.address_key);
        self.auth.attempts.forget(&self.account_key);
    }

    /// The credentials were wrong: the attempt stays counted, and is audited.
    pub async fn failed(self, reason: &'static str) {
        audit::record(
            self.auth.store.as_ref(),
            Actor::Address(self.client),
            Action::LoginFailed,
            Subject::Account(&self.account),
            serde_json::json!({ "reason": reason }),
        )
        .await;
    }
}

/// Attempts per key in fixed one-minute windows.
#[derive(Debug, Default)]
struct Budgets {
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    count: u32,
    /// Whether a refusal was already reported in this window (one audit record, not one
    /// per refused try).
    refusal_reported: bool,
}

impl Budgets {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Count one attempt against `key`, or refuse with the milliseconds until the window
    /// ends and whether this is the window's first refusal.
    fn take(&self, key: &str, limit: u32) -> std::result::Result<(), (u64, bool)> {
        let mut windows = self.lock();
        if windows.len() > 100_000 {
            // Bound memory under a spray of random names: forget ended windows.
            windows.retain(|_, w| w.started.elapsed() < LOGIN_WINDOW);
        }
        let window = windows.entry(key.to_string()).or_insert(Window {
            started: Instant::now(),
            count: 0,
            refusal_reported: false,
        });
        let elapsed = window.started.elapsed();
        if elapsed >= LOGIN_WINDOW {
            *window = Window {
                started: Instant::now(),
                count: 0,
                refusal_reported: false,
            };
        }
        if window.count >= limit {
            let retry = u64::try_from((LOGIN_WINDOW.saturating_sub(elapsed)).as_millis())
                .unwrap_or(60_000)
                .max(1);
            let first = !window.refusal_reported;
            window.refusal_reported = true;
            return Err((retry, first));
        }
        window.count += 1;
        Ok(())
    }

    fn give_back(&self, key: &str) {
        if let Some(window) = self.lock().get_mut(key) {
            window.count = window.count.saturating_sub(1);
        }
    }

    fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

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

/// The built-in list of common passwords (one per line, lower case), refused when
/// `auth.password_reject_common` is on.
const COMMON_PASSWORDS: &str = include_str!("auth/common_passwords.txt");

/// Password rules, checked before hashing: at least `password_min_chars` characters, at
/// most 1024 bytes, and (unless turned off) not a common password, not the user name, not
/// one character repeated and not a run of consecutive keys or digits.
pub fn check_password_policy(config: &AuthConfig, name: &str, password: &str) -> Result<()> {
    let min = config.password_min_chars.max(1);
    if password.chars().count() < min {
        return Err(ApiError::bad_request(
            "weak_password",
            format!("a password needs at least {min} characters"),
        ));
    }
    if password.len() > 1024 {
        return Err(ApiError::bad_request(
            "invalid_password",
            "a password may have at most 1024 bytes",
        ));
    }
    if config.password_reject_common && is_guessable(name, password) {
        return Err(ApiError::bad_request(
            "weak_password",
            "this password is too easy to guess (a common password, the user name, or a \
             simple pattern); choose another",
        ));
    }
    Ok(())
}

fn is_guessable(name: &str, password: &str) -> bool {
    let lower = password.to_lowercase();
    let mut chars = lower.chars();
    let first = chars.next();
    let one_repeated = chars.all(|c| Some(c) == first);
    let run = |alphabet: &str| {
        alphabet.contains(lower.as_str())
            || alphabet
                .chars()
                .rev()
                .collect::<String>()
                .contains(lower.as_str())
    };
    one_repeated
        || lower == name.to_lowercase()
        || run("01234567890123456789")
        || run("abcdefghijklmnopqrstuvwxyz")
        || run("qwertyuiopasdfghjklzxcvbnm")
        || COMMON_PASSWORDS.lines().any(|common| common == lower)
}

/// Shortest `auth.jwt_secret` accepted.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// The JWT signing secret: from config, else `<data_dir>/jwt.secret`, generated on first use
/// (mode 0600 on Unix).
pub fn load_or_create_secret(config: &AuthConfig, data_dir: &Path) -> std::io::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        // HS256 with a short secret can be brute-forced offline from any one token.
        if secret.expose().len() < MIN_JWT_SECRET_BYTES {
            return Err(std::io::Error::other(format!(
                "auth.jwt_secret has {} bytes; it needs at least {MIN_JWT_SECRET_BYTES} \
                 (generate one with `openssl rand -base64 48`)",
                secret.expose().len()
            )));
        }
        return Ok(secret.expose().as_bytes().to_vec());
    }
    let path = data_dir.join("jwt.secret");
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().len() >= MIN_JWT_SECRET_BYTES => {
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
    crate::private_files::write_new(&path, secret.as_bytes())?;
    Ok(secret.into_bytes())
}
